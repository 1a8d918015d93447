//! The Detective enrichment through the real `aws-sdk-detective` client against wiremock on
//! 127.0.0.1 (moto has no Detective): the requests must be exactly what Detective's REST-JSON API
//! expects, its answers (running, failed, access denied, paged indicators) must end as the right
//! outcome, and the ticket is created whatever Detective does.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_detective::config::{Credentials, Region};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use findings_bridge::aws::detective::{
    DetectiveConfig, EnrichError, GraphArn, IndicatorKind, Investigator, investigable_entities,
    spawn_enrichment,
};
use findings_bridge::finding::{Finding, decode};
use findings_bridge::ticket::http::{HttpSettings, ManualClock};
use findings_bridge::ticket::jira::{JiraApiVersion, JiraAuth, JiraClient, JiraConfig};
use findings_bridge::ticket::{BoxFuture, TicketRef, TicketSystem};
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

const GRAPH: &str =
    "arn:aws:detective:us-east-1:111122223333:graph:0123456789abcdef0123456789abcdef";
const ALICE: &str = "arn:aws:iam::444455556666:user/alice";
const INVESTIGATION: &str = "000000000000000000001";
const START: &str = "/investigations/startInvestigation";
const GET: &str = "/investigations/getInvestigation";
const LIST: &str = "/investigations/listIndicators";

/// Every Detective request must be SigV4-signed for the `detective` service in the graph's region.
struct SignedForDetective;

impl Match for SignedForDetective {
    fn matches(&self, request: &Request) -> bool {
        request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
                    && v.contains("/us-east-1/detective/aws4_request")
            })
    }
}

fn config(tune: impl FnOnce(&mut DetectiveConfig)) -> DetectiveConfig {
    let mut cfg = DetectiveConfig::new(GraphArn::parse(GRAPH).unwrap());
    cfg.poll_interval = Duration::from_millis(10);
    cfg.max_wait = Duration::from_secs(5);
    cfg.request_timeout = Duration::from_secs(5);
    tune(&mut cfg);
    cfg
}

async fn investigator(server: &MockServer, cfg: DetectiveConfig) -> Investigator {
    // The process region differs from the graph's on purpose: calls must follow the graph.
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new(
            "AKIDTEST",
            "test-secret",
            None,
            None,
            "test",
        ))
        .endpoint_url(server.uri())
        .retry_config(
            RetryConfig::standard()
                .with_initial_backoff(Duration::from_millis(1))
                .with_max_backoff(Duration::from_millis(5)),
        )
        .load()
        .await;
    Investigator::from_conf(&sdk, cfg)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A GuardDuty ASFF finding about alice's access key, first seen 5 days ago and last seen 3 days
/// ago (recent enough that the padded scope is neither clamped to now nor to retention).
fn access_key_finding() -> (Finding, DateTime<Utc>, DateTime<Utc>) {
    let now = Utc::now();
    let first = DateTime::from_timestamp((now - TimeDelta::days(5)).timestamp(), 0).unwrap();
    let last = first + TimeDelta::days(2) + TimeDelta::minutes(7);
    let raw = json!({
        "SchemaVersion": "2018-10-08",
        "Id": "arn:aws:guardduty:us-east-1:444455556666:detector/d1/finding/f1",
        "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
        "ProductName": "GuardDuty",
        "CompanyName": "Amazon",
        "Region": "us-east-1",
        "GeneratorId": "arn:aws:guardduty:us-east-1:444455556666:detector/d1",
        "AwsAccountId": "444455556666",
        "Types": ["TTPs/Initial Access/UnauthorizedAccess:IAMUser-ConsoleLoginSuccess.B"],
        "FirstObservedAt": rfc3339(first),
        "LastObservedAt": rfc3339(last),
        "CreatedAt": rfc3339(first),
        "UpdatedAt": rfc3339(last),
        "Severity": {"Label": "HIGH", "Normalized": 70},
        "Title": "Unusual console logins by alice",
        "Description": "Multiple worldwide successful console logins were observed.",
        "Resources": [{
            "Type": "AwsIamAccessKey",
            "Id": "AWS::IAM::AccessKey:AKIAIOSFODNN7EXAMPLE",
            "Partition": "aws",
            "Region": "us-east-1",
            "Details": {"AwsIamAccessKey": {
                "PrincipalId": "AIDAEXAMPLE",
                "PrincipalType": "IAMUser",
                "PrincipalName": "alice",
                "AccountId": "444455556666",
                "Status": "Active"
            }}
        }],
        "Workflow": {"Status": "NEW"},
        "RecordState": "ACTIVE"
    });
    let finding = decode(raw.to_string().as_bytes()).unwrap().pop().unwrap();
    (finding, first, last)
}

