//! The part of JQL the bridge sends: clauses joined by `AND`, then an optional `ORDER BY`.
//!
//! Anything outside that subset is answered 400 like Jira answers an invalid query, so a bridge
//! that starts sending something new finds out in tests rather than against a server that would
//! silently interpret it differently. Date literals are local times of the searching user's time
//! zone ([`parse_in_zone`]), as in Jira.

use chrono::{
    DateTime, Duration as ChronoDuration, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone,
    Utc,
};
use chrono_tz::Tz;

use crate::state::JiraIssue;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JqlError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, JqlError> {
    Err(JqlError(msg.into()))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

fn tokenize(input: &str) -> Result<Vec<Token>, JqlError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token::LParen);
                i += 1;
            }
            ')' => {
                out.push(Token::RParen);
                i += 1;
            }
            ',' => {
                out.push(Token::Comma);
                i += 1;
            }
            '"' | '\'' => {
                let quote = c;
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return err(format!(
                                "Error in the JQL Query: The quoted string '{value}' has not been completed."
                            ));
                        }
                        Some('\\') => {
                            match chars.get(i + 1) {
                                Some(&next) => value.push(next),
                                None => {
                                    return err(
                                        "Error in the JQL Query: The escape sequence at the end of the query is incomplete.",
                                    );
                                }
                            }
                            i += 2;
                        }
                        Some(&ch) if ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            value.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Str(value));
            }
            '>' | '<' | '!' | '=' | '~' => {
                let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
                let op = match two.as_str() {
                    ">=" => ">=",
                    "<=" => "<=",
                    "!=" => "!=",
                    "!~" => "!~",
                    _ => match c {
                        '>' => ">",
                        '<' => "<",
                        '=' => "=",
                        '~' => "~",
                        _ => {
                            return err(format!(
                                "Error in the JQL Query: The character '{c}' is a reserved JQL character."
                            ));
                        }
                    },
                };
                i += op.len();
                out.push(Token::Op(op));
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !"()=,<>!~\"'".contains(chars[i])
                {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateOp {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderField {
    Updated,
    Created,
    Key,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Clause {
    /// The issue carries at least one of these labels.
    Labels(Vec<String>),
    Updated(DateOp, DateTime<Utc>),
    Created(DateOp, DateTime<Utc>),
    Key(Vec<String>),
    Project(Vec<String>),
    Status {
        names: Vec<String>,
        negated: bool,
    },
    StatusCategory(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub clauses: Vec<Clause>,
    /// `(field, ascending)` in priority order; ties always fall back to the issue id.
    pub order: Vec<(OrderField, bool)>,
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    now: DateTime<Utc>,
    /// The searching user's time zone, which date literals are read in.
    zone: Tz,
}

fn is_keyword(token: Option<&Token>, kw: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn value(&mut self, field: &str) -> Result<String, JqlError> {
        match self.next() {
            Some(Token::Str(s)) | Some(Token::Word(s)) => Ok(s),
            _ => err(format!(
                "Error in the JQL Query: Expecting a value for field '{field}'."
            )),
        }
    }

    fn values_after_operator(&mut self, field: &str) -> Result<(String, Vec<String>), JqlError> {
        match self.next() {
            Some(Token::Op(op)) => Ok((op.to_owned(), vec![self.value(field)?])),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("in") => {
                Ok(("in".to_owned(), self.list(field)?))
            }
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("not") => {
                if !is_keyword(self.peek(), "in") {
                    return err("Error in the JQL Query: Expecting 'IN' after 'NOT'.");
                }
                self.pos += 1;
                Ok(("not in".to_owned(), self.list(field)?))
            }
            _ => err(format!(
                "Error in the JQL Query: Expecting an operator after field '{field}'."
            )),
        }
    }

    fn list(&mut self, field: &str) -> Result<Vec<String>, JqlError> {
        if self.next() != Some(Token::LParen) {
            return err("Error in the JQL Query: Expecting '(' after 'IN'.");
        }
        let mut values = vec![self.value(field)?];
        loop {
            match self.next() {
                Some(Token::Comma) => values.push(self.value(field)?),
                Some(Token::RParen) => return Ok(values),
                _ => return err("Error in the JQL Query: Expecting ',' or ')' in a list."),
            }
        }
    }

    fn clause(&mut self) -> Result<Clause, JqlError> {
        let field = match self.next() {
            Some(Token::Word(w)) | Some(Token::Str(w)) => w,
            _ => return err("Error in the JQL Query: Expecting a field name."),
        };
        let lower = field.to_ascii_lowercase();
        let (op, values) = self.values_after_operator(&field)?;
        let unsupported = || {
            err(format!(
                "The operator '{op}' is not supported by the '{field}' field."
            ))
        };
        match lower.as_str() {
            "labels" => match op.as_str() {
                "=" | "in" => Ok(Clause::Labels(values)),
                _ => unsupported(),
            },
            "updated" | "updateddate" | "created" | "createddate" => {
                let date_op = match op.as_str() {
                    ">=" => DateOp::Ge,
                    ">" => DateOp::Gt,
                    "<=" => DateOp::Le,
                    "<" => DateOp::Lt,
                    "=" => DateOp::Eq,
                    _ => return unsupported(),
                };
                let at = parse_date(&values[0], &field, self.now, self.zone)?;
                if lower.starts_with("updated") {
                    Ok(Clause::Updated(date_op, at))
                } else {
                    Ok(Clause::Created(date_op, at))
                }
            }
            "key" | "issuekey" | "id" => match op.as_str() {
                "=" | "in" => Ok(Clause::Key(values)),
                _ => unsupported(),
            },
            "project" => match op.as_str() {
                "=" | "in" => Ok(Clause::Project(values)),
                _ => unsupported(),
            },
            "status" => match op.as_str() {
                "=" | "in" => Ok(Clause::Status {
                    names: values,
                    negated: false,
                }),
                "!=" | "not in" => Ok(Clause::Status {
                    names: values,
                    negated: true,
                }),
                _ => unsupported(),
            },
            "statuscategory" => match op.as_str() {
                "=" | "in" => Ok(Clause::StatusCategory(values)),
                _ => unsupported(),
            },
            _ => err(format!(
                "Field '{field}' does not exist or you do not have permission to view it."
            )),
        }
    }

    fn order_by(&mut self) -> Result<Vec<(OrderField, bool)>, JqlError> {
        let mut order = Vec::new();
        loop {
            let field = match self.next() {
                Some(Token::Word(w)) => w,
                _ => {
                    return err("Error in the JQL Query: Expecting a field name after 'ORDER BY'.");
                }
            };
            let f = match field.to_ascii_lowercase().as_str() {
                "updated" | "updateddate" => OrderField::Updated,
                "created" | "createddate" => OrderField::Created,
                "key" | "issuekey" | "id" => OrderField::Key,
                _ => {
                    return err(format!(
                        "Not able to sort using field '{field}' in the simulator."
                    ));
                }
            };
            let mut ascending = !matches!(f, OrderField::Updated | OrderField::Created);
            if is_keyword(self.peek(), "asc") {
                ascending = true;
                self.pos += 1;
            } else if is_keyword(self.peek(), "desc") {
                ascending = false;
                self.pos += 1;
            }
            order.push((f, ascending));
            match self.next() {
                None => return Ok(order),
                Some(Token::Comma) => continue,
                Some(_) => {
                    return err("Error in the JQL Query: Expecting ',' or the end of the query.");
                }
            }
        }
    }
}

/// Parses `jql` for a user in UTC; relative dates (`-5m`) are resolved against `now`.
pub fn parse(jql: &str, now: DateTime<Utc>) -> Result<Query, JqlError> {
    parse_in_zone(jql, now, Tz::UTC)
}

/// Parses `jql` for a user whose time zone is `zone`: date literals are local times there.
pub fn parse_in_zone(jql: &str, now: DateTime<Utc>, zone: Tz) -> Result<Query, JqlError> {
    let mut p = Parser {
        tokens: tokenize(jql)?,
        pos: 0,
        now,
        zone,
    };
    let mut clauses = Vec::new();
    let mut order = Vec::new();
    while p.peek().is_some() {
        if is_keyword(p.peek(), "order") {
            p.pos += 1;
            if !is_keyword(p.peek(), "by") {
                return err("Error in the JQL Query: Expecting 'BY' after 'ORDER'.");
            }
            p.pos += 1;
            order = p.order_by()?;
            break;
        }
        clauses.push(p.clause()?);
        match p.peek() {
            None => break,
            Some(t) if is_keyword(Some(t), "and") => p.pos += 1,
            Some(t) if is_keyword(Some(t), "order") => {}
            Some(t) if is_keyword(Some(t), "or") => {
                return err("The simulator supports only clauses joined by AND, not OR.");
            }
            Some(t) => {
                return err(format!(
                    "Error in the JQL Query: Expecting 'AND', 'OR' or 'ORDER BY' but got {t:?}."
                ));
            }
        }
    }
    Ok(Query { clauses, order })
}

fn parse_date(
    value: &str,
    field: &str,
    now: DateTime<Utc>,
    zone: Tz,
) -> Result<DateTime<Utc>, JqlError> {
    let v = value.trim();
    for fmt in ["%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(v, fmt) {
            return Ok(local_instant(dt, zone));
        }
    }
    for fmt in ["%Y-%m-%d", "%Y/%m/%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(v, fmt)
            && let Some(dt) = d.and_hms_opt(0, 0, 0)
        {
            return Ok(local_instant(dt, zone));
        }
    }
    if let Some(rel) = parse_period(v) {
        return Ok(now + rel);
    }
    err(format!(
        "Date value '{value}' for field '{field}' is invalid. Valid formats include: \
         'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'."
    ))
}

/// `-5m`, `-2h`, `-1d`, `-1w` (one unit only: enough for a poller's look-back).
fn parse_period(v: &str) -> Option<ChronoDuration> {
    let (sign, rest) = match v.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, v.strip_prefix('+').unwrap_or(v)),
    };
    let unit = rest.chars().last()?;
    let n: i64 = rest[..rest.len() - unit.len_utf8()].parse().ok()?;
    let d = match unit {
        'm' => ChronoDuration::minutes(n),
        'h' => ChronoDuration::hours(n),
        'd' => ChronoDuration::days(n),
        'w' => ChronoDuration::weeks(n),
        _ => return None,
    };
    Some(d * sign)
}

/// The instant a local time of `zone` names, read as leniently as `java.util.Calendar` reads
/// it: a time repeated when daylight saving time ends is the later (standard-time) one, a time
/// skipped when it starts is moved forward by the gap (read with the offset before it).
fn local_instant(local: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) => at.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, later) => earlier.max(later).with_timezone(&Utc),
        LocalResult::None => {
            let before = (1..=24 * 60)
                .map(|m| local - ChronoDuration::minutes(m))
                .find_map(|t| zone.from_local_datetime(&t).earliest());
            let offset = before.map_or(0, |t| t.offset().fix().local_minus_utc());
            (local - ChronoDuration::seconds(i64::from(offset))).and_utc()
        }
    }
}

