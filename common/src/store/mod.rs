//! Object storage for the lake: one minimal interface, a local directory or S3 behind it.
//!
//! The commit protocol needs exactly these operations: write an object (replacing it), create
//! one only if absent (the commit record, and a commit's data files: `O_EXCL` semantics
//! locally, a conditional `If-None-Match: *` write on S3), read, list a prefix, delete. Paths are `/`-separated and relative to the store's root.

mod local;
mod s3;

use std::path::PathBuf;

use bytes::Bytes;

pub use self::local::LocalStore;
pub use self::s3::S3Store;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{path} already exists")]
    AlreadyExists { path: String },
    #[error("{path} not found")]
    NotFound { path: String },
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid object path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("object store request for {path} failed: {message}")]
    Remote { path: String, message: String },
    /// A failure that trying again may mend, given up on after `tries` tries: the service or
    /// the network is at fault, not the lake or the settings.
    #[error(
        "object store request for {path} failed {tries} times over {seconds:.0} s, each time for a passing reason ({message}): nothing was \
         lost, and a restart is safe; if it keeps failing, check the network and the service's health"
    )]
    Transient { path: String, message: String, tries: u32, seconds: f64 },
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub path: String,
    pub size: u64,
    /// When the object was last written (ms since the epoch), as the store says.
    pub modified_ms: i64,
}

impl ObjectMeta {
    /// How long ago the object was written (zero for a time in the future).
    pub fn age(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::try_from(chrono::Utc::now().timestamp_millis() - self.modified_ms).unwrap_or(0))
    }
}

/// A lake's storage: a local directory, or an S3 bucket and prefix.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Store {
    Local(LocalStore),
    S3(S3Store),
}

impl Store {
    /// Writes `data` at `path`, replacing what is there, atomically (readers see the old or
    /// the new object, never a part) and durably once this returns.
    pub async fn put(&self, path: &str, data: Bytes) -> Result<(), StoreError> {
        check_path(path)?;
        match self {
            // Off the runtime's threads: the fsyncs block, and puts made together (a commit's
            // files) then overlap as S3's do.
            Store::Local(s) => {
                let (store, path) = (s.clone(), path.to_string());
                tokio::task::spawn_blocking(move || store.put(&path, &data)).await.unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
            }
            Store::S3(s) => s.put(path, data).await,
        }
    }

    /// Puts `path` without making it durable yet (local lakes; S3 puts are durable when they
    /// return): a batch of such puts is made durable at once by [`Store::sync_written`], which
    /// must come before anything that depends on them (the commit naming them).
    pub async fn put_unsynced(&self, path: &str, data: Bytes) -> Result<(), StoreError> {
        check_path(path)?;
        match self {
            Store::Local(s) => {
                let (store, path) = (s.clone(), path.to_string());
                tokio::task::spawn_blocking(move || store.put_unsynced(&path, &data))
                    .await
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
            }
            Store::S3(s) => s.put(path, data).await,
        }
    }

    /// Makes durable what [`Store::put_unsynced`] put.
    pub async fn sync_written(&self) -> Result<(), StoreError> {
        match self {
            Store::Local(s) => {
                let store = s.clone();
                tokio::task::spawn_blocking(move || store.sync_written()).await.unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
            }
            Store::S3(_) => Ok(()),
        }
    }

    /// Creates a commit's data file: [`Store::put_unsynced`], but only if nothing is at `path`
    /// ([`StoreError::AlreadyExists`] then, and the object there untouched). Names are functions
    /// of what a file holds, so a writer that lost its shard while paused may store the very
    /// name another writer has committed since: a plain put would replace the committed file
    /// with other bytes (another binary's, schema or codec) under the log's size and
    /// statistics.
    pub async fn put_new_unsynced(&self, path: &str, data: Bytes) -> Result<(), StoreError> {
        check_path(path)?;
        match self {
            Store::Local(s) => {
                let (store, path) = (s.clone(), path.to_string());
                tokio::task::spawn_blocking(move || store.put_new_unsynced(&path, &data))
                    .await
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
            }
            Store::S3(s) => s.put_new(path, data).await,
        }
    }

