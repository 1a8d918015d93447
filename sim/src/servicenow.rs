//! ServiceNow Table API on any table, with Basic auth or OAuth client-credentials tokens that
//! really expire, and the incident data policy that makes resolving without a resolution fail.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::auth::{self, Credentials};
use crate::faults::splitmix64;
use crate::reply::Rejection;
use crate::snquery;
use crate::state::{JournalEntry, ServiceNowRecord, SharedState};

const STATES: &[&str] = &["1", "2", "3", "6", "7", "8"];
const JOURNAL_FIELDS: &[&str] = &["work_notes", "comments"];
/// Field lengths of the incident dictionary the bridge must respect.
const FIELD_LIMITS: &[(&str, usize)] = &[
    ("correlation_id", 100),
    ("correlation_display", 100),
    ("short_description", 160),
    ("description", 4000),
    ("close_notes", 4000),
];

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/oauth_token.do", post(oauth_token))
        .route(
            "/api/now/table/{table}",
            get(list_records).post(create_record),
        )
        .route(
            "/api/now/table/{table}/{sys_id}",
            get(get_record).patch(update_record).put(update_record),
        )
}

pub(crate) fn is_known_state(state: &str) -> bool {
    STATES.contains(&state)
}

fn now_text() -> String {
    Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

fn error(status: StatusCode, message: &str, detail: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"message": message, "detail": detail}, "status": "failure"})),
    )
        .into_response()
}

/// Basic with the configured user, or a Bearer token from `/oauth_token.do` that has not expired.
fn authorize(st: &SharedState, headers: &HeaderMap) -> Result<String, Rejection> {
    let cfg = st.config();
    let creds = auth::credentials(headers);
    let ok = match &creds {
        Some(Credentials::Bearer(token)) => st
            .lock()
            .servicenow
            .tokens
            .get(token)
            .is_some_and(|expiry| Instant::now() < *expiry),
        _ => auth::is_basic(&creds, &cfg.servicenow_user, &cfg.servicenow_password),
    };
    if ok {
        Ok(cfg.servicenow_user.clone())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "User Not Authenticated",
            "Required to provide Auth information",
        )
        .into())
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_form(body: &str) -> BTreeMap<String, String> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn oauth_denied() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error_description": "access_denied", "error": "server_error"})),
    )
        .into_response()
}

/// Issues a bearer token for the client-credentials or password grant. The client may send its
/// id and secret in the form or as Basic auth (RFC 6749 allows both).
async fn oauth_token(State(st): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_form(&String::from_utf8_lossy(&body));
    let cfg = st.config();
    let basic = match auth::credentials(&headers) {
        Some(Credentials::Basic { user, password }) => Some((user, password)),
        _ => None,
    };
    let (client_id, client_secret) = match (form.get("client_id"), form.get("client_secret"), basic)
    {
        (Some(id), Some(secret), _) => (id.clone(), secret.clone()),
        (_, _, Some(pair)) => pair,
        _ => return oauth_denied(),
    };
    if client_id != cfg.servicenow_client_id || client_secret != cfg.servicenow_client_secret {
        return oauth_denied();
    }
    let with_refresh = match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => false,
        Some("password") => {
            if form.get("username") != Some(&cfg.servicenow_user)
                || form.get("password") != Some(&cfg.servicenow_password)
            {
                return oauth_denied();
            }
            true
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error_description": "unsupported grant_type", "error": "unsupported_grant_type"})),
            )
                .into_response();
        }
    };
    let ttl = cfg.servicenow_token_ttl;
    let mut guard = st.lock();
    let sn = &mut guard.servicenow;
    sn.next_token += 1;
    let token = format!(
        "sim-oauth-{:016x}{:016x}",
        splitmix64(sn.next_token),
        splitmix64(!sn.next_token)
    );
    sn.tokens.insert(token.clone(), Instant::now() + ttl);
    let mut out = json!({
        "access_token": token,
        "scope": "useraccount",
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
    });
    if with_refresh && let Some(o) = out.as_object_mut() {
        o.insert("refresh_token".into(), json!(format!("{token}-refresh")));
    }
    axum::Json(out).into_response()
}

