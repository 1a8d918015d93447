//! `findings_bridge_aws_requests_total`: every AWS client the worker builds counts each request
//! it sends, by service and operation, retried attempts included (wiremock stands in for AWS,
//! answering the JSON protocols by their `X-Amz-Target`).

use std::sync::OnceLock;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use metrics_exporter_prometheus::PrometheusHandle;
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::moto::aws_config;

/// The process-wide recorder: other modules of this binary install it too, and a process has only
/// one.
fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(findings_bridge::runtime::telemetry::install_metrics)
}

/// The counter's value for one service and operation (0 before its first request).
fn requests(service: &str, operation: &str) -> u64 {
    let needle = format!(
        "findings_bridge_aws_requests_total{{service=\"{service}\",operation=\"{operation}\"}} "
    );
    metrics()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn json(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.to_owned(), "application/x-amz-json-1.0")
}

/// `target` (the `X-Amz-Target` of a JSON-protocol operation) is answered `body`, exactly once.
async fn answers_once(server: &MockServer, target: &str, body: &str) {
    Mock::given(method("POST"))
        .and(header("x-amz-target", target))
        .respond_with(json(body))
        .expect(1)
        .mount(server)
        .await;
}

/// Each client is asked for an operation no other test of this binary sends, so the counts
/// cannot move under it.
#[tokio::test]
async fn one_call_on_each_client_counts_one_request_with_its_service_and_operation() {
    metrics();
    let server = MockServer::start().await;
    answers_once(&server, "AmazonSQS.ListQueues", r#"{"QueueUrls":[]}"#).await;
    answers_once(
        &server,
        "DynamoDB_20120810.ListTables",
        r#"{"TableNames":[]}"#,
    )
    .await;
    answers_once(
        &server,
        "secretsmanager.ListSecrets",
        r#"{"SecretList":[]}"#,
    )
    .await;
    let sdk = aws_config(&server.uri()).await;
    let before = (
        requests("SQS", "ListQueues"),
        requests("DynamoDB", "ListTables"),
        requests("Secrets Manager", "ListSecrets"),
    );

    findings_bridge::aws::metered::sqs(&sdk)
        .list_queues()
        .send()
        .await
        .unwrap();
    findings_bridge::aws::metered::dynamodb(&sdk)
        .list_tables()
        .send()
        .await
        .unwrap();
    findings_bridge::aws::metered::secrets_manager(&sdk)
        .list_secrets()
        .send()
        .await
        .unwrap();

    assert_eq!(requests("SQS", "ListQueues"), before.0 + 1);
    assert_eq!(requests("DynamoDB", "ListTables"), before.1 + 1);
    assert_eq!(requests("Secrets Manager", "ListSecrets"), before.2 + 1);
}

/// A call the SDK retries is two requests to the service: both are counted.
#[tokio::test]
async fn a_retried_call_counts_every_attempt() {
    metrics();
    let server = MockServer::start().await;
    let target = "DynamoDB_20120810.DescribeLimits";
    Mock::given(method("POST"))
        .and(header("x-amz-target", target))
        .respond_with(ResponseTemplate::new(500).set_body_raw(
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"try again"}"#,
            "application/x-amz-json-1.0",
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", target))
        .respond_with(json(
            r#"{"AccountMaxReadCapacityUnits":80000,"AccountMaxWriteCapacityUnits":80000,"TableMaxReadCapacityUnits":40000,"TableMaxWriteCapacityUnits":40000}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let sdk = aws_config(&server.uri())
        .await
        .into_builder()
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(1)),
        )
        .build();
    let before = requests("DynamoDB", "DescribeLimits");

    findings_bridge::aws::metered::dynamodb(&sdk)
        .describe_limits()
        .send()
        .await
        .unwrap();

    assert_eq!(requests("DynamoDB", "DescribeLimits"), before + 2);
}
