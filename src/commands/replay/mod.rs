//! `findings-bridge replay`: gives dead-lettered messages another chance once whatever made them
//! fail (a broken template, a missing Jira project, an outage that outlasted the retries) is fixed.
//!
//! Safety first: a DLQ message is deleted only after its send to the target queue (or its
//! processing) succeeded, so a replay that is interrupted, killed or crashes never loses a
//! message — at worst a message is in both queues, and the bridge's dedup makes the second
//! delivery a no-op.
//!
//! Messages the run does not act on (filtered out, failed, dry run, interrupted) stay hidden until
//! the run ends and are then made visible again all at once. Releasing each one at once would make
//! SQS hand the same messages back on the next receive, so a run with many skipped messages would
//! never reach the rest of the queue. If the run dies, they reappear when their visibility timeout
//! runs out.
//!
//! The run ends when `idle_receives` receives in a row bring nothing new. A DLQ that is being
//! written to while the replay runs may therefore not be drained completely: run it again.
//!
//! [`replay`] runs the loop below; `filter` decides which messages it acts on, `native` hands the
//! whole DLQ to SQS instead, `rate` spaces the messages out, `summary` reports (and
//! [`crate::commands::progress`] while it runs).

mod command;
mod filter;
mod native;
mod options;
mod summary;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::aws::sqs::{
    DeleteEntry, MAX_MESSAGES_PER_CALL, QueueError, READ_ATTRIBUTES, ReceivedMessage, attributes,
};
use crate::finding::Finding;
use crate::retry::Retryable;
use crate::runtime::shutdown::Shutdown;
use crate::ticket::http::{RateLimiter, TokioClock};

pub use command::command;
pub use filter::{Filter, FilterError, FilterField, parse_time};
pub use native::{NATIVE_MAX_PER_SECOND, NativeMoveTask};
pub use options::{
    DecodeFn, ProcessFn, ReplayDeps, ReplayOptions, ReplayTarget, TeamsFn, process_with_lifecycle,
    teams_from_mappings,
};
pub use summary::ReplaySummary;

use crate::commands::progress::Progress;
use filter::{Decision, Selector};
use native::start_native;
use options::validate;

/// Why a replay could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Filter(#[from] FilterError),
    /// Options that contradict each other or a dependency the target needs but was not given.
    #[error("{0}")]
    Options(String),
    #[error("cannot read the DLQ {url}: {source}")]
    Receive {
        url: String,
        #[source]
        source: QueueError,
    },
    /// Every further send would fail the same way (missing queue, access denied).
    #[error("cannot send to {url}: {source}")]
    Send {
        url: String,
        #[source]
        source: QueueError,
    },
    #[error("GetQueueAttributes QueueArn of {url}: {message}")]
    QueueArn { url: String, message: String },
    #[error("StartMessageMoveTask from {source_arn}: {message}")]
    MoveTask { source_arn: String, message: String },
}

/// Runs a replay until the DLQ has nothing new, `max` is reached or `shutdown` fires (then it
/// stops after the current message). Returns an error only when the run cannot start or a queue
/// becomes unusable; messages not yet replayed are then still in the DLQ.
pub async fn replay(
    opts: ReplayOptions,
    deps: ReplayDeps,
    shutdown: Shutdown,
) -> anyhow::Result<ReplaySummary> {
    validate(&opts, &deps)?;
    if let ReplayTarget::Native {
        destination,
        max_per_second,
    } = &opts.target
    {
        let client = deps
            .sqs
            .as_ref()
            .ok_or_else(|| ReplayError::Options("--native needs an SQS client".into()))?;
        let task = start_native(
            client,
            &opts.from,
            destination.as_deref(),
            *max_per_second,
            opts.dry_run,
        )
        .await?;
        return Ok(ReplaySummary {
            dry_run: opts.dry_run,
            native_task: Some(task),
            ..ReplaySummary::default()
        });
    }
    let mut run = Run::new(opts, deps);
    let result = run.drain(&shutdown).await;
    run.release_held().await;
    run.progress.finish(run.summary.counts());
    match result {
        Ok(()) => {
            tracing::info!(
                replayed = run.summary.replayed,
                skipped = run.summary.skipped,
                failed = run.summary.failed.len(),
                dry_run = run.summary.dry_run,
                interrupted = run.summary.interrupted,
                "replay finished"
            );
            Ok(run.summary)
        }
        Err(e) => {
            let summary = &run.summary;
            Err(anyhow::Error::new(e).context(format!(
                "replay stopped after {} replayed, {} skipped, {} failed; the rest is still in the DLQ",
                summary.replayed,
                summary.skipped,
                summary.failed.len()
            )))
        }
    }
}

