//! The shared store for several replicas: one DynamoDB table (`BRIDGE_STORE=dynamodb:TABLE`).
//!
//! The table has a single string partition key `pk` and a TTL attribute `expires_at` (unix
//! seconds). Items:
//! - `pk = "rec#<marker>"`: one per (finding, team). The [`Record`] fields are plain attributes
//!   (nested ones as maps, `None` fields absent), next to `lease_owner` / `lease_until` (unix ms)
//!   while someone holds the claim. A record expires 400 days after its last write; an item that
//!   only ever held a claim (the holder died before creating anything) a day after its lease.
//!   A create whose outcome is not recorded yet leaves its [`Intent`] in `intent` (a map).
//! - `pk = "fnd#<finding key>"`: the finding index: `teams` (a string set of enlisted teams),
//!   `resolved_at` / `resolved_ms` (the tombstone), `finding_id`; expires like a record.
//! - `pk = "wm#<name>"`: a status-sync watermark in `value`; never expires.
//! - `pk = "lease#<name>"`, `pk = "retries#status-sync"`: the status sync's lease and retry
//!   queue (`coordination.rs`); never expire.
//!
//! Every state change is one conditional write, so replicas never need a lock service: the claim
//! is an `UpdateItem` that succeeds only when the lease is free or expired; renewals, intents,
//! `put` and `release` succeed only while `lease_owner` still names the caller (and a renewal only
//! while the lease has not run out). Enlisting and resolving are single `UpdateItem`s on the
//! finding's item that return its previous state. Lease times come from each replica's clock, so
//! replica clocks must agree to well within a lease (NTP does that).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};

use super::{
    BoxFuture, Claim, Claimed, FindingState, Intent, Record, Store, StoreError, SyncFields,
    SyncRetry, finding_key, rfc3339_millis,
};
use crate::marker::Marker;

mod acceptance;
mod batch;
mod claims;
mod coordination;
mod items;
mod reconcile;
mod records;
use items::*;

const PK: &str = "pk";

const LEASE_OWNER: &str = "lease_owner";

const LEASE_UNTIL: &str = "lease_until";

const EXPIRES_AT: &str = "expires_at";

/// Present on every item that holds a [`Record`], absent on claim-only items.
const RECORD_PRESENT: &str = "finding_id";

const WATERMARK_VALUE: &str = "value";

const INTENT: &str = "intent";

const TEAMS: &str = "teams";

const RESOLVED_AT: &str = "resolved_at";

const RESOLVED_MS: &str = "resolved_ms";

/// Record fields that status sync owns ([`Store::set_sync_status`]).
const SYNC_FIELDS: &[&str] = &["status_from_ticket", "status_to_hub"];

/// Record fields that may be absent (`None`): `put` removes them when the record has none.
const OPTIONAL_FIELDS: &[&str] = &[
    "ticket",
    "updated_at",
    "status_from_ticket",
    "status_to_hub",
    "sla",
    "group",
];

/// Long enough that a finding that stays quiet for a year still finds its ticket, short enough
/// that records of long-gone findings do not pile up forever.
const RECORD_TTL_SECS: i64 = 400 * 24 * 3600;

/// A claim-only item outlives its lease by a day, then DynamoDB removes it.
const CLAIM_TTL_GRACE_SECS: i64 = 24 * 3600;

/// Dedup store on a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

/// What a DynamoDB error means to the store: a failed condition is an answer, not an error.
enum Failure {
    ConditionFailed,
    Store(StoreError),
}

impl DynamoStore {
    /// The table must already exist (the deployment stack creates it; the bridge never does).
    pub fn new(client: Client, table: String) -> Self {
        DynamoStore { client, table }
    }

    /// Creates the table as the stack would (partition key `pk`, TTL on `expires_at`,
    /// on-demand billing) and waits until it is usable. For tests and local demos only.
    pub async fn create_table_for_tests(client: &Client, table: &str) -> Result<(), StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Fatal(e.to_string());
        client
            .create_table()
            .table_name(table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(PK)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(PK)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(build)?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(|e| store_error(table, "create_table", e))?;

        let mut active = false;
        for _ in 0..100 {
            let described = client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| store_error(table, "describe_table", e))?;
            if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                active = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !active {
            return Err(StoreError::Unavailable(format!(
                "DynamoDB table {table} did not become ACTIVE"
            )));
        }

        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(EXPIRES_AT)
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await
            .map_err(|e| store_error(table, "update_time_to_live", e))?;
        Ok(())
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get_item(&self, pk: AttributeValue, op: &str) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, pk)
            // A claim decision may follow this read: never act on a stale replica.
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(&self.table, op, e))?;
        Ok(output.item)
    }

    async fn put_watermark(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, watermark_key(name))
            .item(WATERMARK_VALUE, AttributeValue::S(value.to_owned()))
            .item("updated_at", number(now_millis()))
            .send()
            .await
            .map_err(|e| store_error(&self.table, "set_watermark", e))?;
        Ok(())
    }
}

