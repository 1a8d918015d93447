//! Whether the webhook endpoint each configured secret protects can be reached.
//!
//! The endpoints (`POST /webhooks/jira`, `POST /webhooks/servicenow`) are served by the worker
//! itself, on `BRIDGE_HTTP_ADDR`, and exist only while their secret is set. Jira and ServiceNow
//! reach them through whatever stands in front of the tasks (a load balancer), at a URL the bridge
//! is never told. So "reachable" means two things here, and preflight says which it checked:
//!
//! - always: the worker will listen where something outside its task can connect. A loopback
//!   `BRIDGE_HTTP_ADDR` (the default, `127.0.0.1:8080`) serves only the task itself: with a
//!   webhook secret set, that is a failure;
//! - when the public URL is given (`--jira-webhook-url`, `--servicenow-webhook-url`, the URL
//!   configured in Jira's webhook or in ServiceNow's business rule): a test event is sent there,
//!   signed or carrying the secret as the real sender would, and built so the bridge answers
//!   `202 {"outcome": "ignored"}` without touching any ticket. That answer proves the URL reaches
//!   a bridge holding the same secret; 401 means another secret, 404 no secret (or a path the
//!   load balancer does not forward).

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::report::{Check, Row};
use crate::sync::webhooks::{
    JIRA_SECRET_ENV, JIRA_SIGNATURE_HEADER, SERVICENOW_SECRET_ENV, SERVICENOW_SECRET_HEADER,
    WebhookSecrets,
};
use crate::ticket::TicketError;
use crate::ticket::http::{HttpClient, HttpSettings, TokioClock};
use crate::ticket::jira::webhook::SigningKey;

/// A Jira event the endpoint verifies and then ignores: not `jira:issue_updated`.
const JIRA_TEST_EVENT: &[u8] = br#"{"webhookEvent":"findings-bridge:preflight"}"#;
/// A ServiceNow event the endpoint verifies and then ignores: no bridge marker.
const SERVICENOW_TEST_EVENT: &[u8] = br#"{"sys_id":"findings-bridge-preflight"}"#;

/// One endpoint: what protects it, how the sender proves it knows the secret, and where the
/// endpoint is said to be.
struct Endpoint<'a> {
    system: &'static str,
    /// The name the test event's HTTP client reports under.
    client: &'static str,
    path: &'static str,
    /// The header that authenticates an event.
    header: &'static str,
    /// The header carries the secret itself (ServiceNow), not a signature of the body (Jira).
    secret_in_header: bool,
    test_event: &'static [u8],
    secret_env: &'static str,
    flag: &'static str,
    secret: Option<&'a SecretString>,
    url: Option<&'a Url>,
}

/// The rows of both endpoints: none for an endpoint without a secret and without a URL.
pub async fn checks(
    secrets: &WebhookSecrets,
    listen: SocketAddr,
    jira_url: Option<&Url>,
    servicenow_url: Option<&Url>,
) -> Vec<Row> {
    let endpoints = [
        Endpoint {
            system: "jira",
            client: "jira-webhook",
            path: "/webhooks/jira",
            header: JIRA_SIGNATURE_HEADER,
            secret_in_header: false,
            test_event: JIRA_TEST_EVENT,
            secret_env: JIRA_SECRET_ENV,
            flag: "--jira-webhook-url",
            secret: secrets.jira.as_ref(),
            url: jira_url,
        },
        Endpoint {
            system: "servicenow",
            client: "servicenow-webhook",
            path: "/webhooks/servicenow",
            header: SERVICENOW_SECRET_HEADER,
            secret_in_header: true,
            test_event: SERVICENOW_TEST_EVENT,
            secret_env: SERVICENOW_SECRET_ENV,
            flag: "--servicenow-webhook-url",
            secret: secrets.servicenow.as_ref(),
            url: servicenow_url,
        },
    ];
    let mut rows = Vec::new();
    for endpoint in &endpoints {
        let Some(secret) = endpoint.secret else {
            if let Some(url) = endpoint.url {
                rows.push(
                    Row::general(endpoint.system, Check::Webhook, url.as_str()).fail(
                        format!(
                            "{} is given but {} is not set: the worker serves no {}",
                            endpoint.flag, endpoint.secret_env, endpoint.path
                        ),
                        format!(
                            "set {} (the secret the sender uses) in the task's secrets",
                            endpoint.secret_env
                        ),
                    ),
                );
            }
            continue;
        };
        rows.push(listener(endpoint, listen));
        if let Some(url) = endpoint.url {
            rows.push(probe(endpoint, secret, url).await);
        }
    }
    rows
}

