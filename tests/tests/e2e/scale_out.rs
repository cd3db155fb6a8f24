//! Many consumers on one table (`--leases`): real processes sharing the embedded log's shards
//! through local leases, killed, restarted and paused while the producer writes. Every outside
//! reader must see every row exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use kappa_leases::LeaseStore;
use kappa_leases::store::dynamodb::DynamoStore;
use kappa_leases::store::local::{LocalStore, dir_of_log};
use kappa_tests::{KinesisLocal, Moto, aws_config, expect_status, kappa, run};

use crate::support::{Lcg, assert_exactly_once, committed_rows, unique_sales_csv};

const SHARDS: u32 = 8;

/// Where the leases are: the local store beside the log, or a DynamoDB table on moto.
struct Leases {
    spec: String,
    endpoint: Option<String>,
    /// More environment for the workers (a DynamoDB endpoint apart from Kinesis's).
    env: Vec<(String, String)>,
    store: Arc<dyn LeaseStore>,
    runtime: tokio::runtime::Runtime,
}

impl Leases {
    fn local(log_dir: &Path) -> Leases {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let store = Arc::new(LocalStore::open(dir_of_log(log_dir)).unwrap());
        Leases { spec: "local".into(), endpoint: None, env: Vec::new(), store, runtime }
    }

    fn dynamodb(moto: &Moto, table: &str) -> Leases {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let store = runtime.block_on(async {
            let client = aws_sdk_dynamodb::Client::new(&aws_config(&moto.endpoint).await);
            DynamoStore::open(client, table).await.unwrap()
        });
        Leases { spec: format!("dynamodb:{table}"), endpoint: Some(moto.endpoint.clone()), env: Vec::new(), store: Arc::new(store), runtime }
    }

    /// Who owns each shard.
    fn owners(&self) -> BTreeMap<String, Option<String>> {
        let snapshot = self.runtime.block_on(self.store.scan()).unwrap();
        snapshot.leases.into_values().map(|lease| (lease.shard, lease.owner)).collect()
    }

    /// Shards per owner, sorted descending (3/3/2 with 3 workers on 8 shards).
    fn balance(&self) -> Vec<usize> {
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        for owner in self.owners().into_values().flatten() {
            *per.entry(owner).or_default() += 1;
        }
        let mut counts: Vec<usize> = per.into_values().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        counts
    }

    /// Waits until the shards are held `wanted`, failing after `within`.
    fn wait_for(&self, wanted: &[usize], within: Duration, what: &str) -> Duration {
        let started = Instant::now();
        while self.balance() != wanted {
            assert!(started.elapsed() < within, "{what}: not {wanted:?} within {within:?}: {:?}", self.owners());
            std::thread::sleep(Duration::from_millis(20));
        }
        started.elapsed()
    }

    /// A worker's command line: 2 s failover, 1 s flushes, so that a test sees many moves.
    fn worker(&self, log: &str, lake: &Path, id: &str) -> Command {
        let mut command = kappa("kappa-consumer", self.endpoint.as_deref());
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
            .args(["--from", log, "--lake"])
            .arg(lake)
            .args(["--table", "sales", "--event-time", "sale_time", "--leases", &self.spec, "--worker-id", id, "--failover", "2s"])
            .args(["--flush-interval", "1s", "--status-interval", "1s"]);
        command
    }

    fn spawn(&self, log: &str, lake: &Path, id: &str, dir: &Path, round: u32, extra: &[&str]) -> Worker {
        let path = dir.join(format!("{id}-{round}.log"));
        let file = std::fs::File::create(&path).unwrap();
        let child = self.worker(log, lake, id).args(extra).stderr(Stdio::from(file)).spawn().unwrap();
        Worker { id: id.to_string(), child, log: path }
    }
}

struct Worker {
    id: String,
    child: Child,
    log: PathBuf,
}

