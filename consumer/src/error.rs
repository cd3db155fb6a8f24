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
        "{quarantined} of the first {read} events were quarantined, more than --max-quarantine-ratio {ratio} allows (first reason: {first_reason}); \
         stopped before committing them. Correct the settings (--event-time, --schema, --table) or the input and run again, \
         or raise --max-quarantine-ratio (1 turns the check off)"
    )]
    TooMuchQuarantined { quarantined: u64, read: u64, ratio: f64, first_reason: String },
}

impl PipelineError {
    /// The settings do not fit the data: exit status 2, as for other misconfiguration found
    /// once the data is seen.
    pub fn is_misconfiguration(&self) -> bool {
        matches!(self, PipelineError::EventTimeColumn { .. } | PipelineError::TooMuchQuarantined { .. })
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
    #[error("--metrics-addr {addr}: cannot listen: {source}")]
    Metrics { addr: std::net::SocketAddr, source: std::io::Error },
    #[error(
        "table {table} was switched to {current} while this consumer wrote {generation} (readers no longer see it); \
         what it read is committed, and a restart continues {current} from that generation's positions"
    )]
    Switched { table: String, generation: String, current: String },
}

impl ConsumerError {
    /// 2 when the settings do not fit the data (see [`PipelineError::is_misconfiguration`]), else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConsumerError::Pipeline(e) if e.is_misconfiguration() => 2,
            _ => 1,
        }
    }
}
