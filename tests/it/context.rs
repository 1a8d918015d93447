//! Business context (`mappings/_context.toml`) as an operator meets it: which application a
//! finding belongs to, routing on `ApplicationName` / `ApplicationCriticality`,
//! `context.application` in templates, a severity override that follows the application, load
//! errors with `file:line`, `check`, and the shipped payments scenario through `render`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use findings_bridge::commands::offline;
use findings_bridge::finding::{
    Compliance, Finding, RecordState, Remediation, Resource, Schema, Severity, WorkflowStatus,
    WriteBackId,
};
use findings_bridge::mapping::context::{Application, Criticality, Inventory};
use findings_bridge::mapping::criteria::Criteria;
use findings_bridge::mapping::template::Clock;
use findings_bridge::mapping::{self, Mappings};
use findings_bridge::render::{RenderOptions, render_route, template_context};
use serde_json::Value;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers

fn fixed_clock() -> Clock {
    let t = DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now());
    Arc::new(move || t)
}

/// A MEDIUM finding on one EC2 instance in account 111122223333, no tags.
fn finding() -> Finding {
    Finding {
        id: "arn:aws:inspector2:us-east-1:111122223333:finding/f1".into(),
        schema: Schema::Asff,
        product_arn: "arn:aws:securityhub:us-east-1::product/aws/inspector".into(),
        product_name: "Inspector".into(),
        company_name: "Amazon".into(),
        generator_id: "AWSInspector".into(),
        account_id: "111122223333".into(),
        region: "us-east-1".into(),
        title: "CVE-2023-48795 - openssh-server".into(),
        description: "Terrapin".into(),
        severity: Severity::Medium,
        severity_score: 40,
        types: vec!["Software and Configuration Checks/Vulnerabilities/CVE".into()],
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
        first_observed_at: None,
        last_observed_at: None,
        remediation: Remediation::default(),
        user_defined_fields: BTreeMap::new(),
        product_fields: BTreeMap::new(),
        console_url: "https://console.aws.amazon.com/securityhub/home".into(),
        write_back: WriteBackId::Asff {
            id: "arn:aws:inspector2:us-east-1:111122223333:finding/f1".into(),
            product_arn: "arn:aws:securityhub:us-east-1::product/aws/inspector".into(),
        },
        raw: serde_json::json!({ "Severity": { "Label": "MEDIUM" } }),
    }
}

fn with(f: impl FnOnce(&mut Finding)) -> Finding {
    let mut x = finding();
    f(&mut x);
    x
}

const INVENTORY: &str = r#"
[[applications]]
name = "payments"
owner = "payments-team"
criticality = "CRITICAL"
accounts = ["444455556666"]
resource_prefixes = ["arn:aws:ec2:us-east-1:444455556666:instance/"]
tags = { app = "payments" }

[[applications]]
name = "checkout"
owner = "checkout-team"
criticality = "HIGH"
resource_prefixes = ["arn:aws:ecr:eu-west-1:111122223333:repository/checkout-service/"]
tags = { service = "checkout-service", app = "checkout" }

[[applications]]
name = "ci-runners"
owner = "developer-productivity"
criticality = "LOW"
accounts = ["555566667777"]
"#;

fn inventory() -> Inventory {
    match Inventory::parse(Path::new("_context.toml"), INVENTORY) {
        Ok(i) => i,
        Err(e) => panic!("inventory must parse: {e:?}"),
    }
}

fn app_of(inv: &Inventory, f: &Finding) -> Option<String> {
    inv.application_for(f).map(|a| a.name.clone())
}

