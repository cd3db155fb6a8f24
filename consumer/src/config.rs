//! The command line of `kappa-consumer`, validated into a typed [`ConsumerConfig`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kappa_common::endpoint::Endpoint;
use kappa_common::schema::TableSchema;
use kappa_common::time::EventTimeFormat;

pub use kappa_table::lake::LakeLocation;

use crate::partition::Granularity;
use crate::settings::{
    Codec, CompactOptions, FlushPolicy, KinesisRead, PayloadFormat, PayloadOptions, PipelineConfig, PutLimit, QuarantineLimit, StartPosition,
};
pub use crate::settings::{LeaseOptions, LeaseStoreConfig, LogGapPolicy, SqsOptions};

/// Stream-processes events from a log into a time-partitioned Parquet lake, exactly once.
///
/// Events are buffered per partition (and source shard) and written as Parquet when a buffer
/// reaches --flush-rows or --flush-bytes, is older than --flush-interval, and on shutdown; past
/// --max-memory buffered rows wait in --spill-dir rather than cut a file. Each flush is committed atomically with
/// the source positions it covers; after a crash the consumer resumes from the last commit and
/// writes every row exactly once. SIGINT/SIGTERM: stop reading, flush, commit, exit 0.
///
/// Exit status: 0 done; 1 an error while running (source, lake, I/O, another writer); 2
/// misconfiguration, found from the flags or once the data is seen (an --event-time column
/// the schema lacks or an --event-time-format that cannot read it); 3 more quarantined events
/// than --max-quarantine-ratio allows (nothing of them committed).
#[derive(Debug, Parser)]
#[command(name = "kappa-consumer", version, about, long_about, max_term_width = 100, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,

    /// Log lines as text (for people), or as one JSON object per line with the event's fields
    /// at the top level (for CloudWatch Logs Insights and other log services).
    #[arg(long, global = true, value_name = "text|json", default_value = "text", env = "KAPPA_LOG_FORMAT")]
    pub log_format: kappa_common::logging::LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Shows a log's shards (records, first arrival) and prints its first events.
    Inspect {
        /// The log to read: log:PATH.
        #[arg(long, value_name = "URI", default_value = "log:./data/log")]
        from: String,
        /// Events to print (from the start of each shard in turn); 0 prints none.
        #[arg(long, value_name = "N", default_value_t = 5)]
        limit: usize,
        /// Keep printing events as they are appended (stop with Ctrl-C).
        #[arg(long)]
        follow: bool,
        /// Count from each shard's last segment only, without reading and checking every frame
        /// (fast on a large log; the output says the log was not verified).
        #[arg(long)]
        quick: bool,
    },
    /// Shows a lake table: generation, schema, and per partition the files, rows and bytes
    /// read from the Parquet footers; then its first rows as JSON.
    Describe {
        /// The lake directory.
        #[arg(long, value_name = "PATH", default_value = "./data/lake")]
        lake: String,
        /// The table.
        #[arg(long, value_name = "NAME", default_value = "events")]
        table: String,
        /// Rows to print.
        #[arg(long, value_name = "N", default_value_t = 5)]
        limit: usize,
    },
    /// Asks a running consumer (its --metrics-addr) whether it is ready (`/readyz`: the
    /// source answered, and it commits what it reads) or up (`--path /healthz`). Exit 0 and
    /// the answer if so, 1 and the reason if not. For container health checks: the image has
    /// no shell or curl.
    Health {
        /// The consumer's --metrics-addr.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9464")]
        addr: std::net::SocketAddr,
        /// What to ask: /readyz or /healthz.
        #[arg(long, value_name = "PATH", default_value = "/readyz")]
        path: String,
    },
    /// Lists the workers sharing a source's shards through leases (--leases): each worker's
    /// host, pid, whether its heartbeat moves (watched for one heartbeat interval), the shards
    /// it holds and where it read them to; and the shards nobody holds.
    Workers {
        /// The lease store: local (beside the log of --from) or dynamodb:TABLE.
        #[arg(long, value_name = "local|dynamodb:TABLE", default_value = "local")]
        leases: String,
        /// The log whose local leases to read (with --leases local).
        #[arg(long, value_name = "URI", default_value = "log:./data/log")]
        from: String,
        /// The workers' --failover: the heartbeat interval watched is a fifth of it.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
        failover: Duration,
        /// AWS endpoint override (moto, LocalStack), for dynamodb:TABLE.
        #[arg(long, value_name = "URL")]
        endpoint_url: Option<String>,
        /// AWS region, for dynamodb:TABLE.
        #[arg(long, value_name = "REGION")]
        region: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Source of events: log:PATH (the embedded log; every shard, following the tail),
    /// kinesis:STREAM (every shard; children after their parents), sqs:QUEUE (name or URL;
    /// NDJSON bodies, one or more events each), or sqs+s3:QUEUE (S3 ObjectCreated
    /// notifications; each object, CSV/NDJSON/JSON, becomes rows).
    #[arg(long, value_name = "URI", default_value = "log:./data/log")]
    pub from: String,

    /// The lake: a local directory, or s3://BUCKET[/PREFIX].
    #[arg(long, value_name = "PATH|S3_URI", default_value = "./data/lake")]
    pub lake: String,

    /// Table name: the lake's sub-directory for this stream of events.
    #[arg(long, value_name = "NAME", default_value = "events")]
    pub table: String,

    #[command(flatten)]
    pub pipeline: PipelineArgs,

    /// Exit 0 once the source has been idle this long, with everything flushed and committed
    /// (for tests and scheduled batch runs). Idle time counts once the source has caught up
    /// (log: read to its end; Kinesis: every shard read to its tip; SQS: the queue answered a
    /// first, short poll), so a source slow to answer at start is waited for, and a Kinesis
    /// shard's idle time only as far as its last empty read: a shard whose reads fail or are
    /// refused keeps the run going. `0s` stops as soon as the source has caught up. Default:
    /// run until SIGINT/SIGTERM.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub until_idle: Option<Duration>,

    /// Interval of the status line (events/s, open partitions, buffered bytes, lag).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub status_interval: Duration,

    /// Also write the end-of-run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,

    /// Serve Prometheus metrics (events read, rows written, quarantined, commits, open
    /// partitions, buffered bytes, lag) over HTTP at this address, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// Share the source's shards with other consumers of the same table through leases:
    /// `local` (beside the embedded log, for processes on one machine) or `dynamodb:TABLE` (a
    /// lease table, created if missing). Each shard is read by one worker at a time; a worker
    /// that dies is replaced within --failover, and one that stops (SIGTERM) hands its shards
    /// over at once. Rows are written once across moves: each commit is fenced per shard (see
    /// docs/scale-out.md). For log:PATH and kinesis:STREAM sources (Kinesis: dynamodb:TABLE).
    /// `none` is the default, said explicitly (a template that gives the flag for every source).
    #[arg(long, value_name = "local|dynamodb:TABLE|none")]
    pub leases: Option<String>,

    /// This consumer's name: in the lease store with --leases; for an SQS queue, in the table's
    /// commits (several consumers may share a queue and a table, each its own name). Default:
    /// host name and pid. Two running workers must not share one.
    #[arg(long, value_name = "ID")]
    pub worker_id: Option<String>,

    /// With --leases: how long a silent worker keeps its shards before others take them.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub failover: Duration,

    /// Also keep every event as it arrived, as zstd NDJSON by arrival hour, under
    /// URI/<table>/raw/ (a local directory or s3://BUCKET[/PREFIX]), in the same commits as the
    /// Parquet: the lake can then be rebuilt with `kappa-replay --from raw:URI/<table>/raw`.
    #[arg(long, value_name = "PATH|S3_URI")]
    pub archive: Option<String>,

    /// Compact the table while writing it, as `kappa-replay compact` does: every
    /// --compact-every, partitions whose newest file is older than --compact-min-age are merged
    /// into files of about --target-file-size, in commits that change no rows; replaced files
    /// are deleted 7 days later. An --until-idle run also compacts once at its end.
    #[arg(long)]
    pub compact: bool,

    /// With --compact: time between compaction passes (e.g. 10m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub compact_every: Duration,

    /// With --compact: leave partitions with a file younger than this (the consumer may still
    /// be writing them; partitions close with --partition-idle and --flush-interval).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub compact_min_age: Duration,

    /// With --compact: size merged files are cut at, after the row group (122,880 rows) that
    /// passes it (suffixes KiB, MiB, GiB).
    #[arg(long, value_name = "BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub target_file_size: u64,

    /// Register the table in this AWS Glue database (created if missing), so Athena queries
    /// it as a Delta table without a crawler: the Glue table points at the table's root with
    /// `table_type=DELTA`, and is updated when the schema grows. Needs an S3 lake.
    #[arg(long, value_name = "DATABASE")]
    pub glue_database: Option<String>,

    /// log: what to do when the log no longer holds the records after a shard's committed
    /// position (segments deleted: rows gone) or ends before it (rolled back, restored from an
    /// old backup): `fail` stops with both positions named; `skip` accepts the loss, reads on
    /// from what the log holds, and counts the records skipped in the summary.
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = LogGapPolicy::Fail)]
    pub on_log_gap: LogGapPolicy,

    /// Kinesis: wait between GetRecords calls on a shard that returned nothing (AWS allows 5
    /// calls per second per shard, shared by all consumers of the stream).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,

    /// Kinesis: how often ListShards looks for new shards (a shard that closes triggers a look
    /// at once).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shard_refresh: Duration,

    #[command(flatten)]
    pub payload: PayloadArgs,

    /// Kinesis: read through enhanced fan-out as this stream consumer (registered if missing,
    /// reused if it exists): each shard pushes to it over a subscription, 2 MiB/s of its own,
    /// instead of the 5 GetRecords calls/s and 2 MiB/s per shard that every polling
    /// application of the stream shares. Costs consumer-shard-hours and data retrieved
    /// (docs/kinesis.md).
    #[arg(long, value_name = "CONSUMER")]
    pub efo: Option<String>,

    /// Kinesis: where a shard the table has no position of starts: trim-horizon (the oldest
    /// record retained), latest (records written from the table's first start with latest on,
    /// recorded in the table: restarts, lease moves and shards a reshard opens later lose none
    /// of them), or at-timestamp:TIME (RFC 3339; the first record that arrived then or later).
    /// Shards the table has read resume after their position (docs/kinesis.md).
    #[arg(long, value_name = "WHERE", default_value = "trim-horizon", value_parser = parse_start)]
    pub start: StartPosition,

    /// SQS: how long received messages stay invisible to others; renewed while their rows wait
    /// for a flush, so it only matters when this consumer dies.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub visibility_timeout: Duration,

    /// SQS with --until-idle: how long to wait for messages in flight elsewhere (received by
    /// a consumer that died, invisible until their visibility timeout ends) before draining
    /// without them; the log then says how many were left.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration)]
    pub in_flight_wait: Duration,

    /// SQS: concurrent long polls (each 20 s, up to 10 messages).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub receivers: usize,

    /// SQS: messages held before a flush is forced (SQS allows 120,000 in flight per queue).
    #[arg(long, value_name = "MESSAGES", default_value_t = 100_000)]
    pub max_in_flight: usize,

    /// SQS: a message received this many times without being committed is quarantined whole
    /// and deleted. Ignored when the queue has a redrive policy: SQS moves it to the
    /// dead-letter queue instead.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_receives: u32,

    /// sqs+s3 JSON objects: the array field (dotted path for a nested one) that becomes one
    /// row per element, the parent's fields repeated.
    #[arg(long, value_name = "FIELD")]
    pub explode: Option<String>,

    /// sqs+s3 JSON objects: the separator between parent and child names when flattening.
    #[arg(long, value_name = "SEP", default_value = "_")]
    pub separator: String,

    /// AWS endpoint override for every service (LocalStack, moto, VPC endpoints). Default: the
    /// standard AWS_ENDPOINT_URL variables, else AWS itself.
    #[arg(long, value_name = "URL", env = "KAPPA_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,

    /// AWS region. Default: AWS_REGION / AWS_DEFAULT_REGION / the profile's region.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
}

