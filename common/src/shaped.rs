//! Shaped events: how the embedded log stores an event without repeating its member names.
//!
//! An event is a JSON object (see [`event`](crate::event)), and on Kinesis, SQS and Firehose it
//! stays one: other consumers read those. The embedded log is kappa-lake's own, and there the
//! producer writes each event as its values alone, in the order of a [`Shape`] (the list of
//! member names) stored once beside the log. The names were ~45% of the bytes of a wide event:
//! a 10-million-row, 16-column CSV made a 3.7 GB log, written, fsynced and read back again.
//!
//! A shaped payload is
//!
//! | offset | size    | field  | meaning                                                  |
//! |--------|---------|--------|----------------------------------------------------------|
//! | 0      | 1       | marker | `0x01` (no JSON text begins with it)                     |
//! | 1      | 8 (u64) | shape  | the shape's id, little-endian (see [`Shape::id`])        |
//! | 9      | rest    | values | a JSON array: one value per name of the shape, in order  |
//!
//! and it stands for exactly one object: `{` then, for each name, the name as a JSON string,
//! `:`, the value's bytes as stored, separated by `,`, then `}` — the bytes the producer writes
//! when it writes objects, so byte counts, the raw archive and `inspect` see the same event
//! whichever way it travelled. Any other payload is the object itself.

use std::ops::Range;

use crate::schema::ColumnType;

/// First byte of a shaped payload.
pub const SHAPED_MARKER: u8 = 0x01;
/// Bytes before the values: the marker and the shape id.
pub const SHAPED_HEADER_LEN: usize = 9;

/// Why a shaped payload cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapedError {
    #[error("a shaped event's values are not a JSON array of {expected} values: {reason}")]
    Values { expected: usize, reason: String },
}

/// The member names of a shaped event, in the order its values are stored, and the types the
/// producer gave them: the types travel with the events, so the consumer types a new table (or
/// a new column) as the producer inferred it — a CSV's timestamps as timestamps, its dates as
/// dates — instead of guessing again from JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    id: u64,
    names: Vec<String>,
    /// One per name (`None`: no type, as for the identity), or empty for a shape stored before
    /// shapes had types.
    types: Vec<Option<ColumnType>>,
    /// Each name as it opens a member: `"name":`.
    keys: Vec<Vec<u8>>,
}

/// A shape as stored beside the log: the names and their types.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    names: Vec<String>,
    types: Vec<Option<ColumnType>>,
}

impl Shape {
    /// A shape of names alone (no types).
    pub fn new(names: Vec<String>) -> Shape {
        Shape::typed(names, Vec::new())
    }

    /// A shape whose names have the given types (one per name).
    pub fn typed(names: Vec<String>, types: Vec<Option<ColumnType>>) -> Shape {
        debug_assert!(types.is_empty() || types.len() == names.len());
        let keys: Vec<Vec<u8>> = names
            .iter()
            .map(|name| {
                let mut key = serde_json::to_vec(name).expect("a string serializes");
                key.push(b':');
                key
            })
            .collect();
        let mut shape = Shape { id: 0, names, types, keys };
        shape.id = xxhash_rust::xxh3::xxh3_64(shape.to_json().as_bytes());
        shape
    }

    /// XXH3-64 (seed 0) of the shape as stored ([`Shape::to_json`]): the same names and types
    /// give the same id in every process and version, so producers need no coordination to
    /// share a log, and two producers that typed a column differently store two shapes.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The type the producer gave the name at `index`, if it gave one.
    pub fn type_of(&self, index: usize) -> Option<ColumnType> {
        self.types.get(index).copied().flatten()
    }

    /// The shape as stored beside the log, compact: `{"names":[…],"types":[…]}` (types as
    /// schema files name them, `null` for none), or the names alone as a JSON array for a
    /// shape without types (how every shape was stored before types travelled).
    pub fn to_json(&self) -> String {
        if self.types.is_empty() {
            return serde_json::to_string(&self.names).expect("strings serialize");
        }
        serde_json::to_string(&Stored { names: self.names.clone(), types: self.types.clone() }).expect("a shape serializes")
    }

