//! Risk acceptance that expires: a `status_map` entry with a duration
//! (`"Risk Accepted" = { status = "SUPPRESSED", for = "90d" }`) suppresses the finding until then,
//! and the status-sync leader undoes it when the time is up.
//!
//! - **Accepting.** When the decision writes SUPPRESSED through such an entry, the expiry goes
//!   into the store's schedule ([`Store::schedule_acceptance`]) *before* the write, so an
//!   acceptance the store could not schedule is never applied. The write-back note names the
//!   ticket it was accepted in and its status, who accepted (ServiceNow's status read says:
//!   `sys_updated_by`; Jira's needs one more read, its changelog, made here only:
//!   [`StatusSync::attribute`]), why (the resolution the status read carries) and the end
//!   (RFC 3339), leaving out what the ticket system does not say.
//! - **Following the ticket.** A later status that moves to another timed acceptance writes
//!   again with the new date (the schedule entry is replaced); one that suppresses without `for`,
//!   or any other status written back, removes the entry.
//! - **Expiring.** Each poll of the leader (one replica, under the status-sync lease) ends with
//!   [`StatusSync::expire_acceptances`]: for every entry due, if the finding was resolved
//!   meanwhile the entry is only removed; if Security Hub no longer shows the suppression (it was
//!   never applied, or a later ticket status replaced it) likewise; otherwise the finding is set
//!   to NEW with a note, the ticket gets a comment (once: [`comment_once_on`]) and is reopened
//!   (already open is success), and only then is the entry removed — conditionally on the date
//!   acted on, so a re-acceptance that landed meanwhile stays. A crash or a lost lease between
//!   the steps repeats them at the next leader's poll: NEW is not written twice once the store
//!   records it (`status_to_hub`), the comment is found by its reference, the reopen is a no-op.

use chrono::TimeZone;

use super::*;
use crate::aws::securityhub::NOTE_LIMIT;
use crate::mapping::template::{TRUNCATION_MARK, cut_to_limit};
use crate::pipeline::lifecycle::comment_once_on;
use crate::store::{Acceptance, MAX_ACCEPTANCES};

/// How one due acceptance ended.
enum Expiry {
    /// Finding back to NEW, ticket reopened.
    Expired,
    /// The finding was resolved meanwhile: only recorded.
    Settled,
    /// Nothing to undo (no record or ticket any more, or the suppression is gone).
    Superseded,
}

/// The write-back note of an acceptance: where (the ticket and its status), who (when the
/// ticket system says), why (the resolution, when there is one) and until when, e.g.
/// `Risk accepted in Jira SEC-12 (Won't Do) by Jane Doe (resolution: Won't Fix) until
/// 2027-03-01T10:00:00Z; set to SUPPRESSED by …`. What is unknown is left out of the sentence.
/// Who and why are people's text: plain one-line text already ([`crate::ticket::attribution`]),
/// shortened here (the resolution first, then the name) so the note keeps its link within
/// Security Hub's [`NOTE_LIMIT`] characters.
pub(super) fn accepted_note(system: &str, candidate: &Candidate, until: DateTime<Utc>) -> String {
    let note = |by: Option<&str>, why: Option<&str>| {
        format!(
            "Risk accepted in {system} {} ({}){}{} until {}; set to SUPPRESSED by findings-bridge \
             status sync, which sets it back to NEW then. {}",
            candidate.ticket.key,
            candidate.status.name,
            by.map(|n| format!(" by {n}")).unwrap_or_default(),
            why.map(|r| format!(" (resolution: {r})"))
                .unwrap_or_default(),
            until.to_rfc3339_opts(SecondsFormat::Secs, true),
            candidate.ticket.url
        )
    };
    let mut by = candidate.status.changed_by.clone();
    let mut why = candidate.status.resolution.clone();
    for _ in 0..2 {
        let text = note(by.as_deref(), why.as_deref());
        let over = text.chars().count().saturating_sub(NOTE_LIMIT);
        if over == 0 {
            return text;
        }
        // The resolution gives way first, then the name; a fact cut to nothing is left out.
        let fact = if why.is_some() { &mut why } else { &mut by };
        *fact = fact.take().and_then(|f| {
            let keep = f.chars().count().saturating_sub(over);
            (keep > TRUNCATION_MARK.chars().count()).then(|| cut_to_limit(&f, keep).into_owned())
        });
    }
    note(by.as_deref(), why.as_deref())
}

fn expired_note(system: &str, ticket: &TicketRef, until: &str) -> String {
    format!(
        "Risk acceptance in {system} {} expired on {until}; set back to NEW by findings-bridge \
         status sync, which reopens the ticket. {}",
        ticket.key, ticket.url
    )
}

fn expired_comment(until: &str) -> String {
    format!(
        "The risk acceptance of this finding expired on {until}. findings-bridge set the finding \
         back to NEW in Security Hub and reopens this ticket; accept it again to suppress it for \
         another period."
    )
}

