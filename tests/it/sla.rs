//! SLA due dates and escalation: `sla` / `escalate` validation with file and line, the due date
//! in the rendered create body and in the severity update (wiremock for the exact requests), the
//! lifecycle moving it in the one update a severity change makes, and the escalation loop on the
//! in-memory store: each breach escalated once, across passes, loop instances and a crash between
//! the ticket calls and the store write.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use findings_bridge::aws::securityhub::FindingWriter;
use findings_bridge::finding::{Finding, Severity};
use findings_bridge::mapping::template::Clock;
use findings_bridge::mapping::{self, Mappings};
use findings_bridge::marker::Marker;
use findings_bridge::pipeline::escalation::{EscalationReport, Escalator};
use findings_bridge::pipeline::lifecycle::Lifecycle;
use findings_bridge::pipeline::plan::{MappingPlanner, MappingsHandle};
use findings_bridge::render::{RenderOptions, RenderedTicket, render_route};
use findings_bridge::runtime::shutdown::Shutdown;
use findings_bridge::store::Record;
use findings_bridge::testing::{Call, FakeTickets, MemoryStore, RecordingWriter};
use findings_bridge::ticket::http::{HttpSettings, ManualClock};
use findings_bridge::ticket::jira::{JiraApiVersion, JiraAuth, JiraClient, JiraConfig};
use findings_bridge::ticket::servicenow::{ServiceNowAuth, ServiceNowClient, ServiceNowConfig};
use findings_bridge::ticket::{FieldUpdate, TicketSystem};
use secrecy::SecretString;
use serde_json::json;
use tempfile::TempDir;
use url::Url;
use wiremock::matchers::{body_json, body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A Jira team with SLAs, a raise-priority/label/comment escalation, and a ServiceNow rule that
/// overrides one severity and escalates to another assignment group.
const PAYMENTS: &str = r#"team = "payments"
[defaults]
sla = { CRITICAL = "1d", HIGH = "7d", MEDIUM = "30d" }
escalate = { priority = "raise", labels = ["sla-breached"], comment = "SLA breached: {{ finding.title }}" }
[defaults.jira]
project = "PAY"
issue_type = "Bug"

[[rules]]
name = "to-servicenow"
order = 1
sla = { CRITICAL = "4h" }
escalate = { priority = "raise", notify = { assignment_group = "Leads" } }
[rules.criteria]
ProductName = [{ Value = "Inspector", Comparison = "EQUALS" }]
[rules.servicenow]
short_description = "{{ finding.title }}"
urgency = "{{ {'CRITICAL': '1', 'HIGH': '2'}[finding.severity] | default('3') }}"
impact = "2"

[[rules]]
name = "to-jira"
order = 2
[rules.jira]
summary = "{{ finding.title }}"
priority = "{{ {'CRITICAL': 'Highest', 'HIGH': 'High'}[finding.severity] | default('Medium') }}"
"#;

const FIRST_OBSERVED: &str = "2026-11-20T09:30:00Z";

fn clock() -> Clock {
    let t = DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    Arc::new(move || t)
}

fn mapping_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn load(dir: &Path) -> Mappings {
    match mapping::load_with_clock(dir, clock()) {
        Ok(m) => m,
        Err(e) => panic!("must load:\n{e}"),
    }
}

fn payments() -> Mappings {
    load(mapping_dir(&[("payments.toml", PAYMENTS)]).path())
}

fn finding(severity: Severity, product: &str, updated_at: &str) -> Finding {
    let mut f = findings_bridge::testing::finding("f-sla", severity, updated_at);
    f.product_name = product.to_owned();
    f.first_observed_at = Some(FIRST_OBSERVED.to_owned());
    f
}

fn render(m: &Mappings, rule: &str, f: &Finding) -> RenderedTicket {
    let rule = m
        .rules
        .iter()
        .find(|r| &*r.name == rule)
        .expect("rule exists");
    render_route(
        &m.engine,
        rule,
        f,
        m.application_for(f),
        &RenderOptions::default(),
    )
    .unwrap()
}

fn assert_has(text: &str, needle: &str) {
    assert!(text.contains(needle), "{needle:?} not in:\n{text}");
}

#[test]
fn check_reports_sla_and_escalate_errors_with_file_and_line() {
    let dir = mapping_dir(&[
        (
            "broken.toml",
            r#"team = "broken"
[defaults]
sla = { CRITICAL = "1d", URGENT = "2d", HIGH = "7 days", LOW = "0d" }
[defaults.jira]
project = "P"
issue_type = "Bug"
[[rules]]
name = "due-twice"
order = 1
[rules.jira]
summary = "s"
fields = { duedate = "2026-01-01" }
[[rules]]
name = "sn"
order = 2
escalate = { priority = "9", labels = ["x"] }
[rules.servicenow]
short_description = "s"
"#,
        ),
        (
            "nosla.toml",
            r#"team = "nosla"
[[rules]]
name = "r"
order = 1
escalate = { comment = "late", labels = ["two words"] }
[rules.jira]
project = "P"
issue_type = "Bug"
summary = "s"
"#,
        ),
    ]);
    let text = match mapping::load(dir.path()) {
        Ok(_) => panic!("must not load"),
        Err(e) => e.to_string(),
    };
    assert_has(
        &text,
        "broken.toml:3: defaults.sla: \"URGENT\" is not a severity label",
    );
    assert_has(
        &text,
        "broken.toml:3: defaults.sla.HIGH: \"7 days\" is not a duration",
    );
    assert_has(
        &text,
        "broken.toml:3: defaults.sla.LOW: \"0d\": a duration must be longer than zero",
    );
    assert_has(
        &text,
        "broken.toml:7: rules[0] (`due-twice`): has an `sla` and sets fields.duedate",
    );
    assert_has(
        &text,
        "broken.toml:16: rules[1] (`sn`): escalate.labels are Jira labels",
    );
    assert_has(
        &text,
        "broken.toml:16: rules[1] (`sn`): escalate.priority \"9\": a ServiceNow priority",
    );
    assert_has(
        &text,
        "nosla.toml:5: rules[0] (`r`): `escalate` needs an `sla`",
    );
    assert_has(
        &text,
        "nosla.toml:5: rules[0].escalate.labels: \"two words\": a Jira label is one word",
    );
    assert_eq!(text.lines().count(), 8, "{text}");
}

#[test]
fn render_puts_the_due_date_in_the_body_and_the_severity_fields() {
    let m = payments();
    // Jira: HIGH is due 7 days after first observed, as a UTC date.
    let high = render(
        &m,
        "to-jira",
        &finding(Severity::High, "GuardDuty", "2026-11-28T10:00:00Z"),
    );
    assert_eq!(high.payload["fields"]["duedate"], "2026-11-27");
    assert_eq!(
        high.severity_fields(),
        json!({ "priority": { "name": "High" }, "duedate": "2026-11-27" })
            .as_object()
            .cloned()
            .unwrap()
    );
    let sla = high.sla.expect("HIGH has an SLA");
    assert_eq!(
        sla.due_at,
        DateTime::parse_from_rfc3339("2026-11-27T09:30:00Z")
            .unwrap()
            .timestamp()
    );
    let escalation = sla.escalation.expect("the defaults escalate");
    assert_eq!(
        serde_json::Value::Object(escalation.fields),
        json!({ "priority": { "name": "Highest" } })
    );
    assert_eq!(escalation.labels, ["sla-breached"]);
    assert_eq!(
        escalation.comment.as_deref(),
        Some("SLA breached: Finding f-sla")
    );

    // INFORMATIONAL has no entry: no due date on create, and a severity update clears it.
    let info = render(
        &m,
        "to-jira",
        &finding(Severity::Informational, "GuardDuty", "2026-11-28T10:00:00Z"),
    );
    assert!(info.payload["fields"].get("duedate").is_none());
    assert_eq!(info.sla, None);
    assert_eq!(info.severity_fields()["duedate"], serde_json::Value::Null);

    // ServiceNow: the rule's own CRITICAL entry (4h) over the defaults' 1d, as a glide
    // date-time; urgency 1 is the top, so "raise" has nothing to raise, the notify field stays.
    let critical = render(
        &m,
        "to-servicenow",
        &finding(Severity::Critical, "Inspector", "2026-11-28T10:00:00Z"),
    );
    assert_eq!(critical.payload["due_date"], "2026-11-20 13:30:00");
    assert_eq!(
        critical.severity_fields()["due_date"],
        "2026-11-20 13:30:00"
    );
    let escalation = critical.sla.and_then(|s| s.escalation).unwrap();
    assert_eq!(
        serde_json::Value::Object(escalation.fields),
        json!({ "assignment_group": "Leads" })
    );
    assert!(escalation.labels.is_empty() && escalation.comment.is_none());
    // HIGH falls back to the defaults' 7d; urgency 2 is raised to 1.
    let high = render(
        &m,
        "to-servicenow",
        &finding(Severity::High, "Inspector", "2026-11-28T10:00:00Z"),
    );
    assert_eq!(high.payload["due_date"], "2026-11-27 09:30:00");
    assert_eq!(
        serde_json::Value::Object(high.sla.and_then(|s| s.escalation).unwrap().fields),
        json!({ "urgency": "1", "assignment_group": "Leads" })
    );
}

#[test]
fn a_rule_can_drop_a_severity_of_the_defaults_with_none() {
    let text = PAYMENTS.replace(
        "sla = { CRITICAL = \"4h\" }",
        "sla = { CRITICAL = \"4h\", HIGH = \"none\" }",
    );
    let m = load(mapping_dir(&[("payments.toml", &text)]).path());
    let high = render(
        &m,
        "to-servicenow",
        &finding(Severity::High, "Inspector", "2026-11-28T10:00:00Z"),
    );
    assert!(high.payload.get("due_date").is_none(), "{}", high.payload);
    assert_eq!(high.sla, None);
    // The severity update clears a due date an earlier severity had set.
    assert_eq!(high.severity_fields()["due_date"], "");
    // The Jira rule keeps the defaults' HIGH.
    let jira = render(
        &m,
        "to-jira",
        &finding(Severity::High, "GuardDuty", "2026-11-28T10:00:00Z"),
    );
    assert_eq!(jira.payload["fields"]["duedate"], "2026-11-27");
}

fn jira(server: &MockServer) -> JiraClient {
    let auth = JiraAuth::Basic {
        email: "bot@acme.test".to_owned(),
        api_token: SecretString::from("tok"),
    };
    let mut cfg = JiraConfig::new(Url::parse(&server.uri()).unwrap(), auth, JiraApiVersion::V3);
    cfg.http = HttpSettings {
        rate_limit_per_sec: 0.0,
        ..HttpSettings::default()
    };
    JiraClient::with_clock(cfg, ManualClock::new()).unwrap()
}

fn servicenow(server: &MockServer) -> ServiceNowClient {
    let auth = ServiceNowAuth::Basic {
        username: "bridge".to_owned(),
        password: SecretString::from("pw"),
    };
    let mut cfg = ServiceNowConfig::new(Url::parse(&server.uri()).unwrap(), auth);
    cfg.http = HttpSettings {
        rate_limit_per_sec: 0.0,
        ..HttpSettings::default()
    };
    ServiceNowClient::with_clock(cfg, ManualClock::new()).unwrap()
}

#[tokio::test]
async fn jira_create_severity_update_and_escalation_requests_carry_the_sla() {
    let m = payments();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .and(body_partial_json(json!({ "fields": {
            "duedate": "2026-11-27", "priority": { "name": "High" } } })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": "10007", "key": "PAY-7", "self": "x" })))
        .expect(1)
        .mount(&server)
        .await;
    // The severity change: priority and due date in one PUT.
    Mock::given(method("PUT"))
        .and(path("/rest/api/3/issue/PAY-7"))
        .and(body_json(json!({ "fields": {
            "priority": { "name": "Highest" }, "duedate": "2026-11-21" } })))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    // The escalation: the raised priority, and labels added (never replacing the ticket's).
    Mock::given(method("PUT"))
        .and(path("/rest/api/3/issue/PAY-7"))
        .and(body_json(json!({
            "fields": { "priority": { "name": "Highest" } },
            "update": { "labels": [{ "add": "sla-breached" }] } })))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let client = jira(&server);
    let high = render(
        &m,
        "to-jira",
        &finding(Severity::High, "GuardDuty", "2026-11-28T10:00:00Z"),
    );
    let ticket = client.create(&high.payload, None).await.unwrap();
    let critical = render(
        &m,
        "to-jira",
        &finding(Severity::Critical, "GuardDuty", "2026-11-28T11:00:00Z"),
    );
    let update = FieldUpdate {
        fields: critical.severity_fields(),
        ..FieldUpdate::default()
    };
    client.update_fields(&ticket, &update).await.unwrap();
    let escalation = high.sla.and_then(|s| s.escalation).unwrap();
    let update = FieldUpdate {
        fields: escalation.fields,
        add_labels: escalation.labels,
    };
    client.update_fields(&ticket, &update).await.unwrap();
}

#[tokio::test]
async fn servicenow_create_and_severity_update_carry_the_due_date() {
    let m = payments();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/now/table/incident"))
        .and(body_partial_json(json!({
            "due_date": "2026-11-27 09:30:00", "urgency": "2" })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "result": {
            "sys_id": "0123456789abcdef0123456789abcdef", "number": "INC0010001" } })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(
            "/api/now/table/incident/0123456789abcdef0123456789abcdef",
        ))
        .and(body_json(json!({
            "urgency": "1", "impact": "2", "due_date": "2026-11-20 13:30:00" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "result": {} })))
        .expect(1)
        .mount(&server)
        .await;
    let client = servicenow(&server);
    let high = render(
        &m,
        "to-servicenow",
        &finding(Severity::High, "Inspector", "2026-11-28T10:00:00Z"),
    );
    let ticket = client
        .create(&high.payload, high.table.as_deref())
        .await
        .unwrap();
    let critical = render(
        &m,
        "to-servicenow",
        &finding(Severity::Critical, "Inspector", "2026-11-28T11:00:00Z"),
    );
    let update = FieldUpdate {
        fields: critical.severity_fields(),
        ..FieldUpdate::default()
    };
    client.update_fields(&ticket, &update).await.unwrap();
}

/// The bridge's own pieces over the in-memory store and a fake Jira, with `PAYMENTS` routing.
struct Bridge {
    store: Arc<MemoryStore>,
    jira: Arc<FakeTickets>,
    lifecycle: Lifecycle,
    systems: HashMap<String, Arc<dyn TicketSystem>>,
}

fn bridge() -> Bridge {
    let store = Arc::new(MemoryStore::default());
    let jira = Arc::new(FakeTickets::new("jira"));
    let mut systems: HashMap<String, Arc<dyn TicketSystem>> = HashMap::new();
    systems.insert("jira".into(), jira.clone());
    let planner = MappingPlanner::new(MappingsHandle::new(payments()), RenderOptions::default());
    let writer: Arc<dyn FindingWriter> = Arc::new(RecordingWriter::new());
    let lifecycle = Lifecycle::new(
        store.clone(),
        systems.clone(),
        writer,
        Arc::new(planner),
        "sla-test:1",
    );
    Bridge {
        store,
        jira,
        lifecycle,
        systems,
    }
}

impl Bridge {
    fn escalator(&self, owner: &str) -> Escalator {
        Escalator::new(
            self.store.clone(),
            self.systems.clone(),
            Duration::from_secs(60),
            Duration::from_secs(30),
            owner,
        )
    }

    fn record(&self, finding: &Finding) -> Record {
        self.store
            .record(&Marker::new("payments", &finding.id))
            .expect("recorded")
    }
}

#[tokio::test]
async fn a_severity_change_moves_the_due_date_in_the_one_priority_update() {
    let b = bridge();
    let high = finding(Severity::High, "GuardDuty", "2026-11-28T10:00:00Z");
    b.lifecycle.process(&high).await.into_result().unwrap();
    let created = b
        .jira
        .calls()
        .into_iter()
        .find_map(|c| match c {
            Call::Create(payload) => Some(payload),
            _ => None,
        })
        .expect("created");
    assert_eq!(created["fields"]["duedate"], "2026-11-27");
    let due_high = b.record(&high).sla.expect("due date recorded").due_at;

    b.jira.clear_calls();
    let critical = finding(Severity::Critical, "GuardDuty", "2026-11-28T11:00:00Z");
    b.lifecycle.process(&critical).await.into_result().unwrap();
    let updates: Vec<_> = b
        .jira
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::UpdateFields(_, fields) => Some(serde_json::Value::Object(fields)),
            _ => None,
        })
        .collect();
    assert_eq!(
        updates,
        [json!({ "priority": { "name": "Highest" }, "duedate": "2026-11-21" })]
    );
    let sla = b.record(&critical).sla.expect("due date recorded");
    assert_eq!(due_high - sla.due_at, 6 * 86_400);
    assert_eq!(sla.escalated_at, None);
}

