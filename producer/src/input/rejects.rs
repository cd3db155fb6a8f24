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
