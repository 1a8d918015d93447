//! How the simulated Jira projects and ServiceNow instance are set up, as their administrators
//! would have configured them: the issue types, create screens and permissions of each Jira
//! project, the columns of the ServiceNow tables and the groups that exist. This is what
//! `findings-bridge preflight` reads (createmeta, mypermissions, priorities, `sys_db_object`,
//! `sys_dictionary`, `sys_user_group`), and what a Jira create must then respect.
//!
//! Out of the box every project offers Bug, Task, Story and Epic, each create screen holds the
//! system fields the bridge may set plus `customfield_10000` … `customfield_10099` (more than two
//! pages of createmeta), only project, issue type and summary are required (reporter and priority
//! too, with a default), and the account holds every permission. ServiceNow knows the task
//! hierarchy (`incident`, `sn_si_incident`, `problem`, … extend `task`) with their standard
//! columns; every other well-formed table name extends `task`, as the Table API accepts any. The
//! defaults add what the shipped mapping files use (`u_aws_account` on `incident` and
//! `sn_si_incident`, the groups `Cloud Platform` and `Payments Security`), so `preflight` passes
//! on them.
//!
//! Tests change it through [`crate::SimConfig::setup`], `SharedState::set_setup` or
//! `POST /_sim/setup` (the whole set is replaced; a field left out goes back to its default).
//! Keys name a project (`"PAY"`, every issue type) or a create screen (`"PAY/Bug"`), compared
//! without regard to case for the project.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::ServiceNowRecord;

/// The issue types of every project, with their ids (the same as `GET /project/{key}` lists).
pub const ISSUE_TYPES: [(&str, &str); 4] = [
    ("10001", "Bug"),
    ("10002", "Task"),
    ("10003", "Story"),
    ("10004", "Epic"),
];

/// The project permissions the simulator knows, with their display names.
pub const PERMISSIONS: [(&str, &str); 4] = [
    ("BROWSE_PROJECTS", "Browse Projects"),
    ("CREATE_ISSUES", "Create Issues"),
    ("EDIT_ISSUES", "Edit Issues"),
    ("TRANSITION_ISSUES", "Transition Issues"),
];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Setup {
    /// Fields a create screen requires (without a default), by project or screen: a field not
    /// otherwise on the screen is added to it.
    pub jira_required_fields: BTreeMap<String, Vec<String>>,
    /// Fields taken off a create screen, by project or screen (`labels`, `priority`, …).
    pub jira_hidden_fields: BTreeMap<String, Vec<String>>,
    /// Issue types a project does not have: `"PAY/Story"`.
    pub jira_missing_issue_types: Vec<String>,
    /// Project permissions the account lacks, by project: `{"PAY": ["CREATE_ISSUES"]}`.
    pub jira_missing_permissions: BTreeMap<String, Vec<String>>,
    /// Columns added to ServiceNow tables (`u_…` fields): `{"incident": ["u_aws_account"]}`.
    pub servicenow_columns: BTreeMap<String, Vec<String>>,
    /// The names of the groups (`sys_user_group`) that exist.
    pub servicenow_groups: Vec<String>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            jira_required_fields: BTreeMap::new(),
            jira_hidden_fields: BTreeMap::new(),
            jira_missing_issue_types: Vec::new(),
            jira_missing_permissions: BTreeMap::new(),
            servicenow_columns: BTreeMap::from([
                ("incident".to_owned(), vec!["u_aws_account".to_owned()]),
                (
                    "sn_si_incident".to_owned(),
                    vec!["u_aws_account".to_owned()],
                ),
            ]),
            servicenow_groups: vec!["Cloud Platform".to_owned(), "Payments Security".to_owned()],
        }
    }
}

/// One field of a simulated create screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScreenField {
    pub id: String,
    pub name: String,
    pub required: bool,
    pub has_default: bool,
    /// `schema.type` as Jira reports it.
    pub kind: &'static str,
}

