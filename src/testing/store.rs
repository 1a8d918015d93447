//! [`MemoryStore`]: the store in memory, with real lease semantics on Tokio's clock (paused tests
//! can expire leases) and switches that make claims fail, renewals lost or a lease stolen.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::lock;
use crate::marker::Marker;
use crate::store::{
    Acceptance, Adoption, BoxFuture, Claim, Claimed, FindingState, Intent, MAX_ACCEPTANCES,
    MAX_SYNC_RETRIES, Record, RecordsPage, Store, StoreError, SyncFields, SyncRetry,
    rfc3339_millis,
};

#[derive(Default)]
struct Entry {
    record: Option<Record>,
    intent: Option<Intent>,
    lease: Option<(String, Instant)>,
}

#[derive(Default, Clone)]
struct FindingEntry {
    teams: Vec<String>,
    resolved_at: Option<(i64, String)>,
}

/// A named lease: holder (none once released), end of the hold, and the last fence.
type NamedLease = (Option<String>, Instant, i64);

/// A store with real lease semantics (on Tokio's clock, so paused tests can expire leases).
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<Marker, Entry>>,
    findings: Mutex<HashMap<String, FindingEntry>>,
    /// Error returned by the next `claim` calls while set.
    pub fail_claims: Mutex<Option<String>>,
    /// Renewals answered "lost" while set (a store that was unreachable past the lease).
    pub lose_renewals: Mutex<bool>,
    /// The next `put` on this marker finds its lease taken over.
    steal_on_put: Mutex<Option<Marker>>,
    watermarks: Mutex<HashMap<String, String>>,
    leases: Mutex<HashMap<String, NamedLease>>,
    /// The fence of the last grant of any lease (fences only grow).
    last_fence: Mutex<i64>,
    watermark_fences: Mutex<HashMap<String, i64>>,
    retries: Mutex<std::collections::BTreeMap<Marker, SyncRetry>>,
    /// Lease calls by this owner never answer while set (its store connection hangs).
    pub stall_leases_of: Mutex<Option<String>>,
    /// The expiry schedule of risk acceptances.
    acceptances: Mutex<std::collections::BTreeMap<Marker, Acceptance>>,
}

impl MemoryStore {
    /// The intent stored on `marker`, if any.
    pub fn intent(&self, marker: &Marker) -> Option<Intent> {
        lock(&self.entries)
            .get(marker)
            .and_then(|e| e.intent.clone())
    }

    /// Makes the next `put` on `marker` find its lease taken over by another worker.
    pub fn steal_before_put(&self, marker: &Marker) {
        *lock(&self.steal_on_put) = Some(marker.clone());
    }

    /// Lets every lease run out (as time passing would).
    pub fn expire_leases(&self) {
        let past = Instant::now() - Duration::from_millis(1);
        for entry in lock(&self.entries).values_mut() {
            if let Some((_, until)) = entry.lease.as_mut() {
                *until = past;
            }
        }
    }

    /// Moves every intent's settle time into the past (as the settle time passing would).
    pub fn age_intents(&self) {
        let past = chrono::Utc::now().timestamp_millis() - 1;
        for entry in lock(&self.entries).values_mut() {
            if let Some(intent) = entry.intent.as_mut() {
                intent.search_after = past;
            }
        }
    }

    fn state(&self, finding_id: &str, existed: Option<&FindingEntry>) -> FindingState {
        let _ = finding_id;
        match existed {
            Some(e) => FindingState {
                teams: e.teams.clone(),
                resolved_at: e.resolved_at.as_ref().map(|(_, at)| at.clone()),
                indexed: true,
            },
            None => FindingState::default(),
        }
    }

    pub fn record(&self, marker: &Marker) -> Option<Record> {
        lock(&self.entries)
            .get(marker)
            .and_then(|e| e.record.clone())
    }

    /// True while someone holds an unexpired lease on `marker`.
    pub fn is_claimed(&self, marker: &Marker) -> bool {
        lock(&self.entries)
            .get(marker)
            .and_then(|e| e.lease.as_ref())
            .is_some_and(|(_, until)| *until > Instant::now())
    }

