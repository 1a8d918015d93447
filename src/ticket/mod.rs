//! The contract every ticket system implements (Jira Cloud v3, Jira Data Center v2, ServiceNow),
//! and the one error type the pipeline acts on: transient (retry later, leave the SQS message) or
//! permanent (dead-letter it and tell the mapping owner what to fix).
//!
//! Each system is one slice ([`jira`], [`servicenow`]); what both do the same way is written once
//! beside them: [`settings`] (reading a connection's variables), [`auth`] (signing requests),
//! [`connection`] (what every client holds) and [`http`] (retries, rate limits, error text).

pub mod auth;
pub mod connection;
pub mod http;
pub mod jira;
pub mod listing;
pub mod provenance;
pub mod servicenow;
pub mod settings;

// Risk acceptance note (issue 15): who changed a status and why, as plain text.
pub mod attribution;

use std::fmt;
use std::future::Future;

use crate::marker::Marker;
use listing::{ListedPage, Presence};
use provenance::{Provenance, ProvenanceRead};

/// A ticket the bridge created or found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TicketRef {
    /// `jira` or `servicenow` (the connection name).
    pub system: String,
    /// Human key: Jira `PAY-123`, ServiceNow `INC0010001`.
    pub key: String,
    /// Machine id: Jira issue id, ServiceNow `sys_id`.
    pub id: String,
    /// ServiceNow table the record lives in (`incident`, `sn_si_incident`); `None` for Jira.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Browser URL of the ticket.
    pub url: String,
}

/// Where a ticket stands, as the ticket system says it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TicketStatus {
    /// Jira status name (`In Progress`), ServiceNow state label or code as text.
    pub name: String,
    /// Jira status category key (`new`, `indeterminate`, `done`); ServiceNow state code (`6`).
    pub category: String,
    /// True when the ticket counts as finished (Jira category `done`; ServiceNow 6, 7, 8).
    pub done: bool,
    /// Why the ticket was finished, when the read says (Jira `fields.resolution.name`;
    /// ServiceNow `close_code` and `close_notes`): one line, cut by [`attribution::fact`]. Only
    /// the reads status sync makes ask for it; decisions never depend on it (statuses are
    /// matched by `name` and `category`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// Who moved the ticket to this status, when the read says (ServiceNow `sys_updated_by`);
    /// Jira's needs the extra read [`TicketSystem::status_changed_by`]. One line, cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
}

/// A ticket found by its marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundTicket {
    pub ticket: TicketRef,
    /// Finished (Jira status category `done`; ServiceNow resolved, closed or canceled).
    pub done: bool,
}

/// A bridge ticket seen by the poller, with the marker that ties it to a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketUpdate {
    pub ticket: TicketRef,
    pub marker: Option<Marker>,
    pub status: TicketStatus,
    /// Last update time as the ticket system reports it (RFC 3339).
    pub updated_at: String,
}

/// One page of [`TicketSystem::updated_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdatedPage {
    pub tickets: Vec<TicketUpdate>,
    /// Opaque cursor for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Fields to change on an existing ticket (a severity change).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldUpdate {
    /// Jira: the `fields` object to `PUT` (e.g. `{"priority": {"name": "Highest"}}`);
    /// ServiceNow: the columns to `PATCH` (e.g. `{"urgency": "1"}`).
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Jira labels to add to the ones the ticket has (an SLA escalation), in the same `PUT`;
    /// ServiceNow has no labels (`check` refuses them on a ServiceNow rule).
    pub add_labels: Vec<String>,
}

/// The target state of a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetStatus {
    /// Finished: Jira status category `done`; ServiceNow resolved (state 6 with close code/notes).
    Done,
    /// A named Jira status (through a transition the workflow offers) or a ServiceNow state code.
    Named(String),
}

