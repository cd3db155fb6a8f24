//! A lake table: its layout, its generations and its commit log — the exactly-once protocol of
//! DESIGN.md.
//!
//! ```text
//! <table>/_kappa/current/<n:06>.json                 the generation pointer: the highest n is current
//! <table>/_kappa/generations/<generation>.json       when and how the generation was made
//! <table>/_kappa/<generation>/complete.json          its writer finished it (switchable)
//! <table>/_kappa/<generation>/layout.json            partition granularity and event-time column
//! <table>/_kappa/<generation>/schema/v000001.json    schema versions
//! <table>/_kappa/<generation>/commits/<n:020>.json   the commit log, one record per flush
//! <table>/<generation>/year=…/month=…/day=…/part-<shard>-<first>-<last>.parquet
//! <table>/_errors/<generation>/<commit>.ndjson       quarantined events
//! ```
//!
//! A flush writes its Parquet objects, then commit `n+1`, created only if absent. Each commit
//! carries the whole resume state (so a restart reads only the log of commits, not the
//! data): per shard the safe resume point (reading resumes after it: just before the earliest
//! event still buffered anywhere, or the last one read), and per partition and shard the last
//! position written. Objects that no commit names are leftovers of a flush that crashed before
//! its commit; a restart deletes them, and the redone flush writes the same names again.
//!
//! Generations (see [`crate::generation`]) are self-contained: a replay writes a new one beside
//! the current one, and switching readers is the creation of the next pointer record — a
//! conditional create, so two switches cannot both win.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kappa_common::schema::TableSchema;
use kappa_common::store::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// Commit records of format 1 (an unreleased development version) resumed *at* a position.
pub const FORMAT: u32 = 2;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    #[error("lake storage: {0}")]
    Store(#[from] StoreError),
    #[error("{path} is not a valid kappa-lake record: {source}")]
    Corrupt { path: String, source: serde_json::Error },
    #[error(
        "commit {commit} of table {table} was written by someone else while this consumer ran: \
         run one consumer per table (and source)"
    )]
    ConcurrentWriter { table: String, commit: u64 },
    #[error("table {table}: {reason}")]
    Invalid { table: String, reason: String },
    #[error(
        "table {table}: the current generation changed while switching to {generation} \
         (another switch won); check `kappa-replay status` and switch again if still wanted"
    )]
    SwitchConflict { table: String, generation: String },
}

/// One Parquet object a commit adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Relative to the generation's prefix: `year=2025/month=03/day=19/part-0-0-99.parquet`.
    pub path: String,
    pub partition: String,
    pub rows: u64,
    pub bytes: u64,
}

/// Running totals, carried in every commit so `status` needs only the last one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
    pub quarantined: u64,
}

/// Positions are per shard (`"0"`, `"shardId-000000000001"`) and sequence numbers are decimal
/// strings, so the same record serves the embedded log and Kinesis.
pub type ShardPositions = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub format: u32,
    pub commit: u64,
    pub generation: String,
    pub created_ms: i64,
    pub schema_version: u32,
    pub added: Vec<DataFile>,
    #[serde(default)]
    pub removed: Vec<String>,
    /// Quarantine objects this commit adds (relative to the table).
    #[serde(default)]
    pub errors: Vec<String>,
    /// Per shard: the position to resume reading after (exclusive): always one the source delivered.
    pub resume: ShardPositions,
    /// Per partition, per shard: the last position whose row is in a committed file.
    pub written: BTreeMap<String, ShardPositions>,
    /// Per shard: the last position quarantined in a committed error file.
    #[serde(default)]
    pub quarantined: ShardPositions,
    pub totals: Totals,
    /// Source acknowledgements (SQS message ids) covered by this or an earlier commit, with the
    /// time (ms) until which they are remembered: 14 days while their deletion is unconfirmed,
    /// a grace period after. A restarted consumer deletes such a message when it comes back
    /// instead of ingesting it again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unacknowledged: BTreeMap<String, i64>,
    /// Raw archive objects this commit adds (relative to the archive location).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archived: Vec<String>,
    /// Per shard: the last position in the raw archive.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub archive_positions: ShardPositions,
}

