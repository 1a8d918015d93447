//! The normalized finding: what mapping criteria and templates see, whatever the source schema.
//!
//! `decode` (in [`envelope`]) accepts every delivery form listed in the README ("How a finding becomes exactly one ticket", step 1) and turns
//! ASFF (Security Hub CSPM) and OCSF (Security Hub) findings into one [`Finding`] shape.

pub mod asff;
pub mod envelope;
pub mod ocsf;
pub mod stream;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

pub use envelope::{EachFinding, decode, decode_each};

/// Which schema a finding arrived in. Decides how the finding is written back to Security Hub:
/// ASFF through `BatchUpdateFindings`, OCSF through `BatchUpdateFindingsV2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schema {
    Asff,
    Ocsf,
}

impl Schema {
    pub fn as_str(self) -> &'static str {
        match self {
            Schema::Asff => "asff",
            Schema::Ocsf => "ocsf",
        }
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The metric label (`runtime::telemetry` takes label values as `&'static str`).
impl From<Schema> for &'static str {
    fn from(schema: Schema) -> &'static str {
        schema.as_str()
    }
}

/// Severity labels of ASFF; OCSF `severity_id` values map onto the same labels
/// (1 Informational .. 5 Critical, 6 Fatal → CRITICAL).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Informational,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Informational => "INFORMATIONAL",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    /// Parses an ASFF label (case-insensitive).
    pub fn from_label(label: &str) -> Option<Severity> {
        Severity::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(label))
    }

    /// ASFF `Severity.Normalized` (0–100) → label, with the ranges Security Hub documents:
    /// 0 INFORMATIONAL, 1–39 LOW, 40–69 MEDIUM, 70–89 HIGH, 90–100 CRITICAL.
    pub fn from_normalized(score: i64) -> Severity {
        match score {
            i64::MIN..=0 => Severity::Informational,
            1..=39 => Severity::Low,
            40..=69 => Severity::Medium,
            70..=89 => Severity::High,
            _ => Severity::Critical,
        }
    }

    /// OCSF `severity_id`: 1 Informational, 2 Low, 3 Medium, 4 High, 5 Critical, 6 Fatal.
    /// 0 (Unknown) and 99 (Other) have no label of their own.
    pub fn from_ocsf_id(id: i64) -> Option<Severity> {
        match id {
            1 => Some(Severity::Informational),
            2 => Some(Severity::Low),
            3 => Some(Severity::Medium),
            4 => Some(Severity::High),
            5 | 6 => Some(Severity::Critical),
            _ => None,
        }
    }

    /// The OCSF `severity_id` used when writing a severity back through `BatchUpdateFindingsV2`.
    pub fn ocsf_id(self) -> i32 {
        match self {
            Severity::Informational => 1,
            Severity::Low => 2,
            Severity::Medium => 3,
            Severity::High => 4,
            Severity::Critical => 5,
        }
    }

    /// A representative 0–100 score (the middle-upper end of each ASFF range), used when a finding
    /// carries only a label.
    pub fn default_score(self) -> u8 {
        match self {
            Severity::Informational => 0,
            Severity::Low => 30,
            Severity::Medium => 50,
            Severity::High => 70,
            Severity::Critical => 90,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ASFF `Workflow.Status`; OCSF `status_id` maps 1 New → NEW, 2 In Progress → NOTIFIED,
/// 3 Suppressed → SUPPRESSED, 4 Resolved → RESOLVED, 5 Archived / 99 Other → (see `RecordState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum WorkflowStatus {
    New,
    Notified,
    Resolved,
    Suppressed,
}

impl WorkflowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::New => "NEW",
            WorkflowStatus::Notified => "NOTIFIED",
            WorkflowStatus::Resolved => "RESOLVED",
            WorkflowStatus::Suppressed => "SUPPRESSED",
        }
    }

    pub fn parse(s: &str) -> Option<WorkflowStatus> {
        [
            WorkflowStatus::New,
            WorkflowStatus::Notified,
            WorkflowStatus::Resolved,
            WorkflowStatus::Suppressed,
        ]
        .into_iter()
        .find(|w| w.as_str().eq_ignore_ascii_case(s))
    }

    /// OCSF `status_id` for `BatchUpdateFindingsV2`.
    pub fn ocsf_status_id(self) -> i32 {
        match self {
            WorkflowStatus::New => 1,
            WorkflowStatus::Notified => 2,
            WorkflowStatus::Suppressed => 3,
            WorkflowStatus::Resolved => 4,
        }
    }
}

