//! CSV input: a header row, then one event per record.
//!
//! Records are read as bytes with the `csv` crate in flexible mode, so a ragged row or bad
//! UTF-8 is this reader's decision (quarantine with line and reason), never a parse error that
//! ends the run.

use std::collections::VecDeque;
use std::io::Read;

use kappa_common::schema::{NullTokens, TableSchema, infer_csv_schema};

use super::{Batcher, Event, InputError, InputSpec, ReadStop, Reject, RejectWriter, RowContext, RowOrigin, content_identity, emit, open_with_head};

pub struct CsvInput {
    name: String,
    identity: String,
    header: Vec<String>,
    reader: csv::Reader<Box<dyn Read + Send>>,
    /// Records read ahead for schema inference, replayed before the rest.
    buffered: VecDeque<csv::ByteRecord>,
}

impl CsvInput {
    pub fn open(spec: &InputSpec) -> Result<CsvInput, InputError> {
        let name = spec.display();
        let io = |source| InputError::Io { input: name.clone(), source };
        let (head, reader) = open_with_head(spec).map_err(io)?;
        let identity = content_identity(spec, &head).map_err(|source| InputError::Io { input: name.clone(), source })?;
        let mut reader = csv_reader(spec, reader);
        let header = read_header(&mut reader, &name)?;
        Ok(CsvInput { name, identity, header, reader, buffered: VecDeque::new() })
    }

    /// Opens the file and checks its header row, reading nothing more.
    pub fn check(spec: &InputSpec) -> Result<(), InputError> {
        let name = spec.display();
        let reader = spec.open().map_err(|source| InputError::Io { input: name.clone(), source })?;
        read_header(&mut csv_reader(spec, reader), &name).map(|_| ())
    }

    /// Infers the schema from the first `rows` records; rows that are ragged or not UTF-8 are
    /// left out of the sample (they will be rejected when read).
    pub fn infer_schema(&mut self, rows: usize, null_tokens: &NullTokens) -> Result<TableSchema, InputError> {
        let mut sample = Vec::new();
        while self.buffered.len() < rows {
            let mut record = csv::ByteRecord::new();
            match self.reader.read_byte_record(&mut record) {
                Ok(true) => {
                    if record.len() == self.header.len()
                        && let Ok(text) = csv::StringRecord::from_byte_record(record.clone())
                    {
                        sample.push(text);
                    }
                    self.buffered.push_back(record);
                }
                Ok(false) => break,
                Err(e) => return Err(InputError::Invalid { input: self.name.clone(), reason: e.to_string() }),
            }
        }
        infer_csv_schema(&self.header, &sample, null_tokens).map_err(|e| InputError::Invalid { input: self.name.clone(), reason: e.to_string() })
    }

    pub fn read(mut self, pass: u64, context: &RowContext, rejects: &RejectWriter, batcher: &mut Batcher) -> Result<(), ReadStop> {
        let schema = &context.schema;
        // For each schema column, where it is in this file's header.
        let positions: Vec<Option<usize>> = schema.fields.iter().map(|c| self.header.iter().position(|h| *h == c.name)).collect();
        let extra: Vec<usize> = (0..self.header.len()).filter(|i| schema.index_of(&self.header[*i]).is_none()).collect();
        if !extra.is_empty() && pass == 0 {
            let names: Vec<&str> = extra.iter().map(|i| self.header[*i].as_str()).collect();
            tracing::warn!(input = %self.name, columns = ?names, "columns not in the schema are sent as strings");
        }
        let key_position = context.partition_key.as_ref().map(|k| self.header.iter().position(|h| h == k));
        if let Some(None) = key_position {
            return Err(InputError::Invalid {
                input: self.name.clone(),
                reason: format!("--partition-key column {:?} is not in the header", context.partition_key.as_deref().unwrap_or_default()),
            }
            .into());
        }
        let time_position = match &context.event_time {
            Some((column, _)) => Some(
                self.header
                    .iter()
                    .position(|h| h == column)
                    .ok_or_else(|| InputError::Invalid { input: self.name.clone(), reason: format!("--event-time column {column:?} is not in the header") })?,
            ),
            None => None,
        };

        let mut record = csv::ByteRecord::new();
        let mut out = Vec::with_capacity(1024);
        let mut row: u64 = 0;
        loop {
            match self.buffered.pop_front() {
                Some(buffered) => record = buffered,
                None => match self.reader.read_byte_record(&mut record) {
                    Ok(true) => {}
                    Ok(false) => return Ok(()),
                    Err(e) => return Err(InputError::Invalid { input: self.name.clone(), reason: e.to_string() }.into()),
                },
            }
            if !batcher.take_row() {
                return Ok(());
            }
            let origin = RowOrigin { pass, row, line: record.position().map_or(0, |p| p.line()) };
            row += 1;
            let columns = Columns { positions: &positions, extra: &extra, key: key_position.flatten(), time: time_position };
            let (encoded, recycled) = encode_record(&self, record, &columns, origin, context, &mut out);
            record = recycled;
            emit(context, batcher, rejects, encoded)?;
        }
    }
}

