//! Reading a shard, and following its tail while a writer appends.
//!
//! At the end of a segment the reader must decide whether it is at the live tail (wait) or at
//! the end of a finished segment (move on). The writer completes a segment before it creates
//! the next one, so the reader first looks for a successor and only then reads the current
//! segment once more: whatever it finds after seeing the successor is final, and a partial
//! frame then is corruption rather than "not yet written".

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::recovery::{Tail, classify_tail};
use super::segment::{HEADER_LEN, SegmentCursor, Step, list_segments, segment_path};
use super::{LogError, Record, StartAt};

/// How long [`ShardReader::next_wait`] sleeps between looks at the tail.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy)]
enum Skip {
    Nothing,
    BeforeSeq(u64),
    BeforeArrival(i64),
}

/// Reads one shard in sequence order, following the tail. Cheap to hold open; takes no lock.
pub struct ShardReader {
    shard: u32,
    dir: PathBuf,
    /// `None` only while the shard has no segment yet.
    cursor: Option<SegmentCursor>,
    /// Sequence number of the next record in the segment stream (skipped or not).
    expected: u64,
    skip: Skip,
    /// Base of a later segment, seen while at the end of the current one.
    successor: Option<u64>,
}

impl std::fmt::Debug for ShardReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardReader").field("shard", &self.shard).field("dir", &self.dir).field("position", &self.position()).finish_non_exhaustive()
    }
}

impl ShardReader {
    pub(crate) fn open(dir: PathBuf, shard: u32, start: StartAt) -> Result<ShardReader, LogError> {
        let bases = list_segments(&dir)?;
        let at_seq = |n: u64| (bases.partition_point(|&b| b <= n).saturating_sub(1), Skip::BeforeSeq(n));
        let (idx, skip) = match start {
            StartAt::Earliest => (0, Skip::Nothing),
            StartAt::AtSequence(n) => at_seq(n),
            StartAt::AfterSequence(n) => at_seq(n.saturating_add(1)),
            StartAt::ArrivalTime(t) => (arrival_segment(&dir, &bases, t)?, Skip::BeforeArrival(t)),
            // Read past everything there is now, below.
            StartAt::Latest => (bases.len().saturating_sub(1), Skip::BeforeSeq(u64::MAX)),
        };
        let mut reader = ShardReader { shard, dir, cursor: None, expected: 0, skip, successor: None };
        if let Some(&base) = bases.get(idx) {
            reader.open_segment(base)?;
        }
        if start == StartAt::Latest {
            let none = reader.next()?;
            debug_assert!(none.is_none());
            reader.skip = Skip::Nothing;
        }
        Ok(reader)
    }

    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// The sequence number of the next record this reader will return (for an
    /// [`StartAt::ArrivalTime`] reader that has not found its first record yet: a lower bound).
    pub fn position(&self) -> u64 {
        match self.skip {
            Skip::BeforeSeq(n) => n.max(self.expected),
            _ => self.expected,
        }
    }

    /// While the reader is still skipping toward the position it was opened at: that position,
    /// and the shard's end as far as read. Once [`next`](Self::next) has returned `None`, the
    /// shard ends there, before the position asked for: the log was rolled back under it.
    pub fn short_of_start(&self) -> Option<(u64, u64)> {
        match self.skip {
            Skip::BeforeSeq(target) if self.expected < target => Some((target, self.expected)),
            _ => None,
        }
    }

    fn open_segment(&mut self, base: u64) -> Result<(), LogError> {
        self.cursor = Some(SegmentCursor::open(segment_path(&self.dir, base), base)?);
        self.expected = base;
        self.successor = None;
        Ok(())
    }

    /// Like [`next`](Self::next), but waits up to `timeout` for a record to arrive.
    pub fn next_wait(&mut self, timeout: Duration) -> Result<Option<Record>, LogError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(rec) = self.next()? {
                return Ok(Some(rec));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
    }

    /// The next record, or `None` if there is none yet; calling again later returns records
    /// appended since.
    #[allow(clippy::should_implement_trait)] // fallible and resumable after `None`: not an Iterator
    pub fn next(&mut self) -> Result<Option<Record>, LogError> {
        let shard = self.shard;
        Ok(self.next_with(|key, payload| (key.to_vec(), payload.to_vec()))?.map(|(seq, arrival_ms, (key, payload))| Record {
            shard,
            seq,
            arrival_ms,
            key,
            payload,
        }))
    }

    /// Like [`next`](Self::next), but appends the payload to `payloads` instead of allocating
    /// one buffer per record: returns the sequence number, the arrival time and where the
    /// payload lies in `payloads`.
    pub fn next_appending(&mut self, payloads: &mut Vec<u8>) -> Result<Option<(u64, i64, std::ops::Range<usize>)>, LogError> {
        self.next_with(|_, payload| {
            let start = payloads.len();
            payloads.extend_from_slice(payload);
            start..payloads.len()
        })
    }