fn start_body(first: DateTime<Utc>, last: DateTime<Utc>) -> Value {
    let day = TimeDelta::days(1);
    let secs = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    json!({
        "GraphArn": GRAPH,
        "EntityArn": ALICE,
        "ScopeStartTime": secs(first - day),
        "ScopeEndTime": secs(last + day),
    })
}

async fn mount_start(server: &MockServer, expected_body: Value) {
    Mock::given(method("POST"))
        .and(path(START))
        .and(header("content-type", "application/json"))
        .and(SignedForDetective)
        .and(body_json(expected_body))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"InvestigationId": INVESTIGATION})),
        )
        .expect(1)
        .mount(server)
        .await;
}

fn investigation(status: &str) -> Value {
    json!({
        "GraphArn": GRAPH,
        "InvestigationId": INVESTIGATION,
        "EntityArn": ALICE,
        "EntityType": "IAM_USER",
        "CreatedTime": "2026-11-20T10:00:00.000Z",
        "ScopeStartTime": "2026-11-20T10:00:00.000Z",
        "ScopeEndTime": "2026-11-22T10:00:00.000Z",
        "Status": status,
        "Severity": "HIGH",
        "State": "ACTIVE"
    })
}

/// GetInvestigation answers RUNNING `running` times, then `last`.
async fn mount_get(server: &MockServer, running: u64, last: &str) {
    let get = || {
        Mock::given(method("POST"))
            .and(path(GET))
            .and(SignedForDetective)
            .and(body_json(
                json!({"GraphArn": GRAPH, "InvestigationId": INVESTIGATION}),
            ))
    };
    if running > 0 {
        get()
            .respond_with(ResponseTemplate::new(200).set_body_json(investigation("RUNNING")))
            .up_to_n_times(running)
            .expect(running)
            .with_priority(1)
            .mount(server)
            .await;
    }
    get()
        .respond_with(ResponseTemplate::new(200).set_body_json(investigation(last)))
        .with_priority(2)
        .mount(server)
        .await;
}

fn list_body(kind: &str, max_results: u32, next_token: Option<&str>) -> Value {
    let mut body = json!({
        "GraphArn": GRAPH,
        "InvestigationId": INVESTIGATION,
        "IndicatorType": kind,
        "MaxResults": max_results,
    });
    if let Some(token) = next_token {
        body["NextToken"] = json!(token);
    }
    body
}

/// One expected ListIndicators page; `max_results` is what the bridge must ask for.
async fn mount_page(
    server: &MockServer,
    kind: &str,
    max_results: u32,
    next_token: Option<&str>,
    answer: Value,
    times: u64,
) {
    Mock::given(method("POST"))
        .and(path(LIST))
        .and(SignedForDetective)
        .and(body_json(list_body(kind, max_results, next_token)))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .expect(times)
        .mount(server)
        .await;
}

/// The single full-size page of `kind`.
async fn mount_list(server: &MockServer, kind: &str, next_token: Option<&str>, answer: Value) {
    mount_page(server, kind, 100, next_token, answer, 1).await;
}

fn page(indicators: Vec<Value>, next_token: Option<&str>) -> Value {
    let mut body =
        json!({"GraphArn": GRAPH, "InvestigationId": INVESTIGATION, "Indicators": indicators});
    if let Some(token) = next_token {
        body["NextToken"] = json!(token);
    }
    body
}

fn ttp(technique: &str) -> Value {
    json!({"IndicatorType": "TTP_OBSERVED", "IndicatorDetail": {"TTPsObservedDetail": {
        "Tactic": "Initial Access", "Technique": technique,
        "Procedure": "UnauthorizedAccess:IAMUser/ConsoleLoginSuccess.B",
        "IpAddress": "203.0.113.9", "APIName": "ConsoleLogin",
        "APISuccessCount": 3, "APIFailureCount": 1}}})
}

