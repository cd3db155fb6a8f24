//! Raw NDJSON objects under a prefix as a source, for replay: the consumer's own archive
//! (`--archive`), or what Firehose delivered to S3 (newline-delimited JSON, as the producer's
//! Firehose sink sends it).
//!
//! Objects are read in key order — by arrival hour in both layouts — one event per line, `.zst`
//! objects decompressed. The events are numbered in one shard, `raw`, in that order, so the
//! same prefix replays the same way every time. An event's arrival time is the hour its key
//! names (`year=…/month=…/day=…/hour=…/` or Firehose's `YYYY/MM/DD/HH/`).

use std::time::Duration;

use kappa_common::event::SequenceNumber;
use kappa_common::store::Store;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::{Chunk, ChunkReceiver, SourceError};
use crate::archive::hour_of_key;
use crate::event::SourceEvent;

/// The shard raw events are numbered in.
pub const SHARD: &str = "raw";
const EVENTS_PER_CHUNK: usize = 10_000;

pub struct RawSource {
    chunks: ChunkReceiver,
    task: tokio::task::JoinHandle<()>,
    objects: usize,
}

impl RawSource {
    /// Lists the objects under `prefix` (failing at start if there are none) and starts reading.
    /// Objects for which `uncommitted` says so are left out: archive objects of a flush that
    /// crashed before its commit.
    /// Events up to `after` (a replay continuing its generation) are numbered but not read.
    pub fn start(
        runtime: Handle,
        store: Store,
        prefix: String,
        shard: u32,
        after: Option<SequenceNumber>,
        uncommitted: impl Fn(&str) -> bool,
    ) -> Result<RawSource, SourceError> {
        let fail = |message: String| SourceError::Raw { prefix: prefix.clone(), message };
        let mut objects = runtime.block_on(store.list(&prefix)).map_err(|e| fail(e.to_string()))?;
        objects.retain(|o| !o.path.rsplit('/').next().unwrap_or_default().starts_with('.'));
        let listed = objects.len();
        objects.retain(|o| !uncommitted(&o.path));
        if objects.len() < listed {
            tracing::warn!(skipped = listed - objects.len(), "skipping archive objects no commit names (a flush that crashed before its commit)");
        }
        objects.sort_by(|a, b| a.path.cmp(&b.path));
        if objects.is_empty() {
            return Err(fail("no objects there; point --from raw: at the archive's <table>/raw prefix or at Firehose's S3 prefix".into()));
        }
        let count = objects.len();
        let (sender, chunks) = mpsc::channel(4);
        let task = runtime.spawn(async move {
            let mut seq: Option<SequenceNumber> = None;
            for object in objects {
                let data = match store.get(&object.path).await {
                    Ok(data) => data,
                    Err(e) => {
                        let _ = sender.send(Err(SourceError::Raw { prefix: object.path.clone(), message: e.to_string() })).await;
                        return;
                    }
                };
                let text = if object.path.ends_with(".zst") {
                    match zstd::decode_all(data.as_ref()) {
                        Ok(text) => text,
                        Err(e) => {
                            let _ = sender.send(Err(SourceError::Raw { prefix: object.path.clone(), message: format!("not zstd: {e}") })).await;
                            return;
                        }
                    }
                } else {
                    data.to_vec()
                };
                let text = bytes::Bytes::from(text);
                let arrival_ms = hour_of_key(&object.path).unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
                let mut chunk = Chunk::default();
                for line in text.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).map(|l| text.slice_ref(l)) {
                    let next = seq.map_or(SequenceNumber::from(0), SequenceNumber::next);
                    seq = Some(next);
                    if after.is_some_and(|after| next <= after) {
                        continue;
                    }
                    chunk.events.push(SourceEvent::object(shard, next, arrival_ms, line));
                    if chunk.events.len() >= EVENTS_PER_CHUNK && sender.send(Ok(std::mem::take(&mut chunk))).await.is_err() {
                        return;
                    }
                }
                if !chunk.events.is_empty() && sender.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        });
        Ok(RawSource { chunks: ChunkReceiver::new(runtime, chunks), task, objects: count })
    }

    /// Objects to read.
    pub fn objects(&self) -> usize {
        self.objects
    }

    pub fn next_chunk(&mut self, timeout: Duration) -> Result<Option<Chunk>, SourceError> {
        self.chunks.next(timeout)
    }

    pub fn finished(&self) -> bool {
        self.chunks.finished()
    }

    pub fn stop(&mut self) {
        self.chunks.close();
        self.task.abort();
    }
}
