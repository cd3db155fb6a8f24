//! Several consumers of one SQS queue writing one table (competing consumers, no leases): a
//! consumer paused past its messages' visibility timeout while others take them, and a file
//! the producer sends twice. Every outside reader must see every row once, and all exit 0.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kappa_tests::{Moto, aws_config, expect_status, kappa, run};

use crate::support::{assert_exactly_once, committed_rows, unique_sales_csv};

struct Consumer {
    id: &'static str,
    child: Child,
    log: std::path::PathBuf,
}

fn consumer(moto: &Moto, lake: &std::path::Path, dir: &std::path::Path, id: &'static str, extra: &[&str]) -> Consumer {
    let log = dir.join(format!("{id}.log"));
    let child = kappa("kappa-consumer", Some(&moto.endpoint))
        .args(["--from", "sqs:sales", "--lake"])
        .arg(lake)
        .args(["--table", "sales", "--event-time", "sale_time", "--worker-id", id, "--visibility-timeout", "10s", "--until-idle", "4s"])
        .args(["--status-interval", "1s"])
        .args(extra)
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    Consumer { id, child, log }
}

fn signal(child: &Child, signal: &str) {
    assert!(Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap().success());
}

#[test]
fn three_consumers_of_one_queue_store_every_row_once_when_one_is_paused_past_the_visibility_timeout() {
    let moto = Moto::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(async { aws_sdk_sqs::Client::new(&aws_config(&moto.endpoint).await) });
    runtime.block_on(client.create_queue().queue_name("sales").send()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    let rows = 3_000;
    let csv = unique_sales_csv(&dir.path().join("a"), rows, "SQ");
    let produce = || run(kappa("kappa-producer", Some(&moto.endpoint)).arg("-i").arg(&csv).args(["--to", "sqs:sales", "--rows-per-message", "5"]));
    expect_status(&produce(), 0);

    // a takes messages, then is paused past their visibility timeout with its flush still ahead
    // (30 s): b and c receive those messages again meanwhile and commit them first.
    let port = kappa_tests::free_port();
    let mut a = consumer(&moto, &lake, dir.path(), "a", &["--flush-interval", "30s", "--metrics-addr", &format!("127.0.0.1:{port}")]);
    kappa_tests::wait_for_metric(&mut a.child, port, "events_read_total", 30, Duration::from_secs(30));
    signal(&a.child, "-STOP");
    let paused = Instant::now();
    let b = consumer(&moto, &lake, dir.path(), "b", &["--flush-interval", "1s"]);
    let c = consumer(&moto, &lake, dir.path(), "c", &["--flush-interval", "1s"]);
    // The same file again, as a producer retrying a whole upload would: every row a duplicate.
    expect_status(&produce(), 0);
    std::thread::sleep(Duration::from_secs(20).saturating_sub(paused.elapsed()));
    signal(&a.child, "-CONT");

    for consumer in [a, b, c] {
        let output = consumer.child.wait_with_output().unwrap();
        let text = std::fs::read_to_string(&consumer.log).unwrap();
        assert!(output.status.success(), "consumer {} exited with {}:\n{text}", consumer.id, output.status);
        if consumer.id == "a" {
            // Its commit followed theirs, and left out what they had stored.
            assert!(text.contains("stored some of this commit's rows first: they were taken out"), "a's log:\n{text}");
        }
    }
    assert_eq!(committed_rows(&table), rows, "no row twice in the Delta log's statistics");
    assert_exactly_once(&table, rows);
    // Every message was deleted once its rows were committed, by one consumer or another.
    let left = runtime.block_on(async {
        let url = client.get_queue_url().queue_name("sales").send().await.unwrap().queue_url().unwrap().to_string();
        let out = client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        out.attributes().unwrap().values().map(|v| v.parse::<u64>().unwrap()).sum::<u64>()
    });
    assert_eq!(left, 0, "messages left in the queue");
}
