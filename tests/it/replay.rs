//! `findings-bridge replay` against real peers: SQS on moto_server (see `tests/support/moto.rs`;
//! install it with `scripts/venv`) for the message-by-message replay, and a wiremock contract for
//! `--native` (`StartMessageMoveTask`, which moto lacks) through the real aws-sdk-sqs client.
//!
//! The DLQ messages look like the worker's dead letters: the original body plus `fb-error-kind`,
//! `fb-error`, `fb-original-message-id`, `fb-first-failure`, `fb-receive-count`.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use findings_bridge::aws::sqs::{
    DeleteEntry, DeleteFailure, Queue, QueueError, ReceivedMessage, SqsQueue,
};
use findings_bridge::commands::replay::{
    Filter, ProcessFn, ReplayDeps, ReplayOptions, ReplaySummary, ReplayTarget, TeamsFn, replay,
};
use findings_bridge::finding::Finding;
use findings_bridge::runtime::shutdown::Shutdown;
use findings_bridge::ticket::BoxFuture;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FIRST_FAILURE: &str = "2026-11-28T10:00:00Z";

/// A bare ASFF finding (the decoder's real input) with the given id and product.
fn asff(id: &str, product: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bare-asff.json");
    let text = std::fs::read_to_string(path).expect("fixture bare-asff.json");
    let mut finding: Value = serde_json::from_str(&text).expect("fixture is JSON");
    finding["Id"] = json!(id);
    finding["ProductName"] = json!(product);
    finding.to_string()
}

