//! Everything the simulated services remember, and the accessors tests use to look at it or to act
//! like a human on the other side (moving a ticket, resolving an incident).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::config::{Faults, SimConfig, System};
use crate::jira::workflow;

/// Why an accessor could not do what a test asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SimError {
    #[error("Jira issue {0} does not exist")]
    NoSuchIssue(String),
    #[error("Jira has no status named {0:?}")]
    NoSuchStatus(String),
    #[error("ServiceNow record {table}/{sys_id} does not exist")]
    NoSuchRecord { table: String, sys_id: String },
    #[error("invalid ServiceNow state {0:?}")]
    InvalidState(String),
    #[error("invalid faults: {0}")]
    InvalidFaults(String),
    #[error("invalid set-up: {0}")]
    InvalidSetup(String),
}

/// A Jira issue as the simulator stores it; `description` and comment bodies keep the shape they
/// were sent in (ADF from v3, a string from v2).
#[derive(Clone, Debug, Serialize)]
pub struct JiraIssue {
    pub id: String,
    pub key: String,
    pub project: String,
    pub issue_type: String,
    pub summary: String,
    pub description: Value,
    pub priority: Option<String>,
    pub labels: Vec<String>,
    pub status: String,
    pub status_category: String,
    /// Every other field sent on create or update (custom fields, components, …).
    pub fields: Map<String, Value>,
    pub comments: Vec<JiraComment>,
    /// Status changes in order, so tests can tell which transitions the bridge made.
    pub status_history: Vec<StatusChange>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// When the create committed, on the monotonic clock the search delay is measured with.
    #[serde(skip)]
    pub(crate) created_instant: Instant,
    /// Issue properties (entity properties) set with the create's `properties`, by key.
    pub properties: Map<String, Value>,
    /// `fields.resolution.name`: set when the issue moves to a done status (the transition's
    /// `fields.resolution`, else the status's own name), cleared when it moves out of one.
    pub resolution: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct JiraComment {
    pub id: String,
    pub body: Value,
    pub created: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct StatusChange {
    pub from: String,
    pub to: String,
    /// `api` when the bridge (or any client) transitioned, `human` for simulated users.
    pub by: String,
    /// The display name the changelog shows as the change's author: the API user's for `api`
    /// ([`crate::jira::API_USER_NAME`]), [`SimConfig::human_name`] (or the name a test gave)
    /// for `human`.
    pub author: String,
    /// When it happened (the changelog entry's `created`).
    pub at: DateTime<Utc>,
}

/// A row of any ServiceNow table; values are strings as the Table API returns them.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceNowRecord {
    pub table: String,
    pub sys_id: String,
    pub fields: BTreeMap<String, String>,
    /// Journal entries (`work_notes`, `comments`), which the Table API never returns as values.
    pub journal: Vec<JournalEntry>,
    /// Changes of `state` in order (`by`: `api` through the Table API, `human` for simulated
    /// users), so tests can tell how often the bridge resolved or reopened a record.
    pub state_history: Vec<StatusChange>,
}

impl ServiceNowRecord {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// The texts of the journal entries of `field` (`work_notes`, `comments`), oldest first.
    pub fn journal_of<'a>(&'a self, field: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.journal
            .iter()
            .filter(move |j| j.field == field)
            .map(|j| j.value.as_str())
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct JournalEntry {
    pub field: String,
    pub value: String,
    pub created_on: String,
    /// The user the entry was written as (the journal header names them).
    pub created_by: String,
}

/// Which Security Hub write-back API a recorded call used.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub enum WritebackApi {
    BatchUpdateFindings,
    BatchUpdateFindingsV2,
}

/// One recorded BatchUpdateFindings / BatchUpdateFindingsV2 call that passed validation.
#[derive(Clone, Debug, Serialize)]
pub struct Writeback {
    pub api: WritebackApi,
    pub received_at: DateTime<Utc>,
    /// The request body exactly as received.
    pub request: Value,
    /// Finding ids (ASFF `Id`, OCSF metadata or finding-info uid) that were updated.
    pub processed: Vec<String>,
    /// (finding id, error code) of the entries answered as unprocessed.
    pub unprocessed: Vec<(String, String)>,
}

/// What Security Hub knows about one finding after the write-backs so far.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct FindingState {
    pub id: String,
    pub product_arn: Option<String>,
    /// ASFF `Workflow.Status` (NEW, NOTIFIED, RESOLVED, SUPPRESSED).
    pub workflow_status: Option<String>,
    pub severity_label: Option<String>,
    /// OCSF `status_id` set through BatchUpdateFindingsV2.
    pub status_id: Option<i64>,
    pub severity_id: Option<i64>,
    /// Note texts (V1) and comments (V2) in order.
    pub notes: Vec<String>,
    pub update_count: u64,
}

