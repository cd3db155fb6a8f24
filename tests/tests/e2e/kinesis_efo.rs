//! Enhanced fan-out on kinesis-local (moto has no SubscribeToShard): a consumer with `--efo`
//! reads four shards while another application reads the same stream by polling; a shard is
//! split mid-run; the fan-out consumer is killed and restarted: both tables hold every row once.
//! And a shard whose subscription is refused keeps an `--until-idle` run going until it is read.

use std::process::Stdio;
use std::time::{Duration, Instant};

use kappa_tests::{KinesisLocal, aws_config, expect_status, kappa, read_lake, run};

use crate::support::{assert_sales_lake, kill_repeatedly, sales_files};

fn consumer(endpoint: &str, lake: &std::path::Path, table: &str, extra: &[&str]) -> std::process::Command {
    let mut command = kappa("kappa-consumer", Some(endpoint));
    command.args(["--from", "kinesis:sales", "--table", table, "--event-time", "sale_date", "--flush-rows", "20", "--flush-interval", "300ms"]);
    command.args(["--poll-interval", "200ms", "--shard-refresh", "1s"]).arg("--lake").arg(lake).args(extra);
    command
}

/// Creates the stream `sales` with `shards` shards and waits until it is ACTIVE.
async fn create_sales_stream(client: &aws_sdk_kinesis::Client, shards: i32) {
    client.create_stream().stream_name("sales").shard_count(shards).send().await.unwrap();
    for _ in 0..200 {
        let summary = client.describe_stream_summary().stream_name("sales").send().await.unwrap();
        if summary.stream_description_summary().unwrap().stream_status().as_str() == "ACTIVE" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the stream sales did not become ACTIVE within 10 s");
}

#[tokio::test]
async fn enhanced_fan_out_beside_a_polling_reader_through_a_split_and_kills_stores_every_row_once() {
    let kinesis = KinesisLocal::start();
    let endpoint = kinesis.endpoint();
    let client = aws_sdk_kinesis::Client::new(&aws_config(&endpoint).await);
    create_sales_stream(&client, 4).await;
    let files = sales_files();
    let produce = |files: &[std::path::PathBuf]| {
        expect_status(&run(kappa("kappa-producer", Some(&endpoint)).arg("--input").args(files).args(["--to", "kinesis:sales"])), 0);
    };
    produce(&files[..2]);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");

    // Another application polls the same stream all along (until it has read every row: then
    // SIGTERM, which drains and commits).
    let polling_port = kappa_tests::free_port();
    let mut polling = consumer(&endpoint, &lake, "polled", &["--metrics-addr", &format!("127.0.0.1:{polling_port}")]).stderr(Stdio::piped()).spawn().unwrap();
    // Subscriptions renewed every 800 ms (instead of 290 s): renewals lose and repeat nothing.
    let fan_out = || {
        let mut command = consumer(&endpoint, &lake, "fanned", &["--efo", "kappa-test", "--until-idle", "4s"]);
        command.env("KAPPA_EFO_RENEW_MS", "800").env("KAPPA_LOG", "info,kappa_consumer::source::kinesis=debug");
        command
    };
    let kills = kill_repeatedly(3, (1_000, 2_500), Duration::from_secs(90), fan_out);

    // Split shard 0 at the middle of its hash-key range; two more kills.
    crate::support::split_in_half(&client, "sales", "shardId-000000000000").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let more = kill_repeatedly(2, (1_000, 2_500), Duration::from_secs(90), fan_out);
    eprintln!("{kills} + {more} kills of the fan-out consumer");
    // The other half, paced (100 rows/s), while the last run reads: it arrives over several
    // renewals of the children's subscriptions.
    let port = kappa_tests::free_port();
    let mut last = fan_out().args(["--metrics-addr", &format!("127.0.0.1:{port}")]).stderr(Stdio::piped()).spawn().unwrap();
    kappa_tests::wait_until(&mut last, "the fan-out consumer", Duration::from_secs(60), || kappa_tests::ready(port)).unwrap();
    expect_status(&run(kappa("kappa-producer", Some(&endpoint)).arg("--input").args(&files[2..]).args(["--to", "kinesis:sales", "--rate", "100"])), 0);
    let output = last.wait_with_output().unwrap();
    expect_status(&output, 0);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("enhanced fan-out consumer"), "{log}");

    kappa_tests::wait_for_metric(&mut polling, polling_port, "events_read_total", 400, Duration::from_secs(60));
    expect_status(&run(std::process::Command::new("kill").args(["-TERM", &polling.id().to_string()])), 0);
    let polled = polling.wait_with_output().unwrap();
    expect_status(&polled, 0);
    let polled_rows = read_lake(&lake.join("polled/gen-000001"));
    assert_eq!(polled_rows.len(), 400, "the polling reader's table");
    assert_sales_lake(&polled_rows);
    let fanned = read_lake(&lake.join("fanned/gen-000001"));
    assert_eq!(fanned.len(), 400, "the fan-out reader's table\n{log}");
    assert_sales_lake(&fanned);
    let children = fanned.iter().filter(|r| r.file.contains("shardId-000000000004") || r.file.contains("shardId-000000000005")).count();
    assert!(children > 0, "rows were read from the split's children by subscription");
    // The last run read by subscription every shard it had to read: the three parents it had
    // not finished and the split's two children at least.
    assert!(log.matches("reading the shard by enhanced fan-out subscription").count() >= 2, "{log}");
    assert!(log.contains("renewing the subscription"), "{log}");
}

