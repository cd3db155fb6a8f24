//! kappa-query over the lake the consumer builds from the seed sales, its answers held to
//! DuckDB's on the same Delta table (`delta_scan`), the supermarket star schema included.

use std::path::{Path, PathBuf};
use std::process::Output;

use kappa_tests::{expect_status, kappa, python, python_deltalake, run, seed};

use crate::support::sales_files;

/// The seed sales produced into a 4-shard log and consumed into a day-partitioned lake, one
/// file (day) at a time, so that the table has a version per day to travel back to.
fn sales_lake(dir: &Path) -> PathBuf {
    let (log, lake, schema) = (dir.join("log"), dir.join("lake"), dir.join("sales.schema.json"));
    for file in sales_files() {
        let producer = run(kappa("kappa-producer", None).args([
            "--input",
            &file.display().to_string(),
            "--to",
            &format!("log:{}", log.display()),
            "--shards",
            "4",
            "--write-schema",
            &schema.display().to_string(),
        ]));
        expect_status(&producer, 0);
        let consumer = run(kappa("kappa-consumer", None).args([
            "--from",
            &format!("log:{}", log.display()),
            "--lake",
            &lake.display().to_string(),
            "--table",
            "sales",
            "--schema",
            &schema.display().to_string(),
            "--event-time",
            "sale_date",
            "--partition-by",
            "day",
            "--until-idle",
            "1s",
        ]));
        expect_status(&consumer, 0);
    }
    lake
}

const DIMENSIONS: [(&str, &str); 5] = [
    ("customers", "supermarket_customers.csv"),
    ("products", "supermarket_products.csv"),
    ("categories", "supermarket_categories.csv"),
    ("branches", "supermarket_branches.csv"),
    ("locations", "supermarket_locations.csv"),
];

fn star_sql() -> PathBuf {
    kappa_tests::workspace_root().join("docs/examples/supermarket_star.sql")
}

/// kappa-query on the lake's `sales`, with the dimensions registered and the star schema's
/// views, writing CSV.
fn kappa_query(lake: &Path, extra: &[&str], sql: &str) -> Output {
    let mut command = kappa("kappa-query", None);
    command.args(["--lake", &lake.display().to_string(), "--table", "sales", "--format", "csv", "--init", &star_sql().display().to_string()]);
    for (name, file) in DIMENSIONS {
        command.args(["--register", &format!("{name}={}", seed(&format!("supermarket/dimensions/{file}")).display())]);
    }
    // (`--`: SQL may begin with a comment, `-- …`)
    run(command.args(extra).arg("--").arg(sql))
}

/// DuckDB's answer as CSV: `sales` is the Delta table (delta_scan), the dimensions the seed
/// CSVs, and the star schema the same view file.
fn duckdb_csv(table_root: &Path, sql: &str) -> String {
    let mut setup = format!("con.execute(\"CREATE VIEW sales AS SELECT * FROM delta_scan('{}')\")\n", table_root.display());
    for (name, file) in DIMENSIONS {
        setup += &format!(
            "con.execute(\"CREATE VIEW {name} AS SELECT * FROM read_csv('{}', header=true)\")\n",
            seed(&format!("supermarket/dimensions/{file}")).display()
        );
    }
    python(&format!(
        "import csv, duckdb, glob, os, sys\n\
         ext = glob.glob(os.path.join(sys.prefix, 'lib/python*/site-packages/duckdb_ext/extensions/*/*/delta.duckdb_extension'))[0]\n\
         con = duckdb.connect(config={{'allow_unsigned_extensions': True}})\n\
         con.execute(f\"LOAD '{{ext}}'\")\n\
         {setup}\
         con.execute(open(r'''{star}''').read())\n\
         cursor = con.execute(r'''{sql}''')\n\
         out = csv.writer(sys.stdout, lineterminator='\\n')\n\
         out.writerow([d[0] for d in cursor.description])\n\
         out.writerows(['' if v is None else v for v in row] for row in cursor.fetchall())\n",
        star = star_sql().display(),
    ))
}

/// CSV rows with values made comparable: numbers as f64, timestamps with a space.
fn normalized(csv_text: &str) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(csv_text.as_bytes());
    reader
        .records()
        .map(|record| {
            record
                .unwrap()
                .iter()
                .map(|field| match field.parse::<f64>() {
                    Ok(number) => format!("{:.6e}", number),
                    Err(_) if field.len() >= 19 && field.as_bytes()[10] == b'T' => field.replacen('T', " ", 1),
                    Err(_) => field.to_string(),
                })
                .collect()
        })
        .collect()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "kappa-query failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The numbers in the "data scanned" line: (bytes, total bytes as text, files, total files).
fn scanned(output: &Output) -> (String, u64, u64) {
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let line = stderr.lines().rev().find(|l| l.contains("data scanned from sales")).unwrap_or_else(|| panic!("no scanned line in {stderr}")).to_string();
    let files = line.rsplit_once(", ").unwrap().1.trim_end_matches(" files");
    let (read, total) = files.split_once(" of ").unwrap();
    (line.clone(), read.parse().unwrap(), total.parse().unwrap())
}

