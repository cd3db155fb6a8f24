//! Events into Arrow record batches, with `arrow-json` doing every value conversion.
//!
//! A chunk of events is decoded in one call (the fast path). When that fails, the chunk is
//! examined line by line: columns the table does not know yet are added (nullable; the schema
//! gains a version), an integer column that receives fractions widens to float64, and what still
//! cannot be decoded is quarantined with arrow's reason. Nothing is dropped silently: a field
//! the schema lacks is a decode error here (strict mode), never ignored.
//!
//! Decoding ahead of the pipeline (`DecodePlan`), a run of events in the producer's plain form
//! is decoded straight into Arrow columns (`plain_columns`); a run with a value that is not
//! plain goes to arrow-json as arrays in column order (see `positional`); any other run is
//! decoded as objects. All three give the same rows.

use std::cell::RefCell;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, RecordBatchOptions, StringArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::json::reader::Decoder as JsonDecoder;
use arrow::json::{ReaderBuilder, StructMode};
use kappa_common::event::EVENT_ID_FIELD;
use kappa_common::schema::{Column, ColumnType, TableSchema, infer_json_schema};
use kappa_common::time::EventTimeFormat;
use serde_json::{Map, Value};

use crate::event::SourceEvent;
use crate::partition::{Granularity, Placement, row_partitions};
use crate::plain_columns;
use crate::positional::{ColumnKeys, ShapedColumns, quote_or_backslash};

/// The table schema as decoded: its columns plus the event identity.
pub struct Decoder {
    schema: TableSchema,
    version: u32,
    /// The table's columns, then the identity.
    arrow: SchemaRef,
    /// The table's columns alone: the rows' schema once the identity is taken out.
    data: SchemaRef,
    /// The columns' member names, for restating events as arrays.
    keys: Arc<ColumnKeys>,
}

/// The outcome of decoding a chunk.
pub struct Decoded {
    /// Rows that decoded, in input order: the table's columns.
    pub batch: RecordBatch,
    /// Each row's event identity (null where the event carries none).
    pub ids: StringArray,
    /// For each row of `batch`, the index of its event in the chunk.
    pub origin: Vec<usize>,
    /// Events that could not be decoded: (index in the chunk, reason).
    pub rejected: Vec<(usize, String)>,
}

/// The rows' Arrow schema under a table schema (every column nullable: an event may lack any
/// member): what the data files hold.
pub fn data_schema(schema: &TableSchema) -> SchemaRef {
    Arc::new(Schema::new(schema.to_arrow().fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<Field>>()))
}

/// What decoding derives from the table schema: the rows' schema with the identity, without
/// it, and the columns' member names.
fn decode_schemas(schema: &TableSchema) -> (SchemaRef, SchemaRef, Arc<ColumnKeys>) {
    let data = data_schema(schema);
    let mut with_identity: Vec<Field> = data.fields().iter().map(|f| f.as_ref().clone()).collect();
    with_identity.push(Field::new(EVENT_ID_FIELD, DataType::Utf8, true));
    let keys = Arc::new(ColumnKeys::new(&data));
    (Arc::new(Schema::new(with_identity)), data, keys)
}

/// Splits the identity (the last column) off decoded rows.
fn split_identity(batch: RecordBatch, data: &SchemaRef) -> Result<(RecordBatch, StringArray), ArrowError> {
    let mut columns = batch.columns().to_vec();
    let ids = columns.pop().expect("the identity column").as_string::<i32>().clone();
    Ok((RecordBatch::try_new_with_options(data.clone(), columns, &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())))?, ids))
}

