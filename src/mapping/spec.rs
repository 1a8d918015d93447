//! Compiled rule types: what a loaded mapping file becomes. The loader (`mapping::load`) builds
//! these from TOML; routing reads `criteria`, order and `terminal`; rendering reads the ticket spec.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::finding::WorkflowStatus;
use crate::mapping::criteria::Criteria;
use crate::mapping::template::Template;

/// Which kind of ticket system a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Jira,
    ServiceNow,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Jira => "jira",
            TargetKind::ServiceNow => "servicenow",
        }
    }
}

/// What to do with a ticket when its finding is resolved (ARCHIVED, or compliance PASSED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnResolved {
    /// Comment and move the ticket to done / resolved.
    #[default]
    Close,
    /// Comment only; people close it.
    Comment,
    /// Do nothing.
    Ignore,
}

/// What to do when a finding becomes active again after its ticket was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRecurrence {
    /// Reopen the existing ticket with a comment.
    #[default]
    Reopen,
    /// Leave the closed ticket alone and open a new one.
    New,
}

/// A template tree for `fields`: every string inside is a template, other TOML values keep
/// their type so Jira's typed fields keep their shapes.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldTemplate {
    Text(Template),
    Integer(i64),
    Float(f64),
    Bool(bool),
    Array(Vec<FieldTemplate>),
    Table(BTreeMap<String, FieldTemplate>),
}

/// `[rules.jira]` after compilation.
#[derive(Debug, Clone, PartialEq)]
pub struct JiraSpec {
    pub project: Template,
    pub issue_type: Template,
    pub summary: Template,
    pub description: Option<Template>,
    /// Priority *name* (`Highest`, `High`, …). Empty output means "leave Jira's default".
    pub priority: Option<Template>,
    pub labels: Vec<Template>,
    pub fields: BTreeMap<String, FieldTemplate>,
}

/// `[rules.servicenow]` after compilation.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceNowSpec {
    /// Table name, e.g. `incident` (default) or `sn_si_incident`. Not a template.
    pub table: String,
    pub short_description: Template,
    pub description: Option<Template>,
    pub urgency: Option<Template>,
    pub impact: Option<Template>,
    pub assignment_group: Option<Template>,
    pub fields: BTreeMap<String, FieldTemplate>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TicketSpec {
    Jira(JiraSpec),
    ServiceNow(ServiceNowSpec),
}

impl TicketSpec {
    pub fn kind(&self) -> TargetKind {
        match self {
            TicketSpec::Jira(_) => TargetKind::Jira,
            TicketSpec::ServiceNow(_) => TargetKind::ServiceNow,
        }
    }
}

/// Ticket status → finding workflow state. Keys are a Jira status name (`"Won't Do"`), a Jira
/// status category (`"category:done"`), or a ServiceNow state code (`"state:6"`); a plain key is
/// compared with the status name, case-insensitively.
///
/// The second field holds the entries written `{ status = "SUPPRESSED", for = "90d" }`: their
/// key → how long the acceptance lasts (risk acceptance that expires; only SUPPRESSED entries
/// carry one). An entry absent there lasts until the ticket changes, as before.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusMap(
    pub BTreeMap<String, WorkflowStatus>,
    pub BTreeMap<String, std::time::Duration>,
);

impl StatusMap {
    /// Adds or replaces `key` (a rule's entry over a `[defaults]` one): the new entry's
    /// duration, or none, replaces the old one's.
    pub fn set(
        &mut self,
        key: String,
        status: WorkflowStatus,
        acceptance: Option<std::time::Duration>,
    ) {
        match acceptance {
            Some(d) => self.1.insert(key.clone(), d),
            None => self.1.remove(&key),
        };
        self.0.insert(key, status);
    }

    /// Every entry of `other` over this map's.
    pub fn extend(&mut self, other: StatusMap) {
        let StatusMap(statuses, mut durations) = other;
        for (key, status) in statuses {
            let acceptance = durations.remove(&key);
            self.set(key, status, acceptance);
        }
    }
}

/// One rule of one team's mapping file, with `[defaults]` already merged in.
#[derive(Debug, Clone)]
pub struct Rule {
    pub team: Arc<str>,
    pub name: Arc<str>,
    /// Lower first; ties by file name, then position in the file.
    pub order: i64,
    /// File the rule came from (for errors and tie-breaking).
    pub file: PathBuf,
    /// Index of the rule within its file.
    pub position: usize,
    /// 1-based line of the `[[rules]]` header in `file`.
    pub line: usize,
    /// Stop evaluating further rules (of any team) for this finding once this one matched
    /// (default true), like an automation rule's `IsTerminal`.
    pub terminal: bool,
    /// Connection name (`jira`, `servicenow`).
    pub target: String,
    pub criteria: Criteria,
    pub ticket: TicketSpec,
    pub status_map: StatusMap,
    pub on_resolved: OnResolved,
    pub on_recurrence: OnRecurrence,
    /// A fixed label or a template that yields one; applied before the ticket templates render.
    pub severity_override: Option<Template>,
    /// Write NOTIFIED + a note naming the ticket back to Security Hub after creating it.
    pub notify_on_create: bool,
    /// `enrich = { detective = true }`: after creating the ticket, investigate the finding's IAM
    /// principal with Amazon Detective and comment the result (best effort, never blocking).
    pub enrich_detective: bool,
    /// `sla`: due date by severity (empty: no due dates).
    pub sla: crate::mapping::sla::Sla,
    /// `escalate`: what happens once when an open ticket passes its due date.
    pub escalate: Option<crate::mapping::sla::Escalate>,
    /// `group_by` (and the group ticket templates): findings of the team with the same group key
    /// share one ticket. `None`: one ticket per finding, as without the key.
    pub group: Option<crate::mapping::group::GroupSpec>,
}

/// A team's mapping file.
#[derive(Debug, Clone)]
pub struct Team {
    pub name: Arc<str>,
    pub description: Option<String>,
    pub file: PathBuf,
}
