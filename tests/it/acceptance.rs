//! Risk acceptance that expires (issue 15, item 3): the `status_map` form with a duration and its
//! `check` errors; the write-back note and the expiry schedule as status sync decides them
//! (against the simulator, on a fixed clock); and the expiry itself on Tokio's paused clock (in
//! memory): NEW and a reopen exactly once across repeated polls, a restart and an interrupted
//! expiry, and only a record when the finding was resolved meanwhile.

use crate::sync_harness;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use findings_bridge::aws::securityhub::FindingWriter;
use findings_bridge::finding::{Schema, WorkflowStatus, WriteBackId};
use findings_bridge::mapping::template::Clock;
use findings_bridge::mapping::{self, Mappings};
use findings_bridge::marker::Marker;
use findings_bridge::pipeline::plan::MappingsHandle;
use findings_bridge::store::{Acceptance, Claim, Record, Store, SyncFields};
use findings_bridge::sync::{StatusSync, SyncConfig, TicketSyncOutcome};
use findings_bridge::testing::{FakeTickets, MemoryStore, RecordingWriter, transient};
use findings_bridge::ticket::{TicketRef, TicketSystem};
use findings_bridge_sim::SimConfig;
use sync_harness::{Harness, finding_id, harness_with, hub_writer};

const DAY: Duration = Duration::from_secs(24 * 3600);

// ---- The mapping form and its errors ----------------------------------------------------------

fn load(text: &str) -> Result<Mappings, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.toml"), text).unwrap();
    mapping::load(dir.path()).map_err(|e| e.to_string())
}

const RULE: &str = r#"
[[rules]]
name = "r"
order = 1
target = "jira"
[rules.jira]
project = "P"
issue_type = "Bug"
summary = "s"
"#;

#[test]
fn a_status_map_entry_may_carry_a_duration_and_plain_entries_stay_forever() {
    let m = load(&format!(
        r#"team = "t"
[defaults]
status_map = {{ "Risk Accepted" = {{ status = "SUPPRESSED", for = "90d" }}, "False Positive" = "SUPPRESSED", "Parked" = {{ status = "suppressed" }} }}
{RULE}
[[rules]]
name = "override"
order = 2
target = "jira"
status_map = {{ "Risk Accepted" = "SUPPRESSED", "False Positive" = {{ status = "SUPPRESSED", for = "2s" }} }}
[rules.jira]
project = "P"
issue_type = "Bug"
summary = "s"
"#
    ))
    .expect("the timed form loads");
    let inherit = m.rule("t", "r").unwrap();
    assert_eq!(
        inherit.status_map.0["Risk Accepted"],
        WorkflowStatus::Suppressed
    );
    assert_eq!(inherit.status_map.1["Risk Accepted"], 90 * DAY);
    assert_eq!(
        inherit.status_map.0["False Positive"],
        WorkflowStatus::Suppressed
    );
    assert_eq!(inherit.status_map.0["Parked"], WorkflowStatus::Suppressed);
    assert_eq!(
        inherit.status_map.1.keys().collect::<Vec<_>>(),
        ["Risk Accepted"],
        "plain entries and tables without `for` never expire"
    );
    // A rule's entry replaces the default's whole, duration included.
    let own = m.rule("t", "override").unwrap();
    assert_eq!(
        own.status_map.1.get("False Positive"),
        Some(&Duration::from_secs(2))
    );
    assert_eq!(own.status_map.1.get("Risk Accepted"), None);
}

