//! The lifecycle under the faults production always has: creates whose outcome is unknown, a
//! search index that lags, resolutions that arrive before older active events, leases lost
//! mid-work, duplicates already in the ticket system. Each test names the cause of the
//! exactly-once issue it pins down; each fails on the lifecycle as it was before.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::finding::RecordState;
use crate::testing::{
    FakePlanner, FakeTickets, MemoryStore, RecordingWriter, Route, finding, lock,
};

const H: Severity = Severity::High;

struct Harness {
    store: Arc<MemoryStore>,
    jira: Arc<FakeTickets>,
    planner: Arc<FakePlanner>,
    writer: Arc<RecordingWriter>,
}

impl Harness {
    fn new(routes: Vec<Route>) -> Harness {
        Harness {
            store: Arc::new(MemoryStore::default()),
            jira: Arc::new(FakeTickets::new("jira")),
            planner: Arc::new(FakePlanner::new(routes)),
            writer: Arc::new(RecordingWriter::new()),
        }
    }

    /// One replica: its own lifecycle (owner id) over the shared store and ticket system.
    fn replica(&self, name: &str) -> Lifecycle {
        let mut tickets: HashMap<String, Arc<dyn TicketSystem>> = HashMap::new();
        tickets.insert("jira".into(), self.jira.clone());
        Lifecycle::new(
            self.store.clone(),
            tickets,
            self.writer.clone(),
            self.planner.clone(),
            name,
        )
    }

    /// A harness whose creates take `delay` (until `finish_creates`), so work can be caught
    /// in the middle of one.
    fn with_slow_creates(routes: Vec<Route>, delay: Duration) -> Harness {
        let mut jira = FakeTickets::new("jira");
        jira.create_delay = delay;
        Harness {
            jira: Arc::new(jira),
            ..Harness::new(routes)
        }
    }

