//! Amazon Kinesis Data Streams: `PutRecords` in batches of at most 500 records and 5 MiB,
//! records of at most 1 MiB (data plus partition key). Kinesis-compatible servers do not all
//! enforce these limits (kinesis-local accepts more), so the sink does.
//!
//! With `--aggregate`, rows are packed into KPL aggregated records (`kappa_common::kpl`), which
//! every KCL-based reader, the AWS deaggregation libraries and `kappa-consumer` unpack: a shard's
//! 1,000 records/s limit then stops being the bound, and a million rows take a few dozen
//! PutRecords calls instead of 2,000. Rows are grouped by the shard their partition key hashes
//! to (the shard map comes from ListShards, and is read again when Kinesis puts an aggregate on
//! another shard than expected, after a reshard), so a key's rows stay on its shard, in order.

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use bytes::Bytes;
use kappa_common::aws::describe_sdk_error;
use kappa_common::kpl::{self, Aggregator};

use super::retry::classify;
use super::{CreateOptions, Entry, SinkContext, SinkError, send_with_retries};
use crate::input::Event;

pub(super) const MAX_RECORDS: usize = 500;
pub(super) const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;
pub(super) const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Kinesis partition keys are at most 256 characters.
const MAX_KEY_CHARS: usize = 256;

/// One Kinesis record: an event, or an aggregate of several.
struct Record {
    key: String,
    data: Bytes,
    events: Vec<Event>,
    /// The shard the sink expects it on (aggregates only).
    shard: Option<String>,
}

impl Entry for Record {
    fn events(&self) -> &[Event] {
        &self.events
    }
}

pub struct KinesisSink {
    client: Client,
    stream: String,
    name: String,
    batch: Vec<Record>,
    batch_bytes: usize,
    context: SinkContext,
    /// With `--aggregate`: the open shards and one aggregator each.
    aggregation: Option<Aggregation>,
}

struct Aggregation {
    max_bytes: usize,
    /// Open shards by hash key range, sorted: (first hash key, last hash key, shard id).
    shards: Vec<(u128, u128, String)>,
    /// Per shard: the open aggregate, and its rows (kept for the reject file).
    open: Vec<(Aggregator, Vec<Event>)>,
    /// PutRecords put an aggregate on another shard than the map said: read it again.
    stale: bool,
}

impl Aggregation {
    fn shard_of(&self, key: &str) -> usize {
        let hash = kpl::partition_key_hash(key);
        self.shards.iter().position(|(first, last, _)| (*first..=*last).contains(&hash)).unwrap_or(0)
    }
}

fn aws_error(stream: &str, message: String) -> SinkError {
    SinkError::Aws { service: "kinesis", target: stream.to_string(), message }
}

impl KinesisSink {
    /// `aggregate`: pack rows into KPL aggregates of at most this many bytes.
    pub async fn open(client: Client, stream: &str, create: &CreateOptions, aggregate: Option<usize>, context: SinkContext) -> Result<KinesisSink, SinkError> {
        ensure_stream(&client, stream, create).await?;
        let aggregation = match aggregate {
            Some(max_bytes) => {
                let shards = open_shards(&client, stream).await?;
                let open = shards.iter().map(|_| (Aggregator::new(max_bytes), Vec::new())).collect();
                Some(Aggregation { max_bytes, shards, open, stale: false })
            }
            None => None,
        };
        Ok(KinesisSink { client, stream: stream.to_string(), name: format!("kinesis:{stream}"), batch: Vec::new(), batch_bytes: 0, context, aggregation })
    }

