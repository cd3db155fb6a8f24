//! The event contract between the producer and the consumer.
//!
//! An event is one JSON object per row: the user's columns, typed (numbers as numbers), plus one
//! reserved member, [`EVENT_ID_FIELD`], that carries the event's stable identity. The identity is
//! derived from the input (file identity, pass, row), not from where the event landed in the log,
//! so a row that a producer retry or an SQS redelivery sends twice has the same identity both
//! times and the consumer keeps it once. The consumer strips the member: it never becomes a
//! column of the user's table.
//!
//! Several rows may travel in one message (SQS packing): the message body is then NDJSON, one
//! event per line.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// The reserved member holding an event's identity. Chosen so it cannot collide with columns
/// of real data; input columns with this exact name are rejected by the producer.
pub const EVENT_ID_FIELD: &str = "_kappa_id";

/// Formats an event identity: `<source id>:<pass>:<row>`.
///
/// `source` identifies the input (see the producer's file identity), `pass` is the `--loop`
/// iteration (a load-generation loop deliberately makes new events), `row` is the zero-based
/// index of the output row within the source (after exploding arrays).
pub fn event_id(source: &str, pass: u64, row: u64) -> String {
    // Called once per row on the producer's hot path: no formatting machinery.
    let (mut pass_buf, mut row_buf) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (pass, row) = (pass_buf.format(pass), row_buf.format(row));
    let mut id = String::with_capacity(source.len() + pass.len() + row.len() + 2);
    id.push_str(source);
    id.push(':');
    id.push_str(pass);
    id.push(':');
    id.push_str(row);
    id
}

/// A sequence number within a shard, as Kinesis and the embedded log hand them out.
///
/// Kinesis sequence numbers are decimal strings of up to 128 digits (56 in practice, larger
/// than `u128::MAX`), so they are kept as their digits and compared numerically: a shorter
/// number (no leading zeros) is smaller, equal lengths compare digit by digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sequence number {0:?}: expected 1-128 decimal digits")]
pub struct SequenceNumberError(pub String);

impl SequenceNumber {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<u64> for SequenceNumber {
    fn from(n: u64) -> Self {
        SequenceNumber(n.to_string())
    }
}

impl FromStr for SequenceNumber {
    type Err = SequenceNumberError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SequenceNumberError(s.to_string()));
        }
        let digits = s.trim_start_matches('0');
        Ok(SequenceNumber(if digits.is_empty() { "0".to_string() } else { digits.to_string() }))
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A position in a log: a shard and a sequence number within it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub shard: String,
    pub sequence: SequenceNumber,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kinesis_sized_numbers_compare_numerically() {
        let a: SequenceNumber = "49590338271490256608559692538361571095921575989136588898".parse().unwrap();
        let b: SequenceNumber = "49590338271490256608559692540925702759324208523137515618".parse().unwrap();
        let small: SequenceNumber = "9".parse().unwrap();
        assert!(a < b);
        assert!(small < a);
        assert_eq!("007".parse::<SequenceNumber>().unwrap(), SequenceNumber::from(7));
        assert!("12a".parse::<SequenceNumber>().is_err());
        assert!("".parse::<SequenceNumber>().is_err());
    }

    proptest! {
        #[test]
        fn ordering_matches_integers(x in any::<u64>(), y in any::<u64>()) {
            let (sx, sy) = (SequenceNumber::from(x), SequenceNumber::from(y));
            prop_assert_eq!(sx.cmp(&sy), x.cmp(&y));
            prop_assert_eq!(sx.to_string().parse::<SequenceNumber>().unwrap(), sx);
        }
    }
}
