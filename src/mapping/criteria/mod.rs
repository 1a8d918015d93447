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

mod compile;
mod matching;

use std::ops::Range;

use chrono::{DateTime, Utc};

use super::context::Application;
use crate::finding::Finding;
pub(crate) use compile::CriteriaRaw;
use matching::FieldFilter;

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
    pub(super) fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        SpannedError {
            span,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests;
