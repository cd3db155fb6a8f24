//! Writing a flush: the sealed buffers' files, then the commit record that names them.
//!
//! The pipeline prepares a commit on its own thread (positions, quarantine file, archive
//! objects: everything that depends on what it has read so far) and hands over the rest:
//! encoding the files, storing them, and creating the commit record, in that order. For log,
//! Kinesis and raw sources that rest runs on a thread of its own while the pipeline routes the
//! next chunks; encoding had kept the pipeline waiting for 30% of bench/consumer.sh. Step by
//! step, why that is still exactly once:
//! 1. One commit at a time: the pipeline waits for the previous commit before preparing the
//!    next, so commit numbers, totals and positions build on a durable predecessor.
//! 2. A prepared commit's positions cover only the events it writes or that were read before
//!    it: what the pipeline reads meanwhile lies after its resume point, so a crash before the
//!    next commit re-reads it.
//! 3. Nothing is acknowledged to a source before its commit is durable: SQS, whose deletes
//!    follow commits, writes in the foreground.
//! 4. A failed write surfaces at the next wait and stops the consumer; the objects it stored
//!    are named by no commit and removed on restart.

use std::thread::JoinHandle;

use arrow::datatypes::SchemaRef;
use rayon::prelude::*;
use tokio::runtime::Handle;

use crate::buffer::Buffer;
use crate::error::PipelineError;
use crate::parquet_file::{self, Codec};
use kappa_table::{Commit, DataFile, Layout, Table, TableError};

/// A commit whose files are still to be written: `commit.added` is empty and its totals count
/// the files' rows but not their bytes.
pub struct PreparedCommit {
    pub commit: Commit,
    /// Each file's path, partition and rows.
    pub files: Vec<(String, String, Buffer)>,
}

/// What writing needs besides the commit.
pub struct WriteContext {
    pub table: Table,
    pub runtime: Handle,
    /// The rows' schema, and the files' (partition-key collisions renamed).
    pub data: SchemaRef,
    pub file_schema: SchemaRef,
    pub codec: Codec,
    /// The table's schema at the commit's version, and its layout: a commit that creates the
    /// Delta table or grows its schema records them.
    pub schema: kappa_common::schema::TableSchema,
    pub layout: Layout,
    /// Bytes of rows (in memory or read back from the scratch directory) encoded at once.
    pub memory_budget: usize,
}

/// Encodes the files (on every core), stores them, then creates the commit record.
pub fn write(prepared: PreparedCommit, context: &WriteContext) -> Result<Commit, PipelineError> {
    let started = std::time::Instant::now();
    let PreparedCommit { mut commit, files } = prepared;
    let mut encode_time = std::time::Duration::ZERO;
    // The files are stored PARALLEL_PUTS at a time: S3 round trips (and local fsyncs) overlap.
    let _runtime = context.runtime.enter();
    let mut puts = tokio::task::JoinSet::new();
    let mut files = files.into_iter().peekable();
    while files.peek().is_some() {
        // Files are independent: encoded on every core (rayon's pool, which decoding shares),
        // a group at a time, so that the rows read back from the scratch directory stay
        // within the memory budget however much was spilled.
        let mut group = Vec::new();
        let mut group_memory = 0;
        while let Some((_, _, buffer)) = files.peek() {
            let memory = buffer.memory + buffer.spilled_bytes() as usize;
            if !group.is_empty() && (group_memory + memory > context.memory_budget || group.len() >= GROUP_FILES) {
                break;
            }
            group_memory += memory;
            group.extend(files.next());
        }
        let encoding = std::time::Instant::now();
        let encoded: Vec<_> = group
            .into_par_iter()
            .map(|(path, partition, buffer)| {
                let batches = buffer.load()?;
                drop(buffer); // its scratch file goes once no other buffer needs it
                let (data, rows) = parquet_file::encode(&batches, &context.data, &context.file_schema, context.codec)?;
                // Readers skip files by the statistics our own footer already holds.
                let footer = parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&data)?;
                Ok::<_, PipelineError>((path, partition, data, rows, kappa_table::stats::from_footer(&footer)))
            })
            .collect();
        encode_time += encoding.elapsed();
        for encoded in encoded {
            let (path, partition, data, rows, stats) = encoded?;
            let bytes = data.len() as u64;
            commit.totals.bytes += bytes;
            commit.added.push(DataFile { path: path.clone(), partition, rows, bytes, stats });
            if puts.len() >= PARALLEL_PUTS {
                context.runtime.block_on(next_put(&mut puts)).expect("a put is running")?;
            }
            let table = context.table.clone();
            puts.spawn(async move { table.put_object(&path, data).await });
        }
    }
    while let Some(put) = context.runtime.block_on(next_put(&mut puts)) {
        put?;
    }
    let stored_at = started.elapsed();
    context.runtime.block_on(context.table.commit(&commit, &context.schema, &context.layout))?;
    tracing::debug!(commit = commit.commit, files = commit.added.len(), encode = ?encode_time, store = ?(stored_at - encode_time), elapsed = ?started.elapsed(), "committed");
    Ok(commit)
}

/// Files encoded at once at most: the encoded files wait for their puts, and a commit of
/// thousands of small files (hour partitions) held them all (tens of MiB) before the first put.
const GROUP_FILES: usize = 32;

/// Files stored at once by a commit.
const PARALLEL_PUTS: usize = 8;

async fn next_put(puts: &mut tokio::task::JoinSet<Result<(), TableError>>) -> Option<Result<(), TableError>> {
    let put = puts.join_next().await?;
    Some(put.unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic())))
}

/// A commit being written on its own thread.
pub struct InFlight(JoinHandle<Result<Commit, PipelineError>>);

impl InFlight {
    pub fn start(prepared: PreparedCommit, context: WriteContext) -> InFlight {
        let thread = std::thread::Builder::new().name("kappa-commit".into()).spawn(move || write(prepared, &context)).expect("spawn the commit thread");
        InFlight(thread)
    }

    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Waits for the commit to be durable.
    pub fn wait(self) -> Result<Commit, PipelineError> {
        self.0.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}
