//! Shutdown as a first-class value: ECS stops a task with SIGTERM and kills it after its stop
//! timeout, so every long-running loop must be able to notice "stop now" and wind down within
//! that window. One [`Shutdown`] is cloned into every loop; triggering any clone stops them all.

use std::sync::Arc;

use tokio::sync::watch;

/// A cloneable "stop now" signal. Cheap to clone; waiting never misses a trigger that happened
/// before the wait started.
#[derive(Clone, Debug)]
pub struct Shutdown {
    sender: Arc<watch::Sender<bool>>,
    receiver: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A signal that only fires when [`Shutdown::trigger`] is called (tests, embedding).
    pub fn new() -> Shutdown {
        let (sender, receiver) = watch::channel(false);
        Shutdown {
            sender: Arc::new(sender),
            receiver,
        }
    }

    /// A signal that also fires on SIGTERM (ECS stop) and SIGINT (Ctrl-C). Must be called inside
    /// a Tokio runtime. A second signal is not special: the grace period already bounds the exit.
    pub fn from_signals() -> std::io::Result<Shutdown> {
        let shutdown = Shutdown::new();
        let trigger = shutdown.clone();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            tokio::spawn(async move {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                tracing::info!(signal = name, "shutdown requested");
                trigger.trigger();
            });
        }
        #[cfg(not(unix))]
        {
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    tracing::info!(signal = "ctrl-c", "shutdown requested");
                }
                trigger.trigger();
            });
        }
        Ok(shutdown)
    }

    /// Asks every holder of a clone to stop. Idempotent.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Completes once the signal has fired (immediately if it already has).
    pub async fn wait(&self) {
        let mut receiver = self.receiver.clone();
        // The sender lives as long as any clone of `self`, so `wait_for` only fails if every
        // handle is gone, in which case nobody can trigger any more: treat it as "stop".
        let _ = receiver.wait_for(|stopped| *stopped).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_trigger_wakes_every_clone_even_late_waiters() {
        let shutdown = Shutdown::new();
        let waiter = shutdown.clone();
        let task = tokio::spawn(async move { waiter.wait().await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!task.is_finished(), "nothing triggered yet");
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("waiter woke up")
            .expect("waiter did not panic");
        // A wait that starts after the trigger returns at once.
        tokio::time::timeout(Duration::from_millis(1), shutdown.clone().wait())
            .await
            .expect("late waiter sees the earlier trigger");
        assert!(shutdown.is_triggered());
    }
}
