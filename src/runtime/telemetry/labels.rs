//! The fixed label values of the metrics: small enums, so the number of series stays bounded.

use std::fmt;

/// What failed, one name from the lifecycle to the DLQ's `fb-error-kind` attribute to the `kind`
/// label of [`error`](super::error) and [`dlq_moved`](super::dlq_moved).
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
    /// Another worker holds the claim, or a create is settling: waited out, never counted as an
    /// error nor dead-lettered (not in [`ErrorKind::ALL`]).
    Busy,
    /// A connection or rule is paused: the message is parked, never counted as an error nor
    /// dead-lettered (not in [`ErrorKind::ALL`]).
    Paused,
}

impl ErrorKind {
    /// The kinds counted as errors (their series start at zero).
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
            ErrorKind::Busy => "busy",
            ErrorKind::Paused => "paused",
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
