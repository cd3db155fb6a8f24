//! What a compaction needs from the table: the live generation's files, one commit that
//! replaces some of them without changing the rows (`dataChange: false`), and the vacuum that
//! deletes replaced files once no reader can need them.
//!
//! A replaced file stays in storage after the commit: readers that planned a query on an
//! earlier version still read it, and time travel reaches it. The consumer's restart spares it
//! (it deletes only objects the log never named), and [`Table::vacuum`] deletes it after the
//! retention.

use crate::TableError;
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
    /// The Hive directory, e.g. `year=2025/month=03/day=19`, named after the partition columns
    /// as the table stores them (see [`super::partition_dir`]).
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
        let columns = lake.partition_columns()?;
        Ok(lake
            .file_details()
            .await?
            .into_iter()
            .filter_map(|f| {
                let path = f.path.strip_prefix(&prefix)?.to_string();
                // Named as the table stores its partition columns: files written before
                // directories were (`year=` beside a data column `year`) merge with their
                // partition's newer ones, into the stored name's directory.
                let partition = super::partition_dir(path.rsplit_once('/').map_or("", |(dir, _)| dir), &columns);
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
            also: Vec::new(),
            fence: false,
            generation: Some(self.generation.clone()),
            app_id: COMPACTION_APP_ID.to_string(),
            counter,
            previous: (counter > 1).then_some(counter - 1),
            commit_id: format!("{}-{}-{counter}", std::process::id(), chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()),
            add,
            remove: removed.iter().map(|p| format!("{}/{p}", self.generation)).collect(),
            data_change: false,
            replace_all: false,
            keep: Vec::new(),
            restore: Vec::new(),
            setup: None,
            state: serde_json::json!({ "generation": self.generation, "removed": removed.len(), "added": added.len() }),
        };
        match lake.commit(commit).await {
            Ok(version) => Ok(version),
            Err(e) => Err(TableError::lost(&self.name, counter as u64, e)),
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

    fn live_table(&self, what: &str) -> Result<&super::Live, TableError> {
        self.live.as_deref().ok_or_else(|| TableError::Invalid {
            table: self.name.clone(),
            reason: format!("generation {} is not the live one; only the live generation's Delta table can {what}", self.generation),
        })
    }
}
