//! Progress of a replay: a bar with ETA on a terminal (the log's size is known when the
//! replay starts), periodic rate lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: Option<u64>,
    interval: Duration,
    last_line: Instant,
    started: Instant,
}

impl Progress {
    pub(crate) fn new(total: Option<u64>, interval: Duration) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| match total {
            Some(total) => indicatif::ProgressBar::new(total)
                .with_style(indicatif::ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} events  {per_sec}  eta {eta}").expect("valid template")),
            None => indicatif::ProgressBar::new_spinner()
                .with_style(indicatif::ProgressStyle::with_template("{spinner} {pos} events replayed  {per_sec}  {elapsed}").expect("valid template")),
        });
        Progress { bar, total, interval, last_line: Instant::now(), started: Instant::now() }
    }

    pub(crate) fn set(&mut self, read: u64, written: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(read);
        } else if self.last_line.elapsed() >= self.interval {
            let rate = read as f64 / self.started.elapsed().as_secs_f64();
            let eta = self.total.filter(|_| rate > 0.0).map(|t| format!("{:.0}s", t.saturating_sub(read) as f64 / rate)).unwrap_or_else(|| "?".into());
            tracing::info!(
                events_read = read,
                total = self.total.map_or("?".to_string(), |t| t.to_string()),
                rows_written = written,
                rate = format!("{rate:.0}/s"),
                eta,
                "replaying"
            );
            self.last_line = Instant::now();
        }
    }

    pub(crate) fn finish(&mut self, read: u64, _written: u64) {
        if let Some(bar) = self.bar.take() {
            bar.set_position(read);
            bar.finish_and_clear();
        }
    }
}
