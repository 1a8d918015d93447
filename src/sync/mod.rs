//! Status sync: ticket status back to the finding's workflow state in Security Hub.
//!
//! Two ways in, one decision:
//! - the poller ([`StatusSync::poll_once`], [`StatusSync::run`]) asks every ticket connection for
//!   bridge tickets updated since a watermark stored per connection (`sync:<connection>`), minus
//!   an overlap window, because ticket systems index updates late and Jira's JQL dates only have
//!   minute precision;
//! - webhooks ([`crate::sync::webhooks`]) call [`StatusSync::sync_ticket`] for one ticket at once.
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
//! recorded as written and are retried on the next ticks (a bounded number of times, then
//! reported and dropped — the next change of the ticket brings them back).

pub mod webhooks;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::aws::securityhub::client::MAX_BATCH;
use crate::aws::securityhub::{FindingWriter, WorkflowUpdate};
use crate::finding::WorkflowStatus;
use crate::mapping::spec::{StatusMap, TargetKind};
use crate::marker::Marker;
use crate::pipeline::plan::MappingsHandle;
use crate::runtime::shutdown::Shutdown;
use crate::runtime::telemetry::{self, ErrorKind, WritebackResult};
use crate::store::{Record, Store, StoreError};
use crate::ticket::servicenow::status::{self as state, StateMeaning};
use crate::ticket::{TicketError, TicketRef, TicketStatus, TicketSystem, TicketUpdate};

/// Environment variable holding the seconds between two polls.
pub const SYNC_INTERVAL_ENV: &str = "BRIDGE_SYNC_INTERVAL";

/// Counter of ticket statuses that no status map and no default could place, by `system` and
/// `team`. Operators alert on it: a custom workflow state nobody mapped means findings whose
/// tickets move never change in Security Hub.
pub const UNMAPPED_STATUS_METRIC: &str = "findings_bridge_sync_unmapped_status_total";

/// Prefix of the store watermark of each connection: `sync:jira`, `sync:servicenow`.
pub const WATERMARK_PREFIX: &str = "sync:";

/// Ticket status → workflow status: the team's map first, then the documented defaults.
///
/// Lookup order: a plain key equal to the status name (case-insensitive); then `category:<key>`
/// (Jira status category) or `state:<code>` (ServiceNow state code), whichever fits `kind`; then
/// the defaults:
///
/// | Jira category | ServiceNow state | Workflow status |
/// |---|---|---|
/// | `new`, `indeterminate` | 1 New, 2 In Progress, 3 On Hold | NOTIFIED |
/// | `done` | 6 Resolved, 7 Closed | RESOLVED |
/// | | 8 Canceled | SUPPRESSED |
///
/// `None` (unmapped) means the ticket is in a state neither the team nor the defaults know: a
/// Jira category outside the three documented ones, or a custom ServiceNow state code (security
/// incident tables use 10, 16, 18…; note that `sn_si_incident` state 3 is *Closed*, so such a
/// table needs an explicit `state:3` entry). Callers log it once and count it instead of guessing.
pub fn map_status(
    map: &StatusMap,
    kind: TargetKind,
    status: &TicketStatus,
) -> Option<WorkflowStatus> {
    explicit_status(map, kind, status).or_else(|| default_status(kind, status))
}

fn explicit_status(
    map: &StatusMap,
    kind: TargetKind,
    status: &TicketStatus,
) -> Option<WorkflowStatus> {
    let name = status.name.trim();
    if !name.is_empty() {
        let by_name = map.0.iter().find(|(key, _)| {
            !key.starts_with("category:")
                && !key.starts_with("state:")
                && key.trim().eq_ignore_ascii_case(name)
        });
        if let Some((_, workflow)) = by_name {
            return Some(*workflow);
        }
    }
    let code = status.category.trim();
    if code.is_empty() {
        return None;
    }
    let prefix = match kind {
        TargetKind::Jira => "category:",
        TargetKind::ServiceNow => "state:",
    };
    map.0
        .iter()
        .find(|(key, _)| {
            key.strip_prefix(prefix)
                .is_some_and(|value| value.trim().eq_ignore_ascii_case(code))
        })
        .map(|(_, workflow)| *workflow)
}

