//! The expiry schedule of risk acceptances in SQLite (see `store/acceptance.rs`): one row per
//! marker in `acceptances`, created with `IF NOT EXISTS` when the store opens (an addition an
//! older build does not read, like the coordination tables; no row means no expiry).

use super::*;
use crate::store::{Acceptance, MAX_ACCEPTANCES};

const ACCEPTANCE_TABLE: &str = "
CREATE TABLE IF NOT EXISTS acceptances (
    marker     TEXT PRIMARY KEY NOT NULL,
    connection TEXT NOT NULL,
    -- Unix milliseconds when the acceptance runs out.
    until_ms   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS acceptances_until ON acceptances (until_ms);
";

/// Creates the schedule's table if the file has none yet.
pub(super) fn ensure_table(conn: &mut Connection, location: &str) -> Result<(), StoreError> {
    conn.execute_batch(ACCEPTANCE_TABLE)
        .map_err(|e| classify(location, "open", e))
}

/// The [`Store`] methods of this file, expanded inside `impl Store for SqliteStore`.
macro_rules! store_methods {
    () => {
        fn schedule_acceptance<'a>(
            &'a self,
            acceptance: &'a crate::store::Acceptance,
        ) -> BoxFuture<'a, Result<bool, StoreError>> {
            self.schedule_acceptance_row(acceptance)
        }

        fn acceptances_due<'a>(
            &'a self,
            now: i64,
            limit: usize,
        ) -> BoxFuture<'a, Result<Vec<crate::store::Acceptance>, StoreError>> {
            self.acceptances_due_rows(now, limit)
        }

        fn clear_acceptance<'a>(
            &'a self,
            marker: &'a Marker,
            until: Option<i64>,
        ) -> BoxFuture<'a, Result<bool, StoreError>> {
            self.clear_acceptance_row(marker, until)
        }
    };
}
pub(super) use store_methods;

impl SqliteStore {
    pub(super) fn schedule_acceptance_row(
        &self,
        acceptance: &Acceptance,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let acceptance = acceptance.clone();
        self.capped_upsert(
            "schedule_acceptance",
            "acceptances",
            MAX_ACCEPTANCES,
            acceptance.marker.clone(),
            move |tx| {
                exec(
                    tx,
                    "INSERT INTO acceptances (marker, connection, until_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (marker) DO UPDATE
                        SET connection = excluded.connection, until_ms = excluded.until_ms",
                    params![
                        acceptance.marker.as_str(),
                        acceptance.connection,
                        acceptance.until
                    ],
                )
            },
        )
    }

    pub(super) fn acceptances_due_rows(
        &self,
        now: i64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Acceptance>, StoreError>> {
        let location = Arc::clone(&self.location);
        self.run("acceptances_due", move |conn| {
            let ctx = |e| classify(&location, "acceptances_due", e);
            let mut statement = conn
                .prepare(
                    "SELECT marker, connection, until_ms FROM acceptances
                      WHERE until_ms <= ?1 ORDER BY until_ms, marker LIMIT ?2",
                )
                .map_err(ctx)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = statement
                .query_map(params![now, limit], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })
                .map_err(ctx)?;
            let mut due = Vec::new();
            for row in rows {
                let (marker, connection, until) = row.map_err(ctx)?;
                let marker = Marker::parse(&marker).ok_or_else(|| {
                    StoreError::Fatal(format!(
                        "sqlite store {location}: scheduled acceptance {marker:?} is not a marker"
                    ))
                })?;
                due.push(Acceptance {
                    marker,
                    connection,
                    until,
                });
            }
            Ok(due)
        })
    }

    pub(super) fn clear_acceptance_row(
        &self,
        marker: &Marker,
        until: Option<i64>,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let marker = marker.as_str().to_owned();
        let location = Arc::clone(&self.location);
        self.run("clear_acceptance", move |conn| {
            let ctx = |e| classify(&location, "clear_acceptance", e);
            let removed = exec(
                conn,
                "DELETE FROM acceptances WHERE marker = ?1 AND (?2 IS NULL OR until_ms = ?2)",
                params![marker, until],
            )
            .map_err(ctx)?;
            if removed > 0 || until.is_none() {
                return Ok(true);
            }
            let other: Option<i64> = query_row(
                conn,
                "SELECT until_ms FROM acceptances WHERE marker = ?1",
                params![marker],
                |row| row.get(0),
            )
            .optional()
            .map_err(ctx)?;
            Ok(other.is_none())
        })
    }
}
