//! What a simulated run looks like, and what it found.

use std::fmt;
use std::time::Duration;

/// What a run looks like.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub seed: u64,
    pub shards: usize,
    pub workers: usize,
    /// How long faults are injected; then as long again without faults.
    pub faults_for: Duration,
    pub quiet_for: Duration,
    pub failover: Duration,
    /// Crashes and pauses per worker per minute.
    pub crash_rate: f64,
    pub pause_rate: f64,
    /// Shard splits per minute.
    pub split_rate: f64,
    /// Share of requests that are slow (up to `slow_max`).
    pub slow_share: f64,
    pub slow_max: Duration,
    /// Clock rates of hosts lie in 1 ± this.
    pub drift: f64,
    /// The table accepts every commit (a self-test of the checks).
    pub broken_fence: bool,
}

impl Config {
    pub(crate) fn small(seed: u64) -> Config {
        Config {
            seed,
            shards: 24,
            workers: 5,
            faults_for: Duration::from_secs(240),
            quiet_for: Duration::from_secs(120),
            failover: Duration::from_secs(10),
            crash_rate: 0.4,
            pause_rate: 0.4,
            split_rate: 1.0,
            slow_share: 0.02,
            slow_max: Duration::from_secs(2),
            drift: 0.05,
            broken_fence: false,
        }
    }

    pub(crate) fn large(seed: u64) -> Config {
        Config {
            shards: 1_000,
            workers: 100,
            faults_for: Duration::from_secs(120),
            quiet_for: Duration::from_secs(120),
            crash_rate: 0.1,
            pause_rate: 0.1,
            split_rate: 6.0,
            ..Config::small(seed)
        }
    }

    /// Within this a shard that may be read is read again: the failover time, and slow
    /// requests on the way (a beat seen late, the scan, the take, the fence).
    pub(crate) fn bound(&self) -> Duration {
        self.failover + self.slow_max * 4
    }
}

/// What a run did and found.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub seed: u64,
    pub records: u64,
    pub commits: u64,
    pub crashes: u64,
    pub pauses: u64,
    pub splits: u64,
    pub takes: u64,
    pub steals: u64,
    /// Longest time a readable shard went unread, and the bound it must stay within.
    pub max_unread: Duration,
    pub bound: Duration,
    /// Fewest and most leases per live worker at the end.
    pub loads: (usize, usize),
    pub verdict: Result<(), String>,
    /// A hash of every event handled: equal for equal seeds.
    pub trace_hash: u64,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: {} records in {} commits; {} crashes, {} pauses, {} splits; {} takes, {} steals; longest unread {:.1} s (bound {:.0} s); loads {}..{}",
            self.seed,
            self.records,
            self.commits,
            self.crashes,
            self.pauses,
            self.splits,
            self.takes,
            self.steals,
            self.max_unread.as_secs_f64(),
            self.bound.as_secs_f64(),
            self.loads.0,
            self.loads.1
        )
    }
}
