//! OCSF 1.x (Security Hub, `Findings Imported V2`) → [`Finding`].
//!
//! Handles the Findings classes Security Hub emits: Vulnerability (2002), Compliance (2003) and
//! Detection (2004). Field choices where OCSF has no single ASFF twin:
//! - `generator_id`: `finding_info.analytic.uid`, else `finding_info.analytic.name`, else
//!   `metadata.product.feature.uid`, else `metadata.product.feature.name` — the analytic is the
//!   rule/detector that produced the finding, the closest thing to ASFF's `GeneratorId`; the feature
//!   is the product component, the next best.
//! - `status_id` 5 (Archived) and `activity_id` 3 (Close) → `record_state` ARCHIVED with
//!   `workflow_status` NEW: like an archived ASFF finding nobody triaged, the lifecycle stage reads
//!   the record state (resolution closes tickets); the workflow says no human acted on it.
//!   `status_id` 0/99/unknown → NEW.
//! - times: `*_time_dt` (already RFC 3339) when present, else `*_time` (epoch milliseconds)
//!   formatted as RFC 3339 UTC with milliseconds. `updated_at` falls back to the event's `time`.
//! - `severity_score`: the label's representative score ([`Severity::default_score`]); OCSF has no
//!   0–100 severity of its own.
//! - `product_fields`: string values of `unmapped` under their own keys, plus string values of
//!   `metadata` as `metadata.<key>`; other shapes are skipped (OCSF leaves `unmapped` free-form).
//! - `console_url`: the Security Hub (v2) console findings page filtered on `finding_info.uid`.

use chrono::{DateTime, SecondsFormat};
use serde_json::Value;

use super::asff::{company_name_from_arn, product_name_from_arn};
use super::envelope::{Fields, Path, arn_partition_region, console_url, expected};
use super::{
    Compliance, DecodeError, Finding, RecordState, Remediation, Resource, Schema, Severity,
    WorkflowStatus, WriteBackId,
};
use std::collections::BTreeMap;

/// Decodes one bare OCSF finding (error paths start at its root).
pub fn decode_finding(value: Value) -> Result<Finding, DecodeError> {
    decode_at(value, Path::Root, None)
}

