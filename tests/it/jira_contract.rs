//! Contract tests for the Jira client against wiremock on 127.0.0.1: every operation in both
//! flavours (Cloud v3, Data Center v2) with exact method, path, auth header and JSON body.

use std::sync::Arc;

use findings_bridge::marker::Marker;
use findings_bridge::retry::Retryable;
use findings_bridge::ticket::http::{HttpSettings, ManualClock};
use findings_bridge::ticket::jira::{JiraApiVersion, JiraAuth, JiraClient, JiraConfig};
use findings_bridge::ticket::{
    FieldUpdate, FoundTicket, TargetStatus, TicketError, TicketRef, TicketSystem,
};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "tok-SECRET-123";
const PAT: &str = "pat-SECRET-456";
/// base64("bot@acme.test:tok-SECRET-123")
const CLOUD_AUTH: &str = "Basic Ym90QGFjbWUudGVzdDp0b2stU0VDUkVULTEyMw==";
const DC_AUTH: &str = "Bearer pat-SECRET-456";

fn config(server: &MockServer, version: JiraApiVersion) -> JiraConfig {
    let auth = match version {
        JiraApiVersion::V3 => JiraAuth::Basic {
            email: "bot@acme.test".to_owned(),
            api_token: SecretString::from(TOKEN),
        },
        JiraApiVersion::V2 => JiraAuth::Bearer {
            pat: SecretString::from(PAT),
        },
    };
    let mut cfg = JiraConfig::new(Url::parse(&server.uri()).unwrap(), auth, version);
    cfg.browse_base = Url::parse("https://acme.atlassian.net").unwrap();
    cfg.http = HttpSettings {
        rate_limit_per_sec: 0.0,
        ..HttpSettings::default()
    };
    cfg
}

fn client(server: &MockServer, version: JiraApiVersion) -> JiraClient {
    JiraClient::with_clock(config(server, version), ManualClock::new()).unwrap()
}

fn api(version: JiraApiVersion) -> &'static str {
    match version {
        JiraApiVersion::V3 => "/rest/api/3",
        JiraApiVersion::V2 => "/rest/api/2",
    }
}

fn auth(version: JiraApiVersion) -> &'static str {
    match version {
        JiraApiVersion::V3 => CLOUD_AUTH,
        JiraApiVersion::V2 => DC_AUTH,
    }
}

fn ticket() -> TicketRef {
    TicketRef {
        system: "jira".to_owned(),
        key: "PAY-7".to_owned(),
        id: "10007".to_owned(),
        table: None,
        url: "https://acme.atlassian.net/browse/PAY-7".to_owned(),
    }
}

fn status_body(name: &str, category: &str) -> Value {
    json!({"id": "10007", "key": "PAY-7", "fields": {"status": {
        "name": name, "statusCategory": {"key": category}}}})
}

async fn mount_status(server: &MockServer, version: JiraApiVersion, name: &str, category: &str) {
    mount_status_fields(server, version, "status", name, category).await;
}

/// The status read of `status()`, which asks for the resolution too (the risk acceptance note).
async fn mount_status_read(
    server: &MockServer,
    version: JiraApiVersion,
    name: &str,
    category: &str,
) {
    mount_status_fields(server, version, "status,resolution", name, category).await;
}

async fn mount_status_fields(
    server: &MockServer,
    version: JiraApiVersion,
    fields: &str,
    name: &str,
    category: &str,
) {
    Mock::given(method("GET"))
        .and(path(format!("{}/issue/PAY-7", api(version))))
        .and(query_param("fields", fields))
        .and(header("authorization", auth(version)))
        .respond_with(ResponseTemplate::new(200).set_body_json(status_body(name, category)))
        .expect(1)
        .mount(server)
        .await;
}

fn workflow() -> Value {
    json!({"transitions": [
        {"id": "11", "name": "Start work", "to": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}}},
        {"id": "21", "name": "Close", "to": {"name": "Done", "statusCategory": {"key": "done"}}},
        {"id": "31", "name": "Reopen", "to": {"name": "To Do", "statusCategory": {"key": "new"}}},
        {"id": "41", "name": "Won't fix", "to": {"name": "Won't Do", "statusCategory": {"key": "done"}}}
    ]})
}

async fn mount_transitions(server: &MockServer, version: JiraApiVersion, list: Value) {
    Mock::given(method("GET"))
        .and(path(format!("{}/issue/PAY-7/transitions", api(version))))
        .and(header("authorization", auth(version)))
        .respond_with(ResponseTemplate::new(200).set_body_json(list))
        .expect(1)
        .mount(server)
        .await;
}

async fn expect_transition(server: &MockServer, version: JiraApiVersion, id: &str, times: u64) {
    Mock::given(method("POST"))
        .and(path(format!("{}/issue/PAY-7/transitions", api(version))))
        .and(header("authorization", auth(version)))
        .and(body_json(json!({"transition": {"id": id}})))
        .respond_with(ResponseTemplate::new(204))
        .expect(times)
        .mount(server)
        .await;
}

