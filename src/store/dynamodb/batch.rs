//! Reading many records in one request (`BatchGetItem`): the status sync's poll page, whose
//! tickets are mostly ones the bridge just created, would otherwise cost one `GetItem` each.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::{DynamoStore, PK, Record, Store, StoreError, decode_record, record_key, store_error};
use crate::marker::Marker;

/// What `BatchGetItem` takes in one request.
const MAX_KEYS_PER_BATCH: usize = 100;

impl DynamoStore {
    /// The records of `markers` (those that have one), strongly consistent, read 100 keys a
    /// request. Keys DynamoDB leaves unprocessed (throttling, the 16 MB response limit) are read
    /// one by one with `GetItem`, which carries the SDK's retries: no second retry loop here.
    pub(super) async fn get_records(
        &self,
        markers: &[Marker],
    ) -> Result<HashMap<Marker, Record>, StoreError> {
        let mut out = HashMap::with_capacity(markers.len());
        let mut by_key: HashMap<String, &Marker> = HashMap::with_capacity(markers.len());
        for marker in markers {
            if let AttributeValue::S(key) = record_key(marker) {
                by_key.insert(key, marker);
            }
        }
        let keys: Vec<&String> = by_key.keys().collect();
        let mut unprocessed: Vec<&Marker> = Vec::new();
        for chunk in keys.chunks(MAX_KEYS_PER_BATCH) {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(
                    chunk
                        .iter()
                        .map(|key| {
                            HashMap::from([(PK.to_owned(), AttributeValue::S((*key).clone()))])
                        })
                        .collect(),
                ))
                // As `get`: a decision follows this read, never on a stale replica.
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Fatal(format!("BatchGetItem request: {e}")))?;
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| store_error(&self.table, "get_many", e))?;
            for item in output
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default()
            {
                let Some(AttributeValue::S(key)) = item.get(PK) else {
                    continue;
                };
                let Some(marker) = by_key.get(key) else {
                    continue;
                };
                if let Some(record) = decode_record(&self.table, marker.as_str(), &item)? {
                    out.insert((*marker).clone(), record);
                }
            }
            let left = output
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            for key in left {
                if let Some(AttributeValue::S(key)) = key.get(PK)
                    && let Some(marker) = by_key.get(key)
                {
                    unprocessed.push(marker);
                }
            }
        }
        for marker in unprocessed {
            if let Some(record) = Store::get(self, marker).await? {
                out.insert(marker.clone(), record);
            }
        }
        Ok(out)
    }
}
