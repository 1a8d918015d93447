//! Jira Cloud (`/rest/api/3`, ADF, Basic email:token, `search/jql` with page tokens) and Jira Data
//! Center (`/rest/api/2`, plain text, Bearer PAT, `search` with `startAt`/`total`) on one store of
//! issues, so a test can create through one API and watch through the other.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::adf;
use crate::auth::{self, Credentials};
use crate::jql;
use crate::reply::Rejection;
use crate::state::{JiraComment, JiraIssue, SharedState};

const TEXT_LIMIT: usize = 32_767;
/// The display name of the API user (`/myself`), the author of the changes clients make.
pub(crate) const API_USER_NAME: &str = "findings-bridge (simulated)";
const SUMMARY_LIMIT: usize = 255;
pub(crate) const PRIORITIES: &[(&str, &str)] = &[
    ("1", "Highest"),
    ("2", "High"),
    ("3", "Medium"),
    ("4", "Low"),
    ("5", "Lowest"),
];
/// System fields a create/edit screen may carry besides the ones validated explicitly; anything
/// else that is not `customfield_N` is refused like Jira refuses a field missing from the screen.
const OTHER_SYSTEM_FIELDS: &[&str] = &[
    "components",
    "assignee",
    "reporter",
    "duedate",
    "environment",
    "fixVersions",
    "versions",
    "security",
    "parent",
    "timetracking",
];

/// The simplified workflow every simulated project uses.
pub(crate) mod workflow {
    use chrono::Utc;

    use crate::state::{JiraIssue, StatusChange};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Status {
        pub id: &'static str,
        pub name: &'static str,
        pub category: &'static str,
    }

    #[derive(Debug, Clone, Copy)]
    pub struct Transition {
        pub id: &'static str,
        pub name: &'static str,
        pub to: Status,
    }

    pub const TO_DO: Status = Status {
        id: "10000",
        name: "To Do",
        category: "new",
    };
    pub const IN_PROGRESS: Status = Status {
        id: "3",
        name: "In Progress",
        category: "indeterminate",
    };
    pub const DONE: Status = Status {
        id: "10001",
        name: "Done",
        category: "done",
    };
    pub const WONT_DO: Status = Status {
        id: "10002",
        name: "Won't Do",
        category: "done",
    };
    const STATUSES: [Status; 4] = [TO_DO, IN_PROGRESS, DONE, WONT_DO];

    pub fn status_by_name(name: &str) -> Option<Status> {
        STATUSES
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
            .copied()
    }

    /// To Do → In Progress → Done, Won't Do from any open status, Reopen from either done status.
    pub fn transitions_from(status: &str) -> Vec<Transition> {
        let t = |id, name, to| Transition { id, name, to };
        match status {
            "To Do" => vec![
                t("21", "Start Progress", IN_PROGRESS),
                t("31", "Done", DONE),
                t("41", "Won't Do", WONT_DO),
            ],
            "In Progress" => vec![
                t("11", "Stop Progress", TO_DO),
                t("31", "Done", DONE),
                t("41", "Won't Do", WONT_DO),
            ],
            _ => vec![t("51", "Reopen", TO_DO)],
        }
    }

    pub fn category_name(key: &str) -> (&'static str, i64) {
        match key {
            "new" => ("To Do", 2),
            "indeterminate" => ("In Progress", 4),
            _ => ("Done", 3),
        }
    }

    /// Moves `issue` to `to` as `by` (`api`, `human`) whose display name is `author`; a done
    /// status sets the resolution (`resolution`, else the status's name), any other clears it.
    pub fn move_to(
        issue: &mut JiraIssue,
        to: Status,
        by: &str,
        author: &str,
        resolution: Option<&str>,
    ) {
        let now = Utc::now();
        if issue.status != to.name {
            issue.status_history.push(StatusChange {
                from: issue.status.clone(),
                to: to.name.to_owned(),
                by: by.to_owned(),
                author: author.to_owned(),
                at: now,
            });
        }
        issue.status = to.name.to_owned();
        issue.status_category = to.category.to_owned();
        issue.resolution =
            (to.category == "done").then(|| resolution.unwrap_or(to.name).to_owned());
        issue.updated = now;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ver {
    V2,
    V3,
}

impl Ver {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Ver::V2 => "2",
            Ver::V3 => "3",
        }
    }
}

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/rest/api/{ver}/issue", post(create_issue))
        .route(
            "/rest/api/{ver}/issue/{key}",
            get(get_issue).put(edit_issue),
        )
        .route(
            "/rest/api/{ver}/issue/{key}/transitions",
            get(list_transitions).post(do_transition),
        )
        .route(
            "/rest/api/{ver}/issue/{key}/comment",
            get(list_comments).post(add_comment),
        )
        .route(
            "/rest/api/3/search/jql",
            get(search_jql_get).post(search_jql_post),
        )
        .route("/rest/api/{ver}/search", get(search_get).post(search_post))
        .route("/rest/api/{ver}/myself", get(myself))
        .route("/rest/api/{ver}/project/{key}", get(get_project))
        .route(
            "/rest/api/{ver}/issue/{key}/properties/{property}",
            get(get_issue_property),
        )
        .merge(crate::jira_changelog::routes())
}

pub(crate) fn error(status: StatusCode, messages: &[&str], errors: Map<String, Value>) -> Response {
    (
        status,
        axum::Json(json!({"errorMessages": messages, "errors": errors})),
    )
        .into_response()
}

fn field_errors(errors: Map<String, Value>) -> Response {
    error(StatusCode::BAD_REQUEST, &[], errors)
}