#[test]
fn a_bad_duration_or_form_is_reported_with_file_and_line() {
    let e = load(
        r#"team = "t"
[defaults]
target = "jira"
jira = { project = "P", issue_type = "Bug", summary = "s" }
status_map = { "A" = { status = "SUPPRESSED", for = "90 days" } }

[[rules]]
name = "r2"
order = 2
status_map = { "B" = { status = "RESOLVED", for = "1d" }, "C" = { status = "SUPPRESSED", until = "1d" } }
[rules.jira]

[[rules]]
name = "r3"
order = 3
status_map = { "D" = { for = "1d" }, "E" = 5, "F" = { status = "SUPPRESSED", for = "0s" } }
[rules.jira]
"#,
    )
    .expect_err("broken entries do not load");
    let has = |needle: &str| {
        assert!(
            e.lines().any(|l| l.contains(needle)),
            "expected {needle:?} in:\n{e}"
        )
    };
    has("t.toml:5: defaults.status_map: \"A\": for: \"90 days\" is not a duration");
    has("t.toml:10: rules[0].status_map: \"B\": `for` applies to SUPPRESSED only");
    has("t.toml:10: rules[0].status_map: \"C\": unknown key \"until\"");
    has("t.toml:16: rules[1].status_map: \"D\": status is missing");
    has("t.toml:16: rules[1].status_map: \"E\": a status map value is a workflow status");
    has("t.toml:16: rules[1].status_map: \"F\": for: \"0s\": a duration must be longer than zero");
}

#[test]
fn the_shipped_mappings_use_the_timed_form_once() {
    let m = mapping::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/mappings")))
        .expect("the shipped mappings load");
    let timed: Vec<(&str, &str, Duration)> = m
        .rules
        .iter()
        .flat_map(|r| {
            r.status_map
                .1
                .iter()
                .map(|(k, d)| (&*r.team, k.as_str(), *d))
        })
        .collect();
    assert!(
        timed
            .iter()
            .any(|(_, key, d)| *key == "Risk Accepted" && *d == 90 * DAY),
        "{timed:?}"
    );
    let teams: std::collections::BTreeSet<&str> = timed.iter().map(|(t, _, _)| *t).collect();
    assert_eq!(teams.len(), 1, "one team uses it: {timed:?}");
}

// ---- What status sync decides (simulator, fixed clock) ----------------------------------------

/// `Won't Do` accepts the risk for 90 days, `Done` for 30; `In Progress` (NOTIFIED by default)
/// ends an acceptance.
const TIMED: &str = r#"
team = "payments"

[defaults]
status_map = { "Won't Do" = { status = "SUPPRESSED", for = "90d" }, "Done" = { status = "SUPPRESSED", for = "30d" } }

[[rules]]
name = "to-jira"
order = 1
target = "jira"
[rules.criteria]
AwsAccountId = [{ Value = "444455556666", Comparison = "EQUALS" }]
[rules.jira]
project = "PAY"
issue_type = "Bug"
summary = "{{ finding.title }}"
"#;

/// `Won't Do` accepts for 90 days; `Done` suppresses for good.
const TIMED_THEN_FOREVER: &str = r#"
team = "payments"

[defaults]
status_map = { "Won't Do" = { status = "SUPPRESSED", for = "90d" }, "Done" = "SUPPRESSED" }

[[rules]]
name = "to-jira"
order = 1
target = "jira"
[rules.criteria]
AwsAccountId = [{ Value = "444455556666", Comparison = "EQUALS" }]
[rules.jira]
project = "PAY"
issue_type = "Bug"
summary = "{{ finding.title }}"
"#;

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, day, 10, 0, 0).unwrap()
}

fn fixed(time: DateTime<Utc>) -> Clock {
    Arc::new(move || time)
}

fn text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn sim_sync(h: &Harness, now: DateTime<Utc>) -> StatusSync {
    let writer: Arc<dyn FindingWriter> = Arc::new(hub_writer(&h.sim.base_url).await);
    h.sync(writer, SyncConfig::default()).with_clock(fixed(now))
}

/// The notes Security Hub received for finding 0, oldest first.
fn notes(h: &Harness) -> Vec<String> {
    h.sim
        .state
        .writebacks()
        .iter()
        .filter(|w| w.processed.contains(&finding_id(0)))
        .filter_map(|w| {
            w.request["FindingIdentifiers"].as_array()?;
            w.request["Note"]["Text"].as_str().map(str::to_owned)
        })
        .collect()
}

