//! Event-time partitioning: which Hive-style directory a row belongs in.
//!
//! Directory names are zero-padded everywhere — `year=2025/month=03/day=19/hour=07` — so
//! lexical order is time order in listings, and Athena's and DuckDB's partition projection see
//! integers either way.

use std::fmt;
use std::str::FromStr;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Datelike, Timelike};
use kappa_common::time::EventTimeFormat;

/// How fine the partitions are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Year,
    Month,
    Day,
    Hour,
}

impl Granularity {
    /// The partition key names, outermost first.
    pub fn keys(self) -> &'static [&'static str] {
        let all: &'static [&'static str] = &["year", "month", "day", "hour"];
        match self {
            Granularity::Year => &all[..1],
            Granularity::Month => &all[..2],
            Granularity::Day => &all[..3],
            Granularity::Hour => all,
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Granularity::Year => "year",
            Granularity::Month => "month",
            Granularity::Day => "day",
            Granularity::Hour => "hour",
        })
    }
}

/// One partition: the event-time bucket, truncated to the granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub granularity: Granularity,
}

impl Partition {
    /// The partition of an instant (ms since the epoch, UTC); `None` outside chrono's range.
    pub fn of_millis(ms: i64, granularity: Granularity) -> Option<Partition> {
        let t = DateTime::from_timestamp_millis(ms)?;
        let (mut month, mut day, mut hour) = (t.month() as u8, t.day() as u8, t.hour() as u8);
        if granularity < Granularity::Hour {
            hour = 0;
        }
        if granularity < Granularity::Day {
            day = 1;
        }
        if granularity < Granularity::Month {
            month = 1;
        }
        let year = t.year();
        // Hive paths and Athena's integer partitions want four-digit, non-negative years.
        if !(0..=9999).contains(&year) {
            return None;
        }
        Some(Partition { year, month, day, hour, granularity })
    }

    /// The Hive directory, e.g. `year=2025/month=03/day=19`.
    pub fn path(&self) -> String {
        let mut path = format!("year={:04}", self.year);
        if self.granularity >= Granularity::Month {
            path.push_str(&format!("/month={:02}", self.month));
        }
        if self.granularity >= Granularity::Day {
            path.push_str(&format!("/day={:02}", self.day));
        }
        if self.granularity >= Granularity::Hour {
            path.push_str(&format!("/hour={:02}", self.hour));
        }
        path
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

impl FromStr for Partition {
    type Err = String;

    /// Parses a [`Partition::path`] back.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut values = [0i64, 1, 1, 0];
        let mut depth = 0;
        for (i, segment) in s.split('/').enumerate() {
            let key = Granularity::Hour.keys().get(i).ok_or_else(|| format!("too many segments in {s:?}"))?;
            let value = segment.strip_prefix(key).and_then(|v| v.strip_prefix('=')).ok_or_else(|| format!("expected {key}=… in {s:?}"))?;
            values[i] = value.parse().map_err(|_| format!("bad {key} value in {s:?}"))?;
            depth = i + 1;
        }
        let granularity = [Granularity::Year, Granularity::Month, Granularity::Day, Granularity::Hour]
            .get(depth.wrapping_sub(1))
            .copied()
            .ok_or_else(|| format!("empty partition {s:?}"))?;
        Ok(Partition { year: values[0] as i32, month: values[1] as u8, day: values[2] as u8, hour: values[3] as u8, granularity })
    }
}

/// Partitions of instants, remembering the last one's span: rows that arrive in near time
/// order mostly fall in the span of the row before and need no calendar arithmetic. Day and
/// hour partitions, whose spans are whole days and hours of UTC, are also remembered by that
/// number: rows in no time order (a backfill, many producers) then find theirs in a map, where
/// the calendar arithmetic had been 2% of a wide, unordered run.
pub struct PartitionFinder {
    granularity: Granularity,
    /// The last partition found and its span `[start, end)` in ms.
    last: Option<(i64, i64, Partition)>,
    /// Day or hour partitions by their number since the epoch (at most `RECENT`).
    recent: foldhash::HashMap<i64, Partition>,
}

/// Day or hour partitions a finder remembers by number (a chunk spans a few hundred at most).
const RECENT: usize = 4096;

impl PartitionFinder {
    pub fn new(granularity: Granularity) -> PartitionFinder {
        PartitionFinder { granularity, last: None, recent: foldhash::HashMap::default() }
    }

