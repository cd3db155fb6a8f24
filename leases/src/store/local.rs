//! Leases in a local directory, for the embedded log: N processes on one machine share its
//! shards with no cloud. The store lives under the log directory (`<log>/_leases/`).
//!
//! ```text
//! <log>/_leases/.lock         flock held for the duration of each read-check-write
//! <log>/_leases/leases.json   every item (the same fields as a DynamoDB table's)
//! ```
//!
//! One file for every item keeps each conditional write a single atomic rename made under the
//! lock. It is not fsynced: every worker of a local store runs on this machine, so a power loss
//! that could undo a write also ends every worker; a take after it may then hand out an epoch
//! the table has seen, and the table's fence refuses it until the taker moves past the
//! table's epoch ([`crate::core`]).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::record::{Item, Key, Snapshot};
use crate::store::memory::{apply_delete, apply_put};
use crate::store::{Expect, LeaseStore, StoreError};

/// The directory of the leases of the embedded log at `log_dir`.
pub fn dir_of_log(log_dir: &Path) -> PathBuf {
    log_dir.join("_leases")
}

#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    /// Opens (creating the directory if missing) the store at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<LocalStore, StoreError> {
        let dir = dir.into();
        let store = LocalStore { dir };
        std::fs::create_dir_all(&store.dir).map_err(|e| store.io("create the directory", e))?;
        Ok(store)
    }

    fn file(&self) -> PathBuf {
        self.dir.join("leases.json")
    }

    fn io(&self, what: &str, err: std::io::Error) -> StoreError {
        StoreError::Unavailable { store: self.describe(), detail: format!("cannot {what} in {}: {err}", self.dir.display()) }
    }

    /// Runs `change` on the items with the lock held, and writes them back if it returns true.
    fn locked<T>(&self, change: impl FnOnce(&mut Snapshot) -> Result<(T, bool), StoreError>) -> Result<T, StoreError> {
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(self.dir.join(".lock")).map_err(|e| self.io("open the lock file", e))?;
        lock.lock().map_err(|e| self.io("lock", e))?;
        let mut items = self.read()?;
        let (out, write) = change(&mut items)?;
        if write {
            self.write(&items)?;
        }
        // The lock is released when `lock` is closed.
        Ok(out)
    }

    fn read(&self) -> Result<Snapshot, StoreError> {
        let path = self.file();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                store: self.describe(),
                item: path.display().to_string(),
                detail: format!("{e}; remove the file to start the leases afresh (the table's fences keep exactly-once)"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Snapshot::default()),
            Err(e) => Err(self.io("read leases.json", e)),
        }
    }

    fn write(&self, items: &Snapshot) -> Result<(), StoreError> {
        let tmp = self.dir.join(format!(".leases.json.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec_pretty(items).expect("lease items serialize");
        let mut file = File::create(&tmp).map_err(|e| self.io("create a temporary file", e))?;
        file.write_all(&bytes).map_err(|e| self.io("write a temporary file", e))?;
        drop(file);
        std::fs::rename(&tmp, self.file()).map_err(|e| self.io("replace leases.json", e))
    }

    async fn blocking<T: Send + 'static>(&self, op: impl FnOnce(&LocalStore) -> Result<T, StoreError> + Send + 'static) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || op(&store))
            .await
            .map_err(|e| StoreError::Unavailable { store: self.describe(), detail: format!("lease task failed: {e}") })?
    }
}

#[async_trait]
impl LeaseStore for LocalStore {
    async fn scan(&self) -> Result<Snapshot, StoreError> {
        self.blocking(|store| store.locked(|items| Ok((items.clone(), false)))).await
    }

    async fn put(&self, item: &Item, expect: Expect) -> Result<(), StoreError> {
        let item = item.clone();
        self.blocking(move |store| store.locked(|items| apply_put(items, &item, expect).map(|()| ((), true)))).await
    }

    async fn delete(&self, key: &Key, expect: Expect) -> Result<(), StoreError> {
        let key = key.clone();
        self.blocking(move |store| store.locked(|items| apply_delete(items, &key, expect).map(|()| ((), true)))).await
    }

    fn describe(&self) -> String {
        format!("local:{}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        crate::conformance::run(&LocalStore::open(dir.path().join("_leases")).unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_of_racing_writers_wins() {
        let dir = tempfile::tempdir().unwrap();
        crate::conformance::one_of_racing_writers_wins(std::sync::Arc::new(LocalStore::open(dir.path()).unwrap()), 16).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workers_balance_fail_over_and_hand_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(LocalStore::open(dir.path()).unwrap());
        let measured = crate::conformance::workers_balance_fail_over_and_hand_over(store).await;
        eprintln!("local store: {measured:?}");
    }

    #[tokio::test]
    async fn two_handles_on_one_directory_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let a = LocalStore::open(dir.path()).unwrap();
        let b = LocalStore::open(dir.path()).unwrap();
        crate::conformance::run_shared(&a, &b).await;
    }
}
