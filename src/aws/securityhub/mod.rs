//! Writing workflow state (and overridden severities) back to Security Hub.
//!
//! This module defines the seam only: [`FindingWriter`], and [`NoopWriter`] (write-back disabled,
//! logs instead); tests use `crate::testing::RecordingWriter`, which keeps what would have been
//! written. The real client on `aws-sdk-securityhub`
//! (`BatchUpdateFindings` for ASFF, `BatchUpdateFindingsV2` for OCSF, batches of ≤100, unprocessed
//! entries retried or reported) comes with the status sync issue and implements this same trait.
//! [`batching::BatchingWriter`] wraps a writer so that concurrent callers' updates share calls.

pub mod batching;
pub mod client;

use crate::finding::{Severity, WorkflowStatus, WriteBackId};
use crate::mapping::template::cut_to_limit;
use crate::ticket::BoxFuture;

/// Security Hub caps a note (`Note.Text`, `Comment`) at 512 characters.
pub const NOTE_LIMIT: usize = 512;

/// One finding's new workflow state, as the bridge wants Security Hub to show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowUpdate {
    pub target: WriteBackId,
    /// For logs and reports; the write itself addresses the finding through `target`.
    pub finding_id: String,
    pub status: Option<WorkflowStatus>,
    /// Set when a rule overrode the finding's severity.
    pub severity: Option<Severity>,
    /// At most [`NOTE_LIMIT`] characters (cut with a visible mark by [`WorkflowUpdate::new`]).
    pub note: String,
}

impl WorkflowUpdate {
    /// Builds an update, cutting the note to what Security Hub accepts so a long ticket URL never
    /// makes the whole batch fail validation.
    pub fn new(
        target: WriteBackId,
        finding_id: impl Into<String>,
        status: Option<WorkflowStatus>,
        severity: Option<Severity>,
        note: &str,
    ) -> WorkflowUpdate {
        WorkflowUpdate {
            target,
            finding_id: finding_id.into(),
            status,
            severity,
            note: cut_to_limit(note, NOTE_LIMIT).into_owned(),
        }
    }
}

/// A finding Security Hub did not update, with its reason (`FindingNotFound`, `ConflictException`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprocessed {
    pub finding_id: String,
    pub code: String,
    pub message: String,
}

/// What happened to a batch of updates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub processed: usize,
    pub unprocessed: Vec<Unprocessed>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// Throttling, timeouts, 5xx: worth trying again later.
    #[error("security hub write-back: transient: {0}")]
    Transient(String),
    /// Access denied, expired or unknown credentials: the connection's fault, not the
    /// findings'; nothing the bridge writes back will succeed until the task role is fixed.
    #[error("security hub write-back refused: {0}")]
    Refused(String),
    /// Invalid input: will not succeed unchanged.
    #[error("security hub write-back: {0}")]
    Permanent(String),
}

impl crate::retry::Retryable for WriteError {
    fn retry(&self) -> crate::retry::Retry {
        match self {
            WriteError::Transient(_) => crate::retry::Retry::LATER,
            WriteError::Refused(_) | WriteError::Permanent(_) => crate::retry::Retry::Permanent,
        }
    }
}

/// Writes workflow updates to Security Hub.
pub trait FindingWriter: Send + Sync {
    fn write(&self, updates: Vec<WorkflowUpdate>)
    -> BoxFuture<'_, Result<WriteReport, WriteError>>;
}

/// Used when write-back is disabled: says in the log what it would have written.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopWriter;

impl FindingWriter for NoopWriter {
    fn write(
        &self,
        updates: Vec<WorkflowUpdate>,
    ) -> BoxFuture<'_, Result<WriteReport, WriteError>> {
        Box::pin(async move {
            for update in &updates {
                tracing::info!(
                    finding_id = %update.finding_id,
                    status = update.status.map(WorkflowStatus::as_str),
                    severity = update.severity.map(Severity::as_str),
                    "write-back disabled; not updating the finding"
                );
            }
            Ok(WriteReport {
                processed: updates.len(),
                unprocessed: Vec::new(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asff_target() -> WriteBackId {
        WriteBackId::Asff {
            id: "arn:finding/1".into(),
            product_arn: "arn:aws:securityhub:us-east-1::product/aws/guardduty".into(),
        }
    }

    #[test]
    fn long_notes_are_cut_to_what_security_hub_accepts() {
        let long = "x".repeat(2000);
        let update = WorkflowUpdate::new(
            asff_target(),
            "f-1",
            Some(WorkflowStatus::Notified),
            None,
            &long,
        );
        assert_eq!(update.note.chars().count(), NOTE_LIMIT);
        assert!(
            update
                .note
                .ends_with(crate::mapping::template::TRUNCATION_MARK)
        );
        let short = WorkflowUpdate::new(asff_target(), "f-1", None, None, "Ticket PAY-1");
        assert_eq!(short.note, "Ticket PAY-1");
    }
}