/// The happy path's indicators: one or more of each kind the bridge asks for by default.
async fn mount_all_indicators(server: &MockServer) {
    mount_list(
        server,
        "TTP_OBSERVED",
        None,
        page(vec![ttp("Valid Accounts")], None),
    )
    .await;
    mount_list(
        server,
        "IMPOSSIBLE_TRAVEL",
        None,
        page(
            vec![json!({"IndicatorType": "IMPOSSIBLE_TRAVEL", "IndicatorDetail": {"ImpossibleTravelDetail": {
                "StartingIpAddress": "203.0.113.9", "EndingIpAddress": "198.51.100.7",
                "StartingLocation": "Seattle, US", "EndingLocation": "Sao Paulo, BR",
                "HourlyTimeDelta": 2}}})],
            None,
        ),
    )
    .await;
    mount_list(
        server,
        "FLAGGED_IP_ADDRESS",
        None,
        page(
            vec![json!({"IndicatorType": "FLAGGED_IP_ADDRESS", "IndicatorDetail": {"FlaggedIpAddressDetail": {
                "IpAddress": "198.51.100.7", "Reason": "AWS_THREAT_INTELLIGENCE"}}})],
            None,
        ),
    )
    .await;
    mount_list(
        server,
        "NEW_GEOLOCATION",
        None,
        page(
            vec![json!({"IndicatorType": "NEW_GEOLOCATION", "IndicatorDetail": {"NewGeolocationDetail": {
                "Location": "Sao Paulo, BR", "IpAddress": "198.51.100.7", "IsNewForEntireAccount": true}}})],
            None,
        ),
    )
    .await;
    mount_list(
        server,
        "NEW_USER_AGENT",
        None,
        page(
            vec![json!({"IndicatorType": "NEW_USER_AGENT", "IndicatorDetail": {"NewUserAgentDetail": {
                "UserAgent": "python-requests/2.31 `[x](https://evil.example)`", "IsNewForEntireAccount": false}}})],
            None,
        ),
    )
    .await;
    mount_list(
        server,
        "RELATED_FINDING_GROUP",
        None,
        page(
            vec![json!({"IndicatorType": "RELATED_FINDING_GROUP", "IndicatorDetail": {"RelatedFindingGroupDetail": {
                "Id": "group-7f3a"}}})],
            None,
        ),
    )
    .await;
    mount_list(
        server,
        "RELATED_FINDING",
        None,
        page(
            vec![json!({"IndicatorType": "RELATED_FINDING", "IndicatorDetail": {"RelatedFindingDetail": {
                "Arn": "arn:aws:guardduty:us-east-1:444455556666:detector/d1/finding/f9",
                "Type": "Recon:IAMUser/MaliciousIPCaller", "IpAddress": "198.51.100.7"}}})],
            None,
        ),
    )
    .await;
}

fn access_denied() -> ResponseTemplate {
    ResponseTemplate::new(403)
        .insert_header("x-amzn-ErrorType", "AccessDeniedException")
        .set_body_json(json!({
            "__type": "AccessDeniedException",
            "Message": "User is not authorized to perform: detective:StartInvestigation",
            "ErrorCode": "NO_PERMISSION"
        }))
}

async fn requests_to(server: &MockServer, p: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == p)
        .count()
}

