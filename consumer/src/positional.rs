//! Events in the producer's plain form, restated as JSON arrays in column order.
//!
//! arrow-json decodes an array row (`StructMode::ListOnly`) by position: no member names to
//! tokenize and look up, which were ~40% of the bytes and a third of the decoding time. The
//! events themselves stay JSON objects (DESIGN.md's contract): this is only how they are handed
//! to arrow-json. Every value is passed on byte for byte, so arrow-json still converts and
//! checks every value. Only events this module can restate exactly take the path: any other
//! shape (whitespace, escaped or unknown names, a name twice, nested values, trailing bytes)
//! returns `None` and the events are decoded as objects, as before.

use arrow::datatypes::SchemaRef;
use kappa_common::event::EVENT_ID_FIELD;
use kappa_common::shaped::{Shape, quote_or_backslash, string_end};

/// Each column's member name as the producer writes it, `"name":`.
pub struct ColumnKeys {
    keys: Vec<Key>,
}

struct Key {
    bytes: Vec<u8>,
    /// The first and the last eight bytes, when the name is 8 to 16 bytes long (most are):
    /// two word compares instead of a call to memcmp, which cost 4% of a run.
    words: Option<(u64, u64)>,
}

impl Key {
    fn new(name: &str) -> Key {
        let mut bytes = serde_json::to_vec(name).expect("a string serializes");
        bytes.push(b':');
        let words = (8..=16).contains(&bytes.len()).then(|| (word(&bytes, 0), word(&bytes, bytes.len() - 8)));
        Key { bytes, words }
    }

    fn begins(&self, text: &[u8]) -> bool {
        let n = self.bytes.len();
        match self.words {
            Some((first, last)) => text.len() >= n && word(text, 0) == first && word(text, n - 8) == last,
            None => text.starts_with(&self.bytes),
        }
    }
}

fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

impl ColumnKeys {
    pub fn new(data: &SchemaRef) -> ColumnKeys {
        ColumnKeys { keys: data.fields().iter().map(|field| Key::new(field.name())).collect() }
    }

    /// Appends one array per event to `out`: the members of `events[i]` from `members_at[i]`
    /// on (`"name":value,…}`, the object's opening brace and identity already passed), in
    /// column order, `null` for a column the event lacks. `None` if an event is not in the
    /// plain form; `out` then holds a part of the arrays.
    pub fn restate(&self, events: &[&[u8]], members_at: &[usize], out: &mut Vec<u8>) -> Option<()> {
        let mut values: Vec<(usize, usize)> = vec![ABSENT; self.keys.len()];
        for (event, &at) in events.iter().zip(members_at) {
            self.members(event, at, &mut values)?;
            out.push(b'[');
            for (column, value) in values.iter_mut().enumerate() {
                if column > 0 {
                    out.push(b',');
                }
                match std::mem::replace(value, ABSENT) {
                    ABSENT => out.extend_from_slice(b"null"),
                    (start, end) => out.extend_from_slice(&event[start..end]),
                }
            }
            out.push(b']');
        }
        Some(())
    }

    /// Where each column's value lies in `event` (members from `at` on).
    pub(crate) fn members(&self, event: &[u8], mut at: usize, values: &mut [(usize, usize)]) -> Option<()> {
        if event.get(at) == Some(&b'}') {
            return (at + 1 == event.len()).then_some(());
        }
        // Members usually come in column order: the search starts at the column after the last.
        let mut expected = 0;
        loop {
            let rest = &event[at..];
            let column = match self.keys.get(expected) {
                Some(key) if key.begins(rest) => expected,
                _ => (0..self.keys.len()).find(|&c| self.keys[c].begins(rest))?,
            };
            if values[column] != ABSENT {
                return None; // a name twice: arrow-json's object path decides
            }
            let start = at + self.keys[column].bytes.len();
            let end = value_end(event, start)?;
            values[column] = (start, end);
            expected = column + 1;
            match event.get(end) {
                Some(b',') => at = end + 1,
                Some(b'}') if end + 1 == event.len() => return Some(()),
                _ => return None,
            }
        }
    }
}

/// Where a shaped event's values go (see `kappa_common::shaped`): its shape's names after the
/// identity, as the table's columns, or skipped when the name is a member known only as null
/// (its value must then be `null`). Built only for a shape whose every name is one or the
/// other, once, and distinct: any other shape's events are decoded as the objects they stand
/// for.
pub struct ShapedColumns {
    columns: Vec<Option<usize>>,
}

impl ShapedColumns {
    pub fn new(shape: &Shape, data: &SchemaRef, null_only: &[String]) -> Option<ShapedColumns> {
        let (first, rest) = shape.names().split_first()?;
        if first != EVENT_ID_FIELD {
            return None;
        }
        let slot = |name: &String| match data.index_of(name) {
            Ok(column) => Some(Some(column)),
            Err(_) => null_only.contains(name).then_some(None),
        };
        let columns = rest.iter().map(slot).collect::<Option<Vec<Option<usize>>>>()?;
        let mut seen = vec![false; data.fields().len()];
        for &column in columns.iter().flatten() {
            if std::mem::replace(&mut seen[column], true) {
                return None;
            }
        }
        Some(ShapedColumns { columns })
    }

    /// Where the identity (the first value, a string without escapes) of a shaped event's
    /// values lies, and the offset just past it.
    pub fn identity(values: &[u8]) -> Option<(std::ops::Range<usize>, usize)> {
        if values.first_chunk::<2>() != Some(b"[\"") {
            return None;
        }
        let end = quote_or_backslash(values, 2)?;
        (values[end] == b'"').then_some((2..end, end + 1))
    }