pub(crate) fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        &["Issue does not exist or you do not have permission to see it."],
        Map::new(),
    )
}

/// Resolves the API version and checks credentials: Cloud v3 takes only Basic email:token; the
/// v2 (Data Center) API also takes the personal access token as Bearer.
pub(crate) fn authorize(
    st: &SharedState,
    ver: &str,
    headers: &HeaderMap,
) -> Result<Ver, Rejection> {
    let ver = match ver {
        "2" => Ver::V2,
        "3" => Ver::V3,
        _ => {
            return Err(error(
                StatusCode::NOT_FOUND,
                &["No API of this version exists."],
                Map::new(),
            )
            .into());
        }
    };
    let cfg = st.config();
    let creds = auth::credentials(headers);
    let ok = auth::is_basic(&creds, &cfg.jira_email, &cfg.jira_token)
        || (ver == Ver::V2 && creds == Some(Credentials::Bearer(cfg.jira_pat.clone())));
    if ok {
        Ok(ver)
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            &["You are not authenticated. Authentication required to perform this operation."],
            Map::new(),
        )
        .into())
    }
}

fn parse_json(body: &Bytes) -> Result<Value, Rejection> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &[&format!("The request body is not valid JSON: {e}")],
            Map::new(),
        )
        .into()
    })
}

pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

fn set_err(errors: &mut Map<String, Value>, field: &str, msg: impl Into<String>) {
    errors.insert(field.to_owned(), Value::String(msg.into()));
}

fn validate_summary(value: &Value, errors: &mut Map<String, Value>) {
    match value.as_str() {
        None => set_err(errors, "summary", "Summary must be a string."),
        Some(s) if s.trim().is_empty() => set_err(
            errors,
            "summary",
            "You must specify a summary of the issue.",
        ),
        Some(s) if s.chars().count() > SUMMARY_LIMIT => set_err(
            errors,
            "summary",
            "Summary must be less than 255 characters.",
        ),
        Some(s) if s.contains(['\n', '\r']) => set_err(
            errors,
            "summary",
            "The summary is invalid because it contains newline characters.",
        ),
        Some(_) => {}
    }
}

fn validate_description(value: &Value, ver: Ver, field: &str, errors: &mut Map<String, Value>) {
    if value.is_null() {
        return;
    }
    let len = match ver {
        Ver::V3 => match adf::validate_doc(value) {
            Ok(()) => adf::text_len(value),
            Err(why) => {
                return set_err(
                    errors,
                    field,
                    format!(
                        "Operation value must be an Atlassian Document (see the Atlassian Document Format): {why}"
                    ),
                );
            }
        },
        Ver::V2 => match value.as_str() {
            Some(s) => s.chars().count(),
            None => return set_err(errors, field, "Operation value must be a string"),
        },
    };
    if len > TEXT_LIMIT {
        set_err(
            errors,
            field,
            "The entered text is too long. It exceeds the allowed limit of 32,767 characters.",
        );
    }
}

fn priority_name(value: &Value) -> Result<String, String> {
    if let Some(name) = value.get("name").and_then(Value::as_str) {
        return PRIORITIES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(_, n)| (*n).to_owned())
            .ok_or_else(|| format!("Priority name '{name}' is not valid"));
    }
    if let Some(id) = value.get("id").and_then(Value::as_str) {
        return PRIORITIES
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, n)| (*n).to_owned())
            .ok_or_else(|| format!("Priority with id '{id}' does not exist"));
    }
    Err("Specify the Priority (name) in the string format".to_owned())
}

fn check_label(label: &Value) -> Result<String, String> {
    let s = label
        .as_str()
        .ok_or_else(|| "Labels must be strings.".to_owned())?;
    if s.is_empty() || s.chars().any(char::is_whitespace) {
        return Err(format!("The label '{s}' contains spaces which is invalid."));
    }
    if s.chars().count() > 255 {
        return Err(format!("The label '{s}' is longer than 255 characters."));
    }
    Ok(s.to_owned())
}

fn labels_of(value: &Value) -> Result<Vec<String>, String> {
    value
        .as_array()
        .ok_or_else(|| "Labels must be an array of strings.".to_owned())?
        .iter()
        .map(check_label)
        .collect()
}

