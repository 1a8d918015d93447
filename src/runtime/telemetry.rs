//! Structured logs and Prometheus metrics.
//!
//! Logs go to stdout: one JSON object per line when stdout is not a terminal (ECS → CloudWatch
//! Logs, where each line becomes one searchable event), readable text on a terminal. Span fields
//! are flattened into every line, so a `finding_id` set on the span that processes a message
//! appears on every line logged while processing it.
//!
//! Metrics: every series the bridge exports is named in [`names`] and recorded through the typed
//! helpers below, so a call site cannot misspell a name or invent a label value. Operators alert
//! on these names; renaming one is a breaking change. Label values come from small fixed sets
//! (enums here) or from configuration (team = mapping file's `team`, system = connection name),
//! never from finding text, so the number of series stays bounded.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

use crate::finding::{Schema, WorkflowStatus};

// ---------------------------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------------------------

/// Filter used when `RUST_LOG` is unset or invalid. The AWS SDK and HTTP stacks log connection
/// chatter at `info`; at the volume of one SQS poll every 20 s per replica that drowns the
/// bridge's own lines, so they are held to `warn` unless `RUST_LOG` asks for more.
pub const DEFAULT_LOG_FILTER: &str = "info,findings_bridge=info,aws_config=warn,\
aws_smithy_runtime=warn,aws_smithy_runtime_api=warn,aws_sdk_sqs=warn,aws_sdk_dynamodb=warn,\
hyper=warn,hyper_util=warn,h2=warn,rustls=warn,reqwest=warn";

/// Environment variable that selects the log format (`json`, `pretty`, `auto`).
pub const LOG_FORMAT_ENV: &str = "BRIDGE_LOG_FORMAT";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON when stdout is not a terminal (containers), pretty text when it is (a developer).
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text, coloured when stdout is a terminal.
    Pretty,
}

/// `BRIDGE_LOG_FORMAT` held a value the bridge does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?}: expected json, pretty or auto")]
pub struct UnknownLogFormat(pub String);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(LogFormat::Auto),
            "json" => Ok(LogFormat::Json),
            "pretty" | "text" => Ok(LogFormat::Pretty),
            _ => Err(UnknownLogFormat(s.to_owned())),
        }
    }
}

impl LogFormat {
    /// Reads [`LOG_FORMAT_ENV`]; unset or empty means [`LogFormat::Auto`]. A misspelt value is an
    /// error rather than a silent fallback, because the operator asked for something specific.
    pub fn from_env() -> Result<LogFormat, UnknownLogFormat> {
        match std::env::var(LOG_FORMAT_ENV) {
            Ok(value) => value.parse(),
            Err(std::env::VarError::NotPresent) => Ok(LogFormat::Auto),
            Err(std::env::VarError::NotUnicode(raw)) => {
                Err(UnknownLogFormat(raw.to_string_lossy().into_owned()))
            }
        }
    }

    /// Decides `Auto` by looking at stdout, where [`init_logging`] writes.
    pub fn resolve(self) -> LogFormat {
        match self {
            LogFormat::Auto if std::io::stdout().is_terminal() => LogFormat::Pretty,
            LogFormat::Auto => LogFormat::Json,
            other => other,
        }
    }
}

/// The filter from `RUST_LOG`, or [`DEFAULT_LOG_FILTER`] when it is unset. An invalid `RUST_LOG`
/// also falls back to the default, and the second value says why so the caller can log it once
/// logging is up.
pub fn env_filter() -> (EnvFilter, Option<String>) {
    match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) if !directives.trim().is_empty() => match EnvFilter::try_new(&directives) {
            Ok(filter) => (filter, None),
            Err(err) => (
                EnvFilter::new(DEFAULT_LOG_FILTER),
                Some(format!(
                    "RUST_LOG={directives:?} is invalid ({err}); using the default filter"
                )),
            ),
        },
        _ => (EnvFilter::new(DEFAULT_LOG_FILTER), None),
    }
}

/// Installs the process-wide subscriber writing to stdout. Calling it again (tests, or a CLI
/// path that initialises twice) keeps the first subscriber and does nothing else.
pub fn init_logging(format: LogFormat) {
    let format = format.resolve();
    let ansi = format == LogFormat::Pretty
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    let (filter, filter_problem) = env_filter();
    let subscriber = build_subscriber(format, filter, std::io::stdout, ansi);
    if tracing::subscriber::set_global_default(subscriber).is_ok()
        && let Some(problem) = filter_problem
    {
        tracing::warn!("{problem}");
    }
}

