//! Amazon Data Firehose: `PutRecordBatch` of at most 500 records and 4 MiB, records of at most
//! 1,000 KiB. Firehose concatenates records as sent, so each ends with a newline: the objects it
//! delivers to S3 are then NDJSON that Athena, the consumer and replay can read.

use aws_sdk_firehose::Client;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use kappa_common::aws::describe_sdk_error;

use super::retry::classify;
use super::{SinkContext, SinkError, send_with_retries};
use crate::input::Event;

pub(super) const MAX_RECORDS: usize = 500;
pub(super) const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
pub(super) const MAX_RECORD_BYTES: usize = 1000 * 1024;

pub struct FirehoseSink {
    client: Client,
    stream: String,
    name: String,
    batch: Vec<Event>,
    batch_bytes: usize,
    context: SinkContext,
}

fn aws_error(stream: &str, message: String) -> SinkError {
    SinkError::Aws { service: "firehose", target: stream.to_string(), message }
}

impl FirehoseSink {
    pub async fn open(client: Client, stream: &str, context: SinkContext) -> Result<FirehoseSink, SinkError> {
        client.describe_delivery_stream().delivery_stream_name(stream).send().await.map_err(|err| {
            let message = if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) {
                "the delivery stream does not exist; create it (with its S3 destination) first".to_string()
            } else {
                format!("DescribeDeliveryStream failed: {}", describe_sdk_error(&err))
            };
            aws_error(stream, message)
        })?;
        Ok(FirehoseSink { client, stream: stream.to_string(), name: format!("firehose:{stream}"), batch: Vec::new(), batch_bytes: 0, context })
    }

    pub async fn push(&mut self, mut event: Event) -> Result<(), SinkError> {
        event.payload.push(b'\n');
        let size = event.payload.len();
        if size > MAX_RECORD_BYTES {
            let reason = format!("event of {size} bytes exceeds the Firehose record limit of {MAX_RECORD_BYTES} bytes");
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
            let records: Vec<Record> = events.iter().map(|e| Record::builder().data(Blob::new(e.payload.clone())).build().expect("data is set")).collect();
            let request = client.put_record_batch().delivery_stream_name(stream).set_records(Some(records));
            stats.add_request("PutRecordBatch");
            async move {
                match request.send().await {
                    Ok(output) => {
                        Ok(output.request_responses.into_iter().map(|r| r.error_code.map(|code| (code, r.error_message.unwrap_or_default()))).collect())
                    }
                    Err(err) => Err((classify(&err), describe_sdk_error(&err))),
                }
            }
        })
        .await
    }
}
