//! Where a file's rows came from in the log, for files that hold rows of several shards: the
//! consumer's files of a partition's buffers from every shard, and compaction's. A file of one
//! buffer says it in its name (`part-<shard>-<first>-<last>`); these say it in their Parquet
//! footer, under [`FOOTER_KEY`], as runs of one shard's positions in the file's row order.
//!
//! Compaction orders a partition's rows by them (shard, then position), whatever files they
//! came in: two tables of the same log whose flushes cut other files (a replay with other
//! settings, a run cut by --flush-interval) compact to the same bytes, and a partition
//! compacted again with newer files gets the order it would have had compacted once.

use kappa_common::event::SequenceNumber;

/// The footer's key-value entry that holds a file's runs, as JSON:
/// `[["<shard>","<first>","<last>",<skip>,<rows>], ...]`.
pub const FOOTER_KEY: &str = "kappa.origin";

/// Rows `skip..skip + rows` of one shard's rows at positions `first..=last` in the partition,
/// as the log ordered them. A buffer is a run of all its rows (`skip` 0); compaction's files
/// hold a run per shard, split where a file ends (the rest has the same positions, a larger
/// `skip`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// As in file names ([`crate::buffer::file_name`]).
    pub shard: String,
    pub first: SequenceNumber,
    pub last: SequenceNumber,
    pub skip: u64,
    pub rows: u64,
}

impl Run {
    /// Where the run goes among a partition's rows: by shard, then position.
    pub fn order(&self) -> (&str, SequenceNumber, u64) {
        (&self.shard, self.first, self.skip)
    }
}

/// The footer entry for `runs`, in the file's row order.
pub fn to_footer(runs: &[Run]) -> String {
    let runs: Vec<serde_json::Value> = runs.iter().map(|r| serde_json::json!([r.shard, r.first.to_string(), r.last.to_string(), r.skip, r.rows])).collect();
    serde_json::Value::Array(runs).to_string()
}

/// The runs a footer entry names; `None` if it is not one this module wrote.
pub fn from_footer(text: &str) -> Option<Vec<Run>> {
    let runs: Vec<(String, String, String, u64, u64)> = serde_json::from_str(text).ok()?;
    runs.into_iter().map(|(shard, first, last, skip, rows)| Some(Run { shard, first: first.parse().ok()?, last: last.parse().ok()?, skip, rows })).collect()
}

/// The runs of a file's footer, if it has them.
pub fn of_metadata(metadata: &parquet::file::metadata::FileMetaData) -> Option<Vec<Run>> {
    let entry = metadata.key_value_metadata()?.iter().find(|kv| kv.key == FOOTER_KEY)?;
    from_footer(entry.value.as_deref()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_go_through_the_footer_unchanged() {
        let runs = vec![
            Run { shard: "shard-0".into(), first: 3.into(), last: 90.into(), skip: 0, rows: 14 },
            Run {
                shard: "shardId-000000000001".into(),
                first: "49590338271490256608559692538361571095921575989136588898".parse().unwrap(),
                last: "49590338271490256608559692540925702759324208523137515618.3".parse().unwrap(),
                skip: 5,
                rows: 2,
            },
        ];
        let text = to_footer(&runs);
        assert_eq!(from_footer(&text), Some(runs.clone()));
        assert!(text.starts_with(r#"[["shard-0","3","90",0,14],"#), "{text}");
        assert_eq!(from_footer("[[1,2]]"), None);
        assert_eq!(from_footer(r#"[["s","x","1",0,1]]"#), None, "positions are checked");
        // Ordered by shard, then position, then the rows before within the run.
        let mut order = [runs[1].clone(), Run { skip: 9, ..runs[0].clone() }, runs[0].clone()];
        order.sort_by(|a, b| a.order().cmp(&b.order()));
        assert_eq!(order.iter().map(|r| (r.shard.as_str(), r.skip)).collect::<Vec<_>>(), [("shard-0", 0), ("shard-0", 9), ("shardId-000000000001", 5)]);
    }
}
