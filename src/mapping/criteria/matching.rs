//! The compiled form of criteria and how it matches a finding: one filter per field, each
//! reading the finding's values in place (no allocation while routing).

use chrono::{DateTime, TimeDelta, Utc};

use crate::finding::Finding;
use crate::mapping::context::Application;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum FieldFilter {
    Text {
        field: StringField,
        /// ORed; empty means "no positive condition".
        any_of: Vec<TextCond>,
        /// Each must match none of the field's values.
        none_of: Vec<TextCond>,
    },
    Map {
        field: MapField,
        any_of: Vec<MapCond>,
        none_of: Vec<MapCond>,
    },
    Number {
        field: NumberField,
        any_of: Vec<NumberRange>,
    },
    Date {
        field: DateField,
        any_of: Vec<DateCond>,
    },
}

impl FieldFilter {
    pub(super) fn matches(
        &self,
        finding: &Finding,
        application: Option<&Application>,
        now: DateTime<Utc>,
    ) -> bool {
        match self {
            FieldFilter::Text {
                field,
                any_of,
                none_of,
            } => {
                let has = |c: &TextCond| field.any(finding, application, |v| c.hit(v));
                let positive = any_of.is_empty() || any_of.iter().any(has);
                positive && !none_of.iter().any(has)
            }
            FieldFilter::Map {
                field,
                any_of,
                none_of,
            } => {
                let positive = any_of.is_empty()
                    || any_of
                        .iter()
                        .any(|c| field.any(finding, |k, v| c.hit(k, v)));
                positive
                    && none_of
                        .iter()
                        .all(|c| !field.any(finding, |k, v| c.hit(k, v)))
            }
            FieldFilter::Number { field, any_of } => {
                let value = field.value(finding);
                any_of.iter().any(|r| r.contains(value))
            }
            FieldFilter::Date { field, any_of } => match field.value(finding) {
                Some(t) => any_of.iter().any(|c| c.contains(t, now)),
                None => false,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextOp {
    Equals,
    Prefix,
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct TextCond {
    pub(super) op: TextOp,
    pub(super) value: String,
}

impl TextCond {
    fn hit(&self, v: &str) -> bool {
        match self.op {
            TextOp::Equals => v == self.value,
            TextOp::Prefix => v.starts_with(self.value.as_str()),
            TextOp::Contains => v.contains(self.value.as_str()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct MapCond {
    pub(super) key: String,
    /// Only `Equals` and `Contains` occur here.
    pub(super) op: TextOp,
    pub(super) value: String,
}

impl MapCond {
    fn hit(&self, key: &str, value: &str) -> bool {
        key == self.key
            && match self.op {
                TextOp::Contains => value.contains(self.value.as_str()),
                _ => value == self.value,
            }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct NumberRange {
    pub(super) gte: Option<f64>,
    pub(super) lte: Option<f64>,
    pub(super) eq: Option<f64>,
}

impl NumberRange {
    fn contains(&self, v: f64) -> bool {
        self.gte.is_none_or(|b| v >= b)
            && self.lte.is_none_or(|b| v <= b)
            && self.eq.is_none_or(|b| v == b)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum DateCond {
    Between {
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    },
    /// Within the last `days` days before now.
    WithinDays(TimeDelta),
}

impl DateCond {
    fn contains(&self, t: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        match self {
            DateCond::Between { start, end } => {
                start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e)
            }
            DateCond::WithinDays(span) => now.checked_sub_signed(*span).is_none_or(|s| t >= s),
        }
    }
}

/// String-valued finding fields, named as in `AutomationRulesFindingFilters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StringField {
    Id,
    ProductArn,
    ProductName,
    CompanyName,
    GeneratorId,
    AwsAccountId,
    Region,
    Type,
    Title,
    Description,
    SeverityLabel,
    ResourceType,
    ResourceId,
    ResourceRegion,
    ResourcePartition,
    ComplianceStatus,
    ComplianceSecurityControlId,
    ComplianceAssociatedStandardsId,
    WorkflowStatus,
    RecordState,
    ApplicationName,
    ApplicationCriticality,
}

impl StringField {
    /// Does `pred` hold for any value of this field? (No allocation: values are borrowed.)
    fn any(
        self,
        f: &Finding,
        app: Option<&Application>,
        mut pred: impl FnMut(&str) -> bool,
    ) -> bool {
        match self {
            StringField::Id => pred(&f.id),
            StringField::ProductArn => pred(&f.product_arn),
            StringField::ProductName => pred(&f.product_name),
            StringField::CompanyName => pred(&f.company_name),
            StringField::GeneratorId => pred(&f.generator_id),
            StringField::AwsAccountId => pred(&f.account_id),
            StringField::Region => pred(&f.region),
            StringField::Type => f.types.iter().any(|t| pred(t)),
            StringField::Title => pred(&f.title),
            StringField::Description => pred(&f.description),
            StringField::SeverityLabel => pred(f.severity.as_str()),
            StringField::ResourceType => f.resources.iter().any(|r| pred(&r.kind)),
            StringField::ResourceId => f.resources.iter().any(|r| pred(&r.id)),
            StringField::ResourceRegion => f
                .resources
                .iter()
                .filter_map(|r| r.region.as_deref())
                .any(pred),
            StringField::ResourcePartition => f
                .resources
                .iter()
                .filter_map(|r| r.partition.as_deref())
                .any(pred),
            StringField::ComplianceStatus => f.compliance.status.as_deref().is_some_and(pred),
            StringField::ComplianceSecurityControlId => {
                f.compliance.control_id.as_deref().is_some_and(pred)
            }
            StringField::ComplianceAssociatedStandardsId => {
                f.compliance.standards.iter().any(|s| pred(s))
            }
            StringField::WorkflowStatus => pred(f.workflow_status.as_str()),
            StringField::RecordState => pred(f.record_state.as_str()),
            StringField::ApplicationName => app.is_some_and(|a| pred(&a.name)),
            StringField::ApplicationCriticality => {
                app.is_some_and(|a| pred(a.criticality.as_str()))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MapField {
    ResourceTags,
    UserDefinedFields,
    ProductFields,
}

impl MapField {
    fn any(self, f: &Finding, mut pred: impl FnMut(&str, &str) -> bool) -> bool {
        match self {
            MapField::ResourceTags => f
                .resources
                .iter()
                .any(|r| r.tags.iter().any(|(k, v)| pred(k, v))),
            MapField::UserDefinedFields => f.user_defined_fields.iter().any(|(k, v)| pred(k, v)),
            MapField::ProductFields => f.product_fields.iter().any(|(k, v)| pred(k, v)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NumberField {
    SeverityNormalized,
}

impl NumberField {
    fn value(self, f: &Finding) -> f64 {
        match self {
            NumberField::SeverityNormalized => f64::from(f.severity_score),
        }
    }
}

// The variants are Security Hub's filter names, `…At` included.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DateField {
    CreatedAt,
    UpdatedAt,
    FirstObservedAt,
    LastObservedAt,
}

impl DateField {
    fn value(self, f: &Finding) -> Option<DateTime<Utc>> {
        let text = match self {
            DateField::CreatedAt => f.created_at.as_deref(),
            DateField::UpdatedAt => f.updated_at.as_deref(),
            DateField::FirstObservedAt => f.first_observed_at.as_deref(),
            DateField::LastObservedAt => f.last_observed_at.as_deref(),
        }?;
        crate::time::parse_time(text)
    }
}
