//! The client-side rate limit: one token bucket per connection, shared by every worker task, so
//! the bridge paces its requests instead of bursting into the ticket system's 429 windows. The
//! same bucket paces Security Hub write-backs and `replay --rate`.
//!
//! A connection's bucket *adapts* (additive increase, multiplicative decrease, as TCP does with its
//! window): the configured rate is a ceiling, a 429 lowers the rate by [`DECREASE`] (once per
//! congestion episode, however many requests the same overfull window refused), and every
//! accepted request raises it a little, by [`INCREASE_SHARE`] of the ceiling per second of
//! accepted traffic. A success that says the limit is near (`X-RateLimit-NearLimit`, or
//! `X-RateLimit-Remaining: 0`) holds the rate where it is. Several replicas sharing one limit each
//! settle near their share without being told how many they are, and a limit that other clients
//! of the same ticket system eat into is found the same way. `replay --rate` keeps a fixed rate:
//! there the operator's number is the point.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::clock::Clock;

/// Factor applied to the rate on a 429.
pub const DECREASE: f64 = 0.8;
/// Additive increase per second of accepted traffic, as a share of the ceiling.
pub const INCREASE_SHARE: f64 = 0.03;
/// The rate never adapts below this share of the ceiling (nor below [`MIN_RATE`]).
const FLOOR_SHARE: f64 = 0.02;
const MIN_RATE: f64 = 0.1;
/// 429s within this long of a decrease belong to the same overfull window (requests that were
/// already in flight): one episode, one decrease. A longer `Retry-After` extends it (up to
/// [`MAX_CALM`]): requests refused meanwhile carry no news.
const MIN_CALM: Duration = Duration::from_secs(1);
const MAX_CALM: Duration = Duration::from_secs(10);

/// Token bucket shared by all tasks of one connection. Waiters queue on a FIFO mutex, so the
/// earliest caller gets the next token.
#[derive(Debug)]
pub struct RateLimiter {
    /// The configured rate: fixed, or the ceiling of an adaptive one.
    ceiling: f64,
    /// The rate in force (`f64` bits), read by every acquisition without a lock.
    rate: AtomicU64,
    burst: f64,
    /// `None`: the rate is fixed.
    adapt: Option<std::sync::Mutex<Episode>>,
    clock: Arc<dyn Clock>,
    state: tokio::sync::Mutex<Bucket>,
    waits: AtomicU64,
    decreases: AtomicU64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Duration,
}

/// The adaptive rate's memory of the last decrease.
#[derive(Debug, Default)]
struct Episode {
    /// Until then, further 429s are part of the episode that already lowered the rate.
    calm_until: Duration,
    /// A success said the limit is near: no increase until this time.
    hold_until: Duration,
}

impl RateLimiter {
    /// A fixed rate. `rate_per_sec <= 0` means unlimited.
    pub fn new(rate_per_sec: f64, burst: u32, clock: Arc<dyn Clock>) -> RateLimiter {
        let burst = f64::from(burst.max(1));
        let now = clock.now();
        RateLimiter {
            ceiling: rate_per_sec,
            rate: AtomicU64::new(rate_per_sec.to_bits()),
            burst,
            adapt: None,
            clock,
            state: tokio::sync::Mutex::new(Bucket {
                tokens: burst,
                refilled_at: now,
            }),
            waits: AtomicU64::new(0),
            decreases: AtomicU64::new(0),
        }
    }

    /// A rate that adapts to the server's answers (see the module doc), starting at and never
    /// exceeding `ceiling`. `ceiling <= 0` means unlimited (nothing to adapt).
    pub fn adaptive(ceiling: f64, burst: u32, clock: Arc<dyn Clock>) -> RateLimiter {
        let mut limiter = RateLimiter::new(ceiling, burst, clock);
        if limiter.limited() {
            limiter.adapt = Some(std::sync::Mutex::new(Episode::default()));
        }
        limiter
    }

    /// Takes one token, waiting for it when the bucket is empty.
    pub async fn acquire(&self) {
        self.take(None).await;
    }

    /// [`RateLimiter::acquire`] for a request that is worthless after `deadline` (this
    /// limiter's clock): it queues like any other, but when its token would come after the
    /// deadline it leaves the queue without one, so the token goes to the next caller instead
    /// of to a request that is not sent. Whether a token was taken.
    pub async fn acquire_by(&self, deadline: Duration) -> bool {
        self.take(Some(deadline)).await
    }

