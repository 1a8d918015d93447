//! SLA escalation (README, "SLA due dates and escalation"): the periodic loop that finds open
//! tickets past their due date in the store's records and escalates each breach once.
//!
//! - One replica scans: every replica runs [`Escalator::run`], and each tick only the holder of
//!   the store lease [`SLA_LEASE`] reads the records. It is a lease of its own rather than the
//!   status-sync lease, so the scan neither delays polls nor is abandoned with a poll whose lease
//!   renewal failed, and the poller's timing stays as documented.
//! - Each breach is handled once, whatever the lease does: a ticket is escalated under the
//!   record's claim (the lifecycle's per-marker lock, so the finding's own updates cannot
//!   interleave), the record is re-read under that claim, and `escalated_at` is written with
//!   the claim's conditional `put`. Two scanners (a lease that changed hands mid-scan) cannot both
//!   escalate: the second finds the breach recorded, or the key busy.
//! - A crash between the ticket calls and the `put` repeats them on the next pass: the field
//!   update and the added labels are idempotent, and the comment is posted once through
//!   [`comment_once_on`], whose reference is derived from the marker and the due date.
//! - A resolved finding, or a ticket the ticket system reports finished, is never escalated; the
//!   latter is recorded as handled so it is not asked about again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::mapping::sla::SlaState;
use crate::marker::Marker;
use crate::pipeline::lifecycle::comment_once_on;
use crate::runtime::shutdown::Shutdown;
use crate::runtime::telemetry;
use crate::store::{Claim, Record, Store, StoreError, SyncFields};
use crate::ticket::{FieldUpdate, TicketError, TicketRef, TicketSystem};

/// The store lease whose holder scans for breaches.
pub const SLA_LEASE: &str = "sla-escalation";

/// Records read per page of a scan.
const PAGE: usize = 200;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EscalationReport {
    /// Breaches escalated (and counted in `findings_bridge_sla_breaches_total`).
    pub escalated: usize,
    /// Breaches of tickets the ticket system reports finished: recorded, not escalated.
    pub closed: usize,
    /// Breaches left for the next pass (key busy, a ticket or store call failed).
    pub deferred: usize,
}

/// How one breach ended.
enum Handled {
    Escalated,
    Closed,
    /// Nothing to do any more (escalated meanwhile, resolved, due date moved) or key busy.
    Skipped,
}

#[derive(Debug, thiserror::Error)]
enum BreachError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ticket(#[from] TicketError),
    #[error("no ticket connection `{0}` is configured")]
    NoConnection(String),
}

/// The escalation loop of one process.
pub struct Escalator {
    store: Arc<dyn Store>,
    systems: HashMap<String, Arc<dyn TicketSystem>>,
    /// Time between two scans (the status sync's `BRIDGE_SYNC_INTERVAL`).
    interval: Duration,
    /// The scan lease and each record claim last this long (`BRIDGE_SYNC_LEASE`).
    lease: Duration,
    owner: String,
    next_unit: AtomicU64,
    /// When set, a tick scans only while some rule of the current set has `escalate`: without
    /// one there is nothing to do, and a scan reads every record.
    mappings: Option<crate::pipeline::plan::MappingsHandle>,
}

impl Escalator {
    pub fn new(
        store: Arc<dyn Store>,
        systems: HashMap<String, Arc<dyn TicketSystem>>,
        interval: Duration,
        lease: Duration,
        owner: impl Into<String>,
    ) -> Escalator {
        Escalator {
            store,
            systems,
            interval,
            lease,
            owner: format!("sla:{}", owner.into()),
            next_unit: AtomicU64::new(0),
            mappings: None,
        }
    }

    /// Scans only while the mapping set `mappings` holds (it follows reloads) has a rule with
    /// `escalate`.
    pub fn with_mappings(mut self, mappings: crate::pipeline::plan::MappingsHandle) -> Escalator {
        self.mappings = Some(mappings);
        self
    }

    fn anything_escalates(&self) -> bool {
        self.mappings
            .as_ref()
            .is_none_or(|m| m.current().rules.iter().any(|r| r.escalate.is_some()))
    }

