//! The embedded log: events appended to the shard their key hashes to.
//!
//! Appends are buffered by the log writer; `flush` hands them to the OS (and fsyncs per the
//! log's policy), `finish` fsyncs everything, so a producer that exits 0 has made every event
//! durable. After a failed append (a full disk) the events sent are counted from the log
//! itself: the append may have reached the files in part, and the summary must say exactly
//! what the log holds.

use std::path::Path;

use kappa_common::log::{Log, LogWriter, MAX_KEY_LEN, MAX_PAYLOAD_LEN};
use kappa_common::shaped::Shape;

use super::{SinkContext, SinkError, SinkOptions};
use crate::input::Event;

pub struct LogSink {
    log: Log,
    /// Each shard's end when the run began: what the log holds beyond it is this run's.
    ends_at_open: Vec<u64>,
    writer: LogWriter,
    path: String,
    context: SinkContext,
    /// Events appended since the last flush, counted as sent once handed to the OS.
    pending: u64,
    pending_bytes: u64,
    now_ms: i64,
}

impl LogSink {
    pub fn open(path: &Path, options: &SinkOptions, context: SinkContext) -> Result<LogSink, SinkError> {
        let display = path.display().to_string();
        let err = |source| SinkError::Log { path: display.clone(), source };
        let log = match options.create.shards {
            Some(shards) => Log::open_or_create(path, shards),
            None if path.join("log.json").exists() => Log::open(path),
            None => Log::open_or_create(path, super::DEFAULT_SHARDS),
        }
        .map_err(err)?;
        let writer = log.writers(&options.log).map_err(err)?;
        // Taken after the writers recovered any torn tail, and while they hold every shard's lock.
        let ends_at_open = (0..log.shard_count()).map(|s| log.shard_end(s)).collect::<Result<_, _>>().map_err(err)?;
        Ok(LogSink { log, ends_at_open, writer, path: display, context, pending: 0, pending_bytes: 0, now_ms: 0 })
    }

    /// Stores `shape` in the log (durably): the events pushed from here on may be shaped events
    /// of it.
    pub fn use_shape(&mut self, shape: &Shape) -> Result<(), SinkError> {
        self.log.store_shape(shape).map_err(|source| SinkError::Log { path: self.path.clone(), source })
    }

    pub fn push(&mut self, mut event: Event) -> Result<(), SinkError> {
        // Arrival time to the millisecond; reading the clock per event would cost more than
        // the append itself.
        if self.pending.is_multiple_of(64) {
            self.now_ms = chrono::Utc::now().timestamp_millis();
        }
        // The shard is chosen by the key either way; an identity key is also inside the
        // payload, so the record stores an empty key (about 10% fewer bytes to write).
        if event.payload.len() > MAX_PAYLOAD_LEN {
            let reason = format!("event of {} bytes exceeds the embedded log's record limit of {MAX_PAYLOAD_LEN} bytes", event.payload.len());
            // The rejects file holds events as objects.
            if let Ok(object) = self.log.event_object(&event.payload) {
                event.payload = object.into_owned();
            }
            return self.context.undeliverable(&self.path, &event, reason);
        }
        if event.key.len() > MAX_KEY_LEN {
            event.key = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(event.key.as_bytes()));
        }
        let shard = self.writer.shard_for_key(event.key.as_bytes());
        let stored_key: &[u8] = if event.key_is_identity { b"" } else { event.key.as_bytes() };
        self.writer
            .shard(shard)
            .expect("shard_for_key is in range")
            .append(stored_key, &event.payload, self.now_ms)
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
        let flushed = self.flush();
        let LogSink { log, ends_at_open, writer, path, context, .. } = self;
        let closed = match flushed {
            Ok(()) => writer.close().map_err(|source| SinkError::Log { path: path.clone(), source }),
            Err(e) => {
                drop(writer);
                Err(e)
            }
        };
        // After a failed write the count handed to the writers says nothing of what reached the
        // files: with the writers gone, a whole record in the files is in the log, a torn one
        // is not. (After a clean close the count is exact, and the scan would cost ~0.1 s.)
        if closed.is_err() {
            let held: Result<u64, _> = (0..log.shard_count()).map(|s| log.shard_end(s)).sum();
            match held {
                Ok(held) => context.stats.set_events_sent(held.saturating_sub(ends_at_open.iter().sum::<u64>())),
                Err(source) => tracing::error!(error = %source, "cannot count what the log holds; events sent is what was handed to it"),
            }
        }
        closed
    }
}
