//! The Jira client: one connection (Cloud or Data Center), its credentials (swappable when they
//! rotate), and the [`TicketSystem`](crate::ticket::TicketSystem) contract in Jira's terms: labels carry the marker, JQL
//! finds tickets, and workflow transitions move them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::{Value, json};
use url::Url;

use super::SYSTEM;
use super::api::{CommentPage, Created, decode, target_gone};
use super::config::{JiraApiVersion, JiraAuth, JiraConfig, SETTINGS};
use super::format::jira_rich_text;
use super::query::{MARKER_MATCHES, marker_jql, updated_since_jql, valid_since};
use super::status::{
    Status, already_at, describe_target, describe_transitions, reopening, transition_to,
};
use super::zone::UserZone;
use crate::marker::Marker;
use crate::ticket::connection::{Connection, require_base, url_with_path};
use crate::ticket::http::{ClientConfigError, Clock, Delivery, HttpClient, TokioClock};
use crate::ticket::listing::{ListedPage, Presence};
use crate::ticket::provenance::{Provenance, ProvenanceRead};
use crate::ticket::{
    AsyncTicketSystem, Blame, FieldUpdate, FoundTicket, TargetStatus, TicketError, TicketRef,
    TicketStatus, TicketUpdate, UpdatedPage,
};

pub struct JiraClient {
    /// Signed with an `Authorization` header.
    pub(super) conn: Connection<HeaderValue>,
    browse_base: Url,
    pub(super) version: JiraApiVersion,
    pub(super) page_size: u32,
    /// The bridge user's time zone, which Jira reads the poll's JQL dates in.
    pub(super) zone: UserZone,
}

impl fmt::Debug for JiraClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.conn.debug(f, "JiraClient", ("version", &self.version))
    }
}

impl JiraClient {
    /// A client for `cfg` whose time comes from `clock` (tests use a virtual clock).
    pub fn with_clock(
        cfg: JiraConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<JiraClient, ClientConfigError> {
        require_base(SETTINGS.url, &cfg.base_url)?;
        let sign = cfg.auth.authorization()?;
        let lag = cfg.search_consistency;
        Ok(JiraClient {
            conn: Connection::open(SYSTEM, cfg.name, cfg.base_url, &cfg.http, lag, clock, sign)?,
            browse_base: cfg.browse_base,
            version: cfg.api_version,
            page_size: cfg.page_size.max(1),
            zone: UserZone::default(),
        })
    }

    /// A client for `cfg` on real time.
    pub fn new(cfg: JiraConfig) -> Result<JiraClient, ClientConfigError> {
        JiraClient::with_clock(cfg, Arc::new(TokioClock::new()))
    }

    /// Signs every request from now on with `auth` (rotated credentials, see
    /// [`crate::aws::secrets`]); the old secret is no longer scrubbed from errors, the new one is.
    pub fn replace_auth(&self, auth: JiraAuth) -> Result<(), ClientConfigError> {
        self.conn.replace_signing(auth.authorization()?);
        Ok(())
    }

    /// The shared HTTP layer (rate limiter and clock), for diagnostics and tests.
    pub fn http(&self) -> &HttpClient {
        &self.conn.http
    }

    fn browse_url(&self, key: &str) -> String {
        url_with_path(&self.browse_base, ["browse", key]).to_string()
    }

    pub(super) fn ticket_ref(&self, id: String, key: String) -> TicketRef {
        TicketRef {
            system: self.conn.name.clone(),
            url: self.browse_url(&key),
            key,
            id,
            table: None,
        }
    }

    /// Comments are light Markdown: ADF for Cloud, wiki markup for Data Center, cut to Jira's
    /// text limit the same way ticket descriptions are.
    fn comment_body(&self, markdown: &str) -> Value {
        jira_rich_text(self.version.flavor(), markdown)
    }
}

impl AsyncTicketSystem for JiraClient {
    fn name(&self) -> &str {
        &self.conn.name
    }

