//! `[defaults]` and `[[rules]]`: each rule compiled on its own (criteria, target, ticket keys,
//! lifecycle settings) with the file's defaults filled in where the rule leaves a key out.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::group::{GroupDefaults, GroupRaw};
use super::jira::{JiraPartial, JiraRaw};
use super::servicenow::{ServiceNowPartial, ServiceNowRaw};
use super::sla::{EscalateAt, EscalateRaw, SlaEntries, SlaRaw, merged_sla};
use super::templates::Text;
use super::{FileCtx, Loader};
use crate::finding::{Severity, WorkflowStatus};
use crate::mapping::connection_kind;
use crate::mapping::criteria::{Criteria, CriteriaRaw};
use crate::mapping::spec::{OnRecurrence, OnResolved, Rule, StatusMap, TargetKind, TicketSpec};
use crate::mapping::template::Template;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DefaultsRaw {
    target: Option<Text>,
    terminal: Option<bool>,
    on_resolved: Option<OnResolved>,
    on_recurrence: Option<OnRecurrence>,
    notify_on_create: Option<bool>,
    severity_override: Option<Text>,
    status_map: Option<BTreeMap<String, Spanned<toml::Value>>>,
    enrich: Option<EnrichRaw>,
    jira: Option<JiraRaw>,
    servicenow: Option<ServiceNowRaw>,
    sla: Option<SlaRaw>,
    escalate: Option<Spanned<EscalateRaw>>,
    group_by: Option<Text>,
    group_summary: Option<Text>,
    group_description: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleRaw {
    pub(super) name: Text,
    pub(super) order: Spanned<i64>,
    terminal: Option<bool>,
    target: Option<Text>,
    criteria: Option<CriteriaRaw>,
    jira: Option<Spanned<JiraRaw>>,
    servicenow: Option<Spanned<ServiceNowRaw>>,
    on_resolved: Option<OnResolved>,
    on_recurrence: Option<OnRecurrence>,
    notify_on_create: Option<bool>,
    severity_override: Option<Text>,
    status_map: Option<BTreeMap<String, Spanned<toml::Value>>>,
    enrich: Option<EnrichRaw>,
    sla: Option<SlaRaw>,
    escalate: Option<Spanned<EscalateRaw>>,
    group_by: Option<Text>,
    group_summary: Option<Text>,
    group_description: Option<Text>,
}

/// `enrich = { detective = true }`: optional enrichment after a ticket is created.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrichRaw {
    detective: Option<bool>,
}

/// `[defaults]` compiled once per file, so a broken default is reported once, not per rule.
#[derive(Default)]
pub(super) struct Defaults {
    /// Connection name and the line it was set on.
    target: Option<(String, usize)>,
    terminal: Option<bool>,
    on_resolved: Option<OnResolved>,
    on_recurrence: Option<OnRecurrence>,
    notify_on_create: Option<bool>,
    severity_override: Option<Template>,
    status_map: StatusMap,
    enrich: EnrichRaw,
    jira: Option<JiraPartial>,
    servicenow: Option<ServiceNowPartial>,
    sla: SlaEntries,
    escalate: Option<EscalateAt>,
    group: GroupDefaults,
}

impl Loader {
    pub(super) fn compile_defaults(&mut self, ctx: &FileCtx<'_>, raw: DefaultsRaw) -> Defaults {
        let target = raw.target.map(|t| {
            let line = ctx.line(t.span().start);
            if connection_kind(t.get_ref()).is_none() {
                self.error(ctx, line, unknown_target(t.get_ref()));
            }
            (t.into_inner(), line)
        });
        let severity_override = raw
            .severity_override
            .and_then(|s| self.severity_override(ctx, "defaults.severity_override", &s));
        let status_map = raw
            .status_map
            .map(|m| self.status_map(ctx, "defaults.status_map", m))
            .unwrap_or_default();
        let jira = raw.jira.map(|j| self.jira(ctx, "defaults.jira", j));
        let servicenow = raw
            .servicenow
            .map(|s| self.servicenow(ctx, "defaults.servicenow", s));
        let sla = raw
            .sla
            .map(|m| self.sla_entries(ctx, "defaults.sla", m))
            .unwrap_or_default();
        let escalate = raw
            .escalate
            .and_then(|e| self.escalate(ctx, "defaults.escalate", e));
        let group = self.group_defaults(
            ctx,
            GroupRaw {
                by: raw.group_by,
                summary: raw.group_summary,
                description: raw.group_description,
            },
        );
        Defaults {
            target,
            terminal: raw.terminal,
            on_resolved: raw.on_resolved,
            on_recurrence: raw.on_recurrence,
            notify_on_create: raw.notify_on_create,
            severity_override,
            status_map,
            enrich: raw.enrich.unwrap_or_default(),
            jira,
            servicenow,
            sla,
            escalate,
            group,
        }
    }

