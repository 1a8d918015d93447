//! Contract tests for the ServiceNow Table API client against wiremock on 127.0.0.1: exact
//! method, path, query, auth header and body for every operation, and the OAuth token cache.

use std::sync::Arc;
use std::time::Duration;

use findings_bridge::marker::Marker;
use findings_bridge::retry::Retryable;
use findings_bridge::ticket::http::{HttpSettings, ManualClock};
use findings_bridge::ticket::servicenow::{ServiceNowAuth, ServiceNowClient, ServiceNowConfig};
use findings_bridge::ticket::{FieldUpdate, FoundTicket, TargetStatus, TicketRef, TicketSystem};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{body_json, body_string, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PASSWORD: &str = "pw-SECRET-789";
/// base64("bridge:pw-SECRET-789")
const BASIC: &str = "Basic YnJpZGdlOnB3LVNFQ1JFVC03ODk=";
const RECORD: &str = "/api/now/table/incident/0123456789abcdef0123456789abcdef";

fn config(server: &MockServer, auth: ServiceNowAuth) -> ServiceNowConfig {
    let mut cfg = ServiceNowConfig::new(Url::parse(&server.uri()).unwrap(), auth);
    cfg.http = HttpSettings {
        rate_limit_per_sec: 0.0,
        ..HttpSettings::default()
    };
    cfg
}

fn basic() -> ServiceNowAuth {
    ServiceNowAuth::Basic {
        username: "bridge".to_owned(),
        password: SecretString::from(PASSWORD),
    }
}

fn oauth() -> ServiceNowAuth {
    ServiceNowAuth::OAuth {
        client_id: "cid".to_owned(),
        client_secret: SecretString::from("cs-SECRET"),
    }
}

fn client(server: &MockServer) -> ServiceNowClient {
    ServiceNowClient::with_clock(config(server, basic()), ManualClock::new()).unwrap()
}

fn ticket(server: &MockServer) -> TicketRef {
    TicketRef {
        system: "servicenow".to_owned(),
        key: "INC0010001".to_owned(),
        id: "0123456789abcdef0123456789abcdef".to_owned(),
        table: Some("incident".to_owned()),
        url: format!(
            "{}/nav_to.do?uri=incident.do%3Fsys_id%3D0123456789abcdef0123456789abcdef",
            server.uri()
        ),
    }
}

async fn mount_state(server: &MockServer, code: &str, label: &str) {
    mount_state_fields(server, "state,sys_updated_on", code, label).await;
}

async fn mount_state_fields(server: &MockServer, fields: &str, code: &str, label: &str) {
    Mock::given(method("GET"))
        .and(path(RECORD))
        .and(query_param("sysparm_fields", fields))
        .and(query_param("sysparm_display_value", "all"))
        .and(header("authorization", BASIC))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": {
            "state": {"value": code, "display_value": label},
            "sys_updated_on": {"value": "2024-05-01 12:00:00", "display_value": "2024-05-01 14:00:00"}}})))
        .expect(1)
        .mount(server)
        .await;
}

async fn expect_patch(server: &MockServer, body: Value, times: u64) {
    Mock::given(method("PATCH"))
        .and(path(RECORD))
        .and(header("authorization", BASIC))
        .and(body_json(body))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": {}})))
        .expect(times)
        .mount(server)
        .await;
}

#[tokio::test]
async fn create_posts_to_the_table_and_links_the_record() {
    let server = MockServer::start().await;
    let payload = json!({"short_description": "S3 bucket public", "urgency": "1", "impact": "2",
        "correlation_id": "fb-0123", "correlation_display": "findings-bridge"});
    Mock::given(method("POST"))
        .and(path("/api/now/table/incident"))
        .and(header("authorization", BASIC))
        .and(body_json(&payload))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"result": {
            "sys_id": "0123456789abcdef0123456789abcdef", "number": "INC0010001", "state": "1"}})))
        .expect(1)
        .mount(&server)
        .await;
    let created = client(&server).create(&payload, None).await.unwrap();
    assert_eq!(created, ticket(&server));
}

