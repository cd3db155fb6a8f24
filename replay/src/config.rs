//! The command line of `kappa-replay`, validated into typed values before anything runs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kappa_common::endpoint::Endpoint;
use kappa_common::schema::TableSchema;
use kappa_consumer::config::{ConfigError, PayloadArgs, PipelineArgs};
use kappa_consumer::settings::PipelineConfig;
use kappa_table::lake::{LakeLocation, parse_lake, validate_table_name};

/// Rebuilds a lake table from the log into a new generation, verifies it, and switches readers
/// to it in one atomic step (the Kappa architecture: the lake is a view of the log).
///
/// The current generation keeps serving while the new one is written. The new one may use
/// other settings than the live consumer (--partition-by, --schema, flush settings): that is
/// how a lake is reprocessed after a bug fix or a layout change. With the live consumer's
/// settings, a rebuild writes the very same objects, byte for byte. Without --schema the new
/// generation keeps the current one's columns and types; --schema retypes the columns it
/// names, and --compare reports every column whose type differs.
///
/// Exit status: 0 done; 1 an error, or --verify/--compare found a difference (then it does
/// not switch); 2 misconfiguration; 3 more quarantined events than --max-quarantine-ratio
/// allows.
#[derive(Debug, Parser)]
#[command(name = "kappa-replay", version, about, long_about, max_term_width = 100, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: ReplayArgs,

    /// Log lines as text (for people), or as one JSON object per line with the event's fields
    /// at the top level (for CloudWatch Logs Insights and other log services).
    #[arg(long, global = true, value_name = "text|json", default_value = "text", env = "KAPPA_LOG_FORMAT")]
    pub log_format: kappa_common::logging::LogFormat,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Prints the table's root (the Delta table every reader opens) and version, and every
    /// generation with its rows, files, bytes and creation time.
    Status(TableArgs),
    /// Deletes old generations: keeps the current one, the --keep newest others, and any the
    /// table was switched away from within --retention.
    Gc {
        #[command(flatten)]
        table: TableArgs,
        /// Generations to keep besides the current one.
        #[arg(long, value_name = "N")]
        keep: usize,
        /// How long a generation the table was switched away from stays, so that readers can
        /// time-travel to the versions before the switch (Delta's default file retention is 7
        /// days). `0s` removes it at once.
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
        retention: std::time::Duration,
    },
    /// Merges each partition's files into files near --target-file-size, in Delta commits
    /// that change no rows (readers see the same rows throughout), then vacuums. Safe while a
    /// consumer writes the table: partitions with a file younger than --min-age are left
    /// alone, and a conflicting commit is skipped, never lost. Deterministic: the same rows
    /// give the same files, so a replayed generation compacts to the live one's bytes, however
    /// differently their flushes cut them.
    Compact {
        #[command(flatten)]
        table: TableArgs,
        /// Size the merged files are cut at: a file ends with the row group (122,880 rows) that
        /// takes it past this (suffixes KiB, MiB, GiB).
        #[arg(long, value_name = "BYTES", default_value = "256MiB", value_parser = kappa_consumer::config::parse_bytes)]
        target_file_size: u64,
        /// Leave partitions with a file added more recently than this (e.g. 1h, 30m, 0s): the
        /// consumer may still be writing them.
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
        min_age: std::time::Duration,
        /// Delete files that commits replaced more than this long ago (readers of older
        /// versions and time travel need them until then; Delta's default is 7 days).
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
        retention: std::time::Duration,
        /// Parquet compression codec of the merged files.
        #[arg(long, value_enum, value_name = "CODEC", default_value_t = kappa_consumer::settings::Codec::Snappy)]
        compression: kappa_consumer::settings::Codec,
        /// Commit once this much was rewritten (and at the end): a conflicting commit or a kill
        /// costs at most this much work (suffixes KiB, MiB, GiB).
        #[arg(long, value_name = "BYTES", default_value = "1GiB", value_parser = kappa_consumer::config::parse_bytes)]
        commit_every: u64,
        /// Say what would be merged and vacuumed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also write the report as JSON to this file.
        #[arg(long, value_name = "FILE")]
        summary_json: Option<PathBuf>,
    },
    /// Makes an existing generation current: a replay's, complete, or one a switch replaced
    /// (back to it: its files as the Delta log last held them, and the consumer goes on from
    /// the positions its last commit recorded).
    Switch {
        #[command(flatten)]
        table: TableArgs,
        /// The generation to make current, e.g. gen-000001.
        #[arg(long, value_name = "GENERATION")]
        generation: String,
        /// Switch even when other writers changed the table in ways the target cannot carry
        /// (those changes are dropped); see the replay's flag of the same name.
        #[arg(long)]
        discard_foreign_changes: bool,
    },
}

