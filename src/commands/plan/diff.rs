//! The compact field diff of one ticket as two mapping sets render it: which fields of the create
//! body differ, with their old and new values shortened around the first difference so a summary
//! or an ADF description that changed one word still fits on a line.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use crate::mapping::spec::{Rule, TargetKind};
use crate::render::{RenderError, RenderedTicket};

/// Longest value shown, in characters (`…` marks what was cut).
pub(crate) const WIDTH: usize = 80;
/// Characters shown before the first difference when a long value is cut.
const LEAD: usize = 20;

/// Names of what a ticket has besides its body fields. In parentheses, so they cannot be taken
/// for a Jira or ServiceNow field of the same name.
const CONNECTION: &str = "(connection)";
const TABLE: &str = "(table)";
const ERROR: &str = "(error)";
/// The group key of a grouped rule's ticket: another key is another ticket.
const GROUP: &str = "(group)";

/// One field whose value differs; `None` where the field is absent on that side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldChange {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// What one mapping set makes of a (finding, team): the rule that took it and the ticket it
/// renders to, or why it does not render.
pub(crate) struct Routed<'m> {
    pub rule: &'m Rule,
    pub ticket: Result<RenderedTicket, RenderError>,
}

/// The fields of a ticket as the diff names them: the connection (and ServiceNow table) it goes
/// to, the group key of a grouped rule, every field of the create body (Jira's `fields` object, other top-level keys under their
/// own name; ServiceNow's top level), or the render error.
fn fields<'a>(routed: &'a Routed<'_>) -> BTreeMap<&'a str, Cow<'a, Value>> {
    let mut out = BTreeMap::new();
    out.insert(
        CONNECTION,
        Cow::Owned(Value::from(routed.rule.target.as_str())),
    );
    let ticket = match &routed.ticket {
        Ok(ticket) => ticket,
        Err(e) => {
            out.insert(ERROR, Cow::Owned(Value::from(e.to_string())));
            return out;
        }
    };
    if let Some(table) = &ticket.table {
        out.insert(TABLE, Cow::Owned(Value::from(table.as_str())));
    }
    if let Some(group) = &ticket.group {
        out.insert(GROUP, Cow::Owned(Value::from(group.key.as_str())));
    }
    if let Value::Object(body) = &ticket.payload {
        for (key, value) in body {
            match (ticket.kind, value) {
                (TargetKind::Jira, Value::Object(jira_fields)) if key == "fields" => {
                    for (name, value) in jira_fields {
                        out.insert(name.as_str(), Cow::Borrowed(value));
                    }
                }
                _ => {
                    out.insert(key.as_str(), Cow::Borrowed(value));
                }
            }
        }
    }
    out
}

/// Every field whose value differs between the two renderings, in field-name order; empty when
/// the ticket would be the same.
pub(crate) fn changes(old: &Routed<'_>, new: &Routed<'_>) -> Vec<FieldChange> {
    let old = fields(old);
    let mut new = fields(new);
    let mut out = Vec::new();
    for (name, old_value) in &old {
        match new.remove(name) {
            Some(new_value) if new_value == *old_value => {}
            new_value => out.push(change(name, Some(old_value), new_value.as_deref())),
        }
    }
    for (name, new_value) in &new {
        out.push(change(name, None, Some(new_value)));
    }
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

fn change(field: &str, old: Option<&Value>, new: Option<&Value>) -> FieldChange {
    let (old, new) = shorten_pair(old.map(show), new.map(show));
    FieldChange {
        field: field.to_owned(),
        old,
        new,
    }
}

/// A value as the diff prints it: compact JSON, so quotes, escapes and structure are visible.
fn show(value: &Value) -> String {
    value.to_string()
}

/// Cuts both values to [`WIDTH`] characters, starting a little before the first character where
/// they differ, so what changed is what is shown.
fn shorten_pair(old: Option<String>, new: Option<String>) -> (Option<String>, Option<String>) {
    let start = match (&old, &new) {
        (Some(a), Some(b)) => {
            let same = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
            same.saturating_sub(LEAD)
        }
        _ => 0,
    };
    (
        old.map(|s| window(&s, start)),
        new.map(|s| window(&s, start)),
    )
}

/// `s` cut to [`WIDTH`] characters (a finding's title in a report).
pub(crate) fn shorten(s: &str) -> String {
    window(s, 0)
}

/// `s` from character `start`, at most [`WIDTH`] characters, with `…` where it was cut.
fn window(s: &str, start: usize) -> String {
    let total = s.chars().count();
    if total <= WIDTH {
        return s.to_owned();
    }
    let start = start.min(total.saturating_sub(WIDTH));
    let mut out = String::with_capacity(WIDTH * 4 + 6);
    if start > 0 {
        out.push('…');
    }
    out.extend(s.chars().skip(start).take(WIDTH));
    if start + WIDTH < total {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_shown_whole_as_json() {
        let (old, new) = shorten_pair(
            Some(show(&Value::from("[HIGH] x"))),
            Some(show(&serde_json::json!({"name": "High"}))),
        );
        assert_eq!(old.as_deref(), Some("\"[HIGH] x\""));
        assert_eq!(new.as_deref(), Some("{\"name\":\"High\"}"));
    }

    #[test]
    fn long_values_are_cut_around_the_first_difference() {
        let base = "word ".repeat(60);
        let old = format!("{base}alpha and the rest of a long description {base}");
        let new = format!("{base}beta and the rest of a long description {base}");
        let (old, new) = shorten_pair(Some(old), Some(new));
        let (old, new) = (old.unwrap_or_default(), new.unwrap_or_default());
        assert!(old.starts_with('…') && old.ends_with('…'), "{old}");
        assert!(
            old.contains("alpha") && new.contains("beta"),
            "{old} / {new}"
        );
        assert_eq!(old.chars().count(), WIDTH + 2);
        // The lead before the difference is kept on both sides.
        assert!(
            old.starts_with(&format!("…{}", &"word ".repeat(4))),
            "{old}"
        );
    }

    #[test]
    fn a_difference_near_the_end_shows_the_end() {
        let old = format!("{}a", "x".repeat(200));
        let new = format!("{}b", "x".repeat(200));
        let (old, new) = shorten_pair(Some(old), Some(new));
        assert!(old.as_deref().is_some_and(|s| s.ends_with('a')), "{old:?}");
        assert!(new.as_deref().is_some_and(|s| s.ends_with('b')), "{new:?}");
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let (one, _) = shorten_pair(Some("é".repeat(300)), None);
        assert_eq!(one.map(|s| s.chars().count()), Some(WIDTH + 1));
    }
}
