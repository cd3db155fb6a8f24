//! The embedded log as a source: every shard, from its resume point, following the tail.
//!
//! A thread reads the shards round-robin (a bounded share of each per round, so one busy shard
//! cannot starve the others) and hands chunks to the pipeline through a bounded channel: the
//! pipeline's pace limits how far ahead it reads, which bounds memory.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kappa_common::event::SequenceNumber;
use kappa_common::log::{Log, LogError, ShardReader, StartAt};
use kappa_common::shaped::{SHAPED_HEADER_LEN, Shape, split_shaped};
use rayon::prelude::*;

use super::{Chunk, SourceError};
use crate::event::SourceEvent;
use crate::settings::LogGapPolicy;
use crate::stats::Stats;

/// Events per shard per round. A round's run of a shard is what the pipeline routes at once:
/// with rows in random time order, each of the shard's open buffers gets a slice of it, and a
/// spill concatenates a buffer's slices. 4,096 rather than 2,048 halved those slices (10M wide
/// rows in random order: 28 s of CPU instead of 33). 8,192 took RSS past 280 MiB while events
/// were objects; shaped events are half the bytes, and with `feed::DEPTH` 2 instead of 4 (the
/// same events in flight) the run takes ~13 s of user CPU instead of 14.0–14.7, at 222–225 MiB.
const SHARD_SHARE: usize = 8192;

pub struct LogSource {
    log: Log,
    /// The reading thread ended on its own: every shard reached its end bound.
    finished: bool,
    chunks: Receiver<Result<Vec<SourceEvent>, SourceError>>,
    stop: Arc<AtomicBool>,
    /// A round found nothing new in any shard: what the log held is read.
    caught_up: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The shards read.
    reading: Vec<u32>,
}

impl LogSource {
    /// The shard names the pipeline and the commits use for this log: "0", "1", ….
    pub fn shard_names(log: &Log) -> Vec<String> {
        (0..log.shard_count()).map(|s| s.to_string()).collect()
    }

    pub fn open(dir: &Path) -> Result<Log, LogError> {
        Log::open(dir)
    }

    /// Starts reading each shard after its resume point (or at its beginning), following the
    /// tail. A shard whose log no longer holds that point is an error, or with
    /// [`LogGapPolicy::Skip`] a loss counted in `stats`: records deleted are seen here, from
    /// the segment names; a log rolled back by its reader, which ends short of the point (it
    /// reads up to it anyway, and scanning every shard's end here would cost ~0.1 s per
    /// 500 MB).
    pub fn start(log: Log, resume_after: &[Option<SequenceNumber>], on_gap: LogGapPolicy, stats: Arc<Stats>) -> Result<LogSource, SourceError> {
        let all: Vec<u32> = (0..resume_after.len() as u32).collect();
        Self::start_shards(log, &all, resume_after, on_gap, stats)
    }

    /// [`LogSource::start`] for some shards only (a leased worker's): the others are not read.
    pub fn start_shards(
        log: Log,
        shards: &[u32],
        resume_after: &[Option<SequenceNumber>],
        on_gap: LogGapPolicy,
        stats: Arc<Stats>,
    ) -> Result<LogSource, SourceError> {
        let mut starts = Vec::new();
        for &shard in shards {
            let point = &resume_after[shard as usize];
            let next = match point {
                None => 0,
                Some(seq) => {
                    let position =
                        seq.to_u64().ok_or_else(|| SourceError::Position { shard: format!("{shard} (log shard index)"), position: seq.to_string() })?;
                    position + 1
                }
            };
            stats.add_log_skipped(check_first_retained(&log, shard, next, on_gap)?);
            starts.push((shard, if next == 0 { StartAt::Earliest } else { StartAt::AtSequence(next) }));
        }
        Self::spawn(log, starts, None, Some(GapWatch { on_gap, stats }))
    }

