//! Rows into typed JSON events.
//!
//! The producer's hot path: every row of a 10-million-row CSV passes through [`RowEncoder`], so
//! it writes JSON bytes straight into a reused buffer (no `serde_json::Value` per row) and
//! checks each cell against its column's type on the way. A cell that does not fit is an
//! error naming the column; the caller quarantines the row.

use kappa_common::event::EVENT_ID_FIELD;
use kappa_common::json::{Json, write_string as json_string};
use kappa_common::schema::{ColumnType, NullTokens, TableSchema};
use kappa_common::shaped::Shape;
use kappa_common::values::{self, Misfit};

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

    /// The shape of the events [`RowEncoder::shaped`] writes, for `schema`: its names with
    /// their types, which travel to the consumer with the events.
    pub fn shape_of(schema: &TableSchema) -> Shape {
        let names = std::iter::once(EVENT_ID_FIELD.to_string()).chain(schema.fields.iter().map(|c| c.name.clone())).collect();
        let types = std::iter::once(None).chain(schema.fields.iter().map(|c| Some(c.column_type))).collect();
        Shape::typed(names, types)
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
                Some(text) if !self.null_tokens.is_null(text) => self.encode_text_cell(column, text, out)?,
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
    /// the fields the schema does not know, passed through as they are (numbers with their
    /// digits). A field it does not know whose value is null is left out: it says nothing a
    /// missing column would not, and the row stays shaped.
    pub fn encode_json_row(&self, event_id: &str, row: &kappa_common::json::Object, out: &mut Vec<u8>) -> Result<(), CellError> {
        let unknown = |name: &String, value: &Json| !value.is_null() && !self.columns.iter().any(|c| &c.name == name);
        if row.contains_key(EVENT_ID_FIELD) {
            return Err(CellError { column: EVENT_ID_FIELD.to_string(), reason: "is reserved by kappa-lake".into() });
        }
        let has_unknown = row.iter().any(|(name, value)| unknown(name, value));
        if has_unknown && let Some(reason) = case_clash(row.iter().filter(|(name, value)| unknown(name, value)).map(|(name, _)| name), &self.columns) {
            return Err(reason);
        }
        let shaped = self.shape.is_some() && !has_unknown;
        self.begin(out, event_id, shaped);
        for column in &self.columns {
            out.extend_from_slice(Self::separator(column, shaped));
            match row.get(&column.name) {
                None | Some(Json::Null) if column.nullable => out.extend_from_slice(b"null"),
                None | Some(Json::Null) => return Err(null_in_required(column)),
                Some(Json::String(text)) if self.null_tokens.is_null(text) && column.column_type != ColumnType::String => {
                    if !column.nullable {
                        return Err(null_in_required(column));
                    }
                    out.extend_from_slice(b"null")
                }
                Some(value) => self.encode_json_cell(column, value, out)?,
            }
        }
        for (name, value) in row.iter().filter(|(name, value)| unknown(name, value)) {
            out.push(b',');
            json_string(out, name);
            out.push(b':');
            value.write(out);
        }
        out.push(if shaped { b']' } else { b'}' });
        Ok(())
    }

    /// A text cell (CSV, or a JSON string in a typed column) by [`kappa_common::values`]'
    /// rules. Numbers that are already JSON numbers are copied as they are.
    fn encode_text_cell(&self, column: &EncodedColumn, text: &str, out: &mut Vec<u8>) -> Result<(), CellError> {
        let nulls = &self.null_tokens;
        let misfit = |m: Misfit| CellError { column: column.name.clone(), reason: m.to_string() };
        let written = match column.column_type {
            ColumnType::String => {
                json_string(out, text);
                true
            }
            // Up to 18 digits always fits an i64.
            ColumnType::Int64 if text.len() <= 18 && is_json_number(text.as_bytes(), false) => {
                out.extend_from_slice(text.as_bytes());
                true
            }
            ColumnType::Int64 => values::int64(text, nulls).map_err(misfit)?.map(|n| out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes())).is_some(),
            ColumnType::Float64 if is_json_number(text.as_bytes(), true) => {
                out.extend_from_slice(text.as_bytes());
                true
            }
            // Re-printed, shortest round trip: the same double.
            ColumnType::Float64 => {
                values::float64(text, nulls).map_err(misfit)?.map(|x| out.extend_from_slice(ryu::Buffer::new().format_finite(x).as_bytes())).is_some()
            }
            ColumnType::Decimal { precision, scale } => values::decimal(text, precision, scale, nulls)
                .map_err(misfit)?
                .map(|unscaled| match is_json_number(text.as_bytes(), true) {
                    true => out.extend_from_slice(text.as_bytes()),
                    false => out.extend_from_slice(decimal_text(unscaled, scale).as_bytes()),
                })
                .is_some(),
            ColumnType::Boolean => values::boolean(text, nulls).map_err(misfit)?.map(|b| out.extend_from_slice(if b { b"true" } else { b"false" })).is_some(),
            ColumnType::Date => values::date(text, nulls).map_err(misfit)?.map(|_| json_string(out, text.trim())).is_some(),
            ColumnType::Timestamp | ColumnType::TimestampNtz => {
                values::timestamp(text, column.column_type, nulls).map_err(misfit)?.map(|_| json_string(out, text.trim())).is_some()
            }
        };
        if !written {
            // A null token (the caller sends most of them; these are the ones among spaces).
            if !column.nullable {
                return Err(null_in_required(column));
            }
            out.extend_from_slice(b"null");
        }
        Ok(())
    }

    /// A JSON value: strings as text cells; numbers copied as written when their column takes
    /// them exactly; what a column does not take is an error, never a converted value.
    fn encode_json_cell(&self, column: &EncodedColumn, value: &Json, out: &mut Vec<u8>) -> Result<(), CellError> {
        let misfit = |m: Misfit| CellError { column: column.name.clone(), reason: m.to_string() };
        let refuse = |why: &'static str| CellError {
            column: column.name.clone(),
            reason: Misfit { value: short(value), column_type: column.column_type, why }.to_string(),
        };
        match (column.column_type, value) {
            (_, Json::String(text)) => return self.encode_text_cell(column, text, out),
            // A string column keeps a number's digits as written, and `true`/`false`.
            (ColumnType::String, Json::Number(text)) => json_string(out, text),
            (ColumnType::String, Json::Bool(b)) => json_string(out, if *b { "true" } else { "false" }),
            (ColumnType::Int64, Json::Number(text)) => {
                values::int64(text, &self.null_tokens).map_err(misfit)?;
                out.extend_from_slice(text.as_bytes());
            }
            (ColumnType::Float64, Json::Number(text)) => {
                values::float64(text, &self.null_tokens).map_err(misfit)?;
                out.extend_from_slice(text.as_bytes());
            }
            (ColumnType::Decimal { precision, scale }, Json::Number(text)) => {
                values::decimal(text, precision, scale, &self.null_tokens).map_err(misfit)?;
                out.extend_from_slice(text.as_bytes());
            }
            (ColumnType::Boolean, Json::Bool(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            (_, Json::Object(_) | Json::Array(_)) => return Err(refuse(values::NESTED)),
            (_, Json::Null) => out.extend_from_slice(b"null"),
            (_, Json::Bool(_) | Json::Number(_)) => return Err(refuse("it is not text, and only text can be one")),
        }
        Ok(())
    }
}

