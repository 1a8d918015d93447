//! Contract tests for what `findings-bridge reconcile` asks of the ticket systems, against
//! wiremock: the paged listing of every bridge ticket (Jira Cloud by `nextPageToken`, Data
//! Center by `startAt`, ServiceNow by `sysparm_offset` over every table), reading the provenance
//! back, telling a deleted ticket from one that cannot be read, and the provenance every create
//! carries.

use findings_bridge::finding::{Schema, WriteBackId};
use findings_bridge::marker::Marker;
use findings_bridge::ticket::http::{HttpSettings, ManualClock};
use findings_bridge::ticket::jira::{JiraApiVersion, JiraAuth, JiraClient, JiraConfig};
use findings_bridge::ticket::listing::{ListedTicket, Presence};
use findings_bridge::ticket::provenance::{Provenance, ProvenanceRead};
use findings_bridge::ticket::servicenow::{ServiceNowAuth, ServiceNowClient, ServiceNowConfig};
use findings_bridge::ticket::{TicketError, TicketRef, TicketSystem};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// base64("bot@acme.test:tok-SECRET-123")
const CLOUD_AUTH: &str = "Basic Ym90QGFjbWUudGVzdDp0b2stU0VDUkVULTEyMw==";
const DC_AUTH: &str = "Bearer pat-SECRET-456";
/// base64("bridge:pw-SECRET-789")
const SN_AUTH: &str = "Basic YnJpZGdlOnB3LVNFQ1JFVC03ODk=";
const BRIDGE_JQL: &str = r#"labels = "findings-bridge" ORDER BY created ASC"#;
const SN_QUERY: &str = "correlation_display=findings-bridge^ORDERBYsys_created_on^ORDERBYsys_id";
const MARKER: &str = "fb-0123456789abcdef0123456789abcdef";

fn jira(server: &MockServer, version: JiraApiVersion, page_size: u32) -> JiraClient {
    let auth = match version {
        JiraApiVersion::V3 => JiraAuth::Basic {
            email: "bot@acme.test".to_owned(),
            api_token: SecretString::from("tok-SECRET-123"),
        },
        JiraApiVersion::V2 => JiraAuth::Bearer {
            pat: SecretString::from("pat-SECRET-456"),
        },
    };
    let mut cfg = JiraConfig::new(Url::parse(&server.uri()).unwrap(), auth, version);
    cfg.browse_base = Url::parse("https://acme.atlassian.net").unwrap();
    cfg.http = HttpSettings {
        rate_limit_per_sec: 0.0,
        ..HttpSettings::default()
    };
    cfg.page_size = page_size;
    JiraClient::with_clock(cfg, ManualClock::new()).unwrap()
}

fn servicenow(server: &MockServer, page_size: u32) -> ServiceNowClient {
    let mut cfg = ServiceNowConfig::new(
        Url::parse(&server.uri()).unwrap(),
        ServiceNowAuth::Basic {
            username: "bridge".to_owned(),
            password: SecretString::from("pw-SECRET-789"),
        },
    );
    cfg.http = HttpSettings {
        rate_limit_per_sec: 0.0,
        ..HttpSettings::default()
    };
    cfg.page_size = page_size;
    ServiceNowClient::with_clock(cfg, ManualClock::new()).unwrap()
}

fn provenance() -> Provenance {
    Provenance {
        finding_id: "arn:aws:securityhub:us-east-1:111122223333:finding/f-1".into(),
        team: "payments".into(),
        rule: "critical-guardduty".into(),
        schema: Schema::Asff,
        write_back: WriteBackId::Asff {
            id: "arn:aws:securityhub:us-east-1:111122223333:finding/f-1".into(),
            product_arn: "arn:aws:securityhub:us-east-1::product/aws/guardduty".into(),
        },
        severity: "HIGH".into(),
    }
}

fn issue(n: u32) -> Value {
    json!({"id": format!("{}", 10000 + n), "key": format!("PAY-{n}"), "fields": {
        "labels": ["security-hub", "findings-bridge", MARKER],
        "created": format!("2024-05-01T12:0{n}:00.000+0000"),
        "status": {"name": if n == 1 { "Done" } else { "To Do" },
                   "statusCategory": {"key": if n == 1 { "done" } else { "new" }}}}})
}

