//! Counters for progress lines and the end-of-run summary.
//!
//! Updated from the reading thread and the sending task at once, hence atomics; the request
//! map is touched once per API call, which a mutex handles without notice.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug)]
pub struct Stats {
    started: Instant,
    rows_read: AtomicU64,
    events_sent: AtomicU64,
    bytes_sent: AtomicU64,
    rejected: AtomicU64,
    retries: AtomicU64,
    throttles: AtomicU64,
    undelivered: AtomicU64,
    billed_requests: AtomicU64,
    requests: Mutex<BTreeMap<String, u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            rows_read: AtomicU64::new(0),
            events_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
            undelivered: AtomicU64::new(0),
            billed_requests: AtomicU64::new(0),
            requests: Mutex::new(BTreeMap::new()),
        }
    }
}

/// The end-of-run summary; also written as JSON with `--summary-json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub sink: String,
    pub rows_read: u64,
    pub events_sent: u64,
    pub bytes_sent: u64,
    pub rejected: u64,
    /// Events that are not at the destination: those the sink gave up on (in the reject
    /// file), plus `unsent`. Always `rows_read = events_sent + rejected + undelivered`.
    pub undelivered: u64,
    /// Of `undelivered`: rows read but never handed to the destination, because the run
    /// stopped first (an error or an interrupt). Sending the same input again sends them;
    /// the consumer drops the rows already delivered by their identity.
    pub unsent: u64,
    pub retries: u64,
    pub throttles: u64,
    pub requests: BTreeMap<String, u64>,
    /// API requests per million events sent, at this run's settings: what a million rows cost.
    pub requests_per_million_events: Option<u64>,
    /// SQS bills each 64 KiB of a request's payload as one request: the billed count.
    pub billed_requests: Option<u64>,
    pub elapsed_seconds: f64,
    pub rows_per_second: f64,
    pub rejects_file: Option<String>,
}

impl Stats {
    pub fn add_rows_read(&self, n: u64) {
        self.rows_read.fetch_add(n, Relaxed);
    }
    pub fn add_sent(&self, events: u64, bytes: u64) {
        self.events_sent.fetch_add(events, Relaxed);
        self.bytes_sent.fetch_add(bytes, Relaxed);
    }
    pub fn add_rejected(&self, n: u64) {
        self.rejected.fetch_add(n, Relaxed);
    }
    pub fn add_retries(&self, n: u64) {
        self.retries.fetch_add(n, Relaxed);
    }
    pub fn add_throttles(&self, n: u64) {
        self.throttles.fetch_add(n, Relaxed);
    }
    pub fn add_undelivered(&self, n: u64) {
        self.undelivered.fetch_add(n, Relaxed);
    }
    /// The count of events the destination holds, measured there (the embedded log).
    pub fn set_events_sent(&self, events: u64) {
        self.events_sent.store(events, Relaxed);
    }
    pub fn add_billed_requests(&self, n: u64) {
        self.billed_requests.fetch_add(n, Relaxed);
    }
    pub fn add_request(&self, kind: &str) {
        *self.requests.lock().expect("stats lock").entry(kind.to_string()).or_default() += 1;
    }
    pub fn events_sent(&self) -> u64 {
        self.events_sent.load(Relaxed)
    }
    pub fn rows_read(&self) -> u64 {
        self.rows_read.load(Relaxed)
    }

