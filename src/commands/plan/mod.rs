//! `findings-bridge plan`: what a mapping change would do to real findings, before it is
//! deployed. Every finding of the input goes through the old (`--base`) and the new (`--mappings`)
//! mapping sets by the same route → render path as `render`; the differences are counted per
//! team and rule ([`compare`]), tickets whose fields differ get a compact field diff ([`diff`]),
//! and the result is printed as text or JSON ([`report`]).
//!
//! The input is streamed ([`input`]): one element in memory at a time, and a plan keeps counts
//! and a few examples per rule, never the findings, so a week of findings takes as much memory
//! as one.
//!
//! Exit codes, for CI on a mappings repository: 0 no change, 2 changes, 1 an error (an input that
//! cannot be read, a mapping set that does not load). Findings that do not decode are counted and
//! reported with where they are, and skipped, as `render` skips them; they do not change the exit
//! code, since they are a property of the sample, not of the change.

mod compare;
mod diff;
mod input;
mod report;

use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::commands::offline::load_mappings;
use crate::commands::progress::Progress;
use crate::config::Config;
use crate::config::cli::PlanArgs;
use crate::mapping::Mappings;
use crate::render::RenderOptions;
use compare::Plan;
use input::{Input, Item};
use report::Sets;

/// Exit code when the new set would change something.
const CHANGES: u8 = 2;

/// Findings between two updates of the progress display: a bar redrawn per finding would cost
/// more than the finding.
const PROGRESS_EVERY: u64 = 1_000;
/// Findings between two progress log lines when standard error is not a terminal.
const LOG_EVERY: u64 = 50_000;

/// `findings-bridge plan`: prints the plan and exits 0 (no change), 2 (changes) or 1 (error).
pub fn command(config: &Config, args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let opts = config.render(None)?;
    let (old, new) = load_sets(args)?;
    let input = Input::resolve(&args.findings)?;
    let plan = run(old.as_ref(), &new, &input, &opts)?;
    let sets = Sets {
        base: args.base.as_deref(),
        mappings: &args.mappings,
    };
    let printed = if args.json {
        report::json(&plan, &sets).to_string() + "\n"
    } else {
        report::text(&plan, &sets)
    };
    print_out(&printed)?;
    Ok(if plan.differs() {
        ExitCode::from(CHANGES)
    } else {
        ExitCode::SUCCESS
    })
}

/// Loads the old (`--base`, if given) and the new set; when either does not load, the error
/// names which one and lists its problems (both sets' when both fail).
fn load_sets(args: &PlanArgs) -> anyhow::Result<(Option<Mappings>, Mappings)> {
    // One clock for both sets and the whole run: `now()` in a template (a due date) renders the
    // same under both, so only the mapping change shows as a difference.
    let now = chrono::Utc::now();
    let old = args
        .base
        .as_deref()
        .map(|dir| load_mappings(dir, Some(now)))
        .transpose();
    let new = load_mappings(&args.mappings, Some(now));
    match (old, new) {
        (Ok(old), Ok(new)) => Ok((old, new)),
        (old, new) => {
            let mut problems = Vec::new();
            if let (Err(errors), Some(dir)) = (&old, &args.base) {
                problems.push(format!(
                    "--base {}: the old mapping set does not load:\n{errors}",
                    dir.display()
                ));
            }
            if let Err(errors) = &new {
                problems.push(format!(
                    "--mappings {}: the new mapping set does not load:\n{errors}",
                    args.mappings.display()
                ));
            }
            bail!("{}", problems.join("\n"))
        }
    }
}

/// Compares every finding of `input` under both sets, showing progress on standard error.
fn run(
    old: Option<&Mappings>,
    new: &Mappings,
    input: &Input,
    opts: &RenderOptions,
) -> anyhow::Result<Plan> {
    let mut progress = Progress::new("plan", input.files()).log_every(LOG_EVERY);
    let mut plan = Plan::default();
    let mut files_done = 0;
    let status = |plan: &Plan| {
        format!(
            "{} findings, {} changed, {} malformed",
            plan.findings, plan.findings_changed, plan.malformed.count
        )
    };
    input.read(|item| {
        let seen = match item {
            Item::Finding(Ok(finding)) => {
                plan.compare(old, new, &finding, opts);
                plan.findings + plan.malformed.count
            }
            Item::Finding(Err(problem)) => {
                plan.malformed(|| problem);
                plan.findings + plan.malformed.count
            }
            Item::FileDone => {
                files_done += 1;
                let seen = plan.findings + plan.malformed.count;
                progress.update(files_done, seen, || status(&plan));
                return;
            }
        };
        if seen % PROGRESS_EVERY == 0 {
            progress.update(files_done, seen, || status(&plan));
        }
    })?;
    progress.finish(status(&plan));
    Ok(plan)
}

/// Writes the report to standard output; a closed pipe (`plan | head`) is not an error.
fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing the plan"),
    }
}
