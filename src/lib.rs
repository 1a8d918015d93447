//! findings-bridge: AWS Security Hub findings to Jira / ServiceNow tickets and back, exactly one
//! ticket per finding and team under at-least-once delivery.
//!
//! Data flow: SQS → [`finding`] (envelope, ASFF, OCSF) → [`mapping`] (route) →
//! [`render`] (payloads) → lifecycle / dedup ([`store`], [`marker`]) → [`ticket`] clients.

pub mod app;
pub mod cli;
pub mod detective;
pub mod finding;
pub mod health;
pub mod http;
pub mod lifecycle;
pub mod mapping;
pub mod marker;
pub mod pipeline;
pub mod render;
pub mod replay;
pub mod secrets;
pub mod securityhub;
pub mod securityhub_client;
pub mod server;
pub mod shutdown;
pub mod sqs;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod ticket;
pub mod webhook;
pub mod worker;
