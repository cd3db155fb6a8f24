//! What other writers did to the table's rows while a generation was current: what a switch
//! to a rebuilt generation would undo.
//!
//! A replay rebuilds the table from the log, so rows that python deltalake, Spark or a person
//! appended are not in the new generation, and rows they deleted are back. A switch once
//! dropped 5 appended rows of 1,000,005 without a word. This walks the commits since the
//! generation became current and sorts every file of the current version by whose rows it
//! holds:
//! - **ours**: written by kappa-lake (a consumer's flush, a compaction), or a foreign
//!   compaction (`dataChange: false`) of only such files: the rebuilt generation has them;
//! - **appended**: added by another writer without removing anything (an append), or
//!   compacted from only such files, or carried over by the switch that made the generation
//!   current: the switch carries these files over, untouched;
//! - anything else (a foreign DELETE, UPDATE, MERGE or overwrite; a compaction that merged
//!   appended rows with ours; versions the log no longer holds) cannot be carried, and is
//!   reported with the versions, their writers and the rows concerned.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::actions::parse_commit;
use super::authors::{Author, Authored, author_of};
use super::{DeltaError, LakeTable};

/// Whose rows a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ours,
    Appended,
    Mixed,
}

/// Other writers' changes since the current generation became current.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForeignChanges {
    /// The version at which the current generation became current.
    pub since: u64,
    /// Files (relative to the table root, as the log names them) that hold only rows other
    /// writers appended, still whole, with their rows: a switch carries them.
    pub appended: BTreeMap<String, u64>,
    /// Changes a rebuilt generation cannot carry, one sentence each.
    pub uncarriable: Vec<String>,
    /// Rows those changes removed and added.
    pub rows_removed: u64,
    pub rows_added: u64,
}

impl ForeignChanges {
    pub fn appended_rows(&self) -> u64 {
        self.appended.values().sum()
    }
}

/// One file an action names: its path, partition values (sorted, as text) and rows.
fn file_of(action: &Value) -> (String, String, u64, bool) {
    let path = action["path"].as_str().unwrap_or_default().to_string();
    let mut values: Vec<String> = action["partitionValues"].as_object().map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect()).unwrap_or_default();
    values.sort();
    let rows = action["stats"].as_str().and_then(|s| serde_json::from_str::<Value>(s).ok()).and_then(|s| s["numRecords"].as_u64()).unwrap_or(0);
    (path, values.join("/"), rows, action["dataChange"].as_bool().unwrap_or(true))
}

impl LakeTable {
    /// Other writers' changes to the rows since the current generation became current.
    pub async fn foreign_changes(&self) -> Result<ForeignChanges, DeltaError> {
        let spans = self.spans().await?;
        let latest = self.version().unwrap_or_default();
        let Some(span) = spans.last() else { return Ok(ForeignChanges::default()) };
        let mut changes = ForeignChanges { since: span.first, ..ForeignChanges::default() };
        let log_store = self.table.log_store();
        // The files the switch that made it current carried over: other writers' rows.
        let carried: Vec<String> = match log_store.read_commit_entry(span.first).await.map_err(|e| self.delta(e))? {
            Some(bytes) => parse_commit(&self.name, span.first, &bytes)?
                .iter()
                .find_map(|a| a.pointer("/commitInfo/kappa/state/carried").and_then(|c| serde_json::from_value(c.clone()).ok()))
                .unwrap_or_default(),
            None => Vec::new(),
        };
        // The files when it became current, and their rows.
        let mut files: HashMap<String, (Kind, u64, String)> = HashMap::new();
        match LakeTable::open_at(&self.name, &self.location, span.first).await {
            Ok(mut start) => {
                for file in start.file_details().await? {
                    let kind = if carried.contains(&file.path) { Kind::Appended } else { Kind::Ours };
                    let mut values: Vec<String> =
                        file.partition_values.iter().map(|(k, v)| format!("{k}={}", v.as_deref().map_or("null".into(), |v| format!("\"{v}\"")))).collect();
                    values.sort();
                    files.insert(file.path, (kind, file.num_records.unwrap_or(0), values.join("/")));
                }
            }
            Err(_) => {
                changes.uncarriable.push(format!(
                    "the log no longer holds version {} (log retention), where the current generation began: whose rows the files of that time hold cannot be told",
                    span.first
                ));
                return Ok(changes);
            }
        }
        for version in span.first + 1..=latest {
            let Some(bytes) = log_store.read_commit_entry(version).await.map_err(|e| self.delta(e))? else {
                changes.uncarriable.push(format!("the log no longer holds version {version} (log retention): what it changed cannot be told"));
                continue;
            };
            let actions = parse_commit(&self.name, version, &bytes)?;
            let authored = Authored { version, author: author_of(&actions) };
            let removed: Vec<_> = actions.iter().filter_map(|a| a.get("remove")).map(file_of).collect();
            let added: Vec<_> = actions.iter().filter_map(|a| a.get("add")).map(file_of).collect();
            let foreign = matches!(authored.author, Author::Foreign { .. });
            let removed_kinds: Vec<(Kind, u64, String)> =
                removed.iter().map(|(path, part, rows, _)| files.remove(path).unwrap_or((Kind::Ours, *rows, part.clone()))).collect();
            if !foreign {
                // kappa-lake's writers touch only the generation's own files.
                for (path, part, rows, _) in added {
                    files.insert(path, (Kind::Ours, rows, part));
                }
                continue;
            }
            if removed.is_empty() {
                for (path, part, rows, _) in added {
                    files.insert(path, (Kind::Appended, rows, part));
                }
                continue;
            }
            let rearranges = removed.iter().chain(&added).all(|(_, _, _, data_change)| !data_change);
            if rearranges {
                // A compaction: the rows stay; a merged file holds what its partition's
                // removed files held.
                let mut by_partition: BTreeMap<&str, Vec<Kind>> = BTreeMap::new();
                for (kind, _, part) in &removed_kinds {
                    by_partition.entry(part.as_str()).or_default().push(*kind);
                }
                let mut mixed = Vec::new();
                for (path, part, rows, _) in &added {
                    let kinds = by_partition.get(part.as_str()).cloned().unwrap_or_default();
                    let kind = if kinds.iter().all(|k| *k == Kind::Ours) && !kinds.is_empty() {
                        Kind::Ours
                    } else if kinds.iter().all(|k| *k == Kind::Appended) {
                        Kind::Appended
                    } else {
                        mixed.push(part.clone());
                        Kind::Mixed
                    };
                    files.insert(path.clone(), (kind, *rows, part.clone()));
                }
                if !mixed.is_empty() {
                    mixed.sort();
                    mixed.dedup();
                    changes.uncarriable.push(format!("{authored} merged rows other writers appended with the table's own (partitions {})", mixed.join(", ")));
                }
                continue;
            }
            let (gone, new): (u64, u64) = (removed_kinds.iter().map(|(_, rows, _)| rows).sum(), added.iter().map(|(_, _, rows, _)| rows).sum());
            changes.rows_removed += gone;
            changes.rows_added += new;
            changes.uncarriable.push(format!("{authored} removed {} files ({gone} rows) and added {} ({new} rows)", removed.len(), added.len()));
            for (path, part, rows, _) in added {
                files.insert(path, (Kind::Mixed, rows, part));
            }
        }
        changes.appended = files.into_iter().filter(|(_, (kind, _, _))| *kind == Kind::Appended).map(|(path, (_, rows, _))| (path, rows)).collect();
        Ok(changes)
    }
}