fn csv_reader(spec: &InputSpec, reader: Box<dyn Read + Send>) -> csv::Reader<Box<dyn Read + Send>> {
    csv::ReaderBuilder::new().has_headers(true).flexible(true).delimiter(spec.delimiter).buffer_capacity(1 << 20).from_reader(reader)
}

/// The header row's column names, checked: each one present, valid UTF-8, unique, not reserved.
fn read_header(reader: &mut csv::Reader<Box<dyn Read + Send>>, name: &str) -> Result<Vec<String>, InputError> {
    let invalid = |reason: String| InputError::Invalid { input: name.to_string(), reason };
    let header_record = reader.byte_headers().map_err(|e| invalid(format!("cannot read the header row: {e}")))?;
    let mut header = Vec::with_capacity(header_record.len());
    for (index, cell) in header_record.iter().enumerate() {
        let cell = std::str::from_utf8(cell).map_err(|_| invalid(format!("header column {} is not valid UTF-8", index + 1)))?;
        let cell = cell.trim();
        if cell.is_empty() {
            return Err(invalid(format!("header column {} is empty; every column needs a name", index + 1)));
        }
        if cell == kappa_common::event::EVENT_ID_FIELD {
            return Err(invalid(format!("header column {cell:?} is reserved for the event identity; rename the column")));
        }
        if header.iter().any(|h| h == cell) {
            return Err(invalid(format!("header names column {cell:?} twice; column names must be unique")));
        }
        header.push(cell.to_string());
    }
    if header.is_empty() {
        return Err(invalid("the file is empty (no header row)".into()));
    }
    Ok(header)
}

/// Where the columns a row needs are in this file's records.
struct Columns<'a> {
    /// For each schema column, its index in the record (None: not in this file).
    positions: &'a [Option<usize>],
    /// Indexes of columns the schema does not know.
    extra: &'a [usize],
    key: Option<usize>,
    time: Option<usize>,
}

/// Encodes one record; hands the record's buffer back for reuse with the next read.
fn encode_record(
    input: &CsvInput,
    record: csv::ByteRecord,
    columns: &Columns<'_>,
    origin: RowOrigin,
    context: &RowContext,
    out: &mut Vec<u8>,
) -> (Result<Event, Reject>, csv::ByteRecord) {
    let reject =
        |record: &csv::ByteRecord, reason: String| Reject { input: input.name.clone(), line: origin.line, row: origin.row, reason, raw: raw_line(record) };
    if record.len() != input.header.len() {
        let reason = format!("ragged row: expected {} fields, found {}", input.header.len(), record.len());
        return (Err(reject(&record, reason)), record);
    }
    // One UTF-8 check for the whole record, no copy; the error names the column.
    let text = match csv::StringRecord::from_byte_record(record) {
        Ok(text) => text,
        Err(err) => {
            let column = err.utf8_error().field();
            let record = err.into_byte_record();
            return (Err(reject(&record, format!("column {:?} is not valid UTF-8", input.header[column]))), record);
        }
    };
    let result = encode_text(input, &text, columns, origin, context, out);
    let record = text.into_byte_record();
    (result.map_err(|reason| reject(&record, reason)), record)
}

fn encode_text(
    input: &CsvInput,
    text: &csv::StringRecord,
    columns: &Columns<'_>,
    origin: RowOrigin,
    context: &RowContext,
    out: &mut Vec<u8>,
) -> Result<Event, String> {
    let id = context.event_id(&input.identity, origin);
    let extra_cells: Vec<(&str, &str)> = columns.extra.iter().map(|i| (input.header[*i].as_str(), &text[*i])).collect();
    context.encoder.encode_text_row(&id, columns.positions.iter().map(|p| p.map(|i| &text[i])), &extra_cells, out).map_err(|e| e.to_string())?;
    let event_time_ms = match (columns.time, &context.event_time) {
        (Some(i), Some((column, parser))) => Some(parser.parse(&text[i]).map_err(|e| format!("--event-time column {column:?}: {e}"))?),
        _ => None,
    };
    let (key, key_is_identity) = match columns.key.map(|i| &text[i]) {
        Some(value) if !value.is_empty() => (value.to_string(), false),
        _ => (id, true),
    };
    Ok(Event { key, key_is_identity, payload: out.clone(), event_time_ms })
}

/// The record as CSV text, for the reject file.
fn raw_line(record: &csv::ByteRecord) -> String {
    let mut writer = csv::WriterBuilder::new().flexible(true).terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    let _ = writer.write_byte_record(record);
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8_lossy(bytes.strip_suffix(b"\n").unwrap_or(&bytes)).into_owned()
}
