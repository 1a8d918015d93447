//! Settings of one simulator instance: credentials it accepts, how eventually consistent Jira
//! search is, and which failures it injects.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Failures injected on the API paths (never on `/_sim`), so the bridge's retry and back-off code
/// meets the same trouble it meets in production, reproducibly.
///
/// Every API request gets a sequence number (reset by `set_faults`). With `burst_429_every = N`
/// the sequence runs in cycles of N answered requests followed by `burst_429_len` requests
/// answered 429. Independently, a request is answered 500 when a hash of (`seed`, sequence
/// number) falls below `error_rate`, so the same seed fails the same requests every run.
///
/// Creates (Jira `POST /rest/api/{2,3}/issue`, ServiceNow `POST /api/now/table/{table}`) that
/// got through and committed also get a number of their own (reset by `set_faults` too); a hash
/// of (`seed`, that number) below `ambiguous_create_rate` makes the create *ambiguous*: the
/// ticket exists, but the client is answered as `ambiguous_create_mode` says, so it cannot know.
///
/// Two faults are a connection's or a rule's, not a request's: `refuse_credentials_ms` answers
/// every API request of Jira or ServiceNow 401 for a while (a revoked or rotated token), and
/// `gone_projects` / `gone_tables` make a Jira project or a ServiceNow table cease to exist.
///
/// `POST /_sim/faults` replaces the whole set: a field left out goes back to its default (no
/// refusal, nothing gone), and the refusal clock starts again at that moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every answer: half before the handler runs and half after it (so a client that
    /// gives up may leave a committed write behind, as with a slow real server); injected errors
    /// get all of it before their answer.
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
    /// Seed of the error-rate and ambiguous-create hashes.
    pub seed: u64,
    /// Fraction (0.0–1.0) of committed creates answered ambiguously.
    pub ambiguous_create_rate: f64,
    /// How an ambiguous create is answered.
    pub ambiguous_create_mode: AmbiguousMode,
    /// How long a `late` ambiguous create waits before its 201 (set it above the client's timeout).
    #[serde(rename = "ambiguous_late_ms", with = "duration_ms")]
    pub ambiguous_late: Duration,
    /// Jira search (v3 `search/jql`, v2 `search`) shows only issues created at least this long
    /// ago: Jira's index lag. Direct reads (`GET /issue/{key}`) are always consistent, and
    /// ServiceNow is read-after-write consistent. Changing it applies to existing issues too.
    #[serde(rename = "search_delay_ms", with = "duration_ms")]
    pub search_delay: Duration,
    /// For how long after these faults are set each system refuses every credential.
    #[serde(rename = "refuse_credentials_ms")]
    pub refuse_credentials: RefuseCredentials,
    /// Jira project keys that no longer exist: a create in one answers 400 with
    /// `errors.project`, `GET /rest/api/{2,3}/project/{key}` answers 404. Issues created in it
    /// before stay readable (as in an archived project). Compared without regard to case.
    pub gone_projects: Vec<String>,
    /// ServiceNow tables that no longer exist: every Table API request on one (create, list,
    /// read, update) answers 400 `Invalid table {name}`.
    pub gone_tables: Vec<String>,
}

/// How long, from the moment the faults are set, each system answers 401 to every API request
/// (the probe endpoints included, never `/_sim`): Jira with its JSON error body, the ServiceNow
/// Table API with `User Not Authenticated`, ServiceNow's `/oauth_token.do` with `invalid_client`.
/// Setting a ServiceNow refusal also revokes the OAuth tokens issued so far, so a client must
/// fetch a new one once the refusal is over. Zero (the default): no refusal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefuseCredentials {
    #[serde(with = "duration_ms")]
    pub jira: Duration,
    #[serde(with = "duration_ms")]
    pub servicenow: Duration,
}

/// The systems whose credentials can be refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Jira,
    ServiceNow,
}

impl RefuseCredentials {
    /// How long `system` refuses credentials after the faults are set.
    pub fn of(&self, system: System) -> Duration {
        match system {
            System::Jira => self.jira,
            System::ServiceNow => self.servicenow,
        }
    }
}

