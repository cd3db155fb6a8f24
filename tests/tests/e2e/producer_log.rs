//! The producer onto the embedded log: the seed data end to end, identities, JSON flattening.

use kappa_tests::{expect_status, kappa, run, seed};
use serde_json::json;

use crate::support::{assert_sales_exactly_once, read_log, sales_args, summary};

#[test]
fn seed_sales_reach_the_log_typed_and_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let summary_path = dir.path().join("summary.json");
    let output = run(kappa("kappa-producer", None)
        .args(sales_args())
        .args(["--to", &format!("log:{}", log.display()), "--shards", "4", "--summary-json"])
        .arg(&summary_path));
    expect_status(&output, 0);
    let events = read_log(&log);
    assert_sales_exactly_once(&events);
    let s = summary(&summary_path);
    assert_eq!(s["rows_read"], 400);
    assert_eq!(s["events_sent"], 400);
    assert_eq!(s["rejected"], 0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("rows read      400"), "summary printed: {stderr}");

    // Every shard got a share: the default key spreads rows.
    let opened = kappa_common::log::Log::open(&log).unwrap();
    for shard in 0..4 {
        assert!(opened.shard_end(shard).unwrap() > 50, "shard {shard} has too few records");
    }

    // The log stores the events shaped: values behind a shape id, the names and the types the
    // producer gave them once beside it.
    let record = opened.reader(0, kappa_common::log::StartAt::Earliest).unwrap().next().unwrap().unwrap();
    let (id, values) = kappa_common::shaped::split_shaped(&record.payload).expect("a shaped event");
    let shape_file = log.join(format!("shapes/{id:016x}.json"));
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&shape_file).unwrap()).unwrap();
    let names: Vec<String> = serde_json::from_value(stored["names"].clone()).unwrap();
    let types: Vec<Option<String>> = serde_json::from_value(stored["types"].clone()).unwrap();
    assert_eq!(names[0], "_kappa_id");
    let type_of = |name: &str| types[names.iter().position(|n| n == name).unwrap()].clone();
    assert_eq!((type_of("_kappa_id"), type_of("sale_date"), type_of("quantity")), (None, Some("date".into()), Some("int64".into())), "{stored}");
    assert!(names.iter().any(|n| n == "sale_id") && values.starts_with(b"[\""), "{names:?}");
    let object = opened.event_object(&record.payload).unwrap().into_owned();
    assert!(object.len() > record.payload.len() + 100, "the names are not repeated in the record");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(log.join("log.json")).unwrap()).unwrap();
    assert_eq!(meta["version"], 3);
    // `inspect` shows the object the event stands for, and checks that every shape is there.
    let inspect = run(kappa("kappa-consumer", None).args(["inspect", "--from", &format!("log:{}", log.display()), "--limit", "1"]));
    expect_status(&inspect, 0);
    let shown = String::from_utf8_lossy(&inspect.stdout);
    assert!(shown.contains(&format!("0/0: {}", String::from_utf8_lossy(&object))), "{shown}");
    std::fs::remove_file(&shape_file).unwrap();
    let inspect = run(kappa("kappa-consumer", None).args(["inspect", "--from", &format!("log:{}", log.display())]));
    assert_ne!(inspect.status.code(), Some(0));
    let said = String::from_utf8_lossy(&inspect.stderr);
    assert!(said.contains(&format!("shapes/{id:016x}.json does not exist")), "{said}");
}

#[test]
fn resending_a_file_repeats_its_identities_and_loop_makes_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let file = seed("supermarket/sales/supermarket_sales_20250319.csv");
    let to = format!("log:{}", log.display());
    for _ in 0..2 {
        expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&file).args(["--to", &to])), 0);
    }
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&file).args(["--to", &to, "--loop", "2", "--limit", "150"])), 0);
    let events = read_log(&log);
    assert_eq!(events.len(), 350);
    let ids: std::collections::BTreeSet<&str> = events.iter().map(|e| e["_kappa_id"].as_str().unwrap()).collect();
    // Runs 1 and 2 share their 100 identities; the looped run's second pass (50 rows) is new.
    assert_eq!(ids.len(), 150);
    // The partition key defaults to the identity, so a re-sent row lands on the same shard.
    let opened = kappa_common::log::Log::open(&log).unwrap();
    let total: u64 = (0..opened.shard_count()).map(|s| opened.shard_end(s).unwrap()).sum();
    assert_eq!(total, 350);
}

#[test]
fn nested_orders_explode_into_23_rows() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let schema_path = dir.path().join("orders.schema.json");
    let output = run(kappa("kappa-producer", None)
        .arg("-i")
        .arg(seed("orders/orders_ETL.json"))
        .args(["--explode", "products", "--to", &format!("log:{}", log.display()), "--write-schema"])
        .arg(&schema_path));
    expect_status(&output, 0);
    let events = read_log(&log);
    assert_eq!(events.len(), 23);
    let mut columns: Vec<&str> = events[0].keys().map(String::as_str).collect();
    columns.sort();
    assert_eq!(
        columns,
        [
            "_kappa_id",
            "customer_address",
            "customer_customer_id",
            "customer_email",
            "customer_name",
            "order_date",
            "order_id",
            "products_category",
            "products_name",
            "products_price",
            "products_product_id",
            "products_quantity",
            "total_amount"
        ]
    );
    let mouse = events.iter().find(|e| e["products_name"] == json!("Wireless Mouse")).expect("first product");
    assert_eq!(mouse["order_id"], json!(1));
    assert_eq!(mouse["customer_name"], json!("John Doe"));
    assert_eq!(mouse["products_price"], json!(25.0));
    assert_eq!(mouse["products_quantity"], json!(2));
    let schema: serde_json::Value = serde_json::from_slice(&std::fs::read(&schema_path).unwrap()).unwrap();
    let price = schema["fields"].as_array().unwrap().iter().find(|f| f["name"] == "products_price").unwrap();
    assert_eq!(price["type"], "float64");
}

