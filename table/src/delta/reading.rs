//! What a table's log holds, read back: a writer's last state, the history, the files and
//! the removed files of the current version, and whether commits made meanwhile leave a commit
//! valid (step 2 of the protocol in the module above).

use serde_json::Value;

use super::actions::{parse_actions, parse_commit};
use super::{Commit, DeltaError, FileDetail, LakeTable, METADATA_KEY, VersionInfo, WriterState};

/// The kinds of action a writer's state is read from: its `txn` and the `commitInfo` beside it.
const STATE_KINDS: &[&str] = &["txn", "commitInfo"];

impl LakeTable {
    /// True if the commits of `versions` leave `commit` valid: they change no schema,
    /// partitioning or properties, and remove none of the files it removes. (One with this
    /// writer's counter is caught before: its counter moved.)
    pub(super) async fn compatible(&self, commit: &Commit, versions: std::ops::RangeInclusive<u64>) -> Result<bool, DeltaError> {
        let removing: std::collections::HashSet<&str> = commit.remove.iter().map(String::as_str).collect();
        let log_store = self.table.log_store();
        for version in versions {
            let Some(bytes) = log_store.read_commit_entry(version).await.map_err(|e| self.delta(e))? else { return Ok(false) };
            for action in parse_actions(&self.name, version, &bytes, Some(&["metaData", "protocol", "remove"]))? {
                if action.get("metaData").is_some() || action.get("protocol").is_some() {
                    return Ok(false);
                }
                if let Some(path) = action.get("remove").and_then(|r| r["path"].as_str())
                    && removing.contains(path)
                {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The version of `commit` if the log holds it (this writer's counter and commit id).
    pub(super) async fn own_commit(&self, commit: &Commit) -> Result<Option<u64>, DeltaError> {
        Ok(self.writer_state(&commit.app_id).await?.filter(|found| found.counter == commit.counter && found.commit_id == commit.commit_id).map(|f| f.version))
    }

    /// The last commit of writer `app_id`, if it ever committed.
    pub async fn writer_state(&self, app_id: &str) -> Result<Option<WriterState>, DeltaError> {
        let Some(counter) = self.writer_counter(app_id).await? else { return Ok(None) };
        let gone = || DeltaError::StateGone { table: self.name.clone(), app_id: app_id.to_string(), counter };
        let log_store = self.table.log_store();
        let latest = self.version().unwrap_or_default();
        for version in (0..=latest).rev() {
            let Some(commit) = log_store.read_commit_entry(version).await.map_err(|e| self.delta(e))? else {
                // Cleaned up behind a checkpoint: the checkpoint kept the state, if ours wrote it.
                return self.kept_writer_state(app_id, counter).await?.map(Some).ok_or_else(gone);
            };
            if let Some(state) = self.carried_state(version, &commit, app_id, counter)? {
                return Ok(Some(state));
            }
        }
        self.kept_writer_state(app_id, counter).await?.map(Some).ok_or_else(gone)
    }

    /// The writer's state, if commit `version` carries the writer's `txn` at `counter`.
    fn carried_state(&self, version: u64, commit: &[u8], app_id: &str, counter: i64) -> Result<Option<WriterState>, DeltaError> {
        let mut ours = false;
        let mut info = Value::Null;
        for action in parse_actions(&self.name, version, commit, Some(STATE_KINDS))? {
            if let Some(txn) = action.get("txn") {
                ours |= txn["appId"] == app_id && txn["version"].as_i64() == Some(counter);
            }
            if let Some(commit_info) = action.get("commitInfo") {
                info = commit_info[METADATA_KEY].clone();
            }
        }
        Ok(ours.then(|| WriterState { version, counter, commit_id: info["commitId"].as_str().unwrap_or_default().to_string(), state: info["state"].clone() }))
    }

    /// Commit `version` as a chain of writers sharing app id `app_id` sees it: `None` if the log
    /// has no such commit (yet), `Some(None)` if it does not carry `app_id`'s `txn`, else that
    /// `txn`'s version and the state the commit stored.
    pub async fn chain_entry(&self, version: u64, app_id: &str) -> Result<Option<Option<(i64, Value)>>, DeltaError> {
        let log_store = self.table.log_store();
        let Some(commit) = log_store.read_commit_entry(version).await.map_err(|e| self.delta(e))? else { return Ok(None) };
        let mut counter = None;
        let mut info = Value::Null;
        for action in parse_actions(&self.name, version, &commit, Some(STATE_KINDS))? {
            if let Some(txn) = action.get("txn")
                && txn["appId"] == app_id
            {
                counter = txn["version"].as_i64();
            }
            if let Some(commit_info) = action.get("commitInfo") {
                info = commit_info[METADATA_KEY].clone();
            }
        }
        Ok(Some(counter.map(|c| (c, info["state"].clone()))))
    }

    /// The newest versions, newest first, as far back as the log still holds them.
    pub async fn history(&self, limit: usize) -> Result<Vec<VersionInfo>, DeltaError> {
        let log_store = self.table.log_store();
        let latest = self.version().unwrap_or_default();
        let mut versions = Vec::new();
        for version in (0..=latest).rev().take(limit) {
            let Some(commit) = log_store.read_commit_entry(version).await.map_err(|e| self.delta(e))? else { break };
            let mut info = Value::Null;
            let (mut files_added, mut files_removed, mut bytes_added, mut rows_added) = (0, 0, 0, 0);
            for action in parse_commit(&self.name, version, &commit)? {
                if let Some(add) = action.get("add") {
                    files_added += 1;
                    bytes_added += add["size"].as_u64().unwrap_or(0);
                    let stats = add["stats"].as_str().and_then(|s| serde_json::from_str::<Value>(s).ok());
                    rows_added += stats.and_then(|s| s["numRecords"].as_u64()).unwrap_or(0);
                } else if action.get("remove").is_some() {
                    files_removed += 1;
                } else if let Some(commit_info) = action.get("commitInfo") {
                    info = commit_info.clone();
                }
            }
            versions.push(VersionInfo {
                version,
                timestamp_ms: info["timestamp"].as_i64(),
                operation: info["operation"].as_str().unwrap_or("?").to_string(),
                mode: info["operationParameters"]["mode"].as_str().map(str::to_string),
                kappa: info[METADATA_KEY].clone(),
                files_added,
                files_removed,
                bytes_added,
                rows_added,
            });
        }
        Ok(versions)
    }

    /// The columns of the loaded version: name, Delta type, nullable.
    pub fn columns(&self) -> Result<Vec<(String, String, bool)>, DeltaError> {
        let snapshot = self.table.snapshot().map_err(|e| self.delta(e))?;
        Ok(snapshot.schema().fields().map(|f| (f.name().to_string(), f.data_type().to_string(), f.is_nullable())).collect())
    }

    /// The data columns of the loaded version in kappa-lake's types (partition columns left
    /// out), in the table's order: what every reader reads, whoever wrote it. A column of a
    /// type kappa-lake does not write (a foreign writer's struct, say) is an error naming it.
    pub fn data_schema(&self) -> Result<kappa_common::schema::TableSchema, DeltaError> {
        use deltalake_core::kernel::engine::arrow_conversion::TryIntoArrow;
        use kappa_common::schema::{Column, ColumnType, TableSchema};
        let snapshot = self.table.snapshot().map_err(|e| self.delta(e))?;
        let partitions = self.partition_columns()?;
        let invalid = |reason: String| DeltaError::Invalid { table: self.name.clone(), reason };
        let arrow: arrow::datatypes::Schema = snapshot.schema().as_ref().try_into_arrow().map_err(|e| self.delta(deltalake_core::DeltaTableError::from(e)))?;
        let mut columns = Vec::new();
        for field in arrow.fields().iter().filter(|f| !partitions.contains(f.name())) {
            let column_type = ColumnType::of_table_column(field.data_type()).ok_or_else(|| {
                invalid(format!("column {} has the type {} in the Delta log, which kappa-lake does not write", field.name(), field.data_type()))
            })?;
            columns.push(Column { name: field.name().clone(), column_type, nullable: field.is_nullable() });
        }
        TableSchema::new(columns).map_err(|e| invalid(format!("the Delta log's schema: {e}")))
    }

    /// Brings the loaded snapshot up to this handle's own commits (files are read from it).
    pub(super) async fn catch_up(&mut self) -> Result<(), DeltaError> {
        if let Some(own) = self.own.take() {
            let result = self.table.update_incremental(Some(own.version)).await;
            result.map_err(|e| self.delta(e))?;
        }
        Ok(())
    }

    /// The files the current version holds, sorted by path, with what planning a compaction
    /// needs.
    pub async fn file_details(&mut self) -> Result<Vec<FileDetail>, DeltaError> {
        self.catch_up().await?;
        let snapshot = self.table.snapshot().map_err(|e| self.delta(e))?;
        let mut files: Vec<FileDetail> = snapshot
            .log_data()
            .iter()
            .map(|f| FileDetail {
                path: f.path().to_string(),
                partition_values: f.partition_values_map(),
                size: f.size(),
                modification_time: f.modification_time(),
                num_records: f.num_records().map(|n| n as u64),
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Files removed from the table that the log still remembers (until
    /// `delta.deletedFileRetentionDuration`): path and when it was removed (ms).
    pub async fn tombstones(&mut self) -> Result<Vec<(String, i64)>, DeltaError> {
        use futures::TryStreamExt as _;
        self.catch_up().await?;
        let snapshot = self.table.snapshot().map_err(|e| self.delta(e))?;
        let log_store = self.table.log_store();
        let views: Vec<_> = snapshot.all_tombstones(log_store.as_ref()).try_collect().await.map_err(|e| self.delta(e))?;
        Ok(views.iter().map(|t| (t.path().to_string(), t.deletion_timestamp().unwrap_or_default())).collect())
    }

    /// Every path (relative to the table root, decoded) that the Delta log names: the current
    /// version's files and the removed files it still remembers, those removed before
    /// `removed_since` (ms) left out. What no tool may delete.
    pub async fn named_files(&mut self, removed_since: Option<i64>) -> Result<std::collections::HashSet<String>, DeltaError> {
        // The snapshot's paths are decoded already (as the store names objects).
        let mut named: std::collections::HashSet<String> = self.files().await?.into_iter().collect();
        let tombstones = self.tombstones().await?.into_iter();
        named.extend(tombstones.filter(|(_, at)| removed_since.is_none_or(|since| *at >= since)).map(|(p, _)| p));
        Ok(named)
    }

    /// The loaded version's files as `add` actions (paths, partition values, sizes, statistics):
    /// what a switch back to this version adds again.
    pub async fn add_actions(&mut self) -> Result<Vec<deltalake_core::kernel::Add>, DeltaError> {
        self.catch_up().await?;
        let snapshot = self.table.snapshot().map_err(|e| self.delta(e))?;
        // The only public way to an `add` from a snapshot's file (its replacement is internal).
        #[allow(deprecated)]
        Ok(snapshot.log_data().iter().map(|f| f.add_action()).collect())
    }

    /// The paths of the files the current version holds, sorted.
    pub async fn files(&mut self) -> Result<Vec<String>, DeltaError> {
        self.catch_up().await?;
        let snapshot = self.table.snapshot().map_err(|e| self.delta(e))?;
        let mut paths: Vec<String> = snapshot.log_data().iter().map(|f| f.path().to_string()).collect();
        paths.sort();
        Ok(paths)
    }
}

/// A path as a commit's JSON writes it (a relative URL: `branch=Al%20Giza/…`) as the store
/// names the object, and as the snapshot's file lists give it (they decode it).
pub(crate) fn decoded(path: &str) -> String {
    if !path.contains('%') {
        return path.to_string();
    }
    object_store::path::Path::from_url_path(path).map_or_else(|_| path.to_string(), |p| p.to_string())
}
