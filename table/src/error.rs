//! The lake table's errors.

use kappa_common::store::StoreError;

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
        "table {table}: the table changed while switching to {generation} (a consumer committed, or another \
         switch won); stop the consumer, check `kappa-replay status` and switch again if still wanted"
    )]
    SwitchConflict { table: String, generation: String },
    /// Boxed: delta-rs's errors are large, and every result of the pipeline carries this type.
    #[error(transparent)]
    Delta(Box<crate::delta::DeltaError>),
}

impl From<crate::delta::DeltaError> for TableError {
    fn from(error: crate::delta::DeltaError) -> TableError {
        TableError::Delta(Box::new(error))
    }
}
