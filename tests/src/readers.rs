//! Readers of the lake that no kappa-lake code is in: DuckDB with its `delta` extension and
//! python `deltalake` (run in the test venv), and the Delta log's JSON replayed by hand where a
//! test needs the latest version's files.

use std::path::{Path, PathBuf};

use crate::python;

/// A table's Delta log replayed by hand (JSON commits in order): enough for tests to see what
/// the latest version holds without any kappa-lake code. Outside readers (python `deltalake`,
/// DuckDB's `delta` extension) are exercised by their own tests.
#[derive(Debug, Default)]
pub struct DeltaLog {
    pub version: u64,
    /// Paths relative to the table root.
    pub files: std::collections::BTreeSet<String>,
    pub configuration: serde_json::Map<String, serde_json::Value>,
    pub partition_columns: Vec<String>,
    /// `commitInfo.kappa` of the newest commit that carries the consumer's state.
    pub consumer_state: serde_json::Value,
}

pub fn delta_log(table_root: &Path) -> Option<DeltaLog> {
    let dir = table_root.join("_delta_log");
    let mut commits: Vec<PathBuf> = std::fs::read_dir(&dir).ok()?.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    commits.sort();
    let mut log = DeltaLog::default();
    for path in &commits {
        log.version = path.file_stem().unwrap().to_string_lossy().parse().unwrap();
        for line in std::fs::read_to_string(path).unwrap().lines().filter(|l| !l.is_empty()) {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(add) = action.get("add") {
                log.files.insert(add["path"].as_str().unwrap().to_string());
            }
            if let Some(remove) = action.get("remove") {
                log.files.remove(remove["path"].as_str().unwrap());
            }
            if let Some(metadata) = action.get("metaData") {
                log.configuration = metadata["configuration"].as_object().cloned().unwrap_or_default();
                log.partition_columns = serde_json::from_value(metadata["partitionColumns"].clone()).unwrap();
            }
            if let Some(state) = action.pointer("/commitInfo/kappa/state")
                && !state.is_null()
            {
                log.consumer_state = state.clone();
            }
        }
    }
    Some(log)
}

/// The generation a table's Delta log holds now.
pub fn current_generation(lake: &Path, table: &str) -> String {
    delta_log(&lake.join(table)).expect("a Delta table")["kappa.generation"].clone()
}

impl std::ops::Index<&str> for DeltaLog {
    type Output = String;

    fn index(&self, key: &str) -> &String {
        match self.configuration.get(key) {
            Some(serde_json::Value::String(value)) => value,
            other => panic!("table property {key}: {other:?}"),
        }
    }
}

/// Python that opens `con`, a DuckDB connection with its `delta` extension loaded from the
/// `duckdb-ext-delta` package's file (no network) and its progress bar off (a query over 2 s
/// drew one on stdout, before the rows a test compares).
pub const DUCKDB_WITH_DELTA: &str = "import duckdb, glob, os, sys\n\
    ext = glob.glob(os.path.join(sys.prefix, 'lib/python*/site-packages/duckdb_ext/extensions/*/*/delta.duckdb_extension'))[0]\n\
    con = duckdb.connect(config={'allow_unsigned_extensions': True})\n\
    con.execute('SET enable_progress_bar = false')\n\
    con.execute(f\"LOAD '{ext}'\")\n";

/// Runs `query` in DuckDB with its `delta` extension (loaded from the `duckdb-ext-delta`
/// package's file: no network), `{table}` standing for the Delta table at `table_root`; returns
/// the rows as Python prints them. (Every DuckDB connection here turns its progress bar off:
/// a query over 2 s drew one on stdout, before the rows a test compares.)
pub fn duckdb_delta(table_root: &Path, query: &str) -> String {
    let query = query.replace("{table}", &format!("delta_scan('{}')", table_root.display()));
    python(&format!(
        "{DUCKDB_WITH_DELTA}\
         print(con.execute(r'''{query}''').fetchall())"
    ))
}

/// Runs a Python snippet with `table` bound to python `deltalake`'s `DeltaTable` at
/// `table_root` (at `version`, for time travel); returns what it prints.
pub fn python_deltalake(table_root: &Path, version: Option<u64>, code: &str) -> String {
    deltalake_snippet(&table_root.display().to_string(), "None", version, code)
}

