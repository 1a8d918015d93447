//! How a [`Plan`] is printed: text for people (only the rules that change, a few examples each,
//! the totals) or one JSON object for CI (`--json`: every rule with its counts).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use super::compare::{Capped, Example, Plan, RuleChanges, TicketDiff};

/// What the plan compared: the new set, and the base it is held against (none: a first
/// deployment).
pub(crate) struct Sets<'a> {
    pub base: Option<&'a Path>,
    pub mappings: &'a Path,
}

/// The text report.
pub(crate) fn text(plan: &Plan, sets: &Sets<'_>) -> String {
    let mut out = String::new();
    let against = match sets.base {
        Some(base) => format!("against the base {}", base.display()),
        None => "as a first deployment (no --base: every ticket is gained)".to_owned(),
    };
    let _ = writeln!(
        out,
        "plan: {} {against}; {} finding(s) read",
        sets.mappings.display(),
        plan.findings
    );
    for ((team, rule), changes) in &plan.rules {
        if changes.differs() || changes.failing.count > 0 {
            out.push('\n');
            rule_text(&mut out, team, rule, changes);
        }
    }
    if plan.malformed.count > 0 {
        let _ = writeln!(
            out,
            "\nmalformed: {} finding(s) or message(s) could not be decoded and were skipped",
            plan.malformed.count
        );
        for problem in &plan.malformed.examples {
            let _ = writeln!(out, "  {problem}");
        }
        more(&mut out, &plan.malformed, "");
    }
    let (gained, lost, changed, unchanged, failing) = plan.totals();
    out.push('\n');
    if plan.differs() {
        let _ = writeln!(
            out,
            "changes: {} of {} finding(s): {gained} ticket(s) gained, {lost} lost, {changed} with \
             different fields; {unchanged} unchanged",
            plan.findings_changed, plan.findings
        );
    } else {
        let _ = writeln!(
            out,
            "no changes: the {} finding(s) route and render the same under both sets \
             ({unchanged} ticket(s))",
            plan.findings
        );
    }
    if plan.findings_unrouted > 0 {
        let _ = writeln!(
            out,
            "unrouted: {} finding(s) open no ticket under either set",
            plan.findings_unrouted
        );
    }
    if failing > 0 {
        let _ = writeln!(
            out,
            "failing: {failing} ticket(s) do not render under the new set (those findings would \
             go to the dead-letter queue)"
        );
    }
    out
}

fn rule_text(out: &mut String, team: &str, rule: &str, c: &RuleChanges) {
    let _ = writeln!(
        out,
        "{team}/{rule}: {} gained, {} lost, {} changed, {} unchanged{}",
        c.gained.count,
        c.lost.count,
        c.changed.count,
        c.unchanged,
        if c.failing.count > 0 {
            format!(", {} failing", c.failing.count)
        } else {
            String::new()
        }
    );
    for e in &c.gained.examples {
        let _ = writeln!(out, "  + {}", example(e));
    }
    more(out, &c.gained, " gained");
    for e in &c.lost.examples {
        let _ = writeln!(out, "  - {}", example(e));
    }
    more(out, &c.lost, " lost");
    for d in &c.changed.examples {
        let _ = writeln!(out, "  ~ {} ({})", d.finding_id, d.marker);
        for f in &d.fields {
            let _ = writeln!(
                out,
                "      {}: {} → {}",
                f.field,
                f.old.as_deref().unwrap_or("(absent)"),
                f.new.as_deref().unwrap_or("(absent)")
            );
        }
    }
    more(out, &c.changed, " changed");
    for e in &c.failing.examples {
        let _ = writeln!(out, "  ! {e}");
    }
    more(out, &c.failing, " failing");
}

fn example(e: &Example) -> String {
    format!("{} {:?}", e.finding_id, e.title)
}

/// `… and N more` when a count has more than its examples.
fn more<T>(out: &mut String, capped: &Capped<T>, what: &str) {
    let shown = u64::try_from(capped.examples.len()).unwrap_or(u64::MAX);
    if capped.count > shown {
        let _ = writeln!(out, "  … and {} more{what}", capped.count - shown);
    }
}

/// The `--json` report: one object, every rule that routed a finding under either set.
pub(crate) fn json(plan: &Plan, sets: &Sets<'_>) -> Value {
    let (gained, lost, changed, unchanged, failing) = plan.totals();
    let rules: Vec<Value> = plan
        .rules
        .iter()
        .map(|((team, rule), c)| {
            json!({
                "team": &**team,
                "rule": &**rule,
                "gained": capped(&c.gained, example_json),
                "lost": capped(&c.lost, example_json),
                "changed": capped(&c.changed, diff_json),
                "unchanged": c.unchanged,
                "failing": capped(&c.failing, |e| Value::from(e.as_str())),
            })
        })
        .collect();
    json!({
        "base": sets.base.map(|p| p.display().to_string()),
        "mappings": sets.mappings.display().to_string(),
        "changed": plan.differs(),
        "findings": plan.findings,
        "findings_changed": plan.findings_changed,
        "findings_unrouted": plan.findings_unrouted,
        "malformed": capped(&plan.malformed, |e| Value::from(e.as_str())),
        "totals": {
            "gained": gained,
            "lost": lost,
            "changed": changed,
            "unchanged": unchanged,
            "failing": failing,
        },
        "rules": rules,
    })
}

fn capped<T>(c: &Capped<T>, each: impl Fn(&T) -> Value) -> Value {
    json!({
        "count": c.count,
        "examples": c.examples.iter().map(each).collect::<Vec<_>>(),
    })
}

fn example_json(e: &Example) -> Value {
    json!({ "finding_id": e.finding_id, "title": e.title })
}

fn diff_json(d: &TicketDiff) -> Value {
    json!({
        "finding_id": d.finding_id,
        "marker": d.marker,
        "fields": d.fields.iter().map(|f| json!({
            "field": f.field,
            "old": f.old,
            "new": f.new,
        })).collect::<Vec<_>>(),
    })
}
