//! The command line, validated into what a run needs before anything is opened.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use kappa_common::aws::AwsOptions;

use crate::lake::At;
use crate::output::Format;

/// SQL over a kappa-lake table: DataFusion over its Delta table, with partition pruning and
/// file skipping from the Delta statistics.
///
/// The table answers to its name (`SELECT … FROM sales`), at its current version or the one
/// --version / --as-of picks (time travel, back before a replay's switch). After each statement
/// a line on stderr says what it read, in the manner of Athena's "Data scanned": bytes and files
/// of the table's total, rows returned, time.
///
/// Examples:
///   kappa-query --lake data/lake --table sales "SELECT p_day, count(*) FROM sales GROUP BY p_day ORDER BY p_day"
///   kappa-query --lake data/lake --table sales --init star.sql -f top_customers.sql
///   echo "SELECT count(*) FROM sales" | kappa-query --lake s3://bucket/lake --table sales --format csv
///   kappa-query report --lake data/lake --table sales --output lake.html
#[derive(Debug, Parser)]
// `--version` picks the table version (as Delta readers spell it), so clap's own is off.
#[command(
    name = "kappa-query",
    version,
    disable_version_flag = true,
    verbatim_doc_comment,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Log lines as text (for people), or as one JSON object per line with the event's fields
    /// at the top level (for CloudWatch Logs Insights and other log services).
    #[arg(long, global = true, value_name = "text|json", default_value = "text", env = "KAPPA_LOG_FORMAT")]
    pub log_format: kappa_common::logging::LogFormat,

    /// Print the tool's version and the commit it was built from (`--version` picks the
    /// table's version instead).
    #[arg(short = 'V', long = "tool-version", action = clap::ArgAction::Version)]
    pub tool_version: Option<bool>,

    #[command(flatten)]
    pub lake: LakeArg,

    /// The lake's table to query (registered under this name).
    #[arg(long, value_name = "NAME", required = true)]
    pub table: Option<String>,

    /// SQL to run: one or more statements separated by `;`. Default: -f FILE, else stdin.
    #[arg(value_name = "SQL")]
    pub sql: Option<String>,

    /// Read the SQL from FILE instead.
    #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with = "sql")]
    pub file: Option<PathBuf>,

    /// Read the table as of this Delta version (time travel). Default: the current version. A
    /// version the table no longer holds (log retention, vacuum) or never had fails, naming the
    /// versions that can be read.
    #[arg(long, value_name = "N", conflicts_with = "as_of")]
    pub version: Option<u64>,

    /// Read the table as it was at this time: the version current then. RFC 3339
    /// (2026-11-23T10:00:00Z, 2026-11-23T11:00:00+01:00), a UTC time without a zone
    /// (2026-11-23 10:00:00) or a date (2026-11-23: midnight UTC). A time before the table's
    /// first readable version fails, naming that version's time.
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_time)]
    pub as_of: Option<DateTime<Utc>>,

    /// Another table beside the lake's, NAME=PATH: a Delta table (a directory with
    /// _delta_log), Parquet (a .parquet file or a directory of them), or CSV with a header row
    /// (.csv). Repeatable.
    #[arg(long = "register", value_name = "NAME=PATH")]
    pub register: Vec<String>,

    /// SQL run first, its results not shown: views (CREATE VIEW …) and the like. Repeatable.
    #[arg(long = "init", value_name = "FILE.sql")]
    pub init: Vec<PathBuf>,

    /// How results are written. Default: table on a terminal, csv otherwise. Given twice, the
    /// last one counts.
    #[arg(long, value_enum, value_name = "FORMAT", overrides_with = "format")]
    pub format: Option<Format>,

    /// The most rows --format table shows (0: all). It aligns every column to its widest
    /// value, so it holds the rows it shows; the rest are counted and a line on stderr says
    /// how many there were. The other formats write every row as it is read.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_rows: u64,

    /// Write results to FILE instead of stdout (needed for --format parquet).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Leave out the "data scanned" line after each statement.
    #[arg(short, long)]
    pub quiet: bool,

    /// Also write each statement's figures to FILE, one JSON object per line, exact where the
    /// line on stderr rounds: rows, seconds, scanned_bytes, scanned_files, table_bytes,
    /// table_files, version.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,

    #[command(flatten)]
    pub aws: AwsArgs,
}

/// `--as-of`'s value: RFC 3339, or a UTC time or date without a zone (as the consumer reads
/// event times without one).
fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.to_utc());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(time.and_utc());
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    Err("not a time: give RFC 3339 (2026-11-23T10:00:00Z, 2026-11-23T11:00:00+01:00), a UTC time (2026-11-23 10:00:00) or a date (2026-11-23, midnight UTC); --version N picks a version by number".into())
}

