//! JSON inputs: NDJSON (one object per line, streamed) and JSON documents (an array of
//! objects, or one object), each record flattened — and exploded — into rows.
//!
//! A bad NDJSON line is quarantined and the rest goes on. A JSON document that does not parse
//! has no trustworthy record boundaries, so it fails the run with the parser's line and column.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};

use kappa_common::flatten::{FlattenOptions, Row, flatten_record};
use kappa_common::schema::{TableSchema, infer_json_schema};
use serde_json::Value;

use super::{
    Batcher, Event, InputError, InputFormat, InputSpec, ReadStop, Reject, RejectWriter, RowContext, RowOrigin, content_identity, emit, open_with_head,
};

/// One input record before flattening: its line (NDJSON) or index (JSON array), and the
/// parsed value or why it did not parse.
struct RawRecord {
    line: u64,
    text_for_reject: Option<String>,
    value: Result<Value, String>,
}

pub struct JsonInput {
    name: String,
    identity: String,
    records: Box<dyn Iterator<Item = std::io::Result<RawRecord>> + Send>,
    /// Records read ahead for schema inference.
    buffered: VecDeque<RawRecord>,
}

impl JsonInput {
    pub fn open(spec: &InputSpec) -> Result<JsonInput, InputError> {
        let name = spec.display();
        let io = |source| InputError::Io { input: name.clone(), source };
        let (head, reader) = open_with_head(spec).map_err(io)?;
        let identity = content_identity(spec, &head).map_err(|source| InputError::Io { input: name.clone(), source })?;
        let records: Box<dyn Iterator<Item = std::io::Result<RawRecord>> + Send> = match spec.format {
            InputFormat::Ndjson => Box::new(ndjson_records(reader)),
            _ => {
                let document: Value = serde_json::from_reader(BufReader::new(reader))
                    .map_err(|e| InputError::Invalid { input: name.clone(), reason: format!("not valid JSON: {e}") })?;
                let items = match document {
                    Value::Array(items) => items,
                    object @ Value::Object(_) => vec![object],
                    other => {
                        return Err(InputError::Invalid { input: name.clone(), reason: format!("expected an array of objects or an object, found {other}") });
                    }
                };
                Box::new(items.into_iter().enumerate().map(|(i, value)| Ok(RawRecord { line: i as u64 + 1, text_for_reject: None, value: Ok(value) })))
            }
        };
        Ok(JsonInput { name, identity, records, buffered: VecDeque::new() })
    }

    fn next_record(&mut self) -> Result<Option<RawRecord>, InputError> {
        if let Some(record) = self.buffered.pop_front() {
            return Ok(Some(record));
        }
        self.records.next().transpose().map_err(|source| InputError::Io { input: self.name.clone(), source })
    }

    /// Infers the schema from the rows of the first `rows` records (flattened as configured).
    pub fn infer_schema(&mut self, rows: usize, flatten: &FlattenOptions) -> Result<TableSchema, InputError> {
        let mut sample: Vec<Row> = Vec::new();
        while self.buffered.len() < rows {
            let Some(record) = self.records.next().transpose().map_err(|source| InputError::Io { input: self.name.clone(), source })? else {
                break;
            };
            if let Ok(value) = &record.value
                && let Ok(flat) = flatten_record(value, flatten)
            {
                sample.extend(flat);
            }
            self.buffered.push_back(record);
        }
        if sample.is_empty() {
            return Err(InputError::Invalid {
                input: self.name.clone(),
                reason: "no valid JSON object in the first records to infer a schema from; pass --schema".into(),
            });
        }
        infer_json_schema(&sample).map_err(|e| InputError::Invalid { input: self.name.clone(), reason: e.to_string() })
    }

    pub fn read(mut self, pass: u64, context: &RowContext, rejects: &RejectWriter, batcher: &mut Batcher) -> Result<(), ReadStop> {
        let mut out = Vec::with_capacity(1024);
        let mut row: u64 = 0;
        while let Some(record) = self.next_record()? {
            let raw = || record.text_for_reject.clone().unwrap_or_else(|| record.value.as_ref().map(|v| v.to_string()).unwrap_or_default());
            let reject = |row: u64, reason: String| Reject { input: self.name.clone(), line: record.line, row, reason, raw: raw() };
            let rows = match &record.value {
                Ok(value) => flatten_record(value, &context.flatten).map_err(|e| e.to_string()),
                Err(parse_error) => Err(format!("not valid JSON: {parse_error}")),
            };
            match rows {
                Err(reason) => {
                    if !batcher.take_row() {
                        return Ok(());
                    }
                    emit(context, batcher, rejects, Err(reject(row, reason)))?;
                    row += 1;
                }
                Ok(flat_rows) => {
                    for flat in flat_rows {
                        if !batcher.take_row() {
                            return Ok(());
                        }
                        let origin = RowOrigin { pass, row, line: record.line };
                        row += 1;
                        let encoded = encode_row(&self.identity, &flat, origin, context, &mut out).map_err(|reason| reject(origin.row, reason));
                        emit(context, batcher, rejects, encoded)?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn encode_row(identity: &str, row: &Row, origin: RowOrigin, context: &RowContext, out: &mut Vec<u8>) -> Result<Event, String> {
    let id = context.event_id(identity, origin);
    context.encoder.encode_json_row(&id, row, out).map_err(|e| e.to_string())?;
    let event_time_ms = match &context.event_time {
        Some((column, parser)) => {
            let text = match row.get(column) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Err(format!("--event-time column {column:?} is missing or not a string/number")),
            };
            Some(parser.parse(&text).map_err(|e| format!("--event-time column {column:?}: {e}"))?)
        }
        None => None,
    };
    let (key, key_is_identity) = match context.partition_key.as_ref().and_then(|k| row.get(k)) {
        Some(Value::String(s)) if !s.is_empty() => (s.clone(), false),
        Some(Value::Null) | None => (id, true),
        Some(Value::String(_)) => (id, true),
        Some(other) => (other.to_string(), false),
    };
    Ok(Event { key, key_is_identity, payload: out.clone(), event_time_ms })
}

fn ndjson_records(reader: Box<dyn Read + Send>) -> impl Iterator<Item = std::io::Result<RawRecord>> + Send {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut line_number = 0u64;
    let mut buffer = Vec::new();
    std::iter::from_fn(move || {
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            line_number += 1;
            let text = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let value = match std::str::from_utf8(text) {
                Ok(s) => serde_json::from_str::<Value>(s).map_err(|e| e.to_string()),
                Err(_) => Err("line is not valid UTF-8".to_string()),
            };
            return Some(Ok(RawRecord { line: line_number, text_for_reject: Some(String::from_utf8_lossy(text).into_owned()), value }));
        }
    })
}
