//! Amazon SQS as a source (`sqs:QUEUE`), and S3 file drops announced on SQS (`sqs+s3:QUEUE`).
//!
//! SQS has no positions and cannot be re-read, so exactly once rests on three things:
//! 1. The consumer numbers the events itself, in one synthetic shard ([`SHARD`]), continuing
//!    after the last commit's number, so object names never repeat across restarts.
//! 2. Every flush writes every open buffer (the pipeline's `flush_together`), so a commit covers
//!    every message taken in so far, whole. Its message ids go into the commit as
//!    *unacknowledged*; the messages are deleted (`DeleteMessageBatch`) only after the commit,
//!    and later commits stop listing them once SQS confirmed the deletes.
//! 3. A message that comes back although a commit covers it (the consumer died between commit
//!    and delete) is deleted, not ingested; one that comes back while still held (its
//!    visibility lapsed) just gets its new receipt handle. Rows sent twice by a producer are
//!    dropped by event identity in the pipeline.
//!
//! While rows wait for a flush, a heartbeat renews their messages' visibility every third of
//! `--visibility-timeout` (`ChangeMessageVisibilityBatch`). On shutdown, messages not covered by
//! a commit are made visible again at once, for whoever reads next.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use kappa_common::aws::{AwsContext, describe_sdk_error};
use kappa_common::event::SequenceNumber;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

mod upkeep;

use self::upkeep::{change_visibility, delete, delete_loop, heartbeat, watch_queue};
use super::s3_objects::{created_objects, events_of_object};
use super::{Chunk, ChunkReceiver, SourceError};
use crate::event::SourceEvent;
use crate::settings::SqsOptions;
use crate::stats::Stats;

/// The synthetic shard SQS events are numbered in: `sqs-<worker>-<run>` for each consumer's
/// run (several may share a queue and a table), plain `sqs` in tables written before that.
pub const SHARD: &str = "sqs";

/// True for the name of a synthetic SQS shard.
pub fn is_sqs_shard(name: &str) -> bool {
    name == SHARD || name.starts_with("sqs-")
}
/// SQS's limits: 10 messages per receive and per batch call, 20 s long polls.
const BATCH: usize = 10;
const WAIT_SECONDS: i32 = 20;
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// A message whose events were handed to the pipeline and that no commit covers yet.
struct Held {
    receipt: String,
}

struct Shared {
    client: Client,
    s3: Option<aws_sdk_s3::Client>,
    queue: String,
    url: String,
    options: SqsOptions,
    shard: u32,
    /// The last number given to an event; taken with the send, so numbers reach the pipeline
    /// in order.
    last_seq: tokio::sync::Mutex<Option<SequenceNumber>>,
    held: Mutex<HashMap<String, Held>>,
    /// Ids a commit covers: delete on sight. Confirmed deletes are forgotten after a grace
    /// period (the time given), unconfirmed ones never in this run.
    committed: Mutex<HashMap<String, Option<Instant>>>,
    /// Ids deleted since the pipeline last asked.
    deleted: Mutex<Vec<String>>,
    /// SQS moves messages to a dead-letter queue itself: no quarantine of our own.
    has_redrive: bool,
    backlog: AtomicU64,
    stats: Arc<Stats>,
    /// A ReceiveMessage call has come back (with messages or without).
    answered: AtomicBool,
    /// With `--until-idle`: the queue's counts, polled every second.
    counts: Mutex<Option<QueueCounts>>,
}

/// What GetQueueAttributes says is in the queue.
#[derive(Debug, Clone, Copy, Default)]
struct QueueCounts {
    /// Visible or delayed: any receiver could get them.
    waiting: u64,
    /// Received by someone and not deleted: this consumer's held messages, and those of
    /// consumers that died holding them (invisible until their visibility timeout).
    not_visible: u64,
}

impl Shared {
    fn error(&self, message: String) -> SourceError {
        SourceError::Sqs { queue: self.queue.clone(), message }
    }
}

