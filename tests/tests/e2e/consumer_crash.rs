//! Crash safety: the consumer killed with SIGKILL at random moments and restarted, many times,
//! must leave a lake whose rows are exactly the log's — and, with data-driven flushes only,
//! byte for byte the lake a run that was never killed writes.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kappa_tests::{delta_log, duckdb_delta, expect_status, kappa, lake_digest, python_deltalake, read_lake, run};

use crate::support::{generate_sales_csv, kill_repeatedly, summary};

const ROWS: u64 = 200_000;

/// Settings where only row counts trigger flushes (deterministic files).
const DATA_DRIVEN: [&str; 12] =
    ["--table", "sales", "--event-time", "sale_time", "--flush-rows", "1000", "--flush-interval", "1h", "--max-memory", "2GiB", "--status-interval", "1s"];

fn generate_log(dir: &Path, rows: u64) -> String {
    let csv = generate_sales_csv(dir, rows);
    let log = format!("log:{}", dir.join("log").display());
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&csv).args(["--to", &log, "--shards", "4"])), 0);
    log
}

#[test]
fn sigkill_at_random_moments_loses_and_doubles_nothing_and_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = generate_log(dir.path(), ROWS);
    let lake = dir.path().join("lake");
    // Kills 0.1–0.8 s into each run: the whole ingest takes about 2 s of consumer time (it
    // decodes on every core), so most runs die part way and later ones resume.
    let kills = kill_repeatedly(10, (100, 800), Duration::from_secs(240), || {
        let mut command = kappa("kappa-consumer", None);
        command.args(["--from", &log, "--lake"]).arg(&lake).args(DATA_DRIVEN).args(["--until-idle", "1s"]);
        command
    });
    assert!(kills >= 3, "only {kills} kills landed: the test did not exercise restarts");
    // Between a kill and the next start, readers of the table see the committed rows alone,
    // though the killed flush may have left files that no commit names.
    let table = lake.join("sales");
    if let Some(log) = delta_log(&table) {
        let committed = log.consumer_state["totals"]["rows"].as_u64().unwrap_or(0);
        assert_eq!(duckdb_delta(&table, "SELECT count(*) FROM {table}").trim(), format!("[({committed},)]"));
        assert_eq!(python_deltalake(&table, None, "print(table.to_pyarrow_table().num_rows)").trim(), committed.to_string());
    }
    // A last run, left alone, finishes the job.
    let output = run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(&lake).args(DATA_DRIVEN).args(["--until-idle", "1s"]));
    expect_status(&output, 0);

    let prefix = lake.join("sales/gen-000001");
    let on_disk: std::collections::BTreeSet<String> =
        kappa_tests::parquet_files(&prefix).iter().map(|p| p.strip_prefix(&table).unwrap().to_string_lossy().to_string()).collect();
    assert_eq!(on_disk, delta_log(&table).unwrap().files, "after the restart no file without a commit remains");
    let rows = read_lake(&prefix);
    let ids: HashSet<&str> = rows.iter().map(|r| r.row["sale_id"].as_str().unwrap()).collect();
    assert_eq!(rows.len() as u64, ROWS, "rows in the lake after {kills} kills");
    assert_eq!(ids.len() as u64, ROWS, "no row twice");

    // The same log consumed once, never killed: the same objects, byte for byte.
    let clean = dir.path().join("clean");
    let output = run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(&clean).args(DATA_DRIVEN).args(["--until-idle", "1s"]));
    expect_status(&output, 0);
    let killed_digest = lake_digest(&prefix);
    assert!(killed_digest.len() > 40, "{} files", killed_digest.len());
    // Every file: those cut by a row count, by --partition-idle, and by the final drain (the
    // same buffers are open at the log's end however the kills fell).
    let clean_digest = lake_digest(&clean.join("sales/gen-000001"));
    assert_eq!(killed_digest, clean_digest, "the files are a function of the log");
}

