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
use crate::claims::{CompetingCommit, Peers, Rebuild};
use crate::error::PipelineError;
use crate::origin::Run;
use crate::parquet_file;
use crate::puts::Puts;
use crate::settings::{Codec, PutLimit};
use kappa_table::{Commit, DataFile, Layout, Table, TableError};

/// A commit whose files are still to be written: `commit.added` is empty and its totals count
/// the files' rows but not their bytes.
pub struct PreparedCommit {
    pub commit: Commit,
    /// The files, in order.
    pub files: Vec<PendingFile>,
    /// For a consumer competing for an SQS queue: what a rebuild needs if another consumer's
    /// commit comes first (see [`crate::claims`]).
    pub competing: Option<CompetingCommit>,
}

/// A file of a commit, to be written: its path, its partition, its rows (one buffer's, or a
/// partition's from several shards, in order) and for those, where each buffer's rows came
/// from (see [`crate::origin`]).
pub struct PendingFile {
    pub path: String,
    pub partition: String,
    pub buffers: Vec<Buffer>,
    pub origin: Option<Vec<Run>>,
}

/// A durable commit, and what other consumers of the queue had stored that it learnt on the
/// way (a competing consumer's deduplication takes it in).
pub struct Written {
    pub commit: Commit,
    pub peers: Vec<kappa_table::Claims>,
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
    /// How many files are stored at once.
    pub puts: PutLimit,
}

/// Encodes the files (on every core), stores them, then creates the commit record.
///
/// Three stages run at once, so that neither core waits on the scratch directory or on a
/// group's slowest file (groups with a barrier after each kept 1.25 of 2 cores busy while a
/// wide, unordered run wrote its 480 files):
/// 1. reader threads load each file's rows from memory and the scratch directory, in order
///    of the files they take, as far ahead as the memory budget allows;
/// 2. rayon's pool (which decoding shares) encodes the loaded files as they come, in any order;
/// 3. this thread stores each encoded file and lists it in the commit, in the files' order. Puts
///    overlap up to `context.puts` (see [`PutLimit`]): a commit of thousands of small files
///    to S3 pays one round trip per file, and 64 of them at once take ~1/64 of the time.
pub fn write(prepared: PreparedCommit, context: &WriteContext) -> Result<Written, PipelineError> {
    let started = std::time::Instant::now();
    let PreparedCommit { mut commit, files, mut competing } = prepared;
    let mut puts = Puts::new(&context.runtime, context.puts).durable_later();
    let mut added = Vec::with_capacity(files.len());
    let budget = Budget::new(context.memory_budget);
    let files = std::sync::Mutex::new(files.into_iter().enumerate());
    std::thread::scope(|scope| -> Result<(), PipelineError> {
        let (loaded_tx, loaded_rx) = std::sync::mpsc::sync_channel(GROUP_FILES);
        let (encoded_tx, encoded_rx) = std::sync::mpsc::sync_channel(ENCODED_AHEAD);
        let budget = &budget;
        for _ in 0..LOADERS {
            let (files, loaded_tx) = (&files, loaded_tx.clone());
            scope.spawn(move || {
                loop {
                    let next = files.lock().expect("files to load").next();
                    let Some((index, PendingFile { path, partition, buffers, origin })) = next else { return };
                    let memory = buffers.iter().map(Buffer::load_memory).sum();
                    budget.acquire(memory);
                    let batches = buffers.iter().map(Buffer::load).collect::<Result<Vec<_>, _>>().map(|loaded| loaded.into_iter().flatten().collect());
                    drop(buffers); // their scratch files go once no other buffer needs them
                    if loaded_tx.send((index, path, partition, origin, memory, batches)).is_err() {
                        budget.release(memory);
                        return; // the commit failed: nothing more to load
                    }
                }
            });
        }
        drop(loaded_tx);
        scope.spawn(move || {
            loaded_rx.into_iter().par_bridge().for_each_with(encoded_tx, |encoded_tx, (index, path, partition, origin, memory, batches)| {
                let encoded = batches.map_err(PipelineError::from).and_then(|batches: Vec<_>| {
                    // Readers skip files by the statistics our own footer holds.
                    let encoded = parquet_file::encode(&batches, &context.data, &context.file_schema, context.codec, origin.as_deref())?;
                    Ok((index, path, partition, encoded))
                });
                budget.release(memory);
                let _ = encoded_tx.send(encoded);
            });
        });
        for encoded in encoded_rx {
            let (index, path, partition, parquet_file::Encoded { data, rows, stats }) = encoded?;
            let bytes = data.len();
            commit.totals.bytes += bytes as u64;
            added.push((index, DataFile { path: path.clone(), partition, rows, bytes: bytes as u64, stats }));
            puts.store(&context.table, path, data)?;
        }
        Ok(())
    })?;
    puts.wait_all()?;
    added.sort_unstable_by_key(|(index, _)| *index);
    commit.added.extend(added.into_iter().map(|(_, mut file)| {
        if let Some(stored) = puts.stored_path(&file.path) {
            file.path = stored.to_string();
        }
        file
    }));
    // Every file the commit names is durable before the commit is written.
    context.runtime.block_on(context.table.sync_objects())?;
    let stored_at = started.elapsed();
    let mut peers = Vec::new();
    let mut tries = 0;
    loop {
        if let Some(competing) = &competing {
            crate::claims::claim_totals(&mut commit, competing);
        }
        match context.runtime.block_on(context.table.commit(&commit, &context.schema, &context.layout)) {
            Ok(()) => break,
            // Another consumer of the queue committed first: what it stored leaves this commit
            // (see `crate::claims`), which then goes on top of it.
            Err(TableError::PeerCommitted { .. }) if tries < crate::claims::MAX_TRIES => {
                tries += 1;
                let Some(competing) = competing.as_mut() else { unreachable!("only a competing consumer's commit follows its peers") };
                let claims = context.runtime.block_on(context.table.peer_claims())?;
                let known = Peers::new(&claims).map_err(|reason| TableError::Invalid { table: context.table.name().to_string(), reason })?;
                if !claims.is_empty() {
                    let how = Rebuild { table: &context.table, runtime: &context.runtime, codec: context.codec };
                    let dropped = crate::claims::resolve(&mut commit, competing, &known, &claims, &how)?;
                    if dropped > 0 {
                        tracing::info!(rows = dropped, "another consumer of the queue stored some of this commit's rows first: they were taken out");
                    }
                }
                peers.extend(claims);
            }
            Err(e) => return Err(e.into()),
        }
    }
    tracing::debug!(commit = commit.commit, files = commit.added.len(), stored = ?stored_at, elapsed = ?started.elapsed(), tries, "committed");
    Ok(Written { commit, peers })
}

