//! The simulated world: workers running the real [`Core`], the modelled lease store and table
//! (`table.rs`), and the event queue on a virtual clock (milliseconds).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::core::{Change, ChangeKind, Core, Settings, ShardInfo};
use crate::record::{Item, Snapshot};
use crate::store::memory::{apply_delete, apply_put};

use self::reading::Reader;
use self::table::{Answer, Rules, TableModel, TableOp};
use super::config::{Config, Outcome};

mod checks;
mod reading;
mod table;

type Ms = u64;

#[derive(Debug, Clone)]
enum StoreReq {
    Beat(Change, Duration),
    Scan,
    Change(Change, bool),
}

#[derive(Debug, Clone)]
enum Ev {
    Tick(usize, u32),
    CommitTick(usize, u32),
    /// Self-expiry on a timer of its own (the coordinator's watchdog).
    Watchdog(usize, u32),
    /// The worker's writer record says it is alive, with its wall clock.
    RecordBeat(usize, u32),
    /// A lease-store request (with its id) reaching the store, its answer reaching the worker,
    /// and the worker giving up on it after two cycles (the coordinator's timeout).
    AtStore(usize, u32, u64, StoreReq),
    FromStore(usize, u32, u64, StoreReq, bool, Option<Arc<Snapshot>>),
    StoreTimeout(usize, u32, u64, StoreReq),
    /// A scan's answer, once the shard listing that goes with it ended (`true`: it answered).
    Planned(usize, u32, Arc<Snapshot>, bool),
    AtTable(usize, u32, TableOp),
    FromTable(usize, u32, TableOp, Answer),
    Crash(usize),
    Restart(usize),
    Pause(usize, Ms),
    Split,
    Sample,
}

struct SimWorker {
    inc: u32,
    alive: bool,
    paused_until: Ms,
    rate: f64,
    /// Its host's wall clock, less the true time (ms): what its writer record says.
    wall_offset: i64,
    /// The binary it runs: files it encodes have other bytes than another version's.
    version: u8,
    core: Core,
    in_cycle: usize,
    cycles: u64,
    /// Scans this cycle, and whether a take of this pass lost (the runtime scans again).
    passes: u32,
    raced: bool,
    readers: BTreeMap<String, Reader>,
    /// Lease-store requests whose answer is still awaited (not yet timed out).
    pending: std::collections::HashSet<u64>,
}

struct Source {
    created: Ms,
    closed: Option<Ms>,
    parents: Vec<String>,
    children: bool,
    /// Records a minute.
    per_minute: u64,
}

/// Records a minute on a busy shard, and on a quiet one (a tenth of them): a quiet shard's
/// new owner has nothing to commit for a long while after it took the shard.
const BUSY_PER_MINUTE: u64 = 1_200;
const QUIET_PER_MINUTE: u64 = 2;
/// How often a writer record is renewed (`kappa_table::writers::WRITER_HEARTBEAT`).
const RECORD_EVERY: Duration = Duration::from_secs(10);

struct World {
    config: Config,
    settings: Settings,
    rules: Rules,
    rng: StdRng,
    now: Ms,
    seq: u64,
    queue: BinaryHeap<Reverse<(Ms, u64, usize)>>,
    events: HashMap<usize, Ev>,
    store: Arc<Snapshot>,
    table: TableModel,
    sources: BTreeMap<String, Source>,
    workers: Vec<SimWorker>,
    granted: HashMap<(String, u64), (usize, u32)>,
    granted_at: HashMap<(String, u64), Ms>,
    unread_since: HashMap<String, Ms>,
    commit_ids: u64,
    request_ids: u64,
    out: Outcome,
    failures: Vec<String>,
    steals_at: Vec<Ms>,
}

