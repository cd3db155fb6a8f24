//! The replay's source, started where the generation's last commit stands: from each shard's
//! start (or `--at-timestamp`) for a new generation, after its resume positions for one an
//! interrupted replay left.

use std::time::Duration;

use kappa_common::aws::AwsContext;
use kappa_common::event::SequenceNumber;
use kappa_common::log::{Log, StartAt};
use kappa_common::store::Store;
use kappa_consumer::pipeline::Pipeline;
use kappa_consumer::source::kinesis::{KinesisSource, ReadBounds};
use kappa_consumer::source::log::LogSource;
use kappa_consumer::source::raw::RawSource;
use kappa_consumer::source::{Source, SourceError};
use kappa_table::generation;
use tokio::runtime::Runtime;

use crate::config::{ReplayConfig, ReplaySource};
use crate::error::ReplayError;

/// Fails, before any generation is made, if the source cannot be read: a wrong `--from`.
pub(crate) fn check(config: &ReplayConfig, runtime: &Runtime, aws: Option<&AwsContext>) -> Result<(), ReplayError> {
    match &config.source {
        ReplaySource::Log(path) => {
            Log::open(path).map_err(SourceError::from)?;
        }
        ReplaySource::Kinesis(stream) => {
            let client = aws.expect("loaded for Kinesis").kinesis();
            runtime
                .block_on(client.describe_stream_summary().stream_name(stream).send())
                .map_err(|e| SourceError::Kinesis { stream: stream.clone(), message: kappa_common::aws::describe_sdk_error(&e) })?;
        }
        ReplaySource::Raw(_) => {}
    }
    Ok(())
}

/// Starts reading after the positions `pipeline`'s state holds (from the start without them).
pub(crate) fn open(
    config: &ReplayConfig,
    runtime: &Runtime,
    aws: Option<&AwsContext>,
    store: &Store,
    name: &str,
    log: Option<Log>,
    pipeline: &Pipeline,
) -> Result<Source, ReplayError> {
    let resumed = |shard: &str| pipeline.state().resume.get(shard).and_then(|p| p.parse::<SequenceNumber>().ok());
    Ok(match &config.source {
        ReplaySource::Log(_) => {
            let log = log.expect("opened for a log source");
            let starts = pipeline
                .shard_names()
                .iter()
                .map(|shard| match resumed(shard).and_then(|p| p.to_u64()) {
                    Some(after) => StartAt::AtSequence(after + 1),
                    None => config.at_ms.map_or(StartAt::Earliest, StartAt::ArrivalTime),
                })
                .collect();
            Source::Log(LogSource::start_bounded(log, starts, config.until_ms)?)
        }
        ReplaySource::Kinesis(stream) => {
            // Without --until, what the stream held when the replay started: a shard under
            // steady traffic is never empty, so "caught up" alone would not end it.
            let until_ms = Some(config.until_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()));
            let bounds = ReadBounds { start_ms: config.at_ms, until_ms, until_positions: None };
            let resume = pipeline.state().resume.iter().filter_map(|(shard, p)| Some((shard.clone(), p.parse().ok()?))).collect();
            kinesis(config, runtime, aws, stream, resume, bounds, Vec::new())?
        }
        ReplaySource::Raw(location) => {
            // Archive objects of commits that never happened are left out.
            let last_commits: std::collections::HashMap<String, u64> =
                runtime.block_on(generation::summaries(store, name))?.into_iter().map(|g| (g.record.generation, g.commits)).collect();
            let uncommitted = move |path: &str| {
                kappa_consumer::archive::commit_of_object(path)
                    .is_some_and(|(generation, commit)| last_commits.get(&generation).is_some_and(|last| commit > *last))
            };
            let raw_store = kappa_table::lake::open_store(location, aws);
            let after = resumed(kappa_consumer::source::raw::SHARD);
            Source::Raw(RawSource::start(runtime.handle().clone(), raw_store, String::new(), 0, after, uncommitted)?)
        }
    })
}

/// A bounded read of Kinesis stream `stream`, shards resumed after `resume`; `known` are the
/// shards the pipeline already numbered (see `KinesisSource::start`).
pub(crate) fn kinesis(
    config: &ReplayConfig,
    runtime: &Runtime,
    aws: Option<&AwsContext>,
    stream: &str,
    resume: std::collections::BTreeMap<String, SequenceNumber>,
    bounds: ReadBounds,
    known: Vec<String>,
) -> Result<Source, ReplayError> {
    let client = aws.expect("loaded for Kinesis").kinesis();
    let source = KinesisSource::start(
        runtime.handle().clone(),
        client,
        stream.to_string(),
        resume,
        kappa_consumer::settings::KinesisRead {
            poll_interval: config.poll_interval,
            shard_refresh: Duration::from_secs(5),
            payload: config.payload,
            start: kappa_consumer::settings::StartPosition::TrimHorizon,
            efo: None,
        },
        Some(bounds),
        known,
        None,
    )?;
    Ok(Source::Kinesis(source))
}
