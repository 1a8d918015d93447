//! `findings-bridge-sim`: the simulator as a process, for demos and scripted end-to-end runs.
//! Prints `listening on http://127.0.0.1:PORT` (and optionally writes the port to a file) so a
//! script started with port 0 knows where to point the bridge.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use findings_bridge_sim::{AmbiguousMode, Faults, RefuseCredentials, SimConfig, Simulator};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Stateful Jira / ServiceNow / Security Hub simulator for findings-bridge"
)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0", env = "SIM_ADDR")]
    addr: String,
    /// Write the chosen port to this file once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Milliseconds added before every API answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction (0.0–1.0) of API requests answered 500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Requests answered normally between two bursts of 429s (unset: no bursts).
    #[arg(long)]
    burst_429_every: Option<u32>,
    /// Length of each 429 burst.
    #[arg(long, default_value_t = 3)]
    burst_429_len: u32,
    /// `Retry-After` seconds on injected 429s.
    #[arg(long, default_value_t = 1)]
    retry_after_secs: u32,
    /// Seed for the 500s and ambiguous creates, so a run can be repeated exactly.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fraction (0.0–1.0) of committed creates answered ambiguously (the ticket exists).
    #[arg(long, default_value_t = 0.0)]
    ambiguous_create_rate: f64,
    /// How an ambiguous create is answered: 502, close (connection reset), late, or rotate.
    #[arg(long, default_value_t = AmbiguousMode::BadGateway)]
    ambiguous_create_mode: AmbiguousMode,
    /// Milliseconds a `late` ambiguous create waits before answering 201.
    #[arg(long, default_value_t = 35_000)]
    ambiguous_late_ms: u64,
    /// Requests per second accepted before answering 429.
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Jira, ServiceNow and Security Hub each get their own `--rate-limit` window, as the real
    /// services' quotas are their own; without it every API request counts against one window.
    #[arg(long, requires = "rate_limit")]
    rate_limit_per_system: bool,
    /// Security Hub's own requests per second with `--rate-limit-per-system` (default: `--rate-limit`).
    #[arg(long, requires = "rate_limit_per_system")]
    securityhub_rate_limit: Option<u32>,
    /// Rate-limit windows start on whole seconds from the simulator's start (default: with the
    /// first request after the previous window ended, which leaves the time until then unused).
    #[arg(long, requires = "rate_limit")]
    rate_limit_aligned: bool,
    /// Milliseconds a new Jira issue stays invisible to search (`search_delay_ms` of /_sim/faults).
    #[arg(long, default_value_t = 0)]
    search_delay_ms: u64,
    /// Jira answers every API request 401 for this many milliseconds after start
    /// (`refuse_credentials_ms.jira` of /_sim/faults).
    #[arg(long, default_value_t = 0)]
    refuse_jira_credentials_ms: u64,
    /// ServiceNow answers every API request (and its OAuth token endpoint) 401 for this many
    /// milliseconds after start (`refuse_credentials_ms.servicenow`).
    #[arg(long, default_value_t = 0)]
    refuse_servicenow_credentials_ms: u64,
    /// A Jira project key that does not exist (any more); repeat for several (`gone_projects`).
    #[arg(long = "gone-project", value_name = "KEY")]
    gone_projects: Vec<String>,
    /// A ServiceNow table that does not exist (any more); repeat for several (`gone_tables`).
    #[arg(long = "gone-table", value_name = "TABLE")]
    gone_tables: Vec<String>,
    /// Seconds a ServiceNow OAuth token lives.
    #[arg(long, default_value_t = 1800)]
    token_ttl_secs: u64,
    #[arg(long, env = "SIM_JIRA_EMAIL", default_value = "sim@example.com")]
    jira_email: String,
    #[arg(
        long,
        env = "SIM_JIRA_TOKEN",
        default_value = "sim-token",
        hide_default_value = true
    )]
    jira_token: String,
    #[arg(
        long,
        env = "SIM_JIRA_PAT",
        default_value = "sim-pat",
        hide_default_value = true
    )]
    jira_pat: String,
    #[arg(long, env = "SIM_SERVICENOW_USER", default_value = "sim")]
    servicenow_user: String,
    #[arg(
        long,
        env = "SIM_SERVICENOW_PASSWORD",
        default_value = "sim-password",
        hide_default_value = true
    )]
    servicenow_password: String,
    #[arg(long, env = "SIM_SERVICENOW_CLIENT_ID", default_value = "sim-client")]
    servicenow_client_id: String,
    #[arg(
        long,
        env = "SIM_SERVICENOW_CLIENT_SECRET",
        default_value = "sim-client-secret",
        hide_default_value = true
    )]
    servicenow_client_secret: String,
    /// The Jira user's IANA time zone (`/myself`'s `timeZone`), which JQL dates are read in.
    #[arg(long, env = "SIM_JIRA_TIME_ZONE", default_value = "UTC")]
    jira_time_zone: chrono_tz::Tz,
    /// Display name of the person `/_sim/jira/{key}/transition` acts as (the changelog author).
    #[arg(long, default_value = "Jane Doe")]
    human_name: String,
    /// ServiceNow user name of the person `/_sim/servicenow/…/state` acts as (`sys_updated_by`).
    #[arg(long, default_value = "jane.doe")]
    human_user: String,
}

