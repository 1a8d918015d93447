//! Which of a finding's other teams hold a record, for a finding the index has not seen (first
//! sight, or recorded before the index existed): one batch read for all of them rather than a
//! read per team, since on first sight every team the routing did not pick is asked.

use std::sync::Arc;

use super::{Lifecycle, LifecycleError};
use crate::marker::Marker;

impl Lifecycle {
    /// The teams of `teams` that have a stored record for `finding_id`, in the order given. A
    /// team whose record could not be read is left out and its error pushed to `failures`.
    pub(super) async fn recorded_teams(
        &self,
        finding_id: &str,
        teams: Vec<Arc<str>>,
        failures: &mut Vec<LifecycleError>,
    ) -> Vec<Arc<str>> {
        if teams.is_empty() {
            return teams;
        }
        let markers: Vec<Marker> = teams.iter().map(|t| Marker::new(t, finding_id)).collect();
        if let Ok(records) = self.store.get_many(&markers).await {
            return teams
                .into_iter()
                .zip(&markers)
                .filter(|(_, marker)| records.contains_key(*marker))
                .map(|(team, _)| team)
                .collect();
        }
        // The batch failed as a whole: read each team on its own, so each failure is reported
        // against its team (and a team whose read works is still followed).
        let mut recorded = Vec::new();
        for (team, marker) in teams.into_iter().zip(&markers) {
            match self.store.get(marker).await {
                Ok(Some(_)) => recorded.push(team),
                Ok(None) => {}
                Err(source) => failures.push(LifecycleError::Store { team, source }),
            }
        }
        recorded
    }
}