    /// Like [`Partition::of_millis`].
    pub fn of_millis(&mut self, ms: i64) -> Option<Partition> {
        if let Some((start, end, partition)) = self.last
            && (start..end).contains(&ms)
        {
            return Some(partition);
        }
        let unit = match self.granularity {
            Granularity::Day => 86_400_000,
            Granularity::Hour => 3_600_000,
            Granularity::Month | Granularity::Year => {
                let partition = Partition::of_millis(ms, self.granularity)?;
                self.last = partition.span_ms().map(|(start, end)| (start, end, partition));
                return Some(partition);
            }
        };
        let number = ms.div_euclid(unit);
        let partition = match self.recent.get(&number) {
            Some(partition) => *partition,
            None => {
                let partition = Partition::of_millis(ms, self.granularity)?;
                if self.recent.len() >= RECENT {
                    self.recent.clear();
                }
                self.recent.insert(number, partition);
                partition
            }
        };
        self.last = Some((number * unit, number * unit + unit, partition));
        Some(partition)
    }
}

impl Partition {
    /// The instants the partition covers, `[start, end)` in ms since the epoch (UTC).
    pub fn span_ms(&self) -> Option<(i64, i64)> {
        let start_of = |year: i32, month: u32, day: u32, hour: u32| {
            chrono::NaiveDate::from_ymd_opt(year, month, day).and_then(|d| d.and_hms_opt(hour, 0, 0)).map(|t| t.and_utc().timestamp_millis())
        };
        let (year, month, day, hour) = (self.year, u32::from(self.month), u32::from(self.day), u32::from(self.hour));
        let start = start_of(year, month, day, hour)?;
        let end = match self.granularity {
            Granularity::Hour => start + 3_600_000,
            Granularity::Day => start + 86_400_000,
            Granularity::Month if month == 12 => start_of(year + 1, 1, 1, 0)?,
            Granularity::Month => start_of(year, month + 1, 1, 0)?,
            Granularity::Year => start_of(year + 1, 1, 1, 0)?,
        };
        Some((start, end))
    }
}

/// Event times (ms since the epoch) of a decoded column, or why a row has none: dates,
/// microsecond timestamps, epoch numbers (`epoch_s` or `epoch_ms`) and text in `format`.
/// Each is passed through `then`. The column's type is matched once, not per row (that was
/// 1.5% of a run).
fn column_times<T>(array: &ArrayRef, column: &str, format: &EventTimeFormat, mut then: impl FnMut(i64) -> Result<T, String>) -> Vec<Result<T, String>> {
    fn per_row<T>(
        array: &ArrayRef,
        column: &str,
        time: impl Fn(usize) -> Result<i64, String>,
        then: &mut impl FnMut(i64) -> Result<T, String>,
    ) -> Vec<Result<T, String>> {
        let nulls = array.logical_nulls();
        (0..array.len())
            .map(|row| match &nulls {
                Some(nulls) if nulls.is_null(row) => Err(format!("event time column {column:?} is empty")),
                _ => time(row).and_then(&mut *then),
            })
            .collect()
    }
    match array.data_type() {
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>();
            per_row(array, column, |row| Ok(i64::from(days.value(row)) * 86_400_000), &mut then)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let micros = array.as_primitive::<TimestampMicrosecondType>();
            per_row(array, column, |row| Ok(micros.value(row).div_euclid(1000)), &mut then)
        }
        // A number is a time only in an epoch format: read as milliseconds under any other, a
        // column of epoch seconds landed in January 1970.
        DataType::Int64 => {
            let numbers = array.as_primitive::<Int64Type>();
            match format {
                EventTimeFormat::EpochSeconds => per_row(array, column, |row| Ok(numbers.value(row).saturating_mul(1000)), &mut then),
                EventTimeFormat::EpochMillis => per_row(array, column, |row| Ok(numbers.value(row)), &mut then),
                _ => per_row(array, column, |row| Err(not_a_time(column, &numbers.value(row).to_string(), format)), &mut then),
            }
        }
        // Fractional seconds (`1742479500.5`), or milliseconds, rounded to the millisecond.
        DataType::Float64 => {
            let numbers = array.as_primitive::<Float64Type>();
            let scale = match format {
                EventTimeFormat::EpochSeconds => 1000.0,
                EventTimeFormat::EpochMillis => 1.0,
                _ => return per_row(array, column, |row| Err(not_a_time(column, &numbers.value(row).to_string(), format)), &mut then),
            };
            let millis = |row: usize| {
                let ms = (numbers.value(row) * scale).round();
                match ms.is_finite() && ms.abs() < 9.0e15 {
                    true => Ok(ms as i64),
                    false => Err(format!("event time column {column:?} holds {}, which is no time ({format})", numbers.value(row))),
                }
            };
            per_row(array, column, millis, &mut then)
        }
        DataType::Utf8 => {
            let texts = array.as_string::<i32>();
            per_row(array, column, |row| format.parse_millis(texts.value(row)).map_err(|e| e.to_string()), &mut then)
        }
        other => per_row(array, column, |_| Err(format!("event time column {column:?} has type {other}, which is not a time")), &mut then),
    }
}