/// Error from a ticket system. Never contains credentials: bodies are cut to a short excerpt and
/// headers are not kept.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TicketError {
    /// Worth retrying later: connection failures, timeouts, 5xx, 429, retry budget exhausted.
    #[error("{system} {operation}: transient: {message}")]
    Transient {
        system: &'static str,
        operation: &'static str,
        status: Option<u16>,
        message: String,
    },
    /// The request was sent and may have taken effect: a timeout or cut connection after
    /// sending, a 5xx (a gateway that lost the backend's answer), an unreadable 2xx. Only
    /// non-idempotent requests (creates, comments, transitions) report it; the caller must look
    /// before sending again. Transient for the message.
    #[error("{system} {operation}: outcome unknown: {message}")]
    OutcomeUnknown {
        system: &'static str,
        operation: &'static str,
        status: Option<u16>,
        message: String,
    },
    /// Not this finding's fault, and no use retrying it until something outside the bridge
    /// changes: the connection's credentials or settings are refused ([`Blame::Connection`]:
    /// 401/403, a token endpoint refusing the client, DNS or TLS failure) or the rule's target is
    /// gone ([`Blame::Target`]: project, issue type or table). The connection or rule pauses;
    /// the finding is never dead-lettered for it.
    #[error("{system} {operation}: {blame} unusable: {message}")]
    Unusable {
        system: &'static str,
        operation: &'static str,
        status: Option<u16>,
        blame: Blame,
        message: String,
    },
    /// Will fail again unchanged: 4xx other than 408/409/429, a payload the target rejects.
    /// `message` names the field for Jira `errors` maps (`priority: Specify the Priority (name)`).
    #[error("{system} {operation}: {message}")]
    Permanent {
        system: &'static str,
        operation: &'static str,
        status: Option<u16>,
        message: String,
    },
}

/// Whose fault a [`TicketError::Unusable`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The connection: credentials, permissions, DNS, TLS.
    Connection,
    /// The rule's target: its project, issue type or table.
    Target,
}

impl fmt::Display for Blame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Blame::Connection => "connection",
            Blame::Target => "rule target",
        })
    }
}

/// Transient and unknown outcomes come back later (the caller looks before re-sending what may
/// have taken effect); an unusable connection or target and a refused payload do not.
impl crate::retry::Retryable for TicketError {
    fn retry(&self) -> crate::retry::Retry {
        match self {
            TicketError::Transient { .. } | TicketError::OutcomeUnknown { .. } => {
                crate::retry::Retry::LATER
            }
            TicketError::Unusable { .. } | TicketError::Permanent { .. } => {
                crate::retry::Retry::Permanent
            }
        }
    }
}

impl TicketError {
    /// The connection (client) that reported the error.
    pub fn system(&self) -> &'static str {
        match self {
            TicketError::Transient { system, .. }
            | TicketError::OutcomeUnknown { system, .. }
            | TicketError::Unusable { system, .. }
            | TicketError::Permanent { system, .. } => system,
        }
    }

    /// Whose fault the error is, when it is not the finding's.
    pub fn blame(&self) -> Option<Blame> {
        match self {
            TicketError::Unusable { blame, .. } => Some(*blame),
            _ => None,
        }
    }

    /// The same error blamed on `blame` (a client that knows a refusal means its target is
    /// gone, or that its token endpoint refused the client).
    pub fn blamed_on(self, blame: Blame) -> TicketError {
        match self {
            TicketError::Permanent {
                system,
                operation,
                status,
                message,
            }
            | TicketError::Unusable {
                system,
                operation,
                status,
                message,
                ..
            } => TicketError::Unusable {
                system,
                operation,
                status,
                blame,
                message,
            },
            other => other,
        }
    }

    /// The system was too busy to take the request and it was provably not applied: refused
    /// with 429 until the caller gave up, or never sent because the client-side rate limit had
    /// no room for it in time. Nothing is wrong with the request or the system; it can go again.
    pub fn is_busy(&self) -> bool {
        match self {
            TicketError::Transient {
                status, message, ..
            } => {
                *status == Some(429)
                    || (status.is_none() && message.starts_with(http::client::NOT_SENT))
            }
            _ => false,
        }
    }

    /// The request may have taken effect although it reported an error.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, TicketError::OutcomeUnknown { .. })
    }

    /// The same error, as "may have taken effect": a create whose 2xx answer could not be read.
    pub fn into_outcome_unknown(self) -> TicketError {
        match self {
            TicketError::Transient {
                system,
                operation,
                status,
                message,
            } => TicketError::OutcomeUnknown {
                system,
                operation,
                status,
                message,
            },
            other => other,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            TicketError::Transient { status, .. }
            | TicketError::OutcomeUnknown { status, .. }
            | TicketError::Unusable { status, .. }
            | TicketError::Permanent { status, .. } => *status,
        }
    }
}

