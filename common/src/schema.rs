//! Table schemas: inferred from samples, or read from a schema file users can edit.
//!
//! CSV inference is arrow-csv's; JSON inference ([`JsonTypeGuess`]) is kappa-lake's own, over
//! values that keep their digits ([`crate::json`]), and the producer and the consumer share it,
//! so they agree on what "looks like an integer" or "looks like a timestamp". The kinds of
//! column kappa-lake deals in are deliberately few — see [`ColumnType`] — because every one of
//! them must round-trip through JSON events, Parquet, Delta, Glue and Athena.
//!
//! Schema file format (JSON):
//! ```json
//! {"fields": [{"name": "sale_id", "type": "string"},
//!             {"name": "quantity", "type": "int64", "nullable": false}]}
//! ```
//! `type` is one of `string`, `int64`, `float64`, `boolean`, `date`, `timestamp` (UTC),
//! `timestamp_ntz`, `decimal(P,S)`; `nullable` defaults to true.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::json::{Json, Object};

/// The column types kappa-lake supports end to end.
///
/// Schema files spell them `string`, `int64`, `float64`, `boolean`, `date`, `timestamp`,
/// `timestamp_ntz` and `decimal(P,S)` (and accept the usual other names: `long`, `bigint`,
/// `double`, `bool`, …). How a JSON value becomes a value of each is [`crate::values`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    String,
    Int64,
    Float64,
    Boolean,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An instant, microsecond precision, stored as UTC (Delta `timestamp`): a value without a
    /// zone is read as UTC, one with a zone is converted to UTC. Every Delta reader (Athena,
    /// Spark, Trino, DuckDB, python deltalake) reads it.
    Timestamp,
    /// A timestamp without a zone (Delta `timestamp_ntz`), only when a schema asks for it: it
    /// needs the `timestampNtz` table feature, which not every engine reads. Values are stored
    /// as their UTC wall time, as for [`ColumnType::Timestamp`].
    TimestampNtz,
    /// An exact decimal of `precision` digits, `scale` of them after the point: integers beyond
    /// int64 are inferred as `decimal(20,0)` (every 64-bit unsigned id) or `decimal(38,0)`.
    Decimal {
        precision: u8,
        scale: u8,
    },
}

/// The largest decimal precision (Delta's and Parquet's 128-bit decimals).
pub const MAX_DECIMAL_PRECISION: u8 = 38;

impl ColumnType {
    pub fn to_arrow(self) -> DataType {
        match self {
            ColumnType::String => DataType::Utf8,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            ColumnType::TimestampNtz => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::Decimal { precision, scale } => DataType::Decimal128(precision, scale as i8),
        }
    }

    /// Maps an inferred Arrow type (arrow-csv's inference) onto the supported kinds: integers
    /// to int64 (an unsigned 64-bit one to `decimal(20,0)`, never a float), floats to float64,
    /// every timestamp to a UTC timestamp (times without a zone are UTC); anything without a
    /// faithful mapping (nested, binary, all-null) is kept as a string rather than lost.
    pub fn from_arrow(data_type: &DataType) -> ColumnType {
        match data_type {
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => ColumnType::Int64,
            DataType::UInt64 => ColumnType::Decimal { precision: 20, scale: 0 },
            DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnType::Float64,
            DataType::Decimal128(p, s) | DataType::Decimal256(p, s) if *p <= MAX_DECIMAL_PRECISION && *s >= 0 && (*s as u8) <= *p => {
                ColumnType::Decimal { precision: *p, scale: *s as u8 }
            }
            DataType::Boolean => ColumnType::Boolean,
            DataType::Date32 | DataType::Date64 => ColumnType::Date,
            DataType::Timestamp(..) => ColumnType::Timestamp,
            _ => ColumnType::String,
        }
    }

    /// The type of a column of a table's own Arrow schema (a Delta table's, read back): as
    /// [`ColumnType::from_arrow`], except that a timestamp without a zone is `timestamp_ntz`.
    /// `None` for a type kappa-lake does not write.
    pub fn of_table_column(data_type: &DataType) -> Option<ColumnType> {
        Some(match data_type {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::String,
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => ColumnType::Int64,
            DataType::Float32 | DataType::Float64 => ColumnType::Float64,
            DataType::Boolean => ColumnType::Boolean,
            DataType::Date32 => ColumnType::Date,
            DataType::Timestamp(_, Some(_)) => ColumnType::Timestamp,
            DataType::Timestamp(_, None) => ColumnType::TimestampNtz,
            DataType::Decimal128(..) => ColumnType::from_arrow(data_type),
            _ => return None,
        })
    }

