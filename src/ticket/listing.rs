//! The shapes `findings-bridge reconcile` reads the ticket systems in: every ticket the bridge
//! made ([`TicketSystem::list_bridge_tickets`](crate::ticket::TicketSystem::list_bridge_tickets)),
//! one page at a time, and whether a ticket still exists
//! ([`Presence`]), where "could not be read" is never taken for "gone".

use std::future::Future;

use crate::marker::Marker;
use crate::ticket::{Blame, TicketError, TicketRef, TicketStatus};

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

/// [`Presence`] from a direct read of `ticket`: a 404 counts as gone only when `container` (a
/// look at its project or table, named `what`) answers, because a container that cannot be read
/// hides every ticket in it. Any other failure of the read, or of the look at the container,
/// is returned (the latter built by `refuse` from its status and text): never taken for absence.
pub(crate) async fn presence_of(
    read: Result<TicketStatus, TicketError>,
    ticket: &TicketRef,
    what: &str,
    container: impl Future<Output = Result<(), TicketError>>,
    refuse: impl FnOnce(Option<u16>, String) -> TicketError,
) -> Result<Presence, TicketError> {
    match read {
        Ok(status) => Ok(Presence::Exists(status)),
        Err(e) if e.status() == Some(404) => match container.await {
            Ok(()) => Ok(Presence::Gone),
            Err(unreadable) => Err(refuse(
                unreadable.status(),
                format!(
                    "{} answers 404 and its {what} cannot be read either ({unreadable}): deleted, \
                     or hidden from the bridge's account; not taken as gone",
                    ticket.key
                ),
            )
            .blamed_on(Blame::Target)),
        },
        Err(e) => Err(e),
    }
}
