//! The replay itself: the log (or Kinesis), read to its end, through the consumer's own
//! pipeline into a new generation; then verify, compare, switch.
//!
//! Step by step:
//! 1. Resolve the current generation (it keeps serving throughout) and create the next one.
//! 2. Read every shard from its start (or `--at-timestamp`) up to what it held when the replay
//!    started (or `--until`), through the same decode → partition → buffer → Parquet → commit
//!    path as the live consumer. With the consumer's settings, the files are the same bytes.
//! 3. Write what is still buffered and commit: the generation is complete, and its last
//!    commit holds the positions the live consumer continues from after a switch.
//! 4. `--verify` (and `--compare`) read the new generation back; `--switch` then creates the
//!    next pointer record, conditional on the current generation being the one of step 1.
//!
//! Interrupted (SIGINT/SIGTERM, or killed), a replay leaves an unswitched generation behind:
//! readers never see it; `kappa-replay gc` removes it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_common::aws::AwsContext;
use kappa_common::log::{Log, StartAt};
use kappa_common::schema::TableSchema;
use kappa_common::shutdown::Shutdown;
use kappa_common::store::Store;
use kappa_consumer::config::LakeLocation;
use kappa_consumer::feed::Feed;
use kappa_consumer::pipeline::Pipeline;
use kappa_consumer::source::kinesis::{KinesisSource, ReadBounds};
use kappa_consumer::source::log::LogSource;
use kappa_consumer::source::raw::RawSource;
use kappa_consumer::source::{Source, SourceError};
use kappa_consumer::stats::Stats;
use kappa_table::Table;
use kappa_table::generation;
use serde::Serialize;
use tokio::runtime::Runtime;

use crate::config::{ReplayConfig, ReplaySource, TableLocation};
use crate::progress::Progress;
use crate::verify::{CompareReport, VerifyReport};

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
    #[error("reading the new generation back: {0}")]
    ReadBack(String),
    #[error(transparent)]
    Compact(#[from] kappa_consumer::compact::CompactError),
    #[error("{0}")]
    Refused(String),
    #[error("interrupted: {generation} is incomplete and was not switched to; `kappa-replay gc` removes it")]
    Interrupted { generation: String },
}

