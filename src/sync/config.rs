//! The status sync's settings.

use super::*;

/// Environment variable holding the seconds between two polls.
pub const SYNC_INTERVAL_ENV: &str = "BRIDGE_SYNC_INTERVAL";

/// How the poller paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// Time between two polls ([`SYNC_INTERVAL_ENV`], default 60 s).
    pub interval: Duration,
    /// How far before the watermark each poll starts reading again, so updates the ticket
    /// system indexed late (or stamped within the same minute) are not missed. Tickets seen in
    /// the overlap are de-duplicated by key and update time.
    pub overlap: Duration,
    /// Most new tickets handled per connection and tick; the rest waits for the next tick
    /// (results come oldest first, so the watermark still moves forward).
    pub max_per_tick: usize,
    /// Findings per write-back call (at most 100, Security Hub's limit).
    pub batch: usize,
    /// Where polling starts when a connection has no watermark yet.
    pub first_lookback: Duration,
    /// Ticks a finding Security Hub did not process is retried before it is reported and dropped.
    pub max_retries: u32,
}

impl Default for SyncConfig {
    fn default() -> SyncConfig {
        SyncConfig {
            interval: Duration::from_secs(60),
            overlap: Duration::from_secs(120),
            max_per_tick: 1_000,
            batch: MAX_FINDINGS_PER_CALL,
            first_lookback: Duration::from_secs(7 * 24 * 3600),
            max_retries: 5,
        }
    }
}

/// A setting of the status sync that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct SyncConfigError {
    pub name: &'static str,
    pub message: String,
}

impl SyncConfig {
    /// Defaults with [`SYNC_INTERVAL_ENV`] applied (see [`crate::config::Config::sync`]). The
    /// interval is whole seconds, at least 1; unset or empty keeps the default.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<SyncConfig, SyncConfigError> {
        let mut config = SyncConfig::default();
        if let Some(raw) = lookup(SYNC_INTERVAL_ENV).filter(|v| !v.trim().is_empty()) {
            let secs = raw
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| SyncConfigError {
                    name: SYNC_INTERVAL_ENV,
                    message: format!("expected a whole number of seconds ≥ 1, got {raw:?}"),
                })?;
            config.interval = Duration::from_secs(secs);
        }
        Ok(config)
    }

    pub(super) fn batch_size(&self) -> usize {
        self.batch.clamp(1, MAX_FINDINGS_PER_CALL)
    }
}