    /// Reads each shard from `starts` up to what it holds now (and, with `until_ms`, only
    /// records that arrived before then), then finishes: a replay's bounded read.
    pub fn start_bounded(log: Log, starts: Vec<StartAt>, until_ms: Option<i64>) -> Result<LogSource, SourceError> {
        // Each shard's end is a scan of its last segment (up to 128 MiB, every CRC checked):
        // the shards are scanned on rayon's pool, one thread per core.
        let ends = (0..log.shard_count()).into_par_iter().map(|s| log.shard_end(s)).collect::<Result<Vec<u64>, _>>()?;
        // A rebuild from the start must have the start: rows gone from the log would be
        // missing from the new generation without a word.
        for (shard, start) in starts.iter().enumerate() {
            if *start == StartAt::Earliest {
                check_first_retained(&log, shard as u32, 0, LogGapPolicy::Fail)?;
            }
        }
        Self::spawn(log, starts.into_iter().enumerate().map(|(s, start)| (s as u32, start)).collect(), Some(Bounds { ends, until_ms }), None)
    }

    /// Reads each shard after `resume_after` up to (not including) `ends`, then finishes: a
    /// replay catching up to positions a live consumer committed meanwhile. The records are in
    /// the log (a consumer read them); a shard whose end is not past its start reads nothing.
    pub fn start_until(log: Log, resume_after: &[Option<SequenceNumber>], ends: Vec<u64>) -> Result<LogSource, SourceError> {
        let mut starts = Vec::new();
        for (shard, point) in resume_after.iter().enumerate() {
            starts.push(match point {
                None => StartAt::Earliest,
                Some(seq) => StartAt::AtSequence(
                    seq.to_u64().ok_or_else(|| SourceError::Position { shard: format!("{shard} (log shard index)"), position: seq.to_string() })? + 1,
                ),
            });
        }
        Self::spawn(log, starts.into_iter().enumerate().map(|(s, start)| (s as u32, start)).collect(), Some(Bounds { ends, until_ms: None }), None)
    }

    /// Records in each shard when a bounded read started (its end bound).
    pub fn total(&self) -> u64 {
        (0..self.log.shard_count()).map(|s| self.log.shard_end(s).unwrap_or(0)).sum()
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    /// True once a round of reads found every shard at its end.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// A bounded read of some shards only (a replay sharing the shards through leases): each
    /// of `starts` (shard, where) up to `ends[shard]`, the first sequence number not to read,
    /// and before `until_ms`.
    pub fn start_bounded_shards(log: Log, starts: Vec<(u32, StartAt)>, ends: &[u64], until_ms: Option<i64>) -> Result<LogSource, SourceError> {
        for (shard, start) in &starts {
            if *start == StartAt::Earliest {
                check_first_retained(&log, *shard, 0, LogGapPolicy::Fail)?;
            }
        }
        let bounded = starts.iter().map(|(shard, _)| ends[*shard as usize]).collect();
        Self::spawn(log, starts, Some(Bounds { ends: bounded, until_ms }), None)
    }

    /// Reads `starts` (shard, where); a bounded read's ends are in the same order.
    fn spawn(log: Log, starts: Vec<(u32, StartAt)>, bounds: Option<Bounds>, gaps: Option<GapWatch>) -> Result<LogSource, SourceError> {
        let mut readers = Vec::new();
        let reading = starts.iter().map(|(shard, _)| *shard).collect();
        for (shard, start) in starts {
            readers.push(log.reader(shard, start)?);
        }
        // Handed over, not queued: the feed decodes several chunks ahead already, and a
        // chunk that waits here holds its events' bytes for nothing (one and two waiting held
        // 34 and 41 MiB more at the peak of a 10M-row wide run, at the same speed).
        let (sender, chunks) = sync_channel(0);
        let stop = Arc::new(AtomicBool::new(false));
        let caught_up = Arc::new(AtomicBool::new(false));
        let (stop_flag, caught_up_flag, watched, shapes) = (stop.clone(), caught_up.clone(), log.clone(), Shapes::new(log.clone()));
        let thread = std::thread::Builder::new()
            .name("kappa-log-source".into())
            .spawn(move || read_loop(readers, bounds, sender, stop_flag, caught_up_flag, gaps.map(|g| (watched, g)), shapes))
            .expect("spawn the log source thread");
        Ok(LogSource { log, finished: false, chunks, stop, caught_up, thread: Some(thread), reading })
    }

    /// The next chunk, or `None` if nothing arrived within `timeout`.
    pub fn next_chunk(&mut self, timeout: Duration) -> Result<Option<Chunk>, SourceError> {
        match self.chunks.recv_timeout(timeout) {
            Ok(Ok(events)) => Ok(Some(Chunk { events, ..Chunk::default() })),
            Ok(Err(e)) => Err(e),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                self.finished = true;
                Ok(None)
            }
        }
    }

