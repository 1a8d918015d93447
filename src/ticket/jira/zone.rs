//! The time zone JQL dates are read in. Jira reads a date literal such as
//! `updated >= "2026-03-04 09:30"` in the *searching user's* time zone, so the poller's UTC
//! watermark is converted into that zone (the bridge user's `timeZone`, from `/myself`, read once
//! per connection and again after a failed poll), with the IANA database compiled in
//! (`chrono-tz`).
//!
//! A bound is only safe when Jira's reading of it is at or before the watermark: a later reading
//! skips updates. Local times that do not name one instant — repeated at the end of daylight
//! saving time, or skipped at its start — are read differently by different Jira versions, so
//! [`jql_local_minute`] steps back until every reading is safe.

use std::sync::Mutex;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::api::decode;
use super::client::JiraClient;
use crate::ticket::TicketError;

/// The bridge user's zone once `/myself` told it; forgotten after a failed poll.
#[derive(Debug, Default)]
pub(super) struct UserZone(Mutex<Option<Tz>>);

impl UserZone {
    fn get(&self) -> Option<Tz> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, zone: Option<Tz>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = zone;
    }

    /// Reads the zone again before the next poll (the user's profile may have changed).
    pub(super) fn forget(&self) {
        self.set(None);
    }
}

#[derive(Debug, Deserialize)]
struct Myself {
    #[serde(rename = "timeZone", default)]
    time_zone: Option<String>,
}

impl JiraClient {
    /// The zone Jira reads this connection's JQL dates in: `/myself`'s `timeZone`, read once.
    pub(super) async fn user_zone(&self) -> Result<Tz, TicketError> {
        const OP: &str = "user_time_zone";
        if let Some(zone) = self.zone.get() {
            return Ok(zone);
        }
        let me: Myself = decode(OP, self.get(OP, self.api(&["myself"])).await?)?;
        let name = me
            .time_zone
            .filter(|name| !name.trim().is_empty())
            .ok_or_else(|| {
                self.conn.http.permanent(
                    OP,
                    None,
                    "Jira did not say the bridge user's time zone (no timeZone in /myself); \
                     JQL dates are read in it, so the poll's time bound cannot be placed. Set a \
                     time zone in the user's profile"
                        .to_owned(),
                )
            })?;
        let zone: Tz = name.trim().parse().map_err(|_| {
            self.conn.http.permanent(
                OP,
                None,
                format!("the Jira user's time zone {name:?} is not an IANA time zone"),
            )
        })?;
        tracing::info!(time_zone = %zone, "Jira reads the poll's JQL dates in the bridge user's time zone");
        self.zone.set(Some(zone));
        Ok(zone)
    }
}

/// The local minute (as JQL writes it) whose every reading in `zone` is at or before `at`, and
/// the latest such minute: the watermark's own minute unless that is ambiguous or skipped in
/// `zone`, then the last minute before the daylight-saving change.
pub fn jql_local_minute(at: DateTime<Utc>, zone: Tz) -> NaiveDateTime {
    let local = at.with_timezone(&zone).naive_local();
    let mut minute = local
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(local);
    // Daylight-saving changes move clocks by at most a couple of hours: a day of minutes is
    // far more than any fold needs.
    for _ in 0..24 * 60 {
        let latest = match zone.from_local_datetime(&minute) {
            LocalResult::Single(t) => Some(t),
            LocalResult::Ambiguous(earlier, later) => Some(earlier.max(later)),
            LocalResult::None => None,
        };
        if latest.is_some_and(|t| t.with_timezone(&Utc) <= at) {
            return minute;
        }
        minute -= Duration::minutes(1);
    }
    minute
}

/// [`jql_local_minute`] as a JQL date literal, `yyyy-MM-dd HH:mm`.
pub fn jql_time_bound(at: DateTime<Utc>, zone: Tz) -> String {
    jql_local_minute(at, zone)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}
