//! In-memory stand-ins for the store, a ticket system and the planner, faithful to the parts of
//! their contracts the lifecycle relies on (leases, marker search, status). Shared by the
//! lifecycle and worker tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{PlanError, PlanFailure, PlannedTicket, Planner, RuleOptions, SeverityRefresh};
use crate::finding::{
    Compliance, Finding, RecordState, Remediation, Resource, Schema, Severity, WorkflowStatus,
    WriteBackId,
};
use crate::marker::Marker;
use crate::store::{
    BoxFuture, Claim, Claimed, FindingState, Intent, Record, Store, StoreError, SyncFields,
    rfc3339_millis,
};
use crate::ticket::{
    FieldUpdate, FoundTicket, TargetStatus, TicketError, TicketRef, TicketStatus, TicketSystem,
    UpdatedPage,
};

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A GuardDuty-like ASFF finding, active and FAILED-free, updated at `updated_at`.
pub fn finding(id: &str, severity: Severity, updated_at: &str) -> Finding {
    Finding {
        id: id.to_owned(),
        schema: Schema::Asff,
        product_arn: "arn:aws:securityhub:us-east-1::product/aws/guardduty".into(),
        product_name: "GuardDuty".into(),
        company_name: "Amazon".into(),
        generator_id: "gen".into(),
        account_id: "111122223333".into(),
        region: "us-east-1".into(),
        title: format!("Finding {id}"),
        description: "Something suspicious".into(),
        severity,
        severity_score: severity.default_score(),
        types: vec![],
        resources: vec![Resource {
            kind: "AwsEc2Instance".into(),
            id: "arn:aws:ec2:us-east-1:111122223333:instance/i-1".into(),
            region: Some("us-east-1".into()),
            partition: Some("aws".into()),
            tags: BTreeMap::new(),
        }],
        compliance: Compliance::default(),
        workflow_status: WorkflowStatus::New,
        record_state: RecordState::Active,
        created_at: Some("2026-11-01T00:00:00Z".into()),
        updated_at: Some(updated_at.to_owned()),
        first_observed_at: None,
        last_observed_at: None,
        remediation: Remediation::default(),
        user_defined_fields: BTreeMap::new(),
        product_fields: BTreeMap::new(),
        console_url: format!("https://console.aws.amazon.com/securityhub/home#/findings?id={id}"),
        write_back: WriteBackId::Asff {
            id: id.to_owned(),
            product_arn: "arn:aws:securityhub:us-east-1::product/aws/guardduty".into(),
        },
        raw: serde_json::json!({ "Id": id }),
    }
}

#[derive(Default)]
struct Entry {
    record: Option<Record>,
    intent: Option<Intent>,
    lease: Option<(String, Instant)>,
}

#[derive(Default, Clone)]
struct FindingEntry {
    teams: Vec<String>,
    resolved_at: Option<(i64, String)>,
}

/// A store with real lease semantics (on Tokio's clock, so paused tests can expire leases).
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<Marker, Entry>>,
    findings: Mutex<HashMap<String, FindingEntry>>,
    /// Error returned by the next `claim` calls while set.
    pub fail_claims: Mutex<Option<String>>,
    /// Renewals answered "lost" while set (a store that was unreachable past the lease).
    pub lose_renewals: Mutex<bool>,
    /// The next `put` on this marker finds its lease taken over.
    steal_on_put: Mutex<Option<Marker>>,
    watermarks: Mutex<HashMap<String, String>>,
}

impl MemoryStore {
    /// The intent stored on `marker`, if any.
    pub fn intent(&self, marker: &Marker) -> Option<Intent> {
        lock(&self.entries)
            .get(marker)
            .and_then(|e| e.intent.clone())
    }

    /// Makes the next `put` on `marker` find its lease taken over by another worker.
    pub fn steal_before_put(&self, marker: &Marker) {
        *lock(&self.steal_on_put) = Some(marker.clone());
    }

    /// Lets every lease run out (as time passing would).
    pub fn expire_leases(&self) {
        let past = Instant::now() - Duration::from_millis(1);
        for entry in lock(&self.entries).values_mut() {
            if let Some((_, until)) = entry.lease.as_mut() {
                *until = past;
            }
        }
    }

