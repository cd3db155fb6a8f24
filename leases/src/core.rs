//! One worker's side of the lease protocol as a state machine without I/O: it says which
//! writes to make and learns what came of them. The runtime ([`crate::coordinator`]) runs it
//! against a real store on tokio's clock; the simulation ([`crate::sim`]) runs the very same
//! code against a modelled store on a virtual clock with crashes, pauses and slow writes.
//!
//! A cycle: write the heartbeat ([`Core::beat`]), scan, then [`Core::on_scan`] observes, drops
//! leases lost to others, and plans takes ([`crate::plan`]); each write's outcome goes back
//! through [`Core::applied`].
//!
//! A worker holds a lease from a successful take until it sees the lease owned by another (or
//! at another epoch), it ends or releases it, or its own heartbeat has failed for so long that
//! others may judge it expired: then it stops reading every shard at once, before anyone can
//! take them. None of this is what keeps exactly-once — a paused process can wake up believing
//! anything — the table's fence is ([`crate`] docs); it keeps a worker from wasting work.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::observe::Observer;
use crate::plan::plan;
use crate::record::{Item, Key, Lease, Snapshot, Worker};
use crate::store::Expect;

/// Timing of the protocol, all derived from the failover time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How soon a dead worker's shards are owned again (default 10 s).
    pub failover: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { failover: Duration::from_secs(10) }
    }
}

impl Settings {
    /// How often a worker scans (and takes): a tenth of the failover time.
    pub fn cycle(&self) -> Duration {
        (self.failover / 10).max(Duration::from_millis(20))
    }

    /// How often a worker beats: every other cycle. A live worker's counter then changes at
    /// least every three cycles as any observer sees it, well inside the expiry (eight), and
    /// the heartbeat costs half the writes (at 10 s: 1,800 an hour per worker, any shards).
    pub fn beat_interval(&self) -> Duration {
        self.cycle() * 2
    }

    /// How long an unchanged heartbeat means expired: the failover time less two cycles. The
    /// last beat of a dead worker was sent at most a beat interval (two cycles) before it died,
    /// an observer saw it at most a cycle after it was sent and takes at most a cycle after
    /// the expiry: a dead worker's leases are taken within the failover time of its death.
    pub fn expiry(&self) -> Duration {
        self.failover.saturating_sub(self.cycle() * 2)
    }

    /// A worker whose own last good heartbeat is this old stops reading: from one cycle later
    /// others may judge it expired.
    pub fn self_expiry(&self) -> Duration {
        self.expiry().saturating_sub(self.cycle())
    }

    /// Worker items silent this long and owning nothing are removed by whoever sees them.
    fn reap_after(&self) -> Duration {
        self.failover * 30
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Create a lease for a shard the source lists.
    Create,
    /// Take a free or expired lease.
    Take,
    /// Take a lease from a live worker (balancing).
    Steal,
    /// Let a lease go (graceful shutdown): the next taker needs no expiry.
    Release,
    /// Mark a lease read to its end and committed.
    End,
    /// Remove a long-dead worker's item.
    Reap,
}

/// One conditional write the core asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// `None` for a delete of `key`.
    pub item: Option<Item>,
    pub key: Key,
    pub expect: Expect,
}

/// A shard the source lists, and the shards it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    pub parents: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error(
        "worker id {id} is in use by another live process ({host}, pid {pid}): give each process its own --worker-id \
         (the default, host name and pid, is unique)"
    )]
    IdInUse { id: String, host: String, pid: u32 },
}

