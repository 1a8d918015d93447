//! Ticket-system webhooks: a ticket changed, so sync its status to Security Hub now instead of
//! at the next poll. The poller stays the backstop for anything a webhook misses.
//!
//! # Jira — `POST /webhooks/jira`
//! An admin webhook (System → WebHooks) for the *Issue updated* event, JQL
//! `labels = "findings-bridge"`, with a secret (`JIRA_WEBHOOK_SECRET`). Jira signs the raw body:
//! `X-Hub-Signature: sha256=<hex HMAC-SHA256>`. Only `jira:issue_updated` events are acted on,
//! and only when the changelog, if present, touches `status`; the issue's marker comes from its
//! labels.
//!
//! # ServiceNow — `POST /webhooks/servicenow`
//! ServiceNow has no signed outbound webhooks, so the request carries the shared secret
//! (`SERVICENOW_WEBHOOK_SECRET`) in the `X-Bridge-Secret` header and must travel over HTTPS.
//! The body is `{"sys_id": "...", "table": "incident", "number": "INC0010001",
//! "correlation_id": "fb-..."}` (`sys_id` and `correlation_id` are what the bridge uses).
//! An admin installs an *async, after update* business rule on the polled table with the
//! condition `Correlation display is findings-bridge` AND `State changes`:
//!
//! ```javascript
//! (function executeRule(current, previous) {
//!     var request = new sn_ws.RESTMessageV2();
//!     request.setEndpoint(gs.getProperty('findings_bridge.webhook_url')); // https://…/webhooks/servicenow
//!     request.setHttpMethod('POST');
//!     request.setRequestHeader('Content-Type', 'application/json');
//!     request.setRequestHeader('X-Bridge-Secret', gs.getProperty('findings_bridge.webhook_secret'));
//!     request.setRequestBody(JSON.stringify({
//!         sys_id: current.getUniqueValue(),
//!         table: current.getTableName(),
//!         number: current.getValue('number'),
//!         correlation_id: current.getValue('correlation_id')
//!     }));
//!     request.executeAsync();
//! })(current, previous);
//! ```
//! (store the secret in a password-type system property).
//!
//! # Answers
//! 404 when the endpoint's secret is not configured (the route does not exist); 401 when the
//! signature or secret is missing or wrong (checked before the body is parsed, in constant time);
//! 413 above [`crate::runtime::server::BODY_LIMIT`]; 400 for a body that is not the expected JSON; 202
//! otherwise, with `{"outcome": …}` — `ignored` (not an update, not a status change, not a bridge
//! ticket), the sync's result, or `deferred` when the sync failed or took longer than
//! [`RESPOND_WITHIN`] (it keeps running; the poller catches anything it misses). 503 when
//! [`MAX_CONCURRENT_SYNCS`] syncs are already running, so a burst cannot exhaust the ticket
//! system's rate limit.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::marker::Marker;
use crate::runtime::server::BODY_LIMIT;
use crate::runtime::tasks::Tasks;
use crate::runtime::telemetry::{self, ErrorKind, WebhookOutcome};
use crate::sync::{StatusSync, TicketSyncOutcome};
use crate::ticket::jira::webhook::SigningKey;
use crate::ticket::servicenow::webhook::SharedSecret;

/// Header carrying Jira's body signature.
pub use crate::ticket::jira::webhook::SIGNATURE_HEADER as JIRA_SIGNATURE_HEADER;
/// Header carrying the ServiceNow shared secret.
pub use crate::ticket::servicenow::webhook::SECRET_HEADER as SERVICENOW_SECRET_HEADER;
/// Environment variables of the two secrets.
pub const JIRA_SECRET_ENV: &str = "JIRA_WEBHOOK_SECRET";
pub const SERVICENOW_SECRET_ENV: &str = "SERVICENOW_WEBHOOK_SECRET";
/// Connection names the two endpoints sync through.
pub const JIRA_CONNECTION: &str = "jira";
pub const SERVICENOW_CONNECTION: &str = "servicenow";

/// Syncs running at once from webhooks; more answer 503.
pub const MAX_CONCURRENT_SYNCS: usize = 8;
/// How long a webhook waits for its sync before answering `deferred` (Jira gives up on a
/// webhook after about 10 s).
pub const RESPOND_WITHIN: Duration = Duration::from_secs(5);

/// The configured secrets; an endpoint without one does not exist.
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    pub jira: Option<SecretString>,
    pub servicenow: Option<SecretString>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |s: &Option<SecretString>| s.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("WebhookSecrets")
            .field("jira", &shown(&self.jira))
            .field("servicenow", &shown(&self.servicenow))
            .finish()
    }
}

