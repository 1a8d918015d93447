//! How long a server asked us to wait before the next attempt: `Retry-After` (seconds or an HTTP
//! date) and `X-RateLimit-Reset` (epoch seconds or a date). The server's demand always wins over
//! our own backoff when it is longer.

use std::time::{Duration, SystemTime};

/// How long the server asked us to wait: `Retry-After` (seconds or HTTP date) on any retriable
/// response, `X-RateLimit-Reset` (epoch seconds or a date) when throttled.
pub fn server_wait(
    headers: &reqwest::header::HeaderMap,
    status: u16,
    now: SystemTime,
) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let retry_after = header("retry-after").and_then(|v| parse_retry_after(v, now));
    let reset = if status == 429 {
        header("x-ratelimit-reset").and_then(|v| parse_reset(v, now))
    } else {
        None
    };
    match (retry_after, reset) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Whether a successful answer says the rate limit is close: Jira Cloud's
/// `X-RateLimit-NearLimit: true`, or `X-RateLimit-Remaining: 0` (Jira, ServiceNow rate-limit
/// rules). The adaptive limiter stops raising its rate on it.
pub fn near_limit(headers: &reqwest::header::HeaderMap) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    header("x-ratelimit-nearlimit").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || header("x-ratelimit-remaining").and_then(|v| v.parse::<f64>().ok()) == Some(0.0)
}

/// Whether a 429 is Jira's limit on writes to one issue (`RateLimit-Reason:
/// jira-per-issue-on-write`): it says nothing about the connection's rate, so the adaptive
/// limiter does not slow down for it (the request still waits out its `Retry-After`).
pub fn per_issue_limit(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get("ratelimit-reason")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("per-issue"))
}

/// `Retry-After: 7` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(until(SystemTime::from(at), now))
}

/// `X-RateLimit-Reset: 1700000000` (epoch seconds, ServiceNow) or `2024-05-01T12:00Z` (Jira).
pub fn parse_reset(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(epoch) = value.parse::<u64>() {
        let at = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(epoch))?;
        return Some(until(at, now));
    }
    let at = chrono::DateTime::parse_from_rfc3339(value)
        .or_else(|_| chrono::DateTime::parse_from_rfc2822(value))
        .ok()
        .map(SystemTime::from)
        .or_else(|| {
            // Jira writes minute precision without seconds: 2024-05-01T12:00Z.
            chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%MZ")
                .ok()
                .map(|naive| SystemTime::from(naive.and_utc()))
        })?;
    Some(until(at, now))
}

fn until(at: SystemTime, now: SystemTime) -> Duration {
    at.duration_since(now).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_limit_reads_jira_and_servicenow_headers() {
        let with = |name: &'static str, value: &'static str| {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(name, reqwest::header::HeaderValue::from_static(value));
            near_limit(&headers)
        };
        assert!(with("x-ratelimit-nearlimit", "true"));
        assert!(with("X-RateLimit-NearLimit", "TRUE"));
        assert!(!with("x-ratelimit-nearlimit", "false"));
        assert!(with("x-ratelimit-remaining", "0"));
        assert!(!with("x-ratelimit-remaining", "12"));
        assert!(!with("x-ratelimit-remaining", "soon"));
        assert!(!near_limit(&reqwest::header::HeaderMap::new()));

        assert!(per_issue_limit(&reqwest::header::HeaderMap::from_iter([(
            reqwest::header::HeaderName::from_static("ratelimit-reason"),
            reqwest::header::HeaderValue::from_static("jira-per-issue-on-write"),
        )])));
        assert!(!per_issue_limit(&reqwest::header::HeaderMap::from_iter([
            (
                reqwest::header::HeaderName::from_static("ratelimit-reason"),
                reqwest::header::HeaderValue::from_static("jira-burst-based"),
            )
        ])));
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        // Wed, 21 Oct 2015 07:28:00 GMT is epoch 1445412480: ten seconds after `now`.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn rate_limit_reset_accepts_epoch_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_reset("1700000030", now),
            Some(Duration::from_secs(30))
        );
        // 2023-11-14T22:14:20Z = 1700000060
        assert_eq!(
            parse_reset("2023-11-14T22:14:20Z", now),
            Some(Duration::from_secs(60))
        );
        // Jira's minute precision: 2023-11-14T22:15Z = 1700000100
        assert_eq!(
            parse_reset("2023-11-14T22:15Z", now),
            Some(Duration::from_secs(100))
        );
        assert_eq!(parse_reset("tomorrow", now), None);
    }

    #[test]
    fn reset_header_only_counts_when_throttled() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-ratelimit-reset", "1700000030".parse().unwrap());
        assert_eq!(server_wait(&headers, 503, now), None);
        assert_eq!(
            server_wait(&headers, 429, now),
            Some(Duration::from_secs(30))
        );
        headers.insert("retry-after", "45".parse().unwrap());
        assert_eq!(
            server_wait(&headers, 429, now),
            Some(Duration::from_secs(45))
        );
    }
}
