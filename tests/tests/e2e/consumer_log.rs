//! The consumer on the embedded log: the seed data into the lake, read back.

use std::collections::BTreeSet;

use kappa_tests::{delta_log, duckdb_delta, expect_status, kappa, python_deltalake, read_csv, read_lake, run, seed};

use crate::support::{sales_args, summary};

/// Produces `args` into a fresh log and consumes it into a lake with `consumer_args`
/// (always `--until-idle 1s`); returns (temp dir, generation prefix).
pub(crate) fn produce_and_consume(producer_args: &[String], consumer_args: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    expect_status(&run(kappa("kappa-producer", None).args(producer_args).args(["--to", &log])), 0);
    let lake = dir.path().join("lake");
    let output = run(kappa("kappa-consumer", None)
        .args(["--from", &log, "--lake"])
        .arg(&lake)
        .args(["--until-idle", "1s", "--summary-json"])
        .arg(dir.path().join("consumer-summary.json"))
        .args(consumer_args));
    expect_status(&output, 0);
    let table = consumer_args.windows(2).find(|w| w[0] == "--table").map_or("events", |w| w[1]);
    let prefix = lake.join(table).join("gen-000001");
    (dir, prefix)
}

#[test]
fn seed_sales_become_four_day_partitions_with_the_csv_values() {
    let (dir, prefix) = produce_and_consume(&sales_args(), &["--table", "sales", "--event-time", "sale_date"]);
    crate::support::assert_sales_lake(&read_lake(&prefix));
    let s = summary(&dir.path().join("consumer-summary.json"));
    assert_eq!((s["events_read"].as_u64(), s["rows_written"].as_u64(), s["quarantined"].as_u64()), (Some(400), Some(400), Some(0)));
}

#[test]
fn until_idle_counts_from_when_the_log_was_read_to_its_end() {
    // Reading the first 8,192 of 50,000 events takes longer than the 0 s asked for (stop as
    // soon as caught up): idle time counted from the start would end the run before anything
    // was read.
    let dir = tempfile::tempdir().unwrap();
    let csv = crate::support::generate_sales_csv(dir.path(), 50_000);
    let log = format!("log:{}", dir.path().join("log").display());
    expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&csv).args(["--to", &log])), 0);
    let lake = dir.path().join("lake");
    let summary_path = dir.path().join("summary.json");
    let output = run(kappa("kappa-consumer", None)
        .args(["--from", &log, "--lake"])
        .arg(&lake)
        .args(["--table", "sales", "--event-time", "sale_time", "--until-idle", "0s", "--summary-json"])
        .arg(&summary_path));
    expect_status(&output, 0);
    let s = summary(&summary_path);
    assert_eq!((s["events_read"].as_u64(), s["rows_written"].as_u64()), (Some(50_000), Some(50_000)));
    assert_eq!(read_lake(&lake.join("sales/gen-000001")).len(), 50_000);
}

#[test]
fn people_by_year_make_one_partition_per_year() {
    let people = seed("people/generated_mock_data.csv");
    let (_dir, prefix) =
        produce_and_consume(&["-i".into(), people.display().to_string()], &["--table", "people", "--event-time", "Date", "--partition-by", "year"]);
    let rows = read_lake(&prefix);
    assert_eq!(rows.len(), 1000);
    let years: BTreeSet<String> = read_csv(&people).iter().map(|r| format!("year={}", &r["Date"].as_str().unwrap()[..4])).collect();
    let partitions: BTreeSet<String> = rows.iter().map(|r| r.partition.clone()).collect();
    assert_eq!(partitions, years);
    assert_eq!(partitions.len(), 55);
    for r in &rows {
        assert_eq!(r.partition, format!("year={}", &r.row["Date"].as_str().unwrap()[..4]));
    }
}

