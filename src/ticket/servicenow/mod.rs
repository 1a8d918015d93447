//! ServiceNow Table API client. Records are found again by `correlation_id` (the marker) and
//! polled by `correlation_display = findings-bridge`; states are numeric codes, and resolving
//! needs a close code and close notes.
//!
//! Encoded queries are built only from validated pieces: a value has its `^` doubled and may not
//! contain control characters, because the server silently ignores terms it cannot parse, which
//! would widen a lookup to unrelated records.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::marker::{BRIDGE_LABEL, Marker};
use crate::ticket::http::{
    CachedToken, ClientConfigError, Clock, Delivery, HttpClient, HttpResponse, HttpSettings,
    TokenCache, TokioClock,
};
use crate::ticket::{
    Blame, BoxFuture, FieldUpdate, FoundTicket, TargetStatus, TicketError, TicketRef, TicketStatus,
    TicketSystem, TicketUpdate, UpdatedPage,
};

const SYSTEM: &str = "servicenow";
const RECORD_FIELDS: &str = "sys_id,number,state,sys_updated_on,correlation_id";
/// Longest `correlation_id` the incident table stores.
const CORRELATION_LIMIT: usize = 100;
/// The most marker matches read in one query; more than a couple is already an incident.
const MARKER_MATCHES: &str = "50";
const RESOLVED: &str = "6";

/// Basic auth with an integration user, or OAuth client credentials (`/oauth_token.do`).
#[derive(Clone)]
pub enum ServiceNowAuth {
    Basic {
        username: String,
        password: SecretString,
    },
    OAuth {
        client_id: String,
        client_secret: SecretString,
    },
}