    pub fn summary(&self, sink: &str, rejects_file: Option<String>) -> Summary {
        let elapsed = self.started.elapsed().as_secs_f64();
        let rows_read = self.rows_read.load(Relaxed);
        let events_sent = self.events_sent.load(Relaxed);
        let rejected = self.rejected.load(Relaxed);
        let given_up = self.undelivered.load(Relaxed);
        let unsent = rows_read.saturating_sub(events_sent + rejected + given_up);
        let requests = self.requests.lock().expect("stats lock").clone();
        let api_requests: u64 = requests.iter().filter(|(kind, _)| !kind.starts_with("log-")).map(|(_, n)| n).sum();
        let billed = self.billed_requests.load(Relaxed);
        Summary {
            sink: sink.to_string(),
            rows_read,
            events_sent,
            bytes_sent: self.bytes_sent.load(Relaxed),
            rejected,
            undelivered: given_up + unsent,
            unsent,
            retries: self.retries.load(Relaxed),
            throttles: self.throttles.load(Relaxed),
            requests,
            requests_per_million_events: (api_requests > 0 && events_sent > 0).then(|| api_requests * 1_000_000 / events_sent),
            billed_requests: (billed > 0).then_some(billed),
            elapsed_seconds: elapsed,
            rows_per_second: if elapsed > 0.0 { rows_read as f64 / elapsed } else { 0.0 },
            rejects_file,
        }
    }
}

impl Summary {
    /// The human-readable summary printed at the end of every run.
    pub fn render(&self) -> String {
        let requests: Vec<String> = self.requests.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut text = format!(
            "summary: sink {sink}\n  rows read      {rows}\n  events sent    {sent}\n  bytes sent     {bytes} ({mib:.1} MiB)\n  \
             rejected rows  {rejected}\n  undelivered    {undelivered}\n  API requests   {requests}\n  retries        {retries} \
             (throttled {throttles})\n  elapsed        {elapsed:.2} s\n  throughput     {rate:.0} rows/s\n",
            sink = self.sink,
            rows = self.rows_read,
            sent = self.events_sent,
            bytes = self.bytes_sent,
            mib = self.bytes_sent as f64 / (1024.0 * 1024.0),
            rejected = self.rejected,
            undelivered = self.undelivered,
            requests = if requests.is_empty() { "none".to_string() } else { requests.join(" ") },
            retries = self.retries,
            throttles = self.throttles,
            elapsed = self.elapsed_seconds,
            rate = self.rows_per_second,
        );
        if self.unsent > 0 {
            text.push_str(&format!(
                "  of undelivered {} never sent: the run stopped first (send the input again; rows already delivered are dropped by identity)\n",
                self.unsent
            ));
        }
        if let Some(per_million) = self.requests_per_million_events {
            let billed = match (self.billed_requests, self.events_sent) {
                (Some(billed), sent) if sent > 0 => format!(", billed as {} (SQS: one per 64 KiB of payload)", billed * 1_000_000 / sent),
                _ => String::new(),
            };
            text.push_str(&format!("  cost           {per_million} API requests per 1M events at these settings{billed}\n"));
        }
        if let Some(path) = &self.rejects_file {
            text.push_str(&format!("  rejects file   {path}\n"));
        }
        text
    }
}

/// Shows progress while a run goes on: a live bar on a terminal, a rate line every `interval`
/// in logs (CI, files, systemd), where a redrawn bar would be noise.
pub async fn report_progress(stats: std::sync::Arc<Stats>, interval: Duration, expected_rows: Option<u64>) {
    if std::io::stderr().is_terminal() {
        let bar = match expected_rows {
            Some(total) => indicatif::ProgressBar::new(total)
                .with_style(indicatif::ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} rows  {per_sec}  eta {eta}").expect("valid template")),
            None => indicatif::ProgressBar::new_spinner()
                .with_style(indicatif::ProgressStyle::with_template("{spinner} {pos} rows sent  {per_sec}  {elapsed}").expect("valid template")),
        };
        loop {
            bar.set_position(stats.events_sent());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    } else {
        let mut last = (Instant::now(), 0u64);
        loop {
            tokio::time::sleep(interval).await;
            let sent = stats.events_sent();
            let rate = (sent - last.1) as f64 / last.0.elapsed().as_secs_f64();
            tracing::info!(rows_read = stats.rows_read(), events_sent = sent, rate = format!("{rate:.0} rows/s"), "progress");
            last = (Instant::now(), sent);
        }
    }
}
