//! The SQS worker: receive, decode, run the lifecycle, acknowledge.
//!
//! Guarantees: a message is deleted only after the ticket work of all its findings is recorded;
//! messages that can never succeed go to the DLQ with the reason attached, instead of being
//! retried until the redrive policy gives up; transient failures come back later with a backoff
//! that grows with the receive count; on shutdown nothing in flight is lost — it either finishes
//! within the grace period or is handed back to the queue at once.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::aws::sqs::{DeleteEntry, MAX_BATCH, Queue, QueueError, ReceivedMessage, SqsQueue};
use crate::finding::{DecodeError, EachFinding};
use crate::pipeline::lifecycle::{Lifecycle, LifecycleError};
use crate::runtime::shutdown::Shutdown;
use crate::runtime::telemetry;

/// The decoder (`finding::decode_each`), injected so tests and tools can supply their own. The
/// outer error fails the whole message; an inner one only its finding.
pub type DecodeFn = fn(&[u8]) -> Result<EachFinding, DecodeError>;

/// SQS limits a message attribute value only by message size; 1 KiB keeps the DLQ readable.
pub const ERROR_ATTRIBUTE_LIMIT: usize = 1024;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub queue_url: String,
    /// Where permanent failures go; `None` leaves them to the queue's redrive policy.
    pub dlq_url: Option<String>,
    /// Messages worked on at once.
    pub concurrency: usize,
    /// Long-poll wait (SQS allows at most 20 s).
    pub wait_time: Duration,
    /// How long a received message stays hidden; the heartbeat extends it by this much every
    /// third of it while work runs.
    pub visibility_timeout: Duration,
    /// How long in-flight work may run after a shutdown request (ECS's stop timeout is 30 s).
    pub grace: Duration,
    /// Store claim lease per (finding, team).
    pub lease: Duration,
    /// Names this process in store claims (`hostname:pid`).
    pub owner_id: String,
    /// Stop after this many consecutive empty receives with nothing in flight (`run --drain`:
    /// demos, cron-style runs, load tests). `None`: run until shutdown.
    pub exit_when_idle: Option<u32>,
}

impl WorkerConfig {
    pub fn new(queue_url: impl Into<String>, owner_id: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            queue_url: queue_url.into(),
            dlq_url: None,
            concurrency: 16,
            wait_time: Duration::from_secs(20),
            visibility_timeout: Duration::from_secs(60),
            grace: Duration::from_secs(25),
            lease: crate::pipeline::lifecycle::DEFAULT_LEASE,
            owner_id: owner_id.into(),
            exit_when_idle: None,
        }
    }
}

/// What a run did, for the exit log and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub received: u64,
    /// Messages deleted after their work was recorded (including dead-lettered ones).
    pub deleted: u64,
    pub dead_lettered: u64,
    /// Permanent failures left for the redrive policy because no DLQ is configured.
    pub left_for_redrive: u64,
    /// Transient failures: left on the queue with a backoff.
    pub retried: u64,
    /// In-flight messages handed back to the queue at shutdown.
    pub released: u64,
    pub findings: u64,
    pub unrouted: u64,
    /// Deletes that still failed after one retry (the message will be redelivered and be a no-op).
    pub delete_failures: u64,
    /// Messages re-sent with a delay because a connection or rule they need was paused.
    pub parked: u64,
}

/// Visibility for a transiently failed message: 30 s × 2^(n−1), capped at 15 min, then scaled
/// into [80 %, 100 %] by `jitter` (0–1) so a burst of failures does not come back as a burst.
pub fn retry_visibility(receive_count: u32, jitter: f64) -> Duration {
    let exponent = receive_count.saturating_sub(1).min(10);
    let base = (30u64 << exponent).min(900) as f64;
    let jitter = jitter.clamp(0.0, 1.0);
    Duration::from_secs_f64(base * (0.8 + 0.2 * jitter)).max(Duration::from_secs(1))
}

