//! Right-sized files: the consumer spilling under a tiny memory bound instead of cutting files,
//! and `kappa-replay compact` merging each partition's files in commits that change no rows —
//! deterministic (a replayed generation compacts to the live one's bytes) and safe to kill.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kappa_tests::{current_generation, delta_log, duckdb_delta, expect_status, kappa, lake_digest, parquet_files, python_deltalake, run};

use crate::support::{copy_tree, kill_repeatedly, sales_log, summary};

/// Small row-count flushes: many files per partition, and every cut a function of the log.
const SMALL_FILES: [&str; 10] = ["--table", "sales", "--event-time", "sale_time", "--flush-rows", "100", "--flush-interval", "1h", "--max-memory", "2GiB"];

fn compact(lake: &Path, extra: &[&str]) -> serde_json::Value {
    let report = lake.join("compact.json");
    let output = run(kappa("kappa-replay", None).args(["compact", "--table", "sales", "--lake"]).arg(lake).arg("--summary-json").arg(&report).args(extra));
    expect_status(&output, 0);
    summary(&report)
}

/// Rows and distinct sale ids as DuckDB's `delta_scan` reads the table.
fn counted(lake: &Path) -> String {
    duckdb_delta(&lake.join("sales"), "SELECT count(*), count(DISTINCT sale_id) FROM {table}").trim().to_string()
}

/// The current version's files per partition directory, of the sales table.
fn files_per_partition(lake: &Path) -> BTreeMap<String, usize> {
    files_per_directory(&lake.join("sales"))
}

/// The current version's files per partition directory of the Delta table at `table`.
fn files_per_directory(table: &Path) -> BTreeMap<String, usize> {
    let mut partitions = BTreeMap::new();
    for file in delta_log(table).unwrap().files {
        *partitions.entry(file.rsplit_once('/').unwrap().0.to_string()).or_default() += 1;
    }
    partitions
}

/// The bytes of the current version's files per partition directory.
fn partition_bytes(lake: &Path) -> BTreeMap<String, u64> {
    let mut partitions = BTreeMap::new();
    for file in delta_log(&lake.join("sales")).unwrap().files {
        let size = std::fs::metadata(lake.join("sales").join(&file)).unwrap().len();
        *partitions.entry(file.rsplit_once('/').unwrap().0.to_string()).or_default() += size;
    }
    partitions
}

/// Files the table's current version holds.
fn delta_log_files(lake: &Path) -> usize {
    delta_log(&lake.join("sales")).unwrap().files.len()
}

/// `(path, sha256)` of the compacted files of a generation.
fn compacted(lake: &Path, generation: &str) -> Vec<(String, String)> {
    lake_digest(&lake.join("sales").join(generation)).into_iter().filter(|(path, _)| path.rsplit('/').next().unwrap().starts_with("compacted-")).collect()
}

