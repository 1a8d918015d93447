//! `sla` and `escalate` in `[defaults]` and `[[rules]]`: parsed, validated against the rule's
//! ticket kind, and merged (a rule's `sla` entries override the defaults' per severity, `"none"`
//! removes one; a rule's `escalate` replaces the defaults' as a whole).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::templates::{FieldsRaw, Text};
use super::{FileCtx, Loader};
use crate::finding::Severity;
use crate::mapping::duration::parse as parse_duration;
use crate::mapping::sla::{Escalate, JIRA_PRIORITY_ORDER, PriorityRaise};
use crate::mapping::spec::{FieldTemplate, TargetKind, TicketSpec};

/// `sla = { CRITICAL = "1d", … }` as written.
pub(super) type SlaRaw = BTreeMap<String, Text>;

/// `escalate = { … }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EscalateRaw {
    priority: Option<Text>,
    priority_order: Option<Vec<Text>>,
    labels: Option<Vec<Text>>,
    comment: Option<Text>,
    notify: Option<FieldsRaw>,
}

/// One file's or one rule's SLA entries: `Some(duration)` sets, `None` (`"none"`) removes.
pub(super) type SlaEntries = BTreeMap<Severity, Option<std::time::Duration>>;

/// `escalate` compiled, with the line of its table for errors that need the rule's kind.
#[derive(Debug, Clone)]
pub(super) struct EscalateAt {
    pub(super) escalate: Escalate,
    pub(super) line: usize,
}

impl Loader {
    pub(super) fn sla_entries(&mut self, ctx: &FileCtx<'_>, path: &str, raw: SlaRaw) -> SlaEntries {
        let mut out = SlaEntries::new();
        for (severity, value) in raw {
            let Some(label) = Severity::from_label(&severity).filter(|s| s.as_str() == severity)
            else {
                self.error_at(
                    ctx,
                    value.span(),
                    format!(
                        "{path}: {severity:?} is not a severity label (INFORMATIONAL, LOW, MEDIUM, \
                         HIGH, CRITICAL)"
                    ),
                );
                continue;
            };
            if value.get_ref().trim() == "none" {
                out.insert(label, None);
                continue;
            }
            match parse_duration(value.get_ref()) {
                Ok(d) => {
                    out.insert(label, Some(d));
                }
                Err(e) => self.error_at(ctx, value.span(), format!("{path}.{severity}: {e}")),
            }
        }
        out
    }

    pub(super) fn escalate(
        &mut self,
        ctx: &FileCtx<'_>,
        path: &str,
        raw: Spanned<EscalateRaw>,
    ) -> Option<EscalateAt> {
        let line = ctx.line(raw.span().start);
        let raw = raw.into_inner();
        let priority = raw.priority.map(|p| match p.get_ref().trim() {
            "raise" => PriorityRaise::Step,
            value => PriorityRaise::To(value.to_owned()),
        });
        let priority_order = match raw.priority_order {
            Some(order) => order.into_iter().map(|t| t.into_inner()).collect(),
            None => JIRA_PRIORITY_ORDER.map(str::to_owned).to_vec(),
        };
        let mut labels = Vec::new();
        for label in raw.labels.unwrap_or_default() {
            if label.get_ref().trim().is_empty() || label.get_ref().contains(char::is_whitespace) {
                self.error_at(
                    ctx,
                    label.span(),
                    format!(
                        "{path}.labels: {:?}: a Jira label is one word",
                        label.get_ref()
                    ),
                );
                continue;
            }
            labels.push(label.into_inner());
        }
        let comment = raw
            .comment
            .and_then(|c| self.template(ctx, &format!("{path}.comment"), &c));
        let notify = self.fields(ctx, &format!("{path}.notify"), raw.notify, &[]);
        Some(EscalateAt {
            escalate: Escalate {
                priority,
                priority_order,
                labels,
                comment,
                notify,
            },
            line,
        })
    }

    /// What only the rule's ticket kind decides: labels and a priority order are Jira's, a
    /// ServiceNow priority is an urgency, `escalate` needs an SLA, and the due date field is the
    /// bridge's once the rule has an SLA.
    pub(super) fn check_sla(
        &mut self,
        ctx: &FileCtx<'_>,
        what: &str,
        header_line: usize,
        has_sla: bool,
        escalate: Option<&EscalateAt>,
        ticket: &TicketSpec,
    ) {
        let (due_field, fields): (&str, &BTreeMap<String, FieldTemplate>) = match ticket {
            TicketSpec::Jira(spec) => ("duedate", &spec.fields),
            TicketSpec::ServiceNow(spec) => ("due_date", &spec.fields),
        };
        if has_sla && fields.contains_key(due_field) {
            self.error(
                ctx,
                header_line,
                format!(
                    "{what}: has an `sla` and sets fields.{due_field}; the SLA sets the due date \
                     (remove one)"
                ),
            );
        }
        let Some(EscalateAt { escalate, line }) = escalate else {
            return;
        };
        if !has_sla {
            self.error(
                ctx,
                *line,
                format!("{what}: `escalate` needs an `sla` (in the rule or [defaults])"),
            );
        }
        if ticket.kind() == TargetKind::ServiceNow {
            if !escalate.labels.is_empty() {
                self.error(
                    ctx,
                    *line,
                    format!("{what}: escalate.labels are Jira labels; a ServiceNow rule has none"),
                );
            }
            if let Some(PriorityRaise::To(value)) = &escalate.priority
                && !matches!(value.as_str(), "1" | "2" | "3")
            {
                self.error(
                    ctx,
                    *line,
                    format!(
                        "{what}: escalate.priority {value:?}: a ServiceNow priority is raised \
                         through urgency, `1`–`3` (or \"raise\")"
                    ),
                );
            }
        }
    }
}

/// The defaults' entries with the rule's on top; `"none"` entries drop out.
pub(super) fn merged_sla(
    defaults: &SlaEntries,
    rule: Option<SlaEntries>,
) -> crate::mapping::sla::Sla {
    let mut all = defaults.clone();
    all.extend(rule.unwrap_or_default());
    crate::mapping::sla::Sla(
        all.into_iter()
            .filter_map(|(s, d)| d.map(|d| (s, d)))
            .collect(),
    )
}
