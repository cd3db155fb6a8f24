//! Where events go: one module per destination, each batching to its API's limits.
//!
//! Every sink has the same life: `push` events (sending a batch whenever the next event would
//! break a limit), `flush` a partial batch (before the pacer sleeps, so paced events are not
//! held back), and `finish` (send the rest, make it durable). An event a sink can never send
//! (too large, or still failing after the retry budget) goes to the reject file with the reason,
//! and is counted as undelivered: it is never dropped silently.

mod firehose;
mod kinesis;
mod log;
pub mod retry;
mod sqs;

use std::sync::Arc;

use kappa_common::aws::AwsContext;
use kappa_common::endpoint::Endpoint;

pub use self::firehose::FirehoseSink;
pub use self::kinesis::KinesisSink;
pub use self::log::LogSink;
use self::retry::RetryPolicy;
pub use self::sqs::SqsSink;
use crate::input::{Event, Reject, RejectWriter};
use crate::stats::Stats;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    #[error("embedded log {path}: {source}")]
    Log { path: String, source: kappa_common::log::LogError },
    #[error("{service} {target}: {message}")]
    Aws { service: &'static str, target: String, message: String },
    #[error(transparent)]
    Rejects(#[from] crate::input::RejectError),
}

/// Settings every sink shares.
#[derive(Clone)]
pub struct SinkContext {
    pub stats: Arc<Stats>,
    pub rejects: Arc<RejectWriter>,
    pub retry: RetryPolicy,
}

impl SinkContext {
    /// Quarantines an event the sink cannot deliver.
    pub fn undeliverable(&self, sink: &str, event: &Event, reason: String) -> Result<(), SinkError> {
        let reject = Reject { input: sink.to_string(), line: 0, row: 0, reason, raw: String::from_utf8_lossy(&event.payload).into_owned() };
        self.rejects.write(&reject)?;
        self.stats.add_undelivered(1);
        Ok(())
    }
}

/// Options for creating missing destinations (`--create`).
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub create: bool,
    /// `None`: an existing destination keeps its count, a new one gets [`DEFAULT_SHARDS`].
    pub shards: Option<u32>,
}

pub const DEFAULT_SHARDS: u32 = 4;

pub enum Sink {
    Log(LogSink),
    Kinesis(KinesisSink),
    Sqs(SqsSink),
    Firehose(FirehoseSink),
}

/// Per-sink tuning from the command line.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub create: CreateOptions,
    /// SQS: `None` packs as many events as fit in `max_message_bytes`.
    pub rows_per_message: Option<usize>,
    pub max_message_bytes: usize,
    /// Kinesis: pack rows into KPL aggregated records of at most this many bytes.
    pub aggregate: Option<usize>,
    pub log: kappa_common::log::LogConfig,
}

impl Sink {
    /// Opens (and with `--create`, creates) the destination. Fails here, before any row is
    /// read, when the destination is missing or unreachable.
    pub async fn open(endpoint: &Endpoint, aws: Option<&AwsContext>, options: &SinkOptions, context: SinkContext) -> Result<Sink, SinkError> {
        let aws_needed = |service: &'static str| SinkError::Aws { service, target: endpoint.to_string(), message: "AWS configuration was not loaded".into() };
        Ok(match endpoint {
            Endpoint::Log(path) => Sink::Log(LogSink::open(path, options, context)?),
            Endpoint::Kinesis(name) => {
                Sink::Kinesis(KinesisSink::open(aws.ok_or_else(|| aws_needed("kinesis"))?.kinesis(), name, &options.create, options.aggregate, context).await?)
            }
            Endpoint::Sqs(queue) => Sink::Sqs(SqsSink::open(aws.ok_or_else(|| aws_needed("sqs"))?.sqs(), queue, options, context).await?),
            Endpoint::Firehose(name) => Sink::Firehose(FirehoseSink::open(aws.ok_or_else(|| aws_needed("firehose"))?.firehose(), name, context).await?),
            other => {
                return Err(SinkError::Aws {
                    service: "producer",
                    target: other.to_string(),
                    message: "not a destination for events; use log:PATH, kinesis:STREAM, sqs:QUEUE or firehose:STREAM".into(),
                });
            }
        })
    }

    pub async fn push(&mut self, event: Event) -> Result<(), SinkError> {
        match self {
            Sink::Log(s) => s.push(event),
            Sink::Kinesis(s) => s.push(event).await,
            Sink::Sqs(s) => s.push(event).await,
            Sink::Firehose(s) => s.push(event).await,
        }
    }

