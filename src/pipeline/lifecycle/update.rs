//! Moving an existing ticket along with its finding: severity changes, resolution (close, comment
//! or ignore), recurrence (comment, reopen or a new ticket), and a replacement create whose outcome
//! was lost.

use super::*;

/// One update of one ticket in progress: what it works on and what it has done so far.
struct Step<'a, 'h> {
    held: &'a Held<'h>,
    finding: &'a Finding,
    system: Arc<dyn TicketSystem>,
    ticket: TicketRef,
    /// The record as it will be stored.
    next: Record,
    sync: SyncFields,
    outcome: TeamOutcome,
    /// "record state ARCHIVED, compliance PASSED", for comments.
    state: String,
    /// Identifies this version of the finding in comment references.
    version: &'a str,
}

impl Step<'_, '_> {
    async fn comment(
        &self,
        lifecycle: &Lifecycle,
        event: &str,
        text: &str,
    ) -> Result<(), LifecycleError> {
        lifecycle
            .comment_once(self.held, &self.system, &self.ticket, event, text)
            .await
    }
}

impl Lifecycle {
    pub(super) async fn update(
        &self,
        held: &Held<'_>,
        finding: &Finding,
        planned: Option<&PlannedTicket>,
        record: Record,
        intent: Option<Intent>,
        writes: &mut Vec<PendingWrite>,
    ) -> Result<TeamOutcome, LifecycleError> {
        let team = held.team;
        let mut outcome = TeamOutcome {
            team: team.clone(),
            marker: held.marker.clone(),
            actions: Vec::new(),
            ticket: record.ticket.clone(),
        };
        let Some(ticket) = record.ticket.clone() else {
            // `decide` only comes here with a ticket; treat a missing one as nothing to follow.
            self.release(held).await?;
            outcome.actions.push(Action::Noop);
            return Ok(outcome);
        };
        if is_stale(finding, &record) {
            self.release(held).await?;
            outcome.actions.push(Action::Stale);
            return Ok(outcome);
        }
        if let Err(paused) = self.check_paused(team, &ticket.system, &record.rule) {
            self.release(held).await?;
            return Err(paused);
        }
        let intent_settled = intent.is_some();
        let (record, ticket, sync) = self
            .settle_replacement(held, record, ticket, intent.as_ref(), &mut outcome)
            .await?;

        let options = match planned {
            Some(p) if *p.rule == *record.rule => p.options,
            _ => self
                .planner
                .rule_options(team, &record.rule)
                .unwrap_or_default(),
        };
        let refresh = match planned {
            Some(p) => Some(SeverityRefresh {
                severity: p.severity,
                fields: p.severity_fields.clone(),
                sla: p.sla.clone(),
            }),
            None => self
                .planner
                .severity_refresh(team, &record.rule, finding)
                .map_err(|error| LifecycleError::Plan {
                    team: team.clone(),
                    rule: Arc::from(record.rule.as_str()),
                    error,
                })?,
        };
        let severity = refresh
            .as_ref()
            .map(|r| r.severity)
            .or(Severity::from_label(&record.severity))
            .unwrap_or(finding.severity);
        let print = fingerprint(severity, finding);
        let newest_updated_at = newer(finding.updated_at.as_deref(), record.updated_at.as_deref());

        if print == record.fingerprint && record.finding_resolved == finding.is_resolved() {
            if newest_updated_at != record.updated_at || intent_settled {
                // Nothing to do on the ticket, but remember the newer version so that an older
                // one arriving late is recognised as stale.
                let mut next = record.clone();
                next.updated_at = newest_updated_at;
                next.modified_at = chrono::Utc::now().timestamp();
                self.put(held, &next, sync).await?;
            } else {
                self.release(held).await?;
            }
            if outcome.actions.is_empty() {
                outcome.actions.push(Action::Noop);
            }
            outcome.ticket = Some(ticket);
            return Ok(outcome);
        }

        let mut next = record.clone();
        next.updated_at = newest_updated_at;
        next.fingerprint = print;
        next.modified_at = chrono::Utc::now().timestamp();
        let mut step = Step {
            held,
            finding,
            system: Arc::clone(self.system(team, &ticket.system)?),
            ticket,
            next,
            sync,
            outcome,
            state: state_text(finding),
            version: finding.updated_at.as_deref().unwrap_or("-"),
        };
        let resolved_now = finding.is_resolved();
        if !resolved_now && record.finding_resolved {
            self.recur(&mut step, &record, options, planned, severity, writes)
                .await?;
        }
        // A resolved finding's severity often drops to INFORMATIONAL; re-prioritising a ticket
        // that is about to close is noise, so severity is only followed while active.
        if !resolved_now && step.next.severity != severity.as_str() {
            self.follow_severity(&mut step, refresh.as_ref(), severity)
                .await?;
        }
        if resolved_now && !record.finding_resolved {
            self.resolve(&mut step, options.on_resolved).await?;
        }

        let Step {
            mut outcome,
            next,
            sync,
            ticket,
            ..
        } = step;
        if outcome.actions.is_empty() {
            outcome.actions.push(Action::Noop);
        }
        self.put(held, &next, sync).await?;
        outcome.ticket = Some(ticket);
        Ok(outcome)
    }

