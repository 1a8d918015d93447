//! The ticket comment a finished investigation becomes: one bullet per indicator, every value from
//! Detective quoted so it cannot turn into markup, and a link to the investigation in the console.

use std::fmt::Write as _;

use aws_sdk_detective::types::{Indicator, IndicatorDetail};

use super::config::{GraphArn, IndicatorKind};

/// Longest value quoted from Detective in a comment bullet (user agents can be kilobytes).
const MAX_VALUE_CHARS: usize = 200;

/// One indicator of compromise, ready for a comment: `text` is light Markdown in which every
/// value that came from Detective sits in a code span, so it cannot turn into links or markup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndicatorSummary {
    pub kind: IndicatorKind,
    pub text: String,
}

/// What a finished investigation found, for the ticket comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvestigationSummary {
    pub entity_arn: String,
    pub investigation_id: String,
    /// INFORMATIONAL .. CRITICAL as Detective rates the investigation; `None` if it gave none.
    pub severity: Option<String>,
    /// SUCCESSFUL for every summary (RUNNING and FAILED end as errors), kept for the comment.
    pub status: String,
    /// ACTIVE / ARCHIVED.
    pub state: Option<String>,
    /// RFC 3339, UTC.
    pub scope_start: String,
    pub scope_end: String,
    pub indicators: Vec<IndicatorSummary>,
    /// Detective's console, on the investigation.
    pub console_url: String,
    /// Bullets shown before "and N more".
    pub max_bullets: usize,
}

impl InvestigationSummary {
    /// The ticket comment, in the light Markdown the ticket clients convert.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let severity = self.severity.as_deref().unwrap_or("not rated");
        let _ = writeln!(md, "### Amazon Detective investigation: {severity}");
        md.push('\n');
        let _ = writeln!(
            md,
            "Entity {} · scope {} to {}",
            code(&self.entity_arn),
            code(&self.scope_start),
            code(&self.scope_end)
        );
        let state = self.state.as_deref().unwrap_or("state unknown");
        let _ = writeln!(
            md,
            "Investigation {} ({}, {state}) · {} indicator{}",
            code(&self.investigation_id),
            self.status,
            self.indicators.len(),
            if self.indicators.len() == 1 { "" } else { "s" }
        );
        md.push('\n');
        if self.indicators.is_empty() {
            md.push_str("Detective reported no indicators of compromise in this scope.\n");
        } else {
            for indicator in self.indicators.iter().take(self.max_bullets) {
                let _ = writeln!(md, "- **{}:** {}", indicator.kind.label(), indicator.text);
            }
            let rest = self.indicators.len().saturating_sub(self.max_bullets);
            if rest > 0 {
                let _ = writeln!(md, "- and {rest} more");
            }
        }
        md.push('\n');
        let _ = writeln!(
            md,
            "[Open the investigation in the Detective console]({})",
            self.console_url
        );
        md
    }
}

/// Link to the investigation in Detective's console of the graph's region.
///
/// The console documents `#investigations` (the list) and profile links; the investigation
/// itself opens under `#investigations/{id}`.
pub fn console_url(graph: &GraphArn, investigation_id: &str) -> String {
    let region = graph.region();
    let host = match graph.partition() {
        "aws-cn" => "console.amazonaws.cn".to_owned(),
        "aws-us-gov" => "console.amazonaws-us-gov.com".to_owned(),
        _ => format!("{region}.console.aws.amazon.com"),
    };
    let id: String = url::form_urlencoded::byte_serialize(investigation_id.as_bytes()).collect();
    format!("https://{host}/detective/home?region={region}#investigations/{id}")
}

/// The comment line for one indicator, or `None` for types the bridge does not know.
pub(super) fn summarize(indicator: &Indicator) -> Option<IndicatorSummary> {
    let kind = IndicatorKind::from_api(indicator.indicator_type()?)?;
    let detail = indicator.indicator_detail();
    let text = detail
        .and_then(|d| describe(kind, d))
        .unwrap_or_else(|| "no details".to_owned());
    Some(IndicatorSummary { kind, text })
}

