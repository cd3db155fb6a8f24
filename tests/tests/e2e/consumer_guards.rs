//! What a careful user tried on the consumer and its tools: a mistyped flag, a damaged or
//! rolled-back log, a corrupt segment, `gc` during a replay. Each stops with a clear error (or
//! does the safe thing) instead of exiting 0 with rows lost or hidden.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kappa_tests::{bin, delta_log, expect_status, kappa, read_lake, run, seed};

use crate::support::{generate_sales_csv, summary};

fn produce(inputs: &[&Path], log: &Path, extra: &[&str]) {
    let output = run(kappa("kappa-producer", None).arg("-i").args(inputs).args(["--to", &format!("log:{}", log.display())]).args(extra));
    expect_status(&output, 0);
}

fn consume(log: &Path, lake: &Path, table: &str, extra: &[&str]) -> Output {
    run(kappa("kappa-consumer", None)
        .args(["--from", &format!("log:{}", log.display()), "--lake"])
        .arg(lake)
        .args(["--table", table, "--until-idle", "0s"])
        .args(extra))
}

/// Enough rows for several segments per shard, at 256 KiB a segment.
const ROWS: u64 = 20_000;
const SMALL_SEGMENTS: [&str; 2] = ["--log-segment-bytes", "262144"];

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A shard's segment files, oldest first.
fn segments(log: &Path, shard: u32) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(log.join(format!("shard-{shard:04}")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

fn first_position(segment: &Path) -> u64 {
    segment.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

#[test]
fn a_mistyped_event_time_stops_before_anything_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let lake = dir.path().join("lake");
    produce(&[&seed("people/generated_mock_data.csv")], &log, &[]);

    let output = consume(&log, &lake, "people", &["--event-time", "date", "--partition-by", "year"]);
    expect_status(&output, 2);
    assert!(stderr(&output).contains("--event-time \"date\" is not a column") && stderr(&output).contains("did you mean `Date`?"), "{}", stderr(&output));
    assert!(!lake.join("people/_kappa/gen-000001/layout.json").exists(), "no layout recorded by a run that committed no rows");

    let summary_path = dir.path().join("summary.json");
    let output = consume(&log, &lake, "people", &["--event-time", "Date", "--partition-by", "year", "--summary-json", summary_path.to_str().unwrap()]);
    expect_status(&output, 0);
    assert_eq!(summary(&summary_path)["rows_written"], 1000, "the corrected command writes every row");
    assert_eq!(read_lake(&lake.join("people/gen-000001")).len(), 1000);
}

#[test]
fn a_run_that_quarantines_most_events_stops_instead_of_filling_the_error_area() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let lake = dir.path().join("lake");
    produce(&[&seed("people/generated_mock_data.csv")], &log, &[]);
    // `Date` holds dates (the producer typed it `date`), not epoch milliseconds: a
    // misconfiguration, said before anything is read.
    let wrong_format = ["--event-time", "Date", "--event-time-format", "epoch_ms"];
    let output = consume(&log, &lake, "people", &wrong_format);
    expect_status(&output, 2);
    let text = stderr(&output);
    assert!(text.contains("--event-time-format epoch_ms does not fit --event-time \"Date\": the column holds date values"), "{text}");
    assert!(delta_log(&lake.join("people")).is_none(), "nothing committed");

    // `Name` holds names: every event's time fails to parse, and the run stops.
    let wrong_column = ["--event-time", "Name"];
    let output = consume(&log, &lake, "people", &wrong_column);
    expect_status(&output, 3);
    let text = stderr(&output);
    assert!(text.contains("of the first") && text.contains("--max-quarantine-ratio 0.5"), "{text}");
    assert!(delta_log(&lake.join("people")).is_none(), "nothing committed");
    assert!(!lake.join("people/_errors").exists(), "the error area stays empty");

    let summary_path = dir.path().join("summary.json");
    let output =
        consume(&log, &lake, "people", &[&wrong_column[..], &["--max-quarantine-ratio", "1", "--summary-json", summary_path.to_str().unwrap()]].concat());
    expect_status(&output, 0);
    assert_eq!(summary(&summary_path)["quarantined"], 1000, "a ratio of 1 turns the check off");
}

#[test]
fn a_log_that_lost_its_first_segment_is_an_error_or_a_counted_skip() {
    let dir = tempfile::tempdir().unwrap();
    let csv = generate_sales_csv(dir.path(), ROWS);
    let log = dir.path().join("log");
    let lake = dir.path().join("lake");
    produce(&[&csv], &log, &SMALL_SEGMENTS);
    let shard0 = segments(&log, 0);
    assert!(shard0.len() >= 3, "{shard0:?}");
    let lost = first_position(&shard0[1]);
    std::fs::remove_file(&shard0[0]).unwrap();

    let output = consume(&log, &lake, "sales", &[]);
    expect_status(&output, 1);
    let expected = format!("log shard 0: the table resumes it at position 0, but the log's first record is now {lost}");
    assert!(stderr(&output).contains(&expected) && stderr(&output).contains("--on-log-gap skip"), "{}", stderr(&output));
    assert!(!lake.join("sales/gen-000001/year=2025").exists(), "nothing written");

    let summary_path = dir.path().join("summary.json");
    let output = consume(&log, &lake, "sales", &["--on-log-gap", "skip", "--summary-json", summary_path.to_str().unwrap()]);
    expect_status(&output, 0);
    let s = summary(&summary_path);
    assert_eq!(s["log_positions_skipped"].as_u64(), Some(lost), "{s:#}");
    assert_eq!(s["rows_written"].as_u64(), Some(ROWS - lost));
    assert_eq!(read_lake(&lake.join("sales/gen-000001")).len() as u64, ROWS - lost);
}

#[test]
fn a_log_rolled_back_behind_the_committed_position_is_an_error_or_a_counted_skip() {
    let dir = tempfile::tempdir().unwrap();
    let csv = generate_sales_csv(dir.path(), ROWS);
    let log = dir.path().join("log");
    let lake = dir.path().join("lake");
    produce(&[&csv], &log, &SMALL_SEGMENTS);
    expect_status(&consume(&log, &lake, "sales", &[]), 0);
    // Restored from an older copy: the shard's last segments are gone (a thousand records
    // at least), then new rows arrive.
    let end_of = |log: &Path| kappa_common::log::Log::open(log).unwrap().shard_end(0).unwrap();
    let end_before = end_of(&log);
    while end_before - end_of(&log) < 1000 {
        std::fs::remove_file(segments(&log, 0).last().unwrap()).unwrap();
    }
    let more = dir.path().join("more");
    std::fs::create_dir(&more).unwrap();
    produce(&[&generate_sales_csv(&more, 200)], &log, &[]);
    let end_after = end_of(&log);
    assert!(end_after < end_before, "{end_after} < {end_before}");

    let output = consume(&log, &lake, "sales", &[]);
    expect_status(&output, 1);
    let expected = format!("log shard 0: the table resumes it at position {end_before}, but the log ends at {end_after}");
    assert!(stderr(&output).contains(&expected), "{}", stderr(&output));

    let summary_path = dir.path().join("summary.json");
    let output = consume(&log, &lake, "sales", &["--on-log-gap", "skip", "--summary-json", summary_path.to_str().unwrap()]);
    expect_status(&output, 0);
    assert_eq!(summary(&summary_path)["log_positions_skipped"].as_u64(), Some(end_before - end_after));
}

#[test]
fn inspect_verifies_every_frame_it_counts() {
    let dir = tempfile::tempdir().unwrap();
    let csv = generate_sales_csv(dir.path(), ROWS);
    let log = dir.path().join("log");
    produce(&[&csv], &log, &SMALL_SEGMENTS);
    let inspect =
        |extra: &[&str]| run(kappa("kappa-consumer", None).args(["inspect", "--from", &format!("log:{}", log.display()), "--limit", "0"]).args(extra));
    let healthy = inspect(&[]);
    expect_status(&healthy, 0);
    let stdout = String::from_utf8_lossy(&healthy.stdout).into_owned();
    assert!(stdout.contains(&format!("{ROWS} records")) && stdout.contains("verified: every frame"), "{stdout}");

    // Four bytes overwritten in the middle of a segment that is not the last.
    let segment = &segments(&log, 1)[0];
    let mut bytes = std::fs::read(segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 4].copy_from_slice(b"XXXX");
    std::fs::write(segment, bytes).unwrap();
    let damaged = inspect(&[]);
    expect_status(&damaged, 1);
    let text = stderr(&damaged);
    assert!(text.contains(&segment.display().to_string()) && text.contains("log corrupt"), "{text}");
    let quick = inspect(&["--quick"]);
    expect_status(&quick, 0);
    assert!(String::from_utf8_lossy(&quick.stdout).contains("not verified (--quick)"));
}

#[test]
fn tools_speak_plainly_to_a_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let lake = dir.path().join("lake");
    produce(&[&seed("people/generated_mock_data.csv")], &log, &[]);
    // The port actually bound is logged, not the 0 asked for; no colour codes in a file.
    let output = consume(&log, &lake, "people", &["--metrics-addr", "127.0.0.1:0"]);
    expect_status(&output, 0);
    let text = stderr(&output);
    let port: u16 = text.split("metrics at http://127.0.0.1:").nth(1).and_then(|rest| rest.split('/').next()).and_then(|p| p.parse().ok()).unwrap_or(0);
    assert_ne!(port, 0, "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a log file: {text:?}");

    // A table name that leaves the lake is refused as `status` refuses it; errors are one
    // plain line, without a debug dump or a backtrace, in every binary.
    let describe = run(kappa("kappa-consumer", None).env("RUST_BACKTRACE", "1").args(["describe", "--lake"]).arg(&lake).args(["--table", "../../x"]));
    let status = run(kappa("kappa-replay", None).env("RUST_BACKTRACE", "1").args(["status", "--lake"]).arg(&lake).args(["--table", "../../x"]));
    let missing = run(kappa("kappa-consumer", None).env("RUST_BACKTRACE", "1").args(["describe", "--lake"]).arg(&lake).args(["--table", "nosuch"]));
    let producer = run(kappa("kappa-producer", None).env("RUST_BACKTRACE", "1").args(["-i", "/nonexistent.csv", "--to"]).arg(format!("log:{}", log.display())));
    for output in [&describe, &status, &missing, &producer] {
        let text = stderr(output);
        assert_ne!(output.status.code(), Some(0), "{text}");
        let last = text.lines().last().unwrap_or_default();
        assert!(last.starts_with("error: "), "{text}");
        for debug in ["Error:", "Caused by", "stack backtrace", "panicked"] {
            assert!(!text.contains(debug), "{debug:?} in {text}");
        }
    }
    assert!(stderr(&describe).contains("--table \"../../x\": use lowercase letters"), "{}", stderr(&describe));
    assert_eq!(stderr(&describe).lines().last(), stderr(&status).lines().last(), "refused the same way");
}