#[test]
fn sigterm_drains_commits_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let log = generate_log(dir.path(), 20_000);
    let lake = dir.path().join("lake");
    let summary_path = dir.path().join("summary.json");
    let port = kappa_tests::free_port();
    let mut child = kappa("kappa-consumer", None)
        .args(["--from", &log, "--lake"])
        .arg(&lake)
        .args(["--table", "sales", "--event-time", "sale_time", "--metrics-addr", &format!("127.0.0.1:{port}"), "--summary-json"])
        .arg(&summary_path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // No --until-idle: it would run forever. Once it has read everything (its metrics say
    // so), SIGTERM.
    kappa_tests::wait_for_metric(&mut child, port, "events_read_total", 20_000, Duration::from_secs(120));
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    expect_status(&output, 0);
    assert!(String::from_utf8_lossy(&output.stderr).contains("SIGTERM"));
    let rows = read_lake(&lake.join("sales/gen-000001"));
    assert_eq!(rows.len(), 20_000, "everything read was flushed and committed");
    assert_eq!(summary(&summary_path)["rows_written"], 20_000);
}

#[test]
fn a_file_sent_again_after_restarts_is_stored_once() {
    const FILE_ROWS: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let csv = generate_sales_csv(dir.path(), FILE_ROWS);
    let log = format!("log:{}", dir.path().join("log").display());
    let produce = || expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&csv).args(["--to", &log, "--shards", "4"])), 0);
    let lake = dir.path().join("lake");
    let consume = || {
        let mut command = kappa("kappa-consumer", None);
        command.args(["--from", &log, "--lake"]).arg(&lake).args(DATA_DRIVEN).args(["--until-idle", "0s"]);
        command
    };
    // The file, consumed by runs killed part way (about 1 s of work; resume points lag behind
    // what is written: 1,000-row buffers of several days are open at once), then a run that
    // finishes.
    produce();
    let mut kills = kill_repeatedly(4, (30, 350), Duration::from_secs(120), consume);
    expect_status(&run(&mut consume()), 0);
    // The same file sent again: read by new processes that know the first copy only from the
    // table's commits.
    produce();
    kills += kill_repeatedly(4, (30, 350), Duration::from_secs(120), consume);
    assert!(kills >= 2, "only {kills} kills landed: the test did not exercise restarts");
    let summary_path = dir.path().join("summary.json");
    expect_status(&run(consume().arg("--summary-json").arg(&summary_path)), 0);

    let table = lake.join("sales");
    let rows = read_lake(&table.join("gen-000001"));
    let ids: HashSet<&str> = rows.iter().map(|r| r.row["sale_id"].as_str().unwrap()).collect();
    assert_eq!((rows.len() as u64, ids.len() as u64), (FILE_ROWS, FILE_ROWS), "each row once");
    assert_eq!(duckdb_delta(&table, "SELECT count(*), count(DISTINCT sale_id) FROM {table}").trim(), format!("[({FILE_ROWS}, {FILE_ROWS})]"));
    // The commit remembers the file as one range of rows, not row by row.
    let state = delta_log(&table).unwrap().consumer_state;
    let seen = state["seen"].as_object().expect("the commit remembers the file");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen.values().next().unwrap()["rows"], format!("0-{}", FILE_ROWS - 1));
    assert_eq!(state["totals"]["rows"], FILE_ROWS);
}