#[tokio::test]
async fn happy_path_sends_exact_requests_and_summarises_every_indicator() {
    let server = MockServer::start().await;
    let (finding, first, last) = access_key_finding();
    mount_start(&server, start_body(first, last)).await;
    mount_get(&server, 2, "SUCCESSFUL").await;
    mount_all_indicators(&server).await;

    let summary = investigator(&server, config(|_| {}))
        .await
        .investigate(&finding)
        .await
        .unwrap()
        .expect("alice is investigable");

    assert_eq!(summary.entity_arn, ALICE);
    assert_eq!(summary.investigation_id, INVESTIGATION);
    assert_eq!(summary.severity.as_deref(), Some("HIGH"));
    assert_eq!(summary.status, "SUCCESSFUL");
    assert_eq!(summary.state.as_deref(), Some("ACTIVE"));
    let kinds: Vec<IndicatorKind> = summary.indicators.iter().map(|i| i.kind).collect();
    assert_eq!(kinds, IndicatorKind::DEFAULT.to_vec());
    assert_eq!(
        summary.console_url,
        "https://us-east-1.console.aws.amazon.com/detective/home?region=us-east-1#investigations/000000000000000000001"
    );

    let md = summary.to_markdown();
    for expected in [
        "### Amazon Detective investigation: HIGH",
        &format!("`{ALICE}`"),
        "- **TTP observed:** `Initial Access` / `Valid Accounts`",
        "via `ConsoleLogin`: 3 succeeded, 1 failed from `203.0.113.9`",
        "- **Impossible travel:** `203.0.113.9` (`Seattle, US`) to `198.51.100.7` (`Sao Paulo, BR`) within 2 h",
        "- **Flagged IP address:** `198.51.100.7` (`AWS_THREAT_INTELLIGENCE`)",
        "- **New geolocation:** `Sao Paulo, BR` from `198.51.100.7` (new for the whole account)",
        "- **New user agent:** `python-requests/2.31 '[x](https://evil.example)'`",
        "- **Related finding group:** `group-7f3a`",
        "(`Recon:IAMUser/MaliciousIPCaller`)",
        "7 indicators",
        "[Open the investigation in the Detective console](https://us-east-1.console.aws.amazon.com/detective/home?region=us-east-1#investigations/000000000000000000001)",
    ] {
        assert!(md.contains(expected), "missing {expected:?} in:\n{md}");
    }
    assert!(!md.contains("and "), "nothing should be cut:\n{md}");
    // Two RUNNING answers, then SUCCESSFUL.
    assert_eq!(requests_to(&server, GET).await, 3);
}

#[tokio::test]
async fn indicators_are_read_across_pages_by_next_token() {
    let server = MockServer::start().await;
    let (finding, first, last) = access_key_finding();
    mount_start(&server, start_body(first, last)).await;
    mount_get(&server, 0, "SUCCESSFUL").await;
    // At most 5 TTPs, so pages of 5 (the same size on every page, as Detective requires): the
    // first brings 3, the second 3 more of which 2 are kept, and a third is never requested.
    let first_page: Vec<Value> = (0..3).map(|n| ttp(&format!("Technique {n}"))).collect();
    let second_page: Vec<Value> = (3..6).map(|n| ttp(&format!("Technique {n}"))).collect();
    mount_page(
        &server,
        "TTP_OBSERVED",
        5,
        None,
        page(first_page, Some("page-2")),
        1,
    )
    .await;
    mount_page(
        &server,
        "TTP_OBSERVED",
        5,
        Some("page-2"),
        page(second_page, Some("page-3")),
        1,
    )
    .await;
    mount_page(
        &server,
        "TTP_OBSERVED",
        5,
        Some("page-3"),
        page(vec![], None),
        0,
    )
    .await;

    let cfg = config(|c| {
        c.indicator_types = vec![IndicatorKind::TtpObserved];
        c.max_indicators_per_type = 5;
        c.max_comment_indicators = 3;
    });
    let summary = investigator(&server, cfg)
        .await
        .investigate(&finding)
        .await
        .unwrap()
        .unwrap();

    let techniques: Vec<&str> = summary.indicators.iter().map(|i| i.text.as_str()).collect();
    assert_eq!(techniques.len(), 5, "{techniques:#?}");
    assert!(
        !techniques.iter().any(|t| t.contains("Technique 5")),
        "{techniques:#?}"
    );
    for n in 0..5 {
        assert!(
            techniques[n].contains(&format!("`Technique {n}`")),
            "{techniques:#?}"
        );
    }
    let md = summary.to_markdown();
    assert!(md.contains("`Technique 2`"), "{md}");
    assert!(!md.contains("`Technique 3`"), "capped at 3 bullets:\n{md}");
    assert!(md.contains("- and 2 more"), "{md}");
}

