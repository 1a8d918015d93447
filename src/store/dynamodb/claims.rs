//! Claims as conditional writes: taken when free or expired, renewed and released only by their
//! owner, and an intent recorded under the claim before a create.

use super::*;

impl DynamoStore {
    pub(super) async fn claim_item(
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
    pub(super) async fn extend_claim_ttl(
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

    pub(super) async fn renew_item(
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

    pub(super) async fn set_intent_item(
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

    pub(super) async fn release_item(
        &self,
        marker: &Marker,
        owner: &str,
    ) -> Result<(), StoreError> {
        self.release_owner(record_key(marker), owner, "release")
            .await
    }

    /// Removes the lease `owner` holds on the item `key` (a claim, the status-sync lease); a
    /// no-op when `owner` does not hold it.
    pub(super) async fn release_owner(
        &self,
        key: AttributeValue,
        owner: &str,
        op: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, key)
            .update_expression("REMOVE #owner, #until")
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match classify(&self.table, op, e) {
                Failure::ConditionFailed => Ok(()),
                Failure::Store(e) => Err(e),
            },
        }
    }
}