/// How events become Parquet: shared by `kappa-consumer` and `kappa-replay` (a replay may use
/// other settings than the live consumer: that is how a lake is reprocessed with new logic).
#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    /// Schema file (as `kappa-producer --write-schema` writes it): the types of the columns it
    /// names (string, int64, float64, boolean, date, timestamp, timestamp_ntz,
    /// decimal(P,S)); other columns are inferred from the events. For the consumer it applies
    /// to a new table (a table's types never change under it); kappa-replay keeps the live
    /// table's columns and types and retypes only the columns this file names.
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,

    /// Column holding each event's time, which chooses its partition. Default (or empty, as a
    /// template leaves it): the arrival time in the log.
    #[arg(long, value_name = "COLUMN")]
    pub event_time: Option<String>,

    /// Format of --event-time: rfc3339 (also YYYY-MM-DD and YYYY-MM-DD HH:MM:SS), epoch_s,
    /// epoch_ms, or a strftime pattern such as "%Y/%m/%d %H:%M". Times without zone are UTC.
    #[arg(long, value_name = "FORMAT", default_value = "rfc3339")]
    pub event_time_format: String,

    /// Partition granularity: year=YYYY[/month=MM[/day=DD[/hour=HH]]] directories.
    #[arg(long, value_enum, value_name = "UNIT", default_value_t = Granularity::Day)]
    pub partition_by: Granularity,

    /// Write a partition's buffer once it holds this many rows (per source shard).
    #[arg(long, value_name = "ROWS", default_value_t = 1_000_000)]
    pub flush_rows: u64,

    /// Write a partition's buffer once its events total this many bytes of JSON (suffixes
    /// KiB, MiB, GiB).
    #[arg(long, value_name = "BYTES", default_value = "128MiB", value_parser = parse_bytes)]
    pub flush_bytes: u64,

    /// Write a partition's buffer once it is this old (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub flush_interval: Duration,

    /// Memory for buffered rows (Arrow buffers, and raw events kept for --archive); past it
    /// every buffer's rows in memory move to --spill-dir, each row at most once, and come back
    /// when their file is written: memory never cuts a file. The process needs up to ~165 MiB more
    /// (chunks read and decoded ahead, the flush being written) (suffixes KiB, MiB, GiB).
    #[arg(long, value_name = "BYTES", default_value = "64MiB", value_parser = parse_bytes)]
    pub max_memory: u64,

    /// Scratch directory for buffers moved out of memory (see --max-memory). Each process
    /// writing a table generation uses a `kappa-<table>-<hash>-<pid>` directory in it (the hash
    /// of the table's real location, so consumers of other lakes never share one), locked while
    /// it runs and removed when it ends; a start removes those that ended processes left. Needs room for what the open buffers hold:
    /// at most about the JSON size of one --flush-interval of events. Default: the system's
    /// temporary directory ($TMPDIR, else /tmp).
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,

    /// Write a partition's buffer once the shard's event time (the latest it delivered) has
    /// passed the partition's end, and where it stood at the buffer's last row, by this much,
    /// and the shard has delivered 10,000 more events without a row for it. After a row that
    /// came when the shard's time was already past its partition's end by more than this, by
    /// that much instead. A table advancing in time writes each finished partition as it goes
    /// instead of holding it (or spilling it) until --flush-interval. A row coming after its
    /// partition was written starts another file there (`kappa-replay compact` merges them).
    /// In data out of time order partitions keep getting rows and stay open. "off" turns it
    /// off (e.g. 10m, 1h, off).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_idle)]
    pub partition_idle: Idle,

    /// Parquet compression codec.
    #[arg(long, value_enum, value_name = "CODEC", default_value_t = Codec::Snappy)]
    pub compression: Codec,

    /// Write one file per partition and shard (named after the shard's positions it holds)
    /// instead of the default: one file per partition in each commit, holding the rows of
    /// every shard this consumer reads whose buffer for it is written in that commit (up to
    /// --flush-rows, and 4 MiB of event JSON: larger buffers stay files of their own). The
    /// default's files are a function of the log like these: a buffer closed as idle
    /// (--partition-idle) waits, spilled if memory is short, for the partition's buffers in
    /// the other shards, up to --flush-interval; buffers cut by --flush-rows/--flush-bytes,
    /// or idle after a late row, go alone. So a restart after a crash, and a replay, write
    /// the same files byte for byte as an uninterrupted run, except where --flush-interval or
    /// a shutdown cut a buffer. Per-shard files are 4 times as many with 4 shards. Always so
    /// with --leases (the shards a process holds move) and for an SQS queue.
    #[arg(long)]
    pub per_shard_files: bool,

    /// Accepted for scripts written before files of all shards became the default; does
    /// nothing (see --per-shard-files).
    #[arg(long, hide = true)]
    pub merge_shards: bool,

    /// Files a commit stores at once, at most (S3 PUTs; local writes and fsyncs). Fewer when
    /// the files are large: at most half of --max-memory of encoded files is in flight, so
    /// thousands of small files (hour partitions) go N at a time, where each PUT's round trip
    /// is what costs, and files of 16 MiB two at a time (with the default --max-memory).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_puts: usize,

    /// Duplicate deliveries are dropped by event identity. The producer's identities
    /// (`<file>:<pass>:<row>`) are kept per file: in this run as a bitmap of rows (a span of at
    /// least this many rows per file), and across restarts as the committed rows' ranges in the
    /// commit (see --dedup-retention). Other identities are kept in a window of this many
    /// (about 50 bytes each). 0 turns deduplication off.
    #[arg(long, value_name = "EVENTS", default_value_t = 1_000_000)]
    pub dedup_window: usize,

    /// How long a producer file's committed rows are remembered after they last grew (e.g.
    /// 7d, 36h): a copy of the file sent again within it is dropped, even after restarts.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub dedup_retention: Duration,

    /// Stop (exit 3) when more than this share of the first --quarantine-window events of a run
    /// is quarantined: settings that do not fit the data (a mistyped --event-time, the wrong
    /// schema) must not fill the error area. Judged from 100 events on, before the commit
    /// that would record their quarantine. A ratio from 0 to 1; 1 turns the check off.
    #[arg(long, value_name = "RATIO", default_value_t = 0.5)]
    pub max_quarantine_ratio: f64,

    /// Events at the start of each run that --max-quarantine-ratio is judged on.
    #[arg(long, value_name = "EVENTS", default_value_t = 10_000)]
    pub quarantine_window: u64,
}

