//! `preflight`'s reads against wiremock on 127.0.0.1, with createmeta answers in the shapes Jira
//! Cloud and Data Center give (`tests/fixtures/createmeta/`, second pages included): exact
//! method, path, query and auth of every call, each page fetched once however many rules share
//! it, what the checks conclude from the answers, and a call that never answers failing its
//! check. The webhook test event goes to the real webhook router.

use crate::sync_harness;

use std::path::Path;
use std::sync::Arc;

use findings_bridge::commands::preflight::report::{Check, Row, Verdict};
use findings_bridge::commands::preflight::{Targets, check_rules, webhook_checks};
use findings_bridge::mapping::{self, Mappings};
use findings_bridge::runtime::server::{self, BoxFuture, Readiness, ServerState};
use findings_bridge::runtime::tasks::Tasks;
use findings_bridge::sync::SyncConfig;
use findings_bridge::sync::webhooks::{self, WebhookSecrets};
use findings_bridge::ticket::TicketError;
use findings_bridge::ticket::http::{HttpSettings, ManualClock};
use findings_bridge::ticket::jira::{JiraApiVersion, JiraAuth, JiraClient, JiraConfig};
use findings_bridge::ticket::servicenow::{ServiceNowAuth, ServiceNowClient, ServiceNowConfig};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// base64("bot@acme.test:tok-SECRET-123")
const CLOUD_AUTH: &str = "Basic Ym90QGFjbWUudGVzdDp0b2stU0VDUkVULTEyMw==";
const DC_AUTH: &str = "Bearer pat-SECRET-456";
/// base64("bridge:pw-SECRET-789")
const SN_AUTH: &str = "Basic YnJpZGdlOnB3LVNFQ1JFVC03ODk=";

fn http() -> HttpSettings {
    HttpSettings {
        rate_limit_per_sec: 0.0,
        ..HttpSettings::default()
    }
}

fn jira(server: &MockServer, version: JiraApiVersion) -> JiraClient {
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
    cfg.http = http();
    // A virtual clock: retries after a 503 cost no wall-clock time.
    JiraClient::with_clock(cfg, ManualClock::new()).unwrap()
}

fn servicenow(server: &MockServer) -> ServiceNowClient {
    let mut cfg = ServiceNowConfig::new(
        Url::parse(&server.uri()).unwrap(),
        ServiceNowAuth::Basic {
            username: "bridge".to_owned(),
            password: SecretString::from("pw-SECRET-789"),
        },
    );
    cfg.http = http();
    ServiceNowClient::with_clock(cfg, ManualClock::new()).unwrap()
}

fn fixture(name: &str) -> Value {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/createmeta")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap()
}

/// `GET {path}?startAt={start}&maxResults=50` answered with `body`, expected exactly once.
async fn page(server: &MockServer, auth: &str, at: &str, start: usize, body: Value) {
    Mock::given(method("GET"))
        .and(path(at))
        .and(query_param("startAt", start.to_string()))
        .and(query_param("maxResults", "50"))
        .and(header("authorization", auth))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(server)
        .await;
}

async fn get(server: &MockServer, auth: &str, at: &str, body: Value) {
    Mock::given(method("GET"))
        .and(path(at))
        .and(header("authorization", auth))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(server)
        .await;
}

async fn permissions(server: &MockServer, auth: &str, api: &str, project: &str, create: bool) {
    Mock::given(method("GET"))
        .and(path(format!("{api}/mypermissions")))
        .and(query_param("projectKey", project))
        .and(query_param("permissions", "BROWSE_PROJECTS,CREATE_ISSUES"))
        .and(header("authorization", auth))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"permissions": {
            "BROWSE_PROJECTS": {"id": "10", "key": "BROWSE_PROJECTS", "name": "Browse Projects",
                "type": "PROJECT", "description": "Ability to browse projects.", "havePermission": true},
            "CREATE_ISSUES": {"id": "11", "key": "CREATE_ISSUES", "name": "Create Issues",
                "type": "PROJECT", "description": "Ability to create issues.", "havePermission": create},
        }})))
        .expect(1)
        .mount(server)
        .await;
}

