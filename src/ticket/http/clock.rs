//! Where the HTTP layer's time comes from, so backoff, rate limits and token expiry can be tested
//! without waiting: [`TokioClock`] follows `tokio::time` (and so `start_paused`), [`ManualClock`]
//! is a virtual clock for tests that also talk to real sockets.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::ticket::BoxFuture;

/// Source of time for retries, rate limiting and token expiry.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Monotonic time since the clock started.
    fn now(&self) -> Duration;
    /// Waits `duration` of this clock's time.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// Real time through `tokio::time`, so `#[tokio::test(start_paused = true)]` controls it too.
#[derive(Debug, Clone)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> TokioClock {
        TokioClock {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Virtual time: `sleep` advances the clock at once. For tests and simulations that talk to
/// real sockets, where paused tokio time would also fire request timeouts while the runtime
/// waits for the peer.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock::default())
    }

    /// Moves time forward, e.g. past a token's expiry.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.advance(duration);
        // Still yield, so that concurrent tasks interleave as they would with real sleeps.
        Box::pin(tokio::task::yield_now())
    }
}