#[test]
fn people_csv_rate_limit_and_partition_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let started = std::time::Instant::now();
    let output = run(kappa("kappa-producer", None).arg("-i").arg(seed("people/generated_mock_data.csv")).args([
        "--to",
        &format!("log:{}", log.display()),
        "--rate",
        "500",
        "--limit",
        "300",
        "--partition-key",
        "Country",
    ]));
    expect_status(&output, 0);
    let elapsed = started.elapsed();
    // 300 rows at 500/s: the first 50 are a burst, the other 250 take ~0.5 s.
    assert!(elapsed >= std::time::Duration::from_millis(450), "rate not applied: {elapsed:?}");
    let events = read_log(&log);
    assert_eq!(events.len(), 300);
    assert!(events.iter().all(|e| e["Age"].is_i64() && e["Date"].is_string()));
    // The key is the row's Country, and the same country lands on the same shard.
    let opened = kappa_common::log::Log::open(&log).unwrap();
    for shard in 0..opened.shard_count() {
        let mut reader = opened.reader(shard, kappa_common::log::StartAt::Earliest).unwrap();
        while let Some(record) = reader.next().unwrap() {
            let event: serde_json::Value = serde_json::from_slice(&opened.event_object(&record.payload).unwrap()).unwrap();
            assert_eq!(record.key, event["Country"].as_str().unwrap().as_bytes());
            assert_eq!(opened.shard_for_key(&record.key), shard);
        }
    }
}

#[test]
fn stdin_input_with_source_id_and_event_time_speedup() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    // Four days of sales (2025-03-19 .. 22) replayed at 3 days per 1.5 s.
    let mut csv = Vec::new();
    for (i, file) in crate::support::sales_files().iter().enumerate() {
        let text = std::fs::read_to_string(file).unwrap();
        let body = if i == 0 { text.as_str() } else { text.split_once('\n').unwrap().1 };
        csv.extend_from_slice(body.as_bytes());
    }
    let started = std::time::Instant::now();
    let mut child = kappa("kappa-producer", None)
        .args(["-i", "-", "--format", "csv", "--source-id", "sales-feed", "--event-time", "sale_date", "--speedup", "172800"])
        .args(["--to", &format!("log:{}", log.display()), "--progress-interval", "200ms"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&csv).unwrap();
    let output = child.wait_with_output().unwrap();
    expect_status(&output, 0);
    let elapsed = started.elapsed();
    assert!(elapsed >= std::time::Duration::from_millis(1400), "3 days at 172800x is 1.5 s, took {elapsed:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.matches("progress").count() >= 3, "periodic progress lines when stderr is not a terminal:\n{stderr}");
    let events = read_log(&log);
    assert_sales_exactly_once(&events);
    assert!(events.iter().all(|e| e["_kappa_id"].as_str().unwrap().starts_with("sales-feed:0:")));
}

#[test]
fn interrupt_sends_what_was_read_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let summary_path = dir.path().join("summary.json");
    let child = kappa("kappa-producer", None)
        .arg("-i")
        .arg(seed("people/generated_mock_data.csv"))
        .args(["--to", &format!("log:{}", log.display()), "--rate", "200", "--loop", "30", "--summary-json"])
        .arg(&summary_path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupted once the log holds some of the rows: 30,000 at 200/s would take 150 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let held = || kappa_common::log::Log::open(&log).ok().map_or(0, |l| (0..l.shard_count()).map(|s| l.shard_end(s).unwrap_or(0)).sum::<u64>());
    while held() < 200 {
        assert!(std::time::Instant::now() < deadline, "the producer sent nothing within a minute");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    expect_status(&output, 130);
    let s = summary(&summary_path);
    let sent = s["events_sent"].as_u64().unwrap();
    // What was read ahead (at most the 8-batch channel) is sent without pacing, then the run
    // ends.
    assert!((200..20_000).contains(&sent), "interrupted mid-way: {sent} sent");
    // Everything read was sent: nothing counted as read is missing from the log.
    assert_eq!(s["rows_read"].as_u64().unwrap(), sent);
    assert_eq!(read_log(&log).len() as u64, sent);
}

#[test]
fn tsv_files_are_tab_separated_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("sales.tsv");
    let text = std::fs::read_to_string(seed("supermarket/sales/supermarket_sales_20250320.csv")).unwrap();
    std::fs::write(&tsv, text.replace(',', "\t")).unwrap();
    let log = dir.path().join("log");
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&tsv).args(["--to", &format!("log:{}", log.display())])), 0);
    let events = read_log(&log);
    assert_eq!(events.len(), 100);
    assert!(events.iter().all(|e| e["quantity"].is_i64() && e["sale_date"] == "2025-03-20"));
}
