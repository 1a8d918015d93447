//! One member's step under its group's claim: the group ticket found or created, the item
//! listed as it is now, the ticket moved along (reopen, tick off, fields, close).

use super::*;
use crate::mapping::group::GroupView;

impl Lifecycle {
    /// Under the group's claim: lists the member's item as it is now, creates the group ticket
    /// if the group has none, and moves the ticket along (fields, comments, close, reopen).
    pub(super) async fn group_step(
        &self,
        group: &Held<'_>,
        key: &str,
        claimed: Claimed,
        member: &Member<'_>,
        change: Change,
    ) -> Result<Step, LifecycleError> {
        let Claimed { record, intent } = claimed;
        let mut items = record
            .as_ref()
            .and_then(Record::group_items)
            .map(<[GroupItem]>::to_vec)
            .unwrap_or_default();
        let position = items.iter().position(|i| i.id == member.item.id);
        if position.is_none()
            && matches!(change, Change::Join)
            && items.len() >= MAX_GROUP_ITEMS
            && record.as_ref().is_some_and(|r| r.ticket.is_some())
        {
            self.release(group).await?;
            return Ok(Step::Full);
        }
        let before = position.map(|i| items[i].clone());
        match position {
            Some(i) => items[i] = member.item.clone(),
            None => items.push(member.item.clone()),
        }
        let view = GroupView::new(key.to_owned(), group.marker.clone(), items);
        // The rule that made the group renders it, whichever rule routed this finding.
        let rule = record
            .as_ref()
            .filter(|r| !r.rule.is_empty())
            .map_or(member.rule, |r| r.rule.as_str())
            .to_owned();
        let system = Arc::clone(self.system(group.team, member.target)?);
        let rendered = self
            .planner
            .render_group(group.team, &rule, member.finding, &view);
        let version = member.finding.updated_at.as_deref().unwrap_or("-");
        let mut actions = Vec::new();
        let mut announce = false;

        let existing = record.filter(|r| r.ticket.is_some());
        let (mut next, ticket, created) = match (existing, member.known_ticket) {
            (Some(record), _) => {
                let ticket = record.ticket.clone().unwrap_or_else(|| unreachable!());
                (record, ticket, false)
            }
            (None, Some(known)) => {
                // The group's record is gone (a store restored from an older backup) but the
                // finding's own record names the ticket: that ticket is the group's again.
                let status = system.status(known).await.map_err(group.ticket_err())?;
                let mut record = group_record(group, key, &rule, member.finding, known);
                record.finding_resolved = status.done;
                (record, known.clone(), false)
            }
            (None, None) => {
                // No ticket recorded for the group: the first finding creates it (or finds the
                // one an interrupted create made).
                let rendered = rendered.as_ref().map_err(|error| LifecycleError::Plan {
                    team: group.team.clone(),
                    rule: Arc::from(member.rule),
                    error: error.clone(),
                })?;
                let Some(planned) = member.planned else {
                    return Err(LifecycleError::Plan {
                        team: group.team.clone(),
                        rule: Arc::from(member.rule),
                        error: PlanError::new(format!(
                            "the record of group {key:?} is missing and the rule no longer routes this finding"
                        )),
                    });
                };
                let as_group = PlannedTicket {
                    marker: group.marker.clone(),
                    payload: rendered.payload.clone(),
                    table: rendered.table.clone(),
                    severity: rendered.severity,
                    severity_fields: rendered.fields.clone(),
                    sla: rendered.sla.clone(),
                    ..planned.clone()
                };
                let (ticket, action) = self
                    .find_or_create(
                        group,
                        member.finding,
                        &as_group,
                        None,
                        intent.as_ref(),
                        true,
                    )
                    .await?;
                let mut record = group_record(group, key, &rule, member.finding, &ticket);
                record.severity = rendered.severity.as_str().to_owned();
                record.sla = rendered.sla.clone();
                if action == Action::Created {
                    // A recovered ticket's fields are unknown: sent again below.
                    record.fingerprint = fields_print(&rendered.fields);
                }
                if action == Action::Recovered {
                    // The group's record was lost after its ticket was made: follow the ticket
                    // from its status (a finished one reopens for this open finding).
                    let status = system.status(&ticket).await.map_err(group.ticket_err())?;
                    let mut record = record;
                    record.finding_resolved = status.done;
                    actions.push(Action::Recovered);
                    announce = true;
                    (record, ticket, false)
                } else {
                    actions.push(Action::Created);
                    announce = true;
                    (record, ticket, true)
                }
            }
        };
        let sync = if created {
            SyncFields::Replace
        } else {
            SyncFields::Keep
        };
        let finding_marker = member.marker;
        let item = &member.item;
        let was_open = before.as_ref().is_some_and(|b| !b.resolved);

        if !created {
            if !item.resolved && !was_open {
                // Joined, or active again: a finished ticket reopens for it.
                let rejoined = before.is_some();
                let reopen = next.finding_resolved
                    || next.closed_by_bridge
                    || next.status_from_ticket.is_some();
                let done = if reopen {
                    system
                        .status(&ticket)
                        .await
                        .map_err(group.ticket_err())?
                        .done
                } else {
                    false
                };
                if done {
                    let text = format!(
                        "{} in Security Hub: {} ({}); reopening.",
                        if rejoined {
                            "A finding of this group is active again"
                        } else {
                            "A new finding joined this group"
                        },
                        item.title,
                        item.resource
                    );
                    let event = format!("reopen:{finding_marker}:{version}");
                    self.comment_once(group, &system, &ticket, &event, &text)
                        .await?;
                    system
                        .reopen(&ticket, "")
                        .await
                        .map_err(group.ticket_err())?;
                    actions.push(Action::Reopened);
                    announce = true;
                    next.closed_by_bridge = false;
                } else if rejoined && before.as_ref().is_some_and(|b| b.resolved) {
                    let text = format!(
                        "A finding of this group is active again in Security Hub: {} ({}).",
                        item.title, item.resource
                    );
                    let event = format!("active:{finding_marker}:{version}");
                    self.comment_once(group, &system, &ticket, &event, &text)
                        .await?;
                    actions.push(Action::RecurrenceCommented);
                } else if !actions.contains(&Action::Recovered) {
                    actions.push(Action::Joined);
                    announce = true;
                }
                next.finding_resolved = false;
            } else if matches!(change, Change::Join) && before.is_some() {
                // Listed by an earlier attempt that died before the finding's own record (and
                // maybe before its write-back): nothing to change on the ticket.
                actions.push(Action::Recovered);
                announce = true;
            } else if item.resolved && was_open && !view.all_resolved() {
                let open = view.open_count();
                let text = format!(
                    "Resolved in Security Hub: {} ({}). {open} of {} findings of this group still open. {}",
                    item.title,
                    item.resource,
                    view.items.len(),
                    item.console_url
                );
                let event = format!("item-resolved:{finding_marker}:{version}");
                self.comment_once(group, &system, &ticket, &event, &text)
                    .await?;
                actions.push(Action::ItemResolved);
            }
        }

        // Summary, description and priority as the items now say, sent only when they changed.
        // The due date is rendered from the finding at hand, so it moves only with the group's
        // severity; otherwise each member would move it to its own first observation.
        match &rendered {
            Ok(rendered) => {
                let severity_moved = rendered.severity.as_str() != next.severity;
                let mut fields = rendered.fields.clone();
                if !severity_moved && !created {
                    fields.retain(|name, _| !crate::render::is_due_field(name));
                }
                let print = fields_print(&rendered.fields);
                if print != next.fingerprint {
                    let update = FieldUpdate {
                        fields,
                        ..FieldUpdate::default()
                    };
                    system
                        .update_fields(&ticket, &update)
                        .await
                        .map_err(group.ticket_err())?;
                    next.fingerprint = print;
                }
                if severity_moved {
                    actions.push(Action::SeverityChanged {
                        from: next.severity.clone(),
                        to: rendered.severity,
                    });
                    next.severity = rendered.severity.as_str().to_owned();
                    next.sla = carry_breach(next.sla.as_ref(), rendered.sla.clone());
                }
            }
            Err(error) => {
                // The rule was deleted or no longer groups: the items still move the ticket
                // (ticked off, closed, reopened), only its text stays as it was.
                tracing::warn!(team = %group.team, marker = %group.marker, rule, %error, "group ticket not re-rendered");
            }
        }

        if view.all_resolved() && !next.finding_resolved {
            let options = self
                .planner
                .rule_options(group.team, &rule)
                .unwrap_or_default();
            let text = format!(
                "Every finding of this group is resolved in Security Hub ({} findings).",
                view.items.len()
            );
            let event = format!("resolved:{finding_marker}:{version}");
            match options.on_resolved {
                OnResolved::Close => {
                    self.comment_once(group, &system, &ticket, &event, &text)
                        .await?;
                    system
                        .transition(&ticket, &TargetStatus::Done, &text)
                        .await
                        .map_err(group.ticket_err())?;
                    next.closed_by_bridge = true;
                    actions.push(Action::Closed);
                }
                OnResolved::Comment => {
                    self.comment_once(group, &system, &ticket, &event, &text)
                        .await?;
                    actions.push(Action::ResolutionCommented);
                }
                OnResolved::Ignore => actions.push(Action::ResolutionIgnored),
            }
            next.finding_resolved = true;
        }

        next.group = Some(Grouping::Group {
            key: key.to_owned(),
            items: view.items,
        });
        next.modified_at = chrono::Utc::now().timestamp();
        self.put(group, &next, sync).await?;
        Ok(Step::Done {
            ticket,
            actions,
            announce,
        })
    }
}

/// A group's record for `ticket` before anything is known of its items' history.
fn group_record(
    group: &Held<'_>,
    key: &str,
    rule: &str,
    finding: &Finding,
    ticket: &TicketRef,
) -> Record {
    Record {
        marker: group.marker.clone(),
        finding_id: format!("group:{key}"),
        team: group.team.to_string(),
        schema: finding.schema,
        write_back: finding.write_back.clone(),
        rule: rule.to_owned(),
        ticket: Some(ticket.clone()),
        updated_at: None,
        fingerprint: String::new(),
        severity: String::new(),
        finding_resolved: false,
        closed_by_bridge: false,
        status_to_hub: None,
        status_from_ticket: None,
        modified_at: 0,
        sla: None,
        group: None,
    }
}

/// What the group ticket's rendered fields hash to, the due date aside (it follows the group's
/// severity, not each member): equal → nothing to send.
fn fields_print(fields: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut fields = fields.clone();
    fields.retain(|name, _| !crate::render::is_due_field(name));
    let text = serde_json::Value::Object(fields).to_string();
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}
