//! What Jira tells a client about creating issues, from the simulator's [`crate::setup::Setup`]:
//! `GET /rest/api/{2,3}/issue/createmeta/{project}/issuetypes[/{id}]` (paged by `startAt` /
//! `maxResults`: Cloud answers `issueTypes` / `fields` with `total`, Data Center `values` with
//! `isLast` as well), `GET /rest/api/{2,3}/mypermissions` and `GET /rest/api/{2,3}/priority`.
//!
//! As in Jira, createmeta shows nothing to an account without CREATE_ISSUES in the project, a
//! project that does not exist (or is gone) is a 404, and `mypermissions` needs `permissions`.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::jira::{PRIORITIES, Ver, authorize, error, existing_project};
use crate::reply::Rejection;
use crate::setup::{PERMISSIONS, ScreenField};
use crate::state::SharedState;

/// Jira's default page size, and the most one page may hold.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 200;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/rest/api/{ver}/issue/createmeta/{project}/issuetypes",
            get(issue_types),
        )
        .route(
            "/rest/api/{ver}/issue/createmeta/{project}/issuetypes/{id}",
            get(fields),
        )
        .route("/rest/api/{ver}/mypermissions", get(my_permissions))
        .route("/rest/api/{ver}/priority", get(priorities))
}

#[derive(Deserialize)]
struct PageParams {
    #[serde(rename = "startAt")]
    start_at: Option<String>,
    #[serde(rename = "maxResults")]
    max_results: Option<String>,
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, &[message], Map::new())
}

/// The API version and the project of a createmeta request, or the answer that refuses it.
fn authorized_project(
    st: &SharedState,
    ver: &str,
    key: &str,
    headers: &HeaderMap,
) -> Result<(Ver, String), Rejection> {
    let ver = authorize(st, ver, headers)?;
    Ok((ver, existing_project(st, key)?))
}

/// One page of `items` in the shape of the API version: Cloud (`key`, `total`) or Data Center
/// (`values`, `total`, `isLast`).
fn page(ver: Ver, cloud_key: &str, items: Vec<Value>, params: &PageParams) -> Response {
    let count = |value: Option<&str>, default: usize| match value {
        None | Some("") => Some(default),
        Some(v) => v.parse::<usize>().ok(),
    };
    let Some(start) = count(params.start_at.as_deref(), 0) else {
        return bad_request("startAt must be a non-negative integer");
    };
    let Some(max) = count(params.max_results.as_deref(), DEFAULT_PAGE) else {
        return bad_request("maxResults must be a non-negative integer");
    };
    let max = max.clamp(1, MAX_PAGE);
    let total = items.len();
    let shown: Vec<Value> = items.into_iter().skip(start).take(max).collect();
    let is_last = start + shown.len() >= total;
    let body = match ver {
        Ver::V3 => json!({cloud_key: shown, "maxResults": max, "startAt": start, "total": total}),
        Ver::V2 => json!({
            "maxResults": max, "startAt": start, "total": total, "isLast": is_last, "values": shown,
        }),
    };
    axum::Json(body).into_response()
}

fn may_create(st: &SharedState, project: &str) -> bool {
    let setup = st.setup();
    setup.has_permission(project, "BROWSE_PROJECTS")
        && setup.has_permission(project, "CREATE_ISSUES")
}

fn issue_type_json(base: &str, ver: Ver, id: &str, name: &str) -> Value {
    json!({
        "self": format!("{base}/rest/api/{}/issuetype/{id}", ver.as_str()),
        "id": id,
        "name": name,
        "description": format!("A {name}."),
        "subtask": false,
        "hierarchyLevel": if name == "Epic" { 1 } else { 0 },
    })
}

async fn issue_types(
    State(st): State<SharedState>,
    Path((ver, key)): Path<(String, String)>,
    Query(params): Query<PageParams>,
    headers: HeaderMap,
) -> Response {
    let (ver, key) = match authorized_project(&st, &ver, &key, &headers) {
        Ok(found) => found,
        Err(r) => return r.into_response(),
    };
    let base = st.base_url();
    let items = if may_create(&st, &key) {
        st.setup()
            .issue_types(&key)
            .into_iter()
            .map(|(id, name)| issue_type_json(&base, ver, id, name))
            .collect()
    } else {
        Vec::new()
    };
    page(ver, "issueTypes", items, &params)
}