fn default_status(kind: TargetKind, status: &TicketStatus) -> Option<WorkflowStatus> {
    let code = status.category.trim();
    match kind {
        TargetKind::Jira => match code.to_ascii_lowercase().as_str() {
            "done" => Some(WorkflowStatus::Resolved),
            "new" | "indeterminate" => Some(WorkflowStatus::Notified),
            _ => None,
        },
        TargetKind::ServiceNow => state::meaning(code).map(|meaning| match meaning {
            StateMeaning::Open => WorkflowStatus::Notified,
            StateMeaning::Resolved => WorkflowStatus::Resolved,
            StateMeaning::Canceled => WorkflowStatus::Suppressed,
        }),
    }
}

/// How the poller paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// Time between two polls ([`SYNC_INTERVAL_ENV`], default 60 s).
    pub interval: Duration,
    /// How far before the watermark each poll starts reading again, so updates the ticket
    /// system indexed late (or stamped within the same minute) are not missed. Tickets seen in
    /// the overlap are de-duplicated by key and update time.
    pub overlap: Duration,
    /// Most new tickets handled per connection and tick; the rest waits for the next tick
    /// (results come oldest first, so the watermark still moves forward).
    pub max_per_tick: usize,
    /// Findings per write-back call (at most 100, Security Hub's limit).
    pub batch: usize,
    /// Where polling starts when a connection has no watermark yet.
    pub first_lookback: Duration,
    /// Ticks a finding Security Hub did not process is retried before it is reported and dropped.
    pub max_retries: u32,
}

impl Default for SyncConfig {
    fn default() -> SyncConfig {
        SyncConfig {
            interval: Duration::from_secs(60),
            overlap: Duration::from_secs(120),
            max_per_tick: 1_000,
            batch: MAX_BATCH,
            first_lookback: Duration::from_secs(7 * 24 * 3600),
            max_retries: 5,
        }
    }
}

/// A setting of the status sync that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct SyncConfigError {
    pub name: &'static str,
    pub message: String,
}

impl SyncConfig {
    /// Defaults with [`SYNC_INTERVAL_ENV`] applied.
    pub fn from_env() -> Result<SyncConfig, SyncConfigError> {
        SyncConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`SyncConfig::from_env`] over any variable source. The interval is whole seconds, at
    /// least 1; unset or empty keeps the default.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<SyncConfig, SyncConfigError> {
        let mut config = SyncConfig::default();
        if let Some(raw) = lookup(SYNC_INTERVAL_ENV).filter(|v| !v.trim().is_empty()) {
            let secs = raw
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| SyncConfigError {
                    name: SYNC_INTERVAL_ENV,
                    message: format!("expected a whole number of seconds ≥ 1, got {raw:?}"),
                })?;
            config.interval = Duration::from_secs(secs);
        }
        Ok(config)
    }

    fn batch_size(&self) -> usize {
        self.batch.clamp(1, MAX_BATCH)
    }
}

/// Why a ticket caused no write-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// No marker, or a marker this store does not know (another environment's ticket).
    NotBridge,
    /// The marker's record points at another ticket (replaced after a recurrence) or another
    /// connection: this ticket no longer speaks for the finding.
    OtherTicket,
    /// Security Hub already shows the status this ticket maps to (the bridge wrote it).
    Unchanged,
    /// The bridge closed this ticket because the finding was resolved.
    ClosedByBridge,
    /// The finding is resolved and the ticket asks for an open state: never reopen a finding.
    FindingResolved,
    /// Neither the team's map nor the defaults know this status.
    Unmapped,
    /// Another team's ticket of the same finding changed later in the same tick and won.
    Superseded,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotBridge => "not_bridge",
            SkipReason::OtherTicket => "other_ticket",
            SkipReason::Unchanged => "unchanged",
            SkipReason::ClosedByBridge => "closed_by_bridge",
            SkipReason::FindingResolved => "finding_resolved",
            SkipReason::Unmapped => "unmapped",
            SkipReason::Superseded => "superseded",
        }
    }
}

