//! A live table whose source shards several workers share through leases (`--leases`).
//!
//! Each shard is its own writer in the Delta log: app id `kappa-shard:<shard>`, version
//! `epoch << 32 | n` (the lease epoch, then the worker's commits of it in that epoch). Step by
//! step, why rows are written once however leases move:
//! 1. A worker's commit carries the `txn` of every shard it holds, each expecting the version
//!    the worker last committed (or read, for a shard it just took). One commit, one atomic
//!    create: either every shard moves with it or none does.
//! 2. The first commit after a take is the fence: it carries the shard's `txn` at the new,
//!    higher epoch. From then on a commit of the worker that lost the shard (paused, slow, not
//!    yet aware) finds the shard's `txn` moved and is refused whole
//!    ([`crate::TableError::Fenced`]); that worker drops what it buffered, stops reading the
//!    shard and goes on with the rest from what the table holds.
//! 3. A taker reads where the shard stands from the commit that carries its latest `txn` —
//!    Delta is the truth, the lease store only says who may write — or from the consumer's
//!    (`kappa-consumer`) state when that is newer: a table consumed by one consumer before, or
//!    a replay's switch, which hands its positions over under that id.
//! 4. Commits of different workers touch different shards: they are blind appends, and one
//!    that loses the race to the next version re-checks its shards and is re-based (step 2 of
//!    the protocol in [`crate::delta`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use crate::TableError;
use crate::delta::{LakeTable, TxnCheck};
use crate::state::{CONSUMER_APP_ID, Commit, TableState, shard_app_id, shard_txn_version};

use super::Table;

/// The shards a worker holds, as its commits carry them.
#[derive(Debug)]
pub(super) struct Leased {
    /// Names this worker's quarantine files apart from other workers'.
    tag: String,
    shards: BTreeMap<String, Held>,
    /// A replay's generation shared by several writers (see `shared.rs`): the last commit of
    /// its log this writer read, and the running totals its pipeline counts from.
    pub(super) read_through: u64,
    pub(super) totals: crate::state::Totals,
}

impl Leased {
    /// Each held shard's lease epoch.
    pub(super) fn epochs(&self) -> BTreeMap<String, u64> {
        self.shards.iter().map(|(shard, held)| (shard.clone(), held.epoch)).collect()
    }
}

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: u64,
    /// This worker's commits of the shard in its epoch so far.
    commits: u32,
    /// The shard's `txn` version the next commit expects to find.
    previous: Option<i64>,
}

impl Table {
    /// This table as worker `worker`'s, holding `held` (shard → lease epoch): its commits carry
    /// one `txn` per held shard (see the module doc), and [`Table::load_state`] reads each
    /// shard's state where the table holds it.
    pub fn leased(mut self, worker: &str, held: &BTreeMap<String, u64>) -> Table {
        let tag: String = worker.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        let tag = format!("{tag}-{}", chrono::Utc::now().timestamp_millis());
        let shards = held.iter().map(|(s, e)| (s.clone(), Held { epoch: *e, commits: 0, previous: None })).collect();
        self.leased = Some(Arc::new(Mutex::new(Leased { tag, shards, read_through: 0, totals: Default::default() })));
        self
    }

    pub fn is_leased(&self) -> bool {
        self.leased.is_some()
    }

    /// The lease epoch each shard's `txn` holds in the table now (`None`: never leased).
    pub async fn shard_epochs(&self, shards: &[String]) -> Result<BTreeMap<String, Option<u64>>, TableError> {
        let Some(live) = &self.live else { return Ok(BTreeMap::new()) };
        let lake = live.lake.lock().await;
        let mut epochs = BTreeMap::new();
        for shard in shards {
            let version = match lake.as_ref() {
                Some(lake) => lake.writer_counter(&shard_app_id(shard)).await?,
                None => None,
            };
            epochs.insert(shard.clone(), version.map(crate::state::epoch_of_txn));
        }
        Ok(epochs)
    }

    /// True if a held shard is not yet at this worker's epoch in the table, which exists: the
    /// worker took it, and its fence (a commit of the shard at the new epoch, with no rows) is
    /// due before anything of it is read. Until the fence, the shard's previous owner — paused,
    /// or not yet aware — can still commit it: for as long as the shard stays quiet if the
    /// fence waited for the first rows.
    pub async fn fence_due(&self) -> Result<bool, TableError> {
        let Some(leased) = &self.leased else { return Ok(false) };
        let held = leased.lock().expect("leased").epochs();
        let table: BTreeMap<String, Option<u64>> = match &self.live {
            Some(live) => {
                // (The guard goes before `shard_epochs` locks the table again.)
                let exists = live.lake.lock().await.is_some();
                // No table yet: no earlier commit to fence; the first commit creates it.
                if !exists {
                    return Ok(false);
                }
                self.shard_epochs(&held.keys().cloned().collect::<Vec<_>>()).await?
            }
            None => self.shared_epochs().await?.into_iter().map(|(shard, epoch)| (shard, Some(epoch))).collect(),
        };
        Ok(held.iter().any(|(shard, epoch)| table.get(shard).copied().flatten() != Some(*epoch)))
    }

