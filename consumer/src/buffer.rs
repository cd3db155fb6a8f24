//! Per-partition buffers, one per (partition, shard), and what decides when they flush.
//!
//! Keying by shard as well as partition is what makes the lake a function of the log: a
//! buffer receives one shard's events in log order, whatever the interleaving between shards
//! at read time, and the row- and byte-count triggers cut it at the same event on every run.
//! Byte counts are of the events' JSON (deterministic), not of Arrow memory (which depends on
//! how reads were chunked).

use std::collections::HashSet;
use std::collections::VecDeque;
use std::time::Instant;

use arrow::array::RecordBatch;
use kappa_common::event::SequenceNumber;

use crate::partition::Partition;

/// Where a buffer's rows come from and go to.
pub type BufferKey = (Partition, u32);

pub struct Buffer {
    pub batches: Vec<RecordBatch>,
    pub rows: u64,
    /// Sum of the events' JSON sizes.
    pub bytes: u64,
    /// Arrow memory held, for `--max-memory`.
    pub memory: usize,
    pub first_seq: SequenceNumber,
    pub last_seq: SequenceNumber,
    /// The shard position just before `first_seq` (`None`: the shard's beginning): reading
    /// resumes after it while this buffer is unwritten.
    pub resume_after: Option<SequenceNumber>,
    pub opened: Instant,
}

impl Buffer {
    pub fn new(first_seq: SequenceNumber, resume_after: Option<SequenceNumber>) -> Buffer {
        Buffer { batches: Vec::new(), rows: 0, bytes: 0, memory: 0, first_seq, last_seq: first_seq, resume_after, opened: Instant::now() }
    }

    pub fn append(&mut self, batch: RecordBatch, bytes: u64, last_seq: SequenceNumber) {
        self.rows += batch.num_rows() as u64;
        self.memory += batch.get_array_memory_size();
        self.bytes += bytes;
        self.last_seq = last_seq;
        self.batches.push(batch);
    }
}

/// When buffers are written.
#[derive(Debug, Clone)]
pub struct FlushPolicy {
    pub rows: u64,
    pub bytes: u64,
    pub interval: std::time::Duration,
    pub max_memory: usize,
}

impl FlushPolicy {
    /// True once a buffer holding `rows` rows and `bytes` bytes must be cut.
    pub fn full(&self, rows: u64, bytes: u64) -> bool {
        rows >= self.rows || bytes >= self.bytes
    }
}

/// Drops events seen before by identity: producer retries, re-sent files and SQS redeliveries.
///
/// The producer's identities are `<source>:<pass>:<row>`, rows numbered from 0: per source and
/// pass the rows seen are kept as ranges, which a file read in order collapses to a handful —
/// exact and nearly free however many rows. Other identities go to a window of the newest
/// `capacity` 128-bit hashes (older duplicates are not caught there; positions guard restarts).
/// A hash set of a million random keys was a third of the consumer's time in cache misses.
pub struct DedupWindow {
    capacity: usize,
    order: VecDeque<u128>,
    seen: HashSet<u128, PreHashed>,
    /// Per `<source>:<pass>`, the rows seen; found by name, or by the last one used (rows of
    /// one file arrive together).
    sources: Vec<(String, RowRanges)>,
    source_index: std::collections::HashMap<String, usize>,
    last_source: usize,
}

/// Row numbers as disjoint ranges, `start → end` (exclusive).
#[derive(Default)]
struct RowRanges {
    ranges: std::collections::BTreeMap<u64, u64>,
}

