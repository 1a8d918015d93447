//! The embedded store: one SQLite file, for a single replica (or a few processes on one host).
//!
//! rusqlite is blocking, so every call runs on the store's own thread (`thread.rs`), which owns
//! the connection and works through the calls of all tasks in rounds: every call waiting is run
//! in one transaction, each in a savepoint of its own, and answered once that transaction is
//! committed. A busy store syncs its log once per round rather than once per call, and keeps one
//! thread running instead of waking a pool thread per call; the hot statements are parsed once
//! (the connection's statement cache). A store is cheap to share (`Arc<dyn Store>`).
//!
//! Across processes on the same file, SQLite's write lock makes each call atomic: a round holds
//! it from its `BEGIN IMMEDIATE` to its commit, so two connections can never both see a lease
//! as free. The file runs in WAL mode with a busy timeout, so readers do not block the writer and
//! a short wait on the lock is not an error.

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::{
    BoxFuture, Claim, Claimed, FindingState, Intent, Record, Store, StoreError, SyncFields,
    SyncRetry, finding_key, rfc3339_millis,
};
use crate::marker::Marker;

mod acceptance;
mod coordination;
mod reconcile;
mod schema;
mod thread;
use schema::migrate;

/// How long a statement waits for another connection's write lock before reporting
/// [`StoreError::Unavailable`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Statements kept prepared per connection: every statement the store runs more than once fits.
const STATEMENT_CACHE: usize = 64;

/// Dedup store on a SQLite file (`BRIDGE_STORE=sqlite:PATH`).
#[derive(Clone)]
pub struct SqliteStore {
    /// The store thread's queue (`thread.rs`); the thread ends when the last clone of the store
    /// is dropped.
    calls: mpsc::Sender<Box<dyn thread::Call>>,
    /// The store thread's connection, for tests that look at the file directly.
    #[cfg(test)]
    conn: Arc<Mutex<Connection>>,
    /// For error messages: which file an operator has to look at.
    location: Arc<str>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store file and brings its schema up to date. A file
    /// written by a newer build is refused rather than misread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let location = path.display().to_string();
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Fatal(format!("cannot open sqlite store {location}: {e}")))?;
        Self::prepare(conn, location)
    }

    /// A private in-memory store, for tests and `render`-style tools that must not touch disk.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()
            .map_err(|e| StoreError::Fatal(format!("cannot open in-memory sqlite store: {e}")))?;
        Self::prepare(conn, ":memory:".to_owned())
    }

    fn prepare(mut conn: Connection, location: String) -> Result<Self, StoreError> {
        let ctx = |e: rusqlite::Error| classify(&location, "open", e);
        conn.busy_timeout(BUSY_TIMEOUT).map_err(ctx)?;
        // In-memory databases answer "memory"; only a file can switch to WAL.
        let _mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(ctx)?;
        // Every commit syncs the log: an intent that was answered survives a crash of the host,
        // not just of the process (`NORMAL` would lose the last commits with the host and could
        // let a create be sent again). The group commit (`thread.rs`) pays for it.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(ctx)?;
        migrate(&mut conn, &location)?;
        coordination::ensure_tables(&mut conn, &location)?;
        acceptance::ensure_table(&mut conn, &location)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let conn = Arc::new(Mutex::new(conn));
        let (calls, queue) = mpsc::channel();
        let owned = Arc::clone(&conn);
        let name: Arc<str> = location.clone().into();
        std::thread::Builder::new()
            .name("sqlite-store".to_owned())
            .spawn(move || thread::serve(owned, queue, name))
            .map_err(|e| {
                StoreError::Fatal(format!(
                    "sqlite store {location}: cannot start its thread: {e}"
                ))
            })?;
        Ok(SqliteStore {
            calls,
            #[cfg(test)]
            conn,
            location: location.into(),
        })
    }

    /// Runs `op` on the store's thread, as one call of a round (see `thread.rs`): it happens
    /// whole or not at all, and is answered once it is committed.
    fn run<T, F>(&self, op: &'static str, f: F) -> BoxFuture<'_, Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answered) = oneshot::channel();
        let call = thread::Pending::new(op, Arc::clone(&self.location), f, reply);
        Box::pin(async move {
            let aborted =
                || StoreError::Fatal(format!("sqlite store {}: {op} aborted", self.location));
            self.calls.send(Box::new(call)).map_err(|_| aborted())?;
            answered.await.map_err(|_| aborted())?
        })
    }
}