    /// Records in the log not yet delivered (for the lag in the status line).
    pub fn lag(&self, last_read: impl Fn(u32) -> Option<SequenceNumber>) -> u64 {
        self.reading
            .iter()
            .map(|&s| {
                let next = last_read(s).and_then(|l| l.to_u64()).map_or(0, |l| l + 1);
                self.log.shard_end(s).unwrap_or(0).saturating_sub(next)
            })
            .sum()
    }

    /// Per shard read: its name's index and the records written and not yet read.
    pub fn shard_lags(&self, last_read: impl Fn(u32) -> Option<SequenceNumber>) -> Vec<(u32, u64)> {
        self.reading
            .iter()
            .map(|&s| {
                let next = last_read(s).and_then(|l| l.to_u64()).map_or(0, |l| l + 1);
                (s, self.log.shard_end(s).unwrap_or(0).saturating_sub(next))
            })
            .collect()
    }

    /// Stops reading; chunks already read but not taken are dropped (they are re-read from
    /// the resume point next time, never lost).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        while self.chunks.try_recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            // The reader may be blocked on a full channel: keep draining until it sees the flag.
            while !thread.is_finished() {
                while self.chunks.try_recv().is_ok() {}
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = thread.join();
        }
    }
}

impl Drop for LogSource {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Checks that a shard's first segment does not start after `next` (the first position to
/// read). Returns the positions skipped when `on_gap` accepts the loss.
fn check_first_retained(log: &Log, shard: u32, next: u64, on_gap: LogGapPolicy) -> Result<u64, SourceError> {
    match log.first_retained(shard)? {
        Some(first) if first > next => gap(SourceError::LogGap { shard, next, first }, first - next, on_gap),
        _ => Ok(0),
    }
}

/// Checks that a shard's end is not before `next`.
fn check_end(log: &Log, shard: u32, next: u64, on_gap: LogGapPolicy) -> Result<u64, SourceError> {
    match log.shard_end(shard)? {
        end if end < next => gap(SourceError::LogRolledBack { shard, next, end }, next - end, on_gap),
        _ => Ok(0),
    }
}

/// A gap is an error, or with `Skip` a loss of `skipped` positions, said once.
fn gap(error: SourceError, skipped: u64, on_gap: LogGapPolicy) -> Result<u64, SourceError> {
    match on_gap {
        LogGapPolicy::Fail => Err(error),
        LogGapPolicy::Skip => {
            tracing::warn!(skipped, "{error}; --on-log-gap skip: reading on");
            Ok(skipped)
        }
    }
}

/// A log that no longer holds what the table read: a shard whose reader ends short of its
/// resume point, or (while following) whose end shrank below what was read.
struct GapWatch {
    on_gap: LogGapPolicy,
    stats: Arc<Stats>,
}

/// How often a caught-up reader checks that no shard was rolled back under it.
const GAP_CHECK: Duration = Duration::from_secs(1);

impl GapWatch {
    /// A reader at the end of its shard but short of its start position: the log ends before
    /// the table's resume point. With `Skip`, the positions up to it are taken as read (the
    /// reader goes on skipping them) and counted once.
    fn check_start(&self, reader: &ShardReader, counted: &mut bool) -> Result<(), SourceError> {
        if let Some((next, end)) = reader.short_of_start().filter(|_| !*counted) {
            self.stats.add_log_skipped(gap(SourceError::LogRolledBack { shard: reader.shard(), next, end }, next - end, self.on_gap)?);
            *counted = true;
        }
        Ok(())
    }

