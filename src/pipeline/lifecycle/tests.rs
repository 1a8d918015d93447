use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::aws::securityhub::WriteError;
use crate::finding::RecordState;
use crate::testing::{
    self, Call, FakePlanner, FakeTickets, MemoryStore, RecordingWriter, Route, finding, priority,
    transient,
};

const H: Severity = Severity::High;
const C: Severity = Severity::Critical;
const I: Severity = Severity::Informational;

struct Harness {
    store: Arc<MemoryStore>,
    jira: Arc<FakeTickets>,
    writer: Arc<RecordingWriter>,
    planner: Arc<FakePlanner>,
    lifecycle: Arc<Lifecycle>,
}

fn harness(routes: Vec<Route>) -> Harness {
    let store = Arc::new(MemoryStore::default());
    let jira = Arc::new(FakeTickets::new("jira"));
    let writer = Arc::new(RecordingWriter::new());
    let planner = Arc::new(FakePlanner::new(routes));
    let mut tickets: HashMap<String, Arc<dyn TicketSystem>> = HashMap::new();
    tickets.insert("jira".into(), jira.clone());
    let lifecycle = Arc::new(Lifecycle::new(
        store.clone(),
        tickets,
        writer.clone(),
        planner.clone(),
        "test-host:1",
    ));
    Harness {
        store,
        jira,
        writer,
        planner,
        lifecycle,
    }
}

fn payments(severities: &[Severity]) -> Route {
    Route::new("payments", severities)
}

fn archived(mut f: Finding) -> Finding {
    f.record_state = RecordState::Archived;
    f
}

fn compliance(mut f: Finding, status: &str) -> Finding {
    f.compliance.status = Some(status.to_owned());
    f
}

fn actions(outcome: &Outcome, team: &str) -> Vec<Action> {
    outcome
        .team(team)
        .map(|t| t.actions.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_new_finding_gets_one_ticket_a_record_and_a_notified_write_back() {
    let h = harness(vec![payments(&[H, C])]);
    let f = finding("f-1", H, "2026-11-28T10:00:00Z");
    let outcome = h
        .lifecycle
        .process(&f)
        .await
        .into_result()
        .expect("processed");

    assert_eq!(actions(&outcome, "payments"), vec![Action::Created]);
    let marker = Marker::new("payments", "f-1");
    assert_eq!(
        h.jira.calls()[0],
        Call::Find(marker.to_string()),
        "searches for the marker before creating"
    );
    assert_eq!(h.jira.creates(), 1);

    let record = h.store.record(&marker).expect("record written");
    let ticket = record.ticket.clone().expect("record names the ticket");
    assert_eq!(ticket.key, "PAY-1");
    assert_eq!(record.rule, "main");
    assert_eq!(record.severity, "HIGH");
    assert_eq!(record.updated_at.as_deref(), Some("2026-11-28T10:00:00Z"));
    assert_eq!(record.fingerprint, fingerprint(H, &f));
    assert!(!record.finding_resolved);
    assert_eq!(record.status_to_hub.as_deref(), Some("NOTIFIED"));
    assert!(!h.store.is_claimed(&marker), "put released the claim");

    let updates = h.writer.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].status, Some(WorkflowStatus::Notified));
    assert_eq!(updates[0].severity, None, "no override, no severity write");
    assert!(updates[0].note.contains("PAY-1"), "{}", updates[0].note);
    assert!(updates[0].note.contains(&ticket.url), "{}", updates[0].note);
    assert_eq!(updates[0].target, f.write_back);
}

#[tokio::test]
async fn a_ticket_created_before_a_crash_is_recovered_not_duplicated() {
    let h = harness(vec![payments(&[H])]);
    let marker = Marker::new("payments", "f-1");
    let existing = h.jira.insert_existing(&marker, "PAY-77");
    let outcome = h
        .lifecycle
        .process(&finding("f-1", H, "2026-11-28T10:00:00Z"))
        .await
        .into_result()
        .expect("processed");
    assert_eq!(actions(&outcome, "payments"), vec![Action::Recovered]);
    assert_eq!(h.jira.creates(), 0);
    assert_eq!(
        h.store.record(&marker).and_then(|r| r.ticket),
        Some(existing)
    );
    assert_eq!(
        h.writer.updates().len(),
        1,
        "the NOTIFIED write-back is redone"
    );
}

