//! Faults that are a connection's or a rule's, not a request's: credentials refused for a while
//! (`refuse_credentials_ms`), and Jira projects or ServiceNow tables that are gone
//! (`gone_projects`, `gone_tables`), together with the endpoints the bridge probes them with
//! (Jira `myself` and `project/{key}`, a one-record ServiceNow table read).

mod common;

use std::time::{Duration, Instant};

use common::*;
use findings_bridge_sim::{Faults, RefuseCredentials, SimConfig, SimHandle, System};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `POST /_sim/faults`, as a harness sets faults at runtime.
async fn set_faults(c: &reqwest::Client, sim: &SimHandle, faults: Value) -> Answer {
    send(
        c.post(format!("{}/_sim/faults", sim.base_url))
            .json(&faults),
    )
    .await
}

/// Polls `request` until it answers `status`; fails the test after 10 s (a bound, not a timing
/// assertion: the refusals in these tests last a few hundred milliseconds).
async fn until_status(
    what: &str,
    status: StatusCode,
    mut request: impl AsyncFnMut() -> Answer,
) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = request().await;
        if answer.status == status {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {} ({}) after 10 s",
            answer.status,
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn issue_in(project: &str) -> Value {
    json!({"fields": {
        "project": {"key": project},
        "issuetype": {"name": "Bug"},
        "summary": "a finding",
        "description": adf("details"),
    }})
}

async fn token(c: &reqwest::Client, sim: &SimHandle) -> Answer {
    send(
        c.post(format!("{}/oauth_token.do", sim.base_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&client_id=sim-client&client_secret=sim-client-secret"),
    )
    .await
}

#[tokio::test]
async fn myself_and_project_answer_with_the_configured_credentials_only() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    for ver in ["3", "2"] {
        let me = send(
            c.get(format!("{}/rest/api/{ver}/myself", sim.base_url))
                .basic_auth(EMAIL, Some(TOKEN)),
        )
        .await;
        assert_eq!(me.status, StatusCode::OK, "v{ver}: {}", me.body);
        assert_eq!(me.body["emailAddress"], EMAIL);
        assert_eq!(me.body["active"], true);
        assert!(me.body["accountId"].as_str().is_some_and(|a| !a.is_empty()));
    }
    let me = send(jira2(&c, &sim, Method::GET, "/myself")).await;
    assert_eq!(me.status, StatusCode::OK, "the PAT works on v2");

    let project = send(jira3(&c, &sim, Method::GET, "/project/SEC")).await;
    assert_eq!(project.status, StatusCode::OK, "{}", project.body);
    assert_eq!(project.body["key"], "SEC");
    assert!(
        project.body["issueTypes"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "Bug"))
    );
    let lower = send(jira2(&c, &sim, Method::GET, "/project/sec")).await;
    assert_eq!(lower.status, StatusCode::OK, "keys are case-insensitive");
    assert_eq!(lower.body["key"], "SEC");
    let unknown = send(jira3(&c, &sim, Method::GET, "/project/9NOPE")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.body["errorMessages"][0],
        "No project could be found with key '9NOPE'."
    );

    for path in ["myself", "project/SEC"] {
        let anonymous = send(c.get(format!("{}/rest/api/3/{path}", sim.base_url))).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{path}");
        let wrong = send(
            c.get(format!("{}/rest/api/3/{path}", sim.base_url))
                .basic_auth(EMAIL, Some("not-the-token")),
        )
        .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn refused_jira_credentials_answer_401_everywhere_until_the_time_is_up() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let key = create_issue(&c, &sim, "before the refusal", &["fb-1"]).await;
    let set = set_faults(&c, &sim, json!({"refuse_credentials_ms": {"jira": 400}})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(
        set.body["refuse_credentials_ms"],
        json!({"jira": 400, "servicenow": 0})
    );
    assert!(sim.state.credentials_refused(System::Jira).is_some());
    assert_eq!(sim.state.credentials_refused(System::ServiceNow), None);

    let jira_body = json!({
        "errorMessages": ["You are not authenticated. Authentication required to perform this operation."],
        "errors": {},
    });
    let mut refused = 0;
    for req in [
        jira3(&c, &sim, Method::GET, "/myself"),
        jira2(&c, &sim, Method::GET, "/myself"),
        jira3(&c, &sim, Method::GET, "/project/SEC"),
        jira3(&c, &sim, Method::GET, &format!("/issue/{key}")),
        jira3(&c, &sim, Method::POST, "/issue").json(&issue_in("SEC")),
        jira3(&c, &sim, Method::POST, "/search/jql")
            .json(&json!({"jql": "labels = \"fb-1\"", "fields": ["labels"]})),
    ] {
        let a = send(req).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        assert_eq!(a.body, jira_body);
        refused += 1;
    }
    // The other system and the operator views are untouched.
    let sn = send(servicenow(
        &c,
        &sim,
        Method::GET,
        "/incident?sysparm_limit=1",
    ))
    .await;
    assert_eq!(sn.status, StatusCode::OK, "{}", sn.body);
    let stats = send(c.get(format!("{}/_sim/stats", sim.base_url))).await;
    assert_eq!(stats.status, StatusCode::OK);
    assert_eq!(stats.body["faults"]["refused_401"], refused);
    assert_eq!(sim.state.jira_issues().len(), 1, "nothing was created");

    let me = until_status("Jira after the refusal", StatusCode::OK, async || {
        send(jira3(&c, &sim, Method::GET, "/myself")).await
    })
    .await;
    assert_eq!(me.body["emailAddress"], EMAIL);
    assert_eq!(sim.state.credentials_refused(System::Jira), None);
    assert_eq!(
        send(jira3(&c, &sim, Method::GET, &format!("/issue/{key}")))
            .await
            .status,
        StatusCode::OK
    );
    create_issue(&c, &sim, "after the refusal", &["fb-2"]).await;
}

#[tokio::test]
async fn refused_servicenow_credentials_refuse_basic_tokens_and_the_token_endpoint() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let before = token(&c, &sim).await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.body);
    let old_token = before.body["access_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let with_old = async || {
        send(
            c.get(format!(
                "{}/api/now/table/incident?sysparm_limit=1",
                sim.base_url
            ))
            .bearer_auth(&old_token),
        )
        .await
    };
    assert_eq!(with_old().await.status, StatusCode::OK);

    sim.state
        .set_faults(Faults {
            refuse_credentials: RefuseCredentials {
                servicenow: Duration::from_millis(400),
                ..RefuseCredentials::default()
            },
            ..Faults::none()
        })
        .expect("valid faults");
    let sn_body = json!({
        "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
        "status": "failure",
    });
    for req in [
        servicenow(&c, &sim, Method::GET, "/incident?sysparm_limit=1"),
        servicenow(&c, &sim, Method::POST, "/incident").json(&json!({"short_description": "x"})),
        servicenow(&c, &sim, Method::GET, "/sn_si_incident?sysparm_limit=1"),
    ] {
        let a = send(req).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.body, sn_body);
    }
    let a = with_old().await;
    assert_eq!((a.status, &a.body), (StatusCode::UNAUTHORIZED, &sn_body));
    let refused_token = token(&c, &sim).await;
    assert_eq!(refused_token.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused_token.body["error"], "invalid_client");
    // Jira is untouched.
    assert_eq!(
        send(jira3(&c, &sim, Method::GET, "/myself")).await.status,
        StatusCode::OK
    );
    assert!(sim.state.servicenow_records().is_empty());

    until_status("ServiceNow after the refusal", StatusCode::OK, async || {
        send(servicenow(
            &c,
            &sim,
            Method::GET,
            "/incident?sysparm_limit=1",
        ))
        .await
    })
    .await;
    assert_eq!(
        with_old().await.status,
        StatusCode::UNAUTHORIZED,
        "a token issued before the refusal stays revoked"
    );
    let fresh = token(&c, &sim).await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.body);
    let fresh = fresh.body["access_token"].as_str().expect("a token");
    let a = send(
        c.get(format!(
            "{}/api/now/table/incident?sysparm_limit=1",
            sim.base_url
        ))
        .bearer_auth(fresh),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn a_gone_jira_project_refuses_creates_and_answers_404_until_it_is_back() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let set = set_faults(&c, &sim, json!({"gone_projects": ["PAY"]})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);

    for create in [
        jira3(&c, &sim, Method::POST, "/issue").json(&issue_in("PAY")),
        jira2(&c, &sim, Method::POST, "/issue").json(&json!({"fields": {
            "project": {"key": "PAY"}, "issuetype": {"name": "Bug"}, "summary": "v2",
        }})),
    ] {
        let a = send(create).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            a.body,
            json!({"errorMessages": [], "errors": {"project": "valid project is required"}})
        );
    }
    for key in ["PAY", "pay"] {
        let a = send(jira3(&c, &sim, Method::GET, &format!("/project/{key}"))).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{key}");
        assert_eq!(
            a.body["errorMessages"][0],
            "No project could be found with key 'PAY'."
        );
    }
    // Other projects are there.
    assert_eq!(
        send(jira3(&c, &sim, Method::GET, "/project/SEC"))
            .await
            .status,
        StatusCode::OK
    );
    create_issue(&c, &sim, "elsewhere", &[]).await;
    assert_eq!(sim.state.stats().faults.target_gone, 4);
    assert!(
        sim.state.jira_issues().iter().all(|i| i.project == "SEC"),
        "nothing was created in PAY"
    );

    // Replacing the faults brings the project back.
    assert_eq!(set_faults(&c, &sim, json!({})).await.status, StatusCode::OK);
    assert_eq!(
        send(jira3(&c, &sim, Method::GET, "/project/PAY"))
            .await
            .status,
        StatusCode::OK
    );
    let a = send(jira3(&c, &sim, Method::POST, "/issue").json(&issue_in("PAY"))).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["key"], "PAY-1");
}

