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
use crate::delta::{DeltaError, LakeTable, TableSetup};
pub use crate::registry::{GenerationRecord, WRITER_HEARTBEAT, create, heartbeat, is_being_written, is_complete, mark_complete, sweep_removed, writer_done};
use crate::registry::{complete_path, delete_objects, generations_prefix, records, retire};
use crate::state::{CONSUMER_APP_ID, Commit, FORMAT, GENERATION_PROPERTY, Layout, Totals, parse};
use crate::table::{Table, delta_file, live_generation, location, partition_columns, properties};

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
    pub record: GenerationRecord,
    pub current: bool,
    /// Its writer finished it (a replay that ran to its end; a consumer's generation always).
    pub complete: bool,
    pub commits: u64,
    pub totals: Totals,
}

/// The current generation, if the table exists: `switch` is the Delta table's version.
pub async fn current(store: &Store, table: &str) -> Result<Option<Pointer>, TableError> {
    Ok(live_generation(store, table).await?.map(|(generation, version)| Pointer { switch: version, generation, switched_ms: 0, previous: None }))
}

/// Makes `generation` (a replay's, complete) current in one Delta commit. With `expected`,
/// fails unless the current generation is still that one. Returns the record.
pub async fn switch(store: &Store, table: &str, generation: &str, expected: Option<&str>) -> Result<Pointer, TableError> {
    let conflict = || TableError::SwitchConflict { table: table.to_string(), generation: generation.to_string() };
    let records = records(store, table).await?;
    let Some(record) = records.iter().find(|r| r.generation == generation && r.removed_ms.is_none()) else {
        return Err(TableError::Invalid { table: table.to_string(), reason: format!("there is no generation {generation}") });
    };
    if record.origin == "consumer" {
        return Err(TableError::Invalid {
            table: table.to_string(),
            reason: format!(
                "{generation} was written by a consumer: its files are in the Delta log's history, not in a log of its own, and switching \
                 back to it is not supported yet; read it by time travel, or replay the source into a new generation"
            ),
        });
    }
    if !is_complete(store, table, generation).await? {
        return Err(TableError::Invalid {
            table: table.to_string(),
            reason: format!("{generation} is incomplete (its replay did not finish); readers would see part of the data"),
        });
    }
    let staged = Table::open_generation(store.clone(), table, generation);
    if current(store, table).await?.is_some_and(|p| p.generation == generation) {
        return Err(TableError::Invalid { table: table.to_string(), reason: format!("{generation} is already current") });
    }
    let (files, state) = staged.staged().await?;
    let Some((schema_version, schema)) = staged.latest_schema().await? else {
        return Err(TableError::Invalid {
            table: table.to_string(),
            reason: format!("{generation} has no schema (it never read an event); nothing to switch to"),
        });
    };
    let location = location(store, table)?;
    let lake = LakeTable::open(table, &location).await?;
    let live = match &lake {
        Some(lake) => Some(lake.configuration()?.get(GENERATION_PROPERTY).cloned().unwrap_or_default()),
        None => None,
    };
    if expected.is_some() && live.as_deref() != expected {
        return Err(conflict());
    }
    let layout = match staged.layout().await? {
        Some(layout) => layout,
        None => Layout {
            partition_by: lake.as_ref().and_then(|l| l.configuration().ok()?.get("kappa.partitionBy").cloned()).unwrap_or_else(|| "day".into()),
            event_time: None,
        },
    };
    let partition_columns = partition_columns(&schema, &layout);
    let setup =
        TableSetup { schema: schema.clone(), partition_columns: partition_columns.clone(), configuration: properties(generation, &layout, schema_version) };
    let (mut lake, previous) = match lake {
        Some(lake) => {
            let previous = lake.writer_counter(CONSUMER_APP_ID).await?;
            (lake, previous)
        }
        None => (LakeTable::create(table, &location, &setup).await?, None),
    };
    // The consumer goes on numbering from here: above the replay's own commits, whose
    // quarantine and archive objects are named by their numbers.
    let counter = previous.unwrap_or(0).max(state.last_commit as i64) + 1;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let handed_over = Commit {
        format: FORMAT,
        commit: counter as u64,
        generation: generation.to_string(),
        created_ms: now_ms,
        schema_version: state.schema_version,
        added: Vec::new(),
        removed: Vec::new(),
        errors: Vec::new(),
        resume: state.resume,
        written: state.written,
        quarantined: state.quarantined,
        totals: state.totals,
        unacknowledged: state.unacknowledged,
        archived: Vec::new(),
        archive_positions: state.archive_positions,
        // The files the replay read stay recognised when they are sent again.
        seen: state.seen,
        horizons: state.horizons,
    };
    let add = files.iter().map(|f| delta_file(generation, f, &partition_columns)).collect::<Result<Vec<_>, _>>()?;
    // Marked before the commit: a switch that then fails leaves a mark on the generation that
    // stays current (gc never removes that one), never a retired generation without one.
    if let Some(live) = &live {
        retire(store, table, live, now_ms).await?;
    }
    let commit = crate::delta::Commit {
        app_id: CONSUMER_APP_ID.to_string(),
        counter,
        previous,
        commit_id: format!("switch-{generation}-{now_ms}"),
        add,
        remove: Vec::new(),
        data_change: true,
        replace_all: true,
        setup: Some(setup),
        state: serde_json::to_value(&handed_over).expect("serializes"),
    };
    match lake.commit(commit).await {
        Ok(version) => {
            // The switch removed every file of the old generation: readers open the new one
            // from a checkpoint rather than by replaying the old one's history.
            lake.checkpoint_latest().await;
            Ok(Pointer { switch: version, generation: generation.to_string(), switched_ms: now_ms, previous: live })
        }
        Err(DeltaError::ConcurrentWriter { .. } | DeltaError::Raced { .. }) => Err(conflict()),
        Err(e) => Err(e.into()),
    }
}

