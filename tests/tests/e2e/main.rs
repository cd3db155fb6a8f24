//! End-to-end tests: the real binaries against the embedded log and moto's AWS-API server.
//!
//! One test binary for the whole workspace (each one links the AWS SDK: few binaries build
//! faster). Run them with `./scripts/test`, which installs moto and builds the binaries first.

mod compaction;
mod concurrency;
mod consumer_bad_input;
mod consumer_crash;
mod consumer_guards;
mod consumer_kinesis;
mod consumer_log;
mod consumer_s3;
mod consumer_sqs;
mod deploy;
mod edges;
mod fences;
mod hands;
mod hands_report;
mod image;
mod kinesis_efo;
mod kinesis_formats;
mod leases;
mod pipes;
mod producer_aws;
mod producer_bad_input;
mod producer_inputs;
mod producer_log;
mod query;
mod query_bounds;
mod replay;
mod s3_faults;
mod scale_out;
mod scale_out_replay;
mod scale_out_sqs;
mod support;
mod switching;
mod values;
