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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::aws::securityhub::{FindingWriter, WorkflowUpdate};
use crate::finding::{Finding, Severity, WorkflowStatus};
use crate::mapping::spec::{OnRecurrence, OnResolved};
use crate::marker::Marker;
use crate::pipeline::health::{Health, Probe, Subject};
use crate::runtime::telemetry::{self, DedupKind, WritebackResult};
use crate::store::{Claim, Claimed, FindingState, Intent, Record, Store, StoreError, SyncFields};
use crate::ticket::{FieldUpdate, FoundTicket, TargetStatus, TicketError, TicketRef, TicketSystem};

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

/// A route that routing picked but rendering could not build (a template that fails on this
/// finding): that team's ticket fails; the others go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanFailure {
    pub team: Arc<str>,
    pub rule: Arc<str>,
    pub error: PlanError,
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
    /// Routes and renders: one [`PlannedTicket`] per team the routing picks now, or that
    /// route's failure.
    fn plan(&self, finding: &Finding) -> Vec<Result<PlannedTicket, PlanFailure>>;

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
        | Action::SkippedResolved
        | Action::Untracked => {}
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
    /// The finding is already resolved and has no ticket for this team: none is created (the
    /// resolution's tombstone makes any older active version stale).
    SkippedResolved,
    /// The team was enlisted on the finding but holds no ticket (its create was stale, refused
    /// or not recorded yet elsewhere): nothing to follow.
    Untracked,
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
            Action::Untracked => "untracked",
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

/// What [`Lifecycle::process`] did for one finding: what each team's work came to, and the
/// routes that failed. Outcomes are per route: one route's failure never undoes another's work.
#[derive(Debug)]
pub struct Outcome {
    pub finding_id: String,
    pub teams: Vec<TeamOutcome>,
    pub failures: Vec<LifecycleError>,
}

impl Outcome {
    /// No team routed the finding and no team had a ticket for it: acknowledged, counted.
    pub fn is_unrouted(&self) -> bool {
        self.teams.is_empty() && self.failures.is_empty()
    }

    /// The outcome of `team`, if it was involved.
    pub fn team(&self, team: &str) -> Option<&TeamOutcome> {
        self.teams.iter().find(|t| &*t.team == team)
    }

    /// The first failure, for callers that treat the finding as one unit (tests, tools).
    pub fn into_result(mut self) -> Result<Outcome, LifecycleError> {
        if self.failures.is_empty() {
            Ok(self)
        } else {
            let worst = self
                .failures
                .iter()
                .position(|e| !e.is_transient())
                .unwrap_or(0);
            Err(self.failures.swap_remove(worst))
        }
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
    /// The finding's entry in the store's index could not be read or written: no team can be
    /// followed safely.
    #[error("finding index: {0}")]
    Index(#[source] StoreError),
    #[error("team {team}: rule {rule}: {error}")]
    Plan {
        team: Arc<str>,
        rule: Arc<str>,
        error: PlanError,
    },
    /// Another worker is working on this (finding, team) right now; try again later.
    #[error("team {team}: {marker} is being worked on by another worker")]
    Busy { team: Arc<str>, marker: Marker },
    /// A create for this marker may have happened and the ticket system's search cannot be
    /// trusted to show it yet: look again after `wait`.
    #[error("team {team}: a create for {marker} may have happened; searching again in {}s", wait.as_secs())]
    Settling {
        team: Arc<str>,
        marker: Marker,
        wait: Duration,
    },
    /// The rule or record names a ticket connection that is not configured.
    #[error("team {team}: no ticket connection named {target:?}")]
    NoConnection { team: Arc<str>, target: String },
    /// The route's connection or rule is paused (credentials refused, project gone): not this
    /// finding's fault. The message is parked and comes back; it is never dead-lettered for it.
    #[error("team {team}: {subject} is paused: {reason}")]
    Paused {
        team: Arc<str>,
        subject: Subject,
        reason: String,
    },
}

impl LifecycleError {
    /// Transient: leave the message and let it come back. Permanent: dead-letter it.
    pub fn is_transient(&self) -> bool {
        match self {
            LifecycleError::Ticket { source, .. } => source.is_transient(),
            LifecycleError::Store { source, .. } | LifecycleError::Index(source) => {
                source.is_transient()
            }
            LifecycleError::Busy { .. } | LifecycleError::Settling { .. } => true,
            LifecycleError::Plan { .. }
            | LifecycleError::NoConnection { .. }
            | LifecycleError::Paused { .. } => false,
        }
    }

    /// Waiting for a paused connection or rule: neither retried as transient (that would spend
    /// the message's receive count) nor dead-lettered.
    pub fn is_paused(&self) -> bool {
        matches!(self, LifecycleError::Paused { .. })
    }

    /// Stable error kind for DLQ attributes and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            LifecycleError::Ticket { .. } => "ticket",
            LifecycleError::Store { .. } | LifecycleError::Index(_) => "store",
            LifecycleError::Plan { .. } => "render",
            LifecycleError::Busy { .. } | LifecycleError::Settling { .. } => "busy",
            LifecycleError::NoConnection { .. } => "config",
            LifecycleError::Paused { .. } => "paused",
        }
    }

