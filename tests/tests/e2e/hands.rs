//! One table, many hands (issue 31): no tool deletes what the Delta log names or what another
//! writer is about to commit, no tool writes values into the wrong partition column of a table
//! someone else re-partitioned, kappa-query never writes, and a damaged log is named with its
//! file and remedy. Outside readers (DuckDB's `delta_scan`, python `deltalake`) count every
//! table.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kappa_tests::{delta_log, duckdb_delta, expect_status, kappa, python_deltalake, run};

use crate::support::{TapMkdir, copy_tree, produce_csv, sales_log, unique_sales_csv};

/// Small row-count flushes: many files per partition.
const SMALL_FILES: [&str; 10] = ["--table", "sales", "--event-time", "sale_time", "--flush-rows", "100", "--flush-interval", "1h", "--max-memory", "2GiB"];

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

pub(crate) fn consume(log: &str, lake: &Path, extra: &[&str]) -> Output {
    run(kappa("kappa-consumer", None).args(["--from", log, "--lake"]).arg(lake).args(extra).args(["--until-idle", "0s"]))
}

/// `(rows, distinct sale ids)` as DuckDB reads the table, and the rows python deltalake reads.
pub(crate) fn counted(table: &Path) -> (String, String) {
    let duckdb = duckdb_delta(table, "SELECT count(*), count(DISTINCT sale_id) FROM {table}").trim().to_string();
    let python = python_deltalake(table, None, "print(table.to_pyarrow_table().num_rows)").trim().to_string();
    (duckdb, python)
}

/// Every file the latest version names is there.
pub(crate) fn assert_files_there(table: &Path) {
    let log = delta_log(table).unwrap();
    let missing: Vec<&String> = log.files.iter().filter(|f| !table.join(f).exists()).collect();
    assert!(missing.is_empty(), "files the Delta log names are gone: {missing:?}");
}

/// Merged files under `generation` that the latest version does not name.
fn uncommitted_merged(table: &Path, generation: &str) -> Vec<PathBuf> {
    let named = delta_log(table).map(|l| l.files).unwrap_or_default();
    kappa_tests::parquet_files(&table.join(generation))
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("compacted-"))
        .filter(|p| !named.contains(&p.strip_prefix(table).unwrap().display().to_string()))
        .collect()
}

fn compaction(lake: &Path, extra: &[&str], report: &Path) -> Command {
    let mut command = kappa("kappa-replay", None);
    command.args(["compact", "--table", "sales", "--lake"]).arg(lake).arg("--summary-json").arg(report).args(extra);
    command
}

/// Starts `command`, and returns once it has stored a merged file that no commit names yet.
fn start_until_merging(mut command: Command, table: &Path) -> std::process::Child {
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while uncommitted_merged(table, "gen-000001").is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "the first compaction ended before it stored a merged file");
        assert!(started.elapsed() < Duration::from_secs(120), "no merged file after two minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// Two compactions at once: the second's vacuum once deleted the first's merged files a moment
/// before the first committed them (every reader then failed on them), and a second that
/// merged the same partitions failed with "39 of the 39 files to remove are not in version 21"
/// where a skipped conflict was promised.
#[test]
fn two_compactions_at_once_leave_every_file_readers_need() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 30_000);
    let lake = dir.path().join("lake");
    expect_status(&consume(&log, &lake, &SMALL_FILES), 0);
    let table = lake.join("sales");
    let before = delta_log(&table).unwrap().files.len();
    let pristine = dir.path().join("pristine");
    copy_tree(&lake, &pristine);

    // The second with the defaults (nothing old enough to merge: it only vacuums).
    let first = start_until_merging(compaction(&lake, &["--min-age", "0s"], &dir.path().join("first.json")), &table);
    let second = run(&mut compaction(&lake, &[], &dir.path().join("second.json")));
    expect_status(&second, 0);
    let first = first.wait_with_output().unwrap();
    expect_status(&first, 0);
    assert_files_there(&table);
    assert_eq!(counted(&table), ("[(30000, 30000)]".to_string(), "30000".to_string()));
    assert!(delta_log(&table).unwrap().files.len() < before / 4, "the first compaction committed");
    assert!(uncommitted_merged(&table, "gen-000001").is_empty(), "nothing merged is left uncommitted");

    // Both merging the same partitions: one commits, the other reports a skipped conflict.
    let lake = pristine;
    let table = lake.join("sales");
    let first = start_until_merging(compaction(&lake, &["--min-age", "0s"], &dir.path().join("first.json")), &table);
    let second = run(&mut compaction(&lake, &["--min-age", "0s"], &dir.path().join("second.json")));
    let first = first.wait_with_output().unwrap();
    expect_status(&first, 0);
    expect_status(&second, 0);
    let reports: Vec<serde_json::Value> =
        ["first.json", "second.json"].iter().map(|f| serde_json::from_slice(&std::fs::read(dir.path().join(f)).unwrap()).unwrap()).collect();
    let conflicts: u64 = reports.iter().map(|r| r["conflicts"].as_u64().unwrap()).sum();
    let committed: u64 = reports.iter().map(|r| r["commits"].as_u64().unwrap()).sum();
    assert!(committed >= 1, "{reports:?}");
    let text = format!("{}{}", stderr(&first), stderr(&second));
    if conflicts > 0 {
        assert!(text.contains("not committed: 1 conflicting commit was made by another writer meanwhile"), "{text}");
        assert!(text.contains("by a kappa-lake compaction committed first"), "who won is said: {text}");
    }
    assert_files_there(&table);
    assert_eq!(counted(&table), ("[(30000, 30000)]".to_string(), "30000".to_string()));
    assert!(uncommitted_merged(&table, "gen-000001").is_empty(), "the loser removed its merged files");
}

