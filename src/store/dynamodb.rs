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
    finding_key, rfc3339_millis,
};
use crate::marker::Marker;

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

    async fn claim_item(
        &self,
        marker: &Marker,
        owner: &str,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let now = now_millis();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let claim_ttl = until / 1000 + CLAIM_TTL_GRACE_SECS;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, record_key(marker))
            // `if_not_exists` keeps a stored record's long TTL; a claim-only item gets the
            // short one (fixed up below when an older claim-only item is taken over).
            .update_expression(
                "SET #owner = :me, #until = :until, #marker = :marker, \
                 #exp = if_not_exists(#exp, :claim_ttl)",
            )
            .condition_expression(
                "attribute_not_exists(#pk) OR attribute_not_exists(#owner) OR #until < :now",
            )
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_names("#marker", "marker")
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":until", number(until))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":marker", AttributeValue::S(marker.to_string()))
            .expression_attribute_values(":claim_ttl", number(claim_ttl))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(e) => {
                return match classify(&self.table, "claim", e) {
                    Failure::ConditionFailed => Ok(Claim::Busy),
                    Failure::Store(e) => Err(e),
                };
            }
        };
        let empty = HashMap::new();
        let item = output.attributes().unwrap_or(&empty);
        let record = decode_record(&self.table, marker.as_str(), item)?;
        let intent = decode_intent(&self.table, marker.as_str(), item)?;
        if record.is_none() && read_number(item, EXPIRES_AT).is_some_and(|t| t < claim_ttl) {
            self.extend_claim_ttl(marker, owner, claim_ttl).await?;
        }
        Ok(Claim::Acquired(Claimed { record, intent }))
    }

    /// A claim-only item left by a crashed holder still carries that holder's TTL, which may
    /// fall inside our lease; without this, DynamoDB could delete the item under us.
    async fn extend_claim_ttl(
        &self,
        marker: &Marker,
        owner: &str,
        claim_ttl: i64,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, record_key(marker))
            .update_expression("SET #exp = :claim_ttl")
            .condition_expression("#owner = :me")
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_values(":claim_ttl", number(claim_ttl))
            .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match classify(&self.table, "claim", e) {
                // Someone took the key over already: our next write reports LostClaim.
                Failure::ConditionFailed => Ok(()),
                Failure::Store(e) => Err(e),
            },
        }
    }

    async fn renew_item(
        &self,
        marker: &Marker,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let now = now_millis();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, record_key(marker))
            // Keep a claim-only item (an intent) alive at least a day past the lease.
            .update_expression("SET #until = :until, #exp = if_not_exists(#exp, :claim_ttl)")
            .condition_expression("#owner = :me AND #until >= :now")
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":until", number(until))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":claim_ttl", number(until / 1000 + CLAIM_TTL_GRACE_SECS))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match classify(&self.table, "renew", e) {
                Failure::ConditionFailed => Ok(false),
                Failure::Store(e) => Err(e),
            },
        }
    }

    async fn set_intent_item(
        &self,
        marker: &Marker,
        owner: &str,
        intent: Option<&Intent>,
    ) -> Result<(), StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, record_key(marker))
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#intent", INTENT)
            .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()));
        let request = match intent {
            Some(intent) => {
                let value = serde_json::to_value(intent).map_err(|e| {
                    StoreError::Fatal(format!("intent on {marker} cannot be serialized: {e}"))
                })?;
                // An intent must outlive any lease it may be found under: a record's TTL.
                request
                    .update_expression("SET #intent = :intent, #exp = :exp")
                    .expression_attribute_names("#exp", EXPIRES_AT)
                    .expression_attribute_values(":intent", json_to_attribute(value))
                    .expression_attribute_values(
                        ":exp",
                        number(now_millis() / 1000 + RECORD_TTL_SECS),
                    )
            }
            None => request.update_expression("REMOVE #intent"),
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) => match classify(&self.table, "set_intent", e) {
                Failure::ConditionFailed => Err(StoreError::LostClaim(marker.to_string())),
                Failure::Store(e) => Err(e),
            },
        }
    }

    /// One `UpdateItem`: the lifecycle's fields are set (absent optional ones removed), the
    /// sync fields only with [`SyncFields::Replace`], and lease and intent removed — the release.
    async fn put_item(
        &self,
        record: &Record,
        owner: &str,
        sync: SyncFields,
    ) -> Result<(), StoreError> {
        let item = encode_record(record)?;
        let mut sets = Vec::new();
        let mut removes = vec![
            "#owner".to_owned(),
            "#until".to_owned(),
            "#intent".to_owned(),
        ];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, record_key(&record.marker))
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_names("#intent", INTENT)
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":exp", number(now_millis() / 1000 + RECORD_TTL_SECS));
        sets.push("#exp = :exp".to_owned());
        let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
        names.extend(OPTIONAL_FIELDS.iter().filter(|f| !item.contains_key(**f)));
        names.sort_unstable();
        for (i, name) in names.into_iter().enumerate() {
            if sync == SyncFields::Keep && SYNC_FIELDS.contains(&name) {
                continue;
            }
            let alias = format!("#f{i}");
            request = request.expression_attribute_names(&alias, name);
            match item.get(name) {
                Some(value) => {
                    let placeholder = format!(":v{i}");
                    sets.push(format!("{alias} = {placeholder}"));
                    request = request.expression_attribute_values(placeholder, value.clone());
                }
                None => removes.push(alias),
            }
        }
        let expression = format!("SET {} REMOVE {}", sets.join(", "), removes.join(", "));
        match request.update_expression(expression).send().await {
            Ok(_) => Ok(()),
            Err(e) => match classify(&self.table, "put", e) {
                Failure::ConditionFailed => Err(StoreError::LostClaim(record.marker.to_string())),
                Failure::Store(e) => Err(e),
            },
        }
    }

    /// `UpdateItem` on the finding's item returning what it held before.
    async fn update_finding(
        &self,
        op: &str,
        finding_id: &str,
        expression: &str,
        condition: Option<&str>,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Option<FindingState>, StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, finding_item_key(finding_id))
            .update_expression(expression)
            .set_condition_expression(condition.map(str::to_owned))
            .expression_attribute_names("#fid", RECORD_PRESENT)
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_values(":fid", AttributeValue::S(finding_id.to_owned()))
            .expression_attribute_values(":exp", number(now_millis() / 1000 + RECORD_TTL_SECS))
            .return_values(ReturnValue::AllOld);
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        for (alias, name) in [
            ("#teams", TEAMS),
            ("#rat", RESOLVED_AT),
            ("#rms", RESOLVED_MS),
        ] {
            if expression.contains(alias) || condition.is_some_and(|c| c.contains(alias)) {
                request = request.expression_attribute_names(alias, name);
            }
        }
        match request.send().await {
            Ok(output) => Ok(Some(finding_state(output.attributes()))),
            Err(e) => match classify(&self.table, op, e) {
                Failure::ConditionFailed => Ok(None),
                Failure::Store(e) => Err(e),
            },
        }
    }

    async fn enlist_item(&self, finding_id: &str, team: &str) -> Result<FindingState, StoreError> {
        self.update_finding(
            "enlist",
            finding_id,
            "SET #fid = :fid, #exp = :exp ADD #teams :team",
            None,
            vec![(":team", AttributeValue::Ss(vec![team.to_owned()]))],
        )
        .await?
        .ok_or_else(|| StoreError::Fatal(format!("enlist on {finding_id}: unexpected condition")))
    }

    async fn resolve_item(
        &self,
        finding_id: &str,
        updated_at: &str,
    ) -> Result<FindingState, StoreError> {
        let millis = rfc3339_millis(updated_at).ok_or_else(|| {
            StoreError::Fatal(format!(
                "resolution time {updated_at:?} of {finding_id} is not RFC 3339"
            ))
        })?;
        let raised = self
            .update_finding(
                "resolve",
                finding_id,
                "SET #fid = :fid, #exp = :exp, #rat = :rat, #rms = :rms",
                Some("attribute_not_exists(#rms) OR #rms < :rms"),
                vec![
                    (":rat", AttributeValue::S(updated_at.to_owned())),
                    (":rms", number(millis)),
                ],
            )
            .await?;
        match raised {
            Some(mut state) => {
                state.resolved_at = Some(updated_at.to_owned());
                Ok(state)
            }
            // A newer (or the same) resolution is stored already; it covers this one, and a
            // strongly consistent read now sees every team enlisted before it.
            None => self.finding_item(finding_id).await,
        }
    }

    async fn finding_item(&self, finding_id: &str) -> Result<FindingState, StoreError> {
        let item = self
            .get_item(finding_item_key(finding_id), "finding")
            .await?;
        Ok(finding_state(item.as_ref()))
    }

    async fn release_item(&self, marker: &Marker, owner: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, record_key(marker))
            .update_expression("REMOVE #owner, #until")
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match classify(&self.table, "release", e) {
                Failure::ConditionFailed => Ok(()),
                Failure::Store(e) => Err(e),
            },
        }
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

    async fn set_sync(
        &self,
        marker: &Marker,
        from_ticket: Option<&str>,
        to_hub: Option<&str>,
    ) -> Result<(), StoreError> {
        if from_ticket.is_none() && to_hub.is_none() {
            return Ok(());
        }
        let now_secs = now_millis() / 1000;
        let mut expression = String::from("SET #mod = :mod, #exp = :exp");
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, record_key(marker))
            .condition_expression("attribute_exists(#present)")
            .expression_attribute_names("#present", RECORD_PRESENT)
            .expression_attribute_names("#mod", "modified_at")
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_values(":mod", number(now_secs))
            .expression_attribute_values(":exp", number(now_secs + RECORD_TTL_SECS));
        if let Some(status) = from_ticket {
            expression.push_str(", #sft = :sft");
            request = request
                .expression_attribute_names("#sft", "status_from_ticket")
                .expression_attribute_values(":sft", AttributeValue::S(status.to_owned()));
        }
        if let Some(status) = to_hub {
            expression.push_str(", #sth = :sth");
            request = request
                .expression_attribute_names("#sth", "status_to_hub")
                .expression_attribute_values(":sth", AttributeValue::S(status.to_owned()));
        }
        match request.update_expression(expression).send().await {
            Ok(_) => Ok(()),
            Err(e) => match classify(&self.table, "set_sync_status", e) {
                // No record for this marker: nothing of ours to track.
                Failure::ConditionFailed => Ok(()),
                Failure::Store(e) => Err(e),
            },
        }
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