pub use crate::BoxFuture;

/// One ticket system connection. Implementations retry transient failures internally (with
/// backoff, `Retry-After` and a shared rate limit) and return an error only when the retry budget
/// is spent or the failure is permanent.
pub trait TicketSystem: Send + Sync {
    /// Connection name (`jira`, `servicenow`), as used in `TicketRef::system`.
    fn name(&self) -> &str;

    /// Every ticket carrying this marker and the `findings-bridge` label (Jira labels;
    /// ServiceNow `correlation_id` + `correlation_display`), oldest first. Search may lag behind
    /// creates (Jira): a miss is proof of absence only [`TicketSystem::settle_time`] after the
    /// last create that could have made one.
    fn find_by_marker<'a>(
        &'a self,
        marker: &'a Marker,
        table: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<FoundTicket>, TicketError>>;

    /// How long after a create was started a marker search is sure to see it: the longest the
    /// create can be in the air (send window + request timeout) plus the search index's lag
    /// (`JIRA_SEARCH_CONSISTENCY`; ServiceNow's table API reads its own writes).
    fn settle_time(&self) -> std::time::Duration;

    /// Creates a ticket from a payload built by `render` (the exact request body). `table` is
    /// the ServiceNow table of the rule (`None`: the connection's default; ignored by Jira).
    /// Sent at most once: an unknown outcome is [`TicketError::OutcomeUnknown`], never retried.
    fn create<'a>(
        &'a self,
        payload: &'a serde_json::Value,
        table: Option<&'a str>,
    ) -> BoxFuture<'a, Result<TicketRef, TicketError>>;

    fn update_fields<'a>(
        &'a self,
        ticket: &'a TicketRef,
        update: &'a FieldUpdate,
    ) -> BoxFuture<'a, Result<(), TicketError>>;

    /// Adds a comment (Jira comment in ADF or wiki markup; ServiceNow `work_notes`). `text` is
    /// light Markdown. Sent at most once: an unknown outcome is [`TicketError::OutcomeUnknown`].
    fn comment<'a>(
        &'a self,
        ticket: &'a TicketRef,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), TicketError>>;

    /// Whether a recent comment (Jira: the newest 100; ServiceNow: the work notes) contains
    /// `needle`: how a comment whose earlier attempt may have landed is looked for before it is
    /// posted again. Both read the ticket itself, not a search index.
    fn has_comment<'a>(
        &'a self,
        ticket: &'a TicketRef,
        needle: &'a str,
    ) -> BoxFuture<'a, Result<bool, TicketError>>;

    /// Moves the ticket to a status through whatever transition the workflow offers. Already
    /// being there is success. `note` is used as the resolution note where the system needs one.
    fn transition<'a>(
        &'a self,
        ticket: &'a TicketRef,
        to: &'a TargetStatus,
        note: &'a str,
    ) -> BoxFuture<'a, Result<(), TicketError>>;

    /// Reopens a finished ticket (Jira: a transition to category `new`/`indeterminate`;
    /// ServiceNow: state back to New/In Progress, with `note` as a work note when not empty).
    /// Already open is success.
    fn reopen<'a>(
        &'a self,
        ticket: &'a TicketRef,
        note: &'a str,
    ) -> BoxFuture<'a, Result<(), TicketError>>;

    fn status<'a>(
        &'a self,
        ticket: &'a TicketRef,
    ) -> BoxFuture<'a, Result<TicketStatus, TicketError>>;

    /// A light call proving the connection's credentials and settings work (Jira `myself`;
    /// ServiceNow one record of the default table): how a paused connection resumes.
    fn probe(&self) -> BoxFuture<'_, Result<(), TicketError>>;

    /// Proves a rule's target exists again: a Jira project (by key) or a ServiceNow table.
    fn probe_target<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<(), TicketError>>;

    /// What [`TicketSystem::probe_target`] takes for a rule whose create payload is `payload`
    /// (Jira: `fields.project.key`; ServiceNow: the rule's table); `None` when there is nothing
    /// narrower to probe than the connection.
    fn target_of(&self, payload: &serde_json::Value, table: Option<&str>) -> Option<String>;

    /// Bridge tickets (label / `correlation_display` = findings-bridge) updated at or after
    /// `since` (RFC 3339), oldest first, one page at a time; pass the returned cursor back.
    fn updated_since<'a>(
        &'a self,
        since: &'a str,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<UpdatedPage, TicketError>>;

    /// For a system whose tickets live in tables (ServiceNow), the table
    /// [`TicketSystem::updated_since`] polls and rules without one create in; `None` for a system
    /// without tables (Jira).
    fn default_table(&self) -> Option<&str> {
        None
    }

    /// [`TicketSystem::updated_since`] in `table` (status sync polls every table a rule creates
    /// in). A system without tables has a single list and ignores `table`.
    fn updated_since_in<'a>(
        &'a self,
        since: &'a str,
        table: &'a str,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<UpdatedPage, TicketError>> {
        let _ = table;
        self.updated_since(since, cursor)
    }

    // ---- reconcile (issue 16): the bridge's tickets as a whole, and what rebuilds a record ----

    /// `payload` (a create body from `render`) with `provenance` added where this system keeps
    /// it out of the ticket's text: Jira an issue property in `properties`, ServiceNow a line in
    /// the create's `work_notes` (after any work note the rule sets).
    fn attach_provenance(
        &self,
        payload: &serde_json::Value,
        provenance: &Provenance,
    ) -> serde_json::Value;

    /// One page of every ticket the bridge made (Jira label `findings-bridge`; ServiceNow
    /// `correlation_display = findings-bridge` in the default table and each of `tables`),
    /// oldest first within a table; pass the returned cursor back for the next page.
    fn list_bridge_tickets<'a>(
        &'a self,
        tables: &'a [String],
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ListedPage, TicketError>>;

    /// The provenance the bridge wrote into `ticket` when it created it (reads the ticket
    /// itself, not a search index).
    fn provenance<'a>(
        &'a self,
        ticket: &'a TicketRef,
    ) -> BoxFuture<'a, Result<ProvenanceRead, TicketError>>;

    /// Whether `ticket` still exists. [`Presence::Gone`] only on proof (a 404 for the ticket
    /// while its project or table answers); anything that could not be read is an error.
    fn presence<'a>(
        &'a self,
        ticket: &'a TicketRef,
    ) -> BoxFuture<'a, Result<Presence, TicketError>>;

    // ---- risk acceptance note (issue 15) ----

    /// Who moved `ticket` to its current status `status` (its name), for a system whose status
    /// read does not say ([`TicketStatus::changed_by`] is `None`): Jira reads the issue's
    /// changelog, an extra request, so status sync asks only for a timed risk acceptance.
    /// `Ok(None)` when the system cannot tell, or its newest status change is not to `status`.
    fn status_changed_by<'a>(
        &'a self,
        ticket: &'a TicketRef,
        status: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, TicketError>> {
        let _ = (ticket, status);
        Box::pin(async { Ok(None) })
    }

    // ---- admission of creates (issue 14) ----

    /// Waits until a create may start on this connection: held from before the create's intent
    /// is written until the create has returned, so that the creates in progress are no more
    /// than the rate limit can send within the send window (see [`http::admission`]). Systems
    /// without a rate limit admit every create at once.
    fn create_turn(&self) -> BoxFuture<'_, http::CreateTurn> {
        Box::pin(async { http::CreateTurn::free() })
    }
}

