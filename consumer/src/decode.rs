//! Events into Arrow record batches, with `arrow-json` doing every value conversion.
//!
//! A chunk of events is decoded in one call (the fast path). When that fails, the chunk is
//! examined line by line: columns the table does not know yet are added (nullable; the schema
//! gains a version), an integer column that receives fractions widens to float64, and what still
//! cannot be decoded is quarantined with arrow's reason. Nothing is dropped silently: a field
//! the schema lacks is a decode error here (strict mode), never ignored.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::json::ReaderBuilder;
use kappa_common::event::EVENT_ID_FIELD;
use kappa_common::schema::{Column, ColumnType, TableSchema, infer_json_schema};
use serde_json::{Map, Value};

/// The table schema as decoded: its columns plus the event identity.
pub struct Decoder {
    schema: TableSchema,
    version: u32,
    arrow: SchemaRef,
}

/// The outcome of decoding a chunk.
pub struct Decoded {
    /// Rows that decoded, in input order; the last column is the event identity.
    pub batch: RecordBatch,
    /// For each row of `batch`, the index of its event in the chunk.
    pub origin: Vec<usize>,
    /// Events that could not be decoded: (index in the chunk, reason).
    pub rejected: Vec<(usize, String)>,
}

fn decode_schema(schema: &TableSchema) -> SchemaRef {
    let mut fields: Vec<Field> = schema.to_arrow().fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
    fields.push(Field::new(EVENT_ID_FIELD, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

fn decode_ndjson(schema: &SchemaRef, ndjson: &[u8], rows: usize) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut decoder = ReaderBuilder::new(schema.clone()).with_strict_mode(true).with_batch_size(rows.max(1)).build_decoder()?;
    let mut offset = 0;
    while offset < ndjson.len() {
        let consumed = decoder.decode(&ndjson[offset..])?;
        if consumed == 0 {
            break;
        }
        offset += consumed;
    }
    Ok(decoder.flush()?.unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
}

impl Decoder {
    pub fn new(schema: TableSchema, version: u32) -> Decoder {
        let arrow = decode_schema(&schema);
        Decoder { schema, version, arrow }
    }

    pub fn schema(&self) -> &TableSchema {
        &self.schema
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// The schema of decoded batches (table columns, then the identity).
    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.arrow
    }

    /// Decodes `events` (one JSON object each). Returns the rows, and whether the schema
    /// evolved (the caller stores the new version before committing rows that use it).
    pub fn decode(&mut self, events: &[&[u8]]) -> (Decoded, bool) {
        let mut ndjson = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum());
        for event in events {
            ndjson.extend_from_slice(event);
            ndjson.push(b'\n');
        }
        if let Ok(batch) = decode_ndjson(&self.arrow, &ndjson, events.len())
            && batch.num_rows() == events.len()
        {
            return (Decoded { batch, origin: (0..events.len()).collect(), rejected: Vec::new() }, false);
        }
        let evolved = self.evolve(events);
        if evolved
            && let Ok(batch) = decode_ndjson(&self.arrow, &ndjson, events.len())
            && batch.num_rows() == events.len()
        {
            return (Decoded { batch, origin: (0..events.len()).collect(), rejected: Vec::new() }, true);
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
                    Some(i) if self.schema.fields[i].column_type == ColumnType::Int64 && value.is_f64() => {
                        if !widen.contains(&i) {
                            widen.push(i);
                        }
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
            self.arrow = decode_schema(&self.schema);
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
                Ok(Value::Object(_)) => match decode_ndjson(&self.arrow, event, 1) {
                    Ok(batch) if batch.num_rows() == 1 => {
                        batches.push(batch);
                        origin.push(index);
                        None
                    }
                    Ok(_) => Some("decoded to no row".to_string()),
                    Err(e) => Some(format!("does not fit the table schema: {e}")),
                },
                Ok(other) => Some(format!("not a JSON object: {}", short(&other.to_string()))),
            };
            if let Some(reason) = reason {
                rejected.push((index, reason));
            }
        }
        let batch = arrow::compute::concat_batches(&self.arrow, &batches).expect("batches share the decode schema");
        Decoded { batch, origin, rejected }
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
        let events: Vec<&[u8]> = vec![br#"{"_kappa_id":"a:0:0","n":1,"d":"2025-03-19","s":"x"}"#, br#"{"_kappa_id":"a:0:1","n":null,"d":"2025-03-20","s":"y"}"#];
        let (decoded, evolved) = decoder.decode(&events);
        assert!(!evolved);
        assert_eq!(decoded.batch.num_rows(), 2);
        assert_eq!(decoded.batch.column(0).as_primitive::<Int64Type>().value(0), 1);
        assert!(decoded.batch.column(0).is_null(1));
        assert_eq!(decoded.batch.column(1).data_type(), &DataType::Date32);
        assert_eq!(decoded.batch.column(3).as_string::<i32>().value(1), "a:0:1");
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
}
