//! Dedup and lifecycle: exactly one ticket per (finding, team) under at-least-once delivery, and
//! that ticket follows the finding — severity changes, resolution, recurrence.
//!
//! Every piece of work on a (finding, team) runs under a store claim (a lease). The claim is what
//! prevents duplicate tickets when the same finding reaches several workers at once; searching the
//! ticket system for the marker is the backstop for a ticket created just before a crash. The
//! store record is written last, and the SQS message is deleted only after that, so a crash at any
//! point means redelivery and a retry that finds either the record or the ticket.
//!
//! Routing and rendering live behind [`Planner`]; the lifecycle only decides what to do with the
//! tickets the planner asks for and the tickets that already exist.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::finding::{Finding, Severity, WorkflowStatus};
use crate::mapping::spec::{OnRecurrence, OnResolved};
use crate::marker::Marker;
use crate::securityhub::{FindingWriter, WorkflowUpdate};
use crate::store::{Claim, Record, Store, StoreError};
use crate::telemetry::{self, DedupKind, WritebackResult};
use crate::ticket::{FieldUpdate, TargetStatus, TicketError, TicketRef, TicketSystem};

/// Default claim lease: long enough for a create with retries, short enough that a killed
/// worker's findings are picked up again within a minute or two.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// Why a finding cannot be planned. Permanent: the same finding and mapping files give the same
/// error (a template that fails on this finding, a rule pointing at an unknown connection).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlanError {
    pub message: String,
}

impl PlanError {
    pub fn new(message: impl Into<String>) -> PlanError {
        PlanError {
            message: message.into(),
        }
    }
}

/// The lifecycle options of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleOptions {
    pub on_resolved: OnResolved,
    pub on_recurrence: OnRecurrence,
    pub notify_on_create: bool,
    /// Investigate with Amazon Detective after creating the ticket (when configured).
    pub enrich_detective: bool,
}

impl Default for RuleOptions {
    /// What a rule gets when it says nothing — and what a ticket gets whose rule was deleted
    /// since: close on resolution, reopen on recurrence, tell Security Hub about new tickets.
    fn default() -> Self {
        RuleOptions {
            on_resolved: OnResolved::Close,
            on_recurrence: OnRecurrence::Reopen,
            notify_on_create: true,
            enrich_detective: false,
        }
    }
}

/// One ticket that routing wants for a finding now: the team, the rule that picked it, and the
/// exact request body to create it with.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTicket {
    pub team: Arc<str>,
    pub rule: Arc<str>,
    /// Connection name (`jira`, `servicenow`): the key of `Lifecycle`'s ticket systems.
    pub target: String,
    pub marker: Marker,
    /// The create request body, as `render` builds it.
    pub payload: serde_json::Value,
    /// ServiceNow table of the rule; `None` for Jira.
    pub table: Option<String>,
    /// Effective severity (after `severity_override`).
    pub severity: Severity,
    /// Why `severity` differs from the finding's own (`RenderedTicket::severity_note`: the rule
    /// and the application); written back to Security Hub with the new severity.
    pub severity_note: Option<String>,
    /// The fields that carry severity on the ticket (Jira `priority`, ServiceNow
    /// `urgency`/`impact`), rendered for this finding; sent on a severity change.
    pub severity_fields: serde_json::Map<String, serde_json::Value>,
    pub options: RuleOptions,
}

/// Severity as a rule that still matches would render it today.
#[derive(Debug, Clone, PartialEq)]
pub struct SeverityRefresh {
    pub severity: Severity,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// Routing and rendering, as the lifecycle needs them.
pub trait Planner: Send + Sync {
    /// Routes and renders: one [`PlannedTicket`] per team the routing picks now.
    fn plan(&self, finding: &Finding) -> Result<Vec<PlannedTicket>, PlanError>;

    /// Every team that has a mapping file, so that tickets of teams routing no longer picks are
    /// still found (their marker is derived from team and finding id).
    fn teams(&self) -> Vec<Arc<str>>;

    /// Lifecycle options of a stored rule; `None` when the rule no longer exists (defaults apply).
    fn rule_options(&self, team: &str, rule: &str) -> Option<RuleOptions>;