impl StatusSync {
    pub(super) fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Puts the candidate's acceptance, lasting `lasts` from now, into the schedule and returns
    /// its end. A full schedule is an error: the suppression is not written and the poll tries
    /// again (the watermark stays).
    pub(super) async fn schedule_acceptance(
        &self,
        candidate: &Candidate,
        lasts: Duration,
    ) -> Result<DateTime<Utc>, StoreError> {
        let until = self.now() + chrono_duration(lasts);
        let acceptance = Acceptance {
            marker: candidate.marker.clone(),
            connection: candidate.connection.clone(),
            until: until.timestamp_millis(),
        };
        if self.store.schedule_acceptance(&acceptance).await? {
            Ok(until)
        } else {
            Err(StoreError::Unavailable(format!(
                "the acceptance schedule holds {MAX_ACCEPTANCES} entries already; {} is not \
                 suppressed until some run out",
                candidate.ticket.key
            )))
        }
    }

    /// Who accepted, when the status read did not say: the one extra read the ticket system
    /// needs for it (Jira's changelog), made only for a timed acceptance about to be written.
    /// Best effort: whatever the read answers (an error, an unknown outcome), the acceptance is
    /// written, and the note leaves out who.
    pub(super) async fn attribute(&self, candidate: &mut Candidate) {
        if candidate.status.changed_by.is_some() {
            return;
        }
        let Some(system) = self.tickets.get(&candidate.connection) else {
            return;
        };
        match system
            .status_changed_by(&candidate.ticket, &candidate.status.name)
            .await
        {
            Ok(by) => candidate.status.changed_by = by,
            Err(e) => {
                tracing::warn!(ticket = %candidate.ticket.key, status = %candidate.status.name, error = %e, "could not read who accepted the risk; the note leaves it out");
            }
        }
    }

    /// After a write-back without an acceptance: a suppression it replaced has nothing left to
    /// expire. Best effort: an entry left behind finds the suppression gone when it is due.
    pub(super) async fn acceptance_ended(&self, pending: &Pending) {
        let was_suppressed =
            pending.record.status_to_hub.as_deref() == Some(WorkflowStatus::Suppressed.as_str());
        if pending.accepted_until.is_some() || !was_suppressed {
            return;
        }
        if let Err(e) = self
            .store
            .clear_acceptance(&pending.record.marker, None)
            .await
        {
            tracing::debug!(marker = %pending.record.marker, error = %e, "could not remove the acceptance's expiry");
        }
    }

    /// Undoes every acceptance that ran out (at most `max_per_tick` a poll). Runs as part of the
    /// leader's poll, so on one replica at a time.
    pub(super) async fn expire_acceptances(&self, report: &mut SyncReport) {
        let now = self.now().timestamp_millis();
        let due = match self
            .store
            .acceptances_due(now, self.config.max_per_tick.max(1))
            .await
        {
            Ok(due) => due,
            Err(e) => {
                telemetry::error(ErrorKind::Store);
                report
                    .errors
                    .push(format!("reading the acceptance schedule: {e}"));
                return;
            }
        };
        for acceptance in due {
            match self.expire(&acceptance).await {
                Ok(Expiry::Expired) => report.acceptances_expired += 1,
                Ok(Expiry::Settled) => report.acceptances_settled += 1,
                Ok(Expiry::Superseded) => {}
                Err(e) => report.errors.push(format!(
                    "{} {}: expiring the risk acceptance (tried again next poll): {e}",
                    acceptance.connection, acceptance.marker
                )),
            }
        }
    }

