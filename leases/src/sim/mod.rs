//! A deterministic simulation of the lease protocol: the real [`Core`] of every worker, a
//! modelled lease store and table, a virtual clock, and a seeded random schedule of crashes,
//! pauses (SIGSTOP), slow writes, clock drift between hosts and shard splits. It reaches scales
//! this machine cannot run as processes (1,000 shards, 100 workers) and a failing seed replays:
//! `KAPPA_SIM_SEED=<seed> cargo test -p kappa-leases sim`.
//!
//! The model of the table is Delta's, as the consumer uses it: a worker that took a lease
//! commits a fence (refused unless its epoch is above the table's for that shard), then commits
//! batches, each refused unless the shard's fence is still its epoch and the batch starts where
//! the table's position for the shard is. Requests land after a delay, also after their sender
//! crashed, as real ones do.
//!
//! Checked: no epoch of a shard is ever granted twice; commits of a shard never go back to an
//! earlier epoch (no two committing owners); no record is committed twice or skipped; every
//! shard that may be read is read again within the bound after it stopped being read; after
//! the faults stop, the shards are balanced to ⌊n/w⌋ or ⌈n/w⌉ with no more steals; children
//! are taken only after their parents ended.

mod config;
mod world;

#[cfg(test)]
mod tests;

pub(crate) use config::{Config, Outcome};
pub(crate) use world::run;