    /// While following: each reader's position against its shard's end. With `Skip`, a
    /// rolled-back shard's reader is opened again at its position: the log's new records below
    /// it count as skipped.
    fn check_ends(&self, log: &Log, readers: &mut [ShardReader]) -> Result<(), SourceError> {
        for reader in readers.iter_mut().filter(|r| r.short_of_start().is_none()) {
            let (shard, next) = (reader.shard(), reader.position());
            let skipped = check_end(log, shard, next, self.on_gap)?;
            if skipped > 0 {
                self.stats.add_log_skipped(skipped);
                *reader = log.reader(shard, StartAt::AtSequence(next))?;
            }
        }
        Ok(())
    }
}

/// Where a bounded read stops.
struct Bounds {
    /// Per shard, the first sequence number not to read.
    ends: Vec<u64>,
    until_ms: Option<i64>,
}

fn read_loop(
    mut readers: Vec<ShardReader>,
    bounds: Option<Bounds>,
    sender: SyncSender<Result<Vec<SourceEvent>, SourceError>>,
    stop: Arc<AtomicBool>,
    caught_up: Arc<AtomicBool>,
    gaps: Option<(Log, GapWatch)>,
    mut shapes: Shapes,
) {
    let mut done = vec![false; readers.len()];
    let mut gaps_checked = Instant::now();
    let mut short_counted = vec![false; readers.len()];
    let mut round_bytes = 0;
    let pool = PayloadPool::default();
    while !stop.load(Ordering::Acquire) {
        // The round's payloads go into one buffer that the events share: one allocation per
        // chunk instead of one per event, and payloads the decoder reads in address order.
        // With room to spare: a round a little larger than the last would copy it all to grow.
        let mut payloads = pool.take(round_bytes + round_bytes / 8);
        let mut records = Vec::with_capacity(SHARD_SHARE * readers.len());
        for (shard, reader) in readers.iter_mut().enumerate() {
            for _ in 0..SHARD_SHARE {
                if done[shard] {
                    break;
                }
                match reader.next_appending(&mut payloads) {
                    Ok(Some((seq, arrival_ms, payload))) => {
                        let past = bounds.as_ref().is_some_and(|b| seq >= b.ends[shard] || b.until_ms.is_some_and(|u| arrival_ms >= u));
                        if past {
                            payloads.truncate(payload.start);
                            done[shard] = true;
                            break;
                        }
                        records.push((reader.shard(), seq, arrival_ms, payload));
                    }
                    Ok(None) => {
                        if bounds.as_ref().is_some_and(|b| reader_at_end(reader, b.ends[shard])) {
                            done[shard] = true;
                        }
                        if let Some((_, watch)) = &gaps
                            && let Err(e) = watch.check_start(reader, &mut short_counted[shard])
                        {
                            let _ = sender.send(Err(e));
                            return;
                        }
                        break;
                    }
                    Err(e) => {
                        let _ = sender.send(Err(e.into()));
                        return;
                    }
                }
            }
        }
        round_bytes = payloads.len();
        let payloads = pool.share(payloads);
        let mut chunk: Vec<SourceEvent> = Vec::with_capacity(records.len());
        for (shard, seq, arrival_ms, range) in records {
            let (payload, shape) = match shapes.resolve(&payloads[range.clone()]) {
                Ok(Some(shape)) => (payloads.slice(range.start + SHAPED_HEADER_LEN..range.end), Some(shape)),
                Ok(None) => (payloads.slice(range), None),
                Err(e) => {
                    let _ = sender.send(Err(e.into()));
                    return;
                }
            };
            chunk.push(SourceEvent { shard, seq: seq.into(), arrival_ms, payload, shape, defect: None });
        }
        if chunk.is_empty() {
            caught_up.store(true, Ordering::Release);
            if bounds.is_some() && done.iter().all(|d| *d) {
                return; // dropping the sender tells the consumer side the read is complete
            }
            if let Some((log, watch)) = &gaps
                && gaps_checked.elapsed() >= GAP_CHECK
            {
                gaps_checked = Instant::now();
                if let Err(e) = watch.check_ends(log, &mut readers) {
                    let _ = sender.send(Err(e));
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        if sender.send(Ok(chunk)).is_err() {
            return;
        }
    }
}

/// The buffers of chunks the pipeline is done with, kept for the next rounds' payloads.
///
/// A round's payloads (up to ~15 MB of wide events) once filled a fresh buffer, freed after its
/// events were decoded and given back to the kernel (see `kappa_common::memory`): each round
/// was new memory to fault in page by page, 2.5% of the CPU time of 10M wide rows by day. Now a
/// buffer comes back when the last event sharing it is dropped, and at most
/// [`PayloadPool::KEPT`] wait here, of at most [`PayloadPool::KEPT_BYTES`] together (a round of
/// large events does not stay in memory).
#[derive(Default)]
struct PayloadPool(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl PayloadPool {
    /// Idle buffers kept: the chunks in flight (decoding ahead, routing) take theirs back
    /// about as fast as the source fills new ones, so two cover the turnover.
    const KEPT: usize = 2;
    /// Bytes the idle buffers may hold together: two of the ~15 MB a round of 32,768 wide
    /// events takes.
    const KEPT_BYTES: usize = 32 << 20;

    /// An empty buffer with room for `bytes`: a kept one if there is one.
    fn take(&self, bytes: usize) -> Vec<u8> {
        let kept = self.0.lock().map(|mut kept| kept.pop()).unwrap_or(None);
        let mut buffer = kept.unwrap_or_default();
        buffer.clear();
        buffer.reserve(bytes);
        buffer
    }

    /// `buffer` as bytes the round's events share; back in the pool when the last is dropped.
    fn share(&self, buffer: Vec<u8>) -> bytes::Bytes {
        bytes::Bytes::from_owner(Pooled { buffer, pool: Arc::downgrade(&self.0) })
    }
}

/// A shared payload buffer that goes back to its pool, if the source still runs.
struct Pooled {
    buffer: Vec<u8>,
    pool: std::sync::Weak<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade()
            && let Ok(mut kept) = pool.lock()
            && kept.len() < PayloadPool::KEPT
            && kept.iter().map(Vec::capacity).sum::<usize>() + self.buffer.capacity() <= PayloadPool::KEPT_BYTES
        {
            kept.push(std::mem::take(&mut self.buffer));
        }
    }
}

/// The shapes of the log's shaped events, looked up once per shape.
struct Shapes {
    log: Log,
    /// The last shape met: a log written by one producer run has one.
    last: Option<Arc<Shape>>,
}

impl Shapes {
    fn new(log: Log) -> Shapes {
        Shapes { log, last: None }
    }

    /// The shape of a shaped payload (whose values follow its header).
    fn resolve(&mut self, payload: &[u8]) -> Result<Option<Arc<Shape>>, LogError> {
        let Some((id, _)) = split_shaped(payload) else { return Ok(None) };
        let shape = match &self.last {
            Some(last) if last.id() == id => last.clone(),
            _ => {
                let shape = self.log.shape(id)?;
                self.last = Some(shape.clone());
                shape
            }
        };
        Ok(Some(shape))
    }
}

/// A shard with nothing more to read below its end bound: nothing was there (end 0), or the
/// reader's next position is at or past the bound.
fn reader_at_end(reader: &ShardReader, end: u64) -> bool {
    reader.position() >= end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_buffer_comes_back_when_its_last_event_is_dropped() {
        let pool = PayloadPool::default();
        let mut buffer = pool.take(1000);
        buffer.extend_from_slice(b"one two");
        let address = buffer.as_ptr();
        let shared = pool.share(buffer);
        let (one, two) = (shared.slice(0..3), shared.slice(4..7));
        drop(shared);
        drop(one);
        assert!(pool.0.lock().unwrap().is_empty(), "an event still holds it");
        assert_eq!(&two[..], b"two");
        drop(two);
        let again = pool.take(10);
        assert_eq!((again.as_ptr(), again.len()), (address, 0), "the same memory, empty");
        assert!(again.capacity() >= 1000);
    }

    #[test]
    fn the_pool_keeps_a_few_and_outlives_nothing() {
        let pool = PayloadPool::default();
        let shared: Vec<bytes::Bytes> = (0..PayloadPool::KEPT + 3).map(|_| pool.share(pool.take(64))).collect();
        drop(shared);
        assert_eq!(pool.0.lock().unwrap().len(), PayloadPool::KEPT);
        // A buffer past the bytes kept is freed.
        let mut large = pool.take(PayloadPool::KEPT_BYTES + 1);
        large.push(1);
        drop(pool.share(large));
        assert_eq!(pool.0.lock().unwrap().len(), PayloadPool::KEPT - 1);
        // A chunk that outlives its source frees its buffer as any other.
        let late = pool.share(pool.take(64));
        drop(pool);
        drop(late);
    }
}
