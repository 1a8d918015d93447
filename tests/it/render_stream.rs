//! `render` over long inputs: a JSON array and `get-findings` output read element by element,
//! NDJSON and concatenated events read value by value, `--jobs N` keeping input order, and what a
//! bad element does (it is reported with its index, the others are still printed, the command
//! exits 1 at the end).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use findings_bridge::commands::offline;
use findings_bridge::mapping::Mappings;
use findings_bridge::render::RenderOptions;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_findings-bridge");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn mappings() -> Mappings {
    let now = DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("{e}"));
    findings_bridge::mapping::load_with_clock(
        &Path::new(ROOT).join("mappings"),
        Arc::new(move || now),
    )
    .unwrap_or_else(|e| panic!("shipped mappings load: {e}"))
}

fn fixture(name: &str) -> Value {
    let bytes = std::fs::read(Path::new(ROOT).join("tests/fixtures").join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `n` bare findings (ASFF and OCSF alternating) with unique ids.
fn findings(n: usize) -> Vec<Value> {
    let asff = fixture("bare-asff.json");
    let ocsf = fixture("bare-ocsf.json");
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                let mut f = asff.clone();
                f["Id"] = Value::from(format!("{}-{i}", f["Id"].as_str().unwrap_or_default()));
                f
            } else {
                let mut f = ocsf.clone();
                let uid = f["finding_info"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                f["finding_info"]["uid"] = Value::from(format!("{uid}-{i}"));
                f
            }
        })
        .collect()
}

fn render(m: &Mappings, input: &[u8], jobs: usize) -> (String, Result<usize, String>) {
    let mut out = Vec::new();
    let result = offline::render_stream(m, input, &RenderOptions::default(), jobs, &mut out);
    (String::from_utf8(out).unwrap_or_default(), result)
}

#[test]
fn ndjson_and_concatenated_events_render_like_each_event_alone() {
    let m = mappings();
    let events = [
        "guardduty-eventbridge.json",
        "ocsf-detection.json",
        "sns-wrapped.json",
        "cspm-control-failed.json",
        "array.json",
    ];
    let mut alone = String::new();
    let mut ndjson = String::new();
    let mut concatenated = String::new();
    for name in events {
        let text = std::fs::read_to_string(Path::new(ROOT).join("tests/fixtures").join(name))
            .unwrap_or_else(|e| panic!("{e}"));
        let (out, result) = render(&m, text.as_bytes(), 1);
        assert!(result.is_ok(), "{name}: {result:?}");
        alone.push_str(&out);
        ndjson.push_str(&fixture(name).to_string());
        ndjson.push('\n');
        concatenated.push_str(&text);
    }
    for (what, input) in [("ndjson", &ndjson), ("concatenated", &concatenated)] {
        let (out, result) = render(&m, input.as_bytes(), 1);
        assert_eq!(result, Ok(alone.lines().count()), "{what}");
        assert_eq!(out, alone, "{what}");
    }
}

#[test]
fn jobs_keep_the_output_in_input_order() {
    let m = mappings();
    let input = serde_json::to_vec(&findings(700)).unwrap_or_default();
    let (one, result) = render(&m, &input, 1);
    assert_eq!(result, Ok(700));
    for jobs in [2, 3] {
        let (many, result) = render(&m, &input, jobs);
        assert_eq!(result, Ok(700), "--jobs {jobs}");
        assert!(many == one, "--jobs {jobs}: output differs from --jobs 1");
    }
    let ids: Vec<String> = one
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_default()["finding_id"].to_string())
        .collect();
    assert!(ids[0].ends_with("-0\""), "{}", ids[0]);
    assert!(ids[699].ends_with("-699\""), "{}", ids[699]);
}