    /// Moves every intent's settle time into the past (as the settle time passing would).
    pub fn age_intents(&self) {
        let past = chrono::Utc::now().timestamp_millis() - 1;
        for entry in lock(&self.entries).values_mut() {
            if let Some(intent) = entry.intent.as_mut() {
                intent.search_after = past;
            }
        }
    }

    fn state(&self, finding_id: &str, existed: Option<&FindingEntry>) -> FindingState {
        let _ = finding_id;
        match existed {
            Some(e) => FindingState {
                teams: e.teams.clone(),
                resolved_at: e.resolved_at.as_ref().map(|(_, at)| at.clone()),
                indexed: true,
            },
            None => FindingState::default(),
        }
    }

    pub fn record(&self, marker: &Marker) -> Option<Record> {
        lock(&self.entries)
            .get(marker)
            .and_then(|e| e.record.clone())
    }

    /// True while someone holds an unexpired lease on `marker`.
    pub fn is_claimed(&self, marker: &Marker) -> bool {
        lock(&self.entries)
            .get(marker)
            .and_then(|e| e.lease.as_ref())
            .is_some_and(|(_, until)| *until > Instant::now())
    }

    pub fn records(&self) -> Vec<Record> {
        lock(&self.entries)
            .values()
            .filter_map(|e| e.record.clone())
            .collect()
    }
}

impl Store for MemoryStore {
    fn claim<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move {
            if let Some(message) = lock(&self.fail_claims).clone() {
                return Err(StoreError::Unavailable(message));
            }
            let now = Instant::now();
            let mut entries = lock(&self.entries);
            let entry = entries.entry(marker.clone()).or_default();
            if let Some((holder, until)) = &entry.lease
                && holder != owner
                && *until > now
            {
                return Ok(Claim::Busy);
            }
            entry.lease = Some((owner.to_owned(), now + lease));
            Ok(Claim::Acquired(Claimed {
                record: entry.record.clone(),
                intent: entry.intent.clone(),
            }))
        })
    }

    fn renew<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            if *lock(&self.lose_renewals) {
                return Ok(false);
            }
            let now = Instant::now();
            let mut entries = lock(&self.entries);
            match entries.get_mut(marker) {
                Some(entry) => match &entry.lease {
                    Some((holder, until)) if holder == owner && *until >= now => {
                        entry.lease = Some((owner.to_owned(), now + lease));
                        Ok(true)
                    }
                    _ => Ok(false),
                },
                None => Ok(false),
            }
        })
    }

    fn set_intent<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
        intent: Option<&'a Intent>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut entries = lock(&self.entries);
            match entries.get_mut(marker) {
                Some(entry) if entry.lease.as_ref().is_some_and(|(h, _)| h == owner) => {
                    entry.intent = intent.cloned();
                    Ok(())
                }
                _ => Err(StoreError::LostClaim(marker.to_string())),
            }
        })
    }

    fn put<'a>(
        &'a self,
        record: &'a Record,
        owner: &'a str,
        sync: SyncFields,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut entries = lock(&self.entries);
            let entry = entries.entry(record.marker.clone()).or_default();
            let mut steal = lock(&self.steal_on_put);
            if steal.as_ref() == Some(&record.marker) {
                *steal = None;
                entry.lease = Some((
                    "thief".to_owned(),
                    Instant::now() + Duration::from_secs(600),
                ));
            }
            match &entry.lease {
                Some((holder, _)) if holder == owner => {
                    let mut record = record.clone();
                    if sync == SyncFields::Keep
                        && let Some(stored) = &entry.record
                    {
                        record.status_from_ticket = stored.status_from_ticket.clone();
                        record.status_to_hub = stored.status_to_hub.clone();
                    }
                    entry.record = Some(record);
                    entry.intent = None;
                    entry.lease = None;
                    Ok(())
                }
                _ => Err(StoreError::LostClaim(record.marker.to_string())),
            }
        })
    }

    fn enlist<'a>(
        &'a self,
        finding_id: &'a str,
        team: &'a str,
    ) -> BoxFuture<'a, Result<FindingState, StoreError>> {
        Box::pin(async move {
            let mut findings = lock(&self.findings);
            let state = self.state(finding_id, findings.get(finding_id));
            let entry = findings.entry(finding_id.to_owned()).or_default();
            if !entry.teams.iter().any(|t| t == team) {
                entry.teams.push(team.to_owned());
                entry.teams.sort();
            }
            Ok(state)
        })
    }

    fn resolve<'a>(
        &'a self,
        finding_id: &'a str,
        updated_at: &'a str,
    ) -> BoxFuture<'a, Result<FindingState, StoreError>> {
        Box::pin(async move {
            let millis = rfc3339_millis(updated_at)
                .ok_or_else(|| StoreError::Fatal(format!("bad time {updated_at}")))?;
            let mut findings = lock(&self.findings);
            let mut state = self.state(finding_id, findings.get(finding_id));
            let entry = findings.entry(finding_id.to_owned()).or_default();
            if entry
                .resolved_at
                .as_ref()
                .is_none_or(|(ms, _)| *ms < millis)
            {
                entry.resolved_at = Some((millis, updated_at.to_owned()));
                state.resolved_at = Some(updated_at.to_owned());
            }
            Ok(state)
        })
    }

    fn finding<'a>(
        &'a self,
        finding_id: &'a str,
    ) -> BoxFuture<'a, Result<FindingState, StoreError>> {
        Box::pin(async move { Ok(self.state(finding_id, lock(&self.findings).get(finding_id))) })
    }

    fn release<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if let Some(entry) = lock(&self.entries).get_mut(marker)
                && entry
                    .lease
                    .as_ref()
                    .is_some_and(|(holder, _)| holder == owner)
            {
                entry.lease = None;
            }
            Ok(())
        })
    }

    fn get<'a>(&'a self, marker: &'a Marker) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        Box::pin(async move { Ok(self.record(marker)) })
    }

    fn set_sync_status<'a>(
        &'a self,
        marker: &'a Marker,
        status_from_ticket: Option<&'a str>,
        status_to_hub: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if let Some(record) = lock(&self.entries)
                .get_mut(marker)
                .and_then(|e| e.record.as_mut())
            {
                record.status_from_ticket = status_from_ticket.map(str::to_owned);
                record.status_to_hub = status_to_hub.map(str::to_owned);
            }
            Ok(())
        })
    }

    fn watermark<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        let value = self.watermarks.lock().unwrap().get(name).cloned();
        Box::pin(async move { Ok(value) })
    }

    fn set_watermark<'a>(
        &'a self,
        name: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.watermarks
            .lock()
            .unwrap()
            .insert(name.to_owned(), value.to_owned());
        Box::pin(async { Ok(()) })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A call the fake ticket system received.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Find(String),
    Create(serde_json::Value),
    UpdateFields(String, serde_json::Map<String, serde_json::Value>),
    Comment(String, String),
    Transition(String),
    Reopen(String),
    Status(String),
}