#[derive(Debug, Clone)]
pub struct Core {
    settings: Settings,
    me: Worker,
    /// Whether my item exists with `me.counter` as far as I know.
    registered: bool,
    /// Whether I ever wrote my item: an unknown writer of it after that is another process.
    wrote_once: bool,
    /// The counter of a heartbeat whose outcome is unknown (the store failed or answered a
    /// retried write with a conflict): if the next scan finds it, the write was mine.
    pending: Option<u64>,
    /// While waiting to adopt an item with my id: its counter when first seen. A change
    /// means another live process has my id.
    watching: Option<u64>,
    observer: Observer,
    /// The leases held, as last written or seen (the counter is the next write's condition).
    held: BTreeMap<String, Lease>,
    /// When the last heartbeat that succeeded was sent.
    beat_ok_at: Option<Duration>,
    /// Leases free or expired as this worker saw them, and since when.
    available_since: BTreeMap<String, Duration>,
    /// Scans since this worker's item was first written. It takes nothing in the first: workers
    /// started together (a deploy) then see each other and share the shards at once, instead of
    /// the first taking all and the others stealing them back one per cycle.
    scans_registered: u32,
}

impl Core {
    pub fn new(id: impl Into<String>, host: impl Into<String>, pid: u32, settings: Settings) -> Core {
        Core {
            settings,
            me: Worker { id: id.into(), counter: 0, host: host.into(), pid, positions: BTreeMap::new() },
            registered: false,
            wrote_once: false,
            pending: None,
            watching: None,
            observer: Observer::new(),
            held: BTreeMap::new(),
            beat_ok_at: None,
            available_since: BTreeMap::new(),
            scans_registered: 0,
        }
    }

