//! The lake's table, opened at the version asked for, read through a counting object store.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake_core::{DeltaTable, DeltaTableBuilder};
use futures::TryStreamExt;
use kappa_common::aws::{AwsContext, AwsOptions};
use kappa_common::endpoint::Endpoint;
use kappa_common::store::{S3Store, Store};
use kappa_table::delta::TableLocation;
use object_store::ObjectStore;
use object_store::path::Path;
use url::Url;

use crate::counting::{Counters, CountingStore, RangeReads};
use crate::error::QueryError;

/// Which version of the table a query reads.
#[derive(Debug, Clone, PartialEq)]
pub enum At {
    Latest,
    Version(u64),
    /// The version current at that time (Delta time travel): before a replay's switch, the
    /// generation readers saw then.
    Time(DateTime<Utc>),
}

/// A lake table opened for reading.
pub struct LakeTable {
    pub name: String,
    pub table: DeltaTable,
    pub version: u64,
    /// The store the table's files are read through, and the URL it answers for.
    pub store: Arc<dyn ObjectStore>,
    pub store_url: Url,
    pub counters: Arc<Counters>,
    /// The files and bytes the version holds: what "data scanned" is a share of.
    pub total_files: u64,
    pub total_bytes: u64,
}

/// Where table `name` of the lake at `lake` (a directory or `s3://bucket[/prefix]`) lives; a
/// local table must exist.
pub async fn location(lake: &str, name: &str, aws: &AwsOptions) -> Result<TableLocation, QueryError> {
    let endpoint: Endpoint = lake.parse().map_err(|e| QueryError::Config(format!("--lake {lake}: {e}")))?;
    match endpoint {
        Endpoint::Local(dir) => {
            if !dir.join(name).join("_delta_log").is_dir() {
                return Err(QueryError::NoTable { lake: lake.to_string(), table: name.to_string(), tables: local_tables(&dir) });
            }
            Ok(TableLocation::local(&dir, name)?)
        }
        Endpoint::S3 { bucket, prefix } => {
            let context = AwsContext::load(aws).await.map_err(|e| QueryError::Config(e.to_string()))?;
            let store = Store::S3(S3Store::new(context.s3(), bucket, prefix).with_access(context.s3_endpoint(), context.sdk_config().credentials_provider()));
            Ok(kappa_table::location(&store, name)?)
        }
        other => Err(QueryError::Config(format!("--lake {other}: a lake is a local directory or s3://BUCKET[/PREFIX]"))),
    }
}

/// Opens `name` in the lake at `lake` (a directory or `s3://bucket[/prefix]`).
pub async fn open(lake: &str, name: &str, at: &At, aws: &AwsOptions) -> Result<LakeTable, QueryError> {
    let TableLocation { url, backend } = location(lake, name, aws).await?;
    // A local file serves each range as asked; S3 (object_store's HTTP stores) merges near ones.
    let ranges = if backend.is_some() { RangeReads::Coalesced } else { RangeReads::Exact };
    let inner: Arc<dyn ObjectStore> = backend.unwrap_or_else(|| Arc::new(object_store::local::LocalFileSystem::new()));
    let counters = Counters::new(&Path::from_url_path(url.path()).map_err(|e| QueryError::Config(e.to_string()))?);
    let store: Arc<dyn ObjectStore> = Arc::new(CountingStore::new(inner, counters.clone(), ranges));
    let builder = DeltaTableBuilder::from_url(url.clone())?.with_storage_backend(store.clone(), url.clone());
    let builder = match at {
        At::Latest => builder,
        At::Version(version) => builder.with_version(*version as _),
        At::Time(time) => builder.with_timestamp(*time),
    };
    let table = builder.load().await.map_err(|e| QueryError::Open { table: name.to_string(), at: at.clone(), source: Box::new(e) })?;
    let version = table.version().unwrap_or_default() as u64;
    let (mut total_files, mut total_bytes) = (0, 0);
    let mut files = table.get_active_add_actions_by_predicate(None);
    while let Some(file) = files.try_next().await? {
        total_files += 1;
        total_bytes += file.size().max(0) as u64;
    }
    drop(files);
    counters.take(); // reading the log is not scanning data
    let store_url = Url::parse(&format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default())).expect("a scheme and a host make a URL");
    Ok(LakeTable { name: name.to_string(), table, version, store, store_url, counters, total_files, total_bytes })
}

/// The tables a local lake directory holds, for the message when one is not there.
fn local_tables(lake: &std::path::Path) -> Vec<String> {
    let mut tables: Vec<String> = std::fs::read_dir(lake)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().join("_delta_log").is_dir())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    tables.sort();
    tables
}
