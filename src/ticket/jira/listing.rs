//! What `findings-bridge reconcile` reads from Jira: every issue labelled `findings-bridge`
//! (Cloud `search/jql` by page token, Data Center `search` by `startAt`, both through the shared
//! search of `api`), the provenance issue property the bridge sets on create, and whether an
//! issue a record names still exists. The status sync reads its pages through `bridge_issues`
//! too.

use serde::Deserialize;
use serde_json::{Value, json};

use super::api::Issue;
use super::client::JiraClient;
use super::query::{jql_string, rfc3339_from_jira};
use crate::marker::{BRIDGE_LABEL, Marker};
use crate::ticket::listing::{ListedPage, ListedTicket, Presence, presence_of};
use crate::ticket::provenance::{PROPERTY_KEY, Provenance, ProvenanceRead};
use crate::ticket::{TicketError, TicketRef, TicketStatus};

/// Every bridge issue, oldest first (new issues land on the last page while the listing runs).
pub(super) fn bridge_jql() -> String {
    format!("labels = {} ORDER BY created ASC", jql_string(BRIDGE_LABEL))
}

/// A bridge issue as a search page shows it.
pub(super) struct BridgeIssue {
    pub(super) ticket: TicketRef,
    pub(super) marker: Option<Marker>,
    pub(super) status: TicketStatus,
    pub(super) updated_at: String,
    pub(super) created_at: String,
}

/// `GET …/issue/{id}/properties/{key}`.
#[derive(Debug, Deserialize)]
struct Property {
    #[serde(default)]
    value: Value,
}

impl JiraClient {
    /// The create body with the provenance as the issue property [`PROPERTY_KEY`] (Jira sets
    /// `properties` with the create; people do not see them).
    pub(super) fn with_provenance(&self, payload: &Value, provenance: &Provenance) -> Value {
        let mut body = payload.clone();
        let property = json!({ "key": PROPERTY_KEY, "value": provenance.to_value() });
        match body.get_mut("properties").and_then(Value::as_array_mut) {
            Some(properties) => {
                properties.retain(|p| p.get("key").and_then(Value::as_str) != Some(PROPERTY_KEY));
                properties.push(property);
            }
            None => {
                if let Some(object) = body.as_object_mut() {
                    object.insert("properties".to_owned(), Value::Array(vec![property]));
                }
            }
        }
        body
    }

    pub(super) async fn list_page(&self, cursor: Option<&str>) -> Result<ListedPage, TicketError> {
        const OP: &str = "list_bridge_tickets";
        let (issues, next) = self
            .search(
                OP,
                &bridge_jql(),
                &["status", "labels", "created"],
                self.page_size,
                cursor,
            )
            .await?;
        let tickets = self
            .bridge_issues(issues)
            .into_iter()
            .map(|issue| ListedTicket {
                ticket: issue.ticket,
                marker: issue.marker,
                status: issue.status,
                created_at: issue.created_at,
            })
            .collect();
        Ok(ListedPage { tickets, next })
    }

    /// Bridge issues of a search page (the status sync's and reconcile's) as tickets with their
    /// marker, status and times (RFC 3339; empty when not asked for); an issue without a status
    /// is skipped with a warning.
    pub(super) fn bridge_issues(&self, issues: Vec<Issue>) -> Vec<BridgeIssue> {
        let time = |t: Option<String>| t.as_deref().map(rfc3339_from_jira).unwrap_or_default();
        issues
            .into_iter()
            .filter_map(|issue| {
                let mut fields = issue.fields.unwrap_or_default();
                let marker = fields.labels.iter().find_map(|l| Marker::parse(l));
                let (updated, created) = (fields.updated.take(), fields.created.take());
                let Some(status) = fields.into_ticket_status() else {
                    tracing::warn!(key = issue.key, "search result without status; skipped");
                    return None;
                };
                Some(BridgeIssue {
                    marker,
                    status,
                    updated_at: time(updated),
                    created_at: time(created),
                    ticket: self.ticket_ref(issue.id, issue.key),
                })
            })
            .collect()
    }

    pub(super) async fn read_provenance(
        &self,
        ticket: &TicketRef,
    ) -> Result<ProvenanceRead, TicketError> {
        const OP: &str = "provenance";
        let url = self.api(&["issue", &ticket.id, "properties", PROPERTY_KEY]);
        match self.get(OP, url).await {
            Ok(value) => match serde_json::from_value::<Property>(value) {
                Ok(property) => Ok(Provenance::from_value(&property.value)),
                Err(e) => Ok(ProvenanceRead::Unreadable(e.to_string())),
            },
            // No such property (the issue itself was just listed).
            Err(e) if e.status() == Some(404) => Ok(ProvenanceRead::Missing),
            Err(e) => Err(e),
        }
    }

    /// By id, which survives a move to another project. A 404 counts as gone only when the
    /// issue's project still answers: a project the account can no longer browse hides all
    /// its issues, which must not read as "deleted".
    pub(super) async fn issue_presence(&self, ticket: &TicketRef) -> Result<Presence, TicketError> {
        const OP: &str = "presence";
        let read = self.current_status(OP, &by_id(ticket)).await;
        let project = ticket.key.rsplit_once('-').map_or("", |(p, _)| p);
        let container = async {
            if project.is_empty() {
                return Err(self.conn.http.permanent(
                    OP,
                    None,
                    format!("{} names no project", ticket.key),
                ));
            }
            self.get(OP, self.api(&["project", project]))
                .await
                .map(drop)
        };
        presence_of(
            read,
            ticket,
            &format!("project {project}"),
            container,
            |status, message| self.conn.http.permanent(OP, status, message),
        )
        .await
    }
}

/// `ticket` addressed by its issue id (what `current_status` puts in the URL is the key).
fn by_id(ticket: &TicketRef) -> TicketRef {
    TicketRef {
        key: ticket.id.clone(),
        ..ticket.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_asks_for_every_bridge_issue_oldest_first() {
        assert_eq!(
            bridge_jql(),
            r#"labels = "findings-bridge" ORDER BY created ASC"#
        );
    }
}
