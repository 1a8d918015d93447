//! Status sync against the simulator: the real Jira client polls the simulated Jira page by
//! page, the real Security Hub writer writes to the simulated Security Hub, records live in a
//! SQLite store. Ends with the whole round trip through the lifecycle: finding → ticket →
//! ticket done → finding RESOLVED → echo event → no ticket call.

use crate::sync_harness;

use std::collections::HashMap;
use std::sync::Arc;

use findings_bridge::aws::securityhub::{FindingWriter, WriteError};
use findings_bridge::finding::{WorkflowStatus, decode};
use findings_bridge::pipeline::lifecycle::{Action, Lifecycle};
use findings_bridge::pipeline::plan::MappingPlanner;
use findings_bridge::render::RenderOptions;
use findings_bridge::store::Store;
use findings_bridge::sync::{SkipReason, SyncConfig};
use findings_bridge::testing::RecordingWriter;
use findings_bridge::ticket::TicketSystem;
use findings_bridge_sim::FindingErrorKind;
use serde_json::Value;
use sync_harness::{Harness, JIRA_RULE, finding_id, harness, hub_writer};

fn skipped(report: &findings_bridge::sync::SyncReport, reason: SkipReason) -> usize {
    report.skipped.get(reason.as_str()).copied().unwrap_or(0)
}

async fn hub(h: &Harness) -> Arc<dyn FindingWriter> {
    Arc::new(hub_writer(&h.sim.base_url).await)
}

#[tokio::test]
async fn poller_reads_every_page_writes_done_tickets_and_a_second_poll_writes_nothing() {
    let h = harness(2).await;
    let mut tickets = Vec::new();
    for n in 0..7 {
        tickets.push(h.jira_ticket(n).await);
    }
    h.sim
        .state
        .transition_issue(&tickets[1].0.key, "Done")
        .unwrap();
    h.sim
        .state
        .transition_issue(&tickets[4].0.key, "Done")
        .unwrap();
    h.sim
        .state
        .transition_issue(&tickets[6].0.key, "Won't Do")
        .unwrap();
    h.sim
        .state
        .transition_issue(&tickets[3].0.key, "In Progress")
        .unwrap();

    let sync = h.sync(hub(&h).await, SyncConfig::default());
    let report = sync.poll_once().await;
    assert!(report.is_clean(), "{report:?}");
    assert!(
        report.pages >= 4,
        "7 tickets at 2 per page need 4 pages, got {}",
        report.pages
    );
    assert_eq!(report.read, 7);
    assert_eq!(report.written, 3, "{report:?}");
    assert_eq!(
        skipped(&report, SkipReason::Unchanged),
        4,
        "To Do / In Progress map to NOTIFIED, which the bridge already wrote"
    );

    for (n, expected) in [(1, "RESOLVED"), (4, "RESOLVED"), (6, "SUPPRESSED")] {
        assert_eq!(
            h.sim.state.finding_workflow(&finding_id(n)).as_deref(),
            Some(expected),
            "finding {n}"
        );
        let record = h.stored(&tickets[n].1).await;
        assert_eq!(record.status_to_hub.as_deref(), Some(expected));
    }
    for n in [0, 2, 3, 5] {
        assert_eq!(h.sim.state.finding_workflow(&finding_id(n)), None, "{n}");
    }
    let note = &h.sim.state.finding(&finding_id(1)).unwrap().notes[0];
    assert!(
        note.contains(&tickets[1].0.key) && note.contains("Done") && note.contains("RESOLVED"),
        "the note says which ticket moved where: {note}"
    );
    assert_eq!(
        h.stored(&tickets[3].1).await.status_from_ticket.as_deref(),
        Some("In Progress"),
        "the ticket's status is remembered even when nothing is written"
    );

    let watermark = h
        .store
        .watermark("sync:jira")
        .await
        .unwrap()
        .expect("watermark persisted");
    let newest = tickets
        .iter()
        .filter_map(|(t, _)| h.sim.state.jira_issue(&t.key))
        .map(|i| i.updated)
        .max()
        .unwrap();
    let stored = chrono::DateTime::parse_from_rfc3339(&watermark).unwrap();
    assert_eq!(
        stored.timestamp(),
        newest.timestamp(),
        "watermark is the newest update seen"
    );

    let writebacks = h.sim.state.writebacks().len();
    let again = sync.poll_once().await;
    assert_eq!(again.written, 0, "{again:?}");
    assert_eq!(
        again.duplicates, 7,
        "the overlap window re-reads every ticket and recognises each one"
    );
    assert_eq!(h.sim.state.writebacks().len(), writebacks);

    // A restarted process has no memory of what it saw; the records still stop a second write.
    let restarted = h.sync(hub(&h).await, SyncConfig::default());
    let fresh = restarted.poll_once().await;
    assert_eq!(fresh.written, 0, "{fresh:?}");
    assert_eq!(skipped(&fresh, SkipReason::Unchanged), 7);
    assert_eq!(h.sim.state.writebacks().len(), writebacks);

    // A later change is picked up: reopening a done ticket moves the finding back to NOTIFIED.
    h.sim
        .state
        .transition_issue(&tickets[4].0.key, "To Do")
        .unwrap();
    let later = sync.poll_once().await;
    assert_eq!(later.written, 1, "{later:?}");
    assert_eq!(
        h.sim.state.finding_workflow(&finding_id(4)).as_deref(),
        Some("NOTIFIED")
    );
}