#[tokio::test]
async fn an_investigation_that_keeps_running_times_out_after_max_wait() {
    let server = MockServer::start().await;
    let (finding, first, last) = access_key_finding();
    mount_start(&server, start_body(first, last)).await;
    mount_get(&server, 0, "RUNNING").await;

    let cfg = config(|c| {
        c.poll_interval = Duration::from_millis(20);
        c.max_wait = Duration::from_millis(300);
    });
    let began = std::time::Instant::now();
    let err = investigator(&server, cfg)
        .await
        .investigate(&finding)
        .await
        .unwrap_err();
    let took = began.elapsed();

    assert_eq!(err.kind(), "timeout", "{err}");
    assert!(
        matches!(&err, EnrichError::StillRunning { investigation_id, .. } if investigation_id == INVESTIGATION),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(300),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "not bounded: {took:?}");
    let polls = requests_to(&server, GET).await;
    assert!((5..=20).contains(&polls), "{polls} polls in {took:?}");
    assert_eq!(requests_to(&server, LIST).await, 0);
}

#[tokio::test]
async fn a_request_that_never_answers_is_cut_by_request_timeout() {
    let server = MockServer::start().await;
    let (finding, _, _) = access_key_finding();
    Mock::given(method("POST"))
        .and(path(START))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"InvestigationId": INVESTIGATION}))
                .set_delay(Duration::from_secs(30)),
        )
        .mount(&server)
        .await;

    let cfg = config(|c| c.request_timeout = Duration::from_millis(200));
    let began = std::time::Instant::now();
    let err = investigator(&server, cfg)
        .await
        .investigate(&finding)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "timeout", "{err}");
    assert!(began.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn access_denied_on_start_is_reported_as_such() {
    let server = MockServer::start().await;
    let (finding, _, _) = access_key_finding();
    Mock::given(method("POST"))
        .and(path(START))
        .respond_with(access_denied())
        .expect(1)
        .mount(&server)
        .await;

    let err = investigator(&server, config(|_| {}))
        .await
        .investigate(&finding)
        .await
        .unwrap_err();

    assert_eq!(err.kind(), "access_denied", "{err}");
    let text = err.to_string();
    assert!(text.contains("StartInvestigation"), "{text}");
    assert!(text.contains("not authorized"), "{text}");
    assert!(!text.contains("test-secret"), "{text}");
    assert_eq!(requests_to(&server, GET).await, 0);
}

#[tokio::test]
async fn a_failed_investigation_is_reported_without_listing_indicators() {
    let server = MockServer::start().await;
    let (finding, first, last) = access_key_finding();
    mount_start(&server, start_body(first, last)).await;
    mount_get(&server, 1, "FAILED").await;

    let err = investigator(&server, config(|_| {}))
        .await
        .investigate(&finding)
        .await
        .unwrap_err();

    assert_eq!(err.kind(), "failed", "{err}");
    assert_eq!(
        err,
        EnrichError::Failed {
            entity_arn: ALICE.to_owned(),
            investigation_id: INVESTIGATION.to_owned()
        }
    );
    assert_eq!(requests_to(&server, LIST).await, 0);
}

#[tokio::test]
async fn other_service_errors_are_api_errors() {
    let server = MockServer::start().await;
    let (finding, _, _) = access_key_finding();
    Mock::given(method("POST"))
        .and(path(START))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("x-amzn-ErrorType", "ValidationException")
                .set_body_json(json!({"__type": "ValidationException", "Message": "ScopeStartTime is invalid"})),
        )
        .mount(&server)
        .await;

    let err = investigator(&server, config(|_| {}))
        .await
        .investigate(&finding)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "api", "{err}");
    assert!(
        err.to_string().contains("ScopeStartTime is invalid"),
        "{err}"
    );
}

