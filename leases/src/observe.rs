//! Judging other workers alive without trusting any clock but one's own.
//!
//! A worker's heartbeat is a counter it bumps every cycle. An observer remembers, per worker,
//! the counter it last saw and when (on its own monotonic clock) it first saw that value; the
//! worker is expired once the value has not changed for the expiry time as *this observer*
//! measures it. Hosts' wall clocks never enter, so a host whose clock is off, stepped or drifting
//! cannot make another's leases look expired (KCL compares lease counters the same way).
//!
//! A worker the observer has never seen change gets the benefit of the doubt for one expiry
//! time from when it was first seen: a fresh observer takes nothing for expired until it has
//! watched for that long.

use std::collections::HashMap;
use std::time::Duration;

use crate::record::Snapshot;

#[derive(Debug, Default, Clone)]
pub struct Observer {
    /// Worker id → (counter seen, when first seen with that counter).
    seen: HashMap<String, (u64, Duration)>,
    /// Owners named by leases that have no worker item: since when they are missing.
    missing: HashMap<String, Duration>,
}

impl Observer {
    pub fn new() -> Observer {
        Observer::default()
    }

    /// Records what a scan that completed at `now` saw.
    pub fn observe(&mut self, now: Duration, snapshot: &Snapshot) {
        for worker in snapshot.workers.values() {
            match self.seen.get_mut(&worker.id) {
                Some((counter, _)) if *counter == worker.counter => {}
                Some(entry) => *entry = (worker.counter, now),
                None => {
                    self.seen.insert(worker.id.clone(), (worker.counter, now));
                }
            }
        }
        self.seen.retain(|id, _| snapshot.workers.contains_key(id));
        self.missing.retain(|id, _| !snapshot.workers.contains_key(id));
        for owner in snapshot.leases.values().filter_map(|l| l.owner.as_ref()) {
            if !snapshot.workers.contains_key(owner) && !self.missing.contains_key(owner) {
                self.missing.insert(owner.clone(), now);
            }
        }
        let owners: std::collections::HashSet<&String> = snapshot.leases.values().filter_map(|l| l.owner.as_ref()).collect();
        self.missing.retain(|id, _| owners.contains(id));
    }

    /// Whether `worker` is alive at `now`: its heartbeat changed (or it was first seen) less
    /// than `expiry` ago. A worker never seen at all is not alive.
    pub fn alive(&self, worker: &str, now: Duration, expiry: Duration) -> bool {
        match (self.seen.get(worker), self.missing.get(worker)) {
            (Some((_, since)), _) | (None, Some(since)) => now.saturating_sub(*since) < expiry,
            (None, None) => false,
        }
    }

    /// How long `worker`'s heartbeat has not changed, as this observer saw it.
    pub fn silent_for(&self, worker: &str, now: Duration) -> Option<Duration> {
        self.seen.get(worker).map(|(_, since)| now.saturating_sub(*since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Lease, Worker};

    fn snapshot(workers: &[(&str, u64)], owners: &[&str]) -> Snapshot {
        let mut s = Snapshot::default();
        for (id, counter) in workers {
            s.workers.insert(id.to_string(), Worker { id: id.to_string(), counter: *counter, host: String::new(), pid: 0, positions: Default::default() });
        }
        for (i, owner) in owners.iter().enumerate() {
            let mut lease = Lease::new(format!("s{i}"), vec![]);
            lease.owner = Some(owner.to_string());
            s.leases.insert(lease.shard.clone(), lease);
        }
        s
    }

    #[test]
    fn a_worker_expires_when_its_counter_stops_changing_on_the_observers_clock() {
        let expiry = Duration::from_secs(8);
        let mut o = Observer::new();
        let at = Duration::from_secs;
        o.observe(at(100), &snapshot(&[("a", 1)], &[]));
        assert!(o.alive("a", at(107), expiry), "first seen: benefit of the doubt for one expiry");
        o.observe(at(107), &snapshot(&[("a", 2)], &[]));
        assert!(o.alive("a", at(114), expiry), "changed at 107: alive until 115");
        assert!(!o.alive("a", at(115), expiry), "unchanged for 8 s: expired");
        o.observe(at(116), &snapshot(&[("a", 3)], &[]));
        assert!(o.alive("a", at(116), expiry), "a beat again revives it");
        assert!(!o.alive("nobody", at(116), expiry));
    }

    #[test]
    fn an_owner_without_a_worker_item_expires_one_expiry_after_it_was_missed() {
        let expiry = Duration::from_secs(8);
        let mut o = Observer::new();
        o.observe(Duration::from_secs(10), &snapshot(&[], &["gone"]));
        assert!(o.alive("gone", Duration::from_secs(17), expiry));
        o.observe(Duration::from_secs(18), &snapshot(&[], &["gone"]));
        assert!(!o.alive("gone", Duration::from_secs(18), expiry));
        assert!(o.silent_for("gone", Duration::from_secs(18)).is_none());
    }
}