pub struct SqsSource {
    runtime: Handle,
    shared: Arc<Shared>,
    chunks: ChunkReceiver,
    receivers: Vec<JoinHandle<()>>,
    heartbeat: Option<JoinHandle<()>>,
    acks: Option<mpsc::UnboundedSender<Vec<String>>>,
    deleter: Option<JoinHandle<()>>,
    queue_watch: Option<JoinHandle<()>>,
    paused: Arc<AtomicBool>,
    /// When the queue was first seen empty but for messages in flight elsewhere, and whether
    /// the drain has since given up waiting for them.
    waiting_for_in_flight: Mutex<(Option<Instant>, bool)>,
}

impl SqsSource {
    /// Resolves the queue (failing at start if it is missing) and starts the long polls.
    /// `committed` holds the message ids the table's last commit lists as unacknowledged.
    pub fn start(
        runtime: Handle,
        aws: &AwsContext,
        options: SqsOptions,
        shard: u32,
        last_seq: Option<SequenceNumber>,
        committed: HashSet<String>,
        stats: Arc<Stats>,
    ) -> Result<SqsSource, SourceError> {
        let client = aws.sqs();
        let queue = options.queue.clone();
        let fail = |message: String| SourceError::Sqs { queue: queue.clone(), message };
        let url = if queue.starts_with("http://") || queue.starts_with("https://") {
            queue.clone()
        } else {
            let out = runtime
                .block_on(client.get_queue_url().queue_name(&queue).send())
                .map_err(|e| fail(format!("cannot find the queue: {}; create it, or check --region and credentials", describe_sdk_error(&e))))?;
            out.queue_url().unwrap_or_default().to_string()
        };
        let attributes = runtime
            .block_on(client.get_queue_attributes().queue_url(&url).attribute_names(QueueAttributeName::RedrivePolicy).send())
            .map_err(|e| fail(format!("GetQueueAttributes: {}", describe_sdk_error(&e))))?;
        let redrive = attributes.attributes().and_then(|a| a.get(&QueueAttributeName::RedrivePolicy)).cloned();
        match &redrive {
            Some(policy) => tracing::info!(%policy, "the queue has a redrive policy: messages received too often go to its dead-letter queue"),
            None => tracing::info!(max_receives = options.max_receives, "no redrive policy: messages received too often are quarantined"),
        }
        if !committed.is_empty() {
            tracing::info!(messages = committed.len(), "the last commit covers messages whose deletion was not confirmed: they are deleted if they come back");
        }
        let s3 = options.files.as_ref().map(|_| aws.s3());
        let shared = Arc::new(Shared {
            client,
            s3,
            queue,
            url,
            shard,
            last_seq: tokio::sync::Mutex::new(last_seq),
            held: Mutex::new(HashMap::new()),
            committed: Mutex::new(committed.into_iter().map(|id| (id, None)).collect()),
            deleted: Mutex::new(Vec::new()),
            has_redrive: redrive.is_some(),
            backlog: AtomicU64::new(0),
            stats,
            answered: AtomicBool::new(false),
            counts: Mutex::new(None),
            options,
        });
        let (sender, chunks) = mpsc::channel(shared.options.receivers * 2);
        let paused = Arc::new(AtomicBool::new(false));
        let receivers = (0..shared.options.receivers).map(|_| runtime.spawn(receive_loop(shared.clone(), sender.clone(), paused.clone()))).collect();
        let heartbeat = Some(runtime.spawn(heartbeat(shared.clone())));
        let (acks, ack_queue) = mpsc::unbounded_channel();
        let deleter = Some(runtime.spawn(delete_loop(shared.clone(), ack_queue)));
        let queue_watch = shared.options.in_flight_wait.is_some().then(|| runtime.spawn(watch_queue(shared.clone())));
        Ok(SqsSource {
            runtime: runtime.clone(),
            shared,
            chunks: ChunkReceiver::new(runtime, chunks),
            receivers,
            heartbeat,
            acks: Some(acks),
            deleter,
            queue_watch,
            paused,
            waiting_for_in_flight: Mutex::new((None, false)),
        })
    }

    pub fn next_chunk(&mut self, timeout: Duration) -> Result<Option<Chunk>, SourceError> {
        self.chunks.next(timeout)
    }

    /// True once a receive has come back. Each receiver's first call is a short poll, so this
    /// means "the queue answered", not "20 s of long poll found nothing".
    pub fn answered(&self) -> bool {
        self.shared.answered.load(Ordering::Acquire)
    }

