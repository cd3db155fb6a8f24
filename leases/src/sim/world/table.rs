//! The modelled table, as the consumer uses the Delta table: each shard's `txn` (lease epoch
//! and commit count), its position, the data files in the object store, and the writers'
//! records. What the model checks as it goes: a commit never names a file that is missing or
//! holds other bytes than its writer stored, and a committed file is never replaced.

use std::collections::{HashMap, HashSet};

use super::Ms;

/// A shard's `txn` in the table: the lease epoch of its last commit, and that commit's count
/// within the epoch.
pub(super) type Txn = (u64, u32);

/// What a worker asks of the table.
#[derive(Debug, Clone)]
pub(super) enum TableOp {
    /// A worker took the shard at `epoch`: it reads where the shard stands, and with
    /// `fence_on_take` commits it at `epoch` with no rows (refused below the table's epoch).
    Take { shard: String, epoch: u64 },
    /// Stores the data file of records `from..to` (bytes as binary `version` encodes them).
    Put { shard: String, from: u64, to: u64, version: u8 },
    /// Commits `file` (records `from..to`), expecting the shard's `txn` at `expect`.
    Commit { shard: String, epoch: u64, from: u64, to: u64, file: String, version: u8, expect: Option<Txn>, id: u64 },
    /// After a commit whose answer was lost: did commit `id` land?
    Check { shard: String, epoch: u64, to: u64, id: u64 },
    /// The cleanup a session start ran before leases: deletes every uncommitted file whose
    /// writer's record is a minute old by the wall clock of the worker asking (`wall`).
    Cleanup { wall: i64 },
}

impl TableOp {
    pub(super) fn shard(&self) -> &str {
        match self {
            TableOp::Take { shard, .. } | TableOp::Put { shard, .. } | TableOp::Commit { shard, .. } | TableOp::Check { shard, .. } => shard,
            TableOp::Cleanup { .. } => "",
        }
    }
}

/// What the table answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// A take: where the shard stands, and the `txn` the next commit expects.
    Taken {
        position: u64,
        txn: Option<Txn>,
    },
    /// A put: the name the file was stored under.
    Stored(String),
    /// A commit made (or found made), and the `txn` it left.
    Committed(Txn),
    Refused,
    /// The commit was made or not; its answer never came.
    Lost,
    Done,
}

/// A data file in the object store.
#[derive(Debug, Clone)]
struct Stored {
    /// The records it holds and the binary version that encoded them: its bytes.
    bytes: (u64, u64, u8),
    writer: (usize, u32),
    committed: bool,
}

#[derive(Debug, Default)]
struct Shard {
    txn: Option<Txn>,
    position: u64,
    last_commit_epoch: u64,
}

/// How the table behaves: the code as it is, or as it was (the self-tests' broken variants).
#[derive(Debug, Clone, Copy)]
pub(super) struct Rules {
    pub fence_on_take: bool,
    pub replace_files: bool,
    /// Accepts every commit (no fence at all).
    pub broken_fence: bool,
}

/// How old a writer record may be by the observer's wall clock before the old cleanup took
/// the writer for dead (`kappa_table::writers::WRITER_STALE_MS`).
const STALE_MS: i64 = 60_000;

#[derive(Default)]
pub(super) struct TableModel {
    shards: HashMap<String, Shard>,
    files: HashMap<String, Stored>,
    /// Writer records: each worker run's last heartbeat, by its wall clock.
    pub records: HashMap<(usize, u32), i64>,
    landed: HashSet<u64>,
    alternates: u64,
    pub records_committed: u64,
    pub commits: u64,
    pub failures: Vec<String>,
}

impl TableModel {
    pub(super) fn position(&self, shard: &str) -> u64 {
        self.shards.get(shard).map_or(0, |s| s.position)
    }

