//! What `findings-bridge reconcile` reads from ServiceNow: every record with
//! `correlation_display = findings-bridge` in the default table and in every table a rule uses
//! (paged by `sysparm_offset` / `sysparm_limit`, table after table), the provenance work note the
//! bridge writes with each create, and whether a record a store entry names still exists. The
//! status sync reads its pages through `bridge_page`, and comments are looked for in the same
//! `work_notes` read.

use serde_json::Value;

use super::client::ServiceNowClient;
use super::query::rfc3339_from_glide;
use super::record::{Envelope, field, table_gone};
use super::status::{ATTRIBUTION_FIELDS, state_of};
use crate::marker::{BRIDGE_LABEL, Marker};
use crate::ticket::listing::{ListedPage, ListedTicket, Presence, presence_of};
use crate::ticket::provenance::{Provenance, ProvenanceRead};
use crate::ticket::{AsyncTicketSystem, TicketError, TicketRef, TicketStatus};

/// A bridge record as a page shows it.
pub(super) struct BridgeRecord {
    pub(super) ticket: TicketRef,
    pub(super) marker: Option<Marker>,
    pub(super) status: TicketStatus,
    /// The page's time field (created or updated) as RFC 3339.
    pub(super) at: String,
}

/// Every bridge record of a table, oldest first; `sys_id` breaks ties of the same second, so
/// offsets stay stable from page to page.
pub(super) fn bridge_query() -> String {
    format!("correlation_display={BRIDGE_LABEL}^ORDERBYsys_created_on^ORDERBYsys_id")
}

/// The create body with the provenance line in `work_notes`, after any work note the rule's own
/// `fields` set (work notes are internal: the caller does not see them).
pub(super) fn with_provenance(payload: &Value, provenance: &Provenance) -> Value {
    let mut body = payload.clone();
    if let Some(object) = body.as_object_mut() {
        let line = provenance.work_note_line();
        let notes = match object.get("work_notes").and_then(Value::as_str) {
            Some(existing) if !existing.trim().is_empty() => format!("{existing}\n\n{line}"),
            _ => line,
        };
        object.insert("work_notes".to_owned(), Value::String(notes));
    }
    body
}

/// Where a listing stands: the table (by position in the list) and the offset in it.
fn parse_cursor(cursor: &str) -> Option<(usize, u64)> {
    let (table, offset) = cursor.split_once(':')?;
    Some((table.parse().ok()?, offset.parse().ok()?))
}

impl ServiceNowClient {
    /// The default table, then `tables` in order, each once.
    fn listed_tables(&self, tables: &[String]) -> Vec<String> {
        let mut out = vec![self.default_table.clone()];
        for table in tables {
            if !out.contains(table) {
                out.push(table.clone());
            }
        }
        out
    }

    pub(super) async fn list_page(
        &self,
        tables: &[String],
        cursor: Option<&str>,
    ) -> Result<ListedPage, TicketError> {
        const OP: &str = "list_bridge_tickets";
        let tables = self.listed_tables(tables);
        let (index, offset) = match cursor {
            None => (0, 0),
            Some(c) => parse_cursor(c)
                .filter(|(i, _)| *i < tables.len())
                .ok_or_else(|| {
                    self.conn.http.permanent(
                        OP,
                        None,
                        format!("cursor {c:?} is not a listing position"),
                    )
                })?,
        };
        let table = self.table(OP, Some(&tables[index]))?;
        let (records, count) = self
            .bridge_page(OP, table, &bridge_query(), "sys_created_on", offset, false)
            .await
            .map_err(table_gone)?;
        let tickets = records
            .into_iter()
            .map(|record| ListedTicket {
                ticket: record.ticket,
                marker: record.marker,
                status: record.status,
                created_at: record.at,
            })
            .collect();
        let next = if count > 0 && count >= u64::from(self.page_size) {
            Some(format!("{index}:{}", offset + count))
        } else if index + 1 < tables.len() {
            Some(format!("{}:0", index + 1))
        } else {
            None
        };
        Ok(ListedPage { tickets, next })
    }

