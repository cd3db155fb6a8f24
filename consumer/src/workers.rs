//! `kappa-consumer workers`: who shares a source's shards (`--leases`), what each holds, and
//! whether it is beating.
//!
//! The store is read twice, a heartbeat interval apart: a worker whose heartbeat counter moved
//! in between is alive as this machine's clock measures it (no host's wall clock is trusted,
//! as in the protocol itself).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kappa_leases::store::dynamodb::DynamoStore;
use kappa_leases::store::local::{LocalStore, dir_of_log};
use kappa_leases::{LeaseStore, Settings, Snapshot};

use crate::stdout::say;

/// Lists the workers and the shards of the lease store `leases` (`local` with `from`'s log, or
/// `dynamodb:TABLE`), judged over one heartbeat interval of `failover`.
pub fn workers(runtime: &tokio::runtime::Runtime, leases: &str, from: &str, failover: Duration, aws: &kappa_common::aws::AwsOptions) -> anyhow::Result<()> {
    let store: Arc<dyn LeaseStore> = match leases.split_once(':') {
        None if leases == "local" => {
            let path =
                from.strip_prefix("log:").with_context(|| format!("--leases local keeps the leases beside the log: give --from log:PATH, not {from}"))?;
            let dir = dir_of_log(std::path::Path::new(path));
            anyhow::ensure!(dir.exists(), "no leases beside the log {path} ({} is missing): no worker ran with --leases local there", dir.display());
            Arc::new(LocalStore::open(dir)?)
        }
        Some(("dynamodb", table)) if !table.is_empty() => {
            let context = runtime.block_on(kappa_common::aws::AwsContext::load(aws))?;
            Arc::new(runtime.block_on(DynamoStore::open(aws_sdk_dynamodb::Client::new(context.sdk_config()), table))?)
        }
        _ => anyhow::bail!("--leases {leases}: give local (beside the embedded log) or dynamodb:TABLE"),
    };
    let first = runtime.block_on(store.scan())?;
    let interval = Settings { failover }.beat_interval();
    std::thread::sleep(interval + Duration::from_millis(100));
    let second = runtime.block_on(store.scan())?;
    say!("{}", render(&store.describe(), &first, &second, interval).trim_end());
    Ok(())
}

fn render(store: &str, first: &Snapshot, now: &Snapshot, interval: Duration) -> String {
    let mut out = String::new();
    match &now.scope {
        Some(scope) => out.push_str(&format!("lease store {store}: {} into {}\n", scope.source, scope.table)),
        None => out.push_str(&format!("lease store {store}: no worker has taken part yet\n")),
    }
    let mut held: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut free = Vec::new();
    for lease in now.leases.values() {
        let label = match lease.ended {
            true => format!("{} (ended)", lease.shard),
            false => format!("{} (epoch {})", lease.shard, lease.epoch),
        };
        match &lease.owner {
            Some(owner) => held.entry(owner.as_str()).or_default().push(label),
            None => free.push(label),
        }
    }
    out.push_str(&format!("{:<24} {:<20} {:>8}  {:<28} shards\n", "worker", "host", "pid", "heartbeat"));
    for worker in now.workers.values() {
        let beating = match first.workers.get(&worker.id) {
            Some(before) if before.counter != worker.counter => "beating".to_string(),
            Some(_) => format!("silent for {interval:?} or more"),
            None => "just joined".to_string(),
        };
        let shards = held.remove(worker.id.as_str()).unwrap_or_default();
        let positions: Vec<String> = worker.positions.iter().map(|(s, p)| format!("{s}@{p}")).collect();
        out.push_str(&format!("{:<24} {:<20} {:>8}  {:<28} {} {}\n", worker.id, worker.host, worker.pid, beating, shards.len(), shards.join(", ")));
        if !positions.is_empty() {
            out.push_str(&format!("{:<24} read to {}\n", "", positions.join(", ")));
        }
    }
    // Leases whose owner has no worker item: a worker that crashed before registering, or
    // one being judged expired.
    for (owner, shards) in held {
        out.push_str(&format!("{owner:<24} {:<20} {:>8}  {:<28} {} {}\n", "?", "?", "no worker item", shards.len(), shards.join(", ")));
    }
    out.push_str(&format!(
        "{} shards, {} workers; not held: {}\n",
        now.leases.len(),
        now.workers.len(),
        if free.is_empty() { "none".to_string() } else { free.join(", ") }
    ));
    out
}
