//! Appending to shards.
//!
//! Appends are encoded into one reusable buffer and written in chunks of about 1 MiB, so the
//! hot path makes no syscall and no allocation per record. Bytes reach the file at
//! [`ShardWriter::flush`] (or when the buffer is full) and are fsynced per [`FsyncPolicy`].
//!
//! Rotation keeps one invariant that recovery relies on: a segment is complete and fsynced
//! before the next one is created, so only the last segment can ever be torn by a crash. The
//! next segment is created lazily by the first append after rotation, which means a cleanly
//! closed shard never ends in an empty segment.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::background_sync::BackgroundSync;
use super::meta::sync_dir;
use super::recovery::{ScanMode, ScanSummary, scan_segment, truncate_torn};
use super::segment::{HEADER_LEN, MAGIC, MAX_KEY_LEN, MAX_PAYLOAD_LEN, encode_frame, list_segments, segment_path};
use super::{FsyncPolicy, LogConfig, LogError, shard_for_key};

/// The buffer is written to the file once it holds this much.
const WRITE_CHUNK: usize = 1 << 20;

struct OpenSegment {
    file: File,
    path: PathBuf,
    /// Bytes in the file (buffered bytes not included).
    len: u64,
}

/// The single writer of one shard. Dropping it writes buffered records to the file (no fsync);
/// use [`ShardWriter::close`] to also make them durable and see errors.
pub struct ShardWriter {
    shard: u32,
    dir: PathBuf,
    config: LogConfig,
    /// Held for the writer's life: the OS drops the lock when the file is closed, even if the
    /// process dies.
    _lock: File,
    /// `None` after a rotation until the next append creates the next segment.
    seg: Option<OpenSegment>,
    buf: Vec<u8>,
    next_seq: u64,
    last_arrival: i64,
    /// Bytes written to the segment file since its last fsync.
    file_dirty: bool,
    /// A segment was created since the directory's last fsync.
    dir_dirty: bool,
    last_sync: Instant,
    /// Set by a failed write or fsync: what reached the disk is then unknown, so the writer
    /// refuses further work and a new writer must recover the shard.
    poisoned: Option<String>,
    /// Runs `FsyncPolicy::Interval` fsyncs off this thread (None for other policies).
    background: Option<BackgroundSync>,
}