/// Every page of a listing, as reconcile reads it.
async fn drain(system: &dyn TicketSystem, tables: &[String]) -> Vec<ListedTicket> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let page = system
            .list_bridge_tickets(tables, cursor.as_deref())
            .await
            .expect("listing page");
        out.extend(page.tickets);
        cursor = page.next;
        if cursor.is_none() {
            return out;
        }
    }
    panic!("the listing never ended");
}

fn keys(listed: &[ListedTicket]) -> Vec<&str> {
    listed.iter().map(|t| t.ticket.key.as_str()).collect()
}

#[tokio::test]
async fn jira_cloud_lists_every_bridge_issue_by_page_token() {
    let server = MockServer::start().await;
    let base =
        json!({"jql": BRIDGE_JQL, "fields": ["status", "labels", "created"], "maxResults": 2});
    let pages = [
        (
            None,
            json!({"issues": [issue(1), issue(2)], "nextPageToken": "tok-2", "isLast": false}),
        ),
        (Some("tok-2"), json!({"issues": [issue(3)], "isLast": true})),
    ];
    for (token, response) in pages {
        let mut body = base.clone();
        if let Some(token) = token {
            body["nextPageToken"] = json!(token);
        }
        Mock::given(method("POST"))
            .and(path("/rest/api/3/search/jql"))
            .and(header("authorization", CLOUD_AUTH))
            .and(body_json(body))
            .respond_with(ResponseTemplate::new(200).set_body_json(response))
            .expect(1)
            .mount(&server)
            .await;
    }
    let listed = drain(&jira(&server, JiraApiVersion::V3, 2), &[]).await;
    assert_eq!(keys(&listed), ["PAY-1", "PAY-2", "PAY-3"]);
    let first = &listed[0];
    assert_eq!(first.marker.as_ref().map(Marker::as_str), Some(MARKER));
    assert!(first.status.done);
    assert!(!listed[1].status.done);
    assert_eq!(first.created_at, "2024-05-01T12:01:00+00:00");
    assert_eq!(first.ticket.id, "10001");
    assert_eq!(first.ticket.url, "https://acme.atlassian.net/browse/PAY-1");
}

#[tokio::test]
async fn jira_data_center_lists_every_bridge_issue_by_start_at() {
    let server = MockServer::start().await;
    let pages = [
        (
            0,
            json!({"startAt": 0, "maxResults": 2, "total": 3, "issues": [issue(1), issue(2)]}),
        ),
        (
            2,
            json!({"startAt": 2, "maxResults": 2, "total": 3, "issues": [issue(3)]}),
        ),
    ];
    for (start_at, response) in pages {
        Mock::given(method("POST"))
            .and(path("/rest/api/2/search"))
            .and(header("authorization", DC_AUTH))
            .and(body_json(
                json!({"jql": BRIDGE_JQL, "startAt": start_at, "maxResults": 2,
                "fields": ["status", "labels", "created"]}),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(response))
            .expect(1)
            .mount(&server)
            .await;
    }
    let listed = drain(&jira(&server, JiraApiVersion::V2, 2), &[]).await;
    assert_eq!(keys(&listed), ["PAY-1", "PAY-2", "PAY-3"]);
}

fn record(n: u32, table_prefix: &str) -> Value {
    json!({
        "sys_id": format!("{n:032x}"),
        "number": {"value": format!("{table_prefix}{n:07}"), "display_value": format!("{table_prefix}{n:07}")},
        "state": {"value": if n == 1 { "6" } else { "1" }, "display_value": if n == 1 { "Resolved" } else { "New" }},
        "sys_created_on": {"value": format!("2024-05-01 12:0{n}:00"), "display_value": "x"},
        "correlation_id": {"value": MARKER, "display_value": MARKER},
    })
}

async fn mount_sn_page(server: &MockServer, table: &str, offset: u32, result: Value) {
    Mock::given(method("GET"))
        .and(path(format!("/api/now/table/{table}")))
        .and(header("authorization", SN_AUTH))
        .and(query_param("sysparm_query", SN_QUERY))
        .and(query_param(
            "sysparm_fields",
            "sys_id,number,state,sys_created_on,correlation_id",
        ))
        .and(query_param("sysparm_limit", "2"))
        .and(query_param("sysparm_offset", offset.to_string()))
        .and(query_param("sysparm_display_value", "all"))
        .and(query_param("sysparm_exclude_reference_link", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "result": result })))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn servicenow_lists_every_table_a_rule_uses_by_offset() {
    let server = MockServer::start().await;
    mount_sn_page(
        &server,
        "incident",
        0,
        json!([record(1, "INC"), record(2, "INC")]),
    )
    .await;
    mount_sn_page(&server, "incident", 2, json!([record(3, "INC")])).await;
    mount_sn_page(&server, "sn_si_incident", 0, json!([record(4, "SIR")])).await;
    let tables = vec!["sn_si_incident".to_owned(), "incident".to_owned()];
    let listed = drain(&servicenow(&server, 2), &tables).await;
    assert_eq!(
        keys(&listed),
        ["INC0000001", "INC0000002", "INC0000003", "SIR0000004"]
    );
    assert_eq!(listed[0].marker.as_ref().map(Marker::as_str), Some(MARKER));
    assert!(listed[0].status.done, "6 Resolved is finished");
    assert_eq!(listed[0].created_at, "2024-05-01T12:01:00Z");
    assert_eq!(listed[3].ticket.table.as_deref(), Some("sn_si_incident"));
}