/// The attributes the worker puts on a dead letter, plus one of the producer's own.
fn dead_letter_attributes(kind: &str) -> BTreeMap<String, String> {
    BTreeMap::from(
        [
            ("fb-error-kind", kind),
            ("fb-error", "the template failed on this finding"),
            ("fb-original-message-id", "0b1c2d3e-original"),
            ("fb-first-failure", FIRST_FAILURE),
            ("fb-receive-count", "1"),
            ("trace-id", "trace-42"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
}

struct Queues {
    client: aws_sdk_sqs::Client,
    dlq_url: String,
    source_url: String,
    dlq: Arc<dyn Queue>,
    source: Arc<dyn Queue>,
}

impl Queues {
    async fn new() -> Queues {
        let moto = support::moto::moto().await;
        let client = aws_sdk_sqs::Client::new(&support::moto::aws_config(&moto.endpoint).await);
        let dlq_url = create_queue(&client, "dlq").await;
        let source_url = create_queue(&client, "source").await;
        Queues {
            dlq: Arc::new(SqsQueue::new(client.clone(), &dlq_url).reading_all_attributes()),
            source: Arc::new(SqsQueue::new(client.clone(), &source_url).reading_all_attributes()),
            client,
            dlq_url,
            source_url,
        }
    }

    /// Dead-letters `body` the way the worker does.
    async fn dead_letter(&self, body: &str, kind: &str) {
        self.dlq
            .send(body, &dead_letter_attributes(kind))
            .await
            .expect("send to the DLQ");
    }

    fn options(&self, target: ReplayTarget) -> ReplayOptions {
        let mut opts = ReplayOptions::new(&self.dlq_url, target);
        opts.idle_receives = 1;
        opts
    }

    fn to_source(&self) -> ReplayOptions {
        self.options(ReplayTarget::Queue(self.source_url.clone()))
    }

    fn deps(&self) -> ReplayDeps {
        let mut deps = ReplayDeps::new(self.dlq.clone());
        deps.target_queue = Some(self.source.clone());
        deps
    }

    /// (visible, in flight) as SQS counts them.
    async fn counts(&self, url: &str) -> (u64, u64) {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("get queue attributes");
        let get = |name: QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .expect("count attribute")
        };
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

async fn create_queue(client: &aws_sdk_sqs::Client, prefix: &str) -> String {
    client
        .create_queue()
        .queue_name(support::unique(prefix))
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_owned()
}

/// Every visible message of `queue`, received (and hidden for a minute) until it is empty.
async fn drain(queue: &dyn Queue) -> Vec<ReceivedMessage> {
    let mut all = Vec::new();
    loop {
        let batch = queue
            .receive(10, Duration::from_secs(1), Duration::from_secs(60))
            .await
            .expect("receive");
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

fn bodies(messages: &[ReceivedMessage]) -> BTreeSet<String> {
    messages.iter().map(|m| m.body.clone()).collect()
}

fn filter(s: &str) -> Filter {
    s.parse().expect("valid filter")
}

async fn run(opts: ReplayOptions, deps: ReplayDeps) -> ReplaySummary {
    replay(opts, deps, Shutdown::new())
        .await
        .expect("replay runs")
}

#[tokio::test]
async fn replayed_messages_go_back_to_the_source_queue_without_the_error_attributes() {
    let q = Queues::new().await;
    let sent: BTreeSet<String> = (0..3)
        .map(|i| asff(&format!("finding-{i}"), "GuardDuty"))
        .collect();
    for body in &sent {
        q.dead_letter(body, "render").await;
    }

    let summary = run(q.to_source(), q.deps()).await;

    assert_eq!(summary.replayed, 3, "{summary}");
    assert_eq!(summary.skipped, 0);
    assert!(summary.failed.is_empty(), "{summary}");
    assert_eq!(
        q.counts(&q.dlq_url).await,
        (0, 0),
        "replayed messages leave the DLQ"
    );
    let back = drain(q.source.as_ref()).await;
    assert_eq!(bodies(&back), sent, "the original bodies, unchanged");
    for message in &back {
        let names: Vec<&str> = message
            .attributes
            .keys()
            .map(String::as_str)
            .filter(|n| !n.starts_with("AWS."))
            .collect();
        assert_eq!(
            names,
            ["fb-first-failure", "trace-id"],
            "error attributes stripped; the producer's and the first-failure time kept"
        );
        assert_eq!(message.attributes["fb-first-failure"], FIRST_FAILURE);
        assert_eq!(message.attributes["trace-id"], "trace-42");
    }
}

#[tokio::test]
async fn filters_select_by_error_kind_and_finding_id_and_the_rest_stays_in_the_dlq() {
    let q = Queues::new().await;
    let a = asff("finding-a", "GuardDuty");
    let b = asff("finding-b", "GuardDuty");
    let c = asff("finding-c", "Inspector");
    let d = asff("finding-d", "Inspector");
    q.dead_letter(&a, "render").await;
    q.dead_letter(&b, "decode").await;
    q.dead_letter(&c, "render").await;
    q.dead_letter(&d, "ticket").await;

    let mut opts = q.to_source();
    // Same field ORed, different fields ANDed: kind ∈ {render, ticket} and id ∈ {a, b, d}.
    opts.filters = [
        "error-kind=render",
        "error-kind=ticket",
        "finding-id=finding-a",
        "finding-id=finding-b",
        "finding-id=finding-d",
    ]
    .map(filter)
    .to_vec();
    let summary = run(opts, q.deps()).await;

    assert_eq!(summary.replayed, 2, "{summary}");
    assert_eq!(summary.skipped, 2, "{summary}");
    assert_eq!(
        bodies(&drain(q.source.as_ref()).await),
        BTreeSet::from([a, d])
    );
    assert_eq!(
        q.counts(&q.dlq_url).await,
        (2, 0),
        "skipped messages are visible in the DLQ again at once"
    );
    let left = drain(q.dlq.as_ref()).await;
    assert_eq!(bodies(&left), BTreeSet::from([b, c.clone()]));
    assert!(
        left.iter()
            .all(|m| m.attributes.contains_key("fb-error-kind")),
        "skipped messages keep their error attributes"
    );
    let now = chrono::Utc::now().timestamp_millis();
    for m in &left {
        let sent: i64 = m.attributes[findings_bridge::aws::sqs::SENT_TIMESTAMP_ATTRIBUTE]
            .parse()
            .expect("SentTimestamp is milliseconds");
        assert!((now - sent).abs() < 600_000, "sent just now: {sent}");
    }
    for m in &left {
        q.dlq
            .change_visibility(&m.receipt_handle, Duration::ZERO)
            .await
            .expect("reveal");
    }

    // Product names match case-insensitively; only C is left from Inspector.
    let mut opts = q.to_source();
    opts.filters = vec![filter("product=inspector")];
    let summary = run(opts, q.deps()).await;
    assert_eq!((summary.replayed, summary.skipped), (1, 1), "{summary}");
    assert_eq!(bodies(&drain(q.source.as_ref()).await), BTreeSet::from([c]));
}

#[tokio::test]
async fn team_filters_use_routing_and_a_since_window_uses_the_first_failure() {
    let q = Queues::new().await;
    let payments = asff("payments-finding", "GuardDuty");
    let infra = asff("infra-finding", "GuardDuty");
    q.dead_letter(&payments, "ticket").await;
    q.dead_letter(&infra, "ticket").await;
    let teams: TeamsFn = Arc::new(|f: &Finding| {
        if f.id.starts_with("payments") {
            vec!["payments".to_owned()]
        } else {
            vec!["infra".to_owned()]
        }
    });

    // Both failed first at FIRST_FAILURE: a window after it selects nothing.
    let mut opts = q.to_source();
    opts.since = Some("2026-11-29T00:00:00Z".parse().expect("time"));
    let summary = run(opts, q.deps()).await;
    assert_eq!((summary.replayed, summary.skipped), (0, 2), "{summary}");

    let mut opts = q.to_source();
    opts.filters = vec![filter("team=payments")];
    opts.since = Some("2026-11-28T00:00:00Z".parse().expect("time"));
    opts.until = Some("2026-11-28T12:00:00Z".parse().expect("time"));
    let mut deps = q.deps();
    deps.teams = Some(teams);
    let summary = run(opts, deps).await;
    assert_eq!((summary.replayed, summary.skipped), (1, 1), "{summary}");
    assert_eq!(
        bodies(&drain(q.source.as_ref()).await),
        BTreeSet::from([payments])
    );
    assert_eq!(
        bodies(&drain(q.dlq.as_ref()).await),
        BTreeSet::from([infra])
    );
}

#[tokio::test]
async fn max_stops_after_that_many_messages() {
    let q = Queues::new().await;
    for i in 0..5 {
        q.dead_letter(&asff(&format!("finding-{i}"), "GuardDuty"), "ticket")
            .await;
    }
    let mut opts = q.to_source();
    opts.max = Some(2);
    let summary = run(opts, q.deps()).await;
    assert_eq!(summary.replayed, 2, "{summary}");
    assert_eq!(drain(q.source.as_ref()).await.len(), 2);
    assert_eq!(q.counts(&q.dlq_url).await, (3, 0));
}

#[tokio::test]
async fn a_dry_run_leaves_the_dlq_untouched() {
    let q = Queues::new().await;
    for i in 0..4 {
        q.dead_letter(&asff(&format!("finding-{i}"), "GuardDuty"), "render")
            .await;
    }
    let mut opts = q.to_source();
    opts.dry_run = true;
    opts.filters = vec![
        filter("finding-id=finding-0"),
        filter("finding-id=finding-1"),
    ];
    let summary = run(opts, q.deps()).await;

    assert!(summary.dry_run);
    assert_eq!((summary.replayed, summary.skipped), (2, 2), "{summary}");
    assert!(summary.to_string().contains("would replay"), "{summary}");
    assert_eq!(
        q.counts(&q.dlq_url).await,
        (4, 0),
        "every message still in the DLQ and visible"
    );
    assert_eq!(q.counts(&q.source_url).await, (0, 0), "nothing sent");
    let left = drain(q.dlq.as_ref()).await;
    assert!(
        left.iter()
            .all(|m| m.attributes.get("fb-error-kind").map(String::as_str) == Some("render")),
        "attributes untouched"
    );
}

/// Records the finding ids it is given and fails the ones starting with `bad`.
fn fake_pipeline() -> (ProcessFn, Arc<Mutex<Vec<String>>>) {
    let processed = Arc::new(Mutex::new(Vec::new()));
    let seen = processed.clone();
    let process: ProcessFn = Arc::new(move |finding: Finding| {
        let seen = seen.clone();
        Box::pin(async move {
            seen.lock().expect("lock").push(finding.id.clone());
            if finding.id.starts_with("bad") {
                Err(format!("finding {}: ticket: Jira said 400", finding.id))
            } else {
                Ok(())
            }
        })
    });
    (process, processed)
}

#[tokio::test]
async fn process_deletes_what_succeeded_and_keeps_what_failed_with_the_reason() {
    let q = Queues::new().await;
    let good = asff("good-1", "GuardDuty");
    let bad = asff("bad-1", "GuardDuty");
    q.dead_letter(&good, "ticket").await;
    q.dead_letter(&bad, "ticket").await;
    q.dead_letter("{\"not\": \"a finding\"}", "decode").await;
    let (process, processed) = fake_pipeline();
    let mut deps = ReplayDeps::new(q.dlq.clone());
    deps.process = Some(process);

    let summary = run(q.options(ReplayTarget::Process), deps).await;

    assert_eq!(summary.replayed, 1, "{summary}");
    assert_eq!(summary.failed.len(), 2, "{summary}");
    let reasons: Vec<&str> = summary.failed.iter().map(|(_, r)| r.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("bad-1") && r.contains("400")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("decode:")),
        "{reasons:?}"
    );
    let mut ids = processed.lock().expect("lock").clone();
    ids.sort();
    assert_eq!(ids, ["bad-1", "good-1"]);
    assert_eq!(
        bodies(&drain(q.dlq.as_ref()).await),
        BTreeSet::from([bad, "{\"not\": \"a finding\"}".to_owned()]),
        "failed messages stay in the DLQ"
    );
    assert_eq!(
        q.counts(&q.source_url).await,
        (0, 0),
        "--process sends nothing"
    );
}

#[tokio::test]
async fn a_dry_run_of_process_runs_nothing() {
    let q = Queues::new().await;
    q.dead_letter(&asff("good-1", "GuardDuty"), "ticket").await;
    let (process, processed) = fake_pipeline();
    let mut deps = ReplayDeps::new(q.dlq.clone());
    deps.process = Some(process);
    let mut opts = q.options(ReplayTarget::Process);
    opts.dry_run = true;
    let summary = run(opts, deps).await;
    assert_eq!(summary.replayed, 1, "{summary}");
    assert!(processed.lock().expect("lock").is_empty());
    assert_eq!(q.counts(&q.dlq_url).await, (1, 0));
}

#[tokio::test]
async fn the_rate_limit_spaces_the_messages_out() {
    let q = Queues::new().await;
    for i in 0..6 {
        q.dead_letter(&asff(&format!("finding-{i}"), "GuardDuty"), "ticket")
            .await;
    }
    let mut opts = q.to_source();
    opts.rate = Some(4.0);
    let start = Instant::now();
    let summary = run(opts, q.deps()).await;
    assert_eq!(summary.replayed, 6, "{summary}");
    // 4 at once, then 2 more at 4 per second: at least half a second.
    assert!(
        start.elapsed() >= Duration::from_millis(450),
        "{:?}",
        start.elapsed()
    );
}

/// A target queue that behaves like `inner` until `limit` messages were sent; then it either
/// triggers `shutdown` (as SIGTERM would) or never answers again (a process about to be killed).
struct Interrupting {
    inner: Arc<dyn Queue>,
    sent: AtomicUsize,
    limit: usize,
    shutdown: Option<Shutdown>,
}

impl Queue for Interrupting {
    fn url(&self) -> &str {
        self.inner.url()
    }

    fn receive(
        &self,
        max_messages: usize,
        wait: Duration,
        visibility: Duration,
    ) -> BoxFuture<'_, Result<Vec<ReceivedMessage>, QueueError>> {
        self.inner.receive(max_messages, wait, visibility)
    }

    fn delete_batch<'a>(
        &'a self,
        entries: &'a [DeleteEntry],
    ) -> BoxFuture<'a, Result<Vec<DeleteFailure>, QueueError>> {
        self.inner.delete_batch(entries)
    }

    fn change_visibility<'a>(
        &'a self,
        receipt_handle: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        self.inner.change_visibility(receipt_handle, timeout)
    }

    fn send_delayed<'a>(
        &'a self,
        body: &'a str,
        attributes: &'a BTreeMap<String, String>,
        delay: Duration,
    ) -> BoxFuture<'a, Result<String, QueueError>> {
        self.inner.send_delayed(body, attributes, delay)
    }

    fn send<'a>(
        &'a self,
        body: &'a str,
        attributes: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<String, QueueError>> {
        let n = self.sent.fetch_add(1, Ordering::SeqCst);
        if n >= self.limit && self.shutdown.is_none() {
            return Box::pin(std::future::pending());
        }
        Box::pin(async move {
            let id = self.inner.send(body, attributes).await?;
            if n + 1 == self.limit
                && let Some(shutdown) = &self.shutdown
            {
                shutdown.trigger();
            }
            Ok(id)
        })
    }
}

