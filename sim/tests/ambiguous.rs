//! Ambiguous creates (the ticket is committed, the answer is lost: 502, a reset connection, or
//! an answer after the client gave up) and Jira's search lag, set at runtime: the two faults that
//! make "exactly one ticket" hard.

mod common;

use std::error::Error as _;
use std::time::{Duration, Instant};

use common::*;
use findings_bridge_sim::{AmbiguousMode, Faults, SimConfig, SimHandle};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const HOUR_MS: u64 = 3_600_000;

fn ambiguous(rate: f64, mode: AmbiguousMode) -> Faults {
    Faults {
        ambiguous_create_rate: rate,
        ambiguous_create_mode: mode,
        // Far beyond any client timeout used here, so "the client gave up first" is certain.
        ambiguous_late: Duration::from_secs(600),
        ..Faults::default()
    }
}

fn issue_body(summary: &str, labels: &[&str]) -> Value {
    json!({"fields": {
        "project": {"key": "SEC"},
        "issuetype": {"name": "Bug"},
        "summary": summary,
        "description": adf("details"),
        "labels": labels,
    }})
}

fn incident_body(correlation: &str) -> Value {
    json!({
        "short_description": format!("finding {correlation}"),
        "correlation_id": correlation,
        "correlation_display": "findings-bridge",
    })
}