fn is_custom_field(name: &str) -> bool {
    name.strip_prefix("customfield_")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// Validates the `fields` of a create or an edit; `creating` makes the required fields required.
/// Returns the fields outside the explicitly modelled ones.
fn validate_fields(
    fields: &Map<String, Value>,
    ver: Ver,
    creating: bool,
    errors: &mut Map<String, Value>,
) -> Map<String, Value> {
    let mut extra = Map::new();
    if creating {
        let project_ok = fields
            .get("project")
            .and_then(|p| p.get("key"))
            .and_then(Value::as_str)
            .is_some_and(is_project_key);
        if !project_ok {
            set_err(errors, "project", "Specify a valid project ID or key");
        }
        let type_ok = fields
            .get("issuetype")
            .and_then(|t| t.get("name").or_else(|| t.get("id")))
            .and_then(Value::as_str)
            .is_some_and(|n| !n.trim().is_empty());
        if !type_ok {
            set_err(errors, "issuetype", "Specify an issue type");
        }
        if !fields.contains_key("summary") {
            set_err(
                errors,
                "summary",
                "You must specify a summary of the issue.",
            );
        }
    }
    for (name, value) in fields {
        match name.as_str() {
            "project" | "issuetype" => {
                if !creating {
                    set_err(
                        errors,
                        name,
                        format!("Field '{name}' cannot be changed by an edit in the simulator."),
                    );
                }
            }
            "summary" => validate_summary(value, errors),
            "description" => validate_description(value, ver, "description", errors),
            "environment" => {
                validate_description(value, ver, "environment", errors);
                extra.insert(name.clone(), value.clone());
            }
            "priority" => {
                if let Err(e) = priority_name(value) {
                    set_err(errors, "priority", e);
                }
            }
            "labels" => {
                if let Err(e) = labels_of(value) {
                    set_err(errors, "labels", e);
                }
            }
            // Like Jira: a date (`YYYY-MM-DD`), or null to clear it; anything else is refused.
            "duedate" => {
                let valid = value.is_null()
                    || value
                        .as_str()
                        .is_some_and(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok());
                if !valid {
                    set_err(
                        errors,
                        "duedate",
                        format!("Error parsing date string: {value}"),
                    );
                }
                extra.insert(name.clone(), value.clone());
            }
            n if is_custom_field(n) || OTHER_SYSTEM_FIELDS.contains(&n) => {
                if value
                    .as_str()
                    .is_some_and(|s| s.chars().count() > TEXT_LIMIT)
                {
                    set_err(
                        errors,
                        n,
                        "The entered text is too long. It exceeds the allowed limit of 32,767 characters.",
                    );
                }
                extra.insert(name.clone(), value.clone());
            }
            n => set_err(
                errors,
                n,
                format!(
                    "Field '{n}' cannot be set. It is not on the appropriate screen, or unknown."
                ),
            ),
        }
    }
    extra
}

async fn create_issue(
    State(st): State<SharedState>,
    Path(ver): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ver = match authorize(&st, &ver, &headers) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let Some(fields) = body.get("fields").and_then(Value::as_object) else {
        return error(
            StatusCode::BAD_REQUEST,
            &["The request must carry a 'fields' object."],
            Map::new(),
        );
    };
    let mut errors = Map::new();
    let extra = validate_fields(fields, ver, true, &mut errors);
    let properties = match create_properties(body.get("properties")) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let gone = fields_value(fields, "/project/key")
        .and_then(Value::as_str)
        .is_some_and(|key| st.lock().faults.project_gone(key));
    if gone {
        // What Jira answers for a project that was deleted (or never existed).
        set_err(&mut errors, "project", "valid project is required");
        st.lock().fault_stats.target_gone += 1;
    }
    if errors.is_empty() {
        // What the project's set-up refuses: permission, issue type, required and hidden fields.
        let project = fields_value(fields, "/project/key").and_then(Value::as_str);
        let issue_type = fields_value(fields, "/issuetype/name").and_then(Value::as_str);
        if let (Some(project), Some(issue_type)) = (project, issue_type) {
            for (field, message) in st.setup().create_refusal(project, issue_type, fields) {
                set_err(&mut errors, &field, message);
            }
        }
    }
    if !errors.is_empty() {
        return field_errors(errors);
    }
    let str_at = |ptr: &str| {
        fields_value(fields, ptr)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let project = str_at("/project/key");
    let issue_type = fields_value(fields, "/issuetype/name")
        .or_else(|| fields_value(fields, "/issuetype/id"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let now = Utc::now();
    let mut guard = st.lock();
    let base = guard.base_url.clone();
    let jira = &mut guard.jira;
    jira.next_id += 1;
    let id = (10_000 + jira.next_id).to_string();
    let counter = jira.project_counters.entry(project.clone()).or_insert(0);
    *counter += 1;
    let key = format!("{project}-{counter}");
    let issue = JiraIssue {
        id: id.clone(),
        key: key.clone(),
        project,
        issue_type,
        summary: str_at("/summary"),
        description: fields.get("description").cloned().unwrap_or(Value::Null),
        priority: fields.get("priority").and_then(|p| priority_name(p).ok()),
        labels: fields
            .get("labels")
            .and_then(|l| labels_of(l).ok())
            .unwrap_or_default(),
        status: workflow::TO_DO.name.to_owned(),
        status_category: workflow::TO_DO.category.to_owned(),
        fields: extra,
        comments: Vec::new(),
        status_history: Vec::new(),
        created: now,
        updated: now,
        created_instant: Instant::now(),
        properties,
        resolution: None,
    };
    jira.issues.push(issue);
    drop(guard);
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "id": id,
            "key": key,
            "self": format!("{base}/rest/api/{}/issue/{id}", ver.as_str()),
        })),
    )
        .into_response()
}

/// `GET /rest/api/{2,3}/myself`: the account the credentials belong to (the bridge's connection
/// probe).
async fn myself(
    State(st): State<SharedState>,
    Path(ver): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ver = match authorize(&st, &ver, &headers) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let cfg = st.config();
    let base = st.base_url();
    let account_id = format!(
        "5b10ac8d82e05b22cc7d{:016x}",
        splitmix64_of(&cfg.jira_email)
    );
    axum::Json(json!({
        "self": format!("{base}/rest/api/{}/user?accountId={account_id}", ver.as_str()),
        "accountId": account_id,
        "accountType": "atlassian",
        "emailAddress": cfg.jira_email,
        "displayName": API_USER_NAME,
        "active": true,
        "timeZone": cfg.jira_time_zone.name(),
        "locale": "en_US",
    }))
    .into_response()
}

