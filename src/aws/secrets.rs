//! Ticket-system credentials that rotate without a restart (issue 18, "Connection health").
//!
//! Each secret variable (`JIRA_API_TOKEN`, `JIRA_PAT`, `SERVICENOW_PASSWORD`,
//! `SERVICENOW_CLIENT_SECRET`) can instead be given as `<NAME>_SECRET_ARN`: the ARN of a Secrets
//! Manager secret whose `SecretString` is the value, or `ARN#KEY` to take the string at `KEY` of a
//! secret that holds a JSON object (the stack's one-secret-per-system layout). Setting both the
//! variable and its `_SECRET_ARN` is a configuration error naming both.
//!
//! A value from Secrets Manager is read at start (an unreadable secret stops the start, naming
//! the ARN), then again
//! - every `BRIDGE_SECRETS_REFRESH` seconds ([`DEFAULT_REFRESH`]; `0` turns this off), and
//! - before each probe of a paused connection ([`CredentialRefresh`]): a refused
//!   credential pauses its connection, so a rotated secret is picked up at the next probe, which
//!   then succeeds and resumes the connection.
//!
//! When the value changed, the client's credentials are swapped in place
//! ([`JiraClient::replace_auth`](crate::ticket::jira::JiraClient::replace_auth),
//! [`ServiceNowClient::replace_auth`](crate::ticket::servicenow::ServiceNowClient::replace_auth),
//! which also drops a cached OAuth token). Values from the environment never change under a
//! running process and are never re-read; without any `_SECRET_ARN` nothing calls AWS.
//!
//! Values are [`SecretString`]s from the moment they are read: no `Debug`, error or log line
//! shows one. Errors name the variable and the ARN, never the value.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::runtime::shutdown::Shutdown;
use crate::ticket::BoxFuture;
use crate::ticket::http::ClientConfigError;

/// Seconds between two periodic re-reads, unless `BRIDGE_SECRETS_REFRESH` says otherwise.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(900);
pub const REFRESH_ENV: &str = "BRIDGE_SECRETS_REFRESH";

/// The secret variables, each with the variable that may give its Secrets Manager ARN instead.
pub const SECRET_VARIABLES: [(&str, &str); 4] = [
    ("JIRA_API_TOKEN", "JIRA_API_TOKEN_SECRET_ARN"),
    ("JIRA_PAT", "JIRA_PAT_SECRET_ARN"),
    ("SERVICENOW_PASSWORD", "SERVICENOW_PASSWORD_SECRET_ARN"),
    (
        "SERVICENOW_CLIENT_SECRET",
        "SERVICENOW_CLIENT_SECRET_SECRET_ARN",
    ),
];

/// A Secrets Manager secret named by `<NAME>_SECRET_ARN`, optionally with `#KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The variable that named it, e.g. `JIRA_API_TOKEN_SECRET_ARN`.
    pub variable: &'static str,
    pub arn: String,
    /// The key of a JSON object secret whose string value is the credential.
    pub key: Option<String>,
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{}#{key}", self.arn),
            None => f.write_str(&self.arn),
        }
    }
}

impl SecretRef {
    /// Reads `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME[#KEY]`.
    pub fn parse(variable: &'static str, value: &str) -> Result<SecretRef, ClientConfigError> {
        let invalid = |message: String| ClientConfigError::Invalid {
            name: variable,
            message,
        };
        let value = value.trim();
        let (arn, key) = match value.split_once('#') {
            Some((arn, key)) => {
                if key.is_empty() {
                    return Err(invalid(format!(
                        "{value:?} ends in #: name the JSON key after it, or leave # out"
                    )));
                }
                (arn, Some(key.to_owned()))
            }
            None => (value, None),
        };
        let parts: Vec<&str> = arn.splitn(7, ':').collect();
        match parts.as_slice() {
            [
                "arn",
                partition,
                "secretsmanager",
                region,
                account,
                "secret",
                name,
            ] if !partition.is_empty()
                && !region.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && !name.is_empty() =>
            {
                Ok(SecretRef {
                    variable,
                    arn: arn.to_owned(),
                    key,
                })
            }
            _ => Err(invalid(format!(
                "{arn:?} is not a Secrets Manager secret ARN \
                 (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME, optionally followed by #KEY)"
            ))),
        }
    }
}

