//! The health/readiness/metrics server on a real socket, the health-check probe, and the log
//! format operators read in CloudWatch.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use findings_bridge::finding::{Schema, WorkflowStatus};
use findings_bridge::runtime::server::{self, BoxFuture, Readiness, ServerState};
use findings_bridge::runtime::telemetry::{
    self, ApiOutcome, DedupKind, ErrorKind, LogFormat, WebhookOutcome, WritebackResult, names,
};
use secrecy::SecretString;
use serde_json::Value;
use tokio::sync::oneshot;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Readiness whose answers a test sets.
struct FakeReadiness {
    components: Vec<(String, Result<(), String>)>,
    hang: bool,
}

impl FakeReadiness {
    fn answering(components: &[(&str, Result<(), &str>)]) -> Arc<FakeReadiness> {
        Arc::new(FakeReadiness {
            components: components
                .iter()
                .map(|(name, result)| ((*name).to_owned(), result.map_err(str::to_owned)))
                .collect(),
            hang: false,
        })
    }

    fn hanging() -> Arc<FakeReadiness> {
        Arc::new(FakeReadiness {
            components: Vec::new(),
            hang: true,
        })
    }
}

impl Readiness for FakeReadiness {
    fn check(&self) -> BoxFuture<'_, Vec<(String, Result<(), String>)>> {
        Box::pin(async move {
            if self.hang {
                std::future::pending::<()>().await;
            }
            self.components.clone()
        })
    }
}

/// A running server and the switch that stops it.
struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn shut_down(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("server stops within 5 s after shutdown")
            .expect("server task does not panic")
    }
}

async fn start(app: Router) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let (addr, task) = server::serve("127.0.0.1:0".parse().unwrap(), app, async {
        let _ = stopped.await;
    })
    .await
    .expect("bind 127.0.0.1:0");
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

fn state(readiness: Arc<dyn Readiness>) -> ServerState {
    ServerState::new(telemetry::install_metrics(), readiness)
}

fn all_ready() -> Arc<FakeReadiness> {
    FakeReadiness::answering(&[("mappings", Ok(())), ("queue", Ok(())), ("store", Ok(()))])
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn healthz_answers_ok_and_unknown_paths_are_404() {
    let running = start(server::router(state(all_ready()))).await;
    let http = client();

    let response = http.get(running.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");

    let response = http.get(running.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);

    let response = http.post(running.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 405);

    running.shut_down().await.unwrap();
}

#[tokio::test]
async fn readyz_lists_every_component_when_ready() {
    let running = start(server::router(state(all_ready()))).await;

    let response = client().get(running.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"mappings": "ok", "queue": "ok", "store": "ok"})
    );

    running.shut_down().await.unwrap();
}

#[tokio::test]
async fn readyz_is_503_naming_the_failing_component_without_leaking_credentials() {
    let long_error = format!(
        "GetQueueAttributes https://bridge:hunter2@sqs.test/queue\nfailed: {}",
        "timeout ".repeat(100)
    );
    let readiness = FakeReadiness::answering(&[
        ("mappings", Ok(())),
        ("queue", Err(long_error.as_str())),
        ("store", Err("database is locked")),
    ]);
    let running = start(server::router(state(readiness))).await;

    let response = client().get(running.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["mappings"], "ok");
    assert_eq!(body["store"], "database is locked");
    let queue = body["queue"].as_str().expect("queue error is text");
    assert!(queue.starts_with("GetQueueAttributes https://[REDACTED]@sqs.test/queue failed"));
    assert!(!queue.contains("hunter2"));
    assert!(
        queue.chars().count() <= server::READINESS_ERROR_LIMIT + 1,
        "error text is bounded: {} chars",
        queue.chars().count()
    );

    running.shut_down().await.unwrap();
}

#[tokio::test]
async fn readyz_answers_503_when_checks_hang() {
    let app = server::router(
        state(FakeReadiness::hanging()).with_readiness_timeout(Duration::from_millis(100)),
    );
    let running = start(app).await;

    let started = Instant::now();
    let response = client().get(running.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(3));
    let body: Value = response.json().await.unwrap();
    assert!(
        body["readiness"].as_str().unwrap().contains("100 ms"),
        "{body}"
    );

    running.shut_down().await.unwrap();
}

