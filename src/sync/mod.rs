//! Status sync: ticket status back to the finding's workflow state in Security Hub.
//!
//! Two ways in, one decision:
//! - the poller ([`StatusSync::poll_once`], [`StatusSync::run`]) asks every ticket connection for
//!   bridge tickets updated since a watermark stored per connection and table (`sync:<connection>`;
//!   `sync:<connection>:<table>` for a ServiceNow table other than the connection's default),
//!   minus an overlap window, because ticket systems index updates late and Jira's JQL dates
//!   only have minute precision. Only the replica holding the store's status-sync lease polls,
//!   and its watermark writes are fenced by the lease (`leader.rs`);
//! - webhooks ([`crate::sync::webhooks`]) call [`StatusSync::sync_ticket`] for one ticket at once,
//!   on whichever replica receives them.
//!
//! Either way the ticket's status goes through its rule's `status_map` ([`map_status`]) and is
//! written only when it differs from what the bridge last wrote (`Record::status_to_hub`). That
//! comparison is what stops ping-pong: the "Imported" event Security Hub emits after our write is
//! swallowed by the lifecycle's fingerprint, and a ticket whose status we already reflected causes
//! no second write. A ticket the bridge itself closed (its finding was resolved) is never written
//! back, and a finding the bridge saw resolved is never moved back to an open workflow state by a
//! ticket someone reopened: recurrence is the finding's business, not the ticket's.
//!
//! Writes go out in batches of at most 100 through [`FindingWriter`]. The watermark only moves
//! after the writes of a tick went through; findings Security Hub lists as unprocessed are not
//! recorded as written but queued in the store ([`Store::enqueue_sync_retry`]) and retried on the
//! next ticks by whichever replica polls (a bounded number of times, then reported and dropped —
//! the next change of the ticket brings them back).

pub mod webhooks;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::aws::securityhub::client::MAX_FINDINGS_PER_CALL;
use crate::aws::securityhub::{FindingWriter, WorkflowUpdate};
use crate::finding::WorkflowStatus;
use crate::mapping::spec::{StatusMap, TargetKind};
use crate::marker::Marker;
use crate::pipeline::plan::MappingsHandle;
use crate::runtime::shutdown::Shutdown;
use crate::runtime::telemetry::{self, ErrorKind, WritebackResult};
use crate::store::{Record, Store, StoreError, SyncRetry};
use crate::ticket::{TicketError, TicketRef, TicketStatus, TicketSystem, TicketUpdate};

mod acceptance;
mod config;
mod decide;
mod leader;
mod poller;
mod report;
mod status_map;
pub use config::{SYNC_INTERVAL_ENV, SYNC_LEASE_ENV, SyncConfig, SyncConfigError};
pub use report::*;
pub use status_map::*;

/// Prefix of the store watermark of each connection: `sync:jira`, `sync:servicenow`.
pub const WATERMARK_PREFIX: &str = "sync:";

/// One ticket on its way through the decision.
#[derive(Debug, Clone)]
struct Candidate {
    connection: String,
    ticket: TicketRef,
    marker: Marker,
    status: TicketStatus,
    /// The ticket system's own update time, as reported; `None` for webhook and retry syncs.
    updated_at: Option<String>,
}

impl Candidate {
    fn updated_time(&self) -> Option<DateTime<Utc>> {
        self.updated_at.as_deref().and_then(parse_time)
    }
}

/// A write the decision asked for.
#[derive(Clone)]
struct Pending {
    candidate: Candidate,
    record: Record,
    status: WorkflowStatus,
    /// A risk acceptance's end (the status map entry has `for`), already in the schedule.
    accepted_until: Option<DateTime<Utc>>,
}

enum Decision {
    Write(Box<Pending>),
    Skip(SkipReason),
}

/// How one pending write ended.
enum WriteResult {
    Written(WorkflowStatus),
    Unprocessed { code: String, message: String },
    Failed(String),
}

#[derive(Debug, Default)]
struct SyncState {
    /// Per poll target (`jira`, `servicenow:sn_si_incident`): ticket key → update time already
    /// handled (the overlap de-duplication).
    seen: HashMap<String, HashMap<String, String>>,
    /// Unmapped statuses already logged, so a stuck ticket does not log every minute.
    warned: HashSet<String>,
    /// Per poll target: when its last complete poll ended (or it was first tried), for the
    /// sync-lag gauge.
    last_complete: HashMap<String, std::time::Instant>,
}

/// Syncs ticket status back to Security Hub for every configured connection.
pub struct StatusSync {
    store: Arc<dyn Store>,
    tickets: HashMap<String, Arc<dyn TicketSystem>>,
    writer: Arc<dyn FindingWriter>,
    mappings: MappingsHandle,
    config: SyncConfig,
    state: Mutex<SyncState>,
    /// One poll at a time, whoever asks (the `run` loop, a manual `sync --once` in-process).
    polling: tokio::sync::Mutex<()>,
    /// This process in the status-sync lease: unique per process start (and per instance).
    owner: String,
    /// Wall-clock time for risk acceptances (injectable so tests expire them on paused time).
    clock: crate::mapping::template::Clock,
}