/// Why a number is no time under `format` (not an epoch format), and what to give instead.
fn not_a_time(column: &str, value: &str, format: &EventTimeFormat) -> String {
    format!("event time column {column:?} holds the number {value}, which --event-time-format {format} does not read{}", kappa_common::time::NUMBER_HINT)
}

/// A row's partition and its time (ms since the epoch), or why it has none.
pub type Placement = Result<(Partition, i64), String>;

/// Each row's partition and time, or why it has none: by the event-time column in its format,
/// else by the arrival time of the row's event.
pub fn row_partitions(
    batch: &RecordBatch,
    arrival_ms: impl Fn(usize) -> i64,
    event_time: Option<&(String, EventTimeFormat)>,
    granularity: Granularity,
) -> Vec<Placement> {
    let mut finder = PartitionFinder::new(granularity);
    let mut partition = |ms: i64| finder.of_millis(ms).map(|p| (p, ms)).ok_or_else(|| format!("event time {ms} ms is outside years 0000-9999"));
    let Some((column, format)) = event_time else {
        return (0..batch.num_rows()).map(|row| partition(arrival_ms(row))).collect();
    };
    let Ok(index) = batch.schema().index_of(column) else {
        return vec![Err(format!("event time column {column:?} is not in the table schema")); batch.num_rows()];
    };
    column_times(batch.column(index), column, format, partition)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_padded_and_round_trip() {
        let t = 1_742_367_600_000; // 2025-03-19T07:00:00Z
        let hour = Partition::of_millis(t, Granularity::Hour).unwrap();
        assert_eq!(hour.path(), "year=2025/month=03/day=19/hour=07");
        assert_eq!(Partition::of_millis(t, Granularity::Day).unwrap().path(), "year=2025/month=03/day=19");
        assert_eq!(Partition::of_millis(t, Granularity::Year).unwrap().path(), "year=2025");
        for g in [Granularity::Year, Granularity::Month, Granularity::Day, Granularity::Hour] {
            let p = Partition::of_millis(t, g).unwrap();
            assert_eq!(p.path().parse::<Partition>().unwrap(), p);
        }
        assert!(Partition::of_millis(i64::MAX, Granularity::Day).is_none());
        assert!("year=2025/day=01".parse::<Partition>().is_err());
    }

    #[test]
    fn the_finder_agrees_with_the_calendar_at_every_boundary() {
        // Hour steps across a year end, a leap day, month ends and the epoch, minus and plus
        // one millisecond around each boundary.
        let start = chrono::NaiveDate::from_ymd_opt(2023, 12, 30).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis();
        let mut instants: Vec<i64> = (0..24 * 800).flat_map(|h| [start + h * 3_600_000 - 1, start + h * 3_600_000]).collect();
        instants.extend([-1, 0, 1, 86_399_999, 86_400_000]);
        for g in [Granularity::Year, Granularity::Month, Granularity::Day, Granularity::Hour] {
            let mut finder = PartitionFinder::new(g);
            for &ms in &instants {
                assert_eq!(finder.of_millis(ms), Partition::of_millis(ms, g), "{g} at {ms}");
            }
            // Out of order too: backwards, and jumping about (so days and hours come from
            // the map of those already found).
            for &ms in instants.iter().rev().step_by(7) {
                assert_eq!(finder.of_millis(ms), Partition::of_millis(ms, g), "{g} at {ms}");
            }
            for i in 0..instants.len() {
                let ms = instants[i * 7919 % instants.len()];
                assert_eq!(finder.of_millis(ms), Partition::of_millis(ms, g), "{g} at {ms}");
            }
        }
    }
}
