//! A damaged Delta log, named with its file, what the damage means and what to do.
//!
//! delta-rs reports a torn commit as "Kernel error: Json error: Truncated record whilst reading
//! string" and a lost checkpoint as "Invalid Checkpoint: Had a _last_checkpoint hint but
//! didn't find any checkpoints": true, and of no help to the person who must fix it. When
//! opening a table fails, [`diagnose`] looks at the log itself and says which file is damaged
//! and how to repair it, or nothing if the log looks whole (then delta-rs's error stands).

use deltalake_core::logstore::object_store::ObjectStoreExt as _;
use deltalake_core::logstore::object_store::path::Path;
use futures::TryStreamExt;

use super::TableLocation;

/// What is wrong with the log of the table at `location`, if something is.
pub async fn diagnose(name: &str, location: &TableLocation) -> Option<String> {
    let table = location.builder().ok()?.build().ok()?;
    let log_store = table.log_store();
    let store = log_store.object_store(None);
    let log = Path::from("_delta_log");
    let listed: Vec<_> = store.list(Some(&log)).try_collect().await.ok()?;
    let mut commits = Vec::new();
    let mut checkpoints = std::collections::BTreeSet::new();
    let mut hint = None;
    for meta in &listed {
        let file = meta.location.filename().unwrap_or_default();
        if file == "_last_checkpoint" {
            hint = Some(meta.location.clone());
        } else if let Some((digits, rest)) = file.split_once('.')
            && digits.len() == 20
            && let Ok(version) = digits.parse::<u64>()
        {
            if rest == "json" {
                commits.push(version);
            } else if rest.starts_with("checkpoint") && rest.ends_with(".parquet") {
                checkpoints.insert(version);
            }
        }
    }
    commits.sort_unstable();
    let root = location.url.as_str().trim_end_matches('/');
    let path_of = |version: u64| format!("{root}/_delta_log/{version:020}.json");
    // A commit that is not whole JSON, newest first (the likely one: a write cut off).
    for (rank, version) in commits.iter().rev().enumerate() {
        let Ok(Some(bytes)) = log_store.read_commit_entry(*version).await else { continue };
        let bad = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).find_map(|line| serde_json::from_slice::<serde_json::Value>(line).err());
        let Some(error) = bad else {
            if rank >= 10 {
                break; // the newest ten are whole: the damage, if any, is not a torn write
            }
            continue;
        };
        let path = path_of(*version);
        return Some(if rank == 0 {
            format!(
                "table {name}: its newest commit, {path}, is not whole JSON ({error}): a write that was cut off (a crash, a full disk) or a hand \
                 left it so, and no Delta reader can open the table while it is there. If no writer is running on the table, delete that one \
                 file: version {version} then never happened, and a kappa-lake writer that made it writes its rows again from the positions \
                 the commit before recorded (a foreign writer's commit must be made again by that tool)"
            )
        } else {
            format!(
                "table {name}: commit {path} is not whole JSON ({error}), and {rank} later commits build on it: deleting it would lose what \
                 they hold. Restore that file from a backup or a replica of the table; or rebuild the table with kappa-replay into a new table"
            )
        });
    }
    // A checkpoint the hint names that is not there.
    let hinted = match hint {
        Some(hint) => match store.get(&hint).await {
            Ok(result) => result.bytes().await.ok(),
            Err(_) => None,
        },
        None => None,
    };
    if let Some(data) = hinted
        && let Some(version) = serde_json::from_slice::<serde_json::Value>(&data).ok().and_then(|v| v["version"].as_u64())
        && !checkpoints.contains(&version)
    {
        let hint_path = format!("{root}/_delta_log/_last_checkpoint");
        let whole = commits.first() == Some(&0) && commits.windows(2).all(|w| w[1] == w[0] + 1);
        return Some(if whole {
            format!(
                "table {name}: {hint_path} names the checkpoint of version {version}, which is not there (deleted?). Every commit from version 0 \
                 is, so nothing is lost: delete {hint_path}, and readers rebuild the table from the commits (kappa-lake writes a new \
                 checkpoint at its next interval)"
            )
        } else {
            format!(
                "table {name}: {hint_path} names the checkpoint of version {version}, which is not there, and the commits before it were \
                 cleaned up (log retention): the log cannot rebuild the table. Restore {root}/_delta_log/{version:020}.checkpoint.parquet from \
                 a backup, or rebuild the table from its source with kappa-replay into a new table"
            )
        });
    }
    None
}
