//! The dedup and lifecycle store: one record per (finding id, team), keyed by its marker, and one
//! entry per finding that lists the teams working on it and remembers its resolution.
//!
//! Invariants (both implementations, every one a single conditional write or transaction):
//! - **Claims.** Every piece of work on a (finding, team) first takes a *claim*: a lease that
//!   only one unit of work holds at a time. Owners are unique per unit of work, so the owner is
//!   the fencing token: a renewal, an intent or a record is written only while `lease_owner`
//!   still names the writer, and a lease is renewed only while it is still held and unexpired.
//!   A lease that is never released (SIGKILL) expires and the next delivery takes over.
//! - **Intents.** Before a create request leaves, its [`Intent`] is stored on the key. Releasing
//!   the claim keeps the intent; only recording the ticket ([`Store::put`]) or the holder's own
//!   proof that the request never went out ([`Store::set_intent`] with `None`) removes it. Any
//!   later holder that finds an intent searches for the marker only after `search_after`.
//! - **Per-field writes.** [`Store::put`] writes the lifecycle's fields and leaves the status
//!   fields that status sync owns ([`Store::set_sync_status`]) as they are, unless told to reset
//!   them for a new ticket, so neither side overwrites the other.
//! - **Finding index and tombstone.** A team is *enlisted* on the finding while it holds its
//!   claim, and a resolution raises the finding's `resolved_at` before the teams are read, each
//!   in one atomic step on the same entry: either the resolver sees the team (and follows it
//!   under a claim) or the team's holder sees the tombstone (and creates nothing).
//!
//! Two implementations: SQLite (one replica, embedded) and DynamoDB (several replicas).

mod acceptance;
mod coordination;
pub mod dynamodb;
pub mod sqlite;

pub use acceptance::{Acceptance, MAX_ACCEPTANCES};
pub use coordination::{MAX_SYNC_RETRIES, STATUS_SYNC_LEASE, SyncRetry};

use std::time::Duration;

use crate::finding::{Schema, WriteBackId};
use crate::marker::Marker;
use crate::ticket::TicketRef;

pub use crate::BoxFuture;

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
    /// The ticket's due date, its rendered escalation and whether its breach was handled
    /// (README, "SLA due dates and escalation"); `None`: no due date (and every record stored
    /// before due dates existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<crate::mapping::sla::SlaState>,
    /// The record's place in a grouped ticket (README, "Grouped tickets"); `None` for a ticket of
    /// its own (and every record stored before groups existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Grouping>,
}

/// How a record takes part in a grouped ticket.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Grouping {
    /// A finding's record whose ticket is its group's: the group's record is under `marker`.
    Member { key: String, marker: Marker },
    /// The record of a group ticket (keyed by the group marker), with the findings it lists.
    Group {
        key: String,
        items: Vec<crate::mapping::group::GroupItem>,
    },
}

impl Record {
    /// The items of a group ticket's record; `None` for any other record.
    pub fn group_items(&self) -> Option<&[crate::mapping::group::GroupItem]> {
        match &self.group {
            Some(Grouping::Group { items, .. }) => Some(items),
            _ => None,
        }
    }
}

/// A create that was started and whose outcome is not recorded yet. Stored before the request
/// leaves; a holder that finds one must not create before it has searched for the marker at or
/// after `search_after`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Intent {
    /// The unit of work that started the create.
    pub owner: String,
    /// Ticket connection the create went to.
    pub system: String,
    /// Unix milliseconds when the create was started.
    pub started_at: i64,
    /// Unix milliseconds from which a marker search is trusted to show the ticket if the create
    /// made one: start + send window + request timeout + the search index's lag.
    pub search_after: i64,
}

/// What a claim found on its key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Claimed {
    /// The stored record, if the key was recorded before.
    pub record: Option<Record>,
    /// An earlier create whose outcome nobody recorded.
    pub intent: Option<Intent>,
}

/// What the store knows of one finding across teams.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FindingState {
    /// Teams enlisted on the finding (their tickets, or work in progress towards one), sorted.
    pub teams: Vec<String>,
    /// `UpdatedAt` (RFC 3339) of the newest resolved version seen: an active version older than
    /// this is stale, whichever order they arrive in.
    pub resolved_at: Option<String>,
    /// False when the store had no entry for the finding before this call: a finding seen for
    /// the first time, or one recorded before the index existed (look per team then).
    pub indexed: bool,
}

