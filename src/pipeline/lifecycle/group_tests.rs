//! Grouped tickets against the in-memory fakes: one ticket per group under concurrent delivery,
//! items ticked off, close on the last resolution, reopen on recurrence or a new member, priority
//! by the highest open severity, redelivery and lost writes.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::finding::RecordState;
use crate::mapping::group::MAX_GROUP_ITEMS;
use crate::store::Grouping;
use crate::testing::{
    self, Call, FakePlanner, FakeTickets, MemoryStore, RecordingWriter, Route, finding,
};

const H: Severity = Severity::High;
const C: Severity = Severity::Critical;
const L: Severity = Severity::Low;

struct Harness {
    store: Arc<MemoryStore>,
    jira: Arc<FakeTickets>,
    writer: Arc<RecordingWriter>,
    lifecycle: Arc<Lifecycle>,
}

/// Groups by the part of the finding id before `/` (`s3/1` and `s3/2` share group `s3`).
fn by_prefix(f: &Finding) -> String {
    f.id.split('/').next().unwrap_or_default().to_owned()
}

fn grouped() -> Route {
    Route {
        group_by: Some(by_prefix),
        ..Route::new("platform", &[L, Severity::Medium, H, C])
    }
}

fn harness_with(route: Route, owner: &str) -> Harness {
    let store = Arc::new(MemoryStore::default());
    harness_on(store, route, owner)
}

fn harness_on(store: Arc<MemoryStore>, route: Route, owner: &str) -> Harness {
    let jira = Arc::new(FakeTickets::new("jira"));
    let writer = Arc::new(RecordingWriter::new());
    let planner = Arc::new(FakePlanner::new(vec![route]));
    let mut tickets: HashMap<String, Arc<dyn TicketSystem>> = HashMap::new();
    tickets.insert("jira".into(), jira.clone());
    let lifecycle = Arc::new(Lifecycle::new(
        store.clone(),
        tickets,
        writer.clone(),
        planner,
        owner,
    ));
    Harness {
        store,
        jira,
        writer,
        lifecycle,
    }
}

fn harness() -> Harness {
    harness_with(grouped(), "test-host:1")
}

fn archived(mut f: Finding) -> Finding {
    f.record_state = RecordState::Archived;
    f
}

async fn actions(h: &Harness, f: &Finding) -> Vec<Action> {
    let outcome = h
        .lifecycle
        .process(f)
        .await
        .into_result()
        .expect("processed");
    outcome
        .team("platform")
        .map(|t| t.actions.clone())
        .unwrap_or_default()
}

fn group_record(h: &Harness, key: &str) -> Record {
    h.store
        .record(&Marker::group("platform", key))
        .expect("the group has a record")
}

fn items(record: &Record) -> Vec<(String, bool)> {
    record
        .group_items()
        .expect("a group record")
        .iter()
        .map(|i| (i.id.clone(), i.resolved))
        .collect()
}

