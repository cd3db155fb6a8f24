//! Table schemas: inferred from samples, or read from a schema file users can edit.
//!
//! Inference is Arrow's own (`arrow-csv` for CSV, `arrow-json` for JSON), so the producer and the
//! consumer agree on what "looks like an integer" or "looks like a timestamp". The kinds of column
//! kappa-lake deals in are deliberately few — see [`ColumnType`] — because every one of them must
//! round-trip through JSON events, Parquet, Glue and Athena.
//!
//! Schema file format (JSON):
//! ```json
//! {"fields": [{"name": "sale_id", "type": "string"},
//!             {"name": "quantity", "type": "int64", "nullable": false}]}
//! ```
//! `type` is one of `string`, `int64`, `float64`, `boolean`, `date`, `timestamp`; `nullable`
//! defaults to true.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

/// The column types kappa-lake supports end to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Int64,
    Float64,
    Boolean,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A timestamp without zone (UTC by convention), microsecond precision.
    Timestamp,
}

impl ColumnType {
    pub fn to_arrow(self) -> DataType {
        match self {
            ColumnType::String => DataType::Utf8,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }

    /// Maps an Arrow type onto the supported kinds: integers widen to int64, floats to float64,
    /// every timestamp unit to microseconds; anything without a faithful mapping (nested, binary,
    /// all-null) is kept as a string rather than lost.
    pub fn from_arrow(data_type: &DataType) -> ColumnType {
        match data_type {
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => ColumnType::Int64,
            DataType::UInt64 | DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnType::Float64,
            DataType::Decimal128(..) | DataType::Decimal256(..) => ColumnType::Float64,
            DataType::Boolean => ColumnType::Boolean,
            DataType::Date32 | DataType::Date64 => ColumnType::Date,
            DataType::Timestamp(..) => ColumnType::Timestamp,
            _ => ColumnType::String,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int64 => "int64",
            ColumnType::Float64 => "float64",
            ColumnType::Boolean => "boolean",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    #[error("cannot read schema file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write schema file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(
        "schema file {path} is not valid: {source}; expected {{\"fields\": [{{\"name\": \"col\", \"type\": \
         \"string|int64|float64|boolean|date|timestamp\", \"nullable\": true}}, ...]}}"
    )]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("schema has no columns")]
    Empty,
    #[error("column name {name:?} appears more than once; column names must be unique")]
    DuplicateColumn { name: String },
    #[error("column name {name:?} is reserved by kappa-lake; rename the column in the input")]
    ReservedColumn { name: String },
    #[error("column {index} has an empty name; give every column a header")]
    EmptyColumnName { index: usize },
    #[error("schema inference failed: {0}")]
    Inference(#[from] arrow::error::ArrowError),
    #[error("invalid null token pattern: {0}")]
    NullTokens(#[from] regex::Error),
}

/// One column of a [`TableSchema`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    #[serde(default = "default_nullable")]
    pub nullable: bool,
}

fn default_nullable() -> bool {
    true
}

/// An ordered list of uniquely named, typed columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub fields: Vec<Column>,
}

impl TableSchema {
    /// Builds a schema, checking the names are usable as columns everywhere downstream.
    pub fn new(fields: Vec<Column>) -> Result<TableSchema, SchemaError> {
        let schema = TableSchema { fields };
        schema.validate()?;
        Ok(schema)
    }

    fn validate(&self) -> Result<(), SchemaError> {
        if self.fields.is_empty() {
            return Err(SchemaError::Empty);
        }
        let mut seen = std::collections::HashSet::new();
        for (index, column) in self.fields.iter().enumerate() {
            if column.name.is_empty() {
                return Err(SchemaError::EmptyColumnName { index });
            }
            if column.name == crate::event::EVENT_ID_FIELD {
                return Err(SchemaError::ReservedColumn { name: column.name.clone() });
            }
            if !seen.insert(column.name.as_str()) {
                return Err(SchemaError::DuplicateColumn { name: column.name.clone() });
            }
        }
        Ok(())
    }

    pub fn from_arrow(schema: &Schema) -> Result<TableSchema, SchemaError> {
        TableSchema::new(
            schema
                .fields()
                .iter()
                .map(|f| Column { name: f.name().clone(), column_type: ColumnType::from_arrow(f.data_type()), nullable: f.is_nullable() })
                .collect(),
        )
    }

