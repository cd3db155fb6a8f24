//! A switch under a live consumer must not make a committed row disappear: the consumer goes
//! on committing while the replay reads, so at the switch the live table may hold rows the new
//! generation lacks (a switch once held 1,409 fewer committed rows than the version before).
//!
//! Step by step:
//! 1. Read the live table's version V and, from the consumer's state in it, the last position
//!    it committed per shard: its resume point, or a later position an open partition wrote.
//! 2. Read the source from where the replay stands up to those positions, and commit: the new
//!    generation now holds every row the table held at V (and perhaps more: the consumer goes
//!    on from the replay's positions, so those are not written twice).
//! 3. Switch, on version V only. If the consumer committed meanwhile, the switch fails without
//!    a trace; go back to 1 (each round reads only what the consumer committed since).
//! 4. The consumer sees the switch (its next commit fails, or its status check sees another
//!    generation) and continues on the new generation from the positions the switch handed it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kappa_common::event::SequenceNumber;
use kappa_common::log::Log;
use kappa_common::shutdown::Shutdown;
use kappa_common::store::Store;
use kappa_consumer::feed::Feed;
use kappa_consumer::pipeline::Pipeline;
use kappa_consumer::source::kinesis::ReadBounds;
use kappa_consumer::source::log::LogSource;
use kappa_consumer::source::{Source, SourceError};
use kappa_table::delta::LakeTable;
use kappa_table::{CONSUMER_APP_ID, Commit, TableError};
use tokio::runtime::Runtime;

use crate::config::{ReplayConfig, ReplaySource};
use crate::error::ReplayError;

/// The live table at one version, and per shard the last position its consumer committed.
#[derive(Debug, Clone)]
pub(crate) struct LiveAt {
    pub version: u64,
    /// The consumer's commit counter there.
    pub counter: Option<i64>,
    pub committed: BTreeMap<String, SequenceNumber>,
}

/// Step 1: the live table now (`None`: no table yet). `shards`: the source's shards as the
/// replay knows them, whose positions workers sharing them through leases commit under each
/// shard's own id (a `txn` per shard) rather than the consumer's: without them a switch under
/// leased workers dropped the rows they had committed past the replay (2,750 of 23,000 in a
/// test) until they wrote them again.
pub(crate) async fn live_at(store: &Store, table: &str, shards: &[String]) -> Result<Option<LiveAt>, ReplayError> {
    let Some(lake) = LakeTable::open(table, &kappa_table::location(store, table)?).await? else { return Ok(None) };
    let version = lake.version().unwrap_or_default();
    let mut committed: BTreeMap<String, SequenceNumber> = BTreeMap::new();
    let counter = lake.writer_counter(CONSUMER_APP_ID).await.map_err(TableError::from)?;
    let state = |found| -> Result<Commit, ReplayError> { Ok(kappa_table::table::commit_of(table, found)?) };
    let mut note = |shard: &String, position: &String| {
        if let Ok(position) = position.parse::<SequenceNumber>() {
            let entry = committed.entry(shard.clone()).or_insert(position);
            *entry = (*entry).max(position);
        }
    };
    if let Some(found) = lake.writer_state(CONSUMER_APP_ID).await.map_err(TableError::from)? {
        let commit = state(found)?;
        for (shard, position) in commit.resume.iter().chain(commit.written.values().flat_map(|shards| shards.iter())) {
            note(shard, position);
        }
    }
    // A leased worker's commit carries the state of every shard it holds; only this shard's
    // part is its. A commit of an older generation (before the switch that made this one
    // current) is passed over: the switch's hand-over, read above, is newer.
    let generation = lake.configuration().map_err(TableError::from)?.get(kappa_table::state::GENERATION_PROPERTY).cloned().unwrap_or_default();
    for shard in shards {
        if let Some(found) = lake.writer_state(&kappa_table::state::shard_app_id(shard)).await.map_err(TableError::from)? {
            let commit = state(found)?;
            if commit.generation != generation {
                continue;
            }
            for position in commit.resume.get(shard).into_iter().chain(commit.written.values().filter_map(|shards| shards.get(shard))) {
                note(shard, position);
            }
        }
    }
    Ok(Some(LiveAt { version, counter, committed }))
}

