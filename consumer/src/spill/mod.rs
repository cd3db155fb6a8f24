//! Buffered rows moved to a local scratch directory when memory runs short, so that the memory
//! bound never cuts an output file.
//!
//! Why spill rather than write the largest buffers early (what the consumer did before): a file
//! cut by memory pressure ends wherever the other partitions' buffers happened to fill memory,
//! so with 120 partitions open a 64 MiB bound cut every partition into ~90 small files, and the
//! files were no longer a function of the log. A spilled buffer stays open: its rows come back
//! when a data-driven trigger (rows, bytes, the flush interval, the partition closing) writes
//! it, and the file is the one an unbounded consumer would have written, byte for byte.
//!
//! Step by step:
//! 1. The directory is `<--spill-dir>/kappa-<table>-<hash>-<pid>`, the hash of the table's
//!    canonical location (its absolute path or `s3://` URL, not the `--lake` string as typed)
//!    and generation, and the process's id; the process holds a lock on its `lock` file while it
//!    runs. So neighbours never share one: two projects that both say `--lake ./lake --table
//!    sales` once shared one, and the second removed the first's spilled buffers. Opening the
//!    pipeline removes the directories of the same table whose lock nobody holds any more (their
//!    process ended; their rows are re-read from the log, the only durable copy), and leaves
//!    those of running processes alone. Dropping it (at exit) removes it.
//! 2. A spill writes one file, `<n>.spill`, holding each buffer spilled as a [`Segment`]: the
//!    buffer's batches as one batch's columns (laid out as [`layout`] says), so a buffer that
//!    received one row per chunk comes back as one batch. Scratch data needs no fsync: a crash
//!    discards it anyway.
//! 3. A file is deleted when the last segment in it is dropped, i.e. when the last buffer that
//!    spilled into it was written (or the run ends): the scratch space a run holds is what its
//!    open buffers hold, not everything it ever spilled.
//! 4. Where the file system allows it, spill files are written and read with `O_DIRECT`,
//!    bypassing the page cache: every spilled byte was otherwise copied into freshly allocated
//!    cache pages, and on this 2-core VM that copy was 10% of a 10M-row wide run (1.6 GB
//!    spilled: 1.7–2.5 s of system time written through the cache, 0.2 s direct). Scratch data
//!    is read back once, so the cache had nothing to offer. Direct I/O needs aligned memory,
//!    offsets and lengths: writes go through an aligned staging buffer, segments start at
//!    64-byte offsets (so that the arrays read back can point into the bytes read), and a read
//!    takes the 4 KiB-aligned span around a segment.

mod layout;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use kappa_common::direct_io::{AlignedBuf, DIRECT_ALIGN, is_unsupported, open_direct, probe_direct, read_exact_at};

