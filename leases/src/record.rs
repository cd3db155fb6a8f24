//! What a lease store holds: one item per shard ([`Lease`]), one per worker ([`Worker`]) and
//! one that says which source and table the leases serve ([`Scope`]).
//!
//! Every item carries a `counter`, its version: each write sets it one higher and is
//! conditional on the value the writer read ([`crate::Expect`]), so no two writers can both
//! change the same item from the same state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One shard's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The shard's id as its source names it (`shardId-000000000003`, `0003` for the log).
    pub shard: String,
    /// The worker holding the lease; `None` when released or never taken.
    pub owner: Option<String>,
    /// Bumped by every take. The table's fence for the shard carries it, so a commit of an
    /// earlier owner is refused once the new owner has fenced.
    pub epoch: u64,
    /// The item's version (see the module docs).
    pub counter: u64,
    /// Shards this one was split or merged from: it is taken only after they have ended.
    pub parents: Vec<String>,
    /// Read to its end and committed (a closed Kinesis parent after a reshard).
    pub ended: bool,
    /// Where the last owner got to, written when it lets the lease go. A hint for lag metrics
    /// and operators: the table's commits are the truth a new owner resumes from.
    pub checkpoint: Option<String>,
}

impl Lease {
    /// A lease nobody has taken yet.
    pub fn new(shard: impl Into<String>, parents: Vec<String>) -> Lease {
        Lease { shard: shard.into(), owner: None, epoch: 0, counter: 0, parents, ended: false, checkpoint: None }
    }

    pub fn owned_by(&self, worker: &str) -> bool {
        self.owner.as_deref() == Some(worker)
    }
}

/// A worker: a process that takes leases. Its `counter` is its heartbeat: others judge it alive
/// while they see the counter change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    pub id: String,
    pub counter: u64,
    /// For operators (`kappa-consumer workers`): where the worker runs.
    pub host: String,
    pub pid: u32,
    /// Shards it reads and the position it got to (a hint, refreshed with the heartbeat at no
    /// extra write).
    pub positions: BTreeMap<String, String>,
}

/// What a lease table serves: leases of one source read into one table. A second pipeline
/// pointed at the same lease table would share out shards it does not read, so it is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub source: String,
    pub table: String,
    pub counter: u64,
}

/// The key of an item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Lease(String),
    Worker(String),
    Scope,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Lease(shard) => write!(f, "lease of shard {shard}"),
            Key::Worker(id) => write!(f, "worker {id}"),
            Key::Scope => f.write_str("scope"),
        }
    }
}

/// One item of any kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Lease(Lease),
    Worker(Worker),
    Scope(Scope),
}

impl Item {
    pub fn key(&self) -> Key {
        match self {
            Item::Lease(lease) => Key::Lease(lease.shard.clone()),
            Item::Worker(worker) => Key::Worker(worker.id.clone()),
            Item::Scope(_) => Key::Scope,
        }
    }

    pub fn counter(&self) -> u64 {
        match self {
            Item::Lease(lease) => lease.counter,
            Item::Worker(worker) => worker.counter,
            Item::Scope(scope) => scope.counter,
        }
    }
}

/// Every item of a store, as one read saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub leases: BTreeMap<String, Lease>,
    pub workers: BTreeMap<String, Worker>,
    pub scope: Option<Scope>,
}

impl Snapshot {
    pub fn insert(&mut self, item: Item) {
        match item {
            Item::Lease(lease) => {
                self.leases.insert(lease.shard.clone(), lease);
            }
            Item::Worker(worker) => {
                self.workers.insert(worker.id.clone(), worker);
            }
            Item::Scope(scope) => self.scope = Some(scope),
        }
    }

    pub fn remove(&mut self, key: &Key) {
        match key {
            Key::Lease(shard) => {
                self.leases.remove(shard);
            }
            Key::Worker(id) => {
                self.workers.remove(id);
            }
            Key::Scope => self.scope = None,
        }
    }

    pub fn counter_of(&self, key: &Key) -> Option<u64> {
        match key {
            Key::Lease(shard) => self.leases.get(shard).map(|l| l.counter),
            Key::Worker(id) => self.workers.get(id).map(|w| w.counter),
            Key::Scope => self.scope.as_ref().map(|s| s.counter),
        }
    }
}
