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
    /// Hosts' wall clocks lie within ± this of the true time (writer records carry them).
    pub skew: Duration,
    /// Pauses (SIGSTOP, a frozen VM) last up to this; most are short (up to three failovers).
    pub pause_max: Duration,
    /// Share of lease-store requests that are very slow (up to `store_slow_max`): a store
    /// that stops answering for a while.
    pub store_slow_share: f64,
    pub store_slow_max: Duration,
    /// Share of commits whose answer is lost (the commit made or not).
    pub lost_answers: f64,
    /// Binary versions among the workers (a rolling deploy): a file one encodes has other bytes
    /// than the same rows encoded by another.
    pub versions: u8,
    /// The code as it is (every flag true or false as below) or as it was, for the
    /// self-tests: a take fences the shard at once (else its first commit does); the
    /// coordinator's self-expiry runs on a timer of its own and its shard listing is given up
    /// after two cycles (else the listing is waited for, and self-expiry checked at its end).
    pub fence_on_take: bool,
    pub watchdog: bool,
    /// As it was: a session start deletes the files no commit names whose writer's record is a
    /// minute old by its own wall clock; and a file is stored over what has its name.
    pub delete_by_clock: bool,
    pub replace_files: bool,
    /// The table accepts every commit (a self-test of the checks).
    pub broken_fence: bool,
}

impl Config {
    pub(crate) fn small(seed: u64) -> Config {
        Config {
            seed,
            shards: 24,
            workers: 5,
            faults_for: Duration::from_secs(720),
            quiet_for: Duration::from_secs(120),
            failover: Duration::from_secs(10),
            crash_rate: 0.4,
            pause_rate: 0.4,
            split_rate: 1.0,
            slow_share: 0.02,
            slow_max: Duration::from_secs(2),
            drift: 0.05,
            skew: Duration::from_secs(90),
            pause_max: Duration::from_secs(600),
            store_slow_share: 0.003,
            store_slow_max: Duration::from_secs(20),
            lost_answers: 0.02,
            versions: 2,
            fence_on_take: true,
            watchdog: true,
            delete_by_clock: false,
            replace_files: false,
            broken_fence: false,
        }
    }

    pub(crate) fn large(seed: u64) -> Config {
        Config {
            shards: 1_000,
            workers: 100,
            faults_for: Duration::from_secs(660),
            quiet_for: Duration::from_secs(120),
            crash_rate: 0.03,
            pause_rate: 0.03,
            split_rate: 2.0,
            ..Config::small(seed)
        }
    }

    /// Within this a shard that may be read is read again: the failover time, and slow
    /// requests on the way (a beat seen late, the scan, the take, the fence); a store that
    /// stops answering for a while holds the taker up as long.
    pub(crate) fn bound(&self) -> Duration {
        let slowest = if self.store_slow_share > 0.0 { self.store_slow_max.max(self.slow_max) } else { self.slow_max };
        self.failover + slowest * 4
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
    pub longest_pause: Duration,
    /// Restarted processes that stopped because their worker id was still in use.
    pub refused_ids: u64,
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

impl Outcome {
    pub(crate) fn new(seed: u64, bound: Duration) -> Outcome {
        Outcome {
            seed,
            records: 0,
            commits: 0,
            crashes: 0,
            pauses: 0,
            longest_pause: Duration::ZERO,
            refused_ids: 0,
            splits: 0,
            takes: 0,
            steals: 0,
            max_unread: Duration::ZERO,
            bound,
            loads: (0, 0),
            verdict: Ok(()),
            trace_hash: 0,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: {} records in {} commits; {} crashes, {} pauses (longest {:.0} s), {} splits; {} takes, {} steals; longest unread {:.1} s (bound {:.0} s); loads {}..{}",
            self.seed,
            self.records,
            self.commits,
            self.crashes,
            self.pauses,
            self.longest_pause.as_secs_f64(),
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
