//! Jira client for Cloud (REST v3, ADF, `search/jql` with `nextPageToken`) and Data Center
//! (REST v2, wiki markup, `search` with `startAt`). Both flavours share request shapes, so one
//! type serves both and only the differences branch on [`JiraApiVersion`].
//!
//! Parts: [`config`] (settings and sign-in), [`query`] (JQL and Jira's time formats), [`status`]
//! (what a status category means, which transition to take), [`webhook`] (signature
//! verification), [`format`] (rich text), `api` (the REST calls), [`client`] (the
//! [`TicketSystem`](crate::ticket::TicketSystem) implementation), [`meta`] (what creating an
//! issue needs, read without creating anything, for `preflight`), [`zone`] (the user's time
//! zone, which JQL dates are read in); `listing` is what `reconcile` reads: every bridge issue,
//! the provenance property, whether an issue still exists; `changelog` says who moved an issue
//! to its status (the risk acceptance note).

mod api;
pub mod client;
pub mod config;
pub mod format;
mod listing;
pub mod meta;
pub mod query;
pub mod status;
pub mod webhook;
pub mod zone;

// Risk acceptance note (issue 15): who moved an issue to its status.
mod changelog;

pub use client::JiraClient;
pub use config::{DEFAULT_SEARCH_CONSISTENCY, JiraApiVersion, JiraAuth, JiraConfig};
pub use format::JiraFlavor;
pub use query::jql_string;

/// The connection name, and the system errors are reported for.
const SYSTEM: &str = "jira";
