//! What a Kinesis record holds, as events: a KPL aggregate's user records, a compressed
//! payload, a CloudWatch Logs subscription batch, or (most often) one JSON object.
//!
//! - KPL aggregates are recognised by their magic prefix and MD5 trailer whatever
//!   `--payload` says (see `kappa_common::kpl`); each user record is then a payload of its own.
//! - gzip and zstd are recognised by their magic bytes (`--payload auto`), or required
//!   (`gzip`, `zstd`); `json` takes every payload as it is. A decompressed payload that is one
//!   JSON document is one event; else each non-empty line is one (compressed NDJSON batches).
//! - `cloudwatch-logs`: the gzip JSON batches a subscription filter writes; control messages
//!   hold no events; each log event is a row (`id`, `timestamp`, `message`, `log_group`,
//!   `log_stream`, `owner`, `subscription_filters`).
//!
//! A record that holds several events (or none) numbers them: the position of its `i`-th event
//! is the record's sequence number with subsequence `i` (`SequenceNumber::within`), so a resume
//! inside it neither loses nor repeats one. Whether a record is numbered so depends only on its
//! format, never on its contents' count, so the numbering is the same on every read.

use std::io::Read;

use bytes::Bytes;
use kappa_common::flatten::{FlattenOptions, flatten_record};
use kappa_common::json::{Json, Object};
use kappa_common::kpl;

use crate::settings::{PayloadFormat, PayloadOptions};

/// A decompressed payload may not exceed this (a record is at most 1 MiB; a bomb is not read).
const MAX_DECOMPRESSED: u64 = 256 << 20;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The events of one record, each a payload, or why it cannot be read with its raw bytes (it
/// is then quarantined whole, with the reason).
#[derive(Debug, PartialEq)]
pub struct Unpacked {
    /// The events are numbered inside the record (see the module's text); else there is
    /// exactly one, at the record's own position.
    pub numbered: bool,
    pub events: Vec<Result<Bytes, (String, Bytes)>>,
}

impl Unpacked {
    fn one(event: Result<Bytes, (String, Bytes)>) -> Unpacked {
        Unpacked { numbered: false, events: vec![event] }
    }
}

/// The events a record's data holds.
pub fn unpack(data: Bytes, options: &PayloadOptions) -> Unpacked {
    if !kpl::is_aggregated(&data) {
        return decode(data, options);
    }
    match kpl::deaggregate(&data) {
        Err(e) => Unpacked::one(Err((e.to_string(), data))),
        Ok(users) => {
            let mut events = Vec::with_capacity(users.len());
            for user in users {
                events.extend(decode(user.data, options).events);
            }
            Unpacked { numbered: true, events }
        }
    }
}

/// One payload (a record's data, or a user record's) as events.
fn decode(data: Bytes, options: &PayloadOptions) -> Unpacked {
    let decoded = match options.format {
        PayloadFormat::Json => return Unpacked::one(Ok(data)),
        PayloadFormat::Auto if data.starts_with(&GZIP_MAGIC) => gunzip(&data).map(split),
        PayloadFormat::Auto if data.starts_with(&ZSTD_MAGIC) => unzstd(&data).map(split),
        PayloadFormat::Auto => return Unpacked::one(Ok(data)),
        PayloadFormat::Gzip if data.starts_with(&GZIP_MAGIC) => gunzip(&data).map(split),
        PayloadFormat::Zstd if data.starts_with(&ZSTD_MAGIC) => unzstd(&data).map(split),
        PayloadFormat::Gzip | PayloadFormat::Zstd => {
            Err(format!("--payload {}: the record does not start with that format's magic bytes", options.format.name()))
        }
        PayloadFormat::CloudwatchLogs if data.starts_with(&GZIP_MAGIC) => gunzip(&data).and_then(|text| cloudwatch_logs(&text, options.parse_message)),
        PayloadFormat::CloudwatchLogs => {
            Err("--payload cloudwatch-logs: the record is not gzip-compressed, as CloudWatch Logs subscriptions write them".into())
        }
    };
    decoded.unwrap_or_else(|reason| Unpacked::one(Err((reason, data))))
}

fn gunzip(data: &[u8]) -> Result<Bytes, String> {
    read_bounded(flate2::read::MultiGzDecoder::new(data), "gzip")
}

fn unzstd(data: &[u8]) -> Result<Bytes, String> {
    let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| format!("zstd payload: {e}"))?;
    read_bounded(decoder, "zstd")
}

fn read_bounded(reader: impl Read, format: &str) -> Result<Bytes, String> {
    let mut out = Vec::new();
    reader.take(MAX_DECOMPRESSED + 1).read_to_end(&mut out).map_err(|e| format!("{format} payload cannot be decompressed: {e}"))?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(format!("{format} payload decompresses to more than {} MiB", MAX_DECOMPRESSED >> 20));
    }
    Ok(Bytes::from(out))
}