#[test]
fn compaction_keeps_every_row_and_a_replayed_generation_compacts_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 60_000);
    let lake = dir.path().join("lake");
    // A live consumer killed along the way (partitions close behind the event time: its
    // restarts must close them at the same rows).
    let kills = kill_repeatedly(3, (50, 400), Duration::from_secs(120), || {
        let mut command = kappa("kappa-consumer", None);
        command.args(["--from", &log, "--lake"]).arg(&lake).args(SMALL_FILES).args(["--until-idle", "1s"]);
        command
    });
    expect_status(&run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(&lake).args(SMALL_FILES).args(["--until-idle", "1s"])), 0);
    eprintln!("live consumer killed {kills} times");
    let before = files_per_partition(&lake);
    assert!(before.values().sum::<usize>() > 10 * before.len(), "small files everywhere: {before:?}");
    // (The last day's few rows are one file: nothing to merge there.)
    let several = before.values().filter(|n| **n > 1).count() as u64;
    assert!(several + 1 >= before.len() as u64, "{before:?}");
    let version_before = delta_log(&lake.join("sales")).unwrap().version;
    assert_eq!(counted(&lake), "[(60000, 60000)]");
    // A copy to compact with a target size below most partitions' bytes: each of those goes
    // alone, a file read at a time, instead of with others on every core.
    let one_at_a_time = dir.path().join("one-at-a-time");
    copy_tree(&lake, &one_at_a_time);

    // Too young for the default --min-age: nothing is touched.
    let young = compact(&lake, &[]);
    assert_eq!((young["partitions_compacted"].as_u64(), young["partitions_too_young"].as_u64()), (Some(0), Some(several)), "{young}");

    let report = compact(&lake, &["--min-age", "0s"]);
    assert_eq!(report["partitions_compacted"].as_u64(), Some(several), "{report}");
    // Every row but the last day's few (one file already).
    assert!(report["rows"].as_u64().unwrap() > 59_900, "{report}");
    let after = files_per_partition(&lake);
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
    assert!(after.values().all(|n| *n == 1), "one file per partition: {after:?}");
    assert_eq!(counted(&lake), "[(60000, 60000)]", "the same rows after the compaction");
    // The version before the compaction still reads: the replaced files stay until vacuumed.
    assert_eq!(python_deltalake(&lake.join("sales"), Some(version_before), "print(table.to_pyarrow_table().num_rows)").trim(), "60000");
    let log_text = std::fs::read_to_string(lake.join(format!("sales/_delta_log/{:020}.json", version_before + 1))).unwrap();
    assert!(log_text.contains("\"operation\":\"OPTIMIZE\"") && !log_text.contains("\"dataChange\":true"), "a commit that changes no rows");
    // Readers open the compacted table from a checkpoint of it, not by replaying every add and
    // remove since the table began (DuckDB counted the rows above through it).
    let compacted_version = version_before + 1;
    assert!(lake.join(format!("sales/_delta_log/{compacted_version:020}.checkpoint.parquet")).exists(), "the compaction is checkpointed");
    let last_checkpoint = std::fs::read_to_string(lake.join("sales/_delta_log/_last_checkpoint")).unwrap();
    assert!(last_checkpoint.contains(&format!("\"version\":{compacted_version},")), "{last_checkpoint}");
    let live = compacted(&lake, "gen-000001");
    assert_eq!(live.len() as u64, several);
    // The same merged files either way (named apart: the target size is in their names).
    let sizes = partition_bytes(&one_at_a_time);
    let alone = sizes.values().filter(|bytes| **bytes > 8 << 10).count();
    assert!(alone * 2 > sizes.len(), "most partitions over the target size: {sizes:?}");
    let report = compact(&one_at_a_time, &["--min-age", "0s", "--target-file-size", "8KiB"]);
    assert_eq!(report["partitions_compacted"].as_u64(), Some(several), "{report}");
    // Each partition's merged file, by partition directory.
    let contents = |files: Vec<(String, String)>| {
        files.into_iter().map(|(path, digest)| (path.rsplit_once('/').unwrap().0.to_string(), digest)).collect::<BTreeMap<_, _>>()
    };
    assert_eq!(contents(compacted(&one_at_a_time, "gen-000001")), contents(live.clone()), "the same files merged alone as together");
    assert_eq!(counted(&one_at_a_time), "[(60000, 60000)]");

    // A consumer run after the compaction keeps the replaced files (readers of old versions).
    let files_on_disk = parquet_files(&lake.join("sales/gen-000001")).len();
    expect_status(&run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(&lake).args(SMALL_FILES).args(["--until-idle", "1s"])), 0);
    assert_eq!(parquet_files(&lake.join("sales/gen-000001")).len(), files_on_disk);

    // A replay with other flush settings cuts other files (other buffers cut by the row count
    // alone, other last buffers of each day and shard in the day's file of all shards);
    // compacted, they are the same bytes.
    let mut other_cuts = SMALL_FILES;
    other_cuts[5] = "170";
    let replay = run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args(other_cuts).arg("--switch"));
    expect_status(&replay, 0);
    assert_eq!(current_generation(&lake, "sales"), "gen-000002");
    let switched = delta_log(&lake.join("sales")).unwrap().version;
    assert!(lake.join(format!("sales/_delta_log/{switched:020}.checkpoint.parquet")).exists(), "the switch is checkpointed");
    compact(&lake, &["--min-age", "0s"]);
    assert_eq!(compacted(&lake, "gen-000002"), live, "replay plus compaction gives the live table's compacted files");

    // Vacuum: the replaced files go once past the retention; the rows stay.
    let vacuum = compact(&lake, &["--min-age", "0s", "--retention", "0s"]);
    assert!(vacuum["vacuumed"].as_u64().unwrap() > 0, "{vacuum}");
    let on_disk: Vec<String> = parquet_files(&lake.join("sales/gen-000002"))
        .iter()
        .map(|p| format!("gen-000002/{}", p.strip_prefix(lake.join("sales/gen-000002")).unwrap().display()))
        .collect();
    let in_table: Vec<String> = delta_log(&lake.join("sales")).unwrap().files.into_iter().collect();
    assert_eq!(on_disk, in_table, "only the current files are left");
    assert_eq!(counted(&lake), "[(60000, 60000)]");
}

