//! One behavioural suite for the dedup store, run against both implementations: SQLite on a file
//! in a temporary directory, and DynamoDB on moto_server (see `tests/support/moto.rs`; install
//! it with `scripts/venv`). Each behaviour is a plain `async fn` over `&dyn Store`, so both
//! backends are held to exactly the same contract.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use findings_bridge::finding::{Schema, WriteBackId};
use findings_bridge::mapping::group::GroupItem;
use findings_bridge::mapping::sla::{RenderedEscalation, SlaState};
use findings_bridge::marker::Marker;
use findings_bridge::retry::Retryable;
use findings_bridge::store::dynamodb::DynamoStore;
use findings_bridge::store::sqlite::SqliteStore;
use findings_bridge::store::{Claim, Grouping, Intent, Record, Store, StoreError, SyncFields};
use findings_bridge::ticket::TicketRef;

const LEASE: Duration = Duration::from_secs(30);
const SHORT_LEASE: Duration = Duration::from_secs(1);
/// Past SHORT_LEASE in wall time: moto and SQLite both compare against the real clock.
const PAST_SHORT_LEASE: Duration = Duration::from_millis(1200);

fn marker(finding: &str) -> Marker {
    Marker::new("payments", finding)
}

fn asff_record(finding: &str) -> Record {
    Record {
        marker: marker(finding),
        finding_id: finding.to_owned(),
        team: "payments".to_owned(),
        schema: Schema::Asff,
        write_back: WriteBackId::Asff {
            id: finding.to_owned(),
            product_arn: "arn:aws:securityhub:us-east-1::product/aws/guardduty".to_owned(),
        },
        rule: "critical-guardduty".to_owned(),
        ticket: Some(TicketRef {
            system: "jira".to_owned(),
            key: "PAY-123".to_owned(),
            id: "10042".to_owned(),
            table: None,
            url: "https://example.atlassian.net/browse/PAY-123".to_owned(),
        }),
        updated_at: Some("2025-01-02T03:04:05.678Z".to_owned()),
        fingerprint: "3f2a9c".to_owned(),
        severity: "CRITICAL".to_owned(),
        finding_resolved: false,
        closed_by_bridge: false,
        status_to_hub: Some("NOTIFIED".to_owned()),
        status_from_ticket: Some("To Do".to_owned()),
        modified_at: 1_735_787_045,
        sla: Some(SlaState {
            due_at: 1_735_873_445,
            escalation: Some(RenderedEscalation {
                fields: serde_json::json!({ "priority": { "name": "Highest" }, "assignee": { "accountId": "5b10ac8d" } })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                labels: vec!["sla-breached".to_owned()],
                comment: Some("SLA breached — ünïcode".to_owned()),
            }),
            escalated_at: Some(1_735_873_500),
        }),
        group: Some(Grouping::Member {
            key: "S3.1 — ünïcode".to_owned(),
            marker: Marker::group("payments", "S3.1 — ünïcode"),
        }),
    }
}

/// A group ticket's record: items of both schemas, resolved and open, empty strings.
fn group_record(key: &str) -> Record {
    let mut record = ocsf_record(key, Some("unused"));
    record.marker = Marker::group("payments", key);
    record.group = Some(Grouping::Group {
        key: key.to_owned(),
        items: vec![
            GroupItem {
                id: "arn:aws:securityhub:us-east-1:111122223333:finding/1".to_owned(),
                title: "S3 bucket allows public read — ünïcode".to_owned(),
                resource: "arn:aws:s3:::bucket-1".to_owned(),
                severity: "HIGH".to_owned(),
                resolved: false,
                console_url: "https://console.aws.amazon.com/securityhub/home#/findings?x=1"
                    .to_owned(),
                schema: Schema::Asff,
                write_back: WriteBackId::Asff {
                    id: "arn:aws:securityhub:us-east-1:111122223333:finding/1".to_owned(),
                    product_arn: "arn:aws:securityhub:us-east-1::product/aws/securityhub"
                        .to_owned(),
                },
            },
            GroupItem {
                id: "ocsf-2".to_owned(),
                title: String::new(),
                resource: String::new(),
                severity: "LOW".to_owned(),
                resolved: true,
                console_url: String::new(),
                schema: Schema::Ocsf,
                write_back: WriteBackId::Ocsf {
                    metadata_uid: None,
                    cloud_account_uid: "111122223333".to_owned(),
                    finding_info_uid: "ocsf-2".to_owned(),
                    metadata_product_uid: "p".to_owned(),
                },
            },
        ],
    });
    record
}

/// The other shape of every optional or variant field: OCSF write-back (with and without
/// `metadata_uid`), a ServiceNow ticket with a table, `None`s, `true`s, unicode.
fn ocsf_record(finding: &str, metadata_uid: Option<&str>) -> Record {
    Record {
        marker: marker(finding),
        finding_id: finding.to_owned(),
        team: "payments".to_owned(),
        schema: Schema::Ocsf,
        write_back: WriteBackId::Ocsf {
            metadata_uid: metadata_uid.map(str::to_owned),
            cloud_account_uid: "111122223333".to_owned(),
            finding_info_uid: finding.to_owned(),
            metadata_product_uid: "arn:aws:securityhub:us-east-1::productv2/aws/inspector"
                .to_owned(),
        },
        rule: "payments-to-servicenow — ünïcode".to_owned(),
        ticket: Some(TicketRef {
            system: "servicenow".to_owned(),
            key: "INC0010001".to_owned(),
            id: "9d385017c611228701d22104cc95c371".to_owned(),
            table: Some("sn_si_incident".to_owned()),
            url: "https://example.service-now.com/nav_to.do?uri=sn_si_incident.do".to_owned(),
        }),
        updated_at: None,
        fingerprint: String::new(),
        severity: "HIGH".to_owned(),
        finding_resolved: true,
        closed_by_bridge: true,
        status_to_hub: None,
        status_from_ticket: None,
        modified_at: 0,
        sla: None,
        group: None,
    }
}

fn expect_acquired(claim: Result<Claim, StoreError>) -> Option<Record> {
    match claim {
        Ok(Claim::Acquired(claimed)) => claimed.record,
        other => panic!("expected the claim to be acquired, got {other:?}"),
    }
}

fn expect_busy(claim: Result<Claim, StoreError>) {
    match claim {
        Ok(Claim::Busy) => {}
        other => panic!("expected Busy, got {other:?}"),
    }
}

fn intent(owner: &str, search_after: i64) -> Intent {
    Intent {
        owner: owner.to_owned(),
        system: "jira".to_owned(),
        started_at: search_after - 45_000,
        search_after,
    }
}

// ---------------------------------------------------------------------------------------------
// Behaviours
// ---------------------------------------------------------------------------------------------

