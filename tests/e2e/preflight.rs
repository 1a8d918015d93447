//! `findings-bridge preflight` end to end (issue 16): the real binary against the simulator's
//! Jira (Cloud and Data Center) and ServiceNow, set up the way a test needs them — a good set-up
//! passes, and a required field the rule does not set, an issue type the project lacks, a
//! column the table lacks and a permission the account lacks each fail with their row and exit
//! 1. Preflight only reads: nothing is ever created. No moto needed.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use findings_bridge_sim::{Setup, SimConfig, SimHandle, Simulator};
use serde_json::Value;
use tempfile::TempDir;

/// Two Jira rules on one create screen (its createmeta is read once for both).
const APPSEC: &str = r#"
team = "appsec"
[defaults.jira]
project = "SEC"
issue_type = "Bug"
labels = ["security-hub"]
fields = { components = [{ name = "Security" }], customfield_10042 = "{{ finding.account_id }}" }

[[rules]]
name = "critical"
order = 10
[rules.jira]
summary = "[{{ finding.severity }}] {{ finding.title }}"
description = "{{ finding.description }}"
priority = "{{ {'CRITICAL': 'Highest', 'HIGH': 'High'}[finding.severity] | default('Medium') }}"
fields = { duedate = "{{ now() | add_days(7) | date }}" }

[[rules]]
name = "everything-else"
order = 20
[rules.jira]
summary = "{{ finding.title }}"
priority = "Low"
"#;

const PLATFORM: &str = r#"
team = "platform"
[defaults.servicenow]
assignment_group = "Cloud Platform"
fields = { category = "security" }

[[rules]]
name = "controls"
order = 30
[rules.servicenow]
table = "incident"
short_description = "{{ finding.title }}"
urgency = "{{ 1 if finding.severity == 'CRITICAL' else 2 }}"
impact = "2"
# A column the instance added to incident (the simulator's default set-up has it).
fields = { u_aws_account = "{{ finding.account_id }}" }

[[rules]]
name = "exposure"
order = 40
[rules.servicenow]
table = "sn_si_incident"
short_description = "{{ finding.title }}"
fields = { subcategory = "exposure" }
"#;

struct Bench {
    sim: SimHandle,
    dir: TempDir,
}

impl Bench {
    async fn start(setup: Setup) -> Bench {
        let sim = Simulator::start(
            SimConfig {
                setup,
                ..SimConfig::default()
            },
            "127.0.0.1:0",
        )
        .await
        .expect("simulator starts on a free port");
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir(dir.path().join("mappings")).expect("mapping directory");
        let bench = Bench { sim, dir };
        bench.write("appsec.toml", APPSEC);
        bench.write("platform.toml", PLATFORM);
        bench
    }

    fn write(&self, file: &str, toml: &str) {
        std::fs::write(self.dir.path().join("mappings").join(file), toml).expect("team file");
    }

    /// `findings-bridge preflight ARGS` with Jira Cloud (or Data Center with `pat`) and
    /// ServiceNow on the simulator, plus `extra`; nothing from the test's own environment.
    async fn preflight(&self, pat: bool, extra: &[(&str, &str)], args: &[&str]) -> Output {
        let sim = self.sim.base_url.as_str();
        let mappings = self.dir.path().join("mappings").display().to_string();
        let mut env = vec![
            ("JIRA_URL", sim),
            ("SERVICENOW_URL", sim),
            ("SERVICENOW_USERNAME", "sim"),
            ("SERVICENOW_PASSWORD", "sim-password"),
            ("BRIDGE_MAPPINGS", mappings.as_str()),
            ("BRIDGE_LOG_FORMAT", "json"),
            ("RUST_LOG", "warn"),
        ];
        if pat {
            env.push(("JIRA_PAT", "sim-pat"));
        } else {
            env.extend([
                ("JIRA_EMAIL", "sim@example.com"),
                ("JIRA_API_TOKEN", "sim-token"),
            ]);
        }
        env.extend(extra.iter().copied());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_findings-bridge"));
        cmd.env_clear()
            .arg("preflight")
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Off the runtime's threads, so the simulator keeps answering.
        tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("command task")
            .expect("findings-bridge starts")
    }

