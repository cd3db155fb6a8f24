//! Enhanced fan-out (`--efo CONSUMER`): a registered stream consumer, and one SubscribeToShard
//! subscription per shard being read, which pushes records over a long-lived response (an
//! event stream) with a dedicated 2 MiB/s per shard for this consumer, instead of the 5
//! GetRecords calls/s and 2 MiB/s per shard every polling application shares.
//!
//! - The consumer is registered under its name, or reused when it exists (any process of the
//!   same application uses the same name: the leases decide which of them reads a shard).
//! - A subscription lasts 5 minutes: it is renewed a little before, between events, from the
//!   last event's continuation sequence number (`AFTER_SEQUENCE_NUMBER`); after a restart, from
//!   the table's positions, as a polling read would (`take_records` skips the events up to a
//!   position inside a record). An event without a continuation number ends the shard (closed
//!   by a reshard, read to its end): the coordinator then finds its children.
//! - A second subscription to a shard within seconds of the last one is refused by Kinesis
//!   (`ResourceInUseException`, e.g. right after a restart): it is retried with backoff. Until
//!   it is granted the shard shows no quiet time, so `--until-idle` waits for it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::{ConsumerStatus, StartingPosition, SubscribeToShardEventStream};
use kappa_common::aws::describe_sdk_error;
use kappa_common::event::SequenceNumber;
use tokio::sync::mpsc;

use super::{BACKOFF_MAX, Chunk, Ending, MAX_FAILURES, Reader, Shared, Taken, drained, is_not_found, starting_point, take_records};

/// Subscriptions end after 5 minutes; renewing before, between events, avoids a cut mid-event.
const SUBSCRIPTION_LIFETIME: Duration = Duration::from_secs(290);

/// [`SUBSCRIPTION_LIFETIME`], or `KAPPA_EFO_RENEW_MS` (tests renew every second or two, to
/// check that renewals lose and repeat nothing without waiting minutes).
fn subscription_lifetime() -> Duration {
    std::env::var("KAPPA_EFO_RENEW_MS").ok().and_then(|ms| ms.parse().ok()).map_or(SUBSCRIPTION_LIFETIME, Duration::from_millis)
}
/// Kinesis refuses a new subscription to a shard for ~5 s after the previous one.
const RESUBSCRIBE_FIRST: Duration = Duration::from_millis(500);

