//! What a ServiceNow instance says about a table and a group, read without changing anything
//! (`findings-bridge preflight`).
//!
//! A table's columns: its own are the `sys_dictionary` entries under its name, the inherited ones
//! (incident extends task, which holds `short_description`, `assignment_group`,
//! `correlation_id`, …) are under its ancestors' names. So the lineage is read first, following
//! `sys_db_object.super_class` from the table up, and then every column of the lineage in one
//! `sys_dictionary` query (`nameIN…^elementISNOTEMPTY`, paged). This is the documented Table API
//! on the two tables that define the schema; the alternatives are not: a record of the table
//! shows its columns only when one exists and ACLs let the account read every field, and the
//! schema endpoints behind the UI (`/api/now/ui/meta`, `/api/now/doc/table/schema`) are internal.
//! The account needs read access to `sys_db_object` and `sys_dictionary` (role
//! `personalize_dictionary`, or admin); without it they answer 403 or nothing, which the caller
//! reports as "cannot tell", never as a pass.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::client::ServiceNowClient;
use super::query::{encoded_query_value, valid_table};
use super::record::{Envelope, field};
use crate::ticket::TicketError;

/// Dictionary entries read per page.
const PAGE: usize = 1000;
/// Deeper than any real hierarchy (`cmdb_ci_linux_server` is six levels); guards against a loop.
const MAX_DEPTH: usize = 16;
/// Columns of a whole lineage never come close to this; guards against a server that never ends.
const MAX_PAGES: usize = 100;

/// A `sys_user_group` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMeta {
    pub sys_id: String,
    pub name: String,
}

impl ServiceNowClient {
    /// `table` and the tables it extends, nearest first (`["incident", "task"]`); empty when
    /// `sys_db_object` shows no such table to the account.
    pub async fn table_lineage(&self, table: &str) -> Result<Vec<String>, TicketError> {
        const OP: &str = "table_lineage";
        let mut lineage: Vec<String> = Vec::new();
        let mut term = format!("name={}", self.query_value(OP, table)?);
        for _ in 0..MAX_DEPTH {
            let records = self
                .records(OP, "sys_db_object", &term, "sys_id,name,super_class", 0, 1)
                .await?;
            let Some(record) = records.first() else {
                if lineage.is_empty() {
                    return Ok(lineage);
                }
                return Err(self.conn.http.permanent(
                    OP,
                    None,
                    format!(
                        "sys_db_object shows no parent record {term} of {} to the account",
                        lineage.last().map_or("", String::as_str)
                    ),
                ));
            };
            let (name, _) = field(record, "name");
            if !valid_table(&name) || lineage.contains(&name) {
                return Err(self.conn.http.permanent(
                    OP,
                    None,
                    format!("sys_db_object names an unusable or repeated table {name:?}"),
                ));
            }
            lineage.push(name);
            let (parent, _) = field(record, "super_class");
            if parent.is_empty() {
                return Ok(lineage);
            }
            term = format!("sys_id={}", self.query_value(OP, &parent)?);
        }
        Err(self.conn.http.permanent(
            OP,
            None,
            format!("{table} extends more than {MAX_DEPTH} tables"),
        ))
    }

    /// Every column defined on `tables` (`sys_dictionary.element`), all pages.
    pub async fn columns(&self, tables: &[String]) -> Result<BTreeSet<String>, TicketError> {
        const OP: &str = "columns";
        if let Some(bad) = tables.iter().find(|t| !valid_table(t)) {
            return Err(self.conn.http.permanent(
                OP,
                None,
                format!("{bad:?} is not a ServiceNow table name"),
            ));
        }
        let term = format!("nameIN{}^elementISNOTEMPTY", tables.join(","));
        let mut columns = BTreeSet::new();
        for page in 0..MAX_PAGES {
            let records = self
                .records(
                    OP,
                    "sys_dictionary",
                    &term,
                    "name,element",
                    page * PAGE,
                    PAGE,
                )
                .await?;
            let count = records.len();
            columns.extend(
                records
                    .iter()
                    .map(|r| field(r, "element").0)
                    .filter(|e| !e.is_empty()),
            );
            if count < PAGE {
                return Ok(columns);
            }
        }
        Err(self.conn.http.permanent(
            OP,
            None,
            format!("still more after {MAX_PAGES} pages of {PAGE} dictionary entries"),
        ))
    }

    /// The `sys_user_group` an `assignment_group` value names: by `sys_id` when it is one (32
    /// hexadecimal characters), else by name, as ServiceNow resolves a reference field's value.
    pub async fn group(&self, name_or_sys_id: &str) -> Result<Option<GroupMeta>, TicketError> {
        const OP: &str = "group";
        let value = self.query_value(OP, name_or_sys_id)?;
        let is_sys_id = value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit());
        let mut terms = vec![format!("name={value}")];
        if is_sys_id {
            terms.insert(0, format!("sys_id={value}"));
        }
        for term in terms {
            let records = self
                .records(OP, "sys_user_group", &term, "sys_id,name", 0, 1)
                .await?;
            if let Some(record) = records.first() {
                return Ok(Some(GroupMeta {
                    sys_id: field(record, "sys_id").0,
                    name: field(record, "name").0,
                }));
            }
        }
        Ok(None)
    }

    /// One page of `table` matching the encoded query `term`.
    async fn records(
        &self,
        operation: &'static str,
        table: &str,
        term: &str,
        fields: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Map<String, Value>>, TicketError> {
        let mut url = self.table_url(table);
        url.query_pairs_mut()
            .append_pair("sysparm_query", term)
            .append_pair("sysparm_fields", fields)
            .append_pair("sysparm_limit", &limit.to_string())
            .append_pair("sysparm_offset", &offset.to_string())
            .append_pair("sysparm_exclude_reference_link", "true");
        let response = self
            .call(operation, reqwest::Method::GET, url, None)
            .await?;
        let page: Envelope<Vec<Map<String, Value>>> = self.conn.http.json(operation, &response)?;
        Ok(page.result)
    }

    /// `value` made safe for an encoded query, or the error that says why it cannot be.
    fn query_value(&self, operation: &'static str, value: &str) -> Result<String, TicketError> {
        encoded_query_value(value).ok_or_else(|| {
            self.conn.http.permanent(
                operation,
                None,
                format!("{value:?} cannot be looked up: it holds control characters"),
            )
        })
    }
}
