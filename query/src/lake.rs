//! The lake's table, opened at the version asked for, read through a counting object store.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;

use deltalake_core::DeltaTableBuilder;
use deltalake_core::kernel::Snapshot;
use deltalake_core::logstore::LogStoreRef;
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
use crate::history::{Versions, missing_files, present_files, when};
use crate::local_reads::LocalReads;

pub use crate::at::At;

/// A lake table opened for reading.
pub struct LakeTable {
    pub name: String,
    /// The table's log and the version read: what DataFusion's table provider is built from.
    pub log_store: LogStoreRef,
    pub snapshot: Arc<Snapshot>,
    pub version: u64,
    /// The store the table's files are read through, and the URL it answers for.
    pub store: Arc<dyn ObjectStore>,
    pub store_url: Url,
    pub counters: Arc<Counters>,
    /// The files and bytes the version holds: what "data scanned" is a share of. Summed on first
    /// use: a second pass over the log (~2 ms of a 16 ms one-day query) that `--quiet` without
    /// `--summary-json` never needs.
    totals: tokio::sync::OnceCell<Totals>,
}

/// The files and bytes of a table version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub files: u64,
    pub bytes: u64,
}

impl LakeTable {
    pub async fn totals(&self) -> Result<Totals, QueryError> {
        self.totals.get_or_try_init(|| sum_files(&self.log_store, &self.snapshot)).await.copied()
    }
}

/// Adds up the files of a snapshot and their sizes (from the Delta log, not the store).
async fn sum_files(log_store: &LogStoreRef, snapshot: &Snapshot) -> Result<Totals, QueryError> {
    let mut totals = Totals { files: 0, bytes: 0 };
    let mut files = snapshot.files(log_store.as_ref(), None);
    while let Some(batch) = files.try_next().await? {
        totals.files += batch.num_rows() as u64;
        let sizes = batch
            .column_by_name("size")
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| QueryError::Lake("the Delta log's file list has no sizes".into()))?;
        totals.bytes += sizes.iter().flatten().map(|s| s.max(0) as u64).sum::<u64>();
    }
    Ok(totals)
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
    let located = location(lake, name, aws).await?;
    let TableLocation { url, backend } = located.clone();
    // A local file serves each range as asked; S3 (object_store's HTTP stores) merges near ones.
    let ranges = if backend.is_some() { RangeReads::Coalesced } else { RangeReads::Local(LocalReads::new()) };
    let inner: Arc<dyn ObjectStore> = backend.unwrap_or_else(|| Arc::new(object_store::local::LocalFileSystem::new()));
    let root = Path::from_url_path(url.path()).map_err(|e| QueryError::Config(e.to_string()))?;
    let counters = Counters::new(&root);
    let store: Arc<dyn ObjectStore> = Arc::new(CountingStore::new(inner, counters.clone(), ranges));
    let builder = DeltaTableBuilder::from_url(url.clone())?.with_storage_backend(store.clone(), url.clone());
    let opened = |e| QueryError::Open { table: name.to_string(), at: at.clone(), source: Box::new(e) };
    let log_store = builder.build().map_err(opened)?.log_store();
    // An older version is first checked against what the log and the store still hold (see
    // history.rs): one listing of the log, and for an old version one of the table's files.
    let (version, versions) = match at {
        At::Latest => (None, None),
        _ => {
            let versions = Versions::list(store.as_ref(), &root).await?;
            (versions.resolve(name, at)?, Some(versions))
        }
    };
    // A lazy snapshot (the log's protocol, metadata and segment), whose files DataFusion's scan
    // replays with only the statistics its filters need. Loading the table instead parsed every
    // column's statistics of every file up front (a 6,936-file table: 77 ms).
    let snapshot = match Snapshot::try_new(log_store.as_ref(), version).await {
        Ok(snapshot) => Arc::new(snapshot),
        // A damaged log: which file, what it means, what to do.
        Err(e) => match kappa_table::delta::diagnose(name, &located).await {
            Some(message) => return Err(QueryError::Lake(message)),
            None => return Err(opened(e)),
        },
    };
    if let (Some(version), Some(versions)) = (version, &versions)
        && Some(version) != versions.latest()
    {
        vacuumed(name, &log_store, &snapshot, store.as_ref(), &root, versions).await?;
    }
    let version = snapshot.version();
    counters.take(); // reading the log is not scanning data
    let store_url = Url::parse(&format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default())).expect("a scheme and a host make a URL");
    Ok(LakeTable { name: name.to_string(), log_store, snapshot, version, store, store_url, counters, totals: tokio::sync::OnceCell::new() })
}

/// Fails if a vacuum removed files of `snapshot` (an old version), naming the oldest version
/// whose files are all there: found by bisection, as a vacuum removes the files of every
/// version before some point.
async fn vacuumed(
    name: &str,
    log_store: &LogStoreRef,
    snapshot: &Snapshot,
    store: &dyn ObjectStore,
    root: &Path,
    versions: &Versions,
) -> Result<(), QueryError> {
    let present = present_files(store, root).await?;
    let (missing, total) = missing_files(log_store, snapshot, root, &present).await?;
    let Some(example) = missing.first() else { return Ok(()) };
    let version = snapshot.version();
    let latest = versions.latest().unwrap_or(version);
    let (mut low, mut high) = (version + 1, latest);
    while low < high {
        let middle = low + (high - low) / 2;
        let later = Snapshot::try_new(log_store.as_ref(), Some(middle)).await?;
        if missing_files(log_store, &later, root, &present).await?.0.is_empty() {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    let intact = match versions.time_of(high) {
        Some(time) if high < latest => format!("the oldest version whose files are all there is {high}, committed at {}", when(time)),
        _ => format!("only the current version, {latest}, has all its files"),
    };
    Err(QueryError::TimeTravel(format!(
        "version {version} of table {name} is no longer readable: {} of its {total} data files were removed by a vacuum (e.g. {example}); {intact}",
        missing.len()
    )))
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
