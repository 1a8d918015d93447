//! One status poller for all replicas, end to end: three `findings-bridge run` processes on one
//! DynamoDB table (moto) and the simulator, whose Jira user lives in Los Angeles (JQL dates read
//! in UTC would lie hours after the watermark there and miss every change). Exactly one process
//! polls (each process's own count of its Jira searches, and its `findings_bridge_sync_leader`
//! gauge, both from its `/metrics`); a ticket status change is written back to Security Hub once,
//! not once per replica; SIGKILL the poller and another one takes over; SIGTERM that one and the
//! last takes over from the released lease.
//!
//! Needs `moto_server` (`scripts/venv`).

use crate::bench as e2e;
use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::{Bench, FindingBuilder, Teams, WorkerProcess, eventually};
use findings_bridge::store::dynamodb::DynamoStore;
use findings_bridge_sim::SimConfig;

/// Short enough that the test sees a takeover soon; long enough that a loaded 2-core machine
/// does not make the holder miss its renewals (every 1.5 s; it stops 4.5 s after a grant).
const LEASE_SECS: &str = "6";

/// Searches for updated tickets a worker has sent to Jira, whatever their outcome: how often
/// that process polled.
async fn polls(addr: SocketAddr) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the worker answers /metrics")
        .text()
        .await
        .expect("a metrics page");
    text.lines()
        .filter(|line| line.starts_with("findings_bridge_api_request_duration_seconds_count{"))
        .filter(|line| line.contains(r#"system="jira""#))
        .filter(|line| line.contains(r#"operation="updated_since""#))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn polls_of(addrs: &[SocketAddr]) -> Vec<f64> {
    let mut counts = Vec::with_capacity(addrs.len());
    for addr in addrs {
        counts.push(polls(*addr).await);
    }
    counts
}

async fn is_poller(addr: SocketAddr) -> bool {
    e2e::metric(addr, "findings_bridge_sync_leader", &[]).await == Some(1.0)
}

/// Write-backs that set `finding_id` to RESOLVED.
fn resolved_writebacks(bench: &Bench, finding_id: &str) -> usize {
    bench
        .sim
        .state
        .writebacks()
        .iter()
        .filter(|w| w.processed.iter().any(|id| id == finding_id))
        .filter(|w| w.request.to_string().contains("RESOLVED"))
        .count()
}

/// Waits until the poller at `addr` has polled `more` times after its count stood at `from`.
async fn polled_more(addr: SocketAddr, from: f64, more: f64, what: &str) {
    eventually(Duration::from_secs(120), what, || async {
        polls(addr).await >= from + more
    })
    .await;
}

/// Moves the ticket of `finding` to Done and waits for its RESOLVED write-back; then lets the
/// poller poll three more times (time enough for any second write-back) and checks there was
/// exactly one.
async fn resolve_once(bench: &Bench, poller: SocketAddr, finding: &FindingBuilder) {
    let id = finding.id();
    let marker = findings_bridge::marker::Marker::new(e2e::JIRA_TEAM, &id).to_string();
    let key = bench
        .sim
        .state
        .jira_issues()
        .into_iter()
        .find(|issue| issue.labels.contains(&marker))
        .map(|issue| issue.key)
        .expect("the finding has its ticket");
    bench
        .sim
        .state
        .transition_issue(&key, "Done")
        .expect("the ticket moves to Done");
    eventually(
        Duration::from_secs(120),
        "the ticket's Done status written back as RESOLVED",
        || async { bench.sim.state.finding_workflow(&id).as_deref() == Some("RESOLVED") },
    )
    .await;
    let now = polls(poller).await;
    polled_more(poller, now, 3.0, "three more polls after the write-back").await;
    assert_eq!(
        resolved_writebacks(bench, &id),
        1,
        "one write-back for one status change, not one per replica"
    );
}

/// Index of the only process that polled; fails when none or several did.
fn only_poller(counts: &[f64]) -> usize {
    let polling: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] > 0.0).collect();
    assert_eq!(polling.len(), 1, "exactly one replica polls: {counts:?}");
    polling[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_poll_as_one_and_a_killed_poller_is_replaced() {
    let _timing = e2e::exclusive().await;
    let bench = Bench::start_with(
        Teams::JiraOnly,
        SimConfig {
            jira_time_zone: chrono_tz::Tz::America__Los_Angeles,
            ..SimConfig::default()
        },
    )
    .await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&bench.aws);
    let table = support::unique("e2e-poller");
    DynamoStore::create_table_for_tests(&dynamodb, &table)
        .await
        .expect("records table on moto");
    let before_kill = FindingBuilder::new("poller-before-kill");
    let after_kill = FindingBuilder::new("poller-after-kill");
    bench
        .send_all(&[before_kill.body(), after_kill.body()])
        .await;

    let store = format!("dynamodb:{table}");
    let tuning = [
        ("BRIDGE_SYNC_LEASE", LEASE_SECS),
        ("BRIDGE_SYNC_INTERVAL", "1"),
    ];
    let mut replicas: Vec<WorkerProcess> = (1..=3)
        .map(|n| bench.spawn(&format!("replica-{n}"), &store, &tuning, &[]))
        .collect();
    let mut addrs = Vec::new();
    for replica in &replicas {
        addrs.push(replica.http_addr(Duration::from_secs(60)).await);
    }
    eventually(
        Duration::from_secs(120),
        "both tickets created and the queue empty",
        || async { bench.jira_count() == 2 && bench.queue_is_empty().await },
    )
    .await;

    // Exactly one replica polls: wait until one has polled a few times, then none of the others
    // may have polled at all, and the gauges agree.
    eventually(Duration::from_secs(120), "a replica polls", || async {
        polls_of(&addrs).await.iter().any(|n| *n >= 3.0)
    })
    .await;
    let first = only_poller(&polls_of(&addrs).await);
    for (i, addr) in addrs.iter().enumerate() {
        assert_eq!(
            is_poller(*addr).await,
            i == first,
            "gauge of replica {}",
            i + 1
        );
    }
    resolve_once(&bench, addrs[first], &before_kill).await;
    // Its polls complete, so its sync lag for Jira is 0 (set at every poll); the others poll
    // nothing and publish none.
    assert_eq!(
        e2e::metric(
            addrs[first],
            "findings_bridge_sync_lag_seconds",
            &[r#"connection="jira""#]
        )
        .await,
        Some(0.0)
    );
    for (i, addr) in addrs.iter().enumerate().filter(|(i, _)| *i != first) {
        assert_eq!(
            e2e::metric(*addr, "findings_bridge_sync_lag_seconds", &[]).await,
            None,
            "replica {} does not poll",
            i + 1
        );
    }
    assert_eq!(
        only_poller(&polls_of(&addrs).await),
        first,
        "still only the first poller polls"
    );

    // SIGKILL the poller: no release, its lease has to run out; another replica takes over.
    replicas[first].kill();
    let killed = Instant::now();
    let others: Vec<usize> = (0..addrs.len()).filter(|&i| i != first).collect();
    eventually(
        Duration::from_secs(120),
        "another replica polls after the poller was killed",
        || async {
            for &i in &others {
                if polls(addrs[i]).await > 0.0 {
                    return true;
                }
            }
            false
        },
    )
    .await;
    println!(
        "poller SIGKILLed: another replica polled {:?} later (lease {LEASE_SECS} s)",
        killed.elapsed()
    );
    let survivors: Vec<SocketAddr> = others.iter().map(|&i| addrs[i]).collect();
    let second = others[only_poller(&polls_of(&survivors).await)];
    assert!(is_poller(addrs[second]).await);
    resolve_once(&bench, addrs[second], &after_kill).await;
    assert_eq!(
        resolved_writebacks(&bench, &before_kill.id()),
        1,
        "the new poller did not write the first change again"
    );

    // SIGTERM the second poller: it releases the lease and the last replica takes over.
    let last = others
        .iter()
        .copied()
        .find(|&i| i != second)
        .expect("a third replica");
    assert_eq!(
        polls(addrs[last]).await,
        0.0,
        "the third replica never polled yet"
    );
    replicas[second].terminate();
    replicas[second]
        .expect_success(Duration::from_secs(60))
        .await;
    let stopped = Instant::now();
    eventually(
        Duration::from_secs(120),
        "the last replica polls after the poller stopped",
        || async { polls(addrs[last]).await > 0.0 },
    )
    .await;
    println!(
        "poller stopped with SIGTERM (lease released): the last replica polled {:?} later",
        stopped.elapsed()
    );
    assert!(
        replicas[second]
            .log_text()
            .contains("released the status-sync lease"),
        "{}",
        replicas[second].log_tail(20)
    );
    replicas[last].terminate();
    replicas[last].expect_success(Duration::from_secs(60)).await;
    bench.assert_queues_empty().await;
}