fn field_json(
    base: &str,
    ver: Ver,
    field: &ScreenField,
    project: &str,
    issue_type: &Value,
) -> Value {
    let custom = field.id.strip_prefix("customfield_");
    let schema = match custom {
        Some(n) => json!({
            "type": field.kind,
            "custom": "com.atlassian.jira.plugin.system.customfieldtypes:textfield",
            "customId": n.parse::<u64>().unwrap_or_default(),
        }),
        None => json!({"type": field.kind, "system": field.id}),
    };
    let operations = match field.id.as_str() {
        "labels" | "components" | "fixVersions" | "versions" => json!(["add", "set", "remove"]),
        _ => json!(["set"]),
    };
    let mut out = json!({
        "required": field.required,
        "schema": schema,
        "name": field.name,
        "key": field.id,
        "fieldId": field.id,
        "hasDefaultValue": field.has_default,
        "operations": operations,
    });
    let allowed = match field.id.as_str() {
        "priority" => Some(
            PRIORITIES
                .iter()
                .map(|(id, name)| {
                    json!({"self": format!("{base}/rest/api/{}/priority/{id}", ver.as_str()),
                           "id": id, "name": name})
                })
                .collect::<Vec<_>>(),
        ),
        "issuetype" => Some(vec![issue_type.clone()]),
        "project" => Some(vec![json!({"key": project, "name": project})]),
        _ => None,
    };
    if let Some(allowed) = allowed {
        out["allowedValues"] = Value::Array(allowed);
    }
    out
}

async fn fields(
    State(st): State<SharedState>,
    Path((ver, key, id)): Path<(String, String, String)>,
    Query(params): Query<PageParams>,
    headers: HeaderMap,
) -> Response {
    let (ver, key) = match authorized_project(&st, &ver, &key, &headers) {
        Ok(found) => found,
        Err(r) => return r.into_response(),
    };
    let setup = st.setup();
    let Some((id, name)) = setup.issue_types(&key).into_iter().find(|(i, _)| *i == id) else {
        return error(
            StatusCode::NOT_FOUND,
            &[&format!(
                "Issue type with id '{id}' does not exist in project {key}."
            )],
            Map::new(),
        );
    };
    let base = st.base_url();
    let issue_type = issue_type_json(&base, ver, id, name);
    let items = if may_create(&st, &key) {
        setup
            .screen(&key, name)
            .iter()
            .map(|f| field_json(&base, ver, f, &key, &issue_type))
            .collect()
    } else {
        Vec::new()
    };
    page(ver, "fields", items, &params)
}

#[derive(Deserialize)]
struct PermissionParams {
    #[serde(rename = "projectKey")]
    project_key: Option<String>,
    permissions: Option<String>,
}

async fn my_permissions(
    State(st): State<SharedState>,
    Path(ver): Path<String>,
    Query(params): Query<PermissionParams>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&st, &ver, &headers) {
        return r.into_response();
    }
    let Some(wanted) = params.permissions.filter(|p| !p.trim().is_empty()) else {
        return bad_request("The permissions query parameter is required.");
    };
    let project = match params.project_key.as_deref() {
        Some(key) => match existing_project(&st, key) {
            Ok(k) => Some(k),
            Err(r) => return r.into_response(),
        },
        None => None,
    };
    let setup = st.setup();
    let mut out = Map::new();
    for key in wanted.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        let Some((_, name)) = PERMISSIONS.iter().find(|(k, _)| *k == key) else {
            return bad_request(&format!("Unrecognized permission key: {key}"));
        };
        // Without a project: held in some project, which the account always is here.
        let have = project
            .as_deref()
            .is_none_or(|p| setup.has_permission(p, key));
        out.insert(
            key.to_owned(),
            json!({
                "id": format!("{}", 10 + out.len()),
                "key": key,
                "name": name,
                "type": "PROJECT",
                "description": format!("Ability to {}.", name.to_lowercase()),
                "havePermission": have,
            }),
        );
    }
    axum::Json(json!({ "permissions": out })).into_response()
}

async fn priorities(
    State(st): State<SharedState>,
    Path(ver): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ver = match authorize(&st, &ver, &headers) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let base = st.base_url();
    let list: Vec<Value> = PRIORITIES
        .iter()
        .map(|(id, name)| {
            json!({
                "self": format!("{base}/rest/api/{}/priority/{id}", ver.as_str()),
                "id": id,
                "name": name,
                "statusColor": "#cccccc",
                "description": format!("{name} priority."),
                "iconUrl": format!("{base}/images/icons/priorities/{}.svg", name.to_lowercase()),
            })
        })
        .collect();
    axum::Json(list).into_response()
}