    /// Waits for the condition the test means: a create request is in flight.
    async fn until_a_create_is_in_flight(&self) {
        while self.jira.creates() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn settle(&self, d: Duration) {
        *lock(&self.jira.settle) = d;
    }
}

fn payments() -> Route {
    Route::new("payments", &[H, Severity::Informational])
}

/// The payments route with `on_recurrence = new`: a recurrence gets a new ticket.
fn replacing() -> Route {
    let mut route = payments();
    route.options.on_recurrence = crate::mapping::spec::OnRecurrence::New;
    route
}

/// Processes `f` and expects every route to succeed.
async fn followed(lifecycle: &Lifecycle, f: &Finding, what: &str) -> Outcome {
    lifecycle
        .process(f)
        .await
        .into_result()
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn archived(mut f: Finding) -> Finding {
    f.record_state = RecordState::Archived;
    f
}

fn marker() -> Marker {
    Marker::new("payments", "f-1")
}

fn settling(err: &LifecycleError) -> bool {
    matches!(err, LifecycleError::Settling { .. })
}

fn lost_claim(err: &LifecycleError) -> bool {
    matches!(
        err,
        LifecycleError::Store {
            source: StoreError::LostClaim(_),
            ..
        }
    )
}

/// Cause 1 and the intent: a create answered 502 after the ticket was committed is not sent
/// again. The intent stays; until the settle time has passed nobody searches or creates; after
/// it, the search finds the ticket and it is recovered, not duplicated.
#[tokio::test]
async fn an_unknown_outcome_create_is_searched_for_after_the_settle_time_never_repeated() {
    let h = Harness::new(vec![payments()]);
    h.settle(Duration::from_secs(600));
    *lock(&h.jira.ambiguous) = 1;
    *lock(&h.jira.search_lags) = true;
    let a = h.replica("a");
    let f = finding("f-1", H, "2026-11-28T10:00:00Z");

    let err = a.process(&f).await.into_result().expect_err("unknown");
    assert!(settling(&err), "{err}");
    let wait = err.retry_after().expect("a settling create says how long");
    assert!(wait > Duration::from_secs(500), "{wait:?}");
    assert_eq!(h.jira.creates(), 1);
    let intent = h.store.intent(&marker()).expect("the intent stays");
    assert!(intent.owner.starts_with("a:"));
    assert!(
        !h.store.is_claimed(&marker()),
        "the claim itself is released"
    );

    // Redelivered at once, to another replica, while the index still lags: no search, no create.
    h.jira.clear_calls();
    let b = h.replica("b");
    let err = b
        .process(&f)
        .await
        .into_result()
        .expect_err("still settling");
    assert!(settling(&err), "{err}");
    assert!(h.jira.calls().is_empty(), "{:?}", h.jira.calls());

    // The settle time passes and the index catches up: the ticket is found and recorded.
    h.store.age_intents();
    *lock(&h.jira.search_lags) = false;
    let outcome = b.process(&f).await.into_result().expect("recovered");
    assert_eq!(
        outcome.team("payments").unwrap().actions[0],
        Action::Recovered
    );
    assert_eq!(
        h.jira.creates(),
        0,
        "never created twice (calls were cleared after the first)"
    );
    assert_eq!(h.jira.tickets().len(), 1);
    assert!(
        h.store.intent(&marker()).is_none(),
        "recording clears the intent"
    );
    assert!(h.store.record(&marker()).is_some());
    // The NOTIFIED write-back that the lost answer prevented is made now.
    assert_eq!(h.writer.updates().len(), 1);
}

/// An unknown outcome whose create never reached the ticket system: after the settle time the
/// search finds nothing, and only then is the ticket created.
#[tokio::test]
async fn a_create_that_did_not_happen_is_made_once_the_search_can_be_trusted() {
    let h = Harness::new(vec![payments()]);
    let f = finding("f-1", H, "2026-11-28T10:00:00Z");
    h.settle(Duration::from_secs(600));
    h.jira.fail("create", crate::testing::unknown("create"));
    let a = h.replica("a");
    assert!(settling(
        &a.process(&f).await.into_result().expect_err("unknown")
    ));
    assert!(h.jira.tickets().is_empty());
    lock(&h.jira.failures).clear();
    h.store.age_intents();
    let outcome = a.process(&f).await.into_result().expect("created");
    assert_eq!(
        outcome.team("payments").unwrap().actions,
        vec![Action::Created]
    );
    assert_eq!(h.jira.tickets().len(), 1);
}

/// Cause 2: work aborted mid-create (a deployment's SIGTERM past the grace period) keeps its
/// intent when its claim is handed back, so the next holder waits out the index instead of
/// racing it.
#[tokio::test]
async fn an_aborted_create_keeps_its_intent_when_its_claim_is_released() {
    let h = Harness::with_slow_creates(vec![payments()], Duration::from_secs(3600));
    h.settle(Duration::from_secs(600));
    *lock(&h.jira.search_lags) = true;
    let a = Arc::new(h.replica("a"));
    let f = finding("f-1", H, "2026-11-28T10:00:00Z");
    let work = {
        let (a, f) = (a.clone(), f.clone());
        tokio::spawn(async move { a.process(&f).await })
    };
    // Wait for the condition meant: the create request is in flight.
    h.until_a_create_is_in_flight().await;
    work.abort();
    let _ = work.await;
    assert_eq!(a.release_abandoned().await, 1);
    assert!(!h.store.is_claimed(&marker()));
    assert!(
        h.store.intent(&marker()).is_some(),
        "the intent outlives the claim"
    );
    let err = h
        .replica("b")
        .process(&f)
        .await
        .into_result()
        .expect_err("waits");
    assert!(settling(&err), "{err}");
    assert_eq!(h.jira.creates(), 1);
}

/// Cause 2, the other half: a create that succeeded but whose record could not be written
/// (the lease was taken over meanwhile) leaves its intent, so the ticket is found later, not
/// made again.
#[tokio::test]
async fn a_ticket_whose_record_write_failed_is_recovered_not_duplicated() {
    let h = Harness::new(vec![payments()]);
    h.settle(Duration::from_secs(600));
    *lock(&h.jira.search_lags) = true;
    let f = finding("f-1", H, "2026-11-28T10:00:00Z");
    // The record write fails: someone took the key over between create and put.
    h.store.steal_before_put(&marker());
    let err = h
        .replica("a")
        .process(&f)
        .await
        .into_result()
        .expect_err("lost");
    assert!(lost_claim(&err), "{err}");
    assert_eq!(h.jira.creates(), 1);
    h.store.expire_leases();
    let err = h
        .replica("b")
        .process(&f)
        .await
        .into_result()
        .expect_err("settling");
    assert!(settling(&err), "{err}");
    h.store.age_intents();
    *lock(&h.jira.search_lags) = false;
    h.replica("b")
        .process(&f)
        .await
        .into_result()
        .expect("recovered");
    assert_eq!(h.jira.tickets().len(), 1);
}

/// Cause 3: the ARCHIVED event (10:05) is processed before the older ACTIVE one (10:00), which
/// a standard queue allows. The resolution leaves a tombstone; the late ACTIVE event opens
/// nothing. A genuinely newer ACTIVE event (a recurrence) still gets its ticket.
#[tokio::test]
async fn a_resolution_processed_first_makes_the_older_active_event_stale() {
    let h = Harness::new(vec![payments()]);
    let a = h.replica("a");
    let resolved = archived(finding("f-1", H, "2026-11-28T10:05:00Z"));
    let outcome = a.process(&resolved).await.into_result().expect("resolved");
    assert_eq!(
        outcome.team("payments").unwrap().actions,
        vec![Action::SkippedResolved]
    );
    let older = finding("f-1", H, "2026-11-28T10:00:00Z");
    let outcome = a.process(&older).await.into_result().expect("stale");
    assert_eq!(
        outcome.team("payments").unwrap().actions,
        vec![Action::Stale]
    );
    assert_eq!(h.jira.creates(), 0, "no ticket nothing would ever close");

    let recurred = finding("f-1", H, "2026-11-28T11:00:00Z");
    let outcome = a
        .process(&recurred)
        .await
        .into_result()
        .expect("recurrence");
    assert_eq!(
        outcome.team("payments").unwrap().actions,
        vec![Action::Created]
    );
}

/// Cause 3, concurrently: a create in progress on another replica is invisible to a bare read
/// (no record yet). The resolution sees the team in the finding index and follows it under a
/// claim, so it comes back later instead of missing the ticket.
#[tokio::test]
async fn a_resolution_during_a_create_elsewhere_waits_for_it_and_closes_the_ticket() {
    let h = Harness::with_slow_creates(
        vec![Route::new("payments", &[H])],
        Duration::from_secs(3600),
    );
    let a = Arc::new(h.replica("a"));
    let active = finding("f-1", H, "2026-11-28T10:00:00Z");
    let creating = {
        let (a, f) = (a.clone(), active.clone());
        tokio::spawn(async move { a.process(&f).await })
    };
    h.until_a_create_is_in_flight().await;
    // Routing does not pick the resolved version (severity INFORMATIONAL, not routed).
    let mut resolved = archived(finding("f-1", H, "2026-11-28T10:05:00Z"));
    resolved.severity = Severity::Informational;
    let b = h.replica("b");
    let err = b.process(&resolved).await.into_result().expect_err("busy");
    assert!(matches!(err, LifecycleError::Busy { .. }), "{err}");

    // The create finishes (its answer arrives); the redelivered resolution closes the ticket.
    h.jira.finish_creates();
    creating
        .await
        .expect("joined")
        .into_result()
        .expect("created");
    let outcome = b.process(&resolved).await.into_result().expect("closed");
    assert_eq!(
        outcome.team("payments").unwrap().actions,
        vec![Action::Closed]
    );
    assert_eq!(h.jira.tickets().len(), 1);
    assert!(h.jira.tickets()[0].1, "the ticket is closed");
}

/// Cause 4: a holder whose renewals failed past the lease (store throttled) has lost the key;
/// another replica took it over. The old holder's record write is refused, and the new holder
/// waits out the old holder's create instead of racing it.
#[tokio::test(start_paused = true)]
async fn a_lost_lease_is_noticed_before_any_write_and_nothing_is_duplicated() {
    let h = Harness::with_slow_creates(vec![payments()], Duration::from_secs(20));
    h.settle(Duration::from_secs(600));
    *lock(&h.jira.search_lags) = true;
    *lock(&h.store.lose_renewals) = true;
    let a = Arc::new(h.replica("a").with_lease(Duration::from_secs(3)));
    let f = finding("f-1", H, "2026-11-28T10:00:00Z");
    let first = {
        let (a, f) = (a.clone(), f.clone());
        tokio::spawn(async move { a.process(&f).await })
    };
    h.until_a_create_is_in_flight().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The lease ran out while the create hangs; replica b takes over the redelivery.
    let b = h.replica("b").with_lease(Duration::from_secs(3));
    let err = b.process(&f).await.into_result().expect_err("settling");
    assert!(settling(&err), "b must wait for a's create: {err}");
    let err = first
        .await
        .expect("joined")
        .into_result()
        .expect_err("a lost its claim");
    assert!(lost_claim(&err), "{err}");
    assert_eq!(h.jira.creates(), 1);
    assert!(
        h.store.record(&marker()).is_none(),
        "a's stale write left no record"
    );
}

/// Cause 4, renewal: a claim held longer than its lease by slow work stays held, because each
/// claim renews itself while its work runs (the worker's old single renewer loop is gone, and
/// `replay --process` renews the same way).
#[tokio::test(start_paused = true)]
async fn a_claim_is_renewed_while_its_work_runs_past_the_lease() {
    let h = Harness::with_slow_creates(vec![payments()], Duration::from_secs(20));
    let a = Arc::new(h.replica("a").with_lease(Duration::from_secs(3)));
    let f = finding("f-1", H, "2026-11-28T10:00:00Z");
    let first = {
        let (a, f) = (a.clone(), f.clone());
        tokio::spawn(async move { a.process(&f).await })
    };
    h.until_a_create_is_in_flight().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(h.store.is_claimed(&marker()), "renewed past three leases");
    let err = h
        .replica("b")
        .process(&f)
        .await
        .into_result()
        .expect_err("busy");
    assert!(matches!(err, LifecycleError::Busy { .. }), "{err}");
    first.await.expect("joined").into_result().expect("created");
    assert_eq!(h.jira.tickets().len(), 1);
}

/// Cause 6: several tickets carry the marker (a finished predecessor and a live one, or a
/// duplicate someone made). The live one is followed; a second live one is reported with a
/// comment pointing at the kept ticket, once however often it is seen.
#[tokio::test]
async fn the_live_ticket_is_followed_and_duplicates_are_reported_once() {
    let h = Harness::new(vec![payments()]);
    let closed = h.jira.insert_existing(&marker(), "PAY-1");
    h.jira.set_done_for_test(&closed.key, true);
    let live = h.jira.insert_existing(&marker(), "PAY-2");
    let extra = h.jira.insert_existing(&marker(), "PAY-3");
    let f = finding("f-1", H, "2026-11-28T10:00:00Z");
    let outcome = h
        .replica("a")
        .process(&f)
        .await
        .into_result()
        .expect("recovered");
    assert_eq!(outcome.team("payments").unwrap().ticket, Some(live.clone()));
    assert_eq!(h.jira.creates(), 0);
    let notes: Vec<_> = h
        .jira
        .posted()
        .into_iter()
        .filter(|(key, _)| *key == extra.key)
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].1.contains(&live.key), "{}", notes[0].1);

