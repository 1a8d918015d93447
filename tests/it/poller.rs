//! One status poller for all replicas (issue 16, item 4): only the holder of the store's
//! status-sync lease polls, hands the lease over at once on shutdown, and stops polling before
//! its lease can run out when its store hangs (in memory, on Tokio's paused clock); every
//! ServiceNow table a rule uses is polled under its own watermark, JQL time bounds are placed in
//! the Jira user's time zone, and refused write-backs are retried from the store by whichever
//! process polls next (against the simulator).

use crate::sync_harness;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, SecondsFormat, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use findings_bridge::aws::securityhub::FindingWriter;
use findings_bridge::mapping;
use findings_bridge::pipeline::plan::MappingsHandle;
use findings_bridge::runtime::shutdown::Shutdown;
use findings_bridge::store::{STATUS_SYNC_LEASE, Store};
use findings_bridge::sync::{StatusSync, SyncConfig, TicketSyncOutcome};
use findings_bridge::testing::{FakeTickets, MemoryStore, RecordingWriter};
use findings_bridge::ticket::jira::zone::{jql_local_minute, jql_time_bound};
use findings_bridge::ticket::{TicketRef, TicketSystem};
use findings_bridge_sim::{FindingErrorKind, SimConfig};
use serde_json::json;
use sync_harness::{Harness, MAPPING, finding_id, harness, harness_with, hub_writer};
use tokio::time::Instant;

async fn hub(h: &Harness) -> Arc<dyn FindingWriter> {
    Arc::new(hub_writer(&h.sim.base_url).await)
}

// ---- Every ServiceNow table a rule uses -------------------------------------------------------

/// Two ServiceNow rules: one in the connection's default table, one in the security incident
/// table.
const TABLES_MAPPING: &str = r#"
team = "payments"

[[rules]]
name = "to-servicenow"
order = 1
target = "servicenow"
[rules.criteria]
AwsAccountId = [{ Value = "000000000000", Comparison = "EQUALS" }]
[rules.servicenow]
short_description = "{{ finding.title }}"

[[rules]]
name = "to-security-incidents"
order = 2
target = "servicenow"
[rules.criteria]
AwsAccountId = [{ Value = "000000000001", Comparison = "EQUALS" }]
[rules.servicenow]
table = "sn_si_incident"
short_description = "{{ finding.title }}"
"#;

/// A bridge record in the simulated security incident table for finding `n`, with its record.
async fn security_incident(h: &Harness, n: usize) -> (TicketRef, findings_bridge::marker::Marker) {
    let marker = findings_bridge::marker::Marker::new(sync_harness::TEAM, &finding_id(n));
    let payload = json!({
        "short_description": format!("Finding {n}"),
        "correlation_id": marker.as_str(),
        "correlation_display": findings_bridge::marker::BRIDGE_LABEL,
    });
    let ticket = h
        .servicenow
        .create(&payload, Some("sn_si_incident"))
        .await
        .expect("simulated ServiceNow creates the security incident");
    h.record(n, "to-security-incidents", &ticket, |_| {}).await;
    (ticket, marker)
}

/// Finding 0's incident (the default table) and finding 1's security incident, both Resolved;
/// returns finding 1's marker.
async fn resolved_in_both_tables(h: &Harness) -> findings_bridge::marker::Marker {
    let (incident, _) = h.servicenow_ticket(0).await;
    let (security, security_marker) = security_incident(h, 1).await;
    for (table, ticket) in [("incident", &incident), ("sn_si_incident", &security)] {
        h.sim
            .state
            .set_servicenow_state(table, &ticket.id, "6")
            .unwrap();
    }
    security_marker
}

