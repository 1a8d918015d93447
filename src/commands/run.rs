//! Assembles the long-running worker (`findings-bridge run`) from its settings: AWS clients from the
//! SDK's own configuration chain, the store, the ticket connections from the environment, the
//! planner over the mapping files, the HTTP server, and signal handling (SIGTERM/SIGINT drain,
//! SIGHUP reloads the mapping files).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::aws::secrets::{CredentialSource, Credentials, SecretReader, SecretsRefresher};
use crate::aws::securityhub::client::SecurityHubWriter;
use crate::aws::securityhub::{FindingWriter, NoopWriter};
use crate::finding;
use crate::mapping::{self, Mappings};
use crate::pipeline::lifecycle::Lifecycle;
use crate::pipeline::plan::{MappingPlanner, MappingsHandle};
use crate::pipeline::worker::{RunSummary, Worker, WorkerConfig};
use crate::render::{JiraFlavor, RenderOptions};
use crate::runtime::server::{self, Readiness, ServerState};
use crate::runtime::shutdown::Shutdown;
use crate::store::Store;
use crate::store::dynamodb::DynamoStore;
use crate::store::sqlite::SqliteStore;
use crate::sync::webhooks::{self, WebhookSecrets};
use crate::sync::{StatusSync, SyncConfig, SyncReport};
use crate::ticket::TicketSystem;
use crate::ticket::jira::{JiraAuth, JiraClient, JiraConfig};
use crate::ticket::servicenow::{ServiceNowAuth, ServiceNowClient, ServiceNowConfig};

/// Where records live: `sqlite:PATH` (one replica) or `dynamodb:TABLE` (several replicas).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Sqlite(PathBuf),
    DynamoDb(String),
}

impl FromStr for StoreSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<StoreSpec, String> {
        match s.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => {
                Ok(StoreSpec::Sqlite(PathBuf::from(path)))
            }
            Some(("dynamodb", table)) if !table.is_empty() => {
                Ok(StoreSpec::DynamoDb(table.to_owned()))
            }
            _ => Err(format!(
                "{s:?} is not a store: use sqlite:PATH (one replica) or dynamodb:TABLE (several replicas)"
            )),
        }
    }
}

/// Everything `run` needs that is not a secret (secrets come from the environment only).
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub queue_url: String,
    pub dlq_url: Option<String>,
    pub mappings: PathBuf,
    pub store: StoreSpec,
    pub concurrency: usize,
    pub http_addr: SocketAddr,
    pub sync_interval: Duration,
    pub grace: Duration,
    pub visibility_timeout: Duration,
    /// Claim lease per (finding, team); renewed every third of it while work runs.
    pub lease: Duration,
    /// Stop once the queue stays empty (`--drain`).
    pub drain: bool,
    /// Write workflow state back to Security Hub (NOTIFIED after create, severity overrides).
    pub write_back: bool,
}

/// How long one AWS call (SQS, DynamoDB, Security Hub, Detective) may take in all, retries
/// included, and one attempt of it, unless `BRIDGE_AWS_TIMEOUT` / `BRIDGE_AWS_ATTEMPT_TIMEOUT`
/// say otherwise. Without them a hung call would keep a message hidden forever (its visibility
/// is extended while work runs) and hold its claim past any lease.
pub const DEFAULT_AWS_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_AWS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Operation and attempt timeouts of every AWS client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    pub operation: Duration,
    pub attempt: Duration,
}

impl Default for AwsTimeouts {
    fn default() -> Self {
        AwsTimeouts {
            operation: DEFAULT_AWS_TIMEOUT,
            attempt: DEFAULT_AWS_ATTEMPT_TIMEOUT,
        }
    }
}

