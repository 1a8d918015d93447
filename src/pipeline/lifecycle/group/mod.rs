//! Grouped tickets: the findings of a team with the same group key (`group_by`) share one ticket,
//! whose items they are (README, "Grouped tickets").
//!
//! Two records take part. Each finding keeps its own record under its own marker, as every
//! finding does (staleness, fingerprint, the tombstone, status written back), with
//! [`Grouping::Member`] naming its group. The group ticket has a record under the group marker
//! ([`Marker::group`]) holding the ticket and every item ([`Grouping::Group`]). Work on a member
//! takes the finding's claim first and the group's claim second — always in that order, so two
//! units of work never wait on each other — and every change of the group ticket happens under
//! the group's claim, with the same machinery as a finding's ticket: an intent before the create,
//! the marker search before any create (a group is created once, so the search costs little),
//! comments posted once, the record written last. Two findings of a new group on two replicas:
//! one takes the group claim and creates, the other is told the group is busy and comes back to
//! join the ticket the first one recorded.
//!
//! Per item: a finding that joins is listed (a ticket closed meanwhile reopens, with a comment); a
//! finding that resolves is ticked off with a comment; when every item is resolved the ticket
//! follows the rule's `on_resolved`; one that recurs reopens it. The description and summary are
//! re-rendered from the items and sent only when they changed; priority follows the highest open
//! severity. `on_recurrence = "new"` reopens a group's ticket: its items live on it.

mod step;

use super::*;
use crate::mapping::group::{GroupItem, MAX_GROUP_ITEMS, continuation_key};
use crate::store::Grouping;

/// How many continuation groups (`KEY #2`, …) a key may have before a finding is refused: a
/// bound on the loop, far beyond any real group (200 findings each).
const MAX_CONTINUATIONS: usize = 1000;

/// Waits between tries of a group claim another process holds: a group step is a few ticket
/// calls, so the claim is usually free again within a second; after these the message is
/// retried later like any busy one.
const GROUP_CLAIM_WAITS: [Duration; 5] = [
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_millis(1600),
];

/// What a finding does to its group.
#[derive(Clone, Copy)]
enum Change {
    /// A finding not yet listed anywhere joins.
    Join,
    /// A listed finding moved (severity, resolution, recurrence).
    Follow,
}

/// What one finding's step did to its group's ticket.
enum Step {
    /// The group (a full one) takes no new items: try the next continuation.
    Full,
    Done {
        ticket: TicketRef,
        actions: Vec<Action>,
        /// The ticket was created or reopened for this finding: worth a NOTIFIED write-back.
        announce: bool,
    },
}

/// The finding and rule a group step works for.
struct Member<'a> {
    finding: &'a Finding,
    item: GroupItem,
    rule: &'a str,
    target: &'a str,
    planned: Option<&'a PlannedTicket>,
    /// The finding's own marker (comment references name the finding, not only the group).
    marker: &'a Marker,
    /// The group ticket the finding's record names (a listed finding): adopted as the group's
    /// should the group's record be missing.
    known_ticket: Option<&'a TicketRef>,
}

