//! Where events come from: one module per source kind, each delivering chunks of
//! [`SourceEvent`](crate::pipeline::SourceEvent)s, every shard's in log order.

pub mod log;