    pub fn to_arrow(&self) -> SchemaRef {
        Arc::new(Schema::new(self.fields.iter().map(|c| Field::new(&c.name, c.column_type.to_arrow(), c.nullable)).collect::<Vec<_>>()))
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|c| c.name == name)
    }

    pub fn read_file(path: &Path) -> Result<TableSchema, SchemaError> {
        let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Read { path: path.into(), source })?;
        let schema: TableSchema = serde_json::from_str(&text).map_err(|source| SchemaError::Parse { path: path.into(), source })?;
        schema.validate()?;
        Ok(schema)
    }

    /// Writes the schema file atomically (temp file + rename), so a reader never sees half of it.
    pub fn write_file(&self, path: &Path) -> Result<(), SchemaError> {
        let wrap = |source| SchemaError::Write { path: path.into(), source };
        let mut text = serde_json::to_string_pretty(self).expect("schema serializes");
        text.push('\n');
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(wrap)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(wrap)?;
        std::fs::rename(&tmp, path).map_err(wrap)
    }
}

/// Which cell values mean "no value". Matched exactly (case-sensitive) against the raw cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NullTokens(Vec<String>);

impl NullTokens {
    pub fn is_null(&self, value: &str) -> bool {
        self.0.iter().any(|t| t == value)
    }

    pub fn to_regex(&self) -> Result<regex::Regex, regex::Error> {
        let alternatives: Vec<String> = self.0.iter().map(|t| regex::escape(t)).collect();
        regex::Regex::new(&format!("^(?:{})$", alternatives.join("|")))
    }
}

impl Default for NullTokens {
    /// The empty cell and the usual spellings of missing data in exported CSVs.
    fn default() -> Self {
        NullTokens(["", "NA", "N/A", "NULL", "null", "NaN"].map(String::from).to_vec())
    }
}

impl FromStr for NullTokens {
    type Err = std::convert::Infallible;

    /// A comma-separated list; `""` inside it (or a leading/trailing comma) stands for the empty cell.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(NullTokens(s.split(',').map(|t| if t == "\"\"" { String::new() } else { t.to_string() }).collect()))
    }
}

/// Infers a schema from a CSV sample with a header row, with Arrow's CSV inference rules
/// (integers, floats, booleans, `YYYY-MM-DD` dates, ISO-8601 timestamps, else strings).
///
/// The caller passes rows it already parsed and vetted (ragged or non-UTF-8 rows go to the
/// rejects, not into inference), re-serialized here so Arrow sees clean CSV.
pub fn infer_csv_schema<'a>(
    header: &[String],
    rows: impl IntoIterator<Item = &'a csv::StringRecord>,
    null_tokens: &NullTokens,
) -> Result<TableSchema, SchemaError> {
    let mut buffer = csv::Writer::from_writer(Vec::new());
    buffer.write_record(header).map_err(|e| arrow::error::ArrowError::CsvError(e.to_string()))?;
    for row in rows {
        buffer.write_record(row).map_err(|e| arrow::error::ArrowError::CsvError(e.to_string()))?;
    }
    let bytes = buffer.into_inner().map_err(|e| arrow::error::ArrowError::CsvError(e.to_string()))?;
    let format = arrow::csv::reader::Format::default().with_header(true).with_null_regex(null_tokens.to_regex()?);
    let (schema, _) = format.infer_schema(bytes.as_slice(), None)?;
    TableSchema::from_arrow(&schema)
}

