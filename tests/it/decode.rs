//! The decoder seen from outside: every input form the README lists,
//! the normalized fields templates and criteria rely on, and the error a DLQ entry would carry for
//! each kind of bad input.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use findings_bridge::finding::{
    DecodeError, Finding, RecordState, Schema, Severity, WorkflowStatus, WriteBackId, decode,
};
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).expect("fixture is valid JSON")
}

fn decode_one(input: &[u8]) -> Finding {
    let mut findings = decode(input).unwrap_or_else(|e| panic!("decode failed: {e}"));
    assert_eq!(findings.len(), 1, "expected exactly one finding");
    findings.remove(0)
}

fn decode_json(value: &Value) -> Result<Vec<Finding>, DecodeError> {
    decode(value.to_string().as_bytes())
}

fn decode_err(input: &[u8]) -> DecodeError {
    match decode(input) {
        Ok(findings) => panic!("expected an error, decoded {} finding(s)", findings.len()),
        Err(e) => e,
    }
}

/// A minimal valid ASFF finding, to be bent into shapes under test.
fn asff() -> Value {
    json!({
        "SchemaVersion": "2018-10-08",
        "Id": "arn:aws:securityhub:us-east-1:111122223333:security-control/S3.8/finding/abc",
        "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/securityhub",
        "GeneratorId": "security-control/S3.8",
        "AwsAccountId": "111122223333",
        "Title": "S3 general purpose buckets should block public access",
        "Description": "d",
        "Severity": { "Label": "HIGH" },
        "Resources": [{ "Type": "AwsS3Bucket", "Id": "arn:aws:s3:::bucket" }]
    })
}

/// A minimal valid OCSF finding.
fn ocsf() -> Value {
    json!({
        "class_uid": 2004,
        "severity_id": 3,
        "status_id": 1,
        "finding_info": { "uid": "finding-1", "title": "t" },
        "metadata": { "product": { "uid": "arn:aws:securityhub:us-east-1::productv2/aws/guardduty" } },
        "cloud": { "account": { "uid": "444455556666" }, "region": "us-east-1" }
    })
}

fn imported(findings: Value) -> Value {
    json!({
        "version": "0",
        "id": "e1",
        "detail-type": "Security Hub Findings - Imported",
        "source": "aws.securityhub",
        "account": "111122223333",
        "time": "2026-03-02T08:15:07Z",
        "region": "us-east-1",
        "resources": [],
        "detail": { "findings": findings }
    })
}

// ---------------------------------------------------------------------------------------------
// Input forms