/// A lost lease stays lost: renewal extends only a lease still held and unexpired, so a holder
/// whose renewals stalled past the lease learns it lost the key instead of taking it back from
/// whoever took over (cause 4 of the exactly-once issue).
async fn renewal_only_extends_a_lease_still_held(store: &dyn Store) {
    let m = marker("renew");
    expect_acquired(store.claim(&m, "a", SHORT_LEASE).await);
    assert!(store.renew(&m, "a", SHORT_LEASE).await.unwrap());
    assert!(!store.renew(&m, "intruder", LEASE).await.unwrap());
    tokio::time::sleep(PAST_SHORT_LEASE).await;
    // Expired, not yet taken: still lost for the holder.
    assert!(!store.renew(&m, "a", LEASE).await.unwrap());
    expect_acquired(store.claim(&m, "b", LEASE).await);
    assert!(!store.renew(&m, "a", LEASE).await.unwrap());
    assert!(matches!(
        store.set_intent(&m, "a", Some(&intent("a", 1))).await,
        Err(StoreError::LostClaim(_))
    ));
    expect_busy(store.claim(&m, "a", LEASE).await);
    assert!(store.renew(&m, "b", LEASE).await.unwrap());
}

/// An intent outlives the claim that wrote it: released, expired or abandoned, the next holder
/// is told a create may have happened. Only `put` (the ticket is recorded) or the holder's own
/// clearing removes it.
async fn an_intent_survives_release_until_recorded_or_cleared(store: &dyn Store) {
    let m = marker("intent");
    expect_acquired(store.claim(&m, "a", LEASE).await);
    let written = intent("a", 1_900_000_000_000);
    store.set_intent(&m, "a", Some(&written)).await.unwrap();
    store.release(&m, "a").await.unwrap();
    match store.claim(&m, "b", LEASE).await {
        Ok(Claim::Acquired(claimed)) => {
            assert_eq!(claimed.intent.as_ref(), Some(&written));
            assert_eq!(claimed.record, None);
        }
        other => panic!("expected the claim with the intent, got {other:?}"),
    }
    assert_eq!(store.get(&m).await.unwrap(), None, "an intent is no record");
    // An expired holder's intent is found just the same.
    store
        .set_intent(&m, "b", Some(&intent("b", 1_900_000_000_001)))
        .await
        .unwrap();
    store.release(&m, "b").await.unwrap();
    let next = match store.claim(&m, "c", LEASE).await {
        Ok(Claim::Acquired(claimed)) => claimed,
        other => panic!("{other:?}"),
    };
    assert_eq!(next.intent.map(|i| i.owner), Some("b".to_owned()));
    // Recording the ticket removes it.
    store
        .put(&asff_record("intent"), "c", SyncFields::Replace)
        .await
        .unwrap();
    match store.claim(&m, "d", LEASE).await {
        Ok(Claim::Acquired(claimed)) => assert_eq!(claimed.intent, None),
        other => panic!("{other:?}"),
    }
    // So does the holder's own proof that nothing was sent.
    store
        .set_intent(&m, "d", Some(&intent("d", 1)))
        .await
        .unwrap();
    store.set_intent(&m, "d", None).await.unwrap();
    store.release(&m, "d").await.unwrap();
    match store.claim(&m, "e", LEASE).await {
        Ok(Claim::Acquired(claimed)) => assert_eq!(claimed.intent, None),
        other => panic!("{other:?}"),
    }
}

/// The worker's record write and status sync's field writes do not overwrite each other
/// (cause 5): `put` keeps the sync fields written meanwhile unless told they start afresh.
async fn put_keeps_sync_fields_written_meanwhile(store: &dyn Store) {
    let m = marker("sync-race");
    let record = asff_record("sync-race");
    expect_acquired(store.claim(&m, "a", LEASE).await);
    store.put(&record, "a", SyncFields::Replace).await.unwrap();
    // The worker claims for an update; meanwhile a webhook records the ticket's new status.
    let seen = expect_acquired(store.claim(&m, "b", LEASE).await).unwrap();
    store
        .set_sync_status(&m, Some("Done"), Some("RESOLVED"))
        .await
        .unwrap();
    let mut next = seen.clone();
    next.severity = "LOW".to_owned();
    store.put(&next, "b", SyncFields::Keep).await.unwrap();
    let stored = store.get(&m).await.unwrap().unwrap();
    assert_eq!(stored.severity, "LOW");
    assert_eq!(stored.status_from_ticket.as_deref(), Some("Done"));
    assert_eq!(stored.status_to_hub.as_deref(), Some("RESOLVED"));
    // A new ticket starts its sync fields afresh.
    expect_acquired(store.claim(&m, "c", LEASE).await);
    let mut replaced = stored.clone();
    replaced.status_from_ticket = None;
    replaced.status_to_hub = None;
    store
        .put(&replaced, "c", SyncFields::Replace)
        .await
        .unwrap();
    let stored = store.get(&m).await.unwrap().unwrap();
    assert_eq!(stored.status_from_ticket, None);
    assert_eq!(stored.status_to_hub, None);
}

/// The finding index: enlisting reports the state before it, a resolution raises the tombstone
/// and never lowers it, and both list every team enlisted before them.
async fn the_finding_index_keeps_teams_and_the_newest_resolution(store: &dyn Store) {
    let id = "arn:aws:securityhub:us-east-1:111122223333:finding/index";
    let fresh = store.finding(id).await.unwrap();
    assert!(!fresh.indexed && fresh.teams.is_empty() && fresh.resolved_at.is_none());
    let first = store.enlist(id, "payments").await.unwrap();
    assert!(!first.indexed, "the state before the first enlist");
    let second = store.enlist(id, "platform").await.unwrap();
    assert!(second.indexed);
    assert_eq!(second.teams, vec!["payments".to_owned()]);
    store.enlist(id, "payments").await.unwrap();

    let resolved = store.resolve(id, "2026-11-28T10:05:00Z").await.unwrap();
    assert_eq!(
        resolved.teams,
        vec!["payments".to_owned(), "platform".to_owned()]
    );
    assert_eq!(
        resolved.resolved_at.as_deref(),
        Some("2026-11-28T10:05:00Z")
    );
    // An older resolution leaves the newer one (times compared as times, not text).
    let older = store
        .resolve(id, "2026-11-28T11:00:00+02:00")
        .await
        .unwrap();
    assert_eq!(older.resolved_at.as_deref(), Some("2026-11-28T10:05:00Z"));
    assert_eq!(older.teams.len(), 2);
    let newer = store.resolve(id, "2026-11-28T10:06:00.5Z").await.unwrap();
    assert_eq!(newer.resolved_at.as_deref(), Some("2026-11-28T10:06:00.5Z"));
    let read = store.finding(id).await.unwrap();
    assert!(read.indexed);
    assert_eq!(read.resolved_at.as_deref(), Some("2026-11-28T10:06:00.5Z"));
    assert_eq!(read.teams.len(), 2);
    // Enlisting after a resolution sees it.
    let late = store.enlist(id, "security").await.unwrap();
    assert_eq!(late.resolved_at.as_deref(), Some("2026-11-28T10:06:00.5Z"));
    // A finding resolved before anyone enlisted still has its tombstone.
    let other = "arn:aws:securityhub:us-east-1:111122223333:finding/resolved-first";
    let tomb = store.resolve(other, "2026-11-28T10:05:00Z").await.unwrap();
    assert!(!tomb.indexed && tomb.teams.is_empty());
    let after = store.enlist(other, "payments").await.unwrap();
    assert_eq!(after.resolved_at.as_deref(), Some("2026-11-28T10:05:00Z"));
}

async fn first_claim_acquires_with_no_record(store: &dyn Store) {
    let m = marker("first-claim");
    assert_eq!(expect_acquired(store.claim(&m, "a", LEASE).await), None);
    assert_eq!(
        store.get(&m).await.unwrap(),
        None,
        "a claim alone is no record"
    );
}