struct FakeTicket {
    ticket: TicketRef,
    marker: Option<String>,
    done: bool,
}

/// A ticket system that keeps tickets in memory. Markers are read from the payload's `labels`
/// like Jira does. `search_lags` makes search miss everything (Jira's eventual consistency).
pub struct FakeTickets {
    name: String,
    tickets: Mutex<Vec<FakeTicket>>,
    calls: Mutex<Vec<Call>>,
    /// Operation name (`create`, `comment`, …) → error to return instead.
    pub failures: Mutex<HashMap<&'static str, TicketError>>,
    pub search_lags: Mutex<bool>,
    /// How long a create takes (lets concurrent work interleave).
    pub create_delay: Duration,
    /// The next this many creates (and comments) are committed and then answered with an
    /// unknown outcome, like a gateway that lost the backend's answer.
    pub ambiguous: Mutex<u32>,
    /// What `settle_time` answers.
    pub settle: Mutex<Duration>,
    /// Comments that reached a ticket: (key, text).
    posted: Mutex<Vec<(String, String)>>,
    /// Set by `finish_creates`: creates waiting out `create_delay` answer at once.
    finish: tokio::sync::watch::Sender<bool>,
}

impl FakeTickets {
    pub fn new(name: &str) -> FakeTickets {
        FakeTickets {
            name: name.to_owned(),
            tickets: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
            failures: Mutex::new(HashMap::new()),
            search_lags: Mutex::new(false),
            create_delay: Duration::from_millis(5),
            ambiguous: Mutex::new(0),
            settle: Mutex::new(Duration::ZERO),
            posted: Mutex::new(Vec::new()),
            finish: tokio::sync::watch::channel(false).0,
        }
    }

