//! findings-bridge: AWS Security Hub findings to Jira / ServiceNow tickets and back, exactly one
//! ticket per finding and team under at-least-once delivery.
//!
//! Layers, each depending only on those listed before it:
//! - [`time`] (the one timestamp parser), [`marker`], [`finding`] (envelope, ASFF, OCSF),
//!   [`mapping`] (route, templates): pure data;
//! - [`ticket`]: the contract every ticket system implements, the HTTP resilience layer, and one
//!   slice per system ([`ticket::jira`], [`ticket::servicenow`]: config, auth, queries, status
//!   meanings, webhook verification, body formats); [`render`] builds their request bodies;
//! - [`store`] (claims, intents, records: SQLite or DynamoDB) and [`aws`] (SQS, Security Hub,
//!   Detective, Secrets Manager);
//! - [`pipeline`]: the planner, the lifecycle (claims, create, update) and the worker loop;
//!   [`sync`]: ticket status back to findings (poller, webhooks);
//! - [`runtime`]: shutdown, the HTTP server and telemetry; [`commands`]: one module per CLI command.
//!
//! `testing` (test doubles for the store, ticket systems, planner and Security Hub writer) exists
//! only in test builds: `cfg(test)` or the `testing` feature the integration tests turn on.

/// A boxed, sendable future: what the object-safe traits of the bridge (ticket systems, the
/// store, the queue, the write-back) return.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

pub mod aws;
pub mod commands;
pub mod config;
pub mod finding;
pub mod mapping;
pub mod marker;
pub mod pipeline;
pub mod render;
pub mod retry;
pub mod runtime;
pub mod store;
pub mod sync;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod ticket;
pub mod time;
