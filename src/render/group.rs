//! Group tickets (README, "Grouped tickets"): a finding's group key, and the create body and the
//! update fields of the ticket its group shares.
//!
//! A group ticket is built exactly like a finding's (same project, issue type, labels, fields,
//! table, limits, rich-text flavour) except that its summary and description come from the
//! group templates, it carries the group marker, and its severity is the group's highest open
//! severity ([`GroupView::max_severity`]). The rule's `severity_override` does not apply to the
//! group: each item already carries its finding's effective severity.
//!
//! The description lists the items; past the field limit it lists as many whole items as fit
//! (open first, highest severity first: [`GroupView`]'s order) and tells the template how many
//! it left out (`group.omitted`), so an item is never cut in half.

use std::sync::Arc;

use minijinja::value::{Serde, Value as Ctx};
use serde_json::{Map, Value};

use super::{
    FindingView, JIRA_TEXT_LIMIT, JiraFlavor, RenderError, RenderOptions, RenderedTicket, Renderer,
    SERVICENOW_DESCRIPTION_LIMIT, context_from, context_with, effective_severity, rule_label,
    severity_note,
};
use crate::finding::{Finding, Severity};
use crate::mapping::context::Application;
use crate::mapping::group::{GroupItem, GroupSpec, GroupView, normalize_key};
use crate::mapping::spec::{Rule, TargetKind, TicketSpec};
use crate::mapping::template::{Template, TemplateEngine};
use crate::marker::Marker;
use crate::ticket::jira::format::wiki::markdown_to_wiki;

/// The group a route's ticket is for: `render` prints it, the lifecycle keys the group by it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupRoute {
    pub key: String,
    pub marker: Marker,
}

/// A group ticket as it should be now.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedGroup {
    /// The create body and what goes with it; `ticket.marker` is the group marker.
    pub ticket: RenderedTicket,
    /// What an update of the existing group ticket sends to make it current, named as in the
    /// create body: Jira `summary`, `description` and the severity fields (`priority`, due date);
    /// ServiceNow `short_description`, `description`, `urgency`, `impact`, due date. Only those
    /// the create body has, plus a due date to clear (see [`RenderedTicket::severity_fields`]).
    pub fields: Map<String, Value>,
}

/// The group texts that replace the rule's summary and description in [`Renderer`].
pub(super) struct GroupTexts {
    summary: String,
    /// `None` when the description template rendered empty (the field is left out).
    description: Option<String>,
}

/// The group key of `finding` under `rule`: `None` when the rule has no `group_by`; otherwise the
/// rendered key made one bounded line ([`normalize_key`]). A key that renders empty is an error:
/// a finding without the field the key reads must fail loudly, not join a group named "".
///
/// The template sees what the rule's other templates see, the severity override applied.
pub fn group_key(
    engine: &TemplateEngine,
    rule: &Rule,
    finding: &Arc<Finding>,
    application: Option<&Application>,
) -> Result<Option<String>, RenderError> {
    let Some(spec) = &rule.group else {
        return Ok(None);
    };
    let view = FindingView::new(Arc::clone(finding), finding.severity);
    let severity = effective_severity(engine, rule, &view, application)?;
    let ctx = context_from(&view.with_severity(severity), rule, application);
    key(engine, rule, spec, &ctx).map(Some)
}

fn key(
    engine: &TemplateEngine,
    rule: &Rule,
    spec: &GroupSpec,
    ctx: &Ctx,
) -> Result<String, RenderError> {
    let key = normalize_key(&engine.render(&spec.by, ctx)?);
    if key.is_empty() {
        return Err(RenderError::EmptyGroupKey {
            rule: rule_label(rule),
        });
    }
    Ok(key)
}

