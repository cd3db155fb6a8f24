//! Differential tests: every fast path of decoding against the general one, on random events
//! of every column type built from edge values (issue 30: a fast path once truncated 100.5
//! into an integer column the general path refused).
//!
//! The general path decodes event by event with arrow-json into text, then types the text
//! with `kappa_common::values` (itself tested against arrow's parsers). Against it:
//! - a chunk decoded whole with arrow-json ([`Decoder::decode`]);
//! - the ahead-of-time plan ([`DecodePlan::run`]) on objects: plain columns found by
//!   position (the members in column order), by name, or arrow-json;
//! - the same plan on shaped events (the embedded log's values in a shape's order).
//!
//! Every path must give the same rows, bit for bit, or refuse the same events with the same
//! reasons (the plan refuses a chunk by handing it back: the pipeline then decodes it the
//! general way, which quarantines).

use super::*;
use bytes::Bytes;
use kappa_common::schema::{Column, ColumnType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DECIMAL: ColumnType = ColumnType::Decimal { precision: 10, scale: 2 };

fn columns() -> Vec<(&'static str, ColumnType)> {
    vec![
        ("s", ColumnType::String),
        ("i", ColumnType::Int64),
        ("f", ColumnType::Float64),
        ("b", ColumnType::Boolean),
        ("d", ColumnType::Date),
        ("t", ColumnType::Timestamp),
        ("n", ColumnType::TimestampNtz),
        ("m", DECIMAL),
    ]
}

/// Values (as JSON text) a column of `column_type` takes, edge values among them.
fn fitting(column_type: ColumnType) -> Vec<String> {
    let values: &[&str] = match column_type {
        ColumnType::String => &[
            r#""a""#,
            r#""quote \" and \\ and \u00e9 and \ud83d\ude00""#,
            r#""naïve ✓""#,
            "1e3",
            "-0",
            "12345678901234567890123",
            "-9223372036854775809",
            "2.50",
            "true",
            r#""""#,
            r#""NaN""#,
        ],
        ColumnType::Int64 => {
            &["0", "-9223372036854775808", "9223372036854775807", "9007199254740993", r#""0012""#, r#"" 5 ""#, r#""+5""#, r#""NA""#, r#""""#, "-0", r#""NaN""#]
        }
        ColumnType::Float64 => &[
            "1.5",
            "-0.0",
            "1e300",
            "2.2250738585072014e-308",
            "0.30000000000000004",
            "3",
            r#""2.5""#,
            r#""NaN""#,
            "9007199254740993",
            "1e3",
            "-0",
            "18446744073709551616",
        ],
        ColumnType::Boolean => &["true", "false", r#""TRUE""#, r#""false""#, r#""null""#],
        ColumnType::Date => &[r#""2024-02-29""#, r#"" 2024-01-01""#, r#""""#, r#""1970-01-01""#],
        ColumnType::Timestamp | ColumnType::TimestampNtz => &[
            r#""2024-02-29T23:59:59.123456""#,
            r#""2024-01-01 00:00:00Z""#,
            r#""2024-06-01T10:00:00+02:00""#,
            r#""2024-06-01""#,
            r#""2024-01-01T00:00:00.5""#,
            r#""1969-12-31T23:59:59.999999Z""#,
        ],
        ColumnType::Decimal { .. } => &["12.34", "-0.5", r#""7""#, "99999999.99", "1e2", "0.10", "-0"],
    };
    values.iter().map(|v| v.to_string()).chain(["null".to_string()]).collect()
}

/// Values that some columns refuse: fractions and exponents into integers, integers beyond
/// every range, non-finite numbers, nested values, impossible dates.
fn misfits() -> Vec<String> {
    let mut values: Vec<String> = [
        "100.5",
        "1e3",
        "5.0",
        "9223372036854775808",
        "18446744073709551616",
        "-9223372036854775809",
        "1e400",
        r#""yes""#,
        r#"{"a":1}"#,
        "[1]",
        r#""2024-02-30""#,
        "123.456",
        "12345678901.5",
        r#""1700000000""#,
        "1",
    ]
    .iter()
    .map(|v| v.to_string())
    .collect();
    values.push(format!("\"{}\"", "x".repeat(5_000)));
    values
}

fn table() -> TableSchema {
    TableSchema::new(columns().into_iter().map(|(name, column_type)| Column { name: name.into(), column_type, nullable: true }).collect()).unwrap()
}

/// A random chunk: every event has the same members in the same order (so the shaped and
/// positional paths can take it), each a fitting value mostly, now and then any value.
fn chunk(rng: &mut StdRng, misfit_odds: f64) -> (Vec<String>, Vec<Vec<String>>) {
    let mut members: Vec<(&str, ColumnType)> = columns().into_iter().filter(|_| rng.random_bool(0.85)).collect();
    if rng.random_bool(0.3) {
        // Members out of column order: positional decoding must decline or cope.
        let count = members.len();
        let at = rng.random_range(0..=count);
        members.rotate_left(at % count.max(1));
    }
    let all_misfits = misfits();
    let events = rng.random_range(1..12);
    let rows = (0..events)
        .map(|_| {
            members
                .iter()
                .map(|(_, column_type)| {
                    if rng.random_bool(misfit_odds) {
                        all_misfits[rng.random_range(0..all_misfits.len())].clone()
                    } else {
                        let pool = fitting(*column_type);
                        pool[rng.random_range(0..pool.len())].clone()
                    }
                })
                .collect()
        })
        .collect();
    (members.iter().map(|(name, _)| name.to_string()).collect(), rows)
}

fn object(id: Option<&str>, names: &[String], values: &[String]) -> Vec<u8> {
    let mut members: Vec<String> = id.map(|id| format!(r#""{EVENT_ID_FIELD}":"{id}""#)).into_iter().collect();
    members.extend(names.iter().zip(values).map(|(name, value)| format!(r#""{name}":{value}"#)));
    format!("{{{}}}", members.join(",")).into_bytes()
}

/// What the general path makes of `events`: decoded one by one.
fn reference(decoder: &Decoder, events: &[&[u8]]) -> Decoded {
    decoder.decode_one_by_one(events)
}

fn plan_rows(decoder: &Decoder, events: Vec<SourceEvent>) -> Option<RecordBatch> {
    let mut pieces = DecodePlan::new(decoder, None, Granularity::Day).run(&events).into_pieces();
    assert_eq!(pieces.len(), 1, "one shard, one piece");
    let rows = pieces.pop().unwrap().rows?;
    assert!(rows.positions.is_none(), "one arrival day, one partition: rows stay in event order");
    Some(rows.batch)
}

/// Runs 400 random chunks; returns how many the plan took straight into columns from shaped
/// values, so a test can see the fast paths were exercised and not merely declined.
fn check(seed: u64, misfit_odds: f64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let decoder = Decoder::new(table(), 1);
    let plan = DecodePlan::new(&decoder, None, Granularity::Day);
    let mut shaped_fast = 0;
    for round in 0..400 {
        let (names, rows) = chunk(&mut rng, misfit_odds);
        let ids: Vec<String> = (0..rows.len()).map(|i| format!("c:{round}:{i}")).collect();
        let with_ids = rng.random_bool(0.8);
        let objects: Vec<Vec<u8>> = rows.iter().zip(&ids).map(|(values, id)| object(with_ids.then_some(id.as_str()), &names, values)).collect();
        let payloads: Vec<&[u8]> = objects.iter().map(Vec::as_slice).collect();
        let context = || format!("seed {seed} round {round}: {:#?}", objects.iter().map(|o| String::from_utf8_lossy(o).to_string()).collect::<Vec<_>>());

        let expected = reference(&decoder, &payloads);
        let all_fit = expected.rejected.is_empty();

        // A chunk decoded whole.
        let mut whole = Decoder::new(table(), 1);
        let (decoded, grew) = whole.decode(&payloads, &[]);
        assert!(!grew, "{}", context());
        assert_eq!(decoded.batch, expected.batch, "{}", context());
        assert_eq!(decoded.rejected, expected.rejected, "{}", context());
        assert_eq!(decoded.origin, expected.origin, "{}", context());

        // The plan, on objects.
        let events: Vec<SourceEvent> =
            objects.iter().enumerate().map(|(i, o)| SourceEvent::object(0, (i as u64).into(), 1_700_000_000_000, Bytes::from(o.clone()))).collect();
        match plan_rows(&decoder, events) {
            Some(batch) => {
                assert!(all_fit, "the plan took a chunk the general path refuses part of: {:?}\n{}", expected.rejected, context());
                assert_eq!(batch, expected.batch, "{}", context());
            }
            None => assert!(!all_fit, "the plan refused a chunk that fits\n{}", context()),
        }

        // The plan, on shaped events (the embedded log's form: the identity first).
        let mut shape_names = vec![EVENT_ID_FIELD.to_string()];
        shape_names.extend(names.iter().cloned());
        let shape = Arc::new(Shape::new(shape_names));
        let shaped: Vec<SourceEvent> = rows
            .iter()
            .zip(&ids)
            .enumerate()
            .map(|(i, (values, id))| {
                let payload = format!(r#"["{id}",{}]"#, values.join(","));
                SourceEvent { shape: Some(shape.clone()), ..SourceEvent::object(0, (i as u64).into(), 1_700_000_000_000, Bytes::from(payload)) }
            })
            .collect();
        let with_ids: Vec<Vec<u8>> = rows.iter().zip(&ids).map(|(values, id)| object(Some(id), &names, values)).collect();
        let with_ids: Vec<&[u8]> = with_ids.iter().map(Vec::as_slice).collect();
        let expected = reference(&decoder, &with_ids);
        shaped_fast += usize::from(plan.decode_shaped(&shaped).is_some());
        match plan_rows(&decoder, shaped) {
            Some(batch) => {
                assert!(expected.rejected.is_empty(), "shaped: the plan took what the general path refuses: {:?}\n{}", expected.rejected, context());
                assert_eq!(batch, expected.batch, "shaped\n{}", context());
            }
            None => assert!(!expected.rejected.is_empty(), "shaped: the plan refused a chunk that fits\n{}", context()),
        }
    }
    shaped_fast
}

#[test]
fn fitting_values_decode_alike_on_every_path() {
    for seed in 0..4 {
        // Most chunks fit plain columns (a quoted number does not: it goes the typed way).
        let fast = check(seed, 0.0);
        assert!(fast > 40, "seed {seed}: only {fast} of 400 chunks took the shaped fast path");
    }
}

#[test]
fn misfits_are_refused_alike_on_every_path() {
    for seed in 10..16 {
        check(seed, 0.08);
    }
}
