//! Who is writing a table right now, and which objects they are about to commit.
//!
//! ```text
//! <table>/_kappa/writers/<id>.json   one record per running writer (a compaction, a replay)
//! ```
//!
//! Tools that delete objects (vacuum, gc, a restart removing what an interrupted flush left)
//! must not delete what another writer has stored and not committed *yet*: two compactions
//! once broke a table when the second vacuumed the first's merged files a moment before the
//! first committed them. So a writer announces what it is about to store before it stores it
//! (its record's `pending` prefixes), keeps saying that it is alive, and withdraws the prefixes
//! once the commit that names them is made (or has failed and the writer cleaned up).
//!
//! Why the order makes it safe: a deleting tool lists the objects first, then reads the
//! records, then reads the Delta log. An object it listed was stored after its writer
//! announced it; the announcement is withdrawn only after the commit. So the tool either still
//! sees the announcement, or it sees the commit: either way it leaves the object.
//!
//! A record is alive while its heartbeat is younger than [`WRITER_STALE_MS`], judged by the
//! wall clock (hosts are assumed within seconds of each other; the margin is a minute), and,
//! when the observer shares the writer's kernel and process namespace (same host name, boot and
//! pid namespace: not merely the same host name, which containers may share), while its
//! process runs: a writer killed on this machine frees its prefixes at once, not a minute
//! later. A writer whose own renewals fail for half that time stops before it commits
//! ([`Writer::ensure_current`]): others may already take it for dead.

use bytes::Bytes;
use kappa_common::store::{Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::TableError;

/// How often a running writer says it is alive.
pub const WRITER_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);

/// How old a heartbeat may be before the writer is taken for dead (six missed heartbeats).
pub const WRITER_STALE_MS: i64 = 60_000;

/// One running writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterRecord {
    pub id: String,
    /// `compaction`, `replay`.
    pub kind: String,
    pub host: String,
    pub pid: u32,
    /// The process's start time (clock ticks since boot, from `/proc`): a pid the system gave
    /// to another process since is not this writer.
    #[serde(default)]
    pub process_start: Option<u64>,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
    /// The kernel's boot and the process's pid namespace: a pid means this process only where
    /// both are the observer's too.
    #[serde(default)]
    pub boot_id: Option<String>,
    #[serde(default)]
    pub pid_namespace: Option<String>,
    /// The generation it writes, when it writes a replay's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
    /// Prefixes of objects (relative to the table) it stores and has not committed yet.
    #[serde(default)]
    pub pending: Vec<String>,
    /// A consumer: the generation whose `part-` files it stores before each commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flushes: Option<String>,
}

impl WriterRecord {
    /// Still writing: a fresh heartbeat, and on this host a process that still runs.
    pub fn is_alive(&self, now_ms: i64) -> bool {
        if now_ms - self.heartbeat_ms >= WRITER_STALE_MS {
            return false;
        }
        let (here, boot, namespace) = process_space();
        if self.host == here && self.boot_id.as_deref() == boot && self.pid_namespace.as_deref() == namespace && boot.is_some() && namespace.is_some() {
            return process_start(self.pid).is_some_and(|start| self.process_start.is_none_or(|recorded| recorded == start));
        }
        true
    }

    /// True if `path` (relative to the table) lies under one of its pending prefixes, or is a
    /// `part-` file of the generation it flushes into.
    pub fn covers(&self, path: &str) -> bool {
        let flushed = self.flushes.as_ref().is_some_and(|generation| {
            path.strip_prefix(generation.as_str()).is_some_and(|rest| rest.starts_with('/'))
                && path.rsplit('/').next().is_some_and(|name| name.starts_with("part-"))
        });
        flushed || self.pending.iter().any(|prefix| path.starts_with(prefix.as_str()))
    }
}

fn writers_prefix(table: &str) -> String {
    format!("{table}/_kappa/writers/")
}