#[tokio::test]
async fn the_same_finding_delivered_five_times_at_once_creates_one_ticket() {
    let h = harness(vec![payments(&[H])]);
    // Search lags behind creates, like Jira: only the claim can prevent duplicates.
    *testing::lock(&h.jira.search_lags) = true;
    let f = finding("f-1", H, "2026-11-28T10:00:00Z");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let lifecycle = h.lifecycle.clone();
        let f = f.clone();
        tasks.spawn(async move { lifecycle.process(&f).await.into_result() });
    }
    let mut created = 0;
    let mut busy = 0;
    while let Some(result) = tasks.join_next().await {
        match result.expect("task did not panic") {
            Ok(outcome) => {
                if actions(&outcome, "payments") == vec![Action::Created] {
                    created += 1;
                }
            }
            Err(e) => {
                assert!(e.is_transient(), "busy is transient: {e}");
                assert_eq!(e.kind().as_str(), "busy");
                busy += 1;
            }
        }
    }
    assert_eq!(created, 1);
    assert_eq!(h.jira.creates(), 1);
    // The redeliveries of the busy ones find the record and do nothing.
    for _ in 0..busy {
        let outcome = h
            .lifecycle
            .process(&f)
            .await
            .into_result()
            .expect("redelivery");
        assert_eq!(actions(&outcome, "payments"), vec![Action::Noop]);
    }
    assert_eq!(h.jira.creates(), 1);
}

#[tokio::test]
async fn an_older_version_arriving_late_is_ignored() {
    let h = harness(vec![payments(&[H, C])]);
    h.lifecycle
        .process(&finding("f-1", C, "2026-11-28T12:00:00Z"))
        .await
        .into_result()
        .expect("newer first");
    h.jira.clear_calls();
    let outcome = h
        .lifecycle
        .process(&finding("f-1", H, "2026-11-28T11:00:00Z"))
        .await
        .into_result()
        .expect("older");
    assert_eq!(actions(&outcome, "payments"), vec![Action::Stale]);
    assert!(
        h.jira.calls().is_empty(),
        "no ticket call for a stale version"
    );
    let record = h
        .store
        .record(&Marker::new("payments", "f-1"))
        .expect("record");
    assert_eq!(record.severity, "CRITICAL");
    assert!(!h.store.is_claimed(&record.marker));
}

#[tokio::test]
async fn the_echo_of_our_own_write_back_is_a_no_op() {
    let h = harness(vec![payments(&[H])]);
    let f = finding("f-1", H, "2026-11-28T10:00:00Z");
    h.lifecycle.process(&f).await.into_result().expect("first");
    h.jira.clear_calls();
    let mut echo = f.clone();
    echo.workflow_status = WorkflowStatus::Notified;
    let outcome = h
        .lifecycle
        .process(&echo)
        .await
        .into_result()
        .expect("echo");
    assert_eq!(actions(&outcome, "payments"), vec![Action::Noop]);
    assert!(h.jira.calls().is_empty());
    assert_eq!(h.writer.updates().len(), 1, "no second write-back");
}

#[tokio::test]
async fn an_unchanged_newer_version_moves_the_staleness_watermark() {
    let h = harness(vec![payments(&[H, C])]);
    h.lifecycle
        .process(&finding("f-1", H, "2026-11-28T10:00:00Z"))
        .await
        .into_result()
        .expect("v1");
    h.lifecycle
        .process(&finding("f-1", H, "2026-11-28T12:00:00Z"))
        .await
        .into_result()
        .expect("v3, same content");
    h.jira.clear_calls();
    // v2 (CRITICAL) is older than v3 (HIGH): applying it would leave the ticket wrong.
    let outcome = h
        .lifecycle
        .process(&finding("f-1", C, "2026-11-28T11:00:00Z"))
        .await
        .into_result()
        .expect("v2");
    assert_eq!(actions(&outcome, "payments"), vec![Action::Stale]);
    assert!(h.jira.calls().is_empty());
}

