//! Edges a careful user hit (issue 61): event times that are numbers, columns that differ only
//! in case or are named like a partition column, readers of the plain Parquet files that take
//! directories for columns, and a producer that rejects every row. Each ends in a clear word
//! and a table that holds what it should, never in a value in the wrong year or a stop that
//! repeats on every start.

use std::path::{Path, PathBuf};

use kappa_tests::{DUCKDB_WITH_DELTA, expect_status, kappa, python, run};

/// Writes `lines` as a CSV file under `dir`.
fn csv(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Rows of sales with `ts` holding epoch seconds (whole or with a fraction): 2025-03-20 14:05
/// UTC and on, a minute apart.
fn epoch_rows(rows: u64, fraction: bool) -> Vec<String> {
    let mut lines = vec!["sale_id,ts,amount".to_string()];
    for i in 0..rows {
        let ts = 1_742_479_500 + i * 60;
        lines.push(if fraction { format!("S{i},{ts}.5,{i}") } else { format!("S{i},{ts},{i}") });
    }
    lines
}

fn consumer(log: &str, lake: &Path, table: &str, extra: &[&str]) -> std::process::Output {
    run(kappa("kappa-consumer", None).args(["--from", log, "--table", table, "--until-idle", "1s"]).arg("--lake").arg(lake).args(extra))
}

/// The partition directories of a table's current files, as the Delta log names them.
fn directories(table: &Path) -> Vec<String> {
    let read = kappa_tests::python_deltalake(table, None, "print('\\n'.join(sorted({f.rsplit('/', 1)[0] for f in table.file_uris()})))");
    read.lines().map(|l| l.rsplit_once("/gen-").map_or(l, |(_, rest)| rest).split_once('/').map_or("", |(_, d)| d).to_string()).collect()
}

/// Issue 61, 1: a CSV column of epoch seconds used as the event time is read as seconds under
/// `epoch_s` (fractions too), and refused at start with what to give under any other format,
/// never placed in 1970. The producer, asked to read it as a date, says the same, and a run
/// whose every row it rejected does not succeed.
#[test]
fn epoch_numbers_are_times_only_in_an_epoch_format() {
    let dir = tempfile::tempdir().unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    let lake = dir.path().join("lake");
    let whole = csv(dir.path(), "whole.csv", &epoch_rows(300, false));
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&whole).args(["--to", &log])), 0);

    // The default format (rfc3339), and a pattern: refused at start, nothing committed.
    for extra in [&[][..], &["--event-time-format", "%Y-%m-%d %H:%M"][..]] {
        let output = consumer(&log, &lake, "refused", &[&["--event-time", "ts"], extra].concat());
        expect_status(&output, 2);
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(text.contains("epoch_s") && text.contains("epoch_ms"), "{text}");
        assert!(!lake.join("refused/_delta_log").exists(), "nothing committed: {text}");
    }
    // epoch_s: every row in its own hour of 2025-03-20 and on, with its value kept.
    expect_status(&consumer(&log, &lake, "seconds", &["--event-time", "ts", "--event-time-format", "epoch_s", "--partition-by", "hour"]), 0);
    let dirs = directories(&lake.join("seconds"));
    assert_eq!(dirs.first().map(String::as_str), Some("year=2025/month=03/day=20/hour=14"), "{dirs:?}");
    assert_eq!(dirs.len(), 6, "300 minutes from 14:05 reach into a sixth hour, 19:00: {dirs:?}");
    let read = kappa_tests::duckdb_delta(&lake.join("seconds"), "SELECT count(*), min(ts), max(year) FROM {table}");
    assert_eq!(read.trim(), "[(300, 1742479500, 2025)]");

    // Fractional seconds: read as such, the value kept as it was sent.
    let log2 = format!("log:{}", dir.path().join("log2").display());
    let fractions = csv(dir.path(), "fractions.csv", &epoch_rows(120, true));
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&fractions).args(["--to", &log2])), 0);
    expect_status(&consumer(&log2, &lake, "fractions", &["--event-time", "ts", "--event-time-format", "epoch_s", "--partition-by", "hour"]), 0);
    let read = kappa_tests::duckdb_delta(&lake.join("fractions"), "SELECT count(*), min(ts), min(hour), max(year) FROM {table}");
    assert_eq!(read.trim(), "[(120, 1742479500.5, 14, 2025)]");

    // The producer reading the column as a date rejects each row saying what to give, and a run
    // whose every row it rejected exits 3, not 0 (under its sample size too: 20 rows).
    let few = csv(dir.path(), "few.csv", &epoch_rows(20, false));
    let output = run(kappa("kappa-producer", None)
        .arg("-i")
        .arg(&few)
        .args(["--to", &format!("log:{}", dir.path().join("log3").display())])
        .args(["--event-time", "ts", "--rejects"])
        .arg(dir.path().join("rejects.ndjson")));
    expect_status(&output, 3);
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("20 of the first 20 rows were rejected") && text.contains("--max-reject-ratio"), "{text}");
    let rejects = std::fs::read_to_string(dir.path().join("rejects.ndjson")).unwrap();
    assert!(rejects.lines().count() == 20 && rejects.contains("epoch_s"), "{rejects}");
}