#[test]
fn a_compaction_killed_at_any_point_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 30_000);
    let lake = dir.path().join("lake");
    expect_status(&run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(&lake).args(SMALL_FILES).args(["--until-idle", "1s"])), 0);
    let partitions = files_per_partition(&lake).len();
    let compaction = |lake: &Path| {
        let mut command = kappa("kappa-replay", None);
        command.args(["compact", "--table", "sales", "--min-age", "0s", "--commit-every", "1", "--lake"]).arg(lake);
        command
    };
    // Kill times drawn from a fixed window missed a fast machine's whole compaction (CI: done
    // in 366 ms, first kill drawn later): time an uninterrupted one on a copy, and kill within
    // its first 60%.
    let timing_copy = dir.path().join("timing");
    copy_tree(&lake, &timing_copy);
    let started = Instant::now();
    expect_status(&run(&mut compaction(&timing_copy)), 0);
    let uninterrupted = started.elapsed().as_millis() as u64;
    eprintln!("an uninterrupted compaction takes {uninterrupted} ms");
    // A commit per partition: kills land before, between and after commits.
    let kills = kill_repeatedly(6, (5, (uninterrupted * 3 / 5).max(20)), Duration::from_secs(120), || compaction(&lake));
    eprintln!("compaction killed {kills} times");
    assert!(kills >= 1, "no kill landed");
    let versions = delta_log(&lake.join("sales")).unwrap().version;
    eprintln!("the table is at version {versions} after the kills");
    assert_eq!(counted(&lake), "[(30000, 30000)]", "after the kills");
    compact(&lake, &["--min-age", "0s", "--retention", "0s"]);
    assert_eq!(counted(&lake), "[(30000, 30000)]");
    let after = files_per_partition(&lake);
    assert_eq!(after.len(), partitions);
    assert!(after.values().all(|n| *n == 1), "{after:?}");
    assert_eq!(parquet_files(&lake.join("sales/gen-000001")).len(), partitions, "no orphan left behind");
}

#[test]
fn under_a_tiny_memory_bound_the_consumer_spills_instead_of_cutting_files_and_survives_kills() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 60_000);
    let spill = dir.path().join("spill");
    std::fs::create_dir_all(&spill).unwrap();
    // Large row triggers, no idle closing: every (partition, shard) buffer stays open to the
    // end, far beyond 1 MiB.
    let args = |lake: &Path| {
        let mut command = kappa("kappa-consumer", None);
        command.args(["--from", &log, "--lake"]).arg(lake).args(["--table", "sales", "--event-time", "sale_time", "--flush-rows", "1000000"]);
        command.args(["--flush-interval", "1h", "--partition-idle", "off", "--max-memory", "1MiB", "--until-idle", "1s", "--spill-dir"]).arg(&spill);
        command
    };
    let lake = dir.path().join("lake");
    let report = dir.path().join("summary.json");
    expect_status(&run(args(&lake).arg("--summary-json").arg(&report)), 0);
    let s = summary(&report);
    // 60,000 rows come in a few chunks of up to 32,768 events: a spill after each.
    assert!(s["spills"].as_u64().unwrap() >= 2, "{s}");
    // Issue 35: no row spilled twice (spilled rows stay in the scratch directory until written).
    let spilled = s["spilled_rows"].as_u64().unwrap();
    assert!(spilled > 10_000 && spilled <= 60_000, "rows spilled: {s}");
    let partitions = files_per_partition(&lake);
    assert!(partitions.values().all(|n| *n <= 4), "at most one file per partition and shard: {partitions:?}");
    assert_eq!(counted(&lake), "[(60000, 60000)]");
    assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 0, "the scratch directory is removed at exit");

    // Killed while spilling: the restart clears the scratch files and writes each row once.
    let crashed = dir.path().join("crashed");
    let kills = kill_repeatedly(4, (50, 500), Duration::from_secs(120), || args(&crashed));
    expect_status(&run(&mut args(&crashed)), 0);
    eprintln!("spilling consumer killed {kills} times");
    assert_eq!(counted(&crashed), "[(60000, 60000)]");
    assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 0, "no scratch files left");
    // With the same data-driven cuts, the crashed lake holds the uninterrupted one's files.
    assert_eq!(lake_digest(&crashed.join("sales/gen-000001")), lake_digest(&lake.join("sales/gen-000001")));
}