/// What the client of an ambiguous create sees, although the ticket was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AmbiguousMode {
    /// 502 Bad Gateway with an HTML body, as a load balancer answers when the backend's answer
    /// was lost.
    #[default]
    #[serde(rename = "502")]
    BadGateway,
    /// The connection is reset without a single byte of answer.
    #[serde(rename = "close")]
    Close,
    /// The 201 comes only after `ambiguous_late_ms`, when the client has given up.
    #[serde(rename = "late")]
    Late,
    /// `502`, `close`, `late`, `502`, … over successive ambiguous creates.
    #[serde(rename = "rotate")]
    Rotate,
}

impl AmbiguousMode {
    pub const NAMES: [&'static str; 4] = ["502", "close", "late", "rotate"];

    pub fn as_str(self) -> &'static str {
        match self {
            AmbiguousMode::BadGateway => "502",
            AmbiguousMode::Close => "close",
            AmbiguousMode::Late => "late",
            AmbiguousMode::Rotate => "rotate",
        }
    }

    /// The mode the `n`-th ambiguous create (from 0) gets: itself, except for `Rotate`.
    pub fn nth(self, n: u64) -> AmbiguousMode {
        match self {
            AmbiguousMode::Rotate => match n % 3 {
                0 => AmbiguousMode::BadGateway,
                1 => AmbiguousMode::Close,
                _ => AmbiguousMode::Late,
            },
            other => other,
        }
    }
}