/// [`TicketSystem`] written with `async fn`: what the clients implement, each method meaning what
/// the [`TicketSystem`] method of the same name says. Every implementation is a [`TicketSystem`]
/// through the blanket impl below, which boxes its futures for `Arc<dyn TicketSystem>`, so a
/// client spells out its logic and none of the boxing.
pub trait AsyncTicketSystem: Send + Sync {
    fn name(&self) -> &str;

    fn settle_time(&self) -> std::time::Duration;

    fn find_by_marker(
        &self,
        marker: &Marker,
        table: Option<&str>,
    ) -> impl Future<Output = Result<Vec<FoundTicket>, TicketError>> + Send;

    fn create(
        &self,
        payload: &serde_json::Value,
        table: Option<&str>,
    ) -> impl Future<Output = Result<TicketRef, TicketError>> + Send;

    fn update_fields(
        &self,
        ticket: &TicketRef,
        update: &FieldUpdate,
    ) -> impl Future<Output = Result<(), TicketError>> + Send;

    fn comment(
        &self,
        ticket: &TicketRef,
        text: &str,
    ) -> impl Future<Output = Result<(), TicketError>> + Send;

    fn has_comment(
        &self,
        ticket: &TicketRef,
        needle: &str,
    ) -> impl Future<Output = Result<bool, TicketError>> + Send;

