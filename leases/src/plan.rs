//! Which leases a worker takes in one cycle: a pure function of what it saw, so the runtime
//! and the simulation run the same decisions.
//!
//! KCL's balancing, improved where its issues show it falls short (#1247):
//! - only *eligible* leases count: not ended, and every parent ended (children after parents);
//! - the target is ⌈eligible / live workers⌉ — alive as this worker's own observations say;
//! - free and expired leases are taken first, up to the target; one left for two cycles
//!   (every worker at its target by its own count, or the only ones below it still think the
//!   owner alive) is taken beyond the target: a shard read now beats a balance kept, and the
//!   steals below restore the balance;
//! - then at most one steal per cycle, from the most loaded worker only, and only when that
//!   worker is above the target, or at it while this one is two or more below: a steal never
//!   leaves the victim below the thief, so counts settle at ⌊n/w⌋ or ⌈n/w⌉ and stay there;
//! - leases are tried in an order hashed from the worker's id, so workers starting together
//!   reach for different leases instead of all racing for the first.

use std::collections::{BTreeMap, BTreeSet};

use crate::record::{Lease, Snapshot};

/// What to do this cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Free or expired leases to take, as seen (the take is conditional on their counter).
    pub takes: Vec<Lease>,
    /// One lease of a live, over-loaded worker to take.
    pub steal: Option<Lease>,
    /// Every lease free or expired as this worker sees it (taken or not).
    pub available: Vec<String>,
}

/// Whether a lease may be read now: not ended, and every parent it still has a lease for ended.
pub fn eligible(lease: &Lease, snapshot: &Snapshot) -> bool {
    !lease.ended && lease.parents.iter().all(|p| snapshot.leases.get(p).is_none_or(|parent| parent.ended))
}

/// Plans a cycle for worker `me`. `alive` says whether another worker is alive as `me`
/// observed; `held` are the leases `me` holds and reads (a lease the store says `me` owns but
/// that is not held — left by an earlier process with the same id — is taken again, with a new
/// epoch, like an expired one). `overdue` says whether a lease has been available too long.
pub fn plan(me: &str, snapshot: &Snapshot, held: &BTreeSet<String>, alive: impl Fn(&str) -> bool, overdue: impl Fn(&str) -> bool) -> Plan {
    let eligible: Vec<&Lease> = snapshot.leases.values().filter(|l| eligible(l, snapshot)).collect();
    if eligible.is_empty() {
        return Plan::default();
    }
    // Owners without a worker item count too, while the observer still gives them time.
    let owners = snapshot.leases.values().filter_map(|l| l.owner.as_deref());
    let mut live: BTreeSet<&str> = snapshot.workers.keys().map(String::as_str).chain(owners).filter(|w| *w != me && alive(w)).collect();
    live.insert(me);
    let target = eligible.len().div_ceil(live.len());

    let mut counts: BTreeMap<&str, usize> = live.iter().map(|w| (*w, 0)).collect();
    let mut available = Vec::new();
    for lease in &eligible {
        match lease.owner.as_deref() {
            Some(owner) if owner == me && held.contains(&lease.shard) => *counts.get_mut(me).expect("me") += 1,
            Some(owner) if owner != me && live.contains(owner) => *counts.get_mut(owner).expect("live") += 1,
            _ => available.push(*lease),
        }
    }
    let mine = counts[me];
    available.sort_by_key(|l| order(me, &l.shard));
    let names = available.iter().map(|l| l.shard.clone()).collect();
    let room = target.saturating_sub(mine);
    let takes: Vec<Lease> = available.iter().enumerate().filter(|(i, l)| *i < room || overdue(&l.shard)).map(|(_, l)| (*l).clone()).collect();
    let have = mine + takes.len();
    if have >= target {
        return Plan { takes, steal: None, available: names };
    }
    // The most loaded other worker; ties go to the smallest id, so every thief agrees.
    let victim = counts.iter().filter(|(w, _)| **w != me).max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0))).map(|(w, n)| (*w, *n));
    let steal = victim
        .filter(|(_, load)| *load > target || (*load == target && have + 1 < target))
        .and_then(|(victim, _)| eligible.iter().filter(|l| l.owned_by(victim)).min_by_key(|l| order(me, &l.shard)).map(|l| (*l).clone()));
    Plan { takes, steal, available: names }
}

