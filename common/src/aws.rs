//! AWS clients, built the same way by every binary.
//!
//! Credentials and region come from the standard chain (environment, profiles, SSO, IMDS). An
//! endpoint override — `--endpoint-url` or the standard `AWS_ENDPOINT_URL` /
//! `AWS_ENDPOINT_URL_<SERVICE>` variables — points every client at LocalStack, moto or a VPC
//! endpoint. S3 then switches to path-style addressing, because emulators on `127.0.0.1` cannot
//! serve `bucket.127.0.0.1` virtual hosts.

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// What a user can set about AWS on the command line.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// Overrides the endpoint of every AWS service (e.g. `http://127.0.0.1:5000`).
    pub endpoint_url: Option<String>,
    /// Overrides the region from the environment or profile.
    pub region: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AwsConfigError {
    #[error(
        "no AWS region is configured: set AWS_REGION (e.g. `export AWS_REGION=us-east-1`), \
         a region in your AWS profile, or pass --region"
    )]
    NoRegion,
    #[error("invalid endpoint URL {url:?}: it must start with http:// or https://")]
    BadEndpoint { url: String },
}

/// Tries of each AWS request, the first included.
pub const MAX_ATTEMPTS: u32 = 6;

/// How long every AWS client waits for a connection, and for the next bytes of an answer.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The loaded configuration, ready to build clients.
#[derive(Debug, Clone)]
pub struct AwsContext {
    config: SdkConfig,
    endpoint_overridden: bool,
}

impl AwsContext {
    /// Loads the standard configuration chain and applies the user's overrides. Fails fast
    /// (before any request) when no region can be found or an endpoint is malformed.
    pub async fn load(options: &AwsOptions) -> Result<AwsContext, AwsConfigError> {
        // A service that stops answering mid-request must not hold a call for ever: the lease
        // protocol's self-expiry and the pipeline's commits wait on these calls. (SQS long polls
        // wait up to 20 s for their first byte and an enhanced fan-out subscription streams for
        // 5 minutes, with an event every few seconds: a read timeout bounds both, an overall
        // operation timeout would cut the subscription.)
        let timeouts = aws_config::timeout::TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).read_timeout(READ_TIMEOUT).build();
        // A request that fails for a passing reason (a 500, throttling, a cut connection) is
        // tried up to six times (the SDK's default is three): at 5% of requests failing, three
        // tries still lost one request in 8,000, a service's share of a day.
        let retries = aws_config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS);
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts).retry_config(retries);
        if let Some(url) = &options.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(AwsConfigError::BadEndpoint { url: url.clone() });
            }
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(AwsConfigError::NoRegion);
        }
        let endpoint_overridden = options.endpoint_url.is_some()
            || config.endpoint_url().is_some()
            || std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        Ok(AwsContext { config, endpoint_overridden })
    }

    pub fn sdk_config(&self) -> &SdkConfig {
        &self.config
    }

    pub fn kinesis(&self) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&self.config)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.config)
    }

    pub fn firehose(&self) -> aws_sdk_firehose::Client {
        aws_sdk_firehose::Client::new(&self.config)
    }

    pub fn glue(&self) -> aws_sdk_glue::Client {
        aws_sdk_glue::Client::new(&self.config)
    }

    /// The S3 endpoint override in effect, if any: `AWS_ENDPOINT_URL_S3`, else the general one.
    pub fn s3_endpoint(&self) -> Option<String> {
        std::env::var("AWS_ENDPOINT_URL_S3").ok().or_else(|| self.config.endpoint_url().map(str::to_string))
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.config).force_path_style(self.endpoint_overridden).interceptor(LogFailedAttempts).build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

/// Logs each S3 attempt that failed in a way the SDK tries again (a 5xx, a throttle, a
/// connection or timeout error), as `object_store`'s retries of the Delta log's reads and
/// writes are logged: a data file's PUT retried by the SDK was otherwise invisible. The SDK
/// makes up to [`MAX_ATTEMPTS`] attempts; when the last fails the error says so itself.
#[derive(Debug)]
struct LogFailedAttempts;

/// What an attempt sent (`PUT https://…/key`): the request is gone once it was sent.
#[derive(Debug, Clone)]
struct AttemptRequest(String);

impl aws_smithy_types::config_bag::Storable for AttemptRequest {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl aws_sdk_s3::config::Intercept for LogFailedAttempts {
    fn name(&self) -> &'static str {
        "LogFailedAttempts"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let request = context.request();
        cfg.interceptor_state().store_put(AttemptRequest(format!("{} {}", request.method(), request.uri().split('?').next().unwrap_or_default())));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &aws_sdk_s3::config::interceptors::FinalizerInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let status = context.response().map(|r| r.status().as_u16());
        let failed = match (status, context.output_or_error()) {
            (Some(status), _) => status >= 500 || status == 429,
            // No answer at all: the connection failed or timed out.
            (None, Some(Err(_))) => true,
            (None, _) => false,
        };
        if failed {
            let request = cfg.load::<AttemptRequest>().map(|r| r.0.clone());
            let error = match context.output_or_error() {
                Some(Err(e)) => format!("{e:?}").chars().take(300).collect(),
                _ => String::new(),
            };
            tracing::warn!(
                request = request.unwrap_or_default(),
                status,
                error,
                "an S3 request attempt failed; the SDK tries it again unless it was the last of its attempts (S3 fails now and then)"
            );
        }
        Ok(())
    }
}

/// Renders an SDK error with its service code and message, which the SDK's own `Display`
/// hides behind "service error".
pub fn describe_sdk_error<E, R>(err: &aws_sdk_kinesis::error::SdkError<E, R>) -> String
where
    E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_kinesis::error::SdkError;
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                _ => format!("{e}"),
            }
        }
        SdkError::DispatchFailure(failure) => {
            format!("could not reach the endpoint (is the service running / the URL right?): {failure:?}")
        }
        SdkError::TimeoutError(_) => "request timed out".to_string(),
        other => format!("{other}"),
    }
}
