//! `replay --rate`: the token bucket that spaces replayed messages, kept on its own so it can be
//! swapped for the shared rate limiter without touching the replay loop.

use std::time::Duration;

use tokio::time::Instant;

/// Messages per second, with a burst of one second's worth (at least one message).
#[derive(Debug)]
pub(super) struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(super) fn new(rate: f64) -> TokenBucket {
        let capacity = rate.max(1.0);
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.capacity);
        self.last = now;
    }

    /// Whole messages that may go now.
    pub(super) fn available(&mut self) -> usize {
        self.refill();
        self.tokens.max(0.0).floor() as usize
    }

    /// How long until one message may go.
    pub(super) fn until_next(&mut self) -> Duration {
        self.refill();
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    pub(super) fn take(&mut self) {
        self.tokens -= 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_token_bucket_holds_the_rate_after_a_one_second_burst() {
        let mut bucket = TokenBucket::new(2.0);
        let start = Instant::now();
        let mut sent = 0;
        while sent < 10 {
            let pause = bucket.until_next();
            tokio::time::sleep(pause).await;
            let n = bucket.available().min(10 - sent);
            for _ in 0..n {
                bucket.take();
            }
            sent += n;
        }
        let elapsed = start.elapsed();
        // 2 at once, then 8 more at 2/s.
        assert!(elapsed >= Duration::from_secs(4), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");

        let mut slow = TokenBucket::new(0.5);
        assert_eq!(slow.available(), 1, "a slow rate still lets one message go");
        slow.take();
        assert_eq!(slow.until_next(), Duration::from_secs(2));
    }
}
