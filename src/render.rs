//! Payload builders: one routed (finding, rule) pair → the exact create body for Jira or
//! ServiceNow.
//!
//! Templates only ever produce field *values*; the JSON body is assembled here, so finding text
//! can never change its structure. Every text value is cut to the target's limit with a visible
//! [`TRUNCATION_MARK`](crate::mapping::template::TRUNCATION_MARK), because an over-long field is a 400 from the ticket system and a 400 sends
//! the finding to the dead-letter queue.
//!
//! Keys the bridge owns win over a rule's `fields` table of the same name (see
//! [`JIRA_RESERVED_FIELDS`], [`SERVICENOW_RESERVED_FIELDS`]): those entries are dropped, so a
//! mapping file can neither clobber the marker that dedup depends on nor send a description Jira
//! Cloud would reject for not being ADF. The loader may reject them outright.

use std::sync::Arc;

use minijinja::value::Value as Ctx;
use serde_json::{Map, Value, json};

use crate::finding::{Finding, Severity};
use crate::mapping::context::Application;
use crate::mapping::sla::SlaState;
use crate::mapping::spec::{FieldTemplate, JiraSpec, Rule, ServiceNowSpec, TargetKind, TicketSpec};
use crate::mapping::template::{Template, TemplateEngine, TemplateError, cut_to_limit};
use crate::marker::{BRIDGE_LABEL, Marker};
pub use crate::ticket::jira::format::{JIRA_TEXT_LIMIT, JiraFlavor, jira_rich_text};

mod context;
mod group;
mod sla;

pub use context::template_context;
use context::{FindingView, context_from, context_with};
pub use group::{GroupRoute, RenderedGroup, group_key, render_group};
pub use sla::is_due_field;

/// Jira `summary`: at most 255 characters, one line.
pub const JIRA_SUMMARY_LIMIT: usize = 255;
/// Jira labels.
pub const JIRA_LABEL_LIMIT: usize = 255;
/// ServiceNow `short_description`.
pub const SERVICENOW_SHORT_DESCRIPTION_LIMIT: usize = 160;
/// ServiceNow `description`.
pub const SERVICENOW_DESCRIPTION_LIMIT: usize = 4_000;

/// `fields` keys that the explicit `[rules.jira]` keys own; a `fields` entry with one of these
/// names is ignored.
pub const JIRA_RESERVED_FIELDS: [&str; 6] = [
    "project",
    "issuetype",
    "summary",
    "description",
    "priority",
    "labels",
];

/// `fields` keys that the explicit `[rules.servicenow]` keys and the dedup marker own.
pub const SERVICENOW_RESERVED_FIELDS: [&str; 7] = [
    "short_description",
    "description",
    "urgency",
    "impact",
    "assignment_group",
    "correlation_id",
    "correlation_display",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RenderOptions {
    pub jira: JiraFlavor,
}

/// What one route renders to.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedTicket {
    /// Which kind of system `payload` is for.
    pub kind: TargetKind,
    pub marker: Marker,
    /// The severity the templates saw: the rule's override when it has one.
    pub severity: Severity,
    /// Why `severity` differs from the finding's own, naming the rule and the application; `None`
    /// when it does not. The lifecycle puts it in the note written back to Security Hub, so the
    /// people looking at the finding there see who raised it and on what grounds.
    pub severity_note: Option<String>,
    /// The exact create request body.
    pub payload: Value,
    /// ServiceNow table of the rule; `None` for Jira.
    pub table: Option<String>,
    /// The due date and the rendered escalation, when the rule has an `sla` and the severity an
    /// entry (the due date is also in `payload`).
    pub sla: Option<SlaState>,
    /// The rule has an `sla`: a severity change sets the due date field, or clears it for a
    /// severity without an entry.
    pub sla_rule: bool,
    /// The group this ticket is for, when the rule has `group_by`: `payload` is then the group
    /// ticket's create body (summary, description and marker of the group).
    pub group: Option<GroupRoute>,
}