/// Readings mostly in time order over 200 hours, 578 of 100,000 coming 45 to 120 hours late:
/// `--partition-idle` has closed their hour by then (in each shard, an hour and 10,000 events
/// after its last row), so a late row opens it again, and its buffer waits by as much as the
/// row was late (see `pipeline::route`). Late buffers therefore close in another order than
/// they opened: one opened later and less late is committed while an earlier one still holds
/// its shard's resume point back, so a restart reads rows again that a second file of their
/// hour already holds, and must skip them. Each commit records every shard's event time at its
/// resume point, so runs killed at random moments and restarted close every buffer, late or
/// not, at the row where an uninterrupted run does: the same files, byte for byte, and every
/// row once.
#[test]
fn late_rows_reopening_closed_hours_survive_kills_with_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, mut state) = (100_000u64, 3u64);
    let start = chrono::DateTime::parse_from_rfc3339("2024-03-01T00:00:00Z").unwrap();
    let (mut text, mut late, mut sum) = (String::from("id,taken,value\n"), 0u64, 0i64);
    for id in 0..rows {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        // 500 rows an hour, a few seconds apart.
        let mut seconds = (id * 200 * 3_600 / rows) as i64;
        let lateness = (45 * 3_600 + (state >> 40) % (75 * 3_600)) as i64;
        if (state >> 33) % 100 == 0 && lateness <= seconds {
            seconds -= lateness;
            late += 1;
        }
        let value = (id % 1_000) as i64 - 300;
        sum += value;
        let at = start + chrono::Duration::seconds(seconds);
        text.push_str(&format!("{id},{},{value}\n", at.format("%Y-%m-%dT%H:%M:%SZ")));
    }
    let csv = dir.path().join("readings.csv");
    std::fs::write(&csv, text).unwrap();
    // Two shards: 50,000 events each, so 10,000 events is a fifth of a shard, and most hours
    // close as the run goes.
    let log = format!("log:{}", dir.path().join("log").display());
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&csv).args(["--to", &log, "--shards", "2"])), 0);
    let consume = |lake: &Path| {
        let mut command = kappa("kappa-consumer", None);
        command.args(["--from", &log, "--lake"]).arg(lake).args(["--table", "readings", "--event-time", "taken", "--partition-by", "hour"]);
        command.args(["--partition-idle", "1h", "--flush-rows", "1000000", "--flush-interval", "1h", "--max-memory", "2GiB", "--until-idle", "1s"]);
        // As for events without the producer's identities (other tools' streams): only the
        // positions each commit records keep a row from being written twice.
        command.args(["--dedup-window", "0"]);
        command
    };

    let clean = dir.path().join("clean");
    expect_status(&run(&mut consume(&clean)), 0);
    let lake = dir.path().join("lake");
    let kills = kill_repeatedly(8, (100, 900), Duration::from_secs(240), || consume(&lake));
    assert!(kills >= 3, "only {kills} kills landed: the test did not exercise restarts");
    let table = lake.join("readings");
    // (Every run is killed: --until-idle waits a second after the log's end.) The killed runs
    // committed part of the log, and the last one read rows again that commits already hold.
    let committed = delta_log(&table).map_or(0, |log| log.consumer_state["totals"]["rows"].as_u64().unwrap_or(0));
    assert!(committed > 0 && committed < rows, "{committed} rows committed by the killed runs");
    let report = dir.path().join("last.json");
    expect_status(&run(consume(&lake).arg("--summary-json").arg(&report)), 0);
    let skipped = summary(&report)["already_committed_skipped"].as_u64().unwrap();
    assert!(skipped > 0, "the last run read nothing again: {}", summary(&report));

    let expected = format!("[({rows}, {rows}, {sum})]");
    assert_eq!(duckdb_delta(&table, "SELECT count(*), count(DISTINCT id), sum(value) FROM {table}").trim(), expected, "after {kills} kills");
    let on_disk: std::collections::BTreeSet<String> =
        kappa_tests::parquet_files(&table).iter().map(|p| p.strip_prefix(&table).unwrap().to_string_lossy().to_string()).collect();
    assert_eq!(on_disk, delta_log(&table).unwrap().files, "after the restart no file without a commit remains");
    // The late rows did open closed hours again: some hours have two files or more (the
    // shards' on-time buffers in one, each late buffer in its own).
    let mut hours: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for file in delta_log(&clean.join("readings")).unwrap().files {
        *hours.entry(file.rsplit_once('/').unwrap().0.to_string()).or_default() += 1;
    }
    let reopened = hours.values().filter(|n| **n > 1).count();
    assert!(late > 500 && reopened > 50, "{late} late rows, {reopened} hours written again, of {}", hours.len());
    assert_eq!(lake_digest(&table.join("gen-000001")), lake_digest(&clean.join("readings/gen-000001")), "the killed runs wrote other files");
}