    /// A shard of `shards` whose latest commit came from a leased worker after the consumer's
    /// own last commit (or a switch's hand-over): a consumer without leases would read it again
    /// from the older state, so it must refuse the table.
    pub async fn leased_after_consumer(&self, shards: &[String]) -> Result<Option<String>, TableError> {
        let Some(live) = &self.live else { return Ok(None) };
        let lake = live.lake.lock().await;
        let Some(lake) = lake.as_ref() else { return Ok(None) };
        let app_ids: Vec<String> = std::iter::once(CONSUMER_APP_ID.to_string()).chain(shards.iter().map(|s| shard_app_id(s))).collect();
        let mut states = lake.writer_states(&app_ids).await?;
        let consumer = states.remove(CONSUMER_APP_ID).map(|found| found.version);
        Ok(shards.iter().find(|shard| states.get(&shard_app_id(shard)).is_some_and(|found| consumer.is_none_or(|c| found.version > c))).cloned())
    }

    /// The name this writer's run goes by in the names of objects only it writes (quarantine
    /// and archive objects), when several write the table: a leased worker's or a competing
    /// consumer's.
    pub fn writer_tag(&self) -> Option<String> {
        self.leased_tag().or_else(|| self.competing_tag())
    }

    /// The quarantine file name's suffix, unique to this worker and run.
    pub(super) fn leased_tag(&self) -> Option<String> {
        self.leased.as_ref().map(|l| l.lock().expect("leased").tag.clone())
    }

    /// A leased worker's state: each held shard's part of the commit that last carried it.
    pub(super) async fn leased_state(&self, lake: &LakeTable, files: BTreeSet<String>) -> Result<TableState, TableError> {
        let leased = self.leased.as_ref().expect("a leased table");
        let shards: Vec<String> = leased.lock().expect("leased").shards.keys().cloned().collect();
        // Every held shard's last commit and the consumer's, found at once (see
        // `LakeTable::writer_states`): a worker taking 100 shards does not walk the log 100 times.
        let app_ids: Vec<String> = std::iter::once(CONSUMER_APP_ID.to_string()).chain(shards.iter().map(|s| shard_app_id(s))).collect();
        let mut states = lake.writer_states(&app_ids).await?;
        let consumer = states.remove(CONSUMER_APP_ID);
        let mut state = TableState { files, ..TableState::default() };
        let mut records: HashMap<u64, Commit> = HashMap::new();
        let mut seen_from = BTreeSet::new();
        for shard in shards {
            let own = states.remove(&shard_app_id(&shard));
            let previous = own.as_ref().map(|found| found.counter);
            {
                let mut leased = leased.lock().expect("leased");
                let held = leased.shards.get_mut(&shard).expect("held");
                held.previous = previous;
                // A later session of the same lease goes on counting where the last one stopped.
                if let Some(previous) = previous.filter(|p| crate::state::epoch_of_txn(*p) == held.epoch) {
                    held.commits = (previous & 0xffff_ffff) as u32;
                }
            }
            // The newer of the shard's own last commit and the consumer's (a switch's hand-over)
            // that is of this generation. A shard commit of the generation a switch replaced
            // that came after the switch (which `LakeTable::commit` now refuses) is passed
            // over: reading the shard from the start would store its rows twice.
            let mut candidates: Vec<_> = own.into_iter().chain(consumer.clone()).collect();
            candidates.sort_by_key(|found| std::cmp::Reverse(found.version));
            let mut chosen = None;
            for found in candidates {
                let version = found.version;
                // Parsed first, its side objects read only once chosen: a passed-over commit
                // of a generation gc removed names objects that are gone.
                let record = crate::table::commit_of(&self.name, found)?;
                if record.generation == self.generation {
                    chosen = Some((version, record));
                    break;
                }
            }
            // None: every commit of the shard was of another generation, before the switch
            // whose state names the shard (or names no state at all).
            let Some((version, record)) = chosen else { continue };
            if let std::collections::hash_map::Entry::Vacant(slot) = records.entry(version) {
                slot.insert(self.internalized(record).await?);
            }
            let record = &records[&version];
            record.shard_part(&shard).into_state(&shard, &mut state);
            state.schema_version = state.schema_version.max(record.schema_version);
            seen_from.insert(version);
        }
        // Rows a producer sent that any of those commits remembers: a file sent again after the
        // handover is recognised whichever worker read it first.
        for version in seen_from {
            let seen = records.remove(&version).map(|r| r.seen).unwrap_or_default();
            if !seen.is_empty() {
                state.more_seen.push(seen);
            }
        }
        Ok(state)
    }

    /// The `txn`s a leased commit carries: the first held shard's, and the others'.
    pub(super) fn leased_txns(&self) -> Option<(TxnCheck, Vec<TxnCheck>)> {
        let leased = self.leased.as_ref()?.lock().expect("leased");
        let mut txns = leased.shards.iter().map(|(shard, held)| TxnCheck {
            app_id: shard_app_id(shard),
            counter: shard_txn_version(held.epoch, held.commits + 1),
            previous: held.previous,
        });
        let first = txns.next()?;
        Some((first, txns.collect()))
    }

    /// A leased commit carrying `txns` was made: the next one expects them.
    pub(super) fn leased_committed(&self, txns: &[TxnCheck]) {
        let Some(leased) = &self.leased else { return };
        let mut leased = leased.lock().expect("leased");
        for txn in txns {
            let shard = txn.app_id.strip_prefix(crate::state::SHARD_APP_PREFIX).unwrap_or(&txn.app_id);
            if let Some(held) = leased.shards.get_mut(shard) {
                held.commits += 1;
                held.previous = Some(txn.counter);
            }
        }
    }
}
