//! One reading of AWS SDK errors for every service the bridge calls (SQS, DynamoDB, Security Hub,
//! Detective). Each service turns the [`Fault`] into its own error type, but what counts as
//! throttling, an outage, a refused credential or a rejected request is decided here once: four
//! classifiers used to disagree (`InternalFailure` was transient for one and permanent for
//! another).

// The smithy error types every SDK crate re-exports (the same types in each).
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// What went wrong with one AWS call, as far as what to do next is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call was slowed down (throttling, request limits): the same call later succeeds.
    Throttled,
    /// The service or the way to it failed (timeouts, connection trouble, 5xx, an unreadable
    /// answer): the same call later may well succeed.
    Unavailable,
    /// The caller's credentials or permissions were refused: a person (or a rotation) must fix
    /// them; retrying changes nothing until then.
    Refused,
    /// The named resource (queue, table, graph) does not exist.
    NotFound,
    /// A condition of the request did not hold (DynamoDB conditional writes): an answer, not a
    /// failure.
    ConditionFailed,
    /// The request's content was refused (validation, invalid input): the same request fails
    /// again.
    Invalid,
    /// Anything else the service answered, or a request the SDK could not even build.
    Other,
}

impl Fault {
    /// Worth the same call again later.
    pub fn is_transient(self) -> bool {
        matches!(self, Fault::Throttled | Fault::Unavailable)
    }
}

/// A classified failure: its [`Fault`] and what to tell a person. Displays as
/// `operation: detail`.
#[derive(Debug, Clone)]
pub struct AwsFailure {
    pub fault: Fault,
    pub operation: String,
    /// The error code the service answered (`ThrottlingException`…), empty when none came.
    pub code: String,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// The service's own message, when it sent one.
    pub service_message: Option<String>,
    /// `HTTP status: code: message` when the service answered (the SDK's own rendering of an
    /// unmodelled error dumps the whole response); the error chain when nothing came back
    /// (connection refused, DNS, TLS), since that is then the only clue.
    pub detail: String,
}

impl std::fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.operation, self.detail)
    }
}

/// Codes that mean "later": throttling first, then the services' own outage codes.
const THROTTLED: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "ProvisionedThroughputExceededException",
    "KmsThrottled",
    "KMS.ThrottlingException",
];

const UNAVAILABLE: &[&str] = &[
    "InternalFailure",
    "InternalError",
    "InternalException",
    "InternalServerError",
    "InternalServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    // Optimistic concurrency lost to another writer: the retry sees the new state.
    "ConflictException",
    "TransactionConflictException",
    "ReplicatedWriteConflictException",
];

const REFUSED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "MissingAuthenticationTokenException",
    "IncompleteSignatureException",
    "KMS.AccessDeniedException",
];

const NOT_FOUND: &[&str] = &[
    "ResourceNotFoundException",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];

const INVALID: &[&str] = &[
    "ValidationException",
    "InvalidInputException",
    "InvalidParameterValue",
    "InvalidParameterException",
    "SerializationException",
];

/// The fault of an answer with `code` and `status`; codes win over statuses (a 400 can be
/// throttling), statuses decide for codes this list does not know.
pub fn fault_of(code: &str, status: Option<u16>) -> Fault {
    let known = |list: &[&str]| list.contains(&code);
    if code == "ConditionalCheckFailedException" {
        Fault::ConditionFailed
    } else if known(THROTTLED) || code.contains("Throttl") {
        Fault::Throttled
    } else if known(UNAVAILABLE) {
        Fault::Unavailable
    } else if known(REFUSED) {
        Fault::Refused
    } else if known(NOT_FOUND) {
        Fault::NotFound
    } else if known(INVALID) {
        Fault::Invalid
    } else {
        match status {
            Some(429) => Fault::Throttled,
            Some(500..=599) => Fault::Unavailable,
            Some(401 | 403) => Fault::Refused,
            _ => Fault::Other,
        }
    }
}

/// Classifies an SDK error of `operation` (`"ReceiveMessage"`, `"claim"`…).
pub fn classify<E>(operation: &str, err: &SdkError<E>) -> AwsFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let failure = |fault, code: &str, status, detail| AwsFailure {
        fault,
        operation: operation.to_owned(),
        code: code.to_owned(),
        status,
        service_message: err.message().map(str::to_owned),
        detail,
    };
    let chain = || DisplayErrorContext(err).to_string();
    match err {
        SdkError::ConstructionFailure(_) => failure(Fault::Other, "", None, chain()),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            failure(Fault::Unavailable, "", None, chain())
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let status = service.raw().status().as_u16();
            let detail = [
                Some(format!("HTTP {status}")),
                (!code.is_empty()).then(|| code.to_owned()),
                service.err().message().map(str::to_owned),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
            failure(fault_of(code, Some(status)), code, Some(status), detail)
        }
        // `SdkError` is non-exhaustive: a new kind is reported as it is, and retried only if it
        // says it is a throttle or an outage.
        _ => {
            let code = err.code().unwrap_or_default();
            failure(fault_of(code, None), code, None, chain())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_reads_the_same_code_the_same_way() {
        // The codes the four classifiers used to disagree on.
        assert_eq!(fault_of("InternalFailure", Some(500)), Fault::Unavailable);
        assert_eq!(fault_of("InternalFailure", None), Fault::Unavailable);
        assert_eq!(fault_of("ThrottlingException", Some(400)), Fault::Throttled);
        assert_eq!(
            fault_of("ProvisionedThroughputExceededException", Some(400)),
            Fault::Throttled
        );
        assert_eq!(fault_of("KmsThrottled", Some(400)), Fault::Throttled);
        assert_eq!(fault_of("AccessDeniedException", Some(400)), Fault::Refused);
        assert_eq!(fault_of("ExpiredTokenException", Some(400)), Fault::Refused);
        assert_eq!(
            fault_of("ResourceNotFoundException", Some(400)),
            Fault::NotFound
        );
        assert_eq!(
            fault_of("AWS.SimpleQueueService.NonExistentQueue", Some(400)),
            Fault::NotFound
        );
        assert_eq!(
            fault_of("ConditionalCheckFailedException", Some(400)),
            Fault::ConditionFailed
        );
        assert_eq!(fault_of("InvalidInputException", Some(400)), Fault::Invalid);
    }

    #[test]
    fn unknown_codes_fall_back_on_the_status() {
        assert_eq!(fault_of("SomethingNew", Some(503)), Fault::Unavailable);
        assert_eq!(fault_of("SomethingNew", Some(429)), Fault::Throttled);
        assert_eq!(fault_of("", Some(403)), Fault::Refused);
        assert_eq!(fault_of("SomethingNew", Some(400)), Fault::Other);
        assert_eq!(fault_of("", None), Fault::Other);
    }

    #[test]
    fn only_throttling_and_outages_are_transient() {
        for fault in [Fault::Throttled, Fault::Unavailable] {
            assert!(fault.is_transient(), "{fault:?}");
        }
        for fault in [
            Fault::Refused,
            Fault::NotFound,
            Fault::ConditionFailed,
            Fault::Invalid,
            Fault::Other,
        ] {
            assert!(!fault.is_transient(), "{fault:?}");
        }
    }
}
