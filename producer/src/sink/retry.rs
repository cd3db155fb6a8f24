//! Retrying what AWS did not take: exponential backoff with jitter, and the rules for which
//! failures are worth another try.
//!
//! Batch APIs (PutRecords, SendMessageBatch, PutRecordBatch) fail per entry as well as per
//! call. Per-entry failures are retried by the sinks themselves — only the failed entries, so
//! nothing is sent twice by us. Whole-call failures are classified here.

use std::time::Duration;

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use backon::BackoffBuilder;

/// How hard to try before an event is declared undelivered.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per batch entry, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 10, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(10) }
    }
}

impl RetryPolicy {
    /// The waits between attempts: exponential from `base_delay`, capped, with full jitter so
    /// many producers throttled together do not retry in lockstep.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .build()
    }
}

/// Error codes that mean "slow down": counted as throttles, always retried.
pub fn is_throttle_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "ThrottlingException"
            | "Throttling"
            | "RequestThrottled"
            | "ServiceUnavailableException"
            | "ServiceUnavailable"
            | "KMSThrottlingException"
            | "AWS.SimpleQueueService.RequestThrottled"
    )
}

/// Per-entry error codes worth retrying (transient on the service side).
pub fn is_retryable_entry_code(code: &str) -> bool {
    is_throttle_code(code) || matches!(code, "InternalFailure" | "InternalError" | "InternalFailureException" | "ServiceFailure")
}

/// How a failed API call should be handled.
#[derive(Debug, PartialEq, Eq)]
pub enum CallFailure {
    Throttled,
    Transient,
    Fatal,
}

/// Classifies a whole-call failure. The SDK already retried transient errors a few times; what
/// reaches us still deserves our own, longer backoff unless it is clearly permanent.
pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> CallFailure
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => CallFailure::Transient,
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            if is_throttle_code(code) {
                CallFailure::Throttled
            } else if service.raw().status().is_server_error() || is_retryable_entry_code(code) {
                CallFailure::Transient
            } else {
                CallFailure::Fatal
            }
        }
        _ => CallFailure::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stop_after_the_attempt_budget() {
        let policy = RetryPolicy { max_attempts: 5, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        let delays: Vec<Duration> = policy.delays().collect();
        assert_eq!(delays.len(), 4);
        // Jitter adds up to one more base-sized step; never above the cap plus jitter.
        assert!(delays.iter().all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_secs(2)), "{delays:?}");
        assert!(delays[3] >= Duration::from_millis(800), "{delays:?}");
    }

    #[test]
    fn throttle_codes_are_retryable() {
        assert!(is_retryable_entry_code("ProvisionedThroughputExceededException"));
        assert!(is_retryable_entry_code("InternalFailure"));
        assert!(!is_retryable_entry_code("InvalidParameterValue"));
    }
}