async fn fill(q: &Queues, n: usize) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for i in 0..n {
        let body = asff(&format!("finding-{i}"), "GuardDuty");
        q.dead_letter(&body, "ticket").await;
        all.insert(body);
    }
    all
}

#[tokio::test]
async fn a_replay_stopped_by_a_signal_finishes_the_current_message_and_loses_none() {
    let q = Queues::new().await;
    let all = fill(&q, 12).await;
    let shutdown = Shutdown::new();
    let mut deps = q.deps();
    deps.target_queue = Some(Arc::new(Interrupting {
        inner: q.source.clone(),
        sent: AtomicUsize::new(0),
        limit: 4,
        shutdown: Some(shutdown.clone()),
    }));

    let summary = replay(q.to_source(), deps, shutdown)
        .await
        .expect("an interrupted replay is not an error");

    assert!(summary.interrupted, "{summary}");
    assert_eq!(summary.replayed, 4, "{summary}");
    let target = drain(q.source.as_ref()).await;
    let dlq = drain(q.dlq.as_ref()).await;
    assert_eq!(target.len(), 4);
    assert_eq!(dlq.len(), 8, "the rest is back in the DLQ, visible at once");
    let union: BTreeSet<String> = bodies(&target).union(&bodies(&dlq)).cloned().collect();
    assert_eq!(union, all);
}

