//! Why a Security Hub request failed, read once: transient (with how long the answer asked us
//! to wait), refused for good, or a batch whose content was rejected; and the retry delay that
//! honours the answer's `Retry-After`.

use std::time::Duration;

use aws_sdk_securityhub::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::ticket::http::parse_retry_after;

/// Request-level error codes that reject this batch's content, not the caller: the findings of
/// the batch are reported as unprocessed and the other batches still go out.
const BATCH_REJECTED_CODES: &[&str] = &["InvalidInputException", "ValidationException"];

/// Why a request did not return a response body.
#[derive(Debug, thiserror::Error)]
pub(super) enum RequestFailure {
    /// With how long the answer asked us to wait (`Retry-After`), if it did.
    #[error("{message}")]
    Transient {
        message: String,
        wait: Option<Duration>,
    },
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Permanent(String),
    #[error("{code}: {message}")]
    BatchRejected { code: String, message: String },
}

/// A write-back failure as [`crate::aws::errors`] reads it; a batch whose content is refused
/// (`InvalidInputException`, `ValidationException`) is reported per finding, and the other
/// batches still go out.
pub(super) fn classify<E>(operation: &str, error: SdkError<E>) -> RequestFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    use crate::aws::errors::Fault;
    let failure = crate::aws::errors::classify(operation, &error);
    match failure.fault {
        Fault::Throttled | Fault::Unavailable => RequestFailure::Transient {
            message: failure.to_string(),
            wait: retry_after(&error),
        },
        Fault::Refused => RequestFailure::Refused(failure.to_string()),
        _ if BATCH_REJECTED_CODES.contains(&failure.code.as_str()) => {
            RequestFailure::BatchRejected {
                message: failure
                    .service_message
                    .unwrap_or_else(|| DisplayErrorContext(&error).to_string()),
                code: failure.code,
            }
        }
        _ => RequestFailure::Permanent(failure.to_string()),
    }
}

/// The next retry's delay: our backoff, or the answer's `Retry-After` when that is longer (a
/// throttled request retried sooner only meets another 429 and spends the quota). `None`: the
/// retry budget is spent.
pub(super) fn wait_as_asked(failure: &RequestFailure, delay: Option<Duration>) -> Option<Duration> {
    match failure {
        RequestFailure::Transient {
            wait: Some(wait), ..
        } => delay.map(|d| d.max(*wait)),
        _ => delay,
    }
}

/// The `Retry-After` of a throttled or unavailable answer (seconds or an HTTP date).
fn retry_after<E>(error: &SdkError<E>) -> Option<Duration> {
    let value = error.raw_response()?.headers().get("retry-after")?;
    parse_retry_after(value.trim(), std::time::SystemTime::now())
}
