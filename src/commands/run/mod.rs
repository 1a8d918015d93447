//! `findings-bridge run`, the long-running worker, assembled from its settings: AWS clients from
//! the SDK's own configuration chain, the store, the ticket connections, the planner over the
//! mapping files, the status sync, the HTTP server, and signal handling (SIGTERM/SIGINT drain,
//! SIGHUP reloads the mapping files). Also `sync --once`, which is one tick of the same sync.

mod connections;
mod wiring;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

pub use connections::{TicketConnections, ticket_connections};
pub use wiring::{
    Pipeline, StoreSpec, build_store, check_connections, investigator, load_mappings, owner_id,
    reload,
};
use wiring::{WorkerReadiness, spawn_reload_on_sighup};

use crate::aws::securityhub::batching::BatchingWriter;
use crate::aws::securityhub::client::SecurityHubWriter;
use crate::aws::securityhub::{FindingWriter, NoopWriter};
use crate::config::Config;
use crate::config::cli::RunArgs;
use crate::finding;
use crate::pipeline::lifecycle::Lifecycle;
use crate::pipeline::plan::{MappingPlanner, MappingsHandle};
use crate::pipeline::worker::{RunSummary, Worker, WorkerConfig};
use crate::runtime::server::{self, ServerState};
use crate::runtime::shutdown::Shutdown;
use crate::runtime::tasks::Tasks;
use crate::sync::webhooks;
use crate::sync::{StatusSync, SyncReport};

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

/// `findings-bridge run`: logging as configured, a multi-threaded runtime, signal handling, then
/// [`run`] until it drains or is stopped.
pub fn command(config: &Config, args: &RunArgs) -> anyhow::Result<ExitCode> {
    crate::runtime::telemetry::init_logging(
        args.log_format,
        config.get("RUST_LOG").as_deref(),
        config.get("NO_COLOR").is_some(),
    );
    let settings = args.settings();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let shutdown = Shutdown::from_signals().context("installing signal handlers")?;
        let summary = run(config, settings, shutdown).await?;
        tracing::info!(?summary, "findings-bridge stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// `findings-bridge sync --once`: prints the report as JSON; exits 1 if anything failed.
pub async fn sync_command(
    config: &Config,
    mappings: &Path,
    store: &StoreSpec,
) -> anyhow::Result<ExitCode> {
    let report = sync_once(config, mappings, store).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `findings-bridge sync --once`: one poll of every connection.
pub async fn sync_once(
    config: &Config,
    mappings: &Path,
    store: &StoreSpec,
) -> anyhow::Result<SyncReport> {
    let p = Pipeline::build(config, mappings, store, true).await?;
    let sync = StatusSync::new(p.store, p.systems, p.writer, p.mappings, config.sync(None)?)
        .with_owner(owner_id(config));
    Ok(sync.poll_once().await)
}

/// `findings-bridge run`.
pub async fn run(
    config: &Config,
    settings: RunSettings,
    shutdown: Shutdown,
) -> anyhow::Result<RunSummary> {
    let metrics = crate::runtime::telemetry::install_metrics();
    // Every setting is checked before the SDK's configuration chain is loaded, once.
    let tickets = config.tickets()?;
    let writeback_window = config.writeback_window()?;
    let sdk = crate::aws::sdk_config(config.aws()?).await;
    let connections = ticket_connections(tickets, || async { Ok(sdk.clone()) }).await?;
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
    let planner = MappingPlanner::new(handle.clone(), config.render(None)?);

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
    let sqs = crate::aws::metered::sqs(&sdk);

    let sync_config = config.sync(Some(settings.sync_interval))?;
    let (sla_interval, sla_lease) = (sync_config.sla_interval, sync_config.lease);
    // Every replica runs the sync; only the holder of the store's status-sync lease polls.
    let sync = Arc::new(
        StatusSync::new(
            Arc::clone(&store),
            systems.clone(),
            Arc::clone(&writer),
            handle.clone(),
            sync_config,
        )
        .with_owner(owner_id(config)),
    );
    // Background work that shutdown waits for (within the grace period), never forever.
    let tasks = Tasks::new();
    tasks.spawn("status sync", Arc::clone(&sync).run(shutdown.clone()));
    // SLA breaches: every replica runs the loop; only the holder of its store lease scans.
    let escalator = Arc::new(
        crate::pipeline::escalation::Escalator::new(
            Arc::clone(&store),
            systems.clone(),
            sla_interval,
            sla_lease,
            owner_id(config),
        )
        .with_mappings(handle.clone()),
    );
    tasks.spawn("SLA escalation", escalator.run(shutdown.clone()));

    let health = Arc::new(crate::pipeline::health::Health::new());
    // A paused connection re-reads its Secrets Manager credentials before each probe, and all
    // of them are re-read every BRIDGE_SECRETS_REFRESH: a rotated secret needs no restart.
    tasks.spawn(
        "connection prober",
        crate::pipeline::health::run_prober_with(
            Arc::clone(&health),
            systems.clone(),
            Arc::clone(&store),
            connections.credential_refresh(),
            shutdown.clone(),
        ),
    );
    if let Some(task) = connections.spawn_refresh(shutdown.clone()) {
        tasks.track("credential re-read", task);
    }
    let readiness = Arc::new(WorkerReadiness {
        health: Arc::clone(&health),
        sqs: sqs.clone(),
        queue_url: settings.queue_url.clone(),
        store: Arc::clone(&store),
        mappings: handle.clone(),
    });
    let router = server::router(ServerState::new(metrics, readiness)).merge(webhooks::router(
        Arc::clone(&sync),
        config.webhooks(),
        tasks.clone(),
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

    let owner = owner_id(config);
    let investigator = investigator(config, &sdk)?;
    // The lifecycle's write-backs (one per finding, the same note for every finding of a group)
    // are merged across findings; the status sync batches its own per poll and keeps `writer`.
    let lifecycle_writer: Arc<dyn FindingWriter> =
        if settings.write_back && !writeback_window.is_zero() {
            Arc::new(BatchingWriter::new(writer, writeback_window))
        } else {
            writer
        };
    let lifecycle = Lifecycle::new(
        store,
        systems,
        lifecycle_writer,
        Arc::new(planner),
        owner.clone(),
    )
    .with_investigator(investigator)
    .with_tasks(tasks.clone())
    .with_marker_search(config.marker_search()?)
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
    tasks.drain(settings.grace).await;
    match tokio::time::timeout(settings.grace, server_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
        Ok(Ok(Ok(()))) => {}
        Err(_) => {
            tracing::warn!(grace = ?settings.grace, "HTTP server still answering at the end of the grace period; stopped")
        }
    }
    result
}
