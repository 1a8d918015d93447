//! Security Hub's two write-back operations, validated against the service model's limits and
//! remembered per finding, so tests can read a finding's workflow status after a sync.
//!
//! Requests come from the AWS SDK with SigV4 signatures; the simulator cannot verify them (it has
//! no secret key) and only insists that some `Authorization` header is present.

use std::collections::HashSet;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::patch;
use chrono::Utc;
use serde_json::{Value, json};

use crate::reply::Rejection;
use crate::state::{FindingErrorKind, FindingState, SharedState, Writeback, WritebackApi};

const MAX_IDENTIFIERS: usize = 100;
const MAX_NOTE: usize = 512;
const WORKFLOW_STATUSES: &[&str] = &["NEW", "NOTIFIED", "RESOLVED", "SUPPRESSED"];
const SEVERITY_LABELS: &[&str] = &["INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"];
const OCSF_STATUS_IDS: &[i64] = &[0, 1, 2, 3, 4, 5, 99];
const OCSF_SEVERITY_IDS: &[i64] = &[0, 1, 2, 3, 4, 5, 6, 99];

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/findings/batchupdate", patch(batch_update_findings))
        .route("/findingsv2/batchupdatev2", patch(batch_update_findings_v2))
}

/// An AWS JSON error: the SDK reads the code from `x-amzn-ErrorType` or the body.
pub(crate) fn aws_error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = (
        status,
        axum::Json(json!({"__type": code, "Code": code, "Message": message})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(code) {
        response.headers_mut().insert("x-amzn-ErrorType", v);
    }
    response
}

fn require_signature(headers: &HeaderMap) -> Result<(), Rejection> {
    if headers.contains_key(AUTHORIZATION) {
        Ok(())
    } else {
        Err(aws_error(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
        .into())
    }
}

fn parse_body(body: &Bytes, code: &str) -> Result<serde_json::Map<String, Value>, Rejection> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(aws_error(
            StatusCode::BAD_REQUEST,
            code,
            "The request body must be a JSON object",
        )
        .into()),
        Err(e) => Err(aws_error(
            StatusCode::BAD_REQUEST,
            code,
            &format!("The request body is not valid JSON: {e}"),
        )
        .into()),
    }
}

fn text_in_range(value: &Value, max: usize) -> bool {
    value
        .as_str()
        .is_some_and(|s| !s.is_empty() && s.chars().count() <= max)
}

/// Validates the whole V1 request before touching any finding, as the service does.
fn check_v1(body: &serde_json::Map<String, Value>) -> Result<Vec<(String, String)>, String> {
    let ids = body
        .get("FindingIdentifiers")
        .and_then(Value::as_array)
        .ok_or("FindingIdentifiers is required")?;
    if ids.is_empty() || ids.len() > MAX_IDENTIFIERS {
        return Err(format!(
            "FindingIdentifiers must contain between 1 and {MAX_IDENTIFIERS} items, got {}",
            ids.len()
        ));
    }
    let mut out = Vec::with_capacity(ids.len());
    for (i, ident) in ids.iter().enumerate() {
        let id = ident.get("Id").and_then(Value::as_str).unwrap_or("");
        let arn = ident
            .get("ProductArn")
            .and_then(Value::as_str)
            .unwrap_or("");
        if id.is_empty() || id.chars().count() > 512 || arn.is_empty() {
            return Err(format!(
                "FindingIdentifiers[{i}] needs a non-empty Id (at most 512 characters) and ProductArn"
            ));
        }
        out.push((id.to_owned(), arn.to_owned()));
    }
    if let Some(wf) = body.get("Workflow") {
        let status = wf.get("Status").and_then(Value::as_str).unwrap_or("");
        if !WORKFLOW_STATUSES.contains(&status) {
            return Err(format!(
                "Workflow.Status must be one of {WORKFLOW_STATUSES:?}, got {status:?}"
            ));
        }
    }
    if let Some(note) = body.get("Note") {
        if !note.get("Text").is_some_and(|t| text_in_range(t, MAX_NOTE)) {
            return Err(format!("Note.Text must have 1 to {MAX_NOTE} characters"));
        }
        if !note.get("UpdatedBy").is_some_and(|t| text_in_range(t, 512)) {
            return Err("Note.UpdatedBy is required".to_owned());
        }
    }
    if let Some(sev) = body.get("Severity") {
        if let Some(label) = sev.get("Label") {
            let label = label.as_str().unwrap_or("");
            if !SEVERITY_LABELS.contains(&label) {
                return Err(format!(
                    "Severity.Label must be one of {SEVERITY_LABELS:?}, got {label:?}"
                ));
            }
        }
        if let Some(n) = sev.get("Normalized")
            && !n.as_i64().is_some_and(|n| (0..=100).contains(&n))
        {
            return Err("Severity.Normalized must be an integer from 0 to 100".to_owned());
        }
    }
    Ok(out)
}