impl fmt::Debug for ServiceNowAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceNowAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"[REDACTED]")
                .finish(),
            ServiceNowAuth::OAuth { client_id, .. } => f
                .debug_struct("OAuth")
                .field("client_id", client_id)
                .field("client_secret", &"[REDACTED]")
                .finish(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServiceNowConfig {
    /// Connection name, used as `TicketRef::system`.
    pub name: String,
    pub base_url: Url,
    pub auth: ServiceNowAuth,
    /// Table for rules that name none, and the table polled for status changes.
    pub default_table: String,
    /// `close_code` sent when resolving (an out-of-the-box incident resolution code).
    pub close_code: String,
    /// `close_notes` when the caller gives no note.
    pub close_notes: String,
    /// State code a reopened record goes back to (2 = In Progress).
    pub reopen_state: String,
    pub http: HttpSettings,
    /// Records per page when polling for updates.
    pub page_size: u32,
    /// Refresh an OAuth token this long before it expires.
    pub token_refresh_margin: Duration,
    /// How long a created record may stay invisible to a query (`SERVICENOW_SEARCH_CONSISTENCY`;
    /// the Table API reads its own writes, so 0 unless a proxy or replica sits in between).
    pub search_consistency: Duration,
}

impl ServiceNowConfig {
    pub fn new(base_url: Url, auth: ServiceNowAuth) -> ServiceNowConfig {
        ServiceNowConfig {
            name: SYSTEM.to_owned(),
            base_url,
            auth,
            default_table: "incident".to_owned(),
            // The finding's source reported it fixed: the caller resolved it.
            close_code: "Resolved by caller".to_owned(),
            close_notes:
                "Resolved by findings-bridge: the Security Hub finding is no longer active."
                    .to_owned(),
            reopen_state: "2".to_owned(),
            http: HttpSettings::default(),
            page_size: 100,
            token_refresh_margin: Duration::from_secs(60),
            search_consistency: Duration::ZERO,
        }
    }

    /// Reads `SERVICENOW_URL` and `SERVICENOW_USERNAME` + `SERVICENOW_PASSWORD` or
    /// `SERVICENOW_CLIENT_ID` + `SERVICENOW_CLIENT_SECRET`. `Ok(None)` when not configured.
    pub fn from_env() -> Result<Option<ServiceNowConfig>, ClientConfigError> {
        ServiceNowConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`ServiceNowConfig::from_env`] over any variable source.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ServiceNowConfig>, ClientConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let url = get("SERVICENOW_URL");
        let user = get("SERVICENOW_USERNAME");
        let password = get("SERVICENOW_PASSWORD");
        let client_id = get("SERVICENOW_CLIENT_ID");
        let client_secret = get("SERVICENOW_CLIENT_SECRET");
        let Some(url) = url else {
            if user.is_some()
                || password.is_some()
                || client_id.is_some()
                || client_secret.is_some()
            {
                return Err(ClientConfigError::Missing {
                    name: "SERVICENOW_URL",
                    because: "other SERVICENOW_* settings are present".to_owned(),
                });
            }
            return Ok(None);
        };
        let base_url = Url::parse(url.trim()).map_err(|e| ClientConfigError::Invalid {
            name: "SERVICENOW_URL",
            message: e.to_string(),
        })?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(ClientConfigError::Invalid {
                name: "SERVICENOW_URL",
                message: "must be an http(s) URL".to_owned(),
            });
        }
        let basic = user.is_some() || password.is_some();
        let oauth = client_id.is_some() || client_secret.is_some();
        let auth = match (basic, oauth) {
            (true, true) => {
                return Err(ClientConfigError::Invalid {
                    name: "SERVICENOW_CLIENT_ID",
                    message: "set either SERVICENOW_USERNAME + SERVICENOW_PASSWORD or SERVICENOW_CLIENT_ID + SERVICENOW_CLIENT_SECRET, not both".to_owned(),
                });
            }
            (false, false) => {
                return Err(ClientConfigError::Missing {
                    name: "SERVICENOW_USERNAME + SERVICENOW_PASSWORD or SERVICENOW_CLIENT_ID + SERVICENOW_CLIENT_SECRET",
                    because: "SERVICENOW_URL is set".to_owned(),
                });
            }
            (true, false) => match (user, password) {
                (Some(username), Some(password)) => ServiceNowAuth::Basic {
                    username,
                    password: SecretString::from(password),
                },
                (Some(_), None) => {
                    return Err(ClientConfigError::Missing {
                        name: "SERVICENOW_PASSWORD",
                        because: "SERVICENOW_USERNAME is set".to_owned(),
                    });
                }
                _ => {
                    return Err(ClientConfigError::Missing {
                        name: "SERVICENOW_USERNAME",
                        because: "SERVICENOW_PASSWORD is set".to_owned(),
                    });
                }
            },
            (false, true) => match (client_id, client_secret) {
                (Some(client_id), Some(secret)) => ServiceNowAuth::OAuth {
                    client_id,
                    client_secret: SecretString::from(secret),
                },
                (Some(_), None) => {
                    return Err(ClientConfigError::Missing {
                        name: "SERVICENOW_CLIENT_SECRET",
                        because: "SERVICENOW_CLIENT_ID is set".to_owned(),
                    });
                }
                _ => {
                    return Err(ClientConfigError::Missing {
                        name: "SERVICENOW_CLIENT_ID",
                        because: "SERVICENOW_CLIENT_SECRET is set".to_owned(),
                    });
                }
            },
        };
        let mut cfg = ServiceNowConfig::new(base_url, auth);
        if let Some(rate) = crate::ticket::http::rate_limit_setting(
            "SERVICENOW_RATE_LIMIT",
            get("SERVICENOW_RATE_LIMIT").as_deref(),
        )? {
            cfg.http.rate_limit_per_sec = rate;
        }
        if let Some(timeout) = crate::ticket::http::seconds_setting(
            "SERVICENOW_REQUEST_TIMEOUT",
            get("SERVICENOW_REQUEST_TIMEOUT").as_deref(),
        )? {
            cfg.http.request_timeout = timeout.max(Duration::from_millis(100));
        }
        if let Some(lag) = crate::ticket::http::seconds_setting(
            "SERVICENOW_SEARCH_CONSISTENCY",
            get("SERVICENOW_SEARCH_CONSISTENCY").as_deref(),
        )? {
            cfg.search_consistency = lag;
        }
        Ok(Some(cfg))
    }
}