    /// Lets every create still waiting out `create_delay` (and every later one) answer now.
    pub fn finish_creates(&self) {
        self.finish.send_replace(true);
    }

    /// Marks a ticket finished or open, as a person in the ticket system would.
    pub fn set_done_for_test(&self, key: &str, done: bool) {
        self.set_done(key, done);
    }

    /// Every ticket in the system (duplicates included).
    pub fn tickets(&self) -> Vec<(TicketRef, bool)> {
        lock(&self.tickets)
            .iter()
            .map(|t| (t.ticket.clone(), t.done))
            .collect()
    }

    /// Comments that actually reached a ticket.
    pub fn posted(&self) -> Vec<(String, String)> {
        lock(&self.posted).clone()
    }

    /// Takes one ambiguous answer if any are left.
    fn take_ambiguous(&self) -> bool {
        let mut left = lock(&self.ambiguous);
        if *left > 0 {
            *left -= 1;
            true
        } else {
            false
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    pub fn creates(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| matches!(c, Call::Create(_)))
            .count()
    }

    pub fn comments(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Comment(_, text) => Some(text),
                _ => None,
            })
            .collect()
    }

    pub fn clear_calls(&self) {
        lock(&self.calls).clear();
    }

    pub fn fail(&self, operation: &'static str, error: TicketError) {
        lock(&self.failures).insert(operation, error);
    }

    pub fn is_done(&self, key: &str) -> Option<bool> {
        lock(&self.tickets)
            .iter()
            .find(|t| t.ticket.key == key)
            .map(|t| t.done)
    }

    /// A ticket that exists in the system but not in the store (created before a crash).
    pub fn insert_existing(&self, marker: &Marker, key: &str) -> TicketRef {
        let ticket = self.ticket_ref(key);
        lock(&self.tickets).push(FakeTicket {
            ticket: ticket.clone(),
            marker: Some(marker.to_string()),
            done: false,
        });
        ticket
    }

    fn ticket_ref(&self, key: &str) -> TicketRef {
        TicketRef {
            system: self.name.clone(),
            key: key.to_owned(),
            id: format!("id-{key}"),
            table: None,
            url: format!("https://tickets.example/browse/{key}"),
        }
    }

    fn check(&self, operation: &'static str, call: Call) -> Result<(), TicketError> {
        lock(&self.calls).push(call);
        match lock(&self.failures).get(operation) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn set_done(&self, key: &str, done: bool) {
        if let Some(t) = lock(&self.tickets).iter_mut().find(|t| t.ticket.key == key) {
            t.done = done;
        }
    }
}

pub fn unknown(operation: &'static str) -> TicketError {
    TicketError::OutcomeUnknown {
        system: "jira",
        operation,
        status: Some(502),
        message: "bad gateway".into(),
    }
}

/// A refusal that is not the finding's fault (401: the connection; a missing project: the
/// rule's target).
pub fn unusable(operation: &'static str, blame: crate::ticket::Blame) -> TicketError {
    TicketError::Unusable {
        system: "jira",
        operation,
        status: Some(if blame == crate::ticket::Blame::Connection {
            401
        } else {
            400
        }),
        blame,
        message: "refused".into(),
    }
}

pub fn transient(operation: &'static str) -> TicketError {
    TicketError::Transient {
        system: "jira",
        operation,
        status: Some(503),
        message: "service unavailable".into(),
    }
}

pub fn permanent(operation: &'static str) -> TicketError {
    TicketError::Permanent {
        system: "jira",
        operation,
        status: Some(400),
        message: "priority: Specify the Priority (name)".into(),
    }
}

impl TicketSystem for FakeTickets {
    fn name(&self) -> &str {
        &self.name
    }

