//! Table API queries, built only from validated pieces: a value has its `^` doubled and may not
//! contain control characters, and a table name is an identifier, because the server silently
//! ignores terms it cannot parse, which would widen a lookup to unrelated records. Also the time
//! format ServiceNow reads and writes (glide date-times, UTC).

use crate::marker::{BRIDGE_LABEL, Marker};

/// The fields read of every record the bridge looks up or polls.
pub(super) const RECORD_FIELDS: &str = "sys_id,number,state,sys_updated_on,correlation_id";
/// Longest `correlation_id` the incident table stores.
const CORRELATION_LIMIT: usize = 100;
/// The most marker matches read in one query; more than a couple is already an incident.
pub(super) const MARKER_MATCHES: &str = "50";

/// A table name the bridge will put in a URL: an identifier of at most 80 characters.
pub(super) fn valid_table(table: &str) -> bool {
    !table.is_empty()
        && table.len() <= 80
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A value for an encoded query term: `^` doubled (a literal caret), refused when it holds
/// control characters (a newline ends the query on some instances and starts a new term).
pub fn encoded_query_value(value: &str) -> Option<String> {
    if value.chars().any(char::is_control) {
        return None;
    }
    Some(value.replace('^', "^^"))
}

/// Every bridge record carrying `marker`, oldest first; `None` when the marker cannot be a
/// `correlation_id` (control characters, too long).
pub(super) fn marker_query(marker: &Marker) -> Option<String> {
    let value = encoded_query_value(marker.as_str())
        .filter(|_| marker.as_str().chars().count() <= CORRELATION_LIMIT)?;
    Some(format!(
        "correlation_id={value}^correlation_display={BRIDGE_LABEL}^ORDERBYsys_created_on"
    ))
}

/// Bridge records updated at or after `since` (RFC 3339), oldest update first; `None` when
/// `since` is not an RFC 3339 time. The instant is compared as a UTC glide time: the
/// integration user must have the UTC time zone.
pub(super) fn updated_since_query(since: &str) -> Option<String> {
    let since_at = chrono::DateTime::parse_from_rfc3339(since.trim()).ok()?;
    let since_glide = since_at
        .with_timezone(&chrono::Utc)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    Some(format!(
        "correlation_display={BRIDGE_LABEL}^sys_updated_on>={since_glide}^ORDERBYsys_updated_on"
    ))
}

/// `2024-05-01 12:00:00` (UTC, the internal format) as RFC 3339.
pub(super) fn rfc3339_from_glide(value: &str) -> String {
    chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S")
        .map(|at| at.and_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_cannot_add_terms() {
        assert_eq!(
            encoded_query_value("a^ORactive=true").as_deref(),
            Some("a^^ORactive=true")
        );
        assert_eq!(
            encoded_query_value("a^NQsys_id!=x").as_deref(),
            Some("a^^NQsys_id!=x")
        );
        assert_eq!(encoded_query_value("a\nactive=true"), None);
        assert_eq!(encoded_query_value("a\r"), None);
    }

    #[test]
    fn table_names_are_identifiers() {
        assert!(valid_table("incident"));
        assert!(valid_table("sn_si_incident"));
        assert!(!valid_table("incident/../sys_user"));
        assert!(!valid_table("incident?sysparm_query=x"));
        assert!(!valid_table(""));
    }

    #[test]
    fn glide_times_become_rfc3339() {
        assert_eq!(
            rfc3339_from_glide("2024-05-01 12:00:00"),
            "2024-05-01T12:00:00Z"
        );
    }

    #[test]
    fn watermarks_become_utc_glide_times() {
        let query = updated_since_query("2024-05-01T14:07:59+02:00").unwrap();
        assert!(
            query.contains("^sys_updated_on>=2024-05-01 12:07:59^"),
            "{query}"
        );
        assert_eq!(updated_since_query("2024-05-01^ORactive=true"), None);
    }
}