    /// The next record's sequence number and arrival time, with what `take` makes of its key
    /// and payload.
    fn next_with<T>(&mut self, take: impl FnOnce(&[u8], &[u8]) -> T) -> Result<Option<(u64, i64, T)>, LogError> {
        loop {
            let Some(cur) = self.cursor.as_mut() else {
                // No segment existed yet; the first one may have appeared since.
                match list_segments(&self.dir)?.first() {
                    Some(&base) => {
                        self.open_segment(base)?;
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            match cur.next()? {
                Step::Frame { frame, off } => {
                    if frame.seq != self.expected {
                        return Err(LogError::Corrupt {
                            path: cur.path.clone(),
                            offset: off,
                            reason: format!("sequence number {} where {} was expected", frame.seq, self.expected),
                        });
                    }
                    self.expected += 1;
                    let wanted = match self.skip {
                        Skip::Nothing => true,
                        Skip::BeforeSeq(n) => frame.seq >= n,
                        Skip::BeforeArrival(t) => frame.arrival_ms >= t,
                    };
                    if !wanted {
                        continue;
                    }
                    self.skip = Skip::Nothing;
                    return Ok(Some((frame.seq, frame.arrival_ms, take(cur.bytes(frame.key.clone()), cur.bytes(frame.payload.clone())))));
                }
                Step::End { off, partial } => {
                    let (path, base) = (cur.path.clone(), cur.base);
                    let Some(next) = self.successor else {
                        match successor(&self.dir, base)? {
                            // Read once more, now knowing the segment is finished.
                            Some(next) => self.successor = Some(next),
                            None => {
                                cur.reset_to(off)?;
                                return Ok(None);
                            }
                        }
                        continue;
                    };
                    if partial > 0 || off < HEADER_LEN {
                        let what = if off < HEADER_LEN { "segment header" } else { "frame" };
                        return Err(LogError::Corrupt {
                            path,
                            offset: off,
                            reason: format!("incomplete {what} ({partial} bytes) at the end of a segment that is not the last"),
                        });
                    }
                    if next != self.expected {
                        return Err(LogError::Corrupt {
                            path: segment_path(&self.dir, next),
                            offset: 0,
                            reason: format!("segment starts at sequence number {next} but the previous one ends at {}", self.expected),
                        });
                    }
                    self.open_segment(next)?;
                }
                Step::Invalid { off, reason } => {
                    let (path, base) = (cur.path.clone(), cur.base);
                    // A second look straight from the file: a recovering writer may have
                    // replaced the bytes just read.
                    let verdict = classify_tail(&path, off, self.expected)?;
                    if matches!(verdict, Tail::Valid) {
                        cur.reset_to(off)?;
                        continue;
                    }
                    let corrupt = |reason| LogError::Corrupt { path: path.clone(), offset: off, reason };
                    if self.successor.is_some() || successor(&self.dir, base)?.is_some() {
                        return Err(corrupt(format!("{reason} (in a segment that is not the last)")));
                    }
                    match verdict {
                        // Only a crash leaves this at the tail; wait for a writer to repair it.
                        Tail::Torn | Tail::Valid => {
                            if let Some(cur) = self.cursor.as_mut() {
                                cur.reset_to(off)?;
                            }
                            return Ok(None);
                        }
                        Tail::Corrupt(reason) => return Err(corrupt(reason)),
                    }
                }
            }
        }
    }
}

/// The first segment after `base`, if any.
fn successor(dir: &Path, base: u64) -> Result<Option<u64>, LogError> {
    Ok(list_segments(dir)?.into_iter().find(|&b| b > base))
}

/// Index of the segment to scan from for the first record with arrival time `>= t`: the last
/// segment whose first record arrived before `t` (arrival times never decrease in a shard).
fn arrival_segment(dir: &Path, bases: &[u64], t: i64) -> Result<usize, LogError> {
    let (mut lo, mut hi) = (0, bases.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let before = first_arrival(dir, bases[mid])?.is_some_and(|a| a < t);
        if before {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo.saturating_sub(1))
}

/// Arrival time of a segment's first record; `None` if it has no whole first record. Damage
/// is left for the scan that follows to report.
fn first_arrival(dir: &Path, base: u64) -> Result<Option<i64>, LogError> {
    let mut cur = SegmentCursor::open(segment_path(dir, base), base)?;
    Ok(match cur.next()? {
        Step::Frame { frame, .. } => Some(frame.arrival_ms),
        _ => None,
    })
}
