//! Events in the producer's plain form decoded straight into Arrow columns.
//!
//! `positional` finds where each column's value lies in an event; here those values are
//! appended to one builder per column, as the event is read, with no JSON text in between.
//! Handing arrow-json restated arrays instead cost its tokenizer (a tape of every value) and
//! the restating itself: 14% of a wide, unordered run.
//!
//! Only values whose meaning is beyond doubt are taken: JSON `null`, strict JSON numbers in
//! numeric columns, `true`/`false` in boolean columns, strings in string, date and timestamp
//! columns, parsed by the same arrow functions arrow-json calls. Anything else (a string in a
//! number column, a fraction in an integer column, a number out of range, a type this module
//! does not build) returns `None`, and the events go the arrow-json way, which gives the rows
//! or the reasons exactly as before. The test below holds both ways to the same batches.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBufferBuilder, Date32Array, Float64Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray, TimestampMicrosecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::compute::kernels::cast_utils::{Parser, string_to_datetime};
use arrow::datatypes::{DataType, Date32Type, SchemaRef, TimeUnit};
use chrono::Utc;

use crate::positional::{ABSENT, ColumnKeys};

/// Decodes events whose members from `members_at[i]` on are in the plain form into a batch of
/// `schema`: `None` when an event or a value is not plain (see the module's comment).
pub fn decode(schema: &SchemaRef, keys: &ColumnKeys, events: &[&[u8]], members_at: &[usize]) -> Option<RecordBatch> {
    decode_with(schema, events, |index, event, values| keys.members(event, members_at[index], values))
}

/// Decodes events whose values `locate(index, event, values)` finds (`values[column]`: the
/// byte range of the column's value in the event, [`ABSENT`] for none): `None` when it finds
/// an event not plain, or a value is not.
pub fn decode_with(schema: &SchemaRef, events: &[&[u8]], mut locate: impl FnMut(usize, &[u8], &mut [(usize, usize)]) -> Option<()>) -> Option<RecordBatch> {
    let rows = events.len();
    let mut columns = schema.fields().iter().map(|field| Column::new(field.data_type(), rows)).collect::<Option<Vec<_>>>()?;
    let mut values = vec![ABSENT; columns.len()];
    for (index, event) in events.iter().enumerate() {
        locate(index, event, &mut values)?;
        for (column, value) in columns.iter_mut().zip(values.iter_mut()) {
            match std::mem::replace(value, ABSENT) {
                ABSENT => column.push_null(),
                (start, end) => column.push(&event[start..end])?,
            }
        }
    }
    let arrays = columns.into_iter().map(Column::finish).collect::<Option<Vec<ArrayRef>>>()?;
    RecordBatch::try_new_with_options(schema.clone(), arrays, &RecordBatchOptions::new().with_row_count(Some(rows))).ok()
}

/// One column's values so far, and which are null.
struct Column {
    values: Values,
    valid: BooleanBufferBuilder,
}

enum Values {
    /// Offsets and bytes; checked as UTF-8 once, when the array is made.
    String(Vec<i32>, Vec<u8>),
    Int64(Vec<i64>),
    Float64(Vec<f64>),
    Boolean(BooleanBufferBuilder),
    Date(Vec<i32>),
    TimestampMicros(Vec<i64>),
}

impl Column {
    fn new(data_type: &DataType, rows: usize) -> Option<Column> {
        let values = match data_type {
            DataType::Utf8 => {
                let mut offsets = Vec::with_capacity(rows + 1);
                offsets.push(0);
                Values::String(offsets, Vec::with_capacity(rows * 16))
            }
            DataType::Int64 => Values::Int64(Vec::with_capacity(rows)),
            DataType::Float64 => Values::Float64(Vec::with_capacity(rows)),
            DataType::Boolean => Values::Boolean(BooleanBufferBuilder::new(rows)),
            DataType::Date32 => Values::Date(Vec::with_capacity(rows)),
            DataType::Timestamp(TimeUnit::Microsecond, None) => Values::TimestampMicros(Vec::with_capacity(rows)),
            _ => return None,
        };
        Some(Column { values, valid: BooleanBufferBuilder::new(rows) })
    }

    fn push_null(&mut self) {
        self.valid.append(false);
        match &mut self.values {
            Values::String(offsets, bytes) => offsets.push(i32::try_from(bytes.len()).expect("checked when pushed")),
            Values::Int64(v) | Values::TimestampMicros(v) => v.push(0),
            Values::Float64(v) => v.push(0.0),
            Values::Boolean(v) => v.append(false),
            Values::Date(v) => v.push(0),
        }
    }

