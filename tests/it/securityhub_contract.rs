//! The Security Hub writer through the real `aws-sdk-securityhub` client against a wiremock
//! server on 127.0.0.1: the requests must be exactly what Security Hub's REST-JSON API expects,
//! and its answers (unprocessed findings, throttling, access denied) must reach the caller.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_securityhub::config::{Credentials, Region};
use findings_bridge::aws::securityhub::client::{SecurityHubWriter, WritePolicy};
use findings_bridge::aws::securityhub::{FindingWriter, NOTE_LIMIT, Unprocessed, WorkflowUpdate};
use findings_bridge::finding::{Severity, WorkflowStatus, WriteBackId};
use findings_bridge::mapping::template::TRUNCATION_MARK;
use findings_bridge::retry::Retryable;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const GUARDDUTY: &str = "arn:aws:securityhub:us-east-1::product/aws/guardduty";
const V1_PATH: &str = "/findings/batchupdate";
const V2_PATH: &str = "/findingsv2/batchupdatev2";

/// A writer on the real SDK client, pointed at `server`, with backoffs short enough for tests.
async fn writer(server: &MockServer) -> SecurityHubWriter {
    writer_at(&server.uri()).await
}

async fn writer_at(endpoint: &str) -> SecurityHubWriter {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDTEST",
            "test-secret",
            None,
            None,
            "test",
        ))
        .endpoint_url(endpoint)
        .retry_config(
            RetryConfig::standard()
                .with_initial_backoff(Duration::from_millis(1))
                .with_max_backoff(Duration::from_millis(5)),
        )
        .load()
        .await;
    SecurityHubWriter::from_conf(&sdk).with_policy(WritePolicy {
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..WritePolicy::default()
    })
}

fn asff_update(n: usize, status: Option<WorkflowStatus>, note: &str) -> WorkflowUpdate {
    WorkflowUpdate::new(
        WriteBackId::Asff {
            id: format!("arn:aws:guardduty:finding/{n}"),
            product_arn: GUARDDUTY.into(),
        },
        format!("finding-{n}"),
        status,
        None,
        note,
    )
}

fn asff_identifier(n: usize) -> Value {
    json!({ "Id": format!("arn:aws:guardduty:finding/{n}"), "ProductArn": GUARDDUTY })
}

fn ocsf_update(n: usize, metadata_uid: Option<&str>) -> WorkflowUpdate {
    WorkflowUpdate::new(
        WriteBackId::Ocsf {
            metadata_uid: metadata_uid.map(str::to_owned),
            cloud_account_uid: "111122223333".into(),
            finding_info_uid: format!("finding-info-{n}"),
            metadata_product_uid: "aws/inspector".into(),
        },
        format!("ocsf-{n}"),
        Some(WorkflowStatus::Resolved),
        Some(Severity::High),
        "Ticket SEC-7 closed",
    )
}

fn ok_v1() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "ProcessedFindings": [],
        "UnprocessedFindings": []
    }))
}

fn ok_v2() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "ProcessedFindings": [],
        "UnprocessedFindings": []
    }))
}

async fn received(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body)
        .unwrap_or_else(|e| panic!("request body is not JSON ({e}): {:?}", request.body))
}

#[tokio::test]
async fn asff_update_is_a_signed_patch_with_identifiers_workflow_severity_and_note() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(V1_PATH))
        .respond_with(ok_v1())
        .mount(&server)
        .await;

    let update = WorkflowUpdate::new(
        WriteBackId::Asff {
            id: "arn:aws:guardduty:finding/1".into(),
            product_arn: GUARDDUTY.into(),
        },
        "finding-1",
        Some(WorkflowStatus::Notified),
        Some(Severity::Critical),
        "Ticket PAY-12 https://example.atlassian.net/browse/PAY-12",
    );
    let report = writer(&server)
        .await
        .write(vec![update])
        .await
        .expect("write succeeds");
    assert_eq!(report.processed, 1);
    assert!(report.unprocessed.is_empty());

    let requests = received(&server).await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method.as_str(), "PATCH");
    assert_eq!(request.url.path(), V1_PATH);
    let authorization = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"),
        "SigV4-signed: {authorization}"
    );
    assert!(
        !authorization.contains("test-secret"),
        "the secret key never travels"
    );
    assert_eq!(
        body(request),
        json!({
            "FindingIdentifiers": [asff_identifier(1)],
            "Workflow": { "Status": "NOTIFIED" },
            "Severity": { "Label": "CRITICAL" },
            "Note": {
                "Text": "Ticket PAY-12 https://example.atlassian.net/browse/PAY-12",
                "UpdatedBy": "findings-bridge"
            }
        })
    );
}

