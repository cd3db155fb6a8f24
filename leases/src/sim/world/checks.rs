//! What a run is checked against: sampled every 250 ms of virtual time, and at the end.

use std::time::Duration;

use super::{Ms, SimWorker, World};
use crate::plan::eligible;
use crate::record::Snapshot;
use crate::sim::config::Outcome;

impl World {
    /// Whether some live, running worker reads `shard` at its lease's epoch.
    pub(super) fn read(&self, shard: &str) -> bool {
        let epoch = self.store.leases.get(shard).map_or(0, |l| l.epoch);
        self.workers.iter().any(|w| w.alive && w.paused_until <= self.now && w.readers.get(shard).is_some_and(|r| r.epoch == epoch && r.next.is_some()))
    }

    pub(super) fn sample(&mut self) {
        let store = self.store.clone();
        self.check_stale_readers(&store);
        let mut unread = Vec::new();
        for lease in store.leases.values().filter(|l| eligible(l, &store)) {
            if self.read(&lease.shard) {
                if let Some(since) = self.unread_since.remove(&lease.shard) {
                    self.note_unread(&lease.shard, since);
                }
            } else {
                unread.push(lease.shard.clone());
            }
        }
        for shard in unread {
            self.unread_since.entry(shard).or_insert(self.now);
        }
        self.unread_since.retain(|shard, _| store.leases.get(shard).is_some_and(|l| eligible(l, &store)));
    }

    /// A running worker stops reading a shard soon after another took it: within two cycles
    /// (its next scans) and the slow requests on the way. (Its commits are refused anyway, by
    /// the fence; this checks that the protocol does not leave it wasting work.)
    pub(super) fn check_stale_readers(&mut self, store: &Snapshot) {
        // Its next scans (each given up after two cycles if unanswered), and slow requests.
        let bound = Self::ms(self.settings.cycle() * 4 + self.config.slow_max * 4);
        for (w, worker) in self.workers.iter().enumerate() {
            if !worker.alive || worker.paused_until > self.now {
                continue;
            }
            for (shard, reader) in &worker.readers {
                let Some(lease) = store.leases.get(shard).filter(|l| l.epoch > reader.epoch) else { continue };
                let taken = self.granted_at.get(&(shard.clone(), reader.epoch + 1)).copied().unwrap_or(self.now);
                let since = taken.max(worker.paused_until);
                if self.now.saturating_sub(since) > bound {
                    self.failures.push(format!(
                        "at {} ms worker {w} still read {shard} at epoch {} though epoch {} was taken at {taken} ms",
                        self.now, reader.epoch, lease.epoch
                    ));
                }
            }
        }
    }

    pub(super) fn note_unread(&mut self, shard: &str, since: Ms) {
        let gap = Duration::from_millis(self.now - since);
        self.out.max_unread = self.out.max_unread.max(gap);
        if gap > self.out.bound {
            self.failures.push(format!("{shard} went unread for {:.1} s from {since} ms", gap.as_secs_f64()));
        }
    }

    pub(super) fn finish(mut self) -> Outcome {
        let open: Vec<(String, Ms)> = self.unread_since.iter().map(|(s, t)| (s.clone(), *t)).collect();
        for (shard, since) in open {
            self.note_unread(&shard, since);
        }
        let store = self.store.clone();
        let live: Vec<&SimWorker> = self.workers.iter().filter(|w| w.alive).collect();
        let eligible_count = store.leases.values().filter(|l| eligible(l, &store)).count();
        let loads: Vec<usize> = live.iter().map(|w| store.leases.values().filter(|l| eligible(l, &store) && l.owned_by(w.core.id())).count()).collect();
        let (low, high) = (eligible_count / live.len(), eligible_count.div_ceil(live.len()));
        self.out.loads = (loads.iter().copied().min().unwrap_or(0), loads.iter().copied().max().unwrap_or(0));
        if loads.iter().any(|n| *n < low || *n > high) {
            self.failures.push(format!("unbalanced at the end: {eligible_count} leases over {} workers: {loads:?}", live.len()));
        }
        let quiet_since = Self::ms(self.config.faults_for) + Self::ms(self.config.quiet_for) / 2;
        let late = self.steals_at.iter().filter(|t| **t > quiet_since).count();
        if late > 0 {
            self.failures.push(format!("{late} steals in the last half of the quiet time: balance does not settle"));
        }
        for (shard, source) in &self.sources {
            // An open shard's last 30 s may still be on their way (the last chunk of a quiet
            // shard waits for its time-triggered flush).
            let behind = if source.closed.is_some() { self.available(shard) } else { self.available(shard).saturating_sub(30 * source.per_minute / 60) };
            let position = self.table.position(shard);
            if position < behind {
                self.failures.push(format!("{shard} was committed to {position} of {behind} records by the end"));
            }
        }
        self.out.records = self.table.records_committed;
        self.out.commits = self.table.commits;
        self.failures.append(&mut self.table.failures);
        self.failures.truncate(20);
        self.out.verdict = if self.failures.is_empty() { Ok(()) } else { Err(self.failures.join("\n")) };
        self.out
    }
}