/// Runs one seeded world to its end and checks it.
pub(crate) fn run(config: Config) -> Outcome {
    let settings = Settings { failover: config.failover };
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut sources = BTreeMap::new();
    for i in 0..config.shards {
        let per_minute = if i % 10 == 9 { QUIET_PER_MINUTE } else { BUSY_PER_MINUTE };
        sources.insert(format!("shard-{i:05}"), Source { created: 0, closed: None, parents: vec![], children: false, per_minute });
    }
    let skew = config.skew.as_millis() as i64;
    let workers = (0..config.workers)
        .map(|i| SimWorker {
            inc: 0,
            alive: true,
            paused_until: 0,
            rate: 1.0 + rng.random_range(-config.drift..=config.drift),
            wall_offset: rng.random_range(-skew..=skew),
            version: rng.random_range(0..config.versions.max(1)),
            core: Core::new(format!("w{i}"), "sim", i as u32, settings),
            in_cycle: 0,
            cycles: 0,
            passes: 0,
            raced: false,
            readers: BTreeMap::new(),
            pending: Default::default(),
        })
        .collect();
    let bound = config.bound();
    let rules = Rules { fence_on_take: config.fence_on_take, replace_files: config.replace_files, broken_fence: config.broken_fence };
    let mut world = World {
        settings,
        rules,
        rng,
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        events: HashMap::new(),
        store: Arc::new(Snapshot::default()),
        table: TableModel::default(),
        sources,
        workers,
        granted: HashMap::new(),
        granted_at: HashMap::new(),
        unread_since: HashMap::new(),
        commit_ids: 0,
        request_ids: 0,
        out: Outcome::new(config.seed, bound),
        failures: Vec::new(),
        steals_at: Vec::new(),
        config,
    };
    world.start();
    world.run_to_end();
    world.finish()
}

impl World {
    fn ms(d: Duration) -> Ms {
        d.as_millis() as Ms
    }

    fn at(&mut self, t: Ms, ev: Ev) {
        self.seq += 1;
        let id = self.seq as usize;
        self.events.insert(id, ev);
        self.queue.push(Reverse((t, self.seq, id)));
    }

    /// A request's one-way delay: mostly a few milliseconds, sometimes slow; the lease store
    /// (`store`) now and then much slower still.
    fn delay(&mut self, store: bool) -> Ms {
        if store && self.rng.random_bool(self.config.store_slow_share) {
            return self.rng.random_range(Self::ms(self.config.slow_max)..=Self::ms(self.config.store_slow_max));
        }
        if self.rng.random_bool(self.config.slow_share) { self.rng.random_range(100..=Self::ms(self.config.slow_max)) } else { self.rng.random_range(1..=20) }
    }

    fn local(&self, w: usize) -> Duration {
        Duration::from_secs_f64(self.now as f64 / 1000.0 * self.workers[w].rate)
    }

    /// Worker `w`'s wall clock (ms).
    fn wall(&self, w: usize) -> i64 {
        self.now as i64 + self.workers[w].wall_offset
    }

    /// A local duration of worker `w` in global milliseconds.
    fn global(&self, w: usize, d: Duration) -> Ms {
        (d.as_secs_f64() * 1000.0 / self.workers[w].rate).round() as Ms
    }

    fn start(&mut self) {
        for w in 0..self.workers.len() {
            let first = self.rng.random_range(0..5_000);
            self.start_worker(w, first);
        }
        let faults = Self::ms(self.config.faults_for);
        let minutes = faults as f64 / 60_000.0;
        let workers = self.workers.len() as f64;
        let total = |rate: f64| (rate * minutes * workers).round() as usize;
        for _ in 0..total(self.config.crash_rate) {
            let (w, t) = (self.rng.random_range(0..self.workers.len()), self.rng.random_range(10_000..faults));
            self.at(t, Ev::Crash(w));
        }
        for _ in 0..total(self.config.pause_rate) {
            let (w, t) = (self.rng.random_range(0..self.workers.len()), self.rng.random_range(10_000..faults));
            // Most pauses are short (a GC, a loaded host); some are long (a frozen VM), up to
            // `pause_max`, ending before the faults do.
            let longest = Self::ms(self.config.pause_max).min(faults - t).max(1_001);
            let length = match self.rng.random_bool(0.2) {
                true => self.rng.random_range(1_000..longest),
                false => self.rng.random_range(1_000..(3 * Self::ms(self.config.failover)).min(longest).max(1_001)),
            };
            self.at(t, Ev::Pause(w, length));
        }
        for _ in 0..(self.config.split_rate * minutes).round() as usize {
            let t = self.rng.random_range(10_000..faults);
            self.at(t, Ev::Split);
        }
        self.at(0, Ev::Sample);
    }

    /// The first events of worker `w`'s current run, from `t` on.
    fn start_worker(&mut self, w: usize, t: Ms) {
        let inc = self.workers[w].inc;
        self.at(t, Ev::Tick(w, inc));
        let commit = t + self.rng.random_range(0..1_000);
        self.at(commit, Ev::CommitTick(w, inc));
        self.at(t, Ev::RecordBeat(w, inc));
        if self.config.watchdog {
            self.at(t + Self::ms(self.settings.cycle()) / 2, Ev::Watchdog(w, inc));
        }
    }

    fn end(&self) -> Ms {
        Self::ms(self.config.faults_for + self.config.quiet_for)
    }

