//! Routing: each decoded row to its (partition, shard) buffer, in order, cut where a trigger
//! fires.
//!
//! With `--partition-idle`, a buffer also closes at the exact row where its shard's event time
//! (the latest routed) has passed the partition's end, and where it stood at the buffer's last
//! row, by the idle time (or by more after a late row, below), and the shard has delivered
//! [`IDLE_EVENTS`] events since that row. Like the row and byte triggers, that row depends only
//! on the shard's events in log order, not on how they were read in chunks: a replay closes the
//! same files.
//!
//! Why the event count: in data out of time order the shard's latest time climbs fast over the
//! first events (the maximum of a few random times), and time alone closed nearly every
//! partition once, early, into a tiny file (2M rows over 120 days: 1,587 files instead of 480).
//! A partition that still gets rows is not idle, however far behind it is.
//!
//! And why a late row (one that came when its shard's event time had already passed the
//! partition's end by more than the idle time) makes its partition wait by that much instead: in
//! random time order nearly every row is late, and the latest time still climbs over the first
//! few thousand events, past the closing of the partitions that got a row then. With a
//! partition per shard getting a row only every few thousand events (1M rows over 2,880 hours,
//! 4 shards: every 2,880 on average), a quiet stretch of 10,000 came often enough to write 238
//! (partition, shard) pairs twice, once in a file of one row. Rows that came days late wait for
//! the latest time to move on by days, which it no longer does (except near the top of the time
//! range, where rows are hardly late: 3 pairs there). In a stream in time order, rows come
//! before its time passes their partition's end by the idle time, and partitions close as
//! before; a row a few hours late (a delayed flight, a device back online) keeps its
//! partition open a few hours longer: a row of 10:xx that comes when the shard's time is 14:00
//! (3 h past the hour's end) keeps the hour open until that time reaches 17:00, where an idle
//! time of 1h alone closed it at 15:00.

use arrow::array::{Array, RecordBatch, StringArray, UInt32Array};
use kappa_common::event::SequenceNumber;

use super::{Pipeline, PipelineError, SourceEvent};
use crate::buffer::{BufferKey, Closing, Cut, Rows};
use crate::partition::Placement;

/// A piece of a chunk's events, with each one's predecessor in its shard (where to resume if
/// a buffer starts with it) and its ordinal in the shard's reading order (for deduplication).
pub(super) struct ChunkEvents<'a> {
    pub(super) events: &'a [SourceEvent],
    pub(super) previous: &'a [Option<SequenceNumber>],
    pub(super) ordinals: &'a [u64],
    /// Each decoded row's identity member (null: none).
    pub(super) ids: &'a StringArray,
}

/// The rows of one chunk bound for one buffer.
struct Group {
    key: BufferKey,
    rows: Vec<u32>,
    /// The JSON size of `rows`.
    bytes: u64,
    /// What the buffer held before this chunk.
    buffered_rows: u64,
    buffered_bytes: u64,
    /// Events of the shard up to here are already in the partition (per the last commit).
    written: Option<SequenceNumber>,
    /// With `--partition-idle`: the partition's end (ms), and when the buffer closes given its
    /// rows so far.
    partition_end: i64,
    closing: Closing,
    /// The shard's event time before the first row of `rows`.
    horizon_before: i64,
}

/// A piece's decoded rows: its row `r` lies at `positions[r]` of `batch` when a worker has
/// grouped the rows by partition (see [`crate::decode::group_by_partition`]), at `r` otherwise.
#[derive(Clone, Copy)]
pub(super) struct PieceRows<'a> {
    pub(super) batch: &'a RecordBatch,
    pub(super) positions: Option<&'a [u32]>,
}