impl std::fmt::Debug for StatusSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut connections: Vec<&String> = self.tickets.keys().collect();
        connections.sort();
        f.debug_struct("StatusSync")
            .field("connections", &connections)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl StatusSync {
    /// `tickets` is keyed by connection name (`jira`, `servicenow`), as in `TicketRef::system`.
    pub fn new(
        store: Arc<dyn Store>,
        tickets: HashMap<String, Arc<dyn TicketSystem>>,
        writer: Arc<dyn FindingWriter>,
        mappings: MappingsHandle,
        config: SyncConfig,
    ) -> StatusSync {
        StatusSync {
            store,
            tickets,
            writer,
            mappings,
            config,
            state: Mutex::new(SyncState::default()),
            polling: tokio::sync::Mutex::new(()),
            owner: leader::unique_owner(),
            clock: Arc::new(Utc::now),
        }
    }

    /// Holds the status-sync lease as `owner` (`run` passes its process's owner id, the same
    /// one its claims are made under) instead of a name made up for this instance.
    pub fn with_owner(mut self, owner: impl Into<String>) -> StatusSync {
        self.owner = owner.into();
        self
    }

    /// Reads the time risk acceptances start and expire by from `clock` instead of the system
    /// clock (tests).
    pub fn with_clock(mut self, clock: crate::mapping::template::Clock) -> StatusSync {
        self.clock = clock;
        self
    }

    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Syncs one ticket now (a webhook said it changed). The status is read fresh from the
    /// ticket system rather than taken from the event, because webhooks arrive out of order and
    /// may be retried long after. `ticket_id` (key, id or `sys_id`) must be the ticket the
    /// marker's record points at; a marker is required because the store is keyed by it.
    pub async fn sync_ticket(
        &self,
        connection: &str,
        marker: &Marker,
        ticket_id: Option<&str>,
    ) -> Result<TicketSyncOutcome, SyncError> {
        let (outcome, _) = self.sync_one(connection, marker, ticket_id).await?;
        if let TicketSyncOutcome::Unprocessed { code, message } = &outcome
            && !self.schedule_retry(connection, marker).await?
        {
            tracing::error!(%marker, code, message, "Security Hub refused the ticket status and the retry queue is full; not retried until the ticket changes again");
        }
        Ok(outcome)
    }
}

fn workflow_update(pending: &Pending) -> WorkflowUpdate {
    let candidate = &pending.candidate;
    let system = system_label(&candidate.connection);
    let note = match pending.accepted_until {
        Some(until) => acceptance::accepted_note(system, candidate, until),
        None => format!(
            "{system} {} moved to {}; set to {} by findings-bridge status sync. {}",
            candidate.ticket.key, candidate.status.name, pending.status, candidate.ticket.url
        ),
    };
    WorkflowUpdate::new(
        pending.record.write_back.clone(),
        pending.record.finding_id.clone(),
        Some(pending.status),
        None,
        &note,
    )
}

/// The findings a ticket's status is written to: the record's own finding, or every open item
/// of a group ticket (README, "Grouped tickets"); a resolved item keeps its state.
fn write_targets(record: &Record) -> Vec<(crate::finding::WriteBackId, String)> {
    match record.group_items() {
        Some(items) => items
            .iter()
            .filter(|i| !i.resolved)
            .map(|i| (i.write_back.clone(), i.id.clone()))
            .collect(),
        None => vec![(record.write_back.clone(), record.finding_id.clone())],
    }
}

/// One pending write per finding it reaches: a group ticket's decision becomes one per open
/// item, each with the item's finding id (so the batches' per-finding rules apply to them).
fn per_finding(pendings: Vec<Pending>) -> Vec<Pending> {
    let mut out = Vec::with_capacity(pendings.len());
    for pending in pendings {
        if pending.record.group_items().is_none() {
            out.push(pending);
            continue;
        }
        for (write_back, finding_id) in write_targets(&pending.record) {
            let mut one = pending.clone();
            one.record.write_back = write_back;
            one.record.finding_id = finding_id;
            out.push(one);
        }
    }
    out
}

/// How notes name the ticket system of a connection.
fn system_label(connection: &str) -> &str {
    match crate::mapping::connection_kind(connection) {
        Some(TargetKind::Jira) => "Jira",
        Some(TargetKind::ServiceNow) => "ServiceNow",
        None => connection,
    }
}