impl RenderedTicket {
    /// The fields that follow the finding's severity, for updating an existing ticket when the
    /// severity changes: Jira `{"priority": …}`, ServiceNow `{"urgency", "impact"}`; only those
    /// the rule sets.
    pub fn severity_fields(&self) -> Map<String, Value> {
        let (source, keys): (Option<&Map<String, Value>>, &[&str]) = match self.kind {
            TargetKind::Jira => (
                self.payload.get("fields").and_then(Value::as_object),
                &["priority"],
            ),
            TargetKind::ServiceNow => (self.payload.as_object(), &["urgency", "impact"]),
        };
        let mut out = Map::new();
        if let Some(source) = source {
            for key in keys {
                if let Some(v) = source.get(*key) {
                    out.insert((*key).to_owned(), v.clone());
                }
            }
        }
        if self.sla_rule {
            sla::due_field(self.kind, source, &mut out);
        }
        out
    }
}

/// A route that cannot render. Permanent: the same finding and rule fail the same way, so the
/// message goes to the dead-letter queue with this text, which names the rule and field to fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(
        "rule {rule}: severity_override rendered {value:?}; expected INFORMATIONAL, LOW, MEDIUM, HIGH or CRITICAL"
    )]
    InvalidSeverityOverride { rule: String, value: String },
    #[error("rule {rule}: {field} rendered {value:?}; ServiceNow accepts 1, 2 or 3")]
    InvalidChoice {
        rule: String,
        field: &'static str,
        value: String,
    },
    #[error("rule {rule}: {field} rendered empty, but the ticket system requires it")]
    EmptyField { rule: String, field: &'static str },
    #[error("rule {rule}: fields.{field} holds a number JSON cannot represent (NaN or infinity)")]
    NonFiniteNumber { rule: String, field: String },
    #[error(
        "rule {rule}: group_by rendered empty for this finding; every group needs a key (give the \
         template a fallback, e.g. `| default(\"none\")`, or narrow the rule's criteria)"
    )]
    EmptyGroupKey { rule: String },
    #[error("rule {rule} has no group_by: it opens one ticket per finding, not group tickets")]
    NotGrouped { rule: String },
}

/// `team/rule (file:line)`: enough for the mapping owner to find the rule.
fn rule_label(rule: &Rule) -> String {
    format!(
        "{}/{} ({}:{})",
        rule.team,
        rule.name,
        rule.file.display(),
        rule.line
    )
}

/// The write-back note's reason for an overridden severity: the rule (so the mapping owner can
/// be found) and, when there is one, the application whose criticality justified it.
fn severity_note(
    rule: &Rule,
    original: Severity,
    severity: Severity,
    application: Option<&Application>,
) -> Option<String> {
    if severity == original {
        return None;
    }
    let verb = if severity > original {
        "raised"
    } else {
        "lowered"
    };
    let mut note = format!(
        "Severity {verb} from {original} to {severity} by mapping rule {}/{}",
        rule.team, rule.name
    );
    match application {
        Some(app) => note.push_str(&format!(
            ": the finding belongs to application {} (criticality {}, owner {}).",
            app.name, app.criticality, app.owner
        )),
        None => note.push('.'),
    }
    Some(note)
}

/// Renders the ticket payload of one route: evaluates the severity override, builds the context
/// once, renders every field and assembles the create body. `application` is what routing saw
/// (`Mappings::application_for`), so the override and the templates judge the same facts.
///
/// Copies the finding once for the templates; [`render_route_shared`] avoids that copy when the
/// caller already holds the finding in an `Arc`.
pub fn render_route(
    engine: &TemplateEngine,
    rule: &Rule,
    finding: &Finding,
    application: Option<&Application>,
    opts: &RenderOptions,
) -> Result<RenderedTicket, RenderError> {
    render_route_shared(engine, rule, &Arc::new(finding.clone()), application, opts)
}

/// [`render_route`] over a shared finding: the templates read it in place.
pub fn render_route_shared(
    engine: &TemplateEngine,
    rule: &Rule,
    finding: &Arc<Finding>,
    application: Option<&Application>,
    opts: &RenderOptions,
) -> Result<RenderedTicket, RenderError> {
    let view = FindingView::new(Arc::clone(finding), finding.severity);
    let severity = effective_severity(engine, rule, &view, application)?;
    let ctx = context_from(&view.with_severity(severity), rule, application);
    let marker = Marker::new(&rule.team, &finding.id);
    if rule.group.is_some() {
        return group::render_single(engine, rule, finding, severity, &ctx, application, opts);
    }
    let r = Renderer {
        engine,
        rule,
        ctx,
        group: None,
    };
    let (mut payload, table) = match &rule.ticket {
        TicketSpec::Jira(spec) => (r.jira(spec, &marker, opts.jira)?, None),
        TicketSpec::ServiceNow(spec) => (r.servicenow(spec, &marker)?, Some(spec.table.clone())),
    };
    let sla = r.sla(finding, severity, &mut payload)?;
    Ok(RenderedTicket {
        kind: rule.ticket.kind(),
        marker,
        severity,
        severity_note: severity_note(rule, finding.severity, severity, application),
        payload,
        table,
        sla,
        sla_rule: !rule.sla.0.is_empty(),
        group: None,
    })
}

