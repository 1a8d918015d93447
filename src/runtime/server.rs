//! The bridge's own HTTP server: liveness (`/healthz`), readiness (`/readyz`) and Prometheus
//! metrics (`/metrics`). Webhook routes are merged into the same router by their owners:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # async fn demo(state: findings_bridge::runtime::server::ServerState, webhooks: axum::Router) -> std::io::Result<()> {
//! use findings_bridge::runtime::server;
//! let app = server::router(state).merge(webhooks);
//! let addr = "0.0.0.0:8080".parse().expect("literal address");
//! let (bound, task) = server::serve(addr, app, async { /* SIGTERM */ }).await?;
//! # let _ = (bound, task); Ok(()) }
//! ```
//!
//! Merged routes must be `Router<()>` (call `.with_state` first) and must not set a fallback
//! (axum refuses to merge two routers that both have one). [`serve`] applies the request body
//! limit to every route, merged ones included.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use crate::ticket::BoxFuture;

/// Largest request body any route accepts (webhook payloads are a few KiB; Jira's largest are
/// well under this).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Readiness probes get this long before `/readyz` answers 503: a load balancer or ECS health
/// check must never hang on a slow dependency.
pub const DEFAULT_READINESS_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest error text `/readyz` shows per component.
pub const READINESS_ERROR_LIMIT: usize = 200;

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the process can do useful work: mappings loaded, queue reachable, store reachable.
///
/// Each entry is a component name and its state. Error text is shown to whoever can reach the
/// health port, so it must not contain secrets; the server also cuts it to
/// [`READINESS_ERROR_LIMIT`] characters and masks credentials embedded in URLs.
pub trait Readiness: Send + Sync + 'static {
    fn check(&self) -> BoxFuture<'_, Vec<(String, Result<(), String>)>>;
}

/// What the built-in routes need.
#[derive(Clone)]
pub struct ServerState {
    metrics: PrometheusHandle,
    readiness: Arc<dyn Readiness>,
    readiness_timeout: Duration,
}

impl ServerState {
    pub fn new(metrics: PrometheusHandle, readiness: Arc<dyn Readiness>) -> ServerState {
        ServerState {
            metrics,
            readiness,
            readiness_timeout: DEFAULT_READINESS_TIMEOUT,
        }
    }

    /// Overrides [`DEFAULT_READINESS_TIMEOUT`].
    pub fn with_readiness_timeout(mut self, timeout: Duration) -> ServerState {
        self.readiness_timeout = timeout;
        self
    }
}

/// `/healthz`, `/readyz` and `/metrics`. Extend the result with `.merge()` or `.route()`;
/// unknown paths answer 404.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(Arc::new(state))
}

/// Liveness: the process runs and its runtime answers. Deliberately checks nothing else, so a
/// broken dependency makes the task unready, not restarted in a loop.
async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<Arc<ServerState>>) -> Response {
    let checked = tokio::time::timeout(state.readiness_timeout, state.readiness.check()).await;
    let mut components = BTreeMap::new();
    let mut ready = true;
    match checked {
        Ok(results) => {
            for (component, result) in results {
                let text = match result {
                    Ok(()) => "ok".to_owned(),
                    Err(err) => {
                        ready = false;
                        public_error_text(&err)
                    }
                };
                components.insert(component, text);
            }
        }
        Err(_) => {
            ready = false;
            components.insert(
                "readiness".to_owned(),
                format!(
                    "checks did not finish within {} ms",
                    state.readiness_timeout.as_millis()
                ),
            );
        }
    }
    if !ready {
        tracing::debug!(?components, "not ready");
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(components)).into_response()
}

async fn metrics(State(state): State<Arc<ServerState>>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

/// Error text fit for an unauthenticated endpoint: URL credentials masked, control characters
/// flattened (one line in the JSON), at most [`READINESS_ERROR_LIMIT`] characters.
fn public_error_text(text: &str) -> String {
    let masked = mask_url_credentials(text);
    let mut out = String::new();
    for (count, ch) in masked.chars().enumerate() {
        if count == READINESS_ERROR_LIMIT {
            out.push('…');
            break;
        }
        out.push(if ch.is_control() { ' ' } else { ch });
    }
    if out.is_empty() {
        out.push_str("failed");
    }
    out
}

/// `https://user:secret@host/…` → `https://[REDACTED]@host/…`: SDK and HTTP errors often quote
/// the URL they failed on, and a URL may carry credentials.
fn mask_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("[REDACTED]");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Binds `addr` and serves `router` until `shutdown` completes, then lets open requests finish.
/// Returns the bound address (useful with port 0) and the server task, which ends with the
/// server's I/O result. Binding errors are returned before anything is spawned.
pub async fn serve<F>(
    addr: SocketAddr,
    router: Router,
    shutdown: F,
) -> io::Result<(SocketAddr, JoinHandle<io::Result<()>>)>
where
    F: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|err| io::Error::new(err.kind(), format!("bind HTTP server to {addr}: {err}")))?;
    let bound = listener.local_addr()?;
    let app = router.layer(DefaultBodyLimit::max(BODY_LIMIT));
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    tracing::info!(addr = %bound, "HTTP server listening");
    Ok((bound, task))
}