/// Issue 61, 5: events that would make a schema no Delta table can hold — a column beside one
/// of the same name but for case, a column named like a partition column — are quarantined
/// with the reason; the rows behind them land, and the next start goes on (before, every start
/// exited 1 on them). The producer refuses such a header at once.
#[test]
fn a_column_only_case_apart_or_named_like_a_partition_is_quarantined_and_the_rest_lands() {
    let dir = tempfile::tempdir().unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    let lake = dir.path().join("lake");
    // The producer refuses a header with Name beside name.
    let both = csv(dir.path(), "both.csv", &["sale_id,Name,name".into(), "S1,a,b".into()]);
    let output = run(kappa("kappa-producer", None).arg("-i").arg(&both).args(["--to", &log]));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("differ only in case"), "{}", String::from_utf8_lossy(&output.stderr));

    // Events of NDJSON: first rows with `Name`, then one with `name`, one with `year` (the
    // table's partition column by then), then good rows again.
    let mut lines: Vec<String> = (0..200).map(|i| format!(r#"{{"sale_id":"A{i}","Name":"n{i}","sale_date":"2025-03-19"}}"#)).collect();
    let first = dir.path().join("first.ndjson");
    std::fs::write(&first, lines.join("\n") + "\n").unwrap();
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&first).args(["--to", &log, "--shards", "1"])), 0);
    expect_status(&consumer(&log, &lake, "people", &["--event-time", "sale_date"]), 0);
    // The producer refuses a row with `name` beside the table's `Name` (to its rejects file);
    // other writers of the stream may send it anyway, so the next events go straight to the log.
    let odd = dir.path().join("odd.ndjson");
    std::fs::write(
        &odd,
        "{\"sale_id\":\"B0\",\"Name\":\"a\",\"sale_date\":\"2025-03-19\"}\n{\"sale_id\":\"B1\",\"name\":\"lower\",\"sale_date\":\"2025-03-19\"}\n",
    )
    .unwrap();
    let output = run(kappa("kappa-producer", None)
        .arg("-i")
        .arg(&odd)
        .args(["--to", &format!("log:{}", dir.path().join("other").display()), "--max-reject-ratio", "1", "--rejects"])
        .arg(dir.path().join("odd-rejects.ndjson")));
    expect_status(&output, 0);
    let rejects = std::fs::read_to_string(dir.path().join("odd-rejects.ndjson")).unwrap();
    assert!(rejects.lines().count() == 1 && rejects.contains(r#"differs from \"Name\" only in case"#), "{rejects}");
    lines = vec![
        r#"{"_kappa_id":"x:1","sale_id":"B1","name":"lower","sale_date":"2025-03-19"}"#.to_string(),
        r#"{"_kappa_id":"x:2","sale_id":"B2","Name":"n","year":1999,"sale_date":"2025-03-19"}"#.to_string(),
    ];
    lines.extend((0..50).map(|i| format!(r#"{{"_kappa_id":"x:c{i}","sale_id":"C{i}","Name":"m{i}","sale_date":"2025-03-20"}}"#)));
    let log_dir = dir.path().join("log");
    let mut writer = kappa_common::log::Log::open(&log_dir).unwrap().writer(0, &kappa_common::log::LogConfig::default()).unwrap();
    for (i, line) in lines.iter().enumerate() {
        writer.append(b"", line.as_bytes(), 1_742_400_000_000 + i as i64).unwrap();
    }
    writer.close().unwrap();
    for _ in 0..2 {
        let output = consumer(&log, &lake, "people", &["--event-time", "sale_date"]);
        expect_status(&output, 0);
    }
    let table = lake.join("people");
    let read = kappa_tests::duckdb_delta(&table, "SELECT count(*), count(DISTINCT sale_id) FROM {table}");
    assert_eq!(read.trim(), "[(250, 250)]", "the good rows landed, once");
    let quarantined: Vec<serde_json::Value> = std::fs::read_dir(table.join("_errors"))
        .unwrap()
        .flat_map(|g| std::fs::read_dir(g.unwrap().path()).unwrap())
        .flat_map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<_>>())
        .collect();
    let reasons: Vec<&str> = quarantined.iter().map(|q| q["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("\"name\" differs from the table's column \"Name\" only in case")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("\"year\" is named like the table's partition column")), "{reasons:?}");
    assert!(quarantined.iter().any(|q| q["payload"].as_str().is_some_and(|p| p.contains("lower"))), "the raw event is kept");
}

/// Issue 61, 3: a table whose data has a `year` column names its partition directories after
/// its partition columns as stored (`kappa_year=…`): a reader of the plain Parquet files that
/// takes directories for columns (DuckDB's `read_parquet` with Hive partitioning, on by
/// default) reads the data's `year`, and the same rows as the Delta table.
#[test]
fn a_plain_parquet_read_with_hive_partitions_equals_the_delta_read_beside_a_year_column() {
    let dir = tempfile::tempdir().unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    let lake = dir.path().join("lake");
    let mut lines = vec!["sale_id,sale_date,year,amount".to_string()];
    lines.extend((0..120).map(|i| format!("S{i},2025-03-{:02},{},{i}", 19 + i % 3, 1990 + i % 7)));
    let input = csv(dir.path(), "years.csv", &lines);
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&input).args(["--to", &log])), 0);
    expect_status(&consumer(&log, &lake, "models", &["--event-time", "sale_date"]), 0);
    let table = lake.join("models");
    let dirs = directories(&table);
    // Only the clashing column is renamed: month and day are the data's names still.
    assert!(dirs.iter().all(|d| d.starts_with("kappa_year=2025/month=03/day=")), "{dirs:?}");
    assert_plain_read_equals_delta_read(&table);
    let years = python(&format!(
        "import duckdb\ncon = duckdb.connect()\ncon.execute('SET enable_progress_bar = false')\n\
         print(con.execute(\"SELECT min(year), max(year), count(*) FROM read_parquet('{}/gen-*/**/*.parquet')\").fetchall())",
        table.display()
    ));
    assert_eq!(years.trim(), "[(1990, 1996, 120)]", "the data's year, not the partition's");
}

