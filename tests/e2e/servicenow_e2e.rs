//! Grouped tickets and SLA escalation end to end on ServiceNow (issue 15 items 1 and 2), as
//! `sla.rs` and `groups.rs` prove them on Jira: the real binary against the simulator's Table
//! API, with a SQLite store (SLA) or one DynamoDB table on moto shared by three replicas
//! (groups).
//!
//! - An incident first observed long ago is past its due date as soon as it exists: it carries
//!   `due_date`, the escalation loop raises its urgency, sets the assignment group and adds one
//!   work note, and a restarted worker does not do it again.
//! - Six findings of one control arrive at once on three replicas: one incident, correlated by the
//!   group marker, listing all six. Their resolutions tick them off in work notes; the last one
//!   resolves the incident once (state 6 with a close code and notes); one finding coming back
//!   reopens the same incident.
//!
//! Only the ServiceNow team's file is kept, so every ticket call goes to ServiceNow. Needs
//! `moto_server` (`scripts/venv`).

use crate::bench as e2e;

use std::time::Duration;

use e2e::{Bench, FindingBuilder, Teams, WorkerProcess, eventually};
use findings_bridge::marker::Marker;
use findings_bridge_sim::Faults;
use findings_bridge_sim::state::ServiceNowRecord;

/// The team of every test here (the bench's ServiceNow team name).
const TEAM: &str = e2e::SERVICENOW_TEAM;

/// A bench whose only team is `toml`, a ServiceNow team file: the bench's Jira team (which takes
/// every finding) is removed.
async fn servicenow_bench(toml: &str) -> Bench {
    let bench = Bench::start(Teams::JiraAndServiceNow, Faults::none()).await;
    std::fs::remove_file(bench.mappings.join("appsec.toml")).expect("the Jira team file");
    bench.write_team("platform.toml", toml);
    bench
}

fn incidents(bench: &Bench) -> Vec<ServiceNowRecord> {
    bench
        .sim
        .state
        .servicenow_records()
        .into_iter()
        .filter(|r| r.table == "incident")
        .collect()
}

/// The incident whose `correlation_id` is `marker`.
fn incident(bench: &Bench, marker: &Marker) -> Option<ServiceNowRecord> {
    incidents(bench)
        .into_iter()
        .find(|r| r.get("correlation_id") == Some(marker.as_str()))
}

/// Work notes of `record` containing `needle`.
fn notes_with(record: &ServiceNowRecord, needle: &str) -> usize {
    record
        .journal_of("work_notes")
        .filter(|n| n.contains(needle))
        .count()
}

/// Stops workers with SIGTERM (all at once: each may finish a long poll first) and waits for
/// each to exit.
async fn stop(workers: Vec<WorkerProcess>) {
    for worker in &workers {
        worker.terminate();
    }
    for mut worker in workers {
        assert!(
            worker.wait(Duration::from_secs(60)).await.is_some(),
            "{}",
            worker.log_tail(40)
        );
    }
}

// ---- SLA due dates and escalation ----------------------------------------------------------

/// Due dates by severity; a breach raises the urgency one step, hands the incident to the leads'
/// group and adds a work note.
const SLA_TEAM: &str = r#"
team = "platform"

[defaults]
sla = { CRITICAL = "1d", HIGH = "7d" }
escalate = { priority = "raise", notify = { assignment_group = "Platform Security Leads" }, comment = "SLA breached: {{ finding.title }}" }

[[rules]]
name = "every-finding"
order = 10
target = "servicenow"
[rules.servicenow]
table = "incident"
short_description = "{{ finding.title }}"
description = "{{ finding.description }}"
urgency = "{{ {'CRITICAL': '1', 'HIGH': '2'}[finding.severity] | default('3') }}"
impact = "2"
"#;

const BREACH_NOTE: &str = "SLA breached: EC2 instances should use Instance Metadata";

fn escalated(bench: &Bench, finding: &FindingBuilder) -> bool {
    incident(bench, &Marker::new(TEAM, &finding.id()))
        .is_some_and(|r| notes_with(&r, BREACH_NOTE) > 0)
}

/// The incident of `finding` escalated exactly once: urgency raised from 2 to 1 (priority from 3
/// to 2 with impact 2), the leads' group assigned, one work note, still open, and its due date
/// first observed (2026-02-28 04:10:33 UTC, the fixture's) + 7 days.
fn assert_escalated_once(bench: &Bench, finding: &FindingBuilder) {
    let record =
        incident(bench, &Marker::new(TEAM, &finding.id())).expect("the finding has an incident");
    assert_eq!(notes_with(&record, BREACH_NOTE), 1, "{:#?}", record.journal);
    assert_eq!(record.get("urgency"), Some("1"));
    assert_eq!(record.get("impact"), Some("2"));
    assert_eq!(record.get("priority"), Some("2"));
    assert_eq!(
        record.get("assignment_group"),
        Some("Platform Security Leads")
    );
    assert_eq!(record.get("due_date"), Some("2026-03-07 04:10:33"));
    assert!(
        record.state_history.is_empty(),
        "{:?}",
        record.state_history
    );
}