/// The writers whose records are alive, and the paths of the records of dead ones.
pub async fn records(store: &Store, table: &str) -> Result<(Vec<WriterRecord>, Vec<String>), TableError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let (mut alive, mut dead) = (Vec::new(), Vec::new());
    for object in store.list(&writers_prefix(table)).await? {
        let data = match store.get(&object.path).await {
            Ok(data) => data,
            // Finished between the listing and the read.
            Err(StoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        match serde_json::from_slice::<WriterRecord>(&data) {
            Ok(record) if record.is_alive(now_ms) => alive.push(record),
            // A torn or foreign record protects nothing once it is stale by its listing.
            _ => dead.push(object.path),
        }
    }
    Ok((alive, dead))
}

/// The writers alive now.
pub async fn alive(store: &Store, table: &str) -> Result<Vec<WriterRecord>, TableError> {
    Ok(records(store, table).await?.0)
}

/// How long a record may go unrenewed, on the store's own clock, before it is removed: ten
/// times [`WRITER_STALE_MS`]. A running writer renews its record every [`WRITER_HEARTBEAT`];
/// one whose renewals failed for half of `WRITER_STALE_MS` has stopped committing
/// ([`Writer::ensure_current`]), so a record this old protects nothing.
pub const WRITER_GONE_MS: i64 = 10 * WRITER_STALE_MS;

/// Removes the records of writers that are gone (killed, or finished without removing their
/// own): those the store last wrote [`WRITER_GONE_MS`] or more before `store_now_ms`, an
/// instant on the store's own clock (when it wrote an object just stored, [`store_now`]).
/// Both times are the store's: another host's clock, fast or slow, decides nothing. Returns
/// how many were removed; a record renewed meanwhile is written again by its writer's next
/// heartbeat.
pub async fn remove_gone(store: &Store, table: &str, listed: &[kappa_common::store::ObjectMeta], store_now_ms: i64) -> Result<usize, TableError> {
    let mut removed = 0;
    let prefix = writers_prefix(table);
    for object in listed.iter().filter(|o| o.path.starts_with(&prefix) && o.path.ends_with(".json") && store_now_ms - o.modified_ms >= WRITER_GONE_MS) {
        store.delete(&object.path).await?;
        removed += 1;
    }
    Ok(removed)
}

/// Now, on the store's clock: when it stored `_kappa/clock`, written for that.
pub async fn store_now(store: &Store, table: &str) -> Result<i64, TableError> {
    let path = format!("{table}/_kappa/clock");
    store.put(&path, Bytes::from_static(b"{}")).await?;
    let listed = store.list(&path).await?;
    let written = listed.iter().find(|o| o.path == path).ok_or_else(|| StoreError::NotFound { path: path.clone() })?;
    Ok(written.modified_ms)
}

/// Removes the records of writers that died without removing their own ([`remove_gone`], by
/// the store's clock); returns how many.
pub async fn remove_dead(store: &Store, table: &str) -> Result<usize, TableError> {
    let now = store_now(store, table).await?;
    let listed = store.list(&writers_prefix(table)).await?;
    remove_gone(store, table, &listed, now).await
}

/// A generation a live writer (a replay) says it is writing.
pub async fn is_being_written(store: &Store, table: &str, generation: &str) -> Result<bool, TableError> {
    Ok(alive(store, table).await?.iter().any(|w| w.generation.as_deref() == Some(generation)))
}

/// This process's registration as a writer of a table: created by [`Writer::register`],
/// kept alive by a task on the runtime, removed by [`Writer::finish`].
#[derive(Debug)]
pub struct Writer {
    store: Store,
    path: String,
    record: std::sync::Arc<tokio::sync::Mutex<WriterRecord>>,
    /// When the record was last written successfully (ms).
    renewed: std::sync::Arc<std::sync::atomic::AtomicI64>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Registers a writer of `kind` (for `generation`, when it writes a replay's) and starts
    /// its heartbeat on the current runtime.
    pub async fn register(store: &Store, table: &str, kind: &str, generation: Option<&str>) -> Result<Writer, TableError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let pid = std::process::id();
        let host = host_name();
        let id = record_id(kind, &host, pid, now_ms);
        let (_, boot, namespace) = process_space();
        let record = WriterRecord {
            id: id.clone(),
            kind: kind.to_string(),
            host,
            pid,
            process_start: process_start(pid),
            started_ms: now_ms,
            heartbeat_ms: now_ms,
            boot_id: boot.map(str::to_string),
            pid_namespace: namespace.map(str::to_string),
            generation: generation.map(str::to_string),
            pending: Vec::new(),
            flushes: None,
        };
        let path = format!("{}{id}.json", writers_prefix(table));
        store.put(&path, serialize(&record)).await?;
        // The records of writers long gone go now, so that they do not pile up for every
        // start to read: judged against this record's time of writing, on the store's clock.
        // Only housekeeping: a fault here is logged, not a reason to stop.
        let pruned = async {
            let listed = store.list(&writers_prefix(table)).await?;
            let Some(now) = listed.iter().find(|o| o.path == path).map(|o| o.modified_ms) else { return Ok(0) };
            remove_gone(store, table, &listed, now).await
        };
        match pruned.await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed the records of writers gone for ten minutes or more"),
            Err(e) => tracing::warn!(error = %e, "cannot remove the records of writers that are gone; will try at the next start"),
        }
        let record = std::sync::Arc::new(tokio::sync::Mutex::new(record));
        let renewed = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(now_ms));
        let heartbeat = {
            let (store, path, record, renewed) = (store.clone(), path.clone(), record.clone(), renewed.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(WRITER_HEARTBEAT);
                tick.tick().await; // the first tick is now: the record was just written
                loop {
                    tick.tick().await;
                    let mut record = record.lock().await;
                    let now_ms = chrono::Utc::now().timestamp_millis();
                    record.heartbeat_ms = now_ms;
                    match store.put(&path, serialize(&record)).await {
                        Ok(()) => renewed.store(now_ms, std::sync::atomic::Ordering::Release),
                        Err(e) => tracing::warn!(error = %e, record = %path, "cannot renew this writer's record; other tools take it for dead after a minute"),
                    }
                }
            })
        };
        Ok(Writer { store: store.clone(), path, record, renewed, heartbeat })
    }

    /// Fails if this writer's record was last renewed too long ago for others to still take it
    /// for alive (a store outage): what it announced may be deleted, so it must not commit.
    pub fn ensure_current(&self) -> Result<(), TableError> {
        let age = chrono::Utc::now().timestamp_millis() - self.renewed.load(std::sync::atomic::Ordering::Acquire);
        if age > WRITER_STALE_MS / 2 {
            return Err(TableError::Invalid {
                table: self.path.split('/').next().unwrap_or_default().to_string(),
                reason: format!(
                    "this writer could not renew its record ({}) for {} s: other tools may take it for dead; stopping before it commits",
                    self.path,
                    age / 1000
                ),
            });
        }
        Ok(())
    }

    /// Announces that objects under `prefix` (relative to the table) are about to be stored:
    /// durable before this returns, so before the first of them exists.
    pub async fn pending(&self, prefix: &str) -> Result<(), TableError> {
        self.pending_all(&[prefix.to_string()]).await
    }

    /// Announces several prefixes with one write of the record. A compaction of thousands of
    /// hour partitions announced each alone, and the record grows with what it holds: 6,342
    /// partitions were 6,342 fsynced writes of a record of up to 6,342 prefixes, most of the
    /// pass's 50 s.
    pub async fn pending_all(&self, prefixes: &[String]) -> Result<(), TableError> {
        let mut record = self.record.lock().await;
        for prefix in prefixes {
            if !record.pending.iter().any(|p| p == prefix) {
                record.pending.push(prefix.clone());
            }
        }
        record.heartbeat_ms = chrono::Utc::now().timestamp_millis();
        self.store.put(&self.path, serialize(&record)).await?;
        self.renewed.store(record.heartbeat_ms, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Says this writer (a consumer) stores `part-` files in `generation` before its commits:
    /// another process's restart must not take them for an interrupted flush's.
    pub async fn flushes_into(&self, generation: &str) -> Result<(), TableError> {
        let mut record = self.record.lock().await;
        record.flushes = Some(generation.to_string());
        record.heartbeat_ms = chrono::Utc::now().timestamp_millis();
        self.store.put(&self.path, serialize(&record)).await?;
        self.renewed.store(record.heartbeat_ms, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Says this writer writes `generation` (and announces its whole prefix), replacing what it
    /// said before: made before the generation's record exists, so that no gc removes the
    /// generation in between.
    pub async fn writes(&self, generation: &str) -> Result<(), TableError> {
        let mut record = self.record.lock().await;
        record.generation = Some(generation.to_string());
        record.pending = vec![format!("{generation}/")];
        record.heartbeat_ms = chrono::Utc::now().timestamp_millis();
        self.store.put(&self.path, serialize(&record)).await?;
        self.renewed.store(record.heartbeat_ms, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Withdraws prefixes: their objects are committed now, or were removed.
    pub async fn settled(&self, prefixes: &[String]) -> Result<(), TableError> {
        let mut record = self.record.lock().await;
        record.pending.retain(|p| !prefixes.contains(p));
        record.heartbeat_ms = chrono::Utc::now().timestamp_millis();
        self.store.put(&self.path, serialize(&record)).await?;
        self.renewed.store(record.heartbeat_ms, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// The writer is done: its record goes.
    pub async fn finish(self) -> Result<(), TableError> {
        self.heartbeat.abort();
        Ok(self.store.delete(&self.path).await?)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Not finished (an error on the way): the record goes stale by itself, and on this
        // host at once when the process exits.
        self.heartbeat.abort();
    }
}

/// A record's id, its object's name: kind, host, pid and start in a fixed, safe alphabet
/// (ASCII letters, digits, `-`, `.`, `_`): a kind such as `consumer --leases` or a host name
/// with spaces must not make an object name tools quote or mangle.
fn record_id(kind: &str, host: &str, pid: u32, now_ms: i64) -> String {
    let safe = |text: &str| {
        let mapped: String = text.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_') { c } else { '-' }).collect();
        let mut parts = mapped.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
        parts.truncate(64);
        if parts.is_empty() { "x".to_string() } else { parts }
    };
    format!("{}-{}-{pid}-{now_ms}", safe(kind), safe(host))
}

fn serialize(record: &WriterRecord) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(record).expect("a writer record serializes"))
}

/// This machine's name, as records carry it.
pub fn host_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "unknown-host".to_string())
    })
    .clone()
}

/// This machine's name, its boot's id and this process's pid namespace, as records carry them.
fn process_space() -> (String, Option<&'static str>, Option<&'static str>) {
    static SPACE: std::sync::OnceLock<(Option<String>, Option<String>)> = std::sync::OnceLock::new();
    let (boot, namespace) = SPACE.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|b| b.trim().to_string());
        let namespace = std::fs::read_link("/proc/self/ns/pid").ok().map(|n| n.display().to_string());
        (boot, namespace)
    });
    (host_name(), boot.as_deref(), namespace.as_deref())
}