    fn find_by_marker<'a>(
        &'a self,
        marker: &'a Marker,
        _table: Option<&'a str>,
    ) -> crate::ticket::BoxFuture<'a, Result<Vec<FoundTicket>, TicketError>> {
        Box::pin(async move {
            self.check("find", Call::Find(marker.to_string()))?;
            if *lock(&self.search_lags) {
                return Ok(Vec::new());
            }
            Ok(lock(&self.tickets)
                .iter()
                .filter(|t| t.marker.as_deref() == Some(marker.as_str()))
                .map(|t| FoundTicket {
                    ticket: t.ticket.clone(),
                    done: t.done,
                })
                .collect())
        })
    }

    fn settle_time(&self) -> Duration {
        *lock(&self.settle)
    }

    fn probe(&self) -> crate::ticket::BoxFuture<'_, Result<(), TicketError>> {
        Box::pin(async move {
            match lock(&self.failures).get("probe") {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            }
        })
    }

    fn probe_target<'a>(
        &'a self,
        _target: &'a str,
    ) -> crate::ticket::BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(async move {
            match lock(&self.failures).get("probe_target") {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            }
        })
    }

    fn target_of(&self, _payload: &serde_json::Value, _table: Option<&str>) -> Option<String> {
        Some("PAY".to_owned())
    }

    fn has_comment<'a>(
        &'a self,
        ticket: &'a TicketRef,
        needle: &'a str,
    ) -> crate::ticket::BoxFuture<'a, Result<bool, TicketError>> {
        Box::pin(async move {
            Ok(lock(&self.posted)
                .iter()
                .any(|(key, text)| *key == ticket.key && text.contains(needle)))
        })
    }

    fn create<'a>(
        &'a self,
        payload: &'a serde_json::Value,
        _table: Option<&'a str>,
    ) -> crate::ticket::BoxFuture<'a, Result<TicketRef, TicketError>> {
        Box::pin(async move {
            self.check("create", Call::Create(payload.clone()))?;
            let mut finish = self.finish.subscribe();
            tokio::select! {
                () = tokio::time::sleep(self.create_delay) => {}
                _ = finish.wait_for(|done| *done) => {}
            }
            let marker = payload["labels"]
                .as_array()
                .and_then(|labels| {
                    labels
                        .iter()
                        .filter_map(|l| l.as_str())
                        .find(|l| l.starts_with("fb-"))
                })
                .map(str::to_owned);
            let ticket = {
                let mut tickets = lock(&self.tickets);
                let ticket = self.ticket_ref(&format!("PAY-{}", tickets.len() + 1));
                tickets.push(FakeTicket {
                    ticket: ticket.clone(),
                    marker,
                    done: false,
                });
                ticket
            };
            if self.take_ambiguous() {
                return Err(unknown("create"));
            }
            Ok(ticket)
        })
    }

    fn update_fields<'a>(
        &'a self,
        ticket: &'a TicketRef,
        update: &'a FieldUpdate,
    ) -> crate::ticket::BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(async move {
            self.check(
                "update_fields",
                Call::UpdateFields(ticket.key.clone(), update.fields.clone()),
            )
        })
    }

    fn comment<'a>(
        &'a self,
        ticket: &'a TicketRef,
        text: &'a str,
    ) -> crate::ticket::BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(async move {
            self.check(
                "comment",
                Call::Comment(ticket.key.clone(), text.to_owned()),
            )?;
            lock(&self.posted).push((ticket.key.clone(), text.to_owned()));
            if self.take_ambiguous() {
                return Err(unknown("comment"));
            }
            Ok(())
        })
    }

    fn transition<'a>(
        &'a self,
        ticket: &'a TicketRef,
        to: &'a TargetStatus,
        _note: &'a str,
    ) -> crate::ticket::BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(async move {
            self.check("transition", Call::Transition(ticket.key.clone()))?;
            self.set_done(&ticket.key, *to == TargetStatus::Done);
            Ok(())
        })
    }

    fn reopen<'a>(
        &'a self,
        ticket: &'a TicketRef,
        _note: &'a str,
    ) -> crate::ticket::BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(async move {
            self.check("reopen", Call::Reopen(ticket.key.clone()))?;
            self.set_done(&ticket.key, false);
            Ok(())
        })
    }

    fn status<'a>(
        &'a self,
        ticket: &'a TicketRef,
    ) -> crate::ticket::BoxFuture<'a, Result<TicketStatus, TicketError>> {
        Box::pin(async move {
            self.check("status", Call::Status(ticket.key.clone()))?;
            let done = self.is_done(&ticket.key).unwrap_or(false);
            Ok(TicketStatus {
                name: if done { "Done" } else { "To Do" }.into(),
                category: if done { "done" } else { "new" }.into(),
                done,
            })
        })
    }

    fn updated_since<'a>(
        &'a self,
        _since: &'a str,
        _cursor: Option<&'a str>,
    ) -> crate::ticket::BoxFuture<'a, Result<UpdatedPage, TicketError>> {
        Box::pin(async {
            Ok(UpdatedPage {
                tickets: Vec::new(),
                next: None,
            })
        })
    }
}