/// A ticket system's or the store's timestamp; ticket systems may pad it with whitespace.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    crate::time::parse_time(text.trim())
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jira(name: &str, category: &str) -> TicketStatus {
        TicketStatus {
            name: name.to_owned(),
            category: category.to_owned(),
            done: category == "done",
            resolution: None,
            changed_by: None,
        }
    }

    fn servicenow(code: &str, label: &str) -> TicketStatus {
        TicketStatus {
            name: label.to_owned(),
            category: code.to_owned(),
            done: crate::ticket::servicenow::status::is_done(code),
            resolution: None,
            changed_by: None,
        }
    }

    fn map(entries: &[(&str, WorkflowStatus)]) -> StatusMap {
        StatusMap(
            entries.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            BTreeMap::new(),
        )
    }

    use WorkflowStatus::{Notified, Resolved, Suppressed};

    #[test]
    fn jira_statuses_map_by_name_then_category_then_default() {
        let m = map(&[
            ("Won't Do", Suppressed),
            ("in review", Resolved),
            ("category:indeterminate", Suppressed),
        ]);
        let cases = [
            // Exact name, whatever the case on either side.
            (jira("WON'T DO", "done"), Some(Suppressed)),
            (jira("In Review", "indeterminate"), Some(Resolved)),
            // No name entry: the category entry.
            (jira("In Progress", "indeterminate"), Some(Suppressed)),
            // Neither: defaults.
            (jira("Done", "done"), Some(Resolved)),
            (jira("To Do", "new"), Some(Notified)),
            // A category Jira does not document is not guessed at.
            (jira("Limbo", "undefined"), None),
            (jira("Broken", ""), None),
        ];
        for (status, expected) in cases {
            assert_eq!(
                map_status(&m, TargetKind::Jira, &status),
                expected,
                "{status:?}"
            );
        }
    }

    #[test]
    fn servicenow_states_map_by_label_then_code_then_default() {
        let m = map(&[("state:3", Resolved), ("awaiting vendor", Suppressed)]);
        let cases = [
            (servicenow("3", "On Hold"), Some(Resolved)),
            (servicenow("-5", "Awaiting Vendor"), Some(Suppressed)),
            (servicenow("1", "New"), Some(Notified)),
            (servicenow("2", "In Progress"), Some(Notified)),
            (servicenow("6", "Resolved"), Some(Resolved)),
            (servicenow("7", "Closed"), Some(Resolved)),
            (servicenow("8", "Canceled"), Some(Suppressed)),
            // Custom states (security incident workflow) are unmapped without an entry.
            (servicenow("18", "Contain"), None),
        ];
        for (status, expected) in cases {
            assert_eq!(
                map_status(&m, TargetKind::ServiceNow, &status),
                expected,
                "{status:?}"
            );
        }
    }

    #[test]
    fn keys_of_the_other_system_do_not_apply() {
        let m = map(&[("category:done", Suppressed), ("state:6", Suppressed)]);
        // A ServiceNow state code is not a Jira category, and the reverse.
        assert_eq!(
            map_status(&m, TargetKind::ServiceNow, &servicenow("6", "Resolved")),
            Some(Suppressed)
        );
        assert_eq!(
            map_status(&m, TargetKind::Jira, &jira("Done", "done")),
            Some(Suppressed)
        );
        let only_jira = map(&[("category:done", Suppressed)]);
        assert_eq!(
            map_status(
                &only_jira,
                TargetKind::ServiceNow,
                &servicenow("7", "Closed")
            ),
            Some(Resolved),
            "category: keys are for Jira only"
        );
        // A plain key never matches a code, only a name.
        let by_code = map(&[("6", Suppressed)]);
        assert_eq!(
            map_status(
                &by_code,
                TargetKind::ServiceNow,
                &servicenow("6", "Resolved")
            ),
            Some(Resolved)
        );
    }

    #[test]
    fn interval_comes_from_the_environment_and_rejects_nonsense() {
        let lookup = |value: &'static str| {
            move |name: &str| (name == SYNC_INTERVAL_ENV).then(|| value.to_owned())
        };
        assert_eq!(
            SyncConfig::from_lookup(lookup("15")).unwrap().interval,
            Duration::from_secs(15)
        );
        assert_eq!(
            SyncConfig::from_lookup(lookup(" ")).unwrap().interval,
            Duration::from_secs(60)
        );
        for bad in ["0", "-1", "1m", "1.5"] {
            let err = SyncConfig::from_lookup(lookup(bad)).unwrap_err();
            assert_eq!(err.name, SYNC_INTERVAL_ENV, "{bad}");
        }
        assert_eq!(SyncConfig::default().batch_size(), 100);
        let huge = SyncConfig {
            batch: 1000,
            ..SyncConfig::default()
        };
        assert_eq!(
            huge.batch_size(),
            100,
            "Security Hub's limit caps the batch"
        );
    }
}
