//! Per-team mapping files: loading, criteria, routing and templates.
//!
//! `mappings/*.toml` holds one file per team (README, "Mapping files"); files whose name starts
//! with `_` are not team files, and `_context.toml` is the organisation's application inventory
//! (see [`context`]). [`load`] reads them all, compiles every criterion and template,
//! and reports every problem of every file as `file:line: what is wrong`, so `check` and start-up
//! fail on a broken mapping instead of a finding at 3 a.m.
//!
//! # Routing
//!
//! All rules of all teams form one list sorted by `order` (lower first), ties broken by file name
//! and then by position in the file, like Security Hub's `RuleOrder`. For each finding the rules
//! are evaluated in that order:
//!
//! - a rule whose criteria match adds a route to its team, unless that team already has a route
//!   for this finding (one ticket per finding and team: the team's earliest matching rule wins);
//! - a matching rule with `terminal = true` (the default) stops evaluation for this finding, for
//!   every team, like an automation rule's `IsTerminal`. Teams that want to see findings other
//!   teams also take use `terminal = false`;
//! - a finding no rule matches gets no route (it is acknowledged and counted, not an error).
//!
//! Routing only decides where *new* tickets go; a finding that already has tickets is followed
//! through them by the lifecycle code even when no rule would pick it any more.

pub mod context;
pub mod criteria;
pub mod duration;
pub mod group;
mod load;
pub mod sla;
pub mod spec;
pub mod template;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::finding::Finding;
use context::{Application, Inventory};
use spec::{Rule, TargetKind, Team};
use template::{Clock, TemplateEngine};

/// Connection names a rule's `target` may use, and the kind of ticket system behind each.
pub const CONNECTIONS: [(&str, TargetKind); 2] = [
    ("jira", TargetKind::Jira),
    ("servicenow", TargetKind::ServiceNow),
];

/// The kind of ticket system behind a connection name, if it is one.
pub fn connection_kind(name: &str) -> Option<TargetKind> {
    CONNECTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, kind)| *kind)
}

/// Every team file of a mapping directory, compiled.
#[derive(Debug)]
pub struct Mappings {
    pub teams: Vec<Team>,
    /// Sorted by (order, file name, position): the evaluation order of [`Mappings::route`].
    pub rules: Vec<Rule>,
    /// Holds every compiled template of `rules`; its clock also anchors `DateRange` criteria.
    pub engine: TemplateEngine,
    /// The applications of `_context.toml` (empty without one): what `ApplicationName` /
    /// `ApplicationCriticality` criteria and `context.application` in templates refer to.
    pub inventory: Inventory,
}

/// Loads every team file of `dir` with the wall clock.
pub fn load(dir: &Path) -> Result<Mappings, LoadErrors> {
    load_with_clock(dir, Arc::new(chrono::Utc::now))
}

/// Loads every team file of `dir`; `clock` drives `now()` in templates and `DateRange` criteria,
/// so `render` output and tests can be made reproducible.
pub fn load_with_clock(dir: &Path, clock: Clock) -> Result<Mappings, LoadErrors> {
    load::load_dir(dir, clock)
}

impl Mappings {
    /// The rules that open tickets for `finding`, at most one per team, in evaluation order.
    /// See the module docs for the exact semantics.
    pub fn route(&self, finding: &Finding) -> Vec<&Rule> {
        let now = self.engine.now();
        // Once per finding, not per rule: every rule sees the same application.
        let application = self.application_for(finding);
        let mut routes: Vec<&Rule> = Vec::new();
        for rule in &self.rules {
            if !rule.criteria.matches(finding, application, now) {
                continue;
            }
            if !routes.iter().any(|r| r.team == rule.team) {
                routes.push(rule);
            }
            if rule.terminal {
                break;
            }
        }
        routes
    }

    /// The application of the inventory `finding` belongs to (first match in file order). Pass
    /// it to `render::render_route` so templates see what routing saw.
    pub fn application_for(&self, finding: &Finding) -> Option<&Application> {
        self.inventory.application_for(finding)
    }

    /// A team's rule by name: lifecycle and status sync find the rule (its `status_map`,
    /// `on_resolved`, …) of a ticket recorded earlier.
    pub fn rule(&self, team: &str, name: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| &*r.team == team && &*r.name == name)
    }

    pub fn team(&self, name: &str) -> Option<&Team> {
        self.teams.iter().find(|t| &*t.name == name)
    }
}

/// One problem in one mapping file. `line` is 1-based; `None` when the problem is the file (or
/// directory) as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for LoadError {}

/// Every problem found while loading a mapping directory, sorted by file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}
