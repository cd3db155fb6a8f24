//! The embedded log: events appended to the shard their key hashes to.
//!
//! Appends are buffered by the log writer; `flush` hands them to the OS (and fsyncs per the
//! log's policy), `finish` fsyncs everything, so a producer that exits 0 has made every event
//! durable.

use std::path::Path;

use kappa_common::log::{Log, LogWriter};

use super::{SinkContext, SinkError, SinkOptions};
use crate::input::Event;

pub struct LogSink {
    writer: LogWriter,
    path: String,
    context: SinkContext,
    /// Events appended since the last flush, counted as sent once handed to the OS.
    pending: u64,
    pending_bytes: u64,
}

impl LogSink {
    pub fn open(path: &Path, options: &SinkOptions, context: SinkContext) -> Result<LogSink, SinkError> {
        let display = path.display().to_string();
        let err = |source| SinkError::Log { path: display.clone(), source };
        let log = Log::open_or_create(path, options.create.shards).map_err(err)?;
        let writer = log.writers(&options.log).map_err(err)?;
        Ok(LogSink { writer, path: display, context, pending: 0, pending_bytes: 0 })
    }

    pub fn push(&mut self, event: Event) -> Result<(), SinkError> {
        let now = chrono::Utc::now().timestamp_millis();
        self.writer
            .append(event.key.as_bytes(), &event.payload, now)
            .map_err(|source| SinkError::Log { path: self.path.clone(), source })?;
        self.pending += 1;
        self.pending_bytes += event.payload.len() as u64;
        if self.pending >= 4096 {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.writer.flush().map_err(|source| SinkError::Log { path: self.path.clone(), source })?;
        self.context.stats.add_sent(self.pending, self.pending_bytes);
        self.context.stats.add_request("log-flush");
        self.pending = 0;
        self.pending_bytes = 0;
        Ok(())
    }

    pub fn finish(mut self) -> Result<(), SinkError> {
        self.flush()?;
        self.writer.close().map_err(|source| SinkError::Log { path: self.path.clone(), source })
    }
}
