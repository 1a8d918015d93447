//! What Jira says about creating issues, read without creating anything (`findings-bridge
//! preflight`): a project, the issue types its create screen offers and each one's fields
//! (`createmeta`), the account's permissions in a project, and the priorities.
//!
//! `GET /rest/api/{2,3}/issue/createmeta/{project}/issuetypes[/{id}]` is paged by
//! `startAt`/`maxResults`. Jira Cloud answers `{"issueTypes": […]}` and `{"fields": […]}` (its
//! OpenAPI also names `createMetaIssueType` and `results`), Data Center 8.4+ answers `{"values":
//! […], "isLast"}` for both; the shape is read from the answer, not assumed from the API version,
//! because a Cloud site may be spoken to through `/rest/api/2` too. Each call goes through the
//! connection's HTTP layer: rate limit, retries of timeouts, 5xx and 429, `Retry-After`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::api::decode;
use super::client::JiraClient;
use super::config::JiraApiVersion;
use crate::ticket::TicketError;

/// Entries asked for per createmeta page (Jira's own default; Cloud allows up to 200).
const PAGE: usize = 50;
/// A server that keeps answering full pages past this many is not describing one screen.
const MAX_PAGES: usize = 200;

/// A project as `GET /project/{key}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectMeta {
    pub id: String,
    pub key: String,
}

/// An issue type offered on a project's create screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueTypeMeta {
    pub id: String,
    pub name: String,
}

/// One field of a create screen (project and issue type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMeta {
    /// `summary`, `labels`, `customfield_10042`: what a create's `fields` object is keyed by.
    pub id: String,
    /// The name people see (`Team`), for messages; the id when Jira gives none.
    pub name: String,
    pub required: bool,
    /// Jira fills the field itself when a create leaves it out.
    pub has_default: bool,
    /// The `name`s of `allowedValues`, when Jira lists them (priorities, select lists).
    pub allowed_names: Option<Vec<String>>,
}

impl FieldMeta {
    /// A create that leaves this field out is refused.
    pub fn must_be_set(&self) -> bool {
        self.required && !self.has_default
    }
}

impl JiraClient {
    /// The API this connection speaks (Cloud v3 or Data Center v2).
    pub fn api_version(&self) -> JiraApiVersion {
        self.version
    }

