//! What `findings-bridge reconcile` asks of the DynamoDB store: the records through a paged,
//! strongly consistent `Scan` (one page in memory at a time), a rebuilt record written with the
//! same `UpdateItem` as `put` but only where no record and no intent is stored, and a record
//! dropped with a conditional `DeleteItem` — each conditional on the caller's claim.

use super::*;
use crate::store::{Adoption, RecordsPage};

/// Prefix of every record key (`rec#<marker>`).
const RECORD_PREFIX: &str = "rec#";

impl DynamoStore {
    pub(super) async fn scan_records(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RecordsPage, StoreError> {
        let limit = i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
        let mut request = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .limit(limit)
            .filter_expression("begins_with(#pk, :rec) AND attribute_exists(#present)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#present", RECORD_PRESENT)
            .expression_attribute_values(":rec", AttributeValue::S(RECORD_PREFIX.to_owned()));
        if let Some(cursor) = cursor {
            request = request.exclusive_start_key(PK, AttributeValue::S(cursor.to_owned()));
        }
        let output = request
            .send()
            .await
            .map_err(|e| store_error(&self.table, "records_page", e))?;
        let mut records = Vec::new();
        for item in output.items() {
            let marker = item
                .get(PK)
                .and_then(|pk| pk.as_s().ok())
                .and_then(|pk| pk.strip_prefix(RECORD_PREFIX))
                .unwrap_or_default();
            if let Some(record) = decode_record(&self.table, marker, item)? {
                records.push(record);
            }
        }
        // `Limit` counts the items read before the filter: a page may hold fewer records (even
        // none) and still not be the last; only the absence of a last key ends the scan.
        let next = output
            .last_evaluated_key()
            .and_then(|key| key.get(PK))
            .and_then(|pk| pk.as_s().ok())
            .cloned();
        Ok(RecordsPage { records, next })
    }

    pub(super) async fn adopt_item(
        &self,
        record: &Record,
        owner: &str,
    ) -> Result<Adoption, StoreError> {
        let request = self
            .record_write(
                record,
                owner,
                SyncFields::Replace,
                "#owner = :me AND attribute_not_exists(#present) AND attribute_not_exists(#intent)",
            )?
            .expression_attribute_names("#present", RECORD_PRESENT);
        match request.send().await {
            Ok(_) => Ok(Adoption::Adopted),
            Err(e) => match classify(&self.table, "adopt", e) {
                Failure::ConditionFailed => self
                    .why_refused(&record.marker, owner, "adopt")
                    .await
                    .map(|refusal| match refusal {
                        Refusal::Record => Adoption::RecordExists,
                        Refusal::Intent => Adoption::CreatePending,
                    }),
                Failure::Store(e) => Err(e),
            },
        }
    }

    pub(super) async fn drop_item(&self, marker: &Marker, owner: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, record_key(marker))
            .condition_expression("#owner = :me AND attribute_not_exists(#intent)")
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#intent", INTENT)
            .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match classify(&self.table, "drop_record", e) {
                Failure::ConditionFailed => {
                    match self.why_refused(marker, owner, "drop_record").await? {
                        Refusal::Intent => Ok(false),
                        // Still ours and no intent: only a record can have failed a drop's condition,
                        // and a drop has no condition on records.
                        Refusal::Record => Err(StoreError::Fatal(format!(
                            "DynamoDB table {}: drop_record on {marker}: unexpected condition",
                            self.table
                        ))),
                    }
                }
                Failure::Store(e) => Err(e),
            },
        }
    }

    /// Why a conditional write under `owner`'s claim was refused, read afterwards (strongly
    /// consistent): the claim is gone ([`StoreError::LostClaim`]), an intent is there, or a
    /// record is.
    async fn why_refused(
        &self,
        marker: &Marker,
        owner: &str,
        op: &str,
    ) -> Result<Refusal, StoreError> {
        let item = self
            .get_item(record_key(marker), op)
            .await?
            .unwrap_or_default();
        let held = item
            .get(LEASE_OWNER)
            .and_then(|o| o.as_s().ok())
            .is_some_and(|o| o == owner);
        if !held {
            return Err(StoreError::LostClaim(marker.to_string()));
        }
        Ok(if item.contains_key(INTENT) {
            Refusal::Intent
        } else {
            Refusal::Record
        })
    }
}

/// What stood in a conditional write's way while the claim was still the caller's.
enum Refusal {
    Record,
    Intent,
}
