//! What the lifecycle asks of routing and rendering: the [`Planner`] contract, the tickets it
//! plans and how a plan can fail.

use super::*;

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
    /// Due date and rendered escalation (`RenderedTicket::sla`), recorded with the ticket.
    pub sla: Option<SlaState>,
    /// The rendered group key when the rule groups (`group_by`): the finding joins the ticket
    /// of that group instead of getting its own, and `payload` is the group ticket as this
    /// finding alone would start it.
    pub group: Option<String>,
}

/// A group ticket as its items stand now ([`Planner::render_group`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupTicket {
    /// The create request body (carrying the group marker).
    pub payload: serde_json::Value,
    /// ServiceNow table of the rule; `None` for Jira.
    pub table: Option<String>,
    /// What an update of the existing ticket sends to make it current: summary, description
    /// and the severity fields for the group's severity.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The highest open severity of the items.
    pub severity: Severity,
    /// Due date for that severity.
    pub sla: Option<SlaState>,
}

/// Severity as a rule that still matches would render it today.
#[derive(Debug, Clone, PartialEq)]
pub struct SeverityRefresh {
    pub severity: Severity,
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The due date for that severity (its field is in `fields` when the rule has an `sla`).
    pub sla: Option<SlaState>,
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

    /// Renders the group ticket of a grouping rule as `view` stands now, with `finding` (the one
    /// being processed) as the template's finding. Fails when the rule no longer exists or no
    /// longer groups; the ticket is then followed without re-rendering.
    fn render_group(
        &self,
        team: &str,
        rule: &str,
        finding: &Finding,
        view: &crate::mapping::group::GroupView,
    ) -> Result<GroupTicket, PlanError>;
}
