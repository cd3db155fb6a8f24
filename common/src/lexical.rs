//! What text looks like, before any column type is chosen: dates, timestamps and integer
//! literals. Inference ([`crate::schema`]) decides types by it, and the value rules
//! ([`crate::values`]) convert by it, so both judge text the same way.

use arrow::compute::kernels::cast_utils::string_to_datetime;
use chrono::{NaiveDate, Utc};

/// `YYYY-MM-DD`, a real calendar date.
pub(crate) fn iso_date(t: &str) -> Option<NaiveDate> {
    let b = t.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| b[range].iter().try_fold(0u32, |n, d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')));
    NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?)
}

/// True for `YYYY-MM-DD` (a real date): what JSON inference types as a date.
pub fn is_iso_date(text: &str) -> bool {
    iso_date(text).is_some()
}

/// An ISO 8601 / RFC 3339 date and time as microseconds since the epoch (UTC): the common form
/// by [`crate::time::parse_common_utc_micros`], anything else by arrow's own parser.
pub fn timestamp_micros(t: &str) -> Option<i64> {
    crate::time::parse_common_utc_micros(t.as_bytes()).or_else(|| string_to_datetime(&Utc, t).ok().map(|t| t.timestamp_micros()))
}

/// True for what JSON inference types as a timestamp: a date and a time (`YYYY-MM-DD`, then `T`
/// or a space and at least hours and minutes) that a timestamp column takes.
pub fn looks_like_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 16 && b[4] == b'-' && b[7] == b'-' && matches!(b[10], b'T' | b' ') && b[13] == b':' && timestamp_micros(text).is_some()
}

/// How many digits an integer literal has (without sign and leading zeros; `0` has one): `None`
/// when `text` is not `-?digits` (a fraction, an exponent, anything else).
pub fn integer_digits(text: &str) -> Option<usize> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(unsigned.trim_start_matches('0').len().max(1))
}