/// Visibility for a message whose finding another worker is busy with: 5 s × n, capped at the
/// claim lease (by then a dead holder's lease has run out), scaled into [80 %, 100 %] by `jitter`.
/// Much shorter than [`retry_visibility`]: a duplicate delivery racing the first one should not
/// wait half a minute, and a SIGKILLed worker's findings come back as soon as its leases expire.
pub fn busy_visibility(receive_count: u32, lease: Duration, jitter: f64) -> Duration {
    let base = (5.0 * f64::from(receive_count.max(1))).min(lease.as_secs_f64().max(1.0));
    Duration::from_secs_f64(base * (0.8 + 0.2 * jitter.clamp(0.0, 1.0))).max(Duration::from_secs(1))
}

/// A value in [0, 1) that differs per message and per call; no need for a crypto RNG here.
fn jitter(seed: &str) -> f64 {
    let hash = std::collections::hash_map::RandomState::new().hash_one(seed);
    (hash % 10_000) as f64 / 10_000.0
}

/// Cuts `text` to at most `limit` bytes on a character boundary.
fn cut_bytes(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Serializes work on one finding id within this process: two messages about the same finding
/// would otherwise race for its claim and one would be bounced back as busy.
#[derive(Default)]
struct FindingLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

struct FindingGuard<'a> {
    locks: &'a FindingLocks,
    key: String,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl FindingLocks {
    async fn lock(&self, key: &str) -> FindingGuard<'_> {
        let mutex = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(key.to_owned()).or_default().clone()
        };
        FindingGuard {
            locks: self,
            key: key.to_owned(),
            _guard: mutex.lock_owned().await,
        }
    }
}

impl Drop for FindingGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.locks.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this guard hold it: nobody waits, forget the key.
        if locks
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) <= 2)
        {
            locks.remove(&self.key);
        }
    }
}

/// A message being worked on. The receipt handle is replaced when the same message is delivered
/// again meanwhile (SQS wants the newest one).
struct InFlight {
    receipt_handle: String,
    /// Work done and recorded; only the delete is pending.
    finished: bool,
}

enum Disposition {
    /// All findings recorded (or nothing to do): delete.
    Done,
    /// Come back later. `busy`: every failure was another worker's claim (usually over in
    /// moments, or when a dead worker's lease runs out) or a create settling; `retry_in`: the
    /// longest wait a settling create asked for.
    Transient {
        error: String,
        busy: bool,
        retry_in: Option<Duration>,
    },
    /// A connection or rule it needs is paused: re-send it with a delay and delete this copy,
    /// so waiting out an outage never spends the receive count that the redrive policy counts.
    Park { error: String },
    /// Will never succeed: dead-letter. `teams`: the routes that failed when the others were
    /// done (empty when the message as a whole failed).
    Permanent {
        kind: &'static str,
        error: String,
        teams: Vec<String>,
    },
}

struct Shared {
    config: WorkerConfig,
    queue: Arc<dyn Queue>,
    dlq: Option<Arc<dyn Queue>>,
    lifecycle: Arc<Lifecycle>,
    decode: DecodeFn,
    summary: Mutex<RunSummary>,
    in_flight: Mutex<HashMap<String, InFlight>>,
    finding_locks: FindingLocks,
    /// When the last message put back for a claim elsewhere or a settling create is due again:
    /// a drain run (`exit_when_idle`) is not done while such a message is still to come back.
    deferred_until: Mutex<Option<tokio::time::Instant>>,
}