/// The whole expiry schedule.
async fn schedule(h: &Harness) -> Vec<Acceptance> {
    h.store.acceptances_due(i64::MAX, 100).await.unwrap()
}

#[tokio::test]
async fn an_acceptance_says_where_why_and_until_when_and_is_scheduled() {
    let h = harness_with(50, SimConfig::default(), TIMED).await;
    let (ticket, marker) = h.jira_ticket(0).await;
    h.sim
        .state
        .transition_issue(&ticket.key, "Won't Do")
        .unwrap();

    // The poll path.
    let report = sim_sync(&h, at(1)).await.poll_once().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.written, 1, "{report:?}");
    assert_eq!(
        h.sim.state.finding_workflow(&finding_id(0)).as_deref(),
        Some("SUPPRESSED")
    );
    let until = at(1) + chrono::Duration::days(90);
    let note = notes(&h).pop().expect("a note was written");
    // Who (the changelog's author of the move) and why (the resolution) come from Jira.
    assert!(
        note.starts_with(&format!(
            "Risk accepted in Jira {} (Won't Do) by Jane Doe (resolution: Won't Do) until {}; \
             set to SUPPRESSED",
            ticket.key,
            text(until)
        )),
        "{note}"
    );
    assert!(note.contains(&ticket.url), "{note}");
    assert_eq!(
        schedule(&h).await,
        [Acceptance {
            marker: marker.clone(),
            connection: "jira".to_owned(),
            until: until.timestamp_millis(),
        }]
    );

    // The same acceptance seen again (a webhook after the poll) changes nothing.
    let again = sim_sync(&h, at(2))
        .await
        .sync_ticket("jira", &marker, Some(&ticket.key))
        .await
        .unwrap();
    assert!(
        matches!(again, TicketSyncOutcome::Skipped { .. }),
        "{again:?}"
    );
    assert_eq!(schedule(&h).await[0].until, until.timestamp_millis());
}

#[tokio::test]
async fn a_re_acceptance_moves_the_date_and_another_status_clears_it() {
    let h = harness_with(50, SimConfig::default(), TIMED).await;
    let (ticket, marker) = h.jira_ticket(0).await;
    let (h, marker, key) = (&h, &marker, &ticket.key);
    let sync_at = |day| async move {
        sim_sync(h, at(day))
            .await
            .sync_ticket("jira", marker, Some(key))
            .await
            .unwrap()
    };
    h.sim.state.transition_issue(key, "Won't Do").unwrap();
    sync_at(1).await;
    // Accepted again, in another timed status: written again with the new date.
    h.sim.state.transition_issue(key, "Done").unwrap();
    let outcome = sync_at(5).await;
    assert_eq!(
        outcome,
        TicketSyncOutcome::Written {
            status: WorkflowStatus::Suppressed
        }
    );
    let until = at(5) + chrono::Duration::days(30);
    assert_eq!(schedule(h).await[0].until, until.timestamp_millis());
    let note = notes(h).pop().unwrap();
    assert!(
        note.contains(&format!(
            "(Done) by Jane Doe (resolution: Done) until {}",
            text(until)
        )),
        "{note}"
    );

    // Reopened: NOTIFIED is written and nothing is left to expire.
    h.sim.state.transition_issue(key, "In Progress").unwrap();
    assert_eq!(
        sync_at(6).await,
        TicketSyncOutcome::Written {
            status: WorkflowStatus::Notified
        }
    );
    assert_eq!(schedule(h).await, []);
}

