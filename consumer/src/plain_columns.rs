//! Events in the producer's plain form decoded straight into Arrow columns.
//!
//! `positional` finds where each column's value lies in an event; here those values are
//! appended to one builder per column, as the event is read, with no JSON text in between.
//! Handing arrow-json restated arrays instead cost its tokenizer (a tape of every value) and
//! the restating itself: 14% of a wide, unordered run.
//!
//! Every value is read by the rules of [`kappa_common::values`], as the general path reads it
//! ([`crate::typing`]): JSON numbers and `true`/`false` by fast parsers that give what the
//! rules give, quoted values by the rules themselves, and a string column takes a number's
//! digits as written. A value that does not fit its column (a fraction in an integer column, a
//! number out of range), an escape in a date, or a type this module does not build returns
//! `None`, and the events go the general way, which gives the rows or the quarantine reasons.
//! The tests below, and the differential tests, hold both ways to the same batches.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBufferBuilder, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
    TimestampMicrosecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use kappa_common::schema::ColumnType;
use kappa_common::values;

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
    /// Microseconds, and the zone (UTC, or none for `timestamp_ntz`).
    TimestampMicros(Vec<i64>, Option<Arc<str>>),
    /// Unscaled values, precision and scale.
    Decimal(Vec<i128>, u8, u8),
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
            DataType::Timestamp(TimeUnit::Microsecond, zone) => Values::TimestampMicros(Vec::with_capacity(rows), zone.clone()),
            DataType::Decimal128(precision, scale) if *scale >= 0 => Values::Decimal(Vec::with_capacity(rows), *precision, *scale as u8),
            _ => return None,
        };
        Some(Column { values, valid: BooleanBufferBuilder::new(rows) })
    }

    fn push_null(&mut self) {
        self.valid.append(false);
        match &mut self.values {
            Values::String(offsets, bytes) => offsets.push(i32::try_from(bytes.len()).expect("checked when pushed")),
            Values::Int64(v) | Values::TimestampMicros(v, _) => v.push(0),
            Values::Float64(v) => v.push(0.0),
            Values::Boolean(v) => v.append(false),
            Values::Date(v) => v.push(0),
            Values::Decimal(v, ..) => v.push(0),
        }
    }

    /// Appends one JSON scalar (as `positional` delimits it) by the rules of
    /// [`kappa_common::values`], or `None` if it is not plain or does not fit (the general
    /// path then decides).
    fn push(&mut self, value: &[u8]) -> Option<()> {
        if value == b"null" {
            self.push_null();
            return Some(());
        }
        let nulls = crate::typing::null_tokens();
        let quoted = value.first() == Some(&b'"');
        match &mut self.values {
            Values::String(offsets, bytes) => {
                match unquoted(value) {
                    Some(Text::Plain(text)) => bytes.extend_from_slice(text),
                    Some(Text::Escaped(text)) => bytes.extend_from_slice(text.as_bytes()),
                    // A number keeps its digits as written; `true`/`false` their text.
                    None if !quoted && (is_json_number(value) || value == b"true" || value == b"false") => bytes.extend_from_slice(value),
                    None => return None,
                }
                offsets.push(i32::try_from(bytes.len()).ok()?);
            }
            Values::Int64(v) if !quoted => v.push(json_integer(value)?),
            Values::Float64(v) if !quoted => v.push(json_float(value)?),
            Values::Boolean(v) if !quoted => v.append(match value {
                b"true" => true,
                b"false" => false,
                _ => return None,
            }),
            Values::TimestampMicros(v, _) if quoted => match common_timestamp_micros(value) {
                Some(micros) => v.push(micros),
                None => match values::timestamp(&unquoted_text(value)?, ColumnType::Timestamp, nulls).ok()? {
                    Some(micros) => v.push(micros),
                    None => {
                        self.push_null();
                        return Some(());
                    }
                },
            },
            Values::Decimal(v, precision, scale) if quoted || is_json_number(value) => {
                let text = if quoted { unquoted_text(value)? } else { std::borrow::Cow::Borrowed(std::str::from_utf8(value).ok()?) };
                match values::decimal(&text, *precision, *scale, nulls).ok()? {
                    Some(unscaled) => v.push(unscaled),
                    None => {
                        self.push_null();
                        return Some(());
                    }
                }
            }
            // A quoted value in a typed column: the rules themselves (spaces, null tokens).
            values_ if quoted => {
                let text = unquoted_text(value)?;
                let is_null = match values_ {
                    Values::Int64(v) => values::int64(&text, nulls).ok()?.map(|n| v.push(n)).is_none(),
                    Values::Float64(v) => values::float64(&text, nulls).ok()?.map(|x| v.push(x)).is_none(),
                    Values::Boolean(v) => values::boolean(&text, nulls).ok()?.map(|b| v.append(b)).is_none(),
                    Values::Date(v) => values::date(&text, nulls).ok()?.map(|d| v.push(d)).is_none(),
                    _ => return None,
                };
                if is_null {
                    self.push_null();
                    return Some(());
                }
            }
            _ => return None,
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
            Values::TimestampMicros(v, zone) => Arc::new(TimestampMicrosecondArray::new(v.into(), nulls).with_timezone_opt(zone)),
            Values::Decimal(v, precision, scale) => Arc::new(Decimal128Array::new(v.into(), nulls).with_precision_and_scale(precision, scale as i8).ok()?),
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

/// A quoted value's contents as text (escapes resolved).
fn unquoted_text(value: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    match unquoted(value)? {
        Text::Plain(text) => std::str::from_utf8(text).ok().map(std::borrow::Cow::Borrowed),
        Text::Escaped(text) => Some(std::borrow::Cow::Owned(text)),
    }
}

/// Strict JSON number syntax: `-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`.
fn is_json_number(value: &[u8]) -> bool {
    json_number_end(value) == Some(value.len())
}

/// Where the JSON number that opens `value` ends, or `None` if it does not open with one.
fn json_number_end(value: &[u8]) -> Option<usize> {
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
    Some(at)
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
    let (negative, digits) = match value.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, value),
    };
    // Up to 18 digits cannot overflow; longer ones (near i64's limits) go through `parse`.
    if digits.len() <= 18 {
        let magnitude = digits.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        return Some(if negative { -magnitude } else { magnitude });
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A strict JSON number, as the nearest f64 (both arrow-json's parser and Rust's round
/// correctly, so they agree); `None` past f64's range.
fn json_float(value: &[u8]) -> Option<f64> {
    is_json_number(value).then_some(())?;
    if let Some(exact) = short_decimal(value) {
        return Some(exact);
    }
    let parsed: f64 = std::str::from_utf8(value).ok()?.parse().ok()?;
    parsed.is_finite().then_some(parsed)
}

/// A number of the form `-?digits(.digits)?` (already checked as JSON) with at most 15
/// significant digits, the way most data writes prices and measurements: its digits as an
/// integer below 2^53 and a power of ten up to 10^22 are both exact in an f64, so one IEEE
/// division rounds the quotient correctly, giving the same f64 as `parse` (Clinger's fast
/// path, which `parse` itself takes for these after reading the text a second time). `None`
/// for anything else.
fn short_decimal(value: &[u8]) -> Option<f64> {
    const POWERS: [f64; 23] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];
    let (negative, text) = match value.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, value),
    };
    if text.len() > 16 {
        return None;
    }
    let (mut mantissa, mut fraction_digits, mut in_fraction) = (0u64, 0usize, false);
    for &b in text {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                fraction_digits += usize::from(in_fraction);
            }
            b'.' => in_fraction = true,
            _ => return None, // an exponent
        }
    }
    // At most 16 characters: below 10^16, but 2^53 is about 9.007e15.
    if mantissa >= 1 << 53 {
        return None;
    }
    let magnitude = mantissa as f64 / POWERS[fraction_digits];
    Some(if negative { -magnitude } else { magnitude })
}

