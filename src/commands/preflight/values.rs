//! What a rule can send, known without a finding: the fields it sets, and the values its
//! templates can render to.
//!
//! A project, issue type, priority or assignment group is usually a literal or a function of the
//! severity (`{{ {'CRITICAL': 'Highest'}[finding.severity] | default('Medium') }}`). Such a
//! template is rendered once per severity the rule can give a finding (its `severity_override`
//! decides which), and every value is checked. A template that reads anything else (the account,
//! a tag, the time) has values preflight cannot list; it says so instead of guessing.

use std::collections::BTreeSet;

use minijinja::context;

use crate::finding::Severity;
use crate::mapping::spec::{JiraSpec, Rule, ServiceNowSpec};
use crate::mapping::template::{Template, TemplateEngine};
use crate::render::{JIRA_RESERVED_FIELDS, SERVICENOW_RESERVED_FIELDS};

/// What a template may read and still have its values listed: the severity and the rule's own
/// names.
const LISTABLE: [&str; 3] = ["finding.severity", "team", "rule"];

/// The values one template can render to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Values {
    /// Every non-empty value, trimmed (an empty one leaves the field out). Empty when the
    /// template renders empty, or fails, for every severity.
    Listed(BTreeSet<String>),
    /// The template reads finding data (or the time): these variables.
    Open(Vec<String>),
}

impl Values {
    /// Why the values cannot be listed, for a skipped check's detail.
    pub fn why_open(key: &str, reads: &[String]) -> String {
        format!(
            "{key} depends on {} (preflight lists values that depend only on {})",
            reads.join(", "),
            LISTABLE.join(", ")
        )
    }
}

/// The values of one rule's templates.
pub struct RuleValues<'a> {
    engine: &'a TemplateEngine,
    rule: &'a Rule,
    /// The severities the ticket templates can see: the override's outputs, or all of them.
    severities: Vec<Severity>,
}

impl<'a> RuleValues<'a> {
    pub fn new(engine: &'a TemplateEngine, rule: &'a Rule) -> RuleValues<'a> {
        let mut values = RuleValues {
            engine,
            rule,
            severities: Severity::ALL.to_vec(),
        };
        if let Some(over) = &rule.severity_override
            && let Values::Listed(labels) = values.of(over)
        {
            // An override that renders no valid label fails the finding at render time, which
            // `check` and these checks cannot see; every severity stays possible then.
            let listed: Vec<Severity> = Severity::ALL
                .into_iter()
                .filter(|s| labels.iter().any(|l| Severity::from_label(l) == Some(*s)))
                .collect();
            if !listed.is_empty() {
                values.severities = listed;
            }
        }
        values
    }

    /// Every value `template` can render to for this rule.
    pub fn of(&self, template: &Template) -> Values {
        let reads = match self.engine.variables(template) {
            Some(reads) => reads,
            None => return Values::Open(vec!["a template preflight cannot find".to_owned()]),
        };
        let open: Vec<String> = reads
            .into_iter()
            .filter(|v| !LISTABLE.contains(&v.as_str()))
            .collect();
        if !open.is_empty() {
            return Values::Open(open);
        }
        let mut listed = BTreeSet::new();
        for severity in &self.severities {
            let ctx = context! {
                finding => context! { severity => severity.as_str() },
                team => &*self.rule.team,
                rule => &*self.rule.name,
            };
            // A severity the template fails on is one the rule's criteria presumably exclude;
            // the finding-time error is `render`'s to report, not a value to check.
            if let Ok(value) = self.engine.render(template, &ctx) {
                let value = value.trim();
                if !value.is_empty() {
                    listed.insert(value.to_owned());
                }
            }
        }
        Values::Listed(listed)
    }
}

/// The `fields` keys a Jira create from this rule can carry: the ones the renderer always sets
/// (`project`, `issuetype`, `summary`, `labels` — the bridge labels every ticket), the optional
/// ones the rule has, and its own `fields` (a field whose template renders empty for some
/// findings still counts: others send it).
pub fn jira_fields(spec: &JiraSpec) -> BTreeSet<String> {
    let mut fields: BTreeSet<String> = ["project", "issuetype", "summary", "labels"]
        .map(str::to_owned)
        .into();
    if spec.description.is_some() {
        fields.insert("description".to_owned());
    }
    if spec.priority.is_some() {
        fields.insert("priority".to_owned());
    }
    fields.extend(
        spec.fields
            .keys()
            .filter(|k| !JIRA_RESERVED_FIELDS.contains(&k.as_str()))
            .cloned(),
    );
    fields
}

