//! Which version of a finding is newer, and what of it a ticket reflects (its fingerprint):
//! deliveries arrive in any order and the bridge's own write-back comes back as an event.

use super::*;

/// Hash of what the ticket reflects: effective severity, record state, compliance status. Not
/// the workflow status: the bridge's own write-back changes it, and the "Imported" event that
/// write-back causes must be a no-op.
pub fn fingerprint(severity: Severity, finding: &Finding) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"fb-fingerprint-v1\n");
    hasher.update(severity.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(finding.record_state.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(
        finding
            .compliance
            .status
            .as_deref()
            .unwrap_or("-")
            .as_bytes(),
    );
    hex::encode(&hasher.finalize()[..16])
}

pub(super) use crate::time::parse_time;

/// Older than what was already processed. Unknown or unparseable times are never stale: better a
/// needless ticket call than a lost update.
pub(super) fn is_stale(finding: &Finding, record: &Record) -> bool {
    match (
        finding.updated_at_time(),
        record.updated_at.as_deref().and_then(parse_time),
    ) {
        (Some(new), Some(stored)) => new < stored,
        _ => false,
    }
}

pub(super) fn newer(finding: Option<&str>, stored: Option<&str>) -> Option<String> {
    match (finding, stored) {
        (Some(f), Some(s)) => match (parse_time(f), parse_time(s)) {
            (Some(ft), Some(st)) if ft < st => Some(s.to_owned()),
            _ => Some(f.to_owned()),
        },
        (Some(f), None) => Some(f.to_owned()),
        (None, s) => s.map(str::to_owned),
    }
}

/// "record state ARCHIVED, compliance PASSED" — what a person reading the ticket needs to know.
pub(super) fn state_text(finding: &Finding) -> String {
    match finding.compliance.status.as_deref() {
        Some(c) => format!(
            "record state {}, compliance {c}",
            finding.record_state.as_str()
        ),
        None => format!("record state {}", finding.record_state.as_str()),
    }
}