impl WebhookSecrets {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> WebhookSecrets {
        let secret = |name| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .map(SecretString::from)
        };
        WebhookSecrets {
            jira: secret(JIRA_SECRET_ENV),
            servicenow: secret(SERVICENOW_SECRET_ENV),
        }
    }
}

struct WebhookState {
    sync: Arc<StatusSync>,
    jira_key: Option<SigningKey>,
    servicenow_secret: Option<SharedSecret>,
    permits: Arc<Semaphore>,
    /// Where syncs run; shutdown waits for them.
    tasks: Tasks,
}

/// `POST /webhooks/jira` and `POST /webhooks/servicenow`, each only when its secret is set.
/// Merge into [`crate::runtime::server::router`]; the body limit is applied here too, so the router is
/// safe to serve on its own.
pub fn router(sync: Arc<StatusSync>, secrets: WebhookSecrets, tasks: Tasks) -> Router {
    let servicenow_secret = secrets.servicenow.as_ref().and_then(SharedSecret::new);
    let has_jira = secrets.jira.is_some();
    let has_servicenow = servicenow_secret.is_some();
    let state = Arc::new(WebhookState {
        sync,
        jira_key: secrets.jira.map(SigningKey::new),
        servicenow_secret,
        permits: Arc::new(Semaphore::new(MAX_CONCURRENT_SYNCS)),
        tasks,
    });
    let mut router = Router::new();
    if has_jira {
        router = router.route("/webhooks/jira", post(jira));
    }
    if has_servicenow {
        router = router.route("/webhooks/servicenow", post(servicenow));
    }
    router
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Why a request was turned away before any work.
fn reject(system: &str, status: StatusCode, why: &str) -> Response {
    telemetry::webhook_received(system, WebhookOutcome::Rejected);
    telemetry::error(ErrorKind::Webhook);
    tracing::warn!(system, status = status.as_u16(), why, "webhook rejected");
    (status, axum::Json(json!({ "error": why }))).into_response()
}

fn ignored(system: &str, why: &str) -> Response {
    telemetry::webhook_received(system, WebhookOutcome::Ignored);
    tracing::debug!(system, why, "webhook ignored");
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "outcome": "ignored", "why": why })),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct JiraEvent {
    #[serde(rename = "webhookEvent", default)]
    webhook_event: Option<String>,
    #[serde(default)]
    issue: Option<JiraIssue>,
    #[serde(default)]
    changelog: Option<JiraChangelog>,
}

#[derive(Debug, Deserialize)]
struct JiraIssue {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    fields: Option<JiraIssueFields>,
}

#[derive(Debug, Deserialize)]
struct JiraIssueFields {
    #[serde(default)]
    labels: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct JiraChangelog {
    #[serde(default)]
    items: Vec<JiraChange>,
}

#[derive(Debug, Deserialize)]
struct JiraChange {
    #[serde(default)]
    field: Option<String>,
}

async fn jira(State(state): State<Arc<WebhookState>>, headers: HeaderMap, body: Bytes) -> Response {
    const SYSTEM: &str = JIRA_CONNECTION;
    let Some(key) = state.jira_key.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(signature) = headers.get(JIRA_SIGNATURE_HEADER) else {
        return reject(SYSTEM, StatusCode::UNAUTHORIZED, "missing X-Hub-Signature");
    };
    let valid = signature.to_str().is_ok_and(|sig| key.verify(sig, &body));
    if !valid {
        return reject(SYSTEM, StatusCode::UNAUTHORIZED, "bad X-Hub-Signature");
    }
    let event: JiraEvent = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(_) => {
            return reject(
                SYSTEM,
                StatusCode::BAD_REQUEST,
                "body is not a Jira webhook event",
            );
        }
    };
    if event.webhook_event.as_deref() != Some("jira:issue_updated") {
        return ignored(SYSTEM, "not a jira:issue_updated event");
    }
    let Some(issue) = event.issue else {
        return reject(SYSTEM, StatusCode::BAD_REQUEST, "event has no issue");
    };
    let Some(issue_key) = issue.key.filter(|k| !k.trim().is_empty()) else {
        return reject(SYSTEM, StatusCode::BAD_REQUEST, "event has no issue.key");
    };
    if let Some(changelog) = &event.changelog
        && !changelog.items.is_empty()
        && !changelog.items.iter().any(|item| {
            item.field
                .as_deref()
                .is_some_and(|f| f.eq_ignore_ascii_case("status"))
        })
    {
        return ignored(SYSTEM, "the status did not change");
    }
    let marker = issue
        .fields
        .and_then(|f| f.labels)
        .unwrap_or_default()
        .iter()
        .find_map(|label| Marker::parse(label));
    let Some(marker) = marker else {
        return ignored(SYSTEM, "not a findings-bridge ticket");
    };
    sync_now(&state, SYSTEM, marker, issue_key).await
}

