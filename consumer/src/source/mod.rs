//! Where events come from: one module per source kind, each delivering [`Chunk`]s of
//! [`SourceEvent`](crate::event::SourceEvent)s, every shard's in its order.
//!
//! The run loop is synchronous (the pipeline is CPU work); sources read on their own thread
//! or tasks and hand chunks over through a bounded channel, so the pipeline's pace limits
//! how far ahead they read.

pub mod kinesis;
pub mod log;
pub mod raw;
pub mod s3_objects;
pub mod sqs;

use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::event::SourceEvent;

/// What a source hands the pipeline in one step.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Shards first seen with this chunk: they take the next shard indices, in this order,
    /// before any event of theirs arrives.
    pub new_shards: Vec<String>,
    pub events: Vec<SourceEvent>,
    /// Acknowledgements (SQS message ids) all of whose events are in this chunk or earlier
    /// ones: the source may forget them once a commit covers them.
    pub acks: Vec<String>,
    /// For each of `acks`, the position of the message's first event (`None`: it has none).
    pub ack_starts: Vec<Option<kappa_common::event::SequenceNumber>>,
    /// Events the source itself could not turn into rows (an unreadable S3 object, a message
    /// received too often), with the reason: they go to the quarantine.
    pub rejects: Vec<(SourceEvent, String)>,
    /// Shards read to their end (closed by resharding) with this chunk: every event of theirs
    /// came before. Under leases the worker commits, then ends their leases.
    pub drained: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    #[error("log source: {0}")]
    Log(#[from] kappa_common::log::LogError),
    #[error(
        "the table's resume position {position:?} for shard {shard} is not a position of this source; \
         was the table fed from another source? Use a new --table"
    )]
    Position { shard: String, position: String },
    #[error(
        "log shard {shard}: the table resumes it at position {next}, but the log's first record is now {first}: \
         records {next} to {} are gone (segments deleted?). Restore them, or accept the loss with --on-log-gap skip",
        first - 1
    )]
    LogGap { shard: u32, next: u64, first: u64 },
    #[error(
        "log shard {shard}: the table resumes it at position {next}, but the log ends at {end}: it was rolled back or \
         restored from an older copy, and new records there would be taken as read. Restore the newer log, or accept with \
         --on-log-gap skip (positions below {next} are then taken as read)"
    )]
    LogRolledBack { shard: u32, next: u64, end: u64 },
    #[error("kinesis stream {stream}: {message}")]
    Kinesis { stream: String, message: String },
    #[error("sqs queue {queue}: {message}")]
    Sqs { queue: String, message: String },
    #[error("raw objects at {prefix}: {message}")]
    Raw { prefix: String, message: String },
}

/// How far behind the source the consumer is, in the source's own unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// Records written to the log and not yet read.
    Events(u64),
    /// Kinesis `MillisBehindLatest`, the largest over the shards being read.
    Millis(u64),
    /// SQS `ApproximateNumberOfMessages` (visible, not yet received).
    Messages(u64),
}

impl std::fmt::Display for Lag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lag::Events(n) => write!(f, "{n} events"),
            Lag::Millis(ms) => write!(f, "{ms} ms"),
            Lag::Messages(n) => write!(f, "{n} messages"),
        }
    }
}

impl Lag {
    pub fn value(self) -> u64 {
        match self {
            Lag::Events(n) | Lag::Millis(n) | Lag::Messages(n) => n,
        }
    }
}

/// A running source.
pub enum Source {
    Log(log::LogSource),
    Kinesis(kinesis::KinesisSource),
    Sqs(sqs::SqsSource),
    Raw(raw::RawSource),
}

impl Source {
    /// The next chunk, or `None` if nothing arrived within `timeout`.
    pub fn next_chunk(&mut self, timeout: Duration) -> Result<Option<Chunk>, SourceError> {
        match self {
            Source::Log(s) => s.next_chunk(timeout),
            Source::Kinesis(s) => s.next_chunk(timeout),
            Source::Sqs(s) => s.next_chunk(timeout),
            Source::Raw(s) => s.next_chunk(timeout),
        }
    }

    pub fn lag(&self, last_read: impl Fn(u32) -> Option<kappa_common::event::SequenceNumber>) -> Lag {
        match self {
            Source::Log(s) => Lag::Events(s.lag(last_read)),
            Source::Kinesis(s) => Lag::Millis(s.lag_millis()),
            Source::Sqs(s) => Lag::Messages(s.backlog()),
            Source::Raw(_) => Lag::Events(0),
        }
    }

    /// The lag of each shard being read, in the source's unit (log: events; Kinesis: ms
    /// behind latest); none for SQS and raw objects.
    pub fn shard_lags(&self, names: &[String], last_read: impl Fn(u32) -> Option<kappa_common::event::SequenceNumber>) -> Vec<(String, u64)> {
        match self {
            Source::Log(s) => s.shard_lags(last_read).into_iter().filter_map(|(i, lag)| names.get(i as usize).map(|n| (n.clone(), lag))).collect(),
            Source::Kinesis(s) => s.shard_lags(),
            Source::Sqs(_) | Source::Raw(_) => Vec::new(),
        }
    }

