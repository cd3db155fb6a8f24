//! The embedded log: a durable, sharded, append-only record log in a local directory, the
//! cloud-free default source of truth (`log:PATH`).
//!
//! ```text
//! <dir>/log.json                   format version and shard count, written at creation
//! <dir>/shapes/<id>.json           member names of shaped events (see [`crate::shaped`])
//! <dir>/shard-0000/.lock           held (flock) by the shard's one writer
//! <dir>/shard-0000/00000000000000000000.seg   segments, named by their first sequence number
//! <dir>/shard-0001/...
//! ```
//!
//! Each shard is an independent sequence of records numbered 0, 1, 2, ... (never reused, no
//! gaps). Records are routed to shards by key ([`Log::shard_for_key`]). A shard has at most one
//! writer at a time, in any process (enforced with a lock file), and any number of readers in
//! any process, which follow the tail while the writer appends. The byte format is documented
//! in [`segment`](self::segment).
//!
//! Durability: appends are buffered in memory and written in large chunks; [`ShardWriter::flush`]
//! hands them to the OS (then visible to readers, and safe from a process crash) and fsyncs
//! according to [`FsyncPolicy`]; [`ShardWriter::sync`] always fsyncs. A crash (of the process or
//! the machine) can tear only the end of the last segment; the next writer to open the shard
//! cuts the torn bytes (with a warning). Damage anywhere else is reported as
//! [`LogError::Corrupt`], never skipped.

mod background_sync;
mod meta;
mod reader;
mod recovery;
pub mod segment;
mod shapes;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use reader::ShardReader;

use crate::shaped::Shape;
pub use segment::{MAX_KEY_LEN, MAX_PAYLOAD_LEN};
pub use writer::{LogWriter, ShardWriter};

/// Errors of the embedded log. Each names the file or shard concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("I/O error on {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error("log corrupt: {} at byte offset {offset}: {reason}", path.display())]
    Corrupt { path: PathBuf, offset: u64, reason: String },

    #[error(
        "shard {shard} already has a writer (lock {} is held, by this or another process); \
         a shard takes one writer at a time",
        path.display()
    )]
    Locked { shard: u32, path: PathBuf },

    #[error(
        "the log at {} has {existing} shards, not the {requested} asked for; \
         ask for {existing} (the shard count of a log is fixed when it is created)",
        path.display()
    )]
    ShardCountMismatch { path: PathBuf, existing: u32, requested: u32 },

    #[error(
        "no log at {} (no log.json there); create it first, e.g. `kappa-producer --create --shards N`",
        path.display()
    )]
    NotALog { path: PathBuf },

    #[error("a log already exists at {}", path.display())]
    AlreadyExists { path: PathBuf },

    #[error("log metadata {} is invalid: {reason}", path.display())]
    BadMetadata { path: PathBuf, reason: String },

    #[error(
        "a record is of shape {id:016x}, but {} does not exist: the log directory is incomplete \
         (copied without its shapes/ directory?)",
        path.display()
    )]
    MissingShape { id: u64, path: PathBuf },

    #[error("a shaped event does not fit its shape {id:016x}: {source}")]
    BadShapedEvent { id: u64, source: crate::shaped::ShapedError },

    #[error("invalid shard count {shards}: a log has 1 to {max} shards")]
    InvalidShardCount { shards: u32, max: u32 },

    #[error("shard {shard} does not exist: the log has {shards} shards (0..{shards})")]
    NoSuchShard { shard: u32, shards: u32 },

    #[error("record {what} of {len} bytes is too large (at most {max} bytes)")]
    RecordTooLarge { what: &'static str, len: usize, max: usize },

    #[error(
        "the writer of shard {shard} failed earlier ({cause}) and can no longer be used; \
         open a new writer, which recovers the shard"
    )]
    Poisoned { shard: u32, cause: String },
}

/// When a writer fsyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// At every [`ShardWriter::flush`].
    Always,
    /// At a flush if at least this long has passed since the last fsync, on a background
    /// thread so appends go on meanwhile: at most this interval plus one fsync is unsynced.
    Interval(Duration),
    /// Only at [`ShardWriter::sync`], [`ShardWriter::close`] and segment rotation.
    Never,
}