impl ReplayError {
    /// The exit status, as the consumer's: 2 the settings do not fit the data, 3 too much bad
    /// input, else 1.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            ReplayError::Pipeline(e) => e.exit_code(),
            ReplayError::Consumer(e) => e.exit_code(),
            _ => 1,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReplaySummary {
    pub table: String,
    pub generation: String,
    /// Where outside readers read the new generation.
    pub location: String,
    /// The pipeline's counters, as the consumer reports them (elapsed: the whole replay).
    #[serde(flatten)]
    pub run: kappa_consumer::stats::Summary,
    pub verify: Option<VerifyReport>,
    pub compare: Option<CompareReport>,
    /// The generation current before; `switched` says whether readers moved.
    pub previous: Option<String>,
    pub switched: bool,
}

/// The store of a table location, and the AWS configuration when a service is involved.
pub(crate) fn open_store(runtime: &Runtime, location: &TableLocation, needs_aws: bool) -> Result<(Store, Option<AwsContext>), ReplayError> {
    let needs_aws = needs_aws || matches!(location.lake, LakeLocation::S3 { .. });
    let aws = if needs_aws { Some(runtime.block_on(AwsContext::load(&location.aws))?) } else { None };
    Ok((kappa_consumer::run::open_store(&location.lake, aws.as_ref()), aws))
}

pub(crate) fn replay(config: ReplayConfig, runtime: &Runtime, shutdown: &Shutdown) -> Result<ReplaySummary, ReplayError> {
    let started = Instant::now();
    let needs_aws = matches!(config.source, ReplaySource::Kinesis(_) | ReplaySource::Raw(LakeLocation::S3 { .. })) || config.glue_database.is_some();
    let (store, aws) = open_store(runtime, &config.location, needs_aws)?;
    let name = config.location.table.clone();

    // 1. The current generation keeps serving. The source is opened first, so a wrong --from
    //    fails before any generation is made.
    let previous = runtime.block_on(generation::current(&store, &name))?.map(|p| p.generation);
    let (live_state, live_schema) = match &previous {
        Some(_) => {
            let (state, schema) = runtime.block_on(async {
                let live = Table::open_or_create(store.clone(), &name).await?;
                Ok::<_, kappa_table::TableError>((live.load_state().await?, live.live_schema().await?))
            })?;
            (Some(state), schema)
        }
        None => (None, None),
    };
    // A replay keeps the table's column types unless told otherwise: inferred again, a
    // timestamp the table holds could come back a string, and a switch would change it for
    // every reader.
    let schema = match (&config.schema, live_schema) {
        // --schema retypes the columns it names (the fix a quarantine reason proposes:
        // "replay with a --schema that types x as float64"); the table's other columns keep
        // their types.
        (Some(given), Some(live)) => Some(retyped(live, given)),
        (Some(given), None) => Some(given.clone()),
        (None, Some(live)) => {
            tracing::info!(columns = live.fields.len(), "keeping the current table's columns and types (--schema changes them)");
            Some(live)
        }
        (None, None) => None,
    };
    if let (ReplaySource::Raw(_), true, Some(live)) = (&config.source, config.switch, &live_state) {
        // A raw replay numbers events itself: a consumer fed by the log or Kinesis could not
        // continue the new generation from its positions.
        let positioned: Vec<&String> =
            live.resume.keys().filter(|s| s.as_str() != kappa_consumer::source::sqs::SHARD && s.as_str() != kappa_consumer::source::raw::SHARD).collect();
        if !positioned.is_empty() {
            return Err(ReplayError::Refused(format!(
                "--switch: the current generation is fed from a positioned source (shards {positioned:?}); a generation rebuilt from raw objects carries no positions for it. Replay from the log or Kinesis instead, or switch by hand after deciding where the consumer resumes"
            )));
        }
    }
    let mut log_source = None;
    let mut shards = Vec::new();
    let source = match &config.source {
        ReplaySource::Log(path) => {
            let log = Log::open(path).map_err(SourceError::from)?;
            shards = LogSource::shard_names(&log);
            let start = config.at_ms.map_or(StartAt::Earliest, StartAt::ArrivalTime);
            let starts = vec![start; log.shard_count() as usize];
            log_source = Some(LogSource::start_bounded(log, starts, config.until_ms)?);
            None
        }
        ReplaySource::Kinesis(stream) => {
            let client = aws.as_ref().expect("loaded for Kinesis").kinesis();
            // Without --until, what the stream held when the replay started: a shard under
            // steady traffic is never empty, so "caught up" alone would not end it.
            let until_ms = Some(config.until_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()));
            let bounds = ReadBounds { start_ms: config.at_ms, until_ms };
            Some(Source::Kinesis(KinesisSource::start(
                runtime.handle().clone(),
                client,
                stream.clone(),
                Default::default(),
                config.poll_interval,
                Duration::from_secs(5),
                Some(bounds),
            )?))
        }
        ReplaySource::Raw(location) => {
            shards = vec![kappa_consumer::source::raw::SHARD.to_string()];
            // Archive objects of commits that never happened are left out.
            let last_commits: std::collections::HashMap<String, u64> =
                runtime.block_on(generation::summaries(&store, &name))?.into_iter().map(|g| (g.record.generation, g.commits)).collect();
            let uncommitted = move |path: &str| {
                kappa_consumer::archive::commit_of_object(path)
                    .is_some_and(|(generation, commit)| last_commits.get(&generation).is_some_and(|last| commit > *last))
            };
            let raw_store = kappa_consumer::run::open_store(location, aws.as_ref());
            Some(Source::Raw(RawSource::start(runtime.handle().clone(), raw_store, String::new(), 0, uncommitted)?))
        }
    };
    let mut source = source.unwrap_or_else(|| Source::Log(log_source.take().expect("opened above")));
    let new_generation = runtime.block_on(generation::create(&store, &name, &config.origin))?;
    let table = Table::open_generation(store.clone(), &name, &new_generation);
    let location = format!("{}/{}", config.location.lake, table.data_prefix());
    tracing::info!(generation = %new_generation, current = previous.as_deref().unwrap_or("none"), write_at = %location, "replaying {}", config.source);
    // `gc` leaves an incomplete generation alone while its replay says it is writing it.
    let heartbeat = {
        let (store, name, generation) = (store.clone(), name.clone(), new_generation.clone());
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(generation::WRITER_HEARTBEAT);
            loop {
                tick.tick().await;
                if let Err(e) = generation::heartbeat(&store, &name, &generation).await {
                    tracing::warn!(error = %e, "cannot write the replay's heartbeat");
                }
            }
        })
    };
    let writer_done = || {
        heartbeat.abort();
        if let Err(e) = runtime.block_on(generation::writer_done(&store, &name, &new_generation)) {
            tracing::warn!(error = %e, "cannot remove the replay's heartbeat; gc treats it as stale after a minute");
        }
    };

    // 2. Read the source to its end through the consumer's pipeline.
    let stats = Arc::new(Stats::default());
    let (mut pipeline, _) = Pipeline::open(table, runtime.handle().clone(), config.pipeline.clone(), shards, schema, stats.clone())?;
    let total = match &source {
        Source::Log(s) => Some(s.total()),
        _ => None,
    };
    let mut progress = Progress::new(total, config.progress_interval);
    let result = (|| -> Result<(), ReplayError> {
        let mut feed = Feed::new();
        while !source.finished() || !feed.is_empty() {
            if shutdown.is_requested() {
                return Err(ReplayError::Interrupted { generation: new_generation.clone() });
            }
            if feed.step(&mut source, &mut pipeline, Duration::from_millis(200))? {
                progress.set(stats.read(), stats.written());
            }
            pipeline.flush_due()?;
        }
        Ok(())
    })();
    source.stop();
    progress.finish(stats.read(), stats.written());
    if let Err(e) = result {
        writer_done();
        return Err(e);
    }

    // 3. The rest, committed: the generation is complete.
    pipeline.flush_all()?;
    if let (ReplaySource::Raw(_), Some(live)) = (&config.source, &live_state) {
        pipeline.acks().adopt(&live.unacknowledged);
        pipeline.commit_acknowledgements()?;
    }
    let completed = runtime.block_on(generation::mark_complete(&store, &name, &new_generation));
    writer_done();
    completed?;
    let summary = stats.summary();
    let state = pipeline.state().clone();
    let table = pipeline.table().clone();

    // 4. Check, compare, switch.
    let verify = if config.verify { Some(runtime.block_on(crate::verify::verify(&table, &state, &pipeline.routed_rows(), &summary))?) } else { None };
    let compare = match (&previous, config.compare) {
        (Some(live), true) => Some(runtime.block_on(crate::verify::compare(&store, &name, live, &new_generation, config.schema.is_some()))?),
        (None, true) => {
            tracing::warn!("--compare: the table had no current generation to compare with");
            None
        }
        _ => None,
    };
    let checks_pass = verify.as_ref().is_none_or(|v| v.ok) && compare.as_ref().is_none_or(|c| c.ok);
    let mut switched = false;
    if config.switch {
        if checks_pass {
            let pointer = runtime.block_on(generation::switch(&store, &name, &new_generation, previous.as_deref()))?;
            tracing::info!(generation = %new_generation, switch = pointer.switch, "readers now resolve the new generation");
            switched = true;
            if let (Some(database), Some(aws)) = (&config.glue_database, aws.as_ref()) {
                // The switch is made; a catalog that did not follow is said, and the next
                // consumer run registers the table again.
                match runtime.block_on(generation::register_in_glue(&store, &name, &aws.glue(), database)) {
                    Ok(done) => tracing::info!(database = %database, outcome = ?done, "Glue table registered (Athena reads it as Delta)"),
                    Err(e) => tracing::warn!(error = %e, "could not register the table in Glue after the switch"),
                }
            }
        } else {
            tracing::error!("not switching: the checks found differences (see above)");
        }
    }
    let mut run = summary;
    run.elapsed_seconds = started.elapsed().as_secs_f64();
    run.rows_per_second = if run.elapsed_seconds > 0.0 { run.rows_written as f64 / run.elapsed_seconds } else { 0.0 };
    Ok(ReplaySummary { table: name, generation: new_generation, location, run, verify, compare, previous, switched })
}