/// A subscriber in the bridge's format writing to `writer`, never coloured. For tests and for
/// embedding with `tracing::subscriber::with_default`; `Auto` resolves against stdout.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    build_subscriber(format.resolve(), filter, writer, false)
}

fn build_subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Pretty => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(ansi)
                    .with_target(true),
            ),
        ),
        LogFormat::Json | LogFormat::Auto => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(FlatJson)
                    .with_writer(writer),
            ),
        ),
    }
}

/// One flat JSON object per event: span fields from the outermost span inwards, then the event's
/// own fields, then `timestamp`, `level`, `target` (which always win, so a field called `level`
/// cannot forge one). tracing-subscriber's own JSON format nests span fields under `span` and
/// `spans`, which CloudWatch Logs Insights cannot filter on as easily as a top-level key.
struct FlatJson;

impl<S> FormatEvent<S, JsonFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<JsonFields>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&fields.fields)
                {
                    line.extend(map);
                }
                innermost = Some(span.name());
            }
            if let Some(name) = innermost {
                line.insert("span".to_owned(), Value::from(name));
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        line.insert(
            "timestamp".to_owned(),
            Value::from(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        line.insert("level".to_owned(), Value::from(meta.level().as_str()));
        line.insert("target".to_owned(), Value::from(meta.target()));
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Keeps numbers and booleans typed in the JSON line, so Logs Insights can compare them.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value)
            .map(Value::Number)
            .unwrap_or_else(|| Value::from(value.to_string()));
        self.put(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.put(field, Value::from(text));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// Every series the bridge exports. Operators alert on these names: treat them as public API.
pub mod names {
    /// SQS messages received (before decoding).
    pub const MESSAGES_RECEIVED: &str = "findings_bridge_messages_received_total";
    /// SQS messages deleted after their work was recorded (or after moving them to the DLQ).
    pub const MESSAGES_DELETED: &str = "findings_bridge_messages_deleted_total";
    /// SQS messages left for redelivery after a transient failure.
    pub const MESSAGES_RELEASED: &str = "findings_bridge_messages_released_total";
    /// Findings decoded from messages, by `schema` (asff|ocsf).
    pub const FINDINGS_RECEIVED: &str = "findings_bridge_findings_received_total";
    /// Findings routed to a team, by `team`.
    pub const FINDINGS_ROUTED: &str = "findings_bridge_findings_routed_total";
    /// Findings that matched no rule (acknowledged, not an error).
    pub const FINDINGS_UNROUTED: &str = "findings_bridge_findings_unrouted_total";
    /// Tickets created, by `system` and `team`.
    pub const TICKETS_CREATED: &str = "findings_bridge_tickets_created_total";
    /// Tickets updated after a severity change, by `system` and `team`.
    pub const TICKETS_UPDATED: &str = "findings_bridge_tickets_updated_total";
    /// Tickets closed because their finding was resolved, by `system` and `team`.
    pub const TICKETS_CLOSED: &str = "findings_bridge_tickets_closed_total";
    /// Tickets reopened because their finding recurred, by `system` and `team`.
    pub const TICKETS_REOPENED: &str = "findings_bridge_tickets_reopened_total";
    /// Duplicate work avoided, by `kind` (recovered|noop|stale).
    pub const DEDUP_HITS: &str = "findings_bridge_dedup_hits_total";
    /// Imported events caused by the bridge's own write-back, swallowed as no-ops.
    pub const ECHO_NOOPS: &str = "findings_bridge_echo_noops_total";
    /// Errors, by `kind` (decode|render|ticket|store|sqs|writeback|config|webhook).
    pub const ERRORS: &str = "findings_bridge_errors_total";
    /// Messages moved to the dead-letter queue, by error `kind`.
    pub const DLQ_MOVED: &str = "findings_bridge_dlq_moved_total";
    /// Findings written back to Security Hub, by `result` (processed|unprocessed|failed).
    pub const WRITEBACKS: &str = "findings_bridge_writebacks_total";
    /// Workflow statuses written to Security Hub by status sync, by `status`.
    pub const SYNC_STATUS_WRITTEN: &str = "findings_bridge_sync_status_written_total";
    /// Ticket-system webhooks received, by `system` and `outcome` (accepted|rejected|ignored).
    pub const WEBHOOKS_RECEIVED: &str = "findings_bridge_webhooks_received_total";
    /// Time spent waiting for the client-side rate limit of a ticket system, by `system`.
    pub const RATE_LIMIT_WAIT: &str = "findings_bridge_rate_limit_wait_seconds";
    /// Messages being processed right now.
    pub const INFLIGHT: &str = "findings_bridge_inflight_messages";
    /// Latency of calls to external APIs, by `system`, `operation` and `outcome`.
    pub const API_REQUEST_DURATION: &str = "findings_bridge_api_request_duration_seconds";
    /// Always 1; the `version` label tells which build is running.
    pub const BUILD_INFO: &str = "findings_bridge_build_info";
    /// Creates and comments whose outcome is unknown (timeout, cut connection, 5xx after
    /// sending), by `system` and `operation`: never repeated blind, searched for after the
    /// search-consistency window.
    pub const OUTCOME_UNKNOWN: &str = "findings_bridge_outcome_unknown_total";
    /// More than one live ticket carrying one marker, by `system` and `team`: each is a
    /// duplicate the bridge found (and commented on), pointing at the ticket it keeps.
    pub const DUPLICATES_DETECTED: &str = "findings_bridge_duplicate_tickets_total";
    /// Claims lost before the work finished (lease expired and taken over), by `stage`
    /// (`renew`, `intent`, `record`): the work stopped without writing.
    pub const CLAIMS_LOST: &str = "findings_bridge_claims_lost_total";
    /// 1 while a connection (`jira`, `servicenow`, `store`, `securityhub`) works, 0 while it is
    /// paused because its credentials or settings are refused.
    pub const CONNECTION_UP: &str = "findings_bridge_connection_up";
    /// 1 while a rule's target works, 0 while the rule is paused (its project, issue type or
    /// table is gone), by `team` and `rule`. Only rules that were ever paused appear.
    pub const RULE_UP: &str = "findings_bridge_rule_up";
    /// Messages parked (re-sent with a delay) because a connection or rule they need is paused.
    pub const MESSAGES_PARKED: &str = "findings_bridge_messages_parked_total";
}

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
            describe_all();
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

fn describe_all() {
    use names::*;
    describe_counter!(MESSAGES_RECEIVED, "SQS messages received.");
    describe_counter!(
        crate::sync::UNMAPPED_STATUS_METRIC,
        "Ticket statuses that no status_map entry or default maps to a workflow status, by system and team."
    );
    describe_counter!(
        MESSAGES_DELETED,
        "SQS messages deleted after their ticket work was recorded or they were dead-lettered."
    );
    describe_counter!(
        MESSAGES_RELEASED,
        "SQS messages left for redelivery after a transient failure."
    );
    describe_counter!(
        FINDINGS_RECEIVED,
        "Findings decoded from messages, by schema."
    );
    describe_counter!(FINDINGS_ROUTED, "Findings routed to a team's mapping rule.");
    describe_counter!(FINDINGS_UNROUTED, "Findings that matched no mapping rule.");
    describe_counter!(TICKETS_CREATED, "Tickets created.");
    describe_counter!(TICKETS_UPDATED, "Tickets updated after a severity change.");
    describe_counter!(
        TICKETS_CLOSED,
        "Tickets closed because their finding was resolved."
    );
    describe_counter!(
        TICKETS_REOPENED,
        "Tickets reopened because their finding recurred."
    );
    describe_counter!(
        DEDUP_HITS,
        "Duplicate work avoided: recovered (ticket found by marker), noop (same fingerprint), stale (older UpdatedAt)."
    );
    describe_counter!(
        ECHO_NOOPS,
        "Imported events caused by the bridge's own Security Hub write-back, ignored."
    );
    describe_counter!(ERRORS, "Errors by kind.");
    describe_counter!(
        OUTCOME_UNKNOWN,
        "Creates and comments whose outcome is unknown; looked for before any retry."
    );
    describe_counter!(
        DUPLICATES_DETECTED,
        "Duplicate tickets found carrying the marker of a ticket the bridge already follows."
    );
    describe_gauge!(
        CONNECTION_UP,
        "1 while a connection works, 0 while it is paused (credentials or settings refused)."
    );
    describe_gauge!(
        RULE_UP,
        "1 while a rule's target works, 0 while the rule is paused (project, issue type or table gone)."
    );
    describe_counter!(
        MESSAGES_PARKED,
        "Messages re-sent with a delay because a connection or rule they need is paused."
    );
    describe_counter!(
        CLAIMS_LOST,
        "Claims lost to an expired lease before the work finished, by stage."
    );
    describe_counter!(
        DLQ_MOVED,
        "Messages moved to the dead-letter queue, by error kind."
    );
    describe_counter!(
        WRITEBACKS,
        "Findings written back to Security Hub, by result (processed, unprocessed, failed)."
    );
    describe_counter!(
        SYNC_STATUS_WRITTEN,
        "Workflow statuses written to Security Hub by status sync."
    );
    describe_counter!(
        WEBHOOKS_RECEIVED,
        "Ticket-system webhooks received, by outcome."
    );
    describe_histogram!(
        RATE_LIMIT_WAIT,
        Unit::Seconds,
        "Time spent waiting because a ticket system rate-limited the bridge."
    );
    describe_gauge!(INFLIGHT, "Messages being processed right now.");
    describe_histogram!(
        API_REQUEST_DURATION,
        Unit::Seconds,
        "Latency of external API calls, by system, operation and outcome."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label names the running build."
    );
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

/// The stable `kind` label of [`error`] and [`dlq_moved`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A message or finding that cannot be decoded.
    Decode,
    /// A template that fails on this finding.
    Render,
    /// A ticket system call that failed.
    Ticket,
    /// The dedup store failed.
    Store,
    /// An SQS call failed.
    Sqs,
    /// A Security Hub write-back failed.
    Writeback,
    /// Mapping files or settings are wrong (reload, check).
    Config,
    /// A webhook that could not be verified or parsed.
    Webhook,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Decode,
        ErrorKind::Render,
        ErrorKind::Ticket,
        ErrorKind::Store,
        ErrorKind::Sqs,
        ErrorKind::Writeback,
        ErrorKind::Config,
        ErrorKind::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Decode => "decode",
            ErrorKind::Render => "render",
            ErrorKind::Ticket => "ticket",
            ErrorKind::Store => "store",
            ErrorKind::Sqs => "sqs",
            ErrorKind::Writeback => "writeback",
            ErrorKind::Config => "config",
            ErrorKind::Webhook => "webhook",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why work for a (finding, team) was not done again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DedupKind {
    /// A ticket created before a crash was found by its marker instead of created again.
    Recovered,
    /// The finding's ticket-relevant fields did not change.
    Noop,
    /// The finding is older than what the store already has.
    Stale,
}

impl DedupKind {
    pub const ALL: [DedupKind; 3] = [DedupKind::Recovered, DedupKind::Noop, DedupKind::Stale];

    pub fn as_str(self) -> &'static str {
        match self {
            DedupKind::Recovered => "recovered",
            DedupKind::Noop => "noop",
            DedupKind::Stale => "stale",
        }
    }
}

/// What Security Hub did with one finding of a write-back batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WritebackResult {
    /// Listed in `ProcessedFindings`.
    Processed,
    /// Listed in `UnprocessedFindings` (will be retried or reported).
    Unprocessed,
    /// The whole call failed.
    Failed,
}

impl WritebackResult {
    pub const ALL: [WritebackResult; 3] = [
        WritebackResult::Processed,
        WritebackResult::Unprocessed,
        WritebackResult::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WritebackResult::Processed => "processed",
            WritebackResult::Unprocessed => "unprocessed",
            WritebackResult::Failed => "failed",
        }
    }
}

/// What became of a webhook request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookOutcome {
    /// Verified and acted on.
    Accepted,
    /// Bad signature or secret, or unparseable.
    Rejected,
    /// Verified but not about a bridge ticket or a status change.
    Ignored,
}

