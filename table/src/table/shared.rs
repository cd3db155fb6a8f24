//! A replay's generation written by several processes at once, sharing the source's shards
//! through leases (`kappa-replay --leases`), before its switch: its own commit log
//! (`_kappa/<generation>/commits/<n>.json`) takes commits from all of them.
//!
//! Step by step, why every row goes in once however the shards move:
//! 1. Commits are numbered in one sequence, each created only if its number is free. A writer
//!    makes commit `n` only once it has read every commit before `n`; one that finds `n` taken
//!    reads it and tries `n + 1`.
//! 2. Each commit says which shards it holds rows and positions of, at which lease epoch
//!    (`epochs`), and carries only those shards' positions. A writer that finds, among the
//!    commits it reads before its own, another writer's commit holding a shard of its lost the
//!    shard (a newer owner fenced it) or read it from a state that is no longer the last (an
//!    older owner's commit landed before the fence): its commit is refused whole
//!    ([`TableError::Fenced`]), and it reads the log again.
//! 3. Reading the log, a commit holding a shard at an epoch below one already seen is a stale
//!    writer's (it cannot be written after step 2, but a log is read as it is): it is left out
//!    whole, files and positions.
//! 4. A shard's state is that of the last commit holding it; the generation's files are those
//!    of every commit; its totals the sum of what each commit added (`totals` is a commit's own
//!    here, not a running sum).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kappa_common::store::StoreError;

use crate::TableError;
use crate::state::{Commit, DataFile, TableState, Totals, parse};

use super::Table;

/// What a shared generation's log holds, read in order (see the module doc).
#[derive(Debug, Default)]
pub(super) struct SharedLog {
    /// Per shard, the highest epoch a valid commit held it at, and that commit's index in
    /// `commits`.
    latest: BTreeMap<String, (u64, usize)>,
    commits: Vec<Commit>,
    pub(super) files: BTreeMap<String, DataFile>,
    pub(super) totals: Totals,
    pub(super) last: u64,
}

impl SharedLog {
    /// Takes in the next commit of the log; false if it was a stale writer's (step 3).
    pub(super) fn add(&mut self, commit: Commit) -> bool {
        self.last = commit.commit;
        let stale = commit.epochs.iter().any(|(shard, epoch)| self.latest.get(shard).is_some_and(|(seen, _)| epoch < seen));
        if stale {
            return false;
        }
        let index = self.commits.len();
        for (shard, epoch) in &commit.epochs {
            self.latest.insert(shard.clone(), (*epoch, index));
        }
        for removed in &commit.removed {
            self.files.remove(removed);
        }
        for file in &commit.added {
            self.files.insert(file.path.clone(), file.clone());
        }
        let own = &commit.totals;
        (self.totals.rows, self.totals.files, self.totals.bytes, self.totals.quarantined) =
            (self.totals.rows + own.rows, self.totals.files + own.files, self.totals.bytes + own.bytes, self.totals.quarantined + own.quarantined);
        self.commits.push(commit);
        true
    }

    /// The state of `shards` (every shard the log holds with `None`): each from the last commit
    /// holding it; the producer rows every such commit remembers, to be united.
    pub(super) fn state(&self, shards: Option<&BTreeSet<String>>) -> TableState {
        let mut state = TableState { last_commit: self.last, totals: self.totals.clone(), ..TableState::default() };
        let mut from = BTreeSet::new();
        for (shard, (_, index)) in &self.latest {
            if shards.is_some_and(|wanted| !wanted.contains(shard)) {
                continue;
            }
            let record = &self.commits[*index];
            from.insert(*index);
            if let Some(position) = record.resume.get(shard) {
                state.resume.insert(shard.clone(), position.clone());
            }
            if let Some(position) = record.quarantined.get(shard) {
                state.quarantined.insert(shard.clone(), position.clone());
            }
            if let Some(position) = record.archive_positions.get(shard) {
                state.archive_positions.insert(shard.clone(), position.clone());
            }
            if let Some(horizon) = record.horizons.get(shard) {
                state.horizons.insert(shard.clone(), *horizon);
            }
            for (partition, positions) in &record.written {
                if let Some(position) = positions.get(shard) {
                    state.written.entry(partition.clone()).or_default().insert(shard.clone(), position.clone());
                }
            }
            state.schema_version = state.schema_version.max(record.schema_version);
        }
        state.more_seen = from.into_iter().map(|index| self.commits[index].seen.clone()).filter(|seen| !seen.is_empty()).collect();
        state.files = self.files.keys().cloned().collect();
        state
    }
}

