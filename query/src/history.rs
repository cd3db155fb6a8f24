//! Which versions of a table can still be read, and which one `--version` or `--as-of` picks.
//!
//! A Delta table forgets in two ways: log retention removes old commits once a checkpoint
//! stands in for them (a version before the oldest checkpoint left can no longer be rebuilt),
//! and a vacuum removes data files that only old versions name (the version's log is there,
//! its files are not). delta-rs answers the first with "LogSegment end version … not the same
//! as …" and the second with a raw object-store error in the middle of a scan, and picks the
//! first version for a time before the table existed. Here one listing of `_delta_log/` says
//! what is in reach, and a version or time out of it fails before any statement runs, naming
//! what can be read instead.
//!
//! A version's time is its commit file's modification time, as delta-rs, Spark and python
//! deltalake read it (our writers do not enable in-commit timestamps).

use std::collections::{BTreeMap, HashSet};

use arrow::array::AsArray;
use chrono::{DateTime, SecondsFormat, Utc};
use deltalake_core::kernel::Snapshot;
use deltalake_core::logstore::LogStoreRef;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;

use crate::at::At;
use crate::error::QueryError;

/// The versions the Delta log holds: commits and checkpoints, each with its file's time.
#[derive(Debug, Default)]
pub struct Versions {
    commits: BTreeMap<u64, DateTime<Utc>>,
    checkpoints: BTreeMap<u64, DateTime<Utc>>,
}

impl Versions {
    /// Lists `<root>/_delta_log/` (one listing; sub-directories are not the log's).
    pub async fn list(store: &dyn ObjectStore, root: &Path) -> Result<Versions, QueryError> {
        let log = root.clone().join("_delta_log");
        let mut versions = Versions::default();
        let mut listing = store.list(Some(&log));
        while let Some(meta) = listing.try_next().await.map_err(|e| QueryError::Lake(format!("listing {log}: {e}")))? {
            let Some(name) = meta.location.prefix_match(&log).and_then(|mut parts| parts.next().filter(|_| parts.next().is_none())) else { continue };
            versions.note(name.as_ref(), meta.last_modified);
        }
        Ok(versions)
    }

    /// Records one file of the log by its name (`00000000000000000012.json`,
    /// `…12.checkpoint.parquet`, a multi-part `…12.checkpoint.0000000001.0000000002.parquet`).
    fn note(&mut self, name: &str, modified: DateTime<Utc>) {
        // Delta's times are milliseconds: a version committed at 10:00:00.2107 is read as of
        // 10:00:00.210, the time messages name.
        let modified = DateTime::from_timestamp_millis(modified.timestamp_millis()).unwrap_or(modified);
        let Some((digits, rest)) = name.split_once('.') else { return };
        let Some(version) = (digits.len() == 20).then(|| digits.parse::<u64>().ok()).flatten() else { return };
        if rest == "json" {
            self.commits.insert(version, modified);
        } else if rest.starts_with("checkpoint.") && rest.ends_with(".parquet") {
            let time = self.checkpoints.entry(version).or_insert(modified);
            *time = (*time).max(modified);
        }
    }

    /// The newest version.
    pub fn latest(&self) -> Option<u64> {
        self.commits.keys().next_back().copied()
    }

    /// The oldest version the log can still rebuild: 0 while every commit is there, else the
    /// oldest checkpoint from which the commits up to the latest are all there.
    pub fn earliest(&self) -> Option<u64> {
        let latest = self.latest()?;
        // The run of commits that ends at the latest without a gap.
        let mut start = latest;
        while start > 0 && self.commits.contains_key(&(start - 1)) {
            start -= 1;
        }
        if start == 0 {
            return Some(0);
        }
        self.checkpoints.range(start - 1..=latest).next().map(|(version, _)| *version)
    }

    /// When `version` was committed (its checkpoint's time when log retention took its commit).
    pub fn time_of(&self, version: u64) -> Option<DateTime<Utc>> {
        self.commits.get(&version).or_else(|| self.checkpoints.get(&version)).copied()
    }

    /// The version `at` names, checked against what the log holds. `None` for the latest.
    pub fn resolve(&self, table: &str, at: &At) -> Result<Option<u64>, QueryError> {
        let (Some(earliest), Some(latest)) = (self.earliest(), self.latest()) else {
            // No readable log: delta-rs says what is wrong with it.
            return Ok(match at {
                At::Version(version) => Some(*version),
                _ => None,
            });
        };
        let range = || readable_range(earliest, latest);
        match at {
            At::Latest => Ok(None),
            At::Version(version) if *version > latest => {
                Err(QueryError::TimeTravel(format!("--version {version}: table {table} has no such version; {}", range())))
            }
            At::Version(version) if *version < earliest => Err(QueryError::TimeTravel(format!(
                "--version {version} of table {table} is no longer readable: its log entries were cleaned up (Delta log retention); {}",
                range()
            ))),
            At::Version(version) => Ok(Some(*version)),
            At::Time(time) => {
                let first = self.time_of(earliest).expect("the earliest version is in the log");
                if *time < first {
                    let why = if earliest == 0 {
                        format!("table {table} did not exist yet: it was created at {} (version 0)", when(first))
                    } else {
                        format!(
                            "that is before the earliest readable version of table {table}, {earliest}, committed at {} (older log entries were cleaned up)",
                            when(first)
                        )
                    };
                    return Err(QueryError::TimeTravel(format!("--as-of {}: {why}; give that time or a later one", when(*time))));
                }
                // The newest version committed at or before the time.
                let version = (earliest..=latest).rev().find(|v| self.time_of(*v).is_some_and(|t| t <= *time)).unwrap_or(earliest);
                Ok(Some(version))
            }
        }
    }
}