    /// Drops the record of `marker`, as a crash before it was written would have left things.
    pub fn forget(&self, marker: &Marker) {
        lock(&self.entries).remove(marker);
    }

    pub fn records(&self) -> Vec<Record> {
        lock(&self.entries)
            .values()
            .filter_map(|e| e.record.clone())
            .collect()
    }
}

impl Store for MemoryStore {
    fn claim<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move {
            if let Some(message) = lock(&self.fail_claims).clone() {
                return Err(StoreError::Unavailable(message));
            }
            let now = Instant::now();
            let mut entries = lock(&self.entries);
            let entry = entries.entry(marker.clone()).or_default();
            if let Some((holder, until)) = &entry.lease
                && holder != owner
                && *until > now
            {
                return Ok(Claim::Busy);
            }
            entry.lease = Some((owner.to_owned(), now + lease));
            Ok(Claim::Acquired(Claimed {
                record: entry.record.clone(),
                intent: entry.intent.clone(),
            }))
        })
    }

    fn renew<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            if *lock(&self.lose_renewals) {
                return Ok(false);
            }
            let now = Instant::now();
            let mut entries = lock(&self.entries);
            match entries.get_mut(marker) {
                Some(entry) => match &entry.lease {
                    Some((holder, until)) if holder == owner && *until >= now => {
                        entry.lease = Some((owner.to_owned(), now + lease));
                        Ok(true)
                    }
                    _ => Ok(false),
                },
                None => Ok(false),
            }
        })
    }

    fn set_intent<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
        intent: Option<&'a Intent>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut entries = lock(&self.entries);
            match entries.get_mut(marker) {
                Some(entry) if entry.lease.as_ref().is_some_and(|(h, _)| h == owner) => {
                    entry.intent = intent.cloned();
                    Ok(())
                }
                _ => Err(StoreError::LostClaim(marker.to_string())),
            }
        })
    }

    fn put<'a>(
        &'a self,
        record: &'a Record,
        owner: &'a str,
        sync: SyncFields,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut entries = lock(&self.entries);
            let entry = entries.entry(record.marker.clone()).or_default();
            let mut steal = lock(&self.steal_on_put);
            if steal.as_ref() == Some(&record.marker) {
                *steal = None;
                entry.lease = Some((
                    "thief".to_owned(),
                    Instant::now() + Duration::from_secs(600),
                ));
            }
            match &entry.lease {
                Some((holder, _)) if holder == owner => {
                    let mut record = record.clone();
                    if sync == SyncFields::Keep
                        && let Some(stored) = &entry.record
                    {
                        record.status_from_ticket = stored.status_from_ticket.clone();
                        record.status_to_hub = stored.status_to_hub.clone();
                    }
                    entry.record = Some(record);
                    entry.intent = None;
                    entry.lease = None;
                    Ok(())
                }
                _ => Err(StoreError::LostClaim(record.marker.to_string())),
            }
        })
    }

    fn enlist<'a>(
        &'a self,
        finding_id: &'a str,
        team: &'a str,
    ) -> BoxFuture<'a, Result<FindingState, StoreError>> {
        Box::pin(async move {
            let mut findings = lock(&self.findings);
            let state = self.state(finding_id, findings.get(finding_id));
            let entry = findings.entry(finding_id.to_owned()).or_default();
            if !entry.teams.iter().any(|t| t == team) {
                entry.teams.push(team.to_owned());
                entry.teams.sort();
            }
            Ok(state)
        })
    }

    fn resolve<'a>(
        &'a self,
        finding_id: &'a str,
        updated_at: &'a str,
    ) -> BoxFuture<'a, Result<FindingState, StoreError>> {
        Box::pin(async move {
            let millis = rfc3339_millis(updated_at)
                .ok_or_else(|| StoreError::Fatal(format!("bad time {updated_at}")))?;
            let mut findings = lock(&self.findings);
            let mut state = self.state(finding_id, findings.get(finding_id));
            let entry = findings.entry(finding_id.to_owned()).or_default();
            if entry
                .resolved_at
                .as_ref()
                .is_none_or(|(ms, _)| *ms < millis)
            {
                entry.resolved_at = Some((millis, updated_at.to_owned()));
                state.resolved_at = Some(updated_at.to_owned());
            }
            Ok(state)
        })
    }

    fn finding<'a>(
        &'a self,
        finding_id: &'a str,
    ) -> BoxFuture<'a, Result<FindingState, StoreError>> {
        Box::pin(async move { Ok(self.state(finding_id, lock(&self.findings).get(finding_id))) })
    }

    fn release<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if let Some(entry) = lock(&self.entries).get_mut(marker)
                && entry
                    .lease
                    .as_ref()
                    .is_some_and(|(holder, _)| holder == owner)
            {
                entry.lease = None;
            }
            Ok(())
        })
    }

    fn get<'a>(&'a self, marker: &'a Marker) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        Box::pin(async move { Ok(self.record(marker)) })
    }

    fn set_sync_status<'a>(
        &'a self,
        marker: &'a Marker,
        status_from_ticket: Option<&'a str>,
        status_to_hub: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if let Some(record) = lock(&self.entries)
                .get_mut(marker)
                .and_then(|e| e.record.as_mut())
            {
                // `None` keeps the stored value, as in the SQLite and DynamoDB stores.
                if let Some(s) = status_from_ticket {
                    record.status_from_ticket = Some(s.to_owned());
                }
                if let Some(s) = status_to_hub {
                    record.status_to_hub = Some(s.to_owned());
                }
            }
            Ok(())
        })
    }

    fn watermark<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        let value = self.watermarks.lock().unwrap().get(name).cloned();
        Box::pin(async move { Ok(value) })
    }

    fn set_watermark<'a>(
        &'a self,
        name: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.watermarks
            .lock()
            .unwrap()
            .insert(name.to_owned(), value.to_owned());
        Box::pin(async { Ok(()) })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    fn acquire_lease<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        Box::pin(async move {
            self.stall(owner).await;
            let now = Instant::now();
            let mut leases = lock(&self.leases);
            let free = leases.get(name).is_none_or(|(holder, until, _)| {
                holder.as_deref().is_none_or(|h| h == owner) || *until < now
            });
            if !free {
                return Ok(None);
            }
            let fence = {
                let mut last = lock(&self.last_fence);
                *last += 1;
                *last
            };
            leases.insert(name.to_owned(), (Some(owner.to_owned()), now + ttl, fence));
            Ok(Some(fence))
        })
    }

    fn release_lease<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.stall(owner).await;
            if let Some((holder, until, _)) = lock(&self.leases).get_mut(name)
                && holder.as_deref() == Some(owner)
            {
                *holder = None;
                *until = Instant::now();
            }
            Ok(())
        })
    }

    fn set_watermark_fenced<'a>(
        &'a self,
        name: &'a str,
        value: &'a str,
        fence: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut fences = lock(&self.watermark_fences);
            if fences.get(name).is_some_and(|stored| *stored > fence) {
                return Ok(false);
            }
            fences.insert(name.to_owned(), fence);
            lock(&self.watermarks).insert(name.to_owned(), value.to_owned());
            Ok(true)
        })
    }

    fn enqueue_sync_retry<'a>(
        &'a self,
        retry: &'a SyncRetry,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut retries = lock(&self.retries);
            if !retries.contains_key(&retry.marker) && retries.len() >= MAX_SYNC_RETRIES {
                return Ok(false);
            }
            retries.insert(retry.marker.clone(), retry.clone());
            Ok(true)
        })
    }

    fn sync_retries_due<'a>(
        &'a self,
        now: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<SyncRetry>, StoreError>> {
        Box::pin(async move {
            let mut due: Vec<SyncRetry> = lock(&self.retries)
                .values()
                .filter(|r| r.due_at <= now)
                .cloned()
                .collect();
            due.sort_by(|a, b| (a.due_at, &a.marker).cmp(&(b.due_at, &b.marker)));
            due.truncate(limit);
            Ok(due)
        })
    }

    fn remove_sync_retry<'a>(
        &'a self,
        marker: &'a Marker,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            lock(&self.retries).remove(marker);
            Ok(())
        })
    }

    // ---- reconcile (issue 16) ----

    /// In marker order, like the SQLite store.
    fn records_page<'a>(
        &'a self,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<RecordsPage, StoreError>> {
        Box::pin(async move {
            let entries = lock(&self.entries);
            let mut records: Vec<Record> = entries
                .iter()
                .filter(|(marker, _)| cursor.is_none_or(|c| marker.as_str() > c))
                .filter_map(|(_, e)| e.record.clone())
                .collect();
            records.sort_by(|a, b| a.marker.cmp(&b.marker));
            let full = records.len() > limit.max(1);
            records.truncate(limit.max(1));
            Ok(RecordsPage {
                next: full
                    .then(|| records.last().map(|r| r.marker.to_string()))
                    .flatten(),
                records,
            })
        })
    }

    fn adopt<'a>(
        &'a self,
        record: &'a Record,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Adoption, StoreError>> {
        Box::pin(async move {
            let mut entries = lock(&self.entries);
            let entry = entries.entry(record.marker.clone()).or_default();
            if entry
                .lease
                .as_ref()
                .is_none_or(|(holder, _)| holder != owner)
            {
                return Err(StoreError::LostClaim(record.marker.to_string()));
            }
            if entry.record.is_some() {
                return Ok(Adoption::RecordExists);
            }
            if entry.intent.is_some() {
                return Ok(Adoption::CreatePending);
            }
            entry.record = Some(record.clone());
            entry.lease = None;
            Ok(Adoption::Adopted)
        })
    }

    fn drop_record<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut entries = lock(&self.entries);
            let Some(entry) = entries.get(marker) else {
                return Err(StoreError::LostClaim(marker.to_string()));
            };
            if entry
                .lease
                .as_ref()
                .is_none_or(|(holder, _)| holder != owner)
            {
                return Err(StoreError::LostClaim(marker.to_string()));
            }
            if entry.intent.is_some() {
                return Ok(false);
            }
            entries.remove(marker);
            Ok(true)
        })
    }

    // ---- risk acceptance that expires (issue 15) ----

    fn schedule_acceptance<'a>(
        &'a self,
        acceptance: &'a Acceptance,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut scheduled = lock(&self.acceptances);
            if !scheduled.contains_key(&acceptance.marker) && scheduled.len() >= MAX_ACCEPTANCES {
                return Ok(false);
            }
            scheduled.insert(acceptance.marker.clone(), acceptance.clone());
            Ok(true)
        })
    }

    fn acceptances_due<'a>(
        &'a self,
        now: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Acceptance>, StoreError>> {
        Box::pin(async move {
            let mut due: Vec<Acceptance> = lock(&self.acceptances)
                .values()
                .filter(|a| a.until <= now)
                .cloned()
                .collect();
            due.sort_by(|a, b| (a.until, &a.marker).cmp(&(b.until, &b.marker)));
            due.truncate(limit);
            Ok(due)
        })
    }

    fn clear_acceptance<'a>(
        &'a self,
        marker: &'a Marker,
        until: Option<i64>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut scheduled = lock(&self.acceptances);
            match (scheduled.get(marker), until) {
                (Some(stored), Some(until)) if stored.until != until => Ok(false),
                _ => {
                    scheduled.remove(marker);
                    Ok(true)
                }
            }
        })
    }
}

impl MemoryStore {
    /// Never returns for the owner [`MemoryStore::stall_leases_of`] names.
    async fn stall(&self, owner: &str) {
        if lock(&self.stall_leases_of).as_deref() == Some(owner) {
            std::future::pending::<()>().await;
        }
    }

    /// Who holds the lease `name` and until when (Tokio's clock), if anyone.
    pub fn lease_holder(&self, name: &str) -> Option<(String, Instant)> {
        lock(&self.leases)
            .get(name)
            .and_then(|(holder, until, _)| holder.clone().map(|h| (h, *until)))
    }

    /// The retry queue, in marker order.
    pub fn queued_retries(&self) -> Vec<SyncRetry> {
        lock(&self.retries).values().cloned().collect()
    }

    /// The expiry schedule of risk acceptances, in marker order.
    pub fn scheduled_acceptances(&self) -> Vec<Acceptance> {
        lock(&self.acceptances).values().cloned().collect()
    }
}
