//! Security Hub write-back: both batch APIs, their limits, and unprocessed findings.

mod common;

use common::*;
use findings_bridge_sim::{FindingErrorKind, SimConfig, WritebackApi};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ARN: &str = "arn:aws:securityhub:us-east-1::product/aws/securityhub";

fn v1(
    c: &reqwest::Client,
    sim: &findings_bridge_sim::SimHandle,
    body: &Value,
) -> reqwest::RequestBuilder {
    c.request(Method::PATCH, format!("{}/findings/batchupdate", sim.base_url))
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260301/us-east-1/securityhub/aws4_request, SignedHeaders=host, Signature=abc")
        .json(body)
}

fn v2(
    c: &reqwest::Client,
    sim: &findings_bridge_sim::SimHandle,
    body: &Value,
) -> reqwest::RequestBuilder {
    c.request(
        Method::PATCH,
        format!("{}/findingsv2/batchupdatev2", sim.base_url),
    )
    .header("authorization", "AWS4-HMAC-SHA256 anything")
    .json(body)
}

fn idents(ids: &[&str]) -> Value {
    json!(
        ids.iter()
            .map(|id| json!({"Id": id, "ProductArn": ARN}))
            .collect::<Vec<_>>()
    )
}

#[tokio::test]
async fn batch_update_findings_sets_workflow_and_records_the_call() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let body = json!({
        "FindingIdentifiers": idents(&["f-1", "f-2"]),
        "Workflow": {"Status": "NOTIFIED"},
        "Note": {"Text": "Ticket SEC-1 created", "UpdatedBy": "findings-bridge"},
    });
    let a = send(v1(&c, &sim, &body)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["ProcessedFindings"], idents(&["f-1", "f-2"]));
    assert_eq!(a.body["UnprocessedFindings"], json!([]));
    assert_eq!(
        sim.state.finding_workflow("f-1").as_deref(),
        Some("NOTIFIED")
    );

    let a = send(v1(&c, &sim, &json!({"FindingIdentifiers": idents(&["f-1"]), "Workflow": {"Status": "RESOLVED"}, "Severity": {"Label": "LOW"}}))).await;
    assert_eq!(a.status, StatusCode::OK);
    let f = sim.state.finding("f-1").expect("known after an update");
    assert_eq!(f.workflow_status.as_deref(), Some("RESOLVED"));
    assert_eq!(f.severity_label.as_deref(), Some("LOW"));
    assert_eq!(f.notes, ["Ticket SEC-1 created"]);
    assert_eq!(f.product_arn.as_deref(), Some(ARN));

    let calls = sim.state.writebacks();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].api, WritebackApi::BatchUpdateFindings);
    assert_eq!(calls[0].request, body);
    let a = send(c.get(format!("{}/_sim/writebacks", sim.base_url))).await;
    assert_eq!(a.body.as_array().map(Vec::len), Some(2));
    let a = send(c.get(format!("{}/_sim/findings", sim.base_url))).await;
    assert_eq!(a.body.as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn more_than_100_identifiers_or_bad_values_are_invalid_input() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let ids: Vec<String> = (0..101).map(|i| format!("f-{i}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let cases = [
        json!({"FindingIdentifiers": idents(&id_refs), "Workflow": {"Status": "RESOLVED"}}),
        json!({"FindingIdentifiers": [], "Workflow": {"Status": "RESOLVED"}}),
        json!({"FindingIdentifiers": idents(&["f"]), "Workflow": {"Status": "CLOSED"}}),
        json!({"FindingIdentifiers": idents(&["f"]), "Note": {"Text": "x".repeat(513), "UpdatedBy": "b"}}),
        json!({"FindingIdentifiers": [{"Id": "f"}], "Workflow": {"Status": "NEW"}}),
    ];
    for body in cases {
        let a = send(v1(&c, &sim, &body)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            a.headers
                .get("x-amzn-ErrorType")
                .and_then(|v| v.to_str().ok()),
            Some("InvalidInputException")
        );
        assert_eq!(a.body["__type"], "InvalidInputException");
    }
    assert!(sim.state.writebacks().is_empty());
    assert!(sim.state.findings().is_empty());
    // Exactly 100 is fine.
    let a = send(v1(
        &c,
        &sim,
        &json!({"FindingIdentifiers": idents(&id_refs[..100]), "Workflow": {"Status": "RESOLVED"}}),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body["ProcessedFindings"].as_array().map(Vec::len),
        Some(100)
    );
}

#[tokio::test]
async fn configured_findings_come_back_unprocessed() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    sim.state
        .set_finding_error("gone", FindingErrorKind::NotFound);
    sim.state
        .set_finding_error("busy", FindingErrorKind::ConcurrentUpdate);
    let a = send(v1(&c, &sim, &json!({"FindingIdentifiers": idents(&["gone", "ok", "busy", "ok"]), "Workflow": {"Status": "RESOLVED"}}))).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["ProcessedFindings"], idents(&["ok"]));
    let codes: Vec<(&str, &str)> = a.body["UnprocessedFindings"]
        .as_array()
        .map(|u| {
            u.iter()
                .map(|x| {
                    (
                        x["FindingIdentifier"]["Id"].as_str().unwrap_or_default(),
                        x["ErrorCode"].as_str().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        codes,
        [
            ("gone", "FindingNotFound"),
            ("busy", "ConcurrentUpdateError"),
            ("ok", "DuplicatedFindingIdentifier")
        ]
    );
    assert_eq!(sim.state.finding_workflow("gone"), None);
    assert_eq!(
        sim.state.finding_workflow("ok").as_deref(),
        Some("RESOLVED")
    );

    // Clearing the error through the operator endpoint lets the retry through.
    let a = send(
        c.post(format!("{}/_sim/findings/errors", sim.base_url))
            .json(&json!({"id": "busy", "error": null})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = send(v1(
        &c,
        &sim,
        &json!({"FindingIdentifiers": idents(&["busy"]), "Workflow": {"Status": "RESOLVED"}}),
    ))
    .await;
    assert_eq!(a.body["UnprocessedFindings"], json!([]));
    assert_eq!(sim.state.writebacks()[0].unprocessed.len(), 3);
}

#[tokio::test]
async fn batch_update_findings_v2_by_metadata_uid_or_identifier() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let a = send(v2(
        &c,
        &sim,
        &json!({"MetadataUids": ["m-1", "m-2"], "StatusId": 4, "Comment": "Resolved in SEC-3"}),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.body["ProcessedFindings"],
        json!([{"MetadataUid": "m-1"}, {"MetadataUid": "m-2"}])
    );
    assert_eq!(
        sim.state.finding_workflow("m-1").as_deref(),
        Some("RESOLVED")
    );
    assert_eq!(sim.state.finding("m-2").and_then(|f| f.status_id), Some(4));

    sim.state
        .set_finding_error("uid-gone", FindingErrorKind::NotFound);
    sim.state
        .set_finding_error("uid-busy", FindingErrorKind::ConcurrentUpdate);
    let ident = |uid: &str| json!({"CloudAccountUid": "111122223333", "FindingInfoUid": uid, "MetadataProductUid": "aws/guardduty"});
    let a = send(v2(&c, &sim, &json!({"FindingIdentifiers": [ident("uid-ok"), ident("uid-gone"), ident("uid-busy")], "SeverityId": 5, "StatusId": 2}))).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body["ProcessedFindings"],
        json!([{"FindingIdentifier": ident("uid-ok")}])
    );
    assert_eq!(
        a.body["UnprocessedFindings"][0]["FindingIdentifier"],
        ident("uid-gone")
    );
    assert_eq!(
        a.body["UnprocessedFindings"][0]["ErrorCode"],
        "ResourceNotFoundException"
    );
    assert_eq!(
        a.body["UnprocessedFindings"][1]["ErrorCode"],
        "ConflictException"
    );
    assert_eq!(
        sim.state.finding("uid-ok").and_then(|f| f.severity_id),
        Some(5)
    );
    assert_eq!(
        sim.state.writebacks()[1].api,
        WritebackApi::BatchUpdateFindingsV2
    );

    let uids: Vec<String> = (0..101).map(|i| format!("m-{i}")).collect();
    for bad in [
        json!({"MetadataUids": ["m-1"], "FindingIdentifiers": [ident("x")], "StatusId": 4}),
        json!({"StatusId": 4}),
        json!({"MetadataUids": uids, "StatusId": 4}),
        json!({"MetadataUids": ["m-1"], "StatusId": 6}),
        json!({"MetadataUids": ["m-1"], "Comment": "x".repeat(513)}),
    ] {
        let a = send(v2(&c, &sim, &bad)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(a.body["__type"], "ValidationException");
    }
    assert_eq!(sim.state.writebacks().len(), 2);
}

#[tokio::test]
async fn unsigned_requests_are_refused() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let a = send(
        c.patch(format!("{}/findings/batchupdate", sim.base_url))
            .json(&json!({"FindingIdentifiers": idents(&["f"])})),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(sim.state.writebacks().is_empty());
}
