//! Chunks from the source into the pipeline, decoded ahead on worker threads.
//!
//! Decoding JSON into Arrow is most of the consumer's work, and it needs nothing but the chunk
//! and the schema. So while the pipeline routes one chunk, the next few are decoded on rayon's
//! pool (one thread per core, each chunk's shards in parallel): both cores work. The pipeline
//! still takes the chunks one at a time in source order, so routing, flush cuts and commits are
//! those of a sequential run, and the lake is the same bytes. A chunk decoded under a schema that an earlier chunk has since
//! grown is simply decoded again by the pipeline.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};
use std::time::Duration;

use crate::decode::Predecoded;
use crate::event::SourceEvent;
use crate::pipeline::Pipeline;

use crate::error::ConsumerError;
use crate::source::{Chunk, Source};

/// Chunks read and not yet ingested: enough to keep every worker busy while the pipeline
/// routes or commits, few enough to bound memory. Each is up to 32,768 events from the log
/// (8,192 per shard), its shards' runs decoded in parallel. Measured with the chunks really in
/// flight (alternating runs, 2026-11-27): 10M wide rows by day took 29.43 s with 2 and 28.45 s
/// with 3; 1M of them by hour peaked at 192–198 MiB RSS with 2, 206–213 MiB with 3 and
/// 228–239 MiB with 4.
const DEPTH: usize = 3;

/// The chunks between the source and the pipeline, oldest first.
#[derive(Default)]
pub struct Feed {
    pending: VecDeque<Pending>,
}

struct Pending {
    events: Arc<Vec<SourceEvent>>,
    acks: Vec<String>,
    ack_starts: Vec<Option<kappa_common::event::SequenceNumber>>,
    rejects: Vec<(SourceEvent, String)>,
    drained: Vec<String>,
    decoded: Decoding,
}

/// A chunk's rows, decoded ahead.
enum Decoding {
    /// A worker's answer to come.
    Running(Receiver<Predecoded>),
    /// Its answer (none for a chunk without events, or a worker that failed to answer).
    Done(Option<Predecoded>),
}

impl Pending {
    /// True while a worker is still decoding the chunk.
    fn still_decoding(&mut self) -> bool {
        let Decoding::Running(receiver) = &self.decoded else { return false };
        match receiver.try_recv() {
            Ok(rows) => self.decoded = Decoding::Done(Some(rows)),
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Disconnected) => self.decoded = Decoding::Done(None),
        }
        false
    }
}

/// How long the pipeline waits for the source's next chunk before it looks again whether the
/// oldest chunk's rows are ready: what their ingest may start late by.
const SOURCE_POLL: Duration = Duration::from_millis(1);

impl Feed {
    pub fn new() -> Feed {
        Feed::default()
    }