fn escalations(jira: &FakeTickets) -> (usize, usize) {
    let calls = jira.calls();
    let updates = calls
        .iter()
        .filter(|c| matches!(c, Call::UpdateFields(_, f) if f.get("priority") == Some(&json!({ "name": "Highest" }))))
        .count();
    let comments = jira
        .posted()
        .iter()
        .filter(|(_, text)| text.starts_with("SLA breached: Finding f-sla"))
        .count();
    (updates, comments)
}

fn now() -> i64 {
    Utc::now().timestamp()
}

#[tokio::test]
async fn a_breach_is_escalated_once_across_passes_instances_and_a_lost_write() {
    let b = bridge();
    // First observed 2026-11-20, HIGH: due 2026-11-27, long past by the test's clock.
    let f = finding(Severity::High, "GuardDuty", "2026-11-28T10:00:00Z");
    b.lifecycle.process(&f).await.into_result().unwrap();
    let marker = Marker::new("payments", &f.id);

    // Not due yet at the due date minus a second.
    let due = b.record(&f).sla.unwrap().due_at;
    let first = b.escalator("replica-a");
    assert_eq!(
        first.pass(due - 1).await.unwrap(),
        EscalationReport::default()
    );
    assert_eq!(escalations(&b.jira), (0, 0));

    // A crash between the ticket calls and the store write: the put is lost.
    b.store.steal_before_put(&marker);
    let report = first.pass(now()).await.unwrap();
    assert_eq!(report.deferred, 1, "{report:?}");
    assert_eq!(escalations(&b.jira), (1, 1));
    assert_eq!(b.record(&f).sla.unwrap().escalated_at, None);
    b.store.expire_leases();

    // Retried: the comment is not posted again; the breach is recorded and counted once.
    let report = first.pass(now()).await.unwrap();
    assert_eq!(report.escalated, 1, "{report:?}");
    assert_eq!(escalations(&b.jira).1, 1);
    assert!(b.record(&f).sla.unwrap().escalated_at.is_some());

    // Again, and from a new instance ("restart") on the same store: nothing more.
    b.jira.clear_calls();
    assert_eq!(
        first.pass(now()).await.unwrap(),
        EscalationReport::default()
    );
    let restarted = b.escalator("replica-b");
    assert_eq!(
        restarted.pass(now()).await.unwrap(),
        EscalationReport::default()
    );
    assert!(b.jira.calls().is_empty(), "{:?}", b.jira.calls());
    assert_eq!(escalations(&b.jira).1, 1);
}