/// A project key Jira would accept: an upper-case letter, then upper-case letters, digits, `_`.
fn is_project_key(key: &str) -> bool {
    key.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The project `key` (upper-cased) when it exists: every well-formed key but the
/// `gone_projects`; otherwise the 404 Jira answers.
pub(crate) fn existing_project(st: &SharedState, key: &str) -> Result<String, Rejection> {
    let key = key.to_ascii_uppercase();
    let gone = st.lock().faults.project_gone(&key);
    if gone {
        st.lock().fault_stats.target_gone += 1;
    }
    if gone || !is_project_key(&key) {
        return Err(error(
            StatusCode::NOT_FOUND,
            &[&format!("No project could be found with key '{key}'.")],
            Map::new(),
        )
        .into());
    }
    Ok(key)
}

/// `GET /rest/api/{2,3}/project/{key}`: every well-formed key is a project (creates need no
/// set-up), except the `gone_projects`; the others answer 404 as Jira does.
async fn get_project(
    State(st): State<SharedState>,
    Path((ver, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let ver = match authorize(&st, &ver, &headers) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let key = match existing_project(&st, &key) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let id = 10_000 + splitmix64_of(&key) % 90_000;
    let base = st.base_url();
    let types: Vec<Value> = ["Bug", "Task", "Story", "Epic"]
        .iter()
        .enumerate()
        .map(|(i, name)| json!({"id": (10_001 + i).to_string(), "name": name, "subtask": false}))
        .collect();
    axum::Json(json!({
        "self": format!("{base}/rest/api/{}/project/{id}", ver.as_str()),
        "id": id.to_string(),
        "key": key,
        "name": key,
        "projectTypeKey": "software",
        "archived": false,
        "issueTypes": types,
    }))
    .into_response()
}

fn splitmix64_of(text: &str) -> u64 {
    text.bytes()
        .fold(0, |h, b| crate::faults::splitmix64(h ^ u64::from(b)))
}

fn fields_value<'a>(fields: &'a Map<String, Value>, pointer: &str) -> Option<&'a Value> {
    let mut parts = pointer.trim_start_matches('/').splitn(2, '/');
    let first = fields.get(parts.next()?)?;
    match parts.next() {
        Some(rest) => first.pointer(&format!("/{rest}")),
        None => Some(first),
    }
}

/// Which fields an issue representation includes.
enum FieldFilter {
    All,
    Only(Vec<String>),
    /// `search/jql` without `fields`: Jira Cloud returns bare ids.
    IdOnly,
}

impl FieldFilter {
    fn from_list(list: Option<Vec<String>>, default: FieldFilter) -> Self {
        match list {
            None => default,
            Some(l) if l.is_empty() => default,
            Some(l) if l.iter().any(|f| f == "*all" || f == "*navigable") => FieldFilter::All,
            Some(l) => FieldFilter::Only(l),
        }
    }

    fn from_csv(csv: Option<&str>, default: FieldFilter) -> Self {
        let list = csv.map(|c| {
            c.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        });
        Self::from_list(list, default)
    }
}

fn description_for(value: &Value, ver: Ver) -> Value {
    match (ver, value) {
        (_, Value::Null) => Value::Null,
        (Ver::V3, Value::String(s)) => adf::from_text(s),
        (Ver::V2, v) if v.is_object() => Value::String(adf::to_text(v)),
        (_, v) => v.clone(),
    }
}

fn status_json(name: &str, category: &str) -> Value {
    let id = workflow::status_by_name(name).map_or("0", |s| s.id);
    let (cat_name, cat_id) = workflow::category_name(category);
    json!({
        "name": name,
        "id": id,
        "statusCategory": {"key": category, "name": cat_name, "id": cat_id},
    })
}

fn comment_json(c: &JiraComment, ver: Ver) -> Value {
    json!({
        "id": c.id,
        "body": description_for(&c.body, ver),
        "created": timestamp(c.created),
        "updated": timestamp(c.created),
    })
}

fn issue_json(issue: &JiraIssue, ver: Ver, base: &str, filter: &FieldFilter) -> Value {
    if matches!(filter, FieldFilter::IdOnly) {
        return json!({"id": issue.id});
    }
    let mut fields = Map::new();
    fields.insert("summary".into(), json!(issue.summary));
    fields.insert(
        "description".into(),
        description_for(&issue.description, ver),
    );
    fields.insert("labels".into(), json!(issue.labels));
    fields.insert(
        "priority".into(),
        match &issue.priority {
            Some(name) => {
                let id = PRIORITIES
                    .iter()
                    .find(|(_, n)| n == name)
                    .map_or("3", |(i, _)| i);
                json!({"name": name, "id": id})
            }
            None => Value::Null,
        },
    );
    fields.insert(
        "status".into(),
        status_json(&issue.status, &issue.status_category),
    );
    fields.insert(
        "resolution".into(),
        match &issue.resolution {
            Some(name) => json!({"name": name}),
            None => Value::Null,
        },
    );
    fields.insert("issuetype".into(), json!({"name": issue.issue_type}));
    fields.insert("project".into(), json!({"key": issue.project}));
    fields.insert("created".into(), json!(timestamp(issue.created)));
    fields.insert("updated".into(), json!(timestamp(issue.updated)));
    let comments: Vec<Value> = issue
        .comments
        .iter()
        .map(|c| comment_json(c, ver))
        .collect();
    fields.insert(
        "comment".into(),
        json!({"comments": comments, "total": comments.len(), "maxResults": comments.len(), "startAt": 0}),
    );
    for (k, v) in &issue.fields {
        fields.insert(k.clone(), v.clone());
    }
    if let FieldFilter::Only(wanted) = filter {
        fields.retain(|k, _| wanted.iter().any(|w| w == k));
    }
    json!({
        "id": issue.id,
        "key": issue.key,
        "self": format!("{base}/rest/api/{}/issue/{}", ver.as_str(), issue.id),
        "fields": fields,
    })
}

pub(crate) fn find_issue<'a>(issues: &'a mut [JiraIssue], key: &str) -> Option<&'a mut JiraIssue> {
    issues
        .iter_mut()
        .find(|i| i.key.eq_ignore_ascii_case(key) || i.id == key)
}