    pub async fn push(&mut self, mut event: Event) -> Result<(), SinkError> {
        if event.key.chars().count() > MAX_KEY_CHARS {
            // A long key still has to route deterministically; its hash does.
            event.key = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(event.key.as_bytes()));
        }
        let Some(aggregation) = &mut self.aggregation else {
            let size = event.payload.len() + event.key.len();
            if size > MAX_RECORD_BYTES {
                let reason = format!("event of {size} bytes exceeds the Kinesis record limit of {MAX_RECORD_BYTES} bytes");
                return self.context.undeliverable(&self.name, &event, reason);
            }
            // The event keeps its payload: the summary counts its bytes, a reject keeps them.
            let record = Record { key: event.key.clone(), data: Bytes::from(event.payload.clone()), events: vec![event], shard: None };
            return self.add(record).await;
        };
        let shard = aggregation.shard_of(&event.key);
        let (aggregator, _) = &aggregation.open[shard];
        if !aggregator.fits_alone(&event.key, event.payload.len()) {
            let reason = format!("event of {} bytes does not fit an aggregated record of {} bytes", event.payload.len(), aggregation.max_bytes);
            return self.context.undeliverable(&self.name, &event, reason);
        }
        if !aggregator.fits(&event.key, event.payload.len()) {
            self.close_aggregate(shard).await?;
        }
        let (aggregator, events) = &mut self.aggregation.as_mut().expect("aggregating").open[shard];
        // The aggregate keeps its own copy of the payload; the event keeps its for a reject.
        aggregator.add(&event.key, Bytes::copy_from_slice(&event.payload));
        events.push(event);
        Ok(())
    }

    /// Moves shard `shard`'s open aggregate into the batch.
    async fn close_aggregate(&mut self, shard: usize) -> Result<(), SinkError> {
        let aggregation = self.aggregation.as_mut().expect("aggregating");
        let (aggregator, events) = &mut aggregation.open[shard];
        let Some((key, data)) = aggregator.take() else {
            return Ok(());
        };
        let events = std::mem::take(events);
        let record = Record { key, data: Bytes::from(data), events, shard: Some(aggregation.shards[shard].2.clone()) };
        self.add(record).await
    }

    async fn add(&mut self, record: Record) -> Result<(), SinkError> {
        let size = record.data.len() + record.key.len();
        if self.batch.len() == MAX_RECORDS || self.batch_bytes + size > MAX_BATCH_BYTES {
            self.send().await?;
        }
        self.batch_bytes += size;
        self.batch.push(record);
        Ok(())
    }

    /// Sends what is batched and every open aggregate.
    pub async fn flush(&mut self) -> Result<(), SinkError> {
        let open = self.aggregation.as_ref().map_or(0, |a| a.open.len());
        for shard in 0..open {
            self.close_aggregate(shard).await?;
        }
        self.send().await?;
        if self.aggregation.as_ref().is_some_and(|a| a.stale) {
            let shards = open_shards(&self.client, &self.stream).await?;
            tracing::info!(stream = %self.stream, shards = shards.len(), "the stream's shards changed; aggregating by the new shard map");
            let aggregation = self.aggregation.as_mut().expect("aggregating");
            aggregation.open = shards.iter().map(|_| (Aggregator::new(aggregation.max_bytes), Vec::new())).collect();
            aggregation.shards = shards;
            aggregation.stale = false;
        }
        Ok(())
    }

    async fn send(&mut self) -> Result<(), SinkError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let (client, stream, stats) = (&self.client, &self.stream, &self.context.stats);
        let stale = std::sync::atomic::AtomicBool::new(false);
        send_with_retries(&self.name, &self.context, batch, |records: &[Record]| {
            let entries: Vec<PutRecordsRequestEntry> = records
                .iter()
                .map(|r| PutRecordsRequestEntry::builder().data(Blob::new(r.data.to_vec())).partition_key(r.key.clone()).build().expect("data and key are set"))
                .collect();
            let expected: Vec<Option<String>> = records.iter().map(|r| r.shard.clone()).collect();
            let request = client.put_records().stream_name(stream).set_records(Some(entries));
            stats.add_request("PutRecords");
            let stale = &stale;
            async move {
                match request.send().await {
                    Ok(output) => Ok(output
                        .records
                        .into_iter()
                        .zip(expected)
                        .map(|(r, expected)| {
                            if expected.is_some_and(|e| r.shard_id.as_deref().is_some_and(|got| got != e)) {
                                stale.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                            r.error_code.map(|code| (code, r.error_message.unwrap_or_default()))
                        })
                        .collect()),
                    Err(err) => Err((classify(&err), describe_sdk_error(&err))),
                }
            }
        })
        .await?;
        if let Some(aggregation) = &mut self.aggregation {
            aggregation.stale |= stale.into_inner();
        }
        Ok(())
    }
}

/// Checks the stream exists (creating it with `--create`) and waits until it takes writes.
async fn ensure_stream(client: &Client, stream: &str, create: &CreateOptions) -> Result<(), SinkError> {
    match client.describe_stream_summary().stream_name(stream).send().await {
        Ok(_) => {}
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
            if !create.create {
                return Err(aws_error(stream, "the stream does not exist; create it, or pass --create (with --shards N)".into()));
            }
            let shards = create.shards.unwrap_or(super::DEFAULT_SHARDS);
            tracing::info!(stream, shards, "creating Kinesis stream");
            client
                .create_stream()
                .stream_name(stream)
                .shard_count(shards as i32)
                .send()
                .await
                .map_err(|e| aws_error(stream, format!("CreateStream failed: {}", describe_sdk_error(&e))))?;
        }
        Err(err) => return Err(aws_error(stream, format!("DescribeStreamSummary failed: {}", describe_sdk_error(&err)))),
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let summary = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .map_err(|e| aws_error(stream, format!("DescribeStreamSummary failed: {}", describe_sdk_error(&e))))?;
        let status = summary.stream_description_summary().map(|s| s.stream_status().clone());
        match status {
            Some(StreamStatus::Active | StreamStatus::Updating) => return Ok(()),
            Some(StreamStatus::Deleting) => return Err(aws_error(stream, "the stream is being deleted".into())),
            _ if tokio::time::Instant::now() > deadline => {
                return Err(aws_error(stream, "the stream did not become ACTIVE within 5 minutes".into()));
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The stream's open shards by hash key range, sorted: where an aggregate of a key goes.
async fn open_shards(client: &Client, stream: &str) -> Result<Vec<(u128, u128, String)>, SinkError> {
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        // The API takes either the stream name or a continuation token, never both.
        let request = match &next_token {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request.send().await.map_err(|e| aws_error(stream, format!("ListShards failed: {}", describe_sdk_error(&e))))?;
        for shard in page.shards() {
            if shard.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_some() {
                continue; // closed by a reshard: takes no records
            }
            let bad = |key: &str| aws_error(stream, format!("ListShards: hash key {key:?} of shard {} is not a 128-bit number", shard.shard_id()));
            let range = shard.hash_key_range().ok_or_else(|| bad("(none)"))?;
            let first = range.starting_hash_key().parse::<u128>().map_err(|_| bad(range.starting_hash_key()))?;
            let last = range.ending_hash_key().parse::<u128>().map_err(|_| bad(range.ending_hash_key()))?;
            shards.push((first, last, shard.shard_id().to_string()));
        }
        match page.next_token() {
            Some(token) => next_token = Some(token.to_string()),
            None => break,
        }
    }
    if shards.is_empty() {
        return Err(aws_error(stream, "ListShards found no open shard".into()));
    }
    shards.sort();
    Ok(shards)
}
