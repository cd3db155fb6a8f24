//! The Kinesis Producer Library's aggregated records: many user records, each with its own
//! partition key, packed into one Kinesis record. Java and Python services write most
//! production streams this way (the KPL, and AWS's `aws-kinesis-agg` libraries).
//!
//! A record is aggregated when it is `MAGIC`, then a protobuf `AggregatedRecord` (below), then
//! the MD5 digest of that protobuf. The messages are declared here with prost's derive (the
//! schema is three small proto2 messages; a build step for a `.proto` file would buy nothing).
//!
//! Reading and writing share this module so that what the producer packs is what the consumer
//! unpacks; the AWS reference implementation checks both ways in the end-to-end tests.

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;

/// The four bytes every aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// The MD5 digest that ends an aggregated record.
const DIGEST_LEN: usize = 16;

/// `AggregatedRecord` of the KPL's `messages.proto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<Record>,
}

/// One user record: indices into the aggregate's key tables, and its data.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "bytes", required, tag = "3")]
    pub data: Bytes,
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Tag {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// A user record taken out of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Bytes,
}

/// Why a record that starts with [`MAGIC`] is not a whole aggregate. Such a record is never
/// read in part: the consumer quarantines it with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KplError {
    #[error("KPL aggregated record of {0} bytes is too short for its magic prefix and MD5 trailer")]
    Short(usize),
    #[error("KPL aggregated record fails its MD5 check (expected {expected}, computed {computed}): damaged or cut short")]
    Checksum { expected: String, computed: String },
    #[error("KPL aggregated record body is not an AggregatedRecord protobuf: {0}")]
    Body(String),
    #[error("KPL aggregated record: user record {record} names {table} index {index}, but the table has {len} entries")]
    Index { record: usize, table: &'static str, index: u64, len: usize },
}

/// True if `data` starts with the aggregation magic: it is an aggregate, or a damaged one.
pub fn is_aggregated(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The user records of an aggregate, in order; all of them or an error, never a part.
pub fn deaggregate(data: &Bytes) -> Result<Vec<UserRecord>, KplError> {
    if data.len() < MAGIC.len() + DIGEST_LEN || !is_aggregated(data) {
        return Err(KplError::Short(data.len()));
    }
    let body = data.slice(MAGIC.len()..data.len() - DIGEST_LEN);
    let expected = &data[data.len() - DIGEST_LEN..];
    let computed = Md5::digest(&body);
    if computed.as_slice() != expected {
        return Err(KplError::Checksum { expected: hex(expected), computed: hex(&computed) });
    }
    // Decoding from `Bytes` makes each record's data a slice of the record, not a copy.
    let aggregate = AggregatedRecord::decode(body).map_err(|e| KplError::Body(e.to_string()))?;
    let lookup = |table: &'static str, entries: &[String], index: u64, record: usize| {
        usize::try_from(index).ok().and_then(|i| entries.get(i)).cloned().ok_or(KplError::Index { record, table, index, len: entries.len() })
    };
    aggregate
        .records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(UserRecord {
                partition_key: lookup("partition key", &aggregate.partition_key_table, r.partition_key_index, i)?,
                explicit_hash_key: match r.explicit_hash_key_index {
                    Some(index) => Some(lookup("explicit hash key", &aggregate.explicit_hash_key_table, index, i)?),
                    None => None,
                },
                data: r.data,
            })
        })
        .collect()
}

/// The 128-bit hash Kinesis routes a partition key by (MD5, big-endian): the record goes to
/// the shard whose hash key range holds it.
pub fn partition_key_hash(key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(key.as_bytes()).into())
}

/// Packs user records into aggregates of at most `max_bytes` (the whole Kinesis record: the
/// aggregate plus its partition key, which is its first user record's key).
#[derive(Debug)]
pub struct Aggregator {
    max_bytes: usize,
    aggregate: AggregatedRecord,
    /// The partition keys' indices in `aggregate.partition_key_table`.
    keys: std::collections::HashMap<String, u64>,
    /// The protobuf's encoded length so far.
    body_len: usize,
}

/// The record size an aggregate may not exceed (Kinesis' limit on data plus partition key).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

