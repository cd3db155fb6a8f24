//! The conformance suite every [`LeaseStore`] passes (as object_store's `integration.rs`): the
//! memory and local stores in their unit tests, DynamoDB against moto in the end-to-end tests.
//! A store that passes gives the protocol ([`crate::core`]) what it relies on: conditional
//! writes that exactly one of several racing writers wins, and scans that see every field.
//!
//! The functions panic with a message naming the broken rule; call them on an empty store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::coordinator::{Coordinator, LeaseError, ShardLister, WorkerConfig};
use crate::core::{Settings, ShardInfo};
use crate::record::{Item, Key, Lease, Scope, Worker};
use crate::store::{Expect, LeaseStore};

/// Runs every check on an empty store.
pub async fn run(store: &dyn LeaseStore) {
    starts_empty(store).await;
    creates_once(store).await;
    writes_are_conditional(store).await;
    deletes_are_conditional(store).await;
    keeps_every_field(store).await;
    many_items(store, 1_200).await;
}

/// Runs every check with the second handle `other` on the same store: what one writes, the
/// other reads and conflicts with.
pub async fn run_shared(one: &dyn LeaseStore, other: &dyn LeaseStore) {
    one.put(&Item::Lease(Lease::new("s", vec![])), Expect::Absent).await.expect("create through one handle");
    let seen = other.scan().await.expect("scan through the other");
    assert_eq!(seen.leases.get("s").map(|l| l.counter), Some(0), "{}: a write through one handle is seen by another", other.describe());
    let err = other.put(&Item::Lease(Lease::new("s", vec![])), Expect::Absent).await.expect_err("second create");
    assert!(err.is_conflict(), "{}: create of an existing item through another handle must conflict, got {err}", other.describe());
}