    /// Where each column's value lies in `values` (the other values from `at`, just past the
    /// identity, on); `None` if they are not the shape's count of plain scalars.
    pub fn values(&self, values: &[u8], mut at: usize, out: &mut [(usize, usize)]) -> Option<()> {
        for &column in &self.columns {
            if values.get(at) != Some(&b',') {
                return None;
            }
            let end = shaped_value_end(values, at + 1)?;
            match column {
                Some(column) => out[column] = (at + 1, end),
                None if &values[at + 1..end] == b"null" => {}
                None => return None, // a value for a member known only as null: the schema grows
            }
            at = end;
        }
        (values.get(at) == Some(&b']') && at + 1 == values.len()).then_some(())
    }
}

/// The end of the value at `values[start..]` of a shaped event: a string whole (escapes and
/// all), anything else up to the next `,` or `]`. Unlike [`value_end`] it does not check a
/// number's characters: [`plain_columns`](crate::plain_columns) parses every value it is given
/// strictly, so a bracket or brace cut short (`[1`), a stray letter or an empty value is
/// refused there and the events go the object way (4.5% of a wide run was that check).
fn shaped_value_end(values: &[u8], start: usize) -> Option<usize> {
    if *values.get(start)? == b'"' {
        return string_end(values, start);
    }
    values[start..].iter().position(|&b| b == b',' || b == b']').map(|n| start + n)
}

/// A column the event has no member for.
pub(crate) const ABSENT: (usize, usize) = (0, 0);

/// The end of the single JSON scalar at `event[start..]`. Strings are passed whole (escapes
/// and all); other values must be exactly a literal or a run of number characters, so no value
/// can open, close or split an array.
fn value_end(event: &[u8], start: usize) -> Option<usize> {
    if *event.get(start)? == b'"' {
        return string_end(event, start);
    }
    let mut number = matches!(event[start], b'-' | b'0'..=b'9');
    let mut end = start;
    while let Some(&b) = event.get(end) {
        match b {
            b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E' => {}
            b'a'..=b'z' => number = false,
            _ => break,
        }
        end += 1;
    }
    (number || matches!(&event[start..end], b"true" | b"false" | b"null")).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn keys(names: &[&str]) -> ColumnKeys {
        ColumnKeys::new(&Arc::new(Schema::new(names.iter().map(|n| Field::new(*n, DataType::Utf8, true)).collect::<Vec<_>>())))
    }

    /// The arrays for events given without their opening brace, or `None`.
    fn restated(keys: &ColumnKeys, members: &[&str]) -> Option<String> {
        let events: Vec<&[u8]> = members.iter().map(|m| m.as_bytes()).collect();
        let mut out = Vec::new();
        keys.restate(&events, &vec![0; events.len()], &mut out)?;
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn plain_members_become_arrays_in_column_order() {
        let keys = keys(&["sale_id", "n", "a_long_column_name_here"]);
        assert_eq!(restated(&keys, &[r#""sale_id":"S1","n":3,"a_long_column_name_here":true}"#]).as_deref(), Some(r#"["S1",3,true]"#));
        assert_eq!(restated(&keys, &[r#""n":-1.5e3,"sale_id":"S2"}"#]).as_deref(), Some(r#"["S2",-1.5e3,null]"#), "any order, absent is null");
        assert_eq!(restated(&keys, &["}", r#""n":null}"#]).as_deref(), Some("[null,null,null][null,null,null]"));
        assert_eq!(restated(&keys, &[]).as_deref(), Some(""));
    }

    #[test]
    fn strings_pass_whole_with_their_escapes() {
        let keys = keys(&["s", "t"]);
        for value in [r#""a\"b""#, r#""ends in \\""#, r#""\\""#, r#""\u00e9, \n, \/""#, r#""""#, r#""a long string that spans words, \"quoted\"""#, "\"naïve\""]
        {
            let event = format!(r#""s":{value},"t":"x"}}"#);
            assert_eq!(restated(&keys, &[&event]), Some(format!(r#"[{value},"x"]"#)), "{value}");
        }
        assert_eq!(restated(&keys, &[r#""s":"open}"#]), None, "unterminated");
        assert_eq!(restated(&keys, &[r#""s":"a\"}"#]), None, "the quote is escaped");
    }

    #[test]
    fn any_other_shape_is_left_to_the_object_path() {
        let keys = keys(&["n", "s"]);
        for members in [
            r#""n":1,"n":2}"#, // a name twice
            r#""m":1}"#,       // an unknown name
            r#""\u006e":1}"#,  // a name escaped otherwise
            r#" "n":1}"#,      // whitespace
            r#""n": 1}"#,
            r#""n":1 }"#,
            r#""n":1}  "#, // trailing bytes
            r#""n":1}{"n":2}"#,
            r#""n":1,}"#,
            r#""n":1"#, // cut short
            r#""n":"#,
            r#""n":{"a":1}}"#, // nested
            r#""n":[1,2]}"#,
            r#""n":truex}"#, // not a literal or a number
            r#""n":1a}"#,
            r#""n":nul}"#,
            r#""n":+1}"#,
        ] {
            assert_eq!(restated(&keys, &[members]), None, "{members}");
        }
        assert_eq!(restated(&keys, &[r#""n":1}"#, r#""n":1,"n":1}"#]), None, "one event not plain fails the run");
    }
}