/// With `_kappa/` lost, a replay once took the live generation's name, removed the files the
/// Delta log names as leftovers of "an interrupted flush", and failed; a consumer restart
/// removed more. Now the replay writes a new generation and switches to it, the consumer goes
/// on, and `status` reads the table from its log.
#[test]
fn a_lost_kappa_directory_costs_no_committed_file() {
    let dir = tempfile::tempdir().unwrap();
    let (log, csv) = sales_log(dir.path(), 20_000);
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    let args = ["--table", "sales", "--event-time", "sale_time"];
    expect_status(&consume(&log, &lake, &args), 0);
    std::fs::remove_dir_all(table.join("_kappa")).unwrap();

    let status = run(kappa("kappa-replay", None).args(["status", "--table", "sales", "--lake"]).arg(&lake));
    expect_status(&status, 0);
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(text.contains("current generation gen-000001"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("*  gen-000001") && l.contains(" 20000 ")), "rows from the Delta log: {text}");

    let replay = run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args(args).args(["--verify", "--switch"]));
    expect_status(&replay, 0);
    assert!(!stderr(&replay).contains("interrupted flush"), "{}", stderr(&replay));
    assert_eq!(kappa_tests::current_generation(&lake, "sales"), "gen-000002");
    assert_files_there(&table);
    assert_eq!(counted(&table), ("[(20000, 20000)]".to_string(), "20000".to_string()));
    // The table before the switch still reads by time travel: the replay removed none of it.
    let switched = delta_log(&table).unwrap().version;
    let before = python_deltalake(&table, Some(switched - 1), "print(table.to_pyarrow_table().num_rows)");
    assert_eq!(before.trim(), "20000");

    // A consumer restart goes on with the new generation and removes nothing the log names.
    produce_csv(&csv, &log);
    let restarted = consume(&log, &lake, &args);
    expect_status(&restarted, 0);
    assert_files_there(&table);
    // The same CSV sent again: its rows are recognised and dropped.
    assert_eq!(counted(&table), ("[(20000, 20000)]".to_string(), "20000".to_string()));
}

