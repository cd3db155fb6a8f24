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
/// pass the rows seen are kept as a bitmap, of which a file read in order keeps only a few
/// words — exact and nearly free however many rows. Other identities go to a window of the newest
/// `capacity` 128-bit hashes (older duplicates are not caught there; positions guard restarts).
/// A hash set of a million random keys was a third of the consumer's time in cache misses.
pub struct DedupWindow {
    capacity: usize,
    order: VecDeque<u128>,
    seen: HashSet<u128, PreHashed>,
    /// Per `<source>:<pass>`, the rows seen; found by name, or by the last one used (rows of
    /// one file arrive together).
    sources: Vec<(String, RowSet)>,
    source_index: std::collections::HashMap<String, usize>,
    last_source: usize,
}

/// Row numbers seen, as a bitmap over a sliding span: O(1) per row, and a file read in order
/// keeps only the few words around its gaps (the shards' rows interleave there).
#[derive(Default)]
struct RowSet {
    /// Every row below this was seen.
    complete_below: u64,
    /// The row of the first bit of `words` (a multiple of 64, at or above `complete_below`);
    /// rows in between were forgotten to bound the span.
    base: u64,
    words: VecDeque<u64>,
}

impl RowSet {
    /// Adds `row`; true if it was there already. `max_words` bounds the span kept: rows too
    /// far below the newest are forgotten (a later copy of one is not caught).
    fn insert(&mut self, row: u64, max_words: usize) -> bool {
        if row < self.complete_below {
            return true;
        }
        if row < self.base {
            return false;
        }
        let word = ((row - self.base) / 64) as usize;
        if word >= self.words.len() {
            if word - self.words.len() >= max_words {
                // Far beyond the span: start over there.
                self.words.clear();
                self.base = row / 64 * 64;
                return self.insert(row, max_words);
            }
            self.words.resize(word + 1, 0);
        }
        let bit = 1u64 << ((row - self.base) % 64);
        if self.words[word] & bit != 0 {
            return true;
        }
        self.words[word] |= bit;
        while self.words.front() == Some(&u64::MAX) && self.words.len() > 1 {
            self.words.pop_front();
            self.base += 64;
            if self.complete_below + 64 == self.base {
                self.complete_below = self.base;
            }
        }
        while self.words.len() > max_words {
            self.words.pop_front();
            self.base += 64;
        }
        false
    }
}

/// Splits an identity ending in `:<row>` into what precedes it and the row: on bytes, in one
/// pass back from the end (`rsplit_once` and `parse` were 3% of a consumer's time).
fn split_row(id: &str) -> Option<(&str, u64)> {
    let bytes = id.as_bytes();
    let (mut row, mut scale, mut at) = (0u64, 1u64, bytes.len());
    while at > 0 && bytes[at - 1].is_ascii_digit() {
        // 19 digits always fit in a u64.
        if bytes.len() - at == 19 {
            return None;
        }
        at -= 1;
        row += u64::from(bytes[at] - b'0') * scale;
        scale = scale.wrapping_mul(10);
    }
    if at == bytes.len() || at == 0 || bytes[at - 1] != b':' {
        return None;
    }
    Some((&id[..at - 1], row))
}

/// True for the `<source>:<pass>` part of a producer identity.
fn is_source_and_pass(name: &str) -> bool {
    memchr::memchr(b':', name.as_bytes()).is_some()
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
        if let Some((name, row)) = split_row(id) {
            // A name is checked only when it is not the last one's: rows of one file arrive
            // together.
            let index = match self.sources.get(self.last_source) {
                Some((last, _)) if last == name => Some(self.last_source),
                _ if !is_source_and_pass(name) => None,
                _ => match self.source_index.get(name) {
                    Some(index) => Some(*index),
                    None => {
                        self.sources.push((name.to_string(), RowSet::default()));
                        self.source_index.insert(name.to_string(), self.sources.len() - 1);
                        Some(self.sources.len() - 1)
                    }
                },
            };
            if let Some(index) = index {
                self.last_source = index;
                // A span of `capacity` rows per source, at least: one bit each.
                return self.sources[index].1.insert(row, self.capacity.div_ceil(64).max(16));
            }
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
    fn producer_identities_are_kept_as_a_bitmap_of_rows() {
        let mut window = DedupWindow::new(1000);
        // Rows arrive out of order (four shards interleaved), then a re-send of some.
        let rows: Vec<u64> = (0..1000u64).map(|i| (i % 4) * 250 + i / 4).collect();
        for &row in &rows {
            assert!(!window.check(&format!("f00d:0:{row}")), "{row}");
        }
        let set = &window.sources[0].1;
        assert_eq!((set.complete_below, set.words.len()), (960, 1), "the full words were let go");
        for row in [3u64, 0, 999] {
            assert!(window.check(&format!("f00d:0:{row}")));
        }
        assert!(!window.check("f00d:1:3"), "another pass is another source");
        assert!(!window.check("f00d:0:1001"));
        assert!(!window.check("f00d:0:1000"));
        assert!(window.check("f00d:0:1000"));
    }

    /// Splits a producer identity, `<source>:<pass>:<row>`, as `check` does.
    fn producer_identity(id: &str) -> Option<(&str, u64)> {
        split_row(id).filter(|(name, _)| is_source_and_pass(name))
    }

    #[test]
    fn only_identities_ending_in_a_row_number_after_two_colons_are_split() {
        assert_eq!(producer_identity("788f690caaf4267b:0:17"), Some(("788f690caaf4267b:0", 17)));
        assert_eq!(producer_identity("a:b:c:0"), Some(("a:b:c", 0)));
        assert_eq!(producer_identity("s:0:18446744073709551615"), None, "20 digits go to the hashes");
        assert_eq!(producer_identity("s:0:9999999999999999999"), Some(("s:0", 9_999_999_999_999_999_999)));
        for other in ["a:17", "17", "a:b:", "a:b:1x", "a:b:+1", ":1", "order-17"] {
            assert_eq!(producer_identity(other), None, "{other}");
        }
        // Those are still deduplicated, by hash.
        let mut window = DedupWindow::new(10);
        assert!(!window.check("a:17"));
        assert!(window.check("a:17"));
    }

    #[test]
    fn rows_far_below_the_span_are_forgotten_not_reported_as_seen() {
        let mut set = RowSet::default();
        assert!(!set.insert(5, 2));
        assert!(!set.insert(130, 2)); // three words: the first is forgotten
        assert_eq!(set.base, 64);
        assert!(!set.insert(5, 2), "forgotten: not known to be a duplicate");
        assert!(set.insert(130, 2));
        assert!(!set.insert(1_000_000, 2));
        assert!(set.insert(1_000_000, 2));
        assert!(!set.insert(200, 2));
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
