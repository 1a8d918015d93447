//! Injected failures: seeded 500s, 429 bursts with Retry-After, rate limits, latency, and the
//! counters that let a test prove the bridge met them.

mod common;

use std::time::{Duration, Instant};

use common::*;
use findings_bridge_sim::{Faults, SimConfig};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn statuses(c: &reqwest::Client, sim: &findings_bridge_sim::SimHandle, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        // An unknown issue: 404 when the request gets through, so injected codes stand out.
        out.push(
            send(jira3(c, sim, Method::GET, "/issue/SEC-404"))
                .await
                .status
                .as_u16(),
        );
    }
    out
}

#[tokio::test]
async fn error_rate_is_honoured_and_repeatable_with_the_same_seed() {
    let faults = Faults {
        error_rate: 0.3,
        seed: 42,
        ..Faults::default()
    };
    let sim = start(SimConfig {
        faults: faults.clone(),
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let first = statuses(&c, &sim, 300).await;
    let errors = first.iter().filter(|s| **s == 500).count();
    assert!(
        (60..=120).contains(&errors),
        "{errors} of 300 failed at 30%"
    );
    assert!(first.iter().all(|s| *s == 500 || *s == 404));
    assert_eq!(sim.state.stats().faults.errors_500, errors as u64);

    assert!(sim.state.set_faults(faults).is_ok());
    assert_eq!(
        statuses(&c, &sim, 300).await,
        first,
        "same seed, same failures"
    );
    assert!(
        sim.state
            .set_faults(Faults {
                error_rate: 0.3,
                seed: 43,
                ..Faults::default()
            })
            .is_ok()
    );
    assert_ne!(statuses(&c, &sim, 300).await, first);

    assert!(sim.state.set_faults(Faults::none()).is_ok());
    assert!(statuses(&c, &sim, 20).await.iter().all(|s| *s == 404));
}

#[tokio::test]
async fn bursts_of_429_carry_retry_after_and_reset() {
    let sim = start(SimConfig {
        faults: Faults {
            burst_429_every: Some(2),
            burst_429_len: 2,
            retry_after_secs: 7,
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let c = client();
    assert_eq!(
        statuses(&c, &sim, 8).await,
        [404, 404, 429, 429, 404, 404, 429, 429]
    );
    let a = send(jira3(&c, &sim, Method::GET, "/issue/SEC-404")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let _ = send(jira3(&c, &sim, Method::GET, "/issue/SEC-404")).await;
    let a = send(jira3(&c, &sim, Method::GET, "/issue/SEC-404")).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        a.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert!(a.headers.contains_key("x-ratelimit-reset"));
    // ServiceNow and Security Hub get their own error shapes under the same schedule.
    let a = send(servicenow(&c, &sim, Method::GET, "/incident")).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.body["status"], "failure");
    assert_eq!(
        sim.state.stats().faults.burst_429,
        6,
        "four, then the Jira and ServiceNow ones above"
    );
}

#[tokio::test]
async fn rate_limit_answers_429_beyond_the_limit_per_second() {
    let sim = start(SimConfig {
        rate_limit_per_sec: Some(3),
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let mut limited = Vec::new();
    for _ in 0..5 {
        let a = send(jira3(&c, &sim, Method::GET, "/issue/SEC-404")).await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            limited.push(a);
        }
    }
    assert_eq!(limited.len(), 2, "5 requests against 3 per second");
    assert!(
        limited
            .iter()
            .all(|a| a.headers.get("retry-after").is_some_and(|v| v == "1"))
    );
    assert_eq!(sim.state.stats().faults.rate_limited_429, 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        statuses(&c, &sim, 3).await,
        [404, 404, 404],
        "a new second, a new allowance"
    );
    sim.state.set_rate_limit(None);
    assert!(statuses(&c, &sim, 10).await.iter().all(|s| *s == 404));
}

#[tokio::test]
async fn per_system_rate_limits_count_each_system_on_its_own() {
    let sim = start(SimConfig {
        rate_limit_per_sec: Some(2),
        rate_limit_per_system: true,
        ..SimConfig::default()
    })
    .await;
    let c = client();
    // Fill Jira's window until it refuses; ServiceNow's own window still has room at once.
    let mut jira = Vec::new();
    while jira.last() != Some(&429) {
        jira.push(
            send(jira3(&c, &sim, Method::GET, "/issue/SEC-404"))
                .await
                .status
                .as_u16(),
        );
        assert!(jira.len() <= 10, "Jira never refused: {jira:?}");
    }
    let servicenow = send(servicenow(
        &c,
        &sim,
        Method::GET,
        "/incident?sysparm_limit=1",
    ))
    .await
    .status;
    assert_eq!(servicenow, StatusCode::OK, "ServiceNow's budget is its own");
    let faults = sim.state.stats().faults;
    assert!(faults.rate_limited_429 >= 1);
    assert_eq!(
        faults.rate_limited_429_by_system.get("jira"),
        Some(&faults.rate_limited_429),
        "every refusal was Jira's"
    );
    assert_eq!(faults.rate_limited_429_by_system.get("servicenow"), None);
}

#[tokio::test]
async fn security_hub_can_have_a_per_system_limit_of_its_own() {
    let sim = start(SimConfig {
        rate_limit_per_sec: Some(100),
        rate_limit_per_system: true,
        // None at all: every write-back is refused while the ticket systems' budget is untouched.
        securityhub_rate_limit_per_sec: Some(0),
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let writeback = send(
        c.patch(format!("{}/findings/batchupdate", sim.base_url))
            .json(&json!({"FindingIdentifiers": []})),
    )
    .await;
    assert_eq!(writeback.status, StatusCode::TOO_MANY_REQUESTS);
    let jira = send(jira3(&c, &sim, Method::GET, "/issue/SEC-404")).await;
    assert_eq!(
        jira.status,
        StatusCode::NOT_FOUND,
        "Jira's budget is its own"
    );
    let faults = sim.state.stats().faults;
    assert_eq!(
        faults.rate_limited_429_by_system.get("securityhub"),
        Some(&1)
    );
    assert_eq!(faults.rate_limited_429, 1);
}

#[tokio::test]
async fn latency_delays_api_answers_but_not_operator_views() {
    let sim = start(SimConfig {
        faults: Faults {
            latency: Duration::from_millis(250),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let t = Instant::now();
    let _ = send(jira3(&c, &sim, Method::GET, "/issue/SEC-404")).await;
    assert!(t.elapsed() >= Duration::from_millis(250));
    let t = Instant::now();
    let _ = send(c.get(format!("{}/_sim/stats", sim.base_url))).await;
    assert!(t.elapsed() < Duration::from_millis(250));
}

#[tokio::test]
async fn operator_endpoints_set_faults_and_report_counts() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let a = send(
        c.post(format!("{}/_sim/faults", sim.base_url))
            .json(&json!({"error_rate": 1.0})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(statuses(&c, &sim, 3).await, [500, 500, 500]);
    // The operator views stay reachable while every API call fails.
    let a = send(c.get(format!("{}/_sim/stats", sim.base_url))).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["requests"]["GET /rest/api/3/issue/{key}"], 3);
    assert_eq!(a.body["faults"]["errors_500"], 3);
    assert_eq!(sim.state.request_count("GET /rest/api/3/issue/{key}"), 3);

    for bad in [
        json!({"error_rate": 2.0}),
        json!({"burst_429_every": 0}),
        json!({"latency": 5}),
    ] {
        let a = send(c.post(format!("{}/_sim/faults", sim.base_url)).json(&bad)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(
        sim.state.faults().error_rate,
        1.0,
        "a refused setting leaves the old one"
    );

    assert!(sim.state.set_faults(Faults::none()).is_ok());
    create_issue(&c, &sim, "counted", &["findings-bridge"]).await;
    assert_eq!(sim.state.request_count("POST /rest/api/3/issue"), 1);
    let a = send(c.get(format!("{}/_sim/tickets", sim.base_url))).await;
    assert_eq!(a.body["jira"][0]["key"], "SEC-1");
    assert_eq!(a.body["servicenow"], json!([]));
}

#[tokio::test]
async fn a_slow_create_commits_before_it_answers() {
    // 6 s: committed after 3 s, answered 3 s later; the 3 s between the two are what a client
    // that gives up (a timeout, a SIGTERM) leaves behind as a ticket it does not know about.
    let sim = start(SimConfig {
        faults: Faults {
            latency: Duration::from_secs(6),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let state = sim.state.clone();
    let c = client();
    let started = Instant::now();
    let request = {
        let builder = jira3(&c, &sim, Method::POST, "/issue").json(&json!({"fields": {
            "project": {"key": "SEC"}, "issuetype": {"name": "Bug"}, "summary": "slow",
        }}));
        tokio::spawn(async move { builder.send().await.map(|r| r.status()) })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while state.jira_issues().is_empty() {
        assert!(Instant::now() < deadline, "the create never committed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!request.is_finished(), "committed, not yet answered");
    let status = request.await.expect("request task").expect("an answer");
    assert_eq!(status, StatusCode::CREATED);
    assert!(started.elapsed() >= Duration::from_secs(6));
}
