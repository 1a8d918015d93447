//! The offline commands as a user runs them: exit codes, stdout/stderr, and the `render` output
//! contract (one JSON object per finding with `finding_id`, `schema`, `routes[]`).

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_findings-bridge");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(ROOT)
        .env_remove("BRIDGE_MAPPINGS")
        .env_remove("JIRA_API_VERSION")
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_accepts_the_shipped_mappings() {
    let out = run(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("all valid"), "{}", stdout(&out));
}

#[test]
fn check_reports_every_error_with_file_and_line_and_exits_1() {
    let out = run(&["check", "--mappings", "tests/mapping_fixtures/broken"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() >= 2,
        "errors from both files are reported: {err}"
    );
    for line in &lines {
        let (location, _) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("`file:line: message`, got {line:?}"));
        let (file, number) = location
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("no line number in {line:?}"));
        assert!(file.ends_with(".toml"), "{line}");
        assert!(number.parse::<usize>().is_ok(), "{line}");
    }
    assert!(stdout(&out).is_empty());
}

#[test]
fn check_on_a_missing_directory_is_an_error() {
    let out = run(&["check", "--mappings", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no/such/dir"), "{}", stderr(&out));
}

#[test]
fn render_prints_one_object_per_finding_with_exact_payloads() {
    let out = run(&[
        "render",
        "--now",
        "2026-11-28T10:00:00Z",
        "tests/fixtures/array.json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let objects: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect();
    assert!(objects.len() >= 2, "{text}");
    for o in &objects {
        assert!(o["finding_id"].is_string(), "{o}");
        assert!(matches!(o["schema"].as_str(), Some("asff" | "ocsf")), "{o}");
        let routes = o["routes"]
            .as_array()
            .expect("routes is an array, maybe empty");
        for r in routes {
            for key in ["team", "rule", "target", "marker"] {
                assert!(r[key].is_string(), "route lacks {key}: {r}");
            }
            let marker = r["marker"].as_str().unwrap_or_default();
            assert!(marker.starts_with("fb-") && marker.len() == 35, "{marker}");
            assert!(r["payload"].is_object(), "{r}");
        }
    }
}

#[test]
fn render_reads_standard_input() {
    let mut child = Command::new(BIN)
        .args(["render", "-"])
        .current_dir(ROOT)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let input = std::fs::read(Path::new(ROOT).join("tests/fixtures/bare-asff.json")).unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &input).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out).lines().count(), 1);
}

#[test]
fn render_of_malformed_input_names_the_problem_and_exits_1() {
    for (fixture, expected) in [
        ("malformed-truncated.json", "invalid JSON"),
        ("malformed-severity-string.json", "Severity"),
        ("malformed-missing-id.json", "Id"),
    ] {
        let out = run(&["render", &format!("tests/fixtures/{fixture}")]);
        assert_eq!(out.status.code(), Some(1), "{fixture}");
        assert!(
            stderr(&out).contains(expected),
            "{fixture}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty(), "{fixture}");
    }
}

#[test]
fn render_for_data_center_emits_wiki_text_instead_of_adf() {
    let cloud = run(&["render", "tests/fixtures/guardduty-eventbridge.json"]);
    let dc = Command::new(BIN)
        .args(["render", "tests/fixtures/guardduty-eventbridge.json"])
        .current_dir(ROOT)
        .env("JIRA_API_VERSION", "2")
        .output()
        .unwrap();
    let first = |o: &Output| -> serde_json::Value {
        let line = stdout(o)
            .lines()
            .next()
            .map(str::to_owned)
            .unwrap_or_default();
        serde_json::from_str(&line).expect("json")
    };
    let jira_route = |v: &serde_json::Value| -> serde_json::Value {
        v["routes"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["target"] == "jira").cloned())
            .expect("a Jira route for the GuardDuty fixture")
    };
    let cloud_desc = &jira_route(&first(&cloud))["payload"]["fields"]["description"];
    let dc_desc = &jira_route(&first(&dc))["payload"]["fields"]["description"];
    assert_eq!(cloud_desc["type"], "doc", "Cloud gets ADF");
    assert!(dc_desc.is_string(), "Data Center gets wiki text: {dc_desc}");
}

#[test]
fn secrets_are_not_accepted_as_flags() {
    let out = run(&["run", "--jira-api-token", "secret", "--queue-url", "x"]);
    assert_eq!(out.status.code(), Some(2), "clap rejects unknown flags");
    assert!(!stderr(&out).is_empty());
}

#[test]
fn reconcile_refuses_fix_with_dry_run_and_needs_a_ticket_system() {
    let both = run(&["reconcile", "--fix", "--dry-run"]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    assert!(stderr(&both).contains("--dry-run"), "{}", stderr(&both));

    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite:{}", dir.path().join("r.db").display());
    let out = Command::new(BIN)
        .args(["reconcile", "--store", &store])
        .current_dir(ROOT)
        .env_clear()
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no ticket system configured"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "no report without a listing");
}
