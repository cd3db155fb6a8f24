//! How a JSON value becomes a column's value: one rule for the producer (CSV cells and JSON
//! values it types) and the consumer (events it decodes), whichever path decodes them.
//!
//! A value is never altered: what does not fit its column exactly is refused with a
//! [`Misfit`] that says why (the producer rejects the row, the consumer quarantines the event),
//! never rounded, truncated or re-printed. Each rule reads the value's text — a JSON string's
//! contents, or a number's digits as written, or `true`/`false`:
//!
//! | column | takes | refuses |
//! |---|---|---|
//! | string | any scalar: a string as it is, a number's digits as written, `true`/`false` | objects, arrays |
//! | int64 | a whole number in int64's range (`-12`, `"0012"`, `" 5 "`, `"+5"`) | fractions (`100.5`, `5.0`), exponents (`1e3`), anything beyond int64 |
//! | float64 | any finite number (`1e3`, `"2.5"`, `" 5 "`), as the nearest double | `inf`, `NaN` unless a null token, `1e400` |
//! | decimal(P,S) | a number with at most S decimal places and P digits in all | more places than S (never rounded), more digits than P |
//! | boolean | `true`/`false` (any case) | `1`, `0`, `yes` |
//! | date | `YYYY-MM-DD` | anything else |
//! | timestamp, timestamp_ntz | ISO 8601 / RFC 3339 (`T` or space; optional fraction and zone; a date alone is midnight); no zone means UTC, a zone is converted to UTC | anything else; epoch numbers (use `--event-time-format epoch_ms` for the event time) |
//!
//! In every column but string, a JSON string that is a null token (`""`, `NA`, `N/A`, `NULL`,
//! `null`, `NaN`: the producer's `--null-tokens`, which it applies to CSV cells in every column)
//! is null, and spaces around the text are ignored. JSON `null` is null everywhere. Timestamps
//! hold microseconds: digits of a fraction beyond them are cut (the column's precision, as a
//! float's is).

use std::fmt;

use chrono::Datelike;

use crate::lexical::iso_date;
pub use crate::lexical::{integer_digits, is_iso_date, looks_like_timestamp, timestamp_micros};
use crate::schema::{ColumnType, NullTokens};

/// Why a value does not fit its column: shown in rejects and quarantine reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misfit {
    /// The value as it came (shortened when long).
    pub value: String,
    pub column_type: ColumnType,
    pub why: &'static str,
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not a valid {}: {}", self.value, self.column_type, self.why)
    }
}

impl Misfit {
    fn new(text: &str, column_type: ColumnType, why: &'static str) -> Misfit {
        Misfit { value: shown(text), column_type, why }
    }

    /// A column type that would hold the value as it is, for the fix a message proposes.
    pub fn would_fit(&self) -> Option<&'static str> {
        match (self.column_type, self.why) {
            (ColumnType::Int64, HAS_FRACTION | HAS_EXPONENT) => Some("float64 (or decimal(P,S) for exact places)"),
            (ColumnType::Int64, BEYOND_INT64) => Some("decimal(38,0)"),
            (ColumnType::Decimal { .. }, TOO_MANY_PLACES | TOO_MANY_DIGITS) => Some("a decimal with more places or digits, or float64"),
            _ => Some("string"),
        }
    }
}

/// A value's text for a message: quoted and cut at 60 characters.
fn shown(text: &str) -> String {
    let mut short: String = text.chars().take(60).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    format!("{short:?}")
}

const HAS_FRACTION: &str = "it has a fraction (a whole number is needed; it is never truncated)";
const HAS_EXPONENT: &str = "it has an exponent (a whole number written out is needed)";
const BEYOND_INT64: &str = "it is beyond int64's range";
const NOT_A_NUMBER: &str = "it is not a number";
const NOT_FINITE: &str = "it is not a finite number";
const TOO_MANY_PLACES: &str = "it has more decimal places than the scale (it is never rounded)";
const TOO_MANY_DIGITS: &str = "it has more digits than the precision";
const NOT_A_BOOLEAN: &str = "it is not true or false";
const NOT_A_DATE: &str = "it is not a date written YYYY-MM-DD";
const NOT_A_TIMESTAMP: &str = "it is not an ISO 8601 date and time";
pub const NESTED: &str = "it is nested (objects and arrays are flattened by kappa-producer, not stored in a column)";

/// The text a typed column reads: `None` for a null token, else the text without the spaces
/// around it.
fn typed_text<'a>(text: &'a str, nulls: &NullTokens) -> Option<&'a str> {
    (!nulls.is_null(text)).then(|| text.trim())
}

