//! Events into Arrow record batches, every value typed by the rules of
//! [`kappa_common::values`], whichever path decodes it.
//!
//! A chunk of events is decoded in one call. The general path has arrow-json read each event
//! (its structure, escapes, strictness) into one column of text per table column — a string's
//! contents, a number's digits as written — and [`crate::typing`] types them: a value that does
//! not fit its column (a fraction in an integer column, say) is never converted, its event is
//! quarantined with the reason. When the call fails (an event with a member the table lacks,
//! or not JSON), the chunk is examined event by event: members the table does not know grow the
//! schema (typed as the producer typed them, else by [`JsonTypeGuess`] over the whole chunk);
//! a member that is only ever null adds nothing yet (it is decoded as absent until a value
//! shows its type); what still cannot be decoded is quarantined with its reason. A column's
//! type never changes once it is in the schema: Delta does not widen a column by itself, and
//! a value converted to fit would be altered.
//!
//! Decoding ahead of the pipeline (`DecodePlan`), a run of events in the producer's plain form
//! is decoded straight into Arrow columns (`plain_columns`, the same rules); a run with a
//! value that is not plain goes to arrow-json as arrays in column order (see `positional`);
//! any other run is decoded as objects. All give the same rows, as the differential tests
//! check.

use std::cell::RefCell;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, StringArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::json::reader::Decoder as JsonDecoder;
use arrow::json::{ReaderBuilder, StructMode};
use kappa_common::event::EVENT_ID_FIELD;
use kappa_common::json::Json;
use kappa_common::schema::TableSchema;
use kappa_common::shaped::Shape;
use kappa_common::time::EventTimeFormat;

use crate::event::SourceEvent;
use crate::partition::{Granularity, Placement, row_partitions};
use crate::plain_columns;
use crate::positional::{ColumnKeys, ShapedColumns};
use crate::typing::type_columns;
use kappa_common::shaped::quote_or_backslash;

/// The table schema as decoded: its columns, the members known to be null so far, and the
/// Arrow schemas both give.
pub struct Decoder {
    schemas: Arc<Schemas>,
    /// The table's partition columns, and the same lowercase: no member of such a name becomes
    /// a column.
    partition_columns: Vec<String>,
    reserved: Vec<String>,
    version: u32,
    /// Changes whenever the schema or the null-only members do: rows decoded ahead under
    /// another state are decoded again.
    state: u64,
}

/// What decoding derives from a table schema and its null-only members.
pub struct Schemas {
    table: TableSchema,
    /// Members seen only with null values: not columns (nothing says their type yet), decoded
    /// as absent.
    null_only: Vec<String>,
    /// The typed rows: the table's columns, every one nullable (what the data files hold).
    data: SchemaRef,
    /// What arrow-json reads: every column as text, the null-only members as `Null`.
    text: SchemaRef,
    /// The columns alone as text: what arrays in column order are read as.
    text_columns: SchemaRef,
    /// The same with the identity member last.
    text_with_identity: SchemaRef,
    /// The columns' member names, for restating events as arrays.
    keys: Arc<ColumnKeys>,
}

impl Schemas {
    fn new(table: TableSchema, null_only: Vec<String>) -> Schemas {
        let data = data_schema(&table);
        let mut text: Vec<Field> = table.fields.iter().map(|c| Field::new(&c.name, DataType::Utf8, true)).collect();
        let text_columns = Arc::new(Schema::new(text.clone()));
        text.extend(null_only.iter().map(|name| Field::new(name, DataType::Null, true)));
        let mut with_identity = text.clone();
        with_identity.push(Field::new(EVENT_ID_FIELD, DataType::Utf8, true));
        let keys = Arc::new(ColumnKeys::new(&data));
        Schemas { table, null_only, data, text: Arc::new(Schema::new(text)), text_columns, text_with_identity: Arc::new(Schema::new(with_identity)), keys }
    }

    fn columns(&self) -> usize {
        self.table.fields.len()
    }

    /// Types text columns read by arrow-json (the table's columns first; null-only members and
    /// the identity after them are dropped): the rows, and those left out with their reasons.
    fn typed(&self, texts: &RecordBatch) -> Result<(RecordBatch, Vec<(usize, String)>), ArrowError> {
        type_columns(&texts.columns()[..self.columns()], &self.table, &self.data)
    }
}

/// The outcome of decoding a chunk.
pub struct Decoded {
    /// Rows that decoded, in input order: the table's columns.
    pub batch: RecordBatch,
    /// Each row's event identity (null where the event carries none).
    pub ids: StringArray,
    /// For each row of `batch`, the index of its event in the chunk.
    pub origin: Vec<usize>,
    /// Events that could not be decoded: (index in the chunk, reason), in chunk order.
    pub rejected: Vec<(usize, String)>,
}