#[tokio::test]
async fn asff_update_without_a_note_or_severity_sends_only_the_workflow() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(V1_PATH))
        .respond_with(ok_v1())
        .mount(&server)
        .await;

    writer(&server)
        .await
        .write(vec![asff_update(3, Some(WorkflowStatus::Resolved), "")])
        .await
        .expect("write succeeds");

    let requests = received(&server).await;
    assert_eq!(requests.len(), 1);
    // Note needs Text of at least one character; an empty note must not be sent at all.
    assert_eq!(
        body(&requests[0]),
        json!({
            "FindingIdentifiers": [asff_identifier(3)],
            "Workflow": { "Status": "RESOLVED" }
        })
    );
}

#[tokio::test]
async fn ocsf_update_with_metadata_uid_uses_metadata_uids() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(V2_PATH))
        .respond_with(ok_v2())
        .mount(&server)
        .await;

    let report = writer(&server)
        .await
        .write(vec![ocsf_update(1, Some("meta-uid-1"))])
        .await
        .expect("write succeeds");
    assert_eq!(report.processed, 1);

    let requests = received(&server).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method.as_str(), "PATCH");
    assert_eq!(requests[0].url.path(), V2_PATH);
    assert_eq!(
        body(&requests[0]),
        json!({
            "MetadataUids": ["meta-uid-1"],
            "StatusId": 4,
            "SeverityId": 4,
            "Comment": "Ticket SEC-7 closed"
        })
    );
}

#[tokio::test]
async fn ocsf_findings_are_addressed_one_way_per_request() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(V2_PATH))
        .respond_with(ok_v2())
        .mount(&server)
        .await;

    let report = writer(&server)
        .await
        .write(vec![
            ocsf_update(1, Some("meta-uid-1")),
            ocsf_update(2, None),
        ])
        .await
        .expect("write succeeds");
    assert_eq!(report.processed, 2);

    let bodies: Vec<Value> = received(&server).await.iter().map(body).collect();
    assert_eq!(
        bodies,
        vec![
            json!({
                "MetadataUids": ["meta-uid-1"],
                "StatusId": 4,
                "SeverityId": 4,
                "Comment": "Ticket SEC-7 closed"
            }),
            json!({
                "FindingIdentifiers": [{
                    "CloudAccountUid": "111122223333",
                    "FindingInfoUid": "finding-info-2",
                    "MetadataProductUid": "aws/inspector"
                }],
                "StatusId": 4,
                "SeverityId": 4,
                "Comment": "Ticket SEC-7 closed"
            }),
        ]
    );
}

