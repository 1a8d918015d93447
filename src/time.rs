//! Timestamps as the bridge reads them: the one RFC 3339 parser behind every stored, received and
//! configured time (findings, the store, ticket systems, criteria, `replay --since`). Lowest layer:
//! it imports nothing from the crate, so every module may use it.

use chrono::{DateTime, Utc};

/// An RFC 3339 timestamp, in UTC; `None` when `text` is not one. Strict: callers reading text
/// that may carry surrounding whitespace (a ticket system's answer) trim it themselves.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn offsets_become_utc_and_anything_else_is_none() {
        assert_eq!(
            parse_time("2026-11-27T10:00:00+02:00"),
            Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).single()
        );
        for bad in ["", "2026-11-27", " 2026-11-27T10:00:00Z", "yesterday"] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }
}
