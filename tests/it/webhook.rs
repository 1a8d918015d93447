//! Webhooks through the real HTTP server (`server::serve`, merged with the health routes) on
//! 127.0.0.1: authentication, body limit, and a valid event syncing its ticket at once against
//! the simulator.

use crate::sync_harness;

use std::net::SocketAddr;
use std::sync::Arc;

use findings_bridge::marker::Marker;
use findings_bridge::runtime::server::{self, BODY_LIMIT, BoxFuture, Readiness, ServerState};
use findings_bridge::runtime::tasks::Tasks;
use findings_bridge::sync::SyncConfig;
use findings_bridge::sync::webhooks::{self, WebhookSecrets};
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::Sha256;
use sync_harness::{Harness, finding_id, harness, hub_writer};
use tokio::sync::oneshot;

const JIRA_SECRET: &str = "jira-webhook-secret";
const SERVICENOW_SECRET: &str = "servicenow-shared-secret";

struct AlwaysReady;

impl Readiness for AlwaysReady {
    fn check(&self) -> BoxFuture<'_, Vec<(String, Result<(), String>)>> {
        Box::pin(async { Vec::new() })
    }
}

struct Bridge {
    h: Harness,
    addr: SocketAddr,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

async fn bridge(secrets: WebhookSecrets) -> Bridge {
    let h = harness(50).await;
    let writer = Arc::new(hub_writer(&h.sim.base_url).await);
    let sync = Arc::new(h.sync(writer, SyncConfig::default()));
    let state = ServerState::new(
        findings_bridge::runtime::telemetry::install_metrics(),
        Arc::new(AlwaysReady),
    );
    let app = server::router(state).merge(webhooks::router(sync, secrets, Tasks::new()));
    let (stop, stopped) = oneshot::channel::<()>();
    let (addr, _task) = server::serve("127.0.0.1:0".parse().unwrap(), app, async {
        let _ = stopped.await;
    })
    .await
    .expect("server binds");
    Bridge {
        h,
        addr,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        _stop: stop,
    }
}

fn both() -> WebhookSecrets {
    WebhookSecrets {
        jira: Some(SecretString::from(JIRA_SECRET)),
        servicenow: Some(SecretString::from(SERVICENOW_SECRET)),
    }
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(JIRA_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn issue_updated(key: &str, marker: &Marker, to: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "timestamp": 1_772_000_000_000_i64,
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "user": {"accountId": "5b10a2844c20165700ede21g", "displayName": "Dana"},
        "issue": {
            "id": "10001",
            "key": key,
            "fields": {
                "labels": ["findings-bridge", marker.as_str(), "security-hub"],
                "status": {"name": to, "statusCategory": {"key": "done"}}
            }
        },
        "changelog": {"id": "1", "items": [
            {"field": "status", "fieldtype": "jira", "fromString": "To Do", "toString": to}
        ]}
    }))
    .unwrap()
}

impl Bridge {
    async fn post(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request reaches the server");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn jira(&self, body: Vec<u8>, signature: Option<&str>) -> (u16, Value) {
        let headers: Vec<(&str, &str)> = signature
            .map(|s| vec![("X-Hub-Signature", s)])
            .unwrap_or_default();
        self.post("/webhooks/jira", &headers, body).await
    }
}

#[tokio::test]
async fn a_signed_jira_update_syncs_the_ticket_at_once() {
    let b = bridge(both()).await;
    let (ticket, marker) = b.h.jira_ticket(0).await;
    b.h.sim.state.transition_issue(&ticket.key, "Done").unwrap();
    let body = issue_updated(&ticket.key, &marker, "Done");
    let (status, answer) = b.jira(body.clone(), Some(&sign(&body))).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer, json!({"outcome": "written", "status": "RESOLVED"}));
    assert_eq!(
        b.h.sim.state.finding_workflow(&finding_id(0)).as_deref(),
        Some("RESOLVED")
    );
    assert_eq!(
        b.h.stored(&marker).await.status_to_hub.as_deref(),
        Some("RESOLVED")
    );

    // Jira retries the delivery: nothing is written twice.
    let writebacks = b.h.sim.state.writebacks().len();
    let (status, answer) = b.jira(body.clone(), Some(&sign(&body))).await;
    assert_eq!(status, 202);
    assert_eq!(answer, json!({"outcome": "skipped", "reason": "unchanged"}));
    assert_eq!(b.h.sim.state.writebacks().len(), writebacks);
}

