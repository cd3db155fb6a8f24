//! What the shard readers have said: how far behind each shard is (the lag), whether it has
//! answered (readiness) and when it was last shown quiet (`--until-idle`).

use std::collections::HashMap;
use std::time::Instant;

/// The shards being read (drained ones leave).
#[derive(Debug)]
pub(super) struct Reading {
    shards: HashMap<String, ShardProgress>,
    /// Shard listings owed: the first, and one per drained shard whose children the
    /// coordinator has not looked for yet. Until then those shards are not in `shards`, and
    /// the stream is not caught up.
    listings_owed: usize,
}

#[derive(Debug, Default)]
struct ShardProgress {
    /// MillisBehindLatest of the last read.
    millis_behind: Option<u64>,
    /// When the last read that found nothing, with nothing behind it, was asked for: every
    /// record that arrived before then was read. Set once the shard has caught up.
    quiet_at: Option<Instant>,
}

impl Reading {
    /// Before the first listing.
    pub(super) fn new() -> Reading {
        Reading { shards: HashMap::new(), listings_owed: 1 }
    }

    /// A reader of `shard` starts.
    pub(super) fn started(&mut self, shard: &str) {
        self.shards.insert(shard.to_string(), ShardProgress::default());
    }

    /// `shard` was read to its end: its children are owed by the next listing.
    pub(super) fn drained(&mut self, shard: &str) {
        self.shards.remove(shard);
        self.listings_owed += 1;
    }

    /// A listing found the children of `owed` drained shards.
    pub(super) fn listed(&mut self, owed: usize) {
        self.listings_owed -= owed;
    }

    /// Records what a read of `shard`, asked for at `asked`, said: how far behind it is, and
    /// whether it caught up (came back empty with nothing behind).
    pub(super) fn progressed(&mut self, shard: &str, asked: Instant, millis_behind: Option<i64>, caught_up: bool) {
        if let Some(progress) = self.shards.get_mut(shard) {
            if let Some(ms) = millis_behind {
                progress.millis_behind = Some(ms.max(0) as u64);
            }
            if caught_up {
                progress.quiet_at = Some(asked);
            }
        }
    }

    /// Every shard being read has been caught up at least once, with no listing owed.
    pub(super) fn caught_up(&self) -> bool {
        self.listings_owed == 0 && self.shards.values().all(|s| s.quiet_at.is_some())
    }

    /// A read came back on every shard being read.
    pub(super) fn answered(&self) -> bool {
        !self.shards.is_empty() && self.shards.values().all(|s| s.millis_behind.is_some() || s.quiet_at.is_some())
    }

    /// The instant up to which every shard being read has shown that nothing more had
    /// arrived: the earliest of their last quiet reads. A shard whose reads fail or are
    /// refused holds it back. `None` while a shard has not shown it yet, or a listing is owed.
    pub(super) fn quiet_until(&self, now: Instant) -> Option<Instant> {
        if self.listings_owed > 0 {
            return None;
        }
        // With no shard left to read (every one drained), nothing can arrive unread: `now`.
        self.shards.values().try_fold(now, |earliest, shard| shard.quiet_at.map(|at| earliest.min(at)))
    }

    /// The largest MillisBehindLatest among the shards.
    pub(super) fn lag_millis(&self) -> u64 {
        self.shards.values().filter_map(|s| s.millis_behind).max().unwrap_or(0)
    }

    /// Per shard, sorted by id: MillisBehindLatest of its last read.
    pub(super) fn shard_lags(&self) -> Vec<(String, u64)> {
        let mut lags: Vec<(String, u64)> = self.shards.iter().map(|(id, p)| (id.clone(), p.millis_behind.unwrap_or(0))).collect();
        lags.sort();
        lags
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_stream_is_quiet_only_as_far_as_its_least_recently_quiet_shard() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut reading = Reading::new();
        reading.started("a");
        reading.started("b");
        // The first listing is still owed.
        reading.progressed("a", at(100), Some(0), true);
        reading.progressed("b", at(100), Some(0), true);
        assert_eq!(reading.quiet_until(at(150)), None);
        reading.listed(1);
        assert!(reading.caught_up());
        assert_eq!(reading.quiet_until(at(150)), Some(at(100)));

        // Shard b's reads are refused from now on (a subscription still held elsewhere): the
        // stream stays quiet only up to b's last quiet read, however long a stays quiet.
        reading.progressed("a", at(5_000), Some(0), true);
        assert_eq!(reading.quiet_until(at(5_000)), Some(at(100)));
        // A read that brought records is no proof of quiet; caught up once stays caught up.
        reading.progressed("b", at(5_100), Some(2_000), false);
        assert_eq!(reading.quiet_until(at(5_100)), Some(at(100)));
        assert!(reading.caught_up());
        reading.progressed("b", at(5_300), Some(0), true);
        assert_eq!(reading.quiet_until(at(5_300)), Some(at(5_000)));

        // b is drained: its children are owed, then read and not yet quiet.
        reading.drained("b");
        assert_eq!(reading.quiet_until(at(5_400)), None);
        reading.started("c");
        reading.listed(1);
        assert_eq!(reading.quiet_until(at(5_400)), None);
        assert!(!reading.caught_up());
        reading.progressed("c", at(5_600), Some(0), true);
        assert_eq!(reading.quiet_until(at(5_700)), Some(at(5_000)));

        // Nothing left to read: quiet now.
        reading.drained("a");
        reading.drained("c");
        reading.listed(2);
        assert_eq!(reading.quiet_until(at(6_000)), Some(at(6_000)));
    }
}
