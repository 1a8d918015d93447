//! One poller across replicas. Every replica runs [`StatusSync::run`]; only the one holding the
//! store's status-sync lease ([`STATUS_SYNC_LEASE`]) polls, so the ticket systems are queried
//! once per interval and each status change is written back once, however many replicas run.
//!
//! Timing, with L the lease (`BRIDGE_SYNC_LEASE`, 30 s by default):
//! - the holder renews every L/4. A grant whose request left at t lets it poll until t + 3L/4,
//!   its *deadline*; the store's lease runs until t + L or later (by the holder's clock, read
//!   when the request is built), so the last quarter absorbs clock skew between replicas;
//! - the moment the deadline passes without a renewal, the poll in progress is dropped — its
//!   store and ticket calls with it — and every lease call is itself bounded by the deadline: a
//!   replica whose store hangs stops polling before anyone else can take the lease;
//! - the others try to take the lease every L/4: a SIGKILLed holder is replaced within 1¼ L of
//!   its last renewal, one stopped by SIGTERM (which releases the lease) within L/4;
//! - a poll writes its watermarks with the fence of the grant it started under
//!   ([`Store::set_watermark_fenced`]): a deposed holder's write that lands late cannot move a
//!   watermark back under the new holder's.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::{Instant, sleep_until, timeout, timeout_at};

use super::*;
use crate::store::STATUS_SYNC_LEASE;

/// A grant of the lease, as its holder keeps it.
#[derive(Debug, Clone, Copy)]
struct Hold {
    /// Written with the watermarks of the polls started under this grant.
    fence: i64,
    /// Polling stops at this instant unless a renewal moved it.
    deadline: Instant,
}

/// What an attempt to take the lease found.
enum Acquire {
    Held(Hold),
    /// Another replica holds it.
    Taken,
    Failed(String),
}

/// Why holding the lease ended.
enum Ended {
    Shutdown,
    /// Not renewed in time, or taken by another replica.
    Lost(String),
    /// The one poll a [`StatusSync::poll_once`] asked for.
    Polled(SyncReport),
}

type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A lease owner for a [`StatusSync`] that was given none: unique per process start and per
/// instance (tests run several in one process).
pub(super) fn unique_owner() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("sync:{}:{started}:{n}", std::process::id())
}

