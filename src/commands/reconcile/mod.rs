//! `findings-bridge reconcile`: compares the store with the tickets the bridge made, and with
//! `--fix` brings them back in step — after a lost store, a move from SQLite to DynamoDB, records
//! expired by their TTL, or duplicates someone made by hand.
//!
//! Three passes, each streaming:
//! 1. `inventory`: every connection's bridge tickets, page by page, grouped by marker;
//! 2. `store_pass`: every record, page by page; a record whose ticket was not listed is checked
//!    directly, and only a ticket that answers 404 while its project or table answers counts as
//!    gone (403, 5xx, a timeout are "could not be checked", never absence);
//! 3. `fix`: per marker, a ticket without a record is rebuilt from the provenance the bridge
//!    wrote into it ([`crate::ticket::provenance`]), extra live tickets are closed as duplicates
//!    of the one the bridge follows, and records of gone tickets are dropped.
//!
//! Every store write takes the key's claim first, like the lifecycle, and is conditional
//! ([`Store::adopt`], [`Store::drop_record`]): a key a worker holds, or one that holds a record
//! or a pending create by then, is reported and left alone, never forced. A dry run (the
//! default) changes nothing at all. `--fix` also raises the store's start-of-use mark
//! (`store:vouched-since`) to the start of the run: see [`Reconciler::raise_vouched_since`].

mod command;
mod fix;
mod inventory;
mod report;
mod store_pass;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub use command::command;
pub use report::{
    ConnectionListing, Duplicate, ExtraTicket, GoneTicket, MissingRecord, Outcome, Report,
    TicketView, Watermark,
};

use crate::commands::progress::Progress;
use crate::mapping::Mappings;
use crate::mapping::spec::TicketSpec;
use crate::pipeline::lifecycle::{DEFAULT_LEASE, VOUCHED_SINCE};
use crate::runtime::shutdown::Shutdown;
use crate::store::Store;
use crate::ticket::TicketSystem;

/// Records read per store page.
const RECORDS_PER_PAGE: usize = 100;

/// How a reconcile runs.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Act (`--fix`); otherwise only report.
    pub fix: bool,
    /// Prefix of the claim owners of this run (unique per process, like the worker's).
    pub owner: String,
    /// Lease of each claim; the work under one is a store call or two.
    pub lease: Duration,
}

impl ReconcileOptions {
    pub fn new(fix: bool, owner: impl Into<String>) -> ReconcileOptions {
        ReconcileOptions {
            fix,
            owner: owner.into(),
            lease: DEFAULT_LEASE,
        }
    }
}

/// Per connection, the ServiceNow tables the rules of `mappings` use (the connection's default
/// table is always listed besides them).
pub fn tables_of(mappings: &Mappings) -> BTreeMap<String, Vec<String>> {
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rule in &mappings.rules {
        if let TicketSpec::ServiceNow(spec) = &rule.ticket {
            let list = tables.entry(rule.target.clone()).or_default();
            if !list.contains(&spec.table) {
                list.push(spec.table.clone());
            }
        }
    }
    tables
}

/// One run: what it talks to, and what it found and did so far.
pub(crate) struct Reconciler {
    store: Arc<dyn Store>,
    systems: BTreeMap<String, Arc<dyn TicketSystem>>,
    tables: BTreeMap<String, Vec<String>>,
    options: ReconcileOptions,
    next_work: u64,
    report: Report,
    progress: Progress,
}

/// Compares `store` with the tickets of `systems` (ServiceNow listed over `tables` too) and,
/// with `options.fix`, repairs what it can. Stops between two steps when `shutdown` fires.
pub async fn reconcile(
    store: Arc<dyn Store>,
    systems: HashMap<String, Arc<dyn TicketSystem>>,
    tables: BTreeMap<String, Vec<String>>,
    options: ReconcileOptions,
    shutdown: &Shutdown,
) -> Report {
    let started = chrono::Utc::now();
    let mut run = Reconciler {
        store,
        systems: systems.into_iter().collect(),
        tables,
        report: Report {
            mode: if options.fix { "fix" } else { "dry-run" },
            started_at: started.to_rfc3339(),
            ..Report::default()
        },
        options,
        next_work: 0,
        progress: Progress::new("reconcile", None),
    };
    if run.options.fix {
        run.raise_vouched_since(started.timestamp_millis()).await;
    }
    let inventory = run.list_all(shutdown).await;
    let pass = run.read_records(&inventory, shutdown).await;
    let records_read = pass.finished;
    run.judge(inventory, pass, shutdown).await;
    let listed = run.report.connections.iter().all(|c| c.complete);
    run.report.complete = listed && records_read && !run.report.interrupted;
    run.progress.finish(run.report.counts());
    tracing::info!(
        mode = run.report.mode,
        complete = run.report.complete,
        records = run.report.records,
        without_record = run.report.missing_records.len(),
        duplicated = run.report.duplicates.len(),
        gone = run.report.gone.len(),
        "reconcile finished"
    );
    run.report
}

impl Reconciler {
    fn show_progress(&mut self) {
        let seen = self.report.records
            + self
                .report
                .connections
                .iter()
                .map(|c| c.tickets)
                .sum::<u64>();
        let report = &self.report;
        self.progress.update(seen, seen, || report.counts());
    }

    /// A fresh claim owner for one key: `<process owner>:reconcile:<n>`, never reused.
    fn next_owner(&mut self) -> String {
        self.next_work += 1;
        format!("{}:reconcile:{}", self.options.owner, self.next_work)
    }

    /// Raises `store:vouched-since` to `started` (unix ms) when it is older, never lowers it.
    ///
    /// A store vouches that a finding first seen after that mark has a record or an intent for
    /// every ticket it has, and then creates without searching. A store restored from a backup
    /// kept its old mark but lost the records written after the backup: it would vouch wrongly.
    /// A later mark only makes the store vouch for less (findings first seen before it are
    /// searched for again), so raising it is always safe, whatever this run manages to rebuild;
    /// and from the start of the run on, every create goes through this store's intents (the
    /// workers are stopped while it runs, or run against this store). Lowering it could never be
    /// justified by a listing: a ticket that is not rebuildable, or not yet in Jira's search
    /// index, would be created again. An unset mark is left for the first worker to set; an
    /// unreadable one already makes the workers search before every create.
    async fn raise_vouched_since(&mut self, started: i64) {
        let before = match self.store.watermark(VOUCHED_SINCE).await {
            Ok(before) => before,
            Err(e) => {
                self.report.store_error = Some(format!("reading {VOUCHED_SINCE}: {e}"));
                return;
            }
        };
        let mut after = before.clone();
        if let Some(mark) = before.as_deref().and_then(|b| b.parse::<i64>().ok())
            && mark < started
        {
            match self
                .store
                .set_watermark(VOUCHED_SINCE, &started.to_string())
                .await
            {
                Ok(()) => {
                    tracing::info!(
                        before = mark,
                        after = started,
                        "store:vouched-since raised: findings first seen before this run are searched for before a create"
                    );
                    after = Some(started.to_string());
                }
                Err(e) => self.report.store_error = Some(format!("raising {VOUCHED_SINCE}: {e}")),
            }
        }
        self.report.vouched_since = Some(Watermark { before, after });
    }
}