/// Registers the stream consumer `name` (or finds it) and waits until it is ACTIVE; its ARN.
pub(super) async fn register(client: &Client, stream: &str, name: &str) -> Result<String, String> {
    let summary =
        client.describe_stream_summary().stream_name(stream).send().await.map_err(|e| format!("DescribeStreamSummary failed: {}", describe_sdk_error(&e)))?;
    let stream_arn = summary.stream_description_summary().map(|s| s.stream_arn().to_string()).ok_or("DescribeStreamSummary returned no stream")?;
    match client.register_stream_consumer().stream_arn(&stream_arn).consumer_name(name).send().await {
        Ok(_) => tracing::info!(stream, consumer = name, "registered the enhanced fan-out consumer"),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {
            tracing::info!(stream, consumer = name, "reusing the enhanced fan-out consumer");
        }
        Err(e) => return Err(format!("RegisterStreamConsumer {name} failed: {}", describe_sdk_error(&e))),
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let described = client
            .describe_stream_consumer()
            .stream_arn(&stream_arn)
            .consumer_name(name)
            .send()
            .await
            .map_err(|e| format!("DescribeStreamConsumer {name} failed: {}", describe_sdk_error(&e)))?;
        let consumer = described.consumer_description().ok_or("DescribeStreamConsumer returned no consumer")?;
        match consumer.consumer_status() {
            ConsumerStatus::Active => return Ok(consumer.consumer_arn().to_string()),
            ConsumerStatus::Deleting => return Err(format!("the stream consumer {name} is being deregistered; wait, or use another --efo name")),
            _ if Instant::now() > deadline => return Err(format!("the stream consumer {name} did not become ACTIVE within 2 minutes")),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Reads one shard through subscriptions, to its end (closed shards) or until stopped.
pub(super) async fn read_shard(
    shared: Shared,
    reader: Reader,
    consumer_arn: String,
    resume: Option<SequenceNumber>,
    finished: mpsc::UnboundedSender<(String, Ending)>,
) {
    let (shard, closed) = (reader.shard.clone(), reader.closed);
    let mut last = resume;
    if shared.bounds.as_ref().is_some_and(|b| b.reached_position(&shard, last)) {
        let _ = finished.send((shard, Ending::Bounded));
        return;
    }
    // The last continuation sequence number: every record up to it was taken.
    let mut continuation: Option<String> = None;
    let mut backoff = RESUBSCRIBE_FIRST;
    let mut failures = 0u32;
    let mut first = true;
    let lifetime = subscription_lifetime();
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let (kind, sequence, time_ms) = match &continuation {
            Some(after) => (aws_sdk_kinesis::types::ShardIteratorType::AfterSequenceNumber, Some(after.clone()), None),
            None => starting_point(&shared, &reader, last),
        };
        let position = StartingPosition::builder()
            .r#type(kind)
            .set_sequence_number(sequence)
            .set_timestamp(time_ms.map(aws_sdk_kinesis::primitives::DateTime::from_millis))
            .build()
            .expect("the type is set");
        let subscribed = Instant::now();
        let request = shared.client.subscribe_to_shard().consumer_arn(&consumer_arn).shard_id(&shard).starting_position(position);
        let mut out = match request.send().await {
            Ok(out) => {
                if std::mem::take(&mut first) {
                    tracing::info!(shard = %shard, "reading the shard by enhanced fan-out subscription");
                }
                out
            }
            Err(e) if is_not_found(&e) && closed => {
                drained(&shared, &shard, &finished).await;
                return;
            }
            Err(e) => {
                let in_use = e.as_service_error().is_some_and(|e| e.is_resource_in_use_exception() || e.is_limit_exceeded_exception());
                failures += u32::from(!in_use);
                if failures >= MAX_FAILURES {
                    let _ =
                        shared.chunks.send(Err(shared.error(format!("SubscribeToShard on {shard} failed {failures} times: {}", describe_sdk_error(&e))))).await;
                    return;
                }
                tracing::debug!(shard = %shard, backoff = ?backoff, "SubscribeToShard refused ({}); retrying", describe_sdk_error(&e));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        loop {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            let remaining = lifetime.saturating_sub(subscribed.elapsed());
            let event = match tokio::time::timeout(remaining, out.event_stream.recv()).await {
                Err(_) => {
                    // Renew before Kinesis ends it.
                    tracing::debug!(shard = %shard, after = ?continuation, "renewing the subscription");
                    break;
                }
                Ok(Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event)))) => event,
                Ok(Ok(Some(_))) => continue, // a kind of event this version does not know
                Ok(Ok(None)) => break,       // Kinesis ended the subscription: renew
                Ok(Err(e)) => {
                    tracing::warn!(shard = %shard, "the subscription failed ({}); subscribing again", describe_sdk_error(&e));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    break;
                }
            };
            backoff = RESUBSCRIBE_FIRST;
            failures = 0;
            let Some(Taken { events, past_until }) = take_records(&shared, &reader, event.records(), &mut last).await else {
                return;
            };
            let got = !events.is_empty();
            if got && shared.chunks.send(Ok(Chunk { events, ..Chunk::default() })).await.is_err() {
                return;
            }
            let caught_up = !got && event.millis_behind_latest() == 0;
            // Kinesis pushes the event: its state is that of a moment ago, as near as this gets.
            shared.progressed(&shard, Instant::now(), Some(event.millis_behind_latest()), caught_up);
            if shared.bounds.is_some() && (past_until || (caught_up && !closed)) {
                let _ = finished.send((shard, Ending::Bounded));
                return;
            }
            // A shard closed by a reshard, every record of it delivered, names its children (and
            // has no continuation): the coordinator reads them next.
            let next = event.continuation_sequence_number();
            if !event.child_shards().is_empty() || next.is_empty() || (closed && caught_up) {
                drained(&shared, &shard, &finished).await;
                return;
            }
            continuation = Some(next.to_string());
        }
    }
}
