//! Jira connection settings: which API (Cloud v3 or Data Center v2), how the bridge signs in, and
//! reading them from `JIRA_*` variables (the settings every connection shares are read by
//! [`crate::ticket::settings`]).

use std::fmt;
use std::time::Duration;

use reqwest::header::HeaderValue;
use secrecy::SecretString;
use url::Url;

use super::SYSTEM;
use super::format::JiraFlavor;
use crate::ticket::auth;
use crate::ticket::connection::SignedWith;
use crate::ticket::http::{ClientConfigError, HttpSettings};
use crate::ticket::settings::{ConnectionEnv, SettingNames, SignIns};

/// How long Jira Cloud's search index may lag a create, by default: seconds in practice,
/// sometimes more (`JIRA_SEARCH_CONSISTENCY`).
pub const DEFAULT_SEARCH_CONSISTENCY: Duration = Duration::from_secs(15);

/// The `JIRA_*` names of the settings every connection has.
pub(super) const SETTINGS: SettingNames = SettingNames {
    prefix: "JIRA_",
    url: "JIRA_URL",
    rate_limit: "JIRA_RATE_LIMIT",
    request_timeout: "JIRA_REQUEST_TIMEOUT",
    search_consistency: "JIRA_SEARCH_CONSISTENCY",
    sign_ins: SignIns {
        conflict: "JIRA_PAT",
        either: "set either JIRA_EMAIL + JIRA_API_TOKEN (Cloud) or JIRA_PAT (Data Center), not both",
        missing: "JIRA_EMAIL + JIRA_API_TOKEN or JIRA_PAT",
    },
};

/// Names Jira's credentials in errors.
const CREDENTIALS: &str = "JIRA credentials";

/// How the bridge signs in: Cloud uses an Atlassian account e-mail with an API token, Data
/// Center a personal access token.
#[derive(Clone)]
pub enum JiraAuth {
    Basic {
        email: String,
        api_token: SecretString,
    },
    Bearer {
        pat: SecretString,
    },
}

impl fmt::Debug for JiraAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JiraAuth::Bearer { .. } => auth::debug_credential(f, "Bearer", None, "pat"),
            JiraAuth::Basic { email, .. } => {
                auth::debug_credential(f, "Basic", Some(("email", email)), "api_token")
            }
        }
    }
}

impl JiraAuth {
    /// The `Authorization` header, and the secret values to scrub from errors.
    pub(super) fn authorization(&self) -> Result<SignedWith<HeaderValue>, ClientConfigError> {
        match self {
            JiraAuth::Basic { email, api_token } => auth::basic(email, api_token, CREDENTIALS),
            JiraAuth::Bearer { pat } => auth::bearer(pat)
                .map(|header| (header, vec![pat.clone()]))
                .ok_or_else(|| auth::unfit(CREDENTIALS)),
        }
    }
}

/// REST API flavour: `V3` for Jira Cloud, `V2` for Data Center / Server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JiraApiVersion {
    V3,
    V2,
}

impl JiraApiVersion {
    /// The version's segment of `/rest/api/{segment}/…`.
    pub(super) fn segment(self) -> &'static str {
        match self {
            JiraApiVersion::V3 => "3",
            JiraApiVersion::V2 => "2",
        }
    }

    /// How this API writes rich text (descriptions, comments).
    pub fn flavor(self) -> JiraFlavor {
        match self {
            JiraApiVersion::V3 => JiraFlavor::Cloud,
            JiraApiVersion::V2 => JiraFlavor::DataCenter,
        }
    }
}

#[derive(Debug, Clone)]
pub struct JiraConfig {
    /// Connection name, used as `TicketRef::system`.
    pub name: String,
    pub base_url: Url,
    pub auth: JiraAuth,
    pub api_version: JiraApiVersion,
    /// Where people open tickets: `{browse_base}/browse/KEY` (differs from `base_url` behind
    /// API gateways).
    pub browse_base: Url,
    pub http: HttpSettings,
    /// Issues per page when polling for updates.
    pub page_size: u32,
    /// How long the search index may lag a create (`JIRA_SEARCH_CONSISTENCY`).
    pub search_consistency: Duration,
}

impl JiraConfig {
    pub fn new(base_url: Url, auth: JiraAuth, api_version: JiraApiVersion) -> JiraConfig {
        JiraConfig {
            name: SYSTEM.to_owned(),
            browse_base: base_url.clone(),
            base_url,
            auth,
            api_version,
            http: HttpSettings::default(),
            page_size: 50,
            search_consistency: DEFAULT_SEARCH_CONSISTENCY,
        }
    }