impl Shared {
    fn count(&self, f: impl FnOnce(&mut RunSummary)) {
        f(&mut self.summary.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn with_in_flight<T>(&self, f: impl FnOnce(&mut HashMap<String, InFlight>) -> T) -> T {
        f(&mut self.in_flight.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn receipt_handle(&self, message_id: &str) -> Option<String> {
        self.with_in_flight(|m| m.get(message_id).map(|f| f.receipt_handle.clone()))
    }
}

pub struct Worker {
    shared: Arc<Shared>,
}

impl Worker {
    /// `lifecycle` gets the config's lease and owner id.
    pub fn new(
        config: WorkerConfig,
        queue: Arc<dyn Queue>,
        dlq: Option<Arc<dyn Queue>>,
        lifecycle: Lifecycle,
        decode: DecodeFn,
    ) -> Worker {
        let lifecycle = lifecycle
            .with_lease(config.lease)
            .with_owner_id(config.owner_id.clone());
        Worker {
            shared: Arc::new(Shared {
                config,
                queue,
                dlq,
                lifecycle: Arc::new(lifecycle),
                decode,
                summary: Mutex::new(RunSummary::default()),
                in_flight: Mutex::new(HashMap::new()),
                finding_locks: FindingLocks::default(),
                deferred_until: Mutex::new(None),
            }),
        }
    }

    /// The worker on real SQS queues (`queue_url`, and `dlq_url` if set).
    pub fn from_sqs(
        config: WorkerConfig,
        client: aws_sdk_sqs::Client,
        lifecycle: Lifecycle,
        decode: DecodeFn,
    ) -> Worker {
        let queue: Arc<dyn Queue> = Arc::new(SqsQueue::new(client.clone(), &config.queue_url));
        let dlq = config
            .dlq_url
            .as_ref()
            .map(|url| Arc::new(SqsQueue::new(client, url)) as Arc<dyn Queue>);
        Worker::new(config, queue, dlq, lifecycle, decode)
    }

    /// Runs until `shutdown` fires (or the queue is unusable: missing, access denied), then
    /// drains. Returns an error only in the second case, after draining.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<RunSummary> {
        let shared = self.shared;
        let config = &shared.config;
        let semaphore = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let (delete_tx, delete_rx) = mpsc::unbounded_channel::<String>();
        let deleter = tokio::spawn(delete_loop(shared.clone(), delete_rx));
        let mut late_receive: Option<tokio::task::JoinHandle<()>> = None;
        let mut tasks = JoinSet::new();
        let mut failure: Option<anyhow::Error> = None;
        let mut receive_failures: u32 = 0;
        let mut idle_receives: u32 = 0;

        tracing::info!(queue = %config.queue_url, concurrency = config.concurrency, "worker started");
        loop {
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "message task failed");
                }
            }
            let first = tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                permit = semaphore.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let room = (semaphore.available_permits() + 1).min(MAX_BATCH);
            let receive = {
                let queue = shared.queue.clone();
                let (wait, visibility) = (config.wait_time, config.visibility_timeout);
                async move { queue.receive(room, wait, visibility).await }
            };
            // Boxed so that a receive in flight at shutdown can be moved to a task and finished.
            let mut receive = Box::pin(receive);
            let received = tokio::select! {
                biased;
                _ = shutdown.wait() => {
                    // SQS may already have handed messages to this long poll: dropping it would
                    // leave them invisible for the whole visibility timeout. Let it finish
                    // (bounded by the long-poll wait) beside the drain, and hand back at once
                    // whatever it got.
                    let shared = shared.clone();
                    let bound = config.wait_time + Duration::from_secs(2);
                    late_receive = Some(tokio::spawn(async move {
                        match tokio::time::timeout(bound, receive).await {
                            Ok(Ok(messages)) => hand_back(&shared, messages).await,
                            Ok(Err(e)) => log_queue_error("ReceiveMessage", &e),
                            Err(_) => tracing::warn!("the receive in flight at shutdown did not finish; its messages reappear after their visibility timeout"),
                        }
                    }));
                    break;
                }
                r = &mut receive => r,
            };
            let messages = match received {
                Ok(messages) => {
                    receive_failures = 0;
                    if messages.is_empty() && tasks.is_empty() {
                        idle_receives += 1;
                        let deferred = shared
                            .deferred_until
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .is_some_and(|due| due > tokio::time::Instant::now());
                        if !deferred && config.exit_when_idle.is_some_and(|n| idle_receives >= n) {
                            tracing::info!(
                                empty_receives = idle_receives,
                                "queue drained; stopping"
                            );
                            break;
                        }
                    } else {
                        idle_receives = 0;
                    }
                    messages
                }
                Err(e) => {
                    drop(first);
                    receive_failures += 1;
                    if !e.is_transient() && receive_failures >= 3 {
                        tracing::error!(error = %e, "cannot receive from the queue; stopping");
                        failure = Some(e.into());
                        break;
                    }
                    tracing::warn!(error = %e, attempt = receive_failures, "receive failed; retrying");
                    let pause = Duration::from_secs(1u64 << receive_failures.min(5));
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        _ = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            telemetry::messages_received(messages.len() as u64);
            let mut first = Some(first);
            for message in messages {
                shared.count(|s| s.received += 1);
                tracing::debug!(message_id = %message.message_id, receive_count = message.receive_count, "received");
                let duplicate = shared.with_in_flight(|m| match m.get_mut(&message.message_id) {
                    Some(entry) => {
                        entry.receipt_handle = message.receipt_handle.clone();
                        true
                    }
                    None => {
                        m.insert(
                            message.message_id.clone(),
                            InFlight {
                                receipt_handle: message.receipt_handle.clone(),
                                finished: false,
                            },
                        );
                        false
                    }
                });
                if duplicate {
                    // Already being worked on here: keep the newest handle for the delete.
                    tracing::info!(message_id = %message.message_id, receive_count = message.receive_count, "redelivered while in flight");
                    continue;
                }
                let permit = match first.take() {
                    Some(p) => p,
                    None => match semaphore.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                };
                tasks.spawn(handle_message(
                    shared.clone(),
                    message,
                    permit,
                    delete_tx.clone(),
                ));
            }
        }

        // Stop receiving; let in-flight work finish within the grace period.
        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(in_flight, grace = ?config.grace, "draining in-flight messages");
        }
        let drained = tokio::time::timeout(config.grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if let Some(late) = late_receive
            && let Err(e) = late.await
        {
            tracing::error!(error = %e, "hand-back of the last receive failed");
        }
        if !drained {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            let claims = shared.lifecycle.release_abandoned().await;
            let unfinished: Vec<(String, String)> = shared.with_in_flight(|m| {
                let ids: Vec<String> = m
                    .iter()
                    .filter(|(_, f)| !f.finished)
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.into_iter()
                    .filter_map(|id| m.remove(&id).map(|f| (id, f.receipt_handle)))
                    .collect()
            });
            for (message_id, handle) in &unfinished {
                if let Err(e) = shared.queue.change_visibility(handle, Duration::ZERO).await {
                    tracing::warn!(%message_id, error = %e, "could not hand the message back; it reappears when its visibility runs out");
                }
            }
            shared.count(|s| s.released += unfinished.len() as u64);
            telemetry::messages_released(unfinished.len() as u64);
            tracing::warn!(
                messages = unfinished.len(),
                claims,
                "grace period over: unfinished work handed back to the queue"
            );
        }
        drop(delete_tx);
        if let Err(e) = deleter.await {
            tracing::error!(error = %e, "delete task failed");
        }
        let summary = shared
            .summary
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        tracing::info!(?summary, "worker stopped");
        match failure {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }
}

/// Makes messages received after shutdown began visible again at once, untouched.
async fn hand_back(shared: &Shared, messages: Vec<ReceivedMessage>) {
    if messages.is_empty() {
        return;
    }
    let count = messages.len() as u64;
    for message in &messages {
        if let Err(e) = shared
            .queue
            .change_visibility(&message.receipt_handle, Duration::ZERO)
            .await
        {
            tracing::warn!(message_id = %message.message_id, error = %e, "could not hand the message back; it reappears when its visibility runs out");
        }
    }
    shared.count(|s| {
        s.received += count;
        s.released += count;
    });
    telemetry::messages_released(count);
    tracing::info!(
        messages = count,
        "messages received during shutdown handed back"
    );
}

async fn handle_message(
    shared: Arc<Shared>,
    message: ReceivedMessage,
    permit: OwnedSemaphorePermit,
    deletes: mpsc::UnboundedSender<String>,
) {
    let inflight = telemetry::inflight();
    let disposition = with_heartbeat(&shared, &message.message_id, work(&shared, &message)).await;
    drop(inflight);
    let id = &message.message_id;
    let delete = match disposition {
        Disposition::Done => true,
        Disposition::Transient {
            error,
            busy,
            retry_in,
        } => {
            let jitter = jitter(&format!("{id}:{}", message.receive_count));
            let visibility = match (busy, retry_in) {
                // A settling create: back exactly when its marker search can be trusted.
                (true, Some(wait)) => {
                    (wait + Duration::from_millis(500)).max(busy_visibility(1, wait, jitter))
                }
                (true, None) => busy_visibility(message.receive_count, shared.config.lease, jitter),
                (false, wait) => {
                    retry_visibility(message.receive_count, jitter).max(wait.unwrap_or_default())
                }
            };
            if busy {
                let due = tokio::time::Instant::now() + visibility;
                let mut deferred = shared
                    .deferred_until
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                *deferred = Some(deferred.map_or(due, |d| d.max(due)));
            }
            tracing::warn!(message_id = %id, receive_count = message.receive_count, retry_in = ?visibility, %error, "transient failure; the message comes back later");
            if let Some(handle) = shared.receipt_handle(id)
                && let Err(e) = shared.queue.change_visibility(&handle, visibility).await
            {
                tracing::warn!(message_id = %id, error = %e, "could not set the retry delay");
            }
            shared.count(|s| s.retried += 1);
            false
        }
        Disposition::Park { error } => park(&shared, &message, &error).await,
        Disposition::Permanent { kind, error, teams } => {
            dead_letter(&shared, &message, kind, &error, &teams).await
        }
    };
    if delete {
        shared.with_in_flight(|m| {
            if let Some(f) = m.get_mut(id) {
                f.finished = true;
            }
        });
        if deletes.send(id.clone()).is_err() {
            tracing::error!(message_id = %id, "delete queue closed; the message will be redelivered");
        }
    } else {
        shared.with_in_flight(|m| m.remove(id));
    }
    drop(permit);
}

/// Re-sends the message with a delay that grows each time it is parked (`fb-parked`), keeping
/// its `fb-first-failure`; the caller deletes the original. A fresh copy starts with receive
/// count 0, so an outage longer than the redrive policy allows still dead-letters nothing. If
/// the copy cannot be sent, the original stays and comes back after a while instead.
async fn park(shared: &Shared, message: &ReceivedMessage, error: &str) -> bool {
    let id = &message.message_id;
    let times: u32 = message
        .attributes
        .get("fb-parked")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let delay = crate::pipeline::health::park_delay(times);
    let mut attributes = BTreeMap::from([("fb-parked".to_owned(), (times + 1).to_string())]);
    if let Some(first) = message.attributes.get("fb-first-failure") {
        attributes.insert("fb-first-failure".to_owned(), first.clone());
    }
    match shared
        .queue
        .send_delayed(&message.body, &attributes, delay)
        .await
    {
        Ok(copy) => {
            // A drain run is not done while a parked copy is still to come back.
            let due = tokio::time::Instant::now() + delay;
            let mut deferred = shared
                .deferred_until
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *deferred = Some(deferred.map_or(due, |d| d.max(due)));
            drop(deferred);
            telemetry::messages_parked(1);
            shared.count(|s| s.parked += 1);
            tracing::info!(message_id = %id, copy = %copy, parked = times + 1, back_in = ?delay, %error, "parked while a connection or rule is paused");
            true
        }
        Err(e) => {
            tracing::warn!(message_id = %id, error = %e, "could not park the message; it comes back after its visibility timeout");
            if let Some(handle) = shared.receipt_handle(id)
                && let Err(e) = shared.queue.change_visibility(&handle, delay).await
            {
                tracing::warn!(message_id = %id, error = %e, "could not delay the message either");
            }
            shared.count(|s| s.retried += 1);
            false
        }
    }
}

/// The metric label of a permanent failure kind.
fn error_kind(kind: &str) -> telemetry::ErrorKind {
    match kind {
        "decode" => telemetry::ErrorKind::Decode,
        "render" => telemetry::ErrorKind::Render,
        "store" => telemetry::ErrorKind::Store,
        "config" => telemetry::ErrorKind::Config,
        _ => telemetry::ErrorKind::Ticket,
    }
}

/// Sends the original body to the DLQ with the reason, then lets the caller delete it. Without
/// a DLQ the message stays (its redrive policy moves it after enough receives).
async fn dead_letter(
    shared: &Shared,
    message: &ReceivedMessage,
    kind: &'static str,
    error: &str,
    teams: &[String],
) -> bool {
    let id = &message.message_id;
    let error_kind = error_kind(kind);
    telemetry::error(error_kind);
    let Some(dlq) = &shared.dlq else {
        tracing::error!(message_id = %id, kind, %error, "permanent failure and no DLQ configured; leaving the message to the redrive policy");
        shared.count(|s| s.left_for_redrive += 1);
        return false;
    };
    let first_failure = message
        .attributes
        .get("fb-first-failure")
        .cloned()
        .unwrap_or_else(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let mut attributes = BTreeMap::from([
        ("fb-error-kind".to_owned(), kind.to_owned()),
        (
            "fb-error".to_owned(),
            cut_bytes(error, ERROR_ATTRIBUTE_LIMIT).to_owned(),
        ),
        ("fb-original-message-id".to_owned(), id.clone()),
        ("fb-first-failure".to_owned(), first_failure),
        (
            "fb-receive-count".to_owned(),
            message.receive_count.to_string(),
        ),
    ]);
    if !teams.is_empty() {
        // The other routes of this message are done; a replay redoes only these.
        attributes.insert(
            "fb-teams".to_owned(),
            cut_bytes(&teams.join(","), ERROR_ATTRIBUTE_LIMIT).to_owned(),
        );
    }
    match dlq.send(&message.body, &attributes).await {
        Ok(dlq_id) => {
            telemetry::dlq_moved(error_kind);
            tracing::error!(message_id = %id, dlq_message_id = %dlq_id, kind, %error, "permanent failure; moved to the DLQ");
            shared.count(|s| s.dead_lettered += 1);
            true
        }
        Err(e) => {
            // Not deleting is the safe side: the message comes back and is tried again.
            tracing::error!(message_id = %id, kind, %error, dlq_error = %e, "could not dead-letter the message; leaving it");
            shared.count(|s| s.retried += 1);
            false
        }
    }
}

/// Decodes the message and runs the lifecycle for each finding in it. Every finding and route
/// is tried even if an earlier one failed, and outcomes stay per route: while any route can
/// still succeed (transient), the message comes back and routes that are done are no-ops then;
/// only when nothing transient is left do the permanent failures send it to the DLQ, naming the
/// teams whose routes failed.
async fn work(shared: &Shared, message: &ReceivedMessage) -> Disposition {
    let findings = match (shared.decode)(message.body.as_bytes()) {
        Ok(findings) => findings,
        Err(e) => {
            return Disposition::Permanent {
                kind: "decode",
                error: e.to_string(),
                teams: Vec::new(),
            };
        }
    };
    let mut transient: Vec<LifecycleError> = Vec::new();
    let mut paused: Vec<LifecycleError> = Vec::new();
    let mut permanent: Vec<(&'static str, String, Option<String>)> = Vec::new();
    for decoded in findings {
        let finding = match decoded {
            Ok(finding) => finding,
            Err(e) => {
                permanent.push(("decode", e.to_string(), None));
                continue;
            }
        };
        telemetry::finding_received(finding.schema);
        let _serialized = shared.finding_locks.lock(&finding.id).await;
        let outcome = shared.lifecycle.process(&finding).await;
        shared.count(|s| {
            s.findings += 1;
            if outcome.is_unrouted() {
                s.unrouted += 1;
            }
        });
        for team in &outcome.teams {
            telemetry::finding_routed(&team.team);
        }
        if outcome.is_unrouted() {
            telemetry::finding_unrouted();
            tracing::info!(finding_id = %finding.id, "no rule routes this finding; acknowledged");
        }
        for failure in outcome.failures {
            if failure.is_paused() {
                paused.push(failure);
            } else if failure.is_transient() {
                transient.push(failure);
            } else {
                let team = failure.team().map(str::to_owned);
                permanent.push((
                    failure.kind(),
                    format!("finding {}: {failure}", finding.id),
                    team,
                ));
            }
        }
    }
    if !paused.is_empty() {
        // Everything else this message needed is done or comes back with it.
        let error = paused
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Disposition::Park { error };
    }
    if !transient.is_empty() {
        if !permanent.is_empty() {
            tracing::warn!(message_id = %message.message_id, permanent = permanent.len(), "some routes failed permanently; they are dead-lettered once the transient ones are done");
        }
        let busy = transient.iter().all(|e| {
            matches!(
                e,
                LifecycleError::Busy { .. } | LifecycleError::Settling { .. }
            )
        });
        let retry_in = transient
            .iter()
            .filter_map(LifecycleError::retry_after)
            .max();
        let error = transient
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Disposition::Transient {
            error,
            busy,
            retry_in,
        };
    }
    let Some((kind, _, _)) = permanent.first() else {
        return Disposition::Done;
    };
    let kind = *kind;
    let mut teams: Vec<String> = permanent.iter().filter_map(|(_, _, t)| t.clone()).collect();
    teams.sort();
    teams.dedup();
    let error = permanent
        .into_iter()
        .map(|(_, text, _)| text)
        .collect::<Vec<_>>()
        .join("; ");
    Disposition::Permanent { kind, error, teams }
}

/// Runs `work` while extending the message's visibility every third of the timeout, so slow
/// ticket systems never make the message reappear (and be worked on twice) mid-flight.
async fn with_heartbeat<F: Future<Output = Disposition>>(
    shared: &Shared,
    message_id: &str,
    work: F,
) -> Disposition {
    let visibility = shared.config.visibility_timeout;
    let period = (visibility / 3).max(Duration::from_secs(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(work);
    loop {
        tokio::select! {
            disposition = &mut work => return disposition,
            _ = ticker.tick() => {
                let Some(handle) = shared.receipt_handle(message_id) else { continue };
                match shared.queue.change_visibility(&handle, visibility).await {
                    Ok(()) => tracing::debug!(%message_id, "visibility extended"),
                    Err(e) => tracing::warn!(%message_id, error = %e, "could not extend visibility"),
                }
            }
        }
    }
}

/// Deletes finished messages in batches of up to 10, retrying failed entries once. A message
/// leaves the in-flight table only here, so a redelivery meanwhile updates the handle we use.
async fn delete_loop(shared: Arc<Shared>, mut finished: mpsc::UnboundedReceiver<String>) {
    while let Some(first) = finished.recv().await {
        let mut ids = vec![first];
        while ids.len() < MAX_BATCH {
            match finished.try_recv() {
                Ok(id) => ids.push(id),
                Err(_) => break,
            }
        }
        let mut failed = delete_batch(&shared, &ids).await;
        if !failed.is_empty() {
            tracing::warn!(count = failed.len(), "retrying failed deletes once");
            failed = delete_batch(&shared, &failed).await;
        }
        for id in &failed {
            tracing::error!(message_id = %id, "delete failed twice; the message will be redelivered and found already done");
        }
        shared.count(|s| {
            s.deleted += (ids.len() - failed.len()) as u64;
            s.delete_failures += failed.len() as u64;
        });
        telemetry::messages_deleted((ids.len() - failed.len()) as u64);
        shared.with_in_flight(|m| {
            for id in &ids {
                m.remove(id);
            }
        });
    }
}

/// One `DeleteMessageBatch`; returns the message ids that were not deleted.
async fn delete_batch(shared: &Shared, ids: &[String]) -> Vec<String> {
    let entries: Vec<DeleteEntry> = ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| {
            Some(DeleteEntry {
                id: i.to_string(),
                receipt_handle: shared.receipt_handle(id)?,
            })
        })
        .collect();
    let by_entry: HashMap<&str, &String> = entries
        .iter()
        .filter_map(|e| Some((e.id.as_str(), ids.get(e.id.parse::<usize>().ok()?)?)))
        .collect();
    match shared.queue.delete_batch(&entries).await {
        Ok(failures) => failures
            .iter()
            .filter_map(|f| {
                tracing::warn!(entry = %f.id, code = %f.code, message = %f.message, sender_fault = f.sender_fault, "delete entry failed");
                by_entry.get(f.id.as_str()).map(|id| (*id).clone())
            })
            .collect(),
        Err(e) => {
            log_queue_error("DeleteMessageBatch", &e);
            ids.to_vec()
        }
    }
}

fn log_queue_error(operation: &str, e: &QueueError) {
    tracing::warn!(operation, error = %e, transient = e.is_transient(), "queue call failed");
}

#[cfg(test)]
mod tests;
