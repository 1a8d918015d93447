//! The status sync's lease, fenced watermarks and retry queue on the DynamoDB table (see
//! `store/coordination.rs`), each change one conditional write:
//! - `pk = "lease#<name>"`: `lease_owner` and `lease_until` (unix ms; both absent once released)
//!   and `granted` (unix ms of the last grant: the holder's fence). Never expires.
//! - `pk = "wm#<name>"`: a watermark's `value`, with `fence` when a lease holder wrote it.
//! - `pk = "retries#status-sync"`: the whole retry queue in one map attribute `entries` (marker →
//!   `{connection, attempts, due_at}`), read with one consistent `GetItem`. The table has no sort
//!   key or index to list items by, and a scan would read every record; one item, bounded by
//!   [`MAX_SYNC_RETRIES`], needs neither.

use super::*;
use crate::store::{MAX_SYNC_RETRIES, SyncRetry};

const GRANTED: &str = "granted";

const FENCE: &str = "fence";

const ENTRIES: &str = "entries";

fn lease_key(name: &str) -> AttributeValue {
    AttributeValue::S(format!("lease#{name}"))
}

fn retries_key() -> AttributeValue {
    AttributeValue::S("retries#status-sync".to_owned())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl DynamoStore {
    pub(super) async fn acquire_lease_item(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let now = now_millis();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, lease_key(name))
            .update_expression("SET #owner = :me, #until = :until, #granted = :now")
            .condition_expression(
                "attribute_not_exists(#pk) OR attribute_not_exists(#owner) OR #owner = :me \
                 OR #until < :now",
            )
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_names("#granted", GRANTED)
            .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":until", number(now.saturating_add(millis(ttl))))
            .expression_attribute_values(":now", number(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Some(now)),
            Err(e) => match classify(&self.table, "acquire_lease", e) {
                Failure::ConditionFailed => Ok(None),
                Failure::Store(e) => Err(e),
            },
        }
    }

    /// Removes `lease_owner` and `lease_until` (as a claim's release does); `granted` stays.
    pub(super) async fn release_lease_item(
        &self,
        name: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        self.release_owner(lease_key(name), owner, "release_lease")
            .await
    }

    pub(super) async fn set_watermark_fenced_item(
        &self,
        name: &str,
        value: &str,
        fence: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, watermark_key(name))
            .item(WATERMARK_VALUE, AttributeValue::S(value.to_owned()))
            .item("updated_at", number(now_millis()))
            .item(FENCE, number(fence))
            .condition_expression("attribute_not_exists(#fence) OR #fence <= :fence")
            .expression_attribute_names("#fence", FENCE)
            .expression_attribute_values(":fence", number(fence))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match classify(&self.table, "set_watermark_fenced", e) {
                Failure::ConditionFailed => Ok(false),
                Failure::Store(e) => Err(e),
            },
        }
    }

    pub(super) async fn enqueue_sync_retry_item(
        &self,
        retry: &SyncRetry,
    ) -> Result<bool, StoreError> {
        let entry = HashMap::from([
            (
                "connection".to_owned(),
                AttributeValue::S(retry.connection.clone()),
            ),
            ("attempts".to_owned(), number(i64::from(retry.attempts))),
            ("due_at".to_owned(), number(retry.due_at)),
        ]);
        self.put_capped_entry(
            retries_key(),
            retry.marker.as_str(),
            entry,
            MAX_SYNC_RETRIES,
            "enqueue_sync_retry",
        )
        .await
    }

    pub(super) async fn sync_retries_due_item(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<SyncRetry>, StoreError> {
        let Some(item) = self.get_item(retries_key(), "sync_retries_due").await? else {
            return Ok(Vec::new());
        };
        let Some(AttributeValue::M(entries)) = item.get(ENTRIES) else {
            return Ok(Vec::new());
        };
        let mut due = Vec::new();
        for (marker, entry) in entries {
            let retry = decode_retry(marker, entry).ok_or_else(|| {
                StoreError::Fatal(format!(
                    "DynamoDB table {}: queued retry {marker:?} is unreadable: {entry:?}",
                    self.table
                ))
            })?;
            if retry.due_at <= now {
                due.push(retry);
            }
        }
        due.sort_by(|a, b| (a.due_at, a.marker.as_str()).cmp(&(b.due_at, b.marker.as_str())));
        due.truncate(limit);
        Ok(due)
    }

    pub(super) async fn remove_sync_retry_item(&self, marker: &Marker) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, retries_key())
            .update_expression("REMOVE #entries.#marker")
            .condition_expression("attribute_exists(#entries)")
            .expression_attribute_names("#entries", ENTRIES)
            .expression_attribute_names("#marker", marker.as_str())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match classify(&self.table, "remove_sync_retry", e) {
                // No queue at all: nothing to remove.
                Failure::ConditionFailed => Ok(()),
                Failure::Store(e) => Err(e),
            },
        }
    }
}

fn decode_retry(marker: &str, entry: &AttributeValue) -> Option<SyncRetry> {
    let AttributeValue::M(fields) = entry else {
        return None;
    };
    let attempts = read_number(fields, "attempts")?;
    Some(SyncRetry {
        marker: Marker::parse(marker)?,
        connection: fields.get("connection")?.as_s().ok()?.clone(),
        attempts: u32::try_from(attempts).ok()?,
        due_at: read_number(fields, "due_at")?,
    })
}
