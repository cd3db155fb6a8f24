//! The Delta Lake table underneath (DESIGN.md, "Lake layout" and "Commit protocol"): its
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
//!    conditional put on S3). A writer that lost the race re-bases its commit onto the new
//!    version only if what was committed meanwhile cannot conflict with it: no new schema,
//!    partitioning or generation (a replay's switch), no commit of its own counter, and no
//!    removal of a file it removes. So a consumer's append goes on over a compaction, and a
//!    compaction over a consumer's append; a switch stops both. The version a commit builds on
//!    must also hold the generation it writes: a writer whose view of the log was read again
//!    past a switch (a status check, a compaction sharing its table) while one of its flushes
//!    was on its way would otherwise add the old generation's files on top of the new one,
//!    and its state would then name positions of a generation readers no longer read.
//! 3. After an ambiguous failure (the put reached the store but its answer was lost) the log is
//!    read again: if the commit carrying the writer's counter has the writer's commit id, it is
//!    this commit, and the flush is done; otherwise another writer committed, and this one stops.
//! 4. On restart, a writer reads its counter from the `txn` action (kept in checkpoints) and its
//!    state from the commit that carried it, walking back from the latest version: commits by
//!    other writers (a replay's switch, a compaction) are few.
//! 5. Checkpoints are written every [`CHECKPOINT_INTERVAL`] commits, so opening the table reads
//!    one checkpoint and fewer JSON commits than that, however long the history; and after a
//!    compaction or a switch, which replace many files at once.

use std::collections::{BTreeMap, HashMap};

use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::CommitProperties;
use deltalake_core::kernel::{Action, DataType, Metadata, Protocol, StructField, StructType, Transaction};
use deltalake_core::logstore::CommitOrBytes;
use deltalake_core::{DeltaTable, DeltaTableError, TableProperty};
use kappa_common::schema::TableSchema;
use serde_json::Value;

use self::actions::{add_action, commit_json, metadata, protocol_for};
pub use self::authors::{Author, Authored};
pub use self::damage::diagnose;
pub use self::foreign::{ForeignChanges, ForeignScan};
pub use self::location::TableLocation;
pub use self::spans::{GENERATION_SINCE_PROPERTY, Span, VersionTotals};

mod actions;
mod authors;
mod checkpoint;
mod damage;
mod foreign;
mod kept_state;
mod location;
mod reading;
mod retrying;
mod s3;
mod spans;

/// Commits between checkpoints: a restart reads one checkpoint and at most this many commits.
pub const CHECKPOINT_INTERVAL: u64 = 100;

/// Times a commit is re-based onto commits made meanwhile before the writer gives up.
const MAX_REBASES: usize = 20;

/// The key of kappa-lake's own metadata in `commitInfo`.
const METADATA_KEY: &str = "kappa";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeltaError {
    #[error("table {table}: {source}")]
    Delta { table: String, source: DeltaTableError },
    #[error("table {table}: {location} is not a usable table location: {reason}")]
    Location { table: String, location: String, reason: String },
    /// A leased commit found shards (their `txn` app ids) fenced by a newer owner since it read
    /// them: nothing of it was made.
    #[error("table {table}: the commit was not made: shards {app_ids:?} were taken by another worker (fenced) meanwhile")]
    Fenced { table: String, app_ids: Vec<String> },
    /// Another writer committed with this writer's id (`by` says who, and what to do).
    #[error("table {table}: commit {counter} of writer {app_id} was not made: {by}")]
    ConcurrentWriter { table: String, app_id: String, counter: i64, by: String },
    /// Commits made meanwhile conflict with this one (`by` says whose, and what to do).
    #[error("table {table}: commit {counter} of writer {app_id} was not made: {by}")]
    Raced { table: String, app_id: String, counter: i64, version: u64, by: String },
    /// Files the commit removes (a compaction's) were removed meanwhile by another writer.
    #[error("table {table}: commit {counter} of writer {app_id} was not made: {missing} of the {total} files it replaces were removed meanwhile; {by}")]
    FilesGone { table: String, app_id: String, counter: i64, missing: usize, total: usize, by: String },
    #[error(
        "table {table}: writer {app_id}'s last commit ({counter}) is no longer in the Delta log (older than \
         delta.logRetentionDuration, cleaned up by a tool that did not keep the state beside its checkpoint), so where \
         to resume is unknown; rebuild the table from its source with kappa-replay --switch, which hands the consumer \
         the replay's positions"
    )]
    StateGone { table: String, app_id: String, counter: i64 },
    #[error("table {table}: commit {version} of the Delta log is not valid JSON: {source}")]
    CorruptCommit { table: String, version: u64, source: serde_json::Error },
    #[error("table {table}: {reason}")]
    Invalid { table: String, reason: String },
    /// The log is damaged: the message names the file, what it means and what to do.
    #[error("{message}")]
    Damaged { table: String, message: String },
}