    /// True for the types a JSON number is read into.
    pub fn is_numeric(self) -> bool {
        matches!(self, ColumnType::Int64 | ColumnType::Float64 | ColumnType::Decimal { .. })
    }
}

/// The zone of every [`ColumnType::Timestamp`].
pub const UTC: &str = "UTC";

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::String => f.write_str("string"),
            ColumnType::Int64 => f.write_str("int64"),
            ColumnType::Float64 => f.write_str("float64"),
            ColumnType::Boolean => f.write_str("boolean"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Timestamp => f.write_str("timestamp"),
            ColumnType::TimestampNtz => f.write_str("timestamp_ntz"),
            ColumnType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
        }
    }
}

/// The type names a schema file may use.
pub const TYPE_NAMES: &str = "string, int64, float64, boolean, date, timestamp, timestamp_ntz or decimal(P,S)";

impl FromStr for ColumnType {
    type Err = String;

    fn from_str(text: &str) -> Result<ColumnType, String> {
        let name = text.trim().to_ascii_lowercase();
        Ok(match name.as_str() {
            "string" | "str" | "text" | "varchar" | "utf8" => ColumnType::String,
            "int64" | "long" | "bigint" | "int" | "integer" => ColumnType::Int64,
            "float64" | "double" | "float" | "real" => ColumnType::Float64,
            "boolean" | "bool" => ColumnType::Boolean,
            "date" => ColumnType::Date,
            "timestamp" | "timestamptz" | "timestamp_ltz" => ColumnType::Timestamp,
            "timestamp_ntz" | "timestampntz" => ColumnType::TimestampNtz,
            _ => {
                let unknown = || format!("unknown column type {text:?}: use {TYPE_NAMES}");
                let inner = name.strip_prefix("decimal(").and_then(|rest| rest.strip_suffix(')')).ok_or_else(unknown)?;
                let (precision, scale) = inner.split_once(',').ok_or_else(unknown)?;
                let precision: u8 = precision.trim().parse().map_err(|_| unknown())?;
                let scale: u8 = scale.trim().parse().map_err(|_| unknown())?;
                if precision == 0 || precision > MAX_DECIMAL_PRECISION || scale > precision {
                    return Err(format!("{text}: a decimal's precision is 1 to {MAX_DECIMAL_PRECISION} and its scale at most its precision"));
                }
                ColumnType::Decimal { precision, scale }
            }
        })
    }
}