/// Writer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment is closed and a new one started once it holds at least this many bytes
    /// (checked after each record, so a segment overshoots by at most one record).
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
}

impl Default for LogConfig {
    /// 128 MiB segments, fsync at most once a second.
    fn default() -> Self {
        LogConfig { segment_bytes: 128 << 20, fsync: FsyncPolicy::Interval(Duration::from_secs(1)) }
    }
}

/// Where a reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The first record of the shard.
    Earliest,
    /// The first record whose sequence number is `>= n` (waits for it if `n` is past the end).
    AtSequence(u64),
    /// The first record whose sequence number is `> n`.
    AfterSequence(u64),
    /// The first record whose arrival time (ms since the Unix epoch) is `>= t`.
    ArrivalTime(i64),
    /// Only records that become visible after the reader was opened.
    Latest,
}

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub shard: u32,
    pub seq: u64,
    /// Milliseconds since the Unix epoch, as stored (never decreasing within a shard).
    pub arrival_ms: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// A handle on a log directory; cheap to clone.
#[derive(Debug, Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    shards: u32,
    /// Per shard, how far [`Log::shard_end`] last scanned its last segment.
    scanned: Mutex<HashMap<u32, Scanned>>,
    shapes: shapes::ShapeCache,
}

#[derive(Debug, Clone, Copy)]
struct Scanned {
    /// The segment's first sequence number (its name).
    base: u64,
    file: FileIdentity,
    /// File offset just past its last whole record, and the records before it.
    end_off: u64,
    records: u64,
}

/// Which file a path named when it was scanned, and its length then.
#[derive(Debug, Clone, Copy)]
struct FileIdentity {
    /// (device, inode) where the platform has them.
    id: Option<(u64, u64)>,
    len: u64,
}

impl FileIdentity {
    fn of(path: &Path) -> Result<FileIdentity, LogError> {
        let meta = std::fs::metadata(path).map_err(|source| LogError::Io { path: path.to_path_buf(), source })?;
        #[cfg(unix)]
        let id = {
            use std::os::unix::fs::MetadataExt;
            Some((meta.dev(), meta.ino()))
        };
        #[cfg(not(unix))]
        let id = None;
        Ok(FileIdentity { id, len: meta.len() })
    }

    fn same_file(&self, other: &FileIdentity) -> bool {
        self.id == other.id
    }
}

impl Log {
    /// Creates a new log with `shards` shards at `dir` (created if missing).
    /// Fails with [`LogError::AlreadyExists`] if a log is already there.
    pub fn create(dir: &Path, shards: u32) -> Result<Log, LogError> {
        meta::create(dir, shards)?;
        Ok(Log::new(dir, shards))
    }

    /// Opens an existing log. Fails with [`LogError::NotALog`] if there is none.
    pub fn open(dir: &Path) -> Result<Log, LogError> {
        let shards = meta::read(dir)?;
        Ok(Log::new(dir, shards))
    }

    /// Opens the log at `dir`, creating it with `shards` shards if there is none.
    /// Fails with [`LogError::ShardCountMismatch`] if it exists with another shard count.
    pub fn open_or_create(dir: &Path, shards: u32) -> Result<Log, LogError> {
        let log = match Log::open(dir) {
            Err(LogError::NotALog { .. }) => match Log::create(dir, shards) {
                // Another process created it between our two steps.
                Err(LogError::AlreadyExists { .. }) => Log::open(dir)?,
                other => return other,
            },
            other => other?,
        };
        if log.shard_count() != shards {
            return Err(LogError::ShardCountMismatch { path: dir.to_path_buf(), existing: log.shard_count(), requested: shards });
        }
        Ok(log)
    }

