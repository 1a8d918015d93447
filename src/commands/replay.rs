//! `findings-bridge replay`: gives dead-lettered messages another chance once whatever made them
//! fail (a broken template, a missing Jira project, an outage that outlasted the retries) is fixed.
//!
//! Safety first: a DLQ message is deleted only after its send to the target queue (or its
//! processing) succeeded, so a replay that is interrupted, killed or crashes never loses a
//! message — at worst a message is in both queues, and the bridge's dedup makes the second
//! delivery a no-op.
//!
//! Messages the run does not act on (filtered out, failed, dry run, interrupted) stay hidden until
//! the run ends and are then made visible again all at once. Releasing each one at once would make
//! SQS hand the same messages back on the next receive, so a run with many skipped messages would
//! never reach the rest of the queue. If the run dies, they reappear when their visibility timeout
//! runs out.
//!
//! The run ends when `idle_receives` receives in a row bring nothing new. A DLQ that is being
//! written to while the replay runs may therefore not be drained completely: run it again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{DateTime, TimeZone, Utc};
use tokio::time::Instant;

use crate::aws::sqs::{
    DeleteEntry, MAX_BATCH, Queue, QueueError, READ_ATTRIBUTES, ReceivedMessage,
    SENT_TIMESTAMP_ATTRIBUTE,
};
use crate::finding::{DecodeError, Finding};
use crate::mapping::Mappings;
use crate::pipeline::lifecycle::Lifecycle;
use crate::runtime::shutdown::Shutdown;
use crate::ticket::BoxFuture;

/// The decoder (`finding::decode`), injected like the worker's so tests can use their own.
pub type DecodeFn = fn(&[u8]) -> Result<Vec<crate::finding::Finding>, crate::finding::DecodeError>;

/// The teams routing picks for a finding today. `--match team=…` needs it because a DLQ message
/// does not say which team it was for; [`teams_from_mappings`] builds it from the mapping files.
pub type TeamsFn = Arc<dyn Fn(&Finding) -> Vec<String> + Send + Sync>;

/// Runs one finding through the pipeline for `--process`; `Err` carries the reason shown in the
/// summary. [`process_with_lifecycle`] builds it from the real [`Lifecycle`].
pub type ProcessFn = Arc<dyn Fn(Finding) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Prefix of the attributes the bridge adds when it dead-letters a message.
pub const BRIDGE_ATTRIBUTE_PREFIX: &str = "fb-";

/// The attribute the worker writes with the failure's kind (`decode`, `render`, `ticket`, …).
pub const ERROR_KIND_ATTRIBUTE: &str = "fb-error-kind";

/// When the message first failed (RFC 3339), kept across replays by the worker.
pub const FIRST_FAILURE_ATTRIBUTE: &str = "fb-first-failure";

/// SQS limits `MaxNumberOfMessagesPerSecond` of a message move task to 1–500.
pub const NATIVE_MAX_PER_SECOND: i32 = 500;

/// Where replayed messages go.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayTarget {
    /// `--to QUEUE_URL`: send each message back to a queue (usually the source queue).
    Queue(String),
    /// `--process`: run each message's findings through the pipeline in this process.
    Process,
    /// `--native`: let SQS move the messages itself (`StartMessageMoveTask`). `destination` is a
    /// queue URL or ARN; without it SQS sends each message back to the queue it came from.
    Native {
        destination: Option<String>,
        max_per_second: Option<i32>,
    },
}

/// What `findings-bridge replay` was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    /// The DLQ URL.
    pub from: String,
    pub target: ReplayTarget,
    /// `--match`: different fields must all match, values of the same field are alternatives.
    pub filters: Vec<Filter>,
    /// Only messages that first failed at or after this time (`fb-first-failure`, else the time
    /// the message was sent to the DLQ).
    pub since: Option<DateTime<Utc>>,
    /// Only messages that first failed at or before this time.
    pub until: Option<DateTime<Utc>>,
    /// Act on at most this many matching messages (skipped ones do not count).
    pub max: Option<usize>,
    /// At most this many messages replayed per second.
    pub rate: Option<f64>,
    /// Report what would happen; change nothing.
    pub dry_run: bool,
    /// How long received messages stay hidden. Skipped messages are held for the whole run, so
    /// a run longer than this sees them again (recognized, not counted twice).
    pub visibility: Duration,
    /// Long-poll wait of each receive (1–2 s is enough on a queue nobody else is writing to).
    pub wait: Duration,
    /// The run ends after this many receives in a row that bring no new message.
    pub idle_receives: u32,
}

impl ReplayOptions {
    /// Defaults: no filters, no limits, 120 s visibility, 1 s waits, stop after 2 idle receives.
    pub fn new(from: impl Into<String>, target: ReplayTarget) -> ReplayOptions {
        ReplayOptions {
            from: from.into(),
            target,
            filters: Vec::new(),
            since: None,
            until: None,
            max: None,
            rate: None,
            dry_run: false,
            visibility: Duration::from_secs(120),
            wait: Duration::from_secs(1),
            idle_receives: 2,
        }
    }
}