impl ReplaySummary {
    pub(crate) fn render(&self) -> String {
        let mut text = self.run.render(&format!("{}, new generation {}", self.table, self.generation), &self.location);
        if let Some(v) = &self.verify {
            text.push_str(&format!("  verify             {}\n", if v.ok { "ok: every partition holds the rows routed to it" } else { "FAILED (see above)" }));
        }
        if let Some(c) = &self.compare {
            let rows_same = c.only_new == 0 && c.only_live == 0;
            text.push_str(&format!(
                "  compare            {} ({} rows only in the new generation, {} only in {})\n",
                if rows_same { "same rows as the current generation" } else { "DIFFERENT rows" },
                c.only_new,
                c.only_live,
                c.live
            ));
            if !c.schema_differences.is_empty() {
                let verdict = if c.schema_change_asked { "changed as --schema asked" } else { "DIFFERENT column types" };
                text.push_str(&format!("  compare columns    {verdict}: {}\n", c.schema_differences.join("; ")));
            }
        }
        text.push_str(&match (self.switched, &self.previous) {
            (true, Some(previous)) => format!("  switched           readers moved from {previous} to {}\n", self.generation),
            (true, None) => format!("  switched           {} is the table's first current generation\n", self.generation),
            (false, _) => format!(
                "  switched           no (current: {}); `kappa-replay switch --generation {}` to switch\n",
                self.previous.as_deref().unwrap_or("none"),
                self.generation
            ),
        });
        text
    }
}

/// The live table's columns with the types `given` names, then `given`'s other columns.
fn retyped(live: TableSchema, given: &TableSchema) -> TableSchema {
    let mut fields: Vec<_> = live.fields.into_iter().map(|c| given.fields.iter().find(|g| g.name == c.name).cloned().unwrap_or(c)).collect();
    for column in &given.fields {
        if !fields.iter().any(|c| c.name == column.name) {
            fields.push(column.clone());
        }
    }
    TableSchema { fields }
}
