//! When the marker search before a create can be skipped. A create is always preceded by an
//! intent in the store, and the intent is cleared only when the ticket is recorded or provably
//! never sent: so for a finding that first appeared after this store started being used (and
//! inside the store's retention), "no record and no intent" means "no ticket". For anything
//! older — a new, migrated or restored store meeting findings from before it — the search stays,
//! never a blind skip.

use super::*;

/// Whether a create searches the ticket system for the marker first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MarkerSearch {
    /// Before every create (`BRIDGE_MARKER_SEARCH=always`): e.g. after restoring a store from a
    /// backup, whose records end before tickets that still exist.
    #[default]
    Always,
    /// Only when the store cannot vouch for the finding (`auto`, the worker's default).
    WhenUnvouched,
}

/// The store's start of use, under this name in its watermarks (unix milliseconds).
pub const VOUCHED_SINCE: &str = "store:vouched-since";

/// Clocks of AWS (the finding's times) and of this host (the store's start) may differ a little.
const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

impl Lifecycle {
    /// Whether the store vouches that `finding` has no ticket it does not know of.
    pub(super) async fn vouches_for(&self, finding: &Finding) -> bool {
        if self.marker_search == MarkerSearch::Always {
            return false;
        }
        let Some(since) = self.vouched_since().await else {
            return false;
        };
        let Some(first_seen) = [
            finding.first_observed_at.as_deref(),
            finding.created_at.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|t| parse_time(t.trim()))
        .map(|t| t.timestamp_millis())
        .min() else {
            return false;
        };
        let now = now_millis();
        // A record expires `retention` after its last write, which was after the finding
        // first appeared: a finding younger than that cannot have lost its record.
        let kept_since = self.store.retention().map_or(i64::MIN, |r| {
            now.saturating_sub(i64::try_from(r.as_millis()).unwrap_or(i64::MAX))
        });
        first_seen > since.saturating_add(CLOCK_SKEW_MS) && first_seen > kept_since
    }

    /// When this store started being used, read once per process; the first process to use a
    /// store writes it. `None` (search) when it cannot be read or written.
    async fn vouched_since(&self) -> Option<i64> {
        if let Some(since) = self.vouched_since.get() {
            return Some(*since);
        }
        let since = match self.store.watermark(VOUCHED_SINCE).await {
            Ok(Some(value)) => match value.parse::<i64>() {
                Ok(since) => since,
                Err(_) => {
                    tracing::warn!(
                        value,
                        "the store's vouched-since mark is unreadable; searching before every create"
                    );
                    return None;
                }
            },
            Ok(None) => {
                // Any time at or after the store's first use is safe: a replica that writes a
                // later one only makes the store vouch for less.
                let now = now_millis();
                if let Err(e) = self
                    .store
                    .set_watermark(VOUCHED_SINCE, &now.to_string())
                    .await
                {
                    tracing::debug!(error = %e, "could not mark the store's start of use; searching for now");
                    return None;
                }
                tracing::info!(
                    since = now,
                    "store in use from now: findings that first appear from now on are created without a marker search"
                );
                now
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not read the store's start of use; searching for now");
                return None;
            }
        };
        Some(*self.vouched_since.get_or_init(|| since))
    }
}