/// A failed condition is handed back for the caller to interpret; every other failure becomes
/// a [`StoreError`] as [`crate::aws::errors`] reads it: throttling, 5xx and network trouble are
/// transient, a missing table or a refused credential is refused (the connection pauses), a
/// rejected request needs a person.
fn classify<E>(table: &str, op: &str, err: SdkError<E>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    use crate::aws::errors::Fault;
    let failure = crate::aws::errors::classify(op, &err);
    let detail = || format!("DynamoDB table {table}: {failure}");
    Failure::Store(match failure.fault {
        Fault::ConditionFailed => return Failure::ConditionFailed,
        Fault::NotFound => StoreError::Refused(format!(
            "DynamoDB table {table} not found ({op}); it is created by the deployment, \
             not by the bridge"
        )),
        Fault::Refused => StoreError::Refused(detail()),
        Fault::Throttled | Fault::Unavailable => StoreError::Unavailable(detail()),
        Fault::Invalid | Fault::Other => StoreError::Fatal(detail()),
    })
}

fn store_error<E>(table: &str, op: &str, err: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match classify(table, op, err) {
        Failure::Store(e) => e,
        Failure::ConditionFailed => StoreError::Fatal(format!(
            "DynamoDB table {table}: {op}: unexpected condition"
        )),
    }
}

impl Store for DynamoStore {
    /// Items carry a TTL of [`RECORD_TTL_SECS`] from their last write.
    fn retention(&self) -> Option<Duration> {
        Some(Duration::from_secs(RECORD_TTL_SECS.unsigned_abs()))
    }