/// How the Security Hub simulator should refuse a particular finding, for tests of the bridge's
/// handling of `UnprocessedFindings`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum FindingErrorKind {
    /// V1 `FindingNotFound`, V2 `ResourceNotFoundException`.
    NotFound,
    /// V1 `ConcurrentUpdateError`, V2 `ConflictException`.
    ConcurrentUpdate,
}

/// Counts of injected failures, for operators and for tests asserting the bridge saw them.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct FaultStats {
    pub delayed: u64,
    pub errors_500: u64,
    pub burst_429: u64,
    pub rate_limited_429: u64,
    /// `rate_limited_429` by system (`jira`, `servicenow`, `securityhub`), so a load test can
    /// tell how much of each system's own budget was used.
    pub rate_limited_429_by_system: BTreeMap<String, u64>,
    /// With aligned rate-limit windows: by system, the requests each whole second since the
    /// simulator started let through (index = second), so a load test can see which windows
    /// its clients left part-empty, and when.
    pub rate_accepted_by_second: BTreeMap<String, Vec<u32>>,
    /// Committed creates answered 502 Bad Gateway.
    pub ambiguous_502: u64,
    /// Committed creates whose connection was reset instead of answered.
    pub ambiguous_close: u64,
    /// Committed creates answered only after `ambiguous_late_ms`.
    pub ambiguous_late: u64,
    /// API requests answered 401 because the system refused every credential
    /// (`refuse_credentials_ms`), the OAuth token endpoint's included.
    pub refused_401: u64,
    /// Requests refused because their Jira project or ServiceNow table is gone
    /// (`gone_projects`, `gone_tables`).
    pub target_gone: u64,
}

impl FaultStats {
    /// Creates that committed a ticket but were answered ambiguously, all modes together.
    pub fn ambiguous_creates(&self) -> u64 {
        self.ambiguous_502 + self.ambiguous_close + self.ambiguous_late
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// `"METHOD /path/template"` → number of requests, e.g. `"POST /rest/api/3/issue"`.
    pub requests: BTreeMap<String, u64>,
    pub faults: FaultStats,
}

#[derive(Default)]
pub(crate) struct JiraState {
    pub issues: Vec<JiraIssue>,
    pub next_id: u64,
    pub next_comment_id: u64,
    pub project_counters: HashMap<String, u64>,
}

#[derive(Default)]
pub(crate) struct ServiceNowState {
    pub records: Vec<ServiceNowRecord>,
    pub number_counters: HashMap<String, u64>,
    pub next_sys_id: u64,
    pub tokens: HashMap<String, Instant>,
    pub next_token: u64,
}

#[derive(Default)]
pub(crate) struct SecurityHubState {
    pub findings: BTreeMap<String, FindingState>,
    pub writebacks: Vec<Writeback>,
    pub errors: HashMap<String, FindingErrorKind>,
}

pub(crate) struct Inner {
    pub base_url: String,
    pub jira: JiraState,
    pub servicenow: ServiceNowState,
    pub securityhub: SecurityHubState,
    pub requests: BTreeMap<String, u64>,
    pub fault_stats: FaultStats,
    pub faults: Faults,
    /// When the current faults were set: `refuse_credentials_ms` counts from here.
    pub faults_set_at: Instant,
    /// Sequence number of the next API request under the current faults.
    pub fault_seq: u64,
    /// Sequence number of the next committed create under the current faults.
    pub create_seq: u64,
    /// Ambiguous creates so far under the current faults (the `rotate` mode's position).
    pub ambiguous_seq: u64,
    pub rate_limit: Option<u32>,
    /// Start of the current one-second window and the requests seen in it: one window for all
    /// systems, or with `SimConfig::rate_limit_per_system` one per system (Jira, ServiceNow,
    /// Security Hub, in that order).
    pub rate_windows: [Option<(Instant, u32)>; 3],
    /// Where aligned rate-limit windows count their seconds from.
    pub rate_epoch: Instant,
    /// How the simulated systems are set up (see [`crate::setup`]).
    pub setup: crate::setup::Setup,
}

/// Handle on the simulator's memory, shared by the HTTP handlers and the test that started it.
#[derive(Clone)]
pub struct SharedState {
    inner: Arc<Mutex<Inner>>,
    config: Arc<SimConfig>,
}

impl SharedState {
    pub fn new(config: SimConfig, base_url: String) -> Self {
        let inner = Inner {
            base_url,
            jira: JiraState::default(),
            servicenow: ServiceNowState::default(),
            securityhub: SecurityHubState::default(),
            requests: BTreeMap::new(),
            fault_stats: FaultStats::default(),
            faults: Faults {
                search_delay: if config.faults.search_delay.is_zero() {
                    config.jira_search_delay
                } else {
                    config.faults.search_delay
                },
                ..config.faults.clone()
            },
            faults_set_at: Instant::now(),
            fault_seq: 0,
            create_seq: 0,
            ambiguous_seq: 0,
            rate_limit: config.rate_limit_per_sec,
            rate_windows: [None; 3],
            rate_epoch: Instant::now(),
            setup: config.setup.clone(),
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
            config: Arc::new(config),
        }
    }