#[tokio::test]
async fn tickets_the_bridge_closed_and_resolved_findings_are_never_written_back() {
    let h = harness(50).await;
    // The finding was archived, so the bridge closed the ticket itself.
    let (closed, _) = h.jira_ticket(0).await;
    h.record(0, JIRA_RULE, &closed, |r| {
        r.finding_resolved = true;
        r.closed_by_bridge = true;
    })
    .await;
    h.sim.state.transition_issue(&closed.key, "Done").unwrap();
    // The finding was archived, the rule only commented, and someone reopened the ticket.
    let (reopened, _) = h.jira_ticket(1).await;
    h.record(1, JIRA_RULE, &reopened, |r| {
        r.finding_resolved = true;
        r.status_to_hub = Some("RESOLVED".to_owned());
    })
    .await;
    h.sim
        .state
        .transition_issue(&reopened.key, "In Progress")
        .unwrap();
    // A ticket replaced after a recurrence still carries the marker; the record points elsewhere.
    let (replaced, marker) = h.jira_ticket(2).await;
    let (successor, _) = h.jira_ticket(3).await;
    h.record(2, JIRA_RULE, &successor, |_| {}).await;
    h.sim.state.transition_issue(&replaced.key, "Done").unwrap();
    // A labelled ticket no record knows (another environment's bridge).
    let stranger = findings_bridge::marker::Marker::new("other-team", "elsewhere");
    h.jira
        .create(
            &serde_json::json!({"fields": {"project": {"key": "PAY"}, "issuetype": {"name": "Bug"},
                "summary": "theirs", "labels": ["findings-bridge", stranger.as_str()]}}),
            None,
        )
        .await
        .unwrap();

    let writer = Arc::new(RecordingWriter::new());
    let sync = h.sync(writer.clone(), SyncConfig::default());
    let report = sync.poll_once().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.written, 0, "{report:?}");
    assert!(writer.updates().is_empty(), "{:?}", writer.updates());
    assert_eq!(skipped(&report, SkipReason::ClosedByBridge), 1);
    assert_eq!(skipped(&report, SkipReason::FindingResolved), 1);
    assert_eq!(skipped(&report, SkipReason::OtherTicket), 1);
    assert_eq!(skipped(&report, SkipReason::NotBridge), 1);
    assert_eq!(
        h.stored(&marker).await.status_to_hub.as_deref(),
        Some("NOTIFIED")
    );
    assert!(h.sim.state.writebacks().is_empty());
}

