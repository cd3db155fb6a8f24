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
use crate::positional::{ColumnKeys, ShapedColumns};
use kappa_common::shaped::quote_or_backslash;

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
    /// The rows, grouped by partition when `positions` is given.
    pub batch: RecordBatch,
    /// Where each row (in event order) lies in `batch`.
    pub positions: Option<Vec<u32>>,
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
    ///
    /// The runs are decoded on every core: a chunk decoded by one worker left the other idle
    /// whenever the pipeline was routing (the reading phase of a 10M-row wide run kept 1.5 of
    /// 2 cores busy).
    pub fn run(&self, events: &[SourceEvent]) -> Predecoded {
        use rayon::prelude::*;
        let mut runs = Vec::new();
        let mut start = 0;
        while start < events.len() {
            let shard = events[start].shard;
            let end = events[start..].iter().position(|e| e.shard != shard).map_or(events.len(), |n| start + n);
            runs.push(start..end);
            start = end;
        }
        let pieces = runs.into_par_iter().map(|range| Piece { rows: self.decode_run(&events[range.clone()]), range }).collect();
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
            let (batch, positions) = group_by_partition(batch, &partitions);
            DecodedRows { batch, positions, ids, partitions }
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

/// A run whose rows fall in at least this many partitions is grouped by partition on the worker
/// that decoded it, and the pipeline's buffers take slices of it.
pub const GROUP_FROM_PARTITIONS: usize = 8;

/// `batch` with its rows grouped by partition (partitions in the order their first rows come,
/// each one's rows in their order; rows without one last), and where each row went; `batch`
/// itself when its rows fall in fewer than [`GROUP_FROM_PARTITIONS`] partitions. Data in no time
/// order feeds hundreds of buffers from each chunk: the pipeline reordered each chunk by buffer
/// (one gather per column) on its own thread, and its one thread is what every chunk waits
/// for; the decoding workers had time to spare.
pub fn group_by_partition(batch: RecordBatch, partitions: &[Placement]) -> (RecordBatch, Option<Vec<u32>>) {
    let mut slot_of: foldhash::HashMap<crate::partition::Partition, u32> = foldhash::HashMap::default();
    let mut counts: Vec<u32> = Vec::new();
    let mut slots = Vec::with_capacity(partitions.len());
    let mut unplaced = 0;
    for placement in partitions {
        let slot = match placement {
            Ok((partition, _)) => {
                let slot = *slot_of.entry(*partition).or_insert_with(|| {
                    counts.push(0);
                    counts.len() as u32 - 1
                });
                counts[slot as usize] += 1;
                slot
            }
            Err(_) => {
                unplaced += 1;
                u32::MAX // placed after every partition's rows
            }
        };
        slots.push(slot);
    }
    if counts.len() < GROUP_FROM_PARTITIONS {
        return (batch, None);
    }
    let mut next: Vec<u32> = counts
        .iter()
        .scan(0, |start, count| {
            let first = *start;
            *start += count;
            Some(first)
        })
        .collect();
    let mut next_unplaced = (partitions.len() - unplaced) as u32;
    let mut order = vec![0u32; partitions.len()];
    let mut positions = Vec::with_capacity(partitions.len());
    for (row, slot) in slots.into_iter().enumerate() {
        let at = match next.get_mut(slot as usize) {
            Some(at) => at,
            None => &mut next_unplaced,
        };
        order[*at as usize] = row as u32;
        positions.push(*at);
        *at += 1;
    }
    match arrow::compute::take_record_batch(&batch, &arrow::array::UInt32Array::from(order)) {
        Ok(grouped) => (grouped, Some(positions)),
        Err(_) => (batch, None),
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
mod tests;