    fn run_to_end(&mut self) {
        let end = self.end();
        while let Some(Reverse((t, _, id))) = self.queue.pop() {
            if t > end {
                break;
            }
            self.now = t;
            let ev = self.events.remove(&id).expect("event");
            self.out.trace_hash = self.out.trace_hash.rotate_left(5) ^ t ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            self.handle(ev);
        }
    }

    /// The worker an event is for, if it is not to be handled now (dead or paused).
    fn hold(&mut self, w: usize, inc: u32, ev: &Ev) -> bool {
        let worker = &self.workers[w];
        if !worker.alive || worker.inc != inc {
            return true;
        }
        if worker.paused_until > self.now {
            let until = worker.paused_until;
            self.at(until, ev.clone());
            return true;
        }
        false
    }

    fn handle(&mut self, ev: Ev) {
        if let Ok(shard) = std::env::var("KAPPA_SIM_TRACE") {
            let text = format!("{ev:?}");
            if text.contains(&shard) || matches!(ev, Ev::Crash(_) | Ev::Restart(_) | Ev::Pause(..)) {
                let text: String = text.chars().take(400).collect();
                eprintln!("{:>8} {text}", self.now);
            }
        }
        match ev.clone() {
            Ev::Tick(w, inc) => {
                if self.hold(w, inc, &ev) {
                    return;
                }
                let now = self.local(w);
                if self.workers[w].core.beat_due(now) {
                    let beat = self.workers[w].core.beat();
                    self.send(w, StoreReq::Beat(beat, now));
                } else {
                    self.send(w, StoreReq::Scan);
                }
            }
            Ev::AtStore(w, inc, id, req) => self.at_store(w, inc, id, req),
            Ev::FromStore(w, inc, id, req, ok, snapshot) => {
                if !self.hold(w, inc, &ev) && self.workers[w].pending.remove(&id) {
                    self.store_answered(w, req, Some(ok), snapshot);
                }
            }
            Ev::Planned(w, inc, snapshot, listed) => {
                if !self.hold(w, inc, &ev) {
                    self.plan(w, &snapshot, listed);
                }
            }
            // Unanswered within two cycles: the outcome is unknown (the write may land later).
            Ev::StoreTimeout(w, inc, id, req) => {
                if !self.hold(w, inc, &ev) && self.workers[w].pending.remove(&id) {
                    self.store_answered(w, req, None, None);
                }
            }
            Ev::CommitTick(w, inc) => {
                if !self.hold(w, inc, &ev) {
                    self.commit_tick(w);
                }
            }
            Ev::Watchdog(w, inc) => {
                if !self.hold(w, inc, &ev) {
                    self.watchdog(w);
                }
            }
            Ev::RecordBeat(w, inc) => {
                if !self.hold(w, inc, &ev) {
                    let wall = self.wall(w);
                    self.table.records.insert((w, inc), wall);
                    let next = self.now + self.global(w, RECORD_EVERY);
                    self.at(next, Ev::RecordBeat(w, inc));
                }
            }
            Ev::AtTable(w, inc, op) => {
                let answer = self.table.apply(self.rules, w, inc, self.now, &op);
                // Now and then the answer of a commit is lost on its way back (a 500 after the
                // write, a cut connection): the worker must find out whether it was made.
                let lost = matches!(op, TableOp::Commit { .. }) && self.rng.random_bool(self.config.lost_answers);
                let t = self.now + self.delay(false);
                self.at(t, Ev::FromTable(w, inc, op, if lost { Answer::Lost } else { answer }));
            }
            Ev::FromTable(w, inc, op, answer) => {
                if !self.hold(w, inc, &ev) {
                    self.table_answered(w, op, answer);
                }
            }
            Ev::Crash(w) => self.crash(w),
            Ev::Restart(w) => self.restart(w),
            Ev::Pause(w, length) => {
                let worker = &mut self.workers[w];
                if worker.alive && worker.paused_until <= self.now {
                    worker.paused_until = self.now + length;
                    self.out.pauses += 1;
                    self.out.longest_pause = self.out.longest_pause.max(Duration::from_millis(length));
                }
            }
            Ev::Split => self.split(),
            Ev::Sample => {
                self.sample();
                let next = self.now + 250;
                self.at(next, Ev::Sample);
            }
        }
    }

    fn send(&mut self, w: usize, req: StoreReq) {
        let t = self.now + self.delay(true);
        let inc = self.workers[w].inc;
        self.request_ids += 1;
        let id = self.request_ids;
        self.workers[w].pending.insert(id);
        let timeout = self.now + self.global(w, self.settings.cycle() * 2);
        self.at(timeout, Ev::StoreTimeout(w, inc, id, req.clone()));
        self.at(t, Ev::AtStore(w, inc, id, req));
    }