#[derive(Clone)]
enum Auth {
    Basic(HeaderValue),
    OAuth {
        client_id: String,
        client_secret: SecretString,
    },
}

pub struct ServiceNowClient {
    name: String,
    base_url: Url,
    default_table: String,
    close_code: String,
    close_notes: String,
    reopen_state: String,
    page_size: u32,
    token_refresh_margin: Duration,
    /// Swapped when the credentials rotate ([`ServiceNowClient::replace_auth`]).
    auth: std::sync::RwLock<Auth>,
    tokens: TokenCache,
    http: HttpClient,
    /// Send window + request timeout + query lag: see [`TicketSystem::settle_time`].
    settle_time: Duration,
}

impl fmt::Debug for ServiceNowClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceNowClient")
            .field("name", &self.name)
            .field("base_url", &self.base_url.as_str())
            .field("default_table", &self.default_table)
            .finish_non_exhaustive()
    }
}

impl ServiceNowClient {
    pub fn new(cfg: ServiceNowConfig) -> Result<ServiceNowClient, ClientConfigError> {
        ServiceNowClient::with_clock(cfg, Arc::new(TokioClock::new()))
    }

    /// Like [`ServiceNowClient::new`] with a chosen time source (tests use a virtual clock).
    pub fn with_clock(
        cfg: ServiceNowConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<ServiceNowClient, ClientConfigError> {
        if cfg.base_url.cannot_be_a_base() {
            return Err(ClientConfigError::Invalid {
                name: "SERVICENOW_URL",
                message: "not a base URL".to_owned(),
            });
        }
        if !valid_table(&cfg.default_table) {
            return Err(ClientConfigError::Invalid {
                name: "default_table",
                message: format!("{:?} is not a table name", cfg.default_table),
            });
        }
        if valid_state_code(&cfg.reopen_state).is_none() {
            return Err(ClientConfigError::Invalid {
                name: "reopen_state",
                message: format!("{:?} is not a state code", cfg.reopen_state),
            });
        }
        let (auth, scrub) = auth(cfg.auth)?;
        let http = HttpClient::new(SYSTEM, &cfg.http, clock, scrub)?;
        let settle_time = cfg.http.at_most_once_span() + cfg.search_consistency;
        Ok(ServiceNowClient {
            settle_time,
            name: cfg.name,
            base_url: cfg.base_url,
            default_table: cfg.default_table,
            close_code: cfg.close_code,
            close_notes: cfg.close_notes,
            reopen_state: cfg.reopen_state,
            page_size: cfg.page_size.max(1),
            token_refresh_margin: cfg.token_refresh_margin,
            auth: std::sync::RwLock::new(auth),
            tokens: TokenCache::default(),
            http,
        })
    }

    /// Signs every request from now on with `auth` (rotated credentials, see
    /// [`crate::aws::secrets`]). A cached OAuth token is dropped, so the next request fetches one
    /// with the new client secret; the old secret is no longer scrubbed from errors, the new one is.
    pub async fn replace_auth(&self, auth: ServiceNowAuth) -> Result<(), ClientConfigError> {
        let (auth, scrub) = self::auth(auth)?;
        *self.auth.write().unwrap_or_else(|p| p.into_inner()) = auth;
        self.http.replace_scrub(scrub);
        self.tokens.clear().await;
        Ok(())
    }

    fn current_auth(&self) -> Auth {
        self.auth.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The shared HTTP layer (rate limiter and clock), for diagnostics and tests.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// OAuth tokens fetched so far (for tests and diagnostics).
    pub fn token_fetches(&self) -> u64 {
        self.tokens.fetches()
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn table<'a>(
        &'a self,
        operation: &'static str,
        table: Option<&'a str>,
    ) -> Result<&'a str, TicketError> {
        let table = table.unwrap_or(&self.default_table);
        if valid_table(table) {
            Ok(table)
        } else {
            Err(self.http.permanent(
                operation,
                None,
                format!("{table:?} is not a ServiceNow table name"),
            ))
        }
    }

    fn record_url(&self, operation: &'static str, ticket: &TicketRef) -> Result<Url, TicketError> {
        let table = self.table(operation, ticket.table.as_deref())?;
        if ticket.id.is_empty() || !ticket.id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(self.http.permanent(
                operation,
                None,
                format!("{:?} is not a sys_id", ticket.id),
            ));
        }
        Ok(self.url(&["api", "now", "table", table, &ticket.id]))
    }