/// Probes `GET http://<addr>/healthz`, for `findings-bridge healthcheck` in a container health
/// check (the image has no curl). `addr` is what the server was told to listen on: an
/// unspecified address (`0.0.0.0`, `::`, or a bare `:8080`) is probed on loopback.
/// What `readyz` says is not ready (a paused connection or rule, an unreachable store), one
/// `component: reason` line each; empty when ready. Read after a healthy `/healthz` so that
/// `healthcheck` can report a paused connection without failing the container's liveness check
/// (restarting a task does not bring back a refused credential).
pub async fn not_ready(addr: &str, timeout: Duration) -> Result<Vec<String>, String> {
    let target = probe_target(addr)?;
    let url = format!("http://{target}/readyz");
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|err| format!("readiness client: {}", error_chain(&err)))?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|err| format!("GET {url}: {}", error_chain(&err)))?;
    let components: BTreeMap<String, String> = response
        .json()
        .await
        .map_err(|err| format!("GET {url}: {}", error_chain(&err)))?;
    Ok(components
        .into_iter()
        .filter(|(_, state)| state != "ok")
        .map(|(component, state)| format!("{component}: {state}"))
        .collect())
}

pub async fn healthcheck(addr: &str, timeout: Duration) -> Result<(), String> {
    let target = probe_target(addr)?;
    let url = format!("http://{target}/healthz");
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|err| format!("health check client: {}", error_chain(&err)))?;
    let response = tokio::time::timeout(timeout, client.get(&url).send())
        .await
        .map_err(|_| format!("GET {url}: no answer within {} ms", timeout.as_millis()))?
        .map_err(|err| format!("GET {url}: {}", error_chain(&err)))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("GET {url}: HTTP {status}"))
    }
}

fn probe_target(addr: &str) -> Result<String, String> {
    let addr = addr.trim();
    if let Some(port) = addr.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("invalid health check address {addr:?}: bad port"))?;
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)).to_string());
    }
    if let Ok(socket) = addr.parse::<SocketAddr>() {
        let ip = match socket.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        return Ok(SocketAddr::new(ip, socket.port()).to_string());
    }
    match addr.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && !host.contains(['/', '@', ' '])
                && port.parse::<u16>().is_ok() =>
        {
            Ok(addr.to_owned())
        }
        _ => Err(format!(
            "invalid health check address {addr:?}: expected HOST:PORT"
        )),
    }
}

/// reqwest's top-level message is generic ("error sending request"); the cause
/// ("connection refused", "operation timed out") is in the source chain.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_masked() {
        let text = "GET https://bridge:hunter2@example.test/api failed; also http://plain.test/x";
        let masked = mask_url_credentials(text);
        assert!(!masked.contains("hunter2"), "{masked}");
        assert!(
            masked.contains("https://[REDACTED]@example.test/api"),
            "{masked}"
        );
        assert!(masked.contains("http://plain.test/x"), "{masked}");
    }

    #[test]
    fn public_error_text_is_one_bounded_line() {
        let long = format!("line one\nline two {}", "x".repeat(1000));
        let text = public_error_text(&long);
        assert!(!text.contains('\n'));
        assert_eq!(text.chars().count(), READINESS_ERROR_LIMIT + 1);
        assert!(text.ends_with('…'));
        assert_eq!(public_error_text(""), "failed");
    }

    #[test]
    fn probe_targets_map_unspecified_addresses_to_loopback() {
        assert_eq!(
            probe_target("0.0.0.0:8080").as_deref(),
            Ok("127.0.0.1:8080")
        );
        assert_eq!(probe_target("[::]:8080").as_deref(), Ok("[::1]:8080"));
        assert_eq!(probe_target(":9000").as_deref(), Ok("127.0.0.1:9000"));
        assert_eq!(probe_target("10.0.0.5:81").as_deref(), Ok("10.0.0.5:81"));
        assert_eq!(
            probe_target("localhost:8080").as_deref(),
            Ok("localhost:8080")
        );
        assert!(probe_target("localhost").is_err());
        assert!(probe_target("host:99999").is_err());
        assert!(probe_target("http://x@y:80").is_err());
        assert!(probe_target(":port").is_err());
    }
}