    pub(crate) fn config(&self) -> &SimConfig {
        &self.config
    }

    /// A panicking handler must not take the whole simulator down with a poisoned lock: the state
    /// it left is still the best description of what the services did.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn base_url(&self) -> String {
        self.lock().base_url.clone()
    }

    pub fn jira_issues(&self) -> Vec<JiraIssue> {
        self.lock().jira.issues.clone()
    }

    pub fn jira_issue(&self, key: &str) -> Option<JiraIssue> {
        self.lock()
            .jira
            .issues
            .iter()
            .find(|i| i.key == key || i.id == key)
            .cloned()
    }

    pub fn servicenow_records(&self) -> Vec<ServiceNowRecord> {
        self.lock().servicenow.records.clone()
    }

    pub fn servicenow_record(&self, table: &str, sys_id: &str) -> Option<ServiceNowRecord> {
        self.lock()
            .servicenow
            .records
            .iter()
            .find(|r| r.table == table && r.sys_id == sys_id)
            .cloned()
    }

    pub fn writebacks(&self) -> Vec<Writeback> {
        self.lock().securityhub.writebacks.clone()
    }

    /// The finding's workflow status as a Security Hub user would read it: the ASFF status, or for
    /// findings only updated through V2 the OCSF `status_id` translated to its ASFF equivalent.
    pub fn finding_workflow(&self, id: &str) -> Option<String> {
        let guard = self.lock();
        let f = guard.securityhub.findings.get(id)?;
        if let Some(status) = &f.workflow_status {
            return Some(status.clone());
        }
        let name = match f.status_id? {
            1 => "NEW",
            2 => "NOTIFIED",
            3 => "SUPPRESSED",
            4 | 5 => "RESOLVED",
            _ => return None,
        };
        Some(name.to_owned())
    }

    pub fn finding(&self, id: &str) -> Option<FindingState> {
        self.lock().securityhub.findings.get(id).cloned()
    }

    pub fn findings(&self) -> Vec<FindingState> {
        self.lock().securityhub.findings.values().cloned().collect()
    }

    /// Makes every later write-back of this finding come back as unprocessed with `kind`.
    pub fn set_finding_error(&self, id: &str, kind: FindingErrorKind) {
        self.lock().securityhub.errors.insert(id.to_owned(), kind);
    }

    pub fn clear_finding_error(&self, id: &str) {
        self.lock().securityhub.errors.remove(id);
    }

    pub fn clear_finding_errors(&self) {
        self.lock().securityhub.errors.clear();
    }

    /// Requests seen for one endpoint, named `"METHOD /path"` with `{key}` / `{sys_id}` for the
    /// variable segment, e.g. `"POST /rest/api/3/issue/{key}/transitions"` or
    /// `"POST /api/now/table/incident"`.
    pub fn request_count(&self, endpoint: &str) -> u64 {
        self.lock().requests.get(endpoint).copied().unwrap_or(0)
    }

