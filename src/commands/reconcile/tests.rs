//! Reconcile against the in-memory store and ticket system: what a dry run reports, what `--fix`
//! changes, what it leaves alone, and that a rebuilt record makes the lifecycle follow the old
//! ticket.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::finding::Severity;
use crate::marker::Marker;
use crate::pipeline::lifecycle::{Action, Lifecycle};
use crate::store::Claim;
use crate::testing::{
    Call, FakePlanner, FakeTickets, MemoryStore, RecordingWriter, Route, finding, transient,
};
use crate::ticket::TicketRef;
use crate::ticket::provenance::Provenance;

const T: &str = "2026-11-28T10:00:00Z";

fn systems(jira: &Arc<FakeTickets>) -> HashMap<String, Arc<dyn TicketSystem>> {
    HashMap::from([("jira".to_owned(), Arc::clone(jira) as Arc<dyn TicketSystem>)])
}

async fn run(store: &Arc<MemoryStore>, jira: &Arc<FakeTickets>, fix: bool) -> Report {
    reconcile(
        Arc::clone(store) as Arc<dyn Store>,
        systems(jira),
        BTreeMap::new(),
        ReconcileOptions::new(fix, "test-host:1"),
        &Shutdown::new(),
    )
    .await
}

fn provenance(team: &str, id: &str) -> Provenance {
    let f = finding(id, Severity::High, T);
    Provenance {
        finding_id: f.id,
        team: team.to_owned(),
        rule: "r".to_owned(),
        schema: f.schema,
        write_back: f.write_back,
        severity: "HIGH".to_owned(),
    }
}

/// A ticket as the worker creates it: marker label and provenance.
async fn bridge_ticket(jira: &FakeTickets, provenance: &Provenance) -> TicketRef {
    let payload = serde_json::json!({"labels": [provenance.marker().as_str(), "findings-bridge"]});
    let payload = jira.attach_provenance(&payload, provenance);
    jira.create(&payload, None).await.expect("created")
}

/// The lifecycle over `store` and `jira`, routing every HIGH / CRITICAL finding to payments.
fn lifecycle(store: &Arc<MemoryStore>, jira: &Arc<FakeTickets>) -> Lifecycle {
    Lifecycle::new(
        Arc::clone(store) as Arc<dyn Store>,
        systems(jira),
        Arc::new(RecordingWriter::new()),
        Arc::new(FakePlanner::new(vec![Route::new(
            "payments",
            &[Severity::High, Severity::Critical],
        )])),
        "test-host:1",
    )
}

#[tokio::test]
async fn a_lost_store_is_rebuilt_from_the_tickets_and_a_dry_run_changes_nothing() {
    let jira = Arc::new(FakeTickets::new("jira"));
    let a = provenance("payments", "f-a");
    let b = provenance("platform", "f-b");
    let ticket_a = bridge_ticket(&jira, &a).await;
    bridge_ticket(&jira, &b).await;
    // Made before the bridge wrote provenance: the marker alone names no finding.
    let old = Marker::new("payments", "f-old");
    jira.insert_existing(&old, "PAY-9");
    let store = Arc::new(MemoryStore::default());

    let dry = run(&store, &jira, false).await;
    assert!(dry.complete, "{dry}");
    assert_eq!(dry.missing_records.len(), 3, "{dry}");
    let planned: Vec<&MissingRecord> = dry
        .missing_records
        .iter()
        .filter(|m| m.outcome == Outcome::Planned)
        .collect();
    assert_eq!(planned.len(), 2, "{dry}");
    let old_entry = dry
        .missing_records
        .iter()
        .find(|m| m.marker == old)
        .expect("the old ticket is reported");
    assert_eq!(old_entry.outcome, Outcome::NotRebuildable);
    assert!(
        old_entry
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("no provenance"),
        "{old_entry:?}"
    );
    assert!(store.records().is_empty(), "a dry run stores nothing");
    assert!(!dry.has_failures());

    let fixed = run(&store, &jira, true).await;
    assert_eq!(
        fixed
            .missing_records
            .iter()
            .filter(|m| m.outcome == Outcome::Done)
            .count(),
        2,
        "{fixed}"
    );
    let record = store.record(&a.marker()).expect("rebuilt");
    assert_eq!(record.finding_id, "f-a");
    assert_eq!(record.team, "payments");
    assert_eq!(record.rule, "r");
    assert_eq!(record.severity, "HIGH");
    assert_eq!(record.write_back, a.write_back);
    assert_eq!(record.ticket, Some(ticket_a));
    assert!(!record.finding_resolved && !record.closed_by_bridge);
    assert!(!store.is_claimed(&a.marker()), "the claim is released");
    let index = store.finding("f-a").await.expect("index");
    assert_eq!(
        index.teams,
        vec!["payments".to_owned()],
        "the team is enlisted"
    );
    assert_eq!(store.record(&old), None);

    let again = run(&store, &jira, true).await;
    assert_eq!(again.in_step, 2, "{again}");
    assert_eq!(
        again.missing_records.len(),
        1,
        "only the old ticket: {again}"
    );
}