#[tokio::test]
async fn two_hundred_fifty_findings_go_out_as_100_100_50() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(V1_PATH))
        .respond_with(ok_v1())
        .mount(&server)
        .await;

    let updates = (0..250)
        .map(|n| asff_update(n, Some(WorkflowStatus::Notified), "Tickets opened"))
        .collect();
    let report = writer(&server)
        .await
        .write(updates)
        .await
        .expect("write succeeds");
    assert_eq!(report.processed, 250);

    let bodies: Vec<Value> = received(&server).await.iter().map(body).collect();
    let sizes: Vec<usize> = bodies
        .iter()
        .map(|b| b["FindingIdentifiers"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, vec![100, 100, 50]);
    let all_ids: Vec<Value> = bodies
        .iter()
        .flat_map(|b| {
            b["FindingIdentifiers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(all_ids, (0..250).map(asff_identifier).collect::<Vec<_>>());
}

#[tokio::test]
async fn retriable_unprocessed_findings_are_resent_and_the_rest_reported() {
    let server = MockServer::start().await;
    // First answer: finding 1 processed, 2 hit a concurrent update, 3 does not exist.
    Mock::given(method("PATCH"))
        .and(path(V1_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ProcessedFindings": [asff_identifier(1)],
            "UnprocessedFindings": [
                {
                    "FindingIdentifier": asff_identifier(2),
                    "ErrorCode": "ConcurrentUpdateError",
                    "ErrorMessage": "Finding is being updated"
                },
                {
                    "FindingIdentifier": asff_identifier(3),
                    "ErrorCode": "FindingNotFound",
                    "ErrorMessage": "Finding not found"
                }
            ]
        })))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(V1_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ProcessedFindings": [asff_identifier(2)],
            "UnprocessedFindings": []
        })))
        .with_priority(2)
        .mount(&server)
        .await;

    let updates = (1..=3)
        .map(|n| asff_update(n, Some(WorkflowStatus::Notified), "Ticket PAY-1"))
        .collect();
    let report = writer(&server)
        .await
        .write(updates)
        .await
        .expect("write succeeds");

    assert_eq!(report.processed, 2, "finding 1 at once, finding 2 on retry");
    assert_eq!(
        report.unprocessed,
        vec![Unprocessed {
            finding_id: "finding-3".into(),
            code: "FindingNotFound".into(),
            message: "Finding not found".into(),
        }]
    );
    let bodies: Vec<Value> = received(&server).await.iter().map(body).collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(
        bodies[1]["FindingIdentifiers"],
        json!([asff_identifier(2)]),
        "only the retriable finding is sent again"
    );
}

#[tokio::test]
async fn a_finding_that_stays_in_conflict_is_reported_after_bounded_retries() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(V2_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ProcessedFindings": [],
            "UnprocessedFindings": [{
                "MetadataUid": "meta-uid-1",
                "ErrorCode": "ConflictException",
                "ErrorMessage": "Conflicting update"
            }]
        })))
        .mount(&server)
        .await;

    let report = writer(&server)
        .await
        .write(vec![ocsf_update(1, Some("meta-uid-1"))])
        .await
        .expect("the request itself succeeds");
    assert_eq!(report.processed, 0);
    assert_eq!(
        report.unprocessed,
        vec![Unprocessed {
            finding_id: "ocsf-1".into(),
            code: "ConflictException".into(),
            message: "Conflicting update".into(),
        }]
    );
    // The first try plus WritePolicy::default().retries.
    assert_eq!(
        received(&server).await.len(),
        1 + WritePolicy::default().retries
    );
}

#[tokio::test]
async fn throttling_exception_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(V1_PATH))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("x-amzn-errortype", "ThrottlingException")
                .set_body_json(json!({ "message": "Rate exceeded" })),
        )
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(V1_PATH))
        .respond_with(ok_v1())
        .with_priority(2)
        .mount(&server)
        .await;

    let report = writer(&server)
        .await
        .write(vec![asff_update(1, Some(WorkflowStatus::Notified), "n")])
        .await
        .expect("throttling is retried until it passes");
    assert_eq!(report.processed, 1);
    assert_eq!(received(&server).await.len(), 3);
}

#[tokio::test]
async fn http_429_without_an_error_code_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(V2_PATH))
        .respond_with(ResponseTemplate::new(429).set_body_string(""))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(V2_PATH))
        .respond_with(ok_v2())
        .with_priority(2)
        .mount(&server)
        .await;

    let report = writer(&server)
        .await
        .write(vec![ocsf_update(1, None)])
        .await
        .expect("429 is retried until it passes");
    assert_eq!(report.processed, 1);
    assert_eq!(received(&server).await.len(), 2);
}

#[tokio::test]
async fn throttling_that_never_ends_is_a_transient_error() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(V1_PATH))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-amzn-errortype", "TooManyRequestsException")
                .set_body_json(json!({ "message": "Rate exceeded" })),
        )
        .mount(&server)
        .await;

    let error = writer(&server)
        .await
        .write(vec![asff_update(1, Some(WorkflowStatus::Notified), "n")])
        .await
        .expect_err("never succeeds");
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("429"), "{error}");
    let attempts = received(&server).await.len();
    assert!(
        attempts > 1 && attempts <= 40,
        "bounded retries, got {attempts}"
    );
}