/// What syncing one ticket did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TicketSyncOutcome {
    /// The workflow status was written and recorded.
    Written {
        status: WorkflowStatus,
    },
    /// Security Hub did not apply it; it is retried on the next polls.
    Unprocessed {
        code: String,
        message: String,
    },
    Skipped {
        reason: SkipReason,
    },
}

/// Why syncing one ticket failed (webhooks answer with it; the poller reports it).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no ticket connection named {0:?}")]
    UnknownConnection(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ticket(#[from] TicketError),
    #[error(transparent)]
    Write(#[from] crate::aws::securityhub::WriteError),
}

/// A finding Security Hub did not update, with the ticket that asked for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnprocessedTicket {
    pub connection: String,
    pub ticket: String,
    pub finding_id: String,
    pub code: String,
    pub message: String,
}

/// What one [`StatusSync::poll_once`] did, over every connection. Printed by `sync --once`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    /// Result pages fetched from the ticket systems.
    pub pages: usize,
    /// Tickets the ticket systems returned (duplicates included).
    pub read: usize,
    /// Tickets seen before at the same update time (overlap window, or twice in one poll).
    pub duplicates: usize,
    /// Findings whose workflow status was written.
    pub written: usize,
    /// Tickets that caused no write, by reason.
    pub skipped: BTreeMap<&'static str, usize>,
    /// Findings earlier Security Hub refusals that were tried again this tick.
    pub retried: usize,
    /// Findings Security Hub refused this tick (retried next tick unless `abandoned`).
    pub unprocessed: Vec<UnprocessedTicket>,
    /// Findings refused on every one of their retries: reported and no longer retried.
    pub abandoned: Vec<UnprocessedTicket>,
    /// Connection-level failures (ticket search, store, write-back call).
    pub errors: Vec<String>,
    /// Connections that had more new tickets than `max_per_tick`.
    pub truncated: Vec<String>,
    /// The watermark of each connection after the poll.
    pub watermarks: BTreeMap<String, String>,
}

