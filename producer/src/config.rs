//! The command line, and its validation into a typed [`ProducerConfig`].
//!
//! Everything that can be checked without sending a row is checked here, so a misconfigured
//! run fails at start with a message that says what to change.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kappa_common::aws::AwsOptions;
use kappa_common::endpoint::Endpoint;
use kappa_common::flatten::FlattenOptions;
use kappa_common::log::{FsyncPolicy, LogConfig};
use kappa_common::schema::NullTokens;
use kappa_common::time::EventTimeFormat;

use crate::input::{InputFormat, InputSpec};
use crate::sink::retry::RetryPolicy;
use crate::sink::{CreateOptions, SinkOptions};

/// Replays CSV and JSON rows as events onto the embedded log, Amazon Kinesis, SQS or Firehose.
///
/// Each row becomes one JSON event typed by the schema (inferred from the first rows, or
/// --schema). Rows that cannot be read or typed go to the reject file with their line and the
/// reason; the run goes on. A summary (rows, events, bytes, API requests, retries, rejects,
/// rows/s) ends every run.
///
/// Exit status: 0 every row was sent or rejected; 1 an error while running (unreachable
/// destination, I/O); 2 misconfiguration (a flag, a schema file); 3 more rejected rows than
/// --max-errors; 4 some events could not be delivered (listed in the reject file); 130
/// interrupted.
#[derive(Debug, Parser)]
#[command(name = "kappa-producer", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// Log lines as text (for people), or as one JSON object per line with the event's fields
    /// at the top level (for CloudWatch Logs Insights and other log services).
    #[arg(long, global = true, value_name = "text|json", default_value = "text", env = "KAPPA_LOG_FORMAT")]
    pub log_format: kappa_common::logging::LogFormat,

    /// Input files (CSV with a header row, NDJSON, or JSON); `-` reads standard input.
    #[arg(short, long = "input", value_name = "PATH", required = true, num_args = 1..)]
    pub inputs: Vec<String>,

    /// Input format. Default: from each file's extension (.csv/.tsv, .ndjson/.jsonl, .json);
    /// required when reading standard input.
    #[arg(short, long, value_enum)]
    pub format: Option<InputFormat>,

    /// Destination: log:PATH (embedded log, created if missing), kinesis:STREAM, sqs:QUEUE
    /// (name or URL) or firehose:DELIVERY_STREAM.
    #[arg(short, long, value_name = "URI", default_value = "log:./data/log")]
    pub to: String,

    /// Schema file (JSON, see the README) to type the rows with, instead of inferring one.
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,

    /// Number of rows of the first input sampled to infer the schema.
    #[arg(long, value_name = "ROWS", default_value_t = 1000)]
    pub infer_rows: usize,

    /// Write the schema in use to FILE (to review, edit and pass back with --schema).
    #[arg(long, value_name = "FILE")]
    pub write_schema: Option<PathBuf>,

    /// Cell values that mean "no value" (become JSON null), comma-separated; an empty item is
    /// the empty cell.
    #[arg(long, value_name = "LIST", default_value = ",NA,N/A,NULL,null,NaN")]
    pub null_tokens: String,

    /// CSV field delimiter (one ASCII character; `\t` for tab). Default: tab for .tsv files,
    /// comma otherwise.
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<String>,

    /// JSON: the array field (dotted path for a nested one) whose elements become one row
    /// each, the parent's fields repeated. Nested objects always flatten to parent_child
    /// columns.
    #[arg(long, value_name = "FIELD")]
    pub explode: Option<String>,

    /// JSON: the separator between parent and child names when flattening.
    #[arg(long, value_name = "SEP", default_value = "_")]
    pub separator: String,

    /// Column whose value is the partition key (Kinesis shard / log shard / SQS FIFO group).
    /// Default: the event's identity, a stable pseudo-random key that spreads rows evenly.
    #[arg(long, value_name = "COLUMN")]
    pub partition_key: Option<String>,

    /// Identity of the input used in event ids, instead of a hash of its content. Give one
    /// when re-sending standard input that should deduplicate against an earlier run.
    #[arg(long, value_name = "ID")]
    pub source_id: Option<String>,

    /// Send at most this many rows per second (steady, smoothed over 100 ms). Default:
    /// unlimited.
    #[arg(long, value_name = "ROWS_PER_SEC")]
    pub rate: Option<NonZeroU32>,

    /// Column holding each row's event time; with --speedup, the gaps between event times
    /// pace the sending.
    #[arg(long, value_name = "COLUMN")]
    pub event_time: Option<String>,

    /// Format of --event-time: rfc3339 (also YYYY-MM-DD and YYYY-MM-DD HH:MM:SS), epoch_s,
    /// epoch_ms, or a strftime pattern such as "%Y/%m/%d %H:%M". Times without zone are UTC.
    #[arg(long, value_name = "FORMAT", default_value = "rfc3339")]
    pub event_time_format: String,

    /// Replay at X times the original pace: a gap of 60 s between two event times becomes
    /// 60/X s. Needs --event-time.
    #[arg(long, value_name = "X")]
    pub speedup: Option<f64>,

    /// Stop after reading this many rows (over all inputs and loops).
    #[arg(long, value_name = "ROWS")]
    pub limit: Option<u64>,

    /// Read the inputs this many times; each pass makes new events (distinct ids).
    #[arg(long = "loop", value_name = "N", default_value_t = 1)]
    pub passes: u64,

    /// Reject file (NDJSON: input, line, row, reason, raw). Default: beside the output —
    /// <log dir>/_rejects/producer-<time>.ndjson for a log, ./kappa-rejects/<sink>-<time>.ndjson
    /// otherwise. Created only if a row is rejected.
    #[arg(long, value_name = "PATH")]
    pub rejects: Option<PathBuf>,

    /// Abort (exit 3) once more than this many rows were rejected. Default: no limit.
    #[arg(long, value_name = "N")]
    pub max_errors: Option<u64>,

    /// Stop (exit 3) when more than this share of the first --reject-window rows is rejected
    /// (judged from 100 rows on, and at the end of a shorter input): settings that do not fit
    /// the input (an --event-time-format for another column, the wrong --delimiter) must not
    /// end in a reject file of good rows and success. A share from 0 to 1; 1 turns it off.
    #[arg(long, value_name = "RATIO", default_value_t = 0.5)]
    pub max_reject_ratio: f64,

    /// Rows at the start of each run that --max-reject-ratio is judged on.
    #[arg(long, value_name = "ROWS", default_value_t = 10_000)]
    pub reject_window: u64,

    /// Create a missing Kinesis stream (with --shards) or SQS queue. Logs are always created.
    #[arg(long)]
    pub create: bool,

    /// Shard count for a stream or log this run creates (an existing one keeps its own).
    /// Default: 4.
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,

    /// SQS: at most this many events in one message (as NDJSON lines). Default: as many as
    /// fit in --max-message-bytes.
    #[arg(long, value_name = "N")]
    pub rows_per_message: Option<usize>,

    /// SQS: size limit of one message, in bytes. SQS bills every 64 KiB of a request's payload
    /// as one request, so 65536 packs the most rows per billed request; AWS allows up to
    /// 1048576 where the queue's MaximumMessageSize says so. A SendMessageBatch carries up to
    /// 10 messages and 256 KiB (or one message of this size, if larger).
    #[arg(long, value_name = "BYTES", default_value_t = 65_536)]
    pub max_message_bytes: usize,

    /// Kinesis: pack rows into KPL aggregated records (the format of the Kinesis Producer
    /// Library, which KCL readers, Lambda's deaggregation library, Firehose and kappa-consumer
    /// unpack), grouped by the shard their partition key hashes to: far fewer records and
    /// PutRecords calls per row (docs/kinesis.md).
    #[arg(long)]
    pub aggregate: bool,

    /// With --aggregate: the size of one aggregated record, partition key included (at most
    /// 1048576, Kinesis' record limit; the KPL's default is 51200).
    #[arg(long, value_name = "BYTES", default_value_t = 1_048_576)]
    pub aggregate_bytes: u64,

    /// Attempts per record before it is declared undelivered (written to the reject file);
    /// waits between attempts grow exponentially from 100 ms to 10 s, with jitter.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_attempts: u32,

    /// Embedded log: when appends are fsync'd — `always` (every flush, ~every 4096 events),
    /// `never` (only at the end), or a duration such as `1s` (at most that long unsynced).
    #[arg(long, value_name = "POLICY", default_value = "1s")]
    pub log_fsync: String,

    /// Embedded log: a segment file is rotated past this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 128 * 1024 * 1024)]
    pub log_segment_bytes: u64,

    /// AWS endpoint override for every service (LocalStack, moto, VPC endpoints). Default: the
    /// standard AWS_ENDPOINT_URL variables, else AWS itself.
    #[arg(long, value_name = "URL", env = "KAPPA_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,

    /// AWS region. Default: AWS_REGION / AWS_DEFAULT_REGION / the profile's region.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// Interval of progress lines when stderr is not a terminal (a live bar is shown on a
    /// terminal).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub progress_interval: Duration,

    /// Also write the end-of-run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
}

