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
/// Kinesis sequence numbers are decimal strings (56 digits in practice, far past `u128::MAX`),
/// so they are held as a 256-bit integer: up to 76 digits, `Copy`, compared numerically, and
/// cheap enough to carry on every event of the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SequenceNumber(arrow::datatypes::i256);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sequence number {0:?}: expected 1-76 decimal digits")]
pub struct SequenceNumberError(pub String);

/// Digits that always fit: `i256::MAX` has 77.
const MAX_DIGITS: usize = 76;

impl SequenceNumber {
    /// The number after this one (for sources that number events themselves).
    pub fn next(self) -> SequenceNumber {
        SequenceNumber(self.0.wrapping_add(arrow::datatypes::i256::ONE))
    }

    /// The value, when it fits a u64 (always, for the embedded log).
    pub fn to_u64(self) -> Option<u64> {
        self.0.to_i128().and_then(|v| u64::try_from(v).ok())
    }
}

impl From<u64> for SequenceNumber {
    fn from(n: u64) -> Self {
        SequenceNumber(arrow::datatypes::i256::from_i128(i128::from(n)))
    }
}

impl FromStr for SequenceNumber {
    type Err = SequenceNumberError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.trim_start_matches('0');
        if s.is_empty() || digits.len() > MAX_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SequenceNumberError(s.to_string()));
        }
        if digits.is_empty() {
            return Ok(SequenceNumber::default());
        }
        digits.parse().map(SequenceNumber).map_err(|_| SequenceNumberError(s.to_string()))
    }
}

impl fmt::Display for SequenceNumber {
    /// Decimal digits; honours width and zero-padding (`{:020}`), as object names need.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad_integral(true, "", &self.0.to_string())
    }
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
        assert!("1".repeat(77).parse::<SequenceNumber>().is_err());
        assert_eq!(format!("{:020}", SequenceNumber::from(42)), "00000000000000000042");
        assert_eq!(a.to_string().parse::<SequenceNumber>().unwrap(), a);
        assert_eq!(SequenceNumber::from(41).next(), SequenceNumber::from(42));
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
