//! Where a lake is, and the store that reaches it: what every tool that opens a table needs
//! before anything else (the consumer, the replay, and whatever else reads or writes tables).

use std::path::PathBuf;

use kappa_common::aws::AwsContext;
use kappa_common::endpoint::Endpoint;
use kappa_common::store::{LocalStore, S3Store, Store};

use crate::TableError;
use crate::delta::TableLocation;

/// Where the lake is.
#[derive(Debug, Clone)]
pub enum LakeLocation {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl LakeLocation {
    pub fn is_s3(&self) -> bool {
        matches!(self, LakeLocation::S3 { .. })
    }
}

impl std::fmt::Display for LakeLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LakeLocation::Local(path) => write!(f, "{}", path.display()),
            LakeLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            LakeLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// Parses `--lake`: a local directory or `s3://BUCKET/PREFIX`. The error names the flag.
pub fn parse_lake(text: &str) -> Result<LakeLocation, String> {
    let lake: Endpoint = text.parse().map_err(|e| format!("--lake: {e}"))?;
    match lake {
        Endpoint::Local(path) => Ok(LakeLocation::Local(path)),
        Endpoint::S3 { bucket, prefix } => Ok(LakeLocation::S3 { bucket, prefix }),
        other => Err(format!("--lake {other}: a lake is a local directory or s3://BUCKET/PREFIX")),
    }
}

/// Checks a table name: one Glue and Athena accept.
pub fn validate_table_name(table: &str) -> Result<(), String> {
    let ok = !table.is_empty() && table.len() <= 255 && table.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok { Ok(()) } else { Err(format!("--table {table:?}: use lowercase letters, digits and '_' (a name Glue and Athena accept)")) }
}

/// The store at a lake (or archive) location; `aws` must be loaded whenever it is on S3.
pub fn open_store(location: &LakeLocation, aws: Option<&AwsContext>) -> Store {
    match location {
        LakeLocation::Local(path) => Store::Local(LocalStore::new(path)),
        LakeLocation::S3 { bucket, prefix } => {
            let aws = aws.expect("AWS configuration loaded for S3 locations");
            Store::S3(S3Store::new(aws.s3(), bucket.clone(), prefix.clone()).with_access(aws.s3_endpoint(), aws.sdk_config().credentials_provider()))
        }
    }
}

/// Where the Delta table of `name` lives in `store`.
pub fn table_location(store: &Store, name: &str) -> Result<TableLocation, TableError> {
    match store {
        Store::Local(local) => Ok(TableLocation::local(local.root(), name)?),
        Store::S3(s3) => Ok(TableLocation::s3(s3.client().config(), s3.credentials().cloned(), s3.endpoint(), s3.bucket(), &s3.key(name))?),
        _ => Err(TableError::Invalid { table: name.to_string(), reason: "this lake location has no Delta table support".into() }),
    }
}
