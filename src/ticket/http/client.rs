//! One connection's HTTP client: the request loop that sends, classifies each attempt's outcome,
//! and retries what is worth retrying within the attempts, the retry budget and (for at-most-once
//! requests) the send window, waiting for the rate limiter and for what the server asked.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use secrecy::{ExposeSecret, SecretString};

use super::admission::{CreateGate, CreateTurn};
use super::clock::Clock;
use super::config::{ClientConfigError, HttpSettings};
use super::errors::{
    broken_setting, describe_error_body, excerpt, is_retriable_status, transport_message,
};
use super::rate_limit::RateLimiter;
use super::retry_after::{near_limit, per_issue_limit, server_wait};
use crate::runtime::telemetry;
use crate::ticket::{Blame, TicketError};

/// How the message of a request abandoned unsent behind the rate limit begins
/// ([`TicketError::is_busy`](crate::ticket::TicketError::is_busy)).
pub const NOT_SENT: &str = "not sent: waited past";

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
    /// Creates on their way through `limiter` (see [`super::admission`]).
    creates: Arc<CreateGate>,
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
        let limiter = Arc::new(RateLimiter::adaptive(
            settings.rate_limit_per_sec,
            settings.burst,
            clock.clone(),
        ));
        let creates = CreateGate::new(Arc::clone(&limiter), settings.send_window);
        Ok(HttpClient {
            system,
            client,
            settings: settings.clone(),
            limiter,
            creates,
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

    /// A turn to start a create (see [`super::admission`]); hold it until the create returns.
    pub async fn create_turn(&self) -> CreateTurn {
        self.creates.turn().await
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
        // A request that must be sent by a deadline gives its token up rather than take one it
        // cannot use: a token spent on an abandoned request is a slot of the limit left empty.
        let acquired = match send_by {
            Some(by) => self.limiter.acquire_by(by).await,
            None => {
                self.limiter.acquire().await;
                true
            }
        };
        let waited = queued.elapsed();
        // Only the client-side limiter's wait: a server's 429 shows as outcome `rate_limited` on
        // the request latency, and its `Retry-After` in the retry loop's debug log.
        if waited >= Duration::from_millis(1) {
            telemetry::rate_limit_wait(self.system, waited.as_secs_f64());
        }
        if !acquired || send_by.is_some_and(|by| self.clock.now() > by) {
            // Queued behind the rate limit for too long: whoever holds this request's intent
            // now assumes it can no longer arrive, so it must not.
            return Outcome::Retry {
                status: None,
                message: format!(
                    "{NOT_SENT} the {}s send window for the rate limit",
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
        if status == 429 {
            if !per_issue_limit(response.headers()) {
                self.limiter.refused(server_wait);
            }
        } else if (200..300).contains(&status) {
            self.limiter.accepted(near_limit(response.headers()));
        }
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
