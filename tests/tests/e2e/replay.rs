//! kappa-replay: the lake rebuilt from the log into a new generation — byte for byte the live
//! consumer's files, a new partitioning, an atomic switch under a reading loop, and gc.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kappa_tests::{Moto, aws_config, current_generation, delta_log, duckdb_delta, expect_status, kappa, lake_digest, python_deltalake, read_lake, run};

use crate::support::{TapMkdir, generate_sales_csv, kill_repeatedly, produce_csv, sales_args, summary};

/// Settings where only row counts trigger flushes, shared by the live consumer and the replay.
const DATA_DRIVEN: [&str; 10] = ["--table", "sales", "--event-time", "sale_time", "--flush-rows", "700", "--flush-interval", "1h", "--max-memory", "2GiB"];

fn generations(lake: &Path, table: &str) -> BTreeSet<String> {
    std::fs::read_dir(lake.join(table)).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|n| n.starts_with("gen-")).collect()
}

#[test]
fn replaying_the_log_of_a_killed_and_restarted_consumer_writes_the_same_bytes_and_switches() {
    let dir = tempfile::tempdir().unwrap();
    let csv = generate_sales_csv(dir.path(), 60_000);
    let log = format!("log:{}", dir.path().join("log").display());
    produce_csv(&csv, &log);
    let lake = dir.path().join("lake");
    // Kills 50–400 ms into each run: the 60,000-row ingest takes well under a second now.
    let kills = kill_repeatedly(4, (50, 400), Duration::from_secs(120), || {
        let mut command = kappa("kappa-consumer", None);
        command.args(["--from", &log, "--lake"]).arg(&lake).args(DATA_DRIVEN).args(["--until-idle", "1s"]);
        command
    });
    expect_status(&run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(&lake).args(DATA_DRIVEN).args(["--until-idle", "1s"])), 0);
    eprintln!("live consumer killed {kills} times");
    assert!(kills >= 2, "only {kills} kills landed: the live consumer was hardly interrupted");

    let summary_path = dir.path().join("replay.json");
    let output = run(kappa("kappa-replay", None)
        .args(["--from", &log, "--lake"])
        .arg(&lake)
        .args(DATA_DRIVEN)
        .args(["--verify", "--compare", "--switch", "--summary-json"])
        .arg(&summary_path));
    expect_status(&output, 0);
    let s = summary(&summary_path);
    assert_eq!((s["generation"].as_str(), s["switched"].as_bool()), (Some("gen-000002"), Some(true)));
    assert_eq!((s["verify"]["ok"].as_bool(), s["compare"]["ok"].as_bool()), (Some(true), Some(true)), "{s}");
    let live = lake_digest(&lake.join("sales/gen-000001"));
    let rebuilt = lake_digest(&lake.join("sales/gen-000002"));
    assert!(live.len() > 40, "{} files", live.len());
    assert_eq!(live, rebuilt, "the same object names and bytes");
    assert_eq!(current_generation(&lake, "sales"), "gen-000002");

    // The live consumer continues the new generation from the replay's positions.
    let more = dir.path().join("more.csv");
    std::fs::write(&more, std::fs::read_to_string(&csv).unwrap().lines().take(101).collect::<Vec<_>>().join("\n").replace("SALE0001", "SALE0009") + "\n")
        .unwrap();
    produce_csv(&more, &log);
    let consumer_summary = dir.path().join("consumer.json");
    expect_status(
        &run(kappa("kappa-consumer", None)
            .args(["--from", &log, "--lake"])
            .arg(&lake)
            .args(DATA_DRIVEN)
            .args(["--until-idle", "1s", "--summary-json"])
            .arg(&consumer_summary)),
        0,
    );
    assert_eq!(summary(&consumer_summary)["events_read"], 100, "only the new events are read");
    assert_eq!(read_lake(&lake.join("sales/gen-000002")).len(), 60_100);
}

