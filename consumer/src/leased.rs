//! The consumer as one of several workers sharing a source's shards (`--leases`).
//!
//! The lease coordinator ([`kappa_leases::Coordinator`]) says which shards this worker holds;
//! the run reads exactly those, and its commits carry one fenced `txn` per held shard (see
//! `kappa_table`'s `leased.rs`). Whenever the held set changes, the run ends a session and
//! starts the next on the new set:
//! - shards gained only: the session flushes and commits what it read (a handover point), then
//!   the next session reads the new shards from where the table says they stand;
//! - a shard lost (taken by another worker, or this worker's own heartbeat too old): the
//!   session commits nothing more — its buffers are dropped and re-read from the table's
//!   positions by the next session — because a late commit would be refused by the fence
//!   anyway, whole;
//! - a commit refused by a fence: as a loss; the coordinator is told, and forgets the shard
//!   (or, if the lease store lost writes and the lease is still this worker's, takes it again
//!   above the table's epoch).
//!
//! Shutdown (SIGTERM/SIGINT, or --until-idle): the last session flushes and commits, then the
//! coordinator releases every lease and removes its worker item, so others take the shards at
//! their next scan — a rolling deploy hands over in about a cycle instead of a failover time.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use kappa_common::aws::AwsContext;
use kappa_leases::store::dynamodb::DynamoStore;
use kappa_leases::store::local::{LocalStore, dir_of_log};
use kappa_leases::{Coordinator, LeaseStore, Settings, ShardInfo, ShardLister, WorkerConfig};
use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::error::ConsumerError;
use crate::settings::{LeaseOptions, LeaseStoreConfig};

/// A worker's view of its leases while it runs.
pub struct Leases {
    pub worker_id: String,
    coordinator: Coordinator,
    held: watch::Receiver<BTreeMap<String, u64>>,
    /// Shards this worker read to their end and ended: gone from the held set, not lost.
    ended: std::collections::BTreeSet<String>,
}

/// The lease store `options` name: local leases in `local_dir` (the log's `_leases`
/// directory, or one beside it), or a DynamoDB table (created if missing).
pub fn open_store(
    runtime: &Runtime,
    options: &LeaseOptions,
    local_dir: Option<std::path::PathBuf>,
    aws: Option<&AwsContext>,
) -> Result<Arc<dyn LeaseStore>, ConsumerError> {
    Ok(match &options.store {
        LeaseStoreConfig::Local => {
            let dir = local_dir.expect("local leases are validated to come with a log source");
            Arc::new(LocalStore::open(dir).map_err(kappa_leases::LeaseError::from)?)
        }
        LeaseStoreConfig::Dynamo(name) => {
            let client = aws_sdk_dynamodb::Client::new(aws.expect("loaded for DynamoDB leases").sdk_config());
            Arc::new(runtime.block_on(DynamoStore::open(client, name)).map_err(kappa_leases::LeaseError::from)?)
        }
    })
}

/// The embedded log's shards: fixed, no parents.
pub struct FixedShards(pub Vec<String>);

#[async_trait]
impl ShardLister for FixedShards {
    async fn shards(&self) -> Result<Vec<ShardInfo>, String> {
        Ok(self.0.iter().map(|id| ShardInfo { id: id.clone(), parents: Vec::new() }).collect())
    }
}

/// A Kinesis stream's shards and their parents (`ListShards`), listed every few cycles.
pub struct KinesisShards {
    pub client: aws_sdk_kinesis::Client,
    pub stream: String,
}

#[async_trait]
impl ShardLister for KinesisShards {
    async fn shards(&self) -> Result<Vec<ShardInfo>, String> {
        let shards = crate::source::kinesis::list_stream_shards(&self.client, &self.stream).await?;
        Ok(shards.into_iter().map(|(id, parents)| ShardInfo { id, parents }).collect())
    }
}

impl Leases {
    /// Opens the lease store and starts taking part: leases come over the next cycles.
    pub fn start(
        runtime: &Runtime,
        options: &LeaseOptions,
        log_dir: Option<&std::path::Path>,
        lister: Arc<dyn ShardLister>,
        source: String,
        table: String,
        aws: Option<&AwsContext>,
    ) -> Result<Leases, ConsumerError> {
        let store = open_store(runtime, options, log_dir.map(dir_of_log), aws)?;
        Leases::start_on(runtime, store, options, lister, source, table)
    }

