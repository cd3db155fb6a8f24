//! The AWS-API servers the end-to-end tests run against, each on a free loopback port and
//! stopped when dropped: [`Moto`], the [`FaultProxy`] in front of it, and [`KinesisLocal`].

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, http_request, venv_bin, wait_until, workspace_root};

fn wait_for_port(port: u16, child: &mut Child, what: &str, timeout: Duration) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until(child, what, timeout, || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
        .unwrap_or_else(|e| panic!("{e} (waiting for it to listen on port {port})"));
}

/// The last `lines` lines of a log file, for panic messages.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
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

    /// Like [`FaultProxy::lose_response`], for requests whose body also contains
    /// `body_contains`, the 500 sent only `seconds` after the write was done: time for other
    /// writers to act on it before its writer hears anything.
    pub fn lose_response_after(&self, method: &str, path_contains: &str, body_contains: &str, seconds: f64, times: u32) {
        let body_contains = serde_json::to_string(body_contains).expect("a string");
        let spec = format!(r#"{{"method":"{method}","path_contains":"{path_contains}","body_contains":{body_contains},"times":{times},"seconds":{seconds}}}"#);
        self.call("POST", "/_proxy/lose_response", &spec);
    }

    /// Holds the next `times` requests of `method` whose path contains `path_contains` and whose
    /// body contains `body_contains` for `seconds` before forwarding them: a write that lands
    /// long after it was sent, whatever its sender does meanwhile (SIGSTOP, say).
    pub fn hold(&self, method: &str, path_contains: &str, body_contains: &str, seconds: f64, times: u32) {
        let body_contains = serde_json::to_string(body_contains).expect("a string");
        let spec = format!(r#"{{"method":"{method}","path_contains":"{path_contains}","body_contains":{body_contains},"seconds":{seconds},"times":{times}}}"#);
        self.call("POST", "/_proxy/hold", &spec);
    }

    /// From now on each request of `methods` whose path contains `path_contains` is, with
    /// probability `error`, answered 500 without being done, else with probability `cut`
    /// done and its answer cut in the middle of the body; seeded by `seed`.
    pub fn chaos(&self, methods: &[&str], path_contains: &str, cut: f64, error: f64, seed: u64) {
        let spec = serde_json::json!({"methods": methods, "path_contains": path_contains, "cut": cut, "error": error, "seed": seed});
        self.call("POST", "/_proxy/chaos", &spec.to_string());
    }

    /// No more chaos.
    pub fn calm(&self) {
        self.call("POST", "/_proxy/chaos", "{}");
    }

    /// The next `times` requests of `method` whose path contains `path_contains` get their
    /// answer cut in the middle of the body.
    pub fn cut(&self, method: &str, path_contains: &str, times: u32) {
        self.call("POST", "/_proxy/cut", &format!(r#"{{"method":"{method}","path_contains":"{path_contains}","times":{times}}}"#));
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