    fn new(dir: &Path, shards: u32) -> Log {
        Log { inner: Arc::new(Inner { dir: dir.to_path_buf(), shards, scanned: Mutex::new(HashMap::new()), shapes: Default::default() }) }
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn shard_count(&self) -> u32 {
        self.inner.shards
    }

    /// The shard a key belongs to: `xxh3_64(key) % shard_count`, with XXH3-64 at seed 0.
    /// This is part of the format: the same key maps to the same shard in every version.
    pub fn shard_for_key(&self, key: &[u8]) -> u32 {
        shard_for_key(key, self.inner.shards)
    }

    /// Takes the shard's single-writer lock (failing with [`LogError::Locked`] if any writer
    /// holds it, in any process), repairs a torn tail left by a crash, and returns its writer.
    pub fn writer(&self, shard: u32, config: &LogConfig) -> Result<ShardWriter, LogError> {
        ShardWriter::open(&self.shard_dir(shard)?, shard, config.clone())
    }

    /// Writers for all shards, routing each record by its key.
    pub fn writers(&self, config: &LogConfig) -> Result<LogWriter, LogError> {
        let writers = (0..self.shard_count()).map(|s| self.writer(s, config)).collect::<Result<_, _>>()?;
        Ok(LogWriter::new(writers))
    }

    /// A reader of one shard. Readers take no lock; any number may run beside the writer.
    pub fn reader(&self, shard: u32, start: StartAt) -> Result<ShardReader, LogError> {
        ShardReader::open(self.shard_dir(shard)?, shard, start)
    }

    /// The first sequence number the shard still holds (its first segment's name), or `None`
    /// while it has no segment: records before it are gone.
    pub fn first_retained(&self, shard: u32) -> Result<Option<u64>, LogError> {
        Ok(segment::list_segments(&self.shard_dir(shard)?)?.first().copied())
    }

    /// The sequence number the next record of the shard will get, as far as the files show:
    /// the number of records ever written and flushed. Records still buffered in a live
    /// writer are not counted. Reads the shard's last segment.
    pub fn shard_end(&self, shard: u32) -> Result<u64, LogError> {
        let dir = self.shard_dir(shard)?;
        let Some(&base) = segment::list_segments(&dir)?.last() else {
            return Ok(0);
        };
        // Segments only grow: the scan goes on from where the last one of this segment
        // ended. Scanning a 128 MiB segment whole cost ~40 ms per shard, at each status line.
        // A file that is not the one scanned (replaced, or shorter than what was read) is
        // scanned whole again.
        let path = segment::segment_path(&dir, base);
        let file = FileIdentity::of(&path)?;
        let from = self
            .inner
            .scanned
            .lock()
            .expect("scan cache")
            .get(&shard)
            .filter(|s| s.base == base && s.file.same_file(&file) && file.len >= s.end_off)
            .map_or((0, 0), |s| (s.end_off, s.records));
        let sum = recovery::scan_segment_from(&path, base, recovery::ScanMode::Live, from.0, from.1)?;
        self.inner.scanned.lock().expect("scan cache").insert(shard, Scanned { base, file, end_off: sum.end_off, records: sum.records });
        Ok(base + sum.records)
    }

    /// Stores `shape` durably in the log, unless it is already there: a writer does this
    /// before its first record of that shape (see [`crate::shaped`]).
    pub fn store_shape(&self, shape: &Shape) -> Result<(), LogError> {
        self.inner.shapes.store(&self.inner.dir, shape)
    }

    /// The shape a shaped record names.
    pub fn shape(&self, id: u64) -> Result<Arc<Shape>, LogError> {
        self.inner.shapes.get(&self.inner.dir, id)
    }

    /// A record's event as the JSON object it is everywhere else: the payload itself, or the
    /// object a shaped event stands for.
    pub fn event_object<'a>(&self, payload: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, LogError> {
        let Some((id, values)) = crate::shaped::split_shaped(payload) else { return Ok(std::borrow::Cow::Borrowed(payload)) };
        let mut object = Vec::new();
        self.shape(id)?.write_object(values, &mut object).map_err(|source| LogError::BadShapedEvent { id, source })?;
        Ok(std::borrow::Cow::Owned(object))
    }

    fn shard_dir(&self, shard: u32) -> Result<PathBuf, LogError> {
        if shard >= self.inner.shards {
            return Err(LogError::NoSuchShard { shard, shards: self.inner.shards });
        }
        Ok(meta::shard_dir(&self.inner.dir, shard))
    }
}

pub(crate) fn shard_for_key(key: &[u8], shards: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(key) % u64::from(shards)) as u32
}
