//! Helpers shared by the end-to-end tests: the seed sales data and reading events back.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kappa_common::log::{Log, StartAt};
use kappa_tests::{parse_events, read_csv, seed};
use serde_json::{Map, Value};

pub type Event = Map<String, Value>;

pub fn sales_files() -> Vec<PathBuf> {
    (19..=22).map(|d| seed(&format!("supermarket/sales/supermarket_sales_202503{d}.csv"))).collect()
}

pub fn sales_args() -> Vec<String> {
    let mut args = vec!["--input".to_string()];
    args.extend(sales_files().iter().map(|p| p.display().to_string()));
    args
}

/// Reads every event of every shard of an embedded log.
pub fn read_log(dir: &std::path::Path) -> Vec<Event> {
    let log = Log::open(dir).expect("open log");
    let mut events = Vec::new();
    for shard in 0..log.shard_count() {
        let mut reader = log.reader(shard, StartAt::Earliest).expect("reader");
        while let Some(record) = reader.next().expect("read") {
            events.extend(parse_events(&record.payload));
        }
    }
    events
}

/// Checks that `events` are exactly the seed sales rows, once each, with typed values:
/// integers and floats as JSON numbers, dates and ids as strings.
pub fn assert_sales_exactly_once(events: &[Event]) {
    let mut expected: BTreeMap<String, Event> = BTreeMap::new();
    for file in sales_files() {
        for row in read_csv(&file) {
            expected.insert(row["sale_id"].as_str().unwrap().to_string(), row);
        }
    }
    assert_eq!(expected.len(), 400);
    assert_eq!(events.len(), 400, "expected 400 events, got {}", events.len());
    let mut seen_ids = std::collections::HashSet::new();
    for event in events {
        let id = event["_kappa_id"].as_str().expect("every event has an identity");
        assert!(seen_ids.insert(id.to_string()), "identity {id} twice");
        let sale_id = event["sale_id"].as_str().unwrap();
        let row = expected.remove(sale_id).unwrap_or_else(|| panic!("{sale_id} unexpected or duplicated"));
        for (column, text) in &row {
            let text = text.as_str().unwrap();
            match column.as_str() {
                "quantity" => assert_eq!(event[column].as_i64(), Some(text.parse().unwrap()), "{sale_id}.{column}"),
                "unit_price" | "total_amount" => assert_eq!(event[column].as_f64(), Some(text.parse().unwrap()), "{sale_id}.{column}"),
                _ => assert_eq!(event[column].as_str(), Some(text), "{sale_id}.{column}"),
            }
        }
        assert_eq!(event.len(), row.len() + 1, "only the CSV's columns plus the identity");
    }
    assert!(expected.is_empty());
}

pub fn summary(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("summary json")).expect("valid summary")
}
