//! The status sync's settings.

use super::*;

/// Environment variable holding the seconds between two polls.
pub const SYNC_INTERVAL_ENV: &str = "BRIDGE_SYNC_INTERVAL";

/// Environment variable holding the seconds the poller's lease lasts unless renewed.
pub const SYNC_LEASE_ENV: &str = "BRIDGE_SYNC_LEASE";

/// Environment variable holding the seconds between two scans of the store for SLA breaches.
pub const SLA_INTERVAL_ENV: &str = "BRIDGE_SLA_INTERVAL";

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
    /// How long the poller's lease lasts unless renewed ([`SYNC_LEASE_ENV`], default 30 s): only
    /// the replica holding it polls. It is renewed every quarter of it; a holder that has not
    /// renewed three quarters of it after its last grant stops polling, and another replica
    /// takes over once it has run out (within a minute of a SIGKILL with the default).
    pub lease: Duration,
    /// Time between two scans of the store for overdue tickets ([`SLA_INTERVAL_ENV`], default
    /// 300 s). Due dates are days apart and a scan reads every record, so this is much longer
    /// than the poll interval.
    pub sla_interval: Duration,
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
            lease: Duration::from_secs(30),
            sla_interval: Duration::from_secs(300),
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
    /// Defaults with [`SYNC_INTERVAL_ENV`], [`SYNC_LEASE_ENV`] and [`SLA_INTERVAL_ENV`] applied (see
    /// [`crate::config::Config::sync`], which hands over its snapshot of the environment). Both
    /// are whole seconds, at least 1; unset or empty keeps the default.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<SyncConfig, SyncConfigError> {
        let mut config = SyncConfig::default();
        if let Some(interval) = seconds(&lookup, SYNC_INTERVAL_ENV)? {
            config.interval = interval;
        }
        if let Some(lease) = seconds(&lookup, SYNC_LEASE_ENV)? {
            config.lease = lease;
        }
        if let Some(interval) = seconds(&lookup, SLA_INTERVAL_ENV)? {
            config.sla_interval = interval;
        }
        Ok(config)
    }

    /// How often the lease holder renews its lease, and how often the others try to take it.
    pub(super) fn renew_every(&self) -> Duration {
        self.lease / 4
    }

    /// How long after sending a successful grant its holder may go on polling: three quarters
    /// of the lease, so the last quarter absorbs the replicas' clock skew (lease times are
    /// written by each replica's clock) before anyone else can take the lease over.
    pub(super) fn hold_for(&self) -> Duration {
        self.lease - self.lease / 4
    }

    pub(super) fn batch_size(&self) -> usize {
        self.batch.clamp(1, MAX_FINDINGS_PER_CALL)
    }
}

/// The variable `name` as whole seconds, at least 1; unset or empty is `None`.
fn seconds(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<Duration>, SyncConfigError> {
    let Some(raw) = lookup(name).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let secs = raw
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| SyncConfigError {
            name,
            message: format!("expected a whole number of seconds ≥ 1, got {raw:?}"),
        })?;
    Ok(Some(Duration::from_secs(secs)))
}