    // Seen again (the store was lost, say): no second duplicate comment.
    let h2 = Harness {
        jira: h.jira.clone(),
        ..Harness::new(vec![payments()])
    };
    h2.replica("b")
        .process(&f)
        .await
        .into_result()
        .expect("recovered again");
    assert_eq!(
        h.jira
            .posted()
            .iter()
            .filter(|(key, _)| *key == extra.key)
            .count(),
        1
    );
}

/// Cause 6 with `on_recurrence = new`: the closed predecessor also carries the marker; the
/// replacement search must not take it for the replacement.
#[tokio::test]
async fn a_replacement_is_never_the_closed_predecessor() {
    let h = Harness::new(vec![replacing()]);
    let a = h.replica("a");
    followed(&a, &finding("f-1", H, "2026-11-28T10:00:00Z"), "created").await;
    followed(
        &a,
        &archived(finding("f-1", H, "2026-11-28T11:00:00Z")),
        "closed",
    )
    .await;
    followed(&a, &finding("f-1", H, "2026-11-28T12:00:00Z"), "replaced").await;
    followed(
        &a,
        &archived(finding("f-1", H, "2026-11-28T13:00:00Z")),
        "closed again",
    )
    .await;
    // The store is lost; the next recurrence finds two closed tickets and no live one.
    let h2 = Harness {
        jira: h.jira.clone(),
        ..Harness::new(vec![replacing()])
    };
    let outcome = h2
        .replica("b")
        .process(&finding("f-1", H, "2026-11-28T14:00:00Z"))
        .await
        .into_result()
        .expect("replaced");
    let tickets = h.jira.tickets();
    assert_eq!(tickets.len(), 3, "{tickets:?}");
    let followed = outcome.team("payments").unwrap().ticket.clone().unwrap();
    assert_eq!(followed.key, "PAY-3");
    assert!(!tickets[2].1, "the new ticket is open");
}