/// Races `racers` writers for one item from the same state: exactly one wins. Needs a store
/// handle that is `'static` (an `Arc`).
pub async fn one_of_racing_writers_wins(store: Arc<dyn LeaseStore>, racers: usize) {
    let base = Lease::new("raced", vec![]);
    store.put(&Item::Lease(base.clone()), Expect::Absent).await.expect("create the raced lease");
    let mut tasks = Vec::new();
    for i in 0..racers {
        let store = store.clone();
        let mut take = base.clone();
        take.owner = Some(format!("w{i}"));
        take.epoch += 1;
        take.counter += 1;
        tasks.push(tokio::spawn(async move { store.put(&Item::Lease(take), Expect::Counter(0)).await }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.expect("racer task") {
            Ok(()) => won += 1,
            Err(e) if e.is_conflict() => {}
            Err(e) => panic!("{}: a racing write failed other than by conflict: {e}", store.describe()),
        }
    }
    assert_eq!(won, 1, "{}: {racers} writers raced from counter 0; exactly one must win", store.describe());
    let after = store.scan().await.expect("scan");
    let lease = &after.leases["raced"];
    assert_eq!((lease.counter, lease.epoch), (1, 1), "{}: the winner's write is the one stored", store.describe());
}

async fn starts_empty(store: &dyn LeaseStore) {
    let snapshot = store.scan().await.expect("scan an empty store");
    assert!(
        snapshot.leases.is_empty() && snapshot.workers.is_empty() && snapshot.scope.is_none(),
        "{}: the suite needs an empty store, found {snapshot:?}",
        store.describe()
    );
}

async fn creates_once(store: &dyn LeaseStore) {
    let lease = Lease::new("shard-a", vec![]);
    store.put(&Item::Lease(lease.clone()), Expect::Absent).await.expect("create a lease");
    let err = store.put(&Item::Lease(lease), Expect::Absent).await.expect_err("create it again");
    assert!(err.is_conflict(), "{}: creating an existing item must conflict, got {err}", store.describe());
    assert_eq!(err.to_string(), "the lease of shard shard-a changed meanwhile (another worker wrote it first)");
}

async fn writes_are_conditional(store: &dyn LeaseStore) {
    let mut lease = store.scan().await.unwrap().leases["shard-a"].clone();
    let mut take = lease.clone();
    take.owner = Some("w1".into());
    take.epoch = 1;
    take.counter = 1;
    let stale = store.put(&Item::Lease(take.clone()), Expect::Counter(7)).await.expect_err("write on a stale counter");
    assert!(stale.is_conflict(), "{}: a write expecting another counter must conflict", store.describe());
    let absent = Lease::new("never-created", vec![]);
    let err = store.put(&Item::Lease(absent), Expect::Counter(0)).await.expect_err("update of an absent item");
    assert!(err.is_conflict(), "{}: a write expecting a counter on an absent item must conflict", store.describe());
    store.put(&Item::Lease(take.clone()), Expect::Counter(lease.counter)).await.expect("write on the right counter");
    lease = store.scan().await.unwrap().leases["shard-a"].clone();
    assert_eq!(lease, take, "{}: the written lease is read back whole", store.describe());
    // Releasing clears the owner: the field must disappear, not linger.
    let mut release = take.clone();
    release.owner = None;
    release.counter = 2;
    store.put(&Item::Lease(release.clone()), Expect::Counter(1)).await.expect("release");
    assert_eq!(store.scan().await.unwrap().leases["shard-a"], release, "{}: a cleared owner reads back as none", store.describe());
    assert!(!store.scan().await.unwrap().leases.contains_key("never-created"));
}

async fn deletes_are_conditional(store: &dyn LeaseStore) {
    let key = Key::Lease("shard-a".into());
    let err = store.delete(&key, Expect::Counter(99)).await.expect_err("delete on a stale counter");
    assert!(err.is_conflict(), "{}: a delete expecting another counter must conflict", store.describe());
    let err = store.delete(&key, Expect::Absent).await.expect_err("delete expecting absence");
    assert!(err.is_conflict(), "{}: a delete expecting absence of a present item must conflict", store.describe());
    store.delete(&key, Expect::Counter(2)).await.expect("delete on the right counter");
    assert!(store.scan().await.unwrap().leases.is_empty(), "{}: a deleted item is gone", store.describe());
    let err = store.delete(&key, Expect::Counter(2)).await.expect_err("delete a deleted item");
    assert!(err.is_conflict(), "{}: deleting an absent item must conflict", store.describe());
}

async fn keeps_every_field(store: &dyn LeaseStore) {
    let lease = Lease {
        shard: "shardId-000000000007/é#1".into(),
        owner: Some("host-1:4242".into()),
        epoch: u64::from(u32::MAX) + 5,
        counter: 3,
        parents: vec!["shardId-000000000001".into(), "shardId-000000000002".into()],
        ended: true,
        checkpoint: Some("49590338271490256608559692538361571095921575989136588898".into()),
    };
    store.put(&Item::Lease(lease.clone()), Expect::Absent).await.expect("create a full lease");
    let worker = Worker {
        id: "host-1:4242".into(),
        counter: 17,
        host: "host-1".into(),
        pid: 4242,
        positions: BTreeMap::from([("shardId-000000000007".to_string(), "12".to_string())]),
    };
    store.put(&Item::Worker(worker.clone()), Expect::Absent).await.expect("create a worker");
    let bare = Worker { id: "w2".into(), counter: 0, host: String::new(), pid: 0, positions: BTreeMap::new() };
    store.put(&Item::Worker(bare.clone()), Expect::Absent).await.expect("create a bare worker");
    let scope = Scope { source: "kinesis:orders".into(), table: "s3://lake/orders".into(), counter: 0 };
    store.put(&Item::Scope(scope.clone()), Expect::Absent).await.expect("create the scope");

    let snapshot = store.scan().await.expect("scan");
    assert_eq!(snapshot.leases.get(&lease.shard), Some(&lease), "{}: every lease field reads back", store.describe());
    assert_eq!(snapshot.workers.get("host-1:4242"), Some(&worker), "{}: every worker field reads back", store.describe());
    assert_eq!(snapshot.workers.get("w2"), Some(&bare), "{}: empty fields read back empty", store.describe());
    assert_eq!(snapshot.scope.as_ref(), Some(&scope), "{}: the scope reads back", store.describe());

    // Clean up for the next check.
    store.delete(&Key::Lease(lease.shard.clone()), Expect::Counter(3)).await.unwrap();
    store.delete(&Key::Worker(worker.id.clone()), Expect::Counter(17)).await.unwrap();
    store.delete(&Key::Worker(bare.id.clone()), Expect::Counter(0)).await.unwrap();
    store.delete(&Key::Scope, Expect::Counter(0)).await.unwrap();
}

/// More items than one DynamoDB scan page holds (1 MB): a scan must page through them all.
async fn many_items(store: &dyn LeaseStore, count: usize) {
    let padding = "x".repeat(1_000);
    for i in 0..count {
        let mut lease = Lease::new(format!("many-{i:05}"), vec![]);
        lease.checkpoint = Some(padding.clone());
        store.put(&Item::Lease(lease), Expect::Absent).await.expect("create many leases");
    }
    let snapshot = store.scan().await.expect("scan many");
    assert_eq!(snapshot.leases.len(), count, "{}: a scan sees every one of {count} leases", store.describe());
    for i in 0..count {
        store.delete(&Key::Lease(format!("many-{i:05}")), Expect::Counter(0)).await.unwrap();
    }
}

/// A source whose shards never change (tests and benchmarks).
pub struct FixedShards(pub Vec<ShardInfo>);

#[async_trait]
impl ShardLister for FixedShards {
    async fn shards(&self) -> Result<Vec<ShardInfo>, String> {
        Ok(self.0.clone())
    }
}

/// What [`workers_balance_fail_over_and_hand_over`] measured.
#[derive(Debug)]
pub struct Handover {
    pub balanced_after: Duration,
    pub failed_over_after: Duration,
    pub handed_over_after: Duration,
}

/// Three coordinators on the store share 8 shards 3/3/2; one abandoned (a crash) has its
/// shards taken within the failover time; one shut down hands its shards over without waiting
/// for expiry. Needs an empty store; takes a few seconds (failover 2 s).
pub async fn workers_balance_fail_over_and_hand_over(store: Arc<dyn LeaseStore>) -> Handover {
    let settings = Settings { failover: Duration::from_secs(2) };
    let shards: Vec<ShardInfo> = (0..8).map(|i| ShardInfo { id: format!("shard-{i}"), parents: vec![] }).collect();
    let lister: Arc<dyn ShardLister> = Arc::new(FixedShards(shards));
    let config = |id: &str| WorkerConfig {
        id: id.to_string(),
        host: "conformance".to_string(),
        settings,
        source: "log:/conformance".to_string(),
        table: "/lake/conformance".to_string(),
    };
    let start = |id: &str| Coordinator::start(store.clone(), config(id), lister.clone());
    let a = start("a").await.expect("start a");
    let b = start("b").await.expect("start b");
    let c = start("c").await.expect("start c");
    let describe = store.describe();

    let loads = |cs: &[&Coordinator]| {
        let mut all = BTreeSet::new();
        let mut loads = Vec::new();
        for c in cs {
            let held = c.held().borrow().clone();
            loads.push(held.len());
            // A shard may show in two views for a cycle after a steal (the victim learns at its
            // next scan; the table's fence is what keeps its commits out): count it once.
            all.extend(held.into_keys());
        }
        loads.sort();
        (loads, all.len())
    };
    let began = Instant::now();
    wait(Duration::from_secs(15), "3/3/2 over three workers", || loads(&[&a, &b, &c]) == (vec![2, 3, 3], 8)).await;
    let balanced_after = began.elapsed();
    let epochs_before = c.held().borrow().clone();

    c.abandon();
    let failed_over_after = wait(Duration::from_secs(6), "the abandoned worker's shards owned again", || loads(&[&a, &b]).1 == 8).await;
    for (shard, epoch) in &epochs_before {
        let now = a.held().borrow().get(shard).copied().or_else(|| b.held().borrow().get(shard).copied());
        assert!(now > Some(*epoch), "{describe}: {shard} was taken without a new epoch ({now:?} after {epoch})");
    }
    assert!(
        // By construction within the failover time; the rest is requests and scheduling on a
        // busy machine (moto, parallel tests).
        failed_over_after <= settings.failover + Duration::from_millis(1500),
        "{describe}: failover took {failed_over_after:?}, more than the failover time {:?}",
        settings.failover
    );
    // Balanced (4/4) before b stops: a steal racing its release would leave that lease without
    // the hint b gives (the release of a lease already taken is refused, as it must be).
    wait(Duration::from_secs(15), "4/4 over a and b", || loads(&[&a, &b]) == (vec![4, 4], 8)).await;
    let expected_b = b.held().borrow().clone();
    b.shutdown(expected_b.keys().map(|s| (s.clone(), "42".to_string())).collect()).await.expect("shutdown b");
    let handed_over_after = wait(Duration::from_secs(6), "b's shards handed to a", || loads(&[&a]).1 == 8).await;
    assert!(
        handed_over_after < settings.expiry(),
        "{describe}: a graceful handover took {handed_over_after:?}: it waited for expiry ({:?})",
        settings.expiry()
    );
    let snapshot = store.scan().await.expect("scan");
    for shard in expected_b.keys() {
        assert_eq!(snapshot.leases[shard].checkpoint.as_deref(), Some("42"), "{describe}: a released lease keeps its checkpoint hint");
    }
    assert!(!snapshot.workers.contains_key("b"), "{describe}: a worker that shut down removed its item");

    let other = WorkerConfig { table: "/lake/another".to_string(), ..config("d") };
    match Coordinator::start(store.clone(), other, lister.clone()).await {
        Err(e @ LeaseError::OtherScope { .. }) => {
            assert!(e.to_string().contains("give each pipeline its own lease table"), "{e}");
        }
        Err(e) => panic!("{describe}: another table on the same leases failed otherwise: {e}"),
        Ok(_) => panic!("{describe}: another table on the same leases was accepted"),
    }
    a.shutdown(BTreeMap::new()).await.expect("shutdown a");
    Handover { balanced_after, failed_over_after, handed_over_after }
}

async fn wait(limit: Duration, what: &str, done: impl Fn() -> bool) -> Duration {
    let began = Instant::now();
    while !done() {
        assert!(began.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    began.elapsed()
}