    /// Reads a stored shape back (either form).
    pub fn from_json(text: &str) -> Result<Shape, serde_json::Error> {
        if text.trim_start().starts_with('[') {
            return serde_json::from_str::<Vec<String>>(text).map(Shape::new);
        }
        let stored: Stored = serde_json::from_str(text)?;
        if stored.types.len() != stored.names.len() {
            return Err(serde::de::Error::custom(format!("{} types for {} names", stored.types.len(), stored.names.len())));
        }
        Ok(Shape::typed(stored.names, stored.types))
    }

    /// Starts a shaped payload of this shape in `out` (cleared): the header and the array's
    /// `[`. The caller appends the values, separated by `,`, and `]`.
    pub fn begin(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(SHAPED_MARKER);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.push(b'[');
    }

    /// The length of the object a shaped event of this shape stands for, from its values'
    /// length alone: every name adds its key (`"name":`), and the array's brackets and
    /// separators are the object's braces and separators.
    pub fn object_len(&self, values: &[u8]) -> usize {
        values.len() + self.keys.iter().map(Vec::len).sum::<usize>()
    }

    /// Appends the object that `values` (the JSON array of a shaped payload) stands for.
    pub fn write_object(&self, values: &[u8], out: &mut Vec<u8>) -> Result<(), ShapedError> {
        let mut ranges = Vec::with_capacity(self.keys.len());
        value_ranges(values, &mut ranges).map_err(|reason| ShapedError::Values { expected: self.keys.len(), reason })?;
        if ranges.len() != self.keys.len() {
            let reason = format!("it holds {}", ranges.len());
            return Err(ShapedError::Values { expected: self.keys.len(), reason });
        }
        out.reserve(self.object_len(values));
        out.push(b'{');
        for (i, (key, range)) in self.keys.iter().zip(ranges).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key);
            out.extend_from_slice(&values[range]);
        }
        out.push(b'}');
        Ok(())
    }
}

/// The shape id and the values of a shaped payload, or `None` for any other payload (an
/// object).
pub fn split_shaped(payload: &[u8]) -> Option<(u64, &[u8])> {
    if payload.first() != Some(&SHAPED_MARKER) || payload.len() < SHAPED_HEADER_LEN {
        return None;
    }
    let id = u64::from_le_bytes(payload[1..SHAPED_HEADER_LEN].try_into().expect("eight bytes"));
    Some((id, &payload[SHAPED_HEADER_LEN..]))
}

/// Where each value of a compact JSON array (`[v,v,…]`, no whitespace, as the producer writes
/// it) lies, appended to `out`. Values may be any JSON (strings are scanned with their escapes,
/// arrays and objects to their matching bracket); they are delimited here, not checked.
pub fn value_ranges(array: &[u8], out: &mut Vec<Range<usize>>) -> Result<(), String> {
    if array.first() != Some(&b'[') || array.last() != Some(&b']') || array.len() < 2 {
        return Err("not an array".into());
    }
    if array.len() == 2 {
        return Ok(());
    }
    let mut at = 1;
    loop {
        let end = value_end(array, at).ok_or_else(|| format!("value at byte {at} does not end"))?;
        if end == at {
            return Err(format!("empty value at byte {at}"));
        }
        out.push(at..end);
        match array.get(end) {
            Some(b',') => at = end + 1,
            Some(b']') if end + 1 == array.len() => return Ok(()),
            _ => return Err(format!("unexpected byte at {end}")),
        }
    }
}

/// The end of the JSON value at `bytes[start..]`.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match *bytes.get(start)? {
        b'"' => string_end(bytes, start),
        b'[' | b'{' => {
            let mut depth = 0usize;
            let mut at = start;
            loop {
                match *bytes.get(at)? {
                    b'"' => {
                        at = string_end(bytes, at)?;
                        continue;
                    }
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
        }
        _ => Some(bytes[start..].iter().position(|&b| b == b',' || b == b']').map_or(bytes.len(), |n| start + n)),
    }
}

/// Just past the closing quote of the JSON string that opens at `bytes[start]` (escapes and
/// all).
pub fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start + 1;
    loop {
        at = quote_or_backslash(bytes, at)?;
        match bytes[at] {
            b'"' => return Some(at + 1),
            _ => at += 2, // the escaped byte cannot end the string
        }
    }
}

