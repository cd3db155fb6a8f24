//! How long a lease move takes on a table whose taken shards last committed long ago (issue
//! 60, 7): on a local lake, worker `a` commits `QUIET` shards once, worker `b` then commits
//! one busy shard `COMMITS` times (a checkpoint every 100, as the table writes them), and a
//! third worker takes the quiet shards: opens the table, reads where each stands, and fences
//! them (its first commit, with no rows). Prints one JSON line: the move's time, and how long
//! reading the commits since the quiet shards' last commit takes, for scale.
//!
//!   kappa-lease-move [COMMITS] [QUIET] [DIR]      (defaults: 10000, 8, a temporary directory)

use std::collections::BTreeMap;
use std::time::Instant;

use kappa_common::schema::{Column, ColumnType, TableSchema};
use kappa_common::store::{LocalStore, Store};
use kappa_table::{Commit, FORMAT, Layout, Table};

fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args().nth(n).and_then(|a| a.parse().ok()).unwrap_or(default)
}

/// A commit with no files that leaves each of `shards` resuming after `position`.
fn commit(n: u64, shards: &[String], position: u64) -> Commit {
    let value = serde_json::json!({
        "format": FORMAT,
        "commit": n,
        "generation": "",
        "created_ms": 0,
        "schema_version": 1,
        "added": [],
        "resume": shards.iter().map(|s| (s.clone(), position.to_string())).collect::<BTreeMap<_, _>>(),
        "written": {},
        "totals": {"rows": 0, "files": 0, "bytes": 0, "quarantined": 0},
    });
    serde_json::from_value(value).expect("a commit record")
}

fn main() {
    let commits: u64 = arg(1, 10_000);
    let quiet: usize = arg(2, 8);
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let dir = std::env::args().nth(3).map_or_else(|| scratch.path().to_path_buf(), std::path::PathBuf::from);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let store = Store::Local(LocalStore::new(&dir));
    let schema = TableSchema::new(vec![Column { name: "id".into(), column_type: ColumnType::Int64, nullable: true }]).expect("schema");
    let layout = Layout { partition_by: "day".into(), event_time: None };
    let quiet_shards: Vec<String> = (0..quiet).map(|s| format!("quiet-{s}")).collect();
    let held = |epoch: u64, shards: &[String]| shards.iter().map(|s| (s.clone(), epoch)).collect::<BTreeMap<_, _>>();
    let with_generation = |table: &Table, mut record: Commit| {
        record.generation = table.generation().to_string();
        record
    };
    runtime.block_on(async {
        let a = Table::open_or_create(store.clone(), "t").await.expect("open").leased("a", &held(1, &quiet_shards));
        a.load_state().await.expect("state");
        a.commit(&with_generation(&a, commit(1, &quiet_shards, 41)), &schema, &layout).await.expect("the quiet shards' commit");
        let busy = vec!["busy".to_string()];
        let b = Table::open_or_create(store.clone(), "t").await.expect("open").leased("b", &held(1, &busy));
        b.load_state().await.expect("state");
        let started = Instant::now();
        for n in 1..=commits {
            b.commit(&with_generation(&b, commit(n, &busy, n)), &schema, &layout).await.expect("a busy commit");
            if n % 2_000 == 0 {
                eprintln!("{n} of {commits} commits ({:.0} s)", started.elapsed().as_secs_f64());
            }
        }
        // What walking the log back to the quiet shards' commit reads: every commit since.
        let walk = Instant::now();
        let log = dir.join("t/_delta_log");
        let mut bytes = 0u64;
        for version in 1..=commits + 1 {
            bytes += std::fs::read(log.join(format!("{version:020}.json"))).map_or(0, |b| b.len() as u64);
        }
        let walk = walk.elapsed();
        // The move: another worker takes the quiet shards at epoch 2.
        let moved = Instant::now();
        let c = Table::open_or_create(store.clone(), "t").await.expect("open").leased("c", &held(2, &quiet_shards));
        let state = c.load_state().await.expect("the taken shards' state");
        let fence_due = c.fence_due().await.expect("fence due");
        c.commit(&with_generation(&c, commit(1, &quiet_shards, 41)), &schema, &layout).await.expect("the fence");
        let moved = moved.elapsed();
        assert!(fence_due, "the taken shards were due a fence");
        assert!(quiet_shards.iter().all(|s| state.resume.get(s).map(String::as_str) == Some("41")), "{:?}", state.resume);
        println!(
            "{}",
            serde_json::json!({
                "commits_since": commits,
                "shards_taken": quiet,
                "lease_move_ms": moved.as_secs_f64() * 1000.0,
                "reading_every_commit_since_ms": walk.as_secs_f64() * 1000.0,
                "commit_bytes_since": bytes,
            })
        );
    });
}
