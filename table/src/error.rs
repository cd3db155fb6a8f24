//! The lake table's errors.

use kappa_common::store::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    #[error("lake storage: {0}")]
    Store(#[from] StoreError),
    #[error("{path} is not a valid kappa-lake record: {source}")]
    Corrupt { path: String, source: serde_json::Error },
    /// Another writer committed first; `by` names it and says what to do.
    #[error("commit {commit} of table {table} was not made: {by}")]
    ConcurrentWriter { table: String, commit: u64, by: String },
    #[error("table {table}: {reason}")]
    Invalid { table: String, reason: String },
    /// The table as it is does not fit the writer's settings (another layout, a table another
    /// tool re-partitioned): nothing was written, and the reason says what to change.
    #[error("table {table}: {reason}")]
    Refused { table: String, reason: String },
    #[error(
        "table {table}: the table changed while switching to {generation} (a consumer committed, or another \
         switch won); stop the consumer, check `kappa-replay status` and switch again if still wanted"
    )]
    SwitchConflict { table: String, generation: String },
    /// A switch asked to be made on a version that is no longer the latest: a consumer
    /// committed meanwhile (the generation is still the one expected); catch up and try again.
    #[error("table {table}: the table moved past version {version} before the switch to {generation} was made")]
    VersionMoved { table: String, generation: String, version: u64 },
    /// A leased worker's commit found `shards` taken by another worker since it read them
    /// (their `txn` fenced at a newer epoch): nothing of it was made; the worker stops reading
    /// them and goes on with the rest.
    #[error("table {table}: commit not made: shards {shards:?} were taken over by another worker meanwhile")]
    Fenced { table: String, shards: Vec<String> },
    /// A consumer competing for an SQS queue found another one's commit made since it looked:
    /// nothing of its own was made; it reads the others' claims and tries again.
    #[error("table {table}: another consumer of the queue committed meanwhile")]
    PeerCommitted { table: String },
    /// Boxed: delta-rs's errors are large, and every result of the pipeline carries this type.
    #[error(transparent)]
    Delta(Box<crate::delta::DeltaError>),
}

impl From<crate::delta::DeltaError> for TableError {
    fn from(error: crate::delta::DeltaError) -> TableError {
        TableError::Delta(Box::new(error))
    }
}

impl TableError {
    /// A commit that lost to another writer, with who won and what to do; any other error as is.
    pub(crate) fn lost(table: &str, commit: u64, error: crate::delta::DeltaError) -> TableError {
        use crate::delta::DeltaError;
        match error {
            DeltaError::ConcurrentWriter { by, .. } | DeltaError::Raced { by, .. } => TableError::ConcurrentWriter { table: table.to_string(), commit, by },
            DeltaError::FilesGone { missing, total, by, .. } => TableError::ConcurrentWriter {
                table: table.to_string(),
                commit,
                by: format!("{missing} of the {total} files it replaces were removed meanwhile; {by}"),
            },
            DeltaError::Fenced { app_ids, .. } => TableError::Fenced {
                table: table.to_string(),
                shards: app_ids.iter().map(|a| a.strip_prefix(crate::state::SHARD_APP_PREFIX).unwrap_or(a).to_string()).collect(),
            },
            other => other.into(),
        }
    }

    /// True when another writer's commit won (nothing of this one was made).
    pub fn is_lost_race(&self) -> bool {
        matches!(self, TableError::ConcurrentWriter { .. })
    }
}
