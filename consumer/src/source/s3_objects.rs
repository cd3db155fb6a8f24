//! The file-drop pattern (`sqs+s3:QUEUE`): an S3 event notification names objects; each object
//! (CSV, NDJSON or a JSON array) becomes events, shaped as the producer shapes them.
//!
//! - JSON is flattened with the producer's rules (`parent_child` columns, `--explode` of one
//!   array), so a file dropped in S3 and the same file sent by `kappa-producer` give the same
//!   rows.
//! - CSV columns are typed by arrow-csv's inference over the object (the producer's null
//!   tokens); a cell of a numeric column goes into the event as the number its digits write
//!   (never re-printed: an id beyond int64 keeps its digits), a boolean as `true`/`false`,
//!   anything else as a string, which the consumer types by the table's column.
//! - Every event carries an identity made of the object's content hash and the row's index:
//!   the same object announced twice (a redelivered or duplicated notification, or the same
//!   file uploaded again) gives the same identities, and the pipeline keeps each row once.

use std::io::Cursor;

use kappa_common::event::{EVENT_ID_FIELD, event_id};
use kappa_common::flatten::{FlattenOptions, flatten_record};
use kappa_common::json::{Json, Object};
use kappa_common::schema::NullTokens;
use serde_json::Value;

/// One object an S3 notification announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

/// The objects a notification body announces as created. S3's test event and other event
/// types announce none. SNS-wrapped notifications (S3 → SNS → SQS) are unwrapped.
pub fn created_objects(body: &str) -> Result<Vec<ObjectRef>, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("the message is not an S3 event notification (not JSON: {e})"))?;
    if let (Some("Notification"), Some(inner)) = (value.get("Type").and_then(Value::as_str), value.get("Message").and_then(Value::as_str)) {
        return created_objects(inner);
    }
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    let Some(records) = value.get("Records").and_then(Value::as_array) else {
        return Err("the message is not an S3 event notification (no \"Records\" array)".to_string());
    };
    let mut objects = Vec::new();
    for record in records {
        let name = record.get("eventName").and_then(Value::as_str).unwrap_or_default();
        if !name.starts_with("ObjectCreated:") {
            continue;
        }
        let bucket = record.pointer("/s3/bucket/name").and_then(Value::as_str);
        let key = record.pointer("/s3/object/key").and_then(Value::as_str);
        let (Some(bucket), Some(key)) = (bucket, key) else {
            return Err(format!("an {name} record without s3.bucket.name and s3.object.key"));
        };
        objects.push(ObjectRef { bucket: bucket.to_string(), key: decode_key(key) });
    }
    Ok(objects)
}

/// Keys in notifications are URL-encoded, with spaces as '+'.
fn decode_key(key: &str) -> String {
    let bytes = key.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len()).then(|| Some(hex(bytes[i + 1])? << 4 | hex(bytes[i + 2])?)).flatten();
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How an object's rows are read, chosen by its key's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjectFormat {
    Csv(u8),
    Ndjson,
    Json,
}

fn format_of(key: &str) -> Option<ObjectFormat> {
    let extension = key.rsplit_once('.')?.1.to_ascii_lowercase();
    match extension.as_str() {
        "csv" | "txt" => Some(ObjectFormat::Csv(b',')),
        "tsv" => Some(ObjectFormat::Csv(b'\t')),
        "ndjson" | "jsonl" => Some(ObjectFormat::Ndjson),
        "json" => Some(ObjectFormat::Json),
        _ => None,
    }
}