impl AwsTimeouts {
    /// `BRIDGE_AWS_TIMEOUT` and `BRIDGE_AWS_ATTEMPT_TIMEOUT` (seconds) over the defaults; an
    /// attempt never gets longer than the whole operation.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<AwsTimeouts> {
        let setting = |name: &'static str, default: Duration| -> anyhow::Result<Duration> {
            let value = lookup(name);
            Ok(
                crate::ticket::http::seconds_setting(name, value.as_deref())?
                    .filter(|d| !d.is_zero())
                    .unwrap_or(default),
            )
        };
        let operation = setting("BRIDGE_AWS_TIMEOUT", DEFAULT_AWS_TIMEOUT)?;
        let attempt = setting("BRIDGE_AWS_ATTEMPT_TIMEOUT", DEFAULT_AWS_ATTEMPT_TIMEOUT)?;
        Ok(AwsTimeouts {
            operation,
            attempt: attempt.min(operation),
        })
    }
}

/// The AWS SDK configuration every command uses: the SDK's own chain for region, endpoints and
/// credentials, plus operation and attempt timeouts (`BRIDGE_AWS_TIMEOUT`,
/// `BRIDGE_AWS_ATTEMPT_TIMEOUT`, in seconds). SQS long polls get their wait on top.
pub async fn aws_config() -> anyhow::Result<aws_config::SdkConfig> {
    let timeouts = AwsTimeouts::from_lookup(|name| std::env::var(name).ok())?;
    Ok(aws_config_with(timeouts).await)
}

/// [`aws_config`] with the timeouts given.
pub async fn aws_config_with(timeouts: AwsTimeouts) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts.sdk_config())
        .load()
        .await
}

impl AwsTimeouts {
    /// As the AWS SDK takes them (connecting gets at most 5 s of the attempt).
    pub fn sdk_config(self) -> aws_config::timeout::TimeoutConfig {
        aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(self.operation)
            .operation_attempt_timeout(self.attempt)
            .connect_timeout(self.attempt.min(Duration::from_secs(5)))
            .build()
    }
}

/// A name for this process in store claims: unique across replicas and restarts (ECS tasks all
/// run as pid 1, so the start time is part of it).
pub fn owner_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{host}:{}:{started}", std::process::id())
}

/// The ticket connections configured in the environment, by connection name, with their
/// credentials read (from Secrets Manager for `<NAME>_SECRET_ARN`) once. For commands that end
/// soon; `run` uses [`ticket_connections_from_env`], which keeps re-reading them.
pub async fn ticket_systems_from_env() -> anyhow::Result<HashMap<String, Arc<dyn TicketSystem>>> {
    Ok(ticket_connections_from_env().await?.systems)
}