#[test]
fn a_bad_array_element_is_reported_by_index_and_the_others_are_printed() {
    let m = mappings();
    let mut items = findings(4);
    items[2]["Severity"] = Value::from("HIGH");
    let input = serde_json::to_vec(&items).unwrap_or_default();
    for jobs in [1, 2] {
        let (out, result) = render(&m, &input, jobs);
        assert_eq!(out.lines().count(), 3, "--jobs {jobs}");
        let problems = result.expect_err("a bad element fails the run");
        assert!(
            problems.starts_with("decode: [2].Severity: expected an object"),
            "{problems}"
        );
    }
}

#[test]
fn a_bad_message_in_ndjson_names_its_number_and_line() {
    let m = mappings();
    let good = fixture("bare-asff.json").to_string();
    let input = format!("{good}\n{{\"detail-type\": \"nope\"}}\n{good}\n");
    let (out, result) = render(&m, input.as_bytes(), 1);
    assert_eq!(out.lines().count(), 2);
    let problems = result.expect_err("a bad message fails the run");
    assert!(
        problems.starts_with("decode: message 2 (line 2): "),
        "{problems}"
    );
}

#[test]
fn broken_structure_stops_after_the_findings_before_it() {
    let m = mappings();
    let items = findings(2);
    let input = format!("[{}, {} {}]", items[0], items[1], items[0]);
    let (out, result) = render(&m, input.as_bytes(), 1);
    assert_eq!(out.lines().count(), 2);
    let problems = result.expect_err("broken JSON fails the run");
    assert!(problems.contains("invalid JSON at line 1"), "{problems}");
}

#[test]
fn the_command_prints_the_good_findings_and_exits_1_for_a_bad_element() {
    let mut items = findings(3);
    items[2]["Severity"] = Value::from("HIGH");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("findings.json");
    std::fs::write(&path, serde_json::to_vec(&items).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    for jobs in ["1", "2"] {
        let out = Command::new(BIN)
            .args(["render", "--jobs", jobs])
            .arg(&path)
            .current_dir(ROOT)
            .env_remove("BRIDGE_MAPPINGS")
            .env_remove("JIRA_API_VERSION")
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("findings-bridge: decode: [2].Severity"),
            "{err}"
        );
    }
}

#[test]
fn get_findings_output_renders_like_the_array_of_its_findings() {
    let m = mappings();
    let items = findings(6);
    let array = serde_json::to_string(&items).unwrap_or_default();
    let (expected, result) = render(&m, array.as_bytes(), 1);
    assert_eq!(result, Ok(6));
    // All pages merged (the AWS CLI's default), and page by page as `--no-paginate` prints them.
    let merged = format!("{{\"Findings\": {array}, \"NextToken\": null}}");
    let pages = format!(
        "{{\"Findings\": {}, \"NextToken\": \"page-2\"}}\n{{\"Findings\": {}}}\n",
        serde_json::to_string(&items[..4]).unwrap_or_default(),
        serde_json::to_string(&items[4..]).unwrap_or_default()
    );
    for (what, input) in [("merged", &merged), ("pages", &pages)] {
        for jobs in [1, 2] {
            let (out, result) = render(&m, input.as_bytes(), jobs);
            assert_eq!(result, Ok(6), "{what}, --jobs {jobs}");
            assert!(out == expected, "{what}, --jobs {jobs}: {out}");
        }
    }
}

#[test]
fn a_bad_get_findings_element_is_reported_by_its_path_and_the_others_are_printed() {
    let m = mappings();
    let mut items = findings(4);
    items[2]["Severity"] = Value::from("HIGH");
    let input = format!(
        "{{\"Findings\": {}, \"NextToken\": null}}",
        serde_json::to_string(&items).unwrap_or_default()
    );
    let (out, result) = render(&m, input.as_bytes(), 1);
    assert_eq!(out.lines().count(), 3);
    let problems = result.expect_err("a bad element fails the run");
    assert!(
        problems.starts_with("decode: Findings[2].Severity: expected an object"),
        "{problems}"
    );
}