    fn at_store(&mut self, w: usize, inc: u32, id: u64, req: StoreReq) {
        let (ok, snapshot) = match &req {
            StoreReq::Scan => (true, Some(self.store.clone())),
            StoreReq::Beat(change, _) | StoreReq::Change(change, _) => (self.apply(w, inc, change), None),
        };
        let t = self.now + self.delay(true);
        self.at(t, Ev::FromStore(w, inc, id, req, ok, snapshot));
    }

    /// Applies a change to the modelled store, checking what the protocol promises.
    fn apply(&mut self, w: usize, inc: u32, change: &Change) -> bool {
        let store = Arc::make_mut(&mut self.store);
        let ok = match &change.item {
            Some(item) => apply_put(store, item, change.expect).is_ok(),
            None => apply_delete(store, &change.key, change.expect).is_ok(),
        };
        if ok && let (ChangeKind::Take | ChangeKind::Steal, Some(Item::Lease(lease))) = (change.kind, &change.item) {
            self.granted_at.insert((lease.shard.clone(), lease.epoch), self.now);
            if let Some(earlier) = self.granted.insert((lease.shard.clone(), lease.epoch), (w, inc)) {
                self.failures.push(format!(
                    "at {} ms epoch {} of {} was granted twice: to worker {}#{} and {w}#{inc}",
                    self.now, lease.epoch, lease.shard, earlier.0, earlier.1
                ));
            }
            let snapshot = &*self.store;
            let taken = &snapshot.leases[&lease.shard];
            if taken.parents.iter().any(|p| snapshot.leases.get(p).is_some_and(|p| !p.ended)) {
                self.failures.push(format!("at {} ms {} was taken before its parents ended", self.now, lease.shard));
            }
            // Owned again: the gap since the last owner stopped ends here (the fence follows).
            // A taker that is itself stopped (its request landed after it was paused) opens the
            // next gap now: each fault is measured from when it struck.
            if let Some(since) = self.unread_since.remove(&lease.shard) {
                self.note_unread(&lease.shard, since);
            }
            let running = self.workers[w].alive && self.workers[w].inc == inc && self.workers[w].paused_until <= self.now;
            if !running {
                self.unread_since.insert(lease.shard.clone(), self.now);
            }
            if change.kind == ChangeKind::Steal {
                self.out.steals += 1;
                self.steals_at.push(self.now);
            } else {
                self.out.takes += 1;
            }
        }
        ok
    }

    /// What came of a lease-store request: `outcome` `None` if it timed out.
    fn store_answered(&mut self, w: usize, req: StoreReq, outcome: Option<bool>, snapshot: Option<Arc<Snapshot>>) {
        let ok = outcome == Some(true);
        match req {
            StoreReq::Beat(change, sent) => {
                self.workers[w].core.beat_done(&change, sent, outcome);
                self.send(w, StoreReq::Scan);
            }
            StoreReq::Scan => {
                // A scan unanswered: this pass ends, the next cycle scans again.
                let Some(snapshot) = snapshot else {
                    self.next_tick(w);
                    return;
                };
                let worker = &mut self.workers[w];
                worker.passes += 1;
                worker.raced = false;
                if worker.passes == 1 {
                    worker.cycles += 1;
                }
                // Every tenth cycle the source's shards are listed first: a request of its own,
                // given up after two cycles (as it was, waited for however long it took).
                if worker.passes == 1 && worker.cycles % 10 == 1 {
                    let (took, timeout) = (self.delay(true), self.global(w, self.settings.cycle() * 2));
                    let (wait, listed) = if self.config.watchdog && took > timeout { (timeout, false) } else { (took, true) };
                    let inc = self.workers[w].inc;
                    self.at(self.now + wait, Ev::Planned(w, inc, snapshot, listed));
                } else {
                    self.plan(w, &snapshot, false);
                }
            }
            StoreReq::Change(change, in_cycle) => {
                self.workers[w].core.applied(&change, ok);
                if !ok && change.kind == ChangeKind::Take {
                    self.workers[w].raced = true;
                }
                if ok
                    && matches!(change.kind, ChangeKind::Take | ChangeKind::Steal)
                    && let Some(Item::Lease(lease)) = &change.item
                {
                    self.take(w, &lease.shard, lease.epoch);
                }
                self.sync_readers(w);
                if in_cycle {
                    let worker = &mut self.workers[w];
                    worker.in_cycle -= 1;
                    if worker.in_cycle == 0 {
                        if worker.raced && worker.passes < 3 {
                            self.send(w, StoreReq::Scan);
                        } else {
                            self.next_tick(w);
                        }
                    }
                }
            }
        }
    }

