//! Who moved an issue to its status: the author of the newest changelog entry that changed
//! `status`, which the risk acceptance note names. Jira's status and search reads do not say
//! it, so this is one extra read, made only when status sync writes a timed acceptance:
//!
//! - Cloud: `GET /rest/api/3/issue/{key}/changelog?startAt=&maxResults=` pages the changelog
//!   oldest first (`values`, `startAt`, `total`, `isLast`). The first page is read; when it is
//!   not the last, the last one (`startAt = total - 100`, past the first page) is read next, and
//!   if nothing there changed the status, pages before it: at most [`MAX_PAGES`] reads in all,
//!   after which nobody is named.
//! - Data Center: `GET /rest/api/2/issue/{key}?expand=changelog&fields=status` carries the
//!   histories (oldest first) in `changelog.histories`, in the one answer.
//!
//! Entries are compared by their `created` time (order breaks ties), so an answer in another
//! order still names the newest. When the newest status change is not to the status the sync
//! read (the ticket moved again meanwhile), nobody is named rather than the wrong person.

use serde::Deserialize;
use serde_json::Value;

use super::api::decode;
use super::client::JiraClient;
use super::config::JiraApiVersion;
use super::query::rfc3339_from_jira;
use crate::ticket::{TicketError, TicketRef, attribution};

/// Changelog entries a Cloud page asks for (Jira's maximum).
pub(super) const PAGE: u64 = 100;
/// Most changelog pages one lookup reads.
pub(super) const MAX_PAGES: usize = 3;

const OP: &str = "status_changed_by";

/// One changelog entry (Cloud `values[]`, Data Center `changelog.histories[]`).
#[derive(Debug, Deserialize)]
pub(super) struct History {
    #[serde(default)]
    author: Option<Author>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
struct Author {
    #[serde(rename = "displayName", default)]
    display_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Item {
    #[serde(default)]
    field: String,
    #[serde(rename = "toString", default)]
    to_string: Option<String>,
}

/// A Cloud changelog page.
#[derive(Debug, Deserialize)]
struct CloudPage {
    #[serde(rename = "startAt", default)]
    start_at: Option<u64>,
    #[serde(default)]
    total: Option<u64>,
    #[serde(rename = "isLast", default)]
    is_last: Option<bool>,
    #[serde(default)]
    values: Vec<History>,
}

impl CloudPage {
    /// Whether no entry comes after this page: `isLast` when Jira sends it, else by `total`.
    fn is_last(&self, start: u64) -> bool {
        if self.values.is_empty() {
            return true;
        }
        match (self.is_last, self.total) {
            (Some(last), _) => last,
            (None, Some(total)) => {
                self.start_at.unwrap_or(start) + self.values.len() as u64 >= total
            }
            (None, None) => (self.values.len() as u64) < PAGE,
        }
    }
}

/// A Data Center issue read with `expand=changelog`.
#[derive(Debug, Deserialize)]
struct ExpandedIssue {
    #[serde(default)]
    changelog: Option<Expanded>,
}

#[derive(Debug, Deserialize)]
struct Expanded {
    #[serde(default)]
    histories: Vec<History>,
}

/// What one page says about the newest status change.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// No entry of these changed the status.
    Nothing,
    /// The newest status change, to `status`: its author's display name, if it has one.
    By(Option<String>),
    /// The newest status change went to another status.
    Elsewhere,
}

/// The newest entry of `histories` that changed `status`, compared with the current `status`.
pub(super) fn newest_status_change(histories: &[History], status: &str) -> Found {
    let newest = histories
        .iter()
        .enumerate()
        .filter_map(|(index, history)| {
            let item = history.items.iter().rev().find(|i| i.field == "status")?;
            let at = history
                .created
                .as_deref()
                .and_then(|c| crate::time::parse_time(&rfc3339_from_jira(c.trim())));
            Some(((at, index), history, item))
        })
        .max_by_key(|(order, _, _)| *order);
    match newest {
        None => Found::Nothing,
        Some((_, history, item)) => {
            let to = item.to_string.as_deref().unwrap_or_default().trim();
            if to.eq_ignore_ascii_case(status.trim()) {
                Found::By(
                    history
                        .author
                        .as_ref()
                        .and_then(|a| a.display_name.as_deref())
                        .and_then(attribution::name),
                )
            } else {
                Found::Elsewhere
            }
        }
    }
}

impl JiraClient {
    /// The author of the newest changelog entry that moved `ticket` to `status`.
    pub(super) async fn status_author(
        &self,
        ticket: &TicketRef,
        status: &str,
    ) -> Result<Option<String>, TicketError> {
        let found = match self.version {
            JiraApiVersion::V3 => self.cloud_status_author(ticket, status).await?,
            JiraApiVersion::V2 => {
                let mut url = self.api(&["issue", &ticket.key]);
                url.query_pairs_mut()
                    .append_pair("expand", "changelog")
                    .append_pair("fields", "status");
                let issue: ExpandedIssue = decode(OP, self.get(OP, url).await?)?;
                let histories = issue.changelog.map(|c| c.histories).unwrap_or_default();
                newest_status_change(&histories, status)
            }
        };
        Ok(match found {
            Found::By(name) => name,
            Found::Nothing | Found::Elsewhere => {
                tracing::debug!(ticket = %ticket.key, status, ?found, "the changelog names nobody who moved the ticket to its status");
                None
            }
        })
    }

