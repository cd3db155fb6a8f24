//! A live table written by several consumers of one SQS queue at once (competing consumers):
//! no leases, because a queue has no shards, each message goes to whichever consumer asks.
//!
//! What must never happen is a message (or a producer row) stored twice: SQS hands a message
//! to a second consumer when the first one's visibility lapsed, delivers it twice now and then
//! (at-least-once), and a producer may send a file again. Step by step, why it does not:
//! 1. Every consumer of the queue commits under one `txn` app id, [`SQS_APP_ID`], whose version
//!    counts the queue's commits into the table, whoever made them. A commit expects the
//!    version its writer last saw; if another consumer committed in between, Delta's
//!    conditional create and that expectation refuse it ([`TableError::PeerCommitted`]), and
//!    nothing of it is made. So the queue's commits form one chain, each made knowing all
//!    those before it.
//! 2. Each commit carries its [`Claims`]: the message ids it covers and the producer rows its
//!    files hold. A refused writer reads the claims of the commits made since it last looked
//!    ([`Table::peer_claims`]), rebuilds its files without the rows those commits already
//!    stored, and tries again on top of them.
//! 3. Each commit also carries the whole deduplication state (every producer row and every
//!    message id still remembered), with what it learnt from the others' claims merged in: a
//!    consumer starting (or restarting, under any `--worker-id`) reads the state of the
//!    chain's last commit and knows everything stored so far.
//! 4. Per-shard positions mean nothing across consumers (each numbers its own events, in a
//!    synthetic shard named after it and its run): they are not handed from one to the next.

use std::sync::{Arc, Mutex};

use crate::TableError;
use crate::delta::{LakeTable, TxnCheck};
use crate::state::{CONSUMER_APP_ID, Claims, Commit, SQS_APP_ID, TableState, parse};

use super::Table;

/// A competing consumer's place in the queue's chain of commits.
#[derive(Debug)]
pub(super) struct Competing {
    /// Names this consumer's quarantine files apart from the others'.
    pub(super) tag: String,
    /// The chain's version (`txn` of [`SQS_APP_ID`]) this consumer last saw.
    counter: Option<i64>,
    /// The table version up to which this consumer knows every commit's claims.
    synced: u64,
}

impl Table {
    /// This table as competing consumer `worker`'s (see the module doc).
    pub fn competing(mut self, worker: &str) -> Table {
        let tag: String = worker.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        let tag = format!("{tag}-{}", chrono::Utc::now().timestamp_millis());
        self.competing = Some(Arc::new(Mutex::new(Competing { tag, counter: None, synced: 0 })));
        self
    }

    pub fn is_competing(&self) -> bool {
        self.competing.is_some()
    }

    /// The name this consumer's run goes by in object names (its synthetic shard, its quarantine
    /// files): the worker id and the run's start.
    pub fn competing_tag(&self) -> Option<String> {
        self.competing.as_ref().map(|c| c.lock().expect("competing").tag.clone())
    }

    /// A competing consumer's state: the chain's last commit (or the consumer's, if a switch
    /// handed one over since), without per-shard positions (see step 4).
    pub(super) async fn competing_state(&self, lake: &LakeTable, files: std::collections::BTreeSet<String>) -> Result<TableState, TableError> {
        let competing = self.competing.as_ref().expect("a competing table");
        let chain = lake.writer_state(SQS_APP_ID).await?;
        let consumer = lake.writer_state(CONSUMER_APP_ID).await?;
        {
            let mut competing = competing.lock().expect("competing");
            competing.counter = chain.as_ref().map(|c| c.counter);
            competing.synced = lake.version().unwrap_or_default();
        }
        let found = match (chain, consumer) {
            (Some(chain), Some(consumer)) if consumer.version > chain.version => consumer,
            (Some(chain), _) => chain,
            (None, Some(consumer)) => consumer,
            (None, None) => return Ok(TableState { files, ..TableState::default() }),
        };
        let record = self.internalized(crate::table::commit_of(&self.name, found)?).await?;
        if record.generation != self.generation {
            return Ok(TableState { files, ..TableState::default() });
        }
        let mut state = crate::state::state_of(record);
        state.resume.clear();
        state.written.clear();
        state.quarantined.clear();
        state.archive_positions.clear();
        state.horizons.clear();
        state.files = files;
        Ok(state)
    }

