//! Amazon SQS: `SendMessageBatch` of at most 10 messages and 256 KiB. A message carries as many
//! events as fit in `--max-message-bytes` (64 KiB by default, the unit SQS bills by) as NDJSON,
//! so a million 200-byte rows cost about 3,000 billed requests instead of 100,000 at one row
//! per message; `--rows-per-message N` caps the events per message.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use kappa_common::aws::describe_sdk_error;

use super::retry::classify;
use super::{Entry, SinkContext, SinkError, SinkOptions, send_with_retries};
use crate::input::Event;

pub(super) const MAX_ENTRIES: usize = 10;
/// The payload of one SendMessageBatch that every queue accepts.
const BATCH_BYTES: usize = 262_144;
/// SQS bills each 64 KiB chunk of a request's payload as one request.
const BILLING_CHUNK: usize = 65_536;

/// One SQS message: its events and the body they make.
#[derive(Debug)]
pub(super) struct Message {
    events: Vec<Event>,
    body: String,
}

impl Entry for Message {
    fn events(&self) -> &[Event] {
        &self.events
    }
}

pub struct SqsSink {
    client: Client,
    queue_url: String,
    name: String,
    rows_per_message: usize,
    max_bytes: usize,
    batch_bytes_limit: usize,
    /// The message being packed.
    current: Vec<Event>,
    current_bytes: usize,
    /// Messages ready for the next batch call.
    batch: Vec<Message>,
    batch_bytes: usize,
    context: SinkContext,
}

fn aws_error(queue: &str, message: String) -> SinkError {
    SinkError::Aws { service: "sqs", target: queue.to_string(), message }
}

impl SqsSink {
    pub async fn open(client: Client, queue: &str, options: &SinkOptions, context: SinkContext) -> Result<SqsSink, SinkError> {
        let queue_url = resolve_queue(&client, queue, options.create.create).await?;
        Ok(SqsSink {
            client,
            queue_url,
            name: format!("sqs:{queue}"),
            rows_per_message: options.rows_per_message.unwrap_or(usize::MAX).max(1),
            max_bytes: options.max_message_bytes,
            batch_bytes_limit: options.max_message_bytes.max(BATCH_BYTES),
            current: Vec::new(),
            current_bytes: 0,
            batch: Vec::new(),
            batch_bytes: 0,
            context,
        })
    }

    pub async fn push(&mut self, event: Event) -> Result<(), SinkError> {
        let size = event.payload.len();
        if size > self.max_bytes {
            let reason = format!("event of {size} bytes exceeds the SQS message limit of {} bytes (--max-message-bytes)", self.max_bytes);
            return self.context.undeliverable(&self.name, &event, reason);
        }
        // +1 for the newline that separates packed events.
        let separator = usize::from(!self.current.is_empty());
        if self.current.len() == self.rows_per_message || self.current_bytes + separator + size > self.max_bytes {
            self.close_message().await?;
        }
        self.current_bytes += usize::from(!self.current.is_empty()) + size;
        self.current.push(event);
        Ok(())
    }

    /// Moves the packed message into the batch, sending the batch first if it is full.
    async fn close_message(&mut self) -> Result<(), SinkError> {
        if self.current.is_empty() {
            return Ok(());
        }
        if self.batch.len() == MAX_ENTRIES || self.batch_bytes + self.current_bytes > self.batch_bytes_limit {
            self.send_batch().await?;
        }
        let events = std::mem::take(&mut self.current);
        let mut body = String::with_capacity(self.current_bytes);
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                body.push('\n');
            }
            // Payloads are JSON the encoder wrote: valid UTF-8 by construction.
            body.push_str(std::str::from_utf8(&event.payload).expect("events are UTF-8 JSON"));
        }
        self.batch_bytes += body.len();
        self.current_bytes = 0;
        self.batch.push(Message { events, body });
        Ok(())
    }

    async fn send_batch(&mut self) -> Result<(), SinkError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let (client, queue_url, stats) = (&self.client, &self.queue_url, &self.context.stats);
        let fifo = queue_url.ends_with(".fifo");
        send_with_retries(&self.name, &self.context, batch, |messages: &[Message]| {
            let entries: Vec<SendMessageBatchRequestEntry> = messages
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let mut entry = SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(m.body.clone());
                    if fifo {
                        // FIFO queues order by group and drop a repeated deduplication id for
                        // five minutes, which also absorbs a retried send.
                        let dedup = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(m.body.as_bytes()));
                        entry = entry.message_group_id(m.events[0].key.clone()).message_deduplication_id(dedup);
                    }
                    entry.build().expect("id and body are set")
                })
                .collect();
            let count = entries.len();
            let payload: usize = messages.iter().map(|m| m.body.len()).sum();
            let request = client.send_message_batch().queue_url(queue_url).set_entries(Some(entries));
            stats.add_request("SendMessageBatch");
            stats.add_billed_requests(payload.div_ceil(BILLING_CHUNK).max(1) as u64);
            async move {
                let output = request.send().await.map_err(|err| (classify(&err), describe_sdk_error(&err)))?;
                // Every entry must be answered, as a success or a failure; one missing from both
                // lists is retried rather than assumed sent.
                let unanswered = || Some(("InternalError".to_string(), "not in the SendMessageBatch response".to_string()));
                let mut results: Vec<Option<(String, String)>> = vec![unanswered(); count];
                for ok in &output.successful {
                    if let Some(slot) = ok.id.parse::<usize>().ok().and_then(|i| results.get_mut(i)) {
                        *slot = None;
                    }
                }
                for failed in output.failed {
                    let index: usize = failed.id.parse().unwrap_or(usize::MAX);
                    if let Some(slot) = results.get_mut(index) {
                        // A sender fault (bad body, bad attribute) will fail again; give it a
                        // code that is not retried.
                        let code = if failed.sender_fault { format!("SenderFault.{}", failed.code) } else { failed.code };
                        *slot = Some((code, failed.message.unwrap_or_default()));
                    }
                }
                Ok(results)
            }
        })
        .await
    }

    pub async fn flush(&mut self) -> Result<(), SinkError> {
        self.close_message().await?;
        self.send_batch().await
    }
}

/// A queue URL from a name (GetQueueUrl, creating the queue with `--create`) or as given.
async fn resolve_queue(client: &Client, queue: &str, create: bool) -> Result<String, SinkError> {
    if queue.starts_with("http://") || queue.starts_with("https://") {
        client
            .get_queue_attributes()
            .queue_url(queue)
            .send()
            .await
            .map_err(|e| aws_error(queue, format!("the queue URL does not answer: {}", describe_sdk_error(&e))))?;
        return Ok(queue.to_string());
    }
    match client.get_queue_url().queue_name(queue).send().await {
        Ok(output) => Ok(output.queue_url.unwrap_or_default()),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_queue_does_not_exist()) => {
            if !create {
                return Err(aws_error(queue, "the queue does not exist; create it, or pass --create".into()));
            }
            tracing::info!(queue, "creating SQS queue");
            let mut request = client.create_queue().queue_name(queue);
            if queue.ends_with(".fifo") {
                request = request
                    .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
                    .attributes(aws_sdk_sqs::types::QueueAttributeName::ContentBasedDeduplication, "true");
            }
            let output = request.send().await.map_err(|e| aws_error(queue, format!("CreateQueue failed: {}", describe_sdk_error(&e))))?;
            Ok(output.queue_url.unwrap_or_default())
        }
        Err(err) => Err(aws_error(queue, format!("GetQueueUrl failed: {}", describe_sdk_error(&err)))),
    }
}
