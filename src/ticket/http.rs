//! HTTP resilience shared by every ticket-system client: one place decides what is worth
//! retrying, how long to wait, and how fast a connection may talk to its server.
//!
//! Why it looks like this:
//! - Ticket systems throttle hard (Jira per-endpoint bursts, ServiceNow per-user rate rules), so
//!   every connection has one token bucket shared by all worker tasks, and a `Retry-After` or
//!   `X-RateLimit-Reset` from the server always wins over our own backoff.
//! - The pipeline must not hold an SQS message forever: retries stop when the retry budget (total
//!   time) is spent and the caller gets [`TicketError::Transient`], so SQS redelivers later.
//! - Errors travel into logs, DLQ attributes and Security Hub notes; they carry the status and a
//!   short body excerpt with configured secrets scrubbed, never headers.
//! - Time goes through [`Clock`] so backoff, rate limits and token expiry can be tested without
//!   waiting: [`TokioClock`] follows `tokio::time` (and so `start_paused`), [`ManualClock`] is a
//!   virtual clock for tests that also talk to real sockets.

use crate::runtime::telemetry;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use secrecy::{ExposeSecret, SecretString};

use crate::ticket::{Blame, BoxFuture, TicketError};

/// Longest body excerpt kept in an error message.
pub const EXCERPT_LIMIT: usize = 300;

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

/// Connection-level HTTP settings shared by the Jira and ServiceNow configurations.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    /// Whole request including the response body.
    pub request_timeout: Duration,
    /// Total time one operation may spend retrying before it reports a transient error.
    pub retry_budget: Duration,
    /// Attempts per operation, the first included.
    pub max_attempts: u32,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Requests per second for this connection, shared by all tasks; `0` disables the limit.
    pub rate_limit_per_sec: f64,
    /// Requests that may go out at once before the rate applies.
    pub burst: u32,
    /// How long an at-most-once request (a create) may wait for its turn (rate limit, backoff
    /// after a 429) before it is abandoned unsent. Bounds the time between the intent the
    /// lifecycle records and the moment the request can last reach the server.
    pub send_window: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry_budget: Duration::from_secs(60),
            max_attempts: 8,
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(20),
            rate_limit_per_sec: 10.0,
            burst: 10,
            send_window: Duration::from_secs(5),
        }
    }
}

impl HttpSettings {
    /// The longest an at-most-once request can be in the air: it is sent within `send_window`
    /// of the call or not at all, and an attempt ends within `request_timeout`.
    pub fn at_most_once_span(&self) -> Duration {
        self.send_window + self.request_timeout
    }
}

/// Reads a duration in whole or fractional seconds (`JIRA_REQUEST_TIMEOUT`,
/// `JIRA_SEARCH_CONSISTENCY`, …); empty or absent means the default.
pub fn seconds_setting(
    name: &'static str,
    value: Option<&str>,
) -> Result<Option<Duration>, ClientConfigError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    match value.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=86_400.0).contains(&secs) => {
            Ok(Some(Duration::from_secs_f64(secs)))
        }
        _ => Err(ClientConfigError::Invalid {
            name,
            message: format!("expected seconds (a number from 0 to 86400), got {value:?}"),
        }),
    }
}

/// Whether a request may be sent again when its outcome is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Reads and writes that end in the same state however often they are applied (GET, PUT of
    /// fields, search): every transient failure is retried.
    Idempotent,
    /// Creates and comments: repeated only when the request provably did not take effect (the
    /// connection was never made, or a 429 refused it). A timeout, a cut connection, a 5xx or an
    /// unreadable 2xx ends in [`TicketError::OutcomeUnknown`] and the caller decides — it must
    /// look before it sends again. Unsent after `send_window`, the request is abandoned.
    AtMostOnce,
}

