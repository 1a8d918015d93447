//! Background tasks that outlive the request that started them (Detective enrichment, a webhook's
//! sync that answers late, the status poller, the prober), tracked so that shutdown waits for
//! them within the grace period instead of either cutting them off unseen or waiting forever.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

/// A task's name (for the log line if it must be stopped) and its handle.
type Named = (&'static str, JoinHandle<()>);

/// A set of named background tasks; cheap to clone (all clones share the set).
#[derive(Clone, Default)]
pub struct Tasks {
    running: Arc<Mutex<Vec<Named>>>,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("running", &self.len())
            .finish()
    }
}

impl Tasks {
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// Spawns `task` under `name` (for the log line if it must be cut off at shutdown).
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.track(name, tokio::spawn(task));
    }

    /// Tracks a task spawned elsewhere. Finished tasks are forgotten here, so a long-running
    /// process does not accumulate one entry per enrichment ever started.
    pub fn track(&self, name: &'static str, handle: JoinHandle<()>) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|(_, h)| !h.is_finished());
        running.push((name, handle));
    }

    /// Tasks not finished yet.
    pub fn len(&self) -> usize {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|(_, h)| !h.is_finished());
        running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits up to `grace` for every task (also ones started while waiting), then aborts what is
    /// left and names it in a warning. Returns how many had to be aborted.
    pub async fn drain(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let next = {
                let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                running.retain(|(_, h)| !h.is_finished());
                running.pop()
            };
            let Some((name, mut handle)) = next else {
                return 0;
            };
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(Err(e)) if e.is_panic() => {
                    tracing::error!(task = name, error = %e, "background task panicked");
                }
                Ok(_) => {}
                Err(_) => {
                    handle.abort();
                    let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                    let mut names = vec![name];
                    for (name, handle) in running.drain(..) {
                        if !handle.is_finished() {
                            handle.abort();
                            names.push(name);
                        }
                    }
                    tracing::warn!(tasks = ?names, ?grace, "background tasks still running at the end of the grace period; stopped");
                    return names.len();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_tasks_that_finish_within_the_grace_period() {
        let tasks = Tasks::new();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&done);
        tasks.spawn("slow", async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        assert_eq!(tasks.drain(Duration::from_secs(10)).await, 0);
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
        assert!(tasks.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn drain_stops_what_outlives_the_grace_period_instead_of_waiting_forever() {
        let tasks = Tasks::new();
        tasks.spawn("hung", std::future::pending());
        tasks.spawn("quick", async {});
        let started = tokio::time::Instant::now();
        assert_eq!(tasks.drain(Duration::from_secs(5)).await, 1);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(tasks.is_empty());
    }

    #[tokio::test]
    async fn finished_tasks_are_forgotten() {
        let tasks = Tasks::new();
        for _ in 0..100 {
            tasks.spawn("done", async {});
        }
        tokio::task::yield_now().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !tasks.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        assert!(tasks.is_empty());
    }
}
