//! The order of a partition's rows in its merged files, and their names: by shard, then
//! position, whatever files the rows came in (see `crate::origin`). A file of one buffer says
//! its shard and positions in its name; a file of several shards (the consumer's, and earlier
//! compactions') in its footer. Rows whose origin no file says (files written with
//! `--merge-shards` before files said it, or by other tools) come after, file by file in name
//! order, and make merged files that say none.

use std::collections::BTreeMap;

use kappa_common::event::SequenceNumber;
use kappa_table::{COMPACTED_PREFIX, LiveFile};

use crate::origin::Run;

/// Rows of one of the partition's files, in the order the merged files take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Piece {
    /// The file, by its index among the partition's files.
    pub file: usize,
    /// The rows of the file it is (all of them if `None`), from `offset`.
    pub offset: u64,
    pub rows: Option<u64>,
    /// Where they came from: a shard's run, by its index in [`Plan::shards`], or `None`.
    pub shard: Option<usize>,
}

/// How a partition is merged: its pieces in order, each shard's positions over all of them,
/// and the merged files' base name.
#[derive(Debug)]
pub(super) struct Plan {
    pub pieces: Vec<Piece>,
    /// Each shard's name and first and last position in the partition, in shard order.
    pub shards: Vec<(String, SequenceNumber, SequenceNumber)>,
    /// Whether every row's origin is known: then the merged files say theirs.
    pub known: bool,
    pub base: String,
}

/// Plans the merge of a partition's `files` (sorted by name), given the origin each file's
/// footer says (`None` for files of one buffer, named after it, and for files that say none).
/// `settings` are those that shape the merged bytes (see [`Plan::base`]).
pub(super) fn plan(files: &[LiveFile], origins: &[Option<Vec<Run>>], settings: &str) -> Plan {
    // Two pieces that claim the same place (shard names alike once made safe for object
    // names, `a.1` and `a_1`; a foreign footer): none is trusted, every file goes whole, in
    // name order, rather than one piece's rows left out.
    plan_known(files, origins, settings).unwrap_or_else(|| opaque_plan(files, settings))
}

/// A plan that takes every file whole, in name order.
fn opaque_plan(files: &[LiveFile], settings: &str) -> Plan {
    let mut names: Vec<(String, usize)> = files.iter().enumerate().map(|(i, f)| (f.path.rsplit('/').next().unwrap_or(&f.path).to_string(), i)).collect();
    names.sort();
    let pieces = names.iter().map(|(_, file)| Piece { file: *file, offset: 0, rows: None, shard: None }).collect();
    let base = base_name(&[], names.iter().map(|(name, _)| name.as_str()), settings);
    Plan { pieces, shards: Vec::new(), known: false, base }
}

/// [`plan`], `None` if two pieces claim the same place.
fn plan_known(files: &[LiveFile], origins: &[Option<Vec<Run>>], settings: &str) -> Option<Plan> {
    // By (shard, first position, rows of the run before): the piece and its last position;
    // then the opaque ones.
    let mut known: BTreeMap<(String, SequenceNumber, u64), (Piece, SequenceNumber)> = BTreeMap::new();
    let mut opaque = Vec::new();
    for (index, (file, origin)) in files.iter().zip(origins).enumerate() {
        let name = file.path.rsplit('/').next().unwrap_or(&file.path);
        let from_name =
            crate::buffer::parse_file_name(name).and_then(|(shard, first, last)| Some((shard.to_string(), first.parse().ok()?, last.parse().ok()?)));
        match (origin, from_name) {
            (Some(runs), _) => {
                let mut offset = 0;
                for run in runs {
                    let piece = Piece { file: index, offset, rows: Some(run.rows), shard: None };
                    if known.insert((run.shard.clone(), run.first, run.skip), (piece, run.last)).is_some() {
                        return None;
                    }
                    offset += run.rows;
                }
            }
            (None, Some((shard, first, last))) => {
                if known.insert((shard, first, 0), (Piece { file: index, offset: 0, rows: None, shard: None }, last)).is_some() {
                    return None;
                }
            }
            (None, None) => opaque.push((name.to_string(), index)),
        }
    }
    let mut shards: Vec<(String, SequenceNumber, SequenceNumber)> = Vec::new();
    let mut pieces = Vec::with_capacity(known.len() + opaque.len());
    for ((shard, first, _), (piece, last)) in known {
        match shards.last_mut() {
            Some((name, _, end)) if *name == shard => *end = (*end).max(last),
            _ => shards.push((shard, first, last)),
        }
        pieces.push(Piece { shard: Some(shards.len() - 1), ..piece });
    }
    opaque.sort();
    pieces.extend(opaque.iter().map(|(_, file)| Piece { file: *file, offset: 0, rows: None, shard: None }));
    let base = base_name(&shards, opaque.iter().map(|(name, _)| name.as_str()), settings);
    Some(Plan { pieces, shards, known: opaque.is_empty(), base })
}

