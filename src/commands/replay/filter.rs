//! Which DLQ messages a replay acts on: `--match FIELD=VALUE`, `--since` / `--until` (and the
//! times an operator may type for them), applied to each received message by [`Selector`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};

use super::{DecodeFn, ReplayDeps, ReplayError, ReplayOptions, ReplayTarget, TeamsFn};
use crate::aws::sqs::{ReceivedMessage, SENT_TIMESTAMP_ATTRIBUTE, attributes};
use crate::finding::{DecodeError, Finding};

/// What `--match` can select on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FilterField {
    /// The `fb-error-kind` attribute the worker set (`decode`, `render`, `ticket`, `config`, …).
    ErrorKind,
    /// Any finding in the message has this id.
    FindingId,
    /// Routing sends any finding in the message to this team (needs [`TeamsFn`]).
    Team,
    /// Any finding in the message comes from this product (`GuardDuty`; case-insensitive).
    Product,
}

impl FilterField {
    pub const ALL: [FilterField; 4] = [
        FilterField::ErrorKind,
        FilterField::FindingId,
        FilterField::Team,
        FilterField::Product,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FilterField::ErrorKind => "error-kind",
            FilterField::FindingId => "finding-id",
            FilterField::Team => "team",
            FilterField::Product => "product",
        }
    }

    /// Needs the message body decoded into findings.
    fn needs_findings(self) -> bool {
        !matches!(self, FilterField::ErrorKind)
    }
}

