//! Which findings go into which request: addressing (ASFF, OCSF by metadata uid or by
//! identifiers), one entry per finding and change, batches of at most [`MAX_FINDINGS_PER_CALL`].

use super::*;

/// How a finding is addressed; decides the API and the identifier list of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Addressing {
    Asff,
    OcsfMetadataUid,
    OcsfIdentifiers,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Target {
    Asff {
        id: String,
        product_arn: String,
    },
    OcsfMetadataUid(String),
    OcsfIdentifiers {
        cloud_account_uid: String,
        finding_info_uid: String,
        metadata_product_uid: String,
    },
}

impl Target {
    pub(super) fn from_write_back(id: WriteBackId) -> Target {
        match id {
            WriteBackId::Asff { id, product_arn } => Target::Asff { id, product_arn },
            WriteBackId::Ocsf {
                metadata_uid: Some(uid),
                ..
            } if !uid.is_empty() => Target::OcsfMetadataUid(uid),
            WriteBackId::Ocsf {
                cloud_account_uid,
                finding_info_uid,
                metadata_product_uid,
                ..
            } => Target::OcsfIdentifiers {
                cloud_account_uid,
                finding_info_uid,
                metadata_product_uid,
            },
        }
    }

    pub(super) fn addressing(&self) -> Addressing {
        match self {
            Target::Asff { .. } => Addressing::Asff,
            Target::OcsfMetadataUid(_) => Addressing::OcsfMetadataUid,
            Target::OcsfIdentifiers { .. } => Addressing::OcsfIdentifiers,
        }
    }
}

/// What one request changes; updates with equal changes can share a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Changes {
    pub(super) addressing: Addressing,
    pub(super) status: Option<WorkflowStatus>,
    pub(super) severity: Option<Severity>,
    /// Already cut to [`NOTE_LIMIT`]; empty means "no note".
    pub(super) note: String,
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) target: Target,
    pub(super) finding_id: String,
}

/// One entry of `UnprocessedFindings`, matched back to what was sent where possible.
#[derive(Debug)]
pub(super) struct Rejected {
    pub(super) target: Option<Target>,
    pub(super) fallback_id: String,
    pub(super) code: String,
    pub(super) message: String,
}

#[derive(Debug)]
pub(super) struct Batch {
    pub(super) changes: Changes,
    pub(super) entries: Vec<Entry>,
}

#[derive(Debug)]
pub(super) struct Plan {
    pub(super) batches: Vec<Batch>,
    /// Updates that change nothing (no status, no severity, no note), or that a later update of
    /// the same finding in this call supersedes: counted as processed without a request.
    pub(super) nothing_to_write: usize,
}

/// Groups updates into requests. The last update of a finding wins (the same identifier twice in
/// one request is rejected as `DuplicatedFindingIdentifier`, and across requests the order would
/// decide the outcome anyway).
pub(super) fn plan(updates: Vec<WorkflowUpdate>) -> Plan {
    let mut nothing_to_write = 0usize;
    let mut seen: HashSet<Target> = HashSet::new();
    let mut latest_first = Vec::with_capacity(updates.len());
    for update in updates.into_iter().rev() {
        let target = Target::from_write_back(update.target);
        if !seen.insert(target.clone()) {
            nothing_to_write += 1;
            continue;
        }
        // `WorkflowUpdate::new` cuts already, but its fields are public.
        let note = cut_to_limit(&update.note, NOTE_LIMIT).into_owned();
        if update.status.is_none() && update.severity.is_none() && note.is_empty() {
            nothing_to_write += 1;
            continue;
        }
        let changes = Changes {
            addressing: target.addressing(),
            status: update.status,
            severity: update.severity,
            note,
        };
        latest_first.push((
            changes,
            Entry {
                target,
                finding_id: update.finding_id,
            },
        ));
    }

    let mut batches: Vec<Batch> = Vec::new();
    let mut open: HashMap<Changes, usize> = HashMap::new();
    for (changes, entry) in latest_first.into_iter().rev() {
        match open.get(&changes).copied() {
            Some(index) if batches[index].entries.len() < MAX_FINDINGS_PER_CALL => {
                batches[index].entries.push(entry);
            }
            _ => {
                open.insert(changes.clone(), batches.len());
                batches.push(Batch {
                    changes,
                    entries: vec![entry],
                });
            }
        }
    }
    Plan {
        batches,
        nothing_to_write,
    }
}