#[tokio::test]
async fn a_severity_change_updates_the_priority_and_comments() {
    let h = harness(vec![payments(&[H, C])]);
    h.lifecycle
        .process(&finding("f-1", H, "2026-11-28T10:00:00Z"))
        .await
        .into_result()
        .expect("create");
    h.jira.clear_calls();
    let outcome = h
        .lifecycle
        .process(&finding("f-1", C, "2026-11-28T11:00:00Z"))
        .await
        .into_result()
        .expect("update");
    assert_eq!(
        actions(&outcome, "payments"),
        vec![Action::SeverityChanged {
            from: "HIGH".into(),
            to: C
        }]
    );
    let calls = h.jira.calls();
    assert_eq!(calls[0], Call::UpdateFields("PAY-1".into(), priority(C)));
    // The comment carries the reference a retry of the same event looks for first.
    let reference = crate::pipeline::lifecycle::comment_reference(
        &Marker::new("payments", "f-1"),
        "severity:HIGH:CRITICAL:2026-11-28T11:00:00Z",
    );
    assert_eq!(
        calls[1..],
        [Call::Comment(
            "PAY-1".into(),
            format!("Severity changed from HIGH to CRITICAL.\n\n(findings-bridge {reference})")
        )]
    );
    let record = h
        .store
        .record(&Marker::new("payments", "f-1"))
        .expect("record");
    assert_eq!(record.severity, "CRITICAL");
    assert_eq!(record.updated_at.as_deref(), Some("2026-11-28T11:00:00Z"));
}

#[tokio::test]
async fn resolution_follows_the_rules_on_resolved_option() {
    for (option, expected) in [
        (OnResolved::Close, Action::Closed),
        (OnResolved::Comment, Action::ResolutionCommented),
        (OnResolved::Ignore, Action::ResolutionIgnored),
    ] {
        let mut route = payments(&[H]);
        route.options.on_resolved = option;
        let h = harness(vec![route]);
        let f = compliance(finding("f-1", H, "2026-11-28T10:00:00Z"), "FAILED");
        h.lifecycle.process(&f).await.into_result().expect("create");
        h.jira.clear_calls();
        let passed = compliance(finding("f-1", H, "2026-11-28T11:00:00Z"), "PASSED");
        let outcome = h
            .lifecycle
            .process(&passed)
            .await
            .into_result()
            .expect("resolve");
        assert_eq!(actions(&outcome, "payments"), vec![expected.clone()]);
        let record = h
            .store
            .record(&Marker::new("payments", "f-1"))
            .expect("record");
        assert!(record.finding_resolved);
        match option {
            OnResolved::Close => {
                assert_eq!(h.jira.is_done("PAY-1"), Some(true));
                assert!(record.closed_by_bridge);
                assert!(h.jira.comments()[0].contains("compliance PASSED"));
            }
            OnResolved::Comment => {
                assert_eq!(h.jira.is_done("PAY-1"), Some(false));
                assert_eq!(h.jira.comments().len(), 1);
            }
            OnResolved::Ignore => assert!(h.jira.calls().is_empty()),
        }
        // Archiving as well does not close twice.
        h.jira.clear_calls();
        let gone = archived(compliance(
            finding("f-1", H, "2026-11-28T12:00:00Z"),
            "PASSED",
        ));
        h.lifecycle
            .process(&gone)
            .await
            .into_result()
            .expect("archived too");
        assert!(
            h.jira.calls().is_empty(),
            "{option:?}: {:?}",
            h.jira.calls()
        );
    }
}

#[tokio::test]
async fn a_recurrence_reopens_the_closed_ticket() {
    let h = harness(vec![payments(&[H])]);
    h.lifecycle
        .process(&finding("f-1", H, "2026-11-28T10:00:00Z"))
        .await
        .into_result()
        .expect("create");
    h.lifecycle
        .process(&archived(finding("f-1", H, "2026-11-28T11:00:00Z")))
        .await
        .into_result()
        .expect("close");
    assert_eq!(h.jira.is_done("PAY-1"), Some(true));
    h.jira.clear_calls();

    let outcome = h
        .lifecycle
        .process(&finding("f-1", H, "2026-11-28T12:00:00Z"))
        .await
        .into_result()
        .expect("recur");
    assert_eq!(actions(&outcome, "payments"), vec![Action::Reopened]);
    assert_eq!(h.jira.is_done("PAY-1"), Some(false));
    assert!(h.jira.calls().contains(&Call::Reopen("PAY-1".into())));
    assert_eq!(h.jira.creates(), 0);
    let record = h
        .store
        .record(&Marker::new("payments", "f-1"))
        .expect("record");
    assert!(!record.finding_resolved && !record.closed_by_bridge);
}

