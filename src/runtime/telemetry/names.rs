//! Every series the bridge exports, with its HELP text, in one place. Operators alert on these
//! names: treat them as public API (renaming one is a breaking change).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

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
/// Creates sent without a marker search first because the store vouches for the finding, by
/// `system`.
pub const MARKER_SEARCHES_SKIPPED: &str = "findings_bridge_marker_searches_skipped_total";
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
/// Ticket statuses that no status map and no default could place, by `system` and `team`.
/// Operators alert on it: a custom workflow state nobody mapped means findings whose tickets move
/// never change in Security Hub.
pub const SYNC_UNMAPPED_STATUS: &str = "findings_bridge_sync_unmapped_status_total";
/// Detective enrichments, by `outcome` (`commented`, `not_applicable`, `comment_failed`, or the
/// error kind: `timeout`, `access_denied`, `failed`, `api`).
pub const DETECTIVE_ENRICHMENTS: &str = "findings_bridge_detective_total";

/// 1 while this replica holds the status-sync lease and polls the ticket systems, 0 while
/// another replica does (or none can: the store is unreachable).
pub const SYNC_LEADER: &str = "findings_bridge_sync_leader";
/// Seconds since the status sync last read a poll target (`jira`, `servicenow`,
/// `servicenow:sn_si_incident`) completely and stored its watermark, set by the replica that polls
/// at every attempt; a growing value means ticket changes are not reaching Security Hub.
pub const SYNC_LAG: &str = "findings_bridge_sync_lag_seconds";
/// Open tickets that passed their SLA due date, by `team`: each breach counted once, when the
/// escalation loop handles it (README, "SLA due dates and escalation").
pub const SLA_BREACHES: &str = "findings_bridge_sla_breaches_total";
/// Risk acceptances (a `status_map` entry with `for`) that ran out, by `team`: the finding was set
/// back to NEW and its ticket reopened, by the status-sync leader, once per acceptance.
pub const ACCEPTANCES_EXPIRED: &str = "findings_bridge_acceptances_expired_total";
/// Requests sent to AWS, by `service` (the SDK's name: `SQS`, `DynamoDB`, `SecurityHub`, `Detective`,
/// `Secrets Manager`) and `operation` (the API name, e.g. `ReceiveMessage`), each attempt of a
/// retried call counted: what the worker's CPU and the service quotas pay for.
pub const AWS_REQUESTS: &str = "findings_bridge_aws_requests_total";

/// How a series is exported, for its `# TYPE` and `# HELP` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    /// A histogram of seconds.
    Seconds,
}

/// One exported series: its name (a constant above) and the HELP text `/metrics` shows for it.
#[derive(Debug, Clone, Copy)]
struct Series {
    kind: Kind,
    name: &'static str,
    help: &'static str,
}

impl Series {
    const fn counter(name: &'static str, help: &'static str) -> Series {
        Series {
            kind: Kind::Counter,
            name,
            help,
        }
    }

    const fn gauge(name: &'static str, help: &'static str) -> Series {
        Series {
            kind: Kind::Gauge,
            name,
            help,
        }
    }

    const fn seconds(name: &'static str, help: &'static str) -> Series {
        Series {
            kind: Kind::Seconds,
            name,
            help,
        }
    }
}

/// Every constant above with its HELP text; a test checks that none is missing.
const SERIES: &[Series] = &[
    Series::counter(MESSAGES_RECEIVED, "SQS messages received."),
    Series::counter(
        MESSAGES_DELETED,
        "SQS messages deleted after their ticket work was recorded or they were dead-lettered.",
    ),
    Series::counter(
        MESSAGES_RELEASED,
        "SQS messages left for redelivery after a transient failure.",
    ),
    Series::counter(
        FINDINGS_RECEIVED,
        "Findings decoded from messages, by schema.",
    ),
    Series::counter(FINDINGS_ROUTED, "Findings routed to a team's mapping rule."),
    Series::counter(FINDINGS_UNROUTED, "Findings that matched no mapping rule."),
    Series::counter(TICKETS_CREATED, "Tickets created."),
    Series::counter(TICKETS_UPDATED, "Tickets updated after a severity change."),
    Series::counter(
        TICKETS_CLOSED,
        "Tickets closed because their finding was resolved.",
    ),
    Series::counter(
        TICKETS_REOPENED,
        "Tickets reopened because their finding recurred.",
    ),
    Series::counter(
        DEDUP_HITS,
        "Duplicate work avoided: recovered (ticket found by marker), noop (same fingerprint), stale (older UpdatedAt).",
    ),
    Series::counter(
        ECHO_NOOPS,
        "Imported events caused by the bridge's own Security Hub write-back, ignored.",
    ),
    Series::counter(ERRORS, "Errors by kind."),
    Series::counter(
        DLQ_MOVED,
        "Messages moved to the dead-letter queue, by error kind.",
    ),
    Series::counter(
        WRITEBACKS,
        "Findings written back to Security Hub, by result (processed, unprocessed, failed).",
    ),
    Series::counter(
        SYNC_STATUS_WRITTEN,
        "Workflow statuses written to Security Hub by status sync.",
    ),
    Series::counter(
        WEBHOOKS_RECEIVED,
        "Ticket-system webhooks received, by outcome.",
    ),
    Series::seconds(
        RATE_LIMIT_WAIT,
        "Time spent waiting because a ticket system rate-limited the bridge.",
    ),
    Series::gauge(INFLIGHT, "Messages being processed right now."),
    Series::seconds(
        API_REQUEST_DURATION,
        "Latency of external API calls, by system, operation and outcome.",
    ),
    Series::gauge(
        BUILD_INFO,
        "Always 1; the version label names the running build.",
    ),
    Series::counter(
        OUTCOME_UNKNOWN,
        "Creates and comments whose outcome is unknown; looked for before any retry.",
    ),
    Series::counter(
        DUPLICATES_DETECTED,
        "Duplicate tickets found carrying the marker of a ticket the bridge already follows.",
    ),
    Series::counter(
        MARKER_SEARCHES_SKIPPED,
        "Creates sent without searching for the marker first: the finding is newer than what the store vouches for, and no earlier create of it is pending.",
    ),
    Series::counter(
        CLAIMS_LOST,
        "Claims lost to an expired lease before the work finished, by stage.",
    ),
    Series::gauge(
        CONNECTION_UP,
        "1 while a connection works, 0 while it is paused (credentials or settings refused).",
    ),
    Series::gauge(
        RULE_UP,
        "1 while a rule's target works, 0 while the rule is paused (project, issue type or table gone).",
    ),
    Series::counter(
        MESSAGES_PARKED,
        "Messages re-sent with a delay because a connection or rule they need is paused.",
    ),
    Series::counter(
        SYNC_UNMAPPED_STATUS,
        "Ticket statuses that no status_map entry or default maps to a workflow status, by system and team.",
    ),
    Series::counter(
        DETECTIVE_ENRICHMENTS,
        "Amazon Detective enrichments of new tickets, by outcome (commented, not_applicable, comment_failed, timeout, access_denied, failed, api).",
    ),
    Series::gauge(
        SYNC_LEADER,
        "1 while this replica holds the status-sync lease and polls the ticket systems, 0 otherwise.",
    ),
    Series::gauge(
        SYNC_LAG,
        "Seconds since the status sync last polled a target (connection, or connection:table) completely, by connection; set by the polling replica.",
    ),
    Series::counter(
        SLA_BREACHES,
        "Open tickets that passed their SLA due date, by team; each breach counted once, when it is escalated.",
    ),
    Series::counter(
        ACCEPTANCES_EXPIRED,
        "Risk acceptances that ran out, by team: finding set back to NEW and ticket reopened.",
    ),
    Series::counter(
        AWS_REQUESTS,
        "Requests sent to AWS (each attempt), by service and operation.",
    ),
];

