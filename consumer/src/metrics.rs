//! `--metrics-addr`: the consumer's counters in the Prometheus text format, served over plain
//! HTTP (`curl http://ADDR/metrics`); and the two answers an orchestrator asks for:
//! - `/healthz`: 200 while the process serves (it is up);
//! - `/readyz`: 200 once the source has answered, while the consumer makes progress — a
//!   commit, or nothing left to commit with the source caught up — within the bound it was
//!   given (3 flush intervals and a minute, at least 5 minutes); else 503 saying which.
//!
//! `kappa-consumer health` asks either, for container health checks (the image has no shell).
//! A handful of counters and gauges do not justify a metrics framework; the format is three
//! lines per metric.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::stats::Stats;

/// Gauges the pipeline updates (counters come from [`Stats`]).
#[derive(Debug, Default)]
pub struct Gauges {
    pub open_partitions: AtomicU64,
    pub buffered_bytes: AtomicU64,
    /// In the source's unit: events (log), ms behind latest (Kinesis), messages waiting (SQS).
    pub lag: AtomicU64,
    /// With `--leases`: the lease counters (and the shards held).
    /// Lag per shard being read, as of the last status line.
    pub shard_lags: std::sync::Mutex<Vec<(String, u64)>>,
    pub leases: std::sync::OnceLock<Arc<kappa_leases::LeaseStats>>,
    /// Readiness (see the module doc): the source answered; when the consumer last made
    /// progress (ms since the epoch); the commits counted then; how long it may go without.
    pub answered: AtomicBool,
    pub progress_ms: AtomicI64,
    pub commits_seen: AtomicU64,
    pub ready_within_ms: AtomicI64,
}

impl Gauges {
    /// Notes progress: a commit since the last call, or `idle` (nothing to commit, the source
    /// caught up).
    pub fn progress(&self, stats: &Stats, idle: bool) {
        let commits = stats.summary().commits;
        if idle || self.commits_seen.swap(commits, Relaxed) != commits {
            self.progress_ms.store(chrono::Utc::now().timestamp_millis(), Relaxed);
        }
    }

    /// `Ok` when ready, else why not.
    fn readiness(&self) -> Result<(), String> {
        if !self.answered.load(Relaxed) {
            return Err("the source has not answered yet".into());
        }
        let since = chrono::Utc::now().timestamp_millis() - self.progress_ms.load(Relaxed);
        let within = self.ready_within_ms.load(Relaxed);
        if within > 0 && since > within {
            return Err(format!("no commit for {} s while events wait (allowed: {} s)", since / 1000, within / 1000));
        }
        Ok(())
    }
}

/// Asks the consumer serving metrics at `addr` for `path` (`/readyz`, `/healthz`): its answer's
/// body if the status is 200, else the status and body as the error.
pub fn check(addr: SocketAddr, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(3);
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e} (is the consumer running with --metrics-addr {addr}?)"))?;
    stream.set_read_timeout(Some(timeout)).and_then(|()| stream.set_write_timeout(Some(timeout))).map_err(|e| format!("{addr}: {e}"))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(|e| format!("{addr}: {e}"))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("{addr}: {e}"))?;
    let status = response.split_whitespace().nth(1).unwrap_or_default().to_string();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body).trim().to_string();
    match status.as_str() {
        "200" => Ok(body),
        _ => Err(format!("{path}: {status} {body}")),
    }
}

