//! Rule criteria: the filter language of Security Hub automation rules
//! (`AutomationRulesFindingFilters`), so a rule's `[rules.criteria]` can be pasted from an
//! automation rule or an insight and mean the same thing.
//!
//! Semantics, per field:
//! - String filters `[{ Value, Comparison }]`. Positive comparisons (`EQUALS`, `PREFIX`,
//!   `CONTAINS`) are ORed: at least one must hold. Negative ones (`NOT_EQUALS`,
//!   `PREFIX_NOT_EQUALS`, `NOT_CONTAINS`) are ANDed: every one must hold. Both groups must hold.
//!   Comparisons are case-sensitive, as in Security Hub.
//! - Map filters `[{ Key, Value, Comparison }]` (`ResourceTags`, `UserDefinedFields`,
//!   `ProductFields`) follow the same OR/AND rule with `EQUALS`/`CONTAINS` and
//!   `NOT_EQUALS`/`NOT_CONTAINS`, comparing the value stored under `Key`.
//! - Number filters `[{ Gte, Lte, Eq }]`: the bounds of one filter are ANDed, filters are ORed.
//! - Date filters `[{ Start, End }]` or `[{ DateRange = { Value, Unit = "DAYS" } }]`: filters are
//!   ORed; a `DateRange` means "no older than `Value` days before now" (now is passed in, so
//!   routing can use the injectable clock of the template engine).
//!
//! `ApplicationName` and `ApplicationCriticality` (string filters) are the bridge's own: they
//! compare the application of the business-context inventory the finding belongs to
//! ([`Inventory::application_for`](super::context::Inventory::application_for)). A finding that
//! belongs to no application lacks these fields.
//!
//! Fields are ANDed. A field with several values (`Type`, `ComplianceAssociatedStandardsId`, every
//! `Resource*` field across all resources) satisfies a positive comparison when ANY of its values
//! does, and a negative comparison when NONE of its values matches the positive counterpart
//! (`Type NOT_EQUALS x` excludes every finding that has type `x` among its types). A field the
//! finding lacks (no compliance block, a resource without a region) fails positive comparisons and
//! passes negative ones. Each field is evaluated independently: `ResourceType` and `ResourceTags`
//! may be satisfied by two different resources of the same finding, as in Security Hub.
//!
//! Filters are compiled when the mapping files load (comparison names, at most
//! [`MAX_FILTERS_PER_FIELD`] values per field, date syntax), and matching never allocates.

use std::ops::Range;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeDelta, Utc};
use serde::Deserialize;
use toml::Spanned;

use super::context::Application;
use crate::finding::Finding;

/// Security Hub accepts at most 20 filter values per field in an automation rule; the same cap
/// keeps a pasted rule portable in both directions.
pub const MAX_FILTERS_PER_FIELD: usize = 20;

/// Compiled criteria of one rule. The default (no filters) matches every finding.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Criteria {
    filters: Vec<FieldFilter>,
}

impl Criteria {
    /// True when `finding` satisfies every field filter. `application` is the inventory entry
    /// the finding belongs to (`None`: it belongs to none), computed once per finding by the
    /// router. `now` anchors `DateRange` filters; the router passes the mapping set's clock so
    /// tests and `render` are reproducible.
    pub fn matches(
        &self,
        finding: &Finding,
        application: Option<&Application>,
        now: DateTime<Utc>,
    ) -> bool {
        self.filters
            .iter()
            .all(|f| f.matches(finding, application, now))
    }

    /// True when the criteria have no filters and so match every finding (a catch-all rule).
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Compiles criteria written as a standalone TOML table (the body of `[rules.criteria]`).
    /// Handy in tests and tools; mapping files go through the loader instead.
    pub fn from_toml(source: &str) -> Result<Criteria, CriteriaError> {
        let raw: CriteriaRaw = toml::from_str(source).map_err(|e| CriteriaError {
            offset: e.span().map(|s| s.start),
            message: e.message().to_owned(),
        })?;
        raw.compile().map_err(|mut errors| {
            let first = errors.remove(0);
            CriteriaError {
                offset: Some(first.span.start),
                message: first.message,
            }
        })
    }
}

