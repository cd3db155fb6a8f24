//! Large parts of a commit's resume state, kept beside the commit instead of in it.
//!
//! ```text
//! <table>/_kappa/<generation>/state/<part>-<created ms>-<hash>.json
//! ```
//!
//! Every commit carried the whole producer-dedup map (`seen`: each producer file's rows), and
//! with it its size grew with history: 43.8 KB per commit after 1,000 producer inputs, a 35 MB
//! `_delta_log` after 1,008 commits. Now a part bigger than [`INLINE_LIMIT`] is written once to
//! an object named by its content's hash, and a commit names the object; a commit whose part
//! did not change names the same object and writes nothing. A commit stays a few KB.
//!
//! Only a writer's last commit is ever read back for its state (a restart, a switch handing
//! it over, a switch back to an older generation reading that generation's last commit), so
//! every [`CLEANUP_EVERY`] commits a writer deletes its generation's objects that its last
//! commit does not name, once they are an hour old (a commit being prepared may name a young
//! one). Consumers competing for an SQS queue read the chain's last commit only, which right
//! after a consumer's commit is its own; so each cleans up as a lone writer does, and names
//! only objects younger than half that hour in its commits (see `competing.rs`). A
//! generation's objects go with it when `gc` removes it.

use bytes::Bytes;
use kappa_common::store::StoreError;

use crate::TableError;
use crate::state::{Commit, parse};

use super::Table;

/// A part of the state this big (serialized) or smaller stays in the commit.
pub(super) const INLINE_LIMIT: usize = 2048;

/// Commits between two cleanups of a generation's state objects.
pub(super) const CLEANUP_EVERY: u64 = 100;

/// How old an object no commit names must be before it is deleted.
const UNNAMED_GRACE_MS: i64 = 3_600_000;

/// How old an object a consumer competing for an SQS queue may still name in a commit: well
/// within [`UNNAMED_GRACE_MS`], so that no other consumer's cleanup deletes it first.
const REUSE_MS: i64 = UNNAMED_GRACE_MS / 2;

impl Table {
    /// `commit` as it is recorded: its large parts replaced by the names of the objects that
    /// hold them, written here unless they exist.
    pub(crate) async fn externalized(&self, commit: &Commit) -> Result<Commit, TableError> {
        let mut recorded = commit.clone();
        if let Some(path) = self.side_object("seen", &commit.seen).await? {
            recorded.seen.clear();
            recorded.seen_ref = Some(path);
        }
        if let Some(path) = self.side_object("unacknowledged", &commit.unacknowledged).await? {
            recorded.unacknowledged.clear();
            recorded.unacknowledged_ref = Some(path);
        }
        if let Some(claims) = &commit.claims
            && let Some(path) = self.side_object("claims", claims).await?
        {
            recorded.claims = None;
            recorded.claims_ref = Some(path);
        }
        Ok(recorded)
    }

    /// `commit` with the parts it names read back.
    pub(crate) async fn internalized(&self, mut commit: Commit) -> Result<Commit, TableError> {
        if let Some(path) = commit.seen_ref.take() {
            commit.seen = self.read_side_object(&path).await?;
        }
        if let Some(path) = commit.unacknowledged_ref.take() {
            commit.unacknowledged = self.read_side_object(&path).await?;
        }
        if let Some(path) = commit.claims_ref.take() {
            commit.claims = Some(self.read_side_object(&path).await?);
        }
        Ok(commit)
    }

    /// The object holding `value` (relative to the table), written if it is not there yet;
    /// `None` when `value` is small enough to stay in the commit.
    async fn side_object<T: serde::Serialize>(&self, part: &str, value: &T) -> Result<Option<String>, TableError> {
        let data = serde_json::to_vec(value).expect("state serializes");
        if data.len() <= INLINE_LIMIT {
            return Ok(None);
        }
        let hash = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&data));
        let suffix = format!("-{hash}.json");
        // A writer competing with others names young objects only: another's cleanup deletes
        // what the chain's last commit does not name once it is an hour old.
        let young = |path: &str| self.competing.is_none() || created_ms(path).is_some_and(|at| at >= chrono::Utc::now().timestamp_millis() - REUSE_MS);
        let mut last = self.side_objects.lock().await;
        if let Some(path) = last.get(part).filter(|path| path.ends_with(&suffix) && young(path)) {
            return Ok(Some(path.clone()));
        }
        // The same content may be there from an earlier commit (a restarted writer).
        let prefix = format!("{}/{}", self.name, self.state_dir());
        let existing = self.store.list(&format!("{prefix}{part}-")).await?;
        let path = match existing.iter().find(|o| o.path.ends_with(&suffix) && young(&o.path)) {
            Some(found) => found.path[self.name.len() + 1..].to_string(),
            None => {
                let relative = format!("{}{part}-{:013}{suffix}", self.state_dir(), chrono::Utc::now().timestamp_millis());
                match self.store.put_if_absent(&format!("{}/{relative}", self.name), Bytes::from(data)).await {
                    Ok(()) | Err(StoreError::AlreadyExists { .. }) => relative,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        last.insert(part.to_string(), path.clone());
        Ok(Some(path))
    }

    /// This generation's state objects, relative to the table.
    pub(super) fn state_dir(&self) -> String {
        format!("_kappa/{}/state/", self.generation)
    }

    pub(super) async fn read_side_object<T: serde::de::DeserializeOwned>(&self, relative: &str) -> Result<T, TableError> {
        let path = format!("{}/{relative}", self.name);
        match self.store.get(&path).await {
            Ok(data) => parse(&path, &data),
            Err(StoreError::NotFound { .. }) => Err(TableError::Invalid {
                table: self.name.clone(),
                reason: format!(
                    "the last commit's resume state names {path}, which is gone: it was deleted by hand or by a tool that does not know it; \
                     restore it from a backup, or rebuild the table with kappa-replay"
                ),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes this generation's state objects that `recorded` (its writer's last commit, as
    /// recorded) does not name, once an hour old. Returns how many were deleted.
    pub(crate) async fn remove_unreferenced_state(&self, recorded: &Commit) -> Result<usize, TableError> {
        let named: Vec<&str> = [&recorded.seen_ref, &recorded.unacknowledged_ref, &recorded.claims_ref].into_iter().flatten().map(String::as_str).collect();
        let horizon = chrono::Utc::now().timestamp_millis() - UNNAMED_GRACE_MS;
        let mut removed = 0;
        for object in self.store.list(&format!("{}/{}", self.name, self.state_dir())).await? {
            let relative = &object.path[self.name.len() + 1..];
            if named.contains(&relative) || created_ms(relative).is_none_or(|created| created >= horizon) {
                continue;
            }
            self.store.delete(&object.path).await?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// When `…/state/seen-1764050000000-<hash>.json` was written.
fn created_ms(relative: &str) -> Option<i64> {
    let name = relative.rsplit('/').next()?;
    name.split('-').nth(1)?.parse().ok()
}
