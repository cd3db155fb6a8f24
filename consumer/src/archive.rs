//! The raw archive (`--archive URI`): every event as it arrived, as zstd-compressed NDJSON by
//! arrival hour — a Firehose-like `raw/` zone that outlives the source (SQS cannot be read
//! twice; Kinesis forgets after its retention) and that `kappa-replay --from raw:URI` rebuilds
//! the lake from.
//!
//! ```text
//! <archive>/<table>/raw/year=2025/month=03/day=19/hour=07/<generation>-<commit:020>.ndjson.zst
//! ```
//!
//! Exactly once, like the lake: the objects of commit `n` are written before commit `n`, which
//! names them and records, per shard, the last position archived. After a restart, events at
//! or before that position are not archived again (the source re-reads from the resume point,
//! which may lie before it), and objects of commits that never happened are deleted.

use std::collections::BTreeMap;

use bytes::Bytes;
use kappa_common::event::SequenceNumber;
use kappa_common::store::{Store, StoreError};

use crate::event::SourceEvent;
use kappa_table::ShardPositions;

const HOUR_MS: i64 = 3_600_000;

pub struct Archive {
    store: Store,
    table: String,
    /// Raw lines by arrival hour (ms of the hour's start), since the last commit.
    hours: BTreeMap<i64, Vec<u8>>,
    /// Per shard, the last position archived (committed or pending).
    positions: BTreeMap<String, SequenceNumber>,
    bytes: usize,
    /// For one of several consumers of a queue, its run's name: their objects of the same
    /// commit number must not overwrite each other's.
    tag: Option<String>,
}

impl Archive {
    pub fn new(store: Store, table: &str, committed: &ShardPositions) -> Archive {
        let positions = committed.iter().filter_map(|(shard, p)| Some((shard.clone(), p.parse().ok()?))).collect();
        Archive { store, table: table.to_string(), hours: BTreeMap::new(), positions, bytes: 0, tag: None }
    }

    /// Names this writer's objects apart (`<generation>-<commit>-<tag>`).
    pub fn with_tag(mut self, tag: Option<String>) -> Archive {
        self.tag = tag;
        self
    }

    /// The archive's prefix for a table, relative to the archive location.
    pub fn prefix(table: &str) -> String {
        format!("{table}/raw/")
    }

    /// Keeps an event for the next commit, unless an earlier commit archived it.
    pub fn add(&mut self, shard: &str, event: &SourceEvent) {
        // A defective event is no JSON line; the quarantine keeps its bytes.
        if event.defect.is_some() || self.positions.get(shard).is_some_and(|p| event.seq <= *p) {
            return;
        }
        self.positions.insert(shard.to_string(), event.seq);
        let hour = event.arrival_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let lines = self.hours.entry(hour).or_default();
        let object = event.json();
        lines.extend_from_slice(&object);
        lines.push(b'\n');
        self.bytes += object.len() + 1;
    }

    /// Raw bytes held for the next commit (they count against `--max-memory`).
    pub fn buffered(&self) -> usize {
        self.bytes
    }

    pub fn positions(&self) -> ShardPositions {
        self.positions.iter().map(|(shard, p)| (shard.clone(), p.to_string())).collect()
    }

    /// Writes what was kept since the last commit; returns the object paths for commit `commit`.
    pub async fn write(&mut self, generation: &str, commit: u64) -> Result<Vec<String>, StoreError> {
        let mut written = Vec::new();
        for (hour, lines) in std::mem::take(&mut self.hours) {
            let time = chrono::DateTime::from_timestamp_millis(hour).unwrap_or_default();
            let tag = self.tag.as_deref().map(|t| format!("-{t}")).unwrap_or_default();
            let path = format!("{}{}/{generation}-{commit:020}{tag}.ndjson.zst", Self::prefix(&self.table), time.format("year=%Y/month=%m/day=%d/hour=%H"));
            let compressed = zstd::encode_all(lines.as_slice(), 3).map_err(|source| StoreError::Io { path: path.clone().into(), source })?;
            self.store.put(&path, Bytes::from(compressed)).await?;
            written.push(path);
        }
        self.bytes = 0;
        Ok(written)
    }

    /// Deletes this generation's archive objects of commits after `last_commit` (written by a
    /// flush that crashed before its commit). Returns how many.
    pub async fn remove_uncommitted(&self, generation: &str, last_commit: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        for object in self.store.list(&Self::prefix(&self.table)).await? {
            if commit_of_object(&object.path).is_some_and(|(g, c)| g == generation && c > last_commit) {
                self.store.delete(&object.path).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The generation and commit an archive object's name carries (`<gen>-<commit>.ndjson.zst`).
/// `None` for other names, and for the objects of consumers competing for an SQS queue
/// (`<gen>-<commit>-<tag>.ndjson.zst`): each of those numbers its commits from what it last
/// saw of the others', so a number says nothing of whether a commit names the object, and
/// no cleanup or replay may judge them by it.
pub fn commit_of_object(path: &str) -> Option<(String, u64)> {
    let name = path.rsplit('/').next()?.strip_suffix(".ndjson.zst")?;
    let parts: Vec<&str> = name.split('-').collect();
    let at = parts.iter().position(|p| p.len() == 20 && p.bytes().all(|b| b.is_ascii_digit())).filter(|at| *at > 0)?;
    if at + 1 != parts.len() {
        return None;
    }
    Some((parts[..at].join("-"), parts[at].parse().ok()?))
}

/// The arrival hour (ms) an object key names: `year=YYYY/month=MM/day=DD/hour=HH/` (this
/// archive) or `YYYY/MM/DD/HH/` (Firehose's default S3 prefix).
pub fn hour_of_key(key: &str) -> Option<i64> {
    let parts: Vec<&str> = key.split('/').collect();
    parts.windows(4).find_map(|w| {
        let field = |s: &str, name: &str| s.strip_prefix(name).unwrap_or(s).parse::<u32>().ok();
        let (y, m, d, h) = (field(w[0], "year=")?, field(w[1], "month=")?, field(w[2], "day=")?, field(w[3], "hour=")?);
        if !(1000..=9999).contains(&y) || w[0].len() < 4 {
            return None;
        }
        let date = chrono::NaiveDate::from_ymd_opt(y as i32, m, d)?;
        Some(date.and_hms_opt(h, 0, 0)?.and_utc().timestamp_millis())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_come_from_archive_and_firehose_keys() {
        let hour = chrono::NaiveDate::from_ymd_opt(2025, 3, 19).unwrap().and_hms_opt(7, 0, 0).unwrap().and_utc().timestamp_millis();
        assert_eq!(hour_of_key("sales/raw/year=2025/month=03/day=19/hour=07/gen-000001-00000000000000000001.ndjson.zst"), Some(hour));
        assert_eq!(hour_of_key("sales/2025/03/19/07/sales-raw-1-2025-03-19-07-00-00-abc"), Some(hour));
        assert_eq!(hour_of_key("sales/misc/file.ndjson"), None);
    }

    #[test]
    fn commits_come_from_object_names_without_a_tag() {
        assert_eq!(commit_of_object("t/raw/x/gen-000001-00000000000000000007.ndjson.zst"), Some(("gen-000001".into(), 7)));
        assert_eq!(commit_of_object("t/raw/x/gen-000001-00000000000000000007-ip-10-1-1764000000000.ndjson.zst"), None);
        assert_eq!(commit_of_object("t/raw/x/other.ndjson.zst"), None);
    }
}