#[derive(Deserialize)]
struct GetIssueParams {
    fields: Option<String>,
    /// `changelog` adds the issue's status changes (Data Center's way to read them).
    expand: Option<String>,
}

async fn get_issue(
    State(st): State<SharedState>,
    Path((ver, key)): Path<(String, String)>,
    Query(params): Query<GetIssueParams>,
    headers: HeaderMap,
) -> Response {
    let ver = match authorize(&st, &ver, &headers) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let mut guard = st.lock();
    let base = guard.base_url.clone();
    let Some(issue) = find_issue(&mut guard.jira.issues, &key) else {
        return not_found();
    };
    let filter = FieldFilter::from_csv(params.fields.as_deref(), FieldFilter::All);
    let mut body = issue_json(issue, ver, &base, &filter);
    if crate::jira_changelog::wants_changelog(params.expand.as_deref()) {
        body["changelog"] = crate::jira_changelog::expanded(issue);
    }
    axum::Json(body).into_response()
}

fn new_comment(st_next: &mut u64, body: Value) -> JiraComment {
    *st_next += 1;
    JiraComment {
        id: (10_000 + *st_next).to_string(),
        body,
        created: Utc::now(),
    }
}

fn validate_comment_body(body: Option<&Value>, ver: Ver) -> Result<Value, Rejection> {
    let bad = |why: &str| {
        let mut errors = Map::new();
        set_err(
            &mut errors,
            "comment",
            format!("Comment body is not valid! {why}"),
        );
        field_errors(errors)
    };
    let Some(body) = body else {
        return Err(bad("The comment has no body.").into());
    };
    match ver {
        Ver::V3 => adf::validate_doc(body).map_err(|why| bad(&why))?,
        Ver::V2 => match body.as_str() {
            Some(s) if !s.trim().is_empty() => {}
            _ => return Err(bad("The body must be a non-empty string.").into()),
        },
    }
    let mut errors = Map::new();
    validate_description(body, ver, "comment", &mut errors);
    if !errors.is_empty() {
        return Err(field_errors(errors).into());
    }
    Ok(body.clone())
}

/// Applies `update` operations of an edit: label add/remove/set and comment add.
fn apply_update_ops(
    ops: &Map<String, Value>,
    ver: Ver,
    labels: &mut Vec<String>,
    new_comments: &mut Vec<Value>,
) -> Result<(), Rejection> {
    for (field, list) in ops {
        let Some(list) = list.as_array() else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &[&format!("update.{field} must be an array of operations")],
                Map::new(),
            )
            .into());
        };
        for op in list {
            let mut errors = Map::new();
            match (field.as_str(), op.as_object()) {
                ("labels", Some(o)) => {
                    for (verb, value) in o {
                        match verb.as_str() {
                            "add" => match check_label(value) {
                                Ok(l) if !labels.contains(&l) => labels.push(l),
                                Ok(_) => {}
                                Err(e) => set_err(&mut errors, "labels", e),
                            },
                            "remove" => labels.retain(|l| Some(l.as_str()) != value.as_str()),
                            "set" => match labels_of(value) {
                                Ok(l) => *labels = l,
                                Err(e) => set_err(&mut errors, "labels", e),
                            },
                            v => set_err(&mut errors, "labels", format!("Unknown operation '{v}'")),
                        }
                    }
                }
                ("comment", Some(o)) => match o.get("add").map(|a| a.get("body")) {
                    Some(body) => new_comments.push(validate_comment_body(body, ver)?),
                    None => set_err(
                        &mut errors,
                        "comment",
                        "Only 'add' is supported on comments",
                    ),
                },
                (f, _) => set_err(
                    &mut errors,
                    f,
                    format!(
                        "Field '{f}' cannot be set. It is not on the appropriate screen, or unknown."
                    ),
                ),
            }
            if !errors.is_empty() {
                return Err(field_errors(errors).into());
            }
        }
    }
    Ok(())
}

async fn edit_issue(
    State(st): State<SharedState>,
    Path((ver, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ver = match authorize(&st, &ver, &headers) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let empty = Map::new();
    let fields = body
        .get("fields")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let ops = body
        .get("update")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut errors = Map::new();
    let extra = validate_fields(fields, ver, false, &mut errors);
    if !errors.is_empty() {
        return field_errors(errors);
    }
    let mut guard = st.lock();
    let jira = &mut guard.jira;
    let Some(issue) = find_issue(&mut jira.issues, &key) else {
        return not_found();
    };
    let mut labels = match fields.get("labels").map(labels_of) {
        Some(Ok(l)) => l,
        _ => issue.labels.clone(),
    };
    let mut new_comments = Vec::new();
    if let Err(r) = apply_update_ops(ops, ver, &mut labels, &mut new_comments) {
        return r.into_response();
    }
    issue.labels = labels;
    if let Some(s) = fields.get("summary").and_then(Value::as_str) {
        s.clone_into(&mut issue.summary);
    }
    if let Some(d) = fields.get("description") {
        issue.description = d.clone();
    }
    if let Some(p) = fields.get("priority").and_then(|p| priority_name(p).ok()) {
        issue.priority = Some(p);
    }
    issue.fields.extend(extra);
    for body in new_comments {
        let c = new_comment(&mut jira.next_comment_id, body);
        issue.comments.push(c);
    }
    issue.updated = Utc::now();
    StatusCode::NO_CONTENT.into_response()
}

fn transition_json(t: &workflow::Transition) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "to": status_json(t.to.name, t.to.category),
        "hasScreen": false,
        "isGlobal": false,
        "isInitial": false,
        "isAvailable": true,
        "isConditional": false,
    })
}

