//! The offline commands: `check` (validate mapping files) and `render` (decode, route and render a
//! file of findings without talking to anything). Both are pure functions of their inputs so they
//! are tested directly, not through a process.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::finding;
use crate::mapping::{self, Mappings};
use crate::render::{RenderOptions, render_route};

/// What `check` found: `Ok` with a one-line summary, or every problem as `file:line: message`.
pub fn check(dir: &Path) -> Result<String, String> {
    match mapping::load(dir) {
        Ok(m) => {
            let inventory = match &m.inventory.file {
                Some(file) => format!(
                    ", {} application(s) in {}",
                    m.inventory.len(),
                    file.file_name().map_or_else(
                        || file.display().to_string(),
                        |n| n.to_string_lossy().into()
                    )
                ),
                None => String::new(),
            };
            Ok(format!(
                "{}: {} team file(s), {} rule(s){inventory}, all valid",
                dir.display(),
                m.teams.len(),
                m.rules.len()
            ))
        }
        Err(errors) => Err(errors.to_string()),
    }
}

/// Loads mappings with an optional fixed clock (`--now`), so `render` output can be reproduced.
pub fn load_mappings(dir: &Path, now: Option<DateTime<Utc>>) -> Result<Mappings, String> {
    let loaded = match now {
        Some(t) => mapping::load_with_clock(dir, Arc::new(move || t)),
        None => mapping::load(dir),
    };
    loaded.map_err(|e| e.to_string())
}

/// Decodes `input`, routes every finding and writes one JSON object per finding to `out`:
/// `{"finding_id", "schema", "routes": [{"team", "rule", "target", "marker", "payload"}]}`.
/// A decode or render error is returned as text (the CLI prints it and exits 1); findings before
/// the failing one have already been written.
pub fn render(
    mappings: &Mappings,
    input: &[u8],
    opts: &RenderOptions,
    out: &mut dyn Write,
) -> Result<usize, String> {
    let findings = finding::decode(input).map_err(|e| format!("decode: {e}"))?;
    for f in &findings {
        let mut routes = Vec::new();
        let application = mappings.application_for(f);
        for rule in mappings.route(f) {
            let rendered = render_route(&mappings.engine, rule, f, application, opts)
                .map_err(|e| format!("finding {}: {e}", f.id))?;
            routes.push(json!({
                "team": &*rule.team,
                "rule": &*rule.name,
                "target": rule.target,
                "marker": rendered.marker.as_str(),
                "payload": rendered.payload,
            }));
        }
        let line = json!({
            "finding_id": f.id,
            "schema": f.schema.as_str(),
            "routes": routes,
        });
        serde_json::to_writer(&mut *out, &line).map_err(|e| format!("writing output: {e}"))?;
        out.write_all(b"\n")
            .map_err(|e| format!("writing output: {e}"))?;
    }
    Ok(findings.len())
}
