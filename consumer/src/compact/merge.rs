//! Merging a partition's files (see the module doc of `compact`, step 2): small partitions
//! several at once, one per core; a large one alone, a file read at a time.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use kappa_common::store::Store;
use kappa_table::{DataFile, LiveFile, Table};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use tokio::runtime::Handle;

use super::order::{Piece, Plan};
use super::{CompactError, ROW_GROUP_ROWS};
use crate::origin::Run;
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

/// Rewrites one partition's files into files of about the target size, in the plan's order,
/// handed to `puts` to store as each is done: a file is read when the rows before are merged
/// (again for each of its pieces, the last one read kept), so memory holds one file read, the
/// rows of a row group and one merged file.
pub(super) fn merge(
    table: &Table,
    puts: &mut Puts<'_>,
    partition: &str,
    plan: &Plan,
    files: &[LiveFile],
    data: &SchemaRef,
    options: &CompactOptions,
) -> Result<Vec<DataFile>, CompactError> {
    let runtime = puts.runtime();
    let mut last: Option<(usize, bytes::Bytes)> = None;
    let mut read = |file: usize| -> Result<bytes::Bytes, CompactError> {
        match &last {
            Some((index, bytes)) if *index == file => Ok(bytes.clone()),
            _ => {
                let bytes = runtime.block_on(table.get_object(&files[file].path))?;
                last = Some((file, bytes.clone()));
                Ok(bytes)
            }
        }
    };
    let pieces = plan.pieces.iter().map(|piece| Ok((files[piece.file].path.as_str(), read(piece.file)?, piece)));
    let mut outputs = Vec::new();
    merge_rows(pieces, plan, data, options, &mut |file| store_merged(table, puts, partition, &plan.base, &mut outputs, file))?;
    Ok(outputs)
}

/// Rewrites several small partitions (see [`units`]) at once, as [`merge`] does each, one per
/// core, from their files' `contents` (read by [`read_all`], in the partitions' order), and
/// hands the merged files to `puts` in partition order. Hour partitions are thousands of
/// partitions of a few files of a few KiB: one at a time, the pass used one core and waited on
/// each read.
pub(super) fn merge_small(
    table: &Table,
    puts: &mut Puts<'_>,
    partitions: &[(&String, &Vec<LiveFile>, u64)],
    plans: &[Plan],
    contents: Vec<bytes::Bytes>,
    data: &SchemaRef,
    options: &CompactOptions,
) -> Result<Vec<Vec<DataFile>>, CompactError> {
    use rayon::prelude::*;
    let mut contents = contents.into_iter();
    let inputs: Vec<Vec<bytes::Bytes>> = partitions.iter().map(|(_, files, _)| contents.by_ref().take(files.len()).collect()).collect();
    let encoded: Vec<Result<Vec<parquet_file::Encoded>, CompactError>> = inputs
        .into_par_iter()
        .zip(partitions.par_iter().zip(plans))
        .map(|(bytes, ((_, files, _), plan))| {
            let mut merged = Vec::new();
            let pieces = plan.pieces.iter().map(|piece| Ok((files[piece.file].path.as_str(), bytes[piece.file].clone(), piece)));
            merge_rows(pieces, plan, data, options, &mut |file| {
                merged.push(file);
                Ok(())
            })?;
            Ok(merged)
        })
        .collect();
    let mut outputs = Vec::with_capacity(partitions.len());
    for (((partition, ..), plan), merged) in partitions.iter().zip(plans).zip(encoded) {
        let mut stored = Vec::new();
        for file in merged? {
            store_merged(table, puts, partition, &plan.base, &mut stored, file)?;
        }
        outputs.push(stored);
    }
    Ok(outputs)
}

