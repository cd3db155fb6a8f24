//! Running the consumer: source → pipeline, with graceful shutdown.
//!
//! Shutdown follows [`kappa_common::shutdown`]: SIGINT/SIGTERM (or `--until-idle` expiring)
//! only ends the loop between chunks, so a chunk is never half ingested; then the source stops
//! (chunks read ahead are dropped: the commit's resume point lies before them), every buffer
//! is written and committed, and only then are SQS messages deleted.

use std::collections::BTreeMap;
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
use crate::leased::Leases;
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
        || !matches!(config.source, SourceConfig::Log { .. })
        || matches!(&config.leases, Some(l) if matches!(l.store, crate::settings::LeaseStoreConfig::Dynamo(_)));
    let aws = if needs_aws { Some(runtime.block_on(AwsContext::load(&config.aws))?) } else { None };
    let store = open_store(&config.lake, aws.as_ref());
    let stats = Arc::new(Stats::default());
    let gauges = Arc::new(Gauges::default());
    // Ready while a commit follows what is read within three flush intervals and a minute.
    let within = (3 * config.pipeline.flush.interval + Duration::from_secs(60)).max(Duration::from_secs(300));
    gauges.ready_within_ms.store(i64::try_from(within.as_millis()).unwrap_or(i64::MAX), Ordering::Relaxed);
    gauges.progress_ms.store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    if let Some(addr) = config.metrics_addr {
        runtime.block_on(crate::metrics::serve(addr, stats.clone(), gauges.clone())).map_err(|source| ConsumerError::Metrics { addr, source })?;
    }
    // Every Delta reader reads the table at its root, whichever generation it holds.
    let root = format!("{}/{}", config.lake, config.table);
    let run = Run { config: &config, runtime, shutdown, aws: aws.as_ref(), store, stats: stats.clone(), gauges: gauges.clone() };
    let mut leases = match (&config.leases, &config.source) {
        (Some(options), SourceConfig::Log { path, .. }) => {
            let shards = LogSource::shard_names(&LogSource::open(path).map_err(SourceError::from)?);
            let lister = Arc::new(crate::leased::FixedShards(shards));
            Some(Leases::start(runtime, options, Some(path), lister, config.source.to_string(), root.clone(), aws.as_ref())?)
        }
        (Some(options), SourceConfig::Kinesis { stream, .. }) => {
            let client = aws.as_ref().expect("loaded for AWS sources").kinesis();
            let lister = Arc::new(crate::leased::KinesisShards { client, stream: stream.clone() });
            Some(Leases::start(runtime, options, None, lister, config.source.to_string(), root.clone(), aws.as_ref())?)
        }
        _ => None,
    };
    if let Some(leases) = &leases {
        let _ = gauges.leases.set(leases.shared_stats());
    }
    let mut idle_since = Instant::now();
    let mut idle_status = Instant::now();
    let mut backoff = SESSION_BACKOFF_FIRST;
    let ended = loop {
        // With leases: a session per set of shards held (see `crate::leased`).
        let held = match &mut leases {
            Some(leases) => {
                if shutdown.is_requested() {
                    break Ok(());
                }
                // Without its coordinator a worker cannot know what it holds.
                if let Some(failure) = leases.failure(runtime) {
                    break Err(failure);
                }
                let held = leases.held_now();
                if held.is_empty() {
                    // A worker with no shard (more workers than shards) is ready: it waits.
                    gauges.answered.store(true, Ordering::Relaxed);
                    gauges.progress(&stats, true);
                    // Its status line too: the deployed stack counts status lines to tell
                    // running workers from dead ones (deploy/kappa-lake.yaml, NotConsumingAlarm).
                    if idle_status.elapsed() >= config.status_interval {
                        tracing::info!(events_read_delta = 0, quarantined_delta = 0, shards = 0, "status");
                        idle_status = Instant::now();
                    }
                    if shutdown.is_requested() || config.until_idle.is_some_and(|idle| idle_since.elapsed() >= idle) {
                        break Ok(());
                    }
                    leases.wait_for_change(runtime, Duration::from_millis(200));
                    continue;
                }
                Some(held)
            }
            None => None,
        };
        let lease = leases.as_mut().zip(held.as_ref());
        match run.generation(lease) {
            Err(e) => break Err(e),
            Ok(Ending::Done) => break Ok(()),
            // A replay switched readers to another generation and handed over its positions:
            // what this run read and did not commit lies after them. Go on there.
            Ok(Ending::Switched { from, to }) => {
                tracing::info!(from = %from, to = %to, "the table was switched to {to}: continuing on it from the positions the switch handed over");
            }
            Ok(Ending::Moved) => {
                idle_since = Instant::now();
                // A session that ended although the held set did not change (a shard the
                // table says another worker took, a fence refused): the coordinator has not
                // caught up, perhaps stuck on a lease store that does not answer. Wait for it,
                // backing off, rather than start session after session on the same set.
                match leases.as_mut() {
                    Some(leases) if !leases.changed() => {
                        leases.wait_for_change(runtime, backoff);
                        backoff = (backoff * 2).min(SESSION_BACKOFF_MAX);
                    }
                    _ => backoff = SESSION_BACKOFF_FIRST,
                }
            }
        }
    };
    if let Some(leases) = leases {
        let lease_stats = leases.stats();
        tracing::info!(
            takes = lease_stats.takes.load(Ordering::Relaxed),
            steals = lease_stats.steals.load(Ordering::Relaxed),
            lost = lease_stats.lost.load(Ordering::Relaxed),
            "releasing this worker's shard leases"
        );
        // Handed over even after an error: others take the shards at once.
        if let Err(e) = leases.shutdown(runtime) {
            tracing::warn!(error = %e, "could not release the shard leases; other workers take them after --failover");
        }
    }
    ended.map(|()| (stats.summary(), root))
}

