//! Lease protocol load and timing on a DynamoDB endpoint (moto in `bench/scale-out.sh`):
//! W coordinators share S shards; prints one JSON line with the time to balance, the lease
//! store requests per hour in steady state, and the failover times over K crashes (a
//! coordinator abandoned without releasing, then a new one started in its place).
//!
//!   kappa-lease-load ENDPOINT SHARDS WORKERS SECONDS KILLS [FAILOVER_SECS]
//!
//! Credentials and region are fixed test values: point it at an emulator, not at AWS.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kappa_leases::conformance::FixedShards;
use kappa_leases::coordinator::{Coordinator, ShardLister, WorkerConfig};
use kappa_leases::store::dynamodb::DynamoStore;
use kappa_leases::{LeaseStore, Settings, ShardInfo};

fn arg(n: usize, name: &str) -> String {
    std::env::args().nth(n).unwrap_or_else(|| {
        eprintln!("usage: kappa-lease-load ENDPOINT SHARDS WORKERS SECONDS KILLS [FAILOVER_SECS] (missing {name})");
        std::process::exit(2)
    })
}

/// (all shards held, loads within ⌊n/w⌋..⌈n/w⌉).
fn state(workers: &[Coordinator], shards: usize) -> (bool, bool) {
    let mut all = BTreeSet::new();
    let mut loads = Vec::new();
    for w in workers {
        let held = w.held().borrow().clone();
        loads.push(held.len());
        all.extend(held.into_keys());
    }
    let (low, high) = (shards / workers.len(), shards.div_ceil(workers.len()));
    (all.len() == shards, all.len() == shards && loads.iter().all(|n| (low..=high).contains(n)))
}

async fn until(limit: Duration, done: impl Fn() -> bool) -> Option<Duration> {
    let began = Instant::now();
    while !done() {
        if began.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Some(began.elapsed())
}

#[tokio::main]
async fn main() {
    let endpoint = arg(1, "ENDPOINT");
    let shards: usize = arg(2, "SHARDS").parse().expect("SHARDS");
    let workers: usize = arg(3, "WORKERS").parse().expect("WORKERS");
    let seconds: u64 = arg(4, "SECONDS").parse().expect("SECONDS");
    let kills: usize = arg(5, "KILLS").parse().expect("KILLS");
    let failover = Duration::from_secs_f64(std::env::args().nth(6).map_or(10.0, |s| s.parse().expect("FAILOVER_SECS")));

    let credentials = aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "bench");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(&endpoint)
        .load()
        .await;
    let table = format!("bench-leases-{}-{shards}", std::process::id());
    let store: Arc<dyn LeaseStore> = Arc::new(DynamoStore::open(aws_sdk_dynamodb::Client::new(&config), &table).await.expect("lease table"));
    let list: Vec<ShardInfo> = (0..shards).map(|i| ShardInfo { id: format!("shardId-{i:012}"), parents: vec![] }).collect();
    let lister: Arc<dyn ShardLister> = Arc::new(FixedShards(list));
    let settings = Settings { failover };
    let mut next_id = 0;
    let mut start = || {
        next_id += 1;
        let config =
            WorkerConfig { id: format!("bench-{next_id}"), host: "bench".into(), settings, source: "kinesis:bench".into(), table: "s3://bench/table".into() };
        Coordinator::start(store.clone(), config, lister.clone())
    };
    let mut running = Vec::new();
    let began = Instant::now();
    for _ in 0..workers {
        running.push(start().await.expect("start a coordinator"));
    }
    let balanced = until(Duration::from_secs(300), || state(&running, shards).1).await.map(|_| began.elapsed());

    // Steady state: what the running coordinators ask of the store.
    let count = |cs: &[Coordinator]| {
        cs.iter().map(|c| (c.stats().writes.load(Ordering::Relaxed), c.stats().scans.load(Ordering::Relaxed))).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let before = count(&running);
    let steady = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = count(&running);
    let hours = steady.elapsed().as_secs_f64() / 3600.0;
    let writes_per_hour = (after.0 - before.0) as f64 / hours;
    let scans_per_hour = (after.1 - before.1) as f64 / hours;

    let mut failovers = Vec::new();
    for _ in 0..kills {
        let victim = running.pop().expect("a worker");
        victim.abandon();
        let taken = until(failover * 6, || state(&running, shards).0).await;
        failovers.push(taken.map_or(f64::NAN, |d| d.as_secs_f64()));
        running.push(start().await.expect("restart"));
        until(Duration::from_secs(120), || state(&running, shards).1).await;
    }
    let mut sorted: Vec<f64> = failovers.iter().copied().filter(|f| f.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied();
    let max = sorted.last().copied();
    println!(
        "{}",
        serde_json::json!({
            "shards": shards,
            "workers": workers,
            "failover_setting_s": failover.as_secs_f64(),
            "balanced_after_s": balanced.map(|d| d.as_secs_f64()),
            "writes_per_hour": writes_per_hour.round(),
            "scans_per_hour": scans_per_hour.round(),
            "requests_per_hour": (writes_per_hour + scans_per_hour).round(),
            "failover_s": failovers,
            "failover_median_s": median,
            "failover_max_s": max,
            "failovers_missed": failovers.iter().filter(|f| f.is_nan()).count(),
        })
    );
    for c in running {
        let _ = c.shutdown(Default::default()).await;
    }
}