impl PipelineArgs {
    /// Validates into the pipeline's settings and the schema file's contents.
    pub fn validate(&self, flush_together: bool) -> Result<(PipelineConfig, Option<TableSchema>), ConfigError> {
        let bad = |m: String| ConfigError(m);
        let schema = match &self.schema {
            Some(path) => Some(TableSchema::read_file(path).map_err(|e| bad(format!("--schema: {e}")))?),
            None => None,
        };
        let format: EventTimeFormat = self.event_time_format.parse().map_err(|e| bad(format!("--event-time-format: {e}")))?;
        if self.flush_rows == 0 || self.flush_bytes == 0 {
            return Err(bad("--flush-rows and --flush-bytes must be at least 1".into()));
        }
        if self.max_memory < 1 << 20 {
            return Err(bad("--max-memory must be at least 1MiB".into()));
        }
        if !(0.0..=1.0).contains(&self.max_quarantine_ratio) {
            return Err(bad(format!("--max-quarantine-ratio {}: give a share from 0 to 1, e.g. 0.5 (1 turns the check off)", self.max_quarantine_ratio)));
        }
        if !(1..=1024).contains(&self.max_puts) {
            return Err(bad(format!("--max-puts {}: give 1 to 1024 files at once", self.max_puts)));
        }
        if self.quarantine_window == 0 {
            return Err(bad("--quarantine-window must be at least 1 event".into()));
        }
        let config = PipelineConfig {
            granularity: self.partition_by,
            event_time: self.event_time.clone().filter(|c| !c.is_empty()).map(|c| (c, format)),
            flush: FlushPolicy { rows: self.flush_rows, bytes: self.flush_bytes, interval: self.flush_interval, max_memory: self.max_memory as usize },
            codec: self.compression,
            dedup_window: self.dedup_window,
            dedup_retention: self.dedup_retention,
            flush_together,
            quarantine_limit: QuarantineLimit { ratio: self.max_quarantine_ratio, window: self.quarantine_window },
            spill_dir: self.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
            partition_idle: self.partition_idle.0,
            puts: PutLimit { files: self.max_puts, bytes: (self.max_memory / 2) as usize },
            per_shard_files: self.per_shard_files,
        };
        Ok((config, schema))
    }
}

