//! Settings: plain values at the top of the crate. The command line is parsed and validated
//! into these ([`crate::config`]), and the modules they configure take them from here, so no
//! module imports the parser, and the parser imports no module it configures.

use std::path::PathBuf;
use std::time::Duration;

use kappa_common::time::EventTimeFormat;

use crate::partition::Granularity;

/// The codec of data files (`--compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Codec {
    Snappy,
    Zstd,
    None,
}

/// When buffers are written.
#[derive(Debug, Clone)]
pub struct FlushPolicy {
    pub rows: u64,
    pub bytes: u64,
    pub interval: Duration,
    pub max_memory: usize,
}

impl FlushPolicy {
    /// True once a buffer holding `rows` rows and `bytes` bytes must be cut.
    pub fn full(&self, rows: u64, bytes: u64) -> bool {
        rows >= self.rows || bytes >= self.bytes
    }
}

#[derive(Debug, Clone)]
pub struct CompactOptions {
    pub target_file_size: u64,
    pub min_age: Duration,
    pub retention: Duration,
    pub codec: Codec,
    pub dry_run: bool,
    /// A commit is made once this many bytes were rewritten (and at the end): a long
    /// compaction shows progress in the log, and a conflict or a kill costs at most this much.
    pub commit_every: u64,
}

/// `--max-quarantine-ratio` over the first `--quarantine-window` events of a run.
#[derive(Debug, Clone, Copy)]
pub struct QuarantineLimit {
    /// 0 to 1; 1 turns the check off.
    pub ratio: f64,
    pub window: u64,
}

impl Default for QuarantineLimit {
    fn default() -> Self {
        QuarantineLimit { ratio: 0.5, window: 10_000 }
    }
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub granularity: Granularity,
    /// The event-time column and its format; `None` partitions by arrival time.
    pub event_time: Option<(String, EventTimeFormat)>,
    pub flush: FlushPolicy,
    pub codec: Codec,
    pub dedup_window: usize,
    /// How long a producer file's rows are remembered across restarts after they last grew.
    pub dedup_retention: Duration,
    /// Every flush writes every open buffer, so each commit covers all events ingested so far.
    /// For sources that acknowledge whole messages (SQS), whose events may span partitions:
    /// a message is deleted only once all its rows are committed, and never re-read in part.
    pub flush_together: bool,
    pub quarantine_limit: QuarantineLimit,
    /// Where buffers go when memory runs short (a directory per table generation is made in it).
    pub spill_dir: PathBuf,
    /// A (partition, shard) buffer is written once the shard's event time has passed the
    /// partition's end (and the buffer's last row) by this much.
    pub partition_idle: Option<Duration>,
    /// How many of a commit's files are stored at once.
    pub puts: PutLimit,
    /// One file per partition and shard (`--per-shard-files`), instead of a commit writing the
    /// buffers of one partition from all the shards it holds as one file (see
    /// `pipeline::flush`).
    pub per_shard_files: bool,
}

/// A commit stores its files concurrently (`--max-puts`): at most `files` at once, and no more
/// than `bytes` of them in flight (one file alone may be larger). Small files (hour partitions)
/// thus go many at a time, where each S3 PUT's round trip, not its bytes, is the cost; large
/// files fewer, holding less memory.
#[derive(Debug, Clone, Copy)]
pub struct PutLimit {
    pub files: usize,
    pub bytes: usize,
}

/// What a Kinesis record's data holds (`--payload`); KPL aggregates are recognised in every
/// mode (see `source::kinesis::payload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PayloadFormat {
    /// JSON, or gzip- or zstd-compressed JSON, told apart by their magic bytes.
    #[default]
    Auto,
    /// JSON, taken as it is.
    Json,
    /// gzip-compressed JSON, required.
    Gzip,
    /// zstd-compressed JSON, required.
    Zstd,
    /// CloudWatch Logs subscription batches (gzip JSON): a row per log event.
    CloudwatchLogs,
}

impl PayloadFormat {
    /// The flag's value that names it.
    pub fn name(self) -> &'static str {
        match self {
            PayloadFormat::Auto => "auto",
            PayloadFormat::Json => "json",
            PayloadFormat::Gzip => "gzip",
            PayloadFormat::Zstd => "zstd",
            PayloadFormat::CloudwatchLogs => "cloudwatch-logs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PayloadOptions {
    pub format: PayloadFormat,
    /// CloudWatch Logs: a message that is a JSON object also becomes `message_<member>` columns.
    pub parse_message: bool,
}

/// Where a Kinesis shard the table has no position of starts (`--start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// The oldest record the stream retains.
    #[default]
    TrimHorizon,
    /// Records written after the table's first start with it (see
    /// `kappa_table::Table::latest_start`): read as `AtTimestamp` of that instant.
    Latest,
    /// The first record that arrived at or after this time (ms since the epoch).
    AtTimestamp(i64),
}

/// How the Kinesis source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisRead {
    /// Wait between GetRecords calls on a shard that returned nothing.
    pub poll_interval: Duration,
    /// How often ListShards looks for new shards.
    pub shard_refresh: Duration,
    pub payload: PayloadOptions,
    pub start: StartPosition,
    /// `--efo`: read through enhanced fan-out as this registered stream consumer.
    pub efo: Option<String>,
}

/// `--on-log-gap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogGapPolicy {
    /// Stop with an error naming the shard and both positions.
    Fail,
    /// Read on from what the log holds; the summary counts what was skipped.
    Skip,
}

#[derive(Debug, Clone)]
pub struct SqsOptions {
    /// Queue name or URL.
    pub queue: String,
    pub visibility_timeout: Duration,
    pub receivers: usize,
    pub max_in_flight: usize,
    pub max_receives: u32,
    /// With `--until-idle`: how long a drain waits for messages in flight elsewhere.
    pub in_flight_wait: Option<Duration>,
    /// Messages are S3 notifications of files to read (`sqs+s3:`), not events.
    pub files: Option<kappa_common::flatten::FlattenOptions>,
}

/// Where the shard leases are (`--leases`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStoreConfig {
    /// Beside the embedded log (`<log>/_leases/`): processes on one machine.
    Local,
    /// A DynamoDB table, created if missing.
    Dynamo(String),
}

/// Shard leases: workers share the source's shards, each shard read by one at a time.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    pub store: LeaseStoreConfig,
    pub worker_id: String,
    pub failover: Duration,
}