#[tokio::test]
async fn every_servicenow_table_a_rule_uses_is_polled_under_its_own_watermark() {
    let h = harness_with(50, SimConfig::default(), TABLES_MAPPING).await;
    let security_marker = resolved_in_both_tables(&h).await;
    let sync = h.sync(hub(&h).await, SyncConfig::default());
    let report = sync.poll_once().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.written, 2, "{report:?}");
    for n in [0, 1] {
        assert_eq!(
            h.sim.state.finding_workflow(&finding_id(n)).as_deref(),
            Some("RESOLVED"),
            "finding {n}"
        );
    }
    assert_eq!(
        h.stored(&security_marker).await.status_to_hub.as_deref(),
        Some("RESOLVED")
    );
    assert!(report.watermarks.contains_key("servicenow"), "{report:?}");
    assert!(
        report.watermarks.contains_key("servicenow:sn_si_incident"),
        "{report:?}"
    );
    assert!(
        h.store
            .watermark("sync:servicenow:sn_si_incident")
            .await
            .unwrap()
            .is_some()
    );
    let again = sync.poll_once().await;
    assert_eq!(again.written, 0, "{again:?}");
    assert!(again.is_clean(), "{again:?}");
}

/// An upgrade from the per-connection poller: its watermark (`sync:servicenow`) goes on as the
/// default table's, so that table is read from where it stopped — nothing before it again —
/// while a table never polled before starts from the first-run look-back.
#[tokio::test]
async fn the_per_connection_watermark_goes_on_as_the_default_tables() {
    let h = harness_with(50, SimConfig::default(), TABLES_MAPPING).await;
    resolved_in_both_tables(&h).await;
    // Later than the incident's update, overlap window included: the old poller had read it.
    let before_upgrade =
        (Utc::now() + chrono::Duration::minutes(10)).to_rfc3339_opts(SecondsFormat::Millis, true);
    h.store
        .set_watermark("sync:servicenow", &before_upgrade)
        .await
        .unwrap();

    let report = h
        .sync(hub(&h).await, SyncConfig::default())
        .poll_once()
        .await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.written, 1, "{report:?}");
    assert_eq!(
        h.sim.state.finding_workflow(&finding_id(0)),
        None,
        "the default table is read on from the stored watermark"
    );
    assert_eq!(
        h.sim.state.finding_workflow(&finding_id(1)).as_deref(),
        Some("RESOLVED"),
        "the table no poll read before is read from the first-run look-back"
    );
    assert_eq!(report.watermarks["servicenow"], before_upgrade);
}

// ---- JQL time bounds in the Jira user's time zone ---------------------------------------------

/// `at` with seconds and below cut off.
fn whole_minute(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .expect("a whole minute exists")
}

/// A Jira user west of UTC (Los Angeles) and one at a half-hour offset east of it (Kolkata): an
/// update just after the watermark is found, one well before it is not. A UTC bound read in
/// Los Angeles lies 7–8 hours after the watermark (the update would be skipped); read in Kolkata
/// it lies 5½ hours before it (the older one would be read again).
#[tokio::test]
async fn an_update_just_after_the_watermark_is_seen_in_any_user_time_zone() {
    for zone in [Tz::America__Los_Angeles, Tz::Asia__Kolkata] {
        let sim = SimConfig {
            jira_time_zone: zone,
            ..SimConfig::default()
        };
        let h = harness_with(50, sim, MAPPING).await;
        let watermark = whole_minute(Utc::now() - chrono::Duration::minutes(30));
        let (after, _) = h.jira_ticket(0).await;
        let (before, _) = h.jira_ticket(1).await;
        for (ticket, updated) in [
            (&after, watermark + chrono::Duration::seconds(30)),
            (&before, watermark - chrono::Duration::minutes(2)),
        ] {
            h.sim.state.transition_issue(&ticket.key, "Done").unwrap();
            h.sim.state.set_jira_updated(&ticket.key, updated).unwrap();
        }
        h.store
            .set_watermark(
                "sync:jira",
                &watermark.to_rfc3339_opts(SecondsFormat::Millis, true),
            )
            .await
            .unwrap();
        // No overlap window: the bound itself must be right.
        let config = SyncConfig {
            overlap: Duration::ZERO,
            ..SyncConfig::default()
        };
        let report = h.sync(hub(&h).await, config).poll_once().await;
        assert!(report.is_clean(), "{zone}: {report:?}");
        assert_eq!(report.read, 1, "{zone}: {report:?}");
        assert_eq!(report.written, 1, "{zone}: {report:?}");
        assert_eq!(
            h.sim.state.finding_workflow(&finding_id(0)).as_deref(),
            Some("RESOLVED"),
            "{zone}"
        );
        assert_eq!(h.sim.state.finding_workflow(&finding_id(1)), None, "{zone}");
    }
}

