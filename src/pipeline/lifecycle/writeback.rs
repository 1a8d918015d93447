//! The workflow state written back to Security Hub after ticket work: one update per finding,
//! naming its tickets.

use super::*;

/// A workflow update waiting to be written, with what to record once it is.
pub(super) struct PendingWrite {
    pub(super) marker: Marker,
    pub(super) status_from_ticket: Option<String>,
    pub(super) status: Option<WorkflowStatus>,
    pub(super) severity: Option<Severity>,
    pub(super) note: String,
    /// The group whose ticket the note names: its record learns the status too, so status sync
    /// does not write the same status to every item again.
    pub(super) group: Option<Marker>,
}

/// The NOTIFIED write-back naming a ticket, with the severity a rule chose when it differs from
/// the finding's own and the planner's reason for it (`severity_note`: rule and application).
pub(super) fn notified(
    marker: &Marker,
    status_from_ticket: Option<String>,
    finding: &Finding,
    severity: Severity,
    severity_note: Option<&str>,
    ticket: &TicketRef,
) -> PendingWrite {
    let overridden = severity != finding.severity;
    let mut note = format!(
        "Tracked in {} {}: {}",
        ticket.system, ticket.key, ticket.url
    );
    if overridden {
        match severity_note {
            Some(reason) => {
                note.push_str(". ");
                note.push_str(reason);
            }
            None => note.push_str(&format!(
                " (severity set to {severity} by the mapping rule, was {})",
                finding.severity
            )),
        }
    }
    PendingWrite {
        marker: marker.clone(),
        status_from_ticket,
        status: Some(WorkflowStatus::Notified),
        severity: overridden.then_some(severity),
        note,
        group: None,
    }
}

impl Lifecycle {
    /// One `WorkflowUpdate` per finding (Security Hub rejects a batch naming a finding twice),
    /// written after every record is stored. A failure is logged and counted: the tickets exist
    /// and are recorded, and status sync writes the ticket's state later anyway.
    pub(super) async fn write_back(&self, finding: &Finding, writes: Vec<PendingWrite>) {
        if writes.is_empty() {
            return;
        }
        let status = writes.iter().find_map(|w| w.status);
        let severity = writes.iter().find_map(|w| w.severity);
        let note = writes
            .iter()
            .map(|w| w.note.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let update = WorkflowUpdate::new(
            finding.write_back.clone(),
            finding.id.clone(),
            status,
            severity,
            &note,
        );
        let result = self.writer.write(vec![update]).await;
        if result.is_ok() {
            self.health
                .resume(&Subject::Connection(SECURITY_HUB_CONNECTION.to_owned()));
        }
        match result {
            Ok(report) if report.unprocessed.is_empty() => {
                telemetry::writeback(WritebackResult::Processed, report.processed as u64);
                let Some(status) = status else { return };
                for w in &writes {
                    if let Err(e) = self
                        .store
                        .set_sync_status(
                            &w.marker,
                            w.status_from_ticket.as_deref(),
                            Some(status.as_str()),
                        )
                        .await
                    {
                        tracing::warn!(marker = %w.marker, error = %e, "could not record the status written to Security Hub");
                    }
                    if let Some(group) = &w.group
                        && let Err(e) = self
                            .store
                            .set_sync_status(group, None, Some(status.as_str()))
                            .await
                    {
                        tracing::warn!(marker = %group, error = %e, "could not record the status written to Security Hub");
                    }
                }
            }
            Ok(report) => {
                telemetry::writeback(WritebackResult::Processed, report.processed as u64);
                telemetry::writeback(
                    WritebackResult::Unprocessed,
                    report.unprocessed.len() as u64,
                );
                for u in report.unprocessed {
                    tracing::warn!(finding_id = %u.finding_id, code = %u.code, message = %u.message, "Security Hub did not apply the write-back");
                }
            }
            Err(crate::aws::securityhub::WriteError::Refused(reason)) => {
                telemetry::writeback(WritebackResult::Failed, 1);
                telemetry::error(telemetry::ErrorKind::Writeback);
                // Shown in /readyz and the gauge; the next write-back that succeeds resumes it.
                self.health.pause(
                    Subject::Connection(SECURITY_HUB_CONNECTION.to_owned()),
                    &reason,
                    Probe::Passive,
                );
            }
            Err(e) => {
                telemetry::writeback(WritebackResult::Failed, 1);
                telemetry::error(telemetry::ErrorKind::Writeback);
                tracing::warn!(finding_id = %finding.id, error = %e, "write-back to Security Hub failed; the ticket is recorded");
            }
        }
    }
}