fn jira_ticket() -> TicketRef {
    TicketRef {
        system: "jira".to_owned(),
        key: "PAY-7".to_owned(),
        id: "10007".to_owned(),
        table: None,
        url: "https://acme.atlassian.net/browse/PAY-7".to_owned(),
    }
}

fn sn_ticket() -> TicketRef {
    TicketRef {
        system: "servicenow".to_owned(),
        key: "INC0010001".to_owned(),
        id: "0123456789abcdef0123456789abcdef".to_owned(),
        table: Some("incident".to_owned()),
        url: "https://sn.example/nav_to.do".to_owned(),
    }
}

const PROPERTY_PATH: &str = "/rest/api/3/issue/10007/properties/findings-bridge";

#[tokio::test]
async fn jira_reads_the_provenance_property_back() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(PROPERTY_PATH))
        .and(header("authorization", CLOUD_AUTH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"key": "findings-bridge", "value": provenance().to_value()})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = jira(&server, JiraApiVersion::V3, 50);
    assert_eq!(
        client.provenance(&jira_ticket()).await.unwrap(),
        ProvenanceRead::Found(provenance())
    );

    let missing = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(PROPERTY_PATH))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "errorMessages": ["The property with key 'findings-bridge' does not exist."]})))
        .mount(&missing)
        .await;
    let client = jira(&missing, JiraApiVersion::V3, 50);
    assert_eq!(
        client.provenance(&jira_ticket()).await.unwrap(),
        ProvenanceRead::Missing
    );
}

#[tokio::test]
async fn servicenow_reads_the_provenance_work_note_back() {
    let server = MockServer::start().await;
    let journal = format!(
        "2024-05-01 12:00:00 - bridge (Work notes)\n{}\n\n",
        provenance().work_note_line()
    );
    Mock::given(method("GET"))
        .and(path(format!("/api/now/table/incident/{}", sn_ticket().id)))
        .and(header("authorization", SN_AUTH))
        .and(query_param("sysparm_fields", "work_notes"))
        .and(query_param("sysparm_display_value", "true"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"result": {"work_notes": journal}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        servicenow(&server, 100)
            .provenance(&sn_ticket())
            .await
            .unwrap(),
        ProvenanceRead::Found(provenance())
    );
}

async fn mount_issue(server: &MockServer, status: u16) {
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/10007"))
        .and(query_param("fields", "status"))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({
            "errorMessages": ["Issue does not exist or you do not have permission to see it."]})))
        .mount(server)
        .await;
}

