//! ServiceNow Table API as the bridge meets it: create, encoded queries with `^^`, the resolve data
//! policy, paging, and OAuth tokens that expire.

mod common;

use std::time::Duration;

use common::*;
use findings_bridge_sim::SimConfig;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn create(
    c: &reqwest::Client,
    sim: &findings_bridge_sim::SimHandle,
    correlation: &str,
) -> serde_json::Value {
    let a = send(servicenow(c, sim, Method::POST, "/incident").json(&json!({
        "short_description": format!("finding {correlation}"),
        "description": "details",
        "urgency": "1",
        "impact": 2,
        "correlation_id": correlation,
        "correlation_display": "findings-bridge",
        "work_notes": "created by the bridge",
    })))
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    a.body["result"].clone()
}

fn is_sn_timestamp(s: &str) -> bool {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").is_ok()
}

#[tokio::test]
async fn create_returns_the_whole_record_and_can_be_queried() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let rec = create(&c, &sim, "fb-1").await;
    assert_eq!(rec["number"], "INC0010001");
    assert_eq!(rec["state"], "1");
    assert_eq!(rec["priority"], "2", "urgency 1 + impact 2 → priority 2");
    assert_eq!(rec["impact"], "2", "values come back as strings");
    assert_eq!(rec["correlation_id"], "fb-1");
    assert_eq!(rec["correlation_display"], "findings-bridge");
    assert_eq!(rec["work_notes"], "", "journal fields read back empty");
    assert_eq!(rec["sys_id"].as_str().map(str::len), Some(32));
    assert!(is_sn_timestamp(
        rec["sys_updated_on"].as_str().unwrap_or_default()
    ));
    assert_eq!(create(&c, &sim, "fb-2").await["number"], "INC0010002");

    let sys_id = rec["sys_id"].as_str().unwrap_or_default();
    let a = send(servicenow(
        &c,
        &sim,
        Method::GET,
        &format!("/incident/{sys_id}"),
    ))
    .await;
    assert_eq!(a.body["result"]["correlation_id"], "fb-1");
    let a = send(servicenow(&c, &sim, Method::GET, "/incident/0000")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.body["status"], "failure");

    let a = send(servicenow(
        &c,
        &sim,
        Method::GET,
        &format!(
            "/incident?sysparm_query={}&sysparm_fields=sys_id,number",
            enc("correlation_id=fb-2^active=true")
        ),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body["result"],
        json!([{"number": "INC0010002", "sys_id": a.body["result"][0]["sys_id"]}])
    );
    let journal = sim
        .state
        .servicenow_record("incident", sys_id)
        .map(|r| r.journal)
        .unwrap_or_default();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].value, "created by the bridge");

    // Any table works, with its own numbering.
    let a = send(
        servicenow(&c, &sim, Method::POST, "/sn_si_incident")
            .json(&json!({"short_description": "x"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = send(
        servicenow(&c, &sim, Method::POST, "/incident")
            .json(&json!({"correlation_id": "x".repeat(101)})),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "correlation_id is limited to 100 characters"
    );
    let a =
        send(servicenow(&c, &sim, Method::POST, "/incident").json(&json!({"urgency": "4"}))).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn doubled_caret_matches_a_literal_caret_and_or_is_refused() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    create(&c, &sim, "team^ORcorrelation_id=fb-x").await;
    create(&c, &sim, "team").await;
    create(&c, &sim, "fb-x").await;
    let query = |q: &str| {
        send(servicenow(
            &c,
            &sim,
            Method::GET,
            &format!("/incident?sysparm_query={}", enc(q)),
        ))
    };
    let a = query("correlation_id=team^^ORcorrelation_id=fb-x").await;
    assert_eq!(a.status, StatusCode::OK);
    let found: Vec<&str> = a.body["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| x["correlation_id"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(found, ["team^ORcorrelation_id=fb-x"]);
    // Unescaped, the same value would be an OR: the simulator refuses it rather than widen.
    let a = query("correlation_id=team^ORcorrelation_id=fb-x").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = query("correlation_id=team^NQstate=1").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn resolving_requires_close_code_and_notes() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let rec = create(&c, &sim, "fb-r").await;
    let sys_id = rec["sys_id"].as_str().unwrap_or_default().to_owned();
    let path = format!("/incident/{sys_id}");
    let a = send(
        servicenow(&c, &sim, Method::PATCH, &path)
            .json(&json!({"state": "6", "close_notes": "fixed"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.body["error"]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("Resolution code")
    );
    assert_eq!(
        sim.state
            .servicenow_record("incident", &sys_id)
            .and_then(|r| r.get("state").map(str::to_owned))
            .as_deref(),
        Some("1"),
        "a refused update changes nothing"
    );

    let a = send(servicenow(&c, &sim, Method::PATCH, &path).json(&json!({
        "state": "6", "close_code": "Solved (Permanently)", "close_notes": "Finding resolved in Security Hub",
        "work_notes": "Security Hub reports the finding RESOLVED",
    }))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["result"]["state"], "6");
    assert!(is_sn_timestamp(
        a.body["result"]["resolved_at"].as_str().unwrap_or_default()
    ));
    assert_eq!(a.body["result"]["sys_mod_count"], "1");
    let journal = sim
        .state
        .servicenow_record("incident", &sys_id)
        .map(|r| r.journal)
        .unwrap_or_default();
    assert_eq!(
        journal.iter().map(|j| j.value.as_str()).collect::<Vec<_>>(),
        [
            "created by the bridge",
            "Security Hub reports the finding RESOLVED"
        ]
    );

    // Reopening needs nothing extra.
    let a = send(servicenow(&c, &sim, Method::PATCH, &path).json(&json!({"state": "2"}))).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send(servicenow(&c, &sim, Method::PATCH, &path).json(&json!({"state": "42"}))).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_human_resolution_shows_up_in_an_updated_since_poll() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let rec = create(&c, &sim, "fb-h").await;
    create(&c, &sim, "fb-other").await;
    let sys_id = rec["sys_id"].as_str().unwrap_or_default();
    let watermark = rec["sys_updated_on"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = send(
        c.post(format!(
            "{}/_sim/servicenow/incident/{sys_id}/state",
            sim.base_url
        ))
        .json(&json!({"state": "6"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let q = format!(
        "correlation_display=findings-bridge^sys_updated_on>{watermark}^ORDERBYsys_updated_on"
    );
    let a = send(servicenow(
        &c,
        &sim,
        Method::GET,
        &format!("/incident?sysparm_query={}", enc(&q)),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let result = a.body["result"].as_array().cloned().unwrap_or_default();
    assert_eq!(result.len(), 1, "{result:?}");
    assert_eq!(result[0]["state"], "6");
    assert!(
        !result[0]["close_code"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    let a = send(
        c.post(format!(
            "{}/_sim/servicenow/incident/nope/state",
            sim.base_url
        ))
        .json(&json!({"state": "6"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn paging_with_limit_offset_and_order() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    for i in 0..5 {
        create(&c, &sim, &format!("fb-p{i}")).await;
    }
    let mut numbers = Vec::new();
    for (offset, expect) in [(0, 2), (2, 2), (4, 1)] {
        let a = send(servicenow(&c, &sim, Method::GET, &format!(
            "/incident?sysparm_query={}&sysparm_limit=2&sysparm_offset={offset}&sysparm_fields=number",
            enc("correlation_display=findings-bridge^ORDERBYDESCnumber")
        ))).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(
            a.headers.get("X-Total-Count").and_then(|v| v.to_str().ok()),
            Some("5")
        );
        let page = a.body["result"].as_array().cloned().unwrap_or_default();
        assert_eq!(page.len(), expect);
        numbers.extend(
            page.iter()
                .filter_map(|r| r["number"].as_str().map(str::to_owned)),
        );
    }
    assert_eq!(
        numbers,
        [
            "INC0010005",
            "INC0010004",
            "INC0010003",
            "INC0010002",
            "INC0010001"
        ]
    );
    let a = send(servicenow(
        &c,
        &sim,
        Method::GET,
        "/incident?sysparm_limit=lots",
    ))
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

async fn token(
    c: &reqwest::Client,
    sim: &findings_bridge_sim::SimHandle,
    secret: &str,
) -> common::Answer {
    send(
        c.post(format!("{}/oauth_token.do", sim.base_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&client_id=sim-client&client_secret={}",
                enc(secret)
            )),
    )
    .await
}

#[tokio::test]
async fn oauth_tokens_work_until_they_expire() {
    let sim = start(SimConfig {
        servicenow_token_ttl: Duration::from_millis(600),
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let a = token(&c, &sim, "wrong").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = token(&c, &sim, "sim-client-secret").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["token_type"], "Bearer");
    assert!(a.body["expires_in"].is_u64());
    let bearer = a.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let list = || {
        send(
            c.get(format!("{}/api/now/table/incident", sim.base_url))
                .bearer_auth(&bearer),
        )
    };
    assert_eq!(list().await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let a = list().await;
    assert_eq!(
        a.status,
        StatusCode::UNAUTHORIZED,
        "an expired token must be refused"
    );
    assert_eq!(a.body["error"]["message"], "User Not Authenticated");

    // A fresh token works again, until the test expires all of them.
    let fresh = token(&c, &sim, "sim-client-secret").await.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(fresh, bearer);
    let with_fresh = || {
        send(
            c.get(format!("{}/api/now/table/incident", sim.base_url))
                .bearer_auth(&fresh),
        )
    };
    assert_eq!(with_fresh().await.status, StatusCode::OK);
    sim.state.expire_oauth_tokens();
    assert_eq!(with_fresh().await.status, StatusCode::UNAUTHORIZED);

    let a = send(c.post(format!("{}/oauth_token.do", sim.base_url)).body(
        "grant_type=authorization_code&client_id=sim-client&client_secret=sim-client-secret",
    ))
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn basic_auth_failures_are_401() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let url = format!("{}/api/now/table/incident", sim.base_url);
    for req in [
        c.get(&url),
        c.get(&url).basic_auth(SN_USER, Some("nope")),
        c.get(&url).bearer_auth("never-issued"),
        c.post(&url).json(&json!({"short_description": "x"})),
    ] {
        let a = send(req).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    assert!(sim.state.servicenow_records().is_empty());
}

#[tokio::test]
async fn work_notes_read_back_as_journal_text_with_display_values() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let rec = create(&c, &sim, "fb-notes").await;
    let sys_id = rec["sys_id"].as_str().unwrap_or_default().to_owned();
    let path = format!("/incident/{sys_id}");
    for note in [
        "Severity changed from HIGH to CRITICAL.",
        "The finding is resolved.",
    ] {
        let a = send(servicenow(&c, &sim, Method::PATCH, &path).json(&json!({"work_notes": note})))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(
            a.body["result"]["work_notes"], "",
            "stored values: journal reads empty"
        );
    }
    let a = send(servicenow(
        &c,
        &sim,
        Method::GET,
        &format!("{path}?sysparm_fields=work_notes&sysparm_display_value=true"),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.body["result"].as_object().map(|o| o.len()),
        Some(1),
        "only the asked-for field"
    );
    let text = a.body["result"]["work_notes"].as_str().unwrap_or_default();
    let entries: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(entries.len(), 3, "{text:?}");
    let bodies: Vec<&str> = entries
        .iter()
        .map(|e| {
            let (header, body) = e.split_once('\n').unwrap_or_default();
            let (date, rest) = header.split_once(" - ").unwrap_or_default();
            assert!(is_sn_timestamp(date), "{header:?}");
            assert_eq!(rest, "sim (Work notes)");
            body
        })
        .collect();
    assert_eq!(
        bodies,
        [
            "The finding is resolved.",
            "Severity changed from HIGH to CRITICAL.",
            "created by the bridge"
        ],
        "newest first"
    );
    assert!(text.ends_with("\n\n"));

    // `all` (what the bridge's poll asks for): value and display value of every field; choice
    // fields show their label, as real ServiceNow does.
    let a = send(servicenow(
        &c,
        &sim,
        Method::GET,
        &format!("{path}?sysparm_fields=state,work_notes&sysparm_display_value=all"),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.body["result"]["state"],
        json!({"value": "1", "display_value": "New"})
    );
    assert_eq!(a.body["result"]["work_notes"]["value"], "");
    assert_eq!(a.body["result"]["work_notes"]["display_value"], text);

    let a = send(servicenow(
        &c,
        &sim,
        Method::GET,
        &format!("{path}?sysparm_fields=work_notes&sysparm_display_value=yes"),
    ))
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_bridge_marker_query_finds_records_in_creation_order() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let first = create(&c, &sim, "fb-twice").await;
    create(&c, &sim, "fb-else").await;
    let second = create(&c, &sim, "fb-twice").await;
    let q =
        enc("correlation_id=fb-twice^correlation_display=findings-bridge^ORDERBYsys_created_on");
    let a = send(servicenow(
        &c,
        &sim,
        Method::GET,
        &format!("/incident?sysparm_query={q}&sysparm_fields=sys_id,state&sysparm_limit=50"),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let ids: Vec<&str> = a.body["result"]
        .as_array()
        .map(|r| r.iter().filter_map(|x| x["sys_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        ids,
        [
            first["sys_id"].as_str().unwrap_or_default(),
            second["sys_id"].as_str().unwrap_or_default()
        ]
    );

    // The operator view: correlation_id as marker, resolved counts as done, notes as comments.
    let sys_id = first["sys_id"].as_str().unwrap_or_default();
    let a = send(
        c.post(format!(
            "{}/_sim/servicenow/incident/{sys_id}/state",
            sim.base_url
        ))
        .json(&json!({"state": "6"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send(c.get(format!("{}/_sim/tickets?view=summary", sim.base_url))).await;
    let t = &a.body["tickets"][0];
    assert_eq!(t["system"], "servicenow");
    assert_eq!(t["marker"], "fb-twice");
    assert_eq!(t["number"], "INC0010001");
    assert_eq!(t["done"], true);
    assert_eq!(t["comment_count"], 1);
    assert_eq!(a.body["tickets"][1]["done"], false);
}

#[tokio::test]
async fn a_deleted_record_answers_404_and_is_listed_no_more() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let created = send(
        c.post(format!("{}/api/now/table/incident", sim.base_url))
            .basic_auth(SN_USER, Some(SN_PASSWORD))
            .json(&serde_json::json!({"short_description": "x", "correlation_display": "findings-bridge"})),
    )
    .await;
    assert_eq!(
        created.status,
        reqwest::StatusCode::CREATED,
        "{}",
        created.body
    );
    let sys_id = created.body["result"]["sys_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    sim.state
        .delete_servicenow_record("incident", &sys_id)
        .expect("the record exists");
    let read = send(
        c.get(format!("{}/api/now/table/incident/{sys_id}", sim.base_url))
            .basic_auth(SN_USER, Some(SN_PASSWORD)),
    )
    .await;
    assert_eq!(read.status, reqwest::StatusCode::NOT_FOUND);
    let listed = send(
        c.get(format!(
            "{}/api/now/table/incident?sysparm_query=correlation_display%3Dfindings-bridge",
            sim.base_url
        ))
        .basic_auth(SN_USER, Some(SN_PASSWORD)),
    )
    .await;
    assert_eq!(listed.body["result"], serde_json::json!([]));
    assert!(matches!(
        sim.state.delete_servicenow_record("incident", &sys_id),
        Err(findings_bridge_sim::SimError::NoSuchRecord { .. })
    ));
}