async fn breaches(addr: std::net::SocketAddr) -> Option<f64> {
    e2e::metric(
        addr,
        "findings_bridge_sla_breaches_total",
        &["team=\"platform\""],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdue_servicenow_incident_is_escalated_once_across_a_worker_restart() {
    let _timing = e2e::shared().await;
    let bench = servicenow_bench(SLA_TEAM).await;
    let store = format!("sqlite:{}", bench.dir.path().join("records.db").display());
    // Scan for breaches every second.
    let env = [("BRIDGE_SYNC_INTERVAL", "1"), ("BRIDGE_SLA_INTERVAL", "1")];

    let first = FindingBuilder::new("sn-sla-first").severity("HIGH");
    bench.send(&first.body()).await;
    let worker = bench.spawn("sn-sla-before", &store, &env, &[]);
    let addr = worker.http_addr(Duration::from_secs(30)).await;
    eventually(
        Duration::from_secs(60),
        "the first incident exists",
        || async { incident(&bench, &Marker::new(TEAM, &first.id())).is_some() },
    )
    .await;
    let created = incident(&bench, &Marker::new(TEAM, &first.id())).expect("the incident");
    assert_eq!(
        created.get("due_date"),
        Some("2026-03-07 04:10:33"),
        "set at create"
    );
    eventually(
        Duration::from_secs(60),
        "the first incident is escalated",
        || async { escalated(&bench, &first) },
    )
    .await;
    eventually(Duration::from_secs(30), "the breach is counted", || async {
        breaches(addr).await == Some(1.0)
    })
    .await;
    stop(vec![worker]).await;
    assert_escalated_once(&bench, &first);

    // A new process on the same store: it escalates a new breach, which shows its loop read
    // every record at least once, and leaves the first one alone.
    let second = FindingBuilder::new("sn-sla-second").severity("HIGH");
    bench.send(&second.body()).await;
    let worker = bench.spawn("sn-sla-after", &store, &env, &[]);
    let addr = worker.http_addr(Duration::from_secs(30)).await;
    eventually(
        Duration::from_secs(60),
        "the second incident is escalated",
        || async { escalated(&bench, &second) },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the second breach is counted, and only it",
        || async { breaches(addr).await == Some(1.0) },
    )
    .await;
    stop(vec![worker]).await;
    assert_escalated_once(&bench, &first);
    assert_escalated_once(&bench, &second);
    assert_eq!(incidents(&bench).len(), 2);
    assert_eq!(bench.jira_count(), 0);
}

// ---- grouped incidents ---------------------------------------------------------------------

/// The ServiceNow team, grouping its findings per control (the generator id); summary and
/// description are the built-in group templates.
const GROUPED_TEAM: &str = r#"
team = "platform"

[[rules]]
name = "controls"
order = 10
target = "servicenow"
group_by = "{{ finding.generator_id }}"
[rules.servicenow]
table = "incident"
urgency = "{{ {'CRITICAL': '1', 'HIGH': '2'}[finding.severity] | default('3') }}"
impact = "2"
"#;

const KEY: &str = "security-control/EC2.8";
const MEMBERS: usize = 6;

fn group_incidents(bench: &Bench) -> Vec<ServiceNowRecord> {
    let marker = Marker::group(TEAM, KEY);
    incidents(bench)
        .into_iter()
        .filter(|r| r.get("correlation_id") == Some(marker.as_str()))
        .collect()
}

fn description(record: &ServiceNowRecord) -> &str {
    record.get("description").unwrap_or_default()
}

/// The plain-text checklist lists finding `n`: its console link (the line under its item) ends
/// with its (twice percent-encoded) id, whose last part is `sngroup-N`.
fn lists(record: &ServiceNowRecord, n: usize) -> bool {
    let tail = format!("sngroup-{n}");
    description(record)
        .lines()
        .any(|l| l.trim_end().ends_with(&tail))
}

/// Checklist items of the description: (open `[ ]`, resolved `[x]`).
fn checklist(record: &ServiceNowRecord) -> (usize, usize) {
    let items = |mark: &str| {
        description(record)
            .lines()
            .filter(|l| l.starts_with(&format!("- {mark} ")))
            .count()
    };
    (items("[ ]"), items("[x]"))
}

/// How often the bridge moved the incident to `state`.
fn entered(record: &ServiceNowRecord, state: &str) -> usize {
    record
        .state_history
        .iter()
        .filter(|c| c.to == state && c.by == "api")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_servicenow_incidents_close_when_the_last_finding_resolves_and_reopen_on_recurrence()
 {
    let _timing = e2e::exclusive().await;
    let bench = servicenow_bench(GROUPED_TEAM).await;
    let store = bench.dynamodb_store("e2e-sn-groups").await;

    let findings: Vec<FindingBuilder> = (0..MEMBERS)
        .map(|n| {
            FindingBuilder::new(&format!("sngroup-{n}")).severity(if n == 0 {
                "CRITICAL"
            } else {
                "HIGH"
            })
        })
        .collect();
    // Two messages at a time per replica, all three polling before the findings arrive: the
    // six findings of the new group are spread over the replicas.
    let replicas = bench.replicas_ready("sn-replica", 3, &store).await;
    bench
        .send_all(
            &findings
                .iter()
                .map(FindingBuilder::body)
                .collect::<Vec<_>>(),
        )
        .await;

    eventually(
        Duration::from_secs(180),
        "every finding listed on the group's incident and the queue empty",
        || async {
            let group = group_incidents(&bench);
            group.len() == 1
                && (0..MEMBERS).all(|n| lists(&group[0], n))
                && bench.queue_is_empty().await
        },
    )
    .await;
    assert_eq!(incidents(&bench).len(), 1, "one incident for six findings");
    let record = &group_incidents(&bench)[0];
    assert_eq!(checklist(record), (MEMBERS, 0), "{}", description(record));
    assert_eq!(
        record.get("urgency"),
        Some("1"),
        "the highest open severity (CRITICAL)"
    );
    // Every finding's note names the group incident and the group marker.
    let number = record.get("number").expect("an incident number").to_owned();
    let group_marker = Marker::group(TEAM, KEY).to_string();
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
                .any(|n| n.contains(&number) && n.contains(&group_marker)),
            "{}: {notes:?}",
            f.id()
        );
    }

    // All resolve (a newer version each); each but the last is ticked off with a work note, the
    // last resolves the incident, once.
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
        "the group's incident resolved and the queue empty",
        || async {
            group_incidents(&bench)
                .first()
                .is_some_and(|r| r.get("state") == Some("6"))
                && bench.queue_is_empty().await
        },
    )
    .await;
    let record = &group_incidents(&bench)[0];
    assert_eq!(entered(record, "6"), 1, "{:?}", record.state_history);
    assert_eq!(record.get("close_code"), Some("Resolved by caller"));
    assert!(
        record
            .get("close_notes")
            .is_some_and(|n| n.contains("Every finding of this group is resolved")),
        "{:?}",
        record.get("close_notes")
    );
    // Each tick-off note ends with its finding's console link: every finding but the one that
    // closed the incident is ticked off, once.
    let ticks: Vec<&str> = record
        .journal_of("work_notes")
        .filter(|n| n.starts_with("Resolved in Security Hub:"))
        .collect();
    assert_eq!(ticks.len(), MEMBERS - 1, "{ticks:#?}");
    for n in 0..MEMBERS {
        let tail = format!("sngroup-{n}");
        let of_n = ticks
            .iter()
            .filter(|t| t.trim_end().ends_with(&tail))
            .count();
        assert!(of_n <= 1, "finding {n} ticked off {of_n} times: {ticks:#?}");
    }
    assert_eq!(
        notes_with(record, "Every finding of this group is resolved"),
        1,
        "{:#?}",
        record.journal
    );
    assert_eq!(checklist(record), (0, MEMBERS), "{}", description(record));

    // One comes back: the same incident reopens (the connection's reopen state, 2).
    bench
        .send(
            &findings[2]
                .clone()
                .updated_at("2026-03-06T00:00:00.000Z")
                .body(),
        )
        .await;
    eventually(
        Duration::from_secs(180),
        "the group's incident reopened and the queue empty",
        || async {
            group_incidents(&bench)
                .first()
                .is_some_and(|r| r.get("state") == Some("2"))
                && bench.queue_is_empty().await
        },
    )
    .await;
    let record = &group_incidents(&bench)[0];
    assert_eq!(entered(record, "6"), 1, "{:?}", record.state_history);
    assert_eq!(entered(record, "2"), 1, "{:?}", record.state_history);
    assert_eq!(
        notes_with(record, "is active again in Security Hub"),
        1,
        "{:#?}",
        record.journal
    );
    assert_eq!(
        checklist(record),
        (1, MEMBERS - 1),
        "{}",
        description(record)
    );
    assert_eq!(incidents(&bench).len(), 1, "still one incident");
    assert_eq!(bench.jira_count(), 0);
    stop(replicas).await;
    assert!(
        bench.dlq_messages().await.is_empty(),
        "nothing dead-lettered"
    );
}
