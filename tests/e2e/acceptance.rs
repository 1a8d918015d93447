//! Risk acceptance that expires, end to end: `findings-bridge run` on a DynamoDB table (moto) and
//! the simulator. The ticket moves to `Won't Do`, which the team's map makes a three-second
//! acceptance; the worker writes SUPPRESSED with a note naming who accepted and why, and is
//! stopped; the acceptance runs out while no
//! worker runs; the restarted worker sets the finding back to NEW and reopens the ticket with one
//! comment, and a third start repeats none of it (the simulator's write-backs, comments and
//! transitions are counted).
//!
//! Needs `moto_server` (`scripts/venv`).

use crate::bench as e2e;
use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use e2e::{Bench, FindingBuilder, Teams, WorkerProcess, eventually};
use findings_bridge::store::Store;
use findings_bridge::store::dynamodb::DynamoStore;
use findings_bridge_sim::SimConfig;

/// The bench's Jira team, with `Won't Do` accepting the risk for three seconds.
const TEAM_FILE: &str = r#"
team = "appsec"

[[rules]]
name = "every-finding"
order = 10
status_map = { "Won't Do" = { status = "SUPPRESSED", for = "3s" } }
[rules.jira]
project = "SEC"
issue_type = "Bug"
summary = "[{{ finding.severity }}] {{ finding.title }}"
"#;

/// Write-backs that set `finding_id` to `status`.
fn writebacks(bench: &Bench, finding_id: &str, status: &str) -> usize {
    bench
        .sim
        .state
        .writebacks()
        .iter()
        .filter(|w| w.processed.iter().any(|id| id == finding_id))
        .filter(|w| w.request["Workflow"]["Status"].as_str() == Some(status))
        .count()
}

/// Comments on `key` that announce the expiry.
fn expiry_comments(bench: &Bench, key: &str) -> usize {
    let issue = bench.sim.state.jira_issue(key).expect("the ticket exists");
    issue
        .comments
        .iter()
        .filter(|c| {
            c.body
                .to_string()
                .contains("risk acceptance of this finding expired")
        })
        .count()
}

/// Times the bridge moved `key` out of `Won't Do` (its reopen).
fn reopens(bench: &Bench, key: &str) -> usize {
    let issue = bench.sim.state.jira_issue(key).expect("the ticket exists");
    issue
        .status_history
        .iter()
        .filter(|c| c.from == "Won't Do" && c.by != "human")
        .count()
}

/// Searches for updated tickets the worker at `addr` has sent: how often it polled.
async fn polls(addr: SocketAddr) -> f64 {
    e2e::metric(
        addr,
        "findings_bridge_api_request_duration_seconds_count",
        &[r#"system="jira""#, r#"operation="updated_since""#],
    )
    .await
    .unwrap_or(0.0)
}

async fn stop(mut worker: WorkerProcess) {
    worker.terminate();
    worker.expect_success(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acceptance_expiring_while_the_worker_is_down_reopens_once() {
    let _shared = e2e::shared().await;
    let bench = Bench::start_with(Teams::JiraOnly, SimConfig::default()).await;
    bench.write_team("appsec.toml", TEAM_FILE);
    let dynamodb = aws_sdk_dynamodb::Client::new(&bench.aws);
    let table = support::unique("e2e-acceptance");
    DynamoStore::create_table_for_tests(&dynamodb, &table)
        .await
        .expect("records table on moto");
    let store = DynamoStore::new(dynamodb, table.clone());
    let store_name = format!("dynamodb:{table}");
    let tuning = [("BRIDGE_SYNC_INTERVAL", "1")];

    let finding = FindingBuilder::new("accepted");
    let id = finding.id();
    bench.send_all(&[finding.body()]).await;
    let first = bench.spawn("worker-1", &store_name, &tuning, &[]);
    eventually(
        Duration::from_secs(120),
        "the ticket created and the queue empty",
        || async { bench.jira_count() == 1 && bench.queue_is_empty().await },
    )
    .await;
    let key = bench.sim.state.jira_issues()[0].key.clone();

    // Accepted in Jira: the worker suppresses the finding and schedules the expiry.
    bench
        .sim
        .state
        .transition_issue(&key, "Won't Do")
        .expect("the ticket moves to Won't Do");
    eventually(
        Duration::from_secs(120),
        "the acceptance written back as SUPPRESSED",
        || async { bench.sim.state.finding_workflow(&id).as_deref() == Some("SUPPRESSED") },
    )
    .await;
    let note = bench
        .sim
        .state
        .writebacks()
        .iter()
        .rev()
        .find(|w| w.request["Workflow"]["Status"].as_str() == Some("SUPPRESSED"))
        .and_then(|w| w.request["Note"]["Text"].as_str().map(str::to_owned))
        .expect("the suppression has a note");
    // Who moved it (the simulator's human, from the changelog) and why (the resolution).
    assert!(
        note.starts_with(&format!(
            "Risk accepted in Jira {key} (Won't Do) by Jane Doe (resolution: Won't Do) until "
        )),
        "{note}"
    );
    stop(first).await;

    // It runs out while no worker runs (unless the first was slow to stop and did it itself:
    // the counts below hold either way).
    eventually(
        Duration::from_secs(120),
        "the acceptance due (or already handled)",
        || async {
            let now = chrono::Utc::now().timestamp_millis();
            let due = store.acceptances_due(now, 10).await.expect("schedule read");
            let all = store
                .acceptances_due(i64::MAX, 10)
                .await
                .expect("schedule read");
            !due.is_empty() || all.is_empty()
        },
    )
    .await;

    let second = bench.spawn("worker-2", &store_name, &tuning, &[]);
    let addr = second.http_addr(Duration::from_secs(60)).await;
    eventually(
        Duration::from_secs(120),
        "the finding set back to NEW and the ticket reopened with a comment",
        || async {
            writebacks(&bench, &id, "NEW") == 1
                && reopens(&bench, &key) == 1
                && expiry_comments(&bench, &key) == 1
        },
    )
    .await;
    eventually(
        Duration::from_secs(120),
        "the expiry off the schedule",
        || async {
            store
                .acceptances_due(i64::MAX, 10)
                .await
                .expect("schedule read")
                .is_empty()
        },
    )
    .await;
    let polled = polls(addr).await;
    eventually(Duration::from_secs(120), "three more polls", || async {
        polls(addr).await >= polled + 3.0
    })
    .await;
    stop(second).await;

    // A restart finds nothing left to do.
    let third = bench.spawn("worker-3", &store_name, &tuning, &[]);
    let addr = third.http_addr(Duration::from_secs(60)).await;
    eventually(Duration::from_secs(120), "three polls", || async {
        polls(addr).await >= 3.0
    })
    .await;
    stop(third).await;
    assert_eq!(writebacks(&bench, &id, "NEW"), 1, "NEW written once");
    assert_eq!(reopens(&bench, &key), 1, "the ticket reopened once");
    assert_eq!(expiry_comments(&bench, &key), 1, "one expiry comment");
    let issue = bench.sim.state.jira_issue(&key).unwrap();
    assert_ne!(issue.status_category, "done", "{}", issue.status);
    bench.assert_queues_empty().await;
}
