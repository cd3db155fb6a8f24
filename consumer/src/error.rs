//! The consumer's errors: the pipeline's (what a flush or the data can fail with) and the
//! run's (everything around it).

use kappa_table::TableError;

use crate::source::SourceError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Spill(#[from] crate::spill::SpillError),
    #[error("--event-time {column:?} is not a column of the table's schema ({columns} columns){}; nothing was committed", did_you_mean(closest))]
    EventTimeColumn { column: String, closest: Vec<String>, columns: usize },
    #[error(
        "--event-time-format {format} does not fit --event-time {column:?}: the column holds {column_type} values, which are times already \
         (typed by the producer, --schema or the table); leave --event-time-format out. Nothing was committed"
    )]
    EventTimeFormat { column: String, column_type: kappa_common::schema::ColumnType, format: kappa_common::time::EventTimeFormat },
    #[error(
        "--event-time {column:?} holds {column_type} numbers, and --event-time-format {format} reads dates: give --event-time-format \
         epoch_s (seconds since 1970-01-01, fractions allowed) or epoch_ms (milliseconds). Nothing was committed"
    )]
    EventTimeNumbers { column: String, column_type: kappa_common::schema::ColumnType, format: kappa_common::time::EventTimeFormat },
    #[error(
        "{quarantined} of the first {read} events were quarantined, more than --max-quarantine-ratio {ratio} allows (first reason: {first_reason}); \
         stopped before committing them. Correct the settings (--event-time, --schema, --table) or the input and run again, \
         or raise --max-quarantine-ratio (1 turns the check off)"
    )]
    TooMuchQuarantined { quarantined: u64, read: u64, ratio: f64, first_reason: String },
}

impl PipelineError {
    /// The exit status this error ends a run with: 2 misconfiguration, 3 too much bad input
    /// (as the producer's --max-errors), else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            PipelineError::EventTimeColumn { .. }
            | PipelineError::EventTimeFormat { .. }
            | PipelineError::EventTimeNumbers { .. }
            | PipelineError::Table(TableError::Refused { .. }) => 2,
            PipelineError::TooMuchQuarantined { .. } => 3,
            _ => 1,
        }
    }
}

fn did_you_mean(closest: &[String]) -> String {
    match closest {
        [] => String::new(),
        [one] => format!(" (did you mean `{one}`?)"),
        many => format!(" (did you mean one of {}?)", many.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot infer a schema from the first events: {0}; pass --schema")]
    Inference(String),
    #[error(transparent)]
    Aws(#[from] kappa_common::aws::AwsConfigError),
    #[error("shard leases: {0}")]
    Leases(#[from] kappa_leases::LeaseError),
    #[error("--metrics-addr {addr}: cannot listen: {source}")]
    Metrics { addr: std::net::SocketAddr, source: std::io::Error },
}

impl ConsumerError {
    /// True when a commit lost to another writer's (nothing of it was made): a switch, say.
    pub fn is_lost_race(&self) -> bool {
        match self {
            ConsumerError::Table(e) | ConsumerError::Pipeline(PipelineError::Table(e)) => e.is_lost_race(),
            _ => false,
        }
    }

    /// The shards a leased commit found taken by another worker (nothing of it was made).
    pub fn fenced_shards(&self) -> Option<&[String]> {
        match self {
            ConsumerError::Table(TableError::Fenced { shards, .. }) | ConsumerError::Pipeline(PipelineError::Table(TableError::Fenced { shards, .. })) => {
                Some(shards)
            }
            _ => None,
        }
    }

    /// 2 when the settings do not fit the data, 3 for too much bad input (see
    /// [`PipelineError::exit_code`]), else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConsumerError::Pipeline(e) => e.exit_code(),
            ConsumerError::Table(TableError::Refused { .. }) => 2,
            // A worker id already running, a lease table of another pipeline, a failover too short.
            ConsumerError::Leases(
                kappa_leases::LeaseError::Core(kappa_leases::core::CoreError::IdInUse { .. })
                | kappa_leases::LeaseError::OtherScope { .. }
                | kappa_leases::LeaseError::Failover(_),
            ) => 2,
            _ => 1,
        }
    }
}