    /// Appends one JSON scalar (as `positional` delimits it), or `None` if it is not plain.
    fn push(&mut self, value: &[u8]) -> Option<()> {
        if value == b"null" {
            self.push_null();
            return Some(());
        }
        match &mut self.values {
            Values::String(offsets, bytes) => {
                match unquoted(value)? {
                    Text::Plain(text) => bytes.extend_from_slice(text),
                    Text::Escaped(text) => bytes.extend_from_slice(text.as_bytes()),
                }
                offsets.push(i32::try_from(bytes.len()).ok()?);
            }
            Values::Int64(v) => v.push(json_integer(value)?),
            Values::Float64(v) => v.push(json_float(value)?),
            Values::Boolean(v) => v.append(match value {
                b"true" => true,
                b"false" => false,
                _ => return None,
            }),
            Values::Date(v) => v.push(Date32Type::parse(plain_str(value)?)?),
            Values::TimestampMicros(v) => v.push(string_to_datetime(&Utc, plain_str(value)?).ok()?.timestamp_micros()),
        }
        self.valid.append(true);
        Some(())
    }

    fn finish(mut self) -> Option<ArrayRef> {
        let nulls = Some(NullBuffer::new(self.valid.finish())).filter(|n| n.null_count() > 0);
        Some(match self.values {
            Values::String(offsets, bytes) => Arc::new(StringArray::try_new(OffsetBuffer::new(ScalarBuffer::from(offsets)), bytes.into(), nulls).ok()?),
            Values::Int64(v) => Arc::new(Int64Array::new(v.into(), nulls)),
            Values::Float64(v) => Arc::new(Float64Array::new(v.into(), nulls)),
            Values::Boolean(mut v) => Arc::new(arrow::array::BooleanArray::new(v.finish(), nulls)),
            Values::Date(v) => Arc::new(Date32Array::new(v.into(), nulls)),
            Values::TimestampMicros(v) => Arc::new(TimestampMicrosecondArray::new(v.into(), nulls)),
        })
    }
}

enum Text<'a> {
    Plain(&'a [u8]),
    Escaped(String),
}

/// A JSON string's contents (`positional` has already found its closing quote).
fn unquoted(value: &[u8]) -> Option<Text<'_>> {
    let inner = value.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if memchr::memchr(b'\\', inner).is_none() {
        return Some(Text::Plain(inner));
    }
    // JSON's escapes are unambiguous; one serde_json rejects (a lone surrogate) is left to
    // arrow-json.
    serde_json::from_slice::<String>(value).ok().map(Text::Escaped)
}

/// A string value without escapes, as UTF-8 (dates and timestamps have no use for escapes).
fn plain_str(value: &[u8]) -> Option<&str> {
    match unquoted(value)? {
        Text::Plain(text) => std::str::from_utf8(text).ok(),
        Text::Escaped(_) => None,
    }
}

/// `-?(0|[1-9][0-9]*)`: the length of the integer part that opens `value`, or `None`.
fn integer_part(value: &[u8]) -> Option<usize> {
    let sign = usize::from(value.first() == Some(&b'-'));
    let digits = value[sign..].iter().take_while(|b| b.is_ascii_digit()).count();
    match (digits, value.get(sign)) {
        (0, _) => None,
        (1.., Some(b'0')) if digits > 1 => None,
        _ => Some(sign + digits),
    }
}

