//! Claims on a (finding, team): held by one unit of work under a fenced owner id, kept alive while
//! the work runs, and handed back through `put` (state changed) or `release` (which keeps an
//! intent, so a create whose outcome is unknown is still searched for).

use super::*;

/// A claim held by one unit of work.
pub(super) struct Held<'a> {
    pub(super) team: &'a Arc<str>,
    pub(super) marker: &'a Marker,
    pub(super) owner: String,
}

impl Held<'_> {
    pub(super) fn store_err(&self) -> impl Fn(StoreError) -> LifecycleError + '_ {
        |source| LifecycleError::Store {
            team: self.team.clone(),
            source,
        }
    }

    pub(super) fn ticket_err(&self) -> impl Fn(TicketError) -> LifecycleError + '_ {
        |source| LifecycleError::Ticket {
            team: self.team.clone(),
            source,
        }
    }
}

impl Lifecycle {
    pub(super) fn hold(&self, owner: &str, marker: &Marker) {
        match self.held.lock() {
            Ok(mut held) => held.insert(owner.to_owned(), marker.clone()),
            Err(poisoned) => poisoned
                .into_inner()
                .insert(owner.to_owned(), marker.clone()),
        };
    }

    pub(super) fn unhold(&self, owner: &str) {
        match self.held.lock() {
            Ok(mut held) => held.remove(owner),
            Err(poisoned) => poisoned.into_inner().remove(owner),
        };
    }

    /// Renews the lease of `owner` every third of the lease until the lease is lost; never
    /// returns. Each renewal is bounded by that period, so a hung store call cannot keep a
    /// renewal from being tried again, and every claim renews on its own.
    pub(super) async fn keep_lease(&self, marker: &Marker, owner: &str) {
        let period = (self.lease / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(period).await;
            match tokio::time::timeout(period, self.store.renew(marker, owner, self.lease)).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    // Expired or taken over: every write of this work is conditional on the
                    // owner and now fails; stop renewing.
                    telemetry::claim_lost("renew");
                    tracing::warn!(%marker, owner, "claim lost before the work finished; its writes will be refused");
                    std::future::pending::<()>().await;
                }
                Ok(Err(e)) => tracing::warn!(%marker, error = %e, "could not renew a claim"),
                Err(_) => tracing::warn!(%marker, "renewing a claim timed out"),
            }
        }
    }

    pub(super) async fn release(&self, held: &Held<'_>) -> Result<(), LifecycleError> {
        self.store
            .release(held.marker, &held.owner)
            .await
            .map_err(held.store_err())
    }

    pub(super) async fn put(
        &self,
        held: &Held<'_>,
        record: &Record,
        sync: SyncFields,
    ) -> Result<(), LifecycleError> {
        self.store
            .put(record, &held.owner, sync)
            .await
            .map_err(held.store_err())
    }

    /// [`LifecycleError::Settling`] while an intent's create cannot be searched for yet.
    pub(super) fn unsettled(
        held: &Held<'_>,
        intent: Option<&Intent>,
    ) -> Result<(), LifecycleError> {
        if let Some(intent) = intent {
            let remaining = intent.search_after - now_millis();
            if remaining > 0 {
                return Err(LifecycleError::Settling {
                    team: held.team.clone(),
                    marker: held.marker.clone(),
                    wait: Duration::from_millis(u64::try_from(remaining).unwrap_or(0)),
                });
            }
        }
        Ok(())
    }
}