/// The rows' Arrow schema under a table schema (every column nullable: an event may lack any
/// member): what the data files hold.
pub fn data_schema(schema: &TableSchema) -> SchemaRef {
    Arc::new(Schema::new(schema.to_arrow().fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<Field>>()))
}

/// The identities of text rows read with the identity member (their last column).
fn ids_of(texts: &RecordBatch) -> StringArray {
    texts.column(texts.num_columns() - 1).as_string::<i32>().clone()
}

thread_local! {
    /// Each thread's decoders (objects with and without the identity column, arrays), reused
    /// while the schema is the same: a new one allocates its tape anew, and growing it again
    /// was a tenth of the decoding time.
    static DECODERS: RefCell<Vec<(SchemaRef, StructMode, usize, JsonDecoder)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `decode` with this thread's decoder for `schema` rows given as `mode`, able to hold
/// `rows` rows. Numbers and booleans are read into text columns as written
/// (`coerce_primitive`): [`crate::typing`] gives them their types.
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
                let decoder = ReaderBuilder::new(schema.clone())
                    .with_strict_mode(true)
                    .with_coerce_primitive(true)
                    .with_struct_mode(mode)
                    .with_batch_size(capacity)
                    .build_decoder()?;
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

/// Decodes one row of text per event, each event fed to arrow-json on its own so that an
/// event that is not exactly one JSON value (two objects, a blank, half an object) fails the
/// call instead of shifting every later row onto the wrong event. With `resume_at`, event `i`
/// is decoded as `{` followed by its bytes from `resume_at[i]` on (its leading identity member
/// skipped).
fn decode_events(schema: &SchemaRef, events: &[&[u8]], resume_at: Option<&[usize]>) -> Result<RecordBatch, ArrowError> {
    with_decoder(schema, StructMode::ObjectOnly, events.len(), |decoder| decode_with(decoder, schema, events, resume_at))
}

/// Decodes events whose members from `members_at[i]` on are in the plain form (see
/// `positional`): straight into columns when every value is plain, else as arrays of text,
/// typed after. `None` when an event is not in the plain form, or a value does not fit.
fn decode_positional(schemas: &Schemas, events: &[&[u8]], members_at: &[usize]) -> Option<RecordBatch> {
    if let Some(batch) = plain_columns::decode(&schemas.data, &schemas.keys, events, members_at) {
        return Some(batch);
    }
    let mut arrays = Vec::with_capacity(events.iter().zip(members_at).map(|(e, at)| e.len() - at + 2).sum());
    schemas.keys.restate(events, members_at, &mut arrays)?;
    let columns = &schemas.text_columns;
    let texts = with_decoder(columns, StructMode::ListOnly, events.len(), |decoder| {
        // One array per event, built here: the arrays cannot run into each other, so they
        // are fed in one call.
        if decoder.decode(&arrays)? != arrays.len() || decoder.has_partial_record() || decoder.len() != events.len() {
            return Err(ArrowError::JsonError("not one row per event".into()));
        }
        Ok(decoder.flush()?.unwrap_or_else(|| RecordBatch::new_empty(columns.clone())))
    })
    .ok()?;
    let (batch, rejected) = schemas.typed(&texts).ok()?;
    rejected.is_empty().then_some(batch)
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

/// Rows typed from text read with the identity: the rows that fit, their identities, the
/// index of each one's event, and the events left out with their reasons.
type Typed = (RecordBatch, StringArray, Vec<usize>, Vec<(usize, String)>);

fn typed_with_ids(schemas: &Schemas, texts: &RecordBatch, ids: StringArray) -> Result<Typed, ArrowError> {
    let (batch, rejected) = schemas.typed(texts)?;
    if rejected.is_empty() {
        return Ok((batch, ids, (0..texts.num_rows()).collect(), rejected));
    }
    let origin: Vec<usize> = (0..texts.num_rows()).filter(|row| rejected.binary_search_by_key(row, |(r, _)| *r).is_err()).collect();
    let kept = arrow::array::UInt32Array::from(origin.iter().map(|&row| row as u32).collect::<Vec<_>>());
    let ids = arrow::compute::take(&ids, &kept, None)?.as_string::<i32>().clone();
    Ok((batch, ids, origin, rejected))
}

/// Decodes events whole, the identity a member like any other.
fn decode_whole(schemas: &Schemas, payloads: &[&[u8]]) -> Result<Typed, ArrowError> {
    let texts = decode_events(&schemas.text_with_identity, payloads, None)?;
    let ids = ids_of(&texts);
    typed_with_ids(schemas, &texts, ids)
}

/// What a worker thread needs to decode a chunk ahead of the pipeline: a snapshot of the
/// decoder's schemas and the partitioning settings.
#[derive(Clone)]
pub struct DecodePlan {
    schemas: Arc<Schemas>,
    state: u64,
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

/// A chunk decoded ahead, under the decoder state it names: one piece per run of events from
/// the same shard. A run's rows then go to their buffer as decoded, without a copy, and its
/// columns are freed with that buffer alone (a chunk-wide batch, sliced, would keep every
/// shard's rows alive until the last of their buffers is written).
pub struct Predecoded {
    state: u64,
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
        DecodePlan { schemas: decoder.schemas.clone(), state: decoder.state, event_time, granularity }
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
        Predecoded { state: self.state, pieces }
    }

    fn decode_run(&self, events: &[SourceEvent]) -> Option<DecodedRows> {
        let decoded = match self.decode_shaped(events) {
            Some(decoded) => decoded,
            None => {
                let objects: Vec<std::borrow::Cow<'_, [u8]>> = events.iter().map(SourceEvent::json).collect();
                let payloads: Vec<&[u8]> = objects.iter().map(|o| o.as_ref()).collect();
                self.decode_objects(&payloads)?
            }
        };
        let (batch, ids) = decoded;
        let partitions = row_partitions(&batch, |row| events[row].arrival_ms, self.event_time.as_ref(), self.granularity);
        let (batch, positions) = group_by_partition(batch, &partitions);
        Some(DecodedRows { batch, positions, ids, partitions })
    }

    /// Shaped events of one shape whose values are all plain, straight into columns: no
    /// member names to find. `None` for any other run (it is decoded as objects).
    fn decode_shaped(&self, events: &[SourceEvent]) -> Option<(RecordBatch, StringArray)> {
        let shape = events.first()?.shape.as_ref()?;
        if !events.iter().all(|e| e.shape.as_ref().is_some_and(|s| Arc::ptr_eq(s, shape))) {
            return None;
        }
        let columns = ShapedColumns::new(shape, &self.schemas.data, &self.schemas.null_only)?;
        let values: Vec<&[u8]> = events.iter().map(|e| e.payload.as_ref()).collect();
        let mut identities = Vec::with_capacity(values.len());
        for event in &values {
            identities.push(ShapedColumns::identity(event)?);
        }
        let ids = identity_array(&values, identities.iter().map(|(id, _)| id.clone()))?;
        let batch = plain_columns::decode_with(&self.schemas.data, &values, |index, event, out| columns.values(event, identities[index].1, out))?;
        Some((batch, ids))
    }

    /// Events as objects: `None` unless every one decodes and fits (the pipeline decodes the
    /// others itself, and quarantines what does not fit with its reason).
    fn decode_objects(&self, payloads: &[&[u8]]) -> Option<(RecordBatch, StringArray)> {
        let schemas = &self.schemas;
        match leading_identities(payloads) {
            Some((ids, rest_at)) => {
                if let Some(batch) = decode_positional(schemas, payloads, &rest_at) {
                    return Some((batch, ids));
                }
                let texts = decode_events(&schemas.text, payloads, Some(&rest_at)).ok()?;
                let (batch, rejected) = schemas.typed(&texts).ok()?;
                rejected.is_empty().then_some((batch, ids))
            }
            None => {
                let (batch, ids, _, rejected) = decode_whole(schemas, payloads).ok()?;
                rejected.is_empty().then_some((batch, ids))
            }
        }
    }
}

impl Predecoded {
    /// The decoder state the pieces were decoded under: a piece decoded before an earlier
    /// chunk (or piece) grew the schema is decoded again.
    pub fn state(&self) -> u64 {
        self.state
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
        Decoder { schemas: Arc::new(Schemas::new(schema, Vec::new())), partition_columns: Vec::new(), reserved: Vec::new(), version, state: 0 }
    }

    /// The table's partition columns: a member named like one never becomes a column (the
    /// table could not hold it: the Delta log refuses a data column of a partition column's
    /// name), and its events are quarantined with the reason.
    pub fn set_partition_columns(&mut self, names: &[String]) {
        self.partition_columns = names.to_vec();
        self.reserved = names.iter().map(|n| n.to_lowercase()).collect();
    }

    /// The table's partition columns as [`Decoder::set_partition_columns`] was given them.
    pub fn partition_columns(&self) -> &[String] {
        &self.partition_columns
    }

    /// True once [`Decoder::set_partition_columns`] was given the table's (a table has one at
    /// least).
    pub fn knows_partition_columns(&self) -> bool {
        !self.reserved.is_empty()
    }

    pub fn schema(&self) -> &TableSchema {
        &self.schemas.table
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// Changes whenever the schema or the null-only members do (see [`Predecoded::state`]).
    pub fn state(&self) -> u64 {
        self.state
    }

    /// The schema of decoded rows: the table's columns.
    pub fn data_schema(&self) -> &SchemaRef {
        &self.schemas.data
    }

    /// Decodes `events` (one JSON object each; `shapes[i]`, when given, the shape event `i`
    /// travelled in, whose types a new column takes). Returns the rows, and whether the schema
    /// grew (the caller stores the new version before committing rows that use it).
    pub fn decode(&mut self, events: &[&[u8]], shapes: &[Option<Arc<Shape>>]) -> (Decoded, bool) {
        let whole = |decoder: &Decoder| {
            let (batch, ids, origin, rejected) = decode_whole(&decoder.schemas, events).ok()?;
            Some(Decoded { batch, ids, origin, rejected })
        };
        if let Some(decoded) = whole(self) {
            return (decoded, false);
        }
        let (grown, changed) = self.evolve(events, shapes);
        if changed && let Some(decoded) = whole(self) {
            return (decoded, grown);
        }
        (self.decode_one_by_one(events), grown)
    }

    /// Grows the schema for what the chunk shows (see [`grow`]). Returns whether columns were
    /// added, and whether anything changed (columns, or members known to be null).
    fn evolve(&mut self, events: &[&[u8]], shapes: &[Option<Arc<Shape>>]) -> (bool, bool) {
        let growth = grow(&self.schemas.table.fields, &self.schemas.null_only, &self.reserved, events, shapes);
        let grown = growth.columns.len() > self.schemas.columns();
        let changed = grown || growth.null_only != self.schemas.null_only;
        if changed {
            let table = TableSchema::new(growth.columns).expect("grow keeps the schema valid");
            self.schemas = Arc::new(Schemas::new(table, growth.null_only));
            self.state += 1;
        }
        if grown {
            self.version += 1;
        }
        (grown, changed)
    }

    fn decode_one_by_one(&self, events: &[&[u8]]) -> Decoded {
        let schemas = &self.schemas;
        let mut texts = Vec::new();
        let mut decoded_from = Vec::new();
        let mut rejected = Vec::new();
        for (index, event) in events.iter().enumerate() {
            let reason = match Json::from_slice(event) {
                Err(e) => Some(format!("not valid JSON: {e}")),
                Ok(Json::Object(object)) => match nested_member(&object, &schemas.table).or_else(|| clashing_member(&object, &schemas.table, &self.reserved)) {
                    Some(reason) => Some(reason),
                    None => match decode_events(&schemas.text_with_identity, &[event], None) {
                        Ok(batch) => {
                            texts.push(batch);
                            decoded_from.push(index);
                            None
                        }
                        Err(e) => Some(format!("does not fit the table schema: {e}")),
                    },
                },
                Ok(other) => Some(format!("not a JSON object: {}", short(&other.to_json_string()))),
            };
            if let Some(reason) = reason {
                rejected.push((index, reason));
            }
        }
        let texts = arrow::compute::concat_batches(&schemas.text_with_identity, &texts).expect("batches share the decode schema");
        let ids = ids_of(&texts);
        let (batch, ids, kept, misfits) = typed_with_ids(schemas, &texts, ids).expect("text columns type");
        rejected.extend(misfits.into_iter().map(|(row, reason)| (decoded_from[row], reason)));
        rejected.sort_by_key(|(index, _)| *index);
        let origin = kept.into_iter().map(|row| decoded_from[row]).collect();
        Decoded { batch, ids, origin, rejected }
    }
}

/// Why an object cannot be a row because of a nested value: a column's value (columns hold
/// scalars), or a member the table lacks that is only ever nested (no column can hold it).
fn nested_member(object: &kappa_common::json::Object, table: &TableSchema) -> Option<String> {
    object.iter().find_map(|(name, value)| {
        if !matches!(value, Json::Object(_) | Json::Array(_)) || name == EVENT_ID_FIELD {
            return None;
        }
        let misfit = |column_type| kappa_common::values::Misfit { value: short(&value.to_json_string()), column_type, why: kappa_common::values::NESTED };
        Some(match table.index_of(name) {
            Some(i) => crate::typing::misfit_reason(name, &misfit(table.fields[i].column_type)),
            None => format!(
                "member {name:?} is {}, and a column holds one value: kappa-producer flattens nested input into columns (arrays become JSON text)",
                value.kind()
            ),
        })
    })
}

fn short(text: &str) -> String {
    if text.len() <= 80 { text.to_string() } else { format!("{}…", &text[..text.floor_char_boundary(80)]) }
}

mod growth;
use growth::clashing_member;
pub use growth::{Growth, grow};

#[cfg(test)]
mod differential;
#[cfg(test)]
mod tests;
