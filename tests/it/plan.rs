//! `findings-bridge plan` as CI runs it: the real binary, a base mapping set
//! (`tests/fixtures/plan/base`), new sets derived from it in a temporary directory, and findings
//! from `tests/fixtures` in every input form. Exit codes: 0 no change, 2 changes, 1 an error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_findings-bridge");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The findings of the tests: two CRITICAL (alpha's), two failed controls (beta's, both HIGH),
/// one HIGH detection nobody takes in the base set.
const FINDINGS: [&str; 5] = [
    "inspector-cve-eventbridge.json",
    "bare-ocsf.json",
    "bare-asff.json",
    "cspm-control-failed.json",
    "guardduty-eventbridge.json",
];

fn base() -> PathBuf {
    Path::new(ROOT).join("tests/fixtures/plan/base")
}

fn fixture(name: &str) -> Value {
    let bytes = std::fs::read(Path::new(ROOT).join("tests/fixtures").join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The test findings as NDJSON, one message per line.
fn ndjson() -> String {
    FINDINGS
        .iter()
        .map(|n| format!("{}\n", fixture(n)))
        .collect()
}

/// The test findings as bare findings (what `get-findings` lists).
fn bare_findings() -> Vec<Value> {
    FINDINGS
        .iter()
        .flat_map(|n| {
            let v = fixture(n);
            match v.pointer("/detail/findings") {
                Some(Value::Array(findings)) => findings.clone(),
                _ => vec![v],
            }
        })
        .collect()
}

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    /// A copy of the base set named `name`, with `edits` (file, from, to) applied; `to` = None
    /// removes the file.
    fn set(&self, name: &str, edits: &[(&str, &str, Option<&str>)]) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        for file in ["alpha.toml", "beta.toml"] {
            let mut text = std::fs::read_to_string(base().join(file))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let mut keep = true;
            for (target, from, to) in edits {
                if *target != file {
                    continue;
                }
                match to {
                    None => keep = false,
                    Some(to) => {
                        assert!(text.contains(from), "{file} holds {from:?}");
                        text = text.replace(from, to);
                    }
                }
            }
            if keep {
                std::fs::write(dir.join(file), text).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        dir
    }
}

/// `plan --mappings new --findings findings`, with `--base` and `--json` when asked, and `stdin`
/// on standard input.
fn plan(
    base: Option<&Path>,
    new: &Path,
    findings: &str,
    json: bool,
    stdin: Option<&str>,
) -> Output {
    let mut args = vec![
        "plan".to_owned(),
        "--mappings".to_owned(),
        path(new).to_owned(),
    ];
    if let Some(base) = base {
        args.extend(["--base".to_owned(), path(base).to_owned()]);
    }
    args.extend(["--findings".to_owned(), findings.to_owned()]);
    if json {
        args.push("--json".to_owned());
    }
    let mut child = Command::new(BIN)
        .args(&args)
        .current_dir(ROOT)
        .env_remove("BRIDGE_MAPPINGS")
        .env_remove("JIRA_API_VERSION")
        .env_remove("JIRA_PAT")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

fn path(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", p.display()))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(o), stderr(o)))
}

/// The JSON report's entry for `team/rule`.
fn rule<'a>(report: &'a Value, team: &str, rule: &str) -> &'a Value {
    report["rules"]
        .as_array()
        .and_then(|rules| {
            rules
                .iter()
                .find(|r| r["team"] == team && r["rule"] == rule)
        })
        .unwrap_or_else(|| panic!("no {team}/{rule} in {report}"))
}

/// A new set made from the base by one edit of `file` (`to` = None removes the file), planned
/// with `--json` against the base on the NDJSON findings: such a change exits 2. The sandbox
/// keeps the set and `findings.ndjson` for [`text_plan`].
fn plan_edit(file: &str, from: &str, to: Option<&str>) -> (Sandbox, PathBuf, Value) {
    let sandbox = Sandbox::new();
    let new = sandbox.set("new", &[(file, from, to)]);
    let input = sandbox.write("findings.ndjson", &ndjson());
    let out = plan(Some(&base()), &new, path(&input), true, None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let report = json(&out);
    (sandbox, new, report)
}

/// The text plan of [`plan_edit`]'s set.
fn text_plan(sandbox: &Sandbox, new: &Path) -> String {
    let input = sandbox.path("findings.ndjson");
    stdout(&plan(Some(&base()), new, path(&input), false, None))
}

#[test]
fn the_same_set_is_no_change_and_exits_0() {
    let sandbox = Sandbox::new();
    let input = sandbox.write("findings.ndjson", &ndjson());
    let copy = sandbox.set("same", &[]);
    let out = plan(Some(&base()), &copy, path(&input), false, None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("no changes: the 5 finding(s)"), "{text}");
    assert!(text.contains("(4 ticket(s))"), "{text}");
    assert!(text.contains("unrouted: 1 finding(s)"), "{text}");
}

#[test]
fn widened_criteria_gain_findings() {
    let (sandbox, widened, report) = plan_edit(
        "alpha.toml",
        r#"SeverityLabel = [{ Value = "CRITICAL", Comparison = "EQUALS" }]"#,
        Some(
            r#"SeverityLabel = [{ Value = "CRITICAL", Comparison = "EQUALS" }, { Value = "HIGH", Comparison = "EQUALS" }]"#,
        ),
    );
    let alpha = rule(&report, "alpha", "critical");
    assert_eq!(alpha["gained"]["count"], 3, "{alpha}");
    assert_eq!(alpha["lost"]["count"], 0, "{alpha}");
    assert_eq!(alpha["unchanged"], 2, "{alpha}");
    let gained: Vec<&str> = alpha["gained"]["examples"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["finding_id"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        gained.iter().any(|id| id.contains("guardduty")),
        "{gained:?}"
    );
    assert_eq!(rule(&report, "beta", "controls")["unchanged"], 2);
    assert_eq!(report["findings_changed"], 3);
    assert_eq!(report["findings_unrouted"], 0);

    let text = text_plan(&sandbox, &widened);
    assert!(
        text.contains("alpha/critical: 3 gained, 0 lost, 0 changed, 2 unchanged"),
        "{text}"
    );
    assert!(
        !text.contains("beta/controls"),
        "unchanged rules are left out: {text}"
    );
    assert!(
        text.contains("changes: 3 of 5 finding(s): 3 ticket(s) gained, 0 lost"),
        "{text}"
    );
}

#[test]
fn a_removed_team_file_loses_its_findings() {
    let (_, _, report) = plan_edit("beta.toml", "", None);
    let beta = rule(&report, "beta", "controls");
    assert_eq!(beta["lost"]["count"], 2, "{beta}");
    assert_eq!(beta["gained"]["count"], 0, "{beta}");
    assert_eq!(report["totals"]["lost"], 2);
    assert_eq!(report["totals"]["unchanged"], 2);
}

#[test]
fn a_finding_that_moves_between_rules_of_a_team_is_lost_under_one_and_gained_under_the_other() {
    let (_, _, report) = plan_edit(
        "alpha.toml",
        "name = \"critical\"",
        Some("name = \"severe\""),
    );
    assert_eq!(rule(&report, "alpha", "critical")["lost"]["count"], 2);
    assert_eq!(rule(&report, "alpha", "severe")["gained"]["count"], 2);
    assert_eq!(report["totals"]["changed"], 0);
}

#[test]
fn a_template_change_shows_the_field_with_its_old_and_new_value() {
    let (sandbox, retitled, report) = plan_edit(
        "alpha.toml",
        r#"summary = "[{{ finding.severity }}] {{ finding.title }}""#,
        Some(r#"summary = "{{ finding.title }} ({{ finding.severity }})""#),
    );
    let alpha = rule(&report, "alpha", "critical");
    assert_eq!(alpha["changed"]["count"], 2, "{alpha}");
    let first = &alpha["changed"]["examples"][0];
    assert!(
        first["marker"]
            .as_str()
            .is_some_and(|m| m.starts_with("fb-")),
        "{first}"
    );
    assert_eq!(
        first["fields"],
        serde_json::json!([{
            "field": "summary",
            "old": "\"[CRITICAL] CVE-2024-3094 - xz, xz-libs\"",
            "new": "\"CVE-2024-3094 - xz, xz-libs (CRITICAL)\"",
        }]),
        "{first}"
    );

    // The new value is exactly what `render` puts in the ticket.
    let render = Command::new(BIN)
        .args(["render", "--mappings", path(&retitled)])
        .arg(Path::new(ROOT).join("tests/fixtures/inspector-cve-eventbridge.json"))
        .env_remove("JIRA_API_VERSION")
        .env_remove("JIRA_PAT")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let line: Value = serde_json::from_slice(&render.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        line["routes"][0]["payload"]["fields"]["summary"].to_string(),
        first["fields"][0]["new"].as_str().unwrap_or_default()
    );

    let text = text_plan(&sandbox, &retitled);
    assert!(
        text.contains(
            "summary: \"[CRITICAL] CVE-2024-3094 - xz, xz-libs\" → \"CVE-2024-3094 - xz, xz-libs (CRITICAL)\""
        ),
        "{text}"
    );
}

#[test]
fn a_template_that_fails_under_the_new_set_is_a_change_and_counted_as_failing() {
    let (_, _, report) = plan_edit(
        "beta.toml",
        "assignment_group = \"Beta Platform\"",
        Some("assignment_group = \"{{ finding.no_such_field }}\""),
    );
    let beta = rule(&report, "beta", "controls");
    assert_eq!(beta["failing"]["count"], 2, "{beta}");
    assert_eq!(beta["changed"]["count"], 2, "{beta}");
    let fields = &beta["changed"]["examples"][0]["fields"];
    assert!(
        fields.as_array().is_some_and(|f| f
            .iter()
            .any(|f| f["field"] == "(error)" && f["old"].is_null())),
        "{fields}"
    );
}

#[test]
fn without_a_base_every_ticket_is_gained() {
    let sandbox = Sandbox::new();
    let input = sandbox.write("findings.ndjson", &ndjson());
    let out = plan(None, &base(), path(&input), true, None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let report = json(&out);
    assert!(report["base"].is_null());
    assert_eq!(report["totals"]["gained"], 4);
    assert_eq!(report["totals"]["lost"], 0);
    assert_eq!(report["totals"]["unchanged"], 0);
}

#[test]
fn get_findings_output_is_read() {
    let sandbox = Sandbox::new();
    let listing = serde_json::json!({ "Findings": bare_findings(), "NextToken": "next-page" });
    let input = sandbox.write("get-findings.json", &listing.to_string());
    let out = plan(None, &base(), path(&input), true, None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["findings"], 5);
    assert_eq!(report["malformed"]["count"], 0);
    assert_eq!(report["totals"]["gained"], 4);
}

/// An EventBridge event of `detail_type` carrying `findings`.
fn event(detail_type: &str, findings: Vec<Value>) -> Value {
    serde_json::json!({
        "version": "0",
        "id": "6f1e3c1a-0000-4000-8000-000000000000",
        "detail-type": detail_type,
        "source": "aws.securityhub",
        "account": "111122223333",
        "time": "2026-11-27T09:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": { "findings": findings },
    })
}

#[test]
fn every_input_form_gives_the_same_plan() {
    let bare = bare_findings();
    let (ocsf, asff): (Vec<Value>, Vec<Value>) = bare
        .iter()
        .cloned()
        .partition(|f| f.get("finding_info").is_some());
    let events_of_several = format!(
        "{}\n{}",
        event("Security Hub Findings - Imported", asff),
        event("Findings Imported V2", ocsf)
    );
    let pretty_concatenated: String = FINDINGS
        .iter()
        .map(|n| {
            std::fs::read_to_string(Path::new(ROOT).join("tests/fixtures").join(n))
                .unwrap_or_else(|e| panic!("{n}: {e}"))
        })
        .collect();
    let pages = format!(
        "{}\n{}",
        serde_json::json!({ "Findings": bare[..2], "NextToken": "page-2" }),
        serde_json::json!({ "Findings": bare[2..] })
    );
    let forms = [
        ("NDJSON", ndjson()),
        ("a JSON array", Value::from(bare.clone()).to_string()),
        ("pretty-printed events, concatenated", pretty_concatenated),
        ("events of several findings", events_of_several),
        ("get-findings pages", pages),
    ];
    // Everything but the examples, whose order follows the input's.
    let counts = |report: &Value| -> Value {
        let mut report = report.clone();
        report["malformed"]["examples"] = Value::Null;
        if let Some(rules) = report["rules"].as_array_mut() {
            for rule in rules {
                for kind in ["gained", "lost", "changed", "failing"] {
                    rule[kind]["examples"] = Value::Null;
                }
            }
        }
        report
    };
    let mut expected = None;
    for (form, text) in forms {
        let out = plan(None, &base(), "-", true, Some(&text));
        assert_eq!(out.status.code(), Some(2), "{form}: {}", stderr(&out));
        let report = counts(&json(&out));
        assert_eq!(report["findings"], 5, "{form}: {report}");
        assert_eq!(report["malformed"]["count"], 0, "{form}: {report}");
        match &expected {
            None => expected = Some(report),
            Some(expected) => assert_eq!(&report, expected, "{form}"),
        }
    }
}

#[test]
fn a_directory_is_read_file_by_file_in_name_order() {
    let sandbox = Sandbox::new();
    let lines: Vec<String> = ndjson().lines().map(str::to_owned).collect();
    // alpha's two findings, the second in the first file by name.
    sandbox.write(
        "dir/b.ndjson",
        &format!("{}\n{}", lines[0], lines[2..].join("\n")),
    );
    sandbox.write("dir/a.json", &lines[1]);
    // Hidden files and subdirectories are not findings.
    sandbox.write("dir/.swp", "not json");
    sandbox.write("dir/sub/c.json", "not json");
    let copy = sandbox.set("same", &[]);
    let out = plan(Some(&base()), &copy, path(&sandbox.path("dir")), true, None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["findings"], 5, "{report}");
    assert_eq!(report["malformed"]["count"], 0, "{report}");
    assert_eq!(report["changed"], false);
    let out = plan(None, &copy, path(&sandbox.path("dir")), true, None);
    let report = json(&out);
    let gained: Vec<&str> = rule(&report, "alpha", "critical")["gained"]["examples"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["finding_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(gained.len(), 2, "{report}");
    assert!(gained[0].contains("7c8d9e0f1a"), "a.json first: {gained:?}");
    assert!(
        gained[1].contains("0a1b2c3d4e"),
        "then b.ndjson: {gained:?}"
    );

    // A bad message is named with its file.
    sandbox.write("dir/c.json", "{\"detail-type\": \"nope\"}");
    let out = plan(None, &copy, path(&sandbox.path("dir")), true, None);
    let report = json(&out);
    let problem = report["malformed"]["examples"][0]
        .as_str()
        .unwrap_or_default();
    assert!(problem.contains("c.json: "), "{problem}");

    let empty = sandbox.path("empty");
    std::fs::create_dir_all(&empty).unwrap_or_else(|e| panic!("{e}"));
    let out = plan(None, &base(), path(&empty), false, None);
    assert_error(&out, "holds no files");
}

#[test]
fn standard_input_is_read() {
    let out = plan(None, &base(), "-", true, Some(&ndjson()));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(json(&out)["findings"], 5);
}

#[test]
fn a_malformed_line_is_counted_and_reported_with_its_place_and_the_rest_is_planned() {
    let mut lines: Vec<String> = ndjson().lines().map(str::to_owned).collect();
    lines.insert(
        1,
        r#"{"detail-type": "Security Hub Findings - Imported", "detail": {}}"#.into(),
    );
    let input = lines.join("\n");
    let out = plan(Some(&base()), &base(), "-", false, Some(&input));
    // The sample's problem is reported, not a change of the mapping set.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("malformed: 1 finding(s) or message(s) could not be decoded"),
        "{text}"
    );
    assert!(
        text.contains("message 2 (line 2): detail.findings: missing"),
        "{text}"
    );
    assert!(text.contains("no changes: the 5 finding(s)"), "{text}");
}

#[test]
fn a_mapping_set_that_does_not_load_is_an_error_naming_it() {
    let broken = Path::new(ROOT).join("tests/mapping_fixtures/broken");
    let input = Path::new(ROOT).join("tests/fixtures/bare-asff.json");
    let out = plan(Some(&broken), &base(), path(&input), false, None);
    assert_error(
        &out,
        &format!(
            "--base {}: the old mapping set does not load",
            broken.display()
        ),
    );
    let err = stderr(&out);
    assert!(err.contains("alpha.toml:"), "{err}");
    assert!(!err.contains("--mappings"), "{err}");

    let out = plan(None, &broken, path(&input), false, None);
    assert_error(&out, "the new mapping set does not load");
}

#[test]
fn unreadable_or_broken_input_is_an_error() {
    let out = plan(None, &base(), "no/such/file", false, None);
    assert_error(&out, "reading no/such/file");

    let items = bare_findings();
    let broken = format!("[{}, {} {}]", items[0], items[1], items[2]);
    let out = plan(None, &base(), "-", false, Some(&broken));
    assert_error(&out, "reading standard input: invalid JSON at line 1");
}

/// `out` is an error: exit code 1, nothing on standard output, `expected` in the message.
fn assert_error(out: &Output, expected: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert!(stdout(out).is_empty(), "{}", stdout(out));
    assert!(stderr(out).contains(expected), "{}", stderr(out));
}

#[test]
fn the_json_report_has_its_documented_shape() {
    let (_, _, report) = plan_edit(
        "alpha.toml",
        r#"priority = "Highest""#,
        Some(r#"priority = "High""#),
    );
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(
        keys(&report),
        [
            "base",
            "changed",
            "findings",
            "findings_changed",
            "findings_unrouted",
            "malformed",
            "mappings",
            "rules",
            "totals"
        ]
    );
    assert_eq!(report["changed"], true);
    assert_eq!(report["base"], path(&base()));
    assert_eq!(
        keys(&report["totals"]),
        ["changed", "failing", "gained", "lost", "unchanged"]
    );
    assert_eq!(keys(&report["malformed"]), ["count", "examples"]);
    let alpha = rule(&report, "alpha", "critical");
    assert_eq!(
        keys(alpha),
        [
            "changed",
            "failing",
            "gained",
            "lost",
            "rule",
            "team",
            "unchanged"
        ]
    );
    assert_eq!(
        alpha["changed"]["examples"][0]["fields"][0],
        serde_json::json!({
            "field": "priority",
            "old": "{\"name\":\"Highest\"}",
            "new": "{\"name\":\"High\"}",
        })
    );
    assert_eq!(
        keys(&alpha["changed"]["examples"][0]),
        ["fields", "finding_id", "marker"]
    );
}

#[test]
fn another_group_key_is_another_ticket() {
    let grouped = |by: &str| {
        format!(
            "order = 20\ngroup_by = \"{by}\"\ngroup_summary = \"Controls\"\ngroup_description = \"{{{{ group.count }}}}\""
        )
    };
    let sandbox = Sandbox::new();
    let by_control = grouped("{{ finding.compliance.control_id }}");
    let by_account = grouped("{{ finding.account_id }}");
    let old = sandbox.set("old", &[("beta.toml", "order = 20", Some(&by_control))]);
    let new = sandbox.set("new", &[("beta.toml", "order = 20", Some(&by_account))]);
    let input = sandbox.write("findings.ndjson", &ndjson());
    let out = plan(Some(&old), &new, path(&input), true, None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let report = json(&out);
    let beta = rule(&report, "beta", "controls");
    assert_eq!(beta["changed"]["count"], 2, "{beta}");
    let fields: Vec<&str> = beta["changed"]["examples"][0]["fields"]
        .as_array()
        .map(|f| f.iter().filter_map(|c| c["field"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(fields, ["(group)", "correlation_id"], "{beta}");

    // The same key from another template is no change.
    let same_key = grouped("{{ finding.compliance.control_id | trim }}");
    let again = sandbox.set("again", &[("beta.toml", "order = 20", Some(&same_key))]);
    let out = plan(Some(&old), &again, path(&input), true, None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}