impl Args {
    fn config(self) -> anyhow::Result<SimConfig> {
        let faults = Faults {
            latency: Duration::from_millis(self.latency_ms),
            error_rate: self.error_rate,
            burst_429_every: self.burst_429_every,
            burst_429_len: self.burst_429_len,
            retry_after_secs: self.retry_after_secs,
            seed: self.seed,
            ambiguous_create_rate: self.ambiguous_create_rate,
            ambiguous_create_mode: self.ambiguous_create_mode,
            ambiguous_late: Duration::from_millis(self.ambiguous_late_ms),
            search_delay: Duration::from_millis(self.search_delay_ms),
            refuse_credentials: RefuseCredentials {
                jira: Duration::from_millis(self.refuse_jira_credentials_ms),
                servicenow: Duration::from_millis(self.refuse_servicenow_credentials_ms),
            },
            gone_projects: self.gone_projects,
            gone_tables: self.gone_tables,
        };
        faults.validate().map_err(anyhow::Error::msg)?;
        Ok(SimConfig {
            jira_search_delay: Duration::from_millis(self.search_delay_ms),
            faults,
            jira_email: self.jira_email,
            jira_token: self.jira_token,
            jira_pat: self.jira_pat,
            servicenow_user: self.servicenow_user,
            servicenow_password: self.servicenow_password,
            servicenow_client_id: self.servicenow_client_id,
            servicenow_client_secret: self.servicenow_client_secret,
            servicenow_token_ttl: Duration::from_secs(self.token_ttl_secs),
            rate_limit_per_sec: self.rate_limit,
            rate_limit_per_system: self.rate_limit_per_system,
            securityhub_rate_limit_per_sec: self.securityhub_rate_limit,
            rate_limit_aligned: self.rate_limit_aligned,
            // The standalone simulator starts with the default set-up; `POST /_sim/setup`
            // changes it.
            setup: findings_bridge_sim::Setup::default(),
            jira_time_zone: self.jira_time_zone,
            human_name: self.human_name,
            human_user: self.human_user,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let port_file = args.port_file.clone();
    let addr = args.addr.clone();
    let config = args.config()?;
    let sim = Simulator::start(config, &addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    if let Some(path) = port_file {
        std::fs::write(&path, sim.port.to_string())
            .with_context(|| format!("cannot write the port to {}", path.display()))?;
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", sim.base_url)?;
        out.flush()?;
    }
    shutdown_signal().await;
    sim.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