/// The severity the rule's templates see for the finding behind `view`: the rule's
/// `severity_override` when it has one, else the finding's own.
fn effective_severity(
    engine: &TemplateEngine,
    rule: &Rule,
    view: &Arc<FindingView>,
    application: Option<&Application>,
) -> Result<Severity, RenderError> {
    let Some(template) = &rule.severity_override else {
        return Ok(view.severity);
    };
    let ctx = context_from(view, rule, application);
    let value = engine.render(template, &ctx)?;
    Severity::from_label(value.trim()).ok_or_else(|| RenderError::InvalidSeverityOverride {
        rule: rule_label(rule),
        value,
    })
}

struct Renderer<'a> {
    engine: &'a TemplateEngine,
    rule: &'a Rule,
    ctx: Ctx,
    /// A group ticket's summary and description, rendered from the group templates, in place of
    /// the rule's own.
    group: Option<&'a group::GroupTexts>,
}

impl Renderer<'_> {
    fn text(&self, template: &Template) -> Result<String, RenderError> {
        Ok(self.engine.render(template, &self.ctx)?)
    }

    /// An optional value: absent or rendered empty both mean "leave the key out".
    fn optional(&self, template: Option<&Template>) -> Result<Option<String>, RenderError> {
        match template {
            None => Ok(None),
            Some(t) => {
                let s = self.text(t)?;
                Ok((!s.trim().is_empty()).then_some(s))
            }
        }
    }

    fn required(&self, template: &Template, field: &'static str) -> Result<String, RenderError> {
        let s = self.text(template)?;
        if s.trim().is_empty() {
            return Err(RenderError::EmptyField {
                rule: rule_label(self.rule),
                field,
            });
        }
        Ok(s)
    }

    fn jira(
        &self,
        spec: &JiraSpec,
        marker: &Marker,
        flavor: JiraFlavor,
    ) -> Result<Value, RenderError> {
        let mut fields =
            self.extra_fields(&spec.fields, &JIRA_RESERVED_FIELDS, Some(JIRA_TEXT_LIMIT))?;
        let project = self.required(&spec.project, "project")?;
        let issue_type = self.required(&spec.issue_type, "issue_type")?;
        let summary = one_line(&self.summary(&spec.summary, "summary")?);
        fields.insert("project".into(), json!({"key": project.trim()}));
        fields.insert("issuetype".into(), json!({"name": issue_type.trim()}));
        fields.insert(
            "summary".into(),
            Value::from(cut_to_limit(&summary, JIRA_SUMMARY_LIMIT).into_owned()),
        );
        if let Some(description) = self.description(spec.description.as_ref())? {
            fields.insert("description".into(), jira_rich_text(flavor, &description));
        }
        if let Some(priority) = self.optional(spec.priority.as_ref())? {
            fields.insert("priority".into(), json!({"name": priority.trim()}));
        }
        let mut rendered = Vec::with_capacity(spec.labels.len());
        for label in &spec.labels {
            rendered.push(self.text(label)?);
        }
        fields.insert("labels".into(), Value::from(jira_labels(&rendered, marker)));
        Ok(json!({ "fields": fields }))
    }

    fn servicenow(&self, spec: &ServiceNowSpec, marker: &Marker) -> Result<Value, RenderError> {
        let mut body = self.extra_fields(&spec.fields, &SERVICENOW_RESERVED_FIELDS, None)?;
        let short = one_line(&self.summary(&spec.short_description, "short_description")?);
        body.insert(
            "short_description".into(),
            Value::from(cut_to_limit(&short, SERVICENOW_SHORT_DESCRIPTION_LIMIT).into_owned()),
        );
        if let Some(description) = self.description(spec.description.as_ref())? {
            body.insert(
                "description".into(),
                Value::from(cut_to_limit(&description, SERVICENOW_DESCRIPTION_LIMIT).into_owned()),
            );
        }
        for (field, template) in [("urgency", &spec.urgency), ("impact", &spec.impact)] {
            if let Some(value) = self.optional(template.as_ref())? {
                let value = value.trim();
                if !matches!(value, "1" | "2" | "3") {
                    return Err(RenderError::InvalidChoice {
                        rule: rule_label(self.rule),
                        field,
                        value: value.to_owned(),
                    });
                }
                body.insert(field.into(), Value::from(value));
            }
        }
        if let Some(group) = self.optional(spec.assignment_group.as_ref())? {
            body.insert("assignment_group".into(), Value::from(group.trim()));
        }
        body.insert("correlation_id".into(), Value::from(marker.as_str()));
        body.insert("correlation_display".into(), Value::from(BRIDGE_LABEL));
        Ok(Value::Object(body))
    }

    /// Renders a `fields` table, keeping TOML types; top-level entries that render to an empty
    /// string are left out (like the optional explicit keys), reserved names are skipped.
    fn extra_fields(
        &self,
        fields: &std::collections::BTreeMap<String, FieldTemplate>,
        reserved: &[&str],
        text_limit: Option<usize>,
    ) -> Result<Map<String, Value>, RenderError> {
        let mut out = Map::new();
        for (name, template) in fields {
            if reserved.contains(&name.as_str()) {
                continue;
            }
            let value = self.field(template, text_limit, name)?;
            if value.as_str().is_some_and(|s| s.is_empty()) {
                continue;
            }
            out.insert(name.clone(), value);
        }
        Ok(out)
    }

    /// Recursion follows the mapping file's own nesting (operator-written config), not finding
    /// data, so its depth is bounded by what someone typed.
    fn field(
        &self,
        template: &FieldTemplate,
        text_limit: Option<usize>,
        name: &str,
    ) -> Result<Value, RenderError> {
        Ok(match template {
            FieldTemplate::Text(t) => {
                let s = self.text(t)?;
                match text_limit {
                    Some(limit) => Value::from(cut_to_limit(&s, limit).into_owned()),
                    None => Value::from(s),
                }
            }
            FieldTemplate::Integer(i) => Value::from(*i),
            FieldTemplate::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .ok_or_else(|| RenderError::NonFiniteNumber {
                    rule: rule_label(self.rule),
                    field: name.to_owned(),
                })?,
            FieldTemplate::Bool(b) => Value::from(*b),
            FieldTemplate::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.field(item, text_limit, name))
                    .collect::<Result<_, _>>()?,
            ),
            FieldTemplate::Table(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), self.field(v, text_limit, name)?)))
                    .collect::<Result<_, RenderError>>()?,
            ),
        })
    }
}