/// 01:30 happens twice in Los Angeles on 2026-11-01 (PDT, then PST). A watermark at the first
/// one must not be read as the second, an hour later, which would skip the update after it.
#[tokio::test]
async fn a_watermark_in_the_repeated_hour_of_a_dst_change_still_sees_the_next_update() {
    let sim = SimConfig {
        jira_time_zone: Tz::America__Los_Angeles,
        ..SimConfig::default()
    };
    let h = harness_with(50, sim, MAPPING).await;
    let watermark = Utc.with_ymd_and_hms(2026, 11, 1, 8, 30, 0).unwrap();
    let (ticket, _) = h.jira_ticket(0).await;
    h.sim.state.transition_issue(&ticket.key, "Done").unwrap();
    h.sim
        .state
        .set_jira_updated(&ticket.key, watermark + chrono::Duration::seconds(30))
        .unwrap();
    h.store
        .set_watermark("sync:jira", &watermark.to_rfc3339())
        .await
        .unwrap();
    let config = SyncConfig {
        overlap: Duration::ZERO,
        ..SyncConfig::default()
    };
    let report = h.sync(hub(&h).await, config).poll_once().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.written, 1, "{report:?}");
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

#[test]
fn the_bound_is_the_watermarks_minute_in_the_users_zone() {
    use Tz::*;
    let cases = [
        (UTC, utc(2026, 3, 4, 9, 30, 45), "2026-03-04 09:30"),
        // Fixed offsets at both ends of the range.
        (
            Etc__GMTPlus12,
            utc(2026, 3, 4, 9, 30, 0),
            "2026-03-03 21:30",
        ),
        (
            Pacific__Kiritimati,
            utc(2026, 3, 4, 9, 30, 0),
            "2026-03-04 23:30",
        ),
        // West of UTC, standard and daylight saving time.
        (
            America__Los_Angeles,
            utc(2026, 1, 15, 17, 30, 0),
            "2026-01-15 09:30",
        ),
        (
            America__Los_Angeles,
            utc(2026, 7, 15, 16, 30, 0),
            "2026-07-15 09:30",
        ),
        // Half-hour and three-quarter-hour offsets.
        (Asia__Kolkata, utc(2026, 3, 4, 9, 30, 0), "2026-03-04 15:00"),
        (
            Asia__Kolkata,
            utc(2026, 3, 4, 9, 15, 59),
            "2026-03-04 14:45",
        ),
        (
            Asia__Kathmandu,
            utc(2026, 3, 4, 0, 0, 0),
            "2026-03-04 05:45",
        ),
        (
            America__St_Johns,
            utc(2026, 1, 15, 12, 0, 0),
            "2026-01-15 08:30",
        ),
        (
            Pacific__Chatham,
            utc(2026, 7, 1, 0, 0, 0),
            "2026-07-01 12:45",
        ),
        // Los Angeles springs forward at 02:00 PST (10:00 UTC) on 2026-03-08: 02:00–02:59
        // never happens.
        (
            America__Los_Angeles,
            utc(2026, 3, 8, 9, 59, 30),
            "2026-03-08 01:59",
        ),
        (
            America__Los_Angeles,
            utc(2026, 3, 8, 10, 0, 0),
            "2026-03-08 03:00",
        ),
        // It falls back at 02:00 PDT (09:00 UTC) on 2026-11-01: 01:00–01:59 happens twice. The
        // first 01:30 is bounded before the fold (no reading of 01:30 can be too late); the
        // second is 01:30 itself (both readings are at or before it).
        (
            America__Los_Angeles,
            utc(2026, 11, 1, 8, 30, 0),
            "2026-11-01 00:59",
        ),
        (
            America__Los_Angeles,
            utc(2026, 11, 1, 8, 59, 59),
            "2026-11-01 00:59",
        ),
        (
            America__Los_Angeles,
            utc(2026, 11, 1, 9, 30, 0),
            "2026-11-01 01:30",
        ),
        (
            America__Los_Angeles,
            utc(2026, 11, 1, 10, 0, 0),
            "2026-11-01 02:00",
        ),
        // Lord Howe Island moves by half an hour: 01:30–01:59 happens twice on 2026-04-05.
        (
            Australia__Lord_Howe,
            utc(2026, 4, 4, 14, 45, 0),
            "2026-04-05 01:29",
        ),
        (
            Australia__Lord_Howe,
            utc(2026, 4, 4, 15, 15, 0),
            "2026-04-05 01:45",
        ),
    ];
    for (zone, at, expected) in cases {
        assert_eq!(jql_time_bound(at, zone), expected, "{zone} {at}");
    }
}