impl fmt::Display for AmbiguousMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AmbiguousMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "502" => Ok(AmbiguousMode::BadGateway),
            "close" => Ok(AmbiguousMode::Close),
            "late" => Ok(AmbiguousMode::Late),
            "rotate" => Ok(AmbiguousMode::Rotate),
            other => Err(format!(
                "unknown ambiguous create mode {other:?}; expected one of {}",
                AmbiguousMode::NAMES.join(", ")
            )),
        }
    }
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
            ambiguous_create_rate: 0.0,
            ambiguous_create_mode: AmbiguousMode::default(),
            ambiguous_late: Duration::from_secs(35),
            search_delay: Duration::ZERO,
            refuse_credentials: RefuseCredentials::default(),
            gone_projects: Vec::new(),
            gone_tables: Vec::new(),
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
        if !(0.0..=1.0).contains(&self.ambiguous_create_rate) || self.ambiguous_create_rate.is_nan()
        {
            return Err(format!(
                "ambiguous_create_rate must be between 0.0 and 1.0, got {}",
                self.ambiguous_create_rate
            ));
        }
        if self.burst_429_every == Some(0) {
            return Err("burst_429_every must be at least 1".to_owned());
        }
        if self.gone_projects.iter().any(|p| p.trim().is_empty()) {
            return Err("gone_projects must not contain an empty key".to_owned());
        }
        if self.gone_tables.iter().any(|t| t.trim().is_empty()) {
            return Err("gone_tables must not contain an empty name".to_owned());
        }
        Ok(())
    }

    /// Whether the Jira project `key` no longer exists.
    pub fn project_gone(&self, key: &str) -> bool {
        self.gone_projects
            .iter()
            .any(|p| p.eq_ignore_ascii_case(key))
    }

    /// Whether the ServiceNow table `name` no longer exists.
    pub fn table_gone(&self, name: &str) -> bool {
        self.gone_tables.iter().any(|t| t == name)
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
    /// A newly created Jira issue is invisible to search for this long (Jira's index lag): the
    /// starting value of [`Faults::search_delay`] when that is zero, which `/_sim/faults` changes.
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
    /// Whether Jira, ServiceNow and Security Hub each count their own window of
    /// `rate_limit_per_sec` requests, as the real services do (each has its own quota), instead
    /// of all of them sharing one.
    pub rate_limit_per_system: bool,
    /// With `rate_limit_per_system`: Security Hub's own requests per second, when they are not
    /// `rate_limit_per_sec` (AWS's write-back quota is unrelated to the ticket systems').
    pub securityhub_rate_limit_per_sec: Option<u32>,
    /// Rate-limit windows start on whole seconds counted from the simulator's start (a limit
    /// with a reset time), instead of with the first request after the last window ended. With
    /// the latter, the time until that first request is capacity nobody can use, which at a few
    /// requests per second is a tenth of the limit or more: a load test that holds throughput
    /// against the limit wants aligned windows.
    pub rate_limit_aligned: bool,
    /// How the Jira projects and the ServiceNow instance are set up (create screens,
    /// permissions, columns, groups): the starting value of `SharedState::setup`.
    pub setup: crate::setup::Setup,
    /// The Jira user's time zone: what `/myself` reports as `timeZone`, and the zone JQL date
    /// literals (`updated >= "2026-03-04 09:30"`) are read in, as Jira reads them.
    pub jira_time_zone: chrono_tz::Tz,
    /// The display name of the person `SharedState::transition_issue` acts as: the author of
    /// the Jira changelog entries it makes.
    pub human_name: String,
    /// The ServiceNow user name of the person `SharedState::set_servicenow_state` acts as:
    /// `sys_updated_by` (and `resolved_by`/`closed_by`) of the records it changes.
    pub human_user: String,
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
            rate_limit_per_system: false,
            securityhub_rate_limit_per_sec: None,
            rate_limit_aligned: false,
            setup: crate::setup::Setup::default(),
            jira_time_zone: chrono_tz::Tz::UTC,
            human_name: "Jane Doe".to_owned(),
            human_user: "jane.doe".to_owned(),
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
            .field("rate_limit_per_system", &self.rate_limit_per_system)
            .field(
                "securityhub_rate_limit_per_sec",
                &self.securityhub_rate_limit_per_sec,
            )
            .field("rate_limit_aligned", &self.rate_limit_aligned)
            .field("setup", &self.setup)
            .field("jira_time_zone", &self.jira_time_zone)
            .field("human_name", &self.human_name)
            .field("human_user", &self.human_user)
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
    fn ambiguous_settings_round_trip_through_json() {
        let f: Faults = serde_json::from_str(
            r#"{"ambiguous_create_rate": 0.2, "ambiguous_create_mode": "close",
                "ambiguous_late_ms": 9000, "search_delay_ms": 3000}"#,
        )
        .unwrap();
        assert_eq!(f.ambiguous_create_mode, AmbiguousMode::Close);
        assert_eq!(f.ambiguous_late, Duration::from_secs(9));
        assert_eq!(f.search_delay, Duration::from_secs(3));
        let back = serde_json::to_value(&f).unwrap();
        assert_eq!(back["ambiguous_create_mode"], "close");
        assert_eq!(back["search_delay_ms"], 3000);
        assert!(serde_json::from_str::<Faults>(r#"{"ambiguous_create_mode": "reset"}"#).is_err());
        for name in AmbiguousMode::NAMES {
            let mode: AmbiguousMode = name.parse().unwrap();
            assert_eq!(mode.to_string(), name);
        }
        assert!("teapot".parse::<AmbiguousMode>().is_err());
    }

    #[test]
    fn refusals_and_gone_targets_round_trip_through_json() {
        let f: Faults = serde_json::from_str(
            r#"{"refuse_credentials_ms": {"jira": 60000}, "gone_projects": ["PAY"],
                "gone_tables": ["sn_si_incident"]}"#,
        )
        .unwrap();
        assert_eq!(
            f.refuse_credentials.of(System::Jira),
            Duration::from_secs(60)
        );
        assert_eq!(f.refuse_credentials.of(System::ServiceNow), Duration::ZERO);
        assert!(f.project_gone("PAY") && f.project_gone("pay") && !f.project_gone("SEC"));
        assert!(f.table_gone("sn_si_incident") && !f.table_gone("incident"));
        let back = serde_json::to_value(&f).unwrap();
        assert_eq!(
            back["refuse_credentials_ms"],
            serde_json::json!({"jira": 60000, "servicenow": 0})
        );
        assert!(
            serde_json::from_str::<Faults>(r#"{"refuse_credentials_ms": {"sqs": 1}}"#).is_err()
        );
        let empty = Faults {
            gone_projects: vec![" ".to_owned()],
            ..Faults::default()
        };
        assert!(empty.validate().is_err());
    }

    #[test]
    fn rotate_cycles_through_the_three_answers() {
        let modes: Vec<AmbiguousMode> = (0..4).map(|n| AmbiguousMode::Rotate.nth(n)).collect();
        assert_eq!(
            modes,
            [
                AmbiguousMode::BadGateway,
                AmbiguousMode::Close,
                AmbiguousMode::Late,
                AmbiguousMode::BadGateway
            ]
        );
        assert_eq!(AmbiguousMode::Late.nth(5), AmbiguousMode::Late);
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
        let f = Faults {
            ambiguous_create_rate: -0.1,
            ..Faults::default()
        };
        assert!(f.validate().is_err());
        assert!(Faults::none().validate().is_ok());
    }
}