fn field_text(name: &str, value: &Value) -> Result<String, Rejection> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "Invalid field value",
            &format!("Field '{name}' must be a string, number or boolean"),
        )
        .into()),
    }
}

/// Field values to store, and journal entries (field, text) to append.
type IncomingFields = (BTreeMap<String, String>, Vec<(String, String)>);

/// Validates a create or update body and splits it into field values and journal entries.
/// System fields (`sys_*`, `number`) are read-only and ignored, as ServiceNow does.
fn incoming_fields(body: &Bytes) -> Result<IncomingFields, Rejection> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "Exception while reading request",
            &format!("The payload is not valid JSON: {e}"),
        )
    })?;
    let Some(obj) = value.as_object() else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "Exception while reading request",
            "The payload must be a JSON object",
        )
        .into());
    };
    let mut fields = BTreeMap::new();
    let mut journal = Vec::new();
    for (name, v) in obj {
        let text = field_text(name, v)?;
        if name.starts_with("sys_") || name == "number" {
            continue;
        }
        if let Some((_, limit)) = FIELD_LIMITS.iter().find(|(f, _)| f == name)
            && text.chars().count() > *limit
        {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "Invalid field value",
                &format!("Field '{name}' exceeds its maximum length of {limit}"),
            )
            .into());
        }
        match name.as_str() {
            "urgency" | "impact" if !["1", "2", "3"].contains(&text.as_str()) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "Invalid field value",
                    &format!("Field '{name}' must be 1, 2 or 3, got '{text}'"),
                )
                .into());
            }
            // A glide date-time (UTC), or empty to clear it.
            "due_date"
                if !text.is_empty()
                    && chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S")
                        .is_err() =>
            {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "Invalid field value",
                    &format!("Field 'due_date' is not a date-time: '{text}'"),
                )
                .into());
            }
            "state" if !is_known_state(&text) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "Invalid field value",
                    &format!("State '{text}' does not exist"),
                )
                .into());
            }
            n if JOURNAL_FIELDS.contains(&n) => {
                if !text.is_empty() {
                    journal.push((name.clone(), text));
                }
            }
            _ => {
                fields.insert(name.clone(), text);
            }
        }
    }
    Ok((fields, journal))
}

/// Incident priority follows urgency and impact (1 + 1 → 1 Critical … 3 + 3 → 5 Planning).
fn recompute_priority(fields: &mut BTreeMap<String, String>) {
    let num = |f: &str| {
        fields
            .get(f)
            .and_then(|v| v.parse::<u8>().ok())
            .unwrap_or(3)
    };
    let priority = (num("urgency") + num("impact"))
        .saturating_sub(1)
        .clamp(1, 5);
    fields.insert("priority".into(), priority.to_string());
}

/// Side effects of entering a state: resolution timestamps and `active`.
fn enter_state(fields: &mut BTreeMap<String, String>, previous: Option<&str>, user: &str) {
    let state = fields.get("state").cloned().unwrap_or_default();
    if previous == Some(state.as_str()) {
        return;
    }
    let now = now_text();
    match state.as_str() {
        "6" => {
            fields.insert("resolved_at".into(), now);
            fields.insert("resolved_by".into(), user.to_owned());
        }
        "7" => {
            fields.insert("closed_at".into(), now);
            fields.insert("closed_by".into(), user.to_owned());
        }
        _ => {}
    }
    let active = !matches!(state.as_str(), "7" | "8");
    fields.insert("active".into(), active.to_string());
}

/// Appends to the record's `state_history` when `fields` (its new values) change its state.
fn record_state_change(
    record: &mut ServiceNowRecord,
    previous: Option<&str>,
    fields: &BTreeMap<String, String>,
    by: &str,
) {
    let to = fields.get("state").map_or("", String::as_str);
    let from = previous.unwrap_or("");
    if from != to {
        let author = fields.get("sys_updated_by").cloned().unwrap_or_default();
        record.state_history.push(crate::state::StatusChange {
            from: from.to_owned(),
            to: to.to_owned(),
            by: by.to_owned(),
            author,
            at: chrono::Utc::now(),
        });
    }
}

