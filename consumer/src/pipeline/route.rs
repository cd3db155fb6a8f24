//! Routing: each decoded row to its (partition, shard) buffer, in order, cut where a trigger
//! fires.

use arrow::array::{Array, RecordBatch, StringArray};
use kappa_common::event::SequenceNumber;

use super::{Pipeline, PipelineError, SourceEvent};
use crate::buffer::BufferKey;
use crate::partition::Partition;

/// A piece of a chunk's events, with each one's predecessor in its shard (where to resume if
/// a buffer starts with it) and its ordinal in the shard's reading order (for deduplication).
pub(super) struct ChunkEvents<'a> {
    pub(super) events: &'a [SourceEvent],
    pub(super) previous: &'a [Option<SequenceNumber>],
    pub(super) ordinals: &'a [u64],
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
}

impl Pipeline {
    /// Sends each decoded row to its (partition, shard) buffer, cutting buffers at the exact
    /// row where a trigger fires.
    pub(super) fn route(
        &mut self,
        batch: &RecordBatch,
        ids: &StringArray,
        origin: &[usize],
        partitions: &[Result<Partition, String>],
        chunk: &ChunkEvents<'_>,
    ) -> Result<(), PipelineError> {
        let events = chunk.events;
        // Rows of each buffer, in order; found by a scan from the last one used, since a
        // chunk feeds few buffers and consecutive rows mostly feed the same.
        let mut groups: Vec<Group> = Vec::new();
        let mut current = 0;
        for (row, event_index) in origin.iter().enumerate() {
            let event = &events[*event_index];
            let partition = match &partitions[row] {
                Ok(partition) => *partition,
                Err(reason) => {
                    self.quarantine_event(event, reason.clone());
                    continue;
                }
            };
            let key = (partition, event.shard);
            if groups.get(current).is_none_or(|g| g.key != key) {
                current = match groups.iter().position(|g| g.key == key) {
                    Some(index) => index,
                    None => {
                        let (buffered_rows, buffered_bytes) = self.buffers.get(&key).map_or((0, 0), |b| (b.rows, b.bytes));
                        let written = self.written_position(key);
                        groups.push(Group { key, rows: Vec::new(), bytes: 0, buffered_rows, buffered_bytes, written });
                        groups.len() - 1
                    }
                };
            }
            let group = &mut groups[current];
            // The identity enters the window even when the row is already written: a later
            // copy of it (a producer re-send) must still be dropped after a restart.
            let ordinal = chunk.ordinals[*event_index];
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
            group.rows.push(row as u32);
            group.bytes += event.payload.len() as u64;
            if self.config.flush.full(group.buffered_rows + group.rows.len() as u64, group.buffered_bytes + group.bytes) {
                let rows = std::mem::take(&mut group.rows);
                (group.bytes, group.buffered_rows, group.buffered_bytes) = (0, 0, 0);
                self.append(key, batch, &rows, origin, chunk)?;
                self.seal(key);
            }
        }
        for group in groups {
            if !group.rows.is_empty() {
                self.append(group.key, batch, &group.rows, origin, chunk)?;
            }
        }
        Ok(())
    }
}