    fn transition(
        &self,
        ticket: &TicketRef,
        to: &TargetStatus,
        note: &str,
    ) -> impl Future<Output = Result<(), TicketError>> + Send;

    fn reopen(
        &self,
        ticket: &TicketRef,
        note: &str,
    ) -> impl Future<Output = Result<(), TicketError>> + Send;

    fn status(
        &self,
        ticket: &TicketRef,
    ) -> impl Future<Output = Result<TicketStatus, TicketError>> + Send;

    fn probe(&self) -> impl Future<Output = Result<(), TicketError>> + Send;

    fn probe_target(&self, target: &str) -> impl Future<Output = Result<(), TicketError>> + Send;

    fn target_of(&self, payload: &serde_json::Value, table: Option<&str>) -> Option<String>;

    fn updated_since(
        &self,
        since: &str,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<UpdatedPage, TicketError>> + Send;

    fn default_table(&self) -> Option<&str> {
        None
    }

    fn updated_since_in(
        &self,
        since: &str,
        table: &str,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<UpdatedPage, TicketError>> + Send {
        let _ = table;
        self.updated_since(since, cursor)
    }

    // ---- reconcile (issue 16) ----

    fn attach_provenance(
        &self,
        payload: &serde_json::Value,
        provenance: &Provenance,
    ) -> serde_json::Value;

    fn list_bridge_tickets(
        &self,
        tables: &[String],
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<ListedPage, TicketError>> + Send;

    fn provenance(
        &self,
        ticket: &TicketRef,
    ) -> impl Future<Output = Result<ProvenanceRead, TicketError>> + Send;

    fn presence(
        &self,
        ticket: &TicketRef,
    ) -> impl Future<Output = Result<Presence, TicketError>> + Send;

    // ---- risk acceptance note (issue 15) ----

    fn status_changed_by(
        &self,
        ticket: &TicketRef,
        status: &str,
    ) -> impl Future<Output = Result<Option<String>, TicketError>> + Send {
        let _ = (ticket, status);
        async { Ok(None) }
    }

    // ---- admission of creates (issue 14) ----

    fn create_turn(&self) -> impl Future<Output = http::CreateTurn> + Send {
        async { http::CreateTurn::free() }
    }
}

impl<T: AsyncTicketSystem> TicketSystem for T {
    fn name(&self) -> &str {
        AsyncTicketSystem::name(self)
    }

    fn find_by_marker<'a>(
        &'a self,
        marker: &'a Marker,
        table: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<FoundTicket>, TicketError>> {
        Box::pin(AsyncTicketSystem::find_by_marker(self, marker, table))
    }

    fn settle_time(&self) -> std::time::Duration {
        AsyncTicketSystem::settle_time(self)
    }

    fn create<'a>(
        &'a self,
        payload: &'a serde_json::Value,
        table: Option<&'a str>,
    ) -> BoxFuture<'a, Result<TicketRef, TicketError>> {
        Box::pin(AsyncTicketSystem::create(self, payload, table))
    }

    fn update_fields<'a>(
        &'a self,
        ticket: &'a TicketRef,
        update: &'a FieldUpdate,
    ) -> BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(AsyncTicketSystem::update_fields(self, ticket, update))
    }

    fn comment<'a>(
        &'a self,
        ticket: &'a TicketRef,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(AsyncTicketSystem::comment(self, ticket, text))
    }

    fn has_comment<'a>(
        &'a self,
        ticket: &'a TicketRef,
        needle: &'a str,
    ) -> BoxFuture<'a, Result<bool, TicketError>> {
        Box::pin(AsyncTicketSystem::has_comment(self, ticket, needle))
    }

    fn transition<'a>(
        &'a self,
        ticket: &'a TicketRef,
        to: &'a TargetStatus,
        note: &'a str,
    ) -> BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(AsyncTicketSystem::transition(self, ticket, to, note))
    }

    fn reopen<'a>(
        &'a self,
        ticket: &'a TicketRef,
        note: &'a str,
    ) -> BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(AsyncTicketSystem::reopen(self, ticket, note))
    }

    fn status<'a>(
        &'a self,
        ticket: &'a TicketRef,
    ) -> BoxFuture<'a, Result<TicketStatus, TicketError>> {
        Box::pin(AsyncTicketSystem::status(self, ticket))
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), TicketError>> {
        Box::pin(AsyncTicketSystem::probe(self))
    }

    fn probe_target<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(AsyncTicketSystem::probe_target(self, target))
    }

    fn target_of(&self, payload: &serde_json::Value, table: Option<&str>) -> Option<String> {
        AsyncTicketSystem::target_of(self, payload, table)
    }

    fn updated_since<'a>(
        &'a self,
        since: &'a str,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<UpdatedPage, TicketError>> {
        Box::pin(AsyncTicketSystem::updated_since(self, since, cursor))
    }

    fn default_table(&self) -> Option<&str> {
        AsyncTicketSystem::default_table(self)
    }

    fn updated_since_in<'a>(
        &'a self,
        since: &'a str,
        table: &'a str,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<UpdatedPage, TicketError>> {
        Box::pin(AsyncTicketSystem::updated_since_in(
            self, since, table, cursor,
        ))
    }

    // ---- reconcile (issue 16) ----

    fn attach_provenance(
        &self,
        payload: &serde_json::Value,
        provenance: &Provenance,
    ) -> serde_json::Value {
        AsyncTicketSystem::attach_provenance(self, payload, provenance)
    }

    fn list_bridge_tickets<'a>(
        &'a self,
        tables: &'a [String],
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ListedPage, TicketError>> {
        Box::pin(AsyncTicketSystem::list_bridge_tickets(self, tables, cursor))
    }

    fn provenance<'a>(
        &'a self,
        ticket: &'a TicketRef,
    ) -> BoxFuture<'a, Result<ProvenanceRead, TicketError>> {
        Box::pin(AsyncTicketSystem::provenance(self, ticket))
    }

    fn presence<'a>(
        &'a self,
        ticket: &'a TicketRef,
    ) -> BoxFuture<'a, Result<Presence, TicketError>> {
        Box::pin(AsyncTicketSystem::presence(self, ticket))
    }

    // ---- risk acceptance note (issue 15) ----

    fn status_changed_by<'a>(
        &'a self,
        ticket: &'a TicketRef,
        status: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, TicketError>> {
        Box::pin(AsyncTicketSystem::status_changed_by(self, ticket, status))
    }

    // ---- admission of creates (issue 14) ----

    fn create_turn(&self) -> BoxFuture<'_, http::CreateTurn> {
        Box::pin(AsyncTicketSystem::create_turn(self))
    }
}

impl fmt::Display for TicketRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.system, self.key)
    }
}