impl SyncReport {
    /// No error and nothing Security Hub refused: `sync --once` can exit 0.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.unprocessed.is_empty() && self.abandoned.is_empty()
    }

    fn skip(&mut self, reason: SkipReason) {
        *self.skipped.entry(reason.as_str()).or_insert(0) += 1;
    }
}

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
struct Pending {
    candidate: Candidate,
    record: Record,
    status: WorkflowStatus,
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

/// A finding Security Hub refused, waiting for the next tick.
#[derive(Debug, Clone)]
struct Retry {
    connection: String,
    attempts: u32,
}

#[derive(Debug, Default)]
struct SyncState {
    /// Per connection: ticket key → update time already handled (the overlap de-duplication).
    seen: HashMap<String, HashMap<String, String>>,
    retries: HashMap<Marker, Retry>,
    /// Unmapped statuses already logged, so a stuck ticket does not log every minute.
    warned: HashSet<String>,
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
        }
    }

    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Polls until `shutdown` fires: one poll at once, then one every `interval`. A poll in
    /// progress is abandoned on shutdown; that is safe because writes are idempotent and the
    /// watermark only moves after a poll's writes.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            tokio::select! {
                report = self.poll_once() => log_report(&report),
                () = shutdown.wait() => break,
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.interval) => {}
                () = shutdown.wait() => break,
            }
        }
        tracing::info!("status sync stopped");
    }

    /// One poll of every connection (in name order), retries of earlier refusals first.
    pub async fn poll_once(&self) -> SyncReport {
        let _one_at_a_time = self.polling.lock().await;
        let mut report = SyncReport::default();
        self.retry_unprocessed(&mut report).await;
        let mut connections: Vec<(&String, &Arc<dyn TicketSystem>)> = self.tickets.iter().collect();
        connections.sort_by(|a, b| a.0.cmp(b.0));
        for (name, system) in connections {
            self.poll_connection(name, system.as_ref(), &mut report)
                .await;
        }
        report
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
        self.sync_one(connection, marker, ticket_id)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// [`StatusSync::sync_ticket`], also naming the ticket key and finding id when a record
    /// was found (for reports).
    async fn sync_one(
        &self,
        connection: &str,
        marker: &Marker,
        ticket_id: Option<&str>,
    ) -> Result<(TicketSyncOutcome, Option<(String, String)>), SyncError> {
        let skipped = |reason| Ok((TicketSyncOutcome::Skipped { reason }, None));
        let system = self
            .tickets
            .get(connection)
            .ok_or_else(|| SyncError::UnknownConnection(connection.to_owned()))?;
        let Some(record) = self.store.get(marker).await? else {
            return skipped(SkipReason::NotBridge);
        };
        let Some(ticket) = record.ticket.clone() else {
            return skipped(SkipReason::NotBridge);
        };
        let names_other = ticket_id.is_some_and(|id| id != ticket.id && id != ticket.key);
        if names_other || ticket.system != connection {
            return skipped(SkipReason::OtherTicket);
        }
        let named = Some((ticket.key.clone(), record.finding_id.clone()));
        let status = system.status(&ticket).await?;
        let candidate = Candidate {
            connection: connection.to_owned(),
            ticket,
            marker: marker.clone(),
            status,
            updated_at: None,
        };
        let pending = match self.decide(candidate, Some(record)).await? {
            Decision::Skip(reason) => return Ok((TicketSyncOutcome::Skipped { reason }, named)),
            Decision::Write(pending) => *pending,
        };
        let outcome = match self.write(vec![pending]).await.pop() {
            Some((_, WriteResult::Written(status))) => TicketSyncOutcome::Written { status },
            Some((pending, WriteResult::Unprocessed { code, message })) => {
                self.schedule_retry(&pending.candidate);
                TicketSyncOutcome::Unprocessed { code, message }
            }
            Some((_, WriteResult::Failed(message))) => {
                return Err(SyncError::Write(
                    crate::aws::securityhub::WriteError::Transient(message),
                ));
            }
            None => TicketSyncOutcome::Skipped {
                reason: SkipReason::Unchanged,
            },
        };
        Ok((outcome, named))
    }

    async fn poll_connection(
        &self,
        name: &str,
        system: &dyn TicketSystem,
        report: &mut SyncReport,
    ) {
        let watermark_name = format!("{WATERMARK_PREFIX}{name}");
        let stored = match self.store.watermark(&watermark_name).await {
            Ok(w) => w,
            Err(e) => {
                telemetry::error(ErrorKind::Store);
                report
                    .errors
                    .push(format!("{name}: reading the watermark: {e}"));
                return;
            }
        };
        let base = match stored.as_deref().map(|w| (w, parse_time(w))) {
            Some((_, Some(at))) => at,
            Some((raw, None)) => {
                tracing::warn!(
                    connection = name,
                    watermark = raw,
                    "stored watermark is not an RFC 3339 time; starting from the first-run lookback"
                );
                Utc::now() - chrono_duration(self.config.first_lookback)
            }
            None => Utc::now() - chrono_duration(self.config.first_lookback),
        };
        let since = base - chrono_duration(self.config.overlap);
        let since_text = since.to_rfc3339_opts(SecondsFormat::Secs, true);

        let (candidates, complete) = self.collect(name, system, &since_text, report).await;

        let mut pendings = Vec::new();
        let mut newest: Option<DateTime<Utc>> = None;
        let mut failed = !complete;
        let mut handled: Vec<Candidate> = Vec::new();
        for candidate in candidates {
            match self.decide(candidate.clone(), None).await {
                Ok(Decision::Write(pending)) => pendings.push(*pending),
                Ok(Decision::Skip(reason)) => {
                    report.skip(reason);
                    handled.push(candidate);
                }
                Err(e) => {
                    telemetry::error(ErrorKind::Store);
                    report
                        .errors
                        .push(format!("{name} {}: {e}", candidate.ticket.key));
                    failed = true;
                }
            }
        }
        let pendings = self.one_per_finding(pendings, report, &mut handled);
        for (pending, result) in self.write(pendings).await {
            match result {
                WriteResult::Written(_) => {
                    report.written += 1;
                    handled.push(pending.candidate);
                }
                WriteResult::Unprocessed { code, message } => {
                    self.schedule_retry(&pending.candidate);
                    report
                        .unprocessed
                        .push(unprocessed_entry(&pending, code, message));
                    // Handled as far as the watermark goes: the retry queue takes it from here.
                    handled.push(pending.candidate);
                }
                WriteResult::Failed(message) => {
                    report.errors.push(format!(
                        "{name} {}: write-back failed: {message}",
                        pending.candidate.ticket.key
                    ));
                    failed = true;
                }
            }
        }
        {
            let mut state = self.state();
            let seen = state.seen.entry(name.to_owned()).or_default();
            for candidate in &handled {
                if let Some(updated) = &candidate.updated_at {
                    seen.insert(candidate.ticket.key.clone(), updated.clone());
                }
                newest = newest.max(candidate.updated_time());
            }
        }

        let mut current = base;
        if !failed && let Some(newest) = newest.filter(|n| *n > base) {
            let value = newest.to_rfc3339_opts(SecondsFormat::Millis, true);
            match self.store.set_watermark(&watermark_name, &value).await {
                Ok(()) => current = newest,
                Err(e) => {
                    telemetry::error(ErrorKind::Store);
                    report
                        .errors
                        .push(format!("{name}: storing the watermark: {e}"));
                }
            }
        } else if failed && newest.is_some() {
            tracing::warn!(
                connection = name,
                "status sync did not finish cleanly; the watermark stays so the next poll reads the same window again"
            );
        }
        self.prune_seen(name, current);
        if stored.is_some() || current != base {
            report.watermarks.insert(
                name.to_owned(),
                current.to_rfc3339_opts(SecondsFormat::Millis, true),
            );
        }
    }

    /// Pages through the tickets updated since `since`, dropping duplicates. The flag is false
    /// when a page could not be fetched (what was fetched before is still handled).
    async fn collect(
        &self,
        name: &str,
        system: &dyn TicketSystem,
        since: &str,
        report: &mut SyncReport,
    ) -> (Vec<Candidate>, bool) {
        let seen = self.state().seen.get(name).cloned().unwrap_or_default();
        let mut order: Vec<String> = Vec::new();
        let mut by_key: HashMap<String, Candidate> = HashMap::new();
        let mut cursor: Option<String> = None;
        let max = self.config.max_per_tick.max(1);
        // A ticket system that hands back a cursor forever must not keep a tick going forever.
        let max_pages = max.saturating_add(10);
        let mut complete = true;
        'pages: for _ in 0..max_pages {
            let page = match system.updated_since(since, cursor.as_deref()).await {
                Ok(page) => page,
                Err(e) => {
                    telemetry::error(ErrorKind::Ticket);
                    report
                        .errors
                        .push(format!("{name}: polling for updated tickets: {e}"));
                    complete = false;
                    break;
                }
            };
            report.pages += 1;
            for update in page.tickets {
                report.read += 1;
                let TicketUpdate {
                    ticket,
                    marker,
                    status,
                    updated_at,
                } = update;
                let Some(marker) = marker else {
                    report.skip(SkipReason::NotBridge);
                    continue;
                };
                if seen.get(&ticket.key) == Some(&updated_at) {
                    report.duplicates += 1;
                    continue;
                }
                let candidate = Candidate {
                    connection: name.to_owned(),
                    ticket,
                    marker,
                    status,
                    updated_at: Some(updated_at),
                };
                if let Some(existing) = by_key.get_mut(&candidate.ticket.key) {
                    report.duplicates += 1;
                    if candidate.updated_time() >= existing.updated_time() {
                        *existing = candidate;
                    }
                    continue;
                }
                if by_key.len() >= max {
                    report.truncated.push(name.to_owned());
                    break 'pages;
                }
                order.push(candidate.ticket.key.clone());
                by_key.insert(candidate.ticket.key.clone(), candidate);
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let candidates = order
            .into_iter()
            .filter_map(|key| by_key.remove(&key))
            .collect();
        (candidates, complete)
    }

    /// The heart of it: should this ticket's status be written to its finding?
    async fn decide(
        &self,
        candidate: Candidate,
        record: Option<Record>,
    ) -> Result<Decision, StoreError> {
        let record = match record {
            Some(r) => r,
            None => match self.store.get(&candidate.marker).await? {
                Some(r) => r,
                None => return Ok(Decision::Skip(SkipReason::NotBridge)),
            },
        };
        let Some(current) = record.ticket.as_ref() else {
            return Ok(Decision::Skip(SkipReason::NotBridge));
        };
        if current.id != candidate.ticket.id || current.system != candidate.connection {
            return Ok(Decision::Skip(SkipReason::OtherTicket));
        }
        let status = &candidate.status;
        if status.done && record.closed_by_bridge {
            self.remember_ticket_status(&record, status).await;
            return Ok(Decision::Skip(SkipReason::ClosedByBridge));
        }
        let mappings = self.mappings.current();
        let rule = mappings.rule(&record.team, &record.rule);
        let kind = rule
            .map(|r| r.ticket.kind())
            .or_else(|| crate::mapping::connection_kind(&candidate.connection))
            .unwrap_or(if current.table.is_some() {
                TargetKind::ServiceNow
            } else {
                TargetKind::Jira
            });
        let empty = StatusMap::default();
        let map = rule.map_or(&empty, |r| &r.status_map);
        let Some(workflow) = map_status(map, kind, status) else {
            self.warn_unmapped(&candidate, &record, kind);
            self.remember_ticket_status(&record, status).await;
            return Ok(Decision::Skip(SkipReason::Unmapped));
        };
        if record.finding_resolved
            && !matches!(
                workflow,
                WorkflowStatus::Resolved | WorkflowStatus::Suppressed
            )
        {
            self.remember_ticket_status(&record, status).await;
            return Ok(Decision::Skip(SkipReason::FindingResolved));
        }
        if record.status_to_hub.as_deref() == Some(workflow.as_str()) {
            self.remember_ticket_status(&record, status).await;
            return Ok(Decision::Skip(SkipReason::Unchanged));
        }
        Ok(Decision::Write(Box::new(Pending {
            candidate,
            record,
            status: workflow,
        })))
    }

    /// Keeps `status_from_ticket` current even when nothing is written, so an operator reading
    /// the store sees where the ticket stands. Best effort: it decides nothing.
    async fn remember_ticket_status(&self, record: &Record, status: &TicketStatus) {
        if record.status_from_ticket.as_deref() == Some(status.name.as_str()) {
            return;
        }
        if let Err(e) = self
            .store
            .set_sync_status(&record.marker, Some(&status.name), None)
            .await
        {
            tracing::debug!(marker = %record.marker, error = %e, "could not record the ticket status");
        }
    }

    fn warn_unmapped(&self, candidate: &Candidate, record: &Record, kind: TargetKind) {
        metrics::counter!(
            UNMAPPED_STATUS_METRIC,
            "system" => candidate.connection.clone(),
            "team" => record.team.clone()
        )
        .increment(1);
        let key = format!(
            "{}\n{}\n{}\n{}\n{}",
            candidate.connection,
            record.team,
            record.rule,
            candidate.status.name,
            candidate.status.category
        );
        if self.state().warned.insert(key) {
            let hint = match kind {
                TargetKind::Jira => format!("category:{}", candidate.status.category),
                TargetKind::ServiceNow => format!("state:{}", candidate.status.category),
            };
            tracing::warn!(
                connection = %candidate.connection,
                team = %record.team,
                rule = %record.rule,
                ticket = %candidate.ticket.key,
                status = %candidate.status.name,
                code = %candidate.status.category,
                "ticket status has no workflow mapping; add {:?} or {:?} to the rule's status_map (logged once per status)",
                candidate.status.name,
                hint
            );
        }
    }

    /// Security Hub refuses a batch naming one finding twice, and two teams' tickets of one
    /// finding cannot both decide its workflow: the ticket that changed last wins.
    fn one_per_finding(
        &self,
        pendings: Vec<Pending>,
        report: &mut SyncReport,
        handled: &mut Vec<Candidate>,
    ) -> Vec<Pending> {
        let mut winners: Vec<Pending> = Vec::with_capacity(pendings.len());
        let mut index: HashMap<String, usize> = HashMap::new();
        for pending in pendings {
            let finding = pending.record.finding_id.clone();
            match index.get(&finding) {
                Some(&i) => {
                    let newer =
                        pending.candidate.updated_time() > winners[i].candidate.updated_time();
                    let loser = if newer {
                        std::mem::replace(&mut winners[i], pending)
                    } else {
                        pending
                    };
                    tracing::info!(
                        finding_id = %finding,
                        ticket = %loser.candidate.ticket.key,
                        "finding has tickets of several teams; the ticket that changed last decides its workflow"
                    );
                    report.skip(SkipReason::Superseded);
                    handled.push(loser.candidate);
                }
                None => {
                    index.insert(finding, winners.len());
                    winners.push(pending);
                }
            }
        }
        winners
    }

    /// Writes in batches of at most `batch`, then records what Security Hub applied.
    async fn write(&self, pendings: Vec<Pending>) -> Vec<(Pending, WriteResult)> {
        let mut results = Vec::with_capacity(pendings.len());
        let mut rest = pendings.into_iter().peekable();
        while rest.peek().is_some() {
            let batch: Vec<Pending> = rest.by_ref().take(self.config.batch_size()).collect();
            let updates = batch.iter().map(workflow_update).collect::<Vec<_>>();
            match self.writer.write(updates).await {
                Ok(written) => {
                    let refused: HashMap<&str, (&str, &str)> = written
                        .unprocessed
                        .iter()
                        .map(|u| (u.finding_id.as_str(), (u.code.as_str(), u.message.as_str())))
                        .collect();
                    let mut processed = 0;
                    let mut batch_results = Vec::with_capacity(batch.len());
                    for pending in batch {
                        match refused.get(pending.record.finding_id.as_str()) {
                            Some((code, message)) => {
                                tracing::warn!(
                                    finding_id = %pending.record.finding_id,
                                    ticket = %pending.candidate.ticket.key,
                                    code,
                                    message,
                                    "Security Hub did not apply the ticket status; retrying next poll"
                                );
                                let result = WriteResult::Unprocessed {
                                    code: (*code).to_owned(),
                                    message: (*message).to_owned(),
                                };
                                batch_results.push((pending, result));
                            }
                            None => {
                                processed += 1;
                                let result = self.recorded(&pending).await;
                                batch_results.push((pending, result));
                            }
                        }
                    }
                    telemetry::writeback(WritebackResult::Processed, processed);
                    telemetry::writeback(WritebackResult::Unprocessed, refused.len() as u64);
                    results.extend(batch_results);
                }
                Err(e) => {
                    telemetry::error(ErrorKind::Writeback);
                    telemetry::writeback(WritebackResult::Failed, batch.len() as u64);
                    tracing::warn!(error = %e, findings = batch.len(), "status write-back failed; the next poll tries again");
                    let message = e.to_string();
                    results.extend(
                        batch
                            .into_iter()
                            .map(|p| (p, WriteResult::Failed(message.clone()))),
                    );
                }
            }
        }
        results
    }

    /// Records a status Security Hub applied. If the store write fails the status was still
    /// written; the next poll finds `status_to_hub` stale and writes the same state again, which
    /// is harmless.
    async fn recorded(&self, pending: &Pending) -> WriteResult {
        let candidate = &pending.candidate;
        telemetry::sync_status_written(pending.status);
        tracing::info!(
            connection = %candidate.connection,
            ticket = %candidate.ticket.key,
            ticket_status = %candidate.status.name,
            finding_id = %pending.record.finding_id,
            team = %pending.record.team,
            status = pending.status.as_str(),
            "ticket status written to Security Hub"
        );
        if let Err(e) = self
            .store
            .set_sync_status(
                &pending.record.marker,
                Some(&candidate.status.name),
                Some(pending.status.as_str()),
            )
            .await
        {
            telemetry::error(ErrorKind::Store);
            tracing::warn!(marker = %pending.record.marker, error = %e, "could not record the status written to Security Hub");
        }
        self.state().retries.remove(&candidate.marker);
        WriteResult::Written(pending.status)
    }

    fn schedule_retry(&self, candidate: &Candidate) {
        let mut state = self.state();
        state
            .retries
            .entry(candidate.marker.clone())
            .or_insert_with(|| Retry {
                connection: candidate.connection.clone(),
                attempts: 0,
            });
    }

    /// Syncs again every finding Security Hub refused earlier, from the ticket's current status.
    async fn retry_unprocessed(&self, report: &mut SyncReport) {
        let due: Vec<(Marker, Retry)> = self.state().retries.drain().collect();
        for (marker, mut retry) in due {
            report.retried += 1;
            retry.attempts += 1;
            let outcome = self.sync_one(&retry.connection, &marker, None).await;
            let give_up = retry.attempts >= self.config.max_retries.max(1);
            match outcome {
                Ok((TicketSyncOutcome::Written { .. }, _)) => report.written += 1,
                Ok((TicketSyncOutcome::Skipped { reason }, _)) => report.skip(reason),
                Ok((TicketSyncOutcome::Unprocessed { code, message }, named)) => {
                    let (ticket, finding_id) =
                        named.unwrap_or_else(|| (marker.to_string(), String::new()));
                    let entry = UnprocessedTicket {
                        connection: retry.connection.clone(),
                        ticket,
                        finding_id,
                        code,
                        message,
                    };
                    if give_up {
                        // `sync_ticket` queued it again; this was the last attempt.
                        self.state().retries.remove(&marker);
                        tracing::error!(%marker, code = %entry.code, "Security Hub refused the ticket status on every retry; giving up until the ticket changes again");
                        report.abandoned.push(entry);
                    } else {
                        self.state().retries.insert(marker.clone(), retry);
                        report.unprocessed.push(entry);
                    }
                }
                Err(e) => {
                    report
                        .errors
                        .push(format!("{} {marker}: retry: {e}", retry.connection));
                    if !give_up {
                        self.state().retries.insert(marker.clone(), retry);
                    }
                }
            }
        }
    }

    /// Forgets tickets that fell out of the overlap window: they cannot be returned at the
    /// same update time again.
    fn prune_seen(&self, name: &str, watermark: DateTime<Utc>) {
        // One extra minute: Jira compares at minute precision.
        let horizon =
            watermark - chrono_duration(self.config.overlap) - chrono::Duration::minutes(1);
        if let Some(seen) = self.state().seen.get_mut(name) {
            seen.retain(|_, updated| parse_time(updated).is_none_or(|at| at >= horizon));
        }
    }
}

fn workflow_update(pending: &Pending) -> WorkflowUpdate {
    let candidate = &pending.candidate;
    let system = match crate::mapping::connection_kind(&candidate.connection) {
        Some(TargetKind::Jira) => "Jira",
        Some(TargetKind::ServiceNow) => "ServiceNow",
        None => candidate.connection.as_str(),
    };
    let note = format!(
        "{system} {} moved to {}; set to {} by findings-bridge status sync. {}",
        candidate.ticket.key, candidate.status.name, pending.status, candidate.ticket.url
    );
    WorkflowUpdate::new(
        pending.record.write_back.clone(),
        pending.record.finding_id.clone(),
        Some(pending.status),
        None,
        &note,
    )
}

fn unprocessed_entry(pending: &Pending, code: String, message: String) -> UnprocessedTicket {
    UnprocessedTicket {
        connection: pending.candidate.connection.clone(),
        ticket: pending.candidate.ticket.key.clone(),
        finding_id: pending.record.finding_id.clone(),
        code,
        message,
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn log_report(report: &SyncReport) {
    if report.is_clean() {
        tracing::debug!(
            read = report.read,
            written = report.written,
            duplicates = report.duplicates,
            "status sync poll finished"
        );
    } else {
        tracing::warn!(
            read = report.read,
            written = report.written,
            unprocessed = report.unprocessed.len(),
            abandoned = report.abandoned.len(),
            errors = ?report.errors,
            "status sync poll finished with problems"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jira(name: &str, category: &str) -> TicketStatus {
        TicketStatus {
            name: name.to_owned(),
            category: category.to_owned(),
            done: category == "done",
        }
    }

    fn servicenow(code: &str, label: &str) -> TicketStatus {
        TicketStatus {
            name: label.to_owned(),
            category: code.to_owned(),
            done: state::is_done(code),
        }
    }

    fn map(entries: &[(&str, WorkflowStatus)]) -> StatusMap {
        StatusMap(entries.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect())
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
