//! SLA due dates and escalation (README, "SLA due dates and escalation"): the compiled `sla` and
//! `escalate` settings of a rule, the duration syntax they use, and the due date of a finding.
//!
//! The due date is the finding's first-observed time plus the SLA of its (effective) severity,
//! computed in UTC: no time zone or DST enters, so a finding first observed at 23:30 UTC with a
//! "1d" SLA is due the next day at 23:30 UTC, whatever the reader's zone.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::finding::{Finding, Severity};
use crate::mapping::spec::FieldTemplate;
use crate::mapping::template::Template;
use crate::time::parse_time;

/// `sla = { CRITICAL = "1d", … }`: how long a finding of each severity may stay open. A severity
/// without an entry (typically INFORMATIONAL) has no due date.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sla(pub BTreeMap<Severity, Duration>);

impl Sla {
    /// When a finding of `severity` is due: its start ([`observed_at`]) plus the severity's SLA;
    /// `None` without an entry for the severity or a readable start time.
    pub fn due_at(&self, finding: &Finding, severity: Severity) -> Option<DateTime<Utc>> {
        let sla = chrono::Duration::from_std(*self.0.get(&severity)?).ok()?;
        observed_at(finding)?.checked_add_signed(sla)
    }
}

/// When the clock of a finding's SLA started: ASFF `FirstObservedAt` / OCSF `first_seen_time`,
/// else the time the finding was created (`CreatedAt` / `created_time`), which every ASFF finding
/// carries.
pub fn observed_at(finding: &Finding) -> Option<DateTime<Utc>> {
    [&finding.first_observed_at, &finding.created_at]
        .into_iter()
        .filter_map(|t| t.as_deref())
        .find_map(|t| parse_time(t.trim()))
}

/// Jira `duedate`: the UTC day of `at`.
pub fn jira_due_date(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// ServiceNow `due_date`: a glide date-time, which the Table API reads as UTC.
pub fn servicenow_due_date(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `escalate.priority`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriorityRaise {
    /// `"raise"`: one step up from the priority the rule gives the ticket — along
    /// `priority_order` for Jira, one urgency number lower (to at most 1) for ServiceNow.
    Step,
    /// A Jira priority name, or a ServiceNow urgency (`1`–`3`).
    To(String),
}

/// Jira's default priority scheme, lowest first: what `"raise"` steps along unless the rule sets
/// `escalate.priority_order`.
pub const JIRA_PRIORITY_ORDER: [&str; 5] = ["Lowest", "Low", "Medium", "High", "Highest"];

/// `escalate = { … }` after compilation: what happens once, when an open ticket passes its due
/// date. Every part is optional; an empty table still counts the breach.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalate {
    pub priority: Option<PriorityRaise>,
    /// Lowest first (Jira only).
    pub priority_order: Vec<String>,
    /// Labels added to the Jira ticket (never replacing the ones it has).
    pub labels: Vec<String>,
    /// A comment template (same context as the ticket templates), posted once.
    pub comment: Option<Template>,
    /// Fields set on breach, e.g. Jira `assignee` / a watcher field or ServiceNow
    /// `assignment_group`; values are templates like `fields`.
    pub notify: BTreeMap<String, FieldTemplate>,
}

/// What a ticket's breach does, rendered for its finding when the ticket is created or its
/// severity moves, and kept with the record: the escalation loop runs from the store alone.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct RenderedEscalation {
    /// Set on the ticket in one update (the raised priority and the `notify` fields).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Jira labels added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The comment, posted once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A ticket's SLA as the store keeps it (`Record::sla`): when it is due, what its breach does,
/// and whether that was done.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct SlaState {
    /// Unix seconds.
    pub due_at: i64,
    /// `None`: a breach only counts (no `escalate` on the rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<RenderedEscalation>,
    /// Unix seconds when this due date's breach was handled; a moved due date clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<i64>,
}

/// `next` (freshly rendered) keeping what `before` records of the breach when the due date did
/// not move: a breach is handled once per due date.
pub fn carry_breach(before: Option<&SlaState>, next: Option<SlaState>) -> Option<SlaState> {
    let mut next = next?;
    if let Some(before) = before
        && before.due_at == next.due_at
    {
        next.escalated_at = before.escalated_at;
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn durations_parse_and_reject_what_is_not_one() {
        assert_eq!(
            crate::mapping::duration::parse("1d"),
            Ok(Duration::from_secs(86_400))
        );
        assert_eq!(
            crate::mapping::duration::parse("12h"),
            Ok(Duration::from_secs(43_200))
        );
        assert_eq!(
            crate::mapping::duration::parse("90d"),
            Ok(Duration::from_secs(90 * 86_400))
        );
        assert_eq!(
            crate::mapping::duration::parse(" 30m "),
            Ok(Duration::from_secs(1_800))
        );
        assert_eq!(
            crate::mapping::duration::parse("1s"),
            Ok(Duration::from_secs(1))
        );
        assert_eq!(
            crate::mapping::duration::parse("2w"),
            Ok(Duration::from_secs(14 * 86_400))
        );
        for bad in [
            "", "d", "1", "1 d", "1D", "1.5d", "-1d", "0d", "7days", "99999d", "1d2h",
        ] {
            assert!(crate::mapping::duration::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn finding(first: Option<&str>, created: Option<&str>) -> Finding {
        let mut f = crate::testing::finding("f-1", Severity::High, "2026-11-01T00:00:00Z");
        f.first_observed_at = first.map(str::to_owned);
        f.created_at = created.map(str::to_owned);
        f
    }

    #[test]
    fn due_is_first_observed_plus_the_severity_sla_in_utc() {
        let sla = Sla(BTreeMap::from([
            (Severity::Critical, Duration::from_secs(86_400)),
            (Severity::High, Duration::from_secs(7 * 86_400)),
        ]));
        // 23:30 at +02:00 is 21:30 UTC: the date is the UTC one.
        let f = finding(
            Some("2026-03-28T23:30:00+02:00"),
            Some("2026-04-01T00:00:00Z"),
        );
        let due = sla.due_at(&f, Severity::Critical);
        assert_eq!(due, Utc.with_ymd_and_hms(2026, 3, 29, 21, 30, 0).single());
        let due = due.unwrap_or_default();
        assert_eq!(jira_due_date(due), "2026-03-29");
        assert_eq!(servicenow_due_date(due), "2026-03-29 21:30:00");
        assert_eq!(
            sla.due_at(&f, Severity::High),
            Utc.with_ymd_and_hms(2026, 4, 4, 21, 30, 0).single()
        );
        // No entry for the severity: no due date.
        assert_eq!(sla.due_at(&f, Severity::Informational), None);
    }

    #[test]
    fn the_start_falls_back_to_created_at_and_else_there_is_no_due_date() {
        let sla = Sla(BTreeMap::from([(
            Severity::Low,
            Duration::from_secs(3_600),
        )]));
        let f = finding(None, Some("2026-01-01T00:00:00Z"));
        assert_eq!(
            sla.due_at(&f, Severity::Low),
            Utc.with_ymd_and_hms(2026, 1, 1, 1, 0, 0).single()
        );
        let f = finding(Some("not a time"), None);
        assert_eq!(sla.due_at(&f, Severity::Low), None);
    }
}
