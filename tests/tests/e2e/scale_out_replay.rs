//! A replay shared by processes through leases (`kappa-replay --leases`): two processes
//! replaying a four-shard log write the very files one replay writes (names and bytes), one
//! of them switches readers to it, and a process killed in the middle is replaced.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kappa_tests::{expect_status, kappa, run};

use crate::support::{assert_exactly_once, unique_sales_csv};

/// The generation the table holds now.
fn current(table: &Path) -> String {
    kappa_tests::delta_log(table).unwrap().configuration["kappa.generation"].as_str().unwrap().to_string()
}

/// Every file of a generation (relative path → content hash).
fn generation_files(table: &Path, generation: &str) -> BTreeMap<String, u64> {
    let root = table.join(generation);
    kappa_tests::parquet_files(&root)
        .into_iter()
        .map(|path| {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            std::fs::read(&path).unwrap().hash(&mut hasher);
            (path.strip_prefix(&root).unwrap().display().to_string(), hasher.finish())
        })
        .collect()
}

fn replay(log: &str, lake: &Path) -> Command {
    let mut command = kappa("kappa-replay", None);
    command.args(["--from", log, "--lake"]).arg(lake).args(["--table", "sales", "--event-time", "sale_time", "--flush-rows", "4000"]);
    command
}

fn shared(log: &str, lake: &Path, id: &str, stderr: &Path) -> Child {
    replay(log, lake)
        .args(["--leases", "local", "--worker-id", id, "--failover", "2s", "--verify", "--switch"])
        .stderr(Stdio::from(std::fs::File::create(stderr).unwrap()))
        .spawn()
        .unwrap()
}

#[test]
fn two_processes_replay_a_log_into_the_same_files_as_one_and_one_switches() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let log = format!("log:{}", log_dir.display());
    let csv = unique_sales_csv(&dir.path().join("a"), 40_000, "RP");
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&csv).args(["--to", &log, "--shards", "4"])), 0);

    // One process: the reference (with files per partition and shard, as processes sharing
    // the shards write them).
    let alone = dir.path().join("alone");
    expect_status(&run(replay(&log, &alone).args(["--verify", "--switch", "--per-shard-files"])), 0);
    let reference = generation_files(&alone.join("sales"), "gen-000001");
    assert!(reference.len() >= 8, "{reference:?}");

    // Two processes sharing the shards.
    let lake = dir.path().join("lake");
    let (first, second) = (dir.path().join("r1.log"), dir.path().join("r2.log"));
    let mut r1 = shared(&log, &lake, "r1", &first);
    let mut r2 = shared(&log, &lake, "r2", &second);
    assert!(r1.wait().unwrap().success(), "{}", std::fs::read_to_string(&first).unwrap());
    assert!(r2.wait().unwrap().success(), "{}", std::fs::read_to_string(&second).unwrap());
    let logs = [std::fs::read_to_string(&first).unwrap(), std::fs::read_to_string(&second).unwrap()];
    let finishers = logs.iter().filter(|l| l.contains("this process finishes the generation")).count();
    assert_eq!(finishers, 1, "exactly one process verifies and switches:\n{}\n----\n{}", logs[0], logs[1]);
    assert!(logs.iter().any(|l| l.contains("switched           readers moved") || l.contains("is the table's first current generation")), "{logs:?}");
    // Of two processes starting at once, each may make a generation: the one whose claim lost
    // removed its own, and both wrote the winner's.
    assert_eq!(generation_files(&lake.join("sales"), &current(&lake.join("sales"))), reference, "the same files, names and bytes, as one replay");
    assert_exactly_once(&lake.join("sales"), 40_000);
}

