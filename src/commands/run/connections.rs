//! The ticket connections a command talks to, built from their settings, with the credentials
//! that come from Secrets Manager read (and re-read when they rotate).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;

use crate::aws::secrets::{CredentialSource, Credentials, SecretReader, SecretsRefresher};
use crate::config::TicketSettings;
use crate::runtime::shutdown::Shutdown;
use crate::ticket::TicketSystem;
use crate::ticket::jira::{JiraAuth, JiraClient};
use crate::ticket::servicenow::{ServiceNowAuth, ServiceNowClient};

/// The ticket connections and the credentials behind them that can rotate (see
/// [`crate::aws::secrets`]).
pub struct TicketConnections {
    pub systems: HashMap<String, Arc<dyn TicketSystem>>,
    /// Connections whose secret comes from Secrets Manager; empty when no `_SECRET_ARN` is set.
    pub secrets: Arc<SecretsRefresher>,
    /// `BRIDGE_SECRETS_REFRESH`; `None` turns the periodic re-read off.
    pub refresh_every: Option<Duration>,
    /// The Jira connection of `systems` as its own type, for what only Jira answers
    /// (`preflight`'s createmeta and permission reads).
    pub jira: Option<Arc<JiraClient>>,
    /// The ServiceNow connection of `systems` as its own type (`preflight`'s dictionary reads).
    pub servicenow: Option<Arc<ServiceNowClient>>,
}

impl std::fmt::Debug for TicketConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.systems.keys().collect();
        names.sort();
        f.debug_struct("TicketConnections")
            .field("systems", &names)
            .field("secrets", &self.secrets)
            .field("refresh_every", &self.refresh_every)
            .finish()
    }
}

impl TicketConnections {
    /// The hook [`crate::pipeline::health::run_prober_with`] calls before probing a paused connection;
    /// `None` when no credential can change.
    pub fn credential_refresh(
        &self,
    ) -> Option<Arc<dyn crate::pipeline::health::CredentialRefresh>> {
        (!self.secrets.is_empty()).then(|| {
            Arc::clone(&self.secrets) as Arc<dyn crate::pipeline::health::CredentialRefresh>
        })
    }

    /// Starts the periodic re-read (every `BRIDGE_SECRETS_REFRESH`) until shutdown; `None` when
    /// there is nothing to re-read or it is turned off.
    pub fn spawn_refresh(&self, shutdown: Shutdown) -> Option<tokio::task::JoinHandle<()>> {
        let every = self.refresh_every?;
        if self.secrets.is_empty() {
            return None;
        }
        tracing::info!(
            every_secs = every.as_secs_f64(),
            "re-reading credentials from Secrets Manager periodically"
        );
        Some(tokio::spawn(Arc::clone(&self.secrets).run(every, shutdown)))
    }
}

/// Builds the ticket connections of `settings` (see [`crate::config::Config::tickets`]).
/// Secrets given as `<NAME>_SECRET_ARN` are read from Secrets Manager with a client on `sdk()`'s
/// configuration, which is loaded only when one is set: without any `_SECRET_ARN` nothing calls
/// AWS.
pub async fn ticket_connections<F, Fut>(
    settings: TicketSettings,
    sdk: F,
) -> anyhow::Result<TicketConnections>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<aws_config::SdkConfig>>,
{
    let TicketSettings {
        jira,
        servicenow,
        secrets: arns,
        secrets_refresh,
    } = settings;
    let reader: Option<Arc<dyn SecretReader>> = if arns.is_empty() {
        None
    } else {
        let sdk = sdk().await?;
        Some(Arc::new(crate::aws::metered::secrets_manager(&sdk)))
    };
    let mut loaded: BTreeMap<&'static str, Credentials> = BTreeMap::new();
    for (name, secret) in arns {
        let credentials =
            Credentials::load(CredentialSource::SecretsManager(secret), reader.clone()).await?;
        loaded.insert(name, credentials);
    }

    let mut systems: HashMap<String, Arc<dyn TicketSystem>> = HashMap::new();
    let mut secrets = SecretsRefresher::new();
    let (mut jira_client, mut servicenow_client) = (None, None);
    if let Some(mut cfg) = jira {
        let variable = match &cfg.auth {
            JiraAuth::Basic { .. } => "JIRA_API_TOKEN",
            JiraAuth::Bearer { .. } => "JIRA_PAT",
        };
        let credentials = loaded.remove(variable);
        if let Some(credentials) = &credentials {
            cfg.auth = jira_auth(&cfg.auth, credentials.current());
        }
        let client = Arc::new(JiraClient::new(cfg.clone()).context("Jira client")?);
        if let Some(credentials) = credentials {
            let target = Arc::clone(&client);
            secrets.insert(
                client.name(),
                credentials.on_change(Box::new(move |secret| {
                    let swapped = target.replace_auth(jira_auth(&cfg.auth, secret));
                    Box::pin(async move { swapped })
                })),
            );
        }
        jira_client = Some(Arc::clone(&client));
        systems.insert(client.name().to_owned(), client);
    }
    if let Some(mut cfg) = servicenow {
        let variable = match &cfg.auth {
            ServiceNowAuth::Basic { .. } => "SERVICENOW_PASSWORD",
            ServiceNowAuth::OAuth { .. } => "SERVICENOW_CLIENT_SECRET",
        };
        let credentials = loaded.remove(variable);
        if let Some(credentials) = &credentials {
            cfg.auth = servicenow_auth(&cfg.auth, credentials.current());
        }
        let client = Arc::new(ServiceNowClient::new(cfg.clone()).context("ServiceNow client")?);
        if let Some(credentials) = credentials {
            let target = Arc::clone(&client);
            secrets.insert(
                client.name(),
                credentials.on_change(Box::new(move |secret| {
                    let auth = servicenow_auth(&cfg.auth, secret);
                    let target = Arc::clone(&target);
                    Box::pin(async move { target.replace_auth(auth).await })
                })),
            );
        }
        servicenow_client = Some(Arc::clone(&client));
        systems.insert(client.name().to_owned(), client);
    }
    Ok(TicketConnections {
        systems,
        secrets: Arc::new(secrets),
        refresh_every: secrets_refresh,
        jira: jira_client,
        servicenow: servicenow_client,
    })
}

/// `auth` with its secret (token or PAT) replaced; the user stays.
fn jira_auth(auth: &JiraAuth, secret: SecretString) -> JiraAuth {
    match auth {
        JiraAuth::Basic { email, .. } => JiraAuth::Basic {
            email: email.clone(),
            api_token: secret,
        },
        JiraAuth::Bearer { .. } => JiraAuth::Bearer { pat: secret },
    }
}

/// `auth` with its secret (password or client secret) replaced; the user or client stays.
fn servicenow_auth(auth: &ServiceNowAuth, secret: SecretString) -> ServiceNowAuth {
    match auth {
        ServiceNowAuth::Basic { username, .. } => ServiceNowAuth::Basic {
            username: username.clone(),
            password: secret,
        },
        ServiceNowAuth::OAuth { client_id, .. } => ServiceNowAuth::OAuth {
            client_id: client_id.clone(),
            client_secret: secret,
        },
    }
}