    /// True when no chunk waits between the source and the pipeline.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Reads what the source has ready (waiting up to `wait` only when nothing is pending)
    /// and starts decoding it, then ingests the oldest chunk. False if there was none.
    pub fn step(&mut self, source: &mut Source, pipeline: &mut Pipeline, wait: Duration) -> Result<bool, ConsumerError> {
        while self.pending.len() < DEPTH {
            // While the oldest chunk is still being decoded the pipeline has nothing to do but
            // wait: it takes the source's next chunks meanwhile, as they come, so that the
            // workers always have the next ones to decode. Sources hand chunks over rather than
            // queue them (memory), and read the next one only then: a pipeline that took what
            // was ready and then waited for the oldest chunk's rows found the next one not yet
            // read, and kept one chunk in flight (10M wide rows: 304 of 305 chunks were the
            // only one pending, and the workers were idle 40% of the time).
            let oldest_busy = self.pending.front_mut().map(Pending::still_decoding);
            let timeout = match oldest_busy {
                None => wait,
                Some(true) => SOURCE_POLL,
                Some(false) => Duration::ZERO,
            };
            match source.next_chunk(timeout)? {
                Some(chunk) => self.submit(chunk, pipeline)?,
                None if oldest_busy == Some(true) && !source.finished() => continue,
                None => break,
            }
        }
        match self.pending.pop_front() {
            Some(pending) => {
                ingest(pending, pipeline)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Ingests every pending chunk: before the final flush, so what was read is committed.
    pub fn drain(&mut self, pipeline: &mut Pipeline) -> Result<(), ConsumerError> {
        while let Some(pending) = self.pending.pop_front() {
            ingest(pending, pipeline)?;
        }
        Ok(())
    }

    fn submit(&mut self, chunk: Chunk, pipeline: &mut Pipeline) -> Result<(), ConsumerError> {
        // New shards take their indices in the order the source announced them, before any
        // event of theirs is routed.
        for shard in chunk.new_shards {
            pipeline.add_shard(shard);
        }
        if !pipeline.has_schema() && !chunk.events.is_empty() {
            pipeline.set_initial_schema(infer(&chunk.events)?)?;
        }
        let events = Arc::new(chunk.events);
        let decoded = (!events.is_empty()).then(|| {
            let (sender, receiver) = sync_channel(1);
            let (plan, events) = (pipeline.decode_plan(), events.clone());
            rayon::spawn(move || {
                let decoded = plan.run(&events);
                drop(events);
                let _ = sender.send(decoded);
            });
            receiver
        });
        let decoded = decoded.map_or(Decoding::Done(None), Decoding::Running);
        self.pending.push_back(Pending { events, acks: chunk.acks, ack_starts: chunk.ack_starts, rejects: chunk.rejects, drained: chunk.drained, decoded });
        Ok(())
    }
}

fn ingest(mut pending: Pending, pipeline: &mut Pipeline) -> Result<(), ConsumerError> {
    // A worker that failed to answer only costs a decode here.
    let mut predecoded = match std::mem::replace(&mut pending.decoded, Decoding::Done(None)) {
        Decoding::Running(receiver) => receiver.recv().ok(),
        Decoding::Done(rows) => rows,
    };
    if drop_committed(&mut pending, pipeline) {
        predecoded = None;
    }
    pipeline.acks().add_starts(&pending.acks, &pending.ack_starts);
    pipeline.acks().add(pending.acks);
    pipeline.reject(&pending.rejects);
    pipeline.ingest(&pending.events, predecoded)?;
    pipeline.note_drained(pending.drained);
    Ok(())
}

/// Takes out of `pending` the messages a commit covers already — another consumer's of the
/// same queue, learnt after the source took them in — and hands them to be deleted: a message
/// SQS delivered to two consumers is stored once. True if events went (what was decoded ahead
/// no longer matches them).
fn drop_committed(pending: &mut Pending, pipeline: &mut Pipeline) -> bool {
    let remembered = pipeline.acks().remembered();
    let covered: Vec<bool> = pending.acks.iter().map(|ack| remembered.contains_key(ack)).collect();
    if !covered.contains(&true) {
        return false;
    }
    // Each message's events follow its first one, in order.
    let starts: Vec<(kappa_common::event::SequenceNumber, usize)> =
        pending.ack_starts.iter().enumerate().filter_map(|(i, start)| start.map(|s| (s, i))).collect();
    let dropped = |seq: kappa_common::event::SequenceNumber| starts.iter().rev().find(|(start, _)| *start <= seq).is_some_and(|(_, i)| covered[*i]);
    let events: Vec<SourceEvent> = pending.events.iter().filter(|e| !dropped(e.seq)).cloned().collect();
    let removed = pending.events.len() - events.len();
    pending.events = Arc::new(events);
    pending.rejects.retain(|(event, _)| !dropped(event.seq));
    let mut repeated = Vec::new();
    let (mut acks, mut ack_starts) = (Vec::new(), Vec::new());
    for ((ack, start), covered) in pending.acks.drain(..).zip(pending.ack_starts.drain(..)).zip(covered) {
        if covered {
            repeated.push(ack);
        } else {
            acks.push(ack);
            ack_starts.push(start);
        }
    }
    (pending.acks, pending.ack_starts) = (acks, ack_starts);
    tracing::info!(messages = repeated.len(), events = removed, "messages a commit covers already came again: deleting them, not storing their rows again");
    pipeline.acks().redelivered(repeated);
    removed > 0
}

/// Infers a new table's schema from its first chunk of events (the identity member is not a
/// column): the types the producer gave the members where the events carry them (shaped
/// events of the embedded log), else the types the values call for over the whole chunk (as
/// DuckDB's JSON reader infers: ISO dates and timestamps in strings are dates and timestamps,
/// integers beyond int64 decimals). Members only ever null wait for a value to show their type.
pub fn infer(chunk: &[SourceEvent]) -> Result<kappa_common::schema::TableSchema, ConsumerError> {
    let objects: Vec<std::borrow::Cow<'_, [u8]>> = chunk.iter().map(SourceEvent::json).collect();
    let payloads: Vec<&[u8]> = objects.iter().map(|o| o.as_ref()).collect();
    let shapes: Vec<_> = chunk.iter().map(|e| e.shape.clone()).collect();
    let growth = crate::decode::grow(&[], &[], &[], &payloads, &shapes);
    let schema = kappa_common::schema::TableSchema::new(growth.columns).map_err(|e| {
        let why = if growth.null_only.is_empty() { e.to_string() } else { format!("{e} (every member of the first events is null)") };
        ConsumerError::Inference(why)
    })?;
    tracing::info!(columns = %schema.fields.iter().map(|c| format!("{}:{}", c.name, c.column_type)).collect::<Vec<_>>().join(","), "schema inferred from the first events");
    Ok(schema)
}
