//! The command line: every flag (and the `BRIDGE_*` variables that stand in for a flag), parsed
//! by clap into the arguments of each command. The rest of the environment is read by
//! [`crate::config::Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::commands::run::{RunSettings, StoreSpec};
use crate::runtime::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "findings-bridge",
    version,
    about = "Security Hub findings to Jira / ServiceNow tickets and back, one ticket per finding and team"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The worker: consume the queue, keep tickets in step with findings, serve /healthz,
    /// /readyz and /metrics. Secrets come from the environment only (see the README).
    Run(RunArgs),
    /// Write ticket status back to Security Hub once (cron-style); `run` also does this every
    /// BRIDGE_SYNC_INTERVAL seconds. Prints the report as JSON; exits 1 if anything failed.
    Sync {
        /// Poll once and exit (the only mode; the poller inside `run` is the long-running one).
        #[arg(long, required = true)]
        once: bool,
        #[arg(long, env = "BRIDGE_MAPPINGS", default_value = "mappings")]
        mappings: PathBuf,
        #[arg(
            long,
            env = "BRIDGE_STORE",
            default_value = "sqlite:findings-bridge.db"
        )]
        store: StoreSpec,
    },
    /// Move dead-lettered messages back to a queue, or through the pipeline directly.
    Replay(ReplayArgs),
    /// Exit 0 when the worker's /healthz answers (the ECS container health check).
    Healthcheck {
        #[arg(long, env = "BRIDGE_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
        http_addr: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Validate the mapping files; prints `file:line: problem` for each error and exits 1.
    Check {
        /// Directory of team mapping files.
        #[arg(long, env = "BRIDGE_MAPPINGS", default_value = "mappings")]
        mappings: PathBuf,
    },
    /// Decode, route and render findings offline; prints one JSON object per finding with the exact
    /// request body each route would send.
    Render {
        #[arg(long, env = "BRIDGE_MAPPINGS", default_value = "mappings")]
        mappings: PathBuf,
        /// Jira REST API version the payloads are for: 3 (Cloud, ADF) or 2 (Data Center, wiki).
        /// Default: what the configured Jira connection speaks (JIRA_API_VERSION, or 2 for a
        /// JIRA_PAT alone), else 3.
        #[arg(long, value_parser = ["3", "2"])]
        jira_api_version: Option<String>,
        /// Fixed time for `now()` in templates (RFC 3339), for reproducible output.
        #[arg(long)]
        now: Option<String>,
        /// Threads that decode and render; output stays in input order.
        #[arg(long, default_value_t = std::num::NonZeroUsize::MIN)]
        jobs: std::num::NonZeroUsize,
        /// A file of events or findings (one event, NDJSON, concatenated events, a JSON array
        /// of findings, or `aws securityhub get-findings` output), or `-` for standard input;
        /// read incrementally.
        input: String,
    },
    /// Compare two mapping sets on real findings: per team and rule, the tickets gained, lost
    /// or rendered differently. Exits 0 with no change, 2 with changes, 1 on an error.
    Plan(PlanArgs),
    /// Check every rule against the real Jira / ServiceNow with the configured credentials,
    /// creating nothing: projects, issue types, required and allowed fields, priorities,
    /// permissions, tables, columns, groups, webhooks. Prints a table (or --json); exits 1 on
    /// any failure.
    Preflight(PreflightArgs),
    /// Compare the store with every ticket the bridge made; with --fix rebuild missing records,
    /// close duplicate tickets and drop records of deleted tickets. A dry run by default.
    Reconcile(ReconcileArgs),
}

const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The SQS queue the findings arrive on.
    #[arg(long, env = "BRIDGE_QUEUE_URL")]
    pub queue_url: String,
    /// Where messages that can never succeed are moved, with the reason attached.
    #[arg(long, env = "BRIDGE_DLQ_URL")]
    pub dlq_url: Option<String>,
    #[arg(long, env = "BRIDGE_MAPPINGS", default_value = "mappings")]
    pub mappings: PathBuf,
    /// `sqlite:PATH` (one replica) or `dynamodb:TABLE` (several replicas).
    #[arg(
        long,
        env = "BRIDGE_STORE",
        default_value = "sqlite:findings-bridge.db"
    )]
    pub store: StoreSpec,
    /// Messages worked on at once.
    #[arg(long, env = "BRIDGE_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,
    /// Address of the health / readiness / metrics server.
    #[arg(long, env = "BRIDGE_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
    /// Seconds between status polls of the ticket systems.
    #[arg(long, env = "BRIDGE_SYNC_INTERVAL", default_value_t = 60)]
    pub sync_interval: u64,
    /// Seconds in-flight work may take after SIGTERM (keep it under ECS's stop timeout).
    #[arg(long, env = "BRIDGE_GRACE_PERIOD", default_value_t = 25)]
    pub grace_period: u64,
    /// Seconds a received message stays hidden; extended while its work runs.
    #[arg(long, env = "BRIDGE_VISIBILITY_TIMEOUT", default_value_t = 60)]
    pub visibility_timeout: u64,
    /// Seconds a claim on one (finding, team) lasts unless renewed; renewed every third of it
    /// while its work runs. A SIGKILLed worker's findings are taken over this long after.
    #[arg(long, env = "BRIDGE_LEASE", default_value_t = 60)]
    pub lease: u64,
    /// Stop once the queue is empty (demos, cron-style runs, load tests).
    #[arg(long)]
    pub drain: bool,
    /// Do not write workflow state back to Security Hub.
    #[arg(long, env = "BRIDGE_NO_WRITEBACK")]
    pub no_writeback: bool,
    /// Log format: auto (JSON unless stdout is a terminal), json or pretty.
    #[arg(long, env = "BRIDGE_LOG_FORMAT", default_value = "auto")]
    pub log_format: LogFormat,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to", "process", "native"])))]
