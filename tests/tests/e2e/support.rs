//! Helpers shared by the end-to-end tests: the seed sales data and reading events back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kappa_common::log::{Log, StartAt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kappa_tests::{LakeRow, bin, duckdb_delta, expect_status, parse_events, python_deltalake, read_csv, run, seed};
use serde_json::{Map, Value};

pub(crate) type Event = Map<String, Value>;

pub(crate) fn sales_files() -> Vec<PathBuf> {
    (19..=22).map(|d| seed(&format!("supermarket/sales/supermarket_sales_202503{d}.csv"))).collect()
}

pub(crate) fn sales_args() -> Vec<String> {
    let mut args = vec!["--input".to_string()];
    args.extend(sales_files().iter().map(|p| p.display().to_string()));
    args
}

/// Reads every event of every shard of an embedded log.
pub(crate) fn read_log(dir: &Path) -> Vec<Event> {
    let log = Log::open(dir).expect("open log");
    let mut events = Vec::new();
    for shard in 0..log.shard_count() {
        let mut reader = log.reader(shard, StartAt::Earliest).expect("reader");
        while let Some(record) = reader.next().expect("read") {
            events.extend(parse_events(&log.event_object(&record.payload).expect("a shaped event fits its shape")));
        }
    }
    events
}

/// Checks that `events` are exactly the seed sales rows, once each, with typed values:
/// integers and floats as JSON numbers, dates and ids as strings.
pub(crate) fn assert_sales_exactly_once(events: &[Event]) {
    let mut expected: BTreeMap<String, Event> = BTreeMap::new();
    for file in sales_files() {
        for row in read_csv(&file) {
            expected.insert(row["sale_id"].as_str().unwrap().to_string(), row);
        }
    }
    assert_eq!(expected.len(), 400);
    assert_eq!(events.len(), 400, "expected 400 events, got {}", events.len());
    let mut seen_ids = std::collections::HashSet::new();
    for event in events {
        let id = event["_kappa_id"].as_str().expect("every event has an identity");
        assert!(seen_ids.insert(id.to_string()), "identity {id} twice");
        let sale_id = event["sale_id"].as_str().unwrap();
        let row = expected.remove(sale_id).unwrap_or_else(|| panic!("{sale_id} unexpected or duplicated"));
        for (column, text) in &row {
            let text = text.as_str().unwrap();
            match column.as_str() {
                "quantity" => assert_eq!(event[column].as_i64(), Some(text.parse().unwrap()), "{sale_id}.{column}"),
                "unit_price" | "total_amount" => assert_eq!(event[column].as_f64(), Some(text.parse().unwrap()), "{sale_id}.{column}"),
                _ => assert_eq!(event[column].as_str(), Some(text), "{sale_id}.{column}"),
            }
        }
        assert_eq!(event.len(), row.len() + 1, "only the CSV's columns plus the identity");
    }
    assert!(expected.is_empty());
}

pub(crate) fn summary(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("summary json")).expect("valid summary")
}

/// Checks a lake built from the four seed sales files by `sale_date`: 4 day partitions of 100
/// rows, every sale once, its values equal to the CSV's, in the partition of its date, and no
/// identity column.
pub(crate) fn assert_sales_lake(rows: &[LakeRow]) {
    assert_eq!(rows.len(), 400, "rows in the lake");
    let mut per_partition: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        *per_partition.entry(r.partition.as_str()).or_default() += 1;
    }
    let expected: BTreeMap<&str, usize> = ["year=2025/month=03/day=19", "year=2025/month=03/day=20", "year=2025/month=03/day=21", "year=2025/month=03/day=22"]
        .into_iter()
        .map(|p| (p, 100))
        .collect();
    assert_eq!(per_partition, expected);
    let by_id: BTreeMap<&str, &LakeRow> = rows.iter().map(|r| (r.row["sale_id"].as_str().unwrap(), r)).collect();
    assert_eq!(by_id.len(), 400, "every sale once");
    for file in sales_files() {
        for csv_row in read_csv(&file) {
            let found = by_id[csv_row["sale_id"].as_str().unwrap()];
            let row = &found.row;
            assert!(!row.contains_key("_kappa_id"), "the identity is not a column");
            for (column, text) in &csv_row {
                let text = text.as_str().unwrap();
                match column.as_str() {
                    "quantity" => assert_eq!(row[column].as_i64(), Some(text.parse().unwrap())),
                    "unit_price" | "total_amount" => assert_eq!(row[column].as_f64(), Some(text.parse().unwrap())),
                    _ => assert_eq!(row[column].as_str(), Some(text), "{column}"),
                }
            }
            let day = csv_row["sale_date"].as_str().unwrap();
            assert_eq!(found.partition, format!("year={}/month={}/day={}", &day[..4], &day[5..7], &day[8..10]));
        }
    }
}