/// How Kinesis records' data becomes events (consumer and replay: both must read a stream alike).
#[derive(Debug, Clone, Args)]
pub struct PayloadArgs {
    /// Kinesis: what a record's data holds. auto: JSON, or gzip or zstd compressed JSON (told
    /// by their magic bytes); json: JSON as it is; gzip, zstd: that compression, required;
    /// cloudwatch-logs: CloudWatch Logs subscription batches, a row per log event (id,
    /// timestamp, message, log_group, log_stream, owner, subscription_filters; event time
    /// `timestamp` unless --event-time says otherwise). KPL aggregated records are unpacked in
    /// every mode. A compressed payload that is not one JSON document is NDJSON, a row per line.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = PayloadFormat::Auto)]
    pub payload: PayloadFormat,

    /// With --payload cloudwatch-logs: json also turns a message that is a JSON object into
    /// message_<member> columns (message keeps the text); none leaves messages as text.
    #[arg(long, value_enum, value_name = "HOW", default_value_t = ParseMessage::None)]
    pub parse_message: ParseMessage,
}

/// `--parse-message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ParseMessage {
    None,
    Json,
}

impl PayloadArgs {
    /// Validates for a source: payload settings apply to Kinesis only.
    pub fn validate(&self, kinesis: bool) -> Result<PayloadOptions, ConfigError> {
        let options = PayloadOptions { format: self.payload, parse_message: self.parse_message == ParseMessage::Json };
        if !kinesis && options != PayloadOptions::default() {
            return Err(ConfigError("--payload and --parse-message apply to kinesis:STREAM sources".into()));
        }
        if options.parse_message && options.format != PayloadFormat::CloudwatchLogs {
            return Err(ConfigError("--parse-message json parses CloudWatch Logs messages: it needs --payload cloudwatch-logs".into()));
        }
        Ok(options)
    }

