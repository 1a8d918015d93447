//! The expiry schedule of risk acceptances on the DynamoDB table (see `store/acceptance.rs`):
//! `pk = "acceptances#status-sync"` holds the whole schedule in one map attribute `entries`
//! (marker → `{connection, until}`), read with one consistent `GetItem`, like the retry queue and
//! for the same reason (no sort key or index to list items by; a scan would read every record).
//! Items written before this existed have no such item: no expiry.
//!
//! The map items (this one and the retry queue) share [`DynamoStore::put_capped_entry`]: set one
//! entry while the map has room, creating the item on first use.

use super::*;
use crate::store::{Acceptance, MAX_ACCEPTANCES};

const ENTRIES: &str = "entries";

fn schedule_key() -> AttributeValue {
    AttributeValue::S("acceptances#status-sync".to_owned())
}

impl DynamoStore {
    /// Sets `entries.<name>` on the item `pk` when the map holds `name` already or fewer than
    /// `cap` entries, creating the item when it does not exist. `Ok(false)`: full, nothing
    /// written.
    pub(super) async fn put_capped_entry(
        &self,
        pk: AttributeValue,
        name: &str,
        entry: HashMap<String, AttributeValue>,
        cap: usize,
        op: &str,
    ) -> Result<bool, StoreError> {
        if self.set_capped_entry(&pk, name, &entry, cap, op).await? {
            return Ok(true);
        }
        // The condition failed: either the item does not exist yet, or it is full.
        let created = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, pk.clone())
            .item(ENTRIES, AttributeValue::M(HashMap::new()))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match created {
            Ok(_) => self.set_capped_entry(&pk, name, &entry, cap, op).await,
            Err(e) => match classify(&self.table, op, e) {
                // It existed: the map is full.
                Failure::ConditionFailed => Ok(false),
                Failure::Store(e) => Err(e),
            },
        }
    }

    async fn set_capped_entry(
        &self,
        pk: &AttributeValue,
        name: &str,
        entry: &HashMap<String, AttributeValue>,
        cap: usize,
        op: &str,
    ) -> Result<bool, StoreError> {
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, pk.clone())
            .update_expression("SET #entries.#name = :entry")
            .condition_expression(
                "attribute_exists(#entries) \
                 AND (attribute_exists(#entries.#name) OR size(#entries) < :cap)",
            )
            .expression_attribute_names("#entries", ENTRIES)
            .expression_attribute_names("#name", name)
            .expression_attribute_values(":entry", AttributeValue::M(entry.clone()))
            .expression_attribute_values(":cap", number(cap))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match classify(&self.table, op, e) {
                Failure::ConditionFailed => Ok(false),
                Failure::Store(e) => Err(e),
            },
        }
    }

    pub(super) async fn schedule_acceptance_item(
        &self,
        acceptance: &Acceptance,
    ) -> Result<bool, StoreError> {
        let entry = HashMap::from([
            (
                "connection".to_owned(),
                AttributeValue::S(acceptance.connection.clone()),
            ),
            ("until".to_owned(), number(acceptance.until)),
        ]);
        self.put_capped_entry(
            schedule_key(),
            acceptance.marker.as_str(),
            entry,
            MAX_ACCEPTANCES,
            "schedule_acceptance",
        )
        .await
    }

    pub(super) async fn acceptances_due_item(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Acceptance>, StoreError> {
        let Some(item) = self.get_item(schedule_key(), "acceptances_due").await? else {
            return Ok(Vec::new());
        };
        let Some(AttributeValue::M(entries)) = item.get(ENTRIES) else {
            return Ok(Vec::new());
        };
        let mut due = Vec::new();
        for (marker, entry) in entries {
            let acceptance = decode_acceptance(marker, entry).ok_or_else(|| {
                StoreError::Fatal(format!(
                    "DynamoDB table {}: scheduled acceptance {marker:?} is unreadable: {entry:?}",
                    self.table
                ))
            })?;
            if acceptance.until <= now {
                due.push(acceptance);
            }
        }
        due.sort_by(|a, b| (a.until, a.marker.as_str()).cmp(&(b.until, b.marker.as_str())));
        due.truncate(limit);
        Ok(due)
    }

    pub(super) async fn clear_acceptance_item(
        &self,
        marker: &Marker,
        until: Option<i64>,
    ) -> Result<bool, StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, schedule_key())
            .update_expression("REMOVE #entries.#marker")
            .expression_attribute_names("#entries", ENTRIES)
            .expression_attribute_names("#marker", marker.as_str());
        let request = match until {
            None => request.condition_expression("attribute_exists(#entries)"),
            Some(until) => request
                .condition_expression(
                    "attribute_exists(#entries) AND (attribute_not_exists(#entries.#marker) \
                     OR #entries.#marker.#until = :until)",
                )
                .expression_attribute_names("#until", "until")
                .expression_attribute_values(":until", number(until)),
        };
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) => match classify(&self.table, "clear_acceptance", e) {
                Failure::ConditionFailed => match until {
                    // No schedule at all: nothing to remove.
                    None => Ok(true),
                    // Either no schedule item (nothing to remove) or another date is stored.
                    Some(_) => Ok(self
                        .get_item(schedule_key(), "clear_acceptance")
                        .await?
                        .is_none()),
                },
                Failure::Store(e) => Err(e),
            },
        }
    }
}

fn decode_acceptance(marker: &str, entry: &AttributeValue) -> Option<Acceptance> {
    let AttributeValue::M(fields) = entry else {
        return None;
    };
    Some(Acceptance {
        marker: Marker::parse(marker)?,
        connection: fields.get("connection")?.as_s().ok()?.clone(),
        until: read_number(fields, "until")?,
    })
}
