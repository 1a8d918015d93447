//! The business-context scenario through the lifecycle, with the shipped mapping files: a MEDIUM
//! Inspector vulnerability on an EC2 instance of the payments application is raised to CRITICAL,
//! opened in ServiceNow at once, and its new severity is written back to Security Hub with a note
//! naming the application and the rule — once through the in-memory `RecordingWriter`, once
//! through the real Security Hub client against a local wiremock server. Planning goes through
//! the worker's own `MappingPlanner`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_securityhub::config::{Credentials, Region};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::aws::securityhub::client::{SecurityHubWriter, WritePolicy};
use crate::mapping;
use crate::pipeline::plan::{MappingPlanner, MappingsHandle};
use crate::render::RenderOptions;
use crate::testing::{Call, FakeTickets, MemoryStore, RecordingWriter};

const FIXTURE: &[u8] = include_bytes!("../../../tests/fixtures/inspector-medium-payments.json");

/// The worker's planner over the shipped mapping files, with a fixed clock.
fn shipped_planner() -> MappingPlanner {
    let fixed = chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| chrono::Utc::now());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    match mapping::load_with_clock(&dir, Arc::new(move || fixed)) {
        Ok(m) => MappingPlanner::new(MappingsHandle::new(m), RenderOptions::default()),
        Err(e) => panic!("shipped mappings must load:\n{e}"),
    }
}

struct Scenario {
    servicenow: Arc<FakeTickets>,
    jira: Arc<FakeTickets>,
    store: Arc<MemoryStore>,
    lifecycle: Lifecycle,
}

fn scenario(writer: Arc<dyn FindingWriter>) -> Scenario {
    let servicenow = Arc::new(FakeTickets::new("servicenow"));
    let jira = Arc::new(FakeTickets::new("jira"));
    let store = Arc::new(MemoryStore::default());
    let mut tickets: HashMap<String, Arc<dyn TicketSystem>> = HashMap::new();
    tickets.insert("servicenow".into(), servicenow.clone());
    tickets.insert("jira".into(), jira.clone());
    let lifecycle = Lifecycle::new(
        store.clone(),
        tickets,
        writer,
        Arc::new(shipped_planner()),
        "test-host:1",
    );
    Scenario {
        servicenow,
        jira,
        store,
        lifecycle,
    }
}

fn payments_finding() -> Finding {
    match crate::finding::decode(FIXTURE) {
        Ok(mut findings) if findings.len() == 1 => findings.remove(0),
        other => panic!("the fixture holds one finding: {other:?}"),
    }
}

fn created_payloads(tickets: &FakeTickets) -> Vec<serde_json::Value> {
    tickets
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Create(payload) => Some(payload),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_medium_vulnerability_on_payments_becomes_a_critical_servicenow_incident_and_security_hub_is_told_why()
 {
    let writer = Arc::new(RecordingWriter::new());
    let s = scenario(writer.clone());
    let f = payments_finding();
    assert_eq!(f.severity, Severity::Medium, "the scanner said MEDIUM");

    let outcome = s
        .lifecycle
        .process(&f)
        .await
        .into_result()
        .expect("processed");
    assert_eq!(outcome.teams.len(), 1, "{outcome:?}");
    let team = outcome.team("payments").expect("payments took it");
    assert_eq!(team.actions, vec![Action::Created]);
    assert_eq!(s.jira.creates(), 0, "not the team's Jira project");

    let created = created_payloads(&s.servicenow);
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["urgency"], "1");
    assert_eq!(created[0]["impact"], "1");
    let short = created[0]["short_description"].as_str().unwrap_or_default();
    assert!(
        short.starts_with("[CRITICAL] payments: CVE-2023-48795"),
        "{short}"
    );
    let description = created[0]["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("Application: payments (criticality CRITICAL, owner payments-team)"),
        "{description}"
    );

    let marker = Marker::new("payments", &f.id);
    let record = s.store.record(&marker).expect("recorded");
    assert_eq!(record.rule, "payments-app-vulnerabilities");
    assert_eq!(record.severity, "CRITICAL");

    let updates = writer.updates();
    assert_eq!(updates.len(), 1);
    let update = &updates[0];
    assert_eq!(update.target, f.write_back);
    assert_eq!(update.status, Some(WorkflowStatus::Notified));
    assert_eq!(update.severity, Some(Severity::Critical));
    for needle in [
        "Tracked in servicenow PAY-1",
        "raised from MEDIUM to CRITICAL",
        "payments/payments-app-vulnerabilities",
        "application payments (criticality CRITICAL, owner payments-team)",
    ] {
        assert!(
            update.note.contains(needle),
            "{needle:?} in {}",
            update.note
        );
    }
    assert!(update.note.chars().count() <= crate::aws::securityhub::NOTE_LIMIT);
}

