//! Operator views under `/_sim`: what the simulated services hold, and the actions a person on the
//! other side would take. Never subject to injected faults, so a demo can always look inside.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::Faults;
use crate::state::{FindingErrorKind, JiraIssue, ServiceNowRecord, SharedState, SimError};

/// Prefix of the marker label / `correlation_id` findings-bridge puts on its tickets.
const MARKER_PREFIX: &str = "fb-";
/// ServiceNow states that end an incident: Resolved, Closed, Canceled.
const SN_DONE_STATES: [&str; 3] = ["6", "7", "8"];

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_sim/tickets", get(tickets))
        .route("/_sim/writebacks", get(writebacks))
        .route("/_sim/findings", get(findings))
        .route("/_sim/findings/errors", post(finding_error))
        .route("/_sim/stats", get(stats))
        .route("/_sim/faults", get(get_faults).post(set_faults))
        .route("/_sim/jira/{key}/transition", post(jira_transition))
        .route(
            "/_sim/servicenow/{table}/{sys_id}/state",
            post(servicenow_state),
        )
        .route("/_sim/setup", get(get_setup).post(set_setup))
}

fn sim_error(e: &SimError) -> Response {
    let status = match e {
        SimError::NoSuchIssue(_) | SimError::NoSuchRecord { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    (status, Json(json!({"error": e.to_string()}))).into_response()
}

/// The facts a harness counts tickets by, the same for both systems.
#[derive(Serialize)]
struct TicketSummary {
    system: &'static str,
    /// Jira key or ServiceNow `sys_id`.
    id: String,
    /// ServiceNow number (INC…); the key again for Jira.
    number: String,
    /// Jira: the first label starting with `fb-`; ServiceNow: `correlation_id`.
    marker: Option<String>,
    status: String,
    /// Jira status category `done`; ServiceNow state Resolved, Closed or Canceled.
    done: bool,
    /// Jira comments; ServiceNow journal entries (work notes and comments).
    comment_count: usize,
    created: String,
}

fn jira_summary(issue: &JiraIssue) -> TicketSummary {
    TicketSummary {
        system: "jira",
        id: issue.key.clone(),
        number: issue.key.clone(),
        marker: issue
            .labels
            .iter()
            .find(|l| l.starts_with(MARKER_PREFIX))
            .cloned(),
        status: issue.status.clone(),
        done: issue.status_category == "done",
        comment_count: issue.comments.len(),
        created: issue.created.to_rfc3339(),
    }
}

fn servicenow_summary(record: &ServiceNowRecord) -> TicketSummary {
    let state = record.get("state").unwrap_or_default();
    TicketSummary {
        system: "servicenow",
        id: record.sys_id.clone(),
        number: record.get("number").unwrap_or_default().to_owned(),
        marker: record
            .get("correlation_id")
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        status: state.to_owned(),
        done: SN_DONE_STATES.contains(&state),
        comment_count: record.journal.len(),
        created: record.get("sys_created_on").unwrap_or_default().to_owned(),
    }
}

/// Each ticket's full JSON with its summary's `marker`, `done` and `comment_count` added.
fn with_summary<T: Serialize>(ticket: &T, summary: &TicketSummary) -> Value {
    let mut value = serde_json::to_value(ticket).unwrap_or(Value::Null);
    if let Some(o) = value.as_object_mut() {
        o.insert("marker".into(), json!(summary.marker));
        o.insert("done".into(), json!(summary.done));
        o.insert("comment_count".into(), json!(summary.comment_count));
    }
    value
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketsParams {
    /// `summary`: one compact [`TicketSummary`] per ticket, in one list.
    view: Option<String>,
}

/// `GET /_sim/tickets`: every ticket in full (`{"jira": [...], "servicenow": [...]}`, each with
/// `marker`, `done` and `comment_count`), or with `?view=summary` only those facts:
/// `{"tickets": [{"system", "id", "number", "marker", "status", "done", "comment_count", "created"}]}`.
async fn tickets(State(st): State<SharedState>, Query(params): Query<TicketsParams>) -> Response {
    let jira = st.jira_issues();
    let servicenow = st.servicenow_records();
    match params.view.as_deref() {
        None | Some("full") => Json(json!({
            "jira": jira.iter().map(|i| with_summary(i, &jira_summary(i))).collect::<Vec<_>>(),
            "servicenow": servicenow
                .iter()
                .map(|r| with_summary(r, &servicenow_summary(r)))
                .collect::<Vec<_>>(),
        }))
        .into_response(),
        Some("summary") => {
            let tickets: Vec<TicketSummary> = jira
                .iter()
                .map(jira_summary)
                .chain(servicenow.iter().map(servicenow_summary))
                .collect();
            Json(json!({ "tickets": tickets })).into_response()
        }
        Some(other) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("unknown view {other:?}: use full or summary")})),
        )
            .into_response(),
    }
}

async fn writebacks(State(st): State<SharedState>) -> Response {
    Json(st.writebacks()).into_response()
}

async fn findings(State(st): State<SharedState>) -> Response {
    Json(st.findings()).into_response()
}

async fn stats(State(st): State<SharedState>) -> Response {
    Json(st.stats()).into_response()
}

async fn get_faults(State(st): State<SharedState>) -> Response {
    Json(st.faults()).into_response()
}

async fn set_faults(State(st): State<SharedState>, body: axum::body::Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
                .into_response();
        }
    };
    match st.set_faults(faults) {
        Ok(()) => Json(st.faults()).into_response(),
        Err(e) => sim_error(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionRequest {
    to: String,
}

async fn jira_transition(
    State(st): State<SharedState>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let req: TransitionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
                .into_response();
        }
    };
    match st.transition_issue(&key, &req.to) {
        Ok(issue) => Json(issue).into_response(),
        Err(e) => sim_error(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateRequest {
    state: String,
}

async fn servicenow_state(
    State(st): State<SharedState>,
    Path((table, sys_id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let req: StateRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
                .into_response();
        }
    };
    match st.set_servicenow_state(&table, &sys_id, &req.state) {
        Ok(record) => Json(record).into_response(),
        Err(e) => sim_error(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingErrorRequest {
    id: String,
    /// `None` clears the error for this finding.
    error: Option<FindingErrorKind>,
}

async fn finding_error(State(st): State<SharedState>, body: axum::body::Bytes) -> Response {
    let req: FindingErrorRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
                .into_response();
        }
    };
    match req.error {
        Some(kind) => st.set_finding_error(&req.id, kind),
        None => st.clear_finding_error(&req.id),
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_sim/setup`: how the Jira projects and the ServiceNow instance are set up.
async fn get_setup(State(st): State<SharedState>) -> Response {
    Json(st.setup()).into_response()
}

/// `POST /_sim/setup`: replaces the whole set-up; a field left out goes back to its default.
async fn set_setup(State(st): State<SharedState>, body: axum::body::Bytes) -> Response {
    let setup: crate::setup::Setup = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
                .into_response();
        }
    };
    match st.set_setup(setup) {
        Ok(()) => Json(st.setup()).into_response(),
        Err(e) => sim_error(&e),
    }
}
