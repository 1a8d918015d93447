use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::aws::sqs::{DeleteFailure, Queue, QueueError, ReceivedMessage};
use crate::finding::Severity;
use crate::marker::Marker;
use crate::testing::{
    FakePlanner, FakeTickets, MemoryStore, RecordingWriter, Route, finding, lock, permanent,
    transient,
};
use crate::ticket::{BoxFuture, TicketSystem};

/// Test decoder: one finding per line, `ID SEVERITY UPDATED_AT`; any other line is an
/// undecodable finding, a body that is not UTF-8 an undecodable message.
fn decode_lines(body: &[u8]) -> Result<crate::finding::EachFinding, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|_| DecodeError::new("", "not UTF-8"))?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts[..] {
                [id, severity, updated] => {
                    let severity = Severity::from_label(severity).ok_or_else(|| {
                        DecodeError::new(format!("[{i}].Severity"), "unknown label")
                    })?;
                    Ok(finding(id, severity, updated))
                }
                _ => Err(DecodeError::new(format!("[{i}]"), "not a finding")),
            }
        })
        .collect())
}

struct Stored {
    id: String,
    body: String,
    receive_count: u32,
    visible_at: Instant,
    handle: String,
    deleted: bool,
    attributes: BTreeMap<String, String>,
}

/// An SQS queue in memory on Tokio's clock: visibility, receive counts and receipt handles
/// behave like SQS (an old handle cannot delete a redelivered message).
#[derive(Default)]
struct FakeQueue {
    messages: Mutex<Vec<Stored>>,
    visibility_changes: Mutex<Vec<(String, Duration)>>,
    sent: Mutex<Vec<(String, BTreeMap<String, String>)>>,
    fail_delete_once: Mutex<HashSet<String>>,
    /// How many messages each receive returned, in order.
    receives: Mutex<Vec<usize>>,
    /// How many entries each delete request had, in order.
    delete_batches: Mutex<Vec<usize>>,
}

impl FakeQueue {
    fn with(bodies: &[(&str, &str)]) -> Arc<FakeQueue> {
        let q = FakeQueue::default();
        for (id, body) in bodies {
            q.push(id, body);
        }
        Arc::new(q)
    }

    fn push(&self, id: &str, body: &str) {
        lock(&self.messages).push(Stored {
            id: id.into(),
            body: body.into(),
            receive_count: 0,
            visible_at: Instant::now(),
            handle: String::new(),
            deleted: false,
            attributes: BTreeMap::new(),
        });
    }

    fn deleted(&self) -> Vec<String> {
        lock(&self.messages)
            .iter()
            .filter(|m| m.deleted)
            .map(|m| m.id.clone())
            .collect()
    }

    fn receive_count(&self, id: &str) -> u32 {
        lock(&self.messages)
            .iter()
            .find(|m| m.id == id)
            .map_or(0, |m| m.receive_count)
    }

    fn changes_for(&self, id: &str) -> Vec<Duration> {
        lock(&self.visibility_changes)
            .iter()
            .filter(|(i, _)| i == id)
            .map(|(_, d)| *d)
            .collect()
    }

    fn sent(&self) -> Vec<(String, BTreeMap<String, String>)> {
        lock(&self.sent).clone()
    }
}

impl Queue for FakeQueue {
    fn url(&self) -> &str {
        "fake://queue"
    }

