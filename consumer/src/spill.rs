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
//! 1. The directory is `<--spill-dir>/kappa-<table>-<hash of the lake, table and generation>`:
//!    one per table generation, so consumers of other tables (and parallel test runs) never
//!    share one. Opening the pipeline empties it: what a killed run left there belongs to no one
//!    (its rows are re-read from the log, which is the only durable copy). Dropping it (at
//!    exit) removes it.
//! 2. A spill writes one file, `<n>.arrows`, holding one Arrow IPC stream per buffer spilled
//!    (a [`Segment`]): the buffer's batches, concatenated, so a buffer that received one row per
//!    chunk comes back as one batch. Scratch data needs no fsync: a crash discards it anyway.
//! 3. A file is deleted when the last segment in it is dropped, i.e. when the last buffer that
//!    spilled into it was written (or the run ends): the scratch space a run holds is what its
//!    open buffers hold, not everything it ever spilled.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::error::ArrowError;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamWriter;

/// Why a spill failed: the directory (and what to change) is in the message.
#[derive(Debug, thiserror::Error)]
#[error("spill directory {dir}: {source}; free space there or choose another with --spill-dir")]
pub struct SpillError {
    pub dir: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The scratch directory of one table generation.
#[derive(Debug)]
pub struct SpillDir {
    dir: PathBuf,
    next_file: u64,
}

impl SpillDir {
    /// Creates the generation's directory under `root`, emptied of what an earlier run left.
    pub fn open(root: &Path, table: &str, lake: &str) -> Result<SpillDir, SpillError> {
        let dir = root.join(dir_name(table, lake));
        let error = |source| SpillError { dir: dir.clone(), source };
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => tracing::info!(dir = %dir.display(), "removed the scratch files of an earlier run"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(error(e)),
        }
        std::fs::create_dir_all(&dir).map_err(error)?;
        Ok(SpillDir { dir, next_file: 0 })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Starts a spill file.
    pub fn writer(&mut self) -> Result<SpillWriter, SpillError> {
        self.next_file += 1;
        let path = self.dir.join(format!("{:08}.arrows", self.next_file));
        let out = File::create(&path).map_err(|source| SpillError { dir: self.dir.clone(), source })?;
        Ok(SpillWriter { file: Arc::new(SpillFile { path }), out, offset: 0 })
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove the spill directory");
        }
    }
}

/// One spill file; deleted when the last segment naming it is dropped.
#[derive(Debug)]
struct SpillFile {
    path: PathBuf,
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
    /// Unbuffered: each write is a whole encoded buffer (tens of KiB and up), and a buffer in
    /// between was one more copy of everything spilled.
    out: File,
    offset: u64,
}

/// One buffer's rows as Arrow IPC streams, ready for a spill file: one stream per run of
/// batches sharing a schema (batches decoded before a schema change keep the older one), each
/// run concatenated into one batch, so a buffer that got a few rows from every chunk comes back
/// as one batch. Made on any thread: a spill encodes its buffers on every core.
pub struct Encoded(Vec<(Vec<u8>, usize)>);

impl Encoded {
    pub fn new(batches: &[RecordBatch]) -> Result<Encoded, ArrowError> {
        let mut streams = Vec::new();
        for run in batches.chunk_by(|a, b| a.schema() == b.schema()) {
            let batch = arrow::compute::concat_batches(&run[0].schema(), run)?;
            // Sized up front: grown by doubling, the stream was copied once more on average.
            let mut bytes = Vec::with_capacity(batch.get_array_memory_size() + 4096);
            let mut writer = StreamWriter::try_new(&mut bytes, &batch.schema())?;
            writer.write(&batch)?;
            writer.finish()?;
            drop(writer);
            streams.push((bytes, batch.num_rows()));
        }
        Ok(Encoded(streams))
    }
}

impl SpillWriter {
    /// Appends a buffer's encoded rows; returns their segments, in order.
    pub fn write(&mut self, encoded: Encoded) -> Result<Vec<Segment>, std::io::Error> {
        let mut segments = Vec::with_capacity(encoded.0.len());
        for (bytes, rows) in encoded.0 {
            self.out.write_all(&bytes)?;
            let length = bytes.len() as u64;
            segments.push(Segment { file: self.file.clone(), offset: self.offset, length, rows });
            self.offset += length;
        }
        Ok(segments)
    }

    /// Flushes the file: its segments can be read from here on.
    pub fn finish(mut self) -> Result<u64, std::io::Error> {
        self.out.flush()?;
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
}

impl Segment {
    pub fn bytes(&self) -> u64 {
        self.length
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Reads the rows back.
    pub fn read(&self) -> Result<Vec<RecordBatch>, ArrowError> {
        let mut file = File::open(&self.file.path)?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::with_capacity(self.length as usize);
        file.take(self.length).read_to_end(&mut bytes)?;
        // Decoded in place: the arrays point into the bytes read (a reader copied them again).
        let mut buffer = Buffer::from_vec(bytes);
        let mut decoder = StreamDecoder::new();
        let mut batches = Vec::new();
        while !buffer.is_empty() {
            if let Some(batch) = decoder.decode(&mut buffer)? {
                batches.push(batch);
            }
        }
        decoder.finish()?;
        Ok(batches)
    }
}

/// The directory of a table generation at `lake`: named by a hash that stays the same across
/// builds and Rust versions (XXH3 is specified), so a restart finds the directory of the run it
/// follows.
fn dir_name(table: &str, lake: &str) -> String {
    format!("kappa-{table}-{:016x}", xxhash_rust::xxh3::xxh3_64(lake.as_bytes()))
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
        std::fs::create_dir_all(root.path().join(dir_name("t", "lake"))).unwrap();
        let leftover = root.path().join(dir_name("t", "lake")).join("00000001.arrows");
        std::fs::write(&leftover, b"from a killed run").unwrap();
        let mut dir = SpillDir::open(root.path(), "t", "lake").unwrap();
        assert!(!leftover.exists(), "an earlier run's scratch files are removed");

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

        let file = dir.path().join("00000001.arrows");
        drop(first);
        assert!(file.exists(), "another segment still names the file");
        drop(second);
        assert!(!file.exists(), "the last segment took the file with it");
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists(), "the directory goes at the end of the run");
    }
}
