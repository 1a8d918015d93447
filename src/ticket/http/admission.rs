//! Admission of creates to a connection's rate limit.
//!
//! A create is preceded by its intent in the store and must then be sent within the connection's
//! send window (the intent promises a search after start + send window + request timeout + the
//! index's lag). In a flood, the rate limit's queue grows longer than the send window: a create
//! that had already recorded its intent then waits its window out, is abandoned unsent, and its
//! message goes back to the queue to do all of it again later — work and store writes for
//! nothing, and after a few rounds a message parked or dead-lettered only because the ticket
//! system was busy.
//!
//! So a create first takes a *turn*, before its intent is written: at most as many creates hold
//! a turn as the rate limit lets through in half a send window. The others wait here, where
//! waiting promises nothing (their claims and messages are kept alive as for any work in
//! progress), and the queue behind the limiter stays short enough for every admitted create to
//! be sent in time. The rate is the adaptive one, so the gate narrows when the server pushes
//! back and widens as it recovers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::rate_limit::RateLimiter;

/// Share of the send window the admitted creates may take to get through the limiter: the other
/// half is headroom for the connection's other requests (searches, updates, comments, polls)
/// queued in between and for a rate lowered meanwhile.
const WINDOW_SHARE: f64 = 0.5;

/// The creates of one connection that hold a turn.
#[derive(Debug)]
pub struct CreateGate {
    limiter: Arc<RateLimiter>,
    send_window: Duration,
    admitted: Mutex<usize>,
    released: Notify,
}

/// A create's turn: held from before its intent is written until the create has returned.
#[derive(Debug)]
#[must_use = "the turn ends when it is dropped"]
pub struct CreateTurn {
    gate: Option<Arc<CreateGate>>,
}

impl CreateTurn {
    /// A turn of a connection without a gate (no rate limit, or a test double).
    pub fn free() -> CreateTurn {
        CreateTurn { gate: None }
    }
}

impl Drop for CreateTurn {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            {
                let mut admitted = gate.admitted.lock().unwrap_or_else(|p| p.into_inner());
                *admitted = admitted.saturating_sub(1);
            }
            gate.released.notify_waiters();
        }
    }
}

impl CreateGate {
    pub fn new(limiter: Arc<RateLimiter>, send_window: Duration) -> Arc<CreateGate> {
        Arc::new(CreateGate {
            limiter,
            send_window,
            admitted: Mutex::new(0),
            released: Notify::new(),
        })
    }

    /// How many creates may hold a turn at the rate in force: never fewer than one, so a slow
    /// rate still makes progress.
    pub fn capacity(&self) -> usize {
        let rate = self.limiter.rate();
        if !rate.is_finite() || rate <= 0.0 {
            return usize::MAX;
        }
        let n = (rate * self.send_window.as_secs_f64() * WINDOW_SHARE).floor();
        // A float far beyond any real concurrency saturates.
        if n >= usize::MAX as f64 {
            usize::MAX
        } else {
            (n as usize).max(1)
        }
    }

    /// Creates holding a turn now.
    pub fn admitted(&self) -> usize {
        *self.admitted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a turn. Dropping the future while it waits gives nothing up: no turn was taken.
    pub async fn turn(self: &Arc<Self>) -> CreateTurn {
        loop {
            // Registered before the check, so a release between the check and the wait is not
            // missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut admitted = self.admitted.lock().unwrap_or_else(|p| p.into_inner());
                if *admitted < self.capacity() {
                    *admitted += 1;
                    return CreateTurn {
                        gate: Some(Arc::clone(self)),
                    };
                }
            }
            released.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::http::TokioClock;

    fn gate(rate: f64, window_secs: u64) -> Arc<CreateGate> {
        let limiter = Arc::new(RateLimiter::adaptive(rate, 10, Arc::new(TokioClock::new())));
        CreateGate::new(limiter, Duration::from_secs(window_secs))
    }

    #[test]
    fn capacity_is_half_a_send_window_of_the_rate_and_at_least_one() {
        assert_eq!(gate(10.0, 5).capacity(), 25);
        assert_eq!(gate(2.0, 5).capacity(), 5);
        assert_eq!(gate(0.1, 5).capacity(), 1, "a slow rate still admits one");
        assert_eq!(gate(0.0, 5).capacity(), usize::MAX, "no limit, no gate");
    }

    #[test]
    fn a_lowered_rate_narrows_the_gate() {
        let gate = gate(10.0, 5);
        gate.limiter.refused(None);
        // 10 × 0.8 = 8/s: 20 creates in half a window.
        assert_eq!(gate.capacity(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn creates_beyond_the_capacity_wait_for_a_turn_to_end() {
        let gate = gate(0.4, 5); // one create in 2.5 s: capacity 1
        assert_eq!(gate.capacity(), 1);
        let first = gate.turn().await;
        assert_eq!(gate.admitted(), 1);

        let waiting = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move {
                let _turn = gate.turn().await;
                gate.admitted()
            }
        });
        // However long the first create holds its turn, the second does not get one.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished());
        assert_eq!(gate.admitted(), 1);

        drop(first);
        assert_eq!(waiting.await.expect("the waiter gets its turn"), 1);
        assert_eq!(gate.admitted(), 0, "every turn ended");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_takes_no_turn() {
        let gate = gate(0.4, 5);
        let held = gate.turn().await;
        let gave_up = tokio::time::timeout(Duration::from_secs(1), gate.turn()).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(gate.admitted(), 0);
        let _again = gate.turn().await;
        assert_eq!(gate.admitted(), 1);
    }
}
