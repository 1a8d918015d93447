//! In-memory stand-ins for the store, a ticket system and the planner, faithful to the parts of
//! their contracts the lifecycle relies on (leases, marker search, status). Shared by the
//! lifecycle and worker tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{PlanError, PlannedTicket, Planner, RuleOptions, SeverityRefresh};
use crate::finding::{
    Compliance, Finding, RecordState, Remediation, Resource, Schema, Severity, WorkflowStatus,
    WriteBackId,
};
use crate::marker::Marker;
use crate::store::{BoxFuture, Claim, Record, Store, StoreError};
use crate::ticket::{
    FieldUpdate, TargetStatus, TicketError, TicketRef, TicketStatus, TicketSystem, UpdatedPage,
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
    lease: Option<(String, Instant)>,
}

/// A store with real lease semantics (on Tokio's clock, so paused tests can expire leases).
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<Marker, Entry>>,
    /// Error returned by the next `claim` calls while set.
    pub fail_claims: Mutex<Option<String>>,
}

impl MemoryStore {
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
            Ok(Claim::Acquired(entry.record.clone()))
        })
    }

    fn put<'a>(
        &'a self,
        record: &'a Record,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut entries = lock(&self.entries);
            let entry = entries.entry(record.marker.clone()).or_default();
            match &entry.lease {
                Some((holder, until)) if holder == owner && *until > Instant::now() => {
                    entry.record = Some(record.clone());
                    entry.lease = None;
                    Ok(())
                }
                _ => Err(StoreError::LostClaim(record.marker.to_string())),
            }
        })
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

    fn watermark<'a>(
        &'a self,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        Box::pin(async { Ok(None) })
    }

    fn set_watermark<'a>(
        &'a self,
        _name: &'a str,
        _value: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
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
    ) -> crate::ticket::BoxFuture<'a, Result<Option<TicketRef>, TicketError>> {
        Box::pin(async move {
            self.check("find", Call::Find(marker.to_string()))?;
            if *lock(&self.search_lags) {
                return Ok(None);
            }
            Ok(lock(&self.tickets)
                .iter()
                .rev()
                .find(|t| t.marker.as_deref() == Some(marker.as_str()))
                .map(|t| t.ticket.clone()))
        })
    }

    fn create<'a>(
        &'a self,
        payload: &'a serde_json::Value,
        _table: Option<&'a str>,
    ) -> crate::ticket::BoxFuture<'a, Result<TicketRef, TicketError>> {
        Box::pin(async move {
            self.check("create", Call::Create(payload.clone()))?;
            tokio::time::sleep(self.create_delay).await;
            let marker = payload["labels"]
                .as_array()
                .and_then(|labels| {
                    labels
                        .iter()
                        .filter_map(|l| l.as_str())
                        .find(|l| l.starts_with("fb-"))
                })
                .map(str::to_owned);
            let mut tickets = lock(&self.tickets);
            let ticket = self.ticket_ref(&format!("PAY-{}", tickets.len() + 1));
            tickets.push(FakeTicket {
                ticket: ticket.clone(),
                marker,
                done: false,
            });
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
            )
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
    pub error: Mutex<Option<String>>,
}

impl FakePlanner {
    pub fn new(routes: Vec<Route>) -> FakePlanner {
        let mut teams: Vec<Arc<str>> = routes.iter().map(|r| Arc::from(r.team)).collect();
        teams.dedup();
        FakePlanner {
            routes: Mutex::new(routes),
            teams,
            error: Mutex::new(None),
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
    fn plan(&self, finding: &Finding) -> Result<Vec<PlannedTicket>, PlanError> {
        if let Some(message) = lock(&self.error).clone() {
            return Err(PlanError::new(message));
        }
        Ok(lock(&self.routes)
            .iter()
            .filter(|r| r.severities.contains(&finding.severity))
            .map(|r| {
                let marker = Marker::new(r.team, &finding.id);
                let severity = r.severity_override.unwrap_or(finding.severity);
                PlannedTicket {
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
                }
            })
            .collect())
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