    /// Until `shutdown`: every interval, scans when this replica holds (or takes) [`SLA_LEASE`].
    /// A scan in progress is dropped on shutdown; that is safe for the reasons in the module
    /// documentation.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                () = self.tick() => {}
            }
            tokio::select! {
                _ = shutdown.wait() => break,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
        if let Err(e) = self.store.release_lease(SLA_LEASE, &self.owner).await {
            tracing::debug!(error = %e, "could not release the SLA lease; it runs out by itself");
        }
    }

    /// One tick: take the lease, then scan within it.
    async fn tick(&self) {
        if !self.anything_escalates() {
            return;
        }
        match self
            .store
            .acquire_lease(SLA_LEASE, &self.owner, self.lease)
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::debug!("another replica holds the SLA lease and scans");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not take the SLA lease; trying again next interval");
                return;
            }
        }
        // Stop scanning before the lease could run out; the next tick goes on.
        let budget = self.lease * 3 / 4;
        let now = chrono::Utc::now().timestamp();
        match tokio::time::timeout(budget, self.pass(now)).await {
            Ok(Ok(report)) if report != EscalationReport::default() => {
                tracing::info!(
                    escalated = report.escalated,
                    closed = report.closed,
                    deferred = report.deferred,
                    "SLA breaches handled"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "reading the store for SLA breaches failed"),
            Err(_) => {
                tracing::warn!("the SLA scan did not finish within its lease; the next one goes on")
            }
        }
    }

    /// One scan at `now` (unix seconds): every record whose open ticket is past its due date
    /// and whose breach is not handled yet is escalated. Reads the store page by page.
    pub async fn pass(&self, now: i64) -> Result<EscalationReport, StoreError> {
        let mut report = EscalationReport::default();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.store.records_page(cursor.as_deref(), PAGE).await?;
            for record in page.records.iter().filter(|r| breached(r, now)) {
                match self.handle(&record.marker, now).await {
                    Ok(Handled::Escalated) => report.escalated += 1,
                    Ok(Handled::Closed) => report.closed += 1,
                    Ok(Handled::Skipped) => {}
                    Err(e) => {
                        report.deferred += 1;
                        tracing::warn!(marker = %record.marker, team = %record.team, error = %e, "SLA escalation failed; retried at the next scan");
                    }
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(report),
            }
        }
    }

    /// Escalates one breach under the record's claim.
    async fn handle(&self, marker: &Marker, now: i64) -> Result<Handled, BreachError> {
        let unit = self.next_unit.fetch_add(1, Ordering::Relaxed);
        let owner = format!("{}:{unit}", self.owner);
        let claimed = match self.store.claim(marker, &owner, self.lease).await? {
            Claim::Busy => return Ok(Handled::Skipped),
            Claim::Acquired(claimed) => claimed,
        };
        let result = self.escalate(claimed.record, &owner, now).await;
        if !matches!(result, Ok(Handled::Escalated | Handled::Closed)) {
            // Nothing written: let the finding's own work (or the next scan) have the key.
            if let Err(e) = self.store.release(marker, &owner).await {
                tracing::debug!(%marker, error = %e, "releasing an SLA claim failed; it runs out");
            }
        }
        result
    }

    async fn escalate(
        &self,
        record: Option<Record>,
        owner: &str,
        now: i64,
    ) -> Result<Handled, BreachError> {
        // Re-read under the claim: the finding may have resolved or moved since the scan read it.
        let Some(mut record) = record.filter(|r| breached(r, now)) else {
            return Ok(Handled::Skipped);
        };
        let (Some(ticket), Some(sla)) = (record.ticket.clone(), record.sla.clone()) else {
            return Ok(Handled::Skipped);
        };
        let system = self
            .systems
            .get(&ticket.system)
            .ok_or_else(|| BreachError::NoConnection(ticket.system.clone()))?;
        let handled = if system.status(&ticket).await?.done {
            Handled::Closed
        } else {
            act(system.as_ref(), &record.marker, &ticket, &sla).await?;
            Handled::Escalated
        };
        record.sla = Some(SlaState {
            escalated_at: Some(now),
            ..sla
        });
        record.modified_at = now;
        self.store.put(&record, owner, SyncFields::Keep).await?;
        if matches!(handled, Handled::Escalated) {
            telemetry::sla_breach(&record.team);
            tracing::info!(team = %record.team, ticket = %ticket.key, due_at = sla.due_at, "SLA breached: ticket escalated");
        }
        Ok(handled)
    }
}

/// The rule's `escalate`, as rendered for the finding: one field update (priority, notify
/// fields, labels), then the comment.
async fn act(
    system: &dyn TicketSystem,
    marker: &Marker,
    ticket: &TicketRef,
    sla: &SlaState,
) -> Result<(), TicketError> {
    let Some(escalation) = &sla.escalation else {
        return Ok(());
    };
    if !escalation.fields.is_empty() || !escalation.labels.is_empty() {
        let update = FieldUpdate {
            fields: escalation.fields.clone(),
            add_labels: escalation.labels.clone(),
        };
        system.update_fields(ticket, &update).await?;
    }
    if let Some(text) = &escalation.comment {
        let event = format!("sla-breach:{}", sla.due_at);
        comment_once_on(system, marker, ticket, &event, text).await?;
    }
    Ok(())
}

/// The record's open ticket is past its due date and the breach is not handled yet.
fn breached(record: &Record, now: i64) -> bool {
    !record.finding_resolved
        && !record.closed_by_bridge
        && record.ticket.is_some()
        && record
            .sla
            .as_ref()
            .is_some_and(|s| s.escalated_at.is_none() && s.due_at <= now)
}
