//! The simulated world: workers running the real [`Core`], the modelled store and table, and
//! the event queue on a virtual clock (milliseconds).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::core::{Change, ChangeKind, Core, Settings, ShardInfo};
use crate::record::{Item, Snapshot};
use crate::store::memory::{apply_delete, apply_put};

use super::config::{Config, Outcome};

mod checks;

type Ms = u64;

#[derive(Debug, Clone)]
enum StoreReq {
    Beat(Change, Duration),
    Scan,
    Change(Change, bool),
}

#[derive(Debug, Clone)]
enum TableOp {
    Fence { shard: String, epoch: u64 },
    Commit { shard: String, epoch: u64, from: u64, to: u64 },
}

#[derive(Debug, Clone)]
enum Ev {
    Tick(usize, u32),
    CommitTick(usize, u32),
    AtStore(usize, u32, StoreReq),
    FromStore(usize, u32, StoreReq, bool, Option<Arc<Snapshot>>),
    AtTable(usize, u32, TableOp),
    FromTable(usize, u32, TableOp, Option<u64>),
    Crash(usize),
    Restart(usize),
    Pause(usize, Ms),
    Split,
    Sample,
}

struct Reader {
    epoch: u64,
    next: Option<u64>,
    busy: bool,
}

struct SimWorker {
    inc: u32,
    alive: bool,
    paused_until: Ms,
    rate: f64,
    core: Core,
    in_cycle: usize,
    cycles: u64,
    /// Scans this cycle, and whether a take of this pass lost (the runtime scans again).
    passes: u32,
    raced: bool,
    readers: BTreeMap<String, Reader>,
}

struct Source {
    created: Ms,
    closed: Option<Ms>,
    parents: Vec<String>,
    children: bool,
}

#[derive(Default)]
struct TableShard {
    fence: u64,
    position: u64,
    last_commit_epoch: u64,
}

const RECORDS_PER_SEC: u64 = 20;