    fn receive(
        &self,
        max_messages: usize,
        wait: Duration,
        visibility: Duration,
    ) -> BoxFuture<'_, Result<Vec<ReceivedMessage>, QueueError>> {
        Box::pin(async move {
            let deadline = Instant::now() + wait;
            loop {
                let now = Instant::now();
                let got: Vec<ReceivedMessage> = lock(&self.messages)
                    .iter_mut()
                    .filter(|m| !m.deleted && m.visible_at <= now)
                    .take(max_messages)
                    .map(|m| {
                        m.receive_count += 1;
                        m.visible_at = now + visibility;
                        m.handle = format!("{}#{}", m.id, m.receive_count);
                        ReceivedMessage {
                            message_id: m.id.clone(),
                            receipt_handle: m.handle.clone(),
                            body: m.body.clone(),
                            receive_count: m.receive_count,
                            attributes: m.attributes.clone(),
                        }
                    })
                    .collect();
                if !got.is_empty() || now >= deadline {
                    lock(&self.receives).push(got.len());
                    return Ok(got);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    fn delete_batch<'a>(
        &'a self,
        entries: &'a [DeleteEntry],
    ) -> BoxFuture<'a, Result<Vec<DeleteFailure>, QueueError>> {
        Box::pin(async move {
            assert!(entries.len() <= 10, "SQS rejects batches over 10");
            lock(&self.delete_batches).push(entries.len());
            let mut failures = Vec::new();
            let mut messages = lock(&self.messages);
            for entry in entries {
                let Some(m) = messages
                    .iter_mut()
                    .find(|m| m.handle == entry.receipt_handle)
                else {
                    failures.push(DeleteFailure {
                        id: entry.id.clone(),
                        code: "ReceiptHandleIsInvalid".into(),
                        message: "stale handle".into(),
                        sender_fault: true,
                    });
                    continue;
                };
                if lock(&self.fail_delete_once).remove(&m.id) {
                    failures.push(DeleteFailure {
                        id: entry.id.clone(),
                        code: "InternalError".into(),
                        message: "try again".into(),
                        sender_fault: false,
                    });
                    continue;
                }
                m.deleted = true;
            }
            Ok(failures)
        })
    }

    fn change_visibility<'a>(
        &'a self,
        receipt_handle: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            let mut messages = lock(&self.messages);
            let m = messages
                .iter_mut()
                .find(|m| m.handle == receipt_handle)
                .ok_or_else(|| QueueError::Permanent {
                    operation: "ChangeMessageVisibility",
                    message: "stale handle".into(),
                })?;
            m.visible_at = Instant::now() + timeout;
            lock(&self.visibility_changes).push((m.id.clone(), timeout));
            Ok(())
        })
    }

    fn send<'a>(
        &'a self,
        body: &'a str,
        attributes: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<String, QueueError>> {
        Box::pin(async move {
            let mut sent = lock(&self.sent);
            sent.push((body.to_owned(), attributes.clone()));
            Ok(format!("dlq-{}", sent.len()))
        })
    }

    /// A delayed send is a new message on this queue (its own id, receive count 0, visible
    /// after the delay), as SQS makes it.
    fn send_delayed<'a>(
        &'a self,
        body: &'a str,
        attributes: &'a BTreeMap<String, String>,
        delay: Duration,
    ) -> BoxFuture<'a, Result<String, QueueError>> {
        Box::pin(async move {
            let id = {
                let mut sent = lock(&self.sent);
                sent.push((body.to_owned(), attributes.clone()));
                format!("sent-{}", sent.len())
            };
            lock(&self.messages).push(Stored {
                id: id.clone(),
                body: body.into(),
                receive_count: 0,
                visible_at: Instant::now() + delay,
                handle: String::new(),
                deleted: false,
                attributes: attributes.clone(),
            });
            Ok(id)
        })
    }
}

/// Counts creates running at the same time; with `serialise` set, creates run one at a time
/// (a ticket system's rate limit, in short), so tasks end one at a time.
struct CountingTickets {
    inner: FakeTickets,
    running: AtomicUsize,
    peak: AtomicUsize,
    serialise: AtomicBool,
    turn: tokio::sync::Mutex<()>,
}