/// What `--match` can select on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FilterField {
    /// The `fb-error-kind` attribute the worker set (`decode`, `render`, `ticket`, `config`, …).
    ErrorKind,
    /// Any finding in the message has this id.
    FindingId,
    /// Routing sends any finding in the message to this team (needs [`TeamsFn`]).
    Team,
    /// Any finding in the message comes from this product (`GuardDuty`; case-insensitive).
    Product,
}

impl FilterField {
    pub const ALL: [FilterField; 4] = [
        FilterField::ErrorKind,
        FilterField::FindingId,
        FilterField::Team,
        FilterField::Product,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FilterField::ErrorKind => "error-kind",
            FilterField::FindingId => "finding-id",
            FilterField::Team => "team",
            FilterField::Product => "product",
        }
    }

    /// Needs the message body decoded into findings.
    fn needs_findings(self) -> bool {
        !matches!(self, FilterField::ErrorKind)
    }
}

impl fmt::Display for FilterField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `--match FIELD=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub field: FilterField,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--match {given:?}: {problem}; expected FIELD=VALUE with FIELD one of error-kind, finding-id, team, product"
)]
pub struct FilterError {
    pub given: String,
    pub problem: &'static str,
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Filter, FilterError> {
        let error = |problem| FilterError {
            given: s.to_owned(),
            problem,
        };
        let (field, value) = s.split_once('=').ok_or_else(|| error("no '='"))?;
        let field = FilterField::ALL
            .into_iter()
            .find(|f| f.as_str() == field.trim())
            .ok_or_else(|| error("unknown field"))?;
        if value.is_empty() {
            return Err(error("empty value"));
        }
        Ok(Filter {
            field,
            value: value.to_owned(),
        })
    }
}

/// Parses `--since`/`--until`: an RFC 3339 timestamp, a date (`2026-11-28`, midnight UTC), or
/// an age before `now` (`30m`, `6h`, `7d`) — the form an operator types after an incident.
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ReplayError> {
    let bad = || {
        ReplayError::Options(format!(
            "{s:?} is not a time: use RFC 3339 (2026-11-28T10:00:00Z), a date (2026-11-28) or an age (30m, 6h, 7d)"
        ))
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| Utc.from_utc_datetime(&t))
            .ok_or_else(bad);
    }
    let split = s.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = s.split_at(split);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let age = match unit {
        "s" => chrono::Duration::try_seconds(number),
        "m" => chrono::Duration::try_minutes(number),
        "h" => chrono::Duration::try_hours(number),
        "d" => chrono::Duration::try_days(number),
        _ => None,
    }
    .filter(|_| number >= 0)
    .ok_or_else(bad)?;
    now.checked_sub_signed(age).ok_or_else(bad)
}

/// Why a replay could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Filter(#[from] FilterError),
    /// Options that contradict each other or a dependency the target needs but was not given.
    #[error("{0}")]
    Options(String),
    #[error("cannot read the DLQ {url}: {source}")]
    Receive {
        url: String,
        #[source]
        source: QueueError,
    },
    /// Every further send would fail the same way (missing queue, access denied).
    #[error("cannot send to {url}: {source}")]
    Send {
        url: String,
        #[source]
        source: QueueError,
    },
    #[error("GetQueueAttributes QueueArn of {url}: {message}")]
    QueueArn { url: String, message: String },
    #[error("StartMessageMoveTask from {source_arn}: {message}")]
    MoveTask { source_arn: String, message: String },
}

/// The SQS move task a `--native` replay started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeMoveTask {
    pub source_arn: String,
    /// `None`: each message goes back to the queue it was dead-lettered from.
    pub destination_arn: Option<String>,
    /// `None` in a dry run (nothing was started).
    pub task_handle: Option<String>,
}

/// What a replay did. The CLI prints it and exits 1 when `failed` is not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Sent / processed and deleted from the DLQ (in a dry run: would have been).
    pub replayed: u64,
    /// Filtered out; left in the DLQ.
    pub skipped: u64,
    /// Left in the DLQ (or, if only the delete failed, in both queues), with the reason.
    pub failed: Vec<(String, String)>,
    pub dry_run: bool,
    /// Stopped early by SIGINT/SIGTERM; the rest of the DLQ was not looked at.
    pub interrupted: bool,
    pub native_task: Option<NativeMoveTask>,
}

impl ReplaySummary {
    pub fn has_failures(&self) -> bool {
        !self.failed.is_empty()
    }
}

impl fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let title = if self.dry_run {
            "DLQ replay (dry run: nothing was changed)"
        } else {
            "DLQ replay"
        };
        writeln!(f, "{title}")?;
        if let Some(task) = &self.native_task {
            writeln!(f, "  SQS message move task from {}", task.source_arn)?;
            writeln!(
                f,
                "  to {}",
                task.destination_arn
                    .as_deref()
                    .unwrap_or("the queues the messages came from")
            )?;
            return match &task.task_handle {
                Some(handle) => writeln!(f, "  task handle: {handle}"),
                None => writeln!(f, "  (not started)"),
            };
        }
        let replayed = if self.dry_run {
            "would replay"
        } else {
            "replayed"
        };
        writeln!(f, "  {replayed:<13}{:>8}", self.replayed)?;
        writeln!(f, "  {:<13}{:>8}", "skipped", self.skipped)?;
        writeln!(f, "  {:<13}{:>8}", "failed", self.failed.len())?;
        if self.interrupted {
            writeln!(
                f,
                "  interrupted: the rest of the DLQ was not looked at; run again to continue"
            )?;
        }
        if !self.failed.is_empty() {
            let width = self
                .failed
                .iter()
                .map(|(id, _)| id.len())
                .max()
                .unwrap_or(0);
            writeln!(f, "failed messages (still in the DLQ):")?;
            for (id, reason) in &self.failed {
                writeln!(f, "  {id:<width$}  {reason}")?;
            }
        }
        Ok(())
    }
}

/// The peers a replay talks to; which ones are needed depends on the target.
#[derive(Clone)]
pub struct ReplayDeps {
    /// The DLQ, built with [`crate::aws::sqs::SqsQueue::reading_all_attributes`] so the `fb-*`
    /// attributes and the producer's own attributes come back.
    pub dlq: Arc<dyn Queue>,
    /// `--to`.
    pub target_queue: Option<Arc<dyn Queue>>,
    /// `--native`.
    pub sqs: Option<aws_sdk_sqs::Client>,
    /// `--process`.
    pub process: Option<ProcessFn>,
    /// Decodes bodies for `--process` and the finding filters.
    pub decode: DecodeFn,
    /// `--match team=…`.
    pub teams: Option<TeamsFn>,
}

impl ReplayDeps {
    /// A DLQ and the real decoder; add what the target needs.
    pub fn new(dlq: Arc<dyn Queue>) -> ReplayDeps {
        ReplayDeps {
            dlq,
            target_queue: None,
            sqs: None,
            process: None,
            decode: crate::finding::decode,
            teams: None,
        }
    }
}

/// `--process` through the real lifecycle. An unrouted finding counts as done, as in the worker.
pub fn process_with_lifecycle(lifecycle: Arc<Lifecycle>) -> ProcessFn {
    Arc::new(move |finding: Finding| {
        let lifecycle = lifecycle.clone();
        Box::pin(async move {
            lifecycle
                .process(&finding)
                .await
                .into_result()
                .map(|_| ())
                .map_err(|e| format!("finding {}: {}: {e}", finding.id, e.kind()))
        })
    })
}

/// `--match team=…` through the mapping files' routing.
pub fn teams_from_mappings(mappings: Arc<Mappings>) -> TeamsFn {
    Arc::new(move |finding: &Finding| {
        mappings
            .route(finding)
            .iter()
            .map(|rule| rule.team.to_string())
            .collect()
    })
}

/// Runs a replay until the DLQ has nothing new, `max` is reached or `shutdown` fires (then it
/// stops after the current message). Returns an error only when the run cannot start or a queue
/// becomes unusable; messages not yet replayed are then still in the DLQ.
pub async fn replay(
    opts: ReplayOptions,
    deps: ReplayDeps,
    shutdown: Shutdown,
) -> anyhow::Result<ReplaySummary> {
    validate(&opts, &deps)?;
    if let ReplayTarget::Native {
        destination,
        max_per_second,
    } = &opts.target
    {
        let client = deps
            .sqs
            .as_ref()
            .ok_or_else(|| ReplayError::Options("--native needs an SQS client".into()))?;
        let task = start_native(
            client,
            &opts.from,
            destination.as_deref(),
            *max_per_second,
            opts.dry_run,
        )
        .await?;
        return Ok(ReplaySummary {
            dry_run: opts.dry_run,
            native_task: Some(task),
            ..ReplaySummary::default()
        });
    }
    let mut run = Run::new(opts, deps);
    let result = run.drain(&shutdown).await;
    run.release_held().await;
    run.progress.finish(&run.summary);
    match result {
        Ok(()) => {
            tracing::info!(
                replayed = run.summary.replayed,
                skipped = run.summary.skipped,
                failed = run.summary.failed.len(),
                dry_run = run.summary.dry_run,
                interrupted = run.summary.interrupted,
                "replay finished"
            );
            Ok(run.summary)
        }
        Err(e) => {
            let summary = &run.summary;
            Err(anyhow::Error::new(e).context(format!(
                "replay stopped after {} replayed, {} skipped, {} failed; the rest is still in the DLQ",
                summary.replayed,
                summary.skipped,
                summary.failed.len()
            )))
        }
    }
}

fn validate(opts: &ReplayOptions, deps: &ReplayDeps) -> Result<(), ReplayError> {
    let invalid = |m: &str| Err(ReplayError::Options(m.to_owned()));
    if let (Some(since), Some(until)) = (opts.since, opts.until)
        && since > until
    {
        return invalid("--since is after --until: no message can match");
    }
    if let Some(rate) = opts.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return invalid("--rate must be a positive number of messages per second");
    }
    match &opts.target {
        ReplayTarget::Native { max_per_second, .. } => {
            if !opts.filters.is_empty()
                || opts.since.is_some()
                || opts.until.is_some()
                || opts.max.is_some()
            {
                return invalid(
                    "--match, --since, --until and --max are not supported with --native: SQS \
                     moves every message of the DLQ",
                );
            }
            if opts.rate.is_some() {
                return invalid(
                    "--rate does not apply to --native; SQS takes a whole number of messages per second (max_per_second)",
                );
            }
            if let Some(n) = max_per_second
                && !(1..=NATIVE_MAX_PER_SECOND).contains(n)
            {
                return invalid("SQS accepts 1 to 500 messages per second for a move task");
            }
            if deps.sqs.is_none() {
                return invalid("--native needs an SQS client");
            }
        }
        ReplayTarget::Queue(url) => {
            if url.trim_end_matches('/') == opts.from.trim_end_matches('/') {
                return invalid(
                    "--to is the DLQ itself: messages would be replayed into the queue they are read from",
                );
            }
            if deps.target_queue.is_none() {
                return invalid("--to needs a target queue");
            }
        }
        ReplayTarget::Process => {
            if deps.process.is_none() {
                return invalid("--process needs the pipeline (a process function)");
            }
        }
    }
    if opts.filters.iter().any(|f| f.field == FilterField::Team) && deps.teams.is_none() {
        return invalid(
            "--match team=… needs the mapping files: a DLQ message does not say its team, routing does",
        );
    }
    Ok(())
}

/// Looks up the DLQ's ARN (and the destination's, if given as a URL) and starts the move task.
async fn start_native(
    client: &aws_sdk_sqs::Client,
    from: &str,
    destination: Option<&str>,
    max_per_second: Option<i32>,
    dry_run: bool,
) -> Result<NativeMoveTask, ReplayError> {
    let source_arn = queue_arn(client, from).await?;
    let destination_arn = match destination {
        Some(d) if d.starts_with("arn:") => Some(d.to_owned()),
        Some(url) => Some(queue_arn(client, url).await?),
        None => None,
    };
    if dry_run {
        tracing::info!(%source_arn, ?destination_arn, "dry run: no message move task started");
        return Ok(NativeMoveTask {
            source_arn,
            destination_arn,
            task_handle: None,
        });
    }
    let output = client
        .start_message_move_task()
        .source_arn(&source_arn)
        .set_destination_arn(destination_arn.clone())
        .set_max_number_of_messages_per_second(max_per_second)
        .send()
        .await
        .map_err(|e| ReplayError::MoveTask {
            source_arn: source_arn.clone(),
            message: DisplayErrorContext(&e).to_string(),
        })?;
    let task_handle = output.task_handle().map(str::to_owned);
    tracing::info!(%source_arn, ?destination_arn, ?task_handle, "SQS message move task started");
    Ok(NativeMoveTask {
        source_arn,
        destination_arn,
        task_handle,
    })
}

async fn queue_arn(client: &aws_sdk_sqs::Client, url: &str) -> Result<String, ReplayError> {
    let output = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| ReplayError::QueueArn {
            url: url.to_owned(),
            message: DisplayErrorContext(&e).to_string(),
        })?;
    output
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| ReplayError::QueueArn {
            url: url.to_owned(),
            message: "the response has no QueueArn".into(),
        })
}

/// What to do with one message.
enum Decision {
    Skip(String),
    Act(Option<Vec<Finding>>),
    /// Matches, but cannot be replayed (`--process` of an undecodable body).
    Fail(String),
}

/// Messages per second, with a burst of one second's worth (at least one message).
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: f64) -> TokenBucket {
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
    fn available(&mut self) -> usize {
        self.refill();
        self.tokens.max(0.0).floor() as usize
    }

    /// How long until one message may go.
    fn until_next(&mut self) -> Duration {
        self.refill();
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    fn take(&mut self) {
        self.tokens -= 1.0;
    }
}

/// A progress bar on a terminal; otherwise a log line every [`LOG_EVERY`] messages or
/// [`LOG_INTERVAL`], so a replay run from a job still shows it is alive.
enum Progress {
    Bar(indicatif::ProgressBar),
    Log { last: Instant, last_seen: u64 },
}

const LOG_EVERY: u64 = 100;
const LOG_INTERVAL: Duration = Duration::from_secs(5);

impl Progress {
    fn new(max: Option<usize>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::Log {
                last: Instant::now(),
                last_seen: 0,
            };
        }
        let bar = match max {
            Some(n) => indicatif::ProgressBar::new(n as u64),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let template = if max.is_some() {
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}"
        } else {
            "{spinner} [{elapsed_precise}] {msg}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress::Bar(bar)
    }

    fn update(&mut self, summary: &ReplaySummary) {
        let acted = summary.replayed + summary.failed.len() as u64;
        let seen = acted + summary.skipped;
        match self {
            Progress::Bar(bar) => {
                bar.set_position(acted);
                bar.set_message(counts(summary));
            }
            Progress::Log { last, last_seen } => {
                if seen >= *last_seen + LOG_EVERY
                    || (seen > *last_seen && last.elapsed() >= LOG_INTERVAL)
                {
                    tracing::info!(
                        replayed = summary.replayed,
                        skipped = summary.skipped,
                        failed = summary.failed.len(),
                        dry_run = summary.dry_run,
                        "replay progress"
                    );
                    *last = Instant::now();
                    *last_seen = seen;
                }
            }
        }
    }

    fn finish(&self, summary: &ReplaySummary) {
        if let Progress::Bar(bar) = self {
            bar.finish_with_message(counts(summary));
        }
    }
}

fn counts(summary: &ReplaySummary) -> String {
    format!(
        "{} {} · skipped {} · failed {}",
        if summary.dry_run {
            "would replay"
        } else {
            "replayed"
        },
        summary.replayed,
        summary.skipped,
        summary.failed.len()
    )
}

struct Run {
    opts: ReplayOptions,
    deps: ReplayDeps,
    /// `--match` values by field.
    filters: BTreeMap<FilterField, Vec<String>>,
    summary: ReplaySummary,
    /// Every message id this run has looked at.
    seen: HashSet<String>,
    /// Messages to give back to the DLQ at the end, with their newest receipt handle.
    held: HashMap<String, String>,
    /// Messages sent or processed (or, in a dry run, that would be).
    acted: usize,
    bucket: Option<TokenBucket>,
    progress: Progress,
}

impl Run {
    fn new(opts: ReplayOptions, deps: ReplayDeps) -> Run {
        let mut filters: BTreeMap<FilterField, Vec<String>> = BTreeMap::new();
        for f in &opts.filters {
            filters.entry(f.field).or_default().push(f.value.clone());
        }
        Run {
            summary: ReplaySummary {
                dry_run: opts.dry_run,
                ..ReplaySummary::default()
            },
            bucket: opts.rate.map(TokenBucket::new),
            progress: Progress::new(opts.max),
            filters,
            seen: HashSet::new(),
            held: HashMap::new(),
            acted: 0,
            opts,
            deps,
        }
    }

    fn remaining(&self) -> usize {
        self.opts
            .max
            .map_or(usize::MAX, |max| max.saturating_sub(self.acted))
    }

    async fn drain(&mut self, shutdown: &Shutdown) -> Result<(), ReplayError> {
        let mut idle = 0;
        let mut receive_failures = 0u32;
        tracing::info!(dlq = %self.deps.dlq.url(), target = ?self.opts.target, dry_run = self.opts.dry_run, "replay started");
        loop {
            if shutdown.is_triggered() {
                self.summary.interrupted = true;
                return Ok(());
            }
            let remaining = self.remaining();
            if remaining == 0 {
                return Ok(());
            }
            let mut want = remaining.min(MAX_BATCH);
            if let Some(bucket) = &mut self.bucket {
                let pause = bucket.until_next();
                if !pause.is_zero() {
                    tokio::select! {
                        _ = shutdown.wait() => continue,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
                // Never receive more than may go now: a received message waiting for its turn
                // would run down its visibility timeout.
                want = want.min(bucket.available().max(1));
            }
            let received = tokio::select! {
                _ = shutdown.wait() => continue,
                r = self.deps.dlq.receive(want, self.opts.wait, self.opts.visibility) => r,
            };
            let messages = match received {
                Ok(messages) => {
                    receive_failures = 0;
                    messages
                }
                Err(source) if source.is_transient() && receive_failures < 5 => {
                    receive_failures += 1;
                    tracing::warn!(error = %source, attempt = receive_failures, "DLQ receive failed; retrying");
                    let pause = Duration::from_secs(1 << receive_failures);
                    tokio::select! {
                        _ = shutdown.wait() => {}
                        _ = tokio::time::sleep(pause) => {}
                    }
                    continue;
                }
                Err(source) => {
                    return Err(ReplayError::Receive {
                        url: self.deps.dlq.url().to_owned(),
                        source,
                    });
                }
            };
            let mut fresh = Vec::with_capacity(messages.len());
            for message in messages {
                if self.seen.contains(&message.message_id) {
                    // Its visibility ran out during the run; the receive hid it again.
                    self.held
                        .insert(message.message_id.clone(), message.receipt_handle.clone());
                } else {
                    fresh.push(message);
                }
            }
            if fresh.is_empty() {
                idle += 1;
                if idle >= self.opts.idle_receives.max(1) {
                    return Ok(());
                }
                continue;
            }
            idle = 0;
            let outcome = self.handle_batch(fresh, shutdown).await;
            self.progress.update(&self.summary);
            outcome?;
        }
    }

    /// Acts on one received batch; the successfully replayed messages are deleted together.
    async fn handle_batch(
        &mut self,
        messages: Vec<ReceivedMessage>,
        shutdown: &Shutdown,
    ) -> Result<(), ReplayError> {
        let mut done: Vec<ReceivedMessage> = Vec::new();
        let mut fatal = None;
        for message in messages {
            if fatal.is_some() || shutdown.is_triggered() || self.remaining() == 0 {
                // Not looked at: back to the DLQ untouched and uncounted.
                self.summary.interrupted |= shutdown.is_triggered();
                self.held
                    .insert(message.message_id.clone(), message.receipt_handle.clone());
                continue;
            }
            self.seen.insert(message.message_id.clone());
            let findings = match self.decide(&message) {
                Decision::Skip(reason) => {
                    tracing::debug!(message_id = %message.message_id, %reason, "skipped");
                    self.summary.skipped += 1;
                    self.hold(&message);
                    continue;
                }
                Decision::Fail(reason) => {
                    self.acted += 1;
                    self.fail(&message, reason);
                    continue;
                }
                Decision::Act(findings) => findings,
            };
            self.acted += 1;
            if let Some(bucket) = &mut self.bucket {
                bucket.take();
            }
            if self.opts.dry_run {
                tracing::info!(message_id = %message.message_id, target = ?self.opts.target, "dry run: would replay");
                self.summary.replayed += 1;
                self.hold(&message);
                continue;
            }
            match self.act(&message, findings).await {
                Ok(()) => done.push(message),
                Err(ActFailure::Message(reason)) => self.fail(&message, reason),
                Err(ActFailure::Fatal(e)) => {
                    self.fail(&message, e.to_string());
                    fatal = Some(e);
                }
            }
        }
        self.delete(done).await;
        match fatal {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn hold(&mut self, message: &ReceivedMessage) {
        self.held
            .insert(message.message_id.clone(), message.receipt_handle.clone());
    }

    fn fail(&mut self, message: &ReceivedMessage, reason: String) {
        tracing::warn!(message_id = %message.message_id, %reason, "not replayed; left in the DLQ");
        self.summary
            .failed
            .push((message.message_id.clone(), reason));
        self.hold(message);
    }

    fn decide(&self, message: &ReceivedMessage) -> Decision {
        if self.opts.since.is_some() || self.opts.until.is_some() {
            let Some(failed_at) = failure_time(message) else {
                return Decision::Skip("no failure or sent time to compare with".into());
            };
            if self.opts.since.is_some_and(|since| failed_at < since) {
                return Decision::Skip(format!("failed at {failed_at}, before --since"));
            }
            if self.opts.until.is_some_and(|until| failed_at > until) {
                return Decision::Skip(format!("failed at {failed_at}, after --until"));
            }
        }
        if let Some(kinds) = self.filters.get(&FilterField::ErrorKind) {
            let kind = message.attributes.get(ERROR_KIND_ATTRIBUTE);
            if !kinds.iter().any(|k| Some(k) == kind) {
                return Decision::Skip(format!("error kind {kind:?} not selected"));
            }
        }
        let filters_need_findings = self.filters.keys().any(|f| f.needs_findings());
        let processing = self.opts.target == ReplayTarget::Process;
        if !filters_need_findings && !processing {
            return Decision::Act(None);
        }
        let findings = match (self.deps.decode)(message.body.as_bytes()) {
            Ok(findings) => findings,
            Err(e) if filters_need_findings => {
                return Decision::Skip(format!("undecodable, so no finding can match: {e}"));
            }
            Err(e) => return Decision::Fail(decode_reason(&e)),
        };
        for (field, values) in &self.filters {
            let matches = match field {
                FilterField::ErrorKind => true,
                FilterField::FindingId => findings.iter().any(|f| values.contains(&f.id)),
                FilterField::Product => findings.iter().any(|f| {
                    values
                        .iter()
                        .any(|v| v.eq_ignore_ascii_case(&f.product_name))
                }),
                FilterField::Team => match &self.deps.teams {
                    Some(teams) => findings
                        .iter()
                        .any(|f| teams(f).iter().any(|t| values.contains(t))),
                    None => false,
                },
            };
            if !matches {
                return Decision::Skip(format!("no finding matches --match {field}"));
            }
        }
        Decision::Act(processing.then_some(findings))
    }

    async fn act(
        &self,
        message: &ReceivedMessage,
        findings: Option<Vec<Finding>>,
    ) -> Result<(), ActFailure> {
        match &self.opts.target {
            ReplayTarget::Queue(_) => {
                let Some(target) = &self.deps.target_queue else {
                    return Err(ActFailure::Message("no target queue".into()));
                };
                let attributes = attributes_to_send(&message.attributes);
                match target.send(&message.body, &attributes).await {
                    Ok(new_id) => {
                        tracing::info!(message_id = %message.message_id, %new_id, target = %target.url(), "sent back");
                        Ok(())
                    }
                    Err(e) if e.is_transient() => Err(ActFailure::Message(format!("send: {e}"))),
                    Err(source) => Err(ActFailure::Fatal(ReplayError::Send {
                        url: target.url().to_owned(),
                        source,
                    })),
                }
            }
            ReplayTarget::Process => {
                let (Some(process), Some(findings)) = (&self.deps.process, findings) else {
                    return Err(ActFailure::Message("nothing to process with".into()));
                };
                // Every finding is tried even after one failed: on the next replay the ones
                // that succeeded are no-ops.
                let mut reasons = Vec::new();
                for finding in findings {
                    if let Err(reason) = process(finding).await {
                        reasons.push(reason);
                    }
                }
                if reasons.is_empty() {
                    tracing::info!(message_id = %message.message_id, "processed");
                    Ok(())
                } else {
                    Err(ActFailure::Message(reasons.join("; ")))
                }
            }
            ReplayTarget::Native { .. } => Err(ActFailure::Message(
                "--native is handled by SQS, not message by message".into(),
            )),
        }
    }

    /// Deletes replayed messages from the DLQ, retrying failed entries once. A message whose
    /// delete still fails is in both queues; a later replay sends it again, which the bridge's
    /// dedup turns into a no-op — so it is reported, not hidden.
    async fn delete(&mut self, done: Vec<ReceivedMessage>) {
        if done.is_empty() {
            return;
        }
        let mut pending: Vec<&ReceivedMessage> = done.iter().collect();
        let mut last_error = String::new();
        for _attempt in 0..2 {
            let entries: Vec<DeleteEntry> = pending
                .iter()
                .enumerate()
                .map(|(i, m)| DeleteEntry {
                    id: i.to_string(),
                    receipt_handle: m.receipt_handle.clone(),
                })
                .collect();
            match self.deps.dlq.delete_batch(&entries).await {
                Ok(failures) => {
                    let failed: HashSet<&str> = failures.iter().map(|f| f.id.as_str()).collect();
                    if let Some(f) = failures.first() {
                        last_error = format!("{}: {}", f.code, f.message);
                    }
                    pending = pending
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| failed.contains(i.to_string().as_str()))
                        .map(|(_, m)| m)
                        .collect();
                }
                Err(e) => last_error = e.to_string(),
            }
            if pending.is_empty() {
                break;
            }
        }
        let undeleted: HashSet<&str> = pending.iter().map(|m| m.message_id.as_str()).collect();
        for message in &done {
            if undeleted.contains(message.message_id.as_str()) {
                self.summary.failed.push((
                    message.message_id.clone(),
                    format!(
                        "replayed, but could not be deleted from the DLQ ({last_error}); a later \
                         replay sends it again, which the bridge ignores as a duplicate"
                    ),
                ));
            } else {
                self.summary.replayed += 1;
            }
        }
    }

    /// Makes every held message visible again at once, so the DLQ looks as it did before the run
    /// (minus what was replayed). If this fails they reappear when their visibility runs out.
    async fn release_held(&mut self) {
        for (message_id, handle) in self.held.drain() {
            if let Err(e) = self
                .deps
                .dlq
                .change_visibility(&handle, Duration::ZERO)
                .await
            {
                tracing::warn!(%message_id, error = %e, "could not make the message visible again; it reappears when its visibility times out");
            }
        }
    }
}

enum ActFailure {
    /// This message failed; go on with the next.
    Message(String),
    /// Every further message would fail the same way: stop the run.
    Fatal(ReplayError),
}

fn decode_reason(e: &DecodeError) -> String {
    format!("decode: {e}")
}

/// When the message first failed: the worker's `fb-first-failure`, else when it reached the DLQ.
fn failure_time(message: &ReceivedMessage) -> Option<DateTime<Utc>> {
    if let Some(t) = message
        .attributes
        .get(FIRST_FAILURE_ATTRIBUTE)
        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
    {
        return Some(t.with_timezone(&Utc));
    }
    message
        .attributes
        .get(SENT_TIMESTAMP_ATTRIBUTE)
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis)
}

/// The attributes a replayed message carries: the producer's own, plus the `fb-*` ones the
/// worker reads back (`fb-first-failure`, so a message that fails again keeps the time it
/// first failed). The error attributes (`fb-error-kind`, `fb-error`, `fb-original-message-id`,
/// `fb-receive-count`) describe the last failure and are stripped; `AWS.*` names are SQS's own.
pub fn attributes_to_send(received: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    received
        .iter()
        .filter(|(name, _)| {
            let bridge = name.starts_with(BRIDGE_ATTRIBUTE_PREFIX);
            let reserved = name.to_ascii_lowercase().starts_with("aws.")
                || name.to_ascii_lowercase().starts_with("amazon.");
            !reserved && (!bridge || READ_ATTRIBUTES.contains(&name.as_str()))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(s: &str) -> Result<Filter, FilterError> {
        s.parse()
    }

    #[test]
    fn filters_parse_every_field_and_reject_bad_syntax_with_the_field_list() {
        assert_eq!(
            filter("error-kind=render"),
            Ok(Filter {
                field: FilterField::ErrorKind,
                value: "render".into()
            })
        );
        assert_eq!(
            filter("finding-id=arn:aws:securityhub:us-east-1:1:finding/a=b")
                .map(|f| (f.field, f.value)),
            Ok((
                FilterField::FindingId,
                "arn:aws:securityhub:us-east-1:1:finding/a=b".into()
            )),
            "only the first '=' separates field and value"
        );
        assert_eq!(
            filter("team=payments").map(|f| f.field),
            Ok(FilterField::Team)
        );
        assert_eq!(
            filter("product=GuardDuty").map(|f| f.field),
            Ok(FilterField::Product)
        );

        for (bad, problem) in [
            ("error-kind", "no '='"),
            ("severity=HIGH", "unknown field"),
            ("team=", "empty value"),
            ("=x", "unknown field"),
        ] {
            let err = filter(bad).expect_err(bad);
            assert_eq!(err.problem, problem, "{bad}");
            let text = err.to_string();
            assert!(text.contains(bad), "{text}");
            assert!(
                text.contains("error-kind, finding-id, team, product"),
                "the error lists the fields: {text}"
            );
        }
    }

    #[test]
    fn times_are_rfc3339_dates_or_ages() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
            .single()
            .unwrap_or_default();
        assert_eq!(
            parse_time("2026-11-27T10:00:00+02:00", now).ok(),
            Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).single()
        );
        assert_eq!(
            parse_time("2026-11-01", now).ok(),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single()
        );
        assert_eq!(
            parse_time("6h", now).ok(),
            Utc.with_ymd_and_hms(2026, 11, 28, 6, 0, 0).single()
        );
        assert_eq!(
            parse_time("7d", now).ok(),
            Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).single()
        );
        for bad in [
            "",
            "h",
            "-3h",
            "3w",
            "yesterday",
            "2026-13-01",
            "99999999999999999d",
        ] {
            let err = parse_time(bad, now).expect_err(bad).to_string();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }

    #[test]
    fn error_attributes_are_stripped_and_the_producers_kept() {
        let received = BTreeMap::from(
            [
                ("fb-error-kind", "render"),
                ("fb-error", "template failed"),
                ("fb-original-message-id", "m-1"),
                ("fb-receive-count", "3"),
                ("fb-first-failure", "2026-11-28T10:00:00Z"),
                ("fb-something-new", "x"),
                ("AWS.SentTimestamp", "1764324000000"),
                ("trace-id", "abc"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let sent = attributes_to_send(&received);
        assert_eq!(
            sent.keys().map(String::as_str).collect::<Vec<_>>(),
            ["fb-first-failure", "trace-id"]
        );
    }

    #[test]
    fn the_failure_time_prefers_the_first_failure_over_the_send_time() {
        let message = |attrs: &[(&str, &str)]| ReceivedMessage {
            message_id: "m".into(),
            receipt_handle: "h".into(),
            body: String::new(),
            receive_count: 1,
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let first = message(&[
            (FIRST_FAILURE_ATTRIBUTE, "2026-11-28T10:00:00Z"),
            (SENT_TIMESTAMP_ATTRIBUTE, "0"),
        ]);
        assert_eq!(
            failure_time(&first),
            Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).single()
        );
        let sent = message(&[(SENT_TIMESTAMP_ATTRIBUTE, "1764324000000")]);
        assert_eq!(
            failure_time(&sent),
            DateTime::from_timestamp_millis(1_764_324_000_000)
        );
        let garbage = message(&[(FIRST_FAILURE_ATTRIBUTE, "last tuesday")]);
        assert_eq!(failure_time(&garbage), None);
    }

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

    #[tokio::test]
    async fn process_with_lifecycle_creates_the_ticket_and_reports_why_it_could_not() {
        use crate::finding::Severity;
        use crate::testing::{
            FakePlanner, FakeTickets, MemoryStore, RecordingWriter, Route, finding, permanent,
        };
        use crate::ticket::TicketSystem;

        let jira = Arc::new(FakeTickets::new("jira"));
        let mut tickets: HashMap<String, Arc<dyn TicketSystem>> = HashMap::new();
        tickets.insert("jira".into(), jira.clone());
        let lifecycle = Lifecycle::new(
            Arc::new(MemoryStore::default()),
            tickets,
            Arc::new(RecordingWriter::new()),
            Arc::new(FakePlanner::new(vec![Route::new(
                "payments",
                &[Severity::High],
            )])),
            "replay-test:1",
        );
        let process = process_with_lifecycle(Arc::new(lifecycle));
        let high = finding("f-1", Severity::High, "2026-11-28T10:00:00Z");

        assert_eq!(process(high.clone()).await, Ok(()));
        assert_eq!(jira.creates(), 1);
        assert_eq!(process(high).await, Ok(()), "a second replay is a no-op");
        assert_eq!(jira.creates(), 1);
        let unrouted = finding("f-2", Severity::Low, "2026-11-28T10:00:00Z");
        assert_eq!(
            process(unrouted).await,
            Ok(()),
            "unrouted is done, as in the worker"
        );

        jira.fail("create", permanent("create"));
        let reason = process(finding("f-3", Severity::High, "2026-11-28T10:00:00Z"))
            .await
            .expect_err("the ticket system refused");
        assert!(reason.starts_with("finding f-3: ticket: "), "{reason}");
    }

    #[test]
    fn the_summary_table_lists_every_failure_with_its_reason() {
        let summary = ReplaySummary {
            replayed: 12,
            skipped: 3,
            failed: vec![
                ("m-1".into(), "decode: not JSON".into()),
                ("message-22".into(), "send: throttled".into()),
            ],
            dry_run: false,
            interrupted: true,
            native_task: None,
        };
        let text = summary.to_string();
        assert!(text.contains("replayed           12"), "{text}");
        assert!(text.contains("skipped             3"), "{text}");
        assert!(text.contains("failed              2"), "{text}");
        assert!(text.contains("m-1         decode: not JSON"), "{text}");
        assert!(text.contains("message-22  send: throttled"), "{text}");
        assert!(text.contains("interrupted"), "{text}");
        assert!(summary.has_failures());

        let dry = ReplaySummary {
            replayed: 4,
            dry_run: true,
            ..ReplaySummary::default()
        };
        let text = dry.to_string();
        assert!(text.contains("dry run"), "{text}");
        assert!(text.contains("would replay        4"), "{text}");
        assert!(!dry.has_failures());
    }
}