struct Run {
    opts: ReplayOptions,
    deps: ReplayDeps,
    selector: Selector,
    summary: ReplaySummary,
    /// Every message id this run has looked at.
    seen: HashSet<String>,
    /// Messages to give back to the DLQ at the end, with their newest receipt handle.
    held: HashMap<String, String>,
    /// Messages sent or processed (or, in a dry run, that would be).
    acted: usize,
    /// `--rate`: the shared limiter, one second's worth of burst.
    bucket: Option<RateLimiter>,
    progress: Progress,
}

impl Run {
    fn new(opts: ReplayOptions, deps: ReplayDeps) -> Run {
        Run {
            selector: Selector::new(&opts, &deps),
            summary: ReplaySummary {
                dry_run: opts.dry_run,
                ..ReplaySummary::default()
            },
            bucket: opts.rate.map(|rate| {
                let burst = rate.max(1.0).ceil().min(f64::from(u32::MAX)) as u32;
                RateLimiter::new(rate, burst, Arc::new(TokioClock::new()))
            }),
            progress: Progress::new("replay", opts.max.map(|n| n as u64)),
            seen: HashSet::new(),
            held: HashMap::new(),
            acted: 0,
            opts,
            deps,
        }
    }

    fn remaining(&self) -> usize {
        self.opts
            .max
            .map_or(usize::MAX, |max| max.saturating_sub(self.acted))
    }