/// The system fields of every create screen: (id, name, required, has a default, type).
const SYSTEM_FIELDS: [(&str, &str, bool, bool, &str); 16] = [
    ("project", "Project", true, false, "project"),
    ("issuetype", "Issue Type", true, false, "issuetype"),
    ("summary", "Summary", true, false, "string"),
    ("reporter", "Reporter", true, true, "user"),
    ("priority", "Priority", false, true, "priority"),
    ("description", "Description", false, false, "string"),
    ("labels", "Labels", false, false, "array"),
    ("components", "Components", false, false, "array"),
    ("assignee", "Assignee", false, false, "user"),
    ("duedate", "Due date", false, false, "date"),
    ("environment", "Environment", false, false, "string"),
    ("fixVersions", "Fix versions", false, false, "array"),
    ("versions", "Affects versions", false, false, "array"),
    ("security", "Security Level", false, false, "securitylevel"),
    ("parent", "Parent", false, false, "issuelink"),
    (
        "timetracking",
        "Time tracking",
        false,
        false,
        "timetracking",
    ),
];

/// `customfield_10000` … `customfield_10099`.
const CUSTOM_FIELDS: std::ops::RangeInclusive<u32> = 10_000..=10_099;

impl Setup {
    /// Rejects settings that name nothing.
    pub fn validate(&self) -> Result<(), String> {
        let keys = self
            .jira_required_fields
            .keys()
            .chain(self.jira_hidden_fields.keys())
            .chain(self.jira_missing_permissions.keys())
            .chain(&self.jira_missing_issue_types);
        for key in keys {
            if key.trim().is_empty() || key.split('/').any(|part| part.trim().is_empty()) {
                return Err(format!(
                    "{key:?} is not a project (PAY) or a create screen (PAY/Bug)"
                ));
            }
        }
        if let Some(bad) = self
            .jira_missing_issue_types
            .iter()
            .find(|k| !k.contains('/'))
        {
            return Err(format!(
                "jira_missing_issue_types takes PROJECT/IssueType, not {bad:?}"
            ));
        }
        if self.servicenow_groups.iter().any(|g| g.trim().is_empty()) {
            return Err("servicenow_groups must not contain an empty name".to_owned());
        }
        Ok(())
    }

    /// The issue types `project` offers.
    pub fn issue_types(&self, project: &str) -> Vec<(&'static str, &'static str)> {
        ISSUE_TYPES
            .into_iter()
            .filter(|(_, name)| {
                !self
                    .jira_missing_issue_types
                    .iter()
                    .any(|k| names_screen(k, project, name))
            })
            .collect()
    }

    /// The entries of `map` that apply to the screen of (`project`, `issue_type`).
    fn for_screen(
        map: &BTreeMap<String, Vec<String>>,
        project: &str,
        issue_type: &str,
    ) -> Vec<String> {
        map.iter()
            .filter(|(k, _)| {
                names_screen(k, project, issue_type) || k.eq_ignore_ascii_case(project)
            })
            .flat_map(|(_, fields)| fields.iter().cloned())
            .collect()
    }

    /// The fields the set-up took off the screen of (`project`, `issue_type`).
    fn hidden(&self, project: &str, issue_type: &str) -> Vec<String> {
        Setup::for_screen(&self.jira_hidden_fields, project, issue_type)
    }

    /// The create screen of (`project`, issue type `name`), in the order createmeta lists it.
    pub fn screen(&self, project: &str, issue_type: &str) -> Vec<ScreenField> {
        let required = Setup::for_screen(&self.jira_required_fields, project, issue_type);
        let hidden = self.hidden(project, issue_type);
        let mut fields: Vec<ScreenField> = SYSTEM_FIELDS
            .iter()
            .map(|(id, name, required, has_default, kind)| ScreenField {
                id: (*id).to_owned(),
                name: (*name).to_owned(),
                required: *required,
                has_default: *has_default,
                kind,
            })
            .chain(CUSTOM_FIELDS.map(|n| ScreenField {
                id: format!("customfield_{n}"),
                name: format!("Custom field {n}"),
                required: false,
                has_default: false,
                kind: "string",
            }))
            .collect();
        for id in &required {
            match fields.iter_mut().find(|f| &f.id == id) {
                Some(field) => {
                    field.required = true;
                    field.has_default = false;
                }
                None => fields.push(ScreenField {
                    id: id.clone(),
                    name: id.clone(),
                    required: true,
                    has_default: false,
                    kind: "string",
                }),
            }
        }
        fields.retain(|f| !hidden.contains(&f.id));
        fields
    }

