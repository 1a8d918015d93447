//! What a replay is asked to do ([`ReplayOptions`], [`ReplayTarget`]), the peers it needs for
//! that ([`ReplayDeps`]), and the check that the two fit together before anything is received.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::ReplayError;
use super::filter::{Filter, FilterField};
use super::native::NATIVE_MAX_PER_SECOND;
use crate::aws::sqs::Queue;
use crate::finding::Finding;
use crate::mapping::Mappings;
use crate::pipeline::lifecycle::Lifecycle;
use crate::ticket::BoxFuture;

/// The decoder (`finding::decode`), injected like the worker's so tests can use their own.
pub type DecodeFn = fn(&[u8]) -> Result<Vec<crate::finding::Finding>, crate::finding::DecodeError>;

/// The teams routing picks for a finding today. `--match team=…` needs it because a DLQ message
/// does not say which team it was for; [`teams_from_mappings`] builds it from the mapping files.
pub type TeamsFn = Arc<dyn Fn(&Finding) -> Vec<String> + Send + Sync>;

/// Runs one finding through the pipeline for `--process`; `Err` carries the reason shown in the
/// summary. [`process_with_lifecycle`] builds it from the real [`Lifecycle`].
pub type ProcessFn = Arc<dyn Fn(Finding) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

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

pub(super) fn validate(opts: &ReplayOptions, deps: &ReplayDeps) -> Result<(), ReplayError> {
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

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
}
