//! The shapes `findings-bridge reconcile` reads the ticket systems in: every ticket the bridge
//! made ([`TicketSystem::list_bridge_tickets`](crate::ticket::TicketSystem::list_bridge_tickets)),
//! one page at a time, and whether a ticket still exists
//! ([`Presence`]), where "could not be read" is never taken for "gone".

use crate::marker::Marker;
use crate::ticket::{TicketRef, TicketStatus};

/// One ticket carrying the `findings-bridge` label (Jira) or `correlation_display` (ServiceNow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTicket {
    pub ticket: TicketRef,
    /// The marker it carries; `None` when it has no well-formed one (edited by hand).
    pub marker: Option<Marker>,
    pub status: TicketStatus,
    /// When the ticket was created (RFC 3339), to tell the oldest of several apart.
    pub created_at: String,
}

/// One page of [`TicketSystem::list_bridge_tickets`](crate::ticket::TicketSystem::list_bridge_tickets).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListedPage {
    pub tickets: Vec<ListedTicket>,
    /// Opaque cursor for the next page; `None` after the last one.
    pub next: Option<String>,
}

/// Whether a ticket a record points at is still there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// It answers; its status as read.
    Exists(TicketStatus),
    /// The ticket system says it does not exist (404) while its project / table answers: it
    /// was deleted.
    Gone,
}
