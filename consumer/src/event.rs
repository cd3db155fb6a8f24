//! One event as a source delivers it: what every source produces and the pipeline, the
//! decoder and the raw archive take.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use kappa_common::event::SequenceNumber;
use kappa_common::shaped::{Shape, ShapedError};

/// One event as a source delivers it.
#[derive(Debug, Clone)]
pub struct SourceEvent {
    /// Index into the pipeline's shard names.
    pub shard: u32,
    pub seq: SequenceNumber,
    pub arrival_ms: i64,
    /// The JSON object, or with `shape` its values (a JSON array in the shape's order). Often
    /// a slice of a buffer the whole chunk shares.
    pub payload: Bytes,
    /// Set for a shaped event of the embedded log (see `kappa_common::shaped`).
    pub shape: Option<Arc<Shape>>,
    /// Why the source could not make an event of these bytes (a damaged KPL aggregate, a
    /// payload that is not the compression `--payload` requires): the event stands for no
    /// object, and is quarantined whole with this reason and its raw bytes.
    pub defect: Option<Arc<str>>,
}

impl SourceEvent {
    /// An event that is a JSON object as it travels (every source but the embedded log).
    pub fn object(shard: u32, seq: SequenceNumber, arrival_ms: i64, payload: Bytes) -> SourceEvent {
        SourceEvent { shard, seq, arrival_ms, payload, shape: None, defect: None }
    }

    /// The event, marked as one the source could not read (see [`SourceEvent::defect`]).
    pub fn with_defect(mut self, reason: String) -> SourceEvent {
        self.defect = Some(reason.into());
        self
    }

    /// The event as a JSON object: the payload, or the object a shaped event stands for. Values
    /// that are not an array of the shape's length come back as they are, and are quarantined
    /// as not being an object.
    pub fn json(&self) -> Cow<'_, [u8]> {
        if self.defect.is_some() {
            // No object: the decoder rejects it, whatever the raw bytes hold.
            return Cow::Borrowed(b"");
        }
        match &self.shape {
            None => Cow::Borrowed(&self.payload),
            Some(shape) => {
                let mut object = Vec::new();
                match shape.write_object(&self.payload, &mut object) {
                    Ok(()) => Cow::Owned(object),
                    Err(_) => Cow::Borrowed(&self.payload),
                }
            }
        }
    }

    /// Why a shaped event stands for no object (its values do not fit its shape): the reason it
    /// is quarantined with, rather than "not a JSON object".
    pub fn shape_error(&self) -> Option<ShapedError> {
        self.shape.as_ref()?.write_object(&self.payload, &mut Vec::new()).err()
    }

    /// The length of [`SourceEvent::json`], without making it: what the byte-count flush
    /// trigger counts, so files are cut at the same events however the events travelled.
    pub fn json_len(&self) -> usize {
        if self.defect.is_some() {
            return 0;
        }
        match &self.shape {
            None => self.payload.len(),
            Some(shape) => shape.object_len(&self.payload),
        }
    }
}