/// The incident data policy: a resolved or closed incident needs a resolution code and notes.
fn data_policy(fields: &BTreeMap<String, String>) -> Result<(), Rejection> {
    let state = fields.get("state").map_or("", String::as_str);
    if !matches!(state, "6" | "7") {
        return Ok(());
    }
    let missing: Vec<&str> = [
        ("close_code", "Resolution code"),
        ("close_notes", "Resolution notes"),
    ]
    .iter()
    .filter(|(f, _)| fields.get(*f).is_none_or(|v| v.trim().is_empty()))
    .map(|(_, label)| *label)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(error(
            StatusCode::BAD_REQUEST,
            "Operation Failed",
            &format!(
                "Data Policy Exception: \n The following fields are mandatory: {}",
                missing.join(", ")
            ),
        )
        .into())
    }
}

fn number_prefix(table: &str) -> String {
    match table {
        "incident" => "INC".to_owned(),
        "problem" => "PRB".to_owned(),
        "change_request" => "CHG".to_owned(),
        "sc_task" => "SCTASK".to_owned(),
        "sn_vul_vulnerable_item" => "VIT".to_owned(),
        other => other
            .chars()
            .filter(char::is_ascii_alphabetic)
            .take(3)
            .collect::<String>()
            .to_ascii_uppercase(),
    }
}

/// A table name the Table API knows: well formed and not one of the `gone_tables`. Otherwise
/// 400 `{"error": {"message": "Invalid table NAME", "detail": null}, "status": "failure"}`, as
/// ServiceNow answers for a table that does not exist (any more).
fn valid_table(st: &SharedState, table: &str) -> Result<(), Rejection> {
    let well_formed = !table.is_empty()
        && table
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let gone = {
        let mut guard = st.lock();
        let gone = guard.faults.table_gone(table);
        if gone {
            guard.fault_stats.target_gone += 1;
        }
        gone
    };
    if well_formed && !gone {
        return Ok(());
    }
    Err((
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "error": {"message": format!("Invalid table {table}"), "detail": null},
            "status": "failure",
        })),
    )
        .into_response()
        .into())
}

/// The journal of one field as `sysparm_display_value=true` shows it: every entry, newest first,
/// each under a `date - user (Work notes)` header and followed by a blank line.
fn journal_text(record: &ServiceNowRecord, field: &str) -> String {
    let label = if field == "work_notes" {
        "Work notes"
    } else {
        "Additional comments"
    };
    // Entries are stored in creation order; timestamps have whole seconds, so reverse the order
    // instead of sorting by them.
    record
        .journal
        .iter()
        .rev()
        .filter(|j| j.field == field)
        .map(|j| {
            format!(
                "{} - {} ({label})\n{}\n\n",
                j.created_on, j.created_by, j.value
            )
        })
        .collect()
}

/// How field values are read back (`sysparm_display_value`). The simulator has no choice lists
/// or reference display names, so a field's display value is its stored value; only journal
/// fields differ (empty as values, their entries as display values).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Display {
    /// `false` (the default): stored values.
    Value,
    /// `true`: display values.
    Text,
    /// `all`: `{"value": …, "display_value": …}` for every field.
    All,
}

fn display_of(param: Option<&str>) -> Result<Display, Rejection> {
    match param {
        None | Some("") | Some("false") => Ok(Display::Value),
        Some("true") => Ok(Display::Text),
        Some("all") => Ok(Display::All),
        Some(other) => Err(error(
            StatusCode::BAD_REQUEST,
            "Invalid parameter",
            &format!("sysparm_display_value must be true, false or all, not '{other}'"),
        )
        .into()),
    }
}

fn shown(display: Display, value: &str, display_value: &str) -> Value {
    match display {
        Display::Value => json!(value),
        Display::Text => json!(display_value),
        Display::All => json!({"value": value, "display_value": display_value}),
    }
}