/// Why a spill failed: the directory (and what to change) is in the message.
#[derive(Debug, thiserror::Error)]
#[error("spill directory {dir}: {source}; free space there or choose another with --spill-dir")]
pub struct SpillError {
    pub dir: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The scratch directory of one process writing one table generation.
#[derive(Debug)]
pub struct SpillDir {
    dir: PathBuf,
    next_file: u64,
    /// `<dir>.lock`, locked while this process runs: others take the directory for a live one's.
    lock: (PathBuf, File),
}

impl SpillDir {
    /// Creates this process's directory for the table generation at `location` (canonical)
    /// under `root`, and removes the ones of the same table that ended processes left.
    ///
    /// The lock comes first and lives beside the directory (`<dir>.lock`): a neighbour looking
    /// for leftovers never finds this directory without its lock held.
    pub fn open(root: &Path, table: &str, location: &str) -> Result<SpillDir, SpillError> {
        let family = dir_name(table, location);
        let dir = root.join(format!("{family}-{}", std::process::id()));
        let error = |source| SpillError { dir: dir.clone(), source };
        std::fs::create_dir_all(root).map_err(error)?;
        let lock_path = lock_of(&dir);
        // A neighbour checking whether this pid's directory is a leftover (a process before us
        // had this pid) holds the lock for a moment, and then removes the file: wait, and make
        // sure the lock held is the file's that is there.
        let mut attempts = 0;
        let lock = loop {
            let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(error)?;
            let locked = match lock.try_lock() {
                Ok(()) => {
                    use std::os::unix::fs::MetadataExt;
                    let held = lock.metadata().map_err(error)?.ino();
                    std::fs::metadata(&lock_path).is_ok_and(|there| there.ino() == held)
                }
                Err(std::fs::TryLockError::WouldBlock) => false,
                Err(e) => return Err(error(std::io::Error::other(e.to_string()))),
            };
            if locked {
                break lock;
            }
            attempts += 1;
            if attempts > 100 {
                return Err(error(std::io::Error::other(format!("could not lock {} within a second", lock_path.display()))));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        for entry in std::fs::read_dir(root).map_err(error)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let ours = name == family || name.strip_prefix(&family).and_then(|rest| rest.strip_prefix('-')).is_some_and(|pid| pid.parse::<u32>().is_ok());
            if !ours || entry.path() == dir || !entry.path().is_dir() {
                continue;
            }
            // Held while the directory and its lock file go: its owner is gone.
            let Some(_held) = stale_lock(&entry.path()) else { continue };
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::info!(dir = %entry.path().display(), "removed the scratch files of an earlier run"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SpillError { dir: entry.path(), source: e }),
            }
            let _ = std::fs::remove_file(lock_of(&entry.path()));
        }
        // Our own pid's directory is a leftover of a process that had it before (pids repeat).
        match std::fs::remove_dir_all(&dir) {
            Ok(()) | Err(_) => {}
        }
        std::fs::create_dir_all(&dir).map_err(error)?;
        Ok(SpillDir { dir, next_file: 0, lock: (lock_path, lock) })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Starts a spill file.
    pub fn writer(&mut self) -> Result<SpillWriter, SpillError> {
        self.writer_with(true)
    }

    /// Starts a spill file, written with `O_DIRECT` if `try_direct` and the file system has it.
    fn writer_with(&mut self, try_direct: bool) -> Result<SpillWriter, SpillError> {
        self.next_file += 1;
        let path = self.dir.join(format!("{:08}.spill", self.next_file));
        let error = |source| SpillError { dir: self.dir.clone(), source };
        // A file system without direct I/O refuses the flag at open (some tmpfs) or the first
        // aligned write (btrfs with sectors larger than a page): a block written at the start
        // (which the data then overwrites) tells before any data is staged.
        let direct = match try_direct {
            true => open_direct(OpenOptions::new().write(true).create_new(true), &path).and_then(|file| probe_direct(&file).map(|()| file)),
            false => Err(std::io::Error::from(std::io::ErrorKind::Unsupported)),
        };
        let (out, direct) = match direct {
            Ok(file) => (file, true),
            Err(e) if is_unsupported(&e) => (File::create(&path).map_err(error)?, false),
            Err(e) => return Err(error(e)),
        };
        let out = if direct {
            // The disk is written on a thread of its own: the pipeline only copies into staging
            // buffers (blocking writes had cost the pipeline ~1 s of a 10 s run). Written
            // blocks come back for reuse: a fresh megabyte per block was zeroed again.
            let (blocks, received) = std::sync::mpsc::sync_channel::<AlignedBuf>(BLOCKS_AHEAD);
            let (written, recycled) = std::sync::mpsc::channel::<AlignedBuf>();
            let thread = std::thread::Builder::new().name("kappa-spill-write".into()).spawn(move || {
                let mut out = out;
                for mut block in received {
                    out.write_all(block.as_mut_slice())?;
                    let _ = written.send(block);
                }
                Ok(())
            });
            Output::Direct { blocks, recycled, thread: thread.map_err(error)? }
        } else {
            Output::Buffered(out)
        };
        let file = Arc::new(SpillFile { path, direct, written: std::sync::Mutex::new(Written::Yes), reader: std::sync::OnceLock::new() });
        Ok(SpillWriter { file, out: Some(out), offset: 0, staging: AlignedBuf::new(STAGING), staged: 0 })
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove the spill directory");
        }
        // The directory first, then its lock: a directory is never without its lock while ours.
        let _ = std::fs::remove_file(&self.lock.0);
    }
}

/// One spill file; deleted when the last segment naming it is dropped.
#[derive(Debug)]
struct SpillFile {
    path: PathBuf,
    /// Written with `O_DIRECT` (and so read with it).
    direct: bool,
    /// Whether the writes have reached the file.
    written: std::sync::Mutex<Written>,
    /// The file opened for reading, once: with hour partitions a spill file holds thousands of
    /// segments, each read on its own (an `open` per segment was 564,000 of them for a
    /// 3M-row run by hour).
    reader: std::sync::OnceLock<File>,
}

#[derive(Debug)]
enum Written {
    Yes,
    /// By the file's writing thread, when it ends.
    Pending(std::thread::JoinHandle<std::io::Result<()>>),
    Failed(std::io::ErrorKind, String),
}

impl SpillFile {
    /// Waits for the file's writing thread, if any; its error, if it failed.
    fn wait_written(&self) -> std::io::Result<()> {
        let mut written = self.written.lock().expect("spill file state");
        if let Written::Pending(_) = &*written
            && let Written::Pending(thread) = std::mem::replace(&mut *written, Written::Yes)
        {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => *written = Written::Failed(e.kind(), e.to_string()),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        match &*written {
            Written::Failed(kind, message) => Err(std::io::Error::new(*kind, message.clone())),
            _ => Ok(()),
        }
    }

    /// The file, open for reading (with `O_DIRECT` if it was written so).
    fn reader(&self) -> std::io::Result<&File> {
        if let Some(file) = self.reader.get() {
            return Ok(file);
        }
        let file = match self.direct {
            true => open_direct(OpenOptions::new().read(true), &self.path)?,
            false => File::open(&self.path)?,
        };
        Ok(self.reader.get_or_init(|| file))
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        // NotFound: the directory was removed first (the run ended).
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes buffers into one spill file.
pub struct SpillWriter {
    file: Arc<SpillFile>,
    /// `None` once finished.
    out: Option<Output>,
    /// The file's logical length: where the next segment starts.
    offset: u64,
    staging: AlignedBuf,
    /// Bytes in `staging` not yet written.
    staged: usize,
}

enum Output {
    /// Written by the pipeline's thread, a full staging buffer at a time.
    Buffered(File),
    /// Full staging buffers, to the thread that writes them, and back once written.
    Direct {
        blocks: std::sync::mpsc::SyncSender<AlignedBuf>,
        recycled: std::sync::mpsc::Receiver<AlignedBuf>,
        thread: std::thread::JoinHandle<std::io::Result<()>>,
    },
}

/// Bytes written at once to a spill file.
const STAGING: usize = 1 << 20;
/// Staging buffers the writing thread may be behind by. A spill encodes its buffers in groups
/// on the workers, then copies them into staging buffers; with 2 the pipeline waited for the
/// disk after each group (43 ms a spill, 22 of them for the disk), with 8 the disk writes one
/// group while the workers encode the next.
const BLOCKS_AHEAD: usize = 8;
/// Where segments start in a spill file.
const SEGMENT_ALIGN: u64 = 64;

/// One buffer's rows, laid out for a spill file: a [`layout::Run`] per run of batches sharing a
/// schema (batches decoded before a schema change keep the older one). Made on any thread (a
/// spill lays out its buffers on every core); the values are copied only when written.
pub struct Encoded(Vec<layout::Run>);

impl Encoded {
    pub fn new(batches: &[RecordBatch]) -> Result<Encoded, ArrowError> {
        batches.chunk_by(|a, b| a.schema() == b.schema()).map(layout::Run::new).collect::<Result<_, _>>().map(Encoded)
    }
}

impl SpillWriter {
    /// Appends a buffer's rows; returns their segments, in order.
    pub fn write(&mut self, encoded: Encoded) -> Result<Vec<Segment>, std::io::Error> {
        let mut segments = Vec::with_capacity(encoded.0.len());
        for run in encoded.0 {
            self.pad_to(SEGMENT_ALIGN)?;
            let offset = self.offset;
            self.stage(&run.header)?;
            for buffer in &run.buffers {
                self.pad_to(layout::BUFFER_ALIGN)?;
                for piece in buffer {
                    self.stage(piece.as_slice())?;
                }
            }
            segments.push(Segment { file: self.file.clone(), offset, length: self.offset - offset, rows: run.rows, schema: run.schema });
        }
        Ok(segments)
    }

    /// Zeroes up to the next multiple of `align` (a segment's start is a multiple of each).
    fn pad_to(&mut self, align: u64) -> Result<(), std::io::Error> {
        const ZEROES: [u8; SEGMENT_ALIGN as usize] = [0; SEGMENT_ALIGN as usize];
        self.stage(&ZEROES[..(self.offset.next_multiple_of(align) - self.offset) as usize])
    }

    /// Copies `bytes` into the staging buffer, writing it out each time it fills.
    fn stage(&mut self, mut bytes: &[u8]) -> Result<(), std::io::Error> {
        self.offset += bytes.len() as u64;
        while !bytes.is_empty() {
            let n = bytes.len().min(STAGING - self.staged);
            self.staging.as_mut_slice()[self.staged..self.staged + n].copy_from_slice(&bytes[..n]);
            self.staged += n;
            bytes = &bytes[n..];
            if self.staged == STAGING {
                self.write_staged()?;
                self.staged = 0;
            }
        }
        Ok(())
    }

    /// Writes the full staging buffer, or hands it to the writing thread for a recycled one.
    fn write_staged(&mut self) -> Result<(), std::io::Error> {
        match &mut self.out {
            Some(Output::Buffered(out)) => out.write_all(self.staging.as_slice()),
            Some(Output::Direct { recycled, .. }) => {
                let next = recycled.try_recv().unwrap_or_else(|_| AlignedBuf::new(STAGING));
                let full = std::mem::replace(&mut self.staging, next);
                self.send(full)
            }
            None => unreachable!("a finished writer stages nothing"),
        }
    }

    /// Hands a block to the writing thread; its error if it has stopped.
    fn send(&mut self, block: AlignedBuf) -> Result<(), std::io::Error> {
        let Some(Output::Direct { blocks, .. }) = &self.out else { unreachable!("only direct files send blocks") };
        if blocks.send(block).is_ok() {
            return Ok(());
        }
        match self.out.take() {
            Some(Output::Direct { thread, .. }) => match thread.join() {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Err(std::io::Error::other("the spill writing thread ended early")),
                Err(panic) => std::panic::resume_unwind(panic),
            },
            _ => unreachable!("checked above"),
        }
    }

    /// Flushes the file: its segments can be read from here on. A direct file ends padded to
    /// a whole aligned block, so that every segment lies within aligned spans of it.
    pub fn finish(mut self) -> Result<u64, std::io::Error> {
        if let Some(Output::Buffered(out)) = &mut self.out {
            out.write_all(&self.staging.as_slice()[..self.staged])?;
        } else if self.staged > 0 {
            let end = self.staged.next_multiple_of(DIRECT_ALIGN);
            let mut tail = std::mem::replace(&mut self.staging, AlignedBuf::new(0));
            tail.as_mut_slice()[self.staged..end].fill(0);
            tail.truncate(end);
            self.send(tail)?;
        }
        match self.out.take() {
            Some(Output::Buffered(mut out)) => out.flush()?,
            // The segments' reads wait for the thread (and fail with its error).
            Some(Output::Direct { blocks, thread, .. }) => {
                drop(blocks);
                *self.file.written.lock().expect("spill file state") = Written::Pending(thread);
            }
            None => {}
        }
        Ok(self.offset)
    }
}

/// Rows of one buffer in a spill file.
#[derive(Debug, Clone)]
pub struct Segment {
    file: Arc<SpillFile>,
    offset: u64,
    length: u64,
    rows: usize,
    /// The rows' schema (the segment's header has only their layout).
    schema: SchemaRef,
}

impl Segment {
    pub fn bytes(&self) -> u64 {
        self.length
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Reads the rows back: arrays over the bytes read, aligned as they were written.
    pub fn read(&self) -> Result<Vec<RecordBatch>, ArrowError> {
        self.file.wait_written()?;
        let file = self.file.reader()?;
        let segment = if self.file.direct {
            // The aligned span around the segment (the file's end is padded to a block).
            let first = self.offset - self.offset % DIRECT_ALIGN as u64;
            let span = (self.offset + self.length).next_multiple_of(DIRECT_ALIGN as u64) - first;
            let (bytes, start) = AlignedBuf::read_at(file, span as usize, first)?.into_parts();
            Buffer::from_vec(bytes).slice_with_length(start + (self.offset - first) as usize, self.length as usize)
        } else {
            // Arrow's own allocation: aligned to 64 bytes, and no larger than the segment.
            let mut bytes = arrow::buffer::MutableBuffer::from_len_zeroed(self.length as usize);
            read_exact_at(file, bytes.as_slice_mut(), self.offset)?;
            bytes.into()
        };
        let batches = layout::read(segment, &self.schema)?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows != self.rows {
            return Err(ArrowError::IpcError(format!("spill segment: {rows} rows read back, {} written", self.rows)));
        }
        Ok(batches)
    }
}

/// The directories of a table generation at `location` start with this: a hash that stays the
/// same across builds and Rust versions (XXH3 is specified), so a restart finds those of the
/// runs before it.
fn dir_name(table: &str, location: &str) -> String {
    format!("kappa-{table}-{:016x}", xxhash_rust::xxh3::xxh3_64(location.as_bytes()))
}

/// The lock file of the scratch directory `dir`.
fn lock_of(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().expect("a scratch directory has a name").to_os_string();
    name.push(".lock");
    dir.with_file_name(name)
}

/// The lock of the scratch directory `dir`, taken, if no running process holds it: then `dir`
/// is a leftover. A directory without a lock file is one too (its owner takes the lock before
/// it makes the directory, and removes the directory before the lock); `Some(None)` then.
fn stale_lock(dir: &Path) -> Option<Option<File>> {
    match File::open(lock_of(dir)) {
        Ok(file) => match file.try_lock() {
            Ok(()) => Some(Some(file)),
            Err(_) => None,
        },
        Err(_) => Some(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(schema: &Arc<Schema>, from: i64, n: i64) -> RecordBatch {
        let ids = Int64Array::from_iter_values(from..from + n);
        let names = StringArray::from_iter((from..from + n).map(|i| (i % 3 != 0).then(|| format!("name {i}"))));
        RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(names)]).unwrap()
    }

    #[test]
    fn segments_read_back_in_order_and_files_go_when_their_last_segment_does() {
        let root = tempfile::tempdir().unwrap();
        // A killed run's directory (its lock is free), and a running neighbour's (locked).
        let killed = root.path().join(format!("{}-4000000000", dir_name("t", "lake")));
        std::fs::create_dir_all(&killed).unwrap();
        std::fs::write(lock_of(&killed), b"").unwrap();
        std::fs::write(killed.join("00000001.spill"), b"from a killed run").unwrap();
        let running = SpillDir::open(root.path(), "t", "lake").unwrap();
        assert!(!killed.exists(), "an earlier run's scratch files are removed");
        let mut dir = {
            // The same table opened again, as a second process would: its own directory.
            let other = root.path().join(format!("{}-4000000001", dir_name("t", "lake")));
            let lock = {
                let lock = File::create(lock_of(&other)).unwrap();
                lock.try_lock().unwrap();
                std::fs::create_dir_all(&other).unwrap();
                lock
            };
            std::fs::write(other.join("00000001.spill"), b"a neighbour's").unwrap();
            drop(running);
            let dir = SpillDir::open(root.path(), "t", "lake").unwrap();
            assert!(other.join("00000001.spill").exists(), "a running neighbour's scratch files stay");
            drop(lock);
            dir
        };

        let old = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true)]));
        let new = Arc::new(
            Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true)])
                .with_metadata([("version".to_string(), "2".to_string())].into()),
        );
        let mut writer = dir.writer().unwrap();
        let first = writer.write(Encoded::new(&[batch(&old, 0, 3), batch(&old, 3, 1), batch(&new, 4, 5)]).unwrap()).unwrap();
        let second = writer.write(Encoded::new(&[batch(&old, 100, 1000)]).unwrap()).unwrap();
        writer.finish().unwrap();
        assert_eq!(first.iter().map(Segment::rows).collect::<Vec<_>>(), vec![4, 5], "one segment per schema");
        let read: Vec<RecordBatch> = first.iter().flat_map(|s| s.read().unwrap()).collect();
        assert_eq!(read[0], batch(&old, 0, 4));
        assert_eq!(read[1], batch(&new, 4, 5));
        assert_eq!(second[0].read().unwrap(), vec![batch(&old, 100, 1000)]);

        let file = dir.path().join("00000001.spill");
        drop(first);
        assert!(file.exists(), "another segment still names the file");
        drop(second);
        assert!(!file.exists(), "the last segment took the file with it");
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists(), "the directory goes at the end of the run");
    }

    #[test]
    fn segments_across_staging_writes_and_odd_offsets_read_back() {
        let root = tempfile::tempdir().unwrap();
        let mut dir = SpillDir::open(root.path(), "t", "lake").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true)]));
        let mut writer = dir.writer().unwrap();
        // Where the temporary directory's file system has direct I/O (ext4, xfs), this is the
        // direct path; elsewhere the buffered one. Both must give the rows back.
        eprintln!("direct I/O: {}", writer.file.direct);
        // Sizes around the staging buffer and the alignments: 1 row, a few, >1 MiB, 3 rows.
        let sizes = [1, 7, 90_000, 3, 150_000, 1];
        let mut written = Vec::new();
        for (i, n) in sizes.into_iter().enumerate() {
            let rows = batch(&schema, i as i64 * 1_000_000, n);
            written.push((rows.clone(), writer.write(Encoded::new(&[rows]).unwrap()).unwrap()));
        }
        let end = writer.finish().unwrap();
        assert_eq!(end, written.last().map(|(_, s)| s[0].offset + s[0].length).unwrap());
        for (rows, segments) in written.iter().rev() {
            assert_eq!(segments[0].read().unwrap(), vec![rows.clone()]);
        }
    }

    #[test]
    fn buffers_of_slices_of_every_type_read_back_written_directly_or_not() {
        let root = tempfile::tempdir().unwrap();
        let mut dir = SpillDir::open(root.path(), "t", "lake").unwrap();
        for try_direct in [true, false] {
            let mut writer = dir.writer_with(try_direct).unwrap();
            assert!(try_direct || !writer.file.direct);
            // Enough buffers to fill several staging blocks, and segments at every alignment.
            let mut written = Vec::new();
            for seed in 0..40 {
                let batch = layout::tests::every_type(if seed % 2 == 0 { 3_000 } else { 1 + seed as usize }, seed);
                let slices = layout::tests::slices(&batch, seed);
                let expected = arrow::compute::concat_batches(&batch.schema(), &slices).unwrap();
                written.push((expected, writer.write(Encoded::new(&slices).unwrap()).unwrap()));
            }
            writer.finish().unwrap();
            for (expected, segments) in &written {
                let read: Vec<RecordBatch> = segments.iter().flat_map(|s| s.read().unwrap()).collect();
                assert_eq!(read, vec![expected.clone()], "direct: {try_direct}");
            }
        }
    }
}
