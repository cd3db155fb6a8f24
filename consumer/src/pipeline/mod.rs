//! The consumer's core: decode → partition → buffer → encode → store → commit.
//!
//! Driven from one thread, chunk after chunk in source order; the CPU work around it runs on
//! every core: chunks are decoded ahead ([`crate::feed`]) and flushes are encoded and written on
//! a commit thread ([`crate::commit`]). Storage calls run on the runtime through a handle.
//! Replay drives the same pipeline from another source.
//!
//! Exactly once, step by step:
//! 1. An event whose partition already holds its position (per the last commit) is skipped:
//!    after a restart the source re-reads from the safe resume point, which may lie before
//!    positions some partitions already wrote.
//! 2. An event seen recently by identity is a duplicate delivery and is dropped.
//! 3. Buffers are cut at the exact event where a row or byte count is reached, written under a
//!    name made of their shard and positions, and only then committed.
//! 4. The commit records, per shard, where to resume: after the last position read, or, while a
//!    buffer still holds events of the shard, after the position just before the earliest of
//!    them. Always a position the source really delivered, so Kinesis accepts it as
//!    `AFTER_SEQUENCE_NUMBER`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};
use kappa_common::event::SequenceNumber;
use kappa_common::schema::TableSchema;
use tokio::runtime::Handle;

mod checks;
mod flush;
mod idle;
mod memory;
mod route;

use self::route::{ChunkEvents, Opening, PieceRows, Routed, RowSource};

use self::checks::{QuarantineRatio, check_event_time};
use self::flush::{Hold, late};

use crate::acks::AckLedger;
use crate::buffer::{Buffer, BufferKey, Cut, Rows};
use crate::commit::InFlight;
use crate::decode::{DecodePlan, Decoder, Piece, Predecoded};
use crate::dedup::Dedup;
pub use crate::error::PipelineError;
pub use crate::event::SourceEvent;
use crate::partition::{Partition, row_partitions};
pub use crate::settings::PipelineConfig;
use crate::spill::SpillDir;
use crate::stats::Stats;
use kappa_table::{Table, TableError, TableState};

/// A quarantined event waiting for the next commit.
#[derive(serde::Serialize)]
struct QuarantineRecord {
    shard: String,
    seq: String,
    arrival_ms: i64,
    reason: String,
    payload: String,
    /// `base64` when the payload is bytes that are not text (a damaged KPL aggregate).
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_encoding: Option<&'static str>,
}

pub struct Pipeline {
    table: Table,
    runtime: Handle,
    config: PipelineConfig,
    decoder: Decoder,
    shards: Vec<String>,
    /// Per shard: the last position delivered (or resumed after).
    last_read: Vec<Option<SequenceNumber>>,
    buffers: BTreeMap<BufferKey, Buffer>,
    /// Buffers cut by a trigger and waiting to be written.
    sealed: Vec<(BufferKey, Buffer)>,
    quarantine: Vec<QuarantineRecord>,
    dedup: Dedup,
    /// Per shard: events delivered in this run, numbering them for [`Dedup`].
    read_count: Vec<u64>,
    /// Per shard: read to its end this run (see [`Pipeline::note_drained`]).
    finished: Vec<bool>,
    state: TableState,
    acks: AckLedger,
    /// Rows routed to each partition in this run: what a replay verifies its
    /// generation against.
    routed: BTreeMap<Partition, u64>,
    /// The raw archive, with `--archive`.
    archive: Option<crate::archive::Archive>,
    /// The schema version last stored in the table.
    stored_schema_version: u32,
    /// The commit being written in the background, if any.
    in_flight: Option<InFlight>,
    stats: Arc<Stats>,
    /// The generation's layout, until the first commit with rows records it: a run that
    /// commits no rows must not lock the table to its (perhaps mistyped) settings.
    unrecorded_layout: Option<kappa_table::Layout>,
    quarantine_ratio: QuarantineRatio,
    spill: SpillDir,
    /// Per shard, with `--partition-idle`: the latest event time routed (ms), and its open
    /// buffers' closings (see [`idle`]).
    horizon: Vec<i64>,
    idle: Vec<idle::IdleIndex>,
    /// Chunks reordered by buffer (see [`RowSource::Gathered`]): alive while a buffer holds
    /// rows of them, and their memory.
    gathered: Vec<(std::sync::Weak<RecordBatch>, usize)>,
    /// The consumer's record among the table's writers (`None` for a replay's generation).
    writer: Option<kappa_table::writers::Writer>,
    /// Shards whose last event has been ingested (closed by resharding), not yet taken.
    drained: Vec<String>,
    /// A consumer competing for an SQS queue: how long another one's messages are remembered.
    peer_grace_ms: i64,
}

