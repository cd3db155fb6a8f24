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
use std::net::{SocketAddr, TcpListener, TcpStream};
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

fn wait_for_port(port: u16, child: &mut Child, what: &str, timeout: Duration) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until(child, what, timeout, || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
        .unwrap_or_else(|e| panic!("{e} (waiting for it to listen on port {port})"));
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

/// The last `lines` lines of a log file, for panic messages.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
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

/// A moto server on a free loopback port, stopped on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let mut child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        wait_for_port(port, &mut child, "moto_server", Duration::from_secs(30));
        Moto { child, endpoint: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fault-injecting, request-counting proxy (`tests/support/fault_proxy.py`) in front of
/// an upstream server.
pub struct FaultProxy {
    child: Child,
    port: u16,
    pub endpoint: String,
}

impl FaultProxy {
    pub fn start(upstream: &str) -> FaultProxy {
        let port = free_port();
        let script = workspace_root().join("tests/support/fault_proxy.py");
        let mut child = Command::new(venv_bin("python"))
            .arg(script)
            .args(["--port", &port.to_string(), "--upstream", upstream])
            .stdout(Stdio::null())
            .spawn()
            .expect("start the fault proxy");
        wait_for_port(port, &mut child, "fault_proxy.py", Duration::from_secs(15));
        FaultProxy { child, port, endpoint: format!("http://127.0.0.1:{port}") }
    }

    fn call(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let response = http_request(self.port, method, path, &[], body).expect("request to the proxy");
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("proxy answered {response:?}: {e}"))
    }

    /// Requests per API action so far, e.g. `{"PutRecords": 1, "DescribeStreamSummary": 2}`.
    pub fn requests(&self, action: &str) -> u64 {
        self.call("GET", "/_proxy/stats", "")["requests"][action].as_u64().unwrap_or(0)
    }

    /// Every request so far whose action (for S3: `HTTP:/bucket/key`) contains `part`, with
    /// its count.
    pub fn requests_matching(&self, part: &str) -> std::collections::BTreeMap<String, u64> {
        let stats = self.call("GET", "/_proxy/stats", "");
        let requests = stats["requests"].as_object().cloned().unwrap_or_default();
        requests.into_iter().filter(|(action, _)| action.contains(part)).map(|(action, n)| (action, n.as_u64().expect("count"))).collect()
    }

    /// Body bytes served to GET requests so far, by path (`/bucket/key`), for the paths that
    /// contain `part`.
    pub fn served_bytes(&self, part: &str) -> std::collections::BTreeMap<String, u64> {
        let stats = self.call("GET", "/_proxy/stats", "");
        let served = stats["served"].as_object().cloned().unwrap_or_default();
        served.into_iter().filter(|(path, _)| path.contains(part)).map(|(path, n)| (path, n.as_u64().expect("bytes"))).collect()
    }

    /// The bytes of each GET path containing `part` served so far, each byte once however often
    /// it was sent (the union of the ranges served).
    pub fn served_distinct_bytes(&self, part: &str) -> std::collections::BTreeMap<String, u64> {
        let stats = self.call("GET", "/_proxy/stats", "");
        let ranges = stats["ranges"].as_object().cloned().unwrap_or_default();
        let union = |ranges: &serde_json::Value| {
            let mut ranges: Vec<(u64, u64)> =
                ranges.as_array().expect("ranges").iter().map(|r| (r[0].as_u64().expect("start"), r[1].as_u64().expect("end"))).collect();
            ranges.sort_unstable();
            let (mut total, mut reached) = (0, 0);
            for (start, end) in ranges {
                let start = start.max(reached);
                if end > start {
                    total += end - start;
                    reached = end;
                }
            }
            total
        };
        ranges.into_iter().filter(|(path, _)| path.contains(part)).map(|(path, served)| (path, union(&served))).collect()
    }

    /// Clears the counters.
    pub fn reset(&self) {
        self.call("POST", "/_proxy/reset", "");
    }

    /// Entry counts of each call of a batch action, in order.
    pub fn entries(&self, action: &str) -> Vec<u64> {
        self.call("GET", "/_proxy/stats", "")["entries"][action].as_array().map(|a| a.iter().map(|v| v.as_u64().expect("count")).collect()).unwrap_or_default()
    }

    /// Holds every request from now on for `seconds` before forwarding it (a round trip).
    pub fn latency(&self, seconds: f64) {
        self.call("POST", "/_proxy/latency", &format!(r#"{{"seconds":{seconds}}}"#));
    }

    /// The most requests of HTTP `method` in flight at once since the last reset.
    pub fn in_flight_max(&self, method: &str) -> u64 {
        self.call("GET", "/_proxy/stats", "")["in_flight_max"][method].as_u64().unwrap_or(0)
    }

    /// Holds the next `times` calls of `action` for `seconds` before forwarding them.
    pub fn delay(&self, action: &str, seconds: f64, times: u32) {
        self.call("POST", "/_proxy/delay", &format!(r#"{{"action":"{action}","seconds":{seconds},"times":{times}}}"#));
    }

    /// The next `times` requests of `method` whose path contains `path_contains` are done
    /// upstream, but answered with a 500: a write whose answer was lost.
    pub fn lose_response(&self, method: &str, path_contains: &str, times: u32) {
        self.call("POST", "/_proxy/lose_response", &format!(r#"{{"method":"{method}","path_contains":"{path_contains}","times":{times}}}"#));
    }

    /// The next `times` requests of `method` whose path contains `path_contains` are refused
    /// with `status` (403: a permission lost mid-run, which no client retries) and never reach
    /// the server.
    pub fn refuse(&self, method: &str, path_contains: &str, status: u16, times: u32) {
        self.call("POST", "/_proxy/refuse", &format!(r#"{{"method":"{method}","path_contains":"{path_contains}","status":{status},"times":{times}}}"#));
    }

    /// Makes the next `times` calls of `action` fail every `every`-th entry.
    pub fn fail_entries(&self, action: &str, every: u32, times: u32) {
        self.call("POST", "/_proxy/fail", &format!(r#"{{"action":"{action}","every":{every},"times":{times}}}"#));
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// kinesis-local (npm, kinesis-mock compiled to JS; installed into `.emulators/` by
/// `scripts/setup-test-env`) on a free loopback port, killed on drop. Unlike moto it reshards
/// realistically (closed parents stay listed, children name their parents), and it keeps
/// records of concurrent writers. Its output goes to a log file in a temporary directory.
///
/// Differences from AWS to keep in mind: closed shards report `EndingSequenceNumber`
/// 9223372036854775807 (smaller than their 56-digit record sequence numbers), iterators
/// `AT_`/`AFTER_SEQUENCE_NUMBER` of a number that is no record's are rejected
/// (`ResourceNotFoundException`), nothing is throttled, and PutRecords takes more than 500
/// records.
pub struct KinesisLocal {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl KinesisLocal {
    pub fn start() -> KinesisLocal {
        let package = workspace_root().join(".emulators/node_modules/kinesis-local");
        assert!(
            package.join("main.js").exists(),
            "{} is missing: these tests need the kinesis-local emulator (npm). Install it with \
             `./scripts/setup-test-env` (needs node and npm; Debian: apt-get install nodejs npm), \
             or run the whole suite with `./scripts/test`",
            package.join("main.js").display()
        );
        let port = free_port();
        // The TLS listener is always started (on 4567 by default, all interfaces): give it a free
        // port too, or a second instance dies with EADDRINUSE.
        let tls_port = std::iter::repeat_with(free_port).find(|p| *p != port).expect("a second port");
        let dir = tempfile::tempdir().expect("temp dir for the kinesis-local log");
        let log = dir.path().join("kinesis-local.log");
        let out = std::fs::File::create(&log).expect("create the kinesis-local log");
        let err = out.try_clone().expect("clone the log handle");
        let mut command = Command::new("node");
        // It reads its certificate (server.json) relative to the working directory.
        command.arg("main.js").current_dir(&package).stdin(Stdio::null()).stdout(out).stderr(err);
        command
            .env("KINESIS_MOCK_PLAIN_PORT", port.to_string())
            .env("KINESIS_MOCK_TLS_PORT", tls_port.to_string())
            .env("AWS_REGION", "us-east-1")
            .env("SHOULD_PERSIST_DATA", "false")
            .env("LOAD_DATA_IF_EXISTS", "false")
            .env_remove("AWS_ACCOUNT_ID")
            .env_remove("INITIALIZE_STREAMS");
        // Status changes (CREATING, UPDATING, ...) take 500 ms each by default.
        for operation in [
            "CREATE_STREAM",
            "DELETE_STREAM",
            "REGISTER_STREAM_CONSUMER",
            "DEREGISTER_STREAM_CONSUMER",
            "START_STREAM_ENCRYPTION",
            "STOP_STREAM_ENCRYPTION",
            "MERGE_SHARDS",
            "SPLIT_SHARD",
            "UPDATE_SHARD_COUNT",
            "UPDATE_STREAM_MODE",
        ] {
            command.env(format!("{operation}_DURATION"), "0ms");
        }
        let mut child =
            command.spawn().unwrap_or_else(|e| panic!("cannot start node for kinesis-local: {e}; install Node.js (Debian: apt-get install nodejs npm)"));
        // Listening is not enough: wait until a Kinesis call answers (~1-2 s).
        let ready = wait_until(&mut child, "kinesis-local", Duration::from_secs(60), || Self::list_streams_ok(port));
        if let Err(e) = ready {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{e} (port {port})\n--- {} (tail) ---\n{}", log.display(), log_tail(&log, 40));
        }
        KinesisLocal { child, port, log, _dir: dir }
    }

    /// `http://127.0.0.1:PORT`, plain HTTP.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The end of the emulator's log, for assertion messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 40)
    }

    /// Whether an (unsigned-but-well-formed) ListStreams call succeeds: the emulator checks
    /// that the Authorization and X-Amz-Date headers exist, not the signature.
    fn list_streams_ok(port: u16) -> bool {
        let headers = [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "Kinesis_20131202.ListStreams"),
            ("X-Amz-Date", "20240101T000000Z"),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0"),
        ];
        http_request(port, "POST", "/", &headers, "{}").is_ok_and(|response| response.starts_with("HTTP/1.1 200"))
    }
}

impl Drop for KinesisLocal {
    fn drop(&mut self) {
        // SIGKILL: on SIGTERM it takes ~30 s to exit. It starts no child processes.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

mod readers;
pub use readers::*;
