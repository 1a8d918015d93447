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

use crate::aws::sqs::{
    DeleteEntry, MAX_MESSAGES_PER_CALL, Queue, QueueError, ReceivedMessage, SqsQueue,
};
use crate::finding::{DecodeError, EachFinding};
use crate::pipeline::lifecycle::{Lifecycle, LifecycleError};
use crate::retry::Retryable;
use crate::runtime::shutdown::Shutdown;
use crate::runtime::telemetry;

mod disposition;
mod visibility;
use disposition::*;
use visibility::*;

/// The decoder (`finding::decode_each`), injected so tests and tools can supply their own. The
/// outer error fails the whole message; an inner one only its finding.
pub type DecodeFn = fn(&[u8]) -> Result<EachFinding, DecodeError>;

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
    /// Names this process in store claims (`host:pid:start-millis`, see `commands::run::owner_id`);
    /// each unit of work adds its own suffix, so no two claims ever share an owner.
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
            // Under load, gather room for a few messages before receiving again (below).
            let mut permits = vec![first];
            if !gather_room(
                &semaphore,
                &mut permits,
                receive_batch(config.concurrency),
                &shutdown,
            )
            .await
            {
                break;
            }
            let room = (semaphore.available_permits() + permits.len()).min(MAX_MESSAGES_PER_CALL);
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
                    drop(permits);
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
                let permit = match permits.pop() {
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

/// How long a receive waits for more room when the worker is busy (`gather_room`).
const RECEIVE_GATHER: Duration = Duration::from_millis(250);

/// How many messages' room the worker gathers before it receives again: a quarter of its
/// concurrency (at most one receive's worth), so at least three quarters of it stay at work while
/// room gathers.
fn receive_batch(concurrency: usize) -> usize {
    (concurrency / 4).clamp(1, MAX_MESSAGES_PER_CALL)
}

/// Gathers permits into `permits` until there is room for `batch` messages or `RECEIVE_GATHER`
/// has passed. Without it a busy worker, whose tasks end one at a time, receives again for every
/// task that ends: one `ReceiveMessage` per message, each an AWS request (CPU, SQS's per-request
/// bill) bringing one message. Messages wait in the queue meanwhile, which they would do anyway: at
/// least three quarters of the concurrency is at work. An idle or lightly loaded worker has the
/// room at once and does not wait. Returns false when shutdown fires.
async fn gather_room(
    semaphore: &Arc<Semaphore>,
    permits: &mut Vec<OwnedSemaphorePermit>,
    batch: usize,
    shutdown: &Shutdown,
) -> bool {
    if semaphore.available_permits() + permits.len() >= batch {
        return true;
    }
    let deadline = tokio::time::Instant::now() + RECEIVE_GATHER;
    while permits.len() < batch {
        tokio::select! {
            biased;
            _ = shutdown.wait() => return false,
            _ = tokio::time::sleep_until(deadline) => break,
            permit = semaphore.clone().acquire_owned() => match permit {
                Ok(p) => permits.push(p),
                Err(_) => return false,
            },
        }
    }
    true
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

#[cfg(test)]
mod tests;