impl Lifecycle {
    /// A finding without a record whose rule groups: it joins its group's ticket (creating it
    /// when the group has none), then its own record is written, naming the group.
    pub(super) async fn join_group(
        &self,
        held: &Held<'_>,
        finding: &Finding,
        planned: &PlannedTicket,
        intent: Option<Intent>,
        writes: &mut Vec<PendingWrite>,
    ) -> Result<TeamOutcome, LifecycleError> {
        let key = planned.group.as_deref().unwrap_or_default();
        // A rule pointing nowhere is permanent: checked before anything is stored.
        let system = Arc::clone(self.system(held.team, &planned.target)?);
        if let Some(intent) = intent {
            // A ticket of its own was being created for the finding when its rule started to
            // group: once that create can be searched for, a ticket it made is followed as
            // before; none found, the finding joins its group.
            Self::unsettled(held, Some(&intent))?;
            if self.search(held, &system, None, None).await?.is_some() {
                return self
                    .adopt(held, finding, Some(intent), writes)
                    .await
                    .map(|o| o.unwrap_or_else(|| unreachable!("adopt with an intent answers")));
            }
            self.store
                .set_intent(held.marker, &held.owner, None)
                .await
                .map_err(held.store_err())?;
        }
        let outcome = |actions: Vec<Action>, ticket: Option<TicketRef>| TeamOutcome {
            team: held.team.clone(),
            marker: held.marker.clone(),
            actions,
            ticket,
        };
        if finding.is_resolved() {
            self.release(held).await?;
            return Ok(outcome(vec![Action::SkippedResolved], None));
        }
        // Enlisted under the claim, then the tombstone read in the same step (see `create`).
        let index = self
            .store
            .enlist(&finding.id, held.team)
            .await
            .map_err(held.store_err())?;
        if covered_by_tombstone(finding, &index) {
            self.release(held).await?;
            return Ok(outcome(vec![Action::Stale], None));
        }
        let member = Member {
            finding,
            item: GroupItem::of(finding, planned.severity),
            rule: &planned.rule,
            target: &planned.target,
            planned: Some(planned),
            marker: held.marker,
            known_ticket: None,
        };
        for n in 1..=MAX_CONTINUATIONS {
            let group_key = continuation_key(key, n);
            let group_marker = Marker::group(held.team, &group_key);
            let step = self
                .in_group(held.team, &group_marker, &group_key, &member, Change::Join)
                .await?;
            let Step::Done {
                ticket,
                actions,
                announce,
            } = step
            else {
                continue;
            };
            let record = self.member_record(held, finding, planned, &ticket, &group_key);
            self.put(held, &record, SyncFields::Replace).await?;
            if announce && planned.options.notify_on_create {
                writes.push(member_notified(
                    held.marker,
                    None,
                    finding,
                    planned,
                    &ticket,
                    &group_key,
                ));
            }
            let actions = if actions.is_empty() {
                vec![Action::Noop]
            } else {
                actions
            };
            return Ok(outcome(actions, Some(ticket)));
        }
        Err(LifecycleError::Plan {
            team: held.team.clone(),
            rule: planned.rule.clone(),
            error: PlanError::new(format!(
                "group {key:?} already has {MAX_CONTINUATIONS} full tickets of {MAX_GROUP_ITEMS} findings"
            )),
        })
    }

