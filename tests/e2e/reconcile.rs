//! `findings-bridge reconcile` end to end (issue 16): the real binary against the simulator
//! (Jira, ServiceNow over two tables) and a DynamoDB store on moto. A store that is lost is
//! rebuilt from the tickets, after which redelivered findings update the old tickets and open
//! none; a duplicate made behind the bridge's back is closed with a comment naming the kept
//! ticket; the record of a deleted ticket is dropped so that the next event creates afresh.
//! Needs `moto_server` (`scripts/venv`).

use crate::bench as e2e;
use crate::support;

use std::time::Duration;

use e2e::{Bench, FindingBuilder, JIRA_TEAM, SERVICENOW_TEAM, Teams};
use findings_bridge::marker::Marker;
use findings_bridge::store::dynamodb::DynamoStore;
use findings_bridge::store::{Record, Store};
use findings_bridge_sim::Faults;
use serde_json::{Value, json};

/// A third team on ServiceNow's security-incident table, ahead of the others and not terminal:
/// every finding also gets a `sn_si_incident` record, which only a listing of every table a rule
/// uses finds.
const SECOPS_TEAM_FILE: &str = r#"
team = "secops"

[[rules]]
name = "every-finding"
order = 5
terminal = false
target = "servicenow"
[rules.servicenow]
table = "sn_si_incident"
short_description = "{{ finding.title }}"
urgency = "{{ 1 if finding.severity == 'CRITICAL' else 2 }}"
impact = "2"
"#;

const WORKER_TIMEOUT: Duration = Duration::from_secs(90);

fn describe(out: &std::process::Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A DynamoDB store on a fresh table of moto: the `BRIDGE_STORE` value, and the store to look in.
async fn dynamodb(bench: &Bench) -> (String, DynamoStore) {
    let client = aws_sdk_dynamodb::Client::new(&bench.aws);
    let table = support::unique("reconcile");
    DynamoStore::create_table_for_tests(&client, &table)
        .await
        .expect("table on moto");
    (format!("dynamodb:{table}"), DynamoStore::new(client, table))
}

/// Every item of the table deleted: the store is lost.
async fn wipe(bench: &Bench, store: &DynamoStore) {
    let client = aws_sdk_dynamodb::Client::new(&bench.aws);
    let items = client
        .scan()
        .table_name(store.table())
        .send()
        .await
        .expect("scan");
    for item in items.items() {
        client
            .delete_item()
            .table_name(store.table())
            .key("pk", item["pk"].clone())
            .send()
            .await
            .expect("delete");
    }
    assert_eq!(records(store).await.len(), 0, "the store is empty");
}

async fn records(store: &DynamoStore) -> Vec<Record> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .records_page(cursor.as_deref(), 50)
            .await
            .expect("records page");
        out.extend(page.records);
        cursor = page.next;
        if cursor.is_none() {
            return out;
        }
    }
}

/// Runs `findings-bridge reconcile ARGS --json -` and returns its report.
async fn reconcile(bench: &Bench, store: &str, args: &[&str]) -> Value {
    let mut all = vec!["reconcile", "--json", "-"];
    all.extend_from_slice(args);
    let out = bench.command(store, &[], &all).await;
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Reconcile"),
        "the summary goes to stderr: {}",
        describe(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)))
}

async fn drain(bench: &Bench, store: &str, name: &str) {
    bench
        .spawn(name, store, &[], &["--drain"])
        .expect_success(WORKER_TIMEOUT)
        .await;
}