    /// Applies `op` of worker `w` (run `inc`) at `now`.
    pub(super) fn apply(&mut self, rules: Rules, w: usize, inc: u32, now: Ms, op: &TableOp) -> Answer {
        match op {
            TableOp::Take { shard, epoch } => {
                let table = self.shards.entry(shard.clone()).or_default();
                if !rules.fence_on_take {
                    return Answer::Taken { position: table.position, txn: table.txn };
                }
                if table.txn.is_some_and(|(e, _)| e >= *epoch) && !rules.broken_fence {
                    return Answer::Refused;
                }
                table.txn = Some((*epoch, 1));
                Answer::Taken { position: table.position, txn: table.txn }
            }
            TableOp::Put { shard, from, to, version } => {
                let name = format!("{shard}/{from}-{to}");
                let bytes = (*from, *to, *version);
                let stored = Stored { bytes, writer: (w, inc), committed: false };
                match self.files.get(&name) {
                    None => {}
                    Some(existing) if rules.replace_files && existing.committed && existing.bytes != bytes => {
                        self.failures.push(format!("at {now} ms worker {w}#{inc} replaced {name}, which a commit names, with other bytes"));
                    }
                    Some(_) if rules.replace_files => {}
                    // The same bytes: that object is this file.
                    Some(existing) if existing.bytes == bytes => return Answer::Stored(name),
                    // Other bytes: this file goes under a name of its own.
                    Some(_) => {
                        self.alternates += 1;
                        let own = format!("{name}.w{w}-{inc}-{}", self.alternates);
                        self.files.insert(own.clone(), stored);
                        return Answer::Stored(own);
                    }
                }
                let committed = self.files.get(&name).is_some_and(|f| f.committed);
                self.files.insert(name.clone(), Stored { committed, ..stored });
                Answer::Stored(name)
            }
            TableOp::Commit { shard, epoch, from, to, file, version, expect, id } => {
                let table = self.shards.entry(shard.clone()).or_default();
                let valid = table.txn == *expect && table.position == *from;
                if !valid && !rules.broken_fence {
                    return Answer::Refused;
                }
                if *from < table.position {
                    self.failures
                        .push(format!("at {now} ms records {from}..{} of {shard} were committed twice (by worker {w}#{inc}, epoch {epoch})", table.position));
                } else if *from > table.position {
                    self.failures.push(format!("at {now} ms records {}..{from} of {shard} were skipped", table.position));
                }
                if *epoch < table.last_commit_epoch && !rules.broken_fence {
                    self.failures
                        .push(format!("at {now} ms {shard} took a commit at epoch {epoch} after one at {}: two committing owners", table.last_commit_epoch));
                }
                match self.files.get_mut(file) {
                    None => self.failures.push(format!("at {now} ms worker {w}#{inc}'s commit of {shard} names {file}, which is gone")),
                    Some(stored) if stored.bytes != (*from, *to, *version) => {
                        self.failures.push(format!("at {now} ms worker {w}#{inc}'s commit of {shard} names {file}, which holds other bytes than it stored"))
                    }
                    Some(stored) => stored.committed = true,
                }
                table.last_commit_epoch = table.last_commit_epoch.max(*epoch);
                let next = match table.txn {
                    Some((e, n)) if e == *epoch => (e, n + 1),
                    _ => (*epoch, 1),
                };
                table.txn = Some(next);
                self.records_committed += to.saturating_sub(table.position.max(*from)) + table.position.saturating_sub(*from).min(to - from);
                table.position = table.position.max(*to);
                self.commits += 1;
                self.landed.insert(*id);
                Answer::Committed(next)
            }
            TableOp::Check { id, .. } => match self.landed.contains(id) {
                true => Answer::Done,
                false => Answer::Refused,
            },
            TableOp::Cleanup { wall } => {
                let records = &self.records;
                let stale = |writer: &(usize, u32)| records.get(writer).is_none_or(|beat| wall - beat >= STALE_MS);
                self.files.retain(|_, f| f.committed || !stale(&f.writer));
                Answer::Done
            }
        }
    }
}
