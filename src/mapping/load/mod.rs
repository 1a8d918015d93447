//! Reads `mappings/*.toml` into compiled [`Rule`]s.
//!
//! The TOML is parsed once into a spanned tree; the top level is walked by hand and `[defaults]`
//! and every `[[rules]]` entry are deserialized on their own, so one broken rule does not hide the
//! errors of the next, and every error keeps the byte span it came from (turned into a line here).
//!
//! This module walks the directory and each file's top level; `rules` compiles `[defaults]` and
//! every `[[rules]]` entry, `jira` and `servicenow` their ticket targets, `group` the grouped
//! tickets' keys, `templates` every template, and `file` turns byte offsets into the lines of
//! `file:line` messages.

mod file;
mod group;
mod jira;
mod rules;
mod servicenow;
mod sla;
mod templates;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub(super) use file::FileCtx;
use rules::{Defaults, DefaultsRaw, RuleRaw};

use super::context::Inventory;
use super::spec::{Rule, Team};
use super::template::{Clock, TemplateEngine};
use super::{LoadError, LoadErrors, Mappings};

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
        group_builtins: Default::default(),
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

/// The state of one load: every file's teams, rules and errors. Its methods are spread over the
/// submodules by concern; the error helpers and the file walk are here.
struct Loader {
    engine: TemplateEngine,
    errors: Vec<LoadError>,
    teams: Vec<Team>,
    rules: Vec<Rule>,
    /// Team name → file that defined it, to name both files on a duplicate.
    team_files: HashMap<String, PathBuf>,
    /// The built-in group ticket templates, once compiled.
    group_builtins: group::BuiltIns,
}

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
}