    /// CloudWatch Logs batches carry their events' time: the event time unless --event-time
    /// names a column.
    pub fn adjust(&self, pipeline: &mut PipelineConfig) {
        if self.payload == PayloadFormat::CloudwatchLogs && pipeline.event_time.is_none() {
            pipeline.event_time = Some(("timestamp".to_string(), EventTimeFormat::EpochMillis));
        }
    }
}

/// `--start`.
fn parse_start(text: &str) -> Result<StartPosition, String> {
    match text {
        "trim-horizon" => Ok(StartPosition::TrimHorizon),
        "latest" => Ok(StartPosition::Latest),
        _ => match text.strip_prefix("at-timestamp:") {
            Some(time) => chrono::DateTime::parse_from_rfc3339(time)
                .map(|t| StartPosition::AtTimestamp(t.timestamp_millis()))
                .map_err(|e| format!("at-timestamp:{time}: {e}; give an RFC 3339 time such as 2026-11-25T10:00:00Z")),
            None => Err(format!("{text:?}: give trim-horizon, latest or at-timestamp:TIME (RFC 3339)")),
        },
    }
}

/// `--partition-idle`: a duration, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct Idle(pub Option<Duration>);

fn parse_idle(text: &str) -> Result<Idle, String> {
    match text {
        "off" | "never" => Ok(Idle(None)),
        _ => humantime::parse_duration(text).map(|d| Idle(Some(d))).map_err(|e| format!("{e} (give a duration such as 10m or 1h, or off)")),
    }
}