    async fn take(&self, deadline: Option<Duration>) -> bool {
        if !self.limited() {
            return true;
        }
        let late = |at: Duration| deadline.is_some_and(|d| at > d);
        // Holding the lock while sleeping is deliberate: it keeps later callers queued behind
        // the one that waits, which is what makes the limiter fair.
        let mut bucket = match (self.state.try_lock(), deadline) {
            (Ok(bucket), _) => bucket,
            (Err(_), None) => self.state.lock().await,
            (Err(_), Some(deadline)) => {
                let Some(left) = deadline.checked_sub(self.clock.now()) else {
                    return false;
                };
                tokio::select! {
                    biased;
                    bucket = self.state.lock() => bucket,
                    () = self.clock.sleep(left) => return false,
                }
            }
        };
        self.refill(&mut bucket);
        if bucket.tokens < 1.0 {
            let missing = 1.0 - bucket.tokens;
            let wait = Duration::from_secs_f64(missing / self.rate());
            if late(self.clock.now() + wait) {
                return false;
            }
            self.waits.fetch_add(1, Ordering::Relaxed);
            self.clock.sleep(wait).await;
            self.refill(&mut bucket);
            // Float rounding (or a decrease while we slept) may leave us short; the token is
            // ours either way.
            bucket.tokens = bucket.tokens.max(1.0);
        }
        bucket.tokens -= 1.0;
        true
    }

    fn limited(&self) -> bool {
        self.ceiling > 0.0 && self.ceiling.is_finite()
    }