    fn ticket_ref(&self, table: &str, sys_id: String, number: String) -> TicketRef {
        let mut url = self.url(&["nav_to.do"]);
        url.query_pairs_mut()
            .append_pair("uri", &format!("{table}.do?sys_id={sys_id}"));
        TicketRef {
            system: self.name.clone(),
            key: number,
            id: sys_id,
            table: Some(table.to_owned()),
            url: url.to_string(),
        }
    }

    async fn token(&self) -> Result<CachedToken, TicketError> {
        let Auth::OAuth {
            client_id,
            client_secret,
        } = self.current_auth()
        else {
            return Err(self.http.permanent(
                "oauth_token",
                None,
                "not an OAuth connection".to_owned(),
            ));
        };
        self.tokens
            .get(
                self.http.clock().as_ref(),
                self.token_refresh_margin,
                || self.fetch_token(&client_id, &client_secret),
            )
            .await
    }

    async fn fetch_token(
        &self,
        client_id: &str,
        client_secret: &SecretString,
    ) -> Result<(SecretString, Duration), TicketError> {
        const OP: &str = "oauth_token";
        let url = self.url(&["oauth_token.do"]);
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", client_id)
            .append_pair("client_secret", client_secret.expose_secret())
            .finish();
        let response = self
            .http
            .send(OP, |c| {
                c.post(url.clone())
                    .header(ACCEPT, "application/json")
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.clone())
            })
            .await
            // The token endpoint refusing the client (a rotated secret, a revoked client) is the
            // connection's fault, whatever status it chose to say so with.
            .map_err(|e| match e {
                TicketError::Permanent { .. } => e.blamed_on(Blame::Connection),
                other => other,
            })?;
        let token: TokenResponse = self.http.json(OP, &response)?;
        let lifetime = match &token.expires_in {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .unwrap_or(1800);
        if token.access_token.is_empty() {
            return Err(self.http.permanent(
                OP,
                Some(response.status),
                "empty access_token".to_owned(),
            ));
        }
        Ok((
            SecretString::from(token.access_token),
            Duration::from_secs(lifetime),
        ))
    }