/// The display value of a field: the out-of-the-box choice label for the choice fields the
/// bridge reads (`state`, `urgency`, `impact`), as real ServiceNow answers; the stored value
/// otherwise (the simulator has no other choice lists or reference display names).
fn display_value_of<'a>(field: &str, value: &'a str) -> &'a str {
    match (field, value) {
        ("state", "1") => "New",
        ("state", "2") => "In Progress",
        ("state", "3") => "On Hold",
        ("state", "6") => "Resolved",
        ("state", "7") => "Closed",
        ("state", "8") => "Canceled",
        ("urgency" | "impact", "1") => "1 - High",
        ("urgency" | "impact", "2") => "2 - Medium",
        ("urgency" | "impact", "3") => "3 - Low",
        _ => value,
    }
}

fn record_json(record: &ServiceNowRecord, fields_filter: Option<&str>, display: Display) -> Value {
    let wanted: Option<Vec<&str>> = fields_filter.map(|f| {
        f.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    });
    let mut out = Map::new();
    for (k, v) in &record.fields {
        if wanted.as_ref().is_none_or(|w| w.contains(&k.as_str())) {
            out.insert(k.clone(), shown(display, v, display_value_of(k, v)));
        }
    }
    // Journal fields read back empty through the Table API, unless display values are asked for.
    for j in JOURNAL_FIELDS {
        if wanted.as_ref().is_none_or(|w| w.contains(j)) {
            out.insert(
                (*j).to_owned(),
                shown(display, "", &journal_text(record, j)),
            );
        }
    }
    Value::Object(out)
}

#[derive(Deserialize, Default)]
struct TableParams {
    sysparm_query: Option<String>,
    sysparm_fields: Option<String>,
    sysparm_limit: Option<String>,
    sysparm_offset: Option<String>,
    sysparm_display_value: Option<String>,
}

fn parse_count(name: &str, value: Option<&str>, default: usize) -> Result<usize, Rejection> {
    match value {
        None | Some("") => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "Invalid parameter",
                &format!("{name} must be a non-negative integer, got '{v}'"),
            )
            .into()
        }),
    }
}

