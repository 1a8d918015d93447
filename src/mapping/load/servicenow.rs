//! `[rules.servicenow]` / `[defaults.servicenow]`: the ServiceNow target's keys, how a rule's keys
//! merge over the defaults, and what a complete ServiceNow target needs.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::templates::{FieldsRaw, Text};
use super::{FileCtx, Loader};
use crate::mapping::group::GroupSpec;
use crate::mapping::spec::{FieldTemplate, ServiceNowSpec};
use crate::mapping::template::Template;

/// Default ServiceNow table when a rule names none.
const DEFAULT_SERVICENOW_TABLE: &str = "incident";

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServiceNowRaw {
    table: Option<Text>,
    short_description: Option<Text>,
    description: Option<Text>,
    urgency: Option<Text>,
    impact: Option<Text>,
    assignment_group: Option<Text>,
    fields: Option<FieldsRaw>,
}

#[derive(Default)]
pub(super) struct ServiceNowPartial {
    table: Option<String>,
    short_description: Option<Template>,
    description: Option<Template>,
    urgency: Option<Template>,
    impact: Option<Template>,
    assignment_group: Option<Template>,
    fields: BTreeMap<String, FieldTemplate>,
}

impl ServiceNowPartial {
    pub(super) fn merged_over(self, defaults: Option<&ServiceNowPartial>) -> ServiceNowPartial {
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

impl ServiceNowPartial {
    /// A grouped rule's tickets take the group summary and description: they stand in where
    /// neither the rule nor the defaults set one, so the rule needs none and what reads the spec
    /// (preflight's field checks) sees the fields its tickets carry.
    pub(super) fn group_texts(mut self, group: Option<&GroupSpec>) -> ServiceNowPartial {
        if let Some(group) = group {
            self.short_description
                .get_or_insert_with(|| group.summary.clone());
            self.description
                .get_or_insert_with(|| group.description.clone());
        }
        self
    }
}

impl Loader {
    pub(super) fn servicenow(
        &mut self,
        ctx: &FileCtx<'_>,
        at: &str,
        raw: ServiceNowRaw,
    ) -> ServiceNowPartial {
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

    pub(super) fn finish_servicenow(
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
}
