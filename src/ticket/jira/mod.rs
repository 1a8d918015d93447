//! Jira client for Cloud (REST v3, ADF, `search/jql` with `nextPageToken`) and Data Center
//! (REST v2, wiki markup, `search` with `startAt`). Both flavours share request shapes, so one
//! type serves both and only the differences branch on [`JiraApiVersion`].

pub mod format;

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use std::time::Duration;

use crate::marker::{BRIDGE_LABEL, Marker};
use crate::ticket::http::{
    ClientConfigError, Clock, Delivery, HttpClient, HttpSettings, TokioClock,
};
use crate::ticket::{
    Blame, BoxFuture, FieldUpdate, FoundTicket, TargetStatus, TicketError, TicketRef, TicketStatus,
    TicketSystem, TicketUpdate, UpdatedPage,
};

const SYSTEM: &str = "jira";

/// How long Jira Cloud's search index may lag a create, by default: seconds in practice,
/// sometimes more (`JIRA_SEARCH_CONSISTENCY`).
pub const DEFAULT_SEARCH_CONSISTENCY: Duration = Duration::from_secs(15);

/// The most marker matches read in one search; more than a couple is already an incident.
const MARKER_MATCHES: u32 = 50;

/// How the bridge signs in: Cloud uses an Atlassian account e-mail with an API token, Data
/// Center a personal access token.
#[derive(Clone)]
pub enum JiraAuth {
    Basic {
        email: String,
        api_token: SecretString,
    },
    Bearer {
        pat: SecretString,
    },
}

impl fmt::Debug for JiraAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JiraAuth::Basic { email, .. } => f
                .debug_struct("Basic")
                .field("email", email)
                .field("api_token", &"[REDACTED]")
                .finish(),
            JiraAuth::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("pat", &"[REDACTED]")
                .finish(),
        }
    }
}

/// The `Authorization` header for `auth`, and the secret values to scrub from errors.
fn authorization(auth: &JiraAuth) -> Result<(HeaderValue, Vec<SecretString>), ClientConfigError> {
    let (header, scrub) = match auth {
        JiraAuth::Basic { email, api_token } => {
            let pair = format!("{email}:{}", api_token.expose_secret());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            let header = format!("Basic {encoded}");
            (header, vec![api_token.clone(), SecretString::from(encoded)])
        }
        JiraAuth::Bearer { pat } => (format!("Bearer {}", pat.expose_secret()), vec![pat.clone()]),
    };
    let mut header = HeaderValue::from_str(&header).map_err(|_| ClientConfigError::Invalid {
        name: "JIRA credentials",
        message: "contain characters not allowed in an HTTP header".to_owned(),
    })?;
    header.set_sensitive(true);
    Ok((header, scrub))
}

/// REST API flavour: `V3` for Jira Cloud, `V2` for Data Center / Server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JiraApiVersion {
    V3,
    V2,
}

impl JiraApiVersion {
    fn segment(self) -> &'static str {
        match self {
            JiraApiVersion::V3 => "3",
            JiraApiVersion::V2 => "2",
        }
    }
}

#[derive(Debug, Clone)]
pub struct JiraConfig {
    /// Connection name, used as `TicketRef::system`.
    pub name: String,
    pub base_url: Url,
    pub auth: JiraAuth,
    pub api_version: JiraApiVersion,
    /// Where people open tickets: `{browse_base}/browse/KEY` (differs from `base_url` behind
    /// API gateways).
    pub browse_base: Url,
    pub http: HttpSettings,
    /// Issues per page when polling for updates.
    pub page_size: u32,
    /// How long the search index may lag a create (`JIRA_SEARCH_CONSISTENCY`).
    pub search_consistency: Duration,
}

impl JiraConfig {
    pub fn new(base_url: Url, auth: JiraAuth, api_version: JiraApiVersion) -> JiraConfig {
        JiraConfig {
            name: SYSTEM.to_owned(),
            browse_base: base_url.clone(),
            base_url,
            auth,
            api_version,
            http: HttpSettings::default(),
            page_size: 50,
            search_consistency: DEFAULT_SEARCH_CONSISTENCY,
        }
    }