    /// Whether the account holds `permission` in `project`.
    pub fn has_permission(&self, project: &str, permission: &str) -> bool {
        !self.jira_missing_permissions.iter().any(|(k, lacking)| {
            k.eq_ignore_ascii_case(project) && lacking.iter().any(|p| p == permission)
        })
    }

    /// Why a create of `fields` in (`project`, `issue_type`) is refused, as Jira's `errors`
    /// entries; empty when it is not.
    pub fn create_refusal(
        &self,
        project: &str,
        issue_type: &str,
        fields: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<(String, String)> {
        if !self.has_permission(project, "CREATE_ISSUES") {
            return vec![(
                "project".to_owned(),
                "You do not have permission to create issues in this project.".to_owned(),
            )];
        }
        if !self
            .issue_types(project)
            .iter()
            .any(|(_, name)| *name == issue_type)
        {
            return vec![(
                "issuetype".to_owned(),
                "The issue type selected is invalid.".to_owned(),
            )];
        }
        let screen = self.screen(project, issue_type);
        let mut refusals: Vec<(String, String)> = screen
            .iter()
            .filter(|f| f.required && !f.has_default && !fields.contains_key(&f.id))
            .map(|f| (f.id.clone(), format!("{} is required.", f.name)))
            .collect();
        // Only fields the set-up took off the screen: other unknown fields are judged by the
        // create's own validation, as before there was a set-up.
        let hidden = self.hidden(project, issue_type);
        refusals.extend(fields.keys().filter(|k| hidden.contains(k)).map(|k| {
            (
                k.clone(),
                format!(
                    "Field '{k}' cannot be set. It is not on the appropriate screen, or unknown."
                ),
            )
        }));
        refusals
    }
}

/// Whether `key` (`PAY/Bug`) names the screen of `project` and `issue_type`.
fn names_screen(key: &str, project: &str, issue_type: &str) -> bool {
    key.split_once('/')
        .is_some_and(|(p, t)| p.eq_ignore_ascii_case(project) && t == issue_type)
}

/// The tables of the task hierarchy with their own standard columns; `task` extends nothing.
const TABLES: [(&str, Option<&str>, &[&str]); 6] = [
    (
        "task",
        None,
        &[
            "sys_id",
            "sys_created_on",
            "sys_updated_on",
            "number",
            "state",
            "short_description",
            "description",
            "priority",
            "urgency",
            "impact",
            "assignment_group",
            "assigned_to",
            "correlation_id",
            "correlation_display",
            "work_notes",
            "comments",
            "active",
            "opened_at",
            "closed_at",
        ],
    ),
    (
        "incident",
        Some("task"),
        &[
            "caller_id",
            "category",
            "subcategory",
            "close_code",
            "close_notes",
            "incident_state",
            "severity",
            "resolved_at",
        ],
    ),
    (
        "sn_si_incident",
        Some("task"),
        &[
            "category",
            "subcategory",
            "close_code",
            "close_notes",
            "business_criticality",
            "risk_score",
            "affected_user",
        ],
    ),
    ("problem", Some("task"), &["problem_state", "cause_notes"]),
    (
        "change_request",
        Some("task"),
        &["type", "risk", "start_date", "end_date"],
    ),
    ("sc_task", Some("task"), &["request_item"]),
];

/// The `sys_id` the simulator gives a metadata record: stable, 32 hexadecimal characters.
pub fn meta_sys_id(kind: &str, name: &str) -> String {
    let h1 = crate::faults::splitmix64(fold(kind) ^ fold(name));
    let h2 = crate::faults::splitmix64(h1 ^ 0x9e37_79b9_7f4a_7c15);
    format!("{h1:016x}{h2:016x}")
}

fn fold(text: &str) -> u64 {
    text.bytes()
        .fold(0, |h, b| crate::faults::splitmix64(h ^ u64::from(b)))
}

fn record(table: &str, kind: &str, name: &str, fields: &[(&str, String)]) -> ServiceNowRecord {
    ServiceNowRecord {
        table: table.to_owned(),
        sys_id: meta_sys_id(kind, name),
        fields: fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        journal: Vec::new(),
        state_history: Vec::new(),
    }
}

impl Setup {
    /// The records of a metadata table the simulator answers from its set-up instead of its
    /// store (`sys_db_object`, `sys_dictionary`, `sys_user_group`); `None` for any other table.
    /// `named` are the table names the query asks about: any well-formed one exists (extending
    /// `task`), as the Table API serves any table.
    pub fn metadata(&self, table: &str, named: &[String]) -> Option<Vec<ServiceNowRecord>> {
        let mut tables: Vec<(String, Option<String>)> = TABLES
            .iter()
            .map(|(name, parent, _)| ((*name).to_owned(), parent.map(str::to_owned)))
            .collect();
        for name in self.servicenow_columns.keys().chain(named) {
            if !tables.iter().any(|(t, _)| t == name) {
                tables.push((name.clone(), Some("task".to_owned())));
            }
        }
        match table {
            "sys_db_object" => Some(
                tables
                    .iter()
                    .map(|(name, parent)| {
                        let parent = parent
                            .as_deref()
                            .map(|p| meta_sys_id("sys_db_object", p))
                            .unwrap_or_default();
                        record(
                            table,
                            "sys_db_object",
                            name,
                            &[
                                ("sys_id", meta_sys_id("sys_db_object", name)),
                                ("name", name.clone()),
                                ("label", name.clone()),
                                ("super_class", parent),
                            ],
                        )
                    })
                    .collect(),
            ),
            "sys_dictionary" => {
                let mut out = Vec::new();
                for (name, _) in &tables {
                    let own = TABLES
                        .iter()
                        .find(|(t, _, _)| t == name)
                        .map(|(_, _, columns)| columns.iter().map(|c| (*c).to_owned()).collect())
                        .unwrap_or_else(Vec::new);
                    let added = self
                        .servicenow_columns
                        .get(name)
                        .cloned()
                        .unwrap_or_default();
                    // The collection entry (no element) describes the table itself.
                    out.push(record(
                        table,
                        "sys_dictionary",
                        name,
                        &[("name", name.clone()), ("element", String::new())],
                    ));
                    for column in own.into_iter().chain(added) {
                        let key = format!("{name}.{column}");
                        out.push(record(
                            table,
                            "sys_dictionary",
                            &key,
                            &[
                                ("sys_id", meta_sys_id("sys_dictionary", &key)),
                                ("name", name.clone()),
                                ("element", column),
                            ],
                        ));
                    }
                }
                Some(out)
            }
            "sys_user_group" => Some(
                self.servicenow_groups
                    .iter()
                    .map(|name| {
                        record(
                            table,
                            "sys_user_group",
                            name,
                            &[
                                ("sys_id", meta_sys_id("sys_user_group", name)),
                                ("name", name.clone()),
                                ("active", "true".to_owned()),
                            ],
                        )
                    })
                    .collect(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screens_follow_the_setup() {
        let setup = Setup {
            jira_required_fields: BTreeMap::from([(
                "PAY/Bug".to_owned(),
                vec![
                    "customfield_10099".to_owned(),
                    "customfield_20000".to_owned(),
                ],
            )]),
            jira_hidden_fields: BTreeMap::from([("pay".to_owned(), vec!["labels".to_owned()])]),
            jira_missing_issue_types: vec!["PAY/Story".to_owned()],
            ..Setup::default()
        };
        assert!(setup.validate().is_ok());
        let bug = setup.screen("PAY", "Bug");
        let required: Vec<&str> = bug
            .iter()
            .filter(|f| f.required && !f.has_default)
            .map(|f| f.id.as_str())
            .collect();
        assert_eq!(
            required,
            [
                "project",
                "issuetype",
                "summary",
                "customfield_10099",
                "customfield_20000"
            ]
        );
        assert!(
            !bug.iter().any(|f| f.id == "labels"),
            "hidden for every PAY screen"
        );
        let task = setup.screen("PAY", "Task");
        assert!(!task.iter().any(|f| f.id == "customfield_20000"));
        assert!(setup.screen("SEC", "Bug").iter().any(|f| f.id == "labels"));
        let types: Vec<&str> = setup.issue_types("PAY").iter().map(|(_, n)| *n).collect();
        assert_eq!(types, ["Bug", "Task", "Epic"]);
        assert_eq!(setup.issue_types("SEC").len(), 4);
    }

    #[test]
    fn a_create_is_refused_for_what_the_screen_refuses() {
        let setup = Setup {
            jira_required_fields: BTreeMap::from([(
                "PAY".to_owned(),
                vec!["customfield_10099".to_owned()],
            )]),
            jira_missing_permissions: BTreeMap::from([(
                "OPS".to_owned(),
                vec!["CREATE_ISSUES".to_owned()],
            )]),
            ..Setup::default()
        };
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_value(serde_json::json!({
                "project": {"key": "PAY"}, "issuetype": {"name": "Bug"}, "summary": "s",
                "customfield_99": 1}))
            .unwrap();
        let refused: Vec<String> = setup
            .create_refusal("PAY", "Bug", &fields)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            refused,
            ["customfield_10099"],
            "other fields are the create's to judge"
        );
        let hiding = Setup {
            jira_hidden_fields: BTreeMap::from([("SEC".to_owned(), vec!["labels".to_owned()])]),
            ..Setup::default()
        };
        let labelled: serde_json::Map<String, serde_json::Value> =
            serde_json::from_value(serde_json::json!({
                "project": {"key": "SEC"}, "issuetype": {"name": "Bug"}, "summary": "s",
                "labels": ["a"]}))
            .unwrap();
        assert_eq!(
            hiding.create_refusal("SEC", "Bug", &labelled)[0].0,
            "labels"
        );
        assert_eq!(setup.create_refusal("OPS", "Bug", &fields)[0].0, "project");
        assert_eq!(
            setup.create_refusal("SEC", "Sub-task", &fields)[0].0,
            "issuetype"
        );
    }

    #[test]
    fn metadata_tables_describe_the_task_hierarchy() {
        let setup = Setup::default();
        let objects = setup
            .metadata("sys_db_object", &["u_case".to_owned()])
            .unwrap();
        let task = objects
            .iter()
            .find(|r| r.get("name") == Some("task"))
            .unwrap();
        let incident = objects
            .iter()
            .find(|r| r.get("name") == Some("incident"))
            .unwrap();
        let custom = objects
            .iter()
            .find(|r| r.get("name") == Some("u_case"))
            .unwrap();
        assert_eq!(incident.get("super_class"), Some(task.sys_id.as_str()));
        assert_eq!(custom.get("super_class"), Some(task.sys_id.as_str()));
        assert_eq!(task.get("super_class"), Some(""));
        let columns = setup.metadata("sys_dictionary", &[]).unwrap();
        assert!(columns.iter().any(
            |r| r.get("name") == Some("incident") && r.get("element") == Some("u_aws_account")
        ));
        assert_eq!(setup.metadata("sys_user_group", &[]).unwrap().len(), 2);
        assert!(setup.metadata("incident", &[]).is_none());
    }
}