/// Where one secret's value comes from.
#[derive(Clone)]
pub enum CredentialSource {
    /// The variable itself. An environment does not change under a running process: never
    /// re-read.
    Env(SecretString),
    /// `<NAME>_SECRET_ARN`: read at start and re-read while the process runs.
    SecretsManager(SecretRef),
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Env(_) => f.debug_tuple("Env").field(&"[REDACTED]").finish(),
            CredentialSource::SecretsManager(secret) => {
                f.debug_tuple("SecretsManager").field(secret).finish()
            }
        }
    }
}

impl CredentialSource {
    /// The source of secret variable `name` (one of [`SECRET_VARIABLES`]): the variable, its
    /// `_SECRET_ARN`, or `None` when neither is set. Both set is an error naming both.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        name: &'static str,
    ) -> Result<Option<CredentialSource>, ClientConfigError> {
        let Some(arn_name) = arn_variable(name) else {
            return Err(ClientConfigError::Invalid {
                name,
                message: "is not a secret variable".to_owned(),
            });
        };
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        match (get(name), get(arn_name)) {
            (Some(_), Some(_)) => Err(ClientConfigError::Invalid {
                name: arn_name,
                message: format!("set either {name} or {arn_name}, not both"),
            }),
            (Some(value), None) => Ok(Some(CredentialSource::Env(SecretString::from(value)))),
            (None, Some(arn)) => Ok(Some(CredentialSource::SecretsManager(SecretRef::parse(
                arn_name, &arn,
            )?))),
            (None, None) => Ok(None),
        }
    }
}

fn arn_variable(name: &str) -> Option<&'static str> {
    SECRET_VARIABLES
        .iter()
        .find(|(variable, _)| *variable == name)
        .map(|(_, arn)| *arn)
}

/// Every secret variable given as `<NAME>_SECRET_ARN`, by the variable it stands for
/// (`JIRA_API_TOKEN` → its secret). Checks all four for conflicts and ARN syntax.
pub fn secret_arns(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<&'static str, SecretRef>, ClientConfigError> {
    let mut found = BTreeMap::new();
    for (name, _) in SECRET_VARIABLES {
        if let Some(CredentialSource::SecretsManager(secret)) =
            CredentialSource::from_lookup(&lookup, name)?
        {
            found.insert(name, secret);
        }
    }
    Ok(found)
}