impl RowRanges {
    /// Adds `row`; true if it was there already.
    fn insert(&mut self, row: u64) -> bool {
        let before = self.ranges.range(..=row).next_back().map(|(s, e)| (*s, *e));
        if let Some((_, end)) = before
            && row < end
        {
            return true;
        }
        let next = row.checked_add(1).and_then(|n| self.ranges.get(&n).copied().map(|end| (n, end)));
        match (before.filter(|(_, end)| *end == row), next) {
            (Some((start, _)), Some((next_start, next_end))) => {
                self.ranges.remove(&next_start);
                self.ranges.insert(start, next_end);
            }
            (Some((start, _)), None) => {
                self.ranges.insert(start, row + 1);
            }
            (None, Some((next_start, next_end))) => {
                self.ranges.remove(&next_start);
                self.ranges.insert(row, next_end);
            }
            (None, None) => {
                self.ranges.insert(row, row + 1);
            }
        }
        false
    }

    /// Forgets the lowest ranges beyond `limit` (rows so scattered that the ranges cost memory).
    fn trim(&mut self, limit: usize) {
        while self.ranges.len() > limit {
            self.ranges.pop_first();
        }
    }
}

/// The set's keys are already xxh3 hashes: hashing them again (SipHash by default) was a
/// fifth of the consumer's time.
#[derive(Clone, Copy, Default)]
struct PreHashed;

struct PreHasher(u64);

impl std::hash::BuildHasher for PreHashed {
    type Hasher = PreHasher;
    fn build_hasher(&self) -> PreHasher {
        PreHasher(0)
    }
}

impl std::hash::Hasher for PreHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = (n as u64) ^ ((n >> 64) as u64);
    }
}

impl DedupWindow {
    pub fn new(capacity: usize) -> DedupWindow {
        DedupWindow {
            capacity,
            order: VecDeque::new(),
            seen: HashSet::with_hasher(PreHashed),
            sources: Vec::new(),
            source_index: std::collections::HashMap::new(),
            last_source: 0,
        }
    }

    /// True if `id` was seen before (a duplicate); remembers it otherwise.
    pub fn check(&mut self, id: &str) -> bool {
        if self.capacity == 0 {
            return false;
        }
        if let Some((source, row)) = id.rsplit_once(':')
            && source.contains(':')
            && let Ok(row) = row.parse::<u64>()
        {
            let index = match self.sources.get(self.last_source) {
                Some((name, _)) if name == source => self.last_source,
                _ => match self.source_index.get(source) {
                    Some(index) => *index,
                    None => {
                        self.sources.push((source.to_string(), RowRanges::default()));
                        self.source_index.insert(source.to_string(), self.sources.len() - 1);
                        self.sources.len() - 1
                    }
                },
            };
            self.last_source = index;
            let ranges = &mut self.sources[index].1;
            let seen = ranges.insert(row);
            if ranges.ranges.len() > self.capacity {
                ranges.trim(self.capacity / 2);
            }
            return seen;
        }
        let hash = xxhash_rust::xxh3::xxh3_128(id.as_bytes());
        if !self.seen.insert(hash) {
            return true;
        }
        self.order.push_back(hash);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_identities_are_kept_as_row_ranges() {
        let mut window = DedupWindow::new(1000);
        // Rows arrive out of order (four shards interleaved), then a re-send of some.
        for row in [0u64, 2, 4, 1, 3, 7, 5, 6] {
            assert!(!window.check(&format!("f00d:0:{row}")), "{row}");
        }
        assert_eq!(window.sources[0].1.ranges.len(), 1, "collapsed to one range");
        for row in [3u64, 0, 7] {
            assert!(window.check(&format!("f00d:0:{row}")));
        }
        assert!(!window.check("f00d:1:3"), "another pass is another source");
        assert!(!window.check("f00d:0:9"));
        assert!(!window.check("f00d:0:8"));
        assert_eq!(window.sources[0].1.ranges.len(), 1);
    }

    #[test]
    fn dedup_window_forgets_the_oldest() {
        let mut window = DedupWindow::new(2);
        assert!(!window.check("a"));
        assert!(window.check("a"));
        assert!(!window.check("b"));
        assert!(!window.check("c")); // evicts a
        assert!(!window.check("a"));
        assert!(window.check("c"));
        let mut off = DedupWindow::new(0);
        assert!(!off.check("a") && !off.check("a"));
    }
}
