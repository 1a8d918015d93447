//! Dedup and lifecycle: exactly one ticket per (finding, team) under at-least-once delivery, and
//! that ticket follows the finding — severity changes, resolution, recurrence.
//!
//! Every piece of work on a (finding, team) runs under a store claim (a lease, renewed while the
//! work runs, fenced by a per-work owner id). The claim is what prevents duplicate tickets when
//! the same finding reaches several workers at once; searching the ticket system for the marker
//! is the backstop for a ticket created just before a crash. The store record is written last,
//! and the SQS message is deleted only after that, so a crash at any point means redelivery and a
//! retry that finds either the record or the ticket.
//!
//! Unknown outcomes are the normal case. A create is preceded by an [`Intent`] in the store and
//! sent at most once; when its answer is lost (timeout, cut connection, 5xx), the intent stays,
//! the message comes back after the connection's settle time, and whoever holds the claim then
//! searches for the marker — now trustworthy — before it creates anything. Comments carry a
//! reference derived from the event and are looked for before they are posted again.
//!
//! Order does not matter either: a resolution raises the finding's tombstone in the store before
//! it reads which teams are enlisted, and a create enlists its team under its claim before it
//! reads the tombstone, so an older active event that arrives after the resolution opens nothing.
//!
//! Routing and rendering live behind [`Planner`]; the lifecycle only decides what to do with the
//! tickets the planner asks for and the tickets that already exist.

mod claims;
mod create;
mod error;
mod freshness;
mod group;
mod outcome;
mod pause;
mod planner;
mod recorded;
mod update;
mod vouch;
mod writeback;

use claims::Held;
pub use error::LifecycleError;
use error::team_of;
pub use freshness::fingerprint;
use freshness::{is_stale, newer, parse_time, state_text};
use outcome::count_action;
pub use outcome::{Action, Outcome, TeamOutcome};
pub use planner::{
    GroupTicket, PlanError, PlanFailure, PlannedTicket, Planner, RuleOptions, SeverityRefresh,
};
pub use vouch::{MarkerSearch, VOUCHED_SINCE};
use writeback::{PendingWrite, notified};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::aws::securityhub::{FindingWriter, WorkflowUpdate};
use crate::finding::{Finding, Severity, WorkflowStatus};
use crate::mapping::sla::{SlaState, carry_breach};
use crate::mapping::spec::{OnRecurrence, OnResolved};
use crate::marker::Marker;
use crate::pipeline::health::{Health, Probe, Subject};
use crate::retry::Retryable;
use crate::runtime::telemetry::{self, DedupKind, WritebackResult};
use crate::store::{Claim, Claimed, FindingState, Intent, Record, Store, StoreError, SyncFields};
use crate::ticket::provenance::Provenance;
use crate::ticket::{FieldUpdate, FoundTicket, TargetStatus, TicketError, TicketRef, TicketSystem};

/// Default claim lease: long enough for a create with retries, short enough that a killed
/// worker's findings are picked up again within a minute or two.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The dedup/lifecycle engine. One per process; cheap to share behind an `Arc`.
pub struct Lifecycle {
    store: Arc<dyn Store>,
    tickets: HashMap<String, Arc<dyn TicketSystem>>,
    writer: Arc<dyn FindingWriter>,
    planner: Arc<dyn Planner>,
    owner_id: String,
    lease: Duration,
    next_work: AtomicU64,
    /// Claims taken by work that has not finished yet, by owner. Work that is aborted (shutdown)
    /// leaves its entry behind, so [`Lifecycle::release_abandoned`] can hand the leases back
    /// instead of making the next delivery wait for them to expire. Releasing keeps intents,
    /// so an aborted create is still searched for before anything is created again.
    held: Mutex<HashMap<String, Marker>>,
    /// Amazon Detective enrichment for rules with `enrich = { detective = true }`.
    investigator: Option<Arc<crate::aws::detective::Investigator>>,
    /// Where enrichments run after their ticket work is done; shutdown waits for them.
    tasks: crate::runtime::tasks::Tasks,
    /// Whether creates search for the marker first ([`MarkerSearch`]).
    marker_search: MarkerSearch,
    /// The store's start of use, once read ([`vouch`]).
    vouched_since: std::sync::OnceLock<i64>,
    /// Paused connections and rules: their work is not attempted.
    health: Arc<Health>,
    /// One local queue per group being worked on, so the findings of one group in this process
    /// take the group's claim in turn instead of finding it busy ([`group`]).
    group_turns: Mutex<HashMap<Marker, Arc<tokio::sync::Mutex<()>>>>,
}

/// The store's name in [`Health`].
pub const STORE_CONNECTION: &str = "store";