/// The ticket of the group `view` of `rule`, with `finding` (the one being processed) as the
/// templates' `finding`, and the fields that bring an existing group ticket up to date.
///
/// Fails with [`RenderError::NotGrouped`] for a rule without `group_by`.
pub fn render_group(
    engine: &TemplateEngine,
    rule: &Rule,
    finding: &Arc<Finding>,
    application: Option<&Application>,
    view: &GroupView,
    opts: &RenderOptions,
) -> Result<RenderedGroup, RenderError> {
    let Some(spec) = &rule.group else {
        return Err(RenderError::NotGrouped {
            rule: rule_label(rule),
        });
    };
    let severity = view.max_severity();
    let finding_view = FindingView::new(Arc::clone(finding), severity);
    let items: Vec<ItemValue<'_>> = view.items.iter().map(ItemValue::of).collect();
    let context = |listed: usize| {
        let group = GroupValue {
            key: &view.key,
            marker: view.marker.as_str(),
            count: view.items.len(),
            open_count: view.open_count(),
            max_severity: severity.as_str(),
            omitted: items.len() - listed,
            findings: &items[..listed],
        };
        context_with(
            &finding_view,
            rule,
            application,
            Some(Ctx::from(Serde(&group))),
        )
    };
    let limit = DescriptionLimit::of(rule, opts.jira);
    let (description, ctx) = fit(
        items.len(),
        |listed| {
            let ctx = context(listed);
            let text = engine.render(&spec.description, &ctx)?;
            Ok((text, ctx))
        },
        |text| limit.fits(text),
    )?;

    let plain = Renderer {
        engine,
        rule,
        ctx,
        group: None,
    };
    let texts = GroupTexts {
        summary: plain.required(&spec.summary, "group_summary")?,
        description: (!description.trim().is_empty()).then_some(description),
    };
    let r = Renderer {
        group: Some(&texts),
        ..plain
    };
    let (mut payload, table) = match &rule.ticket {
        TicketSpec::Jira(jira) => (r.jira(jira, &view.marker, opts.jira)?, None),
        TicketSpec::ServiceNow(sn) => (r.servicenow(sn, &view.marker)?, Some(sn.table.clone())),
    };
    let sla = r.sla(finding, severity, &mut payload)?;
    let ticket = RenderedTicket {
        kind: rule.ticket.kind(),
        marker: view.marker.clone(),
        severity,
        severity_note: None,
        payload,
        table,
        sla,
        sla_rule: !rule.sla.0.is_empty(),
        group: Some(GroupRoute {
            key: view.key.clone(),
            marker: view.marker.clone(),
        }),
    };
    let fields = update_fields(&ticket);
    Ok(RenderedGroup { ticket, fields })
}

/// [`super::render_route_shared`] for a grouped rule: the group ticket as if `finding` alone
/// started its group, under the FINDING's marker (the lifecycle's key and `render`'s `marker`);
/// the group's marker is in `group`. `severity` is the finding's effective severity and `ctx` the
/// finding's context at that severity.
pub(super) fn render_single(
    engine: &TemplateEngine,
    rule: &Rule,
    finding: &Arc<Finding>,
    severity: Severity,
    ctx: &Ctx,
    application: Option<&Application>,
    opts: &RenderOptions,
) -> Result<RenderedTicket, RenderError> {
    let Some(spec) = &rule.group else {
        return Err(RenderError::NotGrouped {
            rule: rule_label(rule),
        });
    };
    let key = key(engine, rule, spec, ctx)?;
    let marker = Marker::group(&rule.team, &key);
    let view = GroupView::new(key, marker, vec![GroupItem::of(finding, severity)]);
    let mut ticket = render_group(engine, rule, finding, application, &view, opts)?.ticket;
    ticket.marker = Marker::new(&rule.team, &finding.id);
    ticket.severity_note = severity_note(rule, finding.severity, severity, application);
    Ok(ticket)
}

