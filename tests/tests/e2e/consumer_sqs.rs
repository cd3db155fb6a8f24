//! The consumer reading SQS (moto): packed messages, deletes after the commit, redelivered and
//! re-sent rows kept once, a crash test, and S3 file drops announced on SQS.

use std::collections::{BTreeMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use kappa_tests::{FaultProxy, Moto, aws_config, delta_log, expect_status, kappa, read_lake, run, s3_client, seed};

use crate::support::{assert_exactly_once, assert_sales_lake, generate_sales_csv, kill_repeatedly, sales_args, sales_files, summary};

async fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&aws_config(endpoint).await)
}

async fn create_queue(client: &aws_sdk_sqs::Client, name: &str) -> String {
    client.create_queue().queue_name(name).send().await.unwrap().queue_url().unwrap().to_string()
}

/// Visible plus in-flight messages.
async fn messages_left(client: &aws_sdk_sqs::Client, url: &str) -> u64 {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    out.attributes().unwrap().values().map(|v| v.parse::<u64>().unwrap()).sum()
}

fn consumer_args(source: &str, lake: &std::path::Path, idle: &str) -> Vec<String> {
    let mut args: Vec<String> = vec!["--from".into(), source.into(), "--lake".into(), lake.display().to_string()];
    args.extend(["--table", "sales", "--event-time", "sale_date", "--until-idle", idle].map(String::from));
    args
}

#[tokio::test]
async fn until_idle_waits_for_a_queue_slow_to_answer_at_start() {
    // Every receiver's first ReceiveMessage takes 1.5 s, three times --until-idle: a consumer
    // that counted idle time from its start would exit 0 having read nothing.
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint);
    let client = sqs_client(&moto.endpoint).await;
    let url = create_queue(&client, "sales").await;
    expect_status(&run(kappa("kappa-producer", Some(&moto.endpoint)).args(sales_args()).args(["--to", "sqs:sales", "--rows-per-message", "7"])), 0);
    proxy.delay("ReceiveMessage", 1.5, 4);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let summary_path = dir.path().join("summary.json");
    let output = run(kappa("kappa-consumer", Some(&proxy.endpoint))
        .args(consumer_args("sqs:sales", &lake, "500ms"))
        .args(["--receivers", "4", "--summary-json"])
        .arg(&summary_path));
    expect_status(&output, 0);
    assert_eq!(summary(&summary_path)["events_read"], 400, "{}", String::from_utf8_lossy(&output.stderr));
    assert_sales_lake(&read_lake(&lake.join("sales/gen-000001")));
    assert_eq!(messages_left(&client, &url).await, 0, "every message deleted after the commit");
}

