//! kappa-query's answers are right and bounded (issue 30, items 6–8): time travel out of
//! reach fails naming what can be read; `--format table` holds only the rows it shows; what
//! a statement scanned never exceeds the table.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kappa_tests::{expect_status, kappa, python, python_deltalake, run};

fn query(lake: &Path, args: &[&str], sql: &str) -> Output {
    run(kappa("kappa-query", None).arg("--lake").arg(lake).args(["--table", "sales"]).args(args).args(["--", sql]))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// A version's time as Delta readers take it, its commit file's modification time, as
/// kappa-query writes times (RFC 3339, milliseconds, UTC).
fn commit_time(table: &Path, version: u64) -> String {
    let modified = std::fs::metadata(table.join(format!("_delta_log/{version:020}.json"))).unwrap().modified().unwrap();
    chrono::DateTime::<chrono::Utc>::from(modified).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The seed sales (500 rows) in a lake, compacted and vacuumed by python deltalake (as a
/// Databricks job would), then its old log entries cleaned up: every way a version goes out
/// of reach, each answered with what can still be read.
#[test]
fn time_travel_out_of_reach_fails_naming_what_can_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = crate::support::sales_log(dir.path(), 500);
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    // Files per shard: a day's several files give the compaction below something to merge.
    let mut consume = kappa("kappa-consumer", None);
    consume.args(["--from", &log, "--lake"]).arg(&lake).args(["--table", "sales", "--until-idle", "0s", "--per-shard-files"]);
    expect_status(&run(&mut consume), 0);
    let count = |args: &[&str]| query(&lake, &["--format", "csv", "-q"].iter().chain(args).copied().collect::<Vec<_>>(), "SELECT count(*) AS n FROM sales");

    // Before the table existed: it was answered with 0 rows and status 0.
    let output = count(&["--as-of", "2001-01-01T00:00:00Z"]);
    expect_status(&output, 2);
    let created = commit_time(&table, 0);
    assert!(stderr(&output).contains(&format!("table sales did not exist yet: it was created at {created} (version 0)")), "{}", stderr(&output));
    // From its creation on, time travel reads the version current then.
    expect_status(&count(&["--as-of", &created]), 0);
    let current: u64 = python_deltalake(&table, None, "print(table.version())").trim().parse().unwrap();
    let output = count(&["--version", "999"]);
    expect_status(&output, 2);
    assert!(
        stderr(&output)
            .contains(&format!("--version 999: table sales has no such version; readable versions are 0 to {current} ({current} is the current one)")),
        "{}",
        stderr(&output)
    );
    let output = count(&["--as-of", "yesterday"]);
    expect_status(&output, 2);
    assert!(stderr(&output).contains("not a time: give RFC 3339 (2026-11-23T10:00:00Z"), "{}", stderr(&output));

    // Compacted and vacuumed: the consumer's versions name files that are gone.
    python_deltalake(
        &table,
        None,
        "table.optimize.compact(); table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False); print(table.version())",
    );
    let compacted = current + 1;
    let output = count(&["--version", &current.to_string()]);
    expect_status(&output, 2);
    let message = stderr(&output);
    assert!(message.contains(&format!("version {current} of table sales is no longer readable: ")), "{message}");
    assert!(message.contains("data files were removed by a vacuum (e.g. "), "{message}");
    assert!(
        message.contains(&format!("the oldest version whose files are all there is {compacted}, committed at {}", commit_time(&table, compacted))),
        "{message}"
    );
    let output = count(&["--version", &compacted.to_string()]);
    expect_status(&output, 0);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "n\n500\n");
    assert_eq!(python_deltalake(&table, Some(compacted), "print(table.to_pyarrow_table().num_rows)").trim(), "500");

    // Log retention: only the checkpoint and what follows it are left.
    python_deltalake(
        &table,
        None,
        "table.alter.set_table_properties({'delta.logRetentionDuration': 'interval 0 seconds'}); \
         from deltalake import DeltaTable; t = DeltaTable(table.table_uri); t.create_checkpoint(); t.cleanup_metadata(); print(t.version())",
    );
    let checkpoint: u64 = python_deltalake(&table, None, "print(table.version())").trim().parse().unwrap();
    assert!(!table.join("_delta_log/00000000000000000001.json").exists(), "deltalake cleaned the log up");
    let output = count(&["--version", "1"]);
    expect_status(&output, 2);
    assert!(
        stderr(&output).contains(&format!(
            "--version 1 of table sales is no longer readable: its log entries were cleaned up (Delta log retention); the only readable version is {checkpoint}"
        )),
        "{}",
        stderr(&output)
    );
    let output = count(&["--as-of", &created]);
    expect_status(&output, 2);
    assert!(
        stderr(&output)
            .contains(&format!("before the earliest readable version of table sales, {checkpoint}, committed at {}", commit_time(&table, checkpoint))),
        "{}",
        stderr(&output)
    );
    let output = count(&["--as-of", "2999-01-01"]);
    expect_status(&output, 0);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "n\n500\n");
}

