//! Prometheus metrics: the recorder `/metrics` renders, the series that start at zero, and one
//! typed helper per series.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::labels::{ApiOutcome, DedupKind, ErrorKind, WebhookOutcome, WritebackResult};
use super::names;

/// Histogram buckets (seconds) for every latency series: 5 ms (a local store) to 30 s (a Jira
/// search under load, or a long rate-limit wait).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often histogram buffers are drained when nobody scrapes `/metrics`.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global Prometheus recorder and returns the handle `/metrics` renders. Idempotent:
/// later calls return the same handle. If some other recorder was installed first (a test
/// harness), the returned handle renders only the descriptions and a warning is logged; metric
/// calls never fail either way.
pub fn install_metrics() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            names::describe_all();
            preregister();
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// Without upkeep, histogram samples accumulate until the next scrape; a replica nobody scrapes
/// would grow without bound. A plain thread, because install may happen before the runtime.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "could not start the metrics upkeep thread");
    }
}

/// Series with a fixed label set start at zero, so `rate()` and `increase()` alerts work from the
/// first scrape instead of only after the first error of each kind.
fn preregister() {
    for kind in ErrorKind::ALL {
        counter!(names::ERRORS, "kind" => kind.as_str()).absolute(0);
        counter!(names::DLQ_MOVED, "kind" => kind.as_str()).absolute(0);
    }
    for kind in DedupKind::ALL {
        counter!(names::DEDUP_HITS, "kind" => kind.as_str()).absolute(0);
    }
    for result in WritebackResult::ALL {
        counter!(names::WRITEBACKS, "result" => result.as_str()).absolute(0);
    }
    counter!(names::FINDINGS_UNROUTED).absolute(0);
    counter!(names::ECHO_NOOPS).absolute(0);
    gauge!(names::INFLIGHT).set(0.0);
    gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// `n` SQS messages received.
pub fn messages_received(n: u64) {
    counter!(names::MESSAGES_RECEIVED).increment(n);
}

/// `n` SQS messages deleted.
pub fn messages_deleted(n: u64) {
    counter!(names::MESSAGES_DELETED).increment(n);
}

/// `n` SQS messages left for SQS to redeliver.
pub fn messages_released(n: u64) {
    counter!(names::MESSAGES_RELEASED).increment(n);
}

/// `schema` is the finding's schema (`asff`, `ocsf`).
pub fn finding_received(schema: impl Into<&'static str>) {
    counter!(names::FINDINGS_RECEIVED, "schema" => schema.into()).increment(1);
}

/// `team` is the mapping file's team name.
pub fn finding_routed(team: &str) {
    counter!(names::FINDINGS_ROUTED, "team" => team.to_owned()).increment(1);
}

pub fn finding_unrouted() {
    counter!(names::FINDINGS_UNROUTED).increment(1);
}

/// `system` is the connection name (`jira`, `servicenow`), `team` the mapping file's team.
pub fn ticket_created(system: &str, team: &str) {
    ticket_counter(names::TICKETS_CREATED, system, team);
}

pub fn ticket_updated(system: &str, team: &str) {
    ticket_counter(names::TICKETS_UPDATED, system, team);
}

pub fn ticket_closed(system: &str, team: &str) {
    ticket_counter(names::TICKETS_CLOSED, system, team);
}

pub fn ticket_reopened(system: &str, team: &str) {
    ticket_counter(names::TICKETS_REOPENED, system, team);
}

fn ticket_counter(name: &'static str, system: &str, team: &str) {
    counter!(name, "system" => system.to_owned(), "team" => team.to_owned()).increment(1);
}

pub fn dedup_hit(kind: DedupKind) {
    counter!(names::DEDUP_HITS, "kind" => kind.as_str()).increment(1);
}

pub fn echo_noop() {
    counter!(names::ECHO_NOOPS).increment(1);
}

pub fn error(kind: ErrorKind) {
    counter!(names::ERRORS, "kind" => kind.as_str()).increment(1);
}

pub fn dlq_moved(kind: ErrorKind) {
    counter!(names::DLQ_MOVED, "kind" => kind.as_str()).increment(1);
}

/// Counts `n` findings of one write-back batch with the same result.
pub fn writeback(result: WritebackResult, n: u64) {
    counter!(names::WRITEBACKS, "result" => result.as_str()).increment(n);
}

/// `status` is the workflow status written (`NEW`, `NOTIFIED`, `RESOLVED`, `SUPPRESSED`).
pub fn sync_status_written(status: impl Into<&'static str>) {
    counter!(names::SYNC_STATUS_WRITTEN, "status" => status.into()).increment(1);
}

/// Counts a ticket status no status map could place (see [`names::SYNC_UNMAPPED_STATUS`]).
pub fn sync_unmapped_status(system: &str, team: &str) {
    ticket_counter(names::SYNC_UNMAPPED_STATUS, system, team);
}

/// Counts how one Detective enrichment ended (see [`names::DETECTIVE_ENRICHMENTS`]).
pub fn detective_enrichment(outcome: &'static str) {
    counter!(names::DETECTIVE_ENRICHMENTS, "outcome" => outcome).increment(1);
}

pub fn webhook_received(system: &str, outcome: WebhookOutcome) {
    counter!(names::WEBHOOKS_RECEIVED, "system" => system.to_owned(), "outcome" => outcome.as_str())
        .increment(1);
}

/// Counts a request whose outcome is unknown (see [`names::OUTCOME_UNKNOWN`]).
pub fn outcome_unknown(system: &str, operation: &'static str) {
    counter!(names::OUTCOME_UNKNOWN, "system" => system.to_owned(), "operation" => operation)
        .increment(1);
}

/// Counts duplicate tickets found for one marker (see [`names::DUPLICATES_DETECTED`]).
pub fn duplicates_detected(system: &str, team: &str, count: u64) {
    counter!(names::DUPLICATES_DETECTED, "system" => system.to_owned(), "team" => team.to_owned())
        .increment(count);
}

/// Counts a create sent without a marker search (see [`names::MARKER_SEARCHES_SKIPPED`]).
pub fn marker_search_skipped(system: &str) {
    counter!(names::MARKER_SEARCHES_SKIPPED, "system" => system.to_owned()).increment(1);
}

/// Sets a connection's up gauge (see [`names::CONNECTION_UP`]).
pub fn connection_up(connection: &str, up: bool) {
    gauge!(names::CONNECTION_UP, "connection" => connection.to_owned()).set(if up {
        1.0
    } else {
        0.0
    });
}

/// Sets a rule's up gauge (see [`names::RULE_UP`]).
pub fn rule_up(team: &str, rule: &str, up: bool) {
    gauge!(names::RULE_UP, "team" => team.to_owned(), "rule" => rule.to_owned()).set(if up {
        1.0
    } else {
        0.0
    });
}

/// Counts messages parked for a paused connection or rule.
pub fn messages_parked(count: u64) {
    counter!(names::MESSAGES_PARKED).increment(count);
}

/// Counts a claim lost mid-work (see [`names::CLAIMS_LOST`]).
pub fn claim_lost(stage: &'static str) {
    counter!(names::CLAIMS_LOST, "stage" => stage).increment(1);
}

/// Records a wait for the connection's client-side rate limiter (`*_RATE_LIMIT`). A server's
/// `Retry-After` is not counted here: its 429 is the `rate_limited` outcome of [`api_latency`].
pub fn rate_limit_wait(system: &str, seconds: f64) {
    histogram!(names::RATE_LIMIT_WAIT, "system" => system.to_owned()).record(seconds);
}

/// Records one external API call. `operation` is a fixed verb of the client (`create`,
/// `search`, `transition`, `receive`, `batch_update`), hence `'static`.
pub fn api_latency(system: &str, operation: &'static str, seconds: f64, outcome: ApiOutcome) {
    histogram!(
        names::API_REQUEST_DURATION,
        "system" => system.to_owned(),
        "operation" => operation,
        "outcome" => outcome.as_str()
    )
    .record(seconds);
}

/// Counts one message as in flight until the guard is dropped, so early returns and panics in a
/// task cannot leave the gauge high.
#[must_use = "the message counts as in flight only while the guard lives"]
pub struct InflightGuard(metrics::Gauge);

/// Marks one message as in flight; see [`InflightGuard`].
pub fn inflight() -> InflightGuard {
    let gauge = gauge!(names::INFLIGHT);
    gauge.increment(1.0);
    InflightGuard(gauge)
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

impl fmt::Debug for InflightGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InflightGuard")
    }
}