#[tokio::test]
async fn access_denied_is_refused_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(V2_PATH))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-amzn-errortype", "AccessDeniedException")
                .set_body_json(json!({ "message": "not authorized to perform securityhub:BatchUpdateFindingsV2" })),
        )
        .mount(&server)
        .await;

    let error = writer(&server)
        .await
        .write(vec![ocsf_update(1, Some("meta-uid-1"))])
        .await
        .expect_err("access denied");
    assert!(!error.is_transient(), "{error}");
    assert!(
        matches!(
            error,
            findings_bridge::aws::securityhub::WriteError::Refused(_)
        ),
        "the connection's fault, not the findings': {error}"
    );
    let text = error.to_string();
    assert!(text.contains("AccessDeniedException"), "{text}");
    assert!(!text.contains("test-secret"), "{text}");
    assert_eq!(received(&server).await.len(), 1);
}

#[tokio::test]
async fn invalid_input_reports_that_batch_and_still_sends_the_others() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(V1_PATH))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("x-amzn-errortype", "InvalidInputException")
                .set_body_json(json!({ "Message": "Invalid ProductArn" })),
        )
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(V2_PATH))
        .respond_with(ok_v2())
        .mount(&server)
        .await;

    let report = writer(&server)
        .await
        .write(vec![
            asff_update(1, Some(WorkflowStatus::Notified), "n"),
            ocsf_update(2, None),
        ])
        .await
        .expect("one bad batch does not fail the write");
    assert_eq!(report.processed, 1);
    assert_eq!(report.unprocessed.len(), 1);
    assert_eq!(report.unprocessed[0].finding_id, "finding-1");
    assert_eq!(report.unprocessed[0].code, "InvalidInputException");
    assert_eq!(received(&server).await.len(), 2);
}