#[tokio::test]
async fn a_gone_servicenow_table_answers_invalid_table_on_every_request_until_it_is_back() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let created = send(
        servicenow(&c, &sim, Method::POST, "/sn_si_incident")
            .json(&json!({"short_description": "before"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let sys_id = created.body["result"]["sys_id"]
        .as_str()
        .expect("a sys_id")
        .to_owned();

    sim.state
        .set_faults(Faults {
            gone_tables: vec!["sn_si_incident".to_owned()],
            ..Faults::none()
        })
        .expect("valid faults");
    let invalid = json!({
        "error": {"message": "Invalid table sn_si_incident", "detail": null},
        "status": "failure",
    });
    let record = format!("/sn_si_incident/{sys_id}");
    for req in [
        servicenow(&c, &sim, Method::POST, "/sn_si_incident")
            .json(&json!({"short_description": "while gone"})),
        servicenow(&c, &sim, Method::GET, "/sn_si_incident?sysparm_limit=1"),
        servicenow(&c, &sim, Method::GET, &record),
        servicenow(&c, &sim, Method::PATCH, &record).json(&json!({"state": "2"})),
    ] {
        let a = send(req).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(a.body, invalid);
    }
    assert_eq!(sim.state.stats().faults.target_gone, 4);
    // Other tables work.
    let other = send(
        servicenow(&c, &sim, Method::POST, "/incident").json(&json!({"short_description": "x"})),
    )
    .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
    assert_eq!(sim.state.servicenow_records().len(), 2);

    sim.state.set_faults(Faults::none()).expect("valid faults");
    let a = send(servicenow(&c, &sim, Method::GET, &record)).await;
    assert_eq!(a.status, StatusCode::OK, "the record is back: {}", a.body);
    assert_eq!(a.body["result"]["short_description"], "before");
    let a = send(
        servicenow(&c, &sim, Method::POST, "/sn_si_incident")
            .json(&json!({"short_description": "after"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
}

#[tokio::test]
async fn the_fault_set_is_replaced_whole_and_unknown_fields_are_refused() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let set = set_faults(
        &c,
        &sim,
        json!({
            "refuse_credentials_ms": {"jira": 60000, "servicenow": 30000},
            "gone_projects": ["PAY"],
            "gone_tables": ["sn_si_incident"],
        }),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let now = send(c.get(format!("{}/_sim/faults", sim.base_url))).await;
    assert_eq!(
        now.body["refuse_credentials_ms"],
        json!({"jira": 60000, "servicenow": 30000})
    );
    assert_eq!(now.body["gone_projects"], json!(["PAY"]));
    assert_eq!(now.body["gone_tables"], json!(["sn_si_incident"]));
    assert!(sim.state.credentials_refused(System::ServiceNow).is_some());

    for bad in [
        json!({"refuse_credentials_ms": {"jira": 1000, "securityhub": 1000}}),
        json!({"refuse_credentials": {"jira": 1000}}),
        json!({"refuse_credentials_ms": {"jira": "a minute"}}),
        json!({"gone_projects": [""]}),
        json!({"gone_tables": "incident"}),
        json!({"gone_project": ["PAY"]}),
    ] {
        let a = set_faults(&c, &sim, bad.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}: {}", a.body);
    }
    assert_eq!(
        sim.state.faults().gone_projects,
        ["PAY"],
        "a refused setting changes nothing"
    );

    // Any other setting replaces the whole set: the refusals and gone targets are over.
    let set = set_faults(&c, &sim, json!({"latency_ms": 0})).await;
    assert_eq!(set.status, StatusCode::OK);
    assert_eq!(
        set.body["refuse_credentials_ms"],
        json!({"jira": 0, "servicenow": 0})
    );
    assert_eq!(set.body["gone_projects"], json!([]));
    assert_eq!(set.body["gone_tables"], json!([]));
    assert_eq!(sim.state.credentials_refused(System::Jira), None);
    assert_eq!(
        send(jira3(&c, &sim, Method::GET, "/project/PAY"))
            .await
            .status,
        StatusCode::OK
    );
}
