//! Polling each connection — each of its tables, for a system with tables — for tickets updated
//! since the last pass (with an overlap window, so a ticket updated while a page was read is not
//! missed), and retrying what Security Hub refused, from the store's retry queue.

use super::*;

/// One list the poller reads: a connection, and for a system with tables (ServiceNow) one table.
pub(super) struct Target<'a> {
    connection: &'a str,
    system: &'a dyn TicketSystem,
    /// `None` for a system without tables.
    table: Option<String>,
    /// What reports and the watermark call it: the connection's name for Jira and for the
    /// connection's default table (`jira`, `servicenow`), `<connection>:<table>` for any other
    /// table (`servicenow:sn_si_incident`).
    key: String,
}

impl StatusSync {
    /// Every list to poll, connections in name order. A connection with tables polls its
    /// default table and every table a rule of the mapping set in force creates in. The default
    /// table keeps the connection's own watermark (`sync:servicenow`), the one written when only
    /// the default table was polled, so an upgrade neither skips nor re-reads anything there;
    /// another table starts from the first-run look-back, like a new connection.
    pub(super) fn targets(&self) -> Vec<Target<'_>> {
        let mappings = self.mappings.current();
        let mut connections: Vec<(&String, &Arc<dyn TicketSystem>)> = self.tickets.iter().collect();
        connections.sort_by(|a, b| a.0.cmp(b.0));
        let mut targets = Vec::new();
        for (name, system) in connections {
            let Some(default) = system.default_table() else {
                targets.push(Target {
                    connection: name,
                    system: system.as_ref(),
                    table: None,
                    key: name.clone(),
                });
                continue;
            };
            let mut tables = BTreeSet::from([default.to_owned()]);
            tables.extend(
                mappings
                    .rules
                    .iter()
                    .filter(|r| r.target == *name)
                    .filter_map(|r| match &r.ticket {
                        crate::mapping::spec::TicketSpec::ServiceNow(spec) => {
                            Some(spec.table.clone())
                        }
                        crate::mapping::spec::TicketSpec::Jira(_) => None,
                    }),
            );
            for table in tables {
                let key = if table == default {
                    name.clone()
                } else {
                    format!("{name}:{table}")
                };
                targets.push(Target {
                    connection: name,
                    system: system.as_ref(),
                    table: Some(table),
                    key,
                });
            }
        }
        targets
    }

    /// One poll of every target (retries of earlier refusals first), writing watermarks under
    /// `fence`, the lease grant the poll runs under.
    pub(super) async fn poll_all(&self, fence: i64) -> SyncReport {
        let _one_at_a_time = self.polling.lock().await;
        let mut report = SyncReport::default();
        self.retry_unprocessed(&mut report).await;
        for target in self.targets() {
            let errors = report.errors.len();
            self.poll_target(&target, fence, &mut report).await;
            self.note_lag(&target.key, report.errors.len() == errors);
        }
        // After the polls: a re-acceptance or a real close the tickets reported is in the
        // schedule before anything due is acted on.
        self.expire_acceptances(&mut report).await;
        report
    }

    /// Sets the target's sync-lag gauge: the time since its last complete poll (one without an
    /// error, its watermark stored), or since this replica first tried it.
    fn note_lag(&self, key: &str, complete: bool) {
        let now = std::time::Instant::now();
        let mut state = self.state();
        let since = state.last_complete.entry(key.to_owned()).or_insert(now);
        if complete {
            *since = now;
        }
        telemetry::sync_lag(key, now.duration_since(*since).as_secs_f64());
    }

    pub(super) async fn poll_target(
        &self,
        target: &Target<'_>,
        fence: i64,
        report: &mut SyncReport,
    ) {
        let name = target.key.as_str();
        let watermark_name = format!("{WATERMARK_PREFIX}{name}");
        let stored = match self.store.watermark(&watermark_name).await {
            Ok(w) => w,
            Err(e) => {
                telemetry::error(ErrorKind::Store);
                report
                    .errors
                    .push(format!("{name}: reading the watermark: {e}"));
                return;
            }
        };
        let base = match stored.as_deref().map(|w| (w, parse_time(w))) {
            Some((_, Some(at))) => at,
            Some((raw, None)) => {
                tracing::warn!(
                    connection = target.connection,
                    table = target.table.as_deref(),
                    watermark = raw,
                    "stored watermark is not an RFC 3339 time; starting from the first-run lookback"
                );
                Utc::now() - chrono_duration(self.config.first_lookback)
            }
            None => Utc::now() - chrono_duration(self.config.first_lookback),
        };
        let since = base - chrono_duration(self.config.overlap);
        let since_text = since.to_rfc3339_opts(SecondsFormat::Secs, true);

        let (candidates, complete) = self.collect(target, &since_text, report).await;

        let mut pendings = Vec::new();
        let mut newest: Option<DateTime<Utc>> = None;
        let mut failed = !complete;
        let mut handled: Vec<Candidate> = Vec::new();
        let mut records = self.prefetch(&candidates).await;
        for candidate in candidates {
            // Each prefetched record serves one candidate: a later one for the same marker reads
            // it again, after what deciding the first may have written.
            let record = records.remove(&candidate.marker);
            match self.decide(candidate.clone(), record).await {
                Ok(Decision::Write(pending)) => pendings.push(*pending),
                Ok(Decision::Skip(reason)) => {
                    report.skip(reason);
                    handled.push(candidate);
                }
                Err(e) => {
                    telemetry::error(ErrorKind::Store);
                    report
                        .errors
                        .push(format!("{name} {}: {e}", candidate.ticket.key));
                    failed = true;
                }
            }
        }
        let pendings = self.one_per_finding(per_finding(pendings), report, &mut handled);
        for (pending, result) in self.write(pendings).await {
            match result {
                WriteResult::Written(_) => {
                    report.written += 1;
                    handled.push(pending.candidate);
                }
                WriteResult::Unprocessed { code, message } => {
                    let entry = unprocessed_entry(&pending, code, message);
                    let candidate = &pending.candidate;
                    match self
                        .schedule_retry(&candidate.connection, &candidate.marker)
                        .await
                    {
                        Ok(true) => report.unprocessed.push(entry),
                        Ok(false) => {
                            tracing::error!(marker = %candidate.marker, code = %entry.code, "Security Hub refused the ticket status and the retry queue is full; not retried until the ticket changes again");
                            report.abandoned.push(entry);
                        }
                        Err(e) => {
                            // Not queued: keep the watermark, so the next poll reads it again.
                            telemetry::error(ErrorKind::Store);
                            report.errors.push(format!(
                                "{name} {}: queueing the refused write-back: {e}",
                                candidate.ticket.key
                            ));
                            report.unprocessed.push(entry);
                            failed = true;
                            continue;
                        }
                    }
                    // Handled as far as the watermark goes: the retry queue takes it from here.
                    handled.push(pending.candidate);
                }
                WriteResult::Failed(message) => {
                    report.errors.push(format!(
                        "{name} {}: write-back failed: {message}",
                        pending.candidate.ticket.key
                    ));
                    failed = true;
                }
            }
        }
        {
            let mut state = self.state();
            let seen = state.seen.entry(name.to_owned()).or_default();
            for candidate in &handled {
                if let Some(updated) = &candidate.updated_at {
                    seen.insert(candidate.ticket.key.clone(), updated.clone());
                }
                newest = newest.max(candidate.updated_time());
            }
        }

        let mut current = base;
        if !failed && let Some(newest) = newest.filter(|n| *n > base) {
            let value = newest.to_rfc3339_opts(SecondsFormat::Millis, true);
            match self
                .store
                .set_watermark_fenced(&watermark_name, &value, fence)
                .await
            {
                Ok(true) => current = newest,
                Ok(false) => {
                    report.errors.push(format!(
                        "{name}: the watermark was not stored: a later holder of the status-sync lease wrote it (this process no longer polls)"
                    ));
                }
                Err(e) => {
                    telemetry::error(ErrorKind::Store);
                    report
                        .errors
                        .push(format!("{name}: storing the watermark: {e}"));
                }
            }
        } else if failed && newest.is_some() {
            tracing::warn!(
                connection = target.connection,
                table = target.table.as_deref(),
                "status sync did not finish cleanly; the watermark stays so the next poll reads the same window again"
            );
        }
        self.prune_seen(name, current);
        if stored.is_some() || current != base {
            report.watermarks.insert(
                name.to_owned(),
                current.to_rfc3339_opts(SecondsFormat::Millis, true),
            );
        }
    }

    /// The records of a poll's candidates, in one batch read: most of a poll's tickets are ones
    /// the bridge just created, and one read each was most of the status sync's store calls.
    /// On failure nothing is prefetched and each decision reads its own record (and reports its
    /// own error), as it would without the batch.
    async fn prefetch(&self, candidates: &[Candidate]) -> HashMap<Marker, Record> {
        if candidates.is_empty() {
            return HashMap::new();
        }
        let markers: Vec<Marker> = candidates.iter().map(|c| c.marker.clone()).collect();
        match self.store.get_many(&markers).await {
            Ok(records) => records,
            Err(e) => {
                tracing::debug!(error = %e, count = markers.len(), "batch read of the poll's records failed; reading them one by one");
                HashMap::new()
            }
        }
    }

    /// Pages through the tickets updated since `since`, dropping duplicates. The flag is false
    /// when a page could not be fetched (what was fetched before is still handled).
    pub(super) async fn collect(
        &self,
        target: &Target<'_>,
        since: &str,
        report: &mut SyncReport,
    ) -> (Vec<Candidate>, bool) {
        let name = target.key.as_str();
        let seen = self.state().seen.get(name).cloned().unwrap_or_default();
        let mut order: Vec<String> = Vec::new();
        let mut by_key: HashMap<String, Candidate> = HashMap::new();
        let mut cursor: Option<String> = None;
        let max = self.config.max_per_tick.max(1);
        // A ticket system that hands back a cursor forever must not keep a tick going forever.
        let max_pages = max.saturating_add(10);
        let mut complete = true;
        'pages: for _ in 0..max_pages {
            let page = match &target.table {
                Some(table) => {
                    target
                        .system
                        .updated_since_in(since, table, cursor.as_deref())
                        .await
                }
                None => target.system.updated_since(since, cursor.as_deref()).await,
            };
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    telemetry::error(ErrorKind::Ticket);
                    report
                        .errors
                        .push(format!("{name}: polling for updated tickets: {e}"));
                    complete = false;
                    break;
                }
            };
            report.pages += 1;
            for update in page.tickets {
                report.read += 1;
                let TicketUpdate {
                    ticket,
                    marker,
                    status,
                    updated_at,
                } = update;
                let Some(marker) = marker else {
                    report.skip(SkipReason::NotBridge);
                    continue;
                };
                if seen.get(&ticket.key) == Some(&updated_at) {
                    report.duplicates += 1;
                    continue;
                }
                let candidate = Candidate {
                    connection: target.connection.to_owned(),
                    ticket,
                    marker,
                    status,
                    updated_at: Some(updated_at),
                };
                if let Some(existing) = by_key.get_mut(&candidate.ticket.key) {
                    report.duplicates += 1;
                    if candidate.updated_time() >= existing.updated_time() {
                        *existing = candidate;
                    }
                    continue;
                }
                if by_key.len() >= max {
                    report.truncated.push(name.to_owned());
                    break 'pages;
                }
                order.push(candidate.ticket.key.clone());
                by_key.insert(candidate.ticket.key.clone(), candidate);
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let candidates = order
            .into_iter()
            .filter_map(|key| by_key.remove(&key))
            .collect();
        (candidates, complete)
    }

    /// Syncs again, from the ticket's current status, every finding Security Hub refused
    /// earlier that is due in the store's retry queue (at most `max_per_tick` a poll).
    pub(super) async fn retry_unprocessed(&self, report: &mut SyncReport) {
        let now = Utc::now().timestamp_millis();
        let due = match self
            .store
            .sync_retries_due(now, self.config.max_per_tick.max(1))
            .await
        {
            Ok(due) => due,
            Err(e) => {
                telemetry::error(ErrorKind::Store);
                report.errors.push(format!("reading the retry queue: {e}"));
                return;
            }
        };
        for retry in due {
            report.retried += 1;
            let attempts = retry.attempts.saturating_add(1);
            let give_up = attempts >= self.config.max_retries.max(1);
            let outcome = self.sync_one(&retry.connection, &retry.marker, None).await;
            let settled = match outcome {
                Ok((TicketSyncOutcome::Written { .. }, _)) => {
                    report.written += 1;
                    true
                }
                Ok((TicketSyncOutcome::Skipped { reason }, _)) => {
                    report.skip(reason);
                    true
                }
                Ok((TicketSyncOutcome::Unprocessed { code, message }, named)) => {
                    let (ticket, finding_id) =
                        named.unwrap_or_else(|| (retry.marker.to_string(), String::new()));
                    let entry = UnprocessedTicket {
                        connection: retry.connection.clone(),
                        ticket,
                        finding_id,
                        code,
                        message,
                    };
                    if give_up {
                        tracing::error!(marker = %retry.marker, code = %entry.code, "Security Hub refused the ticket status on every retry; giving up until the ticket changes again");
                        report.abandoned.push(entry);
                    } else {
                        report.unprocessed.push(entry);
                    }
                    give_up
                }
                Err(e) => {
                    report
                        .errors
                        .push(format!("{} {}: retry: {e}", retry.connection, retry.marker));
                    give_up
                }
            };
            let stored = if settled {
                self.store.remove_sync_retry(&retry.marker).await
            } else {
                let again = SyncRetry {
                    attempts,
                    due_at: now,
                    ..retry.clone()
                };
                self.store.enqueue_sync_retry(&again).await.map(drop)
            };
            if let Err(e) = stored {
                telemetry::error(ErrorKind::Store);
                report.errors.push(format!(
                    "{} {}: updating the retry queue: {e}",
                    retry.connection, retry.marker
                ));
            }
        }
    }

    /// Forgets tickets that fell out of the overlap window: they cannot be returned at the
    /// same update time again.
    pub(super) fn prune_seen(&self, name: &str, watermark: DateTime<Utc>) {
        // One extra minute: Jira compares at minute precision.
        let horizon =
            watermark - chrono_duration(self.config.overlap) - chrono::Duration::minutes(1);
        if let Some(seen) = self.state().seen.get_mut(name) {
            seen.retain(|_, updated| parse_time(updated).is_none_or(|at| at >= horizon));
        }
    }

    /// Queues a refused write-back for the next polls (whichever replica makes them).
    /// `Ok(false)`: the queue is full and it was not queued.
    pub(super) async fn schedule_retry(
        &self,
        connection: &str,
        marker: &Marker,
    ) -> Result<bool, StoreError> {
        let retry = SyncRetry {
            marker: marker.clone(),
            connection: connection.to_owned(),
            attempts: 0,
            due_at: Utc::now().timestamp_millis(),
        };
        self.store.enqueue_sync_retry(&retry).await
    }
}