thread_local! {
    /// Each thread's decoders (objects with and without the identity column, arrays), reused
    /// while the schema is the same: a new one allocates its tape anew, and growing it again
    /// was a tenth of the decoding time.
    static DECODERS: RefCell<Vec<(SchemaRef, StructMode, usize, JsonDecoder)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `decode` with this thread's decoder for `schema` rows given as `mode`, able to hold
/// `rows` rows.
fn with_decoder<T>(schema: &SchemaRef, mode: StructMode, rows: usize, decode: impl FnOnce(&mut JsonDecoder) -> Result<T, ArrowError>) -> Result<T, ArrowError> {
    DECODERS.with_borrow_mut(|cached| {
        let found = cached.iter().position(|(s, m, capacity, _)| Arc::ptr_eq(s, schema) && *m == mode && *capacity >= rows);
        let index = match found {
            Some(index) => index,
            None => {
                let capacity = rows.max(1);
                cached.retain(|(s, m, _, _)| !(Arc::ptr_eq(s, schema) && *m == mode)); // free the old tape first
                if cached.len() > 2 {
                    cached.remove(0);
                }
                let decoder = ReaderBuilder::new(schema.clone()).with_strict_mode(true).with_struct_mode(mode).with_batch_size(capacity).build_decoder()?;
                cached.push((schema.clone(), mode, capacity, decoder));
                cached.len() - 1
            }
        };
        let result = decode(&mut cached[index].3);
        if result.is_err() {
            cached.remove(index); // its state is unknown after an error
        }
        result
    })
}

/// Decodes one row per event, each event fed to arrow-json on its own so that an event that
/// is not exactly one JSON value (two objects, a blank, half an object) fails the call instead
/// of shifting every later row onto the wrong event. With `resume_at`, event `i` is decoded as
/// `{` followed by its bytes from `resume_at[i]` on (its leading identity member skipped).
fn decode_events(schema: &SchemaRef, events: &[&[u8]], resume_at: Option<&[usize]>) -> Result<RecordBatch, ArrowError> {
    with_decoder(schema, StructMode::ObjectOnly, events.len(), |decoder| decode_with(decoder, schema, events, resume_at))
}

/// Decodes events whose members from `members_at[i]` on are in the plain form (see
/// `positional`) as arrays: `None` when one is not.
fn decode_positional(schema: &SchemaRef, keys: &ColumnKeys, events: &[&[u8]], members_at: &[usize]) -> Option<RecordBatch> {
    if let Some(batch) = plain_columns::decode(schema, keys, events, members_at) {
        return Some(batch);
    }
    let mut arrays = Vec::with_capacity(events.iter().zip(members_at).map(|(e, at)| e.len() - at + 2).sum());
    keys.restate(events, members_at, &mut arrays)?;
    with_decoder(schema, StructMode::ListOnly, events.len(), |decoder| {
        // One array per event, built here: the arrays cannot run into each other, so they
        // are fed in one call.
        if decoder.decode(&arrays)? != arrays.len() || decoder.has_partial_record() || decoder.len() != events.len() {
            return Err(ArrowError::JsonError("not one row per event".into()));
        }
        Ok(decoder.flush()?.unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
    })
    .ok()
}

fn decode_with(decoder: &mut JsonDecoder, schema: &SchemaRef, events: &[&[u8]], resume_at: Option<&[usize]>) -> Result<RecordBatch, ArrowError> {
    for (index, event) in events.iter().enumerate() {
        let event = match resume_at {
            Some(resume_at) => {
                decoder.decode(b"{")?;
                &event[resume_at[index]..]
            }
            None => event,
        };
        // No newline is fed after an event: an object ends at its `}`, and anything after it
        // (a bare number left open, a second value) fails one of these checks or the flush.
        if decoder.decode(event)? != event.len() || decoder.has_partial_record() || decoder.len() != index + 1 {
            return Err(ArrowError::JsonError(format!("event {index} is not exactly one JSON value")));
        }
    }
    Ok(decoder.flush()?.unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
}

/// How the producer begins every event: the identity member first, compact.
const IDENTITY_PREFIX: &[u8; 14] = b"{\"_kappa_id\":\"";

/// Where the identity of an event that begins with it (`{"_kappa_id":"…",…`) lies, and where
/// the rest of the object starts: such events are decoded without it (a tenth less JSON to
/// tokenize) and the identity is sliced out here.
fn leading_identity(event: &[u8]) -> Option<(std::ops::Range<usize>, usize)> {
    // Compared as an array, inline: a call to memcmp per event cost 1% of a run.
    if event.first_chunk() != Some(IDENTITY_PREFIX) {
        return None;
    }
    let rest = &event[IDENTITY_PREFIX.len()..];
    // Escapes are left to arrow-json.
    let length = quote_or_backslash(rest, 0)?;
    let id = IDENTITY_PREFIX.len()..IDENTITY_PREFIX.len() + length;
    match (rest[length], event.get(id.end + 1)?) {
        (b'"', b',') => Some((id.clone(), id.end + 2)),
        (b'"', b'}') => Some((id.clone(), id.end + 1)),
        _ => None,
    }
}

/// When every event begins with its identity: the identities as a string array (UTF-8 checked
/// in one pass) and where each event's other members start.
fn leading_identities(payloads: &[&[u8]]) -> Option<(StringArray, Vec<usize>)> {
    // Pushed into a vector of the right size: collected through `Option`, it grew by
    // reallocation (0.4% of a run).
    let mut identities = Vec::with_capacity(payloads.len());
    for payload in payloads {
        identities.push(leading_identity(payload)?);
    }
    let ids = identity_array(payloads, identities.iter().map(|(id, _)| id.clone()))?;
    Some((ids, identities.into_iter().map(|(_, rest)| rest).collect()))
}

/// The identities at `ranges` of `payloads` as a string array (UTF-8 checked in one pass).
fn identity_array(payloads: &[&[u8]], ranges: impl Iterator<Item = std::ops::Range<usize>> + Clone) -> Option<StringArray> {
    let mut values = Vec::with_capacity(ranges.clone().map(|id| id.len()).sum());
    for (payload, id) in payloads.iter().zip(ranges.clone()) {
        values.extend_from_slice(&payload[id]);
    }
    let offsets = OffsetBuffer::from_lengths(ranges.map(|id| id.len()));
    StringArray::try_new(offsets, values.into(), None).ok()
}

/// Decodes events whole, the identity a member like any other, then splits it off.
fn decode_whole(arrow: &SchemaRef, data: &SchemaRef, payloads: &[&[u8]]) -> Result<(RecordBatch, StringArray), ArrowError> {
    decode_events(arrow, payloads, None).and_then(|batch| split_identity(batch, data))
}

/// What a worker thread needs to decode a chunk ahead of the pipeline: a snapshot of the
/// decoder's schemas and the partitioning settings.
#[derive(Clone)]
pub struct DecodePlan {
    arrow: SchemaRef,
    data: SchemaRef,
    keys: Arc<ColumnKeys>,
    version: u32,
    event_time: Option<(String, EventTimeFormat)>,
    granularity: Granularity,
}

/// Rows decoded ahead, with each row's identity and partition.
pub struct DecodedRows {
    pub batch: RecordBatch,
    pub ids: StringArray,
    pub partitions: Vec<Placement>,
}

/// A chunk decoded ahead, under the schema version it names: one piece per run of events from
/// the same shard. A run's rows then go to their buffer as decoded, without a copy, and its
/// columns are freed with that buffer alone (a chunk-wide batch, sliced, would keep every
/// shard's rows alive until the last of their buffers is written).
pub struct Predecoded {
    version: u32,
    pieces: Vec<Piece>,
}

/// Events `range` of a chunk, decoded.
pub struct Piece {
    pub range: std::ops::Range<usize>,
    /// `None` when the events need the pipeline's own decoder (an event that does not fit, or
    /// a schema that must grow).
    pub rows: Option<DecodedRows>,
}

impl DecodePlan {
    pub fn new(decoder: &Decoder, event_time: Option<(String, EventTimeFormat)>, granularity: Granularity) -> DecodePlan {
        DecodePlan { arrow: decoder.arrow.clone(), data: decoder.data.clone(), keys: decoder.keys.clone(), version: decoder.version, event_time, granularity }
    }

    /// Decodes `events` the way the pipeline's fast path would: the same rows, partitioned,
    /// one piece per run of a shard's events.
    pub fn run(&self, events: &[SourceEvent]) -> Predecoded {
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < events.len() {
            let shard = events[start].shard;
            let end = events[start..].iter().position(|e| e.shard != shard).map_or(events.len(), |n| start + n);
            pieces.push(Piece { range: start..end, rows: self.decode_run(&events[start..end]) });
            start = end;
        }
        Predecoded { version: self.version, pieces }
    }

    fn decode_run(&self, events: &[SourceEvent]) -> Option<DecodedRows> {
        let shaped = self.decode_shaped(events);
        let objects: Vec<std::borrow::Cow<'_, [u8]>> = if shaped.is_some() { Vec::new() } else { events.iter().map(SourceEvent::json).collect() };
        let payloads: Vec<&[u8]> = objects.iter().map(|o| o.as_ref()).collect();
        let decoded = match shaped {
            Some(decoded) => Ok(decoded),
            None => self.decode_objects(&payloads),
        };
        decoded.ok().map(|(batch, ids)| {
            let partitions = row_partitions(&batch, |row| events[row].arrival_ms, self.event_time.as_ref(), self.granularity);
            DecodedRows { batch, ids, partitions }
        })
    }

    /// Shaped events of one shape whose values are all plain, straight into columns: no
    /// member names to find. `None` for any other run (it is decoded as objects).
    fn decode_shaped(&self, events: &[SourceEvent]) -> Option<(RecordBatch, StringArray)> {
        let shape = events.first()?.shape.as_ref()?;
        if !events.iter().all(|e| e.shape.as_ref().is_some_and(|s| Arc::ptr_eq(s, shape))) {
            return None;
        }
        let columns = ShapedColumns::new(shape, &self.data)?;
        let values: Vec<&[u8]> = events.iter().map(|e| e.payload.as_ref()).collect();
        let mut identities = Vec::with_capacity(values.len());
        for event in &values {
            identities.push(ShapedColumns::identity(event)?);
        }
        let ids = identity_array(&values, identities.iter().map(|(id, _)| id.clone()))?;
        let batch = plain_columns::decode_with(&self.data, &values, |index, event, out| columns.values(event, identities[index].1, out))?;
        Some((batch, ids))
    }

    fn decode_objects(&self, payloads: &[&[u8]]) -> Result<(RecordBatch, StringArray), ArrowError> {
        match leading_identities(payloads) {
            Some((ids, rest_at)) => decode_positional(&self.data, &self.keys, payloads, &rest_at)
                .map_or_else(|| decode_events(&self.data, payloads, Some(&rest_at)), Ok)
                .map(|batch| (batch, ids)),
            None => decode_whole(&self.arrow, &self.data, payloads),
        }
    }
}

impl Predecoded {
    /// The schema version the pieces were decoded under: a piece decoded before an earlier
    /// chunk (or piece) grew the schema is decoded again.
    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn into_pieces(self) -> Vec<Piece> {
        self.pieces
    }
}

impl Decoder {
    pub fn new(schema: TableSchema, version: u32) -> Decoder {
        let (arrow, data, keys) = decode_schemas(&schema);
        Decoder { schema, version, arrow, data, keys }
    }

    pub fn schema(&self) -> &TableSchema {
        &self.schema
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// The schema of decoded rows: the table's columns.
    pub fn data_schema(&self) -> &SchemaRef {
        &self.data
    }

    /// Decodes `events` (one JSON object each). Returns the rows, and whether the schema
    /// evolved (the caller stores the new version before committing rows that use it).
    pub fn decode(&mut self, events: &[&[u8]]) -> (Decoded, bool) {
        let whole = |decoder: &Decoder| {
            let (batch, ids) = decode_whole(&decoder.arrow, &decoder.data, events).ok()?;
            Some(Decoded { batch, ids, origin: (0..events.len()).collect(), rejected: Vec::new() })
        };
        if let Some(decoded) = whole(self) {
            return (decoded, false);
        }
        let evolved = self.evolve(events);
        if evolved && let Some(decoded) = whole(self) {
            return (decoded, true);
        }
        (self.decode_one_by_one(events), evolved)
    }

    /// Grows the schema for what the chunk shows: new columns, and int64 → float64 widening.
    fn evolve(&mut self, events: &[&[u8]]) -> bool {
        let mut new_rows: Vec<Map<String, Value>> = Vec::new();
        let mut widen: Vec<usize> = Vec::new();
        for event in events {
            let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(event) else { continue };
            let mut unknown = Map::new();
            for (key, value) in object {
                if key == EVENT_ID_FIELD {
                    continue;
                }
                match self.schema.index_of(&key) {
                    None if !value.is_null() && !value.is_object() && !value.is_array() => {
                        unknown.insert(key, value);
                    }
                    Some(i) if self.schema.fields[i].column_type == ColumnType::Int64 && value.is_f64() && !widen.contains(&i) => {
                        widen.push(i);
                    }
                    _ => {}
                }
            }
            if !unknown.is_empty() {
                new_rows.push(unknown);
            }
        }
        let mut changed = false;
        for i in widen {
            tracing::info!(column = %self.schema.fields[i].name, "int64 column receives fractions: widening to float64");
            self.schema.fields[i].column_type = ColumnType::Float64;
            changed = true;
        }
        if !new_rows.is_empty()
            && let Ok(inferred) = infer_json_schema(&new_rows)
        {
            for column in inferred.fields {
                tracing::info!(column = %column.name, r#type = %column.column_type, "new column");
                self.schema.fields.push(Column { nullable: true, ..column });
                changed = true;
            }
        }
        if changed {
            self.version += 1;
            (self.arrow, self.data, self.keys) = decode_schemas(&self.schema);
        }
        changed
    }

    fn decode_one_by_one(&self, events: &[&[u8]]) -> Decoded {
        let mut batches = Vec::new();
        let mut origin = Vec::new();
        let mut rejected = Vec::new();
        for (index, event) in events.iter().enumerate() {
            let reason = match serde_json::from_slice::<Value>(event) {
                Err(e) => Some(format!("not valid JSON: {e}")),
                Ok(Value::Object(_)) => match decode_events(&self.arrow, &[event], None) {
                    Ok(batch) => {
                        batches.push(batch);
                        origin.push(index);
                        None
                    }
                    Err(e) => Some(format!("does not fit the table schema: {e}")),
                },
                Ok(other) => Some(format!("not a JSON object: {}", short(&other.to_string()))),
            };
            if let Some(reason) = reason {
                rejected.push((index, reason));
            }
        }
        let batch = arrow::compute::concat_batches(&self.arrow, &batches).expect("batches share the decode schema");
        let (batch, ids) = split_identity(batch, &self.data).expect("the decode schema ends with the identity");
        Decoded { batch, ids, origin, rejected }
    }
}

fn short(text: &str) -> String {
    if text.len() <= 80 { text.to_string() } else { format!("{}…", &text[..text.floor_char_boundary(80)]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type};

    fn schema(cols: &[(&str, ColumnType)]) -> TableSchema {
        TableSchema::new(cols.iter().map(|(n, t)| Column { name: n.to_string(), column_type: *t, nullable: true }).collect()).unwrap()
    }

    #[test]
    fn fast_path_types_values_and_keeps_identity() {
        let mut decoder = Decoder::new(schema(&[("n", ColumnType::Int64), ("d", ColumnType::Date), ("s", ColumnType::String)]), 1);
        let events: Vec<&[u8]> =
            vec![br#"{"_kappa_id":"a:0:0","n":1,"d":"2025-03-19","s":"x"}"#, br#"{"_kappa_id":"a:0:1","n":null,"d":"2025-03-20","s":"y"}"#];
        let (decoded, evolved) = decoder.decode(&events);
        assert!(!evolved);
        assert_eq!(decoded.batch.num_rows(), 2);
        assert_eq!(decoded.batch.column(0).as_primitive::<Int64Type>().value(0), 1);
        assert!(decoded.batch.column(0).is_null(1));
        assert_eq!(decoded.batch.column(1).data_type(), &DataType::Date32);
        assert_eq!(decoded.batch.num_columns(), 3, "the identity is split off");
        assert_eq!(decoded.ids.value(1), "a:0:1");
    }

    #[test]
    fn new_columns_and_widening_evolve_the_schema() {
        let mut decoder = Decoder::new(schema(&[("n", ColumnType::Int64)]), 1);
        let events: Vec<&[u8]> = vec![br#"{"n":1}"#, br#"{"n":2.5,"city":"Bangkok"}"#];
        let (decoded, evolved) = decoder.decode(&events);
        assert!(evolved);
        assert_eq!(decoder.version(), 2);
        let names: Vec<(&str, ColumnType)> = decoder.schema().fields.iter().map(|c| (c.name.as_str(), c.column_type)).collect();
        assert_eq!(names, vec![("n", ColumnType::Float64), ("city", ColumnType::String)]);
        assert_eq!(decoded.batch.column(0).as_primitive::<Float64Type>().value(1), 2.5);
        assert!(decoded.batch.column(1).is_null(0));
    }

    #[test]
    fn undecodable_events_are_rejected_with_reasons_and_the_rest_kept() {
        let mut decoder = Decoder::new(schema(&[("n", ColumnType::Int64), ("d", ColumnType::Date)]), 1);
        let events: Vec<&[u8]> = vec![br#"{"n":1}"#, b"not json", br#"{"n":"many"}"#, b"[1,2]", br#"{"d":"2025-02-30"}"#, br#"{"n":3}"#];
        let (decoded, _) = decoder.decode(&events);
        assert_eq!(decoded.origin, vec![0, 5]);
        let indexes: Vec<usize> = decoded.rejected.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, vec![1, 2, 3, 4]);
        assert!(decoded.rejected[0].1.starts_with("not valid JSON"));
        assert!(decoded.rejected[1].1.contains("does not fit the table schema"), "{}", decoded.rejected[1].1);
        assert!(decoded.rejected[2].1.starts_with("not a JSON object"));
    }

    #[test]
    fn an_event_holding_two_objects_is_rejected_not_split() {
        let mut decoder = Decoder::new(schema(&[("n", ColumnType::Int64)]), 1);
        // As many values as events: only decoding event by event notices.
        let events: Vec<&[u8]> = vec![br#"{"n":1}"#, br#"{"n":2} {"n":3}"#, b"  "];
        let (decoded, _) = decoder.decode(&events);
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
            assert!(decode_positional(&decoder.data, &decoder.keys, payloads, &members_at).is_some(), "{payloads:?} is in the plain form");
        }
        for payloads in plain.into_iter().chain(others) {
            let events: Vec<SourceEvent> =
                payloads.iter().enumerate().map(|(i, p)| SourceEvent::object(0, (i as u64).into(), 0, bytes::Bytes::copy_from_slice(p))).collect();
            let mut decoder = Decoder::new(table.clone(), 1);
            let mut pieces = DecodePlan::new(&decoder, None, Granularity::Day).run(&events).into_pieces();
            assert_eq!(pieces.len(), 1, "one shard, one piece");
            assert_eq!(pieces[0].range, 0..events.len());
            let ahead = pieces.pop().and_then(|piece| piece.rows);
            let (here, _) = decoder.decode(&payloads);
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
        let shape = Arc::new(kappa_common::shaped::Shape::new(names.iter().map(|n| n.to_string()).collect()));
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
            let (here, _) = Decoder::new(table.clone(), 1).decode(&payloads);
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
        assert_eq!(predecoded.version(), 1);
        let pieces = predecoded.into_pieces();
        assert_eq!(pieces.iter().map(|p| p.range.clone()).collect::<Vec<_>>(), vec![0..2, 2..4, 4..5]);
        let values = |piece: &Piece| {
            piece.rows.as_ref().map(|rows| {
                (rows.batch.column(0).as_primitive::<Int64Type>().values().to_vec(), rows.ids.iter().flatten().map(str::to_string).collect::<Vec<_>>())
            })
        };
        assert_eq!(values(&pieces[0]), Some((vec![1, 2], vec!["f:0:0".to_string(), "f:0:1".to_string()])));
        assert_eq!(values(&pieces[1]), None, "left to the pipeline, which quarantines one event of it");
        assert_eq!(values(&pieces[2]), Some((vec![5], vec!["f:0:4".to_string()])));
    }
}