/// Readings in random time order over 240 hours.
const READINGS: u64 = 120_000;
/// What the readings' table must answer: rows, distinct ids, the values' sum, notes, hours.
const READINGS_QUERY: &str = "SELECT count(*), count(DISTINCT id), sum(value), count(note), count(DISTINCT date_trunc('hour', taken)) FROM {table}";

/// [`READINGS`] rows in random time order over 240 hour partitions, with a null in every
/// seventh note, produced into a 4-shard log under `dir`: the log, and DuckDB's answer to
/// [`READINGS_QUERY`] over all of them.
fn random_readings(dir: &Path) -> (String, String) {
    let csv = dir.join("readings.csv");
    // Four chunks of up to 32,768 events: a spill after each of the first three at least.
    let (rows, mut state) = (READINGS, 35u64);
    let (mut sum, mut notes) = (0i64, 0u64);
    let mut text = String::from("id,taken,value,note\n");
    for id in 0..rows {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let (hour, minute) = ((state >> 33) % 240, (state >> 20) % 60);
        let value = (id * 37 % 1000) as i64 - 500;
        sum += value;
        // Every seventh note is missing: a null column value among the rows spilled.
        let note = match id % 7 {
            0 => String::new(),
            _ => format!("reading {id}"),
        };
        notes += u64::from(id % 7 != 0);
        text.push_str(&format!("{id},2024-03-{:02}T{:02}:{minute:02}:00Z,{value},{note}\n", 1 + hour / 24, hour % 24));
    }
    std::fs::write(&csv, text).unwrap();
    let log = format!("log:{}", dir.join("log").display());
    crate::support::produce_csv(&csv, &log);
    (log, format!("[({rows}, {rows}, {sum}, {notes}, 240)]"))
}

/// Rows in random time order over 240 hour partitions and 4 shards: each chunk feeds hundreds
/// of buffers, is reordered by buffer once, and the buffers hold ranges of it (issue 35). Under
/// a tiny memory bound they spill every few thousand rows; the lake must be the unbounded run's
/// byte for byte, with every value, and again after kills.
#[test]
fn rows_in_random_time_order_over_many_hours_spill_once_and_come_back_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (log, expected) = random_readings(dir.path());
    let rows = READINGS;
    let consumer = |lake: &Path, memory: &str| {
        let mut command = kappa("kappa-consumer", None);
        command.args(["--from", &log, "--lake"]).arg(lake).args(["--table", "readings", "--event-time", "taken", "--partition-by", "hour"]);
        command.args(["--flush-rows", "1000000", "--flush-interval", "1h", "--partition-idle", "off", "--until-idle", "1s", "--max-memory", memory]);
        command.arg("--spill-dir").arg(dir.path().join("spill"));
        command
    };
    let (unbounded, bounded) = (dir.path().join("unbounded"), dir.path().join("bounded"));
    let report = dir.path().join("summary.json");
    expect_status(&run(consumer(&unbounded, "2GiB").arg("--summary-json").arg(&report)), 0);
    assert_eq!(summary(&report)["spills"], 0, "2 GiB holds 120,000 rows");
    expect_status(&run(consumer(&bounded, "1MiB").arg("--summary-json").arg(&report)), 0);
    let s = summary(&report);
    assert!(s["spills"].as_u64().unwrap() >= 3, "{s}");
    let spilled = s["spilled_rows"].as_u64().unwrap();
    assert!(spilled > rows / 2 && spilled <= rows, "no row spilled twice: {s}");

    let generation = |lake: &Path| lake_digest(&lake.join("readings/gen-000001"));
    assert_eq!(generation(&bounded), generation(&unbounded), "memory pressure changed no file");
    let per_hour = files_per_directory(&bounded.join("readings"));
    assert_eq!(per_hour.len(), 240, "every hour of the 10 days");
    assert!(per_hour.values().all(|n| *n <= 4), "at most one file per hour and shard: {per_hour:?}");
    assert_eq!(duckdb_delta(&bounded.join("readings"), READINGS_QUERY).trim(), expected);

    // Killed while reading and spilling: the restarts write the unbounded run's files.
    let crashed = dir.path().join("crashed");
    let kills = kill_repeatedly(4, (50, 700), Duration::from_secs(180), || consumer(&crashed, "1MiB"));
    expect_status(&run(&mut consumer(&crashed, "1MiB")), 0);
    eprintln!("consumer killed {kills} times");
    assert_eq!(generation(&crashed), generation(&unbounded));
    assert_eq!(duckdb_delta(&crashed.join("readings"), READINGS_QUERY).trim(), expected);
    assert_eq!(std::fs::read_dir(dir.path().join("spill")).unwrap().count(), 0, "no scratch files left");
}

