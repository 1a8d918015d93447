//! What a failed attempt is: which statuses are worth retrying, which transport failures are a
//! broken setting (DNS, TLS) rather than a server that is down, and the short, secret-free text an
//! error carries into logs, DLQ attributes and Security Hub notes.

/// Longest body excerpt kept in an error message.
pub const EXCERPT_LIMIT: usize = 300;

/// 408, 409 (edit conflicts clear up), 429 and 5xx are worth another try.
pub fn is_retriable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || (500..600).contains(&status)
}

/// A transport failure that a connection setting causes (name resolution, TLS), as opposed to a
/// server that is down or slow.
pub(super) fn broken_setting(error: &reqwest::Error) -> Option<&'static str> {
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        chain.push_str(&e.to_string().to_ascii_lowercase());
        chain.push('\n');
        source = e.source();
    }
    if chain.contains("dns error") || chain.contains("failed to lookup address") {
        Some("the host name does not resolve")
    } else if chain.contains("certificate") || chain.contains("tls handshake") {
        Some("TLS failed")
    } else {
        None
    }
}

pub(super) fn transport_message(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // The URL holds no credentials, but the operation already says what was called.
    format!("{kind}: {}", excerpt(&error.without_url().to_string()))
}

/// Turns an error body into a short message: Jira's `errorMessages`/`errors` as sorted
/// `field: message` entries, ServiceNow's `error.message`/`error.detail`, else an excerpt.
pub fn describe_error_body(body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body) {
        let mut entries: Vec<String> = Vec::new();
        if let Some(messages) = map.get("errorMessages").and_then(|v| v.as_array()) {
            entries.extend(messages.iter().map(value_text));
        }
        if let Some(errors) = map.get("errors").and_then(|v| v.as_object()) {
            entries.extend(
                errors
                    .iter()
                    .map(|(field, v)| format!("{field}: {}", value_text(v))),
            );
        }
        if let Some(error) = map.get("error").and_then(|v| v.as_object()) {
            let message = error.get("message").map(value_text);
            let detail = error
                .get("detail")
                .filter(|d| !d.is_null())
                .map(value_text)
                .filter(|d| !d.is_empty());
            match (message, detail) {
                (Some(m), Some(d)) => entries.push(format!("{m}: {d}")),
                (Some(m), None) => entries.push(m),
                (None, Some(d)) => entries.push(d),
                (None, None) => {}
            }
        }
        entries.retain(|e| !e.is_empty());
        if !entries.is_empty() {
            entries.sort();
            return excerpt(&entries.join("; "));
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        excerpt(text)
    }
}

fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// At most [`EXCERPT_LIMIT`] characters on one line, with `…` when cut.
pub fn excerpt(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= EXCERPT_LIMIT {
        return one_line;
    }
    let mut out: String = one_line.chars().take(EXCERPT_LIMIT - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jira_field_errors_become_sorted_field_messages() {
        let body = br#"{"errorMessages":["Issue type is unknown"],"errors":{"priority":"Specify the Priority (name)","components":"Component name 'X' is not valid"}}"#;
        assert_eq!(
            describe_error_body(body),
            "Issue type is unknown; components: Component name 'X' is not valid; priority: Specify the Priority (name)"
        );
    }

    #[test]
    fn a_null_servicenow_detail_adds_nothing() {
        let body = br#"{"error":{"message":"Invalid table sn_si_incident","detail":null},"status":"failure"}"#;
        assert_eq!(describe_error_body(body), "Invalid table sn_si_incident");
    }

    #[test]
    fn servicenow_errors_keep_message_and_detail() {
        let body = br#"{"error":{"message":"Invalid table","detail":"Table 'incidnet' does not exist"},"status":"failure"}"#;
        assert_eq!(
            describe_error_body(body),
            "Invalid table: Table 'incidnet' does not exist"
        );
    }

    #[test]
    fn long_bodies_are_cut_to_an_excerpt() {
        let body = "x".repeat(5000);
        let text = describe_error_body(body.as_bytes());
        assert_eq!(text.chars().count(), EXCERPT_LIMIT);
        assert!(text.ends_with('…'));
        assert_eq!(describe_error_body(b"  "), "(empty body)");
        assert_eq!(excerpt("a\nb\r\nc"), "a b  c");
    }

    #[test]
    fn retriable_statuses() {
        for status in [408, 409, 429, 500, 502, 503, 504] {
            assert!(is_retriable_status(status), "{status}");
        }
        for status in [400, 401, 403, 404, 410, 422] {
            assert!(!is_retriable_status(status), "{status}");
        }
    }
}