#[tokio::test]
async fn a_move_to_a_suppression_without_duration_ends_the_schedule_without_a_write() {
    let h = harness_with(50, SimConfig::default(), TIMED_THEN_FOREVER).await;
    let (ticket, marker) = h.jira_ticket(0).await;
    h.sim
        .state
        .transition_issue(&ticket.key, "Won't Do")
        .unwrap();
    let sync = sim_sync(&h, at(1)).await;
    sync.sync_ticket("jira", &marker, Some(&ticket.key))
        .await
        .unwrap();
    assert_eq!(schedule(&h).await.len(), 1);
    let writes = h.sim.state.writebacks().len();

    h.sim.state.transition_issue(&ticket.key, "Done").unwrap();
    let outcome = sync
        .sync_ticket("jira", &marker, Some(&ticket.key))
        .await
        .unwrap();
    assert!(
        matches!(outcome, TicketSyncOutcome::Skipped { .. }),
        "SUPPRESSED already: {outcome:?}"
    );
    assert_eq!(schedule(&h).await, [], "suppressed for good now");
    assert_eq!(h.sim.state.writebacks().len(), writes);
    assert_eq!(
        h.stored(&marker).await.status_from_ticket.as_deref(),
        Some("Done")
    );
}

// ---- The expiry (in memory, Tokio's paused clock) ---------------------------------------------

/// `Done` accepts the risk for one day (the fake ticket system knows `To Do` and `Done`).
const ONE_DAY: &str = r#"
team = "payments"

[[rules]]
name = "to-jira"
order = 1
target = "jira"
status_map = { "Done" = { status = "SUPPRESSED", for = "1d" } }
[rules.criteria]
AwsAccountId = [{ Value = "444455556666", Comparison = "EQUALS" }]
[rules.jira]
project = "PAY"
issue_type = "Bug"
summary = "{{ finding.title }}"
"#;

/// Wall-clock time that moves with Tokio's (paused) clock.
fn tokio_clock() -> Clock {
    let start = tokio::time::Instant::now();
    let base = Utc::now();
    Arc::new(move || base + chrono::Duration::from_std(start.elapsed()).unwrap())
}

struct World {
    store: Arc<MemoryStore>,
    tickets: Arc<FakeTickets>,
    writer: Arc<RecordingWriter>,
    mappings: MappingsHandle,
    clock: Clock,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("payments.toml"), ONE_DAY).unwrap();
        World {
            store: Arc::new(MemoryStore::default()),
            tickets: Arc::new(FakeTickets::new("jira")),
            writer: Arc::new(RecordingWriter::new()),
            mappings: MappingsHandle::new(mapping::load(dir.path()).unwrap()),
            clock: tokio_clock(),
        }
    }

    /// A replica (a fresh instance: a restart) over the same store, tickets and Security Hub.
    fn replica(&self) -> StatusSync {
        let systems: HashMap<String, Arc<dyn TicketSystem>> = HashMap::from([(
            "jira".to_owned(),
            Arc::clone(&self.tickets) as Arc<dyn TicketSystem>,
        )]);
        StatusSync::new(
            Arc::clone(&self.store) as Arc<dyn Store>,
            systems,
            Arc::clone(&self.writer) as Arc<dyn FindingWriter>,
            self.mappings.clone(),
            SyncConfig::default(),
        )
        .with_clock(Arc::clone(&self.clock))
    }

    /// A bridge ticket for finding 0 and its record, then the ticket moved to `Done` and synced
    /// (the webhook path): the risk is accepted for a day.
    async fn accepted(&self) -> (TicketRef, Marker) {
        let id = finding_id(0);
        let marker = Marker::new(sync_harness::TEAM, &id);
        let ticket = self.tickets.insert_existing(&marker, "PAY-1");
        let record = Record {
            marker: marker.clone(),
            finding_id: id.clone(),
            team: sync_harness::TEAM.to_owned(),
            schema: Schema::Asff,
            write_back: WriteBackId::Asff {
                id,
                product_arn: sync_harness::PRODUCT_ARN.to_owned(),
            },
            rule: "to-jira".to_owned(),
            ticket: Some(ticket.clone()),
            updated_at: None,
            fingerprint: "test".to_owned(),
            severity: "HIGH".to_owned(),
            finding_resolved: false,
            closed_by_bridge: false,
            status_to_hub: Some("NOTIFIED".to_owned()),
            status_from_ticket: None,
            modified_at: 0,
            sla: None,
            group: None,
        };
        let claim = self
            .store
            .claim(&marker, "test", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(matches!(claim, Claim::Acquired(_)));
        self.store
            .put(&record, "test", SyncFields::Replace)
            .await
            .unwrap();
        self.tickets.set_done_for_test(&ticket.key, true);
        let outcome = self
            .replica()
            .sync_ticket("jira", &marker, Some(&ticket.key))
            .await
            .unwrap();
        assert_eq!(
            outcome,
            TicketSyncOutcome::Written {
                status: WorkflowStatus::Suppressed
            }
        );
        assert_eq!(self.store.scheduled_acceptances().len(), 1);
        (ticket, marker)
    }

    fn statuses(&self) -> Vec<WorkflowStatus> {
        self.writer
            .updates()
            .iter()
            .filter_map(|u| u.status)
            .collect()
    }

    fn reopens(&self) -> usize {
        self.tickets
            .calls()
            .iter()
            .filter(|c| matches!(c, findings_bridge::testing::Call::Reopen(_)))
            .count()
    }
}

