//! Issue 18: credentials rotate without a restart. Secrets given as `<NAME>_SECRET_ARN` are read
//! from Secrets Manager (moto_server, see `tests/support/moto.rs`) at start, and read again when
//! the connection is paused for a refused credential (before each probe) and periodically
//! (`BRIDGE_SECRETS_REFRESH`). The ticket systems are wiremock on 127.0.0.1, answering 401 to the
//! old credential and success to the new one. Clients are built once, as `run` builds them
//! (`Config::tickets`, `run::ticket_connections`), and never rebuilt.
//!
//! Nothing here asserts timing: each test waits for its condition in a bounded loop.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use findings_bridge::commands::run::{self, TicketConnections};
use findings_bridge::config::{Config, TicketSettings};
use findings_bridge::pipeline::health::{self, Health, Probe, Subject};
use findings_bridge::runtime::shutdown::Shutdown;
use findings_bridge::store::sqlite::SqliteStore;
use findings_bridge::ticket::Blame;
use secrecy::ExposeSecret;
use serde_json::json;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// How long a condition may take before the test gives up (moto's first start included).
const PATIENCE: Duration = Duration::from_secs(60);
const EMAIL: &str = "bot@acme.test";

fn basic(email: &str, token: &str) -> String {
    let pair = format!("{email}:{token}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// The ticket settings of an environment made of `pairs`, as `run` reads them.
fn settings(pairs: &[(&str, &str)]) -> anyhow::Result<TicketSettings> {
    Config::from_pairs(pairs.iter().copied()).tickets()
}

async fn moto_sdk() -> aws_config::SdkConfig {
    let moto = support::moto::moto().await;
    support::moto::aws_config(&moto.endpoint).await
}

/// Creates a secret on moto and answers its ARN.
async fn create_secret(sdk: &aws_config::SdkConfig, value: &str) -> String {
    let created = aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(support::unique("fb-secret"))
        .secret_string(value)
        .send()
        .await
        .expect("create secret on moto");
    created.arn().expect("moto answers the ARN").to_owned()
}

/// Rotation as an operator (or a rotation function) does it: a new AWSCURRENT version.
async fn rotate(sdk: &aws_config::SdkConfig, arn: &str, value: &str) {
    aws_sdk_secretsmanager::Client::new(sdk)
        .put_secret_value()
        .secret_id(arn)
        .secret_string(value)
        .send()
        .await
        .expect("put secret value on moto");
}

async fn connections(
    pairs: &[(&str, &str)],
    sdk: &aws_config::SdkConfig,
) -> anyhow::Result<TicketConnections> {
    let sdk = sdk.clone();
    run::ticket_connections(settings(pairs)?, move || async move { Ok(sdk) }).await
}

/// Waits for `condition`, polling; panics with `what` after [`PATIENCE`].
async fn wait_for(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Jira answering 401 to `old` and success to `new`, for `myself` (the probe) and creates.
async fn jira_accepting(new: &str, old: &str) -> MockServer {
    let server = MockServer::start().await;
    for (authorization, ok) in [(new, true), (old, false)] {
        Mock::given(method("GET"))
            .and(path("/rest/api/3/myself"))
            .and(header("authorization", authorization))
            .respond_with(if ok {
                ResponseTemplate::new(200).set_body_json(json!({"accountId": "bot"}))
            } else {
                ResponseTemplate::new(401)
            })
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/rest/api/3/issue"))
            .and(header("authorization", authorization))
            .respond_with(if ok {
                ResponseTemplate::new(201).set_body_json(json!({"id": "10001", "key": "SEC-1"}))
            } else {
                ResponseTemplate::new(401)
            })
            .mount(&server)
            .await;
    }
    server
}

fn payload() -> serde_json::Value {
    json!({"fields": {"project": {"key": "SEC"}, "summary": "S3 bucket is public"}})
}

/// The Authorization header of the last request to `path_`.
async fn last_authorization(server: &MockServer, path_: &str) -> String {
    let requests = server.received_requests().await.unwrap_or_default();
    let last = requests
        .iter()
        .rev()
        .find(|r| r.url.path() == path_)
        .expect("a request was made");
    last.headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_rotated_jira_token_is_picked_up_by_the_probe_of_the_paused_connection() {
    let sdk = moto_sdk().await;
    let arn = create_secret(&sdk, "tok-OLD-111").await;
    let (old, new) = (basic(EMAIL, "tok-OLD-111"), basic(EMAIL, "tok-NEW-222"));
    let server = jira_accepting(&new, &old).await;
    let connections = connections(
        &[
            ("JIRA_URL", &server.uri()),
            ("JIRA_EMAIL", EMAIL),
            ("JIRA_API_TOKEN_SECRET_ARN", &arn),
            ("JIRA_RATE_LIMIT", "0"),
            // No periodic re-read: only the probe of the paused connection may pick it up.
            ("BRIDGE_SECRETS_REFRESH", "0"),
        ],
        &sdk,
    )
    .await
    .expect("connections");
    assert!(connections.spawn_refresh(Shutdown::new()).is_none());
    let jira = Arc::clone(&connections.systems["jira"]);

    // The token was revoked in Jira: the connection is refused, as the lifecycle sees it.
    let refused = jira.create(&payload(), None).await.unwrap_err();
    assert_eq!(refused.blame(), Some(Blame::Connection), "{refused}");
    assert_eq!(last_authorization(&server, "/rest/api/3/issue").await, old);
    assert!(!refused.to_string().contains("tok-OLD"), "{refused}");
    let health = Arc::new(Health::new());
    let subject = Subject::Connection("jira".into());
    health.pause(
        subject.clone(),
        &refused.to_string(),
        Probe::Connection("jira".into()),
    );

    // The operator puts the new token into the secret; nothing restarts.
    rotate(&sdk, &arn, "tok-NEW-222").await;
    let shutdown = Shutdown::new();
    let prober = tokio::spawn(health::run_prober_with(
        Arc::clone(&health),
        connections.systems.clone(),
        Arc::new(SqliteStore::open_in_memory().unwrap()),
        connections.credential_refresh(),
        shutdown.clone(),
    ));
    wait_for(
        "the probe re-reads the secret and resumes jira",
        async || health.paused(&subject).is_none(),
    )
    .await;
    assert_eq!(last_authorization(&server, "/rest/api/3/myself").await, new);

    // The same client, not rebuilt, now creates with the new token.
    let created = jira.create(&payload(), None).await.expect("create");
    assert_eq!(created.key, "SEC-1");
    assert_eq!(last_authorization(&server, "/rest/api/3/issue").await, new);
    let in_use = connections
        .secrets
        .get("jira")
        .expect("jira re-reads")
        .current();
    assert_eq!(in_use.expose_secret(), "tok-NEW-222");

    shutdown.trigger();
    prober.await.unwrap();
}

#[tokio::test]
async fn a_rotated_json_secret_key_is_picked_up_by_the_periodic_reread() {
    let sdk = moto_sdk().await;
    // The stack's layout: one JSON secret per ticket system, keys named like the variables.
    let arn = create_secret(
        &sdk,
        &json!({"JIRA_PAT": "pat-OLD-333", "JIRA_WEBHOOK_SECRET": "w"}).to_string(),
    )
    .await;
    let server = jira_accepting("Bearer pat-NEW-444", "Bearer pat-OLD-333").await;
    let connections = connections(
        &[
            ("JIRA_URL", &server.uri()),
            ("JIRA_API_VERSION", "3"),
            ("JIRA_PAT_SECRET_ARN", &format!("{arn}#JIRA_PAT")),
            ("JIRA_RATE_LIMIT", "0"),
            ("BRIDGE_SECRETS_REFRESH", "0.2"),
        ],
        &sdk,
    )
    .await
    .expect("connections");
    let jira = Arc::clone(&connections.systems["jira"]);
    let credentials = connections.secrets.get("jira").expect("jira re-reads");
    assert_eq!(credentials.current().expose_secret(), "pat-OLD-333");
    assert_eq!(
        jira.probe().await.unwrap_err().blame(),
        Some(Blame::Connection)
    );

    let shutdown = Shutdown::new();
    let refresh = connections
        .spawn_refresh(shutdown.clone())
        .expect("periodic re-read runs");
    rotate(
        &sdk,
        &arn,
        &json!({"JIRA_PAT": "pat-NEW-444", "JIRA_WEBHOOK_SECRET": "w"}).to_string(),
    )
    .await;
    wait_for("the periodic re-read picks up the new PAT", async || {
        credentials.current().expose_secret() == "pat-NEW-444"
    })
    .await;

    jira.probe().await.expect("the new PAT is in use");
    let created = jira.create(&payload(), None).await.expect("create");
    assert_eq!(created.key, "SEC-1");
    assert_eq!(
        last_authorization(&server, "/rest/api/3/issue").await,
        "Bearer pat-NEW-444"
    );
    shutdown.trigger();
    refresh.await.unwrap();
}

#[tokio::test]
async fn a_rotated_servicenow_client_secret_drops_the_cached_token() {
    let sdk = moto_sdk().await;
    let arn = create_secret(&sdk, "cs-OLD-555").await;
    let server = MockServer::start().await;
    for (secret, token) in [("cs-OLD-555", "tok-a"), ("cs-NEW-666", "tok-b")] {
        Mock::given(method("POST"))
            .and(path("/oauth_token.do"))
            .and(body_string_contains(format!("client_secret={secret}")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"access_token": token, "expires_in": 1800})),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/now/table/incident"))
            .and(header("authorization", format!("Bearer {token}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": []})))
            .mount(&server)
            .await;
    }
    let connections = connections(
        &[
            ("SERVICENOW_URL", &server.uri()),
            ("SERVICENOW_CLIENT_ID", "bridge"),
            ("SERVICENOW_CLIENT_SECRET_SECRET_ARN", &arn),
            ("SERVICENOW_RATE_LIMIT", "0"),
        ],
        &sdk,
    )
    .await
    .expect("connections");
    let servicenow = Arc::clone(&connections.systems["servicenow"]);
    servicenow
        .probe()
        .await
        .expect("works with the first secret");
    assert_eq!(
        last_authorization(&server, "/api/now/table/incident").await,
        "Bearer tok-a"
    );

    rotate(&sdk, &arn, "cs-NEW-666").await;
    // What the prober calls before probing a paused connection.
    let hook = connections
        .credential_refresh()
        .expect("a secret can change");
    hook.refresh("servicenow").await.expect("re-read");
    servicenow.probe().await.expect("works with the new secret");
    // tok-a was still valid for half an hour: only dropping it makes the new secret count.
    assert_eq!(
        last_authorization(&server, "/api/now/table/incident").await,
        "Bearer tok-b"
    );
    let requests = server.received_requests().await.unwrap();
    let token_requests: Vec<String> = requests
        .iter()
        .filter(|r| r.url.path() == "/oauth_token.do")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(token_requests.len(), 2, "{token_requests:?}");
    assert!(token_requests[1].contains("client_secret=cs-NEW-666"));
}

#[tokio::test]
async fn a_variable_and_its_secret_arn_together_are_a_configuration_error_naming_both() {
    // Settings are checked before anything is read: no AWS call can happen.
    let err = settings(&[
        ("JIRA_URL", "https://acme.atlassian.net"),
        ("JIRA_EMAIL", EMAIL),
        ("JIRA_API_TOKEN", "tok-ENV-777"),
        (
            "JIRA_API_TOKEN_SECRET_ARN",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:jira-AbCdEf",
        ),
    ])
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("JIRA_API_TOKEN or JIRA_API_TOKEN_SECRET_ARN"),
        "{text}"
    );
    assert!(!text.contains("tok-ENV-777"), "{text}");
}

#[tokio::test]
async fn without_any_secret_arn_nothing_calls_aws_and_nothing_is_reread() {
    let connections = run::ticket_connections(
        settings(&[
            ("JIRA_URL", "https://acme.atlassian.net"),
            ("JIRA_EMAIL", EMAIL),
            ("JIRA_API_TOKEN", "tok-ENV-888"),
            ("SERVICENOW_URL", "https://acme.service-now.com"),
            ("SERVICENOW_USERNAME", "bridge"),
            ("SERVICENOW_PASSWORD", "pw-ENV-999"),
        ])
        .expect("settings"),
        || async { panic!("no _SECRET_ARN: no AWS configuration is loaded") },
    )
    .await
    .expect("connections");
    assert_eq!(connections.systems.len(), 2);
    assert!(connections.secrets.is_empty());
    assert!(connections.credential_refresh().is_none());
    assert!(connections.spawn_refresh(Shutdown::new()).is_none());
    let debug = format!("{connections:?}");
    assert!(!debug.contains("ENV"), "{debug}");
}

#[tokio::test]
async fn the_credentials_holder_never_shows_the_value() {
    let sdk = moto_sdk().await;
    let arn = create_secret(
        &sdk,
        &json!({"SERVICENOW_PASSWORD": "pw-SM-121"}).to_string(),
    )
    .await;
    let connections = connections(
        &[
            ("SERVICENOW_URL", "https://acme.service-now.com"),
            ("SERVICENOW_USERNAME", "bridge"),
            (
                "SERVICENOW_PASSWORD_SECRET_ARN",
                &format!("{arn}#SERVICENOW_PASSWORD"),
            ),
        ],
        &sdk,
    )
    .await
    .expect("connections");
    let credentials = connections.secrets.get("servicenow").expect("re-read");
    assert_eq!(credentials.current().expose_secret(), "pw-SM-121");
    for debug in [format!("{credentials:?}"), format!("{connections:?}")] {
        assert!(debug.contains("[REDACTED]"), "{debug}");
        assert!(debug.contains(&arn), "the ARN is not a secret: {debug}");
        assert!(!debug.contains("pw-SM"), "{debug}");
    }
}

#[tokio::test]
async fn an_unreadable_secret_at_start_is_a_startup_error_naming_the_arn() {
    let sdk = moto_sdk().await;
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:fb-never-created-AbCdEf";
    let settings = |arn: &str| {
        vec![
            (
                "JIRA_URL".to_owned(),
                "https://acme.atlassian.net".to_owned(),
            ),
            ("JIRA_PAT_SECRET_ARN".to_owned(), arn.to_owned()),
        ]
    };
    let start = async |arn: &str, sdk: &aws_config::SdkConfig| {
        let pairs = settings(arn);
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        format!("{:#}", connections(&pairs, sdk).await.unwrap_err())
    };

    // Not there (or not allowed: Secrets Manager answers the same for both to a caller who
    // may not read it).
    let err = start(missing, &sdk).await;
    assert!(
        err.contains("JIRA_PAT_SECRET_ARN") && err.contains(missing),
        "{err}"
    );
    assert!(err.contains("ResourceNotFoundException"), "{err}");

    // There, but without the key named after `#`.
    let arn = create_secret(&sdk, &json!({"JIRA_API_TOKEN": "t"}).to_string()).await;
    let err = start(&format!("{arn}#JIRA_PAT"), &sdk).await;
    assert!(err.contains(&format!("{arn}#JIRA_PAT")), "{err}");
    assert!(err.contains("has no key \"JIRA_PAT\""), "{err}");

    // Secrets Manager unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = support::moto::aws_config(&endpoint).await;
    let err = start(missing, &unreachable).await;
    assert!(
        err.contains(missing) && err.contains("cannot be read"),
        "{err}"
    );
}
