//! kappa-query over the lake the consumer builds from the seed sales, its answers held to
//! DuckDB's on the same Delta table (`delta_scan`), the supermarket star schema included.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kappa_tests::{DUCKDB_WITH_DELTA, expect_status, kappa, python, python_deltalake, run, seed};

use crate::support::sales_files;

/// The seed sales produced into a 4-shard log and consumed into a day-partitioned lake, one
/// file (day) at a time, so that the table has a version per day to travel back to.
fn sales_lake(dir: &Path, extra: &[&str]) -> PathBuf {
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
        let consumer = run(kappa("kappa-consumer", None)
            .args([
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
            ])
            .args(extra));
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
        "import csv\n{DUCKDB_WITH_DELTA}\
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
    let lake = sales_lake(dir.path(), &[]);
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
    let lake = sales_lake(dir.path(), &[]);
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
    expect_status(&missing, 2);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("tables there: sales"), "{}", String::from_utf8_lossy(&missing.stderr));
}

/// `1234` as `1,234`, as the report writes numbers.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    digits.chars().enumerate().fold(String::new(), |mut out, (i, c)| {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
        out
    })
}

#[test]
fn the_report_draws_every_partition_and_version_and_chromium_renders_it() {
    let dir = tempfile::tempdir().unwrap();
    // Files per shard: a day's several files give the compaction below something to merge.
    let lake = sales_lake(dir.path(), &["--per-shard-files"]);
    let table = lake.join("sales");
    // A compaction, so that the time line has a second kind of commit.
    let compact = run(kappa("kappa-replay", None).args(["compact", "--table", "sales", "--min-age", "0s", "--lake"]).arg(&lake));
    expect_status(&compact, 0);
    let log = kappa_tests::delta_log(&table).unwrap();
    let partitions: std::collections::BTreeSet<&str> = log.files.iter().map(|f| f.rsplit_once('/').unwrap().0).collect();
    let rows: u64 = python_deltalake(&table, None, "print(table.to_pyarrow_table().num_rows)").trim().parse().unwrap();
    assert!(partitions.len() >= 4 && rows > 0);

    let page = dir.path().join("lake.html");
    let report = run(kappa("kappa-query", None).args(["report", "--table", "sales", "--lake"]).arg(&lake).arg("--output").arg(&page));
    expect_status(&report, 0);
    assert!(String::from_utf8_lossy(&report.stderr).contains(&format!("{} partitions", partitions.len())));

    // The page as Chromium reads it: the parsed document, then a screenshot.
    let profile = dir.path().join("chromium-profile");
    let chromium = |args: &[&str]| {
        let output = run(Command::new("timeout")
            .arg("120")
            .arg(kappa_tests::chromium())
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars", "--no-first-run"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg(format!("file://{}", page.display())));
        assert!(output.status.success(), "chromium {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output
    };
    let dom = String::from_utf8(chromium(&["--dump-dom"]).stdout).unwrap();
    let summary = format!("{} partitions, {} files, {} rows", partitions.len(), thousands(log.files.len() as u64), thousands(rows));
    assert!(dom.contains(&summary), "the page says {summary:?}:\n{dom}");
    let chart =
        |id: &str| dom.split(&format!(r#"<svg id="{id}""#)).nth(1).and_then(|rest| rest.split("</svg>").next()).unwrap_or_else(|| panic!("no {id} chart"));
    for id in ["rows-per-partition", "bytes-per-partition", "files-per-partition"] {
        assert_eq!(chart(id).matches(r#"class="bar""#).count(), partitions.len(), "{id}: a bar per partition");
    }
    assert!(chart("file-sizes").matches(r#"class="bar""#).count() >= 1);
    assert_eq!(chart("versions-timeline").matches(r#"class="version""#).count() as u64, log.version + 1, "a dot per version");
    assert!(chart("versions-timeline").contains("OPTIMIZE") && chart("versions-timeline").contains("WRITE Append"));
    assert!(dom.contains("0 of ") && dom.contains("partitions hold more than one file"), "after the compaction every partition has one file");
    for column in ["sale_id", "total_amount", "sale_date"] {
        assert!(dom.contains(&format!("<code>{column}</code>")), "the schema lists {column}");
    }

    let screenshot = dir.path().join("lake.png");
    chromium(&["--window-size=1000,1600", &format!("--screenshot={}", screenshot.display())]);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&screenshot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let channels = frame.color_type.samples();
    let painted = |rgb: [u8; 3]| pixels[..frame.buffer_size()].chunks(channels).filter(|p| p[..3] == rgb).count();
    // The rows chart's bars (#3366cc) and the size histogram's (#2a9d8f) are on the screen.
    let (row_bars, size_bars) = (painted([0x33, 0x66, 0xcc]), painted([0x2a, 0x9d, 0x8f]));
    assert!(row_bars > 2_000 && size_bars > 500, "painted: {row_bars} px of row bars, {size_bars} px of size bars in {}x{}", frame.width, frame.height);
}

/// On S3 (moto, through the counting proxy), the "data scanned" figures are what the object
/// store served: every byte of the data files' GET responses, each once however often it was
/// sent, no more, no fewer; and never more than the table holds.
#[tokio::test]
async fn on_s3_the_data_scanned_is_what_the_store_served() {
    let moto = kappa_tests::Moto::start();
    let s3 = kappa_tests::s3_client(&moto.endpoint).await;
    s3.create_bucket().bucket("lake").send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    expect_status(&run(kappa("kappa-producer", None).args(crate::support::sales_args()).args(["--to", &log])), 0);
    let lake = ["--lake", "s3://lake/warehouse", "--table", "sales"];
    expect_status(&run(kappa("kappa-consumer", Some(&moto.endpoint)).args(["--from", &log, "--event-time", "sale_date", "--until-idle", "1s"]).args(lake)), 0);

    let proxy = kappa_tests::FaultProxy::start(&moto.endpoint);
    let summary = dir.path().join("summary.json");
    let mut shares = Vec::new();
    for sql in ["SELECT sum(total_amount) FROM sales", "SELECT sum(total_amount) FROM sales WHERE day = 20", "SELECT max(sale_id) FROM sales WHERE day >= 21"] {
        proxy.reset();
        let output = run(kappa("kappa-query", Some(&proxy.endpoint)).args(lake).args(["--format", "csv", "--summary-json"]).arg(&summary).args(["--", sql]));
        expect_status(&output, 0);
        let figures: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        let served = proxy.served_distinct_bytes("/lake/warehouse/sales/");
        let data: BTreeMap<&String, &u64> = served.iter().filter(|(path, _)| !path.contains("/_delta_log/")).collect();
        assert!(data.keys().all(|path| path.ends_with(".parquet")), "only data files besides the log: {data:?}");
        let (bytes, files) = (data.values().copied().sum::<u64>(), data.len() as u64);
        assert_eq!(
            (figures["scanned_bytes"].as_u64().unwrap(), figures["scanned_files"].as_u64().unwrap()),
            (bytes, files),
            "{sql}: {figures}, served {data:?}"
        );
        let sent: u64 = proxy.served_bytes("/lake/warehouse/sales/").iter().filter(|(path, _)| !path.contains("/_delta_log/")).map(|(_, n)| n).sum();
        assert!(bytes <= sent && bytes <= figures["table_bytes"].as_u64().unwrap(), "{sql}: {bytes} scanned, {sent} sent, {figures}");
        assert!(bytes > 0, "{sql}");
        shares.push((files, figures["table_files"].as_u64().unwrap()));
    }
    assert_eq!(shares[0].0, shares[0].1, "the whole-table sum reads every file");
    assert!(shares[1].0 * 3 < shares[1].1, "one day of four reads its own files only: {shares:?}");
    assert!(shares[1].0 < shares[2].0 && shares[2].0 < shares[0].0, "two days read more than one: {shares:?}");
}
