//! The ServiceNow client: one instance over the Table API, its credentials (swappable when they
//! rotate), and the [`TicketSystem`](crate::ticket::TicketSystem) contract in ServiceNow's terms: `correlation_id` carries the
//! marker, encoded queries find records, states are codes and resolving needs a close code and
//! notes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use serde_json::{Value, json};
use url::Url;

use super::SYSTEM;
use super::config::{ServiceNowAuth, ServiceNowConfig, Signing};
use super::listing::with_provenance;
use super::oauth::bearer;
use super::query::{MARKER_MATCHES, RECORD_FIELDS, marker_query, updated_since_query, valid_table};
use super::record::{Envelope, field, table_gone};
use super::status::{
    ATTRIBUTION_FIELDS, RESOLVED, labels, needs_resolution, state_of, valid_state_code,
};
use crate::marker::Marker;
use crate::ticket::connection::Connection;
use crate::ticket::http::{
    ClientConfigError, Clock, Delivery, HttpClient, HttpResponse, TokenCache, TokioClock,
};
use crate::ticket::listing::{ListedPage, Presence};
use crate::ticket::provenance::{Provenance, ProvenanceRead};
use crate::ticket::{
    AsyncTicketSystem, Blame, FieldUpdate, FoundTicket, TargetStatus, TicketError, TicketRef,
    TicketStatus, TicketUpdate, UpdatedPage,
};

pub struct ServiceNowClient {
    pub(super) conn: Connection<Signing>,
    pub(super) default_table: String,
    close_code: String,
    close_notes: String,
    reopen_state: String,
    pub(super) page_size: u32,
    pub(super) token_refresh_margin: Duration,
    /// The OAuth token, when the connection signs in with client credentials.
    pub(super) tokens: TokenCache,
}

impl fmt::Debug for ServiceNowClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.conn.debug(
            f,
            "ServiceNowClient",
            ("default_table", &self.default_table),
        )
    }
}

