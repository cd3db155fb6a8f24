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
//!   appended rows with ours; a file of unknown origin from before the log's memory) cannot be
//!   carried, and is reported with the versions, their writers and the rows concerned.
//!
//! A scan can be continued ([`LakeTable::foreign_scan`] with the previous one): a replay
//! catching up with a live consumer reads only the versions made since, so the switch that
//! follows is not held up by the whole history.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::authors::{Author, Authored, author_of};
use super::reading::decoded;
use super::spans::GENERATION_SINCE_PROPERTY;
use super::{DeltaError, LakeTable};
use crate::state::GENERATION_PROPERTY;

/// Whose rows a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ours,
    Appended,
    /// Other writers' rows mixed with ours, or rows changed: cannot be carried.
    Mixed,
}

/// Other writers' changes since the current generation became current.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForeignChanges {
    /// The version at which the current generation became current (where the log's memory
    /// begins when it no longer holds that).
    pub since: u64,
    /// Files (relative to the table root, decoded) that hold only rows other writers appended,
    /// still whole, with their rows: a switch carries them.
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

/// A scan of the commits since a generation became current, up to `through`; continued by the
/// next [`LakeTable::foreign_scan`].
#[derive(Debug, Clone, Default)]
pub struct ForeignScan {
    pub changes: ForeignChanges,
    generation: String,
    through: u64,
    /// Every file of version `through`: whose rows, how many, its partition.
    files: HashMap<String, (Kind, u64, String)>,
}

/// A file's partition as one text, the same for a snapshot's map and an action's JSON.
fn partition_key<'a>(values: impl Iterator<Item = (&'a String, Option<&'a str>)>) -> String {
    let mut values: Vec<String> = values.map(|(k, v)| format!("{k}={}", v.unwrap_or("\u{2205}"))).collect();
    values.sort();
    values.join("/")
}

/// A file an action names: its path (decoded), partition, rows, and `dataChange`.
fn file_of(action: &Value) -> (String, String, u64, bool) {
    let path = decoded(action["path"].as_str().unwrap_or_default());
    let empty = serde_json::Map::new();
    let values = action["partitionValues"].as_object().unwrap_or(&empty);
    let partition = partition_key(values.iter().map(|(k, v)| (k, v.as_str())));
    let rows = action["stats"].as_str().and_then(|s| serde_json::from_str::<Value>(s).ok()).and_then(|s| s["numRecords"].as_u64()).unwrap_or(0);
    (path, partition, rows, action["dataChange"].as_bool().unwrap_or(true))
}

/// True for a file kappa-lake writes into `generation` (a flush's or a compaction's).
fn ours_by_name(path: &str, generation: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    path.strip_prefix(generation).is_some_and(|rest| rest.starts_with('/')) && (name.starts_with("part-") || name.starts_with(crate::COMPACTED_PREFIX))
}

impl LakeTable {
    /// Other writers' changes to the rows since the current generation became current.
    pub async fn foreign_changes(&self) -> Result<ForeignChanges, DeltaError> {
        Ok(self.foreign_scan(None).await?.changes)
    }

    /// The scan up to the loaded version, continuing `previous` when it scanned the same
    /// generation's commits up to an earlier version.
    pub async fn foreign_scan(&self, previous: Option<ForeignScan>) -> Result<ForeignScan, DeltaError> {
        let latest = self.version().unwrap_or_default();
        let configuration = self.configuration()?;
        let generation = configuration.get(GENERATION_PROPERTY).cloned().unwrap_or_default();
        let mut scan = match previous.filter(|p| p.generation == generation && p.through <= latest) {
            Some(previous) => previous,
            None => self.scan_start(&generation, configuration.get(GENERATION_SINCE_PROPERTY).and_then(|v| v.parse().ok())).await?,
        };
        if scan.through < latest {
            for (version, actions) in self.commits(scan.through + 1, latest, None).await? {
                match actions {
                    Some(actions) => scan.apply(version, &actions),
                    None => scan.changes.uncarriable.push(format!("the log no longer holds version {version} (log retention): what it changed cannot be told")),
                }
            }
            scan.through = latest;
        }
        scan.changes.appended =
            scan.files.iter().filter(|(_, (kind, _, _))| *kind == Kind::Appended).map(|(path, (_, rows, _))| (path.clone(), *rows)).collect();
        Ok(scan)
    }

