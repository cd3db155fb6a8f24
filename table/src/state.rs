//! What a writer's commit records (`commitInfo.kappa.state` in the Delta log, or a replay's own
//! commit log before its switch), and the state a restart resumes from.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::TableError;

/// Commit records of format 1 (an unreleased development version) resumed *at* a position.
pub const FORMAT: u32 = 2;

/// One Parquet object a commit adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Relative to the generation's prefix: `year=2025/month=03/day=19/part-0-0-99.parquet`.
    pub path: String,
    pub partition: String,
    pub rows: u64,
    pub bytes: u64,
    /// Delta statistics from the file's footer (numRecords, minValues, maxValues, nullCount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
}

/// Running totals, carried in every commit so `status` needs only the last one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
    pub quarantined: u64,
}

/// Positions are per shard (`"0"`, `"shardId-000000000001"`) and sequence numbers are decimal
/// strings, so the same record serves the embedded log and Kinesis.
pub type ShardPositions = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub format: u32,
    pub commit: u64,
    pub generation: String,
    pub created_ms: i64,
    pub schema_version: u32,
    pub added: Vec<DataFile>,
    #[serde(default)]
    pub removed: Vec<String>,
    /// Quarantine objects this commit adds (relative to the table).
    #[serde(default)]
    pub errors: Vec<String>,
    /// Per shard: the position to resume reading after (exclusive): always one the source delivered.
    pub resume: ShardPositions,
    /// Per partition, per shard: the last position whose row is in a committed file.
    pub written: BTreeMap<String, ShardPositions>,
    /// Per shard: the last position quarantined in a committed error file.
    #[serde(default)]
    pub quarantined: ShardPositions,
    pub totals: Totals,
    /// Source acknowledgements (SQS message ids) covered by this or an earlier commit, with the
    /// time (ms) until which they are remembered: 14 days while their deletion is unconfirmed,
    /// a grace period after. A restarted consumer deletes such a message when it comes back
    /// instead of ingesting it again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unacknowledged: BTreeMap<String, i64>,
    /// Where `unacknowledged` is when it is too big to carry (see `table/side.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unacknowledged_ref: Option<String>,
    /// Raw archive objects this commit adds (relative to the archive location).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archived: Vec<String>,
    /// Per shard: the last position in the raw archive.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub archive_positions: ShardPositions,
    /// Per producer file and pass (`<source>:<pass>`): the rows every shard's resume point has
    /// passed, so a file sent again after a restart is still recognised (see
    /// `kappa_consumer::dedup`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub seen: BTreeMap<String, SeenRows>,
    /// Where `seen` is when it is too big to carry in every commit (see `table/side.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_ref: Option<String>,
    /// Per shard, with `--partition-idle`: the latest event time (ms) of the events up to its
    /// resume point, where the restart's event time starts, so partitions close at the same
    /// rows as in a run that was never interrupted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub horizons: BTreeMap<String, i64>,
    /// Set by a switch: other writers' files (relative to the table root) it carried into the
    /// new generation; the next switch carries them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried: Vec<String>,
    /// Consumers competing for one SQS queue: what this commit stores (see [`Claims`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Claims>,
    /// Where `claims` is when it is too big to carry (see `table/side.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims_ref: Option<String>,
    /// A replay's generation written by several processes sharing the shards through leases:
    /// the shards this commit holds, at their lease epochs (see `table/shared.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub epochs: BTreeMap<String, u64>,
}

/// What one commit of a consumer competing for an SQS queue stores: the messages it covers and
/// the producer rows its files hold. Another such consumer whose own commit raced this one
/// reads them, and rebuilds its commit without what this one already stored (see
/// `competing.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The writer (`--worker-id`) that made the commit.
    pub writer: String,
    /// SQS message ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
    /// SQS message ids (of this commit or any earlier one, whoever's) whose deletes this writer
    /// saw confirmed since its last commit: the others remember them for a grace period only
    /// from then on, and until then as long as a message can stay in the queue.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confirmed: Vec<String>,
    /// Per producer file and pass (`<source>:<pass>`): the rows, as ranges (`0-99,120-130`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rows: BTreeMap<String, String>,
    /// What the commit added to the table's totals: the next commit of another consumer adds
    /// it to its own running totals, so the chain's last commit counts everyone's.
    #[serde(default)]
    pub totals: Totals,
}

impl Claims {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.rows.is_empty()
    }
}

/// A producer file's rows a commit remembers: `0-49999,50001-60000`, and when they last grew
/// (ms since the epoch; a file untouched for `--dedup-retention` is forgotten).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenRows {
    pub rows: String,
    pub ms: i64,
}

/// The settings that decide where a generation's rows go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub partition_by: String,
    /// The event-time column; `None` partitions by arrival time.
    pub event_time: Option<String>,
}

/// What a consumer needs to resume: the last commit's state plus the set of live files.
#[derive(Debug, Clone, Default)]
pub struct TableState {
    pub last_commit: u64,
    pub schema_version: u32,
    pub resume: ShardPositions,
    pub written: BTreeMap<String, ShardPositions>,
    pub quarantined: ShardPositions,
    pub totals: Totals,
    pub unacknowledged: BTreeMap<String, i64>,
    pub archive_positions: ShardPositions,
    pub seen: BTreeMap<String, SeenRows>,
    pub horizons: BTreeMap<String, i64>,
    /// Every committed, not removed, data file (relative to the generation).
    pub files: BTreeSet<String>,
    /// A leased worker's start: what the commits its shards come from remember of producer
    /// files besides `seen` (each to be united with it).
    pub more_seen: Vec<BTreeMap<String, SeenRows>>,
}

