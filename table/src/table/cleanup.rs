//! What may be deleted, and by whom. The rule every tool keeps: **no object that a version of
//! the Delta log within its retention names is ever deleted**, nor one that a running writer
//! announced it is about to commit (see [`crate::writers`]). "Named by no commit" means by no
//! commit of the Delta log, never just by our own records: `_kappa/` can be lost, and other
//! writers (python deltalake, Spark) commit without telling us.
//!
//! The deleting tools, and what each may delete on top of that rule:
//! - a consumer's or replay's restart (one writer of the table, without leases): its own
//!   generation's `part-` files that its state does not name (the leftovers of a flush that
//!   crashed before its commit; the redone flush writes the same names again), and its
//!   quarantine files numbered after its last commit. Workers sharing shards through leases
//!   delete no such file (see [`Table::remove_uncommitted`]);
//! - vacuum (compaction): files a commit removed longer ago than `--retention`, and merged
//!   `compacted-` files no commit names (left by a compaction killed before its commit);
//! - gc: a whole generation that no version within the retention names any file of;
//! - temporary files of writes that were cut off (a full disk, a kill).
//!
//! Order matters for the race with a writer that stores and then commits: list the objects
//! first, then read the live writers, then the log ([`Protected::read`]).

use std::collections::HashSet;

use kappa_common::store::Store;

use crate::TableError;
use crate::delta::LakeTable;
use crate::writers::WriterRecord;

use super::{COMPACTED_PREFIX, Table, location};

/// The prefix of the files a consumer's or replay's flush writes.
pub const PART_PREFIX: &str = "part-";

/// What no tool may delete, read after the objects were listed.
#[derive(Debug, Default)]
pub struct Protected {
    /// Paths relative to the table root that the Delta log names: the current version's files
    /// and the removed files it still remembers.
    named: HashSet<String>,
    writers: Vec<WriterRecord>,
}

impl Protected {
    /// The live writers' announcements, then the Delta log, of table `name` in `store`. With
    /// `retention`, files removed longer ago than that are no longer protected (a vacuum's or
    /// gc's `--retention`, as Delta's VACUUM has it); without, every file the log remembers is.
    pub async fn read(store: &Store, name: &str, retention: Option<std::time::Duration>) -> Result<Protected, TableError> {
        let writers = crate::writers::alive(store, name).await?;
        let since = retention.map(|r| chrono::Utc::now().timestamp_millis() - i64::try_from(r.as_millis()).unwrap_or(i64::MAX));
        let named = match LakeTable::open(name, &location(store, name)?).await? {
            Some(mut lake) => lake.named_files(since).await?,
            None => HashSet::new(),
        };
        Ok(Protected { named, writers })
    }

    /// The same, without what this process announced (its own leftovers are its to remove: a
    /// replay continuing its generation announced the generation before it cleans up).
    pub fn ignoring_this_process(mut self) -> Protected {
        let host = crate::writers::host_name();
        self.writers.retain(|w| !(w.host == host && w.pid == std::process::id()));
        self
    }

    /// True if `path` (relative to the table root) must stay.
    pub fn covers(&self, path: &str) -> bool {
        self.named.contains(path) || self.writers.iter().any(|w| w.covers(path))
    }

    /// True if a live writer says it writes `generation` (a replay), or brings it back.
    pub fn writing(&self, generation: &str) -> bool {
        self.writers.iter().any(|w| w.generation.as_deref() == Some(generation))
    }