/// The writer kind (`_kappa/writers/`) of a consumer that shares the shards through leases.
pub const LEASED_WRITER: &str = "consumer --leases";

fn seq_of(text: &str) -> Option<SequenceNumber> {
    text.parse().ok()
}

impl Pipeline {
    /// Opens the pipeline on a table: loads the commit log, removes what no commit names, and
    /// settles the schema (the table's, else `schema`, else inferred from the first events).
    pub fn open(
        table: Table,
        runtime: Handle,
        config: PipelineConfig,
        shards: Vec<String>,
        schema: Option<TableSchema>,
        stats: Arc<Stats>,
    ) -> Result<(Pipeline, Option<TableSchema>), PipelineError> {
        let layout = layout_of(&config);
        // A table re-partitioned by another tool is refused before anything is read.
        runtime.block_on(table.check_layout(&layout))?;
        let unrecorded_layout = if runtime.block_on(table.layout())?.is_some() {
            runtime.block_on(table.settle_layout(&layout))?;
            None
        } else {
            Some(layout)
        };
        let mut state = runtime.block_on(table.load_state())?;
        // A consumer says it stores `part-` files in its generation before each commit: another
        // consumer's start (a rolling deploy overlapping this run) must not delete them as an
        // interrupted flush's a moment before this one commits them.
        let writer = match table.is_live() {
            true => runtime.block_on(async {
                // Workers sharing the shards through leases say so: a consumer without leases
                // must not run beside them (see `crate::run`).
                let kind = if table.is_leased() { LEASED_WRITER } else { "consumer" };
                let writer = kappa_table::writers::Writer::register(table.store(), table.name(), kind, None).await?;
                writer.flushes_into(table.generation()).await?;
                Ok::<_, TableError>(Some(writer))
            })?,
            false => None,
        };
        let removed = runtime.block_on(table.remove_uncommitted(&state))?;
        if removed > 0 {
            tracing::warn!(removed, "removed objects of an interrupted flush; they will be written again");
        }
        // The committed file list served that cleanup alone. Kept and extended by every
        // commit (files compaction replaced were never taken out), it was the one thing a
        // follower's heap gained per commit: ~1 KiB, 5 MiB over the soak's 5,000 commits.
        state.files = Default::default();
        // The Delta log's schema is the truth (another writer may have added a column, and a
        // table written before timestamps were UTC has `timestamp_ntz` ones); the stored
        // versions add what a commit has not carried yet.
        let stored = runtime.block_on(table.latest_schema())?;
        let live = runtime.block_on(table.live_schema())?;
        let (decoder, stored_version, known) = match (stored, live, schema) {
            (Some((version, stored)), live, _) => {
                let schema = live.map_or_else(|| stored.clone(), |live| follow_live(&stored, live));
                let next = if schema == stored { version } else { version + 1 };
                (Decoder::new(schema.clone(), next), version, Some(schema))
            }
            (None, Some(live), _) => (Decoder::new(live.clone(), 1), 0, Some(live)),
            (None, None, Some(given)) => (Decoder::new(given.clone(), 1), 0, Some(given)),
            (None, None, None) => (Decoder::new(placeholder_schema(), 0), 0, None),
        };
        if let (Some(schema), Some((column, format))) = (&known, &config.event_time) {
            check_event_time(schema, column, format)?;
        }
        let mut decoder = decoder;
        decoder.set_partition_columns(&runtime.block_on(table.partition_column_names())?);
        let last_read = shards.iter().map(|s| state.resume.get(s).and_then(|p| seq_of(p))).collect();
        let acks = AckLedger::new(std::mem::take(&mut state.unacknowledged));
        let mut dedup = Dedup::new(config.dedup_window);
        dedup.load(&std::mem::take(&mut state.seen)).map_err(|reason| TableError::Invalid { table: table.name().to_string(), reason })?;
        for more in std::mem::take(&mut state.more_seen) {
            dedup.load_more(&more).map_err(|reason| TableError::Invalid { table: table.name().to_string(), reason })?;
        }
        let read_count = vec![0; shards.len()];
        // Keyed by where the table really is, not by the --lake string as typed.
        let location = format!("{}{}", kappa_table::location(table.store(), table.name())?.url, table.generation());
        let spill = SpillDir::open(&config.spill_dir, table.name(), &location)?;
        let horizon = shards.iter().map(|s| state.horizons.get(s).copied().unwrap_or(i64::MIN)).collect();
        let idle = shards.iter().map(|_| idle::IdleIndex::default()).collect();
        let pipeline = Pipeline {
            writer,
            table,
            runtime,
            config: config.clone(),
            decoder,
            shards,
            last_read,
            buffers: BTreeMap::new(),
            sealed: Vec::new(),
            quarantine: Vec::new(),
            dedup,
            finished: vec![false; read_count.len()],
            read_count,
            state,
            acks,
            routed: BTreeMap::new(),
            archive: None,
            stored_schema_version: stored_version,
            in_flight: None,
            stats,
            unrecorded_layout,
            quarantine_ratio: QuarantineRatio::new(config.quarantine_limit),
            spill,
            horizon,
            idle,
            gathered: Vec::new(),
            drained: Vec::new(),
            peer_grace_ms: 0,
        };
        Ok((pipeline, known))
    }