/// Infers a schema from sample JSON rows (already flattened), with Arrow's JSON inference.
/// Columns are ordered by first appearance, which Arrow's inference does not guarantee.
pub fn infer_json_schema<'a>(rows: impl IntoIterator<Item = &'a serde_json::Map<String, serde_json::Value>>) -> Result<TableSchema, SchemaError> {
    let rows: Vec<serde_json::Value> = rows.into_iter().map(|m| serde_json::Value::Object(m.clone())).collect();
    let inferred = arrow::json::reader::infer_json_schema_from_iterator(rows.iter().map(Ok))?;
    let mut order: Vec<&str> = Vec::new();
    for row in &rows {
        for key in row.as_object().into_iter().flat_map(|m| m.keys()) {
            if !order.contains(&key.as_str()) {
                order.push(key);
            }
        }
    }
    let mut columns = Vec::with_capacity(order.len());
    for name in order {
        let field = inferred.field_with_name(name)?;
        // A JSON string that looks like a date stays a string in Arrow's JSON inference; that
        // is the honest answer (the producer keeps the value as sent).
        columns.push(Column { name: name.to_string(), column_type: ColumnType::from_arrow(field.data_type()), nullable: true });
    }
    TableSchema::new(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(lines: &[&str]) -> (Vec<String>, Vec<csv::StringRecord>) {
        let text = lines.join("\n");
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header = reader.headers().unwrap().iter().map(String::from).collect();
        let rows = reader.records().map(|r| r.unwrap()).collect();
        (header, rows)
    }

    #[test]
    fn infers_the_seed_sales_types() {
        let (header, rows) = records(&[
            "sale_id,customer_id,product_id,branch_id,sale_date,quantity,unit_price,total_amount",
            "SALE100001,CUST010,PROD010,BR006,2025-03-19,6,70.67,424.02",
            "SALE100002,CUST044,PROD006,BR007,2025-03-19,3,1302.26,3906.78",
        ]);
        let schema = infer_csv_schema(&header, &rows, &NullTokens::default()).unwrap();
        let types: Vec<_> = schema.fields.iter().map(|c| c.column_type).collect();
        use ColumnType::*;
        assert_eq!(types, vec![String, String, String, String, Date, Int64, Float64, Float64]);
    }

    #[test]
    fn null_tokens_do_not_decide_types_and_all_kinds_are_found() {
        let (header, rows) = records(&["n,x,flag,at,note", "1,NA,true,2024-01-02 03:04:05,hello", ",2.5,false,2024-01-02T03:04:05.123,NULL", "NA,3,TRUE,,x"]);
        let schema = infer_csv_schema(&header, &rows, &NullTokens::default()).unwrap();
        let types: Vec<_> = schema.fields.iter().map(|c| c.column_type).collect();
        use ColumnType::*;
        assert_eq!(types, vec![Int64, Float64, Boolean, Timestamp, String]);
        // With "NA" not a null token, column n holds a non-number and becomes a string.
        let tokens: NullTokens = ",NULL".parse().unwrap();
        let schema = infer_csv_schema(&header, &rows, &tokens).unwrap();
        assert_eq!(schema.fields[0].column_type, String);
    }

    #[test]
    fn schema_file_round_trips_and_rejects_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schema.json");
        let schema = TableSchema::new(vec![
            Column { name: "id".into(), column_type: ColumnType::Int64, nullable: false },
            Column { name: "at".into(), column_type: ColumnType::Timestamp, nullable: true },
        ])
        .unwrap();
        schema.write_file(&path).unwrap();
        assert_eq!(TableSchema::read_file(&path).unwrap(), schema);

        std::fs::write(&path, r#"{"fields":[{"name":"a","type":"int32"}]}"#).unwrap();
        let err = TableSchema::read_file(&path).unwrap_err().to_string();
        assert!(err.contains("string|int64|float64"), "{err}");
        std::fs::write(&path, r#"{"fields":[{"name":"a","type":"int64"},{"name":"a","type":"string"}]}"#).unwrap();
        assert!(matches!(TableSchema::read_file(&path), Err(SchemaError::DuplicateColumn { .. })));
        std::fs::write(&path, r#"{"fields":[{"name":"_kappa_id","type":"string"}]}"#).unwrap();
        assert!(matches!(TableSchema::read_file(&path), Err(SchemaError::ReservedColumn { .. })));
    }

    #[test]
    fn json_inference_keeps_first_appearance_order() {
        let rows: Vec<serde_json::Map<String, serde_json::Value>> =
            vec![serde_json::from_str(r#"{"b": 1, "a": "x"}"#).unwrap(), serde_json::from_str(r#"{"a": "y", "c": 2.5, "b": 2}"#).unwrap()];
        let schema = infer_json_schema(&rows).unwrap();
        let names: Vec<_> = schema.fields.iter().map(|c| (c.name.as_str(), c.column_type)).collect();
        assert_eq!(names, vec![("b", ColumnType::Int64), ("a", ColumnType::String), ("c", ColumnType::Float64)]);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn inferred_type_matches_generated_column(ints in prop::collection::vec(any::<i32>(), 1..20), floats in prop::collection::vec(-1e9f64..1e9, 1..20), nulls in prop::collection::vec(any::<bool>(), 20)) {
            let n = ints.len().min(floats.len());
            let header = vec!["i".to_string(), "f".to_string(), "s".to_string()];
            let rows: Vec<csv::StringRecord> = (0..n)
                .map(|k| {
                    let i = if nulls[k] && k > 0 { "NA".to_string() } else { ints[k].to_string() };
                    csv::StringRecord::from(vec![i, format!("{:.3}", floats[k]), format!("x{k}")])
                })
                .collect();
            let schema = infer_csv_schema(&header, &rows, &NullTokens::default()).unwrap();
            let types: Vec<ColumnType> = schema.fields.iter().map(|c| c.column_type).collect();
            prop_assert_eq!(types, vec![ColumnType::Int64, ColumnType::Float64, ColumnType::String]);
        }
    }
}