/// Bytes of loaded rows the encoders hold, bounded: the reader waits while the files loaded
/// and not yet encoded would pass the budget (one file larger than all of it goes alone).
struct Budget {
    limit: usize,
    held: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Budget {
    fn new(limit: usize) -> Budget {
        Budget { limit, held: std::sync::Mutex::new(0), freed: std::sync::Condvar::new() }
    }

    fn acquire(&self, bytes: usize) {
        let mut held = self.held.lock().expect("budget");
        while *held > 0 && *held + bytes > self.limit {
            held = self.freed.wait(held).expect("budget");
        }
        *held += bytes;
    }

    fn release(&self, bytes: usize) {
        *self.held.lock().expect("budget") -= bytes;
        self.freed.notify_all();
    }
}

/// Threads loading files' rows: a buffer spilled under memory pressure comes back from dozens
/// of places in the scratch directory, each a read of a few KiB from the disk (direct I/O):
/// one thread waited for each in turn.
const LOADERS: usize = 4;

/// Files loaded ahead of the encoders at most: a commit of thousands of small files (hour
/// partitions) would otherwise hold them all (tens of MiB) at once.
const GROUP_FILES: usize = 32;

/// Encoded files waiting for their put, at most.
const ENCODED_AHEAD: usize = 8;

/// A commit being written on its own thread.
pub struct InFlight(JoinHandle<Result<Written, PipelineError>>);

impl InFlight {
    pub fn start(prepared: PreparedCommit, context: WriteContext) -> InFlight {
        let thread = std::thread::Builder::new().name("kappa-commit".into()).spawn(move || write(prepared, &context)).expect("spawn the commit thread");
        InFlight(thread)
    }

    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Waits for the commit to be durable.
    pub fn wait(self) -> Result<Written, PipelineError> {
        self.0.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}
