//! The lease protocol at work: a tokio task that runs a [`Core`] against a [`LeaseStore`]
//! every cycle and publishes the shards this worker holds. The consumer and the replay read
//! [`Coordinator::held`], start and stop shard readers as it changes, and tell the
//! coordinator when a shard ended or the table fenced it.
//!
//! Shutdown, step by step (a rolling deploy hands shards over in about a cycle):
//! 1. the caller stops reading and makes its final commit;
//! 2. [`Coordinator::shutdown`] releases every lease it holds, each a conditional write that
//!    clears the owner and leaves the epoch (the next taker bumps it, fencing anything late);
//! 3. it removes its worker item, so no one waits for it to expire;
//! 4. the other workers see free leases at their next scan and take them at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::core::{Change, ChangeKind, Core, CoreError, Settings, ShardInfo};
use crate::record::{Item, Scope};
use crate::store::{Expect, LeaseStore, StoreError};

/// Lists the shards of the source the leases are for.
#[async_trait]
pub trait ShardLister: Send + Sync {
    async fn shards(&self) -> Result<Vec<ShardInfo>, String>;
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error(
        "lease store {store} holds the leases of {their_source} into {their_table}, not of {source} into {table}: \
         give each pipeline its own lease table (--leases)",
        source = ours.0, table = ours.1
    )]
    OtherScope { store: String, ours: (String, String), their_source: String, their_table: String },
    #[error("--failover {0:?} is too short: leases need at least 1 s (10 s is the default)")]
    Failover(Duration),
    #[error("the lease coordinator has stopped")]
    Stopped,
}

/// Counters for metrics and the summary.
#[derive(Debug, Default)]
pub struct LeaseStats {
    /// Shards published as held now (what the worker reads).
    pub held: AtomicU64,
    pub takes: AtomicU64,
    pub steals: AtomicU64,
    pub lost: AtomicU64,
    pub releases: AtomicU64,
    pub ends: AtomicU64,
    /// Requests to the lease store: writes (heartbeats, takes, releases) and scans.
    pub writes: AtomicU64,
    pub scans: AtomicU64,
}

/// Who this worker is.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub id: String,
    pub host: String,
    pub settings: Settings,
    /// What the leases serve (checked against, or written to, the store's scope item).
    pub source: String,
    pub table: String,
}

enum Command {
    End { shard: String, checkpoint: Option<String>, reply: oneshot::Sender<bool> },
    Fenced { shard: String, table_epoch: u64 },
    Forget { shard: String },
    Positions(BTreeMap<String, String>),
    Shutdown { checkpoints: BTreeMap<String, String>, reply: oneshot::Sender<Result<(), LeaseError>> },
}

pub struct Coordinator {
    commands: mpsc::Sender<Command>,
    held: watch::Receiver<BTreeMap<String, u64>>,
    stats: Arc<LeaseStats>,
    task: tokio::task::JoinHandle<Result<(), LeaseError>>,
}

impl Coordinator {
    /// Checks the store's scope and starts the cycle. Leases come in the following cycles.
    pub async fn start(store: Arc<dyn LeaseStore>, config: WorkerConfig, lister: Arc<dyn ShardLister>) -> Result<Coordinator, LeaseError> {
        if config.settings.failover < Duration::from_secs(1) {
            return Err(LeaseError::Failover(config.settings.failover));
        }
        claim_scope(store.as_ref(), &config.source, &config.table).await?;
        let (held_tx, held) = watch::channel(BTreeMap::new());
        let (commands, rx) = mpsc::channel(64);
        let stats = Arc::new(LeaseStats::default());
        let core = Core::new(config.id.clone(), config.host.clone(), std::process::id(), config.settings);
        let watch = Watch {
            held: Arc::new(held_tx),
            beat_ok: Arc::new(AtomicU64::new(NEVER)),
            expired: Default::default(),
            base: Instant::now(),
            stats: stats.clone(),
        };
        let watchdog = tokio::spawn(watch.clone().watchdog(config.settings));
        let runner = Runner { store, core, lister, watch, stats: stats.clone() };
        let task = tokio::spawn(async move {
            let ended = runner.run(rx).await;
            watchdog.abort();
            ended
        });
        Ok(Coordinator { commands, held, stats, task })
    }

