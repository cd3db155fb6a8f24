//! The shared core of kappa-lake: what the producer, the consumer and replay agree on.
//!
//! - [`direct_io`]: files written and read around the page cache (scratch and lake files).
//! - [`endpoint`]: the URIs users type (`log:PATH`, `kinesis:NAME`, `s3://…`), parsed once.
//! - [`aws`]: AWS clients from the standard configuration chain, with endpoint overrides.
//! - [`event`]: the event contract (identity field, positions, sequence numbers).
//! - [`schema`]: column types, schema inference (CSV samples, JSON values), and schema files.
//! - [`values`]: how a JSON value becomes a column's value, one rule for every path.
//! - [`json`]: JSON values whose numbers keep their digits as written.
//! - [`flatten`]: nested JSON into flat rows (`parent_child` columns, exploded arrays).
//! - [`log`]: the embedded, durable, sharded log (the cloud-free default).
//! - [`shaped`]: events stored in the log as values in the order of a stored list of names.
//! - [`memory`]: allocator settings for the pipeline's allocation pattern.
//! - [`store`]: object storage for the lake (local directory; S3), with create-if-absent.
//! - [`time`]: event-time parsing shared by pacing and partitioning.

pub mod aws;
pub mod direct_io;
pub mod endpoint;
pub mod event;
pub mod flatten;
pub mod json;
pub mod kpl;
pub mod lexical;
pub mod log;
pub mod logging;
pub mod memory;
pub mod schema;
pub mod shaped;
pub mod shutdown;
pub mod store;
pub mod time;
pub mod values;