/// Whether the worker listens where the sender's side can connect.
fn listener(endpoint: &Endpoint<'_>, listen: SocketAddr) -> Row {
    let row = Row::general(
        endpoint.system,
        Check::Webhook,
        format!("{} on {listen}", endpoint.path),
    );
    if listen.ip().is_loopback() {
        return row.fail(
            format!(
                "{} is set, but BRIDGE_HTTP_ADDR={listen} is a loopback address: nothing outside the task can reach {}",
                endpoint.secret_env, endpoint.path
            ),
            format!(
                "set BRIDGE_HTTP_ADDR=0.0.0.0:{} (the port the load balancer forwards to)",
                listen.port()
            ),
        );
    }
    let probed = match endpoint.url {
        Some(_) => "probed below".to_owned(),
        None => format!(
            "not probed from outside: pass {} to send a test event",
            endpoint.flag
        ),
    };
    row.ok(format!("served on {listen}; {probed}"))
}

/// A test event sent to `url` the way the real sender sends it.
async fn probe(endpoint: &Endpoint<'_>, secret: &SecretString, url: &Url) -> Row {
    let row = Row::general(endpoint.system, Check::Webhook, url.as_str());
    let plain_remote = url.scheme() != "https"
        && !url.host_str().is_some_and(|h| {
            h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
    if endpoint.secret_in_header && plain_remote {
        // The secret itself travels in a header: never over plain HTTP to another host.
        return row.fail(
            format!("refusing to send {} over plain HTTP", endpoint.secret_env),
            format!(
                "pass the https:// URL ServiceNow calls to {}",
                endpoint.flag
            ),
        );
    }
    let settings = HttpSettings {
        rate_limit_per_sec: 0.0,
        ..HttpSettings::default()
    };
    let client = match HttpClient::new(
        endpoint.client,
        &settings,
        Arc::new(TokioClock::new()),
        vec![secret.clone()],
    ) {
        Ok(client) => client,
        Err(e) => {
            return row.fail(
                e.to_string(),
                "report this: the HTTP client cannot be built",
            );
        }
    };
    let value = if endpoint.secret_in_header {
        secret.expose_secret().to_owned()
    } else {
        SigningKey::new(secret.clone()).sign(endpoint.test_event)
    };
    // The endpoint ignores the event: sending it again changes nothing, so retries are safe.
    let answer = client
        .send("webhook_probe", |c| {
            c.post(url.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(endpoint.header, value.as_str())
                .body(endpoint.test_event)
        })
        .await;
    let ignored = |body: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v["outcome"] == "ignored")
    };
    match answer {
        Ok(response) if response.status == 202 && ignored(&response.body) => row.ok(format!(
            "a bridge with the same {} answered the test event (202, ignored)",
            endpoint.secret_env
        )),
        Ok(response) => row.fail(
            format!(
                "answered {} without the bridge's 202 ignored: something else serves this URL",
                response.status
            ),
            format!(
                "point the URL at the bridge's {} (load balancer rule)",
                endpoint.path
            ),
        ),
        Err(e) => {
            let (detail, fix) = refused(endpoint, &e);
            row.fail(detail, fix)
        }
    }
}

/// What a refused or unanswered test event means.
fn refused(endpoint: &Endpoint<'_>, error: &TicketError) -> (String, String) {
    let detail = error.to_string();
    let fix = match error.status() {
        Some(401) => format!(
            "the bridge there holds another {}: use the same secret in the task's secrets and in the sender",
            endpoint.secret_env
        ),
        Some(404) => format!(
            "nothing serves {} there: set {} on the bridge behind the URL, and forward the path to it",
            endpoint.path, endpoint.secret_env
        ),
        _ => format!(
            "make the URL reach the tasks: load balancer listener and target group, and the security group on {}'s port",
            endpoint.path
        ),
    };
    (detail, fix)
}
