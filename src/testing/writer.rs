//! [`RecordingWriter`]: keeps every Security Hub update in memory instead of writing it, and can
//! be told to fail.

use std::sync::Mutex;

use crate::aws::securityhub::{FindingWriter, WorkflowUpdate, WriteError, WriteReport};
use crate::ticket::BoxFuture;

/// Keeps every update in memory instead of calling Security Hub. Can be told to fail, so callers
/// can prove a write-back failure does not undo ticket work.
#[derive(Debug, Default)]
pub struct RecordingWriter {
    written: Mutex<Vec<WorkflowUpdate>>,
    failure: Mutex<Option<WriteError>>,
}

impl RecordingWriter {
    pub fn new() -> RecordingWriter {
        RecordingWriter::default()
    }

    /// Every update accepted so far, oldest first.
    pub fn updates(&self) -> Vec<WorkflowUpdate> {
        self.written
            .lock()
            .map(|w| w.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Makes every following write fail with `error` (`None` to succeed again).
    pub fn fail_with(&self, error: Option<WriteError>) {
        match self.failure.lock() {
            Ok(mut f) => *f = error,
            Err(poisoned) => *poisoned.into_inner() = error,
        }
    }
}

impl FindingWriter for RecordingWriter {
    fn write(
        &self,
        updates: Vec<WorkflowUpdate>,
    ) -> BoxFuture<'_, Result<WriteReport, WriteError>> {
        Box::pin(async move {
            let failure = match self.failure.lock() {
                Ok(f) => f.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            if let Some(error) = failure {
                return Err(error);
            }
            let processed = updates.len();
            match self.written.lock() {
                Ok(mut w) => w.extend(updates),
                Err(poisoned) => poisoned.into_inner().extend(updates),
            }
            Ok(WriteReport {
                processed,
                unprocessed: Vec::new(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Severity, WorkflowStatus};
    use crate::retry::Retryable;

    #[tokio::test]
    async fn recording_writer_keeps_updates_and_can_fail_on_demand() {
        let writer = RecordingWriter::new();
        let target = crate::testing::finding("f-1", Severity::Critical, "2026-11-28T10:00:00Z");
        let update = WorkflowUpdate::new(
            target.write_back,
            "f-1",
            Some(WorkflowStatus::Notified),
            Some(Severity::Critical),
            "Ticket PAY-1",
        );
        let report = writer.write(vec![update.clone()]).await.expect("write");
        assert_eq!(report.processed, 1);
        assert_eq!(writer.updates(), vec![update.clone()]);

        writer.fail_with(Some(WriteError::Transient("throttled".into())));
        let err = writer.write(vec![update]).await.expect_err("told to fail");
        assert!(err.is_transient());
        assert_eq!(writer.updates().len(), 1, "a failed write records nothing");
    }
}
