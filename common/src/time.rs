//! Event time: how a column's text becomes an instant (ms since the epoch, UTC).
//!
//! One parser for the producer's pacing (`--speedup`) and the consumer's partitioning, so both
//! read the same column the same way. Times without a zone are UTC.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// How an event-time column is written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EventTimeFormat {
    /// RFC 3339 / ISO 8601 (`2025-03-19T10:00:00Z`, with or without zone or fraction), and the
    /// plain forms `YYYY-MM-DD` and `YYYY-MM-DD HH:MM:SS`.
    #[default]
    Rfc3339,
    /// Seconds since the Unix epoch (integer or fractional).
    EpochSeconds,
    /// Milliseconds since the Unix epoch.
    EpochMillis,
    /// A strftime pattern such as `%Y/%m/%d %H:%M` (a pattern without a time means midnight).
    Pattern(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse {value:?} as an event time ({format}){hint}")]
pub struct EventTimeError {
    pub value: String,
    pub format: String,
    /// What to change, when the value says it (a number under a format of dates).
    pub hint: &'static str,
}

/// Said of a number read under a format of dates: CSV columns of epoch seconds are common, and
/// read as anything but a number they land in the wrong year or nowhere.
pub const NUMBER_HINT: &str =
    "; it is a number: a number is a time only with --event-time-format epoch_s (seconds since 1970-01-01) or epoch_ms (milliseconds)";

impl FromStr for EventTimeFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rfc3339" | "iso8601" => Ok(EventTimeFormat::Rfc3339),
            "epoch_s" => Ok(EventTimeFormat::EpochSeconds),
            "epoch_ms" => Ok(EventTimeFormat::EpochMillis),
            pattern if pattern.contains('%') => Ok(EventTimeFormat::Pattern(pattern.to_string())),
            other => Err(format!("unknown event time format {other:?}: use rfc3339, epoch_s, epoch_ms or a strftime pattern like %Y/%m/%d %H:%M")),
        }
    }
}

impl fmt::Display for EventTimeFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventTimeFormat::Rfc3339 => f.write_str("rfc3339"),
            EventTimeFormat::EpochSeconds => f.write_str("epoch_s"),
            EventTimeFormat::EpochMillis => f.write_str("epoch_ms"),
            EventTimeFormat::Pattern(p) => f.write_str(p),
        }
    }
}

impl EventTimeFormat {
    /// Parses `text` into milliseconds since the epoch.
    pub fn parse_millis(&self, text: &str) -> Result<i64, EventTimeError> {
        let text = text.trim();
        let epoch = matches!(self, EventTimeFormat::EpochSeconds | EventTimeFormat::EpochMillis);
        let hint = if !epoch && text.parse::<f64>().is_ok() { NUMBER_HINT } else { "" };
        let fail = || EventTimeError { value: text.to_string(), format: self.to_string(), hint };
        match self {
            EventTimeFormat::Rfc3339 => {
                if let Some(ms) = parse_plain_utc(text) {
                    return Ok(ms);
                }
                if let Ok(t) = DateTime::parse_from_rfc3339(text) {
                    return Ok(t.timestamp_millis());
                }
                if text.len() == 10 {
                    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| fail())?;
                    return Ok(Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight")).timestamp_millis());
                }
                for pattern in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
                    if let Ok(t) = NaiveDateTime::parse_from_str(text, pattern) {
                        return Ok(t.and_utc().timestamp_millis());
                    }
                }
                // Zoned forms RFC 3339 does not accept, e.g. a space before the zone.
                arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(text).map(|n| n.div_euclid(1_000_000)).map_err(|_| fail())
            }
            EventTimeFormat::EpochSeconds => {
                let seconds: f64 = text.parse().map_err(|_| fail())?;
                if !seconds.is_finite() {
                    return Err(fail());
                }
                Ok((seconds * 1000.0).round() as i64)
            }
            EventTimeFormat::EpochMillis => text.parse().map_err(|_| fail()),
            EventTimeFormat::Pattern(pattern) => {
                if let Ok(t) = DateTime::parse_from_str(text, pattern) {
                    return Ok(t.timestamp_millis());
                }
                if let Ok(t) = NaiveDateTime::parse_from_str(text, pattern) {
                    return Ok(t.and_utc().timestamp_millis());
                }
                let date = NaiveDate::parse_from_str(text, pattern).map_err(|_| fail())?;
                Ok(date.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis())
            }
        }
    }
}

/// The common zone-less forms, `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS` and the same with `T`,
/// parsed without chrono's general machinery: the consumer partitions millions of rows by them.
fn parse_plain_utc(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    match b.len() {
        10 => Some(days_of_date(b)? * 86_400_000),
        19 => Some(parse_common_utc_micros(b)? / 1_000), // whole seconds: exact
        _ => None,
    }
}

