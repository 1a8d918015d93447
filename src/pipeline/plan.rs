//! Glue between the mapping files and the lifecycle: routing plus rendering as a [`Planner`], over
//! a mapping set that can be swapped at run time (SIGHUP reload) without dropping work — each
//! finding is planned against one consistent snapshot.

use std::sync::{Arc, RwLock};

use crate::finding::Finding;
use crate::mapping::Mappings;
use crate::mapping::context::Application;
use crate::mapping::group::GroupView;
use crate::mapping::spec::Rule;
use crate::pipeline::lifecycle::{
    GroupTicket, PlanError, PlanFailure, PlannedTicket, Planner, RuleOptions, SeverityRefresh,
};
use crate::render::{RenderOptions, RenderedTicket, render_group, render_route};

/// The live mapping set. Readers take a cheap snapshot (`Arc` clone); a reload swaps it whole.
#[derive(Debug, Clone)]
pub struct MappingsHandle(Arc<RwLock<Arc<Mappings>>>);

impl MappingsHandle {
    pub fn new(mappings: Mappings) -> MappingsHandle {
        MappingsHandle(Arc::new(RwLock::new(Arc::new(mappings))))
    }

    /// The mapping set in force now.
    pub fn current(&self) -> Arc<Mappings> {
        match self.0.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the mapping set; work already planned keeps the snapshot it started with.
    pub fn replace(&self, mappings: Mappings) {
        let new = Arc::new(mappings);
        match self.0.write() {
            Ok(mut guard) => *guard = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}

/// [`Planner`] over the mapping files and the payload renderer.
#[derive(Debug, Clone)]
pub struct MappingPlanner {
    mappings: MappingsHandle,
    options: RenderOptions,
}

impl MappingPlanner {
    pub fn new(mappings: MappingsHandle, options: RenderOptions) -> MappingPlanner {
        MappingPlanner { mappings, options }
    }

    pub fn mappings(&self) -> &MappingsHandle {
        &self.mappings
    }
}

fn options_of(rule: &Rule) -> RuleOptions {
    RuleOptions {
        on_resolved: rule.on_resolved,
        on_recurrence: rule.on_recurrence,
        notify_on_create: rule.notify_on_create,
        enrich_detective: rule.enrich_detective,
    }
}

fn render(
    mappings: &Mappings,
    rule: &Rule,
    finding: &Finding,
    application: Option<&Application>,
    options: &RenderOptions,
) -> Result<RenderedTicket, PlanError> {
    render_route(&mappings.engine, rule, finding, application, options)
        .map_err(|e| PlanError::new(e.to_string()))
}

impl Planner for MappingPlanner {
    fn plan(&self, finding: &Finding) -> Vec<Result<PlannedTicket, PlanFailure>> {
        let mappings = self.mappings.current();
        // The same application routing used, so the templates judge what routing judged.
        let application = mappings.application_for(finding);
        mappings
            .route(finding)
            .into_iter()
            .map(|rule| {
                let rendered = render(&mappings, rule, finding, application, &self.options)
                    .map_err(|error| PlanFailure {
                        team: Arc::clone(&rule.team),
                        rule: Arc::clone(&rule.name),
                        error,
                    })?;
                Ok(PlannedTicket {
                    team: Arc::clone(&rule.team),
                    rule: Arc::clone(&rule.name),
                    target: rule.target.clone(),
                    severity_fields: rendered.severity_fields(),
                    marker: rendered.marker,
                    payload: rendered.payload,
                    table: rendered.table,
                    severity: rendered.severity,
                    severity_note: rendered.severity_note,
                    options: options_of(rule),
                    sla: rendered.sla,
                    group: rendered.group.map(|g| g.key),
                })
            })
            .collect()
    }

    fn teams(&self) -> Vec<Arc<str>> {
        self.mappings
            .current()
            .teams
            .iter()
            .map(|t| Arc::clone(&t.name))
            .collect()
    }

    fn rule_options(&self, team: &str, rule: &str) -> Option<RuleOptions> {
        self.mappings.current().rule(team, rule).map(options_of)
    }

    fn severity_refresh(
        &self,
        team: &str,
        rule: &str,
        finding: &Finding,
    ) -> Result<Option<SeverityRefresh>, PlanError> {
        let mappings = self.mappings.current();
        let Some(rule) = mappings.rule(team, rule) else {
            return Ok(None);
        };
        let application = mappings.application_for(finding);
        if !rule
            .criteria
            .matches(finding, application, mappings.engine.now())
        {
            return Ok(None);
        }
        let rendered = render(&mappings, rule, finding, application, &self.options)?;
        Ok(Some(SeverityRefresh {
            severity: rendered.severity,
            fields: rendered.severity_fields(),
            sla: rendered.sla,
        }))
    }

    fn render_group(
        &self,
        team: &str,
        rule: &str,
        finding: &Finding,
        view: &GroupView,
    ) -> Result<GroupTicket, PlanError> {
        let mappings = self.mappings.current();
        let Some(rule) = mappings.rule(team, rule) else {
            return Err(PlanError::new(format!(
                "rule {team}/{rule} no longer exists"
            )));
        };
        let application = mappings.application_for(finding);
        let rendered = render_group(
            &mappings.engine,
            rule,
            &Arc::new(finding.clone()),
            application,
            view,
            &self.options,
        )
        .map_err(|e| PlanError::new(e.to_string()))?;
        Ok(GroupTicket {
            payload: rendered.ticket.payload,
            table: rendered.ticket.table,
            fields: rendered.fields,
            severity: rendered.ticket.severity,
            sla: rendered.ticket.sla,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::decode;

    fn plans_of(p: &MappingPlanner, f: &Finding) -> Vec<PlannedTicket> {
        p.plan(f)
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("every route renders")
    }

    fn planner() -> MappingPlanner {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/mappings");
        let mappings =
            crate::mapping::load(std::path::Path::new(dir)).expect("shipped mappings load");
        MappingPlanner::new(MappingsHandle::new(mappings), RenderOptions::default())
    }

    fn fixture(name: &str) -> Finding {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).expect("fixture exists");
        decode(&bytes).expect("fixture decodes").remove(0)
    }

    #[test]
    fn plans_carry_marker_payload_and_rule_options() {
        let p = planner();
        let f = fixture("guardduty-eventbridge.json");
        let plans = plans_of(&p, &f);
        assert!(
            !plans.is_empty(),
            "the GuardDuty fixture is routed by the shipped mappings"
        );
        for plan in &plans {
            assert_eq!(plan.marker, crate::marker::Marker::new(&plan.team, &f.id));
            assert_eq!(
                p.rule_options(&plan.team, &plan.rule),
                Some(plan.options),
                "rule options are looked up by (team, rule)"
            );
            assert!(plan.payload.is_object());
        }
        assert!(p.teams().len() >= 3);
        assert_eq!(p.rule_options("payments", "no-such-rule"), None);
    }

    #[test]
    fn severity_refresh_only_while_the_rule_still_matches() {
        let p = planner();
        let f = fixture("guardduty-eventbridge.json");
        let plan = plans_of(&p, &f).remove(0);
        let refresh = p.severity_refresh(&plan.team, &plan.rule, &f).unwrap();
        assert_eq!(refresh.map(|r| r.severity), Some(plan.severity));
        assert_eq!(p.severity_refresh(&plan.team, "gone", &f).unwrap(), None);
    }

    #[test]
    fn replace_swaps_the_mapping_set_for_new_plans() {
        let p = planner();
        let f = fixture("guardduty-eventbridge.json");
        assert!(!plans_of(&p, &f).is_empty());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("quiet.toml"),
            "team = \"quiet\"\n[[rules]]\nname = \"nothing\"\norder = 1\n[rules.criteria]\nTitle = [{ Value = \"never-matches\", Comparison = \"EQUALS\" }]\n[rules.jira]\nproject = \"Q\"\nissue_type = \"Task\"\nsummary = \"x\"\n",
        )
        .unwrap();
        p.mappings()
            .replace(crate::mapping::load(dir.path()).unwrap());
        assert!(plans_of(&p, &f).is_empty());
        assert_eq!(p.teams(), vec![Arc::<str>::from("quiet")]);
    }
}