/// The columns, partition columns and properties a table is created with, or changed to by
/// a commit (a schema that grew, a replay that re-partitioned).
#[derive(Debug, Clone, PartialEq)]
pub struct TableSetup {
    /// The data columns: what the Parquet files hold.
    pub schema: TableSchema,
    /// Partition columns (integers: year, month, day, hour), after the data columns.
    pub partition_columns: Vec<String>,
    /// Table properties (`kappa.*` keys: generation, layout).
    pub configuration: BTreeMap<String, String>,
}

impl TableSetup {
    fn struct_type(&self, table: &str) -> Result<StructType, DeltaError> {
        let kernel: StructType =
            self.schema.to_arrow().as_ref().try_into_kernel().map_err(|e| DeltaError::Delta { table: table.to_string(), source: DeltaTableError::from(e) })?;
        let mut columns: Vec<StructField> = kernel.fields().cloned().collect();
        for partition in &self.partition_columns {
            if columns.iter().any(|c| c.name() == partition) {
                return Err(DeltaError::Invalid { table: table.to_string(), reason: format!("partition column {partition} is also a data column") });
            }
            columns.push(StructField::new(partition.as_str(), DataType::INTEGER, true));
        }
        StructType::try_new(columns).map_err(|e| DeltaError::Delta { table: table.to_string(), source: DeltaTableError::from(e) })
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

/// A file of the current version.
#[derive(Debug, Clone, PartialEq)]
pub struct FileDetail {
    pub path: String,
    pub partition_values: HashMap<String, Option<String>>,
    pub size: i64,
    /// When it was added (ms since the epoch).
    pub modification_time: i64,
    pub num_records: Option<u64>,
}

/// One commit by a writer.
#[derive(Debug, Clone)]
pub struct Commit {
    pub app_id: String,
    /// The writer's commit counter: its `txn` version.
    pub counter: i64,
    /// The writer's counter this commit builds on (`None`: its first); a table where the
    /// writer's counter is elsewhere had another writer with the same id.
    pub previous: Option<i64>,
    /// An id of the writer's choosing that tells its own commit from another's.
    pub commit_id: String,
    pub add: Vec<DataFile>,
    /// Files to remove (paths relative to the table root).
    pub remove: Vec<String>,
    /// False for a commit that only rearranges rows (a compaction): its actions say
    /// `dataChange: false`, so streaming readers and change feeds see nothing new.
    pub data_change: bool,
    /// Remove every file of the current version first (a replay's switch), but those in `keep`
    /// (paths relative to the table root: other writers' rows a switch carries over).
    pub replace_all: bool,
    pub keep: Vec<String>,
    /// Files of an earlier version added back as they were (a switch back to a generation a
    /// switch replaced).
    pub restore: Vec<deltalake_core::kernel::Add>,
    /// A new schema, partitioning or properties.
    pub setup: Option<TableSetup>,
    /// What the writer needs to resume, kept in `commitInfo.kappa.state`.
    pub state: Value,
    /// More `txn` actions the commit carries (a leased worker's shards after the first, which
    /// is `app_id`), each checked as `app_id`'s is.
    pub also: Vec<TxnCheck>,
    /// A leased commit: a `txn` found moved by someone else means its shard was fenced by a
    /// newer owner ([`DeltaError::Fenced`]), not a second writer with this id.
    pub fence: bool,
    /// The generation whose files the commit adds: refused as a lost race (step 2 of the
    /// protocol above) if the version it builds on holds another. `None` for a commit that
    /// sets the generation itself (a switch).
    pub generation: Option<String>,
}

/// One more `txn` of a commit: its app id, the version it sets, and the version it expects to
/// find (`None`: none yet).
#[derive(Debug, Clone, PartialEq)]
pub struct TxnCheck {
    pub app_id: String,
    pub counter: i64,
    pub previous: Option<i64>,
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

/// One version of the table, as `describe`, `status` and the report list them.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub version: u64,
    pub timestamp_ms: Option<i64>,
    pub operation: String,
    /// The operation's `mode` (`Append`, `Overwrite`: a replay's switch), if it has one.
    pub mode: Option<String>,
    pub kappa: Value,
    pub files_added: u64,
    pub files_removed: u64,
    pub bytes_added: u64,
    /// The rows of the added files, from their statistics.
    pub rows_added: u64,
}

/// An open lake table.
pub struct LakeTable {
    name: String,
    location: TableLocation,
    /// The table as last loaded: its files, and the state the commits below build on.
    table: DeltaTable,
    /// What this handle committed since it loaded the table, so that a commit needs no new
    /// snapshot: delta-rs rebuilds every file's entry for one, which made a commit cost grow
    /// with the table (6 ms at 50 files, 50 ms at 1,000).
    own: Option<OwnCommits>,
}

/// Commits made by this handle after its snapshot.
#[derive(Debug, Clone)]
struct OwnCommits {
    version: u64,
    counters: HashMap<String, i64>,
    metadata: Option<Metadata>,
    protocol: Option<Protocol>,
}

impl std::fmt::Debug for LakeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeTable").field("name", &self.name).field("version", &self.version()).finish()
    }
}

