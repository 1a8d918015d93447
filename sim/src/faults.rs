//! The middleware in front of every API path: counts requests per endpoint, refuses every
//! credential of a system while `refuse_credentials_ms` says so, injects the configured latency
//! (half before the handler, half after), rate limiting, 429 bursts and 500s before the handler
//! runs, and answers a share of committed creates ambiguously after it ran.

use std::time::Duration;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;
use tokio::time::Instant;

use crate::config::{AmbiguousMode, System};
use crate::conn::ConnHandle;
use crate::securityhub::aws_error;
use crate::state::SharedState;

/// Keeps the ambiguous-create hash independent of the error-rate hash under the same seed.
const AMBIGUOUS_SALT: u64 = 0xa3b1_9c2d_5e6f_7081;

/// A well-mixed 64-bit hash (SplitMix64): deterministic pseudo-randomness without a dependency.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) for a given seed and request number.
fn unit(seed: u64, n: u64) -> f64 {
    // The top 53 bits fill an f64 mantissa exactly.
    (splitmix64(seed ^ splitmix64(n)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Names an endpoint by its route, so counters do not grow one entry per ticket:
/// `/rest/api/3/issue/PROJ-7/transitions` → `/rest/api/3/issue/{key}/transitions`,
/// `/api/now/table/incident/abc` → `/api/now/table/incident/{sys_id}`.
pub(crate) fn endpoint_name(method: &Method, path: &str) -> String {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut named: Vec<&str> = segments.clone();
    match segments.as_slice() {
        ["", "rest", "api", _, "issue", "createmeta", _, rest @ ..] => {
            named[6] = "{project}";
            if rest.len() > 1 {
                named[8] = "{id}";
            }
        }
        ["", "rest", "api", _, "issue", _, ..] => named[5] = "{key}",
        ["", "api", "now", "table", _, _, ..] => named[5] = "{sys_id}",
        _ => {}
    }
    format!("{method} {}", named.join("/"))
}

/// Ticket creates: Jira `POST /rest/api/{2,3}/issue`, ServiceNow `POST /api/now/table/{table}`.
fn is_create(method: &Method, path: &str) -> bool {
    if method != Method::POST {
        return false;
    }
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["", "rest", "api", _, "issue"] | ["", "api", "now", "table", _]
    )
}

/// Called once per committed create: whether to answer it ambiguously, and how. A connection that
/// cannot be cut (a router served without [`crate::Simulator::start`]) gets a 502 instead.
fn ambiguous(st: &SharedState, can_cut: bool) -> Option<(AmbiguousMode, Duration)> {
    let mut guard = st.lock();
    let rate = guard.faults.ambiguous_create_rate;
    let n = guard.create_seq;
    guard.create_seq += 1;
    if rate <= 0.0 || unit(guard.faults.seed ^ AMBIGUOUS_SALT, n) >= rate {
        return None;
    }
    let k = guard.ambiguous_seq;
    guard.ambiguous_seq += 1;
    let mode = match guard.faults.ambiguous_create_mode.nth(k) {
        AmbiguousMode::Close if !can_cut => AmbiguousMode::BadGateway,
        m => m,
    };
    let stats = &mut guard.fault_stats;
    match mode {
        AmbiguousMode::BadGateway | AmbiguousMode::Rotate => stats.ambiguous_502 += 1,
        AmbiguousMode::Close => stats.ambiguous_close += 1,
        AmbiguousMode::Late => stats.ambiguous_late += 1,
    }
    Some((mode, guard.faults.ambiguous_late))
}

/// What a load balancer says when the backend's answer never reached it.
fn bad_gateway() -> Response {
    (
        StatusCode::BAD_GATEWAY,
        [(CONTENT_TYPE, "text/html")],
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
         <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>simulated gateway</center>\r\n\
         </body>\r\n</html>\r\n",
    )
        .into_response()
}

enum Family {
    Jira,
    ServiceNow,
    SecurityHub,
}

fn family(path: &str) -> Family {
    if path.starts_with("/rest/") {
        Family::Jira
    } else if path.starts_with("/findings") {
        Family::SecurityHub
    } else {
        Family::ServiceNow
    }
}

impl Family {
    /// Position of the system's own rate-limit window.
    fn index(&self) -> usize {
        match self {
            Family::Jira => 0,
            Family::ServiceNow => 1,
            Family::SecurityHub => 2,
        }
    }

    /// How the statistics name the system.
    fn name(&self) -> &'static str {
        match self {
            Family::Jira => "jira",
            Family::ServiceNow => "servicenow",
            Family::SecurityHub => "securityhub",
        }
    }

    /// The system whose credentials these paths take (Security Hub's are AWS's: never refused).
    fn system(&self) -> Option<System> {
        match self {
            Family::Jira => Some(System::Jira),
            Family::ServiceNow => Some(System::ServiceNow),
            Family::SecurityHub => None,
        }
    }
}

/// What each system answers a revoked or rotated credential: Jira its JSON error body, the
/// ServiceNow Table API `User Not Authenticated`, ServiceNow's token endpoint `invalid_client`.
fn refused(family: &Family, path: &str) -> Response {
    let body = match family {
        Family::Jira => json!({
            "errorMessages": ["You are not authenticated. Authentication required to perform this operation."],
            "errors": {},
        }),
        Family::ServiceNow if path.starts_with("/oauth_token.do") => json!({
            "error": "invalid_client",
            "error_description": "Client authentication failed",
        }),
        _ => json!({
            "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
            "status": "failure",
        }),
    };
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

/// Whether `family`'s system refuses every credential now; counts the refusal.
fn refusing(st: &SharedState, family: &Family) -> Option<Duration> {
    let system = family.system()?;
    st.credentials_refused(system)?;
    let mut guard = st.lock();
    guard.fault_stats.refused_401 += 1;
    Some(guard.faults.latency)
}

enum Injected {
    RateLimited { retry_after: u32 },
    Burst { retry_after: u32 },
    ServerError,
}

/// Decides the fate of the next request and advances the fault schedule.
fn decide(st: &SharedState, family: &Family) -> (Duration, Option<Injected>) {
    let config = st.config();
    let per_system = config.rate_limit_per_system;
    let mut guard = st.lock();
    let faults = guard.faults.clone();
    if !faults.latency.is_zero() {
        guard.fault_stats.delayed += 1;
    }
    if let Some(shared) = guard.rate_limit {
        let now = Instant::now();
        let window = if per_system { family.index() } else { 0 };
        let limit = match family {
            Family::SecurityHub if per_system => {
                config.securityhub_rate_limit_per_sec.unwrap_or(shared)
            }
            _ => shared,
        };
        let (start, count) = match guard.rate_windows[window] {
            Some((start, count)) if now.duration_since(start) < Duration::from_secs(1) => {
                (start, count)
            }
            _ if config.rate_limit_aligned => {
                let epoch = guard.rate_epoch;
                let whole = Duration::from_secs(now.duration_since(epoch).as_secs());
                (epoch + whole, 0)
            }
            _ => (now, 0),
        };
        guard.rate_windows[window] = Some((start, count + 1));
        if config.rate_limit_aligned && count < limit {
            let second = now.duration_since(guard.rate_epoch).as_secs() as usize;
            let seconds = guard
                .fault_stats
                .rate_accepted_by_second
                .entry(family.name().to_owned())
                .or_default();
            if seconds.len() <= second {
                seconds.resize(second + 1, 0);
            }
            seconds[second] += 1;
        }
        if count >= limit {
            let stats = &mut guard.fault_stats;
            stats.rate_limited_429 += 1;
            *stats
                .rate_limited_429_by_system
                .entry(family.name().to_owned())
                .or_insert(0) += 1;
            return (
                faults.latency,
                Some(Injected::RateLimited { retry_after: 1 }),
            );
        }
    }
    let n = guard.fault_seq;
    guard.fault_seq += 1;
    if let Some(every) = faults.burst_429_every {
        let cycle = u64::from(every) + u64::from(faults.burst_429_len);
        if n % cycle >= u64::from(every) {
            guard.fault_stats.burst_429 += 1;
            return (
                faults.latency,
                Some(Injected::Burst {
                    retry_after: faults.retry_after_secs,
                }),
            );
        }
    }
    if faults.error_rate > 0.0 && unit(faults.seed, n) < faults.error_rate {
        guard.fault_stats.errors_500 += 1;
        return (faults.latency, Some(Injected::ServerError));
    }
    (faults.latency, None)
}

fn too_many(family: &Family, retry_after: u32, reason: &str) -> Response {
    let mut response = match family {
        Family::Jira => (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"errorMessages": ["Rate limit exceeded."], "errors": {}})),
        )
            .into_response(),
        Family::ServiceNow => (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"error": {"message": "Too many requests", "detail": reason}, "status": "failure"})),
        )
            .into_response(),
        Family::SecurityHub => aws_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequestsException",
            "Rate exceeded",
        ),
    };
    let reset = Utc::now() + chrono::Duration::seconds(i64::from(retry_after));
    let headers = response.headers_mut();
    headers.insert("Retry-After", HeaderValue::from(retry_after));
    // Jira sends an ISO timestamp, ServiceNow epoch seconds.
    let reset_value = match family {
        Family::Jira => reset.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        _ => reset.timestamp().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&reset_value) {
        headers.insert("X-RateLimit-Reset", v);
    }
    if let (Family::Jira, Ok(v)) = (family, HeaderValue::from_str(reason)) {
        headers.insert("RateLimit-Reason", v);
    }
    response
}

