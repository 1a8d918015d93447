//! The first pass: every ticket the bridge made, connection by connection and page by page,
//! grouped by marker (oldest first), and every ticket indexed by connection and id so that the
//! records can be checked against it.

use std::collections::{BTreeMap, HashSet};

use super::Reconciler;
use super::report::{ConnectionListing, TicketView};
use crate::marker::Marker;
use crate::runtime::shutdown::Shutdown;
use crate::ticket::listing::ListedTicket;

/// What the listing found.
#[derive(Debug, Default)]
pub(super) struct Inventory {
    /// The tickets carrying each marker, oldest first.
    pub(super) by_marker: BTreeMap<Marker, Vec<ListedTicket>>,
    /// (connection, ticket id) of every listed ticket.
    pub(super) listed: HashSet<(String, String)>,
    /// Connections listed to the last page.
    pub(super) complete: HashSet<String>,
}

impl Inventory {
    fn add(&mut self, ticket: ListedTicket) -> Option<ListedTicket> {
        self.listed
            .insert((ticket.ticket.system.clone(), ticket.ticket.id.clone()));
        match ticket.marker.clone() {
            Some(marker) => {
                self.by_marker.entry(marker).or_default().push(ticket);
                None
            }
            None => Some(ticket),
        }
    }

    /// Oldest first within each marker, whatever table or page a ticket came from; tickets
    /// created in the same instant keep the order they were listed in.
    fn sort(&mut self) {
        for tickets in self.by_marker.values_mut() {
            tickets.sort_by_key(|t| {
                chrono::DateTime::parse_from_rfc3339(&t.created_at)
                    .map(|at| at.timestamp_millis())
                    .unwrap_or(i64::MAX)
            });
        }
    }
}

impl Reconciler {
    /// Lists every configured connection; a connection whose listing fails is reported as
    /// incomplete (its records are then not judged) and the others go on.
    pub(super) async fn list_all(&mut self, shutdown: &Shutdown) -> Inventory {
        let mut inventory = Inventory::default();
        let names: Vec<String> = self.systems.keys().cloned().collect();
        for name in names {
            let system = std::sync::Arc::clone(&self.systems[&name]);
            let tables = self.tables.get(&name).cloned().unwrap_or_default();
            let at = self.report.connections.len();
            self.report.connections.push(ConnectionListing {
                connection: name.clone(),
                tables: tables.clone(),
                ..ConnectionListing::default()
            });
            let mut cursor: Option<String> = None;
            loop {
                if shutdown.is_triggered() {
                    self.report.interrupted = true;
                    break;
                }
                match system.list_bridge_tickets(&tables, cursor.as_deref()).await {
                    Ok(page) => {
                        for ticket in page.tickets {
                            self.report.connections[at].tickets += 1;
                            if let Some(unmarked) = inventory.add(ticket) {
                                self.report.unmarked.push(TicketView::of_listed(&unmarked));
                            }
                        }
                        cursor = page.next;
                    }
                    Err(e) => {
                        tracing::warn!(connection = %name, error = %e, "listing the bridge's tickets failed; this connection's records are not judged");
                        self.report.connections[at].error = Some(e.to_string());
                        break;
                    }
                }
                self.show_progress();
                if cursor.is_none() {
                    self.report.connections[at].complete = true;
                    inventory.complete.insert(name.clone());
                    break;
                }
            }
            let listing = &self.report.connections[at];
            tracing::info!(connection = %name, tickets = listing.tickets, complete = listing.complete, "listed");
        }
        inventory.sort();
        inventory
    }
}