/// One route of the fake planner: findings whose severity is in `severities` go to `team`.
#[derive(Clone)]
pub struct Route {
    pub team: &'static str,
    pub rule: &'static str,
    pub target: &'static str,
    pub severities: Vec<Severity>,
    pub options: RuleOptions,
    pub severity_override: Option<Severity>,
}

impl Route {
    pub fn new(team: &'static str, severities: &[Severity]) -> Route {
        Route {
            team,
            rule: "main",
            target: "jira",
            severities: severities.to_vec(),
            options: RuleOptions::default(),
            severity_override: None,
        }
    }
}

/// A planner that routes by severity and renders a Jira-like payload with the marker label.
#[derive(Default)]
pub struct FakePlanner {
    pub routes: Mutex<Vec<Route>>,
    pub teams: Vec<Arc<str>>,
    /// Every route fails to render with this message while set.
    pub error: Mutex<Option<String>>,
    /// The routes of these teams fail to render (a template that fails on the finding).
    pub team_errors: Mutex<HashMap<&'static str, String>>,
}

impl FakePlanner {
    pub fn new(routes: Vec<Route>) -> FakePlanner {
        let mut teams: Vec<Arc<str>> = routes.iter().map(|r| Arc::from(r.team)).collect();
        teams.dedup();
        FakePlanner {
            routes: Mutex::new(routes),
            teams,
            error: Mutex::new(None),
            team_errors: Mutex::new(HashMap::new()),
        }
    }
}

pub fn priority(severity: Severity) -> serde_json::Map<String, serde_json::Value> {
    let mut fields = serde_json::Map::new();
    fields.insert(
        "priority".into(),
        serde_json::json!({ "name": severity.as_str() }),
    );
    fields
}

impl Planner for FakePlanner {
    fn plan(&self, finding: &Finding) -> Vec<Result<PlannedTicket, PlanFailure>> {
        let everything = lock(&self.error).clone();
        let by_team = lock(&self.team_errors).clone();
        lock(&self.routes)
            .iter()
            .filter(|r| r.severities.contains(&finding.severity))
            .map(|r| {
                if let Some(message) = everything.clone().or_else(|| by_team.get(r.team).cloned()) {
                    return Err(PlanFailure {
                        team: Arc::from(r.team),
                        rule: Arc::from(r.rule),
                        error: PlanError::new(message),
                    });
                }
                let marker = Marker::new(r.team, &finding.id);
                let severity = r.severity_override.unwrap_or(finding.severity);
                Ok(PlannedTicket {
                    team: Arc::from(r.team),
                    rule: Arc::from(r.rule),
                    target: r.target.to_owned(),
                    payload: serde_json::json!({
                        "fields": { "summary": finding.title },
                        "labels": [marker.as_str(), crate::marker::BRIDGE_LABEL],
                    }),
                    marker,
                    table: None,
                    severity,
                    severity_note: None,
                    severity_fields: priority(severity),
                    options: r.options,
                })
            })
            .collect()
    }

    fn teams(&self) -> Vec<Arc<str>> {
        self.teams.clone()
    }

    fn rule_options(&self, team: &str, rule: &str) -> Option<RuleOptions> {
        lock(&self.routes)
            .iter()
            .find(|r| r.team == team && r.rule == rule)
            .map(|r| r.options)
    }

    fn severity_refresh(
        &self,
        _team: &str,
        _rule: &str,
        _finding: &Finding,
    ) -> Result<Option<SeverityRefresh>, PlanError> {
        Ok(None)
    }
}
