//! What a replay did, as the CLI prints it.

use std::fmt;

use super::native::NativeMoveTask;

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

    /// One line of counts for the progress display.
    pub(super) fn counts(&self) -> String {
        format!(
            "{} {} · skipped {} · failed {}",
            if self.dry_run {
                "would replay"
            } else {
                "replayed"
            },
            self.replayed,
            self.skipped,
            self.failed.len()
        )
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

#[cfg(test)]
mod tests {
    use super::*;

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