/// Where the lake is: the same flag for queries and the report.
#[derive(Debug, Args)]
pub struct LakeArg {
    /// The lake: a local directory, or s3://BUCKET[/PREFIX].
    #[arg(long, value_name = "PATH|S3_URI", default_value = "./data/lake")]
    pub lake: String,
}

/// How an S3 lake is reached: the same flags for queries and the report.
#[derive(Debug, Args)]
pub struct AwsArgs {
    /// AWS endpoint override for an S3 lake (moto, LocalStack). Default: the standard
    /// AWS_ENDPOINT_URL variables, else AWS itself.
    #[arg(long, value_name = "URL", env = "KAPPA_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,

    /// AWS region for an S3 lake. Default: AWS_REGION / AWS_DEFAULT_REGION / the profile's.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
}

impl AwsArgs {
    fn options(self) -> AwsOptions {
        AwsOptions { endpoint_url: self.endpoint_url, region: self.region }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// A picture of the lake: one static HTML file (inline SVG, no network needed to view it)
    /// with rows, bytes and files per partition over time, the file-size distribution, the
    /// table's versions on a time line (commits, compactions, a replay's switch) and the schema.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub lake: LakeArg,

    /// The lake's table to draw.
    #[arg(long, value_name = "NAME")]
    pub table: String,

    /// The HTML file to write.
    #[arg(short, long, value_name = "FILE.html")]
    pub output: PathBuf,

    /// How many of the newest versions the time line shows (each is one read of the log).
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub history: u64,

    #[command(flatten)]
    pub aws: AwsArgs,
}

/// What the command line asks for, validated.
#[derive(Debug)]
pub enum Run {
    Query(QueryConfig),
    Report(ReportConfig),
}

/// A validated report.
#[derive(Debug)]
pub struct ReportConfig {
    pub lake: String,
    pub table: String,
    pub output: PathBuf,
    pub history: usize,
    pub aws: AwsOptions,
}

/// A validated query run.
#[derive(Debug)]
pub struct QueryConfig {
    pub lake: String,
    pub table: String,
    pub at: At,
    /// Where the SQL came from (for messages), and its text.
    pub sql: (String, String),
    pub register: Vec<(String, String)>,
    pub init: Vec<(String, String)>,
    pub format: Format,
    /// How many rows `--format table` shows at most (`None`: all).
    pub max_rows: Option<u64>,
    pub output: Option<PathBuf>,
    pub quiet: bool,
    pub summary_json: Option<PathBuf>,
    pub aws: AwsOptions,
}

impl Cli {
    pub fn validate(self) -> Result<Run, String> {
        match self.command {
            Some(Command::Report(report)) => {
                if report.output.extension().is_none_or(|e| !e.eq_ignore_ascii_case("html") && !e.eq_ignore_ascii_case("htm")) {
                    return Err(format!("--output {}: the report is HTML; give a file name ending in .html", report.output.display()));
                }
                Ok(Run::Report(ReportConfig {
                    lake: report.lake.lake,
                    table: report.table,
                    output: report.output,
                    history: usize::try_from(report.history).unwrap_or(usize::MAX),
                    aws: report.aws.options(),
                }))
            }
            None => self.validate_query().map(Run::Query),
        }
    }