impl Table {
    /// Commits a leased writer's flush to its generation's own log (steps 1 and 2).
    pub(super) async fn commit_shared(&self, recorded: &Commit) -> Result<(), TableError> {
        let leased = self.leased.as_ref().expect("a leased table");
        let (epochs, base) = {
            let leased = leased.lock().expect("leased");
            (leased.epochs(), leased.totals.clone())
        };
        // This commit's own totals: what the pipeline counts on top of the state it loaded.
        let totals = Totals {
            rows: recorded.totals.rows.saturating_sub(base.rows),
            files: recorded.totals.files.saturating_sub(base.files),
            bytes: recorded.totals.bytes.saturating_sub(base.bytes),
            quarantined: recorded.totals.quarantined.saturating_sub(base.quarantined),
        };
        let mut record = Commit { epochs: epochs.clone(), totals, ..recorded.clone() };
        loop {
            let read_through = self.read_shared_after().await?;
            record.commit = read_through + 1;
            let data = Bytes::from(serde_json::to_vec_pretty(&record).expect("commit serializes"));
            match self.store.put_if_absent(&self.commit_path(record.commit), data).await {
                Ok(()) => {
                    let mut leased = leased.lock().expect("leased");
                    leased.read_through = record.commit;
                    leased.totals = recorded.totals.clone();
                    return Ok(());
                }
                // Another writer's commit took the number: read it, then try the next.
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads the commits after the last one this writer read; refuses if another writer's holds
    /// a shard of this one's (step 2). Returns the last commit's number.
    async fn read_shared_after(&self) -> Result<u64, TableError> {
        let leased = self.leased.as_ref().expect("a leased table");
        let (mut at, mine) = {
            let leased = leased.lock().expect("leased");
            (leased.read_through, leased.epochs())
        };
        let mut fenced = BTreeSet::new();
        loop {
            let path = self.commit_path(at + 1);
            let data = match self.store.get(&path).await {
                Ok(data) => data,
                Err(StoreError::NotFound { .. }) => break,
                Err(e) => return Err(e.into()),
            };
            let commit: Commit = parse(&path, &data)?;
            // Another writer's commit of a shard this one holds: a newer owner's fence, or a
            // stale owner's last commit made before any fence. Either way this writer's rows of
            // the shard start from an older state than the log's now.
            fenced.extend(commit.epochs.keys().filter(|shard| mine.contains_key(*shard)).cloned());
            at += 1;
        }
        leased.lock().expect("leased").read_through = at;
        if !fenced.is_empty() {
            return Err(TableError::Fenced { table: self.name.clone(), shards: fenced.into_iter().collect() });
        }
        Ok(at)
    }

    /// The epoch each shard's last commit in a shared generation holds it at.
    pub async fn shared_epochs(&self) -> Result<BTreeMap<String, u64>, TableError> {
        let prefix = format!("{}/_kappa/{}/commits/", self.name, self.generation);
        let mut log = SharedLog::default();
        for object in self.store.list(&prefix).await? {
            log.add(parse(&object.path, &self.store.get(&object.path).await?)?);
        }
        Ok(log.latest.iter().map(|(shard, (epoch, _))| (shard.clone(), *epoch)).collect())
    }

    /// A leased writer's state in a shared generation: its held shards', and where the log
    /// stands (step 4). Refused ([`TableError::Fenced`]) if the log holds one of them at a
    /// newer epoch than this writer's: another writer took it since this one's lease view was
    /// last right. Its commit, read past already, would not be seen as a fence by step 2, and
    /// this writer's next commit would then be a stale one, left out whole by step 3 — rows of
    /// its other, validly held shards with it.
    pub(super) fn shared_state(&self, log: &SharedLog) -> Result<TableState, TableError> {
        let leased = self.leased.as_ref().expect("a leased table");
        let mut leased = leased.lock().expect("leased");
        let epochs = leased.epochs();
        let fenced: Vec<String> =
            epochs.iter().filter(|(shard, epoch)| log.latest.get(*shard).is_some_and(|(seen, _)| seen > *epoch)).map(|(shard, _)| shard.clone()).collect();
        if !fenced.is_empty() {
            return Err(TableError::Fenced { table: self.name.clone(), shards: fenced });
        }
        let held: BTreeSet<String> = epochs.into_keys().collect();
        let state = log.state(Some(&held));
        leased.read_through = log.last;
        leased.totals = state.totals.clone();
        Ok(state)
    }
}
