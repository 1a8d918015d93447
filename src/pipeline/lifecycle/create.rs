//! Finding or creating the one ticket of a (finding, team): the marker search (trusted only once
//! an unknown create has settled), creates sent at most once behind an intent, comments posted
//! once, and adopting a ticket whose create nobody recorded.

use super::*;

/// How long a create the ticket system is too busy to take (429s, or no room in the rate limit
/// within the send window) is tried again in turn, in the process, before its message is given
/// back to the queue: counted from the first refusal, not from the start, since in a flood the
/// wait for a turn alone can be longer (that wait is the rate limit working, not the system
/// refusing). Meanwhile the claim and the message are kept alive as for any work.
const BUSY_RETRY_FOR: Duration = Duration::from_secs(120);
/// The least time between two such tries (a server's `Retry-After` was already waited out by
/// the HTTP client within the send window).
const BUSY_PAUSE: Duration = Duration::from_secs(1);

impl Lifecycle {
    /// Every ticket carrying the marker, with the one to follow: the oldest live one, else the
    /// newest finished one. More than one live ticket is a duplicate the bridge made (or a
    /// person copied): each extra one gets a comment pointing at the kept one, once, and is
    /// counted; none is ever ignored silently.
    pub(super) async fn search(
        &self,
        held: &Held<'_>,
        system: &Arc<dyn TicketSystem>,
        table: Option<&str>,
        unless: Option<&TicketRef>,
    ) -> Result<Option<FoundTicket>, LifecycleError> {
        let found = system
            .find_by_marker(held.marker, table)
            .await
            .map_err(held.ticket_err())?;
        let candidates: Vec<FoundTicket> = found
            .into_iter()
            .filter(|f| unless.is_none_or(|u| u.id != f.ticket.id))
            .collect();
        let live: Vec<&FoundTicket> = candidates.iter().filter(|f| !f.done).collect();
        let Some(kept) = followed(&candidates, |f| f.done) else {
            return Ok(None);
        };
        if live.len() > 1 {
            telemetry::duplicates_detected(system.name(), held.team, (live.len() - 1) as u64);
            for extra in &live[1..] {
                tracing::warn!(team = %held.team, marker = %held.marker, kept = %kept.ticket.key, duplicate = %extra.ticket.key, "duplicate ticket for one finding and team");
                let text = format!(
                    "Duplicate: findings-bridge follows {} ({}) for this finding and team; \
                     this ticket is not updated and can be closed.",
                    kept.ticket.key, kept.ticket.url
                );
                let event = format!("duplicate-of:{}", kept.ticket.id);
                self.comment_once(held, system, &extra.ticket, &event, &text)
                    .await?;
            }
        }
        Ok(Some(kept.clone()))
    }

    /// Posts a comment unless an earlier attempt for the same event already did: the comment
    /// carries a reference derived from the marker and `event`, looked for first (comments are
    /// read from the ticket itself, which is consistent). The post is sent at most once.
    pub(super) async fn comment_once(
        &self,
        held: &Held<'_>,
        system: &Arc<dyn TicketSystem>,
        ticket: &TicketRef,
        event: &str,
        text: &str,
    ) -> Result<(), LifecycleError> {
        comment_once_on(system.as_ref(), held.marker, ticket, event, text)
            .await
            .map_err(held.ticket_err())
    }