    /// `preflight --json`: its exit code and report.
    async fn report(&self, pat: bool, extra: &[(&str, &str)]) -> (Option<i32>, Value, String) {
        let out = self.preflight(pat, extra, &["--json"]).await;
        let text = describe(&out);
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("--json prints one JSON document ({e}):\n{text}"));
        (out.status.code(), report, text)
    }

    /// Preflight only reads.
    fn assert_nothing_created(&self) {
        assert!(self.sim.state.jira_issues().is_empty(), "no Jira issue");
        assert!(
            self.sim.state.servicenow_records().is_empty(),
            "no ServiceNow record"
        );
        let writes: Vec<(String, u64)> = self
            .sim
            .state
            .stats()
            .requests
            .into_iter()
            .filter(|(endpoint, _)| !endpoint.starts_with("GET "))
            .collect();
        assert!(writes.is_empty(), "only GETs reach the systems: {writes:?}");
    }
}

fn describe(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The rows of `check` (its JSON name) about `subject`.
fn rows<'r>(report: &'r Value, check: &str, subject: &str) -> Vec<&'r Value> {
    report["checks"]
        .as_array()
        .expect("a list of checks")
        .iter()
        .filter(|r| r["check"] == check && r["subject"] == subject)
        .collect()
}

fn failures(report: &Value) -> Vec<&Value> {
    report["checks"]
        .as_array()
        .expect("a list of checks")
        .iter()
        .filter(|r| r["verdict"] == "fail")
        .collect()
}

#[tokio::test]
async fn a_good_setup_passes_on_jira_cloud_and_servicenow_reading_each_screen_once() {
    let bench = Bench::start(Setup::default()).await;
    let out = bench
        .preflight(
            false,
            &[
                ("JIRA_WEBHOOK_SECRET", "hush"),
                ("BRIDGE_HTTP_ADDR", "0.0.0.0:8080"),
            ],
            &[],
        )
        .await;
    let text = describe(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let header = stdout.lines().next().unwrap_or_default();
    for column in ["RULE", "SYSTEM", "CHECK", "VERDICT", "FIX"] {
        assert!(header.contains(column), "{text}");
    }
    assert!(stdout.contains("appsec/critical"), "{text}");
    assert!(stdout.contains("platform/exposure"), "{text}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("-") && l.contains("webhook /webhooks/jira on 0.0.0.0:8080")),
        "{text}"
    );
    assert!(
        stdout.contains("failed, 0 skipped") && stdout.contains(" 0 failed"),
        "{text}"
    );

    // Two rules share SEC/Bug: its issue types once, its 116 fields in three pages once.
    let state = &bench.sim.state;
    assert_eq!(
        state.request_count("GET /rest/api/3/issue/createmeta/{project}/issuetypes"),
        1
    );
    assert_eq!(
        state.request_count("GET /rest/api/3/issue/createmeta/{project}/issuetypes/{id}"),
        3
    );
    assert_eq!(state.request_count("GET /rest/api/3/project/SEC"), 1);
    assert_eq!(state.request_count("GET /api/now/table/sys_user_group"), 1);
    bench.assert_nothing_created();
}

#[tokio::test]
async fn data_center_reports_as_json() {
    let bench = Bench::start(Setup::default()).await;
    let (code, report, text) = bench.report(true, &[]).await;
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["ok"], true, "{text}");
    let checks = report["checks"].as_array().expect("checks");
    let summary = &report["summary"];
    assert_eq!(
        summary["checks"].as_u64(),
        Some(checks.len() as u64),
        "{text}"
    );
    assert_eq!(summary["failed"], 0, "{text}");
    assert_eq!(
        summary["ok"].as_u64().unwrap() + summary["skipped"].as_u64().unwrap(),
        checks.len() as u64
    );
    for row in checks {
        for key in ["rule", "system", "check", "subject", "verdict", "detail"] {
            assert!(row.get(key).is_some(), "{key} in {row}");
        }
    }
    let connection = rows(&report, "connection", "jira");
    assert_eq!(
        connection[0]["detail"], "Jira REST API 2 (Data Center)",
        "{text}"
    );
    let rule = rows(&report, "jira_required_fields", "SEC/Bug");
    assert_eq!(rule[0]["rule"], "appsec/critical");
    assert!(
        rule[0]["file"].as_str().unwrap().ends_with("appsec.toml"),
        "{text}"
    );
    assert!(rule[0]["line"].as_u64().is_some(), "{text}");
    assert_eq!(
        rows(&report, "servicenow_fields", "incident")[0]["detail"],
        "columns of incident < task"
    );
    assert_eq!(
        bench
            .sim
            .state
            .request_count("GET /rest/api/2/issue/createmeta/{project}/issuetypes"),
        1
    );
    bench.assert_nothing_created();
}

