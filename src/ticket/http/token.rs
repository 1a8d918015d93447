//! A token shared by every task of a connection (ServiceNow OAuth): fetched once, refreshed by one
//! task at a time before it expires, and dropped when the server rejects it or the credentials
//! rotate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use secrecy::SecretString;

use super::clock::Clock;
use crate::ticket::TicketError;

/// Keeps a single token value across tasks, fetched once and refreshed by one task at a time.
/// Used for ServiceNow OAuth; generic so another OAuth peer can reuse it.
#[derive(Debug, Default)]
pub struct TokenCache {
    slot: tokio::sync::Mutex<Option<CachedToken>>,
    fetches: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct CachedToken {
    pub token: SecretString,
    /// Clock time after which the token must not be used.
    pub refresh_at: Duration,
    generation: u64,
}

impl CachedToken {
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl TokenCache {
    /// Returns the cached token or fetches a new one; concurrent callers wait for the one
    /// fetch in flight instead of starting their own. `fetch` returns the token and its
    /// lifetime; the token is refreshed `margin` before it expires.
    pub async fn get<F, Fut>(
        &self,
        clock: &dyn Clock,
        margin: Duration,
        fetch: F,
    ) -> Result<CachedToken, TicketError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(SecretString, Duration), TicketError>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(cached) = slot.as_ref()
            && clock.now() < cached.refresh_at
        {
            return Ok(cached.clone());
        }
        let (token, lifetime) = fetch().await?;
        // Fetches happen under the slot lock, so the count doubles as the token's generation.
        let generation = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        let cached = CachedToken {
            token,
            refresh_at: clock.now() + lifetime.saturating_sub(margin),
            generation,
        };
        *slot = Some(cached.clone());
        Ok(cached)
    }

    /// Drops the token a request was rejected with, unless another task already replaced it.
    pub async fn invalidate(&self, rejected: &CachedToken) {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().map(|c| c.generation) == Some(rejected.generation) {
            *slot = None;
        }
    }

    /// Drops whatever token is cached, e.g. because the credentials it was fetched with have
    /// rotated: the next [`TokenCache::get`] fetches a new one. Waits for a fetch in flight,
    /// whose token is then dropped too.
    pub async fn clear(&self) {
        *self.slot.lock().await = None;
    }

    /// How many tokens were fetched (for tests and diagnostics).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::http::ManualClock;
    use secrecy::ExposeSecret;
    use std::sync::Arc;

    #[tokio::test]
    async fn token_cache_fetches_once_for_concurrent_callers() {
        let clock = ManualClock::new();
        let cache = Arc::new(TokenCache::default());
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let cache = cache.clone();
            let clock = clock.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get(clock.as_ref(), Duration::from_secs(60), || async {
                        tokio::task::yield_now().await;
                        Ok((SecretString::from("t1"), Duration::from_secs(120)))
                    })
                    .await
                    .map(|t| t.token.expose_secret().to_owned())
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), "t1");
        }
        assert_eq!(cache.fetches(), 1);
        clock.advance(Duration::from_secs(61));
        let token = cache
            .get(clock.as_ref(), Duration::from_secs(60), || async {
                Ok((SecretString::from("t2"), Duration::from_secs(120)))
            })
            .await
            .unwrap();
        assert_eq!(token.token.expose_secret(), "t2");
        assert_eq!(cache.fetches(), 2);
    }
}
