//! One vocabulary for "is this worth trying again, and when": every error the pipeline acts on
//! (ticket systems, the store, Security Hub, SQS, the lifecycle) answers [`Retryable::retry`]
//! the same way, so a caller never needs to know which layer failed to decide what to do next.
//! Lowest layer: it imports nothing from the crate.

use std::time::Duration;

/// What trying again can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Later it may well succeed (throttling, an outage, a lost answer, a busy claim); `after`
    /// when the failure says how long to wait (a settling create).
    Transient { after: Option<Duration> },
    /// Unchanged, it will fail again: something (a mapping, a payload, a credential, a project)
    /// must change first.
    Permanent,
}

impl Retry {
    /// Transient, with no particular wait.
    pub const LATER: Retry = Retry::Transient { after: None };
}

/// An error that knows whether trying again can help.
pub trait Retryable {
    fn retry(&self) -> Retry;

    fn is_transient(&self) -> bool {
        matches!(self.retry(), Retry::Transient { .. })
    }

    /// How long to wait before trying again, when the failure knows.
    fn retry_after(&self) -> Option<Duration> {
        match self.retry() {
            Retry::Transient { after } => after,
            Retry::Permanent => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Settling(Duration);

    impl Retryable for Settling {
        fn retry(&self) -> Retry {
            Retry::Transient {
                after: Some(self.0),
            }
        }
    }

    struct Invalid;

    impl Retryable for Invalid {
        fn retry(&self) -> Retry {
            Retry::Permanent
        }
    }

    #[test]
    fn the_wait_comes_with_transient_failures_only() {
        let settling = Settling(Duration::from_secs(7));
        assert!(settling.is_transient());
        assert_eq!(settling.retry_after(), Some(Duration::from_secs(7)));
        assert!(!Invalid.is_transient());
        assert_eq!(Invalid.retry_after(), None);
    }
}