/// The order in which `worker` tries leases.
fn order(worker: &str, shard: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(format!("{worker}\u{0}{shard}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Worker;

    fn world(shards: usize, owners: &[(&str, usize)], workers: &[&str]) -> Snapshot {
        let mut s = Snapshot::default();
        for w in workers {
            s.workers.insert(w.to_string(), Worker { id: w.to_string(), counter: 0, host: String::new(), pid: 0, positions: Default::default() });
        }
        let mut next = 0;
        for (owner, n) in owners {
            for _ in 0..*n {
                let mut lease = Lease::new(format!("s{next:03}"), vec![]);
                lease.owner = Some(owner.to_string());
                s.leases.insert(lease.shard.clone(), lease);
                next += 1;
            }
        }
        while next < shards {
            s.leases.insert(format!("s{next:03}"), Lease::new(format!("s{next:03}"), vec![]));
            next += 1;
        }
        s
    }

    fn held_of(s: &Snapshot, me: &str) -> BTreeSet<String> {
        s.leases.values().filter(|l| l.owned_by(me)).map(|l| l.shard.clone()).collect()
    }

    /// Runs cycles of every worker in turn, applying plans at once, until nothing changes.
    fn settle(s: &mut Snapshot, workers: &[&str]) -> usize {
        for round in 0..100 {
            let mut changed = false;
            for me in workers {
                let p = plan(me, s, &held_of(s, me), |_| true, |_| false);
                for lease in p.takes.iter().chain(p.steal.iter()) {
                    let l = s.leases.get_mut(&lease.shard).unwrap();
                    l.owner = Some(me.to_string());
                    l.epoch += 1;
                    changed = true;
                }
            }
            if !changed {
                return round;
            }
        }
        panic!("no balance after 100 rounds: {:?}", counts(s));
    }

    fn counts(s: &Snapshot) -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        for l in s.leases.values() {
            *c.entry(l.owner.clone().unwrap_or_default()).or_insert(0) += 1;
        }
        c
    }

    #[test]
    fn eight_shards_settle_three_three_two_over_three_workers() {
        let workers = ["a", "b", "c"];
        let mut s = world(8, &[], &workers);
        settle(&mut s, &workers);
        let mut loads: Vec<usize> = counts(&s).into_values().collect();
        loads.sort();
        assert_eq!(loads, [2, 3, 3]);
    }

    #[test]
    fn a_new_worker_steals_one_per_cycle_from_the_most_loaded_only() {
        let mut s = world(8, &[("a", 5), ("b", 3)], &["a", "b", "c"]);
        let p = plan("c", &s, &BTreeSet::new(), |_| true, |_| false);
        assert!(p.takes.is_empty());
        assert!(p.steal.as_ref().unwrap().owned_by("a"), "steals from the most loaded: {p:?}");
        let rounds = settle(&mut s, &["a", "b", "c"]);
        assert!(rounds <= 3, "{rounds} rounds");
        let loads = counts(&s);
        assert!(loads.values().all(|n| *n == 2 || *n == 3), "{loads:?}");
    }

    #[test]
    fn balanced_counts_never_steal() {
        // 10 leases over 4 workers: 3/3/2/2 is balanced; nobody steals.
        let s = world(10, &[("a", 3), ("b", 3), ("c", 2), ("d", 2)], &["a", "b", "c", "d"]);
        for me in ["a", "b", "c", "d"] {
            let p = plan(me, &s, &held_of(&s, me), |_| true, |_| false);
            assert!(p.takes.is_empty() && p.steal.is_none(), "{me}: {p:?}");
        }
    }

    #[test]
    fn a_lease_left_available_too_long_is_taken_beyond_the_target() {
        // b is at its target (⌈4/2⌉ = 2) and "dead" expired: its lease goes to b once overdue.
        let s = world(4, &[("a", 1), ("b", 2), ("dead", 1)], &["a", "b", "dead"]);
        let alive = |w: &str| w != "dead";
        assert!(plan("b", &s, &held_of(&s, "b"), alive, |_| false).takes.is_empty());
        let p = plan("b", &s, &held_of(&s, "b"), alive, |_| true);
        assert_eq!(p.takes.len(), 1);
        assert!(p.takes[0].owned_by("dead"));
    }

    #[test]
    fn expired_leases_are_taken_before_any_steal() {
        let s = world(6, &[("dead", 3), ("a", 3)], &["dead", "a", "b"]);
        let p = plan("b", &s, &BTreeSet::new(), |w| w != "dead", |_| false);
        assert_eq!(p.takes.len(), 3, "target ⌈6/2⌉ = 3, all from the dead worker: {p:?}");
        assert!(p.takes.iter().all(|l| l.owned_by("dead")));
        assert!(p.steal.is_none());
    }

    #[test]
    fn children_wait_for_their_parents_to_end() {
        let mut s = world(1, &[], &["a"]);
        s.leases.insert("child".into(), Lease::new("child", vec!["s000".into()]));
        let p = plan("a", &s, &BTreeSet::new(), |_| true, |_| false);
        assert_eq!(p.takes.iter().map(|l| l.shard.as_str()).collect::<Vec<_>>(), ["s000"]);
        s.leases.get_mut("s000").unwrap().ended = true;
        let p = plan("a", &s, &BTreeSet::new(), |_| true, |_| false);
        assert_eq!(p.takes.iter().map(|l| l.shard.as_str()).collect::<Vec<_>>(), ["child"]);
    }

    #[test]
    fn a_lease_left_by_an_earlier_process_with_my_id_is_taken_again() {
        let s = world(2, &[("a", 2)], &["a"]);
        let p = plan("a", &s, &BTreeSet::from(["s000".to_string()]), |_| true, |_| false);
        assert_eq!(p.takes.iter().map(|l| l.shard.as_str()).collect::<Vec<_>>(), ["s001"]);
    }
}