fn server_error(family: &Family) -> Response {
    match family {
        Family::Jira => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"errorMessages": ["Internal server error (injected by the simulator)"], "errors": {}})),
        )
            .into_response(),
        Family::ServiceNow => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": {"message": "Internal server error", "detail": "injected by the simulator"}, "status": "failure"})),
        )
            .into_response(),
        Family::SecurityHub => aws_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalException",
            "Internal server error (injected by the simulator)",
        ),
    }
}

pub(crate) async fn api_layer(State(st): State<SharedState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let endpoint = endpoint_name(req.method(), &path);
    let create = is_create(req.method(), &path);
    let conn = req
        .extensions()
        .get::<ConnectInfo<ConnHandle>>()
        .map(|c| c.0.clone());
    *st.lock().requests.entry(endpoint.clone()).or_insert(0) += 1;
    let fam = family(&path);
    // A refused credential is refused before anything else happens, rate limits included; the
    // other faults' schedules do not advance.
    if let Some(latency) = refusing(&st, &fam) {
        tracing::info!(%endpoint, "credentials refused: 401");
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        return refused(&fam, &path);
    }
    let (latency, injected) = decide(&st, &fam);
    // A slow server commits somewhere in the middle of the time it takes: half the latency comes
    // before the handler and half after it, so a client that gives up may leave a committed write
    // behind. Injected errors never reach the handler and get all of it up front.
    let before = if injected.is_some() {
        latency
    } else {
        latency / 2
    };
    let after = latency - before;
    if !before.is_zero() {
        tokio::time::sleep(before).await;
    }
    match &injected {
        Some(Injected::RateLimited { .. }) => tracing::info!(%endpoint, "rate limit exceeded: 429"),
        Some(Injected::Burst { .. }) => tracing::info!(%endpoint, "injected 429 burst"),
        Some(Injected::ServerError) => tracing::info!(%endpoint, "injected 500"),
        None => tracing::debug!(%endpoint, "request"),
    }
    match injected {
        Some(Injected::RateLimited { retry_after }) => {
            too_many(&fam, retry_after, "jira-quota-global-based")
        }
        Some(Injected::Burst { retry_after }) => too_many(&fam, retry_after, "jira-burst-based"),
        Some(Injected::ServerError) => server_error(&fam),
        None => {
            let response = next.run(req).await;
            let response = if create {
                answer_create(&st, &endpoint, conn, response).await
            } else {
                response
            };
            if !after.is_zero() {
                tokio::time::sleep(after).await;
            }
            response
        }
    }
}