/// Security Hub write-back's name in [`Health`].
pub const SECURITY_HUB_CONNECTION: &str = "securityhub";

impl Lifecycle {
    /// `owner_id` names this process; each unit of work gets its own owner under it
    /// (`<owner_id>:<n>`), so two tasks of one process exclude each other too, and an owner is
    /// never reused: it fences every write of its work.
    pub fn new(
        store: Arc<dyn Store>,
        tickets: HashMap<String, Arc<dyn TicketSystem>>,
        writer: Arc<dyn FindingWriter>,
        planner: Arc<dyn Planner>,
        owner_id: impl Into<String>,
    ) -> Lifecycle {
        Lifecycle {
            store,
            tickets,
            writer,
            planner,
            owner_id: owner_id.into(),
            lease: DEFAULT_LEASE,
            next_work: AtomicU64::new(0),
            held: Mutex::new(HashMap::new()),
            investigator: None,
            tasks: crate::runtime::tasks::Tasks::new(),
            marker_search: MarkerSearch::default(),
            vouched_since: std::sync::OnceLock::new(),
            health: Arc::new(Health::new()),
            group_turns: Mutex::new(HashMap::new()),
        }
    }

    /// Shares the process's health registry (the worker parks, `/readyz` reports, the prober
    /// resumes what this lifecycle pauses).
    pub fn with_health(mut self, health: Arc<Health>) -> Lifecycle {
        self.health = health;
        self
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Whether creates search for the marker first (default: always).
    pub fn with_marker_search(mut self, marker_search: MarkerSearch) -> Lifecycle {
        self.marker_search = marker_search;
        self
    }

    /// Background work (Detective enrichment) goes into `tasks`, which shutdown drains.
    pub fn with_tasks(mut self, tasks: crate::runtime::tasks::Tasks) -> Lifecycle {
        self.tasks = tasks;
        self
    }

    /// Enables Detective enrichment (for the rules that ask for it).
    pub fn with_investigator(
        mut self,
        investigator: Option<Arc<crate::aws::detective::Investigator>>,
    ) -> Lifecycle {
        self.investigator = investigator;
        self
    }

    pub fn with_lease(mut self, lease: Duration) -> Lifecycle {
        self.lease = lease;
        self
    }

    pub fn with_owner_id(mut self, owner_id: impl Into<String>) -> Lifecycle {
        self.owner_id = owner_id.into();
        self
    }

    /// Follows one finding: creates the tickets routing asks for, and moves every existing
    /// ticket of the finding along with it. Teams are independent: each route's failure is
    /// reported in [`Outcome::failures`] and the others go ahead; finished teams are no-ops when
    /// the message is retried.
    pub async fn process(&self, finding: &Finding) -> Outcome {
        let mut outcome = Outcome {
            finding_id: finding.id.clone(),
            teams: Vec::new(),
            failures: Vec::new(),
        };
        let mut planned = Vec::new();
        for route in self.planner.plan(finding) {
            match route {
                Ok(ticket) => planned.push(ticket),
                Err(failure) => outcome.failures.push(LifecycleError::Plan {
                    team: failure.team,
                    rule: failure.rule,
                    error: failure.error,
                }),
            }
        }

        let store = Subject::Connection(STORE_CONNECTION.to_owned());
        if let Some(reason) = self.health.paused(&store) {
            outcome.failures.push(LifecycleError::Paused {
                team: Arc::from("*"),
                subject: store,
                reason,
            });
            return outcome;
        }
        // A resolution raises the tombstone before it reads the teams; anything else reads them.
        let resolution_time = finding
            .updated_at
            .as_deref()
            .filter(|at| crate::store::rfc3339_millis(at).is_some());
        let index = match (finding.is_resolved(), resolution_time) {
            (true, Some(at)) => self.store.resolve(&finding.id, at).await,
            _ => self.store.finding(&finding.id).await,
        };
        let index = match index {
            Ok(index) => index,
            Err(e) => {
                outcome
                    .failures
                    .push(self.blame(LifecycleError::Index(e), None));
                return outcome;
            }
        };

        let mut writes = Vec::new();
        let mut results = Vec::new();
        let planned_teams: HashSet<&str> = planned.iter().map(|p| &*p.team).collect();
        for ticket in &planned {
            results.push(
                self.follow(
                    &ticket.team,
                    &ticket.marker,
                    finding,
                    Some(ticket),
                    &mut writes,
                )
                .await,
            );
        }
        // Teams that routing did not pick this time but that hold (or are making) a ticket:
        // followed under their claim, so one whose create is in flight elsewhere is retried
        // rather than missed.
        let mut others: Vec<Arc<str>> = Vec::new();
        let mut unindexed: Vec<Arc<str>> = Vec::new();
        for team in self.planner.teams() {
            if planned_teams.contains(&*team) {
                continue;
            }
            if index.indexed {
                if index.teams.iter().any(|t| **t == *team) {
                    others.push(team);
                }
                continue;
            }
            // A finding the index has not seen (first sight, or recorded before the index
            // existed): only a stored record can name a ticket here.
            unindexed.push(team);
        }
        others.extend(
            self.recorded_teams(&finding.id, unindexed, &mut outcome.failures)
                .await,
        );
        for team in &others {
            let marker = Marker::new(team, &finding.id);
            results.push(self.follow(team, &marker, finding, None, &mut writes).await);
        }
        for result in results {
            match result {
                Ok(Some(team)) => outcome.teams.push(team),
                Ok(None) => {}
                Err(e) => outcome.failures.push(e),
            }
        }

        self.write_back(finding, writes).await;

        for team in &outcome.teams {
            let system = team
                .ticket
                .as_ref()
                .map_or("unknown", |t| t.system.as_str());
            for action in &team.actions {
                count_action(action, system, &team.team, finding);
            }
            tracing::info!(
                finding_id = %finding.id,
                team = %team.team,
                marker = %team.marker,
                ticket = team.ticket.as_ref().map(|t| t.key.as_str()),
                actions = ?team.actions.iter().map(Action::as_str).collect::<Vec<_>>(),
                "finding followed"
            );
        }
        outcome
    }

    /// Releases the claims of work that was dropped before finishing (shutdown aborts). Intents
    /// stay: a create that may have left is searched for by the next holder. Returns how many
    /// were released. Call only when no work is running any more.
    pub async fn release_abandoned(&self) -> usize {
        let abandoned: Vec<(String, Marker)> = match self.held.lock() {
            Ok(mut held) => held.drain().collect(),
            Err(poisoned) => poisoned.into_inner().drain().collect(),
        };
        let mut released = 0;
        for (owner, marker) in abandoned {
            match self.store.release(&marker, &owner).await {
                Ok(()) => released += 1,
                Err(e) => {
                    tracing::warn!(%marker, error = %e, "could not release an abandoned claim; it expires with its lease")
                }
            }
        }
        released
    }

    /// The claim lease; held claims are renewed every third of it while their work runs.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Claims (team, finding), does the work with the lease kept alive, and always gives the
    /// claim back: through `put` when state changed, `release` otherwise (which keeps any
    /// intent), best-effort `release` on error.
    async fn follow(
        &self,
        team: &Arc<str>,
        marker: &Marker,
        finding: &Finding,
        planned: Option<&PlannedTicket>,
        writes: &mut Vec<PendingWrite>,
    ) -> Result<Option<TeamOutcome>, LifecycleError> {
        if let Some(p) = planned {
            self.check_paused(team, &p.target, &p.rule)?;
        }
        let result = self
            .under_claim(team, marker, async |held, claimed| {
                self.decide(held, finding, planned, claimed, writes).await
            })
            .await;
        if let Err(e) = &result
            && !matches!(e, LifecycleError::Busy { .. })
        {
            tracing::warn!(finding_id = %finding.id, team = %team, error = %e, transient = e.is_transient(), "ticket work failed");
        }
        result.map_err(|e| self.blame(e, planned))
    }

    /// Takes the claim on `marker` under a new owner, runs `work` with the lease renewed until it
    /// ends, and releases the claim (best effort) when the work fails; the work itself hands a
    /// successful claim back (`put` or `release`). [`LifecycleError::Busy`] when another unit of
    /// work holds it.
    async fn under_claim<T>(
        &self,
        team: &Arc<str>,
        marker: &Marker,
        work: impl AsyncFnOnce(&Held<'_>, Claimed) -> Result<T, LifecycleError>,
    ) -> Result<T, LifecycleError> {
        let owner = format!(
            "{}:{}",
            self.owner_id,
            self.next_work.fetch_add(1, Ordering::Relaxed)
        );
        // Registered before the claim call: an abort while it is in flight still gets released.
        self.hold(&owner, marker);
        let held = Held {
            team,
            marker,
            owner,
        };
        let result = match self.store.claim(marker, &held.owner, self.lease).await {
            Err(source) => Err(LifecycleError::Store {
                team: team.clone(),
                source,
            }),
            Ok(Claim::Busy) => Err(LifecycleError::Busy {
                team: team.clone(),
                marker: marker.clone(),
            }),
            Ok(Claim::Acquired(claimed)) => {
                let work = work(&held, claimed);
                let work = tokio::select! {
                    result = work => result,
                    () = self.keep_lease(marker, &held.owner) => unreachable!("keep_lease never returns"),
                };
                if let Err(e) = &work {
                    if let Err(release) = self.store.release(marker, &held.owner).await {
                        tracing::warn!(%marker, error = %release, "could not release the claim after an error; it expires with its lease");
                    }
                    if let LifecycleError::Store {
                        source: StoreError::LostClaim(_),
                        ..
                    } = e
                    {
                        telemetry::claim_lost("write");
                    }
                }
                work
            }
        };
        self.unhold(&held.owner);
        result
    }

    async fn decide(
        &self,
        held: &Held<'_>,
        finding: &Finding,
        planned: Option<&PlannedTicket>,
        claimed: Claimed,
        writes: &mut Vec<PendingWrite>,
    ) -> Result<Option<TeamOutcome>, LifecycleError> {
        let Claimed { record, intent } = claimed;
        match (record, planned) {
            (Some(record), planned) if record.ticket.is_some() => {
                if let Some(crate::store::Grouping::Member { key, marker }) = record.group.clone() {
                    return self
                        .follow_member(held, finding, planned, record, &key, &marker, writes)
                        .await
                        .map(Some);
                }
                self.update(held, finding, planned, record, intent, writes)
                    .await
                    .map(Some)
            }
            (_, Some(planned)) if planned.group.is_some() => self
                .join_group(held, finding, planned, intent, writes)
                .await
                .map(Some),
            (_, Some(planned)) => self
                .create(held, finding, planned, intent, writes)
                .await
                .map(Some),
            (_, None) if intent.is_some() => {
                // Enlisted elsewhere with a create whose outcome nobody recorded, and routing
                // no longer picks this team: nothing to render a ticket from, so wait for the
                // search to become trustworthy and adopt what it finds.
                self.adopt(held, finding, intent, writes).await
            }
            (_, None) => {
                self.release(held).await?;
                Ok(Some(TeamOutcome {
                    team: held.team.clone(),
                    marker: held.marker.clone(),
                    actions: vec![Action::Untracked],
                    ticket: None,
                }))
            }
        }
    }

    fn system(
        &self,
        team: &Arc<str>,
        target: &str,
    ) -> Result<&Arc<dyn TicketSystem>, LifecycleError> {
        self.tickets
            .get(target)
            .ok_or_else(|| LifecycleError::NoConnection {
                team: team.clone(),
                target: target.to_owned(),
            })
    }
}

/// Unix milliseconds now (intents are compared across replicas, so wall-clock time).
fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The reference a bridge comment carries, derived from the marker and the event that causes
/// it, so a retry of the same event (in any process) recognises its own earlier comment.
pub fn comment_reference(marker: &Marker, event: &str) -> String {
    let digest = Sha256::digest(format!("{marker}\n{event}").as_bytes());
    format!("fbc-{}", hex::encode(&digest[..6]))
}

/// Posts `text` on `ticket` unless an earlier attempt for the same `event` already did: the
/// comment ends with [`comment_reference`], looked for first (comments are read from the ticket
/// itself, which is consistent); the post is sent at most once. The lifecycle's comments and
/// `reconcile`'s go through here.
pub async fn comment_once_on(
    system: &dyn TicketSystem,
    marker: &Marker,
    ticket: &TicketRef,
    event: &str,
    text: &str,
) -> Result<(), TicketError> {
    let reference = comment_reference(marker, event);
    if system.has_comment(ticket, &reference).await? {
        tracing::debug!(ticket = %ticket.key, reference, "comment already posted");
        return Ok(());
    }
    let body = format!("{text}\n\n(findings-bridge {reference})");
    system.comment(ticket, &body).await
}

/// Of the tickets carrying one marker, oldest first, the one the bridge follows: the oldest live
/// one, else the newest finished one. The lifecycle's marker search and `reconcile` choose alike.
pub fn followed<T>(candidates: &[T], done: impl Fn(&T) -> bool) -> Option<&T> {
    candidates.iter().find(|c| !done(c)).or(candidates.last())
}

/// An active finding at or before the time its resolution was recorded is stale: the
/// resolution is newer news, whatever order the two arrived in.
fn covered_by_tombstone(finding: &Finding, state: &FindingState) -> bool {
    match (
        finding.updated_at_time(),
        state.resolved_at.as_deref().and_then(parse_time),
    ) {
        (Some(active), Some(resolved)) => active <= resolved,
        _ => false,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod context_tests;

#[cfg(test)]
mod fault_tests;

#[cfg(test)]
mod group_tests;