    /// Starts taking part in the leases of `store`, which serve `source` read into `table`.
    pub fn start_on(
        runtime: &Runtime,
        store: Arc<dyn LeaseStore>,
        options: &LeaseOptions,
        lister: Arc<dyn ShardLister>,
        source: String,
        table: String,
    ) -> Result<Leases, ConsumerError> {
        let config = WorkerConfig {
            id: options.worker_id.clone(),
            host: kappa_table::writers::host_name(),
            settings: Settings { failover: options.failover },
            source,
            table,
        };
        let coordinator = runtime.block_on(Coordinator::start(store, config, lister))?;
        let held = coordinator.held();
        tracing::info!(worker = %options.worker_id, failover = ?options.failover, "taking part in the shard leases");
        Ok(Leases { worker_id: options.worker_id.clone(), coordinator, held, ended: Default::default() })
    }

    /// The shards held now (and their epochs), marking them seen.
    pub fn held_now(&mut self) -> BTreeMap<String, u64> {
        self.held.borrow_and_update().clone()
    }

    /// The coordinator stopped (a worker id in use, say): the error it stopped with.
    pub fn failure(&mut self, runtime: &Runtime) -> Option<ConsumerError> {
        if self.held.has_changed().is_ok() {
            return None;
        }
        Some(runtime.block_on(self.coordinator.failed()).into())
    }

    /// True if the held set changed since last seen.
    pub fn changed(&self) -> bool {
        self.held.has_changed().unwrap_or(true)
    }

    /// True if every shard of `session` is still held at the same epoch, or was ended by this
    /// worker (only gains, if any).
    pub fn still_holds(&self, session: &BTreeMap<String, u64>) -> bool {
        let now = self.held.borrow();
        session.iter().all(|(shard, epoch)| now.get(shard) == Some(epoch) || self.ended.contains(shard))
    }

    /// Ends `shard`'s lease: it was read to its end (closed by resharding) and that end is
    /// committed, so its children may be taken.
    pub fn end(&mut self, runtime: &Runtime, shard: &str) -> Result<(), ConsumerError> {
        let ended = runtime.block_on(self.coordinator.end(shard, None))?;
        tracing::info!(shard, ended, "shard read to its end and committed: lease ended, its children may be taken");
        self.ended.insert(shard.to_string());
        Ok(())
    }

    /// Waits up to `wait` for the held set to change.
    pub fn wait_for_change(&mut self, runtime: &Runtime, wait: std::time::Duration) {
        let held = &mut self.held;
        let _ = runtime.block_on(async { tokio::time::timeout(wait, held.changed()).await });
    }

    /// The table refused a commit for `shards` (another worker fenced them at `epochs`).
    pub fn fenced(&self, epochs: &BTreeMap<String, Option<u64>>) -> Result<(), ConsumerError> {
        for (shard, epoch) in epochs {
            tracing::warn!(shard = %shard, table_epoch = ?epoch, "the table says another worker took this shard: no longer reading it");
            self.coordinator.fenced(shard, epoch.unwrap_or(0))?;
        }
        Ok(())
    }

    /// Where the held shards were read to, published with the next heartbeat.
    pub fn positions(&self, positions: BTreeMap<String, String>) {
        if let Err(e) = self.coordinator.positions(positions) {
            tracing::debug!(error = %e, "could not hand positions to the lease coordinator");
        }
    }

    pub fn stats(&self) -> &kappa_leases::LeaseStats {
        self.coordinator.stats()
    }

    pub fn shared_stats(&self) -> Arc<kappa_leases::LeaseStats> {
        self.coordinator.shared_stats()
    }

    /// Releases every lease and removes the worker item (after the last commit).
    pub fn shutdown(self, runtime: &Runtime) -> Result<(), ConsumerError> {
        match runtime.block_on(self.coordinator.shutdown(BTreeMap::new())) {
            // It stopped on its own (and said why): nothing to release.
            Err(kappa_leases::LeaseError::Stopped) => Ok(()),
            other => Ok(other?),
        }
    }
}