    /// Creates a ticket for `planned` unless one carrying the marker exists: with an intent
    /// (an earlier create whose outcome is unknown) only once the search can be trusted. The
    /// create is preceded by its own intent and sent at most once; a lost answer leaves the
    /// intent for whoever holds the claim after the settle time. A create the system was too
    /// busy to take (provably not made) goes again in turn, behind a new intent, for up to
    /// [`BUSY_RETRY_FOR`].
    pub(super) async fn find_or_create(
        &self,
        held: &Held<'_>,
        finding: &Finding,
        planned: &PlannedTicket,
        unless: Option<&TicketRef>,
        intent: Option<&Intent>,
        search: bool,
    ) -> Result<(TicketRef, Action), LifecycleError> {
        let system = self.system(held.team, &planned.target)?;
        Self::unsettled(held, intent)?;
        if !search {
            telemetry::marker_search_skipped(system.name());
        } else if let Some(found) = self
            .search(held, system, planned.table.as_deref(), unless)
            .await?
        {
            // Replacing a closed ticket (`on_recurrence = new`) wants a live one; a finished
            // match is an older predecessor, not the replacement.
            if !(found.done && unless.is_some()) {
                return Ok((found.ticket, Action::Recovered));
            }
        }
        // What `reconcile` rebuilds the record from, should the store ever lose it.
        // A group ticket is no one finding's: it carries none (its record is rebuilt from its
        // members' records).
        let payload = match planned.group {
            None => system.attach_provenance(&planned.payload, &provenance(held, finding, planned)),
            Some(_) => planned.payload.clone(),
        };
        // When the system first refused this create for its rate.
        let mut busy_since: Option<tokio::time::Instant> = None;
        loop {
            // Our turn first (a flood's queue for the rate limit is waited out here, before the
            // intent, so the create is not left to miss its send window behind it), held until
            // the create has returned.
            let turn = system.create_turn().await;
            let started = now_millis();
            let settle = i64::try_from(system.settle_time().as_millis()).unwrap_or(i64::MAX);
            let intent = Intent {
                owner: held.owner.clone(),
                system: planned.target.clone(),
                started_at: started,
                search_after: started.saturating_add(settle),
            };
            // Conditional on our lease: a lost claim is noticed here, before anything is sent.
            // A later round replaces the intent with its own, later one.
            self.store
                .set_intent(held.marker, &held.owner, Some(&intent))
                .await
                .map_err(|e| {
                    if matches!(e, StoreError::LostClaim(_)) {
                        telemetry::claim_lost("intent");
                    }
                    held.store_err()(e)
                })?;
            match system.create(&payload, planned.table.as_deref()).await {
                Ok(ticket) => return Ok((ticket, Action::Created)),
                Err(e) if e.is_outcome_unknown() => {
                    tracing::warn!(team = %held.team, marker = %held.marker, error = %e, "create outcome unknown; the marker is searched for after the settle time");
                    let remaining = intent.search_after - now_millis();
                    return Err(LifecycleError::Settling {
                        team: held.team.clone(),
                        marker: held.marker.clone(),
                        wait: Duration::from_millis(u64::try_from(remaining).unwrap_or(0)),
                    });
                }
                Err(e)
                    if e.is_busy()
                        && busy_since
                            .get_or_insert_with(tokio::time::Instant::now)
                            .elapsed()
                            < BUSY_RETRY_FOR =>
                {
                    // Refused for the rate, or not sent in time: provably not made. Another
                    // turn here costs one store write; giving the message back would cost its
                    // whole round trip and a backoff, and in a flood every message would make
                    // it several times until the redrive policy parks it.
                    drop(turn);
                    tracing::debug!(team = %held.team, marker = %held.marker, error = %e, "create not taken: the ticket system is busy; trying again in turn");
                    // Never a tight loop of intent writes, however quickly the refusal came.
                    tokio::time::sleep(BUSY_PAUSE).await;
                }
                Err(e) => {
                    // Refused, or never sent: nothing was created, so the intent can go.
                    if let Err(clear) = self.store.set_intent(held.marker, &held.owner, None).await
                    {
                        tracing::debug!(marker = %held.marker, error = %clear, "could not clear the intent of a create that failed; the next holder searches first");
                    }
                    return Err(held.ticket_err()(e));
                }
            }
        }
    }

    pub(super) async fn create(
        &self,
        held: &Held<'_>,
        finding: &Finding,
        planned: &PlannedTicket,
        intent: Option<Intent>,
        writes: &mut Vec<PendingWrite>,
    ) -> Result<TeamOutcome, LifecycleError> {
        // Check the connection before anything else: a rule pointing nowhere is permanent.
        let system = Arc::clone(self.system(held.team, &planned.target)?);
        let outcome = |actions: Vec<Action>, ticket: Option<TicketRef>| TeamOutcome {
            team: held.team.clone(),
            marker: held.marker.clone(),
            actions,
            ticket,
        };
        if finding.is_resolved() && intent.is_none() {
            // Nobody needs a ticket for something that is already fixed or gone; the
            // resolution's tombstone is already stored.
            self.release(held).await?;
            return Ok(outcome(vec![Action::SkippedResolved], None));
        }
        let mut as_resolved = None;
        if !finding.is_resolved() {
            // Enlisted under the claim, then the tombstone read in the same step: a resolution
            // stored before this is seen here, one stored after it sees this team.
            let index = self
                .store
                .enlist(&finding.id, held.team)
                .await
                .map_err(held.store_err())?;
            if covered_by_tombstone(finding, &index) {
                if intent.is_none() {
                    self.release(held).await?;
                    return Ok(outcome(vec![Action::Stale], None));
                }
                // An earlier create's outcome is unknown and the finding has been resolved
                // since: look for that ticket as the resolution sees the finding, so a ticket
                // that was made is closed and none is made now.
                let mut view = finding.clone();
                view.record_state = crate::finding::RecordState::Archived;
                view.updated_at = index.resolved_at.clone();
                as_resolved = Some(view);
            }
        }
        let finding = as_resolved.as_ref().unwrap_or(finding);
        let (ticket, action) = if finding.is_resolved() {
            // An earlier create may have made a ticket that now has to follow the resolution.
            Self::unsettled(held, intent.as_ref())?;
            match self
                .search(held, &system, planned.table.as_deref(), None)
                .await?
            {
                Some(found) => (found.ticket, Action::Recovered),
                None => {
                    self.store
                        .set_intent(held.marker, &held.owner, None)
                        .await
                        .map_err(held.store_err())?;
                    self.release(held).await?;
                    return Ok(outcome(vec![Action::SkippedResolved], None));
                }
            }
        } else {
            // With no intent, a create this store never heard of can only have happened if the
            // finding is older than what the store vouches for: only then is the search needed.
            let search = intent.is_some() || !self.vouches_for(finding).await;
            self.find_or_create(held, finding, planned, None, intent.as_ref(), search)
                .await?
        };
        let mut record = first_record(held, finding, planned, &ticket);
        if action == Action::Recovered {
            // What the recovered ticket reflects is unknown: follow it from scratch (a finished
            // ticket of an active finding recurs; a resolved finding closes it).
            let status = system.status(&ticket).await.map_err(held.ticket_err())?;
            record.finding_resolved = status.done;
            record.updated_at = None;
            record.fingerprint = String::new();
            let mut followed = self
                .update(held, finding, Some(planned), record, None, writes)
                .await?;
            followed.actions.retain(|a| *a != Action::Noop);
            if followed.actions.is_empty() && planned.options.notify_on_create {
                // The crash that left this ticket unrecorded may have come before its
                // write-back: say again where the finding is tracked.
                writes.push(notified(
                    held.marker,
                    None,
                    finding,
                    planned.severity,
                    planned.severity_note.as_deref(),
                    &ticket,
                ));
            }
            followed.actions.insert(0, Action::Recovered);
            return Ok(followed);
        }
        self.put(held, &record, SyncFields::Replace).await?;
        if planned.options.enrich_detective
            && let Some(investigator) = &self.investigator
        {
            let target = ticket.clone();
            let system = Arc::clone(&system);
            let enrichment = crate::aws::detective::spawn_enrichment(
                Arc::clone(investigator),
                finding.clone(),
                move |comment: String| {
                    Box::pin(async move {
                        system
                            .comment(&target, &comment)
                            .await
                            .map_err(|e| e.to_string())
                    })
                },
            );
            self.tasks.track("detective enrichment", enrichment);
        }
        if planned.options.notify_on_create {
            writes.push(notified(
                held.marker,
                None,
                finding,
                planned.severity,
                planned.severity_note.as_deref(),
                &ticket,
            ));
        }
        Ok(outcome(vec![action], Some(ticket)))
    }

