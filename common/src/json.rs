//! JSON values that keep every number as it was written.
//!
//! `serde_json::Value` holds a number as an `i64`, a `u64` or an `f64`: `1e3` comes back as
//! `1000.0`, `-0` as `-0.0`, `12345678901234567890123` as `1.2345678901234568e+22`. Where the
//! producer and the consumer read users' JSON, that rewrote values on the way (a string column
//! got the rewritten digits, an unsigned 64-bit id became a float). [`Json`] keeps a number's
//! text, and the column it lands in decides what it means ([`crate::values`]).
//!
//! serde_json still does all of the parsing: a document is read as a `RawValue` (validated
//! whole), then each object and array is taken apart into raw members, so strings are unescaped
//! by serde_json and a number's text is the slice it was read from. serde_json's own
//! `arbitrary_precision` feature would do the same, but a Cargo feature holds for the whole
//! build, and it changes how every other crate's JSON (the Delta log's included) deserializes.

use std::fmt;

use indexmap::IndexMap;
use serde_json::value::RawValue;

/// An object's members, in input order.
pub type Object = IndexMap<String, Json>;

/// A JSON value whose numbers are the text the input wrote.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// A number's text as written (valid JSON number syntax: `-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`).
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Object),
}

impl Json {
    /// Parses one JSON document (surrounding whitespace allowed, nothing after it).
    pub fn parse(text: &str) -> Result<Json, serde_json::Error> {
        let raw: &RawValue = serde_json::from_str(text)?;
        from_raw(raw.get(), 0)
    }

    /// [`Json::parse`] for bytes, which must be UTF-8.
    pub fn from_slice(bytes: &[u8]) -> Result<Json, serde_json::Error> {
        let raw: &RawValue = serde_json::from_slice(bytes)?;
        from_raw(raw.get(), 0)
    }

    /// What the value is, for messages: "a number", "an object", ….
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Json::Object(object) => Some(object),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(text) => Some(text),
            _ => None,
        }
    }

    /// The text a scalar stands for: a string's contents, a number's digits as written, `true`
    /// or `false`; `None` for null, objects and arrays.
    pub fn scalar_text(&self) -> Option<&str> {
        match self {
            Json::String(text) | Json::Number(text) => Some(text),
            Json::Bool(true) => Some("true"),
            Json::Bool(false) => Some("false"),
            _ => None,
        }
    }

    /// Appends the value as compact JSON (numbers as written).
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Json::Null => out.extend_from_slice(b"null"),
            Json::Bool(true) => out.extend_from_slice(b"true"),
            Json::Bool(false) => out.extend_from_slice(b"false"),
            Json::Number(text) => out.extend_from_slice(text.as_bytes()),
            Json::String(text) => write_string(out, text),
            Json::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Json::Object(members) => {
                out.push(b'{');
                for (i, (name, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(out, name);
                    out.push(b':');
                    value.write(out);
                }
                out.push(b'}');
            }
        }
    }

    /// The value as compact JSON text.
    pub fn to_json_string(&self) -> String {
        let mut out = Vec::new();
        self.write(&mut out);
        String::from_utf8(out).expect("JSON text is UTF-8")
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json_string())
    }
}

impl From<&str> for Json {
    fn from(text: &str) -> Json {
        Json::String(text.to_string())
    }
}

/// Appends `text` as a JSON string: copied when it needs no escape (most do not), else
/// escaped by serde_json.
pub fn write_string(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(out, text).expect("writing to a Vec cannot fail");
    }
}

/// A value from its raw text, which serde_json has already read whole (so it is valid JSON and
/// starts at its first byte). Each level of nesting is read again by its parent's call: rows
/// are shallow, and a second pass over them costs less than a parser of our own would.
/// Nesting deeper than serde_json's own limit (128 levels) is refused as serde_json refuses
/// it: reading a `RawValue` does not count levels, and each level here is a call and a pass.
fn from_raw(text: &str, depth: usize) -> Result<Json, serde_json::Error> {
    const MAX_DEPTH: usize = 128;
    let nested = |text: &str| {
        if depth >= MAX_DEPTH {
            return Err(<serde_json::Error as serde::de::Error>::custom("recursion limit exceeded"));
        }
        from_raw(text, depth + 1)
    };
    Ok(match text.as_bytes().first() {
        Some(b'{') => {
            let members: IndexMap<String, &RawValue> = serde_json::from_str(text)?;
            let mut object = Object::with_capacity(members.len());
            for (name, value) in members {
                object.insert(name, nested(value.get())?);
            }
            Json::Object(object)
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            Json::Array(items.into_iter().map(|item| nested(item.get())).collect::<Result<_, _>>()?)
        }
        Some(b'"') => Json::String(serde_json::from_str(text)?),
        Some(b't') => Json::Bool(true),
        Some(b'f') => Json::Bool(false),
        Some(b'n') => Json::Null,
        _ => Json::Number(text.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_deeper_than_serde_jsons_limit_is_refused() {
        let deep = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        assert!(Json::parse(&deep(128)).is_ok());
        assert!(Json::parse(&deep(129)).unwrap_err().to_string().contains("recursion limit exceeded"));
        assert!(Json::parse(&deep(100_000)).is_err(), "refused, without exhausting the stack");
    }

    #[test]
    fn numbers_keep_their_digits() {
        for text in ["1e3", "-0", "12345678901234567890123", "-9223372036854775809", "18446744073709551615", "1299.00", "0.1", "2E-5"] {
            let value = Json::parse(&format!(r#"{{"x": {text}}}"#)).unwrap();
            assert_eq!(value.as_object().unwrap()["x"], Json::Number(text.to_string()));
            assert_eq!(value.to_json_string(), format!(r#"{{"x":{text}}}"#));
        }
    }

    #[test]
    fn structure_order_and_escapes_round_trip() {
        let text = r#" {"b": [1, {"c": "q\"\u00e9\n"}, null, true], "a": {"z": false}, "": ""} "#;
        let value = Json::parse(text).unwrap();
        let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["b", "a", ""]);
        let back: serde_json::Value = serde_json::from_str(&value.to_json_string()).unwrap();
        assert_eq!(back, serde_json::from_str::<serde_json::Value>(text).unwrap());
        assert_eq!(value.as_object().unwrap()["b"].kind(), "an array");
    }

    #[test]
    fn what_serde_json_refuses_is_refused() {
        for text in ["", "{", r#"{"a":1} x"#, "[1,]", "01", "NaN", r#"{"a":1,}"#, "\"\\ud800\"x"] {
            assert!(Json::parse(text).is_err(), "{text:?}");
        }
        assert!(Json::from_slice(b"\xff").is_err());
    }
}
