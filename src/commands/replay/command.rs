//! `findings-bridge replay`: its flags turned into [`ReplayOptions`] and the queues, mappings and
//! pipeline it needs, then [`super::replay`].

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::{ReplayDeps, ReplayOptions, ReplayTarget};
use crate::aws::sqs::{Queue, SqsQueue};
use crate::commands::run::Pipeline;
use crate::config::Config;
use crate::config::cli::ReplayArgs;
use crate::runtime::shutdown::Shutdown;

pub async fn command(config: &Config, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    let target = if let Some(url) = args.to.clone() {
        ReplayTarget::Queue(url)
    } else if args.process {
        ReplayTarget::Process
    } else {
        ReplayTarget::Native {
            destination: None,
            max_per_second: args.rate.map(|r| r.round().max(1.0) as i32),
        }
    };
    let mut opts = ReplayOptions::new(args.from.clone(), target.clone());
    opts.filters = args.filters;
    opts.since = args
        .since
        .as_deref()
        .map(|s| super::parse_time(s, now))
        .transpose()?;
    opts.until = args
        .until
        .as_deref()
        .map(|s| super::parse_time(s, now))
        .transpose()?;
    opts.max = args.max;
    opts.rate = args.rate.filter(|_| !args.native);
    opts.dry_run = args.dry_run;

    let sdk = crate::aws::sdk_config(config.aws()?).await;
    let sqs = crate::aws::metered::sqs(&sdk);
    let mut deps = ReplayDeps::new(Arc::new(
        SqsQueue::new(sqs.clone(), &args.from).reading_all_attributes(),
    ));
    let needs_mappings = matches!(target, ReplayTarget::Process)
        || opts
            .filters
            .iter()
            .any(|f| f.field == super::FilterField::Team);
    match &target {
        ReplayTarget::Queue(url) => {
            deps.target_queue = Some(Arc::new(SqsQueue::new(sqs.clone(), url)) as Arc<dyn Queue>);
        }
        ReplayTarget::Native { .. } => deps.sqs = Some(sqs.clone()),
        ReplayTarget::Process => {}
    }
    if needs_mappings {
        let pipeline = Pipeline::build(config, &args.mappings, &args.store, true).await?;
        deps.teams = Some(super::teams_from_mappings(pipeline.mappings.current()));
        if matches!(target, ReplayTarget::Process) {
            deps.process = Some(super::process_with_lifecycle(Arc::new(
                pipeline.lifecycle()?,
            )));
        }
    }
    let shutdown = Shutdown::from_signals().context("installing signal handlers")?;
    let summary = super::replay(opts, deps, shutdown).await?;
    println!("{summary}");
    Ok(if summary.has_failures() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