impl TicketSystem for CountingTickets {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn find_by_marker<'a>(
        &'a self,
        marker: &'a Marker,
        table: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<crate::ticket::FoundTicket>, crate::ticket::TicketError>> {
        self.inner.find_by_marker(marker, table)
    }
    fn settle_time(&self) -> Duration {
        self.inner.settle_time()
    }
    fn probe(&self) -> BoxFuture<'_, Result<(), crate::ticket::TicketError>> {
        self.inner.probe()
    }
    fn probe_target<'a>(
        &'a self,
        target: &'a str,
    ) -> BoxFuture<'a, Result<(), crate::ticket::TicketError>> {
        self.inner.probe_target(target)
    }
    fn target_of(&self, payload: &serde_json::Value, table: Option<&str>) -> Option<String> {
        self.inner.target_of(payload, table)
    }
    fn has_comment<'a>(
        &'a self,
        ticket: &'a crate::ticket::TicketRef,
        needle: &'a str,
    ) -> BoxFuture<'a, Result<bool, crate::ticket::TicketError>> {
        self.inner.has_comment(ticket, needle)
    }
    fn create<'a>(
        &'a self,
        payload: &'a serde_json::Value,
        table: Option<&'a str>,
    ) -> BoxFuture<'a, Result<crate::ticket::TicketRef, crate::ticket::TicketError>> {
        Box::pin(async move {
            let _turn = match self.serialise.load(Ordering::SeqCst) {
                true => Some(self.turn.lock().await),
                false => None,
            };
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            let result = self.inner.create(payload, table).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            result
        })
    }
    fn update_fields<'a>(
        &'a self,
        ticket: &'a crate::ticket::TicketRef,
        update: &'a crate::ticket::FieldUpdate,
    ) -> BoxFuture<'a, Result<(), crate::ticket::TicketError>> {
        self.inner.update_fields(ticket, update)
    }
    fn comment<'a>(
        &'a self,
        ticket: &'a crate::ticket::TicketRef,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), crate::ticket::TicketError>> {
        self.inner.comment(ticket, text)
    }
    fn transition<'a>(
        &'a self,
        ticket: &'a crate::ticket::TicketRef,
        to: &'a crate::ticket::TargetStatus,
        note: &'a str,
    ) -> BoxFuture<'a, Result<(), crate::ticket::TicketError>> {
        self.inner.transition(ticket, to, note)
    }
    fn reopen<'a>(
        &'a self,
        ticket: &'a crate::ticket::TicketRef,
        note: &'a str,
    ) -> BoxFuture<'a, Result<(), crate::ticket::TicketError>> {
        self.inner.reopen(ticket, note)
    }
    fn status<'a>(
        &'a self,
        ticket: &'a crate::ticket::TicketRef,
    ) -> BoxFuture<'a, Result<crate::ticket::TicketStatus, crate::ticket::TicketError>> {
        self.inner.status(ticket)
    }
    fn updated_since<'a>(
        &'a self,
        since: &'a str,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<crate::ticket::UpdatedPage, crate::ticket::TicketError>> {
        self.inner.updated_since(since, cursor)
    }

    // ---- reconcile (issue 16) ----

    fn attach_provenance(
        &self,
        payload: &serde_json::Value,
        provenance: &crate::ticket::provenance::Provenance,
    ) -> serde_json::Value {
        self.inner.attach_provenance(payload, provenance)
    }
    fn list_bridge_tickets<'a>(
        &'a self,
        tables: &'a [String],
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<crate::ticket::listing::ListedPage, crate::ticket::TicketError>> {
        self.inner.list_bridge_tickets(tables, cursor)
    }
    fn provenance<'a>(
        &'a self,
        ticket: &'a crate::ticket::TicketRef,
    ) -> BoxFuture<'a, Result<crate::ticket::provenance::ProvenanceRead, crate::ticket::TicketError>>
    {
        self.inner.provenance(ticket)
    }
    fn presence<'a>(
        &'a self,
        ticket: &'a crate::ticket::TicketRef,
    ) -> BoxFuture<'a, Result<crate::ticket::listing::Presence, crate::ticket::TicketError>> {
        self.inner.presence(ticket)
    }
}

struct Setup {
    queue: Arc<FakeQueue>,
    dlq: Arc<FakeQueue>,
    store: Arc<MemoryStore>,
    tickets: Arc<CountingTickets>,
    planner: Arc<FakePlanner>,
    shutdown: Shutdown,
    health: Arc<crate::pipeline::health::Health>,
}

fn setup(messages: &[(&str, &str)], create_delay: Duration) -> Setup {
    let mut inner = FakeTickets::new("jira");
    inner.create_delay = create_delay;
    Setup {
        queue: FakeQueue::with(messages),
        dlq: Arc::new(FakeQueue::default()),
        store: Arc::new(MemoryStore::default()),
        tickets: Arc::new(CountingTickets {
            inner,
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            serialise: AtomicBool::new(false),
            turn: tokio::sync::Mutex::new(()),
        }),
        planner: Arc::new(FakePlanner::new(vec![Route::new(
            "payments",
            &[Severity::High, Severity::Critical],
        )])),
        shutdown: Shutdown::new(),
        health: Arc::new(crate::pipeline::health::Health::new()),
    }
}

fn config() -> WorkerConfig {
    let mut config = WorkerConfig::new("fake://queue", "test-host:1");
    config.concurrency = 4;
    config.visibility_timeout = Duration::from_secs(30);
    config
}

impl Setup {
    fn start(
        &self,
        config: WorkerConfig,
        with_dlq: bool,
    ) -> tokio::task::JoinHandle<anyhow::Result<RunSummary>> {
        let mut tickets: HashMap<String, Arc<dyn TicketSystem>> = HashMap::new();
        tickets.insert("jira".into(), self.tickets.clone());
        let lifecycle = Lifecycle::new(
            self.store.clone(),
            tickets,
            Arc::new(RecordingWriter::new()),
            self.planner.clone(),
            "ignored",
        )
        .with_health(self.health.clone());
        let dlq = with_dlq.then(|| self.dlq.clone() as Arc<dyn Queue>);
        let worker = Worker::new(config, self.queue.clone(), dlq, lifecycle, decode_lines);
        tokio::spawn(worker.run(self.shutdown.clone()))
    }