    /// For `--until-idle`: the queue answered, holds nothing visible or delayed, and nothing in
    /// flight but this consumer's own messages. Messages received by a consumer that died stay
    /// invisible until their visibility timeout, then come back: a drain waits for them, up to
    /// `--in-flight-wait`, and then says how many it leaves.
    pub fn drained(&self) -> bool {
        let Some(wait) = self.shared.options.in_flight_wait else { return self.answered() };
        let Some(counts) = *self.shared.counts.lock().expect("counts lock") else { return false };
        if !self.answered() || counts.waiting > 0 {
            return false;
        }
        let held = self.shared.held.lock().expect("held lock").len() as u64;
        let elsewhere = counts.not_visible.saturating_sub(held);
        let mut waiting = self.waiting_for_in_flight.lock().expect("in-flight lock");
        let (since, gave_up) = &mut *waiting;
        if elsewhere == 0 || *gave_up {
            *since = None;
            return true;
        }
        let started = *since.get_or_insert_with(|| {
            tracing::info!(
                messages = elsewhere,
                "the queue is empty but for messages in flight elsewhere (received by a consumer that stopped?): waiting for them to become visible again"
            );
            Instant::now()
        });
        if started.elapsed() < wait {
            return false;
        }
        *gave_up = true;
        tracing::warn!(
            messages = elsewhere,
            "still in flight elsewhere after --in-flight-wait {wait:?}: draining without them; they become visible after their visibility timeout, for the next run"
        );
        true
    }

    /// Messages waiting in the queue (ApproximateNumberOfMessages, refreshed by the heartbeat).
    pub fn backlog(&self) -> u64 {
        self.shared.backlog.load(Ordering::Relaxed)
    }

    /// True once the in-flight limit is reached: the receivers wait for a commit.
    pub fn needs_commit(&self) -> bool {
        self.shared.held.lock().expect("held lock").len() >= self.shared.options.max_in_flight
    }

    /// Deletes the messages a commit covers (in the background, batched by 10).
    pub fn acknowledge(&mut self, acks: Vec<String>) {
        if let (false, Some(sender)) = (acks.is_empty(), &self.acks) {
            let _ = sender.send(acks);
        }
    }

    /// Messages another consumer of the queue committed: deleted when they come here (SQS
    /// delivers a message again now and then, and one whose delete was lost comes back), for as
    /// long as a message can stay in a queue, or until the grace period after the other
    /// consumer confirmed its delete ([`SqsSource::confirmed_elsewhere`]).
    pub fn committed_elsewhere(&mut self, ids: Vec<String>) {
        let forget_at = Instant::now() + Duration::from_millis(crate::acks::UNACKNOWLEDGED_TTL_MS as u64);
        let mut committed = self.shared.committed.lock().expect("committed lock");
        for id in ids {
            committed.entry(id).or_insert(Some(forget_at));
        }
    }

    /// Messages whose deletes another consumer confirmed: forgotten once a deleted message's
    /// grace period ends.
    pub fn confirmed_elsewhere(&mut self, ids: Vec<String>) {
        let forget_at = Instant::now() + deleted_grace(&self.shared.options);
        let mut committed = self.shared.committed.lock().expect("committed lock");
        for id in ids {
            if let Some(Some(at)) = committed.get_mut(&id) {
                *at = (*at).min(forget_at);
            }
        }
    }

    pub fn take_deleted(&mut self) -> Vec<String> {
        std::mem::take(&mut *self.shared.deleted.lock().expect("deleted lock"))
    }

    /// Stops receiving; the heartbeat and the deleter keep going until [`SqsSource::stop`].
    pub fn pause(&mut self) {
        self.paused.store(true, Ordering::Release);
        // A long poll in progress may hold messages SQS already handed out; they become
        // visible again after the visibility timeout, never lost.
        for receiver in self.receivers.drain(..) {
            receiver.abort();
        }
    }

