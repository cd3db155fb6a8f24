//! The Delta table's object store on S3, with every read tried again until its answer arrived
//! whole. object_store retries a request until its answer's headers arrive; a connection cut
//! in the middle of the body (real S3 drops one now and then; 7 of 15 starts died under 2% of
//! them, on a writer record, a schema object, a LIST answer, a `_last_checkpoint`) failed the
//! read after that, and with it the start of the consumer. So here a read's body is collected
//! before it is handed on, and the read (request and body) is tried again after a failure
//! that a retry may mend; a listing likewise, whole. Writes go through unchanged: a commit is
//! a conditional put, whose outcome the commit protocol settles itself.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, Result,
};

/// Tries of one read, the first included: ~20 s of back-off in all.
const TRIES: u32 = 8;

#[derive(Debug)]
pub(crate) struct RetryingReads {
    inner: Arc<dyn ObjectStore>,
}

impl RetryingReads {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>) -> RetryingReads {
        RetryingReads { inner }
    }
}

impl fmt::Display for RetryingReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (reads retried)", self.inner)
    }
}

/// True for an error a retry may mend: not a missing object, a refused condition, a denied
/// permission or an unsupported call (the same request gets the same answer).
fn transient(error: &object_store::Error) -> bool {
    use object_store::Error;
    // object_store retries a request that failed as a whole (a 5xx, a refused connection) by
    // itself; one it gave up on after all its retries gets no more here (an endpoint that
    // refuses every connection must fail the start in seconds, not minutes). What it does not
    // retry is a body cut mid-way: that is what this wrapper is for.
    if exhausted_retries(&error.to_string()) {
        return false;
    }
    !matches!(
        error,
        Error::NotFound { .. }
            | Error::AlreadyExists { .. }
            | Error::Precondition { .. }
            | Error::NotModified { .. }
            | Error::NotSupported { .. }
            | Error::NotImplemented { .. }
            | Error::PermissionDenied { .. }
            | Error::Unauthenticated { .. }
            | Error::InvalidPath { .. }
            | Error::UnknownConfigurationKey { .. }
    )
}

/// Whether an object_store error says that it made all its retries (`after 10 retries,
/// max_retries: 10`).
fn exhausted_retries(message: &str) -> bool {
    let number_after = |key: &str| -> Option<u64> {
        let rest = &message[message.find(key)? + key.len()..];
        rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())].parse().ok()
    };
    matches!((number_after("after "), number_after("max_retries: ")), (Some(made), Some(max)) if made >= max)
}

/// Runs `attempt` until it succeeds, fails for good, or has failed [`TRIES`] times; waits
/// 200 ms after the first failure, then twice as long each time, at most 5 s.
async fn with_retries<T, F, Fut>(what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut wait = Duration::from_millis(200);
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(e) if transient(&e) && tries < TRIES => {
                tracing::warn!(object = what, try_ = tries, wait = ?wait, error = %e, "an S3 read of the Delta table failed; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

#[async_trait::async_trait]
impl ObjectStore for RetryingReads {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if options.head {
            return with_retries(location.as_ref(), || self.inner.get_opts(location, options.clone())).await;
        }
        let (meta, range, attributes, bytes) = with_retries(location.as_ref(), || async {
            let result = self.inner.get_opts(location, options.clone()).await?;
            let (meta, range, attributes) = (result.meta.clone(), result.range.clone(), result.attributes.clone());
            // The body whole: a cut one fails this try, not the reader after it.
            let bytes = result.bytes().await?;
            Ok((meta, range, attributes, bytes))
        })
        .await?;
        let payload = GetResultPayload::Stream(futures::stream::once(async move { Ok::<Bytes, object_store::Error>(bytes) }).boxed());
        Ok(GetResult { payload, meta, range, attributes })
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let (inner, prefix) = (self.inner.clone(), prefix.cloned());
        let listed = async move {
            let what = prefix.as_ref().map_or_else(String::new, |p| p.to_string());
            with_retries(&what, || inner.list(prefix.as_ref()).try_collect::<Vec<ObjectMeta>>()).await
        };
        futures::stream::once(listed).map_ok(|all| futures::stream::iter(all.into_iter().map(Ok))).try_flatten().boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let what = prefix.map_or_else(String::new, |p| p.to_string());
        with_retries(&what, || self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_object_store_retried_to_its_limit_is_not_retried_again() {
        let refused =
            "Generic S3 error: Error performing GET http://127.0.0.1:9/b/k in 2.7s, after 10 retries, max_retries: 10, retry_timeout: 180s - HTTP error";
        assert!(super::exhausted_retries(refused));
        assert!(!super::exhausted_retries(
            "Generic S3 error: Error performing GET http://h/b/k in 0.2s, after 2 retries, max_retries: 10, retry_timeout: 180s"
        ));
        assert!(!super::exhausted_retries("Generic S3 error: error decoding response body"));
    }
}