#[test]
fn guardduty_imported_event_normalizes_every_field() {
    let input = fixture("guardduty-eventbridge.json");
    let f = decode_one(&input);
    let id = "arn:aws:guardduty:us-east-1:444455556666:detector/12abc34d567e8fa901bc2d34e56789f0/finding/60c1a2b3c4d5e6f708192a3b4c5d6e7f";

    assert_eq!(f.id, id);
    assert_eq!(f.schema, Schema::Asff);
    assert_eq!(
        f.product_arn,
        "arn:aws:securityhub:us-east-1::product/aws/guardduty"
    );
    assert_eq!(f.product_name, "GuardDuty");
    assert_eq!(f.company_name, "Amazon");
    assert_eq!(
        f.generator_id,
        "arn:aws:guardduty:us-east-1:444455556666:detector/12abc34d567e8fa901bc2d34e56789f0"
    );
    assert_eq!(f.account_id, "444455556666");
    assert_eq!(f.region, "us-east-1");
    assert!(
        f.title
            .starts_with("EC2 instance i-0abcd1234ef567890 is querying")
    );
    assert!(f.description.contains("update-check.example-c2.net"));
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.severity_score, 80);
    assert_eq!(
        f.types,
        ["TTPs/Command and Control/Backdoor:EC2-C&CActivity.B!DNS"]
    );
    assert_eq!(f.workflow_status, WorkflowStatus::New);
    assert_eq!(f.record_state, RecordState::Active);
    assert_eq!(f.created_at.as_deref(), Some("2026-03-01T22:47:18.632Z"));
    assert_eq!(f.updated_at.as_deref(), Some("2026-03-02T08:14:55.402Z"));
    assert_eq!(
        f.first_observed_at.as_deref(),
        Some("2026-03-01T22:41:09.000Z")
    );
    assert_eq!(
        f.last_observed_at.as_deref(),
        Some("2026-03-02T08:02:51.000Z")
    );
    assert!(f.updated_at_time().is_some());
    assert_eq!(f.compliance.status, None);
    assert!(!f.is_resolved());

    assert_eq!(f.resources.len(), 1);
    let r = &f.resources[0];
    assert_eq!(r.kind, "AwsEc2Instance");
    assert_eq!(
        r.id,
        "arn:aws:ec2:us-east-1:444455556666:instance/i-0abcd1234ef567890"
    );
    assert_eq!(r.region.as_deref(), Some("us-east-1"));
    assert_eq!(r.partition.as_deref(), Some("aws"));
    assert_eq!(r.tags.get("team").map(String::as_str), Some("payments"));
    assert_eq!(
        r.tags.get("Name").map(String::as_str),
        Some("payments-api-1")
    );

    assert_eq!(
        f.product_fields
            .get("aws/guardduty/service/count")
            .map(String::as_str),
        Some("3")
    );
    assert!(f.user_defined_fields.is_empty());
    assert_eq!(
        f.write_back,
        WriteBackId::Asff {
            id: id.to_owned(),
            product_arn: "arn:aws:securityhub:us-east-1::product/aws/guardduty".to_owned(),
        }
    );

    // Console link: the CSPM findings page of the finding's region, filtered on the Id, which is
    // URL-encoded twice as the console expects (`:` → %253A, `/` → %252F).
    assert!(
        f.console_url.starts_with(
            "https://us-east-1.console.aws.amazon.com/securityhub/home?region=us-east-1\
             #/findings?search=Id%3D%255Coperator%255C%253AEQUALS%255C%253A\
             arn%253Aaws%253Aguardduty%253Aus-east-1%253A444455556666%253Adetector%252F"
        ),
        "{}",
        f.console_url
    );
    assert!(
        f.console_url
            .ends_with("%252Ffinding%252F60c1a2b3c4d5e6f708192a3b4c5d6e7f")
    );

    // raw is the finding object exactly as received, unknown fields included.
    let event = fixture_json("guardduty-eventbridge.json");
    assert_eq!(f.raw, event["detail"]["findings"][0]);
    assert_eq!(f.raw["Sample"], json!(false));
    assert_eq!(
        f.raw["Resources"][0]["Details"]["AwsEc2Instance"]["Type"],
        json!("m6i.large")
    );
}

#[test]
fn inspector_vulnerability_is_critical_with_remediation() {
    let f = decode_one(&fixture("inspector-cve-eventbridge.json"));
    assert_eq!(f.product_name, "Inspector");
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.severity_score, 90);
    assert_eq!(f.region, "eu-west-1");
    assert_eq!(f.account_id, "111122223333");
    assert_eq!(f.title, "CVE-2024-3094 - xz, xz-libs");
    assert_eq!(f.resources[0].kind, "AwsEcrContainerImage");
    assert_eq!(
        f.resources[0].tags.get("team").map(String::as_str),
        Some("checkout")
    );
    assert_eq!(
        f.remediation.url.as_deref(),
        Some("https://nvd.nist.gov/vuln/detail/CVE-2024-3094")
    );
    assert!(
        f.remediation
            .text
            .as_deref()
            .is_some_and(|t| t.contains("5.6.1-2"))
    );
    assert!(
        f.console_url
            .starts_with("https://eu-west-1.console.aws.amazon.com/")
    );
    assert_eq!(f.raw["Vulnerabilities"][0]["Id"], json!("CVE-2024-3094"));
}

#[test]
fn cspm_control_failed_then_passed_is_one_finding_resolving() {
    let failed = decode_one(&fixture("cspm-control-failed.json"));
    let passed = decode_one(&fixture("cspm-control-passed.json"));

    assert_eq!(failed.id, passed.id);
    assert_eq!(failed.account_id, "111122223333");
    assert_eq!(failed.compliance.status.as_deref(), Some("FAILED"));
    assert_eq!(failed.compliance.control_id.as_deref(), Some("S3.8"));
    assert_eq!(
        failed.compliance.standards,
        [
            "standards/aws-foundational-security-best-practices/v/1.0.0",
            "standards/nist-800-53/v/5.0.0"
        ]
    );
    assert_eq!(failed.compliance.related_requirements.len(), 3);
    assert_eq!(failed.severity, Severity::High);
    assert!(!failed.is_resolved());

    assert_eq!(passed.compliance.status.as_deref(), Some("PASSED"));
    assert_eq!(passed.severity, Severity::Informational);
    assert_eq!(passed.severity_score, 0);
    assert_eq!(passed.workflow_status, WorkflowStatus::Resolved);
    assert!(passed.is_resolved());

    let (Some(before), Some(after)) = (failed.updated_at_time(), passed.updated_at_time()) else {
        panic!("both UpdatedAt must parse");
    };
    assert!(after > before, "the PASSED update must be newer");
}

