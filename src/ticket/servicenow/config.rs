//! ServiceNow connection settings: the instance, how the bridge signs in (Basic auth with an
//! integration user, or OAuth client credentials), the table and resolution details, and reading
//! them from `SERVICENOW_*` variables (the settings every connection shares are read by
//! [`crate::ticket::settings`]).

use std::fmt;
use std::time::Duration;

use reqwest::header::HeaderValue;
use secrecy::SecretString;
use url::Url;

use super::SYSTEM;
use super::query::valid_table;
use super::status::valid_state_code;
use crate::ticket::auth;
use crate::ticket::connection::{SignedWith, require_base};
use crate::ticket::http::{ClientConfigError, HttpSettings};
use crate::ticket::settings::{ConnectionEnv, SettingNames, SignIns};

/// The `SERVICENOW_*` names of the settings every connection has.
pub(super) const SETTINGS: SettingNames = SettingNames {
    prefix: "SERVICENOW_",
    url: "SERVICENOW_URL",
    rate_limit: "SERVICENOW_RATE_LIMIT",
    request_timeout: "SERVICENOW_REQUEST_TIMEOUT",
    search_consistency: "SERVICENOW_SEARCH_CONSISTENCY",
    sign_ins: SignIns {
        conflict: "SERVICENOW_CLIENT_ID",
        either: "set either SERVICENOW_USERNAME + SERVICENOW_PASSWORD or SERVICENOW_CLIENT_ID + SERVICENOW_CLIENT_SECRET, not both",
        missing: "SERVICENOW_USERNAME + SERVICENOW_PASSWORD or SERVICENOW_CLIENT_ID + SERVICENOW_CLIENT_SECRET",
    },
};

/// Basic auth with an integration user, or OAuth client credentials (`/oauth_token.do`).
#[derive(Clone)]
pub enum ServiceNowAuth {
    Basic {
        username: String,
        password: SecretString,
    },
    OAuth {
        client_id: String,
        client_secret: SecretString,
    },
}

impl fmt::Debug for ServiceNowAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceNowAuth::Basic { username, .. } => {
                auth::debug_credential(f, "Basic", Some(("username", username)), "password")
            }
            ServiceNowAuth::OAuth { client_id, .. } => {
                auth::debug_credential(f, "OAuth", Some(("client_id", client_id)), "client_secret")
            }
        }
    }
}

/// How requests are signed: a fixed header, or a bearer token fetched with the client
/// credentials (see [`super::oauth`]).
#[derive(Clone)]
pub(super) enum Signing {
    Basic(HeaderValue),
    OAuth {
        client_id: String,
        client_secret: SecretString,
    },
}

impl ServiceNowAuth {
    /// How requests are signed with these credentials, and the secret values to scrub from
    /// errors.
    pub(super) fn signing(self) -> Result<SignedWith<Signing>, ClientConfigError> {
        Ok(match self {
            ServiceNowAuth::Basic { username, password } => {
                let (header, scrub) = auth::basic(&username, &password, "ServiceNow credentials")?;
                (Signing::Basic(header), scrub)
            }
            ServiceNowAuth::OAuth {
                client_id,
                client_secret,
            } => (
                Signing::OAuth {
                    client_id,
                    client_secret: client_secret.clone(),
                },
                vec![client_secret],
            ),
        })
    }
}

#[derive(Debug, Clone)]
pub struct ServiceNowConfig {
    /// Connection name, used as `TicketRef::system`.
    pub name: String,
    pub base_url: Url,
    pub auth: ServiceNowAuth,
    /// Table for rules that name none, and the table polled for status changes.
    pub default_table: String,
    /// `close_code` sent when resolving (an out-of-the-box incident resolution code).
    pub close_code: String,
    /// `close_notes` when the caller gives no note.
    pub close_notes: String,
    /// State code a reopened record goes back to (2 = In Progress).
    pub reopen_state: String,
    pub http: HttpSettings,
    /// Records per page when polling for updates.
    pub page_size: u32,
    /// Refresh an OAuth token this long before it expires.
    pub token_refresh_margin: Duration,
    /// How long a created record may stay invisible to a query (`SERVICENOW_SEARCH_CONSISTENCY`;
    /// the Table API reads its own writes, so 0 unless a proxy or replica sits in between).
    pub search_consistency: Duration,
}

impl ServiceNowConfig {
    pub fn new(base_url: Url, auth: ServiceNowAuth) -> ServiceNowConfig {
        ServiceNowConfig {
            name: SYSTEM.to_owned(),
            base_url,
            auth,
            default_table: "incident".to_owned(),
            // The finding's source reported it fixed: the caller resolved it.
            close_code: "Resolved by caller".to_owned(),
            close_notes:
                "Resolved by findings-bridge: the Security Hub finding is no longer active."
                    .to_owned(),
            reopen_state: "2".to_owned(),
            http: HttpSettings::default(),
            page_size: 100,
            token_refresh_margin: Duration::from_secs(60),
            search_consistency: Duration::ZERO,
        }
    }

