//! ServiceNow Table API client. Records are found again by `correlation_id` (the marker) and
//! polled by `correlation_display = findings-bridge`; states are numeric codes, and resolving
//! needs a close code and close notes.
//!
//! Parts: [`config`] (settings and sign-in), [`query`] (encoded queries, glide times),
//! [`status`] (what a state means), [`webhook`] (shared-secret verification), `record` (reading
//! Table API answers), `oauth` (client-credentials tokens), [`client`] (the
//! [`TicketSystem`](crate::ticket::TicketSystem) implementation) and [`meta`] (a table's columns
//! and a group, read without changing anything, for `preflight`); `listing` is what `reconcile` reads: every bridge record of
//! every table rules use, the provenance work note, whether a record still exists.

pub mod client;
pub mod config;
mod listing;
pub mod meta;
mod oauth;
pub mod query;
mod record;
pub mod status;
pub mod webhook;

pub use client::ServiceNowClient;
pub use config::{ServiceNowAuth, ServiceNowConfig};
pub use query::encoded_query_value;

/// The connection name, and the system errors are reported for.
const SYSTEM: &str = "servicenow";