/// Step 2: reads the source from where `pipeline` stands up to `live`'s committed positions
/// and commits what it read. Returns the rows routed. `at_start` is the live table when the
/// replay began: a raw replay (whose positions are its own) cannot catch up, and is refused if
/// the consumer committed since.
pub(crate) fn read_up_to(
    config: &ReplayConfig,
    runtime: &Runtime,
    aws: Option<&kappa_common::aws::AwsContext>,
    pipeline: &mut Pipeline,
    live: &LiveAt,
    at_start: Option<&LiveAt>,
    shutdown: &Shutdown,
) -> Result<u64, ReplayError> {
    if matches!(config.source, ReplaySource::Raw(_)) {
        if at_start.is_some_and(|start| start.counter == live.counter) {
            return Ok(0);
        }
        return Err(ReplayError::Refused(format!(
            "--switch: the live consumer committed after this replay began (the table is at version {}); a replay of raw: objects \
             numbers events itself and cannot catch up with a running consumer. Stop the consumer, run this replay again (it continues \
             where it stopped) and switch",
            live.version
        )));
    }
    let names = pipeline.shard_names().to_vec();
    let position = |name: &str| names.iter().position(|n| n == name).and_then(|i| pipeline.last_read(i as u32));
    let behind: Vec<&String> = live.committed.iter().filter(|(shard, end)| position(shard).is_none_or(|at| at < **end)).map(|(shard, _)| shard).collect();
    if behind.is_empty() {
        return Ok(0);
    }
    tracing::info!(shards = ?behind, version = live.version, "catching up to what the live consumer committed");
    let mut source = match &config.source {
        ReplaySource::Log(path) => {
            let log = Log::open(path).map_err(SourceError::from)?;
            let resume: Vec<Option<SequenceNumber>> = (0..names.len() as u32).map(|i| pipeline.last_read(i)).collect();
            let ends = names
                .iter()
                .zip(&resume)
                .map(|(name, at)| match live.committed.get(name) {
                    Some(end) => end.to_u64().map_or(0, |e| e + 1),
                    None => at.and_then(|p| p.to_u64()).map_or(0, |p| p + 1),
                })
                .collect();
            Source::Log(LogSource::start_until(log, &resume, ends)?)
        }
        ReplaySource::Kinesis(stream) => {
            let resume = names.iter().enumerate().filter_map(|(i, name)| pipeline.last_read(i as u32).map(|p| (name.clone(), p))).collect();
            let bounds = ReadBounds { start_ms: config.at_ms, until_ms: None, until_positions: Some(Arc::new(live.committed.clone())) };
            crate::source::kinesis(config, runtime, aws, stream, resume, bounds, names.clone())?
        }
        ReplaySource::Raw(_) => unreachable!("refused above"),
    };
    let read_before = pipeline_read(pipeline);
    let result = (|| -> Result<(), ReplayError> {
        let mut feed = Feed::new();
        while !source.finished() || !feed.is_empty() {
            if shutdown.is_requested() {
                return Err(ReplayError::Interrupted { generation: pipeline.table().generation().to_string() });
            }
            feed.step(&mut source, pipeline, Duration::from_millis(200))?;
            pipeline.flush_due()?;
        }
        Ok(())
    })();
    source.stop();
    result?;
    pipeline.flush_all()?;
    Ok(pipeline_read(pipeline) - read_before)
}

fn pipeline_read(pipeline: &Pipeline) -> u64 {
    pipeline.routed_rows().values().sum()
}

/// True if the replay read some shard past what the live consumer had committed at `live`:
/// those rows are in the new generation only, as they should be (the consumer goes on after
/// them once switched).
pub(crate) fn ahead_of(pipeline: &Pipeline, live: &LiveAt) -> bool {
    pipeline
        .shard_names()
        .iter()
        .enumerate()
        .any(|(i, name)| pipeline.last_read(i as u32).is_some_and(|read| live.committed.get(name).is_none_or(|committed| read > *committed)))
}
