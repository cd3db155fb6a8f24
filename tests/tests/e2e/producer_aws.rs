//! The producer against moto's AWS APIs, through the request-counting fault proxy.

use aws_sdk_kinesis::types::ShardIteratorType;
use kappa_tests::{FaultProxy, Moto, aws_config, expect_status, kappa, parse_events, run, s3_client};

use crate::support::{Event, assert_sales_exactly_once, sales_args, summary};

struct Emulator {
    moto: Moto,
    proxy: FaultProxy,
}

fn emulator() -> Emulator {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint);
    Emulator { moto, proxy }
}

async fn read_stream(endpoint: &str, stream: &str) -> Vec<Event> {
    let client = aws_sdk_kinesis::Client::new(&aws_config(endpoint).await);
    let shards = client.list_shards().stream_name(stream).send().await.unwrap().shards.unwrap_or_default();
    let mut events = Vec::new();
    for shard in shards {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(it) = iterator {
            let out = client.get_records().shard_iterator(it).limit(10_000).send().await.unwrap();
            if out.records.is_empty() {
                break;
            }
            for record in &out.records {
                events.extend(parse_events(record.data.as_ref()));
            }
            iterator = out.next_shard_iterator;
        }
    }
    events
}

async fn drain_queue(endpoint: &str, queue: &str) -> Vec<(usize, Vec<Event>)> {
    let client = aws_sdk_sqs::Client::new(&aws_config(endpoint).await);
    let url = client.get_queue_url().queue_name(queue).send().await.unwrap().queue_url.unwrap();
    let mut messages = Vec::new();
    loop {
        let out = client.receive_message().queue_url(&url).max_number_of_messages(10).visibility_timeout(300).send().await.unwrap();
        let batch = out.messages.unwrap_or_default();
        if batch.is_empty() {
            break;
        }
        for m in batch {
            let events = parse_events(m.body().unwrap().as_bytes());
            messages.push((events.len(), events));
        }
    }
    messages
}

#[tokio::test]
async fn sales_to_kinesis_in_one_put_records_call() {
    let emulator = emulator();
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    let output = run(kappa("kappa-producer", Some(&emulator.proxy.endpoint))
        .args(sales_args())
        .args(["--to", "kinesis:sales", "--create", "--shards", "4", "--summary-json"])
        .arg(&summary_path));
    expect_status(&output, 0);
    assert_eq!(emulator.proxy.entries("PutRecords"), vec![400], "400 rows fit one PutRecords call");
    assert_eq!(emulator.proxy.requests("CreateStream"), 1);
    let events = read_stream(&emulator.moto.endpoint, "sales").await;
    assert_sales_exactly_once(&events);
    let client = aws_sdk_kinesis::Client::new(&aws_config(&emulator.moto.endpoint).await);
    assert_eq!(client.list_shards().stream_name("sales").send().await.unwrap().shards().len(), 4);
    assert_eq!(summary(&summary_path)["requests"]["PutRecords"], 1);
}

