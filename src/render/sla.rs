//! The SLA part of a rendered ticket: the due date in the create body (Jira `duedate`,
//! ServiceNow `due_date`) and the escalation the rule's `escalate` renders for this finding,
//! which the record keeps so the escalation loop needs nothing but the store.

use serde_json::{Map, Value, json};

use super::{JIRA_TEXT_LIMIT, RenderError, Renderer};
use crate::finding::{Finding, Severity};
use crate::mapping::sla::{
    PriorityRaise, RenderedEscalation, SlaState, jira_due_date, servicenow_due_date,
};
use crate::mapping::spec::TargetKind;

/// The due date field of a ticket kind.
fn due_key(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Jira => "duedate",
        TargetKind::ServiceNow => "due_date",
    }
}

/// Whether `field` is the due date field of either ticket system (`duedate`, `due_date`).
pub fn is_due_field(field: &str) -> bool {
    field == due_key(TargetKind::Jira) || field == due_key(TargetKind::ServiceNow)
}

/// Adds the due date field of a rule with an `sla` to a severity update: the rendered one, or
/// the value that clears it (the new severity has no SLA entry).
pub(super) fn due_field(
    kind: TargetKind,
    source: Option<&Map<String, Value>>,
    out: &mut Map<String, Value>,
) {
    let key = due_key(kind);
    let value = match (source.and_then(|s| s.get(key)), kind) {
        (Some(v), _) => v.clone(),
        (None, TargetKind::Jira) => Value::Null,
        (None, TargetKind::ServiceNow) => Value::from(""),
    };
    out.insert(key.to_owned(), value);
}

impl Renderer<'_> {
    /// Puts the due date into `payload` and renders the escalation; `None` when the rule has no
    /// SLA for `severity` or the finding no start time.
    pub(super) fn sla(
        &self,
        finding: &Finding,
        severity: Severity,
        payload: &mut Value,
    ) -> Result<Option<SlaState>, RenderError> {
        let Some(due) = self.rule.sla.due_at(finding, severity) else {
            return Ok(None);
        };
        let kind = self.rule.ticket.kind();
        let (target, date) = match kind {
            TargetKind::Jira => (payload.get_mut("fields"), jira_due_date(due)),
            TargetKind::ServiceNow => (Some(&mut *payload), servicenow_due_date(due)),
        };
        if let Some(Value::Object(fields)) = target {
            fields.insert(due_key(kind).to_owned(), Value::from(date));
        }
        let escalation = match &self.rule.escalate {
            None => None,
            Some(escalate) => {
                let limit = (kind == TargetKind::Jira).then_some(JIRA_TEXT_LIMIT);
                let mut fields = Map::new();
                if let Some(raise) = &escalate.priority {
                    fields.extend(raised_priority(
                        kind,
                        raise,
                        &escalate.priority_order,
                        payload,
                    ));
                }
                fields.extend(self.extra_fields(&escalate.notify, &[], limit)?);
                let comment = match &escalate.comment {
                    Some(t) => Some(self.text(t)?).filter(|c| !c.trim().is_empty()),
                    None => None,
                };
                Some(RenderedEscalation {
                    fields,
                    labels: escalate.labels.clone(),
                    comment,
                })
            }
        };
        Ok(Some(SlaState {
            due_at: due.timestamp(),
            escalation,
            escalated_at: None,
        }))
    }
}

/// The priority field(s) a breach sets: a given value, or one step up from the one the ticket is
/// created with. Nothing when it is at the top already, or (Jira) not in the order.
fn raised_priority(
    kind: TargetKind,
    raise: &PriorityRaise,
    order: &[String],
    payload: &Value,
) -> Map<String, Value> {
    let mut out = Map::new();
    match (kind, raise) {
        (TargetKind::Jira, PriorityRaise::To(name)) => {
            out.insert("priority".into(), json!({ "name": name }));
        }
        (TargetKind::Jira, PriorityRaise::Step) => {
            let current = payload
                .pointer("/fields/priority/name")
                .and_then(Value::as_str);
            let at = current.and_then(|c| order.iter().position(|p| p.eq_ignore_ascii_case(c)));
            if let Some(next) = at.and_then(|i| order.get(i + 1)) {
                out.insert("priority".into(), json!({ "name": next }));
            }
        }
        (TargetKind::ServiceNow, PriorityRaise::To(urgency)) => {
            out.insert("urgency".into(), Value::from(urgency.as_str()));
        }
        (TargetKind::ServiceNow, PriorityRaise::Step) => {
            // ServiceNow's default urgency is 3 (low) when the rule sets none.
            let current = payload
                .get("urgency")
                .and_then(Value::as_str)
                .and_then(|u| u.parse::<u8>().ok())
                .unwrap_or(3);
            if current > 1 {
                out.insert("urgency".into(), Value::from((current - 1).to_string()));
            }
        }
    }
    out
}
