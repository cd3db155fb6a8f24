//! Telling a torn tail (a crash interrupted the last write) from corruption, and repairing the
//! former when a writer takes over a shard.
//!
//! A crash can only damage what was being written last: the end of the last segment. So at the
//! end of the last segment, and only there, these shapes are a torn write:
//!
//! - fewer than 8 bytes (a partial frame prefix, or a partial segment header);
//! - a frame whose `frame_len` runs past the end of the file;
//! - a frame with a CRC mismatch that is followed by nothing but zero bytes (or nothing);
//! - nothing but zero bytes (the file size was extended but the data never reached the disk).
//!
//! Anything else is corruption and is reported, never skipped. One refinement guards against
//! losing much data to one flipped bit: a `frame_len` that runs past the end of the file is not
//! a torn write if a valid frame carrying the following sequence number can be found after it
//! (a damaged length field in the middle of the segment would otherwise read as a long tear).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::LogError;
use super::segment::{Decoded, FRAME_PREFIX, HEADER_LEN, MAGIC, SegmentCursor, Step, decode_frame, plausible_len, seq_field};

/// Verdict on the bytes from a failed decode to the end of the last segment.
#[derive(Debug)]
pub(crate) enum Tail {
    Torn,
    Corrupt(String),
    /// A whole frame with the expected sequence number: the file changed since the caller
    /// looked (a recovering writer rewrote the tail).
    Valid,
}

/// Classifies the bytes of `path` from `off` (where no valid frame, or at 0 no valid header,
/// could be decoded) to the end of the file. `expected_seq` is the sequence number the frame
/// at `off` should carry.
pub(crate) fn classify_tail(path: &Path, off: u64, expected_seq: u64) -> Result<Tail, LogError> {
    let io_err = |source| LogError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io_err)?;
    file.seek(SeekFrom::Start(off)).map_err(io_err)?;
    // Only reached after a crash or on real damage, so reading the rest into memory is fine.
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).map_err(io_err)?;
    Ok(classify_bytes(&rest, off, expected_seq))
}

fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

fn classify_bytes(rest: &[u8], off: u64, expected_seq: u64) -> Tail {
    if off == 0 {
        return classify_header(rest);
    }
    if rest.len() < FRAME_PREFIX || all_zero(rest) {
        return Tail::Torn;
    }
    match decode_frame(rest) {
        Decoded::Incomplete { .. } => past_eof(rest, expected_seq),
        Decoded::Invalid(reason) => match plausible_len(rest) {
            // The length itself is garbage: torn only if it points past the end of the file.
            None => {
                let claimed = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                if FRAME_PREFIX + claimed > rest.len() { past_eof(rest, expected_seq) } else { Tail::Corrupt(reason) }
            }
            Some(body) => {
                if all_zero(&rest[FRAME_PREFIX + body..]) {
                    Tail::Torn
                } else {
                    Tail::Corrupt(format!("{reason}, followed by more data"))
                }
            }
        },
        Decoded::Frame(f) if f.seq != expected_seq => Tail::Corrupt(format!("sequence number {} where {expected_seq} was expected", f.seq)),
        Decoded::Frame(_) => Tail::Valid,
    }
}

fn classify_header(rest: &[u8]) -> Tail {
    let n = rest.len().min(MAGIC.len());
    let torn = if rest.len() < MAGIC.len() { rest == &MAGIC[..n] || all_zero(rest) } else { all_zero(rest) };
    if torn { Tail::Torn } else { Tail::Corrupt("not a segment file (bad magic)".into()) }
}

/// The frame at the start of `rest` claims to run past the end of the file.
fn past_eof(rest: &[u8], expected_seq: u64) -> Tail {
    match find_frame_with_seq(rest, expected_seq.wrapping_add(1)) {
        Some(at) => Tail::Corrupt(format!(
            "frame length runs past the end of the file, but a valid frame with sequence number \
             {} follows {at} bytes later",
            expected_seq.wrapping_add(1)
        )),
        None => Tail::Torn,
    }
}

fn find_frame_with_seq(rest: &[u8], seq: u64) -> Option<usize> {
    let min = FRAME_PREFIX + 16;
    (1..rest.len().saturating_sub(min - 1)).find(|&at| {
        let b = &rest[at..];
        seq_field(b) == seq && matches!(decode_frame(b), Decoded::Frame(ref f) if f.seq == seq)
    })
}