    fn settle_time(&self) -> Duration {
        self.conn.settle_time
    }

    async fn find_by_marker(
        &self,
        marker: &Marker,
        _table: Option<&str>,
    ) -> Result<Vec<FoundTicket>, TicketError> {
        let (issues, _) = self
            .search(
                "find_by_marker",
                &marker_jql(marker),
                &["status", "labels"],
                MARKER_MATCHES,
                None,
            )
            .await?;
        Ok(issues
            .into_iter()
            .map(|issue| {
                let done = issue
                    .fields
                    .as_ref()
                    .and_then(|f| f.status.as_ref())
                    .is_some_and(Status::is_done);
                FoundTicket {
                    ticket: self.ticket_ref(issue.id, issue.key),
                    done,
                }
            })
            .collect())
    }

    async fn probe(&self) -> Result<(), TicketError> {
        self.get("probe", self.api(&["myself"])).await.map(drop)
    }

    async fn probe_target(&self, target: &str) -> Result<(), TicketError> {
        self.get("probe_target", self.api(&["project", target]))
            .await
            .map(drop)
            .map_err(|e| match e.status() {
                Some(404) => e.blamed_on(Blame::Target),
                _ => e,
            })
    }

    fn target_of(&self, payload: &Value, _table: Option<&str>) -> Option<String> {
        payload
            .pointer("/fields/project/key")
            .and_then(Value::as_str)
            .filter(|key| !key.is_empty())
            .map(str::to_owned)
    }

    async fn create(
        &self,
        payload: &Value,
        _table: Option<&str>,
    ) -> Result<TicketRef, TicketError> {
        let url = self.api(&["issue"]);
        let response = self
            .conn
            .http
            .send_with("create", Delivery::AtMostOnce, |c| {
                c.post(url.clone())
                    .header(AUTHORIZATION, self.conn.signing())
                    .json(payload)
            })
            .await
            .map_err(target_gone)?;
        // A 2xx we cannot read did create something.
        let created: Created = self
            .conn
            .http
            .json("create", &response)
            .map_err(TicketError::into_outcome_unknown)?;
        Ok(self.ticket_ref(created.id, created.key))
    }

    async fn update_fields(
        &self,
        ticket: &TicketRef,
        update: &FieldUpdate,
    ) -> Result<(), TicketError> {
        let url = self.api(&["issue", &ticket.key]);
        let mut body = json!({ "fields": update.fields });
        if !update.add_labels.is_empty() {
            // `update` verbs add to what people put on the ticket; `fields.labels` would replace it.
            let add: Vec<_> = update
                .add_labels
                .iter()
                .map(|l| json!({ "add": l }))
                .collect();
            body["update"] = json!({ "labels": add });
        }
        self.send_json("update_fields", reqwest::Method::PUT, url, &body)
            .await
            .map(drop)
    }

    async fn comment(&self, ticket: &TicketRef, text: &str) -> Result<(), TicketError> {
        let url = self.api(&["issue", &ticket.key, "comment"]);
        let body = json!({ "body": self.comment_body(text) });
        self.post_once("comment", url, &body).await.map(drop)
    }

    async fn has_comment(&self, ticket: &TicketRef, needle: &str) -> Result<bool, TicketError> {
        const OP: &str = "has_comment";
        let mut url = self.api(&["issue", &ticket.key, "comment"]);
        url.query_pairs_mut()
            .append_pair("orderBy", "-created")
            .append_pair("maxResults", "100");
        let page: CommentPage = decode(OP, self.get(OP, url).await?)?;
        // Bodies are ADF (v3) or wiki text (v2): looking through the serialized body finds
        // the needle in either, as long as it is plain text with nothing to escape.
        Ok(page.comments.iter().any(|c| match &c.body {
            Value::String(text) => text.contains(needle),
            other => other.to_string().contains(needle),
        }))
    }

    async fn status(&self, ticket: &TicketRef) -> Result<TicketStatus, TicketError> {
        self.status_with_resolution("status", ticket).await
    }

