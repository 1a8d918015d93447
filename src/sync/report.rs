//! What one sync pass did, ticket by ticket, for logs, metrics and `sync --once`'s JSON.

use super::*;

/// Why a ticket caused no write-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// No marker, or a marker this store does not know (another environment's ticket).
    NotBridge,
    /// The marker's record points at another ticket (replaced after a recurrence) or another
    /// connection: this ticket no longer speaks for the finding.
    OtherTicket,
    /// Security Hub already shows the status this ticket maps to (the bridge wrote it).
    Unchanged,
    /// The bridge closed this ticket because the finding was resolved.
    ClosedByBridge,
    /// The finding is resolved and the ticket asks for an open state: never reopen a finding.
    FindingResolved,
    /// Neither the team's map nor the defaults know this status.
    Unmapped,
    /// Another team's ticket of the same finding changed later in the same tick and won.
    Superseded,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotBridge => "not_bridge",
            SkipReason::OtherTicket => "other_ticket",
            SkipReason::Unchanged => "unchanged",
            SkipReason::ClosedByBridge => "closed_by_bridge",
            SkipReason::FindingResolved => "finding_resolved",
            SkipReason::Unmapped => "unmapped",
            SkipReason::Superseded => "superseded",
        }
    }
}

/// What syncing one ticket did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TicketSyncOutcome {
    /// The workflow status was written and recorded.
    Written {
        status: WorkflowStatus,
    },
    /// Security Hub did not apply it; it is retried on the next polls.
    Unprocessed {
        code: String,
        message: String,
    },
    Skipped {
        reason: SkipReason,
    },
}

/// Why syncing one ticket failed (webhooks answer with it; the poller reports it).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no ticket connection named {0:?}")]
    UnknownConnection(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ticket(#[from] TicketError),
    #[error(transparent)]
    Write(#[from] crate::aws::securityhub::WriteError),
}

/// A finding Security Hub did not update, with the ticket that asked for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnprocessedTicket {
    pub connection: String,
    pub ticket: String,
    pub finding_id: String,
    pub code: String,
    pub message: String,
}

/// What one [`StatusSync::poll_once`] did, over every connection. Printed by `sync --once`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    /// Result pages fetched from the ticket systems.
    pub pages: usize,
    /// Tickets the ticket systems returned (duplicates included).
    pub read: usize,
    /// Tickets seen before at the same update time (overlap window, or twice in one poll).
    pub duplicates: usize,
    /// Findings whose workflow status was written.
    pub written: usize,
    /// Tickets that caused no write, by reason.
    pub skipped: BTreeMap<&'static str, usize>,
    /// Findings earlier Security Hub refusals that were tried again this tick.
    pub retried: usize,
    /// Findings Security Hub refused this tick (retried next tick unless `abandoned`).
    pub unprocessed: Vec<UnprocessedTicket>,
    /// Findings refused on every one of their retries: reported and no longer retried.
    pub abandoned: Vec<UnprocessedTicket>,
    /// Connection-level failures (ticket search, store, write-back call).
    pub errors: Vec<String>,
    /// Connections that had more new tickets than `max_per_tick`.
    pub truncated: Vec<String>,
    /// The watermark of each connection after the poll.
    pub watermarks: BTreeMap<String, String>,
    /// Risk acceptances that ran out this tick: finding set back to NEW, ticket reopened.
    #[serde(skip_serializing_if = "is_zero")]
    pub acceptances_expired: usize,
    /// Risk acceptances that ran out after their finding was resolved: only recorded.
    #[serde(skip_serializing_if = "is_zero")]
    pub acceptances_settled: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl SyncReport {
    /// No error and nothing Security Hub refused: `sync --once` can exit 0.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.unprocessed.is_empty() && self.abandoned.is_empty()
    }

    pub(super) fn skip(&mut self, reason: SkipReason) {
        *self.skipped.entry(reason.as_str()).or_insert(0) += 1;
    }
}

pub(super) fn unprocessed_entry(
    pending: &Pending,
    code: String,
    message: String,
) -> UnprocessedTicket {
    UnprocessedTicket {
        connection: pending.candidate.connection.clone(),
        ticket: pending.candidate.ticket.key.clone(),
        finding_id: pending.record.finding_id.clone(),
        code,
        message,
    }
}

pub(super) fn log_report(report: &SyncReport) {
    if report.is_clean() {
        tracing::debug!(
            read = report.read,
            written = report.written,
            duplicates = report.duplicates,
            "status sync poll finished"
        );
    } else {
        tracing::warn!(
            read = report.read,
            written = report.written,
            unprocessed = report.unprocessed.len(),
            abandoned = report.abandoned.len(),
            errors = ?report.errors,
            "status sync poll finished with problems"
        );
    }
}