    /// Creates `path` with `data` only if nothing is there: exactly one of several racing
    /// writers succeeds, the others get [`StoreError::AlreadyExists`].
    pub async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<(), StoreError> {
        check_path(path)?;
        match self {
            Store::Local(s) => s.put_if_absent(path, &data),
            Store::S3(s) => s.put_if_absent(path, data).await,
        }
    }

    pub async fn get(&self, path: &str) -> Result<Bytes, StoreError> {
        check_path(path)?;
        match self {
            Store::Local(s) => s.get(path),
            Store::S3(s) => s.get(path).await,
        }
    }

    /// Every object under `prefix` (recursively), sorted by path.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        match self {
            Store::Local(s) => s.list(prefix),
            Store::S3(s) => s.list(prefix).await,
        }
    }

    /// Deletes `path`; deleting a missing object is not an error.
    pub async fn delete(&self, path: &str) -> Result<(), StoreError> {
        check_path(path)?;
        match self {
            Store::Local(s) => s.delete(path),
            Store::S3(s) => s.delete(path).await,
        }
    }

    /// Deletes temporary files that cut-off writes left under `prefix` (see
    /// [`LocalStore::remove_stale_temporary`]); S3 has none. Returns how many.
    pub async fn remove_stale_temporary(&self, prefix: &str) -> Result<usize, StoreError> {
        match self {
            Store::Local(s) => {
                let (store, prefix) = (s.clone(), prefix.to_string());
                tokio::task::spawn_blocking(move || store.remove_stale_temporary(&prefix))
                    .await
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
            }
            Store::S3(_) => Ok(0),
        }
    }

    /// Where the store is, for messages (`/data/lake`, `s3://bucket/prefix`).
    pub fn describe(&self) -> String {
        match self {
            Store::Local(s) => s.root().display().to_string(),
            Store::S3(s) => s.describe(),
        }
    }
}

/// Object paths are relative, `/`-separated, without `.`/`..` segments: the same names must
/// work on a file system and as S3 keys.
fn check_path(path: &str) -> Result<(), StoreError> {
    let invalid = |reason| Err(StoreError::InvalidPath { path: path.to_string(), reason });
    if path.is_empty() {
        return invalid("empty");
    }
    if path.starts_with('/') || path.ends_with('/') {
        return invalid("starts or ends with '/'");
    }
    if path.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return invalid("has an empty, '.' or '..' segment");
    }
    Ok(())
}

/// The conformance suite every store runs: the behaviour the commit protocol relies on. Public
/// so the end-to-end tests run it against S3 on a real S3-API server.
#[doc(hidden)]
pub mod conformance {
    use super::*;

