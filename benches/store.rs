//! The SQLite store under the calls one new ticket makes (issue 14, item 4): claim, intent,
//! enlist, put (which clears the intent and the lease) and a read of the record, for a batch of
//! findings worked on by 1 or 32 tasks at once, on a file in a temporary directory (WAL,
//! `synchronous = FULL`: every commit is a sync of the log). Criterion's "thrpt" line is
//! findings per second.
//!
//! With 32 tasks the store's thread takes every call waiting into one transaction (a group
//! commit, `src/store/sqlite/thread.rs`); with 1 task there is never more than one call waiting,
//! so that variant is the cost of a call on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use findings_bridge::finding::{Schema, WriteBackId};
use findings_bridge::marker::Marker;
use findings_bridge::store::sqlite::SqliteStore;
use findings_bridge::store::{Claim, Intent, Record, Store, SyncFields};
use findings_bridge::ticket::TicketRef;

const FINDINGS: u64 = 256;
const LEASE: Duration = Duration::from_secs(60);

fn record(finding: &str, marker: Marker) -> Record {
    Record {
        marker,
        finding_id: finding.to_owned(),
        team: "payments".to_owned(),
        schema: Schema::Asff,
        write_back: WriteBackId::Asff {
            id: finding.to_owned(),
            product_arn: "arn:aws:securityhub:us-east-1::product/aws/securityhub".to_owned(),
        },
        rule: "critical".to_owned(),
        ticket: Some(TicketRef {
            system: "jira".to_owned(),
            key: "PAY-1".to_owned(),
            id: "10001".to_owned(),
            table: None,
            url: "https://example.atlassian.net/browse/PAY-1".to_owned(),
        }),
        updated_at: Some("2026-12-01T00:00:00.000Z".to_owned()),
        fingerprint: "3f2a9c".to_owned(),
        severity: "HIGH".to_owned(),
        finding_resolved: false,
        closed_by_bridge: false,
        status_to_hub: None,
        status_from_ticket: None,
        modified_at: 0,
        sla: None,
        group: None,
    }
}

/// One new ticket's store calls, as the lifecycle makes them.
async fn new_ticket(store: &SqliteStore, finding: String) {
    let marker = Marker::new("payments", &finding);
    let owner = format!("owner-{finding}");
    assert!(matches!(
        store.claim(&marker, &owner, LEASE).await.unwrap(),
        Claim::Acquired(_)
    ));
    let intent = Intent {
        owner: owner.clone(),
        system: "jira".to_owned(),
        started_at: 0,
        search_after: 0,
    };
    store
        .set_intent(&marker, &owner, Some(&intent))
        .await
        .unwrap();
    store.enlist(&finding, "payments").await.unwrap();
    store
        .put(&record(&finding, marker.clone()), &owner, SyncFields::Keep)
        .await
        .unwrap();
    assert!(store.get(&marker).await.unwrap().is_some());
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap());
    // Fresh findings every iteration: the table grows as a real store does.
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("sqlite_store_new_ticket");
    group.throughput(Throughput::Elements(FINDINGS));
    group.sample_size(20);
    for tasks in [1_u64, 32] {
        group.bench_function(format!("{tasks}_tasks"), |b| {
            b.iter(|| {
                let first = next.fetch_add(FINDINGS, Ordering::Relaxed);
                rt.block_on(async {
                    let workers: Vec<_> = (0..tasks)
                        .map(|t| {
                            let store = Arc::clone(&store);
                            tokio::spawn(async move {
                                for i in (t..FINDINGS).step_by(tasks as usize) {
                                    new_ticket(&store, format!("finding-{}", first + i)).await;
                                }
                            })
                        })
                        .collect();
                    for w in workers {
                        w.await.unwrap();
                    }
                });
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
