//! Status sync of a grouped ticket: one ticket status, written to every open finding of the group
//! in one batch; resolved items keep their state; a second poll writes nothing.

use std::sync::Arc;

use findings_bridge::finding::{Schema, WriteBackId};
use findings_bridge::mapping::group::GroupItem;
use findings_bridge::marker::{BRIDGE_LABEL, Marker};
use findings_bridge::store::{Claim, Grouping, Store, SyncFields};
use findings_bridge::sync::SyncConfig;
use findings_bridge::ticket::TicketSystem;
use serde_json::json;

use crate::sync_harness::{JIRA_RULE, PRODUCT_ARN, TEAM, finding_id, harness, hub_writer};

fn item(n: usize, resolved: bool) -> GroupItem {
    GroupItem {
        id: finding_id(n),
        title: format!("Finding {n}"),
        resource: format!("arn:aws:s3:::bucket-{n}"),
        severity: "HIGH".to_owned(),
        resolved,
        console_url: String::new(),
        schema: Schema::Asff,
        write_back: WriteBackId::Asff {
            id: finding_id(n),
            product_arn: PRODUCT_ARN.to_owned(),
        },
    }
}

#[tokio::test]
async fn a_group_tickets_status_reaches_every_open_finding_in_one_call() {
    let h = harness(10).await;
    let marker = Marker::group(TEAM, "S3.1");
    let payload = json!({"fields": {
        "project": {"key": "PAY"},
        "issuetype": {"name": "Bug"},
        "summary": "S3.1: 3 open findings",
        "labels": [BRIDGE_LABEL, marker.as_str()],
    }});
    let ticket = h.jira.create(&payload, None).await.expect("created");
    // The group's record sits under the group marker, as the lifecycle leaves it.
    let mut record = h.record(90, JIRA_RULE, &ticket, |_| {}).await;
    record.marker = marker.clone();
    record.finding_id = "group:S3.1".to_owned();
    record.group = Some(Grouping::Group {
        key: "S3.1".to_owned(),
        items: vec![item(0, false), item(1, false), item(2, true)],
    });
    let claim = h
        .store
        .claim(&marker, "test", std::time::Duration::from_secs(60))
        .await
        .expect("claim");
    assert!(matches!(claim, Claim::Acquired(_)), "{claim:?}");
    h.store
        .put(&record, "test", SyncFields::Replace)
        .await
        .expect("put");

    h.sim
        .state
        .transition_issue(&ticket.key, "Won't Do")
        .unwrap();
    let sync = h.sync(
        Arc::new(hub_writer(&h.sim.base_url).await),
        SyncConfig::default(),
    );
    let report = sync.poll_once().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.written, 2, "{report:?}");
    for n in [0, 1] {
        assert_eq!(
            h.sim.state.finding_workflow(&finding_id(n)).as_deref(),
            Some("SUPPRESSED"),
            "open item {n}"
        );
    }
    assert_eq!(
        h.sim.state.finding_workflow(&finding_id(2)),
        None,
        "a resolved item is not moved by the ticket"
    );
    let calls = h.sim.state.writebacks();
    assert_eq!(
        calls.len(),
        1,
        "one note for the group, so one call: {calls:?}"
    );
    assert_eq!(calls[0].processed.len(), 2);
    let note = &h.sim.state.finding(&finding_id(0)).unwrap().notes[0];
    assert!(note.contains(&ticket.key), "{note}");
    assert_eq!(
        h.stored(&marker).await.status_to_hub.as_deref(),
        Some("SUPPRESSED")
    );

    let again = sync.poll_once().await;
    assert_eq!(again.written, 0, "{again:?}");
    assert_eq!(h.sim.state.writebacks().len(), 1);
}