/// Summaries and short descriptions are single-line fields: any whitespace or control run
/// becomes one space.
pub(crate) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The rule's labels made valid for Jira (no whitespace: runs become `-`; no empties; no
/// duplicates; at most 255 characters, the truncation mark's space also becoming `-`), followed
/// by the bridge label and the marker, which dedup and status sync search for.
fn jira_labels(rendered: &[String], marker: &Marker) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(rendered.len() + 2);
    let fixed = [BRIDGE_LABEL, marker.as_str()];
    for raw in rendered.iter().map(String::as_str).chain(fixed) {
        let joined = one_line(raw).replace(' ', "-");
        if joined.is_empty() {
            continue;
        }
        let label = cut_to_limit(&joined, JIRA_LABEL_LIMIT).replace(' ', "-");
        if !out.contains(&label) {
            out.push(label);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_collapses_whitespace_and_controls() {
        assert_eq!(one_line("  a\n\tb \r\n c\u{0}d  "), "a b c d");
        assert_eq!(one_line("\n\t "), "");
    }

    #[test]
    fn labels_are_sanitized_deduped_and_always_carry_the_marker() {
        let marker = Marker::new("payments", "f-1");
        let labels = jira_labels(
            &[
                "security hub".into(),
                "  ".into(),
                "security-hub".into(),
                "findings-bridge".into(),
                "x".repeat(300),
            ],
            &marker,
        );
        assert_eq!(labels[0], "security-hub");
        assert_eq!(labels[1], "findings-bridge");
        assert_eq!(labels[2].chars().count(), JIRA_LABEL_LIMIT);
        assert!(labels[2].ends_with("…-[truncated]"));
        assert_eq!(labels[3], marker.as_str());
        assert_eq!(labels.len(), 4);
        assert!(labels.iter().all(|l| !l.contains(char::is_whitespace)));
    }
}
