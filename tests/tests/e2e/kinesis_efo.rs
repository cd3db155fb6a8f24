//! Enhanced fan-out on kinesis-local (moto has no SubscribeToShard): a consumer with `--efo`
//! reads four shards while another application reads the same stream by polling; a shard is
//! split mid-run; the fan-out consumer is killed and restarted: both tables hold every row once.

use std::process::Stdio;
use std::time::Duration;

use kappa_tests::{KinesisLocal, aws_config, expect_status, kappa, read_lake, run};

use crate::support::{assert_sales_lake, kill_repeatedly, sales_files};

fn consumer(endpoint: &str, lake: &std::path::Path, table: &str, extra: &[&str]) -> std::process::Command {
    let mut command = kappa("kappa-consumer", Some(endpoint));
    command.args(["--from", "kinesis:sales", "--table", table, "--event-time", "sale_date", "--flush-rows", "20", "--flush-interval", "300ms"]);
    command.args(["--poll-interval", "200ms", "--shard-refresh", "1s"]).arg("--lake").arg(lake).args(extra);
    command
}

#[tokio::test]
async fn enhanced_fan_out_beside_a_polling_reader_through_a_split_and_kills_stores_every_row_once() {
    let kinesis = KinesisLocal::start();
    let endpoint = kinesis.endpoint();
    let client = aws_sdk_kinesis::Client::new(&aws_config(&endpoint).await);
    client.create_stream().stream_name("sales").shard_count(4).send().await.unwrap();
    for _ in 0..200 {
        let summary = client.describe_stream_summary().stream_name("sales").send().await.unwrap();
        if summary.stream_description_summary().unwrap().stream_status().as_str() == "ACTIVE" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let files = sales_files();
    let produce = |files: &[std::path::PathBuf]| {
        expect_status(&run(kappa("kappa-producer", Some(&endpoint)).arg("--input").args(files).args(["--to", "kinesis:sales"])), 0);
    };
    produce(&files[..2]);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");

    // Another application polls the same stream all along.
    let polling = consumer(&endpoint, &lake, "polled", &["--until-idle", "10s"]).stderr(Stdio::piped()).spawn().unwrap();
    let fan_out = || consumer(&endpoint, &lake, "fanned", &["--efo", "kappa-test", "--until-idle", "4s"]);
    let kills = kill_repeatedly(3, (1_000, 2_500), Duration::from_secs(90), fan_out);

    // Split shard 0 at the middle of its hash-key range, then write the other half.
    let shards = client.list_shards().stream_name("sales").send().await.unwrap();
    let parent = shards.shards().iter().find(|s| s.shard_id() == "shardId-000000000000").unwrap();
    let range = parent.hash_key_range().unwrap();
    let (low, high): (u128, u128) = (range.starting_hash_key().parse().unwrap(), range.ending_hash_key().parse().unwrap());
    client
        .split_shard()
        .stream_name("sales")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key((low + (high - low) / 2).to_string())
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    produce(&files[2..]);
    let more = kill_repeatedly(2, (1_000, 2_500), Duration::from_secs(90), fan_out);
    eprintln!("{kills} + {more} kills of the fan-out consumer");
    let output = run(&mut fan_out());
    expect_status(&output, 0);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("enhanced fan-out consumer"), "{log}");

    let polled = polling.wait_with_output().unwrap();
    expect_status(&polled, 0);
    assert_sales_lake(&read_lake(&lake.join("polled/gen-000001")));
    let fanned = read_lake(&lake.join("fanned/gen-000001"));
    assert_sales_lake(&fanned);
    let children = fanned.iter().filter(|r| r.file.contains("shardId-000000000004") || r.file.contains("shardId-000000000005")).count();
    assert!(children > 0, "rows were read from the split's children by subscription");
    // The last run read by subscription every shard it had to read: the three parents it had
    // not finished and the split's two children at least.
    assert!(log.matches("reading the shard by enhanced fan-out subscription").count() >= 2, "{log}");
}
