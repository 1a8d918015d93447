//! What a reconcile found and did: the JSON report (`--json`) and the summary a person reads.

use std::fmt;

use serde::Serialize;

use crate::marker::Marker;
use crate::ticket::TicketRef;
use crate::ticket::listing::ListedTicket;

/// What became of one thing reconcile found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Dry run: `--fix` would do it.
    Planned,
    /// `--fix` did it.
    Done,
    /// The ticket does not say enough to rebuild its record (`reason` says what is missing).
    NotRebuildable,
    /// Left alone: a worker holds the key, or the store holds something newer (`reason`).
    Conflict,
    /// Tried and failed, or could not be checked (`reason`).
    Failed,
}

/// A ticket as the report names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketView {
    pub connection: String,
    pub key: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

impl TicketView {
    pub fn of_ref(ticket: &TicketRef) -> TicketView {
        TicketView {
            connection: ticket.system.clone(),
            key: ticket.key.clone(),
            id: ticket.id.clone(),
            table: ticket.table.clone(),
            url: ticket.url.clone(),
            status: None,
            done: None,
            created_at: None,
        }
    }

    pub fn of_listed(listed: &ListedTicket) -> TicketView {
        TicketView {
            status: Some(listed.status.name.clone()),
            done: Some(listed.status.done),
            created_at: Some(listed.created_at.clone()),
            ..TicketView::of_ref(&listed.ticket)
        }
    }
}

