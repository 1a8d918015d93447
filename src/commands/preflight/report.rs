//! What `preflight` found: one row per check (rule, system, check, verdict, fix), printed as a
//! table for people or as JSON for pipelines, and the exit code (1 on any failure).

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::mapping::spec::Rule;

/// How a check came out. A call whose outcome is unknown (a timeout or 5xx after the client's
/// retries) is a failure: preflight never passes what it could not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Fail,
    /// Not checkable from here (a value that depends on finding data, a check that needs one that
    /// failed); never a failure by itself, always with the reason.
    Skip,
}

/// What was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The mapping files pass `check`.
    Mappings,
    /// The connection a rule targets is configured and signs in.
    Connection,
    JiraProject,
    JiraPermissions,
    JiraIssueType,
    JiraRequiredFields,
    JiraFieldsOnScreen,
    JiraLabels,
    JiraPriority,
    #[serde(rename = "servicenow_table")]
    ServiceNowTable,
    #[serde(rename = "servicenow_fields")]
    ServiceNowFields,
    #[serde(rename = "servicenow_assignment_group")]
    ServiceNowAssignmentGroup,
    Webhook,
}

impl Check {
    /// The words of the table's check column.
    fn label(self) -> &'static str {
        match self {
            Check::Mappings => "mapping files",
            Check::Connection => "connection",
            Check::JiraProject => "project",
            Check::JiraPermissions => "permissions in",
            Check::JiraIssueType => "issue type",
            Check::JiraRequiredFields => "required fields of",
            Check::JiraFieldsOnScreen => "fields on the create screen of",
            Check::JiraLabels => "labels on the create screen of",
            Check::JiraPriority => "priorities of",
            Check::ServiceNowTable => "table",
            Check::ServiceNowFields => "fields of table",
            Check::ServiceNowAssignmentGroup => "assignment group",
            Check::Webhook => "webhook",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// `team/rule`; `None` for what no single rule owns (the mapping set, a webhook, a
    /// connection).
    pub rule: Option<String>,
    /// Where the rule is: its mapping file and the line of its `[[rules]]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// `jira`, `servicenow`, or `bridge` for the bridge's own set-up.
    pub system: String,
    pub check: Check,
    /// What the check was about: `PAY`, `PAY/Bug`, `incident`, `/webhooks/jira`, a file.
    pub subject: String,
    pub verdict: Verdict,
    /// What was seen: the missing fields, the cause of a failed call, why a check was skipped.
    pub detail: String,
    /// One line saying how to make a failed check pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Row {
    /// A row about `rule`.
    pub fn of_rule(rule: &Rule, system: &str, check: Check, subject: impl Into<String>) -> Row {
        Row {
            rule: Some(format!("{}/{}", rule.team, rule.name)),
            file: Some(rule.file.clone()),
            line: Some(rule.line),
            ..Row::general(system, check, subject)
        }
    }

    /// A row no single rule owns.
    pub fn general(system: &str, check: Check, subject: impl Into<String>) -> Row {
        Row {
            rule: None,
            file: None,
            line: None,
            system: system.to_owned(),
            check,
            subject: subject.into(),
            verdict: Verdict::Ok,
            detail: String::new(),
            fix: None,
        }
    }

    pub fn ok(mut self, detail: impl Into<String>) -> Row {
        self.verdict = Verdict::Ok;
        self.detail = detail.into();
        self
    }

    pub fn fail(mut self, detail: impl Into<String>, fix: impl Into<String>) -> Row {
        self.verdict = Verdict::Fail;
        self.detail = detail.into();
        self.fix = Some(one_line(&fix.into()));
        self
    }

    pub fn skip(mut self, detail: impl Into<String>) -> Row {
        self.verdict = Verdict::Skip;
        self.detail = detail.into();
        self
    }
}

/// Every row, in the order the checks ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub checks: Vec<Row>,
}

#[derive(Serialize)]
struct Summary {
    checks: usize,
    ok: usize,
    failed: usize,
    skipped: usize,
}

impl Report {
    pub fn push(&mut self, row: Row) {
        self.checks.push(row);
    }

    /// No check failed.
    pub fn passed(&self) -> bool {
        !self.checks.iter().any(|r| r.verdict == Verdict::Fail)
    }