/// The value of the first sample line starting with `prefix` (series name plus labels).
fn sample(page: &str, prefix: &str) -> Option<f64> {
    page.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn metrics_page_has_help_lines_and_the_recorded_series() {
    let running = start(server::router(state(all_ready()))).await;

    telemetry::messages_received(3);
    telemetry::messages_deleted(2);
    telemetry::messages_released(1);
    telemetry::finding_received(Schema::Asff);
    telemetry::finding_routed("payments");
    telemetry::finding_unrouted();
    telemetry::ticket_created("jira", "payments");
    telemetry::ticket_updated("jira", "payments");
    telemetry::ticket_closed("servicenow", "payments");
    telemetry::ticket_reopened("servicenow", "payments");
    telemetry::dedup_hit(DedupKind::Recovered);
    telemetry::echo_noop();
    telemetry::error(ErrorKind::Render);
    telemetry::dlq_moved(ErrorKind::Decode);
    telemetry::writeback(WritebackResult::Unprocessed, 2);
    telemetry::sync_status_written(WorkflowStatus::Resolved);
    telemetry::webhook_received("jira", WebhookOutcome::Rejected);
    telemetry::rate_limit_wait("jira", 1.5);
    telemetry::api_latency("jira", "create", 0.2, ApiOutcome::Ok);

    let response = client().get(running.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let page = response.text().await.unwrap();

    for name in [
        names::MESSAGES_RECEIVED,
        names::MESSAGES_DELETED,
        names::MESSAGES_RELEASED,
        names::FINDINGS_RECEIVED,
        names::FINDINGS_ROUTED,
        names::FINDINGS_UNROUTED,
        names::TICKETS_CREATED,
        names::TICKETS_UPDATED,
        names::TICKETS_CLOSED,
        names::TICKETS_REOPENED,
        names::DEDUP_HITS,
        names::ECHO_NOOPS,
        names::ERRORS,
        names::DLQ_MOVED,
        names::WRITEBACKS,
        names::SYNC_STATUS_WRITTEN,
        names::WEBHOOKS_RECEIVED,
        names::RATE_LIMIT_WAIT,
        names::INFLIGHT,
        names::API_REQUEST_DURATION,
        names::BUILD_INFO,
    ] {
        assert!(
            page.contains(&format!("# HELP {name} ")),
            "no HELP line for {name} in:\n{page}"
        );
    }

    let at_least = |prefix: &str, want: f64| {
        let got = sample(&page, prefix).unwrap_or_else(|| panic!("no sample {prefix} in:\n{page}"));
        assert!(got >= want, "{prefix} = {got}, want >= {want}");
    };
    at_least("findings_bridge_messages_received_total ", 3.0);
    at_least(
        "findings_bridge_findings_received_total{schema=\"asff\"}",
        1.0,
    );
    at_least(
        "findings_bridge_findings_routed_total{team=\"payments\"}",
        1.0,
    );
    at_least(
        "findings_bridge_tickets_created_total{system=\"jira\",team=\"payments\"}",
        1.0,
    );
    at_least(
        "findings_bridge_tickets_closed_total{system=\"servicenow\",team=\"payments\"}",
        1.0,
    );
    at_least("findings_bridge_dedup_hits_total{kind=\"recovered\"}", 1.0);
    at_least("findings_bridge_errors_total{kind=\"render\"}", 1.0);
    at_least("findings_bridge_dlq_moved_total{kind=\"decode\"}", 1.0);
    at_least(
        "findings_bridge_writebacks_total{result=\"unprocessed\"}",
        2.0,
    );
    at_least(
        "findings_bridge_sync_status_written_total{status=\"RESOLVED\"}",
        1.0,
    );
    at_least(
        "findings_bridge_api_request_duration_seconds_bucket{system=\"jira\",operation=\"create\",outcome=\"ok\",le=\"0.25\"}",
        1.0,
    );
    at_least(
        "findings_bridge_rate_limit_wait_seconds_sum{system=\"jira\"}",
        1.5,
    );
    // Error kinds nobody has hit yet still export a zero, so rate() alerts work from the start.
    assert!(
        page.contains("findings_bridge_errors_total{kind=\"writeback\"}"),
        "{page}"
    );
    assert!(page.contains("# TYPE findings_bridge_api_request_duration_seconds histogram"));

    running.shut_down().await.unwrap();
}

#[tokio::test]
async fn install_metrics_twice_returns_the_same_registry() {
    let first = telemetry::install_metrics();
    let second = telemetry::install_metrics();
    telemetry::ticket_reopened("jira", "idempotence-check");
    let series =
        "findings_bridge_tickets_reopened_total{system=\"jira\",team=\"idempotence-check\"}";
    assert!(first.render().contains(series));
    assert!(second.render().contains(series));
}

#[tokio::test]
async fn inflight_guard_gives_back_what_it_took() {
    let handle = telemetry::install_metrics();
    let read = || sample(&handle.render(), "findings_bridge_inflight_messages ").unwrap_or(0.0);
    // The only test in this binary that takes guards, so the gauge moves only by our hand.
    let guards: Vec<_> = (0..50).map(|_| telemetry::inflight()).collect();
    let during = read();
    assert!(during >= 50.0, "gauge {during} while 50 guards live");
    drop(guards);
    let after = read();
    assert_eq!(
        after,
        during - 50.0,
        "after dropping 50 guards (was {during})"
    );
}

#[tokio::test]
async fn merged_routes_are_served_and_bodies_over_one_mib_are_refused() {
    let webhooks = Router::new().route(
        "/webhooks/echo",
        post(|body: axum::body::Bytes| async move { body.len().to_string() }),
    );
    let running = start(server::router(state(all_ready())).merge(webhooks)).await;
    let http = client();

    let response = http
        .post(running.url("/webhooks/echo"))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "1000");

    let response = http
        .post(running.url("/webhooks/echo"))
        .body(vec![b'x'; server::BODY_LIMIT + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // The built-in routes are still there after the merge.
    let response = http.get(running.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);

    running.shut_down().await.unwrap();
}

#[tokio::test]
async fn serve_reports_a_port_already_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = server::serve(addr, server::router(state(all_ready())), async {})
        .await
        .expect_err("binding a taken port fails");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn healthcheck_passes_against_a_live_server_on_the_wildcard_address() {
    let running = start(server::router(state(all_ready()))).await;
    // The server is configured with 0.0.0.0:PORT; the probe must go to loopback.
    let configured = format!("0.0.0.0:{}", running.addr.port());
    server::healthcheck(&configured, Duration::from_secs(2))
        .await
        .unwrap();
    server::healthcheck(&format!(":{}", running.addr.port()), Duration::from_secs(2))
        .await
        .unwrap();
    running.shut_down().await.unwrap();
}

#[tokio::test]
async fn healthcheck_fails_quickly_against_a_closed_port() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let err = server::healthcheck(&format!("127.0.0.1:{port}"), Duration::from_millis(500))
        .await
        .expect_err("nothing listens on a closed port");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.contains(&format!("127.0.0.1:{port}/healthz")), "{err}");
}

#[tokio::test]
async fn healthcheck_gives_up_on_a_server_that_never_answers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept connections and hold them open without answering.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let result = server::healthcheck(&addr.to_string(), Duration::from_millis(300)).await;
    assert!(result.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    silent.abort();
}

#[tokio::test]
async fn healthcheck_rejects_a_malformed_address() {
    let err = server::healthcheck("not an address", Duration::from_millis(200))
        .await
        .expect_err("malformed address");
    assert!(err.contains("not an address"), "{err}");
}

#[tokio::test]
async fn shutdown_signal_stops_the_server() {
    let running = start(server::router(state(all_ready()))).await;
    let addr = running.addr;
    running.shut_down().await.unwrap();
    assert!(
        server::healthcheck(&addr.to_string(), Duration::from_millis(500))
            .await
            .is_err(),
        "nothing answers after shutdown"
    );
}

// ---------------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------------

/// Collects log output in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    fn json_lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect()
    }
}

