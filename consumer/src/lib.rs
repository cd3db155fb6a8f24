//! kappa-consumer: events from a log into a time-partitioned Parquet lake, exactly once.
//!
//! ```text
//! source ─chunks─► decode (values typed by kappa_common::values) ─► partition (event time) ─► buffers per (partition, shard)
//!                                                                      │ rows/bytes/age/memory/shutdown
//!                           commit (positions + files, create-if-absent) ◄─ store ◄─ Parquet
//! ```

pub mod acks;
pub mod archive;
pub mod buffer;
pub mod claims;
pub mod commit;
pub mod compact;
pub mod config;
pub mod decode;
pub mod dedup;
pub mod describe;
pub mod error;
pub mod event;
pub mod feed;
pub mod inspect;
pub mod leased;
pub mod metrics;
pub mod origin;
pub mod parquet_file;
pub mod partition;
pub mod pipeline;
pub mod plain_columns;
pub mod positional;
pub mod program;
mod puts;
pub mod run;
pub mod settings;
pub mod source;
pub mod spill;
pub mod stats;
pub mod stdout;
pub mod typing;
pub mod workers;
