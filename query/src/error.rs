use crate::at::At;

/// Why a query could not run. Each message says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    #[error("{0}")]
    Config(String),
    /// The lake could not be read as a table (a listing failed, a log without sizes).
    #[error("{0}")]
    Lake(String),
    /// A statement that would write a table kappa-query only reads.
    #[error("{0}")]
    ReadOnly(String),
    /// `--version` or `--as-of` out of what the table still holds; the message says what is.
    #[error("{0}")]
    TimeTravel(String),
    #[error("no table {table} in lake {lake} (tables there: {}); check --lake and --table", if tables.is_empty() { "none".to_string() } else { tables.join(", ") })]
    NoTable { lake: String, table: String, tables: Vec<String> },
    #[error("table {table} at {at:?}: {source}")]
    Open { table: String, at: At, source: Box<deltalake_core::DeltaTableError> },
    #[error(transparent)]
    Delta(#[from] deltalake_core::DeltaTableError),
    #[error(transparent)]
    Table(#[from] kappa_table::TableError),
    #[error("--register {name}={path}: {reason}")]
    Register { name: String, path: String, reason: String },
    /// The statement's text is in the message, with DataFusion's reason (a parse error names
    /// its line and column).
    #[error("{origin}: {source}{hint}")]
    Sql { origin: String, source: Box<deltalake_core::datafusion::error::DataFusionError>, hint: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("writing the result: {0}")]
    Output(String),
}

impl QueryError {
    /// The exit status: 2 when a flag must change (a table or version that is not there), 1
    /// when the query or the lake failed.
    pub fn status(&self) -> i32 {
        match self {
            QueryError::Config(_) | QueryError::TimeTravel(_) | QueryError::NoTable { .. } | QueryError::Register { .. } => 2,
            _ => 1,
        }
    }
}

/// The table crate's Delta errors, as its own error type carries them.
impl From<kappa_table::delta::DeltaError> for QueryError {
    fn from(error: kappa_table::delta::DeltaError) -> QueryError {
        QueryError::Table(error.into())
    }
}
