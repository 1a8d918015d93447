//! Grouped tickets end to end (issue 15 item 1): three `findings-bridge run` processes on one
//! DynamoDB table (moto) and the simulator's Jira. Eight findings of one control arrive at once,
//! spread over the replicas: one ticket for the group, listing all eight. Their resolutions tick
//! them off; the last one closes the ticket, once; one finding coming back reopens it — still
//! one ticket, nothing dead-lettered.
//!
//! Needs `moto_server` (`scripts/venv`).

use crate::bench as e2e;

use std::time::Duration;

use e2e::{Bench, FindingBuilder, Teams, eventually};
use findings_bridge::marker::Marker;
use findings_bridge_sim::Faults;
use findings_bridge_sim::state::JiraIssue;

/// The bench's Jira team, grouping its findings per control (the generator id).
const GROUPED_TEAM: &str = r#"
team = "appsec"

[[rules]]
name = "controls"
order = 10
group_by = "{{ finding.generator_id }}"
[rules.jira]
project = "SEC"
issue_type = "Bug"
summary = "{{ finding.title }}"
priority = "{{ {'CRITICAL': 'Highest', 'HIGH': 'High'}[finding.severity] | default('Medium') }}"
"#;

const KEY: &str = "security-control/EC2.8";

fn group_issues(bench: &Bench) -> Vec<JiraIssue> {
    let marker = Marker::group("appsec", KEY);
    bench
        .sim
        .state
        .jira_issues()
        .into_iter()
        .filter(|i| i.labels.iter().any(|l| l == marker.as_str()))
        .collect()
}

fn description(issue: &JiraIssue) -> String {
    issue.description.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ticket_per_group_across_three_replicas_closed_by_the_last_resolution_reopened_by_a_recurrence()
 {
    let _timing = e2e::exclusive().await;
    let bench = Bench::start(Teams::JiraOnly, Faults::none()).await;
    bench.write_team("appsec.toml", GROUPED_TEAM);
    let store = bench.dynamodb_store("e2e-groups").await;

    let findings: Vec<FindingBuilder> = (0..8)
        .map(|n| {
            FindingBuilder::new(&format!("group-{n}")).severity(if n == 0 {
                "CRITICAL"
            } else {
                "HIGH"
            })
        })
        .collect();
    // Every replica is up before the findings arrive, each taking two messages at a time, so
    // the group's first findings really are spread over the three processes.
    let replicas = bench.replicas_ready("replica", 3, &store).await;
    bench
        .send_all(
            &findings
                .iter()
                .map(FindingBuilder::body)
                .collect::<Vec<_>>(),
        )
        .await;

    let listed = || async {
        let issues = group_issues(&bench);
        issues.len() == 1
            && (0..findings.len())
                .all(|n| description(&issues[0]).contains(&format!("group-{n}\"")))
            && bench.queue_is_empty().await
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while !listed().await {
        if std::time::Instant::now() > deadline {
            for issue in bench.sim.state.jira_issues() {
                eprintln!("{} {:?} {}", issue.key, issue.labels, issue.description);
            }
            eprintln!("dlq: {:?}", bench.dlq_messages().await);
            for r in &replicas {
                eprintln!("---\n{}", r.log_tail(40));
            }
            panic!("every finding listed on the group's ticket and the queue empty");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(bench.jira_count(), 1, "one ticket for eight findings");
    // What eight new findings of one group cost (for BENCHMARKS): requests by endpoint.
    println!(
        "eight findings of one group: {:?}; Security Hub write-back calls: {}",
        bench.requests(),
        bench.sim.state.writebacks().len()
    );
    let issue = &group_issues(&bench)[0];
    assert_eq!(
        issue.priority.as_deref(),
        Some("Highest"),
        "the highest open severity"
    );
    // Every finding's note names the group ticket and the group marker.
    let group_marker = Marker::group("appsec", KEY).to_string();
    for f in &findings {
        let notes = bench
            .sim
            .state
            .finding(&f.id())
            .map(|s| s.notes.clone())
            .unwrap_or_default();
        assert!(
            notes
                .iter()
                .any(|n| n.contains(&issue.key) && n.contains(&group_marker)),
            "{}: {notes:?}",
            f.id()
        );
    }

    // All resolve (a newer version each); the ticket closes once, after the last.
    let resolved: Vec<String> = findings
        .iter()
        .map(|f| {
            f.clone()
                .updated_at("2026-03-05T00:00:00.000Z")
                .archived()
                .body()
        })
        .collect();
    bench.send_all(&resolved).await;
    eventually(
        Duration::from_secs(180),
        "the group's ticket done and the queue empty",
        || async {
            group_issues(&bench)
                .first()
                .is_some_and(|i| i.status_category == "done")
                && bench.queue_is_empty().await
        },
    )
    .await;
    let issue = &group_issues(&bench)[0];
    let closes = issue
        .status_history
        .iter()
        .filter(|c| c.to == "Done")
        .count();
    assert_eq!(closes, 1, "{:?}", issue.status_history);

    // One comes back: the same ticket reopens.
    bench
        .send(
            &findings[3]
                .clone()
                .updated_at("2026-03-06T00:00:00.000Z")
                .body(),
        )
        .await;
    eventually(
        Duration::from_secs(180),
        "the group's ticket reopened",
        || async {
            group_issues(&bench)
                .first()
                .is_some_and(|i| i.status_category != "done")
                && bench.queue_is_empty().await
        },
    )
    .await;
    assert_eq!(bench.jira_count(), 1, "still one ticket");
    for replica in &replicas {
        replica.terminate();
    }
    assert!(
        bench.dlq_messages().await.is_empty(),
        "nothing dead-lettered"
    );
}