async fn list_transitions(
    State(st): State<SharedState>,
    Path((ver, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&st, &ver, &headers) {
        return r.into_response();
    }
    let mut guard = st.lock();
    let Some(issue) = find_issue(&mut guard.jira.issues, &key) else {
        return not_found();
    };
    let list: Vec<Value> = workflow::transitions_from(&issue.status)
        .iter()
        .map(transition_json)
        .collect();
    axum::Json(json!({"expand": "transitions", "transitions": list})).into_response()
}

async fn do_transition(
    State(st): State<SharedState>,
    Path((ver, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ver = match authorize(&st, &ver, &headers) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    // Jira sends ids as strings but accepts numbers too.
    let wanted = match body.pointer("/transition/id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                &["Missing 'transition' identifier"],
                Map::new(),
            );
        }
    };
    if let Some(fields) = body.get("fields").and_then(Value::as_object) {
        let mut errors = Map::new();
        for name in fields.keys().filter(|k| *k != "resolution") {
            set_err(
                &mut errors,
                name,
                format!(
                    "Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
                ),
            );
        }
        if !errors.is_empty() {
            return field_errors(errors);
        }
    }
    let mut new_comments = Vec::new();
    if let Some(ops) = body.get("update").and_then(Value::as_object) {
        let mut ignored_labels = Vec::new();
        if let Err(r) = apply_update_ops(ops, ver, &mut ignored_labels, &mut new_comments) {
            return r.into_response();
        }
    }
    let mut guard = st.lock();
    let jira = &mut guard.jira;
    let Some(issue) = find_issue(&mut jira.issues, &key) else {
        return not_found();
    };
    let Some(t) = workflow::transitions_from(&issue.status)
        .into_iter()
        .find(|t| t.id == wanted)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            &[&format!(
                "Transition id '{wanted}' is not valid for this issue."
            )],
            Map::new(),
        );
    };
    let resolution = body
        .pointer("/fields/resolution/name")
        .and_then(Value::as_str);
    workflow::move_to(issue, t.to, "api", API_USER_NAME, resolution);
    for body in new_comments {
        let c = new_comment(&mut jira.next_comment_id, body);
        issue.comments.push(c);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn add_comment(
    State(st): State<SharedState>,
    Path((ver, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ver = match authorize(&st, &ver, &headers) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let comment_body = match validate_comment_body(body.get("body"), ver) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let mut guard = st.lock();
    let base = guard.base_url.clone();
    let jira = &mut guard.jira;
    let Some(issue) = find_issue(&mut jira.issues, &key) else {
        return not_found();
    };
    let c = new_comment(&mut jira.next_comment_id, comment_body);
    let mut out = comment_json(&c, ver);
    if let Some(o) = out.as_object_mut() {
        o.insert(
            "self".into(),
            json!(format!(
                "{base}/rest/api/{}/issue/{}/comment/{}",
                ver.as_str(),
                issue.id,
                c.id
            )),
        );
    }
    issue.comments.push(c);
    issue.updated = Utc::now();
    (StatusCode::CREATED, axum::Json(out)).into_response()
}

#[derive(Deserialize)]
struct CommentParams {
    #[serde(rename = "startAt")]
    start_at: Option<i64>,
    #[serde(rename = "maxResults")]
    max_results: Option<i64>,
    #[serde(rename = "orderBy")]
    order_by: Option<String>,
    /// Accepted and ignored (`renderedBody`, `properties`).
    #[allow(dead_code)]
    expand: Option<String>,
}

/// `GET /rest/api/{2,3}/issue/{key}/comment`: one page of comments, oldest first unless
/// `orderBy=-created`; bodies in ADF (v3) or wiki text (v2), like the real API. Always consistent
/// (it reads the issue, not the search index).
async fn list_comments(
    State(st): State<SharedState>,
    Path((ver, key)): Path<(String, String)>,
    Query(params): Query<CommentParams>,
    headers: HeaderMap,
) -> Response {
    let ver = match authorize(&st, &ver, &headers) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let descending = match params.order_by.as_deref() {
        None | Some("") | Some("created") | Some("+created") => false,
        Some("-created") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                &[&format!(
                    "The simulator orders comments by created only (orderBy=created, +created or -created), not {other:?}."
                )],
                Map::new(),
            );
        }
    };
    let start = usize::try_from(params.start_at.unwrap_or(0).max(0)).unwrap_or(0);
    let max = usize::try_from(params.max_results.unwrap_or(5000).clamp(0, 5000)).unwrap_or(5000);
    let mut guard = st.lock();
    let base = guard.base_url.clone();
    let Some(issue) = find_issue(&mut guard.jira.issues, &key) else {
        return not_found();
    };
    let mut comments: Vec<&JiraComment> = issue.comments.iter().collect();
    // Stored in creation order; equal timestamps keep it, so reversing is "newest first".
    if descending {
        comments.reverse();
    }
    let page: Vec<Value> = comments
        .iter()
        .skip(start)
        .take(max)
        .map(|c| {
            let mut out = comment_json(c, ver);
            if let Some(o) = out.as_object_mut() {
                o.insert(
                    "self".into(),
                    json!(format!(
                        "{base}/rest/api/{}/issue/{}/comment/{}",
                        ver.as_str(),
                        issue.id,
                        c.id
                    )),
                );
            }
            out
        })
        .collect();
    axum::Json(json!({
        "startAt": start,
        "maxResults": max,
        "total": comments.len(),
        "comments": page,
    }))
    .into_response()
}

/// Runs `jql` over the issues the index already knows (search is eventually consistent).
fn search(st: &SharedState, jql_text: &str) -> Result<(Vec<JiraIssue>, String), Rejection> {
    let zone = st.config().jira_time_zone;
    let query = jql::parse_in_zone(jql_text, Utc::now(), zone)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &[&e.0], Map::new()))?;
    let guard = st.lock();
    let now = Instant::now();
    let delay = guard.faults.search_delay;
    let mut hits: Vec<JiraIssue> = guard
        .jira
        .issues
        .iter()
        .filter(|i| now.saturating_duration_since(i.created_instant) >= delay)
        .filter(|i| query.matches(i))
        .cloned()
        .collect();
    let base = guard.base_url.clone();
    drop(guard);
    query.sort(&mut hits);
    Ok((hits, base))
}