#[test]
fn gc_leaves_a_generation_a_replay_is_still_writing() {
    let dir = tempfile::tempdir().unwrap();
    let csv = generate_sales_csv(dir.path(), 20_000);
    let log = dir.path().join("log");
    let lake = dir.path().join("lake");
    produce(&[&csv], &log, &[]);
    expect_status(&consume(&log, &lake, "sales", &["--event-time", "sale_time"]), 0);
    let mut replay = kappa("kappa-replay", None)
        .args(["--from", &format!("log:{}", log.display()), "--lake"])
        .arg(&lake)
        .args(["--table", "sales", "--event-time", "sale_time", "--flush-rows", "500"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the replay to say it is writing (its record among the table's writers), then
    // hold it there while gc runs.
    let writers = lake.join("sales/_kappa/writers");
    let announced = || {
        std::fs::read_dir(&writers).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("replay-") && std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("gen-000002")))
        }) && lake.join("sales/_kappa/generations/gen-000002.json").exists()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !announced() {
        assert!(replay.try_wait().unwrap().is_none(), "the replay ended before it said it was writing");
        assert!(Instant::now() < deadline, "no heartbeat from the replay");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = replay.id().to_string();
    expect_status(&run(Command::new("kill").args(["-STOP", &pid])), 0);
    let gc = run(kappa("kappa-replay", None).args(["gc", "--keep", "1", "--lake"]).arg(&lake).args(["--table", "sales"]));
    expect_status(&run(Command::new("kill").args(["-CONT", &pid])), 0);
    expect_status(&gc, 0);
    assert!(String::from_utf8_lossy(&gc.stdout).contains("left gen-000002: a replay is writing it"), "{}", String::from_utf8_lossy(&gc.stdout));
    assert!(replay.wait().unwrap().success());
    let left = std::fs::read_dir(&writers).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "the finished replay withdrew its record");
    assert_eq!(read_lake(&lake.join("sales/gen-000002")).len(), 20_000, "the replay's generation is whole");
}