/// The first `"` or `\` in `bytes` from `at` on, eight bytes at a time: values and identities
/// are short, and memchr's setup cost more than the search.
pub fn quote_or_backslash(bytes: &[u8], mut at: usize) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    while at + 8 <= bytes.len() {
        let w = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
        // The lowest flagged byte is exact (borrows only run upwards).
        let found = zero_bytes(w ^ u64::from_le_bytes([b'"'; 8])) | zero_bytes(w ^ u64::from_le_bytes([b'\\'; 8]));
        if found != 0 {
            return Some(at + found.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    bytes.get(at..)?.iter().position(|&b| b == b'"' || b == b'\\').map(|n| at + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(names: &[&str]) -> Shape {
        Shape::new(names.iter().map(|n| n.to_string()).collect())
    }

    fn object(shape: &Shape, values: &str) -> Result<String, ShapedError> {
        let mut out = Vec::new();
        shape.write_object(values.as_bytes(), &mut out)?;
        assert_eq!(out.len(), shape.object_len(values.as_bytes()), "object_len agrees");
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn values_stand_for_the_object_the_producer_writes() {
        let s = shape(&["_kappa_id", "n", "name \"q\"", "x"]);
        assert_eq!(
            object(&s, r#"["a:0:1",-1.5e3,"say \"hi\", ]",null]"#).unwrap(),
            r#"{"_kappa_id":"a:0:1","n":-1.5e3,"name \"q\"":"say \"hi\", ]","x":null}"#
        );
        assert_eq!(
            object(&s, r#"["a",[1,"]",{"k":[]}],{"a":"}"},true]"#).unwrap(),
            r#"{"_kappa_id":"a","n":[1,"]",{"k":[]}],"name \"q\"":{"a":"}"},"x":true}"#
        );
        assert_eq!(object(&shape(&[]), "[]").unwrap(), "{}");
        assert_eq!(object(&s, r#"["a","\\",1,2]"#).unwrap(), r#"{"_kappa_id":"a","n":"\\","name \"q\"":1,"x":2}"#, "an escaped backslash ends no string");
    }

    #[test]
    fn a_wrong_count_or_a_torn_array_is_an_error() {
        let s = shape(&["a", "b"]);
        for values in ["[1]", "[1,2,3]", "[1,2", "1,2]", r#"["x,2]"#, "[1,,2]", "[1,2]x", ""] {
            assert!(object(&s, values).is_err(), "{values}");
        }
    }

    #[test]
    fn ids_are_stable_and_payloads_split() {
        let s = shape(&["_kappa_id", "a"]);
        assert_eq!(s.id(), xxhash_rust::xxh3::xxh3_64(br#"["_kappa_id","a"]"#));
        assert_ne!(s.id(), shape(&["a", "_kappa_id"]).id());
        assert_eq!(Shape::from_json(&s.to_json()).unwrap(), s);
        let typed = Shape::typed(vec!["_kappa_id".into(), "a".into()], vec![None, Some(ColumnType::Timestamp)]);
        assert_eq!(typed.to_json(), r#"{"names":["_kappa_id","a"],"types":[null,"timestamp"]}"#);
        assert_eq!(Shape::from_json(&typed.to_json()).unwrap(), typed);
        assert_eq!(typed.type_of(1), Some(ColumnType::Timestamp));
        assert_ne!(typed.id(), s.id(), "types are part of a shape");
        assert!(Shape::from_json(r#"{"names":["a"],"types":[]}"#).is_err());
        let mut payload = Vec::new();
        s.begin(&mut payload);
        payload.extend_from_slice(br#""id",1]"#);
        assert_eq!(split_shaped(&payload), Some((s.id(), &br#"["id",1]"#[..])));
        assert_eq!(split_shaped(br#"{"a":1}"#), None);
        assert_eq!(split_shaped(&[SHAPED_MARKER, 1, 2]), None, "too short for a header");
    }

    #[test]
    fn the_word_search_finds_the_first_quote_or_backslash_at_any_offset() {
        for length in 0..20 {
            for at in 0..length {
                for special in [b'"', b'\\'] {
                    let mut bytes = vec![b'x'; length];
                    bytes[at] = special;
                    assert_eq!(quote_or_backslash(&bytes, 0), Some(at), "{length} {at}");
                    assert_eq!(quote_or_backslash(&bytes, at), Some(at));
                    assert_eq!(quote_or_backslash(&bytes, at + 1), None);
                }
            }
            assert_eq!(quote_or_backslash(&vec![0x80 | b'"'; length], 0), None, "high bytes are not quotes");
        }
        assert_eq!(quote_or_backslash(b"ab", 5), None, "past the end");
    }
}