/// Retried comments do not duplicate: a comment whose answer was lost is found by its
/// reference on the retry and not posted again.
#[tokio::test]
async fn a_comment_with_a_lost_answer_is_not_posted_twice() {
    let h = Harness::new(vec![payments()]);
    let a = h.replica("a");
    followed(&a, &finding("f-1", H, "2026-11-28T10:00:00Z"), "created").await;
    // The resolution comment lands but its answer is lost.
    *lock(&h.jira.ambiguous) = 1;
    let resolved = archived(finding("f-1", H, "2026-11-28T11:00:00Z"));
    let err = a
        .process(&resolved)
        .await
        .into_result()
        .expect_err("unknown");
    assert!(err.is_transient(), "{err}");
    let outcome = a.process(&resolved).await.into_result().expect("closed");
    assert_eq!(
        outcome.team("payments").unwrap().actions,
        vec![Action::Closed]
    );
    assert_eq!(h.jira.posted().len(), 1, "{:?}", h.jira.posted());
}

/// Cause 7: routes are independent. One team's template fails on this finding; the other
/// team's ticket is still created, and the failure names the team.
#[tokio::test]
async fn one_routes_failure_does_not_stop_another() {
    let h = Harness::new(vec![payments(), Route::new("platform", &[H])]);
    lock(&h.planner.team_errors).insert("platform", "template: undefined value".to_owned());
    let outcome = h
        .replica("a")
        .process(&finding("f-1", H, "2026-11-28T10:00:00Z"))
        .await;
    assert_eq!(
        outcome.team("payments").unwrap().actions,
        vec![Action::Created]
    );
    assert_eq!(outcome.failures.len(), 1);
    assert_eq!(outcome.failures[0].team(), Some("platform"));
    assert!(!outcome.failures[0].is_transient());
}