    /// Re-renders the severity fields of an existing ticket whose team routing did not pick this
    /// time, when that rule's criteria still match the finding; `None` otherwise (the ticket's
    /// severity is then left as it is — routing decides where tickets go, not a stale rule).
    fn severity_refresh(
        &self,
        team: &str,
        rule: &str,
        finding: &Finding,
    ) -> Result<Option<SeverityRefresh>, PlanError>;
}

/// Counts one lifecycle action under the named series operators alert on.
fn count_action(action: &Action, system: &str, team: &str, finding: &Finding) {
    match action {
        Action::Created | Action::Replaced { .. } => telemetry::ticket_created(system, team),
        Action::Recovered => telemetry::dedup_hit(DedupKind::Recovered),
        Action::SeverityChanged { .. } => telemetry::ticket_updated(system, team),
        Action::Closed => telemetry::ticket_closed(system, team),
        Action::Reopened => telemetry::ticket_reopened(system, team),
        Action::Noop => {
            telemetry::dedup_hit(DedupKind::Noop);
            // Same fingerprint with a workflow status other than NEW: the "Imported" event
            // Security Hub emits after a write-back (ours, or a person's in the console).
            if finding.workflow_status != WorkflowStatus::New {
                telemetry::echo_noop();
            }
        }
        Action::Stale => telemetry::dedup_hit(DedupKind::Stale),
        Action::ResolutionCommented
        | Action::ResolutionIgnored
        | Action::RecurrenceCommented
        | Action::SkippedResolved => {}
    }
}

/// What the lifecycle did for one team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A new ticket was created.
    Created,
    /// A ticket carrying the marker already existed (created before a crash); no create.
    Recovered,
    /// Severity fields updated and a comment added.
    SeverityChanged { from: String, to: Severity },
    /// Resolved: commented and moved to done (`on_resolved = close`).
    Closed,
    /// Resolved: commented only (`on_resolved = comment`).
    ResolutionCommented,
    /// Resolved: nothing done on the ticket (`on_resolved = ignore`).
    ResolutionIgnored,
    /// Active again: the closed ticket was reopened.
    Reopened,
    /// Active again: a new ticket replaced the closed one (`on_recurrence = new`).
    Replaced { previous: TicketRef },
    /// Active again while the ticket was still open: a comment says so.
    RecurrenceCommented,
    /// Nothing on the ticket changed (same fingerprint, or only untracked fields changed).
    Noop,
    /// An older version than the one already processed: ignored.
    Stale,
    /// The finding is already resolved and has no ticket for this team: none is created.
    SkippedResolved,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Recovered => "recovered",
            Action::SeverityChanged { .. } => "updated",
            Action::Closed => "closed",
            Action::ResolutionCommented => "resolution_commented",
            Action::ResolutionIgnored => "resolution_ignored",
            Action::Reopened => "reopened",
            Action::Replaced { .. } => "replaced",
            Action::RecurrenceCommented => "recurrence_commented",
            Action::Noop => "noop",
            Action::Stale => "stale",
            Action::SkippedResolved => "skipped_resolved",
        }
    }
}

/// The result for one (finding, team).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamOutcome {
    pub team: Arc<str>,
    pub marker: Marker,
    /// In the order they happened (a recurrence can also change severity).
    pub actions: Vec<Action>,
    /// The ticket the record points at afterwards.
    pub ticket: Option<TicketRef>,
}

/// What [`Lifecycle::process`] did for one finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub finding_id: String,
    pub teams: Vec<TeamOutcome>,
}

impl Outcome {
    /// No team routed the finding and no team had a ticket for it: acknowledged, counted.
    pub fn is_unrouted(&self) -> bool {
        self.teams.is_empty()
    }

    /// The outcome of `team`, if it was involved.
    pub fn team(&self, team: &str) -> Option<&TeamOutcome> {
        self.teams.iter().find(|t| &*t.team == team)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("team {team}: {source}")]
    Ticket {
        team: Arc<str>,
        #[source]
        source: TicketError,
    },
    #[error("team {team}: {source}")]
    Store {
        team: Arc<str>,
        #[source]
        source: StoreError,
    },
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// Another worker is working on this (finding, team) right now; try again later.
    #[error("team {team}: {marker} is being worked on by another worker")]
    Busy { team: Arc<str>, marker: Marker },
    /// The rule or record names a ticket connection that is not configured.
    #[error("team {team}: no ticket connection named {target:?}")]
    NoConnection { team: Arc<str>, target: String },
}

