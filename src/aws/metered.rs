//! Counting every AWS request the bridge sends, by service and operation
//! (`findings_bridge_aws_requests_total`), and the constructors of the AWS clients that count
//! them. Each AWS call costs the worker far more CPU than the bridge's own work on a finding, so
//! calls per finding is the figure to watch; the load harness reads it from `/metrics`.
//!
//! Every client the bridge builds goes through [`sqs`], [`dynamodb`], [`secrets_manager`] or
//! registers [`CountRequests`] itself (Security Hub, Detective), so no call goes uncounted.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::{Intercept, OverriddenHooks};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
// The SDK crates re-export the config bag; any one of them names the same type.
use aws_sdk_sqs::config::ConfigBag;

/// An SDK interceptor that counts each attempt of an operation as it is sent (a retried call
/// counts once per attempt: that is what the service, and the worker's CPU, see).
#[derive(Debug, Clone, Copy, Default)]
pub struct CountRequests;

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    // Only this hook: the SDK then skips the interceptor at every other step.
    fn overridden_hooks(&self) -> OverriddenHooks {
        OverriddenHooks::READ_BEFORE_TRANSMIT
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Every generated operation stores its Metadata; a request without one (none today)
        // is still counted rather than lost.
        match cfg.load::<Metadata>() {
            Some(meta) => crate::runtime::telemetry::aws_request(meta.service(), meta.name()),
            None => crate::runtime::telemetry::aws_request("unknown", "unknown"),
        }
        Ok(())
    }
}

/// The SQS client of the worker and `replay`, counted.
pub fn sqs(sdk: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(sdk)
            .interceptor(CountRequests)
            .build(),
    )
}

/// The DynamoDB client of the store, counted.
pub fn dynamodb(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(CountRequests)
            .build(),
    )
}

/// The Secrets Manager client that reads ticket-system credentials, counted.
pub fn secrets_manager(sdk: &aws_config::SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(sdk)
            .interceptor(CountRequests)
            .build(),
    )
}