/// Whether [`Store::put`] leaves the status-sync fields as stored or replaces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncFields {
    /// Keep what status sync wrote (every update of an existing ticket).
    Keep,
    /// Write the record's values (a new ticket: nothing synced for it yet).
    Replace,
}

/// Unix milliseconds of an RFC 3339 time; `None` when it cannot be read.
pub fn rfc3339_millis(value: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(value)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The key of a finding in the index: SHA-256 of its id, so any id fits any store key.
pub fn finding_key(finding_id: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(finding_id.as_bytes())[..16])
}

/// Result of [`Store::claim`].
// One claim per message: the size of the record is no cost worth a `Box` in the contract.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The caller holds the lease until it calls `put` or `release` or the lease runs out.
    /// Carries what is stored on the key.
    Acquired(Claimed),
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
    /// The store refuses the bridge as a whole (access denied after an IAM change, expired
    /// credentials, the table gone): no finding's fault. The store connection pauses until a
    /// ping succeeds; nothing is dead-lettered for it.
    #[error("store refused: {0}")]
    Refused(String),
    /// Corrupt or incompatible data: needs a person.
    #[error("store error: {0}")]
    Fatal(String),
}

impl crate::retry::Retryable for StoreError {
    fn retry(&self) -> crate::retry::Retry {
        match self {
            StoreError::Unavailable(_) | StoreError::LostClaim(_) => crate::retry::Retry::LATER,
            StoreError::Refused(_) | StoreError::Fatal(_) => crate::retry::Retry::Permanent,
        }
    }
}

/// Dedup store contract. `owner` identifies one unit of work (`<process id>:<counter>`), never
/// reused, so it doubles as the fencing token of every conditional write.
pub trait Store: Send + Sync {
    /// How long a record is kept after its last write; `None`: until it is deleted. The
    /// lifecycle skips the marker search only for findings younger than this.
    fn retention(&self) -> Option<Duration> {
        None
    }

    /// Takes the lease on `marker` for `lease` when it is free or expired.
    fn claim<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>>;

    /// Extends a lease `owner` still holds (same owner, not expired) to `lease` from now.
    /// `Ok(false)`: the lease is lost; the holder must stop before its next write.
    fn renew<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Stores (or, with `None`, removes) the create intent on the key, only while `owner` holds
    /// the lease ([`StoreError::LostClaim`] otherwise).
    fn set_intent<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
        intent: Option<&'a Intent>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Writes the record's lifecycle fields, removes any intent and releases the lease, only if
    /// `owner` still holds it ([`StoreError::LostClaim`] otherwise). The status-sync fields are
    /// kept or replaced as `sync` says.
    fn put<'a>(
        &'a self,
        record: &'a Record,
        owner: &'a str,
        sync: SyncFields,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Releases the lease without writing (work finished with nothing to record, or abandoned).
    /// Keeps the record and any intent. Releasing a lease one does not hold is a no-op.
    fn release<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Reads a record without claiming it (status sync, tooling).
    fn get<'a>(&'a self, marker: &'a Marker) -> BoxFuture<'a, Result<Option<Record>, StoreError>>;