/// Criteria text that does not compile. `offset` is a byte offset into the source, when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("criteria: {message}")]
pub struct CriteriaError {
    pub offset: Option<usize>,
    pub message: String,
}

/// A compile error inside criteria, located by byte span in the mapping file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpannedError {
    pub span: Range<usize>,
    pub message: String,
}

impl SpannedError {
    fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        SpannedError {
            span,
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compiled form
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum FieldFilter {
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
    fn matches(
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
enum TextOp {
    Equals,
    Prefix,
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
struct TextCond {
    op: TextOp,
    value: String,
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
struct MapCond {
    key: String,
    /// Only `Equals` and `Contains` occur here.
    op: TextOp,
    value: String,
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
struct NumberRange {
    gte: Option<f64>,
    lte: Option<f64>,
    eq: Option<f64>,
}

impl NumberRange {
    fn contains(&self, v: f64) -> bool {
        self.gte.is_none_or(|b| v >= b)
            && self.lte.is_none_or(|b| v <= b)
            && self.eq.is_none_or(|b| v == b)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum DateCond {
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
enum StringField {
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
enum MapField {
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
enum NumberField {
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
enum DateField {
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
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t: DateTime<FixedOffset>| t.with_timezone(&Utc))
    }
}

// ---------------------------------------------------------------------------------------------
// TOML form
// ---------------------------------------------------------------------------------------------

type Filters<T> = Spanned<Vec<Spanned<T>>>;

/// `[rules.criteria]` as written. Field names are those of `AutomationRulesFindingFilters`
/// (plus `Region`, `ProductFields` and `SeverityNormalized` from `AwsSecurityFindingFilters`, and
/// the bridge's own `ApplicationName` and `ApplicationCriticality`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct CriteriaRaw {
    id: Option<Filters<StringFilterRaw>>,
    product_arn: Option<Filters<StringFilterRaw>>,
    product_name: Option<Filters<StringFilterRaw>>,
    company_name: Option<Filters<StringFilterRaw>>,
    generator_id: Option<Filters<StringFilterRaw>>,
    aws_account_id: Option<Filters<StringFilterRaw>>,
    region: Option<Filters<StringFilterRaw>>,
    r#type: Option<Filters<StringFilterRaw>>,
    title: Option<Filters<StringFilterRaw>>,
    description: Option<Filters<StringFilterRaw>>,
    severity_label: Option<Filters<StringFilterRaw>>,
    resource_type: Option<Filters<StringFilterRaw>>,
    resource_id: Option<Filters<StringFilterRaw>>,
    resource_region: Option<Filters<StringFilterRaw>>,
    resource_partition: Option<Filters<StringFilterRaw>>,
    compliance_status: Option<Filters<StringFilterRaw>>,
    compliance_security_control_id: Option<Filters<StringFilterRaw>>,
    compliance_associated_standards_id: Option<Filters<StringFilterRaw>>,
    workflow_status: Option<Filters<StringFilterRaw>>,
    record_state: Option<Filters<StringFilterRaw>>,
    application_name: Option<Filters<StringFilterRaw>>,
    application_criticality: Option<Filters<StringFilterRaw>>,
    resource_tags: Option<Filters<MapFilterRaw>>,
    user_defined_fields: Option<Filters<MapFilterRaw>>,
    product_fields: Option<Filters<MapFilterRaw>>,
    severity_normalized: Option<Filters<NumberFilterRaw>>,
    created_at: Option<Filters<DateFilterRaw>>,
    updated_at: Option<Filters<DateFilterRaw>>,
    first_observed_at: Option<Filters<DateFilterRaw>>,
    last_observed_at: Option<Filters<DateFilterRaw>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct StringFilterRaw {
    value: String,
    comparison: StringComparison,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum StringComparison {
    Equals,
    Prefix,
    NotEquals,
    PrefixNotEquals,
    Contains,
    NotContains,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct MapFilterRaw {
    key: String,
    value: String,
    comparison: MapComparison,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum MapComparison {
    Equals,
    NotEquals,
    Contains,
    NotContains,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct NumberFilterRaw {
    gte: Option<f64>,
    lte: Option<f64>,
    eq: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct DateFilterRaw {
    start: Option<Spanned<String>>,
    end: Option<Spanned<String>>,
    date_range: Option<Spanned<DateRangeRaw>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct DateRangeRaw {
    value: i64,
    unit: DateRangeUnit,
}

/// Security Hub only knows days.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum DateRangeUnit {
    Days,
}

impl CriteriaRaw {
    /// Compiles every field, collecting all errors (not just the first).
    pub(crate) fn compile(self) -> Result<Criteria, Vec<SpannedError>> {
        let mut errors = Vec::new();
        let mut filters = Vec::new();

        let strings = [
            (self.id, StringField::Id),
            (self.product_arn, StringField::ProductArn),
            (self.product_name, StringField::ProductName),
            (self.company_name, StringField::CompanyName),
            (self.generator_id, StringField::GeneratorId),
            (self.aws_account_id, StringField::AwsAccountId),
            (self.region, StringField::Region),
            (self.r#type, StringField::Type),
            (self.title, StringField::Title),
            (self.description, StringField::Description),
            (self.severity_label, StringField::SeverityLabel),
            (self.resource_type, StringField::ResourceType),
            (self.resource_id, StringField::ResourceId),
            (self.resource_region, StringField::ResourceRegion),
            (self.resource_partition, StringField::ResourcePartition),
            (self.compliance_status, StringField::ComplianceStatus),
            (
                self.compliance_security_control_id,
                StringField::ComplianceSecurityControlId,
            ),
            (
                self.compliance_associated_standards_id,
                StringField::ComplianceAssociatedStandardsId,
            ),
            (self.workflow_status, StringField::WorkflowStatus),
            (self.record_state, StringField::RecordState),
            (self.application_name, StringField::ApplicationName),
            (
                self.application_criticality,
                StringField::ApplicationCriticality,
            ),
        ];
        for (list, field) in strings {
            let Some(list) = list else { continue };
            if let Some(items) = checked_list(list, &mut errors) {
                let mut any_of = Vec::new();
                let mut none_of = Vec::new();
                for item in items {
                    let StringFilterRaw { value, comparison } = item.into_inner();
                    let (op, negated) = match comparison {
                        StringComparison::Equals => (TextOp::Equals, false),
                        StringComparison::Prefix => (TextOp::Prefix, false),
                        StringComparison::Contains => (TextOp::Contains, false),
                        StringComparison::NotEquals => (TextOp::Equals, true),
                        StringComparison::PrefixNotEquals => (TextOp::Prefix, true),
                        StringComparison::NotContains => (TextOp::Contains, true),
                    };
                    let cond = TextCond { op, value };
                    if negated {
                        none_of.push(cond);
                    } else {
                        any_of.push(cond);
                    }
                }
                filters.push(FieldFilter::Text {
                    field,
                    any_of,
                    none_of,
                });
            }
        }

        let maps = [
            (self.resource_tags, MapField::ResourceTags),
            (self.user_defined_fields, MapField::UserDefinedFields),
            (self.product_fields, MapField::ProductFields),
        ];
        for (list, field) in maps {
            let Some(list) = list else { continue };
            if let Some(items) = checked_list(list, &mut errors) {
                let mut any_of = Vec::new();
                let mut none_of = Vec::new();
                for item in items {
                    let MapFilterRaw {
                        key,
                        value,
                        comparison,
                    } = item.into_inner();
                    let (op, negated) = match comparison {
                        MapComparison::Equals => (TextOp::Equals, false),
                        MapComparison::Contains => (TextOp::Contains, false),
                        MapComparison::NotEquals => (TextOp::Equals, true),
                        MapComparison::NotContains => (TextOp::Contains, true),
                    };
                    let cond = MapCond { key, op, value };
                    if negated {
                        none_of.push(cond);
                    } else {
                        any_of.push(cond);
                    }
                }
                filters.push(FieldFilter::Map {
                    field,
                    any_of,
                    none_of,
                });
            }
        }

        if let Some(list) = self.severity_normalized
            && let Some(items) = checked_list(list, &mut errors)
        {
            let mut any_of = Vec::new();
            for item in items {
                let span = item.span();
                let NumberFilterRaw { gte, lte, eq } = item.into_inner();
                if gte.is_none() && lte.is_none() && eq.is_none() {
                    errors.push(SpannedError::new(
                        span,
                        "a number filter needs at least one of `Gte`, `Lte`, `Eq`",
                    ));
                    continue;
                }
                if [gte, lte, eq].iter().flatten().any(|v| !v.is_finite()) {
                    errors.push(SpannedError::new(
                        span,
                        "number filter bounds must be finite numbers",
                    ));
                    continue;
                }
                if let (Some(lo), Some(hi)) = (gte, lte)
                    && lo > hi
                {
                    errors.push(SpannedError::new(
                        span,
                        format!("`Gte` {lo} is above `Lte` {hi}: this filter can never match"),
                    ));
                    continue;
                }
                any_of.push(NumberRange { gte, lte, eq });
            }
            filters.push(FieldFilter::Number {
                field: NumberField::SeverityNormalized,
                any_of,
            });
        }

        let dates = [
            (self.created_at, DateField::CreatedAt),
            (self.updated_at, DateField::UpdatedAt),
            (self.first_observed_at, DateField::FirstObservedAt),
            (self.last_observed_at, DateField::LastObservedAt),
        ];
        for (list, field) in dates {
            let Some(list) = list else { continue };
            if let Some(items) = checked_list(list, &mut errors) {
                let any_of = items
                    .into_iter()
                    .filter_map(|item| compile_date(item, &mut errors))
                    .collect();
                filters.push(FieldFilter::Date { field, any_of });
            }
        }

        if errors.is_empty() {
            Ok(Criteria { filters })
        } else {
            Err(errors)
        }
    }
}

/// Rejects empty lists (almost always a mistake: they would match everything) and lists longer
/// than Security Hub allows.
fn checked_list<T>(list: Filters<T>, errors: &mut Vec<SpannedError>) -> Option<Vec<Spanned<T>>> {
    let span = list.span();
    let items = list.into_inner();
    if items.is_empty() {
        errors.push(SpannedError::new(
            span,
            "empty filter list (remove the field to match every finding)",
        ));
        return None;
    }
    if items.len() > MAX_FILTERS_PER_FIELD {
        errors.push(SpannedError::new(
            span,
            format!(
                "{} filters for one field; Security Hub allows at most {MAX_FILTERS_PER_FIELD}",
                items.len()
            ),
        ));
        return None;
    }
    Some(items)
}

fn compile_date(item: Spanned<DateFilterRaw>, errors: &mut Vec<SpannedError>) -> Option<DateCond> {
    let span = item.span();
    let DateFilterRaw {
        start,
        end,
        date_range,
    } = item.into_inner();
    match (start, end, date_range) {
        (None, None, None) => {
            errors.push(SpannedError::new(
                span,
                "a date filter needs `Start`/`End` or `DateRange`",
            ));
            None
        }
        (Some(_), _, Some(range)) | (_, Some(_), Some(range)) => {
            errors.push(SpannedError::new(
                range.span(),
                "`DateRange` cannot be combined with `Start`/`End`",
            ));
            None
        }
        (None, None, Some(range)) => {
            let range_span = range.span();
            let DateRangeRaw { value, unit } = range.into_inner();
            let DateRangeUnit::Days = unit;
            match TimeDelta::try_days(value).filter(|_| value > 0) {
                Some(delta) => Some(DateCond::WithinDays(delta)),
                None => {
                    errors.push(SpannedError::new(
                        range_span,
                        format!("`DateRange.Value` must be a positive number of days, not {value}"),
                    ));
                    None
                }
            }
        }
        (start, end, None) => {
            let start = start.map(|s| parse_bound(&s, false, errors));
            let end = end.map(|e| parse_bound(&e, true, errors));
            let (start, end) = match (start, end) {
                (Some(None), _) | (_, Some(None)) => return None,
                (s, e) => (s.flatten(), e.flatten()),
            };
            if let (Some(s), Some(e)) = (start, end)
                && s > e
            {
                errors.push(SpannedError::new(
                    span,
                    "`Start` is after `End`: this filter can never match",
                ));
                return None;
            }
            Some(DateCond::Between { start, end })
        }
    }
}

/// Accepts RFC 3339 timestamps and plain `YYYY-MM-DD` dates. A plain date as `End` covers that
/// whole day, which is what a person writing `End = "2026-06-30"` means.
fn parse_bound(
    text: &Spanned<String>,
    is_end: bool,
    errors: &mut Vec<SpannedError>,
) -> Option<DateTime<Utc>> {
    let value = text.get_ref();
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let t = if is_end {
            d.and_hms_nano_opt(23, 59, 59, 999_999_999)
        } else {
            d.and_hms_opt(0, 0, 0)
        };
        if let Some(t) = t {
            return Some(t.and_utc());
        }
    }
    errors.push(SpannedError::new(
        text.span(),
        format!(
            "{value:?} is not an RFC 3339 timestamp (2026-01-31T00:00:00Z) or a date (2026-01-31)"
        ),
    ));
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::finding::{
        Compliance, RecordState, Resource, Schema, Severity, WorkflowStatus, WriteBackId,
    };

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap()
    }

    fn finding() -> Finding {
        Finding {
            id: "arn:aws:securityhub:us-east-1:111122223333:finding/abc".into(),
            schema: Schema::Asff,
            product_arn: "arn:aws:securityhub:us-east-1::product/aws/guardduty".into(),
            product_name: "GuardDuty".into(),
            company_name: "Amazon".into(),
            generator_id: "guardduty-generator".into(),
            account_id: "111122223333".into(),
            region: "us-east-1".into(),
            title: "EC2 instance is communicating with a known command and control server".into(),
            description: "Backdoor:EC2/C&CActivity.B".into(),
            severity: Severity::High,
            severity_score: 70,
            types: vec![
                "TTPs/Command and Control/Backdoor:EC2-C&CActivity.B".into(),
                "Effects/Data Exfiltration".into(),
            ],
            resources: vec![
                Resource {
                    kind: "AwsEc2Instance".into(),
                    id: "arn:aws:ec2:us-east-1:111122223333:instance/i-1".into(),
                    region: Some("us-east-1".into()),
                    partition: Some("aws".into()),
                    tags: BTreeMap::from([("team".into(), "payments".into())]),
                },
                Resource {
                    kind: "AwsIamRole".into(),
                    id: "arn:aws:iam::111122223333:role/app".into(),
                    region: None,
                    partition: Some("aws".into()),
                    tags: BTreeMap::from([("env".into(), "prod-eu".into())]),
                },
            ],
            compliance: Compliance::default(),
            workflow_status: WorkflowStatus::New,
            record_state: RecordState::Active,
            created_at: Some("2026-11-20T08:00:00Z".into()),
            updated_at: Some("2026-11-27T08:00:00.123Z".into()),
            first_observed_at: None,
            last_observed_at: Some("2026-11-27T08:00:00+02:00".into()),
            remediation: Default::default(),
            user_defined_fields: BTreeMap::from([("ticket".into(), "none".into())]),
            product_fields: BTreeMap::from([(
                "aws/guardduty/service/action/actionType".into(),
                "NETWORK_CONNECTION".into(),
            )]),
            console_url: String::new(),
            write_back: WriteBackId::Asff {
                id: "abc".into(),
                product_arn: "p".into(),
            },
            raw: serde_json::Value::Null,
        }
    }

    fn matches(criteria: &str) -> bool {
        let c = Criteria::from_toml(criteria).unwrap();
        c.matches(&finding(), None, now())
    }

    fn err(criteria: &str) -> String {
        Criteria::from_toml(criteria).unwrap_err().message
    }

    #[test]
    fn empty_criteria_match_everything() {
        assert!(Criteria::default().matches(&finding(), None, now()));
        assert!(Criteria::default().is_empty());
        assert!(matches(""));
    }

    #[test]
    fn each_string_comparison() {
        let cases = [
            ("EQUALS", "GuardDuty", true),
            ("EQUALS", "Guard", false),
            ("EQUALS", "guardduty", false),
            ("PREFIX", "Guard", true),
            ("PREFIX", "Duty", false),
            ("CONTAINS", "ardDu", true),
            ("CONTAINS", "Inspector", false),
            ("NOT_EQUALS", "Inspector", true),
            ("NOT_EQUALS", "GuardDuty", false),
            ("PREFIX_NOT_EQUALS", "Insp", true),
            ("PREFIX_NOT_EQUALS", "Guard", false),
            ("NOT_CONTAINS", "Macie", true),
            ("NOT_CONTAINS", "Duty", false),
        ];
        for (cmp, value, want) in cases {
            let src = format!("ProductName = [{{ Value = {value:?}, Comparison = {cmp:?} }}]");
            assert_eq!(matches(&src), want, "{src}");
        }
    }

    #[test]
    fn positives_are_ored_negatives_anded() {
        // Either label matches → OR.
        assert!(matches(
            r#"SeverityLabel = [{ Value = "CRITICAL", Comparison = "EQUALS" }, { Value = "HIGH", Comparison = "EQUALS" }]"#
        ));
        // Both negatives must hold: the second excludes the finding.
        assert!(!matches(
            r#"Title = [{ Value = "S3", Comparison = "NOT_CONTAINS" }, { Value = "EC2", Comparison = "NOT_CONTAINS" }]"#
        ));
        // Positive group holds but a negative fails → no match.
        assert!(!matches(
            r#"Title = [{ Value = "EC2", Comparison = "PREFIX" }, { Value = "known", Comparison = "NOT_CONTAINS" }]"#
        ));
        // Positive group holds and the negative holds → match.
        assert!(matches(
            r#"Title = [{ Value = "EC2", Comparison = "PREFIX" }, { Value = "Lambda", Comparison = "NOT_CONTAINS" }]"#
        ));
        // Only negatives, all hold.
        assert!(matches(
            r#"Title = [{ Value = "S3", Comparison = "NOT_CONTAINS" }, { Value = "RDS", Comparison = "NOT_CONTAINS" }]"#
        ));
    }

    #[test]
    fn fields_are_anded() {
        assert!(matches(
            r#"
            ProductName = [{ Value = "GuardDuty", Comparison = "EQUALS" }]
            AwsAccountId = [{ Value = "111122223333", Comparison = "EQUALS" }]
            "#
        ));
        assert!(!matches(
            r#"
            ProductName = [{ Value = "GuardDuty", Comparison = "EQUALS" }]
            AwsAccountId = [{ Value = "444455556666", Comparison = "EQUALS" }]
            "#
        ));
    }

    #[test]
    fn multi_valued_fields_match_any_value_and_negatives_exclude_any() {
        assert!(matches(
            r#"Type = [{ Value = "Effects/", Comparison = "PREFIX" }]"#
        ));
        assert!(!matches(
            r#"Type = [{ Value = "Effects/Data Exfiltration", Comparison = "NOT_EQUALS" }]"#
        ));
        assert!(matches(
            r#"Type = [{ Value = "Software and Configuration Checks", Comparison = "PREFIX_NOT_EQUALS" }]"#
        ));
    }

    #[test]
    fn resource_fields_match_when_any_resource_matches() {
        assert!(matches(
            r#"ResourceType = [{ Value = "AwsIamRole", Comparison = "EQUALS" }]"#
        ));
        assert!(matches(
            r#"ResourceId = [{ Value = "arn:aws:ec2:", Comparison = "PREFIX" }]"#
        ));
        assert!(!matches(
            r#"ResourceType = [{ Value = "AwsS3Bucket", Comparison = "EQUALS" }]"#
        ));
        // One resource is an EC2 instance, so "not an EC2 instance" excludes the finding.
        assert!(!matches(
            r#"ResourceType = [{ Value = "AwsEc2Instance", Comparison = "NOT_EQUALS" }]"#
        ));
        // Regions: only the first resource has one.
        assert!(matches(
            r#"ResourceRegion = [{ Value = "us-east-1", Comparison = "EQUALS" }]"#
        ));
        assert!(matches(
            r#"ResourcePartition = [{ Value = "aws", Comparison = "EQUALS" }]"#
        ));
    }

    #[test]
    fn absent_values_fail_positives_and_pass_negatives() {
        assert!(!matches(
            r#"ComplianceStatus = [{ Value = "FAILED", Comparison = "EQUALS" }]"#
        ));
        assert!(matches(
            r#"ComplianceStatus = [{ Value = "PASSED", Comparison = "NOT_EQUALS" }]"#
        ));
    }

    #[test]
    fn enum_fields_compare_their_labels() {
        assert!(matches(
            r#"WorkflowStatus = [{ Value = "NEW", Comparison = "EQUALS" }]"#
        ));
        assert!(matches(
            r#"RecordState = [{ Value = "ARCHIVED", Comparison = "NOT_EQUALS" }]"#
        ));
    }

    #[test]
    fn map_filters() {
        let cases = [
            (
                r#"{ Key = "team", Value = "payments", Comparison = "EQUALS" }"#,
                true,
            ),
            (
                r#"{ Key = "team", Value = "pay", Comparison = "EQUALS" }"#,
                false,
            ),
            (
                r#"{ Key = "owner", Value = "payments", Comparison = "EQUALS" }"#,
                false,
            ),
            (
                r#"{ Key = "env", Value = "prod", Comparison = "CONTAINS" }"#,
                true,
            ),
            (
                r#"{ Key = "env", Value = "prod", Comparison = "NOT_CONTAINS" }"#,
                false,
            ),
            (
                r#"{ Key = "env", Value = "dev", Comparison = "NOT_CONTAINS" }"#,
                true,
            ),
            (
                r#"{ Key = "team", Value = "payments", Comparison = "NOT_EQUALS" }"#,
                false,
            ),
            (
                r#"{ Key = "team", Value = "search", Comparison = "NOT_EQUALS" }"#,
                true,
            ),
            // A key no resource has: negative holds.
            (
                r#"{ Key = "owner", Value = "x", Comparison = "NOT_EQUALS" }"#,
                true,
            ),
        ];
        for (filter, want) in cases {
            let src = format!("ResourceTags = [{filter}]");
            assert_eq!(matches(&src), want, "{src}");
        }
        assert!(matches(
            r#"UserDefinedFields = [{ Key = "ticket", Value = "none", Comparison = "EQUALS" }]"#
        ));
        assert!(matches(
            r#"ProductFields = [{ Key = "aws/guardduty/service/action/actionType", Value = "NETWORK", Comparison = "CONTAINS" }]"#
        ));
        // ORed positives across keys.
        assert!(matches(
            r#"ResourceTags = [{ Key = "team", Value = "search", Comparison = "EQUALS" }, { Key = "env", Value = "prod-eu", Comparison = "EQUALS" }]"#
        ));
    }

    #[test]
    fn number_filters() {
        let cases = [
            ("{ Gte = 70 }", true),
            ("{ Gte = 71 }", false),
            ("{ Lte = 70 }", true),
            ("{ Lte = 69.5 }", false),
            ("{ Eq = 70 }", true),
            ("{ Eq = 90 }", false),
            ("{ Gte = 40, Lte = 69 }", false),
            ("{ Gte = 90 }, { Gte = 40, Lte = 89 }", true),
        ];
        for (filter, want) in cases {
            let src = format!("SeverityNormalized = [{filter}]");
            assert_eq!(matches(&src), want, "{src}");
        }
    }

    #[test]
    fn absolute_date_filters() {
        let cases = [
            (
                "CreatedAt",
                r#"Start = "2026-11-01T00:00:00Z", End = "2026-11-30T00:00:00Z""#,
                true,
            ),
            ("CreatedAt", r#"Start = "2026-11-21""#, false),
            // A plain End date covers the whole day.
            ("CreatedAt", r#"End = "2026-11-20""#, true),
            ("CreatedAt", r#"End = "2026-11-19""#, false),
            // Offsets are honoured: 08:00+02:00 is 06:00Z.
            ("LastObservedAt", r#"End = "2026-11-27T06:00:00Z""#, true),
            ("LastObservedAt", r#"End = "2026-11-27T05:59:59Z""#, false),
            // Fractional seconds in the finding.
            ("UpdatedAt", r#"Start = "2026-11-27T08:00:00Z""#, true),
            // The finding has no FirstObservedAt: no match.
            ("FirstObservedAt", r#"Start = "2000-01-01""#, false),
        ];
        for (field, filter, want) in cases {
            let src = format!("{field} = [{{ {filter} }}]");
            assert_eq!(matches(&src), want, "{src}");
        }
    }

    #[test]
    fn date_range_is_relative_to_the_given_now() {
        let c =
            Criteria::from_toml(r#"UpdatedAt = [{ DateRange = { Value = 1, Unit = "DAYS" } }]"#)
                .unwrap();
        let f = finding(); // updated 2026-11-27T08:00Z, 26 hours before now()
        assert!(!c.matches(&f, None, now()));
        assert!(c.matches(&f, None, now() - TimeDelta::hours(3)));
        let c7 =
            Criteria::from_toml(r#"UpdatedAt = [{ DateRange = { Value = 7, Unit = "DAYS" } }]"#)
                .unwrap();
        let later = now() + TimeDelta::days(8);
        assert!(c7.matches(&f, None, now()));
        assert!(!c7.matches(&f, None, later));
    }

    #[test]
    fn bad_criteria_are_rejected() {
        assert!(
            err(r#"Severity = [{ Value = "HIGH", Comparison = "EQUALS" }]"#)
                .contains("unknown field `Severity`")
        );
        assert!(
            err(r#"Title = [{ Value = "x", Comparison = "STARTS_WITH" }]"#)
                .contains("unknown variant `STARTS_WITH`")
        );
        assert!(
            err(r#"ResourceTags = [{ Key = "a", Value = "x", Comparison = "PREFIX" }]"#)
                .contains("unknown variant `PREFIX`")
        );
        assert!(err(r#"Title = [{ Value = "x" }]"#).contains("missing field `Comparison`"));
        assert!(
            err(r#"Title = [{ Value = "x", Comparison = "EQUALS", Extra = 1 }]"#)
                .contains("unknown field `Extra`")
        );
        assert!(err("Title = []").contains("empty filter list"));
        let many: Vec<String> = (0..21)
            .map(|i| format!(r#"{{ Value = "t{i}", Comparison = "EQUALS" }}"#))
            .collect();
        assert!(err(&format!("Title = [{}]", many.join(", "))).contains("at most 20"));
        assert!(err("SeverityNormalized = [{}]").contains("at least one of"));
        assert!(err("SeverityNormalized = [{ Gte = 80, Lte = 10 }]").contains("never match"));
        assert!(err(r#"CreatedAt = [{ Start = "yesterday" }]"#).contains("RFC 3339"));
        assert!(
            err(r#"CreatedAt = [{ DateRange = { Value = 3, Unit = "WEEKS" } }]"#)
                .contains("unknown variant `WEEKS`")
        );
        assert!(
            err(r#"CreatedAt = [{ DateRange = { Value = 0, Unit = "DAYS" } }]"#)
                .contains("positive number of days")
        );
        assert!(err(
            r#"CreatedAt = [{ Start = "2026-01-01", DateRange = { Value = 3, Unit = "DAYS" } }]"#
        )
        .contains("cannot be combined"));
        assert!(
            err(r#"CreatedAt = [{ Start = "2026-02-01", End = "2026-01-01" }]"#)
                .contains("never match")
        );
    }

    #[test]
    fn exactly_twenty_values_are_allowed() {
        let many: Vec<String> = (0..20)
            .map(|i| format!(r#"{{ Value = "t{i}", Comparison = "EQUALS" }}"#))
            .collect();
        assert!(Criteria::from_toml(&format!("Title = [{}]", many.join(", "))).is_ok());
    }
}