#[tokio::test]
async fn findings_security_hub_refuses_are_retried_on_the_next_tick() {
    let h = harness(50).await;
    let (refused, refused_marker) = h.jira_ticket(0).await;
    let (accepted, _) = h.jira_ticket(1).await;
    h.sim.state.transition_issue(&refused.key, "Done").unwrap();
    h.sim.state.transition_issue(&accepted.key, "Done").unwrap();
    h.sim
        .state
        .set_finding_error(&finding_id(0), FindingErrorKind::NotFound);

    let sync = h.sync(hub(&h).await, SyncConfig::default());
    let first = sync.poll_once().await;
    assert_eq!(first.written, 1, "{first:?}");
    assert_eq!(first.unprocessed.len(), 1, "{first:?}");
    assert_eq!(first.unprocessed[0].finding_id, finding_id(0));
    assert_eq!(first.unprocessed[0].ticket, refused.key);
    assert_eq!(first.unprocessed[0].code, "FindingNotFound");
    assert!(!first.is_clean());
    assert_eq!(
        h.stored(&refused_marker).await.status_to_hub.as_deref(),
        Some("NOTIFIED"),
        "a refused write is not recorded as written"
    );
    assert_eq!(
        h.sim.state.finding_workflow(&finding_id(1)).as_deref(),
        Some("RESOLVED")
    );

    h.sim.state.clear_finding_error(&finding_id(0));
    let second = sync.poll_once().await;
    assert_eq!(second.retried, 1, "{second:?}");
    assert_eq!(second.written, 1, "{second:?}");
    assert!(second.is_clean(), "{second:?}");
    assert_eq!(
        h.sim.state.finding_workflow(&finding_id(0)).as_deref(),
        Some("RESOLVED")
    );
    assert_eq!(
        h.stored(&refused_marker).await.status_to_hub.as_deref(),
        Some("RESOLVED")
    );
    let third = sync.poll_once().await;
    assert_eq!((third.retried, third.written), (0, 0), "{third:?}");
}

#[tokio::test]
async fn a_finding_refused_on_every_retry_is_reported_and_dropped() {
    let h = harness(50).await;
    let (ticket, _) = h.jira_ticket(0).await;
    h.sim.state.transition_issue(&ticket.key, "Done").unwrap();
    h.sim
        .state
        .set_finding_error(&finding_id(0), FindingErrorKind::NotFound);
    let config = SyncConfig {
        max_retries: 2,
        ..SyncConfig::default()
    };
    let sync = h.sync(hub(&h).await, config);
    assert_eq!(sync.poll_once().await.unprocessed.len(), 1);
    let retry = sync.poll_once().await;
    assert_eq!(
        (retry.retried, retry.unprocessed.len()),
        (1, 1),
        "{retry:?}"
    );
    let last = sync.poll_once().await;
    assert_eq!(last.retried, 1, "{last:?}");
    assert_eq!(last.abandoned.len(), 1, "{last:?}");
    assert_eq!(last.abandoned[0].ticket, ticket.key);
    let after = sync.poll_once().await;
    assert_eq!(after.retried, 0, "{after:?}");
}

#[tokio::test]
async fn a_failed_write_keeps_the_watermark_so_the_next_poll_reads_the_window_again() {
    let h = harness(50).await;
    let (ticket, marker) = h.jira_ticket(0).await;
    h.sim.state.transition_issue(&ticket.key, "Done").unwrap();
    let writer = Arc::new(RecordingWriter::new());
    writer.fail_with(Some(WriteError::Transient("throttled".into())));
    let sync = h.sync(writer.clone(), SyncConfig::default());

    let failed = sync.poll_once().await;
    assert_eq!(failed.written, 0);
    assert_eq!(failed.errors.len(), 1, "{failed:?}");
    assert!(failed.errors[0].contains("throttled"), "{failed:?}");
    assert_eq!(h.store.watermark("sync:jira").await.unwrap(), None);
    assert_eq!(
        h.stored(&marker).await.status_to_hub.as_deref(),
        Some("NOTIFIED")
    );

    writer.fail_with(None);
    let recovered = sync.poll_once().await;
    assert_eq!(recovered.written, 1, "{recovered:?}");
    assert_eq!(
        recovered.duplicates, 0,
        "a failed ticket is not remembered as seen"
    );
    let updates = writer.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].status, Some(WorkflowStatus::Resolved));
    assert_eq!(updates[0].finding_id, finding_id(0));
    assert!(h.store.watermark("sync:jira").await.unwrap().is_some());
}