#[derive(Debug, Deserialize)]
struct ServiceNowEvent {
    sys_id: String,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
}

async fn servicenow(
    State(state): State<Arc<WebhookState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const SYSTEM: &str = SERVICENOW_CONNECTION;
    let Some(expected) = state.servicenow_secret.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(provided) = headers.get(SERVICENOW_SECRET_HEADER) else {
        return reject(SYSTEM, StatusCode::UNAUTHORIZED, "missing X-Bridge-Secret");
    };
    let valid = provided.to_str().is_ok_and(|p| expected.matches(p));
    if !valid {
        return reject(SYSTEM, StatusCode::UNAUTHORIZED, "bad X-Bridge-Secret");
    }
    let event: ServiceNowEvent = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(_) => {
            return reject(
                SYSTEM,
                StatusCode::BAD_REQUEST,
                "body must be a JSON object with sys_id (and correlation_id)",
            );
        }
    };
    if event.sys_id.trim().is_empty() {
        return reject(SYSTEM, StatusCode::BAD_REQUEST, "sys_id is empty");
    }
    let Some(marker) = event.correlation_id.as_deref().and_then(Marker::parse) else {
        return ignored(SYSTEM, "not a findings-bridge ticket");
    };
    tracing::debug!(
        table = event.table.as_deref(),
        number = event.number.as_deref(),
        "ServiceNow webhook"
    );
    sync_now(&state, SYSTEM, marker, event.sys_id).await
}

/// Runs the sync on its own task (a client hanging up must not cancel a half-done write) and
/// waits for it a bounded time.
async fn sync_now(
    state: &Arc<WebhookState>,
    system: &'static str,
    marker: Marker,
    ticket_id: String,
) -> Response {
    let Ok(permit) = Arc::clone(&state.permits).try_acquire_owned() else {
        telemetry::webhook_received(system, WebhookOutcome::Rejected);
        tracing::warn!(
            system,
            "too many webhook syncs running; asking the sender to retry"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            axum::Json(json!({ "error": "busy" })),
        )
            .into_response();
    };
    telemetry::webhook_received(system, WebhookOutcome::Accepted);
    let sync = Arc::clone(&state.sync);
    let task_marker = marker.clone();
    // The sync may outlive the answer (it is sent after RESPOND_WITHIN at the latest); it runs
    // as a tracked task so that shutdown waits for it within the grace period.
    let (done, outcome) = tokio::sync::oneshot::channel();
    state.tasks.spawn("webhook sync", async move {
        let _permit = permit;
        let _ = done.send(
            sync.sync_ticket(system, &task_marker, Some(&ticket_id))
                .await,
        );
    });
    let body = match tokio::time::timeout(RESPOND_WITHIN, outcome).await {
        Ok(Ok(Ok(outcome))) => outcome_json(&outcome),
        Ok(Ok(Err(e))) => {
            tracing::warn!(system, %marker, error = %e, "webhook sync failed; the poller will try again");
            json!({ "outcome": "deferred" })
        }
        Ok(Err(_)) => {
            tracing::error!(system, %marker, "webhook sync task stopped without an outcome");
            json!({ "outcome": "deferred" })
        }
        Err(_) => {
            tracing::info!(system, %marker, "webhook sync still running; answering early");
            json!({ "outcome": "deferred" })
        }
    };
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
}

fn outcome_json(outcome: &TicketSyncOutcome) -> serde_json::Value {
    serde_json::to_value(outcome).unwrap_or_else(|_| json!({ "outcome": "done" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_the_environment_and_never_print() {
        let secrets = WebhookSecrets::from_lookup(|name| match name {
            JIRA_SECRET_ENV => Some("jira-hush".to_owned()),
            SERVICENOW_SECRET_ENV => Some("  ".to_owned()),
            _ => None,
        });
        assert!(secrets.jira.is_some());
        assert!(secrets.servicenow.is_none(), "blank means disabled");
        let printed = format!("{secrets:?}");
        assert!(!printed.contains("jira-hush"), "{printed}");
        assert!(printed.contains("[REDACTED]"), "{printed}");
    }
}