/// Issue 18: a 401 is the connection's fault. The route pauses instead of failing the finding,
/// and while the connection is paused nothing is sent to it at all.
#[tokio::test]
async fn a_refused_credential_pauses_the_connection_not_the_finding() {
    use crate::pipeline::health::Subject;
    use crate::ticket::Blame;
    let h = Harness::new(vec![payments()]);
    let health = Arc::new(crate::pipeline::health::Health::new());
    let a = h.replica("a").with_health(health.clone());
    h.jira.fail(
        "create",
        crate::testing::unusable("create", Blame::Connection),
    );
    let err = a
        .process(&finding("f-1", H, "2026-11-28T10:00:00Z"))
        .await
        .into_result()
        .expect_err("paused");
    assert!(err.is_paused() && !err.is_transient(), "{err}");
    assert_eq!(err.kind().as_str(), "paused");
    let jira = Subject::Connection("jira".into());
    assert!(health.paused(&jira).is_some());
    assert!(
        h.store.intent(&marker()).is_none(),
        "a refused create leaves no intent"
    );

    h.jira.clear_calls();
    let err = a
        .process(&finding("f-2", H, "2026-11-28T10:00:00Z"))
        .await
        .into_result()
        .expect_err("still paused");
    assert!(err.is_paused(), "{err}");
    assert!(h.jira.calls().is_empty(), "{:?}", h.jira.calls());

    lock(&h.jira.failures).clear();
    health.probed(&jira, Ok(()));
    followed(&a, &finding("f-2", H, "2026-11-28T10:00:00Z"), "resumed").await;
    assert_eq!(h.jira.tickets().len(), 1);
}

/// Issue 18: a project that no longer exists pauses that rule only; the team's other rules keep
/// working.
#[tokio::test]
async fn a_rule_whose_project_is_gone_pauses_only_that_rule() {
    use crate::pipeline::health::Subject;
    use crate::ticket::Blame;
    let mut gone = Route::new("payments", &[H]);
    gone.rule = "gone";
    let main = Route::new("payments", &[Severity::Critical]);
    let h = Harness::new(vec![gone, main]);
    let health = Arc::new(crate::pipeline::health::Health::new());
    let a = h.replica("a").with_health(health.clone());
    h.jira
        .fail("create", crate::testing::unusable("create", Blame::Target));
    let err = a
        .process(&finding("f-1", H, "2026-11-28T10:00:00Z"))
        .await
        .into_result()
        .expect_err("rule paused");
    let rule = Subject::Rule {
        team: "payments".into(),
        rule: "gone".into(),
    };
    assert!(
        matches!(&err, LifecycleError::Paused { subject, .. } if *subject == rule),
        "{err}"
    );
    assert!(health.paused(&Subject::Connection("jira".into())).is_none());
    assert!(health.due_probes().is_empty(), "first probe later");
    lock(&h.jira.failures).clear();
    followed(
        &a,
        &finding("f-2", Severity::Critical, "2026-11-28T10:00:00Z"),
        "the other rule works",
    )
    .await;
    assert_eq!(h.jira.tickets().len(), 1);
    let err = a
        .process(&finding("f-3", H, "2026-11-28T10:00:00Z"))
        .await
        .into_result()
        .expect_err("still paused");
    assert!(err.is_paused());
    assert_eq!(h.jira.tickets().len(), 1);
    let report = health.report();
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!(report[0].subject, rule);
}