#[tokio::test(start_paused = true)]
async fn an_expired_acceptance_reopens_once_across_polls_and_a_restart() {
    let w = World::new();
    let (ticket, marker) = w.accepted().await;
    let sync = w.replica();

    // Not due yet: nothing happens.
    tokio::time::advance(DAY - Duration::from_secs(60)).await;
    let report = sync.poll_once().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.acceptances_expired, 0);
    assert_eq!(w.statuses(), [WorkflowStatus::Suppressed]);

    tokio::time::advance(Duration::from_secs(120)).await;
    let report = sync.poll_once().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.acceptances_expired, 1, "{report:?}");
    assert_eq!(
        w.statuses(),
        [WorkflowStatus::Suppressed, WorkflowStatus::New]
    );
    let note = &w.writer.updates()[1].note;
    assert!(
        note.starts_with(&format!(
            "Risk acceptance in Jira {} expired on ",
            ticket.key
        )),
        "{note}"
    );
    assert_eq!(w.tickets.is_done(&ticket.key), Some(false), "reopened");
    assert_eq!(w.reopens(), 1);
    let comments = w.tickets.posted();
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(
        comments[0]
            .1
            .contains("risk acceptance of this finding expired"),
        "{comments:?}"
    );
    assert_eq!(w.store.scheduled_acceptances(), []);
    assert_eq!(
        w.store.record(&marker).unwrap().status_to_hub.as_deref(),
        Some("NEW")
    );

    // The loop again, and a restarted replica on the same store: nothing more.
    tokio::time::advance(DAY).await;
    assert_eq!(sync.poll_once().await.acceptances_expired, 0);
    let restarted = w.replica();
    assert_eq!(restarted.poll_once().await.acceptances_expired, 0);
    assert_eq!(w.statuses().len(), 2);
    assert_eq!(w.tickets.posted().len(), 1);
    assert_eq!(w.reopens(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_expiry_interrupted_between_its_steps_repeats_nothing_visible() {
    let w = World::new();
    let (ticket, _) = w.accepted().await;
    tokio::time::advance(DAY + Duration::from_secs(1)).await;

    // NEW written and the comment posted, then the reopen fails (as a crash there would leave
    // it): the entry stays for the next poll.
    w.tickets.fail("reopen", transient("reopen"));
    let report = w.replica().poll_once().await;
    assert_eq!(report.acceptances_expired, 0);
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert_eq!(w.store.scheduled_acceptances().len(), 1);
    assert_eq!(w.tickets.is_done(&ticket.key), Some(true));

    // A restarted replica finishes it: no second NEW, no second comment, one reopen.
    w.tickets.failures.lock().unwrap().clear();
    let report = w.replica().poll_once().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.acceptances_expired, 1);
    assert_eq!(
        w.statuses(),
        [WorkflowStatus::Suppressed, WorkflowStatus::New]
    );
    assert_eq!(w.tickets.posted().len(), 1, "{:?}", w.tickets.posted());
    assert_eq!(w.tickets.is_done(&ticket.key), Some(false));
    assert_eq!(w.store.scheduled_acceptances(), []);
}

#[tokio::test(start_paused = true)]
async fn an_acceptance_running_out_after_the_finding_resolved_is_only_recorded() {
    let w = World::new();
    let (ticket, marker) = w.accepted().await;
    // The finding resolved meanwhile (the lifecycle records it).
    let mut record = w.store.record(&marker).unwrap();
    record.finding_resolved = true;
    w.store
        .claim(&marker, "lifecycle", Duration::from_secs(60))
        .await
        .unwrap();
    w.store
        .put(&record, "lifecycle", SyncFields::Keep)
        .await
        .unwrap();

    tokio::time::advance(DAY + Duration::from_secs(1)).await;
    let report = w.replica().poll_once().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.acceptances_expired, 0);
    assert_eq!(report.acceptances_settled, 1);
    assert_eq!(w.statuses(), [WorkflowStatus::Suppressed], "no NEW");
    assert_eq!(w.reopens(), 0);
    assert_eq!(w.tickets.posted(), []);
    assert_eq!(w.tickets.is_done(&ticket.key), Some(true));
    assert_eq!(w.store.scheduled_acceptances(), []);
}

