//! `group_by`, `group_summary` and `group_description` in `[defaults]` and `[[rules]]` (README,
//! "Grouped tickets"): compiled like every other template, the rule's keys over the defaults', and
//! the built-in ticket templates filled in where a grouped rule sets none.
//!
//! `group_by = ""` in a rule turns grouping off for that rule when `[defaults]` sets it. The
//! ticket templates mean something only with a key, so a rule that sets one without (its own or
//! the defaults') `group_by` is an error; in `[defaults]` they only serve the file's grouped
//! rules.

use super::templates::Text;
use super::{FileCtx, Loader};
use crate::mapping::LoadError;
use crate::mapping::group::{DEFAULT_SUMMARY, GroupSpec, default_description};
use crate::mapping::spec::TargetKind;
use crate::mapping::template::Template;

/// The three keys as written in `[defaults]` or a rule.
pub(super) struct GroupRaw {
    pub(super) by: Option<Text>,
    pub(super) summary: Option<Text>,
    pub(super) description: Option<Text>,
}

/// `[defaults]`' group keys, compiled once per file.
#[derive(Default)]
pub(super) struct GroupDefaults {
    /// `None` when `[defaults]` sets no (or an empty) `group_by`.
    by: Option<Template>,
    summary: Option<Template>,
    description: Option<Template>,
}

/// The built-in group ticket templates, compiled into the load's engine the first time a grouped
/// rule needs them and shared by every rule after that.
#[derive(Default)]
pub(super) struct BuiltIns {
    summary: Option<Template>,
    markdown: Option<Template>,
    plain: Option<Template>,
}

impl Loader {
    pub(super) fn group_defaults(&mut self, ctx: &FileCtx<'_>, raw: GroupRaw) -> GroupDefaults {
        let by = raw
            .by
            .filter(|t| !t.get_ref().trim().is_empty())
            .and_then(|t| self.template(ctx, "defaults.group_by", &t));
        let summary = raw
            .summary
            .and_then(|t| self.template(ctx, "defaults.group_summary", &t));
        let description = raw
            .description
            .and_then(|t| self.template(ctx, "defaults.group_description", &t));
        GroupDefaults {
            by,
            summary,
            description,
        }
    }

    /// A rule's group, or `None` when it has no `group_by` (errors are recorded, never returned).
    /// `kind` is the rule's ticket kind when it has exactly one target table: it picks the
    /// built-in description.
    pub(super) fn group(
        &mut self,
        ctx: &FileCtx<'_>,
        at: &str,
        what: &str,
        defaults: &GroupDefaults,
        kind: Option<TargetKind>,
        raw: GroupRaw,
    ) -> Option<GroupSpec> {
        let by = match &raw.by {
            Some(t) if t.get_ref().trim().is_empty() => None,
            Some(t) => Some(self.template_or_placeholder(ctx, &format!("{at}.group_by"), t)),
            None => defaults.by.clone(),
        };
        let compile = |this: &mut Self, key: &str, text: Option<Text>| -> Option<Template> {
            let text = text?;
            if by.is_none() {
                this.error_at(
                    ctx,
                    text.span(),
                    format!(
                        "{what}: `{key}` needs `group_by` (in the rule or [defaults]); without it \
                         the rule opens one ticket per finding"
                    ),
                );
                return None;
            }
            Some(this.template_or_placeholder(ctx, &format!("{at}.{key}"), &text))
        };
        let summary = compile(self, "group_summary", raw.summary);
        let description = compile(self, "group_description", raw.description);
        let by = by?;
        let summary = match summary.or_else(|| defaults.summary.clone()) {
            Some(t) => t,
            None => self.builtin(ctx, BuiltIn::Summary)?,
        };
        let description = match description.or_else(|| defaults.description.clone()) {
            Some(t) => t,
            None => self.builtin(ctx, BuiltIn::Description(kind?))?,
        };
        Some(GroupSpec {
            by,
            summary,
            description,
        })
    }

    fn builtin(&mut self, ctx: &FileCtx<'_>, which: BuiltIn) -> Option<Template> {
        let (slot, name, source) = match which {
            BuiltIn::Summary => (
                &mut self.group_builtins.summary,
                "(built-in group_summary)",
                DEFAULT_SUMMARY,
            ),
            BuiltIn::Description(TargetKind::Jira) => (
                &mut self.group_builtins.markdown,
                "(built-in Jira group_description)",
                default_description(TargetKind::Jira),
            ),
            BuiltIn::Description(TargetKind::ServiceNow) => (
                &mut self.group_builtins.plain,
                "(built-in ServiceNow group_description)",
                default_description(TargetKind::ServiceNow),
            ),
        };
        if let Some(t) = slot {
            return Some(t.clone());
        }
        match self.engine.compile(name, source) {
            Ok(t) => {
                *slot = Some(t.clone());
                Some(t)
            }
            // Unit tests compile the built-ins; this is here so a broken one fails loading
            // rather than the process.
            Err(e) => {
                self.errors.push(LoadError {
                    file: ctx.path.to_path_buf(),
                    line: None,
                    message: format!("built-in template does not compile: {e}"),
                });
                None
            }
        }
    }
}

#[derive(Clone, Copy)]
enum BuiltIn {
    Summary,
    Description(TargetKind),
}