    /// The rate in force, requests per second (the ceiling unless it adapted down).
    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Relaxed))
    }

    fn set_rate(&self, rate: f64) {
        self.rate.store(rate.to_bits(), Ordering::Relaxed);
    }

    fn floor(&self) -> f64 {
        (self.ceiling * FLOOR_SHARE).max(MIN_RATE).min(self.ceiling)
    }

    /// The server refused a request for its rate (429), asking us to wait `server_wait`: the
    /// first refusal of an episode lowers the rate by [`DECREASE`] and empties the bucket, so
    /// the saved-up burst does not hit the same full window again.
    pub fn refused(&self, server_wait: Option<Duration>) {
        let Some(adapt) = &self.adapt else {
            return;
        };
        let now = self.clock.now();
        {
            let mut episode = adapt.lock().unwrap_or_else(|p| p.into_inner());
            if now < episode.calm_until {
                return;
            }
            let calm = server_wait.unwrap_or(MIN_CALM).clamp(MIN_CALM, MAX_CALM);
            episode.calm_until = now + calm;
            self.set_rate((self.rate() * DECREASE).max(self.floor()));
        }
        self.decreases.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut bucket) = self.state.try_lock() {
            // Taken only if free: an acquirer asleep on the bucket will wake to the new rate.
            self.refill(&mut bucket);
            bucket.tokens = bucket.tokens.min(0.0);
        }
    }

    /// The server accepted a request: the rate creeps back towards the ceiling, by
    /// [`INCREASE_SHARE`] of it per second's worth of accepted requests. `near_limit`: the
    /// answer said the limit is close; the rate holds for a second instead.
    pub fn accepted(&self, near_limit: bool) {
        let Some(adapt) = &self.adapt else {
            return;
        };
        let now = self.clock.now();
        let mut episode = adapt.lock().unwrap_or_else(|p| p.into_inner());
        if near_limit {
            episode.hold_until = now + MIN_CALM;
            return;
        }
        if now < episode.hold_until {
            return;
        }
        let rate = self.rate();
        if rate < self.ceiling {
            // One request at rate r is 1/r seconds of traffic: + share × ceiling × (1/r).
            let step = INCREASE_SHARE * self.ceiling / rate;
            self.set_rate((rate + step).min(self.ceiling));
        }
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
            Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate())
        }
    }

    fn refill(&self, bucket: &mut Bucket) {
        let now = self.clock.now();
        let elapsed = now.saturating_sub(bucket.refilled_at).as_secs_f64();
        let rate = self.rate();
        // The burst shrinks with the rate: a second's worth at the ceiling stays a second's
        // worth after a decrease.
        let burst = (self.burst * rate / self.ceiling).max(1.0);
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.refilled_at = now;
    }

    /// How many acquisitions had to wait (for tests and diagnostics).
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// How many times the adaptive rate was lowered.
    pub fn decreases(&self) -> u64 {
        self.decreases.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::http::{ManualClock, TokioClock};

    #[tokio::test(start_paused = true)]
    async fn a_request_with_a_deadline_leaves_its_token_to_the_next_when_it_would_be_late() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let bucket = Arc::new(RateLimiter::new(1.0, 1, clock.clone()));
        let start = tokio::time::Instant::now();
        bucket.acquire().await; // the burst: the next token is due at 1 s

        // Alone at the bucket: due after its deadline, it returns at once with nothing taken.
        assert!(
            !bucket
                .acquire_by(clock.now() + Duration::from_millis(500))
                .await
        );
        assert_eq!(start.elapsed(), Duration::ZERO);

        // Queued behind a caller that holds the bucket until 1 s: it leaves at its deadline.
        let ahead = tokio::spawn({
            let bucket = Arc::clone(&bucket);
            async move { bucket.acquire().await }
        });
        tokio::task::yield_now().await;
        assert!(
            !bucket
                .acquire_by(clock.now() + Duration::from_millis(500))
                .await
        );
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        ahead.await.expect("the caller ahead gets its token");
        assert_eq!(start.elapsed(), Duration::from_secs(1));

        // Neither late request took a token: the next is due at 2 s, and one in time gets it.
        assert!(
            bucket
                .acquire_by(clock.now() + Duration::from_secs(5))
                .await
        );
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

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

    #[tokio::test(start_paused = true)]
    async fn a_refusal_lowers_the_rate_once_per_episode_and_acceptance_restores_it() {
        let limiter = RateLimiter::adaptive(40.0, 40, Arc::new(TokioClock::new()));
        assert_eq!(limiter.rate(), 40.0);
        // The same overfull window refuses many requests that were in flight: one decrease.
        for _ in 0..10 {
            limiter.refused(Some(Duration::from_secs(1)));
        }
        assert_eq!(limiter.rate(), 40.0 * DECREASE);
        assert_eq!(limiter.decreases(), 1);
        // The saved-up burst is gone: the next request waits for a token at the new rate.
        assert_eq!(limiter.available().await, 0);
        // A refusal after the episode is news.
        tokio::time::advance(Duration::from_secs(1)).await;
        limiter.refused(None);
        assert_eq!(limiter.rate(), 40.0 * DECREASE * DECREASE);
        assert_eq!(limiter.decreases(), 2);
        // A longer Retry-After makes a longer episode.
        tokio::time::advance(Duration::from_secs(1)).await;
        limiter.refused(Some(Duration::from_secs(3)));
        tokio::time::advance(Duration::from_secs(2)).await;
        limiter.refused(None);
        assert_eq!(limiter.decreases(), 3);

        // Accepted requests raise it by INCREASE_SHARE of the ceiling per second of traffic,
        // and never past the ceiling.
        let low = limiter.rate();
        let mut accepted = 0;
        while limiter.rate() < 40.0 {
            limiter.accepted(false);
            accepted += 1;
            assert!(accepted < 10_000, "the rate never came back");
        }
        assert_eq!(limiter.rate(), 40.0);
        // From r to the ceiling c at +share·c per 1/r of traffic: about (c² − r²) / (2·share·c)
        // requests.
        let expected = (40.0f64.powi(2) - low.powi(2)) / (2.0 * INCREASE_SHARE * 40.0);
        assert!(
            (f64::from(accepted) - expected).abs() < expected * 0.1,
            "{accepted} vs {expected}"
        );
        limiter.accepted(false);
        assert_eq!(limiter.rate(), 40.0);
    }

    #[tokio::test(start_paused = true)]
    async fn near_the_limit_the_rate_holds_and_it_never_falls_below_its_floor() {
        let limiter = RateLimiter::adaptive(10.0, 10, Arc::new(TokioClock::new()));
        limiter.refused(None);
        let lowered = limiter.rate();
        limiter.accepted(true);
        limiter.accepted(false);
        assert_eq!(limiter.rate(), lowered, "held after a near-limit answer");
        tokio::time::advance(Duration::from_secs(1)).await;
        limiter.accepted(false);
        assert!(limiter.rate() > lowered);

        for _ in 0..200 {
            tokio::time::advance(Duration::from_secs(1)).await;
            limiter.refused(None);
        }
        assert_eq!(limiter.rate(), 10.0 * FLOOR_SHARE.max(MIN_RATE / 10.0));
        // Still paced, never stuck: a token comes at the floor rate.
        assert!(limiter.until_next().await <= Duration::from_secs_f64(1.0 / limiter.rate()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_or_unlimited_rate_does_not_adapt() {
        let fixed = RateLimiter::new(5.0, 5, Arc::new(TokioClock::new()));
        fixed.refused(Some(Duration::from_secs(1)));
        assert_eq!((fixed.rate(), fixed.decreases()), (5.0, 0));
        let unlimited = RateLimiter::adaptive(0.0, 1, Arc::new(TokioClock::new()));
        unlimited.refused(None);
        assert_eq!(unlimited.decreases(), 0);
        assert_eq!(unlimited.available().await, usize::MAX);
    }

    /// Three replicas, each configured with the whole limit, against a server that accepts 40
    /// requests per fixed one-second window and refuses the rest with `Retry-After: 1` — the
    /// simulator's model. In virtual time (deterministic): the adaptive limiters together keep
    /// the windows full while most requests are paced rather than refused; fixed limiters at
    /// the same setting are refused most of the time.
    #[tokio::test(start_paused = true)]
    async fn replicas_sharing_one_limit_find_their_share() {
        let adaptive = share_one_limit(RateLimiter::adaptive).await;
        let fixed = share_one_limit(RateLimiter::new).await;
        assert!(adaptive.utilisation >= 0.97, "{adaptive:?}");
        assert!(adaptive.refused_share < 0.15, "{adaptive:?}");
        assert!(fixed.refused_share > 0.5, "{fixed:?}");
    }

    /// The same at 5 requests per second, the limit `scripts/loadtest --scenario shared-limit`
    /// measures the bridge at: one request more or less is a fifth of a window there, and the
    /// limiters alone still fill them. (What the bridge loses around them in that scenario is
    /// elsewhere: BENCHMARKS.md.)
    #[tokio::test(start_paused = true)]
    async fn replicas_sharing_a_low_limit_fill_it_too() {
        let adaptive = share_limit(RateLimiter::adaptive, 5, 120).await;
        assert!(adaptive.utilisation >= 0.97, "{adaptive:?}");
        assert!(adaptive.refused_share < 0.25, "{adaptive:?}");
    }

    #[derive(Debug)]
    struct Shared {
        utilisation: f64,
        refused_share: f64,
    }

    async fn share_one_limit(make: fn(f64, u32, Arc<dyn Clock>) -> RateLimiter) -> Shared {
        share_limit(make, 40, 60).await
    }

    /// Three replicas of 32 tasks, each limiter configured with the whole `limit`, for `seconds`.
    async fn share_limit(
        make: fn(f64, u32, Arc<dyn Clock>) -> RateLimiter,
        limit: u64,
        seconds: u64,
    ) -> Shared {
        use std::sync::Mutex;
        let start = tokio::time::Instant::now();
        // (window index, requests seen in it), accepted, refused.
        let server = Arc::new(Mutex::new((0u64, 0u64, 0u64, 0u64)));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..3 {
            let limiter = Arc::new(make(
                limit as f64,
                limit as u32,
                Arc::new(TokioClock::new()),
            ));
            for _ in 0..32 {
                let (limiter, server) = (limiter.clone(), server.clone());
                tasks.spawn(async move {
                    while start.elapsed() < Duration::from_secs(seconds) {
                        limiter.acquire().await;
                        // 50 ms there and back, the server counting at arrival.
                        tokio::time::sleep(Duration::from_millis(25)).await;
                        let ok = {
                            let mut s = server.lock().unwrap();
                            let window = start.elapsed().as_secs();
                            if window >= seconds {
                                return;
                            }
                            if window != s.0 {
                                (s.0, s.1) = (window, 0);
                            }
                            s.1 += 1;
                            let ok = s.1 <= limit;
                            if ok {
                                s.2 += 1
                            } else {
                                s.3 += 1
                            }
                            ok
                        };
                        tokio::time::sleep(Duration::from_millis(25)).await;
                        if ok {
                            limiter.accepted(false);
                        } else {
                            limiter.refused(Some(Duration::from_secs(1)));
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                });
            }
        }
        while tasks.join_next().await.is_some() {}
        let (_, _, accepted, refused) = *server.lock().unwrap();
        Shared {
            utilisation: accepted as f64 / (limit * seconds) as f64,
            refused_share: refused as f64 / (accepted + refused) as f64,
        }
    }
}
