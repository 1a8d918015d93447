//! Which Security Hub workflow status a ticket status means: the team's `status_map`, then the
//! defaults for each kind of ticket system.

use super::*;
use crate::ticket::servicenow::status::{self as state, StateMeaning};

/// Ticket status → workflow status: the team's map first, then the documented defaults.
///
/// Lookup order: a plain key equal to the status name (case-insensitive); then `category:<key>`
/// (Jira status category) or `state:<code>` (ServiceNow state code), whichever fits `kind`; then
/// the defaults:
///
/// | Jira category | ServiceNow state | Workflow status |
/// |---|---|---|
/// | `new`, `indeterminate` | 1 New, 2 In Progress, 3 On Hold | NOTIFIED |
/// | `done` | 6 Resolved, 7 Closed | RESOLVED |
/// | | 8 Canceled | SUPPRESSED |
///
/// `None` (unmapped) means the ticket is in a state neither the team nor the defaults know: a
/// Jira category outside the three documented ones, or a custom ServiceNow state code (security
/// incident tables use 10, 16, 18…; note that `sn_si_incident` state 3 is *Closed*, so such a
/// table needs an explicit `state:3` entry). Callers log it once and count it instead of guessing.
pub fn map_status(
    map: &StatusMap,
    kind: TargetKind,
    status: &TicketStatus,
) -> Option<WorkflowStatus> {
    explicit_status(map, kind, status).or_else(|| default_status(kind, status))
}

pub(super) fn explicit_status(
    map: &StatusMap,
    kind: TargetKind,
    status: &TicketStatus,
) -> Option<WorkflowStatus> {
    explicit_entry(map, kind, status).map(|(_, workflow)| workflow)
}

/// How long the acceptance a ticket status means lasts: the duration (`for`) of the team's
/// entry that maps it, when that entry has one. Defaults never expire.
pub fn acceptance_for(
    map: &StatusMap,
    kind: TargetKind,
    status: &TicketStatus,
) -> Option<Duration> {
    let (key, _) = explicit_entry(map, kind, status)?;
    map.1.get(key).copied()
}

/// The team's entry for `status` (its key and workflow status), by name first, then by code.
fn explicit_entry<'m>(
    map: &'m StatusMap,
    kind: TargetKind,
    status: &TicketStatus,
) -> Option<(&'m str, WorkflowStatus)> {
    let name = status.name.trim();
    if !name.is_empty() {
        let by_name = map.0.iter().find(|(key, _)| {
            !key.starts_with("category:")
                && !key.starts_with("state:")
                && key.trim().eq_ignore_ascii_case(name)
        });
        if let Some((key, workflow)) = by_name {
            return Some((key, *workflow));
        }
    }
    let code = status.category.trim();
    if code.is_empty() {
        return None;
    }
    let prefix = match kind {
        TargetKind::Jira => "category:",
        TargetKind::ServiceNow => "state:",
    };
    map.0
        .iter()
        .find(|(key, _)| {
            key.strip_prefix(prefix)
                .is_some_and(|value| value.trim().eq_ignore_ascii_case(code))
        })
        .map(|(key, workflow)| (key.as_str(), *workflow))
}

pub(super) fn default_status(kind: TargetKind, status: &TicketStatus) -> Option<WorkflowStatus> {
    let code = status.category.trim();
    match kind {
        TargetKind::Jira => match code.to_ascii_lowercase().as_str() {
            "done" => Some(WorkflowStatus::Resolved),
            "new" | "indeterminate" => Some(WorkflowStatus::Notified),
            _ => None,
        },
        TargetKind::ServiceNow => state::meaning(code).map(|meaning| match meaning {
            StateMeaning::Open => WorkflowStatus::Notified,
            StateMeaning::Resolved => WorkflowStatus::Resolved,
            StateMeaning::Canceled => WorkflowStatus::Suppressed,
        }),
    }
}
