//! Leases in memory: for tests of what is built on the trait. The simulation has its own
//! model with delays ([`crate::sim`]); this one answers at once.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::record::{Item, Key, Snapshot};
use crate::store::{Expect, LeaseStore, StoreError};

#[derive(Debug, Default)]
pub struct MemoryStore {
    items: Mutex<Snapshot>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

/// Applies a conditional put to a snapshot: the rule every store follows.
pub(crate) fn apply_put(snapshot: &mut Snapshot, item: &Item, expect: Expect) -> Result<(), StoreError> {
    let key = item.key();
    if !expect.met_by(snapshot.counter_of(&key)) {
        return Err(StoreError::Conflict { key });
    }
    snapshot.insert(item.clone());
    Ok(())
}

/// Applies a conditional delete to a snapshot.
pub(crate) fn apply_delete(snapshot: &mut Snapshot, key: &Key, expect: Expect) -> Result<(), StoreError> {
    if !expect.met_by(snapshot.counter_of(key)) {
        return Err(StoreError::Conflict { key: key.clone() });
    }
    snapshot.remove(key);
    Ok(())
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn scan(&self) -> Result<Snapshot, StoreError> {
        Ok(self.items.lock().expect("lease store lock").clone())
    }

    async fn put(&self, item: &Item, expect: Expect) -> Result<(), StoreError> {
        apply_put(&mut self.items.lock().expect("lease store lock"), item, expect)
    }

    async fn delete(&self, key: &Key, expect: Expect) -> Result<(), StoreError> {
        apply_delete(&mut self.items.lock().expect("lease store lock"), key, expect)
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        crate::conformance::run(&MemoryStore::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_of_racing_writers_wins() {
        crate::conformance::one_of_racing_writers_wins(std::sync::Arc::new(MemoryStore::new()), 16).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workers_balance_fail_over_and_hand_over() {
        crate::conformance::workers_balance_fail_over_and_hand_over(std::sync::Arc::new(MemoryStore::new())).await;
    }
}
