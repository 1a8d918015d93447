//! `[rules.jira]` / `[defaults.jira]`: the Jira target's keys, how a rule's keys merge over the
//! defaults, and what a complete Jira target needs.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::templates::{FieldsRaw, Text};
use super::{FileCtx, Loader};
use crate::mapping::group::GroupSpec;
use crate::mapping::spec::{FieldTemplate, JiraSpec};
use crate::mapping::template::Template;

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JiraRaw {
    project: Option<Text>,
    issue_type: Option<Text>,
    summary: Option<Text>,
    description: Option<Text>,
    priority: Option<Text>,
    labels: Option<Vec<Text>>,
    fields: Option<FieldsRaw>,
}

#[derive(Default)]
pub(super) struct JiraPartial {
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
    pub(super) fn merged_over(self, defaults: Option<&JiraPartial>) -> JiraPartial {
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

impl JiraPartial {
    /// A grouped rule's tickets take the group summary and description: they stand in where
    /// neither the rule nor the defaults set one, so the rule needs none and what reads the spec
    /// (preflight's field checks) sees the fields its tickets carry.
    pub(super) fn group_texts(mut self, group: Option<&GroupSpec>) -> JiraPartial {
        if let Some(group) = group {
            self.summary.get_or_insert_with(|| group.summary.clone());
            self.description
                .get_or_insert_with(|| group.description.clone());
        }
        self
    }
}

impl Loader {
    pub(super) fn jira(&mut self, ctx: &FileCtx<'_>, at: &str, raw: JiraRaw) -> JiraPartial {
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

    pub(super) fn finish_jira(
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
}

fn backticked(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
