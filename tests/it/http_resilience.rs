//! Retry, budget and rate-limit behaviour of the shared HTTP layer, seen through a real client
//! talking to wiremock on 127.0.0.1. Waiting happens on a virtual clock ([`ManualClock`]): the
//! assertions read how long the client *would* have waited.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use findings_bridge::retry::Retryable;
use findings_bridge::ticket::http::{Clock, HttpSettings, ManualClock};
use findings_bridge::ticket::jira::{JiraApiVersion, JiraAuth, JiraClient, JiraConfig};
use findings_bridge::ticket::{TicketRef, TicketSystem};
use secrecy::SecretString;
use serde_json::json;
use url::Url;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn settings() -> HttpSettings {
    HttpSettings {
        retry_budget: Duration::from_secs(60),
        max_attempts: 8,
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(5),
        rate_limit_per_sec: 0.0,
        ..HttpSettings::default()
    }
}

fn jira(base: &str, http: HttpSettings) -> (JiraClient, Arc<ManualClock>) {
    let mut cfg = JiraConfig::new(
        Url::parse(base).unwrap(),
        JiraAuth::Bearer {
            pat: SecretString::from("pat-SECRET"),
        },
        JiraApiVersion::V2,
    );
    cfg.http = http;
    let clock = ManualClock::new();
    (JiraClient::with_clock(cfg, clock.clone()).unwrap(), clock)
}

fn ticket() -> TicketRef {
    TicketRef {
        system: "jira".to_owned(),
        key: "PAY-7".to_owned(),
        id: "10007".to_owned(),
        table: None,
        url: String::new(),
    }
}

fn ok_status() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"id": "10007", "key": "PAY-7",
        "fields": {"status": {"name": "To Do", "statusCategory": {"key": "new"}}}}))
}

async fn mount_failures(server: &MockServer, response: ResponseTemplate, times: u64) {
    Mock::given(method("GET"))
        .and(path("/rest/api/2/issue/PAY-7"))
        .respond_with(response)
        .up_to_n_times(times)
        .expect(times)
        .mount(server)
        .await;
}

async fn mount_success(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/rest/api/2/issue/PAY-7"))
        .respond_with(ok_status())
        .expect(1)
        .mount(server)
        .await;
}

async fn request_count(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn a_429_waits_at_least_retry_after_then_succeeds() {
    let server = MockServer::start().await;
    mount_failures(
        &server,
        ResponseTemplate::new(429).insert_header("Retry-After", "7"),
        1,
    )
    .await;
    mount_success(&server).await;
    let (jira, clock) = jira(&server.uri(), settings());
    let status = jira.status(&ticket()).await.unwrap();
    assert_eq!(status.name, "To Do");
    assert!(clock.now() >= Duration::from_secs(7), "{:?}", clock.now());
    // Backoff alone (100 ms, jittered) would never reach 7 s.
    assert!(clock.now() < Duration::from_secs(8), "{:?}", clock.now());
    assert_eq!(request_count(&server).await, 2);
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let server = MockServer::start().await;
    let at = SystemTime::now() + Duration::from_secs(30);
    let date = chrono::DateTime::<chrono::Utc>::from(at)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    mount_failures(
        &server,
        ResponseTemplate::new(503).insert_header("Retry-After", date.as_str()),
        1,
    )
    .await;
    mount_success(&server).await;
    let (jira, clock) = jira(&server.uri(), settings());
    jira.status(&ticket()).await.unwrap();
    // The date has whole-second precision and real time passes while the test runs.
    assert!(clock.now() >= Duration::from_secs(28), "{:?}", clock.now());
}

#[tokio::test]
async fn rate_limit_reset_epoch_is_honoured_on_429() {
    let server = MockServer::start().await;
    let reset = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 20;
    mount_failures(
        &server,
        ResponseTemplate::new(429).insert_header("X-RateLimit-Reset", reset.to_string().as_str()),
        1,
    )
    .await;
    mount_success(&server).await;
    let (jira, clock) = jira(&server.uri(), settings());
    jira.status(&ticket()).await.unwrap();
    assert!(clock.now() >= Duration::from_secs(18), "{:?}", clock.now());
}

#[tokio::test]
async fn server_errors_and_conflicts_are_retried_then_succeed() {
    for status in [500, 502, 503, 504, 408, 409] {
        let server = MockServer::start().await;
        mount_failures(&server, ResponseTemplate::new(status), 2).await;
        mount_success(&server).await;
        let (jira, _) = jira(&server.uri(), settings());
        jira.status(&ticket()).await.unwrap();
        assert_eq!(request_count(&server).await, 3, "{status}");
    }
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}})))
        .mount(&server)
        .await;
    let (jira, clock) = jira(&server.uri(), settings());
    let error = jira.status(&ticket()).await.unwrap_err();
    assert!(!error.is_transient());
    assert_eq!(error.status(), Some(400));
    assert!(
        error
            .to_string()
            .contains("Issue does not exist or you do not have permission")
    );
    assert_eq!(request_count(&server).await, 1);
    assert_eq!(clock.now(), Duration::ZERO);
}