/// Which table, where.
#[derive(Debug, Clone, Args)]
pub(crate) struct TableArgs {
    /// The lake: a local directory, or s3://BUCKET[/PREFIX].
    #[arg(long, value_name = "PATH|S3_URI", default_value = "./data/lake")]
    pub lake: String,

    /// Table name.
    #[arg(long, value_name = "NAME", default_value = "events")]
    pub table: String,

    /// AWS endpoint override for every service (LocalStack, moto). Default: the standard
    /// AWS_ENDPOINT_URL variables, else AWS itself.
    #[arg(long, value_name = "URL", env = "KAPPA_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,

    /// AWS region. Default: AWS_REGION / AWS_DEFAULT_REGION / the profile's region.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// What to replay: log:PATH (every shard, from its start), kinesis:STREAM (every shard,
    /// TRIM_HORIZON; children after their parents), or raw:PATH|S3_URI (NDJSON objects in key
    /// order: the consumer's --archive, URI/<table>/raw, or a prefix Firehose delivered to).
    #[arg(long, value_name = "URI", default_value = "log:./data/log")]
    pub from: String,

    #[command(flatten)]
    pub table: TableArgs,

    #[command(flatten)]
    pub pipeline: PipelineArgs,

    #[command(flatten)]
    pub payload: PayloadArgs,

    /// Start at the first events that arrived at or after this time (RFC 3339, e.g.
    /// 2025-03-19T00:00:00Z; Kinesis: AT_TIMESTAMP). Default: the start of the log.
    #[arg(long, value_name = "TIME")]
    pub at_timestamp: Option<String>,

    /// Stop before events that arrived at or after this time (RFC 3339). Default: what the
    /// log holds when the replay starts (Kinesis: until every shard is caught up).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// Before any switch, check the new generation: rows per partition in its Parquet footers
    /// against the rows the replay routed there from the source. Exit 1 on a difference.
    #[arg(long)]
    pub verify: bool,

    /// With --verify: also compare the new generation row by row with the current one (every
    /// row's values, as a multiset), and report differences by partition.
    #[arg(long, requires = "verify")]
    pub compare: bool,

    /// Make the new generation current when the replay (and --verify, if given) succeeded: one
    /// Delta commit that replaces the table's files (and partitioning), so every reader moves in
    /// one step.
    #[arg(long)]
    pub switch: bool,

    /// With --switch: switch even when other writers changed the table in ways the new
    /// generation cannot carry (a DELETE, an UPDATE, a compaction that mixed their appended
    /// rows with the table's own): those changes are dropped. Without it such a switch is
    /// refused, naming the versions and rows concerned. Files other writers only appended are
    /// carried into the new generation either way.
    #[arg(long, requires = "switch")]
    pub discard_foreign_changes: bool,

    /// Start a new generation even if an interrupted replay with the same settings left an
    /// incomplete one (which is otherwise continued from its last commit).
    #[arg(long)]
    pub fresh: bool,

    /// After --switch, register the table in this AWS Glue database (created if missing) as a
    /// Delta table Athena reads, updating its columns when the replay changed them. Needs an
    /// S3 lake.
    #[arg(long, value_name = "DATABASE", requires = "switch")]
    pub glue_database: Option<String>,

    /// Interval of the progress lines when stderr is not a terminal.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub progress_interval: std::time::Duration,

    /// Kinesis: wait between GetRecords calls on a shard that returned nothing.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll_interval: std::time::Duration,

    /// Also write the end-of-run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,

