//! What a ServiceNow state means: the out-of-the-box incident states (codes and labels), which of
//! them are finished, which need a close code and notes, and a record's state as a
//! [`TicketStatus`]. This is the one place these meanings are written down: status sync reads
//! its defaults from here too.

use serde_json::Value;

use super::record::field;
use crate::ticket::{TicketStatus, attribution};

/// What an out-of-the-box state means to the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateMeaning {
    /// Being worked on or waiting: New, In Progress, On Hold.
    Open,
    /// Fixed: Resolved, Closed. Setting one needs a close code and close notes.
    Resolved,
    /// Dropped without a fix: Canceled.
    Canceled,
}

impl StateMeaning {
    /// Finished: resolved, closed or canceled.
    pub fn is_done(self) -> bool {
        !matches!(self, StateMeaning::Open)
    }
}

/// Incident states out of the box: code, label and meaning. Rules may name a state by code or
/// by label.
pub(super) const STATES: [(&str, &str, StateMeaning); 6] = [
    ("1", "New", StateMeaning::Open),
    ("2", "In Progress", StateMeaning::Open),
    ("3", "On Hold", StateMeaning::Open),
    ("6", "Resolved", StateMeaning::Resolved),
    ("7", "Closed", StateMeaning::Resolved),
    ("8", "Canceled", StateMeaning::Canceled),
];

/// The state the bridge resolves a ticket with (Resolved).
pub(super) const RESOLVED: &str = "6";

/// What state `code` means; `None` for a state that is not out of the box (security incident
/// tables use 10, 16, 18…, and their 3 is *Closed*: such tables need explicit status maps).
pub fn meaning(code: &str) -> Option<StateMeaning> {
    STATES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, _, meaning)| *meaning)
}

/// Whether a ticket in state `code` is finished.
pub fn is_done(code: &str) -> bool {
    meaning(code).is_some_and(StateMeaning::is_done)
}

/// Whether moving a ticket to state `code` needs a close code and close notes.
pub(super) fn needs_resolution(code: &str) -> bool {
    meaning(code) == Some(StateMeaning::Resolved)
}

/// The labels a rule may name a state by, for error messages.
pub(super) fn labels() -> String {
    STATES.map(|(_, label, _)| label).join(", ")
}

/// A state a rule names, as a code: a code as given (digits, maybe negative), or the code of an
/// out-of-the-box label (any case). `None` for anything else, which could widen a query.
pub(super) fn valid_state_code(value: &str) -> Option<String> {
    let value = value.trim();
    if !value.is_empty()
        && value.len() <= 4
        && value.bytes().all(|b| b.is_ascii_digit() || b == b'-')
    {
        return Some(value.to_owned());
    }
    STATES
        .iter()
        .find(|(_, label, _)| label.eq_ignore_ascii_case(value))
        .map(|(code, _, _)| (*code).to_owned())
}

/// A record's `state` as a status: its display label when the record has one, else the
/// out-of-the-box label, else the code. Who and why come from [`ATTRIBUTION_FIELDS`] when the
/// read asked for them.
pub(super) fn state_of(record: &serde_json::Map<String, Value>) -> TicketStatus {
    let (code, label) = field(record, "state");
    let name = label.filter(|l| !l.is_empty()).unwrap_or_else(|| {
        STATES
            .iter()
            .find(|(c, _, _)| *c == code)
            .map_or_else(|| code.clone(), |(_, l, _)| (*l).to_owned())
    });
    let (resolution, changed_by) = attribution_of(record, &code);
    TicketStatus {
        done: is_done(&code),
        name,
        category: code,
        resolution,
        changed_by,
    }
}

/// The columns that say who last changed a record and why it was closed: what the status
/// sync's reads ask for besides the state (same request).
pub(super) const ATTRIBUTION_FIELDS: &str = "sys_updated_by,close_code,close_notes";

/// `sys_updated_by`, and the close code with the close notes, of a record in state `code`
/// (display values where the read has them). An open out-of-the-box state has no resolution:
/// a close code left from before a reopen says nothing about it.
fn attribution_of(
    record: &serde_json::Map<String, Value>,
    code: &str,
) -> (Option<String>, Option<String>) {
    let text = |name: &str| {
        let (value, display) = field(record, name);
        display.filter(|d| !d.trim().is_empty()).unwrap_or(value)
    };
    let resolution = match meaning(code) {
        Some(StateMeaning::Open) => None,
        _ => attribution::resolution(&text("close_code"), &text("close_notes")),
    };
    (resolution, attribution::name(&text("sys_updated_by")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_codes_or_labels() {
        assert_eq!(valid_state_code("6").as_deref(), Some("6"));
        assert_eq!(valid_state_code("in progress").as_deref(), Some("2"));
        assert_eq!(valid_state_code("Resolved").as_deref(), Some("6"));
        assert_eq!(valid_state_code("6^ORstate=1"), None);
        assert_eq!(valid_state_code("Done"), None);
    }

    #[test]
    fn a_closed_record_says_who_and_why_an_open_one_only_who() {
        let record = |state: &str| {
            serde_json::json!({
                "state": {"value": state, "display_value": "x"},
                "sys_updated_by": {"value": "jane.doe", "display_value": "jane.doe"},
                "close_code": {"value": "risk_accepted", "display_value": "Risk Accepted"},
                "close_notes": "Accepted by the CISO\nuntil Q3",
            })
            .as_object()
            .cloned()
            .unwrap()
        };
        let closed = state_of(&record("7"));
        assert_eq!(closed.changed_by.as_deref(), Some("jane.doe"));
        assert_eq!(
            closed.resolution.as_deref(),
            Some("Risk Accepted: Accepted by the CISO until Q3")
        );
        let reopened = state_of(&record("2"));
        assert_eq!(reopened.resolution, None);
        assert_eq!(reopened.changed_by.as_deref(), Some("jane.doe"));
        // A read that did not ask says nothing.
        let plain = state_of(serde_json::json!({"state": "6"}).as_object().unwrap());
        assert_eq!((plain.resolution, plain.changed_by), (None, None));
    }

    #[test]
    fn out_of_the_box_states_mean_open_resolved_or_canceled() {
        for code in ["1", "2", "3"] {
            assert_eq!(meaning(code), Some(StateMeaning::Open), "{code}");
            assert!(!is_done(code), "{code}");
        }
        for code in ["6", "7"] {
            assert_eq!(meaning(code), Some(StateMeaning::Resolved), "{code}");
            assert!(is_done(code) && needs_resolution(code), "{code}");
        }
        assert_eq!(meaning("8"), Some(StateMeaning::Canceled));
        assert!(is_done("8") && !needs_resolution("8"));
        assert_eq!(meaning(RESOLVED), Some(StateMeaning::Resolved));
        // Custom states are not guessed at.
        assert_eq!(meaning("18"), None);
        assert!(!is_done("18"));
    }
}
