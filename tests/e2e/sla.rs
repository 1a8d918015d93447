//! SLA due dates and escalation end to end (issue 15 item 2): the real binary against the
//! simulator's Jira and a SQLite store. A finding first observed long ago is past its due date
//! as soon as its ticket exists: the ticket carries the due date, the escalation loop raises its
//! priority, labels it and comments once, and a restarted worker does not do it again.
//!
//! Needs `moto_server` (`scripts/venv`) for the queue.

use crate::bench as e2e;

use std::time::Duration;

use e2e::{Bench, FindingBuilder, Teams, eventually};
use findings_bridge::marker::Marker;
use findings_bridge_sim::Faults;
use findings_bridge_sim::state::JiraIssue;

/// The bench's Jira team with SLAs and an escalation.
const SLA_TEAM: &str = r#"
team = "appsec"

[defaults]
sla = { CRITICAL = "1d", HIGH = "7d" }
escalate = { priority = "raise", labels = ["sla-breached"], comment = "SLA breached: {{ finding.title }}" }

[[rules]]
name = "every-finding"
order = 10
[rules.jira]
project = "SEC"
issue_type = "Bug"
summary = "[{{ finding.severity }}] {{ finding.title }}"
priority = "{{ {'CRITICAL': 'Highest', 'HIGH': 'High'}[finding.severity] | default('Medium') }}"
"#;

fn issue_of(bench: &Bench, finding: &FindingBuilder) -> Option<JiraIssue> {
    let marker = Marker::new("appsec", &finding.id());
    bench
        .sim
        .state
        .jira_issues()
        .into_iter()
        .find(|i| i.labels.iter().any(|l| l == marker.as_str()))
}

fn sla_comments(issue: &JiraIssue) -> usize {
    issue
        .comments
        .iter()
        .filter(|c| c.body.to_string().contains("SLA breached"))
        .count()
}

fn escalated(bench: &Bench, finding: &FindingBuilder) -> bool {
    issue_of(bench, finding).is_some_and(|i| sla_comments(&i) > 0)
}

/// The issue of `finding` escalated exactly once: raised from High to Highest, labelled once,
/// one comment, and its due date first observed (2026-02-28, the fixture's) + 7 days.
fn assert_escalated_once(bench: &Bench, finding: &FindingBuilder) {
    let issue = issue_of(bench, finding).expect("the finding has an issue");
    assert_eq!(sla_comments(&issue), 1, "{:#?}", issue.comments);
    assert_eq!(issue.priority.as_deref(), Some("Highest"));
    assert_eq!(
        issue.labels.iter().filter(|l| *l == "sla-breached").count(),
        1,
        "{:?}",
        issue.labels
    );
    assert_eq!(issue.fields["duedate"], "2026-03-07");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdue_ticket_is_escalated_once_across_a_worker_restart() {
    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraOnly, Faults::none()).await;
    bench.write_team("appsec.toml", SLA_TEAM);
    let store = format!("sqlite:{}", bench.dir.path().join("records.db").display());
    // Scan for breaches every second.
    let env = [("BRIDGE_SYNC_INTERVAL", "1"), ("BRIDGE_SLA_INTERVAL", "1")];

    let first = FindingBuilder::new("sla-first").severity("HIGH");
    bench.send(&first.body()).await;
    let worker = bench.spawn("sla-before", &store, &env, &[]);
    let addr = worker.http_addr(Duration::from_secs(30)).await;
    eventually(
        Duration::from_secs(60),
        "the first ticket is escalated",
        || async { escalated(&bench, &first) },
    )
    .await;
    eventually(Duration::from_secs(30), "the breach is counted", || async {
        e2e::metric(
            addr,
            "findings_bridge_sla_breaches_total",
            &["team=\"appsec\""],
        )
        .await
            == Some(1.0)
    })
    .await;
    worker.terminate();
    let mut worker = worker;
    assert!(
        worker.wait(Duration::from_secs(60)).await.is_some(),
        "{}",
        worker.log_tail(40)
    );
    assert_escalated_once(&bench, &first);

    // A new process on the same store: it escalates a new breach, which shows its loop read
    // every record at least once, and leaves the first one alone.
    let second = FindingBuilder::new("sla-second").severity("HIGH");
    bench.send(&second.body()).await;
    let mut worker = bench.spawn("sla-after", &store, &env, &[]);
    let addr = worker.http_addr(Duration::from_secs(30)).await;
    eventually(
        Duration::from_secs(60),
        "the second ticket is escalated",
        || async { escalated(&bench, &second) },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the second breach is counted",
        || async {
            e2e::metric(
                addr,
                "findings_bridge_sla_breaches_total",
                &["team=\"appsec\""],
            )
            .await
                == Some(1.0)
        },
    )
    .await;
    worker.terminate();
    assert!(
        worker.wait(Duration::from_secs(60)).await.is_some(),
        "{}",
        worker.log_tail(40)
    );
    assert_escalated_once(&bench, &first);
    assert_escalated_once(&bench, &second);
    assert_eq!(bench.jira_count(), 2);
}