    /// Share the replay with other kappa-replay processes (on this machine or others) through
    /// shard leases: `local` (beside the embedded log) or `dynamodb:TABLE` (a lease table,
    /// created if missing; not the live consumers' one). Every process given the same settings
    /// writes the same new generation, each reading the shards it holds; a process that dies is
    /// replaced within --failover; once every shard is read, one process verifies and switches.
    /// For log:PATH (local or DynamoDB leases) and kinesis:STREAM (DynamoDB). See
    /// docs/scale-out.md.
    #[arg(long, value_name = "local|dynamodb:TABLE")]
    pub leases: Option<String>,

    /// With --leases: this process's name in the lease store (default: host name and pid).
    #[arg(long, value_name = "ID", requires = "leases")]
    pub worker_id: Option<String>,

    /// With --leases: how long a silent process keeps its shards before others take them.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub failover: std::time::Duration,
}

/// Where the replay reads.
#[derive(Debug, Clone)]
pub(crate) enum ReplaySource {
    Log(PathBuf),
    Kinesis(String),
    Raw(LakeLocation),
}

impl std::fmt::Display for ReplaySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplaySource::Log(path) => write!(f, "log:{}", path.display()),
            ReplaySource::Kinesis(stream) => write!(f, "kinesis:{stream}"),
            ReplaySource::Raw(location) => write!(f, "raw:{location}"),
        }
    }
}

/// A validated table location.
#[derive(Debug, Clone)]
pub(crate) struct TableLocation {
    pub lake: LakeLocation,
    pub table: String,
    pub aws: kappa_common::aws::AwsOptions,
}

impl TableArgs {
    pub(crate) fn validate(&self) -> Result<TableLocation, ConfigError> {
        validate_table_name(&self.table).map_err(ConfigError)?;
        Ok(TableLocation {
            lake: parse_lake(&self.lake).map_err(ConfigError)?,
            table: self.table.clone(),
            aws: kappa_common::aws::AwsOptions { endpoint_url: self.endpoint_url.clone(), region: self.region.clone() },
        })
    }
}

#[derive(Debug)]
pub(crate) struct ReplayConfig {
    pub source: ReplaySource,
    pub location: TableLocation,
    pub pipeline: PipelineConfig,
    pub schema: Option<TableSchema>,
    pub at_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub verify: bool,
    pub compare: bool,
    pub switch: bool,
    pub discard_foreign: bool,
    pub fresh: bool,
    pub glue_database: Option<String>,
    pub progress_interval: std::time::Duration,
    pub poll_interval: std::time::Duration,
    /// How Kinesis records become events (as the consumer that wrote the table read them).
    pub payload: kappa_consumer::settings::PayloadOptions,
    pub summary_json: Option<PathBuf>,
    /// The settings, as recorded in the generation's record.
    pub origin: String,
    /// `--leases`: the replay is shared with other processes.
    pub leases: Option<kappa_consumer::settings::LeaseOptions>,
}

fn parse_time(flag: &str, text: &str) -> Result<i64, ConfigError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| ConfigError(format!("{flag} {text:?}: {e}; write RFC 3339, e.g. 2025-03-19T00:00:00Z")))
}

impl ReplayArgs {
    fn parse_from(text: &str) -> Result<ReplaySource, ConfigError> {
        let from: Endpoint = text.parse().map_err(|e| ConfigError(format!("--from: {e}")))?;
        Ok(match from {
            Endpoint::Log(path) => ReplaySource::Log(path),
            Endpoint::Kinesis(stream) => ReplaySource::Kinesis(stream),
            other => {
                return Err(ConfigError(format!(
                    "--from {other}: replay reads log:PATH, kinesis:STREAM or raw:PATH|S3_URI (SQS cannot be read twice: give the consumer --archive and replay the archive)"
                )));
            }
        })
    }