    /// The team whose route failed; `None` for a failure of the whole finding.
    pub fn team(&self) -> Option<&str> {
        match self {
            LifecycleError::Ticket { team, .. }
            | LifecycleError::Store { team, .. }
            | LifecycleError::Plan { team, .. }
            | LifecycleError::Busy { team, .. }
            | LifecycleError::Settling { team, .. }
            | LifecycleError::NoConnection { team, .. }
            | LifecycleError::Paused { team, .. } => Some(team),
            LifecycleError::Index(_) => None,
        }
    }

    /// How long to wait before trying again, when the failure knows (a settling create).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LifecycleError::Settling { wait, .. } => Some(*wait),
            _ => None,
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
    /// instead of making the next delivery wait for them to expire. Releasing keeps intents,
    /// so an aborted create is still searched for before anything is created again.
    held: Mutex<HashMap<String, Marker>>,
    /// Amazon Detective enrichment for rules with `enrich = { detective = true }`.
    investigator: Option<Arc<crate::aws::detective::Investigator>>,
    /// Paused connections and rules: their work is not attempted.
    health: Arc<Health>,
}

/// The store's name in [`Health`].
pub const STORE_CONNECTION: &str = "store";
/// Security Hub write-back's name in [`Health`].
pub const SECURITY_HUB_CONNECTION: &str = "securityhub";

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