    /// The project `key`; `None` when Jira answers 404 (it does not exist, or the account may
    /// not see it: Jira does not tell the two apart).
    pub async fn project(&self, key: &str) -> Result<Option<ProjectMeta>, TicketError> {
        const OP: &str = "project";
        match self.get(OP, self.api(&["project", key])).await {
            Ok(body) => Ok(Some(ProjectMeta {
                id: text(&body, "id"),
                key: text(&body, "key"),
            })),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every issue type the create screen of `project` (key or id) offers the account, all
    /// pages. Jira lists none when the account lacks CREATE_ISSUES there.
    pub async fn create_issue_types(
        &self,
        project: &str,
    ) -> Result<Vec<IssueTypeMeta>, TicketError> {
        const OP: &str = "createmeta_issuetypes";
        let items = self
            .pages(
                OP,
                &["issue", "createmeta", project, "issuetypes"],
                &["issueTypes", "createMetaIssueType", "values"],
            )
            .await?;
        Ok(items
            .iter()
            .map(|t| IssueTypeMeta {
                id: text(t, "id"),
                name: text(t, "name"),
            })
            .filter(|t| !t.id.is_empty())
            .collect())
    }

    /// Every field of the create screen of `project` for issue type `issue_type_id`, all pages.
    pub async fn create_fields(
        &self,
        project: &str,
        issue_type_id: &str,
    ) -> Result<Vec<FieldMeta>, TicketError> {
        const OP: &str = "createmeta_fields";
        let items = self
            .pages(
                OP,
                &["issue", "createmeta", project, "issuetypes", issue_type_id],
                &["fields", "results", "values"],
            )
            .await?;
        Ok(items
            .iter()
            .filter_map(|f| {
                // Data Center and Cloud give `fieldId`; older answers only `key`.
                let id = Some(text(f, "fieldId"))
                    .filter(|id| !id.is_empty())
                    .unwrap_or_else(|| text(f, "key"));
                if id.is_empty() {
                    return None;
                }
                let name = Some(text(f, "name"))
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| id.clone());
                Some(FieldMeta {
                    required: f.get("required").and_then(Value::as_bool) == Some(true),
                    has_default: f.get("hasDefaultValue").and_then(Value::as_bool) == Some(true),
                    allowed_names: f.get("allowedValues").and_then(Value::as_array).map(|vs| {
                        vs.iter()
                            .map(|v| text(v, "name"))
                            .filter(|n| !n.is_empty())
                            .collect()
                    }),
                    id,
                    name,
                })
            })
            .collect())
    }

    /// Whether the account holds each of `permissions` in `project`
    /// (`GET /mypermissions?projectKey=…&permissions=…`); `None` for a permission the answer
    /// does not mention (an unknown key, or a Jira too old to filter).
    pub async fn my_permissions(
        &self,
        project: &str,
        permissions: &[&str],
    ) -> Result<BTreeMap<String, Option<bool>>, TicketError> {
        const OP: &str = "mypermissions";
        let mut url = self.api(&["mypermissions"]);
        url.query_pairs_mut()
            .append_pair("projectKey", project)
            .append_pair("permissions", &permissions.join(","));
        let body = self.get(OP, url).await?;
        let granted = body.get("permissions").and_then(Value::as_object);
        Ok(permissions
            .iter()
            .map(|p| {
                let have = granted
                    .and_then(|g| g.get(*p))
                    .and_then(|entry| entry.get("havePermission"))
                    .and_then(Value::as_bool);
                ((*p).to_owned(), have)
            })
            .collect())
    }

    /// The names of every priority of the site (`GET /priority`): what a create screen whose
    /// priority field lists no `allowedValues` accepts.
    pub async fn priorities(&self) -> Result<Vec<String>, TicketError> {
        const OP: &str = "priorities";
        let list: Vec<Value> = decode(OP, self.get(OP, self.api(&["priority"])).await?)?;
        Ok(list
            .iter()
            .map(|p| text(p, "name"))
            .filter(|n| !n.is_empty())
            .collect())
    }

    /// Every entry of a `startAt`-paged list under the first of `keys` the answers carry.
    async fn pages(
        &self,
        operation: &'static str,
        path: &[&str],
        keys: &[&str],
    ) -> Result<Vec<Value>, TicketError> {
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let mut url = self.api(path);
            url.query_pairs_mut()
                .append_pair("startAt", &all.len().to_string())
                .append_pair("maxResults", &PAGE.to_string());
            let body = self.get(operation, url).await?;
            let Some(items) = keys
                .iter()
                .find_map(|k| body.get(*k).and_then(Value::as_array))
            else {
                return Err(self.conn.http.permanent(
                    operation,
                    None,
                    format!("the answer lists none of {}", keys.join(", ")),
                ));
            };
            let count = items.len();
            all.extend(items.iter().cloned());
            let is_last = body.get("isLast").and_then(Value::as_bool);
            let total = body
                .get("total")
                .and_then(Value::as_u64)
                .and_then(|t| usize::try_from(t).ok());
            let done = count == 0
                || is_last == Some(true)
                || total.is_some_and(|t| all.len() >= t)
                // Neither `isLast` nor `total`: a short page is the last one.
                || (is_last.is_none() && total.is_none() && count < PAGE);
            if done {
                return Ok(all);
            }
        }
        Err(self.conn.http.permanent(
            operation,
            None,
            format!("still more after {MAX_PAGES} pages of {PAGE}"),
        ))
    }
}

/// A string member of a JSON object, empty when absent; ids may come as numbers.
fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}