async fn second_owner_is_busy_while_the_lease_lives(store: &dyn Store) {
    let m = marker("busy");
    expect_acquired(store.claim(&m, "a", LEASE).await);
    expect_busy(store.claim(&m, "b", LEASE).await);
    // The holder renews its lease; claiming again is no way to do it, even for the holder.
    assert!(store.renew(&m, "a", LEASE).await.unwrap());
    expect_busy(store.claim(&m, "a", LEASE).await);
    expect_busy(store.claim(&m, "b", LEASE).await);
    // Once released, the key is free for anyone.
    store.release(&m, "a").await.unwrap();
    expect_acquired(store.claim(&m, "b", LEASE).await);
}

async fn expired_lease_is_taken_over_and_the_stale_put_is_lost(store: &dyn Store) {
    let m = marker("takeover");
    expect_acquired(store.claim(&m, "stale", SHORT_LEASE).await);
    expect_busy(store.claim(&m, "next", LEASE).await);
    tokio::time::sleep(PAST_SHORT_LEASE).await;
    expect_acquired(store.claim(&m, "next", LEASE).await);

    let stale = asff_record("takeover");
    match store.put(&stale, "stale", SyncFields::Replace).await {
        Err(StoreError::LostClaim(which)) => assert_eq!(which, m.as_str()),
        other => panic!("the stale owner's put must fail with LostClaim, got {other:?}"),
    }
    assert_eq!(
        store.get(&m).await.unwrap(),
        None,
        "the stale write left no trace"
    );

    let mut fresh = asff_record("takeover");
    fresh.rule = "written-by-next".to_owned();
    store
        .put(&fresh, "next", SyncFields::Replace)
        .await
        .unwrap();
    assert_eq!(store.get(&m).await.unwrap(), Some(fresh));
}

async fn put_stores_the_record_and_releases_the_lease(store: &dyn Store) {
    let m = marker("put");
    let record = asff_record("put");
    expect_acquired(store.claim(&m, "a", LEASE).await);
    store.put(&record, "a", SyncFields::Replace).await.unwrap();
    assert_eq!(store.get(&m).await.unwrap(), Some(record.clone()));
    // Released: another owner gets it at once, with the record.
    assert_eq!(
        expect_acquired(store.claim(&m, "b", LEASE).await),
        Some(record)
    );
    // And the first owner's lease is gone for good: a second put from it is refused.
    match store
        .put(&asff_record("put"), "a", SyncFields::Replace)
        .await
    {
        Err(StoreError::LostClaim(_)) => {}
        other => panic!("put after release must be LostClaim, got {other:?}"),
    }
}

async fn put_without_a_claim_is_refused(store: &dyn Store) {
    let record = asff_record("never-claimed");
    assert!(matches!(
        store.put(&record, "a", SyncFields::Replace).await,
        Err(StoreError::LostClaim(_))
    ));
    assert_eq!(store.get(&record.marker).await.unwrap(), None);
}

async fn claim_returns_the_stored_record(store: &dyn Store) {
    let m = marker("returns");
    let mut record = asff_record("returns");
    expect_acquired(store.claim(&m, "a", LEASE).await);
    store.put(&record, "a", SyncFields::Replace).await.unwrap();

    // A later version of the finding: claim, update, put — and the next claim sees the update.
    let seen = expect_acquired(store.claim(&m, "b", LEASE).await);
    assert_eq!(seen.as_ref(), Some(&record));
    record.severity = "LOW".to_owned();
    record.fingerprint = "changed".to_owned();
    store.put(&record, "b", SyncFields::Replace).await.unwrap();
    assert_eq!(
        expect_acquired(store.claim(&m, "c", LEASE).await),
        Some(record)
    );
}

async fn release_by_a_non_owner_is_a_no_op(store: &dyn Store) {
    let m = marker("release");
    expect_acquired(store.claim(&m, "a", LEASE).await);
    store.release(&m, "intruder").await.unwrap();
    expect_busy(store.claim(&m, "b", LEASE).await);
    // Releasing a key nobody ever claimed is fine too.
    store
        .release(&marker("never-seen"), "intruder")
        .await
        .unwrap();
    // The owner's release still works, and keeps a stored record intact.
    store
        .put(&asff_record("release"), "a", SyncFields::Replace)
        .await
        .unwrap();
    expect_acquired(store.claim(&m, "a", LEASE).await);
    store.release(&m, "a").await.unwrap();
    assert_eq!(store.get(&m).await.unwrap(), Some(asff_record("release")));
    expect_acquired(store.claim(&m, "b", LEASE).await);
}

async fn set_sync_status_updates_only_the_sync_fields(store: &dyn Store) {
    let m = marker("sync");
    let record = asff_record("sync");
    expect_acquired(store.claim(&m, "a", LEASE).await);
    store.put(&record, "a", SyncFields::Replace).await.unwrap();

    store
        .set_sync_status(&m, Some("Done"), Some("RESOLVED"))
        .await
        .unwrap();
    let after = store.get(&m).await.unwrap().unwrap();
    assert_eq!(after.status_from_ticket.as_deref(), Some("Done"));
    assert_eq!(after.status_to_hub.as_deref(), Some("RESOLVED"));
    assert!(after.modified_at >= record.modified_at);
    let untouched = Record {
        status_from_ticket: record.status_from_ticket.clone(),
        status_to_hub: record.status_to_hub.clone(),
        modified_at: record.modified_at,
        ..after.clone()
    };
    assert_eq!(untouched, record, "no other field may change");

    // `None` leaves a field as it was.
    store
        .set_sync_status(&m, Some("Reopened"), None)
        .await
        .unwrap();
    let later = store.get(&m).await.unwrap().unwrap();
    assert_eq!(later.status_from_ticket.as_deref(), Some("Reopened"));
    assert_eq!(later.status_to_hub.as_deref(), Some("RESOLVED"));

    // It needs no claim, and does not disturb someone else's.
    expect_acquired(store.claim(&m, "holder", LEASE).await);
    store
        .set_sync_status(&m, None, Some("NOTIFIED"))
        .await
        .unwrap();
    expect_busy(store.claim(&m, "other", LEASE).await);

    // A marker with no record creates nothing.
    let unknown = marker("sync-unknown");
    store
        .set_sync_status(&unknown, Some("Done"), Some("RESOLVED"))
        .await
        .unwrap();
    assert_eq!(store.get(&unknown).await.unwrap(), None);
}

async fn watermarks_are_kept_per_name(store: &dyn Store) {
    assert_eq!(store.watermark("jira").await.unwrap(), None);
    store
        .set_watermark("jira", "2025-01-01T00:00:00Z")
        .await
        .unwrap();
    store
        .set_watermark("servicenow", "2024-12-31T23:59:59Z")
        .await
        .unwrap();
    store
        .set_watermark("jira", "2025-01-02T00:00:00Z")
        .await
        .unwrap();
    assert_eq!(
        store.watermark("jira").await.unwrap().as_deref(),
        Some("2025-01-02T00:00:00Z")
    );
    assert_eq!(
        store.watermark("servicenow").await.unwrap().as_deref(),
        Some("2024-12-31T23:59:59Z")
    );
    // A watermark is not a record (separate key spaces).
    assert_eq!(store.get(&marker("jira")).await.unwrap(), None);
}