#[tokio::test]
async fn jira_requests_without_a_valid_signature_are_refused_before_any_work() {
    let b = bridge(both()).await;
    let (ticket, marker) = b.h.jira_ticket(0).await;
    b.h.sim.state.transition_issue(&ticket.key, "Done").unwrap();
    let body = issue_updated(&ticket.key, &marker, "Done");
    let get_issue = "GET /rest/api/3/issue/{key}";
    let reads = b.h.sim.state.request_count(get_issue);

    let (status, _) = b.jira(body.clone(), None).await;
    assert_eq!(status, 401, "missing signature");

    let mut other = Hmac::<Sha256>::new_from_slice(b"not-the-secret").unwrap();
    other.update(&body);
    let wrong_key = format!("sha256={}", hex::encode(other.finalize().into_bytes()));
    for bad in [
        wrong_key.as_str(),
        "sha256=00",
        "sha256=not-hex",
        &sign(b"another body"),
        "",
    ] {
        let (status, _) = b.jira(body.clone(), Some(bad)).await;
        assert_eq!(status, 401, "signature {bad:?}");
    }
    // The signature covers the raw bytes: re-serialising the same JSON breaks it.
    let reformatted =
        serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap();
    let (status, _) = b.jira(reformatted, Some(&sign(&body))).await;
    assert_eq!(status, 401);

    assert_eq!(b.h.sim.state.request_count(get_issue), reads);
    assert!(b.h.sim.state.writebacks().is_empty());
    assert_eq!(b.h.sim.state.finding_workflow(&finding_id(0)), None);
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let b = bridge(both()).await;
    let mut big = br#"{"webhookEvent":"jira:issue_updated","padding":""#.to_vec();
    big.resize(BODY_LIMIT + 1, b'x');
    let (status, _) = b.jira(big.clone(), Some(&sign(&big))).await;
    assert_eq!(status, 413);
    let (status, _) = b
        .post(
            "/webhooks/servicenow",
            &[("X-Bridge-Secret", SERVICENOW_SECRET)],
            big,
        )
        .await;
    assert_eq!(status, 413);
    // Just under the limit is read (and then judged on its content).
    let mut fits = br#"{"webhookEvent":"jira:worklog_updated","padding":""#.to_vec();
    fits.resize(BODY_LIMIT - 2, b'x');
    fits.extend_from_slice(b"\"}");
    let (status, answer) = b.jira(fits.clone(), Some(&sign(&fits))).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["outcome"], "ignored");
}