/// `BRIDGE_SECRETS_REFRESH`: seconds between periodic re-reads; `None` when `0` turns them off.
pub fn refresh_interval(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<Duration>, ClientConfigError> {
    let value = lookup(REFRESH_ENV);
    Ok(
        match crate::ticket::http::seconds_setting(REFRESH_ENV, value.as_deref())? {
            None => Some(DEFAULT_REFRESH),
            Some(every) if every.is_zero() => None,
            Some(every) => Some(every),
        },
    )
}

/// Why a secret could not be read or used. Names the variable and the secret, never the value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{variable}: Secrets Manager secret {secret}: {message}")]
pub struct SecretError {
    pub variable: &'static str,
    /// The ARN, with `#KEY` when one was given.
    pub secret: String,
    pub message: String,
}

/// Reads a secret's current `SecretString` (`AWSCURRENT`): Secrets Manager in production, a
/// map in tests.
pub trait SecretReader: Send + Sync {
    fn read<'a>(&'a self, arn: &'a str) -> BoxFuture<'a, Result<SecretString, String>>;
}

impl SecretReader for aws_sdk_secretsmanager::Client {
    fn read<'a>(&'a self, arn: &'a str) -> BoxFuture<'a, Result<SecretString, String>> {
        Box::pin(async move {
            let output = self
                .get_secret_value()
                .secret_id(arn)
                .send()
                .await
                .map_err(|e| format!("cannot be read: {}", describe_sdk_error(&e)))?;
            output
                .secret_string()
                .map(|value| SecretString::from(value.to_owned()))
                .ok_or_else(|| {
                    "holds no SecretString (binary secrets are not supported)".to_owned()
                })
        })
    }
}

/// An AWS error in one line: the service's code and message (`AccessDeniedException: …`), or
/// the chain of causes of a failure to reach the service.
fn describe_sdk_error<E, R>(error: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> String
where
    E: std::error::Error + aws_sdk_secretsmanager::error::ProvideErrorMetadata + 'static,
    R: fmt::Debug,
{
    use aws_sdk_secretsmanager::error::ProvideErrorMetadata as _;
    if let aws_sdk_secretsmanager::error::SdkError::ServiceError(_) = error {
        return match (error.code(), error.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => error.to_string(),
        };
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.ends_with(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

/// The credential from a secret's `SecretString`: the string itself, or the string at `key` of
/// a JSON object. Surrounding whitespace (a trailing newline from a file) is ignored.
fn pick(raw: &SecretString, key: Option<&str>) -> Result<SecretString, String> {
    let raw = raw.expose_secret();
    let object = || match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Object(object)) => Some(object),
        _ => None,
    };
    let value = match key {
        Some(key) => {
            let Some(object) = object() else {
                return Err(format!("is not a JSON object, so #{key} cannot be picked"));
            };
            match object.get(key) {
                Some(serde_json::Value::String(value)) => value.trim().to_owned(),
                Some(_) => return Err(format!("its key {key:?} is not a string")),
                None => return Err(format!("has no key {key:?}")),
            }
        }
        None if raw.trim_start().starts_with('{') && object().is_some() => {
            return Err("holds a JSON object: name the key to use as ARN#KEY".to_owned());
        }
        None => raw.trim().to_owned(),
    };
    if value.is_empty() {
        return Err("the value is empty".to_owned());
    }
    Ok(SecretString::from(value))
}

/// Puts a changed value in use: swaps a client's credentials.
pub type ApplyFn =
    Box<dyn Fn(SecretString) -> BoxFuture<'static, Result<(), ClientConfigError>> + Send + Sync>;

/// One connection's secret: where it comes from, the value in use, and what to do when a
/// re-read finds a new one.
pub struct Credentials {
    source: CredentialSource,
    reader: Option<Arc<dyn SecretReader>>,
    current: Mutex<SecretString>,
    apply: Option<ApplyFn>,
    /// One re-read at a time, so that values are put in use in the order they were read.
    refreshing: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("source", &self.source)
            .field("value", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads the value for the first time. A secret that cannot be read (missing, denied,
    /// unreachable, no such key) is an error naming the variable and the ARN.
    pub async fn load(
        source: CredentialSource,
        reader: Option<Arc<dyn SecretReader>>,
    ) -> Result<Credentials, SecretError> {
        let current = match &source {
            CredentialSource::Env(value) => value.clone(),
            CredentialSource::SecretsManager(secret) => read(secret, reader.as_deref()).await?,
        };
        Ok(Credentials {
            source,
            reader,
            current: Mutex::new(current),
            apply: None,
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// What a re-read that finds a new value calls, before the value counts as in use.
    pub fn on_change(mut self, apply: ApplyFn) -> Credentials {
        self.apply = Some(apply);
        self
    }

    pub fn source(&self) -> &CredentialSource {
        &self.source
    }

    /// The value in use.
    pub fn current(&self) -> SecretString {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the value again; when it changed, puts it in use and answers `true`. An
    /// environment value is never re-read (`false`). On any error the value in use stays, and
    /// the next re-read tries again.
    pub async fn refresh(&self) -> Result<bool, SecretError> {
        let CredentialSource::SecretsManager(secret) = &self.source else {
            return Ok(false);
        };
        let _one_at_a_time = self.refreshing.lock().await;
        let fresh = read(secret, self.reader.as_deref()).await?;
        if fresh.expose_secret() == self.current().expose_secret() {
            return Ok(false);
        }
        if let Some(apply) = &self.apply {
            apply(fresh.clone()).await.map_err(|e| SecretError {
                variable: secret.variable,
                secret: secret.to_string(),
                message: format!("the new value cannot be used: {e}"),
            })?;
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        tracing::info!(
            variable = secret.variable,
            secret = %secret,
            "credential changed in Secrets Manager: new requests use the new value"
        );
        Ok(true)
    }
}

async fn read(
    secret: &SecretRef,
    reader: Option<&dyn SecretReader>,
) -> Result<SecretString, SecretError> {
    let error = |message: String| SecretError {
        variable: secret.variable,
        secret: secret.to_string(),
        message,
    };
    let reader = reader.ok_or_else(|| error("no Secrets Manager client".to_owned()))?;
    let raw = reader.read(&secret.arn).await.map_err(error)?;
    pick(&raw, secret.key.as_deref()).map_err(error)
}

/// The credentials that can change, by connection name. Empty when no `_SECRET_ARN` is set.
#[derive(Default)]
pub struct SecretsRefresher {
    connections: BTreeMap<String, Credentials>,
}

impl fmt::Debug for SecretsRefresher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.connections.iter()).finish()
    }
}

impl SecretsRefresher {
    pub fn new() -> SecretsRefresher {
        SecretsRefresher::default()
    }

    /// Re-reads `credentials` for `connection` from now on.
    pub fn insert(&mut self, connection: &str, credentials: Credentials) {
        self.connections.insert(connection.to_owned(), credentials);
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    pub fn get(&self, connection: &str) -> Option<&Credentials> {
        self.connections.get(connection)
    }

    /// Re-reads the credentials of `connection`; `Ok(true)` when a new value is now in use,
    /// `Ok(false)` when unchanged or nothing can change.
    pub async fn refresh(&self, connection: &str) -> Result<bool, SecretError> {
        match self.connections.get(connection) {
            Some(credentials) => credentials.refresh().await,
            None => Ok(false),
        }
    }

    /// Re-reads every connection's credentials; failures are logged and leave the values in
    /// use.
    pub async fn refresh_all(&self) {
        for (connection, credentials) in &self.connections {
            if let Err(error) = credentials.refresh().await {
                tracing::warn!(connection, %error, "re-reading credentials failed; the ones in use stay");
            }
        }
    }

    /// Re-reads every `every` until shutdown (the first read was at start).
    pub async fn run(self: Arc<Self>, every: Duration, shutdown: Shutdown) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = self.refresh_all() => {}
            }
        }
    }
}

/// Re-reads a connection's credentials where they can change while the process runs (Secrets
/// Manager). The connection prober calls it once before each probe of a paused
/// connection, so that a rotated secret is picked up and the probe can succeed with it.
pub trait CredentialRefresh: Send + Sync {
    /// Re-reads the credentials of `connection` and puts a changed value in use. `Ok` also when
    /// the connection has nothing to re-read; `Err` says why re-reading failed (the probe still
    /// runs, with the credentials in use).
    fn refresh<'a>(&'a self, connection: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

impl CredentialRefresh for SecretsRefresher {
    fn refresh<'a>(&'a self, connection: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            SecretsRefresher::refresh(self, connection)
                .await
                .map(drop)
                .map_err(|e| format!("re-reading the credentials failed: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ARN: &str =
        "arn:aws:secretsmanager:us-east-1:111122223333:secret:findings-bridge/jira-AbCdEf";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    /// Secrets Manager as a map from ARN to SecretString.
    #[derive(Default)]
    struct Map(Mutex<HashMap<String, String>>);

    impl Map {
        fn put(&self, arn: &str, value: &str) {
            self.0
                .lock()
                .unwrap()
                .insert(arn.to_owned(), value.to_owned());
        }
    }

    impl SecretReader for Map {
        fn read<'a>(&'a self, arn: &'a str) -> BoxFuture<'a, Result<SecretString, String>> {
            let value = self.0.lock().unwrap().get(arn).cloned();
            Box::pin(async move {
                value
                    .map(SecretString::from)
                    .ok_or_else(|| "cannot be read: ResourceNotFoundException".to_owned())
            })
        }
    }

    #[test]
    fn a_variable_and_its_secret_arn_together_are_refused_naming_both() {
        let err = secret_arns(env(&[
            ("JIRA_API_TOKEN", "tok-123"),
            ("JIRA_API_TOKEN_SECRET_ARN", ARN),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("JIRA_API_TOKEN "), "{err}");
        assert!(err.contains("JIRA_API_TOKEN_SECRET_ARN"), "{err}");
        assert!(!err.contains("tok-123"), "{err}");
    }

    #[test]
    fn secret_arns_are_parsed_with_an_optional_key() {
        let found = secret_arns(env(&[
            ("JIRA_PAT_SECRET_ARN", &format!("{ARN}#JIRA_PAT")),
            ("SERVICENOW_PASSWORD_SECRET_ARN", ARN),
            ("SERVICENOW_CLIENT_SECRET_SECRET_ARN", "  "),
        ]))
        .unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found["JIRA_PAT"].key.as_deref(), Some("JIRA_PAT"));
        assert_eq!(found["JIRA_PAT"].arn, ARN);
        assert_eq!(found["SERVICENOW_PASSWORD"].key, None);
        assert!(secret_arns(env(&[])).unwrap().is_empty());
        for bad in [
            "findings-bridge/jira",
            "arn:aws:secretsmanager:us-east-1:1111:secret:x",
            "arn:aws:ssm:us-east-1:111122223333:parameter/x",
            "arn:aws:secretsmanager:us-east-1:111122223333:secret:",
            &format!("{ARN}#"),
        ] {
            let err = secret_arns(env(&[("JIRA_PAT_SECRET_ARN", bad)])).unwrap_err();
            assert!(
                err.to_string().starts_with("JIRA_PAT_SECRET_ARN:"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_refresh_interval_defaults_to_fifteen_minutes_and_zero_turns_it_off() {
        assert_eq!(refresh_interval(env(&[])).unwrap(), Some(DEFAULT_REFRESH));
        assert_eq!(
            refresh_interval(env(&[(REFRESH_ENV, "60")])).unwrap(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(refresh_interval(env(&[(REFRESH_ENV, "0")])).unwrap(), None);
        let err = refresh_interval(env(&[(REFRESH_ENV, "soon")])).unwrap_err();
        assert!(err.to_string().starts_with(REFRESH_ENV), "{err}");
    }

    #[test]
    fn a_key_picks_a_json_string_and_nothing_else() {
        let json = SecretString::from(r#"{"JIRA_PAT":"pat-1\n","N":3}"#.to_owned());
        assert_eq!(
            pick(&json, Some("JIRA_PAT")).unwrap().expose_secret(),
            "pat-1"
        );
        assert!(pick(&json, Some("X")).unwrap_err().contains("no key \"X\""));
        assert!(pick(&json, Some("N")).unwrap_err().contains("not a string"));
        assert!(pick(&json, None).unwrap_err().contains("ARN#KEY"));
        let plain = SecretString::from("tok-1\n".to_owned());
        assert_eq!(pick(&plain, None).unwrap().expose_secret(), "tok-1");
        let err = pick(&plain, Some("K")).unwrap_err();
        assert!(err.contains("not a JSON object"), "{err}");
        assert!(!err.contains("tok-1"), "{err}");
        assert!(pick(&SecretString::from(" ".to_owned()), None).is_err());
    }

    #[tokio::test]
    async fn a_reread_reports_a_change_once_and_applies_it_before_use() {
        let store = Arc::new(Map::default());
        store.put(ARN, "old-token");
        let secret = SecretRef::parse("JIRA_API_TOKEN_SECRET_ARN", ARN).unwrap();
        let applied = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = applied.clone();
        let credentials = Credentials::load(
            CredentialSource::SecretsManager(secret),
            Some(store.clone() as Arc<dyn SecretReader>),
        )
        .await
        .unwrap()
        .on_change(Box::new(move |value| {
            seen.lock().unwrap().push(value.expose_secret().to_owned());
            Box::pin(async { Ok(()) })
        }));
        assert_eq!(credentials.current().expose_secret(), "old-token");
        assert!(!credentials.refresh().await.unwrap(), "unchanged");
        store.put(ARN, "new-token");
        assert!(credentials.refresh().await.unwrap(), "changed");
        assert!(!credentials.refresh().await.unwrap(), "reported once");
        assert_eq!(credentials.current().expose_secret(), "new-token");
        assert_eq!(*applied.lock().unwrap(), ["new-token"]);

        let debug = format!("{credentials:?}");
        assert!(
            debug.contains("[REDACTED]") && debug.contains(ARN),
            "{debug}"
        );
        assert!(!debug.contains("token"), "{debug}");
    }

    #[tokio::test]
    async fn a_value_the_client_refuses_is_not_taken_into_use_and_is_tried_again() {
        let store = Arc::new(Map::default());
        store.put(ARN, "old");
        let secret = SecretRef::parse("JIRA_PAT_SECRET_ARN", ARN).unwrap();
        let credentials = Credentials::load(
            CredentialSource::SecretsManager(secret),
            Some(store.clone() as Arc<dyn SecretReader>),
        )
        .await
        .unwrap()
        .on_change(Box::new(|_| {
            Box::pin(async {
                Err(ClientConfigError::Invalid {
                    name: "JIRA credentials",
                    message: "contain characters not allowed in an HTTP header".to_owned(),
                })
            })
        }));
        store.put(ARN, "rotated-VALUE\u{7}");
        for _ in 0..2 {
            let err = credentials.refresh().await.unwrap_err().to_string();
            assert!(err.contains(ARN) && err.contains("HTTP header"), "{err}");
            assert!(!err.contains("VALUE"), "{err}");
        }
        assert_eq!(credentials.current().expose_secret(), "old");
    }

    #[tokio::test]
    async fn an_unreadable_secret_names_the_variable_and_the_arn_and_env_values_never_change() {
        let store = Arc::new(Map::default());
        let secret = SecretRef::parse("SERVICENOW_PASSWORD_SECRET_ARN", ARN).unwrap();
        let err = Credentials::load(
            CredentialSource::SecretsManager(secret),
            Some(store as Arc<dyn SecretReader>),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("SERVICENOW_PASSWORD_SECRET_ARN"), "{err}");
        assert!(
            err.contains(ARN) && err.contains("ResourceNotFound"),
            "{err}"
        );

        let env = Credentials::load(CredentialSource::Env(SecretString::from("pw")), None)
            .await
            .unwrap();
        assert!(!env.refresh().await.unwrap());
        assert_eq!(format!("{env:?}").matches("[REDACTED]").count(), 2);
        let mut refresher = SecretsRefresher::new();
        assert!(refresher.is_empty());
        refresher.insert("servicenow", env);
        assert!(!refresher.refresh("servicenow").await.unwrap());
        assert!(
            !refresher.refresh("jira").await.unwrap(),
            "nothing to re-read"
        );
        assert!(!format!("{refresher:?}").contains("pw"));
    }
}