/// The contents of `paths` (relative to the table's data prefix), in their order: on S3
/// [`READS_AT_ONCE`] requests at a time, from a local lake on every core (a read there is a
/// few system calls the calling thread makes).
pub(super) fn read_all(runtime: &Handle, table: &Table, paths: &[&str]) -> Result<Vec<bytes::Bytes>, CompactError> {
    use futures::{StreamExt, TryStreamExt};
    use rayon::prelude::*;
    let contents = match table.store() {
        Store::Local(_) => paths.par_iter().map(|path| runtime.block_on(table.get_object(path))).collect::<Result<Vec<_>, _>>(),
        _ => runtime.block_on(futures::stream::iter(paths).map(|path| table.get_object(path)).buffered(READS_AT_ONCE).try_collect::<Vec<_>>()),
    };
    Ok(contents?)
}

/// The origin a file's footer says (see [`crate::origin`]), from its contents: only if its
/// runs account for every row of the file, each for some (else the file is taken as of
/// unknown origin, whole: a footer that miscounted must not make rows be skipped).
pub(super) fn origin_of(path: &str, contents: &bytes::Bytes) -> Result<Option<Vec<Run>>, CompactError> {
    let metadata = parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(contents).map_err(|e| read_back(path, e))?;
    let rows = u64::try_from(metadata.file_metadata().num_rows()).unwrap_or(0);
    Ok(crate::origin::of_metadata(metadata.file_metadata()).filter(|runs| runs.iter().all(|r| r.rows > 0) && runs.iter().map(|r| r.rows).sum::<u64>() == rows))
}

