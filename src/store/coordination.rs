//! What the store keeps for status sync to run once across replicas: a named *lease* (who polls),
//! fenced watermarks (what the poller has read up to), and the *retry queue* of write-backs
//! Security Hub refused.
//!
//! - **Lease.** [`Store::acquire_lease`](super::Store::acquire_lease) takes a named lease when it
//!   is absent, expired or already the caller's, in one conditional write; owners are unique per
//!   process start. Each grant returns its *fence*: the unix milliseconds of the grant, so a
//!   later holder's fence is larger than any fence an earlier holder was ever given (the later
//!   holder could only take the lease after the earlier one's last grant ran out; replica clocks
//!   agree to well within a lease). Releasing ends the hold at once and keeps the last fence.
//! - **Fenced watermark.** [`Store::set_watermark_fenced`](super::Store::set_watermark_fenced)
//!   writes only when no larger fence wrote the watermark before: a deposed poller whose write
//!   arrives late cannot move the watermark back under the poller that took over.
//! - **Retry queue.** One entry per marker ([`SyncRetry`]), at most [`MAX_SYNC_RETRIES`];
//!   enqueueing a marker already queued replaces its entry, so enqueueing is idempotent. Whichever
//!   replica holds the lease works through the entries that are due.

use crate::marker::Marker;

/// The lease status sync polls under: one holder across every replica sharing the store.
pub const STATUS_SYNC_LEASE: &str = "status-sync";

/// Most entries the retry queue holds. A refusal that finds the queue full is reported and not
/// retried (the next change of the ticket brings it back); the bound keeps the DynamoDB item
/// that holds the queue far below DynamoDB's 400 KB item limit (about 80 bytes an entry).
pub const MAX_SYNC_RETRIES: usize = 1000;

/// A finding whose ticket status Security Hub refused, waiting to be synced again from its
/// ticket's current status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRetry {
    pub marker: Marker,
    /// The ticket connection the marker's ticket lives in (`jira`, `servicenow`).
    pub connection: String,
    /// Retries already made (0 for a refusal queued for the first time).
    pub attempts: u32,
    /// Unix milliseconds from which the entry is due.
    pub due_at: i64,
}
