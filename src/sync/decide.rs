//! Deciding, ticket by ticket, whether its status is written to its finding, and writing the
//! decisions in batches.

use super::*;

impl StatusSync {
    /// [`StatusSync::sync_ticket`], also naming the ticket key and finding id when a record
    /// was found (for reports). A refusal is returned, not queued: the caller decides.
    pub(super) async fn sync_one(
        &self,
        connection: &str,
        marker: &Marker,
        ticket_id: Option<&str>,
    ) -> Result<(TicketSyncOutcome, Option<(String, String)>), SyncError> {
        let skipped = |reason| Ok((TicketSyncOutcome::Skipped { reason }, None));
        let system = self
            .tickets
            .get(connection)
            .ok_or_else(|| SyncError::UnknownConnection(connection.to_owned()))?;
        let Some(record) = self.store.get(marker).await? else {
            return skipped(SkipReason::NotBridge);
        };
        let Some(ticket) = record.ticket.clone() else {
            return skipped(SkipReason::NotBridge);
        };
        let names_other = ticket_id.is_some_and(|id| id != ticket.id && id != ticket.key);
        if names_other || ticket.system != connection {
            return skipped(SkipReason::OtherTicket);
        }
        let named = Some((ticket.key.clone(), record.finding_id.clone()));
        let status = system.status(&ticket).await?;
        let candidate = Candidate {
            connection: connection.to_owned(),
            ticket,
            marker: marker.clone(),
            status,
            updated_at: None,
        };
        let pending = match self.decide(candidate, Some(record)).await? {
            Decision::Skip(reason) => return Ok((TicketSyncOutcome::Skipped { reason }, named)),
            Decision::Write(pending) => *pending,
        };
        // A group ticket reaches each open item: written only when every item was; a refused
        // or failed one makes the whole ticket retried (writing a status again is harmless).
        let mut outcome = TicketSyncOutcome::Skipped {
            reason: SkipReason::Unchanged,
        };
        for (_, result) in self.write(per_finding(vec![pending])).await {
            match result {
                WriteResult::Written(status) => {
                    if !matches!(outcome, TicketSyncOutcome::Unprocessed { .. }) {
                        outcome = TicketSyncOutcome::Written { status };
                    }
                }
                WriteResult::Unprocessed { code, message } => {
                    outcome = TicketSyncOutcome::Unprocessed { code, message };
                }
                WriteResult::Failed(message) => {
                    return Err(SyncError::Write(
                        crate::aws::securityhub::WriteError::Transient(message),
                    ));
                }
            }
        }
        Ok((outcome, named))
    }

