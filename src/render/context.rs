//! The template context of a route: what `finding`, `raw`, `team`, `rule`, `context` (and, for a
//! group ticket, `group`) are in a rule's templates, built over the shared finding without copying
//! it.

use std::sync::{Arc, OnceLock};

use minijinja::value::{Enumerator, Object, Serde, Value as Ctx};

use crate::finding::{Finding, Severity};
use crate::mapping::context::Application;
use crate::mapping::spec::Rule;

/// The template context for one (finding, rule): `finding` (its serde names, `severity` replaced
/// by `severity`), `raw`, `team`, `rule`, and `context`: `context.application.{name, owner,
/// criticality}` when the finding belongs to an application of the inventory, and no
/// `application` key at all otherwise, so `{% if context.application is defined %}` works under
/// strict undefined.
///
/// Copies the finding once; [`super::render_route_shared`] renders from a shared finding without that
/// copy.
pub fn template_context(
    finding: &Finding,
    rule: &Rule,
    severity: Severity,
    application: Option<&Application>,
) -> Ctx {
    let view = FindingView::new(Arc::new(finding.clone()), severity);
    context_from(&view, rule, application)
}

/// `finding` as templates see it: a lazy object over the shared finding that converts a field
/// only when a template reads it. Templates read a handful of fields, so this replaces turning
/// the whole finding (and its raw JSON) into a minijinja value tree for every route. Keys, values
/// and their order are those of the finding's serde form, so templates cannot tell the
/// difference: unknown keys are undefined (an error under strict undefined), `is defined`,
/// iteration, `length` and printing behave as on the serialized map.
#[derive(Debug)]
pub(super) struct FindingView {
    finding: Arc<Finding>,
    /// The severity the templates see: the rule's override when it has one.
    pub(super) severity: Severity,
    /// `raw` converted on first use and shared by `finding.raw` and `raw`.
    raw: OnceLock<Ctx>,
}

/// The serde names of [`Finding`] (`write_back` is skipped there), sorted as a serialized map
/// iterates them.
const FINDING_KEYS: [&str; 26] = [
    "account_id",
    "company_name",
    "compliance",
    "console_url",
    "created_at",
    "description",
    "first_observed_at",
    "generator_id",
    "id",
    "last_observed_at",
    "product_arn",
    "product_fields",
    "product_name",
    "raw",
    "record_state",
    "region",
    "remediation",
    "resources",
    "schema",
    "severity",
    "severity_score",
    "title",
    "types",
    "updated_at",
    "user_defined_fields",
    "workflow_status",
];

impl FindingView {
    pub(super) fn new(finding: Arc<Finding>, severity: Severity) -> Arc<FindingView> {
        Arc::new(FindingView {
            finding,
            severity,
            raw: OnceLock::new(),
        })
    }

    pub(super) fn raw(&self) -> Ctx {
        self.raw
            .get_or_init(|| Ctx::from(Serde(&self.finding.raw)))
            .clone()
    }

    /// The same finding seen with another severity (the override); `raw` stays shared.
    pub(super) fn with_severity(self: &Arc<Self>, severity: Severity) -> Arc<FindingView> {
        if severity == self.severity {
            return Arc::clone(self);
        }
        let raw = OnceLock::new();
        if let Some(converted) = self.raw.get() {
            let _ = raw.set(converted.clone());
        }
        Arc::new(FindingView {
            finding: Arc::clone(&self.finding),
            severity,
            raw,
        })
    }
}

fn opt_str(value: Option<&String>) -> Ctx {
    value.map_or(Ctx::from(()), |s| Ctx::from(s.as_str()))
}

