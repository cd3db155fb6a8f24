//! Generations of a table, and the pointer that tells readers which one is current.
//!
//! ```text
//! <table>/_kappa/generations/<generation>.json   one record per generation: created, by what
//! <table>/_kappa/current/<n:06>.json             the pointer log: the highest n names the current one
//! ```
//!
//! The pointer is a log rather than one file that is overwritten: switching is creating record
//! `n+1`, which the store does only if it is absent (a hard link locally, `If-None-Match: *` on
//! S3). So a switch is atomic — a reader resolves either the old or the new generation, never
//! something between — and conditional: of two switches racing from the same `n`, one fails.
//! Old records stay as the history of switches.

use bytes::Bytes;
use kappa_common::store::{Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::table::{Commit, TableError, Totals, parse};

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

/// What is known of a generation when it is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRecord {
    pub generation: String,
    pub created_ms: i64,
    /// What made it: `consumer`, or `replay from log:…` with the settings used.
    pub origin: String,
    /// Set by `gc`: the generation's objects are gone; the record stays so its number is
    /// never given out again (archive objects are named after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_ms: Option<i64>,
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

fn pointer_prefix(table: &str) -> String {
    format!("{table}/_kappa/current/")
}

fn generations_prefix(table: &str) -> String {
    format!("{table}/_kappa/generations/")
}

fn generation_number(name: &str) -> Option<u32> {
    name.strip_prefix("gen-")?.parse().ok()
}

/// The current pointer record, if the table exists.
pub async fn current(store: &Store, table: &str) -> Result<Option<Pointer>, TableError> {
    let Some(last) = store.list(&pointer_prefix(table)).await?.pop() else { return Ok(None) };
    let data = store.get(&last.path).await?;
    Ok(Some(parse(&last.path, &data)?))
}

/// Every generation's record, oldest first.
pub async fn records(store: &Store, table: &str) -> Result<Vec<GenerationRecord>, TableError> {
    let mut records = Vec::new();
    for object in store.list(&generations_prefix(table)).await? {
        let data = store.get(&object.path).await?;
        records.push(parse::<GenerationRecord>(&object.path, &data)?);
    }
    records.sort_by_key(|r| generation_number(&r.generation));
    Ok(records)
}

/// Creates the next generation (`gen-000001`, `gen-000002`, …) and returns its name.
pub async fn create(store: &Store, table: &str, origin: &str) -> Result<String, TableError> {
    let mut next = records(store, table).await?.iter().filter_map(|r| generation_number(&r.generation)).max().unwrap_or(0) + 1;
    loop {
        let generation = format!("gen-{next:06}");
        let record = GenerationRecord {
            generation: generation.clone(),
            created_ms: chrono::Utc::now().timestamp_millis(),
            origin: origin.to_string(),
            removed_ms: None,
        };
        let path = format!("{}{generation}.json", generations_prefix(table));
        match store.put_if_absent(&path, Bytes::from(serde_json::to_vec_pretty(&record).expect("serializes"))).await {
            Ok(()) => return Ok(generation),
            // Someone made that number at the same moment: take the next.
            Err(StoreError::AlreadyExists { .. }) => next += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Makes `generation` current in one atomic step. With `expected`, fails unless the current
/// generation is still that one (no switch happened since it was read). Returns the record.
pub async fn switch(store: &Store, table: &str, generation: &str, expected: Option<&str>) -> Result<Pointer, TableError> {
    let conflict = || TableError::SwitchConflict { table: table.to_string(), generation: generation.to_string() };
    let now = current(store, table).await?;
    if let Some(expected) = expected
        && now.as_ref().map(|p| p.generation.as_str()) != Some(expected)
    {
        return Err(conflict());
    }
    let exists = records(store, table).await?.iter().any(|r| r.generation == generation && r.removed_ms.is_none());
    if !exists {
        return Err(TableError::Invalid { table: table.to_string(), reason: format!("there is no generation {generation}") });
    }
    if !is_complete(store, table, generation).await? {
        return Err(TableError::Invalid {
            table: table.to_string(),
            reason: format!("{generation} is incomplete (its replay did not finish); readers would see part of the data"),
        });
    }
    let pointer = Pointer {
        switch: now.as_ref().map_or(1, |p| p.switch + 1),
        generation: generation.to_string(),
        switched_ms: chrono::Utc::now().timestamp_millis(),
        previous: now.map(|p| p.generation),
    };
    let path = format!("{}{:06}.json", pointer_prefix(table), pointer.switch);
    match store.put_if_absent(&path, Bytes::from(serde_json::to_vec_pretty(&pointer).expect("serializes"))).await {
        Ok(()) => Ok(pointer),
        Err(StoreError::AlreadyExists { .. }) => {
            // An SDK retry of a put that had in fact succeeded also lands here: it is ours if
            // the record says what we wrote.
            let existing: Pointer = parse(&path, &store.get(&path).await?)?;
            if existing.generation == pointer.generation && existing.previous == pointer.previous && existing.switched_ms == pointer.switched_ms {
                Ok(pointer)
            } else {
                Err(conflict())
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn complete_path(table: &str, generation: &str) -> String {
    format!("{table}/_kappa/{generation}/complete.json")
}

/// Marks a generation finished: only complete generations can become current. A generation
/// that `gc` removed meanwhile is not: what was written after the removal is swept by the
/// next `gc`.
pub async fn mark_complete(store: &Store, table: &str, generation: &str) -> Result<(), TableError> {
    let record_path = format!("{}{generation}.json", generations_prefix(table));
    let record: GenerationRecord = parse(&record_path, &store.get(&record_path).await?)?;
    if record.removed_ms.is_some() {
        return Err(TableError::Invalid {
            table: table.to_string(),
            reason: format!("{generation} was removed by gc while it was being written; replay again"),
        });
    }
    let body = serde_json::json!({ "completed_ms": chrono::Utc::now().timestamp_millis() });
    Ok(store.put(&complete_path(table, generation), Bytes::from(body.to_string())).await?)
}

fn writing_path(table: &str, generation: &str) -> String {
    format!("{table}/_kappa/{generation}/writing.json")
}

/// How often a replay says it is still writing its generation, and how old that word may be
/// before `gc` takes the writer for dead.
pub const WRITER_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);
const WRITER_STALE_MS: i64 = 60_000;

/// Says that a writer (a replay) is still writing the generation, so `gc` leaves it alone.
pub async fn heartbeat(store: &Store, table: &str, generation: &str) -> Result<(), TableError> {
    let body = serde_json::json!({ "heartbeat_ms": chrono::Utc::now().timestamp_millis() });
    Ok(store.put(&writing_path(table, generation), Bytes::from(body.to_string())).await?)
}

/// The writer finished (or gave up): the generation is no longer being written.
pub async fn writer_done(store: &Store, table: &str, generation: &str) -> Result<(), TableError> {
    Ok(store.delete(&writing_path(table, generation)).await?)
}

/// A writer said within the last minute that it is writing the generation.
pub async fn is_being_written(store: &Store, table: &str, generation: &str) -> Result<bool, TableError> {
    let path = writing_path(table, generation);
    match store.get(&path).await {
        Ok(data) => {
            let heartbeat = serde_json::from_slice::<serde_json::Value>(&data).ok().and_then(|v| v["heartbeat_ms"].as_i64()).unwrap_or(0);
            Ok(chrono::Utc::now().timestamp_millis() - heartbeat < WRITER_STALE_MS)
        }
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Objects left under generations `gc` already removed (written by a replay that went on
/// after the removal); deletes them and returns how many there were.
pub async fn sweep_removed(store: &Store, table: &str) -> Result<usize, TableError> {
    let mut removed = 0;
    for record in records(store, table).await?.into_iter().filter(|r| r.removed_ms.is_some()) {
        removed += delete_objects(store, table, &record.generation).await?;
    }
    Ok(removed)
}

/// Deletes a generation's data, quarantine and state objects; returns how many there were.
async fn delete_objects(store: &Store, table: &str, generation: &str) -> Result<usize, TableError> {
    let mut removed = 0;
    for prefix in [format!("{table}/{generation}/"), format!("{table}/_errors/{generation}/"), format!("{table}/_kappa/{generation}/")] {
        for object in store.list(&prefix).await? {
            store.delete(&object.path).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

pub async fn is_complete(store: &Store, table: &str, generation: &str) -> Result<bool, TableError> {
    match store.get(&complete_path(table, generation)).await {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Every generation with its totals (from its last commit), oldest first.
pub async fn summaries(store: &Store, table: &str) -> Result<Vec<GenerationSummary>, TableError> {
    let current = current(store, table).await?.map(|p| p.generation);
    let mut summaries = Vec::new();
    for record in records(store, table).await?.into_iter().filter(|r| r.removed_ms.is_none()) {
        let complete = is_complete(store, table, &record.generation).await?;
        let commits = store.list(&format!("{table}/_kappa/{}/commits/", record.generation)).await?;
        let (count, totals) = match commits.last() {
            Some(last) => {
                let commit: Commit = parse(&last.path, &store.get(&last.path).await?)?;
                (commit.commit, commit.totals)
            }
            None => (0, Totals::default()),
        };
        summaries.push(GenerationSummary { current: current.as_deref() == Some(record.generation.as_str()), complete, record, commits: count, totals });
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
    use kappa_common::store::LocalStore;

    #[tokio::test]
    async fn switches_are_atomic_and_conditional() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path()));
        assert_eq!(current(&store, "t").await.unwrap(), None);
        let first = create(&store, "t", "consumer").await.unwrap();
        let second = create(&store, "t", "replay").await.unwrap();
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
        assert!(switch(&store, "t", "gen-000077", None).await.is_err(), "no such generation");
        // The current generation is never removed; an old one is, whole.
        assert!(remove(&store, "t", &second).await.is_err());
        store.put(&format!("t/{first}/year=2025/a.parquet"), Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(remove(&store, "t", &first).await.unwrap(), 1);
        assert_eq!(summaries(&store, "t").await.unwrap().len(), 1);
        // Its number is never given out again.
        assert_eq!(create(&store, "t", "replay").await.unwrap(), "gen-000003");
    }

    #[tokio::test]
    async fn what_a_replay_writes_after_gc_removed_its_generation_is_swept_and_never_completed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path()));
        let live = create(&store, "t", "consumer").await.unwrap();
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