/// The merged files' names: `compacted-<hash>`, the hash of each shard's first and last
/// position in the partition (and of the name of any file of unknown origin), and of the
/// settings that shape the merged bytes: two compactions with other ones (the consumer's
/// --compact and kappa-replay compact with another --target-file-size) must not write the same
/// names with other contents. The same rows give the same names, however flushes cut them.
fn base_name<'a>(shards: &[(String, SequenceNumber, SequenceNumber)], opaque: impl Iterator<Item = &'a str>, settings: &str) -> String {
    let mut key = format!("{settings};");
    for (shard, first, last) in shards {
        key.push_str(&format!("{shard}:{first:020}-{last:020};"));
    }
    for name in opaque {
        key.push_str(name);
        key.push(';');
    }
    format!("{COMPACTED_PREFIX}{:016x}", xxhash_rust::xxh3::xxh3_64(key.as_bytes()))
}

/// A merged file's origin: its rows' runs (shard index in [`Plan::shards`], rows) in its
/// order, each shard's `skip` counted on from `before` (rows of the shard in earlier merged
/// files of the partition).
pub(super) fn runs(shards: &[(String, SequenceNumber, SequenceNumber)], file: &[(usize, u64)], before: &mut [u64]) -> Vec<Run> {
    file.iter()
        .map(|(shard, rows)| {
            let (name, first, last) = &shards[*shard];
            let run = Run { shard: name.clone(), first: *first, last: *last, skip: before[*shard], rows: *rows };
            before[*shard] += rows;
            run
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(path: &str) -> LiveFile {
        LiveFile { path: format!("year=2025/month=03/day=19/{path}"), partition: "year=2025/month=03/day=19".into(), bytes: 1, rows: Some(1), added_ms: 0 }
    }

    fn run(shard: &str, first: u64, last: u64, skip: u64, rows: u64) -> Run {
        Run { shard: shard.into(), first: first.into(), last: last.into(), skip, rows }
    }

    #[test]
    fn names_follow_the_shards_ranges_not_the_flushes() {
        let live_table = [
            live("part-shard-0-00000000000000000001-00000000000000000009.parquet"),
            live("part-shard-0-00000000000000000012-00000000000000000020.parquet"),
            live("part-s1-00000000000000000003-00000000000000000004.parquet"),
        ];
        let replayed =
            [live("part-shard-0-00000000000000000001-00000000000000000020.parquet"), live("part-s1-00000000000000000003-00000000000000000004.parquet")];
        let base = |files: &[LiveFile], settings| plan(files, &vec![None; files.len()], settings).base;
        assert_eq!(base(&live_table, "s"), base(&replayed, "s"));
        assert_ne!(base(&live_table, "s"), base(&replayed[..1], "s"));
        assert_ne!(base(&live_table, "s"), base(&live_table, "other settings"), "other settings, other names");
        assert!(base(&replayed, "s").starts_with(COMPACTED_PREFIX));
        // The same rows in a file of both shards, saying so in its footer: the same name.
        let merged = [live("part-0123456789abcdef0123456789abcdef.parquet")];
        assert_eq!(plan(&merged, &[Some(vec![run("shard-0", 1, 20, 0, 7), run("s1", 3, 4, 0, 2)])], "s").base, base(&replayed, "s"));
    }

    #[test]
    fn rows_go_by_shard_and_position_whatever_files_they_came_in() {
        // A merged file of both shards' first buffers, one of shard 0's later rows, another
        // merged file of their last ones (the second of shard 1's in it first: footers say the
        // file's order, which the plan does not trust), and a file of unknown origin.
        let files = [
            live("compacted-00000000000000aa-0000.parquet"),
            live("part-0123456789abcdef0123456789abcdef.parquet"),
            live("part-1123456789abcdef0123456789abcdef.parquet"),
            live("part-shard-0-00000000000000000012-00000000000000000020.parquet"),
        ];
        let origins = [
            None,
            Some(vec![run("shard-0", 1, 9, 0, 5), run("shard-1", 2, 8, 0, 3)]),
            Some(vec![run("shard-1", 30, 40, 0, 4), run("shard-0", 21, 25, 0, 2)]),
            None,
        ];
        let plan = plan(&files, &origins, "s");
        let pieces: Vec<_> = plan.pieces.iter().map(|p| (p.file, p.offset, p.rows, p.shard)).collect();
        assert_eq!(
            pieces,
            [(1, 0, Some(5), Some(0)), (3, 0, None, Some(0)), (2, 4, Some(2), Some(0)), (1, 5, Some(3), Some(1)), (2, 0, Some(4), Some(1)), (0, 0, None, None)]
        );
        assert_eq!(plan.shards, [("shard-0".to_string(), 1.into(), 25.into()), ("shard-1".to_string(), 2.into(), 40.into())]);
        assert!(!plan.known, "a file of unknown origin");
        // A run split over two merged files goes on where the first ended.
        let mut before = vec![0, 0];
        assert_eq!(runs(&plan.shards, &[(0, 6)], &mut before), [run("shard-0", 1, 25, 0, 6)]);
        assert_eq!(runs(&plan.shards, &[(0, 4), (1, 7)], &mut before), [run("shard-0", 1, 25, 6, 4), run("shard-1", 2, 40, 0, 7)]);
        // Merged again, their footers put the rows back in the same order.
        let again = [live("compacted-00000000000000bb-0000.parquet"), live("compacted-00000000000000bb-0001.parquet")];
        let again = super::plan(&again, &[Some(vec![run("shard-0", 1, 25, 0, 6)]), Some(vec![run("shard-0", 1, 25, 6, 4), run("shard-1", 2, 40, 0, 7)])], "s");
        let pieces: Vec<_> = again.pieces.iter().map(|p| (p.file, p.offset, p.rows, p.shard)).collect();
        assert_eq!(pieces, [(0, 0, Some(6), Some(0)), (1, 0, Some(4), Some(0)), (1, 4, Some(7), Some(1))]);
        assert_eq!(again.base, base_name(&plan.shards, std::iter::empty(), "s"), "the same rows, the same name");
    }

    #[test]
    fn pieces_that_claim_the_same_place_make_every_file_go_whole() {
        // Shards `a.1` and `a_1` are both `a_1` in names; a footer repeating a run.
        let files = [live("part-a_1-00000000000000000001-00000000000000000009.parquet"), live("part-0123456789abcdef0123456789abcdef.parquet")];
        let plan = plan(&files, &[None, Some(vec![run("a_1", 1, 5, 0, 3), run("b", 1, 2, 0, 1)])], "s");
        assert!(!plan.known);
        let pieces: Vec<_> = plan.pieces.iter().map(|p| (p.file, p.offset, p.rows, p.shard)).collect();
        assert_eq!(pieces, [(1, 0, None, None), (0, 0, None, None)], "every row of both, by name");
    }
}