/// By default a commit writes a partition's buffers from all four shards as one file. Rows in
/// random time order over 240 hours, spilled under a tiny memory bound and all written at the
/// end: one file an hour, with every value, for DuckDB and python deltalake. Sales in time
/// order by hour, with hours closing as the run goes (each shard's buffer waiting for the
/// others'): fewer files than one per hour and shard (`--per-shard-files`), and killed again
/// and again, every row exactly once in the very files of an uninterrupted run.
#[test]
fn files_of_all_shards_are_one_per_partition_and_restarts_write_them_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (log, expected) = random_readings(dir.path());
    let lake = dir.path().join("lake");
    let mut command = kappa("kappa-consumer", None);
    command.args(["--from", &log, "--lake"]).arg(&lake).args(["--table", "readings", "--event-time", "taken", "--partition-by", "hour"]);
    command
        .args(["--flush-interval", "1h", "--partition-idle", "off", "--until-idle", "1s", "--max-memory", "1MiB", "--spill-dir"])
        .arg(dir.path().join("spill"));
    expect_status(&run(&mut command), 0);
    let per_hour = files_per_directory(&lake.join("readings"));
    assert_eq!(per_hour.len(), 240, "every hour of the 10 days");
    assert!(per_hour.values().all(|n| *n == 1), "one file per hour: {per_hour:?}");
    // Each of the four shards' buffers: a merged file's name, a hash of them.
    for file in delta_log(&lake.join("readings")).unwrap().files {
        let name = file.rsplit('/').next().unwrap();
        let hash = name.strip_prefix("part-").and_then(|n| n.strip_suffix(".parquet")).unwrap_or_default();
        assert!(hash.len() == 32 && hash.chars().all(|c| c.is_ascii_hexdigit()), "{file}");
    }
    assert_eq!(std::fs::read_dir(dir.path().join("spill")).unwrap().count(), 0, "no scratch files left");
    assert_eq!(duckdb_delta(&lake.join("readings"), READINGS_QUERY).trim(), expected);
    assert_eq!(python_deltalake(&lake.join("readings"), None, "print(table.to_pyarrow_table().num_rows)").trim(), READINGS.to_string());

    let sales = dir.path().join("sales");
    std::fs::create_dir_all(&sales).unwrap();
    let (log, _) = sales_log(&sales, 60_000);
    let args = |lake: &Path, per_shard: bool| {
        let mut command = kappa("kappa-consumer", None);
        command.args(["--from", &log, "--lake"]).arg(lake).args([
            "--table",
            "sales",
            "--event-time",
            "sale_time",
            "--partition-by",
            "hour",
            "--until-idle",
            "1s",
        ]);
        command.args(if per_shard { &["--per-shard-files"][..] } else { &[] });
        command
    };
    let (apart, merged) = (sales.join("apart"), sales.join("merged"));
    expect_status(&run(&mut args(&apart, true)), 0);
    expect_status(&run(&mut args(&merged, false)), 0);
    let (apart_files, merged_files) = (delta_log_files(&apart), delta_log_files(&merged));
    eprintln!("sales by hour: {apart_files} files one per hour and shard, {merged_files} merged");
    assert!(merged_files * 2 < apart_files, "{merged_files} merged files against {apart_files}");
    assert_eq!(counted(&merged), "[(60000, 60000)]");
    let values = "SELECT count(*), count(DISTINCT sale_id), sum(round(total_amount * 100)::BIGINT), count(DISTINCT unit_price), min(sale_time), max(sale_time) FROM {table}";
    assert_eq!(duckdb_delta(&merged.join("sales"), values), duckdb_delta(&apart.join("sales"), values));

    let crashed = sales.join("crashed");
    let kills = kill_repeatedly(4, (50, 500), Duration::from_secs(120), || args(&crashed, false));
    expect_status(&run(&mut args(&crashed, false)), 0);
    eprintln!("consumer killed {kills} times");
    assert_eq!(counted(&crashed), "[(60000, 60000)]");
    assert_eq!(lake_digest(&crashed.join("sales/gen-000001")), lake_digest(&merged.join("sales/gen-000001")), "the uninterrupted run's files");
    assert_eq!(duckdb_delta(&crashed.join("sales"), values), duckdb_delta(&apart.join("sales"), values));
}