    /// The heart of it: should this ticket's status be written to its finding?
    pub(super) async fn decide(
        &self,
        mut candidate: Candidate,
        record: Option<Record>,
    ) -> Result<Decision, StoreError> {
        let record = match record {
            Some(r) => r,
            None => match self.store.get(&candidate.marker).await? {
                Some(r) => r,
                None => return Ok(Decision::Skip(SkipReason::NotBridge)),
            },
        };
        let Some(current) = record.ticket.as_ref() else {
            return Ok(Decision::Skip(SkipReason::NotBridge));
        };
        if current.id != candidate.ticket.id || current.system != candidate.connection {
            return Ok(Decision::Skip(SkipReason::OtherTicket));
        }
        let status = &candidate.status;
        if status.done && record.closed_by_bridge {
            self.remember_ticket_status(&record, status).await;
            return Ok(Decision::Skip(SkipReason::ClosedByBridge));
        }
        let mappings = self.mappings.current();
        let rule = mappings.rule(&record.team, &record.rule);
        let kind = rule
            .map(|r| r.ticket.kind())
            .or_else(|| crate::mapping::connection_kind(&candidate.connection))
            .unwrap_or(if current.table.is_some() {
                TargetKind::ServiceNow
            } else {
                TargetKind::Jira
            });
        let empty = StatusMap::default();
        let map = rule.map_or(&empty, |r| &r.status_map);
        let Some(workflow) = map_status(map, kind, status) else {
            self.warn_unmapped(&candidate, &record, kind);
            self.remember_ticket_status(&record, status).await;
            return Ok(Decision::Skip(SkipReason::Unmapped));
        };
        if record.finding_resolved
            && !matches!(
                workflow,
                WorkflowStatus::Resolved | WorkflowStatus::Suppressed
            )
        {
            self.remember_ticket_status(&record, status).await;
            return Ok(Decision::Skip(SkipReason::FindingResolved));
        }
        let acceptance = match workflow {
            WorkflowStatus::Suppressed => acceptance_for(map, kind, status),
            _ => None,
        };
        if record.status_to_hub.as_deref() == Some(workflow.as_str()) {
            // Security Hub shows this status already, but a ticket that moved from one
            // suppressing status to another changes the schedule: a timed acceptance moves the
            // date (written again, so the note says until when), one without `for` ends it.
            let moved = record.status_from_ticket.as_deref() != Some(status.name.as_str());
            if !(moved && acceptance.is_some()) {
                if moved && workflow == WorkflowStatus::Suppressed {
                    self.store.clear_acceptance(&record.marker, None).await?;
                }
                self.remember_ticket_status(&record, status).await;
                return Ok(Decision::Skip(SkipReason::Unchanged));
            }
        }
        let accepted_until = match acceptance {
            Some(lasts) => {
                let until = self.schedule_acceptance(&candidate, lasts).await?;
                self.attribute(&mut candidate).await;
                Some(until)
            }
            None => None,
        };
        Ok(Decision::Write(Box::new(Pending {
            candidate,
            record,
            status: workflow,
            accepted_until,
        })))
    }

    /// Keeps `status_from_ticket` current even when nothing is written, so an operator reading
    /// the store sees where the ticket stands. Best effort: it decides nothing.
    pub(super) async fn remember_ticket_status(&self, record: &Record, status: &TicketStatus) {
        if record.status_from_ticket.as_deref() == Some(status.name.as_str()) {
            return;
        }
        if let Err(e) = self
            .store
            .set_sync_status(&record.marker, Some(&status.name), None)
            .await
        {
            tracing::debug!(marker = %record.marker, error = %e, "could not record the ticket status");
        }
    }

    pub(super) fn warn_unmapped(&self, candidate: &Candidate, record: &Record, kind: TargetKind) {
        telemetry::sync_unmapped_status(&candidate.connection, &record.team);
        let key = format!(
            "{}\n{}\n{}\n{}\n{}",
            candidate.connection,
            record.team,
            record.rule,
            candidate.status.name,
            candidate.status.category
        );
        if self.state().warned.insert(key) {
            let hint = match kind {
                TargetKind::Jira => format!("category:{}", candidate.status.category),
                TargetKind::ServiceNow => format!("state:{}", candidate.status.category),
            };
            tracing::warn!(
                connection = %candidate.connection,
                team = %record.team,
                rule = %record.rule,
                ticket = %candidate.ticket.key,
                status = %candidate.status.name,
                code = %candidate.status.category,
                "ticket status has no workflow mapping; add {:?} or {:?} to the rule's status_map (logged once per status)",
                candidate.status.name,
                hint
            );
        }
    }

    /// Security Hub refuses a batch naming one finding twice, and two teams' tickets of one
    /// finding cannot both decide its workflow: the ticket that changed last wins.
    pub(super) fn one_per_finding(
        &self,
        pendings: Vec<Pending>,
        report: &mut SyncReport,
        handled: &mut Vec<Candidate>,
    ) -> Vec<Pending> {
        let mut winners: Vec<Pending> = Vec::with_capacity(pendings.len());
        let mut index: HashMap<String, usize> = HashMap::new();
        for pending in pendings {
            let finding = pending.record.finding_id.clone();
            match index.get(&finding) {
                Some(&i) => {
                    let newer =
                        pending.candidate.updated_time() > winners[i].candidate.updated_time();
                    let loser = if newer {
                        std::mem::replace(&mut winners[i], pending)
                    } else {
                        pending
                    };
                    tracing::info!(
                        finding_id = %finding,
                        ticket = %loser.candidate.ticket.key,
                        "finding has tickets of several teams; the ticket that changed last decides its workflow"
                    );
                    report.skip(SkipReason::Superseded);
                    handled.push(loser.candidate);
                }
                None => {
                    index.insert(finding, winners.len());
                    winners.push(pending);
                }
            }
        }
        winners
    }

