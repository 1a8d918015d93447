//! Keeping a message hidden while its work runs (a heartbeat that extends its visibility), and
//! deleting finished messages in batches.

use super::*;

/// Runs `work` while extending the message's visibility every third of the timeout, so slow
/// ticket systems never make the message reappear (and be worked on twice) mid-flight.
pub(super) async fn with_heartbeat<F: Future<Output = Disposition>>(
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

/// How long a finished message may wait for others to share its `DeleteMessageBatch`.
const DELETE_GATHER: Duration = Duration::from_millis(200);

/// Deletes finished messages in batches of up to 10, retrying failed entries once. A message
/// leaves the in-flight table only here, so a redelivery meanwhile updates the handle we use.
///
/// A finished message waits up to `DELETE_GATHER` (a tenth of the visibility timeout if that is
/// shorter) for others: a busy worker's tasks end one at a time, and deleting each at once costs
/// one request per message. The wait changes nothing that matters: the finding's work is done and
/// recorded, and a copy delivered meanwhile is known to be in flight here (and would find the work
/// done). At shutdown the channel closes and what is gathered is deleted at once.
pub(super) async fn delete_loop(
    shared: Arc<Shared>,
    mut finished: mpsc::UnboundedReceiver<String>,
) {
    let gather = DELETE_GATHER.min(shared.config.visibility_timeout / 10);
    while let Some(first) = finished.recv().await {
        let mut ids = vec![first];
        let deadline = tokio::time::Instant::now() + gather;
        while ids.len() < MAX_MESSAGES_PER_CALL {
            match tokio::time::timeout_at(deadline, finished.recv()).await {
                Ok(Some(id)) => ids.push(id),
                Ok(None) | Err(_) => break,
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
pub(super) async fn delete_batch(shared: &Shared, ids: &[String]) -> Vec<String> {
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

pub(super) fn log_queue_error(operation: &str, e: &QueueError) {
    tracing::warn!(operation, error = %e, transient = e.is_transient(), "queue call failed");
}
