//! Polling each connection for tickets updated since the last pass (with an overlap window, so
//! a ticket updated while a page was read is not missed), and retrying what Security Hub refused.

use super::*;

impl StatusSync {
    /// Polls until `shutdown` fires: one poll at once, then one every `interval`. A poll in
    /// progress is abandoned on shutdown; that is safe because writes are idempotent and the
    /// watermark only moves after a poll's writes.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            tokio::select! {
                report = self.poll_once() => log_report(&report),
                () = shutdown.wait() => break,
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.interval) => {}
                () = shutdown.wait() => break,
            }
        }
        tracing::info!("status sync stopped");
    }

    /// One poll of every connection (in name order), retries of earlier refusals first.
    pub async fn poll_once(&self) -> SyncReport {
        let _one_at_a_time = self.polling.lock().await;
        let mut report = SyncReport::default();
        self.retry_unprocessed(&mut report).await;
        let mut connections: Vec<(&String, &Arc<dyn TicketSystem>)> = self.tickets.iter().collect();
        connections.sort_by(|a, b| a.0.cmp(b.0));
        for (name, system) in connections {
            self.poll_connection(name, system.as_ref(), &mut report)
                .await;
        }
        report
    }

    pub(super) async fn poll_connection(
        &self,
        name: &str,
        system: &dyn TicketSystem,
        report: &mut SyncReport,
    ) {
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
                    connection = name,
                    watermark = raw,
                    "stored watermark is not an RFC 3339 time; starting from the first-run lookback"
                );
                Utc::now() - chrono_duration(self.config.first_lookback)
            }
            None => Utc::now() - chrono_duration(self.config.first_lookback),
        };
        let since = base - chrono_duration(self.config.overlap);
        let since_text = since.to_rfc3339_opts(SecondsFormat::Secs, true);

        let (candidates, complete) = self.collect(name, system, &since_text, report).await;

        let mut pendings = Vec::new();
        let mut newest: Option<DateTime<Utc>> = None;
        let mut failed = !complete;
        let mut handled: Vec<Candidate> = Vec::new();
        for candidate in candidates {
            match self.decide(candidate.clone(), None).await {
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
        let pendings = self.one_per_finding(pendings, report, &mut handled);
        for (pending, result) in self.write(pendings).await {
            match result {
                WriteResult::Written(_) => {
                    report.written += 1;
                    handled.push(pending.candidate);
                }
                WriteResult::Unprocessed { code, message } => {
                    self.schedule_retry(&pending.candidate);
                    report
                        .unprocessed
                        .push(unprocessed_entry(&pending, code, message));
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
            match self.store.set_watermark(&watermark_name, &value).await {
                Ok(()) => current = newest,
                Err(e) => {
                    telemetry::error(ErrorKind::Store);
                    report
                        .errors
                        .push(format!("{name}: storing the watermark: {e}"));
                }
            }
        } else if failed && newest.is_some() {
            tracing::warn!(
                connection = name,
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

    /// Pages through the tickets updated since `since`, dropping duplicates. The flag is false
    /// when a page could not be fetched (what was fetched before is still handled).
    pub(super) async fn collect(
        &self,
        name: &str,
        system: &dyn TicketSystem,
        since: &str,
        report: &mut SyncReport,
    ) -> (Vec<Candidate>, bool) {
        let seen = self.state().seen.get(name).cloned().unwrap_or_default();
        let mut order: Vec<String> = Vec::new();
        let mut by_key: HashMap<String, Candidate> = HashMap::new();
        let mut cursor: Option<String> = None;
        let max = self.config.max_per_tick.max(1);
        // A ticket system that hands back a cursor forever must not keep a tick going forever.
        let max_pages = max.saturating_add(10);
        let mut complete = true;
        'pages: for _ in 0..max_pages {
            let page = match system.updated_since(since, cursor.as_deref()).await {
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
                    connection: name.to_owned(),
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

    /// Syncs again every finding Security Hub refused earlier, from the ticket's current status.
    pub(super) async fn retry_unprocessed(&self, report: &mut SyncReport) {
        let due: Vec<(Marker, Retry)> = self.state().retries.drain().collect();
        for (marker, mut retry) in due {
            report.retried += 1;
            retry.attempts += 1;
            let outcome = self.sync_one(&retry.connection, &marker, None).await;
            let give_up = retry.attempts >= self.config.max_retries.max(1);
            match outcome {
                Ok((TicketSyncOutcome::Written { .. }, _)) => report.written += 1,
                Ok((TicketSyncOutcome::Skipped { reason }, _)) => report.skip(reason),
                Ok((TicketSyncOutcome::Unprocessed { code, message }, named)) => {
                    let (ticket, finding_id) =
                        named.unwrap_or_else(|| (marker.to_string(), String::new()));
                    let entry = UnprocessedTicket {
                        connection: retry.connection.clone(),
                        ticket,
                        finding_id,
                        code,
                        message,
                    };
                    if give_up {
                        // `sync_ticket` queued it again; this was the last attempt.
                        self.state().retries.remove(&marker);
                        tracing::error!(%marker, code = %entry.code, "Security Hub refused the ticket status on every retry; giving up until the ticket changes again");
                        report.abandoned.push(entry);
                    } else {
                        self.state().retries.insert(marker.clone(), retry);
                        report.unprocessed.push(entry);
                    }
                }
                Err(e) => {
                    report
                        .errors
                        .push(format!("{} {marker}: retry: {e}", retry.connection));
                    if !give_up {
                        self.state().retries.insert(marker.clone(), retry);
                    }
                }
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

    pub(super) fn schedule_retry(&self, candidate: &Candidate) {
        let mut state = self.state();
        state
            .retries
            .entry(candidate.marker.clone())
            .or_insert_with(|| Retry {
                connection: candidate.connection.clone(),
                attempts: 0,
            });
    }
}