/// How long a leased worker waits for its coordinator after a session ended on a held set
/// that did not change, at first and at most (doubling in between).
const SESSION_BACKOFF_FIRST: Duration = Duration::from_millis(100);
const SESSION_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How a run on one generation ended.
enum Ending {
    Done,
    Switched {
        from: String,
        to: String,
    },
    /// Under leases: the shards held changed (or a commit found one fenced).
    Moved,
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
    /// The source's shard names, for sources that have shards.
    fn shard_names(&self) -> Result<Option<Vec<String>>, ConsumerError> {
        Ok(match &self.config.source {
            SourceConfig::Log { path, .. } => Some(LogSource::shard_names(&LogSource::open(path).map_err(SourceError::from)?)),
            SourceConfig::Kinesis { stream, .. } => {
                let client = self.aws.expect("loaded for AWS sources").kinesis();
                let listed = self.runtime.block_on(crate::source::kinesis::list_stream_shards(&client, stream));
                // A stream that cannot be listed fails the source's start with the reason.
                Some(listed.map(|shards| shards.into_iter().map(|(id, _)| id).collect()).unwrap_or_default())
            }
            SourceConfig::Sqs(_) => None,
        })
    }

    /// Consumes into the table's current generation until the source is drained (or a
    /// shutdown), or until a switch makes another generation current.
    ///
    /// With leases (`lease`: this worker's, and the shards it holds), only those shards are
    /// read, and the run also ends when the held set changes ([`Ending::Moved`]).
    fn generation(&self, mut lease: Option<(&mut Leases, &BTreeMap<String, u64>)>) -> Result<Ending, ConsumerError> {
        let Run { config, runtime, shutdown, aws, stats, gauges, .. } = self;
        let (config, runtime, shutdown, aws) = (*config, *runtime, *shutdown, *aws);
        let mut table = runtime.block_on(Table::open_or_create(self.store.clone(), &config.table))?;
        if let Some((leases, held)) = &mut lease {
            // A shard the table holds at a newer epoch than this worker's lease was taken by
            // another worker meanwhile (this one's lease view is behind).
            let names: Vec<String> = held.keys().cloned().collect();
            let epochs = runtime.block_on(table.shard_epochs(&names))?;
            let fenced: BTreeMap<String, Option<u64>> = epochs.into_iter().filter(|(shard, epoch)| epoch.is_some_and(|e| e > held[shard])).collect();
            if !fenced.is_empty() {
                leases.fenced(&fenced)?;
                return Ok(Ending::Moved);
            }
            table = table.leased(&leases.worker_id, held);
            tracing::info!(shards = ?held.keys().collect::<Vec<_>>(), "reading the shards this worker holds");
        } else if let Some(names) = self.shard_names()? {
            // Leased workers' positions are per shard: a consumer reading the older, table-wide
            // state would store their rows again.
            if let Some(shard) = runtime.block_on(table.leased_after_consumer(&names))? {
                return Err(ConsumerError::Table(kappa_table::TableError::Refused {
                    table: config.table.clone(),
                    reason: format!(
                        "shard {shard} of this table was last written by workers sharing the shards through leases: \
                         run every consumer of the table with the same --leases (a consumer without leases would write their rows again)"
                    ),
                }));
            }
        }
        if let (Some(database), Some(aws)) = (&config.glue_database, aws) {
            table.register_in_glue(aws.glue(), database.clone());
        }
        // Consumers of an SQS queue compete for its messages, each commit on top of the others'
        // (see `crate::claims`).
        if matches!(config.source, SourceConfig::Sqs(_)) {
            table = table.competing(&config.worker_id);
        }
        // The log's shards are known up front; Kinesis announces its shards as it finds them.
        let log = match &config.source {
            SourceConfig::Log { path, .. } => Some(LogSource::open(path).map_err(SourceError::from)?),
            _ => None,
        };
        let shards = log.as_ref().map(LogSource::shard_names).unwrap_or_default();
        let (mut pipeline, known) =
            Pipeline::open(table, runtime.handle().clone(), config.pipeline.clone(), shards.clone(), config.schema.clone(), stats.clone())?;
        // Checked once this consumer's own record is written, so of two started at once with
        // and without leases, each sees the other (and both stop) rather than neither.
        let (leased, writers) = (lease.is_some(), runtime.block_on(kappa_table::writers::alive(&self.store, &config.table))?);
        let conflicting = writers.iter().find(|w| if leased { w.kind == "consumer" } else { w.kind == crate::pipeline::LEASED_WRITER });
        if let Some(other) = conflicting {
            pipeline.close();
            let reason = match leased {
                true => format!(
                    "a consumer without --leases is writing this table ({} pid {}): it reads every shard, so workers sharing them \
                     would store rows twice; stop it, or run it with the same --leases",
                    other.host, other.pid
                ),
                false => format!(
                    "workers sharing this table's shards through leases are running ({} pid {} among them): run this consumer with \
                     the same --leases, or stop them",
                    other.host, other.pid
                ),
            };
            return Err(ConsumerError::Table(kappa_table::TableError::Refused { table: config.table.clone(), reason }));
        }
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
                match &lease {
                    Some((_, held)) => {
                        let reading: Vec<u32> = held.keys().filter_map(|s| s.parse().ok()).filter(|s| (*s as usize) < shards.len()).collect();
                        Source::Log(LogSource::start_shards(log, &reading, &resume, *on_gap, stats.clone())?)
                    }
                    None => Source::Log(LogSource::start(log, &resume, *on_gap, stats.clone())?),
                }
            }
            (SourceConfig::Kinesis { stream, read }, _) => {
                let resume = pipeline
                    .state()
                    .resume
                    .iter()
                    .map(|(shard, p)| (shard.clone(), p.parse().map_err(|_| SourceError::Position { shard: shard.clone(), position: p.clone() })))
                    .map(|(s, p)| p.map(|p| (s, p)))
                    .collect::<Result<_, _>>()?;
                let client = aws.expect("loaded for AWS sources").kinesis();
                let mut read = read.clone();
                if read.start == crate::settings::StartPosition::Latest {
                    let at = runtime.block_on(pipeline.table().latest_start(chrono::Utc::now().timestamp_millis()))?;
                    tracing::debug!(at_ms = at, "--start latest: shards the table has no position of are read from the table's first start");
                    read.start = crate::settings::StartPosition::AtTimestamp(at);
                }
                Source::Kinesis(KinesisSource::start(
                    runtime.handle().clone(),
                    client,
                    stream.clone(),
                    resume,
                    read,
                    None,
                    Vec::new(),
                    lease.as_ref().map(|(_, held)| held.keys().cloned().collect()),
                )?)
            }
            (SourceConfig::Sqs(options), _) => {
                let aws = aws.expect("loaded for AWS sources");
                // Each consumer numbers its own events, in a shard named after it and its run.
                let tag = pipeline.table().competing_tag().unwrap_or_default();
                let shard = pipeline.add_shard(format!("{}-{tag}", crate::source::sqs::SHARD));
                pipeline.set_peer_grace(crate::source::sqs::deleted_grace(options));
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
        let mut last_status = (Instant::now(), stats.read(), stats.summary().quarantined);
        let mut switched_to = None;
        // Under leases: the held set changed; true if every shard of this run is still held.
        let mut moved: Option<bool> = None;
        let mut feed = Feed::new();
        let result = (|| -> Result<(), ConsumerError> {
            // Shards just taken are fenced before they are read (see `Pipeline::fence`).
            if lease.is_some() && pipeline.fence()? {
                tracing::info!("fenced the shards taken: their previous owner's commits are refused from now on");
            }
            while !shutdown.is_requested() {
                // Idle time counts once the source has caught up (see `Source::caught_up`), and
                // only as far as the source has shown that nothing arrived (`quiet_for`).
                let caught_up = source.caught_up();
                if caught_up && !was_caught_up {
                    was_caught_up = true;
                    last_event = Instant::now();
                }
                // Waits no longer than --until-idle has left to run: the drain starts on time.
                // At least 20 ms: the idle time moves with the source's reads, not with the
                // clock, and a shard yet to show it quiet (a refused subscription) would
                // otherwise keep this loop spinning.
                let wait = match config.until_idle {
                    Some(idle) if caught_up => {
                        idle.saturating_sub(quiet_for(last_event, source.quiet_until())).clamp(Duration::from_millis(20), Duration::from_millis(200))
                    }
                    _ => Duration::from_millis(200),
                };
                if feed.step(&mut source, &mut pipeline, wait)? {
                    last_event = Instant::now();
                } else if caught_up && config.until_idle.is_some_and(|idle| quiet_for(last_event, source.quiet_until()) >= idle) {
                    tracing::info!("source idle for {:?}: draining", config.until_idle.unwrap_or_default());
                    break;
                }
                if source.needs_commit() {
                    pipeline.flush_all()?;
                }
                pipeline.flush_due()?;
                if caught_up || stats.read() > 0 || source.answered() {
                    gauges.answered.store(true, Ordering::Relaxed);
                }
                gauges.progress(stats, caught_up && pipeline.is_idle());
                source.acknowledge(pipeline.acks().take_committed());
                source.committed_elsewhere(pipeline.acks().take_elsewhere());
                source.confirmed_elsewhere(pipeline.acks().take_elsewhere_confirmed());
                pipeline.acks().confirm(&source.take_acknowledged(), ack_grace_ms);
                // A shard read to its end: its last rows committed, then its lease ended.
                let drained = pipeline.take_drained();
                if !drained.is_empty()
                    && let Some((leases, _)) = &mut lease
                {
                    pipeline.flush_all()?;
                    for shard in drained {
                        leases.end(runtime, &shard)?;
                    }
                }
                if let Some((leases, held)) = &lease
                    && leases.changed()
                {
                    moved = Some(leases.still_holds(held));
                    break;
                }
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
                    let (read, quarantined) = (stats.read(), stats.summary().quarantined);
                    let rate = (read - last_status.1) as f64 / last_status.0.elapsed().as_secs_f64();
                    let lag = source.lag(|s| pipeline.last_read(s));
                    gauges.lag.store(lag.value(), Ordering::Relaxed);
                    *gauges.shard_lags.lock().expect("shard lags") = source.shard_lags(pipeline.shard_names(), |s| pipeline.last_read(s));
                    // The increments since the last line too: log metric filters sum them
                    // (deploy/kappa-lake.yaml's quarantine-ratio alarm).
                    tracing::info!(
                        events_read = read,
                        events_read_delta = read - last_status.1,
                        quarantined_delta = quarantined - last_status.2,
                        rows_written = stats.written(),
                        rate = format!("{rate:.0}/s"),
                        open_partitions = pipeline.open_partitions(),
                        buffered_mib = format!("{:.1}", pipeline.buffered_memory() as f64 / 1048576.0),
                        lag = %lag,
                        "status"
                    );
                    last_status = (Instant::now(), read, quarantined);
                    if let Some((leases, held)) = &lease {
                        // Where each held shard was read to: a hint for `kappa-consumer workers`,
                        // sent with the next heartbeat (no write of its own).
                        let names = pipeline.shard_names();
                        let positions = (0..names.len() as u32)
                            .filter(|s| held.contains_key(&names[*s as usize]))
                            .filter_map(|s| pipeline.last_read(s).map(|p| (names[s as usize].clone(), p.to_string())))
                            .collect();
                        leases.positions(positions);
                    }
                }
            }
            if switched_to.is_some() || moved == Some(false) {
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
            // Under leases, a commit refused for shards another worker took: nothing of it
            // was made; the next session reads the shards still held from the table.
            Err(e) if lease.is_some() && e.fenced_shards().is_some() => {
                let shards = e.fenced_shards().unwrap_or_default().to_vec();
                let epochs = runtime.block_on(pipeline.table().shard_epochs(&shards))?;
                if let Some((leases, _)) = &lease {
                    leases.fenced(&epochs)?;
                }
                moved = Some(false);
                Ok(())
            }
            // A commit that lost to a switch: the table holds another generation now.
            Err(e) if e.is_lost_race() => match runtime.block_on(pipeline.table().current_generation()) {
                Ok(Some(current)) if current != generation => {
                    tracing::info!(error = %e, "a commit lost to the switch to {current}: what it held is read again there");
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
        if moved == Some(false) {
            // A shard was lost: nothing more is committed (a late commit would be refused
            // whole); what is buffered is read again by the next session.
            source.stop();
            pipeline.abandon();
            return Ok(Ending::Moved);
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
            && moved.is_none()
        {
            match crate::compact::compact(runtime.handle(), pipeline.table(), options, &|| shutdown.is_requested()) {
                Ok(report) => tracing::info!("{}", report.render(&config.table).trim_end()),
                Err(e) => tracing::warn!(error = %e, "compaction at the end of the run failed; the next run tries again"),
            }
        }
        pipeline.close();
        // Shards gained: what was read is committed; the next session reads every shard held.
        Ok(if moved.is_some() { Ending::Moved } else { Ending::Done })
    }
}

/// How long the source has been idle since `last_event`: up to the instant it has shown that
/// nothing more had arrived (`Source::quiet_until`), not up to now. A Kinesis shard whose
/// subscription is refused for seconds after a restart says nothing in that time, and rows
/// may arrive on it: the run goes on until it has read them, rather than draining with them
/// unread.
fn quiet_for(last_event: Instant, quiet_until: Option<Instant>) -> Duration {
    quiet_until.map_or(Duration::ZERO, |until| until.saturating_duration_since(last_event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_time_runs_only_as_far_as_the_source_has_shown_it_quiet() {
        let last_event = Instant::now();
        let later = |ms| last_event + Duration::from_millis(ms);
        // Quiet shown 3 s after the last event: 3 s idle, whatever the clock says now.
        assert_eq!(quiet_for(last_event, Some(later(3_000))), Duration::from_secs(3));
        // A shard that has said nothing since: no idle time at all.
        assert_eq!(quiet_for(later(5_000), None), Duration::ZERO);
        // Its last quiet read came before the last event (the rows came from another shard).
        assert_eq!(quiet_for(later(5_000), Some(later(4_000))), Duration::ZERO);
    }
}