    /// Sends one Table API request with the connection's credentials. With OAuth, a 401 on a
    /// cached token means it was revoked or expired early: fetch a new one and try once more.
    async fn call(
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
        match self.current_auth() {
            Auth::Basic(header) => {
                self.http
                    .send_with(operation, delivery, |c| build(c, header.clone()))
                    .await
            }
            Auth::OAuth { .. } => {
                let token = self.token().await?;
                let header = bearer(operation, &token)?;
                match self
                    .http
                    .send_with(operation, delivery, |c| build(c, header.clone()))
                    .await
                {
                    Err(e) if e.status() == Some(401) => {
                        tracing::debug!(operation, "token rejected; fetching a new one");
                        self.tokens.invalidate(&token).await;
                        let token = self.token().await?;
                        let header = bearer(operation, &token)?;
                        self.http
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
        let mut url = self.record_url(operation, ticket)?;
        url.query_pairs_mut()
            .append_pair("sysparm_fields", "state,sys_updated_on")
            .append_pair("sysparm_display_value", "all")
            .append_pair("sysparm_exclude_reference_link", "true");
        let response = self
            .call(operation, reqwest::Method::GET, url, None)
            .await?;
        let envelope: Envelope<serde_json::Map<String, Value>> =
            self.http.json(operation, &response)?;
        Ok(state_of(&envelope.result))
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

/// How requests are signed for `auth`, and the secret values to scrub from errors.
fn auth(auth: ServiceNowAuth) -> Result<(Auth, Vec<SecretString>), ClientConfigError> {
    Ok(match auth {
        ServiceNowAuth::Basic { username, password } => {
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", password.expose_secret()));
            let mut header = HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| {
                ClientConfigError::Invalid {
                    name: "ServiceNow credentials",
                    message: "contain characters not allowed in an HTTP header".to_owned(),
                }
            })?;
            header.set_sensitive(true);
            (
                Auth::Basic(header),
                vec![password, SecretString::from(encoded)],
            )
        }
        ServiceNowAuth::OAuth {
            client_id,
            client_secret,
        } => (
            Auth::OAuth {
                client_id,
                client_secret: client_secret.clone(),
            },
            vec![client_secret],
        ),
    })
}

fn bearer(operation: &'static str, token: &CachedToken) -> Result<HeaderValue, TicketError> {
    let mut header = HeaderValue::from_str(&format!("Bearer {}", token.token.expose_secret()))
        .map_err(|_| TicketError::Permanent {
            system: SYSTEM,
            operation,
            status: None,
            message: "access_token contains characters not allowed in an HTTP header".to_owned(),
        })?;
    header.set_sensitive(true);
    Ok(header)
}

fn valid_table(table: &str) -> bool {
    !table.is_empty()
        && table.len() <= 80
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A value for an encoded query term: `^` doubled (a literal caret), refused when it holds
/// control characters (a newline ends the query on some instances and starts a new term).
pub fn encoded_query_value(value: &str) -> Option<String> {
    if value.chars().any(char::is_control) {
        return None;
    }
    Some(value.replace('^', "^^"))
}

/// Incident state labels (out of the box) to codes, so rules may name states either way.
const STATES: [(&str, &str); 6] = [
    ("1", "New"),
    ("2", "In Progress"),
    ("3", "On Hold"),
    ("6", "Resolved"),
    ("7", "Closed"),
    ("8", "Canceled"),
];

fn valid_state_code(value: &str) -> Option<String> {
    let value = value.trim();
    if !value.is_empty()
        && value.len() <= 4
        && value.bytes().all(|b| b.is_ascii_digit() || b == b'-')
    {
        return Some(value.to_owned());
    }
    STATES
        .iter()
        .find(|(_, label)| label.eq_ignore_ascii_case(value))
        .map(|(code, _)| (*code).to_owned())
}

/// A request refused because the rule's table does not exist (any more): the rule's fault, not
/// the finding's, whether the create or the marker search before it meets it first.
fn table_gone(error: TicketError) -> TicketError {
    match &error {
        TicketError::Permanent {
            status: Some(400 | 404),
            message,
            ..
        } if message.to_ascii_lowercase().contains("invalid table") => {
            error.blamed_on(Blame::Target)
        }
        _ => error,
    }
}

fn is_done_state(code: &str) -> bool {
    matches!(code, "6" | "7" | "8")
}

/// A field read with `sysparm_display_value=all` (`{"value","display_value"}`) or without it
/// (a plain string).
fn field(record: &serde_json::Map<String, Value>, name: &str) -> (String, Option<String>) {
    match record.get(name) {
        Some(Value::String(s)) => (s.clone(), None),
        Some(Value::Object(o)) => (
            o.get("value")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            o.get("display_value")
                .and_then(Value::as_str)
                .map(str::to_owned),
        ),
        Some(Value::Number(n)) => (n.to_string(), None),
        _ => (String::new(), None),
    }
}

fn state_of(record: &serde_json::Map<String, Value>) -> TicketStatus {
    let (code, label) = field(record, "state");
    let name = label.filter(|l| !l.is_empty()).unwrap_or_else(|| {
        STATES
            .iter()
            .find(|(c, _)| *c == code)
            .map_or_else(|| code.clone(), |(_, l)| (*l).to_owned())
    });
    TicketStatus {
        done: is_done_state(&code),
        name,
        category: code,
    }
}

/// `2024-05-01 12:00:00` (UTC, the internal format) as RFC 3339.
fn rfc3339_from_glide(value: &str) -> String {
    chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S")
        .map(|at| at.and_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| value.to_owned())
}

#[derive(Debug, Deserialize)]
struct Envelope<T> {
    result: T,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Value>,
}

impl TicketSystem for ServiceNowClient {
    fn name(&self) -> &str {
        &self.name
    }

    fn find_by_marker<'a>(
        &'a self,
        marker: &'a Marker,
        table: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<FoundTicket>, TicketError>> {
        Box::pin(async move {
            const OP: &str = "find_by_marker";
            let table = self.table(OP, table)?;
            let value = encoded_query_value(marker.as_str())
                .filter(|_| marker.as_str().chars().count() <= CORRELATION_LIMIT)
                .ok_or_else(|| {
                    self.http.permanent(
                        OP,
                        None,
                        "marker is not a valid correlation_id (control characters or too long)"
                            .to_owned(),
                    )
                })?;
            let mut url = self.url(&["api", "now", "table", table]);
            url.query_pairs_mut()
                .append_pair(
                    "sysparm_query",
                    &format!(
                        "correlation_id={value}^correlation_display={BRIDGE_LABEL}^ORDERBYsys_created_on"
                    ),
                )
                .append_pair("sysparm_fields", RECORD_FIELDS)
                .append_pair("sysparm_limit", MARKER_MATCHES)
                .append_pair("sysparm_exclude_reference_link", "true");
            let response = self
                .call(OP, reqwest::Method::GET, url, None)
                .await
                .map_err(table_gone)?;
            let found: Envelope<Vec<serde_json::Map<String, Value>>> =
                self.http.json(OP, &response)?;
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
        })
    }

    fn settle_time(&self) -> Duration {
        self.settle_time
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), TicketError>> {
        Box::pin(self.probe_target(&self.default_table))
    }

    fn probe_target<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(async move {
            const OP: &str = "probe";
            let table = self.table(OP, Some(target))?;
            let mut url = self.url(&["api", "now", "table", table]);
            url.query_pairs_mut()
                .append_pair("sysparm_fields", "sys_id")
                .append_pair("sysparm_limit", "1");
            let response = self.call(OP, reqwest::Method::GET, url, None).await;
            match response {
                Ok(_) => Ok(()),
                Err(e) if matches!(e.status(), Some(400 | 404)) => Err(e.blamed_on(Blame::Target)),
                Err(e) => Err(e),
            }
        })
    }

    fn target_of(&self, _payload: &Value, table: Option<&str>) -> Option<String> {
        Some(table.unwrap_or(&self.default_table).to_owned())
    }

    fn create<'a>(
        &'a self,
        payload: &'a Value,
        table: Option<&'a str>,
    ) -> BoxFuture<'a, Result<TicketRef, TicketError>> {
        Box::pin(async move {
            const OP: &str = "create";
            let table = self.table(OP, table)?;
            let url = self.url(&["api", "now", "table", table]);
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
            let created: Envelope<serde_json::Map<String, Value>> =
                self.http
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
        })
    }

    fn update_fields<'a>(
        &'a self,
        ticket: &'a TicketRef,
        update: &'a FieldUpdate,
    ) -> BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(async move {
            let body = Value::Object(update.fields.clone());
            self.patch("update_fields", ticket, &body).await
        })
    }

    fn comment<'a>(
        &'a self,
        ticket: &'a TicketRef,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(async move {
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
        })
    }

    fn has_comment<'a>(
        &'a self,
        ticket: &'a TicketRef,
        needle: &'a str,
    ) -> BoxFuture<'a, Result<bool, TicketError>> {
        Box::pin(async move {
            const OP: &str = "has_comment";
            let mut url = self.record_url(OP, ticket)?;
            // With display values, `work_notes` is the whole journal as text.
            url.query_pairs_mut()
                .append_pair("sysparm_fields", "work_notes")
                .append_pair("sysparm_display_value", "true")
                .append_pair("sysparm_exclude_reference_link", "true");
            let response = self.call(OP, reqwest::Method::GET, url, None).await?;
            let envelope: Envelope<serde_json::Map<String, Value>> =
                self.http.json(OP, &response)?;
            let (notes, display) = field(&envelope.result, "work_notes");
            Ok(notes.contains(needle) || display.is_some_and(|d| d.contains(needle)))
        })
    }

    /// `Done` resolves (state 6 with close code and notes); `Named` takes a state code or an
    /// out-of-the-box label (`In Progress`, `On Hold`, …).
    fn transition<'a>(
        &'a self,
        ticket: &'a TicketRef,
        to: &'a TargetStatus,
        note: &'a str,
    ) -> BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(async move {
            const OP: &str = "transition";
            let target = match to {
                TargetStatus::Done => None,
                TargetStatus::Named(name) => Some(valid_state_code(name).ok_or_else(|| {
                    self.http.permanent(
                        OP,
                        None,
                        format!(
                            "{name:?} is not a ServiceNow state code or one of: {}",
                            STATES.map(|(_, l)| l).join(", ")
                        ),
                    )
                })?),
            };
            let current = self.record(OP, ticket).await?;
            let body = match target {
                None if current.done => return Ok(()),
                None => self.resolution(RESOLVED, note),
                Some(code) if code == current.category => return Ok(()),
                Some(code) if matches!(code.as_str(), "6" | "7") => self.resolution(&code, note),
                Some(code) => json!({ "state": code }),
            };
            self.patch(OP, ticket, &body).await
        })
    }

    fn reopen<'a>(
        &'a self,
        ticket: &'a TicketRef,
        note: &'a str,
    ) -> BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(async move {
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
        })
    }

    fn status<'a>(
        &'a self,
        ticket: &'a TicketRef,
    ) -> BoxFuture<'a, Result<TicketStatus, TicketError>> {
        Box::pin(self.record("status", ticket))
    }

    /// Polls the default table. The watermark is compared in UTC: give the integration user the
    /// UTC time zone.
    fn updated_since<'a>(
        &'a self,
        since: &'a str,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<UpdatedPage, TicketError>> {
        Box::pin(async move {
            const OP: &str = "updated_since";
            let since_at = chrono::DateTime::parse_from_rfc3339(since.trim()).map_err(|_| {
                self.http.permanent(
                    OP,
                    None,
                    format!("watermark {since:?} is not an RFC 3339 time"),
                )
            })?;
            let offset = match cursor {
                None => 0,
                Some(c) => c.parse::<u64>().map_err(|_| {
                    self.http
                        .permanent(OP, None, format!("cursor {c:?} is not an offset"))
                })?,
            };
            let since_glide = since_at
                .with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            let query = format!(
                "correlation_display={BRIDGE_LABEL}^sys_updated_on>={since_glide}^ORDERBYsys_updated_on"
            );
            let table = self.default_table.as_str();
            let mut url = self.url(&["api", "now", "table", table]);
            url.query_pairs_mut()
                .append_pair("sysparm_query", &query)
                .append_pair("sysparm_fields", RECORD_FIELDS)
                .append_pair("sysparm_limit", &self.page_size.to_string())
                .append_pair("sysparm_offset", &offset.to_string())
                .append_pair("sysparm_display_value", "all")
                .append_pair("sysparm_exclude_reference_link", "true");
            let response = self.call(OP, reqwest::Method::GET, url, None).await?;
            let page: Envelope<Vec<serde_json::Map<String, Value>>> =
                self.http.json(OP, &response)?;
            let count = page.result.len() as u64;
            let tickets = page
                .result
                .iter()
                .filter_map(|record| {
                    let (sys_id, _) = field(record, "sys_id");
                    let (number, display_number) = field(record, "number");
                    let (correlation, _) = field(record, "correlation_id");
                    let (updated, _) = field(record, "sys_updated_on");
                    (!sys_id.is_empty()).then(|| TicketUpdate {
                        ticket: self.ticket_ref(
                            table,
                            sys_id,
                            display_number.filter(|n| !n.is_empty()).unwrap_or(number),
                        ),
                        marker: Marker::parse(&correlation),
                        status: state_of(record),
                        updated_at: rfc3339_from_glide(&updated),
                    })
                })
                .collect();
            let next = (count > 0 && count >= u64::from(self.page_size))
                .then(|| (offset + count).to_string());
            Ok(UpdatedPage { tickets, next })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_cannot_add_terms() {
        assert_eq!(
            encoded_query_value("a^ORactive=true").as_deref(),
            Some("a^^ORactive=true")
        );
        assert_eq!(
            encoded_query_value("a^NQsys_id!=x").as_deref(),
            Some("a^^NQsys_id!=x")
        );
        assert_eq!(encoded_query_value("a\nactive=true"), None);
        assert_eq!(encoded_query_value("a\r"), None);
    }

    #[test]
    fn states_are_codes_or_labels() {
        assert_eq!(valid_state_code("6").as_deref(), Some("6"));
        assert_eq!(valid_state_code("in progress").as_deref(), Some("2"));
        assert_eq!(valid_state_code("Resolved").as_deref(), Some("6"));
        assert_eq!(valid_state_code("6^ORstate=1"), None);
        assert_eq!(valid_state_code("Done"), None);
    }

    #[test]
    fn table_names_are_identifiers() {
        assert!(valid_table("incident"));
        assert!(valid_table("sn_si_incident"));
        assert!(!valid_table("incident/../sys_user"));
        assert!(!valid_table("incident?sysparm_query=x"));
        assert!(!valid_table(""));
    }

    #[test]
    fn glide_times_become_rfc3339() {
        assert_eq!(
            rfc3339_from_glide("2024-05-01 12:00:00"),
            "2024-05-01T12:00:00Z"
        );
    }

    #[test]
    fn env_configuration_is_all_or_nothing() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert!(ServiceNowConfig::from_lookup(env(&[])).unwrap().is_none());
        let basic = ServiceNowConfig::from_lookup(env(&[
            ("SERVICENOW_URL", "https://acme.service-now.com"),
            ("SERVICENOW_USERNAME", "bridge"),
            ("SERVICENOW_PASSWORD", "pw-secret"),
        ]))
        .unwrap()
        .unwrap();
        assert!(matches!(basic.auth, ServiceNowAuth::Basic { .. }));
        assert!(!format!("{basic:?}").contains("pw-secret"));
        let oauth = ServiceNowConfig::from_lookup(env(&[
            ("SERVICENOW_URL", "https://acme.service-now.com"),
            ("SERVICENOW_CLIENT_ID", "cid"),
            ("SERVICENOW_CLIENT_SECRET", "cs-secret"),
        ]))
        .unwrap()
        .unwrap();
        assert!(matches!(oauth.auth, ServiceNowAuth::OAuth { .. }));
        assert!(format!("{oauth:?}").contains("[REDACTED]"));
        assert!(!format!("{oauth:?}").contains("cs-secret"));

        let half = ServiceNowConfig::from_lookup(env(&[
            ("SERVICENOW_URL", "https://acme.service-now.com"),
            ("SERVICENOW_CLIENT_ID", "cid"),
        ]))
        .unwrap_err();
        assert_eq!(
            half.to_string(),
            "SERVICENOW_CLIENT_SECRET is required when SERVICENOW_CLIENT_ID is set"
        );
        let mixed = ServiceNowConfig::from_lookup(env(&[
            ("SERVICENOW_URL", "https://acme.service-now.com"),
            ("SERVICENOW_USERNAME", "bridge"),
            ("SERVICENOW_CLIENT_SECRET", "cs-secret"),
        ]))
        .unwrap_err();
        assert!(mixed.to_string().contains("not both"));
        let no_url =
            ServiceNowConfig::from_lookup(env(&[("SERVICENOW_PASSWORD", "pw")])).unwrap_err();
        assert!(no_url.to_string().starts_with("SERVICENOW_URL is required"));
        let bad_url = ServiceNowConfig::from_lookup(env(&[
            ("SERVICENOW_URL", "not a url"),
            ("SERVICENOW_USERNAME", "bridge"),
            ("SERVICENOW_PASSWORD", "pw"),
        ]))
        .unwrap_err();
        assert!(bad_url.to_string().starts_with("SERVICENOW_URL:"));
    }
}