    /// Stops everything: waits for the deletes already asked for, then makes the messages no
    /// commit covers visible again.
    pub fn stop(&mut self) {
        self.pause();
        self.chunks.close();
        self.acks.take();
        if let Some(deleter) = self.deleter.take() {
            let _ = self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(60), deleter).await });
        }
        if let Some(watch) = self.queue_watch.take() {
            watch.abort();
        }
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
            // A renewal in flight must not land after the release below.
            let _ = self.runtime.block_on(heartbeat);
        }
        let held: Vec<(String, String)> = self.shared.held.lock().expect("held lock").drain().map(|(id, h)| (id, h.receipt)).collect();
        if !held.is_empty() {
            tracing::info!(messages = held.len(), "releasing messages no commit covers (visibility 0)");
            self.runtime.block_on(change_visibility(&self.shared, held, 0));
        }
    }
}

impl Drop for SqsSource {
    fn drop(&mut self) {
        if self.deleter.is_some() {
            self.stop();
        }
    }
}

async fn receive_loop(shared: Arc<Shared>, chunks: mpsc::Sender<Result<Chunk, SourceError>>, paused: Arc<AtomicBool>) {
    let mut backoff = Duration::from_millis(100);
    // The first call returns at once, so that `--until-idle` learns soon that the queue
    // answers; the others wait up to 20 s for messages.
    let mut wait_seconds = 0;
    loop {
        if paused.load(Ordering::Acquire) {
            return;
        }
        if shared.held.lock().expect("held lock").len() >= shared.options.max_in_flight {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let received = shared
            .client
            .receive_message()
            .queue_url(&shared.url)
            .max_number_of_messages(BATCH as i32)
            .wait_time_seconds(wait_seconds)
            .visibility_timeout(shared.options.visibility_timeout.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await;
        let messages = match received {
            Ok(out) => {
                backoff = Duration::from_millis(100);
                wait_seconds = WAIT_SECONDS;
                shared.answered.store(true, Ordering::Release);
                out.messages.unwrap_or_default()
            }
            Err(e) => {
                let text = describe_sdk_error(&e);
                if text.contains("NonExistentQueue") || text.contains("QueueDoesNotExist") {
                    let _ = chunks.send(Err(shared.error(format!("ReceiveMessage: {text}")))).await;
                    return;
                }
                tracing::warn!(backoff = ?backoff, "ReceiveMessage failed ({text}); retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        shared.stats.add_messages_received(messages.len() as u64);
        let mut to_delete = Vec::new();
        let mut fresh = Vec::new();
        {
            let mut held = shared.held.lock().expect("held lock");
            let committed = shared.committed.lock().expect("committed lock");
            for message in messages {
                let (Some(id), Some(receipt)) = (message.message_id.clone(), message.receipt_handle.clone()) else { continue };
                if committed.contains_key(&id) {
                    to_delete.push((id, receipt));
                } else if let Some(h) = held.get_mut(&id) {
                    // Its visibility lapsed while its rows waited: same rows, new handle.
                    tracing::warn!(message = %id, "message redelivered while held (visibility lapsed); keeping its new receipt handle");
                    h.receipt = receipt;
                } else {
                    held.insert(id.clone(), Held { receipt });
                    fresh.push(message);
                }
            }
        }
        if !to_delete.is_empty() {
            shared.stats.add_redeliveries_skipped(to_delete.len() as u64);
            tracing::info!(messages = to_delete.len(), "deleting redelivered messages a commit already covers");
            delete(&shared, to_delete).await;
        }
        if fresh.is_empty() {
            continue;
        }
        let mut parts = Vec::with_capacity(fresh.len());
        let mut retry = Vec::new();
        for message in &fresh {
            match message_parts(&shared, message).await {
                Parts::Fatal(reason) => {
                    let _ = chunks.send(Err(shared.error(reason))).await;
                    return;
                }
                Parts::Retry(reason) => {
                    tracing::warn!(message = message.message_id().unwrap_or_default(), "{reason}; the message will be retried (up to --max-receives times)");
                    let id = message.message_id().unwrap_or_default().to_string();
                    if let Some(h) = shared.held.lock().expect("held lock").remove(&id) {
                        retry.push((id, h.receipt));
                    }
                    parts.push(None);
                }
                part => parts.push(Some(part)),
            }
        }
        if !retry.is_empty() {
            change_visibility(&shared, retry, 0).await;
        }
        // Number the events and send them under one lock, so numbers arrive in order.
        let mut last_seq = shared.last_seq.lock().await;
        let peek = |last: &Option<SequenceNumber>| last.map_or(SequenceNumber::from(0), SequenceNumber::next);
        let next = |last: &mut Option<SequenceNumber>| {
            let seq = peek(last);
            *last = Some(seq);
            seq
        };
        let mut chunk = Chunk::default();
        for (message, part) in fresh.iter().zip(parts) {
            let arrival_ms = message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
            match part {
                None => continue,
                Some(Parts::Events(payloads)) => {
                    chunk.ack_starts.push((!payloads.is_empty()).then(|| peek(&last_seq)));
                    for payload in payloads {
                        chunk.events.push(SourceEvent::object(shared.shard, next(&mut last_seq), arrival_ms, payload.into()));
                    }
                }
                Some(Parts::Reject(reason)) => {
                    chunk.ack_starts.push(Some(peek(&last_seq)));
                    let payload = bytes::Bytes::copy_from_slice(message.body().unwrap_or_default().as_bytes());
                    chunk.rejects.push((SourceEvent::object(shared.shard, next(&mut last_seq), arrival_ms, payload), reason));
                }
                Some(Parts::Retry(_) | Parts::Fatal(_)) => unreachable!("handled above"),
            }
            chunk.acks.push(message.message_id().unwrap_or_default().to_string());
        }
        if chunks.send(Ok(chunk)).await.is_err() {
            return;
        }
    }
}

/// How long a deleted message is still recognised: SQS may deliver it again (at-least-once
/// delivery, or a delete made with a receipt handle that a redelivery replaced).
pub fn deleted_grace(options: &SqsOptions) -> Duration {
    2 * options.visibility_timeout + Duration::from_secs(300)
}

/// What becomes of a received message.
enum Parts {
    /// Its events.
    Events(Vec<Vec<u8>>),
    /// It goes to the quarantine whole, for this reason, and is deleted.
    Reject(String),
    /// A passing failure (S3 throttling, a timeout): let SQS deliver it again.
    Retry(String),
    /// Misconfiguration (no permission to read the bucket): stop with this message.
    Fatal(String),
}

async fn message_parts(shared: &Shared, message: &aws_sdk_sqs::types::Message) -> Parts {
    let receives: u32 =
        message.attributes().and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount)).and_then(|n| n.parse().ok()).unwrap_or(1);
    if !shared.has_redrive && receives > shared.options.max_receives {
        return Parts::Reject(format!("received {receives} times without being committed (more than --max-receives {})", shared.options.max_receives));
    }
    let body = message.body().unwrap_or_default();
    let (Some(s3), Some(flatten)) = (&shared.s3, &shared.options.files) else {
        // One event per line: a producer may pack several rows into a message.
        return Parts::Events(body.split('\n').map(str::trim).filter(|line| !line.is_empty()).map(|line| line.as_bytes().to_vec()).collect());
    };
    let objects = match created_objects(body) {
        Ok(objects) => objects,
        Err(reason) => return Parts::Reject(reason),
    };
    let mut payloads = Vec::new();
    for object in objects {
        let name = format!("s3://{}/{}", object.bucket, object.key);
        let got = match s3.get_object().bucket(&object.bucket).key(&object.key).send().await {
            Ok(got) => got,
            Err(e) => {
                let reason = format!("{name}: {}", describe_sdk_error(&e));
                return match e.as_service_error().and_then(|s| aws_sdk_s3::error::ProvideErrorMetadata::code(s)) {
                    // Deleted after the notification: its rows cannot be read, ever.
                    Some("NoSuchKey") => Parts::Reject(reason),
                    Some("AccessDenied" | "AllAccessDisabled" | "InvalidAccessKeyId" | "NoSuchBucket") => {
                        Parts::Fatal(format!("{reason}: give the consumer s3:GetObject on the bucket the queue announces"))
                    }
                    _ => Parts::Retry(reason),
                };
            }
        };
        let data = match got.body.collect().await {
            Ok(data) => data.into_bytes(),
            Err(e) => return Parts::Retry(format!("{name}: reading the object: {e}")),
        };
        match events_of_object(&object, &data, flatten) {
            Ok(events) => payloads.extend(events),
            Err(reason) => return Parts::Reject(format!("{name}: {reason}")),
        }
        shared.stats.add_objects_read(1);
    }
    Parts::Events(payloads)
}
