//! Reading many records in one request (`BatchGetItem`, [`Store::get_many`]): the status sync's
//! poll page, whose tickets are mostly ones the bridge just created, and a first-seen finding's
//! check of every team the routing did not pick would otherwise cost one `GetItem` per record.
//! Any failure (one unreadable record included) fails the whole read; both callers then fall
//! back to reading record by record, so each error is still reported against its own record.

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

#[cfg(test)]
mod tests {
    use wiremock::matchers::{body_string_contains, header, method};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::finding::{Schema, WriteBackId};

    fn record(finding: &str) -> Record {
        Record {
            marker: Marker::new("payments", finding),
            finding_id: finding.into(),
            team: "payments".into(),
            schema: Schema::Asff,
            write_back: WriteBackId::Asff {
                id: finding.into(),
                product_arn: "arn:aws:securityhub:eu-west-1::product/aws/guardduty".into(),
            },
            rule: "all".into(),
            ticket: None,
            updated_at: None,
            fingerprint: "f".into(),
            severity: "HIGH".into(),
            finding_resolved: false,
            closed_by_bridge: false,
            status_to_hub: None,
            status_from_ticket: None,
            modified_at: 1,
            sla: None,
            group: None,
        }
    }

    /// A stored item as DynamoDB's JSON protocol carries it.
    fn wire(value: &AttributeValue) -> serde_json::Value {
        use serde_json::json;
        match value {
            AttributeValue::S(s) => json!({ "S": s }),
            AttributeValue::N(n) => json!({ "N": n }),
            AttributeValue::Bool(b) => json!({ "BOOL": b }),
            AttributeValue::Null(_) => json!({ "NULL": true }),
            AttributeValue::L(items) => json!({ "L": items.iter().map(wire).collect::<Vec<_>>() }),
            AttributeValue::M(fields) => {
                json!({ "M": fields.iter().map(|(k, v)| (k.clone(), wire(v))).collect::<serde_json::Map<_, _>>() })
            }
            other => panic!("not used by records: {other:?}"),
        }
    }

    fn item(record: &Record) -> serde_json::Value {
        let mut item = super::super::encode_record(record).unwrap();
        item.insert(PK.to_owned(), record_key(&record.marker));
        serde_json::Value::Object(item.iter().map(|(k, v)| (k.clone(), wire(v))).collect())
    }

    fn json(body: serde_json::Value) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_raw(body.to_string(), "application/x-amz-json-1.0")
    }

    /// Keys DynamoDB hands back unprocessed are read one by one, and their records are in the
    /// answer like the others.
    #[tokio::test]
    async fn unprocessed_keys_are_read_with_get_item() {
        let (first, second) = (record("batch-1"), record("batch-2"));
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(header("x-amz-target", "DynamoDB_20120810.BatchGetItem"))
            .and(body_string_contains("\"ConsistentRead\":true"))
            .respond_with(json(serde_json::json!({
                "Responses": { "t": [item(&first)] },
                "UnprocessedKeys": { "t": {
                    "Keys": [{ "pk": { "S": format!("rec#{}", second.marker) } }],
                    "ConsistentRead": true
                } }
            })))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(header("x-amz-target", "DynamoDB_20120810.GetItem"))
            .and(body_string_contains(second.marker.as_str()))
            .respond_with(json(serde_json::json!({ "Item": item(&second) })))
            .expect(1)
            .mount(&server)
            .await;
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .endpoint_url(server.uri())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .build();
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), "t".into());

        let records = store
            .get_records(&[first.marker.clone(), second.marker.clone()])
            .await
            .unwrap();

        assert_eq!(records.len(), 2);
        assert_eq!(records.get(&first.marker), Some(&first));
        assert_eq!(records.get(&second.marker), Some(&second));
    }
}