/// Files of all shards with several buffers per hour and shard (`--flush-rows 16`) under a
/// tiny memory bound: a partition's buffers wait or go together (a later buffer of a shard
/// committed while an earlier one waits would pass rows a restart skips). Killed again and
/// again, every row once, the files of an uninterrupted run byte for byte, and no file beside
/// the table.
#[test]
fn files_of_all_shards_with_many_buffers_per_partition_are_written_again_byte_for_byte_through_kills() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 60_000);
    let args = |lake: &Path| {
        let mut command = kappa("kappa-consumer", None);
        command.args(["--from", &log, "--lake"]).arg(lake).args(["--table", "sales", "--event-time", "sale_time", "--partition-by", "hour"]);
        command.args(["--flush-rows", "16", "--max-memory", "1MiB", "--until-idle", "1s", "--spill-dir"]).arg(dir.path().join("spill"));
        command
    };
    let (clean, crashed) = (dir.path().join("clean"), dir.path().join("crashed"));
    expect_status(&run(&mut args(&clean)), 0);
    let values = "SELECT count(*), count(DISTINCT sale_id), sum(round(total_amount * 100)::BIGINT), count(DISTINCT unit_price), min(sale_time), max(sale_time) FROM {table}";
    assert_eq!(counted(&clean), "[(60000, 60000)]");
    let kills = kill_repeatedly(5, (50, 800), Duration::from_secs(180), || args(&crashed));
    expect_status(&run(&mut args(&crashed)), 0);
    eprintln!("consumer with many buffers killed {kills} times");
    assert_eq!(counted(&crashed), "[(60000, 60000)]");
    assert_eq!(lake_digest(&crashed.join("sales/gen-000001")), lake_digest(&clean.join("sales/gen-000001")), "the uninterrupted run's files");
    assert_eq!(duckdb_delta(&crashed.join("sales"), values), duckdb_delta(&clean.join("sales"), values));
    assert_eq!(parquet_files(&crashed.join("sales/gen-000001")).len(), delta_log_files(&crashed), "files no commit names");
}