/// The output of `future` while there is one; never otherwise (a disabled `select!` branch).
async fn in_flight<F: Future + Unpin>(future: &mut Option<F>) -> F::Output {
    match future {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

impl StatusSync {
    /// Until `shutdown` fires: takes the status-sync lease when it is free, then polls at once
    /// and every `interval` for as long as it holds it; releases it on shutdown. A poll in
    /// progress is abandoned on shutdown or when the lease is lost; that is safe because writes
    /// are idempotent and the watermark only moves after a poll's writes.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        telemetry::sync_leader(false);
        loop {
            let attempt = tokio::select! {
                attempt = self.acquire() => attempt,
                () = shutdown.wait() => break,
            };
            match attempt {
                Acquire::Held(hold) => {
                    telemetry::sync_leader(true);
                    tracing::info!(owner = %self.owner, "this replica holds the status-sync lease and polls the ticket systems");
                    let ended = self.lead(hold, Some(&shutdown), false).await;
                    telemetry::sync_leader(false);
                    match ended {
                        Ended::Shutdown => break,
                        Ended::Lost(why) => {
                            tracing::warn!(owner = %self.owner, reason = %why, "this replica stopped polling; another replica takes over");
                        }
                        Ended::Polled(_) => {}
                    }
                }
                Acquire::Taken => {
                    tracing::debug!("another replica holds the status-sync lease");
                }
                Acquire::Failed(why) => {
                    tracing::warn!(error = %why, "could not take the status-sync lease; trying again");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.renew_every()) => {}
                () = shutdown.wait() => break,
            }
        }
        tracing::info!("status sync stopped");
    }

    /// One poll of every connection (in name order, retries of earlier refusals first), under
    /// the status-sync lease: when another process holds it (a running worker polls already),
    /// nothing is polled and the report says so.
    pub async fn poll_once(&self) -> SyncReport {
        let mut report = SyncReport::default();
        let hold = match self.acquire().await {
            Acquire::Held(hold) => hold,
            Acquire::Taken => {
                report.errors.push(
                    "another process holds the status-sync lease and polls; this one did not"
                        .to_owned(),
                );
                return report;
            }
            Acquire::Failed(why) => {
                report
                    .errors
                    .push(format!("taking the status-sync lease: {why}"));
                return report;
            }
        };
        let ended = self.lead(hold, None, true).await;
        self.release().await;
        match ended {
            Ended::Polled(polled) => polled,
            Ended::Lost(why) => {
                report.errors.push(format!("the poll was stopped: {why}"));
                report
            }
            Ended::Shutdown => report,
        }
    }

    /// One attempt to take (or renew) the lease, bounded by the renewal period.
    async fn acquire(&self) -> Acquire {
        let sent = Instant::now();
        let grant = self
            .store
            .acquire_lease(STATUS_SYNC_LEASE, &self.owner, self.config.lease);
        match timeout(self.config.renew_every(), grant).await {
            Ok(Ok(Some(fence))) => Acquire::Held(Hold {
                fence,
                deadline: sent + self.config.hold_for(),
            }),
            Ok(Ok(None)) => Acquire::Taken,
            Ok(Err(e)) => {
                telemetry::error(ErrorKind::Store);
                Acquire::Failed(e.to_string())
            }
            Err(_) => {
                telemetry::error(ErrorKind::Store);
                Acquire::Failed(format!(
                    "no answer from the store within {:?}",
                    self.config.renew_every()
                ))
            }
        }
    }

    /// Polls under `hold`, renewing it, until shutdown, until the lease is lost, or — `once` —
    /// until the first poll is done.
    async fn lead(&self, mut hold: Hold, shutdown: Option<&Shutdown>, once: bool) -> Ended {
        let renew_every = self.config.renew_every();
        let mut poll: Option<Pending<'_, SyncReport>> = None;
        let mut next_poll = Instant::now();
        let mut renewal: Option<Pending<'_, Result<Option<i64>, StoreError>>> = None;
        let mut renewal_sent = Instant::now();
        let mut next_renewal = Instant::now() + renew_every;
        let stopped = async {
            match shutdown {
                Some(shutdown) => shutdown.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                // The deadline first: past it, nothing else may run (not even a finished poll's
                // report handling, which writes nothing, nor a renewal answered too late).
                biased;
                () = sleep_until(hold.deadline) => {
                    telemetry::error(ErrorKind::Store);
                    return Ended::Lost(format!(
                        "the status-sync lease was not renewed within {:?} of its last grant; polling stopped before it could run out",
                        self.config.hold_for()
                    ));
                }
                () = &mut stopped => {
                    drop(poll);
                    self.release().await;
                    return Ended::Shutdown;
                }
                renewed = in_flight(&mut renewal) => {
                    renewal = None;
                    match renewed {
                        Ok(Some(fence)) => {
                            hold = Hold { fence, deadline: renewal_sent + self.config.hold_for() };
                            next_renewal = renewal_sent + renew_every;
                        }
                        Ok(None) => {
                            telemetry::error(ErrorKind::Store);
                            return Ended::Lost("another replica holds the status-sync lease".to_owned());
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "renewing the status-sync lease failed; trying again");
                            next_renewal = Instant::now() + self.config.lease / 12;
                        }
                    }
                }
                () = sleep_until(next_renewal), if renewal.is_none() => {
                    renewal_sent = Instant::now();
                    let deadline = hold.deadline;
                    let grant = self.store.acquire_lease(STATUS_SYNC_LEASE, &self.owner, self.config.lease);
                    // Bounded by the deadline: an answer after it is worth nothing.
                    renewal = Some(Box::pin(async move {
                        match timeout_at(deadline, grant).await {
                            Ok(answer) => answer,
                            Err(_) => Err(StoreError::Unavailable("renewal not answered before the deadline".to_owned())),
                        }
                    }));
                }
                report = in_flight(&mut poll) => {
                    poll = None;
                    if once {
                        return Ended::Polled(report);
                    }
                    log_report(&report);
                    next_poll = Instant::now() + self.config.interval;
                }
                () = sleep_until(next_poll), if poll.is_none() => {
                    poll = Some(Box::pin(self.poll_all(hold.fence)));
                }
            }
        }
    }

    /// Ends this process's hold on the lease so another replica takes over at its next attempt
    /// (best effort, bounded: otherwise the lease simply runs out).
    async fn release(&self) {
        let bound = self.config.renew_every();
        match timeout(
            bound,
            self.store.release_lease(STATUS_SYNC_LEASE, &self.owner),
        )
        .await
        {
            Ok(Ok(())) => {
                tracing::info!(owner = %self.owner, "released the status-sync lease");
            }
            Ok(Err(e)) => {
                telemetry::error(ErrorKind::Store);
                tracing::warn!(error = %e, "could not release the status-sync lease; it runs out by itself");
            }
            Err(_) => {
                telemetry::error(ErrorKind::Store);
                tracing::warn!(
                    ?bound,
                    "releasing the status-sync lease timed out; it runs out by itself"
                );
            }
        }
    }
}
