//! The AWS services the bridge talks to, over the SDK: the queue, the Security Hub write-back, the
//! Detective investigation links and Secrets Manager credentials.

pub mod detective;
pub mod errors;
pub mod metered;
pub mod secrets;
pub mod securityhub;
pub mod sqs;

use std::time::Duration;

/// How long one AWS call (SQS, DynamoDB, Security Hub, Detective) may take in all, retries
/// included, and one attempt of it, unless `BRIDGE_AWS_TIMEOUT` / `BRIDGE_AWS_ATTEMPT_TIMEOUT`
/// say otherwise. Without them a hung call would keep a message hidden forever (its visibility
/// is extended while work runs) and hold its claim past any lease.
pub const DEFAULT_AWS_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_AWS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Operation and attempt timeouts of every AWS client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    pub operation: Duration,
    pub attempt: Duration,
}

impl Default for AwsTimeouts {
    fn default() -> Self {
        AwsTimeouts {
            operation: DEFAULT_AWS_TIMEOUT,
            attempt: DEFAULT_AWS_ATTEMPT_TIMEOUT,
        }
    }
}

impl AwsTimeouts {
    /// `BRIDGE_AWS_TIMEOUT` and `BRIDGE_AWS_ATTEMPT_TIMEOUT` (seconds) over the defaults; an
    /// attempt never gets longer than the whole operation.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<AwsTimeouts> {
        let setting = |name: &'static str, default: Duration| -> anyhow::Result<Duration> {
            let value = lookup(name);
            Ok(
                crate::ticket::http::seconds_setting(name, value.as_deref())?
                    .filter(|d| !d.is_zero())
                    .unwrap_or(default),
            )
        };
        let operation = setting("BRIDGE_AWS_TIMEOUT", DEFAULT_AWS_TIMEOUT)?;
        let attempt = setting("BRIDGE_AWS_ATTEMPT_TIMEOUT", DEFAULT_AWS_ATTEMPT_TIMEOUT)?;
        Ok(AwsTimeouts {
            operation,
            attempt: attempt.min(operation),
        })
    }
}

/// The AWS SDK configuration every command uses: the SDK's own chain for region, endpoints and
/// credentials, plus operation and attempt timeouts (`BRIDGE_AWS_TIMEOUT`,
/// `BRIDGE_AWS_ATTEMPT_TIMEOUT`, in seconds). SQS long polls get their wait on top.
pub async fn sdk_config(timeouts: AwsTimeouts) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts.sdk_config())
        .load()
        .await
}

impl AwsTimeouts {
    /// As the AWS SDK takes them (connecting gets at most 5 s of the attempt).
    pub fn sdk_config(self) -> aws_config::timeout::TimeoutConfig {
        aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(self.operation)
            .operation_attempt_timeout(self.attempt)
            .connect_timeout(self.attempt.min(Duration::from_secs(5)))
            .build()
    }
}