/// The settings that decide where a generation's rows go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub partition_by: String,
    /// The event-time column; `None` partitions by arrival time.
    pub event_time: Option<String>,
}

/// What a consumer needs to resume: the last commit's state plus the set of live files.
#[derive(Debug, Clone, Default)]
pub struct TableState {
    pub last_commit: u64,
    pub schema_version: u32,
    pub resume: ShardPositions,
    pub written: BTreeMap<String, ShardPositions>,
    pub quarantined: ShardPositions,
    pub totals: Totals,
    pub unacknowledged: BTreeMap<String, i64>,
    pub archive_positions: ShardPositions,
    /// Every committed, not removed, data file (relative to the generation).
    pub files: BTreeSet<String>,
    pub error_files: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Table {
    store: Store,
    name: String,
    generation: String,
}

pub(crate) fn parse<T: for<'de> Deserialize<'de>>(path: &str, data: &[u8]) -> Result<T, TableError> {
    serde_json::from_slice(data).map_err(|source| TableError::Corrupt { path: path.to_string(), source })
}

impl Table {
    /// Opens a table's current generation, creating the table (with its first generation) if
    /// it does not exist.
    pub async fn open_or_create(store: Store, name: &str) -> Result<Table, TableError> {
        let generation = match crate::generation::current(&store, name).await? {
            Some(pointer) => pointer.generation,
            None => {
                let first = crate::generation::create(&store, name, "consumer").await?;
                // A consumer's generation is live from the start: complete as it goes.
                crate::generation::mark_complete(&store, name, &first).await?;
                match crate::generation::switch(&store, name, &first, None).await {
                    Ok(_) => first,
                    // Another consumer created the table at the same moment: use its pointer.
                    Err(TableError::SwitchConflict { .. }) => crate::generation::current(&store, name).await?.map(|p| p.generation).unwrap_or(first),
                    Err(e) => return Err(e),
                }
            }
        };
        Ok(Table { store, name: name.to_string(), generation })
    }