#[tokio::test]
async fn a_replay_killed_midway_loses_no_message() {
    let q = Queues::new().await;
    let all = fill(&q, 12).await;
    let mut deps = q.deps();
    deps.target_queue = Some(Arc::new(Interrupting {
        inner: q.source.clone(),
        sent: AtomicUsize::new(0),
        limit: 4,
        shutdown: None,
    }));
    let mut opts = q.to_source();
    opts.visibility = Duration::from_secs(2);

    // The fifth send never answers; dropping the future is what a kill does to the run.
    let killed = with_timeout(replay(opts, deps, Shutdown::new())).await;
    assert!(killed.is_none(), "the replay was still running when killed");

    // Hidden messages come back when their visibility runs out.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let target = bodies(&drain(q.source.as_ref()).await);
    let dlq = bodies(&drain(q.dlq.as_ref()).await);
    assert_eq!(target.len(), 4, "the sends that happened");
    let union: BTreeSet<String> = target.union(&dlq).cloned().collect();
    assert_eq!(
        union, all,
        "every message is in the DLQ or the target queue"
    );
}

async fn with_timeout<F: Future>(f: F) -> Option<F::Output> {
    tokio::time::timeout(Duration::from_secs(5), f).await.ok()
}

#[tokio::test]
async fn contradictory_options_are_refused_before_anything_is_received() {
    // Nothing listens here: a refused run must not even try to receive.
    let config = support::moto::aws_config("http://127.0.0.1:9").await;
    let client = aws_sdk_sqs::Client::new(&config);
    let dlq_url = "http://127.0.0.1:9/123456789012/dlq";
    let dlq: Arc<dyn Queue> = Arc::new(SqsQueue::new(client.clone(), dlq_url));
    let with_target = || {
        let mut deps = ReplayDeps::new(dlq.clone());
        deps.target_queue = Some(dlq.clone());
        deps
    };
    let to_other = ReplayTarget::Queue("http://127.0.0.1:9/123456789012/source".into());
    let cases: Vec<(ReplayOptions, ReplayDeps, &str)> = vec![
        (
            ReplayOptions::new(dlq_url, ReplayTarget::Queue(dlq_url.into())),
            with_target(),
            "--to is the DLQ itself",
        ),
        (
            {
                let mut o = ReplayOptions::new(dlq_url, to_other.clone());
                o.filters = vec![filter("team=payments")];
                o
            },
            with_target(),
            "needs the mapping files",
        ),
        (
            ReplayOptions::new(dlq_url, ReplayTarget::Process),
            ReplayDeps::new(dlq.clone()),
            "--process needs",
        ),
        (
            {
                let mut o = ReplayOptions::new(
                    dlq_url,
                    ReplayTarget::Native {
                        destination: None,
                        max_per_second: None,
                    },
                );
                o.filters = vec![filter("error-kind=render")];
                o
            },
            {
                let mut d = ReplayDeps::new(dlq.clone());
                d.sqs = Some(client.clone());
                d
            },
            "not supported with --native",
        ),
        (
            {
                let mut o = ReplayOptions::new(dlq_url, to_other.clone());
                o.rate = Some(0.0);
                o
            },
            with_target(),
            "--rate must be a positive number",
        ),
        (
            {
                let mut o = ReplayOptions::new(dlq_url, to_other);
                o.since = Some("2026-11-29T00:00:00Z".parse().expect("time"));
                o.until = Some("2026-11-28T00:00:00Z".parse().expect("time"));
                o
            },
            with_target(),
            "--since is after --until",
        ),
    ];
    for (opts, deps, expected) in cases {
        let start = Instant::now();
        let err = replay(opts, deps, Shutdown::new())
            .await
            .expect_err(expected)
            .to_string();
        assert!(err.contains(expected), "{expected:?} not in {err:?}");
        assert!(start.elapsed() < Duration::from_secs(1), "refused at once");
    }
}