#[test]
fn replay_by_hour_from_a_lake_built_by_day_keeps_the_rows_and_readers_see_it_after_the_switch() {
    let dir = tempfile::tempdir().unwrap();
    let csv = generate_sales_csv(dir.path(), 3_000);
    let log = format!("log:{}", dir.path().join("log").display());
    produce_csv(&csv, &log);
    let lake = dir.path().join("lake");
    expect_status(
        &run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(&lake).args([
            "--table",
            "sales",
            "--event-time",
            "sale_time",
            "--until-idle",
            "1s",
        ])),
        0,
    );
    let output = run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args([
        "--table",
        "sales",
        "--event-time",
        "sale_time",
        "--partition-by",
        "hour",
        "--verify",
        "--compare",
        "--switch",
    ]));
    expect_status(&output, 0);
    let by_hour = read_lake(&lake.join("sales/gen-000002"));
    assert_eq!(by_hour.len(), 3_000);
    assert!(by_hour.iter().all(|r| r.partition.matches('/').count() == 3 && r.partition.contains("/hour=")), "hour partitions");
    for row in &by_hour {
        let time = row.row["sale_time"].as_str().unwrap();
        assert!(row.partition.ends_with(&format!("hour={}", &time[11..13])), "{time} in {}", row.partition);
    }
    // Outside readers of the table's root read the hour-partitioned rows, and time travel to
    // the version before the switch reads the day-partitioned table.
    let table = lake.join("sales");
    assert_eq!(duckdb_delta(&table, "SELECT count(*), count(DISTINCT hour) FROM {table}").trim(), "[(3000, 24)]");
    let now = delta_log(&table).unwrap();
    assert_eq!(now.partition_columns, ["year", "month", "day", "hour"]);
    let before = python_deltalake(&table, Some(now.version - 1), "print(table.metadata().partition_columns, table.to_pyarrow_table().num_rows)");
    assert_eq!(before.trim(), "['year', 'month', 'day'] 3000");
    let after = python_deltalake(&table, None, "print(table.metadata().partition_columns, table.to_pyarrow_table().num_rows)");
    assert_eq!(after.trim(), "['year', 'month', 'day', 'hour'] 3000");
}

