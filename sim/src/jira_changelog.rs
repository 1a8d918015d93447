//! An issue's changelog, from the status changes the simulator keeps
//! ([`crate::state::JiraIssue::status_history`]), in the two shapes Jira serves it:
//!
//! - `GET /rest/api/{3,2}/issue/{key}/changelog?startAt=&maxResults=` (Cloud): one page of
//!   entries, oldest first, with `startAt`, `maxResults` (at most 100, the default), `total` and
//!   `isLast`;
//! - `GET /rest/api/{3,2}/issue/{key}?expand=changelog` (Data Center; Cloud answers it too):
//!   `changelog.histories`, every entry, oldest first.
//!
//! Each entry has an `id`, its `author` (`displayName`; the API user for changes clients made, a
//! person's name for the test helpers'), `created`, and one `status` item (`from`/`fromString`,
//! `to`/`toString`).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::jira::{authorize, find_issue, not_found, timestamp, workflow};
use crate::state::{JiraIssue, SharedState, StatusChange};

/// Jira Cloud's largest (and default) changelog page.
const MAX_PAGE: usize = 100;

pub(crate) fn routes() -> Router<SharedState> {
    Router::new().route("/rest/api/{ver}/issue/{key}/changelog", get(changelog_page))
}

/// Whether an issue read's `expand` asks for the changelog.
pub(crate) fn wants_changelog(expand: Option<&str>) -> bool {
    expand.is_some_and(|e| e.split(',').any(|part| part.trim() == "changelog"))
}

/// The `changelog` object of an issue read with `expand=changelog`.
pub(crate) fn expanded(issue: &JiraIssue) -> Value {
    let histories: Vec<Value> = entries(issue).collect();
    json!({
        "startAt": 0,
        "maxResults": histories.len(),
        "total": histories.len(),
        "histories": histories,
    })
}

fn entries(issue: &JiraIssue) -> impl Iterator<Item = Value> + '_ {
    issue
        .status_history
        .iter()
        .enumerate()
        .map(|(n, change)| entry(&issue.id, n, change))
}

fn status_id(name: &str) -> &'static str {
    workflow::status_by_name(name).map_or("", |s| s.id)
}

fn entry(issue_id: &str, n: usize, change: &StatusChange) -> Value {
    json!({
        "id": format!("{issue_id}{n:04}"),
        "author": {
            "accountId": format!("sim-{}", change.author.to_lowercase().replace(' ', "-")),
            "displayName": change.author,
            "active": true,
        },
        "created": timestamp(change.at),
        "items": [{
            "field": "status",
            "fieldtype": "jira",
            "fieldId": "status",
            "from": status_id(&change.from),
            "fromString": change.from,
            "to": status_id(&change.to),
            "toString": change.to,
        }],
    })
}

#[derive(Deserialize)]
struct PageParams {
    #[serde(rename = "startAt")]
    start_at: Option<usize>,
    #[serde(rename = "maxResults")]
    max_results: Option<usize>,
}

async fn changelog_page(
    State(st): State<SharedState>,
    Path((ver, key)): Path<(String, String)>,
    Query(params): Query<PageParams>,
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
    let total = issue.status_history.len();
    let start = params.start_at.unwrap_or(0);
    let max = params.max_results.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let values: Vec<Value> = entries(issue).skip(start).take(max).collect();
    axum::Json(json!({
        "self": format!("{base}/rest/api/{}/issue/{}/changelog?startAt={start}&maxResults={max}", ver.as_str(), issue.key),
        "startAt": start,
        "maxResults": max,
        "total": total,
        "isLast": start + values.len() >= total,
        "values": values,
    }))
    .into_response()
}
