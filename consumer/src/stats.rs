//! Counters for the status line and the end-of-run summary.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use serde::Serialize;

#[derive(Debug)]
pub struct Stats {
    started: Instant,
    read: AtomicU64,
    written: AtomicU64,
    skipped: AtomicU64,
    duplicates: AtomicU64,
    quarantined: AtomicU64,
    files: AtomicU64,
    bytes: AtomicU64,
    commits: AtomicU64,
    spills: AtomicU64,
    spilled_bytes: AtomicU64,
    spilled_rows: AtomicU64,
    messages_received: AtomicU64,
    messages_deleted: AtomicU64,
    redeliveries_skipped: AtomicU64,
    objects_read: AtomicU64,
    log_skipped: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            read: AtomicU64::new(0),
            written: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            quarantined: AtomicU64::new(0),
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            spills: AtomicU64::new(0),
            spilled_bytes: AtomicU64::new(0),
            spilled_rows: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            messages_deleted: AtomicU64::new(0),
            redeliveries_skipped: AtomicU64::new(0),
            objects_read: AtomicU64::new(0),
            log_skipped: AtomicU64::new(0),
        }
    }
}

/// The end-of-run summary (also `--summary-json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub events_read: u64,
    pub rows_written: u64,
    pub already_committed_skipped: u64,
    pub duplicates_dropped: u64,
    pub quarantined: u64,
    pub files: u64,
    pub bytes: u64,
    pub commits: u64,
    /// Times memory ran short and buffers moved to the scratch directory, the bytes moved, and
    /// the rows (a row moves at most once: what was spilled stays there until its file is
    /// written).
    pub spills: u64,
    pub spilled_bytes: u64,
    pub spilled_rows: u64,
    /// SQS: messages received (redeliveries included), deleted after their commit, and
    /// redeliveries of already committed messages deleted without ingesting them again.
    pub messages_received: u64,
    pub messages_deleted: u64,
    pub redeliveries_skipped: u64,
    /// sqs+s3: objects read.
    pub objects_read: u64,
    /// log, with --on-log-gap skip: positions the log no longer held (deleted, or rolled back).
    pub log_positions_skipped: u64,
    pub elapsed_seconds: f64,
    pub rows_per_second: f64,
}

impl Stats {
    pub fn add_read(&self, n: u64) {
        self.read.fetch_add(n, Relaxed);
    }
    pub fn add_skipped(&self, n: u64) {
        self.skipped.fetch_add(n, Relaxed);
    }
    pub fn add_duplicates(&self, n: u64) {
        self.duplicates.fetch_add(n, Relaxed);
    }
    pub fn add_quarantined(&self, n: u64) {
        self.quarantined.fetch_add(n, Relaxed);
    }
    pub fn add_spill(&self, bytes: u64, rows: u64) {
        self.spills.fetch_add(1, Relaxed);
        self.spilled_bytes.fetch_add(bytes, Relaxed);
        self.spilled_rows.fetch_add(rows, Relaxed);
    }
    pub fn add_commit(&self, files: u64, rows: u64, bytes: u64) {
        self.commits.fetch_add(1, Relaxed);
        self.files.fetch_add(files, Relaxed);
        self.written.fetch_add(rows, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }
    pub fn add_messages_received(&self, n: u64) {
        self.messages_received.fetch_add(n, Relaxed);
    }
    pub fn add_messages_deleted(&self, n: u64) {
        self.messages_deleted.fetch_add(n, Relaxed);
    }
    pub fn add_redeliveries_skipped(&self, n: u64) {
        self.redeliveries_skipped.fetch_add(n, Relaxed);
    }
    pub fn add_log_skipped(&self, n: u64) {
        self.log_skipped.fetch_add(n, Relaxed);
    }
    pub fn add_objects_read(&self, n: u64) {
        self.objects_read.fetch_add(n, Relaxed);
    }
    pub fn read(&self) -> u64 {
        self.read.load(Relaxed)
    }
    pub fn written(&self) -> u64 {
        self.written.load(Relaxed)
    }

    pub fn summary(&self) -> Summary {
        let elapsed = self.started.elapsed().as_secs_f64();
        let read = self.read.load(Relaxed);
        Summary {
            events_read: read,
            rows_written: self.written.load(Relaxed),
            already_committed_skipped: self.skipped.load(Relaxed),
            duplicates_dropped: self.duplicates.load(Relaxed),
            quarantined: self.quarantined.load(Relaxed),
            files: self.files.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            commits: self.commits.load(Relaxed),
            spills: self.spills.load(Relaxed),
            spilled_bytes: self.spilled_bytes.load(Relaxed),
            spilled_rows: self.spilled_rows.load(Relaxed),
            messages_received: self.messages_received.load(Relaxed),
            messages_deleted: self.messages_deleted.load(Relaxed),
            redeliveries_skipped: self.redeliveries_skipped.load(Relaxed),
            objects_read: self.objects_read.load(Relaxed),
            log_positions_skipped: self.log_skipped.load(Relaxed),
            elapsed_seconds: elapsed,
            rows_per_second: if elapsed > 0.0 { read as f64 / elapsed } else { 0.0 },
        }
    }
}

impl Summary {
    pub fn render(&self, table: &str, prefix: &str) -> String {
        let mut text = format!(
            "summary: table {table} (read it at {prefix})\n  events read        {}\n  rows written       {}\n  \
             duplicates dropped {}\n  already committed  {}\n  quarantined        {}\n  files              {}\n  \
             bytes              {} ({:.1} MiB)\n  commits            {}\n  elapsed            {:.2} s\n  \
             throughput         {:.0} events/s\n",
            self.events_read,
            self.rows_written,
            self.duplicates_dropped,
            self.already_committed_skipped,
            self.quarantined,
            self.files,
            self.bytes,
            self.bytes as f64 / 1048576.0,
            self.commits,
            self.elapsed_seconds,
            self.rows_per_second
        );
        if self.spills > 0 {
            text.push_str(&format!(
                "  spilled            {} times, {:.1} MiB ({} rows) to the scratch directory (--max-memory)\n",
                self.spills,
                self.spilled_bytes as f64 / 1048576.0,
                self.spilled_rows
            ));
        }
        if self.messages_received > 0 {
            text.push_str(&format!(
                "  SQS messages       {} received, {} deleted after commit, {} committed redeliveries deleted\n",
                self.messages_received, self.messages_deleted, self.redeliveries_skipped
            ));
        }
        if self.log_positions_skipped > 0 {
            text.push_str(&format!("  log gap skipped    {} positions (--on-log-gap skip)\n", self.log_positions_skipped));
        }
        if self.objects_read > 0 {
            text.push_str(&format!("  S3 objects read    {}\n", self.objects_read));
        }
        text
    }
}