impl LakeTable {
    /// Opens the table at `location`; `None` if there is none yet.
    pub async fn open(name: &str, location: &TableLocation) -> Result<Option<LakeTable>, DeltaError> {
        let delta = |source| DeltaError::Delta { table: name.to_string(), source };
        match location.builder().map_err(delta)?.load().await {
            Ok(table) => Ok(Some(LakeTable { name: name.to_string(), location: location.clone(), table, own: None })),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(match diagnose(name, location).await {
                Some(message) => DeltaError::Damaged { table: name.to_string(), message },
                None => delta(e),
            }),
        }
    }

    /// Creates the table (version 0). Of two writers creating it at once exactly one does;
    /// the other opens the winner's table, and must check that it is the one it meant.
    pub async fn create(name: &str, location: &TableLocation, setup: &TableSetup) -> Result<LakeTable, DeltaError> {
        let delta = |source| DeltaError::Delta { table: name.to_string(), source };
        let columns: Vec<StructField> = setup.struct_type(name)?.fields().cloned().collect();
        let mut configuration: HashMap<String, Option<String>> = setup.configuration.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
        configuration.insert(TableProperty::CheckpointInterval.as_ref().to_string(), Some(CHECKPOINT_INTERVAL.to_string()));
        let created = location
            .builder()
            .map_err(delta)?
            .build()
            .map_err(delta)?
            .create()
            .with_table_name(name)
            .with_columns(columns)
            .with_partition_columns(setup.partition_columns.iter().cloned())
            .with_configuration(configuration)
            // Our own `kappa.*` properties are not Delta's; readers ignore unknown keys.
            .with_raise_if_key_not_exists(false)
            // A create that lost the race must fail, not become a second create at version 1.
            .with_commit_properties(CommitProperties::default().with_max_retries(0))
            .await;
        match created {
            Ok(table) => Ok(LakeTable { name: name.to_string(), location: location.clone(), table, own: None }),
            Err(error) => match LakeTable::open(name, location).await? {
                // Another writer created it first.
                Some(table) => Ok(table),
                None => Err(delta(error)),
            },
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The table's current version, as this handle last read it.
    pub fn version(&self) -> Option<u64> {
        self.own.as_ref().map(|own| own.version).or(self.table.version())
    }

    fn current_metadata(&self) -> Result<Metadata, DeltaError> {
        match self.own.as_ref().and_then(|own| own.metadata.clone()) {
            Some(metadata) => Ok(metadata),
            None => Ok(self.table.snapshot().map_err(|e| self.delta(e))?.metadata().clone()),
        }
    }

    fn current_protocol(&self) -> Result<Protocol, DeltaError> {
        match self.own.as_ref().and_then(|own| own.protocol.clone()) {
            Some(protocol) => Ok(protocol),
            None => Ok(self.table.snapshot().map_err(|e| self.delta(e))?.protocol().clone()),
        }
    }

    fn delta(&self, source: DeltaTableError) -> DeltaError {
        DeltaError::Delta { table: self.name.clone(), source }
    }

    /// The table's properties.
    pub fn configuration(&self) -> Result<HashMap<String, String>, DeltaError> {
        Ok(self.current_metadata()?.configuration().clone())
    }

    pub fn partition_columns(&self) -> Result<Vec<String>, DeltaError> {
        Ok(self.current_metadata()?.partition_columns().to_vec())
    }

    /// Reads the log again: what other writers committed since.
    pub async fn reload(&mut self) -> Result<(), DeltaError> {
        let result = self.table.update_incremental(None).await;
        self.own = None;
        match result {
            Ok(()) => Ok(()),
            Err(e) => Err(match diagnose(&self.name, &self.location).await {
                Some(message) => DeltaError::Damaged { table: self.name.clone(), message },
                None => self.delta(e),
            }),
        }
    }

    /// The counter of writer `app_id`'s last commit.
    pub async fn writer_counter(&self, app_id: &str) -> Result<Option<i64>, DeltaError> {
        if let Some(counter) = self.own.as_ref().and_then(|own| own.counters.get(app_id)) {
            return Ok(Some(*counter));
        }
        let snapshot = self.table.snapshot().map_err(|e| self.delta(e))?;
        snapshot.transaction_version(self.table.log_store().as_ref(), app_id).await.map_err(|e| self.delta(e))
    }

    /// Makes `commit`, returning the version it made. Re-based onto commits made meanwhile only
    /// if none of them can conflict with it (step 2 of the protocol above). A commit that exists
    /// already with this writer's counter and commit id (an earlier attempt whose answer was
    /// lost) is taken as made.
    pub async fn commit(&mut self, commit: Commit) -> Result<u64, DeltaError> {
        // Re-basing checks the versions made since the base (a switch among them stops the
        // commit); this checks the base itself, which a reload may have moved past a switch.
        if let Some(expected) = &commit.generation {
            let now = self.configuration()?.get(crate::state::GENERATION_PROPERTY).cloned().unwrap_or_default();
            if &now != expected {
                let version = self.version().unwrap_or_default();
                return Err(DeltaError::Raced {
                    table: self.name.clone(),
                    app_id: commit.app_id.clone(),
                    counter: commit.counter,
                    version,
                    by: format!("the table holds generation {now} at version {version} (a switch), and this commit's files are of {expected}"),
                });
            }
        }
        for _ in 0..MAX_REBASES {
            let base = self.version().unwrap_or_default();
            match self.try_commit(&commit).await {
                Err(DeltaError::Raced { version, .. }) if !commit.replace_all && self.compatible(&commit, base + 1..=version).await? => {
                    tracing::debug!(table = %self.name, app_id = %commit.app_id, base, version, "re-basing a commit over commits that do not conflict with it");
                }
                Err(lost @ (DeltaError::ConcurrentWriter { .. } | DeltaError::Raced { .. } | DeltaError::FilesGone { .. })) => {
                    return Err(self.explained(lost, base).await);
                }
                other => return other,
            }
        }
        let version = self.version().unwrap_or_default();
        let lost = DeltaError::Raced { table: self.name.clone(), app_id: commit.app_id.clone(), counter: commit.counter, version, by: String::new() };
        Err(self.explained(lost, version.saturating_sub(MAX_REBASES as u64)).await)
    }

    async fn try_commit(&mut self, commit: &Commit) -> Result<u64, DeltaError> {
        let name = self.name.clone();
        let concurrent = || match commit.fence {
            true => DeltaError::Fenced { table: name.clone(), app_ids: vec![commit.app_id.clone()] },
            false => DeltaError::ConcurrentWriter { table: name.clone(), app_id: commit.app_id.clone(), counter: commit.counter, by: String::new() },
        };
        // A leased commit's other shards: each must still be where this worker left it (or
        // already at this commit's version, if an earlier attempt landed: checked below).
        let mut fenced = Vec::new();
        for txn in &commit.also {
            let now = self.writer_counter(&txn.app_id).await?;
            if now != txn.previous && now != Some(txn.counter) {
                fenced.push(txn.app_id.clone());
            }
        }
        if !fenced.is_empty() {
            return Err(DeltaError::Fenced { table: self.name.clone(), app_ids: fenced });
        }
        match self.writer_counter(&commit.app_id).await? {
            now if now == commit.previous => {}
            Some(now) if now == commit.counter => return self.own_commit(commit).await?.ok_or_else(concurrent),
            _ => return Err(concurrent()),
        }
        let base = self.version().unwrap_or_default();
        if commit.replace_all && self.own.is_some() {
            // Removing every file needs the files as of `base`.
            self.reload().await?;
            return Box::pin(self.try_commit(commit)).await;
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let (operation, parameters) = match (commit.data_change, commit.replace_all) {
            (false, _) => ("OPTIMIZE", serde_json::json!({})),
            (true, true) => ("WRITE", serde_json::json!({ "mode": "Overwrite" })),
            (true, false) => ("WRITE", serde_json::json!({ "mode": "Append" })),
        };
        let info = serde_json::json!({
            "timestamp": now_ms,
            "operation": operation,
            "operationParameters": parameters,
            "isBlindAppend": commit.data_change && !commit.replace_all && commit.remove.is_empty() && commit.setup.is_none(),
            "engineInfo": concat!("kappa-lake/", env!("CARGO_PKG_VERSION")),
            METADATA_KEY: { "commitId": commit.commit_id, "appId": commit.app_id, "counter": commit.counter, "state": commit.state },
        });
        let mut actions = Vec::with_capacity(commit.also.len() + 3); // protocol, metadata, txns
        let (mut new_metadata, mut new_protocol) = (None, None);
        if let Some(setup) = &commit.setup {
            let schema = setup.struct_type(&self.name)?;
            if let Some(protocol) = protocol_for(&self.current_protocol()?, &schema).map_err(|e| self.delta(e))? {
                actions.push(Action::Protocol(protocol.clone()));
                new_protocol = Some(protocol);
            }
            let metadata = metadata(&self.current_metadata()?, &schema, setup).map_err(|e| self.delta(e))?;
            actions.push(Action::Metadata(metadata.clone()));
            new_metadata = Some(metadata);
        }
        actions.push(Action::Txn(Transaction { last_updated: Some(now_ms), ..Transaction::new(&commit.app_id, commit.counter) }));
        actions.extend(commit.also.iter().map(|t| Action::Txn(Transaction { last_updated: Some(now_ms), ..Transaction::new(&t.app_id, t.counter) })));
        // The removes and adds are made into JSON as they are serialized, not gathered into a
        // list of actions first: a compaction's commit of 23,129 removes and 6,342 adds held
        // them all beside their JSON at the peak of the run's memory.
        if !commit.remove.is_empty() {
            self.catch_up().await?;
        }
        let snapshot = match commit.replace_all || !commit.remove.is_empty() {
            true => Some(self.table.snapshot().map_err(|e| self.delta(e))?),
            false => None,
        };
        let log_data = snapshot.map(|s| s.log_data());
        let files = || log_data.iter().flat_map(|data| data.iter());
        // A switch removes every file but those kept; a compaction the files it names.
        let keep: std::collections::HashSet<&str> = commit.keep.iter().map(String::as_str).collect();
        let removing: std::collections::HashSet<&str> = commit.remove.iter().map(String::as_str).collect();
        if !removing.is_empty() {
            let found = files().filter(|f| removing.contains(f.path().as_ref())).count();
            if found != removing.len() {
                // Another writer (a second compaction, a foreign OPTIMIZE or DELETE) removed
                // them: a conflict, not a broken table.
                return Err(DeltaError::FilesGone {
                    table: self.name.clone(),
                    app_id: commit.app_id.clone(),
                    counter: commit.counter,
                    missing: removing.len().saturating_sub(found),
                    total: removing.len(),
                    by: String::new(),
                });
            }
        }
        let all = || {
            // (Each list walks the snapshot only if the commit has one.)
            let replaced = commit.replace_all.then(&files).into_iter().flatten();
            let replaced = replaced.filter(|f| !keep.contains(f.path().as_ref())).map(|f| Action::Remove(f.remove_action(true)));
            let removed = (!removing.is_empty()).then(&files).into_iter().flatten();
            let removed = removed.filter(|f| removing.contains(f.path().as_ref())).map(|f| Action::Remove(f.remove_action(commit.data_change)));
            let added = commit.add.iter().cloned().map(|f| Action::Add(add_action(f, commit.data_change)));
            let restored =
                commit.restore.iter().cloned().map(|add| Action::Add(deltalake_core::kernel::Add { data_change: true, modification_time: now_ms, ..add }));
            actions.iter().cloned().chain(replaced).chain(removed).chain(added).chain(restored)
        };
        let bytes = commit_json(&info, all);
        let version = base + 1;
        // Created only if absent (step 2): a lost race is an error, never a re-based commit.
        let written = self.table.log_store().write_commit_entry(version, CommitOrBytes::LogBytes(bytes.into()), uuid::Uuid::new_v4()).await;
        match written {
            Ok(()) => {
                let own = self.own.get_or_insert_with(|| OwnCommits { version, counters: HashMap::new(), metadata: None, protocol: None });
                own.version = version;
                own.counters.insert(commit.app_id.clone(), commit.counter);
                own.counters.extend(commit.also.iter().map(|t| (t.app_id.clone(), t.counter)));
                if new_metadata.is_some() {
                    own.metadata = new_metadata;
                }
                if new_protocol.is_some() {
                    own.protocol = new_protocol;
                }
                if (version + 1).is_multiple_of(CHECKPOINT_INTERVAL) {
                    self.checkpoint(version).await;
                }
                Ok(version)
            }
            Err(failure) => {
                // Ambiguous (the put may have landed) or lost: the log says which. The commit
                // is looked for by its id among every version since the base, whatever other
                // writers committed after it (see `find_own`).
                self.reload().await?;
                if let Some(version) = self.find_own(commit, base).await? {
                    tracing::warn!(table = %self.name, version, error = %failure, "a commit failed, but the log holds it as this writer's own (its answer was lost): carrying on");
                    return Ok(version);
                }
                match self.writer_counter(&commit.app_id).await? {
                    Some(now) if now == commit.counter => Err(concurrent()),
                    Some(now) if Some(now) != commit.previous => Err(concurrent()),
                    _ if self.version() > Some(base) => Err(DeltaError::Raced {
                        table: self.name.clone(),
                        app_id: commit.app_id.clone(),
                        counter: commit.counter,
                        version: self.version().unwrap_or_default(),
                        by: String::new(),
                    }),
                    _ => Err(self.delta(DeltaTableError::from(failure))),
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