    /// The `txn` a competing consumer's commit carries: the chain's next version.
    pub(super) fn competing_txn(&self) -> Option<TxnCheck> {
        let competing = self.competing.as_ref()?.lock().expect("competing");
        Some(TxnCheck { app_id: SQS_APP_ID.to_string(), counter: competing.counter.unwrap_or(0) + 1, previous: competing.counter })
    }

    /// A competing commit was made at `version`.
    pub(super) fn competing_committed(&self, version: u64, counter: i64) {
        if let Some(competing) = &self.competing {
            let mut competing = competing.lock().expect("competing");
            competing.counter = Some(counter);
            competing.synced = competing.synced.max(version);
        }
    }

    /// The claims of the queue's commits made by others since this consumer last looked (its
    /// last commit, its start, or its last call), oldest first; the table is read again if any
    /// were made. A commit whose claims cannot be read any more (kept a day when big) stands
    /// for the chain's whole state at that point: every message and row it remembers.
    pub async fn peer_claims(&self) -> Result<Vec<Claims>, TableError> {
        let Some(competing) = &self.competing else { return Ok(Vec::new()) };
        let Some(live) = &self.live else { return Ok(Vec::new()) };
        let (synced, own_tag) = {
            let competing = competing.lock().expect("competing");
            (competing.synced, competing.tag.clone())
        };
        let mut lake = live.lake.lock().await;
        let Some(lake) = lake.as_mut() else { return Ok(Vec::new()) };
        let mut claims = Vec::new();
        let mut version = synced;
        let mut counter = None;
        while let Some(found) = lake.chain_entry(version + 1, SQS_APP_ID).await? {
            version += 1;
            let Some((chain, state)) = found else { continue };
            counter = Some(chain);
            let record: Commit = match serde_json::from_value(state) {
                Ok(record) => record,
                Err(source) => return Err(TableError::Corrupt { path: format!("{}/_delta_log version {version}", self.name), source }),
            };
            if record.generation != self.generation {
                continue;
            }
            match self.claims_of(&record).await? {
                Some(c) if c.writer == own_tag => {}
                Some(c) => claims.push(c),
                None => {
                    // Read the log up to here first: the chain's last commit is this one or later.
                    lake.reload().await?;
                    claims.push(self.chain_state_claims(lake).await?);
                }
            }
        }
        if version == synced {
            // Called after a refusal, so another commit exists: the commits after the one this
            // consumer last saw are gone (log cleanup after a long pause), and the chain's last
            // state stands for all of them.
            lake.reload().await?;
            if lake.version().is_some_and(|latest| latest > synced) {
                claims.push(self.chain_state_claims(lake).await?);
                version = lake.version().unwrap_or(version);
                counter = lake.writer_counter(SQS_APP_ID).await?;
            }
        }
        if version > synced {
            lake.reload().await?;
            let mut competing = competing.lock().expect("competing");
            competing.synced = version;
            if counter.is_some() {
                competing.counter = counter;
            }
        }
        Ok(claims)
    }

    /// A commit's claims, read from its claims object if it has one; `None` if that is gone.
    async fn claims_of(&self, record: &Commit) -> Result<Option<Claims>, TableError> {
        match (&record.claims, &record.claims_ref) {
            (Some(claims), _) => Ok(Some(claims.clone())),
            (None, Some(path)) => match self.store.get(&format!("{}/{path}", self.name)).await {
                Ok(data) => Ok(Some(parse(path, &data)?)),
                Err(kappa_common::store::StoreError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            },
            // A commit of the chain without claims (a flush of acknowledgements only).
            (None, None) => Ok(Some(Claims::default())),
        }
    }

    /// Everything the chain's last commit remembers, as claims.
    async fn chain_state_claims(&self, lake: &LakeTable) -> Result<Claims, TableError> {
        let Some(found) = lake.writer_state(SQS_APP_ID).await? else { return Ok(Claims::default()) };
        let record = self.internalized(crate::table::commit_of(&self.name, found)?).await?;
        // Messages remembered for less than a day are those whose deletes were confirmed (the
        // others are kept 14 days): said so, so that whoever reads this forgets them as soon.
        let soon = chrono::Utc::now().timestamp_millis() + 24 * 3600 * 1000;
        let confirmed = record.unacknowledged.iter().filter(|(_, until)| **until < soon).map(|(id, _)| id.clone()).collect();
        Ok(Claims {
            writer: String::new(),
            confirmed,
            messages: record.unacknowledged.into_keys().collect(),
            rows: record.seen.into_iter().map(|(source, seen)| (source, seen.rows)).collect(),
            totals: Default::default(),
        })
    }
}
