//! The object store a Delta table on S3 is reached through: object_store's S3 client with the
//! region, endpoint and credentials of the AWS SDK configuration every other kappa-lake client
//! uses (profiles, SSO, IMDS, `AWS_ENDPOINT_URL`), so the table needs no settings of its own.
//! Commits are conditional puts (`If-None-Match: *`), which S3 and moto enforce: no lock table.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::ProvideCredentials;
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::{CredentialProvider, ObjectStore};

pub(crate) fn object_store(
    config: &aws_sdk_s3::Config,
    credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
    endpoint: Option<&str>,
    bucket: &str,
) -> object_store::Result<Arc<dyn ObjectStore>> {
    let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
    if let Some(region) = config.region() {
        builder = builder.with_region(region.as_ref());
    }
    if let Some(endpoint) = endpoint {
        // Emulators on loopback: path-style addressing and plain HTTP, as the SDK clients use.
        builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false).with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(provider) = credentials {
        builder = builder.with_credentials(Arc::new(SdkCredentials { provider, cached: Mutex::new(None) }));
    }
    Ok(Arc::new(super::retrying::RetryingReads::new(Arc::new(builder.build()?))))
}

/// The SDK's credential chain as object_store's provider, cached until shortly before expiry.
#[derive(Debug)]
struct SdkCredentials {
    provider: aws_sdk_s3::config::SharedCredentialsProvider,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

#[async_trait::async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        if let Some((credential, expiry)) = self.cached.lock().expect("not poisoned").as_ref()
            && expiry.is_none_or(|at| at > SystemTime::now() + REFRESH_BEFORE_EXPIRY)
        {
            return Ok(credential.clone());
        }
        let credentials = self.provider.provide_credentials().await.map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })?;
        let credential = Arc::new(AwsCredential {
            key_id: credentials.access_key_id().to_string(),
            secret_key: credentials.secret_access_key().to_string(),
            token: credentials.session_token().map(str::to_string),
        });
        *self.cached.lock().expect("not poisoned") = Some((credential.clone(), credentials.expiry()));
        Ok(credential)
    }
}
