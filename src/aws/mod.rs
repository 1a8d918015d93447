//! The AWS services the bridge talks to, over the SDK: the queue, the Security Hub write-back, the
//! Detective investigation links and Secrets Manager credentials.

pub mod detective;
pub mod secrets;
pub mod securityhub;
pub mod sqs;