/// The ticket connections and the credentials behind them that can rotate (see
/// [`crate::aws::secrets`]).
pub struct TicketConnections {
    pub systems: HashMap<String, Arc<dyn TicketSystem>>,
    /// Connections whose secret comes from Secrets Manager; empty when no `_SECRET_ARN` is set.
    pub secrets: Arc<SecretsRefresher>,
    /// `BRIDGE_SECRETS_REFRESH`; `None` turns the periodic re-read off.
    pub refresh_every: Option<Duration>,
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

/// [`ticket_connections`] over the process environment and [`aws_config`].
pub async fn ticket_connections_from_env() -> anyhow::Result<TicketConnections> {
    ticket_connections(|name| std::env::var(name).ok(), aws_config).await
}

/// Builds the ticket connections from `lookup`. Secrets given as `<NAME>_SECRET_ARN` are read
/// from Secrets Manager with a client on `sdk()`'s configuration, which is loaded only when one
/// is set: without any `_SECRET_ARN` nothing calls AWS. Every setting is checked before anything
/// is read.
pub async fn ticket_connections<F, Fut>(
    lookup: impl Fn(&str) -> Option<String>,
    sdk: F,
) -> anyhow::Result<TicketConnections>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<aws_config::SdkConfig>>,
{
    let arns = crate::aws::secrets::secret_arns(&lookup).context("credential settings")?;
    let refresh_every = crate::aws::secrets::refresh_interval(&lookup)?;
    // A stand-in for each secret still to be read, so that a missing URL or a mixed-up auth
    // mode is reported before any AWS call.
    let unread = |name: &str| {
        if arns.contains_key(name) {
            Some("(read from Secrets Manager)".to_owned())
        } else {
            lookup(name)
        }
    };
    JiraConfig::from_lookup(unread).context("Jira configuration")?;
    ServiceNowConfig::from_lookup(unread).context("ServiceNow configuration")?;

    let reader: Option<Arc<dyn SecretReader>> = if arns.is_empty() {
        None
    } else {
        let sdk = sdk().await?;
        Some(Arc::new(aws_sdk_secretsmanager::Client::new(&sdk)))
    };
    let mut loaded: std::collections::BTreeMap<&'static str, Credentials> = Default::default();
    for (name, secret) in arns {
        let credentials =
            Credentials::load(CredentialSource::SecretsManager(secret), reader.clone()).await?;
        loaded.insert(name, credentials);
    }
    let resolved = |name: &str| match loaded.get(name) {
        Some(credentials) => {
            use secrecy::ExposeSecret as _;
            Some(credentials.current().expose_secret().to_owned())
        }
        None => lookup(name),
    };
    let jira = JiraConfig::from_lookup(resolved).context("Jira configuration")?;
    let servicenow = ServiceNowConfig::from_lookup(resolved).context("ServiceNow configuration")?;

    let mut systems: HashMap<String, Arc<dyn TicketSystem>> = HashMap::new();
    let mut secrets = SecretsRefresher::new();
    if let Some(cfg) = jira {
        let (variable, email) = match &cfg.auth {
            JiraAuth::Basic { email, .. } => ("JIRA_API_TOKEN", Some(email.clone())),
            JiraAuth::Bearer { .. } => ("JIRA_PAT", None),
        };
        let client = Arc::new(JiraClient::new(cfg).context("Jira client")?);
        if let Some(credentials) = loaded.remove(variable) {
            let target = Arc::clone(&client);
            secrets.insert(
                client.name(),
                credentials.on_change(Box::new(move |secret| {
                    let auth = match &email {
                        Some(email) => JiraAuth::Basic {
                            email: email.clone(),
                            api_token: secret,
                        },
                        None => JiraAuth::Bearer { pat: secret },
                    };
                    let swapped = target.replace_auth(auth);
                    Box::pin(async move { swapped })
                })),
            );
        }
        systems.insert(client.name().to_owned(), client);
    }
    if let Some(cfg) = servicenow {
        let (variable, user) = match &cfg.auth {
            ServiceNowAuth::Basic { username, .. } => ("SERVICENOW_PASSWORD", username.clone()),
            ServiceNowAuth::OAuth { client_id, .. } => {
                ("SERVICENOW_CLIENT_SECRET", client_id.clone())
            }
        };
        let client = Arc::new(ServiceNowClient::new(cfg).context("ServiceNow client")?);
        if let Some(credentials) = loaded.remove(variable) {
            let target = Arc::clone(&client);
            secrets.insert(
                client.name(),
                credentials.on_change(Box::new(move |secret| {
                    let auth = match variable {
                        "SERVICENOW_PASSWORD" => ServiceNowAuth::Basic {
                            username: user.clone(),
                            password: secret,
                        },
                        _ => ServiceNowAuth::OAuth {
                            client_id: user.clone(),
                            client_secret: secret,
                        },
                    };
                    let target = Arc::clone(&target);
                    Box::pin(async move { target.replace_auth(auth).await })
                })),
            );
        }
        systems.insert(client.name().to_owned(), client);
    }
    Ok(TicketConnections {
        systems,
        secrets: Arc::new(secrets),
        refresh_every,
    })
}

/// The Jira flavour payloads are rendered for: from `JIRA_API_VERSION` (3, the default, or 2).
pub fn render_options_from_env() -> anyhow::Result<RenderOptions> {
    let jira = match std::env::var("JIRA_API_VERSION").ok().as_deref() {
        None | Some("") | Some("3") => JiraFlavor::Cloud,
        Some("2") => JiraFlavor::DataCenter,
        Some(other) => bail!("JIRA_API_VERSION={other:?}: use 3 (Cloud) or 2 (Data Center)"),
    };
    Ok(RenderOptions { jira })
}

/// Every connection a rule targets must be configured, or the rule could never create a ticket:
/// say so at start-up (and on reload), not at the first finding.
pub fn check_connections(
    mappings: &Mappings,
    systems: &HashMap<String, Arc<dyn TicketSystem>>,
) -> anyhow::Result<()> {
    let mut missing: Vec<String> = mappings
        .rules
        .iter()
        .filter(|r| !systems.contains_key(&r.target))
        .map(|r| {
            format!(
                "{}:{}: rule {:?} targets {:?}, which is not configured (set {})",
                r.file.display(),
                r.line,
                &*r.name,
                r.target,
                connection_env_hint(&r.target)
            )
        })
        .collect();
    missing.dedup();
    if !missing.is_empty() {
        bail!("{}", missing.join("\n"));
    }
    Ok(())
}

fn connection_env_hint(target: &str) -> &'static str {
    match target {
        "jira" => "JIRA_URL and JIRA_EMAIL + JIRA_API_TOKEN, or JIRA_PAT",
        "servicenow" => {
            "SERVICENOW_URL and SERVICENOW_USERNAME + SERVICENOW_PASSWORD, or SERVICENOW_CLIENT_ID + SERVICENOW_CLIENT_SECRET"
        }
        _ => "a connection of that name",
    }
}

