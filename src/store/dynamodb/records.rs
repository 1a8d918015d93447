//! Records, the finding index (enlisted teams, the resolution tombstone) and sync fields, each
//! written only by the claim's owner.

use super::*;

impl DynamoStore {
    /// One `UpdateItem`: the lifecycle's fields are set (absent optional ones removed), the
    /// sync fields only with [`SyncFields::Replace`], and lease and intent removed — the release.
    pub(super) async fn put_item(
        &self,
        record: &Record,
        owner: &str,
        sync: SyncFields,
    ) -> Result<(), StoreError> {
        let request = self.record_write(record, owner, sync, "#owner = :me")?;
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) => match classify(&self.table, "put", e) {
                Failure::ConditionFailed if self.already_written(record, sync).await => Ok(()),
                Failure::ConditionFailed => Err(StoreError::LostClaim(record.marker.to_string())),
                Failure::Store(e) => Err(e),
            },
        }
    }

    /// Whether a `put` refused for its condition had in fact been applied: the SDK retries a
    /// request whose answer was lost (a timeout, a cut connection), and when the first attempt
    /// went through, the retry finds the lease it released and fails. The item then holds no
    /// lease and exactly this record (its change time and, with [`SyncFields::Keep`], the
    /// sync fields aside), which is what the caller meant to store. Any doubt is a lost claim.
    async fn already_written(&self, record: &Record, sync: SyncFields) -> bool {
        let Ok(Some(item)) = self.get_item(record_key(&record.marker), "put").await else {
            return false;
        };
        if item.contains_key(LEASE_OWNER) || item.contains_key(INTENT) {
            return false;
        }
        let Ok(Some(mut stored)) = decode_record(&self.table, record.marker.as_str(), &item) else {
            return false;
        };
        stored.modified_at = record.modified_at;
        if sync == SyncFields::Keep {
            stored.status_from_ticket = record.status_from_ticket.clone();
            stored.status_to_hub = record.status_to_hub.clone();
        }
        let same = stored == *record;
        if same {
            tracing::info!(marker = %record.marker, "a record write refused on its retry had been applied by its first attempt");
        }
        same
    }

    /// The `UpdateItem` of [`DynamoStore::put_item`] under `condition` (which may use `#owner`,
    /// `:me` and `#intent`), ready to send: `put` and `adopt` write a record the same way.
    pub(super) fn record_write(
        &self,
        record: &Record,
        owner: &str,
        sync: SyncFields,
        condition: &str,
    ) -> Result<
        aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        StoreError,
    > {
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
            .condition_expression(condition)
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
        Ok(request.update_expression(expression))
    }

    /// `UpdateItem` on the finding's item returning what it held before.
    pub(super) async fn update_finding(
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

    pub(super) async fn enlist_item(
        &self,
        finding_id: &str,
        team: &str,
    ) -> Result<FindingState, StoreError> {
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

    pub(super) async fn resolve_item(
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

    pub(super) async fn finding_item(&self, finding_id: &str) -> Result<FindingState, StoreError> {
        let item = self
            .get_item(finding_item_key(finding_id), "finding")
            .await?;
        Ok(finding_state(item.as_ref()))
    }

    pub(super) async fn set_sync(
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
}