struct CapturedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = CapturedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        CapturedWriter(self.0.clone())
    }
}

fn capture<R>(format: LogFormat, filter: &str, body: impl FnOnce() -> R) -> (Captured, R) {
    let captured = Captured::default();
    let subscriber = telemetry::subscriber(format, EnvFilter::new(filter), captured.clone());
    let result = tracing::subscriber::with_default(subscriber, body);
    (captured, result)
}

#[test]
fn json_lines_carry_event_and_flattened_span_fields() {
    let finding_id = "arn:aws:securityhub:us-east-1:111122223333:finding/0b1c";
    let (captured, ()) = capture(LogFormat::Json, "info", || {
        let span = tracing::info_span!("message", message_id = "m-1", receive_count = 2_u64);
        let _entered = span.enter();
        tracing::info!(finding_id, team = "payments", "ticket created");
        tracing::debug!("filtered out at info");
    });

    let lines = captured.json_lines();
    assert_eq!(lines.len(), 1, "{}", captured.text());
    let line = &lines[0];
    assert_eq!(line["finding_id"], finding_id);
    assert_eq!(line["team"], "payments");
    assert_eq!(line["message"], "ticket created");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["target"], module_path!(), "the module that logged");
    assert_eq!(line["message_id"], "m-1", "span field flattened: {line}");
    assert_eq!(line["receive_count"], 2, "numbers stay numbers: {line}");
    assert_eq!(line["span"], "message");
    let timestamp = line["timestamp"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
        "{timestamp}"
    );
}

