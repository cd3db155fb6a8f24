//! What a worker does with the shards it holds: the take's session start (the fence, or the
//! read of where the shard stands, and the cleanup of old if modelled), files stored and
//! committed as records arrive, lost answers settled by the commit's id, and the self-expiry
//! watchdog.

use std::time::Duration;

use super::table::{Answer, TableOp, Txn};
use super::{Ev, StoreReq, World};

/// Files are cut by the data every this many records (a busy shard's), so the same rows make
/// the same file whoever reads them; a shorter one once the reader's last commit is 5 s old.
const CHUNK: u64 = 100;
const PARTIAL_AFTER: u64 = 5_000;

/// What a table's answer leads to.
enum After {
    Nothing,
    /// The shard is read from here on (fenced already, if the flag says so).
    Reading(bool),
    Send(TableOp),
    Forget,
}

/// A shard a worker reads.
pub(super) struct Reader {
    pub(super) epoch: u64,
    /// The next record to read: known once the take's answer came.
    pub(super) next: Option<u64>,
    /// The shard's `txn` the next commit expects.
    pub(super) expect: Option<Txn>,
    pub(super) busy: bool,
    /// When (local ms) it last committed: a partial chunk is committed at most every 5 s.
    pub(super) last_commit: u64,
}

impl World {
    /// A lease taken: the session that reads it starts (the cleanup of old, if modelled), and
    /// the take goes to the table.
    pub(super) fn take(&mut self, w: usize, shard: &str, epoch: u64) {
        let last_commit = Self::ms(self.local(w));
        self.workers[w].readers.insert(shard.to_string(), Reader { epoch, next: None, expect: None, busy: true, last_commit });
        if self.config.delete_by_clock {
            let wall = self.wall(w);
            self.send_table(w, TableOp::Cleanup { wall });
        }
        self.send_table(w, TableOp::Take { shard: shard.to_string(), epoch });
    }

    /// The coordinator's watchdog: a worker whose own heartbeat has not landed for the
    /// self-expiry time stops reading, whatever its cycle is waiting for.
    pub(super) fn watchdog(&mut self, w: usize) {
        let now = self.local(w);
        let worker = &mut self.workers[w];
        if !worker.core.held().is_empty() && !worker.core.beating(now) {
            worker.core.give_up();
            worker.readers.clear();
        }
        let t = self.now + self.global(w, self.settings.cycle() / 2);
        let inc = self.workers[w].inc;
        self.at(t, Ev::Watchdog(w, inc));
    }

    pub(super) fn commit_tick(&mut self, w: usize) {
        let shards: Vec<String> = self.workers[w].readers.keys().cloned().collect();
        let local = Self::ms(self.local(w));
        let version = self.workers[w].version;
        for shard in shards {
            let available = self.available(&shard);
            let closed = self.sources[&shard].closed.is_some();
            let reader = self.workers[w].readers.get_mut(&shard).expect("reader");
            let (Some(next), false) = (reader.next, reader.busy) else { continue };
            // A file holds the records up to the next chunk boundary; fewer only when the last
            // commit is old (a time-triggered flush) or the shard is closed.
            let boundary = (next / CHUNK + 1) * CHUNK;
            let due = closed || local.saturating_sub(reader.last_commit) >= PARTIAL_AFTER;
            if available >= boundary || (next < available && due) {
                reader.busy = true;
                let to = available.min(boundary);
                self.send_table(w, TableOp::Put { shard, from: next, to, version });
            } else if closed && next >= available {
                // Read to its end and committed: end the lease so its children may be read.
                reader.busy = true;
                let checkpoint = Some(next.to_string());
                if let Some(change) = self.workers[w].core.end(&shard, checkpoint) {
                    self.send(w, StoreReq::Change(change, false));
                }
            }
        }
        let t = self.now + self.global(w, Duration::from_secs(1));
        let inc = self.workers[w].inc;
        self.at(t, Ev::CommitTick(w, inc));
    }

    pub(super) fn table_answered(&mut self, w: usize, op: TableOp, answer: Answer) {
        let shard = op.shard().to_string();
        let local = Self::ms(self.local(w));
        let version = self.workers[w].version;
        let epoch = match &op {
            TableOp::Take { epoch, .. } | TableOp::Commit { epoch, .. } | TableOp::Check { epoch, .. } => Some(*epoch),
            TableOp::Put { .. } => self.workers[w].readers.get(&shard).map(|r| r.epoch),
            TableOp::Cleanup { .. } => return,
        };
        let fence_on_take = self.rules.fence_on_take;
        let Some(reader) = self.workers[w].readers.get_mut(&shard).filter(|r| Some(r.epoch) == epoch) else { return };
        let epoch = reader.epoch;
        let then = match (op, answer) {
            (TableOp::Take { .. }, Answer::Taken { position, txn }) => {
                (reader.next, reader.expect, reader.busy) = (Some(position), txn, false);
                After::Reading(fence_on_take)
            }
            (TableOp::Put { from, to, .. }, Answer::Stored(file)) => {
                self.commit_ids += 1;
                After::Send(TableOp::Commit { shard: shard.clone(), epoch, from, to, file, version, expect: reader.expect, id: self.commit_ids })
            }
            (TableOp::Commit { to, .. }, Answer::Committed(txn)) => {
                (reader.next, reader.expect, reader.busy, reader.last_commit) = (Some(to), Some(txn), false, local);
                After::Nothing
            }
            // Its answer lost: the log is read again for the commit's id (`find_own`).
            (TableOp::Commit { shard, epoch, to, id, .. }, Answer::Lost) => After::Send(TableOp::Check { shard, epoch, to, id }),
            (TableOp::Check { to, .. }, Answer::Done) => {
                let txn = match reader.expect {
                    Some((e, n)) if e == epoch => (e, n + 1),
                    _ => (epoch, 1),
                };
                (reader.next, reader.expect, reader.busy, reader.last_commit) = (Some(to), Some(txn), false, local);
                After::Nothing
            }
            _ => After::Forget,
        };
        match then {
            After::Nothing | After::Reading(false) => {}
            After::Reading(true) => {
                if let Some(since) = self.unread_since.remove(&shard) {
                    self.note_unread(&shard, since);
                }
            }
            After::Send(op) => self.send_table(w, op),
            After::Forget => {
                // Fenced by a newer owner: drop what was read and stop reading the shard.
                let worker = &mut self.workers[w];
                worker.readers.remove(&shard);
                worker.core.forget(&shard);
            }
        }
    }
}
