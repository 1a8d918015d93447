//! ServiceNow encoded queries (`sysparm_query`): terms joined by `^`, `^^` as a literal caret,
//! `ORDERBY`/`ORDERBYDESC`.
//!
//! The real server silently ignores terms it cannot read, which widens the result; the simulator
//! refuses them (and `^OR`/`^NQ`, which the bridge never sends) so such a query fails loudly in
//! tests instead.

use std::cmp::Ordering;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Ge,
    Gt,
    Le,
    Lt,
    Like,
    StartsWith,
    EndsWith,
    IsEmpty,
    IsNotEmpty,
    In,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub field: String,
    pub op: Op,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EncodedQuery {
    pub terms: Vec<Term>,
    /// `(field, ascending)` in priority order.
    pub order: Vec<(String, bool)>,
}

/// Splits on single carets; a doubled caret stays in the term as one literal `^`.
fn split_terms(query: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut current = String::new();
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '^' {
            if chars.peek() == Some(&'^') {
                chars.next();
                current.push('^');
            } else {
                terms.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
    }
    terms.push(current);
    terms.into_iter().filter(|t| !t.is_empty()).collect()
}

/// Operators in the order they must be tried (longer spellings before their prefixes).
const OPERATORS: &[(&str, Op)] = &[
    ("ISNOTEMPTY", Op::IsNotEmpty),
    ("ISEMPTY", Op::IsEmpty),
    ("STARTSWITH", Op::StartsWith),
    ("ENDSWITH", Op::EndsWith),
    ("LIKE", Op::Like),
    ("IN", Op::In),
    (">=", Op::Ge),
    ("<=", Op::Le),
    ("!=", Op::Ne),
    (">", Op::Gt),
    ("<", Op::Lt),
    ("=", Op::Eq),
];

pub fn parse(query: &str) -> Result<EncodedQuery, String> {
    let mut out = EncodedQuery::default();
    for term in split_terms(query) {
        if let Some(field) = term.strip_prefix("ORDERBYDESC") {
            out.order.push((checked_field(field, &term)?, false));
        } else if let Some(field) = term.strip_prefix("ORDERBY") {
            out.order.push((checked_field(field, &term)?, true));
        } else if term.starts_with("OR") || term.starts_with("NQ") {
            return Err(format!(
                "the simulator does not support ^OR / ^NQ (term {term:?}); escape a literal caret as ^^"
            ));
        } else {
            out.terms.push(parse_term(&term)?);
        }
    }
    Ok(out)
}

fn is_field_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'
}

fn checked_field(field: &str, term: &str) -> Result<String, String> {
    if !field.is_empty() && field.chars().all(is_field_char) {
        Ok(field.to_owned())
    } else {
        Err(format!("invalid field name in query term {term:?}"))
    }
}

fn parse_term(term: &str) -> Result<Term, String> {
    let split = term.find(|c| !is_field_char(c)).unwrap_or(term.len());
    let (field, rest) = term.split_at(split);
    if field.is_empty() {
        return Err(format!(
            "query term {term:?} does not start with a field name"
        ));
    }
    let (op, value) = OPERATORS
        .iter()
        .find_map(|(spelling, op)| rest.strip_prefix(spelling).map(|v| (op.clone(), v)))
        .ok_or_else(|| format!("query term {term:?} has no operator the simulator knows"))?;
    if matches!(op, Op::IsEmpty | Op::IsNotEmpty) && !value.is_empty() {
        return Err(format!("query term {term:?} has text after {op:?}"));
    }
    Ok(Term {
        field: field.to_owned(),
        op,
        value: resolve_value(value)?,
    })
}

/// Understands the one scripted value pollers commonly send, `gs.dateGenerate(date, time)`.
fn resolve_value(value: &str) -> Result<String, String> {
    let Some(script) = value.strip_prefix("javascript:") else {
        return Ok(value.to_owned());
    };
    let args = script
        .strip_prefix("gs.dateGenerate(")
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("unsupported script value {value:?}"))?;
    let parts: Vec<&str> = args
        .split(',')
        .map(|a| a.trim().trim_matches('\'').trim_matches('"'))
        .collect();
    match parts.as_slice() {
        [date, time] => Ok(format!("{date} {time}")),
        _ => Err(format!(
            "gs.dateGenerate needs a date and a time in {value:?}"
        )),
    }
}