#[tokio::test]
async fn a_required_field_the_rule_does_not_set_fails() {
    let bench = Bench::start(Setup {
        jira_required_fields: BTreeMap::from([(
            "SEC/Bug".to_owned(),
            vec!["customfield_10099".to_owned()],
        )]),
        ..Setup::default()
    })
    .await;
    let (code, report, text) = bench.report(false, &[]).await;
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(report["ok"], false);
    let required = rows(&report, "jira_required_fields", "SEC/Bug");
    assert_eq!(required.len(), 2, "one row per rule:\n{text}");
    for row in required {
        assert_eq!(row["verdict"], "fail", "{text}");
        assert!(
            row["detail"]
                .as_str()
                .unwrap()
                .contains("customfield_10099"),
            "{text}"
        );
        assert!(
            row["fix"]
                .as_str()
                .unwrap()
                .starts_with("add customfield_10099 to the rule's [rules.jira.fields]"),
            "{text}"
        );
    }
    assert_eq!(failures(&report).len(), 2, "nothing else fails:\n{text}");

    // The table says the same, one line per check.
    let table = bench.preflight(false, &[], &[]).await;
    assert_eq!(table.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&table.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("appsec/critical") && l.contains("required fields of SEC/Bug"))
        .unwrap_or_else(|| panic!("{}", describe(&table)));
    assert!(
        line.contains("FAIL: the create screen requires customfield_10099"),
        "{line}"
    );
    bench.assert_nothing_created();
}

#[tokio::test]
async fn an_issue_type_the_project_lacks_fails() {
    let bench = Bench::start(Setup {
        jira_missing_issue_types: vec!["SEC/Bug".to_owned()],
        ..Setup::default()
    })
    .await;
    let (code, report, text) = bench.report(false, &[]).await;
    assert_eq!(code, Some(1), "{text}");
    let row = rows(&report, "jira_issue_type", "SEC/Bug")[0];
    assert_eq!(row["verdict"], "fail", "{text}");
    assert_eq!(
        row["detail"], "project SEC offers Task, Story, Epic",
        "{text}"
    );
    assert!(
        row["fix"]
            .as_str()
            .unwrap()
            .contains("add issue type \"Bug\" to project SEC"),
        "{text}"
    );
    assert!(
        rows(&report, "jira_required_fields", "SEC/Bug").is_empty(),
        "no screen to check"
    );
    bench.assert_nothing_created();
}

#[tokio::test]
async fn a_field_the_servicenow_table_lacks_fails() {
    let bench = Bench::start(Setup::default()).await;
    bench.write(
        "platform.toml",
        &PLATFORM.replace("subcategory = \"exposure\"", "u_exposure_kind = \"public\""),
    );
    let (code, report, text) = bench.report(false, &[]).await;
    assert_eq!(code, Some(1), "{text}");
    let row = rows(&report, "servicenow_fields", "sn_si_incident")[0];
    assert_eq!(row["rule"], "platform/exposure");
    assert_eq!(row["verdict"], "fail", "{text}");
    assert_eq!(
        row["detail"], "u_exposure_kind not a column of sn_si_incident or task",
        "{text}"
    );
    let fix = row["fix"].as_str().unwrap();
    assert!(
        fix.starts_with(
            "create column u_exposure_kind on sn_si_incident, or remove it from the rule in "
        ) && fix.contains("platform.toml:"),
        "{text}"
    );
    assert_eq!(failures(&report).len(), 1, "the other rule passes:\n{text}");
    bench.assert_nothing_created();
}

#[tokio::test]
async fn a_permission_the_account_lacks_fails() {
    let bench = Bench::start(Setup {
        jira_missing_permissions: BTreeMap::from([(
            "SEC".to_owned(),
            vec!["CREATE_ISSUES".to_owned()],
        )]),
        ..Setup::default()
    })
    .await;
    let (code, report, text) = bench.report(false, &[]).await;
    assert_eq!(code, Some(1), "{text}");
    let row = rows(&report, "jira_permissions", "SEC")[0];
    assert_eq!(row["verdict"], "fail", "{text}");
    assert_eq!(row["detail"], "the account lacks CREATE_ISSUES");
    assert_eq!(
        row["fix"],
        "give the account CREATE_ISSUES on project SEC (its permission scheme)"
    );
    // Jira hides the create screen from such an account: nothing to judge there.
    assert_eq!(
        rows(&report, "jira_issue_type", "SEC/Bug")[0]["verdict"],
        "skip",
        "{text}"
    );
    bench.assert_nothing_created();
}

#[tokio::test]
async fn the_shipped_mapping_files_pass_against_the_default_setup() {
    let bench = Bench::start(Setup::default()).await;
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/mappings");
    let (code, report, text) = bench.report(true, &[("BRIDGE_MAPPINGS", shipped)]).await;
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        report["summary"]["skipped"], 0,
        "every value is listed: {text}"
    );
    bench.assert_nothing_created();
}