#[test]
fn outside_delta_readers_get_the_csvs_rows_and_values() {
    let (_dir, prefix) = produce_and_consume(&sales_args(), &["--table", "sales", "--event-time", "sale_date"]);
    let table = prefix.parent().unwrap();
    let out = duckdb_delta(table, "SELECT day, count(*), round(sum(total_amount), 2) FROM {table} GROUP BY day ORDER BY day");
    let mut expected = Vec::new();
    let mut csv_rows = Vec::new();
    for (day, file) in (19..=22).zip(crate::support::sales_files()) {
        let rows = read_csv(&file);
        let total: f64 = rows.iter().map(|r| r["total_amount"].as_str().unwrap().parse::<f64>().unwrap()).sum();
        expected.push(format!("({day}, 100, {})", (total * 100.0).round() / 100.0));
        csv_rows.extend(rows);
    }
    assert_eq!(out.trim(), format!("[{}]", expected.join(", ")));
    // python deltalake: every row, every value as the CSV has it.
    let out = python_deltalake(
        table,
        None,
        "import json\nrows = table.to_pyarrow_table().sort_by('sale_id').to_pylist()\nprint(json.dumps([[r['sale_id'], r['customer_id'], r['quantity'], r['total_amount']] for r in rows]))",
    );
    let got: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap();
    csv_rows.sort_by(|a, b| a["sale_id"].as_str().cmp(&b["sale_id"].as_str()));
    assert_eq!(got.len(), csv_rows.len());
    for (row, csv) in got.iter().zip(&csv_rows) {
        let value = |k: &str| csv[k].as_str().unwrap().to_string();
        assert_eq!(row[0], value("sale_id"));
        assert_eq!(row[1], value("customer_id"));
        assert_eq!(row[2].as_i64().unwrap(), value("quantity").parse::<i64>().unwrap());
        assert_eq!(row[3].as_f64().unwrap(), value("total_amount").parse::<f64>().unwrap());
    }
}

#[test]
fn data_columns_named_like_partition_keys_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.csv");
    std::fs::write(&input, "id,year,day,at\n1,1999,Monday,2025-03-19 10:00:00\n2,2001,Tuesday,2025-03-20 11:00:00\n").unwrap();
    let (_dir2, prefix) = produce_and_consume(&["-i".into(), input.display().to_string()], &["--event-time", "at"]);
    let rows = read_lake(&prefix);
    let one = rows.iter().find(|r| r.row["id"] == 1).unwrap();
    // The directories are named after the partition columns as stored (issue 61, 3), so a
    // reader that takes directories for columns does not take them for the data's.
    assert_eq!(one.partition, "kappa_year=2025/month=03/kappa_day=19");
    // The user's own `year` and `day` keep their names and values; the table's partition
    // columns are named around them.
    assert_eq!(one.row["year"], 1999);
    assert_eq!(one.row["day"], "Monday");
    let log = delta_log(prefix.parent().unwrap()).unwrap();
    assert_eq!(log.partition_columns, ["kappa_year", "month", "kappa_day"]);
    // Readers of the Delta table see both: DuckDB's delta extension and python deltalake.
    let table = prefix.parent().unwrap();
    let out = duckdb_delta(table, "SELECT kappa_year, kappa_day, year, day FROM {table} ORDER BY id");
    assert_eq!(out.trim(), "[(2025, 19, 1999, 'Monday'), (2025, 20, 2001, 'Tuesday')]");
    let out =
        python_deltalake(table, None, "t = table.to_pyarrow_table().sort_by('id')\nprint(t.select(['kappa_year', 'kappa_day', 'year', 'day']).to_pylist()[0])");
    assert_eq!(out.trim(), "{'kappa_year': 2025, 'kappa_day': 19, 'year': 1999, 'day': 'Monday'}");
}

#[test]
fn metrics_are_served_in_the_prometheus_format() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    expect_status(&run(kappa("kappa-producer", None).args(sales_args()).args(["--to", &log])), 0);
    let port = kappa_tests::free_port();
    let mut child = kappa("kappa-consumer", None)
        .args(["--from", &log, "--lake"])
        .arg(dir.path().join("lake"))
        .args(["--event-time", "sale_date", "--flush-interval", "200ms", "--status-interval", "200ms", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Scrape until the flush of all 400 rows shows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut body = String::new();
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { continue };
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        body.clear();
        stream.read_to_string(&mut body).unwrap();
        if body.contains("kappa_consumer_rows_written_total 400") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    for line in [
        "# TYPE kappa_consumer_events_read_total counter",
        "kappa_consumer_events_read_total 400",
        "kappa_consumer_rows_written_total 400",
        "kappa_consumer_quarantined_total 0",
        "kappa_consumer_open_partitions 0",
        "kappa_consumer_lag 0",
    ] {
        assert!(body.lines().any(|l| l == line), "missing {line:?} in:\n{body}");
    }
}