impl LifecycleError {
    /// Transient: leave the message and let it come back. Permanent: dead-letter it.
    pub fn is_transient(&self) -> bool {
        match self {
            LifecycleError::Ticket { source, .. } => source.is_transient(),
            LifecycleError::Store { source, .. } => source.is_transient(),
            LifecycleError::Busy { .. } => true,
            LifecycleError::Plan(_) | LifecycleError::NoConnection { .. } => false,
        }
    }

    /// Stable error kind for DLQ attributes and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            LifecycleError::Ticket { .. } => "ticket",
            LifecycleError::Store { .. } => "store",
            LifecycleError::Plan(_) => "render",
            LifecycleError::Busy { .. } => "busy",
            LifecycleError::NoConnection { .. } => "config",
        }
    }
}

/// Hash of what the ticket reflects: effective severity, record state, compliance status. Not
/// the workflow status: the bridge's own write-back changes it, and the "Imported" event that
/// write-back causes must be a no-op.
pub fn fingerprint(severity: Severity, finding: &Finding) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"fb-fingerprint-v1\n");
    hasher.update(severity.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(finding.record_state.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(
        finding
            .compliance
            .status
            .as_deref()
            .unwrap_or("-")
            .as_bytes(),
    );
    hex::encode(&hasher.finalize()[..16])
}

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
    /// instead of making the next delivery wait for them to expire.
    held: Mutex<HashMap<String, Marker>>,
    /// Amazon Detective enrichment for rules with `enrich = { detective = true }`.
    investigator: Option<Arc<crate::detective::Investigator>>,
}

/// A workflow update waiting to be written, with what to record once it is.
struct PendingWrite {
    marker: Marker,
    status_from_ticket: Option<String>,
    status: Option<WorkflowStatus>,
    severity: Option<Severity>,
    note: String,
}

/// A claim held by one unit of work.
struct Held<'a> {
    team: &'a Arc<str>,
    marker: &'a Marker,
    owner: String,
}