#[tokio::test]
async fn findings_without_an_iam_principal_make_no_request() {
    let server = MockServer::start().await;
    let bytes = std::fs::read("tests/fixtures/bare-asff.json").unwrap();
    let finding = decode(&bytes).unwrap().pop().unwrap();

    let outcome = investigator(&server, config(|_| {}))
        .await
        .investigate(&finding)
        .await
        .unwrap();
    assert_eq!(outcome, None);
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

fn fixture(name: &str) -> Finding {
    let bytes = std::fs::read(format!("tests/fixtures/{name}")).unwrap();
    decode(&bytes).unwrap().pop().unwrap()
}

#[test]
fn entities_come_from_users_roles_access_keys_and_ocsf_resources() {
    // ASFF role (custom action fixture).
    assert_eq!(
        investigable_entities(&fixture("custom-action.json")),
        vec!["arn:aws:iam::111122223333:role/ci-deploy".to_owned()]
    );
    // OCSF: the role's uid; the access key (uid only, no ARN) adds nothing.
    assert_eq!(
        investigable_entities(&fixture("ocsf-detection.json")),
        vec!["arn:aws:iam::444455556666:role/payments-api-instance-role".to_owned()]
    );
    // ASFF access key: principal from Details.
    assert_eq!(
        investigable_entities(&access_key_finding().0),
        vec![ALICE.to_owned()]
    );
    // No IAM principal at all.
    assert!(investigable_entities(&fixture("bare-asff.json")).is_empty());
}

#[test]
fn entities_are_deduplicated_and_access_key_fallbacks_apply() {
    let raw = json!({
        "SchemaVersion": "2018-10-08",
        "Id": "f-2",
        "ProductArn": "arn:aws:securityhub:us-gov-west-1::product/aws/guardduty",
        "GeneratorId": "g",
        "AwsAccountId": "444455556666",
        "Types": ["TTPs"],
        "CreatedAt": "2026-11-01T00:00:00Z",
        "UpdatedAt": "2026-11-01T00:00:00Z",
        "Severity": {"Label": "MEDIUM"},
        "Title": "t",
        "Description": "d",
        "Resources": [
            {"Type": "AwsIamUser", "Id": "arn:aws-us-gov:iam::444455556666:user/bob"},
            {"Type": "AwsIamAccessKey", "Id": "AKIA1", "Partition": "aws-us-gov",
             "Details": {"AwsIamAccessKey": {"UserName": "bob", "Status": "Active"}}},
            {"Type": "AwsIamAccessKey", "Id": "ASIA2", "Partition": "aws-us-gov",
             "Details": {"AwsIamAccessKey": {"PrincipalType": "AssumedRole", "PrincipalName": "deploy-session",
                 "SessionContext": {"SessionIssuer": {"Type": "Role",
                     "Arn": "arn:aws-us-gov:iam::555566667777:role/cross/deployer"}}}}},
            {"Type": "AwsIamAccessKey", "Id": "AKIA3",
             "Details": {"AwsIamAccessKey": {"PrincipalType": "Root", "PrincipalName": "root"}}},
            {"Type": "AwsIamGroup", "Id": "arn:aws-us-gov:iam::444455556666:group/admins"},
            {"Type": "Other", "Id": "arn:aws-us-gov:sts::444455556666:assumed-role/x/y"}
        ]
    });
    let finding = decode(raw.to_string().as_bytes()).unwrap().pop().unwrap();
    assert_eq!(
        investigable_entities(&finding),
        vec![
            "arn:aws-us-gov:iam::444455556666:user/bob".to_owned(),
            "arn:aws-us-gov:iam::555566667777:role/cross/deployer".to_owned(),
        ]
    );
}

// --- spawn_enrichment: the ticket comes first, enrichment follows in the background ---------

/// The bridge's process-wide recorder: the other modules of this test binary (`server`, `webhook`)
/// install it too, and a process has only one.
fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(findings_bridge::runtime::telemetry::install_metrics)
}

fn outcome_count(outcome: &str) -> u64 {
    let needle = format!("findings_bridge_detective_total{{outcome=\"{outcome}\"}} ");
    metrics()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn jira(server: &MockServer) -> Arc<JiraClient> {
    let mut cfg = JiraConfig::new(
        Url::parse(&server.uri()).unwrap(),
        JiraAuth::Bearer {
            pat: SecretString::from("pat-SECRET"),
        },
        JiraApiVersion::V2,
    );
    cfg.browse_base = Url::parse("https://jira.acme.test").unwrap();
    cfg.http = HttpSettings {
        rate_limit_per_sec: 0.0,
        ..HttpSettings::default()
    };
    Arc::new(JiraClient::with_clock(cfg, ManualClock::new()).unwrap())
}

async fn mount_jira(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/rest/api/2/issue"))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"id": "10007", "key": "SEC-7", "self": format!("{}/rest/api/2/issue/10007", server.uri())}),
        ))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/2/issue/SEC-7/comment"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1"})))
        .mount(server)
        .await;
}

