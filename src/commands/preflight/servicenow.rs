//! The ServiceNow checks of a rule: its table exists and the account can read it, every field the
//! rule sets is a column of the table or of a table it extends, and its assignment group exists.
//!
//! Answers are kept per table and per group, so rules that share them cost their calls once.

use std::collections::{BTreeSet, HashMap};

use super::calls::{SERVICENOW, failed};
use super::report::{Check, Row};
use super::values::{RuleValues, Values, servicenow_fields};
use crate::mapping::spec::{Rule, ServiceNowSpec};
use crate::ticket::servicenow::ServiceNowClient;
use crate::ticket::servicenow::meta::GroupMeta;
use crate::ticket::{AsyncTicketSystem, Blame, TicketError};

type Answer<T> = Result<T, TicketError>;

/// Roles that let an account read `sys_db_object` and `sys_dictionary`.
const DICTIONARY_ACCESS: &str = "give the account read access to sys_db_object and sys_dictionary (role personalize_dictionary)";

/// A table's place in the hierarchy and every column it has.
#[derive(Clone)]
struct Schema {
    /// The table and the tables it extends, nearest first.
    lineage: Vec<String>,
    /// Every column defined on one of them.
    columns: BTreeSet<String>,
}

/// What is known of one table.
#[derive(Clone)]
struct TableFacts {
    /// A one-record read of the table.
    readable: Answer<()>,
    /// Its schema; `None` inside when `sys_db_object` shows no such table to the account. Read
    /// only when the table is readable.
    schema: Option<Answer<Option<Schema>>>,
}

/// One ServiceNow connection's answers so far.
pub struct ServiceNowChecks<'c> {
    client: &'c ServiceNowClient,
    system: String,
    tables: HashMap<String, TableFacts>,
    groups: HashMap<String, Answer<Option<GroupMeta>>>,
}

impl<'c> ServiceNowChecks<'c> {
    pub fn new(client: &'c ServiceNowClient, system: &str) -> ServiceNowChecks<'c> {
        ServiceNowChecks {
            client,
            system: system.to_owned(),
            tables: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    /// Every check of one rule, appended to `out`.
    pub async fn rule(
        &mut self,
        values: &RuleValues<'_>,
        rule: &Rule,
        spec: &ServiceNowSpec,
        out: &mut Vec<Row>,
    ) {
        let at = format!("{}:{}", rule.file.display(), rule.line);
        let table = spec.table.as_str();
        let facts = self.table(table).await;
        let row = Row::of_rule(rule, &self.system, Check::ServiceNowTable, table);
        out.push(match &facts.readable {
            Ok(()) => row.ok("readable"),
            Err(e) if e.blame() == Some(Blame::Target) => row.fail(
                format!("{}: {e}", SERVICENOW.system),
                format!("correct rules.servicenow.table in {at}, or create table {table}"),
            ),
            Err(e) => {
                let (detail, fix) = failed(
                    &SERVICENOW,
                    e,
                    &format!("give the account read and create on {table} (its ACLs)"),
                );
                row.fail(detail, fix)
            }
        });

        let row = Row::of_rule(rule, &self.system, Check::ServiceNowFields, table);
        out.push(match &facts.schema {
            None => row.skip(format!("table {table} could not be read")),
            Some(Err(e)) => {
                let (detail, fix) = failed(&SERVICENOW, e, DICTIONARY_ACCESS);
                row.fail(detail, fix)
            }
            Some(Ok(None)) => row.fail(
                format!("sys_db_object shows no table {table} to the account"),
                DICTIONARY_ACCESS,
            ),
            Some(Ok(Some(Schema { lineage, columns }))) => {
                let missing: Vec<String> = servicenow_fields(spec)
                    .into_iter()
                    .filter(|f| !columns.contains(f))
                    .collect();
                if missing.is_empty() {
                    row.ok(format!("columns of {}", lineage.join(" < ")))
                } else {
                    row.fail(
                        format!(
                            "{} not a column of {}",
                            missing.join(", "),
                            lineage.join(" or ")
                        ),
                        format!(
                            "create column {} on {table}, or remove it from the rule in {at}",
                            missing.join(", ")
                        ),
                    )
                }
            }
        });

        if let Some(group) = &spec.assignment_group {
            match values.of(group) {
                Values::Open(reads) => out.push(
                    Row::of_rule(
                        rule,
                        &self.system,
                        Check::ServiceNowAssignmentGroup,
                        group.source(),
                    )
                    .skip(Values::why_open(
                        "rules.servicenow.assignment_group",
                        &reads,
                    )),
                ),
                Values::Listed(names) => {
                    for name in names {
                        let row = self.group(rule, &name, &at).await;
                        out.push(row);
                    }
                }
            }
        }
    }

    /// Whether the group `name` (a name or a sys_id) exists.
    async fn group(&mut self, rule: &Rule, name: &str, at: &str) -> Row {
        if !self.groups.contains_key(name) {
            let answer = self.client.group(name).await;
            self.groups.insert(name.to_owned(), answer);
        }
        let row = Row::of_rule(rule, &self.system, Check::ServiceNowAssignmentGroup, name);
        match &self.groups[name] {
            Ok(Some(group)) => row.ok(format!("sys_id {}", group.sys_id)),
            Ok(None) => row.fail(
                format!("no sys_user_group named {name:?} (or with that sys_id)"),
                format!(
                    "create group {name:?} in ServiceNow, or correct rules.servicenow.assignment_group in {at}"
                ),
            ),
            Err(e) => {
                let (detail, fix) = failed(
                    &SERVICENOW,
                    e,
                    "give the account read access to sys_user_group",
                );
                row.fail(detail, fix)
            }
        }
    }

    /// What is known of `table`, read once.
    async fn table(&mut self, table: &str) -> TableFacts {
        if let Some(facts) = self.tables.get(table) {
            return facts.clone();
        }
        let readable = AsyncTicketSystem::probe_target(self.client, table).await;
        let schema = match readable {
            Ok(()) => Some(self.schema(table).await),
            Err(_) => None,
        };
        let facts = TableFacts { readable, schema };
        self.tables.insert(table.to_owned(), facts.clone());
        facts
    }

    async fn schema(&self, table: &str) -> Answer<Option<Schema>> {
        let lineage = self.client.table_lineage(table).await?;
        if lineage.is_empty() {
            return Ok(None);
        }
        let columns = self.client.columns(&lineage).await?;
        Ok(Some(Schema { lineage, columns }))
    }
}