    /// The shards held and their epochs; changes whenever a lease is taken or lost.
    pub fn held(&self) -> watch::Receiver<BTreeMap<String, u64>> {
        self.held.clone()
    }

    pub fn stats(&self) -> &LeaseStats {
        &self.stats
    }

    /// The counters, to read after the coordinator is gone (metrics).
    pub fn shared_stats(&self) -> Arc<LeaseStats> {
        self.stats.clone()
    }

    /// Marks `shard` ended (read to its end, and that end committed): its children may be taken.
    pub async fn end(&self, shard: &str, checkpoint: Option<String>) -> Result<bool, LeaseError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::End { shard: shard.to_string(), checkpoint, reply }).await?;
        rx.await.map_err(|_| LeaseError::Stopped)
    }

    /// Stops holding `shard` without a write: the table says another worker fenced it.
    pub async fn forget(&self, shard: &str) -> Result<(), LeaseError> {
        self.send(Command::Forget { shard: shard.to_string() }).await
    }

    /// The table refused this worker's fence of `shard` because it holds `table_epoch`, at or
    /// above this worker's: if the lease is still this worker's (a lease store that lost
    /// writes, e.g. a reset local store), it is taken again above the table's epoch; else it
    /// is forgotten.
    ///
    /// Never waits: a cycle stuck on a store that does not answer must not stop the caller (a
    /// consumer's session loop). With the queue full the word is dropped, and the lease is
    /// settled by the next scans (another worker's, or this one's, given up by then).
    pub fn fenced(&self, shard: &str, table_epoch: u64) -> Result<(), LeaseError> {
        self.try_send(Command::Fenced { shard: shard.to_string(), table_epoch })
    }

    /// Where each shard got to, published with the next heartbeat (lag metrics, `workers`):
    /// hints, dropped rather than waited for when the cycle is behind.
    pub fn positions(&self, positions: BTreeMap<String, String>) -> Result<(), LeaseError> {
        self.try_send(Command::Positions(positions))
    }

    fn try_send(&self, command: Command) -> Result<(), LeaseError> {
        match self.commands.try_send(command) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("the lease coordinator is behind (its store does not answer): a word to it was dropped");
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(LeaseError::Stopped),
        }
    }

    /// Releases every lease (recording `checkpoints` as hints) and removes the worker item.
    /// Call after the final commit.
    pub async fn shutdown(self, checkpoints: BTreeMap<String, String>) -> Result<(), LeaseError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Shutdown { checkpoints, reply }).await?;
        let out = rx.await.map_err(|_| LeaseError::Stopped)?;
        let _ = self.task.await;
        out
    }

    /// Stops at once without releasing anything, as a crash would: the leases stay with this
    /// worker's id until others judge it expired.
    pub fn abandon(self) {
        self.task.abort();
    }

    async fn send(&self, command: Command) -> Result<(), LeaseError> {
        self.commands.send(command).await.map_err(|_| LeaseError::Stopped)
    }

    /// The error the cycle stopped with, if it stopped.
    pub async fn failed(&mut self) -> LeaseError {
        match (&mut self.task).await {
            Ok(Err(e)) => e,
            _ => LeaseError::Stopped,
        }
    }
}

/// Writes the scope item if missing; refuses a store that serves another source or table.
pub async fn claim_scope(store: &dyn LeaseStore, source: &str, table: &str) -> Result<(), LeaseError> {
    let ours = Scope { source: source.to_string(), table: table.to_string(), counter: 0 };
    for _ in 0..3 {
        let snapshot = store.scan().await?;
        match snapshot.scope {
            Some(scope) if scope.source == source && scope.table == table => return Ok(()),
            Some(scope) => {
                return Err(LeaseError::OtherScope {
                    store: store.describe(),
                    ours: (source.to_string(), table.to_string()),
                    their_source: scope.source,
                    their_table: scope.table,
                });
            }
            None => match store.put(&Item::Scope(ours.clone()), Expect::Absent).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            },
        }
    }
    Err(LeaseError::Stopped)
}