/// The real SDK client pointed at wiremock, which speaks SQS's JSON protocol here.
fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

async fn mock_queue_arn(server: &MockServer, url: &str, arn: &str) {
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("x-amz-target", "AmazonSQS.GetQueueAttributes"))
        .and(body_partial_json(
            json!({"QueueUrl": url, "AttributeNames": ["QueueArn"]}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-amz-json-1.0")
                .set_body_json(json!({"Attributes": {"QueueArn": arn}})),
        )
        .mount(server)
        .await;
}

fn native_deps(server: &MockServer, dlq_url: &str) -> ReplayDeps {
    let client = sqs_client(&server.uri());
    let mut deps = ReplayDeps::new(Arc::new(SqsQueue::new(client.clone(), dlq_url)));
    deps.sqs = Some(client);
    deps
}

#[tokio::test]
async fn native_replay_starts_an_sqs_message_move_task_from_the_dlq_arn() {
    let server = MockServer::start().await;
    let dlq_url = format!("{}/123456789012/findings-dlq", server.uri());
    let source_url = format!("{}/123456789012/findings", server.uri());
    let dlq_arn = "arn:aws:sqs:us-east-1:123456789012:findings-dlq";
    let source_arn = "arn:aws:sqs:us-east-1:123456789012:findings";
    mock_queue_arn(&server, &dlq_url, dlq_arn).await;
    mock_queue_arn(&server, &source_url, source_arn).await;
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("x-amz-target", "AmazonSQS.StartMessageMoveTask"))
        .and(header("content-type", "application/x-amz-json-1.0"))
        .and(body_partial_json(json!({
            "SourceArn": dlq_arn,
            "DestinationArn": source_arn,
            "MaxNumberOfMessagesPerSecond": 50,
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-amz-json-1.0")
                .set_body_json(json!({"TaskHandle": "task-handle-7f3a"})),
        )
        .expect(1)
        .mount(&server)
        .await;

    let opts = ReplayOptions::new(
        &dlq_url,
        ReplayTarget::Native {
            destination: Some(source_url.clone()),
            max_per_second: Some(50),
        },
    );
    let summary = run(opts, native_deps(&server, &dlq_url)).await;

    let task = summary.native_task.clone().expect("a native task");
    assert_eq!(task.source_arn, dlq_arn);
    assert_eq!(task.destination_arn.as_deref(), Some(source_arn));
    assert_eq!(task.task_handle.as_deref(), Some("task-handle-7f3a"));
    assert!(
        summary.to_string().contains("task-handle-7f3a"),
        "{summary}"
    );
}

#[tokio::test]
async fn native_replay_without_destination_sends_only_the_source_and_reports_sqs_errors() {
    let server = MockServer::start().await;
    let dlq_url = format!("{}/123456789012/findings-dlq", server.uri());
    let dlq_arn = "arn:aws:sqs:us-east-1:123456789012:findings-dlq";
    mock_queue_arn(&server, &dlq_url, dlq_arn).await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", "AmazonSQS.StartMessageMoveTask"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/x-amz-json-1.0")
                .set_body_json(json!({
                    "__type": "com.amazonaws.sqs#UnsupportedOperation",
                    "message": "Source queue must be configured as a Dead Letter Queue."
                })),
        )
        .expect(1)
        .mount(&server)
        .await;

    let opts = ReplayOptions::new(
        &dlq_url,
        ReplayTarget::Native {
            destination: None,
            max_per_second: None,
        },
    );
    let err = replay(opts, native_deps(&server, &dlq_url), Shutdown::new())
        .await
        .expect_err("SQS refused")
        .to_string();
    assert!(err.contains("Dead Letter Queue"), "{err}");
    assert!(err.contains(dlq_arn), "{err}");

    let requests = server.received_requests().await.expect("recorded");
    let start: Vec<Value> = requests
        .iter()
        .filter(|r| {
            r.headers
                .get("x-amz-target")
                .is_some_and(|v| v == "AmazonSQS.StartMessageMoveTask")
        })
        .map(|r| serde_json::from_slice(&r.body).expect("JSON body"))
        .collect();
    assert_eq!(
        start,
        [json!({"SourceArn": dlq_arn})],
        "no destination, no rate"
    );
}

#[tokio::test]
async fn a_native_dry_run_starts_nothing() {
    let server = MockServer::start().await;
    let dlq_url = format!("{}/123456789012/findings-dlq", server.uri());
    mock_queue_arn(
        &server,
        &dlq_url,
        "arn:aws:sqs:us-east-1:123456789012:findings-dlq",
    )
    .await;
    Mock::given(header("x-amz-target", "AmazonSQS.StartMessageMoveTask"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let mut opts = ReplayOptions::new(
        &dlq_url,
        ReplayTarget::Native {
            destination: Some("arn:aws:sqs:us-east-1:123456789012:findings".into()),
            max_per_second: None,
        },
    );
    opts.dry_run = true;
    let summary = run(opts, native_deps(&server, &dlq_url)).await;
    let task = summary
        .native_task
        .clone()
        .expect("the task that would start");
    assert_eq!(task.task_handle, None);
    assert_eq!(
        task.destination_arn.as_deref(),
        Some("arn:aws:sqs:us-east-1:123456789012:findings"),
        "an ARN is used as given"
    );
    assert!(summary.to_string().contains("not started"), "{summary}");
}
