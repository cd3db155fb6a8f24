//! Rows into typed JSON events.
//!
//! The producer's hot path: every row of a 10-million-row CSV passes through [`RowEncoder`], so
//! it writes JSON bytes straight into a reused buffer (no `serde_json::Value` per row) and
//! checks each cell against its column's type on the way. A cell that does not fit is an
//! error naming the column; the caller quarantines the row.

use std::fmt::Write as _;

use kappa_common::event::EVENT_ID_FIELD;
use kappa_common::schema::{ColumnType, NullTokens, TableSchema};
use kappa_common::shaped::Shape;
use serde_json::Value;

/// Why a row could not become an event.
#[derive(Debug, Clone, PartialEq)]
pub struct CellError {
    pub column: String,
    pub reason: String,
}

impl std::fmt::Display for CellError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "column {:?}: {}", self.column, self.reason)
    }
}

struct EncodedColumn {
    name: String,
    column_type: ColumnType,
    nullable: bool,
    /// `,"name":` pre-escaped, so each cell costs one copy for its name.
    prefix: Vec<u8>,
}

pub struct RowEncoder {
    columns: Vec<EncodedColumn>,
    null_tokens: NullTokens,
    /// Set for the embedded log: rows with no member beyond the schema's are written as their
    /// values alone, in this shape (the identity, then the schema's columns).
    shape: Option<Shape>,
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    // Most cells need no escaping: copy them in one go, and leave the rest to serde_json.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(out, s).expect("writing to a Vec cannot fail");
    }
}