// ---- The schedule in each store --------------------------------------------------------------

fn entry(n: usize, until: i64) -> Acceptance {
    Acceptance {
        marker: Marker::new("payments", &finding_id(n)),
        connection: "jira".to_owned(),
        until,
    }
}

/// Scheduling replaces, `acceptances_due` lists what is due earliest first, a conditional clear
/// keeps a moved date, an unconditional one removes whatever is there.
async fn schedule_contract(store: &dyn Store) {
    assert_eq!(store.acceptances_due(i64::MAX, 10).await.unwrap(), []);
    for (n, until) in [(0, 3_000), (1, 1_000), (2, 9_000)] {
        assert!(store.schedule_acceptance(&entry(n, until)).await.unwrap());
    }
    // Re-accepted: the entry moves.
    assert!(store.schedule_acceptance(&entry(2, 2_000)).await.unwrap());
    assert_eq!(
        store.acceptances_due(3_000, 10).await.unwrap(),
        [entry(1, 1_000), entry(2, 2_000), entry(0, 3_000)]
    );
    assert_eq!(
        store.acceptances_due(2_999, 1).await.unwrap(),
        [entry(1, 1_000)]
    );
    // The expiry acted on 9 000, but the entry says 2 000 now: it stays.
    assert!(
        !store
            .clear_acceptance(&entry(2, 0).marker, Some(9_000))
            .await
            .unwrap()
    );
    assert!(
        store
            .clear_acceptance(&entry(2, 0).marker, Some(2_000))
            .await
            .unwrap()
    );
    assert!(
        store
            .clear_acceptance(&entry(0, 0).marker, None)
            .await
            .unwrap()
    );
    // Nothing there: cleared either way.
    assert!(
        store
            .clear_acceptance(&entry(0, 0).marker, Some(3_000))
            .await
            .unwrap()
    );
    assert!(
        store
            .clear_acceptance(&entry(7, 0).marker, None)
            .await
            .unwrap()
    );
    assert_eq!(
        store.acceptances_due(i64::MAX, 10).await.unwrap(),
        [entry(1, 1_000)]
    );
}