impl Held<'_> {
    fn store_err(&self) -> impl Fn(StoreError) -> LifecycleError + '_ {
        |source| LifecycleError::Store {
            team: self.team.clone(),
            source,
        }
    }

    fn ticket_err(&self) -> impl Fn(TicketError) -> LifecycleError + '_ {
        |source| LifecycleError::Ticket {
            team: self.team.clone(),
            source,
        }
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
            health: Arc::new(Health::new()),
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

    /// Turns a failure that is not the finding's fault into a pause of its connection or rule
    /// (and records the pause); other failures pass through.
    fn blame(&self, error: LifecycleError, planned: Option<&PlannedTicket>) -> LifecycleError {
        let (team, subject, probe, reason) = match &error {
            LifecycleError::Store {
                source: StoreError::Refused(reason),
                ..
            }
            | LifecycleError::Index(StoreError::Refused(reason)) => {
                let team = team_of(&error).unwrap_or_else(|| Arc::from("*"));
                (
                    team,
                    Subject::Connection(STORE_CONNECTION.to_owned()),
                    Probe::Connection(STORE_CONNECTION.to_owned()),
                    reason.clone(),
                )
            }
            LifecycleError::Ticket { team, source } => match source.blame() {
                Some(crate::ticket::Blame::Connection) => (
                    team.clone(),
                    Subject::Connection(source.system().to_owned()),
                    Probe::Connection(source.system().to_owned()),
                    source.to_string(),
                ),
                Some(crate::ticket::Blame::Target) => {
                    let Some(planned) = planned else {
                        return error;
                    };
                    let probe = self
                        .tickets
                        .get(&planned.target)
                        .and_then(|system| {
                            system.target_of(&planned.payload, planned.table.as_deref())
                        })
                        .map_or(Probe::Connection(planned.target.clone()), |target| {
                            Probe::Target {
                                connection: planned.target.clone(),
                                target,
                            }
                        });
                    (
                        team.clone(),
                        Subject::Rule {
                            team: team.to_string(),
                            rule: planned.rule.to_string(),
                        },
                        probe,
                        source.to_string(),
                    )
                }
                None => return error,
            },
            _ => return error,
        };
        self.health.pause(subject.clone(), &reason, probe);
        LifecycleError::Paused {
            team,
            subject,
            reason,
        }
    }

    /// [`LifecycleError::Paused`] when the route's connection, rule or the store is paused.
    fn check_paused(
        &self,
        team: &Arc<str>,
        connection: &str,
        rule: &str,
    ) -> Result<(), LifecycleError> {
        let store = Subject::Connection(STORE_CONNECTION.to_owned());
        let subject = match self.health.paused(&store) {
            Some(_) => Some(store),
            None => self.health.route_paused(connection, team, rule),
        };
        match subject {
            Some(subject) => Err(LifecycleError::Paused {
                team: team.clone(),
                reason: self.health.paused(&subject).unwrap_or_default(),
                subject,
            }),
            None => Ok(()),
        }
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
            match self.store.get(&Marker::new(&team, &finding.id)).await {
                Ok(Some(_)) => others.push(team),
                Ok(None) => {}
                Err(source) => outcome
                    .failures
                    .push(LifecycleError::Store { team, source }),
            }
        }
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

    /// Renews the lease of `owner` every third of the lease until the lease is lost; never
    /// returns. Each renewal is bounded by that period, so a hung store call cannot keep a
    /// renewal from being tried again, and every claim renews on its own.
    async fn keep_lease(&self, marker: &Marker, owner: &str) {
        let period = (self.lease / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(period).await;
            match tokio::time::timeout(period, self.store.renew(marker, owner, self.lease)).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    // Expired or taken over: every write of this work is conditional on the
                    // owner and now fails; stop renewing.
                    telemetry::claim_lost("renew");
                    tracing::warn!(%marker, owner, "claim lost before the work finished; its writes will be refused");
                    std::future::pending::<()>().await;
                }
                Ok(Err(e)) => tracing::warn!(%marker, error = %e, "could not renew a claim"),
                Err(_) => tracing::warn!(%marker, "renewing a claim timed out"),
            }
        }
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
        let owner = format!(
            "{}:{}",
            self.owner_id,
            self.next_work.fetch_add(1, Ordering::Relaxed)
        );
        if let Some(p) = planned {
            self.check_paused(team, &p.target, &p.rule)?;
        }
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
                let work = self.decide(&held, finding, planned, claimed, writes);
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
                    tracing::warn!(finding_id = %finding.id, team = %team, error = %e, transient = e.is_transient(), "ticket work failed");
                }
                work
            }
        };
        self.unhold(&held.owner);
        result.map_err(|e| self.blame(e, planned))
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
            (Some(record), planned) if record.ticket.is_some() => self
                .update(held, finding, planned, record, intent, writes)
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

    async fn release(&self, held: &Held<'_>) -> Result<(), LifecycleError> {
        self.store
            .release(held.marker, &held.owner)
            .await
            .map_err(held.store_err())
    }

    async fn put(
        &self,
        held: &Held<'_>,
        record: &Record,
        sync: SyncFields,
    ) -> Result<(), LifecycleError> {
        self.store
            .put(record, &held.owner, sync)
            .await
            .map_err(held.store_err())
    }

    /// [`LifecycleError::Settling`] while an intent's create cannot be searched for yet.
    fn unsettled(held: &Held<'_>, intent: Option<&Intent>) -> Result<(), LifecycleError> {
        if let Some(intent) = intent {
            let remaining = intent.search_after - now_millis();
            if remaining > 0 {
                return Err(LifecycleError::Settling {
                    team: held.team.clone(),
                    marker: held.marker.clone(),
                    wait: Duration::from_millis(u64::try_from(remaining).unwrap_or(0)),
                });
            }
        }
        Ok(())
    }

    /// Every ticket carrying the marker, with the one to follow: the oldest live one, else the
    /// newest finished one. More than one live ticket is a duplicate the bridge made (or a
    /// person copied): each extra one gets a comment pointing at the kept one, once, and is
    /// counted; none is ever ignored silently.
    async fn search(
        &self,
        held: &Held<'_>,
        system: &Arc<dyn TicketSystem>,
        table: Option<&str>,
        unless: Option<&TicketRef>,
    ) -> Result<Option<FoundTicket>, LifecycleError> {
        let found = system
            .find_by_marker(held.marker, table)
            .await
            .map_err(held.ticket_err())?;
        let candidates: Vec<FoundTicket> = found
            .into_iter()
            .filter(|f| unless.is_none_or(|u| u.id != f.ticket.id))
            .collect();
        let live: Vec<&FoundTicket> = candidates.iter().filter(|f| !f.done).collect();
        let Some(kept) = live.first().copied().or(candidates.last()) else {
            return Ok(None);
        };
        if live.len() > 1 {
            telemetry::duplicates_detected(system.name(), held.team, (live.len() - 1) as u64);
            for extra in &live[1..] {
                tracing::warn!(team = %held.team, marker = %held.marker, kept = %kept.ticket.key, duplicate = %extra.ticket.key, "duplicate ticket for one finding and team");
                let text = format!(
                    "Duplicate: findings-bridge follows {} ({}) for this finding and team; \
                     this ticket is not updated and can be closed.",
                    kept.ticket.key, kept.ticket.url
                );
                let event = format!("duplicate-of:{}", kept.ticket.id);
                self.comment_once(held, system, &extra.ticket, &event, &text)
                    .await?;
            }
        }
        Ok(Some(kept.clone()))
    }

    /// Posts a comment unless an earlier attempt for the same event already did: the comment
    /// carries a reference derived from the marker and `event`, looked for first (comments are
    /// read from the ticket itself, which is consistent). The post is sent at most once.
    async fn comment_once(
        &self,
        held: &Held<'_>,
        system: &Arc<dyn TicketSystem>,
        ticket: &TicketRef,
        event: &str,
        text: &str,
    ) -> Result<(), LifecycleError> {
        let reference = comment_reference(held.marker, event);
        if system
            .has_comment(ticket, &reference)
            .await
            .map_err(held.ticket_err())?
        {
            tracing::debug!(ticket = %ticket.key, reference, "comment already posted");
            return Ok(());
        }
        let body = format!("{text}\n\n(findings-bridge {reference})");
        system
            .comment(ticket, &body)
            .await
            .map_err(held.ticket_err())
    }

    /// Creates a ticket for `planned` unless one carrying the marker exists: with an intent
    /// (an earlier create whose outcome is unknown) only once the search can be trusted. The
    /// create is preceded by its own intent and sent at most once; a lost answer leaves the
    /// intent for whoever holds the claim after the settle time.
    async fn find_or_create(
        &self,
        held: &Held<'_>,
        planned: &PlannedTicket,
        unless: Option<&TicketRef>,
        intent: Option<&Intent>,
    ) -> Result<(TicketRef, Action), LifecycleError> {
        let system = self.system(held.team, &planned.target)?;
        Self::unsettled(held, intent)?;
        if let Some(found) = self
            .search(held, system, planned.table.as_deref(), unless)
            .await?
        {
            // Replacing a closed ticket (`on_recurrence = new`) wants a live one; a finished
            // match is an older predecessor, not the replacement.
            if !(found.done && unless.is_some()) {
                return Ok((found.ticket, Action::Recovered));
            }
        }
        let started = now_millis();
        let settle = i64::try_from(system.settle_time().as_millis()).unwrap_or(i64::MAX);
        let intent = Intent {
            owner: held.owner.clone(),
            system: planned.target.clone(),
            started_at: started,
            search_after: started.saturating_add(settle),
        };
        // Conditional on our lease: a lost claim is noticed here, before anything is sent.
        self.store
            .set_intent(held.marker, &held.owner, Some(&intent))
            .await
            .map_err(|e| {
                if matches!(e, StoreError::LostClaim(_)) {
                    telemetry::claim_lost("intent");
                }
                held.store_err()(e)
            })?;
        match system
            .create(&planned.payload, planned.table.as_deref())
            .await
        {
            Ok(ticket) => Ok((ticket, Action::Created)),
            Err(e) if e.is_outcome_unknown() => {
                tracing::warn!(team = %held.team, marker = %held.marker, error = %e, "create outcome unknown; the marker is searched for after the settle time");
                let remaining = intent.search_after - now_millis();
                Err(LifecycleError::Settling {
                    team: held.team.clone(),
                    marker: held.marker.clone(),
                    wait: Duration::from_millis(u64::try_from(remaining).unwrap_or(0)),
                })
            }
            Err(e) => {
                // Refused, or never sent: nothing was created, so the intent can go.
                if let Err(clear) = self.store.set_intent(held.marker, &held.owner, None).await {
                    tracing::debug!(marker = %held.marker, error = %clear, "could not clear the intent of a create that failed; the next holder searches first");
                }
                Err(held.ticket_err()(e))
            }
        }
    }

    async fn create(
        &self,
        held: &Held<'_>,
        finding: &Finding,
        planned: &PlannedTicket,
        intent: Option<Intent>,
        writes: &mut Vec<PendingWrite>,
    ) -> Result<TeamOutcome, LifecycleError> {
        // Check the connection before anything else: a rule pointing nowhere is permanent.
        let system = Arc::clone(self.system(held.team, &planned.target)?);
        let outcome = |actions: Vec<Action>, ticket: Option<TicketRef>| TeamOutcome {
            team: held.team.clone(),
            marker: held.marker.clone(),
            actions,
            ticket,
        };
        if finding.is_resolved() && intent.is_none() {
            // Nobody needs a ticket for something that is already fixed or gone; the
            // resolution's tombstone is already stored.
            self.release(held).await?;
            return Ok(outcome(vec![Action::SkippedResolved], None));
        }
        let mut as_resolved = None;
        if !finding.is_resolved() {
            // Enlisted under the claim, then the tombstone read in the same step: a resolution
            // stored before this is seen here, one stored after it sees this team.
            let index = self
                .store
                .enlist(&finding.id, held.team)
                .await
                .map_err(held.store_err())?;
            if covered_by_tombstone(finding, &index) {
                if intent.is_none() {
                    self.release(held).await?;
                    return Ok(outcome(vec![Action::Stale], None));
                }
                // An earlier create's outcome is unknown and the finding has been resolved
                // since: look for that ticket as the resolution sees the finding, so a ticket
                // that was made is closed and none is made now.
                let mut view = finding.clone();
                view.record_state = crate::finding::RecordState::Archived;
                view.updated_at = index.resolved_at.clone();
                as_resolved = Some(view);
            }
        }
        let finding = as_resolved.as_ref().unwrap_or(finding);
        let (ticket, action) = if finding.is_resolved() {
            // An earlier create may have made a ticket that now has to follow the resolution.
            Self::unsettled(held, intent.as_ref())?;
            match self
                .search(held, &system, planned.table.as_deref(), None)
                .await?
            {
                Some(found) => (found.ticket, Action::Recovered),
                None => {
                    self.store
                        .set_intent(held.marker, &held.owner, None)
                        .await
                        .map_err(held.store_err())?;
                    self.release(held).await?;
                    return Ok(outcome(vec![Action::SkippedResolved], None));
                }
            }
        } else {
            self.find_or_create(held, planned, None, intent.as_ref())
                .await?
        };
        let mut record = Record {
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
        if action == Action::Recovered {
            // What the recovered ticket reflects is unknown: follow it from scratch (a finished
            // ticket of an active finding recurs; a resolved finding closes it).
            let status = system.status(&ticket).await.map_err(held.ticket_err())?;
            record.finding_resolved = status.done;
            record.updated_at = None;
            record.fingerprint = String::new();
            let mut followed = self
                .update(held, finding, Some(planned), record, None, writes)
                .await?;
            followed.actions.retain(|a| *a != Action::Noop);
            if followed.actions.is_empty() && planned.options.notify_on_create {
                // The crash that left this ticket unrecorded may have come before its
                // write-back: say again where the finding is tracked.
                writes.push(notified(
                    held.marker,
                    None,
                    finding,
                    planned.severity,
                    planned.severity_note.as_deref(),
                    &ticket,
                ));
            }
            followed.actions.insert(0, Action::Recovered);
            return Ok(followed);
        }
        self.put(held, &record, SyncFields::Replace).await?;
        if planned.options.enrich_detective
            && let Some(investigator) = &self.investigator
        {
            let target = ticket.clone();
            let system = Arc::clone(&system);
            crate::aws::detective::spawn_enrichment(
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
        Ok(outcome(vec![action], Some(ticket)))
    }

    /// A team enlisted on the finding whose create's outcome nobody recorded, met while
    /// routing does not pick it: once the search can be trusted, a ticket it finds is recorded
    /// (under the rule's defaults) and followed; none found clears the intent.
    async fn adopt(
        &self,
        held: &Held<'_>,
        finding: &Finding,
        intent: Option<Intent>,
        writes: &mut Vec<PendingWrite>,
    ) -> Result<Option<TeamOutcome>, LifecycleError> {
        let Some(intent) = intent else {
            self.release(held).await?;
            return Ok(None);
        };
        let system = Arc::clone(self.system(held.team, &intent.system)?);
        Self::unsettled(held, Some(&intent))?;
        let Some(found) = self.search(held, &system, None, None).await? else {
            self.store
                .set_intent(held.marker, &held.owner, None)
                .await
                .map_err(held.store_err())?;
            self.release(held).await?;
            return Ok(Some(TeamOutcome {
                team: held.team.clone(),
                marker: held.marker.clone(),
                actions: vec![Action::Untracked],
                ticket: None,
            }));
        };
        let record = Record {
            marker: held.marker.clone(),
            finding_id: finding.id.clone(),
            team: held.team.to_string(),
            schema: finding.schema,
            write_back: finding.write_back.clone(),
            rule: String::new(),
            ticket: Some(found.ticket),
            updated_at: None,
            fingerprint: String::new(),
            severity: finding.severity.as_str().to_owned(),
            finding_resolved: found.done,
            closed_by_bridge: false,
            status_to_hub: None,
            status_from_ticket: None,
            modified_at: chrono::Utc::now().timestamp(),
        };
        let mut followed = self
            .update(held, finding, None, record, None, writes)
            .await?;
        followed.actions.insert(0, Action::Recovered);
        followed.actions.retain(|a| *a != Action::Noop);
        Ok(Some(followed))
    }

    async fn update(
        &self,
        held: &Held<'_>,
        finding: &Finding,
        planned: Option<&PlannedTicket>,
        record: Record,
        intent: Option<Intent>,
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
        if let Err(paused) = self.check_paused(team, &ticket.system, &record.rule) {
            self.release(held).await?;
            return Err(paused);
        }
        // A replacement create (`on_recurrence = new`) whose outcome was lost: settle it before
        // anything else, so that a replacement that was made is followed (and closed, if the
        // finding is resolved again by now) rather than forgotten when the intent is cleared.
        let mut record = record;
        let mut sync = SyncFields::Keep;
        let intent_settled = intent.is_some();
        if let Some(intent) = &intent {
            Self::unsettled(held, Some(intent))?;
            let system = Arc::clone(self.system(team, &intent.system)?);
            if let Some(found) = self
                .search(held, &system, ticket.table.as_deref(), Some(&ticket))
                .await?
                .filter(|f| !f.done)
            {
                outcome.actions.push(Action::Replaced {
                    previous: ticket.clone(),
                });
                ticket = found.ticket;
                record.ticket = Some(ticket.clone());
                record.finding_resolved = false;
                record.closed_by_bridge = false;
                record.status_from_ticket = None;
                record.status_to_hub = None;
                sync = SyncFields::Replace;
            }
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
            None => self
                .planner
                .severity_refresh(team, &record.rule, finding)
                .map_err(|error| LifecycleError::Plan {
                    team: team.clone(),
                    rule: Arc::from(record.rule.as_str()),
                    error,
                })?,
        };
        let stored_severity = Severity::from_label(&record.severity);
        let severity = refresh
            .as_ref()
            .map(|r| r.severity)
            .or(stored_severity)
            .unwrap_or(finding.severity);
        let print = fingerprint(severity, finding);
        let newest_updated_at = newer(finding.updated_at.as_deref(), record.updated_at.as_deref());

        if print == record.fingerprint && record.finding_resolved == finding.is_resolved() {
            if newest_updated_at != record.updated_at || intent_settled {
                // Nothing to do on the ticket, but remember the newer version so that an older
                // one arriving late is recognised as stale.
                let mut next = record.clone();
                next.updated_at = newest_updated_at;
                next.modified_at = chrono::Utc::now().timestamp();
                self.put(held, &next, sync).await?;
            } else {
                self.release(held).await?;
            }
            if outcome.actions.is_empty() {
                outcome.actions.push(Action::Noop);
            }
            outcome.ticket = Some(ticket);
            return Ok(outcome);
        }

        let mut next = record.clone();
        next.updated_at = newest_updated_at;
        next.fingerprint = print;
        next.modified_at = chrono::Utc::now().timestamp();
        let system = self.system(team, &ticket.system)?.clone();
        let ticket_err = held.ticket_err();
        let resolved_now = finding.is_resolved();
        let state = state_text(finding);
        // Identifies this version of the finding in comment references.
        let version = finding.updated_at.as_deref().unwrap_or("-");

        if !resolved_now && record.finding_resolved {
            let status = system.status(&ticket).await.map_err(&ticket_err)?;
            if !status.done {
                let text = format!("The finding is active again in Security Hub ({state}).");
                self.comment_once(held, &system, &ticket, &format!("active:{version}"), &text)
                    .await?;
                outcome.actions.push(Action::RecurrenceCommented);
            } else if let (OnRecurrence::New, Some(p)) = (options.on_recurrence, planned) {
                // Any earlier intent was settled above.
                let (new_ticket, _) = self.find_or_create(held, p, Some(&ticket), None).await?;
                outcome.actions.push(Action::Replaced {
                    previous: ticket.clone(),
                });
                next.rule = p.rule.to_string();
                next.severity = p.severity.as_str().to_owned();
                next.status_from_ticket = None;
                next.status_to_hub = None;
                sync = SyncFields::Replace;
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
                self.comment_once(held, &system, &ticket, &format!("reopen:{version}"), &text)
                    .await?;
                system.reopen(&ticket, "").await.map_err(&ticket_err)?;
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
                    .map_err(&ticket_err)?;
            }
            let text = format!("Severity changed from {} to {}.", next.severity, severity);
            self.comment_once(
                held,
                &system,
                &ticket,
                &format!("severity:{}:{severity}:{version}", next.severity),
                &text,
            )
            .await?;
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
            let event = format!("resolved:{version}");
            match options.on_resolved {
                OnResolved::Close => {
                    self.comment_once(held, &system, &ticket, &event, &text)
                        .await?;
                    system
                        .transition(&ticket, &TargetStatus::Done, &text)
                        .await
                        .map_err(&ticket_err)?;
                    next.closed_by_bridge = true;
                    outcome.actions.push(Action::Closed);
                }
                OnResolved::Comment => {
                    self.comment_once(held, &system, &ticket, &event, &text)
                        .await?;
                    outcome.actions.push(Action::ResolutionCommented);
                }
                OnResolved::Ignore => outcome.actions.push(Action::ResolutionIgnored),
            }
            next.finding_resolved = true;
        }

        if outcome.actions.is_empty() {
            outcome.actions.push(Action::Noop);
        }
        self.put(held, &next, sync).await?;
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
        let result = self.writer.write(vec![update]).await;
        if result.is_ok() {
            self.health
                .resume(&Subject::Connection(SECURITY_HUB_CONNECTION.to_owned()));
        }
        match result {
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
            Err(crate::aws::securityhub::WriteError::Refused(reason)) => {
                telemetry::writeback(WritebackResult::Failed, 1);
                telemetry::error(telemetry::ErrorKind::Writeback);
                // Shown in /readyz and the gauge; the next write-back that succeeds resumes it.
                self.health.pause(
                    Subject::Connection(SECURITY_HUB_CONNECTION.to_owned()),
                    &reason,
                    Probe::Passive,
                );
            }
            Err(e) => {
                telemetry::writeback(WritebackResult::Failed, 1);
                telemetry::error(telemetry::ErrorKind::Writeback);
                tracing::warn!(finding_id = %finding.id, error = %e, "write-back to Security Hub failed; the ticket is recorded");
            }
        }
    }
}

fn team_of(error: &LifecycleError) -> Option<Arc<str>> {
    match error {
        LifecycleError::Store { team, .. } => Some(team.clone()),
        _ => None,
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
mod tests;

#[cfg(test)]
mod context_tests;

#[cfg(test)]
mod fault_tests;
