//! JSON inputs: NDJSON (one object per line, streamed) and JSON documents (an array of
//! objects, or one object), each record flattened — and exploded — into rows.
//!
//! A bad NDJSON line is quarantined and the rest goes on; so is a bad element of a JSON array
//! (one nested too deep, say), since the array's structure still says where each element
//! ends. A document whose structure is broken (unclosed, truncated) has no trustworthy record
//! boundaries: it fails the run with the line and byte where the structure broke.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};

use kappa_common::flatten::{FlattenOptions, Row, flatten_record};
use kappa_common::json::Json;
use kappa_common::schema::{TableSchema, infer_json_schema};

use super::{
    Batcher, Event, InputError, InputFormat, InputSpec, ReadStop, Reject, RejectWriter, RowContext, RowOrigin, content_identity, emit, open_with_head,
};

/// One input record before flattening: its line (NDJSON) or index (JSON array), and the
/// parsed value or why it did not parse.
struct RawRecord {
    line: u64,
    text_for_reject: Option<String>,
    /// Numbers keep their digits as written (see `kappa_common::json`).
    value: Result<Json, String>,
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
                let mut document = Vec::new();
                BufReader::new(reader).read_to_end(&mut document).map_err(io)?;
                let elements = document_elements(&document).map_err(|reason| InputError::Invalid { input: name.clone(), reason })?;
                Box::new(elements.into_iter().map(move |(line, range)| {
                    let text = &document[range];
                    let value = Json::from_slice(text).map_err(|e| e.to_string());
                    let text_for_reject = value.is_err().then(|| String::from_utf8_lossy(text).into_owned());
                    Ok(RawRecord { line, text_for_reject, value })
                }))
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
            // A row that names the reserved identity member is rejected when read; it must not
            // make the whole schema invalid.
            if let Ok(value) = &record.value
                && let Ok(flat) = flatten_record(value, flatten)
            {
                sample.extend(flat.into_iter().filter(|row| !row.contains_key(kappa_common::event::EVENT_ID_FIELD)));
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
                Some(Json::String(s) | Json::Number(s)) => s.clone(),
                _ => return Err(format!("--event-time column {column:?} is missing or not a string/number")),
            };
            Some(parser.parse(&text).map_err(|e| format!("--event-time column {column:?}: {e}"))?)
        }
        None => None,
    };
    let (key, key_is_identity) = match context.partition_key.as_ref().and_then(|k| row.get(k)) {
        Some(Json::String(s)) if !s.is_empty() => (s.clone(), false),
        Some(Json::Null) | None => (id, true),
        Some(Json::String(_)) => (id, true),
        Some(other) => (other.to_json_string(), false),
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
                Ok(s) => Json::parse(s).map_err(|e| e.to_string()),
                Err(_) => Err("line is not valid UTF-8".to_string()),
            };
            return Some(Ok(RawRecord { line: line_number, text_for_reject: Some(String::from_utf8_lossy(text).into_owned()), value }));
        }
    })
}

/// Checks that a JSON document begins as an array or an object (it is parsed when read).
pub(super) fn check_document(spec: &InputSpec) -> Result<(), InputError> {
    let name = spec.display();
    let mut reader = BufReader::new(spec.open().map_err(|source| InputError::Io { input: name.clone(), source })?);
    loop {
        let buffer = reader.fill_buf().map_err(|source| InputError::Io { input: name.clone(), source })?;
        let Some(&first) = buffer.iter().find(|b| !b.is_ascii_whitespace()) else {
            if buffer.is_empty() {
                return Err(InputError::Invalid { input: name, reason: "the file is empty (expected a JSON array or object)".into() });
            }
            let length = buffer.len();
            reader.consume(length);
            continue;
        };
        return match first {
            b'[' | b'{' => Ok(()),
            other => Err(InputError::Invalid {
                input: name,
                reason: format!("expected a JSON array of objects or an object, found {:?} first (NDJSON files are named .ndjson or .jsonl)", other as char),
            }),
        };
    }
}