#[test]
fn custom_action_finding_uses_fallbacks() {
    let f = decode_one(&fixture("custom-action.json"));
    // No Severity.Label: Normalized 45 decides the label and is the score.
    assert_eq!(f.severity, Severity::Medium);
    assert_eq!(f.severity_score, 45);
    // No ProductName / CompanyName / Region: derived from the ProductArn.
    assert_eq!(f.product_name, "IAM Access Analyzer");
    assert_eq!(f.company_name, "AWS");
    assert_eq!(f.region, "eu-west-1");
    // Only the legacy WorkflowState: DEFERRED → SUPPRESSED.
    assert_eq!(f.workflow_status, WorkflowStatus::Suppressed);
    assert_eq!(
        f.user_defined_fields.get("triage").map(String::as_str),
        Some("escalated-by-analyst")
    );
    assert!(f.resources[0].tags.is_empty());
}

#[test]
fn sns_notification_decodes_like_the_event_it_carries() {
    let wrapped = decode_one(&fixture("sns-wrapped.json"));
    let message = fixture_json("sns-wrapped.json")["Message"]
        .as_str()
        .expect("Message is a string")
        .to_owned();
    let direct = decode_one(message.as_bytes());

    assert_eq!(wrapped, direct);
    assert_eq!(wrapped.severity, Severity::Low);
    assert_eq!(wrapped.region, "eu-west-1");
    assert_eq!(wrapped.account_id, "444455556666");
    assert_eq!(
        wrapped.resources[0].tags.get("team").map(String::as_str),
        Some("search")
    );
}

#[test]
fn ocsf_detection_finding_normalizes_every_field() {
    let f = decode_one(&fixture("ocsf-detection.json"));
    let id = "arn:aws:guardduty:us-east-1:444455556666:detector/12abc34d567e8fa901bc2d34e56789f0/finding/d2e3f4a5b6c7d8e9f0a1b2c3d4e5f607";

    assert_eq!(f.schema, Schema::Ocsf);
    assert_eq!(f.id, id);
    assert_eq!(
        f.product_arn,
        "arn:aws:securityhub:us-east-1::productv2/aws/guardduty"
    );
    assert_eq!(f.product_name, "GuardDuty");
    assert_eq!(f.company_name, "AWS");
    assert_eq!(f.generator_id, "InstanceCredentialExfiltration.OutsideAWS");
    assert_eq!(f.account_id, "444455556666");
    assert_eq!(f.region, "us-east-1");
    assert!(f.title.starts_with("Credentials for the EC2 instance role"));
    assert!(f.description.contains("999988887777"));
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.severity_score, Severity::High.default_score());
    assert_eq!(
        f.types,
        ["UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS"]
    );
    assert_eq!(f.workflow_status, WorkflowStatus::New);
    assert_eq!(f.record_state, RecordState::Active);

    // `_dt` wins when present; epoch milliseconds otherwise.
    assert_eq!(f.created_at.as_deref(), Some("2026-03-02T09:51:13.000Z"));
    assert_eq!(f.updated_at.as_deref(), Some("2026-03-02T09:59:58.000Z"));
    assert_eq!(
        f.first_observed_at.as_deref(),
        Some("2026-03-02T09:49:10.000Z")
    );
    assert_eq!(
        f.last_observed_at.as_deref(),
        Some("2026-03-02T09:58:30.000Z")
    );
    assert!(f.updated_at_time().is_some());

    assert_eq!(f.resources.len(), 2);
    let role = &f.resources[0];
    assert_eq!(role.kind, "AWS::IAM::Role");
    assert_eq!(
        role.id,
        "arn:aws:iam::444455556666:role/payments-api-instance-role"
    );
    assert_eq!(role.partition.as_deref(), Some("aws"));
    assert_eq!(role.tags.get("team").map(String::as_str), Some("payments"));
    assert_eq!(role.tags.get("env").map(String::as_str), Some("prod"));
    assert_eq!(f.resources[1].kind, "AWS::IAM::AccessKey");
    assert_eq!(f.resources[1].id, "ASIA4EXAMPLE7QZ2KD3F");

    assert!(
        f.remediation
            .text
            .as_deref()
            .is_some_and(|t| t.starts_with("Revoke"))
    );
    assert!(
        f.remediation
            .url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://docs.aws.amazon.com/guardduty/"))
    );

    // Only string values of `unmapped` / `metadata` become product fields.
    assert_eq!(
        f.product_fields
            .get("guardduty.service.count")
            .map(String::as_str),
        Some("2")
    );
    assert!(!f.product_fields.contains_key("guardduty.service.archived"));
    assert_eq!(
        f.product_fields.get("metadata.version").map(String::as_str),
        Some("1.6.0")
    );

    assert_eq!(
        f.write_back,
        WriteBackId::Ocsf {
            metadata_uid: Some("f3a4b5c6-d7e8-4f90-a1b2-c3d4e5f6a7b8".to_owned()),
            cloud_account_uid: "444455556666".to_owned(),
            finding_info_uid: id.to_owned(),
            metadata_product_uid: "arn:aws:securityhub:us-east-1::productv2/aws/guardduty"
                .to_owned(),
        }
    );
    assert!(
        f.console_url.starts_with(
            "https://us-east-1.console.aws.amazon.com/securityhub/v2/home?region=us-east-1\
             #/findings?search=finding_info.uid%3D%255Coperator%255C%253AEQUALS%255C%253Aarn%253Aaws%253Aguardduty"
        ),
        "{}",
        f.console_url
    );
    assert_eq!(
        f.raw,
        fixture_json("ocsf-detection.json")["detail"]["findings"][0]
    );
}