/// What happens to a consumer restarted right after a kill: Kinesis refuses its subscription
/// while the dead one's is still held, and rows may arrive meanwhile. Here the test holds the
/// shard's subscription itself, taken in one of the consumer's renewal gaps, for longer than
/// `--until-idle`, and rows arrive. The consumer must not take the silence for idleness: it
/// reads the rows once the subscription is free, and only then drains.
#[tokio::test]
async fn an_until_idle_run_waits_for_a_shard_whose_subscription_is_refused() {
    let kinesis = KinesisLocal::start();
    let endpoint = kinesis.endpoint();
    let client = aws_sdk_kinesis::Client::new(&aws_config(&endpoint).await);
    create_sales_stream(&client, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let port = kappa_tests::free_port();
    let mut fan_out = consumer(&endpoint, &lake, "fanned", &["--efo", "kappa-test", "--until-idle", "3s", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .env("KAPPA_EFO_RENEW_MS", "800")
        .env("KAPPA_LOG", "info,kappa_consumer::source::kinesis=debug")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Ready: its subscription answered, and the shard is at its (empty) tip.
    kappa_tests::wait_until(&mut fan_out, "the fan-out consumer", Duration::from_secs(60), || kappa_tests::ready(port)).unwrap();

    let stream_arn = client.describe_stream_summary().stream_name("sales").send().await.unwrap().stream_description_summary().unwrap().stream_arn().to_string();
    let described = client.describe_stream_consumer().stream_arn(&stream_arn).consumer_name("kappa-test").send().await.unwrap();
    let consumer_arn = described.consumer_description().unwrap().consumer_arn().to_string();
    let latest = aws_sdk_kinesis::types::StartingPosition::builder().r#type(aws_sdk_kinesis::types::ShardIteratorType::Latest).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let held = loop {
        let subscribe = client.subscribe_to_shard().consumer_arn(&consumer_arn).shard_id("shardId-000000000000").starting_position(latest.clone());
        // kinesis-local refuses in the response's first message, not its status.
        if let Ok(mut out) = subscribe.send().await
            && let Ok(Some(_)) = out.event_stream.recv().await
        {
            break out;
        }
        assert!(Instant::now() < deadline, "the test could not take the shard's subscription within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let taken = Instant::now();
    expect_status(&run(kappa("kappa-producer", Some(&endpoint)).arg("--input").arg(&sales_files()[0]).args(["--to", "kinesis:sales"])), 0);
    // Twice --until-idle without a subscription: a consumer counting that as idle has drained.
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(taken.elapsed())).await;
    assert!(fan_out.try_wait().unwrap().is_none(), "the consumer drained while its shard's subscription was refused and rows waited");
    drop(held);

    let deadline = Instant::now() + Duration::from_secs(90);
    while fan_out.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = fan_out.kill();
            panic!(
                "the consumer did not drain within 90 s of the subscription being freed\n{}",
                String::from_utf8_lossy(&fan_out.wait_with_output().unwrap().stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = fan_out.wait_with_output().unwrap();
    expect_status(&output, 0);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("Another active subscription exists"), "the consumer's subscription was never refused\n{log}");
    let rows = read_lake(&lake.join("fanned/gen-000001"));
    assert_eq!(rows.len(), 100, "rows of {} in the table\n{log}", sales_files()[0].display());
    assert!(
        rows.iter().all(|r| r.partition == "year=2025/month=03/day=19"),
        "{:?}",
        rows.iter().map(|r| &r.partition).collect::<std::collections::BTreeSet<_>>()
    );
}
