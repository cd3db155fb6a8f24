//! A lake on Amazon S3 (or any S3-compatible server).
//!
//! Put-if-absent is a conditional write (`If-None-Match: *`): S3 answers 412 Precondition
//! Failed when the key exists, and 409 Conditional Request Conflict while another conditional
//! write of the same key is in flight — both mean someone else holds that name. Objects larger
//! than [`MULTIPART_THRESHOLD`] are uploaded in parts.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use super::{ObjectMeta, StoreError};
use crate::aws::describe_sdk_error;

pub(super) const MULTIPART_THRESHOLD: usize = 64 << 20;
const PART_SIZE: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Key prefix without leading or trailing `/`; may be empty.
    prefix: String,
    /// The endpoint override and credentials the client uses: what the Delta table's own
    /// object store needs to reach the same bucket.
    endpoint: Option<String>,
    credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
}

/// True for a failure that trying again may mend: no answer (a connection refused, cut or timed
/// out), an answer that could not be read, throttling, or a server error the SDK's own
/// retries did not get past. Not a refusal (403, 404, 412: the same request gets the same).
fn is_transient<E>(error: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool {
    use aws_sdk_s3::error::SdkError;
    match error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(e) => matches!(e.raw().status().as_u16(), 500..=599 | 429 | 408),
        _ => false,
    }
}

/// Tries a read again after a transient failure: up to [`TRIES`] times in all, waiting 200 ms,
/// then twice as long each time, at most 5 s (~20 s in all); each retry is logged. Then it
/// gives up with [`StoreError::Transient`], whose message says that nothing was lost and that a
/// restart is safe.
pub(super) struct Retrying {
    key: String,
    tries: u32,
    wait: std::time::Duration,
    started: std::time::Instant,
}

/// Tries of one read, the first included.
pub(super) const TRIES: u32 = 8;

impl Retrying {
    pub(super) fn new(key: &str) -> Retrying {
        Retrying { key: key.to_string(), tries: 0, wait: std::time::Duration::from_millis(200), started: std::time::Instant::now() }
    }

    /// One try failed with `error`: waits before the next, or gives up.
    pub(super) async fn failed(&mut self, error: String) -> Result<(), StoreError> {
        self.tries += 1;
        if self.tries >= TRIES {
            return Err(StoreError::Transient { path: self.key.clone(), message: error, tries: self.tries, seconds: self.started.elapsed().as_secs_f64() });
        }
        tracing::warn!(object = %self.key, try_ = self.tries, wait = ?self.wait, error = %error, "an S3 read failed; trying again");
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(std::time::Duration::from_secs(5));
        Ok(())
    }
}

fn failure(key: &str, message: String) -> StoreError {
    StoreError::Remote { path: key.to_string(), message }
}

impl S3Store {
    pub fn new(client: Client, bucket: impl Into<String>, prefix: impl Into<String>) -> S3Store {
        S3Store { client, bucket: bucket.into(), prefix: prefix.into().trim_matches('/').to_string(), endpoint: None, credentials: None }
    }

    /// Records the endpoint override and credentials the client was built with.
    pub fn with_access(mut self, endpoint: Option<String>, credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>) -> S3Store {
        self.endpoint = endpoint;
        self.credentials = credentials;
        self
    }