/// Registers the HELP text (and unit) of every series, so `/metrics` describes each one.
pub(super) fn describe_all() {
    for series in SERIES {
        match series.kind {
            Kind::Counter => describe_counter!(series.name, series.help),
            Kind::Gauge => describe_gauge!(series.name, series.help),
            Kind::Seconds => describe_histogram!(series.name, Unit::Seconds, series.help),
        }
    }
}

/// How a series appears on `/metrics` (the Prometheus text format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// One sample name, the series' own (ending in `_total`).
    Counter,
    /// One sample name, the series' own.
    Gauge,
    /// Three sample names: `<name>_bucket` (with `le`), `<name>_sum` and `<name>_count`.
    Histogram,
}

impl Exposition {
    /// The sample names a series of this kind called `name` is exposed under.
    pub fn sample_names(self, name: &str) -> Vec<String> {
        match self {
            Exposition::Counter | Exposition::Gauge => vec![name.to_owned()],
            Exposition::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|suffix| format!("{name}{suffix}"))
                .collect(),
        }
    }
}

/// Every series the bridge exports, with how it is exposed: what dashboards and alert rules are
/// checked against (tests/it/grafana_dashboard.rs), so none keeps a copy of these names.
pub fn exported() -> impl Iterator<Item = (&'static str, Exposition)> {
    SERIES.iter().map(|series| {
        let exposition = match series.kind {
            Kind::Counter => Exposition::Counter,
            Kind::Gauge => Exposition::Gauge,
            Kind::Seconds => Exposition::Histogram,
        };
        (series.name, exposition)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use super::*;

    /// The value of every `pub const NAME: &str = "value";` of this file.
    fn declared_names() -> Vec<String> {
        include_str!("names.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("pub const "))
            .filter_map(|rest| rest.split('"').nth(1))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_name_has_exactly_one_help_line() {
        let described: Vec<&str> = SERIES.iter().map(|s| s.name).collect();
        let unique: HashSet<&str> = described.iter().copied().collect();
        assert_eq!(unique.len(), described.len(), "a series is described twice");
        let declared = declared_names();
        assert!(declared.len() > 20, "{declared:?}");
        for name in &declared {
            assert!(unique.contains(name.as_str()), "no HELP text for {name}");
            assert!(name.starts_with("findings_bridge_"), "{name}");
        }
        assert_eq!(
            declared.len(),
            unique.len(),
            "HELP text for an undeclared series"
        );
        for series in SERIES {
            assert!(!series.help.is_empty(), "{}", series.name);
        }
    }

    /// Metrics are recorded only through the typed helpers of `runtime::telemetry`, whose names
    /// all come from this file: a `counter!`, `gauge!` or `histogram!` anywhere else in `src/`
    /// would export a series nobody described.
    #[test]
    fn series_are_recorded_only_by_telemetry() {
        fn visit(dir: &Path, found: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.ends_with("runtime/telemetry") {
                    continue;
                }
                if path.is_dir() {
                    visit(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    for (i, line) in text.lines().enumerate() {
                        if ["counter!(", "gauge!(", "histogram!("]
                            .iter()
                            .any(|m| line.contains(m))
                        {
                            found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                        }
                    }
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        visit(&src, &mut found);
        assert!(
            found.is_empty(),
            "record these through a runtime::telemetry helper and name them in names.rs:\n{}",
            found.join("\n")
        );
    }
}
