//! Generations of a table, and the switch that moves readers from one to another (their
//! register is [`crate::registry`]).
//!
//! The current generation is the one whose files the Delta table holds (its `kappa.generation`
//! property). A replay writes a new generation beside it with its own commit log; the switch
//! is one Delta commit that removes every file of the current generation, adds every file of
//! the new one (with the new partition columns if the replay re-partitioned) and hands the
//! consumer the replay's end positions. Every Delta reader sees the old table or the new one,
//! never a mix; the old one stays readable by time travel. The commit is made only on the
//! version the switch read (no retry onto a later one), so of a switch and a consumer commit
//! or a second switch racing it, one fails.

use bytes::Bytes;
use kappa_common::store::Store;
use serde::{Deserialize, Serialize};

use crate::TableError;
use crate::delta::{LakeTable, TableSetup};
use crate::registry::generations_prefix;
pub use crate::registry::{GenerationRecord, awaits_switch, claim, create, is_complete, mark_complete, mark_complete_for, next_name, records};
use crate::state::{GENERATION_PROPERTY, Totals, parse};
use crate::table::{Protected, Table, live_generation, location};
pub use crate::writers::{WRITER_HEARTBEAT, is_being_written};

/// One record of the pointer log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// Its number in the log.
    pub switch: u64,
    pub generation: String,
    pub switched_ms: i64,
    /// The generation current before this switch.
    #[serde(default)]
    pub previous: Option<String>,
}

/// A generation as `kappa-replay status` lists it.
#[derive(Debug, Clone)]
pub struct GenerationSummary {
    /// Its record in the register; made up from the Delta log for a generation the register
    /// lost (`_kappa/` deleted): `created_ms` 0 and an origin that says so.
    pub record: GenerationRecord,
    pub current: bool,
    /// Its writer finished it (a replay that ran to its end; a generation that was ever current).
    pub complete: bool,
    /// The Delta versions during which readers read it, if they ever did.
    pub versions: Option<(u64, u64)>,
    /// Its writer's commits (a replay's own log; for the current one, the consumer's counter).
    pub commits: u64,
    /// Rows, files and bytes as readers read them: the current version's for the current
    /// generation, the last version that held it for one a switch replaced (time travel reads
    /// it), its own log's for a replay's that readers never saw. Quarantined events are its
    /// writer's count.
    pub totals: Totals,
}

/// The current generation, if the table exists: `switch` is the Delta table's version.
pub async fn current(store: &Store, table: &str) -> Result<Option<Pointer>, TableError> {
    Ok(live_generation(store, table).await?.map(|(generation, version)| Pointer { switch: version, generation, switched_ms: 0, previous: None }))
}

/// Registers the table as it is now (its current generation's schema, the Delta table's
/// partition columns and properties) in a Glue database.
pub async fn register_in_glue(store: &Store, table: &str, client: &aws_sdk_glue::Client, database: &str) -> Result<crate::glue::Registered, TableError> {
    let location = location(store, table)?;
    let Some(lake) = LakeTable::open(table, &location).await? else {
        return Err(TableError::Invalid { table: table.to_string(), reason: "there is no Delta table to register yet".into() });
    };
    let configuration = lake.configuration()?;
    // The Delta log's schema: what readers read, whoever wrote it (and `_kappa/` may be lost).
    let setup = TableSetup { schema: lake.data_schema()?, partition_columns: lake.partition_columns()?, configuration: configuration.into_iter().collect() };
    Ok(crate::glue::register(client, database, table, location.url.as_str(), &setup).await?)
}