#[tokio::test]
async fn endpoints_without_a_configured_secret_do_not_exist() {
    let b = bridge(WebhookSecrets::default()).await;
    let body = br#"{"webhookEvent":"jira:issue_updated"}"#.to_vec();
    let (status, _) = b.jira(body.clone(), Some(&sign(&body))).await;
    assert_eq!(status, 404);
    let (status, _) = b
        .post(
            "/webhooks/servicenow",
            &[("X-Bridge-Secret", SERVICENOW_SECRET)],
            br#"{"sys_id":"x"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 404);

    let only_jira = bridge(WebhookSecrets {
        jira: Some(SecretString::from(JIRA_SECRET)),
        servicenow: None,
    })
    .await;
    let (status, _) = only_jira
        .post(
            "/webhooks/servicenow",
            &[("X-Bridge-Secret", SERVICENOW_SECRET)],
            br#"{"sys_id":"x"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 404);
    let health = only_jira
        .http
        .get(format!("http://{}/healthz", only_jira.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status().as_u16(),
        200,
        "merged with the health routes"
    );
}

#[tokio::test]
async fn verified_jira_events_that_are_not_status_changes_of_bridge_tickets_are_ignored() {
    let b = bridge(both()).await;
    let (ticket, marker) = b.h.jira_ticket(0).await;
    b.h.sim.state.transition_issue(&ticket.key, "Done").unwrap();
    let cases = [
        json!({"webhookEvent": "jira:issue_created", "issue": {"key": ticket.key}}),
        json!({"webhookEvent": "jira:issue_updated", "issue": {"key": ticket.key,
            "fields": {"labels": ["findings-bridge", marker.as_str()]}},
            "changelog": {"items": [{"field": "summary", "toString": "new title"}]}}),
        json!({"webhookEvent": "jira:issue_updated", "issue": {"key": "OPS-1",
            "fields": {"labels": ["ops"]}},
            "changelog": {"items": [{"field": "status", "toString": "Done"}]}}),
    ];
    for event in cases {
        let body = serde_json::to_vec(&event).unwrap();
        let (status, answer) = b.jira(body.clone(), Some(&sign(&body))).await;
        assert_eq!(status, 202, "{event}");
        assert_eq!(answer["outcome"], "ignored", "{event}: {answer}");
    }
    for bad in [
        b"not json".to_vec(),
        br#"{"webhookEvent":"jira:issue_updated"}"#.to_vec(),
        br#"{"webhookEvent":"jira:issue_updated","issue":{"fields":{"labels":"x"}}}"#.to_vec(),
    ] {
        let (status, _) = b.jira(bad.clone(), Some(&sign(&bad))).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&bad));
    }
    assert!(b.h.sim.state.writebacks().is_empty());
}

#[tokio::test]
async fn a_servicenow_event_with_the_shared_secret_syncs_the_record() {
    let b = bridge(both()).await;
    let (incident, marker) = b.h.servicenow_ticket(0).await;
    b.h.sim
        .state
        .set_servicenow_state("incident", &incident.id, "7")
        .unwrap();
    let body = serde_json::to_vec(&json!({
        "sys_id": incident.id,
        "table": "incident",
        "number": incident.key,
        "correlation_id": marker.as_str(),
    }))
    .unwrap();
    let path = "/webhooks/servicenow";

    let (status, _) = b.post(path, &[], body.clone()).await;
    assert_eq!(status, 401, "missing secret");
    for wrong in ["servicenow-shared-secre", "servicenow-shared-secretX", ""] {
        let (status, _) = b
            .post(path, &[("X-Bridge-Secret", wrong)], body.clone())
            .await;
        assert_eq!(status, 401, "{wrong:?}");
    }
    assert!(b.h.sim.state.writebacks().is_empty());

    let secret = [("X-Bridge-Secret", SERVICENOW_SECRET)];
    let (status, answer) = b.post(path, &secret, body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer, json!({"outcome": "written", "status": "RESOLVED"}));
    assert_eq!(
        b.h.sim.state.finding_workflow(&finding_id(0)).as_deref(),
        Some("RESOLVED")
    );

    // An event naming another record than the marker's is not trusted with the finding.
    let mismatched = serde_json::to_vec(&json!({
        "sys_id": "0000000000000000000000000000beef",
        "correlation_id": marker.as_str(),
    }))
    .unwrap();
    let (status, answer) = b.post(path, &secret, mismatched).await;
    assert_eq!(status, 202);
    assert_eq!(
        answer,
        json!({"outcome": "skipped", "reason": "other_ticket"})
    );

    let (status, answer) = b.post(path, &secret, br#"{"sys_id":"abc"}"#.to_vec()).await;
    assert_eq!((status, answer["outcome"].clone()), (202, json!("ignored")));
    let (status, _) = b
        .post(path, &secret, br#"{"number":"INC1"}"#.to_vec())
        .await;
    assert_eq!(status, 400, "sys_id is required");
    let (status, _) = b.post(path, &secret, b"[]".to_vec()).await;
    assert_eq!(status, 400);
}