#[tokio::test]
async fn packed_sales_messages_land_once_and_are_deleted_after_the_commit() {
    let moto = Moto::start();
    let client = sqs_client(&moto.endpoint).await;
    let url = create_queue(&client, "sales").await;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let summary_path = dir.path().join("summary.json");
    let consumer = kappa("kappa-consumer", Some(&moto.endpoint))
        .args(consumer_args("sqs:sales", &lake, "3s"))
        .arg("--summary-json")
        .arg(&summary_path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    expect_status(&run(kappa("kappa-producer", Some(&moto.endpoint)).args(sales_args()).args(["--to", "sqs:sales", "--rows-per-message", "7"])), 0);
    // The same file sent again (a producer retry after a timeout): same identities.
    expect_status(&run(kappa("kappa-producer", Some(&moto.endpoint)).arg("-i").arg(&sales_files()[0]).args(["--to", "sqs:sales"])), 0);
    let output = consumer.wait_with_output().unwrap();
    expect_status(&output, 0);
    assert_sales_lake(&read_lake(&lake.join("sales/gen-000001")));
    let s = summary(&summary_path);
    assert_eq!(s["events_read"], 500, "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(s["duplicates_dropped"], 100);
    // 58 messages of up to 7 rows, plus the re-send: 100 rows packed (by default, up to 64 KiB)
    // into one message. moto may hand one message to two concurrent receivers (its receive is
    // not thread-safe): received counts that too.
    let sent = 400u64.div_ceil(7) + 1;
    assert_eq!(s["messages_deleted"].as_u64().unwrap(), sent, "each message deleted once");
    assert!(s["messages_received"].as_u64().unwrap() >= sent);
    assert_eq!(messages_left(&client, &url).await, 0, "every message deleted once committed");
}

#[tokio::test]
async fn sigkill_during_a_20k_row_sqs_ingest_loses_and_doubles_nothing() {
    const ROWS: usize = 20_000;
    let moto = Moto::start();
    let client = sqs_client(&moto.endpoint).await;
    let url = create_queue(&client, "sales").await;
    let dir = tempfile::tempdir().unwrap();
    let csv = generate_sales_csv(dir.path(), ROWS as u64);
    expect_status(&run(kappa("kappa-producer", Some(&moto.endpoint)).arg("-i").arg(&csv).args(["--to", "sqs:sales", "--rows-per-message", "200"])), 0);
    let lake = dir.path().join("lake");
    // Killed runs leave their messages invisible for the 10 s visibility timeout: runs wait
    // longer than that before calling the queue idle.
    let summary_path = dir.path().join("summary.json");
    let args = |idle: &str| {
        let mut args = consumer_args("sqs:sales", &lake, idle);
        // moto's ReceiveMessage takes ~250 ms with hundreds of messages queued and fails (HTTP
        // 500) under concurrent receives: 100 messages of 200 rows, one receiver. Flushes of
        // 200 rows make commits land between kills (31 day partitions of ~650 rows each).
        args.extend(["--flush-rows", "200", "--visibility-timeout", "10s", "--receivers", "1"].map(String::from));
        let column = args.iter().position(|a| a == "sale_date").unwrap();
        args[column] = "sale_time".into(); // the generator's time column
        args
    };
    let kills = kill_repeatedly(6, (1000, 4000), Duration::from_secs(300), || {
        let mut command = kappa("kappa-consumer", Some(&moto.endpoint));
        command.args(args("12s"));
        command
    });
    assert!(kills >= 2, "only {kills} kills landed");
    let output = run(kappa("kappa-consumer", Some(&moto.endpoint)).args(args("12s")).arg("--summary-json").arg(&summary_path));
    expect_status(&output, 0);
    eprintln!("final run: {}", summary(&summary_path));
    // Only the files the Delta log names are the table. A consumer of a queue leaves the files
    // of a flush killed before its commit where they are (their names are its run's, never
    // written again; another consumer of the queue may still commit its own): vacuum deletes
    // them. Reading every file in the directory once counted such a flush's 2,000 rows twice.
    let table = lake.join("sales");
    let named = delta_log(&table).expect("a Delta table").files;
    let committed = |file: &str| named.contains(&format!("gen-000001/{file}"));
    let (rows, left): (Vec<_>, Vec<_>) = read_lake(&table.join("gen-000001")).into_iter().partition(|r| committed(&r.file));
    let left: HashSet<&str> = left.iter().map(|r| r.file.as_str()).collect();
    eprintln!("{} files of killed flushes no commit names", left.len());
    let ids: HashSet<&str> = rows.iter().map(|r| r.row["sale_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), ROWS, "every row after {kills} kills");
    assert_eq!(rows.len(), ROWS, "no row twice");
    assert_exactly_once(&table, ROWS as u64);
    assert_eq!(messages_left(&client, &url).await, 0, "every message deleted");
}

/// A bucket whose ObjectCreated notifications go to a new queue, as in the users' pipelines
/// (S3 itself announces each upload). Returns the queue URL.
async fn landing_bucket(sqs: &aws_sdk_sqs::Client, s3: &aws_sdk_s3::Client, bucket: &str, queue: &str) -> String {
    let url = create_queue(sqs, queue).await;
    let arn = sqs.get_queue_attributes().queue_url(&url).attribute_names(QueueAttributeName::QueueArn).send().await.unwrap().attributes().unwrap()
        [&QueueAttributeName::QueueArn]
        .clone();
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let notify = aws_sdk_s3::types::QueueConfiguration::builder().queue_arn(arn).events(aws_sdk_s3::types::Event::from("s3:ObjectCreated:*")).build().unwrap();
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(aws_sdk_s3::types::NotificationConfiguration::builder().queue_configurations(notify).build())
        .send()
        .await
        .unwrap();
    url
}

#[tokio::test]
async fn seed_sales_csvs_dropped_in_s3_become_four_day_partitions() {
    let moto = Moto::start();
    let sqs = sqs_client(&moto.endpoint).await;
    let s3 = s3_client(&moto.endpoint).await;
    let url = landing_bucket(&sqs, &s3, "landing", "drops").await;
    for file in sales_files() {
        let key = format!("incoming/{}", file.file_name().unwrap().to_string_lossy());
        s3.put_object().bucket("landing").key(key).body(std::fs::read(&file).unwrap().into()).send().await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let output = run(kappa("kappa-consumer", Some(&moto.endpoint)).args(consumer_args("sqs+s3:drops", &lake, "3s")));
    expect_status(&output, 0);
    assert_sales_lake(&read_lake(&lake.join("sales/gen-000001")));
    assert_eq!(messages_left(&sqs, &url).await, 0);
}

#[tokio::test]
async fn orders_json_dropped_in_s3_become_23_rows_by_order_date() {
    let moto = Moto::start();
    let sqs = sqs_client(&moto.endpoint).await;
    let s3 = s3_client(&moto.endpoint).await;
    let url = landing_bucket(&sqs, &s3, "landing", "drops").await;
    let orders = seed("orders/orders_ETL.json");
    let data = std::fs::read(&orders).unwrap();
    s3.put_object().bucket("landing").key("incoming/orders ETL.json").body(data.clone().into()).send().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let summary_path = dir.path().join("summary.json");
    let output = run(kappa("kappa-consumer", Some(&moto.endpoint))
        .args(["--from", "sqs+s3:drops", "--lake"])
        .arg(&lake)
        .args(["--table", "orders", "--explode", "products", "--event-time", "order_date", "--until-idle", "3s", "--summary-json"])
        .arg(&summary_path));
    expect_status(&output, 0);
    let rows = read_lake(&lake.join("orders/gen-000001"));
    assert_eq!(rows.len(), 23, "{}", String::from_utf8_lossy(&output.stderr));
    // Per order_date, as many rows as the orders of that day have products.
    let json: Vec<serde_json::Value> = serde_json::from_slice(&data).unwrap();
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for order in &json {
        let day = order["order_date"].as_str().unwrap();
        let partition = format!("year={}/month={}/day={}", &day[..4], &day[5..7], &day[8..10]);
        *expected.entry(partition).or_default() += order["products"].as_array().map_or(1, |p| p.len().max(1));
    }
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    for row in &rows {
        *found.entry(row.partition.clone()).or_default() += 1;
        assert!(row.row.contains_key("customer_name") && row.row.contains_key("products_name"), "flattened and exploded: {:?}", row.row);
    }
    assert_eq!(found, expected);
    let s = summary(&summary_path);
    assert_eq!((s["objects_read"].as_u64(), s["messages_deleted"].as_u64()), (Some(1), Some(s["messages_received"].as_u64().unwrap())));
    assert_eq!(messages_left(&sqs, &url).await, 0);
}

#[tokio::test]
async fn unreadable_drops_are_quarantined_with_their_reason_and_the_good_file_lands() {
    let moto = Moto::start();
    let sqs = sqs_client(&moto.endpoint).await;
    let s3 = s3_client(&moto.endpoint).await;
    let url = landing_bucket(&sqs, &s3, "landing", "drops").await;
    let good = &sales_files()[0];
    s3.put_object().bucket("landing").key("in/day19.csv").body(std::fs::read(good).unwrap().into()).send().await.unwrap();
    s3.put_object().bucket("landing").key("in/broken.json").body(b"[{\"sale_id\": 1,".to_vec().into()).send().await.unwrap();
    s3.put_object().bucket("landing").key("in/notes.xml").body(b"<notes/>".to_vec().into()).send().await.unwrap();
    sqs.send_message().queue_url(&url).message_body("hello, not a notification").send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let summary_path = dir.path().join("summary.json");
    let output = run(kappa("kappa-consumer", Some(&moto.endpoint)).args(consumer_args("sqs+s3:drops", &lake, "3s")).arg("--summary-json").arg(&summary_path));
    expect_status(&output, 0);
    assert_eq!(read_lake(&lake.join("sales/gen-000001")).len(), 100, "the good file lands whole");
    let mut reasons = Vec::new();
    for entry in std::fs::read_dir(lake.join("sales/_errors/gen-000001")).unwrap() {
        for line in std::fs::read_to_string(entry.unwrap().path()).unwrap().lines() {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(!record["payload"].as_str().unwrap().is_empty(), "the message is kept: {record}");
            reasons.push(record["reason"].as_str().unwrap().to_string());
        }
    }
    reasons.sort();
    assert_eq!(reasons.len(), 3, "{reasons:#?}");
    assert!(reasons.iter().any(|r| r.contains("s3://landing/in/broken.json") && r.contains("not JSON")), "{reasons:#?}");
    assert!(reasons.iter().any(|r| r.contains("s3://landing/in/notes.xml") && r.contains("unknown file type")), "{reasons:#?}");
    assert!(reasons.iter().any(|r| r.contains("not an S3 event notification")), "{reasons:#?}");
    assert_eq!(summary(&summary_path)["quarantined"], 3);
    assert_eq!(messages_left(&sqs, &url).await, 0, "quarantined messages are deleted too");
}

#[tokio::test]
async fn a_message_received_too_often_is_quarantined_whole_and_deleted() {
    let moto = Moto::start();
    let sqs = sqs_client(&moto.endpoint).await;
    let url = create_queue(&sqs, "sales").await;
    let body = r#"{"sale_id":"S1","sale_date":"2025-03-19","total_amount":1.5}"#;
    sqs.send_message().queue_url(&url).message_body(body).send().await.unwrap();
    // Three receives that never commit: a consumer that crashed on it three times.
    for _ in 0..3 {
        let got = sqs.receive_message().queue_url(&url).visibility_timeout(0).wait_time_seconds(1).send().await.unwrap();
        assert_eq!(got.messages().len(), 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let output = run(kappa("kappa-consumer", Some(&moto.endpoint)).args(consumer_args("sqs:sales", &lake, "2s")).args(["--max-receives", "3"]));
    expect_status(&output, 0);
    let errors = std::fs::read_dir(lake.join("sales/_errors/gen-000001")).unwrap().next().unwrap().unwrap().path();
    let record: serde_json::Value = serde_json::from_str(std::fs::read_to_string(errors).unwrap().lines().next().unwrap()).unwrap();
    assert!(record["reason"].as_str().unwrap().contains("received 4 times"), "{record}");
    assert_eq!(record["payload"], body);
    assert!(read_lake(&lake.join("sales/gen-000001")).is_empty());
    assert_eq!(messages_left(&sqs, &url).await, 0);
}

#[tokio::test]
async fn a_drain_waits_for_messages_a_killed_consumer_held() {
    let moto = Moto::start();
    let client = sqs_client(&moto.endpoint).await;
    let url = create_queue(&client, "sales").await;
    expect_status(&run(kappa("kappa-producer", Some(&moto.endpoint)).args(sales_args()).args(["--to", "sqs:sales", "--rows-per-message", "10"])), 0);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");

    // SQS itself accepts 0 s, but the consumer renews the timeout: it says why it needs 10 s.
    let output = run(kappa("kappa-consumer", Some(&moto.endpoint)).args(consumer_args("sqs:sales", &lake, "1s")).args(["--visibility-timeout", "5s"]));
    expect_status(&output, 2);
    assert!(String::from_utf8_lossy(&output.stderr).contains("SQS itself accepts 0s to 12h"), "{}", String::from_utf8_lossy(&output.stderr));

    // A consumer takes every message (its flush is an hour away) and is killed holding them.
    let mut holder = kappa("kappa-consumer", Some(&moto.endpoint))
        .args(consumer_args("sqs:sales", &lake, "1h"))
        .args(["--visibility-timeout", "30s", "--flush-interval", "1h"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while in_flight(&client, &url).await < 40 {
        assert!(holder.try_wait().unwrap().is_none(), "the holding consumer exited");
        assert!(std::time::Instant::now() < deadline, "the consumer never took the messages");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(in_flight(&client, &url).await, 40, "all 40 messages invisible, none deleted");

    // Invisible for 20 s more at least: a drain told to wait 1 s for them gives up, and says so.
    let output = run(kappa("kappa-consumer", Some(&moto.endpoint)).args(consumer_args("sqs:sales", &lake, "1s")).args(["--in-flight-wait", "1s"]));
    expect_status(&output, 0);
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("still in flight elsewhere after --in-flight-wait 1s") && text.contains("messages=40"), "{text}");
    assert_eq!(text.matches("still in flight elsewhere").count(), 1, "said once: {text}");
    assert_eq!(in_flight(&client, &url).await, 40, "left in flight, none taken");

    // The drain sees an empty queue at first, and waits for the 40 to come back.
    let summary_path = dir.path().join("summary.json");
    let output = run(kappa("kappa-consumer", Some(&moto.endpoint)).args(consumer_args("sqs:sales", &lake, "2s")).arg("--summary-json").arg(&summary_path));
    expect_status(&output, 0);
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("in flight elsewhere"), "{text}");
    assert_eq!(summary(&summary_path)["rows_written"], 400, "{text}");
    assert_sales_lake(&read_lake(&lake.join("sales/gen-000001")));
    assert_eq!(messages_left(&client, &url).await, 0);
}

async fn in_flight(client: &aws_sdk_sqs::Client, url: &str) -> u64 {
    let out = client.get_queue_attributes().queue_url(url).attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible).send().await.unwrap();
    out.attributes().unwrap()[&QueueAttributeName::ApproximateNumberOfMessagesNotVisible].parse().unwrap()
}

/// The way back from the dead-letter queue (docs/operations.md, issue 62): messages that went
/// there past the consumer (received too often while consumers crashed) are read by a consumer
/// of the dead-letter queue into the same table, through the same path: their rows committed
/// once beside the others, a bad one quarantined with its reason, the queue left empty.
#[tokio::test]
async fn messages_in_the_dead_letter_queue_come_back_through_the_same_path() {
    let moto = Moto::start();
    let sqs = sqs_client(&moto.endpoint).await;
    let dlq = create_queue(&sqs, "sales-dlq").await;
    let attributes = sqs.get_queue_attributes().queue_url(&dlq).attribute_names(QueueAttributeName::QueueArn).send().await.unwrap();
    let dlq_arn = attributes.attributes().unwrap()[&QueueAttributeName::QueueArn].clone();
    let redrive = format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"2"}}"#);
    let url =
        sqs.create_queue().queue_name("sales").attributes(QueueAttributeName::RedrivePolicy, redrive).send().await.unwrap().queue_url().unwrap().to_string();
    expect_status(&run(kappa("kappa-producer", Some(&moto.endpoint)).args(sales_args()).args(["--to", "sqs:sales", "--rows-per-message", "10"])), 0);
    let bad = "{ not json";
    sqs.send_message().queue_url(&url).message_body(bad).send().await.unwrap();
    // Some messages received twice and never deleted (consumers that crashed on them): SQS moves
    // them to the dead-letter queue at their next receive.
    for _ in 0..2 {
        let got = sqs.receive_message().queue_url(&url).max_number_of_messages(10).visibility_timeout(0).send().await.unwrap();
        assert!(!got.messages().is_empty());
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let output = run(kappa("kappa-consumer", Some(&moto.endpoint)).args(consumer_args("sqs:sales", &lake, "2s")));
    expect_status(&output, 0);
    let first = read_lake(&lake.join("sales/gen-000001")).len();
    let waiting = messages_left(&sqs, &dlq).await;
    assert!(waiting > 0 && first < 400, "{waiting} messages in the dead-letter queue, {first} rows committed");
    // The way back: a consumer of the dead-letter queue, into the same table.
    let output = run(kappa("kappa-consumer", Some(&moto.endpoint)).args(consumer_args("sqs:sales-dlq", &lake, "2s")));
    expect_status(&output, 0);
    let rows = read_lake(&lake.join("sales/gen-000001"));
    assert_sales_lake(&rows);
    assert_exactly_once(&lake.join("sales"), 400);
    assert_eq!(messages_left(&sqs, &dlq).await, 0, "the dead-letter queue is empty");
    assert_eq!(messages_left(&sqs, &url).await, 0);
    // The bad message, wherever it was, is quarantined with its reason.
    let errors: Vec<serde_json::Value> = std::fs::read_dir(lake.join("sales/_errors/gen-000001"))
        .unwrap()
        .flat_map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<_>>())
        .collect();
    assert!(errors.iter().any(|e| e["payload"] == bad && e["reason"].as_str().is_some_and(|r| !r.is_empty())), "{errors:?}");
}
