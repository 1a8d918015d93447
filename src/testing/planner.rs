//! [`FakePlanner`]: routes findings to teams by severity and renders a Jira-like payload carrying
//! the marker label, without mapping files or templates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::lock;
use crate::finding::{Finding, Severity};
use crate::mapping::group::{GroupItem, GroupView};
use crate::marker::Marker;
use crate::pipeline::lifecycle::{
    GroupTicket, PlanError, PlanFailure, PlannedTicket, Planner, RuleOptions, SeverityRefresh,
};

/// One route of the fake planner: findings whose severity is in `severities` go to `team`.
#[derive(Clone)]
pub struct Route {
    pub team: &'static str,
    pub rule: &'static str,
    pub target: &'static str,
    pub severities: Vec<Severity>,
    pub options: RuleOptions,
    pub severity_override: Option<Severity>,
    /// Groups the route's findings by this key (a rule with `group_by`).
    pub group_by: Option<fn(&Finding) -> String>,
}

impl Route {
    pub fn new(team: &'static str, severities: &[Severity]) -> Route {
        Route {
            team,
            rule: "main",
            target: "jira",
            severities: severities.to_vec(),
            options: RuleOptions::default(),
            severity_override: None,
            group_by: None,
        }
    }
}

/// A planner that routes by severity and renders a Jira-like payload with the marker label.
#[derive(Default)]
pub struct FakePlanner {
    pub routes: Mutex<Vec<Route>>,
    pub teams: Vec<Arc<str>>,
    /// Every route fails to render with this message while set.
    pub error: Mutex<Option<String>>,
    /// The routes of these teams fail to render (a template that fails on the finding).
    pub team_errors: Mutex<HashMap<&'static str, String>>,
}

impl FakePlanner {
    pub fn new(routes: Vec<Route>) -> FakePlanner {
        let mut teams: Vec<Arc<str>> = routes.iter().map(|r| Arc::from(r.team)).collect();
        teams.dedup();
        FakePlanner {
            routes: Mutex::new(routes),
            teams,
            error: Mutex::new(None),
            team_errors: Mutex::new(HashMap::new()),
        }
    }
}

pub fn priority(severity: Severity) -> serde_json::Map<String, serde_json::Value> {
    let mut fields = serde_json::Map::new();
    fields.insert(
        "priority".into(),
        serde_json::json!({ "name": severity.as_str() }),
    );
    fields
}

impl Planner for FakePlanner {
    fn plan(&self, finding: &Finding) -> Vec<Result<PlannedTicket, PlanFailure>> {
        let everything = lock(&self.error).clone();
        let by_team = lock(&self.team_errors).clone();
        lock(&self.routes)
            .iter()
            .filter(|r| r.severities.contains(&finding.severity))
            .map(|r| {
                if let Some(message) = everything.clone().or_else(|| by_team.get(r.team).cloned()) {
                    return Err(PlanFailure {
                        team: Arc::from(r.team),
                        rule: Arc::from(r.rule),
                        error: PlanError::new(message),
                    });
                }
                let marker = Marker::new(r.team, &finding.id);
                let severity = r.severity_override.unwrap_or(finding.severity);
                if let Some(group_by) = r.group_by {
                    let key = group_by(finding);
                    let view = GroupView::new(
                        key.clone(),
                        Marker::group(r.team, &key),
                        vec![GroupItem::of(finding, severity)],
                    );
                    let group = group_ticket(&view, finding);
                    return Ok(PlannedTicket {
                        team: Arc::from(r.team),
                        rule: Arc::from(r.rule),
                        target: r.target.to_owned(),
                        payload: group.payload,
                        marker,
                        table: None,
                        severity,
                        severity_note: None,
                        severity_fields: group.fields,
                        options: r.options,
                        sla: None,
                        group: Some(key),
                    });
                }
                Ok(PlannedTicket {
                    team: Arc::from(r.team),
                    rule: Arc::from(r.rule),
                    target: r.target.to_owned(),
                    payload: serde_json::json!({
                        "fields": { "summary": finding.title },
                        "labels": [marker.as_str(), crate::marker::BRIDGE_LABEL],
                    }),
                    marker,
                    table: None,
                    severity,
                    severity_note: None,
                    severity_fields: priority(severity),
                    options: r.options,
                    sla: None,
                    group: None,
                })
            })
            .collect()
    }

    fn teams(&self) -> Vec<Arc<str>> {
        self.teams.clone()
    }

    fn rule_options(&self, team: &str, rule: &str) -> Option<RuleOptions> {
        lock(&self.routes)
            .iter()
            .find(|r| r.team == team && r.rule == rule)
            .map(|r| r.options)
    }

    fn severity_refresh(
        &self,
        _team: &str,
        _rule: &str,
        _finding: &Finding,
    ) -> Result<Option<SeverityRefresh>, PlanError> {
        Ok(None)
    }

    fn render_group(
        &self,
        team: &str,
        rule: &str,
        finding: &Finding,
        view: &GroupView,
    ) -> Result<GroupTicket, PlanError> {
        let grouping = lock(&self.routes)
            .iter()
            .any(|r| r.team == team && r.rule == rule && r.group_by.is_some());
        if !grouping {
            return Err(PlanError::new(format!("{team}/{rule} does not group")));
        }
        Ok(group_ticket(view, finding))
    }
}

/// The fake's group ticket: the key and open count as summary, one line per item (`[x]` when
/// resolved) as description, priority by the highest open severity, and a due date taken from
/// the processed finding (as a real SLA counts from that finding's first observation).
pub fn group_ticket(view: &GroupView, finding: &Finding) -> GroupTicket {
    let summary = format!("{}: {} open", view.key, view.open_count());
    let description = view
        .items
        .iter()
        .map(|i| {
            format!(
                "[{}] {} {}",
                if i.resolved { "x" } else { " " },
                i.severity,
                i.id
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let severity = view.max_severity();
    let mut fields = priority(severity);
    fields.insert("summary".into(), summary.clone().into());
    fields.insert("description".into(), description.clone().into());
    fields.insert(
        "duedate".into(),
        finding.updated_at.clone().unwrap_or_default().into(),
    );
    GroupTicket {
        payload: serde_json::json!({
            "fields": { "summary": summary, "description": description },
            "labels": [view.marker.as_str(), crate::marker::BRIDGE_LABEL],
        }),
        table: None,
        fields,
        severity,
        sla: None,
    }
}
