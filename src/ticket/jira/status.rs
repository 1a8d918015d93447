//! What a Jira status means to the bridge: its status category (`new`, `indeterminate`, `done`)
//! says whether a ticket is finished, and it picks, among the transitions a workflow offers, the
//! one that takes a ticket where the bridge wants it.

use serde::Deserialize;

use crate::ticket::{TargetStatus, TicketStatus};

/// Status category of a ticket nobody has started on.
pub const CATEGORY_NEW: &str = "new";
/// Status category of work in progress.
pub const CATEGORY_IN_PROGRESS: &str = "indeterminate";
/// Status category of a finished ticket, whatever its status is called.
pub const CATEGORY_DONE: &str = "done";

#[derive(Debug, Deserialize)]
pub(super) struct Status {
    pub(super) name: String,
    #[serde(rename = "statusCategory", default)]
    status_category: Option<StatusCategory>,
}

#[derive(Debug, Deserialize)]
struct StatusCategory {
    key: String,
}

impl Status {
    fn category(&self) -> &str {
        self.status_category.as_ref().map_or("", |c| c.key.as_str())
    }

    /// Finished: the status is in category `done`.
    pub(super) fn is_done(&self) -> bool {
        self.category() == CATEGORY_DONE
    }

    pub(super) fn into_ticket_status(self) -> TicketStatus {
        let category = self.category().to_owned();
        TicketStatus {
            done: self.is_done(),
            name: self.name,
            category,
            resolution: None,
            changed_by: None,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct TransitionList {
    #[serde(default)]
    pub(super) transitions: Vec<Transition>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Transition {
    pub(super) id: String,
    name: String,
    #[serde(default)]
    to: Option<Status>,
}

impl Transition {
    fn to_category(&self) -> &str {
        self.to.as_ref().map_or("", Status::category)
    }

    fn describe(&self) -> String {
        match &self.to {
            Some(to) => format!("{} (→ {})", self.name, to.name),
            None => self.name.clone(),
        }
    }
}

/// Whether a ticket at `current` already is where `to` wants it.
pub(super) fn already_at(current: &TicketStatus, to: &TargetStatus) -> bool {
    match to {
        TargetStatus::Done => current.done,
        TargetStatus::Named(name) => current.name.eq_ignore_ascii_case(name.trim()),
    }
}

/// The transition that takes a ticket to `to`: for `Done`, the first into category `done`; for a
/// name, the first into a status of that name, else the first transition of that name.
pub(super) fn transition_to<'t>(
    transitions: &'t [Transition],
    to: &TargetStatus,
) -> Option<&'t Transition> {
    match to {
        TargetStatus::Done => transitions
            .iter()
            .find(|t| t.to_category() == CATEGORY_DONE),
        TargetStatus::Named(name) => {
            let name = name.trim();
            transitions
                .iter()
                .find(|t| {
                    t.to.as_ref()
                        .is_some_and(|s| s.name.eq_ignore_ascii_case(name))
                })
                .or_else(|| {
                    transitions
                        .iter()
                        .find(|t| t.name.eq_ignore_ascii_case(name))
                })
        }
    }
}

/// The transition that reopens a finished ticket: into category `new`, else `indeterminate`.
pub(super) fn reopening(transitions: &[Transition]) -> Option<&Transition> {
    transitions
        .iter()
        .find(|t| t.to_category() == CATEGORY_NEW)
        .or_else(|| {
            transitions
                .iter()
                .find(|t| t.to_category() == CATEGORY_IN_PROGRESS)
        })
}

/// `to` as an error names it.
pub(super) fn describe_target(to: &TargetStatus) -> String {
    match to {
        TargetStatus::Done => "a done status".to_owned(),
        TargetStatus::Named(name) => format!("{name:?}"),
    }
}

pub(super) fn describe_transitions(transitions: &[Transition]) -> String {
    if transitions.is_empty() {
        "none".to_owned()
    } else {
        transitions
            .iter()
            .map(Transition::describe)
            .collect::<Vec<_>>()
            .join(", ")
    }
}