async fn batch_update_findings(
    State(st): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = require_signature(&headers) {
        return r.into_response();
    }
    let request = match parse_body(&body, "InvalidInputException") {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let identifiers = match check_v1(&request) {
        Ok(ids) => ids,
        Err(why) => return aws_error(StatusCode::BAD_REQUEST, "InvalidInputException", &why),
    };
    let status = request.pointer_str("/Workflow/Status");
    let note = request.pointer_str("/Note/Text");
    let label = request.pointer_str("/Severity/Label");

    let mut guard = st.lock();
    let sh = &mut guard.securityhub;
    let mut processed = Vec::new();
    let mut unprocessed = Vec::new();
    let mut seen = HashSet::new();
    let mut record = Writeback {
        api: WritebackApi::BatchUpdateFindings,
        received_at: Utc::now(),
        request: Value::Object(request.clone()),
        processed: Vec::new(),
        unprocessed: Vec::new(),
    };
    for (id, arn) in identifiers {
        let ident = json!({"Id": id, "ProductArn": arn});
        let failure = if !seen.insert((id.clone(), arn.clone())) {
            Some((
                "DuplicatedFindingIdentifier",
                "Finding identifier is duplicated in the request",
            ))
        } else {
            match sh.errors.get(&id) {
                Some(FindingErrorKind::NotFound) => Some(("FindingNotFound", "Finding not found")),
                Some(FindingErrorKind::ConcurrentUpdate) => Some((
                    "ConcurrentUpdateError",
                    "Finding was updated concurrently; retry the update",
                )),
                None => None,
            }
        };
        if let Some((code, message)) = failure {
            record.unprocessed.push((id, code.to_owned()));
            unprocessed.push(
                json!({"FindingIdentifier": ident, "ErrorCode": code, "ErrorMessage": message}),
            );
            continue;
        }
        let finding = sh
            .findings
            .entry(id.clone())
            .or_insert_with(|| FindingState {
                id: id.clone(),
                ..FindingState::default()
            });
        finding.product_arn = Some(arn);
        if let Some(s) = &status {
            finding.workflow_status = Some(s.clone());
        }
        if let Some(n) = &note {
            finding.notes.push(n.clone());
        }
        if let Some(l) = &label {
            finding.severity_label = Some(l.clone());
        }
        finding.update_count += 1;
        record.processed.push(id);
        processed.push(ident);
    }
    sh.writebacks.push(record);
    axum::Json(json!({"ProcessedFindings": processed, "UnprocessedFindings": unprocessed}))
        .into_response()
}

/// A V2 target: the finding's key in the simulator and the identifier echoed back.
struct V2Target {
    key: String,
    echo: (&'static str, Value),
}

fn check_v2(body: &serde_json::Map<String, Value>) -> Result<Vec<V2Target>, String> {
    let uids = body.get("MetadataUids").filter(|v| !v.is_null());
    let idents = body.get("FindingIdentifiers").filter(|v| !v.is_null());
    let targets: Vec<V2Target> = match (uids, idents) {
        (Some(_), Some(_)) => {
            return Err("Provide either MetadataUids or FindingIdentifiers, not both".to_owned());
        }
        (None, None) => return Err("Provide MetadataUids or FindingIdentifiers".to_owned()),
        (Some(uids), None) => uids
            .as_array()
            .ok_or("MetadataUids must be an array")?
            .iter()
            .map(|u| match u.as_str() {
                Some(s) if !s.is_empty() => Ok(V2Target {
                    key: s.to_owned(),
                    echo: ("MetadataUid", json!(s)),
                }),
                _ => Err("MetadataUids must be non-empty strings".to_owned()),
            })
            .collect::<Result<_, _>>()?,
        (None, Some(idents)) => idents
            .as_array()
            .ok_or("FindingIdentifiers must be an array")?
            .iter()
            .enumerate()
            .map(|(i, ident)| {
                let field = |name: &str| {
                    ident
                        .get(name)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .ok_or_else(|| format!("FindingIdentifiers[{i}].{name} is required"))
                };
                let account = field("CloudAccountUid")?;
                let uid = field("FindingInfoUid")?;
                let product = field("MetadataProductUid")?;
                Ok(V2Target {
                    key: uid.clone(),
                    echo: (
                        "FindingIdentifier",
                        json!({"CloudAccountUid": account, "FindingInfoUid": uid, "MetadataProductUid": product}),
                    ),
                })
            })
            .collect::<Result<_, String>>()?,
    };
    if targets.is_empty() || targets.len() > MAX_IDENTIFIERS {
        return Err(format!(
            "Between 1 and {MAX_IDENTIFIERS} findings may be updated at once, got {}",
            targets.len()
        ));
    }
    if let Some(s) = body.get("StatusId")
        && !s.as_i64().is_some_and(|s| OCSF_STATUS_IDS.contains(&s))
    {
        return Err(format!("StatusId must be one of {OCSF_STATUS_IDS:?}"));
    }
    if let Some(s) = body.get("SeverityId")
        && !s.as_i64().is_some_and(|s| OCSF_SEVERITY_IDS.contains(&s))
    {
        return Err(format!("SeverityId must be one of {OCSF_SEVERITY_IDS:?}"));
    }
    if let Some(c) = body.get("Comment")
        && !text_in_range(c, MAX_NOTE)
    {
        return Err(format!("Comment must have 1 to {MAX_NOTE} characters"));
    }
    Ok(targets)
}

async fn batch_update_findings_v2(
    State(st): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = require_signature(&headers) {
        return r.into_response();
    }
    let request = match parse_body(&body, "ValidationException") {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let targets = match check_v2(&request) {
        Ok(t) => t,
        Err(why) => return aws_error(StatusCode::BAD_REQUEST, "ValidationException", &why),
    };
    let status_id = request.get("StatusId").and_then(Value::as_i64);
    let severity_id = request.get("SeverityId").and_then(Value::as_i64);
    let comment = request.pointer_str("/Comment");

    let mut guard = st.lock();
    let sh = &mut guard.securityhub;
    let mut processed = Vec::new();
    let mut unprocessed = Vec::new();
    let mut record = Writeback {
        api: WritebackApi::BatchUpdateFindingsV2,
        received_at: Utc::now(),
        request: Value::Object(request.clone()),
        processed: Vec::new(),
        unprocessed: Vec::new(),
    };
    for target in targets {
        let (echo_name, echo_value) = target.echo;
        let failure = match sh.errors.get(&target.key) {
            Some(FindingErrorKind::NotFound) => {
                Some(("ResourceNotFoundException", "Finding not found"))
            }
            Some(FindingErrorKind::ConcurrentUpdate) => Some((
                "ConflictException",
                "Finding was updated concurrently; retry the update",
            )),
            None => None,
        };
        if let Some((code, message)) = failure {
            record.unprocessed.push((target.key, code.to_owned()));
            unprocessed
                .push(json!({echo_name: echo_value, "ErrorCode": code, "ErrorMessage": message}));
            continue;
        }
        let finding = sh
            .findings
            .entry(target.key.clone())
            .or_insert_with(|| FindingState {
                id: target.key.clone(),
                ..FindingState::default()
            });
        if let Some(s) = status_id {
            finding.status_id = Some(s);
        }
        if let Some(s) = severity_id {
            finding.severity_id = Some(s);
        }
        if let Some(c) = &comment {
            finding.notes.push(c.clone());
        }
        finding.update_count += 1;
        record.processed.push(target.key);
        processed.push(json!({echo_name: echo_value}));
    }
    sh.writebacks.push(record);
    axum::Json(json!({"ProcessedFindings": processed, "UnprocessedFindings": unprocessed}))
        .into_response()
}

trait PointerStr {
    fn pointer_str(&self, pointer: &str) -> Option<String>;
}

impl PointerStr for serde_json::Map<String, Value> {
    fn pointer_str(&self, pointer: &str) -> Option<String> {
        let mut parts = pointer.trim_start_matches('/').splitn(2, '/');
        let first = self.get(parts.next()?)?;
        let v = match parts.next() {
            Some(rest) => first.pointer(&format!("/{rest}"))?,
            None => first,
        };
        v.as_str().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => panic!("test body must be an object"),
        }
    }

    #[test]
    fn v1_limits() {
        let ids: Vec<Value> = (0..101)
            .map(|i| json!({"Id": format!("f{i}"), "ProductArn": "arn"}))
            .collect();
        assert!(check_v1(&obj(json!({"FindingIdentifiers": ids}))).is_err());
        assert!(check_v1(&obj(json!({"FindingIdentifiers": []}))).is_err());
        let one = json!([{"Id": "f", "ProductArn": "arn"}]);
        assert!(
            check_v1(&obj(
                json!({"FindingIdentifiers": one, "Workflow": {"Status": "DONE"}})
            ))
            .is_err()
        );
        assert!(check_v1(&obj(json!({"FindingIdentifiers": one, "Note": {"Text": "x".repeat(513), "UpdatedBy": "b"}}))).is_err());
        assert!(
            check_v1(&obj(
                json!({"FindingIdentifiers": one, "Note": {"Text": "x"}})
            ))
            .is_err()
        );
        assert!(check_v1(&obj(json!({"FindingIdentifiers": one, "Note": {"Text": "x".repeat(512), "UpdatedBy": "b"}, "Workflow": {"Status": "RESOLVED"}}))).is_ok());
    }

    #[test]
    fn v2_needs_exactly_one_kind_of_identifier() {
        let both = json!({"MetadataUids": ["a"], "FindingIdentifiers": [{"CloudAccountUid": "1", "FindingInfoUid": "a", "MetadataProductUid": "p"}]});
        assert!(check_v2(&obj(both)).is_err());
        assert!(check_v2(&obj(json!({"StatusId": 4}))).is_err());
        assert!(check_v2(&obj(json!({"MetadataUids": ["a"], "StatusId": 7}))).is_err());
        assert!(
            check_v2(&obj(
                json!({"MetadataUids": ["a"], "SeverityId": 99, "StatusId": 4})
            ))
            .is_ok()
        );
        let partial =
            json!({"FindingIdentifiers": [{"CloudAccountUid": "1", "FindingInfoUid": "a"}]});
        assert!(check_v2(&obj(partial)).is_err());
    }
}