    /// A finding already listed in a group moved: its item (and with it the group's ticket)
    /// follows under the group's claim, then its own record.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn follow_member(
        &self,
        held: &Held<'_>,
        finding: &Finding,
        planned: Option<&PlannedTicket>,
        record: Record,
        group_key: &str,
        group_marker: &Marker,
        writes: &mut Vec<PendingWrite>,
    ) -> Result<TeamOutcome, LifecycleError> {
        let mut outcome = TeamOutcome {
            team: held.team.clone(),
            marker: held.marker.clone(),
            actions: Vec::new(),
            ticket: record.ticket.clone(),
        };
        if is_stale(finding, &record) {
            self.release(held).await?;
            outcome.actions.push(Action::Stale);
            return Ok(outcome);
        }
        let Some(ticket) = record.ticket.clone() else {
            self.release(held).await?;
            outcome.actions.push(Action::Noop);
            return Ok(outcome);
        };
        if let Err(paused) = self.check_paused(held.team, &ticket.system, &record.rule) {
            self.release(held).await?;
            return Err(paused);
        }
        let planned = planned.filter(|p| *p.rule == *record.rule);
        let severity = match planned {
            Some(p) => p.severity,
            None => self
                .planner
                .severity_refresh(held.team, &record.rule, finding)
                .ok()
                .flatten()
                .map(|r| r.severity)
                .or(Severity::from_label(&record.severity))
                .unwrap_or(finding.severity),
        };
        let print = fingerprint(severity, finding);
        let newest = newer(finding.updated_at.as_deref(), record.updated_at.as_deref());
        if print == record.fingerprint && record.finding_resolved == finding.is_resolved() {
            if newest != record.updated_at {
                let mut next = record.clone();
                next.updated_at = newest;
                next.modified_at = chrono::Utc::now().timestamp();
                self.put(held, &next, SyncFields::Keep).await?;
            } else {
                self.release(held).await?;
            }
            outcome.actions.push(Action::Noop);
            return Ok(outcome);
        }
        let member = Member {
            finding,
            item: GroupItem::of(finding, severity),
            rule: &record.rule,
            target: &ticket.system,
            planned,
            marker: held.marker,
            known_ticket: Some(&ticket),
        };
        let step = self
            .in_group(held.team, group_marker, group_key, &member, Change::Follow)
            .await?;
        let Step::Done {
            ticket,
            actions,
            announce,
        } = step
        else {
            unreachable!("a listed finding is never refused as full");
        };
        let mut next = record.clone();
        next.ticket = Some(ticket.clone());
        next.updated_at = newest;
        next.fingerprint = print;
        next.severity = severity.as_str().to_owned();
        next.finding_resolved = finding.is_resolved();
        next.modified_at = chrono::Utc::now().timestamp();
        self.put(held, &next, SyncFields::Keep).await?;
        if announce && let Some(p) = planned.filter(|p| p.options.notify_on_create) {
            writes.push(member_notified(
                held.marker,
                record.status_from_ticket.clone(),
                finding,
                p,
                &ticket,
                group_key,
            ));
        }
        outcome.actions = if actions.is_empty() {
            vec![Action::Noop]
        } else {
            actions
        };
        outcome.ticket = Some(ticket);
        Ok(outcome)
    }

    /// Runs the member's step under the group's claim: in turn with this process's other work on
    /// the group, and trying again a few times while another process holds it.
    async fn in_group(
        &self,
        team: &Arc<str>,
        group_marker: &Marker,
        key: &str,
        member: &Member<'_>,
        change: Change,
    ) -> Result<Step, LifecycleError> {
        let turn = {
            let mut turns = self.group_turns.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(turns.entry(group_marker.clone()).or_default())
        };
        let result = {
            let _turn = turn.lock().await;
            let mut waits = GROUP_CLAIM_WAITS.iter();
            loop {
                let step = self
                    .under_claim(team, group_marker, async |group, claimed| {
                        self.group_step(group, key, claimed, member, change).await
                    })
                    .await;
                match (step, waits.next()) {
                    (Err(LifecycleError::Busy { .. }), Some(wait)) => {
                        tokio::time::sleep(*wait).await;
                    }
                    (step, _) => break step,
                }
            }
        };
        drop(turn);
        let mut turns = self.group_turns.lock().unwrap_or_else(|p| p.into_inner());
        if turns
            .get(group_marker)
            .is_some_and(|t| Arc::strong_count(t) == 1)
        {
            turns.remove(group_marker);
        }
        result
    }

    /// The record of a finding that joined `group_key`'s ticket.
    fn member_record(
        &self,
        held: &Held<'_>,
        finding: &Finding,
        planned: &PlannedTicket,
        ticket: &TicketRef,
        group_key: &str,
    ) -> Record {
        let mut record = super::create::first_record(held, finding, planned, ticket);
        // Due dates and escalation are the group ticket's (its record carries them).
        record.sla = None;
        record.group = Some(Grouping::Member {
            key: group_key.to_owned(),
            marker: Marker::group(held.team, group_key),
        });
        record
    }
}

/// The NOTIFIED write-back of a member: names the group ticket and the group marker, so every
/// finding of a group can be found in Security Hub by searching notes for the marker.
fn member_notified(
    marker: &Marker,
    status_from_ticket: Option<String>,
    finding: &Finding,
    planned: &PlannedTicket,
    ticket: &TicketRef,
    group_key: &str,
) -> PendingWrite {
    let mut write = notified(
        marker,
        status_from_ticket,
        finding,
        planned.severity,
        planned.severity_note.as_deref(),
        ticket,
    );
    let group_marker = Marker::group(&planned.team, group_key);
    write.note = format!("{} (group {group_key}, {group_marker})", write.note);
    write.group = Some(group_marker);
    write
}