/// A JSON integer that fits an i64.
fn json_integer(value: &[u8]) -> Option<i64> {
    (integer_part(value)? == value.len()).then_some(())?;
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A strict JSON number, as the nearest f64 (both arrow-json's parser and Rust's round
/// correctly, so they agree); `None` past f64's range.
fn json_float(value: &[u8]) -> Option<f64> {
    let mut at = integer_part(value)?;
    let digits_from = |at: usize| value[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    if value.get(at) == Some(&b'.') {
        let digits = digits_from(at + 1);
        (digits > 0).then_some(())?;
        at += 1 + digits;
    }
    if matches!(value.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(value.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let digits = digits_from(at);
        (digits > 0).then_some(())?;
        at += digits;
    }
    (at == value.len()).then_some(())?;
    let parsed: f64 = std::str::from_utf8(value).ok()?.parse().ok()?;
    parsed.is_finite().then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};
    use arrow::json::{ReaderBuilder, StructMode};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("i", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("d", DataType::Date32, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]))
    }

    /// What arrow-json makes of the same events, as objects.
    fn by_arrow_json(schema: &SchemaRef, events: &[String]) -> Option<RecordBatch> {
        let mut decoder = ReaderBuilder::new(schema.clone())
            .with_strict_mode(true)
            .with_struct_mode(StructMode::ObjectOnly)
            .with_batch_size(events.len().max(1))
            .build_decoder()
            .unwrap();
        for event in events {
            decoder.decode(format!("{{{event}").as_bytes()).ok()?;
        }
        decoder.flush().ok().flatten()
    }

    fn direct(schema: &SchemaRef, events: &[String]) -> Option<RecordBatch> {
        let keys = ColumnKeys::new(schema);
        let bytes: Vec<&[u8]> = events.iter().map(|e| e.as_bytes()).collect();
        decode(schema, &keys, &bytes, &vec![0; bytes.len()])
    }

    #[test]
    fn plain_values_decode_as_arrow_json_decodes_them() {
        let schema = schema();
        let events: Vec<String> = [
            r#""s":"a","i":1,"f":1.5,"b":true,"d":"2024-02-29","t":"2024-02-29T23:59:59.123456"}"#,
            r#""i":-9223372036854775808,"f":-0.0,"b":false,"t":"2024-01-01 00:00:00Z"}"#,
            r#""s":"quote \" and \\ and \u00e9 and \ud83d\ude00","f":1e300,"d":null,"t":"2024-06-01T10:00:00+02:00"}"#,
            r#""f":3,"s":"","i":0,"s2":1}"#,
            r#""t":"2024-06-01","f":0.30000000000000004,"i":9223372036854775807}"#,
            r#""s":"naïve ✓","f":2.2250738585072014e-308,"b":null}"#,
            r#"}"#,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // (the fourth event has an unknown member: alone it goes the other way)
        let plain: Vec<String> = events.iter().filter(|e| !e.contains("s2")).cloned().collect();
        let direct_batch = direct(&schema, &plain).expect("plain events decode directly");
        assert_eq!(direct_batch, by_arrow_json(&schema, &plain).unwrap());
        assert_eq!(direct(&schema, &events), None, "an unknown member is left to arrow-json");
    }

    #[test]
    fn values_that_are_not_plain_are_left_to_arrow_json() {
        let schema = schema();
        for event in [
            r#""i":"1"}"#,                 // a string in a number column
            r#""i":1.5}"#,                 // a fraction in an integer column
            r#""i":1e3}"#,                 // an exponent too
            r#""i":01}"#,                  // not JSON
            r#""i":9223372036854775808}"#, // past i64
            r#""f":"1.5"}"#,
            r#""f":1.}"#,
            r#""f":.5}"#,
            r#""f":1e400}"#, // past f64
            r#""f":-}"#,
            r#""f":true}"#,
            r#""s":1}"#,
            r#""s":true}"#,
            r#""b":1}"#,
            r#""d":"2024-02-30"}"#,
            r#""t":"yesterday"}"#,
            r#""t":1700000000}"#,
            r#""s":"\ud800"}"#, // a lone surrogate
        ] {
            assert_eq!(direct(&schema, &[event.to_string()]), None, "{event}");
        }
    }

    #[test]
    fn random_numbers_and_strings_decode_alike() {
        use rand::{Rng, SeedableRng};
        let schema = schema();
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let events: Vec<String> = (0..5000)
            .map(|_| {
                let f: f64 = match rng.random_range(0..4) {
                    0 => rng.random::<f64>() * 1000.0,
                    1 => f64::from_bits(rng.random::<u64>() & !(0x7ff << 52) | (rng.random_range(1..2046u64) << 52)),
                    2 => rng.random_range(-1_000_000i64..1_000_000) as f64 / 100.0,
                    _ => rng.random_range(-5i64..5) as f64,
                };
                let i: i64 = rng.random();
                let s: String = (0..rng.random_range(0..12)).map(|_| char::from_u32(rng.random_range(0x20..0x3000)).unwrap_or('x')).collect();
                let t = chrono::DateTime::from_timestamp(rng.random_range(0..4_000_000_000i64), rng.random_range(0..1_000_000) * 1000).unwrap();
                format!(
                    r#""s":{},"i":{i},"f":{},"t":"{}"}}"#,
                    serde_json::to_string(&s).unwrap(),
                    serde_json::to_string(&f).unwrap(),
                    t.format("%Y-%m-%dT%H:%M:%S%.6f")
                )
            })
            .collect();
        let direct_batch = direct(&schema, &events).expect("plain events decode directly");
        assert_eq!(direct_batch, by_arrow_json(&schema, &events).unwrap());
    }
}