fn field_updates(h: &Harness) -> Vec<serde_json::Map<String, serde_json::Value>> {
    h.jira
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::UpdateFields(_, fields) => Some(fields),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn findings_of_one_group_share_one_ticket_and_each_note_names_it() {
    let h = harness();
    let first = finding("s3/1", H, "2026-11-28T10:00:00Z");
    let second = finding("s3/2", L, "2026-11-28T10:01:00Z");
    let other = finding("ec2/1", H, "2026-11-28T10:02:00Z");
    assert_eq!(actions(&h, &first).await, vec![Action::Created]);
    assert_eq!(actions(&h, &second).await, vec![Action::Joined]);
    assert_eq!(actions(&h, &other).await, vec![Action::Created]);
    assert_eq!(h.jira.creates(), 2, "one ticket per group");

    let group = group_record(&h, "s3");
    let ticket = group.ticket.clone().expect("the group's ticket");
    assert_eq!(
        items(&group),
        vec![("s3/1".to_owned(), false), ("s3/2".to_owned(), false)]
    );
    // The group ticket carries the group marker, the findings' records point at it.
    let found = h
        .jira
        .find_by_marker(&Marker::group("platform", "s3"), None)
        .await
        .expect("search");
    assert_eq!(found.len(), 1);
    for id in ["s3/1", "s3/2"] {
        let member = h
            .store
            .record(&Marker::new("platform", id))
            .expect("member record");
        assert_eq!(member.ticket.as_ref(), Some(&ticket));
        assert_eq!(
            member.group,
            Some(Grouping::Member {
                key: "s3".into(),
                marker: Marker::group("platform", "s3")
            })
        );
    }
    // The second finding's join re-rendered the description with both items.
    let updates = field_updates(&h);
    assert_eq!(updates.len(), 1, "{updates:?}");
    let description = updates[0]["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("s3/1") && description.contains("s3/2"),
        "{description}"
    );

    let notes: Vec<String> = h.writer.updates().iter().map(|u| u.note.clone()).collect();
    assert_eq!(notes.len(), 3);
    let group_marker = Marker::group("platform", "s3").to_string();
    for note in &notes[..2] {
        assert!(note.contains(&ticket.key), "{note}");
        assert!(note.contains(&group_marker), "{note}");
    }
}

#[tokio::test]
async fn a_redelivered_join_changes_nothing() {
    let h = harness();
    let first = finding("s3/1", H, "2026-11-28T10:00:00Z");
    let second = finding("s3/2", H, "2026-11-28T10:01:00Z");
    actions(&h, &first).await;
    actions(&h, &second).await;
    h.jira.clear_calls();
    assert_eq!(actions(&h, &second).await, vec![Action::Noop]);
    assert_eq!(actions(&h, &first).await, vec![Action::Noop]);
    assert_eq!(h.jira.calls(), vec![], "no ticket call for a redelivery");
}

#[tokio::test]
async fn a_join_whose_own_record_was_lost_lists_the_finding_once() {
    let h = harness();
    let first = finding("s3/1", H, "2026-11-28T10:00:00Z");
    let second = finding("s3/2", H, "2026-11-28T10:01:00Z");
    actions(&h, &first).await;
    actions(&h, &second).await;
    // The worker died after the group's record and before the finding's own.
    h.store.forget(&Marker::new("platform", "s3/2"));
    h.jira.clear_calls();
    let notes = h.writer.updates().len();
    assert_eq!(actions(&h, &second).await, vec![Action::Recovered]);
    assert_eq!(h.jira.creates(), 0);
    assert!(
        field_updates(&h).is_empty(),
        "the description already lists it"
    );
    assert_eq!(
        h.writer.updates().len(),
        notes + 1,
        "the crash may have come before the write-back: it is sent again"
    );
    assert_eq!(
        group_record(&h, "s3").group_items().map(<[_]>::len),
        Some(2)
    );
    assert!(h.store.record(&Marker::new("platform", "s3/2")).is_some());
}

#[tokio::test]
async fn five_findings_of_a_new_group_at_once_on_three_replicas_make_one_ticket() {
    let store = Arc::new(MemoryStore::default());
    let replicas: Vec<Harness> = (0..3)
        .map(|i| harness_on(store.clone(), grouped(), &format!("host-{i}:1")))
        .collect();
    // All replicas share one ticket system, whose search lags behind creates.
    let jira = replicas[0].jira.clone();
    *testing::lock(&jira.search_lags) = true;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..5 {
        let mut tickets: HashMap<String, Arc<dyn TicketSystem>> = HashMap::new();
        tickets.insert("jira".into(), jira.clone());
        let lifecycle = Arc::new(Lifecycle::new(
            store.clone(),
            tickets,
            replicas[n % 3].writer.clone(),
            Arc::new(FakePlanner::new(vec![grouped()])),
            // Owners are unique per process: each task stands for a worker of its own.
            format!("host-{}:task-{n}", n % 3),
        ));
        let f = finding(&format!("s3/{n}"), H, "2026-11-28T10:00:00Z");
        tasks.spawn(async move {
            // Redelivery: a finding told the group is busy comes back, as its message would.
            loop {
                let outcome = lifecycle.process(&f).await;
                match outcome.failures.first() {
                    None => return outcome.team("platform").map(|t| t.actions.clone()),
                    Some(LifecycleError::Busy { .. }) => tokio::task::yield_now().await,
                    Some(other) => panic!("{other}"),
                }
            }
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.push(done.expect("task").expect("an outcome"));
    }
    assert_eq!(jira.creates(), 1, "one ticket for the group");
    assert_eq!(
        all.iter().filter(|a| **a == vec![Action::Created]).count(),
        1
    );
    assert_eq!(
        all.iter().filter(|a| **a == vec![Action::Joined]).count(),
        4
    );
    let group = store
        .record(&Marker::group("platform", "s3"))
        .expect("group record");
    assert_eq!(group.group_items().map(<[_]>::len), Some(5));
}

#[tokio::test]
async fn items_are_ticked_off_the_last_closes_the_ticket_and_a_recurrence_reopens_it() {
    let h = harness();
    let one = finding("s3/1", H, "2026-11-28T10:00:00Z");
    let two = finding("s3/2", H, "2026-11-28T10:01:00Z");
    actions(&h, &one).await;
    actions(&h, &two).await;
    let ticket = group_record(&h, "s3").ticket.expect("ticket");

    let one_fixed = archived(finding("s3/1", H, "2026-11-28T11:00:00Z"));
    assert_eq!(actions(&h, &one_fixed).await, vec![Action::ItemResolved]);
    assert_eq!(
        h.jira.is_done(&ticket.key),
        Some(false),
        "one finding is still open"
    );
    assert!(
        h.jira.comments().iter().any(|c| c.contains("1 of 2")),
        "{:?}",
        h.jira.comments()
    );

    let two_fixed = archived(finding("s3/2", H, "2026-11-28T11:01:00Z"));
    assert_eq!(actions(&h, &two_fixed).await, vec![Action::Closed]);
    assert_eq!(h.jira.is_done(&ticket.key), Some(true));
    let group = group_record(&h, "s3");
    assert!(group.finding_resolved && group.closed_by_bridge);
    // Redelivered, the resolution does nothing more.
    let comments = h.jira.comments().len();
    assert_eq!(actions(&h, &two_fixed).await, vec![Action::Noop]);
    assert_eq!(h.jira.comments().len(), comments);

    let one_again = finding("s3/1", H, "2026-11-28T12:00:00Z");
    assert_eq!(actions(&h, &one_again).await, vec![Action::Reopened]);
    assert_eq!(h.jira.is_done(&ticket.key), Some(false));
    assert_eq!(h.jira.creates(), 1, "the group keeps its ticket");
    let group = group_record(&h, "s3");
    assert!(!group.finding_resolved && !group.closed_by_bridge);
    assert_eq!(
        items(&group),
        vec![("s3/1".to_owned(), false), ("s3/2".to_owned(), true)]
    );
}

#[tokio::test]
async fn a_new_finding_joining_a_closed_group_reopens_its_ticket() {
    let h = harness();
    actions(&h, &finding("s3/1", H, "2026-11-28T10:00:00Z")).await;
    actions(&h, &archived(finding("s3/1", H, "2026-11-28T11:00:00Z"))).await;
    let ticket = group_record(&h, "s3").ticket.expect("ticket");
    assert_eq!(h.jira.is_done(&ticket.key), Some(true));
    assert_eq!(
        actions(&h, &finding("s3/9", L, "2026-11-28T12:00:00Z")).await,
        vec![
            Action::Reopened,
            Action::SeverityChanged {
                from: "HIGH".into(),
                to: L
            }
        ]
    );
    assert_eq!(h.jira.is_done(&ticket.key), Some(false));
    assert_eq!(h.jira.creates(), 1);
}

#[tokio::test]
async fn the_ticket_priority_follows_the_highest_open_severity() {
    let h = harness();
    actions(&h, &finding("s3/1", H, "2026-11-28T10:00:00Z")).await;
    h.jira.clear_calls();
    assert_eq!(
        actions(&h, &finding("s3/2", C, "2026-11-28T10:01:00Z")).await,
        vec![
            Action::Joined,
            Action::SeverityChanged {
                from: "HIGH".into(),
                to: C
            }
        ]
    );
    assert_eq!(
        field_updates(&h).last().map(|f| f["priority"].clone()),
        Some(serde_json::json!({ "name": "CRITICAL" }))
    );
    // The critical one is fixed: back to the highest still open.
    assert_eq!(
        actions(&h, &archived(finding("s3/2", C, "2026-11-28T11:00:00Z"))).await,
        vec![
            Action::ItemResolved,
            Action::SeverityChanged {
                from: "CRITICAL".into(),
                to: H
            }
        ]
    );
    assert_eq!(group_record(&h, "s3").severity, "HIGH");
}

#[tokio::test]
async fn an_older_active_version_after_the_resolution_joins_nothing() {
    let h = harness();
    actions(&h, &archived(finding("s3/1", H, "2026-11-28T11:00:00Z"))).await;
    assert_eq!(
        actions(&h, &finding("s3/1", H, "2026-11-28T10:00:00Z")).await,
        vec![Action::Stale]
    );
    assert_eq!(h.jira.creates(), 0);
    assert!(h.store.record(&Marker::group("platform", "s3")).is_none());
}

#[tokio::test]
async fn a_group_create_whose_answer_was_lost_is_searched_for_not_repeated() {
    let h = harness();
    *testing::lock(&h.jira.ambiguous) = 1;
    let first = finding("s3/1", H, "2026-11-28T10:00:00Z");
    let outcome = h.lifecycle.process(&first).await;
    assert!(
        matches!(
            outcome.failures.first(),
            Some(LifecycleError::Settling { .. })
        ),
        "{:?}",
        outcome.failures
    );
    assert_eq!(h.jira.creates(), 1, "the create reached the ticket system");
    assert!(h.store.intent(&Marker::group("platform", "s3")).is_some());
    h.store.age_intents();
    assert_eq!(actions(&h, &first).await, vec![Action::Recovered]);
    assert_eq!(
        h.jira.creates(),
        1,
        "found by the marker search, not created again"
    );
    assert!(h.store.intent(&Marker::group("platform", "s3")).is_none());
}

#[tokio::test]
async fn a_full_group_continues_on_a_second_ticket() {
    let h = harness();
    for n in 0..MAX_GROUP_ITEMS {
        actions(
            &h,
            &finding(&format!("s3/{n:04}"), H, "2026-11-28T10:00:00Z"),
        )
        .await;
    }
    assert_eq!(h.jira.creates(), 1);
    let extra = finding("s3/overflow", H, "2026-11-28T10:00:00Z");
    assert_eq!(actions(&h, &extra).await, vec![Action::Created]);
    assert_eq!(h.jira.creates(), 2);
    let second = group_record(&h, "s3 #2");
    assert_eq!(items(&second), vec![("s3/overflow".to_owned(), false)]);
    let member = h
        .store
        .record(&Marker::new("platform", "s3/overflow"))
        .expect("member");
    assert_eq!(member.ticket, second.ticket);
    // Resolving a finding of the first group touches only the first ticket.
    let first_ticket = group_record(&h, "s3").ticket.expect("ticket");
    assert_eq!(
        actions(&h, &archived(finding("s3/0000", H, "2026-11-28T11:00:00Z"))).await,
        vec![Action::ItemResolved]
    );
    assert_eq!(
        h.jira.comments().last().map(|c| c.contains("199 of 200")),
        Some(true)
    );
    assert_eq!(h.jira.is_done(&first_ticket.key), Some(false));
}

#[tokio::test]
async fn the_due_date_moves_with_the_groups_severity_not_with_each_member() {
    let h = harness();
    actions(&h, &finding("s3/1", H, "2026-11-28T10:00:00Z")).await;
    h.jira.clear_calls();
    actions(&h, &finding("s3/2", H, "2026-11-28T10:01:00Z")).await;
    let updates = field_updates(&h);
    assert_eq!(updates.len(), 1);
    assert!(
        !updates[0].contains_key("duedate"),
        "same severity: the due date stays: {updates:?}"
    );
    actions(&h, &finding("s3/3", C, "2026-11-28T10:02:00Z")).await;
    let updates = field_updates(&h);
    assert_eq!(
        updates.last().map(|u| u["duedate"].clone()),
        Some(serde_json::json!("2026-11-28T10:02:00Z")),
        "a higher severity brings the due date of its SLA"
    );
}

#[tokio::test]
async fn a_join_whose_ticket_update_failed_is_retried_whole_and_lists_the_finding_once() {
    let h = harness();
    actions(&h, &finding("s3/1", H, "2026-11-28T10:00:00Z")).await;
    let second = finding("s3/2", H, "2026-11-28T10:01:00Z");
    h.jira
        .fail("update_fields", testing::transient("update_fields"));
    let failed = h.lifecycle.process(&second).await;
    assert!(
        failed
            .failures
            .first()
            .is_some_and(LifecycleError::is_transient),
        "{:?}",
        failed.failures
    );
    // Nothing half-done is kept: neither claim held, the finding not recorded.
    assert!(!h.store.is_claimed(&Marker::group("platform", "s3")));
    assert!(!h.store.is_claimed(&Marker::new("platform", "s3/2")));
    assert!(h.store.record(&Marker::new("platform", "s3/2")).is_none());
    testing::lock(&h.jira.failures).clear();
    assert_eq!(actions(&h, &second).await, vec![Action::Joined]);
    assert_eq!(h.jira.creates(), 1);
    assert_eq!(
        items(&group_record(&h, "s3")),
        vec![("s3/1".to_owned(), false), ("s3/2".to_owned(), false)]
    );
}

#[tokio::test]
async fn a_tick_off_comment_whose_answer_was_lost_is_not_posted_twice() {
    let h = harness();
    actions(&h, &finding("s3/1", H, "2026-11-28T10:00:00Z")).await;
    actions(&h, &finding("s3/2", H, "2026-11-28T10:01:00Z")).await;
    let fixed = archived(finding("s3/1", H, "2026-11-28T11:00:00Z"));
    // The comment is posted, its answer lost: the work fails and the message comes back.
    *testing::lock(&h.jira.ambiguous) = 1;
    let failed = h.lifecycle.process(&fixed).await;
    assert!(!failed.failures.is_empty());
    assert_eq!(actions(&h, &fixed).await, vec![Action::ItemResolved]);
    let tick_offs = h
        .jira
        .comments()
        .iter()
        .filter(|c| c.contains("Resolved in Security Hub"))
        .count();
    assert_eq!(tick_offs, 1, "{:?}", h.jira.comments());
}