    fn validate_query(self) -> Result<QueryConfig, String> {
        let table = self.table.clone().ok_or("--table NAME is required")?;
        let read = |path: &PathBuf, flag: &str| std::fs::read_to_string(path).map_err(|e| format!("{flag} {}: {e}", path.display()));
        let sql = match (&self.sql, &self.file) {
            (Some(sql), _) => ("the SQL argument".to_string(), sql.clone()),
            (None, Some(path)) => (path.display().to_string(), read(path, "-f")?),
            (None, None) => {
                if std::io::stdin().is_terminal() {
                    return Err("no SQL: give it as an argument, with -f FILE, or on stdin".into());
                }
                let mut sql = String::new();
                std::io::stdin().read_to_string(&mut sql).map_err(|e| format!("reading SQL from stdin: {e}"))?;
                ("stdin".to_string(), sql)
            }
        };
        if sql.1.trim().is_empty() {
            return Err(format!("{}: no SQL statement", sql.0));
        }
        let register = self
            .register
            .iter()
            .map(|r| match r.split_once('=') {
                Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_string(), path.to_string())),
                _ => Err(format!("--register {r}: use NAME=PATH")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (index, (name, _)) in register.iter().enumerate() {
            if name.eq_ignore_ascii_case(&table) {
                return Err(format!("--register {name}=…: {table} is the lake's table; register the other table under another name"));
            }
            if register[..index].iter().any(|(other, _)| other.eq_ignore_ascii_case(name)) {
                return Err(format!("--register {name}=…: the name is given twice; each table needs a name of its own"));
            }
        }
        let init = self.init.iter().map(|path| Ok((path.display().to_string(), read(path, "--init")?))).collect::<Result<Vec<_>, String>>()?;
        let format = self.format.unwrap_or(if self.output.is_none() && std::io::stdout().is_terminal() { Format::Table } else { Format::Csv });
        if self.max_rows != 1000 && self.format.is_some_and(|f| f != Format::Table) {
            return Err("--max-rows caps what --format table shows; the other formats write every row (add LIMIT N to the SQL to write fewer)".into());
        }
        if format == Format::Parquet && self.output.is_none() {
            return Err("--format parquet writes a file: add --output FILE".into());
        }
        let at = match (self.version, self.as_of) {
            (Some(version), _) => At::Version(version),
            (None, Some(time)) => At::Time(time),
            (None, None) => At::Latest,
        };
        Ok(QueryConfig {
            lake: self.lake.lake,
            table,
            at,
            sql,
            register,
            init,
            format,
            max_rows: Some(self.max_rows).filter(|max| *max > 0),
            output: self.output,
            quiet: self.quiet,
            summary_json: self.summary_json,
            aws: self.aws.options(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed_and_bad_flags_say_what_to_change() {
        Cli::command().debug_assert();
        let parse = |args: &[&str]| match Cli::try_parse_from([&["kappa-query", "--table", "t"], args].concat()).unwrap().validate()? {
            Run::Query(query) => Ok(query),
            Run::Report(_) => Err("a report".to_string()),
        };
        assert_eq!(parse(&["--version", "3", "SELECT 1"]).unwrap().at, At::Version(3));
        assert!(matches!(parse(&["--as-of", "2026-11-23T10:00:00Z", "SELECT 1"]).unwrap().at, At::Time(_)));
        assert!(parse(&["--format", "parquet", "SELECT 1"]).unwrap_err().contains("--output"));
        assert_eq!(parse(&["--format", "table", "SELECT 1"]).unwrap().max_rows, Some(1000));
        assert_eq!(parse(&["--format", "table", "--max-rows", "0", "SELECT 1"]).unwrap().max_rows, None);
        assert!(parse(&["--format", "csv", "--max-rows", "5", "SELECT 1"]).unwrap_err().contains("LIMIT"));
        assert!(parse(&["--register", "dims", "SELECT 1"]).unwrap_err().contains("NAME=PATH"));
        assert!(parse(&["--register", "T=x.csv", "SELECT 1"]).unwrap_err().contains("t is the lake's table"));
        assert!(parse(&["--register", "d=x.csv", "--register", "D=y.csv", "SELECT 1"]).unwrap_err().contains("given twice"));
        assert!(parse(&["  "]).unwrap_err().contains("no SQL"));
        assert!(Cli::try_parse_from(["kappa-query", "--table", "t", "--version", "1", "--as-of", "2026-11-23T10:00:00Z", "SELECT 1"]).is_err());
        let as_of = |text: &str| parse_time(text).map(|t| t.to_rfc3339());
        assert_eq!(as_of("2026-11-23T11:00:00+01:00").unwrap(), "2026-11-23T10:00:00+00:00");
        assert_eq!(as_of("2026-11-23 10:00:00.5").unwrap(), "2026-11-23T10:00:00.500+00:00");
        assert_eq!(as_of("2026-11-23T10:00").unwrap(), "2026-11-23T10:00:00+00:00");
        assert_eq!(as_of("2026-11-23").unwrap(), "2026-11-23T00:00:00+00:00");
        assert!(as_of("yesterday").unwrap_err().contains("RFC 3339 (2026-11-23T10:00:00Z"));
        let error = Cli::try_parse_from(["kappa-query", "--table", "t", "--as-of", "yesterday", "SELECT 1"]).unwrap_err();
        assert!(error.to_string().contains("'yesterday' for '--as-of <TIMESTAMP>': not a time: give RFC 3339"), "{error}");
    }

    #[test]
    fn report_is_a_subcommand_with_its_own_flags() {
        let report = |args: &[&str]| Cli::try_parse_from([&["kappa-query", "report"], args].concat()).map_err(|e| e.to_string())?.validate();
        match report(&["--table", "sales", "--output", "lake.html"]).unwrap() {
            Run::Report(config) => assert_eq!((config.table.as_str(), config.history), ("sales", 1000)),
            Run::Query(_) => panic!("report parsed as a query"),
        }
        assert!(report(&["--table", "sales", "--output", "lake.png"]).unwrap_err().contains(".html"));
        assert!(report(&["--output", "lake.html"]).unwrap_err().contains("--table"));
        assert!(report(&["--table", "sales", "--output", "lake.html", "--history", "0"]).is_err());
        // The query's flags are not the report's, and the other way round.
        assert!(Cli::try_parse_from(["kappa-query", "--table", "t", "report", "--table", "t", "--output", "x.html"]).is_err());
    }
}
