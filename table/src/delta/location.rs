//! Where a table lives, and the object store that reaches it.

use std::sync::Arc;

use deltalake_core::logstore::object_store::ObjectStore;
use deltalake_core::{DeltaTableBuilder, DeltaTableError};
use url::Url;

use super::{DeltaError, s3};

/// Where a table lives: `file:///…/lake/events/` or `s3://bucket/prefix/events/`, and for S3
/// the object store that reaches it (the lake's endpoint and credentials).
#[derive(Debug, Clone)]
pub struct TableLocation {
    pub url: Url,
    pub backend: Option<Arc<dyn ObjectStore>>,
}

impl TableLocation {
    /// A table in a local lake directory (created if missing).
    pub fn local(lake: &std::path::Path, table: &str) -> Result<TableLocation, DeltaError> {
        let dir = lake.join(table);
        let invalid = |reason: String| DeltaError::Location { table: table.to_string(), location: dir.display().to_string(), reason };
        std::fs::create_dir_all(&dir).map_err(|e| invalid(e.to_string()))?;
        let dir = dir.canonicalize().map_err(|e| invalid(e.to_string()))?;
        let url = Url::from_directory_path(&dir).map_err(|()| invalid("not an absolute path".into()))?;
        Ok(TableLocation { url, backend: None })
    }

    /// A table at `url` (`s3://bucket/prefix/table/`) reached through `backend`, an object
    /// store rooted at the bucket.
    pub fn with_backend(url: Url, backend: Arc<dyn ObjectStore>) -> TableLocation {
        register_scheme(&url);
        TableLocation { url, backend: Some(backend) }
    }

    /// A table on S3 at `s3://bucket/key/`, reached with the S3 client's region and
    /// credentials and the lake's endpoint override (an emulator's, say).
    pub fn s3(
        config: &aws_sdk_s3::Config,
        credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
        endpoint: Option<&str>,
        bucket: &str,
        key: &str,
    ) -> Result<TableLocation, DeltaError> {
        let url = Url::parse(&format!("s3://{bucket}/{}/", key.trim_matches('/'))).map_err(|e| DeltaError::Location {
            table: key.to_string(),
            location: format!("s3://{bucket}/{key}"),
            reason: e.to_string(),
        })?;
        let store = s3::object_store(config, credentials, endpoint, bucket).map_err(|e| DeltaError::Location {
            table: key.to_string(),
            location: url.to_string(),
            reason: e.to_string(),
        })?;
        Ok(TableLocation::with_backend(url, store))
    }

    pub(super) fn builder(&self) -> Result<DeltaTableBuilder, DeltaTableError> {
        let builder = DeltaTableBuilder::from_url(self.url.clone())?;
        Ok(match &self.backend {
            Some(backend) => builder.with_storage_backend(backend.clone(), self.url.clone()),
            None => builder,
        })
    }
}

/// delta-rs finds a log store by the URL's scheme; an S3 table whose object store we built
/// ourselves needs only the default one (commits are conditional puts, no lock service).
fn register_scheme(url: &Url) {
    struct Plain;
    impl deltalake_core::logstore::LogStoreFactory for Plain {
        fn with_options(
            &self,
            prefixed: deltalake_core::logstore::ObjectStoreRef,
            root: deltalake_core::logstore::ObjectStoreRef,
            location: &Url,
            options: &deltalake_core::logstore::StorageConfig,
        ) -> deltalake_core::DeltaResult<Arc<dyn deltalake_core::logstore::LogStore>> {
            Ok(deltalake_core::logstore::default_logstore(prefixed, root, location, options))
        }
    }
    let Ok(scheme) = Url::parse(&format!("{}://", url.scheme())) else { return };
    let factories = deltalake_core::logstore::logstore_factories();
    if !factories.contains_key(&scheme) {
        factories.insert(scheme, Arc::new(Plain));
    }
}
