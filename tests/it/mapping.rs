//! Mapping files: loading, error reporting and routing, as an operator meets them through
//! `check`, start-up and the tickets that get (or do not get) opened.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use findings_bridge::finding::{
    Compliance, Finding, RecordState, Remediation, Resource, Schema, Severity, WorkflowStatus,
    WriteBackId,
};
use findings_bridge::mapping::spec::{
    FieldTemplate, OnRecurrence, OnResolved, Rule, TargetKind, TicketSpec,
};
use findings_bridge::mapping::template::{Clock, Template};
use findings_bridge::mapping::{self, LoadErrors, Mappings};
use findings_bridge::render::template_context;
use minijinja::Value;
use minijinja::value::Serde;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn fixed_clock() -> Clock {
    let t = DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    Arc::new(move || t)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mapping_fixtures")
        .join(name)
}

/// A temporary mapping directory holding `files`.
fn dir(files: &[(&str, &str)]) -> TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    d
}

fn load(files: &[(&str, &str)]) -> Mappings {
    let d = dir(files);
    match mapping::load_with_clock(d.path(), fixed_clock()) {
        Ok(m) => m,
        Err(e) => panic!("expected the mappings to load, got:\n{e}"),
    }
}

/// Loads `files` expecting failure; returns the `file:line: message` text.
fn errors(files: &[(&str, &str)]) -> String {
    let d = dir(files);
    match mapping::load_with_clock(d.path(), fixed_clock()) {
        Ok(m) => panic!("expected load errors, got {} rules", m.rules.len()),
        Err(e) => e.to_string(),
    }
}

fn assert_has(errors: &str, needle: &str) {
    assert!(
        errors.lines().any(|l| l.contains(needle)),
        "expected an error line containing {needle:?}, got:\n{errors}"
    );
}

/// A HIGH GuardDuty finding on one EC2 instance in account 111122223333.
fn finding() -> Finding {
    Finding {
        id: "arn:aws:guardduty:us-east-1:111122223333:detector/d1/finding/f1".into(),
        schema: Schema::Asff,
        product_arn: "arn:aws:securityhub:us-east-1::product/aws/guardduty".into(),
        product_name: "GuardDuty".into(),
        company_name: "Amazon".into(),
        generator_id: "arn:aws:guardduty:us-east-1:111122223333:detector/d1".into(),
        account_id: "111122223333".into(),
        region: "us-east-1".into(),
        title: "EC2 instance i-0abc is communicating with a known C&C server".into(),
        description: "Backdoor:EC2/C&CActivity.B!DNS".into(),
        severity: Severity::High,
        severity_score: 70,
        types: vec!["TTPs/Command and Control/Backdoor:EC2-C&CActivity.B!DNS".into()],
        resources: vec![Resource {
            kind: "AwsEc2Instance".into(),
            id: "arn:aws:ec2:us-east-1:111122223333:instance/i-0abc".into(),
            region: Some("us-east-1".into()),
            partition: Some("aws".into()),
            tags: BTreeMap::new(),
        }],
        compliance: Compliance::default(),
        workflow_status: WorkflowStatus::New,
        record_state: RecordState::Active,
        created_at: Some("2026-11-27T09:00:00Z".into()),
        updated_at: Some("2026-11-28T09:00:00Z".into()),
        first_observed_at: Some("2026-11-27T09:00:00Z".into()),
        last_observed_at: Some("2026-11-28T09:00:00Z".into()),
        remediation: Remediation::default(),
        user_defined_fields: BTreeMap::new(),
        product_fields: BTreeMap::new(),
        console_url: "https://us-east-1.console.aws.amazon.com/securityhub/home#/findings".into(),
        write_back: WriteBackId::Asff {
            id: "arn:aws:guardduty:us-east-1:111122223333:detector/d1/finding/f1".into(),
            product_arn: "arn:aws:securityhub:us-east-1::product/aws/guardduty".into(),
        },
        raw: serde_json::json!({ "SchemaVersion": "2018-10-08" }),
    }
}

fn with(f: impl FnOnce(&mut Finding)) -> Finding {
    let mut x = finding();
    f(&mut x);
    x
}

fn routes(m: &Mappings, f: &Finding) -> Vec<String> {
    m.route(f)
        .into_iter()
        .map(|r| format!("{}/{}", r.team, r.name))
        .collect()
}

fn rule<'a>(m: &'a Mappings, team: &str, name: &str) -> &'a Rule {
    m.rule(team, name)
        .unwrap_or_else(|| panic!("no rule {team}/{name}"))
}