async fn ping_answers(store: &dyn Store) {
    store.ping().await.unwrap();
}

async fn every_record_field_round_trips(store: &dyn Store) {
    let records = [
        asff_record("rt-asff"),
        ocsf_record("rt-ocsf-metadata", Some("meta-uid-1")),
        ocsf_record("rt-ocsf-identifiers", None),
        group_record("rt-group"),
    ];
    for record in &records {
        expect_acquired(store.claim(&record.marker, "a", LEASE).await);
        store.put(record, "a", SyncFields::Replace).await.unwrap();
    }
    for record in &records {
        assert_eq!(
            store.get(&record.marker).await.unwrap().as_ref(),
            Some(record)
        );
        assert_eq!(
            expect_acquired(store.claim(&record.marker, "b", LEASE).await).as_ref(),
            Some(record)
        );
    }
    // A due date that goes away (the severity lost its SLA) is removed, not kept.
    let mut cleared = records[0].clone();
    cleared.sla = None;
    cleared.group = None;
    store.put(&cleared, "b", SyncFields::Replace).await.unwrap();
    assert_eq!(store.get(&cleared.marker).await.unwrap(), Some(cleared));
}

/// The heart of dedup: the same finding delivered to many workers at once yields one holder.
async fn concurrent_claims_have_exactly_one_winner(stores: Vec<Arc<dyn Store>>) {
    let m = marker("race");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = Arc::clone(&stores[i % stores.len()]);
        let m = m.clone();
        tasks.spawn(async move { store.claim(&m, &format!("worker-{i}"), LEASE).await });
    }
    let mut acquired = 0;
    let mut busy = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("claim task panicked") {
            Ok(Claim::Acquired(_)) => acquired += 1,
            Ok(Claim::Busy) => busy += 1,
            Err(e) => panic!("a racing claim failed: {e}"),
        }
    }
    assert_eq!((acquired, busy), (1, 19));
}

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

struct Sqlite {
    store: Arc<dyn Store>,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn sqlite() -> Sqlite {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bridge.db");
    let store = SqliteStore::open(&path).expect("open sqlite store");
    Sqlite {
        store: Arc::new(store),
        path,
        _dir: dir,
    }
}

async fn dynamo_client() -> aws_sdk_dynamodb::Client {
    let moto = support::moto::moto().await;
    aws_sdk_dynamodb::Client::new(&support::moto::aws_config(&moto.endpoint).await)
}

async fn dynamodb() -> Arc<dyn Store> {
    let client = dynamo_client().await;
    let table = support::unique("store");
    DynamoStore::create_table_for_tests(&client, &table)
        .await
        .expect("create table on moto");
    Arc::new(DynamoStore::new(client, table))
}

macro_rules! suite {
    ($($behaviour:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    let backend = super::sqlite();
                    super::$behaviour(backend.store.as_ref()).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    let store = super::dynamodb().await;
                    super::$behaviour(store.as_ref()).await;
                }
            )*
        }
    };
}