    /// Opens one generation of a table (it must exist).
    pub fn open_generation(store: Store, name: &str, generation: &str) -> Table {
        Table { store, name: name.to_string(), generation: generation.to_string() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn generation(&self) -> &str {
        &self.generation
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The prefix an outside reader (DuckDB, Athena) reads: every committed row exactly once.
    pub fn data_prefix(&self) -> String {
        format!("{}/{}", self.name, self.generation)
    }

    fn commit_path(&self, n: u64) -> String {
        format!("{}/_kappa/{}/commits/{n:020}.json", self.name, self.generation)
    }

    fn schema_path(&self, version: u32) -> String {
        format!("{}/_kappa/{}/schema/v{version:06}.json", self.name, self.generation)
    }

    /// Reads the commit log into the state to resume from.
    pub async fn load_state(&self) -> Result<TableState, TableError> {
        let prefix = format!("{}/_kappa/{}/commits/", self.name, self.generation);
        let mut state = TableState::default();
        for object in self.store.list(&prefix).await? {
            let data = self.store.get(&object.path).await?;
            let commit: Commit = parse(&object.path, &data)?;
            if commit.format != FORMAT {
                return Err(TableError::Invalid {
                    table: self.name.clone(),
                    reason: format!(
                        "{} has commit format {}, this kappa-consumer reads format {FORMAT}: write a new table (or lake)",
                        object.path, commit.format
                    ),
                });
            }
            if commit.commit != state.last_commit + 1 {
                return Err(TableError::Invalid {
                    table: self.name.clone(),
                    reason: format!("commit log has a gap: {} follows {}", commit.commit, state.last_commit),
                });
            }
            for file in &commit.added {
                state.files.insert(file.path.clone());
            }
            for removed in &commit.removed {
                state.files.remove(removed);
            }
            state.error_files.extend(commit.errors.iter().cloned());
            state.last_commit = commit.commit;
            state.schema_version = commit.schema_version;
            state.resume = commit.resume;
            state.written = commit.written;
            state.quarantined = commit.quarantined;
            state.totals = commit.totals;
            state.unacknowledged = commit.unacknowledged;
            state.archive_positions = commit.archive_positions;
        }
        Ok(state)
    }

    /// Creates the next commit record; fails if another writer took that number.
    pub async fn commit(&self, commit: &Commit) -> Result<(), TableError> {
        let data = Bytes::from(serde_json::to_vec_pretty(commit).expect("commit serializes"));
        match self.store.put_if_absent(&self.commit_path(commit.commit), data).await {
            Ok(()) => Ok(()),
            Err(StoreError::AlreadyExists { .. }) => Err(TableError::ConcurrentWriter { table: self.name.clone(), commit: commit.commit }),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes data and error objects that no commit names: the leftovers of a flush that
    /// crashed before its commit. Returns how many were deleted.
    pub async fn remove_uncommitted(&self, state: &TableState) -> Result<usize, TableError> {
        let mut removed = 0;
        let data_prefix = format!("{}/", self.data_prefix());
        for object in self.store.list(&data_prefix).await? {
            let relative = &object.path[data_prefix.len()..];
            if !state.files.contains(relative) {
                tracing::info!(object = %object.path, "removing an object no commit names (left by an interrupted flush)");
                self.store.delete(&object.path).await?;
                removed += 1;
            }
        }
        let errors_prefix = format!("{}/_errors/{}/", self.name, self.generation);
        for object in self.store.list(&errors_prefix).await? {
            let relative = &object.path[self.name.len() + 1..];
            if !state.error_files.contains(relative) {
                self.store.delete(&object.path).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub async fn read_schema(&self, version: u32) -> Result<TableSchema, TableError> {
        let path = self.schema_path(version);
        let data = self.store.get(&path).await?;
        parse(&path, &data)
    }

    /// The newest stored schema version, if any (versions may be written ahead of the commit
    /// that first uses them).
    pub async fn latest_schema(&self) -> Result<Option<(u32, TableSchema)>, TableError> {
        let prefix = format!("{}/_kappa/{}/schema/", self.name, self.generation);
        let Some(last) = self.store.list(&prefix).await?.pop() else { return Ok(None) };
        let version: u32 = last.path[prefix.len()..]
            .trim_start_matches('v')
            .trim_end_matches(".json")
            .parse()
            .map_err(|_| TableError::Invalid { table: self.name.clone(), reason: format!("unexpected schema object {}", last.path) })?;
        Ok(Some((version, self.read_schema(version).await?)))
    }

    /// Stores a schema version. Writing the same version twice with the same content (a
    /// restarted consumer redoing an evolution) is fine; different content is a conflict.
    pub async fn write_schema(&self, version: u32, schema: &TableSchema) -> Result<(), TableError> {
        let path = self.schema_path(version);
        let data = Bytes::from(serde_json::to_vec_pretty(schema).expect("schema serializes"));
        match self.store.put_if_absent(&path, data).await {
            Ok(()) => Ok(()),
            Err(StoreError::AlreadyExists { .. }) => {
                let existing: TableSchema = parse(&path, &self.store.get(&path).await?)?;
                if &existing == schema {
                    Ok(())
                } else {
                    Err(TableError::Invalid { table: self.name.clone(), reason: format!("schema version {version} was written differently by another writer") })
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records the settings that shape this generation's layout on first use, and refuses
    /// different ones later: a consumer restarted with another `--partition-by` or
    /// `--event-time` would mix two layouts in one generation.
    /// Whether a commit with rows has recorded this generation's layout yet.
    pub async fn has_layout(&self) -> Result<bool, TableError> {
        match self.store.get(&format!("{}/_kappa/{}/layout.json", self.name, self.generation)).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Records the layout, or checks it against the one recorded.
    pub async fn settle_layout(&self, layout: &Layout) -> Result<(), TableError> {
        let path = format!("{}/_kappa/{}/layout.json", self.name, self.generation);
        let data = Bytes::from(serde_json::to_vec_pretty(layout).expect("serializes"));
        match self.store.put_if_absent(&path, data).await {
            Ok(()) => Ok(()),
            Err(StoreError::AlreadyExists { .. }) => {
                let existing: Layout = parse(&path, &self.store.get(&path).await?)?;
                if &existing == layout {
                    return Ok(());
                }
                Err(TableError::Invalid {
                    table: self.name.clone(),
                    reason: format!(
                        "generation {} is partitioned by {} on {}; this run asks for {} on {}. Use the generation's settings, \
                         or write the new layout as a new generation with kappa-replay",
                        self.generation,
                        existing.partition_by,
                        existing.event_time.as_deref().unwrap_or("arrival time"),
                        layout.partition_by,
                        layout.event_time.as_deref().unwrap_or("arrival time"),
                    ),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn put_object(&self, relative_to_generation: &str, data: Bytes) -> Result<(), TableError> {
        Ok(self.store.put(&format!("{}/{relative_to_generation}", self.data_prefix()), data).await?)
    }

    /// Writes a quarantine object; returns its path relative to the table.
    pub async fn put_errors(&self, commit: u64, data: Bytes) -> Result<String, TableError> {
        let relative = format!("_errors/{}/{commit:020}.ndjson", self.generation);
        self.store.put(&format!("{}/{relative}", self.name), data).await?;
        Ok(relative)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_common::store::LocalStore;

    fn commit(n: u64, files: &[&str], resume: &str) -> Commit {
        Commit {
            format: FORMAT,
            commit: n,
            generation: "gen-000001".into(),
            created_ms: 0,
            schema_version: 1,
            added: files.iter().map(|f| DataFile { path: f.to_string(), partition: "year=2025".into(), rows: 1, bytes: 1 }).collect(),
            removed: vec![],
            errors: vec![],
            resume: [("0".to_string(), resume.to_string())].into(),
            written: BTreeMap::new(),
            quarantined: BTreeMap::new(),
            totals: Totals::default(),
            unacknowledged: BTreeMap::new(),
            archived: vec![],
            archive_positions: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn commits_resume_state_and_orphan_removal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path()));
        let table = Table::open_or_create(store.clone(), "sales").await.unwrap();
        assert_eq!(table.generation(), "gen-000001");
        assert_eq!(table.load_state().await.unwrap().last_commit, 0);

        table.put_object("year=2025/a.parquet", Bytes::from_static(b"a")).await.unwrap();
        table.commit(&commit(1, &["year=2025/a.parquet"], "10")).await.unwrap();
        table.put_object("year=2025/b.parquet", Bytes::from_static(b"b")).await.unwrap();
        table.commit(&commit(2, &["year=2025/b.parquet"], "20")).await.unwrap();
        // A flush that crashed before its commit left this behind.
        table.put_object("year=2025/orphan.parquet", Bytes::from_static(b"o")).await.unwrap();

        let reopened = Table::open_or_create(store.clone(), "sales").await.unwrap();
        let state = reopened.load_state().await.unwrap();
        assert_eq!(state.last_commit, 2);
        assert_eq!(state.resume["0"], "20");
        assert_eq!(state.files.len(), 2);
        assert_eq!(reopened.remove_uncommitted(&state).await.unwrap(), 1);
        let left: Vec<String> = store.list("sales/gen-000001/").await.unwrap().into_iter().map(|o| o.path).collect();
        assert_eq!(left, vec!["sales/gen-000001/year=2025/a.parquet", "sales/gen-000001/year=2025/b.parquet"]);

        // A second writer racing for the same commit number loses.
        let err = reopened.commit(&commit(2, &[], "30")).await.unwrap_err();
        assert!(matches!(err, TableError::ConcurrentWriter { commit: 2, .. }), "{err}");
    }
}