    pub(super) fn compile_rule(
        &mut self,
        ctx: &FileCtx<'_>,
        defaults: &Defaults,
        position: usize,
        header_line: usize,
        raw: RuleRaw,
        team: &str,
    ) -> Option<Rule> {
        let errors_before = self.errors.len();
        let name = raw.name.get_ref().trim().to_owned();
        let at = format!("rules[{position}]");
        let what = format!("{at} (`{name}`)");
        if name.is_empty() {
            self.error_at(
                ctx,
                raw.name.span(),
                format!("{at}: `name` must not be empty"),
            );
        }

        let criteria = match raw.criteria.map(CriteriaRaw::compile) {
            None => Criteria::default(),
            Some(Ok(c)) => c,
            Some(Err(errors)) => {
                for e in errors {
                    self.error_at(ctx, e.span, format!("{at}.criteria: {}", e.message));
                }
                Criteria::default()
            }
        };

        let kind = match (&raw.jira, &raw.servicenow) {
            (Some(_), None) => Some(TargetKind::Jira),
            (None, Some(_)) => Some(TargetKind::ServiceNow),
            _ => None,
        };
        let group_raw = GroupRaw {
            by: raw.group_by,
            summary: raw.group_summary,
            description: raw.group_description,
        };
        let group = self.group(ctx, &at, &what, &defaults.group, kind, group_raw);

        let ticket = match (raw.jira, raw.servicenow) {
            (Some(_), Some(_)) => {
                self.error(
                    ctx,
                    header_line,
                    format!(
                        "{what}: has both [rules.jira] and [rules.servicenow]; a rule opens one \
                         kind of ticket (split it into two rules)"
                    ),
                );
                None
            }
            (None, None) => {
                self.error(
                    ctx,
                    header_line,
                    format!(
                        "{what}: needs a [rules.jira] or [rules.servicenow] table (it may be \
                         empty when [defaults] fills it)"
                    ),
                );
                None
            }
            (Some(jira), None) => {
                let line = ctx.line(jira.span().start);
                let partial = self
                    .jira(ctx, &format!("{at}.jira"), jira.into_inner())
                    .merged_over(defaults.jira.as_ref())
                    .group_texts(group.as_ref());
                self.finish_jira(ctx, &what, line, partial)
                    .map(TicketSpec::Jira)
            }
            (None, Some(sn)) => {
                let line = ctx.line(sn.span().start);
                let partial = self
                    .servicenow(ctx, &format!("{at}.servicenow"), sn.into_inner())
                    .merged_over(defaults.servicenow.as_ref())
                    .group_texts(group.as_ref());
                self.finish_servicenow(ctx, &what, line, partial)
                    .map(TicketSpec::ServiceNow)
            }
        };

        let target = match (&raw.target, &defaults.target) {
            (Some(t), _) => {
                let line = ctx.line(t.span().start);
                Some((t.get_ref().clone(), line, ""))
            }
            (None, Some((t, _))) => Some((t.clone(), header_line, " (from [defaults])")),
            (None, None) => None,
        };
        let target = match (target, &ticket) {
            (None, Some(ticket)) => Some(ticket.kind().as_str().to_owned()),
            (None, None) => None,
            (Some((name, line, origin)), ticket) => match connection_kind(&name) {
                None => {
                    // Defaults already reported an unknown default target.
                    if origin.is_empty() {
                        self.error(ctx, line, format!("{what}: {}", unknown_target(&name)));
                    }
                    None
                }
                Some(kind) => {
                    if let Some(ticket) = ticket
                        && ticket.kind() != kind
                    {
                        self.error(
                            ctx,
                            line,
                            format!(
                                "{what}: target `{name}`{origin} is a {} connection but the rule \
                                 has a [rules.{}] table",
                                kind_title(kind),
                                ticket.kind().as_str()
                            ),
                        );
                    }
                    Some(name)
                }
            },
        };

        let severity_override = match raw.severity_override {
            Some(s) => self.severity_override(ctx, &format!("{at}.severity_override"), &s),
            None => defaults.severity_override.clone(),
        };
        let mut status_map = defaults.status_map.clone();
        if let Some(m) = raw.status_map {
            status_map.extend(self.status_map(ctx, &format!("{at}.status_map"), m));
        }

        let sla = merged_sla(
            &defaults.sla,
            raw.sla
                .map(|m| self.sla_entries(ctx, &format!("{at}.sla"), m)),
        );
        let escalate = match raw.escalate {
            Some(e) => self.escalate(ctx, &format!("{at}.escalate"), e),
            None => defaults.escalate.clone(),
        };
        if let Some(ticket) = &ticket {
            self.check_sla(
                ctx,
                &what,
                header_line,
                !sla.0.is_empty(),
                escalate.as_ref(),
                ticket,
            );
        }

        if self.errors.len() > errors_before {
            return None;
        }
        Some(Rule {
            team: Arc::from(team),
            name: Arc::from(name.as_str()),
            order: raw.order.into_inner(),
            file: ctx.path.to_path_buf(),
            position,
            line: header_line,
            terminal: raw.terminal.or(defaults.terminal).unwrap_or(true),
            target: target?,
            criteria,
            ticket: ticket?,
            status_map,
            on_resolved: raw.on_resolved.or(defaults.on_resolved).unwrap_or_default(),
            on_recurrence: raw
                .on_recurrence
                .or(defaults.on_recurrence)
                .unwrap_or_default(),
            severity_override,
            notify_on_create: raw
                .notify_on_create
                .or(defaults.notify_on_create)
                .unwrap_or(true),
            enrich_detective: raw
                .enrich
                .and_then(|e| e.detective)
                .or(defaults.enrich.detective)
                .unwrap_or(false),
            sla,
            escalate: escalate.map(|e| e.escalate),
            group,
        })
    }