/// Loads and validates the mapping files (the same checks as `check`, plus connections).
pub fn load_mappings(
    dir: &Path,
    systems: &HashMap<String, Arc<dyn TicketSystem>>,
) -> anyhow::Result<Mappings> {
    let mappings = mapping::load(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    check_connections(&mappings, systems)?;
    Ok(mappings)
}

pub async fn build_store(
    spec: &StoreSpec,
    sdk: &aws_config::SdkConfig,
) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match spec {
        StoreSpec::Sqlite(path) => Arc::new(
            SqliteStore::open(path)
                .with_context(|| format!("opening the SQLite store {}", path.display()))?,
        ),
        StoreSpec::DynamoDb(table) => Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            table.clone(),
        )),
    })
}

/// `/readyz`: the mapping set is loaded, and the queue and the store answer.
struct WorkerReadiness {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    store: Arc<dyn Store>,
    mappings: MappingsHandle,
    health: Arc<crate::pipeline::health::Health>,
}

impl Readiness for WorkerReadiness {
    fn check(&self) -> crate::ticket::BoxFuture<'_, Vec<(String, Result<(), String>)>> {
        Box::pin(async move {
            let mappings = {
                let m = self.mappings.current();
                if m.rules.is_empty() {
                    Err("no rules loaded".to_owned())
                } else {
                    Ok(())
                }
            };
            let queue = self
                .sqs
                .get_queue_attributes()
                .queue_url(&self.queue_url)
                .attribute_names(
                    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string());
            let store = self.store.ping().await.map_err(|e| e.to_string());
            let mut checks = vec![
                ("mappings".to_owned(), mappings),
                ("queue".to_owned(), queue),
                ("store".to_owned(), store),
            ];
            // A paused connection or rule: not ready, with what and why, until a probe succeeds.
            for paused in self.health.report() {
                checks.push((
                    paused.subject.to_string(),
                    Err(format!("paused since {}: {}", paused.since, paused.reason)),
                ));
            }
            checks
        })
    }
}

