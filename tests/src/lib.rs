//! Test harness for kappa-lake's end-to-end tests: the built binaries, the seed data, and real
//! AWS-API servers on loopback.
//!
//! [`Moto`] starts moto's server (from the project's `.venv`, installed by
//! `scripts/setup-test-env`) on a free port and stops it when dropped. [`FaultProxy`] sits in
//! front of it to count requests per API action and to inject partial batch failures.
//! [`KinesisLocal`] is a second Kinesis (npm `kinesis-local`, in `.emulators/`, installed by the
//! same script) for realistic resharding and concurrent writers. A missing emulator is a test
//! failure that says how to install it, never a skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// A file of the shared seed data (`../shared/seed-data` beside the repository).
pub fn seed(relative: &str) -> PathBuf {
    let path = workspace_root().join("../shared/seed-data").join(relative);
    assert!(path.exists(), "seed data {} is missing: the repository expects ../shared/seed-data beside it", path.display());
    path
}

/// A binary of the workspace. The test command (`scripts/test`) builds them first; a binary
/// older than a Rust source of its crates fails the test, so a test never runs code older than
/// what it tests (cargo's own freshness check is by modification time too).
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is not built: run `{}` first (./scripts/test does it)", path.display(), build_command()));
    let crates: &[&str] = match name {
        "kappa-producer" => &["common", "producer"],
        "kappa-consumer" => &["common", "table", "leases", "consumer"],
        "kappa-replay" => &["common", "table", "leases", "consumer", "replay"],
        "kappa-query" => &["common", "table", "query"],
        _ => &["bench"],
    };
    if let Some((modified, source)) = newest_rust_source(crates)
        && built < modified
    {
        panic!("{} is older than {}: run `{}` (./scripts/test does it) so the tests run the current code", path.display(), source.display(), build_command());
    }
    path
}

/// Where cargo put the binaries built with the running test: a test binary is in `deps/` of
/// the profile's directory (`target/debug`, or `target/<triple>/debug` for a `--target` build,
/// as `scripts/test`'s static one), the binaries one level up.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe.parent().expect("the test binary's directory");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().expect("the profile's directory").to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// The command that builds the binaries where [`bin_dir`] looks: for the test's own target when
/// it was built with `--target` (`target/<triple>/debug`), as `./scripts/test` builds.
fn build_command() -> String {
    let dir = bin_dir();
    match dir.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()) {
        Some(triple) if triple.matches('-').count() >= 2 => format!("cargo build --workspace --bins --target {triple}"),
        _ => "cargo build --workspace --bins".to_string(),
    }
}

/// The most recently modified Rust file of the workspace's `crates`, leaving out unit-test
/// modules (`tests.rs`, `tests/`): they are not in the binary, and cargo does not rebuild a
/// binary when only they change.
fn newest_rust_source(crates: &[&str]) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    let mut stack: Vec<PathBuf> = crates.iter().map(|c| workspace_root().join(c).join("src")).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("tests") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("tests.rs")
                && let Ok(modified) = entry.metadata().and_then(|m| m.modified())
                && newest.as_ref().is_none_or(|(n, _)| modified > *n)
            {
                newest = Some((modified, path));
            }
        }
    }
    newest
}

/// Runs a command to completion, returning its output; panics with stderr if it failed
/// to start.
pub fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// Asserts a command's exit status, showing its stderr when it differs.
pub fn expect_status(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit status {:?}, expected {code}\n--- stderr ---\n{}\n--- stdout ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port").local_addr().expect("local addr").port()
}