struct World {
    config: Config,
    settings: Settings,
    rng: StdRng,
    now: Ms,
    seq: u64,
    queue: BinaryHeap<Reverse<(Ms, u64, usize)>>,
    events: HashMap<usize, Ev>,
    store: Arc<Snapshot>,
    table: HashMap<String, TableShard>,
    sources: BTreeMap<String, Source>,
    workers: Vec<SimWorker>,
    granted: HashMap<(String, u64), (usize, u32)>,
    granted_at: HashMap<(String, u64), Ms>,
    unread_since: HashMap<String, Ms>,
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
        sources.insert(format!("shard-{i:05}"), Source { created: 0, closed: None, parents: vec![], children: false });
    }
    let workers = (0..config.workers)
        .map(|i| SimWorker {
            inc: 0,
            alive: true,
            paused_until: 0,
            rate: 1.0 + rng.random_range(-config.drift..=config.drift),
            core: Core::new(format!("w{i}"), "sim", i as u32, settings),
            in_cycle: 0,
            cycles: 0,
            passes: 0,
            raced: false,
            readers: BTreeMap::new(),
        })
        .collect();
    let bound = config.bound();
    let mut world = World {
        settings,
        rng,
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        events: HashMap::new(),
        store: Arc::new(Snapshot::default()),
        table: HashMap::new(),
        sources,
        workers,
        granted: HashMap::new(),
        granted_at: HashMap::new(),
        unread_since: HashMap::new(),
        out: Outcome {
            seed: config.seed,
            records: 0,
            commits: 0,
            crashes: 0,
            pauses: 0,
            splits: 0,
            takes: 0,
            steals: 0,
            max_unread: Duration::ZERO,
            bound,
            loads: (0, 0),
            verdict: Ok(()),
            trace_hash: 0,
        },
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

    /// A request's one-way delay: mostly a few milliseconds, sometimes slow.
    fn delay(&mut self) -> Ms {
        if self.rng.random_bool(self.config.slow_share) { self.rng.random_range(100..=Self::ms(self.config.slow_max)) } else { self.rng.random_range(1..=20) }
    }

    fn local(&self, w: usize) -> Duration {
        Duration::from_secs_f64(self.now as f64 / 1000.0 * self.workers[w].rate)
    }

    /// A local duration of worker `w` in global milliseconds.
    fn global(&self, w: usize, d: Duration) -> Ms {
        (d.as_secs_f64() * 1000.0 / self.workers[w].rate).round() as Ms
    }

    fn start(&mut self) {
        for w in 0..self.workers.len() {
            let first = self.rng.random_range(0..5_000);
            self.at(first, Ev::Tick(w, 0));
            let commit = first + self.rng.random_range(0..1_000);
            self.at(commit, Ev::CommitTick(w, 0));
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
            let length = self.rng.random_range(1_000..3 * Self::ms(self.config.failover));
            self.at(t, Ev::Pause(w, length));
        }
        for _ in 0..(self.config.split_rate * minutes).round() as usize {
            let t = self.rng.random_range(10_000..faults);
            self.at(t, Ev::Split);
        }
        self.at(0, Ev::Sample);
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
            Ev::AtStore(w, inc, req) => self.at_store(w, inc, req),
            Ev::FromStore(w, inc, req, ok, snapshot) => {
                if !self.hold(w, inc, &ev) {
                    self.store_answered(w, req, ok, snapshot);
                }
            }
            Ev::CommitTick(w, inc) => {
                if !self.hold(w, inc, &ev) {
                    self.commit_tick(w);
                }
            }
            Ev::AtTable(w, inc, op) => self.at_table(w, inc, op),
            Ev::FromTable(w, inc, op, result) => {
                if !self.hold(w, inc, &ev) {
                    self.table_answered(w, op, result);
                }
            }
            Ev::Crash(w) => self.crash(w),
            Ev::Restart(w) => self.restart(w),
            Ev::Pause(w, length) => {
                let worker = &mut self.workers[w];
                if worker.alive && worker.paused_until <= self.now {
                    worker.paused_until = self.now + length;
                    self.out.pauses += 1;
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
        let t = self.now + self.delay();
        let inc = self.workers[w].inc;
        self.at(t, Ev::AtStore(w, inc, req));
    }

    fn at_store(&mut self, w: usize, inc: u32, req: StoreReq) {
        let (ok, snapshot) = match &req {
            StoreReq::Scan => (true, Some(self.store.clone())),
            StoreReq::Beat(change, _) | StoreReq::Change(change, _) => (self.apply(w, inc, change), None),
        };
        let t = self.now + self.delay();
        self.at(t, Ev::FromStore(w, inc, req, ok, snapshot));
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

    fn store_answered(&mut self, w: usize, req: StoreReq, ok: bool, snapshot: Option<Arc<Snapshot>>) {
        match req {
            StoreReq::Beat(change, sent) => {
                self.workers[w].core.beat_done(&change, sent, Some(ok));
                self.send(w, StoreReq::Scan);
            }
            StoreReq::Scan => {
                let snapshot = snapshot.expect("scan result");
                let worker = &mut self.workers[w];
                worker.passes += 1;
                worker.raced = false;
                if worker.passes == 1 {
                    worker.cycles += 1;
                }
                let mut changes = Vec::new();
                if worker.passes == 1 && worker.cycles % 10 == 1 {
                    let shards = self.listed();
                    changes.extend(self.workers[w].core.sync(&snapshot, &shards));
                }
                let now = self.local(w);
                match self.workers[w].core.on_scan(now, &snapshot) {
                    Ok((_, planned)) => changes.extend(planned),
                    Err(e) => {
                        self.failures.push(format!("worker {w}: {e}"));
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
            StoreReq::Change(change, in_cycle) => {
                self.workers[w].core.applied(&change, ok);
                if !ok && change.kind == ChangeKind::Take {
                    self.workers[w].raced = true;
                }
                if ok
                    && matches!(change.kind, ChangeKind::Take | ChangeKind::Steal)
                    && let Some(Item::Lease(lease)) = &change.item
                {
                    self.workers[w].readers.insert(lease.shard.clone(), Reader { epoch: lease.epoch, next: None, busy: true });
                    let op = TableOp::Fence { shard: lease.shard.clone(), epoch: lease.epoch };
                    self.send_table(w, op);
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
        until.saturating_sub(source.created) * RECORDS_PER_SEC / 1000
    }

    fn send_table(&mut self, w: usize, op: TableOp) {
        let t = self.now + self.delay();
        let inc = self.workers[w].inc;
        self.at(t, Ev::AtTable(w, inc, op));
    }

    fn commit_tick(&mut self, w: usize) {
        let shards: Vec<String> = self.workers[w].readers.keys().cloned().collect();
        for shard in shards {
            let available = self.available(&shard);
            let closed = self.sources[&shard].closed.is_some();
            let reader = self.workers[w].readers.get_mut(&shard).expect("reader");
            let (Some(next), false) = (reader.next, reader.busy) else { continue };
            if next < available {
                reader.busy = true;
                let to = available.min(next + 500);
                let op = TableOp::Commit { shard, epoch: reader.epoch, from: next, to };
                self.send_table(w, op);
            } else if closed {
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

    fn at_table(&mut self, w: usize, inc: u32, op: TableOp) {
        let broken = self.config.broken_fence;
        let table = self.table.entry(op_shard(&op).to_string()).or_default();
        let result = match &op {
            TableOp::Fence { epoch, .. } => (*epoch > table.fence || broken).then(|| {
                table.fence = table.fence.max(*epoch);
                table.position
            }),
            TableOp::Commit { shard, epoch, from, to } => {
                if broken || (table.fence == *epoch && table.position == *from) {
                    if *from < table.position {
                        self.failures.push(format!(
                            "at {} ms records {from}..{} of {shard} were committed twice (by worker {w}#{inc}, epoch {epoch})",
                            self.now, table.position
                        ));
                    } else if *from > table.position {
                        self.failures.push(format!("at {} ms records {}..{from} of {shard} were skipped", self.now, table.position));
                    }
                    if *epoch < table.last_commit_epoch && !broken {
                        self.failures.push(format!(
                            "at {} ms {shard} took a commit at epoch {epoch} after one at {}: two committing owners",
                            self.now, table.last_commit_epoch
                        ));
                    }
                    table.last_commit_epoch = table.last_commit_epoch.max(*epoch);
                    self.out.records += to.saturating_sub(table.position.max(*from)) + table.position.saturating_sub(*from).min(to - from);
                    table.position = table.position.max(*to);
                    self.out.commits += 1;
                    Some(*to)
                } else {
                    None
                }
            }
        };
        let t = self.now + self.delay();
        self.at(t, Ev::FromTable(w, inc, op, result));
    }

    fn table_answered(&mut self, w: usize, op: TableOp, result: Option<u64>) {
        let shard = op_shard(&op).to_string();
        let worker = &mut self.workers[w];
        let epoch = match &op {
            TableOp::Fence { epoch, .. } | TableOp::Commit { epoch, .. } => *epoch,
        };
        let Some(reader) = worker.readers.get_mut(&shard).filter(|r| r.epoch == epoch) else { return };
        match result {
            Some(position) => {
                reader.next = Some(position);
                reader.busy = false;
                if matches!(op, TableOp::Fence { .. })
                    && let Some(since) = self.unread_since.remove(&shard)
                {
                    self.note_unread(&shard, since);
                }
            }
            None => {
                // Fenced by a newer owner: drop what was read and stop reading the shard.
                worker.readers.remove(&shard);
                worker.core.forget(&shard);
            }
        }
    }

    fn crash(&mut self, w: usize) {
        let alive = self.workers.iter().filter(|x| x.alive).count();
        let worker = &mut self.workers[w];
        if !worker.alive || alive * 2 <= self.config.workers {
            return;
        }
        worker.alive = false;
        worker.readers.clear();
        self.out.crashes += 1;
        let back = self.now + self.rng.random_range(2_000..20_000);
        self.at(back, Ev::Restart(w));
    }

    fn restart(&mut self, w: usize) {
        let same_id = self.rng.random_bool(0.5);
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
        let inc = worker.inc;
        self.at(self.now, Ev::Tick(w, inc));
        self.at(self.now + 500, Ev::CommitTick(w, inc));
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
        for half in 0..2 {
            let child = format!("{parent}.{half}");
            self.sources.insert(child, Source { created: self.now, closed: None, parents: vec![parent.clone()], children: false });
        }
        self.out.splits += 1;
    }
}

fn op_shard(op: &TableOp) -> &str {
    match op {
        TableOp::Fence { shard, .. } | TableOp::Commit { shard, .. } => shard,
    }
}