#[test]
fn kappa_query_answers_as_duckdb_does_and_prunes_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let lake = sales_lake(dir.path());
    let table = lake.join("sales");
    let questions = [
        // counts and sums
        "SELECT count(*) AS n, count(DISTINCT sale_id) AS ids, sum(quantity) AS items, round(sum(total_amount), 2) AS total FROM sales",
        // group by a partition column
        "SELECT day, count(*) AS n, round(sum(total_amount), 2) AS total FROM sales GROUP BY day ORDER BY day",
        // group by a string column
        "SELECT branch_id, count(*) AS n, max(unit_price) AS top FROM sales GROUP BY branch_id ORDER BY branch_id",
        // the seed's question, through the star schema (joins to all five dimensions)
        &std::fs::read_to_string(kappa_tests::workspace_root().join("docs/examples/top_customers.sql")).unwrap(),
        "SELECT category_name, branch_region, count(*) AS n FROM sales_star GROUP BY 1, 2 ORDER BY 1, 2",
        // a window function
        "SELECT sale_date, sale_id, total_amount, r FROM (SELECT sale_date, sale_id, total_amount, \
         rank() OVER (PARTITION BY sale_date ORDER BY total_amount DESC, sale_id) AS r FROM sales) WHERE r <= 2 ORDER BY sale_date, r",
        // NULLs made and counted
        "SELECT count(NULLIF(quantity, 1)) AS not_one, sum(CASE WHEN quantity > 5 THEN NULL ELSE quantity END) AS small, \
         count(*) - count(CASE WHEN quantity > 5 THEN NULL ELSE 1 END) AS nulls FROM sales",
        // dates and timestamps
        "SELECT min(sale_date) AS first, max(sale_date) AS last, \
         max(CAST(sale_date AS TIMESTAMP) + INTERVAL '90 minutes') AS later FROM sales",
    ];
    for sql in questions {
        let ours = stdout(&kappa_query(&lake, &[], sql));
        let duck = duckdb_csv(&table, sql.trim().trim_end_matches(';'));
        assert_eq!(normalized(&ours), normalized(&duck), "{sql}\nkappa-query:\n{ours}\nDuckDB:\n{duck}");
        assert!(normalized(&ours).len() > 1, "{sql}: an answer with rows");
    }

    // A whole-table aggregate reads every file; a one-day filter only that day's.
    let (line, all_files, total) = scanned(&kappa_query(&lake, &[], "SELECT sum(total_amount) FROM sales"));
    assert_eq!(all_files, total, "{line}");
    let files_per_day = kappa_tests::delta_log(&table).unwrap().files.iter().filter(|f| f.contains("day=20/")).count() as u64;
    let one_day = kappa_query(&lake, &[], "SELECT sum(total_amount) FROM sales WHERE day = 20");
    let (line, day_files, _) = scanned(&one_day);
    assert!(day_files > 0 && day_files <= files_per_day && files_per_day < total, "{line}: the day has {files_per_day} of {total} files");
}

#[test]
fn kappa_query_travels_back_writes_every_format_and_names_bad_sql() {
    let dir = tempfile::tempdir().unwrap();
    let lake = sales_lake(dir.path());
    let table = lake.join("sales");
    let version = kappa_tests::delta_log(&table).unwrap().version;
    assert!(version >= 4, "a version per day at least: {version}");
    for at in [1, version / 2, version] {
        let ours = stdout(&kappa_query(&lake, &["--version", &at.to_string()], "SELECT count(*) AS n FROM sales"));
        let theirs = python_deltalake(&table, Some(at), "print(table.to_pyarrow_table().num_rows)");
        assert_eq!(ours.lines().nth(1).unwrap(), theirs.trim(), "version {at}");
    }

    let sql = "SELECT day, count(*) AS n FROM sales GROUP BY day ORDER BY day";
    let json = stdout(&kappa_query(&lake, &["--format", "json"], sql));
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 4, "{json}");
    assert_eq!(parsed[0]["n"], 100);
    let parquet = dir.path().join("out.parquet");
    stdout(&kappa_query(&lake, &["--format", "parquet", "--output", &parquet.display().to_string()], sql));
    let file = std::fs::File::open(&parquet).unwrap();
    let rows: usize =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 4);

    let bad = kappa_query(&lake, &[], "SELECT day,, count(*) FROM sales");
    expect_status(&bad, 1);
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(message.contains("Line: 1, Column"), "the position is named: {message}");
    let missing = run(kappa("kappa-query", None).args(["--lake", &lake.display().to_string(), "--table", "slaes", "--", "SELECT 1"]));
    expect_status(&missing, 1);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("tables there: sales"), "{}", String::from_utf8_lossy(&missing.stderr));
}