/// Registers the table as it is now (its current generation's schema, the Delta table's
/// partition columns and properties) in a Glue database.
pub async fn register_in_glue(store: &Store, table: &str, client: &aws_sdk_glue::Client, database: &str) -> Result<crate::glue::Registered, TableError> {
    let location = location(store, table)?;
    let Some(lake) = LakeTable::open(table, &location).await? else {
        return Err(TableError::Invalid { table: table.to_string(), reason: "there is no Delta table to register yet".into() });
    };
    let configuration = lake.configuration()?;
    let generation = configuration.get(GENERATION_PROPERTY).cloned().unwrap_or_default();
    let Some((_, schema)) = Table::open_generation(store.clone(), table, &generation).latest_schema().await? else {
        return Err(TableError::Invalid { table: table.to_string(), reason: format!("{generation} has no schema") });
    };
    let setup = TableSetup { schema, partition_columns: lake.partition_columns()?, configuration: configuration.into_iter().collect() };
    Ok(crate::glue::register(client, database, table, location.url.as_str(), &setup).await?)
}

/// Every generation with its totals (from its last commit), oldest first.
pub async fn summaries(store: &Store, table: &str) -> Result<Vec<GenerationSummary>, TableError> {
    let current = current(store, table).await?.map(|p| p.generation);
    let mut summaries = Vec::new();
    for record in records(store, table).await?.into_iter().filter(|r| r.removed_ms.is_none()) {
        let is_current = current.as_deref() == Some(record.generation.as_str());
        let state = if is_current {
            Table::open_or_create(store.clone(), table).await?.load_state().await?
        } else {
            Table::open_generation(store.clone(), table, &record.generation).load_state().await?
        };
        let complete = is_current || is_complete(store, table, &record.generation).await?;
        summaries.push(GenerationSummary { current: is_current, complete, record, commits: state.last_commit, totals: state.totals });
    }
    Ok(summaries)
}