#[test]
fn readers_see_the_old_total_or_the_new_one_never_a_mix_and_gc_keeps_the_current_and_newest() {
    let dir = tempfile::tempdir().unwrap();
    let csv = generate_sales_csv(dir.path(), 4_000);
    let log = format!("log:{}", dir.path().join("log").display());
    produce_csv(&csv, &log);
    let lake = dir.path().join("lake");
    let consume =
        || expect_status(&run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(&lake).args(DATA_DRIVEN).args(["--until-idle", "1s"])), 0);
    consume();
    // More events reach the log: the replay's generation holds 6,000 rows, the current 4,000.
    let more = dir.path().join("more.csv");
    std::fs::write(&more, std::fs::read_to_string(generate_sales_csv(&dir.path().join("x").tap_mkdir(), 2_000)).unwrap().replace("SALE0001", "SALE0007"))
        .unwrap();
    produce_csv(&more, &log);

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = {
        let (lake, stop, reads) = (lake.clone(), stop.clone(), reads.clone());
        std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            while !stop.load(Ordering::Acquire) {
                // A reader reads the files of the table's latest version, as any Delta reader does.
                let Some(log) = delta_log(&lake.join("sales")) else { continue };
                let generations: BTreeSet<&str> = log.files.iter().map(|f| f.split('/').next().unwrap()).collect();
                let mut rows = 0;
                for file in &log.files {
                    let reader = std::fs::File::open(lake.join("sales").join(file)).expect("a committed file exists");
                    rows += parquet::file::reader::FileReader::metadata(&parquet::file::serialized_reader::SerializedFileReader::new(reader).unwrap())
                        .file_metadata()
                        .num_rows() as usize;
                }
                seen.insert((generations.into_iter().collect::<Vec<_>>().join("+"), rows, log.consumer_state["totals"]["rows"].as_u64().unwrap_or(0) as usize));
                reads.fetch_add(1, Ordering::AcqRel);
            }
            seen
        })
    };
    // The reader reads before the replay starts, and twice more after the switch: one whole
    // read of the new generation at least.
    let wait_for_reads = |at_least: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while reads.load(Ordering::Acquire) < at_least {
            assert!(std::time::Instant::now() < deadline, "the reader did not read");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for_reads(1);
    let output = run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args(DATA_DRIVEN).args(["--switch"]));
    expect_status(&output, 0);
    wait_for_reads(reads.load(Ordering::Acquire) + 2);
    stop.store(true, Ordering::Release);
    let seen = reader.join().unwrap();
    let totals: BTreeSet<usize> = seen.iter().map(|(_, rows, _)| *rows).collect();
    assert_eq!(totals, BTreeSet::from([4_000, 6_000]), "a reader saw only the old and the new total: {seen:?}");
    assert!(seen.iter().all(|(generations, _, _)| !generations.contains('+')), "every version holds one generation's files: {seen:?}");

    // Two more generations, then gc --keep 1: the current one and the newest other remain.
    for _ in 0..2 {
        expect_status(&run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args(DATA_DRIVEN)), 0);
    }
    assert_eq!(generations(&lake, "sales").len(), 4);
    // gen-000001 was switched away from just now: time travel to the versions before the
    // switch reads its files, so it stays for the retention.
    let gc = run(kappa("kappa-replay", None).args(["gc", "--keep", "1", "--lake"]).arg(&lake).args(["--table", "sales"]));
    expect_status(&gc, 0);
    assert!(
        String::from_utf8_lossy(&gc.stdout).contains("left gen-000001: versions before the switch away from it stay readable by time travel until"),
        "{}",
        String::from_utf8_lossy(&gc.stdout)
    );
    assert_eq!(generations(&lake, "sales"), BTreeSet::from(["gen-000001".to_string(), "gen-000002".to_string(), "gen-000004".to_string()]));
    let gc = run(kappa("kappa-replay", None).args(["gc", "--keep", "1", "--retention", "0s", "--lake"]).arg(&lake).args(["--table", "sales"]));
    expect_status(&gc, 0);
    assert_eq!(generations(&lake, "sales"), BTreeSet::from(["gen-000002".to_string(), "gen-000004".to_string()]));
    assert_eq!(current_generation(&lake, "sales"), "gen-000002");
    assert_eq!(read_lake(&lake.join("sales/gen-000002")).len(), 6_000);
    assert!(!lake.join("sales/_kappa/gen-000001").exists() && !lake.join("sales/_kappa/gen-000003").exists());
    // The records stay, marked removed, so the numbers are never given out again.
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(lake.join("sales/_kappa/generations/gen-000003.json")).unwrap()).unwrap();
    assert!(record["removed_ms"].is_i64(), "{record}");
}