/// Files of all shards over a log whose shards are read at uneven paces in event time: rows in
/// time order over 240 hours, 70% of them under one partition key (an airline's flights), so
/// one shard holds most of each hour and reaches an hour's end last. The other shards close the
/// hour first; their buffers wait for it, and each hour is one file (held back from one commit
/// at most, 214 of the 240 hours were in two files or more).
#[test]
fn files_of_all_shards_wait_for_a_shard_behind_in_event_time() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("flights.csv");
    let carriers = ["B6", "DL", "EV", "UA", "US", "WN", "MQ", "9E", "FL", "VX", "OO", "YV", "HA", "F9", "AS"];
    let mut state = 11u64;
    let mut text = String::from("id,taken,carrier,value\n");
    for id in 0..120_000u64 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let carrier = if (state >> 33) % 10 < 7 { "AA" } else { carriers[((state >> 40) % 15) as usize] };
        let (hour, second) = (id / 500, (id % 500) * 3600 / 500);
        text.push_str(&format!("{id},2024-03-{:02}T{:02}:{:02}:{:02}Z,{carrier},{}\n", 1 + hour / 24, hour % 24, second / 60, second % 60, id % 97));
    }
    std::fs::write(&csv, text).unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&csv).args(["--to", &log, "--shards", "4", "--partition-key", "carrier"])), 0);
    let lake = dir.path().join("lake");
    let mut command = kappa("kappa-consumer", None);
    command.args(["--from", &log, "--lake"]).arg(&lake).args(["--table", "flights", "--event-time", "taken", "--partition-by", "hour", "--until-idle", "0s"]);
    expect_status(&run(&mut command), 0);
    let per_hour = files_per_directory(&lake.join("flights"));
    assert_eq!(per_hour.len(), 240, "every hour");
    let split: Vec<_> = per_hour.iter().filter(|(_, n)| **n > 1).collect();
    assert!(split.is_empty(), "one file per hour: {} hours in several: {split:?}", split.len());
    let query = "SELECT count(*), count(DISTINCT id), sum(value), count(DISTINCT carrier) FROM {table}";
    let expected = format!("[(120000, 120000, {}, 16)]", (0..120_000u64).map(|id| id % 97).sum::<u64>());
    assert_eq!(duckdb_delta(&lake.join("flights"), query).trim(), expected);
}

/// `--partition-idle` (default 1h) over rows in random time order across 3,000 days, with a
/// row for any one day only every 3,000 events or so: the latest time still climbs for
/// thousands of events, past the closing of the days that got a row early, and a quiet stretch
/// of 10,000 events wrote 354 of the days twice (a late row now makes its day wait by how far
/// the shard's time was past the day's end). Rows in time order still close each day as the run
/// goes.
#[test]
fn rows_out_of_time_order_are_not_closed_early_as_idle_and_rows_in_order_are() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, days) = (40_000u64, 3_000u64);
    let mut state = 7u64;
    let times: Vec<(u64, u64)> = (0..rows)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) % days, (state >> 13) % 86_400)
        })
        .collect();
    let csv_of = |times: &[(u64, u64)]| {
        let mut text = String::from("id,taken\n");
        for (id, (day, second)) in times.iter().enumerate() {
            // 2000-01-01 is day 10,957 of the Unix epoch.
            let at = chrono::DateTime::from_timestamp(((10_957 + day) * 86_400 + second) as i64, 0).unwrap();
            text.push_str(&format!("{id},{}\n", at.format("%Y-%m-%dT%H:%M:%SZ")));
        }
        text
    };
    let consume = |name: &str, text: String| {
        let csv = dir.path().join(format!("{name}.csv"));
        std::fs::write(&csv, text).unwrap();
        let log = format!("log:{}", dir.path().join(format!("{name}-log")).display());
        expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&csv).args(["--to", &log, "--shards", "1"])), 0);
        let lake = dir.path().join(format!("{name}-lake"));
        let mut command = kappa("kappa-consumer", None);
        command.args(["--from", &log, "--lake"]).arg(&lake).args(["--table", "readings", "--event-time", "taken", "--flush-interval", "1h"]);
        expect_status(&run(command.args(["--max-memory", "2GiB", "--until-idle", "1s"])), 0);
        lake.join("readings")
    };

    let random = consume("random", csv_of(&times));
    let days_written = files_per_directory(&random);
    let twice: Vec<_> = days_written.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{} of {} days written in more than one file (one shard): {twice:?}", twice.len(), days_written.len());
    assert_eq!(duckdb_delta(&random, "SELECT count(*), count(DISTINCT id) FROM {table}").trim(), format!("[({rows}, {rows})]"));

    // In time order (20 days of 1,000 rows): the first commit writes the first days while the
    // rest are still read.
    let ordered: Vec<(u64, u64)> = (0..20_000).map(|id| (id / 1_000, id % 1_000 * 86)).collect();
    let ordered = consume("ordered", csv_of(&ordered));
    let days_written = files_per_directory(&ordered);
    assert!(days_written.len() == 20 && days_written.values().all(|n| *n == 1), "{days_written:?}");
    // The days of the first version that adds files.
    let mut first_days: Vec<String> = (0..)
        .map(|version| std::fs::read_to_string(ordered.join(format!("_delta_log/{version:020}.json"))).unwrap())
        .map(|commit| {
            commit
                .lines()
                .filter_map(|line| {
                    serde_json::from_str::<serde_json::Value>(line).unwrap()["add"]["path"].as_str().map(|p| p.rsplit_once('/').unwrap().0.to_string())
                })
                .collect::<Vec<String>>()
        })
        .find(|days| !days.is_empty())
        .unwrap();
    first_days.sort();
    assert!(!first_days.is_empty() && first_days.len() < 20, "the first commit closed days as the run went: {first_days:?}");
    let earliest: Vec<&String> = days_written.keys().take(first_days.len()).collect();
    assert_eq!(first_days.iter().collect::<Vec<_>>(), earliest, "the first commit's days are the earliest");
}

