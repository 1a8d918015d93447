//! Why a (finding, team) could not be followed, and what the worker does about it.

use super::*;
use crate::retry::{Retry, Retryable};
use crate::runtime::telemetry::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("team {team}: {source}")]
    Ticket {
        team: Arc<str>,
        #[source]
        source: TicketError,
    },
    #[error("team {team}: {source}")]
    Store {
        team: Arc<str>,
        #[source]
        source: StoreError,
    },
    /// The finding's entry in the store's index could not be read or written: no team can be
    /// followed safely.
    #[error("finding index: {0}")]
    Index(#[source] StoreError),
    #[error("team {team}: rule {rule}: {error}")]
    Plan {
        team: Arc<str>,
        rule: Arc<str>,
        error: PlanError,
    },
    /// Another worker is working on this (finding, team) right now; try again later.
    #[error("team {team}: {marker} is being worked on by another worker")]
    Busy { team: Arc<str>, marker: Marker },
    /// A create for this marker may have happened and the ticket system's search cannot be
    /// trusted to show it yet: look again after `wait`.
    #[error("team {team}: a create for {marker} may have happened; searching again in {}s", wait.as_secs())]
    Settling {
        team: Arc<str>,
        marker: Marker,
        wait: Duration,
    },
    /// The rule or record names a ticket connection that is not configured.
    #[error("team {team}: no ticket connection named {target:?}")]
    NoConnection { team: Arc<str>, target: String },
    /// The route's connection or rule is paused (credentials refused, project gone): not this
    /// finding's fault. The message is parked and comes back; it is never dead-lettered for it.
    #[error("team {team}: {subject} is paused: {reason}")]
    Paused {
        team: Arc<str>,
        subject: Subject,
        reason: String,
    },
}

/// Transient: leave the message and let it come back (after the settle time of a create whose
/// outcome is unknown). Permanent: dead-letter it, unless it is paused ([`LifecycleError::is_paused`]).
impl Retryable for LifecycleError {
    fn retry(&self) -> Retry {
        match self {
            LifecycleError::Ticket { source, .. } => source.retry(),
            LifecycleError::Store { source, .. } | LifecycleError::Index(source) => source.retry(),
            LifecycleError::Busy { .. } => Retry::LATER,
            LifecycleError::Settling { wait, .. } => Retry::Transient { after: Some(*wait) },
            LifecycleError::Plan { .. }
            | LifecycleError::NoConnection { .. }
            | LifecycleError::Paused { .. } => Retry::Permanent,
        }
    }
}

impl LifecycleError {
    /// Waiting for a paused connection or rule: neither retried as transient (that would spend
    /// the message's receive count) nor dead-lettered.
    pub fn is_paused(&self) -> bool {
        matches!(self, LifecycleError::Paused { .. })
    }

    /// What failed, for the DLQ attribute and the metrics.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LifecycleError::Ticket { .. } => ErrorKind::Ticket,
            LifecycleError::Store { .. } | LifecycleError::Index(_) => ErrorKind::Store,
            LifecycleError::Plan { .. } => ErrorKind::Render,
            LifecycleError::Busy { .. } | LifecycleError::Settling { .. } => ErrorKind::Busy,
            LifecycleError::NoConnection { .. } => ErrorKind::Config,
            LifecycleError::Paused { .. } => ErrorKind::Paused,
        }
    }

    /// The team whose route failed; `None` for a failure of the whole finding.
    pub fn team(&self) -> Option<&str> {
        match self {
            LifecycleError::Ticket { team, .. }
            | LifecycleError::Store { team, .. }
            | LifecycleError::Plan { team, .. }
            | LifecycleError::Busy { team, .. }
            | LifecycleError::Settling { team, .. }
            | LifecycleError::NoConnection { team, .. }
            | LifecycleError::Paused { team, .. } => Some(team),
            LifecycleError::Index(_) => None,
        }
    }
}

pub(super) fn team_of(error: &LifecycleError) -> Option<Arc<str>> {
    match error {
        LifecycleError::Store { team, .. } => Some(team.clone()),
        _ => None,
    }
}