    /// A team enlisted on the finding whose create's outcome nobody recorded, met while
    /// routing does not pick it: once the search can be trusted, a ticket it finds is recorded
    /// (under the rule's defaults) and followed; none found clears the intent.
    pub(super) async fn adopt(
        &self,
        held: &Held<'_>,
        finding: &Finding,
        intent: Option<Intent>,
        writes: &mut Vec<PendingWrite>,
    ) -> Result<Option<TeamOutcome>, LifecycleError> {
        let Some(intent) = intent else {
            self.release(held).await?;
            return Ok(None);
        };
        let system = Arc::clone(self.system(held.team, &intent.system)?);
        Self::unsettled(held, Some(&intent))?;
        let Some(found) = self.search(held, &system, None, None).await? else {
            self.store
                .set_intent(held.marker, &held.owner, None)
                .await
                .map_err(held.store_err())?;
            self.release(held).await?;
            return Ok(Some(TeamOutcome {
                team: held.team.clone(),
                marker: held.marker.clone(),
                actions: vec![Action::Untracked],
                ticket: None,
            }));
        };
        let record = Record {
            marker: held.marker.clone(),
            finding_id: finding.id.clone(),
            team: held.team.to_string(),
            schema: finding.schema,
            write_back: finding.write_back.clone(),
            rule: String::new(),
            ticket: Some(found.ticket),
            updated_at: None,
            fingerprint: String::new(),
            severity: finding.severity.as_str().to_owned(),
            finding_resolved: found.done,
            closed_by_bridge: false,
            status_to_hub: None,
            status_from_ticket: None,
            modified_at: chrono::Utc::now().timestamp(),
            sla: None,
            group: None,
        };
        let mut followed = self
            .update(held, finding, None, record, None, writes)
            .await?;
        followed.actions.insert(0, Action::Recovered);
        followed.actions.retain(|a| *a != Action::Noop);
        Ok(Some(followed))
    }
}

/// The record of a (finding, team) whose ticket `planned` just made or found: what the finding
/// and the route say, nothing synced yet.
pub(super) fn first_record(
    held: &Held<'_>,
    finding: &Finding,
    planned: &PlannedTicket,
    ticket: &TicketRef,
) -> Record {
    Record {
        marker: held.marker.clone(),
        finding_id: finding.id.clone(),
        team: held.team.to_string(),
        schema: finding.schema,
        write_back: finding.write_back.clone(),
        rule: planned.rule.to_string(),
        ticket: Some(ticket.clone()),
        updated_at: finding.updated_at.clone(),
        fingerprint: fingerprint(planned.severity, finding),
        severity: planned.severity.as_str().to_owned(),
        finding_resolved: false,
        closed_by_bridge: false,
        status_to_hub: None,
        status_from_ticket: None,
        modified_at: chrono::Utc::now().timestamp(),
        sla: planned.sla.clone(),
        group: None,
    }
}

/// The provenance a create carries: the finding and route behind the ticket.
fn provenance(held: &Held<'_>, finding: &Finding, planned: &PlannedTicket) -> Provenance {
    Provenance {
        finding_id: finding.id.clone(),
        team: held.team.to_string(),
        rule: planned.rule.to_string(),
        schema: finding.schema,
        write_back: finding.write_back.clone(),
        severity: planned.severity.as_str().to_owned(),
    }
}