    /// Writes in batches of at most `batch`, then records what Security Hub applied.
    pub(super) async fn write(&self, pendings: Vec<Pending>) -> Vec<(Pending, WriteResult)> {
        let mut results = Vec::with_capacity(pendings.len());
        let mut recorded_markers: HashSet<Marker> = HashSet::new();
        let mut rest = pendings.into_iter().peekable();
        while rest.peek().is_some() {
            let batch: Vec<Pending> = rest.by_ref().take(self.config.batch_size()).collect();
            let updates = batch.iter().map(workflow_update).collect::<Vec<_>>();
            match self.writer.write(updates).await {
                Ok(written) => {
                    let refused: HashMap<&str, (&str, &str)> = written
                        .unprocessed
                        .iter()
                        .map(|u| (u.finding_id.as_str(), (u.code.as_str(), u.message.as_str())))
                        .collect();
                    let mut processed = 0;
                    let mut batch_results = Vec::with_capacity(batch.len());
                    for pending in batch {
                        match refused.get(pending.record.finding_id.as_str()) {
                            Some((code, message)) => {
                                tracing::warn!(
                                    finding_id = %pending.record.finding_id,
                                    ticket = %pending.candidate.ticket.key,
                                    code,
                                    message,
                                    "Security Hub did not apply the ticket status; retrying next poll"
                                );
                                let result = WriteResult::Unprocessed {
                                    code: (*code).to_owned(),
                                    message: (*message).to_owned(),
                                };
                                batch_results.push((pending, result));
                            }
                            None => {
                                processed += 1;
                                // A group ticket's items share its record: recorded once.
                                let first = recorded_markers.insert(pending.record.marker.clone());
                                let result = self.recorded(&pending, first).await;
                                batch_results.push((pending, result));
                            }
                        }
                    }
                    telemetry::writeback(WritebackResult::Processed, processed);
                    telemetry::writeback(WritebackResult::Unprocessed, refused.len() as u64);
                    results.extend(batch_results);
                }
                Err(e) => {
                    telemetry::error(ErrorKind::Writeback);
                    telemetry::writeback(WritebackResult::Failed, batch.len() as u64);
                    tracing::warn!(error = %e, findings = batch.len(), "status write-back failed; the next poll tries again");
                    let message = e.to_string();
                    results.extend(
                        batch
                            .into_iter()
                            .map(|p| (p, WriteResult::Failed(message.clone()))),
                    );
                }
            }
        }
        results
    }

    /// Records a status Security Hub applied. If the store write fails the status was still
    /// written; the next poll finds `status_to_hub` stale and writes the same state again, which
    /// is harmless.
    ///
    /// `first`: the first write of this record in this call (the items of a group ticket share
    /// one record; only the first stores what was written).
    pub(super) async fn recorded(&self, pending: &Pending, first: bool) -> WriteResult {
        let candidate = &pending.candidate;
        telemetry::sync_status_written(pending.status);
        tracing::info!(
            connection = %candidate.connection,
            ticket = %candidate.ticket.key,
            ticket_status = %candidate.status.name,
            finding_id = %pending.record.finding_id,
            team = %pending.record.team,
            status = pending.status.as_str(),
            "ticket status written to Security Hub"
        );
        if !first {
            return WriteResult::Written(pending.status);
        }
        if let Err(e) = self
            .store
            .set_sync_status(
                &pending.record.marker,
                Some(&candidate.status.name),
                Some(pending.status.as_str()),
            )
            .await
        {
            telemetry::error(ErrorKind::Store);
            tracing::warn!(marker = %pending.record.marker, error = %e, "could not record the status written to Security Hub");
        }
        self.acceptance_ended(pending).await;
        WriteResult::Written(pending.status)
    }
}