#[tokio::test]
async fn work_per_tick_is_bounded_and_the_rest_follows_on_later_ticks() {
    let h = harness(2).await;
    for n in 0..5 {
        let (ticket, _) = h.jira_ticket(n).await;
        h.sim.state.transition_issue(&ticket.key, "Done").unwrap();
    }
    let writer = Arc::new(RecordingWriter::new());
    let config = SyncConfig {
        max_per_tick: 2,
        batch: 1,
        ..SyncConfig::default()
    };
    let sync = h.sync(writer.clone(), config);
    let first = sync.poll_once().await;
    assert_eq!(first.written, 2, "{first:?}");
    assert_eq!(first.truncated, vec!["jira".to_owned()]);
    let mut total = first.written;
    for _ in 0..4 {
        total += sync.poll_once().await.written;
    }
    assert_eq!(total, 5);
    let mut written: Vec<String> = writer.updates().into_iter().map(|u| u.finding_id).collect();
    written.sort();
    written.dedup();
    assert_eq!(written.len(), 5, "every finding written exactly once");
}

#[tokio::test]
async fn servicenow_states_are_polled_and_mapped_through_the_defaults() {
    let h = harness(50).await;
    let (resolved, _) = h.servicenow_ticket(0).await;
    let (canceled, _) = h.servicenow_ticket(1).await;
    let (on_hold, on_hold_marker) = h.servicenow_ticket(2).await;
    h.sim
        .state
        .set_servicenow_state("incident", &resolved.id, "6")
        .unwrap();
    h.sim
        .state
        .set_servicenow_state("incident", &canceled.id, "8")
        .unwrap();
    h.sim
        .state
        .set_servicenow_state("incident", &on_hold.id, "3")
        .unwrap();
    let sync = h.sync(hub(&h).await, SyncConfig::default());
    let report = sync.poll_once().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.written, 2, "{report:?}");
    assert_eq!(
        h.sim.state.finding_workflow(&finding_id(0)).as_deref(),
        Some("RESOLVED")
    );
    assert_eq!(
        h.sim.state.finding_workflow(&finding_id(1)).as_deref(),
        Some("SUPPRESSED")
    );
    assert_eq!(h.sim.state.finding_workflow(&finding_id(2)), None);
    assert_eq!(
        h.stored(&on_hold_marker)
            .await
            .status_from_ticket
            .as_deref(),
        Some("On Hold")
    );
    assert!(report.watermarks.contains_key("servicenow"), "{report:?}");
}

/// Ticket-side requests of the simulated Jira that would mean the bridge touched a ticket.
fn ticket_calls(h: &Harness) -> Vec<(&'static str, u64)> {
    [
        "POST /rest/api/3/issue",
        "PUT /rest/api/3/issue/{key}",
        "POST /rest/api/3/issue/{key}/comment",
        "POST /rest/api/3/issue/{key}/transitions",
    ]
    .into_iter()
    .map(|endpoint| (endpoint, h.sim.state.request_count(endpoint)))
    .collect()
}

fn finding_json(workflow: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bare-asff.json");
    let mut finding: Value =
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("fixture is JSON");
    finding["Workflow"]["Status"] = Value::from(workflow);
    finding["WorkflowState"] = Value::from(workflow);
    serde_json::to_vec(&finding).expect("serializes")
}

