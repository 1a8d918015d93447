//! The second pass: every record, page by page. Records of listed markers are remembered (which
//! ticket each follows); a record whose ticket was not listed is checked directly, and only a
//! ticket that the ticket system says does not exist while its project or table answers counts
//! as gone. A ticket that cannot be read (403, 5xx, a timeout) is reported, never taken for
//! absent.

use std::collections::HashMap;

use super::inventory::Inventory;
use super::report::{GoneTicket, Outcome, TicketView};
use super::{RECORDS_PER_PAGE, Reconciler};
use crate::marker::Marker;
use crate::runtime::shutdown::Shutdown;
use crate::store::Record;
use crate::ticket::TicketRef;
use crate::ticket::listing::Presence;

/// What the store pass hands to the fixes.
pub(super) struct StorePass {
    /// Listed markers that have a record, with the ticket it follows.
    pub(super) recorded: HashMap<Marker, Option<TicketRef>>,
    /// Records whose ticket is gone, by their index in the report's `gone`.
    pub(super) gone: Vec<(usize, Record)>,
    /// Every record was read.
    pub(super) finished: bool,
}

impl Reconciler {
    pub(super) async fn read_records(
        &mut self,
        inventory: &Inventory,
        shutdown: &Shutdown,
    ) -> StorePass {
        let mut pass = StorePass {
            recorded: HashMap::new(),
            gone: Vec::new(),
            finished: false,
        };
        let mut cursor: Option<String> = None;
        loop {
            if shutdown.is_triggered() {
                self.report.interrupted = true;
                return pass;
            }
            let page = match self
                .store
                .records_page(cursor.as_deref(), RECORDS_PER_PAGE)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the store's records failed");
                    self.report.store_error = Some(format!("reading the records: {e}"));
                    return pass;
                }
            };
            for record in page.records {
                self.report.records += 1;
                if inventory.by_marker.contains_key(&record.marker) {
                    pass.recorded
                        .insert(record.marker.clone(), record.ticket.clone());
                }
                self.check_unlisted(inventory, record, &mut pass).await;
            }
            self.show_progress();
            cursor = page.next;
            if cursor.is_none() {
                pass.finished = true;
                return pass;
            }
        }
    }

    /// A record whose ticket the listing did not show: it may have lost its label, live in a
    /// table no rule names any more — or be gone. Only a complete listing makes the question
    /// worth asking; the ticket itself answers it.
    async fn check_unlisted(
        &mut self,
        inventory: &Inventory,
        record: Record,
        pass: &mut StorePass,
    ) {
        let Some(ticket) = record.ticket.clone() else {
            return;
        };
        if inventory
            .listed
            .contains(&(ticket.system.clone(), ticket.id.clone()))
        {
            return;
        }
        let Some(system) = self.systems.get(&ticket.system) else {
            self.report.unchecked_records += 1;
            return;
        };
        if !inventory.complete.contains(&ticket.system) {
            // The connection's listing failed: its error is in the report already.
            return;
        }
        let (outcome, reason) = match system.presence(&ticket).await {
            Ok(Presence::Exists(_)) => return,
            Ok(Presence::Gone) => (Outcome::Planned, None),
            Err(e) => (
                Outcome::Failed,
                Some(format!("not listed, and could not be checked: {e}")),
            ),
        };
        let at = self.report.gone.len();
        self.report.gone.push(GoneTicket {
            marker: record.marker.clone(),
            finding_id: record.finding_id.clone(),
            team: record.team.clone(),
            ticket: TicketView::of_ref(&ticket),
            outcome,
            reason,
        });
        if outcome == Outcome::Planned {
            pass.gone.push((at, record));
        }
    }
}