    /// A consumer competing for an SQS queue (see `crate::claims`): other consumers' messages
    /// are remembered for `grace` after their commit.
    pub fn set_peer_grace(&mut self, grace: std::time::Duration) {
        self.peer_grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    }

    /// Sets the schema when none was stored or given (inferred by the caller from the first
    /// events).
    pub fn set_initial_schema(&mut self, schema: TableSchema) -> Result<(), PipelineError> {
        if let Some((column, format)) = &self.config.event_time {
            check_event_time(&schema, column, format)?;
        }
        self.decoder = Decoder::new(schema, 1);
        Ok(())
    }

    /// The layout this run writes: its granularity and event-time column.
    pub(crate) fn layout(&self) -> kappa_table::Layout {
        layout_of(&self.config)
    }

    pub fn has_schema(&self) -> bool {
        self.decoder.version() > 0
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Withdraws the consumer's writer record: the run is over (what it stored is committed,
    /// or left for the next start to remove).
    pub fn close(&mut self) {
        if let Some(writer) = self.writer.take()
            && let Err(e) = self.runtime.block_on(writer.finish())
        {
            tracing::warn!(error = %e, "could not remove this consumer's writer record; it goes stale once the process exits");
        }
    }

    /// Ends the pipeline without flushing: waits for a commit in flight (whatever its outcome:
    /// a leased worker that lost a shard drops the rest, and re-reads it from the table), then
    /// closes. What is buffered is dropped.
    pub fn abandon(&mut self) {
        if let Err(e) = self.finish_commit() {
            tracing::info!(error = %e, "the commit in flight was not made; its rows are read again");
        }
        self.close();
    }

    /// Shards read to their end: every event of theirs was ingested.
    pub fn note_drained(&mut self, shards: Vec<String>) {
        for shard in &shards {
            if let Some(index) = self.shards.iter().position(|s| s == shard) {
                self.finished[index] = true;
            }
        }
        self.drained.extend(shards);
    }

    /// The shards read to their end since the last call.
    pub fn take_drained(&mut self) -> Vec<String> {
        std::mem::take(&mut self.drained)
    }

    pub fn state(&self) -> &TableState {
        &self.state
    }

    /// The position after which each shard is read (None: from its beginning).
    pub fn resume_after(&self, shard: u32) -> Option<SequenceNumber> {
        self.state.resume.get(&self.shards[shard as usize]).and_then(|s| seq_of(s))
    }

    /// The last position delivered for a shard (or resumed after).
    pub fn last_read(&self, shard: u32) -> Option<SequenceNumber> {
        self.last_read[shard as usize]
    }

    /// Adds a shard (one a source discovered, such as a Kinesis child shard); returns its index.
    pub fn add_shard(&mut self, name: String) -> u32 {
        self.last_read.push(self.state.resume.get(&name).and_then(|p| seq_of(p)));
        self.read_count.push(0);
        self.finished.push(false);
        self.horizon.push(self.state.horizons.get(&name).copied().unwrap_or(i64::MIN));
        self.idle.push(idle::IdleIndex::default());
        self.shards.push(name);
        (self.shards.len() - 1) as u32
    }

    /// Also archives every event as it arrived (`--archive`), in the same commits; deletes
    /// archive objects of flushes that crashed before their commit.
    pub fn set_archive(&mut self, store: kappa_common::store::Store) -> Result<(), PipelineError> {
        // Several writers of the table (leased workers, competing consumers) number their
        // commits each on their own: their objects are named apart, and never judged by number.
        let archive = crate::archive::Archive::new(store, self.table.name(), &self.state.archive_positions).with_tag(self.table.writer_tag());
        // Another consumer still running (a restart overlapping it) may be about to commit the
        // archive objects past our last commit: they are left for a later start.
        let host = kappa_table::writers::host_name();
        let others = self
            .runtime
            .block_on(kappa_table::writers::alive(self.table.store(), self.table.name()))?
            .into_iter()
            .any(|w| w.kind == "consumer" && !(w.host == host && w.pid == std::process::id()));
        let removed = match others {
            true => 0,
            false => self.runtime.block_on(archive.remove_uncommitted(self.table.generation(), self.state.last_commit)).map_err(TableError::from)?,
        };
        if removed > 0 {
            tracing::warn!(removed, "removed archive objects of an interrupted flush; they will be written again");
        }
        self.archive = Some(archive);
        Ok(())
    }

    /// Rows this run routed to each partition (path), excluding quarantined, duplicate and
    /// already written events.
    pub fn routed_rows(&self) -> BTreeMap<String, u64> {
        self.routed.iter().map(|(partition, rows)| (partition.path(), *rows)).collect()
    }

    pub fn shard_names(&self) -> &[String] {
        &self.shards
    }

    /// Source acknowledgements: register those whose events all went to [`Pipeline::ingest`],
    /// take those commits made durable, confirm completed ones, adopt another generation's
    /// (a replay of an SQS-fed table's archive: its messages must still be recognised).
    pub fn acks(&mut self) -> &mut AckLedger {
        &mut self.acks
    }

    /// Commits when only the acknowledgement state changed (after the final deletes), so the
    /// next run does not carry this run's last messages for the full 14 days.
    pub fn commit_acknowledgements(&mut self) -> Result<(), PipelineError> {
        self.finish_commit()?;
        if self.acks.changed() {
            self.write_and_commit(Hold::Yes)?;
        }
        self.finish_commit()
    }

    pub fn open_partitions(&self) -> usize {
        self.buffers.len()
    }

    /// Memory held for buffered rows: the buffers' own (open, and sealed ones waiting for their
    /// partition in other shards), the reordered chunks that buffers still hold slices of, raw
    /// events for the archive, and rows waiting for their resume point.
    pub fn buffered_memory(&self) -> usize {
        let gathered: usize = self.gathered.iter().filter(|(token, _)| token.strong_count() > 0).map(|(_, memory)| memory).sum();
        self.buffers.values().chain(self.sealed.iter().map(|(_, b)| b)).map(|b| b.memory + b.claims_memory).sum::<usize>()
            + gathered
            + self.archive.as_ref().map_or(0, |a| a.buffered())
            + self.dedup.pending_memory()
    }

    pub fn is_idle(&self) -> bool {
        self.buffers.is_empty() && self.sealed.is_empty() && self.quarantine.is_empty() && self.in_flight.is_none()
    }

    /// A snapshot of what decoding needs, for decoding chunks ahead on other threads.
    pub fn decode_plan(&self) -> DecodePlan {
        DecodePlan::new(&self.decoder, self.config.event_time.clone(), self.config.granularity)
    }

    /// Takes in a chunk of events (each shard's in log order), with its rows if a worker
    /// decoded them ahead ([`Pipeline::decode_plan`]): used if the schema has not changed since,
    /// else the chunk is decoded here. Buffers that reach a row or byte count are sealed, and a
    /// commit of them is started before this returns.
    pub fn ingest(&mut self, events: &[SourceEvent], predecoded: Option<Predecoded>) -> Result<(), PipelineError> {
        if events.is_empty() {
            return Ok(());
        }
        self.stats.add_read(events.len() as u64);
        self.quarantine_ratio.read(events.len());
        if let Some(archive) = &mut self.archive {
            for event in events {
                archive.add(&self.shards[event.shard as usize], event);
            }
        }
        // Each event's predecessor in its shard: where to resume if a buffer starts with it;
        // and its ordinal in the shard's reading order.
        let mut previous = Vec::with_capacity(events.len());
        let mut ordinals = Vec::with_capacity(events.len());
        for event in events {
            let last = &mut self.last_read[event.shard as usize];
            previous.push(*last);
            *last = Some(last.map_or(event.seq, |l| l.max(event.seq)));
            let count = &mut self.read_count[event.shard as usize];
            ordinals.push(*count);
            *count += 1;
        }
        let (state, pieces) = match predecoded {
            Some(predecoded) => (Some(predecoded.state()), predecoded.into_pieces()),
            None => (None, vec![Piece { range: 0..events.len(), rows: None }]),
        };
        for piece in pieces {
            let (events, previous, ordinals) = (&events[piece.range.clone()], &previous[piece.range.clone()], &ordinals[piece.range]);
            // Rows decoded ahead are used if no piece before this one grew the schema.
            let (batch, positions, ids, origin, partitions) = match piece.rows.filter(|_| state == Some(self.decoder.state())) {
                Some(rows) => (rows.batch, rows.positions, rows.ids, (0..events.len()).collect::<Vec<usize>>(), rows.partitions),
                None => {
                    let objects: Vec<std::borrow::Cow<'_, [u8]>> = events.iter().map(SourceEvent::json).collect();
                    let payloads: Vec<&[u8]> = objects.iter().map(|o| o.as_ref()).collect();
                    let shapes: Vec<_> = events.iter().map(|e| e.shape.clone()).collect();
                    let (decoded, evolved) = self.decoder.decode(&payloads, &shapes);
                    if evolved {
                        self.store_schema()?;
                    }
                    for (index, reason) in &decoded.rejected {
                        let event = &events[*index];
                        let reason = match (&event.defect, event.shape_error()) {
                            (Some(defect), _) => defect.to_string(),
                            (None, Some(e)) => e.to_string(),
                            (None, None) => reason.clone(),
                        };
                        self.quarantine_event(event, reason);
                    }
                    let origin = decoded.origin;
                    let partitions =
                        row_partitions(&decoded.batch, |row| events[origin[row]].arrival_ms, self.config.event_time.as_ref(), self.config.granularity);
                    (decoded.batch, None, decoded.ids, origin, partitions)
                }
            };
            if batch.num_rows() > 0 {
                let rows = PieceRows { batch: &batch, positions: positions.as_deref() };
                self.route(rows, &ids, &origin, &partitions, &ChunkEvents { events, previous, ordinals, ids: &ids })?;
            }
        }
        self.quarantine_ratio.check()?;
        if !self.sealed.is_empty() {
            self.write_and_commit(Hold::Yes)?;
        }
        Ok(())
    }

    /// Quarantines events the source could not turn into rows, with its reason. Call it before
    /// [`Pipeline::ingest`] of the same chunk, so a commit at the end of the ingest covers them.
    /// It moves the shard's last position past them: only sources whose every commit writes
    /// every buffer (`flush_together`, SQS) may interleave rejects with events.
    pub fn reject(&mut self, rejects: &[(SourceEvent, String)]) {
        debug_assert!(rejects.is_empty() || self.config.flush_together, "rejects need flush_together");
        self.stats.add_read(rejects.len() as u64);
        self.quarantine_ratio.read(rejects.len());
        for (event, reason) in rejects {
            if let Some(archive) = &mut self.archive {
                archive.add(&self.shards[event.shard as usize], event);
            }
            let last = &mut self.last_read[event.shard as usize];
            *last = Some(last.map_or(event.seq, |l| l.max(event.seq)));
            self.quarantine_event(event, reason.clone());
        }
    }

    /// The last position of the shard the last commit holds in the partition: events up to it
    /// are already written there.
    fn written_position(&self, (partition, shard): BufferKey) -> Option<SequenceNumber> {
        self.state.written.get(&partition.path()).and_then(|shards| shards.get(&self.shards[shard as usize])).and_then(|s| seq_of(s))
    }

    /// Appends rows to a buffer, which then closes as `opening` says (`--partition-idle`).
    fn append(
        &mut self,
        key: BufferKey,
        source: RowSource<'_>,
        Routed { rows, bytes }: Routed<'_>,
        origin: &[usize],
        chunk: &ChunkEvents<'_>,
        opening: Opening,
    ) -> Result<(), PipelineError> {
        let ChunkEvents { events, previous, ordinals, ids } = chunk;
        let taken = match source {
            RowSource::Gathered(rows) => rows,
            RowSource::Batch(piece) => {
                let batch = piece.batch;
                let at = piece.positions_of(rows);
                // A buffer's rows lie in the batch in their order (a worker groups a run's rows
                // by partition, each partition's in order): the two bulk cases below rely on it.
                debug_assert!(at.windows(2).all(|w| w[0] < w[1]), "a buffer's rows are in order in the batch");
                let (first_row, last_row) = (at[0] as usize, *at.last().expect("non-empty") as usize);
                let columns = if at.len() == batch.num_rows() && first_row == 0 && last_row + 1 == at.len() {
                    // The whole batch (a shard's run of a chunk, all in one partition: the
                    // usual case for data in time order) is kept as decoded.
                    batch.columns().to_vec()
                } else if last_row >= first_row && last_row - first_row + 1 == at.len() {
                    // A run of rows: copied in bulk, which is several times faster than
                    // gathering row by row. Copied, not sliced: a slice would keep the whole
                    // batch's columns alive for as long as this buffer stays open.
                    batch.columns().iter().map(|c| memory::copy_rows(c, first_row..last_row + 1)).collect::<Result<Vec<_>, _>>()?
                } else {
                    let indices = UInt32Array::from(at.into_owned());
                    batch.columns().iter().map(|c| arrow::compute::take(c, &indices, None)).collect::<Result<Vec<_>, _>>()?
                };
                Rows::owned(RecordBatch::try_new(batch.schema(), columns)?)
            }
        };
        *self.routed.entry(key.0).or_default() += rows.len() as u64;
        let first_event = origin[rows[0] as usize];
        let first = events[first_event].seq;
        let last = events[origin[*rows.last().expect("non-empty") as usize]].seq;
        let buffer = self.buffers.entry(key).or_insert_with(|| Buffer::new(first, previous[first_event], ordinals[first_event], opening.horizon_before));
        buffer.append(taken, bytes, last);
        if self.table.is_competing() {
            use arrow::array::Array as _;
            for row in rows.iter().map(|row| *row as usize) {
                let id: Option<Box<str>> = (!ids.is_null(row)).then(|| ids.value(row).into());
                buffer.claims_memory += size_of::<crate::buffer::RowClaim>() + id.as_ref().map_or(0, |id| id.len());
                buffer.claims.push(crate::buffer::RowClaim { seq: events[origin[row]].seq, id });
            }
        }
        buffer.closing = opening.closing;
        Ok(())
    }

    /// Closes a buffer, cut as `cut` says (see [`Cut`]); one closed as idle whose first row
    /// came late is [`Cut::Late`].
    fn seal(&mut self, key: BufferKey, cut: Cut) {
        if let Some(mut buffer) = self.buffers.remove(&key) {
            buffer.cut = match cut {
                Cut::OnTime if late(&key.0, buffer.horizon_before, self.config.partition_idle) => Cut::Late,
                cut => cut,
            };
            self.sealed.push((key, buffer));
        }
    }

    fn quarantine_event(&mut self, event: &SourceEvent, reason: String) {
        let shard = self.shards[event.shard as usize].clone();
        let done = self.state.quarantined.get(&shard).and_then(|s| seq_of(s)).is_some_and(|q| event.seq <= q);
        if done {
            return; // quarantined by a committed flush before a restart
        }
        self.stats.add_quarantined(1);
        self.quarantine_ratio.quarantined(&reason);
        // A defective event keeps the bytes as they arrived: as text if they are, else base64.
        let (payload, payload_encoding) = match &event.defect {
            Some(_) => match std::str::from_utf8(&event.payload) {
                Ok(text) => (text.to_string(), None),
                Err(_) => (base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &event.payload), Some("base64")),
            },
            None => (String::from_utf8_lossy(&event.json()).into_owned(), None),
        };
        self.quarantine.push(QuarantineRecord { shard, seq: event.seq.to_string(), arrival_ms: event.arrival_ms, reason, payload, payload_encoding });
    }

