//! `--metrics-addr`: the consumer's counters in the Prometheus text format, served over plain
//! HTTP on every path (`curl http://ADDR/metrics`). A handful of counters and gauges do not
//! justify a metrics framework; the format is three lines per metric.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
    /// With `--leases`: shards this worker holds, and the lease counters.
    pub shards_held: AtomicU64,
    /// Lag per shard being read, as of the last status line.
    pub shard_lags: std::sync::Mutex<Vec<(String, u64)>>,
    pub leases: std::sync::OnceLock<Arc<kappa_leases::LeaseStats>>,
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
        metric("shards_held", "gauge", "Shards this worker holds a lease on (--leases).", gauges.shards_held.load(Relaxed));
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
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = render(&stats, &gauges);
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let _ = socket.read(&mut request).await;
                let response =
                    format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(())
}
