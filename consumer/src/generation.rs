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
}

/// A generation as `kappa-replay status` lists it.
#[derive(Debug, Clone)]
pub struct GenerationSummary {
    pub record: GenerationRecord,
    pub current: bool,
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
        let record = GenerationRecord { generation: generation.clone(), created_ms: chrono::Utc::now().timestamp_millis(), origin: origin.to_string() };
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
    let exists = records(store, table).await?.iter().any(|r| r.generation == generation);
    if !exists {
        return Err(TableError::Invalid { table: table.to_string(), reason: format!("there is no generation {generation}") });
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
        Err(StoreError::AlreadyExists { .. }) => Err(conflict()),
        Err(e) => Err(e.into()),
    }
}

/// Every generation with its totals (from its last commit), oldest first.
pub async fn summaries(store: &Store, table: &str) -> Result<Vec<GenerationSummary>, TableError> {
    let current = current(store, table).await?.map(|p| p.generation);
    let mut summaries = Vec::new();
    for record in records(store, table).await? {
        let commits = store.list(&format!("{table}/_kappa/{}/commits/", record.generation)).await?;
        let (count, totals) = match commits.last() {
            Some(last) => {
                let commit: Commit = parse(&last.path, &store.get(&last.path).await?)?;
                (commit.commit, commit.totals)
            }
            None => (0, Totals::default()),
        };
        summaries.push(GenerationSummary { current: current.as_deref() == Some(record.generation.as_str()), record, commits: count, totals });
    }
    Ok(summaries)
}

/// Deletes a generation: its data, commit log, schema, quarantine and record. Refuses the
/// current one. Returns the number of objects deleted.
pub async fn remove(store: &Store, table: &str, generation: &str) -> Result<usize, TableError> {
    if current(store, table).await?.is_some_and(|p| p.generation == generation) {
        return Err(TableError::Invalid { table: table.to_string(), reason: format!("{generation} is the current generation; it is never removed") });
    }
    let mut removed = 0;
    // The record goes last: a removal cut short is listed, and can be run again.
    for prefix in [format!("{table}/{generation}/"), format!("{table}/_errors/{generation}/"), format!("{table}/_kappa/{generation}/")] {
        for object in store.list(&prefix).await? {
            store.delete(&object.path).await?;
            removed += 1;
        }
    }
    store.delete(&format!("{}{generation}.json", generations_prefix(table))).await?;
    Ok(removed + 1)
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
        assert_eq!(remove(&store, "t", &first).await.unwrap(), 2);
        assert_eq!(records(&store, "t").await.unwrap().len(), 1);
    }
}
