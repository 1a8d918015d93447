//! ASFF (AWS Security Finding Format, Security Hub CSPM) → [`Finding`].
//!
//! Strict where the bridge depends on a value (identifiers for dedup and write-back, severity for
//! routing, the shapes of maps that criteria filter on) and lenient about prose: a finding without
//! a `Title` still deserves a ticket, a finding with a mistyped `Severity` cannot be routed safely.
//! Text is never length-checked here: the renderer cuts it to the target's limits.

use serde_json::Value;

use super::envelope::{Fields, Path, arn_partition_region, console_url};
use super::{
    Compliance, DecodeError, Finding, RecordState, Remediation, Resource, Schema, Severity,
    WorkflowStatus, WriteBackId,
};

/// `Compliance.Status` values ASFF allows.
const COMPLIANCE_STATUSES: [&str; 4] = ["PASSED", "WARNING", "FAILED", "NOT_AVAILABLE"];

/// Decodes one bare ASFF finding (error paths start at its root).
pub fn decode_finding(value: Value) -> Result<Finding, DecodeError> {
    decode_at(value, Path::Root, None)
}

/// `region_hint` is the envelope's `region`, used when neither `Region` nor the product ARN say.
pub(super) fn decode_at(
    value: Value,
    path: Path<'_>,
    region_hint: Option<&str>,
) -> Result<Finding, DecodeError> {
    let f = Fields::of(&value, path, "an ASFF finding object")?;

    let id = f.required_str("Id")?.to_owned();
    let product_arn = f.required_str("ProductArn")?.to_owned();
    let account_id = f.required_str("AwsAccountId")?.to_owned();
    let product_fields = f.string_map("ProductFields")?;
    let user_defined_fields = f.string_map("UserDefinedFields")?;

    let product_name = match non_empty(f.str("ProductName")?) {
        Some(name) => name.to_owned(),
        None => product_fields
            .get("aws/securityhub/ProductName")
            .cloned()
            .unwrap_or_else(|| product_name_from_arn(&product_arn)),
    };
    let company_name = match non_empty(f.str("CompanyName")?) {
        Some(name) => name.to_owned(),
        None => product_fields
            .get("aws/securityhub/CompanyName")
            .cloned()
            .unwrap_or_else(|| company_name_from_arn(&product_arn)),
    };

    let (arn_partition, arn_region) = arn_partition_region(&product_arn).unwrap_or(("aws", ""));
    let region = non_empty(f.str("Region")?)
        .or(non_empty(Some(arn_region)))
        .or(non_empty(region_hint))
        .unwrap_or_default()
        .to_owned();

    let (severity, severity_score) = severity(&f)?;
    let workflow_status = workflow_status(&f)?;
    let record_state = match f.str("RecordState")? {
        None => RecordState::Active,
        Some(s) if s.eq_ignore_ascii_case("ACTIVE") => RecordState::Active,
        Some(s) if s.eq_ignore_ascii_case("ARCHIVED") => RecordState::Archived,
        Some(s) => {
            return Err(f.error(
                "RecordState",
                format!("unknown {s:?} (expected ACTIVE or ARCHIVED)"),
            ));
        }
    };

    let compliance = match f.object("Compliance")? {
        None => Compliance::default(),
        Some(c) => Compliance {
            status: match c.str("Status")? {
                None => None,
                Some(s) => match COMPLIANCE_STATUSES
                    .iter()
                    .find(|known| known.eq_ignore_ascii_case(s))
                {
                    Some(known) => Some((*known).to_owned()),
                    None => {
                        return Err(c.error(
                            "Status",
                            format!(
                                "unknown {s:?} (expected PASSED, WARNING, FAILED or NOT_AVAILABLE)"
                            ),
                        ));
                    }
                },
            },
            // Findings from before consolidated control findings carry the control only in
            // ProductFields (`ControlId` for most standards, `RuleId` for CIS 1.2).
            control_id: match c.opt_string("SecurityControlId")? {
                Some(id) => Some(id),
                None => product_fields
                    .get("ControlId")
                    .or_else(|| product_fields.get("RuleId"))
                    .cloned(),
            },
            standards: c
                .objects("AssociatedStandards", |s| s.string("StandardsId"))?
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect(),
            related_requirements: c.strings("RelatedRequirements")?,
        },
    };

    let resources = f.objects("Resources", |r| {
        Ok(Resource {
            kind: r.required_str("Type")?.to_owned(),
            id: r.required_str("Id")?.to_owned(),
            region: r.opt_string("Region")?,
            partition: r.opt_string("Partition")?,
            tags: r.string_map("Tags")?,
        })
    })?;

    let remediation = match f.object("Remediation")? {
        None => Remediation::default(),
        Some(r) => match r.object("Recommendation")? {
            None => Remediation::default(),
            Some(rec) => Remediation {
                text: rec.opt_string("Text")?,
                url: rec.opt_string("Url")?,
            },
        },
    };
    let generator_id = f.string("GeneratorId")?;
    let title = f.string("Title")?;
    let description = f.string("Description")?;
    let types = f.strings("Types")?;
    let created_at = f.opt_string("CreatedAt")?;
    let updated_at = f.opt_string("UpdatedAt")?;
    let first_observed_at = f.opt_string("FirstObservedAt")?;
    let last_observed_at = f.opt_string("LastObservedAt")?;

    let console_url = console_url(arn_partition, &region, "securityhub", "Id", &id);
    Ok(Finding {
        schema: Schema::Asff,
        write_back: WriteBackId::Asff {
            id: id.clone(),
            product_arn: product_arn.clone(),
        },
        id,
        product_arn,
        product_name,
        company_name,
        generator_id,
        account_id,
        region,
        title,
        description,
        severity,
        severity_score,
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
        user_defined_fields,
        product_fields,
        console_url,
        raw: value,
    })
}