    /// True if the Delta log names `path` (relative to the table root).
    pub fn is_named(&self, path: &str) -> bool {
        self.named.contains(path)
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl Table {
    /// Deletes this generation's objects that an interrupted flush left: `part-` files that
    /// neither `state` (its files) nor the Delta log name and no live writer announced, and
    /// quarantine files numbered after the last commit. Returns how many were deleted.
    pub async fn remove_uncommitted(&self, state: &crate::TableState) -> Result<usize, TableError> {
        let mut removed = 0;
        let data_prefix = format!("{}/", self.data_prefix());
        let table_prefix = format!("{}/", self.name);
        let objects = self.store.list(&data_prefix).await?;
        let errors_prefix = format!("{}/_errors/{}/", self.name, self.generation);
        let errors = self.store.list(&errors_prefix).await?;
        let protected = Protected::read(&self.store, &self.name, None).await?.ignoring_this_process();
        for object in objects {
            let relative = &object.path[data_prefix.len()..];
            if !file_name(relative).starts_with(PART_PREFIX) || state.files.contains(relative) || protected.covers(&object.path[table_prefix.len()..]) {
                continue;
            }
            // Consumers competing for an SQS queue name their files after their run, so no
            // restart writes one again: another consumer's, paused past its writer record's
            // life, may still commit it. Vacuum removes what no commit ever named.
            //
            // Workers sharing the shards through leases leave them too. Whether another worker
            // may still commit a file cannot be told from a record judged by its host's clock
            // (a worker frozen past a minute, or a clock a minute off, would lose files it then
            // commits), nor at all by a worker that lists, pauses, and deletes: the file's
            // shard may have been taken and its name committed meanwhile. So no worker deletes
            // another's uncommitted file: the next flush of the same rows finds it and takes it
            // as its own when its bytes are the same (see `Table::put_new_object`), and vacuum
            // removes the rest once older than its retention.
            if self.competing.is_some() || self.leased.is_some() {
                continue;
            }
            tracing::info!(object = %object.path, "removing an object no commit names (left by an interrupted flush)");
            self.store.delete(&object.path).await?;
            removed += 1;
        }
        // Quarantine objects are named by their commit's number.
        for object in errors {
            let number = object.path[errors_prefix.len()..].trim_end_matches(".ndjson").parse::<u64>();
            if number.is_ok_and(|n| n > state.last_commit) {
                self.store.delete(&object.path).await?;
                removed += 1;
            }
        }
        removed += self.store.remove_stale_temporary(&table_prefix).await?;
        Ok(removed)
    }

    /// Deletes `paths` (relative to the generation) that a writer of this table stored and then
    /// failed to commit, unless the Delta log names them or another live writer announced them.
    /// Returns how many were deleted.
    pub async fn delete_uncommitted(&self, paths: &[String]) -> Result<usize, TableError> {
        let protected = Protected::read(&self.store, &self.name, None).await?;
        let mut deleted = 0;
        for path in paths {
            if !protected.covers(&format!("{}/{path}", self.generation)) {
                self.store.delete(&format!("{}/{path}", self.data_prefix())).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Vacuums this generation as Delta's VACUUM does, with `retention`: deletes its files that
    /// no version within the retention names — files a commit removed longer ago than that, and
    /// files no commit names (a compaction or flush killed before its commit) once they are
    /// that old — but none a running writer announced. Returns the paths deleted (relative to
    /// the generation); with `dry_run`, those it would delete. Only files that exist count: a
    /// file vacuumed before is not counted again.
    pub async fn vacuum(&self, retention: std::time::Duration, dry_run: bool) -> Result<Vec<String>, TableError> {
        let data_prefix = format!("{}/", self.data_prefix());
        let objects = self.store.list(&data_prefix).await?;
        let protected = Protected::read(&self.store, &self.name, Some(retention)).await?;
        // Every file a commit removed that the log still remembers, however long ago.
        let removed: HashSet<String> = self.replaced_files().await?.into_iter().map(|(path, _)| path).collect();
        let mut doomed = Vec::new();
        for object in objects {
            let relative = &object.path[data_prefix.len()..];
            let in_table = format!("{}/{relative}", self.generation);
            if protected.is_named(&in_table) {
                continue; // current, or removed within the retention
            }
            let expired = if removed.contains(relative) {
                true
            } else {
                // No commit remembers it: in flight if a running writer announced it.
                let ours = file_name(relative).starts_with(COMPACTED_PREFIX) || file_name(relative).starts_with(PART_PREFIX);
                ours && !protected.covers(&in_table) && object.age() > retention
            };
            if expired {
                doomed.push(relative.to_string());
            }
        }
        if !dry_run {
            for path in &doomed {
                self.store.delete(&format!("{data_prefix}{path}")).await?;
            }
            crate::writers::remove_dead(&self.store, &self.name).await?;
            self.store.remove_stale_temporary(&format!("{}/", self.name)).await?;
        }
        Ok(doomed)
    }
}

/// Deletes what `store` holds under `prefixes` except what [`Protected`] covers (with
/// `retention`). Returns how many objects were deleted and how many were kept.
pub(crate) async fn delete_unprotected(
    store: &Store,
    name: &str,
    prefixes: &[String],
    retention: Option<std::time::Duration>,
) -> Result<(usize, usize), TableError> {
    let mut listed = Vec::new();
    for prefix in prefixes {
        listed.extend(store.list(prefix).await?);
    }
    let protected = Protected::read(store, name, retention).await?;
    let table_prefix = format!("{name}/");
    let (mut deleted, mut kept) = (0, 0);
    for object in listed {
        if protected.covers(object.path.strip_prefix(&table_prefix).unwrap_or(&object.path)) {
            kept += 1;
        } else {
            store.delete(&object.path).await?;
            deleted += 1;
        }
    }
    Ok((deleted, kept))
}
