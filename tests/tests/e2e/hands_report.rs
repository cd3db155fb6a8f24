//! Tools report the table, not their bookkeeping (issue 31): `status` and `describe` read
//! rows, files and bytes from the Delta log whoever wrote it; summaries name the table's root;
//! commits stay small however many producer files the dedup state remembers; a compaction's
//! report says what it did this time.

use std::path::Path;

use kappa_tests::{delta_log, duckdb_delta, expect_status, kappa, python_deltalake, run};

use crate::hands::{consume, counted};
use crate::support::{sales_log, summary};

const ARGS: [&str; 4] = ["--table", "sales", "--event-time", "sale_time"];

/// The `*` line of `kappa-replay status` for `generation`: (rows, files, bytes).
fn status_line(lake: &Path, generation: &str) -> (u64, u64, u64, String) {
    let output = run(kappa("kappa-replay", None).args(["status", "--table", "sales", "--lake"]).arg(lake));
    expect_status(&output, 0);
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let line = text.lines().find(|l| l.split_whitespace().any(|w| w == generation)).unwrap_or_else(|| panic!("{generation} in {text}")).to_string();
    let numbers: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (numbers[0], numbers[1], numbers[2], line)
}

/// After python deltalake deleted, compacted and vacuumed, `status` said 28,000 rows in 1,439
/// files where every reader read 19,850, and `describe` 480 files; after a switch the old
/// generation showed "… incomplete" with 0 rows though time travel read it.
#[test]
fn status_and_describe_report_the_table_as_readers_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 20_000);
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    let first = dir.path().join("first.json");
    let output =
        run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(&lake).args(ARGS).args(["--until-idle", "0s", "--summary-json"]).arg(&first));
    expect_status(&output, 0);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&format!("(read it at {})", table.display())),
        "the table's root: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    python_deltalake(
        &table,
        None,
        "table.delete('quantity > 8'); table.optimize.compact(); table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)",
    );
    let rows: u64 = duckdb_delta(&table, "SELECT count(*) FROM {table}").trim().trim_start_matches("[(").trim_end_matches(",)]").parse().unwrap();
    assert!(rows < 20_000);
    let files: u64 = python_deltalake(&table, None, "print(len(table.file_uris()))").trim().parse().unwrap();
    let bytes: u64 = delta_log(&table).unwrap().files.iter().map(|f| std::fs::metadata(table.join(f)).unwrap().len()).sum();
    let (status_rows, status_files, status_bytes, line) = status_line(&lake, "gen-000001");
    assert_eq!((status_rows, status_files, status_bytes), (rows, files, bytes), "{line}");
    let describe = run(kappa("kappa-consumer", None).args(["describe", "--table", "sales", "--lake"]).arg(&lake));
    expect_status(&describe, 0);
    let text = String::from_utf8_lossy(&describe.stdout).to_string();
    let total = text.lines().find(|l| l.starts_with("total ")).unwrap().split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!((total[1].parse::<u64>().unwrap(), total[2].parse::<u64>().unwrap()), (files, rows), "{text}");

    // A switch: the old generation is what time travel reads of it, complete.
    let replay = run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args(ARGS).args(["--switch", "--discard-foreign-changes"]));
    expect_status(&replay, 0);
    let switched = delta_log(&table).unwrap().version;
    let before: u64 = python_deltalake(&table, Some(switched - 1), "print(table.to_pyarrow_table().num_rows)").trim().parse().unwrap();
    let (old_rows, _, _, line) = status_line(&lake, "gen-000001");
    assert_eq!(old_rows, before, "{line}");
    assert!(!line.starts_with('…'), "a generation readers read is complete: {line}");
    assert_eq!(status_line(&lake, "gen-000002").0, 20_000);
}

/// Every commit carried the whole producer-dedup map: 43.8 KB per commit after 1,000 producer
/// files. Now a map that large lives in one object the commits name, written when it changes;
/// a file sent again after a restart is still recognised.
#[test]
fn commits_stay_small_however_many_files_the_producer_sent() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    let csv = crate::support::generate_sales_csv(dir.path(), 3_000);
    let text = std::fs::read_to_string(&csv).unwrap();
    let (header, rows) = text.split_once('\n').unwrap();
    let rows: Vec<&str> = rows.lines().collect();
    let log = format!("log:{}", dir.path().join("log").display());
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    // 300 producer files of 10 rows, sent in five runs, each followed by a consumer run.
    let mut files = Vec::new();
    for (n, chunk) in rows.chunks(10).enumerate() {
        let path = inputs.join(format!("part-{n:03}.csv"));
        std::fs::write(&path, format!("{header}\n{}\n", chunk.join("\n"))).unwrap();
        files.push(path);
    }
    for batch in files.chunks(60) {
        expect_status(&run(kappa("kappa-producer", None).arg("--input").args(batch).args(["--to", &log, "--shards", "4"])), 0);
        expect_status(&consume(&log, &lake, &ARGS), 0);
    }
    // What a commit carries of its own, beside the Delta actions of its files: `commitInfo`.
    let largest = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| std::fs::read_to_string(&p).unwrap().lines().find(|l| l.starts_with("{\"commitInfo\"")).map_or(0, str::len))
        .max()
        .unwrap();
    assert!(largest < 4_096, "the largest commitInfo is {largest} bytes");
    let state_objects: Vec<_> = std::fs::read_dir(table.join("_kappa/gen-000001/state")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!state_objects.is_empty(), "the map is kept beside the commits");
    // Three of the files sent again: recognised after the restarts, stored once.
    expect_status(&run(kappa("kappa-producer", None).arg("--input").args(&files[10..13]).args(["--to", &log, "--shards", "4"])), 0);
    let again = dir.path().join("again.json");
    expect_status(
        &run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(&lake).args(ARGS).args(["--until-idle", "0s", "--summary-json"]).arg(&again)),
        0,
    );
    assert_eq!(summary(&again)["duplicates_dropped"], 30, "{}", summary(&again));
    assert_eq!(counted(&table), ("[(3000, 3000)]".to_string(), "3000".to_string()));
}