#[test]
fn ocsf_compliance_finding_failed() {
    let f = decode_one(&fixture("ocsf-compliance.json"));
    assert_eq!(f.schema, Schema::Ocsf);
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.workflow_status, WorkflowStatus::Notified);
    assert_eq!(f.compliance.status.as_deref(), Some("FAILED"));
    assert_eq!(f.compliance.control_id.as_deref(), Some("EC2.19"));
    assert_eq!(f.compliance.standards.len(), 1);
    assert_eq!(
        f.compliance.related_requirements,
        ["NIST.800-53.r5 CM-7(1)", "NIST.800-53.r5 SC-7(5)"]
    );
    assert!(!f.is_resolved());
    assert_eq!(f.generator_id, "security-control/EC2.19");
    assert_eq!(f.product_name, "Security Hub");
    assert_eq!(f.region, "eu-west-1");
    assert_eq!(f.account_id, "111122223333");
    // Tags given as a plain map are accepted too.
    assert_eq!(
        f.resources[0].tags.get("team").map(String::as_str),
        Some("platform")
    );
    assert_eq!(f.created_at.as_deref(), Some("2026-02-24T09:00:01.000Z"));
    assert_eq!(f.updated_at.as_deref(), Some("2026-03-03T08:22:19.000Z"));
}

#[test]
fn bare_asff_finding() {
    let f = decode_one(&fixture("bare-asff.json"));
    assert_eq!(f.schema, Schema::Asff);
    assert_eq!(f.compliance.control_id.as_deref(), Some("EC2.8"));
    assert_eq!(f.account_id, "444455556666");
    assert_eq!(f.region, "eu-west-1");
    assert_eq!(
        f.resources[0].tags.get("app").map(String::as_str),
        Some("payments")
    );
    assert_eq!(f.raw, fixture_json("bare-asff.json"));
}

#[test]
fn bare_ocsf_vulnerability_archived_with_caption_severity() {
    let f = decode_one(&fixture("bare-ocsf.json"));
    assert_eq!(f.schema, Schema::Ocsf);
    // severity_id 99 (Other) falls back to the `severity` caption.
    assert_eq!(f.severity, Severity::Critical);
    // status_id 5 (Archived): archived record, workflow untouched (NEW).
    assert_eq!(f.record_state, RecordState::Archived);
    assert_eq!(f.workflow_status, WorkflowStatus::New);
    assert!(f.is_resolved());
    assert_eq!(f.updated_at.as_deref(), Some("2026-03-04T15:29:58.000Z"));
    assert_eq!(f.product_name, "Inspector");
    assert_eq!(
        f.raw["vulnerabilities"][0]["cve"]["uid"],
        json!("CVE-2025-0001")
    );
}

#[test]
fn array_of_mixed_bare_findings() {
    let findings = decode(&fixture("array.json")).expect("array decodes");
    let summary: Vec<_> = findings.iter().map(|f| (f.schema, f.severity)).collect();
    assert_eq!(
        summary,
        [
            (Schema::Asff, Severity::Medium),
            (Schema::Ocsf, Severity::Low)
        ]
    );
    assert_ne!(findings[0].id, findings[1].id);
}

#[test]
fn empty_inputs_decode_to_no_findings() {
    assert!(decode(b"[]").expect("empty array").is_empty());
    assert!(
        decode(b"  [ ]\n")
            .expect("empty array with space")
            .is_empty()
    );
    assert!(
        decode_json(&imported(json!([])))
            .expect("event without findings")
            .is_empty()
    );
}