#[tokio::test]
async fn a_recurrence_opens_a_new_ticket_when_the_rule_says_new() {
    let mut route = payments(&[H]);
    route.options.on_recurrence = OnRecurrence::New;
    let h = harness(vec![route]);
    h.lifecycle
        .process(&finding("f-1", H, "2026-11-28T10:00:00Z"))
        .await
        .into_result()
        .expect("create");
    h.lifecycle
        .process(&archived(finding("f-1", H, "2026-11-28T11:00:00Z")))
        .await
        .into_result()
        .expect("close");
    let outcome = h
        .lifecycle
        .process(&finding("f-1", H, "2026-11-28T12:00:00Z"))
        .await
        .into_result()
        .expect("recur");
    let team = outcome.team("payments").expect("payments followed");
    assert!(
        matches!(&team.actions[..], [Action::Replaced { previous }] if previous.key == "PAY-1"),
        "{:?}",
        team.actions
    );
    assert_eq!(h.jira.creates(), 2);
    assert_eq!(
        h.jira.is_done("PAY-1"),
        Some(true),
        "the old ticket stays closed"
    );
    let record = h
        .store
        .record(&Marker::new("payments", "f-1"))
        .expect("record");
    assert_eq!(record.ticket.map(|t| t.key), Some("PAY-2".into()));
    assert!(!record.finding_resolved);
    let last = h
        .writer
        .updates()
        .pop()
        .expect("write-back for the new ticket");
    assert!(last.note.contains("PAY-2"));
}

#[tokio::test]
async fn a_finding_routed_to_two_teams_gets_two_tickets_and_one_write_back() {
    let h = harness(vec![payments(&[H]), Route::new("platform", &[H])]);
    let outcome = h
        .lifecycle
        .process(&finding("f-1", H, "2026-11-28T10:00:00Z"))
        .await
        .into_result()
        .expect("processed");
    assert_eq!(actions(&outcome, "payments"), vec![Action::Created]);
    assert_eq!(actions(&outcome, "platform"), vec![Action::Created]);
    assert_eq!(h.jira.creates(), 2);
    assert_eq!(h.store.records().len(), 2);
    let updates = h.writer.updates();
    assert_eq!(
        updates.len(),
        1,
        "Security Hub rejects a batch naming a finding twice"
    );
    assert!(updates[0].note.contains("PAY-1") && updates[0].note.contains("PAY-2"));
}

#[tokio::test]
async fn a_ticket_routing_no_longer_picks_is_still_closed_on_resolution() {
    // Only HIGH findings route to payments; the PASSED version is INFORMATIONAL.
    let h = harness(vec![payments(&[H])]);
    h.lifecycle
        .process(&compliance(
            finding("f-1", H, "2026-11-28T10:00:00Z"),
            "FAILED",
        ))
        .await
        .into_result()
        .expect("create");
    h.jira.clear_calls();
    let passed = compliance(finding("f-1", I, "2026-11-28T11:00:00Z"), "PASSED");
    assert!(h.planner.plan(&passed).is_empty(), "not routed");
    let outcome = h
        .lifecycle
        .process(&passed)
        .await
        .into_result()
        .expect("resolve");
    assert_eq!(actions(&outcome, "payments"), vec![Action::Closed]);
    assert_eq!(h.jira.is_done("PAY-1"), Some(true));
    assert!(
        !h.jira
            .calls()
            .iter()
            .any(|c| matches!(c, Call::UpdateFields(..))),
        "a resolved finding's severity drop is not pushed to the ticket"
    );
    // And recurrence reopens it even though routing still does not pick it.
    let failed_again = compliance(finding("f-1", I, "2026-11-28T12:00:00Z"), "FAILED");
    let outcome = h
        .lifecycle
        .process(&failed_again)
        .await
        .into_result()
        .expect("recur");
    assert_eq!(actions(&outcome, "payments"), vec![Action::Reopened]);
}