impl fmt::Display for FilterField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `--match FIELD=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub field: FilterField,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--match {given:?}: {problem}; expected FIELD=VALUE with FIELD one of error-kind, finding-id, team, product"
)]
pub struct FilterError {
    pub given: String,
    pub problem: &'static str,
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Filter, FilterError> {
        let error = |problem| FilterError {
            given: s.to_owned(),
            problem,
        };
        let (field, value) = s.split_once('=').ok_or_else(|| error("no '='"))?;
        let field = FilterField::ALL
            .into_iter()
            .find(|f| f.as_str() == field.trim())
            .ok_or_else(|| error("unknown field"))?;
        if value.is_empty() {
            return Err(error("empty value"));
        }
        Ok(Filter {
            field,
            value: value.to_owned(),
        })
    }
}

/// Parses `--since`/`--until`: an RFC 3339 timestamp, a date (`2026-11-28`, midnight UTC), or
/// an age before `now` (`30m`, `6h`, `7d`) — the form an operator types after an incident. The
/// RFC 3339 form is [`crate::time::parse_time`], the parser every other time of the bridge goes
/// through; dates and ages are for the command line only.
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ReplayError> {
    let bad = || {
        ReplayError::Options(format!(
            "{s:?} is not a time: use RFC 3339 (2026-11-28T10:00:00Z), a date (2026-11-28) or an age (30m, 6h, 7d)"
        ))
    };
    if let Some(t) = crate::time::parse_time(s) {
        return Ok(t);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| Utc.from_utc_datetime(&t))
            .ok_or_else(bad);
    }
    let split = s.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = s.split_at(split);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let age = match unit {
        "s" => chrono::Duration::try_seconds(number),
        "m" => chrono::Duration::try_minutes(number),
        "h" => chrono::Duration::try_hours(number),
        "d" => chrono::Duration::try_days(number),
        _ => None,
    }
    .filter(|_| number >= 0)
    .ok_or_else(bad)?;
    now.checked_sub_signed(age).ok_or_else(bad)
}

/// What to do with one message.
pub(super) enum Decision {
    Skip(String),
    Act(Option<Vec<Finding>>),
    /// Matches, but cannot be replayed (`--process` of an undecodable body).
    Fail(String),
}

/// Decides, message by message, whether a replay acts on it: `--since`/`--until` first, then
/// `--match`, decoding the body only when a filter or `--process` needs its findings.
pub(super) struct Selector {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    /// `--match` values by field.
    filters: BTreeMap<FilterField, Vec<String>>,
    /// `--process` needs the findings even when no filter looks at them.
    processing: bool,
    decode: DecodeFn,
    teams: Option<TeamsFn>,
}

impl Selector {
    pub(super) fn new(opts: &ReplayOptions, deps: &ReplayDeps) -> Selector {
        let mut filters: BTreeMap<FilterField, Vec<String>> = BTreeMap::new();
        for f in &opts.filters {
            filters.entry(f.field).or_default().push(f.value.clone());
        }
        Selector {
            since: opts.since,
            until: opts.until,
            filters,
            processing: opts.target == ReplayTarget::Process,
            decode: deps.decode,
            teams: deps.teams.clone(),
        }
    }

    pub(super) fn decide(&self, message: &ReceivedMessage) -> Decision {
        if self.since.is_some() || self.until.is_some() {
            let Some(failed_at) = failure_time(message) else {
                return Decision::Skip("no failure or sent time to compare with".into());
            };
            if self.since.is_some_and(|since| failed_at < since) {
                return Decision::Skip(format!("failed at {failed_at}, before --since"));
            }
            if self.until.is_some_and(|until| failed_at > until) {
                return Decision::Skip(format!("failed at {failed_at}, after --until"));
            }
        }
        if let Some(kinds) = self.filters.get(&FilterField::ErrorKind) {
            let kind = message.attributes.get(attributes::ERROR_KIND);
            if !kinds.iter().any(|k| Some(k) == kind) {
                return Decision::Skip(format!("error kind {kind:?} not selected"));
            }
        }
        let filters_need_findings = self.filters.keys().any(|f| f.needs_findings());
        let processing = self.processing;
        if !filters_need_findings && !processing {
            return Decision::Act(None);
        }
        let findings = match (self.decode)(message.body.as_bytes()) {
            Ok(findings) => findings,
            Err(e) if filters_need_findings => {
                return Decision::Skip(format!("undecodable, so no finding can match: {e}"));
            }
            Err(e) => return Decision::Fail(decode_reason(&e)),
        };
        for (field, values) in &self.filters {
            let matches = match field {
                FilterField::ErrorKind => true,
                FilterField::FindingId => findings.iter().any(|f| values.contains(&f.id)),
                FilterField::Product => findings.iter().any(|f| {
                    values
                        .iter()
                        .any(|v| v.eq_ignore_ascii_case(&f.product_name))
                }),
                FilterField::Team => match &self.teams {
                    Some(teams) => findings
                        .iter()
                        .any(|f| teams(f).iter().any(|t| values.contains(t))),
                    None => false,
                },
            };
            if !matches {
                return Decision::Skip(format!("no finding matches --match {field}"));
            }
        }
        Decision::Act(processing.then_some(findings))
    }
}

fn decode_reason(e: &DecodeError) -> String {
    format!("decode: {e}")
}

/// When the message first failed: the worker's `fb-first-failure`, else when it reached the DLQ.
fn failure_time(message: &ReceivedMessage) -> Option<DateTime<Utc>> {
    if let Some(t) = message
        .attributes
        .get(attributes::FIRST_FAILURE)
        .and_then(|v| crate::time::parse_time(v))
    {
        return Some(t);
    }
    message
        .attributes
        .get(SENT_TIMESTAMP_ATTRIBUTE)
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(s: &str) -> Result<Filter, FilterError> {
        s.parse()
    }

    #[test]
    fn filters_parse_every_field_and_reject_bad_syntax_with_the_field_list() {
        assert_eq!(
            filter("error-kind=render"),
            Ok(Filter {
                field: FilterField::ErrorKind,
                value: "render".into()
            })
        );
        assert_eq!(
            filter("finding-id=arn:aws:securityhub:us-east-1:1:finding/a=b")
                .map(|f| (f.field, f.value)),
            Ok((
                FilterField::FindingId,
                "arn:aws:securityhub:us-east-1:1:finding/a=b".into()
            )),
            "only the first '=' separates field and value"
        );
        assert_eq!(
            filter("team=payments").map(|f| f.field),
            Ok(FilterField::Team)
        );
        assert_eq!(
            filter("product=GuardDuty").map(|f| f.field),
            Ok(FilterField::Product)
        );

        for (bad, problem) in [
            ("error-kind", "no '='"),
            ("severity=HIGH", "unknown field"),
            ("team=", "empty value"),
            ("=x", "unknown field"),
        ] {
            let err = filter(bad).expect_err(bad);
            assert_eq!(err.problem, problem, "{bad}");
            let text = err.to_string();
            assert!(text.contains(bad), "{text}");
            assert!(
                text.contains("error-kind, finding-id, team, product"),
                "the error lists the fields: {text}"
            );
        }
    }

    #[test]
    fn times_are_rfc3339_dates_or_ages() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
            .single()
            .unwrap_or_default();
        assert_eq!(
            parse_time("2026-11-27T10:00:00+02:00", now).ok(),
            Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).single()
        );
        assert_eq!(
            parse_time("2026-11-01", now).ok(),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single()
        );
        assert_eq!(
            parse_time("6h", now).ok(),
            Utc.with_ymd_and_hms(2026, 11, 28, 6, 0, 0).single()
        );
        assert_eq!(
            parse_time("7d", now).ok(),
            Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).single()
        );
        for bad in [
            "",
            "h",
            "-3h",
            "3w",
            "yesterday",
            "2026-13-01",
            "99999999999999999d",
        ] {
            let err = parse_time(bad, now).expect_err(bad).to_string();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_failure_time_prefers_the_first_failure_over_the_send_time() {
        let message = |attrs: &[(&str, &str)]| ReceivedMessage {
            message_id: "m".into(),
            receipt_handle: "h".into(),
            body: String::new(),
            receive_count: 1,
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let first = message(&[
            (attributes::FIRST_FAILURE, "2026-11-28T10:00:00Z"),
            (SENT_TIMESTAMP_ATTRIBUTE, "0"),
        ]);
        assert_eq!(
            failure_time(&first),
            Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).single()
        );
        let sent = message(&[(SENT_TIMESTAMP_ATTRIBUTE, "1764324000000")]);
        assert_eq!(
            failure_time(&sent),
            DateTime::from_timestamp_millis(1_764_324_000_000)
        );
        let garbage = message(&[(attributes::FIRST_FAILURE, "last tuesday")]);
        assert_eq!(failure_time(&garbage), None);
    }
}