struct Runner {
    store: Arc<dyn LeaseStore>,
    core: Core,
    lister: Arc<dyn ShardLister>,
    watch: Watch,
    stats: Arc<LeaseStats>,
}

/// What the runner publishes, and what its watchdog judges it by: a worker whose own heartbeat
/// has not landed for the self-expiry time stops reading every shard, whatever its cycle is
/// doing. A cycle waits on the store (a heartbeat, up to three scans, their takes, every tenth
/// a shard listing: each up to two cycles), so self-expiry checked at the end of a cycle came
/// several cycles late on a store that did not answer — after others had taken the shards.
#[derive(Clone)]
struct Watch {
    held: Arc<watch::Sender<BTreeMap<String, u64>>>,
    /// When the last heartbeat that landed was sent, in nanoseconds since `base` ([`NEVER`]:
    /// none yet).
    beat_ok: Arc<AtomicU64>,
    /// Set by the watchdog when it gave up the shards: the runner's core drops them too.
    expired: Arc<AtomicBool>,
    base: Instant,
    stats: Arc<LeaseStats>,
}

const NEVER: u64 = u64::MAX;

impl Watch {
    fn now(&self) -> Duration {
        self.base.elapsed()
    }

    /// Publishes the shards held (nothing once the heartbeat is too old: see [`Watch`]).
    fn publish(&self, epochs: BTreeMap<String, u64>) {
        self.stats.held.store(epochs.len() as u64, Ordering::Relaxed);
        self.held.send_if_modified(|held| {
            let changed = *held != epochs;
            *held = epochs.clone();
            changed
        });
    }

    /// Runs beside the cycle: when the last heartbeat that landed is older than the self-expiry
    /// time, publishes that no shard is held, at once.
    async fn watchdog(self, settings: Settings) {
        let expiry = settings.self_expiry();
        loop {
            let at = self.beat_ok.load(Ordering::Acquire);
            let now = self.now();
            let wake = match at {
                NEVER => now + settings.cycle(),
                at if now < Duration::from_nanos(at) + expiry => Duration::from_nanos(at) + expiry,
                _ => {
                    if !self.held.borrow().is_empty() {
                        tracing::warn!("this worker's heartbeat has not landed for {expiry:?}: stopped reading every shard before others may take them");
                        self.expired.store(true, Ordering::Release);
                        self.publish(BTreeMap::new());
                    }
                    now + settings.cycle()
                }
            };
            tokio::time::sleep_until(self.base + wake).await;
        }
    }
}

/// Shards are listed every this many cycles (Kinesis ListShards allows 100 calls/s per account).
const LIST_EVERY: u64 = 10;

