//! Per-file statistics for the Delta log, taken from the Parquet footer a writer just made:
//! `numRecords`, and per column `minValues`, `maxValues` and `nullCount`, so readers (Athena,
//! Spark, DuckDB, kappa-query) skip files a filter rules out without opening them.

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::Schema;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::file::metadata::ParquetMetaData;
use serde_json::{Value, json};

/// Strings longer than this get no min/max: Delta readers compare the stored value with the
/// data, and a cut maximum would be smaller than the real one.
const MAX_STRING_STAT: usize = 64;

/// The Delta `stats` JSON of a Parquet file, from its footer.
pub fn from_footer(metadata: &ParquetMetaData) -> Option<String> {
    let file = metadata.file_metadata();
    let schema = parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata()).ok()?;
    from_metadata(metadata, &schema)
}

/// The same, for a file whose Arrow schema the caller knows: a writer's own metadata, with no
/// parse of the footer and no conversion of its schema. Per file, this is paid thousands of
/// times a commit at hour partitions: the JSON is written directly, not built as maps of values
/// first (which was most of the cost: 19% of a 50k-row hour run's instructions).
pub fn from_metadata(metadata: &ParquetMetaData, schema: &Schema) -> Option<String> {
    let file = metadata.file_metadata();
    let groups = metadata.row_groups();
    let (mut mins, mut maxes, mut nulls) = (Vec::new(), Vec::new(), Vec::new());
    for field in schema.fields() {
        let Ok(converter) = StatisticsConverter::try_new(field.name(), schema, file.schema_descr()) else { continue };
        if let Ok(counts) = converter.row_group_null_counts(groups)
            && counts.null_count() == 0
        {
            nulls.push((field.name().as_str(), Value::from(counts.values().iter().sum::<u64>())));
        }
        let extreme = |array: Result<ArrayRef, _>, want_max: bool| -> Option<Value> {
            let array = array.ok()?;
            // A row group without the statistic leaves the file without it.
            if array.null_count() > 0 && array.null_count() < array.len() {
                return None;
            }
            let values: Vec<Value> = (0..array.len()).filter(|&i| array.is_valid(i)).map(|i| scalar(&array, i, want_max)).collect::<Option<_>>()?;
            values.into_iter().reduce(|a, b| if (compare(&b, &a) == std::cmp::Ordering::Greater) == want_max { b } else { a })
        };
        if let Some(min) = extreme(converter.row_group_mins(groups), false) {
            mins.push((field.name().as_str(), min));
        }
        if let Some(max) = extreme(converter.row_group_maxes(groups), true) {
            maxes.push((field.name().as_str(), max));
        }
    }
    // What `json!({"numRecords": …, "minValues": {…}, "maxValues": {…}, "nullCount": {…}})
    // .to_string()` writes, byte for byte: keys in this order, serde_json's escaping and numbers.
    let mut out = Vec::with_capacity(64 + 96 * schema.fields().len());
    out.extend_from_slice(b"{\"numRecords\":");
    serde_json::to_writer(&mut out, &file.num_rows()).ok()?;
    for (name, entries) in [("minValues", &mins), ("maxValues", &maxes), ("nullCount", &nulls)] {
        out.extend_from_slice(format!(",\"{name}\":{{").as_bytes());
        for (i, (key, value)) in entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, key).ok()?;
            out.push(b':');
            serde_json::to_writer(&mut out, value).ok()?;
        }
        out.push(b'}');
    }
    out.push(b'}');
    String::from_utf8(out).ok()
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(std::cmp::Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    }
}

/// One statistic as Delta writes it. Timestamps are kept to milliseconds (what Delta's stats
/// hold): a minimum rounds down and a maximum up, so the range still covers every value.
fn scalar(array: &ArrayRef, i: usize, is_max: bool) -> Option<Value> {
    use arrow::array::AsArray;
    use arrow::datatypes::*;
    Some(match array.data_type() {
        DataType::Int64 => json!(array.as_primitive::<Int64Type>().value(i)),
        DataType::Int32 => json!(array.as_primitive::<Int32Type>().value(i)),
        DataType::Float64 => {
            let v = array.as_primitive::<Float64Type>().value(i);
            if !v.is_finite() {
                return None;
            }
            json!(v)
        }
        DataType::Utf8 => {
            let v = array.as_string::<i32>().value(i);
            if v.chars().count() > MAX_STRING_STAT {
                return None;
            }
            json!(v)
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(i);
            json!(chrono::DateTime::from_timestamp(days as i64 * 86_400, 0)?.format("%Y-%m-%d").to_string())
        }
        // A `timestamp` (UTC) statistic carries its zone, a `timestamp_ntz` one none, as Delta
        // writers (Spark, delta-rs) write them.
        DataType::Timestamp(TimeUnit::Microsecond, zone) => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(i);
            let millis = if is_max { micros.div_euclid(1000) + i64::from(micros.rem_euclid(1000) != 0) } else { micros.div_euclid(1000) };
            let format = if zone.is_some() { "%Y-%m-%dT%H:%M:%S%.3fZ" } else { "%Y-%m-%dT%H:%M:%S%.3f" };
            json!(chrono::DateTime::from_timestamp_millis(millis)?.naive_utc().format(format).to_string())
        }
        // Booleans, decimals (a JSON number could not hold 38 digits exactly) and anything
        // else: no statistic, readers simply read the file.
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use bytes::Bytes;
    use parquet::arrow::ArrowWriter;
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::SerializedFileReader;

    use super::*;

    #[test]
    fn the_footer_gives_counts_ranges_and_nulls() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("price", DataType::Float64, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(3), None, Some(-1)])),
                Arc::new(StringArray::from(vec![Some("b"), Some("a"), Some(&*"z".repeat(100))])),
                Arc::new(Float64Array::from(vec![1.5, 2.5, 0.5])),
                Arc::new(TimestampMicrosecondArray::from(vec![1_000_001, 2_000_000, 3_000_500])),
            ],
        )
        .unwrap();
        let mut data = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut data, schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let reader = SerializedFileReader::new(Bytes::from(data)).unwrap();
        let written = from_footer(reader.metadata()).unwrap();
        let stats: Value = serde_json::from_str(&written).unwrap();
        // serde_json's own output for the object, byte for byte (its maps keep their order).
        assert_eq!(written, stats.to_string());
        assert!(written.starts_with(r#"{"numRecords":3,"minValues":{"id":-1,"name":"a","#), "{written}");
        assert_eq!(stats["numRecords"], 3);
        assert_eq!((&stats["minValues"]["id"], &stats["maxValues"]["id"]), (&json!(-1), &json!(3)));
        assert_eq!(stats["nullCount"], json!({"id": 1, "name": 0, "price": 0, "at": 0}));
        assert_eq!(stats["minValues"]["name"], "a");
        // The footer holds a 100-character maximum cut to a bound above it: still a maximum.
        let max = stats["maxValues"]["name"].as_str().unwrap();
        assert!(max.len() <= MAX_STRING_STAT && max > "z".repeat(100).as_str(), "{max}");
        assert_eq!((&stats["minValues"]["price"], &stats["maxValues"]["price"]), (&json!(0.5), &json!(2.5)));
        assert_eq!(stats["minValues"]["at"], "1970-01-01T00:00:01.000");
        assert_eq!(stats["maxValues"]["at"], "1970-01-01T00:00:03.001");
    }
}