/// Merges the rows of `pieces` (each with its file's path and contents, in the plan's order)
/// into files of about the target size, each handed to `out` once it is written.
fn merge_rows<'f>(
    pieces: impl Iterator<Item = Result<(&'f str, bytes::Bytes, &'f Piece), CompactError>>,
    plan: &Plan,
    data: &SchemaRef,
    options: &CompactOptions,
    out: &mut dyn FnMut(parquet_file::Encoded) -> Result<(), CompactError>,
) -> Result<(), CompactError> {
    let mut writer = MergedWriter::new(data.clone(), options, plan);
    for piece in pieces {
        let (path, bytes, piece) = piece?;
        let mut builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| read_back(path, e))?.with_batch_size(8192);
        if let Some(rows) = piece.rows {
            let selectors = vec![RowSelector::skip(piece.offset as usize), RowSelector::select(rows as usize)];
            builder = builder.with_row_selection(RowSelection::from(selectors));
        }
        for batch in builder.build().map_err(|e| read_back(path, e))? {
            let batch = batch.map_err(|e| read_back(path, e))?;
            writer.push(batch, piece.shard).map_err(|e| read_back(path, e))?;
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
    /// The pending rows' shards (see [`Piece::shard`]), in runs: (shard, rows).
    pending_runs: Vec<(Option<usize>, usize)>,
    /// The file being written, and its rows' shards in runs.
    file: Option<FileEncoder>,
    file_runs: Vec<(Option<usize>, usize)>,
    /// Each shard's name and positions (see [`Plan::shards`]) if every row's origin is known,
    /// and each one's rows in the files written before.
    shards: Option<Vec<(String, kappa_common::event::SequenceNumber, kappa_common::event::SequenceNumber)>>,
    before: Vec<u64>,
}

impl MergedWriter {
    fn new(data: SchemaRef, options: &CompactOptions, plan: &Plan) -> MergedWriter {
        MergedWriter {
            data,
            codec: options.codec,
            target: options.target_file_size as usize,
            pending: Vec::new(),
            pending_rows: 0,
            pending_runs: Vec::new(),
            file: None,
            file_runs: Vec::new(),
            shards: plan.known.then(|| plan.shards.clone()),
            before: vec![0; plan.shards.len()],
        }
    }

    fn push(&mut self, batch: RecordBatch, shard: Option<usize>) -> Result<(), arrow::error::ArrowError> {
        // A file written before the schema grew lacks the newer columns: they are null.
        let batch = parquet_file::conform(std::slice::from_ref(&batch), &self.data, &self.data)?;
        let rows = batch[0].num_rows();
        self.pending_rows += rows;
        add_run(&mut self.pending_runs, shard, rows);
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
            // rows (with the same origin in the footer when it holds several shards').
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
        // And the runs the row group took.
        let mut taken = rows;
        while taken > 0 {
            let (shard, in_run) = &mut self.pending_runs[0];
            let n = (*in_run).min(taken);
            add_run(&mut self.file_runs, *shard, n);
            (*in_run, taken) = (*in_run - n, taken - n);
            if *in_run == 0 {
                self.pending_runs.remove(0);
            }
        }
        Ok(())
    }

    /// The file written so far, its origin in its footer when every row's is known and it
    /// holds more than one shard's run (a file of one says it in its name).
    fn close(&mut self) -> Result<Option<parquet_file::Encoded>, CompactError> {
        let runs = std::mem::take(&mut self.file_runs);
        let Some(mut encoder) = self.file.take() else { return Ok(None) };
        if let Some(shards) = &self.shards {
            let runs: Vec<(usize, u64)> = runs.iter().filter_map(|(shard, rows)| Some(((*shard)?, *rows as u64))).collect();
            let runs = super::order::runs(shards, &runs, &mut self.before);
            encoder.set_origin(&runs);
        }
        encoder.finish().map(Some).map_err(encoding)
    }
}

/// Adds `rows` of `shard` to `runs`, the last run if it is that shard's.
fn add_run(runs: &mut Vec<(Option<usize>, usize)>, shard: Option<usize>, rows: usize) {
    match runs.last_mut() {
        Some((last, n)) if *last == shard => *n += rows,
        _ => runs.push((shard, rows)),
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
        let zero = std::time::Duration::ZERO;
        let options =
            CompactOptions { codec: Codec::Snappy, target_file_size: 256 << 20, min_age: zero, retention: zero, dry_run: false, commit_every: u64::MAX };
        let plan = Plan { pieces: Vec::new(), shards: Vec::new(), known: false, base: String::new() };
        let mut writer = MergedWriter::new(data, &options, &plan);
        for piece in pieces {
            writer.push(piece.clone(), None).unwrap();
            assert!(writer.full_file().unwrap().is_none());
        }
        writer.finish().unwrap().expect("a file")
    }

    #[test]
    fn a_footer_whose_runs_miscount_the_rows_is_not_trusted() {
        let pieces = [rows(0, 14)];
        let data = pieces[0].schema();
        let run = |rows| Run { shard: "s".into(), first: 1u64.into(), last: 9u64.into(), skip: 0, rows };
        let file = |runs: &[Run]| parquet_file::encode(&pieces, &data, &data, Codec::Snappy, Some(runs)).unwrap().data;
        assert_eq!(origin_of("f", &file(&[run(14)])).unwrap(), Some(vec![run(14)]));
        assert_eq!(origin_of("f", &file(&[run(13)])).unwrap(), None, "a row left out");
        assert_eq!(origin_of("f", &file(&[run(14), run(1)])).unwrap(), None, "more rows than the file");
        assert_eq!(origin_of("f", &file(&[run(0), run(14)])).unwrap(), None, "an empty run");
    }

    #[test]
    fn a_small_merged_file_is_the_file_the_consumer_writes_for_its_rows() {
        // An hour partition's files from three shards, merged: one page per column, so the
        // short footer (no page index, no encoding counts), byte for byte the consumer's file.
        let pieces = [rows(0, 14), rows(14, 3), rows(17, 40)];
        let data = pieces[0].schema();
        let consumer = parquet_file::encode(&pieces, &data, &data, Codec::Snappy, None).unwrap();
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
        assert_eq!(large.data, parquet_file::encode(&pieces, &data, &data, Codec::Snappy, None).unwrap().data);
    }
}
