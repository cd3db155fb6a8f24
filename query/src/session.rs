//! A DataFusion session with the lake's table and the user's other tables and views, and the
//! statements run in it one by one, each with what it read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake_core::DeltaTableBuilder;
use deltalake_core::datafusion::datasource::{MemTable, TableProvider};
use deltalake_core::datafusion::error::DataFusionError;
use deltalake_core::datafusion::execution::context::SessionContext;
use deltalake_core::datafusion::logical_expr::{LogicalPlan, WriteOp};
use deltalake_core::datafusion::physical_plan::{SendableRecordBatchStream, execute_stream};
use deltalake_core::datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionConfig};
use deltalake_core::datafusion::sql::parser::{DFParser, Statement};
use deltalake_core::delta_datafusion::DeltaScanNext;
use deltalake_core::kernel::Snapshot;
use deltalake_core::logstore::LogStoreRef;
use futures::TryStreamExt;

use crate::counting::Scanned;
use crate::read_only::ReadOnly;

use crate::error::QueryError;
use crate::lake::LakeTable;

/// CSV files up to this size are registered in memory (dimension tables); larger ones are read
/// from the file by each query.
const IN_MEMORY_CSV: u64 = 64 << 20;

/// The outcome of one statement, its rows written.
pub struct Outcome {
    pub rows: u64,
    /// What it read of the lake's table.
    pub scanned: Scanned,
    pub elapsed: Duration,
}

/// A statement running: its rows come as a stream, so a result of any size is written as it
/// is read (10M rows held whole took 6.5 GB).
pub struct Running {
    pub rows: SendableRecordBatchStream,
    started: Instant,
}

pub struct Session {
    context: SessionContext,
    lake: LakeTable,
    /// The tables a statement may not write: the lake's, and those `--register` added.
    read_only: Vec<String>,
}

/// A DataFusion context for one run, before the lake's table joins it: the user's other tables
/// are registered while the table's log is still being read (see [`crate::run`]).
///
/// DataFusion's defaults, changed where bench/query.sh measured them against our tables (two
/// cores; nycflights13 by hour: 6,936 files of ~7 KiB; 10M wide rows: 120 files of ~5 MiB):
/// - twice as many partitions as cores (at least 4): a partition reads its files one after
///   another, one read in flight; with more of them, reads of small files overlap (flights'
///   full scan: 0.90 s with 2, 0.56-0.64 s with 4-8; the wide table's group-by unchanged);
/// - no page index and no bloom filters read: our files have no bloom filters, and their pages
///   are in arrival order, so a page index skips nothing that the row groups' statistics did
///   not; both were an extra read and a predicate per file wherever a query had a filter
///   (flights' top-N: 0.92 s, 0.62 s without them);
/// - no dynamic filter from a hash join into the scan: the Delta table provider has no
///   statistics on join keys to skip files with, so it only rebuilt pruning predicates for
///   every file (flights joined to its 16 airlines: 3.4 s, 1.2 s without). The top-N's dynamic
///   filter stays: it does skip files.
pub fn context() -> SessionContext {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let mut config = SessionConfig::new().with_information_schema(true).with_target_partitions((2 * cores).max(4));
    let options = config.options_mut();
    options.execution.parquet.enable_page_index = false;
    options.execution.parquet.bloom_filter_on_read = false;
    options.optimizer.enable_join_dynamic_filter_pushdown = false;
    SessionContext::new_with_config(config)
}

impl Session {
    /// The session: `context` with the lake's table answering to its name.
    pub async fn new(context: SessionContext, lake: LakeTable, registered: &[String]) -> Result<Session, QueryError> {
        // Our counting store answers for the table's files (not DataFusion's default local
        // store, and not one delta-rs would register if none were).
        context.runtime_env().register_object_store(&lake.store_url, lake.store.clone());
        let provider = delta_provider(lake.log_store.clone(), lake.snapshot.clone()).await.map_err(|e| sql_error("registering the lake table", e))?;
        context.register_table(lake.name.as_str(), ReadOnly::wrap(&lake.name, provider)).map_err(|e| sql_error("registering the lake table", e))?;
        let read_only = std::iter::once(lake.name.clone()).chain(registered.iter().cloned()).collect();
        Ok(Session { context, lake, read_only })
    }

    pub fn lake(&self) -> &LakeTable {
        &self.lake
    }