    fn store_schema(&mut self) -> Result<(), PipelineError> {
        let version = self.decoder.version();
        if version > self.stored_schema_version {
            self.runtime.block_on(self.table.write_schema(version, self.decoder.schema()))?;
            self.stored_schema_version = version;
        }
        Ok(())
    }

    /// Flushes buffers open longer than the interval; then, if memory is over the limit, moves
    /// every buffer's rows to the scratch directory. Memory never cuts a file (see
    /// [`crate::spill`]).
    pub fn flush_due(&mut self) -> Result<(), PipelineError> {
        if self.in_flight.as_ref().is_some_and(InFlight::is_finished) {
            self.finish_commit()?;
        }
        let interval = self.config.flush.interval;
        let due: Vec<BufferKey> = self.buffers.iter().filter(|(_, b)| b.opened.elapsed() >= interval).map(|(k, _)| *k).collect();
        for key in due {
            self.seal(key, Cut::Together);
        }
        self.gathered.retain(|(token, _)| token.strong_count() > 0);
        let limit = self.config.flush.max_memory;
        let mut short = false;
        if self.buffered_memory() > limit {
            self.spill_buffers()?;
            // What remains over the limit is rows waiting for their resume point (re-read
            // after a restart, say, with no buffer open) or raw events for the archive: a
            // commit moves the first and writes the others. (Sealed buffers waiting for their
            // partition in other shards spill as open ones do: memory never cuts a file.)
            short = self.buffered_memory() > limit;
            if short && self.sealed.is_empty() {
                self.write_and_commit(Hold::Yes)?;
            }
        }
        // Messages whose rows were all dropped (duplicates) or already written: nothing holds
        // them back, commit so they can be deleted.
        let acks_ready = self.config.flush_together && self.buffers.is_empty() && self.acks.has_ingested();
        if !self.sealed.is_empty() || !self.quarantine.is_empty() || acks_ready {
            self.write_and_commit(Hold::from(!short))?;
        }
        Ok(())
    }

