//! Test harness for kappa-lake's end-to-end tests: the built binaries, the seed data, and real
//! AWS-API servers on loopback.
//!
//! [`Moto`] starts moto's server (from the project's `.venv`, installed by
//! `scripts/setup-test-env`) on a free port and stops it when dropped. [`FaultProxy`] sits in
//! front of it to count requests per API action and to inject partial batch failures. A missing
//! emulator is a test failure that says how to install it, never a skip.

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

/// A built binary of the workspace. The test command (`scripts/test`) builds them first.
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (./scripts/test does it)",
        path.display()
    );
    path
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

fn wait_for_port(port: u16, child: &mut Child, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on port {port} within {timeout:?}");
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
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the proxy");
        write!(stream, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("proxy answered {response:?}: {e}"))
    }

    /// Requests per API action so far, e.g. `{"PutRecords": 1, "DescribeStreamSummary": 2}`.
    pub fn requests(&self, action: &str) -> u64 {
        self.call("GET", "/_proxy/stats", "")["requests"][action].as_u64().unwrap_or(0)
    }

    /// Entry counts of each call of a batch action, in order.
    pub fn entries(&self, action: &str) -> Vec<u64> {
        self.call("GET", "/_proxy/stats", "")["entries"][action]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_u64().expect("count")).collect())
            .unwrap_or_default()
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
                stack.push(path);
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
    let output = run(Command::new(venv_bin("python")).args(["-c", code]));
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8")
}