#[tokio::test]
async fn create_uses_the_rules_table_and_refuses_odd_table_names() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/now/table/sn_si_incident"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"result": {
            "sys_id": "feed", "number": "SIR0001"}})))
        .expect(1)
        .mount(&server)
        .await;
    let sn = client(&server);
    let created = sn.create(&json!({}), Some("sn_si_incident")).await.unwrap();
    assert_eq!(created.table.as_deref(), Some("sn_si_incident"));
    assert_eq!(
        created.url,
        format!(
            "{}/nav_to.do?uri=sn_si_incident.do%3Fsys_id%3Dfeed",
            server.uri()
        )
    );
    let error = sn
        .create(&json!({}), Some("incident/../sys_user"))
        .await
        .unwrap_err();
    assert!(!error.is_transient());
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn find_by_marker_queries_correlation_id_and_display_oldest_first() {
    let server = MockServer::start().await;
    let marker = Marker::new("payments", "finding-1");
    Mock::given(method("GET"))
        .and(path("/api/now/table/incident"))
        .and(header("authorization", BASIC))
        .and(query_param(
            "sysparm_query",
            format!(
                "correlation_id={marker}^correlation_display=findings-bridge^ORDERBYsys_created_on"
            ),
        ))
        .and(query_param(
            "sysparm_fields",
            "sys_id,number,state,sys_updated_on,correlation_id",
        ))
        .and(query_param("sysparm_limit", "50"))
        .and(query_param("sysparm_exclude_reference_link", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [{
            "sys_id": "0123456789abcdef0123456789abcdef", "number": "INC0010001", "state": "2",
            "sys_updated_on": "2024-05-01 12:00:00", "correlation_id": marker.as_str()}]})))
        .expect(1)
        .mount(&server)
        .await;
    let found = client(&server).find_by_marker(&marker, None).await.unwrap();
    assert_eq!(
        found,
        vec![FoundTicket {
            ticket: ticket(&server),
            done: false
        }]
    );
}

#[tokio::test]
async fn hostile_markers_cannot_widen_the_encoded_query() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/incident"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": []})))
        .mount(&server)
        .await;
    let sn = client(&server);
    let hostile: Marker = serde_json::from_value(json!("x^ORactive=true^NQsys_id!=0")).unwrap();
    assert!(sn.find_by_marker(&hostile, None).await.unwrap().is_empty());
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let query: Vec<(String, String)> = requests[0]
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(
        query[0],
        (
            "sysparm_query".to_owned(),
            "correlation_id=x^^ORactive=true^^NQsys_id!=0^correlation_display=findings-bridge^ORDERBYsys_created_on".to_owned()
        )
    );
    // Exactly one sysparm_query: nothing can be smuggled in through `&`.
    assert_eq!(
        query.iter().filter(|(k, _)| k == "sysparm_query").count(),
        1
    );

    for bad in ["x\nactive=true", "x\r^NQactive=true"] {
        let marker: Marker = serde_json::from_value(json!(bad)).unwrap();
        let error = sn.find_by_marker(&marker, None).await.unwrap_err();
        assert!(!error.is_transient(), "{bad:?}");
    }
    let smuggled: Marker = serde_json::from_value(json!("x&sysparm_query=active=true")).unwrap();
    sn.find_by_marker(&smuggled, None).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2, "refused markers sent nothing");
    let queries: Vec<String> = requests[1]
        .url
        .query_pairs()
        .filter(|(k, _)| k == "sysparm_query")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(
        queries,
        [
            "correlation_id=x&sysparm_query=active=true^correlation_display=findings-bridge^ORDERBYsys_created_on"
        ]
    );
}

#[tokio::test]
async fn update_fields_patches_the_columns() {
    let server = MockServer::start().await;
    expect_patch(&server, json!({"urgency": "1", "impact": "1"}), 1).await;
    let mut update = FieldUpdate::default();
    update.fields.insert("urgency".to_owned(), json!("1"));
    update.fields.insert("impact".to_owned(), json!("1"));
    client(&server)
        .update_fields(&ticket(&server), &update)
        .await
        .unwrap();
}

#[tokio::test]
async fn comments_are_work_notes() {
    let server = MockServer::start().await;
    expect_patch(
        &server,
        json!({"work_notes": "Severity raised to **CRITICAL**."}),
        1,
    )
    .await;
    client(&server)
        .comment(&ticket(&server), "Severity raised to **CRITICAL**.")
        .await
        .unwrap();
}

