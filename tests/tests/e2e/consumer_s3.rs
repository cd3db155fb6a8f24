//! The lake on S3 (moto): the store's conformance suite, and the consumer writing a lake there.

use bytes::Bytes;
use kappa_common::store::{S3Store, Store, conformance};
use kappa_tests::{Moto, expect_status, kappa, run, s3_client};

use crate::support::sales_args;

/// The sales table in a lake on (moto's) S3.
const S3_LAKE: [&str; 6] = ["--lake", "s3://lake/warehouse", "--table", "sales", "--event-time", "sale_date"];

#[tokio::test]
async fn the_s3_store_passes_the_conformance_suite_and_uploads_large_objects_in_parts() {
    let moto = Moto::start();
    let s3 = s3_client(&moto.endpoint).await;
    s3.create_bucket().bucket("lake").send().await.unwrap();
    let store = Store::S3(S3Store::new(s3.clone(), "lake", "warehouse/"));
    conformance::run(&store).await;
    let big = Bytes::from((0..(70u32 << 20)).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    store.put("t/big.bin", big.clone()).await.unwrap();
    assert_eq!(store.get("t/big.bin").await.unwrap(), big);
    let head = s3.head_object().bucket("lake").key("warehouse/t/big.bin").send().await.unwrap();
    assert!(head.e_tag().unwrap().contains('-'), "a multipart ETag ends in -<parts>: {:?}", head.e_tag());
}

#[tokio::test]
async fn sales_into_an_s3_lake() {
    let moto = Moto::start();
    let s3 = s3_client(&moto.endpoint).await;
    s3.create_bucket().bucket("lake").send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    expect_status(&run(kappa("kappa-producer", None).args(sales_args()).args(["--to", &log])), 0);
    let output = run(kappa("kappa-consumer", Some(&moto.endpoint)).args(["--from", &log]).args(S3_LAKE).args(["--until-idle", "1s"]));
    expect_status(&output, 0);
    let listed = s3.list_objects_v2().bucket("lake").prefix("warehouse/sales/").send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(keys.contains(&"warehouse/sales/_delta_log/00000000000000000001.json"), "{keys:#?}");
    let mut rows = 0;
    let mut partitions = std::collections::BTreeSet::new();
    for key in keys.iter().filter(|k| k.ends_with(".parquet")) {
        let body = s3.get_object().bucket("lake").key(*key).send().await.unwrap().body.collect().await.unwrap().into_bytes();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body).unwrap().build().unwrap();
        rows += reader.map(|b| b.unwrap().num_rows()).sum::<usize>();
        partitions.insert(key.trim_start_matches("warehouse/sales/gen-000001/").rsplit_once('/').unwrap().0.to_string());
    }
    assert_eq!(rows, 400);
    assert_eq!(partitions.len(), 4);
    assert!(partitions.contains("year=2025/month=03/day=19"));
    // python deltalake reads the table on S3 by its root, with its own S3 client.
    let read = kappa_tests::python_deltalake_s3(
        "s3://lake/warehouse/sales",
        &moto.endpoint,
        "t = table.to_pyarrow_table()\nprint(t.num_rows, len(set(t.column('sale_id').to_pylist())), sorted(set(t.column('day').to_pylist())))",
    );
    assert_eq!(read.trim(), "400 400 [19, 20, 21, 22]");
    // DuckDB's delta extension reads it from S3 too (through httpfs and an S3 secret).
    let counted =
        kappa_tests::duckdb_delta_s3("s3://lake/warehouse/sales", &moto.endpoint, "SELECT count(*), count(DISTINCT sale_id), min(day), max(day) FROM {table}");
    assert_eq!(counted.trim(), "[(400, 400, 19, 22)]");
}

