//! The SQLite schema and its migrations: version 2 adds intents on records and the finding index
//! with its resolution tombstone, backfilled from the records written before it.

use super::*;

/// The schema this build writes. Bump it and add a step to [`migrate`] for every change.
pub(super) const SCHEMA_VERSION: i64 = 2;

pub(super) const SCHEMA_V1: &str = "
CREATE TABLE records (
    marker        TEXT PRIMARY KEY NOT NULL,
    -- The whole Record as JSON; NULL while the key is only claimed (nothing created yet).
    record        TEXT,
    finding_id    TEXT,
    team          TEXT,
    ticket_system TEXT,
    ticket_key    TEXT,
    lease_owner   TEXT,
    -- Unix milliseconds; the lease is free when NULL or in the past.
    lease_until   INTEGER,
    -- Unix milliseconds of the last write.
    modified_at   INTEGER
);
CREATE INDEX records_by_ticket ON records (ticket_system, ticket_key);
CREATE INDEX records_by_finding ON records (finding_id, team);
CREATE TABLE watermarks (
    name       TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
";

/// Version 2: create intents on records, and the finding index with its resolution tombstone.
pub(super) const SCHEMA_V2: &str = "
-- The create Intent as JSON while a create's outcome is unknown; survives release.
ALTER TABLE records ADD COLUMN intent TEXT;
CREATE TABLE findings (
    finding_key TEXT PRIMARY KEY NOT NULL,
    finding_id  TEXT NOT NULL,
    -- JSON array of team names, sorted.
    teams       TEXT NOT NULL,
    -- Newest resolved UpdatedAt (RFC 3339) and the same in unix milliseconds, for comparing.
    resolved_at TEXT,
    resolved_ms INTEGER,
    modified_at INTEGER NOT NULL
);
";

pub(super) fn migrate(conn: &mut Connection, location: &str) -> Result<(), StoreError> {
    let ctx = |e: rusqlite::Error| classify(location, "migrate", e);
    // IMMEDIATE: two processes opening a fresh file at once must not both create the schema.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(ctx)?;
    tx.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
        [],
    )
    .map_err(ctx)?;
    let current: Option<i64> = tx
        .query_row("SELECT max(version) FROM schema_version", [], |row| {
            row.get(0)
        })
        .map_err(ctx)?;
    let current = current.unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::Fatal(format!(
            "sqlite store {location} has schema version {current}, newer than the {SCHEMA_VERSION} \
             this build understands; run a newer findings-bridge"
        )));
    }
    if current < 1 {
        tx.execute_batch(SCHEMA_V1).map_err(ctx)?;
    }
    if current < 2 {
        tx.execute_batch(SCHEMA_V2).map_err(ctx)?;
        backfill_findings(&tx).map_err(ctx)?;
    }
    if current < SCHEMA_VERSION {
        tx.execute("DELETE FROM schema_version", []).map_err(ctx)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            params![SCHEMA_VERSION],
        )
        .map_err(ctx)?;
    }
    tx.commit().map_err(ctx)
}

/// Indexes the teams of every record written before the finding index existed.
fn backfill_findings(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let mut teams: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    {
        let mut rows = tx.prepare(
            "SELECT finding_id, team FROM records
              WHERE record IS NOT NULL AND finding_id IS NOT NULL AND team IS NOT NULL",
        )?;
        let mut query = rows.query([])?;
        while let Some(row) = query.next()? {
            teams
                .entry(row.get(0)?)
                .or_default()
                .push(row.get::<_, String>(1)?);
        }
    }
    let now = now_millis();
    for (finding_id, mut names) in teams {
        names.sort();
        names.dedup();
        let json = serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_owned());
        tx.execute(
            "INSERT OR IGNORE INTO findings (finding_key, finding_id, teams, modified_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![finding_key(&finding_id), finding_id, json, now],
        )?;
    }
    Ok(())
}