/// Writes `rows` deterministic sales rows (bench/'s generator) to `dir/sales.csv`.
pub(crate) fn generate_sales_csv(dir: &Path, rows: u64) -> PathBuf {
    let csv = dir.join("sales.csv");
    let data = run(Command::new(bin("kappa-gen-sales")).arg(rows.to_string()));
    expect_status(&data, 0);
    std::fs::write(&csv, &data.stdout).unwrap();
    csv
}

/// Produces `csv` into the embedded log at `log` (`log:PATH`), 4 shards.
pub(crate) fn produce_csv(csv: &Path, log: &str) {
    expect_status(&run(kappa_tests::kappa("kappa-producer", None).arg("-i").arg(csv).args(["--to", log, "--shards", "4"])), 0);
}

/// `rows` generated sales rows produced into a 4-shard log under `dir`: the log (`log:PATH`)
/// and the CSV.
pub(crate) fn sales_log(dir: &Path, rows: u64) -> (String, PathBuf) {
    let csv = generate_sales_csv(dir, rows);
    let log = format!("log:{}", dir.join("log").display());
    produce_csv(&csv, &log);
    (log, csv)
}

/// Copies the directory tree at `from` to `to` (files and directories only).
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A small deterministic generator for kill times; the seed is printed, and taken from
/// `KAPPA_KILL_SEED` when set, so a failure can be replayed.
pub(crate) struct Lcg(pub(crate) u64);
impl Lcg {
    pub(crate) fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Starts `command()` again and again, SIGKILLing it after a random time in `window_ms`,
/// up to `max_kills` times or until a run ends on its own (which must be a success).
/// Returns the number of kills.
pub(crate) fn kill_repeatedly(max_kills: u32, window_ms: (u64, u64), deadline: Duration, mut command: impl FnMut() -> Command) -> u32 {
    // KAPPA_KILL_SEED replays a failed run's kill schedule.
    let seed = match std::env::var("KAPPA_KILL_SEED") {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("KAPPA_KILL_SEED={text:?} is not a number")),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    eprintln!("kill schedule seed: {seed} (set KAPPA_KILL_SEED={seed} to replay it)");
    let mut random = Lcg(seed);
    let mut kills = 0;
    let started = Instant::now();
    while kills < max_kills {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = command().stderr(Stdio::from(log.reopen().unwrap())).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(window_ms.0 + random.next(window_ms.1 - window_ms.0)));
        match child.try_wait().unwrap() {
            Some(status) => {
                let text = std::fs::read_to_string(log.path()).unwrap_or_default();
                assert!(status.success(), "consumer failed on its own: {status}\n{text}");
                break;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
        }
        assert!(started.elapsed() < deadline, "never finished after {kills} kills");
    }
    eprintln!("{kills} kills in {:?}", started.elapsed());
    kills
}

/// Creates a Firehose delivery stream into `bucket` under `prefix`, uncompressed (moto's
/// DescribeDeliveryStream needs the explicit format).
pub(crate) async fn create_firehose_to_s3(config: &aws_config::SdkConfig, stream: &str, bucket: &str, prefix: &str) {
    aws_sdk_firehose::Client::new(config)
        .create_delivery_stream()
        .delivery_stream_name(stream)
        .extended_s3_destination_configuration(
            aws_sdk_firehose::types::ExtendedS3DestinationConfiguration::builder()
                .bucket_arn(format!("arn:aws:s3:::{bucket}"))
                .role_arn("arn:aws:iam::123456789012:role/firehose")
                .prefix(prefix)
                .compression_format(aws_sdk_firehose::types::CompressionFormat::Uncompressed)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Makes the directory (and its parents) and returns it.
pub(crate) trait TapMkdir {
    fn tap_mkdir(self) -> PathBuf;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> PathBuf {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// `rows` generated sales rows in `dir/sales.csv` whose ids start with `prefix` instead of
/// `SALE` (the generator numbers every run from the same start).
pub(crate) fn unique_sales_csv(dir: &Path, rows: u64, prefix: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let csv = generate_sales_csv(dir, rows);
    std::fs::write(&csv, std::fs::read_to_string(&csv).unwrap().replace("SALE", prefix)).unwrap();
    csv
}

/// Rows of the table's current version, from the Delta log's file statistics.
pub(crate) fn committed_rows(table: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(table.join("_delta_log")) else { return 0 };
    let mut commits: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    commits.sort();
    let mut files: BTreeMap<String, u64> = BTreeMap::new();
    for path in commits {
        // A commit being written is read next time.
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for line in text.lines().filter(|l| !l.is_empty()) {
            let Ok(action) = serde_json::from_str::<Value>(line) else { continue };
            if let Some(add) = action.get("add") {
                let stats: Value = serde_json::from_str(add["stats"].as_str().unwrap_or("{}")).unwrap_or_default();
                files.insert(add["path"].as_str().unwrap().to_string(), stats["numRecords"].as_u64().unwrap_or(0));
            } else if let Some(remove) = action.get("remove") {
                files.remove(remove["path"].as_str().unwrap());
            }
        }
    }
    files.values().sum()
}

/// Each outside reader sees `rows` rows, each sale once; and a reader of the plain Parquet
/// files the log names, taking directories for columns, sees the same rows as the Delta read.
pub(crate) fn assert_exactly_once(table: &Path, rows: u64) {
    crate::edges::assert_plain_read_equals_delta_read(table);
    assert_eq!(duckdb_delta(table, "SELECT count(*), count(DISTINCT sale_id) FROM {table}").trim(), format!("[({rows}, {rows})]"), "DuckDB delta_scan");
    assert_eq!(
        python_deltalake(table, None, "t = table.to_pyarrow_table(); print(t.num_rows, len(set(t.column('sale_id').to_pylist())))").trim(),
        format!("{rows} {rows}"),
        "python deltalake"
    );
}

/// Splits `shard` of a Kinesis `stream` at the middle of its hash-key range.
pub(crate) async fn split_in_half(client: &aws_sdk_kinesis::Client, stream: &str, shard: &str) {
    let shards = client.list_shards().stream_name(stream).send().await.unwrap();
    let parent = shards.shards().iter().find(|s| s.shard_id() == shard).unwrap();
    let range = parent.hash_key_range().unwrap();
    let (low, high): (u128, u128) = (range.starting_hash_key().parse().unwrap(), range.ending_hash_key().parse().unwrap());
    client.split_shard().stream_name(stream).shard_to_split(shard).new_starting_hash_key((low + (high - low) / 2).to_string()).send().await.unwrap();
}

/// Copies everything under `s3://bucket/prefix/` into `into` (the local readers read it there).
pub(crate) async fn download(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str, into: &Path) {
    let mut pages = s3.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        for object in page.unwrap().contents() {
            let key = object.key().unwrap();
            let body = s3.get_object().bucket(bucket).key(key).send().await.unwrap().body.collect().await.unwrap().into_bytes();
            let path = into.join(key.strip_prefix(prefix).unwrap());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
    }
}

/// What the tests of a lake on S3 start with: moto with a bucket `lake`, the fault proxy in
/// front of it, and a client of moto's own (not behind the proxy) to read the lake back.
pub(crate) struct S3Lake {
    pub moto: kappa_tests::Moto,
    pub runtime: tokio::runtime::Runtime,
    pub s3: aws_sdk_s3::Client,
    pub proxy: kappa_tests::FaultProxy,
}

pub(crate) fn s3_lake() -> S3Lake {
    let moto = kappa_tests::Moto::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(kappa_tests::s3_client(&moto.endpoint));
    runtime.block_on(s3.create_bucket().bucket("lake").send()).unwrap();
    let proxy = kappa_tests::FaultProxy::start(&moto.endpoint);
    S3Lake { moto, runtime, s3, proxy }
}