/// Fix (c) of the Delta issue: a commit PUT that reached S3 but whose answer was lost (a 500
/// after the write) is the consumer's own commit, recognised after reading the log again.
#[tokio::test]
async fn a_commit_whose_answer_was_lost_is_recognised_as_the_consumers_own() {
    let moto = Moto::start();
    let s3 = s3_client(&moto.endpoint).await;
    s3.create_bucket().bucket("lake").send().await.unwrap();
    let proxy = kappa_tests::FaultProxy::start(&moto.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    expect_status(&run(kappa("kappa-producer", None).args(sales_args()).args(["--to", &log, "--shards", "4"])), 0);
    // The consumer's first commit (version 1: the create is 0) reaches moto; its answer is lost.
    proxy.lose_response("PUT", "_delta_log/00000000000000000001.json", 1);
    let output = run(kappa("kappa-consumer", Some(&proxy.endpoint)).args(["--from", &log]).args(S3_LAKE).args(["--flush-rows", "50", "--until-idle", "1s"]));
    expect_status(&output, 0);
    let log_text = String::from_utf8_lossy(&output.stderr);
    assert!(log_text.contains("the log holds it as this writer's own"), "{log_text}");
    assert_eq!(proxy.requests("lost:/lake/warehouse/sales/_delta_log/00000000000000000001.json"), 1, "the answer was lost once");
    let read = kappa_tests::python_deltalake_s3(
        "s3://lake/warehouse/sales",
        &moto.endpoint,
        "t = table.to_pyarrow_table()\nprint(t.num_rows, len(set(t.column('sale_id').to_pylist())))",
    );
    assert_eq!(read.trim(), "400 400", "every row once");
}

/// `--glue-database`: the consumer registers the table in Glue (moto's) as a Delta table at its
/// root, no crawler; the replay's switch to hour partitions updates its columns.
#[tokio::test]
async fn the_table_is_registered_in_glue_and_follows_a_switch() {
    let moto = Moto::start();
    let s3 = s3_client(&moto.endpoint).await;
    s3.create_bucket().bucket("lake").send().await.unwrap();
    let glue = aws_sdk_glue::Client::new(&kappa_tests::aws_config(&moto.endpoint).await);
    let dir = tempfile::tempdir().unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    expect_status(&run(kappa("kappa-producer", None).args(sales_args()).args(["--to", &log])), 0);
    let lake = [&S3_LAKE[..], &["--glue-database", "shop"]].concat();
    let output = run(kappa("kappa-consumer", Some(&moto.endpoint)).args(["--from", &log]).args(&lake).args(["--until-idle", "1s"]));
    expect_status(&output, 0);
    let columns = |table: &aws_sdk_glue::types::Table| -> Vec<String> {
        table.storage_descriptor().unwrap().columns().iter().map(|c| format!("{} {}", c.name(), c.r#type().unwrap_or("?"))).collect()
    };
    let found = glue.get_table().database_name("shop").name("sales").send().await.unwrap();
    let table = found.table().unwrap();
    assert_eq!(table.storage_descriptor().unwrap().location(), Some("s3://lake/warehouse/sales/"));
    assert_eq!(table.parameters().unwrap()["table_type"], "DELTA");
    assert_eq!(table.parameters().unwrap()["kappa.generation"], "gen-000001");
    let day_columns = columns(table);
    assert!(day_columns.contains(&"total_amount double".to_string()) && day_columns.contains(&"quantity bigint".to_string()), "{day_columns:?}");
    assert_eq!(&day_columns[day_columns.len() - 3..], ["year int", "month int", "day int"]);

    let output = run(kappa("kappa-replay", Some(&moto.endpoint)).args(["--from", &log]).args(&lake).args(["--partition-by", "hour", "--switch"]));
    expect_status(&output, 0);
    let found = glue.get_table().database_name("shop").name("sales").send().await.unwrap();
    let table = found.table().unwrap();
    assert_eq!(table.parameters().unwrap()["kappa.generation"], "gen-000002");
    assert_eq!(columns(table).last().map(String::as_str), Some("hour int"), "the switch's new partition column is listed");

    // A local lake cannot be registered: misconfiguration, said at start.
    let local = run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(dir.path().join("l")).args(["--glue-database", "shop"]));
    expect_status(&local, 2);
    assert!(String::from_utf8_lossy(&local.stderr).contains("Athena cannot read"), "{}", String::from_utf8_lossy(&local.stderr));
}

/// A flush whose Delta commit fails (the lake's S3 refuses the commit's PUT: a permission lost
/// mid-run) leaves Parquet objects that no commit names: both outside readers see only the
/// committed rows, and a restart removes or rewrites those objects, ending with every row once.
#[tokio::test]
async fn after_a_failed_commit_readers_see_only_committed_rows_and_a_restart_leaves_no_stray_file() {
    let moto = Moto::start();
    let s3 = s3_client(&moto.endpoint).await;
    s3.create_bucket().bucket("lake").send().await.unwrap();
    let proxy = kappa_tests::FaultProxy::start(&moto.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    let files = crate::support::sales_files();
    let produce = |files: &[std::path::PathBuf]| {
        expect_status(&run(kappa("kappa-producer", None).arg("--input").args(files).args(["--to", &log])), 0);
    };
    let consume = || run(kappa("kappa-consumer", Some(&proxy.endpoint)).args(["--from", &log]).args(S3_LAKE).args(["--until-idle", "1s"]));
    produce(&files[..2]);
    expect_status(&consume(), 0);
    produce(&files[2..]);
    // The second run writes its Parquet objects, then its commit (version 2) is refused.
    proxy.refuse("PUT", "_delta_log/00000000000000000002.json", 403, 1);
    let failed = consume();
    expect_status(&failed, 1);
    assert_eq!(proxy.requests("refused:/lake/warehouse/sales/_delta_log/00000000000000000002.json"), 1);
    let keys = |s3: aws_sdk_s3::Client| async move {
        let listed = s3.list_objects_v2().bucket("lake").prefix("warehouse/sales/gen-000001/").send().await.unwrap();
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .map(|k| k.trim_start_matches("warehouse/sales/").to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let stray = keys(s3.clone()).await;
    let table = "s3://lake/warehouse/sales";
    let count = "t = table.to_pyarrow_table()\nprint(t.num_rows, len(set(t.column('sale_id').to_pylist())))";
    assert_eq!(kappa_tests::python_deltalake_s3(table, &moto.endpoint, count).trim(), "200 200", "committed rows only, with {} objects stored", stray.len());
    assert_eq!(kappa_tests::duckdb_delta_s3(table, &moto.endpoint, "SELECT count(*) FROM {table}").trim(), "[(200,)]");

    expect_status(&consume(), 0);
    assert_eq!(kappa_tests::python_deltalake_s3(table, &moto.endpoint, count).trim(), "400 400");
    let committed =
        kappa_tests::python_deltalake_s3(table, &moto.endpoint, "print('\\n'.join(sorted(uri.split('/sales/', 1)[1] for uri in table.file_uris())))");
    let committed: std::collections::BTreeSet<String> = committed.lines().map(str::to_string).collect();
    assert_eq!(keys(s3).await, committed, "no object without a commit remains");
    assert!(stray.len() > committed.len() / 2, "the failed flush had stored its files ({} of {})", stray.len(), committed.len());
}

#[tokio::test]
async fn a_restart_after_120_commits_reads_one_checkpoint_and_the_commits_after_it() {
    const ROWS: u64 = 8192 * 120;
    let moto = Moto::start();
    let s3 = s3_client(&moto.endpoint).await;
    s3.create_bucket().bucket("lake").send().await.unwrap();
    let proxy = kappa_tests::FaultProxy::start(&moto.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let csv = crate::support::generate_sales_csv(dir.path(), ROWS);
    let log = format!("log:{}", dir.path().join("log").display());
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&csv).args(["--to", &log, "--shards", "1"])), 0);
    // One shard into one partition, a buffer cut every 4,096 rows, 8,192 events per chunk (the
    // log source's share of a shard per read): a commit per chunk read, 120 commits, a
    // checkpoint at version 99.
    let consume = || {
        run(kappa("kappa-consumer", Some(&proxy.endpoint)).args(["--from", &log]).args([
            "--lake",
            "s3://lake/warehouse",
            "--table",
            "sales",
            "--event-time",
            "sale_time",
            "--partition-by",
            "year",
            "--flush-rows",
            "4096",
            "--flush-interval",
            "1h",
            "--max-memory",
            "1GiB",
            "--until-idle",
            "0s",
        ]))
    };
    expect_status(&consume(), 0);
    let log_objects = s3.list_objects_v2().bucket("lake").prefix("warehouse/sales/_delta_log/").max_keys(1000).send().await.unwrap();
    let names: Vec<&str> = log_objects.contents().iter().filter_map(|o| o.key()).collect();
    assert!(names.contains(&"warehouse/sales/_delta_log/00000000000000000120.json"), "{} log objects", names.len());
    assert!(names.iter().any(|n| n.ends_with("00000000000000000099.checkpoint.parquet")), "{names:?}");

    // A restart with nothing new to read: what does it read of the log?
    proxy.reset();
    expect_status(&consume(), 0);
    let read = proxy.requests_matching("/_delta_log/");
    let version = |action: &str| action.rsplit('/').next().unwrap().split('.').next().unwrap().parse::<u64>().ok();
    let checkpoints: Vec<&String> = read.keys().filter(|a| a.contains(".checkpoint.")).collect();
    let commits: Vec<u64> = read.keys().filter(|a| a.ends_with(".json")).filter_map(|a| version(a)).collect();
    eprintln!(
        "the restart read {} checkpoint(s) and {} JSON commits in {} requests to _delta_log",
        checkpoints.len(),
        commits.len(),
        read.values().sum::<u64>()
    );
    assert_eq!(checkpoints.len(), 1, "one checkpoint read: {read:#?}");
    assert!(checkpoints[0].contains("00000000000000000099.checkpoint"), "{read:#?}");
    assert!(!commits.is_empty() && commits.len() < 100, "{} JSON commits read: {read:#?}", commits.len());
    assert!(commits.iter().all(|v| *v > 99), "no commit the checkpoint covers is read: {commits:?}");
    // And the table still holds every row once.
    let count = "t = table.to_pyarrow_table()\nprint(t.num_rows, len(set(t.column('sale_id').to_pylist())))";
    assert_eq!(kappa_tests::python_deltalake_s3("s3://lake/warehouse/sales", &moto.endpoint, count).trim(), format!("{ROWS} {ROWS}"));
}

/// Compaction on S3: the consumer's files merged (`--compact`, at the end of the run), the
/// replaced ones kept for older versions, then vacuumed by `kappa-replay compact`.
#[tokio::test]
async fn a_compacted_s3_table_keeps_its_rows_and_vacuum_removes_the_replaced_files() {
    let moto = Moto::start();
    let s3 = s3_client(&moto.endpoint).await;
    s3.create_bucket().bucket("lake").send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    expect_status(&run(kappa("kappa-producer", None).args(sales_args()).args(["--to", &log, "--shards", "4"])), 0);
    let output = run(kappa("kappa-consumer", Some(&moto.endpoint)).args(["--from", &log]).args(S3_LAKE).args([
        "--flush-rows",
        "10",
        "--until-idle",
        "1s",
        "--compact",
        "--compact-min-age",
        "0s",
    ]));
    expect_status(&output, 0);
    let parquet_keys = || async {
        let listed = s3.list_objects_v2().bucket("lake").prefix("warehouse/sales/gen-000001/").send().await.unwrap();
        listed.contents().iter().filter_map(|o| o.key()).filter(|k| k.ends_with(".parquet")).map(str::to_string).collect::<Vec<_>>()
    };
    let stored = parquet_keys().await;
    let table = "s3://lake/warehouse/sales";
    let current = "print(len(table.file_uris()), table.to_pyarrow_table().num_rows, len(set(table.to_pyarrow_table().column('sale_id').to_pylist())))";
    assert_eq!(kappa_tests::python_deltalake_s3(table, &moto.endpoint, current).trim(), "4 400 400", "one file per day after the compaction");
    assert!(stored.len() > 40 + 4, "the replaced files stay until vacuumed: {}", stored.len());
    let vacuum = run(kappa("kappa-replay", Some(&moto.endpoint)).args(["compact", "--lake", "s3://lake/warehouse", "--table", "sales", "--retention", "0s"]));
    expect_status(&vacuum, 0);
    let left = parquet_keys().await;
    assert_eq!(left.len(), 4, "{left:#?}");
    assert!(left.iter().all(|k| k.rsplit('/').next().unwrap().starts_with("compacted-")), "{left:#?}");
    assert_eq!(kappa_tests::python_deltalake_s3(table, &moto.endpoint, current).trim(), "4 400 400");
}

/// Issue 35: a commit's many small files go to S3 many at a time, each PUT a round trip (20 ms
/// here, through the proxy); `--max-puts 1` stores them one by one. moto sees how many were in
/// flight at once; both tables hold every row once.
#[tokio::test]
async fn a_commit_of_many_small_files_stores_them_concurrently() {
    let moto = Moto::start();
    let s3 = s3_client(&moto.endpoint).await;
    s3.create_bucket().bucket("lake").send().await.unwrap();
    let proxy = kappa_tests::FaultProxy::start(&moto.endpoint);
    proxy.latency(0.02);
    let dir = tempfile::tempdir().unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    let people = kappa_tests::seed("people/generated_mock_data.csv");
    expect_status(&run(kappa("kappa-producer", None).arg("--input").arg(&people).args(["--to", &log, "--shards", "4"])), 0);
    for (max_puts, table) in [("64", "many"), ("1", "one")] {
        proxy.reset();
        // One file per year and shard: many small files.
        let args =
            ["--lake", "s3://lake/warehouse", "--table", table, "--event-time", "Date", "--partition-by", "year", "--max-puts", max_puts, "--per-shard-files"];
        let output = run(kappa("kappa-consumer", Some(&proxy.endpoint)).args(["--from", &log]).args(args).args(["--until-idle", "1s"]));
        expect_status(&output, 0);
        let listed = s3.list_objects_v2().bucket("lake").prefix(format!("warehouse/{table}/gen-000001/")).send().await.unwrap();
        let files = listed.contents().iter().filter_map(|o| o.key()).filter(|k| k.ends_with(".parquet")).count();
        assert!(files > 150, "56 years of birth dates over 4 shards: {files} files");
        let at_once = proxy.in_flight_max("PUT");
        match max_puts {
            // (A PUT the SDK retried while moto still held the first may make two.)
            "1" => assert!(at_once <= 2, "one PUT at a time: {at_once} at once"),
            _ => assert!(at_once >= 16, "{files} small files, {at_once} PUTs at once at most"),
        }
        let count = "t = table.to_pyarrow_table()\nprint(t.num_rows, len(set(t.column('Email').to_pylist())))";
        let distinct = kappa_tests::python_deltalake_s3(&format!("s3://lake/warehouse/{table}"), &moto.endpoint, count);
        let emails: std::collections::BTreeSet<String> =
            std::fs::read_to_string(&people).unwrap().lines().skip(1).map(|l| l.split(',').nth(1).unwrap().to_string()).collect();
        assert_eq!(distinct.trim(), format!("1000 {}", emails.len()), "every row once ({table})");
    }
}