impl std::fmt::Debug for ShardWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardWriter")
            .field("shard", &self.shard)
            .field("dir", &self.dir)
            .field("next_seq", &self.next_seq)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl ShardWriter {
    pub(crate) fn open(dir: &Path, shard: u32, config: LogConfig) -> Result<ShardWriter, LogError> {
        let lock_path = dir.join(".lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| LogError::Io { path: lock_path.clone(), source })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LogError::Locked { shard, path: lock_path });
            }
            Err(TryLockError::Error(source)) => {
                return Err(LogError::Io { path: lock_path, source });
            }
        }
        let background_sync = matches!(config.fsync, FsyncPolicy::Interval(_)).then(|| BackgroundSync::start(shard));
        let mut w = ShardWriter {
            shard,
            dir: dir.to_path_buf(),
            config,
            _lock: lock,
            seg: None,
            buf: Vec::with_capacity(WRITE_CHUNK + (64 << 10)),
            next_seq: 0,
            last_arrival: i64::MIN,
            file_dirty: false,
            dir_dirty: false,
            last_sync: Instant::now(),
            poisoned: None,
            background: background_sync,
        };
        w.recover()?;
        Ok(w)
    }

    /// Validates the last segment, cuts a torn tail, and picks up its sequence number and
    /// arrival time. Earlier segments are not read: they were complete and fsynced before the
    /// last one was created.
    fn recover(&mut self) -> Result<(), LogError> {
        let bases = list_segments(&self.dir)?;
        let Some((&base, earlier)) = bases.split_last() else {
            return Ok(());
        };
        let path = segment_path(&self.dir, base);
        let sum = scan_segment(&path, base, ScanMode::Recover)?;
        if sum.torn_len.is_some() {
            truncate_torn(&path, &sum)?;
        }
        self.next_seq = base + sum.records;
        self.last_arrival = match (sum.last_arrival, earlier.last()) {
            (Some(t), _) => t,
            // An empty last segment (a crash right after it was created): the previous segment
            // holds the arrival time to continue from, and must end where this one starts.
            (None, Some(&prev)) => {
                let prev_path = segment_path(&self.dir, prev);
                let p: ScanSummary = scan_segment(&prev_path, prev, ScanMode::NotLast)?;
                if prev + p.records != base {
                    return Err(LogError::Corrupt {
                        path: path.clone(),
                        offset: 0,
                        reason: format!("segment starts at sequence number {base} but the previous one ends at {}", prev + p.records),
                    });
                }
                p.last_arrival.unwrap_or(i64::MIN)
            }
            (None, None) => i64::MIN,
        };
        if sum.end_off >= self.config.segment_bytes && sum.records > 0 {
            return Ok(()); // full: the next append starts a new segment
        }
        let file = OpenOptions::new().append(true).open(&path).map_err(|source| LogError::Io { path: path.clone(), source })?;
        // A torn header was replaced by a fresh one.
        let len = sum.end_off.max(HEADER_LEN);
        self.seg = Some(OpenSegment { file, path, len });
        Ok(())
    }

    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// The sequence number the next append will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Buffers one record and returns its sequence number. The stored arrival time is
    /// `max(arrival_ms, previous record's)`, so arrival times never decrease within a shard.
    pub fn append(&mut self, key: &[u8], payload: &[u8], arrival_ms: i64) -> Result<u64, LogError> {
        self.check()?;
        if key.len() > MAX_KEY_LEN {
            return Err(LogError::RecordTooLarge { what: "key", len: key.len(), max: MAX_KEY_LEN });
        }
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(LogError::RecordTooLarge { what: "payload", len: payload.len(), max: MAX_PAYLOAD_LEN });
        }
        if self.seg.is_none() {
            self.start_segment()?;
        }
        let seq = self.next_seq;
        let arrival = arrival_ms.max(self.last_arrival);
        encode_frame(&mut self.buf, seq, arrival, key, payload);
        self.next_seq += 1;
        self.last_arrival = arrival;
        let seg_len = self.seg.as_ref().map_or(0, |s| s.len);
        if seg_len + self.buf.len() as u64 >= self.config.segment_bytes {
            self.finish_segment()?;
        } else if self.buf.len() >= WRITE_CHUNK {
            self.write_buf()?;
        }
        Ok(seq)
    }

    /// Writes buffered records to the file (visible to readers from then on) and fsyncs if
    /// the [`FsyncPolicy`] says so.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.check()?;
        self.write_buf()?;
        match self.config.fsync {
            FsyncPolicy::Always => self.fsync(),
            FsyncPolicy::Interval(every) if self.last_sync.elapsed() >= every => self.fsync_in_background(),
            FsyncPolicy::Interval(_) | FsyncPolicy::Never => Ok(()),
        }
    }

    /// Hands the segment's fsync to the background thread (see `background_sync`); reports a
    /// failure of an earlier background fsync.
    fn fsync_in_background(&mut self) -> Result<(), LogError> {
        let Some(background) = self.background.as_ref() else { return self.fsync() };
        if let Some(err) = background.take_failure() {
            return Err(self.fail(err));
        }
        if self.dir_dirty {
            // Rare (once per new segment) and cheap: keep it simple and synchronous.
            if let Err(e) = sync_dir(&self.dir) {
                return Err(self.fail(e));
            }
            self.dir_dirty = false;
        }
        if self.file_dirty
            && let Some(seg) = self.seg.as_ref()
        {
            match background.request(&seg.file, &seg.path) {
                Ok(true) => {
                    self.file_dirty = false;
                    self.last_sync = Instant::now();
                }
                Ok(false) => {} // the previous fsync is still running; try at the next flush
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(())
    }

    /// Writes buffered records and fsyncs them (and the directory, if a segment was created).
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.check()?;
        self.write_buf()?;
        self.fsync()
    }

    /// Syncs and releases the shard.
    pub fn close(mut self) -> Result<(), LogError> {
        self.sync()
    }

    fn check(&self) -> Result<(), LogError> {
        match &self.poisoned {
            None => Ok(()),
            Some(cause) => Err(LogError::Poisoned { shard: self.shard, cause: cause.clone() }),
        }
    }

    fn fail(&mut self, err: LogError) -> LogError {
        self.poisoned = Some(err.to_string());
        err
    }

    fn start_segment(&mut self) -> Result<(), LogError> {
        let path = segment_path(&self.dir, self.next_seq);
        let created = OpenOptions::new().append(true).create_new(true).open(&path).and_then(|mut f| f.write_all(&MAGIC).map(|()| f));
        let file = match created {
            Ok(f) => f,
            Err(source) => return Err(self.fail(LogError::Io { path, source })),
        };
        self.seg = Some(OpenSegment { file, path, len: MAGIC.len() as u64 });
        self.dir_dirty = true;
        Ok(())
    }

    /// Rotation: the segment is complete, so make it durable now, before a successor exists.
    fn finish_segment(&mut self) -> Result<(), LogError> {
        self.write_buf()?;
        self.fsync()?;
        self.seg = None;
        Ok(())
    }

    fn write_buf(&mut self) -> Result<(), LogError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(seg) = self.seg.as_mut() else {
            return Err(self.fail(LogError::Poisoned { shard: self.shard, cause: "buffer without segment (bug)".into() }));
        };
        if let Err(source) = seg.file.write_all(&self.buf) {
            let path = seg.path.clone();
            return Err(self.fail(LogError::Io { path, source }));
        }
        seg.len += self.buf.len() as u64;
        self.buf.clear();
        self.file_dirty = true;
        Ok(())
    }

    fn fsync(&mut self) -> Result<(), LogError> {
        if let Some(background) = self.background.as_ref() {
            // A background fsync may hold an error for bytes this fsync would not cover.
            background.wait_idle();
            if let Some(err) = background.take_failure() {
                return Err(self.fail(err));
            }
        }
        if self.file_dirty
            && let Some(seg) = self.seg.as_ref()
        {
            if let Err(source) = seg.file.sync_data() {
                let path = seg.path.clone();
                return Err(self.fail(LogError::Io { path, source }));
            }
            self.file_dirty = false;
        }
        if self.dir_dirty {
            if let Err(e) = sync_dir(&self.dir) {
                return Err(self.fail(e));
            }
            self.dir_dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        if self.poisoned.is_none()
            && !self.buf.is_empty()
            && let Err(e) = self.write_buf()
        {
            tracing::warn!(shard = self.shard, error = %e, "log: could not write buffered records on drop");
        }
    }
}