/// Asserts that DuckDB's `read_parquet` over the files the Delta log names (Hive partitioning
/// on, as by default) reads the same rows as its `delta_scan` of the table, column by column of
/// the Delta table's (by name: the plain read orders them its own way). The partition columns
/// are compared as numbers: a directory's `month=03` is read as 3, the Delta column as '03'.
pub(crate) fn assert_plain_read_equals_delta_read(table: &Path) {
    // The file list is read in Python: a table of thousands of files makes a program text
    // longer than one argument may be.
    let compared = python(&format!(
        "{DUCKDB_WITH_DELTA}\
         from deltalake import DeltaTable\n\
         table = DeltaTable(r'{root}')\n\
         files = [u.removeprefix('file://') for u in table.file_uris()]\n\
         partitions = table.metadata().partition_columns\n\
         con.execute(\"CREATE VIEW d AS SELECT * FROM delta_scan('{root}')\")\n\
         con.execute(f'CREATE VIEW p AS SELECT * FROM read_parquet({{files!r}}, hive_partitioning = true, union_by_name = true)')\n\
         names = [c[0] for c in con.execute('DESCRIBE d').fetchall()]\n\
         column = lambda n: f'try_cast(\"{{n}}\" AS BIGINT)' if n in partitions else f'\"{{n}}\"'\n\
         differ = lambda cs: con.execute(f'SELECT count(*) FROM (SELECT {{cs}} FROM d EXCEPT ALL SELECT {{cs}} FROM p)').fetchone()[0] + \
         con.execute(f'SELECT count(*) FROM (SELECT {{cs}} FROM p EXCEPT ALL SELECT {{cs}} FROM d)').fetchone()[0]\n\
         rows = differ(', '.join(column(n) for n in names))\n\
         print(rows, con.execute('SELECT count(*) FROM d').fetchone()[0], [n for n in names if rows and differ(column(n))])",
        root = table.display()
    ));
    let mut words = compared.splitn(3, ' ');
    let differing: u64 = words.next().unwrap().trim().parse().unwrap();
    let rows: u64 = words.next().unwrap().trim().parse().unwrap();
    assert_eq!(differing, 0, "the plain Parquet read differs from the Delta read of {} (rows, then the columns that differ): {compared}", table.display());
    assert!(rows > 0, "{compared}");
}