/// Renders with all `total` items listed and, when that does not fit, finds the largest count
/// that does by bisection (`render(n)` lists the first `n`). Longer lists render longer, so the
/// search is sound; it renders about log2(total) + 1 times. A list the template runs out of fuel
/// on counts as too long (a shorter one may render). When not even an empty list fits, the text
/// with none listed is returned and the usual truncation applies when it is assembled.
fn fit<T>(
    total: usize,
    mut render: impl FnMut(usize) -> Result<(String, T), RenderError>,
    fits: impl Fn(&str) -> bool,
) -> Result<(String, T), RenderError> {
    // What listing none gave, when that did not fit either: the text, or the fuel error.
    let mut none_listed = None;
    let mut attempt = |n: usize| -> Result<Option<(String, T)>, RenderError> {
        let outcome = match render(n) {
            Ok(done) if fits(&done.0) => return Ok(Some(done)),
            Ok(done) => Ok(done),
            Err(RenderError::Template(e)) if e.is_out_of_fuel() => Err(RenderError::Template(e)),
            Err(e) => return Err(e),
        };
        if n == 0 {
            none_listed = Some(outcome);
        }
        Ok(None)
    };
    if let Some(all) = attempt(total)? {
        return Ok(all);
    }
    let mut best = None;
    // The answer is in lo..hi; `hi` is known not to fit.
    let (mut lo, mut hi) = (0, total);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match attempt(mid)? {
            Some(done) => {
                best = Some(done);
                lo = mid + 1;
            }
            None => hi = mid,
        }
    }
    // Without a fitting count the search ended having tried none, so `none_listed` is set;
    // rendering none again is only the type's fallback.
    match best.map(Ok).or(none_listed) {
        Some(outcome) => outcome,
        None => render(0),
    }
}

/// How long a description may be, measured as the ticket system stores it.
#[derive(Clone, Copy)]
enum DescriptionLimit {
    /// Jira Cloud: the Markdown is cut at the limit before it becomes ADF.
    Markdown,
    /// Jira Data Center stores wiki markup, which escaping makes longer than the Markdown.
    Wiki,
    /// ServiceNow stores the text as it is.
    Plain,
}

impl DescriptionLimit {
    fn of(rule: &Rule, flavor: JiraFlavor) -> DescriptionLimit {
        match (rule.ticket.kind(), flavor) {
            (TargetKind::Jira, JiraFlavor::Cloud) => DescriptionLimit::Markdown,
            (TargetKind::Jira, JiraFlavor::DataCenter) => DescriptionLimit::Wiki,
            (TargetKind::ServiceNow, _) => DescriptionLimit::Plain,
        }
    }

    fn fits(self, text: &str) -> bool {
        match self {
            DescriptionLimit::Markdown => text.chars().count() <= JIRA_TEXT_LIMIT,
            DescriptionLimit::Wiki => markdown_to_wiki(text).chars().count() <= JIRA_TEXT_LIMIT,
            DescriptionLimit::Plain => text.chars().count() <= SERVICENOW_DESCRIPTION_LIMIT,
        }
    }
}

/// The update that makes an existing group ticket current: its summary and description, and
/// the fields that follow its severity.
fn update_fields(ticket: &RenderedTicket) -> Map<String, Value> {
    let (source, keys) = match ticket.kind {
        TargetKind::Jira => (
            ticket.payload.get("fields").and_then(Value::as_object),
            ["summary", "description"],
        ),
        TargetKind::ServiceNow => (
            ticket.payload.as_object(),
            ["short_description", "description"],
        ),
    };
    let mut out = Map::new();
    if let Some(source) = source {
        for key in keys {
            if let Some(v) = source.get(key) {
                out.insert(key.to_owned(), v.clone());
            }
        }
    }
    out.extend(ticket.severity_fields());
    out
}

/// `group` as the templates see it.
#[derive(serde::Serialize)]
struct GroupValue<'a> {
    key: &'a str,
    marker: &'a str,
    count: usize,
    open_count: usize,
    max_severity: &'static str,
    omitted: usize,
    findings: &'a [ItemValue<'a>],
}

/// One of `group.findings`.
#[derive(serde::Serialize)]
struct ItemValue<'a> {
    id: &'a str,
    title: &'a str,
    resource: &'a str,
    severity: &'static str,
    state: &'static str,
    resolved: bool,
    console_url: &'a str,
}