/// The object's rows as event payloads (JSON objects with their identity), or why it cannot be
/// read (the caller quarantines the whole object with that reason).
pub fn events_of_object(object: &ObjectRef, data: &[u8], flatten: &FlattenOptions) -> Result<Vec<Vec<u8>>, String> {
    let format = format_of(&object.key)
        .ok_or_else(|| format!("s3://{}/{}: unknown file type; name objects .csv, .tsv, .ndjson, .jsonl or .json", object.bucket, object.key))?;
    let source = format!("{:016x}{:x}", xxhash_rust::xxh3::xxh3_64(data), data.len());
    let rows = match format {
        ObjectFormat::Csv(delimiter) => csv_rows(data, delimiter)?,
        ObjectFormat::Ndjson => {
            let mut rows = Vec::new();
            for (line, text) in data.split(|b| *b == b'\n').enumerate() {
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let value = Json::from_slice(text).map_err(|e| format!("line {}: {e}", line + 1))?;
                rows.extend(flatten_record(&value, flatten).map_err(|e| format!("line {}: {e}", line + 1))?);
            }
            rows
        }
        ObjectFormat::Json => {
            let value = Json::from_slice(data).map_err(|e| format!("not JSON: {e}"))?;
            let records = match value {
                Json::Array(records) => records,
                other => vec![other],
            };
            let mut rows = Vec::new();
            for (index, record) in records.iter().enumerate() {
                rows.extend(flatten_record(record, flatten).map_err(|e| format!("record {index}: {e}"))?);
            }
            rows
        }
    };
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(row, mut fields)| {
            fields.insert(EVENT_ID_FIELD.to_string(), Json::String(event_id(&source, 0, row as u64)));
            let mut event = Vec::new();
            Json::Object(fields).write(&mut event);
            event
        })
        .collect())
}

/// CSV rows as JSON objects, the columns typed by arrow-csv's inference over the whole object;
/// null cells are left out.
fn csv_rows(data: &[u8], delimiter: u8) -> Result<Vec<Object>, String> {
    use arrow::datatypes::DataType;
    let tokens = NullTokens::default();
    let format =
        arrow::csv::reader::Format::default().with_header(true).with_delimiter(delimiter).with_null_regex(tokens.to_regex().map_err(|e| e.to_string())?);
    let (schema, _) = format.infer_schema(Cursor::new(data), None).map_err(|e| format!("CSV: {e}"))?;
    let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).from_reader(data);
    let header: Vec<String> = reader.headers().map_err(|e| format!("CSV: {e}"))?.iter().map(String::from).collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("CSV: {e}"))?;
        let mut row = Object::with_capacity(header.len());
        for ((name, cell), data_type) in header.iter().zip(record.iter()).zip(&types) {
            if tokens.is_null(cell) {
                continue;
            }
            let value = match data_type {
                DataType::Int64 | DataType::Float64 if Json::parse(cell).is_ok_and(|v| matches!(v, Json::Number(_))) => Json::Number(cell.to_string()),
                DataType::Boolean if cell.eq_ignore_ascii_case("true") || cell.eq_ignore_ascii_case("false") => Json::Bool(cell.eq_ignore_ascii_case("true")),
                _ => Json::String(cell.to_string()),
            };
            row.insert(name.clone(), value);
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_name_created_objects() {
        let body = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"drops"},"object":{"key":"in/orders+2024%2F01.json","size":10}}},
                                 {"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"drops"},"object":{"key":"gone.json"}}}]}"#;
        assert_eq!(created_objects(body).unwrap(), vec![ObjectRef { bucket: "drops".into(), key: "in/orders 2024/01.json".into() }]);
        assert!(created_objects(r#"{"Event":"s3:TestEvent","Bucket":"drops"}"#).unwrap().is_empty());
        let wrapped = serde_json::json!({"Type": "Notification", "Message": body}).to_string();
        assert_eq!(created_objects(&wrapped).unwrap().len(), 1);
        assert!(created_objects("hello").unwrap_err().contains("not an S3 event notification"));
    }

    #[test]
    fn csv_objects_keep_types_and_get_stable_identities() {
        let object = ObjectRef { bucket: "b".into(), key: "sales.csv".into() };
        let data = b"id,amount,day,note,big\n1,2.5,2025-03-19,hello,18446744073709551615\n2,,2025-03-20,NA,1\n";
        let events = events_of_object(&object, data, &FlattenOptions::default()).unwrap();
        let first: Value = serde_json::from_slice(&events[0]).unwrap();
        assert_eq!(first["id"], 1);
        assert_eq!(first["amount"], 2.5);
        assert_eq!(first["day"], "2025-03-19");
        let text = std::str::from_utf8(&events[0]).unwrap();
        // arrow-csv types a column of integers beyond i64 as text: the digits stay as written.
        assert!(text.contains(r#""big":"18446744073709551615""#), "the digits as written: {text}");
        let second: Value = serde_json::from_slice(&events[1]).unwrap();
        assert!(second.get("amount").is_none() && second.get("note").is_none());
        assert_eq!(events, events_of_object(&object, data, &FlattenOptions::default()).unwrap());
        assert_ne!(first[EVENT_ID_FIELD], second[EVENT_ID_FIELD]);
    }
}