/// Numbers compare as numbers (states, priorities); everything else, including the
/// `yyyy-MM-dd HH:mm:ss` timestamps, compares as text, which orders those correctly.
fn compare(a: &str, b: &str) -> Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => a.cmp(b),
    }
}

impl EncodedQuery {
    pub fn matches(&self, record: &BTreeMap<String, String>) -> bool {
        self.terms.iter().all(|t| {
            let actual = record.get(&t.field).map_or("", String::as_str);
            match t.op {
                Op::Eq => actual == t.value,
                Op::Ne => actual != t.value,
                Op::Ge => compare(actual, &t.value).is_ge(),
                Op::Gt => compare(actual, &t.value).is_gt(),
                Op::Le => compare(actual, &t.value).is_le(),
                Op::Lt => compare(actual, &t.value).is_lt(),
                Op::Like => actual.to_lowercase().contains(&t.value.to_lowercase()),
                Op::StartsWith => actual.starts_with(&t.value),
                Op::EndsWith => actual.ends_with(&t.value),
                Op::IsEmpty => actual.is_empty(),
                Op::IsNotEmpty => !actual.is_empty(),
                Op::In => t.value.split(',').any(|v| v == actual),
            }
        })
    }

    /// The well-formed table names a query asks for by `name=` or `nameIN` (a `sys_db_object` or
    /// `sys_dictionary` lookup).
    pub fn named_tables(&self) -> Vec<String> {
        self.terms
            .iter()
            .filter(|t| t.field == "name")
            .flat_map(|t| match t.op {
                Op::Eq => vec![t.value.clone()],
                Op::In => t.value.split(',').map(str::to_owned).collect(),
                _ => Vec::new(),
            })
            .filter(|name| {
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            })
            .collect()
    }

    pub fn ordering(&self, a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Ordering {
        for (field, ascending) in &self.order {
            let x = a.get(field).map_or("", String::as_str);
            let y = b.get(field).map_or("", String::as_str);
            let ord = compare(x, y);
            let ord = if *ascending { ord } else { ord.reverse() };
            if ord.is_ne() {
                return ord;
            }
        }
        Ordering::Equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn double_caret_is_a_literal_caret_inside_a_value() {
        let q = parse("correlation_id=a^^ORb^state=1").unwrap();
        assert_eq!(
            q.terms,
            vec![
                Term {
                    field: "correlation_id".into(),
                    op: Op::Eq,
                    value: "a^ORb".into()
                },
                Term {
                    field: "state".into(),
                    op: Op::Eq,
                    value: "1".into()
                },
            ]
        );
        assert!(q.matches(&record(&[("correlation_id", "a^ORb"), ("state", "1")])));
        assert!(!q.matches(&record(&[("correlation_id", "a"), ("state", "1")])));
    }

    #[test]
    fn or_and_nq_are_refused() {
        assert!(parse("state=1^ORstate=2").is_err());
        assert!(parse("state=1^NQstate=2").is_err());
    }

    #[test]
    fn comparisons_and_ordering() {
        let q =
            parse("sys_updated_on>=2026-01-01 10:00:00^ORDERBYsys_updated_on^ORDERBYDESCnumber")
                .unwrap();
        assert_eq!(
            q.order,
            vec![("sys_updated_on".into(), true), ("number".into(), false)]
        );
        assert!(q.matches(&record(&[("sys_updated_on", "2026-01-01 10:00:00")])));
        assert!(!q.matches(&record(&[("sys_updated_on", "2025-12-31 23:59:59")])));
        let q = parse("state>=6").unwrap();
        assert!(q.matches(&record(&[("state", "7")])));
        // Numeric, not textual: "10" would sort before "6" as text.
        assert!(q.matches(&record(&[("state", "10")])));
        assert!(!q.matches(&record(&[("state", "2")])));
    }

    #[test]
    fn date_generate_scripts_become_timestamps() {
        let q =
            parse("sys_updated_on>javascript:gs.dateGenerate('2026-01-01','10:00:00')").unwrap();
        assert_eq!(q.terms[0].value, "2026-01-01 10:00:00");
        assert_eq!(q.terms[0].op, Op::Gt);
        assert!(parse("state=javascript:gs.getUserID()").is_err());
    }

    #[test]
    fn unreadable_terms_are_errors_not_ignored() {
        for bad in [
            "=1",
            "Statefoo",
            "state",
            "state~1",
            "ORDERBY",
            "ORDERBYBad-Field",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad}");
        }
        assert!(parse("").unwrap().terms.is_empty());
    }
}
