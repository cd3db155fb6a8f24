//! The consumer reading Kinesis: moto for the seed sales and the crash test, kinesis-local for
//! a shard split in mid-stream (moto's resharding is unrealistic, see EMULATORS.md).

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_kinesis::types::StreamStatus;
use kappa_tests::{FaultProxy, KinesisLocal, Moto, aws_config, delta_log, expect_status, kappa, read_lake, run};

use crate::support::{assert_sales_lake, generate_sales_csv, kill_repeatedly, sales_files, summary};

async fn kinesis_client(endpoint: &str) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(&aws_config(endpoint).await)
}

async fn wait_active(client: &aws_sdk_kinesis::Client, stream: &str) {
    for _ in 0..200 {
        let summary = client.describe_stream_summary().stream_name(stream).send().await.unwrap();
        if summary.stream_description_summary().unwrap().stream_status() == &StreamStatus::Active {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stream {stream} never became ACTIVE");
}

async fn create_stream(client: &aws_sdk_kinesis::Client, stream: &str, shards: i32) {
    client.create_stream().stream_name(stream).shard_count(shards).send().await.unwrap();
    wait_active(client, stream).await;
}

/// Consumer arguments for a Kinesis stream into `lake`, table `sales`, by `sale_date`.
fn consumer_args(stream: &str, lake: &std::path::Path, idle: &str) -> Vec<String> {
    let mut args: Vec<String> = ["--from", &format!("kinesis:{stream}"), "--lake"].map(String::from).to_vec();
    args.push(lake.display().to_string());
    args.extend(["--table", "sales", "--event-time", "sale_date", "--poll-interval", "200ms", "--shard-refresh", "1s", "--until-idle", idle].map(String::from));
    args
}

#[tokio::test]
async fn seed_sales_through_kinesis_become_four_day_partitions_and_a_restart_adds_nothing() {
    let moto = Moto::start();
    let client = kinesis_client(&moto.endpoint).await;
    create_stream(&client, "sales", 4).await;
    let producer = run(kappa("kappa-producer", Some(&moto.endpoint)).args(crate::support::sales_args()).args(["--to", "kinesis:sales"]));
    expect_status(&producer, 0);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let summary_path = dir.path().join("summary.json");
    let output = run(kappa("kappa-consumer", Some(&moto.endpoint)).args(consumer_args("sales", &lake, "2s")).arg("--summary-json").arg(&summary_path));
    expect_status(&output, 0);
    assert_sales_lake(&read_lake(&lake.join("sales/gen-000001")));
    assert_eq!(summary(&summary_path)["events_read"], 400);
    // Every shard resumes after its last record: a second run reads nothing again.
    let output = run(kappa("kappa-consumer", Some(&moto.endpoint)).args(consumer_args("sales", &lake, "2s")).arg("--summary-json").arg(&summary_path));
    expect_status(&output, 0);
    assert_eq!(summary(&summary_path)["events_read"], 0, "{}", String::from_utf8_lossy(&output.stderr));
    assert_sales_lake(&read_lake(&lake.join("sales/gen-000001")));
}

#[tokio::test]
async fn until_idle_waits_for_shards_slow_to_answer_at_start() {
    // Every shard's first GetRecords takes 1.5 s, three times --until-idle: a consumer that
    // counted idle time from its start would exit 0 having read nothing.
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint);
    let client = kinesis_client(&moto.endpoint).await;
    create_stream(&client, "sales", 4).await;
    expect_status(&run(kappa("kappa-producer", Some(&moto.endpoint)).args(crate::support::sales_args()).args(["--to", "kinesis:sales"])), 0);
    proxy.delay("GetRecords", 1.5, 4);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let summary_path = dir.path().join("summary.json");
    let output = run(kappa("kappa-consumer", Some(&proxy.endpoint)).args(consumer_args("sales", &lake, "500ms")).arg("--summary-json").arg(&summary_path));
    expect_status(&output, 0);
    assert_eq!(summary(&summary_path)["events_read"], 400, "{}", String::from_utf8_lossy(&output.stderr));
    assert_sales_lake(&read_lake(&lake.join("sales/gen-000001")));
    assert!(proxy.requests("GetRecords") >= 8, "each shard was read again after its slow first answer");
}

#[tokio::test]
async fn sigkill_during_a_20k_row_kinesis_ingest_loses_and_doubles_nothing() {
    const ROWS: usize = 20_000;
    let moto = Moto::start();
    let client = kinesis_client(&moto.endpoint).await;
    create_stream(&client, "sales", 4).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = generate_sales_csv(dir.path(), ROWS as u64);
    expect_status(&run(kappa("kappa-producer", Some(&moto.endpoint)).arg("-i").arg(&csv).args(["--to", "kinesis:sales"])), 0);
    let lake = dir.path().join("lake");
    let args_for = |lake: &std::path::Path, idle: &str| {
        let mut args = consumer_args("sales", lake, idle);
        args.extend(["--flush-rows", "500", "--flush-interval", "1h"].map(String::from));
        let column = args.iter().position(|a| a == "sale_date").unwrap();
        args[column] = "sale_time".into(); // the generator's time column
        args
    };
    let args = |idle: &str| args_for(&lake, idle);
    // Kill times from a fixed window missed a fast run's whole ingest (done in 2.9 s, first
    // kill drawn later): time an uninterrupted ingest into a lake of its own (its positions
    // are its own), and kill within its first 40%, so that a restart is killed again too.
    let started = std::time::Instant::now();
    expect_status(&run(kappa("kappa-consumer", Some(&moto.endpoint)).args(args_for(&dir.path().join("timing"), "2s"))), 0);
    let ingest = (started.elapsed().as_millis() as u64).saturating_sub(2000);
    eprintln!("an uninterrupted ingest takes {ingest} ms (besides its 2 s of idleness)");
    let kills = kill_repeatedly(8, ((ingest / 10).max(50), (ingest * 4 / 10).max(100)), Duration::from_secs(240), || {
        let mut command = kappa("kappa-consumer", Some(&moto.endpoint));
        command.args(args("2s"));
        command
    });
    assert!(kills >= 2, "only {kills} kills landed");
    expect_status(&run(kappa("kappa-consumer", Some(&moto.endpoint)).args(args("2s"))), 0);
    let rows = read_lake(&lake.join("sales/gen-000001"));
    let ids: HashSet<&str> = rows.iter().map(|r| r.row["sale_id"].as_str().unwrap()).collect();
    assert_eq!(rows.len(), ROWS, "rows after {kills} kills");
    assert_eq!(ids.len(), ROWS, "no row twice");
}

#[tokio::test]
async fn a_shard_split_mid_stream_on_kinesis_local_reads_every_row_once_children_after_parents() {
    let kinesis = KinesisLocal::start();
    let endpoint = kinesis.endpoint();
    let client = kinesis_client(&endpoint).await;
    create_stream(&client, "sales", 4).await;
    let files = sales_files();
    let produce = |files: &[std::path::PathBuf]| {
        let mut command = kappa("kappa-producer", Some(&endpoint));
        command.arg("--input").args(files).args(["--to", "kinesis:sales"]);
        expect_status(&run(&mut command), 0);
    };
    produce(&files[..2]);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let summary_path = dir.path().join("summary.json");
    let port = kappa_tests::free_port();
    // Files per shard: their names say which shard their rows came from.
    let mut consumer = kappa("kappa-consumer", Some(&endpoint))
        .args(consumer_args("sales", &lake, "6s"))
        .arg("--per-shard-files")
        .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "--summary-json"])
        .arg(&summary_path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The split comes once the consumer has read the first 200 rows from the parents.
    kappa_tests::wait_for_metric(&mut consumer, port, "events_read_total", 200, Duration::from_secs(60));

    // Split shard 0 at the middle of its hash-key range while the consumer runs.
    crate::support::split_in_half(&client, "sales", "shardId-000000000000").await;
    wait_active(&client, "sales").await;
    let after = client.list_shards().stream_name("sales").send().await.unwrap();
    let children: Vec<String> =
        after.shards().iter().filter(|s| s.parent_shard_id() == Some("shardId-000000000000")).map(|s| s.shard_id().to_string()).collect();
    assert_eq!(children.len(), 2, "{after:?}");
    produce(&files[2..]);

    let output = consumer.wait_with_output().unwrap();
    expect_status(&output, 0);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("shard drained"), "the closed parent was read to its end: {log}");
    let rows = read_lake(&lake.join("sales/gen-000001"));
    assert_sales_lake(&rows);
    // Rows reached the children (their files carry the child shard ids), and the commit
    // records a resume position for each.
    let child_files = rows.iter().filter(|r| children.iter().any(|c| r.file.contains(c.as_str()))).count();
    assert!(child_files > 0, "no rows read from the child shards");
    let last = delta_log(&lake.join("sales")).unwrap().consumer_state;
    for shard in children.iter().chain(["shardId-000000000000".to_string()].iter()) {
        assert!(last["resume"].get(shard).is_some(), "no resume position for {shard}: {}", last["resume"]);
    }
    assert_eq!(summary(&summary_path)["rows_written"], 400);

    // A restart resumes every shard after its last record, the drained parent included (its
    // iterator is null or empty), and reads nothing twice.
    let again = run(kappa("kappa-consumer", Some(&endpoint)).args(consumer_args("sales", &lake, "3s")).arg("--summary-json").arg(&summary_path));
    expect_status(&again, 0);
    assert_eq!(summary(&summary_path)["events_read"], 0, "{}", String::from_utf8_lossy(&again.stderr));
    assert_sales_lake(&read_lake(&lake.join("sales/gen-000001")));
}
