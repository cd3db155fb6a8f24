//! Shard leases: many processes share the shards of one stream (or of the embedded log) and
//! hand them over within seconds when one dies.
//!
//! - [`store`]: the one [`LeaseStore`] trait (scan, conditional put, conditional delete) and its
//!   backends: [`store::dynamodb`] for AWS, [`store::local`] under the embedded log's directory,
//!   [`store::memory`] for tests. [`conformance`] is the suite each passes.
//! - [`core`]: one worker's protocol as a state machine without I/O; [`plan`] its balancing
//!   decisions; [`observe`] how it judges others alive on its own clock.
//! - [`coordinator`]: the protocol running on tokio, publishing the shards held.
//!
//! Leases decide who *reads* a shard. Exactly-once does not rest on them: a worker that takes a
//! shard first commits a fence to the table (the shard's `txn` at the lease's new epoch), and
//! the table refuses any later commit of the shard at an older epoch. A worker paused past the
//! failover time wakes up believing it still owns its shards; its commit is refused. The
//! simulation (`sim`, tests only) checks exactly that over many seeds.

pub mod conformance;
pub mod coordinator;
pub mod core;
pub mod observe;
pub mod plan;
pub mod record;
pub mod store;

#[cfg(test)]
mod sim;

// The tests' allocator is the programs' (see kappa-common's `memory`). With musl's malloc (the
// static test build's) the three large worlds took 93-96 s one after the other (83 s with
// mimalloc), and 150 CPU s instead of 88 on three threads, its lock contended.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use coordinator::{Coordinator, LeaseError, LeaseStats, ShardLister, WorkerConfig};
pub use core::{Settings, ShardInfo};
pub use record::{Item, Key, Lease, Scope, Snapshot, Worker};
pub use store::{Expect, LeaseStore, StoreError};