/// A configuration that cannot work: missing or contradictory settings, an unusable URL.
#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    #[error("{name} is required when {because}")]
    Missing { name: &'static str, because: String },
    #[error("{name}: {message}")]
    Invalid { name: &'static str, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Reads a per-process request rate (`JIRA_RATE_LIMIT`, `SERVICENOW_RATE_LIMIT`): requests per
/// second, `0` to turn the limiter off. Size it as the ticket system's limit divided by the number
/// of replicas, so replicas do not overshoot into 429 windows together.
pub fn rate_limit_setting(
    name: &'static str,
    value: Option<&str>,
) -> Result<Option<f64>, ClientConfigError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(Some(rate)),
        _ => Err(ClientConfigError::Invalid {
            name,
            message: format!(
                "expected requests per second (a number ≥ 0, 0 = no limit), got {value:?}"
            ),
        }),
    }
}

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
        if !(self.rate_per_sec > 0.0 && self.rate_per_sec.is_finite()) {
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

/// A successful (2xx) response: status and body, headers dropped.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One connection's HTTP client with retries, budget, rate limit and error classification.
pub struct HttpClient {
    system: &'static str,
    client: reqwest::Client,
    settings: HttpSettings,
    limiter: Arc<RateLimiter>,
    clock: Arc<dyn Clock>,
    /// Swapped when the connection's credentials rotate ([`HttpClient::replace_scrub`]).
    scrub: std::sync::RwLock<Vec<SecretString>>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("system", &self.system)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to, before the retry decision.
enum Outcome {
    Done(HttpResponse),
    Permanent(TicketError),
    Retry {
        status: Option<u16>,
        message: String,
        /// The server's own demand (`Retry-After`, `X-RateLimit-Reset`).
        server_wait: Option<Duration>,
        /// The request may have reached the server and taken effect.
        maybe_applied: bool,
    },
}

impl HttpClient {
    /// `scrub` lists secret values that must never appear in an error, even if a server echoes
    /// them back in a body.
    pub fn new(
        system: &'static str,
        settings: &HttpSettings,
        clock: Arc<dyn Clock>,
        scrub: Vec<SecretString>,
    ) -> Result<HttpClient, ClientConfigError> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(concat!("findings-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientConfigError::Client(e.to_string()))?;
        let limiter = Arc::new(RateLimiter::new(
            settings.rate_limit_per_sec,
            settings.burst,
            clock.clone(),
        ));
        Ok(HttpClient {
            system,
            client,
            settings: settings.clone(),
            limiter,
            clock,
            scrub: std::sync::RwLock::new(scrub),
        })
    }

    /// Replaces the secret values scrubbed from errors, when the connection's credentials
    /// rotate (see [`crate::aws::secrets`]).
    pub fn replace_scrub(&self, scrub: Vec<SecretString>) {
        *self.scrub.write().unwrap_or_else(|p| p.into_inner()) = scrub;
    }

    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn system(&self) -> &'static str {
        self.system
    }

    /// Sends the request `build` makes (called again for every attempt), retrying transient
    /// failures until the attempts or the time budget run out. For idempotent requests only.
    pub async fn send<F>(
        &self,
        operation: &'static str,
        build: F,
    ) -> Result<HttpResponse, TicketError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        self.send_with(operation, Delivery::Idempotent, build).await
    }

    /// [`HttpClient::send`] with an explicit [`Delivery`].
    pub async fn send_with<F>(
        &self,
        operation: &'static str,
        delivery: Delivery,
        build: F,
    ) -> Result<HttpResponse, TicketError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let started = self.clock.now();
        let send_by = match delivery {
            Delivery::Idempotent => None,
            Delivery::AtMostOnce => Some(started + self.settings.send_window),
        };
        let mut backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.settings.min_backoff)
            .with_max_delay(self.settings.max_backoff)
            .without_max_times()
            .build();
        let max_attempts = self.settings.max_attempts.max(1);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let (status, message, server_wait) =
                match self.attempt(operation, &build, attempt, send_by).await {
                    Outcome::Done(response) => return Ok(response),
                    Outcome::Permanent(error) => return Err(error),
                    Outcome::Retry {
                        status,
                        message,
                        maybe_applied: true,
                        ..
                    } if delivery == Delivery::AtMostOnce => {
                        telemetry::outcome_unknown(self.system, operation);
                        return Err(TicketError::OutcomeUnknown {
                            system: self.system,
                            operation,
                            status,
                            message,
                        });
                    }
                    Outcome::Retry {
                        status,
                        message,
                        server_wait,
                        ..
                    } => (status, message, server_wait),
                };
            let own_wait = backoff.next().unwrap_or(self.settings.max_backoff);
            let wait = server_wait.map_or(own_wait, |server| server.max(own_wait));
            let spent = self.clock.now().saturating_sub(started);
            let past_send_window = send_by.is_some_and(|by| started + spent + wait > by);
            if attempt >= max_attempts
                || spent + wait > self.settings.retry_budget
                || past_send_window
            {
                return Err(TicketError::Transient {
                    system: self.system,
                    operation,
                    status,
                    message: format!(
                        "{message} (gave up after {attempt} attempt(s) in {}s; {}{})",
                        spent.as_secs(),
                        if past_send_window {
                            format!(
                                "not sent within its {}s send window",
                                self.settings.send_window.as_secs()
                            )
                        } else {
                            format!("retry budget {}s", self.settings.retry_budget.as_secs())
                        },
                        if wait > own_wait {
                            format!(", server asked to wait {}s", wait.as_secs())
                        } else {
                            String::new()
                        }
                    ),
                });
            }
            tracing::debug!(
                system = self.system,
                operation,
                attempt,
                status,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "retrying transient failure"
            );
            self.clock.sleep(wait).await;
        }
    }

    async fn attempt<F>(
        &self,
        operation: &'static str,
        build: &F,
        attempt: u32,
        send_by: Option<Duration>,
    ) -> Outcome
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let request = match build(&self.client).build() {
            Ok(request) => request,
            Err(e) => {
                return Outcome::Permanent(self.permanent(
                    operation,
                    None,
                    format!(
                        "invalid request: {}",
                        self.scrubbed(&e.without_url().to_string())
                    ),
                ));
            }
        };
        let method = request.method().clone();
        let path = request.url().path().to_owned();
        let queued = std::time::Instant::now();
        self.limiter.acquire().await;
        let waited = queued.elapsed();
        if waited >= Duration::from_millis(1) {
            telemetry::rate_limit_wait(self.system, waited.as_secs_f64());
        }
        if send_by.is_some_and(|by| self.clock.now() > by) {
            // Queued behind the rate limit for too long: whoever holds this request's intent
            // now assumes it can no longer arrive, so it must not.
            return Outcome::Retry {
                status: None,
                message: format!(
                    "not sent: waited past the {}s send window for the rate limit",
                    self.settings.send_window.as_secs()
                ),
                server_wait: None,
                maybe_applied: false,
            };
        }
        let sent = std::time::Instant::now();
        let response = match self.client.execute(request).await {
            Ok(response) => response,
            Err(e) => {
                telemetry::api_latency(
                    self.system,
                    operation,
                    sent.elapsed().as_secs_f64(),
                    telemetry::ApiOutcome::Transport,
                );
                if let Some(reason) = broken_setting(&e) {
                    // DNS or TLS: nothing was sent, and nothing will be until the setting (or
                    // the server's certificate) changes.
                    return Outcome::Permanent(TicketError::Unusable {
                        system: self.system,
                        operation,
                        status: None,
                        blame: Blame::Connection,
                        message: format!("{reason}: {}", self.scrubbed(&transport_message(e))),
                    });
                }
                // Only a connection that was never made proves the server saw nothing.
                let maybe_applied = !e.is_connect();
                let message = transport_message(e);
                tracing::debug!(system = self.system, %method, path, attempt, error = %message, "request failed");
                return Outcome::Retry {
                    status: None,
                    message,
                    server_wait: None,
                    maybe_applied,
                };
            }
        };
        let status = response.status().as_u16();
        telemetry::api_latency(
            self.system,
            operation,
            sent.elapsed().as_secs_f64(),
            telemetry::ApiOutcome::from_status(status),
        );
        tracing::debug!(system = self.system, %method, path, status, attempt, "response");
        let server_wait = server_wait(response.headers(), status, SystemTime::now());
        let body = match response.bytes().await {
            Ok(body) => body.to_vec(),
            Err(e) => {
                return Outcome::Retry {
                    status: Some(status),
                    message: format!("reading the response body: {}", transport_message(e)),
                    server_wait: None,
                    // A 2xx whose body was cut off did happen; other statuses may have.
                    maybe_applied: true,
                };
            }
        };
        if (200..300).contains(&status) {
            return Outcome::Done(HttpResponse { status, body });
        }
        let message = format!(
            "HTTP {status}: {}",
            self.scrubbed(&describe_error_body(&body))
        );
        if matches!(status, 401 | 403) {
            // Credentials expired, rotated or lacking a permission: every request of this
            // connection fails alike, so it is the connection's fault, not the finding's.
            return Outcome::Permanent(TicketError::Unusable {
                system: self.system,
                operation,
                status: Some(status),
                blame: Blame::Connection,
                message,
            });
        }
        if is_retriable_status(status) {
            Outcome::Retry {
                status: Some(status),
                message,
                server_wait,
                // A 429 is a refusal before any work; 408, 409 and 5xx (a gateway that lost the
                // backend's answer) may come after the backend committed.
                maybe_applied: status != 429,
            }
        } else {
            Outcome::Permanent(self.permanent(operation, Some(status), message))
        }
    }

    /// Decodes a successful JSON body. A 2xx we cannot read is treated as transient: the write
    /// may have happened, and the marker search on the next attempt finds it.
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        response: &HttpResponse,
    ) -> Result<T, TicketError> {
        serde_json::from_slice(&response.body).map_err(|e| TicketError::Transient {
            system: self.system,
            operation,
            status: Some(response.status),
            message: format!(
                "unexpected response body ({e}): {}",
                self.scrubbed(&excerpt(&String::from_utf8_lossy(&response.body)))
            ),
        })
    }

    /// A permanent error for this connection, e.g. input the bridge refuses to send.
    pub fn permanent(
        &self,
        operation: &'static str,
        status: Option<u16>,
        message: String,
    ) -> TicketError {
        TicketError::Permanent {
            system: self.system,
            operation,
            status,
            message,
        }
    }

    fn scrubbed(&self, text: &str) -> String {
        let mut out = text.to_owned();
        let scrub = self.scrub.read().unwrap_or_else(|p| p.into_inner());
        for secret in scrub.iter() {
            let secret = secret.expose_secret();
            if !secret.is_empty() {
                out = out.replace(secret, "[REDACTED]");
            }
        }
        out
    }
}