async fn create_record(
    State(st): State<SharedState>,
    Path(table): Path<String>,
    Query(params): Query<TableParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = match authorize(&st, &headers) {
        Ok(u) => u,
        Err(r) => return r.into_response(),
    };
    if let Err(r) = valid_table(&st, &table) {
        return r.into_response();
    }
    let display = match display_of(params.sysparm_display_value.as_deref()) {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let (given, journal) = match incoming_fields(&body) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let now = now_text();
    let mut fields: BTreeMap<String, String> = [
        ("state", "1"),
        ("urgency", "3"),
        ("impact", "3"),
        ("active", "true"),
        ("sys_mod_count", "0"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    fields.extend(given);
    if let Err(r) = data_policy(&fields) {
        return r.into_response();
    }
    recompute_priority(&mut fields);
    enter_state(&mut fields, None, &user);
    let mut guard = st.lock();
    let base = guard.base_url.clone();
    let sn = &mut guard.servicenow;
    sn.next_sys_id += 1;
    let sys_id = format!(
        "{:016x}{:016x}",
        splitmix64(sn.next_sys_id),
        splitmix64(sn.next_sys_id ^ 0x5eed)
    );
    let counter = sn.number_counters.entry(table.clone()).or_insert(10_000);
    *counter += 1;
    let number = format!("{}{:07}", number_prefix(&table), counter);
    for (k, v) in [
        ("sys_id", sys_id.clone()),
        ("number", number),
        ("sys_class_name", table.clone()),
        ("sys_created_on", now.clone()),
        ("sys_updated_on", now.clone()),
        ("opened_at", now.clone()),
        ("sys_created_by", user.clone()),
        ("sys_updated_by", user.clone()),
    ] {
        fields.insert(k.to_owned(), v);
    }
    let record = ServiceNowRecord {
        table: table.clone(),
        sys_id: sys_id.clone(),
        fields,
        journal: journal
            .into_iter()
            .map(|(field, value)| JournalEntry {
                field,
                value,
                created_on: now.clone(),
                created_by: user.clone(),
            })
            .collect(),
        state_history: Vec::new(),
    };
    let out = record_json(&record, params.sysparm_fields.as_deref(), display);
    sn.records.push(record);
    drop(guard);
    let mut response = (StatusCode::CREATED, axum::Json(json!({"result": out}))).into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("{base}/api/now/table/{table}/{sys_id}")) {
        response.headers_mut().insert("Location", loc);
    }
    response
}

async fn list_records(
    State(st): State<SharedState>,
    Path(table): Path<String>,
    Query(params): Query<TableParams>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r.into_response();
    }
    if let Err(r) = valid_table(&st, &table) {
        return r.into_response();
    }
    let query = match snquery::parse(params.sysparm_query.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(why) => return error(StatusCode::BAD_REQUEST, "Invalid query", &why),
    };
    let limit = match parse_count("sysparm_limit", params.sysparm_limit.as_deref(), 10_000) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let offset = match parse_count("sysparm_offset", params.sysparm_offset.as_deref(), 0) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let display = match display_of(params.sysparm_display_value.as_deref()) {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    // The schema and group tables come from the set-up, not from records a client created.
    let faults = st.faults();
    let named: Vec<String> = query
        .named_tables()
        .into_iter()
        .filter(|t| !faults.table_gone(t))
        .collect();
    let metadata = st.setup().metadata(&table, &named);
    let guard = st.lock();
    let pool: Vec<&ServiceNowRecord> = match &metadata {
        Some(records) => records.iter().collect(),
        None => guard.servicenow.records.iter().collect(),
    };
    let mut hits: Vec<&ServiceNowRecord> = pool
        .into_iter()
        .filter(|r| r.table == table && query.matches(&r.fields))
        .collect();
    hits.sort_by(|a, b| query.ordering(&a.fields, &b.fields));
    let total = hits.len();
    let page: Vec<Value> = hits
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|r| record_json(r, params.sysparm_fields.as_deref(), display))
        .collect();
    drop(guard);
    let mut response = axum::Json(json!({"result": page})).into_response();
    response
        .headers_mut()
        .insert("X-Total-Count", HeaderValue::from(total));
    response
}

fn no_record() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "No Record found",
        "Record doesn't exist or ACL restricts the record retrieval",
    )
}

async fn get_record(
    State(st): State<SharedState>,
    Path((table, sys_id)): Path<(String, String)>,
    Query(params): Query<TableParams>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r.into_response();
    }
    if let Err(r) = valid_table(&st, &table) {
        return r.into_response();
    }
    let display = match display_of(params.sysparm_display_value.as_deref()) {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let guard = st.lock();
    match guard
        .servicenow
        .records
        .iter()
        .find(|r| r.table == table && r.sys_id == sys_id)
    {
        Some(r) => {
            axum::Json(json!({"result": record_json(r, params.sysparm_fields.as_deref(), display)}))
                .into_response()
        }
        None => no_record(),
    }
}