    pub(crate) fn validate(self) -> Result<ReplayConfig, ConfigError> {
        let source = if let Some(raw) = self.from.strip_prefix("raw:") {
            ReplaySource::Raw(parse_lake(raw).map_err(|e| ConfigError(e.replace("--lake", "--from raw:")))?)
        } else {
            Self::parse_from(&self.from)?
        };
        if matches!(source, ReplaySource::Raw(_)) && (self.at_timestamp.is_some() || self.until.is_some()) {
            return Err(ConfigError("--at-timestamp and --until apply to log: and kinesis: sources; a raw: replay reads every object under the prefix".into()));
        }
        let location = self.table.validate()?;
        if let Some(database) = &self.glue_database
            && !matches!(location.lake, LakeLocation::S3 { .. })
        {
            return Err(ConfigError(format!(
                "--glue-database {database}: the lake is a local directory, which Athena cannot read; give an s3://BUCKET[/PREFIX] --lake, or drop --glue-database"
            )));
        }
        let (mut pipeline, schema) = self.pipeline.validate(false)?;
        let payload = self.payload.validate(matches!(source, ReplaySource::Kinesis(_)))?;
        self.payload.adjust(&mut pipeline);
        let at_ms = self.at_timestamp.as_deref().map(|t| parse_time("--at-timestamp", t)).transpose()?;
        let until_ms = self.until.as_deref().map(|t| parse_time("--until", t)).transpose()?;
        if let (Some(at), Some(until)) = (at_ms, until_ms)
            && until <= at
        {
            return Err(ConfigError("--until must be later than --at-timestamp".into()));
        }
        if self.poll_interval < std::time::Duration::from_millis(200) {
            return Err(ConfigError("--poll-interval must be at least 200ms (Kinesis allows 5 GetRecords per second per shard)".into()));
        }
        let leases = match self.leases.as_deref() {
            None => None,
            Some(spec) => {
                use kappa_consumer::settings::{LeaseOptions, LeaseStoreConfig};
                let store = match spec.split_once(':') {
                    None if spec == "local" => LeaseStoreConfig::Local,
                    Some(("dynamodb", table)) if !table.is_empty() => LeaseStoreConfig::Dynamo(table.to_string()),
                    _ => return Err(ConfigError(format!("--leases {spec}: give local (beside the embedded log) or dynamodb:TABLE"))),
                };
                match (&source, &store) {
                    (ReplaySource::Raw(_), _) => {
                        return Err(ConfigError(format!(
                            "--leases: a replay of {source} runs in one process (its objects have no shards); log:PATH and kinesis:STREAM replays are shared through leases"
                        )));
                    }
                    (ReplaySource::Kinesis(_), LeaseStoreConfig::Local) => {
                        return Err(ConfigError(
                            "--leases local keeps the leases beside the embedded log: for kinesis:STREAM give --leases dynamodb:TABLE".into(),
                        ));
                    }
                    _ => {}
                }
                if self.failover < std::time::Duration::from_secs(1) {
                    return Err(ConfigError(format!("--failover {:?}: leases need at least 1s (10s is the default)", self.failover)));
                }
                let worker_id = match &self.worker_id {
                    Some(id) if id.is_empty() || id.len() > 200 => return Err(ConfigError("--worker-id must be 1 to 200 characters".into())),
                    Some(id) => id.clone(),
                    None => format!("{}-{}", kappa_table::writers::host_name(), std::process::id()),
                };
                Some(LeaseOptions { store, worker_id, failover: self.failover })
            }
        };
        // What a continued replay must share with the one it continues: everything that
        // decides which rows land in which file.
        let origin = format!(
            "replay from {source}: partition by {:?}, event time {}, flush at {} rows / {} bytes{}{}{}",
            pipeline.granularity,
            pipeline.event_time.as_ref().map_or("arrival".to_string(), |(c, _)| c.clone()),
            pipeline.flush.rows,
            pipeline.flush.bytes,
            self.at_timestamp.as_ref().map_or(String::new(), |t| format!(", from {t}")),
            self.until.as_ref().map_or(String::new(), |t| format!(", until {t}")),
            schema
                .as_ref()
                .map_or(String::new(), |s| format!(", --schema {:016x}", xxhash_rust::xxh3::xxh3_64(&serde_json::to_vec(s).expect("a schema serializes")))),
        ) + if leases.is_some() { ", shared through leases" } else { "" };
        Ok(ReplayConfig {
            source,
            location,
            pipeline,
            schema,
            at_ms,
            until_ms,
            verify: self.verify,
            compare: self.compare,
            switch: self.switch,
            discard_foreign: self.discard_foreign_changes,
            fresh: self.fresh,
            glue_database: self.glue_database.clone(),
            progress_interval: self.progress_interval,
            poll_interval: self.poll_interval,
            payload,
            summary_json: self.summary_json,
            origin,
            leases,
        })
    }
}