#[tokio::test]
async fn long_notes_are_cut_to_512_characters_with_a_visible_mark() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(V1_PATH))
        .respond_with(ok_v1())
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(V2_PATH))
        .respond_with(ok_v2())
        .mount(&server)
        .await;

    let long = "Ticket PAY-1 ".repeat(200);
    // Built by hand, bypassing WorkflowUpdate::new's cut: the writer must cut anyway.
    let raw = WorkflowUpdate {
        target: WriteBackId::Asff {
            id: "arn:aws:guardduty:finding/1".into(),
            product_arn: GUARDDUTY.into(),
        },
        finding_id: "finding-1".into(),
        status: Some(WorkflowStatus::Notified),
        severity: None,
        note: long.clone(),
    };
    let mut ocsf = ocsf_update(2, Some("meta-uid-2"));
    ocsf.note = long;
    writer(&server)
        .await
        .write(vec![raw, ocsf])
        .await
        .expect("write succeeds");

    let bodies: Vec<Value> = received(&server).await.iter().map(body).collect();
    assert_eq!(bodies.len(), 2);
    for text in [&bodies[0]["Note"]["Text"], &bodies[1]["Comment"]] {
        let text = text.as_str().unwrap_or_default();
        assert_eq!(text.chars().count(), NOTE_LIMIT);
        assert!(text.starts_with("Ticket PAY-1 "));
        assert!(text.ends_with(TRUNCATION_MARK));
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transient_error() {
    // A port that was just free: wiremock pools its servers, so a dropped MockServer's port may
    // be serving another test already.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port");
    let writer = writer_at(&format!("http://{closed}")).await;

    let error = writer
        .write(vec![asff_update(1, Some(WorkflowStatus::Notified), "n")])
        .await
        .expect_err("nothing listens");
    assert!(error.is_transient(), "{error}");
}

#[tokio::test]
async fn an_empty_write_sends_nothing() {
    let server = MockServer::start().await;
    let report = writer(&server)
        .await
        .write(Vec::new())
        .await
        .expect("nothing to do");
    assert_eq!(report.processed, 0);
    assert!(received(&server).await.is_empty());
}

/// The batching writer with the real writer inside: concurrent write-backs share requests.
mod batching {
    use super::*;
    use findings_bridge::aws::securityhub::batching::{BatchingWriter, DEFAULT_WINDOW};
    use findings_bridge::aws::securityhub::{WriteError, WriteReport};
    use std::sync::Arc;

    /// Writes each batch from its own task through `batching`, all spawned before any runs (the
    /// flusher, started by the first write, is queued behind them on this single-threaded runtime:
    /// every caller is waiting before it looks, whatever the clock says); the outcomes in order.
    async fn write_concurrently(
        batching: &Arc<BatchingWriter>,
        batches: Vec<Vec<WorkflowUpdate>>,
    ) -> Vec<Result<WriteReport, WriteError>> {
        let callers: Vec<_> = batches
            .into_iter()
            .map(|updates| {
                let batching = Arc::clone(batching);
                tokio::spawn(async move { batching.write(updates).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for caller in callers {
            outcomes.push(caller.await.expect("caller task"));
        }
        outcomes
    }

    async fn batching_writer(server: &MockServer) -> Arc<BatchingWriter> {
        let inner: Arc<dyn FindingWriter> = Arc::new(writer(server).await);
        Arc::new(BatchingWriter::new(inner, DEFAULT_WINDOW))
    }

    #[tokio::test]
    async fn twenty_concurrent_write_backs_with_one_note_go_out_as_one_request() {
        let server = MockServer::start().await;
        Mock::given(method("PATCH"))
            .and(path(V1_PATH))
            .respond_with(ok_v1())
            .mount(&server)
            .await;
        let note = "Tracked in jira SEC-1: https://jira.example/browse/SEC-1 (group KEY, fb-1)";
        let batches = (0..20)
            .map(|n| vec![asff_update(n, Some(WorkflowStatus::Notified), note)])
            .collect();

        for outcome in write_concurrently(&batching_writer(&server).await, batches).await {
            let report = outcome.expect("written");
            assert_eq!(report.processed, 1);
            assert!(report.unprocessed.is_empty());
        }

        let requests = received(&server).await;
        assert_eq!(requests.len(), 1, "one BatchUpdateFindings for all twenty");
        assert_eq!(requests[0].method.as_str(), "PATCH");
        let body = body(&requests[0]);
        assert_eq!(
            body["FindingIdentifiers"],
            Value::Array((0..20).map(asff_identifier).collect())
        );
        assert_eq!(body["Note"]["Text"], note);
        assert_eq!(body["Workflow"]["Status"], "NOTIFIED");
    }

    #[tokio::test]
    async fn a_finding_refused_in_a_shared_request_is_reported_to_its_own_caller_only() {
        let server = MockServer::start().await;
        Mock::given(method("PATCH"))
            .and(path(V1_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "ProcessedFindings": [asff_identifier(1), asff_identifier(3)],
                "UnprocessedFindings": [{
                    "FindingIdentifier": asff_identifier(2),
                    "ErrorCode": "FindingNotFound",
                    "ErrorMessage": "Finding not found"
                }]
            })))
            .mount(&server)
            .await;
        let batches = (1..=3)
            .map(|n| {
                vec![asff_update(
                    n,
                    Some(WorkflowStatus::Notified),
                    "Ticket SEC-1",
                )]
            })
            .collect();

        let outcomes = write_concurrently(&batching_writer(&server).await, batches).await;
        let reports: Vec<WriteReport> = outcomes.into_iter().map(|o| o.expect("written")).collect();
        assert_eq!(received(&server).await.len(), 1);
        assert_eq!(
            reports[1].unprocessed,
            vec![Unprocessed {
                finding_id: "finding-2".into(),
                code: "FindingNotFound".into(),
                message: "Finding not found".into(),
            }]
        );
        assert_eq!(reports[1].processed, 0);
        for other in [&reports[0], &reports[2]] {
            assert_eq!(other.processed, 1);
            assert!(other.unprocessed.is_empty());
        }
    }
}