/// A table re-partitioned by python deltalake: a consumer restart once wrote 5,000 rows with
/// `partitionValues {"branch_id": "2025"}` (its year, matched by position). Now it refuses
/// with who re-partitioned and what to do, commits nothing, and a replay takes the table back.
#[test]
fn a_table_another_tool_re_partitioned_is_refused_then_taken_back_by_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 2_000);
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    let args = ["--table", "sales", "--event-time", "sale_time"];
    expect_status(&consume(&log, &lake, &args), 0);
    python_deltalake(
        &table,
        None,
        "import deltalake\n\
         t = table.to_pyarrow_table().drop_columns(['year', 'month', 'day'])\n\
         deltalake.write_deltalake(table.table_uri, t, mode='overwrite', schema_mode='overwrite', partition_by=['branch_id'])",
    );
    let repartitioned = delta_log(&table).unwrap().version;
    let more = unique_sales_csv(&dir.path().join("more"), 500, "MORE");
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&more).args(["--to", &log])), 0);
    let refused = consume(&log, &lake, &args);
    expect_status(&refused, 2);
    let message = stderr(&refused);
    assert!(message.contains("the Delta table is partitioned by [branch_id], and this writer partitions by day of sale_time"), "{message}");
    assert!(message.contains(&format!("version {repartitioned} by python deltalake")), "who did it: {message}");
    assert!(message.contains("kappa-replay"), "what to do: {message}");
    assert_eq!(delta_log(&table).unwrap().version, repartitioned, "nothing was committed");
    let branches = duckdb_delta(&table, "SELECT count(*) FROM {table} WHERE branch_id NOT LIKE 'BR%' ");
    assert_eq!(branches.trim(), "[(0,)]", "no year in the branch column");

    // A replay rebuilds the table from the log as kappa-lake partitions it; the consumer goes
    // on. The overwrite is another writer's change a switch would undo: it says so first.
    let refused = run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args(args).arg("--switch"));
    expect_status(&refused, 2);
    assert!(stderr(&refused).contains("(WRITE, mode Overwrite)"), "{}", stderr(&refused));
    let replay = run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args(args).args(["--switch", "--discard-foreign-changes"]));
    expect_status(&replay, 0);
    assert_eq!(delta_log(&table).unwrap().partition_columns, vec!["year", "month", "day"]);
    expect_status(&consume(&log, &lake, &args), 0);
    assert_eq!(counted(&table), ("[(2500, 2500)]".to_string(), "2500".to_string()));
}

/// `INSERT INTO sales SELECT * FROM sales LIMIT 5` once committed a version with files at the
/// table root: every reader saw 5 duplicates. kappa-query reads; it never writes the lake's
/// table or a --register'ed one. What a session creates, and COPY TO files, it can write.
#[test]
fn kappa_query_never_writes_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 1_000);
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    expect_status(&consume(&log, &lake, &["--table", "sales", "--event-time", "sale_time"]), 0);
    let version = delta_log(&table).unwrap().version;
    let query = |sql: &str| {
        run(kappa("kappa-query", None)
            .arg("--lake")
            .arg(&lake)
            .args(["--table", "sales", "--register"])
            .arg(format!("again={}", table.display()))
            .args(["--", sql]))
    };
    for sql in [
        "INSERT INTO sales SELECT * FROM sales LIMIT 5",
        "DELETE FROM sales WHERE quantity > 5",
        "INSERT INTO again SELECT * FROM sales LIMIT 5",
        // A write inside another statement is refused by the table itself.
        "EXPLAIN ANALYZE INSERT INTO sales SELECT * FROM sales LIMIT 5",
    ] {
        let output = query(sql);
        expect_status(&output, 1);
        assert!(stderr(&output).contains("it never writes it"), "{sql}: {}", stderr(&output));
    }
    assert!(stderr(&query("INSERT INTO sales SELECT * FROM sales LIMIT 5")).contains("send them with kappa-producer"));
    assert_eq!(delta_log(&table).unwrap().version, version, "no commit was made");
    assert_eq!(counted(&table), ("[(1000, 1000)]".to_string(), "1000".to_string()));
    // The session's own tables and files are the user's to write.
    let copy = dir.path().join("five.csv");
    let own = query(&format!(
        "CREATE TABLE mine AS SELECT sale_id FROM sales LIMIT 2; INSERT INTO mine SELECT sale_id FROM sales LIMIT 3; COPY (SELECT * FROM mine) TO '{}' STORED AS CSV",
        copy.display()
    ));
    expect_status(&own, 0);
    assert_eq!(std::fs::read_to_string(&copy).unwrap().lines().count(), 6, "a header and five rows");
}