/// A metric of the worker serving on `port` (a scrape that finds no answer is tried again).
fn metric(port: u16, name: &str) -> u64 {
    for _ in 0..50 {
        if let Some(value) = kappa_tests::metric(port, name) {
            return value;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no metric {name} at port {port}");
}

/// After 0.3–1.5 s, SIGKILLs a random worker and starts it again 0–1.5 s later.
#[allow(clippy::too_many_arguments)]
fn kill_and_restart(leases: &Leases, workers: &mut [Worker], random: &mut Lcg, from: &str, lake: &Path, dir: &Path, round: u32, extra: &[&str]) {
    std::thread::sleep(Duration::from_millis(300 + random.next(1200)));
    let victim = random.next(workers.len() as u64) as usize;
    workers[victim].child.kill().unwrap(); // SIGKILL
    workers[victim].child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(random.next(1500)));
    let id = workers[victim].id.clone();
    workers[victim] = leases.spawn(from, lake, &id, dir, round, extra);
}

/// Waits (up to 120 s) until the table's current version holds `total` rows.
fn wait_for_rows(table: &Path, total: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed_rows(table) < total {
        assert!(Instant::now() < deadline, "only {} of {total} rows committed after 120 s", committed_rows(table));
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// SIGTERM to every worker: each commits, releases its leases and exits 0.
fn stop_all(mut workers: Vec<Worker>) {
    for worker in &mut workers {
        stop(worker, "-TERM");
    }
    for worker in workers {
        let status = worker.child.wait_with_output().unwrap().status;
        let text = std::fs::read_to_string(&worker.log).unwrap_or_default();
        assert!(status.success(), "worker {} exited with {status}:\n{text}", worker.id);
        assert!(text.contains("releasing this worker's shard leases"), "{text}");
    }
}

fn stop(worker: &mut Worker, signal: &str) {
    let status = Command::new("kill").args([signal, &worker.child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn three_workers_share_eight_shards_through_kills_and_a_pause_and_write_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let log = format!("log:{}", log_dir.display());
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    let first = unique_sales_csv(&dir.path().join("a"), 30_000, "SA");
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&first).args(["--to", &log, "--shards", &SHARDS.to_string()])), 0);

    let leases = Leases::local(&log_dir);
    let mut workers: Vec<Worker> = ["w1", "w2", "w3"].iter().map(|id| leases.spawn(&log, &lake, id, dir.path(), 0, &[])).collect();
    let started = Instant::now();
    eprintln!("balanced 3/3/2 in {:?}", leases.wait_for(&[3, 3, 2], Duration::from_secs(30), "three workers on eight shards"));

    // The producer writes while workers are killed and restarted.
    let second = unique_sales_csv(&dir.path().join("b"), 60_000, "SB");
    let producer = kappa("kappa-producer", None)
        .arg("-i")
        .arg(&second)
        .args(["--to", &log, "--shards", &SHARDS.to_string(), "--rate", "6000"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seed = std::env::var("KAPPA_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| started.elapsed().as_nanos() as u64);
    eprintln!("kill schedule seed: {seed} (set KAPPA_KILL_SEED={seed} to replay it)");
    let mut random = Lcg(seed);
    for round in 1..=8 {
        kill_and_restart(&leases, &mut workers, &mut random, &log, &lake, dir.path(), round, &[]);
    }
    // A worker paused past the failover time must not get a row of a shard it lost in.
    stop(&mut workers[0], "-STOP");
    std::thread::sleep(Duration::from_secs(5));
    stop(&mut workers[0], "-CONT");
    expect_status(&producer.wait_with_output().unwrap(), 0);

    let total = 90_000;
    wait_for_rows(&table, total);
    stop_all(workers);
    assert!(leases.owners().values().all(Option::is_none), "every lease released: {:?}", leases.owners());
    assert_eq!(committed_rows(&table), total, "no row twice in the Delta log's statistics");
    assert_exactly_once(&table, total);
}

#[test]
fn a_worker_killed_for_good_is_replaced_and_a_rolling_restart_hands_over() {
    let dir = tempfile::tempdir().unwrap();
    let leases = Leases::local(&dir.path().join("log"));
    rolling_restart(dir.path(), &leases);
}

#[test]
fn workers_share_shards_through_a_dynamodb_lease_table() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let leases = Leases::dynamodb(&moto, "kappa-leases-sales");
    rolling_restart(dir.path(), &leases);
}

/// Two workers balance 2/2 on four shards; one dies for good and the other owns all four within
/// the failover time; a third joins and takes its share; the second stops with SIGTERM and
/// hands over at once. A consumer without leases is then refused the table.
fn rolling_restart(dir: &Path, leases: &Leases) {
    let log_dir = dir.join("log");
    let log = format!("log:{}", log_dir.display());
    let lake = dir.join("lake");
    let table = lake.join("sales");
    let csv = unique_sales_csv(&dir.join("a"), 20_000, "SA");
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&csv).args(["--to", &log, "--shards", "4"])), 0);
    // One consumer without leases starts the table; a worker with leases beside it is refused
    // (it would read the same shards), and once it stops the workers go on from its positions.
    let mut single = kappa("kappa-consumer", leases.endpoint.as_deref());
    single.envs(leases.env.iter().map(|(k, v)| (k, v)));
    let single = single.args(["--from", &log, "--lake"]).arg(&lake).args(["--table", "sales", "--event-time", "sale_time", "--flush-interval", "1s"]);
    let mut single = single.stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed_rows(&table) == 0 {
        assert!(Instant::now() < deadline, "the consumer without leases committed nothing");
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = run(leases.worker(&log, &lake, "early").args(["--until-idle", "10s"]));
    expect_status(&output, 2);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("a consumer without --leases is writing this table"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Command::new("kill").args(["-TERM", &single.id().to_string()]).status().unwrap();
    assert!(single.wait().unwrap().success());
    let more = unique_sales_csv(&dir.join("b"), 20_000, "SB");
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&more).args(["--to", &log])), 0);
    let mut a = leases.spawn(&log, &lake, "a", dir, 0, &[]);
    let mut b = leases.spawn(&log, &lake, "b", dir, 0, &[]);
    leases.wait_for(&[2, 2], Duration::from_secs(30), "two workers on four shards");
    // `workers` lists both, beating, with their shards.
    let mut workers = kappa("kappa-consumer", leases.endpoint.as_deref());
    workers.args(["workers", "--leases", &leases.spec, "--from", &log, "--failover", "2s"]);
    let output = run(&mut workers);
    expect_status(&output, 0);
    let listed = String::from_utf8_lossy(&output.stdout).to_string();
    for id in ["a ", "b "] {
        let line = listed.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("no line for worker {id}in\n{listed}"));
        assert!(line.contains("beating") && line.contains(" 2 "), "{line}\n{listed}");
    }
    assert!(listed.contains("4 shards, 2 workers; not held: none"), "{listed}");

    // a dies for good: b owns all four shards within the failover time and a cycle or two.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    eprintln!("failover in {:?}", leases.wait_for(&[4], Duration::from_secs(5), "a's shards owned again"));
    // A new worker c starts and takes its share; b stops with SIGTERM and hands over at once.
    let port = kappa_tests::free_port();
    let mut c = leases.spawn(&log, &lake, "c", dir, 0, &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    leases.wait_for(&[2, 2], Duration::from_secs(30), "c takes its share");
    stop(&mut b, "-TERM");
    let stopping = Instant::now();
    expect_status(&b.child.wait_with_output().unwrap(), 0);
    leases.wait_for(&[4], Duration::from_secs(2), "b's shards handed over after SIGTERM");
    eprintln!("handover in {:?} after SIGTERM", stopping.elapsed());
    wait_for_rows(&table, 40_000);
    kappa_tests::wait_for_metric(&mut c.child, port, "shards_held", 4, Duration::from_secs(10));
    // Two stolen from b to balance, two taken when b released them.
    let (takes, steals) = (metric(port, "lease_takes_total"), metric(port, "lease_steals_total"));
    assert!(takes + steals >= 4 && steals >= 1, "takes {takes}, steals {steals}");
    // Every shard's lag, read to the end: 0 events.
    for shard in 0..4 {
        let name = format!("shard_lag{{shard=\"{shard}\"}}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric(port, &name) != 0 {
            assert!(Instant::now() < deadline, "shard {shard}'s lag is {} events", metric(port, &name));
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    stop(&mut c, "-TERM");
    expect_status(&c.child.wait_with_output().unwrap(), 0);
    assert_eq!(committed_rows(&table), 40_000);
    assert_exactly_once(&table, 40_000);

    // Without leases, a consumer would read the shards again from the table-wide state.
    let output = run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(&lake).args([
        "--table",
        "sales",
        "--event-time",
        "sale_time",
        "--until-idle",
        "0s",
    ]));
    expect_status(&output, 2);
    assert!(String::from_utf8_lossy(&output.stderr).contains("same --leases"), "{}", String::from_utf8_lossy(&output.stderr));
    assert_exactly_once(&table, 40_000);
}

#[test]
fn three_workers_share_eight_kinesis_shards_through_kills_and_a_split() {
    let started = Instant::now();
    let kinesis = KinesisLocal::start();
    let moto = Moto::start();
    eprintln!("emulators up in {:?}", started.elapsed());
    let endpoint = kinesis.endpoint();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(async { aws_sdk_kinesis::Client::new(&aws_config(&endpoint).await) });
    let active = |client: &aws_sdk_kinesis::Client| {
        runtime.block_on(async {
            for _ in 0..200 {
                let summary = client.describe_stream_summary().stream_name("sales").send().await.unwrap();
                if summary.stream_description_summary().unwrap().stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("stream never became ACTIVE");
        })
    };
    runtime.block_on(client.create_stream().stream_name("sales").shard_count(SHARDS as i32).send()).unwrap();
    active(&client);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    let produce = |csv: &Path, rate: &str| {
        let mut command = kappa("kappa-producer", Some(&endpoint));
        command.arg("-i").arg(csv).args(["--to", "kinesis:sales", "--rate", rate]);
        command
    };
    let first = unique_sales_csv(&dir.path().join("a"), 20_000, "SA");
    expect_status(&run(&mut produce(&first, "100000")), 0);
    eprintln!("20,000 rows produced at {:?}", started.elapsed());

    // Leases in DynamoDB on moto, the stream on kinesis-local.
    let mut leases = Leases::dynamodb(&moto, "kappa-leases-kinesis");
    leases.endpoint = Some(endpoint.clone());
    leases.env = vec![("AWS_ENDPOINT_URL_DYNAMODB".into(), moto.endpoint.clone())];
    let from = "kinesis:sales";
    let extra = ["--poll-interval", "200ms", "--shard-refresh", "1s"];
    let mut workers: Vec<Worker> = ["k1", "k2", "k3"].iter().map(|id| leases.spawn(from, &lake, id, dir.path(), 0, &extra)).collect();
    eprintln!("balanced 3/3/2 in {:?}", leases.wait_for(&[3, 3, 2], Duration::from_secs(30), "three workers on eight Kinesis shards"));

    // kinesis-local takes ~500 rows/s while three workers poll it: 20,000 rows span the kills
    // (20 rounds of a SIGKILL and a restart, a pause past the failover time, a split).
    let second = unique_sales_csv(&dir.path().join("b"), 20_000, "SB");
    let producer = produce(&second, "5000").stderr(Stdio::null()).spawn().unwrap();
    let seed = std::env::var("KAPPA_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(std::process::id() as u64);
    eprintln!("kill schedule seed: {seed} (set KAPPA_KILL_SEED={seed} to replay it)");
    let mut random = Lcg(seed);
    eprintln!("producing and killing from {:?}", started.elapsed());
    for round in 1..=20 {
        kill_and_restart(&leases, &mut workers, &mut random, from, &lake, dir.path(), round, &extra);
        if round == 10 {
            // A worker paused past the failover time loses its shards meanwhile: when it wakes,
            // not a row of theirs may reach the table from it.
            stop(&mut workers[1], "-STOP");
            std::thread::sleep(Duration::from_secs(5));
            stop(&mut workers[1], "-CONT");
        }
        if round == 3 {
            // Split shard 0 in the middle of its hash-key range while the workers run.
            let shards = runtime.block_on(client.list_shards().stream_name("sales").send()).unwrap();
            let parent = shards.shards().iter().find(|s| s.shard_id() == "shardId-000000000000").unwrap();
            let range = parent.hash_key_range().unwrap();
            let (low, high): (u128, u128) = (range.starting_hash_key().parse().unwrap(), range.ending_hash_key().parse().unwrap());
            let split =
                client.split_shard().stream_name("sales").shard_to_split("shardId-000000000000").new_starting_hash_key((low + (high - low) / 2).to_string());
            runtime.block_on(split.send()).unwrap();
            active(&client);
        }
    }
    eprintln!("kills done at {:?}", started.elapsed());
    expect_status(&producer.wait_with_output().unwrap(), 0);
    let total = 40_000;
    let produced = Instant::now();
    wait_for_rows(&table, total);
    eprintln!("every row committed {:?} after the producer ended, at {:?}", produced.elapsed(), started.elapsed());
    // The parent was read to its end and its lease ended; its two children are held.
    let snapshot = leases.runtime.block_on(leases.store.scan()).unwrap();
    assert!(snapshot.leases["shardId-000000000000"].ended, "{:?}", snapshot.leases["shardId-000000000000"]);
    let children: Vec<_> = snapshot.leases.values().filter(|l| l.parents.contains(&"shardId-000000000000".to_string())).collect();
    assert_eq!(children.len(), 2, "{children:?}");
    assert!(children.iter().all(|c| c.owner.is_some()), "{children:?}");
    stop_all(workers);
    eprintln!("workers stopped at {:?}", started.elapsed());
    assert_eq!(committed_rows(&table), total, "no row twice in the Delta log's statistics");
    assert_exactly_once(&table, total);
}

/// A replay switches readers while two leased workers go on. It reads the log only up to a
/// time before the last rows arrived (`--until`), so it must catch up to what the workers
/// committed, from each shard's own `txn`, before it switches: without that, the switch dropped
/// the rows they had committed past it (2,750 of 23,000 once) until they wrote them again. One
/// worker is paused through the switch with a flush due: resumed, it must see the switch
/// before it commits the old generation's files on top of the new one (in CI such a commit
/// once made both workers read their shards again from the start: 43,950 rows for 23,000).
#[test]
fn a_switch_under_leased_workers_keeps_every_row_and_the_workers_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let log = format!("log:{}", log_dir.display());
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    let csv = unique_sales_csv(&dir.path().join("a"), 20_000, "SA");
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&csv).args(["--to", &log, "--shards", "4"])), 0);
    let leases = Leases::local(&log_dir);
    let mut workers: Vec<Worker> = ["a", "b"].iter().map(|id| leases.spawn(&log, &lake, id, dir.path(), 0, &[])).collect();
    wait_for_rows(&table, 20_000);
    let before = kappa_tests::delta_log(&table).unwrap().configuration["kappa.generation"].clone();
    // Readers never see fewer rows than some version before showed them: not at the switch.
    // Each commit is read once, in version order (a version exists only once whole).
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (table, watching) = (table.clone(), watching.clone());
        std::thread::spawn(move || {
            let (mut next, mut files, mut most) = (0u64, BTreeMap::<String, u64>::new(), 0);
            while watching.load(std::sync::atomic::Ordering::Relaxed) && table.exists() {
                while let Ok(text) = std::fs::read_to_string(table.join(format!("_delta_log/{next:020}.json"))) {
                    for action in text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
                        if let Some(add) = action.get("add") {
                            let stats: serde_json::Value = serde_json::from_str(add["stats"].as_str().unwrap_or("{}")).unwrap_or_default();
                            files.insert(add["path"].as_str().unwrap().to_string(), stats["numRecords"].as_u64().unwrap_or(0));
                        } else if let Some(remove) = action.get("remove") {
                            files.remove(remove["path"].as_str().unwrap());
                        }
                    }
                    let rows: u64 = files.values().sum();
                    assert!(rows >= most, "version {next} holds {rows} rows, an earlier one {most}");
                    (next, most) = (next + 1, rows);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    // More rows arrive while a replay rebuilds the table and switches readers to it.
    let until = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::thread::sleep(Duration::from_millis(20));
    let producing = {
        let (dir, log) = (dir.path().to_path_buf(), log.clone());
        std::thread::spawn(move || {
            for batch in 0..12 {
                let csv = unique_sales_csv(&dir.join(format!("more-{batch}")), 250, &format!("B{batch:02}-"));
                expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&csv).args(["--to", &log])), 0);
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    // Rows the replay's main read leaves out are committed before it starts.
    wait_for_rows(&table, 20_250);
    // Paused while the replay runs: past the 2 s failover its shards move to the other
    // worker, and either way no row may be stored twice.
    stop(&mut workers[0], "-STOP");
    let replay = run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args([
        "--table",
        "sales",
        "--event-time",
        "sale_time",
        "--until",
        &until,
        "--verify",
        "--switch",
    ]));
    stop(&mut workers[0], "-CONT");
    expect_status(&replay, 0);
    producing.join().unwrap();
    // The workers go on in the new generation from the positions the switch handed over.
    let generation = kappa_tests::delta_log(&table).unwrap().configuration["kappa.generation"].as_str().unwrap().to_string();
    assert_ne!(generation, before, "the replay switched the table");
    wait_for_rows(&table, 23_000);
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    // Both read in the new generation: the one that saw the switch, and the paused one too,
    // whether it saw the switch or lost its shards while paused and took them back after.
    leases.wait_for(&[2, 2], Duration::from_secs(30), "the shards balanced again");
    let consuming = format!("generation={generation}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !workers.iter().all(|w| std::fs::read_to_string(&w.log).unwrap().lines().any(|l| l.contains("consuming") && l.contains(&consuming))) {
        assert!(Instant::now() < deadline, "not both workers consumed {generation} within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_all(workers);
    assert_eq!(committed_rows(&table), 23_000);
    assert_exactly_once(&table, 23_000);
}

/// A worker holding no shard (more workers than shards) logs its status line as the others do:
/// the deployed stack counts status lines to tell running consumers from dead ones
/// (`NotConsumingAlarm`, issue 62), and an idle worker is running.
#[test]
fn a_worker_holding_no_shard_still_logs_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let log = format!("log:{}", log_dir.display());
    let lake = dir.path().join("lake");
    let csv = unique_sales_csv(&dir.path().join("a"), 1_000, "SI");
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&csv).args(["--to", &log, "--shards", "1"])), 0);
    let leases = Leases::local(&log_dir);
    let mut a = leases.spawn(&log, &lake, "a", dir.path(), 0, &[]);
    leases.wait_for(&[1], Duration::from_secs(30), "a holds the only shard");
    let mut b = leases.spawn(&log, &lake, "b", dir.path(), 0, &[]);
    // --status-interval is 1 s: a few lines within 5 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&b.log).unwrap();
        let idle_status = text.lines().filter(|l| l.contains("status") && l.contains("shards=0")).count();
        if idle_status >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the idle worker logged {idle_status} status lines:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(leases.balance(), [1], "b held nothing meanwhile");
    stop(&mut b, "-TERM");
    stop(&mut a, "-TERM");
    expect_status(&b.child.wait_with_output().unwrap(), 0);
    expect_status(&a.child.wait_with_output().unwrap(), 0);
}