/// Polls `ready` until it holds; an error if `child` exits first or `timeout` passes.
pub fn wait_until(child: &mut Child, what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited with {status} before it was ready"));
        }
        if Instant::now() >= deadline {
            return Err(format!("{what} was not ready within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A counter or gauge from a consumer's `--metrics-addr` on `port`; `None` while it does not
/// answer yet.
pub fn metric(port: u16, name: &str) -> Option<u64> {
    let response = http_request(port, "GET", "/metrics", &[], "").ok()?;
    let line = response.lines().find(|l| l.starts_with(&format!("kappa_consumer_{name} ")))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// True once a consumer's `--metrics-addr` on `port` answers `/readyz` with 200 (its source
/// answered, and it makes progress).
pub fn ready(port: u16) -> bool {
    http_request(port, "GET", "/readyz", &[], "").is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
}

/// Waits until a consumer's metric reaches `at_least`: readiness from what the process
/// reports, not from a guessed sleep.
pub fn wait_for_metric(child: &mut Child, port: u16, name: &str, at_least: u64, timeout: Duration) {
    wait_until(child, "the consumer", timeout, || metric(port, name).is_some_and(|v| v >= at_least))
        .unwrap_or_else(|e| panic!("{e} (waiting for {name} >= {at_least}; last seen {:?})", metric(port, name)));
}

/// One HTTP/1.1 request to a loopback port with `Connection: close`; returns the whole response
/// (status line, headers, body).
fn http_request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n{extra}\r\n{body}", body.len())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

fn venv_bin(name: &str) -> PathBuf {
    let path = workspace_root().join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: the end-to-end tests need moto's AWS-API server. Install it with \
         `./scripts/setup-test-env` (creates .venv with moto[server] from PyPI), or run the whole \
         suite with `./scripts/test`",
        path.display()
    );
    path
}

/// Static test credentials and region for every AWS client and child process.
pub const AWS_ENV: [(&str, &str); 4] =
    [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")];

/// A command for a workspace binary pointed at `endpoint`, with test credentials and no
/// inherited AWS profile.
pub fn kappa(binary: &str, endpoint: Option<&str>) -> Command {
    let mut command = Command::new(bin(binary));
    command.env_remove("AWS_PROFILE").env_remove("AWS_ENDPOINT_URL").env("KAPPA_LOG", "info");
    for (k, v) in AWS_ENV {
        command.env(k, v);
    }
    if let Some(endpoint) = endpoint {
        command.env("AWS_ENDPOINT_URL", endpoint);
    }
    command
}

/// SDK configuration for checking results directly against the emulator.
pub async fn aws_config(endpoint: &str) -> aws_config::SdkConfig {
    let credentials = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "kappa-tests");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(endpoint)
        .load()
        .await
}

pub async fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_config(endpoint).await;
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build())
}

/// Reads CSV rows as string maps, for comparing events with their source.
pub fn read_csv(path: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let mut reader = csv::Reader::from_path(path).expect("open csv");
    let headers = reader.headers().expect("header").clone();
    reader
        .records()
        .map(|r| {
            let r = r.expect("record");
            headers.iter().zip(r.iter()).map(|(h, v)| (h.to_string(), serde_json::Value::String(v.to_string()))).collect()
        })
        .collect()
}

/// Parses every event payload (one JSON object, or NDJSON when packed) into objects.
pub fn parse_events(payload: &[u8]) -> Vec<serde_json::Map<String, serde_json::Value>> {
    payload
        .split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| match serde_json::from_slice(line).expect("event is JSON") {
            serde_json::Value::Object(m) => m,
            other => panic!("event is not an object: {other}"),
        })
        .collect()
}

/// One row read back from the lake, with the Hive partition directory it was found in.
#[derive(Debug, Clone)]
pub struct LakeRow {
    pub partition: String,
    pub file: String,
    pub row: serde_json::Map<String, serde_json::Value>,
}

/// Every Parquet file under `prefix` (recursively), sorted by path.
pub fn parquet_files(prefix: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![prefix.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                if !path.ends_with("tests") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Reads every row of every Parquet file under a generation prefix, through arrow's JSON
/// writer (dates and timestamps come out as ISO text, numbers as numbers).
pub fn read_lake(prefix: &Path) -> Vec<LakeRow> {
    let mut rows = Vec::new();
    for path in parquet_files(prefix) {
        let relative = path.strip_prefix(prefix).expect("under the prefix").to_string_lossy().to_string();
        let partition = relative.rsplit_once('/').map_or(String::new(), |(dir, _)| dir.to_string());
        let file = std::fs::File::open(&path).expect("open parquet");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").build().expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            let mut writer = arrow::json::ArrayWriter::new(Vec::new());
            writer.write(&batch).expect("to json");
            writer.finish().expect("finish");
            let json: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_slice(&writer.into_inner()).expect("json rows");
            rows.extend(json.into_iter().map(|row| LakeRow { partition: partition.clone(), file: relative.clone(), row }));
        }
    }
    rows
}

/// Sorted `(path, sha256)` of every Parquet file under a prefix: two lakes with equal lists
/// hold the same bytes under the same names.
pub fn lake_digest(prefix: &Path) -> Vec<(String, String)> {
    use sha2::Digest;
    parquet_files(prefix)
        .into_iter()
        .map(|path| {
            let digest = sha2::Sha256::digest(std::fs::read(&path).expect("read"));
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            (path.strip_prefix(prefix).expect("under prefix").to_string_lossy().to_string(), hex)
        })
        .collect()
}

/// Runs a Python snippet in the test venv (DuckDB and pyarrow are installed there) and
/// returns its stdout.
pub fn python(code: &str) -> String {
    let output = run(&mut python_command(code));
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8")
}

/// The test venv's python running `code`, to start in the background.
pub fn python_command(code: &str) -> Command {
    let mut command = Command::new(venv_bin("python"));
    command.args(["-c", code]);
    command
}

/// Headless Chromium, to look at an HTML page as a person would: `$CHROMIUM`, else `chromium`,
/// `chromium-browser` or `google-chrome` on the PATH.
pub fn chromium() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("CHROMIUM") {
        Some(path) => vec![PathBuf::from(path)],
        None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .flat_map(|dir| ["chromium", "chromium-browser", "google-chrome"].map(|name| dir.join(name)))
            .collect(),
    };
    candidates.into_iter().find(|path| path.is_file()).unwrap_or_else(|| {
        panic!(
            "Chromium is missing: the report test renders the page with headless Chromium. Install it with \
             `./scripts/setup-test-env` (Debian: apt-get install chromium), or point $CHROMIUM at a Chrome binary"
        )
    })
}

mod emulators;
mod readers;
pub use emulators::{FaultProxy, KinesisLocal, Moto};
pub use readers::*;