    fn claim<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(self.claim_item(marker, owner, lease))
    }

    fn renew<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.renew_item(marker, owner, lease))
    }

    fn set_intent<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
        intent: Option<&'a Intent>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.set_intent_item(marker, owner, intent))
    }

    fn put<'a>(
        &'a self,
        record: &'a Record,
        owner: &'a str,
        sync: SyncFields,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.put_item(record, owner, sync))
    }

    fn enlist<'a>(
        &'a self,
        finding_id: &'a str,
        team: &'a str,
    ) -> BoxFuture<'a, Result<FindingState, StoreError>> {
        Box::pin(self.enlist_item(finding_id, team))
    }

    fn resolve<'a>(
        &'a self,
        finding_id: &'a str,
        updated_at: &'a str,
    ) -> BoxFuture<'a, Result<FindingState, StoreError>> {
        Box::pin(self.resolve_item(finding_id, updated_at))
    }

    fn finding<'a>(
        &'a self,
        finding_id: &'a str,
    ) -> BoxFuture<'a, Result<FindingState, StoreError>> {
        Box::pin(self.finding_item(finding_id))
    }

    fn release<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.release_item(marker, owner))
    }

    fn get<'a>(&'a self, marker: &'a Marker) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        Box::pin(async move {
            match self.get_item(record_key(marker), "get").await? {
                Some(item) => decode_record(&self.table, marker.as_str(), &item),
                None => Ok(None),
            }
        })
    }

    /// `None` leaves that field as it is; a marker without a stored record is a no-op.
    fn set_sync_status<'a>(
        &'a self,
        marker: &'a Marker,
        status_from_ticket: Option<&'a str>,
        status_to_hub: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.set_sync(marker, status_from_ticket, status_to_hub))
    }

    fn watermark<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        Box::pin(async move {
            let item = self.get_item(watermark_key(name), "watermark").await?;
            match item.as_ref().and_then(|i| i.get(WATERMARK_VALUE)) {
                None => Ok(None),
                Some(AttributeValue::S(value)) => Ok(Some(value.clone())),
                Some(other) => Err(StoreError::Fatal(format!(
                    "DynamoDB table {}: watermark {name} is not a string: {other:?}",
                    self.table
                ))),
            }
        })
    }

    fn set_watermark<'a>(
        &'a self,
        name: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.put_watermark(name, value))
    }

    /// A consistent read of a key that never exists: proves the table is there and readable
    /// with the permissions the bridge already needs (no `DescribeTable`).
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.get_item(AttributeValue::S("ping#".to_owned()), "ping")
                .await
                .map(|_| ())
        })
    }

    fn acquire_lease<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        Box::pin(self.acquire_lease_item(name, owner, ttl))
    }

    fn release_lease<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.release_lease_item(name, owner))
    }

    fn set_watermark_fenced<'a>(
        &'a self,
        name: &'a str,
        value: &'a str,
        fence: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.set_watermark_fenced_item(name, value, fence))
    }

    fn enqueue_sync_retry<'a>(
        &'a self,
        retry: &'a SyncRetry,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.enqueue_sync_retry_item(retry))
    }

    fn sync_retries_due<'a>(
        &'a self,
        now: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<SyncRetry>, StoreError>> {
        Box::pin(self.sync_retries_due_item(now, limit))
    }

    fn remove_sync_retry<'a>(
        &'a self,
        marker: &'a Marker,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.remove_sync_retry_item(marker))
    }

    // ---- reconcile (issue 16): see `reconcile` ----

    fn records_page<'a>(
        &'a self,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<crate::store::RecordsPage, StoreError>> {
        Box::pin(self.scan_records(cursor, limit))
    }

    fn adopt<'a>(
        &'a self,
        record: &'a Record,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<crate::store::Adoption, StoreError>> {
        Box::pin(self.adopt_item(record, owner))
    }

    fn drop_record<'a>(
        &'a self,
        marker: &'a Marker,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.drop_item(marker, owner))
    }

    // ---- risk acceptance that expires (issue 15): the expiry schedule (`acceptance.rs`) ----

    fn schedule_acceptance<'a>(
        &'a self,
        acceptance: &'a crate::store::Acceptance,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.schedule_acceptance_item(acceptance))
    }

    fn acceptances_due<'a>(
        &'a self,
        now: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<crate::store::Acceptance>, StoreError>> {
        Box::pin(self.acceptances_due_item(now, limit))
    }

    fn clear_acceptance<'a>(
        &'a self,
        marker: &'a Marker,
        until: Option<i64>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.clear_acceptance_item(marker, until))
    }

    fn get_many<'a>(
        &'a self,
        markers: &'a [Marker],
    ) -> BoxFuture<'a, Result<HashMap<Marker, Record>, StoreError>> {
        Box::pin(self.get_records(markers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Schema, WriteBackId};
    use crate::ticket::TicketRef;

    fn record() -> Record {
        Record {
            marker: Marker::new("payments", "arn:finding/1"),
            finding_id: "arn:finding/1".into(),
            team: "payments".into(),
            schema: Schema::Ocsf,
            write_back: WriteBackId::Ocsf {
                metadata_uid: None,
                cloud_account_uid: "111122223333".into(),
                finding_info_uid: "f-1".into(),
                metadata_product_uid: "p-1".into(),
            },
            rule: "critical".into(),
            ticket: Some(TicketRef {
                system: "servicenow".into(),
                key: "INC0010001".into(),
                id: "abc".into(),
                table: Some("incident".into()),
                url: "https://sn.example/incident/abc".into(),
            }),
            updated_at: None,
            fingerprint: "".into(),
            severity: "HIGH".into(),
            finding_resolved: true,
            closed_by_bridge: false,
            status_to_hub: Some("NOTIFIED".into()),
            status_from_ticket: None,
            modified_at: 1_700_000_000,
            sla: None,
            group: None,
        }
    }

    #[test]
    fn records_become_plain_attributes_and_come_back_unchanged() {
        let original = record();
        let item = encode_record(&original).unwrap();
        assert_eq!(
            item.get("team"),
            Some(&AttributeValue::S("payments".into()))
        );
        assert_eq!(
            item.get("finding_resolved"),
            Some(&AttributeValue::Bool(true))
        );
        assert!(!item.contains_key("updated_at"), "None fields are left out");
        let Some(AttributeValue::M(ticket)) = item.get("ticket") else {
            panic!("ticket should be a map: {item:?}");
        };
        assert_eq!(
            ticket.get("table"),
            Some(&AttributeValue::S("incident".into()))
        );
        let back = decode_record("t", original.marker.as_str(), &item).unwrap();
        assert_eq!(back, Some(original));
    }

    #[test]
    fn claim_only_items_hold_no_record() {
        let mut item = Item::new();
        item.insert(PK.into(), AttributeValue::S("rec#fb-x".into()));
        item.insert(LEASE_OWNER.into(), AttributeValue::S("me".into()));
        assert_eq!(decode_record("t", "fb-x", &item).unwrap(), None);
    }

    #[test]
    fn a_damaged_item_is_fatal_and_names_the_field() {
        let mut item = encode_record(&record()).unwrap();
        item.insert("modified_at".into(), AttributeValue::Bs(vec![]));
        match decode_record("bridge", "fb-x", &item) {
            Err(StoreError::Fatal(msg)) => {
                assert!(
                    msg.contains("modified_at") && msg.contains("bridge"),
                    "{msg}"
                )
            }
            other => panic!("expected Fatal, got {other:?}"),
        }
        let mut item = encode_record(&record()).unwrap();
        item.insert("severity".into(), number(3));
        assert!(matches!(
            decode_record("bridge", "fb-x", &item),
            Err(StoreError::Fatal(_))
        ));
    }
}