#[tokio::test]
async fn kinesis_batches_respect_500_records_and_retry_only_failed_entries() {
    let emulator = emulator();
    let dir = tempfile::tempdir().unwrap();
    // 400 rows looped 3 times = 1200 events: batches of 500, 500, 200.
    emulator.proxy.fail_entries("PutRecords", 3, 1);
    let summary_path = dir.path().join("summary.json");
    let output = run(kappa("kappa-producer", Some(&emulator.proxy.endpoint))
        .args(sales_args())
        .args(["--to", "kinesis:sales", "--create", "--shards", "2", "--loop", "3", "--summary-json"])
        .arg(&summary_path));
    expect_status(&output, 0);
    // The first call lost every 3rd of its 500 entries (167); only those were sent again.
    assert_eq!(emulator.proxy.entries("PutRecords"), vec![500, 167, 500, 200]);
    let events = read_stream(&emulator.moto.endpoint, "sales").await;
    assert_eq!(events.len(), 1200);
    let ids: std::collections::HashSet<&str> = events.iter().map(|e| e["_kappa_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1200, "no event twice, none lost");
    let s = summary(&summary_path);
    assert_eq!((s["retries"].as_u64(), s["throttles"].as_u64(), s["events_sent"].as_u64()), (Some(167), Some(167), Some(1200)));
}

#[tokio::test]
async fn sales_to_sqs_packed_to_64_kib_by_default_one_row_per_message_when_asked() {
    let emulator = emulator();
    // The default: as many rows as fit in 64 KiB, the unit SQS bills by.
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    let output = run(kappa("kappa-producer", Some(&emulator.proxy.endpoint))
        .args(sales_args())
        .args(["--to", "sqs:default", "--create", "--summary-json"])
        .arg(&summary_path));
    expect_status(&output, 0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(emulator.proxy.entries("SendMessageBatch"), vec![2], "400 rows (~90 KB) in two messages, one call\n{stderr}");
    let messages = drain_queue(&emulator.moto.endpoint, "default").await;
    for (_, events) in &messages {
        let bytes: usize = events.iter().map(|e| serde_json::to_vec(e).unwrap().len() + 1).sum();
        assert!(bytes <= 65_536 + 1, "message of {bytes} bytes");
    }
    assert_sales_exactly_once(&messages.into_iter().flat_map(|(_, e)| e).collect::<Vec<_>>());
    let s = summary(&summary_path);
    assert_eq!((s["billed_requests"].as_u64(), s["requests_per_million_events"].as_u64()), (Some(2), Some(2_500)), "{s:#}");
    assert!(stderr.contains("2500 API requests per 1M events at these settings, billed as 5000"), "{stderr}");

    let output =
        run(kappa("kappa-producer", Some(&emulator.proxy.endpoint)).args(sales_args()).args(["--to", "sqs:plain", "--create", "--rows-per-message", "1"]));
    expect_status(&output, 0);
    assert_eq!(emulator.proxy.entries("SendMessageBatch")[1..], vec![10; 40], "400 rows, 10 per batch call");
    let messages = drain_queue(&emulator.moto.endpoint, "plain").await;
    assert_eq!(messages.len(), 400);
    assert_sales_exactly_once(&messages.into_iter().flat_map(|(_, e)| e).collect::<Vec<_>>());

    let output =
        run(kappa("kappa-producer", Some(&emulator.proxy.endpoint)).args(sales_args()).args(["--to", "sqs:packed", "--create", "--rows-per-message", "100"]));
    expect_status(&output, 0);
    assert_eq!(emulator.proxy.entries("SendMessageBatch")[41..], [4], "400 rows packed 100 per message: one call of 4 messages");
    let messages = drain_queue(&emulator.moto.endpoint, "packed").await;
    assert_eq!(messages.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![100; 4]);
    assert_sales_exactly_once(&messages.into_iter().flat_map(|(_, e)| e).collect::<Vec<_>>());
}

#[tokio::test]
async fn sqs_packing_respects_the_size_limit_and_retries_only_failed_messages() {
    let emulator = emulator();
    emulator.proxy.fail_entries("SendMessageBatch", 2, 1);
    let limit = 16 * 1024;
    let output = run(kappa("kappa-producer", Some(&emulator.proxy.endpoint)).args(sales_args()).args([
        "--to",
        "sqs:small",
        "--create",
        "--rows-per-message",
        "30",
        "--max-message-bytes",
        &limit.to_string(),
    ]));
    expect_status(&output, 0);
    let entries = emulator.proxy.entries("SendMessageBatch");
    // The first call's messages at even positions failed and were sent again alone.
    assert!(entries[0] > 1, "{entries:?}");
    assert_eq!(entries[1], entries[0].div_ceil(2), "{entries:?}");
    let messages = drain_queue(&emulator.moto.endpoint, "small").await;
    assert_eq!(entries.iter().sum::<u64>(), messages.len() as u64 + entries[1], "every message sent once, failed ones twice");
    for (rows, events) in &messages {
        assert!(*rows <= 30);
        let bytes: usize = events.iter().map(|e| serde_json::to_vec(e).unwrap().len() + 1).sum();
        assert!(bytes <= limit, "message of {bytes} bytes");
    }
    assert!(messages.len() >= 400 / 30, "{} messages", messages.len());
    assert_sales_exactly_once(&messages.into_iter().flat_map(|(_, e)| e).collect::<Vec<_>>());
}

#[tokio::test]
async fn sales_to_firehose_land_in_s3_as_ndjson() {
    let emulator = emulator();
    let config = aws_config(&emulator.moto.endpoint).await;
    let s3 = s3_client(&emulator.moto.endpoint).await;
    s3.create_bucket().bucket("raw-zone").send().await.unwrap();
    crate::support::create_firehose_to_s3(&config, "sales-raw", "raw-zone", "sales/").await;
    emulator.proxy.fail_entries("PutRecordBatch", 4, 1);
    let output = run(kappa("kappa-producer", Some(&emulator.proxy.endpoint)).args(sales_args()).args(["--to", "firehose:sales-raw"]));
    expect_status(&output, 0);
    assert_eq!(emulator.proxy.entries("PutRecordBatch"), vec![400, 100], "one batch, then its 100 failed records alone");
    let objects = s3.list_objects_v2().bucket("raw-zone").prefix("sales/").send().await.unwrap();
    let mut events = Vec::new();
    for object in objects.contents() {
        let body = s3.get_object().bucket("raw-zone").key(object.key().unwrap()).send().await.unwrap().body.collect().await.unwrap().into_bytes();
        assert!(body.ends_with(b"\n"), "records are newline-terminated");
        events.extend(parse_events(&body));
    }
    assert_sales_exactly_once(&events);
}

#[tokio::test]
async fn an_event_over_the_kinesis_record_limit_is_undelivered_and_exit_is_4() {
    let emulator = emulator();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.csv");
    let big = "x".repeat(1_100_000);
    std::fs::write(&input, format!("id,text\n1,small\n2,{big}\n3,small too\n")).unwrap();
    let rejects = dir.path().join("rejects.ndjson");
    let output = run(kappa("kappa-producer", Some(&emulator.proxy.endpoint))
        .arg("-i")
        .arg(&input)
        .args(["--to", "kinesis:big", "--create", "--shards", "1", "--rejects"])
        .arg(&rejects));
    expect_status(&output, 4);
    let events = read_stream(&emulator.moto.endpoint, "big").await;
    let mut ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, vec![1, 3]);
    let line: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&rejects).unwrap().lines().next().unwrap()).unwrap();
    assert!(line["reason"].as_str().unwrap().contains("exceeds the Kinesis record limit"), "{line}");
    assert!(line["raw"].as_str().unwrap().contains("\"id\":2"));
}
