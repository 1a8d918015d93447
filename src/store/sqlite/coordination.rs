//! The status sync's lease, fenced watermarks and retry queue in SQLite (see
//! `store/coordination.rs`). Several processes may share one file, so the lease is a real one:
//! a single `INSERT … ON CONFLICT DO UPDATE … WHERE` statement, atomic under SQLite's write lock
//! like a claim.
//!
//! The three tables are created with `IF NOT EXISTS` when the store opens rather than by a
//! schema version: they are additions an older build simply does not read, so a file written by
//! this build still opens in the build before it (a rollback keeps working).

use super::*;
use crate::store::{MAX_SYNC_RETRIES, SyncRetry};

const COORDINATION_TABLES: &str = "
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT PRIMARY KEY NOT NULL,
    -- NULL once released.
    owner      TEXT,
    -- Unix milliseconds: the hold ends then unless renewed.
    until_ms   INTEGER NOT NULL,
    -- Unix milliseconds of the last grant: the holder's fence.
    granted_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS watermark_fences (
    name  TEXT PRIMARY KEY NOT NULL,
    fence INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_retries (
    marker     TEXT PRIMARY KEY NOT NULL,
    connection TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    due_ms     INTEGER NOT NULL
);
";

/// Creates the coordination tables if the file has none yet (see the module comment).
pub(super) fn ensure_tables(conn: &mut Connection, location: &str) -> Result<(), StoreError> {
    let ctx = |e: rusqlite::Error| classify(location, "open", e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(ctx)?;
    tx.execute_batch(COORDINATION_TABLES).map_err(ctx)?;
    tx.commit().map_err(ctx)
}

/// The [`Store`] methods of this file, expanded inside `impl Store for SqliteStore` (which must
/// hold every method of the trait), so that the implementation stays here.
macro_rules! store_methods {
    () => {
        fn acquire_lease<'a>(
            &'a self,
            name: &'a str,
            owner: &'a str,
            ttl: Duration,
        ) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
            self.acquire_lease_row(name, owner, ttl)
        }

        fn release_lease<'a>(
            &'a self,
            name: &'a str,
            owner: &'a str,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            self.release_lease_row(name, owner)
        }

        fn set_watermark_fenced<'a>(
            &'a self,
            name: &'a str,
            value: &'a str,
            fence: i64,
        ) -> BoxFuture<'a, Result<bool, StoreError>> {
            self.set_watermark_fenced_row(name, value, fence)
        }

        fn enqueue_sync_retry<'a>(
            &'a self,
            retry: &'a SyncRetry,
        ) -> BoxFuture<'a, Result<bool, StoreError>> {
            self.enqueue_sync_retry_row(retry)
        }

        fn sync_retries_due<'a>(
            &'a self,
            now: i64,
            limit: usize,
        ) -> BoxFuture<'a, Result<Vec<SyncRetry>, StoreError>> {
            self.sync_retries_due_rows(now, limit)
        }

        fn remove_sync_retry<'a>(
            &'a self,
            marker: &'a Marker,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            self.remove_sync_retry_row(marker)
        }
    };
}
pub(super) use store_methods;