/// Every generation, oldest first, with what readers read of it (see [`GenerationSummary`]):
/// the register's, and those the Delta log names that the register lost.
pub async fn summaries(store: &Store, table: &str) -> Result<Vec<GenerationSummary>, TableError> {
    let location = location(store, table)?;
    let mut lake = LakeTable::open(table, &location).await?;
    let spans = match &lake {
        Some(lake) => lake.spans().await?,
        None => Vec::new(),
    };
    let current = match &lake {
        Some(lake) => lake.configuration()?.get(GENERATION_PROPERTY).cloned(),
        None => None,
    };
    let mut known: Vec<GenerationRecord> = records(store, table).await?.into_iter().filter(|r| r.removed_ms.is_none()).collect();
    for span in &spans {
        if !known.iter().any(|r| r.generation == span.generation) {
            known.push(GenerationRecord {
                generation: span.generation.clone(),
                created_ms: 0,
                origin: "unknown (not in _kappa/generations/; known from the Delta log)".to_string(),
                removed_ms: None,
                retired_ms: None,
            });
        }
    }
    known.sort_by_key(|r| r.generation.strip_prefix("gen-").and_then(|n| n.parse::<u32>().ok()));
    let mut summaries = Vec::new();
    for record in known {
        let is_current = current.as_deref() == Some(record.generation.as_str());
        let span = spans.iter().rev().find(|s| s.generation == record.generation);
        let versions = span.map(|s| (s.first, s.last));
        let summary = if is_current {
            let state = Table::open_or_create(store.clone(), table).await?.load_state().await?;
            let lake = lake.as_mut().expect("a current generation has a table");
            let now = lake.totals().await?;
            let totals = Totals { rows: now.rows, files: now.files, bytes: now.bytes, quarantined: state.totals.quarantined };
            GenerationSummary { current: true, complete: true, versions, commits: state.last_commit, totals, record }
        } else if let Some(span) = span {
            // Readers read it until a switch replaced it: as of its last version.
            // Its versions may be gone from the log (log retention): nothing to read then.
            let then = match LakeTable::open_at(table, &location, span.last).await {
                Ok(mut then) => then.totals().await?,
                Err(_) => crate::delta::VersionTotals::default(),
            };
            let (commits, staged) = Table::open_generation(store.clone(), table, &record.generation).staged_totals().await?;
            let totals = Totals { rows: then.rows, files: then.files, bytes: then.bytes, quarantined: staged.quarantined };
            GenerationSummary { current: false, complete: true, versions, commits, totals, record }
        } else {
            let (commits, totals) = Table::open_generation(store.clone(), table, &record.generation).staged_totals().await?;
            let complete = is_complete(store, table, &record.generation).await?;
            GenerationSummary { current: false, complete, versions: None, commits, totals, record }
        };
        summaries.push(summary);
    }
    Ok(summaries)
}

/// What [`remove`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    pub deleted: usize,
    /// Data files left because a version of the Delta log within the retention names them
    /// (readers may still time-travel to it).
    pub kept: usize,
}

/// Deletes a generation: its data, commit log, schema and quarantine; its record stays,
/// marked removed. Refuses the current one. Leaves it whole (and says how many of its files
/// are why) while a version of the Delta log that was current less than `retention` ago names
/// any of its files (time travel reads them), or a running writer announced it (a replay still
/// writing it, a switch bringing it back).
///
/// Step by step, against a switch to this generation racing the removal:
/// 1. the record is marked removed first (a switch reads it after announcing itself, and
///    refuses a generation being removed);
/// 2. the objects are listed, then the writers and the log are read: a switch that announced
///    itself before step 1 is seen here, and the mark is taken back;
/// 3. only then is anything deleted.
pub async fn remove(store: &Store, table: &str, generation: &str, retention: std::time::Duration) -> Result<Removal, TableError> {
    if current(store, table).await?.is_some_and(|p| p.generation == generation) {
        return Err(TableError::Invalid { table: table.to_string(), reason: format!("{generation} is the current generation; it is never removed") });
    }
    let record_path = format!("{}{generation}.json", generations_prefix(table));
    let mut record: GenerationRecord = parse(&record_path, &store.get(&record_path).await?)?;
    let put = |record: &GenerationRecord| Bytes::from(serde_json::to_vec_pretty(record).expect("serializes"));
    let data_prefix = format!("{table}/{generation}/");
    let kept =
        |objects: &[kappa_common::store::ObjectMeta], protected: &Protected| objects.iter().filter(|o| protected.covers(&o.path[table.len() + 1..])).count();
    // A writer at work on it (a replay) or files the log names: nothing to mark.
    let objects = store.list(&data_prefix).await?;
    let protected = Protected::read(store, table, Some(retention)).await?;
    if kept(&objects, &protected) > 0 || protected.writing(generation) {
        return Ok(Removal { deleted: 0, kept: kept(&objects, &protected) });
    }
    record.removed_ms = Some(chrono::Utc::now().timestamp_millis());
    store.put(&record_path, put(&record)).await?;
    let objects = store.list(&data_prefix).await?;
    let protected = Protected::read(store, table, Some(retention)).await?;
    let kept = kept(&objects, &protected);
    let current_now = current(store, table).await?.is_some_and(|p| p.generation == generation);
    if kept > 0 || protected.writing(generation) || current_now {
        record.removed_ms = None;
        store.put(&record_path, put(&record)).await?;
        if current_now {
            return Err(TableError::Invalid { table: table.to_string(), reason: format!("{generation} became current while being removed; left in place") });
        }
        return Ok(Removal { deleted: 0, kept });
    }
    let (deleted, _) = delete_objects(store, table, generation, Some(retention)).await?;
    Ok(Removal { deleted, kept: 0 })
}

