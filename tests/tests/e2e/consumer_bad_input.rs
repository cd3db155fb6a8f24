//! Bad events are quarantined with payload, position and reason; every good one lands.

use kappa_common::log::{Log, LogConfig};
use kappa_tests::{expect_status, kappa, read_lake, run};
use serde_json::Value;

use crate::support::summary;

#[test]
fn a_bad_input_corpus_is_quarantined_and_the_good_rows_land() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    // Events as other writers may send them, not all through kappa-producer.
    let events: Vec<(&str, Option<&str>)> = vec![
        (r#"{"_kappa_id":"t:0:0","id":1,"at":"2025-03-19 10:00:00","amount":1.5}"#, None),
        ("this is not json", Some("not valid JSON")),
        (r#"[1,2,3]"#, Some("not a JSON object")),
        (r#"{"_kappa_id":"t:0:3","id":"four","at":"2025-03-19 11:00:00","amount":4}"#, Some(r#"column "id": "four" is not a valid int64"#)),
        (r#"{"_kappa_id":"t:0:4","id":5,"amount":5}"#, Some("event time column \"at\" is empty")),
        (r#"{"_kappa_id":"t:0:5","id":6,"at":"19/03/2025","amount":6}"#, Some("cannot parse \"19/03/2025\" as an event time")),
        (r#"{"_kappa_id":"t:0:6","id":7,"at":"2025-03-20 09:30:00","amount":7.25}"#, None),
        (r#"{"_kappa_id":"t:0:0","id":1,"at":"2025-03-19 10:00:00","amount":1.5}"#, None), // a redelivery
        (r#"{"_kappa_id":"t:0:8","id":9,"at":"2025-03-20 12:00:00","amount":9,"note":"new column"}"#, None),
    ];
    // Shaped events as kappa-producer stores them in its log (values in the order of a stored
    // shape), one that fits and one whose values do not.
    let shape = kappa_common::shaped::Shape::new(["_kappa_id", "id", "at", "amount"].map(String::from).to_vec());
    let shaped: Vec<(&str, Option<&str>)> =
        vec![(r#"["t:0:9",10,"2025-03-20 13:00:00",10.5]"#, None), (r#"["t:0:10",11]"#, Some("not a JSON array of 4 values: it holds 2"))];
    let log = Log::create(&log_dir, 1).unwrap();
    log.store_shape(&shape).unwrap();
    let mut writer = log.writer(0, &LogConfig::default()).unwrap();
    for (i, (payload, _)) in events.iter().enumerate() {
        writer.append(b"", payload.as_bytes(), 1_700_000_000_000 + i as i64).unwrap();
    }
    for (i, (values, _)) in shaped.iter().enumerate() {
        let mut payload = Vec::new();
        shape.begin(&mut payload);
        payload.extend_from_slice(&values.as_bytes()[1..]);
        writer.append(b"", &payload, 1_700_000_000_100 + i as i64).unwrap();
    }
    writer.close().unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, r#"{"fields":[{"name":"id","type":"int64"},{"name":"at","type":"string"},{"name":"amount","type":"float64"}]}"#).unwrap();
    let lake = dir.path().join("lake");
    let summary_path = dir.path().join("summary.json");
    let output = run(kappa("kappa-consumer", None)
        .args(["--from", &format!("log:{}", log_dir.display()), "--lake"])
        .arg(&lake)
        .arg("--schema")
        .arg(&schema)
        .args(["--event-time", "at", "--until-idle", "1s", "--summary-json"])
        .arg(&summary_path));
    expect_status(&output, 0);

    let rows = read_lake(&lake.join("events/gen-000001"));
    let mut ids: Vec<i64> = rows.iter().map(|r| r.row["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, vec![1, 7, 9, 10], "good rows once, the redelivery dropped");
    let nine = rows.iter().find(|r| r.row["id"] == 9).unwrap();
    assert_eq!(nine.row["note"], "new column", "a new column was added, not dropped");

    let errors_dir = lake.join("events/_errors/gen-000001");
    let mut quarantined: Vec<Value> = Vec::new();
    for entry in std::fs::read_dir(&errors_dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        quarantined.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
    }
    // Positions are decimal strings (Kinesis sequence numbers exceed every integer type).
    let position = |q: &Value| q["seq"].as_str().and_then(|s| s.parse::<u64>().ok());
    quarantined.sort_by_key(position);
    // A shaped event that fits no object is kept as its values.
    let expected: Vec<(u64, &str, &str)> = events.iter().chain(&shaped).enumerate().filter_map(|(i, (p, reason))| reason.map(|r| (i as u64, *p, r))).collect();
    assert_eq!(quarantined.len(), expected.len(), "{quarantined:#?}");
    for (q, (seq, payload, reason)) in quarantined.iter().zip(&expected) {
        assert_eq!(position(q), Some(*seq));
        assert_eq!(q["shard"], "0");
        assert_eq!(q["payload"], *payload, "the raw payload is kept");
        assert!(q["reason"].as_str().unwrap().contains(reason), "seq {seq}: {} lacks {reason:?}", q["reason"]);
    }
    let s = summary(&summary_path);
    assert_eq!((s["quarantined"].as_u64(), s["duplicates_dropped"].as_u64(), s["rows_written"].as_u64()), (Some(6), Some(1), Some(4)));

    // A restart re-reads nothing it committed: no new rows, no new quarantine entries.
    let output = run(kappa("kappa-consumer", None).args(["--from", &format!("log:{}", log_dir.display()), "--lake"]).arg(&lake).args([
        "--event-time",
        "at",
        "--until-idle",
        "1s",
    ]));
    expect_status(&output, 0);
    assert_eq!(read_lake(&lake.join("events/gen-000001")).len(), 4);
    assert_eq!(std::fs::read_dir(&errors_dir).unwrap().count(), 1);
}

#[test]
fn a_schema_grown_mid_stream_applies_to_every_later_row() {
    // The log source hands over 8,192 events of a shard per chunk, and chunks are decoded ahead
    // on other threads: event 12,000 adds a column in the second chunk, while the third was
    // already decoded under the first schema.
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let log = Log::create(&log_dir, 1).unwrap();
    let mut writer = log.writer(0, &LogConfig::default()).unwrap();
    for i in 0..20_000 {
        let payload = if i == 12_000 {
            format!(r#"{{"_kappa_id":"g:0:{i}","id":{i},"amount":1.5,"note":"grown"}}"#)
        } else {
            format!(r#"{{"_kappa_id":"g:0:{i}","id":{i},"amount":{i}.25}}"#)
        };
        writer.append(b"", payload.as_bytes(), 1_700_000_000_000).unwrap();
    }
    writer.close().unwrap();
    let lake = dir.path().join("lake");
    let output = run(kappa("kappa-consumer", None).args(["--from", &format!("log:{}", log_dir.display()), "--lake"]).arg(&lake).args(["--until-idle", "1s"]));
    expect_status(&output, 0);

    let mut rows = read_lake(&lake.join("events/gen-000001"));
    rows.sort_by_key(|r| r.row["id"].as_i64().unwrap());
    assert_eq!(rows.len(), 20_000);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.row["id"].as_i64(), Some(i as i64));
        let amount = if i == 12_000 { 1.5 } else { i as f64 + 0.25 };
        assert_eq!(r.row["amount"].as_f64(), Some(amount), "row {i}: {:?}", r.row);
        let note = if i == 12_000 { Value::from("grown") } else { Value::Null };
        assert_eq!(r.row.get("note").cloned().unwrap_or(Value::Null), note, "row {i}");
    }
    // The stored schema is the grown one (the first was never committed: rows came first).
    let mut versions: Vec<_> = std::fs::read_dir(lake.join("events/_kappa/gen-000001/schema")).unwrap().map(|e| e.unwrap().path()).collect();
    versions.sort();
    let stored: Value = serde_json::from_slice(&std::fs::read(versions.last().unwrap()).unwrap()).unwrap();
    let types: Vec<(String, String)> =
        stored["fields"].as_array().unwrap().iter().map(|f| (f["name"].as_str().unwrap().into(), f["type"].as_str().unwrap().into())).collect();
    assert_eq!(types, [("id", "int64"), ("amount", "float64"), ("note", "string")].map(|(n, t)| (n.to_string(), t.to_string())));
}