fn describe(kind: IndicatorKind, d: &IndicatorDetail) -> Option<String> {
    let new_for_account = |yes: bool| {
        if yes {
            " (new for the whole account)"
        } else {
            ""
        }
    };
    Some(match kind {
        IndicatorKind::TtpObserved => {
            let t = d.ttps_observed_detail()?;
            let mut s = match (t.tactic(), t.technique()) {
                (Some(tactic), Some(technique)) => {
                    format!("{} / {}", code(tactic), code(technique))
                }
                (Some(one), None) | (None, Some(one)) => code(one),
                (None, None) => "unnamed technique".to_owned(),
            };
            if let Some(procedure) = t.procedure() {
                let _ = write!(s, " ({})", code(procedure));
            }
            if let Some(api) = t.api_name() {
                let _ = write!(
                    s,
                    " via {}: {} succeeded, {} failed",
                    code(api),
                    t.api_success_count(),
                    t.api_failure_count()
                );
            }
            if let Some(ip) = t.ip_address() {
                let _ = write!(s, " from {}", code(ip));
            }
            s
        }
        IndicatorKind::ImpossibleTravel => {
            let t = d.impossible_travel_detail()?;
            let end = |ip: Option<&str>, place: Option<&str>| match (ip, place) {
                (Some(ip), Some(place)) => format!("{} ({})", code(ip), code(place)),
                (Some(one), None) | (None, Some(one)) => code(one),
                (None, None) => "unknown".to_owned(),
            };
            let mut s = format!(
                "{} to {}",
                end(t.starting_ip_address(), t.starting_location()),
                end(t.ending_ip_address(), t.ending_location())
            );
            if let Some(hours) = t.hourly_time_delta() {
                let _ = write!(s, " within {hours} h");
            }
            s
        }
        IndicatorKind::FlaggedIpAddress => {
            let f = d.flagged_ip_address_detail()?;
            let mut s = code(f.ip_address().unwrap_or("unknown address"));
            if let Some(reason) = f.reason() {
                let _ = write!(s, " ({})", code(reason.as_str()));
            }
            s
        }
        IndicatorKind::NewGeolocation => {
            let g = d.new_geolocation_detail()?;
            let mut s = code(g.location().unwrap_or("unknown location"));
            if let Some(ip) = g.ip_address() {
                let _ = write!(s, " from {}", code(ip));
            }
            s.push_str(new_for_account(g.is_new_for_entire_account()));
            s
        }
        IndicatorKind::NewUserAgent => {
            let u = d.new_user_agent_detail()?;
            let mut s = code(u.user_agent().unwrap_or("unknown user agent"));
            s.push_str(new_for_account(u.is_new_for_entire_account()));
            s
        }
        IndicatorKind::NewAso => {
            let a = d.new_aso_detail()?;
            let mut s = code(a.aso().unwrap_or("unknown ASO"));
            s.push_str(new_for_account(a.is_new_for_entire_account()));
            s
        }
        IndicatorKind::RelatedFindingGroup => code(
            d.related_finding_group_detail()?
                .id()
                .unwrap_or("unknown group"),
        ),
        IndicatorKind::RelatedFinding => {
            let r = d.related_finding_detail()?;
            let mut s = code(r.arn().unwrap_or("unknown finding"));
            if let Some(kind) = r.r#type() {
                let _ = write!(s, " ({})", code(kind));
            }
            if let Some(ip) = r.ip_address() {
                let _ = write!(s, " from {}", code(ip));
            }
            s
        }
    })
}

/// A value from outside as an inline code span: backticks and line breaks cannot occur inside
/// one, so they are replaced, and very long values are cut.
fn code(value: &str) -> String {
    let mut clean: String = value
        .chars()
        .map(|c| match c {
            '`' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .take(MAX_VALUE_CHARS)
        .collect();
    if value.chars().count() > MAX_VALUE_CHARS {
        clean.push('…');
    }
    let clean = clean.trim();
    if clean.is_empty() {
        "`-`".to_owned()
    } else {
        format!("`{clean}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAPH: &str =
        "arn:aws:detective:us-east-1:111122223333:graph:0123456789abcdef0123456789abcdef";

    #[test]
    fn values_from_detective_cannot_break_out_of_code_spans() {
        assert_eq!(
            code("curl`[x](https://evil)`\n"),
            "`curl'[x](https://evil)'`"
        );
        assert_eq!(code("  "), "`-`");
        let long = "a".repeat(500);
        assert_eq!(code(&long).chars().count(), MAX_VALUE_CHARS + 3);
    }

    #[test]
    fn console_links_follow_the_partition() {
        let aws = GraphArn::parse(GRAPH).unwrap();
        assert_eq!(
            console_url(&aws, "001"),
            "https://us-east-1.console.aws.amazon.com/detective/home?region=us-east-1#investigations/001"
        );
        let cn = GraphArn::parse(
            "arn:aws-cn:detective:cn-north-1:111122223333:graph:0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        assert!(
            console_url(&cn, "1")
                .starts_with("https://console.amazonaws.cn/detective/home?region=cn-north-1#")
        );
    }
}
