//! [`FakeTickets`]: a ticket system in memory that records every call, reads markers from the
//! payload's labels like Jira, and can be told to fail, lag in search or lose answers; and the
//! [`TicketError`]s of each kind the tests make it return.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::lock;
use crate::marker::Marker;
use crate::ticket::listing::{ListedPage, ListedTicket, Presence};
use crate::ticket::provenance::{Provenance, ProvenanceRead};
use crate::ticket::{
    FieldUpdate, FoundTicket, TargetStatus, TicketError, TicketRef, TicketStatus, TicketSystem,
    UpdatedPage,
};

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
    /// A page of the reconcile listing, by cursor.
    List(Option<String>),
}

struct FakeTicket {
    ticket: TicketRef,
    marker: Option<String>,
    done: bool,
    /// What `attach_provenance` put into the create payload (`_provenance`).
    provenance: Option<serde_json::Value>,
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
    /// The next this many creates are refused for the rate (429, nothing made).
    pub busy: Mutex<u32>,
    /// How long each of the next creates waits for its turn (`create_turn`), in order: a
    /// flood's queue at the rate limit.
    pub turn_waits: Mutex<std::collections::VecDeque<Duration>>,
    /// What `settle_time` answers.
    pub settle: Mutex<Duration>,
    /// Comments that reached a ticket: (key, text).
    posted: Mutex<Vec<(String, String)>>,
    /// Set by `finish_creates`: creates waiting out `create_delay` answer at once.
    finish: tokio::sync::watch::Sender<bool>,
    /// When each poll (`updated_since`) started, on Tokio's clock.
    polled: std::sync::Arc<Mutex<Vec<tokio::time::Instant>>>,
    /// While set, polls never answer.
    pub hang_polls: Mutex<bool>,
    /// When each hung poll was abandoned (its future dropped), on Tokio's clock.
    abandoned: std::sync::Arc<Mutex<Vec<tokio::time::Instant>>>,
    /// What `status_changed_by` answers (the failure `status_changed_by` overrides it).
    pub status_author: Mutex<Option<String>>,
    /// `status_changed_by` reads so far (ticket key, status).
    pub status_author_reads: Mutex<Vec<(String, String)>>,
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
            busy: Mutex::new(0),
            turn_waits: Mutex::new(std::collections::VecDeque::new()),
            settle: Mutex::new(Duration::ZERO),
            posted: Mutex::new(Vec::new()),
            finish: tokio::sync::watch::channel(false).0,
            polled: Default::default(),
            hang_polls: Mutex::new(false),
            abandoned: Default::default(),
            status_author: Mutex::new(None),
            status_author_reads: Mutex::new(Vec::new()),
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
        take_one(&self.ambiguous)
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
            provenance: None,
        });
        ticket
    }

    /// A ticket deleted in the ticket system: `presence` answers gone from now on.
    pub fn remove_for_test(&self, key: &str) {
        lock(&self.tickets).retain(|t| t.ticket.key != key);
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

/// Refused for the rate until the client gave up: provably not applied.
pub fn rate_limited(operation: &'static str) -> TicketError {
    TicketError::Transient {
        system: "jira",
        operation,
        status: Some(429),
        message: "Rate limit exceeded. (gave up after 2 attempt(s) in 4s)".into(),
    }
}

/// Counts one down if any are left.
fn take_one(left: &Mutex<u32>) -> bool {
    let mut left = lock(left);
    if *left > 0 {
        *left -= 1;
        true
    } else {
        false
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

    fn create_turn(&self) -> crate::ticket::BoxFuture<'_, crate::ticket::http::CreateTurn> {
        Box::pin(async move {
            let wait = lock(&self.turn_waits).pop_front();
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            crate::ticket::http::CreateTurn::free()
        })
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
            if take_one(&self.busy) {
                return Err(rate_limited("create"));
            }
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
                    provenance: payload.get("_provenance").cloned(),
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
            Ok(status_of(done))
        })
    }

    fn updated_since<'a>(
        &'a self,
        _since: &'a str,
        _cursor: Option<&'a str>,
    ) -> crate::ticket::BoxFuture<'a, Result<UpdatedPage, TicketError>> {
        lock(&self.polled).push(tokio::time::Instant::now());
        let hang = *lock(&self.hang_polls);
        let abandoned = std::sync::Arc::clone(&self.abandoned);
        Box::pin(async move {
            if hang {
                let _noted = Abandoned(abandoned);
                std::future::pending::<()>().await;
            }
            Ok(UpdatedPage {
                tickets: Vec::new(),
                next: None,
            })
        })
    }

    // ---- reconcile (issue 16) ----

    /// Kept beside the labels as `_provenance`, the way the real clients keep it beside the
    /// fields.
    fn attach_provenance(
        &self,
        payload: &serde_json::Value,
        provenance: &Provenance,
    ) -> serde_json::Value {
        let mut body = payload.clone();
        body["_provenance"] = provenance.to_value();
        body
    }

    /// Every ticket in creation order, one per page (so callers page), created a second apart.
    fn list_bridge_tickets<'a>(
        &'a self,
        _tables: &'a [String],
        cursor: Option<&'a str>,
    ) -> crate::ticket::BoxFuture<'a, Result<ListedPage, TicketError>> {
        Box::pin(async move {
            self.check("list_bridge_tickets", Call::List(cursor.map(str::to_owned)))?;
            let at: usize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
            let tickets = lock(&self.tickets);
            let page = tickets.get(at).map(|t| ListedTicket {
                ticket: t.ticket.clone(),
                marker: t.marker.as_deref().and_then(Marker::parse),
                status: status_of(t.done),
                created_at: format!("2026-01-01T00:{:02}:{:02}Z", at / 60 % 60, at % 60),
            });
            Ok(ListedPage {
                next: (at + 1 < tickets.len()).then(|| (at + 1).to_string()),
                tickets: page.into_iter().collect(),
            })
        })
    }

    fn provenance<'a>(
        &'a self,
        ticket: &'a TicketRef,
    ) -> crate::ticket::BoxFuture<'a, Result<ProvenanceRead, TicketError>> {
        Box::pin(async move {
            self.check("provenance", Call::Status(ticket.key.clone()))?;
            let stored = lock(&self.tickets)
                .iter()
                .find(|t| t.ticket.key == ticket.key)
                .and_then(|t| t.provenance.clone());
            Ok(match stored {
                Some(value) => Provenance::from_value(&value),
                None => ProvenanceRead::Missing,
            })
        })
    }

    fn presence<'a>(
        &'a self,
        ticket: &'a TicketRef,
    ) -> crate::ticket::BoxFuture<'a, Result<Presence, TicketError>> {
        Box::pin(async move {
            self.check("presence", Call::Status(ticket.key.clone()))?;
            Ok(match self.is_done(&ticket.key) {
                Some(done) => Presence::Exists(status_of(done)),
                None => Presence::Gone,
            })
        })
    }

    // ---- risk acceptance note (issue 15) ----

    fn status_changed_by<'a>(
        &'a self,
        ticket: &'a TicketRef,
        status: &'a str,
    ) -> crate::ticket::BoxFuture<'a, Result<Option<String>, TicketError>> {
        Box::pin(async move {
            lock(&self.status_author_reads).push((ticket.key.clone(), status.to_owned()));
            if let Some(e) = lock(&self.failures).get("status_changed_by") {
                return Err(e.clone());
            }
            Ok(lock(&self.status_author).clone())
        })
    }
}

fn status_of(done: bool) -> TicketStatus {
    TicketStatus {
        name: if done { "Done" } else { "To Do" }.into(),
        category: if done { "done" } else { "new" }.into(),
        done,
        resolution: None,
        changed_by: None,
    }
}

impl FakeTickets {
    /// When each poll started (Tokio's clock), oldest first.
    pub fn polls(&self) -> Vec<tokio::time::Instant> {
        lock(&self.polled).clone()
    }

    /// When each poll held by [`FakeTickets::hang_polls`] was abandoned by its caller.
    pub fn abandoned_polls(&self) -> Vec<tokio::time::Instant> {
        lock(&self.abandoned).clone()
    }
}

/// Notes when a hung poll's future is dropped.
struct Abandoned(std::sync::Arc<Mutex<Vec<tokio::time::Instant>>>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        lock(&self.0).push(tokio::time::Instant::now());
    }
}
