//! A connection's HTTP settings (timeouts, retry budget, rate limit, send window), the parsers of
//! the numeric settings that tune them, and the error a configuration that cannot work reports.

use std::time::Duration;

/// Connection-level HTTP settings shared by the Jira and ServiceNow configurations.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    /// Whole request including the response body.
    pub request_timeout: Duration,
    /// Total time one operation may spend retrying before it reports a transient error.
    pub retry_budget: Duration,
    /// Attempts per operation, the first included.
    pub max_attempts: u32,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Requests per second for this connection, shared by all tasks; `0` disables the limit.
    pub rate_limit_per_sec: f64,
    /// Requests that may go out at once before the rate applies.
    pub burst: u32,
    /// How long an at-most-once request (a create) may wait for its turn (rate limit, backoff
    /// after a 429) before it is abandoned unsent. Bounds the time between the intent the
    /// lifecycle records and the moment the request can last reach the server.
    pub send_window: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry_budget: Duration::from_secs(60),
            max_attempts: 8,
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(20),
            rate_limit_per_sec: 10.0,
            burst: 10,
            send_window: Duration::from_secs(5),
        }
    }
}

impl HttpSettings {
    /// The longest an at-most-once request can be in the air: it is sent within `send_window`
    /// of the call or not at all, and an attempt ends within `request_timeout`.
    pub fn at_most_once_span(&self) -> Duration {
        self.send_window + self.request_timeout
    }
}

/// Reads a duration in whole or fractional seconds (`JIRA_REQUEST_TIMEOUT`,
/// `JIRA_SEARCH_CONSISTENCY`, …); empty or absent means the default.
pub fn seconds_setting(
    name: &'static str,
    value: Option<&str>,
) -> Result<Option<Duration>, ClientConfigError> {
    number_setting(
        name,
        value,
        |secs| (0.0..=86_400.0).contains(&secs),
        "seconds (a number from 0 to 86400)",
    )
    .map(|secs| secs.map(Duration::from_secs_f64))
}

/// A configuration that cannot work: missing or contradictory settings, an unusable URL.
#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    #[error("{name} is required when {because}")]
    Missing { name: &'static str, because: String },
    #[error("{name}: {message}")]
    Invalid { name: &'static str, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Reads a per-process request rate (`JIRA_RATE_LIMIT`, `SERVICENOW_RATE_LIMIT`): requests per
/// second, `0` to turn the limiter off. Size it as the ticket system's limit divided by the number
/// of replicas, so replicas do not overshoot into 429 windows together.
pub fn rate_limit_setting(
    name: &'static str,
    value: Option<&str>,
) -> Result<Option<f64>, ClientConfigError> {
    number_setting(
        name,
        value,
        |rate| rate >= 0.0,
        "requests per second (a number ≥ 0, 0 = no limit)",
    )
}

/// A finite number that `accept` takes; empty or absent means the default. The error names the
/// setting and says what it `expected`.
fn number_setting(
    name: &'static str,
    value: Option<&str>,
    accept: impl Fn(f64) -> bool,
    expected: &str,
) -> Result<Option<f64>, ClientConfigError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    match value.parse::<f64>() {
        Ok(number) if number.is_finite() && accept(number) => Ok(Some(number)),
        _ => Err(ClientConfigError::Invalid {
            name,
            message: format!("expected {expected}, got {value:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_setting_parses_numbers_and_refuses_the_rest() {
        assert_eq!(rate_limit_setting("X", None).unwrap(), None);
        assert_eq!(rate_limit_setting("X", Some("  ")).unwrap(), None);
        assert_eq!(rate_limit_setting("X", Some("12.5")).unwrap(), Some(12.5));
        assert_eq!(rate_limit_setting("X", Some("0")).unwrap(), Some(0.0));
        for bad in ["-1", "fast", "NaN", "inf"] {
            let err = rate_limit_setting("JIRA_RATE_LIMIT", Some(bad))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("JIRA_RATE_LIMIT:"), "{bad}: {err}");
        }
    }
}
