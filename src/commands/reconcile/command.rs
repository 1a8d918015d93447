//! `findings-bridge reconcile [--fix] [--json FILE|-]`: the store, connections and mapping files
//! of `run`, then [`super::reconcile`]; the JSON report where `--json` says, and the summary on
//! standard output (on standard error when the JSON goes to standard output).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::{ReconcileOptions, reconcile, tables_of};
use crate::commands::run::{Pipeline, owner_id};
use crate::config::Config;
use crate::config::cli::ReconcileArgs;
use crate::runtime::shutdown::Shutdown;

pub async fn command(config: &Config, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    // Nothing is written back to Security Hub: reconcile only reads findings' tickets.
    let pipeline = Pipeline::build(config, &args.mappings, &args.store, false).await?;
    pipeline
        .store
        .ping()
        .await
        .with_context(|| format!("store {:?} is not reachable", args.store))?;
    let tables = tables_of(&pipeline.mappings.current());
    let shutdown = Shutdown::from_signals().context("installing signal handlers")?;
    let options = ReconcileOptions::new(args.fix, owner_id(config));
    let report = reconcile(
        Arc::clone(&pipeline.store),
        pipeline.systems.clone(),
        tables,
        options,
        &shutdown,
    )
    .await;
    let summary = report.to_string();
    match args.json.as_deref() {
        Some("-") => {
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprint!("{summary}");
        }
        Some(path) => {
            let mut file = std::fs::File::create(path)
                .with_context(|| format!("writing the report to {path}"))?;
            serde_json::to_writer_pretty(&mut file, &report)?;
            writeln!(file)?;
            print!("{summary}");
        }
        None => print!("{summary}"),
    }
    Ok(if report.has_failures() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