    /// Reads `JIRA_URL`, `JIRA_EMAIL` + `JIRA_API_TOKEN` (Cloud) or `JIRA_PAT` (Data Center),
    /// `JIRA_API_VERSION` and the connection's tuning from `lookup` (see
    /// [`crate::config::Config`]). `Ok(None)` when Jira is not configured at all.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<JiraConfig>, ClientConfigError> {
        let env = ConnectionEnv::new(lookup, &SETTINGS);
        let pat = env.get("JIRA_PAT");
        let basic = env.pair("JIRA_EMAIL", "JIRA_API_TOKEN");
        let version = env.get("JIRA_API_VERSION");
        let Some(base_url) = env.base_url(basic.any() || pat.is_some() || version.is_some())?
        else {
            return Ok(None);
        };
        let auth = match (env.first_sign_in(basic.any(), pat.is_some())?, pat) {
            // Only a PAT: Data Center.
            (false, Some(pat)) => JiraAuth::Bearer {
                pat: SecretString::from(pat),
            },
            _ => {
                let (email, api_token) = basic.both()?;
                JiraAuth::Basic { email, api_token }
            }
        };
        let api_version = match version.as_deref().map(str::trim) {
            Some("3") => JiraApiVersion::V3,
            Some("2") => JiraApiVersion::V2,
            Some(other) => {
                return Err(ClientConfigError::Invalid {
                    name: "JIRA_API_VERSION",
                    message: format!("expected 3 (Cloud) or 2 (Data Center), got {other:?}"),
                });
            }
            // Cloud signs in with e-mail + token, Data Center with a PAT.
            None => match auth {
                JiraAuth::Basic { .. } => JiraApiVersion::V3,
                JiraAuth::Bearer { .. } => JiraApiVersion::V2,
            },
        };
        let mut cfg = JiraConfig::new(base_url, auth, api_version);
        env.tune(&mut cfg.http, &mut cfg.search_consistency)?;
        Ok(Some(cfg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::settings;

    #[test]
    fn each_api_writes_its_own_rich_text() {
        assert_eq!(JiraApiVersion::V3.flavor(), JiraFlavor::Cloud);
        assert_eq!(JiraApiVersion::V2.flavor(), JiraFlavor::DataCenter);
    }

    #[test]
    fn env_configuration_is_all_or_nothing() {
        assert!(
            JiraConfig::from_lookup(settings::fake_env(&[]))
                .unwrap()
                .is_none()
        );
        let cloud = JiraConfig::from_lookup(settings::fake_env(&[
            ("JIRA_URL", "https://acme.atlassian.net"),
            ("JIRA_EMAIL", "bot@acme.test"),
            ("JIRA_API_TOKEN", "tok-123"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(cloud.api_version, JiraApiVersion::V3);
        let dc = JiraConfig::from_lookup(settings::fake_env(&[
            ("JIRA_URL", "https://jira.acme.test"),
            ("JIRA_PAT", "pat-456"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(dc.api_version, JiraApiVersion::V2);
        assert_eq!(
            dc.http.rate_limit_per_sec,
            HttpSettings::default().rate_limit_per_sec
        );
        let throttled = JiraConfig::from_lookup(settings::fake_env(&[
            ("JIRA_URL", "https://jira.acme.test"),
            ("JIRA_PAT", "pat-456"),
            ("JIRA_RATE_LIMIT", "4"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(throttled.http.rate_limit_per_sec, 4.0);
        let bad_rate = JiraConfig::from_lookup(settings::fake_env(&[
            ("JIRA_URL", "https://jira.acme.test"),
            ("JIRA_PAT", "pat-456"),
            ("JIRA_RATE_LIMIT", "lots"),
        ]))
        .unwrap_err();
        assert!(
            bad_rate.to_string().starts_with("JIRA_RATE_LIMIT:"),
            "{bad_rate}"
        );

        let half = JiraConfig::from_lookup(settings::fake_env(&[
            ("JIRA_URL", "https://acme.atlassian.net"),
            ("JIRA_EMAIL", "bot@acme.test"),
        ]))
        .unwrap_err();
        assert_eq!(
            half.to_string(),
            "JIRA_API_TOKEN is required when JIRA_EMAIL is set"
        );
        let no_url =
            JiraConfig::from_lookup(settings::fake_env(&[("JIRA_PAT", "pat-456")])).unwrap_err();
        assert!(no_url.to_string().starts_with("JIRA_URL is required"));
        let both = JiraConfig::from_lookup(settings::fake_env(&[
            ("JIRA_URL", "https://acme.atlassian.net"),
            ("JIRA_EMAIL", "bot@acme.test"),
            ("JIRA_API_TOKEN", "tok-123"),
            ("JIRA_PAT", "pat-456"),
        ]))
        .unwrap_err();
        assert!(both.to_string().contains("not both"));
        let bad_version = JiraConfig::from_lookup(settings::fake_env(&[
            ("JIRA_URL", "https://acme.atlassian.net"),
            ("JIRA_PAT", "pat-456"),
            ("JIRA_API_VERSION", "4"),
        ]))
        .unwrap_err();
        assert!(bad_version.to_string().contains("JIRA_API_VERSION"));
        assert!(!format!("{both:?}{half:?}").contains("tok-123"));
    }
}
