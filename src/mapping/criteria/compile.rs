//! Criteria as written in `[rules.criteria]` (the TOML form of `AutomationRulesFindingFilters`)
//! and their compilation: comparison names, list lengths, number bounds and date syntax are all
//! checked here, every error with the byte span it came from.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::Deserialize;
use toml::Spanned;

use super::matching::{
    DateCond, DateField, FieldFilter, MapCond, MapField, NumberField, NumberRange, StringField,
    TextCond, TextOp,
};
use super::{Criteria, MAX_FILTERS_PER_FIELD, SpannedError};

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
    if let Some(t) = crate::time::parse_time(value) {
        return Some(t);
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