#[tokio::test]
async fn unrouted_findings_touch_nothing() {
    let h = harness(vec![payments(&[C])]);
    let outcome = h
        .lifecycle
        .process(&finding("f-1", H, "2026-11-28T10:00:00Z"))
        .await
        .into_result()
        .expect("processed");
    assert!(outcome.is_unrouted());
    assert!(h.jira.calls().is_empty());
    assert!(h.store.records().is_empty());
}

#[tokio::test]
async fn an_already_resolved_finding_without_a_ticket_gets_none() {
    let h = harness(vec![payments(&[H])]);
    let outcome = h
        .lifecycle
        .process(&archived(finding("f-1", H, "2026-11-28T10:00:00Z")))
        .await
        .into_result()
        .expect("processed");
    assert_eq!(actions(&outcome, "payments"), vec![Action::SkippedResolved]);
    assert_eq!(h.jira.creates(), 0);
    assert!(!h.store.is_claimed(&Marker::new("payments", "f-1")));
}

#[tokio::test]
async fn a_claim_held_elsewhere_is_a_transient_error() {
    let h = harness(vec![payments(&[H])]);
    let marker = Marker::new("payments", "f-1");
    let claim = h
        .store
        .claim(&marker, "other-host:9:0", Duration::from_secs(60))
        .await
        .expect("claim");
    assert_eq!(claim, Claim::Acquired(Default::default()));
    let err = h
        .lifecycle
        .process(&finding("f-1", H, "2026-11-28T10:00:00Z"))
        .await
        .into_result()
        .expect_err("busy");
    assert!(err.is_transient());
    assert!(matches!(err, LifecycleError::Busy { .. }));
    assert!(h.jira.calls().is_empty());
}

#[tokio::test]
async fn a_transient_ticket_error_releases_the_claim_and_writes_nothing() {
    let h = harness(vec![payments(&[H])]);
    h.jira.fail("create", transient("create"));
    let f = finding("f-1", H, "2026-11-28T10:00:00Z");
    let err = h
        .lifecycle
        .process(&f)
        .await
        .into_result()
        .expect_err("create fails");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.kind().as_str(), "ticket");
    let marker = Marker::new("payments", "f-1");
    assert!(!h.store.is_claimed(&marker), "claim released for the retry");
    assert!(h.store.record(&marker).is_none());
    assert!(h.writer.updates().is_empty());

    // The retry succeeds at once: nothing waits for a lease to expire.
    testing::lock(&h.jira.failures).clear();
    let outcome = h.lifecycle.process(&f).await.into_result().expect("retry");
    assert_eq!(actions(&outcome, "payments"), vec![Action::Created]);
}

#[tokio::test]
async fn a_permanent_ticket_error_stays_permanent_and_other_teams_still_get_tickets() {
    let mut broken = Route::new("platform", &[H]);
    broken.target = "servicenow"; // no such connection configured
    let h = harness(vec![payments(&[H]), broken]);
    let err = h
        .lifecycle
        .process(&finding("f-1", H, "2026-11-28T10:00:00Z"))
        .await
        .into_result()
        .expect_err("platform has no connection");
    assert!(!err.is_transient());
    assert_eq!(err.kind().as_str(), "config");
    assert!(err.to_string().contains("servicenow"), "{err}");
    assert_eq!(h.jira.creates(), 1, "payments still got its ticket");
    assert!(h.store.record(&Marker::new("payments", "f-1")).is_some());
}

#[tokio::test]
async fn a_template_failure_is_permanent_and_touches_nothing() {
    let h = harness(vec![payments(&[H])]);
    *testing::lock(&h.planner.error) = Some("payments.toml:12: summary: undefined value".into());
    let err = h
        .lifecycle
        .process(&finding("f-1", H, "2026-11-28T10:00:00Z"))
        .await
        .into_result()
        .expect_err("plan fails");
    assert!(!err.is_transient());
    assert_eq!(err.kind().as_str(), "render");
    assert!(h.jira.calls().is_empty());
}