/// 408, 409 (edit conflicts clear up), 429 and 5xx are worth another try.
pub fn is_retriable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || (500..600).contains(&status)
}

/// A transport failure that a connection setting causes (name resolution, TLS), as opposed to a
/// server that is down or slow.
fn broken_setting(error: &reqwest::Error) -> Option<&'static str> {
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        chain.push_str(&e.to_string().to_ascii_lowercase());
        chain.push('\n');
        source = e.source();
    }
    if chain.contains("dns error") || chain.contains("failed to lookup address") {
        Some("the host name does not resolve")
    } else if chain.contains("certificate") || chain.contains("tls handshake") {
        Some("TLS failed")
    } else {
        None
    }
}

fn transport_message(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // The URL holds no credentials, but the operation already says what was called.
    format!("{kind}: {}", excerpt(&error.without_url().to_string()))
}

/// How long the server asked us to wait: `Retry-After` (seconds or HTTP date) on any retriable
/// response, `X-RateLimit-Reset` (epoch seconds or a date) when throttled.
pub fn server_wait(
    headers: &reqwest::header::HeaderMap,
    status: u16,
    now: SystemTime,
) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let retry_after = header("retry-after").and_then(|v| parse_retry_after(v, now));
    let reset = if status == 429 {
        header("x-ratelimit-reset").and_then(|v| parse_reset(v, now))
    } else {
        None
    };
    match (retry_after, reset) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// `Retry-After: 7` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(until(SystemTime::from(at), now))
}

