//! Files stored concurrently, bounded by count and by bytes in flight: a consumer's commit and
//! a compaction pass store their files through this, and both wait for every put to end (and
//! for the files to be durable, see [`Puts::durable_later`]) before the commit that names them.
//!
//! Why concurrent: a local put waits for its fsyncs and an S3 put for its round trip. One at a
//! time, a commit of 5,282 hour files to S3 paid 5,282 round trips, and a compaction of 6,342
//! hour partitions waited ~5 ms on each merged file.

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::task::JoinSet;

use crate::settings::PutLimit;
use kappa_common::store::StoreError;
use kappa_table::{Table, TableError};

/// Puts in flight, run on `runtime`; the caller's thread waits for them.
pub(crate) struct Puts<'a> {
    runtime: &'a Handle,
    limit: PutLimit,
    /// Each put's result: the bytes it stored, the path asked for and the path it went to.
    running: JoinSet<Result<(usize, String, String), TableError>>,
    /// Files stored under another name than asked (see [`Table::put_new_object`]): path asked
    /// for → path stored.
    renamed: std::collections::HashMap<String, String>,
    /// Bytes of the files being stored.
    in_flight: usize,
    /// Puts left to be made durable by the caller, all at once (see [`Puts::durable_later`]).
    unsynced: bool,
}

impl<'a> Puts<'a> {
    pub(crate) fn new(runtime: &'a Handle, limit: PutLimit) -> Puts<'a> {
        Puts { runtime, limit, running: JoinSet::new(), renamed: Default::default(), in_flight: 0, unsynced: false }
    }

    /// Puts whose files the caller makes durable together before it depends on them
    /// ([`Table::sync_objects`], before the commit that names them): on a local lake one
    /// `syncfs` then replaces two fsyncs per file. They are a commit's data files: each is
    /// created only if its name is free (see [`Table::put_new_object`]), and one that had to
    /// take another name says so through [`Puts::stored_path`].
    pub(crate) fn durable_later(mut self) -> Puts<'a> {
        self.unsynced = true;
        self
    }

    /// Starts storing `data` at `path` (relative to the table's data prefix, as
    /// [`Table::put_object`] takes it). It first waits while another put would pass the limit's
    /// files or bytes. A file larger than the byte limit is stored alone, and this returns only
    /// once it is stored: its caller (which may be building the next one) holds one at a time.
    /// An error is the first failed put's, this one's or an earlier one's.
    pub(crate) fn store(&mut self, table: &Table, path: String, data: Bytes) -> Result<(), TableError> {
        let size = data.len();
        while !self.running.is_empty() && (self.running.len() >= self.limit.files || self.in_flight + size > self.limit.bytes) {
            self.next()?;
        }
        let table = table.clone();
        self.in_flight += size;
        let unsynced = self.unsynced;
        let put = async move {
            let stored = match unsynced {
                true => table.put_new_object(&path, data).await,
                false => table.put_object(&path, data).await.map(|()| path.clone()),
            };
            stored.map(|stored| (size, path, stored))
        };
        self.running.spawn_on(put, self.runtime);
        while self.in_flight > self.limit.bytes {
            self.next()?;
        }
        Ok(())
    }

    /// The path a file asked to be stored at `path` went to (see [`Table::put_new_object`]):
    /// `path` itself, unless other bytes were there. Known once its put ended.
    pub(crate) fn stored_path(&self, path: &str) -> Option<&str> {
        self.renamed.get(path).map(String::as_str)
    }

    /// The runtime the puts run on.
    pub(crate) fn runtime(&self) -> &'a Handle {
        self.runtime
    }

    /// Waits for every put to end; the first error, if one failed.
    pub(crate) fn wait_all(&mut self) -> Result<(), TableError> {
        while !self.running.is_empty() {
            self.next()?;
        }
        Ok(())
    }

    /// Waits for one put to end.
    fn next(&mut self) -> Result<(), TableError> {
        match self.runtime.block_on(self.running.join_next()) {
            Some(Ok(stored)) => {
                let (size, asked, stored) = stored?;
                self.in_flight -= size;
                if stored != asked {
                    self.renamed.insert(asked, stored);
                }
            }
            Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only a runtime shutting down cancels a put.
            Some(Err(e)) => {
                return Err(StoreError::Remote { path: "a file of this commit".to_string(), message: format!("its put was cancelled: {e}") }.into());
            }
            None => {}
        }
        Ok(())
    }
}

impl Drop for Puts<'_> {
    /// A commit or a pass that fails returns once its other puts have ended: dropped, a local
    /// put would still land after the return (its write runs on a blocking thread), and an S3
    /// upload would be cut without its abort. Their files are in no commit; the next start
    /// (a consumer's) or vacuum (a compaction's) deletes them.
    fn drop(&mut self) {
        while !self.running.is_empty() {
            let _ = self.runtime.block_on(self.running.join_next());
        }
    }
}