impl<'a> ItemValue<'a> {
    fn of(item: &'a GroupItem) -> ItemValue<'a> {
        ItemValue {
            id: &item.id,
            title: &item.title,
            resource: &item.resource,
            severity: item.severity().as_str(),
            state: if item.resolved { "RESOLVED" } else { "OPEN" },
            resolved: item.resolved,
            console_url: &item.console_url,
        }
    }
}

impl Renderer<'_> {
    /// The summary: the group's, or the rule's `template` (required).
    pub(super) fn summary(
        &self,
        template: &Template,
        field: &'static str,
    ) -> Result<String, RenderError> {
        match self.group {
            Some(texts) => Ok(texts.summary.clone()),
            None => self.required(template, field),
        }
    }

    /// The description: the group's, or the rule's `template` (optional).
    pub(super) fn description(
        &self,
        template: Option<&Template>,
    ) -> Result<Option<String>, RenderError> {
        match self.group {
            Some(texts) => Ok(texts.description.clone()),
            None => self.optional(template),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list of `n` items of `width` characters each, then how many were left out of `total`.
    fn list(n: usize, total: usize, width: usize) -> String {
        let mut out: String = (0..n).map(|i| format!("{i:0width$}\n")).collect();
        if n < total {
            out.push_str(&format!("and {} more", total - n));
        }
        out
    }

    #[test]
    fn fit_lists_the_most_whole_items_that_fit_and_counts_the_rest() {
        for (total, limit) in [(200, 1_000), (7, 40), (2, 15), (200, 100_000), (0, 10)] {
            let mut renders = 0;
            let (text, listed) = fit(
                total,
                |n| {
                    renders += 1;
                    Ok((list(n, total, 9), n))
                },
                |t| t.chars().count() <= limit,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            assert!(text.chars().count() <= limit, "{total}/{limit}: {text}");
            assert_eq!(text, list(listed, total, 9), "whole items only");
            if listed < total {
                assert!(
                    list(listed + 1, total, 9).chars().count() > limit,
                    "{total}/{limit}: one more item would have fitted"
                );
            }
            // One render with everything, then a bisection.
            assert!(renders <= 2 + total.max(1).ilog2() as usize, "{renders}");
        }
    }

    #[test]
    fn fit_falls_back_to_no_items_when_nothing_fits() {
        let (text, listed) = fit(
            5,
            |n| Ok((format!("{}{}", "x".repeat(100), list(n, 5, 3)), n)),
            |t| t.chars().count() <= 50,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listed, 0);
        assert!(text.ends_with("and 5 more"), "{text}");
    }

    #[test]
    fn fit_treats_running_out_of_fuel_as_too_long() {
        let mut engine = TemplateEngine::default();
        let heavy = engine
            .compile(
                "t.toml:1 (x)",
                "{% for i in range(n) %}{% for j in range(300) %}{% endfor %}{% endfor %}{{ n }}",
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let (text, listed) = fit(
            200,
            |n| {
                let ctx = minijinja::context! { n => n };
                Ok((engine.render(&heavy, &ctx)?, n))
            },
            |_| true,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(listed > 0 && listed < 200, "{listed}");
        assert_eq!(text, listed.to_string());
        // A template that runs out of fuel even on no items fails as it did.
        let result = fit(
            3,
            |_| {
                let ctx = minijinja::context! { n => 1000 };
                Ok((engine.render(&heavy, &ctx)?, ()))
            },
            |_| true,
        );
        assert!(
            matches!(&result, Err(RenderError::Template(e)) if e.is_out_of_fuel()),
            "{result:?}"
        );
    }

    #[test]
    fn fit_passes_render_errors_on() {
        let result: Result<(String, ()), RenderError> = fit(
            3,
            |_| Err(RenderError::NotGrouped { rule: "r".into() }),
            |_| true,
        );
        assert!(matches!(result, Err(RenderError::NotGrouped { .. })));
    }
}