#[tokio::test]
async fn round_trip_ticket_done_resolves_the_finding_and_the_echo_touches_no_ticket() {
    let h = harness(50).await;
    let writer: Arc<dyn FindingWriter> = hub(&h).await;
    let store: Arc<dyn Store> = h.store.clone();
    let planner = Arc::new(MappingPlanner::new(
        h.mappings.clone(),
        RenderOptions::default(),
    ));
    let tickets: HashMap<String, Arc<dyn TicketSystem>> = h.tickets();
    let lifecycle = Lifecycle::new(
        store.clone(),
        tickets,
        writer.clone(),
        planner,
        "round-trip",
    );

    // 1. The finding arrives: one ticket, NOTIFIED in Security Hub.
    let finding = decode(&finding_json("NEW")).unwrap().remove(0);
    let outcome = lifecycle
        .process(&finding)
        .await
        .into_result()
        .expect("processed");
    let team = outcome.team("payments").expect("routed to payments");
    assert_eq!(team.actions, vec![Action::Created]);
    let ticket = team.ticket.clone().expect("ticket created");
    assert_eq!(
        h.sim.state.finding_workflow(&finding.id).as_deref(),
        Some("NOTIFIED")
    );

    // 2. Someone finishes the work in Jira; the poller writes RESOLVED.
    h.sim.state.transition_issue(&ticket.key, "Done").unwrap();
    let sync = h.sync(writer.clone(), SyncConfig::default());
    let report = sync.poll_once().await;
    assert_eq!(report.written, 1, "{report:?}");
    assert_eq!(
        h.sim.state.finding_workflow(&finding.id).as_deref(),
        Some("RESOLVED")
    );
    let notes = h.sim.state.finding(&finding.id).unwrap().notes;
    assert!(
        notes.last().is_some_and(|n| n.contains(&ticket.key)),
        "{notes:?}"
    );

    // 3. Security Hub emits the echo of our write: same finding, same UpdatedAt, RESOLVED.
    let before = ticket_calls(&h);
    let writebacks = h.sim.state.writebacks().len();
    let echo = decode(&finding_json("RESOLVED")).unwrap().remove(0);
    assert_eq!(echo.updated_at, finding.updated_at);
    let outcome = lifecycle
        .process(&echo)
        .await
        .into_result()
        .expect("echo processed");
    assert_eq!(
        outcome.team("payments").map(|t| t.actions.clone()),
        Some(vec![Action::Noop])
    );
    assert_eq!(ticket_calls(&h), before, "the echo caused no ticket call");
    assert_eq!(h.sim.state.jira_issues().len(), 1);

    // 4. And the next poll does not write the same status again.
    let quiet = sync.poll_once().await;
    assert_eq!(quiet.written, 0, "{quiet:?}");
    // Nor does a freshly started process, which only has the store to go by.
    let restarted = h
        .sync(writer.clone(), SyncConfig::default())
        .poll_once()
        .await;
    assert_eq!(restarted.written, 0, "{restarted:?}");
    assert_eq!(h.sim.state.writebacks().len(), writebacks);
    assert_eq!(ticket_calls(&h), before);
}

#[tokio::test]
async fn run_polls_at_once_and_stops_on_shutdown() {
    let h = harness(50).await;
    let (ticket, marker) = h.jira_ticket(0).await;
    h.sim.state.transition_issue(&ticket.key, "Done").unwrap();
    let config = SyncConfig {
        interval: std::time::Duration::from_secs(3600),
        ..SyncConfig::default()
    };
    let sync = Arc::new(h.sync(hub(&h).await, config));
    let shutdown = findings_bridge::runtime::shutdown::Shutdown::new();
    let task = tokio::spawn(Arc::clone(&sync).run(shutdown.clone()));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.stored(&marker).await.status_to_hub.as_deref() != Some("RESOLVED") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first poll runs without waiting for the interval"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    shutdown.trigger();
    tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .expect("run stops on shutdown, not after the hour-long interval")
        .expect("run did not panic");
    assert_eq!(
        h.sim.state.finding_workflow(&finding_id(0)).as_deref(),
        Some("RESOLVED")
    );
}
