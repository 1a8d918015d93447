//! [`BatchingWriter`]: write-backs of concurrent callers merged into as few Security Hub calls as
//! possible.
//!
//! The lifecycle writes one update per finding, and every finding of a grouped ticket carries the
//! same note, so one `BatchUpdateFindings` call could carry them all; written one by one they
//! cost a call each, and Security Hub's write quota (a few calls per second per account) decides
//! how fast a flood drains. This writer queues each caller's updates, waits a short window after
//! the first one arrives (or until a call's worth is waiting), and hands everything it collected
//! to the inner writer in one `write`; the inner writer ([`super::client::SecurityHubWriter`])
//! already groups updates with equal changes into requests of up to 100 findings.
//!
//! Each caller still awaits ITS outcome: `write` returns only once the call carrying its updates
//! has been answered, with the caller's share of the report (or the call's error). The worker
//! therefore deletes a message only after its write-back went out or failed, as before: a process
//! killed while updates are queued loses nothing that was acknowledged.
//!
//! Security Hub refuses a request naming a finding twice, and the inner writer keeps only the last
//! update of a finding in one `write`, so one flush never carries two callers' updates of the same
//! finding: a request whose findings collide with the current set waits for the next set, which
//! goes out right after, in arrival order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::client::MAX_FINDINGS_PER_CALL;
use super::{FindingWriter, Unprocessed, WorkflowUpdate, WriteError, WriteReport};
use crate::ticket::BoxFuture;

/// Environment variable holding the batching window in milliseconds (see [`window_from_lookup`]).
pub const WRITEBACK_WINDOW_ENV: &str = "BRIDGE_WRITEBACK_WINDOW";

/// How long the first queued write-back waits for others by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(200);

/// The longest window accepted: write-backs go out at least every second.
pub const MAX_WINDOW: Duration = Duration::from_secs(1);

/// The window as [`WRITEBACK_WINDOW_ENV`] sets it (see [`crate::config::Config::writeback_window`],
/// which hands over its snapshot of the environment): whole milliseconds, at most
/// [`MAX_WINDOW`]; `0` turns batching off; unset or empty keeps [`DEFAULT_WINDOW`].
pub fn window_from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Duration> {
    let Some(raw) = lookup(WRITEBACK_WINDOW_ENV).filter(|v| !v.trim().is_empty()) else {
        return Ok(DEFAULT_WINDOW);
    };
    raw.trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_millis)
        .filter(|window| *window <= MAX_WINDOW)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{WRITEBACK_WINDOW_ENV}={raw:?}: expected whole milliseconds from 0 (no batching) to {}",
                MAX_WINDOW.as_millis()
            )
        })
}

type Outcome = Result<WriteReport, WriteError>;

/// One caller's updates, waiting for a flush.
struct Request {
    updates: Vec<WorkflowUpdate>,
    arrived: Instant,
    reply: oneshot::Sender<Outcome>,
}

/// A [`FindingWriter`] that merges concurrent callers' updates into few calls of `inner`.
pub struct BatchingWriter {
    inner: Arc<dyn FindingWriter>,
    window: Duration,
    /// The flusher's queue, started by the first write (so building the writer needs no runtime);
    /// the flusher ends once this writer, and with it the sender, is dropped.
    queue: OnceLock<mpsc::UnboundedSender<Request>>,
}

impl std::fmt::Debug for BatchingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchingWriter")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl BatchingWriter {
    /// Batches writes to `inner` over `window` (at most [`MAX_WINDOW`]; zero writes each call
    /// through at once).
    pub fn new(inner: Arc<dyn FindingWriter>, window: Duration) -> BatchingWriter {
        BatchingWriter {
            inner,
            window: window.min(MAX_WINDOW),
            queue: OnceLock::new(),
        }
    }

    fn queue(&self) -> &mpsc::UnboundedSender<Request> {
        self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(flush_loop(Arc::clone(&self.inner), self.window, receiver));
            sender
        })
    }

    async fn queued_write(&self, updates: Vec<WorkflowUpdate>) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            updates,
            arrived: Instant::now(),
            reply,
        };
        if let Err(mpsc::error::SendError(request)) = self.queue().send(request) {
            // The flusher is gone (only a panic ends it while this writer lives): write-backs
            // still go out, one call each, as without batching.
            return self.inner.write(request.updates).await;
        }
        answer.await.unwrap_or_else(|_| {
            Err(WriteError::Transient(
                "the write-back queue stopped before answering".into(),
            ))
        })
    }
}

impl FindingWriter for BatchingWriter {
    fn write(&self, updates: Vec<WorkflowUpdate>) -> BoxFuture<'_, Outcome> {
        if self.window.is_zero() || updates.is_empty() {
            return self.inner.write(updates);
        }
        Box::pin(self.queued_write(updates))
    }
}

