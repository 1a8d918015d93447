//! The client-side rate limit: one token bucket per connection, shared by every worker task, so
//! replicas stay under the ticket system's limit instead of bursting into its 429 windows. The
//! same bucket paces Security Hub write-backs and `replay --rate`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::clock::Clock;

/// Token bucket shared by all tasks of one connection. Waiters queue on a FIFO mutex, so the
/// earliest caller gets the next token.
#[derive(Debug)]
pub struct RateLimiter {
    rate_per_sec: f64,
    burst: f64,
    clock: Arc<dyn Clock>,
    state: tokio::sync::Mutex<Bucket>,
    waits: AtomicU64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Duration,
}

impl RateLimiter {
    /// `rate_per_sec <= 0` means unlimited.
    pub fn new(rate_per_sec: f64, burst: u32, clock: Arc<dyn Clock>) -> RateLimiter {
        let burst = f64::from(burst.max(1));
        let now = clock.now();
        RateLimiter {
            rate_per_sec,
            burst,
            clock,
            state: tokio::sync::Mutex::new(Bucket {
                tokens: burst,
                refilled_at: now,
            }),
            waits: AtomicU64::new(0),
        }
    }

    /// Takes one token, waiting for it when the bucket is empty.
    pub async fn acquire(&self) {
        if !self.limited() {
            return;
        }
        // Holding the lock while sleeping is deliberate: it keeps later callers queued behind
        // the one that waits, which is what makes the limiter fair.
        let mut bucket = self.state.lock().await;
        self.refill(&mut bucket);
        if bucket.tokens < 1.0 {
            let missing = 1.0 - bucket.tokens;
            let wait = Duration::from_secs_f64(missing / self.rate_per_sec);
            self.waits.fetch_add(1, Ordering::Relaxed);
            self.clock.sleep(wait).await;
            self.refill(&mut bucket);
            // Float rounding may leave us a hair short; the token is ours either way.
            bucket.tokens = bucket.tokens.max(1.0);
        }
        bucket.tokens -= 1.0;
    }

    fn limited(&self) -> bool {
        self.rate_per_sec > 0.0 && self.rate_per_sec.is_finite()
    }

    /// Whole tokens that may be taken now without waiting (`usize::MAX` when unlimited). For a
    /// caller that must not fetch more work than may go at once (`replay`: a received message
    /// waiting for its turn would run down its visibility timeout).
    pub async fn available(&self) -> usize {
        if !self.limited() {
            return usize::MAX;
        }
        let mut bucket = self.state.lock().await;
        self.refill(&mut bucket);
        bucket.tokens.max(0.0).floor() as usize
    }

    /// How long until one token is there (zero when one is).
    pub async fn until_next(&self) -> Duration {
        if !self.limited() {
            return Duration::ZERO;
        }
        let mut bucket = self.state.lock().await;
        self.refill(&mut bucket);
        if bucket.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate_per_sec)
        }
    }

    fn refill(&self, bucket: &mut Bucket) {
        let now = self.clock.now();
        let elapsed = now.saturating_sub(bucket.refilled_at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate_per_sec).min(self.burst);
        bucket.refilled_at = now;
    }

    /// How many acquisitions had to wait (for tests and diagnostics).
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::http::{ManualClock, TokioClock};

    #[tokio::test(start_paused = true)]
    async fn a_caller_can_ask_how_many_may_go_and_when_the_next_may() {
        // `replay --rate 2`: a burst of one second's worth, then 2/s.
        let bucket = RateLimiter::new(2.0, 2, Arc::new(TokioClock::new()));
        let start = tokio::time::Instant::now();
        let mut sent = 0;
        while sent < 10 {
            tokio::time::sleep(bucket.until_next().await).await;
            let n = bucket.available().await.min(10 - sent);
            for _ in 0..n {
                bucket.acquire().await;
            }
            sent += n;
        }
        // 2 at once, then 8 more at 2/s.
        assert_eq!(start.elapsed(), Duration::from_secs(4));

        let slow = RateLimiter::new(0.5, 1, Arc::new(TokioClock::new()));
        assert_eq!(slow.available().await, 1, "a slow rate still lets one go");
        slow.acquire().await;
        assert_eq!(slow.until_next().await, Duration::from_secs(2));

        let unlimited = RateLimiter::new(0.0, 1, Arc::new(TokioClock::new()));
        assert_eq!(unlimited.available().await, usize::MAX);
        assert_eq!(unlimited.until_next().await, Duration::ZERO);
    }

    #[tokio::test]
    async fn rate_limiter_spaces_concurrent_calls() {
        let clock = ManualClock::new();
        let limiter = Arc::new(RateLimiter::new(5.0, 2, clock.clone()));
        let started = clock.now();
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move { limiter.acquire().await }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        // 12 calls, burst 2, 5 per second: the last 10 need at least 2 s.
        let elapsed = clock.now() - started;
        assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(2100), "{elapsed:?}");
        assert_eq!(limiter.waits(), 10);
    }
}