    /// Splits `sql` into statements (a parse error names its line and column).
    pub fn statements(&self, origin: &str, sql: &str) -> Result<Vec<Statement>, QueryError> {
        Ok(DFParser::parse_sql(sql)
            .map_err(|e| {
                let error = sql_error(origin, e);
                // The parser names no place when the text ends too soon (`… WHERE`): the end is it.
                match error {
                    QueryError::Sql { origin, source, .. } if source.to_string().contains("found: EOF") => {
                        let (line, column) = end_of(sql);
                        QueryError::Sql { origin, source, hint: format!(" at the end of the statement, line {line} column {column}") }
                    }
                    other => other,
                }
            })?
            .into())
    }

    /// Starts one parsed statement (planned as parsed: not printed and parsed again).
    pub async fn start(&self, origin: &str, statement: Statement) -> Result<Running, QueryError> {
        self.lake.counters.take();
        let started = Instant::now();
        let plan = self.context.state().statement_to_plan(statement).await.map_err(|e| self.unknown_table_hint(sql_error(origin, e)))?;
        self.refuse_writes(&plan)?;
        let frame = self.context.execute_logical_plan(plan).await.map_err(|e| sql_error(origin, e))?;
        let task = frame.task_ctx();
        let plan = frame.create_physical_plan().await.map_err(|e| sql_error(origin, e))?;
        tracing::debug!(planned_in = ?started.elapsed(), "statement planned");
        let rows = execute_stream(plan, Arc::new(task)).map_err(|e| sql_error(origin, e))?;
        Ok(Running { rows, started })
    }

    /// kappa-query reads the lake's table and the tables `--register` adds; it never writes
    /// them. An `INSERT INTO` the lake's table once committed files beside the consumer's that
    /// no kappa-lake writer knew of: `status` did not count them, and the next replay's switch
    /// silently dropped them. Tables a statement creates (`CREATE TABLE`, `CREATE EXTERNAL
    /// TABLE`) and `COPY … TO` files are the user's to write.
    fn refuse_writes(&self, plan: &LogicalPlan) -> Result<(), QueryError> {
        let LogicalPlan::Dml(dml) = plan else { return Ok(()) };
        let table = dml.table_name.table();
        if matches!(dml.op, WriteOp::Ctas) || !self.read_only.iter().any(|name| name.eq_ignore_ascii_case(table)) {
            return Ok(());
        }
        let what = match &dml.op {
            WriteOp::Insert(_) => "INSERT INTO",
            WriteOp::Delete => "DELETE FROM",
            WriteOp::Update => "UPDATE",
            WriteOp::Truncate => "TRUNCATE",
            _ => "a write to",
        };
        Err(QueryError::ReadOnly(format!(
            "{what} {table}: kappa-query reads {table}, it never writes it{}. Rows reach the lake through the log: send them with \
             kappa-producer and kappa-consumer commits them (exactly once). COPY (…) TO 'file' and tables this session creates \
             (CREATE TABLE, CREATE EXTERNAL TABLE) can be written",
            if table.eq_ignore_ascii_case(&self.lake.name) {
                " (a write here would commit files that no kappa-lake writer knows of, and the next replay's switch would drop them)"
            } else {
                " (--register opens a table to read)"
            }
        )))
    }

    /// What a statement started by [`Session::start`] read, once its `rows` are all taken.
    pub fn finish(&self, running: Running, rows: u64) -> Outcome {
        Outcome { rows, scanned: self.lake.counters.take(), elapsed: running.started.elapsed() }
    }

    /// Runs a statement whose result is not shown (`--init`) to its end.
    pub async fn run_quietly(&self, origin: &str, statement: Statement) -> Result<(), QueryError> {
        let mut running = self.start(origin, statement).await?;
        while running.rows.try_next().await.map_err(|e| sql_error(origin, e))?.is_some() {}
        Ok(())
    }
}

/// DataFusion's scan of a Delta table version: its files replayed from the log when a statement
/// is planned, with the statistics its filters need.
async fn delta_provider(log_store: LogStoreRef, snapshot: Arc<Snapshot>) -> Result<Arc<dyn TableProvider>, DataFusionError> {
    DeltaScanNext::builder().with_log_store(log_store).with_snapshot(snapshot).await
}