/// `execute` through the connection's statement cache.
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// `query_row` through the connection's statement cache.
fn query_row<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

/// Busy / locked / I/O trouble will likely pass; anything else (corruption, a schema this code
/// does not expect) needs a person.
fn classify(location: &str, op: &str, err: rusqlite::Error) -> StoreError {
    let message = format!("sqlite store {location}: {op}: {err}");
    match err.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull,
        ) => StoreError::Unavailable(message),
        _ => StoreError::Fatal(message),
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn lease_millis(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

fn decode_record(location: &str, marker: &str, json: &str) -> Result<Record, StoreError> {
    serde_json::from_str(json).map_err(|e| {
        StoreError::Fatal(format!(
            "sqlite store {location}: record {marker} is unreadable: {e}"
        ))
    })
}

fn decode_intent(location: &str, marker: &str, json: &str) -> Result<Intent, StoreError> {
    serde_json::from_str(json).map_err(|e| {
        StoreError::Fatal(format!(
            "sqlite store {location}: intent on {marker} is unreadable: {e}"
        ))
    })
}

/// Writes `record` on its key with the columns that index it, and releases the lease and any
/// intent: the end of a `put` (and of an `adopt`), inside the caller's store call.
fn write_record(
    tx: &Connection,
    location: &str,
    op: &str,
    record: &Record,
) -> Result<(), StoreError> {
    let marker = record.marker.as_str();
    let json = serde_json::to_string(record)
        .map_err(|e| StoreError::Fatal(format!("record {marker} cannot be serialized: {e}")))?;
    let (ticket_system, ticket_key) = match &record.ticket {
        Some(t) => (Some(t.system.clone()), Some(t.key.clone())),
        None => (None, None),
    };
    exec(
        tx,
        "UPDATE records
            SET record = ?1, finding_id = ?2, team = ?3, ticket_system = ?4,
                ticket_key = ?5, modified_at = ?6, intent = NULL,
                lease_owner = NULL, lease_until = NULL
          WHERE marker = ?7",
        params![
            json,
            record.finding_id,
            record.team,
            ticket_system,
            ticket_key,
            now_millis(),
            marker,
        ],
    )
    .map_err(|e| classify(location, op, e))?;
    Ok(())
}

/// The record stored on `marker`, as JSON: `None` without a row, or with only a claim on it.
fn record_json(conn: &Connection, marker: &str) -> rusqlite::Result<Option<String>> {
    query_row(
        conn,
        "SELECT record FROM records WHERE marker = ?1",
        params![marker],
        |row| row.get::<_, Option<String>>(0),
    )
    .optional()
    .map(Option::flatten)
}

/// A finding's index entry: its teams, and the tombstone as text and as unix milliseconds.
type FindingRow = (Vec<String>, Option<String>, Option<i64>);

/// Reads one finding's index entry.
fn read_finding(
    tx: &Connection,
    location: &str,
    key: &str,
) -> Result<Option<FindingRow>, StoreError> {
    let row: Option<(String, Option<String>, Option<i64>)> = query_row(
        tx,
        "SELECT teams, resolved_at, resolved_ms FROM findings WHERE finding_key = ?1",
        params![key],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
    .optional()
    .map_err(|e| classify(location, "finding", e))?;
    row.map(|(teams, at, ms)| {
        let teams: Vec<String> = serde_json::from_str(&teams).map_err(|e| {
            StoreError::Fatal(format!(
                "sqlite store {location}: finding {key} has unreadable teams: {e}"
            ))
        })?;
        Ok((teams, at, ms))
    })
    .transpose()
}

impl Store for SqliteStore {
    fn claim<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        let marker = marker.as_str().to_owned();
        let owner = owner.to_owned();
        let location = Arc::clone(&self.location);
        self.run("claim", move |conn| {
            let now = now_millis();
            let until = now.saturating_add(lease_millis(lease));
            // One statement: SQLite holds the write lock for all of it, so the check of the old
            // lease and the write of the new one cannot interleave with another connection.
            let returned: Option<(Option<String>, Option<String>)> = query_row(
                conn,
                "INSERT INTO records (marker, lease_owner, lease_until, modified_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (marker) DO UPDATE
                        SET lease_owner = excluded.lease_owner,
                            lease_until = excluded.lease_until
                      WHERE records.lease_owner IS NULL
                         OR records.lease_until IS NULL
                         OR records.lease_until < ?4
                     RETURNING record, intent",
                params![marker, owner, until, now],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|e| classify(&location, "claim", e))?;
            let Some((record, intent)) = returned else {
                return Ok(Claim::Busy);
            };
            Ok(Claim::Acquired(Claimed {
                record: record
                    .map(|json| decode_record(&location, &marker, &json))
                    .transpose()?,
                intent: intent
                    .map(|json| decode_intent(&location, &marker, &json))
                    .transpose()?,
            }))
        })
    }

    fn renew<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let marker = marker.as_str().to_owned();
        let owner = owner.to_owned();
        let location = Arc::clone(&self.location);
        self.run("renew", move |conn| {
            let now = now_millis();
            let changed = exec(
                conn,
                "UPDATE records SET lease_until = ?1
                      WHERE marker = ?2 AND lease_owner = ?3 AND lease_until >= ?4",
                params![now.saturating_add(lease_millis(lease)), marker, owner, now],
            )
            .map_err(|e| classify(&location, "renew", e))?;
            Ok(changed == 1)
        })
    }

    fn set_intent<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
        intent: Option<&'a Intent>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let marker = marker.as_str().to_owned();
        let owner = owner.to_owned();
        let json = intent.map(serde_json::to_string).transpose();
        let location = Arc::clone(&self.location);
        self.run("set_intent", move |conn| {
            let json = json.map_err(|e| {
                StoreError::Fatal(format!("intent on {marker} cannot be serialized: {e}"))
            })?;
            let changed = exec(
                conn,
                "UPDATE records SET intent = ?1 WHERE marker = ?2 AND lease_owner = ?3",
                params![json, marker, owner],
            )
            .map_err(|e| classify(&location, "set_intent", e))?;
            if changed == 0 {
                return Err(StoreError::LostClaim(marker));
            }
            Ok(())
        })
    }

    fn put<'a>(
        &'a self,
        record: &'a Record,
        owner: &'a str,
        sync: SyncFields,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let location = Arc::clone(&self.location);
        let owner = owner.to_owned();
        let mut record = record.clone();
        self.run("put", move |conn| {
            let marker = record.marker.as_str().to_owned();
            let ctx = |e| classify(&location, "put", e);
            // Read-modify-write under the write lock: the sync fields a concurrent
            // `set_sync_status` wrote are carried over, not overwritten.
            let stored: Option<Option<String>> = query_row(
                conn,
                "SELECT record FROM records WHERE marker = ?1 AND lease_owner = ?2",
                params![marker, owner],
                |row| row.get(0),
            )
            .optional()
            .map_err(ctx)?;
            let Some(stored) = stored else {
                return Err(StoreError::LostClaim(marker));
            };
            if sync == SyncFields::Keep
                && let Some(stored) = stored
            {
                let stored = decode_record(&location, &marker, &stored)?;
                record.status_from_ticket = stored.status_from_ticket;
                record.status_to_hub = stored.status_to_hub;
            }
            write_record(conn, &location, "put", &record)?;
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let marker = marker.as_str().to_owned();
        let owner = owner.to_owned();
        let location = Arc::clone(&self.location);
        self.run("release", move |conn| {
            let ctx = |e| classify(&location, "release", e);
            // A claim that never led to a record or a create leaves nothing worth keeping.
            exec(
                conn,
                "DELETE FROM records WHERE marker = ?1 AND lease_owner = ?2
                    AND record IS NULL AND intent IS NULL",
                params![marker, owner],
            )
            .map_err(ctx)?;
            exec(
                conn,
                "UPDATE records SET lease_owner = NULL, lease_until = NULL
                  WHERE marker = ?1 AND lease_owner = ?2",
                params![marker, owner],
            )
            .map_err(ctx)?;
            Ok(())
        })
    }

    fn enlist<'a>(
        &'a self,
        finding_id: &'a str,
        team: &'a str,
    ) -> BoxFuture<'a, Result<FindingState, StoreError>> {
        let finding_id = finding_id.to_owned();
        let team = team.to_owned();
        let location = Arc::clone(&self.location);
        self.run("enlist", move |conn| {
            let ctx = |e| classify(&location, "enlist", e);
            let key = finding_key(&finding_id);
            let before = read_finding(conn, &location, &key)?;
            let state = match &before {
                Some((teams, resolved_at, _)) => FindingState {
                    teams: teams.clone(),
                    resolved_at: resolved_at.clone(),
                    indexed: true,
                },
                None => FindingState::default(),
            };
            let mut teams = state.teams.clone();
            if !teams.contains(&team) {
                teams.push(team);
                teams.sort();
                let json = serde_json::to_string(&teams).map_err(|e| {
                    StoreError::Fatal(format!("teams of {finding_id} cannot be serialized: {e}"))
                })?;
                exec(
                    conn,
                    "INSERT INTO findings (finding_key, finding_id, teams, modified_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (finding_key) DO UPDATE
                        SET teams = excluded.teams, modified_at = excluded.modified_at",
                    params![key, finding_id, json, now_millis()],
                )
                .map_err(ctx)?;
            }
            Ok(state)
        })
    }

    fn resolve<'a>(
        &'a self,
        finding_id: &'a str,
        updated_at: &'a str,
    ) -> BoxFuture<'a, Result<FindingState, StoreError>> {
        let finding_id = finding_id.to_owned();
        let updated_at = updated_at.to_owned();
        let location = Arc::clone(&self.location);
        self.run("resolve", move |conn| {
            let ctx = |e| classify(&location, "resolve", e);
            let key = finding_key(&finding_id);
            let millis = rfc3339_millis(&updated_at).ok_or_else(|| {
                StoreError::Fatal(format!(
                    "resolution time {updated_at:?} of {finding_id} is not RFC 3339"
                ))
            })?;
            let before = read_finding(conn, &location, &key)?;
            let mut state = match &before {
                Some((teams, resolved_at, _)) => FindingState {
                    teams: teams.clone(),
                    resolved_at: resolved_at.clone(),
                    indexed: true,
                },
                None => FindingState::default(),
            };
            let newer = before
                .as_ref()
                .and_then(|(_, _, ms)| *ms)
                .is_none_or(|stored| millis > stored);
            if newer {
                exec(
                    conn,
                    "INSERT INTO findings
                        (finding_key, finding_id, teams, resolved_at, resolved_ms, modified_at)
                     VALUES (?1, ?2, '[]', ?3, ?4, ?5)
                     ON CONFLICT (finding_key) DO UPDATE
                        SET resolved_at = excluded.resolved_at,
                            resolved_ms = excluded.resolved_ms,
                            modified_at = excluded.modified_at",
                    params![key, finding_id, updated_at, millis, now_millis()],
                )
                .map_err(ctx)?;
                state.resolved_at = Some(updated_at);
            }
            Ok(state)
        })
    }

    fn finding<'a>(
        &'a self,
        finding_id: &'a str,
    ) -> BoxFuture<'a, Result<FindingState, StoreError>> {
        let finding_id = finding_id.to_owned();
        let location = Arc::clone(&self.location);
        self.run("finding", move |conn| {
            let state = match read_finding(conn, &location, &finding_key(&finding_id))? {
                Some((teams, resolved_at, _)) => FindingState {
                    teams,
                    resolved_at,
                    indexed: true,
                },
                None => FindingState::default(),
            };
            Ok(state)
        })
    }

    fn get<'a>(&'a self, marker: &'a Marker) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        let marker = marker.as_str().to_owned();
        let location = Arc::clone(&self.location);
        self.run("get", move |conn| {
            record_json(conn, &marker)
                .map_err(|e| classify(&location, "get", e))?
                .map(|json| decode_record(&location, &marker, &json))
                .transpose()
        })
    }

    /// `None` leaves that field as it is. A marker without a stored record is a no-op: there
    /// is no ticket of ours to track for it.
    fn set_sync_status<'a>(
        &'a self,
        marker: &'a Marker,
        status_from_ticket: Option<&'a str>,
        status_to_hub: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let marker = marker.as_str().to_owned();
        let from_ticket = status_from_ticket.map(str::to_owned);
        let to_hub = status_to_hub.map(str::to_owned);
        let location = Arc::clone(&self.location);
        self.run("set_sync_status", move |conn| {
            if from_ticket.is_none() && to_hub.is_none() {
                return Ok(());
            }
            let ctx = |e| classify(&location, "set_sync_status", e);
            // Read-modify-write under the write lock, so a concurrent `put` from another
            // connection lands either wholly before or wholly after.
            let Some(json) = record_json(conn, &marker).map_err(ctx)? else {
                return Ok(());
            };
            let mut record = decode_record(&location, &marker, &json)?;
            if let Some(s) = from_ticket {
                record.status_from_ticket = Some(s);
            }
            if let Some(s) = to_hub {
                record.status_to_hub = Some(s);
            }
            let now = now_millis();
            record.modified_at = now / 1000;
            let json = serde_json::to_string(&record).map_err(|e| {
                StoreError::Fatal(format!("record {marker} cannot be serialized: {e}"))
            })?;
            exec(
                conn,
                "UPDATE records SET record = ?1, modified_at = ?2 WHERE marker = ?3",
                params![json, now, marker],
            )
            .map_err(ctx)?;
            Ok(())
        })
    }

    fn watermark<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        let name = name.to_owned();
        let location = Arc::clone(&self.location);
        self.run("watermark", move |conn| {
            query_row(
                conn,
                "SELECT value FROM watermarks WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| classify(&location, "watermark", e))
        })
    }

    fn set_watermark<'a>(
        &'a self,
        name: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let name = name.to_owned();
        let value = value.to_owned();
        let location = Arc::clone(&self.location);
        self.run("set_watermark", move |conn| {
            exec(
                conn,
                "INSERT INTO watermarks (name, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE
                    SET value = excluded.value, updated_at = excluded.updated_at",
                params![name, value, now_millis()],
            )
            .map_err(|e| classify(&location, "set_watermark", e))?;
            Ok(())
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let location = Arc::clone(&self.location);
        self.run("ping", move |conn| {
            query_row(conn, "SELECT count(*) FROM schema_version", [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(|e| classify(&location, "ping", e))?;
            Ok(())
        })
    }

    // The status sync's lease, fenced watermarks and retry queue (`coordination.rs`).
    coordination::store_methods!();

    // ---- reconcile (issue 16): see `reconcile` ----

    fn records_page<'a>(
        &'a self,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<crate::store::RecordsPage, StoreError>> {
        self.records_page_of(cursor, limit)
    }

    fn adopt<'a>(
        &'a self,
        record: &'a Record,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<crate::store::Adoption, StoreError>> {
        self.adopt_record(record, owner)
    }

    fn drop_record<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.drop_key(marker, owner)
    }

    // Risk acceptance that expires (issue 15): the expiry schedule (`acceptance.rs`).
    acceptance::store_methods!();
}