    pub async fn flush(&mut self) -> Result<(), SinkError> {
        match self {
            Sink::Log(s) => s.flush(),
            Sink::Kinesis(s) => s.flush().await,
            Sink::Sqs(s) => s.flush().await,
            Sink::Firehose(s) => s.flush().await,
        }
    }

    pub async fn finish(self) -> Result<(), SinkError> {
        match self {
            Sink::Log(s) => s.finish(),
            Sink::Kinesis(mut s) => s.flush().await,
            Sink::Sqs(mut s) => s.flush().await,
            Sink::Firehose(mut s) => s.flush().await,
        }
    }
}

/// One entry of a batch API call: an event, or (SQS packing) several in one message.
pub trait Entry {
    fn events(&self) -> &[Event];
    fn size(&self) -> u64 {
        self.events().iter().map(|e| e.payload.len() as u64).sum()
    }
}

impl Entry for Event {
    fn events(&self) -> &[Event] {
        std::slice::from_ref(self)
    }
}

/// What one attempt of a batch call says: per entry `None` if accepted or `Some((code,
/// message))` if not; or why the whole call failed.
pub type AttemptResult = Result<Vec<Option<(String, String)>>, (retry::CallFailure, String)>;

/// Sends `entries` with `attempt`, retrying only the entries an attempt reports as failed.
///
/// `attempt` builds its request from the entries it is given (copying what it needs) and
/// returns the call's future. Entries still failing when the retry budget runs out, and
/// entries failing with a permanent code, go to the rejects as undelivered.
pub async fn send_with_retries<T, F, Fut>(sink_name: &str, context: &SinkContext, mut entries: Vec<T>, mut attempt: F) -> Result<(), SinkError>
where
    T: Entry,
    F: FnMut(&[T]) -> Fut,
    Fut: Future<Output = AttemptResult>,
{
    let mut delays = context.retry.delays();
    let undeliverable = |entry: &T, reason: &str| -> Result<(), SinkError> {
        for event in entry.events() {
            context.undeliverable(sink_name, event, reason.to_string())?;
        }
        Ok(())
    };
    loop {
        let results = match attempt(&entries).await {
            Ok(results) if results.len() == entries.len() => results,
            // A response that does not account for every entry cannot be trusted per entry.
            Ok(results) => {
                let message = format!("the service answered for {} of {} entries", results.len(), entries.len());
                return Err(SinkError::Aws { service: "aws", target: sink_name.to_string(), message });
            }
            Err((failure, message)) => {
                if failure == retry::CallFailure::Fatal {
                    return Err(SinkError::Aws { service: "aws", target: sink_name.to_string(), message });
                }
                if failure == retry::CallFailure::Throttled {
                    context.stats.add_throttles(1);
                }
                match delays.next() {
                    Some(delay) => {
                        tracing::warn!(sink = sink_name, error = %message, retry_in = ?delay, "request failed; retrying");
                        context.stats.add_retries(entries.len() as u64);
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    None => {
                        let reason = format!("not delivered after {} attempts: {message}", context.retry.max_attempts);
                        for entry in &entries {
                            undeliverable(entry, &reason)?;
                        }
                        return Ok(());
                    }
                }
            }
        };
        let mut failed = Vec::new();
        let mut last_error = String::new();
        let mut throttled = 0;
        for (entry, result) in entries.into_iter().zip(results) {
            match result {
                None => context.stats.add_sent(entry.events().len() as u64, entry.size()),
                Some((code, message)) if retry::is_retryable_entry_code(&code) => {
                    if retry::is_throttle_code(&code) {
                        throttled += 1;
                    }
                    last_error = format!("{code}: {message}");
                    failed.push(entry);
                }
                Some((code, message)) => undeliverable(&entry, &format!("rejected by the service: {code}: {message}"))?,
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        context.stats.add_throttles(throttled);
        match delays.next() {
            Some(delay) => {
                tracing::debug!(sink = sink_name, failed = failed.len(), error = %last_error, retry_in = ?delay, "retrying failed entries");
                context.stats.add_retries(failed.len() as u64);
                tokio::time::sleep(delay).await;
                entries = failed;
            }
            None => {
                let reason = format!("not delivered after {} attempts: {last_error}", context.retry.max_attempts);
                for entry in &failed {
                    undeliverable(entry, &reason)?;
                }
                return Ok(());
            }
        }
    }
}