impl Aggregator {
    pub fn new(max_bytes: usize) -> Aggregator {
        Aggregator { max_bytes: max_bytes.min(MAX_RECORD_BYTES), aggregate: AggregatedRecord::default(), keys: Default::default(), body_len: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.aggregate.records.is_empty()
    }

    /// The Kinesis record size of the aggregate with one more user record (`key`, `data`).
    fn size_with(&self, key: &str, data_len: usize) -> usize {
        use prost::encoding::encoded_len_varint as varint;
        let (index, key_entry) = match self.keys.get(key) {
            Some(index) => (*index, 0),
            None => (self.keys.len() as u64, 1 + varint(key.len() as u64) + key.len()),
        };
        let record = 1 + varint(index) + 1 + varint(data_len as u64) + data_len;
        let body = self.body_len + key_entry + 1 + varint(record as u64) + record;
        let first_key = self.aggregate.partition_key_table.first().map_or(key.len(), String::len);
        MAGIC.len() + body + DIGEST_LEN + first_key
    }

    /// True if the user record fits the current aggregate (an empty aggregate takes anything
    /// [`Aggregator::fits_alone`] allows).
    pub fn fits(&self, key: &str, data_len: usize) -> bool {
        self.size_with(key, data_len) <= self.max_bytes
    }

    /// True if the user record fits an aggregate of its own.
    pub fn fits_alone(&self, key: &str, data_len: usize) -> bool {
        Aggregator::new(self.max_bytes).fits(key, data_len)
    }

    /// Adds a user record; the caller checked [`Aggregator::fits`] (else the aggregate grows
    /// past its limit).
    pub fn add(&mut self, key: &str, data: Bytes) {
        use prost::encoding::encoded_len_varint as varint;
        let index = match self.keys.get(key) {
            Some(index) => *index,
            None => {
                let index = self.keys.len() as u64;
                self.keys.insert(key.to_string(), index);
                self.aggregate.partition_key_table.push(key.to_string());
                self.body_len += 1 + varint(key.len() as u64) + key.len();
                index
            }
        };
        let record_len = 1 + varint(index) + 1 + varint(data.len() as u64) + data.len();
        self.body_len += 1 + varint(record_len as u64) + record_len;
        self.aggregate.records.push(Record { partition_key_index: index, explicit_hash_key_index: None, data, tags: Vec::new() });
    }

    /// The aggregate's partition key (its first user record's) and its bytes, emptying the
    /// aggregator; `None` if it is empty.
    pub fn take(&mut self) -> Option<(String, Vec<u8>)> {
        if self.is_empty() {
            return None;
        }
        let aggregate = std::mem::take(&mut self.aggregate);
        self.keys.clear();
        self.body_len = 0;
        let key = aggregate.partition_key_table[0].clone();
        let body = aggregate.encode_to_vec();
        let mut record = Vec::with_capacity(MAGIC.len() + body.len() + DIGEST_LEN);
        record.extend_from_slice(&MAGIC);
        record.extend_from_slice(&body);
        record.extend_from_slice(&Md5::digest(&body));
        Some((key, record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn aggregate(records: &[(&str, &[u8])]) -> (String, Vec<u8>) {
        let mut aggregator = Aggregator::new(MAX_RECORD_BYTES);
        for (key, data) in records {
            assert!(aggregator.fits(key, data.len()));
            aggregator.add(key, Bytes::copy_from_slice(data));
        }
        aggregator.take().unwrap()
    }

    #[test]
    fn round_trip_keeps_order_keys_and_data() {
        let (key, record) = aggregate(&[("a", b"{\"x\":1}"), ("b", b"{\"x\":2}"), ("a", b"")]);
        assert_eq!(key, "a");
        assert!(is_aggregated(&record));
        let users = deaggregate(&Bytes::from(record)).unwrap();
        let got: Vec<(&str, &[u8])> = users.iter().map(|u| (u.partition_key.as_str(), u.data.as_ref())).collect();
        assert_eq!(got, vec![("a", &b"{\"x\":1}"[..]), ("b", b"{\"x\":2}"), ("a", b"")]);
    }

    #[test]
    fn damage_is_an_error_naming_it_never_a_part() {
        let (_, record) = aggregate(&[("a", b"{\"x\":1}"), ("b", b"{\"x\":2}")]);
        let mut flipped = record.clone();
        flipped[6] ^= 1;
        assert!(matches!(deaggregate(&Bytes::from(flipped)), Err(KplError::Checksum { .. })));
        let cut = Bytes::copy_from_slice(&record[..record.len() - 3]);
        assert!(matches!(deaggregate(&cut), Err(KplError::Checksum { .. })));
        assert_eq!(deaggregate(&Bytes::from_static(&MAGIC)), Err(KplError::Short(4)));
        // A well-formed digest over a body that is not the message.
        let body = b"\xff\xff\xff";
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(body);
        bad.extend_from_slice(&Md5::digest(body));
        assert!(matches!(deaggregate(&Bytes::from(bad)), Err(KplError::Body(_))));
        // An index past the key table.
        let body = AggregatedRecord {
            partition_key_table: vec![],
            explicit_hash_key_table: vec![],
            records: vec![Record { partition_key_index: 3, explicit_hash_key_index: None, data: Bytes::new(), tags: vec![] }],
        }
        .encode_to_vec();
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&body);
        bad.extend_from_slice(&Md5::digest(&body));
        assert!(matches!(deaggregate(&Bytes::from(bad)), Err(KplError::Index { index: 3, .. })));
    }

    #[test]
    fn key_hash_is_kinesis_md5() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e.
        assert_eq!(partition_key_hash(""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }

    proptest! {
        #[test]
        fn sizes_are_exact_and_limits_hold(records in prop::collection::vec(("[a-z]{1,40}", prop::collection::vec(any::<u8>(), 0..3000)), 1..60), limit in 200usize..20_000) {
            let mut aggregator = Aggregator::new(limit);
            let mut out = Vec::new();
            for (key, data) in &records {
                if !aggregator.fits_alone(key, data.len()) {
                    continue;
                }
                if !aggregator.fits(key, data.len()) {
                    out.push(aggregator.take().unwrap());
                }
                let expected = aggregator.size_with(key, data.len());
                aggregator.add(key, Bytes::copy_from_slice(data));
                let (first, bytes) = { let mut copy = Aggregator { max_bytes: limit, aggregate: aggregator.aggregate.clone(), keys: aggregator.keys.clone(), body_len: aggregator.body_len }; copy.take().unwrap() };
                prop_assert_eq!(bytes.len() + first.len(), expected);
            }
            out.extend(aggregator.take());
            for (key, bytes) in &out {
                prop_assert!(bytes.len() + key.len() <= limit);
                prop_assert!(deaggregate(&Bytes::from(bytes.clone())).is_ok());
            }
        }
    }
}
