//! The worker end to end (issue 4): messages on a moto SQS queue, tickets in the simulator's Jira
//! and ServiceNow, write-backs to its Security Hub. Every test asserts what an operator would
//! check afterwards: how many tickets exist (one per finding and team, never a duplicate), and
//! what is left on the queue and the DLQ.
//!
//! Some tests run the worker in this process (built from its parts like `app::run` builds it),
//! the ones about processes — several replicas, SIGKILL, SIGTERM — run the real binary.
//!
//! Needs `moto_server` (`scripts/venv`).

use crate::bench as e2e;
use crate::support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::{Bench, FindingBuilder, JIRA_TEAM, SERVICENOW_TEAM, Teams, eventually, findings};
use findings_bridge::marker::Marker;
use findings_bridge::store::dynamodb::DynamoStore;
use findings_bridge_sim::{Faults, RefuseCredentials, System};

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

/// The README's Data Center set-up: `JIRA_URL` and `JIRA_PAT`, nothing else. The PAT alone means
/// Data Center (REST v2, wiki markup bodies) for the client and the bodies alike; rendering Cloud
/// (ADF) bodies for a v2 client made every create fail with 400 and dead-lettered every finding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jira_data_center_configured_with_a_pat_alone_gets_wiki_bodies_and_its_tickets() {
    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraOnly, Faults::default()).await;
    let finding = FindingBuilder::new("data-center-pat");
    bench.send(&finding.body()).await;

    let pat = findings_bridge_sim::SimConfig::default().jira_pat;
    // The bench configures Cloud (e-mail + token); blank values are unset for the worker.
    let data_center = [
        ("JIRA_EMAIL", ""),
        ("JIRA_API_TOKEN", ""),
        ("JIRA_PAT", pat.as_str()),
    ];
    let store = format!("sqlite:{}", bench.dir.path().join("records.db").display());
    let mut worker = bench.spawn("data-center", &store, &data_center, &["--drain"]);
    worker.expect_success(Duration::from_secs(120)).await;

    assert_eq!(bench.sim.state.request_count("POST /rest/api/2/issue"), 1);
    assert_eq!(bench.sim.state.request_count(CREATE_ISSUE), 0);
    bench.assert_one_jira_issue_per_finding(&[finding.id()]);
    let issue = bench.sim.state.jira_issues().remove(0);
    assert!(
        issue.description.is_string(),
        "a Data Center description is wiki markup, not ADF: {}",
        issue.description
    );
    assert!(
        bench.dlq_messages().await.is_empty(),
        "nothing dead-lettered: {}",
        worker.log_tail(20)
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

// ---- issue 18: a connection or a rule that stops working --------------------------------------

/// The redrive policy of the outage tests: a message received this many times without being
/// deleted goes to the DLQ ...
const MAX_RECEIVE: u32 = 2;
/// ... and a received message comes back after this many seconds unless deleted or extended.
const VISIBILITY_SECS: u64 = 2;

/// Long enough for any message the bridge let come back by visibility timeout (instead of
/// parking it) to use up its receive count several times over.
fn outage() -> Duration {
    Duration::from_secs(3 * u64::from(MAX_RECEIVE) * VISIBILITY_SECS)
}

/// Waits until `/readyz` answers 503 with a component whose name contains `subject`; returns
/// that component's text.
async fn wait_paused(addr: std::net::SocketAddr, subject: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((503, body)) = e2e::readyz(addr).await
            && let Some(why) = body.as_object().and_then(|components| {
                components
                    .iter()
                    .find(|(name, _)| name.contains(subject))
                    .map(|(_, why)| why.as_str().unwrap_or_default().to_owned())
            })
        {
            return why;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after 60 s waiting for /readyz 503 naming {subject}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_ready(addr: std::net::SocketAddr, what: &str) {
    eventually(Duration::from_secs(120), what, || async {
        matches!(e2e::readyz(addr).await, Some((200, _)))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_jira_credentials_park_findings_until_they_work_again_and_dead_letter_none() {
    refused_credentials_then_restored(System::Jira, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_servicenow_oauth_client_parks_findings_until_it_works_again() {
    // OAuth client credentials: the refusal also revokes the token the worker holds, so it must
    // fetch a new one (refused too, `invalid_client`, until the refusal ends).
    let oauth = [
        ("SERVICENOW_USERNAME", ""),
        ("SERVICENOW_PASSWORD", ""),
        ("SERVICENOW_CLIENT_ID", "sim-client"),
        ("SERVICENOW_CLIENT_SECRET", "sim-client-secret"),
    ];
    refused_credentials_then_restored(System::ServiceNow, &oauth).await;
}

/// A worker for the outage tests, ready before the fault begins: the queue redrives to the DLQ
/// after [`MAX_RECEIVE`] receives and a received message comes back after [`VISIBILITY_SECS`],
/// so any message the bridge let come back instead of parking it would soon be dead-lettered.
async fn outage_worker(
    bench: &Bench,
    name: &str,
    extra: &[(&str, &str)],
) -> (e2e::WorkerProcess, std::net::SocketAddr) {
    bench.redrive_to_dlq(MAX_RECEIVE).await;
    let store = format!("sqlite:{}", bench.dir.path().join("records.db").display());
    let visibility = VISIBILITY_SECS.to_string();
    let mut env = vec![
        ("BRIDGE_CONCURRENCY", "4"),
        ("BRIDGE_VISIBILITY_TIMEOUT", visibility.as_str()),
    ];
    env.extend_from_slice(extra);
    let worker = bench.spawn(name, &store, &env, &[]);
    let addr = worker.http_addr(Duration::from_secs(60)).await;
    wait_ready(addr, &format!("{name}: ready before the fault")).await;
    (worker, addr)
}

/// `n` findings of one severity, with ids starting with `prefix`.
fn of_severity(prefix: &str, n: usize, severity: &str) -> Vec<FindingBuilder> {
    findings(prefix, n)
        .into_iter()
        .map(|f| f.severity(severity))
        .collect()
}

/// Every finding routes to a Jira team and a ServiceNow team; `refused` refuses every credential
/// while the findings arrive and for longer than the redrive policy allows, the other system
/// keeps taking tickets. Then the refusal ends: one ticket per (finding, team), nothing in the
/// DLQ, the queue drained.
async fn refused_credentials_then_restored(refused: System, extra: &[(&str, &str)]) {
    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraAndServiceNow, Faults::none()).await;
    let (connection, name) = match refused {
        System::Jira => ("jira", "refused-jira"),
        System::ServiceNow => ("servicenow", "refused-servicenow"),
    };
    let (mut worker, addr) = outage_worker(&bench, name, extra).await;
    let jira = || bench.jira_count();
    let servicenow = || bench.sim.state.servicenow_records().len();
    let (tickets_refused, tickets_other): (&dyn Fn() -> usize, &dyn Fn() -> usize) = match refused {
        System::Jira => (&jira, &servicenow),
        System::ServiceNow => (&servicenow, &jira),
    };

    // The credential is revoked (the test ends the refusal itself, so nothing depends on how
    // fast this machine is), and the findings arrive meanwhile.
    let refusal = match refused {
        System::Jira => RefuseCredentials {
            jira: Duration::from_secs(600),
            ..RefuseCredentials::default()
        },
        System::ServiceNow => RefuseCredentials {
            servicenow: Duration::from_secs(600),
            ..RefuseCredentials::default()
        },
    };
    bench
        .sim
        .state
        .set_faults(Faults {
            refuse_credentials: refusal,
            ..Faults::none()
        })
        .expect("valid faults");
    let refused_at = Instant::now();
    let all = findings(name, 20);
    bench
        .send_all(&all.iter().map(FindingBuilder::body).collect::<Vec<_>>())
        .await;

    let reason = wait_paused(addr, &format!("connection {connection}")).await;
    assert!(reason.contains("401"), "{reason}");
    let label = format!(r#"connection="{connection}""#);
    assert_eq!(
        e2e::metric(addr, "findings_bridge_connection_up", &[label.as_str()]).await,
        Some(0.0),
        "the {connection} connection gauge is down"
    );
    eventually(
        Duration::from_secs(60),
        "a ticket for every finding in the other system meanwhile",
        || async { tickets_other() >= all.len() },
    )
    .await;
    // Let the refusal outlast the redrive policy several times over (a wait, not a measure).
    tokio::time::sleep(outage().saturating_sub(refused_at.elapsed())).await;
    assert!(bench.sim.state.credentials_refused(refused).is_some());
    assert_eq!(tickets_refused(), 0, "nothing reached {connection}");
    assert_eq!(
        bench.depth(&bench.dlq_url).await,
        (0, 0),
        "nothing dead-lettered while {connection} refused"
    );
    assert!(
        bench.sim.state.stats().faults.refused_401 > 0,
        "the worker met the refusal"
    );
    assert!(
        worker.parked_in_log() >= all.len(),
        "every message was parked at least once ({} parks logged)",
        worker.parked_in_log()
    );

    // The credential works again: a probe finds out, and every parked finding gets its ticket.
    bench
        .sim
        .state
        .set_faults(Faults::none())
        .expect("valid faults");
    eventually(
        Duration::from_secs(150),
        "a ticket for every finding in the refused system and an empty queue",
        || async { tickets_refused() >= all.len() && bench.queue_is_empty().await },
    )
    .await;
    wait_ready(addr, "/readyz 200 once the credential works again").await;
    println!(
        "refused {connection}: {} findings, {} parks logged, all tickets and an empty queue \
         {:?} after the refusal began",
        all.len(),
        worker.parked_in_log(),
        refused_at.elapsed()
    );
    worker.terminate();
    worker.expect_success(Duration::from_secs(30)).await;

    bench.assert_one_jira_issue_per_finding(&ids(&all));
    let incidents: BTreeSet<String> = bench
        .sim
        .state
        .servicenow_records()
        .iter()
        .filter_map(|r| r.get("correlation_id").map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = all
        .iter()
        .map(|f| Marker::new(SERVICENOW_TEAM, &f.id()).as_str().to_owned())
        .collect();
    assert_eq!(incidents, expected, "one incident per finding");
    assert_eq!(bench.sim.state.servicenow_records().len(), all.len());
    bench.assert_queues_empty().await;
}

/// A second team whose first rule's project goes away: critical findings to PAY, the rest to
/// PAYOPS. `appsec` (SEC, every finding, not terminal) sees every finding first.
const PAYMENTS_TEAM_FILE: &str = r#"
team = "payments"
description = "Payments (end-to-end tests): one rule whose project is deleted"

[[rules]]
name = "critical-to-pay"
order = 20
[rules.criteria]
SeverityLabel = [{ Value = "CRITICAL", Comparison = "EQUALS" }]
[rules.jira]
project = "PAY"
issue_type = "Bug"
summary = "[{{ finding.severity }}] {{ finding.title }}"
description = "{{ finding.description }}"

[[rules]]
name = "the-rest"
order = 30
[rules.jira]
project = "PAYOPS"
issue_type = "Bug"
summary = "[{{ finding.severity }}] {{ finding.title }}"
description = "{{ finding.description }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_whose_project_is_gone_pauses_alone_and_its_findings_wait_for_it() {
    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraOnly, Faults::none()).await;
    bench.write_team("payments.toml", PAYMENTS_TEAM_FILE);
    let (mut worker, addr) = outage_worker(&bench, "gone", &[]).await;

    // Someone deletes the PAY project; then the findings arrive.
    bench
        .sim
        .state
        .set_faults(Faults {
            gone_projects: vec!["PAY".to_owned()],
            ..Faults::none()
        })
        .expect("valid faults");
    let gone_at = Instant::now();
    let critical = of_severity("gone-critical", 8, "CRITICAL");
    let other = of_severity("gone-high", 8, "HIGH");
    let all: Vec<FindingBuilder> = critical.iter().chain(&other).cloned().collect();
    bench
        .send_all(&all.iter().map(FindingBuilder::body).collect::<Vec<_>>())
        .await;

    let reason = wait_paused(addr, "rule payments/critical-to-pay").await;
    assert!(reason.contains("project"), "{reason}");
    let paused = e2e::readyz(addr).await.map(|(_, body)| body);
    assert!(
        paused
            .as_ref()
            .is_some_and(|body| !body.as_object().is_some_and(|c| c
                .keys()
                .any(|k| k.contains("connection jira")
                    || k.contains("the-rest")
                    || k.contains("appsec")))),
        "only the rule is paused: {paused:?}"
    );
    assert_eq!(
        e2e::metric(
            addr,
            "findings_bridge_rule_up",
            &[r#"team="payments""#, r#"rule="critical-to-pay""#]
        )
        .await,
        Some(0.0),
        "the rule gauge is down"
    );
    // The same connection, the team's other rule and the other team keep getting tickets.
    let count = |project: &str| {
        bench
            .jira_tickets()
            .iter()
            .filter(|(p, _)| p == project)
            .count()
    };
    eventually(
        Duration::from_secs(60),
        "SEC issues for every finding and PAYOPS issues for the non-critical ones",
        || async { count("SEC") >= all.len() && count("PAYOPS") >= other.len() },
    )
    .await;
    tokio::time::sleep(outage().saturating_sub(gone_at.elapsed())).await;
    assert_eq!(count("PAY"), 0, "nothing in the gone project");
    assert_eq!(
        bench.depth(&bench.dlq_url).await,
        (0, 0),
        "nothing dead-lettered while the project was gone"
    );
    assert!(bench.sim.state.stats().faults.target_gone > 0);

    // The project is restored: its findings get their tickets.
    bench
        .sim
        .state
        .set_faults(Faults::none())
        .expect("valid faults");
    eventually(
        Duration::from_secs(150),
        "PAY issues for the critical findings and an empty queue",
        || async { count("PAY") >= critical.len() && bench.queue_is_empty().await },
    )
    .await;
    wait_ready(addr, "/readyz 200 once the project is back").await;
    println!(
        "gone project: {} findings, {} parks logged, all tickets and an empty queue {:?} after \
         the project went",
        all.len(),
        worker.parked_in_log(),
        gone_at.elapsed()
    );
    worker.terminate();
    worker.expect_success(Duration::from_secs(30)).await;

    let tickets = bench.jira_tickets();
    let markers: Vec<&String> = tickets.iter().map(|(_, m)| m).collect();
    let unique: BTreeSet<&String> = markers.iter().copied().collect();
    assert_eq!(unique.len(), markers.len(), "no duplicates: {tickets:?}");
    let mut expected: BTreeSet<(String, String)> = BTreeSet::new();
    for f in &all {
        let appsec = Marker::new(JIRA_TEAM, &f.id()).as_str().to_owned();
        expected.insert(("SEC".to_owned(), appsec));
    }
    for (list, project) in [(&critical, "PAY"), (&other, "PAYOPS")] {
        for f in list {
            let payments = Marker::new("payments", &f.id()).as_str().to_owned();
            expected.insert((project.to_owned(), payments));
        }
    }
    let actual: BTreeSet<(String, String)> = tickets.into_iter().collect();
    assert_eq!(
        actual, expected,
        "one issue per (finding, team), in its rule's project"
    );
    bench.assert_queues_empty().await;
}

/// A ServiceNow team whose critical findings go to a table that is then deleted.
const SECOPS_TEAM_FILE: &str = r#"
team = "secops"
description = "Security operations (end-to-end tests): one rule whose table is deleted"

[[rules]]
name = "critical-to-sir"
order = 20
target = "servicenow"
[rules.criteria]
SeverityLabel = [{ Value = "CRITICAL", Comparison = "EQUALS" }]
[rules.servicenow]
table = "sn_si_incident"
short_description = "{{ finding.title }}"
description = "{{ finding.description }}"

[[rules]]
name = "the-rest"
order = 30
target = "servicenow"
[rules.servicenow]
table = "incident"
short_description = "{{ finding.title }}"
description = "{{ finding.description }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_whose_servicenow_table_is_gone_pauses_alone_and_its_findings_wait_for_it() {
    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraOnly, Faults::none()).await;
    bench.write_team("secops.toml", SECOPS_TEAM_FILE);
    let (mut worker, addr) = outage_worker(&bench, "gone-table", &[]).await;

    bench
        .sim
        .state
        .set_faults(Faults {
            gone_tables: vec!["sn_si_incident".to_owned()],
            ..Faults::none()
        })
        .expect("valid faults");
    let gone_at = Instant::now();
    let critical = of_severity("table-critical", 6, "CRITICAL");
    let other = of_severity("table-high", 6, "HIGH");
    let all: Vec<FindingBuilder> = critical.iter().chain(&other).cloned().collect();
    bench
        .send_all(&all.iter().map(FindingBuilder::body).collect::<Vec<_>>())
        .await;

    let reason = wait_paused(addr, "rule secops/critical-to-sir").await;
    assert!(
        reason.to_ascii_lowercase().contains("invalid table"),
        "{reason}"
    );
    let in_table = |table: &str| {
        bench
            .sim
            .state
            .servicenow_records()
            .iter()
            .filter(|r| r.table == table)
            .count()
    };
    eventually(
        Duration::from_secs(60),
        "SEC issues for every finding and incidents for the non-critical ones",
        || async { bench.jira_count() >= all.len() && in_table("incident") >= other.len() },
    )
    .await;
    tokio::time::sleep(outage().saturating_sub(gone_at.elapsed())).await;
    assert_eq!(in_table("sn_si_incident"), 0);
    assert_eq!(
        bench.depth(&bench.dlq_url).await,
        (0, 0),
        "nothing dead-lettered while the table was gone: {:?}",
        bench.dlq_messages().await
    );

    bench
        .sim
        .state
        .set_faults(Faults::none())
        .expect("valid faults");
    eventually(
        Duration::from_secs(150),
        "security incidents for the critical findings and an empty queue",
        || async { in_table("sn_si_incident") >= critical.len() && bench.queue_is_empty().await },
    )
    .await;
    wait_ready(addr, "/readyz 200 once the table is back").await;
    worker.terminate();
    worker.expect_success(Duration::from_secs(30)).await;

    bench.assert_one_jira_issue_per_finding(&ids(&all));
    let actual: BTreeSet<(String, String)> = bench
        .sim
        .state
        .servicenow_records()
        .iter()
        .map(|r| {
            let marker = r.get("correlation_id").unwrap_or_default().to_owned();
            (r.table.clone(), marker)
        })
        .collect();
    let mut expected: BTreeSet<(String, String)> = BTreeSet::new();
    for (list, table) in [(&critical, "sn_si_incident"), (&other, "incident")] {
        for f in list {
            let marker = Marker::new("secops", &f.id()).as_str().to_owned();
            expected.insert((table.to_owned(), marker));
        }
    }
    assert_eq!(
        actual, expected,
        "one record per finding, in its rule's table"
    );
    assert_eq!(bench.sim.state.servicenow_records().len(), all.len());
    bench.assert_queues_empty().await;
}