#[tokio::test]
async fn replaying_kinesis_from_trim_horizon_writes_the_live_consumers_bytes() {
    let moto = Moto::start();
    let client = aws_sdk_kinesis::Client::new(&aws_config(&moto.endpoint).await);
    client.create_stream().stream_name("sales").shard_count(4).send().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while client.describe_stream_summary().stream_name("sales").send().await.unwrap().stream_description_summary().unwrap().stream_status()
        != &aws_sdk_kinesis::types::StreamStatus::Active
    {
        assert!(std::time::Instant::now() < deadline, "the stream never became active");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    expect_status(&run(kappa("kappa-producer", Some(&moto.endpoint)).args(sales_args()).args(["--to", "kinesis:sales"])), 0);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let settings = ["--table", "sales", "--event-time", "sale_date", "--flush-rows", "30", "--flush-interval", "1h", "--poll-interval", "200ms"];
    expect_status(
        &run(kappa("kappa-consumer", Some(&moto.endpoint)).args(["--from", "kinesis:sales", "--lake"]).arg(&lake).args(settings).args(["--until-idle", "2s"])),
        0,
    );
    let output =
        run(kappa("kappa-replay", Some(&moto.endpoint)).args(["--from", "kinesis:sales", "--lake"]).arg(&lake).args(settings).args(["--verify", "--compare"]));
    expect_status(&output, 0);
    let live = lake_digest(&lake.join("sales/gen-000001"));
    assert!(live.len() > 10, "{live:?}");
    assert_eq!(live, lake_digest(&lake.join("sales/gen-000002")));
    assert_eq!(current_generation(&lake, "sales"), "gen-000001", "no --switch: readers stay");
}

#[tokio::test]
async fn an_sqs_fed_lake_with_an_archive_is_rebuilt_from_the_archive_alone() {
    let moto = Moto::start();
    let sqs = aws_sdk_sqs::Client::new(&aws_config(&moto.endpoint).await);
    let s3 = kappa_tests::s3_client(&moto.endpoint).await;
    sqs.create_queue().queue_name("sales").send().await.unwrap();
    s3.create_bucket().bucket("raw-zone").send().await.unwrap();
    expect_status(&run(kappa("kappa-producer", Some(&moto.endpoint)).args(sales_args()).args(["--to", "sqs:sales", "--rows-per-message", "9"])), 0);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // The archive on S3: what outlives the queue (SQS cannot be read twice).
    let consumer = run(kappa("kappa-consumer", Some(&moto.endpoint)).args(["--from", "sqs:sales", "--lake"]).arg(&lake).args([
        "--table",
        "sales",
        "--event-time",
        "sale_date",
        "--until-idle",
        "3s",
        "--archive",
        "s3://raw-zone/archive",
    ]));
    expect_status(&consumer, 0);
    let archived = s3.list_objects_v2().bucket("raw-zone").prefix("archive/sales/raw/").send().await.unwrap();
    assert!(archived.contents().iter().all(|o| o.key().unwrap().ends_with(".ndjson.zst")) && !archived.contents().is_empty());
    let summary_path = dir.path().join("replay.json");
    let output = run(kappa("kappa-replay", Some(&moto.endpoint))
        .args(["--from", "raw:s3://raw-zone/archive/sales/raw", "--lake"])
        .arg(&lake)
        .args(["--table", "sales", "--event-time", "sale_date", "--verify", "--compare", "--switch", "--summary-json"])
        .arg(&summary_path));
    expect_status(&output, 0);
    let s = summary(&summary_path);
    assert_eq!((s["rows_written"].as_u64(), s["compare"]["ok"].as_bool(), s["switched"].as_bool()), (Some(400), Some(true), Some(true)), "{s}");
    crate::support::assert_sales_lake(&read_lake(&lake.join("sales/gen-000002")));
}

#[tokio::test]
async fn a_prefix_firehose_delivered_is_replayed_into_a_lake() {
    let moto = Moto::start();
    let config = aws_config(&moto.endpoint).await;
    let s3 = kappa_tests::s3_client(&moto.endpoint).await;
    s3.create_bucket().bucket("raw-zone").send().await.unwrap();
    crate::support::create_firehose_to_s3(&config, "sales-raw", "raw-zone", "firehose/sales/").await;
    expect_status(&run(kappa("kappa-producer", Some(&moto.endpoint)).args(sales_args()).args(["--to", "firehose:sales-raw"])), 0);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let output = run(kappa("kappa-replay", Some(&moto.endpoint)).args(["--from", "raw:s3://raw-zone/firehose/sales", "--lake"]).arg(&lake).args([
        "--table",
        "sales",
        "--event-time",
        "sale_date",
        "--verify",
        "--switch",
    ]));
    expect_status(&output, 0);
    crate::support::assert_sales_lake(&read_lake(&lake.join("sales/gen-000001")));
    assert_eq!(current_generation(&lake, "sales"), "gen-000001", "the first generation of a new table");
}

#[test]
fn at_timestamp_and_until_bound_the_replay_by_arrival_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    let files = crate::support::sales_files();
    let produce_file = |file: &Path| expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(file).args(["--to", &log, "--shards", "2"])), 0);
    produce_file(&files[0]);
    // Arrival times are milliseconds: `between` lies strictly after the first file's and
    // strictly before the second's.
    let after = |t: chrono::DateTime<chrono::Utc>| {
        while chrono::Utc::now().timestamp_millis() <= t.timestamp_millis() + 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    after(chrono::Utc::now());
    let between = chrono::Utc::now();
    after(between);
    produce_file(&files[1]);
    let lake = dir.path().join("lake");
    let stamp = between.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let replay = |bound: &str, table: &str| {
        let summary_path = dir.path().join(format!("{table}.json"));
        expect_status(
            &run(kappa("kappa-replay", None)
                .args(["--from", &log, "--lake"])
                .arg(&lake)
                .args(["--table", table, "--event-time", "sale_date", bound, &stamp, "--summary-json"])
                .arg(&summary_path)),
            0,
        );
        let rows = read_lake(&lake.join(table).join("gen-000001"));
        rows.iter().map(|r| r.partition.clone()).collect::<BTreeSet<_>>()
    };
    // The first file arrived before the stamp (day 19), the second after it (day 20).
    assert_eq!(replay("--until", "before"), BTreeSet::from(["year=2025/month=03/day=19".to_string()]));
    assert_eq!(replay("--at-timestamp", "after"), BTreeSet::from(["year=2025/month=03/day=20".to_string()]));
}