    fn summary(&self) -> Summary {
        let count = |v: Verdict| self.checks.iter().filter(|r| r.verdict == v).count();
        Summary {
            checks: self.checks.len(),
            ok: count(Verdict::Ok),
            failed: count(Verdict::Fail),
            skipped: count(Verdict::Skip),
        }
    }

    /// `{"ok": bool, "summary": {"checks", "ok", "failed", "skipped"}, "checks": [row, …]}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.passed(),
            "summary": self.summary(),
            "checks": self.checks,
        })
    }

    /// Columns rule, system, check, verdict, fix, padded to line up (the fix is last and never
    /// padded); a failed or skipped check's verdict carries what was seen. A count closes it.
    pub fn table(&self) -> String {
        let header = ["RULE", "SYSTEM", "CHECK", "VERDICT", "FIX"].map(str::to_owned);
        let mut lines: Vec<[String; 5]> = vec![header];
        for row in &self.checks {
            let verdict = match row.verdict {
                Verdict::Ok => "ok".to_owned(),
                Verdict::Fail => format!("FAIL: {}", row.detail),
                Verdict::Skip => format!("skip: {}", row.detail),
            };
            lines.push([
                row.rule.clone().unwrap_or_else(|| "-".to_owned()),
                row.system.clone(),
                format!("{} {}", row.check.label(), row.subject),
                one_line(&verdict),
                row.fix.clone().unwrap_or_default(),
            ]);
        }
        let mut widths = [0usize; 4];
        for line in &lines {
            for (w, cell) in widths.iter_mut().zip(line.iter()) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in &lines {
            let mut text = String::new();
            for (cell, width) in line.iter().zip(widths) {
                let _ = write!(text, "{cell:<width$}  ");
            }
            text.push_str(&line[4]);
            out.push_str(text.trim_end());
            out.push('\n');
        }
        let s = self.summary();
        let _ = writeln!(
            out,
            "\n{} check(s): {} ok, {} failed, {} skipped",
            s.checks, s.ok, s.failed, s.skipped
        );
        out
    }
}

/// Server text may hold line breaks; a row stays on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut report = Report::default();
        report.push(Row::general("bridge", Check::Mappings, "mappings").ok("2 team files"));
        report.push(
            Row::general("jira", Check::JiraRequiredFields, "PAY/Bug").fail(
                "customfield_10099 (Team) is required\nand not set",
                "add customfield_10099 to the rule's fields",
            ),
        );
        report.push(Row::general("jira", Check::JiraProject, "?").skip("a template"));
        report
    }

    #[test]
    fn a_failure_fails_the_report_and_a_skip_does_not() {
        let mut r = report();
        assert!(!r.passed());
        r.checks.remove(1);
        assert!(r.passed(), "a skip alone passes");
    }

    #[test]
    fn the_table_has_one_line_per_check_and_a_count() {
        let table = report().table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("RULE"), "{table}");
        assert!(
            lines[2].contains("FAIL: customfield_10099 (Team) is required and not set"),
            "{table}"
        );
        assert!(
            lines[2].ends_with("add customfield_10099 to the rule's fields"),
            "{table}"
        );
        assert!(lines[3].contains("skip: a template"), "{table}");
        assert_eq!(
            lines.last().copied(),
            Some("3 check(s): 1 ok, 1 failed, 1 skipped")
        );
        // The verdict column starts at the same place on every line.
        let at = lines[0].find("VERDICT").unwrap();
        assert!(
            lines[1..4]
                .iter()
                .all(|l| l[at..].starts_with(['o', 'F', 's']))
        );
    }

    #[test]
    fn json_names_every_field() {
        let json = report().json();
        assert_eq!(json["ok"], false);
        assert_eq!(json["summary"]["failed"], 1);
        let row = &json["checks"][1];
        assert_eq!(row["check"], "jira_required_fields");
        assert_eq!(row["verdict"], "fail");
        assert_eq!(row["subject"], "PAY/Bug");
        assert!(row["rule"].is_null());
        assert!(json["checks"][0].get("fix").is_none());
        let names = [
            (Check::ServiceNowFields, "servicenow_fields"),
            (
                Check::ServiceNowAssignmentGroup,
                "servicenow_assignment_group",
            ),
            (Check::JiraFieldsOnScreen, "jira_fields_on_screen"),
        ];
        for (check, name) in names {
            assert_eq!(serde_json::to_value(check).unwrap(), name);
        }
    }
}