#[tokio::test]
async fn a_key_a_worker_holds_or_a_pending_create_is_left_alone() {
    let jira = Arc::new(FakeTickets::new("jira"));
    let held = provenance("payments", "f-held");
    let pending = provenance("payments", "f-pending");
    bridge_ticket(&jira, &held).await;
    bridge_ticket(&jira, &pending).await;
    let store = Arc::new(MemoryStore::default());
    assert!(matches!(
        store
            .claim(&held.marker(), "worker:7", Duration::from_secs(60))
            .await,
        Ok(Claim::Acquired(_))
    ));
    let intent = crate::store::Intent {
        owner: "worker:8".into(),
        system: "jira".into(),
        started_at: 0,
        search_after: 0,
    };
    store
        .claim(&pending.marker(), "worker:8", Duration::from_secs(60))
        .await
        .expect("claim");
    store
        .set_intent(&pending.marker(), "worker:8", Some(&intent))
        .await
        .expect("intent");
    store
        .release(&pending.marker(), "worker:8")
        .await
        .expect("release");

    let report = run(&store, &jira, true).await;
    for m in &report.missing_records {
        assert_eq!(m.outcome, Outcome::Conflict, "{report}");
    }
    assert_eq!(report.missing_records.len(), 2);
    assert!(store.records().is_empty(), "nothing forced");
    assert!(
        store.is_claimed(&held.marker()),
        "the worker's claim stands"
    );
    assert!(
        !store.is_claimed(&pending.marker()),
        "reconcile's claim is released"
    );
    assert_eq!(store.intent(&pending.marker()), Some(intent));
    assert!(!report.has_failures());
}

#[tokio::test]
async fn extra_live_tickets_are_closed_once_with_a_comment_naming_the_kept_one() {
    let jira = Arc::new(FakeTickets::new("jira"));
    let p = provenance("payments", "f-dup");
    let kept = bridge_ticket(&jira, &p).await;
    let copy = bridge_ticket(&jira, &p).await;
    let store = Arc::new(MemoryStore::default());

    let dry = run(&store, &jira, false).await;
    assert_eq!(dry.duplicates.len(), 1, "{dry}");
    assert_eq!(dry.duplicates[0].kept.key, kept.key);
    assert_eq!(dry.duplicates[0].others[0].ticket.key, copy.key);
    assert_eq!(dry.duplicates[0].others[0].outcome, Outcome::Planned);
    assert_eq!(
        jira.is_done(&copy.key),
        Some(false),
        "a dry run closes nothing"
    );
    assert!(jira.posted().is_empty());

    let fixed = run(&store, &jira, true).await;
    assert_eq!(
        fixed.duplicates[0].others[0].outcome,
        Outcome::Done,
        "{fixed}"
    );
    assert_eq!(jira.is_done(&copy.key), Some(true));
    assert_eq!(jira.is_done(&kept.key), Some(false));
    let posted = jira.posted();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].0, copy.key);
    assert!(
        posted[0].1.contains(&kept.key) && posted[0].1.contains(&kept.url),
        "{posted:?}"
    );
    assert_eq!(
        store.record(&p.marker()).and_then(|r| r.ticket),
        Some(kept),
        "the record follows the kept one"
    );

    let again = run(&store, &jira, true).await;
    assert!(again.duplicates.is_empty(), "{again}");
    assert_eq!(jira.posted().len(), 1);
}

#[tokio::test]
async fn records_are_dropped_only_when_their_ticket_is_proven_gone() {
    let jira = Arc::new(FakeTickets::new("jira"));
    let gone = provenance("payments", "f-gone");
    let unreadable = provenance("payments", "f-unreadable");
    let gone_ticket = bridge_ticket(&jira, &gone).await;
    bridge_ticket(&jira, &unreadable).await;
    let store = Arc::new(MemoryStore::default());
    run(&store, &jira, true).await;
    assert_eq!(store.records().len(), 2);

    jira.remove_for_test(&gone_ticket.key);
    let dry = run(&store, &jira, false).await;
    assert_eq!(dry.gone.len(), 1, "{dry}");
    assert_eq!(dry.gone[0].outcome, Outcome::Planned);
    assert_eq!(dry.gone[0].ticket.key, gone_ticket.key);
    assert!(
        store.record(&gone.marker()).is_some(),
        "a dry run drops nothing"
    );

    let fixed = run(&store, &jira, true).await;
    assert_eq!(fixed.gone[0].outcome, Outcome::Done, "{fixed}");
    assert_eq!(store.record(&gone.marker()), None);
    assert!(!store.is_claimed(&gone.marker()));

    // A ticket that cannot be read is not a ticket that is gone.
    let unreadable_key = store
        .record(&unreadable.marker())
        .and_then(|r| r.ticket)
        .map(|t| t.key)
        .expect("recorded");
    jira.remove_for_test(&unreadable_key);
    jira.fail("presence", transient("presence"));
    let failing = run(&store, &jira, true).await;
    assert_eq!(failing.gone.len(), 1, "{failing}");
    assert_eq!(failing.gone[0].outcome, Outcome::Failed);
    assert!(store.record(&unreadable.marker()).is_some(), "kept");
    assert!(failing.has_failures());
}