#[tokio::test]
async fn redelivery_and_the_critical_echo_open_no_second_payments_ticket() {
    let writer = Arc::new(RecordingWriter::new());
    let s = scenario(writer.clone());
    let f = payments_finding();
    s.lifecycle
        .process(&f)
        .await
        .into_result()
        .expect("first delivery");
    let again = s
        .lifecycle
        .process(&f)
        .await
        .into_result()
        .expect("redelivery");
    assert_eq!(
        again.team("payments").map(|t| t.actions.clone()),
        Some(vec![Action::Noop])
    );

    // Our own BatchUpdateFindings comes back as an "Imported" event: Security Hub now says
    // CRITICAL and NOTIFIED, with the same UpdatedAt.
    let mut echo = f.clone();
    echo.severity = Severity::Critical;
    echo.severity_score = 90;
    echo.workflow_status = WorkflowStatus::Notified;
    let outcome = s
        .lifecycle
        .process(&echo)
        .await
        .into_result()
        .expect("echo");
    assert_eq!(
        outcome.team("payments").map(|t| t.actions.clone()),
        Some(vec![Action::Noop]),
        "same effective severity, same fingerprint"
    );
    assert_eq!(created_payloads(&s.servicenow).len(), 1);
    // The finding is CRITICAL in Security Hub now, so SecOps' non-terminal CRITICAL watch sees it
    // like any other CRITICAL finding (its own Jira ticket, no write-back of its own).
    assert_eq!(
        outcome.team("security").map(|t| t.actions.clone()),
        Some(vec![Action::Created])
    );
    assert_eq!(s.jira.creates(), 1);
    assert_eq!(
        writer.updates().len(),
        1,
        "only the first creation wrote back"
    );
}

#[tokio::test]
async fn outside_every_application_the_same_vulnerability_is_not_raised() {
    let writer = Arc::new(RecordingWriter::new());
    let s = scenario(writer.clone());
    let mut f = payments_finding();
    // Outside every application (an account none claims, no tag) no rule raises it, and a MEDIUM
    // finding nobody owns opens nothing.
    f.account_id = "999900001111".into();
    f.resources[0].id = "arn:aws:ec2:us-east-1:999900001111:instance/i-0a1b2c3d4e5f60718".into();
    f.resources[0].tags.clear();
    let outcome = s
        .lifecycle
        .process(&f)
        .await
        .into_result()
        .expect("processed");
    assert!(outcome.is_unrouted(), "MEDIUM and unowned: {outcome:?}");
    assert!(writer.updates().is_empty());
    assert_eq!(created_payloads(&s.servicenow).len(), 0);
}

/// A Security Hub client on the real SDK, pointed at `server`.
async fn security_hub(server: &MockServer) -> SecurityHubWriter {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDTEST",
            "test-secret",
            None,
            None,
            "test",
        ))
        .endpoint_url(server.uri())
        .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(1)))
        .load()
        .await;
    SecurityHubWriter::from_conf(&sdk).with_policy(WritePolicy {
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..WritePolicy::default()
    })
}

#[tokio::test]
async fn the_raised_severity_reaches_batch_update_findings_as_severity_label_with_the_reason() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/findings/batchupdate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "ProcessedFindings": [],
            "UnprocessedFindings": []
        })))
        .mount(&server)
        .await;
    let s = scenario(Arc::new(security_hub(&server).await));
    let f = payments_finding();
    s.lifecycle
        .process(&f)
        .await
        .into_result()
        .expect("processed");

    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 1, "one BatchUpdateFindings call");
    let body: serde_json::Value = match serde_json::from_slice(&requests[0].body) {
        Ok(v) => v,
        Err(e) => panic!("request body is not JSON: {e}"),
    };
    let crate::finding::WriteBackId::Asff { id, product_arn } = &f.write_back else {
        panic!("the fixture is ASFF");
    };
    assert_eq!(
        body["FindingIdentifiers"],
        serde_json::json!([{ "Id": id, "ProductArn": product_arn }])
    );
    assert_eq!(body["Severity"], serde_json::json!({ "Label": "CRITICAL" }));
    assert_eq!(
        body["Workflow"],
        serde_json::json!({ "Status": "NOTIFIED" })
    );
    let note = body["Note"]["Text"].as_str().unwrap_or_default();
    assert!(
        note.contains("application payments") && note.contains("payments-app-vulnerabilities"),
        "{note}"
    );
}