/// Registers `path` as table `name`: a Delta table (a directory with `_delta_log`), a
/// directory or file of Parquet, or a CSV file with a header row.
pub async fn register(context: &SessionContext, name: &str, path: &str) -> Result<(), QueryError> {
    let bad = |reason: String| QueryError::Register { name: name.to_string(), path: path.to_string(), reason };
    let local = std::path::Path::new(path);
    if !local.exists() {
        return Err(bad("no such file or directory".into()));
    }
    let lower = path.to_ascii_lowercase();
    let result = if local.join("_delta_log").is_dir() {
        let dir = local.canonicalize().map_err(|e| bad(e.to_string()))?;
        let url = url::Url::from_directory_path(&dir).map_err(|()| bad("not a usable path".into()))?;
        // Read as the lake's table is: a lazy snapshot of the latest version.
        let log_store = DeltaTableBuilder::from_url(url).map_err(|e| bad(e.to_string()))?.build().map_err(|e| bad(e.to_string()))?.log_store();
        let snapshot = Snapshot::try_new(log_store.as_ref(), None).await.map_err(|e| bad(e.to_string()))?;
        let provider = delta_provider(log_store, Arc::new(snapshot)).await.map_err(|e| bad(e.to_string()))?;
        context.register_table(name, provider).map(|_| ())
    } else if lower.ends_with(".csv") || lower.ends_with(".csv.gz") {
        let size = std::fs::metadata(local).map_err(|e| bad(e.to_string()))?.len();
        if size <= IN_MEMORY_CSV {
            register_in_memory(context, name, path).await
        } else {
            context.register_csv(name, path, CsvReadOptions::new().has_header(true)).await
        }
    } else if lower.ends_with(".parquet") || local.is_dir() {
        context.register_parquet(name, path, ParquetReadOptions::default()).await
    } else {
        return Err(bad("not a Delta table, Parquet or CSV (.csv) file".into()));
    };
    result.map_err(|e| bad(e.to_string()))?;
    // Read-only, as the lake's table is (see read_only.rs).
    let provider = context.table_provider(name).await.map_err(|e| bad(e.to_string()))?;
    context.deregister_table(name).map_err(|e| bad(e.to_string()))?;
    context.register_table(name, ReadOnly::wrap(name, provider)).map_err(|e| bad(e.to_string()))?;
    Ok(())
}

/// Reads a CSV into memory once and registers its batches. A dimension table's row count
/// is then known to the planner, which builds a join's hash table from it and streams the
/// fact table past it; registered as a file, its size is unknown, and the 10M-row fact
/// table became the build side (the join benchmark took 0.97 s against DuckDB's 0.34 s).
///
/// Read with arrow's CSV reader directly, which is what DataFusion's CSV source runs (the
/// same type inference from the first [`INFER_ROWS`] rows): without a listing table, a plan
/// and its execution around it, registering a dimension takes half the time, and every
/// statement pays it (compressed files still go through DataFusion).
async fn register_in_memory(context: &SessionContext, name: &str, path: &str) -> Result<(), DataFusionError> {
    let table = if path.to_ascii_lowercase().ends_with(".csv") {
        read_csv(path)?
    } else {
        let frame = context.read_csv(path, CsvReadOptions::new().has_header(true)).await?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        MemTable::try_new(schema, vec![frame.collect().await?])?
    };
    context.register_table(name, Arc::new(table)).map(|_| ())
}

/// Rows a CSV's column types are inferred from (DataFusion's default).
const INFER_ROWS: usize = 1000;

fn read_csv(path: &str) -> Result<MemTable, DataFusionError> {
    use std::io::Seek;
    let mut file = std::fs::File::open(path)?;
    let format = arrow::csv::reader::Format::default().with_header(true);
    let (schema, _) = format.infer_schema(&mut file, Some(INFER_ROWS))?;
    file.rewind()?;
    let schema = Arc::new(schema);
    let reader = arrow::csv::ReaderBuilder::new(schema.clone()).with_format(format).build(file)?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    MemTable::try_new(schema, vec![batches])
}

pub(crate) fn sql_error(origin: &str, source: DataFusionError) -> QueryError {
    QueryError::Sql { origin: origin.to_string(), source: Box::new(source), hint: String::new() }
}

/// The line and column (from 1) just past the last character of `sql` that is not blank.
fn end_of(sql: &str) -> (usize, usize) {
    let text = sql.trim_end();
    let line = text.lines().count().max(1);
    let column = text.rsplit('\n').next().map_or(0, |last| last.chars().count()) + 1;
    (line, column)
}

impl Session {
    /// A statement naming a table the session lacks: the error lists the tables it has.
    fn unknown_table_hint(&self, error: QueryError) -> QueryError {
        match error {
            QueryError::Sql { origin, source, .. } if source.to_string().contains("not found") && source.to_string().contains("table '") => {
                let mut names: Vec<String> =
                    self.context.catalog("datafusion").and_then(|catalog| catalog.schema("public")).map(|schema| schema.table_names()).unwrap_or_default();
                names.sort();
                QueryError::Sql { origin, source, hint: format!("; the tables are: {}", names.join(", ")) }
            }
            other => other,
        }
    }
}
