//! Settings of one simulator instance: credentials it accepts, how eventually consistent Jira
//! search is, and which failures it injects.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Failures injected on the API paths (never on `/_sim`), so the bridge's retry and back-off code
/// meets the same trouble it meets in production, reproducibly.
///
/// Every API request gets a sequence number (reset by `set_faults`). With `burst_429_every = N`
/// the sequence runs in cycles of N answered requests followed by `burst_429_len` requests
/// answered 429. Independently, a request is answered 500 when a hash of (`seed`, sequence
/// number) falls below `error_rate`, so the same seed fails the same requests every run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added before every answer (also before injected errors).
    #[serde(rename = "latency_ms", with = "duration_ms")]
    pub latency: Duration,
    /// Fraction (0.0–1.0) of requests answered 500.
    pub error_rate: f64,
    /// Length of the calm stretch between two bursts of 429s; `None` disables bursts.
    pub burst_429_every: Option<u32>,
    /// How many consecutive requests each burst answers 429.
    pub burst_429_len: u32,
    /// Value of `Retry-After` on injected 429s.
    pub retry_after_secs: u32,
    /// Seed of the error-rate hash.
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            error_rate: 0.0,
            burst_429_every: None,
            burst_429_len: 3,
            retry_after_secs: 1,
            seed: 0,
        }
    }
}

impl Faults {
    /// No injected failures at all: the default, spelled out for readability in tests.
    pub fn none() -> Self {
        Self::default()
    }

    /// Rejects settings that would make the fault schedule meaningless.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) || self.error_rate.is_nan() {
            return Err(format!(
                "error_rate must be between 0.0 and 1.0, got {}",
                self.error_rate
            ));
        }
        if self.burst_429_every == Some(0) {
            return Err("burst_429_every must be at least 1".to_owned());
        }
        Ok(())
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Everything a simulator instance needs before it starts. The credentials are the only ones the
/// simulated services accept, so tests can prove the bridge sends the right ones.
#[derive(Clone)]
pub struct SimConfig {
    /// A newly created Jira issue is invisible to search for this long (Jira's index lag).
    pub jira_search_delay: Duration,
    pub faults: Faults,
    /// Jira Cloud (v3, and v2 Basic) user.
    pub jira_email: String,
    /// Jira Cloud API token paired with `jira_email`.
    pub jira_token: String,
    /// Jira Data Center personal access token (v2, `Authorization: Bearer`).
    pub jira_pat: String,
    pub servicenow_user: String,
    pub servicenow_password: String,
    pub servicenow_client_id: String,
    pub servicenow_client_secret: String,
    /// Lifetime of ServiceNow OAuth tokens; tests shorten it to exercise re-authentication.
    pub servicenow_token_ttl: Duration,
    /// Requests per second accepted on the API paths before answering 429.
    pub rate_limit_per_sec: Option<u32>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            jira_search_delay: Duration::ZERO,
            faults: Faults::default(),
            jira_email: "sim@example.com".to_owned(),
            jira_token: "sim-token".to_owned(),
            jira_pat: "sim-pat".to_owned(),
            servicenow_user: "sim".to_owned(),
            servicenow_password: "sim-password".to_owned(),
            servicenow_client_id: "sim-client".to_owned(),
            servicenow_client_secret: "sim-client-secret".to_owned(),
            servicenow_token_ttl: Duration::from_secs(1800),
            rate_limit_per_sec: None,
        }
    }
}

/// Hand-written so that credentials never reach logs, even test ones: tests copy production habits.
impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HIDDEN: &str = "[REDACTED]";
        f.debug_struct("SimConfig")
            .field("jira_search_delay", &self.jira_search_delay)
            .field("faults", &self.faults)
            .field("jira_email", &self.jira_email)
            .field("jira_token", &HIDDEN)
            .field("jira_pat", &HIDDEN)
            .field("servicenow_user", &self.servicenow_user)
            .field("servicenow_password", &HIDDEN)
            .field("servicenow_client_id", &self.servicenow_client_id)
            .field("servicenow_client_secret", &HIDDEN)
            .field("servicenow_token_ttl", &self.servicenow_token_ttl)
            .field("rate_limit_per_sec", &self.rate_limit_per_sec)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_every_secret() {
        let cfg = SimConfig::default();
        let text = format!("{cfg:?}");
        for secret in ["sim-token", "sim-pat", "sim-password", "sim-client-secret"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        assert!(text.contains("sim@example.com"));
    }

    #[test]
    fn faults_json_uses_milliseconds_and_rejects_unknown_fields() {
        let f: Faults = serde_json::from_str(r#"{"latency_ms": 250, "error_rate": 0.5}"#).unwrap();
        assert_eq!(f.latency, Duration::from_millis(250));
        assert_eq!(f.retry_after_secs, 1);
        assert!(serde_json::from_str::<Faults>(r#"{"latency": 1}"#).is_err());
    }

    #[test]
    fn out_of_range_error_rate_is_rejected() {
        let f = Faults {
            error_rate: 1.5,
            ..Faults::default()
        };
        assert!(f.validate().is_err());
        let f = Faults {
            burst_429_every: Some(0),
            ..Faults::default()
        };
        assert!(f.validate().is_err());
        assert!(Faults::none().validate().is_ok());
    }
}