impl SqliteStore {
    pub(super) fn acquire_lease_row(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Option<i64>, StoreError>> {
        let name = name.to_owned();
        let owner = owner.to_owned();
        let location = Arc::clone(&self.location);
        self.run("acquire_lease", move |conn| {
            let now = now_millis();
            let until = now.saturating_add(lease_millis(ttl));
            query_row(
                conn,
                "INSERT INTO leases (name, owner, until_ms, granted_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE
                    SET owner = excluded.owner,
                        until_ms = excluded.until_ms,
                        granted_ms = excluded.granted_ms
                  WHERE leases.owner IS NULL
                     OR leases.owner = excluded.owner
                     OR leases.until_ms < ?4
                 RETURNING granted_ms",
                params![name, owner, until, now],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| classify(&location, "acquire_lease", e))
        })
    }

    pub(super) fn release_lease_row(
        &self,
        name: &str,
        owner: &str,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let name = name.to_owned();
        let owner = owner.to_owned();
        let location = Arc::clone(&self.location);
        self.run("release_lease", move |conn| {
            exec(
                conn,
                "UPDATE leases SET owner = NULL, until_ms = 0 WHERE name = ?1 AND owner = ?2",
                params![name, owner],
            )
            .map_err(|e| classify(&location, "release_lease", e))?;
            Ok(())
        })
    }

    pub(super) fn set_watermark_fenced_row(
        &self,
        name: &str,
        value: &str,
        fence: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let name = name.to_owned();
        let value = value.to_owned();
        let location = Arc::clone(&self.location);
        self.run("set_watermark_fenced", move |conn| {
            let ctx = |e| classify(&location, "set_watermark_fenced", e);
            let stored: Option<i64> = query_row(
                conn,
                "SELECT fence FROM watermark_fences WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .optional()
            .map_err(ctx)?;
            if stored.is_some_and(|stored| stored > fence) {
                return Ok(false);
            }
            exec(
                conn,
                "INSERT INTO watermarks (name, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE
                    SET value = excluded.value, updated_at = excluded.updated_at",
                params![name, value, now_millis()],
            )
            .map_err(ctx)?;
            exec(
                conn,
                "INSERT INTO watermark_fences (name, fence) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET fence = excluded.fence",
                params![name, fence],
            )
            .map_err(ctx)?;
            Ok(true)
        })
    }

    pub(super) fn enqueue_sync_retry_row(
        &self,
        retry: &SyncRetry,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let retry = retry.clone();
        self.capped_upsert(
            "enqueue_sync_retry",
            "sync_retries",
            MAX_SYNC_RETRIES,
            retry.marker.clone(),
            move |tx| {
                exec(
                    tx,
                    "INSERT INTO sync_retries (marker, connection, attempts, due_ms)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (marker) DO UPDATE
                        SET connection = excluded.connection,
                            attempts = excluded.attempts,
                            due_ms = excluded.due_ms",
                    params![
                        retry.marker.as_str(),
                        retry.connection,
                        retry.attempts,
                        retry.due_at
                    ],
                )
            },
        )
    }

    /// Runs `upsert` for `marker` in `table` (keyed by `marker`) in the same store call,
    /// unless the table already holds `max` rows and none for `marker`: then `false`, nothing
    /// written. A known marker is always updated, so a full table still moves its entries.
    pub(super) fn capped_upsert(
        &self,
        operation: &'static str,
        table: &'static str,
        max: usize,
        marker: Marker,
        upsert: impl FnOnce(&Connection) -> rusqlite::Result<usize> + Send + 'static,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let location = Arc::clone(&self.location);
        self.run(operation, move |conn| {
            let ctx = |e| classify(&location, operation, e);
            let (rows, present): (i64, bool) = query_row(
                conn,
                &format!("SELECT count(*), coalesce(max(marker = ?1), 0) FROM {table}"),
                params![marker.as_str()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(ctx)?;
            if !present && usize::try_from(rows).unwrap_or(usize::MAX) >= max {
                return Ok(false);
            }
            upsert(conn).map_err(ctx)?;
            Ok(true)
        })
    }

    pub(super) fn sync_retries_due_rows(
        &self,
        now: i64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<SyncRetry>, StoreError>> {
        let location = Arc::clone(&self.location);
        self.run("sync_retries_due", move |conn| {
            let ctx = |e| classify(&location, "sync_retries_due", e);
            let mut statement = conn
                .prepare(
                    "SELECT marker, connection, attempts, due_ms FROM sync_retries
                      WHERE due_ms <= ?1 ORDER BY due_ms, marker LIMIT ?2",
                )
                .map_err(ctx)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = statement
                .query_map(params![now, limit], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, u32>(2)?,
                        row.get::<_, i64>(3)?,
                    ))
                })
                .map_err(ctx)?;
            let mut due = Vec::new();
            for row in rows {
                let (marker, connection, attempts, due_at) = row.map_err(ctx)?;
                let marker = Marker::parse(&marker).ok_or_else(|| {
                    StoreError::Fatal(format!(
                        "sqlite store {location}: queued retry {marker:?} is not a marker"
                    ))
                })?;
                due.push(SyncRetry {
                    marker,
                    connection,
                    attempts,
                    due_at,
                });
            }
            Ok(due)
        })
    }

    pub(super) fn remove_sync_retry_row(
        &self,
        marker: &Marker,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let marker = marker.as_str().to_owned();
        let location = Arc::clone(&self.location);
        self.run("remove_sync_retry", move |conn| {
            exec(
                conn,
                "DELETE FROM sync_retries WHERE marker = ?1",
                params![marker],
            )
            .map_err(|e| classify(&location, "remove_sync_retry", e))?;
            Ok(())
        })
    }
}