#[test]
fn a_consumer_with_compact_leaves_one_file_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 30_000);
    let lake = dir.path().join("lake");
    // Passes every second while it reads, and one at the end of the --until-idle run.
    let output = run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(&lake).args(SMALL_FILES).args([
        "--until-idle",
        "2s",
        "--compact",
        "--compact-every",
        "1s",
        "--compact-min-age",
        "0s",
    ]));
    expect_status(&output, 0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("compaction of sales:"), "{stderr}");
    let after = files_per_partition(&lake);
    assert!(after.len() >= 30 && after.values().all(|n| *n == 1), "{after:?}");
    assert_eq!(counted(&lake), "[(30000, 30000)]");
    // A restart reads on from the consumer's own state, behind the compaction commits.
    let summary_path = dir.path().join("again.json");
    expect_status(
        &run(kappa("kappa-consumer", None)
            .args(["--from", &log, "--lake"])
            .arg(&lake)
            .args(SMALL_FILES)
            .args(["--until-idle", "1s", "--summary-json"])
            .arg(&summary_path)),
        0,
    );
    assert_eq!(summary(&summary_path)["events_read"], 0);
    assert_eq!(counted(&lake), "[(30000, 30000)]");
}

#[test]
fn a_flush_of_thousands_of_files_goes_in_several_commits_and_survives_kills() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 60_000);
    // Hour partitions that all stay open to the end: ~2,900 (hour, shard) files in the last
    // flush, more than one commit takes.
    let args = |lake: &Path, summary: Option<&Path>| {
        let mut command = kappa("kappa-consumer", None);
        command.args(["--from", &log, "--lake"]).arg(lake).args(["--table", "sales", "--event-time", "sale_time", "--partition-by", "hour"]);
        // One file per (hour, shard): files of all shards would be a quarter as many.
        command.args(["--partition-idle", "off", "--flush-interval", "1h", "--until-idle", "1s", "--per-shard-files"]);
        if let Some(path) = summary {
            command.arg("--summary-json").arg(path);
        }
        command
    };
    let clean = dir.path().join("clean");
    let report = dir.path().join("clean.json");
    expect_status(&run(&mut args(&clean, Some(&report))), 0);
    let s = summary(&report);
    let files = s["files"].as_u64().unwrap();
    assert!(files > 2_000, "{s}");
    assert!(s["commits"].as_u64().unwrap() >= files.div_ceil(1000), "{s}");
    assert_eq!(counted(&clean), "[(60000, 60000)]");

    // Killed as soon as the first of those commits is in the log: the restart must read again
    // what the later ones would have written, and nothing twice.
    let crashed = dir.path().join("crashed");
    let mut child = args(&crashed, None).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while !crashed.join("sales/_delta_log").exists() || delta_log_files(&crashed) == 0 {
        assert!(started.elapsed() < Duration::from_secs(120), "no commit came");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let committed = delta_log_files(&crashed);
    assert!(committed > 0 && (committed as u64) < files, "killed between the commits of one flush: {committed} of {files} files");
    expect_status(&run(&mut args(&crashed, None)), 0);
    assert_eq!(counted(&crashed), "[(60000, 60000)]");
    assert_eq!(lake_digest(&crashed.join("sales/gen-000001")), lake_digest(&clean.join("sales/gen-000001")));
}
