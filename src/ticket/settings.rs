//! The settings every ticket connection reads the same way, each under its own variable names
//! (`JIRA_*`, `SERVICENOW_*`): the base URL, credentials that only work in pairs, and the HTTP
//! tuning (`*_RATE_LIMIT`, `*_REQUEST_TIMEOUT`, `*_SEARCH_CONSISTENCY`). The systems' slices keep
//! only what differs: which credentials they take and what else they need.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::ticket::http::{ClientConfigError, HttpSettings, rate_limit_setting, seconds_setting};

/// The variable names of the settings every connection has.
#[derive(Debug)]
pub struct SettingNames {
    /// What all of the connection's variables start with (`JIRA_`).
    pub prefix: &'static str,
    /// The ticket system's base URL; a connection without it is not configured.
    pub url: &'static str,
    pub rate_limit: &'static str,
    pub request_timeout: &'static str,
    pub search_consistency: &'static str,
    /// The connection's two ways to sign in, of which exactly one must be set:
    /// [`ConnectionEnv::first_sign_in`].
    pub sign_ins: SignIns,
}

/// How errors name a connection's two ways to sign in.
#[derive(Debug)]
pub struct SignIns {
    /// The setting named when both are set.
    pub conflict: &'static str,
    /// What to do about it: `set either … or …, not both`.
    pub either: &'static str,
    /// What is named as required when neither is set.
    pub missing: &'static str,
}

/// The shortest request timeout a setting may ask for: below it, no answer could ever arrive.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_millis(100);

/// One connection's settings over a variable source (the environment, or a test's table). A
/// value that is blank counts as unset.
pub struct ConnectionEnv<'n, F> {
    lookup: F,
    names: &'n SettingNames,
}

impl<'n, F: Fn(&str) -> Option<String>> ConnectionEnv<'n, F> {
    pub fn new(lookup: F, names: &'n SettingNames) -> Self {
        ConnectionEnv { lookup, names }
    }

    /// The value of `name`, unless it is unset or blank.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// Two settings that only work together (a user and its secret), read now and checked by
    /// [`CredentialPair::both`] once the caller knows this is the sign-in it wants.
    pub fn pair(&self, id: &'static str, secret: &'static str) -> CredentialPair {
        CredentialPair {
            id: (id, self.get(id)),
            secret: (secret, self.get(secret)),
        }
    }

    /// The base URL, an http(s) URL. `Ok(None)` when it is unset and so is every other setting
    /// of the connection (`others_set` false): the connection is simply not configured.
    pub fn base_url(&self, others_set: bool) -> Result<Option<Url>, ClientConfigError> {
        let name = self.names.url;
        let Some(url) = self.get(name) else {
            if others_set {
                return Err(ClientConfigError::Missing {
                    name,
                    because: format!("other {}* settings are present", self.names.prefix),
                });
            }
            return Ok(None);
        };
        let url = Url::parse(url.trim()).map_err(|e| ClientConfigError::Invalid {
            name,
            message: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientConfigError::Invalid {
                name,
                message: "must be an http(s) URL".to_owned(),
            });
        }
        Ok(Some(url))
    }

    /// Whether the settings choose the first way to sign in (`true`) or the second (`false`),
    /// given which of them are (partly) set: both or neither is an error.
    pub fn first_sign_in(&self, first: bool, second: bool) -> Result<bool, ClientConfigError> {
        let ways = &self.names.sign_ins;
        match (first, second) {
            (true, true) => Err(ClientConfigError::Invalid {
                name: ways.conflict,
                message: ways.either.to_owned(),
            }),
            (false, false) => Err(ClientConfigError::Missing {
                name: ways.missing,
                because: format!("{} is set", self.names.url),
            }),
            (first, _) => Ok(first),
        }
    }

    /// Applies the rate limit, the request timeout and the search consistency the settings ask
    /// for; what they leave unset keeps its default.
    pub fn tune(
        &self,
        http: &mut HttpSettings,
        search_consistency: &mut Duration,
    ) -> Result<(), ClientConfigError> {
        let names = self.names;
        if let Some(rate) =
            rate_limit_setting(names.rate_limit, self.get(names.rate_limit).as_deref())?
        {
            http.rate_limit_per_sec = rate;
        }
        if let Some(timeout) = seconds_setting(
            names.request_timeout,
            self.get(names.request_timeout).as_deref(),
        )? {
            http.request_timeout = timeout.max(MIN_REQUEST_TIMEOUT);
        }
        if let Some(lag) = seconds_setting(
            names.search_consistency,
            self.get(names.search_consistency).as_deref(),
        )? {
            *search_consistency = lag;
        }
        Ok(())
    }
}

/// A credential made of an identity and a secret, as set (each may be missing).
#[derive(Debug)]
pub struct CredentialPair {
    id: (&'static str, Option<String>),
    secret: (&'static str, Option<String>),
}

impl CredentialPair {
    /// Whether either half is set: the settings mean this way of signing in.
    pub fn any(&self) -> bool {
        self.id.1.is_some() || self.secret.1.is_some()
    }

    /// Both halves, or an error naming the one that is missing.
    pub fn both(self) -> Result<(String, SecretString), ClientConfigError> {
        match (self.id, self.secret) {
            ((_, Some(id)), (_, Some(secret))) => Ok((id, SecretString::from(secret))),
            ((id_name, Some(_)), (secret_name, None)) => Err(ClientConfigError::Missing {
                name: secret_name,
                because: format!("{id_name} is set"),
            }),
            ((id_name, None), (secret_name, _)) => Err(ClientConfigError::Missing {
                name: id_name,
                because: format!("{secret_name} is set"),
            }),
        }
    }
}

/// A variable source over a fixed table, for the slices' configuration tests.
#[cfg(test)]
pub fn fake_env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}
