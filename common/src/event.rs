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

/// A position within a shard: a record's sequence number, as Kinesis and the embedded log hand
/// them out, or one event inside a record that holds several (a KPL aggregate's user records, a
/// CloudWatch Logs batch's log events) — KCL's "extended sequence number".
///
/// Kinesis sequence numbers are decimal strings (56 digits in practice, far past `u128::MAX`),
/// so a position is a 256-bit integer: the record's number times 2^20, plus 1 + the event's
/// index inside the record for an event of a record that holds several. Positions compare as
/// the reading order does (a record's events after the record's number, before the next
/// record's), are `Copy`, and cost one integer on every event of the hot path. As text a
/// record's number is its digits (as every table stored them), an event inside one is
/// `<record>.<index>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SequenceNumber(arrow::datatypes::i256);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sequence number {0:?}: expected 1-70 decimal digits, optionally followed by .INDEX (an event inside a record)")]
pub struct SequenceNumberError(pub String);

/// Digits that always fit once scaled by 2^20: `i256::MAX / 2^20` has 71.
const MAX_DIGITS: usize = 70;
/// The bits below a record's number that number the events inside it.
const SUB_BITS: u8 = 20;
/// The events one record may hold (a 1 MiB KPL aggregate holds at most ~175,000).
pub const MAX_EVENTS_PER_RECORD: u64 = (1 << SUB_BITS) - 1;

impl SequenceNumber {
    /// The next record's number (for sources that number records themselves).
    pub fn next(self) -> SequenceNumber {
        SequenceNumber(((self.0 >> SUB_BITS).wrapping_add(arrow::datatypes::i256::ONE)) << SUB_BITS)
    }

    /// The position of event `index` of the record at `self` (`None` past
    /// [`MAX_EVENTS_PER_RECORD`]).
    pub fn within(self, index: u64) -> Option<SequenceNumber> {
        (index < MAX_EVENTS_PER_RECORD).then(|| SequenceNumber(self.record().0.wrapping_add(arrow::datatypes::i256::from_i128(i128::from(index) + 1))))
    }

    /// The number of the record this position lies in (the position itself for a record).
    pub fn record(self) -> SequenceNumber {
        SequenceNumber((self.0 >> SUB_BITS) << SUB_BITS)
    }

    /// The index of the event inside its record, for an event of a record holding several.
    pub fn index(self) -> Option<u64> {
        let sub = self.0.wrapping_sub(self.record().0).to_i128().expect("below 2^20");
        (sub > 0).then(|| (sub - 1) as u64)
    }

    /// The value, when it is a record's number that fits a u64 (always, for the embedded log).
    pub fn to_u64(self) -> Option<u64> {
        if self.index().is_some() {
            return None;
        }
        (self.0 >> SUB_BITS).to_i128().and_then(|v| u64::try_from(v).ok())
    }
}

impl From<u64> for SequenceNumber {
    fn from(n: u64) -> Self {
        SequenceNumber(arrow::datatypes::i256::from_i128(i128::from(n)) << SUB_BITS)
    }
}

impl FromStr for SequenceNumber {
    type Err = SequenceNumberError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || SequenceNumberError(s.to_string());
        let (record, index) = match s.split_once('.') {
            Some((record, index)) => {
                let index: u64 = index.parse().ok().filter(|_| index.bytes().all(|b| b.is_ascii_digit())).ok_or_else(invalid)?;
                (record, Some(index))
            }
            None => (s, None),
        };
        let digits = record.trim_start_matches('0');
        if record.is_empty() || digits.len() > MAX_DIGITS || !record.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let value: arrow::datatypes::i256 = if digits.is_empty() { arrow::datatypes::i256::ZERO } else { digits.parse().map_err(|_| invalid())? };
        let record = SequenceNumber(value << SUB_BITS);
        match index {
            Some(index) => record.within(index).ok_or_else(invalid),
            None => Ok(record),
        }
    }
}

impl fmt::Display for SequenceNumber {
    /// Decimal digits (`<record>.<index>` inside a record); honours width and zero-padding
    /// (`{:020}`), as object names need.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let record = (self.0 >> SUB_BITS).to_string();
        match self.index() {
            None => f.pad_integral(true, "", &record),
            Some(index) => f.pad_integral(true, "", &format!("{record}.{index}")),
        }
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
        assert!("1".repeat(71).parse::<SequenceNumber>().is_err());
        assert!("9".repeat(70).parse::<SequenceNumber>().is_ok());
        assert_eq!(format!("{:020}", SequenceNumber::from(42)), "00000000000000000042");
        assert_eq!(a.to_string().parse::<SequenceNumber>().unwrap(), a);
        assert_eq!(SequenceNumber::from(41).next(), SequenceNumber::from(42));
        assert!("".parse::<SequenceNumber>().is_err());
        assert_eq!(SequenceNumber::from(7).to_u64(), Some(7));
    }

    #[test]
    fn events_inside_a_record_sit_between_it_and_the_next() {
        let a: SequenceNumber = "49590338271490256608559692538361571095921575989136588898".parse().unwrap();
        let b: SequenceNumber = "49590338271490256608559692538361571095921575989136588899".parse().unwrap();
        let (first, second) = (a.within(0).unwrap(), a.within(1).unwrap());
        assert!(a < first && first < second && second < b);
        assert_eq!(first.record(), a);
        assert_eq!((a.index(), first.index(), second.index()), (None, Some(0), Some(1)));
        assert_eq!(second.to_string(), "49590338271490256608559692538361571095921575989136588898.1");
        assert_eq!(second.to_string().parse::<SequenceNumber>().unwrap(), second);
        assert_eq!(second.next(), b);
        assert_eq!(first.to_u64(), None);
        assert!(a.within(MAX_EVENTS_PER_RECORD).is_none());
        assert!(a.within(MAX_EVENTS_PER_RECORD - 1).unwrap() < b);
        assert!("12.".parse::<SequenceNumber>().is_err());
        assert!("12.x".parse::<SequenceNumber>().is_err());
        assert!("12.+1".parse::<SequenceNumber>().is_err());
        assert_eq!(format!("{:08}", SequenceNumber::from(42).within(3).unwrap()), "000042.3");
    }

    proptest! {
        #[test]
        fn ordering_matches_integers(x in any::<u64>(), y in any::<u64>()) {
            let (sx, sy) = (SequenceNumber::from(x), SequenceNumber::from(y));
            prop_assert_eq!(sx.cmp(&sy), x.cmp(&y));
            prop_assert_eq!(sx.to_string().parse::<SequenceNumber>().unwrap(), sx);
            prop_assert_eq!(sx.to_u64(), Some(x));
        }
    }
}
