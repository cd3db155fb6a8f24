//! Settings that do not fit the data stop a run before it commits the damage.
//!
//! A mistyped `--event-time` quarantines every event, and so does a wrong schema or the wrong
//! table: exiting 0 with an error area full of good rows hides the mistake, and the rows'
//! positions would be committed as done. So the event-time column is checked against the
//! schema as soon as the schema is known, and the share of quarantined events is checked over
//! the first events of each run, before any commit that would record their quarantine.

use kappa_common::schema::{ColumnType, TableSchema};
use kappa_common::time::EventTimeFormat;

use super::PipelineError;
use crate::settings::QuarantineLimit;

/// A ratio is not judged on fewer events than this: three bad rows of five say little.
const MIN_SAMPLE: u64 = 100;

/// Counts the first events of a run and those of them quarantined.
#[derive(Debug)]
pub(super) struct QuarantineRatio {
    limit: QuarantineLimit,
    read: u64,
    quarantined: u64,
    first_reason: Option<String>,
    /// The window is full and was found within the limit: later events are not counted.
    passed: bool,
}

impl QuarantineRatio {
    pub(super) fn new(limit: QuarantineLimit) -> QuarantineRatio {
        QuarantineRatio { limit, read: 0, quarantined: 0, first_reason: None, passed: limit.ratio >= 1.0 }
    }

    pub(super) fn read(&mut self, events: usize) {
        if !self.passed {
            self.read += events as u64;
        }
    }

    pub(super) fn quarantined(&mut self, reason: &str) {
        if !self.passed {
            self.quarantined += 1;
            self.first_reason.get_or_insert_with(|| reason.to_string());
        }
    }

    /// Fails once enough events were seen and too many of them were quarantined; after a
    /// full window within the limit, it never fails again in this run.
    pub(super) fn check(&mut self) -> Result<(), PipelineError> {
        if self.passed || self.read < MIN_SAMPLE.min(self.limit.window) {
            return Ok(());
        }
        if self.quarantined as f64 > self.limit.ratio * self.read as f64 {
            return Err(PipelineError::TooMuchQuarantined {
                quarantined: self.quarantined,
                read: self.read,
                ratio: self.limit.ratio,
                first_reason: self.first_reason.clone().unwrap_or_default(),
            });
        }
        self.passed = self.read >= self.limit.window;
        Ok(())
    }
}

/// The event-time column must be a column of the schema, and an epoch format cannot read a
/// column that holds dates or timestamps (every event would be placed by a number it does
/// not hold).
pub(super) fn check_event_time(schema: &TableSchema, column: &str, format: &EventTimeFormat) -> Result<(), PipelineError> {
    if let Some(index) = schema.index_of(column) {
        let column_type = schema.fields[index].column_type;
        let is_time = matches!(column_type, ColumnType::Date | ColumnType::Timestamp | ColumnType::TimestampNtz);
        let is_number = matches!(column_type, ColumnType::Int64 | ColumnType::Float64);
        let epoch = matches!(format, EventTimeFormat::EpochSeconds | EventTimeFormat::EpochMillis);
        if is_time && epoch {
            return Err(PipelineError::EventTimeFormat { column: column.to_string(), column_type, format: format.clone() });
        }
        // Numbers under a format of dates: not one row would be placed (each read as the wrong
        // year, until this was refused).
        if is_number && !epoch {
            return Err(PipelineError::EventTimeNumbers { column: column.to_string(), column_type, format: format.clone() });
        }
        return Ok(());
    }
    let names: Vec<&str> = schema.fields.iter().map(|c| c.name.as_str()).collect();
    Err(PipelineError::EventTimeColumn { column: column.to_string(), closest: closest_names(column, &names), columns: names.len() })
}

/// Up to three names like `wanted`: the same but for case, one inside the other
/// (`time` in `features_properties_time`), or a few letters apart.
pub(crate) fn closest_names(wanted: &str, names: &[&str]) -> Vec<String> {
    let wanted_lower = wanted.to_lowercase();
    let mut scored: Vec<(f64, &str)> = names
        .iter()
        .filter_map(|name| {
            let lower = name.to_lowercase();
            let score = if lower == wanted_lower {
                2.0
            } else if lower.contains(&wanted_lower) || wanted_lower.contains(&lower) {
                1.0 + strsim::jaro_winkler(&wanted_lower, &lower) / 10.0
            } else {
                strsim::jaro_winkler(&wanted_lower, &lower)
            };
            (score >= 0.8).then_some((score, *name))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.into_iter().take(3).map(|(_, name)| name.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closest_names_come_first() {
        let names = ["id", "features_properties_time", "features_properties_mag", "Date"];
        assert_eq!(closest_names("time", &names), vec!["features_properties_time"]);
        assert_eq!(closest_names("date", &names), vec!["Date"]);
        assert_eq!(closest_names("features_properties_tme", &names)[0], "features_properties_time");
        assert!(closest_names("nosuch", &names).is_empty());
    }

    #[test]
    fn the_ratio_is_judged_on_enough_events_and_once_per_window() {
        let limit = QuarantineLimit { ratio: 0.5, window: 1000 };
        let mut small = QuarantineRatio::new(limit);
        small.read(9);
        (0..5).for_each(|_| small.quarantined("bad"));
        assert!(small.check().is_ok(), "nine events are too few to judge");

        let mut bad = QuarantineRatio::new(limit);
        bad.read(200);
        (0..101).for_each(|i| bad.quarantined(&format!("reason {i}")));
        match bad.check() {
            Err(PipelineError::TooMuchQuarantined { quarantined: 101, read: 200, first_reason, .. }) => assert_eq!(first_reason, "reason 0"),
            other => panic!("{other:?}"),
        }

        let mut good = QuarantineRatio::new(limit);
        good.read(1000);
        (0..10).for_each(|_| good.quarantined("bad"));
        assert!(good.check().is_ok());
        good.read(1000);
        (0..1000).for_each(|_| good.quarantined("bad"));
        assert!(good.check().is_ok(), "a full window within the limit is never judged again");

        let mut off = QuarantineRatio::new(QuarantineLimit { ratio: 1.0, window: 1000 });
        off.read(1000);
        (0..1000).for_each(|_| off.quarantined("bad"));
        assert!(off.check().is_ok());
    }
}