/// Reloads the mapping files on SIGHUP: validated first; on any error the running set stays.
fn spawn_reload_on_sighup(
    dir: PathBuf,
    handle: MappingsHandle,
    systems: HashMap<String, Arc<dyn TicketSystem>>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                got = hangups.recv() => if got.is_none() { break },
            }
            reload(&dir, &handle, &systems);
        }
    });
    Ok(())
}

/// One reload attempt; returns whether the new set is now in force.
pub fn reload(
    dir: &Path,
    handle: &MappingsHandle,
    systems: &HashMap<String, Arc<dyn TicketSystem>>,
) -> bool {
    match load_mappings(dir, systems) {
        Ok(m) => {
            tracing::info!(teams = m.teams.len(), rules = m.rules.len(), dir = %dir.display(), "mapping files reloaded");
            handle.replace(m);
            true
        }
        Err(e) => {
            crate::runtime::telemetry::error(crate::runtime::telemetry::ErrorKind::Config);
            tracing::error!(error = %format!("{e:#}"), dir = %dir.display(), "mapping reload failed; keeping the mappings in force");
            false
        }
    }
}

/// What `sync --once` and `replay --process` need besides the worker: the pieces of `run` that
/// talk to the ticket systems, the store and Security Hub.
pub struct Pipeline {
    pub mappings: MappingsHandle,
    pub systems: HashMap<String, Arc<dyn TicketSystem>>,
    pub store: Arc<dyn Store>,
    pub writer: Arc<dyn FindingWriter>,
    pub sdk: aws_config::SdkConfig,
}

impl Pipeline {
    pub async fn build(
        mappings: &Path,
        store: &StoreSpec,
        write_back: bool,
    ) -> anyhow::Result<Pipeline> {
        let systems = ticket_systems_from_env().await?;
        if systems.is_empty() {
            bail!(
                "no ticket system configured: set JIRA_URL and/or SERVICENOW_URL with their credentials"
            );
        }
        let handle = MappingsHandle::new(load_mappings(mappings, &systems)?);
        let sdk = aws_config().await?;
        let store = build_store(store, &sdk).await?;
        let writer: Arc<dyn FindingWriter> = if write_back {
            Arc::new(SecurityHubWriter::from_conf(&sdk))
        } else {
            Arc::new(NoopWriter)
        };
        Ok(Pipeline {
            mappings: handle,
            systems,
            store,
            writer,
            sdk,
        })
    }

    /// The lifecycle over these pieces (what the worker runs per finding).
    pub fn lifecycle(&self) -> anyhow::Result<Lifecycle> {
        let planner = MappingPlanner::new(self.mappings.clone(), render_options_from_env()?);
        Ok(Lifecycle::new(
            Arc::clone(&self.store),
            self.systems.clone(),
            Arc::clone(&self.writer),
            Arc::new(planner),
            owner_id(),
        ))
    }
}

/// Amazon Detective enrichment when `DETECTIVE_GRAPH_ARN` is set (rules opt in with
/// `enrich = { detective = true }`).
pub fn investigator_from_env(
    sdk: &aws_config::SdkConfig,
) -> anyhow::Result<Option<Arc<crate::aws::detective::Investigator>>> {
    let Some(cfg) =
        crate::aws::detective::DetectiveConfig::from_env().context("Detective configuration")?
    else {
        return Ok(None);
    };
    tracing::info!(graph = %cfg.graph_arn.as_str(), "Amazon Detective enrichment enabled for rules that ask for it");
    Ok(Some(Arc::new(
        crate::aws::detective::Investigator::from_conf(sdk, cfg),
    )))
}

/// `findings-bridge sync --once`: one poll of every connection.
pub async fn sync_once(mappings: &Path, store: &StoreSpec) -> anyhow::Result<SyncReport> {
    let p = Pipeline::build(mappings, store, true).await?;
    let sync = StatusSync::new(
        p.store,
        p.systems,
        p.writer,
        p.mappings,
        SyncConfig::from_env().context("status sync configuration")?,
    );
    Ok(sync.poll_once().await)
}

