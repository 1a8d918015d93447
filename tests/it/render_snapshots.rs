//! Snapshots of what `render` produces for every well-formed fixture with the shipped mappings,
//! for both Jira flavours: a change to decoding, routing, templates, ADF/wiki conversion or the
//! payload builders shows up here as a reviewable diff (`cargo insta review`).

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use findings_bridge::commands::offline;
use findings_bridge::render::{JiraFlavor, RenderOptions};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn fixed_now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn render_fixture(name: &str, jira: JiraFlavor) -> Vec<serde_json::Value> {
    let now = fixed_now();
    let mappings = findings_bridge::mapping::load_with_clock(
        &Path::new(ROOT).join("mappings"),
        Arc::new(move || now),
    )
    .expect("shipped mappings load");
    let input = std::fs::read(Path::new(ROOT).join("tests/fixtures").join(name)).unwrap();
    let mut out = Vec::new();
    offline::render(&mappings, &input, &RenderOptions { jira }, &mut out)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn well_formed_fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("tests/fixtures"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && !n.starts_with("malformed-"))
        .collect();
    names.sort();
    names
}

/// The snapshots keep the folder and names they had when this file was a test binary of its own
/// (`tests/snapshots/render_snapshots__cloud__array.snap`), instead of insta's default for a
/// module of `tests/it` (`tests/it/snapshots/it__render_snapshots__…`).
fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings
}

#[test]
fn rendered_payloads_for_jira_cloud() {
    let _settings = snapshot_settings().bind_to_scope();
    for name in well_formed_fixtures() {
        let rendered = render_fixture(&name, JiraFlavor::Cloud);
        insta::assert_json_snapshot!(
            format!(
                "render_snapshots__cloud__{}",
                name.trim_end_matches(".json")
            ),
            rendered
        );
    }
}

#[test]
fn rendered_payloads_for_jira_data_center() {
    let _settings = snapshot_settings().bind_to_scope();
    for name in well_formed_fixtures() {
        let rendered = render_fixture(&name, JiraFlavor::DataCenter);
        insta::assert_json_snapshot!(
            format!(
                "render_snapshots__datacenter__{}",
                name.trim_end_matches(".json")
            ),
            rendered
        );
    }
}

#[test]
fn every_fixture_is_snapshotted_and_routes_somewhere_or_nowhere_deliberately() {
    // Guard against a fixture silently decoding to nothing.
    for name in well_formed_fixtures() {
        let rendered = render_fixture(&name, JiraFlavor::Cloud);
        assert!(
            !rendered.is_empty(),
            "{name} decodes to at least one finding"
        );
    }
}
