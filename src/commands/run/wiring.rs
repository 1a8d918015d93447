//! The parts every command that talks to the outside shares: the store, the mapping set and its
//! reload, the ticket connections, readiness, and [`Pipeline`] (what `sync --once` and
//! `replay --process` assemble).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, bail};

use super::connections::ticket_connections;
use crate::aws::securityhub::client::SecurityHubWriter;
use crate::aws::securityhub::{FindingWriter, NoopWriter};
use crate::config::Config;
use crate::mapping::{self, Mappings};
use crate::pipeline::lifecycle::Lifecycle;
use crate::pipeline::plan::{MappingPlanner, MappingsHandle};
use crate::render::RenderOptions;
use crate::runtime::server::Readiness;
use crate::runtime::shutdown::Shutdown;
use crate::store::Store;
use crate::store::dynamodb::DynamoStore;
use crate::store::sqlite::SqliteStore;
use crate::ticket::TicketSystem;

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

/// A name for this process in store claims: unique across replicas and restarts (ECS tasks all
/// run as pid 1, so the start time is part of it).
pub fn owner_id(config: &Config) -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{}:{}:{started}", config.hostname(), std::process::id())
}

/// Every connection a rule targets must be configured, or the rule could never create a ticket:
/// say so at start-up (and on reload), not at the first finding.
pub fn check_connections(
    mappings: &Mappings,
    systems: &HashMap<String, Arc<dyn TicketSystem>>,
) -> anyhow::Result<()> {
    let missing: Vec<String> = mappings
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
            crate::aws::metered::dynamodb(sdk),
            table.clone(),
        )),
    })
}

/// `/readyz`: the mapping set is loaded, and the queue and the store answer.
pub(super) struct WorkerReadiness {
    pub(super) sqs: aws_sdk_sqs::Client,
    pub(super) queue_url: String,
    pub(super) store: Arc<dyn Store>,
    pub(super) mappings: MappingsHandle,
    pub(super) health: Arc<crate::pipeline::health::Health>,
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
pub(super) fn spawn_reload_on_sighup(
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
    pub render: RenderOptions,
    marker_search: crate::pipeline::lifecycle::MarkerSearch,
    /// Claim owners' prefix: this host.
    owner: String,
}

impl Pipeline {
    pub async fn build(
        config: &Config,
        mappings: &Path,
        store: &StoreSpec,
        write_back: bool,
    ) -> anyhow::Result<Pipeline> {
        let render = config.render(None)?;
        let tickets = config.tickets()?;
        let sdk = crate::aws::sdk_config(config.aws()?).await;
        let systems = ticket_connections(tickets, || async { Ok(sdk.clone()) })
            .await?
            .systems;
        if systems.is_empty() {
            bail!(
                "no ticket system configured: set JIRA_URL and/or SERVICENOW_URL with their credentials"
            );
        }
        let handle = MappingsHandle::new(load_mappings(mappings, &systems)?);
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
            render,
            marker_search: config.marker_search()?,
            owner: owner_id(config),
        })
    }

    /// The lifecycle over these pieces (what the worker runs per finding).
    pub fn lifecycle(&self) -> anyhow::Result<Lifecycle> {
        let planner = MappingPlanner::new(self.mappings.clone(), self.render);
        Ok(Lifecycle::new(
            Arc::clone(&self.store),
            self.systems.clone(),
            Arc::clone(&self.writer),
            Arc::new(planner),
            self.owner.clone(),
        )
        .with_marker_search(self.marker_search))
    }
}

/// Amazon Detective enrichment when `DETECTIVE_GRAPH_ARN` is set (rules opt in with
/// `enrich = { detective = true }`).
pub fn investigator(
    config: &Config,
    sdk: &aws_config::SdkConfig,
) -> anyhow::Result<Option<Arc<crate::aws::detective::Investigator>>> {
    let Some(cfg) = config.detective()? else {
        return Ok(None);
    };
    tracing::info!(graph = %cfg.graph_arn.as_str(), "Amazon Detective enrichment enabled for rules that ask for it");
    Ok(Some(Arc::new(
        crate::aws::detective::Investigator::from_conf(sdk, cfg),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::jira::{JiraApiVersion, JiraClient, JiraConfig};

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
        let config = Config::default();
        let a = owner_id(&config);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_ne!(a, owner_id(&config));
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