/// An int64 column's value.
pub fn int64(text: &str, nulls: &NullTokens) -> Result<Option<i64>, Misfit> {
    let Some(t) = typed_text(text, nulls) else { return Ok(None) };
    t.parse::<i64>().map(Some).map_err(|_| Misfit::new(text, ColumnType::Int64, why_not_int64(t)))
}

fn why_not_int64(t: &str) -> &'static str {
    let unsigned = t.strip_prefix(['-', '+']).unwrap_or(t);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        BEYOND_INT64
    } else if t.parse::<f64>().is_ok_and(f64::is_finite) {
        if unsigned.contains(['e', 'E']) { HAS_EXPONENT } else { HAS_FRACTION }
    } else {
        NOT_A_NUMBER
    }
}

/// A float64 column's value: the nearest double (Rust's parser and arrow's both round
/// correctly, so every path gives the same bits).
pub fn float64(text: &str, nulls: &NullTokens) -> Result<Option<f64>, Misfit> {
    let Some(t) = typed_text(text, nulls) else { return Ok(None) };
    match t.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(Some(x)),
        Ok(_) => Err(Misfit::new(text, ColumnType::Float64, NOT_FINITE)),
        Err(_) => Err(Misfit::new(text, ColumnType::Float64, NOT_A_NUMBER)),
    }
}

/// A boolean column's value.
pub fn boolean(text: &str, nulls: &NullTokens) -> Result<Option<bool>, Misfit> {
    let Some(t) = typed_text(text, nulls) else { return Ok(None) };
    if t.eq_ignore_ascii_case("true") {
        Ok(Some(true))
    } else if t.eq_ignore_ascii_case("false") {
        Ok(Some(false))
    } else {
        Err(Misfit::new(text, ColumnType::Boolean, NOT_A_BOOLEAN))
    }
}

/// Days from 0001-01-01 (day 1) to 1970-01-01.
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// A date column's value, as days since 1970-01-01.
pub fn date(text: &str, nulls: &NullTokens) -> Result<Option<i32>, Misfit> {
    let Some(t) = typed_text(text, nulls) else { return Ok(None) };
    iso_date(t).map(|d| Some(d.num_days_from_ce() - EPOCH_DAYS_FROM_CE)).ok_or_else(|| Misfit::new(text, ColumnType::Date, NOT_A_DATE))
}

/// A timestamp column's value, as microseconds since the epoch (UTC).
pub fn timestamp(text: &str, column_type: ColumnType, nulls: &NullTokens) -> Result<Option<i64>, Misfit> {
    let Some(t) = typed_text(text, nulls) else { return Ok(None) };
    timestamp_micros(t).map(Some).ok_or_else(|| Misfit::new(text, column_type, NOT_A_TIMESTAMP))
}

/// A decimal(P,S) column's value, as the unscaled integer (`12.34` in decimal(10,2) is 1234).
pub fn decimal(text: &str, precision: u8, scale: u8, nulls: &NullTokens) -> Result<Option<i128>, Misfit> {
    let Some(t) = typed_text(text, nulls) else { return Ok(None) };
    let column_type = ColumnType::Decimal { precision, scale };
    parse_decimal(t, precision, scale).map(Some).map_err(|why| Misfit::new(text, column_type, why))
}

fn parse_decimal(t: &str, precision: u8, scale: u8) -> Result<i128, &'static str> {
    let (negative, unsigned) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i32>().map_err(|_| NOT_A_NUMBER)?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(NOT_A_NUMBER);
    }
    // The digits, and how many of them lie after the point once the exponent is applied.
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    let places = fraction.len() as i64 - i64::from(exponent);
    let scale = i64::from(scale);
    // Places beyond the scale may only be zeros: a value is never rounded.
    let (kept, cut) = match places - scale {
        beyond if beyond > 0 => digits.split_at(digits.len().saturating_sub(beyond.try_into().unwrap_or(usize::MAX))),
        _ => (digits, ""),
    };
    if cut.bytes().any(|b| b != b'0') {
        return Err(TOO_MANY_PLACES);
    }
    if kept.is_empty() {
        return Ok(0);
    }
    // Zeros that give the value exactly `scale` places.
    let pad = usize::try_from((scale - places).max(0)).unwrap_or(usize::MAX);
    if kept.len().saturating_add(pad) > usize::from(precision) {
        return Err(TOO_MANY_DIGITS);
    }
    let value = kept.bytes().chain(std::iter::repeat_n(b'0', pad)).fold(0i128, |n, d| n * 10 + i128::from(d - b'0'));
    Ok(if negative { -value } else { value })
}

/// The text a string column stores for a scalar: itself (strings keep their spaces, and no
/// token is null in a string column).
pub fn string(text: &str) -> &str {
    text
}

#[cfg(test)]
mod tests;