/// Work notes are a journal: a PATCH whose answer was lost is not sent again (it would add a
/// second entry); the note is looked for in the journal instead.
#[tokio::test]
async fn a_work_note_with_an_unknown_outcome_is_not_resent_and_can_be_found() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(RECORD))
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(RECORD))
        .and(header("authorization", BASIC))
        .and(query_param("sysparm_fields", "work_notes"))
        .and(query_param("sysparm_display_value", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": {
            "work_notes": "2026-12-01 10:00:00 - findings-bridge (Work notes)\nResolved. (findings-bridge fbc-0a1b2c3d4e5f)\n\n"}})))
        .expect(2)
        .mount(&server)
        .await;
    let sn = client(&server);
    let err = sn.comment(&ticket(&server), "Resolved.").await.unwrap_err();
    assert!(err.is_outcome_unknown(), "{err}");
    assert!(
        sn.has_comment(&ticket(&server), "fbc-0a1b2c3d4e5f")
            .await
            .unwrap()
    );
    assert!(
        !sn.has_comment(&ticket(&server), "fbc-ffffffffffff")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_create_with_an_unknown_outcome_is_sent_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/now/table/incident"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .create(&json!({"short_description": "x"}), None)
        .await
        .unwrap_err();
    assert!(err.is_outcome_unknown(), "{err}");
}

