//! `findings-bridge preflight`: every rule against the real ticket systems, with the configured
//! credentials, before a deployment — creating and changing nothing (only reads: createmeta,
//! permissions, priorities, a one-record table read, the dictionary, groups).
//!
//! It loads the configuration and the ticket connections the way `run` does
//! ([`crate::commands::run::ticket_connections`], Secrets Manager included) and the mapping set
//! the way `check` does, then reports per rule: for Jira the project, the account's permissions,
//! the issue type, the create screen's required fields, the fields the rule sets, the labels the
//! bridge sets on every ticket, and the priorities; for ServiceNow the table, its columns
//! (inherited ones included) and the assignment group; and each webhook endpoint whose secret is
//! set. Answers shared by several rules are read once. A call whose outcome stays unknown after
//! the client's retries fails its check with the cause: nothing unseen passes.
//!
//! Parts: [`report`] (rows, table, JSON), `values` (what a rule can send), `jira` and
//! `servicenow` (the checks), `webhooks`, `calls` (what a failed call means for a check).

mod calls;
mod jira;
pub mod report;
mod servicenow;
mod values;
mod webhooks;

pub use webhooks::checks as webhook_checks;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use url::Url;

use self::calls::{JIRA, SERVICENOW, Settings};
use self::jira::{JiraChecks, JiraRule};
use self::report::{Check, Report, Row};
use self::servicenow::ServiceNowChecks;
use self::values::RuleValues;
use crate::commands::run::ticket_connections;
use crate::config::Config;
use crate::config::cli::PreflightArgs;
use crate::mapping::spec::TicketSpec;
use crate::mapping::{self, Mappings};
use crate::ticket::AsyncTicketSystem;
use crate::ticket::jira::{JiraApiVersion, JiraClient};
use crate::ticket::servicenow::ServiceNowClient;

/// What preflight looks at besides the environment.
#[derive(Debug, Clone)]
pub struct PreflightSettings {
    /// The mapping directory (`--mappings`, `BRIDGE_MAPPINGS`).
    pub mappings: PathBuf,
    /// Where the worker will serve webhooks (`BRIDGE_HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// Where Jira / ServiceNow send webhooks, when the operator says so.
    pub jira_webhook_url: Option<Url>,
    pub servicenow_webhook_url: Option<Url>,
}

/// `findings-bridge preflight [--json]`: the report on stdout; exit 1 on any failed check.
pub async fn command(config: &Config, args: &PreflightArgs) -> anyhow::Result<ExitCode> {
    let report = run(config, &args.settings()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{}", report.table());
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Every check; an error only when the configuration itself cannot be used (as `run` would stop).
pub async fn run(config: &Config, settings: &PreflightSettings) -> anyhow::Result<Report> {
    let tickets = config.tickets()?;
    let timeouts = config.aws()?;
    // As in `run`: credentials from Secrets Manager are read with the SDK's configuration,
    // which is loaded only when one is set.
    let connections = ticket_connections(tickets, || async move {
        Ok(crate::aws::sdk_config(timeouts).await)
    })
    .await?;
    if connections.systems.is_empty() {
        bail!(
            "no ticket system configured: set JIRA_URL and/or SERVICENOW_URL with their credentials"
        );
    }
    let mut report = Report::default();
    let mappings = load(&settings.mappings, &mut report);
    let targets = Targets {
        jira: connections.jira.as_deref(),
        servicenow: connections.servicenow.as_deref(),
    };
    for row in check_rules(mappings.as_ref(), targets).await {
        report.push(row);
    }
    for row in webhook_checks(
        &config.webhooks(),
        settings.http_addr,
        settings.jira_webhook_url.as_ref(),
        settings.servicenow_webhook_url.as_ref(),
    )
    .await
    {
        report.push(row);
    }
    Ok(report)
}

/// The mapping set, loaded and validated as `check` does; its problems become rows.
pub fn load(dir: &Path, report: &mut Report) -> Option<Mappings> {
    let subject = dir.display().to_string();
    match mapping::load(dir) {
        Ok(m) => {
            report.push(
                Row::general("bridge", Check::Mappings, subject)
                    .ok(crate::commands::offline::check_summary(dir, &m)),
            );
            Some(m)
        }
        Err(errors) => {
            for e in errors.0 {
                let at = match e.line {
                    Some(line) => format!("{}:{line}", e.file.display()),
                    None => e.file.display().to_string(),
                };
                report.push(Row::general("bridge", Check::Mappings, at).fail(
                    e.message,
                    "correct the mapping file (`findings-bridge check` lists the same problems); rules are checked once the set loads",
                ));
            }
            None
        }
    }
}

/// The ticket connections the checks talk to: those configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Targets<'a> {
    pub jira: Option<&'a JiraClient>,
    pub servicenow: Option<&'a ServiceNowClient>,
}

impl Targets<'_> {
    /// The configured connections by name, sorted.
    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .jira
            .map(AsyncTicketSystem::name)
            .into_iter()
            .chain(self.servicenow.map(AsyncTicketSystem::name))
            .collect();
        names.sort_unstable();
        names
    }
}