impl ServiceNowClient {
    /// A client for `cfg` whose time comes from `clock` (tests use a virtual clock),
    /// which also decides when an OAuth token has expired.
    pub fn with_clock(
        cfg: ServiceNowConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<ServiceNowClient, ClientConfigError> {
        cfg.check()?;
        let sign = cfg.auth.signing()?;
        let lag = cfg.search_consistency;
        Ok(ServiceNowClient {
            default_table: cfg.default_table,
            close_code: cfg.close_code,
            close_notes: cfg.close_notes,
            reopen_state: cfg.reopen_state,
            page_size: cfg.page_size.max(1),
            token_refresh_margin: cfg.token_refresh_margin,
            tokens: TokenCache::default(),
            conn: Connection::open(SYSTEM, cfg.name, cfg.base_url, &cfg.http, lag, clock, sign)?,
        })
    }

    /// A client for `cfg` on real time.
    pub fn new(cfg: ServiceNowConfig) -> Result<ServiceNowClient, ClientConfigError> {
        ServiceNowClient::with_clock(cfg, Arc::new(TokioClock::new()))
    }

    /// Signs every request from now on with `auth` (rotated credentials, see
    /// [`crate::aws::secrets`]). A cached OAuth token is dropped, so the next request fetches one
    /// with the new client secret; the old secret is no longer scrubbed from errors, the new one is.
    pub async fn replace_auth(&self, auth: ServiceNowAuth) -> Result<(), ClientConfigError> {
        self.conn.replace_signing(auth.signing()?);
        self.tokens.clear().await;
        Ok(())
    }

    /// The shared HTTP layer (rate limiter and clock), for diagnostics and tests.
    pub fn http(&self) -> &HttpClient {
        &self.conn.http
    }

    /// OAuth tokens fetched so far (for tests and diagnostics).
    pub fn token_fetches(&self) -> u64 {
        self.tokens.fetches()
    }

    /// `{base}/api/now/table/{table}`.
    pub(super) fn table_url(&self, table: &str) -> Url {
        self.conn.url(["api", "now", "table", table])
    }

    pub(super) fn table<'a>(
        &'a self,
        operation: &'static str,
        table: Option<&'a str>,
    ) -> Result<&'a str, TicketError> {
        let table = table.unwrap_or(&self.default_table);
        if valid_table(table) {
            Ok(table)
        } else {
            Err(self.conn.http.permanent(
                operation,
                None,
                format!("{table:?} is not a ServiceNow table name"),
            ))
        }
    }

    pub(super) fn record_url(
        &self,
        operation: &'static str,
        ticket: &TicketRef,
    ) -> Result<Url, TicketError> {
        let table = self.table(operation, ticket.table.as_deref())?;
        if ticket.id.is_empty() || !ticket.id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(self.conn.http.permanent(
                operation,
                None,
                format!("{:?} is not a sys_id", ticket.id),
            ));
        }
        Ok(self.conn.url(["api", "now", "table", table, &ticket.id]))
    }

    pub(super) fn ticket_ref(&self, table: &str, sys_id: String, number: String) -> TicketRef {
        let mut url = self.conn.url(["nav_to.do"]);
        url.query_pairs_mut()
            .append_pair("uri", &format!("{table}.do?sys_id={sys_id}"));
        TicketRef {
            system: self.conn.name.clone(),
            key: number,
            id: sys_id,
            table: Some(table.to_owned()),
            url: url.to_string(),
        }
    }

    /// Sends one Table API request with the connection's credentials. With OAuth, a 401 on a
    /// cached token means it was revoked or expired early: fetch a new one and try once more.
    pub(super) async fn call(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<HttpResponse, TicketError> {
        self.call_with(operation, Delivery::Idempotent, method, url, body)
            .await
    }

    /// [`ServiceNowClient::call`] with an explicit [`Delivery`]. A 401 answer is a refusal
    /// before any work, so the retry with a fresh token is safe for every delivery.
    async fn call_with(
        &self,
        operation: &'static str,
        delivery: Delivery,
        method: reqwest::Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<HttpResponse, TicketError> {
        let build = |c: &reqwest::Client, authorization: HeaderValue| {
            let request = c
                .request(method.clone(), url.clone())
                .header(ACCEPT, "application/json")
                .header(AUTHORIZATION, authorization);
            match body {
                Some(body) => request.json(body),
                None => request,
            }
        };
        match self.conn.signing() {
            Signing::Basic(header) => {
                self.conn
                    .http
                    .send_with(operation, delivery, |c| build(c, header.clone()))
                    .await
            }
            Signing::OAuth { .. } => {
                let token = self.token().await?;
                let header = bearer(operation, &token)?;
                match self
                    .conn
                    .http
                    .send_with(operation, delivery, |c| build(c, header.clone()))
                    .await
                {
                    Err(e) if e.status() == Some(401) => {
                        tracing::debug!(operation, "token rejected; fetching a new one");
                        self.tokens.invalidate(&token).await;
                        let token = self.token().await?;
                        let header = bearer(operation, &token)?;
                        self.conn
                            .http
                            .send_with(operation, delivery, |c| build(c, header.clone()))
                            .await
                    }
                    other => other,
                }
            }
        }
    }

    async fn record(
        &self,
        operation: &'static str,
        ticket: &TicketRef,
    ) -> Result<TicketStatus, TicketError> {
        let record = self
            .record_fields(operation, ticket, "state,sys_updated_on", "all")
            .await?;
        Ok(state_of(&record))
    }

    /// [`Self::record`] with who changed it and why it was closed (the status sync's read).
    async fn attributed_record(
        &self,
        operation: &'static str,
        ticket: &TicketRef,
    ) -> Result<TicketStatus, TicketError> {
        let fields = format!("state,sys_updated_on,{ATTRIBUTION_FIELDS}");
        let record = self
            .record_fields(operation, ticket, &fields, "all")
            .await?;
        Ok(state_of(&record))
    }

    /// One record's `fields` (comma-separated), with `sysparm_display_value` = `display`
    /// (`true`, `false` or `all`).
    pub(super) async fn record_fields(
        &self,
        operation: &'static str,
        ticket: &TicketRef,
        fields: &str,
        display: &str,
    ) -> Result<serde_json::Map<String, Value>, TicketError> {
        let mut url = self.record_url(operation, ticket)?;
        url.query_pairs_mut()
            .append_pair("sysparm_fields", fields)
            .append_pair("sysparm_display_value", display)
            .append_pair("sysparm_exclude_reference_link", "true");
        let response = self
            .call(operation, reqwest::Method::GET, url, None)
            .await?;
        let envelope: Envelope<serde_json::Map<String, Value>> =
            self.conn.http.json(operation, &response)?;
        Ok(envelope.result)
    }

    async fn patch(
        &self,
        operation: &'static str,
        ticket: &TicketRef,
        body: &Value,
    ) -> Result<(), TicketError> {
        let url = self.record_url(operation, ticket)?;
        self.call(operation, reqwest::Method::PATCH, url, Some(body))
            .await
            .map(drop)
    }

    fn resolution(&self, state: &str, note: &str) -> Value {
        let notes = if note.trim().is_empty() {
            self.close_notes.as_str()
        } else {
            note
        };
        json!({ "state": state, "close_code": self.close_code, "close_notes": notes })
    }
}

impl AsyncTicketSystem for ServiceNowClient {
    fn name(&self) -> &str {
        &self.conn.name
    }

    async fn find_by_marker(
        &self,
        marker: &Marker,
        table: Option<&str>,
    ) -> Result<Vec<FoundTicket>, TicketError> {
        const OP: &str = "find_by_marker";
        let table = self.table(OP, table)?;
        let query = marker_query(marker).ok_or_else(|| {
            self.conn.http.permanent(
                OP,
                None,
                "marker is not a valid correlation_id (control characters or too long)".to_owned(),
            )
        })?;
        let mut url = self.table_url(table);
        url.query_pairs_mut()
            .append_pair("sysparm_query", &query)
            .append_pair("sysparm_fields", RECORD_FIELDS)
            .append_pair("sysparm_limit", MARKER_MATCHES)
            .append_pair("sysparm_exclude_reference_link", "true");
        let response = self
            .call(OP, reqwest::Method::GET, url, None)
            .await
            .map_err(table_gone)?;
        let found: Envelope<Vec<serde_json::Map<String, Value>>> =
            self.conn.http.json(OP, &response)?;
        Ok(found
            .result
            .into_iter()
            .filter_map(|record| {
                let (sys_id, _) = field(&record, "sys_id");
                let (number, _) = field(&record, "number");
                let done = state_of(&record).done;
                (!sys_id.is_empty()).then(|| FoundTicket {
                    ticket: self.ticket_ref(table, sys_id, number),
                    done,
                })
            })
            .collect())
    }

    fn settle_time(&self) -> Duration {
        self.conn.settle_time
    }

    async fn probe(&self) -> Result<(), TicketError> {
        self.probe_target(&self.default_table).await
    }

    async fn probe_target(&self, target: &str) -> Result<(), TicketError> {
        const OP: &str = "probe";
        let table = self.table(OP, Some(target))?;
        let mut url = self.table_url(table);
        url.query_pairs_mut()
            .append_pair("sysparm_fields", "sys_id")
            .append_pair("sysparm_limit", "1");
        let response = self.call(OP, reqwest::Method::GET, url, None).await;
        match response {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.status(), Some(400 | 404)) => Err(e.blamed_on(Blame::Target)),
            Err(e) => Err(e),
        }
    }

    fn target_of(&self, _payload: &Value, table: Option<&str>) -> Option<String> {
        Some(table.unwrap_or(&self.default_table).to_owned())
    }

    async fn create(&self, payload: &Value, table: Option<&str>) -> Result<TicketRef, TicketError> {
        const OP: &str = "create";
        let table = self.table(OP, table)?;
        let url = self.table_url(table);
        let response = self
            .call_with(
                OP,
                Delivery::AtMostOnce,
                reqwest::Method::POST,
                url,
                Some(payload),
            )
            .await
            .map_err(table_gone)?;
        // A 2xx we cannot read did create something.
        let created: Envelope<serde_json::Map<String, Value>> = self
            .conn
            .http
            .json(OP, &response)
            .map_err(TicketError::into_outcome_unknown)?;
        let (sys_id, _) = field(&created.result, "sys_id");
        let (number, _) = field(&created.result, "number");
        if sys_id.is_empty() {
            return Err(TicketError::OutcomeUnknown {
                system: SYSTEM,
                operation: OP,
                status: Some(response.status),
                message: "created record has no sys_id".to_owned(),
            });
        }
        Ok(self.ticket_ref(table, sys_id, number))
    }

    async fn update_fields(
        &self,
        ticket: &TicketRef,
        update: &FieldUpdate,
    ) -> Result<(), TicketError> {
        let body = Value::Object(update.fields.clone());
        self.patch("update_fields", ticket, &body).await
    }

    async fn comment(&self, ticket: &TicketRef, text: &str) -> Result<(), TicketError> {
        const OP: &str = "comment";
        // Work notes are a journal: a PATCH applied twice adds two entries.
        let url = self.record_url(OP, ticket)?;
        self.call_with(
            OP,
            Delivery::AtMostOnce,
            reqwest::Method::PATCH,
            url,
            Some(&json!({ "work_notes": text })),
        )
        .await
        .map(drop)
    }

    async fn has_comment(&self, ticket: &TicketRef, needle: &str) -> Result<bool, TicketError> {
        let (notes, display) = self.work_notes("has_comment", ticket).await?;
        Ok(notes.contains(needle) || display.is_some_and(|d| d.contains(needle)))
    }

    /// `Done` resolves (state 6 with close code and notes); `Named` takes a state code or an
    /// out-of-the-box label (`In Progress`, `On Hold`, …).
    async fn transition(
        &self,
        ticket: &TicketRef,
        to: &TargetStatus,
        note: &str,
    ) -> Result<(), TicketError> {
        const OP: &str = "transition";
        let target = match to {
            TargetStatus::Done => None,
            TargetStatus::Named(name) => Some(valid_state_code(name).ok_or_else(|| {
                self.conn.http.permanent(
                    OP,
                    None,
                    format!(
                        "{name:?} is not a ServiceNow state code or one of: {}",
                        labels()
                    ),
                )
            })?),
        };
        let current = self.record(OP, ticket).await?;
        let body = match target {
            None if current.done => return Ok(()),
            None => self.resolution(RESOLVED, note),
            Some(code) if code == current.category => return Ok(()),
            Some(code) if needs_resolution(&code) => self.resolution(&code, note),
            Some(code) => json!({ "state": code }),
        };
        self.patch(OP, ticket, &body).await
    }

    async fn reopen(&self, ticket: &TicketRef, note: &str) -> Result<(), TicketError> {
        const OP: &str = "reopen";
        let current = self.record(OP, ticket).await?;
        if !current.done {
            return Ok(());
        }
        let mut body = json!({ "state": self.reopen_state });
        if !note.trim().is_empty() {
            body["work_notes"] = Value::String(note.to_owned());
        }
        self.patch(OP, ticket, &body).await
    }

    async fn status(&self, ticket: &TicketRef) -> Result<TicketStatus, TicketError> {
        self.attributed_record("status", ticket).await
    }

    /// Polls the default table. The watermark is compared in UTC: give the integration user the
    /// UTC time zone.
    async fn updated_since(
        &self,
        since: &str,
        cursor: Option<&str>,
    ) -> Result<UpdatedPage, TicketError> {
        self.updated_since_in(since, &self.default_table, cursor)
            .await
    }

    fn default_table(&self) -> Option<&str> {
        Some(&self.default_table)
    }

    /// Polls `table` (the same query in any table: bridge records carry `correlation_display`).
    async fn updated_since_in(
        &self,
        since: &str,
        table: &str,
        cursor: Option<&str>,
    ) -> Result<UpdatedPage, TicketError> {
        const OP: &str = "updated_since";
        let query = updated_since_query(since).ok_or_else(|| {
            self.conn.http.permanent(
                OP,
                None,
                format!("watermark {since:?} is not an RFC 3339 time"),
            )
        })?;
        let offset = match cursor {
            None => 0,
            Some(c) => c.parse::<u64>().map_err(|_| {
                self.conn
                    .http
                    .permanent(OP, None, format!("cursor {c:?} is not an offset"))
            })?,
        };
        let table = self.table(OP, Some(table))?;
        let (records, count) = self
            .bridge_page(OP, table, &query, "sys_updated_on", offset, true)
            .await?;
        let tickets = records
            .into_iter()
            .map(|record| TicketUpdate {
                ticket: record.ticket,
                marker: record.marker,
                status: record.status,
                updated_at: record.at,
            })
            .collect();
        let next =
            (count > 0 && count >= u64::from(self.page_size)).then(|| (offset + count).to_string());
        Ok(UpdatedPage { tickets, next })
    }

    // ---- reconcile (issue 16): see `listing` ----

    fn attach_provenance(&self, payload: &Value, provenance: &Provenance) -> Value {
        with_provenance(payload, provenance)
    }

    async fn list_bridge_tickets(
        &self,
        tables: &[String],
        cursor: Option<&str>,
    ) -> Result<ListedPage, TicketError> {
        self.list_page(tables, cursor).await
    }

    async fn provenance(&self, ticket: &TicketRef) -> Result<ProvenanceRead, TicketError> {
        self.read_provenance(ticket).await
    }

    async fn presence(&self, ticket: &TicketRef) -> Result<Presence, TicketError> {
        self.record_presence(ticket).await
    }

    async fn create_turn(&self) -> crate::ticket::http::CreateTurn {
        self.conn.http.create_turn().await
    }
}
