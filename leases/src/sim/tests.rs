use super::*;

fn seeds(default: std::ops::Range<u64>) -> Vec<u64> {
    if let Ok(seed) = std::env::var("KAPPA_SIM_SEED") {
        return vec![seed.parse().expect("KAPPA_SIM_SEED is a number")];
    }
    let count: Option<u64> = std::env::var("KAPPA_SIM_SEEDS").ok().and_then(|n| n.parse().ok());
    match count {
        Some(n) => (default.start..default.start + n).collect(),
        None => default.collect(),
    }
}

fn check(config: Config) -> Outcome {
    let seed = config.seed;
    let outcome = run(config);
    if let Err(failure) = &outcome.verdict {
        panic!("seed {seed} failed: {failure}\nreplay: KAPPA_SIM_SEED={seed} cargo test -p kappa-leases sim\n{outcome}");
    }
    outcome
}

#[test]
fn small_worlds_with_every_fault() {
    for seed in seeds(0..40) {
        let outcome = check(Config::small(seed));
        assert!(outcome.crashes + outcome.pauses > 0, "seed {seed}: the schedule injected no faults");
    }
}

#[test]
fn a_thousand_shards_and_a_hundred_workers() {
    // A thread per seed: each world runs on one thread for ~28 s, and this is the longest unit
    // test; in turn, its seeds kept one core of two busy for ~85 s.
    std::thread::scope(|scope| {
        for seed in seeds(1000..1003) {
            scope.spawn(move || {
                let outcome = check(Config::large(seed));
                eprintln!("seed {seed}: {outcome}");
                assert!(outcome.records > 0);
            });
        }
    });
}

#[test]
fn a_seed_replays_the_same_run() {
    let a = run(Config::small(7));
    let b = run(Config::small(7));
    assert_eq!(a.to_string(), b.to_string());
    assert_eq!(a.trace_hash, b.trace_hash);
}

#[test]
fn the_checks_catch_a_table_without_fences() {
    // Leases alone do not keep exactly-once: a paused worker wakes up believing it still owns
    // its shards. Without the table's fence its late commits land twice; the check must say so.
    // This is the simulation testing itself.
    let failed = (0..10).any(|seed| {
        let mut config = Config::small(seed);
        config.broken_fence = true;
        run(config).verdict.is_err_and(|e| e.contains("twice"))
    });
    assert!(failed, "ten seeds without fences passed the exactly-once check");
}