/// `findings-bridge run`.
pub async fn run(settings: RunSettings, shutdown: Shutdown) -> anyhow::Result<RunSummary> {
    let metrics = crate::runtime::telemetry::install_metrics();
    let connections = ticket_connections_from_env().await?;
    let systems = connections.systems.clone();
    if systems.is_empty() {
        bail!(
            "no ticket system configured: set JIRA_URL and/or SERVICENOW_URL with their credentials"
        );
    }
    let mappings = load_mappings(&settings.mappings, &systems)?;
    tracing::info!(
        teams = mappings.teams.len(),
        rules = mappings.rules.len(),
        connections = ?systems.keys().collect::<Vec<_>>(),
        "mapping files loaded"
    );
    let handle = MappingsHandle::new(mappings);
    let planner = MappingPlanner::new(handle.clone(), render_options_from_env()?);

    let sdk = aws_config().await?;
    let store = build_store(&settings.store, &sdk).await?;
    store
        .ping()
        .await
        .with_context(|| format!("store {:?} is not reachable", settings.store))?;
    let writer: Arc<dyn FindingWriter> = if settings.write_back {
        Arc::new(SecurityHubWriter::from_conf(&sdk))
    } else {
        Arc::new(NoopWriter)
    };
    let sqs = aws_sdk_sqs::Client::new(&sdk);

    let mut sync_config = SyncConfig::from_env().context("status sync configuration")?;
    sync_config.interval = settings.sync_interval;
    let sync = Arc::new(StatusSync::new(
        Arc::clone(&store),
        systems.clone(),
        Arc::clone(&writer),
        handle.clone(),
        sync_config,
    ));
    let sync_task = tokio::spawn(Arc::clone(&sync).run(shutdown.clone()));

    let health = Arc::new(crate::pipeline::health::Health::new());
    // A paused connection re-reads its Secrets Manager credentials before each probe, and all
    // of them are re-read every BRIDGE_SECRETS_REFRESH: a rotated secret needs no restart.
    let prober = tokio::spawn(crate::pipeline::health::run_prober_with(
        Arc::clone(&health),
        systems.clone(),
        Arc::clone(&store),
        connections.credential_refresh(),
        shutdown.clone(),
    ));
    let secrets_task = connections.spawn_refresh(shutdown.clone());
    let readiness = Arc::new(WorkerReadiness {
        health: Arc::clone(&health),
        sqs: sqs.clone(),
        queue_url: settings.queue_url.clone(),
        store: Arc::clone(&store),
        mappings: handle.clone(),
    });
    let router = server::router(ServerState::new(metrics, readiness)).merge(webhooks::router(
        Arc::clone(&sync),
        WebhookSecrets::from_env(),
    ));
    let server_shutdown = shutdown.clone();
    let (bound, server_task) = server::serve(settings.http_addr, router, async move {
        server_shutdown.wait().await
    })
    .await
    .with_context(|| format!("binding the HTTP server to {}", settings.http_addr))?;
    tracing::info!(addr = %bound, "HTTP server listening (/healthz, /readyz, /metrics, /webhooks/jira, /webhooks/servicenow)");

    spawn_reload_on_sighup(
        settings.mappings.clone(),
        handle.clone(),
        systems.clone(),
        shutdown.clone(),
    )?;

    let owner = owner_id();
    let investigator = investigator_from_env(&sdk)?;
    let lifecycle = Lifecycle::new(store, systems, writer, Arc::new(planner), owner.clone())
        .with_investigator(investigator)
        .with_health(health);
    let mut config = WorkerConfig::new(settings.queue_url.clone(), owner);
    config.dlq_url = settings.dlq_url.clone();
    config.concurrency = settings.concurrency.max(1);
    config.grace = settings.grace;
    config.visibility_timeout = settings.visibility_timeout;
    config.lease = settings.lease;
    if settings.drain {
        config.exit_when_idle = Some(2);
        config.wait_time = Duration::from_secs(2);
    }
    let worker = Worker::from_sqs(config, sqs, lifecycle, finding::decode_each);
    let result = worker.run(shutdown.clone()).await;
    // The worker may stop on its own (drain mode, unusable queue): stop the rest with it.
    shutdown.trigger();
    if let Err(e) = sync_task.await {
        tracing::warn!(error = %e, "status sync task failed");
    }
    if let Err(e) = prober.await {
        tracing::warn!(error = %e, "connection prober failed");
    }
    if let Some(Err(e)) = match secrets_task {
        Some(task) => Some(task.await),
        None => None,
    } {
        tracing::warn!(error = %e, "credential re-read task failed");
    }
    match server_task.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "HTTP server task failed"),
        Ok(Ok(())) => {}
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::jira::JiraApiVersion;

    #[test]
    fn store_spec_parses_both_kinds_and_rejects_others() {
        assert_eq!(
            "sqlite:findings-bridge.db".parse(),
            Ok(StoreSpec::Sqlite(PathBuf::from("findings-bridge.db")))
        );
        assert_eq!(
            "dynamodb:fb-records".parse(),
            Ok(StoreSpec::DynamoDb("fb-records".into()))
        );
        for bad in ["", "sqlite:", "dynamodb:", "postgres:x", "findings.db"] {
            let err = bad.parse::<StoreSpec>().unwrap_err();
            assert!(err.contains("sqlite:PATH"), "{bad}: {err}");
        }
    }

    #[test]
    fn owner_ids_differ_between_calls() {
        let a = owner_id();
        std::thread::sleep(Duration::from_millis(2));
        assert_ne!(a, owner_id());
    }

    #[test]
    fn a_rule_targeting_an_unconfigured_connection_is_reported_with_its_location() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/mappings");
        let mappings = mapping::load(Path::new(dir)).unwrap();
        let err = check_connections(&mappings, &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("targets \"jira\""), "{err}");
        assert!(err.contains("JIRA_URL"), "{err}");
        assert!(err.contains(".toml:"), "{err}");
    }

    #[test]
    fn reload_keeps_the_old_set_when_the_new_one_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let good = "team = \"t\"\n[[rules]]\nname = \"r\"\norder = 1\n[rules.jira]\nproject = \"P\"\nissue_type = \"Bug\"\nsummary = \"{{ finding.title }}\"\n";
        std::fs::write(dir.path().join("t.toml"), good).unwrap();
        let systems: HashMap<String, Arc<dyn TicketSystem>> = {
            let cfg = JiraConfig::new(
                url::Url::parse("http://127.0.0.1:9").unwrap(),
                crate::ticket::jira::JiraAuth::Bearer {
                    pat: secrecy::SecretString::from("x"),
                },
                JiraApiVersion::V2,
            );
            let client = JiraClient::new(cfg).unwrap();
            HashMap::from([(
                client.name().to_owned(),
                Arc::new(client) as Arc<dyn TicketSystem>,
            )])
        };
        let handle = MappingsHandle::new(load_mappings(dir.path(), &systems).unwrap());
        std::fs::write(
            dir.path().join("t.toml"),
            good.replace("{{ finding.title }}", "{{ broken"),
        )
        .unwrap();
        assert!(!reload(dir.path(), &handle, &systems));
        assert_eq!(handle.current().rules.len(), 1, "old set still in force");
        std::fs::write(
            dir.path().join("t.toml"),
            format!("{good}\n[[rules]]\nname = \"r2\"\norder = 2\n[rules.jira]\nproject = \"P\"\nissue_type = \"Bug\"\nsummary = \"s\"\n"),
        )
        .unwrap();
        assert!(reload(dir.path(), &handle, &systems));
        assert_eq!(handle.current().rules.len(), 2, "new set in force");
    }
}
