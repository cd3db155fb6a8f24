//! The replay's errors: those of the crates below it, and its own. Each says what to do.

use kappa_consumer::source::SourceError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ReplayError {
    #[error(transparent)]
    Table(#[from] kappa_table::TableError),
    #[error(transparent)]
    Pipeline(#[from] kappa_consumer::pipeline::PipelineError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Consumer(#[from] kappa_consumer::run::ConsumerError),
    #[error(transparent)]
    Aws(#[from] kappa_common::aws::AwsConfigError),
    /// A file could not be read back: the message names it and which generation it is of.
    #[error("reading back {0}")]
    ReadBack(String),
    #[error(transparent)]
    Compact(#[from] kappa_consumer::compact::CompactError),
    #[error("{0}")]
    Refused(String),
    #[error(
        "interrupted: {generation} is incomplete and was not switched to; run the same kappa-replay again to continue it from its last \
         commit (--fresh starts over), or `kappa-replay gc` removes it"
    )]
    Interrupted { generation: String },
}

impl From<kappa_leases::LeaseError> for ReplayError {
    fn from(error: kappa_leases::LeaseError) -> ReplayError {
        ReplayError::Consumer(error.into())
    }
}

impl From<kappa_table::delta::DeltaError> for ReplayError {
    fn from(error: kappa_table::delta::DeltaError) -> ReplayError {
        ReplayError::Table(error.into())
    }
}

impl ReplayError {
    /// A commit refused because another process's commit holds these shards (a shared replay).
    pub(crate) fn fenced_shards(&self) -> Option<&[String]> {
        use kappa_consumer::pipeline::PipelineError;
        use kappa_table::TableError;
        match self {
            ReplayError::Table(TableError::Fenced { shards, .. }) | ReplayError::Pipeline(PipelineError::Table(TableError::Fenced { shards, .. })) => {
                Some(shards)
            }
            ReplayError::Consumer(e) => e.fenced_shards(),
            _ => None,
        }
    }

    /// The exit status, as the consumer's: 2 the settings do not fit the data, 3 too much bad
    /// input, else 1.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            ReplayError::Pipeline(e) => e.exit_code(),
            ReplayError::Consumer(e) => e.exit_code(),
            ReplayError::Table(kappa_table::TableError::Refused { .. }) => 2,
            _ => 1,
        }
    }
}