    /// One page of bridge records of `table` matching `query` from `offset` (the status sync's
    /// and reconcile's): each as a ticket with its marker, status and the glide time `time_field`
    /// as RFC 3339; and how many records the page held. `attributed` also reads who changed
    /// each record and why it was closed (the status sync's poll).
    pub(super) async fn bridge_page(
        &self,
        operation: &'static str,
        table: &str,
        query: &str,
        time_field: &str,
        offset: u64,
        attributed: bool,
    ) -> Result<(Vec<BridgeRecord>, u64), TicketError> {
        let mut fields = format!("sys_id,number,state,{time_field},correlation_id");
        if attributed {
            fields = format!("{fields},{ATTRIBUTION_FIELDS}");
        }
        let mut url = self.table_url(table);
        url.query_pairs_mut()
            .append_pair("sysparm_query", query)
            .append_pair("sysparm_fields", &fields)
            .append_pair("sysparm_limit", &self.page_size.to_string())
            .append_pair("sysparm_offset", &offset.to_string())
            .append_pair("sysparm_display_value", "all")
            .append_pair("sysparm_exclude_reference_link", "true");
        let response = self
            .call(operation, reqwest::Method::GET, url, None)
            .await?;
        let page: Envelope<Vec<serde_json::Map<String, Value>>> =
            self.conn.http.json(operation, &response)?;
        let count = page.result.len() as u64;
        let records = page
            .result
            .iter()
            .filter_map(|record| {
                let (sys_id, _) = field(record, "sys_id");
                let (number, display_number) = field(record, "number");
                let (correlation, _) = field(record, "correlation_id");
                let (at, _) = field(record, time_field);
                (!sys_id.is_empty()).then(|| BridgeRecord {
                    ticket: self.ticket_ref(
                        table,
                        sys_id,
                        display_number.filter(|n| !n.is_empty()).unwrap_or(number),
                    ),
                    marker: Marker::parse(&correlation),
                    status: state_of(record),
                    at: rfc3339_from_glide(&at),
                })
            })
            .collect();
        Ok((records, count))
    }

    /// The record's `work_notes` (value and display value): with display values, the whole
    /// journal as text. What comments are looked for in, and the provenance is read from.
    pub(super) async fn work_notes(
        &self,
        operation: &'static str,
        ticket: &TicketRef,
    ) -> Result<(String, Option<String>), TicketError> {
        let record = self
            .record_fields(operation, ticket, "work_notes", "true")
            .await?;
        Ok(field(&record, "work_notes"))
    }

    pub(super) async fn read_provenance(
        &self,
        ticket: &TicketRef,
    ) -> Result<ProvenanceRead, TicketError> {
        let (notes, display) = self.work_notes("provenance", ticket).await?;
        Ok(Provenance::from_journal(
            display.as_deref().unwrap_or(&notes),
        ))
    }

    /// A 404 counts as gone only when the record's table still answers: a table that is gone or
    /// hidden by an ACL hides every record in it, which must not read as "deleted".
    pub(super) async fn record_presence(
        &self,
        ticket: &TicketRef,
    ) -> Result<Presence, TicketError> {
        const OP: &str = "presence";
        let mut url = self.record_url(OP, ticket)?;
        url.query_pairs_mut()
            .append_pair("sysparm_fields", "sys_id,state")
            .append_pair("sysparm_display_value", "all")
            .append_pair("sysparm_exclude_reference_link", "true");
        let read = match self.call(OP, reqwest::Method::GET, url, None).await {
            Ok(response) => self
                .conn
                .http
                .json::<Envelope<serde_json::Map<String, Value>>>(OP, &response)
                .map(|envelope| state_of(&envelope.result)),
            Err(e) => Err(e),
        };
        let table = self.table(OP, ticket.table.as_deref())?;
        let container = AsyncTicketSystem::probe_target(self, table);
        presence_of(
            read,
            ticket,
            &format!("table {table}"),
            container,
            |status, message| self.conn.http.permanent(OP, status, message),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_name_a_table_and_an_offset() {
        assert_eq!(parse_cursor("1:200"), Some((1, 200)));
        assert_eq!(parse_cursor("x:1"), None);
        assert_eq!(parse_cursor("200"), None);
    }

    #[test]
    fn the_provenance_line_follows_a_rules_own_work_note() {
        let provenance = Provenance {
            finding_id: "f-1".into(),
            team: "platform".into(),
            rule: "r".into(),
            schema: crate::finding::Schema::Asff,
            write_back: crate::finding::WriteBackId::Asff {
                id: "f-1".into(),
                product_arn: "p".into(),
            },
            severity: "LOW".into(),
        };
        let plain = with_provenance(&serde_json::json!({"short_description": "x"}), &provenance);
        assert_eq!(plain["work_notes"], provenance.work_note_line());
        let noted = with_provenance(
            &serde_json::json!({"work_notes": "Raised by the scanner"}),
            &provenance,
        );
        let text = noted["work_notes"].as_str().unwrap_or_default();
        assert!(text.starts_with("Raised by the scanner\n\n"), "{text}");
        assert_eq!(
            Provenance::from_journal(text),
            ProvenanceRead::Found(provenance)
        );
    }
}