/// A Jira that signs the account in, has `project`, and says whether the account may create
/// there: what every Jira check reads first.
async fn signed_in(server: &MockServer, auth: &str, api: &str, project: &str, create: bool) {
    get(
        server,
        auth,
        &format!("{api}/myself"),
        json!({"accountId": "5b10"}),
    )
    .await;
    get(
        server,
        auth,
        &format!("{api}/project/{project}"),
        json!({"id": "10010", "key": project}),
    )
    .await;
    permissions(server, auth, api, project, create).await;
}

fn mappings(files: &[(&str, &str)]) -> (tempfile::TempDir, Mappings) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let m = mapping::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (dir, m)
}

/// Every check of `m` against Jira alone.
async fn check_jira(m: &Mappings, client: &JiraClient) -> Vec<Row> {
    let targets = Targets {
        jira: Some(client),
        servicenow: None,
    };
    check_rules(Some(m), targets).await
}

/// The rows of `check` about `subject`.
fn rows<'r>(rows: &'r [Row], check: Check, subject: &str) -> Vec<&'r Row> {
    rows.iter()
        .filter(|r| r.check == check && r.subject == subject)
        .collect()
}

fn describe(rows: &[Row]) -> String {
    rows.iter()
        .map(|r| {
            format!(
                "{:?} {:?} {} {:?}: {}",
                r.rule, r.check, r.subject, r.verdict, r.detail
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Two rules on PAY/Bug: one with a priority map that can produce `Highest`.
const PAYMENTS: &str = r#"
team = "payments"
[defaults.jira]
project = "PAY"
issue_type = "Bug"
labels = ["security-hub"]
fields = { components = [{ name = "Security" }], customfield_10042 = "{{ finding.account_id }}" }

[[rules]]
name = "critical"
order = 10
[rules.jira]
summary = "[{{ finding.severity }}] {{ finding.title }}"
description = "{{ finding.description }}"
priority = "{{ {'CRITICAL': 'Highest', 'HIGH': 'High'}[finding.severity] | default('Medium') }}"

[[rules]]
name = "rest"
order = 20
[rules.jira]
summary = "{{ finding.title }}"
priority = "{{ 'High' if finding.severity == 'HIGH' else 'Low' }}"
"#;

#[tokio::test]
async fn cloud_createmeta_pages_are_read_once_for_all_rules_and_judged() {
    let server = MockServer::start().await;
    let api = "/rest/api/3";
    signed_in(&server, CLOUD_AUTH, api, "PAY", true).await;
    let types = format!("{api}/issue/createmeta/PAY/issuetypes");
    page(
        &server,
        CLOUD_AUTH,
        &types,
        0,
        fixture("cloud-issuetypes-1.json"),
    )
    .await;
    page(
        &server,
        CLOUD_AUTH,
        &types,
        2,
        fixture("cloud-issuetypes-2.json"),
    )
    .await;
    let fields = format!("{types}/10001");
    page(
        &server,
        CLOUD_AUTH,
        &fields,
        0,
        fixture("cloud-fields-1.json"),
    )
    .await;
    page(
        &server,
        CLOUD_AUTH,
        &fields,
        5,
        fixture("cloud-fields-2.json"),
    )
    .await;

    let client = jira(&server, JiraApiVersion::V3);
    let (_dir, m) = mappings(&[("payments.toml", PAYMENTS)]);
    let out = check_jira(&m, &client).await;
    let all = describe(&out);

    assert_eq!(
        rows(&out, Check::Connection, "jira")[0].detail,
        "Jira REST API 3 (Cloud)"
    );
    for (check, subject) in [
        (Check::JiraProject, "PAY"),
        (Check::JiraPermissions, "PAY"),
        (Check::JiraIssueType, "PAY/Bug"),
        (Check::JiraFieldsOnScreen, "PAY/Bug"),
        (Check::JiraLabels, "PAY/Bug"),
    ] {
        let found = rows(&out, check, subject);
        assert_eq!(found.len(), 2, "one row per rule for {check:?}:\n{all}");
        assert!(
            found.iter().all(|r| r.verdict == Verdict::Ok),
            "{check:?}:\n{all}"
        );
    }
    // The required select on the second page is set by neither rule.
    let required = rows(&out, Check::JiraRequiredFields, "PAY/Bug");
    assert_eq!(required.len(), 2, "{all}");
    for row in &required {
        assert_eq!(row.verdict, Verdict::Fail, "{all}");
        assert!(row.detail.contains("customfield_10099 (Team)"), "{all}");
        let fix = row.fix.as_deref().unwrap();
        assert!(
            fix.contains("add customfield_10099") && fix.contains("payments.toml:"),
            "{fix}"
        );
    }
    // The screen offers High, Medium, Low: `Highest` is the first rule's problem only.
    let priority = rows(&out, Check::JiraPriority, "PAY/Bug");
    assert_eq!(priority[0].rule.as_deref(), Some("payments/critical"));
    assert_eq!(priority[0].verdict, Verdict::Fail, "{all}");
    assert!(priority[0].detail.contains("Highest"), "{all}");
    assert!(
        priority[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("High, Medium, Low"),
        "{all}"
    );
    assert_eq!(priority[1].verdict, Verdict::Ok, "{all}");
    assert_eq!(priority[1].detail, "High, Low");
    // Every mock's `expect(1)` is verified when the server drops: each page was read once.
}

#[tokio::test]
async fn data_center_pages_by_is_last_and_falls_back_to_the_site_priorities() {
    let server = MockServer::start().await;
    let api = "/rest/api/2";
    signed_in(&server, DC_AUTH, api, "SEC", true).await;
    let types = format!("{api}/issue/createmeta/SEC/issuetypes");
    page(&server, DC_AUTH, &types, 0, fixture("dc-issuetypes.json")).await;
    let fields = format!("{types}/3");
    page(&server, DC_AUTH, &fields, 0, fixture("dc-fields-1.json")).await;
    page(&server, DC_AUTH, &fields, 3, fixture("dc-fields-2.json")).await;
    // The screen's priority field lists no allowedValues: the site's priorities decide.
    get(
        &server,
        DC_AUTH,
        &format!("{api}/priority"),
        json!([
            {"self": "https://jira.acme.test/rest/api/2/priority/1", "id": "1", "name": "Blocker",
             "statusColor": "#d04437", "description": "Blocks development.", "iconUrl": "x"},
            {"self": "https://jira.acme.test/rest/api/2/priority/3", "id": "3", "name": "Major",
             "statusColor": "#f79232", "description": "Major loss of function.", "iconUrl": "x"}
        ]),
    )
    .await;

    let client = jira(&server, JiraApiVersion::V2);
    let rule = r#"
team = "secops"
[[rules]]
name = "all"
order = 1
[rules.jira]
project = "SEC"
issue_type = "Task"
summary = "{{ finding.title }}"
description = "{{ finding.description }}"
priority = "{{ 'Blocker' if finding.severity == 'CRITICAL' else 'Major' }}"
"#;
    let (_dir, m) = mappings(&[("secops.toml", rule)]);
    let out = check_jira(&m, &client).await;
    let all = describe(&out);
    assert_eq!(
        rows(&out, Check::Connection, "jira")[0].detail,
        "Jira REST API 2 (Data Center)"
    );
    assert_eq!(
        rows(&out, Check::JiraIssueType, "SEC/Task")[0].verdict,
        Verdict::Ok,
        "{all}"
    );
    assert_eq!(
        rows(&out, Check::JiraRequiredFields, "SEC/Task")[0].verdict,
        Verdict::Ok,
        "{all}"
    );
    assert_eq!(
        rows(&out, Check::JiraPriority, "SEC/Task")[0].verdict,
        Verdict::Ok,
        "{all}"
    );
    // Labels are not on this screen, and the bridge labels every ticket.
    let labels = rows(&out, Check::JiraLabels, "SEC/Task");
    assert_eq!(labels[0].verdict, Verdict::Fail, "{all}");
    assert!(
        labels[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("add the Labels field"),
        "{all}"
    );
}

#[tokio::test]
async fn missing_things_fail_with_their_fix_and_dependent_checks_are_skipped() {
    let server = MockServer::start().await;
    let api = "/rest/api/3";
    get(&server, CLOUD_AUTH, &format!("{api}/myself"), json!({})).await;
    // OPS does not exist; PAY exists but the account may not create there.
    Mock::given(method("GET"))
        .and(path(format!("{api}/project/OPS")))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "errorMessages": ["No project could be found with key 'OPS'."], "errors": {}})))
        .expect(1)
        .mount(&server)
        .await;
    get(
        &server,
        CLOUD_AUTH,
        &format!("{api}/project/PAY"),
        json!({"id": "1", "key": "PAY"}),
    )
    .await;
    permissions(&server, CLOUD_AUTH, api, "PAY", false).await;
    let rules = r#"
team = "t"
[[rules]]
name = "ops"
order = 1
[rules.jira]
project = "OPS"
issue_type = "Bug"
summary = "s"

[[rules]]
name = "pay"
order = 2
[rules.jira]
project = "PAY"
issue_type = "Bug"
summary = "s"

[[rules]]
name = "by-account"
order = 3
[rules.jira]
project = "{{ finding.account_id }}"
issue_type = "Bug"
summary = "s"
"#;
    let (_dir, m) = mappings(&[("t.toml", rules)]);
    let client = jira(&server, JiraApiVersion::V3);
    let out = check_jira(&m, &client).await;
    let all = describe(&out);
    let ops = rows(&out, Check::JiraProject, "OPS");
    assert_eq!(ops[0].verdict, Verdict::Fail, "{all}");
    assert!(
        ops[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("correct rules.jira.project"),
        "{all}"
    );
    let perms = rows(&out, Check::JiraPermissions, "PAY");
    assert_eq!(perms[0].verdict, Verdict::Fail, "{all}");
    assert_eq!(
        perms[0].fix.as_deref(),
        Some("give the account CREATE_ISSUES on project PAY (its permission scheme)")
    );
    assert_eq!(
        rows(&out, Check::JiraIssueType, "PAY/Bug")[0].verdict,
        Verdict::Skip,
        "{all}"
    );
    let open = rows(&out, Check::JiraProject, "{{ finding.account_id }}");
    assert_eq!(open[0].verdict, Verdict::Skip, "{all}");
    assert!(open[0].detail.contains("finding.account_id"), "{all}");
}

#[tokio::test]
async fn a_call_that_never_answers_fails_its_check_with_the_cause() {
    let server = MockServer::start().await;
    let api = "/rest/api/3";
    signed_in(&server, CLOUD_AUTH, api, "PAY", true).await;
    Mock::given(method("GET"))
        .and(path(format!("{api}/issue/createmeta/PAY/issuetypes")))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream unavailable"))
        .mount(&server)
        .await;
    let (_dir, m) = mappings(&[(
        "t.toml",
        "team = \"t\"\n[[rules]]\nname = \"r\"\norder = 1\n[rules.jira]\nproject = \"PAY\"\nissue_type = \"Bug\"\nsummary = \"s\"\n",
    )]);
    let client = jira(&server, JiraApiVersion::V3);
    let out = check_jira(&m, &client).await;
    let all = describe(&out);
    let row = rows(&out, Check::JiraIssueType, "PAY/Bug")[0];
    assert_eq!(row.verdict, Verdict::Fail, "{all}");
    assert!(
        row.detail.contains("HTTP 503") && row.detail.contains("gave up"),
        "{all}"
    );
    assert!(
        row.fix.as_deref().unwrap().contains("outcome unknown"),
        "{all}"
    );
    let attempts = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/issuetypes"))
        .count();
    assert!(
        attempts > 1,
        "the client retried before giving up: {attempts}"
    );
}

#[tokio::test]
async fn a_data_center_without_createmeta_by_project_is_named() {
    let server = MockServer::start().await;
    let api = "/rest/api/2";
    signed_in(&server, DC_AUTH, api, "SEC", true).await;
    // Jira before 8.4: the endpoint does not exist.
    Mock::given(method("GET"))
        .and(path(format!("{api}/issue/createmeta/SEC/issuetypes")))
        .respond_with(ResponseTemplate::new(404).set_body_string("Not Found"))
        .expect(1)
        .mount(&server)
        .await;
    let (_dir, m) = mappings(&[(
        "t.toml",
        "team = \"t\"\n[[rules]]\nname = \"r\"\norder = 1\n[rules.jira]\nproject = \"SEC\"\nissue_type = \"Bug\"\nsummary = \"s\"\n",
    )]);
    let client = jira(&server, JiraApiVersion::V2);
    let out = check_jira(&m, &client).await;
    let row = rows(&out, Check::JiraIssueType, "SEC/Bug")[0];
    assert_eq!(row.verdict, Verdict::Fail, "{}", describe(&out));
    assert!(
        row.fix.as_deref().unwrap().contains("before 8.4"),
        "{}",
        describe(&out)
    );
}

#[tokio::test]
async fn jira_reads_name_what_they_ask_and_decode_both_shapes() {
    let server = MockServer::start().await;
    let client = jira(&server, JiraApiVersion::V3);
    Mock::given(method("GET"))
        .and(path("/rest/api/3/project/GONE"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"errorMessages": ["no"]})))
        .mount(&server)
        .await;
    assert_eq!(client.project("GONE").await.unwrap(), None);
    // A page without any list the client knows is an error, never an empty screen.
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/createmeta/X/issuetypes"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"projects": []})))
        .mount(&server)
        .await;
    let err = client.create_issue_types("X").await.unwrap_err();
    assert!(matches!(err, TicketError::Permanent { .. }), "{err}");
    // A permission the answer does not mention is unknown, not granted.
    Mock::given(method("GET"))
        .and(path("/rest/api/3/mypermissions"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"permissions": {
            "BROWSE_PROJECTS": {"havePermission": true}}})),
        )
        .mount(&server)
        .await;
    let granted = client
        .my_permissions("PAY", &["BROWSE_PROJECTS", "CREATE_ISSUES"])
        .await
        .unwrap();
    assert_eq!(granted["BROWSE_PROJECTS"], Some(true));
    assert_eq!(granted["CREATE_ISSUES"], None);
}

