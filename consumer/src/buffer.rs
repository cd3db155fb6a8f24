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

/// Drops events seen recently by identity: producer retries and SQS redeliveries arrive close
/// together. Keeps the newest `capacity` identities (as 128-bit hashes: 16 bytes each, plus the
/// set's overhead); older duplicates are not caught here — positions guard restarts.
pub struct DedupWindow {
    capacity: usize,
    order: VecDeque<u128>,
    seen: HashSet<u128, PreHashed>,
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
        // Sized up front: growing a million-entry set rehashes it several times.
        let reserve = capacity.min(1 << 24);
        DedupWindow { capacity, order: VecDeque::with_capacity(reserve + 1), seen: HashSet::with_capacity_and_hasher(reserve + 1, PreHashed) }
    }

    /// True if `id` was seen in the window (a duplicate); remembers it otherwise.
    pub fn check(&mut self, id: &str) -> bool {
        if self.capacity == 0 {
            return false;
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
