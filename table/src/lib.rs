//! The lake table: a Delta Lake table (DESIGN.md, "Lake layout" and "Commit protocol") whose
//! commits carry what their writers need to resume.
//!
//! ```text
//! <lake>/<table>/_delta_log/…                  the Delta log: what every Delta reader reads
//! <lake>/<table>/<generation>/<partitions>/…   data files, named by the writers
//! ```
//!
//! The table format lives here, apart from the writers: the consumer and replay call this
//! crate, never the reverse. Exactly once, step by step:
//! 1. A writer stores its Parquet files, then commits them in one Delta commit that also
//!    carries a `txn` action (its app id, its commit counter) and, in the commit's metadata
//!    (`commitInfo.kappa`), its resume state and a commit id of its own choosing.
//! 2. A commit is created only if its version is absent (an atomic create locally, a
//!    conditional put on S3), and never retried onto a later version: a writer that lost a race
//!    must not re-base its positions on a log it did not read.
//! 3. After an ambiguous failure (the put reached the store but its answer was lost) the log is
//!    read again: if the commit carrying the writer's counter has the writer's commit id, it is
//!    this commit, and the flush is done; otherwise another writer committed, and this one stops.
//! 4. On restart, a writer reads its counter from the `txn` action (kept in checkpoints) and its
//!    state from the commit that carried it, walking back from the latest version: commits by
//!    other writers (a replay's switch, a compaction) are few.
//! 5. Checkpoints are written every [`CHECKPOINT_INTERVAL`] commits, so opening the table reads
//!    one checkpoint and fewer JSON commits than that, however long the history.

use std::collections::HashMap;

use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, DataType, StructField, StructType, Transaction};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};
use kappa_common::schema::TableSchema;
use serde_json::Value;
use url::Url;

/// Commits between checkpoints: a restart reads one checkpoint and at most this many commits.
pub const CHECKPOINT_INTERVAL: u64 = 100;

/// The key of kappa-lake's own metadata in `commitInfo`.
const METADATA_KEY: &str = "kappa";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    #[error("table {table}: {source}")]
    Delta { table: String, source: DeltaTableError },
    #[error("table {table}: {location} is not a usable table location: {reason}")]
    Location { table: String, location: String, reason: String },
    #[error(
        "table {table}: commit {counter} of writer {app_id} lost to a commit by another writer with the same id; \
         run one consumer per table and source"
    )]
    ConcurrentWriter { table: String, app_id: String, counter: i64 },
    #[error(
        "table {table}: writer {app_id}'s last commit ({counter}) is no longer in the Delta log (older than \
         delta.logRetentionDuration); its resume state is gone"
    )]
    StateGone { table: String, app_id: String, counter: i64 },
    #[error("table {table}: commit {version} of the Delta log is not valid JSON: {source}")]
    CorruptCommit { table: String, version: u64, source: serde_json::Error },
}

/// Where a table lives: `file:///…/lake/events/` or `s3://bucket/prefix/events/`, with the
/// object store's options (endpoint, region, credentials) for S3.
#[derive(Debug, Clone)]
pub struct TableLocation {
    pub url: Url,
    pub storage_options: HashMap<String, String>,
}

impl TableLocation {
    /// A table in a local lake directory (created if missing).
    pub fn local(lake: &std::path::Path, table: &str) -> Result<TableLocation, TableError> {
        let dir = lake.join(table);
        let invalid = |reason: String| TableError::Location { table: table.to_string(), location: dir.display().to_string(), reason };
        std::fs::create_dir_all(&dir).map_err(|e| invalid(e.to_string()))?;
        let dir = dir.canonicalize().map_err(|e| invalid(e.to_string()))?;
        let url = Url::from_directory_path(&dir).map_err(|()| invalid("not an absolute path".into()))?;
        Ok(TableLocation { url, storage_options: HashMap::new() })
    }
}

/// One Parquet file a commit adds: its path relative to the table root, its partition values
/// and size, and the per-column statistics (Delta's JSON: numRecords, minValues, maxValues,
/// nullCount) readers skip files by.
#[derive(Debug, Clone, PartialEq)]
pub struct DataFile {
    pub path: String,
    pub partition_values: HashMap<String, Option<String>>,
    pub size: i64,
    pub stats: Option<String>,
}

/// A writer's last commit, as a restart finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterState {
    /// The table version that commit made.
    pub version: u64,
    /// The writer's commit counter (its `txn` version).
    pub counter: i64,
    pub commit_id: String,
    /// What the writer stored with the commit.
    pub state: Value,
}

/// An open lake table.
pub struct LakeTable {
    name: String,
    table: DeltaTable,
}