fn outcomes(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["outcome"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn jira_issue_of(bench: &Bench, marker: &Marker) -> Vec<findings_bridge_sim::JiraIssue> {
    bench
        .sim
        .state
        .jira_issues()
        .into_iter()
        .filter(|i| i.labels.iter().any(|l| l == marker.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_store_is_rebuilt_from_the_tickets_and_the_next_delivery_updates_them() {
    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraAndServiceNow, Faults::none()).await;
    bench.write_team("secops.toml", SECOPS_TEAM_FILE);
    let (store, dynamo) = dynamodb(&bench).await;
    let findings = [FindingBuilder::new("rc-1"), FindingBuilder::new("rc-2")];
    for f in &findings {
        bench.send(&f.body()).await;
    }
    drain(&bench, &store, "first").await;
    let tickets = |bench: &Bench| {
        (
            bench.sim.state.jira_issues().len(),
            bench
                .sim
                .state
                .servicenow_records()
                .iter()
                .filter(|r| r.table == "incident")
                .count(),
            bench
                .sim
                .state
                .servicenow_records()
                .iter()
                .filter(|r| r.table == "sn_si_incident")
                .count(),
        )
    };
    assert_eq!(
        tickets(&bench),
        (2, 2, 2),
        "one ticket per finding and team"
    );
    let before = records(&dynamo).await;
    assert_eq!(before.len(), 6);

    wipe(&bench, &dynamo).await;

    // A dry run reports every ticket as rebuildable and changes nothing.
    let dry = reconcile(&bench, &store, &[]).await;
    assert_eq!(dry["mode"], "dry-run");
    assert_eq!(dry["complete"], true, "{dry:#}");
    assert_eq!(
        outcomes(&dry["missing_records"]),
        vec!["planned"; 6],
        "{dry:#}"
    );
    let listed: Vec<(String, Value)> = dry["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["connection"].as_str().unwrap().to_owned(),
                c["tables"].clone(),
            )
        })
        .collect();
    assert!(
        listed.contains(&(
            "servicenow".to_owned(),
            json!(["sn_si_incident", "incident"])
        )),
        "every table a rule uses is listed: {listed:?}"
    );
    assert!(
        records(&dynamo).await.is_empty(),
        "a dry run stores nothing"
    );

    // --fix rebuilds every record, exactly as the worker had written the identity fields.
    let fixed = reconcile(&bench, &store, &["--fix"]).await;
    assert_eq!(fixed["mode"], "fix");
    assert_eq!(
        outcomes(&fixed["missing_records"]),
        vec!["done"; 6],
        "{fixed:#}"
    );
    let mut rebuilt = records(&dynamo).await;
    assert_eq!(rebuilt.len(), 6);
    let mut original = before.clone();
    rebuilt.sort_by(|a, b| a.marker.cmp(&b.marker));
    original.sort_by(|a, b| a.marker.cmp(&b.marker));
    for (r, o) in rebuilt.iter().zip(&original) {
        assert_eq!(
            (&r.marker, &r.finding_id, &r.team, &r.rule, &r.schema),
            (&o.marker, &o.finding_id, &o.team, &o.rule, &o.schema)
        );
        assert_eq!(
            (&r.write_back, &r.ticket, &r.severity),
            (&o.write_back, &o.ticket, &o.severity)
        );
    }
    let again = reconcile(&bench, &store, &[]).await;
    assert_eq!(again["in_step"], 6, "{again:#}");
    assert_eq!(again["missing_records"], json!([]));

    // The findings come again, raised to CRITICAL: the old tickets follow, none is added.
    for f in &findings {
        let raised = f
            .clone()
            .severity("CRITICAL")
            .updated_at("2026-03-05T00:00:00.000Z");
        bench.send(&raised.body()).await;
    }
    drain(&bench, &store, "after-reconcile").await;
    assert_eq!(tickets(&bench), (2, 2, 2), "no ticket was created again");
    for f in &findings {
        let issues = jira_issue_of(&bench, &Marker::new(JIRA_TEAM, &f.id()));
        assert_eq!(issues.len(), 1);
        assert_eq!(
            issues[0].priority.as_deref(),
            Some("Highest"),
            "{:?}",
            issues[0]
        );
        let comments: Vec<String> = issues[0]
            .comments
            .iter()
            .map(|c| c.body.to_string())
            .collect();
        assert!(
            comments
                .iter()
                .any(|c| c.contains("Severity changed from HIGH to CRITICAL")),
            "{comments:?}"
        );
        let marker = Marker::new(SERVICENOW_TEAM, &f.id());
        let incident = bench
            .sim
            .state
            .servicenow_records()
            .into_iter()
            .find(|r| r.get("correlation_id") == Some(marker.as_str()))
            .expect("the incident");
        assert!(
            incident
                .journal
                .iter()
                .any(|j| j.value.contains("Severity changed from HIGH to CRITICAL")),
            "{:?}",
            incident.journal
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_closed_and_records_of_deleted_tickets_dropped() {
    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraOnly, Faults::none()).await;
    let (store, dynamo) = dynamodb(&bench).await;
    let copied = FindingBuilder::new("rc-copied");
    let deleted = FindingBuilder::new("rc-deleted");
    bench.send(&copied.body()).await;
    bench.send(&deleted.body()).await;
    drain(&bench, &store, "first").await;
    let copied_marker = Marker::new(JIRA_TEAM, &copied.id());
    let deleted_marker = Marker::new(JIRA_TEAM, &deleted.id());
    let kept = jira_issue_of(&bench, &copied_marker).remove(0);

    // Someone copies the ticket, labels and all, behind the bridge's back.
    let copy = reqwest::Client::new()
        .post(format!("{}/rest/api/3/issue", bench.sim.base_url))
        .basic_auth("sim@example.com", Some("sim-token"))
        .json(&json!({"fields": {
            "project": {"key": "SEC"}, "issuetype": {"name": "Bug"}, "summary": "copy",
            "labels": ["findings-bridge", copied_marker.as_str()],
        }}))
        .send()
        .await
        .expect("the simulator answers");
    assert_eq!(copy.status(), reqwest::StatusCode::CREATED);
    let copy_key = copy.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // And the other ticket is deleted.
    let gone = jira_issue_of(&bench, &deleted_marker).remove(0);
    bench
        .sim
        .state
        .delete_jira_issue(&gone.key)
        .expect("deleted");

    let dry = reconcile(&bench, &store, &[]).await;
    assert_eq!(
        dry["duplicates"][0]["kept"]["key"],
        kept.key.as_str(),
        "{dry:#}"
    );
    assert_eq!(
        dry["duplicates"][0]["others"][0]["ticket"]["key"],
        copy_key.as_str()
    );
    assert_eq!(dry["duplicates"][0]["others"][0]["outcome"], "planned");
    assert_eq!(
        dry["gone"][0]["ticket"]["key"],
        gone.key.as_str(),
        "{dry:#}"
    );
    assert_eq!(dry["gone"][0]["outcome"], "planned");
    assert_eq!(
        bench.sim.state.jira_issue(&copy_key).map(|i| i.status),
        Some("To Do".to_owned()),
        "a dry run closes nothing"
    );
    assert!(
        dynamo.get(&deleted_marker).await.unwrap().is_some(),
        "nor drops"
    );

    let fixed = reconcile(&bench, &store, &["--fix"]).await;
    assert_eq!(
        fixed["duplicates"][0]["others"][0]["outcome"], "done",
        "{fixed:#}"
    );
    assert_eq!(fixed["gone"][0]["outcome"], "done", "{fixed:#}");
    let closed = bench.sim.state.jira_issue(&copy_key).expect("the copy");
    assert_eq!(closed.status_category, "done");
    let comment = closed
        .comments
        .iter()
        .map(|c| c.body.to_string())
        .find(|c| c.contains("Duplicate of"))
        .expect("the duplicate comment");
    assert!(comment.contains(&kept.key), "{comment}");
    assert_eq!(
        bench
            .sim
            .state
            .jira_issue(&kept.key)
            .map(|i| i.status_category),
        Some("new".to_owned()),
        "the kept ticket stays open"
    );
    assert_eq!(dynamo.get(&deleted_marker).await.unwrap(), None);
    assert!(dynamo.get(&copied_marker).await.unwrap().is_some());

    // The deleted ticket's finding comes again: a new ticket, not an update of nothing.
    bench
        .send(
            &deleted
                .clone()
                .updated_at("2026-03-05T00:00:00.000Z")
                .body(),
        )
        .await;
    drain(&bench, &store, "after-drop").await;
    let reborn = jira_issue_of(&bench, &deleted_marker);
    assert_eq!(reborn.len(), 1, "created afresh");
    assert_ne!(reborn[0].key, gone.key);
    let record = dynamo
        .get(&deleted_marker)
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(record.ticket.map(|t| t.key), Some(reborn[0].key.clone()));
}