#[tokio::test]
async fn transition_done_resolves_with_close_code_and_notes() {
    let server = MockServer::start().await;
    mount_state(&server, "2", "In Progress").await;
    expect_patch(
        &server,
        json!({"state": "6", "close_code": "Resolved by caller",
            "close_notes": "Finding archived in Security Hub."}),
        1,
    )
    .await;
    client(&server)
        .transition(
            &ticket(&server),
            &TargetStatus::Done,
            "Finding archived in Security Hub.",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn transition_done_uses_the_default_notes_when_none_given() {
    let server = MockServer::start().await;
    mount_state(&server, "1", "New").await;
    let mut cfg = config(&server, basic());
    cfg.close_code = "Solution provided".to_owned();
    cfg.close_notes = "Closed by the bridge".to_owned();
    expect_patch(
        &server,
        json!({"state": "6", "close_code": "Solution provided", "close_notes": "Closed by the bridge"}),
        1,
    )
    .await;
    ServiceNowClient::with_clock(cfg, ManualClock::new())
        .unwrap()
        .transition(&ticket(&server), &TargetStatus::Done, " ")
        .await
        .unwrap();
}

#[tokio::test]
async fn transition_done_on_a_closed_record_sends_nothing() {
    let server = MockServer::start().await;
    mount_state(&server, "7", "Closed").await;
    client(&server)
        .transition(&ticket(&server), &TargetStatus::Done, "")
        .await
        .unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn transition_by_state_label_or_code() {
    let server = MockServer::start().await;
    mount_state(&server, "2", "In Progress").await;
    expect_patch(&server, json!({"state": "3"}), 1).await;
    let sn = client(&server);
    sn.transition(
        &ticket(&server),
        &TargetStatus::Named("on hold".to_owned()),
        "",
    )
    .await
    .unwrap();
    let error = sn
        .transition(
            &ticket(&server),
            &TargetStatus::Named("3^ORstate=1".to_owned()),
            "",
        )
        .await
        .unwrap_err();
    assert!(!error.is_transient());
    assert!(error.to_string().contains("In Progress"), "{error}");
}

#[tokio::test]
async fn reopen_sets_the_reopen_state_with_a_work_note() {
    let server = MockServer::start().await;
    mount_state(&server, "6", "Resolved").await;
    expect_patch(
        &server,
        json!({"state": "2", "work_notes": "The finding is active again."}),
        1,
    )
    .await;
    client(&server)
        .reopen(&ticket(&server), "The finding is active again.")
        .await
        .unwrap();
}

#[tokio::test]
async fn reopen_leaves_an_open_record_alone() {
    let server = MockServer::start().await;
    mount_state(&server, "3", "On Hold").await;
    client(&server)
        .reopen(&ticket(&server), "again")
        .await
        .unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn status_reports_label_code_and_done() {
    let server = MockServer::start().await;
    // `status()` also asks who changed the record and why it was closed (the risk acceptance
    // note); the record here answers neither.
    mount_state_fields(
        &server,
        "state,sys_updated_on,sys_updated_by,close_code,close_notes",
        "6",
        "Resolved",
    )
    .await;
    let status = client(&server).status(&ticket(&server)).await.unwrap();
    assert_eq!(status.name, "Resolved");
    assert_eq!(status.category, "6");
    assert!(status.done);
}

fn record(n: u32) -> Value {
    json!({
        "sys_id": {"value": format!("{n:032x}"), "display_value": format!("{n:032x}")},
        "number": {"value": format!("INC{n:07}"), "display_value": format!("INC{n:07}")},
        "state": {"value": "7", "display_value": "Closed"},
        "sys_updated_on": {"value": format!("2024-05-01 12:{n:02}:00"), "display_value": "x"},
        "correlation_id": {"value": "fb-0123456789abcdef0123456789abcdef", "display_value": "x"}
    })
}

#[tokio::test]
async fn updated_since_pages_by_offset() {
    let server = MockServer::start().await;
    let pages = [
        ("0", vec![record(1), record(2)]),
        ("2", vec![record(3), record(4)]),
        ("4", vec![record(5)]),
    ];
    for (offset, records) in pages {
        Mock::given(method("GET"))
            .and(path("/api/now/table/incident"))
            .and(header("authorization", BASIC))
            .and(query_param(
                "sysparm_query",
                "correlation_display=findings-bridge^sys_updated_on>=2024-05-01 12:07:30^ORDERBYsys_updated_on",
            ))
            .and(query_param(
                "sysparm_fields",
                "sys_id,number,state,sys_updated_on,correlation_id,sys_updated_by,close_code,close_notes",
            ))
            .and(query_param("sysparm_limit", "2"))
            .and(query_param("sysparm_offset", offset))
            .and(query_param("sysparm_display_value", "all"))
            .and(query_param("sysparm_exclude_reference_link", "true"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": records})))
            .expect(1)
            .mount(&server)
            .await;
    }
    let mut cfg = config(&server, basic());
    cfg.page_size = 2;
    let sn = ServiceNowClient::with_clock(cfg, ManualClock::new()).unwrap();
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let page = sn
            .updated_since("2024-05-01T14:07:30+02:00", cursor.as_deref())
            .await
            .unwrap();
        seen.extend(page.tickets);
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    let numbers: Vec<&str> = seen.iter().map(|u| u.ticket.key.as_str()).collect();
    assert_eq!(
        numbers,
        [
            "INC0000001",
            "INC0000002",
            "INC0000003",
            "INC0000004",
            "INC0000005"
        ]
    );
    let last = &seen[4];
    assert_eq!(last.updated_at, "2024-05-01T12:05:00Z");
    assert_eq!(last.status.name, "Closed");
    assert!(last.status.done);
    assert_eq!(
        last.marker.as_ref().map(Marker::as_str),
        Some("fb-0123456789abcdef0123456789abcdef")
    );
}

async fn mount_token(server: &MockServer, token: &str, expires_in: u64, times: Option<u64>) {
    let mock = Mock::given(method("POST"))
        .and(path("/oauth_token.do"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string(
            "grant_type=client_credentials&client_id=cid&client_secret=cs-SECRET",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": token, "token_type": "Bearer", "expires_in": expires_in, "scope": "useraccount"})));
    match times {
        Some(n) => mock.up_to_n_times(n).expect(n).mount(server).await,
        None => mock.mount(server).await,
    }
}

async fn mount_bearer_state(server: &MockServer, token: &str, status: u16) {
    Mock::given(method("GET"))
        .and(path(RECORD))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(
            ResponseTemplate::new(status).set_body_json(json!({"result": {
            "state": {"value": "2", "display_value": "In Progress"}}})),
        )
        .mount(server)
        .await;
}

#[tokio::test]
async fn oauth_token_is_fetched_once_for_many_concurrent_calls() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", 1800, Some(1)).await;
    mount_bearer_state(&server, "t1", 200).await;
    let sn = Arc::new(
        ServiceNowClient::with_clock(config(&server, oauth()), ManualClock::new()).unwrap(),
    );
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let sn = sn.clone();
        let t = ticket(&server);
        tasks.push(tokio::spawn(async move { sn.status(&t).await }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().category, "2");
    }
    assert_eq!(sn.token_fetches(), 1);
}

#[tokio::test]
async fn oauth_token_is_refreshed_a_minute_before_expiry() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", 300, Some(1)).await;
    mount_token(&server, "t2", 300, Some(1)).await;
    mount_bearer_state(&server, "t1", 200).await;
    mount_bearer_state(&server, "t2", 200).await;
    let clock = ManualClock::new();
    let sn = ServiceNowClient::with_clock(config(&server, oauth()), clock.clone()).unwrap();
    sn.status(&ticket(&server)).await.unwrap();
    clock.advance(Duration::from_secs(200));
    sn.status(&ticket(&server)).await.unwrap();
    assert_eq!(sn.token_fetches(), 1, "still 100 s left");
    clock.advance(Duration::from_secs(41));
    sn.status(&ticket(&server)).await.unwrap();
    assert_eq!(sn.token_fetches(), 2, "within 60 s of expiry");
    let bearers: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r.headers.get("authorization"))
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(bearers, ["Bearer t1", "Bearer t1", "Bearer t2"]);
}

#[tokio::test]
async fn a_401_with_a_cached_token_refreshes_once_and_retries() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", 1800, Some(1)).await;
    mount_token(&server, "t2", 1800, Some(1)).await;
    mount_bearer_state(&server, "t1", 401).await;
    mount_bearer_state(&server, "t2", 200).await;
    let sn = ServiceNowClient::with_clock(config(&server, oauth()), ManualClock::new()).unwrap();
    let status = sn.status(&ticket(&server)).await.unwrap();
    assert_eq!(status.name, "In Progress");
    assert_eq!(sn.token_fetches(), 2);
}

#[tokio::test]
async fn a_401_after_refresh_is_permanent_and_hides_the_secret() {
    let server = MockServer::start().await;
    mount_token(&server, "t1", 1800, None).await;
    mount_bearer_state(&server, "t1", 401).await;
    let sn = ServiceNowClient::with_clock(config(&server, oauth()), ManualClock::new()).unwrap();
    let error = sn.status(&ticket(&server)).await.unwrap_err();
    assert!(!error.is_transient());
    assert_eq!(error.status(), Some(401));
    assert_eq!(sn.token_fetches(), 2, "one refresh, then give up");
    assert!(!format!("{error} {error:?}").contains("cs-SECRET"));
}

#[tokio::test]
/// The token endpoint refusing the client (a rotated secret, a revoked client) is the
/// connection's fault: neither retried nor blamed on the finding.
async fn rejected_client_credentials_make_the_connection_unusable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth_token.do"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error_description": "access_denied", "error": "server_error"})))
        .expect(1)
        .mount(&server)
        .await;
    let sn = ServiceNowClient::with_clock(config(&server, oauth()), ManualClock::new()).unwrap();
    let error = sn.status(&ticket(&server)).await.unwrap_err();
    assert!(!error.is_transient());
    assert_eq!(
        error.blame(),
        Some(findings_bridge::ticket::Blame::Connection),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with("servicenow oauth_token: connection unusable: HTTP 401"),
        "{error}"
    );
}