    /// Reads the settings from `lookup` (see [`crate::config::Config`]).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ServiceNowConfig>, ClientConfigError> {
        let env = ConnectionEnv::new(lookup, &SETTINGS);
        let basic = env.pair("SERVICENOW_USERNAME", "SERVICENOW_PASSWORD");
        let oauth = env.pair("SERVICENOW_CLIENT_ID", "SERVICENOW_CLIENT_SECRET");
        let Some(base_url) = env.base_url(basic.any() || oauth.any())? else {
            return Ok(None);
        };
        let auth = if env.first_sign_in(basic.any(), oauth.any())? {
            let (username, password) = basic.both()?;
            ServiceNowAuth::Basic { username, password }
        } else {
            let (client_id, client_secret) = oauth.both()?;
            ServiceNowAuth::OAuth {
                client_id,
                client_secret,
            }
        };
        let mut cfg = ServiceNowConfig::new(base_url, auth);
        env.tune(&mut cfg.http, &mut cfg.search_consistency)?;
        Ok(Some(cfg))
    }

    /// Refuses what no client could work with: a base URL that paths cannot be appended to, a
    /// default table that is not a table name, a reopen state that is not a state code.
    pub(super) fn check(&self) -> Result<(), ClientConfigError> {
        require_base(SETTINGS.url, &self.base_url)?;
        if !valid_table(&self.default_table) {
            return Err(ClientConfigError::Invalid {
                name: "default_table",
                message: format!("{:?} is not a table name", self.default_table),
            });
        }
        if valid_state_code(&self.reopen_state).is_none() {
            return Err(ClientConfigError::Invalid {
                name: "reopen_state",
                message: format!("{:?} is not a state code", self.reopen_state),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::settings::fake_env;

    #[test]
    fn a_client_needs_a_table_and_a_reopen_state() {
        let auth = ServiceNowAuth::Basic {
            username: "bridge".to_owned(),
            password: SecretString::from("pw"),
        };
        let mut cfg = ServiceNowConfig::new(Url::parse("https://sn.test").unwrap(), auth);
        assert!(cfg.check().is_ok());
        cfg.reopen_state = "In Progress".to_owned();
        assert!(cfg.check().is_ok(), "a label names a state too");
        cfg.reopen_state = "2^ORstate=1".to_owned();
        assert!(
            cfg.check()
                .unwrap_err()
                .to_string()
                .starts_with("reopen_state:")
        );
        cfg.default_table = "incident/../sys_user".to_owned();
        assert!(
            cfg.check()
                .unwrap_err()
                .to_string()
                .starts_with("default_table:")
        );
    }

    #[test]
    fn env_configuration_is_all_or_nothing() {
        assert!(
            ServiceNowConfig::from_lookup(fake_env(&[]))
                .unwrap()
                .is_none()
        );
        let basic = ServiceNowConfig::from_lookup(fake_env(&[
            ("SERVICENOW_URL", "https://acme.service-now.com"),
            ("SERVICENOW_USERNAME", "bridge"),
            ("SERVICENOW_PASSWORD", "pw-secret"),
        ]))
        .unwrap()
        .unwrap();
        assert!(matches!(basic.auth, ServiceNowAuth::Basic { .. }));
        assert!(!format!("{basic:?}").contains("pw-secret"));
        let oauth = ServiceNowConfig::from_lookup(fake_env(&[
            ("SERVICENOW_URL", "https://acme.service-now.com"),
            ("SERVICENOW_CLIENT_ID", "cid"),
            ("SERVICENOW_CLIENT_SECRET", "cs-secret"),
        ]))
        .unwrap()
        .unwrap();
        assert!(matches!(oauth.auth, ServiceNowAuth::OAuth { .. }));
        assert!(format!("{oauth:?}").contains("[REDACTED]"));
        assert!(!format!("{oauth:?}").contains("cs-secret"));

        let half = ServiceNowConfig::from_lookup(fake_env(&[
            ("SERVICENOW_URL", "https://acme.service-now.com"),
            ("SERVICENOW_CLIENT_ID", "cid"),
        ]))
        .unwrap_err();
        assert_eq!(
            half.to_string(),
            "SERVICENOW_CLIENT_SECRET is required when SERVICENOW_CLIENT_ID is set"
        );
        let mixed = ServiceNowConfig::from_lookup(fake_env(&[
            ("SERVICENOW_URL", "https://acme.service-now.com"),
            ("SERVICENOW_USERNAME", "bridge"),
            ("SERVICENOW_CLIENT_SECRET", "cs-secret"),
        ]))
        .unwrap_err();
        assert!(mixed.to_string().contains("not both"));
        let no_url =
            ServiceNowConfig::from_lookup(fake_env(&[("SERVICENOW_PASSWORD", "pw")])).unwrap_err();
        assert!(no_url.to_string().starts_with("SERVICENOW_URL is required"));
        let bad_url = ServiceNowConfig::from_lookup(fake_env(&[
            ("SERVICENOW_URL", "not a url"),
            ("SERVICENOW_USERNAME", "bridge"),
            ("SERVICENOW_PASSWORD", "pw"),
        ]))
        .unwrap_err();
        assert!(bad_url.to_string().starts_with("SERVICENOW_URL:"));
    }
}