/// `X-RateLimit-Reset: 1700000000` (epoch seconds, ServiceNow) or `2024-05-01T12:00Z` (Jira).
pub fn parse_reset(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(epoch) = value.parse::<u64>() {
        let at = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(epoch))?;
        return Some(until(at, now));
    }
    let at = chrono::DateTime::parse_from_rfc3339(value)
        .or_else(|_| chrono::DateTime::parse_from_rfc2822(value))
        .ok()
        .map(SystemTime::from)
        .or_else(|| {
            // Jira writes minute precision without seconds: 2024-05-01T12:00Z.
            chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%MZ")
                .ok()
                .map(|naive| SystemTime::from(naive.and_utc()))
        })?;
    Some(until(at, now))
}

fn until(at: SystemTime, now: SystemTime) -> Duration {
    at.duration_since(now).unwrap_or(Duration::ZERO)
}

/// Turns an error body into a short message: Jira's `errorMessages`/`errors` as sorted
/// `field: message` entries, ServiceNow's `error.message`/`error.detail`, else an excerpt.
pub fn describe_error_body(body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body) {
        let mut entries: Vec<String> = Vec::new();
        if let Some(messages) = map.get("errorMessages").and_then(|v| v.as_array()) {
            entries.extend(messages.iter().map(value_text));
        }
        if let Some(errors) = map.get("errors").and_then(|v| v.as_object()) {
            entries.extend(
                errors
                    .iter()
                    .map(|(field, v)| format!("{field}: {}", value_text(v))),
            );
        }
        if let Some(error) = map.get("error").and_then(|v| v.as_object()) {
            let message = error.get("message").map(value_text);
            let detail = error
                .get("detail")
                .filter(|d| !d.is_null())
                .map(value_text)
                .filter(|d| !d.is_empty());
            match (message, detail) {
                (Some(m), Some(d)) => entries.push(format!("{m}: {d}")),
                (Some(m), None) => entries.push(m),
                (None, Some(d)) => entries.push(d),
                (None, None) => {}
            }
        }
        entries.retain(|e| !e.is_empty());
        if !entries.is_empty() {
            entries.sort();
            return excerpt(&entries.join("; "));
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        excerpt(text)
    }
}

fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// At most [`EXCERPT_LIMIT`] characters on one line, with `…` when cut.
pub fn excerpt(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= EXCERPT_LIMIT {
        return one_line;
    }
    let mut out: String = one_line.chars().take(EXCERPT_LIMIT - 1).collect();
    out.push('…');
    out
}

/// Keeps a single token value across tasks, fetched once and refreshed by one task at a time.
/// Used for ServiceNow OAuth; generic so another OAuth peer can reuse it.
#[derive(Debug, Default)]
pub struct TokenCache {
    slot: tokio::sync::Mutex<Option<CachedToken>>,
    fetches: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct CachedToken {
    pub token: SecretString,
    /// Clock time after which the token must not be used.
    pub refresh_at: Duration,
    generation: u64,
}

impl CachedToken {
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl TokenCache {
    /// Returns the cached token or fetches a new one; concurrent callers wait for the one
    /// fetch in flight instead of starting their own. `fetch` returns the token and its
    /// lifetime; the token is refreshed `margin` before it expires.
    pub async fn get<F, Fut>(
        &self,
        clock: &dyn Clock,
        margin: Duration,
        fetch: F,
    ) -> Result<CachedToken, TicketError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(SecretString, Duration), TicketError>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(cached) = slot.as_ref()
            && clock.now() < cached.refresh_at
        {
            return Ok(cached.clone());
        }
        let (token, lifetime) = fetch().await?;
        // Fetches happen under the slot lock, so the count doubles as the token's generation.
        let generation = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        let cached = CachedToken {
            token,
            refresh_at: clock.now() + lifetime.saturating_sub(margin),
            generation,
        };
        *slot = Some(cached.clone());
        Ok(cached)
    }

    /// Drops the token a request was rejected with, unless another task already replaced it.
    pub async fn invalidate(&self, rejected: &CachedToken) {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().map(|c| c.generation) == Some(rejected.generation) {
            *slot = None;
        }
    }

    /// Drops whatever token is cached, e.g. because the credentials it was fetched with have
    /// rotated: the next [`TokenCache::get`] fetches a new one. Waits for a fetch in flight,
    /// whose token is then dropped too.
    pub async fn clear(&self) {
        *self.slot.lock().await = None;
    }