impl PieceRows<'_> {
    fn at(&self, row: u32) -> u32 {
        self.positions.map_or(row, |positions| positions[row as usize])
    }

    /// Where `rows` lie in the batch.
    pub(super) fn positions_of<'r>(&self, rows: &'r [u32]) -> std::borrow::Cow<'r, [u32]> {
        match self.positions {
            None => std::borrow::Cow::Borrowed(rows),
            Some(_) => rows.iter().map(|row| self.at(*row)).collect(),
        }
    }
}

/// Rows routed to one buffer (in event order), and their JSON size.
pub(super) struct Routed<'a> {
    pub(super) rows: &'a [u32],
    pub(super) bytes: u64,
}

/// Where a buffer's new rows come from.
pub(super) enum RowSource<'a> {
    /// Rows of the decoded batch, to be taken from it.
    Batch(PieceRows<'a>),
    /// Rows already taken: a range of the chunk reordered by buffer. The range keeps the whole
    /// reordered chunk alive, which is counted once, for as long as any buffer holds a range
    /// of it (see [`Pipeline::buffered_memory`]).
    Gathered(Rows),
}

/// How a buffer closes, and where its shard's event time stood before its first row.
#[derive(Debug, Clone, Copy)]
pub(super) struct Opening {
    pub(super) closing: Closing,
    pub(super) horizon_before: i64,
}

impl Group {
    fn opening(&self) -> Opening {
        Opening { closing: self.closing, horizon_before: self.horizon_before }
    }
}

/// Events a shard delivers after a buffer's last row before the buffer may close as idle.
const IDLE_EVENTS: u64 = 10_000;

/// When a buffer closes as idle after a row at `ordinal` of its shard, whose event time then
/// stood at `horizon`, in a partition ending at `partition_end`, with the idle time `idle` (all
/// ms): the shard's time past the partition's end and `horizon` by `idle`, or, after a row
/// that came when the shard's time was past the partition's end by more than `idle`, by that
/// much (see the module's comment); and [`IDLE_EVENTS`] events later.
fn closing(partition_end: i64, horizon: i64, idle: i64, ordinal: u64) -> Closing {
    let wait = idle.max(horizon.saturating_sub(partition_end));
    Closing { at_ms: partition_end.max(horizon).saturating_add(wait), at_ordinal: ordinal + IDLE_EVENTS }
}

