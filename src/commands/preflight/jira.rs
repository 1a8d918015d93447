//! The Jira checks of a rule: its project exists and the account may browse and create in it, its
//! issue type is on the project's create screen, the screen's required fields are set by the
//! rule, every field the rule sets is on the screen (the labels the bridge always sets among
//! them), and every priority the rule can produce is offered.
//!
//! Every answer is kept per project and per (project, issue type), so rules that share a project
//! cost its calls once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::calls::{JIRA, failed};
use super::report::{Check, Row};
use super::values::{RuleValues, Values, jira_fields};
use crate::mapping::spec::{JiraSpec, Rule};
use crate::mapping::template::Template;
use crate::marker::BRIDGE_LABEL;
use crate::ticket::TicketError;
use crate::ticket::jira::JiraClient;
use crate::ticket::jira::meta::{FieldMeta, IssueTypeMeta, ProjectMeta};

const BROWSE: &str = "BROWSE_PROJECTS";
const CREATE: &str = "CREATE_ISSUES";
/// `project` and `issuetype` pick the screen itself: Jira takes them whether it lists them or not.
const SCREEN_ITSELF: [&str; 2] = ["project", "issuetype"];

type Answer<T> = Result<T, TicketError>;

/// The rule being checked, with what its templates can produce.
pub struct JiraRule<'r> {
    pub values: &'r RuleValues<'r>,
    pub rule: &'r Rule,
    pub spec: &'r JiraSpec,
}

/// One Jira connection's answers so far.
pub struct JiraChecks<'c> {
    client: &'c JiraClient,
    system: String,
    projects: HashMap<String, Answer<Option<ProjectMeta>>>,
    permissions: HashMap<String, Answer<BTreeMap<String, Option<bool>>>>,
    issue_types: HashMap<String, Answer<Vec<IssueTypeMeta>>>,
    fields: HashMap<(String, String), Answer<Vec<FieldMeta>>>,
    priorities: Option<Answer<Vec<String>>>,
}

