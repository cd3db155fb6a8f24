use super::*;
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::Int64Type;
use kappa_common::schema::{Column, ColumnType};
use serde_json::{Map, Value};

fn schema(cols: &[(&str, ColumnType)]) -> TableSchema {
    TableSchema::new(cols.iter().map(|(n, t)| Column { name: n.to_string(), column_type: *t, nullable: true }).collect()).unwrap()
}

#[test]
fn fast_path_types_values_and_keeps_identity() {
    let mut decoder = Decoder::new(schema(&[("n", ColumnType::Int64), ("d", ColumnType::Date), ("s", ColumnType::String)]), 1);
    let events: Vec<&[u8]> = vec![br#"{"_kappa_id":"a:0:0","n":1,"d":"2025-03-19","s":"x"}"#, br#"{"_kappa_id":"a:0:1","n":null,"d":"2025-03-20","s":"y"}"#];
    let (decoded, evolved) = decoder.decode(&events, &[]);
    assert!(!evolved);
    assert_eq!(decoded.batch.num_rows(), 2);
    assert_eq!(decoded.batch.column(0).as_primitive::<Int64Type>().value(0), 1);
    assert!(decoded.batch.column(0).is_null(1));
    assert_eq!(decoded.batch.column(1).data_type(), &DataType::Date32);
    assert_eq!(decoded.batch.num_columns(), 3, "the identity is split off");
    assert_eq!(decoded.ids.value(1), "a:0:1");
}

#[test]
fn new_columns_evolve_the_schema_and_a_fraction_never_widens_an_integer_column() {
    let mut decoder = Decoder::new(schema(&[("n", ColumnType::Int64)]), 1);
    let events: Vec<&[u8]> = vec![br#"{"n":1}"#, br#"{"n":2.5,"city":"Bangkok"}"#, br#"{"n":3,"city":"Hanoi"}"#];
    let (decoded, evolved) = decoder.decode(&events, &[]);
    assert!(evolved);
    assert_eq!(decoder.version(), 2);
    let names: Vec<(&str, ColumnType)> = decoder.schema().fields.iter().map(|c| (c.name.as_str(), c.column_type)).collect();
    assert_eq!(names, vec![("n", ColumnType::Int64), ("city", ColumnType::String)]);
    assert_eq!(decoded.origin, vec![0, 2]);
    assert_eq!(decoded.batch.column(0).as_primitive::<Int64Type>().values().to_vec(), vec![1, 3]);
    assert_eq!(decoded.rejected.len(), 1);
    let (index, reason) = &decoded.rejected[0];
    assert_eq!(*index, 1);
    assert!(reason.starts_with(r#"column "n": "2.5" is not a valid int64: it has a fraction"#), "{reason}");
    assert!(reason.contains("replay with a --schema that types n as float64"), "{reason}");
}

#[test]
fn a_member_only_ever_null_adds_no_column_and_quarantines_nothing() {
    let mut decoder = Decoder::new(schema(&[("id", ColumnType::Int64)]), 1);
    let nulls: Vec<Vec<u8>> = (0..50).map(|i| format!(r#"{{"id":{i},"x":null}}"#).into_bytes()).collect();
    let events: Vec<&[u8]> = nulls.iter().map(Vec::as_slice).collect();
    let (decoded, evolved) = decoder.decode(&events, &[]);
    assert!(!evolved, "nothing says x's type yet");
    assert_eq!((decoded.batch.num_rows(), decoded.rejected.len()), (50, 0));
    assert_eq!(decoder.schema().fields.len(), 1);
    // Decoded ahead: the same rows, without a second look.
    let objects: Vec<SourceEvent> =
        events.iter().enumerate().map(|(i, p)| SourceEvent::object(0, (i as u64).into(), 0, bytes::Bytes::copy_from_slice(p))).collect();
    let ahead = DecodePlan::new(&decoder, None, Granularity::Day).run(&objects).into_pieces().pop().and_then(|p| p.rows).expect("decoded ahead");
    assert_eq!(ahead.batch, decoded.batch);
    // Then a value: x becomes a column of its type, earlier rows hold null.
    let events: Vec<&[u8]> = vec![br#"{"id":50,"x":null}"#, br#"{"id":51,"x":7}"#];
    let (decoded, evolved) = decoder.decode(&events, &[]);
    assert!(evolved);
    assert_eq!(decoder.schema().fields[1].column_type, ColumnType::Int64);
    assert_eq!((decoded.batch.num_rows(), decoded.rejected.len()), (2, 0));
    assert!(decoded.batch.column(1).is_null(0));
}

#[test]
fn a_new_member_takes_the_type_its_producer_gave_it() {
    let mut decoder = Decoder::new(schema(&[("id", ColumnType::Int64)]), 1);
    let shape = Arc::new(Shape::typed(vec!["_kappa_id".into(), "id".into(), "at".into()], vec![None, Some(ColumnType::Int64), Some(ColumnType::Timestamp)]));
    let events: Vec<&[u8]> = vec![br#"{"_kappa_id":"a","id":1,"at":"2019-01-01T14:22:42"}"#, br#"{"_kappa_id":"b","id":2,"at":null}"#];
    let (decoded, evolved) = decoder.decode(&events, &[Some(shape.clone()), Some(shape)]);
    assert!(evolved && decoded.rejected.is_empty());
    assert_eq!(decoder.schema().fields[1].column_type, ColumnType::Timestamp);
    assert_eq!(decoded.batch.column(1).data_type(), &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())));
}

#[test]
fn undecodable_events_are_rejected_with_reasons_and_the_rest_kept() {
    let mut decoder = Decoder::new(schema(&[("n", ColumnType::Int64), ("d", ColumnType::Date)]), 1);
    let events: Vec<&[u8]> = vec![br#"{"n":1}"#, b"not json", br#"{"n":"many"}"#, b"[1,2]", br#"{"d":"2025-02-30"}"#, br#"{"n":3}"#];
    let (decoded, _) = decoder.decode(&events, &[]);
    assert_eq!(decoded.origin, vec![0, 5]);
    let indexes: Vec<usize> = decoded.rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, vec![1, 2, 3, 4]);
    assert!(decoded.rejected[0].1.starts_with("not valid JSON"));
    assert!(decoded.rejected[1].1.contains(r#""many" is not a valid int64"#), "{}", decoded.rejected[1].1);
    assert!(decoded.rejected[2].1.starts_with("not a JSON object"));
}

#[test]
fn an_event_holding_two_objects_is_rejected_not_split() {
    let mut decoder = Decoder::new(schema(&[("n", ColumnType::Int64)]), 1);
    // As many values as events: only decoding event by event notices.
    let events: Vec<&[u8]> = vec![br#"{"n":1}"#, br#"{"n":2} {"n":3}"#, b"  "];
    let (decoded, _) = decoder.decode(&events, &[]);
    assert_eq!(decoded.origin, vec![0]);
    let reasons: Vec<&str> = decoded.rejected.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(decoded.rejected.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 2], "{reasons:?}");
    assert!(reasons.iter().all(|r| r.starts_with("not valid JSON")), "{reasons:?}");
}

#[test]
fn a_leading_identity_is_sliced_out_and_anything_else_left_to_arrow() {
    assert_eq!(IDENTITY_PREFIX, format!("{{\"{EVENT_ID_FIELD}\":\"").as_bytes());
    let at = |e: &[u8]| leading_identity(e).map(|(id, rest)| (String::from_utf8(e[id].to_vec()).unwrap(), String::from_utf8(e[rest..].to_vec()).unwrap()));
    assert_eq!(at(br#"{"_kappa_id":"f0:0:7","n":1}"#), Some(("f0:0:7".into(), r#""n":1}"#.into())));
    assert_eq!(at(br#"{"_kappa_id":"f0:0:7"}"#), Some(("f0:0:7".into(), "}".into())));
    assert_eq!(at(br#"{"_kappa_id":"a"b","n":1}"#), None, "escapes");
    assert_eq!(at(br#"{ "_kappa_id":"x","n":1}"#), None, "other spacing");
    assert_eq!(at(br#"{"n":1,"_kappa_id":"x"}"#), None, "not first");
    assert_eq!(at(br#"{"_kappa_id":7,"n":1}"#), None, "not a string");
    assert_eq!(at(br#"{"_kappa_id":"x""#), None, "cut short");
}

#[test]
fn decoding_ahead_gives_the_pipelines_rows_for_any_event_shape() {
    let table = schema(&[("n", ColumnType::Int64), ("s", ColumnType::String), ("b", ColumnType::Boolean), ("f", ColumnType::Float64)]);
    // The plain form, restated as arrays: any member order, absent members, escapes.
    let plain: Vec<Vec<&[u8]>> = vec![
        vec![
            br#"{"_kappa_id":"f:0:0","s":"a\"b","n":1}"#,
            br#"{"_kappa_id":"f:0:1","b":true,"f":2.5}"#,
            br#"{"_kappa_id":"f:0:2","s":"\\","f":-1e3,"n":null,"b":false}"#,
        ],
        vec![br#"{"_kappa_id":"f:0:0","s":"\u00e9\n","n":-0}"#, br#"{"_kappa_id":"f:0:1","f":7}"#],
    ];
    let others: Vec<Vec<&[u8]>> = vec![
        // Shapes the arrays cannot take, and values arrow-json refuses in either form.
        vec![br#"{"_kappa_id":"f:0:0", "n":1}"#, br#"{"_kappa_id":"f:0:1","n":2}"#],
        vec![br#"{"_kappa_id":"f:0:0","n":1,"n":2}"#],
        vec![br#"{"_kappa_id":"f:0:0","s":{"a":1}}"#],
        vec![br#"{"_kappa_id":"f:0:0","b":1}"#],
        vec![br#"{"_kappa_id":"f:0:0","n":1.5}"#],
        vec![br#"{"_kappa_id":"f:0:0","n":-}"#],
        vec![br#"{"_kappa_id":"f:0:0","n":1,"s":"a"}"#, br#"{"_kappa_id":"f:0:1","s":"b"}"#, br#"{"_kappa_id":"f:0:2"}"#],
        vec![br#"{"_kappa_id":"f:0:0","n":1}"#, br#"{"n":2,"_kappa_id":"f:0:1"}"#, br#"{"n":3}"#],
        vec![br#"{"_kappa_id":"f:0:0","n":1}"#, br#"{"_kappa_id":"f:0:1","n":"x"}"#],
        // Whatever follows an event's object makes it not one JSON value, with no newline
        // fed after it to end a number.
        vec![br#"{"_kappa_id":"f:0:0","n":1} 5"#, br#"{"_kappa_id":"f:0:1","n":2}"#],
        vec![br#"{"_kappa_id":"f:0:0","n":1}{"n":9}"#, br#"{"_kappa_id":"f:0:1","n":2}"#],
        vec![br#"{"_kappa_id":"f:0:0","n":1}  "#, br#"{"_kappa_id":"f:0:1"}"#],
        vec![b"7", br#"{"_kappa_id":"f:0:1","n":2}"#],
        vec![br#"{"n":1} 7"#, br#"{"_kappa_id":"f:0:1","n":2}"#],
        vec![br#"{"n":1}"#, b"\"s\"", b"true"],
    ];
    for payloads in &plain {
        let (_, members_at) = leading_identities(payloads).unwrap();
        let decoder = Decoder::new(table.clone(), 1);
        assert!(decode_positional(&decoder.schemas, payloads, &members_at).is_some(), "{payloads:?} is in the plain form");
    }
    for payloads in plain.into_iter().chain(others) {
        let events: Vec<SourceEvent> =
            payloads.iter().enumerate().map(|(i, p)| SourceEvent::object(0, (i as u64).into(), 0, bytes::Bytes::copy_from_slice(p))).collect();
        let mut decoder = Decoder::new(table.clone(), 1);
        let mut pieces = DecodePlan::new(&decoder, None, Granularity::Day).run(&events).into_pieces();
        assert_eq!(pieces.len(), 1, "one shard, one piece");
        assert_eq!(pieces[0].range, 0..events.len());
        let ahead = pieces.pop().and_then(|piece| piece.rows);
        let (here, _) = decoder.decode(&payloads, &[]);
        match ahead {
            Some(rows) => {
                assert!(here.rejected.is_empty());
                assert_eq!(rows.batch, here.batch);
                assert_eq!(rows.ids, here.ids);
                assert_eq!(rows.partitions.len(), here.batch.num_rows());
            }
            None => assert!(!here.rejected.is_empty(), "only a chunk the fast path cannot take is left to the pipeline"),
        }
    }
}

/// `objects` as shaped events of `names` (each object's members in that order, all there).
fn shaped_events(names: &[&str], objects: &[&str]) -> Vec<SourceEvent> {
    let shape = Arc::new(Shape::new(names.iter().map(|n| n.to_string()).collect()));
    objects
        .iter()
        .enumerate()
        .map(|(i, object)| {
            let map: Map<String, Value> = serde_json::from_str(object).unwrap();
            let values: Vec<&Value> = names.iter().map(|n| &map[*n]).collect();
            let payload = bytes::Bytes::from(serde_json::to_vec(&values).unwrap());
            SourceEvent { shape: Some(shape.clone()), ..SourceEvent::object(0, (i as u64).into(), 0, payload) }
        })
        .collect()
}

#[test]
fn shaped_events_decode_to_the_rows_of_the_objects_they_stand_for() {
    let table = schema(&[("n", ColumnType::Int64), ("s", ColumnType::String), ("b", ColumnType::Boolean), ("f", ColumnType::Float64)]);
    let runs: Vec<(Vec<&str>, Vec<&str>, bool)> = vec![
        // Plain: straight into columns, in any order of names, a column the shape lacks null.
        (
            vec!["_kappa_id", "s", "n", "f"],
            vec![r#"{"_kappa_id":"f:0:0","s":"a\"b","n":1,"f":2.5}"#, r#"{"_kappa_id":"f:0:1","s":null,"n":-3,"f":1000.5}"#],
            true,
        ),
        (vec!["_kappa_id", "b"], vec![r#"{"_kappa_id":"f:0:0","b":true}"#], true),
        // Not plain: decoded as the objects (a nested value, a name the table lacks, an id
        // with an escape, a value arrow refuses).
        (vec!["_kappa_id", "s"], vec![r#"{"_kappa_id":"f:0:0","s":{"a":1}}"#], false),
        (vec!["_kappa_id", "n", "s"], vec![r#"{"_kappa_id":"f:0:0","n":[1,2],"s":"x"}"#], false),
        (vec!["_kappa_id", "s", "n"], vec![r#"{"_kappa_id":"f:0:0","s":["a",1],"n":1}"#], false),
        (vec!["_kappa_id", "n", "new"], vec![r#"{"_kappa_id":"f:0:0","n":1,"new":"x"}"#], false),
        (vec!["_kappa_id", "n"], vec![r#"{"_kappa_id":"f:\"0","n":1}"#], false),
        (vec!["_kappa_id", "n"], vec![r#"{"_kappa_id":"f:0:0","n":"x"}"#], false),
    ];
    for (names, objects, plain) in runs {
        let events = shaped_events(&names, &objects);
        let plan = DecodePlan::new(&Decoder::new(table.clone(), 1), None, Granularity::Day);
        assert_eq!(plan.decode_shaped(&events).is_some(), plain, "{objects:?}");
        let ahead = plan.run(&events).into_pieces().pop().and_then(|piece| piece.rows);
        let payloads: Vec<&[u8]> = objects.iter().map(|o| o.as_bytes()).collect();
        let (here, _) = Decoder::new(table.clone(), 1).decode(&payloads, &[]);
        match ahead {
            Some(rows) => {
                assert!(here.rejected.is_empty(), "{objects:?}");
                assert_eq!((rows.batch, rows.ids), (here.batch, here.ids), "{objects:?}");
            }
            None => assert!(!here.rejected.is_empty() || names.contains(&"new"), "{objects:?}"),
        }
        for (event, object) in events.iter().zip(&objects) {
            assert_eq!(event.json().as_ref(), object.as_bytes());
            assert_eq!(event.json_len(), object.len());
        }
    }
}

#[test]
fn a_chunk_is_decoded_in_one_piece_per_run_of_a_shard() {
    let table = schema(&[("n", ColumnType::Int64)]);
    // Shards 0, 0, 1, 1, 0; the second run holds an event the fast path cannot take.
    let shards_and_payloads: [(u32, &[u8]); 5] = [
        (0, br#"{"_kappa_id":"f:0:0","n":1}"#),
        (0, br#"{"_kappa_id":"f:0:1","n":2}"#),
        (1, br#"{"_kappa_id":"f:0:2","n":3}"#),
        (1, br#"{"_kappa_id":"f:0:3","n":"x"}"#),
        (0, br#"{"_kappa_id":"f:0:4","n":5}"#),
    ];
    let events: Vec<SourceEvent> = shards_and_payloads
        .iter()
        .enumerate()
        .map(|(i, (shard, p))| SourceEvent::object(*shard, (i as u64).into(), 0, bytes::Bytes::copy_from_slice(p)))
        .collect();
    let decoder = Decoder::new(table, 1);
    let predecoded = DecodePlan::new(&decoder, None, Granularity::Day).run(&events);
    assert_eq!(predecoded.state(), decoder.state());
    let pieces = predecoded.into_pieces();
    assert_eq!(pieces.iter().map(|p| p.range.clone()).collect::<Vec<_>>(), vec![0..2, 2..4, 4..5]);
    let values = |piece: &Piece| {
        piece
            .rows
            .as_ref()
            .map(|rows| (rows.batch.column(0).as_primitive::<Int64Type>().values().to_vec(), rows.ids.iter().flatten().map(str::to_string).collect::<Vec<_>>()))
    };
    assert_eq!(values(&pieces[0]), Some((vec![1, 2], vec!["f:0:0".to_string(), "f:0:1".to_string()])));
    assert_eq!(values(&pieces[1]), None, "left to the pipeline, which quarantines one event of it");
    assert_eq!(values(&pieces[2]), Some((vec![5], vec!["f:0:4".to_string()])));
}

#[test]
fn rows_are_grouped_by_partition_in_the_order_partitions_first_come() {
    use crate::partition::Partition;
    let day = |d: i64| Partition::of_millis(d * 86_400_000, Granularity::Day).unwrap();
    // Rows in days 5, 1, 5, 9, ..., with one row whose time is not usable.
    let days: Vec<i64> = (0..200).map(|i| (i * 37 + 5) % 11).collect();
    let mut partitions: Vec<Placement> = days.iter().map(|d| Ok((day(*d), d * 86_400_000))).collect();
    partitions[17] = Err("no time".into());
    let values = arrow::array::Int64Array::from_iter_values(0..200);
    let batch = RecordBatch::try_from_iter([("n", Arc::new(values) as ArrayRef)]).unwrap();
    let (grouped, positions) = group_by_partition(batch.clone(), &partitions);
    let positions = positions.expect("11 partitions are grouped");
    let n = grouped.column(0).as_primitive::<Int64Type>();
    // Every row is where `positions` says, and each partition's rows are together, in order.
    for (row, at) in positions.iter().enumerate() {
        assert_eq!(n.value(*at as usize), row as i64);
    }
    let order: Vec<i64> = n.values().to_vec();
    let mut seen_days: Vec<i64> = Vec::new();
    for row in &order[..199] {
        let d = days[*row as usize];
        if seen_days.last() != Some(&d) {
            assert!(!seen_days.contains(&d), "day {d} comes in two runs");
            seen_days.push(d);
        }
    }
    let mut first_come: Vec<i64> = Vec::new();
    for (row, d) in days.iter().enumerate() {
        if row != 17 && !first_come.contains(d) {
            first_come.push(*d);
        }
    }
    assert_eq!(seen_days, first_come);
    assert!(order.windows(2).all(|w| days[w[0] as usize] != days[w[1] as usize] || w[0] < w[1]), "rows keep their order within a day");
    assert_eq!(order[199], 17, "the row without a partition comes last");
    // Rows in fewer partitions stay as they are.
    let few: Vec<Placement> = (0..200).map(|i| Ok((day(i % 3), 0))).collect();
    let (same, none) = group_by_partition(batch.clone(), &few);
    assert!(none.is_none());
    assert_eq!(same, batch);
}