/// "readable versions are 3 to 12 (12 is current, committed …)".
fn readable_range(earliest: u64, latest: u64) -> String {
    if earliest == latest {
        format!("the only readable version is {latest}")
    } else {
        format!("readable versions are {earliest} to {latest} ({latest} is the current one)")
    }
}

/// A time as messages write it: RFC 3339, UTC, milliseconds.
pub fn when(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The data files of `snapshot` not in `present`, and how many it has: a vacuum removed them
/// if the version is an old one.
pub async fn missing_files(log_store: &LogStoreRef, snapshot: &Snapshot, root: &Path, present: &HashSet<Path>) -> Result<(Vec<String>, usize), QueryError> {
    let (mut missing, mut total) = (Vec::new(), 0);
    let mut files = snapshot.files(log_store.as_ref(), None);
    while let Some(batch) = files.try_next().await? {
        let paths = batch
            .column_by_name("path")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| QueryError::Lake("the Delta log's file list has no paths".into()))?;
        for path in paths.iter().flatten() {
            total += 1;
            // The log's paths are relative URLs (percent-encoded); the store's paths are decoded.
            let location = Path::from_url_path(format!("{root}/{path}")).map_err(|e| QueryError::Lake(format!("the Delta log names file {path}: {e}")))?;
            if !present.contains(&location) {
                missing.push(path.to_string());
            }
        }
    }
    Ok((missing, total))
}

/// Every object under the table's root but its log: the data files a vacuum left.
pub async fn present_files(store: &dyn ObjectStore, root: &Path) -> Result<HashSet<Path>, QueryError> {
    let log = root.clone().join("_delta_log");
    store
        .list(Some(root))
        .try_filter(|meta| std::future::ready(meta.location.prefix_match(&log).is_none()))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(|e| QueryError::Lake(format!("listing {root}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, minute, 0).unwrap()
    }

    fn versions(commits: &[u64], checkpoints: &[u64]) -> Versions {
        let mut versions = Versions::default();
        for v in commits {
            versions.note(&format!("{v:020}.json"), at(*v as u32));
        }
        for v in checkpoints {
            versions.note(&format!("{v:020}.checkpoint.parquet"), at(*v as u32));
        }
        versions.note("_last_checkpoint", at(59));
        versions.note("00000000000000000003.crc", at(59));
        versions
    }

    #[test]
    fn the_readable_versions_are_the_ones_the_log_can_rebuild() {
        assert_eq!((versions(&[0, 1, 2, 3], &[]).earliest(), versions(&[0, 1, 2, 3], &[2]).latest()), (Some(0), Some(3)));
        // Log retention removed 0-4 once checkpoint 5 stood in for them.
        assert_eq!(versions(&[6, 7, 8], &[5]).earliest(), Some(5));
        assert_eq!(versions(&[5, 6, 7, 8], &[5, 7]).earliest(), Some(5));
        // A gap after the only checkpoint: only the checkpoint after the gap counts.
        assert_eq!(versions(&[3, 4, 6, 7], &[2, 5]).earliest(), Some(5));
        assert_eq!(versions(&[3, 4, 6, 7], &[2]).earliest(), None);
    }

    #[test]
    fn a_version_or_time_out_of_reach_says_what_is_in_reach() {
        let log = versions(&[6, 7, 8, 9, 10], &[5]);
        let error = |at: At| log.resolve("sales", &at).unwrap_err().to_string();
        assert_eq!(error(At::Version(999)), "--version 999: table sales has no such version; readable versions are 5 to 10 (10 is the current one)");
        assert!(error(At::Version(2)).contains("no longer readable: its log entries were cleaned up"), "{}", error(At::Version(2)));
        assert!(error(At::Time(at(4))).contains("before the earliest readable version of table sales, 5, committed at 2026-11-25T10:05:00.000Z"));
        assert_eq!(log.resolve("sales", &At::Version(5)).unwrap(), Some(5));
        assert_eq!(log.resolve("sales", &At::Time(at(5))).unwrap(), Some(5));
        assert_eq!(log.resolve("sales", &At::Time(at(8) + chrono::Duration::seconds(30))).unwrap(), Some(8));
        assert_eq!(log.resolve("sales", &At::Time(at(58))).unwrap(), Some(10));
        assert_eq!(log.resolve("sales", &At::Latest).unwrap(), None);
        let new = versions(&[0, 1], &[]);
        let message = new.resolve("sales", &At::Time(at(0) - chrono::Duration::days(9000))).unwrap_err().to_string();
        assert!(message.contains("table sales did not exist yet: it was created at 2026-11-25T10:00:00.000Z (version 0)"), "{message}");
    }
}
