//! The one trait every lease store implements, and its backends as modules (the shape of
//! object_store: a minimal trait, and [`crate::conformance`] that every backend passes).
//!
//! Three operations are enough: read everything, and a conditional put or delete of one item.
//! Taking, releasing and ending leases are built on them in [`crate::core`], the same for every
//! store.

pub mod dynamodb;
pub mod local;
pub mod memory;

use async_trait::async_trait;

use crate::record::{Item, Key, Snapshot};

/// What a write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No item with this key.
    Absent,
    /// An item whose counter is this.
    Counter(u64),
}

impl Expect {
    /// Whether an item with `current` counter (None: absent) meets the expectation.
    pub fn met_by(self, current: Option<u64>) -> bool {
        match (self, current) {
            (Expect::Absent, None) => true,
            (Expect::Counter(want), Some(have)) => want == have,
            _ => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The item was not as expected: someone else changed it first. Not a failure of the
    /// store; the caller reads again.
    #[error("the {key} changed meanwhile (another worker wrote it first)")]
    Conflict { key: Key },
    #[error("lease store {store}: {detail}")]
    Unavailable { store: String, detail: String },
    #[error("lease store {store}: item {item} is not one kappa-lake wrote: {detail}")]
    Corrupt { store: String, item: String, detail: String },
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}

/// A place where leases live. Implementations make each `put` and `delete` atomic and
/// conditional, and `scan` see every write that completed before it began.
#[async_trait]
pub trait LeaseStore: Send + Sync + std::fmt::Debug {
    /// Every item.
    async fn scan(&self) -> Result<Snapshot, StoreError>;

    /// Writes `item` (all its fields) if the stored item with its key meets `expect`; else
    /// [`StoreError::Conflict`].
    async fn put(&self, item: &Item, expect: Expect) -> Result<(), StoreError>;

    /// Deletes the item at `key` if it meets `expect`; else [`StoreError::Conflict`].
    async fn delete(&self, key: &Key, expect: Expect) -> Result<(), StoreError>;

    /// How messages name the store (`dynamodb:kappa-leases`, `local:/data/log/_leases`).
    fn describe(&self) -> String;
}