/// When process `pid` started (field 22 of `/proc/<pid>/stat`), if it runs.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_common::store::LocalStore;

    #[tokio::test]
    async fn a_writer_is_alive_while_it_runs_and_covers_what_it_announced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path()));
        let writer = Writer::register(&store, "t", "compaction", None).await.unwrap();
        writer.pending("gen-000001/day=1/compacted-ab").await.unwrap();
        let found = alive(&store, "t").await.unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].covers("gen-000001/day=1/compacted-ab-0000.parquet"));
        assert!(!found[0].covers("gen-000001/day=2/compacted-ab-0000.parquet"));
        // Several at once, with one write: each is covered (and one already there stays once).
        writer.pending_all(&["gen-000001/day=2/compacted-cd".into(), "gen-000001/day=1/compacted-ab".into()]).await.unwrap();
        let found = alive(&store, "t").await.unwrap();
        assert!(found[0].covers("gen-000001/day=1/compacted-ab-0000.parquet") && found[0].covers("gen-000001/day=2/compacted-cd-0000.parquet"));
        assert!(!found[0].covers("gen-000001/day=3/compacted-cd-0000.parquet"));
        assert_eq!(found[0].pending.len(), 2, "{:?}", found[0].pending);
        writer.flushes_into("gen-000001").await.unwrap();
        let found = alive(&store, "t").await.unwrap();
        assert!(found[0].covers("gen-000001/day=1/part-0-1-9.parquet") && !found[0].covers("gen-000002/day=1/part-0-1-9.parquet"));
        assert!(!found[0].covers("gen-000001/day=1/notes.txt"));
        writer.settled(&["gen-000001/day=1/compacted-ab".to_string()]).await.unwrap();
        assert_eq!(alive(&store, "t").await.unwrap()[0].pending, vec!["gen-000001/day=2/compacted-cd".to_string()]);
        writer.settled(&["gen-000001/day=2/compacted-cd".to_string()]).await.unwrap();
        assert!(alive(&store, "t").await.unwrap()[0].pending.is_empty());
        writer.finish().await.unwrap();
        assert!(alive(&store, "t").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_dead_writer_protects_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path()));
        let now = chrono::Utc::now().timestamp_millis();
        let record = |pid: u32, heartbeat_ms: i64, host: &str| WriterRecord {
            id: format!("x-{pid}"),
            kind: "compaction".into(),
            host: host.into(),
            pid,
            process_start: None,
            started_ms: 0,
            heartbeat_ms,
            boot_id: process_space().1.map(str::to_string),
            pid_namespace: process_space().2.map(str::to_string),
            generation: Some("gen-000002".into()),
            pending: vec!["gen-000001/".into()],
            flushes: None,
        };
        // A process of this host that no longer runs (pids are below 2^22 on Linux).
        let gone = record(4_000_000_000, now, &host_name());
        let stale = record(std::process::id(), now - WRITER_STALE_MS - 1, &host_name());
        let elsewhere = record(1, now, "another-host");
        assert!(!gone.is_alive(now) && !stale.is_alive(now) && elsewhere.is_alive(now));
        assert!(record(std::process::id(), now, &host_name()).is_alive(now));
        for r in [&gone, &stale, &elsewhere] {
            store.put(&format!("t/_kappa/writers/{}.json", r.id), serialize(r)).await.unwrap();
        }
        assert_eq!(alive(&store, "t").await.unwrap(), vec![elsewhere]);
        assert!(is_being_written(&store, "t", "gen-000002").await.unwrap());
        // Dead, but written a moment ago on the store's clock: their records stay for now.
        assert_eq!(remove_dead(&store, "t").await.unwrap(), 0);
        assert_eq!(store.list("t/_kappa/writers/").await.unwrap().len(), 3);
    }

    /// Records go by the store's clock alone: one the store last wrote ten minutes ago goes,
    /// whatever its writer's clock put in it (an hour ahead here); one written a moment ago
    /// stays, though its writer's clock is a day behind. A writer's start removes them, and
    /// its record is named in a safe alphabet whatever the kind and host.
    #[tokio::test]
    async fn records_of_writers_gone_are_removed_by_the_stores_clock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path()));
        let now = chrono::Utc::now().timestamp_millis();
        let record = |id: &str, heartbeat_ms: i64| WriterRecord {
            id: id.into(),
            kind: "consumer".into(),
            host: "another-host".into(),
            pid: 7,
            process_start: None,
            started_ms: 0,
            heartbeat_ms,
            boot_id: None,
            pid_namespace: None,
            generation: None,
            pending: vec![],
            flushes: Some("gen-000001".into()),
        };
        let old = record("old", now + 3_600_000);
        let fresh = record("fresh", now - 86_400_000);
        for r in [&old, &fresh] {
            store.put(&format!("t/_kappa/writers/{}.json", r.id), serialize(r)).await.unwrap();
        }
        let written = std::time::SystemTime::now() - std::time::Duration::from_millis(WRITER_GONE_MS as u64 + 1_000);
        std::fs::File::options().write(true).open(dir.path().join("t/_kappa/writers/old.json")).unwrap().set_modified(written).unwrap();

        let writer = Writer::register(&store, "t", "consumer --leases", None).await.unwrap();
        let mut names: Vec<String> = store.list("t/_kappa/writers/").await.unwrap().into_iter().map(|o| o.path).collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(names[1], "t/_kappa/writers/fresh.json");
        let own = names[0].strip_prefix("t/_kappa/writers/").unwrap();
        assert!(own.starts_with("consumer-leases-"), "{own}");
        assert!(own.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)), "{own}");
        writer.finish().await.unwrap();
        assert_eq!(record_id("replay --leases", "my host (eu)", 12, 5), "replay-leases-my-host-eu-12-5");
    }
}