suite!(
    renewal_only_extends_a_lease_still_held,
    an_intent_survives_release_until_recorded_or_cleared,
    put_keeps_sync_fields_written_meanwhile,
    the_finding_index_keeps_teams_and_the_newest_resolution,
    first_claim_acquires_with_no_record,
    second_owner_is_busy_while_the_lease_lives,
    expired_lease_is_taken_over_and_the_stale_put_is_lost,
    put_stores_the_record_and_releases_the_lease,
    put_without_a_claim_is_refused,
    claim_returns_the_stored_record,
    release_by_a_non_owner_is_a_no_op,
    set_sync_status_updates_only_the_sync_fields,
    watermarks_are_kept_per_name,
    ping_answers,
    every_record_field_round_trips,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_claims_have_exactly_one_winner() {
    let backend = sqlite();
    concurrent_claims_have_exactly_one_winner(vec![backend.store.clone()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_concurrent_claims_have_exactly_one_winner() {
    concurrent_claims_have_exactly_one_winner(vec![dynamodb().await]).await;
}

/// Two processes on one file are two connections: SQLite's lock, not our mutex, must decide.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_connections_on_one_file_never_both_hold_the_lease() {
    let backend = sqlite();
    let other: Arc<dyn Store> = Arc::new(SqliteStore::open(&backend.path).expect("second open"));

    let m = marker("two-connections");
    expect_acquired(backend.store.claim(&m, "process-1", LEASE).await);
    expect_busy(other.claim(&m, "process-2", LEASE).await);
    // What one connection writes, the other sees.
    backend
        .store
        .put(
            &asff_record("two-connections"),
            "process-1",
            SyncFields::Replace,
        )
        .await
        .unwrap();
    assert_eq!(
        expect_acquired(other.claim(&m, "process-2", LEASE).await),
        Some(asff_record("two-connections"))
    );
    expect_busy(backend.store.claim(&m, "process-1", LEASE).await);

    // And under contention, split across both connections.
    let third: Arc<dyn Store> = Arc::new(SqliteStore::open(&backend.path).expect("third open"));
    concurrent_claims_have_exactly_one_winner(vec![backend.store.clone(), other, third]).await;
}

#[tokio::test]
async fn sqlite_store_survives_a_reopen() {
    let backend = sqlite();
    let m = marker("reopen");
    expect_acquired(backend.store.claim(&m, "a", LEASE).await);
    backend
        .store
        .put(&asff_record("reopen"), "a", SyncFields::Replace)
        .await
        .unwrap();
    backend.store.set_watermark("jira", "w").await.unwrap();
    let path = backend.path.clone();
    drop(backend.store);
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.get(&m).await.unwrap(), Some(asff_record("reopen")));
    assert_eq!(
        reopened.watermark("jira").await.unwrap().as_deref(),
        Some("w")
    );
}

/// The SDK retries a write whose answer was lost; when the first attempt went through, the
/// retry finds the lease released and fails its condition. That is the write having happened,
/// not a lost claim — unless the item holds something else or someone's lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_a_put_retried_after_it_applied_is_not_a_lost_claim() {
    let store = dynamodb().await;
    let m = marker("retried-put");
    let record = asff_record("retried-put");
    expect_acquired(store.claim(&m, "a", LEASE).await);
    store.put(&record, "a", SyncFields::Replace).await.unwrap();
    // The same request again, as the SDK's retry would send it.
    let mut retry = record.clone();
    retry.modified_at += 1;
    store
        .put(&retry, "a", SyncFields::Replace)
        .await
        .expect("a retried put that had applied succeeds");
    // Status sync wrote meanwhile: a retry that keeps the sync fields still matches.
    store
        .set_sync_status(&m, Some("Done"), Some("RESOLVED"))
        .await
        .unwrap();
    store.put(&record, "a", SyncFields::Keep).await.unwrap();
    // Something else stored: a lost claim.
    let mut other = record.clone();
    other.severity = "LOW".to_owned();
    assert!(matches!(
        store.put(&other, "a", SyncFields::Replace).await,
        Err(StoreError::LostClaim(_))
    ));
    // Someone holds the key now: a lost claim, whatever the item says.
    expect_acquired(store.claim(&m, "b", LEASE).await);
    let mut stored = store.get(&m).await.unwrap().expect("record");
    stored.modified_at = record.modified_at;
    assert!(matches!(
        store.put(&stored, "a", SyncFields::Replace).await,
        Err(StoreError::LostClaim(_))
    ));
}

#[tokio::test]
/// A missing table is the deployment's fault, not any finding's: the store connection pauses
/// (Refused) instead of dead-lettering what arrives meanwhile, and the message names the table.
async fn dynamodb_missing_table_is_refused_and_named() {
    let client = dynamo_client().await;
    let table = support::unique("no-such-table");
    let store = DynamoStore::new(client, table.clone());
    let m = marker("missing");
    let outcomes = [
        store.claim(&m, "a", LEASE).await.map(|_| ()),
        store
            .put(&asff_record("missing"), "a", SyncFields::Replace)
            .await,
        store.get(&m).await.map(|_| ()),
        store.ping().await,
        store.set_watermark("jira", "x").await,
    ];
    for outcome in outcomes {
        match outcome {
            Err(StoreError::Refused(message)) => {
                assert!(message.contains(&table), "{message}");
                assert!(message.contains("not found"), "{message}");
            }
            other => panic!("expected Refused naming {table}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn dynamodb_unreachable_endpoint_is_unavailable() {
    // A port nothing listens on: connection refused is transient, not a misconfiguration.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let config = support::moto::aws_config(&format!("http://127.0.0.1:{port}")).await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .build(),
    );
    let store = DynamoStore::new(client, "bridge".to_owned());
    match store.ping().await {
        Err(e @ StoreError::Unavailable(_)) => assert!(e.is_transient()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// Cause 8 of the exactly-once issue: a store that accepts the connection and never answers
/// must not hang the call (the worker would keep the message hidden and the claim held
/// forever). The bridge's AWS timeouts end it as a transient error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_call_that_hangs_ends_with_the_configured_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket); // read nothing, answer nothing
        }
    });
    let timeouts = findings_bridge::config::Config::from_pairs([
        ("BRIDGE_AWS_TIMEOUT", "3"),
        ("BRIDGE_AWS_ATTEMPT_TIMEOUT", "1"),
    ])
    .aws()
    .unwrap();
    assert_eq!(timeouts.attempt, Duration::from_secs(1));
    let config = support::moto::aws_config(&endpoint).await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .timeout_config(timeouts.sdk_config())
            .build(),
    );
    let store = DynamoStore::new(client, "bridge".to_owned());
    // Only a hang guard: the assertion is that the call ends, as a transient error.
    let outcome = tokio::time::timeout(Duration::from_secs(120), store.ping())
        .await
        .expect("the hung call ended");
    match outcome {
        Err(e @ StoreError::Unavailable(_)) => assert!(e.is_transient(), "{e}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    silent.abort();
}

#[tokio::test]
async fn dynamodb_items_are_laid_out_as_documented() {
    // Operators read the table directly (and the stack's TTL relies on `expires_at`):
    // the item layout is part of the contract.
    let client = dynamo_client().await;
    let table = support::unique("layout");
    DynamoStore::create_table_for_tests(&client, &table)
        .await
        .unwrap();
    let store = DynamoStore::new(client.clone(), table.clone());
    let m = marker("layout");
    expect_acquired(store.claim(&m, "worker-1", LEASE).await);

    let key = aws_sdk_dynamodb::types::AttributeValue::S(format!("rec#{m}"));
    let item = client
        .get_item()
        .table_name(&table)
        .key("pk", key.clone())
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(item["lease_owner"].as_s().unwrap(), "worker-1");
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let lease_until: i64 = item["lease_until"].as_n().unwrap().parse().unwrap();
    assert!(
        (lease_until / 1000 - now_secs - 30).abs() <= 2,
        "unix ms, now + lease"
    );
    let claim_ttl: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    assert!(
        (claim_ttl - now_secs - 30 - 86_400).abs() <= 2,
        "lease expiry + 1 day"
    );

    store
        .put(&asff_record("layout"), "worker-1", SyncFields::Replace)
        .await
        .unwrap();
    let item = client
        .get_item()
        .table_name(&table)
        .key("pk", key)
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(!item.contains_key("lease_owner") && !item.contains_key("lease_until"));
    assert_eq!(item["team"].as_s().unwrap(), "payments");
    assert_eq!(
        item["ticket"].as_m().unwrap()["key"].as_s().unwrap(),
        "PAY-123"
    );
    let record_ttl: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    assert!(
        (record_ttl - now_secs - 400 * 86_400).abs() <= 2,
        "400 days"
    );

    // A claim-only item left behind by a crashed holder: whoever takes it over must also move
    // its TTL past the new lease, or DynamoDB could delete the item while the lease is live.
    let orphan = marker("layout-orphan");
    expect_acquired(store.claim(&orphan, "crashed", SHORT_LEASE).await);
    tokio::time::sleep(PAST_SHORT_LEASE).await;
    expect_acquired(store.claim(&orphan, "worker-2", LEASE).await);
    let item = client
        .get_item()
        .table_name(&table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("rec#{orphan}")),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let taken_over_ttl: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    assert!(
        (taken_over_ttl - now_secs - 30 - 86_400).abs() <= 2,
        "the new holder's lease expiry + 1 day"
    );

    store
        .set_watermark("jira", "2025-01-01T00:00:00Z")
        .await
        .unwrap();
    let wm = client
        .get_item()
        .table_name(&table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("wm#jira".to_owned()),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(wm["value"].as_s().unwrap(), "2025-01-01T00:00:00Z");
    assert!(!wm.contains_key("expires_at"), "watermarks never expire");
}

// ---------------------------------------------------------------------------------------------
// One status poller across replicas: the named lease, fenced watermarks, the retry queue
// ---------------------------------------------------------------------------------------------

use findings_bridge::store::{MAX_SYNC_RETRIES, STATUS_SYNC_LEASE, SyncRetry};

fn held(grant: Result<Option<i64>, StoreError>) -> i64 {
    match grant {
        Ok(Some(fence)) => fence,
        other => panic!("expected the lease to be held, got {other:?}"),
    }
}

fn refused(grant: Result<Option<i64>, StoreError>) {
    match grant {
        Ok(None) => {}
        other => panic!("expected the lease to be refused, got {other:?}"),
    }
}

/// Acquire and conflict: the first owner gets the lease, a second one is refused while it lives.
async fn a_lease_is_held_by_one_owner_at_a_time(store: &dyn Store) {
    held(
        store
            .acquire_lease(STATUS_SYNC_LEASE, "replica-a", LEASE)
            .await,
    );
    refused(
        store
            .acquire_lease(STATUS_SYNC_LEASE, "replica-b", LEASE)
            .await,
    );
    // Another name is another lease.
    held(store.acquire_lease("other", "replica-b", LEASE).await);
    refused(store.acquire_lease("other", "replica-a", LEASE).await);
}

/// Renew by the owner only: the holder extends its lease (a new, larger fence each time); no
/// one else can, and a holder whose lease was taken over after it ran out is refused.
async fn only_the_holder_renews_a_lease(store: &dyn Store) {
    let first = held(
        store
            .acquire_lease(STATUS_SYNC_LEASE, "a", SHORT_LEASE)
            .await,
    );
    refused(store.acquire_lease(STATUS_SYNC_LEASE, "b", LEASE).await);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let renewed = held(
        store
            .acquire_lease(STATUS_SYNC_LEASE, "a", SHORT_LEASE)
            .await,
    );
    assert!(renewed >= first, "{renewed} < {first}");
    tokio::time::sleep(PAST_SHORT_LEASE).await;
    // Expired: taken over by b, and a is refused from then on.
    let taken = held(store.acquire_lease(STATUS_SYNC_LEASE, "b", LEASE).await);
    assert!(
        taken > renewed,
        "the new holder's fence {taken} must exceed every fence the old one had ({renewed})"
    );
    refused(store.acquire_lease(STATUS_SYNC_LEASE, "a", LEASE).await);
    held(store.acquire_lease(STATUS_SYNC_LEASE, "b", LEASE).await);
}

/// Expiry takeover: a holder that stops renewing (a SIGKILLed replica) loses the lease to the
/// next owner once it runs out, and not before.
async fn an_expired_lease_is_taken_over(store: &dyn Store) {
    let dead = held(
        store
            .acquire_lease(STATUS_SYNC_LEASE, "killed", SHORT_LEASE)
            .await,
    );
    refused(
        store
            .acquire_lease(STATUS_SYNC_LEASE, "survivor", LEASE)
            .await,
    );
    tokio::time::sleep(PAST_SHORT_LEASE).await;
    let fence = held(
        store
            .acquire_lease(STATUS_SYNC_LEASE, "survivor", LEASE)
            .await,
    );
    assert!(fence > dead);
    refused(
        store
            .acquire_lease(STATUS_SYNC_LEASE, "killed", LEASE)
            .await,
    );
}

/// Release: the holder's release frees the lease at once (SIGTERM: immediate takeover); a
/// release by anyone else changes nothing; fences keep growing across the release.
async fn a_released_lease_is_free_at_once_and_only_its_holder_releases_it(store: &dyn Store) {
    let first = held(store.acquire_lease(STATUS_SYNC_LEASE, "a", LEASE).await);
    store
        .release_lease(STATUS_SYNC_LEASE, "intruder")
        .await
        .unwrap();
    refused(store.acquire_lease(STATUS_SYNC_LEASE, "b", LEASE).await);
    store.release_lease(STATUS_SYNC_LEASE, "a").await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = held(store.acquire_lease(STATUS_SYNC_LEASE, "b", LEASE).await);
    assert!(second > first, "{second} <= {first}");
    // Releasing a lease one no longer holds, or one never taken, is a no-op.
    store.release_lease(STATUS_SYNC_LEASE, "a").await.unwrap();
    store.release_lease("never-taken", "a").await.unwrap();
    refused(store.acquire_lease(STATUS_SYNC_LEASE, "a", LEASE).await);
}

/// A watermark written under a fence refuses every smaller fence: a deposed poller's late write
/// cannot move it back under the poller that took over. Unfenced watermarks (written before
/// the lease existed) accept the first fenced write.
async fn a_fenced_watermark_refuses_older_fences(store: &dyn Store) {
    store
        .set_watermark("sync:jira", "2025-01-01T00:00:00Z")
        .await
        .unwrap();
    assert!(
        store
            .set_watermark_fenced("sync:jira", "2025-01-02T00:00:00Z", 100)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_watermark_fenced("sync:jira", "2025-01-01T12:00:00Z", 99)
            .await
            .unwrap()
    );
    assert_eq!(
        store.watermark("sync:jira").await.unwrap().as_deref(),
        Some("2025-01-02T00:00:00Z")
    );
    assert!(
        store
            .set_watermark_fenced("sync:jira", "2025-01-03T00:00:00Z", 100)
            .await
            .unwrap(),
        "the same holder writes again"
    );
    assert!(
        store
            .set_watermark_fenced("sync:servicenow", "2025-01-03T00:00:00Z", 1)
            .await
            .unwrap(),
        "fences are per watermark"
    );
    assert_eq!(
        store.watermark("sync:jira").await.unwrap().as_deref(),
        Some("2025-01-03T00:00:00Z")
    );
}

fn retry(finding: &str, attempts: u32, due_at: i64) -> SyncRetry {
    SyncRetry {
        marker: marker(finding),
        connection: "jira".to_owned(),
        attempts,
        due_at,
    }
}

/// Enqueue is idempotent (one entry per marker, the newest values), only due entries are
/// listed (longest due first, at most `limit`), remove takes one entry and is idempotent too.
async fn the_retry_queue_keeps_one_entry_per_marker_until_removed(store: &dyn Store) {
    assert!(
        store
            .sync_retries_due(i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .remove_sync_retry(&marker("never-queued"))
        .await
        .unwrap();
    assert!(
        store
            .enqueue_sync_retry(&retry("r1", 0, 1_000))
            .await
            .unwrap()
    );
    assert!(
        store
            .enqueue_sync_retry(&retry("r1", 0, 1_000))
            .await
            .unwrap()
    );
    assert!(
        store
            .enqueue_sync_retry(&retry("r2", 0, 500))
            .await
            .unwrap()
    );
    assert!(
        store
            .enqueue_sync_retry(&retry("r3", 0, 5_000))
            .await
            .unwrap()
    );
    assert_eq!(
        store.sync_retries_due(1_000, 10).await.unwrap(),
        vec![retry("r2", 0, 500), retry("r1", 0, 1_000)],
        "due ones only, longest due first, one entry per marker"
    );
    assert_eq!(
        store.sync_retries_due(10_000, 1).await.unwrap(),
        vec![retry("r2", 0, 500)]
    );
    // Requeued after a failed retry: the entry is replaced.
    let mut servicenow = retry("r2", 1, 2_000);
    servicenow.connection = "servicenow".to_owned();
    assert!(store.enqueue_sync_retry(&servicenow).await.unwrap());
    assert_eq!(
        store.sync_retries_due(10_000, 10).await.unwrap(),
        vec![
            retry("r1", 0, 1_000),
            servicenow.clone(),
            retry("r3", 0, 5_000)
        ]
    );
    store.remove_sync_retry(&marker("r1")).await.unwrap();
    store.remove_sync_retry(&marker("r1")).await.unwrap();
    assert_eq!(
        store.sync_retries_due(10_000, 10).await.unwrap(),
        vec![servicenow, retry("r3", 0, 5_000)]
    );
}

/// The queue is bounded: once full, a new marker is refused (and nothing written), a queued one
/// can still be requeued, and a removal makes room again. `store` holds `full-0` …
/// `full-999`, due at 1, when this starts (see the two tests below).
async fn a_full_retry_queue_refuses_new_markers(store: &dyn Store) {
    assert!(
        !store
            .enqueue_sync_retry(&retry("one-too-many", 0, 1))
            .await
            .unwrap()
    );
    assert!(
        store
            .enqueue_sync_retry(&retry("full-7", 3, 2))
            .await
            .unwrap(),
        "requeueing a queued marker needs no room"
    );
    let all = store.sync_retries_due(i64::MAX, usize::MAX).await.unwrap();
    assert_eq!(all.len(), MAX_SYNC_RETRIES);
    assert!(all.iter().all(|r| r.marker != marker("one-too-many")));
    assert_eq!(all.last(), Some(&retry("full-7", 3, 2)));
    store.remove_sync_retry(&marker("full-0")).await.unwrap();
    assert!(
        store
            .enqueue_sync_retry(&retry("one-too-many", 0, 1))
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_retry_queue_is_bounded() {
    let backend = sqlite();
    for n in 0..MAX_SYNC_RETRIES {
        assert!(
            backend
                .store
                .enqueue_sync_retry(&retry(&format!("full-{n}"), 0, 1))
                .await
                .unwrap()
        );
    }
    a_full_retry_queue_refuses_new_markers(backend.store.as_ref()).await;
}

/// The full queue is written as one item (a thousand enqueues on moto take a minute), in the
/// layout `dynamodb_lease_and_retry_queue_items_are_laid_out_as_documented` pins down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_retry_queue_is_bounded() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let client = dynamo_client().await;
    let table = support::unique("retry-queue-full");
    DynamoStore::create_table_for_tests(&client, &table)
        .await
        .unwrap();
    let entries = (0..MAX_SYNC_RETRIES)
        .map(|n| {
            let entry = std::collections::HashMap::from([
                (
                    "connection".to_owned(),
                    AttributeValue::S("jira".to_owned()),
                ),
                ("attempts".to_owned(), AttributeValue::N("0".to_owned())),
                ("due_at".to_owned(), AttributeValue::N("1".to_owned())),
            ]);
            (
                marker(&format!("full-{n}")).to_string(),
                AttributeValue::M(entry),
            )
        })
        .collect();
    client
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("retries#status-sync".to_owned()))
        .item("entries", AttributeValue::M(entries))
        .send()
        .await
        .unwrap();
    let store = DynamoStore::new(client, table);
    a_full_retry_queue_refuses_new_markers(&store).await;
}

macro_rules! coordination_suite {
    ($($behaviour:ident),* $(,)?) => {
        mod sqlite_coordination {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    let backend = super::sqlite();
                    super::$behaviour(backend.store.as_ref()).await;
                }
            )*
        }
        mod dynamodb_coordination {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    let store = super::dynamodb().await;
                    super::$behaviour(store.as_ref()).await;
                }
            )*
        }
    };
}

coordination_suite!(
    a_lease_is_held_by_one_owner_at_a_time,
    only_the_holder_renews_a_lease,
    an_expired_lease_is_taken_over,
    a_released_lease_is_free_at_once_and_only_its_holder_releases_it,
    a_fenced_watermark_refuses_older_fences,
    the_retry_queue_keeps_one_entry_per_marker_until_removed,
);

/// Two connections on one SQLite file are two processes on one host: the lease holds across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lease_holds_across_connections_to_one_file() {
    let backend = sqlite();
    let other = SqliteStore::open(&backend.path).expect("second open");
    held(
        backend
            .store
            .acquire_lease(STATUS_SYNC_LEASE, "process-1", LEASE)
            .await,
    );
    refused(
        other
            .acquire_lease(STATUS_SYNC_LEASE, "process-2", LEASE)
            .await,
    );
    backend
        .store
        .release_lease(STATUS_SYNC_LEASE, "process-1")
        .await
        .unwrap();
    held(
        other
            .acquire_lease(STATUS_SYNC_LEASE, "process-2", LEASE)
            .await,
    );
}

/// The lease and the retry queue items as documented: operators read them in the table.
#[tokio::test]
async fn dynamodb_lease_and_retry_queue_items_are_laid_out_as_documented() {
    let client = dynamo_client().await;
    let table = support::unique("coordination-layout");
    DynamoStore::create_table_for_tests(&client, &table)
        .await
        .unwrap();
    let store = DynamoStore::new(client.clone(), table.clone());
    let fence = held(
        store
            .acquire_lease(STATUS_SYNC_LEASE, "host:1:2", LEASE)
            .await,
    );
    store
        .enqueue_sync_retry(&retry("layout", 2, 1_234))
        .await
        .unwrap();
    let read = |pk: &str| {
        let client = client.clone();
        let table = table.clone();
        let pk = pk.to_owned();
        async move {
            client
                .get_item()
                .table_name(&table)
                .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(pk))
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item
                .unwrap()
        }
    };
    let lease = read("lease#status-sync").await;
    assert_eq!(lease["lease_owner"].as_s().unwrap(), "host:1:2");
    let granted: i64 = lease["granted"].as_n().unwrap().parse().unwrap();
    let until: i64 = lease["lease_until"].as_n().unwrap().parse().unwrap();
    assert_eq!(granted, fence);
    assert_eq!(until - granted, 30_000, "unix ms, granted + lease");
    assert!(!lease.contains_key("expires_at"), "the lease never expires");

    store
        .release_lease(STATUS_SYNC_LEASE, "host:1:2")
        .await
        .unwrap();
    let released = read("lease#status-sync").await;
    assert!(!released.contains_key("lease_owner") && !released.contains_key("lease_until"));
    assert_eq!(released["granted"].as_n().unwrap(), &fence.to_string());

    let queue = read("retries#status-sync").await;
    let entry = queue["entries"].as_m().unwrap()[marker("layout").as_str()]
        .as_m()
        .unwrap();
    assert_eq!(entry["connection"].as_s().unwrap(), "jira");
    assert_eq!(entry["attempts"].as_n().unwrap(), "2");
    assert_eq!(entry["due_at"].as_n().unwrap(), "1234");
}