type Item = HashMap<String, AttributeValue>;

fn record_key(marker: &Marker) -> AttributeValue {
    AttributeValue::S(format!("rec#{marker}"))
}

fn finding_item_key(finding_id: &str) -> AttributeValue {
    AttributeValue::S(format!("fnd#{}", finding_key(finding_id)))
}

/// The finding index entry as an item holds it; no item is an unindexed finding.
fn finding_state(item: Option<&Item>) -> FindingState {
    let Some(item) = item.filter(|i| !i.is_empty()) else {
        return FindingState::default();
    };
    let mut teams: Vec<String> = match item.get(TEAMS) {
        Some(AttributeValue::Ss(teams)) => teams.clone(),
        _ => Vec::new(),
    };
    teams.sort();
    FindingState {
        teams,
        resolved_at: item.get(RESOLVED_AT).and_then(|v| v.as_s().ok()).cloned(),
        indexed: true,
    }
}

fn decode_intent(table: &str, marker: &str, item: &Item) -> Result<Option<Intent>, StoreError> {
    let Some(value) = item.get(INTENT) else {
        return Ok(None);
    };
    let unreadable = |why: String| {
        StoreError::Fatal(format!("DynamoDB table {table}: intent on {marker}: {why}"))
    };
    let json = attribute_to_json(value).map_err(unreadable)?;
    serde_json::from_value(json)
        .map(Some)
        .map_err(|e| unreadable(e.to_string()))
}