impl Pipeline {
    /// Sends each decoded row to its (partition, shard) buffer, cutting buffers at the exact
    /// row where a trigger fires.
    pub(super) fn route(
        &mut self,
        rows_in: PieceRows<'_>,
        ids: &StringArray,
        origin: &[usize],
        partitions: &[Placement],
        chunk: &ChunkEvents<'_>,
    ) -> Result<(), PipelineError> {
        let events = chunk.events;
        let idle_ms = self.config.partition_idle.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        // Rows of each buffer, in order. Consecutive rows mostly feed the same buffer when
        // events arrive in time order; in any other order a chunk feeds every open partition
        // (a linear search among 120 groups was 3% of a wide, unordered run's CPU): found by
        // key then.
        let mut groups: Vec<Group> = Vec::new();
        let mut group_of: foldhash::HashMap<BufferKey, usize> = foldhash::HashMap::default();
        let mut current = 0;
        for (row, event_index) in origin.iter().enumerate() {
            let event = &events[*event_index];
            let (partition, ms) = match &partitions[row] {
                Ok(placed) => *placed,
                Err(reason) => {
                    self.quarantine_event(event, reason.clone());
                    continue;
                }
            };
            let shard = event.shard as usize;
            let ordinal = chunk.ordinals[*event_index];
            let horizon_before = self.horizon[shard];
            if idle_ms.is_some() {
                self.horizon[shard] = self.horizon[shard].max(ms);
                if self.idle[shard].reached(self.horizon[shard], ordinal) {
                    self.close_behind(event.shard, ordinal, (&mut groups, &group_of), rows_in, origin, chunk)?;
                }
            }
            let key = (partition, event.shard);
            if groups.get(current).is_none_or(|g| g.key != key) {
                current = match group_of.get(&key) {
                    Some(index) => *index,
                    None => {
                        let buffer = self.buffers.get(&key);
                        let (buffered_rows, buffered_bytes) = buffer.map_or((0, 0), |b| (b.rows, b.bytes));
                        let closing = buffer.map_or(Closing::NEVER, |b| b.closing);
                        let partition_end = match idle_ms {
                            Some(_) => partition.span_ms().map_or(i64::MAX, |(_, end)| end),
                            None => i64::MAX,
                        };
                        let written = self.written_position(key);
                        groups.push(Group { key, rows: Vec::new(), bytes: 0, buffered_rows, buffered_bytes, written, partition_end, closing, horizon_before });
                        group_of.insert(key, groups.len() - 1);
                        groups.len() - 1
                    }
                };
            }
            let group = &mut groups[current];
            // The identity enters the window even when the row is already written: a later
            // copy of it (a producer re-send) must still be dropped after a restart.
            let duplicate = if ids.is_null(row) {
                self.dedup.check(&format!("{}:{}", self.shards[event.shard as usize], event.seq), event.shard, ordinal)
            } else {
                self.dedup.check(ids.value(row), event.shard, ordinal)
            };
            if group.written.is_some_and(|w| event.seq <= w) {
                self.stats.add_skipped(1);
                continue;
            }
            if duplicate {
                self.stats.add_duplicates(1);
                continue;
            }
            if group.rows.is_empty() {
                group.horizon_before = horizon_before;
            }
            group.rows.push(row as u32);
            group.bytes += event.json_len() as u64;
            if let Some(idle) = idle_ms {
                let previous = group.closing;
                group.closing = closing(group.partition_end, self.horizon[shard], idle, ordinal);
                self.idle[shard].note(key, previous, group.closing, self.horizon[shard]);
            }
            if self.config.flush.full(group.buffered_rows + group.rows.len() as u64, group.buffered_bytes + group.bytes) {
                let (rows, bytes) = (std::mem::take(&mut group.rows), group.bytes);
                (group.bytes, group.buffered_rows, group.buffered_bytes, group.closing) = (0, 0, 0, Closing::NEVER);
                let opening = Opening { closing: Closing::NEVER, horizon_before: group.horizon_before };
                self.append(key, RowSource::Batch(rows_in), Routed { rows: &rows, bytes }, origin, chunk, opening)?;
                self.seal(key, Cut::Alone);
            }
        }
        let pending: Vec<&Group> = groups.iter().filter(|g| !g.rows.is_empty()).collect();
        // A chunk feeding many buffers is reordered by buffer once (one gather per column), and
        // each buffer takes a slice: rows in random time order feed hundreds of buffers from
        // each chunk, and a gather per buffer and column was hundreds of thousands of small
        // allocations per second (12% of a run's samples in malloc and free).
        if pending.len() >= crate::decode::GROUP_FROM_PARTITIONS {
            let order: Vec<u32> = pending.iter().flat_map(|g| g.rows.iter().map(|row| rows_in.at(*row))).collect();
            // A worker has usually grouped the rows already: every row, in the batch's order.
            let grouped = order.len() == rows_in.batch.num_rows() && order.iter().enumerate().all(|(i, at)| *at as usize == i);
            let gathered = std::sync::Arc::new(match grouped {
                true => rows_in.batch.clone(),
                false => arrow::compute::take_record_batch(rows_in.batch, &UInt32Array::from(order))?,
            });
            let memory = gathered.get_array_memory_size();
            self.gathered.push((std::sync::Arc::downgrade(&gathered), memory));
            let mut offset = 0;
            for group in pending {
                let n = group.rows.len();
                let rows = RowSource::Gathered(Rows::shared(&gathered, memory, offset, n));
                self.append(group.key, rows, Routed { rows: &group.rows, bytes: group.bytes }, origin, chunk, group.opening())?;
                offset += n;
            }
        } else {
            for group in pending {
                self.append(group.key, RowSource::Batch(rows_in), Routed { rows: &group.rows, bytes: group.bytes }, origin, chunk, group.opening())?;
            }
        }
        Ok(())
    }