    /// Jira needs no resolution note, so `note` is not sent; the lifecycle comments itself.
    async fn transition(
        &self,
        ticket: &TicketRef,
        to: &TargetStatus,
        _note: &str,
    ) -> Result<(), TicketError> {
        const OP: &str = "transition";
        let current = self.current_status(OP, ticket).await?;
        if already_at(&current, to) {
            return Ok(());
        }
        let transitions = self.transitions(OP, ticket).await?;
        let Some(chosen) = transition_to(&transitions, to) else {
            return Err(self.conn.http.permanent(
                OP,
                None,
                format!(
                    "{} has no transition from {:?} to {}; available: {}",
                    ticket.key,
                    current.name,
                    describe_target(to),
                    describe_transitions(&transitions)
                ),
            ));
        };
        self.apply_transition(OP, ticket, chosen).await
    }

    /// Moves a done ticket back to a `new` (else `indeterminate`) status; an open ticket is left
    /// alone. Jira transitions carry no note: the lifecycle comments on its own.
    async fn reopen(&self, ticket: &TicketRef, _note: &str) -> Result<(), TicketError> {
        const OP: &str = "reopen";
        let current = self.current_status(OP, ticket).await?;
        if !current.done {
            return Ok(());
        }
        let transitions = self.transitions(OP, ticket).await?;
        let Some(chosen) = reopening(&transitions) else {
            return Err(self.conn.http.permanent(
                OP,
                None,
                format!(
                    "{} has no transition from {:?} back to an open status; available: {}",
                    ticket.key,
                    current.name,
                    describe_transitions(&transitions)
                ),
            ));
        };
        self.apply_transition(OP, ticket, chosen).await
    }

    async fn updated_since(
        &self,
        since: &str,
        cursor: Option<&str>,
    ) -> Result<UpdatedPage, TicketError> {
        const OP: &str = "updated_since";
        let not_a_time = || {
            self.conn.http.permanent(
                OP,
                None,
                format!("watermark {since:?} is not an RFC 3339 time"),
            )
        };
        if !valid_since(since) {
            return Err(not_a_time());
        }
        let zone = self.user_zone().await?;
        let jql = updated_since_jql(since, zone).ok_or_else(not_a_time)?;
        let (issues, next) = self
            .search(
                OP,
                &jql,
                &["status", "labels", "updated", "resolution"],
                self.page_size,
                cursor,
            )
            .await
            .inspect_err(|_| self.zone.forget())?;
        let tickets = self
            .bridge_issues(issues)
            .into_iter()
            .map(|issue| TicketUpdate {
                ticket: issue.ticket,
                marker: issue.marker,
                status: issue.status,
                updated_at: issue.updated_at,
            })
            .collect();
        Ok(UpdatedPage { tickets, next })
    }

    // ---- reconcile (issue 16): see `listing` ----

    fn attach_provenance(&self, payload: &Value, provenance: &Provenance) -> Value {
        self.with_provenance(payload, provenance)
    }

    /// One search over every project: the label is the bridge's, whatever the project.
    async fn list_bridge_tickets(
        &self,
        _tables: &[String],
        cursor: Option<&str>,
    ) -> Result<ListedPage, TicketError> {
        self.list_page(cursor).await
    }

    async fn provenance(&self, ticket: &TicketRef) -> Result<ProvenanceRead, TicketError> {
        self.read_provenance(ticket).await
    }

    async fn presence(&self, ticket: &TicketRef) -> Result<Presence, TicketError> {
        self.issue_presence(ticket).await
    }

    // ---- risk acceptance note (issue 15): see `changelog` ----

    async fn status_changed_by(
        &self,
        ticket: &TicketRef,
        status: &str,
    ) -> Result<Option<String>, TicketError> {
        self.status_author(ticket, status).await
    }

    async fn create_turn(&self) -> crate::ticket::http::CreateTurn {
        self.conn.http.create_turn().await
    }
}