async fn update_record(
    State(st): State<SharedState>,
    Path((table, sys_id)): Path<(String, String)>,
    Query(params): Query<TableParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = match authorize(&st, &headers) {
        Ok(u) => u,
        Err(r) => return r.into_response(),
    };
    if let Err(r) = valid_table(&st, &table) {
        return r.into_response();
    }
    let display = match display_of(params.sysparm_display_value.as_deref()) {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let (given, journal) = match incoming_fields(&body) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let mut guard = st.lock();
    let Some(record) = guard
        .servicenow
        .records
        .iter_mut()
        .find(|r| r.table == table && r.sys_id == sys_id)
    else {
        return no_record();
    };
    let previous_state = record.fields.get("state").cloned();
    let mut merged = record.fields.clone();
    merged.extend(given);
    if let Err(r) = data_policy(&merged) {
        return r.into_response();
    }
    recompute_priority(&mut merged);
    enter_state(&mut merged, previous_state.as_deref(), &user);
    let now = now_text();
    let mod_count = merged
        .get("sys_mod_count")
        .and_then(|c| c.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    merged.insert("sys_mod_count".into(), mod_count.to_string());
    merged.insert("sys_updated_on".into(), now.clone());
    merged.insert("sys_updated_by".into(), user.clone());
    record_state_change(record, previous_state.as_deref(), &merged, "api");
    record.fields = merged;
    record
        .journal
        .extend(journal.into_iter().map(|(field, value)| JournalEntry {
            field,
            value,
            created_on: now.clone(),
            created_by: user.clone(),
        }));
    axum::Json(json!({"result": record_json(record, params.sysparm_fields.as_deref(), display)}))
        .into_response()
}

/// What a person resolving or reopening the incident in the UI leaves behind.
pub(crate) fn human_state_change(record: &mut ServiceNowRecord, state: &str, user: &str) {
    let previous = record.fields.get("state").cloned();
    record.fields.insert("state".into(), state.to_owned());
    if matches!(state, "6" | "7") {
        for (field, default) in [
            ("close_code", "Solved (Permanently)"),
            ("close_notes", "Resolved by a person in the simulator"),
        ] {
            if record.fields.get(field).is_none_or(|v| v.is_empty()) {
                record.fields.insert(field.into(), default.into());
            }
        }
    }
    enter_state(&mut record.fields, previous.as_deref(), user);
    let fields = record.fields.clone();
    record_state_change(record, previous.as_deref(), &fields, "human");
    record.fields.insert("sys_updated_on".into(), now_text());
    record
        .fields
        .insert("sys_updated_by".into(), user.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_date_is_a_glide_date_time_or_empty() {
        for (text, ok) in [
            ("2026-11-27 09:30:00", true),
            ("", true),
            ("2026-11-27", false),
            ("2026-11-27T09:30:00Z", false),
        ] {
            let body = Bytes::from(json!({ "due_date": text }).to_string());
            match incoming_fields(&body) {
                Ok((fields, _)) => {
                    assert!(ok, "{text:?} accepted");
                    assert_eq!(fields.get("due_date").map(String::as_str), Some(text));
                }
                Err(_) => assert!(!ok, "{text:?} refused"),
            }
        }
    }

    #[test]
    fn form_decoding_handles_plus_and_percent() {
        let f = parse_form("grant_type=client_credentials&client_secret=a%2Bb+c%3D&x");
        assert_eq!(f["grant_type"], "client_credentials");
        assert_eq!(f["client_secret"], "a+b c=");
        assert_eq!(f["x"], "");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn priority_follows_urgency_and_impact() {
        for (u, i, p) in [
            ("1", "1", "1"),
            ("1", "2", "2"),
            ("2", "2", "3"),
            ("3", "3", "5"),
        ] {
            let mut f = BTreeMap::from([
                ("urgency".to_owned(), u.to_owned()),
                ("impact".to_owned(), i.to_owned()),
            ]);
            recompute_priority(&mut f);
            assert_eq!(f["priority"], p);
        }
    }

    #[test]
    fn state_history_records_changes_only() {
        let mut record = ServiceNowRecord {
            table: "incident".into(),
            sys_id: "1".into(),
            fields: BTreeMap::from([("state".to_owned(), "1".to_owned())]),
            journal: Vec::new(),
            state_history: Vec::new(),
        };
        let same = record.fields.clone();
        record_state_change(&mut record, Some("1"), &same, "api");
        assert!(record.state_history.is_empty());
        human_state_change(&mut record, "6", "sim");
        let resolved = BTreeMap::from([("state".to_owned(), "2".to_owned())]);
        record_state_change(&mut record, Some("6"), &resolved, "api");
        let moves: Vec<(&str, &str, &str)> = record
            .state_history
            .iter()
            .map(|c| (c.from.as_str(), c.to.as_str(), c.by.as_str()))
            .collect();
        assert_eq!(moves, [("1", "6", "human"), ("6", "2", "api")]);
    }

    #[test]
    fn numbers_carry_the_table_prefix() {
        assert_eq!(number_prefix("incident"), "INC");
        assert_eq!(number_prefix("u_security_case"), "USE");
    }
}
