//! JQL, built only from quoted values so finding data cannot add clauses, and the time formats
//! Jira reads and writes: JQL dates for the poll's watermark, its timestamps back as RFC 3339.

use chrono_tz::Tz;

use super::zone::jql_time_bound;
use crate::marker::{BRIDGE_LABEL, Marker};

/// The most marker matches read in one search; more than a couple is already an incident.
pub(super) const MARKER_MATCHES: u32 = 50;

/// Every bridge ticket carrying `marker`, oldest first.
pub(super) fn marker_jql(marker: &Marker) -> String {
    format!(
        "labels = {} AND labels = {} ORDER BY created ASC",
        jql_string(marker.as_str()),
        jql_string(BRIDGE_LABEL)
    )
}

/// Bridge tickets updated at or after `since` (RFC 3339), oldest update first, for a user whose
/// time zone is `zone`; `None` when `since` is not an RFC 3339 time.
pub(super) fn updated_since_jql(since: &str, zone: Tz) -> Option<String> {
    let since_jql = jql_datetime(since, zone)?;
    Some(format!(
        "labels = {} AND updated >= {} ORDER BY updated ASC",
        jql_string(BRIDGE_LABEL),
        jql_string(&since_jql)
    ))
}

/// Quotes a JQL string value: `"` and `\` escaped, control characters written as escapes, so
/// no input can close the string and add clauses.
pub fn jql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// JQL date literal (minute precision) for an RFC 3339 instant, in `zone`: Jira reads JQL dates
/// in the searching user's time zone (see [`super::zone`]).
fn jql_datetime(since: &str, zone: Tz) -> Option<String> {
    let at = chrono::DateTime::parse_from_rfc3339(since.trim()).ok()?;
    Some(jql_time_bound(at.with_timezone(&chrono::Utc), zone))
}

/// Whether `since` is a time [`updated_since_jql`] takes (checked before anything is sent).
pub(super) fn valid_since(since: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(since.trim()).is_ok()
}

/// Jira's `2024-05-01T12:00:00.000+0000` as RFC 3339; left alone when it does not parse.
pub(super) fn rfc3339_from_jira(value: &str) -> String {
    chrono::DateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(value))
        .map(|at| at.to_rfc3339())
        .unwrap_or_else(|_| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jql_strings_cannot_be_closed_early() {
        assert_eq!(jql_string("fb-0a"), r#""fb-0a""#);
        assert_eq!(
            jql_string("x\" OR labels is not EMPTY OR labels = \"y\\"),
            r#""x\" OR labels is not EMPTY OR labels = \"y\\""#
        );
        assert_eq!(jql_string("a\nb\u{1}"), r#""a\nb\u0001""#);
    }

    #[test]
    fn watermarks_become_utc_minutes() {
        assert_eq!(
            jql_datetime("2024-05-01T14:07:59+02:00", Tz::UTC).as_deref(),
            Some("2024-05-01 12:07")
        );
        assert_eq!(jql_datetime("2024-05-01\" OR x", Tz::UTC), None);
    }

    #[test]
    fn watermarks_become_minutes_of_the_users_zone() {
        assert_eq!(
            jql_datetime("2024-05-01T14:07:59+02:00", Tz::America__Los_Angeles).as_deref(),
            Some("2024-05-01 05:07")
        );
        let jql = updated_since_jql("2024-05-01T12:07:59Z", Tz::Asia__Kolkata).unwrap();
        assert!(jql.contains(r#"updated >= "2024-05-01 17:37""#), "{jql}");
    }

    #[test]
    fn jira_timestamps_become_rfc3339() {
        assert_eq!(
            rfc3339_from_jira("2024-05-01T12:00:00.000+0000"),
            "2024-05-01T12:00:00+00:00"
        );
        assert_eq!(rfc3339_from_jira("garbage"), "garbage");
    }
}