/// `sysparm_query` and paging of one Table API read, answered with `records`.
async fn table(server: &MockServer, table: &str, query: &str, offset: &str, records: Value) {
    Mock::given(method("GET"))
        .and(path(format!("/api/now/table/{table}")))
        .and(query_param("sysparm_query", query))
        .and(query_param("sysparm_offset", offset))
        .and(query_param("sysparm_exclude_reference_link", "true"))
        .and(header("authorization", SN_AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "result": records })))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn servicenow_columns_follow_the_table_hierarchy_and_groups_are_looked_up_once() {
    let server = MockServer::start().await;
    let task_id = "8c58a5aa0a0a0b07008047e8ef0fe07d";
    // The sign-in probe reads the default table, the table check the rule's: incident both.
    Mock::given(method("GET"))
        .and(path("/api/now/table/incident"))
        .and(query_param("sysparm_limit", "1"))
        .and(header("authorization", SN_AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": []})))
        .expect(2)
        .mount(&server)
        .await;
    table(
        &server,
        "sys_db_object",
        "name=incident",
        "0",
        json!([{"sys_id": "a1b2", "name": "incident", "super_class": task_id}]),
    )
    .await;
    table(
        &server,
        "sys_db_object",
        &format!("sys_id={task_id}"),
        "0",
        json!([{"sys_id": task_id, "name": "task", "super_class": ""}]),
    )
    .await;
    // A full first page of the dictionary, then the rest.
    let mut first: Vec<Value> = (0..999)
        .map(|i| json!({"name": "task", "element": format!("u_filler_{i}")}))
        .collect();
    first.push(json!({"name": "task", "element": "short_description"}));
    let dictionary = "nameINincident,task^elementISNOTEMPTY";
    table(
        &server,
        "sys_dictionary",
        dictionary,
        "0",
        Value::Array(first),
    )
    .await;
    table(
        &server,
        "sys_dictionary",
        dictionary,
        "1000",
        json!([
            {"name": "task", "element": "correlation_id"},
            {"name": "task", "element": "correlation_display"},
            {"name": "task", "element": "assignment_group"},
            {"name": "task", "element": "urgency"},
            {"name": "incident", "element": "category"}
        ]),
    )
    .await;
    table(
        &server,
        "sys_user_group",
        "name=Cloud Platform",
        "0",
        json!([{"sys_id": "477a05d153013010b846ddeeff7b1225", "name": "Cloud Platform"}]),
    )
    .await;
    let rules = r#"
team = "platform"
[defaults.servicenow]
assignment_group = "Cloud Platform"
urgency = "2"
[[rules]]
name = "a"
order = 1
[rules.servicenow]
short_description = "{{ finding.title }}"
fields = { category = "security" }
[[rules]]
name = "b"
order = 2
[rules.servicenow]
short_description = "{{ finding.title }}"
fields = { u_aws_account = "{{ finding.account_id }}" }
"#;
    let (_dir, m) = mappings(&[("platform.toml", rules)]);
    let client = servicenow(&server);
    let out = check_rules(
        Some(&m),
        Targets {
            jira: None,
            servicenow: Some(&client),
        },
    )
    .await;
    let all = describe(&out);
    let fields = rows(&out, Check::ServiceNowFields, "incident");
    assert_eq!(
        fields[0].verdict,
        Verdict::Ok,
        "inherited columns count:\n{all}"
    );
    assert_eq!(fields[0].detail, "columns of incident < task");
    assert_eq!(fields[1].verdict, Verdict::Fail, "{all}");
    assert!(
        fields[1].detail.starts_with("u_aws_account not a column"),
        "{all}"
    );
    assert!(
        fields[1]
            .fix
            .as_deref()
            .unwrap()
            .contains("create column u_aws_account on incident")
    );
    let groups = rows(&out, Check::ServiceNowAssignmentGroup, "Cloud Platform");
    assert_eq!(groups.len(), 2, "{all}");
    assert!(groups.iter().all(|r| r.verdict == Verdict::Ok), "{all}");
}

struct AlwaysReady;

impl Readiness for AlwaysReady {
    fn check(&self) -> BoxFuture<'_, Vec<(String, Result<(), String>)>> {
        Box::pin(async { Vec::new() })
    }
}

/// The bridge's real webhook routes, holding `secrets`, on a free local port.
async fn bridge(
    h: &sync_harness::Harness,
    secrets: WebhookSecrets,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let writer = Arc::new(sync_harness::hub_writer(&h.sim.base_url).await);
    let sync = Arc::new(h.sync(writer, SyncConfig::default()));
    let state = ServerState::new(
        findings_bridge::runtime::telemetry::install_metrics(),
        Arc::new(AlwaysReady),
    );
    let app = server::router(state).merge(webhooks::router(sync, secrets, Tasks::new()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, _task) = server::serve("127.0.0.1:0".parse().unwrap(), app, async {
        let _ = stopped.await;
    })
    .await
    .expect("server binds");
    (addr, stop)
}

fn secrets(jira: &str, servicenow: &str) -> WebhookSecrets {
    WebhookSecrets {
        jira: Some(SecretString::from(jira)),
        servicenow: Some(SecretString::from(servicenow)),
    }
}

#[tokio::test]
async fn the_webhook_test_event_is_accepted_by_a_bridge_with_the_same_secrets_only() {
    let h = sync_harness::harness(50).await;
    let (addr, _stop) = bridge(&h, secrets("jira-hush", "sn-hush")).await;
    let jira_url = Url::parse(&format!("http://{addr}/webhooks/jira")).unwrap();
    let sn_url = Url::parse(&format!("http://{addr}/webhooks/servicenow")).unwrap();
    let listen = "0.0.0.0:8080".parse().unwrap();

    let same = webhook_checks(
        &secrets("jira-hush", "sn-hush"),
        listen,
        Some(&jira_url),
        Some(&sn_url),
    )
    .await;
    let all = describe(&same);
    assert_eq!(
        same.len(),
        4,
        "a listener and a probe row per endpoint:\n{all}"
    );
    assert!(same.iter().all(|r| r.verdict == Verdict::Ok), "{all}");
    assert!(same[1].detail.contains("202"), "{all}");

    let wrong = "wrong-secret-4f1c";
    let other = webhook_checks(
        &secrets(wrong, wrong),
        listen,
        Some(&jira_url),
        Some(&sn_url),
    )
    .await;
    let all = describe(&other);
    for row in [&other[1], &other[3]] {
        assert_eq!(row.verdict, Verdict::Fail, "{all}");
        assert!(row.detail.contains("401"), "{all}");
        assert!(row.fix.as_deref().unwrap().contains("another"), "{all}");
    }
    assert!(
        !all.contains(wrong),
        "a secret never shows in a row:\n{all}"
    );

    // A loopback listener serves only its own task.
    let loopback = webhook_checks(
        &secrets("jira-hush", "sn-hush"),
        "127.0.0.1:8080".parse().unwrap(),
        None,
        None,
    )
    .await;
    assert_eq!(loopback.len(), 2);
    assert!(loopback.iter().all(|r| r.verdict == Verdict::Fail));
    assert_eq!(
        loopback[0].fix.as_deref(),
        Some("set BRIDGE_HTTP_ADDR=0.0.0.0:8080 (the port the load balancer forwards to)")
    );
    assert!(h.sim.state.jira_issues().is_empty());
}

#[tokio::test]
async fn a_bridge_without_the_secret_has_no_endpoint_and_servicenow_secrets_stay_off_plain_http() {
    let h = sync_harness::harness(50).await;
    let (addr, _stop) = bridge(
        &h,
        WebhookSecrets {
            jira: None,
            servicenow: Some(SecretString::from("sn-hush")),
        },
    )
    .await;
    let jira_url = Url::parse(&format!("http://{addr}/webhooks/jira")).unwrap();
    let remote = Url::parse("http://bridge.acme.test/webhooks/servicenow").unwrap();
    let out = webhook_checks(
        &secrets("jira-hush", "sn-hush"),
        "0.0.0.0:8080".parse().unwrap(),
        Some(&jira_url),
        Some(&remote),
    )
    .await;
    let all = describe(&out);
    assert!(out[1].detail.contains("404"), "{all}");
    assert!(
        out[1]
            .fix
            .as_deref()
            .unwrap()
            .contains("set JIRA_WEBHOOK_SECRET"),
        "{all}"
    );
    assert_eq!(out[3].verdict, Verdict::Fail, "{all}");
    assert!(out[3].detail.contains("plain HTTP"), "{all}");
    // A URL without a secret to check it with is a failure too.
    let unset = webhook_checks(
        &WebhookSecrets::default(),
        "0.0.0.0:8080".parse().unwrap(),
        Some(&jira_url),
        None,
    )
    .await;
    assert_eq!(unset.len(), 1);
    assert_eq!(unset[0].verdict, Verdict::Fail);
}
