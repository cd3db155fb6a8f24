//! Buffered rows into one Parquet object.
//!
//! One row group per file up to a million rows (not the hundred-row groups pandas writes), so
//! readers get real column chunks and statistics. The writer's settings are fixed and the
//! rows are concatenated first, so the same rows give the same bytes on every run — replay's
//! byte-identical rebuild depends on it.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

/// The codec of data files (`--compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Codec {
    Snappy,
    Zstd,
    None,
}

const MAX_ROW_GROUP_ROWS: usize = 1 << 20;

/// Rows sampled to decide whether a column is worth a dictionary.
const DICTIONARY_SAMPLE: usize = 4096;

/// True if at least half of the first rows are distinct values (ids, timestamps): a dictionary
/// would hold nearly every value twice before the writer falls back to plain encoding, which
/// made such columns ~30% larger than DuckDB's plain ones. Decided from the rows alone, so the
/// same rows still give the same bytes.
fn mostly_distinct(column: &arrow::array::ArrayRef) -> bool {
    let sample = column.slice(0, column.len().min(DICTIONARY_SAMPLE));
    let Ok(formatter) = arrow::util::display::ArrayFormatter::try_new(sample.as_ref(), &Default::default()) else { return false };
    let mut seen = std::collections::HashSet::with_capacity(sample.len());
    for row in 0..sample.len() {
        seen.insert(formatter.value(row).to_string());
    }
    seen.len() * 2 > sample.len() && sample.len() >= 64
}

/// Data columns whose names equal a partition key are stored under this suffix: a Hive reader
/// would otherwise see two columns named `year` (the file's and the directory's).
pub const PARTITION_KEY_COLLISION_SUFFIX: &str = "_data";

/// The schema of the files: the table's columns (without the event identity), with names that
/// collide with partition keys renamed.
pub fn file_schema(decoded: &SchemaRef, partition_keys: &[&str]) -> SchemaRef {
    let fields: Vec<Field> = decoded
        .fields()
        .iter()
        .take(decoded.fields().len() - 1) // the identity is last
        .map(|f| {
            if partition_keys.contains(&f.name().as_str()) {
                f.as_ref().clone().with_name(format!("{}{PARTITION_KEY_COLLISION_SUFFIX}", f.name()))
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

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

/// Encodes `batches` (decoded under `decoded` or an older version of it, identity last) as
/// one Parquet file of `schema`.
pub fn encode(batches: &[RecordBatch], decoded: &SchemaRef, schema: &SchemaRef, codec: Codec) -> Result<(Bytes, u64), parquet::errors::ParquetError> {
    let adapted = batches.iter().map(|b| adapt(b, decoded)).collect::<Result<Vec<_>, _>>()?;
    let all = arrow::compute::concat_batches(decoded, &adapted)?;
    let columns = all.columns()[..all.num_columns() - 1].to_vec();
    let rows = all.num_rows() as u64;
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let compression = match codec {
        Codec::Snappy => Compression::SNAPPY,
        Codec::Zstd => Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")),
        Codec::None => Compression::UNCOMPRESSED,
    };
    let mut properties = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_created_by(format!("kappa-lake {}", env!("CARGO_PKG_VERSION")));
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
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
    let properties = properties.build();
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 3);
    let mut writer = ArrowWriter::try_new(&mut out, schema.clone(), Some(properties))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok((Bytes::from(out), rows))
}