/// `YYYY-MM-DD[T ]HH:MM:SS`, with an optional fraction of 1 to 9 digits and an optional `Z`, as
/// microseconds since the epoch (UTC, sub-microsecond digits truncated), read by hand: the form
/// nearly every writer uses, which the consumer reads millions of times a second. `None` for any
/// other form or an invalid date or time (a leap second included), for a general parser to
/// decide.
pub fn parse_common_utc_micros(text: &[u8]) -> Option<i64> {
    if text.len() < 19 || !matches!(text[10], b'T' | b' ') || text[13] != b':' || text[16] != b':' {
        return None;
    }
    let days = days_of_date(&text[..10])?;
    let (hour, minute, second) = (digits(&text[11..13])?, digits(&text[14..16])?, digits(&text[17..19])?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if count == 0 || count > 9 {
            return None;
        }
        nanos = digits(&fraction[..count])? * 10i64.pow(9 - count as u32);
        rest = &fraction[count..];
    }
    if !(rest.is_empty() || rest == b"Z") {
        return None;
    }
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(seconds * 1_000_000 + nanos / 1_000)
}

/// The value of ASCII digits (`None` if any byte is not one).
fn digits(text: &[u8]) -> Option<i64> {
    text.iter().try_fold(0i64, |n, &d| d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0')))
}

/// Days since 1970-01-01 of a valid `YYYY-MM-DD` date (proleptic Gregorian, Howard Hinnant's
/// `days_from_civil`).
fn days_of_date(text: &[u8]) -> Option<i64> {
    if text.len() != 10 || text[4] != b'-' || text[7] != b'-' {
        return None;
    }
    let (year, month, day) = (digits(&text[..4])?, digits(&text[5..7])?, digits(&text[8..10])?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[month as usize - 1] {
        return None;
    }
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_742_378_400_000; // 2025-03-19T10:00:00Z

    #[test]
    fn every_format_parses_to_the_same_instant() {
        let rfc = EventTimeFormat::Rfc3339;
        assert_eq!(rfc.parse_millis("2025-03-19T10:00:00Z").unwrap(), T);
        assert_eq!(rfc.parse_millis("2025-03-19T12:00:00+02:00").unwrap(), T);
        assert_eq!(rfc.parse_millis("2025-03-19 10:00:00").unwrap(), T);
        assert_eq!(rfc.parse_millis("2025-03-19T10:00:00.000").unwrap(), T);
        assert_eq!(rfc.parse_millis("2025-03-19").unwrap(), T - 10 * 3_600_000);
        assert_eq!("epoch_s".parse::<EventTimeFormat>().unwrap().parse_millis("1742378400").unwrap(), T);
        assert_eq!("epoch_ms".parse::<EventTimeFormat>().unwrap().parse_millis("1742378400000").unwrap(), T);
        let pattern: EventTimeFormat = "%Y/%m/%d %H:%M".parse().unwrap();
        assert_eq!(pattern.parse_millis("2025/03/19 10:00").unwrap(), T);
        let date_only: EventTimeFormat = "%d.%m.%Y".parse().unwrap();
        assert_eq!(date_only.parse_millis("19.03.2025").unwrap(), T - 10 * 3_600_000);
    }

    #[test]
    fn the_fast_path_agrees_with_chrono() {
        for text in ["2025-03-19", "2025-03-19 10:00:00", "2025-03-19T23:59:59", "2024-02-29 00:00:01", "1970-01-01"] {
            let fast = parse_plain_utc(text).unwrap();
            let pattern = if text.len() == 10 {
                "%Y-%m-%d"
            } else if text.contains('T') {
                "%Y-%m-%dT%H:%M:%S"
            } else {
                "%Y-%m-%d %H:%M:%S"
            };
            let slow = if text.len() == 10 {
                NaiveDate::parse_from_str(text, pattern).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis()
            } else {
                NaiveDateTime::parse_from_str(text, pattern).unwrap().and_utc().timestamp_millis()
            };
            assert_eq!(fast, slow, "{text}");
        }
        for bad in ["2025-02-30", "2025-13-01", "2025-03-19 24:00:00", "2025/03/19", "2025-03-19 10:00", "20250-3-19"] {
            assert_eq!(parse_plain_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn errors_say_value_and_format() {
        let err = EventTimeFormat::Rfc3339.parse_millis("19/03/2025").unwrap_err();
        assert_eq!(err.to_string(), "cannot parse \"19/03/2025\" as an event time (rfc3339)");
        assert!("weekly".parse::<EventTimeFormat>().unwrap_err().contains("strftime"));
        assert!(EventTimeFormat::EpochSeconds.parse_millis("NaN").is_err());
    }
}