/// Issue 18: a Security Hub write-back refused for the task role shows as a paused connection
/// (readiness, gauge) and clears with the next write-back that succeeds; tickets still go ahead.
#[tokio::test]
async fn a_refused_write_back_is_reported_and_clears_when_writes_work_again() {
    use crate::pipeline::health::Subject;
    let h = Harness::new(vec![payments()]);
    let health = Arc::new(crate::pipeline::health::Health::new());
    let a = h.replica("a").with_health(health.clone());
    h.writer
        .fail_with(Some(crate::aws::securityhub::WriteError::Refused(
            "AccessDeniedException: not authorized".into(),
        )));
    followed(
        &a,
        &finding("f-1", H, "2026-11-28T10:00:00Z"),
        "the ticket is made regardless",
    )
    .await;
    let hub = Subject::Connection("securityhub".into());
    assert!(health.paused(&hub).is_some());
    h.writer.fail_with(None);
    followed(&a, &finding("f-2", H, "2026-11-28T10:00:00Z"), "created").await;
    assert!(health.paused(&hub).is_none());
}

/// An active event whose create's outcome was lost, redelivered after the finding's resolution
/// was processed: the search after the settle time decides. No ticket is made for the resolved
/// finding, and a ticket that the lost create did make is closed.
#[tokio::test]
async fn an_unknown_create_of_a_finding_resolved_since_is_closed_or_never_made() {
    for committed in [false, true] {
        let h = Harness::new(vec![payments()]);
        h.settle(Duration::from_secs(600));
        let a = h.replica("a");
        let active = finding("f-1", H, "2026-11-28T10:00:00Z");
        if committed {
            *lock(&h.jira.ambiguous) = 1;
        } else {
            h.jira.fail("create", crate::testing::unknown("create"));
        }
        assert!(settling(
            &a.process(&active).await.into_result().expect_err("unknown")
        ));
        lock(&h.jira.failures).clear();
        // The resolution arrives while the intent is still settling: routing does not pick
        // the resolved version, and the team's create is still unresolved.
        let mut resolved = archived(finding("f-1", H, "2026-11-28T10:05:00Z"));
        resolved.severity = Severity::Low;
        let err = a
            .process(&resolved)
            .await
            .into_result()
            .expect_err("settling");
        assert!(settling(&err), "{err}");
        // The older active event comes back once the settle time has passed.
        h.store.age_intents();
        let outcome = a
            .process(&active)
            .await
            .into_result()
            .expect("the intent is resolved");
        let tickets = h.jira.tickets();
        if committed {
            assert_eq!(tickets.len(), 1, "{tickets:?}");
            assert!(tickets[0].1, "the ticket the lost create made is closed");
            assert_eq!(
                outcome.team("payments").unwrap().actions,
                vec![Action::Recovered, Action::Closed]
            );
        } else {
            assert!(
                tickets.is_empty(),
                "no ticket for a resolved finding: {tickets:?}"
            );
        }
        assert!(h.store.intent(&marker()).is_none());
    }
}

