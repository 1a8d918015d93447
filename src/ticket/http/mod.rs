//! HTTP resilience shared by every ticket-system client: one place decides what is worth
//! retrying, how long to wait, and how fast a connection may talk to its server.
//!
//! Why it looks like this:
//! - Ticket systems throttle hard (Jira per-endpoint bursts, ServiceNow per-user rate rules), so
//!   every connection has one token bucket shared by all worker tasks, whose rate adapts to the
//!   server's 429s (several replicas share one limit without being told how many they are), and
//!   a `Retry-After` or `X-RateLimit-Reset` from the server always wins over our own backoff.
//! - The pipeline must not hold an SQS message forever: retries stop when the retry budget (total
//!   time) is spent and the caller gets [`TicketError::Transient`], so SQS redelivers later.
//! - Errors travel into logs, DLQ attributes and Security Hub notes; they carry the status and a
//!   short body excerpt with configured secrets scrubbed, never headers.
//! - Time goes through [`Clock`] so backoff, rate limits and token expiry can be tested without
//!   waiting: [`TokioClock`] follows `tokio::time` (and so `start_paused`), [`ManualClock`] is a
//!   virtual clock for tests that also talk to real sockets.
//!
//! Parts: [`config`] (settings and their parsers), [`clock`], [`rate_limit`] (the token bucket),
//! [`admission`] (how many creates may be on their way through the bucket at once),
//! [`retry_after`] (what the server asked us to wait), [`errors`] (what is retriable, error
//! text), [`client`] (the request loop) and [`token`] (a shared OAuth token).

pub mod admission;
pub mod client;
pub mod clock;
pub mod config;
pub mod errors;
pub mod rate_limit;
pub mod retry_after;
pub mod token;

pub use admission::{CreateGate, CreateTurn};
pub use client::{Delivery, HttpClient, HttpResponse};
pub use clock::{Clock, ManualClock, TokioClock};
pub use config::{ClientConfigError, HttpSettings, rate_limit_setting, seconds_setting};
pub use errors::{EXCERPT_LIMIT, describe_error_body, excerpt, is_retriable_status};
pub use rate_limit::RateLimiter;
pub use retry_after::{parse_reset, parse_retry_after, server_wait};
pub use token::{CachedToken, TokenCache};
