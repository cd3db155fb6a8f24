//! Which generation each version of the table held, and what a version holds: the truth that
//! `status` and `describe` report, whoever wrote the table (our own records are only hints:
//! a foreign compaction, vacuum or delete changes the rows without telling them, and `_kappa/`
//! can be lost).

use deltalake_core::logstore::object_store::path::Path;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::actions::parse_actions;
use super::authors::AUTHOR_KINDS;
use super::{DeltaError, LakeTable, TableLocation};
use crate::state::GENERATION_PROPERTY;

/// Table property a switch sets: the version at which the generation it made current became
/// current (the switch's own version), so that what happened since is read from there, not
/// found by reading the whole log.
pub const GENERATION_SINCE_PROPERTY: &str = "kappa.generationSince";

/// Commits read at once when a whole stretch of the log is read.
const PARALLEL_READS: usize = 16;

/// The versions during which the table held one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub generation: String,
    pub first: u64,
    pub last: u64,
    /// False when `first` is only where the log's memory begins (log retention removed the
    /// commits before it): the generation became current earlier, at a version unknown.
    pub start_known: bool,
}

/// Rows, files and bytes of a version, from its files' entries in the log (rows from their
/// statistics; a file without them counts as `rows_unknown`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VersionTotals {
    pub version: u64,
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
    pub rows_unknown: u64,
}

impl LakeTable {
    /// The rows, files and bytes of the loaded version.
    pub async fn totals(&mut self) -> Result<VersionTotals, DeltaError> {
        let mut totals = VersionTotals { version: self.version().unwrap_or_default(), ..VersionTotals::default() };
        for file in self.file_details().await? {
            totals.files += 1;
            totals.bytes += file.size.max(0) as u64;
            match file.num_records {
                Some(rows) => totals.rows += rows,
                None => totals.rows_unknown += 1,
            }
        }
        Ok(totals)
    }

    /// The table as of `version` (time travel).
    pub async fn open_at(name: &str, location: &TableLocation, version: u64) -> Result<LakeTable, DeltaError> {
        let delta = |source| DeltaError::Delta { table: name.to_string(), source };
        let table = location.builder().map_err(delta)?.with_version(version).load().await.map_err(delta)?;
        Ok(LakeTable { name: name.to_string(), location: location.clone(), table, own: None })
    }

    /// The oldest version of the unbroken run of commits the log holds up to the latest (one
    /// listing of `_delta_log/`).
    pub(super) async fn oldest_commit(&self) -> Result<u64, DeltaError> {
        let latest = self.version().unwrap_or_default();
        let store = self.table.log_store().object_store(None);
        let listed: Vec<_> = store.list(Some(&Path::from("_delta_log"))).try_collect().await.map_err(|e| self.delta(e.into()))?;
        let mut commits: Vec<u64> = listed
            .iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?;
                let (digits, rest) = name.split_once('.')?;
                (rest == "json" && digits.len() == 20).then(|| digits.parse().ok()).flatten()
            })
            .filter(|v| *v <= latest)
            .collect();
        commits.sort_unstable();
        let mut oldest = latest;
        while oldest > 0 && commits.binary_search(&(oldest - 1)).is_ok() {
            oldest -= 1;
        }
        Ok(oldest)
    }

    /// The actions of the commits `from..=to` of `kinds` (all if `None`; see
    /// [`parse_actions`]), read [`PARALLEL_READS`] at a time, in order; `None` for a version the
    /// log no longer holds.
    pub(super) async fn commits(&self, from: u64, to: u64, kinds: Option<&[&str]>) -> Result<Vec<(u64, Option<Vec<Value>>)>, DeltaError> {
        let log_store = self.table.log_store();
        futures::stream::iter(from..=to)
            .map(|version| {
                let log_store = log_store.clone();
                async move {
                    let bytes = log_store.read_commit_entry(version).await.map_err(|e| self.delta(e))?;
                    let actions = bytes.map(|bytes| parse_actions(&self.name, version, &bytes, kinds)).transpose()?;
                    Ok::<_, DeltaError>((version, actions))
                }
            })
            .buffered(PARALLEL_READS)
            .try_collect()
            .await
    }

    /// The leased shards' writers (`kappa-shard:*` app ids) whose `txn` a commit from `from`
    /// to `to` carries, in the order first met; versions the log no longer holds are passed.
    pub async fn shard_writers(&self, from: u64, to: u64) -> Result<Vec<String>, DeltaError> {
        let mut app_ids: Vec<String> = Vec::new();
        for (_, actions) in self.commits(from, to, Some(&["txn"])).await? {
            for action in actions.iter().flatten() {
                if let Some(app_id) = action.pointer("/txn/appId").and_then(|a| a.as_str())
                    && app_id.starts_with(crate::state::SHARD_APP_PREFIX)
                    && !app_ids.iter().any(|known| known == app_id)
                {
                    app_ids.push(app_id.to_string());
                }
            }
        }
        Ok(app_ids)
    }

    /// The generations the versions the log still holds belonged to, oldest first: one span per
    /// stretch of versions whose `kappa.generation` property was the same.
    pub async fn spans(&self) -> Result<Vec<Span>, DeltaError> {
        let latest = self.version().unwrap_or_default();
        let oldest = self.oldest_commit().await?;
        // What held before the log's memory begins: the table as of the version before its
        // oldest commit, when a checkpoint there rebuilds it; else as of the oldest commit
        // (then whether that commit itself changed the generation is only known if it is a
        // switch's).
        let property = |table: &LakeTable| table.configuration().ok().and_then(|c| c.get(GENERATION_PROPERTY).cloned());
        let mut generation = None;
        let mut seeded_after_oldest = false;
        if oldest > 0 {
            match LakeTable::open_at(&self.name, &self.location, oldest - 1).await {
                Ok(before) => generation = property(&before),
                Err(_) => {
                    if let Ok(at) = LakeTable::open_at(&self.name, &self.location, oldest).await {
                        generation = property(&at);
                        seeded_after_oldest = true;
                    }
                }
            }
        }
        let mut spans: Vec<Span> = Vec::new();
        for (version, actions) in self.commits(oldest, latest, Some(AUTHOR_KINDS)).await? {
            let mut changed = false;
            let is_switch = actions.as_deref().is_some_and(|a| matches!(super::authors::author_of(a), super::Author::Switch { .. }));
            for action in actions.iter().flatten() {
                if let Some(metadata) = action.get("metaData") {
                    let set = metadata["configuration"][GENERATION_PROPERTY].as_str().map(str::to_string);
                    changed |= set != generation || version == 0 || (seeded_after_oldest && version == oldest && is_switch);
                    generation = set;
                }
            }
            let Some(current) = &generation else { continue };
            match spans.last_mut() {
                Some(span) if &span.generation == current => span.last = version,
                _ => spans.push(Span { generation: current.clone(), first: version, last: version, start_known: changed || version == 0 }),
            }
        }
        Ok(spans)
    }
}
