//! What a compaction needs from the table: the live generation's files, one commit that
//! replaces some of them without changing the rows (`dataChange: false`), and the vacuum that
//! deletes replaced files once no reader can need them.
//!
//! A replaced file stays in storage after the commit: readers that planned a query on an
//! earlier version still read it, and time travel reaches it. The consumer's restart spares it
//! (it deletes only objects the log never named), and [`Table::vacuum`] deletes it after the
//! retention.

use std::collections::HashSet;

use crate::TableError;
use crate::delta::DeltaError;
use crate::state::DataFile;

use super::Table;
use super::naming::delta_file;

/// The writer id of compactions in the Delta log (`txn.appId`).
pub const COMPACTION_APP_ID: &str = "kappa-compact";

/// The prefix of compacted files' names: the consumer's own are `part-…`.
pub const COMPACTED_PREFIX: &str = "compacted-";

/// A data file of the live generation.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveFile {
    /// Relative to the generation, e.g. `year=2025/month=03/day=19/part-….parquet`.
    pub path: String,
    /// The Hive directory, e.g. `year=2025/month=03/day=19`.
    pub partition: String,
    pub bytes: u64,
    pub rows: Option<u64>,
    /// When the commit that added it was made (ms since the epoch).
    pub added_ms: i64,
}

impl Table {
    /// The live generation's files as the latest version holds them, sorted by path (so by
    /// partition, then by name).
    pub async fn live_files(&self) -> Result<Vec<LiveFile>, TableError> {
        let live = self.live_table("list the files of")?;
        let mut lake = live.lake.lock().await;
        let Some(lake) = lake.as_mut() else { return Ok(Vec::new()) };
        lake.reload().await?;
        let prefix = format!("{}/", self.generation);
        Ok(lake
            .file_details()
            .await?
            .into_iter()
            .filter_map(|f| {
                let path = f.path.strip_prefix(&prefix)?.to_string();
                let partition = path.rsplit_once('/').map_or("", |(dir, _)| dir).to_string();
                Some(LiveFile { path, partition, bytes: f.size as u64, rows: f.num_records, added_ms: f.modification_time })
            })
            .collect())
    }

    /// Replaces `removed` (paths relative to the generation) by `added` in one Delta commit
    /// that changes no rows. Made over commits by others that do not conflict with it (a
    /// consumer's appends); a conflicting one (a switch, another compaction of the same files)
    /// fails it with [`TableError::ConcurrentWriter`], and nothing is lost: the files it
    /// would have removed stay.
    pub async fn commit_compaction(&self, removed: &[String], added: &[DataFile]) -> Result<u64, TableError> {
        let live = self.live_table("compact")?;
        let mut lake = live.lake.lock().await;
        let lake = lake.as_mut().ok_or_else(|| TableError::Invalid { table: self.name.clone(), reason: "there is no Delta table to compact yet".into() })?;
        let partition_columns = lake.partition_columns()?;
        let counter = lake.writer_counter(COMPACTION_APP_ID).await?.unwrap_or(0) + 1;
        let add = added.iter().map(|f| delta_file(&self.generation, f, &partition_columns)).collect::<Result<_, _>>()?;
        let commit = crate::delta::Commit {
            app_id: COMPACTION_APP_ID.to_string(),
            counter,
            previous: (counter > 1).then_some(counter - 1),
            commit_id: format!("{}-{}-{counter}", std::process::id(), chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()),
            add,
            remove: removed.iter().map(|p| format!("{}/{p}", self.generation)).collect(),
            data_change: false,
            replace_all: false,
            setup: None,
            state: serde_json::json!({ "generation": self.generation, "removed": removed.len(), "added": added.len() }),
        };
        match lake.commit(commit).await {
            Ok(version) => Ok(version),
            Err(DeltaError::ConcurrentWriter { .. } | DeltaError::Raced { .. }) => {
                Err(TableError::ConcurrentWriter { table: self.name.clone(), commit: counter as u64 })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a Delta checkpoint of the table as it is now: at the end of a compaction, whose
    /// commits replaced many files (see [`crate::delta::LakeTable::checkpoint_latest`]).
    pub async fn checkpoint(&self) -> Result<(), TableError> {
        let live = self.live_table("checkpoint")?;
        if let Some(lake) = live.lake.lock().await.as_mut() {
            lake.checkpoint_latest().await;
        }
        Ok(())
    }

    /// Files of this generation that a commit removed and the log still remembers (paths
    /// relative to the generation), with when they were removed (ms).
    pub async fn replaced_files(&self) -> Result<Vec<(String, i64)>, TableError> {
        let Some(live) = &self.live else { return Ok(Vec::new()) };
        let mut lake = live.lake.lock().await;
        let Some(lake) = lake.as_mut() else { return Ok(Vec::new()) };
        let prefix = format!("{}/", self.generation);
        Ok(lake.tombstones().await?.into_iter().filter_map(|(path, at)| Some((path.strip_prefix(&prefix)?.to_string(), at))).collect())
    }

    /// Deletes the files of this generation that commits replaced more than `retention` ago
    /// (none the current version holds), and compacted files no commit names (left by a
    /// compaction that was killed before its commit). Returns the deleted paths.
    pub async fn vacuum(&self, retention: std::time::Duration, dry_run: bool) -> Result<Vec<String>, TableError> {
        let current: HashSet<String> = self.live_files().await?.into_iter().map(|f| f.path).collect();
        let replaced = self.replaced_files().await?;
        let horizon = chrono::Utc::now().timestamp_millis() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let remembered: HashSet<&str> = replaced.iter().map(|(p, _)| p.as_str()).collect();
        let mut doomed: Vec<String> = replaced.iter().filter(|(path, at)| *at < horizon && !current.contains(path)).map(|(p, _)| p.clone()).collect();
        let data_prefix = format!("{}/", self.data_prefix());
        for object in self.store.list(&data_prefix).await? {
            let relative = &object.path[data_prefix.len()..];
            let name = relative.rsplit('/').next().unwrap_or(relative);
            if name.starts_with(COMPACTED_PREFIX) && !current.contains(relative) && !remembered.contains(relative) {
                doomed.push(relative.to_string());
            }
        }
        doomed.sort();
        doomed.dedup();
        if !dry_run {
            for path in &doomed {
                self.store.delete(&format!("{data_prefix}{path}")).await?;
            }
        }
        Ok(doomed)
    }

    fn live_table(&self, what: &str) -> Result<&super::Live, TableError> {
        self.live.as_deref().ok_or_else(|| TableError::Invalid {
            table: self.name.clone(),
            reason: format!("generation {} is not the live one; only the live generation's Delta table can {what}", self.generation),
        })
    }
}