/// A quoted timestamp in the form nearly every writer uses (see
/// [`kappa_common::time::parse_common_utc_micros`]), as microseconds since the epoch (UTC):
/// arrow's general parser spent more time setting up than reading here (3% of a wide, unordered
/// run). `None` for any other form or an invalid date or time; the caller then asks the rule
/// ([`kappa_common::values::timestamp`], arrow's parser), which accepts the rest and decides
/// what is wrong. Gives what `string_to_datetime(&Utc, ..)` gives (the test below compares
/// them).
fn common_timestamp_micros(value: &[u8]) -> Option<i64> {
    kappa_common::time::parse_common_utc_micros(value.strip_prefix(b"\"")?.strip_suffix(b"\"")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::compute::kernels::cast_utils::string_to_datetime;
    use chrono::Utc;
    use kappa_common::schema::{Column, TableSchema};

    fn table() -> TableSchema {
        let columns = [
            ("s", ColumnType::String),
            ("i", ColumnType::Int64),
            ("f", ColumnType::Float64),
            ("b", ColumnType::Boolean),
            ("d", ColumnType::Date),
            ("t", ColumnType::Timestamp),
            ("n", ColumnType::Decimal { precision: 20, scale: 2 }),
        ];
        TableSchema::new(columns.iter().map(|(name, column_type)| Column { name: name.to_string(), column_type: *column_type, nullable: true }).collect())
            .unwrap()
    }

    fn schema() -> SchemaRef {
        crate::decode::data_schema(&table())
    }

    /// What the general path (arrow-json into text, typed by the rules) makes of the same
    /// events, as objects: the rows, or `None` when an event does not decode or fit.
    fn by_general_path(events: &[String]) -> Option<RecordBatch> {
        let table = table();
        let text = Arc::new(arrow::datatypes::Schema::new(
            table.fields.iter().map(|c| arrow::datatypes::Field::new(&c.name, DataType::Utf8, true)).collect::<Vec<_>>(),
        ));
        let mut decoder = arrow::json::ReaderBuilder::new(text)
            .with_strict_mode(true)
            .with_coerce_primitive(true)
            .with_batch_size(events.len().max(1))
            .build_decoder()
            .unwrap();
        for event in events {
            decoder.decode(format!("{{{event}").as_bytes()).ok()?;
        }
        let texts = decoder.flush().ok()??;
        let (batch, rejected) = crate::typing::type_columns(texts.columns(), &table, &schema()).ok()?;
        rejected.is_empty().then_some(batch)
    }

    fn direct(schema: &SchemaRef, events: &[String]) -> Option<RecordBatch> {
        let keys = ColumnKeys::new(schema);
        let bytes: Vec<&[u8]> = events.iter().map(|e| e.as_bytes()).collect();
        decode(schema, &keys, &bytes, &vec![0; bytes.len()])
    }

    #[test]
    fn plain_values_decode_as_the_general_path_decodes_them() {
        let schema = schema();
        let events: Vec<String> = [
            r#""s":"a","i":1,"f":1.5,"b":true,"d":"2024-02-29","t":"2024-02-29T23:59:59.123456","n":12.5}"#,
            r#""i":-9223372036854775808,"f":-0.0,"b":false,"t":"2024-01-01 00:00:00Z","n":"-7"}"#,
            r#""s":"quote \" and \\ and \u00e9 and \ud83d\ude00","f":1e300,"d":null,"t":"2024-06-01T10:00:00+02:00"}"#,
            r#""f":3,"s":"","i":0,"s2":1}"#,
            r#""t":"2024-06-01","f":0.30000000000000004,"i":9223372036854775807,"n":1e2}"#,
            r#""s":"naïve ✓","f":2.2250738585072014e-308,"b":null}"#,
            // Quoted values in typed columns, numbers and literals in a string column.
            r#""s":1e3,"i":"0012","f":" 2.5 ","b":"TRUE","d":" 2024-01-01","t":"","n":"NA"}"#,
            r#""s":-0,"i":"NaN","f":"NaN","b":"false","d":"","t":"2024-01-01T00:00:00.5"}"#,
            r#""s":true,"i":"+5","f":"1e3"}"#,
            r#""s":12345678901234567890123}"#,
            r#"}"#,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // (the fourth event has an unknown member: alone it goes the other way)
        let plain: Vec<String> = events.iter().filter(|e| !e.contains("s2")).cloned().collect();
        let direct_batch = direct(&schema, &plain).expect("plain events decode directly");
        assert_eq!(direct_batch, by_general_path(&plain).unwrap());
        assert_eq!(direct(&schema, &events), None, "an unknown member is left to the general path");
        let strings = direct_batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(strings.value(5), "1e3", "a number's digits as written");
        assert_eq!(strings.value(6), "-0");
        assert_eq!(strings.value(8), "12345678901234567890123");
    }

    #[test]
    fn values_that_do_not_fit_are_left_to_the_general_path() {
        let schema = schema();
        for event in [
            r#""i":1.5}"#,                 // a fraction in an integer column: never truncated
            r#""i":1e3}"#,                 // an exponent too
            r#""i":01}"#,                  // not JSON
            r#""i":9223372036854775808}"#, // past i64
            r#""i":"1.5"}"#,
            r#""f":1.}"#,
            r#""f":.5}"#,
            r#""f":1e400}"#, // past f64
            r#""f":-}"#,
            r#""f":true}"#,
            r#""f":"inf"}"#,
            r#""s":1a}"#,
            r#""s":truex}"#,
            r#""b":1}"#,
            r#""b":"yes"}"#,
            r#""d":"2024-02-30"}"#,
            r#""d":20240101}"#,
            r#""t":"yesterday"}"#,
            r#""t":1700000000}"#,
            r#""n":12.345}"#, // more places than the scale: never rounded
            r#""n":"1e40"}"#,
            r#""s":"\ud800"}"#, // a lone surrogate
        ] {
            assert_eq!(direct(&schema, &[event.to_string()]), None, "{event}");
        }
    }

    #[test]
    fn common_timestamps_read_as_arrow_reads_them() {
        use rand::{Rng, SeedableRng};
        let arrow = |text: &str| string_to_datetime(&Utc, text).ok().map(|t| t.timestamp_micros());
        let fast = |text: &str| common_timestamp_micros(format!("\"{text}\"").as_bytes());
        // Each is either read the fast way, alike, or left to arrow.
        let check = |text: &str| {
            if let Some(micros) = fast(text) {
                assert_eq!(Some(micros), arrow(text), "{text}");
            }
        };
        for text in [
            "2024-02-29T23:59:59.123456",
            "2024-02-29 00:00:00Z",
            "1970-01-01T00:00:00",
            "1969-12-31T23:59:59.999999999Z",
            "0000-03-01T00:00:00",
            "9999-12-31T23:59:59.9",
            "2000-02-29T12:00:00.1",
            "1900-03-01T12:00:00.12345678",
        ] {
            assert!(fast(text).is_some(), "{text} is read the fast way");
            check(text);
        }
        for text in [
            "2023-02-29T00:00:00",  // not a leap year
            "1900-02-29T00:00:00",  // nor this
            "2024-13-01T00:00:00",  // month
            "2024-04-31T00:00:00",  // day
            "2024-01-01T24:00:00",  // hour
            "2024-01-01T23:60:00",  // minute
            "2024-01-01T23:59:60",  // a leap second
            "2024-01-01T00:00:00.", // an empty fraction
            "2024-01-01T00:00:00.1234567891",
            "2024-01-01T00:00:00+02:00",
            "2024-01-01",
            "2024-1-01T00:00:00",
            "-001-01-01T00:00:00",
            "2024-01-01T00:00:00ZZ",
        ] {
            assert_eq!(fast(text), None, "{text} is left to arrow");
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for _ in 0..20_000 {
            let (y, mo, d) = (rng.random_range(0..10_000), rng.random_range(0..14), rng.random_range(0..33));
            let (h, mi, s) = (rng.random_range(0..25), rng.random_range(0..61), rng.random_range(0..61));
            let fraction: String = (0..rng.random_range(0..11)).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect();
            let separator = if rng.random_bool(0.5) { 'T' } else { ' ' };
            let zone = ["", "Z", "+01:00"][rng.random_range(0..3)];
            let dot = if fraction.is_empty() && rng.random_bool(0.9) { "" } else { "." };
            check(&format!("{y:04}-{mo:02}-{d:02}{separator}{h:02}:{mi:02}:{s:02}{dot}{fraction}{zone}"));
        }
    }

    #[test]
    fn short_decimals_are_the_floats_parse_gives() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut fast = 0;
        for _ in 0..200_000 {
            let digits: String = (0..rng.random_range(1..18)).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect();
            let digits = digits.trim_start_matches('0');
            let digits = if digits.is_empty() { "0" } else { digits };
            let point = rng.random_range(0..=digits.len());
            let (whole, fraction) = digits.split_at(point);
            let whole = if whole.is_empty() { "0" } else { whole };
            let sign = if rng.random_bool(0.3) { "-" } else { "" };
            let text = if fraction.is_empty() { format!("{sign}{whole}") } else { format!("{sign}{whole}.{fraction}") };
            let expected: f64 = text.parse().unwrap();
            assert_eq!(json_float(text.as_bytes()).map(f64::to_bits), Some(expected.to_bits()), "{text}");
            fast += usize::from(short_decimal(text.as_bytes()).is_some());
        }
        assert!(fast > 50_000, "the fast path was taken {fast} times");
        for text in ["9007199254740993", "0.1", "-0.0", "123456789012345.6", "1e5"] {
            assert_eq!(json_float(text.as_bytes()).map(f64::to_bits), text.parse::<f64>().ok().map(f64::to_bits), "{text}");
        }
        for text in ["0", "-0", "7", "-123456789012345678", "999999999999999999", "9223372036854775807", "-9223372036854775808"] {
            assert_eq!(json_integer(text.as_bytes()), text.parse::<i64>().ok(), "{text}");
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
        assert_eq!(direct_batch, by_general_path(&events).unwrap());
    }
}