impl<'c> JiraChecks<'c> {
    pub fn new(client: &'c JiraClient, system: &str) -> JiraChecks<'c> {
        JiraChecks {
            client,
            system: system.to_owned(),
            projects: HashMap::new(),
            permissions: HashMap::new(),
            issue_types: HashMap::new(),
            fields: HashMap::new(),
            priorities: None,
        }
    }

    fn row(&self, rule: &Rule, check: Check, subject: impl Into<String>) -> Row {
        Row::of_rule(rule, &self.system, check, subject)
    }

    /// Every check of one rule, appended to `out`.
    pub async fn rule(&mut self, r: &JiraRule<'_>, out: &mut Vec<Row>) {
        let JiraRule { values, rule, spec } = *r;
        let projects = match values.of(&spec.project) {
            Values::Listed(p) if !p.is_empty() => p,
            Values::Listed(_) => {
                out.push(
                    self.row(rule, Check::JiraProject, "?")
                        .skip("rules.jira.project renders empty or fails for every severity"),
                );
                return;
            }
            Values::Open(reads) => {
                out.push(
                    self.row(rule, Check::JiraProject, spec.project.source())
                        .skip(Values::why_open("rules.jira.project", &reads)),
                );
                return;
            }
        };
        let issue_types = match values.of(&spec.issue_type) {
            Values::Listed(t) if !t.is_empty() => Some(t),
            Values::Listed(_) => {
                out.push(
                    self.row(rule, Check::JiraIssueType, "?")
                        .skip("rules.jira.issue_type renders empty or fails for every severity"),
                );
                None
            }
            Values::Open(reads) => {
                out.push(
                    self.row(rule, Check::JiraIssueType, spec.issue_type.source())
                        .skip(Values::why_open("rules.jira.issue_type", &reads)),
                );
                None
            }
        };
        for project in &projects {
            if !self.project(rule, project, out).await {
                continue;
            }
            let may_create = self.permissions(rule, project, out).await;
            for issue_type in issue_types.iter().flatten() {
                self.issue_type(r, project, issue_type, may_create, out)
                    .await;
            }
        }
    }

    /// Whether `project` exists (the checks under it need it).
    async fn project(&mut self, rule: &Rule, project: &str, out: &mut Vec<Row>) -> bool {
        if !self.projects.contains_key(project) {
            let answer = self.client.project(project).await;
            self.projects.insert(project.to_owned(), answer);
        }
        let row = self.row(rule, Check::JiraProject, project);
        let (row, exists) = match &self.projects[project] {
            Ok(Some(meta)) => (row.ok(format!("id {}", meta.id)), true),
            Ok(None) => (
                row.fail(
                    format!("{} answers 404: no project {project} the account can see", JIRA.system),
                    format!(
                        "correct rules.jira.project in {}:{}, or give the account BROWSE_PROJECTS in {project}",
                        rule.file.display(),
                        rule.line
                    ),
                ),
                false,
            ),
            Err(e) => {
                let (detail, fix) = failed(
                    &JIRA,
                    e,
                    &format!("give the account BROWSE_PROJECTS in {project}"),
                );
                (row.fail(detail, fix), false)
            }
        };
        out.push(row);
        exists
    }

    /// The account's BROWSE_PROJECTS and CREATE_ISSUES in `project`; whether it may create there
    /// (`None` when Jira did not say).
    async fn permissions(
        &mut self,
        rule: &Rule,
        project: &str,
        out: &mut Vec<Row>,
    ) -> Option<bool> {
        if !self.permissions.contains_key(project) {
            let answer = self.client.my_permissions(project, &[BROWSE, CREATE]).await;
            self.permissions.insert(project.to_owned(), answer);
        }
        let row = self.row(rule, Check::JiraPermissions, project);
        match &self.permissions[project] {
            Ok(granted) => {
                let lacking: Vec<&str> = granted
                    .iter()
                    .filter(|(_, have)| **have == Some(false))
                    .map(|(p, _)| p.as_str())
                    .collect();
                let unsaid: Vec<&str> = granted
                    .iter()
                    .filter(|(_, have)| have.is_none())
                    .map(|(p, _)| p.as_str())
                    .collect();
                if !lacking.is_empty() {
                    out.push(row.fail(
                        format!("the account lacks {}", lacking.join(" and ")),
                        format!(
                            "give the account {} on project {project} (its permission scheme)",
                            lacking.join(" and ")
                        ),
                    ));
                } else if !unsaid.is_empty() {
                    out.push(row.fail(
                        format!("{} did not report {}", JIRA.system, unsaid.join(" and ")),
                        "use a Jira that answers /mypermissions with permission keys (Cloud, Data Center 8.4+)",
                    ));
                } else {
                    out.push(row.ok(format!("{BROWSE}, {CREATE}")));
                }
                granted.get(CREATE).copied().flatten()
            }
            Err(e) => {
                let (detail, fix) = failed(&JIRA, e, "give the account BROWSE_PROJECTS");
                out.push(row.fail(detail, fix));
                None
            }
        }
    }

    /// The issue type and everything that depends on its create screen.
    async fn issue_type(
        &mut self,
        r: &JiraRule<'_>,
        project: &str,
        issue_type: &str,
        may_create: Option<bool>,
        out: &mut Vec<Row>,
    ) {
        let rule = r.rule;
        let subject = format!("{project}/{issue_type}");
        let row = self.row(rule, Check::JiraIssueType, &subject);
        if may_create == Some(false) {
            out.push(row.skip(format!(
                "Jira shows the create screen only to accounts with {CREATE}"
            )));
            return;
        }
        if !self.issue_types.contains_key(project) {
            let answer = self.client.create_issue_types(project).await;
            self.issue_types.insert(project.to_owned(), answer);
        }
        let found = match &self.issue_types[project] {
            // The project exists (checked above): only the endpoint can be missing.
            Err(e) if e.status() == Some(404) => {
                out.push(row.fail(
                    e.to_string(),
                    "this Jira has no createmeta/{project}/issuetypes (Data Center before 8.4): upgrade it, or check the create screen by hand",
                ));
                return;
            }
            Err(e) => {
                let (detail, fix) = failed(
                    &JIRA,
                    e,
                    &format!("give the account {CREATE} on project {project}"),
                );
                out.push(row.fail(detail, fix));
                return;
            }
            Ok(types) => match types.iter().find(|t| t.name == issue_type) {
                Some(found) => found.clone(),
                None => {
                    let offered: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
                    let fix = match types
                        .iter()
                        .find(|t| t.name.eq_ignore_ascii_case(issue_type))
                    {
                        Some(t) => format!(
                            "write rules.jira.issue_type as {:?} in {}:{}",
                            t.name,
                            rule.file.display(),
                            rule.line
                        ),
                        None => format!(
                            "add issue type {issue_type:?} to project {project}'s issue type scheme, or set rules.jira.issue_type in {}:{} to one it offers",
                            rule.file.display(),
                            rule.line
                        ),
                    };
                    out.push(row.fail(
                        format!(
                            "project {project} offers {}",
                            if offered.is_empty() {
                                "no issue type to the account".to_owned()
                            } else {
                                offered.join(", ")
                            }
                        ),
                        fix,
                    ));
                    return;
                }
            },
        };
        out.push(row.ok(format!("id {}", found.id)));

        let key = (project.to_owned(), found.id.clone());
        if !self.fields.contains_key(&key) {
            let answer = self.client.create_fields(project, &found.id).await;
            self.fields.insert(key.clone(), answer);
        }
        let screen = match &self.fields[&key] {
            Ok(screen) => screen.clone(),
            Err(e) => {
                let (detail, fix) = failed(
                    &JIRA,
                    e,
                    &format!("give the account {CREATE} on project {project}"),
                );
                out.push(
                    self.row(rule, Check::JiraRequiredFields, &subject)
                        .fail(detail, fix),
                );
                return;
            }
        };
        self.screen_checks(r, &subject, &screen, out).await;
    }

    /// What the create screen `subject` (`PROJECT/Type`) needs, against what the rule sets.
    async fn screen_checks(
        &mut self,
        r: &JiraRule<'_>,
        subject: &str,
        screen: &[FieldMeta],
        out: &mut Vec<Row>,
    ) {
        let JiraRule { rule, spec, .. } = *r;
        let at = format!("{}:{}", rule.file.display(), rule.line);
        let sets = jira_fields(spec);
        let on_screen: BTreeSet<&str> = screen.iter().map(|f| f.id.as_str()).collect();

        let unset: Vec<&FieldMeta> = screen
            .iter()
            .filter(|f| f.must_be_set() && !sets.contains(&f.id))
            .collect();
        let row = self.row(rule, Check::JiraRequiredFields, subject);
        out.push(if unset.is_empty() {
            row.ok(format!(
                "{} required, all set",
                screen.iter().filter(|f| f.must_be_set()).count()
            ))
        } else {
            let named: Vec<String> = unset.iter().map(|f| described(f)).collect();
            let keys: Vec<&str> = unset.iter().map(|f| f.id.as_str()).collect();
            row.fail(
                format!(
                    "the create screen requires {}, which the rule does not set",
                    named.join(", ")
                ),
                format!(
                    "add {} to the rule's [rules.jira.fields] in {at} (or give the field a default in Jira)",
                    keys.join(", ")
                ),
            )
        });

        let off: Vec<&str> = sets
            .iter()
            .map(String::as_str)
            .filter(|f| *f != "labels" && !SCREEN_ITSELF.contains(f) && !on_screen.contains(f))
            .collect();
        let row = self.row(rule, Check::JiraFieldsOnScreen, subject);
        out.push(if off.is_empty() {
            row.ok(format!("{} field(s) the rule sets", sets.len()))
        } else {
            row.fail(
                format!("{} not on the create screen", off.join(", ")),
                format!(
                    "add field {} to the create screen of {subject}, or remove it from the rule in {at}",
                    off.join(", ")
                ),
            )
        });

        let row = self.row(rule, Check::JiraLabels, subject);
        out.push(if on_screen.contains("labels") {
            row.ok(format!("{BRIDGE_LABEL} and the marker can be set"))
        } else {
            row.fail(
                "the Labels field is not on the create screen",
                format!(
                    "add the Labels field to the create screen of {subject}: the bridge labels every ticket {BRIDGE_LABEL} and with its marker, and finds its tickets by them"
                ),
            )
        });

        if let Some(priority) = &spec.priority {
            let row = self.priority(r, priority, subject, screen).await;
            out.push(row);
        }
    }

    /// Every name the rule's priority template can produce, against the screen's priority
    /// field (its `allowedValues`), else the site's priorities.
    async fn priority(
        &mut self,
        r: &JiraRule<'_>,
        template: &Template,
        subject: &str,
        screen: &[FieldMeta],
    ) -> Row {
        let JiraRule { values, rule, .. } = *r;
        let row = self.row(rule, Check::JiraPriority, subject);
        let names = match values.of(template) {
            Values::Listed(names) if names.is_empty() => {
                return row.ok("renders empty for every severity: Jira's default priority");
            }
            Values::Listed(names) => names,
            Values::Open(reads) => {
                return row.skip(Values::why_open("rules.jira.priority", &reads));
            }
        };
        let listed = screen
            .iter()
            .find(|f| f.id == "priority")
            .and_then(|f| f.allowed_names.clone())
            .filter(|names| !names.is_empty());
        let offered = match listed {
            Some(names) => names,
            None => {
                if self.priorities.is_none() {
                    self.priorities = Some(self.client.priorities().await);
                }
                match self.priorities.as_ref() {
                    Some(Ok(names)) => names.clone(),
                    Some(Err(e)) => {
                        let (detail, fix) = failed(&JIRA, e, "give the account access to Jira");
                        return row.fail(detail, fix);
                    }
                    None => Vec::new(),
                }
            }
        };
        let unknown: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !offered.iter().any(|o| o == n))
            .collect();
        if unknown.is_empty() {
            row.ok(names.into_iter().collect::<Vec<_>>().join(", "))
        } else {
            row.fail(
                format!(
                    "rules.jira.priority can produce {}, which {subject} does not offer (it offers {})",
                    unknown.join(", "),
                    offered.join(", ")
                ),
                format!(
                    "map every severity to one of {} in rules.jira.priority ({}:{})",
                    offered.join(", "),
                    rule.file.display(),
                    rule.line
                ),
            )
        }
    }
}

/// `customfield_10099 (Team)`, or the id alone when Jira gives no other name.
fn described(field: &FieldMeta) -> String {
    if field.name == field.id {
        field.id.clone()
    } else {
        format!("{} ({})", field.id, field.name)
    }
}