/// Page tokens bind the offset to the query, so a client that changes its JQL between pages (for
/// instance by moving its watermark) gets an error instead of silently skipped issues.
fn page_token(offset: usize, jql_text: &str) -> String {
    format!("{offset}-{:016x}", fingerprint(jql_text))
}

fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn parse_page_token(token: &str, jql_text: &str) -> Option<usize> {
    let (offset, fp) = token.split_once('-')?;
    (fp == format!("{:016x}", fingerprint(jql_text))).then_some(())?;
    offset.parse().ok()
}

struct SearchRequest {
    jql: String,
    fields: Option<Vec<String>>,
    max_results: Option<i64>,
    start_at: Option<i64>,
    next_page_token: Option<String>,
}

fn search_jql(st: &SharedState, req: SearchRequest) -> Response {
    let offset = match req.next_page_token.as_deref() {
        None | Some("") => 0,
        Some(token) => match parse_page_token(token, &req.jql) {
            Some(o) => o,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &["The provided next page token is invalid or expired."],
                    Map::new(),
                );
            }
        },
    };
    let max = usize::try_from(req.max_results.unwrap_or(50).clamp(1, 5000)).unwrap_or(50);
    let (hits, base) = match search(st, &req.jql) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let filter = FieldFilter::from_list(req.fields, FieldFilter::IdOnly);
    let page: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(max)
        .map(|i| issue_json(i, Ver::V3, &base, &filter))
        .collect();
    let next = offset + page.len();
    let is_last = next >= hits.len();
    let mut out = json!({"issues": page, "isLast": is_last});
    if !is_last && let Some(o) = out.as_object_mut() {
        o.insert("nextPageToken".into(), json!(page_token(next, &req.jql)));
    }
    axum::Json(out).into_response()
}

fn search_v2(st: &SharedState, req: SearchRequest) -> Response {
    let start = usize::try_from(req.start_at.unwrap_or(0).max(0)).unwrap_or(0);
    let max = usize::try_from(req.max_results.unwrap_or(50).clamp(0, 1000)).unwrap_or(50);
    let (hits, base) = match search(st, &req.jql) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let filter = FieldFilter::from_list(req.fields, FieldFilter::All);
    let page: Vec<Value> = hits
        .iter()
        .skip(start)
        .take(max)
        .map(|i| issue_json(i, Ver::V2, &base, &filter))
        .collect();
    axum::Json(json!({
        "expand": "schema,names",
        "startAt": start,
        "maxResults": max,
        "total": hits.len(),
        "issues": page,
    }))
    .into_response()
}

fn gone() -> Response {
    error(
        StatusCode::GONE,
        &["The requested API has been removed. Please migrate to the /rest/api/3/search/jql API."],
        Map::new(),
    )
}

#[derive(Deserialize)]
struct SearchParams {
    jql: Option<String>,
    fields: Option<String>,
    #[serde(rename = "maxResults")]
    max_results: Option<i64>,
    #[serde(rename = "startAt")]
    start_at: Option<i64>,
    #[serde(rename = "nextPageToken")]
    next_page_token: Option<String>,
}

impl From<SearchParams> for SearchRequest {
    fn from(p: SearchParams) -> Self {
        SearchRequest {
            jql: p.jql.unwrap_or_default(),
            fields: p.fields.map(|f| {
                f.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
            max_results: p.max_results,
            start_at: p.start_at,
            next_page_token: p.next_page_token,
        }
    }
}

fn search_body(body: &Bytes) -> Result<SearchRequest, Rejection> {
    let v = parse_json(body)?;
    let bad = |what: &str| -> Rejection {
        error(
            StatusCode::BAD_REQUEST,
            &[&format!("Invalid request payload: {what}")],
            Map::new(),
        )
        .into()
    };
    let jql = match v.get("jql") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad("jql must be a string")),
    };
    let fields = match v.get("fields") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|f| f.as_str().map(str::to_owned).ok_or(()))
                .collect::<Result<Vec<_>, ()>>()
                .map_err(|()| bad("fields must be an array of strings"))?,
        ),
        Some(_) => return Err(bad("fields must be an array of strings")),
    };
    let int = |name: &str| match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| bad(&format!("{name} must be an integer"))),
    };
    let next_page_token = match v.get("nextPageToken") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("nextPageToken must be a string")),
    };
    Ok(SearchRequest {
        jql,
        fields,
        max_results: int("maxResults")?,
        start_at: int("startAt")?,
        next_page_token,
    })
}