#[test]
fn reserved_keys_cannot_be_forged_by_fields() {
    let (captured, ()) = capture(LogFormat::Json, "info", || {
        tracing::warn!(level = "DEBUG", target = "elsewhere", "suspicious");
    });
    let lines = captured.json_lines();
    assert_eq!(lines[0]["level"], "WARN");
    assert_eq!(lines[0]["target"], module_path!(), "the module that logged");
}

#[test]
fn errors_are_logged_with_their_causes() {
    let source = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
    let err = std::io::Error::other(ErrorChain(source));
    let (captured, ()) = capture(LogFormat::Json, "info", || {
        tracing::error!(
            error = &err as &(dyn std::error::Error + 'static),
            "sqs receive failed"
        );
    });
    let line = &captured.json_lines()[0];
    let text = line["error"].as_str().unwrap();
    assert!(text.contains("connect timed out"), "{text}");
}

#[derive(Debug)]
struct ErrorChain(std::io::Error);

impl std::fmt::Display for ErrorChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("receive failed")
    }
}

impl std::error::Error for ErrorChain {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn secrets_logged_with_debug_are_redacted_in_every_format() {
    let token = SecretString::from("hunter2-jira-api-token");
    for format in [LogFormat::Json, LogFormat::Pretty] {
        let (captured, ()) = capture(format, "info", || {
            let span = tracing::info_span!("connect", credentials = ?token);
            let _entered = span.enter();
            tracing::info!(token = ?token, "jira connection configured");
        });
        let text = captured.text();
        assert!(text.contains("[REDACTED]"), "{format:?}: {text}");
        assert!(
            !text.contains("hunter2"),
            "{format:?} leaked the secret: {text}"
        );
    }
}

#[test]
fn log_format_names_parse_and_typos_are_errors() {
    assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
    assert_eq!(" Pretty ".parse::<LogFormat>(), Ok(LogFormat::Pretty));
    assert_eq!("auto".parse::<LogFormat>(), Ok(LogFormat::Auto));
    assert_eq!("".parse::<LogFormat>(), Ok(LogFormat::Auto));
    let err = "jsno".parse::<LogFormat>().unwrap_err();
    assert!(err.to_string().contains("jsno"), "{err}");
    assert_ne!(LogFormat::Auto.resolve(), LogFormat::Auto);
}

#[test]
fn init_logging_twice_keeps_the_first_subscriber() {
    telemetry::init_logging(LogFormat::Json, None, true);
    telemetry::init_logging(LogFormat::Pretty, Some("debug"), false);
    tracing::info!("logging still works after a second init");
}