/// Issue 61, 4: three leased workers started at the same instant on a new table make one
/// generation between them: `kappa-replay status` lists no other (before, two more stayed as
/// "incomplete"), the next replay is gen-000002, and each worker's record in
/// `_kappa/writers/` is named in a safe alphabet. Repeated, as the race is one of timing.
#[test]
fn three_leased_workers_starting_at_once_make_one_generation() {
    let dir = tempfile::tempdir().unwrap();
    let input = crate::support::unique_sales_csv(&dir.path().join("in"), 3_000, "T");
    for round in 0..3 {
        // A log of its own each round: the local leases are kept beside it.
        let log = format!("log:{}", dir.path().join(format!("log-{round}")).display());
        expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&input).args(["--to", &log, "--shards", "6"])), 0);
        let lake = dir.path().join(format!("lake-{round}"));
        let workers: Vec<std::process::Child> = ["a", "b", "c"]
            .iter()
            .map(|id| {
                kappa("kappa-consumer", None)
                    .args(["--from", &log, "--lake"])
                    .arg(&lake)
                    .args(["--table", "sales", "--event-time", "sale_time", "--leases", "local", "--worker-id", id, "--failover", "2s"])
                    .args(["--flush-interval", "1s", "--until-idle", "4s"])
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut worker in workers {
            assert!(worker.wait().unwrap().success(), "round {round}");
        }
        let table = lake.join("sales");
        let status = run(kappa("kappa-replay", None).args(["status", "--table", "sales", "--lake"]).arg(&lake));
        expect_status(&status, 0);
        let text = String::from_utf8_lossy(&status.stdout).to_string();
        let listed: Vec<&str> = text.lines().filter(|l| l.contains("gen-0")).collect();
        assert!(listed.len() == 2 && listed.iter().all(|l| !l.contains("gen-000002") && !l.contains("gen-000003")), "round {round}: {text}");
        for record in std::fs::read_dir(table.join("_kappa/writers")).into_iter().flatten() {
            let name = record.unwrap().file_name().into_string().unwrap();
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)), "{name}");
        }
        crate::support::assert_exactly_once(&table, 3_000);
        if round == 0 {
            let replay = run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args([
                "--table",
                "sales",
                "--event-time",
                "sale_time",
                "--switch",
            ]));
            expect_status(&replay, 0);
            assert_eq!(kappa_tests::current_generation(&lake, "sales"), "gen-000002");
        }
    }
}

/// Issue 61, 9: what docs/consumer.md says of a written table's protocol and types is what a
/// written table has, as python `deltalake` reads it: reader 1, writer 2, no features, event
/// times as `timestamp` (with its zone, UTC), integer partition values.
#[test]
fn the_documented_protocol_and_types_are_the_written_tables() {
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/consumer.md")).unwrap();
    let docs = docs.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(docs.contains("reader version 1, writer version 2, with no table features"), "docs/consumer.md no longer says the protocol");
    assert!(docs.contains("Event times and ISO timestamps are Delta `timestamp`"), "docs/consumer.md no longer says the type");
    let dir = tempfile::tempdir().unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    let lake = dir.path().join("lake");
    let input = csv(dir.path(), "in.csv", &["id,at".into(), "1,2025-03-19T10:00:00Z".into(), "2,2025-03-20 11:00:00".into()]);
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&input).args(["--to", &log])), 0);
    expect_status(&consumer(&log, &lake, "t", &["--event-time", "at"]), 0);
    let read = kappa_tests::python_deltalake(
        &lake.join("t"),
        None,
        "p = table.protocol()\nprint(p.min_reader_version, p.min_writer_version, p.reader_features, p.writer_features)\n\
         print({f.name: str(f.type) for f in table.schema().fields})",
    );
    let mut lines = read.lines();
    assert_eq!(lines.next(), Some("1 2 None None"), "{read}");
    let types = lines.next().unwrap();
    for expected in ["'at': 'PrimitiveType(\"timestamp\")'", "'month': 'PrimitiveType(\"integer\")'"] {
        assert!(types.contains(expected), "{expected} in {types}");
    }
}