    /// Reads `JIRA_URL`, `JIRA_EMAIL` + `JIRA_API_TOKEN` (Cloud) or `JIRA_PAT` (Data Center) and
    /// `JIRA_API_VERSION`. `Ok(None)` when Jira is not configured at all.
    pub fn from_env() -> Result<Option<JiraConfig>, ClientConfigError> {
        JiraConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`JiraConfig::from_env`] over any variable source (tests cannot safely set process env).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<JiraConfig>, ClientConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let url = get("JIRA_URL");
        let email = get("JIRA_EMAIL");
        let token = get("JIRA_API_TOKEN");
        let pat = get("JIRA_PAT");
        let version = get("JIRA_API_VERSION");
        let Some(url) = url else {
            if email.is_some() || token.is_some() || pat.is_some() || version.is_some() {
                return Err(ClientConfigError::Missing {
                    name: "JIRA_URL",
                    because: "other JIRA_* settings are present".to_owned(),
                });
            }
            return Ok(None);
        };
        let base_url = Url::parse(url.trim()).map_err(|e| ClientConfigError::Invalid {
            name: "JIRA_URL",
            message: e.to_string(),
        })?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(ClientConfigError::Invalid {
                name: "JIRA_URL",
                message: "must be an http(s) URL".to_owned(),
            });
        }
        let auth = match (email, token, pat) {
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(ClientConfigError::Invalid {
                    name: "JIRA_PAT",
                    message: "set either JIRA_EMAIL + JIRA_API_TOKEN (Cloud) or JIRA_PAT (Data Center), not both".to_owned(),
                });
            }
            (Some(email), Some(token), None) => JiraAuth::Basic {
                email,
                api_token: SecretString::from(token),
            },
            (None, None, Some(pat)) => JiraAuth::Bearer {
                pat: SecretString::from(pat),
            },
            (Some(_), None, None) => {
                return Err(ClientConfigError::Missing {
                    name: "JIRA_API_TOKEN",
                    because: "JIRA_EMAIL is set".to_owned(),
                });
            }
            (None, Some(_), None) => {
                return Err(ClientConfigError::Missing {
                    name: "JIRA_EMAIL",
                    because: "JIRA_API_TOKEN is set".to_owned(),
                });
            }
            (None, None, None) => {
                return Err(ClientConfigError::Missing {
                    name: "JIRA_EMAIL + JIRA_API_TOKEN or JIRA_PAT",
                    because: "JIRA_URL is set".to_owned(),
                });
            }
        };
        let api_version = match version.as_deref().map(str::trim) {
            Some("3") => JiraApiVersion::V3,
            Some("2") => JiraApiVersion::V2,
            Some(other) => {
                return Err(ClientConfigError::Invalid {
                    name: "JIRA_API_VERSION",
                    message: format!("expected 3 (Cloud) or 2 (Data Center), got {other:?}"),
                });
            }
            // Cloud signs in with e-mail + token, Data Center with a PAT.
            None => match auth {
                JiraAuth::Basic { .. } => JiraApiVersion::V3,
                JiraAuth::Bearer { .. } => JiraApiVersion::V2,
            },
        };
        let mut cfg = JiraConfig::new(base_url, auth, api_version);
        if let Some(rate) = crate::ticket::http::rate_limit_setting(
            "JIRA_RATE_LIMIT",
            get("JIRA_RATE_LIMIT").as_deref(),
        )? {
            cfg.http.rate_limit_per_sec = rate;
        }
        if let Some(timeout) = crate::ticket::http::seconds_setting(
            "JIRA_REQUEST_TIMEOUT",
            get("JIRA_REQUEST_TIMEOUT").as_deref(),
        )? {
            cfg.http.request_timeout = timeout.max(Duration::from_millis(100));
        }
        if let Some(lag) = crate::ticket::http::seconds_setting(
            "JIRA_SEARCH_CONSISTENCY",
            get("JIRA_SEARCH_CONSISTENCY").as_deref(),
        )? {
            cfg.search_consistency = lag;
        }
        Ok(Some(cfg))
    }
}

pub struct JiraClient {
    name: String,
    base_url: Url,
    browse_base: Url,
    version: JiraApiVersion,
    page_size: u32,
    /// Swapped when the credentials rotate ([`JiraClient::replace_auth`]).
    authorization: std::sync::RwLock<HeaderValue>,
    http: HttpClient,
    /// Send window + request timeout + index lag: see [`TicketSystem::settle_time`].
    settle_time: Duration,
}