    fn severity_override(
        &mut self,
        ctx: &FileCtx<'_>,
        path: &str,
        text: &Text,
    ) -> Option<Template> {
        let t = self.template(ctx, path, text)?;
        match &t {
            Template::Compiled { .. } => Some(t),
            Template::Literal(label) => match Severity::from_label(label.trim()) {
                Some(s) => Some(Template::Literal(s.as_str().to_owned())),
                None => {
                    self.error_at(
                        ctx,
                        text.span(),
                        format!(
                            "{path}: {label:?} is not a severity label (INFORMATIONAL, LOW, \
                             MEDIUM, HIGH, CRITICAL) nor a template"
                        ),
                    );
                    None
                }
            },
        }
    }

    fn status_map(
        &mut self,
        ctx: &FileCtx<'_>,
        path: &str,
        raw: BTreeMap<String, Spanned<toml::Value>>,
    ) -> StatusMap {
        let mut out = StatusMap::default();
        for (status, value) in raw {
            let span = value.span();
            if let Some(category) = status.strip_prefix("category:")
                && !["new", "indeterminate", "done"].contains(&category)
            {
                self.error_at(
                    ctx,
                    span,
                    format!(
                        "{path}: {status:?}: Jira status categories are `new`, `indeterminate`, \
                         `done`"
                    ),
                );
                continue;
            }
            if let Some(state) = status.strip_prefix("state:")
                && state.parse::<u32>().is_err()
            {
                self.error_at(
                    ctx,
                    span,
                    format!("{path}: {status:?}: a ServiceNow state is a number (`state:6`)"),
                );
                continue;
            }
            let (name, acceptance) = match status_value(value.into_inner()) {
                Ok(parts) => parts,
                Err(why) => {
                    self.error_at(ctx, span, format!("{path}: {status:?}: {why}"));
                    continue;
                }
            };
            let Some(workflow) = WorkflowStatus::parse(&name) else {
                self.error_at(
                    ctx,
                    span,
                    format!(
                        "{path}: {status:?} maps to {name:?}, which is not a workflow status (NEW, \
                         NOTIFIED, RESOLVED, SUPPRESSED)"
                    ),
                );
                continue;
            };
            let acceptance = match acceptance.map(|text| crate::mapping::duration::parse(&text)) {
                None => None,
                Some(Ok(d)) if workflow == WorkflowStatus::Suppressed => Some(d),
                // Only a suppression hides a finding, so only it can run out: RESOLVED is
                // Security Hub's to undo (the finding recurs), NEW and NOTIFIED are open already.
                Some(Ok(_)) => {
                    self.error_at(
                        ctx,
                        span,
                        format!(
                            "{path}: {status:?}: `for` applies to SUPPRESSED only (an acceptance \
                             that expires), not to {}",
                            workflow.as_str()
                        ),
                    );
                    continue;
                }
                Some(Err(why)) => {
                    self.error_at(ctx, span, format!("{path}: {status:?}: for: {why}"));
                    continue;
                }
            };
            out.set(status, workflow, acceptance);
        }
        out
    }
}

/// A status map value: `"SUPPRESSED"`, or `{ status = "SUPPRESSED", for = "90d" }` (`for`
/// optional). Returns the workflow status text and the duration text.
fn status_value(value: toml::Value) -> Result<(String, Option<String>), String> {
    const FORM: &str = "a status map value is a workflow status (\"SUPPRESSED\") or a table \
                        { status = \"SUPPRESSED\", for = \"90d\" }";
    match value {
        toml::Value::String(name) => Ok((name, None)),
        toml::Value::Table(mut table) => {
            let status = match table.remove("status") {
                Some(toml::Value::String(name)) => name,
                Some(_) => return Err(format!("status must be a string; {FORM}")),
                None => return Err(format!("status is missing; {FORM}")),
            };
            let duration = match table.remove("for") {
                Some(toml::Value::String(text)) => Some(text),
                Some(_) => return Err(format!("for must be a string such as \"90d\"; {FORM}")),
                None => None,
            };
            if let Some(unknown) = table.keys().next() {
                return Err(format!("unknown key {unknown:?}; {FORM}"));
            }
            Ok((status, duration))
        }
        _ => Err(FORM.to_owned()),
    }
}

fn unknown_target(name: &str) -> String {
    format!("unknown target `{name}` (known connections: `jira`, `servicenow`)")
}

fn kind_title(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Jira => "Jira",
        TargetKind::ServiceNow => "ServiceNow",
    }
}