/// The records of a JSON document, as (line, byte range): each element of a top-level array,
/// or the document itself when it is one object. Elements are split by their structure alone
/// (brackets outside strings), so each is parsed on its own and a bad one is rejected alone.
fn document_elements(document: &[u8]) -> Result<Vec<(u64, std::ops::Range<usize>)>, String> {
    let mut line = 1u64;
    let mut at = 0;
    let skip_blank = |at: &mut usize, line: &mut u64| {
        while let Some(&b) = document.get(*at) {
            if !b.is_ascii_whitespace() {
                break;
            }
            *line += u64::from(b == b'\n');
            *at += 1;
        }
    };
    let broken = |line: u64, at: usize, what: &str| format!("not valid JSON: {what} at line {line}, byte {at}");
    skip_blank(&mut at, &mut line);
    let elements = match document.get(at) {
        None => return Err("the file is empty (expected a JSON array or object)".into()),
        Some(b'{') => {
            let start = (line, at);
            let end = value_end(document, at, &mut line).ok_or_else(|| broken(start.0, start.1, "an object that does not end"))?;
            at = end;
            vec![(start.0, start.1..end)]
        }
        Some(b'[') => {
            at += 1;
            let mut elements = Vec::new();
            loop {
                skip_blank(&mut at, &mut line);
                match document.get(at) {
                    Some(b']') if elements.is_empty() => {
                        at += 1;
                        break;
                    }
                    None => return Err(broken(line, at, "the array does not end")),
                    _ => {}
                }
                let start = (line, at);
                let end = value_end(document, at, &mut line).ok_or_else(|| broken(start.0, start.1, "an element that does not end"))?;
                elements.push((start.0, start.1..end));
                at = end;
                skip_blank(&mut at, &mut line);
                match document.get(at) {
                    Some(b',') => at += 1,
                    Some(b']') => {
                        at += 1;
                        break;
                    }
                    _ => return Err(broken(line, at, "expected ',' or ']' after an element")),
                }
            }
            elements
        }
        Some(&other) => return Err(format!("expected a JSON array of objects or an object, found {:?} first", other as char)),
    };
    skip_blank(&mut at, &mut line);
    if at < document.len() {
        return Err(broken(line, at, "more data after the document"));
    }
    Ok(elements)
}

/// Where the JSON value starting at `start` ends (exclusive), by its brackets and strings
/// alone; counts the newlines it passes. `None` if the document ends first.
fn value_end(document: &[u8], start: usize, line: &mut u64) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = start;
    loop {
        let &b = document.get(at)?;
        match b {
            b'"' => {
                at += 1;
                loop {
                    match *document.get(at)? {
                        b'\\' => at += 2,
                        b'"' => break,
                        b'\n' => {
                            *line += 1;
                            at += 1
                        }
                        _ => at += 1,
                    }
                }
            }
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                // A closing bracket with nothing open ends a scalar element of the array.
                if depth == 0 {
                    return Some(at);
                }
                depth -= 1;
                if depth == 0 {
                    return Some(at + 1);
                }
            }
            b',' if depth == 0 => return Some(at),
            b'\n' => *line += 1,
            _ => {}
        }
        at += 1;
        if depth == 0 && at >= document.len() {
            return Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::document_elements;

    fn texts(document: &str) -> Result<Vec<(u64, String)>, String> {
        document_elements(document.as_bytes()).map(|e| e.into_iter().map(|(line, r)| (line, document[r].trim_end().to_string())).collect())
    }

    #[test]
    fn a_documents_elements_are_split_by_structure() {
        assert_eq!(texts(r#"[{"a":"],}"},{"b":[1,{"c":2}]}]"#).unwrap(), vec![(1, r#"{"a":"],}"}"#.into()), (1, r#"{"b":[1,{"c":2}]}"#.into())]);
        assert_eq!(texts("[\n {\"a\":\"x\\\"y\"},\n 7 ,\n\"s\"\n]").unwrap(), vec![(2, r#"{"a":"x\"y"}"#.into()), (3, "7".into()), (4, r#""s""#.into())]);
        assert_eq!(texts(r#"{"one":1}"#).unwrap(), vec![(1, r#"{"one":1}"#.into())]);
        assert_eq!(texts(" [ ] ").unwrap(), vec![]);
        for broken in ["", "[", r#"[{"a":1}"#, r#"[{"a":1},"#, r#"[{"a":"1]"#, r#"[{"a":1}] x"#, r#"[{"a":1} {"b":2}]"#, "7"] {
            assert!(texts(broken).is_err(), "{broken:?} is not a document");
        }
    }
}