/// One sign-in per connection (Jira `myself`, a ServiceNow record), then every rule of
/// `mappings` (when the set loaded) against the connection it targets, in evaluation order.
/// The rules of a connection that did not answer are not checked further, so a system that is
/// down costs one retry budget, not one per rule.
pub async fn check_rules(mappings: Option<&Mappings>, targets: Targets<'_>) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut up: Vec<&str> = Vec::new();
    for name in targets.names() {
        let settings = settings_of(name);
        let row = Row::general(name, Check::Connection, name);
        let (probe, flavour) = match (targets.jira, targets.servicenow) {
            (Some(jira), _) if AsyncTicketSystem::name(jira) == name => (
                AsyncTicketSystem::probe(jira).await,
                format!("Jira REST API {}", api_name(jira.api_version())),
            ),
            (_, Some(sn)) => (AsyncTicketSystem::probe(sn).await, "signed in".to_owned()),
            _ => continue,
        };
        match probe {
            Ok(()) => {
                rows.push(row.ok(flavour));
                up.push(name);
            }
            Err(e) => {
                let (detail, fix) = calls::failed(
                    settings,
                    &e,
                    &format!(
                        "the account may not sign in to {}: check its roles",
                        settings.system
                    ),
                );
                rows.push(row.fail(detail, fix));
            }
        }
    }
    let Some(mappings) = mappings else {
        return rows;
    };
    let mut jira = targets
        .jira
        .map(|client| JiraChecks::new(client, AsyncTicketSystem::name(client)));
    let mut servicenow = targets
        .servicenow
        .map(|client| ServiceNowChecks::new(client, AsyncTicketSystem::name(client)));
    let configured = targets.names();
    for rule in &mappings.rules {
        let target = rule.target.as_str();
        if !configured.contains(&target) {
            let settings = settings_of(target);
            rows.push(Row::of_rule(rule, target, Check::Connection, target).fail(
                format!("the rule targets {target}, which is not configured"),
                format!("set {} and {}", settings.url, settings.credentials),
            ));
            continue;
        }
        if !up.contains(&target) {
            rows.push(
                Row::of_rule(rule, target, Check::Connection, target)
                    .skip(format!("connection {target} failed (see its row)")),
            );
            continue;
        }
        let values = RuleValues::new(&mappings.engine, rule);
        match (&rule.ticket, jira.as_mut(), servicenow.as_mut()) {
            (TicketSpec::Jira(spec), Some(checks), _) => {
                let r = JiraRule {
                    values: &values,
                    rule,
                    spec,
                };
                checks.rule(&r, &mut rows).await;
            }
            (TicketSpec::ServiceNow(spec), _, Some(checks)) => {
                checks.rule(&values, rule, spec, &mut rows).await;
            }
            // A rule's section and its target's kind always agree once the set loads; a
            // connection of another kind under that name is all that is left.
            _ => rows.push(Row::of_rule(rule, target, Check::Connection, target).fail(
                format!(
                    "connection {target} is not a {} connection",
                    rule.ticket.kind().as_str()
                ),
                "point the rule's target at a connection of its kind",
            )),
        }
    }
    rows
}

fn settings_of(connection: &str) -> &'static Settings {
    match connection {
        "servicenow" => &SERVICENOW,
        _ => &JIRA,
    }
}

fn api_name(version: JiraApiVersion) -> &'static str {
    match version {
        JiraApiVersion::V3 => "3 (Cloud)",
        JiraApiVersion::V2 => "2 (Data Center)",
    }
}
