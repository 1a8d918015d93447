//! The expiry schedule of risk acceptances: one entry per marker whose finding status sync
//! suppressed through a `status_map` entry with a duration (`{ status = "SUPPRESSED", for = "90d" }`).
//!
//! - An entry is written *before* the suppression goes to Security Hub (so an acceptance the
//!   store could not schedule is never applied), and re-written by a re-acceptance (a later
//!   date replaces the earlier one: enqueueing is idempotent).
//! - A later ticket status that is no timed acceptance removes it ([`Store::clear_acceptance`]
//!   with `None`).
//! - The status-sync leader works through the entries that are due and removes each only after
//!   its actions, and only if it still holds the date it acted on (`Some(until)`), so a
//!   re-acceptance that landed meanwhile is kept.
//!
//! Absent entries mean "no expiry": stores written before this existed need no migration.
//!
//! [`Store::clear_acceptance`]: super::Store::clear_acceptance

use crate::marker::Marker;

/// Most entries the schedule holds. The DynamoDB store keeps the schedule in one item (about 90
/// bytes an entry, below DynamoDB's 400 KB item limit) so the leader reads it with one
/// consistent `GetItem` instead of scanning the table. A suppression that finds the schedule
/// full is not written (reported and retried at the next poll).
pub const MAX_ACCEPTANCES: usize = 3000;

/// One scheduled expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acceptance {
    pub marker: Marker,
    /// The ticket connection of the marker's ticket (`jira`, `servicenow`).
    pub connection: String,
    /// Unix milliseconds when the acceptance runs out.
    pub until: i64,
}
