//! The reject file: every row the producer could not send, with where it came from and why.
//!
//! NDJSON, one object per rejected row: `{"input", "line", "row", "reason", "raw"}`. `raw` is
//! the row as read (CSV cells re-joined; invalid UTF-8 replaced by U+FFFD and flagged in
//! `reason`), so a fixed row can be re-sent. The file is created on the first reject only.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Reject {
    pub input: String,
    pub line: u64,
    pub row: u64,
    pub reason: String,
    pub raw: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RejectError {
    #[error("cannot write the reject file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("too many rejected rows: more than --max-errors {max}; the rejects so far are in {path}")]
    TooMany { max: u64, path: PathBuf },
    #[error(
        "{rejected} of the first {read} rows were rejected, more than --max-reject-ratio {ratio} allows (first reason: {first_reason}); \
         stopped. The rejects are in {path}. Correct the settings (--event-time, --event-time-format, --delimiter, --schema) or the \
         input and send it again (rows already sent are recognised by the consumer), or raise --max-reject-ratio (1 turns the check off)"
    )]
    TooManyShare { rejected: u64, read: u64, ratio: f64, first_reason: String, path: PathBuf },
}

/// A ratio is not judged on fewer rows than this, but at the end of the input.
const MIN_SAMPLE: u64 = 100;

/// Stops a run whose first rows are mostly rejected (exit 3), as the consumer's
/// --max-quarantine-ratio does: settings that do not fit the input (an event-time format for
/// another column, the wrong delimiter) must not end in a reject file full of good rows and an
/// exit status of 0. Judged once [`MIN_SAMPLE`] rows were read, over the first `window` rows,
/// and on a shorter input at its end.
#[derive(Debug)]
pub struct RejectRatio {
    ratio: f64,
    window: u64,
    read: u64,
    rejected: u64,
    first_reason: Option<String>,
    /// The window is full and was found within the limit.
    passed: bool,
}

impl RejectRatio {
    pub fn new(ratio: f64, window: u64) -> RejectRatio {
        RejectRatio { ratio, window, read: 0, rejected: 0, first_reason: None, passed: ratio >= 1.0 }
    }

    /// Counts a row (`rejected`: the reason it was rejected for), and judges once enough were.
    pub fn row(&mut self, rejected: Option<&str>, rejects: &RejectWriter) -> Result<(), RejectError> {
        if self.passed {
            return Ok(());
        }
        self.read += 1;
        if let Some(reason) = rejected {
            self.rejected += 1;
            self.first_reason.get_or_insert_with(|| reason.to_string());
        }
        if self.read < MIN_SAMPLE.min(self.window) {
            return Ok(());
        }
        self.judge(rejects)?;
        self.passed = self.read >= self.window;
        Ok(())
    }

    /// At the end of the input: a run shorter than the sample is judged on all it read.
    pub fn finish(&mut self, rejects: &RejectWriter) -> Result<(), RejectError> {
        match self.passed || self.read == 0 {
            true => Ok(()),
            false => self.judge(rejects),
        }
    }

    fn judge(&self, rejects: &RejectWriter) -> Result<(), RejectError> {
        if self.rejected as f64 <= self.ratio * self.read as f64 {
            return Ok(());
        }
        rejects.flush()?;
        Err(RejectError::TooManyShare {
            rejected: self.rejected,
            read: self.read,
            ratio: self.ratio,
            first_reason: self.first_reason.clone().unwrap_or_default(),
            path: rejects.path().to_path_buf(),
        })
    }
}

/// Shared by the reading thread (rows that do not parse) and the sinks (events that cannot be
/// delivered), hence the mutex; it is taken once per reject, which is rare by nature.
pub struct RejectWriter {
    path: PathBuf,
    max_errors: Option<u64>,
    inner: Mutex<Inner>,
}

struct Inner {
    file: Option<BufWriter<File>>,
    written: u64,
}

impl RejectWriter {
    pub fn new(path: PathBuf, max_errors: Option<u64>) -> RejectWriter {
        RejectWriter { path, max_errors, inner: Mutex::new(Inner { file: None, written: 0 }) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn count(&self) -> u64 {
        self.inner.lock().expect("rejects lock").written
    }

    /// Appends a reject; the caller counts it (as a rejected row, or an undelivered event).
    pub fn write(&self, reject: &Reject) -> Result<(), RejectError> {
        let mut inner = self.inner.lock().expect("rejects lock");
        inner.write(&self.path, reject)?;
        if let Some(max) = self.max_errors
            && inner.written > max
        {
            inner.flush(&self.path)?;
            return Err(RejectError::TooMany { max, path: self.path.clone() });
        }
        Ok(())
    }

    /// Makes the rejects durable; called at the end of a run and before aborting.
    pub fn flush(&self) -> Result<(), RejectError> {
        self.inner.lock().expect("rejects lock").flush(&self.path)
    }
}

impl Inner {
    fn write(&mut self, path: &Path, reject: &Reject) -> Result<(), RejectError> {
        let io = |source| RejectError::Io { path: path.to_path_buf(), source };
        if self.file.is_none() {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let file = File::options().create(true).append(true).open(path).map_err(io)?;
            self.file = Some(BufWriter::new(file));
        }
        let file = self.file.as_mut().expect("opened above");
        let mut line = serde_json::to_vec(reject).expect("reject serializes");
        line.push(b'\n');
        file.write_all(&line).map_err(io)?;
        self.written += 1;
        tracing::debug!(input = %reject.input, line = reject.line, reason = %reject.reason, "row rejected");
        Ok(())
    }

    fn flush(&mut self, path: &Path) -> Result<(), RejectError> {
        if let Some(file) = self.file.as_mut() {
            let io = |source| RejectError::Io { path: path.to_path_buf(), source };
            file.flush().map_err(io)?;
            file.get_ref().sync_data().map_err(io)?;
        }
        Ok(())
    }
}