    /// Adds `team` to the finding's teams and returns the finding's state as it was before
    /// (the tombstone in particular), in one atomic step. Call while holding the team's claim.
    fn enlist<'a>(
        &'a self,
        finding_id: &'a str,
        team: &'a str,
    ) -> BoxFuture<'a, Result<FindingState, StoreError>>;

    /// Raises the finding's tombstone to `updated_at` (never lowers it) and returns the
    /// finding's state, in one atomic step: every team enlisted before is in `teams`.
    fn resolve<'a>(
        &'a self,
        finding_id: &'a str,
        updated_at: &'a str,
    ) -> BoxFuture<'a, Result<FindingState, StoreError>>;

    /// Reads the finding's state (strongly consistent).
    fn finding<'a>(
        &'a self,
        finding_id: &'a str,
    ) -> BoxFuture<'a, Result<FindingState, StoreError>>;

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

    // ---- One status poller across replicas: the lease, fenced watermarks, the retry queue ----

    /// Takes the lease `name` for `owner` until `ttl` from now when it is absent, expired or
    /// already `owner`'s (then it is renewed), in one conditional write. `Ok(Some(fence))`: held;
    /// `fence` (unix ms of this grant) is larger than any fence an earlier holder was given.
    /// `Ok(None)`: another owner holds it and it has not expired.
    fn acquire_lease<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<i64>, StoreError>>;

    /// Ends `owner`'s hold on the lease now, so the next [`Store::acquire_lease`] by anyone
    /// succeeds; a no-op when `owner` does not hold it. The last fence is kept.
    fn release_lease<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// [`Store::set_watermark`] for a lease holder with `fence`: written unless a larger fence
    /// wrote the watermark before (`Ok(false)`, nothing written).
    fn set_watermark_fenced<'a>(
        &'a self,
        name: &'a str,
        value: &'a str,
        fence: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Queues `retry`, replacing the marker's entry if it has one. `Ok(false)`: the marker was not
    /// queued and the queue already holds [`MAX_SYNC_RETRIES`] entries; nothing was written.
    fn enqueue_sync_retry<'a>(
        &'a self,
        retry: &'a SyncRetry,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// At most `limit` queued retries due at `now` (unix ms), the longest due first.
    fn sync_retries_due<'a>(
        &'a self,
        now: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<SyncRetry>, StoreError>>;

    /// Takes the marker's entry off the retry queue; a no-op when it has none.
    fn remove_sync_retry<'a>(&'a self, marker: &'a Marker)
    -> BoxFuture<'a, Result<(), StoreError>>;

    // ---- reconcile (issue 16): the records as a whole, rebuilt and dropped under a claim ----

    /// One page of the stored records (keys that only hold a claim or an intent are skipped):
    /// `cursor` is the previous page's [`RecordsPage::next`], `limit` how many keys one page
    /// reads at most. Pages stream: the store is never read into memory whole.
    fn records_page<'a>(
        &'a self,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<RecordsPage, StoreError>>;

    /// Stores `record`, rebuilt from its ticket, only while `owner` holds the claim on its
    /// marker and the key holds neither a record nor a create intent; then releases the claim.
    /// What is stored is never overwritten ([`Adoption::RecordExists`],
    /// [`Adoption::CreatePending`]); a claim that is no longer `owner`'s is
    /// [`StoreError::LostClaim`]. The status-sync fields are written as given.
    fn adopt<'a>(
        &'a self,
        record: &'a Record,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Adoption, StoreError>>;

    /// Deletes the key `marker` (a record whose ticket no longer exists), only while `owner`
    /// holds its claim and no create intent is on it; the claim goes with it. `Ok(false)`: an
    /// intent is there and nothing was deleted; [`StoreError::LostClaim`]: the claim is not
    /// `owner`'s (any more).
    fn drop_record<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    // ---- risk acceptance that expires (issue 15): the expiry schedule (`acceptance.rs`) ----

    /// Schedules the marker's expiry, replacing its entry if it has one. `Ok(false)`: the marker
    /// was not scheduled and the schedule already holds [`MAX_ACCEPTANCES`]; nothing was written.
    fn schedule_acceptance<'a>(
        &'a self,
        acceptance: &'a Acceptance,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// At most `limit` scheduled expiries due at `now` (unix ms), the earliest first.
    fn acceptances_due<'a>(
        &'a self,
        now: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Acceptance>, StoreError>>;

    /// Removes the marker's entry: any entry with `until = None`, else only one that still runs
    /// out at `until` (`Ok(false)`: another date is stored and it stays). No entry is `Ok(true)`.
    fn clear_acceptance<'a>(
        &'a self,
        marker: &'a Marker,
        until: Option<i64>,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Reads the records of several markers (the status sync's poll page) as [`Store::get`]
    /// does, strongly consistent; a marker without a record is absent from the map. The default
    /// reads them one by one; DynamoDB reads up to 100 in one request.
    fn get_many<'a>(
        &'a self,
        markers: &'a [Marker],
    ) -> BoxFuture<'a, Result<std::collections::HashMap<Marker, Record>, StoreError>> {
        Box::pin(async move {
            let mut records = std::collections::HashMap::with_capacity(markers.len());
            for marker in markers {
                if let Some(record) = self.get(marker).await? {
                    records.insert(marker.clone(), record);
                }
            }
            Ok(records)
        })
    }
}

/// One page of [`Store::records_page`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordsPage {
    pub records: Vec<Record>,
    /// Where the next page starts; `None` after the last one.
    pub next: Option<String>,
}

/// What [`Store::adopt`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adoption {
    /// The record is stored and the claim released.
    Adopted,
    /// A record is stored on the key already; it was left as it is.
    RecordExists,
    /// A create's intent is on the key: its outcome is the lifecycle's to settle.
    CreatePending,
}