/// What the lifecycle does: create the ticket, then hand the comment to the ticket client.
async fn create_then_enrich(
    server: &MockServer,
    cfg: DetectiveConfig,
    finding: Finding,
) -> (
    TicketRef,
    tokio::task::JoinHandle<()>,
    Arc<Mutex<Vec<String>>>,
) {
    let jira = jira(server);
    let ticket = jira
        .create(&json!({"fields": {"summary": finding.title}}), None)
        .await
        .unwrap();
    let posted = Arc::new(Mutex::new(Vec::new()));
    let investigator = Arc::new(investigator(server, cfg).await);
    let (client, target, log) = (jira.clone(), ticket.clone(), posted.clone());
    let post = move |comment: String| -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move {
            log.lock().unwrap().push(comment.clone());
            client
                .comment(&target, &comment)
                .await
                .map_err(|e| e.to_string())
        })
    };
    let handle = spawn_enrichment(investigator, finding, post);
    (ticket, handle, posted)
}

async fn comments(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/rest/api/2/issue/SEC-7/comment")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

#[tokio::test]
async fn spawned_enrichment_returns_at_once_and_comments_on_the_ticket() {
    let before = outcome_count("commented");
    let server = MockServer::start().await;
    mount_jira(&server).await;
    let (finding, first, last) = access_key_finding();
    mount_start(&server, start_body(first, last)).await;
    // The investigation takes a while: the caller must not wait for it.
    mount_get(&server, 10, "SUCCESSFUL").await;
    mount_all_indicators(&server).await;

    let (ticket, handle, posted) = create_then_enrich(
        &server,
        config(|c| c.poll_interval = Duration::from_millis(20)),
        finding,
    )
    .await;
    assert_eq!(ticket.key, "SEC-7");
    assert!(!handle.is_finished(), "enrichment ran in the caller's time");
    assert!(posted.lock().unwrap().is_empty());

    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .unwrap()
        .unwrap();
    let sent = comments(&server).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].contains("Amazon Detective investigation"),
        "{}",
        sent[0]
    );
    assert!(sent[0].contains("198.51.100.7"), "{}", sent[0]);
    assert!(
        sent[0].contains("#investigations/000000000000000000001"),
        "{}",
        sent[0]
    );
    assert!(outcome_count("commented") > before);
}

#[tokio::test]
async fn timed_out_enrichment_leaves_the_ticket_and_posts_nothing() {
    let before = outcome_count("timeout");
    let server = MockServer::start().await;
    mount_jira(&server).await;
    let (finding, first, last) = access_key_finding();
    mount_start(&server, start_body(first, last)).await;
    mount_get(&server, 0, "RUNNING").await;

    let cfg = config(|c| {
        c.poll_interval = Duration::from_millis(20);
        c.max_wait = Duration::from_millis(200);
    });
    let (ticket, handle, posted) = create_then_enrich(&server, cfg, finding).await;
    assert_eq!(ticket.key, "SEC-7");
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .unwrap()
        .unwrap();

    assert!(posted.lock().unwrap().is_empty());
    assert!(comments(&server).await.is_empty());
    assert!(outcome_count("timeout") > before);
}

#[tokio::test]
async fn denied_enrichment_leaves_the_ticket_and_posts_nothing() {
    let before = outcome_count("access_denied");
    let server = MockServer::start().await;
    mount_jira(&server).await;
    let (finding, _, _) = access_key_finding();
    Mock::given(method("POST"))
        .and(path(START))
        .respond_with(access_denied())
        .mount(&server)
        .await;

    let (ticket, handle, posted) = create_then_enrich(&server, config(|_| {}), finding).await;
    assert_eq!(ticket.key, "SEC-7");
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .unwrap()
        .unwrap();

    assert!(posted.lock().unwrap().is_empty());
    assert!(comments(&server).await.is_empty());
    assert!(outcome_count("access_denied") > before);
}