/// A ticket whose marker has no record in the store.
#[derive(Debug, Clone, Serialize)]
pub struct MissingRecord {
    pub marker: Marker,
    pub ticket: TicketView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finding_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One extra live ticket of a marker, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct ExtraTicket {
    pub ticket: TicketView,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Several live tickets for one marker: the one the bridge keeps and the others (closed as
/// duplicates with `--fix`).
#[derive(Debug, Clone, Serialize)]
pub struct Duplicate {
    pub marker: Marker,
    pub kept: TicketView,
    pub others: Vec<ExtraTicket>,
}

/// A record whose ticket no longer exists (or could not be checked: `outcome` failed).
#[derive(Debug, Clone, Serialize)]
pub struct GoneTicket {
    pub marker: Marker,
    pub finding_id: String,
    pub team: String,
    pub ticket: TicketView,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How one connection's listing went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectionListing {
    pub connection: String,
    /// ServiceNow: every table listed (the default one and each a rule uses).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    pub tickets: u64,
    /// Listed to the last page.
    pub complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The store's start-of-use mark (`store:vouched-since`, unix milliseconds) before and after.
#[derive(Debug, Clone, Serialize)]
pub struct Watermark {
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Everything a reconcile run found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// `dry-run` or `fix`.
    pub mode: &'static str,
    pub started_at: String,
    /// Every connection listed to the end and every record read: nothing was left unseen.
    pub complete: bool,
    /// Stopped by SIGINT / SIGTERM.
    pub interrupted: bool,
    pub connections: Vec<ConnectionListing>,
    /// Records read from the store.
    pub records: u64,
    /// Markers whose record and single live ticket agree.
    pub in_step: u64,
    pub missing_records: Vec<MissingRecord>,
    pub duplicates: Vec<Duplicate>,
    pub gone: Vec<GoneTicket>,
    /// Bridge-labelled tickets without a well-formed marker: nothing to tie them to.
    pub unmarked: Vec<TicketView>,
    /// Records whose connection is not configured here: their tickets were not checked.
    pub unchecked_records: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vouched_since: Option<Watermark>,
}

impl Report {
    pub fn dry_run(&self) -> bool {
        self.mode == "dry-run"
    }

    /// Something could not be read or done: the CLI exits 1.
    pub fn has_failures(&self) -> bool {
        !self.complete
            || self.store_error.is_some()
            || self
                .missing_records
                .iter()
                .any(|m| m.outcome == Outcome::Failed)
            || self
                .duplicates
                .iter()
                .flat_map(|d| &d.others)
                .any(|o| o.outcome == Outcome::Failed)
            || self.gone.iter().any(|g| g.outcome == Outcome::Failed)
    }

    /// Counts so far, for the progress display.
    pub(super) fn counts(&self) -> String {
        let tickets: u64 = self.connections.iter().map(|c| c.tickets).sum();
        format!(
            "{tickets} tickets · {} records · {} without record · {} duplicated · {} gone",
            self.records,
            self.missing_records.len(),
            self.duplicates.len(),
            self.gone.len()
        )
    }
}

fn count(items: impl Iterator<Item = Outcome>, outcome: Outcome) -> usize {
    items.filter(|o| *o == outcome).count()
}

fn outcome_text(outcome: Outcome, dry: &'static str, done: &'static str) -> &'static str {
    match outcome {
        Outcome::Planned => dry,
        Outcome::Done => done,
        Outcome::NotRebuildable => "not rebuildable",
        Outcome::Conflict => "left alone",
        Outcome::Failed => "failed",
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dry_run() {
            writeln!(f, "Reconcile (dry run: nothing was changed; --fix acts)")?;
        } else {
            writeln!(f, "Reconcile (--fix)")?;
        }
        for c in &self.connections {
            let tables = if c.tables.is_empty() {
                String::new()
            } else {
                format!(" in {}", c.tables.join(", "))
            };
            let state = match &c.error {
                Some(e) => format!("; listing stopped: {e}"),
                None if !c.complete => "; listing not finished".to_owned(),
                None => String::new(),
            };
            writeln!(
                f,
                "  {:<18}{:>7} tickets{tables}{state}",
                c.connection, c.tickets
            )?;
        }
        writeln!(f, "  {:<18}{:>7}", "records", self.records)?;
        writeln!(f, "  {:<18}{:>7}", "in step", self.in_step)?;
        let missing = || self.missing_records.iter().map(|m| m.outcome);
        writeln!(
            f,
            "  {:<18}{:>7}  ({} {}, {} not rebuildable, {} left alone, {} failed)",
            "without record",
            self.missing_records.len(),
            count(missing(), Outcome::Planned) + count(missing(), Outcome::Done),
            if self.dry_run() {
                "rebuildable"
            } else {
                "rebuilt"
            },
            count(missing(), Outcome::NotRebuildable),
            count(missing(), Outcome::Conflict),
            count(missing(), Outcome::Failed),
        )?;
        let extra: usize = self.duplicates.iter().map(|d| d.others.len()).sum();
        writeln!(
            f,
            "  {:<18}{:>7}  ({extra} extra live tickets {})",
            "duplicated",
            self.duplicates.len(),
            if self.dry_run() {
                "to close"
            } else {
                "closed or tried"
            },
        )?;
        writeln!(f, "  {:<18}{:>7}", "ticket gone", self.gone.len())?;
        if !self.unmarked.is_empty() {
            writeln!(f, "  {:<18}{:>7}", "without marker", self.unmarked.len())?;
        }
        if self.unchecked_records > 0 {
            writeln!(
                f,
                "  {:<18}{:>7}  (their connection is not configured here)",
                "records unchecked", self.unchecked_records
            )?;
        }
        if let Some(e) = &self.store_error {
            writeln!(f, "  store: {e}")?;
        }
        if self.interrupted {
            writeln!(f, "  interrupted: run again to finish")?;
        }
        if let Some(w) = &self.vouched_since {
            writeln!(
                f,
                "  store:vouched-since {} → {}",
                w.before.as_deref().unwrap_or("unset"),
                w.after.as_deref().unwrap_or("unset")
            )?;
        }
        for m in &self.missing_records {
            let what = outcome_text(m.outcome, "would rebuild", "rebuilt");
            write!(
                f,
                "without record  {} {} {what}",
                m.ticket.connection, m.ticket.key
            )?;
            if let (Some(team), Some(finding)) = (&m.team, &m.finding_id) {
                write!(f, " (team {team}, finding {finding})")?;
            }
            match &m.reason {
                Some(reason) => writeln!(f, ": {reason}")?,
                None => writeln!(f)?,
            }
        }
        for d in &self.duplicates {
            for o in &d.others {
                let what = outcome_text(o.outcome, "would close", "closed");
                write!(
                    f,
                    "duplicate       {} {} {what} as a duplicate of {}",
                    o.ticket.connection, o.ticket.key, d.kept.key
                )?;
                match &o.reason {
                    Some(reason) => writeln!(f, ": {reason}")?,
                    None => writeln!(f)?,
                }
            }
        }
        for g in &self.gone {
            let what = outcome_text(g.outcome, "record would be dropped", "record dropped");
            write!(
                f,
                "ticket gone     {} {} (team {}, finding {}): {what}",
                g.ticket.connection, g.ticket.key, g.team, g.finding_id
            )?;
            match &g.reason {
                Some(reason) => writeln!(f, ": {reason}")?,
                None => writeln!(f)?,
            }
        }
        for t in &self.unmarked {
            writeln!(
                f,
                "without marker  {} {}: labelled as the bridge's but carries no marker",
                t.connection, t.key
            )?;
        }
        Ok(())
    }
}