/// A token endpoint answering 400 `invalid_client` (what ServiceNow says for a wrong client
/// secret) is the connection's fault too.
#[tokio::test]
async fn an_invalid_client_answer_makes_the_connection_unusable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth_token.do"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error_description": "access_denied", "error": "invalid_client"})))
        .expect(1)
        .mount(&server)
        .await;
    let sn = ServiceNowClient::with_clock(config(&server, oauth()), ManualClock::new()).unwrap();
    let error = sn.status(&ticket(&server)).await.unwrap_err();
    assert_eq!(
        error.blame(),
        Some(findings_bridge::ticket::Blame::Connection),
        "{error}"
    );
}

#[tokio::test]
async fn secrets_stay_out_of_debug_output() {
    let server = MockServer::start().await;
    for auth in [basic(), oauth()] {
        let cfg = config(&server, auth);
        let debug = format!("{cfg:?}");
        assert!(debug.contains("[REDACTED]"), "{debug}");
        assert!(!debug.contains("SECRET"), "{debug}");
        let sn = ServiceNowClient::with_clock(cfg, ManualClock::new()).unwrap();
        assert!(!format!("{sn:?}").contains("SECRET"));
    }
}

/// A create on a table that does not exist (any more) is the rule's fault, not the finding's.
#[tokio::test]
async fn a_create_on_a_missing_table_is_blamed_on_the_rule() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/now/table/sn_si_incident"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": "Invalid table sn_si_incident", "detail": null},
            "status": "failure"})))
        .expect(1)
        .mount(&server)
        .await;
    let sn = client(&server);
    let err = sn
        .create(&json!({"short_description": "x"}), Some("sn_si_incident"))
        .await
        .unwrap_err();
    assert_eq!(
        err.blame(),
        Some(findings_bridge::ticket::Blame::Target),
        "{err}"
    );
    assert_eq!(
        sn.target_of(&json!({}), Some("sn_si_incident")).as_deref(),
        Some("sn_si_incident")
    );
}

/// The marker search before a create meets a gone table first: that is the rule's fault too.
#[tokio::test]
async fn a_marker_search_on_a_missing_table_is_blamed_on_the_rule() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/sn_si_incident"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": "Invalid table sn_si_incident", "detail": null},
            "status": "failure"})))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .find_by_marker(&Marker::new("payments", "f-1"), Some("sn_si_incident"))
        .await
        .unwrap_err();
    assert_eq!(
        err.blame(),
        Some(findings_bridge::ticket::Blame::Target),
        "{err}"
    );
}

