//! Reads `mappings/*.toml` into compiled [`Rule`]s.
//!
//! The TOML is parsed once into a spanned tree; the top level is walked by hand and `[defaults]`
//! and every `[[rules]]` entry are deserialized on their own, so one broken rule does not hide the
//! errors of the next, and every error keeps the byte span it came from (turned into a line here).

use std::collections::{BTreeMap, HashMap};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::context::Inventory;
use super::criteria::{Criteria, CriteriaRaw};
use super::spec::{
    FieldTemplate, JiraSpec, OnRecurrence, OnResolved, Rule, ServiceNowSpec, StatusMap, TargetKind,
    Team, TicketSpec,
};
use super::template::{Clock, Template, TemplateEngine};
use super::{LoadError, LoadErrors, Mappings, connection_kind};
use crate::finding::{Severity, WorkflowStatus};

/// Default ServiceNow table when a rule names none.
const DEFAULT_SERVICENOW_TABLE: &str = "incident";

/// Jira fields the renderer fills from dedicated keys (or from the marker); setting them again
/// under `fields` would make the payload ambiguous.
const JIRA_RESERVED_FIELDS: [&str; 6] = [
    "project",
    "issuetype",
    "summary",
    "description",
    "priority",
    "labels",
];

/// ServiceNow columns the renderer fills from dedicated keys or the marker.
const SERVICENOW_RESERVED_FIELDS: [&str; 7] = [
    "short_description",
    "description",
    "urgency",
    "impact",
    "assignment_group",
    "correlation_id",
    "correlation_display",
];