/// Sets whether this replica is the status poller (see [`names::SYNC_LEADER`]).
pub fn sync_leader(polls: bool) {
    gauge!(names::SYNC_LEADER).set(if polls { 1.0 } else { 0.0 });
}

/// How long ago the status sync last polled `target` completely (see [`names::SYNC_LAG`]).
pub fn sync_lag(target: &str, seconds: f64) {
    gauge!(names::SYNC_LAG, "connection" => target.to_owned()).set(seconds);
}

/// One open ticket of `team` passed its due date and was escalated (see [`names::SLA_BREACHES`]).
pub fn sla_breach(team: &str) {
    counter!(names::SLA_BREACHES, "team" => team.to_owned()).increment(1);
}

/// Counts a risk acceptance that ran out (see [`names::ACCEPTANCES_EXPIRED`]).
pub fn acceptance_expired(team: &str) {
    counter!(names::ACCEPTANCES_EXPIRED, "team" => team.to_owned()).increment(1);
}

/// Counts one request (attempt) sent to AWS (see [`names::AWS_REQUESTS`]). The SDK names its
/// services and operations with static strings, so the labels are a handful of series.
pub fn aws_request(service: &str, operation: &str) {
    counter!(names::AWS_REQUESTS, "service" => service.to_owned(), "operation" => operation.to_owned())
        .increment(1);
}