/// Objects left under generations `gc` already removed (written by a replay that went on
/// after the removal); deletes them and returns how many there were.
pub async fn sweep_removed(store: &Store, table: &str) -> Result<usize, TableError> {
    let mut removed = 0;
    for record in records(store, table).await?.into_iter().filter(|r| r.removed_ms.is_some()) {
        removed += delete_objects(store, table, &record.generation, None).await?.0;
    }
    Ok(removed)
}

/// Deletes a generation's data, quarantine and state objects, except data files the Delta log
/// still names (see [`crate::table::Protected`]; files removed longer than `retention` ago do
/// not count). Returns how many were deleted and kept.
pub(crate) async fn delete_objects(store: &Store, table: &str, generation: &str, retention: Option<std::time::Duration>) -> Result<(usize, usize), TableError> {
    let prefixes = [format!("{table}/{generation}/"), format!("{table}/_errors/{generation}/"), format!("{table}/_kappa/{generation}/")];
    crate::table::delete_unprotected(store, table, &prefixes, retention).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Commit, FORMAT, Layout};
    use std::collections::BTreeMap;

    async fn switch(store: &Store, table: &str, generation: &str, expected: Option<&str>) -> Result<Pointer, TableError> {
        let request = crate::switch::SwitchRequest { generation: generation.into(), expected: expected.map(Into::into), ..Default::default() };
        crate::switch::switch(store, table, &request).await.map(|s| s.pointer)
    }
    use crate::registry::create;
    use kappa_common::store::LocalStore;

    /// Commit number `commit` of `generation`: the file `part` of day 19, shard 0 read up to
    /// `resume`.
    fn one_file(generation: &str, commit: u64, part: &str, resume: &str) -> Commit {
        let file = crate::state::DataFile {
            path: format!("year=2025/month=03/day=19/{part}"),
            partition: "year=2025/month=03/day=19".into(),
            rows: 1,
            bytes: 1,
            stats: None,
        };
        Commit {
            format: FORMAT,
            commit,
            generation: generation.to_string(),
            created_ms: 0,
            schema_version: 1,
            added: vec![file],
            removed: vec![],
            errors: vec![],
            resume: [("0".to_string(), resume.to_string())].into(),
            written: Default::default(),
            quarantined: Default::default(),
            totals: Totals { rows: 1, files: 1, bytes: 1, quarantined: 0 },
            unacknowledged: Default::default(),
            archived: vec![],
            archive_positions: Default::default(),
            seen: Default::default(),
            horizons: Default::default(),
            seen_ref: None,
            unacknowledged_ref: None,
            carried: Vec::new(),
            claims: None,
            claims_ref: None,
            epochs: Default::default(),
        }
    }

    fn day_schema() -> kappa_common::schema::TableSchema {
        let day = kappa_common::schema::Column { name: "day".into(), column_type: kappa_common::schema::ColumnType::Int64, nullable: true };
        kappa_common::schema::TableSchema::new(vec![day]).unwrap()
    }

    fn day_layout() -> Layout {
        Layout { partition_by: "day".into(), event_time: None }
    }

    /// A replay's generation with one committed file.
    async fn staged(store: &Store, origin: &str) -> String {
        let generation = create(store, "t", origin).await.unwrap();
        let table = Table::open_generation(store.clone(), "t", &generation);
        table.write_schema(1, &day_schema()).await.unwrap();
        table.settle_layout(&day_layout()).await.unwrap();
        table.put_object("year=2025/month=03/day=19/part-a.parquet", Bytes::from_static(b"x")).await.unwrap();
        table.commit(&one_file(&generation, 1, "part-a.parquet", "7"), &day_schema(), &day_layout()).await.unwrap();
        generation
    }

    /// A replay's generation made current, a leased worker (shard 0, epoch 1) that commits
    /// `part-b` there at position 8, then a second replay's generation made current. Returns
    /// the two generations, the lease, the worker and shard 0's position when it started.
    async fn switched_under_a_worker(store: &Store) -> (String, String, BTreeMap<String, u64>, Table, String) {
        let first = staged(store, "replay").await;
        mark_complete(store, "t", &first).await.unwrap();
        switch(store, "t", &first, None).await.unwrap();
        let held: BTreeMap<String, u64> = [("0".to_string(), 1)].into();
        let worker = Table::open_or_create(store.clone(), "t").await.unwrap().leased("a", &held);
        let started = worker.load_state().await.unwrap().resume["0"].clone();
        worker.put_object("year=2025/month=03/day=19/part-b.parquet", Bytes::from_static(b"b")).await.unwrap();
        worker.commit(&one_file(&first, 2, "part-b.parquet", "8"), &day_schema(), &day_layout()).await.unwrap();
        let second = staged(store, "replay").await;
        mark_complete(store, "t", &second).await.unwrap();
        switch(store, "t", &second, Some(&first)).await.unwrap();
        (first, second, held, worker, started)
    }

    /// A worker whose view of the log is read again past a switch (its status check) while
    /// one of its flushes is on its way: the flush is refused as a lost race, not added on top
    /// of the new generation (where its state, newer than the switch's, would have had the
    /// worker read its shards again from the start: 20,950 rows stored twice in CI).
    #[tokio::test]
    async fn a_flush_of_the_replaced_generation_is_refused_after_a_reload_past_the_switch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path()));
        let (first, second, held, worker, started) = switched_under_a_worker(&store).await;
        assert_eq!(started, "7");
        // The status check reads the log again; the flush in flight commits after it.
        assert_eq!(worker.current_generation().await.unwrap().as_deref(), Some(second.as_str()));
        worker.put_object("year=2025/month=03/day=19/part-c.parquet", Bytes::from_static(b"c")).await.unwrap();
        let late = worker.commit(&one_file(&first, 3, "part-c.parquet", "9"), &day_schema(), &day_layout()).await.unwrap_err();
        assert!(late.is_lost_race(), "{late}");
        assert!(late.to_string().contains(&format!("holds generation {second}")), "{late}");
        let mut lake = LakeTable::open("t", &location(&store, "t").unwrap()).await.unwrap().unwrap();
        assert_eq!(lake.files().await.unwrap(), vec![format!("{second}/year=2025/month=03/day=19/part-a.parquet")]);
        // A table where an older kappa-lake let such a flush in: the worker still goes on from
        // the positions the switch handed over, not from the start of its shard.
        let (txn, state) = (crate::state::shard_txn_version, serde_json::to_value(one_file(&first, 3, "part-c.parquet", "9")).unwrap());
        let stale = crate::delta::Commit {
            previous: Some(txn(1, 1)),
            fence: true,
            ..crate::delta::tests::commit(&crate::state::shard_app_id("0"), txn(1, 2), "stale", Vec::new(), state)
        };
        lake.commit(stale).await.unwrap();
        let next = Table::open_or_create(store.clone(), "t").await.unwrap().leased("a", &held);
        assert_eq!((next.generation(), next.load_state().await.unwrap().resume["0"].as_str()), (second.as_str(), "7"));
    }

    /// A switch back to a generation leased workers wrote: each shard goes on from its own
    /// last commit there, not from the older state the consumer's `txn` holds (the restored
    /// files hold the rows read since; reading them again stored them twice).
    #[tokio::test]
    async fn a_switch_back_hands_each_leased_shard_its_own_last_position() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path()));
        let (first, second, held, _worker, _) = switched_under_a_worker(&store).await;
        switch(&store, "t", &first, Some(&second)).await.unwrap();
        let mut lake = LakeTable::open("t", &location(&store, "t").unwrap()).await.unwrap().unwrap();
        let restored: Vec<String> = ["part-a", "part-b"].iter().map(|p| format!("{first}/year=2025/month=03/day=19/{p}.parquet")).collect();
        assert_eq!(lake.files().await.unwrap(), restored);
        let back = Table::open_or_create(store.clone(), "t").await.unwrap().leased("a", &held);
        assert_eq!((back.generation(), back.load_state().await.unwrap().resume["0"].as_str()), (first.as_str(), "8"));
    }

    #[tokio::test]
    async fn switches_are_one_delta_commit_and_conditional() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path()));
        assert_eq!(current(&store, "t").await.unwrap(), None);
        let first = staged(&store, "replay").await;
        let second = staged(&store, "replay").await;
        assert_eq!((first.as_str(), second.as_str()), ("gen-000001", "gen-000002"));
        assert!(switch(&store, "t", &first, None).await.is_err(), "incomplete generations are not switched to");
        mark_complete(&store, "t", &first).await.unwrap();
        mark_complete(&store, "t", &second).await.unwrap();
        switch(&store, "t", &first, None).await.unwrap();
        assert_eq!(current(&store, "t").await.unwrap().unwrap().generation, first);
        // A switch that expected another current generation fails.
        assert!(matches!(switch(&store, "t", &second, Some("gen-000009")).await, Err(TableError::SwitchConflict { .. })));
        let pointer = switch(&store, "t", &second, Some(&first)).await.unwrap();
        assert_eq!((pointer.switch, pointer.previous.as_deref()), (2, Some("gen-000001")));
        assert_eq!(current(&store, "t").await.unwrap().unwrap().generation, second);
        // The table holds the second generation's file alone, partitioned without touching the
        // data's own `day` column; the consumer resumes where the replay ended.
        let mut lake = LakeTable::open("t", &location(&store, "t").unwrap()).await.unwrap().unwrap();
        assert_eq!(lake.files().await.unwrap(), vec![format!("{second}/year=2025/month=03/day=19/part-a.parquet")]);
        assert_eq!(lake.partition_columns().unwrap(), vec!["year", "month", "kappa_day"]);
        let live = Table::open_or_create(store.clone(), "t").await.unwrap().load_state().await.unwrap();
        assert_eq!((live.last_commit, live.resume["0"].as_str(), live.totals.rows), (3, "7", 1));
        assert!(switch(&store, "t", "gen-000077", None).await.is_err(), "no such generation");
        // The current generation is never removed; the one before it stays while the log's
        // versions within the retention name its file (time travel reads it).
        let week = std::time::Duration::from_secs(7 * 86400);
        assert!(remove(&store, "t", &second, week).await.is_err());
        assert_eq!(remove(&store, "t", &first, week).await.unwrap(), Removal { deleted: 0, kept: 1 });
        assert!(store.get(&format!("t/{first}/year=2025/month=03/day=19/part-a.parquet")).await.is_ok());
        assert!(records(&store, "t").await.unwrap().iter().all(|r| r.removed_ms.is_none()), "nothing marked removed");
        assert!(remove(&store, "t", &first, std::time::Duration::ZERO).await.unwrap().deleted > 0);
        // Its number is never given out again.
        assert_eq!(create(&store, "t", "replay").await.unwrap(), "gen-000003");
    }

    #[tokio::test]
    async fn gc_leaves_a_generation_being_written_and_sweeps_what_comes_after_its_removal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path()));
        let live = staged(&store, "replay").await;
        mark_complete(&store, "t", &live).await.unwrap();
        switch(&store, "t", &live, None).await.unwrap();
        let replayed = create(&store, "t", "replay").await.unwrap();
        let writer = crate::writers::Writer::register(&store, "t", "replay", Some(&replayed)).await.unwrap();
        store.put(&format!("t/{replayed}/year=2025/early.parquet"), Bytes::from_static(b"x")).await.unwrap();
        assert!(is_being_written(&store, "t", &replayed).await.unwrap());
        assert_eq!(remove(&store, "t", &replayed, std::time::Duration::ZERO).await.unwrap(), Removal { deleted: 0, kept: 0 });
        assert!(store.get(&format!("t/{replayed}/year=2025/early.parquet")).await.is_ok(), "left whole while its replay writes it");
        writer.finish().await.unwrap();
        assert_eq!(remove(&store, "t", &replayed, std::time::Duration::ZERO).await.unwrap(), Removal { deleted: 1, kept: 0 });
        // A replay that went on writing into the removed generation.
        store.put(&format!("t/{replayed}/year=2025/late.parquet"), Bytes::from_static(b"x")).await.unwrap();
        assert!(mark_complete(&store, "t", &replayed).await.is_err(), "a removed generation is never made complete");
        assert_eq!(sweep_removed(&store, "t").await.unwrap(), 1);
        assert!(store.list(&format!("t/{replayed}/")).await.unwrap().is_empty());
        assert_eq!(sweep_removed(&store, "t").await.unwrap(), 0);
        // Its name is never given out again, nor the name of objects the register does not know.
        store.put("t/gen-000003/year=2025/by-hand.parquet", Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(create(&store, "t", "replay").await.unwrap(), "gen-000004");
    }
}