// Reconcile (issue 16): the records as a whole, rebuilt and dropped under a claim
// ---------------------------------------------------------------------------------------------

mod reconcile {
    use super::*;
    use findings_bridge::store::Adoption;

    /// Stores `record` the way the lifecycle does: claim, put.
    async fn stored(store: &dyn Store, record: &Record) {
        expect_acquired(store.claim(&record.marker, "writer", LEASE).await);
        store
            .put(record, "writer", SyncFields::Replace)
            .await
            .expect("put");
    }

    /// Every page, until the store says there is no next one.
    async fn all_markers(store: &dyn Store, limit: usize) -> (Vec<Marker>, usize) {
        let mut markers = Vec::new();
        let mut pages = 0;
        let mut cursor: Option<String> = None;
        loop {
            let page = store
                .records_page(cursor.as_deref(), limit)
                .await
                .expect("records page");
            pages += 1;
            assert!(page.records.len() <= limit, "a page holds at most `limit`");
            markers.extend(page.records.into_iter().map(|r| r.marker));
            cursor = page.next;
            if cursor.is_none() {
                return (markers, pages);
            }
        }
    }

    /// Records stream page by page; keys that hold only a claim or an intent are no records.
    async fn records_are_read_page_by_page_without_claim_only_keys(store: &dyn Store) {
        let mut expected: Vec<Marker> = Vec::new();
        for id in ["r-1", "r-2", "r-3"] {
            stored(store, &asff_record(id)).await;
            expected.push(marker(id));
        }
        let ocsf = ocsf_record("r-4", Some("meta-4"));
        stored(store, &ocsf).await;
        expected.push(ocsf.marker.clone());
        expect_acquired(store.claim(&marker("claim-only"), "w", LEASE).await);
        expect_acquired(store.claim(&marker("intent-only"), "w", LEASE).await);
        store
            .set_intent(&marker("intent-only"), "w", Some(&intent("w", 1)))
            .await
            .expect("intent");
        store
            .set_watermark("store:vouched-since", "1")
            .await
            .unwrap();

        let (mut markers, pages) = all_markers(store, 2).await;
        assert!(pages >= 2, "four records in pages of two: {pages} page(s)");
        markers.sort();
        expected.sort();
        assert_eq!(markers, expected);
        let first = store.records_page(None, 10).await.unwrap();
        let back = first
            .records
            .iter()
            .find(|r| r.marker == ocsf.marker)
            .expect("the OCSF record");
        assert_eq!(back, &ocsf, "records come back whole");
    }