#[test]
fn a_shared_replay_goes_on_when_one_process_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let log = format!("log:{}", log_dir.display());
    let csv = unique_sales_csv(&dir.path().join("a"), 80_000, "RK");
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&csv).args(["--to", &log, "--shards", "4"])), 0);
    let alone = dir.path().join("alone");
    expect_status(&run(replay(&log, &alone).args(["--verify", "--switch", "--per-shard-files"])), 0);
    let reference = generation_files(&alone.join("sales"), "gen-000001");

    let lake = dir.path().join("lake");
    let mut r1 = shared(&log, &lake, "r1", &dir.path().join("r1.log"));
    let mut r2 = shared(&log, &lake, "r2", &dir.path().join("r2.log"));
    // r2 dies in the middle (a commit or two in): r1 takes its shards after the failover and
    // reads them again from where the generation's log has them.
    let kappa = lake.join("sales/_kappa");
    let commits = || -> usize {
        let generations = std::fs::read_dir(&kappa).into_iter().flatten().flatten();
        generations.map(|g| std::fs::read_dir(g.path().join("commits")).map_or(0, |d| d.count())).max().unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while commits() < 2 {
        assert!(std::time::Instant::now() < deadline, "no commits after 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    r2.kill().unwrap();
    r2.wait().unwrap();
    let text = || std::fs::read_to_string(dir.path().join("r1.log")).unwrap();
    assert!(r1.wait().unwrap().success(), "{}", text());
    assert!(text().contains("this process finishes the generation"), "{}", text());
    let first_job = current(&lake.join("sales"));
    // A third process started now finds the job done: it begins a new one, which it finishes
    // alone into the next generation.
    let mut r3 = shared(&log, &lake, "r3", &dir.path().join("r3.log"));
    let third = || std::fs::read_to_string(dir.path().join("r3.log")).unwrap();
    assert!(r3.wait().unwrap().success(), "{}", third());
    assert_eq!(generation_files(&lake.join("sales"), &first_job), reference, "the same files as one replay, after a kill");
    let second_job = current(&lake.join("sales"));
    assert_ne!(first_job, second_job, "{}", third());
    assert_eq!(generation_files(&lake.join("sales"), &second_job), reference, "the next job's generation too:\n{}", third());
    assert_exactly_once(&lake.join("sales"), 80_000);
}

#[test]
fn two_processes_replay_a_kinesis_stream_with_a_split_shard_into_the_same_files_as_one() {
    let kinesis = kappa_tests::KinesisLocal::start();
    let moto = kappa_tests::Moto::start();
    let endpoint = kinesis.endpoint();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(async { aws_sdk_kinesis::Client::new(&kappa_tests::aws_config(&endpoint).await) });
    let active = || {
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
    runtime.block_on(client.create_stream().stream_name("sales").shard_count(4).send()).unwrap();
    active();
    let dir = tempfile::tempdir().unwrap();
    let produce = |csv: &Path| expect_status(&run(kappa("kappa-producer", Some(&endpoint)).arg("-i").arg(csv).args(["--to", "kinesis:sales"])), 0);
    produce(&unique_sales_csv(&dir.path().join("a"), 3_000, "KA"));
    // A parent and its two children, each with rows: children are read after their parent.
    let split = client.split_shard().stream_name("sales").shard_to_split("shardId-000000000000").new_starting_hash_key((u128::MAX / 8).to_string());
    runtime.block_on(split.send()).unwrap();
    active();
    produce(&unique_sales_csv(&dir.path().join("b"), 3_000, "KB"));

    let replay = |lake: &Path| {
        let mut command = kappa("kappa-replay", Some(&endpoint));
        command.env("AWS_ENDPOINT_URL_DYNAMODB", &moto.endpoint);
        command.args(["--from", "kinesis:sales", "--lake"]).arg(lake).args(["--table", "sales", "--event-time", "sale_time", "--poll-interval", "200ms"]);
        command.args(["--flush-rows", "500", "--verify", "--switch"]);
        command
    };
    let alone = dir.path().join("alone");
    expect_status(&run(replay(&alone).arg("--per-shard-files")), 0);
    let reference = generation_files(&alone.join("sales"), "gen-000001");

    let lake = dir.path().join("lake");
    let spawn = |id: &str| {
        let log = dir.path().join(format!("{id}.log"));
        let child = replay(&lake)
            .args(["--leases", "dynamodb:replay-leases", "--worker-id", id, "--failover", "2s"])
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        (child, log)
    };
    let (mut k1, first) = spawn("k1");
    let (mut k2, second) = spawn("k2");
    assert!(k1.wait().unwrap().success(), "{}", std::fs::read_to_string(&first).unwrap());
    assert!(k2.wait().unwrap().success(), "{}", std::fs::read_to_string(&second).unwrap());
    let table = lake.join("sales");
    assert_eq!(generation_files(&table, &current(&table)), reference, "the same files, names and bytes, as one replay");
    assert_exactly_once(&table, 6_000);
}
