//! Amazon Kinesis Data Streams: `PutRecords` in batches of at most 500 records and 5 MiB,
//! records of at most 1 MiB (data plus partition key). Kinesis-compatible servers do not all
//! enforce these limits (kinesis-local accepts more), so the sink does.

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use kappa_common::aws::describe_sdk_error;

use super::retry::classify;
use super::{CreateOptions, SinkContext, SinkError, send_with_retries};
use crate::input::Event;

pub(super) const MAX_RECORDS: usize = 500;
pub(super) const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;
pub(super) const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Kinesis partition keys are at most 256 characters.
const MAX_KEY_CHARS: usize = 256;

pub struct KinesisSink {
    client: Client,
    stream: String,
    name: String,
    batch: Vec<Event>,
    batch_bytes: usize,
    context: SinkContext,
}

fn aws_error(stream: &str, message: String) -> SinkError {
    SinkError::Aws { service: "kinesis", target: stream.to_string(), message }
}

impl KinesisSink {
    pub async fn open(client: Client, stream: &str, create: &CreateOptions, context: SinkContext) -> Result<KinesisSink, SinkError> {
        ensure_stream(&client, stream, create).await?;
        Ok(KinesisSink { client, stream: stream.to_string(), name: format!("kinesis:{stream}"), batch: Vec::new(), batch_bytes: 0, context })
    }

    pub async fn push(&mut self, mut event: Event) -> Result<(), SinkError> {
        if event.key.chars().count() > MAX_KEY_CHARS {
            // A long key still has to route deterministically; its hash does.
            event.key = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(event.key.as_bytes()));
        }
        let size = event.payload.len() + event.key.len();
        if size > MAX_RECORD_BYTES {
            let reason = format!("event of {size} bytes exceeds the Kinesis record limit of {MAX_RECORD_BYTES} bytes");
            return self.context.undeliverable(&self.name, &event, reason);
        }
        if self.batch.len() == MAX_RECORDS || self.batch_bytes + size > MAX_BATCH_BYTES {
            self.flush().await?;
        }
        self.batch_bytes += size;
        self.batch.push(event);
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<(), SinkError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let (client, stream, stats) = (&self.client, &self.stream, &self.context.stats);
        send_with_retries(&self.name, &self.context, batch, |events: &[Event]| {
            let entries: Vec<PutRecordsRequestEntry> = events
                .iter()
                .map(|e| {
                    PutRecordsRequestEntry::builder().data(Blob::new(e.payload.clone())).partition_key(e.key.clone()).build().expect("data and key are set")
                })
                .collect();
            let request = client.put_records().stream_name(stream).set_records(Some(entries));
            stats.add_request("PutRecords");
            async move {
                match request.send().await {
                    Ok(output) => Ok(output.records.into_iter().map(|r| r.error_code.map(|code| (code, r.error_message.unwrap_or_default()))).collect()),
                    Err(err) => Err((classify(&err), describe_sdk_error(&err))),
                }
            }
        })
        .await
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