    /// Commits, with no rows, the shards this leased worker took (see [`Table::fence_due`]):
    /// before anything is read, so that from now on no commit of their previous owner lands,
    /// however quiet the shards stay. Nothing is done if no held shard is new to this epoch.
    pub fn fence(&mut self) -> Result<bool, PipelineError> {
        if !self.runtime.block_on(self.table.fence_due())? {
            return Ok(false);
        }
        self.write_and_commit(Hold::No)?;
        self.finish_commit()?;
        Ok(true)
    }

    /// Writes everything buffered and commits: shutdown, and the end of `--until-idle`.
    pub fn flush_all(&mut self) -> Result<(), PipelineError> {
        self.finish_commit()?;
        let keys: Vec<BufferKey> = self.buffers.keys().copied().collect();
        for key in keys {
            self.seal(key, Cut::Together);
        }
        let advanced =
            self.shards.iter().enumerate().any(|(i, shard)| self.last_read[i].is_some_and(|n| self.state.resume.get(shard).and_then(|s| seq_of(s)) != Some(n)));
        if !self.sealed.is_empty() || !self.quarantine.is_empty() || self.acks.has_ingested() || advanced {
            self.write_and_commit(Hold::End)?;
        }
        while !self.sealed.is_empty() {
            self.write_and_commit(Hold::End)?;
        }
        self.finish_commit()
    }
}

fn layout_of(config: &PipelineConfig) -> kappa_table::Layout {
    kappa_table::Layout { partition_by: config.granularity.to_string(), event_time: config.event_time.as_ref().map(|(c, _)| c.clone()) }
}

/// The live Delta table's columns (names, types and order as every reader sees them), then the
/// stored ones the log does not have yet.
fn follow_live(stored: &TableSchema, live: TableSchema) -> TableSchema {
    let mut columns = live.fields;
    for column in &stored.fields {
        if !columns.iter().any(|c| c.name == column.name) {
            columns.push(column.clone());
        }
    }
    for (column, before) in columns.iter().filter_map(|c| stored.fields.iter().find(|s| s.name == c.name && s.column_type != c.column_type).map(|s| (c, s))) {
        tracing::info!(column = %column.name, stored = %before.column_type, delta = %column.column_type, "the Delta log types a column otherwise: following it");
    }
    TableSchema::new(columns).expect("columns from two valid schemas, each name once")
}

fn placeholder_schema() -> TableSchema {
    TableSchema::new(vec![kappa_common::schema::Column { name: "_placeholder".into(), column_type: kappa_common::schema::ColumnType::String, nullable: true }])
        .expect("valid")
}