/// The same for a table on S3 (`s3://bucket/prefix/table`) served at `endpoint`, with the test
/// credentials.
pub fn python_deltalake_s3(uri: &str, endpoint: &str, code: &str) -> String {
    let options = format!(
        "{{'AWS_ENDPOINT_URL': '{endpoint}', 'AWS_ALLOW_HTTP': 'true', 'AWS_ACCESS_KEY_ID': 'test', 'AWS_SECRET_ACCESS_KEY': 'test', 'AWS_REGION': 'us-east-1'}}"
    );
    deltalake_snippet(uri, &options, None, code)
}

fn deltalake_snippet(uri: &str, options: &str, version: Option<u64>, code: &str) -> String {
    let version = version.map_or("None".to_string(), |v| v.to_string());
    // deltalake's runtime threads can abort the interpreter's teardown ("terminate called
    // without an active exception", in two of six suite runs here): leave before it.
    python(&format!(
        "from deltalake import DeltaTable\ntable = DeltaTable(r'''{uri}''', version={version}, storage_options={options})\n{code}\nimport os, sys\nsys.stdout.flush()\nos._exit(0)"
    ))
}

/// Runs `query` in DuckDB with its `delta` extension against a table on S3
/// (`s3://bucket/prefix/table`) served at `endpoint` (`http://host:port`), through DuckDB's
/// `httpfs` extension (from `duckdb-ext-httpfs`) and an S3 secret with the test credentials.
pub fn duckdb_delta_s3(uri: &str, endpoint: &str, query: &str) -> String {
    let host = endpoint.trim_start_matches("http://");
    let query = query.replace("{table}", &format!("delta_scan('{uri}')"));
    python(&format!(
        "import duckdb, glob, os, sys\n\
         ext = lambda name: glob.glob(os.path.join(sys.prefix, f'lib/python*/site-packages/duckdb_ext/extensions/*/*/{{name}}.duckdb_extension'))[0]\n\
         con = duckdb.connect(config={{'allow_unsigned_extensions': True}})\n\
         con.execute('SET enable_progress_bar = false')\n\
         con.execute(\"LOAD '\" + ext('httpfs') + \"'\")\n\
         con.execute(\"LOAD '\" + ext('delta') + \"'\")\n\
         con.execute(\"CREATE SECRET (TYPE s3, KEY_ID 'test', SECRET 'test', REGION 'us-east-1', ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)\")\n\
         print(con.execute(r'''{query}''').fetchall())"
    ))
}

/// Runs `query` (`{table}` standing for the table) in three outside readers — DuckDB's
/// `delta` extension, python `deltalake` (its Arrow table, queried by DuckDB), and ClickHouse's
/// `deltaLakeLocal` (chDB) — and returns each one's rows as tab-separated lines, in that
/// order. Write queries whose values print alike in both SQL dialects: integers and strings
/// (cast sums of fractions to integers), no NULLs.
pub fn three_readers(table_root: &Path, query: &str) -> [String; 3] {
    let root = table_root.display().to_string();
    let duckdb = |source: &str| query.replace("{table}", source);
    let print_rows = "for row in rows: print('\\t'.join(str(v) for v in row))";
    let duck = python(&format!(
        "{DUCKDB_WITH_DELTA}\
         rows = con.execute(r'''{} ''').fetchall()\n{print_rows}",
        duckdb(&format!("delta_scan('{root}')"))
    ));
    let deltalake = deltalake_snippet(
        &root,
        "None",
        None,
        &format!(
            "import duckdb\nrows_of_table = table.to_pyarrow_table()\ncon = duckdb.connect()\ncon.execute('SET enable_progress_bar = false')\nrows = con.sql(r'''{} ''').fetchall()\n{print_rows}",
            duckdb("rows_of_table")
        ),
    );
    let clickhouse = python(&format!(
        // chDB reads files only under its working directory: the root directory, then.
        "import os\nos.chdir('/')\nimport chdb\nprint(chdb.query(r'''{} ''', 'TabSeparated').bytes().decode(), end='')",
        query.replace("{table}", &format!("deltaLakeLocal('{root}')"))
    ));
    [duck, deltalake, clickhouse]
}

/// [`three_readers`], asserting they all answer `expected` (tab-separated lines).
pub fn assert_three_readers(table_root: &Path, query: &str, expected: &str) {
    let [duck, deltalake, clickhouse] = three_readers(table_root, query);
    for (reader, answer) in [("DuckDB delta_scan", duck), ("python deltalake", deltalake), ("ClickHouse deltaLakeLocal", clickhouse)] {
        assert_eq!(answer.trim_end(), expected.trim_end(), "{reader} answered otherwise to {query}");
    }
}