/// What a full validating scan of one segment found.
#[derive(Debug, Clone)]
pub(crate) struct ScanSummary {
    /// Whole records read.
    pub records: u64,
    /// File offset just past the last whole record (or past the header).
    pub end_off: u64,
    pub last_arrival: Option<i64>,
    /// Set when the segment ends in a torn write starting at `end_off`: its total length.
    pub torn_len: Option<u64>,
}

/// Who is scanning, which decides what an unfinished end means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanMode {
    /// A segment with a successor: it must end exactly after a whole frame.
    NotLast,
    /// The last segment, by the writer that holds the lock: no one else is writing, so an
    /// unfinished end is judged with [`classify_tail`] and reported in `torn_len`.
    Recover,
    /// The last segment while a writer may be appending: an incomplete frame at the end is
    /// simply not written yet.
    Live,
}

/// Reads a whole segment, checking every CRC and that sequence numbers run on from its name.
pub(crate) fn scan_segment(path: &Path, base: u64, mode: ScanMode) -> Result<ScanSummary, LogError> {
    scan_segment_from(path, base, mode, 0, 0)
}

/// Like [`scan_segment`], from file offset `end_off` on, where an earlier scan found `records`
/// whole records ending: what was read once is not read again (the records before it are not
/// checked again, and `last_arrival` covers only the records after it).
pub(crate) fn scan_segment_from(path: &Path, base: u64, mode: ScanMode, end_off: u64, records: u64) -> Result<ScanSummary, LogError> {
    let mut cur = SegmentCursor::open(path.to_path_buf(), base)?;
    if end_off > 0 {
        cur.reset_to(end_off)?;
    }
    let mut sum = ScanSummary { records, end_off, last_arrival: None, torn_len: None };
    let corrupt = |offset, reason| LogError::Corrupt { path: path.to_path_buf(), offset, reason };
    loop {
        let expected = base + sum.records;
        let (off, bad) = match cur.next()? {
            Step::Frame { frame, off } => {
                if frame.seq != expected {
                    return Err(corrupt(off, format!("sequence number {} where {expected} was expected", frame.seq)));
                }
                sum.records += 1;
                sum.end_off = off + frame.len as u64;
                sum.last_arrival = Some(frame.arrival_ms);
                continue;
            }
            Step::End { off, partial: 0 } if off >= HEADER_LEN => {
                sum.end_off = off;
                return Ok(sum);
            }
            Step::End { off, .. } if mode == ScanMode::Live => {
                sum.end_off = off;
                return Ok(sum);
            }
            Step::End { off, partial } => (off, format!("{partial} bytes of an incomplete frame at the end")),
            Step::Invalid { off, reason } => (off, reason),
        };
        if mode == ScanMode::NotLast {
            return Err(corrupt(off, format!("{bad} (in a segment that is not the last)")));
        }
        match classify_tail(path, off, expected)? {
            Tail::Torn => {
                let len = std::fs::metadata(path).map_err(|source| LogError::Io { path: path.to_path_buf(), source })?.len();
                sum.end_off = off;
                if mode == ScanMode::Recover {
                    sum.torn_len = Some(len.saturating_sub(off));
                }
                return Ok(sum);
            }
            // The file changed under a live scan (a writer recovered it): read again.
            Tail::Valid if mode == ScanMode::Live => cur.reset_to(off)?,
            Tail::Valid => {
                return Err(corrupt(off, format!("{bad}, but reads as valid on a second look")));
            }
            Tail::Corrupt(reason) => return Err(corrupt(off, reason)),
        }
    }
}

/// Cuts a torn tail found by [`scan_segment`] and makes the cut durable. A segment whose header
/// was torn is reset to a bare header.
pub(crate) fn truncate_torn(path: &Path, sum: &ScanSummary) -> Result<(), LogError> {
    let io_err = |source| LogError::Io { path: path.to_path_buf(), source };
    let cut = sum.torn_len.unwrap_or(0);
    tracing::warn!(
        file = %path.display(),
        offset = sum.end_off,
        bytes_cut = cut,
        "log: truncating torn write at the end of the last segment (left by a crash)"
    );
    let mut file = OpenOptions::new().write(true).open(path).map_err(io_err)?;
    file.set_len(sum.end_off).map_err(io_err)?;
    if sum.end_off == 0 {
        file.write_all(&MAGIC).map_err(io_err)?;
    }
    file.sync_all().map_err(io_err)?;
    Ok(())
}
