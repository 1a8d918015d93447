//! What happens to a message once its work is done: deleted, retried with backoff, parked while
//! a connection is paused, or dead-lettered with the reason in its attributes.

use super::*;
use crate::aws::sqs::attributes;
use crate::retry::Retryable;
use crate::runtime::telemetry::ErrorKind;

/// SQS limits a message attribute value only by message size; 1 KiB keeps the DLQ readable.
pub const ERROR_ATTRIBUTE_LIMIT: usize = 1024;

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
pub(super) fn jitter(seed: &str) -> f64 {
    let hash = std::collections::hash_map::RandomState::new().hash_one(seed);
    (hash % 10_000) as f64 / 10_000.0
}

/// Cuts `text` to at most `limit` bytes on a character boundary.
pub(super) fn cut_bytes(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

pub(super) enum Disposition {
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
        kind: ErrorKind,
        error: String,
        teams: Vec<String>,
    },
}

pub(super) async fn handle_message(
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
            if busy && message.receive_count >= WAITS_BEFORE_PARKING {
                // Waiting on another worker's claim or a settling create is not a failure, but
                // every receive spends the redrive policy's count: a finding kept busy by a slow
                // rollout would be dead-lettered with nothing wrong. A fresh copy starts at 0.
                park_for(&shared, &message, &error, visibility, Waiting::Busy).await
            } else {
                retry_later(&shared, &message, &error, busy, visibility).await;
                false
            }
        }
        Disposition::Park { error } => park(&shared, &message, &error).await,
        Disposition::Permanent { kind, error, teams } => {
            dead_letter(&shared, &message, kind, &error, &teams).await
        }
    };
    finish(&shared, &message, delete, permit, &deletes);
}

/// Lets the message come back after `visibility` (a busy one also holds a drain run open
/// until then). Never deletes it.
async fn retry_later(
    shared: &Shared,
    message: &ReceivedMessage,
    error: &str,
    busy: bool,
    visibility: Duration,
) {
    let id = &message.message_id;
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
}

/// After the disposition: a handled message is queued for deletion, any other one leaves the
/// in-flight set; the permit goes back either way.
fn finish(
    shared: &Shared,
    message: &ReceivedMessage,
    delete: bool,
    permit: OwnedSemaphorePermit,
    deletes: &mpsc::UnboundedSender<String>,
) {
    let id = &message.message_id;
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

/// Receives after which a message that only waits (another worker's claim, a settling create)
/// is parked instead of coming back. The first wait is usually another task finishing within
/// seconds, so it comes back; from the second, a fresh copy (receive count 0) waits instead, so
/// any redrive policy of 2 receives or more never dead-letters a finding for waiting.
pub(super) const WAITS_BEFORE_PARKING: u32 = 2;

/// Why a message is parked: the log line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiting {
    Paused,
    Busy,
}

/// Re-sends the message with a delay that grows each time it is parked (`fb-parked`), keeping
/// its `fb-first-failure`; the caller deletes the original. A fresh copy starts with receive
/// count 0, so an outage longer than the redrive policy allows still dead-letters nothing. If
/// the copy cannot be sent, the original stays and comes back after a while instead.
pub(super) async fn park(shared: &Shared, message: &ReceivedMessage, error: &str) -> bool {
    let times: u32 = parked_times(message);
    let delay = crate::pipeline::health::park_delay(times);
    park_for(shared, message, error, delay, Waiting::Paused).await
}

fn parked_times(message: &ReceivedMessage) -> u32 {
    message
        .attributes
        .get(attributes::PARKED)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// [`park`] with a given delay.
pub(super) async fn park_for(
    shared: &Shared,
    message: &ReceivedMessage,
    error: &str,
    delay: Duration,
    why: Waiting,
) -> bool {
    let id = &message.message_id;
    let times = parked_times(message);
    let mut attributes = BTreeMap::from([(attributes::PARKED.to_owned(), (times + 1).to_string())]);
    if let Some(first) = message.attributes.get(attributes::FIRST_FAILURE) {
        attributes.insert(attributes::FIRST_FAILURE.to_owned(), first.clone());
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
            match why {
                Waiting::Paused => {
                    tracing::info!(message_id = %id, copy = %copy, parked = times + 1, back_in = ?delay, %error, "parked while a connection or rule is paused")
                }
                Waiting::Busy => {
                    tracing::info!(message_id = %id, copy = %copy, parked = times + 1, back_in = ?delay, %error, "parked while waiting on another worker or a settling create, so the wait spends no receive count")
                }
            }
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

/// Sends the original body to the DLQ with the reason, then lets the caller delete it. Without
/// a DLQ the message stays (its redrive policy moves it after enough receives).
pub(super) async fn dead_letter(
    shared: &Shared,
    message: &ReceivedMessage,
    kind: ErrorKind,
    error: &str,
    teams: &[String],
) -> bool {
    let id = &message.message_id;
    telemetry::error(kind);
    let Some(dlq) = &shared.dlq else {
        tracing::error!(message_id = %id, kind = kind.as_str(), %error, "permanent failure and no DLQ configured; leaving the message to the redrive policy");
        shared.count(|s| s.left_for_redrive += 1);
        return false;
    };
    let first_failure = message
        .attributes
        .get(attributes::FIRST_FAILURE)
        .cloned()
        .unwrap_or_else(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let mut attributes = BTreeMap::from([
        (attributes::ERROR_KIND.to_owned(), kind.as_str().to_owned()),
        (
            attributes::ERROR.to_owned(),
            cut_bytes(error, ERROR_ATTRIBUTE_LIMIT).to_owned(),
        ),
        (attributes::ORIGINAL_MESSAGE_ID.to_owned(), id.clone()),
        (attributes::FIRST_FAILURE.to_owned(), first_failure),
        (
            attributes::RECEIVE_COUNT.to_owned(),
            message.receive_count.to_string(),
        ),
    ]);
    if !teams.is_empty() {
        // The other routes of this message are done; a replay redoes only these.
        attributes.insert(
            attributes::TEAMS.to_owned(),
            cut_bytes(&teams.join(","), ERROR_ATTRIBUTE_LIMIT).to_owned(),
        );
    }
    match dlq.send(&message.body, &attributes).await {
        Ok(dlq_id) => {
            telemetry::dlq_moved(kind);
            tracing::error!(message_id = %id, dlq_message_id = %dlq_id, kind = kind.as_str(), %error, "permanent failure; moved to the DLQ");
            shared.count(|s| s.dead_lettered += 1);
            true
        }
        Err(e) => {
            // Not deleting is the safe side: the message comes back and is tried again.
            tracing::error!(message_id = %id, kind = kind.as_str(), %error, dlq_error = %e, "could not dead-letter the message; leaving it");
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
pub(super) async fn work(shared: &Shared, message: &ReceivedMessage) -> Disposition {
    let findings = match (shared.decode)(message.body.as_bytes()) {
        Ok(findings) => findings,
        Err(e) => {
            return Disposition::Permanent {
                kind: ErrorKind::Decode,
                error: e.to_string(),
                teams: Vec::new(),
            };
        }
    };
    let mut transient: Vec<LifecycleError> = Vec::new();
    let mut paused: Vec<LifecycleError> = Vec::new();
    let mut permanent: Vec<(ErrorKind, String, Option<String>)> = Vec::new();
    for decoded in findings {
        let finding = match decoded {
            Ok(finding) => finding,
            Err(e) => {
                permanent.push((ErrorKind::Decode, e.to_string(), None));
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
        let retry_in = transient.iter().filter_map(Retryable::retry_after).max();
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