    /// A rebuilt record is stored only under the caller's claim and only where neither a record
    /// nor a pending create is: nothing stored is ever overwritten.
    async fn adopt_stores_only_under_the_claim_and_only_where_nothing_is(store: &dyn Store) {
        let fresh = asff_record("adopt-fresh");
        match store.adopt(&fresh, "reconcile:1").await {
            Err(StoreError::LostClaim(_)) => {}
            other => panic!("adopting without a claim must be refused, got {other:?}"),
        }
        assert_eq!(store.get(&fresh.marker).await.unwrap(), None);

        assert_eq!(
            expect_acquired(store.claim(&fresh.marker, "reconcile:1", LEASE).await),
            None
        );
        assert_eq!(
            store.adopt(&fresh, "reconcile:1").await.unwrap(),
            Adoption::Adopted
        );
        assert_eq!(store.get(&fresh.marker).await.unwrap(), Some(fresh.clone()));
        assert_eq!(
            expect_acquired(store.claim(&fresh.marker, "worker:2", LEASE).await),
            Some(fresh.clone()),
            "the claim was released with the adoption"
        );
        store.release(&fresh.marker, "worker:2").await.unwrap();

        let kept = asff_record("adopt-kept");
        stored(store, &kept).await;
        let mut rival = kept.clone();
        rival.ticket.as_mut().unwrap().key = "PAY-999".into();
        expect_acquired(store.claim(&kept.marker, "reconcile:3", LEASE).await);
        assert_eq!(
            store.adopt(&rival, "reconcile:3").await.unwrap(),
            Adoption::RecordExists
        );
        store.release(&kept.marker, "reconcile:3").await.unwrap();
        assert_eq!(store.get(&kept.marker).await.unwrap(), Some(kept));

        let pending = asff_record("adopt-pending");
        expect_acquired(store.claim(&pending.marker, "reconcile:4", LEASE).await);
        store
            .set_intent(&pending.marker, "reconcile:4", Some(&intent("worker:9", 1)))
            .await
            .unwrap();
        assert_eq!(
            store.adopt(&pending, "reconcile:4").await.unwrap(),
            Adoption::CreatePending
        );
        store.release(&pending.marker, "reconcile:4").await.unwrap();
        assert_eq!(store.get(&pending.marker).await.unwrap(), None);

        let held = asff_record("adopt-held");
        expect_acquired(store.claim(&held.marker, "worker:5", LEASE).await);
        match store.adopt(&held, "reconcile:6").await {
            Err(StoreError::LostClaim(_)) => {}
            other => panic!("another owner's claim must refuse the adoption, got {other:?}"),
        }
        assert_eq!(store.get(&held.marker).await.unwrap(), None);
        expect_busy(store.claim(&held.marker, "worker:7", LEASE).await);
    }