/// Every reading of `local` in `zone`.
fn readings(zone: Tz, local: NaiveDateTime) -> Vec<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
        LocalResult::Ambiguous(a, b) => vec![a.with_timezone(&Utc), b.with_timezone(&Utc)],
        LocalResult::None => Vec::new(),
    }
}

/// Around every offset change of 2026 in zones with whole, half and quarter hour offsets and
/// daylight saving shifts of an hour and of half an hour: the bound exists, every reading of it
/// is at or before the watermark (nothing is skipped), and it is less than a minute plus the
/// shift before it (little is read twice).
#[test]
fn around_every_dst_change_no_reading_of_the_bound_is_after_the_watermark() {
    let zones = [
        Tz::America__Los_Angeles,
        Tz::America__St_Johns,
        Tz::Europe__London,
        Tz::Australia__Adelaide,
        Tz::Australia__Lord_Howe,
        Tz::Pacific__Chatham,
        Tz::Asia__Kolkata,
    ];
    let mut changes = 0;
    for zone in zones {
        let offset = |at: DateTime<Utc>| at.with_timezone(&zone).naive_local() - at.naive_utc();
        let mut hour = utc(2026, 1, 1, 0, 0, 0);
        while hour < utc(2027, 1, 1, 0, 0, 0) {
            let next = hour + chrono::Duration::hours(1);
            let shift = offset(next) - offset(hour);
            if !shift.is_zero() {
                changes += 1;
                let mut at = hour - chrono::Duration::hours(2);
                while at < next + chrono::Duration::hours(2) {
                    let bound = jql_local_minute(at, zone);
                    let read = readings(zone, bound);
                    assert!(!read.is_empty(), "{zone} {at}: {bound} does not exist");
                    assert!(
                        read.iter().all(|r| *r <= at),
                        "{zone} {at}: {bound} can be read as {read:?}"
                    );
                    let earliest = read.iter().min().copied().unwrap_or(at);
                    assert!(
                        at - earliest < chrono::Duration::minutes(1) + shift.abs(),
                        "{zone} {at}: {bound} is needlessly early"
                    );
                    at += chrono::Duration::seconds(37);
                }
            }
            hour = next;
        }
    }
    assert!(changes >= 12, "only {changes} offset changes found");
}

// ---- One poller: the lease --------------------------------------------------------------------

/// A replica of the sync over `store`: its own ticket system (which counts its polls) and
/// writer, the shipped mapping files.
fn replica(
    store: &Arc<MemoryStore>,
    owner: &str,
    config: &SyncConfig,
) -> (Arc<StatusSync>, Arc<FakeTickets>) {
    let tickets = Arc::new(FakeTickets::new("jira"));
    let systems: HashMap<String, Arc<dyn TicketSystem>> = HashMap::from([(
        "jira".to_owned(),
        Arc::clone(&tickets) as Arc<dyn TicketSystem>,
    )]);
    let mappings = mapping::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/mappings")))
        .expect("the shipped mappings load");
    let sync = StatusSync::new(
        Arc::clone(store) as Arc<dyn Store>,
        systems,
        Arc::new(RecordingWriter::new()),
        MappingsHandle::new(mappings),
        config.clone(),
    )
    .with_owner(owner);
    (Arc::new(sync), tickets)
}