/// One shard's part of a state, as a leased worker's commit holds it: where the shard resumes,
/// what each partition wrote of it, where its quarantine and archive stand, its horizon.
pub(crate) struct ShardPart {
    resume: Option<String>,
    written: Vec<(String, String)>,
    quarantined: Option<String>,
    archive: Option<String>,
    horizon: Option<i64>,
}

impl Commit {
    pub(crate) fn shard_part(&self, shard: &str) -> ShardPart {
        ShardPart {
            resume: self.resume.get(shard).cloned(),
            written: self.written.iter().filter_map(|(partition, shards)| Some((partition.clone(), shards.get(shard)?.clone()))).collect(),
            quarantined: self.quarantined.get(shard).cloned(),
            archive: self.archive_positions.get(shard).cloned(),
            horizon: self.horizons.get(shard).copied(),
        }
    }
}

impl ShardPart {
    /// Sets `shard`'s part of a state (each of its maps) to this.
    #[allow(clippy::too_many_arguments)]
    fn put(
        self,
        shard: &str,
        resume: &mut ShardPositions,
        written: &mut BTreeMap<String, ShardPositions>,
        quarantined: &mut ShardPositions,
        archive: &mut ShardPositions,
        horizons: &mut BTreeMap<String, i64>,
    ) {
        let set = |map: &mut ShardPositions, value: Option<String>| match value {
            Some(value) => map.insert(shard.to_string(), value),
            None => map.remove(shard),
        };
        set(resume, self.resume);
        set(quarantined, self.quarantined);
        set(archive, self.archive);
        match self.horizon {
            Some(horizon) => horizons.insert(shard.to_string(), horizon),
            None => horizons.remove(shard),
        };
        for shards in written.values_mut() {
            shards.remove(shard);
        }
        written.retain(|_, shards| !shards.is_empty());
        for (partition, position) in self.written {
            written.entry(partition).or_default().insert(shard.to_string(), position);
        }
    }

    pub(crate) fn into_commit(self, shard: &str, to: &mut Commit) {
        self.put(shard, &mut to.resume, &mut to.written, &mut to.quarantined, &mut to.archive_positions, &mut to.horizons);
    }

    pub(crate) fn into_state(self, shard: &str, to: &mut TableState) {
        self.put(shard, &mut to.resume, &mut to.written, &mut to.quarantined, &mut to.archive_positions, &mut to.horizons);
    }
}

/// The Delta app id of a table's consumer (`txn.appId`): one consumer per table, and a
/// replay's switch hands its end positions to the consumer under the same id.
pub const CONSUMER_APP_ID: &str = "kappa-consumer";

/// The Delta app id every consumer of an SQS queue commits under (its version counts the
/// queue's commits into the table, whoever made them): competing consumers need no leases,
/// but each commit must know every one before it, to store no message or producer row twice.
pub const SQS_APP_ID: &str = "kappa-sqs";

/// The Delta app id prefix of a source shard's `txn` when workers share the shards through
/// leases (`--leases`): `kappa-shard:<shard>`, its version `epoch << 32 | commit` (see
/// [`shard_txn_version`]). The commit carrying a shard's latest `txn` holds its resume state.
pub const SHARD_APP_PREFIX: &str = "kappa-shard:";

/// The `txn` app id of `shard` under leases.
pub fn shard_app_id(shard: &str) -> String {
    format!("{SHARD_APP_PREFIX}{shard}")
}

/// A shard's `txn` version: the lease epoch in the high half, so that a worker that took the
/// shard later (a higher epoch) is above every commit of the one before, and the count of
/// commits within the epoch in the low half. Kinesis sequence numbers do not fit an i64, so
/// positions stay in the commit's metadata.
pub fn shard_txn_version(epoch: u64, commit: u32) -> i64 {
    (((epoch & 0x7fff_ffff) as i64) << 32) | i64::from(commit)
}

/// The lease epoch of a shard's `txn` version.
pub fn epoch_of_txn(version: i64) -> u64 {
    (version >> 32) as u64
}

/// Table property: the generation whose files the table holds.
pub const GENERATION_PROPERTY: &str = "kappa.generation";

pub(crate) fn parse<T: for<'de> Deserialize<'de>>(path: &str, data: &[u8]) -> Result<T, TableError> {
    serde_json::from_slice(data).map_err(|source| TableError::Corrupt { path: path.to_string(), source })
}

/// The state a commit leaves (without the set of files).
pub(crate) fn state_of(commit: Commit) -> TableState {
    TableState {
        last_commit: commit.commit,
        schema_version: commit.schema_version,
        resume: commit.resume,
        written: commit.written,
        quarantined: commit.quarantined,
        totals: commit.totals,
        unacknowledged: commit.unacknowledged,
        archive_positions: commit.archive_positions,
        seen: commit.seen,
        horizons: commit.horizons,
        files: BTreeSet::new(),
        more_seen: Vec::new(),
    }
}