#[test]
fn get_findings_cli_output_decodes() {
    let listing = json!({ "Findings": [asff(), ocsf()], "NextToken": null });
    let findings = decode_json(&listing).expect("listing decodes");
    assert_eq!(findings.len(), 2);
    assert_eq!(findings[1].schema, Schema::Ocsf);
}

#[test]
fn event_region_is_the_last_fallback() {
    let mut finding = asff();
    finding["ProductArn"] = json!("arn:aws:securityhub:::product/acme/scanner");
    let mut event = imported(json!([finding]));
    event["region"] = json!("eu-west-1");
    let f = &decode_json(&event).expect("decodes")[0];
    assert_eq!(f.region, "eu-west-1");
    assert_eq!(f.product_name, "scanner");
    assert_eq!(f.company_name, "acme");
}

// ---------------------------------------------------------------------------------------------
// Severity and status mappings

#[test]
fn asff_severity_label_wins_and_normalized_is_the_fallback() {
    let cases = [
        (
            json!({ "Label": "LOW", "Normalized": 95 }),
            Severity::Low,
            95,
        ),
        (json!({ "Label": "critical" }), Severity::Critical, 90),
        (json!({ "Normalized": 0 }), Severity::Informational, 0),
        (json!({ "Normalized": 39 }), Severity::Low, 39),
        (json!({ "Normalized": 40 }), Severity::Medium, 40),
        (json!({ "Normalized": 70 }), Severity::High, 70),
        (json!({ "Normalized": 90 }), Severity::Critical, 90),
        (
            json!({ "Product": 8.0, "Normalized": 100 }),
            Severity::Critical,
            100,
        ),
    ];
    for (severity, label, score) in cases {
        let mut finding = asff();
        finding["Severity"] = severity.clone();
        let f = &decode_json(&finding).expect("decodes")[0];
        assert_eq!((f.severity, f.severity_score), (label, score), "{severity}");
    }
}

#[test]
fn asff_severity_without_label_or_normalized_is_rejected() {
    let mut finding = asff();
    finding["Severity"] = json!({ "Product": 8 });
    let e = decode_json(&finding).expect_err("no usable severity");
    assert_eq!(e.path, "Severity");
    assert!(e.message.contains("neither Label nor Normalized"), "{e}");

    finding["Severity"] = json!({ "Label": "SEVERE" });
    let e = decode_json(&finding).expect_err("unknown label");
    assert_eq!(e.path, "Severity.Label");
    assert!(e.message.contains("\"SEVERE\""), "{e}");

    finding["Severity"] = json!({ "Normalized": 150 });
    let e = decode_json(&finding).expect_err("out of range");
    assert_eq!(e.path, "Severity.Normalized");

    finding["Severity"] = json!({ "Normalized": "80" });
    let e = decode_json(&finding).expect_err("string score");
    assert_eq!(
        e.to_string(),
        "Severity.Normalized: expected a number, got a string"
    );
}

#[test]
fn asff_workflow_and_record_state() {
    let cases = [
        (
            json!({ "Workflow": { "Status": "NOTIFIED" } }),
            WorkflowStatus::Notified,
        ),
        (
            json!({ "Workflow": { "Status": "SUPPRESSED" }, "WorkflowState": "NEW" }),
            WorkflowStatus::Suppressed,
        ),
        (
            json!({ "WorkflowState": "ASSIGNED" }),
            WorkflowStatus::Notified,
        ),
        (
            json!({ "WorkflowState": "IN_PROGRESS" }),
            WorkflowStatus::Notified,
        ),
        (
            json!({ "WorkflowState": "RESOLVED" }),
            WorkflowStatus::Resolved,
        ),
        (json!({}), WorkflowStatus::New),
    ];
    for (extra, expected) in cases {
        let mut finding = asff();
        for (k, v) in extra.as_object().expect("object") {
            finding[k] = v.clone();
        }
        let f = &decode_json(&finding).expect("decodes")[0];
        assert_eq!(f.workflow_status, expected, "{extra}");
    }

    let mut finding = asff();
    finding["RecordState"] = json!("ARCHIVED");
    let f = &decode_json(&finding).expect("decodes")[0];
    assert_eq!(f.record_state, RecordState::Archived);
    assert!(f.is_resolved());

    finding["RecordState"] = json!("DELETED");
    assert_eq!(
        decode_json(&finding).expect_err("bad state").path,
        "RecordState"
    );
    finding["RecordState"] = json!("ACTIVE");
    finding["Workflow"] = json!({ "Status": "DONE" });
    assert_eq!(
        decode_json(&finding).expect_err("bad status").path,
        "Workflow.Status"
    );
}