/// `region_hint` is the envelope's `region`, used when the finding names none.
pub(super) fn decode_at(
    value: Value,
    path: Path<'_>,
    region_hint: Option<&str>,
) -> Result<Finding, DecodeError> {
    let f = Fields::of(&value, path, "an OCSF finding object")?;

    if let Some(class_uid) = f.integer("class_uid")?
        && !(2000..=2099).contains(&class_uid)
    {
        return Err(f.error(
            "class_uid",
            format!(
                "unsupported {class_uid} (expected a Findings class such as 2002 Vulnerability, \
                 2003 Compliance or 2004 Detection)"
            ),
        ));
    }

    let info = f.required_object("finding_info")?;
    let id = info.required_str("uid")?.to_owned();

    let metadata = f.required_object("metadata")?;
    let metadata_uid = metadata
        .str("uid")?
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned);
    let product = metadata.object("product")?;
    let product_uid = match &product {
        Some(p) => p.str("uid")?.filter(|s| !s.trim().is_empty()),
        None => None,
    };
    let product_label = match &product {
        Some(p) => p.str("name")?.filter(|s| !s.trim().is_empty()),
        None => None,
    };
    if product_uid.is_none() && metadata_uid.is_none() {
        // BatchUpdateFindingsV2 addresses a finding by metadata.uid or by the product uid triple.
        let at = metadata.path();
        let product_at = Path::Key(&at, "product");
        return Err(Path::Key(&product_at, "uid")
            .error("missing (needed to write back when metadata.uid is absent)"));
    }
    let product_arn = product_uid.or(product_label).unwrap_or_default().to_owned();
    let product_name = match product_label {
        Some(name) => name.to_owned(),
        None => product_name_from_arn(&product_arn),
    };
    let company_name = match &product {
        Some(p) => match p.str("vendor_name")?.filter(|s| !s.trim().is_empty()) {
            Some(v) => v.to_owned(),
            None => company_name_from_arn(&product_arn),
        },
        None => company_name_from_arn(&product_arn),
    };
    let generator_id = generator_id(&info, product.as_ref())?;

    let cloud = f.required_object("cloud")?;
    let account_id = cloud
        .required_object("account")?
        .required_str("uid")?
        .to_owned();

    let resources = f.objects("resources", |r| {
        let id = match r.str("uid")?.filter(|s| !s.is_empty()) {
            Some(uid) => uid.to_owned(),
            None => r.string("name")?,
        };
        Ok(Resource {
            kind: r.string("type")?,
            id,
            region: r.opt_string("region")?,
            partition: r.opt_string("cloud_partition")?,
            tags: tags(&r)?,
        })
    })?;

    let region = cloud
        .str("region")?
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .or_else(|| resources.iter().find_map(|r| r.region.clone()))
        .or_else(|| region_hint.map(str::to_owned))
        .unwrap_or_default();
    let partition = resources
        .iter()
        .find_map(|r| r.partition.as_deref())
        .or_else(|| arn_partition_region(&product_arn).map(|(p, _)| p))
        .unwrap_or("aws");

    let severity = severity(&f)?;
    let (workflow_status, record_state) = status(&f)?;
    let compliance = match f.object("compliance")? {
        None => Compliance::default(),
        Some(c) => Compliance {
            status: compliance_status(&c)?,
            control_id: c.opt_string("control")?,
            standards: c.strings("standards")?,
            related_requirements: c.strings("requirements")?,
        },
    };
    let remediation = match f.object("remediation")? {
        None => Remediation::default(),
        Some(r) => Remediation {
            text: r.opt_string("desc")?,
            url: r.strings("references")?.into_iter().next(),
        },
    };

    let created_at = time(&info, "created_time", "created_time_dt")?;
    let updated_at = match time(&info, "modified_time", "modified_time_dt")? {
        Some(t) => Some(t),
        None => time(&f, "time", "time_dt")?,
    };
    let first_observed_at = time(&info, "first_seen_time", "first_seen_time_dt")?;
    let last_observed_at = time(&info, "last_seen_time", "last_seen_time_dt")?;
    let title = info.string("title")?;
    let description = info.string("desc")?;
    let types = info.strings("types")?;
    let product_fields = product_fields(&f, &metadata);

    let console_url = console_url(
        partition,
        &region,
        "securityhub/v2",
        "finding_info.uid",
        &id,
    );
    let write_back = WriteBackId::Ocsf {
        metadata_uid,
        cloud_account_uid: account_id.clone(),
        finding_info_uid: id.clone(),
        metadata_product_uid: product_uid.unwrap_or_default().to_owned(),
    };
    Ok(Finding {
        id,
        schema: Schema::Ocsf,
        product_arn,
        product_name,
        company_name,
        generator_id,
        account_id,
        region,
        title,
        description,
        severity,
        severity_score: severity.default_score(),
        types,
        resources,
        compliance,
        workflow_status,
        record_state,
        created_at,
        updated_at,
        first_observed_at,
        last_observed_at,
        remediation,
        user_defined_fields: BTreeMap::new(),
        product_fields,
        console_url,
        write_back,
        raw: value,
    })
}

fn generator_id(
    info: &Fields<'_, '_>,
    product: Option<&Fields<'_, '_>>,
) -> Result<String, DecodeError> {
    if let Some(analytic) = info.object("analytic")? {
        for key in ["uid", "name"] {
            if let Some(v) = analytic.str(key)?.filter(|s| !s.is_empty()) {
                return Ok(v.to_owned());
            }
        }
    }
    if let Some(product) = product
        && let Some(feature) = product.object("feature")?
    {
        for key in ["uid", "name"] {
            if let Some(v) = feature.str(key)?.filter(|s| !s.is_empty()) {
                return Ok(v.to_owned());
            }
        }
    }
    Ok(String::new())
}

/// `severity_id` 1–6 decides; 0 (Unknown), 99 (Other) or an unlisted id fall back to the
/// `severity` caption, and to INFORMATIONAL when that says nothing usable either.
fn severity(f: &Fields<'_, '_>) -> Result<Severity, DecodeError> {
    let id = f.integer("severity_id")?;
    let caption = f.str("severity")?;
    if id.is_none() && caption.is_none() {
        return Err(f.error("severity_id", "missing"));
    }
    if let Some(label) = id.and_then(Severity::from_ocsf_id) {
        return Ok(label);
    }
    Ok(caption
        .and_then(|c| {
            if c.eq_ignore_ascii_case("fatal") {
                Some(Severity::Critical)
            } else {
                Severity::from_label(c)
            }
        })
        .unwrap_or(Severity::Informational))
}

