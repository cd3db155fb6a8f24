//! The register of a table's generations, and what their writers leave beside them.
//!
//! ```text
//! <table>/_kappa/generations/<generation>.json   one record per generation: created, by what
//! <table>/_kappa/<generation>/complete.json      its writer (a replay) finished it
//! ```
//!
//! Numbers are never given out twice (`gen-000001`, `gen-000002`, …): archive objects are named
//! after them, and a removed generation keeps its record.

use bytes::Bytes;
use kappa_common::store::{Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::TableError;
use crate::state::parse;

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
    /// Set by the switch that moved the table off this generation: until the retention has
    /// passed since, readers may time-travel to a version that holds its files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_ms: Option<i64>,
}

pub(crate) fn generations_prefix(table: &str) -> String {
    format!("{table}/_kappa/generations/")
}

fn generation_number(name: &str) -> Option<u32> {
    name.strip_prefix("gen-")?.parse().ok()
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

/// Creates the next generation (`gen-000001`, `gen-000002`, …) and returns its name. A name
/// is never given out twice, even when this register was lost (`_kappa/` deleted): names the
/// Delta log uses and names with objects in storage are taken too. A replay once wrote into
/// the live generation's directory, and removed its files, after `_kappa/` was lost.
pub async fn create(store: &Store, table: &str, origin: &str) -> Result<String, TableError> {
    loop {
        let generation = next_name(store, table).await?;
        if claim(store, table, &generation, origin).await? {
            return Ok(generation);
        }
    }
}

/// The next generation name that nothing uses: not in the register, not named by the Delta log,
/// no objects under it. A writer that must announce a generation before it exists (so that no
/// gc removes it between its creation and the announcement) announces this name, then
/// [`claim`]s it.
pub async fn next_name(store: &Store, table: &str) -> Result<String, TableError> {
    let recorded = records(store, table).await?.iter().filter_map(|r| generation_number(&r.generation)).max().unwrap_or(0);
    let mut next = recorded.max(in_the_log(store, table).await?.unwrap_or(0)) + 1;
    loop {
        let generation = format!("gen-{next:06}");
        let used = |prefix: String| async move { store.list(&prefix).await.map(|objects| !objects.is_empty()) };
        if used(format!("{table}/{generation}/")).await? || used(format!("{table}/_kappa/{generation}/")).await? {
            tracing::warn!(generation, "objects exist under a generation name the register does not know: taking the next name");
            next += 1;
            continue;
        }
        return Ok(generation);
    }
}

/// Records `generation`, made by `origin`, if no one did: false when another writer took the
/// name at the same moment.
pub async fn claim(store: &Store, table: &str, generation: &str, origin: &str) -> Result<bool, TableError> {
    let record = GenerationRecord {
        generation: generation.to_string(),
        created_ms: chrono::Utc::now().timestamp_millis(),
        origin: origin.to_string(),
        removed_ms: None,
        retired_ms: None,
    };
    let path = format!("{}{generation}.json", generations_prefix(table));
    match store.put_if_absent(&path, Bytes::from(serde_json::to_vec_pretty(&record).expect("serializes"))).await {
        Ok(()) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The highest generation number the Delta log names: the table's generation property, and
/// the directories of the files it holds or remembers.
async fn in_the_log(store: &Store, table: &str) -> Result<Option<u32>, TableError> {
    let Some(mut lake) = crate::delta::LakeTable::open(table, &crate::lake::table_location(store, table)?).await? else { return Ok(None) };
    let property = lake.configuration()?.get(crate::state::GENERATION_PROPERTY).and_then(|g| generation_number(g));
    let named = lake.named_files(None).await?;
    Ok(named.iter().filter_map(|path| generation_number(path.split('/').next().unwrap_or_default())).chain(property).max())
}

/// The generation a consumer writes into a table that has no Delta table yet: the first one a
/// consumer made and never committed to, or a new one. Consumers starting at once (workers
/// sharing the shards through leases) must all write the same one, and leave no other behind:
/// - a consumer that finds one takes the first (lowest), as every other does;
/// - one that finds none claims the next name; when another claimed that name first, it looks
///   again and takes theirs;
/// - one whose claim succeeded after another's (it listed before the other claimed, and
///   numbered after it) takes the first, and marks its own removed at once: nothing was ever
///   written under it, and a removed record keeps its number from being given out again.
///   Every consumer that can see the later claim sees the earlier (a claim is made after its
///   maker's listing), so none takes the later one.
pub async fn unborn(store: &Store, table: &str) -> Result<String, TableError> {
    let unborn = |r: &&GenerationRecord| r.origin == "consumer" && r.removed_ms.is_none();
    loop {
        if let Some(first) = records(store, table).await?.iter().find(unborn) {
            return Ok(first.generation.clone());
        }
        let generation = next_name(store, table).await?;
        if !claim(store, table, &generation, "consumer").await? {
            continue;
        }
        let first = records(store, table).await?.iter().find(unborn).map(|r| r.generation.clone());
        match first {
            Some(first) if first != generation => {
                update(store, table, &generation, |record| record.removed_ms = Some(chrono::Utc::now().timestamp_millis())).await?;
                tracing::info!(generation = %first, unused = %generation, "another consumer made the table's first generation at the same moment: writing into theirs");
                return Ok(first);
            }
            _ => return Ok(generation),
        }
    }
}

/// Records when the table stopped holding `generation`.
pub(crate) async fn retire(store: &Store, table: &str, generation: &str, at_ms: i64) -> Result<(), TableError> {
    update(store, table, generation, |record| record.retired_ms = Some(at_ms)).await
}

/// Rewrites `generation`'s record with `change` (nothing if it has none).
async fn update(store: &Store, table: &str, generation: &str, change: impl FnOnce(&mut GenerationRecord)) -> Result<(), TableError> {
    let path = format!("{}{generation}.json", generations_prefix(table));
    let mut record: GenerationRecord = match store.get(&path).await {
        Ok(data) => parse(&path, &data)?,
        Err(StoreError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    change(&mut record);
    Ok(store.put(&path, Bytes::from(serde_json::to_vec_pretty(&record).expect("serializes"))).await?)
}

pub(crate) fn complete_path(table: &str, generation: &str) -> String {
    format!("{table}/_kappa/{generation}/complete.json")
}

/// Marks a generation finished: only complete generations can become current. A generation
/// that `gc` removed meanwhile is not: what was written after the removal is swept by the
/// next `gc`.
pub async fn mark_complete(store: &Store, table: &str, generation: &str) -> Result<(), TableError> {
    mark_complete_for(store, table, generation, false).await
}

/// Marks a generation finished by a replay that will switch to it next (`switch`): if that
/// replay is killed before its switch, the next one with the same settings finishes it
/// instead of starting another ([`awaits_switch`]).
pub async fn mark_complete_for(store: &Store, table: &str, generation: &str, switch: bool) -> Result<(), TableError> {
    let record_path = format!("{}{generation}.json", generations_prefix(table));
    let record: GenerationRecord = parse(&record_path, &store.get(&record_path).await?)?;
    if record.removed_ms.is_some() {
        return Err(TableError::Invalid {
            table: table.to_string(),
            reason: format!("{generation} was removed by gc while it was being written; replay again"),
        });
    }
    let body = serde_json::json!({ "completed_ms": chrono::Utc::now().timestamp_millis(), "switch": switch });
    Ok(store.put(&complete_path(table, generation), Bytes::from(body.to_string())).await?)
}

/// Whether a replay that asked for a switch completed `generation` (and may not have switched).
pub async fn awaits_switch(store: &Store, table: &str, generation: &str) -> Result<bool, TableError> {
    match store.get(&complete_path(table, generation)).await {
        Ok(data) => Ok(serde_json::from_slice::<serde_json::Value>(&data).is_ok_and(|v| v["switch"] == true)),
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub async fn is_complete(store: &Store, table: &str, generation: &str) -> Result<bool, TableError> {
    match store.get(&complete_path(table, generation)).await {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_common::store::LocalStore;

    /// Issue 61, 4: consumers starting at the same instant on a new table all write one
    /// generation, and no other is left behind as if a replay had been interrupted. Each round
    /// starts three at once on a fresh table, with the claims interleaved by the runtime's
    /// threads; then a later start still picks the same one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn consumers_starting_at_once_make_one_generation() {
        for round in 0..30 {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::Local(LocalStore::new(dir.path()));
            let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(3));
            let starts: Vec<_> = (0..3)
                .map(|_| {
                    let (store, barrier) = (store.clone(), barrier.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        unborn(&store, "t").await.unwrap()
                    })
                })
                .collect();
            let mut chosen = Vec::new();
            for start in starts {
                chosen.push(start.await.unwrap());
            }
            assert!(chosen.iter().all(|g| g == &chosen[0]), "round {round}: {chosen:?}");
            let live: Vec<String> = records(&store, "t").await.unwrap().into_iter().filter(|r| r.removed_ms.is_none()).map(|r| r.generation).collect();
            assert_eq!(live, vec![chosen[0].clone()], "round {round}: nothing else is left as a generation");
            assert_eq!(unborn(&store, "t").await.unwrap(), chosen[0]);
        }
    }
}
