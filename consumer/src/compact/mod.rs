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
//! 2. Its rows are read back in (shard, position) order, which a file of one buffer says in
//!    its name (`part-<shard>-<first>-<last>`) and a file of several shards in its footer
//!    (see `crate::origin`; rows of files that say neither come last, file by file in name
//!    order), and written as row groups of [`ROW_GROUP_ROWS`]; a file is closed after the row
//!    group that takes it past the target size, its own origin in its footer. Output depends
//!    only on the rows and their order, and is named after the shards' position ranges: a
//!    replayed generation compacts to the same files, byte for byte, as the live one, however
//!    differently their flushes cut them, and a partition compacted again with newer files
//!    gets the bytes it would have had compacted once. Small partitions (hours: thousands of a few KiB each) are merged several at once, one
//!    per core, their files read concurrently first; a large one alone, a file read at a time.
//!    Either way a partition's files are the same bytes, and they are committed in partition
//!    order.
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

use kappa_table::writers::Writer;
use kappa_table::{DataFile, LiveFile, Table, TableError};
use tokio::runtime::Handle;

use crate::puts::Puts;
use crate::settings::{CompactOptions, PutLimit};

mod merge;
mod order;
use merge::{SMALL_PARTITION, merge, merge_small, units};

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

impl Batch {
    /// Names each merged file as it was stored (another name if other bytes had its own).
    fn stored_as(&mut self, puts: &Puts<'_>) {
        for file in &mut self.added {
            if let Some(stored) = puts.stored_path(&file.path) {
                file.path = stored.to_string();
            }
        }
    }
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
        let small = SMALL_PARTITION.min(options.target_file_size);
        for unit in units(chosen.iter().map(|(_, _, bytes)| *bytes), small) {
            if stop() {
                break;
            }
            let partitions = &chosen[unit];
            // Read as far as the plans need (a large partition's footers; a unit of small ones
            // whole), planned, announced (one write of the writer record, before any merged
            // file is stored), merged.
            let (plans, contents) = match partitions {
                [(_, files, bytes)] if *bytes > small => (vec![plan_large(runtime, table, files, &settings)?], None),
                _ => {
                    let paths: Vec<&str> = partitions.iter().flat_map(|(_, files, _)| files.iter().map(|f| f.path.as_str())).collect();
                    let contents = merge::read_all(runtime, table, &paths)?;
                    let mut read = contents.iter().zip(&paths);
                    let mut plans = Vec::with_capacity(partitions.len());
                    for (_, files, _) in partitions {
                        let origins = read.by_ref().take(files.len()).map(|(bytes, path)| origin(path, || Ok(bytes.clone()))).collect::<Result<Vec<_>, _>>()?;
                        plans.push(order::plan(files, &origins, &settings));
                    }
                    (plans, Some(contents))
                }
            };
            let prefixes: Vec<String> =
                partitions.iter().zip(&plans).map(|((partition, ..), plan)| format!("{}/{partition}/{}", table.generation(), plan.base)).collect();
            runtime.block_on(writer.pending_all(&prefixes))?;
            let merged = match (partitions, contents) {
                ([(partition, files, _)], None) => vec![merge(table, &mut puts, partition, &plans[0], files, &data, options)?],
                (_, contents) => merge_small(table, &mut puts, partitions, &plans, contents.unwrap_or_default(), &data, options)?,
            };
            for (((partition, files, bytes), prefix), merged) in partitions.iter().zip(&prefixes).zip(merged) {
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
                    batch.stored_as(&puts);
                    commit(runtime, table, writer, std::mem::take(&mut batch), &mut report)?;
                }
            }
        }
    }
    puts.wait_all()?;
    batch.stored_as(&puts);
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

/// How often a pass says how far it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Merged files stored at once (see [`Puts`]), and the bytes in flight while the next file is
/// merged: a merged file of the target size is stored before the next one is begun (memory
/// holds one), and small ones add at most this much.
const PUT_LIMIT: PutLimit = PutLimit { files: 32, bytes: 64 << 20 };

/// The plan of a large partition (see [`order::plan`]): the footers of its files that are not
/// one buffer's (named after it), read one at a time.
fn plan_large(runtime: &Handle, table: &Table, files: &[LiveFile], settings: &str) -> Result<order::Plan, CompactError> {
    let origins = files.iter().map(|f| origin(&f.path, || Ok(runtime.block_on(table.get_object(&f.path))?))).collect::<Result<Vec<_>, _>>()?;
    Ok(order::plan(files, &origins, settings))
}

/// What a file's footer says of its origin (see [`crate::origin`]): nothing for a file named
/// after its one buffer, which is not read.
fn origin(path: &str, contents: impl FnOnce() -> Result<bytes::Bytes, CompactError>) -> Result<Option<Vec<crate::origin::Run>>, CompactError> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if crate::buffer::parse_file_name(name).is_some() {
        return Ok(None);
    }
    merge::origin_of(path, &contents()?)
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