#[tokio::test]
async fn an_incomplete_listing_judges_no_record_of_its_connection() {
    let jira = Arc::new(FakeTickets::new("jira"));
    let p = provenance("payments", "f-1");
    let ticket = bridge_ticket(&jira, &p).await;
    bridge_ticket(&jira, &provenance("payments", "f-2")).await;
    let store = Arc::new(MemoryStore::default());
    run(&store, &jira, true).await;
    jira.remove_for_test(&ticket.key);
    jira.fail("list_bridge_tickets", transient("list_bridge_tickets"));
    jira.clear_calls();
    let report = run(&store, &jira, true).await;
    assert!(!report.complete && report.has_failures(), "{report}");
    assert!(report.gone.is_empty(), "nothing judged gone: {report}");
    assert!(
        !jira.calls().iter().any(|c| matches!(c, Call::Status(_))),
        "no presence check: {:?}",
        jira.calls()
    );
    assert_eq!(store.records().len(), 2);
}

#[tokio::test]
async fn fix_raises_the_start_of_use_mark_and_never_lowers_it() {
    let jira = Arc::new(FakeTickets::new("jira"));
    let store = Arc::new(MemoryStore::default());
    store.set_watermark(VOUCHED_SINCE, "1000").await.unwrap();
    let dry = run(&store, &jira, false).await;
    assert!(dry.vouched_since.is_none());
    assert_eq!(
        store.watermark(VOUCHED_SINCE).await.unwrap().as_deref(),
        Some("1000"),
        "a dry run changes nothing"
    );
    let before = chrono::Utc::now().timestamp_millis();
    let fixed = run(&store, &jira, true).await;
    let mark: i64 = store
        .watermark(VOUCHED_SINCE)
        .await
        .unwrap()
        .and_then(|m| m.parse().ok())
        .expect("a mark");
    assert!(mark >= before, "raised to the start of the run");
    assert_eq!(
        fixed.vouched_since.and_then(|w| w.before).as_deref(),
        Some("1000")
    );
    let future = (before + 3_600_000).to_string();
    store.set_watermark(VOUCHED_SINCE, &future).await.unwrap();
    run(&store, &jira, true).await;
    assert_eq!(
        store.watermark(VOUCHED_SINCE).await.unwrap(),
        Some(future),
        "never lowered"
    );
    let fresh = Arc::new(MemoryStore::default());
    run(&fresh, &jira, true).await;
    assert_eq!(
        fresh.watermark(VOUCHED_SINCE).await.unwrap(),
        None,
        "an unset mark is the first worker's to set"
    );
}

#[tokio::test]
async fn the_next_delivery_follows_the_rebuilt_record_onto_the_old_ticket() {
    let jira = Arc::new(FakeTickets::new("jira"));
    let first_store = Arc::new(MemoryStore::default());
    let f = finding("f-life", Severity::High, T);
    let outcome = lifecycle(&first_store, &jira).process(&f).await;
    assert!(outcome.failures.is_empty(), "{outcome:?}");
    assert_eq!(jira.creates(), 1);

    // The store is lost; a new one is rebuilt from the tickets.
    let store = Arc::new(MemoryStore::default());
    let report = run(&store, &jira, true).await;
    assert_eq!(report.missing_records[0].outcome, Outcome::Done, "{report}");
    jira.clear_calls();

    let raised = finding("f-life", Severity::Critical, "2026-11-28T11:00:00Z");
    let outcome = lifecycle(&store, &jira).process(&raised).await;
    assert!(outcome.failures.is_empty(), "{outcome:?}");
    let team = outcome.team("payments").expect("followed");
    assert!(
        team.actions
            .iter()
            .any(|a| matches!(a, Action::SeverityChanged { .. })),
        "{:?}",
        team.actions
    );
    assert_eq!(jira.creates(), 0, "no second ticket");
    assert!(
        !jira.calls().iter().any(|c| matches!(c, Call::Find(_))),
        "the record answers; no marker search: {:?}",
        jira.calls()
    );
    assert!(
        jira.calls()
            .iter()
            .any(|c| matches!(c, Call::UpdateFields(key, _) if key == "PAY-1")),
        "{:?}",
        jira.calls()
    );
}