fn status(f: &Fields<'_, '_>) -> Result<(WorkflowStatus, RecordState), DecodeError> {
    let closed = f.integer("activity_id")? == Some(3);
    let by_id = match f.integer("status_id")? {
        Some(1) => Some(WorkflowStatus::New),
        Some(2) => Some(WorkflowStatus::Notified),
        Some(3) => Some(WorkflowStatus::Suppressed),
        Some(4) => Some(WorkflowStatus::Resolved),
        Some(5) => return Ok((WorkflowStatus::New, RecordState::Archived)),
        Some(_) => Some(WorkflowStatus::New),
        None => None,
    };
    let workflow = match by_id {
        Some(w) => w,
        None => match f.str("status")?.map(str::to_ascii_lowercase).as_deref() {
            Some("in progress") => WorkflowStatus::Notified,
            Some("suppressed") => WorkflowStatus::Suppressed,
            Some("resolved") => WorkflowStatus::Resolved,
            Some("archived") => return Ok((WorkflowStatus::New, RecordState::Archived)),
            _ => WorkflowStatus::New,
        },
    };
    let record = if closed {
        RecordState::Archived
    } else {
        RecordState::Active
    };
    Ok((workflow, record))
}

/// OCSF `compliance.status_id` 1 Pass / 2 Warning / 3 Fail, else the `status` caption, spelled the
/// ASFF way so criteria and `Finding::is_resolved` need not care about the schema.
fn compliance_status(c: &Fields<'_, '_>) -> Result<Option<String>, DecodeError> {
    let by_id = match c.integer("status_id")? {
        Some(1) => Some("PASSED"),
        Some(2) => Some("WARNING"),
        Some(3) => Some("FAILED"),
        _ => None,
    };
    if let Some(status) = by_id {
        return Ok(Some(status.to_owned()));
    }
    let by_caption = c
        .str("status")?
        .map(|s| match s.to_ascii_lowercase().as_str() {
            "pass" | "passed" => "PASSED",
            "warning" => "WARNING",
            "fail" | "failed" => "FAILED",
            _ => "NOT_AVAILABLE",
        });
    Ok(match by_caption {
        Some(s) => Some(s.to_owned()),
        None if c.has("status_id") => Some("NOT_AVAILABLE".to_owned()),
        None => None,
    })
}

/// OCSF resource tags are a list of `{name, value}` (key_value_object); some producers send a plain
/// map instead. Both become a string map.
fn tags(r: &Fields<'_, '_>) -> Result<BTreeMap<String, String>, DecodeError> {
    match r.get("tags") {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(_)) => r.string_map("tags"),
        Some(Value::Array(_)) => Ok(r
            .objects("tags", |tag| {
                Ok((tag.required_str("name")?.to_owned(), tag.string("value")?))
            })?
            .into_iter()
            .collect()),
        Some(other) => Err(r.error(
            "tags",
            expected("a list of {name, value} or an object of strings", other),
        )),
    }
}

/// `<key>_dt` as given, else `<key>` in epoch milliseconds rendered as RFC 3339.
fn time(f: &Fields<'_, '_>, key: &str, dt_key: &str) -> Result<Option<String>, DecodeError> {
    if let Some(dt) = f.str(dt_key)? {
        return Ok(Some(dt.to_owned()));
    }
    match f.integer(key)? {
        None => Ok(None),
        Some(ms) => match DateTime::from_timestamp_millis(ms) {
            Some(t) => Ok(Some(t.to_rfc3339_opts(SecondsFormat::Millis, true))),
            None => Err(f.error(key, format!("epoch milliseconds out of range: {ms}"))),
        },
    }
}

fn product_fields(f: &Fields<'_, '_>, metadata: &Fields<'_, '_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(Value::Object(unmapped)) = f.get("unmapped") {
        for (k, v) in unmapped {
            if let Value::String(s) = v {
                out.insert(k.clone(), s.clone());
            }
        }
    }
    {
        for (k, v) in metadata.entries() {
            if let Value::String(s) = v {
                out.insert(format!("metadata.{k}"), s.clone());
            }
        }
    }
    out
}