#[test]
fn a_running_consumer_goes_on_in_the_generation_readers_were_switched_to() {
    let dir = tempfile::tempdir().unwrap();
    let csv = generate_sales_csv(dir.path(), 5_000);
    let log = format!("log:{}", dir.path().join("log").display());
    produce_csv(&csv, &log);
    let lake = dir.path().join("lake");
    // Follows the log (no --until-idle), checking the table every status interval.
    let port = kappa_tests::free_port();
    // It commits what it reads every half second.
    let mut live = kappa("kappa-consumer", None)
        .args(["--from", &log, "--lake"])
        .arg(&lake)
        .args(["--table", "sales", "--event-time", "sale_time", "--flush-interval", "500ms"])
        .args(["--status-interval", "500ms", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The replay starts once the live consumer has committed the log.
    kappa_tests::wait_for_metric(&mut live, port, "rows_written_total", 5_000, Duration::from_secs(60));
    expect_status(&run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args(DATA_DRIVEN).arg("--switch")), 0);
    // It was stopped with exit 1 and had to be restarted; now it goes on in gen-000002.
    produce_csv(&generate_sales_csv(&dir.path().join("more").tap_mkdir(), 300), &log);
    let started = std::time::Instant::now();
    while read_lake(&lake.join("sales/gen-000002")).len() < 5_300 {
        assert!(live.try_wait().unwrap().is_none(), "the consumer stopped");
        assert!(started.elapsed() < Duration::from_secs(60), "the consumer did not commit the new rows into gen-000002");
        std::thread::sleep(Duration::from_millis(200));
    }
    expect_status(&run(std::process::Command::new("kill").args(["-TERM", &live.id().to_string()])), 0);
    let output = live.wait_with_output().unwrap();
    expect_status(&output, 0);
    assert!(String::from_utf8_lossy(&output.stderr).contains("the table was switched to gen-000002"), "{}", String::from_utf8_lossy(&output.stderr));
    let rows = read_lake(&lake.join("sales/gen-000002"));
    assert_eq!(rows.len(), 5_300, "every event once in the new generation");
    // A different layout is refused there (a setting to change: status 2).
    let hourly =
        run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(&lake).args(DATA_DRIVEN).args(["--partition-by", "hour", "--until-idle", "1s"]));
    expect_status(&hourly, 2);
    assert!(
        String::from_utf8_lossy(&hourly.stderr).contains("the table is partitioned by day; this run asks for hour (on sale_time)"),
        "{}",
        String::from_utf8_lossy(&hourly.stderr)
    );
}