pub fn parse_lake(text: &str) -> Result<LakeLocation, ConfigError> {
    kappa_table::lake::parse_lake(text).map_err(ConfigError)
}

/// Checks a table name: one Glue and Athena accept.
pub fn validate_table(table: &str) -> Result<(), ConfigError> {
    kappa_table::lake::validate_table_name(table).map_err(ConfigError)
}

/// Parses `1048576`, `128MiB`, `1GiB`, `512KiB` (also KB/MB/GB as powers of 1000).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a size; write e.g. 134217728, 128MiB or 1GiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?}: use KiB, MiB, GiB (or KB, MB, GB)")),
    };
    number.checked_mul(factor).ok_or_else(|| format!("{text:?} is too large"))
}

/// Where events come from, validated.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    Log { path: PathBuf, on_gap: LogGapPolicy },
    Kinesis { stream: String, read: KinesisRead },
    Sqs(SqsOptions),
}

impl std::fmt::Display for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceConfig::Log { path, .. } => write!(f, "log:{}", path.display()),
            SourceConfig::Kinesis { stream, .. } => write!(f, "kinesis:{stream}"),
            SourceConfig::Sqs(o) if o.files.is_some() => write!(f, "sqs+s3:{}", o.queue),
            SourceConfig::Sqs(o) => write!(f, "sqs:{}", o.queue),
        }
    }
}