pub struct ReplayArgs {
    /// The dead-letter queue to read.
    #[arg(long, env = "BRIDGE_DLQ_URL")]
    pub from: String,
    /// Send each message back to this queue (usually the source queue).
    #[arg(long)]
    pub to: Option<String>,
    /// Run each message through the pipeline here and now.
    #[arg(long)]
    pub process: bool,
    /// Start SQS's own redrive (StartMessageMoveTask) back to each message's source queue; no
    /// filters.
    #[arg(long)]
    pub native: bool,
    /// Only messages matching FIELD=VALUE (error-kind, finding-id, team, product); repeat to
    /// narrow (different fields) or widen (same field).
    #[arg(long = "match", value_name = "FIELD=VALUE")]
    pub filters: Vec<crate::commands::replay::Filter>,
    /// Only messages that first failed at or after T (RFC 3339, a date, or an age like 6h / 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Only messages that first failed at or before T.
    #[arg(long)]
    pub until: Option<String>,
    /// Replay at most N messages.
    #[arg(long)]
    pub max: Option<usize>,
    /// At most N messages per second.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Report what would happen; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, env = "BRIDGE_MAPPINGS", default_value = "mappings")]
    pub mappings: PathBuf,
    #[arg(
        long,
        env = "BRIDGE_STORE",
        default_value = "sqlite:findings-bridge.db"
    )]
    pub store: StoreSpec,
}

impl RunArgs {
    /// The worker's settings from its flags, each clamped to what SQS and the store accept.
    pub fn settings(&self) -> RunSettings {
        RunSettings {
            queue_url: self.queue_url.clone(),
            dlq_url: self.dlq_url.clone().filter(|u| !u.is_empty()),
            mappings: self.mappings.clone(),
            store: self.store.clone(),
            concurrency: self.concurrency,
            http_addr: self.http_addr,
            sync_interval: Duration::from_secs(self.sync_interval.max(1)),
            grace: Duration::from_secs(self.grace_period),
            visibility_timeout: Duration::from_secs(self.visibility_timeout.clamp(1, 43_200)),
            lease: Duration::from_secs(self.lease.clamp(1, 3_600)),
            drain: self.drain,
            write_back: !self.no_writeback,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The findings: a file (NDJSON, a JSON array, concatenated EventBridge events,
    /// `aws securityhub get-findings` output), a directory (every file in name order), or `-`
    /// for standard input; read incrementally.
    #[arg(long, value_name = "FILE|DIR|-")]
    pub findings: String,
    /// The mapping directory deployed now; without it the plan is that of a first deployment
    /// (every ticket gained).
    #[arg(long, value_name = "OLD_MAPPINGS_DIR")]
    pub base: Option<PathBuf>,
    /// The mapping directory to deploy.
    #[arg(long, env = "BRIDGE_MAPPINGS", default_value = "mappings")]
    pub mappings: PathBuf,
    /// Print the plan as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PreflightArgs {
    #[arg(long, env = "BRIDGE_MAPPINGS", default_value = "mappings")]
    pub mappings: PathBuf,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where the worker will serve its webhooks (the `run` flag of the same name): with a
    /// webhook secret set, a loopback address is a failure.
    #[arg(long, env = "BRIDGE_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
    /// The URL Jira's webhook calls (https://…/webhooks/jira): a signed test event is sent there
    /// and must come back 202 ignored from a bridge with the same JIRA_WEBHOOK_SECRET.
    #[arg(long, value_name = "URL")]
    pub jira_webhook_url: Option<url::Url>,
    /// The URL ServiceNow's business rule calls (https://…/webhooks/servicenow): a test event
    /// with SERVICENOW_WEBHOOK_SECRET is sent there (never over plain HTTP to another host).
    #[arg(long, value_name = "URL")]
    pub servicenow_webhook_url: Option<url::Url>,
}

impl PreflightArgs {
    /// What preflight checks besides the environment.
    pub fn settings(&self) -> crate::commands::preflight::PreflightSettings {
        crate::commands::preflight::PreflightSettings {
            mappings: self.mappings.clone(),
            http_addr: self.http_addr,
            jira_webhook_url: self.jira_webhook_url.clone(),
            servicenow_webhook_url: self.servicenow_webhook_url.clone(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// Change things: rebuild records, close duplicates, drop records of deleted tickets, and
    /// raise the store's start-of-use mark. Without it nothing is changed.
    #[arg(long, conflicts_with = "dry_run")]
    pub fix: bool,
    /// Report only (the default; for scripts that want to say so).
    #[arg(long)]
    pub dry_run: bool,
    /// Also write the report as JSON to FILE, or to standard output with `-` (the summary then
    /// goes to standard error).
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<String>,
    #[arg(long, env = "BRIDGE_MAPPINGS", default_value = "mappings")]
    pub mappings: PathBuf,
    #[arg(
        long,
        env = "BRIDGE_STORE",
        default_value = "sqlite:findings-bridge.db"
    )]
    pub store: StoreSpec,
}