    /// A scan's plan (after the shard listing, if `listed`): the core learns what it saw, the
    /// readers follow, and the cycle's writes are sent.
    fn plan(&mut self, w: usize, snapshot: &Snapshot, listed: bool) {
        let mut changes = Vec::new();
        if listed {
            let shards = self.listed();
            changes.extend(self.workers[w].core.sync(snapshot, &shards));
        }
        let now = self.local(w);
        match self.workers[w].core.on_scan(now, snapshot) {
            Ok((_, planned)) => changes.extend(planned),
            // Its id seen in use by a live process (a heartbeat of its previous run landing
            // late): the process stops with the error, and is started again.
            Err(_) => {
                self.out.refused_ids += 1;
                self.stop_worker(w);
                return;
            }
        }
        self.sync_readers(w);
        self.workers[w].in_cycle = changes.len();
        if changes.is_empty() {
            self.next_tick(w);
        }
        for change in changes {
            self.send(w, StoreReq::Change(change, true));
        }
    }

    fn next_tick(&mut self, w: usize) {
        self.workers[w].passes = 0;
        let t = self.now + self.global(w, self.settings.cycle());
        let inc = self.workers[w].inc;
        self.at(t, Ev::Tick(w, inc));
    }

    /// Readers follow the core: a lease no longer held is no longer read.
    fn sync_readers(&mut self, w: usize) {
        let worker = &mut self.workers[w];
        let held = worker.core.epochs();
        worker.readers.retain(|shard, r| held.get(shard) == Some(&r.epoch));
    }

    fn listed(&self) -> Vec<ShardInfo> {
        self.sources.iter().map(|(id, s)| ShardInfo { id: id.clone(), parents: s.parents.clone() }).collect()
    }

    fn available(&self, shard: &str) -> u64 {
        let source = &self.sources[shard];
        let until = source.closed.unwrap_or(self.now).min(self.now);
        until.saturating_sub(source.created) * source.per_minute / 60_000
    }

    fn send_table(&mut self, w: usize, op: TableOp) {
        let t = self.now + self.delay(false);
        let inc = self.workers[w].inc;
        self.at(t, Ev::AtTable(w, inc, op));
    }

    fn crash(&mut self, w: usize) {
        let alive = self.workers.iter().filter(|x| x.alive).count();
        if !self.workers[w].alive || alive * 2 <= self.config.workers {
            return;
        }
        self.out.crashes += 1;
        self.stop_worker(w);
    }

    /// The worker's process ends (killed, or stopped by an error) and is started again 2-20 s
    /// later.
    fn stop_worker(&mut self, w: usize) {
        let worker = &mut self.workers[w];
        worker.alive = false;
        worker.readers.clear();
        worker.pending.clear();
        let back = self.now + self.rng.random_range(2_000..20_000);
        self.at(back, Ev::Restart(w));
    }

    fn restart(&mut self, w: usize) {
        let same_id = self.rng.random_bool(0.5);
        // A restart may bring another version (a rolling deploy).
        let version = self.rng.random_range(0..self.config.versions.max(1));
        let worker = &mut self.workers[w];
        worker.inc += 1;
        let id = if same_id { worker.core.id().to_string() } else { format!("w{w}.{}", worker.inc) };
        worker.core = Core::new(id, "sim", w as u32, self.settings);
        worker.alive = true;
        worker.paused_until = 0;
        worker.in_cycle = 0;
        worker.cycles = 0;
        worker.passes = 0;
        worker.raced = false;
        worker.version = version;
        self.start_worker(w, self.now);
    }

    fn split(&mut self) {
        let open: Vec<String> = self.sources.iter().filter(|(_, s)| s.closed.is_none() && !s.children).map(|(id, _)| id.clone()).collect();
        if open.is_empty() {
            return;
        }
        let parent = open[self.rng.random_range(0..open.len())].clone();
        let source = self.sources.get_mut(&parent).expect("parent");
        source.closed = Some(self.now);
        source.children = true;
        let per_minute = source.per_minute;
        for half in 0..2 {
            let child = format!("{parent}.{half}");
            self.sources.insert(child, Source { created: self.now, closed: None, parents: vec![parent.clone()], children: false, per_minute });
        }
        self.out.splits += 1;
    }
}