/// The columns a ServiceNow create from this rule can set: the ones the renderer always sets
/// (`short_description`, and `correlation_id` + `correlation_display`, which carry the marker),
/// the optional ones the rule has, and its own `fields`.
pub fn servicenow_fields(spec: &ServiceNowSpec) -> BTreeSet<String> {
    let mut fields: BTreeSet<String> =
        ["short_description", "correlation_id", "correlation_display"]
            .map(str::to_owned)
            .into();
    for (name, set) in [
        ("description", spec.description.is_some()),
        ("urgency", spec.urgency.is_some()),
        ("impact", spec.impact.is_some()),
        ("assignment_group", spec.assignment_group.is_some()),
    ] {
        if set {
            fields.insert(name.to_owned());
        }
    }
    fields.extend(
        spec.fields
            .keys()
            .filter(|k| !SERVICENOW_RESERVED_FIELDS.contains(&k.as_str()))
            .cloned(),
    );
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::spec::TicketSpec;

    fn load(toml: &str) -> crate::mapping::Mappings {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.toml"), toml).unwrap();
        crate::mapping::load(dir.path()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn jira(m: &crate::mapping::Mappings) -> &JiraSpec {
        match &m.rules[0].ticket {
            TicketSpec::Jira(spec) => spec,
            TicketSpec::ServiceNow(_) => panic!("a Jira rule"),
        }
    }

    fn listed(items: &[&str]) -> Values {
        Values::Listed(items.iter().map(|s| (*s).to_owned()).collect())
    }

    const RULE: &str = r#"
team = "t"
[[rules]]
name = "r"
order = 1
[rules.jira]
project = "{{ 'SEC' if finding.severity == 'CRITICAL' else 'OPS' }}"
issue_type = "{{ finding.account_id }}"
summary = "s"
priority = "{{ {'CRITICAL': 'Highest', 'HIGH': 'High'}[finding.severity] }}"
fields = { customfield_10042 = "{{ finding.account_id }}", duedate = "{{ now() | date }}" }
"#;

    #[test]
    fn templates_of_the_severity_are_listed_for_every_severity() {
        let m = load(RULE);
        let values = RuleValues::new(&m.engine, &m.rules[0]);
        let spec = jira(&m);
        assert_eq!(values.of(&spec.project), listed(&["OPS", "SEC"]));
        // Severities the template fails on (no default) are left out, not reported.
        assert_eq!(
            values.of(spec.priority.as_ref().unwrap()),
            listed(&["High", "Highest"])
        );
        assert_eq!(
            values.of(&spec.issue_type),
            Values::Open(vec!["finding.account_id".to_owned()])
        );
    }

    #[test]
    fn an_override_narrows_the_severities_the_templates_see() {
        let m = load(&RULE.replace(
            "order = 1\n",
            "order = 1\nseverity_override = \"CRITICAL\"\n",
        ));
        let values = RuleValues::new(&m.engine, &m.rules[0]);
        assert_eq!(values.of(&jira(&m).project), listed(&["SEC"]));
    }

    #[test]
    fn a_jira_rule_always_sets_labels_and_its_own_fields() {
        let m = load(RULE);
        let fields: Vec<String> = jira_fields(jira(&m)).into_iter().collect();
        assert_eq!(
            fields,
            [
                "customfield_10042",
                "duedate",
                "issuetype",
                "labels",
                "priority",
                "project",
                "summary"
            ]
        );
    }

    #[test]
    fn a_servicenow_rule_always_sets_the_marker_columns() {
        let m = load(
            r#"
team = "t"
[[rules]]
name = "r"
order = 1
[rules.servicenow]
short_description = "s"
assignment_group = "Cloud Platform"
fields = { u_aws_account = "{{ finding.account_id }}" }
"#,
        );
        let TicketSpec::ServiceNow(spec) = &m.rules[0].ticket else {
            panic!("a ServiceNow rule")
        };
        let fields: Vec<String> = servicenow_fields(spec).into_iter().collect();
        assert_eq!(
            fields,
            [
                "assignment_group",
                "correlation_display",
                "correlation_id",
                "short_description",
                "u_aws_account"
            ]
        );
    }
}