/// Status sync polls every table a rule creates in: the same query on that table's path, and
/// the tickets it returns name that table. The default table is the connection's.
#[tokio::test]
async fn updated_since_in_polls_the_named_table() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/sn_si_incident"))
        .and(header("authorization", BASIC))
        .and(query_param(
            "sysparm_query",
            "correlation_display=findings-bridge^sys_updated_on>=2024-05-01 12:07:30^ORDERBYsys_updated_on",
        ))
        .and(query_param("sysparm_offset", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [record(1)]})))
        .expect(1)
        .mount(&server)
        .await;
    let sn = client(&server);
    assert_eq!(sn.default_table(), Some("incident"));
    let page = sn
        .updated_since_in("2024-05-01T12:07:30Z", "sn_si_incident", None)
        .await
        .unwrap();
    assert_eq!(page.tickets.len(), 1);
    assert_eq!(
        page.tickets[0].ticket.table.as_deref(),
        Some("sn_si_incident")
    );
    assert!(
        page.tickets[0].ticket.url.contains("sn_si_incident.do"),
        "{}",
        page.tickets[0].ticket.url
    );

    // A table name that is not an identifier never reaches the URL.
    let error = sn
        .updated_since_in("2024-05-01T12:07:30Z", "incident/../sys_user", None)
        .await
        .unwrap_err();
    assert!(!error.is_transient(), "{error}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

// ---- Who changed a record and why it was closed (the risk acceptance note) --------------------

#[tokio::test]
async fn status_and_poll_reads_carry_the_updater_and_the_close_code() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(RECORD))
        .and(query_param(
            "sysparm_fields",
            "state,sys_updated_on,sys_updated_by,close_code,close_notes",
        ))
        .and(query_param("sysparm_display_value", "all"))
        .and(header("authorization", BASIC))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": {
            "state": {"value": "7", "display_value": "Closed"},
            "sys_updated_on": {"value": "2024-05-01 12:00:00", "display_value": "2024-05-01 14:00:00"},
            "sys_updated_by": {"value": "jane.doe", "display_value": "jane.doe"},
            "close_code": {"value": "risk_accepted", "display_value": "Risk Accepted"},
            "close_notes": {"value": "Compensating control:\nWAF rule 12", "display_value": "Compensating control:\nWAF rule 12"}}})))
        .expect(1)
        .mount(&server)
        .await;
    let status = client(&server).status(&ticket(&server)).await.unwrap();
    assert_eq!(status.name, "Closed");
    assert_eq!(status.changed_by.as_deref(), Some("jane.doe"));
    assert_eq!(
        status.resolution.as_deref(),
        Some("Risk Accepted: Compensating control: WAF rule 12")
    );
    // ServiceNow's read says who: the sync needs no extra read.
    assert_eq!(
        client(&server)
            .status_changed_by(&ticket(&server), "Closed")
            .await
            .unwrap(),
        None
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);

    let poll = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/incident"))
        .and(query_param(
            "sysparm_fields",
            "sys_id,number,state,sys_updated_on,correlation_id,sys_updated_by,close_code,close_notes",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [{
            "sys_id": {"value": "0123456789abcdef0123456789abcdef", "display_value": "0123456789abcdef0123456789abcdef"},
            "number": {"value": "INC0010001", "display_value": "INC0010001"},
            "state": {"value": "8", "display_value": "Canceled"},
            "sys_updated_on": {"value": "2024-05-01 12:08:00", "display_value": "2024-05-01 14:08:00"},
            "correlation_id": {"value": "fb-0123456789abcdef0123456789abcdef", "display_value": "fb-0123456789abcdef0123456789abcdef"},
            "sys_updated_by": {"value": "john.roe", "display_value": "john.roe"},
            "close_code": {"value": "", "display_value": ""},
            "close_notes": {"value": "False positive", "display_value": "False positive"}}]})))
        .expect(1)
        .mount(&poll)
        .await;
    let page = client(&poll)
        .updated_since("2024-05-01T14:07:30+02:00", None)
        .await
        .unwrap();
    let status = &page.tickets[0].status;
    assert_eq!(status.changed_by.as_deref(), Some("john.roe"));
    assert_eq!(status.resolution.as_deref(), Some("False positive"));
}
