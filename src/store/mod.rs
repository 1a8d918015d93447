//! The dedup and lifecycle store: one record per (finding id, team), keyed by its marker.
//!
//! Every piece of work on a (finding, team) first takes a *claim*: a lease that only one worker
//! (process or task) holds at a time. The claim is what prevents duplicate tickets when the same
//! finding is delivered to several replicas at once; a lease that is never released (the holder
//! was SIGKILLed) expires and the next delivery takes over. Two implementations: SQLite (one
//! replica, embedded) and DynamoDB (several replicas, conditional writes).

pub mod dynamodb;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::finding::{Schema, WriteBackId};
use crate::marker::Marker;
use crate::ticket::TicketRef;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the bridge remembers about one (finding, team).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub marker: Marker,
    pub finding_id: String,
    pub team: String,
    pub schema: Schema,
    /// How to address the finding in a Security Hub write-back.
    pub write_back: WriteBackId,
    /// The rule that created the ticket (its `status_map` and lifecycle options apply).
    pub rule: String,
    /// `None` only between a claim and a successful create (never stored that way by `put`).
    pub ticket: Option<TicketRef>,
    /// `UpdatedAt` of the newest finding version processed (RFC 3339), for staleness.
    pub updated_at: Option<String>,
    /// Hash of the ticket-relevant fields of that version; equal → nothing to do.
    pub fingerprint: String,
    /// Severity label last reflected on the ticket.
    pub severity: String,
    /// The finding is resolved (ARCHIVED / PASSED) as far as the bridge has processed it.
    pub finding_resolved: bool,
    /// The bridge itself closed the ticket (so a later "done" status is not news to write back).
    pub closed_by_bridge: bool,
    /// Last workflow status the bridge wrote to Security Hub (`NOTIFIED`, `RESOLVED`, …).
    pub status_to_hub: Option<String>,
    /// Last ticket status the bridge saw (`Done`, `6`, …).
    pub status_from_ticket: Option<String>,
    /// Unix seconds of the last change of this record.
    pub modified_at: i64,
}

/// Result of [`Store::claim`].
// One claim per message: the size of the record is no cost worth a `Box` in the contract.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The caller holds the lease until it calls `put` or `release` or the lease runs out.
    /// Carries the stored record, if the key was seen before.
    Acquired(Option<Record>),
    /// Another worker holds a live lease on this key: try again later (leave the message).
    Busy,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttling, timeouts, a busy database: retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The caller's lease was lost (expired and taken by another worker) before it wrote.
    #[error("claim on {0} was lost before the write")]
    LostClaim(String),
    /// Corrupt or incompatible data, misconfiguration (missing table): needs a person.
    #[error("store error: {0}")]
    Fatal(String),
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::LostClaim(_))
    }
}

/// Dedup store contract. `owner` identifies one unit of work (e.g. `hostname:pid:task`), so a
/// stale holder can never overwrite the work of the next.
pub trait Store: Send + Sync {
    /// Takes the lease on `marker` for `lease`, unless another owner holds an unexpired lease.
    /// Taking a lease one already holds renews it.
    fn claim<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>>;

    /// Writes the record and releases the lease, only if `owner` still holds it
    /// ([`StoreError::LostClaim`] otherwise).
    fn put<'a>(
        &'a self,
        record: &'a Record,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Releases the lease without writing (work abandoned or nothing to do). Releasing a lease
    /// one does not hold is a no-op.
    fn release<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Reads a record without claiming it (status sync, `render`-style tooling).
    fn get<'a>(&'a self, marker: &'a Marker) -> BoxFuture<'a, Result<Option<Record>, StoreError>>;

    /// Updates the sync-side fields of a record (`status_from_ticket`, `status_to_hub`) without
    /// a claim; last writer wins for these two fields only.
    fn set_sync_status<'a>(
        &'a self,
        marker: &'a Marker,
        status_from_ticket: Option<&'a str>,
        status_to_hub: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// A named watermark (status sync per connection), RFC 3339.
    fn watermark<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>>;

    fn set_watermark<'a>(
        &'a self,
        name: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Cheap reachability probe for `/readyz`.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}