    async fn cloud_status_author(
        &self,
        ticket: &TicketRef,
        status: &str,
    ) -> Result<Found, TicketError> {
        let first = self.changelog_page(ticket, 0).await?;
        if first.is_last(0) {
            return Ok(newest_status_change(&first.values, status));
        }
        // Newest last: start from the last page and walk back while nothing there changed
        // the status (the first page is already read).
        let mut start = first.total.unwrap_or(0).saturating_sub(PAGE).max(PAGE);
        for _ in 1..MAX_PAGES {
            let page = self.changelog_page(ticket, start).await?;
            match newest_status_change(&page.values, status) {
                // Everything after the first page is read: the first one decides.
                Found::Nothing if start <= PAGE => {
                    return Ok(newest_status_change(&first.values, status));
                }
                Found::Nothing => start = start.saturating_sub(PAGE).max(PAGE),
                found => return Ok(found),
            }
        }
        // Pages in the middle were not read: what the first page says may not be the newest.
        Ok(Found::Nothing)
    }

    async fn changelog_page(
        &self,
        ticket: &TicketRef,
        start: u64,
    ) -> Result<CloudPage, TicketError> {
        let mut url = self.api(&["issue", &ticket.key, "changelog"]);
        url.query_pairs_mut()
            .append_pair("startAt", &start.to_string())
            .append_pair("maxResults", &PAGE.to_string());
        let value: Value = self.get(OP, url).await?;
        decode(OP, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn histories(value: Value) -> Vec<History> {
        serde_json::from_value(value).unwrap()
    }

    fn entry(by: &str, created: &str, to: &str) -> Value {
        json!({"author": {"displayName": by}, "created": created,
            "items": [{"field": "status", "fromString": "To Do", "toString": to}]})
    }

    #[test]
    fn the_newest_status_change_names_its_author() {
        let list = histories(json!([
            entry("Bot", "2024-05-01T10:00:00.000+0000", "In Progress"),
            {"author": {"displayName": "Editor"}, "created": "2024-05-03T10:00:00.000+0000",
             "items": [{"field": "summary", "toString": "x"}]},
            entry("Jane\nDoe", "2024-05-02T10:00:00.000+0000", "Won't Do"),
        ]));
        assert_eq!(
            newest_status_change(&list, "won't do"),
            Found::By(Some("Jane Doe".to_owned()))
        );
        // Out of order: the time decides, not the position.
        let list = histories(json!([
            entry("Jane", "2024-05-02T10:00:00.000+0000", "Won't Do"),
            entry("Bot", "2024-05-01T10:00:00.000+0000", "In Progress"),
        ]));
        assert_eq!(
            newest_status_change(&list, "Won't Do"),
            Found::By(Some("Jane".to_owned()))
        );
    }

    #[test]
    fn a_status_changed_again_or_never_names_nobody() {
        let list = histories(json!([
            entry("Jane", "2024-05-01T10:00:00.000+0000", "Won't Do"),
            entry("Bot", "2024-05-02T10:00:00.000+0000", "To Do"),
        ]));
        assert_eq!(newest_status_change(&list, "Won't Do"), Found::Elsewhere);
        assert_eq!(newest_status_change(&[], "Won't Do"), Found::Nothing);
        let anonymous = histories(json!([{"created": "2024-05-01T10:00:00.000+0000",
            "items": [{"field": "status", "toString": "Done"}]}]));
        assert_eq!(newest_status_change(&anonymous, "Done"), Found::By(None));
    }
}
