//! The Jira REST calls the client is made of: URLs under `/rest/api/{2,3}`, signed JSON requests,
//! reading an issue's status and transitions, and one page of a search (Cloud pages by token,
//! Data Center by offset), with the response shapes they decode.

use reqwest::header::AUTHORIZATION;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::SYSTEM;
use super::client::JiraClient;
use super::config::JiraApiVersion;
use super::status::{Status, Transition, TransitionList};
use crate::ticket::http::Delivery;
use crate::ticket::{Blame, TicketError, TicketRef, TicketStatus};

impl JiraClient {
    /// `{base}/rest/api/{version}/{tail…}`.
    pub(super) fn api(&self, tail: &[&str]) -> Url {
        let prefix = ["rest", "api", self.version.segment()];
        self.conn
            .url(prefix.into_iter().chain(tail.iter().copied()))
    }

    pub(super) async fn get(
        &self,
        operation: &'static str,
        url: Url,
    ) -> Result<Value, TicketError> {
        let response = self
            .conn
            .http
            .send(operation, |c| {
                c.get(url.clone())
                    .header(AUTHORIZATION, self.conn.signing())
            })
            .await?;
        self.conn.http.json(operation, &response)
    }

    /// Sends a JSON body; returns the response body when there is one (201), `Null` for 204.
    pub(super) async fn send_json(
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
            .conn
            .http
            .send_with(operation, delivery, |c| {
                c.request(method.clone(), url.clone())
                    .header(AUTHORIZATION, self.conn.signing())
                    .json(body)
            })
            .await?;
        if response.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        self.conn.http.json(operation, &response)
    }

    pub(super) async fn current_status(
        &self,
        operation: &'static str,
        ticket: &TicketRef,
    ) -> Result<TicketStatus, TicketError> {
        self.read_status(operation, ticket, "status").await
    }

    /// [`JiraClient::current_status`] with the resolution too (`fields=status,resolution`, the
    /// same one request): the read status sync makes.
    pub(super) async fn status_with_resolution(
        &self,
        operation: &'static str,
        ticket: &TicketRef,
    ) -> Result<TicketStatus, TicketError> {
        self.read_status(operation, ticket, "status,resolution")
            .await
    }

    async fn read_status(
        &self,
        operation: &'static str,
        ticket: &TicketRef,
        fields: &str,
    ) -> Result<TicketStatus, TicketError> {
        let mut url = self.api(&["issue", &ticket.key]);
        url.query_pairs_mut().append_pair("fields", fields);
        let issue: Issue = decode(operation, self.get(operation, url).await?)?;
        issue
            .fields
            .and_then(IssueFields::into_ticket_status)
            .ok_or_else(|| {
                self.conn.http.permanent(
                    operation,
                    None,
                    format!("{} has no status field", ticket.key),
                )
            })
    }

    pub(super) async fn transitions(
        &self,
        operation: &'static str,
        ticket: &TicketRef,
    ) -> Result<Vec<Transition>, TicketError> {
        let url = self.api(&["issue", &ticket.key, "transitions"]);
        let list: TransitionList = decode(operation, self.get(operation, url).await?)?;
        Ok(list.transitions)
    }

    pub(super) async fn apply_transition(
        &self,
        operation: &'static str,
        ticket: &TicketRef,
        transition: &Transition,
    ) -> Result<(), TicketError> {
        let url = self.api(&["issue", &ticket.key, "transitions"]);
        let body = json!({ "transition": { "id": transition.id } });
        // A transition applied twice is refused (it is no longer offered from the new status):
        // never resend it blind; the next attempt reads the status first.
        self.post_once(operation, url, &body).await.map(drop)
    }

    /// POSTs `body` at most once: what it adds (a comment, a transition) would be added twice.
    pub(super) async fn post_once(
        &self,
        operation: &'static str,
        url: Url,
        body: &Value,
    ) -> Result<Value, TicketError> {
        self.send_json_with(
            operation,
            Delivery::AtMostOnce,
            reqwest::Method::POST,
            url,
            body,
        )
        .await
    }

    /// One search page; Cloud pages by token, Data Center by offset.
    pub(super) async fn search(
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
                        self.conn.http.permanent(
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

/// A create refused because the rule's project or issue type does not exist (any more): Jira
/// answers 400 with the field in its `errors` map, or 404. That is the rule's fault, not the
/// finding's.
pub(super) fn target_gone(error: TicketError) -> TicketError {
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

pub(super) fn decode<T: serde::de::DeserializeOwned>(
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
pub(super) struct CommentPage {
    #[serde(default)]
    pub(super) comments: Vec<Comment>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Comment {
    #[serde(default)]
    pub(super) body: Value,
}

#[derive(Debug, Deserialize)]
pub(super) struct Created {
    pub(super) id: String,
    pub(super) key: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Issue {
    pub(super) id: String,
    pub(super) key: String,
    #[serde(default)]
    pub(super) fields: Option<IssueFields>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct IssueFields {
    #[serde(default)]
    pub(super) status: Option<Status>,
    #[serde(default)]
    pub(super) labels: Vec<String>,
    #[serde(default)]
    pub(super) updated: Option<String>,
    /// Read by the reconcile listing only.
    #[serde(default)]
    pub(super) created: Option<String>,
    /// Read by the status sync only (`null` while unresolved).
    #[serde(default)]
    pub(super) resolution: Option<Resolution>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Resolution {
    #[serde(default)]
    name: String,
}

impl IssueFields {
    /// The status with the resolution when it was asked for; `None` without a status.
    pub(super) fn into_ticket_status(self) -> Option<TicketStatus> {
        let mut status = self.status?.into_ticket_status();
        status.resolution = self
            .resolution
            .and_then(|r| crate::ticket::attribution::resolution(&r.name, ""));
        Some(status)
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