/// A compaction's report repeated "7594 replaced files vacuumed" on every run, also with
/// `--dry-run`. Now it counts what it deleted this time, and a dry run says what it would do.
#[test]
fn a_compaction_reports_what_it_did_this_time() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 6_000);
    let lake = dir.path().join("lake");
    expect_status(&consume(&log, &lake, &["--table", "sales", "--event-time", "sale_time", "--flush-rows", "100"]), 0);
    let compact = |extra: &[&str]| {
        let report = dir.path().join("compact.json");
        let output = run(kappa("kappa-replay", None)
            .args(["compact", "--table", "sales", "--min-age", "0s", "--lake"])
            .arg(&lake)
            .arg("--summary-json")
            .arg(&report)
            .args(extra));
        expect_status(&output, 0);
        (summary(&report), String::from_utf8_lossy(&output.stderr).to_string())
    };
    let (dry, text) = compact(&["--dry-run"]);
    let partitions = dry["partitions_compacted"].as_u64().unwrap();
    assert!(partitions >= 30 && text.contains(&format!("would rewrite {partitions} partitions")), "{text}");
    assert_eq!(dry["commits"], 0);
    let (first, _) = compact(&[]);
    assert_eq!(first["partitions_compacted"].as_u64(), Some(partitions), "{first}");
    let (dry, text) = compact(&["--retention", "0s", "--dry-run"]);
    assert!(text.contains("would vacuum"), "{text}");
    let would = dry["vacuumed"].as_u64().unwrap();
    assert!(would > 0, "{dry}");
    let (vacuum, _) = compact(&["--retention", "0s"]);
    assert_eq!(vacuum["vacuumed"].as_u64().unwrap(), would);
    let (again, text) = compact(&["--retention", "0s"]);
    assert_eq!(again["vacuumed"], 0, "nothing left to vacuum: {again}");
    assert!(!text.contains("vacuumed") && text.contains("no partition rewritten"), "{text}");
}

/// A consumer whose commit lost to another writer said "run one consumer per table", whoever
/// the other was. Now it names the version and the writer, and what to do; a restart then
/// continues on the table as it is, with exact counts.
#[test]
fn a_commit_lost_to_another_writer_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 2_000);
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    expect_status(&consume(&log, &lake, &ARGS), 0);
    // A consumer that does not look at the table between its commits (no status checks).
    let port = kappa_tests::free_port();
    let mut live = kappa("kappa-consumer", None)
        .args(["--from", &log, "--lake"])
        .arg(&lake)
        .args(ARGS)
        .args(["--flush-interval", "200ms", "--status-interval", "1h", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::produce_csv(&crate::support::unique_sales_csv(&dir.path().join("more"), 300, "MORE"), &log);
    kappa_tests::wait_for_metric(&mut live, port, "rows_written_total", 300, std::time::Duration::from_secs(60));
    // Another tool adds a column (a schema merge) while the consumer runs.
    python_deltalake(
        &table,
        None,
        "import pyarrow as pa, deltalake\n\
         t = table.to_pyarrow_table().slice(0, 2)\n\
         t = t.set_column(t.schema.get_field_index('sale_id'), 'sale_id', pa.array(['FOREIGN0', 'FOREIGN1']))\n\
         t = t.append_column('note', pa.array(['a', 'b']))\n\
         deltalake.write_deltalake(table.table_uri, t, mode='append', schema_mode='merge')",
    );
    let merged = delta_log(&table).unwrap().version;
    crate::support::produce_csv(&crate::support::unique_sales_csv(&dir.path().join("again"), 300, "AGAIN"), &log);
    let output = live.wait_with_output().unwrap();
    expect_status(&output, 1);
    let message = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(message.contains(&format!("version {merged} by python deltalake")), "{message}");
    assert!(message.contains("which changed the table's schema, partitioning or properties"), "{message}");
    assert!(!message.contains("run one consumer per table"), "{message}");
    expect_status(&consume(&log, &lake, &ARGS), 0);
    assert_eq!(counted(&table), ("[(2602, 2602)]".to_string(), "2602".to_string()));
    // The other tool's column is still there, with its values.
    let notes = duckdb_delta(&table, "SELECT count(note) FROM {table}");
    assert_eq!(notes.trim(), "[(2,)]");
}

/// `--compare` called a file of the current generation "the new generation" when it could not
/// read it: the message names the file and whose it is.
#[test]
fn compare_names_the_generation_a_file_it_cannot_read_belongs_to() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 1_000);
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    expect_status(&consume(&log, &lake, &ARGS), 0);
    let file = delta_log(&table).unwrap().files.into_iter().next().unwrap();
    std::fs::remove_file(table.join(&file)).unwrap();
    let output = run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args(ARGS).args(["--verify", "--compare"]));
    expect_status(&output, 1);
    let message = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(message.contains(&format!("reading back sales/{file} (of the current table (gen-000001))")), "{message}");
}
