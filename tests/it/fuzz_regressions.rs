//! Inputs the fuzzers (fuzz/, `scripts/fuzz`) found, minimised, replayed on every `cargo test`.
//!
//! Each file under `tests/fuzz_regressions/decode/` is an SQS message body, each file under
//! `tests/fuzz_regressions/mapping_load/` a team file. They go through exactly the checks the fuzz
//! targets run (`fuzz/src/lib.rs`), and the tests below pin what each one must now produce.

#[path = "../../fuzz/src/lib.rs"]
mod checks;

use std::path::{Path, PathBuf};

use findings_bridge::finding::decode;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()).unwrap_or_else(|e| panic!("{e}")))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes =
                std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

fn input(target: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Loads `data` as the only team file of a fresh directory, through the fuzz checks.
fn load_mapping(data: &[u8]) -> Result<findings_bridge::mapping::Mappings, String> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    checks::check_mapping(dir.path(), data).map_err(|e| e.to_string())
}

#[test]
fn every_decode_regression_passes_the_fuzz_checks() {
    let inputs = inputs("decode");
    assert!(!inputs.is_empty(), "tests/fuzz_regressions/decode is empty");
    for (path, bytes) in inputs {
        println!("{}", path.display());
        checks::check_decode(&bytes);
    }
}

#[test]
fn every_mapping_regression_passes_the_fuzz_checks() {
    let inputs = inputs("mapping_load");
    assert!(
        !inputs.is_empty(),
        "tests/fuzz_regressions/mapping_load is empty"
    );
    for (path, bytes) in inputs {
        println!("{}", path.display());
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let _ = checks::check_mapping(dir.path(), &bytes);
    }
}

/// Found by the decode fuzzer: a long number in a finding came back one ulp off after a round
/// trip, so `raw` (which templates print) was not what Security Hub sent and a replayed finding
/// differed from the original.
#[test]
fn long_numbers_in_raw_survive_a_round_trip_exactly() {
    let bytes = input("decode", "long-number-in-raw.json");
    let findings = decode(&bytes).unwrap_or_else(|e| panic!("decode: {e}"));
    let [finding] = findings.as_slice() else {
        panic!("expected one finding, got {}", findings.len())
    };
    let printed = finding.raw.to_string();
    let reparsed: serde_json::Value =
        serde_json::from_str(&printed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reparsed, finding.raw);
    // Rust's own float parsing is correctly rounded: the value the source text denotes.
    let digits = format!("10{}", "1".repeat(86));
    let exact: f64 = digits.parse().unwrap_or(f64::NAN);
    assert_eq!(finding.raw["X"].as_f64(), Some(exact));
}

/// Fails the mapping fuzz check "errors point at a line of the file" (found with a hand-made
/// input while writing that check): a template with `\n` escapes in a one-line TOML string
/// reported its syntax error at "value line + template line", past the end of the file.
#[test]
fn template_errors_in_escaped_strings_point_at_the_value_line() {
    let bytes = input("mapping_load", "template-error-line-past-end.toml");
    let errors = match load_mapping(&bytes) {
        Ok(m) => panic!("a broken template must not load ({} rules)", m.rules.len()),
        Err(e) => e,
    };
    let line = errors
        .lines()
        .find(|l| l.contains("rules[0].jira.summary: template error"))
        .unwrap_or_else(|| panic!("no summary template error in:\n{errors}"));
    assert!(line.contains("team.toml:8: "), "{line}");
}

/// The other side of the same fix: in a `'''` string every template line is a file line, so the
/// error still points inside the template.
#[test]
fn template_errors_in_multiline_literals_keep_their_inner_line() {
    let src = "team = \"t\"\n[[rules]]\nname = \"r\"\norder = 1\n[rules.jira]\nproject = \"P\"\n\
               issue_type = \"Bug\"\nsummary = '''\nfirst\nsecond {{ x | }}\nthird'''\n";
    let errors = match load_mapping(src.as_bytes()) {
        Ok(m) => panic!("a broken template must not load ({} rules)", m.rules.len()),
        Err(e) => e,
    };
    assert!(errors.contains("team.toml:10: "), "{errors}");
}