    pub fn id(&self) -> &str {
        &self.me.id
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The leases held, as last written or seen.
    pub fn held(&self) -> &BTreeMap<String, Lease> {
        &self.held
    }

    /// The shards held and the epoch of each.
    pub fn epochs(&self) -> BTreeMap<String, u64> {
        self.held.iter().map(|(shard, lease)| (shard.clone(), lease.epoch)).collect()
    }

    /// Position hints published with the next heartbeat.
    pub fn set_positions(&mut self, positions: BTreeMap<String, String>) {
        self.me.positions = positions;
    }

    /// Whether to beat in the cycle starting at `now`: every beat interval, and every cycle
    /// while the worker's item is not known to be written.
    pub fn beat_due(&self, now: Duration) -> bool {
        let half_cycle = self.settings.cycle() / 2;
        !self.registered || self.beat_ok_at.is_none_or(|at| now.saturating_sub(at) + half_cycle >= self.settings.beat_interval())
    }

    /// The next heartbeat write: the worker item with its counter one higher.
    pub fn beat(&self) -> Change {
        let mut next = self.me.clone();
        let expect = if self.registered {
            next.counter += 1;
            Expect::Counter(self.me.counter)
        } else {
            Expect::Absent
        };
        Change { kind: ChangeKind::Create, key: Key::Worker(next.id.clone()), item: Some(Item::Worker(next)), expect }
    }

    /// What came of the heartbeat sent at `sent_at`: `Some(true)` written, `Some(false)` its
    /// condition failed, `None` unknown (the store failed). A heartbeat that did not surely
    /// land is settled by the next scan: finding its counter there means it did.
    pub fn beat_done(&mut self, beat: &Change, sent_at: Duration, outcome: Option<bool>) {
        let Some(Item::Worker(written)) = &beat.item else { return };
        if outcome == Some(true) {
            self.me.counter = written.counter;
            self.registered = true;
            self.wrote_once = true;
            self.pending = None;
            self.beat_ok_at = Some(sent_at);
        } else {
            self.pending = Some(written.counter);
        }
    }

    /// When the last heartbeat that surely landed was sent, if one did.
    pub fn beat_ok_at(&self) -> Option<Duration> {
        self.beat_ok_at
    }

    /// Whether the heartbeat is fresh enough to keep reading leases at `now`.
    pub fn beating(&self, now: Duration) -> bool {
        self.beat_ok_at.is_some_and(|at| now.saturating_sub(at) < self.settings.self_expiry())
    }

    /// Learns what a scan completed at `now` saw; returns the leases lost since the last scan
    /// and the writes this cycle makes.
    pub fn on_scan(&mut self, now: Duration, snapshot: &Snapshot) -> Result<(Vec<String>, Vec<Change>), CoreError> {
        self.observer.observe(now, snapshot);
        let mut lost = Vec::new();

        // My own item: mine as I wrote it, missing (never written, or reaped while I was
        // stopped: write it again), or written by someone else.
        match snapshot.workers.get(&self.me.id) {
            Some(record) if self.pending == Some(record.counter) => {
                // A heartbeat whose answer was lost did land.
                self.me.counter = record.counter;
                self.registered = true;
                self.wrote_once = true;
                self.pending = None;
            }
            Some(record) if self.registered && record.counter == self.me.counter => self.pending = None,
            Some(record) => {
                let silent = self.observer.silent_for(&record.id, now).unwrap_or_default();
                let changed_while_watched = self.watching.is_some_and(|c| c != record.counter);
                if !changed_while_watched && (silent >= self.settings.expiry() || !self.wrote_once && record.counter == self.me.counter) {
                    // An earlier process with my id, gone: carry on from its counter.
                    self.me.counter = record.counter;
                    self.registered = true;
                    self.pending = None;
                    self.watching = None;
                } else if self.wrote_once || changed_while_watched {
                    return Err(CoreError::IdInUse { id: record.id.clone(), host: record.host.clone(), pid: record.pid });
                } else {
                    // Wait until it has been silent for the expiry time (or errs as live).
                    self.registered = false;
                    self.watching = Some(record.counter);
                    return Ok((lost, Vec::new()));
                }
            }
            None => {
                self.registered = false;
                self.pending = None;
            }
        }

        // Leases others took from me, or that I can no longer claim to read.
        let beating = self.beating(now);
        self.held.retain(|shard, held| match snapshot.leases.get(shard) {
            Some(lease) if beating && lease.owned_by(&self.me.id) && lease.epoch == held.epoch => {
                *held = lease.clone();
                true
            }
            _ => {
                lost.push(shard.clone());
                false
            }
        });
        if !beating || !self.registered {
            return Ok((lost, Vec::new()));
        }
        self.scans_registered = self.scans_registered.saturating_add(1);
        if self.scans_registered < 2 {
            return Ok((lost, Vec::new()));
        }

        let held: BTreeSet<String> = self.held.keys().cloned().collect();
        let expiry = self.settings.expiry();
        let overdue_after = self.settings.cycle() * 2;
        let since = &self.available_since;
        let plan = plan(
            &self.me.id,
            snapshot,
            &held,
            |w| self.observer.alive(w, now, expiry),
            |shard| since.get(shard).is_some_and(|t| now.saturating_sub(*t) >= overdue_after),
        );
        let mut since: BTreeMap<String, Duration> = BTreeMap::new();
        for shard in &plan.available {
            since.insert(shard.clone(), self.available_since.get(shard).copied().unwrap_or(now));
        }
        self.available_since = since;
        let mut changes: Vec<Change> = plan.takes.iter().map(|l| self.take(l, ChangeKind::Take)).collect();
        changes.extend(plan.steal.iter().map(|l| self.take(l, ChangeKind::Steal)));
        changes.extend(self.reap(now, snapshot));
        Ok((lost, changes))
    }

    fn take(&self, seen: &Lease, kind: ChangeKind) -> Change {
        let mut next = seen.clone();
        next.owner = Some(self.me.id.clone());
        next.epoch += 1;
        next.counter += 1;
        Change { kind, key: Key::Lease(next.shard.clone()), item: Some(Item::Lease(next)), expect: Expect::Counter(seen.counter) }
    }

    /// Takes `shard` again at an epoch above `table_epoch`: the table's fence refused this
    /// worker's epoch because the table had seen it (a lease store that lost writes).
    pub fn retake_above(&self, seen: &Lease, table_epoch: u64) -> Change {
        let mut change = self.take(seen, ChangeKind::Take);
        if let Some(Item::Lease(lease)) = &mut change.item {
            lease.epoch = lease.epoch.max(table_epoch + 1);
        }
        change
    }

    /// At most one long-dead worker item that owns nothing, removed per cycle.
    fn reap(&self, now: Duration, snapshot: &Snapshot) -> Option<Change> {
        let owners: BTreeSet<&str> = snapshot.leases.values().filter_map(|l| l.owner.as_deref()).collect();
        snapshot
            .workers
            .values()
            .filter(|w| w.id != self.me.id && !owners.contains(w.id.as_str()))
            .find(|w| self.observer.silent_for(&w.id, now).is_some_and(|s| s >= self.settings.reap_after()))
            .map(|w| Change { kind: ChangeKind::Reap, key: Key::Worker(w.id.clone()), item: None, expect: Expect::Counter(w.counter) })
    }

    /// Records what came of a change; a take that succeeded is held from now on.
    pub fn applied(&mut self, change: &Change, ok: bool) {
        let Key::Lease(shard) = &change.key else { return };
        match (change.kind, ok, &change.item) {
            (ChangeKind::Take | ChangeKind::Steal, true, Some(Item::Lease(lease))) => {
                self.held.insert(shard.clone(), lease.clone());
            }
            (ChangeKind::Release | ChangeKind::End, _, _) => {
                // Gone either way: on a conflict someone else owns it now.
                self.held.remove(shard);
            }
            _ => {}
        }
    }

    /// Drops every lease if the heartbeat has failed too long (the store is unreachable, or a
    /// scan keeps failing): others may take them from one cycle later. Returns those dropped.
    pub fn check_beating(&mut self, now: Duration) -> Vec<String> {
        if self.beating(now) || self.held.is_empty() {
            return Vec::new();
        }
        std::mem::take(&mut self.held).into_keys().collect()
    }

    /// Drops every lease at once, without a write: the worker's own heartbeat went too long
    /// without landing (judged apart from the cycle, see `coordinator.rs`). Returns those dropped.
    pub fn give_up(&mut self) -> Vec<String> {
        std::mem::take(&mut self.held).into_keys().collect()
    }

    /// Stops reading `shard` without a write: the table fenced it for a newer owner.
    pub fn forget(&mut self, shard: &str) {
        self.held.remove(shard);
    }

    /// Creates leases for listed shards that have none. A child's lease waits until each of
    /// its listed parents has one: a parent missing from the store counts as ended.
    pub fn sync(&self, snapshot: &Snapshot, shards: &[ShardInfo]) -> Vec<Change> {
        let listed: BTreeSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
        shards
            .iter()
            .filter(|s| !snapshot.leases.contains_key(&s.id))
            .filter(|s| s.parents.iter().all(|p| !listed.contains(p.as_str()) || snapshot.leases.contains_key(p)))
            .map(|s| Change {
                kind: ChangeKind::Create,
                key: Key::Lease(s.id.clone()),
                item: Some(Item::Lease(Lease::new(s.id.clone(), s.parents.clone()))),
                expect: Expect::Absent,
            })
            .collect()
    }

    /// Ends a held lease whose shard was read to its end and committed.
    pub fn end(&self, shard: &str, checkpoint: Option<String>) -> Option<Change> {
        self.let_go(shard, checkpoint, ChangeKind::End)
    }

    /// Releases a held lease (graceful shutdown, after the final commit).
    pub fn release(&self, shard: &str, checkpoint: Option<String>) -> Option<Change> {
        self.let_go(shard, checkpoint, ChangeKind::Release)
    }

    fn let_go(&self, shard: &str, checkpoint: Option<String>, kind: ChangeKind) -> Option<Change> {
        let held = self.held.get(shard)?;
        let mut next = held.clone();
        next.counter = held.counter + 1;
        next.checkpoint = checkpoint.or(next.checkpoint);
        match kind {
            ChangeKind::End => next.ended = true,
            _ => next.owner = None,
        }
        Some(Change { kind, key: Key::Lease(shard.to_string()), item: Some(Item::Lease(next)), expect: Expect::Counter(held.counter) })
    }

    /// Removes this worker's item (after releasing its leases).
    pub fn unregister(&self) -> Change {
        Change { kind: ChangeKind::Reap, key: Key::Worker(self.me.id.clone()), item: None, expect: Expect::Counter(self.me.counter) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::apply_put;

    fn at(seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds)
    }

    /// Writes `change` to `store` as a store would; true if its condition held.
    fn write(store: &mut Snapshot, change: &Change) -> bool {
        apply_put(store, change.item.as_ref().expect("a put"), change.expect).is_ok()
    }

    fn registered(store: &mut Snapshot) -> Core {
        let mut core = Core::new("w", "host", 1, Settings::default());
        let beat = core.beat();
        let ok = write(store, &beat);
        core.beat_done(&beat, at(0.0), Some(ok));
        core.on_scan(at(0.1), store).expect("scan");
        core
    }

    #[test]
    fn a_heartbeat_whose_answer_was_lost_is_recognised_as_mine() {
        let mut store = Snapshot::default();
        let mut core = registered(&mut store);
        // It landed, but the store's answer never came (or a retry was told "conflict").
        let beat = core.beat();
        assert!(write(&mut store, &beat));
        core.beat_done(&beat, at(2.0), None);
        core.on_scan(at(2.1), &store).expect("not another process: the write was mine");
        let next = core.beat();
        assert!(write(&mut store, &next), "the next beat expects the counter that landed");
        core.beat_done(&next, at(4.0), Some(true));
        // And one that never landed: the next beat still expects the stored counter.
        let lost = core.beat();
        core.beat_done(&lost, at(6.0), None);
        core.on_scan(at(6.1), &store).expect("scan");
        let after = core.beat();
        assert!(write(&mut store, &after));
    }

    #[test]
    fn a_second_live_process_with_my_id_is_refused() {
        let mut store = Snapshot::default();
        let mut live = registered(&mut store);
        let mut newcomer = Core::new("w", "other-host", 2, Settings::default());
        let beat = newcomer.beat();
        assert!(!write(&mut store, &beat), "the id is taken");
        newcomer.beat_done(&beat, at(1.0), Some(false));
        assert!(newcomer.on_scan(at(1.1), &store).expect("waits").1.is_empty());
        let live_beat = live.beat();
        assert!(write(&mut store, &live_beat));
        live.beat_done(&live_beat, at(2.0), Some(true));
        let err = newcomer.on_scan(at(2.1), &store).expect_err("the item changed while watched");
        assert!(err.to_string().contains("in use by another live process"), "{err}");
    }

    #[test]
    fn an_earlier_process_with_my_id_is_adopted_once_silent() {
        let mut store = Snapshot::default();
        let _dead = registered(&mut store);
        let mut restarted = Core::new("w", "host", 3, Settings::default());
        assert!(restarted.on_scan(at(100.0), &store).expect("waits").1.is_empty());
        restarted.on_scan(at(100.0 + 8.0), &store).expect("adopts after the expiry");
        let beat = restarted.beat();
        assert!(write(&mut store, &beat), "beats on the adopted counter");
    }

    #[test]
    fn a_worker_that_cannot_beat_drops_its_leases() {
        let mut store = Snapshot::default();
        let mut core = registered(&mut store);
        let lease = Lease::new("s", vec![]);
        store.leases.insert("s".into(), lease.clone());
        let take = core.take(&lease, ChangeKind::Take);
        assert!(write(&mut store, &take));
        core.applied(&take, true);
        assert!(core.check_beating(at(1.0)).is_empty());
        assert_eq!(core.check_beating(at(7.5)), ["s"], "self-expiry is expiry less a cycle: 7 s");
        assert!(core.held().is_empty());
    }

    #[test]
    fn a_childs_lease_waits_for_its_parents_lease() {
        let core = Core::new("w", "host", 1, Settings::default());
        let shards = [ShardInfo { id: "p".into(), parents: vec![] }, ShardInfo { id: "c".into(), parents: vec!["p".into()] }];
        let created: Vec<Key> = core.sync(&Snapshot::default(), &shards).into_iter().map(|c| c.key).collect();
        assert_eq!(created, [Key::Lease("p".into())]);
        let mut store = Snapshot::default();
        store.leases.insert("p".into(), Lease::new("p", vec![]));
        let created: Vec<Key> = core.sync(&store, &shards).into_iter().map(|c| c.key).collect();
        assert_eq!(created, [Key::Lease("c".into())]);
    }
}