impl Runner {
    fn now(&self) -> Duration {
        self.watch.now()
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) -> Result<(), LeaseError> {
        let mut ticker = tokio::time::interval(self.core.settings().cycle());
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut cycles = 0u64;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    self.cycle(cycles.is_multiple_of(LIST_EVERY)).await?;
                    cycles += 1;
                    // Also when the scans fail: a worker that cannot beat stops reading before
                    // others may take its shards.
                    let dropped = self.core.check_beating(self.now());
                    if !dropped.is_empty() {
                        tracing::warn!(shards = dropped.len(), "heartbeat failing: stopped reading every shard");
                        self.stats.lost.fetch_add(dropped.len() as u64, Ordering::Relaxed);
                        self.publish();
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::End { shard, checkpoint, reply }) => {
                        let ok = match self.core.end(&shard, checkpoint) {
                            Some(change) => {
                                let ok = self.apply(&change).await == Some(true);
                                self.core.applied(&change, ok);
                                if ok {
                                    self.stats.ends.fetch_add(1, Ordering::Relaxed);
                                }
                                ok
                            }
                            None => false,
                        };
                        self.publish();
                        let _ = reply.send(ok);
                    }
                    Some(Command::Fenced { shard, table_epoch }) => {
                        self.retake(&shard, table_epoch).await;
                        self.publish();
                    }
                    Some(Command::Forget { shard }) => {
                        self.core.forget(&shard);
                        self.stats.lost.fetch_add(1, Ordering::Relaxed);
                        self.publish();
                    }
                    Some(Command::Positions(positions)) => self.core.set_positions(positions),
                    Some(Command::Shutdown { checkpoints, reply }) => {
                        let _ = reply.send(self.shutdown(checkpoints).await);
                        return Ok(());
                    }
                    None => return Ok(()),
                },
            }
        }
    }

    async fn cycle(&mut self, list: bool) -> Result<(), LeaseError> {
        if self.core.beat_due(self.now()) {
            let beat = self.core.beat();
            let sent = self.now();
            let outcome = self.apply(&beat).await;
            self.core.beat_done(&beat, sent, outcome);
            if let Some(at) = self.core.beat_ok_at() {
                self.watch.beat_ok.store(u64::try_from(at.as_nanos()).unwrap_or(NEVER - 1), Ordering::Release);
            }
        }
        self.settle_expiry();

        // A take another worker won leaves room this cycle: scan and plan again at once (at
        // most twice), so expired leases raced for by several workers are all owned again
        // within the cycle instead of the next.
        for pass in 0..3 {
            if !self.pass(list && pass == 0).await? {
                break;
            }
        }
        self.publish();
        Ok(())
    }

    /// One scan and what follows; true if a take lost to another worker.
    async fn pass(&mut self, list: bool) -> Result<bool, LeaseError> {
        let snapshot = match tokio::time::timeout(self.core.settings().cycle() * 2, self.store.scan()).await {
            Ok(Ok(snapshot)) => snapshot,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the leases; trying again next cycle");
                return Ok(false);
            }
            Err(_) => {
                tracing::warn!("lease scan unanswered after two cycles; trying again next cycle");
                return Ok(false);
            }
        };
        self.stats.scans.fetch_add(1, Ordering::Relaxed);
        if list {
            let listed = match tokio::time::timeout(self.core.settings().cycle() * 2, self.lister.shards()).await {
                Ok(listed) => listed,
                Err(_) => Err("the shard listing was unanswered after two cycles".to_string()),
            };
            match listed {
                Ok(shards) => {
                    for change in self.core.sync(&snapshot, &shards) {
                        self.apply(&change).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list the source's shards; trying again later"),
            }
        }
        let now = self.now();
        // Said apart in the log: a loaded host whose heartbeats land late drops its shards
        // by itself (and competes for them again once it beats), which is not another
        // worker's take.
        let beating = self.core.beating(now);
        let (lost, changes) = self.core.on_scan(now, &snapshot)?;
        let mut raced = false;
        for shard in &lost {
            if beating {
                tracing::info!(shard, "lease lost to another worker");
            } else {
                tracing::info!(shard, "lease given up: this worker's own heartbeats have not landed in time; it competes for shards again once they do");
            }
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
        }
        for change in &changes {
            let ok = self.apply(change).await == Some(true);
            self.core.applied(change, ok);
            raced |= !ok && change.kind == ChangeKind::Take;
            if ok {
                let counter = match change.kind {
                    ChangeKind::Take => &self.stats.takes,
                    ChangeKind::Steal => &self.stats.steals,
                    _ => continue,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::info!(key = %change.key, kind = ?change.kind, "lease taken");
            }
        }
        Ok(raced)
    }

    /// Makes one conditional write: `Some(true)` made, `Some(false)` another worker won,
    /// `None` unknown (the store failed or did not answer within two cycles).
    async fn apply(&self, change: &Change) -> Option<bool> {
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        let write = async {
            match &change.item {
                Some(item) => self.store.put(item, change.expect).await,
                None => self.store.delete(&change.key, change.expect).await,
            }
        };
        match tokio::time::timeout(self.core.settings().cycle() * 2, write).await {
            Ok(Ok(())) => Some(true),
            Ok(Err(e)) if e.is_conflict() => Some(false),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, key = %change.key, "lease write failed");
                None
            }
            Err(_) => {
                tracing::warn!(key = %change.key, "lease write unanswered after two cycles");
                None
            }
        }
    }

    /// Takes `shard` again above the table's epoch if the store still says it is this
    /// worker's; else stops holding it.
    async fn retake(&mut self, shard: &str, table_epoch: u64) {
        let lease = match tokio::time::timeout(self.core.settings().cycle() * 2, self.store.scan()).await {
            Ok(Ok(snapshot)) => snapshot.leases.get(shard).cloned(),
            _ => None,
        };
        match lease.filter(|l| l.owned_by(self.core.id())) {
            Some(lease) => {
                let change = self.core.retake_above(&lease, table_epoch);
                let ok = self.apply(&change).await == Some(true);
                self.core.applied(&change, ok);
                if !ok {
                    self.core.forget(shard);
                }
            }
            None => self.core.forget(shard),
        }
    }

    /// If the watchdog gave the shards up, the core does too (and they count as lost).
    fn settle_expiry(&mut self) {
        if self.watch.expired.swap(false, Ordering::AcqRel) {
            let dropped = self.core.give_up();
            self.stats.lost.fetch_add(dropped.len() as u64, Ordering::Relaxed);
        }
    }

    fn publish(&mut self) {
        self.settle_expiry();
        let epochs = match self.core.beating(self.now()) {
            true => self.core.epochs(),
            false => BTreeMap::new(),
        };
        self.watch.publish(epochs);
    }

    async fn shutdown(&mut self, mut checkpoints: BTreeMap<String, String>) -> Result<(), LeaseError> {
        let shards: Vec<String> = self.core.held().keys().cloned().collect();
        for shard in shards {
            if let Some(change) = self.core.release(&shard, checkpoints.remove(&shard)) {
                let ok = self.apply(&change).await == Some(true);
                self.core.applied(&change, ok);
                if ok {
                    self.stats.releases.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.publish();
        let unregister = self.core.unregister();
        self.apply(&unregister).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Settings;

    /// Issue 60, 6: self-expiry runs on a timer of its own. A heartbeat older than the
    /// self-expiry time empties the published set at once, whatever the cycle is waiting for;
    /// a fresh one keeps it.
    #[tokio::test(start_paused = true)]
    async fn the_watchdog_stops_reading_when_the_heartbeat_is_too_old_whatever_the_cycle_does() {
        let settings = Settings { failover: Duration::from_secs(10) };
        let (sender, held) = watch::channel(BTreeMap::from([("s".to_string(), 3u64)]));
        let watch = Watch {
            held: Arc::new(sender),
            beat_ok: Arc::new(AtomicU64::new(0)),
            expired: Default::default(),
            base: Instant::now(),
            stats: Default::default(),
        };
        let watchdog = tokio::spawn(watch.clone().watchdog(settings));
        // The last beat that landed was sent at 0: 6 s later the shard is still held …
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(held.borrow().len(), 1);
        // … a beat sent at 5 s lands: held until 12 s (the self-expiry is 7 s) …
        watch.beat_ok.store(Duration::from_secs(5).as_nanos() as u64, Ordering::Release);
        tokio::time::sleep(Duration::from_millis(5_500)).await;
        assert_eq!(held.borrow().len(), 1, "at 11.5 s");
        // … and no more after, though nothing else ran.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(held.borrow().is_empty(), "at 12.5 s");
        assert!(watch.expired.load(Ordering::Acquire), "the runner's core is told");
        watchdog.abort();
        assert_eq!(settings.self_expiry(), Duration::from_secs(7));
    }
}