#[cfg(test)]
mod tests {
    use super::schema::SCHEMA_VERSION;
    use super::*;

    #[test]
    fn reopening_a_file_keeps_its_schema_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bridge.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            let conn = store.conn.lock().unwrap();
            conn.execute(
                "INSERT INTO watermarks (name, value, updated_at) VALUES ('jira', 'x', 0)",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let conn = store.conn.lock().unwrap();
        let version: i64 = conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1, "migration must not append a version row per open");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let synchronous: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(synchronous, 2, "every commit syncs the log (FULL)");
    }

    #[test]
    fn a_file_from_a_newer_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bridge.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        drop(conn);
        match SqliteStore::open(&path) {
            Err(StoreError::Fatal(msg)) => {
                assert!(msg.contains("schema version 99"), "{msg}");
                assert!(msg.contains("bridge.db"), "{msg}");
            }
            other => panic!("expected Fatal, got {other:?}"),
        }
    }

    #[test]
    fn a_file_that_is_not_a_database_is_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bridge.db");
        std::fs::write(
            &path,
            b"this is not sqlite, just some text long enough to be read",
        )
        .unwrap();
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::Fatal(_))
        ));
    }

    #[tokio::test]
    async fn a_call_that_panics_is_reported_and_the_store_carries_on() {
        let store = SqliteStore::open_in_memory().unwrap();
        let marker = Marker::new("team", "finding");
        let panicked = store
            .run("boom", |_conn| -> Result<(), StoreError> {
                panic!("a bug in one store call")
            })
            .await;
        match panicked {
            Err(StoreError::Fatal(msg)) => assert!(msg.contains("boom aborted"), "{msg}"),
            other => panic!("expected Fatal, got {other:?}"),
        }
        // The store's thread survived the panic and the connection still works.
        assert!(matches!(
            store.claim(&marker, "owner", Duration::from_secs(30)).await,
            Ok(Claim::Acquired(_))
        ));
        assert!(
            store
                .renew(&marker, "owner", Duration::from_secs(30))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn calls_from_many_tasks_are_all_answered_in_their_own_order() {
        let store = SqliteStore::open_in_memory().unwrap();
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let name = format!("mark-{i}");
                    for round in 0..5 {
                        store
                            .set_watermark(&name, &round.to_string())
                            .await
                            .unwrap();
                        let read = store.watermark(&name).await.unwrap();
                        assert_eq!(read.as_deref(), Some(round.to_string().as_str()));
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    }

    #[test]
    fn the_store_thread_ends_with_the_last_clone_of_the_store() {
        let store = SqliteStore::open_in_memory().unwrap();
        let conn = Arc::clone(&store.conn);
        let clone = store.clone();
        drop(store);
        // One clone still holds the queue: the thread (and its handle on the connection) stay.
        assert_eq!(Arc::strong_count(&conn), 3);
        drop(clone);
        // The thread notices the closed queue, returns and drops its handle. Wait for that; the
        // minute is only there so that a thread that never ends fails instead of hanging.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while Arc::strong_count(&conn) > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the store thread outlived its store"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[tokio::test]
    async fn a_corrupt_record_is_reported_not_panicked_on() {
        let store = SqliteStore::open_in_memory().unwrap();
        let marker = Marker::new("team", "finding");
        store
            .conn
            .lock()
            .unwrap()
            .execute(
                "INSERT INTO records (marker, record) VALUES (?1, '{\"not\": \"a record\"}')",
                params![marker.as_str()],
            )
            .unwrap();
        match store.get(&marker).await {
            Err(StoreError::Fatal(msg)) => assert!(msg.contains(marker.as_str()), "{msg}"),
            other => panic!("expected Fatal, got {other:?}"),
        }
    }
}