    async fn drain(&mut self, shutdown: &Shutdown) -> Result<(), ReplayError> {
        let mut idle = 0;
        let mut receive_failures = 0u32;
        tracing::info!(dlq = %self.deps.dlq.url(), target = ?self.opts.target, dry_run = self.opts.dry_run, "replay started");
        loop {
            if shutdown.is_triggered() {
                self.summary.interrupted = true;
                return Ok(());
            }
            let remaining = self.remaining();
            if remaining == 0 {
                return Ok(());
            }
            let mut want = remaining.min(MAX_MESSAGES_PER_CALL);
            if let Some(bucket) = &self.bucket {
                let pause = bucket.until_next().await;
                if !pause.is_zero() {
                    tokio::select! {
                        _ = shutdown.wait() => continue,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
                // Never receive more than may go now: a received message waiting for its turn
                // would run down its visibility timeout.
                want = want.min(bucket.available().await.max(1));
            }
            let received = tokio::select! {
                _ = shutdown.wait() => continue,
                r = self.deps.dlq.receive(want, self.opts.wait, self.opts.visibility) => r,
            };
            let messages = match received {
                Ok(messages) => {
                    receive_failures = 0;
                    messages
                }
                Err(source) if source.is_transient() && receive_failures < 5 => {
                    receive_failures += 1;
                    tracing::warn!(error = %source, attempt = receive_failures, "DLQ receive failed; retrying");
                    let pause = Duration::from_secs(1 << receive_failures);
                    tokio::select! {
                        _ = shutdown.wait() => {}
                        _ = tokio::time::sleep(pause) => {}
                    }
                    continue;
                }
                Err(source) => {
                    return Err(ReplayError::Receive {
                        url: self.deps.dlq.url().to_owned(),
                        source,
                    });
                }
            };
            let mut fresh = Vec::with_capacity(messages.len());
            for message in messages {
                if self.seen.contains(&message.message_id) {
                    // Its visibility ran out during the run; the receive hid it again.
                    self.held
                        .insert(message.message_id.clone(), message.receipt_handle.clone());
                } else {
                    fresh.push(message);
                }
            }
            if fresh.is_empty() {
                idle += 1;
                if idle >= self.opts.idle_receives.max(1) {
                    return Ok(());
                }
                continue;
            }
            idle = 0;
            let outcome = self.handle_batch(fresh, shutdown).await;
            let summary = &self.summary;
            let acted = summary.replayed + summary.failed.len() as u64;
            self.progress
                .update(acted, acted + summary.skipped, || summary.counts());
            outcome?;
        }
    }

    /// Acts on one received batch; the successfully replayed messages are deleted together.
    async fn handle_batch(
        &mut self,
        messages: Vec<ReceivedMessage>,
        shutdown: &Shutdown,
    ) -> Result<(), ReplayError> {
        let mut done: Vec<ReceivedMessage> = Vec::new();
        let mut fatal = None;
        for message in messages {
            if fatal.is_some() || shutdown.is_triggered() || self.remaining() == 0 {
                // Not looked at: back to the DLQ untouched and uncounted.
                self.summary.interrupted |= shutdown.is_triggered();
                self.held
                    .insert(message.message_id.clone(), message.receipt_handle.clone());
                continue;
            }
            self.seen.insert(message.message_id.clone());
            let findings = match self.selector.decide(&message) {
                Decision::Skip(reason) => {
                    tracing::debug!(message_id = %message.message_id, %reason, "skipped");
                    self.summary.skipped += 1;
                    self.hold(&message);
                    continue;
                }
                Decision::Fail(reason) => {
                    self.acted += 1;
                    self.fail(&message, reason);
                    continue;
                }
                Decision::Act(findings) => findings,
            };
            self.acted += 1;
            if let Some(bucket) = &self.bucket {
                bucket.acquire().await;
            }
            if self.opts.dry_run {
                tracing::info!(message_id = %message.message_id, target = ?self.opts.target, "dry run: would replay");
                self.summary.replayed += 1;
                self.hold(&message);
                continue;
            }
            match self.act(&message, findings).await {
                Ok(()) => done.push(message),
                Err(ActFailure::Message(reason)) => self.fail(&message, reason),
                Err(ActFailure::Fatal(e)) => {
                    self.fail(&message, e.to_string());
                    fatal = Some(e);
                }
            }
        }
        self.delete(done).await;
        match fatal {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn hold(&mut self, message: &ReceivedMessage) {
        self.held
            .insert(message.message_id.clone(), message.receipt_handle.clone());
    }

    fn fail(&mut self, message: &ReceivedMessage, reason: String) {
        tracing::warn!(message_id = %message.message_id, %reason, "not replayed; left in the DLQ");
        self.summary
            .failed
            .push((message.message_id.clone(), reason));
        self.hold(message);
    }

    async fn act(
        &self,
        message: &ReceivedMessage,
        findings: Option<Vec<Finding>>,
    ) -> Result<(), ActFailure> {
        match &self.opts.target {
            ReplayTarget::Queue(_) => {
                let Some(target) = &self.deps.target_queue else {
                    return Err(ActFailure::Message("no target queue".into()));
                };
                let attributes = attributes_to_send(&message.attributes);
                match target.send(&message.body, &attributes).await {
                    Ok(new_id) => {
                        tracing::info!(message_id = %message.message_id, %new_id, target = %target.url(), "sent back");
                        Ok(())
                    }
                    Err(e) if e.is_transient() => Err(ActFailure::Message(format!("send: {e}"))),
                    Err(source) => Err(ActFailure::Fatal(ReplayError::Send {
                        url: target.url().to_owned(),
                        source,
                    })),
                }
            }
            ReplayTarget::Process => {
                let (Some(process), Some(findings)) = (&self.deps.process, findings) else {
                    return Err(ActFailure::Message("nothing to process with".into()));
                };
                // Every finding is tried even after one failed: on the next replay the ones
                // that succeeded are no-ops.
                let mut reasons = Vec::new();
                for finding in findings {
                    if let Err(reason) = process(finding).await {
                        reasons.push(reason);
                    }
                }
                if reasons.is_empty() {
                    tracing::info!(message_id = %message.message_id, "processed");
                    Ok(())
                } else {
                    Err(ActFailure::Message(reasons.join("; ")))
                }
            }
            ReplayTarget::Native { .. } => Err(ActFailure::Message(
                "--native is handled by SQS, not message by message".into(),
            )),
        }
    }

    /// Deletes replayed messages from the DLQ, retrying failed entries once. A message whose
    /// delete still fails is in both queues; a later replay sends it again, which the bridge's
    /// dedup turns into a no-op — so it is reported, not hidden.
    async fn delete(&mut self, done: Vec<ReceivedMessage>) {
        if done.is_empty() {
            return;
        }
        let mut pending: Vec<&ReceivedMessage> = done.iter().collect();
        let mut last_error = String::new();
        for _attempt in 0..2 {
            let entries: Vec<DeleteEntry> = pending
                .iter()
                .enumerate()
                .map(|(i, m)| DeleteEntry {
                    id: i.to_string(),
                    receipt_handle: m.receipt_handle.clone(),
                })
                .collect();
            match self.deps.dlq.delete_batch(&entries).await {
                Ok(failures) => {
                    let failed: HashSet<&str> = failures.iter().map(|f| f.id.as_str()).collect();
                    if let Some(f) = failures.first() {
                        last_error = format!("{}: {}", f.code, f.message);
                    }
                    pending = pending
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| failed.contains(i.to_string().as_str()))
                        .map(|(_, m)| m)
                        .collect();
                }
                Err(e) => last_error = e.to_string(),
            }
            if pending.is_empty() {
                break;
            }
        }
        let undeleted: HashSet<&str> = pending.iter().map(|m| m.message_id.as_str()).collect();
        for message in &done {
            if undeleted.contains(message.message_id.as_str()) {
                self.summary.failed.push((
                    message.message_id.clone(),
                    format!(
                        "replayed, but could not be deleted from the DLQ ({last_error}); a later \
                         replay sends it again, which the bridge ignores as a duplicate"
                    ),
                ));
            } else {
                self.summary.replayed += 1;
            }
        }
    }

    /// Makes every held message visible again at once, so the DLQ looks as it did before the run
    /// (minus what was replayed). If this fails they reappear when their visibility runs out.
    async fn release_held(&mut self) {
        for (message_id, handle) in self.held.drain() {
            if let Err(e) = self
                .deps
                .dlq
                .change_visibility(&handle, Duration::ZERO)
                .await
            {
                tracing::warn!(%message_id, error = %e, "could not make the message visible again; it reappears when its visibility times out");
            }
        }
    }
}

enum ActFailure {
    /// This message failed; go on with the next.
    Message(String),
    /// Every further message would fail the same way: stop the run.
    Fatal(ReplayError),
}

/// The attributes a replayed message carries: the producer's own, plus the `fb-*` ones the
/// worker reads back (`fb-first-failure`, so a message that fails again keeps the time it
/// first failed). The error attributes (`fb-error-kind`, `fb-error`, `fb-original-message-id`,
/// `fb-receive-count`) describe the last failure and are stripped; `AWS.*` names are SQS's own.
pub fn attributes_to_send(received: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    received
        .iter()
        .filter(|(name, _)| {
            let bridge = name.starts_with(attributes::PREFIX);
            let reserved = name.to_ascii_lowercase().starts_with("aws.")
                || name.to_ascii_lowercase().starts_with("amazon.");
            !reserved && (!bridge || READ_ATTRIBUTES.contains(&name.as_str()))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_attributes_are_stripped_and_the_producers_kept() {
        let received = BTreeMap::from(
            [
                ("fb-error-kind", "render"),
                ("fb-error", "template failed"),
                ("fb-original-message-id", "m-1"),
                ("fb-receive-count", "3"),
                ("fb-first-failure", "2026-11-28T10:00:00Z"),
                ("fb-something-new", "x"),
                ("AWS.SentTimestamp", "1764324000000"),
                ("trace-id", "abc"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let sent = attributes_to_send(&received);
        assert_eq!(
            sent.keys().map(String::as_str).collect::<Vec<_>>(),
            ["fb-first-failure", "trace-id"]
        );
    }
}