impl Serialize for ColumnType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ColumnType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ColumnType, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
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
         \"string|int64|float64|boolean|date|timestamp|timestamp_ntz|decimal(P,S)\", \"nullable\": true}}, ...]}}"
    )]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("schema has no columns")]
    Empty,
    #[error("column name {name:?} appears more than once; column names must be unique")]
    DuplicateColumn { name: String },
    #[error("columns {other:?} and {name:?} differ only in case: Delta tables (and Spark, Athena, Glue) take them for one column; rename one of them")]
    CaseDuplicate { name: String, other: String },
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
        // Delta column names are case-insensitive (so are Spark's, Athena's, Glue's): `Name`
        // beside `name` is one column to them, and the Delta log refuses the schema.
        let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
        for (index, column) in self.fields.iter().enumerate() {
            if column.name.is_empty() {
                return Err(SchemaError::EmptyColumnName { index });
            }
            if column.name == crate::event::EVENT_ID_FIELD {
                return Err(SchemaError::ReservedColumn { name: column.name.clone() });
            }
            match seen.insert(column.name.to_lowercase(), column.name.as_str()) {
                Some(other) if other == column.name => return Err(SchemaError::DuplicateColumn { name: column.name.clone() }),
                Some(other) => return Err(SchemaError::CaseDuplicate { name: column.name.clone(), other: other.to_string() }),
                None => {}
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

/// Infers a schema from sample JSON rows (already flattened), as DuckDB's JSON reader does:
/// see [`JsonTypeGuess`]. Columns are ordered by first appearance. A column whose sampled values
/// are all null (or nested) gets no type and is left out: it joins the table when a value shows
/// what it holds (a member whose value is null carries nothing a missing column would not).
pub fn infer_json_schema<'a>(rows: impl IntoIterator<Item = &'a Object>) -> Result<TableSchema, SchemaError> {
    let mut guesses: IndexMap<&str, JsonTypeGuess> = IndexMap::new();
    for row in rows {
        for (name, value) in row {
            guesses.entry(name.as_str()).or_default().add(value);
        }
    }
    // A member that differs from an earlier one only in case cannot be a column of its own (see
    // `validate`): the first spelling is the column, and rows with the other are refused as read
    // rather than the whole input.
    let mut lower_names = std::collections::HashSet::new();
    let columns = guesses
        .into_iter()
        .filter(|(name, _)| lower_names.insert(name.to_lowercase()))
        .filter_map(|(name, guess)| guess.column_type().map(|column_type| Column { name: name.to_string(), column_type, nullable: true }))
        .collect();
    TableSchema::new(columns)
}

/// The type a column's JSON values call for, from the values seen so far:
/// - `true`/`false` → boolean;
/// - integers (no fraction, no exponent) → int64, or `decimal(20,0)` / `decimal(38,0)` when one
///   is beyond int64 (never a float: an unsigned 64-bit id keeps its digits), or string past 38
///   digits;
/// - other numbers → float64 (integers among them too, unless one is beyond int64: then string);
/// - strings → date when every one is `YYYY-MM-DD`, timestamp when every one is an ISO 8601
///   date and time (dates among them are midnight), else string;
/// - any other mix → string (a number's digits as written, `true`/`false`);
/// - null, objects and arrays say nothing: all-null → no type.
#[derive(Debug, Clone, Default)]
pub struct JsonTypeGuess {
    kind: Option<Kind>,
    /// The most digits of an integer seen, and whether one was beyond int64.
    digits: usize,
    beyond_int64: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Boolean,
    Integer,
    Float,
    Date,
    Timestamp,
    Text,
}

impl JsonTypeGuess {
    pub fn add(&mut self, value: &Json) {
        let kind = match value {
            Json::Null | Json::Object(_) | Json::Array(_) => return,
            Json::Bool(_) => Kind::Boolean,
            Json::Number(text) => match crate::lexical::integer_digits(text) {
                Some(digits) => {
                    self.digits = self.digits.max(digits);
                    self.beyond_int64 |= text.parse::<i64>().is_err();
                    Kind::Integer
                }
                None if text.parse::<f64>().is_ok_and(f64::is_finite) => Kind::Float,
                None => Kind::Text,
            },
            Json::String(text) if crate::lexical::is_iso_date(text) => Kind::Date,
            Json::String(text) if crate::lexical::looks_like_timestamp(text) => Kind::Timestamp,
            Json::String(_) => Kind::Text,
        };
        self.kind = Some(match (self.kind, kind) {
            (None, kind) => kind,
            (Some(a), b) if a == b => a,
            (Some(Kind::Integer), Kind::Float) | (Some(Kind::Float), Kind::Integer) => Kind::Float,
            (Some(Kind::Date), Kind::Timestamp) | (Some(Kind::Timestamp), Kind::Date) => Kind::Timestamp,
            _ => Kind::Text,
        });
    }

    /// The column's type, `None` when no value said (all null, or nested).
    pub fn column_type(&self) -> Option<ColumnType> {
        Some(match self.kind? {
            Kind::Boolean => ColumnType::Boolean,
            Kind::Integer if !self.beyond_int64 => ColumnType::Int64,
            Kind::Integer if self.digits <= 20 => ColumnType::Decimal { precision: 20, scale: 0 },
            Kind::Integer if self.digits <= MAX_DECIMAL_PRECISION as usize => ColumnType::Decimal { precision: MAX_DECIMAL_PRECISION, scale: 0 },
            Kind::Float if !self.beyond_int64 => ColumnType::Float64,
            Kind::Integer | Kind::Float | Kind::Text => ColumnType::String,
            Kind::Date => ColumnType::Date,
            Kind::Timestamp => ColumnType::Timestamp,
        })
    }
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
        assert!(err.contains("timestamp_ntz"), "{err}");
        std::fs::write(&path, r#"{"fields":[{"name":"a","type":"int64"},{"name":"a","type":"string"}]}"#).unwrap();
        assert!(matches!(TableSchema::read_file(&path), Err(SchemaError::DuplicateColumn { .. })));
        std::fs::write(&path, r#"{"fields":[{"name":"_kappa_id","type":"string"}]}"#).unwrap();
        assert!(matches!(TableSchema::read_file(&path), Err(SchemaError::ReservedColumn { .. })));
    }

    #[test]
    fn json_inference_keeps_first_appearance_order() {
        let rows: Vec<Object> = [r#"{"b": 1, "a": "x"}"#, r#"{"a": "y", "c": 2.5, "b": 2}"#].iter().map(|t| object(t)).collect();
        let schema = infer_json_schema(&rows).unwrap();
        let names: Vec<_> = schema.fields.iter().map(|c| (c.name.as_str(), c.column_type)).collect();
        assert_eq!(names, vec![("b", ColumnType::Int64), ("a", ColumnType::String), ("c", ColumnType::Float64)]);
    }

    fn object(text: &str) -> Object {
        Json::parse(text).unwrap().as_object().unwrap().clone()
    }

    fn guess(values: &[&str]) -> Option<ColumnType> {
        let mut guess = JsonTypeGuess::default();
        for value in values {
            guess.add(&Json::parse(value).unwrap());
        }
        guess.column_type()
    }

    #[test]
    fn json_values_call_for_types_as_duckdb_reads_them() {
        use ColumnType::*;
        let decimal = |precision| Some(Decimal { precision, scale: 0 });
        for (values, expected) in [
            (&["1", "-2", "null"][..], Some(Int64)),
            (&["1", "2.5"], Some(Float64)),
            (&["1e3"], Some(Float64)),
            (&["18446744073709551615", "1"], decimal(20)),
            (&["-9223372036854775809"], decimal(20)),
            (&["123456789012345678901234567890"], decimal(38)),
            (&["1234567890123456789012345678901234567890"], Some(String)),
            (&["18446744073709551615", "0.5"], Some(String)),
            (&["1e400"], Some(String)),
            (&["true", "false"], Some(Boolean)),
            (&["true", "1"], Some(String)),
            (&[r#""2025-03-19""#, r#""2024-02-29""#], Some(Date)),
            (&[r#""2025-03-19""#, r#""2019-01-01T14:22:42""#], Some(Timestamp)),
            (&[r#""2013-01-01T10:00:00Z""#, r#""2019-01-01 14:22:42.5""#, r#""2019-01-01T14:22:42+07:00""#], Some(Timestamp)),
            (&[r#""2025-02-30""#], Some(String)),
            (&[r#""2025-03-19""#, r#""soon""#], Some(String)),
            (&[r#""x""#, "5"], Some(String)),
            (&["null", "null"], None),
            (&[r#"{"a":1}"#, "[1]"], None),
        ] {
            assert_eq!(guess(values), expected, "{values:?}");
        }
        let schema = infer_json_schema(&[object(r#"{"id": 1, "x": null, "t": "2013-01-01T10:00:00Z"}"#)]).unwrap();
        let names: Vec<_> = schema.fields.iter().map(|c| (c.name.as_str(), c.column_type)).collect();
        assert_eq!(names, vec![("id", Int64), ("t", Timestamp)], "an all-null column is left out");
        let schema = infer_json_schema(&[object(r#"{"Name": "a"}"#), object(r#"{"name": 5, "id": 1}"#)]).unwrap();
        let names: Vec<_> = schema.fields.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["Name", "id"], "a member only case apart from an earlier one is not a column of its own");
    }

    #[test]
    fn type_names_round_trip_and_aliases_parse() {
        use ColumnType::*;
        for t in [String, Int64, Float64, Boolean, Date, Timestamp, TimestampNtz, Decimal { precision: 20, scale: 0 }, Decimal { precision: 12, scale: 2 }] {
            assert_eq!(t.to_string().parse::<ColumnType>(), Ok(t));
            assert_eq!(serde_json::from_value::<ColumnType>(serde_json::to_value(t).unwrap()).unwrap(), t);
        }
        assert_eq!("double".parse(), Ok(Float64));
        assert_eq!("BIGINT".parse(), Ok(Int64));
        assert_eq!("Decimal( 10 , 2 )".parse(), Ok(Decimal { precision: 10, scale: 2 }));
        assert!("decimal(39,0)".parse::<ColumnType>().unwrap_err().contains("1 to 38"));
        assert!("decimal(5,6)".parse::<ColumnType>().is_err());
        assert!("int32".parse::<ColumnType>().unwrap_err().contains("timestamp_ntz"));
        assert_eq!(Timestamp.to_arrow(), DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        assert_eq!(ColumnType::of_table_column(&TimestampNtz.to_arrow()), Some(TimestampNtz));
        assert_eq!(ColumnType::from_arrow(&DataType::UInt64), Decimal { precision: 20, scale: 0 });
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