/// `on_recurrence = new`: the replacement create's answer is lost, and the finding is resolved
/// again before the retry. The replacement that was made is found and closed, not forgotten.
#[tokio::test]
async fn a_lost_replacement_is_found_and_follows_a_later_resolution() {
    let h = Harness::new(vec![replacing()]);
    h.settle(Duration::from_secs(600));
    let a = h.replica("a");
    followed(&a, &finding("f-1", H, "2026-11-28T10:00:00Z"), "created").await;
    followed(
        &a,
        &archived(finding("f-1", H, "2026-11-28T11:00:00Z")),
        "closed",
    )
    .await;
    *lock(&h.jira.ambiguous) = 1;
    let err = a
        .process(&finding("f-1", H, "2026-11-28T12:00:00Z"))
        .await
        .into_result()
        .expect_err("replacement outcome unknown");
    assert!(settling(&err), "{err}");
    assert_eq!(h.jira.tickets().len(), 2, "the replacement was committed");
    h.store.age_intents();
    let outcome = a
        .process(&archived(finding("f-1", H, "2026-11-28T13:00:00Z")))
        .await
        .into_result()
        .expect("resolved again");
    let actions = &outcome.team("payments").unwrap().actions;
    assert!(
        matches!(actions[..], [Action::Replaced { .. }, Action::Closed]),
        "{actions:?}"
    );
    let tickets = h.jira.tickets();
    assert_eq!(tickets.len(), 2, "{tickets:?}");
    assert!(
        tickets.iter().all(|(_, done)| *done),
        "both closed: {tickets:?}"
    );
    assert!(h.store.intent(&marker()).is_none());
    assert_eq!(
        h.store
            .record(&marker())
            .and_then(|r| r.ticket)
            .map(|t| t.key),
        Some("PAY-2".to_owned())
    );
}

/// A flood: the ticket system refuses creates for its rate (or the client's limiter has no room
/// in the send window). Provably nothing was made, so the create goes again in turn, in the
/// process, behind a new intent — not back to the queue, where every message of a flood would
/// make the round trip several times and end parked by the redrive policy.
#[tokio::test]
async fn a_create_the_system_is_too_busy_for_goes_again_in_turn_not_back_to_the_queue() {
    let h = Harness::new(vec![payments()]);
    *lock(&h.jira.busy) = 2;
    let a = h.replica("a");
    let f = finding("f-1", H, "2026-11-28T10:00:00Z");

    let outcome = followed(&a, &f, "created after two refusals").await;
    assert_eq!(
        outcome.team("payments").unwrap().actions,
        vec![Action::Created]
    );
    assert_eq!(h.jira.creates(), 3, "two refused, one made");
    assert_eq!(h.jira.tickets().len(), 1);
    assert!(h.store.intent(&marker()).is_none());
    assert!(h.store.record(&marker()).is_some());
    assert_eq!(h.writer.updates().len(), 1);
}

/// In a flood the wait for a turn can outlast the busy retry's two minutes on its own (the p99 of
/// a 1,500-finding flood at 5 requests/s is three minutes): that wait is the rate limit working,
/// so a refusal after it still goes again in turn instead of sending the message back for half a
/// minute — the tail that left the last windows of such a flood empty.
#[tokio::test(start_paused = true)]
async fn the_wait_for_a_turn_does_not_use_up_the_busy_retry() {
    let h = Harness::new(vec![payments()]);
    lock(&h.jira.turn_waits).push_back(Duration::from_secs(150));
    *lock(&h.jira.busy) = 1;
    let a = h.replica("a");
    let f = finding("f-1", H, "2026-11-28T10:00:00Z");

    let outcome = followed(
        &a,
        &f,
        "created after a long wait for a turn and one refusal",
    )
    .await;
    assert_eq!(
        outcome.team("payments").unwrap().actions,
        vec![Action::Created]
    );
    assert_eq!(h.jira.creates(), 2, "one refused, one made");
    assert!(h.store.intent(&marker()).is_none());
    assert!(h.store.record(&marker()).is_some());
}

/// ... but not for ever: a system that stays too busy gets the message back to the queue, with
/// nothing made and the intent cleared (nothing can be in the air).
#[tokio::test(start_paused = true)]
async fn a_create_refused_for_longer_than_the_busy_retry_goes_back_with_nothing_made() {
    let h = Harness::new(vec![payments()]);
    *lock(&h.jira.busy) = u32::MAX;
    let a = h.replica("a");
    let f = finding("f-1", H, "2026-11-28T10:00:00Z");
    let started = tokio::time::Instant::now();

    let err = a.process(&f).await.into_result().expect_err("still busy");
    assert!(!settling(&err), "nothing is in the air: {err}");
    assert!(err.to_string().contains("Rate limit exceeded"), "{err}");
    assert!(
        started.elapsed() >= Duration::from_secs(120),
        "tried again in the process first"
    );
    assert!(h.jira.creates() > 1);
    assert!(h.jira.tickets().is_empty());
    assert!(h.store.intent(&marker()).is_none(), "no intent left behind");
    assert!(!h.store.is_claimed(&marker()));
}
