//! Running the consumer: source → pipeline, with graceful shutdown.
//!
//! Shutdown follows [`kappa_common::shutdown`]: SIGINT/SIGTERM (or `--until-idle` expiring)
//! only ends the loop between chunks, so a chunk is never half ingested; then the source stops
//! (chunks read ahead are dropped: the commit's resume point lies before them), every buffer
//! is written and committed, and only then are SQS messages deleted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kappa_common::aws::AwsContext;
use kappa_common::shutdown::Shutdown;
use kappa_common::store::Store;
use tokio::runtime::Runtime;

use crate::config::{ConsumerConfig, LakeLocation, SourceConfig};
pub use crate::error::ConsumerError;
use crate::feed::Feed;
use crate::metrics::Gauges;
use crate::pipeline::Pipeline;
use crate::source::kinesis::KinesisSource;
use crate::source::log::LogSource;
use crate::source::sqs::SqsSource;
use crate::source::{Source, SourceError};
use crate::stats::{Stats, Summary};
use kappa_table::Table;
use kappa_table::lake::open_store;

pub fn run(config: ConsumerConfig, runtime: &Runtime, shutdown: &Shutdown) -> Result<(Summary, String), ConsumerError> {
    let needs_aws = matches!(config.lake, LakeLocation::S3 { .. })
        || matches!(config.archive, Some(LakeLocation::S3 { .. }))
        || !matches!(config.source, SourceConfig::Log { .. });
    let aws = if needs_aws { Some(runtime.block_on(AwsContext::load(&config.aws))?) } else { None };
    let store = open_store(&config.lake, aws.as_ref());
    let stats = Arc::new(Stats::default());
    let gauges = Arc::new(Gauges::default());
    if let Some(addr) = config.metrics_addr {
        runtime.block_on(crate::metrics::serve(addr, stats.clone(), gauges.clone())).map_err(|source| ConsumerError::Metrics { addr, source })?;
    }
    // Every Delta reader reads the table at its root, whichever generation it holds.
    let root = format!("{}/{}", config.lake, config.table);
    let run = Run { config: &config, runtime, shutdown, aws: aws.as_ref(), store, stats: stats.clone(), gauges };
    loop {
        match run.generation()? {
            Ending::Done => return Ok((stats.summary(), root)),
            // A replay switched readers to another generation and handed over its positions:
            // what this run read and did not commit lies after them. Go on there.
            Ending::Switched { from, to } => {
                tracing::info!(from = %from, to = %to, "the table was switched to {to}: continuing on it from the positions the switch handed over");
            }
        }
    }
}

/// How a run on one generation ended.
enum Ending {
    Done,
    Switched { from: String, to: String },
}

/// What every generation's run shares.
struct Run<'a> {
    config: &'a ConsumerConfig,
    runtime: &'a Runtime,
    shutdown: &'a Shutdown,
    aws: Option<&'a AwsContext>,
    store: Store,
    stats: Arc<Stats>,
    gauges: Arc<Gauges>,
}