fn dir(files: &[(&str, &str)]) -> TempDir {
    let d = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap_or_else(|e| panic!("{name}: {e}"));
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

fn load_errors(files: &[(&str, &str)]) -> String {
    let d = dir(files);
    match mapping::load_with_clock(d.path(), fixed_clock()) {
        Ok(m) => panic!(
            "expected load errors, got {} application(s)",
            m.inventory.len()
        ),
        Err(e) => e.to_string(),
    }
}

fn assert_line(errors: &str, needle: &str) {
    assert!(
        errors.lines().any(|l| l.contains(needle)),
        "expected an error line containing {needle:?}, got:\n{errors}"
    );
}

const TEAM: &str = r#"
team = "appsec"

[[rules]]
name = "critical-apps"
order = 10
severity_override = "{{ context.application.criticality }}"
[rules.criteria]
ApplicationCriticality = [{ Value = "CRITICAL", Comparison = "EQUALS" }, { Value = "HIGH", Comparison = "EQUALS" }]
[rules.jira]
project = "SEC"
issue_type = "Bug"
summary = "[{{ finding.severity }}] {{ context.application.name }}: {{ finding.title }}"
priority = "{{ {'CRITICAL': 'Highest', 'HIGH': 'High'}[finding.severity] | default('Medium') }}"
description = "{% if context.application is defined %}Owner: {{ context.application.owner }}{% else %}No application{% endif %}"

[[rules]]
name = "everything-else"
order = 20
[rules.criteria]
ApplicationName = [{ Value = "payments", Comparison = "NOT_EQUALS" }, { Value = "checkout", Comparison = "NOT_EQUALS" }]
[rules.jira]
project = "SEC"
issue_type = "Task"
summary = "{{ finding.title }}"
description = "{% if context.application is defined %}Owner: {{ context.application.owner }}{% else %}No application{% endif %}"
"#;

// ---------------------------------------------------------------------------------------------
// Inventory matching

#[test]
fn an_application_is_found_by_the_findings_account() {
    let inv = inventory();
    let f = with(|f| f.account_id = "555566667777".into());
    assert_eq!(app_of(&inv, &f).as_deref(), Some("ci-runners"));
}

#[test]
fn an_application_is_found_by_the_account_in_a_resource_arn() {
    // The finding was reported in another account, but its resource lives in the CI account.
    let inv = inventory();
    let f = with(|f| f.resources[0].id = "arn:aws:iam::555566667777:role/runner".into());
    assert_eq!(app_of(&inv, &f).as_deref(), Some("ci-runners"));
}

#[test]
fn an_application_is_found_by_a_resource_id_prefix() {
    let inv = inventory();
    let image = "arn:aws:ecr:eu-west-1:111122223333:repository/checkout-service/sha256:9b2f";
    let f = with(|f| {
        f.resources.push(Resource {
            kind: "AwsEcrContainerImage".into(),
            id: image.into(),
            ..Resource::default()
        })
    });
    assert_eq!(app_of(&inv, &f).as_deref(), Some("checkout"));
    // A near miss on the prefix (another repository) is no match.
    let other = with(|f| {
        f.resources[0].id = "arn:aws:ecr:eu-west-1:111122223333:repository/checkout-ui/x".into()
    });
    assert_eq!(app_of(&inv, &other), None);
}

#[test]
fn an_application_is_found_by_a_tag_with_exactly_that_value() {
    let inv = inventory();
    let tagged = |k: &str, v: &str| {
        with(|f| {
            f.resources[0].tags.insert(k.into(), v.into());
        })
    };
    assert_eq!(
        app_of(&inv, &tagged("app", "payments")).as_deref(),
        Some("payments")
    );
    // Either listed tag of an application is enough.
    assert_eq!(
        app_of(&inv, &tagged("service", "checkout-service")).as_deref(),
        Some("checkout")
    );
    assert_eq!(
        app_of(&inv, &tagged("app", "checkout")).as_deref(),
        Some("checkout")
    );
    // Same key, other value; same value, other key; case matters like in AWS.
    assert_eq!(app_of(&inv, &tagged("app", "payments-sandbox")), None);
    assert_eq!(app_of(&inv, &tagged("team", "payments")), None);
    assert_eq!(app_of(&inv, &tagged("app", "Payments")), None);
}

#[test]
fn the_first_application_in_file_order_wins() {
    let inv = inventory();
    // Matches checkout by tag and payments by account: payments is listed first.
    let both = with(|f| {
        f.account_id = "444455556666".into();
        f.resources[0]
            .tags
            .insert("service".into(), "checkout-service".into());
    });
    assert_eq!(app_of(&inv, &both).as_deref(), Some("payments"));

    // The same two entries in the other order give the other answer.
    let swapped = INVENTORY.replacen("[[applications]]", "[[placeholder]]", 1);
    let (payments, rest) = swapped
        .split_once("[[applications]]")
        .unwrap_or_else(|| panic!("two more entries"));
    let reordered = format!(
        "[[applications]]{rest}\n{}",
        payments.replace("[[placeholder]]", "[[applications]]")
    );
    let inv = match Inventory::parse(Path::new("_context.toml"), &reordered) {
        Ok(i) => i,
        Err(e) => panic!("{e:?}"),
    };
    assert_eq!(inv.applications[0].name, "checkout");
    assert_eq!(app_of(&inv, &both).as_deref(), Some("checkout"));
}

#[test]
fn a_finding_outside_every_application_has_none() {
    let inv = inventory();
    assert_eq!(app_of(&inv, &finding()), None);
    // An S3 ARN has no account field; a non-ARN resource id is compared by prefix only.
    let s3 = with(|f| f.resources[0].id = "arn:aws:s3:::444455556666-exports".into());
    assert_eq!(app_of(&inv, &s3), None);
    assert_eq!(app_of(&Inventory::default(), &finding()), None);
}

#[test]
fn parsed_applications_keep_what_the_file_says() {
    let inv = inventory();
    assert_eq!(inv.len(), 3);
    let payments = inv
        .get("payments")
        .unwrap_or_else(|| panic!("payments is listed"));
    assert_eq!(
        payments,
        &Application {
            name: "payments".into(),
            owner: "payments-team".into(),
            criticality: Criticality::Critical,
            accounts: vec!["444455556666".into()],
            resource_prefixes: vec!["arn:aws:ec2:us-east-1:444455556666:instance/".into()],
            tags: BTreeMap::from([("app".into(), "payments".into())]),
            line: 2,
        }
    );
    assert_eq!(payments.criticality.severity(), Severity::Critical);
}

// ---------------------------------------------------------------------------------------------
// Criteria

#[test]
fn application_criteria_compare_the_findings_application() {
    let inv = inventory();
    let now = Utc::now();
    let payments = inv.get("payments");
    let checkout = inv.get("checkout");
    let f = finding();
    let c = |src: &str| Criteria::from_toml(src).unwrap_or_else(|e| panic!("{src}: {e}"));

    let name = c(r#"ApplicationName = [{ Value = "pay", Comparison = "PREFIX" }]"#);
    assert!(name.matches(&f, payments, now));
    assert!(!name.matches(&f, checkout, now));

    let crit = c(
        r#"ApplicationCriticality = [{ Value = "CRITICAL", Comparison = "EQUALS" }, { Value = "HIGH", Comparison = "EQUALS" }]"#,
    );
    assert!(crit.matches(&f, payments, now));
    assert!(crit.matches(&f, checkout, now));
    assert!(!crit.matches(&f, inv.get("ci-runners"), now));

    // ANDed with the finding's own fields.
    let both = c(r#"
        ApplicationName = [{ Value = "payments", Comparison = "EQUALS" }]
        SeverityLabel = [{ Value = "HIGH", Comparison = "EQUALS" }]
    "#);
    assert!(!both.matches(&f, payments, now), "the finding is MEDIUM");
}

#[test]
fn no_application_fails_positive_and_passes_negative_application_filters() {
    let now = Utc::now();
    let f = finding();
    let c = |src: &str| Criteria::from_toml(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    for positive in [
        r#"ApplicationName = [{ Value = "payments", Comparison = "EQUALS" }]"#,
        r#"ApplicationName = [{ Value = "", Comparison = "PREFIX" }]"#,
        r#"ApplicationCriticality = [{ Value = "LOW", Comparison = "CONTAINS" }]"#,
    ] {
        assert!(!c(positive).matches(&f, None, now), "{positive}");
    }
    for negative in [
        r#"ApplicationName = [{ Value = "payments", Comparison = "NOT_EQUALS" }]"#,
        r#"ApplicationCriticality = [{ Value = "CRIT", Comparison = "PREFIX_NOT_EQUALS" }]"#,
    ] {
        assert!(c(negative).matches(&f, None, now), "{negative}");
    }
    assert!(
        Criteria::from_toml(r#"ApplicationOwner = [{ Value = "x", Comparison = "EQUALS" }]"#)
            .is_err(),
        "only name and criticality are criteria"
    );
}

#[test]
fn routing_uses_the_inventory_of_the_mapping_directory() {
    let m = load(&[("_context.toml", INVENTORY), ("appsec.toml", TEAM)]);
    let routes =
        |f: &Finding| -> Vec<String> { m.route(f).iter().map(|r| r.name.to_string()).collect() };
    let payments = with(|f| f.account_id = "444455556666".into());
    assert_eq!(routes(&payments), ["critical-apps"]);
    let ci = with(|f| f.account_id = "555566667777".into());
    assert_eq!(routes(&ci), ["everything-else"]);
    assert_eq!(routes(&finding()), ["everything-else"]);
    assert_eq!(
        m.application_for(&ci).map(|a| a.owner.as_str()),
        Some("developer-productivity")
    );
}

// ---------------------------------------------------------------------------------------------
// Templates and the severity override

#[test]
fn templates_see_the_application_and_can_tell_when_there_is_none() {
    let mut m = load(&[("_context.toml", INVENTORY), ("appsec.toml", TEAM)]);
    let probe = m
        .engine
        .compile(
            "probe.toml:1 (test)",
            "{% if context.application is defined %}{{ context.application.name }}|\
             {{ context.application.owner }}|{{ context.application.criticality }}\
             {% else %}undefined{% endif %}",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let rule = m
        .rule("appsec", "everything-else")
        .unwrap_or_else(|| panic!("rule"));
    let probe = |f: &Finding| -> String {
        let ctx = template_context(f, rule, f.severity, m.application_for(f));
        m.engine
            .render(&probe, &ctx)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(
        probe(&with(|f| f.account_id = "555566667777".into())),
        "ci-runners|developer-productivity|LOW"
    );
    assert_eq!(probe(&finding()), "undefined");

    // Through the renderer: the guarded template takes either branch.
    let render = |f: &Finding| {
        render_route(
            &m.engine,
            rule,
            f,
            m.application_for(f),
            &RenderOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let text = |v: &Value| v.to_string();
    assert!(
        text(&render(&with(|f| f.account_id = "555566667777".into())).payload)
            .contains("Owner: developer-productivity")
    );
    assert!(text(&render(&finding()).payload).contains("No application"));
}

#[test]
fn an_unguarded_application_template_fails_the_route_when_there_is_no_application() {
    // `critical-apps` assumes an application; rendered for a finding without one it is a
    // permanent error naming the problem, never a ticket with a blank in it.
    let m = load(&[("_context.toml", INVENTORY), ("appsec.toml", TEAM)]);
    let rule = m
        .rule("appsec", "critical-apps")
        .unwrap_or_else(|| panic!("rule"));
    match render_route(&m.engine, rule, &finding(), None, &RenderOptions::default()) {
        Err(e) => assert!(e.to_string().contains("undefined"), "{e}"),
        Ok(r) => panic!("expected an undefined-value error, got {:?}", r.payload),
    }
}

#[test]
fn an_override_from_the_applications_criticality_drives_priority_and_explains_itself() {
    let m = load(&[("_context.toml", INVENTORY), ("appsec.toml", TEAM)]);
    let rule = m
        .rule("appsec", "critical-apps")
        .unwrap_or_else(|| panic!("rule"));
    let render = |f: &Finding| {
        render_route(
            &m.engine,
            rule,
            f,
            m.application_for(f),
            &RenderOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };

    let payments = with(|f| f.account_id = "444455556666".into());
    let r = render(&payments);
    assert_eq!(r.severity, Severity::Critical);
    assert_eq!(
        r.payload["fields"]["priority"],
        serde_json::json!({"name": "Highest"})
    );
    assert_eq!(
        r.payload["fields"]["summary"],
        "[CRITICAL] payments: CVE-2023-48795 - openssh-server"
    );
    let note = r.severity_note.unwrap_or_default();
    assert!(note.contains("raised from MEDIUM to CRITICAL"), "{note}");
    assert!(note.contains("appsec/critical-apps"), "{note}");
    assert!(
        note.contains("application payments (criticality CRITICAL, owner payments-team)"),
        "{note}"
    );

    let checkout = with(|f| {
        f.resources[0].tags.insert("app".into(), "checkout".into());
    });
    let r = render(&checkout);
    assert_eq!(r.severity, Severity::High);
    assert_eq!(
        r.payload["fields"]["priority"],
        serde_json::json!({"name": "High"})
    );

    // An override that lands on the finding's own severity changes nothing and explains nothing.
    let already = with(|f| {
        f.account_id = "444455556666".into();
        f.severity = Severity::Critical;
    });
    let r = render(&already);
    assert_eq!(r.severity, Severity::Critical);
    assert_eq!(r.severity_note, None);

    // An application less critical than the finding lowers it, and the note says so.
    let lowered = render_route(
        &m.engine,
        rule,
        &finding(),
        inv_app(&m, "ci-runners"),
        &RenderOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lowered.severity, Severity::Low);
    let note = lowered.severity_note.unwrap_or_default();
    assert!(
        note.starts_with("Severity lowered from MEDIUM to LOW"),
        "{note}"
    );
}

fn inv_app<'a>(m: &'a Mappings, name: &str) -> Option<&'a Application> {
    let app = m.inventory.get(name);
    assert!(app.is_some(), "{name} is in the inventory");
    app
}

// ---------------------------------------------------------------------------------------------
// Load errors and `check`

#[test]
fn inventory_errors_are_reported_with_file_and_line() {
    let broken = r#"[[applications]]
name = "payments"
owner = "payments-team"
criticality = "URGENT"
accounts = ["4444-5555-6666"]

[[applications]]
name = "payments"
owner = ""
criticality = "HIGH"
resource_prefixes = [""]

[[applications]]
name = "ledger"
owner = "finance"
criticality = "LOW"

[[applications]]
name = "search"
owner = "search-team"
criticality = "LOW"
accounts = ["123456789012"]
team = "search"
"#;
    let e = load_errors(&[("_context.toml", broken), ("appsec.toml", TEAM)]);
    assert_line(
        &e,
        "_context.toml:4: applications[0] (`payments`): criticality \"URGENT\" is not one of LOW, MEDIUM, HIGH, CRITICAL",
    );
    assert_line(
        &e,
        "_context.toml:5: applications[0] (`payments`): accounts: \"4444-5555-6666\" is not a 12-digit AWS account id",
    );
    assert_line(
        &e,
        "_context.toml:8: applications[1]: application `payments` is already defined at line 1",
    );
    assert_line(
        &e,
        "_context.toml:9: applications[1] (`payments`): `owner` must not be empty",
    );
    assert_line(
        &e,
        "_context.toml:11: applications[1] (`payments`): resource_prefixes: \"\" is empty",
    );
    assert_line(
        &e,
        "_context.toml:13: applications[2] (`ledger`): nothing identifies this application",
    );
    assert_line(
        &e,
        "_context.toml:23: applications[3]: unknown field `team`",
    );
    assert_eq!(e.lines().count(), 7, "{e}");
}

#[test]
fn inventory_syntax_and_shape_errors_are_reported() {
    let e = load_errors(&[
        ("_context.toml", "[[applications]\nname = 1\n"),
        ("appsec.toml", TEAM),
    ]);
    assert_line(&e, "_context.toml:1: TOML syntax error");

    let e = load_errors(&[
        (
            "_context.toml",
            "owner = \"x\"\napplications = \"payments\"\n",
        ),
        ("appsec.toml", TEAM),
    ]);
    assert_line(&e, "_context.toml:1: unknown key `owner`");
    assert_line(
        &e,
        "_context.toml:2: `applications` must be an array of tables",
    );

    let e = load_errors(&[
        (
            "_context.toml",
            "[[applications]]\nname = \"x\"\ncriticality = \"LOW\"\naccounts = [\"123456789012\"]\n",
        ),
        ("appsec.toml", TEAM),
    ]);
    assert_line(
        &e,
        "_context.toml:1: applications[0]: missing field `owner`",
    );

    let e = load_errors(&[
        (
            "_context.toml",
            "[[applications]]\nname = \"x\"\nowner = \"o\"\ncriticality = \"LOW\"\ntags = { app = 3 }\n",
        ),
        ("appsec.toml", TEAM),
    ]);
    assert_line(
        &e,
        "_context.toml:5: applications[0]: invalid type: integer",
    );
}

#[test]
fn inventory_and_team_file_errors_come_together() {
    let e = load_errors(&[
        (
            "_context.toml",
            "[[applications]]\nname = \"x\"\nowner = \"o\"\ncriticality = \"NONE\"\naccounts = [\"123456789012\"]\n",
        ),
        ("appsec.toml", "team = \"appsec\"\nowner = \"me\"\n"),
    ]);
    assert_line(&e, "_context.toml:4:");
    assert_line(&e, "appsec.toml:2: unknown key `owner`");
}

#[test]
fn check_counts_the_inventory_and_rejects_a_broken_one() {
    let good = dir(&[("_context.toml", INVENTORY), ("appsec.toml", TEAM)]);
    let summary = offline::check(good.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        summary
            .ends_with("1 team file(s), 2 rule(s), 3 application(s) in _context.toml, all valid"),
        "{summary}"
    );

    let without = dir(&[(
        "appsec.toml",
        &TEAM.replace("ApplicationCriticality", "SeverityLabel"),
    )]);
    let summary = offline::check(without.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        summary.ends_with("1 team file(s), 2 rule(s), all valid"),
        "{summary}"
    );

    let broken = dir(&[
        (
            "_context.toml",
            "[[applications]]\nname = \"x\"\nowner = \"o\"\ncriticality = \"LOW\"\n",
        ),
        ("appsec.toml", TEAM),
    ]);
    let errors = offline::check(broken.path()).err().unwrap_or_default();
    assert_line(
        &errors,
        "_context.toml:1: applications[0] (`x`): nothing identifies",
    );
}

#[test]
fn other_underscore_files_are_still_ignored() {
    let m = load(&[
        ("_notes.toml", "this is not TOML at all ["),
        ("appsec.toml", TEAM),
    ]);
    assert!(m.inventory.is_empty());
    assert_eq!(m.inventory.file, None);
}

// ---------------------------------------------------------------------------------------------
// The shipped payments scenario

fn shipped_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")
}

#[test]
fn shipped_mappings_check_with_their_inventory() {
    let summary = offline::check(&shipped_dir()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        summary.contains("3 application(s) in _context.toml"),
        "{summary}"
    );
    let m = offline::load_mappings(&shipped_dir(), None).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = m
        .inventory
        .applications
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["payments", "checkout", "ci-runners"]);
}

#[test]
fn the_payments_scenario_renders_one_critical_servicenow_incident() {
    let now = DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .ok();
    let m = offline::load_mappings(&shipped_dir(), now).unwrap_or_else(|e| panic!("{e}"));
    let input = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inspector-medium-payments.json"),
    )
    .unwrap_or_else(|e| panic!("fixture: {e}"));
    let mut out = Vec::new();
    let n = offline::render(&m, &input, &RenderOptions::default(), &mut out)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 1);
    let line: Value = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}"));
    let routes = line["routes"].as_array().cloned().unwrap_or_default();
    assert_eq!(routes.len(), 1, "{line}");
    let route = &routes[0];
    assert_eq!(route["team"], "payments");
    assert_eq!(route["rule"], "payments-app-vulnerabilities");
    assert_eq!(route["target"], "servicenow");
    let payload = &route["payload"];
    assert_eq!(payload["urgency"], "1");
    assert_eq!(payload["impact"], "1");
    assert_eq!(payload["assignment_group"], "Payments Security");
    assert_eq!(payload["correlation_id"], route["marker"]);
    assert_eq!(
        payload["short_description"],
        "[CRITICAL] payments: CVE-2023-48795 - openssh-server, openssh-clients"
    );
    let description = payload["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("Application: payments (criticality CRITICAL, owner payments-team)"),
        "{description}"
    );
    assert!(
        description.contains("Scanner severity: MEDIUM; raised to CRITICAL by rule payments/payments-app-vulnerabilities."),
        "{description}"
    );

    // The same vulnerability on an untagged instance of an account no application claims stays
    // MEDIUM and opens nothing.
    let elsewhere = String::from_utf8_lossy(&input)
        .replace("444455556666", "999900001111")
        .replace("\"app\": \"payments\",", "");
    let mut out = Vec::new();
    offline::render(
        &m,
        elsewhere.as_bytes(),
        &RenderOptions::default(),
        &mut out,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let line: Value = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(line["routes"], serde_json::json!([]), "{line}");
}
