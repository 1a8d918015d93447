//! The properties the fuzz targets check. `tests/it/fuzz_regressions.rs` includes this very file
//! with `#[path]`, so a minimised crash replayed by `cargo test` fails for exactly the reason the
//! fuzzer reported.
//!
//! Every check panics on failure: that is how libFuzzer learns about a bug, and how a test fails.

use std::path::Path;
use std::sync::Arc;

use findings_bridge::finding::{Finding, Schema, decode};
use findings_bridge::mapping::{self, Mappings, template::Clock};
use serde_json::{Value, json};

/// Decodes one SQS message body. A panic in the decoder would kill the worker on one poisoned
/// message (and again on every redelivery), so any input must give findings or a `DecodeError`.
pub fn check_decode(data: &[u8]) {
    match decode(data) {
        Ok(findings) => {
            for finding in &findings {
                check_finding(finding);
            }
        }
        Err(err) => {
            // What an operator reads in the DLQ.
            assert!(
                !err.message.is_empty(),
                "a decode error must say what is wrong (path {:?})",
                err.path
            );
            let shown = err.to_string();
            assert!(shown.ends_with(&err.message), "{shown:?}");
        }
    }
}

fn check_finding(finding: &Finding) {
    assert!(
        !finding.id.trim().is_empty(),
        "a finding without an id cannot be deduplicated"
    );
    assert!(finding.severity_score <= 100, "{}", finding.severity_score);
    if let Err(e) = serde_json::to_value(finding) {
        panic!("finding does not serialize for templates: {e}");
    }

    // Replay: the finding's own JSON, wrapped in an event of its schema carrying its region (the
    // only thing an envelope lends a finding), must decode to exactly the same finding, or a
    // redelivered or replayed finding would be a different one.
    let detail_type = match finding.schema {
        Schema::Asff => "Security Hub Findings - Imported",
        Schema::Ocsf => "Findings Imported V2",
    };
    let mut event = json!({
        "source": "aws.securityhub",
        "detail-type": detail_type,
        "detail": { "findings": [finding.raw.clone()] },
    });
    if !finding.region.is_empty()
        && let Value::Object(map) = &mut event
    {
        map.insert("region".to_owned(), Value::String(finding.region.clone()));
    }
    let again = match decode(event.to_string().as_bytes()) {
        Ok(again) => again,
        Err(e) => panic!("raw of finding {:?} does not decode again: {e}", finding.id),
    };
    assert_eq!(again.len(), 1, "replay of one finding gave {}", again.len());
    assert_eq!(&again[0], finding, "replay changed the finding");

    // What an operator feeds `render`: the bare finding. Its schema is guessed from its keys, so a
    // finding carrying keys of both schemas may read as the other one, and one carrying envelope
    // keys reads as an envelope; otherwise it must keep its identity.
    let looks_like_envelope = ["detail-type", "detail", "Message", "Findings"]
        .iter()
        .any(|k| finding.raw.get(k).is_some());
    if !looks_like_envelope
        && let Ok(bare) = decode(finding.raw.to_string().as_bytes())
        && let [one] = bare.as_slice()
        && one.schema == finding.schema
    {
        assert_eq!(one.id, finding.id, "bare replay changed the id");
        assert_eq!(
            one.write_back, finding.write_back,
            "bare replay changed the write-back id"
        );
    }
}

/// A fixed `now()`, so the same input always loads the same way (libFuzzer re-runs inputs to
/// minimise them).
pub fn fixed_clock() -> Clock {
    Arc::new(|| {
        chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap_or(chrono::DateTime::UNIX_EPOCH)
    })
}

/// Writes `data` as `dir/team.toml` (the only file there) and loads `dir`. Mapping files are
/// written by people in many teams and loaded by `check` in CI and at start-up: whatever they
/// contain, loading must end in compiled mappings or in errors an owner can act on, which means
/// naming the file and a line that exists in it. Returns the load result for further checks.
pub fn check_mapping(dir: &Path, data: &[u8]) -> Result<Mappings, mapping::LoadErrors> {
    let file = dir.join("team.toml");
    if let Err(e) = std::fs::write(&file, data) {
        panic!("cannot write {}: {e}", file.display());
    }
    // A span at the very end of a file that ends in a newline is on the line after it.
    let last_line = data.iter().filter(|b| **b == b'\n').count() + 1;

    let result = mapping::load_with_clock(dir, fixed_clock());
    match &result {
        Ok(mappings) => {
            assert_eq!(mappings.teams.len(), 1, "one file, one team");
            assert!(!mappings.teams[0].name.trim().is_empty());
            for rule in &mappings.rules {
                assert_eq!(rule.file, file);
                assert!(
                    (1..=last_line).contains(&rule.line),
                    "rule {} at line {} of a {last_line}-line file",
                    rule.name,
                    rule.line
                );
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a failed load must say why");
            for error in &errors.0 {
                assert_eq!(error.file, file, "error does not name the file: {error}");
                if let Some(line) = error.line {
                    assert!(
                        (1..=last_line).contains(&line),
                        "error points at line {line} of a {last_line}-line file: {error}"
                    );
                }
                let shown = error.to_string();
                assert!(shown.starts_with(&file.display().to_string()), "{shown:?}");
            }
        }
    }
    result
}
