//! Operator views under `/_sim`: what the simulated services hold, and the actions a person on the
//! other side would take. Never subject to injected faults, so a demo can always look inside.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::config::Faults;
use crate::state::{FindingErrorKind, SharedState, SimError};

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
}

fn sim_error(e: &SimError) -> Response {
    let status = match e {
        SimError::NoSuchIssue(_) | SimError::NoSuchRecord { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    (status, Json(json!({"error": e.to_string()}))).into_response()
}

async fn tickets(State(st): State<SharedState>) -> Response {
    Json(json!({"jira": st.jira_issues(), "servicenow": st.servicenow_records()})).into_response()
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