impl fmt::Debug for JiraClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JiraClient")
            .field("name", &self.name)
            .field("base_url", &self.base_url.as_str())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl JiraClient {
    pub fn new(cfg: JiraConfig) -> Result<JiraClient, ClientConfigError> {
        JiraClient::with_clock(cfg, Arc::new(TokioClock::new()))
    }

    /// Like [`JiraClient::new`] with a chosen time source (tests use a virtual clock).
    pub fn with_clock(
        cfg: JiraConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<JiraClient, ClientConfigError> {
        if cfg.base_url.cannot_be_a_base() {
            return Err(ClientConfigError::Invalid {
                name: "JIRA_URL",
                message: "not a base URL".to_owned(),
            });
        }
        let (authorization, scrub) = authorization(&cfg.auth)?;
        let http = HttpClient::new(SYSTEM, &cfg.http, clock, scrub)?;
        let settle_time = cfg.http.at_most_once_span() + cfg.search_consistency;
        Ok(JiraClient {
            settle_time,
            name: cfg.name,
            base_url: cfg.base_url,
            browse_base: cfg.browse_base,
            version: cfg.api_version,
            page_size: cfg.page_size.max(1),
            authorization: std::sync::RwLock::new(authorization),
            http,
        })
    }

    /// Signs every request from now on with `auth` (rotated credentials, see
    /// [`crate::aws::secrets`]); the old secret is no longer scrubbed from errors, the new one is.
    pub fn replace_auth(&self, auth: JiraAuth) -> Result<(), ClientConfigError> {
        let (header, scrub) = authorization(&auth)?;
        *self
            .authorization
            .write()
            .unwrap_or_else(|p| p.into_inner()) = header;
        self.http.replace_scrub(scrub);
        Ok(())
    }

    fn authorization(&self) -> HeaderValue {
        self.authorization
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The shared HTTP layer (rate limiter and clock), for diagnostics and tests.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    fn api(&self, tail: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(["rest", "api", self.version.segment()])
                .extend(tail);
        }
        url
    }

    fn browse_url(&self, key: &str) -> String {
        let mut url = self.browse_base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["browse", key]);
        }
        url.to_string()
    }

    fn ticket_ref(&self, id: String, key: String) -> TicketRef {
        TicketRef {
            system: self.name.clone(),
            url: self.browse_url(&key),
            key,
            id,
            table: None,
        }
    }

    /// Comments are light Markdown: ADF for Cloud, wiki markup for Data Center, cut to Jira's
    /// text limit the same way ticket descriptions are.
    fn comment_body(&self, markdown: &str) -> Value {
        let flavor = match self.version {
            JiraApiVersion::V3 => crate::render::JiraFlavor::Cloud,
            JiraApiVersion::V2 => crate::render::JiraFlavor::DataCenter,
        };
        crate::render::jira_rich_text(flavor, markdown)
    }

    async fn get(&self, operation: &'static str, url: Url) -> Result<Value, TicketError> {
        let response = self
            .http
            .send(operation, |c| {
                c.get(url.clone())
                    .header(AUTHORIZATION, self.authorization())
            })
            .await?;
        self.http.json(operation, &response)
    }

    /// Sends a JSON body; returns the response body when there is one (201), `Null` for 204.
    async fn send_json(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        url: Url,
        body: &Value,
    ) -> Result<Value, TicketError> {
        self.send_json_with(operation, Delivery::Idempotent, method, url, body)
            .await
    }

    async fn send_json_with(
        &self,
        operation: &'static str,
        delivery: Delivery,
        method: reqwest::Method,
        url: Url,
        body: &Value,
    ) -> Result<Value, TicketError> {
        let response = self
            .http
            .send_with(operation, delivery, |c| {
                c.request(method.clone(), url.clone())
                    .header(AUTHORIZATION, self.authorization())
                    .json(body)
            })
            .await?;
        if response.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        self.http.json(operation, &response)
    }

    async fn current_status(
        &self,
        operation: &'static str,
        ticket: &TicketRef,
    ) -> Result<TicketStatus, TicketError> {
        let mut url = self.api(&["issue", &ticket.key]);
        url.query_pairs_mut().append_pair("fields", "status");
        let issue: Issue = decode(operation, self.get(operation, url).await?)?;
        let status = issue.fields.and_then(|f| f.status).ok_or_else(|| {
            self.http.permanent(
                operation,
                None,
                format!("{} has no status field", ticket.key),
            )
        })?;
        Ok(status.into_ticket_status())
    }

    async fn transitions(
        &self,
        operation: &'static str,
        ticket: &TicketRef,
    ) -> Result<Vec<Transition>, TicketError> {
        let url = self.api(&["issue", &ticket.key, "transitions"]);
        let list: TransitionList = decode(operation, self.get(operation, url).await?)?;
        Ok(list.transitions)
    }

    async fn apply_transition(
        &self,
        operation: &'static str,
        ticket: &TicketRef,
        transition: &Transition,
    ) -> Result<(), TicketError> {
        let url = self.api(&["issue", &ticket.key, "transitions"]);
        let body = json!({ "transition": { "id": transition.id } });
        // A transition applied twice is refused (it is no longer offered from the new status):
        // never resend it blind; the next attempt reads the status first.
        self.send_json_with(
            operation,
            Delivery::AtMostOnce,
            reqwest::Method::POST,
            url,
            &body,
        )
        .await
        .map(drop)
    }

    /// One search page; Cloud pages by token, Data Center by offset.
    async fn search(
        &self,
        operation: &'static str,
        jql: &str,
        fields: &[&str],
        max_results: u32,
        cursor: Option<&str>,
    ) -> Result<(Vec<Issue>, Option<String>), TicketError> {
        match self.version {
            JiraApiVersion::V3 => {
                let mut body = json!({ "jql": jql, "fields": fields, "maxResults": max_results });
                if let Some(token) = cursor {
                    body["nextPageToken"] = Value::String(token.to_owned());
                }
                let url = self.api(&["search", "jql"]);
                let page: CloudPage = decode(
                    operation,
                    self.send_json(operation, reqwest::Method::POST, url, &body)
                        .await?,
                )?;
                let next = if page.is_last == Some(true) || page.issues.is_empty() {
                    None
                } else {
                    page.next_page_token
                };
                Ok((page.issues, next))
            }
            JiraApiVersion::V2 => {
                let start_at = match cursor {
                    None => 0,
                    Some(c) => c.parse::<u64>().map_err(|_| {
                        self.http.permanent(
                            operation,
                            None,
                            format!("cursor {c:?} is not a Data Center startAt offset"),
                        )
                    })?,
                };
                let body = json!({
                    "jql": jql,
                    "startAt": start_at,
                    "maxResults": max_results,
                    "fields": fields,
                });
                let url = self.api(&["search"]);
                let page: ServerPage = decode(
                    operation,
                    self.send_json(operation, reqwest::Method::POST, url, &body)
                        .await?,
                )?;
                let seen = page.start_at.unwrap_or(start_at) + page.issues.len() as u64;
                let next = (!page.issues.is_empty() && page.total.is_some_and(|t| seen < t))
                    .then(|| seen.to_string());
                Ok((page.issues, next))
            }
        }
    }
}