impl LakeTable {
    /// Opens the table at `location`, creating it with `schema` (plus the partition columns,
    /// as strings) if there is none. Two writers creating it at once make one table: the
    /// loser of the race opens the winner's.
    pub async fn open_or_create(name: &str, location: &TableLocation, schema: &TableSchema, partition_columns: &[&str]) -> Result<LakeTable, TableError> {
        let delta = |source| TableError::Delta { table: name.to_string(), source };
        let builder = || DeltaTableBuilder::from_url(location.url.clone()).map(|b| b.with_storage_options(location.storage_options.clone()));
        match builder().map_err(delta)?.load().await {
            Ok(table) => return Ok(LakeTable { name: name.to_string(), table }),
            Err(DeltaTableError::NotATable(_)) => {}
            Err(e) => return Err(delta(e)),
        }
        let kernel: StructType = schema.to_arrow().as_ref().try_into_kernel().map_err(|e| delta(DeltaTableError::from(e)))?;
        let mut columns: Vec<StructField> = kernel.fields().cloned().collect();
        columns.extend(partition_columns.iter().map(|p| StructField::new(*p, DataType::STRING, true)));
        let created = builder()
            .map_err(delta)?
            .build()
            .map_err(delta)?
            .create()
            .with_table_name(name)
            .with_columns(columns)
            .with_partition_columns(partition_columns.iter().copied())
            .with_configuration([(TableProperty::CheckpointInterval.as_ref().to_string(), Some(CHECKPOINT_INTERVAL.to_string()))])
            // A create that lost the race must fail, not become a second create at version 1.
            .with_commit_properties(CommitProperties::default().with_max_retries(0))
            .await;
        match created {
            Ok(table) => Ok(LakeTable { name: name.to_string(), table }),
            // Another writer created it first: use theirs.
            Err(_) => Ok(LakeTable { name: name.to_string(), table: builder().map_err(delta)?.load().await.map_err(delta)? }),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The table's current version, as this handle last read it.
    pub fn version(&self) -> Option<u64> {
        self.table.version()
    }

    fn delta(&self, source: DeltaTableError) -> TableError {
        TableError::Delta { table: self.name.clone(), source }
    }

    /// Commits `files` as writer `app_id`'s commit number `counter`, with `state` and
    /// `commit_id` in the commit's metadata. Returns the version made. A commit that exists
    /// with this writer's counter and commit id (an earlier attempt whose answer was lost) is
    /// taken as made; one with another commit id means another writer: [`TableError::ConcurrentWriter`].
    pub async fn commit_flush(&mut self, app_id: &str, counter: i64, commit_id: &str, files: Vec<DataFile>, state: Value) -> Result<u64, TableError> {
        let metadata = serde_json::json!({ "commitId": commit_id, "state": state });
        let properties = CommitProperties::default()
            .with_application_transaction(Transaction::new(app_id, counter))
            .with_metadata([(METADATA_KEY.to_string(), metadata)])
            // Never re-based onto a later version: see step 2 of the module's protocol.
            .with_max_retries(0)
            // Expired-log cleanup lists the whole log after every commit; it runs on its own.
            .with_cleanup_expired_logs(Some(false));
        let actions = files.into_iter().map(|f| Action::Add(add_action(f))).collect();
        let snapshot = self.table.snapshot().map_err(|e| self.delta(e))?.clone();
        let operation = DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None };
        let committed = CommitBuilder::from(properties).with_actions(actions).build(Some(&snapshot), self.table.log_store(), operation).await;
        match committed {
            Ok(finalized) => {
                self.table.update_incremental(Some(finalized.version)).await.map_err(|e| self.delta(e))?;
                Ok(finalized.version)
            }
            Err(failure) => {
                // Ambiguous or lost: the log says which.
                self.table.load().await.map_err(|e| self.delta(e))?;
                match self.writer_state(app_id).await? {
                    Some(found) if found.counter == counter && found.commit_id == commit_id => Ok(found.version),
                    Some(found) if found.counter >= counter => {
                        Err(TableError::ConcurrentWriter { table: self.name.clone(), app_id: app_id.to_string(), counter })
                    }
                    _ => Err(self.delta(failure)),
                }
            }
        }
    }

    /// The last commit of writer `app_id`, if it ever committed.
    pub async fn writer_state(&self, app_id: &str) -> Result<Option<WriterState>, TableError> {
        let log_store = self.table.log_store();
        let snapshot = self.table.snapshot().map_err(|e| self.delta(e))?;
        let Some(counter) = snapshot.transaction_version(log_store.as_ref(), app_id).await.map_err(|e| self.delta(e))? else {
            return Ok(None);
        };
        let gone = || TableError::StateGone { table: self.name.clone(), app_id: app_id.to_string(), counter };
        let latest = snapshot.version();
        for version in (0..=latest).rev() {
            let Some(commit) = log_store.read_commit_entry(version).await.map_err(|e| self.delta(e))? else {
                return Err(gone());
            };
            if let Some(state) = self.carried_state(version, &commit, app_id, counter)? {
                return Ok(Some(state));
            }
        }
        Err(gone())
    }

    /// The writer's state, if commit `version` carries the writer's `txn` at `counter`.
    fn carried_state(&self, version: u64, commit: &[u8], app_id: &str, counter: i64) -> Result<Option<WriterState>, TableError> {
        let mut ours = false;
        let mut info = Value::Null;
        for line in commit.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let action: Value = serde_json::from_slice(line).map_err(|source| TableError::CorruptCommit { table: self.name.clone(), version, source })?;
            if let Some(txn) = action.get("txn") {
                ours |= txn["appId"] == app_id && txn["version"].as_i64() == Some(counter);
            }
            if let Some(commit_info) = action.get("commitInfo") {
                info = commit_info[METADATA_KEY].clone();
            }
        }
        Ok(ours.then(|| WriterState { version, counter, commit_id: info["commitId"].as_str().unwrap_or_default().to_string(), state: info["state"].clone() }))
    }

    /// The paths of the files the current version holds, sorted.
    pub fn files(&self) -> Result<Vec<String>, TableError> {
        let snapshot = self.table.snapshot().map_err(|e| self.delta(e))?;
        let mut paths: Vec<String> = snapshot.log_data().iter().map(|f| f.path().to_string()).collect();
        paths.sort();
        Ok(paths)
    }
}

fn add_action(file: DataFile) -> Add {
    Add {
        path: file.path,
        partition_values: file.partition_values,
        size: file.size,
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change: true,
        stats: file.stats,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