#[tokio::test]
async fn closed_tickets_and_resolved_findings_are_never_escalated() {
    let b = bridge();
    let closed = finding(Severity::High, "GuardDuty", "2026-11-28T10:00:00Z");
    b.lifecycle.process(&closed).await.into_result().unwrap();
    let key = b.record(&closed).ticket.unwrap().key;
    b.jira.set_done_for_test(&key, true);

    let mut resolved = finding(Severity::High, "GuardDuty", "2026-11-28T10:00:00Z");
    resolved.id = "f-resolved".into();
    b.lifecycle.process(&resolved).await.into_result().unwrap();
    let mut gone = resolved.clone();
    gone.record_state = findings_bridge::finding::RecordState::Archived;
    gone.updated_at = Some("2026-11-28T12:00:00Z".into());
    b.lifecycle.process(&gone).await.into_result().unwrap();
    assert!(b.record(&gone).finding_resolved);

    b.jira.clear_calls();
    let report = b.escalator("a").pass(now()).await.unwrap();
    assert_eq!(
        report,
        EscalationReport {
            closed: 1,
            ..EscalationReport::default()
        }
    );
    assert!(
        b.jira
            .posted()
            .iter()
            .all(|(_, t)| !t.starts_with("SLA breached"))
    );
    assert!(
        !b.jira
            .calls()
            .iter()
            .any(|c| matches!(c, Call::UpdateFields(..) | Call::Comment(..)))
    );
    // The closed one is recorded as handled, so it is not asked about again.
    assert!(b.record(&closed).sla.unwrap().escalated_at.is_some());
    assert_eq!(
        b.escalator("b").pass(now()).await.unwrap(),
        EscalationReport::default()
    );
}