    /// How many tokens were fetched (for tests and diagnostics).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_setting_parses_numbers_and_refuses_the_rest() {
        assert_eq!(rate_limit_setting("X", None).unwrap(), None);
        assert_eq!(rate_limit_setting("X", Some("  ")).unwrap(), None);
        assert_eq!(rate_limit_setting("X", Some("12.5")).unwrap(), Some(12.5));
        assert_eq!(rate_limit_setting("X", Some("0")).unwrap(), Some(0.0));
        for bad in ["-1", "fast", "NaN", "inf"] {
            let err = rate_limit_setting("JIRA_RATE_LIMIT", Some(bad))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("JIRA_RATE_LIMIT:"), "{bad}: {err}");
        }
    }

    #[test]
    fn jira_field_errors_become_sorted_field_messages() {
        let body = br#"{"errorMessages":["Issue type is unknown"],"errors":{"priority":"Specify the Priority (name)","components":"Component name 'X' is not valid"}}"#;
        assert_eq!(
            describe_error_body(body),
            "Issue type is unknown; components: Component name 'X' is not valid; priority: Specify the Priority (name)"
        );
    }

    #[test]
    fn a_null_servicenow_detail_adds_nothing() {
        let body = br#"{"error":{"message":"Invalid table sn_si_incident","detail":null},"status":"failure"}"#;
        assert_eq!(describe_error_body(body), "Invalid table sn_si_incident");
    }

    #[test]
    fn servicenow_errors_keep_message_and_detail() {
        let body = br#"{"error":{"message":"Invalid table","detail":"Table 'incidnet' does not exist"},"status":"failure"}"#;
        assert_eq!(
            describe_error_body(body),
            "Invalid table: Table 'incidnet' does not exist"
        );
    }

    #[test]
    fn long_bodies_are_cut_to_an_excerpt() {
        let body = "x".repeat(5000);
        let text = describe_error_body(body.as_bytes());
        assert_eq!(text.chars().count(), EXCERPT_LIMIT);
        assert!(text.ends_with('…'));
        assert_eq!(describe_error_body(b"  "), "(empty body)");
        assert_eq!(excerpt("a\nb\r\nc"), "a b  c");
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        // Wed, 21 Oct 2015 07:28:00 GMT is epoch 1445412480: ten seconds after `now`.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn rate_limit_reset_accepts_epoch_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_reset("1700000030", now),
            Some(Duration::from_secs(30))
        );
        // 2023-11-14T22:14:20Z = 1700000060
        assert_eq!(
            parse_reset("2023-11-14T22:14:20Z", now),
            Some(Duration::from_secs(60))
        );
        // Jira's minute precision: 2023-11-14T22:15Z = 1700000100
        assert_eq!(
            parse_reset("2023-11-14T22:15Z", now),
            Some(Duration::from_secs(100))
        );
        assert_eq!(parse_reset("tomorrow", now), None);
    }

    #[test]
    fn reset_header_only_counts_when_throttled() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-ratelimit-reset", "1700000030".parse().unwrap());
        assert_eq!(server_wait(&headers, 503, now), None);
        assert_eq!(
            server_wait(&headers, 429, now),
            Some(Duration::from_secs(30))
        );
        headers.insert("retry-after", "45".parse().unwrap());
        assert_eq!(
            server_wait(&headers, 429, now),
            Some(Duration::from_secs(45))
        );
    }

    #[test]
    fn retriable_statuses() {
        for status in [408, 409, 429, 500, 502, 503, 504] {
            assert!(is_retriable_status(status), "{status}");
        }
        for status in [400, 401, 403, 404, 410, 422] {
            assert!(!is_retriable_status(status), "{status}");
        }
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

    #[tokio::test]
    async fn token_cache_fetches_once_for_concurrent_callers() {
        let clock = ManualClock::new();
        let cache = Arc::new(TokenCache::default());
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let cache = cache.clone();
            let clock = clock.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get(clock.as_ref(), Duration::from_secs(60), || async {
                        tokio::task::yield_now().await;
                        Ok((SecretString::from("t1"), Duration::from_secs(120)))
                    })
                    .await
                    .map(|t| t.token.expose_secret().to_owned())
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), "t1");
        }
        assert_eq!(cache.fetches(), 1);
        clock.advance(Duration::from_secs(61));
        let token = cache
            .get(clock.as_ref(), Duration::from_secs(60), || async {
                Ok((SecretString::from("t2"), Duration::from_secs(120)))
            })
            .await
            .unwrap();
        assert_eq!(token.token.expose_secret(), "t2");
        assert_eq!(cache.fetches(), 2);
    }
}