impl Run<'_> {
    /// Consumes into the table's current generation until the source is drained (or a
    /// shutdown), or until a switch makes another generation current.
    fn generation(&self) -> Result<Ending, ConsumerError> {
        let Run { config, runtime, shutdown, aws, stats, gauges, .. } = self;
        let (config, runtime, shutdown, aws) = (*config, *runtime, *shutdown, *aws);
        let table = runtime.block_on(Table::open_or_create(self.store.clone(), &config.table))?;
        if let (Some(database), Some(aws)) = (&config.glue_database, aws) {
            table.register_in_glue(aws.glue(), database.clone());
        }
        // The log's shards are known up front; Kinesis announces its shards as it finds them.
        let log = match &config.source {
            SourceConfig::Log { path, .. } => Some(LogSource::open(path).map_err(SourceError::from)?),
            _ => None,
        };
        let shards = log.as_ref().map(LogSource::shard_names).unwrap_or_default();
        let (mut pipeline, known) =
            Pipeline::open(table, runtime.handle().clone(), config.pipeline.clone(), shards.clone(), config.schema.clone(), stats.clone())?;
        if let Some(archive) = &config.archive {
            pipeline.set_archive(open_store(archive, aws))?;
            tracing::info!(archive = %format!("{archive}/{}", crate::archive::Archive::prefix(&config.table)), "archiving raw events");
        }
        if let (Some(given), Some(known)) = (&config.schema, &known)
            && given != known
        {
            tracing::warn!("the table already has a schema; --schema is ignored (new columns are added as they appear)");
        }
        let compactor =
            config.compact.clone().map(|(options, every)| crate::compact::Compactor::start(runtime.handle().clone(), pipeline.table().clone(), options, every));
        let generation = pipeline.table().generation().to_string();
        tracing::info!(table = %config.table, lake = %config.lake, generation = %generation, commits = pipeline.state().last_commit, "consuming {}", config.source);
        let mut source = match (&config.source, log) {
            (SourceConfig::Log { on_gap, .. }, Some(log)) => {
                let resume: Vec<_> = (0..shards.len() as u32).map(|s| pipeline.resume_after(s)).collect();
                Source::Log(LogSource::start(log, &resume, *on_gap, stats.clone())?)
            }
            (SourceConfig::Kinesis { stream, poll_interval, shard_refresh }, _) => {
                let resume = pipeline
                    .state()
                    .resume
                    .iter()
                    .map(|(shard, p)| (shard.clone(), p.parse().map_err(|_| SourceError::Position { shard: shard.clone(), position: p.clone() })))
                    .map(|(s, p)| p.map(|p| (s, p)))
                    .collect::<Result<_, _>>()?;
                let client = aws.expect("loaded for AWS sources").kinesis();
                Source::Kinesis(KinesisSource::start(
                    runtime.handle().clone(),
                    client,
                    stream.clone(),
                    resume,
                    *poll_interval,
                    *shard_refresh,
                    None,
                    Vec::new(),
                )?)
            }
            (SourceConfig::Sqs(options), _) => {
                let aws = aws.expect("loaded for AWS sources");
                let shard = pipeline.add_shard(crate::source::sqs::SHARD.to_string());
                let committed = pipeline.acks().remembered().keys().cloned().collect();
                Source::Sqs(SqsSource::start(runtime.handle().clone(), aws, options.clone(), shard, pipeline.last_read(shard), committed, stats.clone())?)
            }
            (SourceConfig::Log { .. }, None) => unreachable!("the log was opened above"),
        };

        // A deleted SQS message may still come back (at-least-once delivery, or a delete made with
        // a receipt handle a redelivery replaced): remember it a while after the delete.
        let ack_grace_ms = match &config.source {
            SourceConfig::Sqs(options) => crate::source::sqs::deleted_grace(options).as_millis() as i64,
            _ => 0,
        };
        let mut last_event = Instant::now();
        let mut was_caught_up = false;
        let mut last_status = (Instant::now(), 0u64);
        let mut switched_to = None;
        let mut feed = Feed::new();
        let result = (|| -> Result<(), ConsumerError> {
            while !shutdown.is_requested() {
                // Waits no longer than --until-idle has left to run: the drain starts on time. Idle
                // time counts once the source has caught up (see `Source::caught_up`).
                let caught_up = source.caught_up();
                if caught_up && !was_caught_up {
                    was_caught_up = true;
                    last_event = Instant::now();
                }
                let wait = match config.until_idle {
                    Some(idle) if caught_up => idle.saturating_sub(last_event.elapsed()).clamp(Duration::from_millis(1), Duration::from_millis(200)),
                    _ => Duration::from_millis(200),
                };
                if feed.step(&mut source, &mut pipeline, wait)? {
                    last_event = Instant::now();
                } else if caught_up && config.until_idle.is_some_and(|idle| last_event.elapsed() >= idle) {
                    tracing::info!("source idle for {:?}: draining", config.until_idle.unwrap_or_default());
                    break;
                }
                if source.needs_commit() {
                    pipeline.flush_all()?;
                }
                pipeline.flush_due()?;
                source.acknowledge(pipeline.acks().take_committed());
                pipeline.acks().confirm(&source.take_acknowledged(), ack_grace_ms);
                gauges.open_partitions.store(pipeline.open_partitions() as u64, Ordering::Relaxed);
                gauges.buffered_bytes.store(pipeline.buffered_memory() as u64, Ordering::Relaxed);
                if last_status.0.elapsed() >= config.status_interval {
                    // A replay may switch readers to another generation: writing this one on
                    // would be invisible to them.
                    let table = pipeline.table();
                    if let Ok(Some(current)) = runtime.block_on(table.current_generation())
                        && current != table.generation()
                    {
                        switched_to = Some(current);
                        break;
                    }
                    let read = stats.read();
                    let rate = (read - last_status.1) as f64 / last_status.0.elapsed().as_secs_f64();
                    let lag = source.lag(|s| pipeline.last_read(s));
                    gauges.lag.store(lag.value(), Ordering::Relaxed);
                    tracing::info!(
                        events_read = read,
                        rows_written = stats.written(),
                        rate = format!("{rate:.0}/s"),
                        open_partitions = pipeline.open_partitions(),
                        buffered_mib = format!("{:.1}", pipeline.buffered_memory() as f64 / 1048576.0),
                        lag = %lag,
                        "status"
                    );
                    last_status = (Instant::now(), read);
                }
            }
            if switched_to.is_some() {
                return Ok(());
            }
            // Stop reading first (step 2), then write and commit, then acknowledge what the
            // commit covers: SQS messages are deleted only now that their rows are durable.
            source.pause();
            feed.drain(&mut pipeline)?;
            pipeline.flush_all()?;
            source.acknowledge(pipeline.acks().take_committed());
            Ok(())
        })();
        if let Some(compactor) = compactor {
            compactor.stop();
        }
        let result = match result {
            // A commit that lost to a switch: the table holds another generation now.
            Err(e) if e.is_lost_race() => match runtime.block_on(pipeline.table().current_generation()) {
                Ok(Some(current)) if current != generation => {
                    switched_to = Some(current);
                    Ok(())
                }
                _ => Err(e),
            },
            other => other,
        };
        if let Err(e) = result {
            source.stop();
            return Err(e);
        }
        if let Some(current) = switched_to {
            // What this run buffered, and a commit the switch made fail, lie after the
            // positions the switch handed over: the next round reads them again. SQS messages
            // not yet deleted come back after their visibility timeout.
            source.stop();
            pipeline.close();
            return Ok(Ending::Switched { from: generation, to: current });
        }
        source.stop();
        pipeline.acks().confirm(&source.take_acknowledged(), ack_grace_ms);
        pipeline.commit_acknowledgements()?;
        // A batch run (--until-idle) leaves the table compacted: scheduled runs converge too.
        if let (Some((options, _)), Some(_)) = (&config.compact, config.until_idle)
            && !shutdown.is_requested()
        {
            match crate::compact::compact(runtime.handle(), pipeline.table(), options, &|| shutdown.is_requested()) {
                Ok(report) => tracing::info!("{}", report.render(&config.table).trim_end()),
                Err(e) => tracing::warn!(error = %e, "compaction at the end of the run failed; the next run tries again"),
            }
        }
        pipeline.close();
        Ok(Ending::Done)
    }
}