async fn search_jql_get(
    State(st): State<SharedState>,
    Query(params): Query<SearchParams>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&st, "3", &headers) {
        return r.into_response();
    }
    search_jql(&st, params.into())
}

async fn search_jql_post(
    State(st): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&st, "3", &headers) {
        return r.into_response();
    }
    match search_body(&body) {
        Ok(req) => search_jql(&st, req),
        Err(r) => r.into_response(),
    }
}

async fn search_get(
    State(st): State<SharedState>,
    Path(ver): Path<String>,
    Query(params): Query<SearchParams>,
    headers: HeaderMap,
) -> Response {
    match authorize(&st, &ver, &headers) {
        Ok(Ver::V2) => search_v2(&st, params.into()),
        Ok(Ver::V3) => gone(),
        Err(r) => r.into_response(),
    }
}

async fn search_post(
    State(st): State<SharedState>,
    Path(ver): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match authorize(&st, &ver, &headers) {
        Ok(Ver::V2) => match search_body(&body) {
            Ok(req) => search_v2(&st, req),
            Err(r) => r.into_response(),
        },
        Ok(Ver::V3) => gone(),
        Err(r) => r.into_response(),
    }
}

/// The longest issue property value Jira stores (32 KB of JSON).
const PROPERTY_VALUE_LIMIT: usize = 32_768;

/// The `properties` of a create: `[{"key", "value"}]`, each value a JSON object within Jira's
/// size limit, as Jira validates them; stored by key.
fn create_properties(value: Option<&Value>) -> Result<Map<String, Value>, Rejection> {
    let bad =
        |what: String| -> Rejection { error(StatusCode::BAD_REQUEST, &[&what], Map::new()).into() };
    let mut out = Map::new();
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let Some(items) = value.as_array() else {
        return Err(bad("properties must be an array of {key, value}".to_owned()));
    };
    for item in items {
        let key = item.get("key").and_then(Value::as_str).unwrap_or_default();
        if key.is_empty() || key.chars().count() > 255 {
            return Err(bad(format!("The property key '{key}' is invalid.")));
        }
        let Some(property) = item.get("value").filter(|v| v.is_object()) else {
            return Err(bad(format!(
                "The value of property '{key}' must be a JSON object."
            )));
        };
        if property.to_string().len() > PROPERTY_VALUE_LIMIT {
            return Err(bad(format!(
                "The value of property '{key}' is too long: {PROPERTY_VALUE_LIMIT} characters at most."
            )));
        }
        out.insert(key.to_owned(), property.clone());
    }
    Ok(out)
}

/// `GET /rest/api/{2,3}/issue/{key}/properties/{property}`: `{"key", "value"}`, or 404 when the
/// issue or the property does not exist.
async fn get_issue_property(
    State(st): State<SharedState>,
    Path((ver, key, property)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&st, &ver, &headers) {
        return r.into_response();
    }
    let mut guard = st.lock();
    let Some(issue) = find_issue(&mut guard.jira.issues, &key) else {
        return not_found();
    };
    match issue.properties.get(&property) {
        Some(value) => axum::Json(json!({"key": property, "value": value})).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &[&format!(
                "The property with key '{property}' does not exist."
            )],
            Map::new(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duedate_is_a_date_or_null_like_jira_takes_it() {
        for (value, ok) in [
            (json!("2026-11-27"), true),
            (Value::Null, true),
            (json!("2026-11-27T10:00:00Z"), false),
            (json!("27/11/2026"), false),
            (json!("2026-02-30"), false),
            (json!(20261127), false),
        ] {
            let fields = Map::from_iter([("duedate".to_owned(), value.clone())]);
            let mut errors = Map::new();
            let extra = validate_fields(&fields, Ver::V3, false, &mut errors);
            assert_eq!(errors.is_empty(), ok, "{value}: {errors:?}");
            assert_eq!(extra.get("duedate"), Some(&value));
        }
    }

    #[test]
    fn page_tokens_are_bound_to_their_query() {
        let t = page_token(20, "labels = \"a\"");
        assert_eq!(parse_page_token(&t, "labels = \"a\""), Some(20));
        assert_eq!(parse_page_token(&t, "labels = \"b\""), None);
        assert_eq!(parse_page_token("garbage", "labels = \"a\""), None);
    }

    #[test]
    fn workflow_reopens_only_from_done_statuses() {
        let names = |s: &str| -> Vec<&str> {
            workflow::transitions_from(s)
                .iter()
                .map(|t| t.name)
                .collect()
        };
        assert_eq!(names("To Do"), ["Start Progress", "Done", "Won't Do"]);
        assert_eq!(names("Done"), ["Reopen"]);
        assert_eq!(names("Won't Do"), ["Reopen"]);
        assert!(!names("In Progress").contains(&"Reopen"));
    }

    #[test]
    fn summary_rules_match_jira() {
        for (value, ok) in [
            (json!("fine"), true),
            (json!(""), false),
            (json!("two\nlines"), false),
            (json!("x".repeat(255)), true),
            (json!("x".repeat(256)), false),
            (json!(5), false),
        ] {
            let mut errors = Map::new();
            validate_summary(&value, &mut errors);
            assert_eq!(errors.is_empty(), ok, "{value}");
        }
    }

    #[test]
    fn custom_field_names_are_recognised() {
        assert!(is_custom_field("customfield_10042"));
        assert!(!is_custom_field("customfield_"));
        assert!(!is_custom_field("customfield_x1"));
    }
}