async fn set_faults(c: &Client, sim: &SimHandle, body: Value) -> Value {
    let a = send(c.post(format!("{}/_sim/faults", sim.base_url)).json(&body)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body
}

/// v3 `search/jql` as the bridge sends it for a marker.
async fn search_v3(c: &Client, sim: &SimHandle, marker: &str) -> Vec<String> {
    let jql = format!(r#"labels = "{marker}" AND labels = "findings-bridge" ORDER BY created ASC"#);
    let a = send(
        jira3(c, sim, Method::POST, "/search/jql")
            .json(&json!({"jql": jql, "fields": ["labels", "status"], "maxResults": 50})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    keys(&a.body)
}

/// v2 `search` (GET, Data Center) for the same query.
async fn search_v2(c: &Client, sim: &SimHandle, marker: &str) -> Vec<String> {
    let jql = format!(r#"labels = "{marker}" AND labels = "findings-bridge" ORDER BY created ASC"#);
    let a = send(jira2(
        c,
        sim,
        Method::GET,
        &format!("/search?jql={}&maxResults=50&fields=labels", enc(&jql)),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["total"].as_u64(), Some(keys(&a.body).len() as u64));
    keys(&a.body)
}

fn keys(body: &Value) -> Vec<String> {
    body["issues"]
        .as_array()
        .map(|issues| {
            issues
                .iter()
                .filter_map(|i| i["key"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every error in the chain, so a test can tell a reset from a timeout whatever reqwest wraps.
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(" / ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[tokio::test]
async fn a_502_create_is_committed_and_searchable_after_the_lag() {
    let sim = start(SimConfig {
        faults: Faults {
            search_delay: Duration::from_millis(HOUR_MS),
            ..ambiguous(1.0, AmbiguousMode::BadGateway)
        },
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let marker = "fb-0000000000000000000000000000aaaa";
    let resp = jira3(&c, &sim, Method::POST, "/issue")
        .json(&issue_body("lost answer", &[marker, "findings-bridge"]))
        .send()
        .await
        .expect("a 502 is an answer");
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/html")
    );
    let page = resp.text().await.expect("the gateway page");
    assert!(page.contains("502 Bad Gateway"), "{page}");

    // The issue exists and direct reads see it at once; search does not, yet.
    let issues = sim.state.jira_issues();
    assert_eq!(issues.len(), 1);
    let key = issues[0].key.clone();
    assert_eq!(
        send(jira3(&c, &sim, Method::GET, &format!("/issue/{key}")))
            .await
            .status,
        StatusCode::OK
    );
    assert!(search_v3(&c, &sim, marker).await.is_empty());
    assert!(search_v2(&c, &sim, marker).await.is_empty());

    // The index catches up (the lag is set to zero at runtime): both search APIs find it.
    set_faults(&c, &sim, json!({"search_delay_ms": 0})).await;
    assert_eq!(
        search_v3(&c, &sim, marker).await,
        std::slice::from_ref(&key)
    );
    assert_eq!(search_v2(&c, &sim, marker).await, [key]);
    assert_eq!(sim.state.stats().faults.ambiguous_502, 1);
    assert_eq!(sim.state.stats().faults.ambiguous_creates(), 1);
}

#[tokio::test]
async fn a_servicenow_create_answered_502_is_found_by_correlation_id_at_once() {
    let sim = start(SimConfig {
        faults: ambiguous(1.0, AmbiguousMode::BadGateway),
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let a =
        send(servicenow(&c, &sim, Method::POST, "/incident").json(&incident_body("fb-sn-1"))).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    set_faults(&c, &sim, json!({})).await;
    // ServiceNow is read-after-write consistent: the marker query sees the record immediately.
    let q = enc("correlation_id=fb-sn-1^correlation_display=findings-bridge^ORDERBYsys_created_on");
    let a = send(servicenow(
        &c,
        &sim,
        Method::GET,
        &format!("/incident?sysparm_query={q}&sysparm_fields=sys_id,number,correlation_id"),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["result"].as_array().map(Vec::len), Some(1));
    assert_eq!(a.body["result"][0]["correlation_id"], "fb-sn-1");
}

#[tokio::test]
async fn close_resets_the_connection_after_the_create_committed() {
    let sim = start(SimConfig {
        faults: ambiguous(1.0, AmbiguousMode::Close),
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let err = jira3(&c, &sim, Method::POST, "/issue")
        .json(&issue_body("cut", &["fb-cut"]))
        .send()
        .await
        .expect_err("no answer at all");
    assert!(!err.is_timeout(), "{}", error_chain(&err));
    assert!(err.status().is_none(), "not even a status line");
    let chain = error_chain(&err).to_lowercase();
    assert!(
        chain.contains("reset") || chain.contains("closed") || chain.contains("incomplete"),
        "{chain}"
    );
    assert_eq!(sim.state.jira_issues().len(), 1, "committed before the cut");

    let err = servicenow(&c, &sim, Method::POST, "/incident")
        .json(&incident_body("fb-sn-cut"))
        .send()
        .await
        .expect_err("no answer at all");
    assert!(!err.is_timeout(), "{}", error_chain(&err));
    assert_eq!(sim.state.servicenow_records().len(), 1);
    assert_eq!(sim.state.stats().faults.ambiguous_close, 2);

    // Only the cut connections are gone: the same client gets answers on a new one.
    set_faults(&c, &sim, json!({})).await;
    assert_eq!(
        send(jira3(&c, &sim, Method::GET, "/issue/SEC-1"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn late_commits_at_once_and_answers_after_the_client_gave_up() {
    let sim = start(SimConfig {
        faults: ambiguous(1.0, AmbiguousMode::Late),
        ..SimConfig::default()
    })
    .await;
    let impatient = Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let err = jira3(&impatient, &sim, Method::POST, "/issue")
        .json(&issue_body("slow", &["fb-late"]))
        .send()
        .await
        .expect_err("the answer comes after the timeout");
    assert!(err.is_timeout(), "{}", error_chain(&err));
    assert_eq!(
        sim.state.jira_issues().len(),
        1,
        "committed before the wait"
    );
    assert_eq!(sim.state.stats().faults.ambiguous_late, 1);

    // A patient client gets the real 201, no earlier than the configured delay.
    let c = client();
    set_faults(
        &c,
        &sim,
        json!({"ambiguous_create_rate": 1.0, "ambiguous_create_mode": "late", "ambiguous_late_ms": 200}),
    )
    .await;
    let t = Instant::now();
    let a = send(jira3(&c, &sim, Method::POST, "/issue").json(&issue_body("slow", &["fb-late2"])))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["key"], "SEC-2");
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn rotate_cycles_502_close_late_and_stats_count_each() {
    let sim = start(SimConfig {
        faults: ambiguous(1.0, AmbiguousMode::Rotate),
        ..SimConfig::default()
    })
    .await;
    let c = Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let mut seen = Vec::new();
    for n in 0..3 {
        let r = jira3(&c, &sim, Method::POST, "/issue")
            .json(&issue_body("rotating", &[&format!("fb-rot-{n}")]))
            .send()
            .await;
        seen.push(match r {
            Ok(resp) => resp.status().as_u16().to_string(),
            Err(e) if e.is_timeout() => "timeout".to_owned(),
            Err(_) => "reset".to_owned(),
        });
    }
    assert_eq!(seen, ["502", "reset", "timeout"]);
    assert_eq!(sim.state.jira_issues().len(), 3);
    let a = send(c.get(format!("{}/_sim/stats", sim.base_url))).await;
    assert_eq!(a.body["faults"]["ambiguous_502"], 1);
    assert_eq!(a.body["faults"]["ambiguous_close"], 1);
    assert_eq!(a.body["faults"]["ambiguous_late"], 1);
}

/// Which of `n` creates come back 502, under the current faults.
async fn ambiguous_pattern(c: &Client, sim: &SimHandle, n: usize) -> Vec<bool> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let a = send(
            servicenow(c, sim, Method::POST, "/incident")
                .json(&incident_body(&format!("fb-seq-{i}"))),
        )
        .await;
        assert!(
            [StatusCode::CREATED, StatusCode::BAD_GATEWAY].contains(&a.status),
            "{}",
            a.status
        );
        out.push(a.status == StatusCode::BAD_GATEWAY);
    }
    out
}

#[tokio::test]
async fn the_ambiguous_share_is_seeded_and_only_committed_creates_count() {
    let faults = Faults {
        seed: 11,
        ..ambiguous(0.25, AmbiguousMode::BadGateway)
    };
    let sim = start(SimConfig {
        faults: faults.clone(),
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let first = ambiguous_pattern(&c, &sim, 200).await;
    let hits = first.iter().filter(|b| **b).count();
    assert!((25..=75).contains(&hits), "{hits} of 200 at 25%");
    assert_eq!(sim.state.servicenow_records().len(), 200, "all committed");
    assert_eq!(sim.state.stats().faults.ambiguous_502, hits as u64);

    assert!(sim.state.set_faults(faults).is_ok());
    assert_eq!(
        ambiguous_pattern(&c, &sim, 200).await,
        first,
        "same seed, same creates"
    );

    // A refused create commits nothing and is never made ambiguous, nor are other requests.
    assert!(
        sim.state
            .set_faults(ambiguous(1.0, AmbiguousMode::BadGateway))
            .is_ok()
    );
    let a = send(jira3(&c, &sim, Method::POST, "/issue").json(&json!({"fields": {}}))).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = send(jira3(&c, &sim, Method::GET, "/issue/SEC-404")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(sim.state.stats().faults.ambiguous_502, hits as u64 * 2);
}

#[tokio::test]
async fn the_search_delay_is_a_runtime_setting_seeded_from_the_config() {
    let sim = start(SimConfig {
        jira_search_delay: Duration::from_millis(HOUR_MS),
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let a = send(c.get(format!("{}/_sim/faults", sim.base_url))).await;
    assert_eq!(a.body["search_delay_ms"], HOUR_MS);
    let marker = "fb-0000000000000000000000000000bbbb";
    let first = create_issue(&c, &sim, "first", &[marker, "findings-bridge"]).await;
    let second = create_issue(&c, &sim, "second", &[marker, "findings-bridge"]).await;
    // Another finding's ticket and one without the bridge label never match.
    create_issue(&c, &sim, "other", &["fb-other", "findings-bridge"]).await;
    create_issue(&c, &sim, "unlabelled", &[marker]).await;
    assert!(search_v3(&c, &sim, marker).await.is_empty());
    assert!(search_v2(&c, &sim, marker).await.is_empty());

    let body = set_faults(&c, &sim, json!({"search_delay_ms": 0})).await;
    assert_eq!(body["search_delay_ms"], 0);
    assert_eq!(
        search_v3(&c, &sim, marker).await,
        [first.clone(), second.clone()]
    );
    assert_eq!(search_v2(&c, &sim, marker).await, [first, second]);
}

#[tokio::test]
async fn an_issue_becomes_searchable_once_the_delay_has_passed() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    set_faults(&c, &sim, json!({"search_delay_ms": 300})).await;
    let marker = "fb-0000000000000000000000000000cccc";
    let created = Instant::now();
    let key = create_issue(&c, &sim, "lagging", &[marker, "findings-bridge"]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let found = loop {
        let hits = search_v3(&c, &sim, marker).await;
        if !hits.is_empty() {
            break hits;
        }
        assert!(Instant::now() < deadline, "never became searchable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(found, [key]);
    assert!(
        created.elapsed() >= Duration::from_millis(300),
        "not before the delay"
    );
}

#[tokio::test]
async fn bad_ambiguous_settings_are_refused() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    for bad in [
        json!({"ambiguous_create_rate": 1.5}),
        json!({"ambiguous_create_mode": "reset"}),
        json!({"ambiguous_late": 5}),
        json!({"search_delay": 5}),
    ] {
        let a = send(c.post(format!("{}/_sim/faults", sim.base_url)).json(&bad)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}