#[tokio::test(start_paused = true)]
async fn the_loop_escalates_once_however_often_it_runs_and_restarts() {
    let b = bridge();
    let f = finding(Severity::High, "GuardDuty", "2026-11-28T10:00:00Z");
    b.lifecycle.process(&f).await.into_result().unwrap();

    let shutdown = Shutdown::new();
    let first = tokio::spawn(Arc::new(b.escalator("replica-a")).run(shutdown.clone()));
    while b.record(&f).sla.unwrap().escalated_at.is_none() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Ten more intervals of the same loop.
    tokio::time::sleep(Duration::from_secs(600)).await;
    shutdown.trigger();
    first.await.unwrap();
    assert_eq!(escalations(&b.jira), (1, 1));

    // A restarted process runs its own loop on the same store.
    let shutdown = Shutdown::new();
    let second = tokio::spawn(Arc::new(b.escalator("replica-b")).run(shutdown.clone()));
    tokio::time::sleep(Duration::from_secs(600)).await;
    shutdown.trigger();
    second.await.unwrap();
    assert_eq!(escalations(&b.jira), (1, 1));
    assert_eq!(b.store.lease_holder("sla-escalation").map(|(o, _)| o), None);
}

#[tokio::test(start_paused = true)]
async fn without_a_rule_that_escalates_the_loop_scans_nothing_until_a_reload_adds_one() {
    let b = bridge();
    let f = finding(Severity::High, "GuardDuty", "2026-11-28T10:00:00Z");
    b.lifecycle.process(&f).await.into_result().unwrap();
    // The same team without `escalate` anywhere: the record's breach is not acted on, and the
    // lease is not even taken (a scan reads every record).
    let quiet = PAYMENTS
        .lines()
        .filter(|line| !line.starts_with("escalate"))
        .collect::<Vec<_>>()
        .join("\n");
    let handle = MappingsHandle::new(load(mapping_dir(&[("payments.toml", &quiet)]).path()));
    assert!(handle.current().rules.iter().all(|r| r.escalate.is_none()));

    let shutdown = Shutdown::new();
    let escalator = Arc::new(b.escalator("replica-a").with_mappings(handle.clone()));
    let task = tokio::spawn(escalator.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(escalations(&b.jira), (0, 0));
    assert_eq!(b.store.lease_holder("sla-escalation"), None);

    // A reload (SIGHUP) brings `escalate` back: the next interval escalates.
    handle.replace(payments());
    while b.record(&f).sla.unwrap().escalated_at.is_none() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    shutdown.trigger();
    task.await.unwrap();
    assert_eq!(escalations(&b.jira), (1, 1));
}