impl Object for FindingView {
    fn get_value(self: &Arc<Self>, key: &Ctx) -> Option<Ctx> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Ctx> {
        let f = &*self.finding;
        Some(match key {
            "id" => Ctx::from(f.id.as_str()),
            "schema" => Ctx::from(f.schema.as_str()),
            "product_arn" => Ctx::from(f.product_arn.as_str()),
            "product_name" => Ctx::from(f.product_name.as_str()),
            "company_name" => Ctx::from(f.company_name.as_str()),
            "generator_id" => Ctx::from(f.generator_id.as_str()),
            "account_id" => Ctx::from(f.account_id.as_str()),
            "region" => Ctx::from(f.region.as_str()),
            "title" => Ctx::from(f.title.as_str()),
            "description" => Ctx::from(f.description.as_str()),
            "severity" => Ctx::from(self.severity.as_str()),
            "severity_score" => Ctx::from(f.severity_score),
            "types" => Ctx::from(Serde(&f.types)),
            "resources" => Ctx::from(Serde(&f.resources)),
            "compliance" => Ctx::from(Serde(&f.compliance)),
            "workflow_status" => Ctx::from(f.workflow_status.as_str()),
            "record_state" => Ctx::from(f.record_state.as_str()),
            "created_at" => opt_str(f.created_at.as_ref()),
            "updated_at" => opt_str(f.updated_at.as_ref()),
            "first_observed_at" => opt_str(f.first_observed_at.as_ref()),
            "last_observed_at" => opt_str(f.last_observed_at.as_ref()),
            "remediation" => Ctx::from(Serde(&f.remediation)),
            "user_defined_fields" => Ctx::from(Serde(&f.user_defined_fields)),
            "product_fields" => Ctx::from(Serde(&f.product_fields)),
            "console_url" => Ctx::from(f.console_url.as_str()),
            "raw" => self.raw(),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&FINDING_KEYS)
    }
}

/// The whole context of one route, looked up by name: the five top-level variables.
#[derive(Debug)]
struct RouteContext {
    finding: Arc<FindingView>,
    team: Arc<str>,
    rule: Arc<str>,
    context: Ctx,
    /// `group` of a group ticket's templates (render/group.rs); absent otherwise.
    group: Option<Ctx>,
}

const CONTEXT_KEYS: [&str; 5] = ["context", "finding", "raw", "rule", "team"];
const GROUP_CONTEXT_KEYS: [&str; 6] = ["context", "finding", "group", "raw", "rule", "team"];

impl Object for RouteContext {
    fn get_value(self: &Arc<Self>, key: &Ctx) -> Option<Ctx> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Ctx> {
        Some(match key {
            "finding" => Ctx::from_dyn_object(Arc::clone(&self.finding)),
            "raw" => self.finding.raw(),
            "team" => Ctx::from(Arc::clone(&self.team)),
            "rule" => Ctx::from(Arc::clone(&self.rule)),
            "context" => self.context.clone(),
            "group" => self.group.clone()?,
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.group {
            Some(_) => Enumerator::Str(&GROUP_CONTEXT_KEYS),
            None => Enumerator::Str(&CONTEXT_KEYS),
        }
    }
}

/// Builds the context of one route over a finding view, so the override template and the ticket
/// templates share one view (and one conversion of `raw`, if a template reads it).
pub(super) fn context_from(
    view: &Arc<FindingView>,
    rule: &Rule,
    application: Option<&Application>,
) -> Ctx {
    context_with(view, rule, application, None)
}

/// [`context_from`] with `group` (a group ticket's templates) when given.
pub(super) fn context_with(
    view: &Arc<FindingView>,
    rule: &Rule,
    application: Option<&Application>,
    group: Option<Ctx>,
) -> Ctx {
    let context = match application {
        Some(app) => Ctx::from_pairs([(
            "application",
            Ctx::from_pairs([
                ("name", Ctx::from(app.name.as_str())),
                ("owner", Ctx::from(app.owner.as_str())),
                ("criticality", Ctx::from(app.criticality.as_str())),
            ]),
        )]),
        None => Ctx::from_pairs(Vec::<(&str, Ctx)>::new()),
    };
    Ctx::from_object(RouteContext {
        finding: Arc::clone(view),
        team: Arc::clone(&rule.team),
        rule: Arc::clone(&rule.name),
        context,
        group,
    })
}
