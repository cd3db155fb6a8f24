//! A replay shared by several processes (`--leases`), on one machine or many: each reads the
//! shards it holds a lease on, all into one new generation, and one of them finishes it.
//!
//! Step by step:
//! 1. The job is the lease store's: its scope names the source and the generation
//!    (`<table root>@<generation>`). The first process makes the generation and claims the
//!    scope; the others find the scope and join that generation. Of two that start at once,
//!    the one whose claim lost removes the generation it made and joins the winner's. A scope
//!    whose generation is done (switched to, completed without a switch asked, or removed)
//!    belongs to an earlier job: the store is emptied and a new job begins.
//! 2. Where the generation ends is fixed once, by whoever comes first (`targets.json`: each
//!    shard's end when the job began, and `--until`); every process reads its shards up to there.
//! 3. A process reads the shards it holds from where the generation's log has them, and
//!    commits to that log with each shard's lease epoch (see `kappa_table`'s `shared.rs`: a
//!    commit after another process took a shard is refused). When its shards reach their ends
//!    it commits and ends their leases. When the held set changes otherwise, it drops what it
//!    buffered and reads again from the log: files are cut by the data only, so the generation
//!    is the same files, byte for byte, however the shards moved.
//! 4. One more lease, [`FINISH`], has every shard for parent: it can be taken only once every
//!    shard's lease has ended, by one process, which then marks the generation complete and
//!    runs `--verify`, `--compare` and `--switch` (catching up with a live consumer first). If
//!    it dies, another takes the lease after `--failover` and does it again. The others wait
//!    until that lease has ended too, then exit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use kappa_common::log::{Log, StartAt};
use kappa_common::shutdown::Shutdown;
use kappa_common::store::{Store, StoreError};
use kappa_consumer::feed::Feed;
use kappa_consumer::leased::Leases;
use kappa_consumer::pipeline::Pipeline;
use kappa_consumer::source::log::LogSource;
use kappa_consumer::source::{Source, SourceError};
use kappa_consumer::stats::Stats;
use kappa_leases::{Expect, Key, LeaseStore, ShardInfo, ShardLister};
use kappa_table::{Table, TableError, generation};
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;

use crate::config::{ReplayConfig, ReplaySource};
use crate::error::ReplayError;
use crate::progress::Progress;
use crate::rebuild::{Finishing, ReplaySummary, open_store};

/// The lease that finishes the job: its parents are every shard.
pub(crate) const FINISH: &str = "finish";

/// Where a shared replay's generation ends (step 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Targets {
    /// Per log shard (by index), the first sequence number not to read.
    ends: Vec<u64>,
    until_ms: Option<i64>,
}

/// The source's shards (the log's, or a Kinesis stream's with their parents), and the
/// finishing lease after all of them, keyed by the job's generation.
struct JobShards {
    generation: String,
    source: Arc<dyn ShardLister>,
}

#[async_trait]
impl ShardLister for JobShards {
    async fn shards(&self) -> Result<Vec<ShardInfo>, String> {
        let key = |shard: &str| lease_key(&self.generation, shard);
        let mut shards: Vec<ShardInfo> =
            self.source.shards().await?.into_iter().map(|s| ShardInfo { id: key(&s.id), parents: s.parents.iter().map(|p| key(p)).collect() }).collect();
        let every = shards.iter().map(|s| s.id.clone()).collect();
        shards.push(ShardInfo { id: key(FINISH), parents: every });
        Ok(shards)
    }
}

/// What the job reads: the embedded log (its shards known up front), or a Kinesis stream.
enum JobSource {
    Log(Log),
    Kinesis { stream: String, client: aws_sdk_kinesis::Client },
}

/// A job's lease of `shard`: keyed by the job's generation, so that no lease of an earlier job
/// held by the same store is ever taken for one of this job's.
fn lease_key(generation: &str, shard: &str) -> String {
    format!("{generation}/{shard}")
}

/// The scope's table field for a job writing `generation` of the table at `root`.
fn scope_table(root: &str, generation: &str) -> String {
    format!("{root}@{generation}")
}