#[test]
fn ocsf_severity_id_maps_to_labels() {
    let cases = [
        (json!({ "severity_id": 1 }), Severity::Informational),
        (json!({ "severity_id": 2 }), Severity::Low),
        (json!({ "severity_id": 3 }), Severity::Medium),
        (json!({ "severity_id": 4 }), Severity::High),
        (json!({ "severity_id": 5 }), Severity::Critical),
        (
            json!({ "severity_id": 6, "severity": "Fatal" }),
            Severity::Critical,
        ),
        (json!({ "severity_id": 0 }), Severity::Informational),
        (json!({ "severity_id": 99 }), Severity::Informational),
        (
            json!({ "severity_id": 99, "severity": "High" }),
            Severity::High,
        ),
        (
            json!({ "severity_id": 99, "severity": "Fatal" }),
            Severity::Critical,
        ),
        (
            json!({ "severity_id": 0, "severity": "Unknown" }),
            Severity::Informational,
        ),
        (json!({ "severity": "Medium" }), Severity::Medium),
    ];
    for (fields, expected) in cases {
        let mut finding = ocsf();
        finding
            .as_object_mut()
            .expect("object")
            .remove("severity_id");
        for (k, v) in fields.as_object().expect("object") {
            finding[k] = v.clone();
        }
        let f = &decode_json(&finding).expect("decodes")[0];
        assert_eq!(f.severity, expected, "{fields}");
        assert_eq!(f.severity_score, expected.default_score());
    }

    let mut finding = ocsf();
    finding
        .as_object_mut()
        .expect("object")
        .remove("severity_id");
    let e = decode_json(&finding).expect_err("no severity at all");
    assert_eq!(e.to_string(), "severity_id: missing");
    finding["severity_id"] = json!("4");
    assert_eq!(
        decode_json(&finding).expect_err("string id").path,
        "severity_id"
    );
}

#[test]
fn ocsf_status_id_maps_to_workflow_and_record_state() {
    let cases = [
        (
            json!({ "status_id": 1 }),
            WorkflowStatus::New,
            RecordState::Active,
        ),
        (
            json!({ "status_id": 2 }),
            WorkflowStatus::Notified,
            RecordState::Active,
        ),
        (
            json!({ "status_id": 3 }),
            WorkflowStatus::Suppressed,
            RecordState::Active,
        ),
        (
            json!({ "status_id": 4 }),
            WorkflowStatus::Resolved,
            RecordState::Active,
        ),
        (
            json!({ "status_id": 5 }),
            WorkflowStatus::New,
            RecordState::Archived,
        ),
        (
            json!({ "status_id": 99 }),
            WorkflowStatus::New,
            RecordState::Active,
        ),
        (
            json!({ "status": "Resolved" }),
            WorkflowStatus::Resolved,
            RecordState::Active,
        ),
        (
            json!({ "status_id": 1, "activity_id": 3 }),
            WorkflowStatus::New,
            RecordState::Archived,
        ),
        (json!({}), WorkflowStatus::New, RecordState::Active),
    ];
    for (fields, workflow, record) in cases {
        let mut finding = ocsf();
        finding.as_object_mut().expect("object").remove("status_id");
        for (k, v) in fields.as_object().expect("object") {
            finding[k] = v.clone();
        }
        let f = &decode_json(&finding).expect("decodes")[0];
        assert_eq!(
            (f.workflow_status, f.record_state),
            (workflow, record),
            "{fields}"
        );
    }
}

#[test]
fn ocsf_compliance_status_maps_to_asff_spelling() {
    let cases = [
        (json!({ "status_id": 1 }), Some("PASSED")),
        (json!({ "status_id": 2 }), Some("WARNING")),
        (json!({ "status_id": 3, "status": "Fail" }), Some("FAILED")),
        (json!({ "status": "Pass" }), Some("PASSED")),
        (json!({ "status_id": 0 }), Some("NOT_AVAILABLE")),
        (json!({ "control": "IAM.1" }), None),
    ];
    for (compliance, expected) in cases {
        let mut finding = ocsf();
        finding["class_uid"] = json!(2003);
        finding["compliance"] = compliance.clone();
        let f = &decode_json(&finding).expect("decodes")[0];
        assert_eq!(f.compliance.status.as_deref(), expected, "{compliance}");
        assert_eq!(f.is_resolved(), expected == Some("PASSED"));
    }
}

