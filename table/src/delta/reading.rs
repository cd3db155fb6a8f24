//! What a table's log holds, read back: a writer's last state, the history, the files and
//! the removed files of the current version, and whether commits made meanwhile leave a commit
//! valid (step 2 of the protocol in the module above).

use std::collections::HashMap;

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

    /// The version after `base` whose commit carries `commit`'s id, if one does: an attempt
    /// whose answer was lost landed, whatever other writers committed after it. Looked for by
    /// the id among every commit since the attempt's base, not only at the writer's counter: a
    /// chain of writers sharing one counter (the consumers of an SQS queue) moves it on past a
    /// commit whose writer never heard that it landed.
    pub(super) async fn find_own(&self, commit: &Commit, base: u64) -> Result<Option<u64>, DeltaError> {
        let log_store = self.table.log_store();
        let latest = self.version().unwrap_or_default();
        for version in base + 1..=latest {
            let Some(bytes) = log_store.read_commit_entry(version).await.map_err(|e| self.delta(e))? else { continue };
            let ours = parse_actions(&self.name, version, &bytes, Some(&["commitInfo"]))?
                .iter()
                .any(|action| action["commitInfo"][METADATA_KEY]["commitId"].as_str() == Some(commit.commit_id.as_str()));
            if ours {
                return Ok(Some(version));
            }
        }
        Ok(None)
    }

    /// The last commit of writer `app_id`, if it ever committed.
    pub async fn writer_state(&self, app_id: &str) -> Result<Option<WriterState>, DeltaError> {
        Ok(self.writer_states(&[app_id.to_string()]).await?.remove(app_id))
    }

    /// The last commit of each writer of `app_ids` that ever committed, found without walking
    /// the log back to it: a lease move reads the state of every shard it takes, and a shard's
    /// last commit may lie 10,000 commits back (a quiet shard, or a consumer's hand-over at a
    /// switch), each a GET on S3. Step by step:
    /// 1. each writer's counter, from the loaded snapshot (checkpoints keep `txn` actions);
    /// 2. one walk back over the commits since the last checkpoint (fewer than
    ///    [`super::CHECKPOINT_INTERVAL`] when this crate writes them), for all writers at once;
    /// 3. for the writers not found there, the state the checkpoint kept beside it
    ///    (`kept_state.rs`: every writer that committed since the checkpoint before), one GET
    ///    each, by exact counter;
    /// 4. only for a writer still not found (a checkpoint another tool wrote, or one whose
    ///    keeping failed) the rest of the walk, back as far as the log goes.
    pub async fn writer_states(&self, app_ids: &[String]) -> Result<HashMap<String, WriterState>, DeltaError> {
        let mut wanted: HashMap<&str, i64> = HashMap::new();
        for app_id in app_ids {
            if let Some(counter) = self.writer_counter(app_id).await? {
                wanted.insert(app_id.as_str(), counter);
            }
        }
        let mut found = HashMap::new();
        if wanted.is_empty() {
            return Ok(found);
        }
        let latest = self.version().unwrap_or_default();
        // The walk stops short of the checkpoint: what it covers was kept beside it.
        let checkpoint = self.last_checkpoint().await?.filter(|c| *c <= latest);
        let recent = checkpoint.map_or(0, |c| c + 1)..=latest;
        if self.walk_for_states(recent.rev(), &mut wanted, &mut found).await? {
            return Ok(found);
        }
        let mut kept = Vec::new();
        for (app_id, counter) in &wanted {
            if let Some(state) = self.kept_writer_state(app_id, *counter).await? {
                kept.push((app_id.to_string(), state));
            }
        }
        for (app_id, state) in kept {
            wanted.remove(app_id.as_str());
            found.insert(app_id, state);
        }
        if let Some(checkpoint) = checkpoint
            && !wanted.is_empty()
        {
            self.walk_for_states((0..=checkpoint).rev(), &mut wanted, &mut found).await?;
        }
        if let Some((app_id, counter)) = wanted.into_iter().next() {
            return Err(DeltaError::StateGone { table: self.name.clone(), app_id: app_id.to_string(), counter });
        }
        Ok(found)
    }

    /// Walks `versions` (newest first) for the commits carrying `wanted`'s counters, moving
    /// each writer found from `wanted` to `found`. True once none is left wanted; stops at a
    /// version the log no longer holds (cleaned up behind a checkpoint).
    async fn walk_for_states(
        &self,
        versions: impl Iterator<Item = u64>,
        wanted: &mut HashMap<&str, i64>,
        found: &mut HashMap<String, WriterState>,
    ) -> Result<bool, DeltaError> {
        let log_store = self.table.log_store();
        for version in versions {
            if wanted.is_empty() {
                break;
            }
            let Some(commit) = log_store.read_commit_entry(version).await.map_err(|e| self.delta(e))? else { break };
            for (app_id, state) in self.carried_states(version, &commit, wanted)? {
                wanted.remove(app_id.as_str());
                found.insert(app_id, state);
            }
        }
        Ok(wanted.is_empty())
    }

    /// The writers of `wanted` whose `txn` commit `version` carries at their counter, each with
    /// the state the commit stored.
    fn carried_states(&self, version: u64, commit: &[u8], wanted: &HashMap<&str, i64>) -> Result<Vec<(String, WriterState)>, DeltaError> {
        let mut ours = Vec::new();
        let mut info = Value::Null;
        for mut action in parse_actions(&self.name, version, commit, Some(STATE_KINDS))? {
            if let Some(txn) = action.get("txn")
                && let (Some(app_id), Some(counter)) = (txn["appId"].as_str(), txn["version"].as_i64())
                && wanted.get(app_id) == Some(&counter)
            {
                ours.push((app_id.to_string(), counter));
            }
            if let Some(commit_info) = action.get_mut("commitInfo") {
                info = commit_info[METADATA_KEY].take();
            }
        }
        let commit_id = info["commitId"].as_str().unwrap_or_default().to_string();
        let state = |counter| WriterState { version, counter, commit_id: commit_id.clone(), state: info["state"].clone() };
        Ok(ours.into_iter().map(|(app_id, counter)| (app_id, state(counter))).collect())
    }

    /// The version of the table's last checkpoint (`_delta_log/_last_checkpoint`), if it has one.
    pub(super) async fn last_checkpoint(&self) -> Result<Option<u64>, DeltaError> {
        use deltalake_core::logstore::object_store::ObjectStoreExt as _;
        let store = self.table.log_store().object_store(None);
        let path = object_store::path::Path::from("_delta_log/_last_checkpoint");
        let bytes = match store.get(&path).await {
            Ok(result) => result.bytes().await.map_err(|e| self.delta(e.into()))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.delta(e.into())),
        };
        // A hint only: unreadable, it is as if there were none (the walk goes all the way).
        Ok(serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| v["version"].as_u64()))
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