/// A torn newest commit and a lost checkpoint: every tool said "Kernel error: Json error:
/// Truncated record whilst reading string" or "Invalid Checkpoint: Had a _last_checkpoint hint
/// but didn't find any checkpoints". Now each names the file, what it means and what to do, and
/// doing it gives exact counts. Temporary files that writes cut off are removed.
#[test]
fn a_damaged_log_is_named_with_its_file_and_remedy() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 3_000);
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    // Files per shard: a day's several files give the compaction below something to merge.
    let args = ["--table", "sales", "--event-time", "sale_time", "--flush-rows", "500", "--per-shard-files"];
    expect_status(&consume(&log, &lake, &args), 0);
    let newest = delta_log(&table).unwrap().version;
    let newest_path = table.join(format!("_delta_log/{newest:020}.json"));
    let whole = std::fs::read(&newest_path).unwrap();
    std::fs::write(&newest_path, &whole[..whole.len() / 2]).unwrap();
    let tools: [(&str, Vec<String>); 3] = [
        ("kappa-query", vec!["--lake".into(), lake.display().to_string(), "--table".into(), "sales".into(), "SELECT count(*) FROM sales".into()]),
        ("kappa-replay", vec!["status".into(), "--lake".into(), lake.display().to_string(), "--table".into(), "sales".into()]),
        ("kappa-consumer", vec!["--from".into(), log.clone(), "--lake".into(), lake.display().to_string(), "--until-idle".into(), "0s".into()]),
    ];
    for (tool, tool_args) in &tools {
        let mut command = kappa(tool, None);
        command.args(tool_args);
        if *tool == "kappa-consumer" {
            command.args(args);
        }
        let output = run(&mut command);
        assert_ne!(output.status.code(), Some(0), "{tool}");
        let message = stderr(&output);
        assert!(message.contains(&format!("its newest commit, {}", url(&newest_path))), "{tool}: {message}");
        assert!(message.contains("is not whole JSON") && message.contains("delete that one file"), "{tool}: {message}");
    }
    // Doing what it says: the commit's rows are written again from the log.
    std::fs::remove_file(&newest_path).unwrap();
    // A temporary file of a write that was cut off an hour ago (its process is gone).
    let leftover = table.join("gen-000001/.part-0-1-2.parquet.4000000000.0.tmp");
    std::fs::write(&leftover, b"partial").unwrap();
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&leftover).unwrap().set_modified(hour_ago).unwrap();
    expect_status(&consume(&log, &lake, &args), 0);
    assert!(!leftover.exists(), "the cut-off write's temporary file is gone");
    assert_eq!(counted(&table), ("[(3000, 3000)]".to_string(), "3000".to_string()));

    // A compaction writes a checkpoint; it is lost, and `_last_checkpoint` still names it.
    expect_status(&run(kappa("kappa-replay", None).args(["compact", "--table", "sales", "--min-age", "0s", "--lake"]).arg(&lake)), 0);
    let checkpoint =
        std::fs::read_dir(table.join("_delta_log")).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().ends_with(".checkpoint.parquet")).unwrap();
    std::fs::remove_file(&checkpoint).unwrap();
    let output = run(kappa("kappa-query", None).arg("--lake").arg(&lake).args(["--table", "sales", "SELECT count(*) FROM sales"]));
    assert_ne!(output.status.code(), Some(0));
    let hint = table.join("_delta_log/_last_checkpoint");
    assert!(stderr(&output).contains(&format!("{} names the checkpoint of version", url(&hint))), "{}", stderr(&output));
    assert!(stderr(&output).contains("nothing is lost: delete"), "{}", stderr(&output));
    std::fs::remove_file(&hint).unwrap();
    assert_eq!(counted(&table), ("[(3000, 3000)]".to_string(), "3000".to_string()));
}

/// A local path as the tools name files of a table: a `file://` URL of the real path.
fn url(path: &Path) -> String {
    let real = path.parent().unwrap().canonicalize().unwrap().join(path.file_name().unwrap());
    format!("file://{}", real.display())
}

/// Two projects that both say `--lake ./lake --table sales` with one scratch directory: the
/// second once removed the first's spilled buffers ("No such file or directory"). Scratch space
/// is keyed by where the table really is, and by process, and locked.
#[test]
fn neighbours_with_the_same_relative_lake_keep_their_scratch_files() {
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("scratch");
    let projects: Vec<PathBuf> = ["a", "b"].iter().map(|p| dir.path().join(p).tap_mkdir()).collect();
    let logs: Vec<String> = projects.iter().map(|p| sales_log(p, 40_000).0).collect();
    // A tiny memory bound: both spill most of what they buffer, at the same time.
    let consumers: Vec<_> = projects
        .iter()
        .zip(&logs)
        .map(|(project, log)| {
            kappa("kappa-consumer", None)
                .current_dir(project)
                .args([
                    "--from",
                    log,
                    "--lake",
                    "./lake",
                    "--table",
                    "sales",
                    "--event-time",
                    "sale_time",
                    "--max-memory",
                    "2MiB",
                    "--until-idle",
                    "0s",
                    "--spill-dir",
                ])
                .arg(&spill)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (consumer, project) in consumers.into_iter().zip(&projects) {
        let output = consumer.wait_with_output().unwrap();
        expect_status(&output, 0);
        assert_eq!(counted(&project.join("lake/sales")), ("[(40000, 40000)]".to_string(), "40000".to_string()));
    }
    assert!(std::fs::read_dir(&spill).unwrap().next().is_none(), "each removed its own scratch directory at exit");
}