#[test]
fn ocsf_without_metadata_uid_needs_the_product_uid() {
    let mut finding = ocsf();
    finding["metadata"] = json!({ "product": { "name": "Scanner" } });
    let e = decode_json(&finding).expect_err("cannot be written back");
    assert_eq!(e.path, "metadata.product.uid");

    finding["metadata"] = json!({ "uid": "m-1", "product": { "name": "Scanner" } });
    let f = &decode_json(&finding).expect("metadata.uid suffices")[0];
    assert_eq!(f.product_name, "Scanner");
    assert!(
        matches!(&f.write_back, WriteBackId::Ocsf { metadata_uid: Some(uid), .. } if uid == "m-1")
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed input: each error names where and what.

#[test]
fn truncated_json_reports_line_and_column() {
    let e = decode_err(&fixture("malformed-truncated.json"));
    assert_eq!(e.path, "");
    assert!(e.message.starts_with("invalid JSON at line "), "{e}");
    assert!(e.message.contains("EOF while parsing"), "{e}");
}

#[test]
fn severity_given_as_a_string() {
    let e = decode_err(&fixture("malformed-severity-string.json"));
    assert_eq!(e.path, "detail.findings[0].Severity");
    assert_eq!(e.message, "expected an object, got a string");
    assert_eq!(
        e.to_string(),
        "detail.findings[0].Severity: expected an object, got a string"
    );
}

#[test]
fn resources_given_as_an_object() {
    let e = decode_err(&fixture("malformed-resources-object.json"));
    assert_eq!(e.path, "detail.findings[0].Resources");
    assert_eq!(e.message, "expected an array, got an object");
}

#[test]
fn tags_given_as_a_list() {
    let e = decode_err(&fixture("malformed-tags-list.json"));
    assert_eq!(e.path, "detail.findings[0].Resources[0].Tags");
    assert!(e.message.starts_with("expected an object"), "{e}");
    assert!(e.message.ends_with("got an array"), "{e}");
}

#[test]
fn missing_id() {
    let e = decode_err(&fixture("malformed-missing-id.json"));
    assert_eq!(e.to_string(), "detail.findings[0].Id: missing");

    let mut finding = asff();
    finding["Id"] = json!("  ");
    assert_eq!(
        decode_json(&finding).expect_err("blank id").to_string(),
        "Id: must not be empty"
    );
}

#[test]
fn missing_detail_findings() {
    let e = decode_err(&fixture("malformed-no-findings.json"));
    assert_eq!(e.to_string(), "detail.findings: missing");

    let mut event = imported(json!([]));
    event["detail"]["findings"] = json!({});
    assert_eq!(
        decode_json(&event)
            .expect_err("object findings")
            .to_string(),
        "detail.findings: expected an array, got an object"
    );
    event.as_object_mut().expect("object").remove("detail");
    assert_eq!(
        decode_json(&event).expect_err("no detail").to_string(),
        "detail: missing"
    );
}

#[test]
fn unsupported_detail_type_and_source() {
    let e = decode_err(&fixture("malformed-detail-type.json"));
    assert_eq!(e.path, "detail-type");
    assert!(
        e.message
            .starts_with("unsupported \"Security Hub Insight Results\""),
        "{e}"
    );

    let mut event = imported(json!([asff()]));
    event["source"] = json!("aws.guardduty");
    let e = decode_json(&event).expect_err("other source");
    assert_eq!(e.path, "source");
    assert!(e.message.contains("aws.guardduty"), "{e}");
}

#[test]
fn errors_inside_an_sns_message_say_so() {
    let e = decode_err(&fixture("malformed-sns-missing-id.json"));
    assert_eq!(e.to_string(), "Message.detail.findings[0].Id: missing");

    let sns = json!({ "Type": "Notification", "MessageId": "m", "Message": "{\"detail-type\": " });
    let e = decode_json(&sns).expect_err("broken message");
    assert_eq!(e.path, "Message");
    assert!(
        e.message.starts_with("invalid JSON at line 1 column "),
        "{e}"
    );

    let sns = json!({ "Type": "Notification", "Message": { "detail-type": "x" } });
    let e = decode_json(&sns).expect_err("message not a string");
    assert_eq!(e.path, "Message");
    assert!(e.message.contains("expected a string"), "{e}");
}

#[test]
fn wrong_types_inside_findings_name_the_field() {
    let mut finding = asff();
    finding["ProductFields"] = json!({ "aws/guardduty/service/count": 3 });
    let e = decode_json(&imported(json!([finding]))).expect_err("number in ProductFields");
    assert_eq!(
        e.to_string(),
        "detail.findings[0].ProductFields[\"aws/guardduty/service/count\"]: expected a string, got a number"
    );

    let mut finding = asff();
    finding["Types"] = json!(["ok", 7]);
    assert_eq!(
        decode_json(&finding).expect_err("number in Types").path,
        "Types[1]"
    );

    let mut finding = asff();
    finding["Resources"] = json!([{ "Type": "AwsS3Bucket" }]);
    assert_eq!(
        decode_json(&finding).expect_err("resource id").to_string(),
        "Resources[0].Id: missing"
    );

    let mut finding = ocsf();
    finding["finding_info"] = json!({ "title": "no uid" });
    let e = decode_json(&json!({
        "detail-type": "Findings Imported V2",
        "source": "aws.securityhub",
        "detail": { "findings": [finding] }
    }))
    .expect_err("no uid");
    assert_eq!(
        e.to_string(),
        "detail.findings[0].finding_info.uid: missing"
    );

    let mut finding = ocsf();
    finding["resources"] = json!([{ "uid": "r", "tags": [{ "value": "x" }] }]);
    assert_eq!(
        decode_json(&finding).expect_err("tag name").path,
        "resources[0].tags[0].name"
    );

    let mut finding = ocsf();
    finding["class_uid"] = json!(3002);
    let e = decode_json(&finding).expect_err("not a finding class");
    assert_eq!(e.path, "class_uid");

    let e = decode_json(&json!([asff(), 5])).expect_err("number in array");
    assert_eq!(
        e.to_string(),
        "[1]: expected an ASFF or OCSF finding object, got a number"
    );
}

#[test]
fn unrecognised_shapes_are_rejected() {
    let e = decode_err(b"42");
    assert_eq!(e.path, "");
    assert!(e.message.contains("got a number"), "{e}");

    let e = decode_err(br#"{"hello": "world"}"#);
    assert!(e.message.starts_with("not a recognised input"), "{e}");

    let e = decode_err(b"");
    assert!(e.message.starts_with("invalid JSON"), "{e}");
}

#[test]
fn invalid_unicode_escapes_are_errors() {
    let lone = br#"{"SchemaVersion": "2018-10-08", "Id": "a", "Title": "\ud800"}"#;
    let e = decode_err(lone);
    assert_eq!(e.path, "");
    assert!(
        e.message.starts_with("invalid JSON at line 1 column "),
        "{e}"
    );
    assert!(e.message.contains("hex escape"), "{e}");

    let unpaired = br#"{"SchemaVersion": "2018-10-08", "Id": "a", "Title": "\ud800\u0041"}"#;
    let e = decode_err(unpaired);
    assert!(e.message.contains("surrogate"), "{e}");

    let bad_hex = br#"{"SchemaVersion": "2018-10-08", "Id": "a", "Title": "\uZZZZ"}"#;
    let e = decode_err(bad_hex);
    assert!(
        e.message.starts_with("invalid JSON at line 1 column "),
        "{e}"
    );
    assert!(e.message.contains("escape"), "{e}");
}

#[test]
fn non_utf8_bytes_are_an_error_naming_the_offset() {
    let mut input = br#"{"SchemaVersion": "2018-10-08", "Title": ""#.to_vec();
    let offset = input.len();
    input.extend_from_slice(&[0xff, 0xfe]);
    input.extend_from_slice(br#""}"#);
    let e = decode_err(&input);
    assert_eq!(e.path, "");
    assert_eq!(
        e.message,
        format!("input is not valid UTF-8 (invalid byte at offset {offset})")
    );
}

#[test]
fn a_one_mebibyte_title_decodes_quickly() {
    let mut finding = asff();
    let title = "A".repeat(1 << 20);
    finding["Title"] = json!(title);
    let input = imported(json!([finding])).to_string();

    let started = Instant::now();
    let f = decode_one(input.as_bytes());
    let took = started.elapsed();
    assert_eq!(f.title.len(), 1 << 20);
    // Linear work over 1 MiB is milliseconds even unoptimized; quadratic work would be minutes.
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn deeply_nested_garbage_is_an_error_not_a_stack_overflow() {
    let arrays = "[".repeat(200_000);
    let e = decode_err(arrays.as_bytes());
    assert!(e.message.contains("recursion limit exceeded"), "{e}");

    let objects = r#"{"a":"#.repeat(100_000);
    let e = decode_err(objects.as_bytes());
    assert!(e.message.contains("recursion limit exceeded"), "{e}");

    // Nesting hidden inside an otherwise valid finding.
    let inside = format!(
        r#"{{"SchemaVersion": "2018-10-08", "Id": "a", "Extra": {}}}"#,
        "[".repeat(10_000)
    );
    let e = decode_err(inside.as_bytes());
    assert!(e.message.contains("recursion limit exceeded"), "{e}");
}