const BOTH: [JiraApiVersion; 2] = [JiraApiVersion::V3, JiraApiVersion::V2];

#[tokio::test]
async fn create_posts_the_rendered_payload_and_links_the_browse_url() {
    for version in BOTH {
        let server = MockServer::start().await;
        let payload = json!({"fields": {"project": {"key": "PAY"}, "summary": "[HIGH] S3 bucket public",
            "issuetype": {"name": "Bug"}, "labels": ["findings-bridge", "fb-0123"]}});
        Mock::given(method("POST"))
            .and(path(format!("{}/issue", api(version))))
            .and(header("authorization", auth(version)))
            .and(body_json(&payload))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "id": "10007", "key": "PAY-7", "self": format!("{}/rest/api/3/issue/10007", server.uri())})))
            .expect(1)
            .mount(&server)
            .await;
        let created = client(&server, version)
            .create(&payload, None)
            .await
            .unwrap();
        assert_eq!(created, ticket(), "{version:?}");
    }
}

#[tokio::test]
async fn find_by_marker_returns_every_bridge_ticket_oldest_first() {
    let marker = Marker::new("payments", "arn:aws:securityhub:finding/1");
    let jql =
        format!("labels = \"{marker}\" AND labels = \"findings-bridge\" ORDER BY created ASC");
    for version in BOTH {
        let server = MockServer::start().await;
        let (search_path, body) = match version {
            JiraApiVersion::V3 => (
                "/rest/api/3/search/jql",
                json!({"jql": jql, "fields": ["status", "labels"], "maxResults": 50}),
            ),
            JiraApiVersion::V2 => (
                "/rest/api/2/search",
                json!({"jql": jql, "fields": ["status", "labels"], "maxResults": 50, "startAt": 0}),
            ),
        };
        Mock::given(method("POST"))
            .and(path(search_path))
            .and(header("authorization", auth(version)))
            .and(body_json(&body))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issues": [
                    {"id": "10007", "key": "PAY-7", "fields": {"labels": [marker.as_str()],
                        "status": {"name": "Done", "statusCategory": {"key": "done"}}}},
                    {"id": "10009", "key": "PAY-9", "fields": {"labels": [marker.as_str()],
                        "status": {"name": "To Do", "statusCategory": {"key": "new"}}}}],
                "isLast": true, "startAt": 0, "total": 2})))
            .expect(1)
            .mount(&server)
            .await;
        let found = client(&server, version)
            .find_by_marker(&marker, None)
            .await
            .unwrap();
        let mut second = ticket();
        second.key = "PAY-9".to_owned();
        second.id = "10009".to_owned();
        second.url = "https://acme.atlassian.net/browse/PAY-9".to_owned();
        assert_eq!(
            found,
            vec![
                FoundTicket {
                    ticket: ticket(),
                    done: true
                },
                FoundTicket {
                    ticket: second,
                    done: false
                }
            ],
            "{version:?}"
        );
    }
}

#[tokio::test]
async fn find_by_marker_reports_a_miss_as_empty() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/search/jql"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"issues": [], "isLast": true})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let found = client(&server, JiraApiVersion::V3)
        .find_by_marker(&Marker::new("payments", "x"), None)
        .await
        .unwrap();
    assert!(found.is_empty());
}

/// A create is never repeated blind (cause 1): a 502 after the backend committed, a timeout and
/// an unreadable 2xx are "outcome unknown" after exactly one request; a 429 (refused before
/// any work) is retried.
#[tokio::test]
async fn create_is_sent_at_most_once_when_its_outcome_is_unknown() {
    let payload = json!({"fields": {"summary": "x", "labels": ["findings-bridge", "fb-0123"]}});
    for answer in [
        ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>"),
        ResponseTemplate::new(500).set_body_string("oops"),
        ResponseTemplate::new(201).set_body_string("{\"id\": \"100"),
        ResponseTemplate::new(201)
            .set_body_json(json!({"id": "1", "key": "PAY-1"}))
            .set_delay(std::time::Duration::from_secs(3)),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/rest/api/3/issue"))
            .respond_with(answer)
            .expect(1)
            .mount(&server)
            .await;
        let mut cfg = config(&server, JiraApiVersion::V3);
        cfg.http.request_timeout = std::time::Duration::from_secs(1);
        let jira = JiraClient::with_clock(cfg, ManualClock::new()).unwrap();
        let err = jira.create(&payload, None).await.unwrap_err();
        assert!(err.is_outcome_unknown(), "{err}");
        assert!(
            err.is_transient(),
            "the message is retried, not dead-lettered"
        );
        // Dropping the server verifies `expect(1)`: exactly one create request.
    }

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": "10007", "key": "PAY-7"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let created = client(&server, JiraApiVersion::V3)
        .create(&payload, None)
        .await
        .unwrap();
    assert_eq!(created.key, "PAY-7");
}