fn jira(rule: &Rule) -> &findings_bridge::mapping::spec::JiraSpec {
    match &rule.ticket {
        TicketSpec::Jira(j) => j,
        other => panic!("expected a Jira rule, got {other:?}"),
    }
}

const JIRA: &str = r#"
[rules.jira]
project = "P"
issue_type = "Bug"
summary = "{{ finding.title }}"
"#;

/// A one-rule team file: `criteria` is the body of `[rules.criteria]`.
fn team_file(team: &str, name: &str, order: i64, extra: &str, criteria: &str) -> String {
    format!(
        "team = \"{team}\"\n\n[[rules]]\nname = \"{name}\"\norder = {order}\n{extra}\n\
         [rules.criteria]\n{criteria}\n{JIRA}"
    )
}

// ---------------------------------------------------------------------------------------------
// The shipped mappings
// ---------------------------------------------------------------------------------------------

fn shipped() -> Mappings {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    match mapping::load_with_clock(&path, fixed_clock()) {
        Ok(m) => m,
        Err(e) => panic!("shipped mappings must load:\n{e}"),
    }
}

fn render_field(m: &Mappings, t: &FieldTemplate, ctx: &Value) -> serde_json::Value {
    match t {
        FieldTemplate::Text(t) => serde_json::Value::String(m.engine.render(t, ctx).unwrap()),
        FieldTemplate::Integer(i) => (*i).into(),
        FieldTemplate::Float(f) => (*f).into(),
        FieldTemplate::Bool(b) => (*b).into(),
        FieldTemplate::Array(a) => a.iter().map(|x| render_field(m, x, ctx)).collect(),
        FieldTemplate::Table(t) => t
            .iter()
            .map(|(k, v)| (k.clone(), render_field(m, v, ctx)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

/// Renders every template of `rule` for `f` with the renderer's own context (the finding's
/// application included), without applying a severity override.
fn render_all(m: &Mappings, rule: &Rule, f: &Finding) -> BTreeMap<String, serde_json::Value> {
    let ctx = template_context(f, rule, f.severity, m.application_for(f));
    let r = |t: &Template| serde_json::Value::String(m.engine.render(t, &ctx).unwrap());
    let mut out = BTreeMap::new();
    match &rule.ticket {
        TicketSpec::Jira(j) => {
            out.insert("project".into(), r(&j.project));
            out.insert("issue_type".into(), r(&j.issue_type));
            out.insert("summary".into(), r(&j.summary));
            if let Some(t) = &j.description {
                out.insert("description".into(), r(t));
            }
            if let Some(t) = &j.priority {
                out.insert("priority".into(), r(t));
            }
            out.insert("labels".into(), j.labels.iter().map(r).collect());
            for (k, v) in &j.fields {
                out.insert(format!("fields.{k}"), render_field(m, v, &ctx));
            }
        }
        TicketSpec::ServiceNow(s) => {
            out.insert("table".into(), s.table.clone().into());
            out.insert("short_description".into(), r(&s.short_description));
            for (k, t) in [
                ("description", &s.description),
                ("urgency", &s.urgency),
                ("impact", &s.impact),
                ("assignment_group", &s.assignment_group),
            ] {
                if let Some(t) = t {
                    out.insert(k.into(), r(t));
                }
            }
            for (k, v) in &s.fields {
                out.insert(format!("fields.{k}"), render_field(m, v, &ctx));
            }
        }
    }
    out
}

fn payments_guardduty() -> Finding {
    with(|f| {
        f.severity = Severity::Critical;
        f.severity_score = 90;
        f.account_id = "444455556666".into();
        f.resources[0].tags.insert("team".into(), "payments".into());
    })
}

fn platform_control() -> Finding {
    with(|f| {
        f.product_name = "Security Hub".into();
        f.generator_id = "security-control/S3.8".into();
        f.title = "S3 general purpose buckets should block public access".into();
        f.severity = Severity::Medium;
        f.severity_score = 40;
        f.types =
            vec!["Software and Configuration Checks/Industry and Regulatory Standards".into()];
        f.resources[0].kind = "AwsS3Bucket".into();
        f.resources[0].id = "arn:aws:s3:::platform-logs".into();
        f.compliance = Compliance {
            status: Some("FAILED".into()),
            control_id: Some("S3.8".into()),
            standards: vec!["standards/aws-foundational-security-best-practices/v/1.0.0".into()],
            related_requirements: vec![],
        };
        f.remediation = Remediation {
            text: Some("See the S3.8 docs".into()),
            url: Some("https://docs.aws.amazon.com/console/securityhub/S3.8/remediation".into()),
        };
    })
}

#[test]
fn shipped_mappings_load_without_errors() {
    let m = shipped();
    let teams: Vec<&str> = m.teams.iter().map(|t| &*t.name).collect();
    assert_eq!(teams, ["payments", "platform", "security"]);
    // Global evaluation order.
    let order: Vec<(i64, &str)> = m.rules.iter().map(|r| (r.order, &*r.name)).collect();
    assert_eq!(
        order,
        [
            (5, "critical-watch"),
            (8, "payments-app-vulnerabilities"),
            (10, "critical-guardduty"),
            (20, "cspm-control-failures"),
            (25, "external-access"),
            (50, "payments-account"),
            (60, "cspm-controls-by-control"),
            (1000, "unclaimed-high-and-critical"),
        ]
    );
    let watch = rule(&m, "security", "critical-watch");
    assert!(!watch.terminal);
    assert!(!watch.notify_on_create);
    assert_eq!(watch.on_resolved, OnResolved::Comment);
    let cspm = rule(&m, "platform", "cspm-control-failures");
    assert_eq!(cspm.on_resolved, OnResolved::Close);
    assert_eq!(cspm.target, "servicenow");
    assert_eq!(
        cspm.status_map.0.get("state:6"),
        Some(&WorkflowStatus::Resolved)
    );
}

#[test]
fn shipped_mappings_route_realistic_findings() {
    let m = shipped();
    assert_eq!(
        routes(&m, &payments_guardduty()),
        ["security/critical-watch", "payments/critical-guardduty"]
    );
    assert_eq!(
        routes(&m, &platform_control()),
        ["platform/cspm-control-failures"]
    );
    // A HIGH finding nobody owns falls through to the security backstop.
    let unowned = with(|f| f.account_id = "999988887777".into());
    assert_eq!(
        routes(&m, &unowned),
        ["security/unclaimed-high-and-critical"]
    );
    // A CRITICAL nobody owns: SecOps' watch already routed it; the backstop adds no second ticket.
    let unowned_critical = with(|f| {
        f.account_id = "999988887777".into();
        f.severity = Severity::Critical;
    });
    assert_eq!(routes(&m, &unowned_critical), ["security/critical-watch"]);
    // LOW and unowned: no ticket at all.
    let low = with(|f| {
        f.account_id = "999988887777".into();
        f.severity = Severity::Low;
    });
    assert!(routes(&m, &low).is_empty());
    // Payments' account rule takes a MEDIUM misconfiguration there.
    let pay_medium = with(|f| {
        f.account_id = "444455556666".into();
        f.severity = Severity::Medium;
        f.product_name = "Inspector".into();
    });
    assert_eq!(routes(&m, &pay_medium), ["payments/payments-account"]);
}

#[test]
fn shipped_templates_render_for_their_findings() {
    let m = shipped();
    let gd = render_all(
        &m,
        rule(&m, "payments", "critical-guardduty"),
        &payments_guardduty(),
    );
    assert_eq!(gd["project"], "PAY");
    assert_eq!(gd["priority"], "Highest");
    assert_eq!(
        gd["summary"],
        "[CRITICAL] EC2 instance i-0abc is communicating with a known C&C server"
    );
    assert_eq!(
        gd["labels"],
        serde_json::json!(["security-hub", "team-payments", "guardduty", "sev-critical"])
    );
    // The due date comes from the team's `sla` now (CRITICAL: one day), counted from when the
    // finding was first observed (2026-11-27T09:00Z), not from the clock: no template sets it.
    assert!(!gd.contains_key("fields.duedate"));
    let gd_rule = rule(&m, "payments", "critical-guardduty");
    let gd_finding = payments_guardduty();
    let rendered = findings_bridge::render::render_route(
        &m.engine,
        gd_rule,
        &gd_finding,
        m.application_for(&gd_finding),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(rendered.payload["fields"]["duedate"], "2026-11-28");
    assert_eq!(
        gd["fields.customfield_10050"],
        serde_json::json!({ "value": "CRITICAL" })
    );
    assert_eq!(
        gd["fields.components"],
        serde_json::json!([{ "name": "Security" }])
    );
    let description = gd["description"].as_str().unwrap();
    assert!(description.contains("arn:aws:ec2:us-east-1:111122223333:instance/i-0abc"));
    assert!(description.contains("(https://us-east-1.console.aws.amazon.com/securityhub/"));

    let sn = render_all(
        &m,
        rule(&m, "platform", "cspm-control-failures"),
        &platform_control(),
    );
    assert_eq!(sn["table"], "incident");
    assert_eq!(
        sn["short_description"],
        "S3.8 failed: S3 general purpose buckets should block public access"
    );
    assert_eq!(sn["urgency"], "2");
    assert_eq!(sn["impact"], "3");
    assert_eq!(sn["assignment_group"], "Cloud Platform");
    assert_eq!(sn["fields.category"], "security");
    assert_eq!(sn["fields.subcategory"], "S3.8");
    assert_eq!(sn["fields.u_aws_account"], "111122223333");

    // Every other shipped rule renders for a plain finding without undefined-variable errors; a
    // grouped rule's templates read `group`, which only its group ticket's rendering provides.
    for r in &m.rules {
        if r.group.is_some() {
            let f = finding();
            let rendered = findings_bridge::render::render_route(
                &m.engine,
                r,
                &f,
                m.application_for(&f),
                &Default::default(),
            );
            assert!(rendered.is_ok(), "{}/{}: {rendered:?}", r.team, r.name);
            continue;
        }
        let out = render_all(&m, r, &finding());
        assert!(!out.is_empty(), "{}/{}", r.team, r.name);
    }
}

// ---------------------------------------------------------------------------------------------
// Rule order, terminal rules, one route per team
// ---------------------------------------------------------------------------------------------

#[test]
fn equal_orders_across_files_are_broken_by_file_name_and_underscore_files_are_skipped() {
    let m = mapping::load_with_clock(&fixture("tie"), fixed_clock()).unwrap();
    let teams: Vec<&str> = m.teams.iter().map(|t| &*t.name).collect();
    assert_eq!(
        teams,
        ["appsec", "infra"],
        "_context.toml is not a team file"
    );
    // Both teams have a terminal HIGH rule at order 10: a-appsec.toml sorts first and stops.
    assert_eq!(routes(&m, &finding()), ["appsec/all-high"]);
    let order: Vec<String> = m
        .rules
        .iter()
        .map(|r| format!("{}:{}", r.team, r.name))
        .collect();
    assert_eq!(
        order,
        ["infra:critical-first", "appsec:all-high", "infra:all-high"]
    );
    let infra = rule(&m, "infra", "all-high");
    assert_eq!(infra.target, "servicenow");
    assert_eq!(infra.line, 4);
    assert_eq!(infra.position, 0);
}

#[test]
fn rules_of_one_file_with_equal_order_are_rejected() {
    let text = format!(
        "team = \"t\"\n\n[[rules]]\nname = \"a\"\norder = 10\n{JIRA}\n[[rules]]\nname = \"b\"\norder = 10\n{JIRA}"
    );
    let e = errors(&[("t.toml", &text)]);
    // Line 14 is `order = 10` of the second rule.
    assert_has(
        &e,
        "t.toml:14: rules[1] (`b`): order 10 is already used by rule `a` at line 3",
    );
}

#[test]
fn terminal_rule_stops_evaluation_and_non_terminal_lets_later_rules_match() {
    let hi = r#"SeverityLabel = [{ Value = "HIGH", Comparison = "EQUALS" }]"#;
    let terminal = load(&[
        ("a.toml", &team_file("a", "first", 1, "", hi)),
        ("b.toml", &team_file("b", "second", 2, "", hi)),
    ]);
    assert_eq!(routes(&terminal, &finding()), ["a/first"]);

    let open = load(&[
        (
            "a.toml",
            &team_file("a", "first", 1, "terminal = false", hi),
        ),
        ("b.toml", &team_file("b", "second", 2, "", hi)),
    ]);
    assert_eq!(routes(&open, &finding()), ["a/first", "b/second"]);

    // A terminal rule that does not match does not stop anything.
    let crit = r#"SeverityLabel = [{ Value = "CRITICAL", Comparison = "EQUALS" }]"#;
    let skip = load(&[
        ("a.toml", &team_file("a", "first", 1, "", crit)),
        ("b.toml", &team_file("b", "second", 2, "", hi)),
    ]);
    assert_eq!(routes(&skip, &finding()), ["b/second"]);
}

#[test]
fn a_team_gets_one_route_per_finding_from_its_first_matching_rule() {
    let text = format!(
        "team = \"t\"\n\
         [[rules]]\nname = \"broad\"\norder = 1\nterminal = false\n{JIRA}\n\
         [[rules]]\nname = \"narrow\"\norder = 2\n\
         [rules.criteria]\nProductName = [{{ Value = \"GuardDuty\", Comparison = \"EQUALS\" }}]\n{JIRA}"
    );
    let other = team_file("u", "also", 3, "", "");
    let m = load(&[("t.toml", &text), ("u.toml", &other)]);
    // `narrow` matches too but t already has a route; being terminal it still stops u.
    assert_eq!(routes(&m, &finding()), ["t/broad"]);
    let m2 = load(&[
        (
            "t.toml",
            &text.replace("order = 2", "order = 2\nterminal = false"),
        ),
        ("u.toml", &other),
    ]);
    assert_eq!(routes(&m2, &finding()), ["t/broad", "u/also"]);
}

#[test]
fn date_range_criteria_use_the_mapping_clock() {
    // Fixed clock: 2026-11-28T10:00Z. The finding was created 25 hours earlier.
    let one = r#"CreatedAt = [{ DateRange = { Value = 1, Unit = "DAYS" } }]"#;
    let two = r#"CreatedAt = [{ DateRange = { Value = 2, Unit = "DAYS" } }]"#;
    let m = load(&[
        ("a.toml", &team_file("a", "fresh", 1, "", one)),
        ("b.toml", &team_file("b", "recent", 2, "", two)),
    ]);
    assert_eq!(routes(&m, &finding()), ["b/recent"]);
}

// ---------------------------------------------------------------------------------------------
// Errors: file:line, all of them
// ---------------------------------------------------------------------------------------------

#[test]
fn errors_of_every_file_are_reported_together_with_file_and_line() {
    let e = match mapping::load(&fixture("broken")) {
        Ok(_) => panic!("broken fixtures must not load"),
        Err(e) => e,
    };
    let text = e.to_string();
    assert_eq!(e.0.len(), 5, "{text}");
    assert_has(&text, "alpha.toml:2: unknown key `owner`");
    assert_has(&text, "alpha.toml:7: rules[0]: unknown field `prio`");
    assert_has(
        &text,
        "alpha.toml:19: rules[1].jira.summary: template error: syntax error",
    );
    assert_has(
        &text,
        "beta.toml:5: rules[0]: invalid type: string \"first\", expected i64",
    );
    assert_has(
        &text,
        "beta.toml:13: rules[1]: unknown variant `STARTS_WITH`",
    );
    // One error per line, each `path:line: message`, sorted by file then line.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[0].contains("alpha.toml:2:"));
    assert!(lines[4].contains("beta.toml:13:"));
    let first = &e.0[0];
    assert_eq!(first.line, Some(2));
    assert!(first.file.ends_with("alpha.toml"));
}

#[test]
fn unknown_keys_are_rejected_everywhere() {
    let e = errors(&[(
        "t.toml",
        r#"team = "t"

[defaults]
on_resolve = "close"

[[rules]]
name = "r"
order = 1
[rules.criteria]
Severity = [{ Value = "HIGH", Comparison = "EQUALS" }]
[rules.jira]
project = "P"
issue_type = "Bug"
summary = "s"
"#,
    )]);
    assert_has(&e, "t.toml:4: defaults: unknown field `on_resolve`");
    assert_has(&e, "t.toml:10: rules[0]: unknown field `Severity`");

    let e = errors(&[(
        "t.toml",
        "team = \"t\"\n[[rules]]\nname = \"r\"\norder = 1\n[rules.jira]\nproject = \"P\"\nissue_type = \"Bug\"\nsummary = \"s\"\nassignee = \"me\"\n",
    )]);
    assert_has(&e, "t.toml:9: rules[0]: unknown field `assignee`");
}

#[test]
fn wrong_types_and_bad_values_are_rejected() {
    let e = errors(&[(
        "t.toml",
        r#"team = 7
[[rules]]
name = "r"
order = 1
terminal = "yes"
[rules.jira]
project = "P"
issue_type = "Bug"
summary = "s"

[[rules]]
name = "q"
order = 2
on_resolved = "delete"
[rules.jira]
project = "P"
issue_type = "Bug"
summary = "s"
labels = "one"
"#,
    )]);
    assert_has(&e, "t.toml:1: `team` must be a string, not integer");
    assert_has(
        &e,
        "t.toml:5: rules[0]: invalid type: string \"yes\", expected a boolean",
    );
    assert_has(
        &e,
        "t.toml:19: rules[1]: invalid type: string \"one\", expected a sequence",
    );
    assert!(
        !e.contains("missing `team"),
        "a mistyped team is not also missing:\n{e}"
    );

    let e = errors(&[(
        "u.toml",
        &team_file(
            "u",
            "r",
            1,
            "on_resolved = \"delete\"\non_recurrence = \"reopen\"",
            "",
        ),
    )]);
    assert_has(
        &e,
        "u.toml:6: rules[0]: unknown variant `delete`, expected one of `close`, `comment`, `ignore`",
    );
}

#[test]
fn template_syntax_errors_name_file_and_line_inside_multiline_templates() {
    let text = r#"team = "t"

[[rules]]
name = "r"
order = 1
[rules.jira]
project = "P"
issue_type = "Bug"
summary = "ok"
description = '''
first line
second line {{ finding.title
third line
'''
"#;
    let e = errors(&[("t.toml", text)]);
    // The template's first line is file line 11; minijinja stumbles on its 3rd line, where the
    // unclosed `{{` meets the next identifier.
    assert_has(
        &e,
        "t.toml:13: rules[0].jira.description: template error: syntax error",
    );
    let e = errors(&[(
        "v.toml",
        &text.replace("{{ finding.title", "{{ finding.title }"),
    )]);
    assert_has(
        &e,
        "v.toml:12: rules[0].jira.description: template error: syntax error: unexpected `}`",
    );
    // A field template inside `fields` too.
    let e = errors(&[(
        "u.toml",
        "team = \"u\"\n[[rules]]\nname = \"r\"\norder = 1\n[rules.jira]\nproject = \"P\"\nissue_type = \"Bug\"\nsummary = \"s\"\nfields = { customfield_1 = { value = \"{% if %}\" } }\n",
    )]);
    assert_has(
        &e,
        "u.toml:9: rules[0].jira.fields.customfield_1.value: template error",
    );
}

#[test]
fn a_rule_needs_exactly_one_ticket_section() {
    let e = errors(&[(
        "t.toml",
        r#"team = "t"
[[rules]]
name = "none"
order = 1

[[rules]]
name = "both"
order = 2
[rules.jira]
project = "P"
issue_type = "Bug"
summary = "s"
[rules.servicenow]
short_description = "s"
"#,
    )]);
    assert_has(
        &e,
        "t.toml:2: rules[0] (`none`): needs a [rules.jira] or [rules.servicenow] table",
    );
    assert_has(
        &e,
        "t.toml:6: rules[1] (`both`): has both [rules.jira] and [rules.servicenow]",
    );
}

#[test]
fn target_must_be_a_known_connection_of_the_sections_kind() {
    let e = errors(&[(
        "t.toml",
        r#"team = "t"
[[rules]]
name = "mismatch"
order = 1
target = "servicenow"
[rules.jira]
project = "P"
issue_type = "Bug"
summary = "s"

[[rules]]
name = "unknown"
order = 2
target = "github"
[rules.servicenow]
short_description = "s"
"#,
    )]);
    assert_has(
        &e,
        "t.toml:5: rules[0] (`mismatch`): target `servicenow` is a ServiceNow connection but the rule has a [rules.jira] table",
    );
    assert_has(
        &e,
        "t.toml:14: rules[1] (`unknown`): unknown target `github`",
    );

    // A default target that does not fit the rule's section is reported at the rule.
    let e = errors(&[(
        "d.toml",
        "team = \"d\"\n[defaults]\ntarget = \"jira\"\n[[rules]]\nname = \"sn\"\norder = 1\n[rules.servicenow]\nshort_description = \"s\"\n",
    )]);
    assert_has(
        &e,
        "d.toml:4: rules[0] (`sn`): target `jira` (from [defaults]) is a Jira connection",
    );
}

#[test]
fn target_is_inferred_from_the_section() {
    let m = load(&[(
        "t.toml",
        "team = \"t\"\n[[rules]]\nname = \"r\"\norder = 1\n[rules.servicenow]\nshort_description = \"{{ finding.title }}\"\n",
    )]);
    let r = rule(&m, "t", "r");
    assert_eq!(r.target, "servicenow");
    assert_eq!(r.ticket.kind(), TargetKind::ServiceNow);
    match &r.ticket {
        TicketSpec::ServiceNow(s) => assert_eq!(s.table, "incident"),
        other => panic!("{other:?}"),
    }
    assert!(r.terminal);
    assert!(r.notify_on_create);
    assert_eq!(r.on_resolved, OnResolved::Close);
    assert_eq!(r.on_recurrence, OnRecurrence::Reopen);
}

#[test]
fn defaults_merge_into_rules_with_rule_values_winning() {
    let m = load(&[(
        "t.toml",
        r#"team = "t"

[defaults]
terminal = false
on_resolved = "comment"
severity_override = "high"
status_map = { "Done" = "RESOLVED", "Won't Do" = "SUPPRESSED" }
[defaults.jira]
project = "DEF"
issue_type = "Bug"
summary = "default summary"
labels = ["security-hub"]
fields = { components = [{ name = "Security" }], customfield_1 = "default" }

[[rules]]
name = "override"
order = 1
terminal = true
status_map = { "Done" = "SUPPRESSED" }
[rules.jira]
project = "OWN"
labels = ["own-{{ team }}"]
fields = { customfield_1 = "own", customfield_2 = 5 }

[[rules]]
name = "inherit"
order = 2
[rules.jira]
"#,
    )]);
    let own = rule(&m, "t", "override");
    let j = jira(own);
    assert_eq!(j.project, Template::Literal("OWN".into()));
    assert_eq!(j.issue_type, Template::Literal("Bug".into()));
    assert_eq!(j.summary, Template::Literal("default summary".into()));
    let labels: Vec<&str> = j.labels.iter().map(|l| l.source()).collect();
    assert_eq!(labels, ["security-hub", "own-{{ team }}"]);
    let keys: Vec<&str> = j.fields.keys().map(String::as_str).collect();
    assert_eq!(keys, ["components", "customfield_1", "customfield_2"]);
    assert_eq!(
        j.fields["customfield_1"],
        FieldTemplate::Text(Template::Literal("own".into()))
    );
    assert_eq!(j.fields["customfield_2"], FieldTemplate::Integer(5));
    assert!(own.terminal);
    assert_eq!(own.on_resolved, OnResolved::Comment);
    assert_eq!(
        own.severity_override,
        Some(Template::Literal("HIGH".into())),
        "a literal label is normalized"
    );
    assert_eq!(own.status_map.0["Done"], WorkflowStatus::Suppressed);
    assert_eq!(own.status_map.0["Won't Do"], WorkflowStatus::Suppressed);

    let inherit = rule(&m, "t", "inherit");
    let j = jira(inherit);
    assert_eq!(j.project, Template::Literal("DEF".into()));
    assert!(!inherit.terminal);
    assert_eq!(inherit.status_map.0["Done"], WorkflowStatus::Resolved);
    let labels: Vec<&str> = j.labels.iter().map(|l| l.source()).collect();
    assert_eq!(labels, ["security-hub"]);
    assert_eq!(
        j.fields["components"],
        FieldTemplate::Array(vec![FieldTemplate::Table(BTreeMap::from([(
            "name".to_owned(),
            FieldTemplate::Text(Template::Literal("Security".into()))
        )]))])
    );
}

#[test]
fn required_ticket_keys_are_checked_after_merging_defaults() {
    let e = errors(&[(
        "t.toml",
        "team = \"t\"\n[defaults.jira]\nproject = \"P\"\n[[rules]]\nname = \"r\"\norder = 1\n[rules.jira]\n\n[[rules]]\nname = \"s\"\norder = 2\n[rules.servicenow]\ndescription = \"d\"\n",
    )]);
    assert_has(
        &e,
        "t.toml:7: rules[0] (`r`): [rules.jira] needs `issue_type`, `summary`",
    );
    assert_has(
        &e,
        "t.toml:12: rules[1] (`s`): [rules.servicenow] needs `short_description`",
    );
}

#[test]
fn rule_level_values_are_validated() {
    let e = errors(&[(
        "t.toml",
        r#"team = "t"
[[rules]]
name = "r"
order = 1
severity_override = "SEVERE"
status_map = { "Done" = "FINISHED", "category:closed" = "RESOLVED" }
[rules.jira]
project = "P"
issue_type = "Bug"
summary = "s"
labels = ["has space"]
fields = { summary = "again" }

[[rules]]
name = "r"
order = 2
[rules.servicenow]
table = "incident?sysparm_query=x"
short_description = "s"
"#,
    )]);
    assert_has(
        &e,
        "t.toml:5: rules[0].severity_override: \"SEVERE\" is not a severity label",
    );
    assert_has(
        &e,
        "t.toml:6: rules[0].status_map: \"Done\" maps to \"FINISHED\"",
    );
    assert_has(&e, "t.toml:6: rules[0].status_map: \"category:closed\"");
    assert_has(&e, "t.toml:11: rules[0].jira.labels[0]: Jira labels cannot");
    assert_has(
        &e,
        "t.toml:12: rules[0].jira.fields.summary: `summary` is set by",
    );
    assert_has(
        &e,
        "t.toml:14: rules[1]: rule name `r` is already used at line 2",
    );
    assert_has(&e, "t.toml:18: rules[1].servicenow.table:");
}

#[test]
fn criteria_errors_point_at_the_offending_filter() {
    let criteria = "Title = [{ Value = \"x\", Comparison = \"EQUALS\" }]\n\
                    CreatedAt = [{ Start = \"last tuesday\" }]\n\
                    ResourceId = []";
    let e = errors(&[("c.toml", &team_file("c", "r", 1, "", criteria))]);
    // Lines 8-10 hold the three criteria fields.
    assert_has(
        &e,
        "c.toml:9: rules[0].criteria: \"last tuesday\" is not an RFC 3339 timestamp",
    );
    assert_has(&e, "c.toml:10: rules[0].criteria: empty filter list");
}

#[test]
fn a_templated_severity_override_is_compiled() {
    let m = load(&[(
        "t.toml",
        &team_file(
            "t",
            "r",
            1,
            "severity_override = \"{{ 'CRITICAL' if finding.account_id == '111122223333' else finding.severity }}\"",
            "",
        ),
    )]);
    let r = rule(&m, "t", "r");
    let Some(t @ Template::Compiled { .. }) = &r.severity_override else {
        panic!(
            "expected a compiled template, got {:?}",
            r.severity_override
        );
    };
    let ctx = minijinja::context! { finding => Value::from(Serde(finding())) };
    assert_eq!(m.engine.render(t, &ctx).unwrap(), "CRITICAL");
}

#[test]
fn team_names_are_unique_across_files() {
    let e = errors(&[
        ("a.toml", &team_file("payments", "x", 1, "", "")),
        ("b.toml", &team_file("payments", "y", 2, "", "")),
    ]);
    let line = e
        .lines()
        .find(|l| l.contains("b.toml:1:"))
        .unwrap_or_else(|| panic!("{e}"));
    assert!(
        line.contains("team `payments` is already defined in"),
        "{line}"
    );
    assert!(line.contains("a.toml"), "{line}");
}

#[test]
fn missing_team_and_syntax_errors_are_reported() {
    let e = errors(&[
        ("a.toml", "description = \"no team\"\n"),
        ("b.toml", "team = \"b\"\n[[rules]\nname = 1\n"),
    ]);
    assert_has(&e, "a.toml:1: missing `team");
    assert_has(&e, "b.toml:2: TOML syntax error");
}

#[test]
fn an_empty_or_missing_directory_is_an_error() {
    let empty = tempfile::tempdir().unwrap();
    let e: LoadErrors = mapping::load(empty.path()).unwrap_err();
    assert!(e.to_string().contains("no team files"), "{e}");

    let e = mapping::load(&fixture("only_context")).unwrap_err();
    assert!(e.to_string().contains("no team files"), "{e}");

    let e = mapping::load(&fixture("does-not-exist")).unwrap_err();
    assert!(e.to_string().contains("does-not-exist: cannot read"), "{e}");
}

#[test]
fn enrich_detective_is_a_rule_option_with_a_default_and_unknown_enrichers_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let base = "team = \"t\"\n[defaults]\nenrich = { detective = true }\n[[rules]]\nname = \"a\"\norder = 1\n[rules.jira]\nproject = \"P\"\nissue_type = \"Bug\"\nsummary = \"s\"\n[[rules]]\nname = \"b\"\norder = 2\nenrich = { detective = false }\n[rules.jira]\nproject = \"P\"\nissue_type = \"Bug\"\nsummary = \"s\"\n";
    std::fs::write(dir.path().join("t.toml"), base).unwrap();
    let m = findings_bridge::mapping::load(dir.path()).unwrap();
    assert!(
        m.rule("t", "a").unwrap().enrich_detective,
        "inherited from [defaults]"
    );
    assert!(!m.rule("t", "b").unwrap().enrich_detective, "the rule wins");

    std::fs::write(
        dir.path().join("t.toml"),
        base.replace(
            "enrich = { detective = false }",
            "enrich = { guardduty = true }",
        ),
    )
    .unwrap();
    let err = findings_bridge::mapping::load(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("t.toml:") && err.contains("guardduty"),
        "{err}"
    );

    let shipped = findings_bridge::mapping::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/mappings"
    )))
    .unwrap();
    assert!(
        shipped
            .rule("security", "critical-watch")
            .unwrap()
            .enrich_detective
    );
}