/// Passes a create's answer on, or, for a committed create chosen to be ambiguous, replaces it.
async fn answer_create(
    st: &SharedState,
    endpoint: &str,
    conn: Option<ConnHandle>,
    response: Response,
) -> Response {
    if response.status() != StatusCode::CREATED {
        return response;
    }
    match ambiguous(st, conn.is_some()) {
        None => response,
        Some((AmbiguousMode::Late, late)) => {
            tracing::info!(%endpoint, late_ms = late.as_millis(), "ambiguous create: committed, answering late");
            tokio::time::sleep(late).await;
            response
        }
        Some((AmbiguousMode::Close, _)) => {
            tracing::info!(%endpoint, "ambiguous create: committed, resetting the connection");
            if let Some(conn) = conn {
                conn.cut();
            }
            // Never written: the connection fails before the first byte of it.
            bad_gateway()
        }
        Some((_, _)) => {
            tracing::info!(%endpoint, "ambiguous create: committed, answering 502");
            bad_gateway()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_named_by_route() {
        assert_eq!(
            endpoint_name(&Method::POST, "/rest/api/3/issue/PROJ-7/transitions"),
            "POST /rest/api/3/issue/{key}/transitions"
        );
        assert_eq!(
            endpoint_name(&Method::POST, "/rest/api/3/issue"),
            "POST /rest/api/3/issue"
        );
        assert_eq!(
            endpoint_name(&Method::PATCH, "/api/now/table/incident/0123"),
            "PATCH /api/now/table/incident/{sys_id}"
        );
        assert_eq!(
            endpoint_name(&Method::GET, "/api/now/table/incident"),
            "GET /api/now/table/incident"
        );
        assert_eq!(
            endpoint_name(&Method::GET, "/rest/api/3/issue/createmeta/PAY/issuetypes"),
            "GET /rest/api/3/issue/createmeta/{project}/issuetypes"
        );
        assert_eq!(
            endpoint_name(
                &Method::GET,
                "/rest/api/2/issue/createmeta/PAY/issuetypes/10001"
            ),
            "GET /rest/api/2/issue/createmeta/{project}/issuetypes/{id}"
        );
    }

    #[test]
    fn creates_are_recognised_by_method_and_route() {
        assert!(is_create(&Method::POST, "/rest/api/3/issue"));
        assert!(is_create(&Method::POST, "/rest/api/2/issue/"));
        assert!(is_create(&Method::POST, "/api/now/table/incident"));
        assert!(!is_create(&Method::POST, "/rest/api/3/issue/SEC-1/comment"));
        assert!(!is_create(&Method::POST, "/rest/api/3/search/jql"));
        assert!(!is_create(&Method::PATCH, "/api/now/table/incident/0123"));
        assert!(!is_create(&Method::GET, "/api/now/table/incident"));
    }

    /// Requests at 0.5 s, 0.9 s and 1.05 s against 2 per second: an aligned window starts
    /// again at 1 s, a floating one (opened by the first request) lasts until 1.5 s.
    async fn third_request_refused(aligned: bool) -> bool {
        let st = SharedState::new(
            crate::SimConfig {
                rate_limit_per_sec: Some(2),
                rate_limit_aligned: aligned,
                ..crate::SimConfig::default()
            },
            "http://127.0.0.1:0".to_owned(),
        );
        let mut refused = Vec::new();
        for at_ms in [500, 400, 150] {
            tokio::time::advance(Duration::from_millis(at_ms)).await;
            refused.push(decide(&st, &Family::Jira).1.is_some());
        }
        assert_eq!(refused[..2], [false, false], "two fit in the first window");
        refused[2]
    }

    #[tokio::test(start_paused = true)]
    async fn aligned_rate_windows_start_on_whole_seconds() {
        assert!(!third_request_refused(true).await);
        assert!(third_request_refused(false).await);
    }

    #[tokio::test(start_paused = true)]
    async fn aligned_windows_count_what_each_second_let_through() {
        let st = SharedState::new(
            crate::SimConfig {
                rate_limit_per_sec: Some(2),
                rate_limit_aligned: true,
                rate_limit_per_system: true,
                ..crate::SimConfig::default()
            },
            "http://127.0.0.1:0".to_owned(),
        );
        // Second 0: three Jira requests (the third refused); second 1: nothing; second 2: one
        // Jira and one ServiceNow request.
        for (at_ms, family) in [
            (100, Family::Jira),
            (100, Family::Jira),
            (100, Family::Jira),
            (1900, Family::Jira),
            (0, Family::ServiceNow),
        ] {
            tokio::time::advance(Duration::from_millis(at_ms)).await;
            decide(&st, &family);
        }
        let seconds = st.lock().fault_stats.rate_accepted_by_second.clone();
        assert_eq!(seconds["jira"], [2, 0, 1]);
        assert_eq!(seconds["servicenow"], [0, 0, 1]);
    }

    #[test]
    fn unit_is_uniform_enough_and_seeded() {
        let hits = (0..10_000).filter(|n| unit(7, *n) < 0.25).count();
        assert!((2_300..2_700).contains(&hits), "{hits}");
        assert_eq!(unit(7, 42), unit(7, 42));
        assert_ne!(unit(7, 42), unit(8, 42));
    }
}
