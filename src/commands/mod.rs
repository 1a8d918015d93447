//! One module per CLI command: [`run`] (the worker and its wiring, and `sync --once`),
//! [`replay`] (the dead-letter queue), [`offline`] (`check` and `render`, which talk to nothing),
//! [`healthcheck`], [`plan`] (a mapping change against real findings), [`preflight`] (every rule
//! against the real ticket systems), [`reconcile`] (the store against the tickets). [`main`]
//! dispatches a parsed command line to them.

pub mod healthcheck;
pub mod offline;
pub mod plan;
pub mod preflight;
pub(crate) mod progress;
pub mod reconcile;
pub mod replay;
pub mod run;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::config::cli::{Cli, Command};
use crate::runtime::telemetry;

/// Runs the command `cli` names, with the environment read once; errors go to standard error and
/// exit 1.
pub fn main(cli: Cli) -> ExitCode {
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("findings-bridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // The one read of the environment; every command takes its settings from here.
    let config = Config::from_env();
    match cli.command {
        Command::Run(args) => run::command(&config, &args),
        Command::Sync {
            once: _,
            mappings,
            store,
        } => {
            init_report_logging(&config);
            runtime()?.block_on(run::sync_command(&config, &mappings, &store))
        }
        Command::Replay(args) => {
            init_report_logging(&config);
            runtime()?.block_on(replay::command(&config, args))
        }
        Command::Healthcheck { http_addr, timeout } => {
            healthcheck::command(&http_addr, Duration::from_secs(timeout))
        }
        Command::Check { mappings } => Ok(offline::check_command(&mappings)),
        Command::Render {
            mappings,
            jira_api_version,
            now,
            jobs,
            input,
        } => offline::render_command(
            &config,
            &mappings,
            jira_api_version.as_deref(),
            now.as_deref(),
            jobs.get(),
            &input,
        ),
        Command::Plan(args) => {
            init_report_logging(&config);
            plan::command(&config, &args)
        }
        Command::Preflight(args) => {
            init_report_logging(&config);
            runtime()?.block_on(preflight::command(&config, &args))
        }
        Command::Reconcile(args) => {
            init_report_logging(&config);
            runtime()?.block_on(reconcile::command(&config, args))
        }
    }
}

/// Logging for the commands whose stdout is a report (`sync --once` prints JSON, `replay` its
/// summary): log lines go to stderr so `findings-bridge sync --once | jq` reads only the report.
fn init_report_logging(config: &Config) {
    let (filter, filter_problem) = telemetry::env_filter(config.get("RUST_LOG").as_deref());
    let subscriber = telemetry::subscriber(
        config.log_format().unwrap_or_default(),
        filter,
        std::io::stderr,
    );
    if tracing::subscriber::set_global_default(subscriber).is_ok()
        && let Some(problem) = filter_problem
    {
        tracing::warn!("{problem}");
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}
