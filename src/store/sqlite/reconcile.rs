//! What `findings-bridge reconcile` asks of the SQLite store: the records page by page in key
//! order, a rebuilt record stored only under the caller's claim and only where nothing is stored,
//! and a record dropped only under the caller's claim and only without a pending create.

use super::*;
use crate::store::{Adoption, RecordsPage};

/// The row a conditional write reads first, under the write lock: who holds the lease, and
/// whether a record or an intent is stored.
struct KeyState {
    lease_owner: Option<String>,
    has_record: bool,
    has_intent: bool,
}

fn key_state(
    tx: &Connection,
    location: &str,
    op: &str,
    marker: &str,
) -> Result<Option<KeyState>, StoreError> {
    tx.query_row(
        "SELECT lease_owner, record IS NOT NULL, intent IS NOT NULL
           FROM records WHERE marker = ?1",
        params![marker],
        |row| {
            Ok(KeyState {
                lease_owner: row.get(0)?,
                has_record: row.get(1)?,
                has_intent: row.get(2)?,
            })
        },
    )
    .optional()
    .map_err(|e| classify(location, op, e))
}

impl SqliteStore {
    pub(super) fn records_page_of(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'_, Result<RecordsPage, StoreError>> {
        let after = cursor.unwrap_or_default().to_owned();
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let location = Arc::clone(&self.location);
        self.run("records_page", move |conn| {
            let ctx = |e| classify(&location, "records_page", e);
            let mut statement = conn
                .prepare(
                    "SELECT marker, record FROM records
                      WHERE record IS NOT NULL AND marker > ?1
                      ORDER BY marker LIMIT ?2",
                )
                .map_err(ctx)?;
            let rows = statement
                .query_map(params![after, limit], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })
                .map_err(ctx)?;
            let mut records = Vec::new();
            let mut last = None;
            for row in rows {
                let (marker, json) = row.map_err(ctx)?;
                records.push(decode_record(&location, &marker, &json)?);
                last = Some(marker);
            }
            let full = i64::try_from(records.len()).unwrap_or(i64::MAX) >= limit;
            Ok(RecordsPage {
                records,
                next: last.filter(|_| full),
            })
        })
    }

    pub(super) fn adopt_record(
        &self,
        record: &Record,
        owner: &str,
    ) -> BoxFuture<'_, Result<Adoption, StoreError>> {
        let location = Arc::clone(&self.location);
        let owner = owner.to_owned();
        let record = record.clone();
        self.run("adopt", move |conn| {
            let marker = record.marker.as_str().to_owned();
            let state = key_state(conn, &location, "adopt", &marker)?;
            let Some(state) = state.filter(|s| s.lease_owner.as_deref() == Some(owner.as_str()))
            else {
                return Err(StoreError::LostClaim(marker));
            };
            if state.has_record {
                return Ok(Adoption::RecordExists);
            }
            if state.has_intent {
                return Ok(Adoption::CreatePending);
            }
            write_record(conn, &location, "adopt", &record)?;
            Ok(Adoption::Adopted)
        })
    }

    pub(super) fn drop_key(
        &self,
        marker: &Marker,
        owner: &str,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let location = Arc::clone(&self.location);
        let marker = marker.as_str().to_owned();
        let owner = owner.to_owned();
        self.run("drop_record", move |conn| {
            let ctx = |e| classify(&location, "drop_record", e);
            let state = key_state(conn, &location, "drop_record", &marker)?;
            let Some(state) = state.filter(|s| s.lease_owner.as_deref() == Some(owner.as_str()))
            else {
                return Err(StoreError::LostClaim(marker));
            };
            if state.has_intent {
                return Ok(false);
            }
            conn.execute("DELETE FROM records WHERE marker = ?1", params![marker])
                .map_err(ctx)?;
            Ok(true)
        })
    }
}