#[derive(Debug)]
pub struct ConsumerConfig {
    pub source: SourceConfig,
    pub lake: LakeLocation,
    pub archive: Option<LakeLocation>,
    pub glue_database: Option<String>,
    pub aws: kappa_common::aws::AwsOptions,
    pub table: String,
    pub schema: Option<TableSchema>,
    pub pipeline: PipelineConfig,
    pub until_idle: Option<Duration>,
    pub status_interval: Duration,
    pub summary_json: Option<PathBuf>,
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// `--compact`: what a pass does, and how often.
    pub compact: Option<(CompactOptions, Duration)>,
    /// `--leases`: shards shared with other workers.
    pub leases: Option<LeaseOptions>,
    /// `--worker-id`, or host name and pid.
    pub worker_id: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl RunArgs {
    pub fn validate(self) -> Result<ConsumerConfig, ConfigError> {
        let bad = |m: String| ConfigError(m);
        let from: Endpoint = self.from.parse().map_err(|e| bad(format!("--from: {e}")))?;
        let visibility = self.visibility_timeout.as_secs();
        if !(10..=43_200).contains(&visibility) {
            return Err(bad(format!(
                "--visibility-timeout {visibility}s: give 10s to 12h. SQS itself accepts 0s to 12h, but this consumer keeps held messages \
                 invisible by renewing the timeout every third of it, which needs at least 10s to leave room for the renewal calls"
            )));
        }
        if !(1..=64).contains(&self.receivers) {
            return Err(bad("--receivers must be 1 to 64".into()));
        }
        if !(10..=120_000).contains(&self.max_in_flight) {
            return Err(bad("--max-in-flight must be 10 to 120000 (the SQS in-flight limit)".into()));
        }
        if self.shard_refresh < Duration::from_secs(1) {
            return Err(bad("--shard-refresh must be at least 1s (ListShards allows 100 calls per second per account)".into()));
        }
        if self.poll_interval < Duration::from_millis(200) {
            return Err(bad("--poll-interval must be at least 200ms (Kinesis allows 5 GetRecords per second per shard)".into()));
        }
        let sqs = |queue: String, files: bool| {
            SourceConfig::Sqs(SqsOptions {
                queue,
                visibility_timeout: self.visibility_timeout,
                receivers: self.receivers,
                max_in_flight: self.max_in_flight,
                max_receives: self.max_receives.max(1),
                in_flight_wait: self.until_idle.map(|_| self.in_flight_wait),
                files: files.then(|| kappa_common::flatten::FlattenOptions { separator: self.separator.clone(), explode: self.explode.clone() }),
            })
        };
        let source = match from {
            Endpoint::Log(path) => SourceConfig::Log { path, on_gap: self.on_log_gap },
            Endpoint::Kinesis(stream) => SourceConfig::Kinesis {
                stream,
                read: KinesisRead {
                    poll_interval: self.poll_interval,
                    shard_refresh: self.shard_refresh,
                    payload: self.payload.validate(true)?,
                    start: self.start,
                    efo: self.efo.clone(),
                },
            },
            Endpoint::Sqs(queue) => sqs(queue, false),
            Endpoint::SqsS3(queue) => sqs(queue, true),
            other => return Err(bad(format!("--from {other}: a consumer reads log:PATH, kinesis:STREAM, sqs:QUEUE or sqs+s3:QUEUE"))),
        };
        if self.explode.is_some() && !matches!(&source, SourceConfig::Sqs(o) if o.files.is_some()) {
            return Err(bad(
                "--explode applies to files read from sqs+s3:QUEUE; events from other sources are already flat (the producer flattens them)".into()
            ));
        }
        let lake = parse_lake(&self.lake)?;
        let archive = self.archive.as_deref().map(parse_lake).transpose().map_err(|e| ConfigError(e.0.replace("--lake", "--archive")))?;
        if let Some(database) = &self.glue_database {
            if !matches!(lake, LakeLocation::S3 { .. }) {
                return Err(bad(format!(
                    "--glue-database {database}: the lake is a local directory, which Athena cannot read; give an s3://BUCKET[/PREFIX] --lake, or drop --glue-database"
                )));
            }
            if database.is_empty() || !database.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
                return Err(bad(format!("--glue-database {database:?}: use lower-case letters, digits and underscores (Athena's rule for names)")));
            }
        }
        validate_table(&self.table)?;
        if self.status_interval.is_zero() {
            return Err(bad("--status-interval must be longer than 0s".into()));
        }
        let flush_together = matches!(source, SourceConfig::Sqs(_));
        let (mut pipeline, schema) = self.pipeline.validate(flush_together)?;
        let kinesis = matches!(source, SourceConfig::Kinesis { .. });
        self.payload.validate(kinesis)?;
        self.payload.adjust(&mut pipeline);
        if let Some(name) = &self.efo {
            if !kinesis {
                return Err(bad("--efo applies to kinesis:STREAM sources".into()));
            }
            // Kinesis' rule for consumer names.
            if name.is_empty() || name.len() > 128 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
                return Err(bad(format!("--efo {name:?}: a stream consumer name is 1 to 128 letters, digits, '_', '.' or '-'")));
            }
        }
        if !kinesis && self.start != StartPosition::TrimHorizon {
            return Err(bad("--start applies to kinesis:STREAM sources".into()));
        }
        if self.compact && self.compact_every < Duration::from_secs(1) {
            return Err(bad("--compact-every must be at least 1s".into()));
        }
        if self.target_file_size < 1 << 20 {
            return Err(bad("--target-file-size must be at least 1MiB".into()));
        }
        let compact = self.compact.then(|| {
            let options = CompactOptions {
                target_file_size: self.target_file_size,
                min_age: self.compact_min_age,
                retention: Duration::from_secs(7 * 24 * 3600),
                codec: pipeline.codec,
                dry_run: false,
                commit_every: 1 << 30,
            };
            (options, self.compact_every)
        });
        let worker_id = match &self.worker_id {
            Some(id) if id.is_empty() || id.len() > 200 => return Err(bad("--worker-id must be 1 to 200 characters".into())),
            Some(id) => id.clone(),
            None => format!("{}-{}", kappa_table::writers::host_name(), std::process::id()),
        };
        let leases = match self.leases.as_deref().filter(|spec| *spec != "none") {
            None => {
                if self.worker_id.is_some() && !matches!(source, SourceConfig::Sqs(_)) {
                    return Err(bad("--worker-id names a worker in the lease store: give --leases too (or read an sqs: queue)".into()));
                }
                None
            }
            Some(spec) => {
                let store = match spec.split_once(':') {
                    None if spec == "local" => LeaseStoreConfig::Local,
                    Some(("dynamodb", table)) if !table.is_empty() => LeaseStoreConfig::Dynamo(table.to_string()),
                    _ => return Err(bad(format!("--leases {spec}: give local (beside the embedded log) or dynamodb:TABLE"))),
                };
                match &source {
                    SourceConfig::Log { .. } => {}
                    SourceConfig::Kinesis { .. } if store == LeaseStoreConfig::Local => {
                        return Err(bad("--leases local keeps the leases beside the embedded log: for kinesis:STREAM give --leases dynamodb:TABLE".into()));
                    }
                    SourceConfig::Kinesis { .. } => {}
                    SourceConfig::Sqs(_) => {
                        return Err(bad(
                            "--leases: an SQS queue has no shards to lease; run several consumers without --leases, each takes messages as it can (see docs/scale-out.md)"
                                .into(),
                        ));
                    }
                }
                if self.failover < Duration::from_secs(1) {
                    return Err(bad(format!("--failover {:?}: leases need at least 1s (10s is the default)", self.failover)));
                }
                Some(LeaseOptions { store, worker_id: worker_id.clone(), failover: self.failover })
            }
        };
        Ok(ConsumerConfig {
            leases,
            worker_id,
            source,
            lake,
            archive,
            glue_database: self.glue_database,
            table: self.table,
            schema,
            pipeline,
            aws: kappa_common::aws::AwsOptions { endpoint_url: self.endpoint_url, region: self.region },
            until_idle: self.until_idle,
            status_interval: self.status_interval,
            summary_json: self.summary_json,
            metrics_addr: self.metrics_addr,
            compact,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("128MiB").unwrap(), 128 << 20);
        assert_eq!(parse_bytes("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("2 GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("5MB").unwrap(), 5_000_000);
        assert!(parse_bytes("lots").unwrap_err().contains("128MiB"));
        assert!(parse_bytes("5 parsecs").unwrap_err().contains("unknown size unit"));
    }

    #[test]
    fn misconfiguration_says_what_to_change() {
        let validate = |args: &[&str]| {
            let mut argv = vec!["kappa-consumer"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).unwrap().run.validate().unwrap_err().to_string()
        };
        assert!(validate(&["--table", "Sales-2025"]).contains("lowercase letters"));
        assert!(validate(&["--from", "kafka:x"]).contains("unknown scheme"));
        assert!(validate(&["--event-time-format", "weekly"]).contains("strftime"));
        assert!(validate(&["--max-memory", "1KiB"]).contains("at least 1MiB"));
        assert!(validate(&["--max-puts", "0"]).contains("give 1 to 1024"));
        assert!(validate(&["--target-file-size", "64KiB"]).contains("--target-file-size must be at least 1MiB"));
        assert!(validate(&["--compact", "--compact-every", "100ms"]).contains("--compact-every must be at least 1s"));
        // Kinesis settings where they mean nothing, or in a form Kinesis refuses.
        assert!(validate(&["--payload", "gzip"]).contains("--payload and --parse-message apply to kinesis:STREAM"));
        assert!(validate(&["--from", "kinesis:s", "--parse-message", "json"]).contains("needs --payload cloudwatch-logs"));
        assert!(validate(&["--efo", "app"]).contains("--efo applies to kinesis:STREAM"));
        assert!(validate(&["--from", "kinesis:s", "--efo", "my app"]).contains("a stream consumer name is 1 to 128"));
        let start = Cli::try_parse_from(["kappa-consumer", "--start", "at-timestamp:yesterday"]).unwrap_err().to_string();
        assert!(start.contains("RFC 3339"), "{start}");
        let start = Cli::try_parse_from(["kappa-consumer", "--start", "oldest"]).unwrap_err().to_string();
        assert!(start.contains("trim-horizon, latest or at-timestamp:TIME"), "{start}");
        let idle = Cli::try_parse_from(["kappa-consumer", "--partition-idle", "soon"]).unwrap_err().to_string();
        assert!(idle.contains("10m or 1h, or off"), "{idle}");
    }
}