/// A validated configuration: every field is usable as is.
#[derive(Debug)]
pub struct ProducerConfig {
    pub inputs: Vec<InputSpec>,
    pub destination: Endpoint,
    pub schema_file: Option<PathBuf>,
    pub infer_rows: usize,
    pub write_schema: Option<PathBuf>,
    pub null_tokens: NullTokens,
    pub flatten: FlattenOptions,
    pub partition_key: Option<String>,
    pub source_id: Option<String>,
    pub rate: Option<NonZeroU32>,
    pub event_time: Option<(String, EventTimeFormat)>,
    pub speedup: Option<f64>,
    pub limit: Option<u64>,
    pub passes: u64,
    pub rejects: PathBuf,
    pub max_errors: Option<u64>,
    pub max_reject_ratio: f64,
    pub reject_window: u64,
    pub sink: SinkOptions,
    pub retry: RetryPolicy,
    pub aws: AwsOptions,
    pub progress_interval: Duration,
    pub summary_json: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn bad(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

impl Cli {
    pub fn validate(self) -> Result<ProducerConfig, ConfigError> {
        let destination: Endpoint = self.to.parse().map_err(|e| bad(format!("--to: {e}")))?;
        if !matches!(destination, Endpoint::Log(_) | Endpoint::Kinesis(_) | Endpoint::Sqs(_) | Endpoint::Firehose(_)) {
            return Err(bad(format!("--to {destination}: the producer sends to log:PATH, kinesis:STREAM, sqs:QUEUE or firehose:STREAM")));
        }
        if !(0.0..=1.0).contains(&self.max_reject_ratio) {
            return Err(bad(format!("--max-reject-ratio {}: give a share from 0 to 1, e.g. 0.5 (1 turns the check off)", self.max_reject_ratio)));
        }
        let mut inputs = Vec::new();
        for raw in &self.inputs {
            let path = (raw != "-").then(|| PathBuf::from(raw));
            if let Some(p) = &path {
                if !p.exists() {
                    return Err(bad(format!("--input {raw}: no such file")));
                }
                if !p.is_file() {
                    return Err(bad(format!("--input {raw}: not a regular file; to read a pipe, use --input - with --format")));
                }
            }
            let format = match (self.format, &path) {
                (Some(f), _) => f,
                (None, Some(p)) => InputFormat::from_path(p)
                    .ok_or_else(|| bad(format!("--input {raw}: cannot tell the format from the extension; pass --format csv|ndjson|json")))?,
                (None, None) => return Err(bad("--input -: reading standard input needs --format csv|ndjson|json")),
            };
            inputs.push(InputSpec { path, format, delimiter: b',' });
        }
        if inputs.iter().filter(|i| i.path.is_none()).count() > 1 {
            return Err(bad("--input - (standard input) can be given only once"));
        }
        if self.source_id.is_some() && inputs.len() > 1 {
            return Err(bad(
                "--source-id names one input, but several were given: their rows would share identities; send them in separate runs, or drop --source-id",
            ));
        }
        if self.passes == 0 {
            return Err(bad("--loop must be at least 1"));
        }
        if inputs.iter().any(|i| i.path.is_none()) && self.passes > 1 {
            return Err(bad("--loop needs files: standard input can be read only once"));
        }
        let delimiter = match self.delimiter.as_deref() {
            None => None,
            Some("\\t" | "\t" | "tab") => Some(b'\t'),
            Some(d) if d.len() == 1 && d.is_ascii() => Some(d.as_bytes()[0]),
            Some(d) => return Err(bad(format!("--delimiter {d:?}: give one ASCII character, or \\t for tab"))),
        };
        for input in &mut inputs {
            let is_tsv = input.path.as_deref().and_then(crate::input::plain_extension).is_some_and(|e| e == "tsv");
            input.delimiter = delimiter.unwrap_or(if is_tsv { b'\t' } else { b',' });
        }
        if self.infer_rows == 0 {
            return Err(bad("--infer-rows must be at least 1"));
        }
        let event_time_format: EventTimeFormat = self.event_time_format.parse().map_err(|e| bad(format!("--event-time-format: {e}")))?;
        match (self.speedup, &self.event_time) {
            (Some(_), None) => return Err(bad("--speedup needs --event-time COLUMN to know the original gaps")),
            (Some(x), _) if !(x.is_finite() && x >= 1e-3) => return Err(bad("--speedup must be a number of at least 0.001, e.g. 60")),
            _ => {}
        }
        let is_sqs = matches!(destination, Endpoint::Sqs(_));
        if self.rows_per_message.is_some() && !is_sqs {
            return Err(bad("--rows-per-message packs rows into SQS messages; it applies only to --to sqs:QUEUE"));
        }
        if self.rows_per_message == Some(0) {
            return Err(bad("--rows-per-message must be at least 1"));
        }
        if self.aggregate && !matches!(destination, Endpoint::Kinesis(_)) {
            return Err(bad("--aggregate packs rows into KPL aggregated records; it applies only to --to kinesis:STREAM"));
        }
        if !(1024..=1_048_576).contains(&self.aggregate_bytes) {
            return Err(bad("--aggregate-bytes must be between 1024 and 1048576 (Kinesis' record limit)"));
        }
        if !(1024..=1_048_576).contains(&self.max_message_bytes) {
            return Err(bad("--max-message-bytes must be between 1024 and 1048576"));
        }
        if self.max_attempts == 0 {
            return Err(bad("--max-attempts must be at least 1"));
        }
        if self.shards.is_some_and(|n| n == 0 || n > 1024) {
            return Err(bad("--shards must be between 1 and 1024"));
        }
        let fsync = match self.log_fsync.as_str() {
            "always" => FsyncPolicy::Always,
            "never" => FsyncPolicy::Never,
            other => FsyncPolicy::Interval(
                humantime::parse_duration(other).map_err(|e| bad(format!("--log-fsync {other:?}: {e}; use always, never or a duration like 1s")))?,
            ),
        };
        if self.progress_interval < Duration::from_millis(100) {
            return Err(bad("--progress-interval must be at least 100ms"));
        }
        if self.log_segment_bytes < 4096 {
            return Err(bad("--log-segment-bytes must be at least 4096"));
        }
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let rejects = self.rejects.unwrap_or_else(|| match &destination {
            Endpoint::Log(dir) => dir.join("_rejects").join(format!("producer-{stamp}.ndjson")),
            other => PathBuf::from("kappa-rejects").join(format!("{}-{stamp}.ndjson", other.to_string().replace([':', '/'], "_"))),
        });
        Ok(ProducerConfig {
            inputs,
            destination,
            schema_file: self.schema,
            infer_rows: self.infer_rows,
            write_schema: self.write_schema,
            null_tokens: self.null_tokens.parse().expect("infallible"),
            flatten: FlattenOptions { separator: self.separator, explode: self.explode },
            partition_key: self.partition_key,
            source_id: self.source_id,
            rate: self.rate,
            event_time: self.event_time.map(|c| (c, event_time_format)),
            speedup: self.speedup,
            limit: self.limit,
            passes: self.passes,
            rejects,
            max_errors: self.max_errors,
            max_reject_ratio: self.max_reject_ratio,
            reject_window: self.reject_window,
            sink: SinkOptions {
                create: CreateOptions { create: self.create, shards: self.shards },
                rows_per_message: self.rows_per_message,
                max_message_bytes: self.max_message_bytes,
                aggregate: self.aggregate.then_some(self.aggregate_bytes as usize),
                log: LogConfig { segment_bytes: self.log_segment_bytes, fsync },
            },
            retry: RetryPolicy { max_attempts: self.max_attempts, ..RetryPolicy::default() },
            aws: AwsOptions { endpoint_url: self.endpoint_url, region: self.region },
            progress_interval: self.progress_interval,
            summary_json: self.summary_json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(args: &[&str]) -> Result<ProducerConfig, ConfigError> {
        let mut argv = vec!["kappa-producer"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("parses").validate()
    }

    #[test]
    fn misconfiguration_says_what_to_change() {
        let csv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/seed-data/people/generated_mock_data.csv");
        let cases: &[(&[&str], &str)] = &[
            (&["-i", "/nonexistent.csv"], "no such file"),
            (&["-i", "-"], "needs --format"),
            (&["-i", csv, "--to", "kafka:x"], "unknown scheme"),
            (&["-i", csv, "--to", "s3://bucket/x"], "the producer sends to"),
            (&["-i", csv, "--speedup", "10"], "needs --event-time"),
            (&["-i", csv, "--rows-per-message", "10"], "only to --to sqs"),
            (&["-i", csv, "--delimiter", ";;"], "one ASCII character"),
            (&["-i", csv, "--log-fsync", "sometimes"], "always, never or a duration"),
            (&["-i", csv, "--event-time", "Date", "--event-time-format", "weekly"], "strftime"),
            (&["-i", csv, csv, "--source-id", "feed"], "--source-id names one input"),
            (&["-i", "/dev/null"], "not a regular file"),
            (&["-i", csv, "--progress-interval", "0s"], "at least 100ms"),
            (&["-i", csv, "--aggregate"], "applies only to --to kinesis:STREAM"),
            (&["-i", csv, "--to", "kinesis:s", "--aggregate", "--aggregate-bytes", "2000000"], "between 1024 and 1048576"),
        ];
        for (args, expected) in cases {
            let err = validate(args).expect_err("invalid").to_string();
            assert!(err.contains(expected), "{args:?}: {err}");
        }
        let ok = validate(&["-i", csv, "--to", "sqs:q", "--rows-per-message", "100", "--delimiter", "\\t"]).unwrap();
        assert_eq!(ok.inputs[0].delimiter, b'\t');
        assert_eq!(ok.sink.rows_per_message, Some(100));
    }
}
