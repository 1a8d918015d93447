//! What the bridge writes into each ticket it creates besides the rendered fields, so that a
//! lost store can be rebuilt from the tickets (`findings-bridge reconcile`): the finding, team,
//! rule, schema, write-back identifiers and severity behind the ticket.
//!
//! The marker alone cannot give them back: it is a one-way hash of team and finding id. So every
//! create carries this *provenance* where people do not see it as ticket text: a Jira issue
//! property ([`PROPERTY_KEY`], sent with the create in `properties`), a ServiceNow work note (one
//! line starting with [`WORK_NOTE_TAG`], sent in the create's `work_notes`). Tickets created before
//! this existed have none and are reported as not rebuildable; the lifecycle still finds them by
//! their marker when their finding comes again.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::finding::{Schema, WriteBackId};
use crate::marker::Marker;

/// The Jira issue property (and the key of its value) the provenance is stored under.
pub const PROPERTY_KEY: &str = "findings-bridge";

/// Starts the ServiceNow work-note line that holds the provenance as JSON.
pub const WORK_NOTE_TAG: &str = "findings-bridge-provenance:";

/// The format written today; a reader refuses other versions rather than guessing.
const VERSION: u32 = 1;

/// Where a ticket came from, as the bridge recorded it at create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub finding_id: String,
    pub team: String,
    /// The rule that created the ticket.
    pub rule: String,
    pub schema: Schema,
    pub write_back: WriteBackId,
    /// The severity the ticket was created with (after any override).
    pub severity: String,
}

/// The stored form: the provenance with its format version.
#[derive(Serialize, Deserialize)]
struct Stored {
    v: u32,
    #[serde(flatten)]
    provenance: Provenance,
}

/// What a ticket says about its provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvenanceRead {
    Found(Provenance),
    /// The ticket carries none (created before the bridge wrote it, or it was removed).
    Missing,
    /// It carries one that cannot be read (another version, edited by hand): why.
    Unreadable(String),
}

impl Provenance {
    /// The marker of the (finding, team) this names: what the ticket's own marker must be for
    /// the provenance to be believed.
    pub fn marker(&self) -> Marker {
        Marker::new(&self.team, &self.finding_id)
    }

    /// The JSON value stored (Jira property value; the JSON part of the ServiceNow line).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(Stored {
            v: VERSION,
            provenance: self.clone(),
        })
        .unwrap_or(Value::Null)
    }

    /// Reads a stored value back.
    pub fn from_value(value: &Value) -> ProvenanceRead {
        match value.get("v").and_then(Value::as_u64) {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) => return ProvenanceRead::Unreadable(format!("format version {v} is unknown")),
            None => return ProvenanceRead::Unreadable("no format version".to_owned()),
        }
        match serde_json::from_value::<Stored>(value.clone()) {
            Ok(stored) => ProvenanceRead::Found(stored.provenance),
            Err(e) => ProvenanceRead::Unreadable(e.to_string()),
        }
    }

    /// The ServiceNow work-note line: the tag and the JSON on one line.
    pub fn work_note_line(&self) -> String {
        format!("{WORK_NOTE_TAG} {}", self.to_value())
    }

    /// Finds the provenance in a journal as ServiceNow shows it (every entry, newest first): the
    /// oldest tagged line, the one written with the create.
    pub fn from_journal(journal: &str) -> ProvenanceRead {
        let Some(start) = journal.rfind(WORK_NOTE_TAG) else {
            return ProvenanceRead::Missing;
        };
        let rest = journal[start + WORK_NOTE_TAG.len()..].trim_start();
        // One JSON value, whatever follows it on the line or in the journal.
        match serde_json::Deserializer::from_str(rest)
            .into_iter::<Value>()
            .next()
        {
            Some(Ok(value)) => Provenance::from_value(&value),
            Some(Err(e)) => ProvenanceRead::Unreadable(format!("not JSON: {e}")),
            None => ProvenanceRead::Unreadable("the tag is not followed by JSON".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provenance() -> Provenance {
        Provenance {
            finding_id: "arn:aws:securityhub:us-east-1:111122223333:finding/f-1".into(),
            team: "payments".into(),
            rule: "critical-guardduty".into(),
            schema: Schema::Asff,
            write_back: WriteBackId::Asff {
                id: "arn:aws:securityhub:us-east-1:111122223333:finding/f-1".into(),
                product_arn: "arn:aws:securityhub:us-east-1::product/aws/guardduty".into(),
            },
            severity: "HIGH".into(),
        }
    }

    #[test]
    fn values_round_trip_with_their_version() {
        let p = provenance();
        let value = p.to_value();
        assert_eq!(value["v"], 1);
        assert_eq!(value["team"], "payments");
        assert_eq!(value["write_back"]["schema"], "asff");
        assert_eq!(Provenance::from_value(&value), ProvenanceRead::Found(p));
        let mut newer = value.clone();
        newer["v"] = 2.into();
        assert!(matches!(
            Provenance::from_value(&newer),
            ProvenanceRead::Unreadable(why) if why.contains("version 2")
        ));
        let mut broken = value;
        broken
            .as_object_mut()
            .map(|o| o.remove("finding_id"))
            .unwrap();
        assert!(matches!(
            Provenance::from_value(&broken),
            ProvenanceRead::Unreadable(why) if why.contains("finding_id")
        ));
    }

    #[test]
    fn the_oldest_tagged_line_of_a_journal_is_read() {
        let p = provenance();
        let mut other = p.clone();
        other.rule = "pasted-later".into();
        let journal = format!(
            "2026-12-01 10:05:00 - bridge (Work notes)\nsomeone pasted {}\n\n\
             2026-12-01 10:00:00 - bridge (Work notes)\nTriage notes\n\n{}\n\n",
            other.work_note_line(),
            p.work_note_line()
        );
        assert_eq!(Provenance::from_journal(&journal), ProvenanceRead::Found(p));
        assert_eq!(
            Provenance::from_journal("no tag here"),
            ProvenanceRead::Missing
        );
        assert!(matches!(
            Provenance::from_journal("findings-bridge-provenance: {oops"),
            ProvenanceRead::Unreadable(_)
        ));
    }

    #[test]
    fn the_marker_is_the_bridges_formula() {
        let p = provenance();
        assert_eq!(p.marker(), Marker::new(&p.team, &p.finding_id));
    }
}