/// Quotes a JQL string value: `"` and `\` escaped, control characters written as escapes, so
/// no input can close the string and add clauses.
pub fn jql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// JQL date literal (minute precision) for an RFC 3339 instant, in UTC. Jira reads JQL dates in
/// the searching user's time zone: give the bridge's Jira user the UTC zone.
fn jql_datetime(since: &str) -> Option<String> {
    let at = chrono::DateTime::parse_from_rfc3339(since.trim()).ok()?;
    Some(
        at.with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M")
            .to_string(),
    )
}

/// Jira's `2024-05-01T12:00:00.000+0000` as RFC 3339; left alone when it does not parse.
fn rfc3339_from_jira(value: &str) -> String {
    chrono::DateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(value))
        .map(|at| at.to_rfc3339())
        .unwrap_or_else(|_| value.to_owned())
}

/// A create refused because the rule's project or issue type does not exist (any more): Jira
/// answers 400 with the field in its `errors` map, or 404. That is the rule's fault, not the
/// finding's.
fn target_gone(error: TicketError) -> TicketError {
    match &error {
        TicketError::Permanent {
            status: Some(404), ..
        } => error.blamed_on(Blame::Target),
        TicketError::Permanent {
            status: Some(400),
            message,
            ..
        } if message.contains("project: ") || message.contains("issuetype: ") => {
            error.blamed_on(Blame::Target)
        }
        _ => error,
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    operation: &'static str,
    value: Value,
) -> Result<T, TicketError> {
    serde_json::from_value(value).map_err(|e| TicketError::Transient {
        system: SYSTEM,
        operation,
        status: None,
        message: format!("unexpected response shape: {e}"),
    })
}

#[derive(Debug, Deserialize)]
struct CommentPage {
    #[serde(default)]
    comments: Vec<Comment>,
}

#[derive(Debug, Deserialize)]
struct Comment {
    #[serde(default)]
    body: Value,
}

#[derive(Debug, Deserialize)]
struct Created {
    id: String,
    key: String,
}

#[derive(Debug, Deserialize)]
struct Issue {
    id: String,
    key: String,
    #[serde(default)]
    fields: Option<IssueFields>,
}

#[derive(Debug, Deserialize)]
struct IssueFields {
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    updated: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Status {
    name: String,
    #[serde(rename = "statusCategory", default)]
    status_category: Option<StatusCategory>,
}

#[derive(Debug, Deserialize)]
struct StatusCategory {
    key: String,
}

impl Status {
    fn category(&self) -> &str {
        self.status_category.as_ref().map_or("", |c| c.key.as_str())
    }

    fn into_ticket_status(self) -> TicketStatus {
        let category = self.category().to_owned();
        TicketStatus {
            done: category == "done",
            name: self.name,
            category,
        }
    }
}

#[derive(Debug, Deserialize)]
struct TransitionList {
    #[serde(default)]
    transitions: Vec<Transition>,
}

#[derive(Debug, Deserialize)]
struct Transition {
    id: String,
    name: String,
    #[serde(default)]
    to: Option<Status>,
}

impl Transition {
    fn to_category(&self) -> &str {
        self.to.as_ref().map_or("", Status::category)
    }

    fn describe(&self) -> String {
        match &self.to {
            Some(to) => format!("{} (→ {})", self.name, to.name),
            None => self.name.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct CloudPage {
    #[serde(default)]
    issues: Vec<Issue>,
    #[serde(rename = "nextPageToken", default)]
    next_page_token: Option<String>,
    #[serde(rename = "isLast", default)]
    is_last: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ServerPage {
    #[serde(default)]
    issues: Vec<Issue>,
    #[serde(rename = "startAt", default)]
    start_at: Option<u64>,
    #[serde(default)]
    total: Option<u64>,
}

fn describe_transitions(transitions: &[Transition]) -> String {
    if transitions.is_empty() {
        "none".to_owned()
    } else {
        transitions
            .iter()
            .map(Transition::describe)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl TicketSystem for JiraClient {
    fn name(&self) -> &str {
        &self.name
    }

    fn find_by_marker<'a>(
        &'a self,
        marker: &'a Marker,
        _table: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<FoundTicket>, TicketError>> {
        Box::pin(async move {
            let jql = format!(
                "labels = {} AND labels = {} ORDER BY created ASC",
                jql_string(marker.as_str()),
                jql_string(BRIDGE_LABEL)
            );
            let (issues, _) = self
                .search(
                    "find_by_marker",
                    &jql,
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
                        .is_some_and(|s| s.category() == "done");
                    FoundTicket {
                        ticket: self.ticket_ref(issue.id, issue.key),
                        done,
                    }
                })
                .collect())
        })
    }

    fn settle_time(&self) -> Duration {
        self.settle_time
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), TicketError>> {
        Box::pin(async move { self.get("probe", self.api(&["myself"])).await.map(drop) })
    }

    fn probe_target<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(async move {
            self.get("probe_target", self.api(&["project", target]))
                .await
                .map(drop)
                .map_err(|e| match e.status() {
                    Some(404) => e.blamed_on(Blame::Target),
                    _ => e,
                })
        })
    }

    fn target_of(&self, payload: &Value, _table: Option<&str>) -> Option<String> {
        payload
            .pointer("/fields/project/key")
            .and_then(Value::as_str)
            .filter(|key| !key.is_empty())
            .map(str::to_owned)
    }

    fn create<'a>(
        &'a self,
        payload: &'a Value,
        _table: Option<&'a str>,
    ) -> BoxFuture<'a, Result<TicketRef, TicketError>> {
        Box::pin(async move {
            let url = self.api(&["issue"]);
            let response = self
                .http
                .send_with("create", Delivery::AtMostOnce, |c| {
                    c.post(url.clone())
                        .header(AUTHORIZATION, self.authorization())
                        .json(payload)
                })
                .await
                .map_err(target_gone)?;
            // A 2xx we cannot read did create something.
            let created: Created = self
                .http
                .json("create", &response)
                .map_err(TicketError::into_outcome_unknown)?;
            Ok(self.ticket_ref(created.id, created.key))
        })
    }

    fn update_fields<'a>(
        &'a self,
        ticket: &'a TicketRef,
        update: &'a FieldUpdate,
    ) -> BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(async move {
            let url = self.api(&["issue", &ticket.key]);
            let body = json!({ "fields": update.fields });
            self.send_json("update_fields", reqwest::Method::PUT, url, &body)
                .await
                .map(drop)
        })
    }

    fn comment<'a>(
        &'a self,
        ticket: &'a TicketRef,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(async move {
            let url = self.api(&["issue", &ticket.key, "comment"]);
            let body = json!({ "body": self.comment_body(text) });
            self.send_json_with(
                "comment",
                Delivery::AtMostOnce,
                reqwest::Method::POST,
                url,
                &body,
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
        })
    }

    /// Jira needs no resolution note, so `note` is not sent; the lifecycle comments itself.
    fn transition<'a>(
        &'a self,
        ticket: &'a TicketRef,
        to: &'a TargetStatus,
        _note: &'a str,
    ) -> BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(async move {
            const OP: &str = "transition";
            let current = self.current_status(OP, ticket).await?;
            let already = match to {
                TargetStatus::Done => current.done,
                TargetStatus::Named(name) => current.name.eq_ignore_ascii_case(name.trim()),
            };
            if already {
                return Ok(());
            }
            let transitions = self.transitions(OP, ticket).await?;
            let chosen = match to {
                TargetStatus::Done => transitions.iter().find(|t| t.to_category() == "done"),
                TargetStatus::Named(name) => {
                    let name = name.trim();
                    transitions
                        .iter()
                        .find(|t| {
                            t.to.as_ref()
                                .is_some_and(|s| s.name.eq_ignore_ascii_case(name))
                        })
                        .or_else(|| {
                            transitions
                                .iter()
                                .find(|t| t.name.eq_ignore_ascii_case(name))
                        })
                }
            };
            let Some(chosen) = chosen else {
                let target = match to {
                    TargetStatus::Done => "a done status".to_owned(),
                    TargetStatus::Named(name) => format!("{name:?}"),
                };
                return Err(self.http.permanent(
                    OP,
                    None,
                    format!(
                        "{} has no transition from {:?} to {target}; available: {}",
                        ticket.key,
                        current.name,
                        describe_transitions(&transitions)
                    ),
                ));
            };
            self.apply_transition(OP, ticket, chosen).await
        })
    }

    /// Moves a done ticket back to a `new` (else `indeterminate`) status; an open ticket is left
    /// alone. Jira transitions carry no note: the lifecycle comments on its own.
    fn reopen<'a>(
        &'a self,
        ticket: &'a TicketRef,
        _note: &'a str,
    ) -> BoxFuture<'a, Result<(), TicketError>> {
        Box::pin(async move {
            const OP: &str = "reopen";
            let current = self.current_status(OP, ticket).await?;
            if !current.done {
                return Ok(());
            }
            let transitions = self.transitions(OP, ticket).await?;
            let chosen = transitions
                .iter()
                .find(|t| t.to_category() == "new")
                .or_else(|| {
                    transitions
                        .iter()
                        .find(|t| t.to_category() == "indeterminate")
                });
            let Some(chosen) = chosen else {
                return Err(self.http.permanent(
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
        })
    }

    fn status<'a>(
        &'a self,
        ticket: &'a TicketRef,
    ) -> BoxFuture<'a, Result<TicketStatus, TicketError>> {
        Box::pin(self.current_status("status", ticket))
    }

    fn updated_since<'a>(
        &'a self,
        since: &'a str,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<UpdatedPage, TicketError>> {
        Box::pin(async move {
            const OP: &str = "updated_since";
            let Some(since_jql) = jql_datetime(since) else {
                return Err(self.http.permanent(
                    OP,
                    None,
                    format!("watermark {since:?} is not an RFC 3339 time"),
                ));
            };
            let jql = format!(
                "labels = {} AND updated >= {} ORDER BY updated ASC",
                jql_string(BRIDGE_LABEL),
                jql_string(&since_jql)
            );
            let (issues, next) = self
                .search(
                    OP,
                    &jql,
                    &["status", "labels", "updated"],
                    self.page_size,
                    cursor,
                )
                .await?;
            let mut tickets = Vec::with_capacity(issues.len());
            for issue in issues {
                let fields = issue.fields.unwrap_or(IssueFields {
                    status: None,
                    labels: Vec::new(),
                    updated: None,
                });
                let Some(status) = fields.status else {
                    tracing::warn!(key = issue.key, "search result without status; skipped");
                    continue;
                };
                tickets.push(TicketUpdate {
                    marker: fields.labels.iter().find_map(|l| Marker::parse(l)),
                    status: status.into_ticket_status(),
                    updated_at: fields
                        .updated
                        .as_deref()
                        .map(rfc3339_from_jira)
                        .unwrap_or_default(),
                    ticket: self.ticket_ref(issue.id, issue.key),
                });
            }
            Ok(UpdatedPage { tickets, next })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jql_strings_cannot_be_closed_early() {
        assert_eq!(jql_string("fb-0a"), r#""fb-0a""#);
        assert_eq!(
            jql_string("x\" OR labels is not EMPTY OR labels = \"y\\"),
            r#""x\" OR labels is not EMPTY OR labels = \"y\\""#
        );
        assert_eq!(jql_string("a\nb\u{1}"), r#""a\nb\u0001""#);
    }

    #[test]
    fn watermarks_become_utc_minutes() {
        assert_eq!(
            jql_datetime("2024-05-01T14:07:59+02:00").as_deref(),
            Some("2024-05-01 12:07")
        );
        assert_eq!(jql_datetime("2024-05-01\" OR x"), None);
    }

    #[test]
    fn jira_timestamps_become_rfc3339() {
        assert_eq!(
            rfc3339_from_jira("2024-05-01T12:00:00.000+0000"),
            "2024-05-01T12:00:00+00:00"
        );
        assert_eq!(rfc3339_from_jira("garbage"), "garbage");
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
        assert!(JiraConfig::from_lookup(env(&[])).unwrap().is_none());
        let cloud = JiraConfig::from_lookup(env(&[
            ("JIRA_URL", "https://acme.atlassian.net"),
            ("JIRA_EMAIL", "bot@acme.test"),
            ("JIRA_API_TOKEN", "tok-123"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(cloud.api_version, JiraApiVersion::V3);
        let dc = JiraConfig::from_lookup(env(&[
            ("JIRA_URL", "https://jira.acme.test"),
            ("JIRA_PAT", "pat-456"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(dc.api_version, JiraApiVersion::V2);
        assert_eq!(
            dc.http.rate_limit_per_sec,
            HttpSettings::default().rate_limit_per_sec
        );
        let throttled = JiraConfig::from_lookup(env(&[
            ("JIRA_URL", "https://jira.acme.test"),
            ("JIRA_PAT", "pat-456"),
            ("JIRA_RATE_LIMIT", "4"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(throttled.http.rate_limit_per_sec, 4.0);
        let bad_rate = JiraConfig::from_lookup(env(&[
            ("JIRA_URL", "https://jira.acme.test"),
            ("JIRA_PAT", "pat-456"),
            ("JIRA_RATE_LIMIT", "lots"),
        ]))
        .unwrap_err();
        assert!(
            bad_rate.to_string().starts_with("JIRA_RATE_LIMIT:"),
            "{bad_rate}"
        );

        let half = JiraConfig::from_lookup(env(&[
            ("JIRA_URL", "https://acme.atlassian.net"),
            ("JIRA_EMAIL", "bot@acme.test"),
        ]))
        .unwrap_err();
        assert_eq!(
            half.to_string(),
            "JIRA_API_TOKEN is required when JIRA_EMAIL is set"
        );
        let no_url = JiraConfig::from_lookup(env(&[("JIRA_PAT", "pat-456")])).unwrap_err();
        assert!(no_url.to_string().starts_with("JIRA_URL is required"));
        let both = JiraConfig::from_lookup(env(&[
            ("JIRA_URL", "https://acme.atlassian.net"),
            ("JIRA_EMAIL", "bot@acme.test"),
            ("JIRA_API_TOKEN", "tok-123"),
            ("JIRA_PAT", "pat-456"),
        ]))
        .unwrap_err();
        assert!(both.to_string().contains("not both"));
        let bad_version = JiraConfig::from_lookup(env(&[
            ("JIRA_URL", "https://acme.atlassian.net"),
            ("JIRA_PAT", "pat-456"),
            ("JIRA_API_VERSION", "4"),
        ]))
        .unwrap_err();
        assert!(bad_version.to_string().contains("JIRA_API_VERSION"));
        assert!(!format!("{both:?}{half:?}").contains("tok-123"));
    }
}