#[tokio::test]
async fn a_failed_write_back_does_not_undo_the_ticket() {
    let h = harness(vec![payments(&[H])]);
    h.writer
        .fail_with(Some(WriteError::Transient("throttled".into())));
    let outcome = h
        .lifecycle
        .process(&finding("f-1", H, "2026-11-28T10:00:00Z"))
        .await
        .into_result()
        .expect("ticket work succeeds");
    assert_eq!(actions(&outcome, "payments"), vec![Action::Created]);
    let record = h
        .store
        .record(&Marker::new("payments", "f-1"))
        .expect("recorded");
    assert_eq!(
        record.status_to_hub, None,
        "nothing was written to Security Hub"
    );
}

#[tokio::test]
async fn an_overridden_severity_is_written_back_with_a_reason() {
    let mut route = payments(&[H]);
    route.severity_override = Some(C);
    let h = harness(vec![route]);
    h.lifecycle
        .process(&finding("f-1", H, "2026-11-28T10:00:00Z"))
        .await
        .into_result()
        .expect("processed");
    let update = h.writer.updates().pop().expect("write-back");
    assert_eq!(update.severity, Some(C));
    assert!(
        update.note.contains("severity set to CRITICAL"),
        "{}",
        update.note
    );
    // The echo (Security Hub now says CRITICAL) is a no-op.
    h.jira.clear_calls();
    let mut echo = finding("f-1", H, "2026-11-28T10:00:00Z");
    echo.workflow_status = WorkflowStatus::Notified;
    let outcome = h
        .lifecycle
        .process(&echo)
        .await
        .into_result()
        .expect("echo");
    assert_eq!(actions(&outcome, "payments"), vec![Action::Noop]);
}