/// Lets Tokio's paused clock run until `check` holds (a bounded number of steps).
async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..100_000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

fn lease_config() -> SyncConfig {
    SyncConfig {
        interval: Duration::from_secs(1),
        lease: Duration::from_secs(8),
        ..SyncConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn only_the_lease_holder_polls_and_a_stopped_one_hands_over_at_once() {
    let store = Arc::new(MemoryStore::default());
    let config = lease_config();
    let (a, a_tickets) = replica(&store, "replica-a", &config);
    let (b, b_tickets) = replica(&store, "replica-b", &config);
    let (a_stop, b_stop) = (Shutdown::new(), Shutdown::new());
    let a_task = tokio::spawn(a.run(a_stop.clone()));
    until("replica a polls", || !a_tickets.polls().is_empty()).await;
    let b_task = tokio::spawn(b.run(b_stop.clone()));

    // A minute of the paused clock: a polls every second and renews its lease; b never polls.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(a_tickets.polls().len() >= 55, "{}", a_tickets.polls().len());
    assert!(b_tickets.polls().is_empty(), "only the lease holder polls");
    assert_eq!(
        store
            .lease_holder(STATUS_SYNC_LEASE)
            .map(|(owner, _)| owner)
            .as_deref(),
        Some("replica-a")
    );

    // SIGTERM: a releases the lease, so b takes over at its next attempt, not after the lease.
    let stopped = Instant::now();
    a_stop.trigger();
    a_task.await.expect("replica a stops");
    until("replica b polls", || !b_tickets.polls().is_empty()).await;
    let took = b_tickets.polls()[0] - stopped;
    assert!(
        took <= config.lease / 4,
        "taken over {took:?} after the release; b tries every {:?}",
        config.lease / 4
    );
    assert!(a_tickets.polls().iter().all(|at| *at <= stopped));
    b_stop.trigger();
    b_task.await.expect("replica b stops");
    assert_eq!(
        store.lease_holder(STATUS_SYNC_LEASE),
        None,
        "released on shutdown"
    );
}

/// The holder's store stops answering its lease calls while a poll of its hangs: it must drop
/// the poll before its lease can run out in the store, and the other replica polls only after
/// that — two replicas never poll at once.
#[tokio::test(start_paused = true)]
async fn a_holder_whose_store_hangs_stops_polling_before_its_lease_can_run_out() {
    let store = Arc::new(MemoryStore::default());
    let config = lease_config();
    let (a, a_tickets) = replica(&store, "replica-a", &config);
    let (b, b_tickets) = replica(&store, "replica-b", &config);
    let stop = Shutdown::new();
    let a_task = tokio::spawn(a.run(stop.clone()));
    until("replica a polls", || a_tickets.polls().len() >= 3).await;

    *a_tickets.hang_polls.lock().unwrap() = true;
    *store.stall_leases_of.lock().unwrap() = Some("replica-a".to_owned());
    let (_, lease_end) = store
        .lease_holder(STATUS_SYNC_LEASE)
        .expect("replica a holds the lease");
    let b_task = tokio::spawn(b.run(stop.clone()));

    until("replica b polls", || !b_tickets.polls().is_empty()).await;
    let abandoned = a_tickets.abandoned_polls();
    assert_eq!(abandoned.len(), 1, "a's hung poll was dropped once");
    assert!(
        abandoned[0] < lease_end,
        "a stopped polling {:?} before its lease ran out",
        lease_end - abandoned[0]
    );
    assert!(
        b_tickets.polls()[0] >= lease_end,
        "b polled only once a's lease had run out"
    );
    let last_poll_of_a = a_tickets.polls().into_iter().max().expect("a polled");
    assert!(last_poll_of_a <= abandoned[0], "a never polled again");
    stop.trigger();
    a_task.await.expect("replica a stops");
    b_task.await.expect("replica b stops");
}

#[tokio::test]
async fn sync_once_polls_nothing_while_another_process_holds_the_lease() {
    let h = harness(50).await;
    let worker = h
        .store
        .acquire_lease(
            STATUS_SYNC_LEASE,
            "a-running-worker",
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(worker.is_some());
    let report = h
        .sync(hub(&h).await, SyncConfig::default())
        .poll_once()
        .await;
    assert!(!report.is_clean(), "{report:?}");
    assert!(
        report.errors[0].contains("another process holds the status-sync lease"),
        "{report:?}"
    );
    assert_eq!(report.pages, 0);
    assert_eq!(h.sim.state.request_count("POST /rest/api/3/search/jql"), 0);
}

// ---- Refused write-backs, retried from the store ----------------------------------------------

/// Security Hub refuses a status; the process that polled stops. The refusal is in the store,
/// not in that process's memory: the next process to poll (another replica, or the same one
/// restarted) retries it.
#[tokio::test]
async fn a_refused_write_back_is_retried_by_the_next_process_to_poll() {
    let h = harness(50).await;
    let (ticket, marker) = h.jira_ticket(0).await;
    h.sim.state.transition_issue(&ticket.key, "Done").unwrap();
    h.sim
        .state
        .set_finding_error(&finding_id(0), FindingErrorKind::NotFound);
    {
        let first = h.sync(hub(&h).await, SyncConfig::default());
        let report = first.poll_once().await;
        assert_eq!(report.unprocessed.len(), 1, "{report:?}");
    }
    let queued = h.store.sync_retries_due(i64::MAX, 10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].marker, marker);
    assert_eq!(queued[0].connection, "jira");

    h.sim.state.clear_finding_error(&finding_id(0));
    let next = h.sync(hub(&h).await, SyncConfig::default());
    let report = next.poll_once().await;
    assert_eq!((report.retried, report.written), (1, 1), "{report:?}");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        h.sim.state.finding_workflow(&finding_id(0)).as_deref(),
        Some("RESOLVED")
    );
    assert!(
        h.store
            .sync_retries_due(i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A webhook lands on a replica that does not poll and Security Hub refuses the status: the
/// refusal is queued in the store, and the polling replica retries it.
#[tokio::test]
async fn a_refusal_met_by_a_webhook_on_another_replica_is_retried_by_the_poller() {
    let h = harness(50).await;
    let (ticket, marker) = h.jira_ticket(0).await;
    h.sim.state.transition_issue(&ticket.key, "Done").unwrap();
    h.sim
        .state
        .set_finding_error(&finding_id(0), FindingErrorKind::NotFound);
    let webhook_replica = h.sync(hub(&h).await, SyncConfig::default());
    let outcome = webhook_replica
        .sync_ticket("jira", &marker, Some(&ticket.key))
        .await
        .unwrap();
    assert!(
        matches!(outcome, TicketSyncOutcome::Unprocessed { .. }),
        "{outcome:?}"
    );
    h.sim.state.clear_finding_error(&finding_id(0));
    let poller = h.sync(hub(&h).await, SyncConfig::default());
    let report = poller.poll_once().await;
    assert_eq!(report.retried, 1, "{report:?}");
    assert_eq!(
        h.sim.state.finding_workflow(&finding_id(0)).as_deref(),
        Some("RESOLVED")
    );
}

// ---- The setting ------------------------------------------------------------------------------

#[test]
fn the_lease_is_read_from_bridge_sync_lease() {
    use findings_bridge::config::Config;
    assert_eq!(
        Config::default().sync(None).unwrap().lease,
        Duration::from_secs(30),
        "a dead poller is replaced within a minute by default"
    );
    let config = Config::from_pairs([("BRIDGE_SYNC_LEASE", "12")]);
    assert_eq!(config.sync(None).unwrap().lease, Duration::from_secs(12));
    for bad in ["0", "-3", "30s", "1.5"] {
        let err = Config::from_pairs([("BRIDGE_SYNC_LEASE", bad)])
            .sync(None)
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("BRIDGE_SYNC_LEASE"),
            "{bad}: {err:#}"
        );
    }
}
