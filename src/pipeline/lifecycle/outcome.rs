//! What following a finding did, per team: the [`Action`]s taken, counted as metrics.

use super::*;

/// Counts one lifecycle action under the named series operators alert on.
pub(super) fn count_action(action: &Action, system: &str, team: &str, finding: &Finding) {
    match action {
        Action::Created | Action::Replaced { .. } => telemetry::ticket_created(system, team),
        Action::Recovered => telemetry::dedup_hit(DedupKind::Recovered),
        Action::SeverityChanged { .. } | Action::Joined | Action::ItemResolved => {
            telemetry::ticket_updated(system, team)
        }
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
    /// The finding joined its group's existing ticket (listed as an item of it).
    Joined,
    /// The finding resolved and was ticked off on its group's ticket, which other open
    /// findings keep open.
    ItemResolved,
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
            Action::Joined => "joined",
            Action::ItemResolved => "item_resolved",
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