    async fn expire(&self, acceptance: &Acceptance) -> Result<Expiry, SyncError> {
        let marker = &acceptance.marker;
        let until = Utc
            .timestamp_millis_opt(acceptance.until)
            .single()
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Secs, true);
        let record = self.store.get(marker).await?;
        let Some((record, ticket)) = record.and_then(|r| r.ticket.clone().map(|t| (r, t))) else {
            self.clear_expired(acceptance).await?;
            return Ok(Expiry::Superseded);
        };
        if record.finding_resolved {
            tracing::info!(%marker, ticket = %ticket.key, finding_id = %record.finding_id, until, "risk acceptance ran out after the finding was resolved; nothing to reopen");
            self.clear_expired(acceptance).await?;
            return Ok(Expiry::Settled);
        }
        let shown = record.status_to_hub.as_deref();
        let suppressed = shown == Some(WorkflowStatus::Suppressed.as_str());
        // NEW: this expiry wrote it already, and the comment or reopen after it did not finish.
        let undone = shown == Some(WorkflowStatus::New.as_str());
        if !suppressed && !undone {
            tracing::info!(%marker, ticket = %ticket.key, status = shown, "risk acceptance ran out but Security Hub no longer shows the suppression; nothing to undo");
            self.clear_expired(acceptance).await?;
            return Ok(Expiry::Superseded);
        }
        let system = self
            .tickets
            .get(&acceptance.connection)
            .ok_or_else(|| SyncError::UnknownConnection(acceptance.connection.clone()))?;
        if suppressed {
            let label = system_label(&acceptance.connection);
            let note = expired_note(label, &ticket, &until);
            // A group ticket's acceptance covered every item open then: all go back to NEW.
            let updates: Vec<WorkflowUpdate> = write_targets(&record)
                .into_iter()
                .map(|(write_back, finding_id)| {
                    WorkflowUpdate::new(
                        write_back,
                        finding_id,
                        Some(WorkflowStatus::New),
                        None,
                        &note,
                    )
                })
                .collect();
            let count = updates.len() as u64;
            let written = self.writer.write(updates).await.inspect_err(|_| {
                telemetry::error(ErrorKind::Writeback);
                telemetry::writeback(WritebackResult::Failed, count);
            })?;
            if let Some(refused) = written.unprocessed.first() {
                telemetry::writeback(
                    WritebackResult::Unprocessed,
                    written.unprocessed.len() as u64,
                );
                return Err(SyncError::Write(
                    crate::aws::securityhub::WriteError::Transient(format!(
                        "Security Hub did not apply NEW: {} {}",
                        refused.code, refused.message
                    )),
                ));
            }
            telemetry::writeback(WritebackResult::Processed, written.processed as u64);
            telemetry::sync_status_written(WorkflowStatus::New);
            self.store
                .set_sync_status(marker, None, Some(WorkflowStatus::New.as_str()))
                .await?;
        }
        let event = format!("acceptance-expired:{}", acceptance.until);
        comment_once_on(
            system.as_ref(),
            marker,
            &ticket,
            &event,
            &expired_comment(&until),
        )
        .await?;
        system.reopen(&ticket, "").await?;
        if self.clear_expired(acceptance).await? {
            telemetry::acceptance_expired(&record.team);
            tracing::info!(%marker, ticket = %ticket.key, finding_id = %record.finding_id, team = %record.team, until, "risk acceptance expired: finding set back to NEW, ticket reopened");
        }
        Ok(Expiry::Expired)
    }

    /// Removes the entry if it still holds the date acted on. `Ok(false)`: a re-acceptance
    /// replaced it meanwhile and it stays.
    async fn clear_expired(&self, acceptance: &Acceptance) -> Result<bool, StoreError> {
        let cleared = self
            .store
            .clear_acceptance(&acceptance.marker, Some(acceptance.until))
            .await?;
        if !cleared {
            tracing::info!(marker = %acceptance.marker, "the acceptance was renewed while it expired; the new date stays scheduled");
        }
        Ok(cleared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(changed_by: Option<String>, resolution: Option<String>) -> Candidate {
        Candidate {
            connection: "jira".to_owned(),
            ticket: TicketRef {
                system: "jira".to_owned(),
                key: "SEC-12".to_owned(),
                id: "10012".to_owned(),
                table: None,
                url: "https://acme.atlassian.net/browse/SEC-12".to_owned(),
            },
            marker: Marker::new("appsec", "finding-1"),
            status: TicketStatus {
                name: "Risk Accepted".to_owned(),
                category: "done".to_owned(),
                done: true,
                resolution,
                changed_by,
            },
            updated_at: None,
        }
    }

    fn until() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn the_note_says_who_and_why_when_known_and_leaves_out_what_is_not() {
        let both = candidate(Some("Jane Doe".into()), Some("Won't Fix".into()));
        assert_eq!(
            accepted_note("Jira", &both, until()),
            "Risk accepted in Jira SEC-12 (Risk Accepted) by Jane Doe (resolution: Won't Fix) \
             until 2027-03-01T00:00:00Z; set to SUPPRESSED by findings-bridge status sync, which \
             sets it back to NEW then. https://acme.atlassian.net/browse/SEC-12"
        );
        let why = accepted_note("Jira", &candidate(None, Some("Won't Fix".into())), until());
        assert!(
            why.starts_with(
                "Risk accepted in Jira SEC-12 (Risk Accepted) (resolution: Won't Fix) until "
            ),
            "{why}"
        );
        let who = accepted_note("Jira", &candidate(Some("Jane Doe".into()), None), until());
        assert!(
            who.starts_with("Risk accepted in Jira SEC-12 (Risk Accepted) by Jane Doe until "),
            "{who}"
        );
        let neither = accepted_note("Jira", &candidate(None, None), until());
        assert!(
            neither.starts_with("Risk accepted in Jira SEC-12 (Risk Accepted) until "),
            "{neither}"
        );
        assert!(!neither.contains("unknown"), "{neither}");
    }

    #[test]
    fn long_facts_give_way_so_the_note_keeps_its_link_within_the_limit() {
        let long = |c: &str| Some(c.repeat(600));
        for (by, why) in [
            (long("n"), long("r")),
            (None, long("r")),
            (long("n"), None),
            (Some("Jane Doe".to_owned()), long("r")),
        ] {
            let note = accepted_note("Jira", &candidate(by.clone(), why.clone()), until());
            assert!(note.chars().count() <= NOTE_LIMIT, "{note}");
            assert!(
                note.ends_with("https://acme.atlassian.net/browse/SEC-12"),
                "{note}"
            );
            assert!(note.contains("until 2027-03-01T00:00:00Z;"), "{note}");
            if by.as_deref() == Some("Jane Doe") {
                assert!(
                    note.contains(" by Jane Doe ("),
                    "the resolution gives way first: {note}"
                );
            }
        }
    }
}
