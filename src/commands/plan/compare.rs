//! One finding through both mapping sets, and what differs, added up per (team, rule) into a
//! [`Plan`]. A plan keeps counts and at most [`EXAMPLES`] examples of each kind per rule, never
//! the findings themselves, so its size depends on the number of rules, not of findings.
//!
//! Tickets are per (finding, team), as the worker opens them:
//! - a team that gets the finding under one set and not the other: *lost* under the old set's
//!   rule, or *gained* under the new set's;
//! - a team that gets it under both, by rules of different names: lost under the old rule and
//!   gained under the new one (the finding moved);
//! - the same rule in both: the two renderings are compared field by field ([`diff::changes`]);
//!   a difference makes the ticket *changed*, else it is *unchanged*.
//!
//! A ticket the new set cannot render (a template error on this finding) is also counted as
//! *failing* under its rule: that finding would go to the dead-letter queue.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::diff::{self, FieldChange, Routed};
use crate::commands::offline::rendered_routes;
use crate::finding::Finding;
use crate::mapping::Mappings;
use crate::marker::Marker;
use crate::render::RenderOptions;

/// Examples kept per rule and kind (gained, lost, changed, failing); the rest are counted.
pub(crate) const EXAMPLES: usize = 3;
/// Decode problems kept for the report; the rest are counted.
pub(crate) const MALFORMED_EXAMPLES: usize = 5;

/// A count and its first few examples.
#[derive(Debug)]
pub(crate) struct Capped<T> {
    pub count: u64,
    pub examples: Vec<T>,
}

impl<T> Default for Capped<T> {
    fn default() -> Self {
        Capped {
            count: 0,
            examples: Vec::new(),
        }
    }
}

impl<T> Capped<T> {
    /// Counts one; builds and keeps the example only while there is room.
    fn add(&mut self, cap: usize, example: impl FnOnce() -> T) {
        self.count += 1;
        if self.examples.len() < cap {
            self.examples.push(example());
        }
    }
}

/// A finding named in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Example {
    pub finding_id: String,
    pub title: String,
}

impl Example {
    fn of(finding: &Finding) -> Example {
        Example {
            finding_id: finding.id.clone(),
            title: diff::shorten(&finding.title),
        }
    }
}

/// A ticket whose fields differ between the two sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TicketDiff {
    pub finding_id: String,
    /// The dedup marker of the ticket (same under both sets: it depends on team and finding).
    pub marker: String,
    pub fields: Vec<FieldChange>,
}

/// What changes for one (team, rule). A rule of either set that routed at least one finding has
/// an entry.
#[derive(Debug, Default)]
pub(crate) struct RuleChanges {
    pub gained: Capped<Example>,
    pub lost: Capped<Example>,
    pub changed: Capped<TicketDiff>,
    pub unchanged: u64,
    /// Tickets of this rule the new set cannot render, with the first errors.
    pub failing: Capped<String>,
}

impl RuleChanges {
    /// Whether anything differs for this rule (failing tickets alone are not a difference: the
    /// old set may fail the same way).
    pub(crate) fn differs(&self) -> bool {
        self.gained.count + self.lost.count + self.changed.count > 0
    }
}

/// Everything a plan found.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Findings decoded and compared.
    pub findings: u64,
    /// Findings with at least one gained, lost or changed ticket.
    pub findings_changed: u64,
    /// Findings neither set opens a ticket for.
    pub findings_unrouted: u64,
    /// Findings (or messages) that did not decode, with the first problems and where they are.
    pub malformed: Capped<String>,
    /// Per (team, rule), in name order.
    pub rules: BTreeMap<(Arc<str>, Arc<str>), RuleChanges>,
}

impl Plan {
    /// Whether the new set would do anything differently for these findings.
    pub(crate) fn differs(&self) -> bool {
        self.findings_changed > 0
    }

    /// Sums over every rule: (gained, lost, changed, unchanged, failing).
    pub(crate) fn totals(&self) -> (u64, u64, u64, u64, u64) {
        self.rules.values().fold((0, 0, 0, 0, 0), |t, r| {
            (
                t.0 + r.gained.count,
                t.1 + r.lost.count,
                t.2 + r.changed.count,
                t.3 + r.unchanged,
                t.4 + r.failing.count,
            )
        })
    }

    pub(crate) fn malformed(&mut self, problem: impl FnOnce() -> String) {
        self.malformed.add(MALFORMED_EXAMPLES, problem);
    }

    fn rule(&mut self, routed: &Routed<'_>) -> &mut RuleChanges {
        let key = (routed.rule.team.clone(), routed.rule.name.clone());
        self.rules.entry(key).or_default()
    }

    fn gained(&mut self, finding: &Finding, routed: &Routed<'_>) {
        self.rule(routed)
            .gained
            .add(EXAMPLES, || Example::of(finding));
    }

    fn lost(&mut self, finding: &Finding, routed: &Routed<'_>) {
        self.rule(routed)
            .lost
            .add(EXAMPLES, || Example::of(finding));
    }

    /// Counts a ticket of the new set that does not render.
    fn check_renders(&mut self, routed: &Routed<'_>) {
        if let Err(e) = &routed.ticket {
            self.rule(routed).failing.add(EXAMPLES, || e.to_string());
        }
    }

    /// Routes and renders `finding` under both sets (`old` absent: nothing was deployed) and
    /// adds the differences.
    pub(crate) fn compare(
        &mut self,
        old: Option<&Mappings>,
        new: &Mappings,
        finding: &Arc<Finding>,
        opts: &RenderOptions,
    ) {
        let old = old.map_or_else(Vec::new, |m| routed(m, finding, opts));
        let mut new = routed(new, finding, opts);
        self.findings += 1;
        if old.is_empty() && new.is_empty() {
            self.findings_unrouted += 1;
            return;
        }
        let mut differs = false;
        for before in &old {
            let same_team = new.iter().position(|n| n.rule.team == before.rule.team);
            let Some(after) = same_team.map(|i| new.swap_remove(i)) else {
                self.lost(finding, before);
                differs = true;
                continue;
            };
            self.check_renders(&after);
            if after.rule.name != before.rule.name {
                self.lost(finding, before);
                self.gained(finding, &after);
                differs = true;
                continue;
            }
            let fields = diff::changes(before, &after);
            let rule = self.rule(&after);
            if fields.is_empty() {
                rule.unchanged += 1;
            } else {
                differs = true;
                rule.changed.add(EXAMPLES, || TicketDiff {
                    finding_id: finding.id.clone(),
                    marker: Marker::new(&after.rule.team, &finding.id).to_string(),
                    fields,
                });
            }
        }
        // What is left of the new routes: teams the old set did not route this finding to.
        for after in &new {
            self.check_renders(after);
            self.gained(finding, after);
            differs = true;
        }
        if differs {
            self.findings_changed += 1;
        }
    }
}

/// The routes of `finding` under one set, each with its rendered ticket.
fn routed<'m>(m: &'m Mappings, finding: &Arc<Finding>, opts: &RenderOptions) -> Vec<Routed<'m>> {
    rendered_routes(m, finding, opts)
        .map(|(rule, ticket)| Routed { rule, ticket })
        .collect()
}