#[tokio::test]
async fn a_comment_with_an_unknown_outcome_is_not_resent_and_can_be_found() {
    for version in BOTH {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(format!("{}/issue/PAY-7/comment", api(version))))
            .respond_with(ResponseTemplate::new(504))
            .expect(1)
            .mount(&server)
            .await;
        let comments = match version {
            JiraApiVersion::V3 => json!({"startAt": 0, "total": 1, "comments": [{"id": "5",
                "body": {"type": "doc", "version": 1, "content": [{"type": "paragraph",
                "content": [{"type": "text", "text": "Resolved. (findings-bridge fbc-0a1b2c3d4e5f)"}]}]}}]}),
            JiraApiVersion::V2 => json!({"startAt": 0, "total": 1, "comments": [{"id": "5",
                "body": "Resolved. (findings-bridge fbc-0a1b2c3d4e5f)"}]}),
        };
        Mock::given(method("GET"))
            .and(path(format!("{}/issue/PAY-7/comment", api(version))))
            .and(query_param("orderBy", "-created"))
            .and(query_param("maxResults", "100"))
            .and(header("authorization", auth(version)))
            .respond_with(ResponseTemplate::new(200).set_body_json(comments))
            .expect(2)
            .mount(&server)
            .await;
        let jira = client(&server, version);
        let err = jira.comment(&ticket(), "Resolved.").await.unwrap_err();
        assert!(matches!(err, TicketError::OutcomeUnknown { .. }), "{err}");
        assert!(
            jira.has_comment(&ticket(), "fbc-0a1b2c3d4e5f")
                .await
                .unwrap()
        );
        assert!(
            !jira
                .has_comment(&ticket(), "fbc-ffffffffffff")
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn settle_time_is_send_window_plus_timeout_plus_index_lag() {
    let lookup = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let cfg = JiraConfig::from_lookup(lookup(&[
        ("JIRA_URL", "https://acme.atlassian.net"),
        ("JIRA_EMAIL", "bot@acme.test"),
        ("JIRA_API_TOKEN", "t"),
        ("JIRA_REQUEST_TIMEOUT", "7"),
        ("JIRA_SEARCH_CONSISTENCY", "3.5"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(
        cfg.search_consistency,
        std::time::Duration::from_millis(3500)
    );
    assert_eq!(cfg.http.request_timeout, std::time::Duration::from_secs(7));
    let jira = JiraClient::new(cfg).unwrap();
    assert_eq!(
        jira.settle_time(),
        std::time::Duration::from_millis(5_000 + 7_000 + 3_500)
    );
    let bad = JiraConfig::from_lookup(lookup(&[
        ("JIRA_URL", "https://acme.atlassian.net"),
        ("JIRA_PAT", "p"),
        ("JIRA_SEARCH_CONSISTENCY", "soon"),
    ]))
    .unwrap_err();
    assert!(bad.to_string().contains("JIRA_SEARCH_CONSISTENCY"), "{bad}");
}

#[tokio::test]
async fn hostile_marker_cannot_widen_the_jql() {
    // Markers read back from a store deserialize without validation; quoting must still hold.
    let hostile: Marker =
        serde_json::from_value(json!("x\" OR project = SECRET OR labels = \"y\\")).unwrap();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/search/jql"))
        .and(body_json(json!({
            "jql": r#"labels = "x\" OR project = SECRET OR labels = \"y\\" AND labels = "findings-bridge" ORDER BY created ASC"#,
            "fields": ["status", "labels"], "maxResults": 50})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"issues": [], "isLast": true})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let found = client(&server, JiraApiVersion::V3)
        .find_by_marker(&hostile, None)
        .await
        .unwrap();
    assert!(found.is_empty());
}

#[tokio::test]
async fn update_fields_puts_the_fields_object() {
    for version in BOTH {
        let server = MockServer::start().await;
        let mut update = FieldUpdate::default();
        update
            .fields
            .insert("priority".to_owned(), json!({"name": "Highest"}));
        Mock::given(method("PUT"))
            .and(path(format!("{}/issue/PAY-7", api(version))))
            .and(header("authorization", auth(version)))
            .and(body_json(
                json!({"fields": {"priority": {"name": "Highest"}}}),
            ))
            .respond_with(ResponseTemplate::new(204))
            .expect(1)
            .mount(&server)
            .await;
        client(&server, version)
            .update_fields(&ticket(), &update)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn comments_are_adf_on_cloud_and_text_on_data_center() {
    let text = "Severity raised to CRITICAL.\n\nSee the finding.";
    for version in BOTH {
        let server = MockServer::start().await;
        let body = match version {
            JiraApiVersion::V3 => json!({"body": {"type": "doc", "version": 1, "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "Severity raised to CRITICAL."}]},
                {"type": "paragraph", "content": [{"type": "text", "text": "See the finding."}]}
            ]}}),
            JiraApiVersion::V2 => json!({"body": text}),
        };
        Mock::given(method("POST"))
            .and(path(format!("{}/issue/PAY-7/comment", api(version))))
            .and(header("authorization", auth(version)))
            .and(body_json(body))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1"})))
            .expect(1)
            .mount(&server)
            .await;
        client(&server, version)
            .comment(&ticket(), text)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn transition_to_done_takes_the_first_done_category_transition() {
    for version in BOTH {
        let server = MockServer::start().await;
        mount_status(&server, version, "In Progress", "indeterminate").await;
        mount_transitions(&server, version, workflow()).await;
        expect_transition(&server, version, "21", 1).await;
        client(&server, version)
            .transition(&ticket(), &TargetStatus::Done, "finding resolved")
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn transition_by_name_ignores_case() {
    for version in BOTH {
        let server = MockServer::start().await;
        mount_status(&server, version, "To Do", "new").await;
        mount_transitions(&server, version, workflow()).await;
        expect_transition(&server, version, "41", 1).await;
        client(&server, version)
            .transition(&ticket(), &TargetStatus::Named("won't do".to_owned()), "")
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn transition_already_there_sends_nothing() {
    let version = JiraApiVersion::V3;
    let server = MockServer::start().await;
    mount_status(&server, version, "Won't Do", "done").await;
    expect_transition(&server, version, "21", 0).await;
    client(&server, version)
        .transition(&ticket(), &TargetStatus::Done, "")
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "only the status read");
}

#[tokio::test]
async fn transition_without_a_path_names_the_available_ones() {
    let version = JiraApiVersion::V3;
    let server = MockServer::start().await;
    mount_status(&server, version, "To Do", "new").await;
    mount_transitions(
        &server,
        version,
        json!({"transitions": [
            {"id": "11", "name": "Start work", "to": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}}}
        ]}),
    )
    .await;
    let error = client(&server, version)
        .transition(&ticket(), &TargetStatus::Done, "")
        .await
        .unwrap_err();
    assert!(!error.is_transient());
    let message = error.to_string();
    assert!(message.contains("Start work (→ In Progress)"), "{message}");
    assert!(message.contains("PAY-7"), "{message}");
}

#[tokio::test]
async fn reopen_moves_to_a_new_status_without_a_second_comment() {
    for version in BOTH {
        let server = MockServer::start().await;
        mount_status(&server, version, "Done", "done").await;
        mount_transitions(&server, version, workflow()).await;
        expect_transition(&server, version, "31", 1).await;
        // The lifecycle comments once, with its reference; the transition adds none.
        Mock::given(method("POST"))
            .and(path(format!("{}/issue/PAY-7/comment", api(version))))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "2"})))
            .expect(0)
            .mount(&server)
            .await;
        client(&server, version)
            .reopen(&ticket(), "The finding is active again.")
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn reopen_falls_back_to_an_in_progress_status() {
    let version = JiraApiVersion::V3;
    let server = MockServer::start().await;
    mount_status(&server, version, "Done", "done").await;
    mount_transitions(
        &server,
        version,
        json!({"transitions": [
            {"id": "11", "name": "Back to work", "to": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}}}
        ]}),
    )
    .await;
    expect_transition(&server, version, "11", 1).await;
    client(&server, version)
        .reopen(&ticket(), "")
        .await
        .unwrap();
}

#[tokio::test]
async fn status_reads_name_and_category() {
    for version in BOTH {
        let server = MockServer::start().await;
        mount_status_read(&server, version, "Won't Do", "done").await;
        let status = client(&server, version).status(&ticket()).await.unwrap();
        assert_eq!(status.name, "Won't Do");
        assert_eq!(status.category, "done");
        assert!(status.done);
    }
}

fn issue(n: u32, updated: &str) -> Value {
    json!({"id": format!("{}", 10000 + n), "key": format!("PAY-{n}"), "fields": {
        "labels": ["findings-bridge", "fb-0123456789abcdef0123456789abcdef"],
        "updated": updated,
        "status": {"name": "Done", "statusCategory": {"key": "done"}}}})
}

const UPDATED_JQL: &str =
    r#"labels = "findings-bridge" AND updated >= "2024-05-01 12:07" ORDER BY updated ASC"#;

#[tokio::test]
async fn updated_since_pages_by_token_on_cloud() {
    let server = MockServer::start().await;
    let base = json!({"jql": UPDATED_JQL, "fields": ["status", "labels", "updated", "resolution"], "maxResults": 2});
    let pages = [
        (
            None,
            json!({"issues": [issue(1, "2024-05-01T12:08:00.000+0000"), issue(2, "2024-05-01T12:09:00.000+0000")], "nextPageToken": "tok-2", "isLast": false}),
        ),
        (
            Some("tok-2"),
            json!({"issues": [issue(3, "2024-05-01T12:10:00.000+0000"), issue(4, "2024-05-01T12:11:00.000+0000")], "nextPageToken": "tok-3", "isLast": false}),
        ),
        (
            Some("tok-3"),
            json!({"issues": [issue(5, "2024-05-01T12:12:00.000+0000")], "isLast": true}),
        ),
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
    // The user's time zone is read once for all the pages.
    mount_time_zone(&server, JiraApiVersion::V3, "UTC").await;
    let mut cfg = config(&server, JiraApiVersion::V3);
    cfg.page_size = 2;
    let jira = JiraClient::with_clock(cfg, ManualClock::new()).unwrap();
    let (keys, last) = drain(&jira, "2024-05-01T14:07:30+02:00").await;
    assert_eq!(keys, ["PAY-1", "PAY-2", "PAY-3", "PAY-4", "PAY-5"]);
    assert_eq!(last.ticket.url, "https://acme.atlassian.net/browse/PAY-5");
    assert_eq!(last.updated_at, "2024-05-01T12:12:00+00:00");
    assert_eq!(
        last.marker.as_ref().map(Marker::as_str),
        Some("fb-0123456789abcdef0123456789abcdef")
    );
    assert!(last.status.done);
}

#[tokio::test]
async fn updated_since_pages_by_start_at_on_data_center() {
    let server = MockServer::start().await;
    let pages = [
        (
            0,
            json!({"startAt": 0, "maxResults": 2, "total": 5, "issues": [issue(1, "2024-05-01T12:08:00.000+0000"), issue(2, "2024-05-01T12:09:00.000+0000")]}),
        ),
        (
            2,
            json!({"startAt": 2, "maxResults": 2, "total": 5, "issues": [issue(3, "2024-05-01T12:10:00.000+0000"), issue(4, "2024-05-01T12:11:00.000+0000")]}),
        ),
        (
            4,
            json!({"startAt": 4, "maxResults": 2, "total": 5, "issues": [issue(5, "2024-05-01T12:12:00.000+0000")]}),
        ),
    ];
    for (start_at, response) in pages {
        Mock::given(method("POST"))
            .and(path("/rest/api/2/search"))
            .and(header("authorization", DC_AUTH))
            .and(body_json(
                json!({"jql": UPDATED_JQL, "startAt": start_at, "maxResults": 2,
                "fields": ["status", "labels", "updated", "resolution"]}),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(response))
            .expect(1)
            .mount(&server)
            .await;
    }
    mount_time_zone(&server, JiraApiVersion::V2, "Etc/UTC").await;
    let mut cfg = config(&server, JiraApiVersion::V2);
    cfg.page_size = 2;
    let jira = JiraClient::with_clock(cfg, ManualClock::new()).unwrap();
    let (keys, _) = drain(&jira, "2024-05-01T12:07:00Z").await;
    assert_eq!(keys, ["PAY-1", "PAY-2", "PAY-3", "PAY-4", "PAY-5"]);
}

async fn drain(
    jira: &JiraClient,
    since: &str,
) -> (Vec<String>, findings_bridge::ticket::TicketUpdate) {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    let mut last = None;
    for _ in 0..10 {
        let page = jira.updated_since(since, cursor.as_deref()).await.unwrap();
        for update in page.tickets {
            keys.push(update.ticket.key.clone());
            last = Some(update);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return (keys, last.unwrap()),
        }
    }
    panic!("paging did not end");
}

#[tokio::test]
async fn updated_since_refuses_a_malformed_watermark_without_calling() {
    let server = MockServer::start().await;
    let error = client(&server, JiraApiVersion::V3)
        .updated_since("2024-05-01\" OR project = X", None)
        .await
        .unwrap_err();
    assert!(!error.is_transient());
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn field_errors_become_a_permanent_error_naming_the_field() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "errorMessages": [],
            "errors": {"priority": "Specify the Priority (name)", "customfield_10042": "Field is required"}})))
        .expect(1)
        .mount(&server)
        .await;
    let error = client(&server, JiraApiVersion::V3)
        .create(&json!({"fields": {}}), None)
        .await
        .unwrap_err();
    assert!(!error.is_transient());
    assert_eq!(error.status(), Some(400));
    assert_eq!(
        error.to_string(),
        "jira create: HTTP 400: customfield_10042: Field is required; priority: Specify the Priority (name)"
    );
}

/// Answers 403 with the request's own Authorization header in the body, like a careless proxy.
struct EchoAuthorization;

impl Respond for EchoAuthorization {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let echoed = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        ResponseTemplate::new(403).set_body_string(format!("forbidden for {echoed}"))
    }
}

#[tokio::test]
async fn secrets_stay_out_of_debug_and_errors() {
    for version in BOTH {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(EchoAuthorization)
            .mount(&server)
            .await;
        let cfg = config(&server, version);
        let debug = format!("{cfg:?}");
        assert!(debug.contains("[REDACTED]"), "{debug}");
        assert!(!debug.contains(TOKEN) && !debug.contains(PAT), "{debug}");
        let jira = JiraClient::with_clock(cfg, ManualClock::new()).unwrap();
        assert!(!format!("{jira:?}").contains("SECRET"));
        let error = jira.status(&ticket()).await.unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(shown.contains("HTTP 403"), "{shown}");
        assert!(shown.contains("[REDACTED]"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(
            !shown.contains("Ym90QGFjbWUudGVzdDp0b2stU0VDUkVULTEyMw"),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn the_client_is_usable_as_a_shared_trait_object() {
    let server = MockServer::start().await;
    mount_status_read(&server, JiraApiVersion::V3, "To Do", "new").await;
    let system: Arc<dyn TicketSystem> = Arc::new(client(&server, JiraApiVersion::V3));
    assert_eq!(system.name(), "jira");
    let status = system.status(&ticket()).await.unwrap();
    assert!(!status.done);
}

/// Whose fault a refusal is decides between a pause and the DLQ: a 401 is the connection's,
/// a create refused for its project or issue type (or a 404) the rule's, any other field error
/// the finding's.
#[tokio::test]
async fn refusals_are_blamed_on_the_connection_the_rule_or_the_finding() {
    use findings_bridge::ticket::Blame;
    let payload = json!({"fields": {"project": {"key": "PAY"}, "summary": "x"}});
    for (answer, blame) in [
        (
            ResponseTemplate::new(401).set_body_json(json!({"errorMessages": ["Unauthorized"]})),
            Some(Blame::Connection),
        ),
        (
            ResponseTemplate::new(400).set_body_json(
                json!({"errorMessages": [], "errors": {"project": "valid project is required"}}),
            ),
            Some(Blame::Target),
        ),
        (
            ResponseTemplate::new(400).set_body_json(
                json!({"errorMessages": [], "errors": {"issuetype": "valid issue type is required"}}),
            ),
            Some(Blame::Target),
        ),
        (
            ResponseTemplate::new(400).set_body_json(
                json!({"errorMessages": [], "errors": {"summary": "You must specify a summary"}}),
            ),
            None,
        ),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/rest/api/3/issue"))
            .respond_with(answer)
            .expect(1)
            .mount(&server)
            .await;
        let jira = client(&server, JiraApiVersion::V3);
        let err = jira.create(&payload, None).await.unwrap_err();
        assert_eq!(err.blame(), blame, "{err}");
        assert!(!err.is_transient(), "{err}");
        assert_eq!(jira.target_of(&payload, None).as_deref(), Some("PAY"));
    }
}

// ---- The user's time zone: JQL dates are read in it ----------------------------------------

/// `GET /rest/api/{3,2}/myself` answering `zone` as the user's `timeZone`, expected once.
async fn mount_time_zone(server: &MockServer, version: JiraApiVersion, zone: &str) {
    Mock::given(method("GET"))
        .and(path(format!("{}/myself", api(version))))
        .and(header("authorization", auth(version)))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "accountId": "5b10ac8d82e05b22cc7d4ef5",
            "displayName": "findings-bridge",
            "timeZone": zone,
        })))
        .expect(1)
        .mount(server)
        .await;
}

/// The search of a user at `zone` for `since`, answering one issue; expected `times` times.
async fn mount_search_in_zone(server: &MockServer, bound: &str, times: u64) {
    let jql =
        format!(r#"labels = "findings-bridge" AND updated >= "{bound}" ORDER BY updated ASC"#);
    Mock::given(method("POST"))
        .and(path("/rest/api/3/search/jql"))
        .and(body_json(
            json!({"jql": jql, "fields": ["status", "labels", "updated", "resolution"], "maxResults": 50}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issues": [issue(1, "2024-05-01T05:08:00.000-0700")], "isLast": true})))
        .expect(times)
        .mount(server)
        .await;
}

#[tokio::test]
async fn updated_since_writes_the_bound_in_the_users_time_zone_read_once() {
    for (zone, bound) in [
        // UTC-7 (daylight saving time): 12:07:30Z is 05:07 in Los Angeles.
        ("America/Los_Angeles", "2024-05-01 05:07"),
        // UTC+5:30: a half-hour zone.
        ("Asia/Kolkata", "2024-05-01 17:37"),
        // UTC+5:45.
        ("Asia/Kathmandu", "2024-05-01 17:52"),
    ] {
        let server = MockServer::start().await;
        mount_time_zone(&server, JiraApiVersion::V3, zone).await;
        mount_search_in_zone(&server, bound, 2).await;
        let jira = client(&server, JiraApiVersion::V3);
        for _ in 0..2 {
            let page = jira
                .updated_since("2024-05-01T12:07:30Z", None)
                .await
                .unwrap_or_else(|e| panic!("{zone}: {e}"));
            assert_eq!(page.tickets.len(), 1, "{zone}");
            assert_eq!(page.tickets[0].updated_at, "2024-05-01T05:08:00-07:00");
        }
        // Dropping the server checks the expectations: `/myself` once, the search twice.
    }
}

#[tokio::test]
async fn a_failed_poll_reads_the_time_zone_again() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/myself"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"timeZone": "UTC"})))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/search/jql"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "errorMessages": ["The value 'x' does not exist for the field 'labels'."]})))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    let jira = client(&server, JiraApiVersion::V3);
    assert!(
        jira.updated_since("2024-05-01T12:07:30Z", None)
            .await
            .is_err()
    );
    // The user moved to Los Angeles meanwhile: the next poll reads the zone again.
    mount_time_zone(&server, JiraApiVersion::V3, "America/Los_Angeles").await;
    mount_search_in_zone(&server, "2024-05-01 05:07", 1).await;
    jira.updated_since("2024-05-01T12:07:30Z", None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_user_without_a_known_time_zone_fails_the_poll_without_searching() {
    for body in [
        json!({"accountId": "x", "timeZone": null}),
        json!({"accountId": "x"}),
        json!({"accountId": "x", "timeZone": "Mars/Olympus_Mons"}),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/rest/api/3/myself"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body.clone()))
            .mount(&server)
            .await;
        let error = client(&server, JiraApiVersion::V3)
            .updated_since("2024-05-01T12:07:30Z", None)
            .await
            .unwrap_err();
        assert!(!error.is_transient(), "{body}: {error}");
        assert!(error.to_string().contains("time zone"), "{body}: {error}");
        let requests = server.received_requests().await.unwrap();
        assert!(
            requests.iter().all(|r| r.url.path().ends_with("/myself")),
            "{body}: no search without a zone"
        );
    }
}

// ---- Who moved an issue to its status, and why (the risk acceptance note) ---------------------

/// A changelog entry by `author` at `created`: a status change to `to`, or (`to` = None) an edit
/// of the summary.
fn history(n: u32, author: &str, created: &str, to: Option<&str>) -> Value {
    let items = match to {
        Some(to) => json!([
            {"field": "resolution", "fieldtype": "jira", "fromString": null, "toString": "Won't Fix"},
            {"field": "status", "fieldtype": "jira", "from": "3", "fromString": "In Progress",
             "to": "10002", "toString": to},
        ]),
        None => json!([{"field": "summary", "fieldtype": "jira", "toString": "renamed"}]),
    };
    json!({"id": n.to_string(), "author": {"accountId": format!("acc-{n}"), "displayName": author},
        "created": created, "items": items})
}

/// `count` summary edits, one a minute from 2024-05-01 10:00.
fn edits(from: u32, count: u32) -> Vec<Value> {
    (from..from + count)
        .map(|n| {
            let created = format!(
                "2024-05-{:02}T{:02}:{:02}:00.000+0000",
                1 + n / 1440,
                (n / 60) % 24,
                n % 60
            );
            history(n, "Editor", &created, None)
        })
        .collect()
}

async fn mount_changelog_page(server: &MockServer, start: u64, total: u64, values: Vec<Value>) {
    let is_last = start + values.len() as u64 >= total;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/PAY-7/changelog"))
        .and(query_param("startAt", start.to_string()))
        .and(query_param("maxResults", "100"))
        .and(header("authorization", CLOUD_AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "startAt": start, "maxResults": 100, "total": total, "isLast": is_last,
            "values": values})))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn cloud_reads_the_changelogs_last_page_for_the_newest_status_change() {
    let server = MockServer::start().await;
    // 150 entries: an older move by someone else on the first page, the newest on the second.
    let mut first = edits(0, 100);
    first[10] = history(
        10,
        "Old Hand",
        "2024-04-01T10:00:00.000+0000",
        Some("Won't Do"),
    );
    let mut last = edits(100, 50);
    last[40] = history(
        140,
        "Jane\nDoe",
        "2024-05-02T10:00:00.000+0000",
        Some("Won't Do"),
    );
    mount_changelog_page(&server, 0, 150, first).await;
    mount_changelog_page(&server, 100, 150, last).await;
    let jira = client(&server, JiraApiVersion::V3);
    assert_eq!(
        jira.status_changed_by(&ticket(), "Won't Do").await.unwrap(),
        Some("Jane Doe".to_owned())
    );
}

#[tokio::test]
async fn cloud_walks_back_from_the_last_page_to_the_newest_status_change() {
    let server = MockServer::start().await;
    // 250 entries; the only status change is on the first page: the last page (150…249) and the
    // one before it (100…199) are read, then the first decides.
    let mut first = edits(0, 100);
    first[99] = history(
        99,
        "Jane Doe",
        "2024-05-01T01:39:00.000+0000",
        Some("Won't Do"),
    );
    mount_changelog_page(&server, 0, 250, first).await;
    mount_changelog_page(&server, 150, 250, edits(150, 100)).await;
    mount_changelog_page(&server, 100, 250, edits(100, 100)).await;
    let jira = client(&server, JiraApiVersion::V3);
    assert_eq!(
        jira.status_changed_by(&ticket(), "Won't Do").await.unwrap(),
        Some("Jane Doe".to_owned())
    );
}

#[tokio::test]
async fn a_newest_status_change_elsewhere_or_none_names_nobody() {
    let server = MockServer::start().await;
    // Moved on since the status was read: not the person who accepted.
    let values = vec![
        history(
            1,
            "Jane Doe",
            "2024-05-01T10:00:00.000+0000",
            Some("Won't Do"),
        ),
        history(2, "Bot", "2024-05-01T11:00:00.000+0000", Some("To Do")),
    ];
    mount_changelog_page(&server, 0, 2, values).await;
    let jira = client(&server, JiraApiVersion::V3);
    assert_eq!(
        jira.status_changed_by(&ticket(), "Won't Do").await.unwrap(),
        None
    );

    let empty = MockServer::start().await;
    mount_changelog_page(&empty, 0, 0, Vec::new()).await;
    let jira = client(&empty, JiraApiVersion::V3);
    assert_eq!(
        jira.status_changed_by(&ticket(), "Done").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn data_center_reads_the_changelog_expanded_on_the_issue() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/issue/PAY-7"))
        .and(query_param("expand", "changelog"))
        .and(query_param("fields", "status"))
        .and(header("authorization", DC_AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
        "id": "10007", "key": "PAY-7",
        "fields": {"status": {"name": "Won't Do", "statusCategory": {"key": "done"}}},
        "changelog": {"startAt": 0, "maxResults": 3, "total": 3, "histories": [
            history(1, "Old Hand", "2024-04-01T10:00:00.000+0000", Some("Won't Do")),
            history(2, "Jane Doe", "2024-05-01T10:00:00.000+0000", Some("Won't Do")),
            history(3, "Editor", "2024-05-02T10:00:00.000+0000", None),
        ]}})))
        .expect(1)
        .mount(&server)
        .await;
    let jira = client(&server, JiraApiVersion::V2);
    assert_eq!(
        jira.status_changed_by(&ticket(), "won't do").await.unwrap(),
        Some("Jane Doe".to_owned())
    );
}

#[tokio::test]
async fn an_unreadable_changelog_is_an_error_for_the_caller_to_leave_out() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/PAY-7/changelog"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "errorMessages": ["You do not have the permission to see the specified issue."]})))
        .expect(1)
        .mount(&server)
        .await;
    let jira = client(&server, JiraApiVersion::V3);
    let err = jira
        .status_changed_by(&ticket(), "Won't Do")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains(TOKEN), "{err}");
}

#[tokio::test]
async fn status_and_poll_reads_carry_the_resolution() {
    for version in BOTH {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(format!("{}/issue/PAY-7", api(version))))
            .and(query_param("fields", "status,resolution"))
            .and(header("authorization", auth(version)))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "10007", "key": "PAY-7", "fields": {
                    "status": {"name": "Won't Do", "statusCategory": {"key": "done"}},
                    "resolution": {"id": "10001", "name": "Won't\nFix"}}})))
            .expect(1)
            .mount(&server)
            .await;
        let status = client(&server, version).status(&ticket()).await.unwrap();
        assert_eq!(
            status.resolution.as_deref(),
            Some("Won't Fix"),
            "{version:?}"
        );
        assert_eq!(
            status.changed_by, None,
            "Jira's status read does not say who"
        );
    }
    // Unresolved (`null`): no resolution.
    let server = MockServer::start().await;
    mount_time_zone(&server, JiraApiVersion::V3, "UTC").await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/search/jql"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"isLast": true, "issues": [
            {"id": "10001", "key": "PAY-1", "fields": {
                "labels": ["findings-bridge", "fb-0123456789abcdef0123456789abcdef"],
                "updated": "2024-05-01T12:08:00.000+0000", "resolution": null,
                "status": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}}}},
            {"id": "10002", "key": "PAY-2", "fields": {
                "labels": ["findings-bridge", "fb-0123456789abcdef0123456789abcdef"],
                "updated": "2024-05-01T12:09:00.000+0000", "resolution": {"name": "Done"},
                "status": {"name": "Done", "statusCategory": {"key": "done"}}}}]})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let page = client(&server, JiraApiVersion::V3)
        .updated_since("2024-05-01T12:07:30Z", None)
        .await
        .unwrap();
    let resolutions: Vec<Option<&str>> = page
        .tickets
        .iter()
        .map(|t| t.status.resolution.as_deref())
        .collect();
    assert_eq!(resolutions, [None, Some("Done")]);
}
