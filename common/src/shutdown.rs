//! Graceful shutdown, one path for every binary.
//!
//! A long run (the producer sending a file, the consumer following a log, a replay) is stopped
//! by SIGINT (Ctrl-C) or SIGTERM (systemd, Kubernetes, `kill`). Nothing may be lost or
//! half-done when it stops, and nothing needs to be: every step below is safe to cut short.
//!
//! 1. **The signal only raises a flag.** [`Shutdown::listen`] turns the first SIGINT/SIGTERM
//!    into [`Shutdown::request`]; nothing is torn down from the signal handler. Work loops
//!    look at the flag between units of work (a chunk of events, a batch of rows), so a unit
//!    is never half processed, and waits (pacing, polling) end early through
//!    [`Shutdown::unless_requested`].
//! 2. **Stop reading.** The producer stops reading its inputs; the consumer and replay stop
//!    their source. What was read ahead but not handed over is dropped: it lies after the
//!    last committed position and is read again next time.
//! 3. **Flush.** What was read is written: the producer sends its partial batches, the
//!    consumer writes every open buffer as Parquet.
//! 4. **Commit.** The consumer commits the files with the positions they cover, in one
//!    atomic step; a replay leaves its incomplete generation unswitched.
//! 5. **Acknowledge.** Only now, with the commit durable, are sources told: SQS messages are
//!    deleted. A crash between 4 and 5 redelivers messages that the commit already covers;
//!    they are recognised and dropped.
//! 6. **Exit** with the summary, status 0 (the producer: 130, as its input was cut short).
//!
//! A second signal exits at once with status 130. That is safe too: a process killed at any
//! point loses nothing, since the next run resumes from the last commit.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Cheap to clone; every clone sees the same request.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl Shutdown {
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    pub fn request(&self) {
        self.requested.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Resolves once shutdown is requested.
    pub async fn requested(&self) {
        let notified = self.notify.notified();
        if self.is_requested() {
            return;
        }
        notified.await;
    }

    /// Runs `future` to its end unless shutdown is requested first (or was already).
    pub async fn unless_requested<F: Future>(&self, future: F) -> Option<F::Output> {
        if self.is_requested() {
            return None;
        }
        tokio::select! {
            output = future => Some(output),
            _ = self.requested() => None,
        }
    }

    /// Listens for SIGINT and SIGTERM on `runtime`: the first requests shutdown and logs
    /// `what_happens` (what this program does now); a second exits at once with status 130.
    pub fn listen(&self, runtime: &tokio::runtime::Handle, what_happens: &'static str) {
        let shutdown = self.clone();
        runtime.spawn(async move {
            let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; SIGINT still stops gracefully");
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).expect("SIGINT handler")
                }
            };
            for signals in 0.. {
                let name = tokio::select! {
                    _ = tokio::signal::ctrl_c() => "SIGINT",
                    _ = terminate.recv() => "SIGTERM",
                };
                if signals > 0 {
                    eprintln!("{name} again: exiting at once (the next run resumes from the last commit)");
                    std::process::exit(130);
                }
                tracing::warn!("{name}: {what_happens} (signal again to exit at once)");
                shutdown.request();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_request_ends_waits_early_and_is_seen_by_every_clone() {
        let shutdown = Shutdown::default();
        let clone = shutdown.clone();
        let waiting = tokio::spawn(async move { clone.unless_requested(tokio::time::sleep(std::time::Duration::from_secs(3600))).await });
        tokio::task::yield_now().await;
        shutdown.request();
        assert_eq!(waiting.await.unwrap(), None, "the hour-long wait ended at the request");
        assert!(shutdown.clone().is_requested());
        assert_eq!(shutdown.unless_requested(async { 7 }).await, None, "nothing starts after a request");
        shutdown.requested().await;
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_request_the_work_runs_to_its_end() {
        let shutdown = Shutdown::default();
        assert_eq!(shutdown.unless_requested(async { 7 }).await, Some(7));
        assert!(!shutdown.is_requested());
    }
}