fn compare(op: DateOp, actual: DateTime<Utc>, bound: DateTime<Utc>) -> bool {
    match op {
        DateOp::Ge => actual >= bound,
        DateOp::Gt => actual > bound,
        DateOp::Le => actual <= bound,
        DateOp::Lt => actual < bound,
        // JQL dates have minute precision, so equality means "within that minute".
        DateOp::Eq => actual >= bound && actual < bound + ChronoDuration::minutes(1),
    }
}

impl Query {
    pub fn matches(&self, issue: &JiraIssue) -> bool {
        self.clauses.iter().all(|c| match c {
            Clause::Labels(wanted) => wanted.iter().any(|w| issue.labels.contains(w)),
            Clause::Updated(op, at) => compare(*op, issue.updated, *at),
            Clause::Created(op, at) => compare(*op, issue.created, *at),
            Clause::Key(keys) => keys.iter().any(|k| *k == issue.key || *k == issue.id),
            Clause::Project(projects) => projects
                .iter()
                .any(|p| p.eq_ignore_ascii_case(&issue.project)),
            Clause::Status { names, negated } => {
                names.iter().any(|n| n.eq_ignore_ascii_case(&issue.status)) != *negated
            }
            Clause::StatusCategory(cats) => cats
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&issue.status_category)),
        })
    }

    /// Sorts in place by the query's ORDER BY, with the numeric issue id as the final tie-break so
    /// paging is stable even when many issues share a timestamp.
    pub fn sort(&self, issues: &mut [JiraIssue]) {
        let id_of = |i: &JiraIssue| i.id.parse::<u64>().unwrap_or(u64::MAX);
        issues.sort_by(|a, b| {
            for (field, ascending) in &self.order {
                let ord = match field {
                    OrderField::Updated => a.updated.cmp(&b.updated),
                    OrderField::Created => a.created.cmp(&b.created),
                    OrderField::Key => id_of(a).cmp(&id_of(b)),
                };
                let ord = if *ascending { ord } else { ord.reverse() };
                if ord.is_ne() {
                    return ord;
                }
            }
            id_of(a).cmp(&id_of(b))
        });
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn parses_the_bridge_sync_query() {
        let q = parse(
            r#"labels = "findings-bridge" AND updated >= "2026-02-28 23:59" ORDER BY updated ASC"#,
            now(),
        )
        .unwrap();
        assert_eq!(
            q.clauses,
            vec![
                Clause::Labels(vec!["findings-bridge".into()]),
                Clause::Updated(
                    DateOp::Ge,
                    Utc.with_ymd_and_hms(2026, 2, 28, 23, 59, 0).unwrap()
                ),
            ]
        );
        assert_eq!(q.order, vec![(OrderField::Updated, true)]);
    }

    #[test]
    fn escaped_quotes_and_backslashes_stay_in_the_value() {
        let q = parse(r#"labels = "a\"b\\c""#, now()).unwrap();
        assert_eq!(q.clauses, vec![Clause::Labels(vec![r#"a"b\c"#.into()])]);
    }

    #[test]
    fn in_lists_and_unquoted_values() {
        let q = parse(
            r#"labels in ("x", y) and key = PROJ-1 order by updated desc"#,
            now(),
        )
        .unwrap();
        assert_eq!(
            q.clauses,
            vec![
                Clause::Labels(vec!["x".into(), "y".into()]),
                Clause::Key(vec!["PROJ-1".into()])
            ]
        );
        assert_eq!(q.order, vec![(OrderField::Updated, false)]);
    }

    #[test]
    fn relative_dates_count_back_from_now() {
        let q = parse("updated >= -5m", now()).unwrap();
        assert_eq!(
            q.clauses,
            vec![Clause::Updated(
                DateOp::Ge,
                Utc.with_ymd_and_hms(2026, 3, 1, 11, 55, 0).unwrap()
            )]
        );
    }

    #[test]
    fn unknown_fields_or_and_bad_syntax_are_errors() {
        for bad in [
            r#"assignee = "me""#,
            r#"labels = "a" OR labels = "b""#,
            r#"labels = "unterminated"#,
            r#"labels ~ "a""#,
            r#"updated >= "yesterday""#,
            r#"labels = "a" ORDER BY summary"#,
            r#"labels = "a" labels = "b""#,
            "labels in (a, b",
        ] {
            assert!(parse(bad, now()).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn empty_query_matches_everything() {
        let q = parse("", now()).unwrap();
        assert!(q.clauses.is_empty());
    }

    fn bound_in(zone: Tz, literal: &str) -> DateTime<Utc> {
        let q = parse_in_zone(&format!(r#"updated >= "{literal}""#), now(), zone).unwrap();
        match q.clauses.as_slice() {
            [Clause::Updated(DateOp::Ge, at)] => *at,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn date_literals_are_local_times_of_the_users_zone() {
        let utc = |y, mo, d, h, mi| Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap();
        assert_eq!(
            bound_in(Tz::UTC, "2026-03-04 09:30"),
            utc(2026, 3, 4, 9, 30)
        );
        assert_eq!(
            bound_in(Tz::America__Los_Angeles, "2026-03-04 09:30"),
            utc(2026, 3, 4, 17, 30),
            "PST is UTC-8"
        );
        assert_eq!(
            bound_in(Tz::Asia__Kolkata, "2026-03-04 09:30"),
            utc(2026, 3, 4, 4, 0),
            "IST is UTC+5:30"
        );
        // The hour repeated when daylight saving time ends is read as the later one (PST).
        assert_eq!(
            bound_in(Tz::America__Los_Angeles, "2026-11-01 01:30"),
            utc(2026, 11, 1, 9, 30)
        );
        // The hour skipped when it starts is moved forward by the gap: 02:30 is 03:30 PDT.
        assert_eq!(
            bound_in(Tz::America__Los_Angeles, "2026-03-08 02:30"),
            utc(2026, 3, 8, 10, 30)
        );
        assert_eq!(
            bound_in(Tz::Asia__Kolkata, "2026-03-04"),
            utc(2026, 3, 3, 18, 30),
            "a date is the zone's midnight"
        );
    }
}