/// Runs `command` to its end; returns its output and its peak resident memory (VmHWM, read
/// from /proc while it runs: the last reading before it exits).
fn run_measuring_peak(command: &mut Command) -> (Output, u64) {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starts");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reading = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        out.read_to_end(&mut bytes).unwrap();
        bytes
    });
    let reading_err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        err.read_to_end(&mut bytes).unwrap();
        bytes
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let hwm = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok())));
        peak_kib = peak_kib.max(hwm.unwrap_or(0));
        std::thread::sleep(Duration::from_millis(10));
    };
    (Output { status, stdout: reading.join().unwrap(), stderr: reading_err.join().unwrap() }, peak_kib << 10)
}

/// `--format table` shows at most --max-rows rows and says how many there were; a result of
/// 1.5M rows neither fills memory as a table (it held the whole result: 10M rows took 6.5 GB)
/// nor as CSV, which is written as it is read.
#[test]
fn a_large_result_is_shown_capped_and_written_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = crate::support::sales_log(dir.path(), 500);
    let lake = dir.path().join("lake");
    expect_status(&run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(&lake).args(["--table", "sales", "--until-idle", "0s"])), 0);

    let output = query(&lake, &["--format", "table", "--max-rows", "5"], "SELECT sale_id FROM sales ORDER BY sale_id");
    expect_status(&output, 0);
    let table = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(table.lines().filter(|l| l.starts_with("| ") && !l.contains("sale_id")).count(), 5, "{table}");
    assert!(stderr(&output).contains("showing the first 5 of 500 rows: --max-rows N shows more"), "{}", stderr(&output));
    // A result within the cap says nothing more.
    let output = query(&lake, &["--format", "table"], "SELECT count(*) FROM sales");
    assert!(!stderr(&output).contains("showing"), "{}", stderr(&output));
    expect_status(&query(&lake, &["--format", "csv", "--max-rows", "5"], "SELECT 1"), 2);

    // 500 rows × 3,000: 1.5M rows of every column, some 300 MB as Arrow arrays.
    let big = "SELECT s.*, g.value AS copy FROM sales s CROSS JOIN generate_series(1, 3000) g";
    let (output, table_peak) =
        run_measuring_peak(kappa("kappa-query", None).arg("--lake").arg(&lake).args(["--table", "sales", "--format", "table", "--", big]));
    expect_status(&output, 0);
    assert!(stderr(&output).contains("showing the first 1000 of 1500000 rows"), "{}", stderr(&output));
    let (output, csv_peak) = run_measuring_peak(kappa("kappa-query", None).arg("--lake").arg(&lake).args(["--table", "sales", "--format", "csv", "--", big]));
    expect_status(&output, 0);
    assert_eq!(output.stdout.iter().filter(|b| **b == b'\n').count(), 1_500_001, "a header and every row");
    for (format, peak) in [("table", table_peak), ("csv", csv_peak)] {
        assert!(peak > 0 && peak < 250 << 20, "--format {format}: peak memory {} MiB", peak >> 20);
    }
}

/// A full scan of a table of 64 small files (0.8 MiB each, 49 MiB: more than the 32 MiB of
/// small files a local scan keeps in memory, so some are read twice) reports what it read of
/// the table, each byte once: it reported 49.7 MiB of 49.0 (101.56%).
#[test]
fn what_a_statement_scanned_never_exceeds_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("lake/t");
    python(&format!(
        "import pyarrow as pa, deltalake, random\n\
         n = 30000\n\
         for i in range(64):\n\
         \x20   r = random.Random(i)\n\
         \x20   a = [r.random() for _ in range(n)]\n\
         \x20   b = [str(r.randrange(10**9)) for _ in range(n)]\n\
         \x20   deltalake.write_deltalake('{}', pa.table({{'a': a, 'b': b, 'c': pa.array(range(i * n, (i + 1) * n))}}), mode='append')\n",
        table.display()
    ));
    let summary = dir.path().join("summary.json");
    for sql in ["SELECT count(*), sum(a), max(b), sum(c) FROM t", "SELECT * FROM t ORDER BY a LIMIT 3", "SELECT sum(c) FROM t"] {
        let output = run(kappa("kappa-query", None)
            .args(["--lake"])
            .arg(dir.path().join("lake"))
            .args(["--table", "t", "--format", "csv", "--summary-json"])
            .arg(&summary)
            .args(["--", sql]));
        expect_status(&output, 0);
        let figures: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        let (scanned, total) = (figures["scanned_bytes"].as_u64().unwrap(), figures["table_bytes"].as_u64().unwrap());
        assert!(total > 40 << 20, "{figures}");
        assert!(scanned <= total, "{sql}: scanned {scanned} of {total} bytes: {}", stderr(&output));
        // Files this small are read whole: each byte of all 64, once.
        assert_eq!((scanned, figures["scanned_files"].as_u64().unwrap()), (total, 64), "{sql}: {figures}");
    }
}