/// A decompressed payload: one JSON document is one event; anything else, one per line.
fn split(text: Bytes) -> Unpacked {
    if serde_json::from_slice::<serde::de::IgnoredAny>(&text).is_ok() {
        return Unpacked::one(Ok(text));
    }
    let events = text.split(|b| *b == b'\n').filter(|line| !line.trim_ascii().is_empty()).map(|line| Ok(text.slice_ref(line))).collect();
    Unpacked { numbered: true, events }
}

/// A CloudWatch Logs subscription batch (already gunzipped): its log events as rows.
fn cloudwatch_logs(text: &[u8], parse_message: bool) -> Result<Unpacked, String> {
    let bad = |reason: String| Err(format!("CloudWatch Logs batch: {reason}"));
    let batch = match Json::from_slice(text) {
        Ok(Json::Object(batch)) => batch,
        Ok(other) => return bad(format!("expected a JSON object, found {}", other.kind())),
        Err(e) => return bad(format!("not JSON: {e}")),
    };
    match batch.get("messageType").and_then(Json::as_str) {
        // Sent when a subscription is set up, to test the destination: no log events.
        Some("CONTROL_MESSAGE") => return Ok(Unpacked { numbered: true, events: Vec::new() }),
        Some("DATA_MESSAGE") => {}
        other => return bad(format!("messageType {other:?} is neither DATA_MESSAGE nor CONTROL_MESSAGE")),
    }
    let Some(Json::Array(log_events)) = batch.get("logEvents") else {
        return bad("a DATA_MESSAGE without a logEvents array".into());
    };
    let field = |name: &str| batch.get(name).cloned().unwrap_or(Json::Null);
    let filters = match batch.get("subscriptionFilters") {
        Some(filters @ Json::Array(_)) => Json::String(filters.to_json_string()),
        Some(other) => other.clone(),
        None => Json::Null,
    };
    let events = log_events
        .iter()
        .map(|log_event| {
            let raw = || Bytes::from(log_event.to_json_string());
            let Json::Object(fields) = log_event else {
                return Err((format!("CloudWatch Logs batch: a log event is {}, not an object", log_event.kind()), raw()));
            };
            let log_event = fields;
            let get = |name: &str| log_event.get(name).cloned().unwrap_or(Json::Null);
            let message = get("message");
            let parsed = match (&message, parse_message) {
                (Json::String(text), true) => match Json::parse(text) {
                    Ok(object @ Json::Object(_)) => Some(object),
                    _ => None,
                },
                _ => None,
            };
            let mut row = Object::new();
            row.insert("id".into(), get("id"));
            row.insert("timestamp".into(), get("timestamp"));
            row.insert("message".into(), message);
            row.insert("log_group".into(), field("logGroup"));
            row.insert("log_stream".into(), field("logStream"));
            row.insert("owner".into(), field("owner"));
            row.insert("subscription_filters".into(), filters.clone());
            // A parsed message adds `message_<member>` columns (nested ones further prefixed,
            // arrays as JSON text, as the producer flattens nested input); `message` keeps
            // the text as it was logged.
            if let Some(object) = parsed {
                let members = match flatten_record(&object, &FlattenOptions::default()) {
                    Ok(mut rows) => rows.pop().unwrap_or_default(),
                    Err(e) => return Err((format!("CloudWatch Logs log event: its message: {e}"), raw())),
                };
                for (name, value) in members {
                    row.insert(format!("message_{name}"), value);
                }
            }
            Ok(Bytes::from(Json::Object(row).to_json_string()))
        })
        .collect();
    Ok(Unpacked { numbered: true, events })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn options(format: PayloadFormat) -> PayloadOptions {
        PayloadOptions { format, parse_message: false }
    }

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        Bytes::from(encoder.finish().unwrap())
    }

    fn texts(unpacked: &Unpacked) -> Vec<String> {
        unpacked
            .events
            .iter()
            .map(|e| match e {
                Ok(b) => String::from_utf8(b.to_vec()).unwrap(),
                Err((reason, _)) => format!("ERR {reason}"),
            })
            .collect()
    }

    #[test]
    fn plain_json_is_one_event_at_the_record() {
        let unpacked = unpack(Bytes::from_static(b"{\"a\":1}"), &options(PayloadFormat::Auto));
        assert_eq!(unpacked, Unpacked::one(Ok(Bytes::from_static(b"{\"a\":1}"))));
    }

    #[test]
    fn compression_is_found_by_magic_bytes() {
        let gz = gzip(b"{\"a\":1}");
        assert_eq!(texts(&unpack(gz.clone(), &options(PayloadFormat::Auto))), vec!["{\"a\":1}"]);
        assert!(!unpack(gz.clone(), &options(PayloadFormat::Auto)).numbered);
        let zst = Bytes::from(zstd::encode_all(&b"{\"a\":1}\n{\"a\":2}\n"[..], 3).unwrap());
        let batch = unpack(zst.clone(), &options(PayloadFormat::Zstd));
        assert!(batch.numbered);
        assert_eq!(texts(&batch), vec!["{\"a\":1}", "{\"a\":2}"]);
        // A required format that is not there: quarantined whole, saying so.
        assert!(texts(&unpack(zst, &options(PayloadFormat::Gzip)))[0].contains("magic bytes"));
        // json takes the bytes as they are (the decoder will say they are not JSON).
        assert_eq!(unpack(gz.clone(), &options(PayloadFormat::Json)), Unpacked::one(Ok(gz)));
        // Damaged gzip.
        let mut cut = gzip(b"{\"a\":1}").to_vec();
        cut.truncate(12);
        assert!(texts(&unpack(Bytes::from(cut), &options(PayloadFormat::Auto)))[0].starts_with("ERR gzip payload cannot be decompressed"));
    }

    #[test]
    fn a_bomb_is_refused() {
        let zeros = vec![b' '; (MAX_DECOMPRESSED + 10) as usize];
        let zst = Bytes::from(zstd::encode_all(&zeros[..], 1).unwrap());
        assert!(texts(&unpack(zst, &options(PayloadFormat::Auto)))[0].contains("more than 256 MiB"));
    }

    #[test]
    fn kpl_aggregates_hold_user_records_each_decoded() {
        let mut aggregator = kpl::Aggregator::new(kpl::MAX_RECORD_BYTES);
        aggregator.add("k1", Bytes::from_static(b"{\"a\":1}"));
        aggregator.add("k2", gzip(b"{\"a\":2}"));
        let (_, record) = aggregator.take().unwrap();
        let unpacked = unpack(Bytes::from(record.clone()), &options(PayloadFormat::Auto));
        assert!(unpacked.numbered);
        assert_eq!(texts(&unpacked), vec!["{\"a\":1}", "{\"a\":2}"]);
        let mut bad = record;
        let at = bad.len() - 1;
        bad[at] ^= 0xff;
        let unpacked = unpack(Bytes::from(bad), &options(PayloadFormat::Json));
        assert!(!unpacked.numbered);
        assert!(texts(&unpacked)[0].contains("fails its MD5 check"), "{:?}", texts(&unpacked));
    }

    const BATCH: &str = r#"{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/aws/lambda/orders","logStream":"2026/11/25/[$LATEST]abc","subscriptionFilters":["to-kinesis"],"logEvents":[{"id":"37921638716346193785616281516424925217284478553236471808","timestamp":1764072000123,"message":"{\"order\":7,\"total\":12.50}"},{"id":"37921638716346193785616281516424925217284478553236471809","timestamp":1764072000456,"message":"plain text"}]}"#;

    #[test]
    fn cloudwatch_logs_batches_become_one_row_per_log_event() {
        let unpacked = unpack(gzip(BATCH.as_bytes()), &options(PayloadFormat::CloudwatchLogs));
        assert!(unpacked.numbered);
        assert_eq!(
            texts(&unpacked),
            vec![
                r#"{"id":"37921638716346193785616281516424925217284478553236471808","timestamp":1764072000123,"message":"{\"order\":7,\"total\":12.50}","log_group":"/aws/lambda/orders","log_stream":"2026/11/25/[$LATEST]abc","owner":"123456789012","subscription_filters":"[\"to-kinesis\"]"}"#,
                r#"{"id":"37921638716346193785616281516424925217284478553236471809","timestamp":1764072000456,"message":"plain text","log_group":"/aws/lambda/orders","log_stream":"2026/11/25/[$LATEST]abc","owner":"123456789012","subscription_filters":"[\"to-kinesis\"]"}"#,
            ]
        );
        let parsed = unpack(gzip(BATCH.as_bytes()), &PayloadOptions { format: PayloadFormat::CloudwatchLogs, parse_message: true });
        let first = texts(&parsed)[0].clone();
        assert!(first.contains(r#""message":"{\"order\":7,\"total\":12.50}""#), "{first}");
        assert!(first.ends_with(r#""message_order":7,"message_total":12.50}"#), "{first}");
        assert!(texts(&parsed)[1].contains(r#""message":"plain text""#));
        let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1764072000000,"message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}"#;
        assert_eq!(unpack(gzip(control.as_bytes()), &options(PayloadFormat::CloudwatchLogs)), Unpacked { numbered: true, events: vec![] });
        assert!(texts(&unpack(Bytes::from_static(BATCH.as_bytes()), &options(PayloadFormat::CloudwatchLogs)))[0].contains("not gzip-compressed"));
    }
}