#[tokio::test(start_paused = true)]
async fn abandoned_claims_are_released() {
    let h = harness(vec![payments(&[H])]);
    let mut slow = FakeTickets::new("jira");
    slow.create_delay = Duration::from_secs(30);
    let slow = Arc::new(slow);
    let mut tickets: HashMap<String, Arc<dyn TicketSystem>> = HashMap::new();
    tickets.insert("jira".into(), slow.clone());
    let lifecycle = Arc::new(Lifecycle::new(
        h.store.clone(),
        tickets,
        h.writer.clone(),
        h.planner.clone(),
        "test-host:2",
    ));
    let f = finding("f-1", H, "2026-11-28T10:00:00Z");
    let task = {
        let lifecycle = lifecycle.clone();
        tokio::spawn(async move { lifecycle.process(&f).await.into_result() })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let marker = Marker::new("payments", "f-1");
    assert!(
        h.store.is_claimed(&marker),
        "work in flight holds the claim"
    );
    task.abort();
    let _ = task.await;
    assert_eq!(lifecycle.release_abandoned().await, 1);
    assert!(!h.store.is_claimed(&marker));
}

/// A harness whose lifecycle skips the marker search where the store vouches for the finding.
fn vouching_harness(routes: Vec<Route>) -> Harness {
    let mut h = harness(routes);
    let lifecycle = Arc::into_inner(h.lifecycle).expect("the harness holds the only reference");
    h.lifecycle = Arc::new(lifecycle.with_marker_search(MarkerSearch::WhenUnvouched));
    h
}

/// A finding first seen at `first_seen` (ASFF `FirstObservedAt` and `CreatedAt`).
fn first_seen(id: &str, first_seen: chrono::DateTime<chrono::Utc>) -> Finding {
    let at = first_seen.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut f = finding(id, H, &at);
    f.first_observed_at = Some(at.clone());
    f.created_at = Some(at);
    f
}

#[tokio::test]
async fn a_finding_newer_than_the_store_is_created_without_a_search_and_an_older_one_is_searched_for()
 {
    let h = vouching_harness(vec![payments(&[H])]);
    let store_start = chrono::Utc::now() - chrono::Duration::days(3);
    h.store
        .set_watermark(
            super::vouch::VOUCHED_SINCE,
            &store_start.timestamp_millis().to_string(),
        )
        .await
        .unwrap();

    // First seen after the store's start: no record and no intent means no ticket.
    let new = first_seen("new", store_start + chrono::Duration::days(1));
    h.lifecycle.process(&new).await.into_result().expect("new");
    assert_eq!(h.jira.creates(), 1);
    assert!(
        !h.jira.calls().iter().any(|c| matches!(c, Call::Find(_))),
        "{:?}",
        h.jira.calls()
    );

    // First seen before it: a ticket may exist that this store never recorded (a lost or
    // migrated store), so it is searched for — and found, not duplicated.
    let old = first_seen("old", store_start - chrono::Duration::days(1));
    let marker = Marker::new("payments", "old");
    let existing = h.jira.insert_existing(&marker, "PAY-77");
    let outcome = h.lifecycle.process(&old).await.into_result().expect("old");
    assert_eq!(actions(&outcome, "payments"), vec![Action::Recovered]);
    assert_eq!(
        h.store.record(&marker).and_then(|r| r.ticket),
        Some(existing)
    );
    assert_eq!(
        h.jira.creates(),
        1,
        "the old finding's ticket was found, not made again"
    );

    // Within the clock-skew margin of the store's start, or without any first-seen time: search.
    let close = first_seen("close", store_start + chrono::Duration::minutes(1));
    let mut unknown = finding("unknown", H, "2026-11-28T10:00:00Z");
    unknown.first_observed_at = None;
    unknown.created_at = None;
    for f in [&close, &unknown] {
        let before = h.jira.calls().len();
        h.lifecycle
            .process(f)
            .await
            .into_result()
            .expect("processed");
        assert_eq!(
            h.jira.calls()[before],
            Call::Find(Marker::new("payments", &f.id).to_string()),
            "{}",
            f.id
        );
    }
}

#[tokio::test]
async fn a_store_without_a_start_of_use_marks_it_now_and_vouches_only_from_then() {
    let h = vouching_harness(vec![payments(&[H])]);
    // A finding from last week meets a store used for the first time: searched for.
    let old = first_seen("last-week", chrono::Utc::now() - chrono::Duration::days(7));
    h.lifecycle.process(&old).await.into_result().expect("old");
    assert_eq!(
        h.jira.calls()[0],
        Call::Find(Marker::new("payments", "last-week").to_string())
    );
    let since: i64 = h
        .store
        .watermark(super::vouch::VOUCHED_SINCE)
        .await
        .unwrap()
        .expect("the store's start of use is recorded")
        .parse()
        .unwrap();
    assert!(since > old_millis(&old));
}

fn old_millis(f: &Finding) -> i64 {
    crate::time::parse_time(f.first_observed_at.as_deref().unwrap())
        .unwrap()
        .timestamp_millis()
}

#[tokio::test]
async fn an_intent_or_the_always_policy_keeps_the_search() {
    // The default policy searches before every create, whatever the store vouches for.
    let h = harness(vec![payments(&[H])]);
    let start = chrono::Utc::now() - chrono::Duration::days(3);
    h.store
        .set_watermark(
            super::vouch::VOUCHED_SINCE,
            &start.timestamp_millis().to_string(),
        )
        .await
        .unwrap();
    let f = first_seen("f-1", start + chrono::Duration::days(1));
    h.lifecycle
        .process(&f)
        .await
        .into_result()
        .expect("processed");
    assert!(
        matches!(h.jira.calls()[0], Call::Find(_)),
        "{:?}",
        h.jira.calls()
    );

    // An intent left by a create whose outcome is unknown: searched for, whatever the policy.
    let h = vouching_harness(vec![payments(&[H])]);
    h.store
        .set_watermark(
            super::vouch::VOUCHED_SINCE,
            &start.timestamp_millis().to_string(),
        )
        .await
        .unwrap();
    let marker = Marker::new("payments", "f-1");
    let claim = h
        .store
        .claim(&marker, "earlier", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Acquired(_)));
    let intent = Intent {
        owner: "earlier".into(),
        system: "jira".into(),
        started_at: 0,
        search_after: 0,
    };
    h.store
        .set_intent(&marker, "earlier", Some(&intent))
        .await
        .unwrap();
    h.store.release(&marker, "earlier").await.unwrap();
    h.lifecycle
        .process(&f)
        .await
        .into_result()
        .expect("processed");
    assert!(
        matches!(h.jira.calls()[0], Call::Find(_)),
        "{:?}",
        h.jira.calls()
    );
    assert_eq!(h.jira.creates(), 1);
}