/// True if `text` is already a JSON number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`),
/// so it can be copied instead of parsed and re-printed — which also keeps its exact digits
/// (`1299.00` stays `1299.00`).
fn is_json_number(text: &[u8], allow_fraction: bool) -> bool {
    let mut i = usize::from(text.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < text.len() && text[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && text[int_start] == b'0') {
        return false;
    }
    if !allow_fraction {
        return i == text.len();
    }
    if i < text.len() && text[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if i < text.len() && (text[i] == b'e' || text[i] == b'E') {
        i += 1;
        if i < text.len() && (text[i] == b'+' || text[i] == b'-') {
            i += 1;
        }
        let exponent_digits = digits(&mut i);
        // Large exponents may overflow to infinity: let the parser decide those.
        if exponent_digits == 0 || exponent_digits > 2 {
            return false;
        }
    }
    i == text.len()
}

impl RowEncoder {
    pub fn new(schema: &TableSchema, null_tokens: NullTokens) -> RowEncoder {
        let columns = schema
            .fields
            .iter()
            .map(|c| {
                let mut prefix = b",".to_vec();
                json_string(&mut prefix, &c.name);
                prefix.push(b':');
                EncodedColumn { name: c.name.clone(), column_type: c.column_type, nullable: c.nullable, prefix }
            })
            .collect();
        RowEncoder { columns, null_tokens, shape: None }
    }

    /// The shape of the events [`RowEncoder::shaped`] writes, for `schema`.
    pub fn shape_of(schema: &TableSchema) -> Shape {
        Shape::new(std::iter::once(EVENT_ID_FIELD.to_string()).chain(schema.fields.iter().map(|c| c.name.clone())).collect())
    }

    /// Writes the rows it can as shaped events of `shape` (made by [`RowEncoder::shape_of`]
    /// for this encoder's schema), the others as objects.
    pub fn shaped(mut self, shape: Shape) -> RowEncoder {
        debug_assert_eq!(shape.names().len(), self.columns.len() + 1);
        self.shape = Some(shape);
        self
    }

    /// Starts an event; `shaped` when it is written as its values (and the shape is set).
    fn begin(&self, out: &mut Vec<u8>, event_id: &str, shaped: bool) {
        match &self.shape {
            Some(shape) if shaped => shape.begin(out),
            _ => {
                out.clear();
                out.extend_from_slice(b"{\"");
                out.extend_from_slice(EVENT_ID_FIELD.as_bytes());
                out.extend_from_slice(b"\":");
            }
        }
        json_string(out, event_id);
    }

    /// What comes before a column's value: `,` in a shaped event, `,"name":` in an object.
    fn separator(column: &EncodedColumn, shaped: bool) -> &[u8] {
        if shaped { b"," } else { &column.prefix }
    }

    /// Encodes CSV cells; `cells[i]` is the text for schema column `i` (`None` when the input
    /// lacks the column). `extra` are input columns the schema does not know, kept as strings.
    pub fn encode_text_row<'a>(
        &self,
        event_id: &str,
        cells: impl Iterator<Item = Option<&'a str>>,
        extra: &[(&str, &str)],
        out: &mut Vec<u8>,
    ) -> Result<(), CellError> {
        let shaped = self.shape.is_some() && extra.is_empty();
        self.begin(out, event_id, shaped);
        for (column, cell) in self.columns.iter().zip(cells) {
            out.extend_from_slice(Self::separator(column, shaped));
            match cell {
                Some(text) if !self.null_tokens.is_null(text) => encode_text_cell(column, text, out)?,
                _ if column.nullable => out.extend_from_slice(b"null"),
                _ => return Err(null_in_required(column)),
            }
        }
        for (name, text) in extra {
            out.push(b',');
            json_string(out, name);
            out.push(b':');
            if self.null_tokens.is_null(text) {
                out.extend_from_slice(b"null");
            } else {
                json_string(out, text);
            }
        }
        out.push(if shaped { b']' } else { b'}' });
        Ok(())
    }

    /// Encodes a flattened JSON row: schema columns first, in schema order and checked; then
    /// any fields the schema does not know, passed through as they are.
    pub fn encode_json_row(&self, event_id: &str, row: &serde_json::Map<String, Value>, out: &mut Vec<u8>) -> Result<(), CellError> {
        // Shaped when every member is a schema column (a reserved or unknown one is not).
        let shaped = self.shape.is_some() && self.columns.iter().filter(|c| row.contains_key(&c.name)).count() == row.len();
        self.begin(out, event_id, shaped);
        for column in &self.columns {
            out.extend_from_slice(Self::separator(column, shaped));
            match row.get(&column.name) {
                None | Some(Value::Null) if column.nullable => out.extend_from_slice(b"null"),
                None | Some(Value::Null) => return Err(null_in_required(column)),
                Some(Value::String(text)) if self.null_tokens.is_null(text) && column.column_type != ColumnType::String => {
                    if !column.nullable {
                        return Err(null_in_required(column));
                    }
                    out.extend_from_slice(b"null")
                }
                Some(value) => encode_json_cell(column, value, out)?,
            }
        }
        for (name, value) in row {
            if name == EVENT_ID_FIELD {
                return Err(CellError { column: name.clone(), reason: "is reserved by kappa-lake".into() });
            }
            if self.columns.iter().any(|c| &c.name == name) {
                continue;
            }
            out.push(b',');
            json_string(out, name);
            out.push(b':');
            serde_json::to_writer(&mut *out, value).expect("writing to a Vec cannot fail");
        }
        out.push(if shaped { b']' } else { b'}' });
        Ok(())
    }
}

fn null_in_required(column: &EncodedColumn) -> CellError {
    CellError { column: column.name.clone(), reason: "is empty but the schema says it is not nullable".into() }
}

fn mismatch(column: &EncodedColumn, shown: &str) -> CellError {
    let mut shown_short = String::new();
    for (i, c) in shown.chars().enumerate() {
        if i == 60 {
            shown_short.push('…');
            break;
        }
        shown_short.push(c);
    }
    let mut reason = String::new();
    let _ = write!(reason, "value {shown_short:?} is not a valid {}", column.column_type);
    CellError { column: column.name.clone(), reason }
}

fn encode_text_cell(column: &EncodedColumn, text: &str, out: &mut Vec<u8>) -> Result<(), CellError> {
    match column.column_type {
        ColumnType::String => json_string(out, text),
        // Up to 18 digits always fits an i64.
        ColumnType::Int64 if text.len() <= 18 && is_json_number(text.as_bytes(), false) => out.extend_from_slice(text.as_bytes()),
        ColumnType::Int64 => {
            let n: i64 = text.trim().parse().map_err(|_| mismatch(column, text))?;
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        }
        ColumnType::Float64 if is_json_number(text.as_bytes(), true) => out.extend_from_slice(text.as_bytes()),
        ColumnType::Float64 => {
            let x: f64 = text.trim().parse().map_err(|_| mismatch(column, text))?;
            write_float(column, x, text, out)?;
        }
        ColumnType::Boolean => {
            let b = if text.eq_ignore_ascii_case("true") {
                true
            } else if text.eq_ignore_ascii_case("false") {
                false
            } else {
                return Err(mismatch(column, text));
            };
            out.extend_from_slice(if b { b"true" } else { b"false" });
        }
        ColumnType::Date => {
            if !is_date(text) {
                return Err(mismatch(column, text));
            }
            json_string(out, text);
        }
        ColumnType::Timestamp => {
            if !is_timestamp(text) {
                return Err(mismatch(column, text));
            }
            json_string(out, text);
        }
    }
    Ok(())
}

fn write_float(column: &EncodedColumn, x: f64, shown: &str, out: &mut Vec<u8>) -> Result<(), CellError> {
    if !x.is_finite() {
        return Err(CellError {
            column: column.name.clone(),
            reason: format!("value {shown:?} is not a finite number (JSON cannot carry it; add it to --null-tokens to send null)"),
        });
    }
    out.extend_from_slice(ryu::Buffer::new().format_finite(x).as_bytes());
    Ok(())
}

fn encode_json_cell(column: &EncodedColumn, value: &Value, out: &mut Vec<u8>) -> Result<(), CellError> {
    match (column.column_type, value) {
        (ColumnType::String, Value::String(s)) => json_string(out, s),
        // A string column may receive numbers or booleans from loosely typed JSON; their text
        // is the faithful string value.
        (ColumnType::String, Value::Number(_) | Value::Bool(_)) => json_string(out, &value.to_string()),
        (ColumnType::Int64, Value::Number(n)) if n.is_i64() => out.extend_from_slice(itoa::Buffer::new().format(n.as_i64().expect("checked")).as_bytes()),
        (ColumnType::Float64, Value::Number(n)) => {
            let x = n.as_f64().ok_or_else(|| mismatch(column, &n.to_string()))?;
            write_float(column, x, &n.to_string(), out)?;
        }
        (ColumnType::Boolean, Value::Bool(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        (ColumnType::Date, Value::String(s)) if is_date(s) => json_string(out, s),
        (ColumnType::Timestamp, Value::String(s)) if is_timestamp(s) => json_string(out, s),
        (_, Value::String(s)) => {
            // Numbers and booleans quoted as strings are common in exported JSON.
            encode_text_cell(column, s, out)?;
        }
        (_, other) => return Err(mismatch(column, &other.to_string())),
    }
    Ok(())
}

/// `YYYY-MM-DD`, a real calendar date.
pub fn is_date(text: &str) -> bool {
    text.len() == 10 && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
}

/// An ISO-8601 / RFC 3339 timestamp as Arrow parses it (`T` or space, optional fraction and
/// zone).
pub fn is_timestamp(text: &str) -> bool {
    arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_common::schema::Column;

    fn schema(cols: &[(&str, ColumnType, bool)]) -> TableSchema {
        TableSchema::new(cols.iter().map(|(n, t, nullable)| Column { name: n.to_string(), column_type: *t, nullable: *nullable }).collect()).unwrap()
    }

    fn encode(encoder: &RowEncoder, cells: &[&str]) -> Result<Value, CellError> {
        let mut out = Vec::new();
        encoder.encode_text_row("f:0:1", cells.iter().map(|c| Some(*c)), &[], &mut out)?;
        Ok(serde_json::from_slice(&out).expect("valid JSON"))
    }

    #[test]
    fn text_cells_become_typed_json() {
        use ColumnType::*;
        let encoder = RowEncoder::new(
            &schema(&[("s", String, true), ("i", Int64, true), ("f", Float64, true), ("b", Boolean, true), ("d", Date, true), ("t", Timestamp, true)]),
            NullTokens::default(),
        );
        let v = encode(&encoder, &["a \"q\"\n", "-42", "70.67", "TRUE", "2025-03-19", "2025-03-19 10:00:01.5"]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"_kappa_id": "f:0:1", "s": "a \"q\"\n", "i": -42, "f": 70.67, "b": true, "d": "2025-03-19", "t": "2025-03-19 10:00:01.5"})
        );
        let v = encode(&encoder, &["", "NA", "NULL", "", "", ""]).unwrap();
        assert_eq!(v["s"], Value::Null);
        assert_eq!(v["i"], Value::Null);
    }

    #[test]
    fn json_numbers_are_copied_and_others_normalized() {
        use ColumnType::*;
        for (text, json) in [
            ("0", true),
            ("-12", true),
            ("007", false),
            ("+5", false),
            ("1.", false),
            (".5", false),
            ("1e5", true),
            ("1E+05", true),
            ("1e999", false),
            ("-", false),
            ("", false),
        ] {
            assert_eq!(is_json_number(text.as_bytes(), true), json, "{text:?}");
        }
        assert!(!is_json_number(b"1.5", false));
        let encoder = RowEncoder::new(&schema(&[("i", Int64, true), ("f", Float64, true)]), NullTokens::default());
        let v = encode(&encoder, &["007", "+.5"]).unwrap();
        assert_eq!((v["i"].as_i64(), v["f"].as_f64()), (Some(7), Some(0.5)));
        let mut out = Vec::new();
        encoder.encode_text_row("x", ["12", "1299.00"].into_iter().map(Some), &[], &mut out).unwrap();
        assert_eq!(std::string::String::from_utf8(out).unwrap(), r#"{"_kappa_id":"x","i":12,"f":1299.00}"#);
        assert!(encode(&encoder, &["1", "1e999"]).unwrap_err().reason.contains("not a finite number"));
    }

    #[test]
    fn misfits_name_column_and_value() {
        use ColumnType::*;
        let encoder = RowEncoder::new(&schema(&[("i", Int64, true), ("d", Date, true), ("r", String, false)]), NullTokens::default());
        assert_eq!(encode(&encoder, &["1.5", "2025-03-19", "x"]).unwrap_err().reason, "value \"1.5\" is not a valid int64");
        assert_eq!(encode(&encoder, &["1", "2025-02-30", "x"]).unwrap_err().column, "d");
        assert!(encode(&encoder, &["1", "2025-02-03", ""]).unwrap_err().reason.contains("not nullable"));
    }

    #[test]
    fn json_rows_are_checked_and_extra_fields_pass_through() {
        use ColumnType::*;
        let encoder = RowEncoder::new(&schema(&[("id", Int64, true), ("price", Float64, true), ("name", String, true)]), NullTokens::default());
        let row: serde_json::Map<std::string::String, Value> = serde_json::from_str(r#"{"name": 5, "id": "7", "price": 25, "extra": [1]}"#).unwrap();
        let mut out = Vec::new();
        encoder.encode_json_row("x:0:0", &row, &mut out).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!({"_kappa_id": "x:0:0", "id": 7, "price": 25.0, "name": "5", "extra": [1]}));
        let bad: serde_json::Map<std::string::String, Value> = serde_json::from_str(r#"{"id": 1.5}"#).unwrap();
        assert_eq!(encoder.encode_json_row("x:0:1", &bad, &mut out).unwrap_err().column, "id");
    }

    #[test]
    fn shaped_events_stand_for_the_bytes_of_the_objects() {
        use ColumnType::*;
        let table = schema(&[("s", String, true), ("i", Int64, true), ("f", Float64, true), ("t", Timestamp, true)]);
        let objects = RowEncoder::new(&table, NullTokens::default());
        let shape = RowEncoder::shape_of(&table);
        let shaped = RowEncoder::new(&table, NullTokens::default()).shaped(shape.clone());
        let as_object = |payload: &[u8]| {
            let (id, values) = kappa_common::shaped::split_shaped(payload).expect("shaped");
            assert_eq!(id, shape.id());
            let mut object = Vec::new();
            shape.write_object(values, &mut object).unwrap();
            object
        };
        let (mut expected, mut out) = (Vec::new(), Vec::new());
        for cells in [["a \"q\", ]\n", "-42", "1299.00", "2025-03-19 10:00:01.5"], ["", "NA", "", ""]] {
            objects.encode_text_row("f:0:1", cells.iter().map(|c| Some(*c)), &[], &mut expected).unwrap();
            shaped.encode_text_row("f:0:1", cells.iter().map(|c| Some(*c)), &[], &mut out).unwrap();
            assert_eq!(as_object(&out), expected);
            assert!(out.len() < expected.len());
        }
        // A row with a member beyond the schema stays an object.
        shaped.encode_text_row("f:0:2", ["x", "1", "2", ""].into_iter().map(Some), &[("more", "y")], &mut out).unwrap();
        objects.encode_text_row("f:0:2", ["x", "1", "2", ""].into_iter().map(Some), &[("more", "y")], &mut expected).unwrap();
        assert_eq!(out, expected);
        // JSON rows: shaped when every member is a column (absent ones are null).
        let row: serde_json::Map<std::string::String, Value> = serde_json::from_str(r#"{"i": 7, "s": "x"}"#).unwrap();
        shaped.encode_json_row("x:0:0", &row, &mut out).unwrap();
        objects.encode_json_row("x:0:0", &row, &mut expected).unwrap();
        assert_eq!(as_object(&out), expected);
        let row: serde_json::Map<std::string::String, Value> = serde_json::from_str(r#"{"i": 7, "extra": [1]}"#).unwrap();
        shaped.encode_json_row("x:0:1", &row, &mut out).unwrap();
        objects.encode_json_row("x:0:1", &row, &mut expected).unwrap();
        assert_eq!(out, expected);
    }
}