    pub fn credentials(&self) -> Option<&aws_sdk_s3::config::SharedCredentialsProvider> {
        self.credentials.as_ref()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The object key of a store path.
    pub fn key(&self, path: &str) -> String {
        if self.prefix.is_empty() { path.to_string() } else { format!("{}/{path}", self.prefix) }
    }

    pub fn describe(&self) -> String {
        if self.prefix.is_empty() { format!("s3://{}", self.bucket) } else { format!("s3://{}/{}", self.bucket, self.prefix) }
    }

    pub async fn put(&self, path: &str, data: Bytes) -> Result<(), StoreError> {
        let key = self.key(path);
        if data.len() > MULTIPART_THRESHOLD {
            return self.upload_parts(path, data, false).await;
        }
        self.client.put_object().bucket(&self.bucket).key(&key).body(ByteStream::from(data)).send().await.map_err(|e| failure(&key, describe_sdk_error(&e)))?;
        Ok(())
    }

    /// Creates `path` only if absent (see [`super::Store::put_new_unsynced`]): a conditional
    /// put, and for a large object a multipart upload whose completion is conditional.
    pub async fn put_new(&self, path: &str, data: Bytes) -> Result<(), StoreError> {
        match data.len() > MULTIPART_THRESHOLD {
            true => self.upload_parts(path, data, true).await,
            false => self.put_if_absent(path, data).await,
        }
    }

    /// A multipart upload of `data` to `path`, completed only if no object is there when
    /// `if_absent` ([`StoreError::AlreadyExists`] then).
    async fn upload_parts(&self, path: &str, data: Bytes, if_absent: bool) -> Result<(), StoreError> {
        let key = &self.key(path);
        let upload = self.client.create_multipart_upload().bucket(&self.bucket).key(key).send().await.map_err(|e| failure(key, describe_sdk_error(&e)))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_string();
        let mut parts = Vec::new();
        for (index, chunk) in data.chunks(PART_SIZE).enumerate() {
            let number = index as i32 + 1;
            let result = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(number)
                .body(ByteStream::from(data.slice_ref(chunk)))
                .send()
                .await;
            match result {
                Ok(part) => parts.push(CompletedPart::builder().part_number(number).set_e_tag(part.e_tag).build()),
                Err(e) => {
                    // Abandoned parts cost storage until aborted.
                    let _ = self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(&upload_id).send().await;
                    return Err(failure(key, describe_sdk_error(&e)));
                }
            }
        }
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&upload_id)
            .set_if_none_match(if_absent.then(|| "*".to_string()))
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await;
        if let Err(e) = completed {
            let _ = self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(&upload_id).send().await;
            if if_absent && matches!(e.raw_response().map(|r| r.status().as_u16()), Some(412 | 409)) {
                return Err(StoreError::AlreadyExists { path: path.to_string() });
            }
            return Err(failure(key, describe_sdk_error(&e)));
        }
        Ok(())
    }

    pub async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<(), StoreError> {
        let key = self.key(path);
        let result = self.client.put_object().bucket(&self.bucket).key(&key).if_none_match("*").body(ByteStream::from(data)).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let code = e.as_service_error().and_then(|s| aws_sdk_s3::error::ProvideErrorMetadata::code(s).map(str::to_string));
                if matches!(status, Some(412 | 409)) || matches!(code.as_deref(), Some("PreconditionFailed" | "ConditionalRequestConflict")) {
                    Err(StoreError::AlreadyExists { path: path.to_string() })
                } else {
                    Err(failure(&key, describe_sdk_error(&e)))
                }
            }
        }
    }

    /// Reads an object whole. The SDK retries a request until its answer's headers arrive; a
    /// connection cut in the middle of the body (real S3 drops them now and then) fails the
    /// read after that, so the whole read — request and body — is tried again here, with
    /// back-off (see [`Retrying`]).
    pub async fn get(&self, path: &str) -> Result<Bytes, StoreError> {
        let key = self.key(path);
        let mut retrying = Retrying::new(&key);
        loop {
            let error = match self.client.get_object().bucket(&self.bucket).key(&key).send().await {
                Ok(output) => match output.body.collect().await {
                    Ok(body) => return Ok(body.into_bytes()),
                    Err(e) => format!("the answer's body was cut: {e}"),
                },
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Err(StoreError::NotFound { path: path.to_string() }),
                Err(e) if !is_transient(&e) => return Err(failure(&key, describe_sdk_error(&e))),
                Err(e) => describe_sdk_error(&e),
            };
            retrying.failed(error).await?;
        }
    }

    /// Lists every object under `prefix`: page after page, the whole listing tried again (with
    /// back-off) when one page's answer fails or is cut.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let full = self.key(prefix);
        let mut retrying = Retrying::new(&full);
        loop {
            match self.list_once(&full).await {
                Ok(listed) => return Ok(listed),
                Err(e) if !is_transient(&e) => return Err(failure(&full, describe_sdk_error(&e))),
                Err(e) => retrying.failed(describe_sdk_error(&e)).await?,
            }
        }
    }

    async fn list_once(
        &self,
        full: &str,
    ) -> Result<Vec<ObjectMeta>, aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error, aws_sdk_s3::config::http::HttpResponse>>
    {
        let strip = if self.prefix.is_empty() { 0 } else { self.prefix.len() + 1 };
        let mut out = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(full).into_paginator().send();
        while let Some(page) = pages.next().await {
            for object in page?.contents() {
                let key = object.key().unwrap_or_default();
                let modified_ms = object.last_modified().and_then(|t| t.to_millis().ok()).unwrap_or(0);
                out.push(ObjectMeta { path: key[strip..].to_string(), size: object.size().unwrap_or(0) as u64, modified_ms });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    pub async fn delete(&self, path: &str) -> Result<(), StoreError> {
        let key = self.key(path);
        self.client.delete_object().bucket(&self.bucket).key(&key).send().await.map_err(|e| failure(&key, describe_sdk_error(&e)))?;
        Ok(())
    }
}
