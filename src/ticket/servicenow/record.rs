//! Reading Table API answers: the `result` envelope, a field of a record read with or without
//! display values, and the refusal that means a table is gone.

use serde::Deserialize;
use serde_json::Value;

use crate::ticket::{Blame, TicketError};

/// Every Table API answer wraps its record(s) in `result`.
#[derive(Debug, Deserialize)]
pub(super) struct Envelope<T> {
    pub(super) result: T,
}

/// A field read with `sysparm_display_value=all` (`{"value","display_value"}`) or without it
/// (a plain string): its value, and its display value when there is one.
pub(super) fn field(
    record: &serde_json::Map<String, Value>,
    name: &str,
) -> (String, Option<String>) {
    match record.get(name) {
        Some(Value::String(s)) => (s.clone(), None),
        Some(Value::Object(o)) => (
            o.get("value")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            o.get("display_value")
                .and_then(Value::as_str)
                .map(str::to_owned),
        ),
        Some(Value::Number(n)) => (n.to_string(), None),
        _ => (String::new(), None),
    }
}

/// A request refused because the rule's table does not exist (any more): the rule's fault, not
/// the finding's, whether the create or the marker search before it meets it first.
pub(super) fn table_gone(error: TicketError) -> TicketError {
    match &error {
        TicketError::Permanent {
            status: Some(400 | 404),
            message,
            ..
        } if message.to_ascii_lowercase().contains("invalid table") => {
            error.blamed_on(Blame::Target)
        }
        _ => error,
    }
}