#[tokio::test]
async fn the_schedule_behaves_alike_in_memory_sqlite_and_dynamodb() {
    schedule_contract(&MemoryStore::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite =
        findings_bridge::store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap();
    schedule_contract(&sqlite).await;
    // A file written before the schedule existed opens with an empty one; entries survive a
    // reopen.
    drop(sqlite);
    let reopened =
        findings_bridge::store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap();
    assert_eq!(
        reopened.acceptances_due(i64::MAX, 10).await.unwrap(),
        [entry(1, 1_000)]
    );

    let moto = crate::support::moto::moto().await;
    let client =
        aws_sdk_dynamodb::Client::new(&crate::support::moto::aws_config(&moto.endpoint).await);
    let table = crate::support::unique("acceptance");
    findings_bridge::store::dynamodb::DynamoStore::create_table_for_tests(&client, &table)
        .await
        .unwrap();
    let dynamodb = findings_bridge::store::dynamodb::DynamoStore::new(client, table);
    schedule_contract(&dynamodb).await;
}

#[tokio::test]
async fn a_full_schedule_refuses_new_markers_but_moves_known_ones() {
    let store = MemoryStore::default();
    for n in 0..findings_bridge::store::MAX_ACCEPTANCES {
        assert!(store.schedule_acceptance(&entry(n, 1)).await.unwrap());
    }
    let extra = entry(findings_bridge::store::MAX_ACCEPTANCES, 1);
    assert!(!store.schedule_acceptance(&extra).await.unwrap());
    assert!(store.schedule_acceptance(&entry(0, 5)).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let sqlite =
        findings_bridge::store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap();
    for n in 0..findings_bridge::store::MAX_ACCEPTANCES {
        assert!(sqlite.schedule_acceptance(&entry(n, 1)).await.unwrap());
    }
    assert!(!sqlite.schedule_acceptance(&extra).await.unwrap());
    assert!(sqlite.schedule_acceptance(&entry(0, 5)).await.unwrap());
}

// ---- The note: who accepted and why -----------------------------------------------------------

/// The Jira Cloud changelog endpoint, as the simulator counts its requests.
const CHANGELOG: &str = "GET /rest/api/3/issue/{key}/changelog";

#[tokio::test]
async fn the_note_names_who_accepted_and_why_after_one_changelog_read() {
    let h = harness_with(50, SimConfig::default(), TIMED).await;
    let (ticket, _) = h.jira_ticket(0).await;
    // People's text is plain text: markup stays as it is, line breaks become spaces.
    h.sim
        .state
        .transition_issue_as(
            &ticket.key,
            "Won't Do",
            "Ada \"<b>\"\nO'Brien",
            Some("Won't Fix; see SEC-1\r\n"),
        )
        .unwrap();
    let report = sim_sync(&h, at(1)).await.poll_once().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.written, 1, "{report:?}");
    let until = at(1) + chrono::Duration::days(90);
    let note = notes(&h).pop().expect("a note was written");
    assert!(
        note.starts_with(&format!(
            "Risk accepted in Jira {} (Won't Do) by Ada \"<b>\" O'Brien (resolution: Won't Fix; \
             see SEC-1) until {}; set to SUPPRESSED",
            ticket.key,
            text(until)
        )),
        "{note}"
    );
    assert!(note.ends_with(&ticket.url), "{note}");
    assert_eq!(h.sim.state.request_count(CHANGELOG), 1);
}

#[tokio::test]
async fn status_changes_that_are_no_timed_acceptance_read_no_changelog() {
    let h = harness_with(50, SimConfig::default(), TIMED_THEN_FOREVER).await;
    let (ticket, marker) = h.jira_ticket(0).await;
    let sync = sim_sync(&h, at(1)).await;
    // Suppressed for good (no `for`), on the poll path: written, no extra read.
    h.sim.state.transition_issue(&ticket.key, "Done").unwrap();
    let report = sync.poll_once().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.written, 1, "{report:?}");
    let note = notes(&h).pop().unwrap();
    assert!(
        note.starts_with(&format!(
            "Jira {} moved to Done; set to SUPPRESSED",
            ticket.key
        )),
        "{note}"
    );
    // Back to work (NOTIFIED), on the webhook path: no extra read either.
    h.sim
        .state
        .transition_issue(&ticket.key, "In Progress")
        .unwrap();
    let outcome = sync
        .sync_ticket("jira", &marker, Some(&ticket.key))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        TicketSyncOutcome::Written {
            status: WorkflowStatus::Notified
        }
    );
    assert_eq!(h.sim.state.request_count(CHANGELOG), 0);
    // The timed acceptance is the one that reads it.
    h.sim
        .state
        .transition_issue(&ticket.key, "Won't Do")
        .unwrap();
    sync.sync_ticket("jira", &marker, Some(&ticket.key))
        .await
        .unwrap();
    assert_eq!(h.sim.state.request_count(CHANGELOG), 1);
    let note = notes(&h).pop().unwrap();
    assert!(
        note.contains("(Won't Do) by Jane Doe (resolution: Won't Do) until "),
        "{note}"
    );
}