impl Lifecycle {
    /// `owner_id` names this process (e.g. `hostname:pid`); each unit of work gets its own owner
    /// under it, so two tasks of one process exclude each other too.
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
        }
    }

    /// Enables Detective enrichment (for the rules that ask for it).
    pub fn with_investigator(
        mut self,
        investigator: Option<Arc<crate::detective::Investigator>>,
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
    /// ticket of the finding along with it. Teams are independent: one team's failure does not
    /// stop the others, but the finding reports an error (permanent over transient) so the
    /// message is retried or dead-lettered; finished teams are no-ops on the retry.
    pub async fn process(&self, finding: &Finding) -> Result<Outcome, LifecycleError> {
        let planned = self.planner.plan(finding)?;
        let mut outcome = Outcome {
            finding_id: finding.id.clone(),
            teams: Vec::new(),
        };
        let mut writes = Vec::new();
        let mut errors = Vec::new();

        let planned_teams: HashSet<&str> = planned.iter().map(|p| &*p.team).collect();
        for ticket in &planned {
            match self
                .follow(
                    &ticket.team,
                    &ticket.marker,
                    finding,
                    Some(ticket),
                    &mut writes,
                )
                .await
            {
                Ok(Some(team)) => outcome.teams.push(team),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        for team in self.planner.teams() {
            if planned_teams.contains(&*team) {
                continue;
            }
            let marker = Marker::new(&team, &finding.id);
            match self.store.get(&marker).await {
                Ok(None) => continue,
                Ok(Some(_)) => {}
                Err(source) => {
                    errors.push(LifecycleError::Store {
                        team: team.clone(),
                        source,
                    });
                    continue;
                }
            }
            match self
                .follow(&team, &marker, finding, None, &mut writes)
                .await
            {
                Ok(Some(t)) => outcome.teams.push(t),
                Ok(None) => {}
                Err(e) => errors.push(e),
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
        let worst = errors
            .iter()
            .position(|e| !e.is_transient())
            .or(if errors.is_empty() { None } else { Some(0) });
        match worst {
            Some(i) => Err(errors.swap_remove(i)),
            None => Ok(outcome),
        }
    }

    /// Releases the claims of work that was dropped before finishing (shutdown aborts). Returns
    /// how many were released. Call only when no work is running any more.
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

    /// Renews the lease of every claim held by unfinished work, so a ticket system that takes
    /// longer than the lease (retries, rate limits) does not let another worker in mid-create.
    /// Call periodically (every third of the lease).
    pub async fn renew_claims(&self) {
        let held: Vec<(String, Marker)> = match self.held.lock() {
            Ok(held) => held.iter().map(|(o, m)| (o.clone(), m.clone())).collect(),
            Err(poisoned) => poisoned
                .into_inner()
                .iter()
                .map(|(o, m)| (o.clone(), m.clone()))
                .collect(),
        };
        for (owner, marker) in held {
            match self.store.claim(&marker, &owner, self.lease).await {
                Ok(Claim::Acquired(_)) => {
                    // The work may have finished (put/release) while we renewed: then this
                    // renewal took a fresh lease nobody will release, so give it back.
                    if !self.is_held(&owner)
                        && let Err(e) = self.store.release(&marker, &owner).await
                    {
                        tracing::warn!(%marker, error = %e, "could not release a renewed claim");
                    }
                }
                Ok(Claim::Busy) => {
                    tracing::warn!(%marker, "claim lost to another worker before renewal")
                }
                Err(e) => tracing::warn!(%marker, error = %e, "could not renew a claim"),
            }
        }
    }

    fn is_held(&self, owner: &str) -> bool {
        match self.held.lock() {
            Ok(held) => held.contains_key(owner),
            Err(poisoned) => poisoned.into_inner().contains_key(owner),
        }
    }

    /// The claim lease; renew held claims more often than this.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn hold(&self, owner: &str, marker: &Marker) {
        match self.held.lock() {
            Ok(mut held) => held.insert(owner.to_owned(), marker.clone()),
            Err(poisoned) => poisoned
                .into_inner()
                .insert(owner.to_owned(), marker.clone()),
        };
    }

    fn unhold(&self, owner: &str) {
        match self.held.lock() {
            Ok(mut held) => held.remove(owner),
            Err(poisoned) => poisoned.into_inner().remove(owner),
        };
    }

    /// Claims (team, finding), does the work, and always gives the claim back: through `put`
    /// when state changed, `release` otherwise, best-effort `release` on error.
    async fn follow(
        &self,
        team: &Arc<str>,
        marker: &Marker,
        finding: &Finding,
        planned: Option<&PlannedTicket>,
        writes: &mut Vec<PendingWrite>,
    ) -> Result<Option<TeamOutcome>, LifecycleError> {
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
            Ok(Claim::Acquired(record)) => {
                let work = self.decide(&held, finding, planned, record, writes).await;
                if let Err(e) = &work {
                    if let Err(release) = self.store.release(marker, &held.owner).await {
                        tracing::warn!(%marker, error = %release, "could not release the claim after an error; it expires with its lease");
                    }
                    tracing::warn!(finding_id = %finding.id, team = %team, error = %e, transient = e.is_transient(), "ticket work failed");
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
        record: Option<Record>,
        writes: &mut Vec<PendingWrite>,
    ) -> Result<Option<TeamOutcome>, LifecycleError> {
        match (record, planned) {
            (Some(record), planned) if record.ticket.is_some() => self
                .update(held, finding, planned, record, writes)
                .await
                .map(Some),
            (_, Some(planned)) => self.create(held, finding, planned, writes).await.map(Some),
            (_, None) => {
                // The record vanished between `get` and `claim`: nothing to follow.
                self.release(held).await?;
                Ok(None)
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

    async fn release(&self, held: &Held<'_>) -> Result<(), LifecycleError> {
        self.store
            .release(held.marker, &held.owner)
            .await
            .map_err(|source| LifecycleError::Store {
                team: held.team.clone(),
                source,
            })
    }

    async fn put(&self, held: &Held<'_>, record: &Record) -> Result<(), LifecycleError> {
        self.store
            .put(record, &held.owner)
            .await
            .map_err(|source| LifecycleError::Store {
                team: held.team.clone(),
                source,
            })
    }

    /// Searches for a ticket carrying the marker (a create that crashed before its record was
    /// written), and creates one only if there is none.
    async fn find_or_create(
        &self,
        held: &Held<'_>,
        planned: &PlannedTicket,
        unless: Option<&TicketRef>,
    ) -> Result<(TicketRef, Action), LifecycleError> {
        let team = held.team;
        let system = self.system(team, &planned.target)?;
        let ticket_err = |source| LifecycleError::Ticket {
            team: team.clone(),
            source,
        };
        let found = system
            .find_by_marker(&planned.marker, planned.table.as_deref())
            .await
            .map_err(ticket_err)?;
        match found {
            Some(ticket) if unless.is_none_or(|old| old.id != ticket.id) => {
                Ok((ticket, Action::Recovered))
            }
            _ => {
                let ticket = system
                    .create(&planned.payload, planned.table.as_deref())
                    .await
                    .map_err(ticket_err)?;
                Ok((ticket, Action::Created))
            }
        }
    }

    async fn create(
        &self,
        held: &Held<'_>,
        finding: &Finding,
        planned: &PlannedTicket,
        writes: &mut Vec<PendingWrite>,
    ) -> Result<TeamOutcome, LifecycleError> {
        // Check the connection before anything else: a rule pointing nowhere is permanent.
        self.system(held.team, &planned.target)?;
        if finding.is_resolved() {
            // Nobody needs a ticket for something that is already fixed or gone.
            self.release(held).await?;
            return Ok(TeamOutcome {
                team: held.team.clone(),
                marker: held.marker.clone(),
                actions: vec![Action::SkippedResolved],
                ticket: None,
            });
        }
        let (ticket, action) = self.find_or_create(held, planned, None).await?;
        let record = Record {
            marker: held.marker.clone(),
            finding_id: finding.id.clone(),
            team: held.team.to_string(),
            schema: finding.schema,
            write_back: finding.write_back.clone(),
            rule: planned.rule.to_string(),
            ticket: Some(ticket.clone()),
            updated_at: finding.updated_at.clone(),
            fingerprint: fingerprint(planned.severity, finding),
            severity: planned.severity.as_str().to_owned(),
            finding_resolved: false,
            closed_by_bridge: false,
            status_to_hub: None,
            status_from_ticket: None,
            modified_at: chrono::Utc::now().timestamp(),
        };
        self.put(held, &record).await?;
        if planned.options.enrich_detective
            && action == Action::Created
            && let Some(investigator) = &self.investigator
            && let Some(system) = self.tickets.get(&ticket.system)
        {
            let system = Arc::clone(system);
            let target = ticket.clone();
            crate::detective::spawn_enrichment(
                Arc::clone(investigator),
                finding.clone(),
                move |comment: String| {
                    Box::pin(async move {
                        system
                            .comment(&target, &comment)
                            .await
                            .map_err(|e| e.to_string())
                    })
                },
            );
        }
        if planned.options.notify_on_create {
            writes.push(notified(
                held.marker,
                None,
                finding,
                planned.severity,
                planned.severity_note.as_deref(),
                &ticket,
            ));
        }
        Ok(TeamOutcome {
            team: held.team.clone(),
            marker: held.marker.clone(),
            actions: vec![action],
            ticket: Some(ticket),
        })
    }

    async fn update(
        &self,
        held: &Held<'_>,
        finding: &Finding,
        planned: Option<&PlannedTicket>,
        record: Record,
        writes: &mut Vec<PendingWrite>,
    ) -> Result<TeamOutcome, LifecycleError> {
        let team = held.team;
        let mut outcome = TeamOutcome {
            team: team.clone(),
            marker: held.marker.clone(),
            actions: Vec::new(),
            ticket: record.ticket.clone(),
        };
        let Some(mut ticket) = record.ticket.clone() else {
            // `decide` only comes here with a ticket; treat a missing one as nothing to follow.
            self.release(held).await?;
            outcome.actions.push(Action::Noop);
            return Ok(outcome);
        };

        if is_stale(finding, &record) {
            self.release(held).await?;
            outcome.actions.push(Action::Stale);
            return Ok(outcome);
        }

        let options = match planned {
            Some(p) if *p.rule == *record.rule => p.options,
            _ => self
                .planner
                .rule_options(team, &record.rule)
                .unwrap_or_default(),
        };
        let refresh = match planned {
            Some(p) => Some(SeverityRefresh {
                severity: p.severity,
                fields: p.severity_fields.clone(),
            }),
            None => self.planner.severity_refresh(team, &record.rule, finding)?,
        };
        let stored_severity = Severity::from_label(&record.severity);
        let severity = refresh
            .as_ref()
            .map(|r| r.severity)
            .or(stored_severity)
            .unwrap_or(finding.severity);
        let print = fingerprint(severity, finding);
        let newest_updated_at = newer(finding.updated_at.as_deref(), record.updated_at.as_deref());

        if print == record.fingerprint {
            if newest_updated_at != record.updated_at {
                // Nothing to do on the ticket, but remember the newer version so that an older
                // one arriving late is recognised as stale.
                let mut next = record.clone();
                next.updated_at = newest_updated_at;
                next.modified_at = chrono::Utc::now().timestamp();
                self.put(held, &next).await?;
            } else {
                self.release(held).await?;
            }
            outcome.actions.push(Action::Noop);
            return Ok(outcome);
        }

        let mut next = record.clone();
        next.updated_at = newest_updated_at;
        next.fingerprint = print;
        next.modified_at = chrono::Utc::now().timestamp();
        let system = self.system(team, &ticket.system)?.clone();
        let ticket_err = |source| LifecycleError::Ticket {
            team: team.clone(),
            source,
        };
        let resolved_now = finding.is_resolved();
        let state = state_text(finding);

        if !resolved_now && record.finding_resolved {
            let status = system.status(&ticket).await.map_err(ticket_err)?;
            if !status.done {
                let text = format!("The finding is active again in Security Hub ({state}).");
                system.comment(&ticket, &text).await.map_err(ticket_err)?;
                outcome.actions.push(Action::RecurrenceCommented);
            } else if let (OnRecurrence::New, Some(p)) = (options.on_recurrence, planned) {
                let (new_ticket, _) = self.find_or_create(held, p, Some(&ticket)).await?;
                outcome.actions.push(Action::Replaced {
                    previous: ticket.clone(),
                });
                next.rule = p.rule.to_string();
                next.severity = p.severity.as_str().to_owned();
                next.status_from_ticket = None;
                next.status_to_hub = None;
                ticket = new_ticket;
                next.ticket = Some(ticket.clone());
                if p.options.notify_on_create {
                    writes.push(notified(
                        held.marker,
                        None,
                        finding,
                        p.severity,
                        p.severity_note.as_deref(),
                        &ticket,
                    ));
                }
            } else {
                // `new` needs a rendered payload, which only a routed finding has: a ticket
                // followed outside routing is reopened instead.
                let text =
                    format!("The finding is active again in Security Hub ({state}); reopening.");
                system.comment(&ticket, &text).await.map_err(ticket_err)?;
                system.reopen(&ticket, &text).await.map_err(ticket_err)?;
                outcome.actions.push(Action::Reopened);
                if options.notify_on_create {
                    writes.push(notified(
                        held.marker,
                        record.status_from_ticket.clone(),
                        finding,
                        severity,
                        planned.and_then(|p| p.severity_note.as_deref()),
                        &ticket,
                    ));
                }
            }
            next.finding_resolved = false;
            next.closed_by_bridge = false;
        }

        // A resolved finding's severity often drops to INFORMATIONAL; re-prioritising a ticket
        // that is about to close is noise, so severity is only followed while active.
        if !resolved_now && next.severity != severity.as_str() {
            if let Some(refresh) = refresh.as_ref().filter(|r| !r.fields.is_empty()) {
                let update = FieldUpdate {
                    fields: refresh.fields.clone(),
                };
                system
                    .update_fields(&ticket, &update)
                    .await
                    .map_err(ticket_err)?;
            }
            let text = format!("Severity changed from {} to {}.", next.severity, severity);
            system.comment(&ticket, &text).await.map_err(ticket_err)?;
            outcome.actions.push(Action::SeverityChanged {
                from: next.severity.clone(),
                to: severity,
            });
            next.severity = severity.as_str().to_owned();
        }

        if resolved_now && !record.finding_resolved {
            let text = format!(
                "The finding is resolved in Security Hub ({state}). {}",
                finding.console_url
            );
            match options.on_resolved {
                OnResolved::Close => {
                    system.comment(&ticket, &text).await.map_err(ticket_err)?;
                    system
                        .transition(&ticket, &TargetStatus::Done, &text)
                        .await
                        .map_err(ticket_err)?;
                    next.closed_by_bridge = true;
                    outcome.actions.push(Action::Closed);
                }
                OnResolved::Comment => {
                    system.comment(&ticket, &text).await.map_err(ticket_err)?;
                    outcome.actions.push(Action::ResolutionCommented);
                }
                OnResolved::Ignore => outcome.actions.push(Action::ResolutionIgnored),
            }
            next.finding_resolved = true;
        }

        if outcome.actions.is_empty() {
            outcome.actions.push(Action::Noop);
        }
        self.put(held, &next).await?;
        outcome.ticket = Some(ticket);
        Ok(outcome)
    }

    /// One `WorkflowUpdate` per finding (Security Hub rejects a batch naming a finding twice),
    /// written after every record is stored. A failure is logged and counted: the tickets exist
    /// and are recorded, and status sync writes the ticket's state later anyway.
    async fn write_back(&self, finding: &Finding, writes: Vec<PendingWrite>) {
        if writes.is_empty() {
            return;
        }
        let status = writes.iter().find_map(|w| w.status);
        let severity = writes.iter().find_map(|w| w.severity);
        let note = writes
            .iter()
            .map(|w| w.note.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let update = WorkflowUpdate::new(
            finding.write_back.clone(),
            finding.id.clone(),
            status,
            severity,
            &note,
        );
        match self.writer.write(vec![update]).await {
            Ok(report) if report.unprocessed.is_empty() => {
                telemetry::writeback(WritebackResult::Processed, report.processed as u64);
                let Some(status) = status else { return };
                for w in &writes {
                    if let Err(e) = self
                        .store
                        .set_sync_status(
                            &w.marker,
                            w.status_from_ticket.as_deref(),
                            Some(status.as_str()),
                        )
                        .await
                    {
                        tracing::warn!(marker = %w.marker, error = %e, "could not record the status written to Security Hub");
                    }
                }
            }
            Ok(report) => {
                telemetry::writeback(WritebackResult::Processed, report.processed as u64);
                telemetry::writeback(
                    WritebackResult::Unprocessed,
                    report.unprocessed.len() as u64,
                );
                for u in report.unprocessed {
                    tracing::warn!(finding_id = %u.finding_id, code = %u.code, message = %u.message, "Security Hub did not apply the write-back");
                }
            }
            Err(e) => {
                telemetry::writeback(WritebackResult::Failed, 1);
                telemetry::error(telemetry::ErrorKind::Writeback);
                tracing::warn!(finding_id = %finding.id, error = %e, "write-back to Security Hub failed; the ticket is recorded");
            }
        }
    }
}

/// The NOTIFIED write-back naming a ticket, with the severity a rule chose when it differs from
/// the finding's own and the planner's reason for it (`severity_note`: rule and application).
fn notified(
    marker: &Marker,
    status_from_ticket: Option<String>,
    finding: &Finding,
    severity: Severity,
    severity_note: Option<&str>,
    ticket: &TicketRef,
) -> PendingWrite {
    let overridden = severity != finding.severity;
    let mut note = format!(
        "Tracked in {} {}: {}",
        ticket.system, ticket.key, ticket.url
    );
    if overridden {
        match severity_note {
            Some(reason) => {
                note.push_str(". ");
                note.push_str(reason);
            }
            None => note.push_str(&format!(
                " (severity set to {severity} by the mapping rule, was {})",
                finding.severity
            )),
        }
    }
    PendingWrite {
        marker: marker.clone(),
        status_from_ticket,
        status: Some(WorkflowStatus::Notified),
        severity: overridden.then_some(severity),
        note,
    }
}

/// "record state ARCHIVED, compliance PASSED" — what a person reading the ticket needs to know.
fn state_text(finding: &Finding) -> String {
    match finding.compliance.status.as_deref() {
        Some(c) => format!(
            "record state {}, compliance {c}",
            finding.record_state.as_str()
        ),
        None => format!("record state {}", finding.record_state.as_str()),
    }
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(s).ok()
}

/// Older than what was already processed. Unknown or unparseable times are never stale: better a
/// needless ticket call than a lost update.
fn is_stale(finding: &Finding, record: &Record) -> bool {
    match (
        finding.updated_at_time(),
        record.updated_at.as_deref().and_then(parse_time),
    ) {
        (Some(new), Some(stored)) => new < stored,
        _ => false,
    }
}

fn newer(finding: Option<&str>, stored: Option<&str>) -> Option<String> {
    match (finding, stored) {
        (Some(f), Some(s)) => match (parse_time(f), parse_time(s)) {
            (Some(ft), Some(st)) if ft < st => Some(s.to_owned()),
            _ => Some(f.to_owned()),
        },
        (Some(f), None) => Some(f.to_owned()),
        (None, s) => s.map(str::to_owned),
    }
}

#[cfg(test)]
pub(crate) mod fakes;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod context_tests;