    /// Hands over acknowledgements a commit made durable (SQS: deletes the messages).
    pub fn acknowledge(&mut self, acks: Vec<String>) {
        if let Source::Sqs(s) = self {
            s.acknowledge(acks);
        }
    }

    /// Messages another consumer of the queue committed: deleted if they come here (SQS).
    pub fn committed_elsewhere(&mut self, acks: Vec<String>) {
        if let (Source::Sqs(s), false) = (self, acks.is_empty()) {
            s.committed_elsewhere(acks);
        }
    }

    /// Messages whose deletes another consumer of the queue confirmed: forgotten after the
    /// grace period (SQS).
    pub fn confirmed_elsewhere(&mut self, acks: Vec<String>) {
        if let (Source::Sqs(s), false) = (self, acks.is_empty()) {
            s.confirmed_elsewhere(acks);
        }
    }

    /// Acknowledgements the source has completed since the last call (SQS: deleted messages).
    pub fn take_acknowledged(&mut self) -> Vec<String> {
        match self {
            Source::Sqs(s) => s.take_deleted(),
            _ => Vec::new(),
        }
    }

    /// True when the source cannot take more before a commit (SQS: the in-flight limit).
    pub fn needs_commit(&self) -> bool {
        match self {
            Source::Sqs(s) => s.needs_commit(),
            _ => false,
        }
    }

    /// The source has, at least once, had nothing more to deliver: `--until-idle` counts only
    /// from then, so a source slow to answer at start (credentials, connections, throttling)
    /// is not taken for an idle one. Log: a round found every shard at its end; Kinesis: every
    /// shard being read came back empty with nothing behind; SQS: a receive came back and,
    /// under `--until-idle`, the queue holds nothing but this consumer's own messages. Raw objects are a bounded read.
    pub fn caught_up(&self) -> bool {
        match self {
            Source::Log(s) => s.caught_up(),
            Source::Kinesis(s) => s.caught_up(),
            Source::Sqs(s) => s.drained(),
            Source::Raw(_) => true,
        }
    }

    /// For `--until-idle`, once caught up: the instant up to which the source has shown that
    /// nothing more had arrived. Kinesis: the earliest, over the shards being read, of each
    /// one's last empty read with nothing behind, so a shard whose reads fail or are refused
    /// keeps the run going however long the others are quiet. Log, SQS (its own polled counts)
    /// and raw objects: now, once caught up.
    pub fn quiet_until(&self) -> Option<Instant> {
        match self {
            Source::Kinesis(s) => s.quiet_until(),
            _ => self.caught_up().then(Instant::now),
        }
    }

    /// The source has answered at least once — a read came back, with events or without —
    /// what readiness waits for (a Kinesis shard can hold a long empty stretch from the start
    /// of its retention: its reads answer, with nothing, long before it is caught up).
    pub fn answered(&self) -> bool {
        match self {
            Source::Log(_) | Source::Raw(_) => true,
            Source::Kinesis(s) => s.answered(),
            Source::Sqs(s) => s.answered(),
        }
    }

    /// A bounded read (replay) delivered everything it was to deliver.
    pub fn finished(&self) -> bool {
        match self {
            Source::Log(s) => s.finished(),
            Source::Kinesis(s) => s.finished(),
            Source::Sqs(_) => false,
            Source::Raw(s) => s.finished(),
        }
    }

    /// Stops taking new events but keeps acknowledging (SQS: the deletes after the final
    /// commit still need the source).
    pub fn pause(&mut self) {
        match self {
            Source::Sqs(s) => s.pause(),
            other => other.stop(),
        }
    }

    /// Stops reading. Chunks read ahead but not taken are dropped: the commit's resume point
    /// (or, for SQS, the messages' visibility timeout) brings them back next time.
    pub fn stop(&mut self) {
        match self {
            Source::Log(s) => s.stop(),
            Source::Kinesis(s) => s.stop(),
            Source::Sqs(s) => s.stop(),
            Source::Raw(s) => s.stop(),
        }
    }
}

/// The synchronous run loop's end of an async source's chunk channel.
pub(crate) struct ChunkReceiver {
    runtime: Handle,
    chunks: mpsc::Receiver<Result<Chunk, SourceError>>,
    finished: bool,
}

impl ChunkReceiver {
    pub(crate) fn new(runtime: Handle, chunks: mpsc::Receiver<Result<Chunk, SourceError>>) -> ChunkReceiver {
        ChunkReceiver { runtime, chunks, finished: false }
    }

    /// The next chunk, or `None` if nothing arrived within `timeout`.
    pub(crate) fn next(&mut self, timeout: Duration) -> Result<Option<Chunk>, SourceError> {
        // Timers need the runtime's context: create the timeout inside it.
        let chunks = &mut self.chunks;
        match self.runtime.block_on(async { tokio::time::timeout(timeout, chunks.recv()).await }) {
            Ok(Some(Ok(chunk))) => Ok(Some(chunk)),
            Ok(Some(Err(e))) => Err(e),
            // Every sender is gone: a bounded read is complete (or the source was stopped).
            Ok(None) => {
                self.finished = true;
                Ok(None)
            }
            Err(_) => Ok(None),
        }
    }

    pub(crate) fn finished(&self) -> bool {
        self.finished
    }

    pub(crate) fn close(&mut self) {
        self.chunks.close();
    }
}