/// `Severity.Label` decides the label; `Normalized` (0–100) is the fallback and, when present, the
/// score. The deprecated `Product` score is not used: its scale differs per product.
fn severity(f: &Fields<'_, '_>) -> Result<(Severity, u8), DecodeError> {
    let Some(sev) = f.object("Severity")? else {
        return Err(f.error("Severity", "missing"));
    };
    let normalized = match sev.number("Normalized")? {
        None => None,
        Some(n) if (0.0..=100.0).contains(&n) => Some(n.round() as u8),
        Some(n) => {
            return Err(sev.error("Normalized", format!("expected 0–100, got {n}")));
        }
    };
    let label = match sev.str("Label")? {
        Some(label) => Some(Severity::from_label(label).ok_or_else(|| {
            sev.error(
                "Label",
                format!(
                    "unknown {label:?} (expected INFORMATIONAL, LOW, MEDIUM, HIGH or CRITICAL)"
                ),
            )
        })?),
        None => None,
    };
    match (label, normalized) {
        (Some(label), Some(score)) => Ok((label, score)),
        (Some(label), None) => Ok((label, label.default_score())),
        (None, Some(score)) => Ok((Severity::from_normalized(i64::from(score)), score)),
        (None, None) => Err(f.error("Severity", "has neither Label nor Normalized")),
    }
}

/// `Workflow.Status`, else the deprecated `WorkflowState` mapped the way Security Hub maps it,
/// else NEW.
fn workflow_status(f: &Fields<'_, '_>) -> Result<WorkflowStatus, DecodeError> {
    if let Some(workflow) = f.object("Workflow")?
        && let Some(status) = workflow.str("Status")?
    {
        return WorkflowStatus::parse(status).ok_or_else(|| {
            workflow.error(
                "Status",
                format!("unknown {status:?} (expected NEW, NOTIFIED, RESOLVED or SUPPRESSED)"),
            )
        });
    }
    let Some(state) = f.str("WorkflowState")? else {
        return Ok(WorkflowStatus::New);
    };
    match state.to_ascii_uppercase().as_str() {
        "NEW" => Ok(WorkflowStatus::New),
        "ASSIGNED" | "IN_PROGRESS" => Ok(WorkflowStatus::Notified),
        "DEFERRED" => Ok(WorkflowStatus::Suppressed),
        "RESOLVED" => Ok(WorkflowStatus::Resolved),
        _ => Err(f.error(
            "WorkflowState",
            format!(
                "unknown {state:?} (expected NEW, ASSIGNED, IN_PROGRESS, DEFERRED or RESOLVED)"
            ),
        )),
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.trim().is_empty())
}

/// The `<company>/<product>` tail of a product ARN (`product/aws/guardduty`, `productv2/aws/inspector`).
fn product_segments(arn: &str) -> Option<(&str, &str)> {
    let resource = arn.rsplit_once(':').map_or(arn, |(_, r)| r);
    let mut parts = resource.split('/');
    let kind = parts.next()?;
    if !kind.starts_with("product") {
        return None;
    }
    let company = parts.next()?;
    let product = parts.next()?;
    Some((company, product))
}

/// The console name of an AWS integration from its product ARN (`guardduty` → `GuardDuty`), so a
/// finding that lacks `ProductName` still matches `ProductName = GuardDuty` criteria. Third-party
/// products keep the ARN's segment as written.
pub(super) fn product_name_from_arn(arn: &str) -> String {
    let Some((company, product)) = product_segments(arn) else {
        return String::new();
    };
    if company != "aws" {
        return product.to_owned();
    }
    let known = match product {
        "guardduty" => "GuardDuty",
        "inspector" => "Inspector",
        "macie" => "Macie",
        "securityhub" => "Security Hub",
        "access-analyzer" => "IAM Access Analyzer",
        "firewall-manager" => "Firewall Manager",
        "config" => "Config",
        "health" => "Health",
        "detective" => "Detective",
        "ssm-patch-manager" => "Systems Manager Patch Manager",
        "ssm-opscenter" => "Systems Manager OpsCenter",
        "iot-device-defender" => "IoT Device Defender",
        other => other,
    };
    known.to_owned()
}

/// `aws` → `AWS`; other companies keep the ARN's segment.
pub(super) fn company_name_from_arn(arn: &str) -> String {
    match product_segments(arn) {
        Some(("aws", _)) => "AWS".to_owned(),
        Some((company, _)) => company.to_owned(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_names_from_arns() {
        assert_eq!(
            product_name_from_arn("arn:aws:securityhub:us-east-1::product/aws/guardduty"),
            "GuardDuty"
        );
        assert_eq!(
            product_name_from_arn("arn:aws:securityhub:eu-west-1::productv2/aws/access-analyzer"),
            "IAM Access Analyzer"
        );
        assert_eq!(
            product_name_from_arn(
                "arn:aws:securityhub:us-east-1:111122223333:product/crowdstrike/crowdstrike-falcon"
            ),
            "crowdstrike-falcon"
        );
        assert_eq!(product_name_from_arn("not-an-arn"), "");
        assert_eq!(
            company_name_from_arn("arn:aws:securityhub:us-east-1::product/aws/inspector"),
            "AWS"
        );
    }
}
