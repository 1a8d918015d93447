//! Who changed a ticket's status and why, as the ticket systems say it: the facts the risk
//! acceptance note names ([`crate::sync`]). They come from people's input (a display name, a
//! resolution, ServiceNow close notes), so each is made one plain line of bounded length before
//! it leaves the client: it is printed as text into a Security Hub note, never interpreted.

use crate::mapping::template::cut_to_limit;

/// Longest name kept (characters, the truncation mark included).
pub const NAME_LIMIT: usize = 80;
/// Longest resolution kept (characters, the truncation mark included): room for a ServiceNow
/// close code and the start of its notes.
pub const RESOLUTION_LIMIT: usize = 160;

/// `raw` as one line (whitespace and control characters collapse to single spaces), cut to
/// `limit` characters; `None` when nothing is left.
pub fn fact(raw: &str, limit: usize) -> Option<String> {
    let line = crate::render::one_line(raw);
    (!line.is_empty()).then(|| cut_to_limit(&line, limit).into_owned())
}

/// A name ([`NAME_LIMIT`]).
pub fn name(raw: &str) -> Option<String> {
    fact(raw, NAME_LIMIT)
}

/// A resolution ([`RESOLUTION_LIMIT`]): `code` with `notes` after it when there are any
/// (ServiceNow's close code and close notes), or the one that is set.
pub fn resolution(code: &str, notes: &str) -> Option<String> {
    match (
        crate::render::one_line(code),
        crate::render::one_line(notes),
    ) {
        (code, notes) if notes.is_empty() => fact(&code, RESOLUTION_LIMIT),
        (code, notes) if code.is_empty() => fact(&notes, RESOLUTION_LIMIT),
        (code, notes) => fact(&format!("{code}: {notes}"), RESOLUTION_LIMIT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_one_bounded_line_or_nothing() {
        assert_eq!(name("  Jane\n\tDoe\u{0} "), Some("Jane Doe".to_owned()));
        assert_eq!(name(" \r\n "), None);
        let long = name(&"é".repeat(500)).unwrap();
        assert_eq!(long.chars().count(), NAME_LIMIT);
        assert_eq!(
            resolution("Risk Accepted", "Accepted by the CISO\nuntil Q3"),
            Some("Risk Accepted: Accepted by the CISO until Q3".to_owned())
        );
        assert_eq!(resolution("Won't Fix", ""), Some("Won't Fix".to_owned()));
        assert_eq!(resolution("", " notes "), Some("notes".to_owned()));
        assert_eq!(resolution("", ""), None);
        let long = resolution("code", &"x".repeat(1000)).unwrap();
        assert_eq!(long.chars().count(), RESOLUTION_LIMIT);
    }
}
