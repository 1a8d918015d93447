//! How records, intents, claims and finding-index entries are laid out as DynamoDB items, and
//! read back.

use super::*;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn record_key(marker: &Marker) -> AttributeValue {
    AttributeValue::S(format!("rec#{marker}"))
}

pub(super) fn finding_item_key(finding_id: &str) -> AttributeValue {
    AttributeValue::S(format!("fnd#{}", finding_key(finding_id)))
}

/// The finding index entry as an item holds it; no item is an unindexed finding.
pub(super) fn finding_state(item: Option<&Item>) -> FindingState {
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

pub(super) fn decode_intent(
    table: &str,
    marker: &str,
    item: &Item,
) -> Result<Option<Intent>, StoreError> {
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

pub(super) fn watermark_key(name: &str) -> AttributeValue {
    AttributeValue::S(format!("wm#{name}"))
}

pub(super) fn number(n: i64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

pub(super) fn read_number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

pub(super) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The record's serde form, one attribute per field; `None` fields are left out.
pub(super) fn encode_record(record: &Record) -> Result<Item, StoreError> {
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

pub(super) fn decode_record(
    table: &str,
    marker: &str,
    item: &Item,
) -> Result<Option<Record>, StoreError> {
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

pub(super) fn json_to_attribute(value: serde_json::Value) -> AttributeValue {
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

pub(super) fn attribute_to_json(value: &AttributeValue) -> Result<serde_json::Value, String> {
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