    pub async fn run(store: &Store) {
        // put / get / replace
        store.put("t/a/1.bin", Bytes::from_static(b"one")).await.unwrap();
        assert_eq!(store.get("t/a/1.bin").await.unwrap(), Bytes::from_static(b"one"));
        store.put("t/a/1.bin", Bytes::from_static(b"uno")).await.unwrap();
        assert_eq!(store.get("t/a/1.bin").await.unwrap(), Bytes::from_static(b"uno"));
        // large objects (the local store writes these around the page cache), replaced by
        // smaller ones: lengths that are not whole blocks, around its staging size
        for len in [(1 << 20) + 4097, 256 << 10, (3 << 20) + 1, 300_001] {
            let data = Bytes::from((0..len).map(|i| (i * 7 % 253) as u8).collect::<Vec<u8>>());
            store.put("t/large.bin", data.clone()).await.unwrap();
            assert!(store.get("t/large.bin").await.unwrap() == data, "a {len}-byte object came back different");
        }
        store.delete("t/large.bin").await.unwrap();
        // put_unsynced, made durable by sync_written: read back as any put
        store.put_unsynced("t/u/1.bin", Bytes::from_static(b"later")).await.unwrap();
        store.put_unsynced("t/u/deep/2.bin", Bytes::from_static(b"durable")).await.unwrap();
        store.sync_written().await.unwrap();
        assert_eq!(&store.get("t/u/deep/2.bin").await.unwrap()[..], b"durable");
        // A delete that empties a directory (a local one removes it): a put there still works.
        store.delete("t/u/deep/2.bin").await.unwrap();
        store.put_unsynced("t/u/deep/3.bin", Bytes::from_static(b"again")).await.unwrap();
        store.put("t/u/deep/4.bin", Bytes::from_static(b"and again")).await.unwrap();
        assert_eq!(&store.get("t/u/deep/3.bin").await.unwrap()[..], b"again");
        for path in ["t/u/1.bin", "t/u/deep/3.bin", "t/u/deep/4.bin"] {
            store.delete(path).await.unwrap();
        }
        // put_if_absent: first wins, second refused, content untouched
        store.put_if_absent("t/_kappa/c/1.json", Bytes::from_static(b"first")).await.unwrap();
        let err = store.put_if_absent("t/_kappa/c/1.json", Bytes::from_static(b"second")).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
        assert_eq!(store.get("t/_kappa/c/1.json").await.unwrap(), Bytes::from_static(b"first"));
        // put_new_unsynced (a data file): created once, never replaced, durable after sync_written
        store.put_new_unsynced("t/d/part-1.parquet", Bytes::from_static(b"mine")).await.unwrap();
        let err = store.put_new_unsynced("t/d/part-1.parquet", Bytes::from_static(b"theirs")).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
        store.sync_written().await.unwrap();
        assert_eq!(store.get("t/d/part-1.parquet").await.unwrap(), Bytes::from_static(b"mine"));
        let large = Bytes::from(vec![7u8; (1 << 20) + 3]);
        store.put_new_unsynced("t/d/part-2.parquet", large.clone()).await.unwrap();
        assert!(matches!(store.put_new_unsynced("t/d/part-2.parquet", Bytes::new()).await, Err(StoreError::AlreadyExists { .. })));
        assert!(store.get("t/d/part-2.parquet").await.unwrap() == large);
        for path in ["t/d/part-1.parquet", "t/d/part-2.parquet"] {
            store.delete(path).await.unwrap();
        }
        // missing objects
        assert!(matches!(store.get("t/missing").await, Err(StoreError::NotFound { .. })));
        store.delete("t/missing").await.unwrap();
        // list is recursive, sorted, prefix-bounded
        store.put("t/b/2.bin", Bytes::from_static(b"22")).await.unwrap();
        store.put("t/a/0.bin", Bytes::new()).await.unwrap();
        store.put("tx/other.bin", Bytes::from_static(b"x")).await.unwrap();
        let listed: Vec<(String, u64)> = store.list("t/").await.unwrap().into_iter().map(|o| (o.path, o.size)).collect();
        assert_eq!(listed, vec![("t/_kappa/c/1.json".into(), 5), ("t/a/0.bin".into(), 0), ("t/a/1.bin".into(), 3), ("t/b/2.bin".into(), 2)]);
        assert!(store.list("nothing/").await.unwrap().is_empty());
        // Each object says when it was written (vacuum's retention for objects no commit names).
        for object in store.list("t/").await.unwrap() {
            assert!(object.age() < std::time::Duration::from_secs(600), "{object:?} was written just now");
        }
        // delete
        store.delete("t/a/1.bin").await.unwrap();
        assert!(matches!(store.get("t/a/1.bin").await, Err(StoreError::NotFound { .. })));
        // paths are checked
        assert!(matches!(store.put("../x", Bytes::new()).await, Err(StoreError::InvalidPath { .. })));
        assert!(matches!(store.put("/abs", Bytes::new()).await, Err(StoreError::InvalidPath { .. })));
        // racing creators: exactly one wins
        let winners = futures_all(store, "t/_kappa/c/2.json").await;
        assert_eq!(winners, 1);
    }

    async fn futures_all(store: &Store, path: &str) -> usize {
        let mut handles = Vec::new();
        for i in 0..8 {
            let store = store.clone();
            let path = path.to_string();
            handles.push(tokio::spawn(async move { store.put_if_absent(&path, Bytes::from(format!("writer {i}"))).await.is_ok() }));
        }
        let mut winners = 0;
        for h in handles {
            winners += usize::from(h.await.unwrap());
        }
        winners
    }
}