#[tokio::test]
async fn an_exhausted_budget_is_a_transient_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_string("maintenance"))
        .mount(&server)
        .await;
    let (jira, clock) = jira(
        &server.uri(),
        HttpSettings {
            retry_budget: Duration::from_secs(10),
            max_attempts: 100,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(4),
            ..settings()
        },
    );
    let error = jira.status(&ticket()).await.unwrap_err();
    assert!(error.is_transient());
    assert_eq!(error.status(), Some(503));
    assert!(error.to_string().contains("maintenance"), "{error}");
    assert!(error.to_string().contains("retry budget 10s"), "{error}");
    assert!(clock.now() <= Duration::from_secs(10), "{:?}", clock.now());
    let attempts = request_count(&server).await;
    assert!((2..=10).contains(&attempts), "{attempts}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_budget_gives_up_at_once() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
        .mount(&server)
        .await;
    let (jira, clock) = jira(&server.uri(), settings());
    let error = jira.status(&ticket()).await.unwrap_err();
    assert!(error.is_transient());
    assert_eq!(error.status(), Some(429));
    assert!(
        error.to_string().contains("server asked to wait 3600s"),
        "{error}"
    );
    assert_eq!(request_count(&server).await, 1);
    assert_eq!(clock.now(), Duration::ZERO);
}

#[tokio::test]
async fn attempts_are_capped() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let (jira, _) = jira(
        &server.uri(),
        HttpSettings {
            max_attempts: 3,
            ..settings()
        },
    );
    assert!(jira.status(&ticket()).await.unwrap_err().is_transient());
    assert_eq!(request_count(&server).await, 3);
}

#[tokio::test]
async fn connection_failures_are_transient() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let (jira, clock) = jira(
        &format!("http://127.0.0.1:{port}"),
        HttpSettings {
            max_attempts: 3,
            ..settings()
        },
    );
    let error = jira.status(&ticket()).await.unwrap_err();
    assert!(error.is_transient());
    assert_eq!(error.status(), None);
    assert!(error.to_string().contains("3 attempt(s)"), "{error}");
    assert!(clock.now() > Duration::ZERO);
}

#[tokio::test]
async fn slow_responses_time_out_and_are_transient() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ok_status().set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;
    let (jira, _) = jira(
        &server.uri(),
        HttpSettings {
            request_timeout: Duration::from_millis(150),
            max_attempts: 2,
            ..settings()
        },
    );
    let error = jira.status(&ticket()).await.unwrap_err();
    assert!(error.is_transient());
    assert!(error.to_string().contains("timed out"), "{error}");
    assert_eq!(request_count(&server).await, 2);
}

#[tokio::test]
async fn the_rate_limit_is_shared_by_all_tasks_of_a_connection() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ok_status())
        .mount(&server)
        .await;
    let (jira, clock) = jira(
        &server.uri(),
        HttpSettings {
            rate_limit_per_sec: 5.0,
            burst: 2,
            ..settings()
        },
    );
    let jira: Arc<dyn TicketSystem> = Arc::new(jira);
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let jira = jira.clone();
        tasks.push(tokio::spawn(async move { jira.status(&ticket()).await }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // 12 calls, burst 2, 5 per second: (12 - 2) / 5 = 2 s at least.
    assert!(clock.now() >= Duration::from_secs(2), "{:?}", clock.now());
    assert_eq!(request_count(&server).await, 12);
}

#[tokio::test]
async fn the_rate_limiter_counts_its_waits() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ok_status())
        .mount(&server)
        .await;
    let (jira, clock) = jira(
        &server.uri(),
        HttpSettings {
            rate_limit_per_sec: 2.0,
            burst: 3,
            ..settings()
        },
    );
    for _ in 0..7 {
        jira.status(&ticket()).await.unwrap();
    }
    assert_eq!(jira.http().limiter().waits(), 4);
    assert!(clock.now() >= Duration::from_secs(2), "{:?}", clock.now());
}

#[tokio::test]
async fn a_429_lowers_the_connection_rate_and_a_near_limit_answer_holds_it() {
    let server = MockServer::start().await;
    mount_failures(
        &server,
        ResponseTemplate::new(429).insert_header("Retry-After", "1"),
        1,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/issue/PAY-7"))
        .respond_with(ok_status().insert_header("X-RateLimit-NearLimit", "true"))
        .mount(&server)
        .await;
    let (jira, _clock) = jira(
        &server.uri(),
        HttpSettings {
            rate_limit_per_sec: 20.0,
            burst: 20,
            ..settings()
        },
    );
    jira.status(&ticket()).await.unwrap();
    let limiter = jira.http().limiter();
    assert_eq!(limiter.decreases(), 1);
    let lowered = limiter.rate();
    assert!(lowered < 20.0, "{lowered}");
    // Near the limit: accepted answers do not raise the rate.
    for _ in 0..5 {
        jira.status(&ticket()).await.unwrap();
    }
    assert_eq!(limiter.rate(), lowered);
}