    async fn stop(&self, run: tokio::task::JoinHandle<anyhow::Result<RunSummary>>) -> RunSummary {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .expect("run returns after shutdown")
            .expect("no panic")
            .expect("run succeeded")
    }
}

const T: &str = "2026-11-28T10:00:00Z";

#[tokio::test(start_paused = true)]
async fn a_message_is_deleted_after_its_ticket_is_recorded() {
    let s = setup(
        &[("m1", &format!("f-1 HIGH {T}"))],
        Duration::from_millis(5),
    );
    let run = s.start(config(), true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(s.queue.deleted(), vec!["m1".to_owned()]);
    assert!(s.store.record(&Marker::new("payments", "f-1")).is_some());
    let summary = s.stop(run).await;
    assert_eq!(summary.received, 1);
    assert_eq!(summary.deleted, 1);
    assert_eq!(summary.findings, 1);
    assert_eq!(s.tickets.inner.creates(), 1);
}

#[tokio::test(start_paused = true)]
async fn unrouted_findings_are_acknowledged_and_counted() {
    let s = setup(&[("m1", &format!("f-1 LOW {T}"))], Duration::from_millis(5));
    let run = s.start(config(), true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let summary = s.stop(run).await;
    assert_eq!(summary.unrouted, 1);
    assert_eq!(summary.deleted, 1);
    assert!(s.dlq.sent().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_undecodable_message_goes_to_the_dlq_with_its_reason_then_is_deleted() {
    let s = setup(&[("m1", "this is not a finding")], Duration::from_millis(5));
    let run = s.start(config(), true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sent = s.dlq.sent();
    assert_eq!(sent.len(), 1);
    let (body, attributes) = &sent[0];
    assert_eq!(
        body, "this is not a finding",
        "the original body, untouched"
    );
    assert_eq!(attributes["fb-error-kind"], "decode");
    assert!(
        attributes["fb-error"].contains("not a finding"),
        "{attributes:?}"
    );
    assert_eq!(attributes["fb-original-message-id"], "m1");
    assert_eq!(attributes["fb-receive-count"], "1");
    assert!(
        chrono::DateTime::parse_from_rfc3339(&attributes["fb-first-failure"]).is_ok(),
        "{attributes:?}"
    );
    assert_eq!(s.queue.deleted(), vec!["m1".to_owned()]);
    let summary = s.stop(run).await;
    assert_eq!(summary.dead_lettered, 1);
}

#[tokio::test(start_paused = true)]
async fn a_template_failure_is_dead_lettered_as_render() {
    let s = setup(
        &[("m1", &format!("f-1 HIGH {T}"))],
        Duration::from_millis(5),
    );
    *lock(&s.planner.error) =
        Some("payments.toml:7: summary: undefined value `finding.nope`".into());
    let run = s.start(config(), true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sent = s.dlq.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1["fb-error-kind"], "render");
    assert!(sent[0].1["fb-error"].contains("payments.toml:7"));
    s.stop(run).await;
}

#[tokio::test(start_paused = true)]
async fn a_payload_the_ticket_system_rejects_is_dead_lettered_as_ticket() {
    let s = setup(
        &[("m1", &format!("f-1 HIGH {T}"))],
        Duration::from_millis(5),
    );
    s.tickets.inner.fail("create", permanent("create"));
    let run = s.start(config(), true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sent = s.dlq.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1["fb-error-kind"], "ticket");
    assert!(
        sent[0].1["fb-error"].contains("priority"),
        "{:?}",
        sent[0].1
    );
    assert_eq!(s.queue.deleted(), vec!["m1".to_owned()]);
    assert!(!s.store.is_claimed(&Marker::new("payments", "f-1")));
    s.stop(run).await;
}

#[test]
fn error_attribute_is_cut_on_a_character_boundary() {
    let text = "é".repeat(600); // 1200 bytes
    let cut = cut_bytes(&text, ERROR_ATTRIBUTE_LIMIT);
    assert!(cut.len() <= ERROR_ATTRIBUTE_LIMIT && cut.len() >= ERROR_ATTRIBUTE_LIMIT - 1);
    assert!(cut.chars().all(|c| c == 'é'));
    assert_eq!(cut_bytes("short", ERROR_ATTRIBUTE_LIMIT), "short");
}

#[tokio::test(start_paused = true)]
async fn without_a_dlq_a_permanent_failure_is_left_for_the_redrive_policy() {
    let s = setup(&[("m1", "garbage")], Duration::from_millis(5));
    let run = s.start(config(), false);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(s.queue.deleted().is_empty());
    let summary = s.stop(run).await;
    assert_eq!(summary.left_for_redrive, 1);
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_leaves_the_message_with_a_growing_backoff() {
    let s = setup(
        &[("m1", &format!("f-1 HIGH {T}"))],
        Duration::from_millis(5),
    );
    s.tickets.inner.fail("create", transient("create"));
    let run = s.start(config(), true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(s.queue.deleted().is_empty());
    let first = s.queue.changes_for("m1");
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        (24..=30).contains(&first[0].as_secs()),
        "receive 1: 30 s jittered, got {:?}",
        first[0]
    );
    // It comes back after the backoff and fails again: the delay doubles.
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(s.queue.receive_count("m1"), 2);
    let second = s.queue.changes_for("m1");
    assert!(
        (48..=60).contains(&second[1].as_secs()),
        "receive 2: 60 s jittered, got {:?}",
        second[1]
    );
    assert!(
        s.dlq.sent().is_empty(),
        "transient failures are not dead-lettered"
    );
    let summary = s.stop(run).await;
    assert_eq!(summary.retried, 2);
    assert_eq!(summary.deleted, 0);
}

#[test]
fn busy_visibility_is_short_and_capped_at_the_lease() {
    let lease = Duration::from_secs(60);
    assert_eq!(busy_visibility(1, lease, 1.0), Duration::from_secs(5));
    assert_eq!(busy_visibility(3, lease, 1.0), Duration::from_secs(15));
    assert_eq!(busy_visibility(50, lease, 1.0), lease);
    assert_eq!(busy_visibility(1, lease, 0.0), Duration::from_secs(4));
    assert!(busy_visibility(1, lease, 1.0) < retry_visibility(1, 1.0));
}

#[test]
fn retry_visibility_grows_and_is_capped() {
    assert_eq!(retry_visibility(1, 1.0), Duration::from_secs(30));
    assert_eq!(retry_visibility(2, 1.0), Duration::from_secs(60));
    assert_eq!(retry_visibility(4, 1.0), Duration::from_secs(240));
    assert_eq!(retry_visibility(9, 1.0), Duration::from_secs(900));
    assert_eq!(retry_visibility(1000, 1.0), Duration::from_secs(900));
    assert_eq!(retry_visibility(1, 0.0), Duration::from_secs(24));
    assert_eq!(retry_visibility(0, 1.0), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn slow_work_keeps_its_message_hidden_with_a_heartbeat() {
    // Creating takes 70 s, more than twice the 30 s visibility timeout.
    let s = setup(&[("m1", &format!("f-1 HIGH {T}"))], Duration::from_secs(70));
    let run = s.start(config(), true);
    tokio::time::sleep(Duration::from_secs(80)).await;
    let changes = s.queue.changes_for("m1");
    assert!(changes.len() >= 6, "extended every 10 s: {changes:?}");
    assert!(changes.iter().all(|d| *d == Duration::from_secs(30)));
    assert_eq!(s.queue.receive_count("m1"), 1, "never became visible again");
    assert_eq!(s.tickets.inner.creates(), 1);
    assert_eq!(s.queue.deleted(), vec!["m1".to_owned()]);
    s.stop(run).await;
}

#[tokio::test(start_paused = true)]
async fn no_more_messages_are_worked_on_than_the_concurrency_allows() {
    let bodies: Vec<(String, String)> = (0..9)
        .map(|i| (format!("m{i}"), format!("f-{i} HIGH {T}")))
        .collect();
    let refs: Vec<(&str, &str)> = bodies
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let s = setup(&refs, Duration::from_secs(5));
    let mut c = config();
    c.concurrency = 2;
    let run = s.start(c, true);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(s.queue.deleted().len(), 9);
    assert_eq!(s.tickets.peak.load(Ordering::SeqCst), 2);
    s.stop(run).await;
}

/// A worker with concurrency 16 started on `count` messages, one finding each, whose creates take
/// `create_delay` — one at a time with `serialise` (its tasks then end one by one).
fn start_busy(
    count: usize,
    create_delay: Duration,
    serialise: bool,
) -> (Setup, tokio::task::JoinHandle<anyhow::Result<RunSummary>>) {
    let bodies: Vec<(String, String)> = (0..count)
        .map(|i| (format!("m{i}"), format!("f-{i} HIGH {T}")))
        .collect();
    let refs: Vec<(&str, &str)> = bodies
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let s = setup(&refs, create_delay);
    s.tickets.serialise.store(serialise, Ordering::SeqCst);
    let mut c = config();
    c.concurrency = 16;
    let run = s.start(c, true);
    (s, run)
}

/// Forty messages whose creates run one at a time, 100 ms each (the worker's tasks end one every
/// 100 ms), worked through to the end.
async fn forty_ending_one_at_a_time() -> (Setup, tokio::task::JoinHandle<anyhow::Result<RunSummary>>)
{
    let (s, run) = start_busy(40, Duration::from_millis(100), true);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(s.queue.deleted().len(), 40);
    (s, run)
}

#[tokio::test(start_paused = true)]
async fn a_busy_worker_gathers_room_for_several_messages_before_it_receives_again() {
    let (s, run) = forty_ending_one_at_a_time().await;
    assert_eq!(s.tickets.inner.creates(), 40);
    let receives: Vec<usize> = lock(&s.queue.receives)
        .iter()
        .copied()
        .filter(|n| *n > 0)
        .collect();
    // 10 + 6 at the start, then room for ~3 gathered each time (2.5 tasks end per 250 ms):
    // about ten receives in all. Receiving for every task that ends takes 26.
    assert!(
        receives.len() <= 14,
        "a receive per ended task: {} receives bringing {receives:?}",
        receives.len()
    );
    s.stop(run).await;
}

#[tokio::test(start_paused = true)]
async fn messages_that_finish_one_at_a_time_share_delete_requests() {
    let (s, run) = forty_ending_one_at_a_time().await;
    let batches = lock(&s.queue.delete_batches).clone();
    // One task ends every 100 ms and a delete waits 200 ms for others: two or three a request.
    // Deleting each at once takes 40.
    assert!(
        batches.len() <= 24,
        "a delete per message: {} requests of {batches:?}",
        batches.len()
    );
    s.stop(run).await;
}

#[tokio::test(start_paused = true)]
async fn a_busy_worker_still_takes_a_new_message_within_the_gather_time() {
    // 15 of 16 slots busy for a minute: room for 4 does not come, the one free slot must serve.
    let (s, run) = start_busy(15, Duration::from_secs(60), false);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        s.queue.deleted().is_empty(),
        "the fifteen are still at work"
    );
    s.queue.push("late", &format!("f-late HIGH {T}"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        s.queue.receive_count("late"),
        1,
        "received within the gather time and a poll"
    );
    s.stop(run).await;
}

#[tokio::test(start_paused = true)]
async fn two_messages_about_one_finding_are_worked_on_one_after_the_other() {
    let s = setup(
        &[
            ("m1", &format!("f-1 HIGH {T}")),
            ("m2", &format!("f-1 HIGH {T}")),
        ],
        Duration::from_secs(2),
    );
    let run = s.start(config(), true);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let summary = s.stop(run).await;
    assert_eq!(summary.retried, 0, "no busy bounce between our own tasks");
    assert_eq!(summary.deleted, 2);
    assert_eq!(s.tickets.inner.creates(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_delete_is_retried_once() {
    let s = setup(
        &[("m1", &format!("f-1 HIGH {T}"))],
        Duration::from_millis(5),
    );
    lock(&s.queue.fail_delete_once).insert("m1".into());
    let run = s.start(config(), true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(s.queue.deleted(), vec!["m1".to_owned()]);
    let summary = s.stop(run).await;
    assert_eq!(summary.deleted, 1);
    assert_eq!(summary.delete_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_in_flight_work_finish_within_the_grace_period() {
    let s = setup(&[("m1", &format!("f-1 HIGH {T}"))], Duration::from_secs(10));
    let run = s.start(config(), true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.queue.receive_count("m1"), 1);
    let started = Instant::now();
    let summary = s.stop(run).await;
    assert!(started.elapsed() < Duration::from_secs(25));
    assert_eq!(summary.deleted, 1, "finished work is acknowledged");
    assert_eq!(summary.released, 0);
    assert_eq!(s.tickets.inner.creates(), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_hands_unfinished_work_back_without_deleting_it() {
    // Creating takes longer than the 25 s grace period.
    let s = setup(
        &[("m1", &format!("f-1 HIGH {T}"))],
        Duration::from_secs(100),
    );
    let run = s.start(config(), true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let summary = s.stop(run).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(25) && waited < Duration::from_secs(30),
        "returned after the grace period: {waited:?}"
    );
    assert!(
        s.queue.deleted().is_empty(),
        "nothing unfinished is deleted"
    );
    assert_eq!(summary.released, 1);
    assert_eq!(
        s.queue.changes_for("m1").last(),
        Some(&Duration::ZERO),
        "visible again at once"
    );
    assert!(
        !s.store.is_claimed(&Marker::new("payments", "f-1")),
        "claim released for the next worker"
    );
    assert!(s.store.record(&Marker::new("payments", "f-1")).is_none());
}

/// Cause 7 of the exactly-once issue: outcomes are per route. While one route can still
/// succeed, another route's permanent failure does not dead-letter the message; once the
/// transient route is done, the message goes to the DLQ naming only the failed team.
#[tokio::test(start_paused = true)]
async fn a_transient_route_keeps_the_message_and_only_the_failed_team_is_dead_lettered() {
    let mut s = setup(
        &[("m1", &format!("f-1 HIGH {T}"))],
        Duration::from_millis(5),
    );
    s.planner = Arc::new(FakePlanner::new(vec![
        Route::new("payments", &[Severity::High]),
        Route::new("platform", &[Severity::High]),
    ]));
    lock(&s.planner.team_errors).insert("platform", "summary: undefined value".to_owned());
    s.tickets.inner.fail("create", transient("create"));
    let run = s.start(config(), true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        s.dlq.sent().is_empty(),
        "nothing dead-lettered while payments can still succeed"
    );
    assert!(s.queue.deleted().is_empty());
    assert!(
        !s.queue.changes_for("m1").is_empty(),
        "put back for a retry"
    );

    lock(&s.tickets.inner.failures).clear();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(s.store.record(&Marker::new("payments", "f-1")).is_some());
    let sent = s.dlq.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1["fb-teams"], "platform");
    assert_eq!(sent[0].1["fb-error-kind"], "render");
    assert!(
        sent[0].1["fb-error"].contains("platform"),
        "{:?}",
        sent[0].1
    );
    assert_eq!(s.queue.deleted(), vec!["m1".to_owned()]);
    s.stop(run).await;
}

/// One undecodable finding in an event does not fail its siblings.
#[tokio::test(start_paused = true)]
async fn one_bad_finding_in_a_message_does_not_stop_the_others() {
    let s = setup(
        &[(
            "m1",
            &format!("f-1 HIGH {T}\nnot a finding\nf-2 CRITICAL {T}"),
        )],
        Duration::from_millis(5),
    );
    let run = s.start(config(), true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(s.store.record(&Marker::new("payments", "f-1")).is_some());
    assert!(s.store.record(&Marker::new("payments", "f-2")).is_some());
    let sent = s.dlq.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1["fb-error-kind"], "decode");
    assert!(sent[0].1["fb-error"].contains("[1]"), "{:?}", sent[0].1);
    assert!(!sent[0].1.contains_key("fb-teams"));
    s.stop(run).await;
}

/// Cause 9: a long poll in flight when SIGTERM arrives may already hold messages. They are
/// handed back at once instead of staying invisible for the whole visibility timeout.
#[tokio::test(start_paused = true)]
async fn messages_a_receive_gets_during_shutdown_are_handed_back_at_once() {
    let s = setup(&[], Duration::from_millis(5));
    let run = s.start(config(), true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // SIGTERM while the worker long-polls an empty queue; a message arrives for that poll.
    s.shutdown.trigger();
    s.queue.push("m1", &format!("f-1 HIGH {T}"));
    let summary = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("run returns")
        .expect("no panic")
        .expect("run succeeded");
    assert_eq!(summary.released, 1, "{summary:?}");
    assert_eq!(s.queue.changes_for("m1"), vec![Duration::ZERO]);
    assert_eq!(s.tickets.inner.creates(), 0, "not worked on after shutdown");
}

/// A create whose answer was lost is not retried until its settle time, and the message comes
/// back when the search can be trusted — not after the ordinary transient backoff.
#[tokio::test(start_paused = true)]
async fn a_settling_create_comes_back_after_its_settle_time_and_is_recovered() {
    let s = setup(
        &[("m1", &format!("f-1 HIGH {T}"))],
        Duration::from_millis(5),
    );
    *lock(&s.tickets.inner.settle) = Duration::from_secs(40);
    *lock(&s.tickets.inner.ambiguous) = 1;
    let run = s.start(config(), true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let changes = s.queue.changes_for("m1");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        changes[0] >= Duration::from_secs(30) && changes[0] <= Duration::from_secs(45),
        "back when the create has settled: {changes:?}"
    );
    assert!(s.dlq.sent().is_empty());
    s.stop(run).await;
}

/// Issue 18: a credential that is refused (expired API token) for longer than the redrive
/// policy would tolerate dead-letters nothing. Messages are parked (re-sent with a delay, so
/// their receive count starts afresh), the connection is probed, and when the credential works
/// again every finding gets its ticket exactly once.
#[tokio::test(start_paused = true)]
async fn a_refused_credential_parks_messages_and_every_ticket_comes_once_it_works_again() {
    use crate::ticket::Blame;
    let bodies: Vec<(String, String)> = (1..=5)
        .map(|i| (format!("m{i}"), format!("f-{i} HIGH {T}")))
        .collect();
    let refs: Vec<(&str, &str)> = bodies
        .iter()
        .map(|(id, body)| (id.as_str(), body.as_str()))
        .collect();
    let s = setup(&refs, Duration::from_millis(5));
    s.tickets.inner.fail(
        "create",
        crate::testing::unusable("create", Blame::Connection),
    );
    s.tickets.inner.fail(
        "probe",
        crate::testing::unusable("probe", Blame::Connection),
    );
    let mut tickets: HashMap<String, Arc<dyn TicketSystem>> = HashMap::new();
    tickets.insert("jira".into(), s.tickets.clone());
    let prober = tokio::spawn(crate::pipeline::health::run_prober(
        s.health.clone(),
        tickets,
        s.store.clone(),
        s.shutdown.clone(),
    ));
    let run = s.start(config(), true);

    // A 30-minute outage: far longer than any redrive count × visibility timeout.
    tokio::time::sleep(Duration::from_secs(30 * 60)).await;
    assert!(
        s.dlq.sent().is_empty(),
        "nothing dead-lettered: {:?}",
        s.dlq.sent()
    );
    assert!(
        s.health
            .paused(&crate::pipeline::health::Subject::Connection("jira".into()))
            .is_some()
    );
    assert!(
        s.tickets.inner.creates() <= 4,
        "paused: findings are not tried one by one ({} creates)",
        s.tickets.inner.creates()
    );
    let highest_receive_count = lock(&s.queue.messages)
        .iter()
        .map(|m| m.receive_count)
        .max()
        .unwrap_or(0);
    assert!(
        highest_receive_count <= 1,
        "parked copies start afresh: {highest_receive_count}"
    );

    // The token is renewed: the probe succeeds, work resumes, each finding gets one ticket.
    lock(&s.tickets.inner.failures).clear();
    tokio::time::sleep(Duration::from_secs(20 * 60)).await;
    assert!(s.health.is_empty(), "resumed");
    for i in 1..=5 {
        assert!(
            s.store
                .record(&Marker::new("payments", &format!("f-{i}")))
                .is_some(),
            "f-{i} has its ticket"
        );
    }
    assert_eq!(s.tickets.inner.tickets().len(), 5);
    assert!(s.dlq.sent().is_empty());
    let summary = s.stop(run).await;
    assert!(summary.parked >= 5, "{summary:?}");
    prober.await.expect("prober stops with the worker");
}

/// Another worker holds the finding's claim for ten minutes (its holder is slow, or died and its
/// lease has to run out). Waiting is not failing: the message must not spend the redrive
/// policy's receive count on it. After [`WAITS_BEFORE_PARKING`] receives it is parked (a fresh
/// copy, receive count 0); once the claim is gone the finding gets its one ticket.
#[tokio::test(start_paused = true)]
async fn a_message_kept_busy_by_another_workers_claim_is_parked_before_the_redrive_count_runs_out()
{
    use super::disposition::WAITS_BEFORE_PARKING;
    use crate::store::Store;
    let s = setup(
        &[("m1", &format!("f-1 HIGH {T}"))],
        Duration::from_millis(5),
    );
    let marker = Marker::new("payments", "f-1");
    let claim = s
        .store
        .claim(&marker, "another-worker:1", Duration::from_secs(600))
        .await
        .expect("store");
    assert!(matches!(claim, crate::store::Claim::Acquired(_)));
    let run = s.start(config(), true);

    let mut highest = 0;
    for _ in 0..(9 * 60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = lock(&s.queue.messages)
            .iter()
            .map(|m| m.receive_count)
            .max()
            .unwrap_or(0);
        highest = highest.max(now);
    }
    assert!(
        highest <= WAITS_BEFORE_PARKING,
        "receives spent on waiting: {highest}"
    );
    assert_eq!(
        s.tickets.inner.creates(),
        0,
        "the claim is another worker's"
    );

    // The foreign lease runs out at 10 minutes: the next copy makes the ticket.
    tokio::time::sleep(Duration::from_secs(5 * 60)).await;
    assert_eq!(s.tickets.inner.creates(), 1);
    assert!(s.dlq.sent().is_empty(), "{:?}", s.dlq.sent());
    let summary = s.stop(run).await;
    assert!(summary.parked >= 1, "{summary:?}");
}