#[test]
fn two_consumers_started_together_on_a_new_table_make_one_table_and_one_of_them_stops() {
    let dir = tempfile::tempdir().unwrap();
    let csv = generate_sales_csv(dir.path(), 50_000);
    let log = dir.path().join("log");
    produce(&[&csv], &log, &[]);
    let lake = dir.path().join("lake");
    let start = || {
        kappa("kappa-consumer", None)
            .args(["--from", &format!("log:{}", log.display()), "--lake"])
            .arg(&lake)
            .args(["--table", "sales", "--event-time", "sale_time", "--flush-rows", "5000", "--until-idle", "1s"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (start(), start());
    let outputs = [first.wait_with_output().unwrap(), second.wait_with_output().unwrap()];
    let mut codes: Vec<i32> = outputs.iter().map(|o| o.status.code().unwrap()).collect();
    codes.sort();
    assert_eq!(codes, [0, 1], "one wins, one stops: {}\n---\n{}", stderr(&outputs[0]), stderr(&outputs[1]));
    let loser = outputs.iter().find(|o| o.status.code() == Some(1)).unwrap();
    assert!(stderr(loser).contains("run one consumer per table"), "{}", stderr(loser));
    // One table of one generation, every row once.
    let table = lake.join("sales");
    let files = delta_log(&table).unwrap().files;
    assert!(files.iter().all(|f| f.starts_with("gen-000001/")) || files.iter().all(|f| f.starts_with("gen-000002/")), "{files:?}");
    assert_eq!(kappa_tests::duckdb_delta(&table, "SELECT count(*), count(DISTINCT sale_id) FROM {table}").trim(), "[(50000, 50000)]");
}

/// The consumer's allocator as built (common/src/memory.rs, .cargo/config.toml): jemalloc with
/// its background thread, giving unused pages back after 300 ms (its default 10 s kept a
/// compaction's burst resident). jemalloc prints its options at exit when asked to.
#[test]
fn the_consumer_allocates_with_jemalloc_giving_memory_back_after_300_ms() {
    for tool in ["kappa-consumer", "kappa-replay"] {
        let output = Command::new(bin(tool)).arg("--version").env("_RJEM_MALLOC_CONF", "stats_print:true").output().unwrap();
        let stats = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(stats.contains("opt.dirty_decay_ms: 300") && stats.contains("opt.background_thread: true"), "{tool}: {stats}");
    }
}