    /// A replacement create (`on_recurrence = new`) whose outcome was lost: settled before
    /// anything else, so that a replacement that was made is followed (and closed, if the finding
    /// is resolved again by now) rather than forgotten when the intent is cleared.
    async fn settle_replacement(
        &self,
        held: &Held<'_>,
        mut record: Record,
        ticket: TicketRef,
        intent: Option<&Intent>,
        outcome: &mut TeamOutcome,
    ) -> Result<(Record, TicketRef, SyncFields), LifecycleError> {
        let Some(intent) = intent else {
            return Ok((record, ticket, SyncFields::Keep));
        };
        Self::unsettled(held, Some(intent))?;
        let system = Arc::clone(self.system(held.team, &intent.system)?);
        let Some(found) = self
            .search(held, &system, ticket.table.as_deref(), Some(&ticket))
            .await?
            .filter(|f| !f.done)
        else {
            return Ok((record, ticket, SyncFields::Keep));
        };
        outcome.actions.push(Action::Replaced { previous: ticket });
        record.ticket = Some(found.ticket.clone());
        record.finding_resolved = false;
        record.closed_by_bridge = false;
        record.status_from_ticket = None;
        record.status_to_hub = None;
        Ok((record, found.ticket, SyncFields::Replace))
    }

    /// The finding is active again after a resolution: a ticket still open gets a comment; a
    /// finished one is replaced (`on_recurrence = new`, for a routed finding) or reopened.
    async fn recur(
        &self,
        step: &mut Step<'_, '_>,
        record: &Record,
        options: RuleOptions,
        planned: Option<&PlannedTicket>,
        severity: Severity,
        writes: &mut Vec<PendingWrite>,
    ) -> Result<(), LifecycleError> {
        let ticket_err = step.held.ticket_err();
        let status = step
            .system
            .status(&step.ticket)
            .await
            .map_err(&ticket_err)?;
        let (state, version) = (step.state.clone(), step.version);
        if !status.done {
            let text = format!("The finding is active again in Security Hub ({state}).");
            step.comment(self, &format!("active:{version}"), &text)
                .await?;
            step.outcome.actions.push(Action::RecurrenceCommented);
        } else if let (OnRecurrence::New, Some(p)) = (options.on_recurrence, planned) {
            // Any earlier intent was settled by `settle_replacement`.
            let (new_ticket, _) = self
                .find_or_create(step.held, step.finding, p, Some(&step.ticket), None, true)
                .await?;
            step.outcome.actions.push(Action::Replaced {
                previous: step.ticket.clone(),
            });
            step.next.rule = p.rule.to_string();
            step.next.severity = p.severity.as_str().to_owned();
            step.next.sla = p.sla.clone();
            step.next.status_from_ticket = None;
            step.next.status_to_hub = None;
            step.sync = SyncFields::Replace;
            step.ticket = new_ticket;
            step.next.ticket = Some(step.ticket.clone());
            if p.options.notify_on_create {
                writes.push(notified(
                    step.held.marker,
                    None,
                    step.finding,
                    p.severity,
                    p.severity_note.as_deref(),
                    &step.ticket,
                ));
            }
        } else {
            // `new` needs a rendered payload, which only a routed finding has: a ticket followed
            // outside routing is reopened instead.
            let text = format!("The finding is active again in Security Hub ({state}); reopening.");
            step.comment(self, &format!("reopen:{version}"), &text)
                .await?;
            step.system
                .reopen(&step.ticket, "")
                .await
                .map_err(&ticket_err)?;
            step.outcome.actions.push(Action::Reopened);
            if options.notify_on_create {
                writes.push(notified(
                    step.held.marker,
                    record.status_from_ticket.clone(),
                    step.finding,
                    severity,
                    planned.and_then(|p| p.severity_note.as_deref()),
                    &step.ticket,
                ));
            }
        }
        step.next.finding_resolved = false;
        step.next.closed_by_bridge = false;
        Ok(())
    }

    /// The severity moved: the rule's severity fields (priority, urgency…) follow, with a comment.
    async fn follow_severity(
        &self,
        step: &mut Step<'_, '_>,
        refresh: Option<&SeverityRefresh>,
        severity: Severity,
    ) -> Result<(), LifecycleError> {
        if let Some(refresh) = refresh.filter(|r| !r.fields.is_empty()) {
            let update = FieldUpdate {
                fields: refresh.fields.clone(),
                ..FieldUpdate::default()
            };
            step.system
                .update_fields(&step.ticket, &update)
                .await
                .map_err(step.held.ticket_err())?;
        }
        let from = step.next.severity.clone();
        let text = format!("Severity changed from {from} to {severity}.");
        let event = format!("severity:{from}:{severity}:{}", step.version);
        step.comment(self, &event, &text).await?;
        step.outcome
            .actions
            .push(Action::SeverityChanged { from, to: severity });
        step.next.severity = severity.as_str().to_owned();
        // The due date moved with the priority in the one update above; a handled breach stays
        // handled only for the due date it was handled for.
        if let Some(refresh) = refresh {
            step.next.sla = carry_breach(step.next.sla.as_ref(), refresh.sla.clone());
        }
        Ok(())
    }

    /// The finding is resolved: close the ticket, comment, or leave it (`on_resolved`).
    async fn resolve(
        &self,
        step: &mut Step<'_, '_>,
        on_resolved: OnResolved,
    ) -> Result<(), LifecycleError> {
        let text = format!(
            "The finding is resolved in Security Hub ({}). {}",
            step.state, step.finding.console_url
        );
        let event = format!("resolved:{}", step.version);
        match on_resolved {
            OnResolved::Close => {
                step.comment(self, &event, &text).await?;
                step.system
                    .transition(&step.ticket, &TargetStatus::Done, &text)
                    .await
                    .map_err(step.held.ticket_err())?;
                step.next.closed_by_bridge = true;
                step.outcome.actions.push(Action::Closed);
            }
            OnResolved::Comment => {
                step.comment(self, &event, &text).await?;
                step.outcome.actions.push(Action::ResolutionCommented);
            }
            OnResolved::Ignore => step.outcome.actions.push(Action::ResolutionIgnored),
        }
        step.next.finding_resolved = true;
        Ok(())
    }
}