impl fmt::Display for WorkflowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The metric label (`runtime::telemetry` takes label values as `&'static str`).
impl From<WorkflowStatus> for &'static str {
    fn from(status: WorkflowStatus) -> &'static str {
        status.as_str()
    }
}

/// ASFF `RecordState`; OCSF `status_id` 5 (Archived) → ARCHIVED, everything else ACTIVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordState {
    Active,
    Archived,
}

impl RecordState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Active => "ACTIVE",
            RecordState::Archived => "ARCHIVED",
        }
    }
}

/// One affected resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Resource {
    /// ASFF resource type (`AwsEc2Instance`), or OCSF `resources[].type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Usually an ARN (`Resources[].Id`, OCSF `resources[].uid`).
    pub id: String,
    pub region: Option<String>,
    pub partition: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// Compliance block: present on control findings (CSPM standards, OCSF Compliance 2003).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Compliance {
    /// PASSED / WARNING / FAILED / NOT_AVAILABLE (upper-case, as ASFF spells it).
    pub status: Option<String>,
    pub control_id: Option<String>,
    /// Standards ARNs / ids (`Compliance.AssociatedStandards[].StandardsId`).
    pub standards: Vec<String>,
    pub related_requirements: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Remediation {
    pub text: Option<String>,
    pub url: Option<String>,
}

/// Identifiers needed to write back to Security Hub for this finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "schema", rename_all = "lowercase")]
pub enum WriteBackId {
    /// `BatchUpdateFindings` `FindingIdentifiers[{Id, ProductArn}]`.
    Asff { id: String, product_arn: String },
    /// `BatchUpdateFindingsV2`: `MetadataUids` when the finding has `metadata.uid`, otherwise
    /// `FindingIdentifiers[{CloudAccountUid, FindingInfoUid, MetadataProductUid}]`.
    Ocsf {
        metadata_uid: Option<String>,
        cloud_account_uid: String,
        finding_info_uid: String,
        metadata_product_uid: String,
    },
}

/// A finding normalized from ASFF or OCSF. Field names are the template names (README,
/// "Templates"); timestamps are RFC 3339 strings exactly as the source gave them, with
/// their parsed value kept for comparisons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub id: String,
    pub schema: Schema,
    pub product_arn: String,
    pub product_name: String,
    pub company_name: String,
    pub generator_id: String,
    pub account_id: String,
    pub region: String,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    /// 0–100 (ASFF `Normalized`, or derived from the label / OCSF id).
    pub severity_score: u8,
    pub types: Vec<String>,
    pub resources: Vec<Resource>,
    pub compliance: Compliance,
    pub workflow_status: WorkflowStatus,
    pub record_state: RecordState,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub first_observed_at: Option<String>,
    pub last_observed_at: Option<String>,
    pub remediation: Remediation,
    pub user_defined_fields: BTreeMap<String, String>,
    pub product_fields: BTreeMap<String, String>,
    /// Link to the finding in the Security Hub console of its region.
    pub console_url: String,
    /// How to address this finding in a write-back.
    #[serde(skip)]
    pub write_back: WriteBackId,
    /// The original finding JSON, untouched (unknown fields included).
    pub raw: serde_json::Value,
}

impl Finding {
    /// `UpdatedAt` (ASFF) / `finding_info.modified_time` (OCSF) parsed, for staleness checks.
    pub fn updated_at_time(&self) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        self.updated_at
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    }

    /// True when the finding no longer needs work: archived, or a control check that passed.
    pub fn is_resolved(&self) -> bool {
        self.record_state == RecordState::Archived
            || self.compliance.status.as_deref() == Some("PASSED")
    }
}

/// Why an input could not be decoded. Always permanent: the same bytes will never decode.
/// `path` is a JSON path into the input (`detail.findings[0].Severity`), empty for the root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct DecodeError {
    pub path: String,
    pub message: String,
}

impl DecodeError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        DecodeError {
            path: path.into(),
            message: message.into(),
        }
    }
}
