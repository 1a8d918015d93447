//! What `findings-bridge reconcile` reads from Jira: every issue labelled `findings-bridge`
//! (Cloud `search/jql` by page token, Data Center `search` by `startAt`, both through the shared
//! search of `api`), the provenance issue property the bridge sets on create, and whether an
//! issue a record names still exists.

use serde::Deserialize;
use serde_json::{Value, json};

use super::client::JiraClient;
use super::query::{jql_string, rfc3339_from_jira};
use crate::marker::{BRIDGE_LABEL, Marker};
use crate::ticket::listing::{ListedPage, ListedTicket, Presence};
use crate::ticket::provenance::{PROPERTY_KEY, Provenance, ProvenanceRead};
use crate::ticket::{Blame, TicketError, TicketRef};

/// Every bridge issue, oldest first (new issues land on the last page while the listing runs).
pub(super) fn bridge_jql() -> String {
    format!("labels = {} ORDER BY created ASC", jql_string(BRIDGE_LABEL))
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
        let mut tickets = Vec::with_capacity(issues.len());
        for issue in issues {
            let fields = issue.fields.unwrap_or_default();
            let Some(status) = fields.status else {
                tracing::warn!(key = issue.key, "search result without status; skipped");
                continue;
            };
            tickets.push(ListedTicket {
                marker: fields.labels.iter().find_map(|l| Marker::parse(l)),
                status: status.into_ticket_status(),
                created_at: fields
                    .created
                    .as_deref()
                    .map(rfc3339_from_jira)
                    .unwrap_or_default(),
                ticket: self.ticket_ref(issue.id, issue.key),
            });
        }
        Ok(ListedPage { tickets, next })
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
        match self.current_status(OP, &by_id(ticket)).await {
            Ok(status) => Ok(Presence::Exists(status)),
            Err(e) if e.status() == Some(404) => {
                let Some((project, _)) = ticket.key.rsplit_once('-') else {
                    return Err(e);
                };
                match self.get(OP, self.api(&["project", project])).await {
                    Ok(_) => Ok(Presence::Gone),
                    Err(project_error) => Err(self
                        .conn
                        .http
                        .permanent(
                            OP,
                            project_error.status(),
                            format!(
                                "{} answers 404 and its project {project} cannot be read either \
                                 ({project_error}): deleted, or hidden from the bridge's account; \
                                 not taken as gone",
                                ticket.key
                            ),
                        )
                        .blamed_on(Blame::Target)),
                }
            }
            Err(e) => Err(e),
        }
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
