//! The third pass, marker by marker: a ticket without a record is rebuilt from its provenance,
//! extra live tickets are closed as duplicates of the one the bridge follows (a comment links
//! it), and records of gone tickets are dropped. In a dry run each is only reported.
//!
//! Store writes take the key's claim first and are conditional: a key a worker holds, or one
//! that holds a record or a pending create by then, is reported as a conflict and left alone.

use std::collections::HashMap;
use std::sync::Arc;

use super::Reconciler;
use super::inventory::Inventory;
use super::report::{Duplicate, ExtraTicket, MissingRecord, Outcome, TicketView};
use super::store_pass::StorePass;
use crate::marker::Marker;
use crate::pipeline::lifecycle::{comment_once_on, followed};
use crate::runtime::shutdown::Shutdown;
use crate::store::{Adoption, Claim, Claimed, Record};
use crate::ticket::listing::ListedTicket;
use crate::ticket::provenance::{Provenance, ProvenanceRead};
use crate::ticket::{TargetStatus, TicketRef, TicketSystem};

/// What happened to one key, and why when it is not plainly done.
type Verdict = (Outcome, Option<String>);

fn conflict(why: &str) -> Verdict {
    (Outcome::Conflict, Some(why.to_owned()))
}

fn failed(why: String) -> Verdict {
    (Outcome::Failed, Some(why))
}

fn same_ticket(a: &TicketRef, b: &TicketRef) -> bool {
    a.system == b.system && a.id == b.id
}

/// The record the lifecycle would have written for `ticket`, from what the ticket says. What no
/// ticket can tell (the newest finding version, its fingerprint, what status sync last saw or
/// wrote) starts empty, as after the lifecycle's own recovery of an unrecorded ticket: the next
/// delivery is then never taken for a no-op or for stale, and follows the ticket from its status.
fn rebuilt(marker: &Marker, provenance: Provenance, listed: &ListedTicket) -> Record {
    Record {
        marker: marker.clone(),
        finding_id: provenance.finding_id,
        team: provenance.team,
        schema: provenance.schema,
        write_back: provenance.write_back,
        rule: provenance.rule,
        ticket: Some(listed.ticket.clone()),
        updated_at: None,
        fingerprint: String::new(),
        severity: provenance.severity,
        finding_resolved: listed.status.done,
        closed_by_bridge: false,
        status_to_hub: None,
        status_from_ticket: None,
        modified_at: chrono::Utc::now().timestamp(),
        sla: None,
        group: None,
    }
}

impl Reconciler {
    pub(super) async fn judge(
        &mut self,
        inventory: Inventory,
        pass: StorePass,
        shutdown: &Shutdown,
    ) {
        let StorePass { recorded, gone, .. } = pass;
        for (marker, tickets) in &inventory.by_marker {
            if shutdown.is_triggered() {
                self.report.interrupted = true;
                return;
            }
            self.judge_marker(marker, tickets, &recorded).await;
            self.show_progress();
        }
        for (at, record) in gone {
            if shutdown.is_triggered() {
                self.report.interrupted = true;
                return;
            }
            if self.options.fix {
                let (outcome, reason) = self.drop_gone(&record).await;
                self.report.gone[at].outcome = outcome;
                self.report.gone[at].reason = reason;
            }
        }
    }

    async fn judge_marker(
        &mut self,
        marker: &Marker,
        tickets: &[ListedTicket],
        recorded: &HashMap<Marker, Option<TicketRef>>,
    ) {
        let record_ticket = recorded.get(marker);
        // The bridge keeps what its record follows while that is live; otherwise what its
        // marker search would pick.
        let kept = record_ticket
            .and_then(Option::as_ref)
            .and_then(|r| {
                tickets
                    .iter()
                    .find(|t| !t.status.done && same_ticket(&t.ticket, r))
            })
            .or_else(|| followed(tickets, |t| t.status.done));
        let Some(kept) = kept else {
            return;
        };
        let extra: Vec<&ListedTicket> = tickets
            .iter()
            .filter(|t| !t.status.done && !same_ticket(&t.ticket, &kept.ticket))
            .collect();
        if record_ticket.is_none() {
            let entry = self.missing_record(marker, kept).await;
            self.report.missing_records.push(entry);
        } else if extra.is_empty() {
            self.report.in_step += 1;
        }
        if !extra.is_empty() {
            let mut others = Vec::with_capacity(extra.len());
            for other in extra {
                let (outcome, reason) = self.close_duplicate(marker, &kept.ticket, other).await;
                others.push(ExtraTicket {
                    ticket: TicketView::of_listed(other),
                    outcome,
                    reason,
                });
            }
            self.report.duplicates.push(Duplicate {
                marker: marker.clone(),
                kept: TicketView::of_listed(kept),
                others,
            });
        }
    }

    fn system_of(&self, ticket: &TicketRef) -> Option<Arc<dyn TicketSystem>> {
        self.systems.get(&ticket.system).cloned()
    }