    /// The files when `generation` became current (or where the log's memory begins), sorted.
    async fn scan_start(&self, generation: &str, since: Option<u64>) -> Result<ForeignScan, DeltaError> {
        let (first, start_known) = match since {
            Some(since) => (since, true),
            None => match self.spans().await?.pop() {
                Some(span) => (span.first, span.start_known),
                None => (self.version().unwrap_or_default(), false),
            },
        };
        let mut scan = ForeignScan { generation: generation.to_string(), through: first, ..ForeignScan::default() };
        scan.changes.since = first;
        let mut start = match LakeTable::open_at(&self.name, &self.location, first).await {
            Ok(start) => start,
            Err(_) => {
                scan.changes.uncarriable.push(format!(
                    "the log no longer holds version {first} (log retention), where the current generation began: whose rows the files of that time hold cannot be told"
                ));
                return Ok(scan);
            }
        };
        // The files the switch that made it current carried over: other writers' rows.
        let carried: Vec<String> = match start.commits(first, first, Some(&["commitInfo"])).await?.pop() {
            Some((_, Some(actions))) if start_known => actions
                .iter()
                .find_map(|a| a.pointer("/commitInfo/kappa/state/carried").and_then(|c| serde_json::from_value::<Vec<String>>(c.clone()).ok()))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let (mut unknown, mut unknown_rows) = (0, 0);
        for file in start.file_details().await? {
            let path = file.path; // decoded by the snapshot
            let rows = file.num_records.unwrap_or(0);
            let kind = if ours_by_name(&path, generation) {
                Kind::Ours
            } else if carried.contains(&path) {
                Kind::Appended
            } else {
                unknown += 1;
                unknown_rows += rows;
                Kind::Mixed
            };
            let partition = partition_key(file.partition_values.iter().map(|(k, v)| (k, v.as_deref())));
            scan.files.insert(path, (kind, rows, partition));
        }
        if unknown > 0 {
            let when = if start_known { "when it became current" } else { "where the log's memory of it begins" };
            scan.changes.uncarriable.push(format!(
                "{unknown} files ({unknown_rows} rows) that kappa-lake did not write were in the table at version {first}, {when}: whose rows they hold cannot be told"
            ));
        }
        Ok(scan)
    }
}

impl ForeignScan {
    /// Takes in one commit's changes.
    fn apply(&mut self, version: u64, actions: &[Value]) {
        let authored = Authored { version, author: author_of(actions) };
        let removed: Vec<_> = actions.iter().filter_map(|a| a.get("remove")).map(file_of).collect();
        let added: Vec<_> = actions.iter().filter_map(|a| a.get("add")).map(file_of).collect();
        let generation = self.generation.clone();
        // A file no commit here named: ours if its name says so, else of unknown origin.
        let removed_kinds: Vec<(Kind, u64, String)> = removed
            .iter()
            .map(|(path, part, rows, _)| {
                self.files.remove(path).unwrap_or_else(|| (if ours_by_name(path, &generation) { Kind::Ours } else { Kind::Mixed }, *rows, part.clone()))
            })
            .collect();
        if !matches!(authored.author, Author::Foreign { .. }) {
            // kappa-lake's writers touch only the generation's own files.
            for (path, part, rows, _) in added {
                self.files.insert(path, (Kind::Ours, rows, part));
            }
            return;
        }
        if removed.is_empty() {
            for (path, part, rows, _) in added {
                self.files.insert(path, (Kind::Appended, rows, part));
            }
            return;
        }
        let rearranges = removed.iter().chain(&added).all(|(_, _, _, data_change)| !data_change);
        if rearranges {
            // A compaction: the rows stay; a merged file holds what its partition's removed
            // files held. One whose partition lost nothing came from nowhere we know.
            let mut by_partition: BTreeMap<&str, Vec<Kind>> = BTreeMap::new();
            for (kind, _, part) in &removed_kinds {
                by_partition.entry(part.as_str()).or_default().push(*kind);
            }
            let mut mixed = Vec::new();
            for (path, part, rows, _) in &added {
                let kinds = by_partition.get(part.as_str()).cloned().unwrap_or_default();
                let kind = match () {
                    _ if !kinds.is_empty() && kinds.iter().all(|k| *k == Kind::Ours) => Kind::Ours,
                    _ if !kinds.is_empty() && kinds.iter().all(|k| *k == Kind::Appended) => Kind::Appended,
                    _ => {
                        mixed.push(part.clone());
                        Kind::Mixed
                    }
                };
                self.files.insert(path.clone(), (kind, *rows, part.clone()));
            }
            if !mixed.is_empty() {
                mixed.sort();
                mixed.dedup();
                self.changes.uncarriable.push(format!("{authored} merged rows other writers appended with the table's own (partitions {})", mixed.join(", ")));
            }
            return;
        }
        let (gone, new): (u64, u64) = (removed_kinds.iter().map(|(_, rows, _)| rows).sum(), added.iter().map(|(_, _, rows, _)| rows).sum());
        self.changes.rows_removed += gone;
        self.changes.rows_added += new;
        self.changes.uncarriable.push(format!("{authored} removed {} files ({gone} rows) and added {} ({new} rows)", removed.len(), added.len()));
        for (path, part, rows, _) in added {
            self.files.insert(path, (Kind::Mixed, rows, part));
        }
    }
}