fn watermark_key(name: &str) -> AttributeValue {
    AttributeValue::S(format!("wm#{name}"))
}

fn number(n: i64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn read_number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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
    let detail = || format!("DynamoDB table {table}: {}", failure.message);
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

/// The record's serde form, one attribute per field; `None` fields are left out.
fn encode_record(record: &Record) -> Result<Item, StoreError> {
    match serde_json::to_value(record) {
        Ok(serde_json::Value::Object(fields)) => Ok(fields
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k, json_to_attribute(v)))
            .collect()),
        Ok(_) => Err(StoreError::Fatal(format!(
            "record {} does not serialize to an object",
            record.marker
        ))),
        Err(e) => Err(StoreError::Fatal(format!(
            "record {} cannot be serialized: {e}",
            record.marker
        ))),
    }
}

fn decode_record(table: &str, marker: &str, item: &Item) -> Result<Option<Record>, StoreError> {
    if !item.contains_key(RECORD_PRESENT) {
        return Ok(None);
    }
    let unreadable =
        |why: String| StoreError::Fatal(format!("DynamoDB table {table}: record {marker}: {why}"));
    let mut fields = serde_json::Map::new();
    for (name, value) in item {
        if matches!(
            name.as_str(),
            PK | LEASE_OWNER | LEASE_UNTIL | EXPIRES_AT | INTENT
        ) {
            continue;
        }
        let value = attribute_to_json(value).map_err(|why| unreadable(format!("{name}: {why}")))?;
        fields.insert(name.clone(), value);
    }
    serde_json::from_value(serde_json::Value::Object(fields))
        .map(Some)
        .map_err(|e| unreadable(e.to_string()))
}

fn json_to_attribute(value: serde_json::Value) -> AttributeValue {
    use serde_json::Value;
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s),
        Value::Array(items) => {
            AttributeValue::L(items.into_iter().map(json_to_attribute).collect())
        }
        Value::Object(fields) => AttributeValue::M(
            fields
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, json_to_attribute(v)))
                .collect(),
        ),
    }
}

fn attribute_to_json(value: &AttributeValue) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match value {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => {
            if let Ok(i) = n.parse::<i64>() {
                Value::from(i)
            } else if let Ok(u) = n.parse::<u64>() {
                Value::from(u)
            } else {
                n.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| format!("number {n:?} out of range"))?
            }
        }
        AttributeValue::L(items) => Value::Array(
            items
                .iter()
                .map(attribute_to_json)
                .collect::<Result<_, _>>()?,
        ),
        AttributeValue::M(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), attribute_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => return Err(format!("unexpected attribute type {other:?}")),
    })
}

impl Store for DynamoStore {
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