pub(crate) fn replay_shared(config: ReplayConfig, runtime: &Runtime, shutdown: &Shutdown) -> Result<ReplaySummary, ReplayError> {
    let started = Instant::now();
    let options = config.leases.clone().expect("a shared replay has leases");
    let dynamo = matches!(options.store, kappa_consumer::settings::LeaseStoreConfig::Dynamo(_));
    let kinesis = matches!(config.source, ReplaySource::Kinesis(_));
    let (store, aws) = open_store(runtime, &config.location, dynamo || kinesis || config.glue_database.is_some())?;
    let name = config.location.table.clone();
    crate::source::check(&config, runtime, aws.as_ref())?;
    let root = format!("{}/{name}", config.location.lake);
    let (previous, _, schema) = crate::rebuild::current_and_schema(&config, runtime, &store, &name)?;
    let (source, lister, local): (JobSource, Arc<dyn ShardLister>, _) = match &config.source {
        ReplaySource::Log(path) => {
            let log = Log::open(path).map_err(SourceError::from)?;
            let lister = Arc::new(kappa_consumer::leased::FixedShards(LogSource::shard_names(&log)));
            // Not the live consumers' leases: the job's own, beside them.
            (JobSource::Log(log), lister, Some(kappa_leases::store::local::dir_of_log(path).join(format!("replay-{name}"))))
        }
        ReplaySource::Kinesis(stream) => {
            let client = aws.as_ref().expect("loaded for Kinesis").kinesis();
            let lister = Arc::new(kappa_consumer::leased::KinesisShards { client: client.clone(), stream: stream.clone() });
            (JobSource::Kinesis { stream: stream.clone(), client }, lister, None)
        }
        ReplaySource::Raw(_) => unreachable!("--leases is validated to come with a log or Kinesis source"),
    };
    let lease_store = kappa_consumer::leased::open_store(runtime, &options, local, aws.as_ref())?;
    let writer = runtime.block_on(kappa_table::writers::Writer::register(&store, &name, "replay --leases", None))?;
    let job = Job { config: &config, runtime, store: &store, name: &name, root: &root, lease_store: lease_store.clone(), writer: &writer };
    let result = (|| {
        let (new_generation, joined) = job.join()?;
        let targets = job.targets(&new_generation, &source)?;
        let at_start = match previous {
            Some(_) => runtime.block_on(crate::catch_up::live_at(&store, &name, &[]))?,
            None => None,
        };
        let described = config.source.to_string();
        let lister = Arc::new(JobShards { generation: new_generation.clone(), source: lister.clone() });
        let leases = Leases::start_on(runtime, lease_store.clone(), &options, lister, described, scope_table(&root, &new_generation))?;
        let stats = Arc::new(Stats::default());
        let mut worker = Worker { job: &job, generation: &new_generation, targets, source: &source, schema, stats: stats.clone(), leases, shutdown };
        let finishing = worker.run();
        let Worker { mut leases, .. } = worker;
        let finished = match finishing {
            Ok(Some((mut pipeline, _))) if runtime.block_on(generation::current(&store, &name))?.is_some_and(|p| p.generation == new_generation) => {
                // A finisher before this one switched, and stopped before it said so.
                tracing::info!(generation = %new_generation, "the generation is current already: the job is done");
                pipeline.close();
                leases.end(runtime, &lease_key(&new_generation, FINISH))?;
                let mut run = stats.summary();
                run.elapsed_seconds = started.elapsed().as_secs_f64();
                Ok(ReplaySummary::shared_part(&name, &new_generation, root.clone(), joined, run, previous.clone()))
            }
            Ok(Some((mut pipeline, accounted))) => {
                let finishing = Finishing {
                    config: &config,
                    runtime,
                    aws: aws.as_ref(),
                    store: &store,
                    name: &name,
                    at_start,
                    shutdown,
                    previous: previous.clone(),
                    new_generation: &new_generation,
                    location: root.clone(),
                    started,
                    stats: &stats,
                    accounted: &accounted,
                    continued: true,
                };
                let summary = finishing.finish(&mut pipeline);
                pipeline.close();
                // The job is done, and the others may go, only if its checks passed: else the
                // lease goes back at shutdown, and another process (or the next run) checks again.
                let passed = summary.as_ref().is_ok_and(|s| s.verify.as_ref().is_none_or(|v| v.ok) && s.compare.as_ref().is_none_or(|c| c.ok));
                if passed {
                    leases.end(runtime, &lease_key(&new_generation, FINISH))?;
                }
                summary.map(|mut s| {
                    s.continued = joined;
                    s
                })
            }
            Ok(None) => {
                let mut run = stats.summary();
                run.elapsed_seconds = started.elapsed().as_secs_f64();
                Ok(ReplaySummary::shared_part(&name, &new_generation, root.clone(), joined, run, previous.clone()))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = leases.shutdown(runtime) {
            tracing::warn!(error = %e, "could not release the replay's leases; others take them after --failover");
        }
        finished
    })();
    if let Err(e) = runtime.block_on(writer.finish()) {
        tracing::warn!(error = %e, "cannot remove the replay's writer record; other tools take it for dead once this process exits");
    }
    result
}

/// What every process of the job shares.
struct Job<'a> {
    config: &'a ReplayConfig,
    runtime: &'a Runtime,
    store: &'a Store,
    name: &'a str,
    root: &'a str,
    lease_store: Arc<dyn LeaseStore>,
    writer: &'a kappa_table::writers::Writer,
}

impl Job<'_> {
    /// The job's generation (step 1), and whether this process joined it rather than began it.
    fn join(&self) -> Result<(String, bool), ReplayError> {
        let source = self.config.source.to_string();
        let prefix = format!("{}@", self.root);
        for _ in 0..10 {
            let snapshot = self.runtime.block_on(self.lease_store.scan()).map_err(kappa_leases::LeaseError::from)?;
            let Some(scope) = snapshot.scope.clone() else {
                // No job: begin one.
                let made = self.make_generation()?;
                match self.runtime.block_on(kappa_leases::coordinator::claim_scope(self.lease_store.as_ref(), &source, &scope_table(self.root, &made))) {
                    Ok(()) => {
                        tracing::info!(generation = %made, "began a shared replay: other processes given the same settings and --leases join it");
                        return Ok((made, false));
                    }
                    Err(kappa_leases::LeaseError::OtherScope { .. }) => {
                        // Another process began the job at the same moment: join its.
                        self.abandon(&made)?;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            let Some(generation) = scope.table.strip_prefix(&prefix).filter(|_| scope.source == source) else {
                return Err(ReplayError::Refused(format!(
                    "--leases: {} serves {} read into {}, not this replay of {source} into {}: give a lease store of its own to each replay job",
                    self.lease_store.describe(),
                    scope.source,
                    scope.table,
                    self.root
                )));
            };
            let generation = generation.to_string();
            let writing = self.runtime.block_on(generation::is_being_written(self.store, self.name, &generation))?;
            match self.state_of(&generation, &snapshot)? {
                JobState::Running { origin } if origin == self.config.origin && (writing || !self.config.fresh) => {
                    self.runtime.block_on(self.writer.writes(&generation))?;
                    tracing::info!(generation = %generation, "joining the shared replay writing {generation}");
                    return Ok((generation, true));
                }
                // Processes of that job still run: it is not this process's to end.
                JobState::Running { origin } if writing => {
                    return Err(ReplayError::Refused(format!(
                        "--leases: {} serves a replay of {generation} ({origin}) that processes still write: stop them, or give this \
                         replay a lease store of its own",
                        self.lease_store.describe()
                    )));
                }
                JobState::Running { origin } if !self.config.fresh => {
                    return Err(ReplayError::Refused(format!(
                        "--leases: {} serves an unfinished replay of {generation} with other settings ({origin}); run it with those \
                         settings to finish it, or give --fresh to begin a new one (kappa-replay gc removes the old)",
                        self.lease_store.describe()
                    )));
                }
                _ => {
                    tracing::info!(generation = %generation, "the lease store served an earlier replay job, done or abandoned: beginning a new one");
                    if let Some(made) = self.take_over(&snapshot, &scope)? {
                        return Ok((made, false));
                    }
                }
            }
        }
        Err(ReplayError::Refused(format!("--leases: could not settle which generation the job writes in {}; try again", self.lease_store.describe())))
    }

    /// Makes a new generation for a job, announced by this process.
    fn make_generation(&self) -> Result<String, ReplayError> {
        Ok(self.runtime.block_on(async {
            loop {
                let generation = generation::next_name(self.store, self.name).await?;
                self.writer.writes(&generation).await?;
                if generation::claim(self.store, self.name, &generation, &self.config.origin).await? {
                    return Ok::<_, TableError>(generation);
                }
            }
        })?)
    }

    /// What became of the job writing `generation`: done once its finishing lease has ended (or
    /// the generation is gone); running until then, even while its finisher switches.
    fn state_of(&self, generation: &str, snapshot: &kappa_leases::Snapshot) -> Result<JobState, ReplayError> {
        if snapshot.leases.get(&lease_key(generation, FINISH)).is_some_and(|l| l.ended) {
            return Ok(JobState::Done);
        }
        let record = self.runtime.block_on(generation::records(self.store, self.name))?.into_iter().find(|r| r.generation == generation);
        Ok(match record {
            Some(record) if record.removed_ms.is_none() => JobState::Running { origin: record.origin },
            _ => JobState::Done,
        })
    }

    /// Begins a new job in place of the one `scope` names: removes that job's leases (keyed by
    /// its generation, so none is a new job's), then takes the scope over, conditionally on
    /// the version read: of processes doing this at once, one wins and the others join its
    /// job. `None` if another process won.
    fn take_over(&self, snapshot: &kappa_leases::Snapshot, scope: &kappa_leases::Scope) -> Result<Option<String>, ReplayError> {
        // Worker items stay: a worker that went away without removing its own is reaped by the
        // lease protocol.
        for lease in snapshot.leases.values() {
            match self.runtime.block_on(self.lease_store.delete(&Key::Lease(lease.shard.clone()), Expect::Counter(lease.counter))) {
                Ok(()) => {}
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(kappa_leases::LeaseError::from(e).into()),
            }
        }
        let made = self.make_generation()?;
        let ours = kappa_leases::Scope { source: scope.source.clone(), table: scope_table(self.root, &made), counter: scope.counter + 1 };
        match self.runtime.block_on(self.lease_store.put(&kappa_leases::Item::Scope(ours), Expect::Counter(scope.counter))) {
            Ok(()) => {
                tracing::info!(generation = %made, "began a shared replay: other processes given the same settings and --leases join it");
                Ok(Some(made))
            }
            Err(e) if e.is_conflict() => {
                self.abandon(&made)?;
                Ok(None)
            }
            Err(e) => Err(kappa_leases::LeaseError::from(e).into()),
        }
    }

    /// Removes a generation this process made and no one will write.
    fn abandon(&self, generation: &str) -> Result<(), ReplayError> {
        self.runtime.block_on(async {
            self.writer.settled(&[format!("{generation}/")]).await?;
            generation::remove(self.store, self.name, generation, Duration::ZERO).await?;
            Ok::<_, TableError>(())
        })?;
        Ok(())
    }

    /// The job's end positions (step 2): written by the first process, read by the others.
    fn targets(&self, generation: &str, source: &JobSource) -> Result<Targets, ReplayError> {
        let path = format!("{}/_kappa/{generation}/targets.json", self.name);
        let ours = match source {
            JobSource::Log(log) => Targets {
                ends: (0..log.shard_count()).map(|s| log.shard_end(s)).collect::<Result<Vec<u64>, _>>().map_err(SourceError::from)?,
                until_ms: self.config.until_ms,
            },
            // What the stream held when the job began (or --until), as one replay reads it.
            JobSource::Kinesis { .. } => {
                Targets { ends: Vec::new(), until_ms: Some(self.config.until_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis())) }
            }
        };
        let data = Bytes::from(serde_json::to_vec_pretty(&ours).expect("serializes"));
        let targets = self.runtime.block_on(async {
            match self.store.put_if_absent(&path, data).await {
                Ok(()) => Ok(ours),
                Err(StoreError::AlreadyExists { .. }) => {
                    let data = self.store.get(&path).await?;
                    serde_json::from_slice::<Targets>(&data).map_err(|source| TableError::Corrupt { path: path.clone(), source })
                }
                Err(e) => Err(e.into()),
            }
        })?;
        if let JobSource::Log(log) = source
            && targets.ends.len() != log.shard_count() as usize
        {
            return Err(ReplayError::Refused(format!(
                "{path} has {} shards, the log {}: the log was recreated since this replay began; replay again with --fresh",
                targets.ends.len(),
                log.shard_count()
            )));
        }
        Ok(targets)
    }
}

enum JobState {
    Running { origin: String },
    Done,
}

/// One process's part: sessions on the shards it holds, until every lease has ended.
struct Worker<'a> {
    job: &'a Job<'a>,
    generation: &'a str,
    targets: Targets,
    source: &'a JobSource,
    schema: Option<kappa_common::schema::TableSchema>,
    stats: Arc<Stats>,
    leases: Leases,
    shutdown: &'a Shutdown,
}

impl Worker<'_> {
    /// Reads until the job is done. Returns a pipeline on the whole generation if this process
    /// holds the finishing lease (step 4), `None` if another one finished the job.
    fn run(&mut self) -> Result<Option<(Pipeline, Arc<Stats>)>, ReplayError> {
        let runtime = self.job.runtime;
        let total = self.targets.ends.iter().sum();
        let mut progress = Progress::new(Some(total), self.job.config.progress_interval);
        loop {
            if self.shutdown.is_requested() {
                return Err(ReplayError::Interrupted { generation: self.generation.to_string() });
            }
            if let Some(failure) = self.leases.failure(runtime) {
                return Err(failure.into());
            }
            // Leases are keyed by the job's generation: the log's shard names without it.
            let prefix = lease_key(self.generation, "");
            let mut held = BTreeMap::new();
            for (key, epoch) in self.leases.held_now() {
                match key.strip_prefix(&prefix) {
                    Some(shard) => {
                        held.insert(shard.to_string(), epoch);
                    }
                    // An earlier job's lease, left in the store: that job is done or abandoned.
                    None => self.leases.end(runtime, &key)?,
                }
            }
            if held.remove(FINISH).is_some() {
                tracing::info!("every shard is read to the job's end: this process finishes the generation");
                return Ok(Some(self.finisher()?));
            }
            if held.is_empty() {
                if self.finished_elsewhere()? {
                    progress.finish(self.stats.read(), self.stats.written());
                    return Ok(None);
                }
                self.leases.wait_for_change(runtime, Duration::from_millis(200));
                continue;
            }
            match self.session(&held, &mut progress) {
                Ok(true) => {
                    for shard in held.keys() {
                        self.leases.end(runtime, &lease_key(self.generation, shard))?;
                    }
                }
                Ok(false) => {}
                // Another process's commit holds one of these shards (see `kappa_table`'s
                // `shared.rs`): a newer owner's fence, or an older owner's last commit. The
                // coordinator is told the epochs the log has them at, as a consumer does: it
                // forgets the shards another process took (or, if the leases still say they are
                // this one's, takes them again above the log's epoch); then the shards held are
                // read again from the log, as it now stands.
                Err(e) if e.fenced_shards().is_some() => {
                    tracing::info!(error = %e, "the generation's log moved on for shards of this process: reading them again from there");
                    let whole = Table::open_generation(self.job.store.clone(), self.job.name, self.generation);
                    let logged = runtime.block_on(whole.shared_epochs())?;
                    let fenced: BTreeMap<String, Option<u64>> = e
                        .fenced_shards()
                        .unwrap_or_default()
                        .iter()
                        .filter(|shard| logged.get(*shard).is_some_and(|epoch| held.get(*shard).is_none_or(|ours| epoch > ours)))
                        .map(|shard| (lease_key(self.generation, shard), logged.get(shard).copied()))
                        .collect();
                    if !fenced.is_empty() {
                        self.leases.fenced(&fenced)?;
                    }
                    self.leases.wait_for_change(runtime, Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One session on `held` (shard → epoch): true once they are all read to their ends and
    /// committed; false if the held set changed first (nothing more of it is committed).
    fn session(&mut self, held: &BTreeMap<String, u64>, progress: &mut Progress) -> Result<bool, ReplayError> {
        let runtime = self.job.runtime;
        let worker = self.leases.worker_id.clone();
        let table = Table::open_generation(self.job.store.clone(), self.job.name, self.generation).leased(&worker, held);
        let (mut pipeline, _) =
            Pipeline::open(table, runtime.handle().clone(), self.job.config.pipeline.clone(), self.shard_names(), self.schema.clone(), self.stats.clone())?;
        tracing::info!(shards = ?held.keys().collect::<Vec<_>>(), "replaying the shards this process holds");
        let mut source = self.open_source(held, &pipeline)?;
        let mut feed = Feed::new();
        let read = (|| -> Result<bool, ReplayError> {
            // Shards just taken are fenced in the generation's log before they are read: a
            // commit of their previous owner after this one is refused (see `Pipeline::fence`).
            pipeline.fence()?;
            while !source.finished() || !feed.is_empty() {
                if self.shutdown.is_requested() {
                    return Err(ReplayError::Interrupted { generation: self.generation.to_string() });
                }
                if feed.step(&mut source, &mut pipeline, Duration::from_millis(200))? {
                    progress.set(self.stats.read(), self.stats.written());
                }
                pipeline.flush_due()?;
                if self.leases.changed() {
                    return Ok(false);
                }
            }
            Ok(true)
        })();
        source.stop();
        match read {
            Ok(true) => {
                pipeline.flush_all()?;
                pipeline.close();
                Ok(true)
            }
            Ok(false) => {
                // Files are cut by the data only: what was buffered is read again by whoever
                // holds the shards next, into the same files.
                pipeline.abandon();
                Ok(false)
            }
            Err(e) => {
                pipeline.abandon();
                Err(e)
            }
        }
    }

    /// The shard names a pipeline starts with: the log's (Kinesis announces its shards).
    fn shard_names(&self) -> Vec<String> {
        match self.source {
            JobSource::Log(log) => LogSource::shard_names(log),
            JobSource::Kinesis { .. } => Vec::new(),
        }
    }

    /// Reads the `held` shards from where `pipeline`'s state has them to the job's end.
    fn open_source(&self, held: &BTreeMap<String, u64>, pipeline: &Pipeline) -> Result<Source, ReplayError> {
        let resumed = |shard: &str| pipeline.state().resume.get(shard).and_then(|p| p.parse::<kappa_common::event::SequenceNumber>().ok());
        match self.source {
            JobSource::Log(log) => {
                let mut starts = Vec::new();
                for shard in held.keys() {
                    let index: u32 = shard.parse().map_err(|_| ReplayError::Refused(format!("lease of shard {shard:?}: not a shard of the log")))?;
                    let start = match resumed(shard).and_then(|p| p.to_u64()) {
                        Some(after) => StartAt::AtSequence(after + 1),
                        None => self.job.config.at_ms.map_or(StartAt::Earliest, StartAt::ArrivalTime),
                    };
                    starts.push((index, start));
                }
                Ok(Source::Log(LogSource::start_bounded_shards(log.clone(), starts, &self.targets.ends, self.targets.until_ms)?))
            }
            JobSource::Kinesis { stream, client } => {
                let resume = held.keys().filter_map(|shard| Some((shard.clone(), resumed(shard)?))).collect();
                let bounds =
                    kappa_consumer::source::kinesis::ReadBounds { start_ms: self.job.config.at_ms, until_ms: self.targets.until_ms, until_positions: None };
                Ok(Source::Kinesis(kappa_consumer::source::kinesis::KinesisSource::start(
                    self.job.runtime.handle().clone(),
                    client.clone(),
                    stream.clone(),
                    resume,
                    kappa_consumer::settings::KinesisRead {
                        poll_interval: self.job.config.poll_interval,
                        shard_refresh: Duration::from_secs(5),
                        payload: self.job.config.payload,
                        start: kappa_consumer::settings::StartPosition::TrimHorizon,
                        efo: None,
                    },
                    Some(bounds),
                    pipeline.shard_names().to_vec(),
                    Some(held.keys().cloned().collect()),
                )?))
            }
        }
    }

    /// True once the finishing lease has ended: the job is done.
    fn finished_elsewhere(&self) -> Result<bool, ReplayError> {
        let snapshot = self.job.runtime.block_on(self.job.lease_store.scan()).map_err(kappa_leases::LeaseError::from)?;
        Ok(snapshot.leases.get(&lease_key(self.generation, FINISH)).is_some_and(|l| l.ended))
    }

    /// The generation as a whole (every shard at the epoch its last commit has), with the
    /// completion mark: what step 4 verifies and switches; and the counters of what it reads
    /// (a catch-up with a live consumer).
    fn finisher(&mut self) -> Result<(Pipeline, Arc<Stats>), ReplayError> {
        let runtime = self.job.runtime;
        let (store, name) = (self.job.store, self.job.name);
        let whole = Table::open_generation(store.clone(), name, self.generation);
        let epochs = runtime.block_on(whole.shared_epochs())?;
        let table = whole.leased(&self.leases.worker_id, &epochs);
        runtime.block_on(generation::mark_complete_for(store, name, self.generation, self.job.config.switch))?;
        let accounted = Arc::new(Stats::default());
        let (pipeline, _) =
            Pipeline::open(table, runtime.handle().clone(), self.job.config.pipeline.clone(), self.shard_names(), self.schema.clone(), accounted.clone())?;
        Ok((pipeline, accounted))
    }
}