async fn mount_project(server: &MockServer, status: u16) {
    Mock::given(method("GET"))
        .and(path("/rest/api/3/project/PAY"))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({"key": "PAY"})))
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_jira_issue_is_gone_only_when_it_answers_404_and_its_project_answers() {
    let server = MockServer::start().await;
    mount_issue(&server, 404).await;
    mount_project(&server, 200).await;
    let client = jira(&server, JiraApiVersion::V3, 50);
    assert_eq!(
        client.presence(&jira_ticket()).await.unwrap(),
        Presence::Gone
    );

    // The project is invisible too: deleted or hidden, never taken as proof.
    let hidden = MockServer::start().await;
    mount_issue(&hidden, 404).await;
    mount_project(&hidden, 404).await;
    let err = jira(&hidden, JiraApiVersion::V3, 50)
        .presence(&jira_ticket())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not taken as gone"), "{err}");

    // Refused, or failing: an error, and the project is not even asked.
    for status in [403, 503] {
        let failing = MockServer::start().await;
        mount_issue(&failing, status).await;
        Mock::given(method("GET"))
            .and(path("/rest/api/3/project/PAY"))
            .respond_with(ResponseTemplate::new(200))
            .expect(0)
            .mount(&failing)
            .await;
        let err = jira(&failing, JiraApiVersion::V3, 50)
            .presence(&jira_ticket())
            .await
            .unwrap_err();
        match (status, &err) {
            (403, TicketError::Unusable { .. }) | (503, TicketError::Transient { .. }) => {}
            other => panic!("{status}: unexpected {other:?}"),
        }
    }

    let present = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/10007"))
        .and(query_param("fields", "status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "10007", "key": "PAY-7",
            "fields": {"status": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}}}})))
        .mount(&present)
        .await;
    match jira(&present, JiraApiVersion::V3, 50)
        .presence(&jira_ticket())
        .await
        .unwrap()
    {
        Presence::Exists(status) => assert_eq!(status.name, "In Progress"),
        other => panic!("expected Exists, got {other:?}"),
    }
}

#[tokio::test]
async fn a_servicenow_record_is_gone_only_when_its_table_still_answers() {
    let record_path = format!("/api/now/table/incident/{}", sn_ticket().id);
    let no_record = json!({"error": {"message": "No Record found",
        "detail": "Record doesn't exist or ACL restricts the record retrieval"}, "status": "failure"});
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(record_path.clone()))
        .and(query_param("sysparm_fields", "sys_id,state"))
        .respond_with(ResponseTemplate::new(404).set_body_json(no_record.clone()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/incident"))
        .and(query_param("sysparm_limit", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": []})))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        servicenow(&server, 100)
            .presence(&sn_ticket())
            .await
            .unwrap(),
        Presence::Gone
    );

    let table_gone = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(record_path))
        .respond_with(ResponseTemplate::new(404).set_body_json(no_record))
        .mount(&table_gone)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/incident"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"error": {
            "message": "User Not Authorized", "detail": "ACL"}, "status": "failure"})))
        .mount(&table_gone)
        .await;
    let err = servicenow(&table_gone, 100)
        .presence(&sn_ticket())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not taken as gone"), "{err}");
}

#[tokio::test]
async fn creates_carry_the_provenance_where_people_do_not_read_it() {
    let server = MockServer::start().await;
    let payload = json!({"fields": {"project": {"key": "PAY"}, "summary": "s"}});
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .and(body_json(json!({
            "fields": {"project": {"key": "PAY"}, "summary": "s"},
            "properties": [{"key": "findings-bridge", "value": provenance().to_value()}],
        })))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": "10001", "key": "PAY-1"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = jira(&server, JiraApiVersion::V3, 50);
    let body = client.attach_provenance(&payload, &provenance());
    client.create(&body, None).await.expect("created");

    let sn = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/now/table/incident"))
        .and(body_json(json!({
            "short_description": "s",
            "correlation_id": MARKER,
            "work_notes": provenance().work_note_line(),
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"result": {"sys_id": "0123456789abcdef0123456789abcdef", "number": "INC0010001"}}),
        ))
        .expect(1)
        .mount(&sn)
        .await;
    let client = servicenow(&sn, 100);
    let body = client.attach_provenance(
        &json!({"short_description": "s", "correlation_id": MARKER}),
        &provenance(),
    );
    client.create(&body, None).await.expect("created");
}