    /// Closes the shard's buffers that are idle at this row (`--partition-idle`), with the rows
    /// this chunk routed to them so far.
    fn close_behind(
        &mut self,
        shard: u32,
        ordinal: u64,
        (groups, group_of): (&mut [Group], &foldhash::HashMap<BufferKey, usize>),
        rows_in: PieceRows<'_>,
        origin: &[usize],
        chunk: &ChunkEvents<'_>,
    ) -> Result<(), PipelineError> {
        let horizon = self.horizon[shard as usize];
        // A group's closing is the newer one: its buffer's, plus this chunk's rows.
        let buffers = &self.buffers;
        let current = |key: &BufferKey| match group_of.get(key) {
            Some(index) => Some(groups[*index].closing),
            None => buffers.get(key).map(|b| b.closing),
        };
        let due = self.idle[shard as usize].due(horizon, ordinal, current);
        if due.is_empty() {
            return Ok(());
        }
        // In the order of a look at every group, then every buffer (`due` is sorted, as the
        // buffers are): the commit lists its files in the order they were sealed (by partition
        // unless --per-shard-files).
        for group in groups.iter_mut().filter(|g| due.binary_search(&g.key).is_ok()) {
            if !group.rows.is_empty() {
                let rows = std::mem::take(&mut group.rows);
                self.append(group.key, RowSource::Batch(rows_in), Routed { rows: &rows, bytes: group.bytes }, origin, chunk, group.opening())?;
            }
            self.seal(group.key, Cut::OnTime);
            (group.bytes, group.buffered_rows, group.buffered_bytes, group.closing) = (0, 0, 0, Closing::NEVER);
        }
        for key in due.into_iter().filter(|key| !group_of.contains_key(key)) {
            self.seal(key, Cut::OnTime);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn a_late_row_waits_by_how_far_the_shards_time_is_past_its_partition() {
        // The hour 10:00-11:00 (ms of the day), an idle time of 1h.
        let end = 11 * HOUR;
        // On time: the shard at 10:30 or 11:45 (within the idle time past the end): an hour
        // past the end, or past the shard's time.
        assert_eq!(closing(end, 10 * HOUR + HOUR / 2, HOUR, 7), Closing { at_ms: 12 * HOUR, at_ordinal: 10_007 });
        assert_eq!(closing(end, 11 * HOUR + 3 * HOUR / 4, HOUR, 7).at_ms, 12 * HOUR + 3 * HOUR / 4);
        // Exactly the idle time past the end: the same either way.
        assert_eq!(closing(end, 12 * HOUR, HOUR, 7).at_ms, 13 * HOUR);
        // The delayed flight of the docs: the shard at 14:00, 3 h past the hour's end: open
        // until 17:00 (the idle time alone: 15:00).
        assert_eq!(closing(end, 14 * HOUR, HOUR, 7), Closing { at_ms: 17 * HOUR, at_ordinal: 10_007 });
        // Days late (random time order): days more.
        assert_eq!(closing(end, end + 40 * 24 * HOUR, HOUR, 0).at_ms, end + 80 * 24 * HOUR);
        // An idle time of 0: any row after the shard's time passed the end waits by that much.
        assert_eq!(closing(end, end + HOUR, 0, 0).at_ms, end + 2 * HOUR);
        // No span (i64::MAX) and huge idle times saturate: never by time.
        assert_eq!(closing(i64::MAX, 14 * HOUR, HOUR, 0).at_ms, i64::MAX);
        assert_eq!(closing(end, 14 * HOUR, i64::MAX, 0).at_ms, i64::MAX);
        assert_eq!(closing(end, i64::MAX - 1, HOUR, 0).at_ms, i64::MAX);
    }
}