fn render(stats: &Stats, gauges: &Gauges) -> String {
    let s = stats.summary();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        out.push_str(&format!("# HELP kappa_consumer_{name} {help}\n# TYPE kappa_consumer_{name} {kind}\nkappa_consumer_{name} {value}\n"));
    };
    metric("events_read_total", "counter", "Events read from the source.", s.events_read);
    metric("rows_written_total", "counter", "Rows written to committed Parquet files.", s.rows_written);
    metric("duplicates_dropped_total", "counter", "Events dropped as duplicate deliveries.", s.duplicates_dropped);
    metric("quarantined_total", "counter", "Events quarantined with a reason.", s.quarantined);
    metric("files_total", "counter", "Parquet files committed.", s.files);
    metric("bytes_total", "counter", "Parquet bytes committed.", s.bytes);
    metric("commits_total", "counter", "Commits written.", s.commits);
    metric("open_partitions", "gauge", "Partition buffers open.", gauges.open_partitions.load(Relaxed));
    metric("buffered_bytes", "gauge", "Memory held by buffered rows.", gauges.buffered_bytes.load(Relaxed));
    metric(
        "lag",
        "gauge",
        "How far behind the source: events not yet read (log), ms behind latest (Kinesis), visible messages (SQS).",
        gauges.lag.load(Relaxed),
    );
    if let Some(leases) = gauges.leases.get() {
        // As the lease coordinator publishes them, not as the run last looked: a run waiting
        // on its source still shows a lease the coordinator gave up.
        metric("shards_held", "gauge", "Shards this worker holds a lease on (--leases).", leases.held.load(Relaxed));
        metric("lease_takes_total", "counter", "Leases taken that were free (released, never taken) or expired.", leases.takes.load(Relaxed));
        metric("lease_steals_total", "counter", "Leases taken from a live worker to balance.", leases.steals.load(Relaxed));
        metric("lease_lost_total", "counter", "Leases lost to another worker.", leases.lost.load(Relaxed));
        metric("lease_handoffs_total", "counter", "Leases released for others to take (shutdown).", leases.releases.load(Relaxed));
        metric("lease_store_writes_total", "counter", "Conditional writes to the lease store.", leases.writes.load(Relaxed));
        metric("lease_store_scans_total", "counter", "Scans of the lease store.", leases.scans.load(Relaxed));
    }
    let lags = gauges.shard_lags.lock().expect("shard lags").clone();
    if !lags.is_empty() {
        out.push_str("# HELP kappa_consumer_shard_lag Lag of each shard this consumer reads: events not yet read (log), ms behind latest (Kinesis).\n");
        out.push_str("# TYPE kappa_consumer_shard_lag gauge\n");
        for (shard, lag) in lags {
            // Shard ids are digits, letters, '-' and '_': nothing to escape in a label.
            out.push_str(&format!("kappa_consumer_shard_lag{{shard=\"{shard}\"}} {lag}\n"));
        }
    }
    out
}

/// Binds now (so a taken port fails at start), then serves in the background.
pub async fn serve(addr: SocketAddr, stats: Arc<Stats>, gauges: Arc<Gauges>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    // The address bound, not the one asked for: with port 0 the system chose the port.
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "serving Prometheus metrics at http://{bound}/metrics");
    tokio::spawn(async move {
        use tokio_stream::StreamExt as _;
        // Connections as a stream: one that fails to be accepted (a peer gone before the
        // accept, too many open files for a moment) is skipped, and the server goes on.
        let mut connections = tokio_stream::wrappers::TcpListenerStream::new(listener).filter_map(Result::ok);
        while let Some(mut socket) = connections.next().await {
            let (stats, gauges) = (stats.clone(), gauges.clone());
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let read = socket.read(&mut request).await.unwrap_or(0);
                let path = std::str::from_utf8(&request[..read]).ok().and_then(|r| r.split_whitespace().nth(1)).unwrap_or("/").to_string();
                let (status, kind, body) = match path.as_str() {
                    "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
                    "/readyz" => match gauges.readiness() {
                        Ok(()) => ("200 OK", "text/plain", "ready\n".to_string()),
                        Err(why) => ("503 Service Unavailable", "text/plain", format!("not ready: {why}\n")),
                    },
                    _ => ("200 OK", "text/plain; version=0.0.4", render(&stats, &gauges)),
                };
                let response = format!("HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(())
}