/// Writers for every shard of a log, routing records by key.
#[derive(Debug)]
pub struct LogWriter {
    writers: Vec<ShardWriter>,
}

impl LogWriter {
    pub(crate) fn new(writers: Vec<ShardWriter>) -> LogWriter {
        LogWriter { writers }
    }

    pub fn shard_count(&self) -> u32 {
        self.writers.len() as u32
    }

    /// Same as [`Log::shard_for_key`](super::Log::shard_for_key).
    pub fn shard_for_key(&self, key: &[u8]) -> u32 {
        shard_for_key(key, self.shard_count())
    }

    /// Appends to the key's shard; returns `(shard, seq)`.
    pub fn append(&mut self, key: &[u8], payload: &[u8], arrival_ms: i64) -> Result<(u32, u64), LogError> {
        let shard = self.shard_for_key(key);
        let seq = self.writers[shard as usize].append(key, payload, arrival_ms)?;
        Ok((shard, seq))
    }

    /// The writer of one shard, e.g. to read its `next_seq`.
    pub fn shard(&mut self, shard: u32) -> Option<&mut ShardWriter> {
        self.writers.get_mut(shard as usize)
    }

    /// Flushes every shard (all are attempted); returns the first error.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.each(ShardWriter::flush)
    }

    /// Syncs every shard (all are attempted); returns the first error.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.each(ShardWriter::sync)
    }

    pub fn close(mut self) -> Result<(), LogError> {
        self.sync()
    }

    fn each(&mut self, mut op: impl FnMut(&mut ShardWriter) -> Result<(), LogError>) -> Result<(), LogError> {
        let mut first = None;
        for w in &mut self.writers {
            if let Err(e) = op(w) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