pub(super) fn load_dir(dir: &Path, clock: Clock) -> Result<Mappings, LoadErrors> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return Err(LoadErrors(vec![LoadError {
                file: dir.to_path_buf(),
                line: None,
                message: format!("cannot read the mapping directory: {e}"),
            }]));
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_team_file(p))
        .collect();
    files.sort();

    let mut loader = Loader {
        engine: TemplateEngine::new(clock),
        errors: Vec::new(),
        teams: Vec::new(),
        rules: Vec::new(),
        team_files: HashMap::new(),
    };
    if files.is_empty() {
        loader.errors.push(LoadError {
            file: dir.to_path_buf(),
            line: None,
            message: "no team files in this directory (expected *.toml files whose names do not \
                      start with `_`)"
                .to_owned(),
        });
    }
    for path in &files {
        match std::fs::read_to_string(path) {
            Ok(src) => loader.load_file(path, &src),
            Err(e) => loader.errors.push(LoadError {
                file: path.clone(),
                line: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }

    let Loader {
        engine,
        mut errors,
        teams,
        mut rules,
        ..
    } = loader;
    let inventory = match Inventory::load(dir) {
        Ok(inventory) => inventory,
        Err(inventory_errors) => {
            errors.extend(inventory_errors);
            Inventory::default()
        }
    };
    if !errors.is_empty() {
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Err(LoadErrors(errors));
    }
    // Same order as Security Hub's RuleOrder, with file name and position breaking ties so the
    // result never depends on directory listing order.
    rules.sort_by(|a, b| (a.order, &a.file, a.position).cmp(&(b.order, &b.file, b.position)));
    Ok(Mappings {
        teams,
        rules,
        engine,
        inventory,
    })
}

fn is_team_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('_') && path.extension().is_some_and(|e| e == "toml") && path.is_file()
}

struct Loader {
    engine: TemplateEngine,
    errors: Vec<LoadError>,
    teams: Vec<Team>,
    rules: Vec<Rule>,
    /// Team name → file that defined it, to name both files on a duplicate.
    team_files: HashMap<String, PathBuf>,
}

/// One file being loaded: where errors point to.
pub(super) struct FileCtx<'a> {
    pub(super) path: &'a Path,
    /// File name only, for template locations (`payments.toml:23 (rules[0].jira.summary)`).
    name: String,
    pub(super) src: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> FileCtx<'a> {
    pub(super) fn new(path: &'a Path, src: &'a str) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let line_starts = std::iter::once(0)
            .chain(src.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        FileCtx {
            path,
            name,
            src,
            line_starts,
        }
    }

    /// 1-based line of a byte offset.
    pub(super) fn line(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// The lines a value's content spans: from [`FileCtx::content_line`] to the line of its last
    /// byte (the closing quote of a string).
    fn value_lines(&self, span: Range<usize>) -> RangeInclusive<usize> {
        let first = self.content_line(span.start);
        let last = self.line(span.end.saturating_sub(1)).max(first);
        first..=last
    }

    /// Line where a string value's *content* starts: a multi-line string (`'''` / `"""`) drops
    /// the newline right after its opening quotes, so its first line is the next one. This keeps
    /// template-internal line numbers pointing at the right line of the file.
    fn content_line(&self, value_start: usize) -> usize {
        let line = self.line(value_start);
        let rest = self.src.get(value_start..).unwrap_or("");
        let multi = rest.starts_with("'''") || rest.starts_with("\"\"\"");
        let after = rest.get(3..).unwrap_or("");
        if multi && (after.starts_with('\n') || after.starts_with("\r\n")) {
            line + 1
        } else {
            line
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TOML shapes
// ---------------------------------------------------------------------------------------------

type Text = Spanned<String>;
type FieldsRaw = BTreeMap<String, Spanned<toml::Value>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsRaw {
    target: Option<Text>,
    terminal: Option<bool>,
    on_resolved: Option<OnResolved>,
    on_recurrence: Option<OnRecurrence>,
    notify_on_create: Option<bool>,
    severity_override: Option<Text>,
    status_map: Option<BTreeMap<String, Text>>,
    enrich: Option<EnrichRaw>,
    jira: Option<JiraRaw>,
    servicenow: Option<ServiceNowRaw>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleRaw {
    name: Text,
    order: Spanned<i64>,
    terminal: Option<bool>,
    target: Option<Text>,
    criteria: Option<CriteriaRaw>,
    jira: Option<Spanned<JiraRaw>>,
    servicenow: Option<Spanned<ServiceNowRaw>>,
    on_resolved: Option<OnResolved>,
    on_recurrence: Option<OnRecurrence>,
    notify_on_create: Option<bool>,
    severity_override: Option<Text>,
    status_map: Option<BTreeMap<String, Text>>,
    enrich: Option<EnrichRaw>,
}

/// `enrich = { detective = true }`: optional enrichment after a ticket is created.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrichRaw {
    detective: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JiraRaw {
    project: Option<Text>,
    issue_type: Option<Text>,
    summary: Option<Text>,
    description: Option<Text>,
    priority: Option<Text>,
    labels: Option<Vec<Text>>,
    fields: Option<FieldsRaw>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceNowRaw {
    table: Option<Text>,
    short_description: Option<Text>,
    description: Option<Text>,
    urgency: Option<Text>,
    impact: Option<Text>,
    assignment_group: Option<Text>,
    fields: Option<FieldsRaw>,
}

// ---------------------------------------------------------------------------------------------
// Compiled-but-not-merged forms
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct JiraPartial {
    project: Option<Template>,
    issue_type: Option<Template>,
    summary: Option<Template>,
    description: Option<Template>,
    priority: Option<Template>,
    labels: Vec<Template>,
    fields: BTreeMap<String, FieldTemplate>,
}

impl JiraPartial {
    /// Rule keys win; labels concatenate (defaults first); fields merge by key.
    fn merged_over(self, defaults: Option<&JiraPartial>) -> JiraPartial {
        let Some(d) = defaults else { return self };
        let mut labels = d.labels.clone();
        labels.extend(self.labels);
        let mut fields = d.fields.clone();
        fields.extend(self.fields);
        JiraPartial {
            project: self.project.or_else(|| d.project.clone()),
            issue_type: self.issue_type.or_else(|| d.issue_type.clone()),
            summary: self.summary.or_else(|| d.summary.clone()),
            description: self.description.or_else(|| d.description.clone()),
            priority: self.priority.or_else(|| d.priority.clone()),
            labels,
            fields,
        }
    }
}

#[derive(Default)]
struct ServiceNowPartial {
    table: Option<String>,
    short_description: Option<Template>,
    description: Option<Template>,
    urgency: Option<Template>,
    impact: Option<Template>,
    assignment_group: Option<Template>,
    fields: BTreeMap<String, FieldTemplate>,
}

impl ServiceNowPartial {
    fn merged_over(self, defaults: Option<&ServiceNowPartial>) -> ServiceNowPartial {
        let Some(d) = defaults else { return self };
        let mut fields = d.fields.clone();
        fields.extend(self.fields);
        ServiceNowPartial {
            table: self.table.or_else(|| d.table.clone()),
            short_description: self
                .short_description
                .or_else(|| d.short_description.clone()),
            description: self.description.or_else(|| d.description.clone()),
            urgency: self.urgency.or_else(|| d.urgency.clone()),
            impact: self.impact.or_else(|| d.impact.clone()),
            assignment_group: self.assignment_group.or_else(|| d.assignment_group.clone()),
            fields,
        }
    }
}

/// `[defaults]` compiled once per file, so a broken default is reported once, not per rule.
#[derive(Default)]
struct Defaults {
    /// Connection name and the line it was set on.
    target: Option<(String, usize)>,
    terminal: Option<bool>,
    on_resolved: Option<OnResolved>,
    on_recurrence: Option<OnRecurrence>,
    notify_on_create: Option<bool>,
    severity_override: Option<Template>,
    status_map: BTreeMap<String, WorkflowStatus>,
    enrich: EnrichRaw,
    jira: Option<JiraPartial>,
    servicenow: Option<ServiceNowPartial>,
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

impl Loader {
    fn error(&mut self, ctx: &FileCtx<'_>, line: usize, message: impl Into<String>) {
        self.errors.push(LoadError {
            file: ctx.path.to_path_buf(),
            line: Some(line),
            message: message.into(),
        });
    }

    fn error_at(&mut self, ctx: &FileCtx<'_>, span: Range<usize>, message: impl Into<String>) {
        self.error(ctx, ctx.line(span.start), message);
    }

    /// Reports a serde error from a sub-deserializer, falling back to `fallback` when the error
    /// carries no span (e.g. a missing field is reported at the table it is missing from).
    fn serde_error(
        &mut self,
        ctx: &FileCtx<'_>,
        what: &str,
        fallback: Range<usize>,
        err: &toml::de::Error,
    ) {
        let span = err.span().unwrap_or(fallback);
        let detail = err.to_string();
        let detail = detail.trim().replace('\n', "; ");
        self.error_at(ctx, span, format!("{what}: {detail}"));
    }

    fn load_file(&mut self, path: &Path, src: &str) {
        let ctx = FileCtx::new(path, src);
        let (doc, syntax_errors) = DeTable::parse_recoverable(src);
        // Later syntax errors are almost always echoes of the first one.
        if let Some(e) = syntax_errors.first() {
            let line = e.span().map_or(1, |s| ctx.line(s.start));
            self.error(&ctx, line, format!("TOML syntax error: {}", e.message()));
            return;
        }

        let mut team: Option<(String, usize)> = None;
        let mut team_seen = false;
        let mut description = None;
        let mut defaults_value = None;
        let mut rules_value = None;
        for (key, value) in doc.get_ref().iter() {
            let key_name: &str = key.get_ref();
            match key_name {
                "team" => match value.get_ref() {
                    DeValue::String(s) => {
                        team_seen = true;
                        team = Some((s.to_string(), ctx.line(value.span().start)));
                    }
                    other => {
                        team_seen = true;
                        self.error_at(
                            &ctx,
                            value.span(),
                            format!("`team` must be a string, not {}", other.type_str()),
                        );
                    }
                },
                "description" => match value.get_ref() {
                    DeValue::String(s) => description = Some(s.to_string()),
                    other => self.error_at(
                        &ctx,
                        value.span(),
                        format!("`description` must be a string, not {}", other.type_str()),
                    ),
                },
                "defaults" => defaults_value = Some(value),
                "rules" => rules_value = Some(value),
                other => self.error_at(
                    &ctx,
                    key.span(),
                    format!(
                        "unknown key `{other}`, expected one of `team`, `description`, \
                         `defaults`, `rules`"
                    ),
                ),
            }
        }

        let team_name: Option<Arc<str>> = match team {
            None if team_seen => None,
            None => {
                self.error(
                    &ctx,
                    1,
                    "missing `team = \"...\"` (the team this file belongs to)",
                );
                None
            }
            Some((name, line)) if name.trim().is_empty() => {
                self.error(&ctx, line, "`team` must not be empty");
                None
            }
            Some((name, line)) => {
                if let Some(other) = self.team_files.get(&name) {
                    let other = other.display().to_string();
                    self.error(
                        &ctx,
                        line,
                        format!("team `{name}` is already defined in {other}; one file per team"),
                    );
                    None
                } else {
                    self.team_files.insert(name.clone(), path.to_path_buf());
                    Some(Arc::from(name))
                }
            }
        };

        let defaults = match defaults_value {
            None => Defaults::default(),
            Some(value) => match DefaultsRaw::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(raw) => self.compile_defaults(&ctx, raw),
                Err(e) => {
                    self.serde_error(&ctx, "defaults", value.span(), &e);
                    Defaults::default()
                }
            },
        };

        let mut rules = Vec::new();
        match rules_value.map(|v| (v.get_ref(), v.span())) {
            None => {}
            Some((DeValue::Array(items), _)) => {
                let mut names: HashMap<String, usize> = HashMap::new();
                let mut orders: HashMap<i64, (String, usize)> = HashMap::new();
                for (position, item) in items.iter().enumerate() {
                    let header_line = ctx.line(item.span().start);
                    let raw = match RuleRaw::deserialize(ValueDeserializer::from(item.clone())) {
                        Ok(raw) => raw,
                        Err(e) => {
                            self.serde_error(&ctx, &format!("rules[{position}]"), item.span(), &e);
                            continue;
                        }
                    };
                    let name = raw.name.get_ref().clone();
                    if let Some(first) = names.insert(name.clone(), header_line) {
                        self.error(
                            &ctx,
                            header_line,
                            format!(
                                "rules[{position}]: rule name `{name}` is already used at line \
                                 {first}; names must be unique within a file"
                            ),
                        );
                    }
                    let order = *raw.order.get_ref();
                    if let Some((other, line)) = orders.get(&order) {
                        let msg = format!(
                            "rules[{position}] (`{name}`): order {order} is already used by rule \
                             `{other}` at line {line}; orders must be unique within a file"
                        );
                        self.error_at(&ctx, raw.order.span(), msg);
                    } else {
                        orders.insert(order, (name.clone(), header_line));
                    }
                    let Some(team) = &team_name else {
                        // Still compile it, so its own errors are reported too.
                        let _ = self.compile_rule(&ctx, &defaults, position, header_line, raw, "");
                        continue;
                    };
                    if let Some(rule) =
                        self.compile_rule(&ctx, &defaults, position, header_line, raw, team)
                    {
                        rules.push(rule);
                    }
                }
            }
            Some((other, span)) => self.error_at(
                &ctx,
                span,
                format!(
                    "`rules` must be an array of tables (`[[rules]]`), not {}",
                    other.type_str()
                ),
            ),
        }

        if let Some(name) = team_name {
            self.teams.push(Team {
                name,
                description,
                file: path.to_path_buf(),
            });
            self.rules.extend(rules);
        }
    }

    fn compile_defaults(&mut self, ctx: &FileCtx<'_>, raw: DefaultsRaw) -> Defaults {
        let target = raw.target.map(|t| {
            let line = ctx.line(t.span().start);
            if connection_kind(t.get_ref()).is_none() {
                self.error(ctx, line, unknown_target(t.get_ref()));
            }
            (t.into_inner(), line)
        });
        let severity_override = raw
            .severity_override
            .and_then(|s| self.severity_override(ctx, "defaults.severity_override", &s));
        let status_map = raw
            .status_map
            .map(|m| self.status_map(ctx, "defaults.status_map", m))
            .unwrap_or_default();
        let jira = raw.jira.map(|j| self.jira(ctx, "defaults.jira", j));
        let servicenow = raw
            .servicenow
            .map(|s| self.servicenow(ctx, "defaults.servicenow", s));
        Defaults {
            target,
            terminal: raw.terminal,
            on_resolved: raw.on_resolved,
            on_recurrence: raw.on_recurrence,
            notify_on_create: raw.notify_on_create,
            severity_override,
            status_map,
            enrich: raw.enrich.unwrap_or_default(),
            jira,
            servicenow,
        }
    }

    fn compile_rule(
        &mut self,
        ctx: &FileCtx<'_>,
        defaults: &Defaults,
        position: usize,
        header_line: usize,
        raw: RuleRaw,
        team: &str,
    ) -> Option<Rule> {
        let errors_before = self.errors.len();
        let name = raw.name.get_ref().trim().to_owned();
        let at = format!("rules[{position}]");
        let what = format!("{at} (`{name}`)");
        if name.is_empty() {
            self.error_at(
                ctx,
                raw.name.span(),
                format!("{at}: `name` must not be empty"),
            );
        }

        let criteria = match raw.criteria.map(CriteriaRaw::compile) {
            None => Criteria::default(),
            Some(Ok(c)) => c,
            Some(Err(errors)) => {
                for e in errors {
                    self.error_at(ctx, e.span, format!("{at}.criteria: {}", e.message));
                }
                Criteria::default()
            }
        };

        let ticket = match (raw.jira, raw.servicenow) {
            (Some(_), Some(_)) => {
                self.error(
                    ctx,
                    header_line,
                    format!(
                        "{what}: has both [rules.jira] and [rules.servicenow]; a rule opens one \
                         kind of ticket (split it into two rules)"
                    ),
                );
                None
            }
            (None, None) => {
                self.error(
                    ctx,
                    header_line,
                    format!(
                        "{what}: needs a [rules.jira] or [rules.servicenow] table (it may be \
                         empty when [defaults] fills it)"
                    ),
                );
                None
            }
            (Some(jira), None) => {
                let line = ctx.line(jira.span().start);
                let partial = self
                    .jira(ctx, &format!("{at}.jira"), jira.into_inner())
                    .merged_over(defaults.jira.as_ref());
                self.finish_jira(ctx, &what, line, partial)
                    .map(TicketSpec::Jira)
            }
            (None, Some(sn)) => {
                let line = ctx.line(sn.span().start);
                let partial = self
                    .servicenow(ctx, &format!("{at}.servicenow"), sn.into_inner())
                    .merged_over(defaults.servicenow.as_ref());
                self.finish_servicenow(ctx, &what, line, partial)
                    .map(TicketSpec::ServiceNow)
            }
        };

        let target = match (&raw.target, &defaults.target) {
            (Some(t), _) => {
                let line = ctx.line(t.span().start);
                Some((t.get_ref().clone(), line, ""))
            }
            (None, Some((t, _))) => Some((t.clone(), header_line, " (from [defaults])")),
            (None, None) => None,
        };
        let target = match (target, &ticket) {
            (None, Some(ticket)) => Some(ticket.kind().as_str().to_owned()),
            (None, None) => None,
            (Some((name, line, origin)), ticket) => match connection_kind(&name) {
                None => {
                    // Defaults already reported an unknown default target.
                    if origin.is_empty() {
                        self.error(ctx, line, format!("{what}: {}", unknown_target(&name)));
                    }
                    None
                }
                Some(kind) => {
                    if let Some(ticket) = ticket
                        && ticket.kind() != kind
                    {
                        self.error(
                            ctx,
                            line,
                            format!(
                                "{what}: target `{name}`{origin} is a {} connection but the rule \
                                 has a [rules.{}] table",
                                kind_title(kind),
                                ticket.kind().as_str()
                            ),
                        );
                    }
                    Some(name)
                }
            },
        };

        let severity_override = match raw.severity_override {
            Some(s) => self.severity_override(ctx, &format!("{at}.severity_override"), &s),
            None => defaults.severity_override.clone(),
        };
        let mut status_map = defaults.status_map.clone();
        if let Some(m) = raw.status_map {
            status_map.extend(self.status_map(ctx, &format!("{at}.status_map"), m));
        }

        if self.errors.len() > errors_before {
            return None;
        }
        Some(Rule {
            team: Arc::from(team),
            name: Arc::from(name.as_str()),
            order: raw.order.into_inner(),
            file: ctx.path.to_path_buf(),
            position,
            line: header_line,
            terminal: raw.terminal.or(defaults.terminal).unwrap_or(true),
            target: target?,
            criteria,
            ticket: ticket?,
            status_map: StatusMap(status_map),
            on_resolved: raw.on_resolved.or(defaults.on_resolved).unwrap_or_default(),
            on_recurrence: raw
                .on_recurrence
                .or(defaults.on_recurrence)
                .unwrap_or_default(),
            severity_override,
            notify_on_create: raw
                .notify_on_create
                .or(defaults.notify_on_create)
                .unwrap_or(true),
            enrich_detective: raw
                .enrich
                .and_then(|e| e.detective)
                .or(defaults.enrich.detective)
                .unwrap_or(false),
        })
    }

    fn finish_jira(
        &mut self,
        ctx: &FileCtx<'_>,
        what: &str,
        line: usize,
        p: JiraPartial,
    ) -> Option<JiraSpec> {
        let mut missing = Vec::new();
        if p.project.is_none() {
            missing.push("project");
        }
        if p.issue_type.is_none() {
            missing.push("issue_type");
        }
        if p.summary.is_none() {
            missing.push("summary");
        }
        if !missing.is_empty() {
            self.error(
                ctx,
                line,
                format!(
                    "{what}: [rules.jira] needs {} (set here or in [defaults.jira])",
                    backticked(&missing)
                ),
            );
            return None;
        }
        Some(JiraSpec {
            project: p.project?,
            issue_type: p.issue_type?,
            summary: p.summary?,
            description: p.description,
            priority: p.priority,
            labels: p.labels,
            fields: p.fields,
        })
    }

    fn finish_servicenow(
        &mut self,
        ctx: &FileCtx<'_>,
        what: &str,
        line: usize,
        p: ServiceNowPartial,
    ) -> Option<ServiceNowSpec> {
        let Some(short_description) = p.short_description else {
            self.error(
                ctx,
                line,
                format!(
                    "{what}: [rules.servicenow] needs `short_description` (set here or in \
                     [defaults.servicenow])"
                ),
            );
            return None;
        };
        Some(ServiceNowSpec {
            table: p
                .table
                .unwrap_or_else(|| DEFAULT_SERVICENOW_TABLE.to_owned()),
            short_description,
            description: p.description,
            urgency: p.urgency,
            impact: p.impact,
            assignment_group: p.assignment_group,
            fields: p.fields,
        })
    }

    fn jira(&mut self, ctx: &FileCtx<'_>, at: &str, raw: JiraRaw) -> JiraPartial {
        let t = |this: &mut Self, key: &str, v: Option<Text>| {
            v.map(|v| this.template_or_placeholder(ctx, &format!("{at}.{key}"), &v))
        };
        let project = t(self, "project", raw.project);
        let issue_type = t(self, "issue_type", raw.issue_type);
        let summary = t(self, "summary", raw.summary);
        let description = t(self, "description", raw.description);
        let priority = t(self, "priority", raw.priority);
        let mut labels = Vec::new();
        for (i, label) in raw.labels.unwrap_or_default().into_iter().enumerate() {
            let key = format!("{at}.labels[{i}]");
            let Some(tpl) = self.template(ctx, &key, &label) else {
                continue;
            };
            if let Template::Literal(text) = &tpl
                && (text.is_empty() || text.chars().any(char::is_whitespace))
            {
                self.error_at(
                    ctx,
                    label.span(),
                    format!("{key}: Jira labels cannot be empty or contain spaces: {text:?}"),
                );
                continue;
            }
            labels.push(tpl);
        }
        let fields = self.fields(ctx, at, raw.fields, &JIRA_RESERVED_FIELDS);
        JiraPartial {
            project,
            issue_type,
            summary,
            description,
            priority,
            labels,
            fields,
        }
    }

    fn servicenow(&mut self, ctx: &FileCtx<'_>, at: &str, raw: ServiceNowRaw) -> ServiceNowPartial {
        let table = raw.table.and_then(|table| {
            let name = table.get_ref();
            // The table name goes into the request path: only a plain identifier is safe.
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                Some(name.clone())
            } else {
                self.error_at(
                    ctx,
                    table.span(),
                    format!(
                        "{at}.table: {name:?} is not a ServiceNow table name (letters, digits and \
                         `_`; not a template)"
                    ),
                );
                None
            }
        });
        let t = |this: &mut Self, key: &str, v: Option<Text>| {
            v.map(|v| this.template_or_placeholder(ctx, &format!("{at}.{key}"), &v))
        };
        let short_description = t(self, "short_description", raw.short_description);
        let description = t(self, "description", raw.description);
        let urgency = t(self, "urgency", raw.urgency);
        let impact = t(self, "impact", raw.impact);
        let assignment_group = t(self, "assignment_group", raw.assignment_group);
        let fields = self.fields(ctx, at, raw.fields, &SERVICENOW_RESERVED_FIELDS);
        ServiceNowPartial {
            table,
            short_description,
            description,
            urgency,
            impact,
            assignment_group,
            fields,
        }
    }

    fn fields(
        &mut self,
        ctx: &FileCtx<'_>,
        at: &str,
        raw: Option<FieldsRaw>,
        reserved: &[&str],
    ) -> BTreeMap<String, FieldTemplate> {
        let mut out = BTreeMap::new();
        for (key, value) in raw.unwrap_or_default() {
            let path = format!("{at}.fields.{key}");
            if reserved.contains(&key.as_str()) {
                self.error_at(
                    ctx,
                    value.span(),
                    format!(
                        "{path}: `{key}` is set by the bridge or by its own key; remove it from \
                         `fields`"
                    ),
                );
                continue;
            }
            let lines = ctx.value_lines(value.span());
            if let Some(t) = self.field_template(ctx, &path, &lines, value.get_ref()) {
                out.insert(key, t);
            }
        }
        out
    }

    fn field_template(
        &mut self,
        ctx: &FileCtx<'_>,
        path: &str,
        lines: &RangeInclusive<usize>,
        value: &toml::Value,
    ) -> Option<FieldTemplate> {
        Some(match value {
            toml::Value::String(s) => FieldTemplate::Text(self.compile_at(ctx, path, lines, s)?),
            toml::Value::Integer(i) => FieldTemplate::Integer(*i),
            toml::Value::Float(f) => FieldTemplate::Float(*f),
            toml::Value::Boolean(b) => FieldTemplate::Bool(*b),
            toml::Value::Datetime(d) => FieldTemplate::Text(Template::Literal(d.to_string())),
            toml::Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.field_template(ctx, &format!("{path}[{i}]"), lines, item) {
                        Some(t) => out.push(t),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                FieldTemplate::Array(out)
            }
            toml::Value::Table(table) => {
                let mut out = BTreeMap::new();
                let mut ok = true;
                for (k, v) in table {
                    match self.field_template(ctx, &format!("{path}.{k}"), lines, v) {
                        Some(t) => {
                            out.insert(k.clone(), t);
                        }
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                FieldTemplate::Table(out)
            }
        })
    }

    /// Like [`Loader::template`], but a broken template still counts as "set", so a syntax error
    /// in `summary` is not followed by a confusing "needs `summary`". The placeholder never
    /// reaches a rule: the recorded error makes the whole load fail.
    fn template_or_placeholder(&mut self, ctx: &FileCtx<'_>, path: &str, text: &Text) -> Template {
        self.template(ctx, path, text)
            .unwrap_or_else(|| Template::Literal(String::new()))
    }

    fn template(&mut self, ctx: &FileCtx<'_>, path: &str, text: &Text) -> Option<Template> {
        let lines = ctx.value_lines(text.span());
        self.compile_at(ctx, path, &lines, text.get_ref())
    }

    /// Compiles one template; a syntax error is reported at the line of the TOML value plus the
    /// line inside the template where minijinja found it. `lines` are the file lines the value's
    /// content spans: when the template has as many lines as that (no `\n` escapes, no line-ending
    /// backslashes), template line N is file line `start + N - 1`; otherwise the error points at
    /// the value's first line rather than at a line that may not exist.
    fn compile_at(
        &mut self,
        ctx: &FileCtx<'_>,
        path: &str,
        lines: &RangeInclusive<usize>,
        source: &str,
    ) -> Option<Template> {
        let line = *lines.start();
        let location = format!("{}:{line} ({path})", ctx.name);
        match self.engine.compile(&location, source) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = template_line(&e.message).unwrap_or(1);
                let line_for_line = source.matches('\n').count() == lines.end() - lines.start();
                let at = if line_for_line {
                    (line + inner.saturating_sub(1)).min(*lines.end())
                } else {
                    line
                };
                self.error(ctx, at, format!("{path}: template error: {}", e.message));
                None
            }
        }
    }

    fn severity_override(
        &mut self,
        ctx: &FileCtx<'_>,
        path: &str,
        text: &Text,
    ) -> Option<Template> {
        let t = self.template(ctx, path, text)?;
        match &t {
            Template::Compiled { .. } => Some(t),
            Template::Literal(label) => match Severity::from_label(label.trim()) {
                Some(s) => Some(Template::Literal(s.as_str().to_owned())),
                None => {
                    self.error_at(
                        ctx,
                        text.span(),
                        format!(
                            "{path}: {label:?} is not a severity label (INFORMATIONAL, LOW, \
                             MEDIUM, HIGH, CRITICAL) nor a template"
                        ),
                    );
                    None
                }
            },
        }
    }

    fn status_map(
        &mut self,
        ctx: &FileCtx<'_>,
        path: &str,
        raw: BTreeMap<String, Text>,
    ) -> BTreeMap<String, WorkflowStatus> {
        let mut out = BTreeMap::new();
        for (status, value) in raw {
            if let Some(category) = status.strip_prefix("category:")
                && !["new", "indeterminate", "done"].contains(&category)
            {
                self.error_at(
                    ctx,
                    value.span(),
                    format!(
                        "{path}: {status:?}: Jira status categories are `new`, `indeterminate`, \
                         `done`"
                    ),
                );
                continue;
            }
            if let Some(state) = status.strip_prefix("state:")
                && state.parse::<u32>().is_err()
            {
                self.error_at(
                    ctx,
                    value.span(),
                    format!("{path}: {status:?}: a ServiceNow state is a number (`state:6`)"),
                );
                continue;
            }
            match WorkflowStatus::parse(value.get_ref()) {
                Some(w) => {
                    out.insert(status, w);
                }
                None => self.error_at(
                    ctx,
                    value.span(),
                    format!(
                        "{path}: {status:?} maps to {:?}, which is not a workflow status (NEW, \
                         NOTIFIED, RESOLVED, SUPPRESSED)",
                        value.get_ref()
                    ),
                ),
            }
        }
        out
    }
}

fn unknown_target(name: &str) -> String {
    format!("unknown target `{name}` (known connections: `jira`, `servicenow`)")
}

fn kind_title(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Jira => "Jira",
        TargetKind::ServiceNow => "ServiceNow",
    }
}

fn backticked(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads the `(template line N)` the template engine appends to a compile error.
fn template_line(message: &str) -> Option<usize> {
    let rest = message.split("(template line ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_content_lines() {
        let src = "a = 1\nb = '''\nx\n{{ y'''\nc = \"\"\"z\"\"\"\n";
        let ctx = FileCtx::new(Path::new("t.toml"), src);
        assert_eq!(ctx.line(0), 1);
        assert_eq!(ctx.line(5), 1);
        assert_eq!(ctx.line(6), 2);
        let b = src.find("'''").unwrap_or(0);
        assert_eq!(ctx.content_line(b), 3);
        let c = src.find("\"\"\"").unwrap_or(0);
        assert_eq!(ctx.content_line(c), 5);
    }

    #[test]
    fn reads_template_line_suffix() {
        assert_eq!(template_line("syntax error: x (template line 3)"), Some(3));
        assert_eq!(template_line("syntax error: x"), None);
    }
}