/// Collects requests and flushes them, one inner call at a time, until every sender is gone.
async fn flush_loop(
    inner: Arc<dyn FindingWriter>,
    window: Duration,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    let mut waiting: VecDeque<Request> = VecDeque::new();
    // Requests left over from the last flush (they collided with it) go out without a new window:
    // they have waited one already.
    let mut left_over = false;
    let mut open = true;
    loop {
        if waiting.is_empty() {
            if !open {
                return;
            }
            match requests.recv().await {
                Some(request) => waiting.push_back(request),
                None => return,
            }
        }
        let deadline = if left_over {
            Instant::now()
        } else {
            waiting.front().map_or_else(Instant::now, |r| r.arrived) + window
        };
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        while open && queued_updates(&waiting) < MAX_FINDINGS_PER_CALL {
            tokio::select! {
                biased;
                request = requests.recv() => match request {
                    Some(request) => waiting.push_back(request),
                    None => open = false,
                },
                () = &mut sleep => break,
            }
        }
        let set = take_set(&mut waiting);
        left_over = !waiting.is_empty();
        flush(inner.as_ref(), set).await;
    }
}

fn queued_updates(waiting: &VecDeque<Request>) -> usize {
    waiting.iter().map(|r| r.updates.len()).sum()
}

/// The requests of the next flush, in arrival order: every waiting request that names no finding
/// of an earlier request in the set, nor of an earlier request left waiting (so two updates of
/// one finding always go out in the order they arrived). The rest stays in `waiting`.
fn take_set(waiting: &mut VecDeque<Request>) -> Vec<Request> {
    let mut in_set: HashSet<String> = HashSet::new();
    let mut held: HashSet<String> = HashSet::new();
    let mut set = Vec::new();
    let mut keep = VecDeque::new();
    for request in waiting.drain(..) {
        let ids: HashSet<&str> = request
            .updates
            .iter()
            .map(|u| u.finding_id.as_str())
            .collect();
        let collides = ids
            .iter()
            .any(|id| in_set.contains(*id) || held.contains(*id));
        let names = if collides { &mut held } else { &mut in_set };
        names.extend(ids.into_iter().map(str::to_owned));
        if collides {
            keep.push_back(request);
        } else {
            set.push(request);
        }
    }
    *waiting = keep;
    set
}

/// Sends one set through `inner` in a single `write` and answers each caller with its part.
async fn flush(inner: &dyn FindingWriter, set: Vec<Request>) {
    let mut owners: HashMap<String, usize> = HashMap::new();
    let mut counts = Vec::with_capacity(set.len());
    let mut replies = Vec::with_capacity(set.len());
    let mut merged = Vec::new();
    for (index, request) in set.into_iter().enumerate() {
        for update in &request.updates {
            owners.insert(update.finding_id.clone(), index);
        }
        counts.push(request.updates.len());
        merged.extend(request.updates);
        replies.push(request.reply);
    }
    tracing::debug!(
        callers = replies.len(),
        updates = merged.len(),
        "writing queued write-backs"
    );
    let outcome = inner.write(merged).await;
    let answers: Vec<Outcome> = match outcome {
        Ok(report) => split_report(report, &owners, &counts)
            .into_iter()
            .map(Ok)
            .collect(),
        Err(error) => replies.iter().map(|_| Err(error.clone())).collect(),
    };
    // A caller that stopped waiting (shutdown) simply gets no answer.
    for (reply, answer) in replies.into_iter().zip(answers) {
        let _ = reply.send(answer);
    }
}

/// Each caller's share of one report: its unprocessed entries, and its other updates processed.
fn split_report(
    report: WriteReport,
    owners: &HashMap<String, usize>,
    counts: &[usize],
) -> Vec<WriteReport> {
    let mut unprocessed: Vec<Vec<Unprocessed>> = counts.iter().map(|_| Vec::new()).collect();
    for entry in report.unprocessed {
        match owners.get(&entry.finding_id) {
            Some(&owner) => unprocessed[owner].push(entry),
            // The inner writer could not match Security Hub's answer to an update it sent; it
            // belongs to no caller, so it is at least not dropped silently.
            None => {
                tracing::warn!(finding_id = %entry.finding_id, code = %entry.code, message = %entry.message, "Security Hub did not apply a write-back that matches no queued update")
            }
        }
    }
    counts
        .iter()
        .zip(unprocessed)
        .map(|(&count, unprocessed)| WriteReport {
            processed: count.saturating_sub(unprocessed.len()),
            unprocessed,
        })
        .collect()
}

#[cfg(test)]
mod tests;