fn short(value: &Json) -> String {
    let text = value.to_json_string();
    let mut shown: String = text.chars().take(60).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

/// An unscaled decimal as text with `scale` places (`1234`, 2 → `12.34`).
fn decimal_text(unscaled: i128, scale: u8) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    let scale = usize::from(scale);
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// A member (not a column) whose name differs from a column's, or another such member's, only
/// in case: Delta (and Spark, Athena, Glue) take the two for one column, so a consumer could
/// only quarantine the event. Refused here, where the sender still has it.
fn case_clash<'a>(unknown: impl Iterator<Item = &'a String>, columns: &[EncodedColumn]) -> Option<CellError> {
    let mut earlier: Vec<&str> = Vec::new();
    for name in unknown {
        let lower = name.to_lowercase();
        let column = columns.iter().map(|c| c.name.as_str()).find(|c| c.to_lowercase() == lower);
        if let Some(other) = column.or_else(|| earlier.iter().copied().find(|o| o.to_lowercase() == lower)) {
            return Some(CellError {
                column: name.clone(),
                reason: format!("differs from {other:?} only in case: Delta tables (and Spark, Athena, Glue) take them for one column; rename one of them"),
            });
        }
        earlier.push(name);
    }
    None
}

fn null_in_required(column: &EncodedColumn) -> CellError {
    CellError { column: column.name.clone(), reason: "is empty but the schema says it is not nullable".into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_common::schema::Column;
    use serde_json::Value;

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
        assert_eq!(
            encode(&encoder, &["1.5", "2025-03-19", "x"]).unwrap_err().reason,
            "\"1.5\" is not a valid int64: it has a fraction (a whole number is needed; it is never truncated)"
        );
        assert_eq!(encode(&encoder, &["1", "2025-02-30", "x"]).unwrap_err().column, "d");
        assert!(encode(&encoder, &["1", "2025-02-03", ""]).unwrap_err().reason.contains("not nullable"));
    }

    #[test]
    fn json_rows_are_checked_and_extra_fields_pass_through() {
        use ColumnType::*;
        let encoder = RowEncoder::new(&schema(&[("id", Int64, true), ("price", Float64, true), ("name", String, true)]), NullTokens::default());
        let row = object(r#"{"name": 5, "id": "7", "price": 25, "extra": [1], "gone": null}"#);
        let mut out = Vec::new();
        encoder.encode_json_row("x:0:0", &row, &mut out).unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), r#"{"_kappa_id":"x:0:0","id":7,"price":25,"name":"5","extra":[1]}"#);
        let bad = object(r#"{"id": 1.5}"#);
        assert_eq!(encoder.encode_json_row("x:0:1", &bad, &mut out).unwrap_err().column, "id");
        // A member only case apart from a column, or from another member, is refused with the
        // reason (a consumer could only quarantine it); one with a null value is dropped anyway.
        for (text, member, other) in [(r#"{"Name": "a"}"#, "Name", "name"), (r#"{"id": 1, "Extra": 1, "extra": 2}"#, "extra", "Extra")] {
            let error = encoder.encode_json_row("x:0:2", &object(text), &mut out).unwrap_err();
            assert_eq!(error.column, member, "{text}");
            assert!(error.reason.contains(&format!("differs from {other:?} only in case")), "{error}");
        }
        encoder.encode_json_row("x:0:3", &object(r#"{"id": 1, "NAME": null}"#), &mut out).unwrap();
    }

    fn object(text: &str) -> kappa_common::json::Object {
        Json::parse(text).unwrap().as_object().unwrap().clone()
    }

    #[test]
    fn json_values_keep_their_digits_or_are_refused() {
        use ColumnType::*;
        let table = schema(&[("s", String, true), ("i", Int64, true), ("f", Float64, true), ("u", Decimal { precision: 20, scale: 0 }, true)]);
        let encoder = RowEncoder::new(&table, NullTokens::default());
        let encoded = |text: &str| {
            let mut out = Vec::new();
            encoder.encode_json_row("x", &object(text), &mut out).map(|()| std::string::String::from_utf8(out).unwrap())
        };
        assert_eq!(encoded(r#"{"s": 1e3}"#).unwrap(), r#"{"_kappa_id":"x","s":"1e3","i":null,"f":null,"u":null}"#);
        assert_eq!(encoded(r#"{"s": -0}"#).unwrap(), r#"{"_kappa_id":"x","s":"-0","i":null,"f":null,"u":null}"#);
        assert_eq!(encoded(r#"{"s": 12345678901234567890123}"#).unwrap(), r#"{"_kappa_id":"x","s":"12345678901234567890123","i":null,"f":null,"u":null}"#);
        assert_eq!(encoded(r#"{"s": true, "f": 1e3}"#).unwrap(), r#"{"_kappa_id":"x","s":"true","i":null,"f":1e3,"u":null}"#);
        assert_eq!(encoded(r#"{"u": 18446744073709551615}"#).unwrap(), r#"{"_kappa_id":"x","s":null,"i":null,"f":null,"u":18446744073709551615}"#);
        assert_eq!(encoded(r#"{"i": "0012", "f": "NaN"}"#).unwrap(), r#"{"_kappa_id":"x","s":null,"i":12,"f":null,"u":null}"#, "one rule with the consumer");
        for (text, column) in
            [(r#"{"i": 100.5}"#, "i"), (r#"{"i": 1e3}"#, "i"), (r#"{"i": -9223372036854775809}"#, "i"), (r#"{"f": 1e400}"#, "f"), (r#"{"f": true}"#, "f")]
        {
            assert_eq!(encoded(text).unwrap_err().column, column, "{text}");
        }
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
        // JSON rows: shaped when every member is a column (absent ones are null), or null.
        let row = object(r#"{"i": 7, "s": "x", "unknown": null}"#);
        shaped.encode_json_row("x:0:0", &row, &mut out).unwrap();
        objects.encode_json_row("x:0:0", &row, &mut expected).unwrap();
        assert_eq!(as_object(&out), expected);
        let row = object(r#"{"i": 7, "extra": [1]}"#);
        shaped.encode_json_row("x:0:1", &row, &mut out).unwrap();
        objects.encode_json_row("x:0:1", &row, &mut expected).unwrap();
        assert_eq!(out, expected);
    }
}