/// ServiceNow: `Resolved` accepts the risk for 30 days.
const SERVICENOW_TIMED: &str = r#"
team = "payments"

[[rules]]
name = "to-servicenow"
order = 2
target = "servicenow"
status_map = { "Resolved" = { status = "SUPPRESSED", for = "30d" } }
[rules.criteria]
AwsAccountId = [{ Value = "000000000000", Comparison = "EQUALS" }]
[rules.servicenow]
short_description = "{{ finding.title }}"
"#;

#[tokio::test]
async fn a_servicenow_acceptance_names_the_updater_and_the_close_code_from_the_status_read() {
    let h = harness_with(50, SimConfig::default(), SERVICENOW_TIMED).await;
    let (ticket, marker) = h.servicenow_ticket(0).await;
    h.sim
        .state
        .set_servicenow_state("incident", &ticket.id, "6")
        .unwrap();
    let outcome = sim_sync(&h, at(1))
        .await
        .sync_ticket("servicenow", &marker, Some(&ticket.id))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        TicketSyncOutcome::Written {
            status: WorkflowStatus::Suppressed
        }
    );
    let until = at(1) + chrono::Duration::days(30);
    let note = notes(&h).pop().unwrap();
    assert!(
        note.starts_with(&format!(
            "Risk accepted in ServiceNow {} (Resolved) by jane.doe (resolution: Solved \
             (Permanently): Resolved by a person in the simulator) until {}; set to SUPPRESSED",
            ticket.key,
            text(until)
        )),
        "{note}"
    );
    // Who and why came with the one status read.
    assert_eq!(
        h.sim
            .state
            .request_count("GET /api/now/table/incident/{sys_id}"),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_read_of_who_accepted_still_writes_the_acceptance_without_who() {
    let errors = [
        findings_bridge::testing::unknown("status_changed_by"),
        transient("status_changed_by"),
        findings_bridge::testing::permanent("status_changed_by"),
    ];
    for error in errors {
        let w = World::new();
        w.tickets.fail("status_changed_by", error.clone());
        // Written and scheduled (asserted inside), whatever the read answered.
        let (ticket, _) = w.accepted().await;
        let note = &w.writer.updates()[0].note;
        assert!(
            note.starts_with(&format!(
                "Risk accepted in Jira {} (Done) until ",
                ticket.key
            )),
            "{error:?}: {note}"
        );
        assert_eq!(
            w.tickets.status_author_reads.lock().unwrap().clone(),
            [(ticket.key.clone(), "Done".to_owned())]
        );
    }
    // The same read answered: the note names the person.
    let w = World::new();
    *w.tickets.status_author.lock().unwrap() = Some("Jane Doe".to_owned());
    let (ticket, _) = w.accepted().await;
    let note = &w.writer.updates()[0].note;
    assert!(
        note.starts_with(&format!(
            "Risk accepted in Jira {} (Done) by Jane Doe until ",
            ticket.key
        )),
        "{note}"
    );
}