    pub fn stats(&self) -> Stats {
        let guard = self.lock();
        Stats {
            requests: guard.requests.clone(),
            faults: guard.fault_stats.clone(),
        }
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Replaces the injected faults (the search delay, refused credentials and gone targets
    /// included) and restarts their schedules, so a test knows exactly which of its next
    /// requests and creates fail; a credential refusal runs from now. A ServiceNow refusal
    /// revokes every OAuth token issued so far.
    pub fn set_faults(&self, faults: Faults) -> Result<(), SimError> {
        faults.validate().map_err(SimError::InvalidFaults)?;
        let now = Instant::now();
        let mut guard = self.lock();
        if !faults.refuse_credentials.servicenow.is_zero() {
            for expiry in guard.servicenow.tokens.values_mut() {
                *expiry = now;
            }
        }
        guard.faults = faults;
        guard.faults_set_at = now;
        guard.fault_seq = 0;
        guard.create_seq = 0;
        guard.ambiguous_seq = 0;
        Ok(())
    }

    /// How much longer `system` refuses every credential (`refuse_credentials_ms`); `None` when
    /// it accepts them.
    pub fn credentials_refused(&self, system: System) -> Option<Duration> {
        let guard = self.lock();
        guard
            .faults
            .refuse_credentials
            .of(system)
            .checked_sub(guard.faults_set_at.elapsed())
            .filter(|left| !left.is_zero())
    }

    pub fn set_rate_limit(&self, per_sec: Option<u32>) {
        let mut guard = self.lock();
        guard.rate_limit = per_sec;
        guard.rate_windows = [None; 3];
    }

    /// A human moving the ticket to `status_name` in Jira's UI, whatever the workflow would allow.
    /// The changelog names [`SimConfig::human_name`] as the author.
    pub fn transition_issue(&self, key: &str, status_name: &str) -> Result<JiraIssue, SimError> {
        let author = self.config.human_name.clone();
        self.transition_issue_as(key, status_name, &author, None)
    }

    /// [`SharedState::transition_issue`] by the person whose display name is `author`, with
    /// `resolution` as the resolution when the status is a done one (`None`: the status name).
    pub fn transition_issue_as(
        &self,
        key: &str,
        status_name: &str,
        author: &str,
        resolution: Option<&str>,
    ) -> Result<JiraIssue, SimError> {
        let status = workflow::status_by_name(status_name)
            .ok_or_else(|| SimError::NoSuchStatus(status_name.to_owned()))?;
        let mut guard = self.lock();
        let issue = guard
            .jira
            .issues
            .iter_mut()
            .find(|i| i.key == key || i.id == key)
            .ok_or_else(|| SimError::NoSuchIssue(key.to_owned()))?;
        workflow::move_to(issue, status, "human", author, resolution);
        Ok(issue.clone())
    }

    /// Back-dates (or forward-dates) an issue's `updated`, for tests of watermark-based polling.
    pub fn set_jira_updated(&self, key: &str, updated: DateTime<Utc>) -> Result<(), SimError> {
        let mut guard = self.lock();
        let issue = guard
            .jira
            .issues
            .iter_mut()
            .find(|i| i.key == key || i.id == key)
            .ok_or_else(|| SimError::NoSuchIssue(key.to_owned()))?;
        issue.updated = updated;
        Ok(())
    }

    /// A human changing an incident's state in ServiceNow's UI. Resolving or closing fills the
    /// resolution fields the form would force the human to fill, unless they are already set.
    pub fn set_servicenow_state(
        &self,
        table: &str,
        sys_id: &str,
        state: &str,
    ) -> Result<ServiceNowRecord, SimError> {
        if !crate::servicenow::is_known_state(state) {
            return Err(SimError::InvalidState(state.to_owned()));
        }
        let mut guard = self.lock();
        let user = self.config.human_user.clone();
        let record = guard
            .servicenow
            .records
            .iter_mut()
            .find(|r| r.table == table && r.sys_id == sys_id)
            .ok_or_else(|| SimError::NoSuchRecord {
                table: table.to_owned(),
                sys_id: sys_id.to_owned(),
            })?;
        crate::servicenow::human_state_change(record, state, &user);
        Ok(record.clone())
    }

    /// Invalidates every ServiceNow OAuth token, as if they had all reached `expires_in`.
    pub fn expire_oauth_tokens(&self) {
        let now = Instant::now();
        for expiry in self.lock().servicenow.tokens.values_mut() {
            *expiry = now;
        }
    }

    /// How the Jira projects and the ServiceNow instance are set up now.
    pub fn setup(&self) -> crate::setup::Setup {
        self.lock().setup.clone()
    }

    /// Replaces the whole set-up (create screens, permissions, columns, groups).
    pub fn set_setup(&self, setup: crate::setup::Setup) -> Result<(), SimError> {
        setup.validate().map_err(SimError::InvalidSetup)?;
        self.lock().setup = setup;
        Ok(())
    }

    /// A person deleting a Jira issue: from now on it answers 404 and no search finds it.
    pub fn delete_jira_issue(&self, key: &str) -> Result<JiraIssue, SimError> {
        let mut guard = self.lock();
        let issues = &mut guard.jira.issues;
        let at = issues
            .iter()
            .position(|i| i.key == key || i.id == key)
            .ok_or_else(|| SimError::NoSuchIssue(key.to_owned()))?;
        Ok(issues.remove(at))
    }

    /// A person deleting a ServiceNow record: from now on it answers 404 and no query finds it.
    pub fn delete_servicenow_record(
        &self,
        table: &str,
        sys_id: &str,
    ) -> Result<ServiceNowRecord, SimError> {
        let mut guard = self.lock();
        let records = &mut guard.servicenow.records;
        let at = records
            .iter()
            .position(|r| r.table == table && r.sys_id == sys_id)
            .ok_or_else(|| SimError::NoSuchRecord {
                table: table.to_owned(),
                sys_id: sys_id.to_owned(),
            })?;
        Ok(records.remove(at))
    }
}