    async fn missing_record(&mut self, marker: &Marker, kept: &ListedTicket) -> MissingRecord {
        let mut entry = MissingRecord {
            marker: marker.clone(),
            ticket: TicketView::of_listed(kept),
            finding_id: None,
            team: None,
            rule: None,
            outcome: Outcome::NotRebuildable,
            reason: None,
        };
        let Some(system) = self.system_of(&kept.ticket) else {
            entry.reason = Some(format!(
                "connection {} is not configured",
                kept.ticket.system
            ));
            return entry;
        };
        let provenance = match system.provenance(&kept.ticket).await {
            Ok(ProvenanceRead::Found(p)) => p,
            Ok(ProvenanceRead::Missing) => {
                entry.reason = Some(
                    "the ticket carries no provenance (created before findings-bridge wrote it \
                     into its tickets): its finding and team cannot be told from the marker; the \
                     worker finds it by its marker when the finding comes again"
                        .to_owned(),
                );
                return entry;
            }
            Ok(ProvenanceRead::Unreadable(why)) => {
                entry.reason = Some(format!("its provenance cannot be read: {why}"));
                return entry;
            }
            Err(e) => {
                (entry.outcome, entry.reason) = failed(format!("reading its provenance: {e}"));
                return entry;
            }
        };
        entry.finding_id = Some(provenance.finding_id.clone());
        entry.team = Some(provenance.team.clone());
        entry.rule = Some(provenance.rule.clone());
        if provenance.marker() != *marker {
            entry.reason = Some(format!(
                "its provenance names another finding or team (marker {}): copied from another \
                 ticket?",
                provenance.marker()
            ));
            return entry;
        }
        let record = rebuilt(marker, provenance, kept);
        (entry.outcome, entry.reason) = if self.options.fix {
            self.adopt(&record).await
        } else {
            (Outcome::Planned, None)
        };
        entry
    }

    /// Stores `record` under the key's claim, only where nothing is stored: the team is enlisted
    /// on the finding first (as a create does), so a resolution that comes later finds the
    /// ticket even when routing no longer picks the team.
    async fn adopt(&mut self, record: &Record) -> Verdict {
        let marker = &record.marker;
        let (owner, claimed) = match self.claim(marker).await {
            Ok(claim) => claim,
            Err(verdict) => return verdict,
        };
        let verdict = if claimed.record.is_some() {
            conflict("a record was stored since the listing; it is kept")
        } else if claimed.intent.is_some() {
            conflict("a create is pending on this key; the worker settles it")
        } else if let Err(e) = self.store.enlist(&record.finding_id, &record.team).await {
            failed(format!("enlisting the team on the finding: {e}"))
        } else {
            match self.store.adopt(record, &owner).await {
                Ok(Adoption::Adopted) => return (Outcome::Done, None),
                Ok(Adoption::RecordExists) => conflict("a record was stored meanwhile; it is kept"),
                Ok(Adoption::CreatePending) => {
                    conflict("a create is pending on this key; the worker settles it")
                }
                Err(e) => failed(format!("storing the record: {e}")),
            }
        };
        self.release(marker, &owner).await;
        verdict
    }

    /// Closes `other` as a duplicate of `kept` through the connection's own way of finishing a
    /// ticket, after a comment that links the kept one (posted once, whatever the reruns).
    async fn close_duplicate(
        &mut self,
        marker: &Marker,
        kept: &TicketRef,
        other: &ListedTicket,
    ) -> Verdict {
        if !self.options.fix {
            return (Outcome::Planned, None);
        }
        let Some(system) = self.system_of(&other.ticket) else {
            return failed(format!(
                "connection {} is not configured",
                other.ticket.system
            ));
        };
        let text = format!(
            "Duplicate of {} ({}): findings-bridge follows that ticket for this finding and team. \
             Closed by findings-bridge reconcile.",
            kept.key, kept.url
        );
        let event = format!("closed-duplicate-of:{}", kept.id);
        if let Err(e) = comment_once_on(system.as_ref(), marker, &other.ticket, &event, &text).await
        {
            return failed(format!("commenting: {e}"));
        }
        match system
            .transition(&other.ticket, &TargetStatus::Done, &text)
            .await
        {
            Ok(()) => (Outcome::Done, None),
            Err(e) => failed(format!("closing: {e}")),
        }
    }

    /// Drops the record of a gone ticket under the key's claim, only while it still follows
    /// that ticket and no create is pending: the next event of its finding creates afresh.
    async fn drop_gone(&mut self, record: &Record) -> Verdict {
        let marker = &record.marker;
        let (owner, claimed) = match self.claim(marker).await {
            Ok(claim) => claim,
            Err(verdict) => return verdict,
        };
        let still = claimed
            .record
            .as_ref()
            .and_then(|r| r.ticket.as_ref())
            .zip(record.ticket.as_ref())
            .is_some_and(|(now, then)| same_ticket(now, then));
        let verdict = if !still {
            conflict("the record changed since it was read; it is kept")
        } else if claimed.intent.is_some() {
            conflict("a create is pending on this key; the worker settles it")
        } else {
            match self.store.drop_record(marker, &owner).await {
                Ok(true) => return (Outcome::Done, None),
                Ok(false) => conflict("a create is pending on this key; the worker settles it"),
                Err(e) => failed(format!("dropping the record: {e}")),
            }
        };
        self.release(marker, &owner).await;
        verdict
    }

    /// Claims `marker` for one store write of this run, as the lifecycle claims a key: the fresh
    /// owner and what the key holds, or why the key is left alone.
    async fn claim(&mut self, marker: &Marker) -> Result<(String, Claimed), Verdict> {
        let owner = self.next_owner();
        match self.store.claim(marker, &owner, self.options.lease).await {
            Ok(Claim::Acquired(claimed)) => Ok((owner, claimed)),
            Ok(Claim::Busy) => Err(conflict(
                "a worker holds this key; run reconcile again later",
            )),
            Err(e) => Err(failed(format!("claiming the key: {e}"))),
        }
    }

    async fn release(&self, marker: &Marker, owner: &str) {
        if let Err(e) = self.store.release(marker, owner).await {
            tracing::warn!(%marker, error = %e, "could not release a claim; it expires with its lease");
        }
    }
}