/// Deletes a generation: its data, commit log, schema and quarantine; its record stays,
/// marked removed. Refuses the current one. Returns the number of objects deleted.
pub async fn remove(store: &Store, table: &str, generation: &str) -> Result<usize, TableError> {
    let is_current = |p: Option<Pointer>| p.is_some_and(|p| p.generation == generation);
    if is_current(current(store, table).await?) {
        return Err(TableError::Invalid { table: table.to_string(), reason: format!("{generation} is the current generation; it is never removed") });
    }
    let record_path = format!("{}{generation}.json", generations_prefix(table));
    let mut record: GenerationRecord = parse(&record_path, &store.get(&record_path).await?)?;
    // Withdraw the completion mark first, then look again: a switch racing this removal
    // either won before (and the removal stops here) or can no longer pick this generation.
    store.delete(&complete_path(table, generation)).await?;
    if is_current(current(store, table).await?) {
        mark_complete(store, table, generation).await?;
        return Err(TableError::Invalid { table: table.to_string(), reason: format!("{generation} became current while being removed; left in place") });
    }
    let removed = delete_objects(store, table, generation).await?;
    record.removed_ms = Some(chrono::Utc::now().timestamp_millis());
    store.put(&record_path, Bytes::from(serde_json::to_vec_pretty(&record).expect("serializes"))).await?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::create;
    use kappa_common::store::LocalStore;

    /// A replay's generation with one committed file.
    async fn staged(store: &Store, origin: &str) -> String {
        let generation = create(store, "t", origin).await.unwrap();
        let table = Table::open_generation(store.clone(), "t", &generation);
        let schema = kappa_common::schema::TableSchema::new(vec![kappa_common::schema::Column {
            name: "day".into(),
            column_type: kappa_common::schema::ColumnType::Int64,
            nullable: true,
        }])
        .unwrap();
        table.write_schema(1, &schema).await.unwrap();
        let layout = Layout { partition_by: "day".into(), event_time: None };
        table.settle_layout(&layout).await.unwrap();
        table.put_object("year=2025/month=03/day=19/a.parquet", Bytes::from_static(b"x")).await.unwrap();
        let file = crate::state::DataFile {
            path: "year=2025/month=03/day=19/a.parquet".into(),
            partition: "year=2025/month=03/day=19".into(),
            rows: 1,
            bytes: 1,
            stats: None,
        };
        let commit = Commit {
            format: FORMAT,
            commit: 1,
            generation: generation.clone(),
            created_ms: 0,
            schema_version: 1,
            added: vec![file],
            removed: vec![],
            errors: vec![],
            resume: [("0".to_string(), "7".to_string())].into(),
            written: Default::default(),
            quarantined: Default::default(),
            totals: Totals { rows: 1, files: 1, bytes: 1, quarantined: 0 },
            unacknowledged: Default::default(),
            archived: vec![],
            archive_positions: Default::default(),
            seen: Default::default(),
            horizons: Default::default(),
        };
        table.commit(&commit, &schema, &layout).await.unwrap();
        generation
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
        assert_eq!(lake.files().await.unwrap(), vec![format!("{second}/year=2025/month=03/day=19/a.parquet")]);
        assert_eq!(lake.partition_columns().unwrap(), vec!["year", "month", "kappa_day"]);
        let live = Table::open_or_create(store.clone(), "t").await.unwrap().load_state().await.unwrap();
        assert_eq!((live.last_commit, live.resume["0"].as_str(), live.totals.rows), (3, "7", 1));
        assert!(switch(&store, "t", "gen-000077", None).await.is_err(), "no such generation");
        // The current generation is never removed.
        assert!(remove(&store, "t", &second).await.is_err());
        // Its number is never given out again.
        assert_eq!(create(&store, "t", "replay").await.unwrap(), "gen-000003");
    }

    #[tokio::test]
    async fn what_a_replay_writes_after_gc_removed_its_generation_is_swept_and_never_completed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path()));
        let live = staged(&store, "replay").await;
        mark_complete(&store, "t", &live).await.unwrap();
        switch(&store, "t", &live, None).await.unwrap();
        let replayed = create(&store, "t", "replay").await.unwrap();
        heartbeat(&store, "t", &replayed).await.unwrap();
        assert!(is_being_written(&store, "t", &replayed).await.unwrap());
        remove(&store, "t", &replayed).await.unwrap();
        // The replay goes on writing into the removed generation.
        store.put(&format!("t/{replayed}/year=2025/late.parquet"), Bytes::from_static(b"x")).await.unwrap();
        assert!(mark_complete(&store, "t", &replayed).await.is_err(), "a removed generation is never made complete");
        assert_eq!(sweep_removed(&store, "t").await.unwrap(), 1);
        assert!(store.list(&format!("t/{replayed}/")).await.unwrap().is_empty());
        assert_eq!(sweep_removed(&store, "t").await.unwrap(), 0);
        assert!(!is_being_written(&store, "t", &replayed).await.unwrap());
    }
}