impl WebhookOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Accepted => "accepted",
            WebhookOutcome::Rejected => "rejected",
            WebhookOutcome::Ignored => "ignored",
        }
    }
}

/// How an external API call ended, for the latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiOutcome {
    /// 2xx (and 404 where "not found" is an answer, like a marker search).
    Ok,
    /// 429 or a throttling error.
    RateLimited,
    /// Another 4xx.
    ClientError,
    /// 5xx.
    ServerError,
    /// No HTTP answer: connect failure, reset, timeout.
    Transport,
}

impl ApiOutcome {
    /// Classifies an HTTP status code.
    pub fn from_status(status: u16) -> ApiOutcome {
        match status {
            429 => ApiOutcome::RateLimited,
            200..=399 => ApiOutcome::Ok,
            400..=499 => ApiOutcome::ClientError,
            _ => ApiOutcome::ServerError,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApiOutcome::Ok => "ok",
            ApiOutcome::RateLimited => "rate_limited",
            ApiOutcome::ClientError => "client_error",
            ApiOutcome::ServerError => "server_error",
            ApiOutcome::Transport => "transport",
        }
    }
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

pub fn finding_received(schema: Schema) {
    counter!(names::FINDINGS_RECEIVED, "schema" => schema.as_str()).increment(1);
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

pub fn sync_status_written(status: WorkflowStatus) {
    counter!(names::SYNC_STATUS_WRITTEN, "status" => status.as_str()).increment(1);
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