    /// A record is dropped only under the caller's claim, never over a pending create; the key
    /// is then free and empty.
    async fn drop_record_only_under_the_claim_and_never_over_a_pending_create(store: &dyn Store) {
        let record = asff_record("drop");
        stored(store, &record).await;
        match store.drop_record(&record.marker, "reconcile:1").await {
            Err(StoreError::LostClaim(_)) => {}
            other => panic!("dropping without a claim must be refused, got {other:?}"),
        }
        expect_acquired(store.claim(&record.marker, "worker:2", LEASE).await);
        match store.drop_record(&record.marker, "reconcile:1").await {
            Err(StoreError::LostClaim(_)) => {}
            other => panic!("another owner's claim must refuse the drop, got {other:?}"),
        }
        store.release(&record.marker, "worker:2").await.unwrap();
        assert_eq!(
            store.get(&record.marker).await.unwrap(),
            Some(record.clone())
        );

        expect_acquired(store.claim(&record.marker, "reconcile:3", LEASE).await);
        assert!(
            store
                .drop_record(&record.marker, "reconcile:3")
                .await
                .unwrap()
        );
        assert_eq!(store.get(&record.marker).await.unwrap(), None);
        let (markers, _) = all_markers(store, 10).await;
        assert!(!markers.contains(&record.marker));
        match store.claim(&record.marker, "worker:4", LEASE).await {
            Ok(Claim::Acquired(claimed)) => {
                assert_eq!(claimed.record, None);
                assert_eq!(claimed.intent, None, "the key starts afresh");
            }
            other => panic!("the dropped key is free, got {other:?}"),
        }
        store.release(&record.marker, "worker:4").await.unwrap();

        let pending = asff_record("drop-pending");
        stored(store, &pending).await;
        expect_acquired(store.claim(&pending.marker, "reconcile:5", LEASE).await);
        let create = intent("reconcile:5", 1);
        store
            .set_intent(&pending.marker, "reconcile:5", Some(&create))
            .await
            .unwrap();
        assert!(
            !store
                .drop_record(&pending.marker, "reconcile:5")
                .await
                .unwrap()
        );
        store.release(&pending.marker, "reconcile:5").await.unwrap();
        assert_eq!(
            store.get(&pending.marker).await.unwrap(),
            Some(pending.clone())
        );
        match store.claim(&pending.marker, "worker:6", LEASE).await {
            Ok(Claim::Acquired(claimed)) => assert_eq!(claimed.intent, Some(create)),
            other => panic!("expected the claim, got {other:?}"),
        }
    }

    suite!(
        records_are_read_page_by_page_without_claim_only_keys,
        adopt_stores_only_under_the_claim_and_only_where_nothing_is,
        drop_record_only_under_the_claim_and_never_over_a_pending_create,
    );
}

/// `get_many`: what `get` reads, for many markers at once (DynamoDB: `BatchGetItem`, 100 keys a
/// request, so 105 markers take two).
mod batch_reads {
    use super::*;

    async fn get_many_reads_what_get_reads_for_every_marker(store: &dyn Store) {
        let recorded: Vec<Marker> = (0..105).map(|i| marker(&format!("batch-{i}"))).collect();
        for (i, m) in recorded.iter().enumerate() {
            expect_acquired(store.claim(m, "a", LEASE).await);
            store
                .put(
                    &asff_record(&format!("batch-{i}")),
                    "a",
                    SyncFields::Replace,
                )
                .await
                .unwrap();
        }
        // A key that only ever held a claim, and one never written: no record either way.
        let claim_only = marker("batch-claim-only");
        expect_acquired(store.claim(&claim_only, "b", LEASE).await);
        let absent = marker("batch-absent");
        let mut asked = recorded.clone();
        asked.push(claim_only);
        asked.push(absent);

        let records = store.get_many(&asked).await.unwrap();

        assert_eq!(records.len(), recorded.len());
        for m in &recorded {
            assert_eq!(records.get(m), store.get(m).await.unwrap().as_ref(), "{m}");
            assert!(records.contains_key(m), "{m}");
        }
        assert!(store.get_many(&[]).await.unwrap().is_empty());
    }

    suite!(get_many_reads_what_get_reads_for_every_marker);
}
