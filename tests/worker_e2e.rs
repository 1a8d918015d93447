//! The worker end to end (issue 4): messages on a moto SQS queue, tickets in the simulator's Jira
//! and ServiceNow, write-backs to its Security Hub. Every test asserts what an operator would
//! check afterwards: how many tickets exist (one per finding and team, never a duplicate), and
//! what is left on the queue and the DLQ.
//!
//! Some tests run the worker in this process (built from its parts like `app::run` builds it),
//! the ones about processes — several replicas, SIGKILL, SIGTERM — run the real binary.
//!
//! Needs `moto_server` (`scripts/venv`).

mod e2e;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::{Bench, FindingBuilder, JIRA_TEAM, SERVICENOW_TEAM, Teams, eventually, findings};
use findings_bridge::marker::Marker;
use findings_bridge::store::dynamodb::DynamoStore;
use findings_bridge_sim::Faults;

const CREATE_ISSUE: &str = "POST /rest/api/3/issue";

fn latency(ms: u64) -> Faults {
    Faults {
        latency: Duration::from_millis(ms),
        ..Faults::none()
    }
}

fn ids(findings: &[FindingBuilder]) -> Vec<String> {
    findings.iter().map(FindingBuilder::id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_delivered_five_times_at_once_makes_one_ticket() {
    let _timing = e2e::shared().await;
    // Latency keeps the first copy's ticket work in flight while the other copies are received.
    let bench = Bench::start(Teams::JiraOnly, latency(100)).await;
    let finding = FindingBuilder::new("five-copies");
    bench.send_all(&vec![finding.body(); 5]).await;
    assert_eq!(
        bench.depth(&bench.queue_url).await,
        (5, 0),
        "all five copies wait on the queue at once"
    );

    let summary = bench.drain("records.db", 8).await;

    assert_eq!(summary.received, 5, "{summary:?}");
    assert_eq!(
        summary.deleted, 5,
        "every copy is acknowledged: {summary:?}"
    );
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    bench.assert_one_jira_issue_per_finding(&[finding.id()]);
    assert_eq!(bench.sim.state.request_count(CREATE_ISSUE), 1);
    assert_eq!(
        bench.sim.state.writebacks().len(),
        1,
        "one NOTIFIED write-back, not one per copy"
    );
    bench.assert_queues_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_on_dynamodb_create_one_ticket_per_finding() {
    let _timing = e2e::exclusive().await;
    let bench = Bench::start(Teams::JiraOnly, Faults::none()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&bench.aws);
    let table = support::unique("e2e-records");
    DynamoStore::create_table_for_tests(&dynamodb, &table)
        .await
        .expect("records table on moto");

    // 500 findings; 150 of them (30 %) arrive a second time a little later, so that the copy is
    // often picked up by another process while the first is still being worked on.
    let all = findings("load", 500);
    let mut order: Vec<(usize, String)> = Vec::new();
    for (i, f) in all.iter().enumerate() {
        order.push((i * 10, f.body()));
        if i % 10 < 3 {
            order.push(((i + 25) * 10 + 5, f.body()));
        }
    }
    order.sort_by_key(|(at, _)| *at);
    let bodies: Vec<String> = order.into_iter().map(|(_, b)| b).collect();
    assert_eq!(bodies.len(), 650);
    bench.send_all(&bodies).await;

    let store = format!("dynamodb:{table}");
    let tuning = [("BRIDGE_CONCURRENCY", "16")];
    let started = Instant::now();
    let mut workers: Vec<_> = (1..=3)
        .map(|n| bench.spawn(&format!("worker-{n}"), &store, &tuning, &[]))
        .collect();
    eventually(Duration::from_secs(300), "500 issues", || async {
        bench.jira_count() >= 500
    })
    .await;
    let tickets_done = started.elapsed();
    // Copies that lost the claim race to another process come back after their retry delay.
    eventually(Duration::from_secs(300), "an empty queue", || async {
        bench.queue_is_empty().await
    })
    .await;
    let took = started.elapsed();
    for w in &workers {
        w.terminate();
    }
    for w in &mut workers {
        w.expect_success(Duration::from_secs(30)).await;
    }
    println!(
        "650 messages (500 findings) through 3 worker processes: tickets after {tickets_done:?}, \
         queue empty after {took:?}"
    );

    bench.assert_one_jira_issue_per_finding(&ids(&all));
    assert_eq!(bench.sim.state.request_count(CREATE_ISSUE), 500);
    bench.assert_queues_empty().await;
    // No assertion on `took`: speed is the load harness's business (scripts/loadtest,
    // BENCHMARKS.md); on a shared 2-core machine a timing assertion here would only be noise.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_and_restarted_leaves_exactly_one_ticket_per_finding() {
    let _timing = e2e::exclusive().await;
    let bench = Bench::start(Teams::JiraOnly, latency(200)).await;
    let all = findings("kill", 30);
    let bodies: Vec<String> = all.iter().map(FindingBuilder::body).collect();
    bench.send_all(&bodies).await;
    let store = format!("sqlite:{}", bench.dir.path().join("records.db").display());
    let tuning = [
        ("BRIDGE_CONCURRENCY", "4"),
        ("BRIDGE_VISIBILITY_TIMEOUT", "5"),
    ];

    let mut first = bench.spawn("killed", &store, &tuning, &[]);
    eventually(
        Duration::from_secs(60),
        "the first worker creates some tickets",
        || async { bench.jira_count() >= 5 },
    )
    .await;
    first.kill();
    let at_kill = bench.jira_count();
    assert!(
        at_kill < all.len(),
        "killed after all the work was done ({at_kill} tickets): nothing was in flight"
    );

    // Messages the killed worker held come back after their visibility timeout; claims it held
    // come free when their lease runs out, and the marker search finds tickets it created but
    // did not record.
    let mut second = bench.spawn("restarted", &store, &tuning, &[]);
    eventually(
        Duration::from_secs(300),
        "every finding has a ticket and the queue is empty",
        || async { bench.jira_count() >= all.len() && bench.queue_is_empty().await },
    )
    .await;
    second.terminate();
    second.expect_success(Duration::from_secs(30)).await;

    bench.assert_one_jira_issue_per_finding(&ids(&all));
    bench.assert_queues_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_goes_to_the_dlq_with_its_reason_and_the_worker_carries_on() {
    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraOnly, Faults::none()).await;
    let poison =
        r#"{"detail-type": "Security Hub Findings - Imported", "detail": {"findings": [{"Id": "#;
    let poison_id = bench.send(poison).await;
    let good = FindingBuilder::new("after-the-poison");
    bench.send(&good.body()).await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);

    // One at a time: the good message is only worked on if the poison did not stop the worker.
    let summary = bench.drain("records.db", 1).await;

    assert_eq!(summary.dead_lettered, 1, "{summary:?}");
    assert_eq!(summary.deleted, 2, "{summary:?}");
    bench.assert_one_jira_issue_per_finding(&[good.id()]);
    let dead = bench.dlq_messages().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let dead = &dead[0];
    assert_eq!(dead.body, poison, "the DLQ keeps the original body");
    let attr = |name: &str| {
        dead.attributes
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing from {:?}", dead.attributes))
    };
    assert_eq!(attr("fb-error-kind"), "decode");
    assert!(!attr("fb-error").trim().is_empty());
    assert_eq!(attr("fb-original-message-id"), poison_id);
    let first_failure = chrono::DateTime::parse_from_rfc3339(&attr("fb-first-failure"))
        .expect("fb-first-failure is an RFC 3339 time");
    assert!(
        first_failure >= before && first_failure <= chrono::Utc::now(),
        "fb-first-failure {first_failure} is the time of this run"
    );
    assert_eq!(bench.depth(&bench.queue_url).await, (0, 0), "queue");
    assert_eq!(bench.depth(&bench.dlq_url).await, (1, 0), "DLQ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_work_in_flight_exits_zero_within_the_grace_period_and_loses_nothing() {
    let _timing = e2e::exclusive().await;
    let slow = latency(2000);
    let bench = Bench::start(Teams::JiraOnly, slow.clone()).await;
    let all = findings("term", 12);
    let bodies: Vec<String> = all.iter().map(FindingBuilder::body).collect();
    bench.send_all(&bodies).await;
    let store = format!("sqlite:{}", bench.dir.path().join("records.db").display());
    let grace = Duration::from_secs(3);
    let tuning = [("BRIDGE_CONCURRENCY", "4"), ("BRIDGE_GRACE_PERIOD", "3")];

    let mut first = bench.spawn("terminated", &store, &tuning, &[]);
    // Wait for what the test is about: a create in flight. Any Jira request would not do — the
    // start-up probe comes before a single message is received.
    eventually(
        Duration::from_secs(60),
        "a create request in flight",
        || async { bench.requests().contains_key("POST /rest/api/3/issue") },
    )
    .await;
    first.terminate();
    let took = first.expect_success(grace + Duration::from_secs(20)).await;
    println!("SIGTERM to exit: {took:?} (grace {grace:?})");
    // Generous margin over the grace period: this proves the worker stops on its own well within
    // an ECS stop timeout, not how fast a loaded shared machine schedules it.
    assert!(
        took <= grace + Duration::from_secs(10),
        "exit took {took:?}, far longer than the grace period {grace:?} allows"
    );
    // Requests the stopped worker sent are still sleeping in the simulator; let them land so the
    // second run starts from what the ticket system will really hold.
    tokio::time::sleep(slow.latency + Duration::from_millis(500)).await;
    let after_first = bench.jira_count();
    assert!(
        after_first < all.len(),
        "all {after_first} tickets were done before SIGTERM: nothing was in flight"
    );

    bench
        .sim
        .state
        .set_faults(Faults::none())
        .expect("no faults is valid");
    let mut second = bench.spawn("second-run", &store, &tuning, &["--drain"]);
    second.expect_success(Duration::from_secs(120)).await;

    bench.assert_one_jira_issue_per_finding(&ids(&all));
    bench.assert_queues_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_of_our_own_write_back_makes_no_ticket_call() {
    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraOnly, Faults::none()).await;
    let finding = FindingBuilder::new("echo").updated_at("2026-03-04T02:00:19.114Z");
    bench.send(&finding.body()).await;
    bench.drain("records.db", 4).await;
    bench.assert_one_jira_issue_per_finding(&[finding.id()]);
    assert_eq!(
        bench.sim.state.finding_workflow(&finding.id()).as_deref(),
        Some("NOTIFIED"),
        "the bridge wrote NOTIFIED back"
    );
    let before = bench.requests();

    // What Security Hub sends after our BatchUpdateFindings: the same finding, now NOTIFIED.
    bench
        .send(&finding.clone().workflow("NOTIFIED").body())
        .await;
    let summary = bench.drain("records.db", 4).await;

    assert_eq!((summary.findings, summary.deleted), (1, 1), "{summary:?}");
    assert_eq!(
        bench.requests(),
        before,
        "the echo made no call to Jira, ServiceNow or Security Hub"
    );
    bench.assert_one_jira_issue_per_finding(&[finding.id()]);
    bench.assert_queues_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_event_is_ignored_without_a_ticket_call() {
    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraOnly, Faults::none()).await;
    let current = FindingBuilder::new("stale")
        .updated_at("2026-03-05T10:00:00.000Z")
        .severity("HIGH");
    bench.send(&current.body()).await;
    bench.drain("records.db", 4).await;
    bench.assert_one_jira_issue_per_finding(&[current.id()]);
    let before = bench.requests();

    // An older version arriving late, with a severity that would otherwise change the ticket.
    let older = current
        .clone()
        .updated_at("2026-03-01T10:00:00.000Z")
        .severity("CRITICAL");
    bench.send(&older.body()).await;
    let summary = bench.drain("records.db", 4).await;

    assert_eq!((summary.findings, summary.deleted), (1, 1), "{summary:?}");
    assert_eq!(bench.requests(), before, "the stale event made no call");
    let issue = &bench.sim.state.jira_issues()[0];
    assert_eq!(issue.priority.as_deref(), Some("High"));
    assert!(issue.comments.is_empty(), "{:?}", issue.comments);
    bench.assert_queues_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finding_routed_to_two_teams_gets_a_jira_issue_and_a_servicenow_incident() {
    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraAndServiceNow, Faults::none()).await;
    let finding = FindingBuilder::new("two-teams");
    bench.send(&finding.body()).await;

    let summary = bench.drain("records.db", 4).await;

    assert_eq!((summary.findings, summary.deleted), (1, 1), "{summary:?}");
    bench.assert_one_jira_issue_per_finding(&[finding.id()]);
    let records = bench.sim.state.servicenow_records();
    assert_eq!(records.len(), 1, "one ServiceNow record");
    let incident = &records[0];
    assert_eq!(incident.table, "incident");
    let jira_marker = Marker::new(JIRA_TEAM, &finding.id());
    let sn_marker = Marker::new(SERVICENOW_TEAM, &finding.id());
    assert_ne!(jira_marker, sn_marker);
    assert_eq!(incident.get("correlation_id"), Some(sn_marker.as_str()));
    assert_eq!(incident.get("correlation_display"), Some("findings-bridge"));
    assert_eq!(bench.jira_markers(), vec![jira_marker.as_str().to_owned()]);
    // One write-back naming both tickets (Security Hub refuses a batch naming a finding twice).
    let notes = bench
        .sim
        .state
        .finding(&finding.id())
        .map(|f| f.notes)
        .unwrap_or_default();
    let jira_key = bench.sim.state.jira_issues()[0].key.clone();
    let number = incident.get("number").unwrap_or("?").to_owned();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains(&jira_key) && notes[0].contains(&number),
        "{notes:?}"
    );
    bench.assert_queues_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_delivered_by_eventbridge_and_by_sns_both_get_tickets() {
    use aws_sdk_eventbridge::types::{PutEventsRequestEntry, Target};

    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraOnly, Faults::none()).await;

    // EventBridge: a rule on its own bus sends Security Hub events to the queue.
    let events = aws_sdk_eventbridge::Client::new(&bench.aws);
    let bus = support::unique("e2e-bus");
    events
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .expect("CreateEventBus");
    let rule = support::unique("e2e-findings");
    let pattern = serde_json::json!({
        "source": ["aws.securityhub"],
        "detail-type": ["Security Hub Findings - Imported", "Findings Imported V2"],
    });
    events
        .put_rule()
        .name(&rule)
        .event_bus_name(&bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .expect("PutRule");
    events
        .put_targets()
        .rule(&rule)
        .event_bus_name(&bus)
        .targets(
            Target::builder()
                .id("findings-queue")
                .arn(&bench.queue_arn)
                .build()
                .expect("target has id and arn"),
        )
        .send()
        .await
        .expect("PutTargets");
    let event = e2e::fixture_json("guardduty-eventbridge.json");
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let put = events
        .put_events()
        .entries(
            PutEventsRequestEntry::builder()
                .event_bus_name(&bus)
                .source(text(&event["source"]))
                .detail_type(text(&event["detail-type"]))
                .detail(event["detail"].to_string())
                .resources(text(&event["resources"][0]))
                .build(),
        )
        .send()
        .await
        .expect("PutEvents");
    assert_eq!(put.failed_entry_count(), 0, "{put:?}");
    let from_eventbridge = text(&event["detail"]["findings"][0]["Id"]);

    // SNS: the queue subscribes to a topic without raw delivery.
    let sns = aws_sdk_sns::Client::new(&bench.aws);
    let topic = sns
        .create_topic()
        .name(support::unique("e2e-topic"))
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn()
        .expect("topic ARN")
        .to_owned();
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&bench.queue_arn)
        .send()
        .await
        .expect("Subscribe");
    let notification = e2e::fixture_json("sns-wrapped.json");
    let message = text(&notification["Message"]);
    sns.publish()
        .topic_arn(&topic)
        .message(&message)
        .send()
        .await
        .expect("Publish");
    let inner: serde_json::Value =
        serde_json::from_str(&message).expect("the SNS fixture wraps JSON");
    let from_sns = text(&inner["detail"]["findings"][0]["Id"]);
    assert_ne!(from_eventbridge, from_sns);

    eventually(
        Duration::from_secs(30),
        "both envelopes on the queue",
        || async { bench.depth(&bench.queue_url).await.0 >= 2 },
    )
    .await;
    let bodies = peek(&bench).await;
    assert!(
        bodies.iter().any(|b| b["Type"] == "Notification"),
        "an SNS notification envelope: {bodies:?}"
    );
    assert!(
        bodies
            .iter()
            .any(|b| b["detail-type"] == "Security Hub Findings - Imported"),
        "an EventBridge event envelope: {bodies:?}"
    );

    let summary = bench.drain("records.db", 4).await;

    assert_eq!((summary.findings, summary.deleted), (2, 2), "{summary:?}");
    bench.assert_one_jira_issue_per_finding(&[from_eventbridge, from_sns]);
    bench.assert_queues_empty().await;
}

/// The bodies on the queue, left visible for the worker.
async fn peek(bench: &Bench) -> Vec<serde_json::Value> {
    let out = bench
        .sqs
        .receive_message()
        .queue_url(&bench.queue_url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .expect("ReceiveMessage");
    let bodies: Vec<serde_json::Value> = out
        .messages()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap_or_default()).expect("JSON bodies"))
        .collect();
    let distinct: BTreeSet<String> = bodies.iter().map(|b| b.to_string()).collect();
    assert_eq!(distinct.len(), bodies.len());
    bodies
}
