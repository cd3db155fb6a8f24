//! What keeps an SQS source honest while it runs: deletes after commits, visibility renewed
//! while rows wait for a flush (and given back at shutdown), and, for `--until-idle`, the
//! queue's counts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, QueueAttributeName};
use kappa_common::aws::describe_sdk_error;
use tokio::sync::mpsc;

use super::{BATCH, QueueCounts, Shared, deleted_grace};

/// Deletes acknowledged messages, batched by 10, as commits hand them over.
pub(super) async fn delete_loop(shared: Arc<Shared>, mut acks: mpsc::UnboundedReceiver<Vec<String>>) {
    while let Some(ids) = acks.recv().await {
        let mut entries = Vec::with_capacity(ids.len());
        {
            let mut held = shared.held.lock().expect("held lock");
            let mut committed = shared.committed.lock().expect("committed lock");
            for id in ids {
                match held.remove(&id) {
                    Some(h) => entries.push((id, h.receipt)),
                    // Not held: nothing to delete (it cannot happen while receivers run).
                    None => tracing::debug!(message = %id, "acknowledged message is not held"),
                }
            }
            // A message that comes back is deleted on sight.
            committed.extend(entries.iter().map(|(id, _)| (id.clone(), None)));
        }
        delete(&shared, entries).await;
    }
}

/// DeleteMessageBatch in tens, several calls at a time; confirmed ids are reported to the
/// pipeline, failed ones stay in the committed set (deleted when they come back).
pub(super) async fn delete(shared: &Arc<Shared>, entries: Vec<(String, String)>) {
    for_each_batch(entries, |batch| delete_batch(shared.clone(), batch)).await;
}

async fn delete_batch(shared: Arc<Shared>, batch: Vec<(String, String)>) {
    let mut request = shared.client.delete_message_batch().queue_url(&shared.url);
    for (index, (_, receipt)) in batch.iter().enumerate() {
        request = request.entries(DeleteMessageBatchRequestEntry::builder().id(index.to_string()).receipt_handle(receipt).build().expect("id and handle set"));
    }
    let mut confirmed = Vec::new();
    for attempt in 0..5 {
        match request.clone().send().await {
            Ok(out) => {
                for ok in out.successful() {
                    if let Some((id, _)) = ok.id().parse::<usize>().ok().and_then(|i| batch.get(i)) {
                        confirmed.push(id.clone());
                    }
                }
                for failed in out.failed() {
                    tracing::warn!(
                        code = failed.code(),
                        message = failed.message().unwrap_or_default(),
                        "SQS refused a delete; the message will be deleted when it comes back"
                    );
                }
                break;
            }
            Err(e) => {
                tracing::warn!(attempt, "DeleteMessageBatch failed: {}", describe_sdk_error(&e));
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
    }
    shared.stats.add_messages_deleted(confirmed.len() as u64);
    {
        let now = Instant::now();
        let forget_at = now + deleted_grace(&shared.options);
        let mut committed = shared.committed.lock().expect("committed lock");
        committed.retain(|_, forget| forget.is_none_or(|t| t > now));
        for id in &confirmed {
            committed.insert(id.clone(), Some(forget_at));
        }
    }
    shared.deleted.lock().expect("deleted lock").extend(confirmed);
}

/// Batch calls (10 entries each) at most this many at a time: renewing or deleting tens of
/// thousands of held messages one call after another would outlast the visibility timeout.
const PARALLEL_CALLS: usize = 16;

/// Runs `call` on each batch of 10, up to [`PARALLEL_CALLS`] at once; returns when all are done.
async fn for_each_batch<F, Fut>(entries: Vec<(String, String)>, call: F)
where
    F: Fn(Vec<(String, String)>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut running = tokio::task::JoinSet::new();
    for batch in entries.chunks(BATCH) {
        if running.len() >= PARALLEL_CALLS {
            running.join_next().await;
        }
        running.spawn(call(batch.to_vec()));
    }
    while running.join_next().await.is_some() {}
}

/// Polls the queue's counts every second, for [`SqsSource::drained`].
pub(super) async fn watch_queue(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let request = shared
            .client
            .get_queue_attributes()
            .queue_url(&shared.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed);
        match request.send().await {
            Ok(out) => {
                let count = |name: QueueAttributeName| out.attributes().and_then(|a| a.get(&name)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                let counts = QueueCounts {
                    waiting: count(QueueAttributeName::ApproximateNumberOfMessages) + count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
                    not_visible: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
                };
                *shared.counts.lock().expect("counts lock") = Some(counts);
            }
            Err(e) => tracing::warn!("GetQueueAttributes failed: {}", describe_sdk_error(&e)),
        }
    }
}

/// Renews the visibility of held messages every third of the timeout; refreshes the backlog.
pub(super) async fn heartbeat(shared: Arc<Shared>) {
    let timeout = shared.options.visibility_timeout;
    let mut tick = tokio::time::interval(timeout / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        let held: Vec<(String, String)> = shared.held.lock().expect("held lock").iter().map(|(id, h)| (id.clone(), h.receipt.clone())).collect();
        if !held.is_empty() {
            change_visibility(&shared, held, timeout.as_secs() as i32).await;
        }
        let attributes =
            shared.client.get_queue_attributes().queue_url(&shared.url).attribute_names(QueueAttributeName::ApproximateNumberOfMessages).send().await;
        if let Some(n) = attributes.ok().and_then(|out| out.attributes()?.get(&QueueAttributeName::ApproximateNumberOfMessages)?.parse().ok()) {
            shared.backlog.store(n, Ordering::Relaxed);
        }
    }
}

pub(super) async fn change_visibility(shared: &Arc<Shared>, messages: Vec<(String, String)>, seconds: i32) {
    for_each_batch(messages, |batch| change_visibility_batch(shared.clone(), batch, seconds)).await;
}

async fn change_visibility_batch(shared: Arc<Shared>, batch: Vec<(String, String)>, seconds: i32) {
    let mut request = shared.client.change_message_visibility_batch().queue_url(&shared.url);
    for (index, (_, receipt)) in batch.iter().enumerate() {
        request = request.entries(
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(index.to_string())
                .receipt_handle(receipt)
                .visibility_timeout(seconds)
                .build()
                .expect("id and handle set"),
        );
    }
    match request.send().await {
        Ok(out) if !out.failed().is_empty() => {
            tracing::warn!(failed = out.failed().len(), "ChangeMessageVisibilityBatch: some messages were not changed (redelivered, or deleted)")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("ChangeMessageVisibilityBatch failed: {}", describe_sdk_error(&e)),
    }
}
