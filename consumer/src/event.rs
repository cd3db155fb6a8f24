//! One event as a source delivers it: what every source produces and the pipeline, the
//! decoder and the raw archive take.

use bytes::Bytes;
use kappa_common::event::SequenceNumber;

/// One event as a source delivers it.
#[derive(Debug, Clone)]
pub struct SourceEvent {
    /// Index into the pipeline's shard names.
    pub shard: u32,
    pub seq: SequenceNumber,
    pub arrival_ms: i64,
    /// Often a slice of a buffer the whole chunk shares.
    pub payload: Bytes,
}
