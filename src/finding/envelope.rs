//! Turns raw message bytes into findings, whatever wrapped them on the way.
//!
//! Accepted forms:
//! - an EventBridge event from `aws.securityhub`: `Security Hub Findings - Imported` and
//!   `Security Hub Findings - Custom Action` carry ASFF, `Findings Imported V2` carries OCSF, both in
//!   `detail.findings[]`;
//! - that event wrapped by SNS without raw delivery (`{"Type": "Notification", "Message": "<event>"}`),
//!   one level deep;
//! - a bare ASFF or OCSF finding, a JSON array of bare findings (schemas may be mixed), or a
//!   `{"Findings": [...]}` object as printed by `aws securityhub get-findings(-v2)`, so an operator
//!   can replay or `render` what the CLI gave them.
//!
//! Every failure is a [`DecodeError`] whose `path` points into the input as the operator sees it
//! (`Message.detail.findings[0].Severity`), because a DLQ entry is only useful if it says where the
//! bytes went wrong. The input is parsed once into a `serde_json::Value`; each finding's object is
//! then moved (not cloned) into [`Finding::raw`]. Paths are a chain of borrowed segments and are only
//! rendered into a string when an error is reported, so the happy path allocates nothing for them.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use super::{DecodeError, Finding, Schema, asff, ocsf};

/// `detail-type` values of ASFF events.
const ASFF_DETAIL_TYPES: [&str; 2] = [
    "Security Hub Findings - Imported",
    "Security Hub Findings - Custom Action",
];
/// `detail-type` of Security Hub (OCSF) events.
const OCSF_DETAIL_TYPE: &str = "Findings Imported V2";
const SECURITY_HUB_SOURCE: &str = "aws.securityhub";

/// Decodes one message body into its findings.
///
/// An event whose `detail.findings` is an empty array and an empty JSON array both decode to no
/// findings: the producer said "nothing", a valid reading that needs no DLQ entry. A missing
/// `detail.findings` is an error, since that event is not one we understand.
pub fn decode(input: &[u8]) -> Result<Vec<Finding>, DecodeError> {
    decode_each(input)?.into_iter().collect()
}

/// Findings one by one: the outer error is the message's (not JSON, an unknown envelope), each
/// inner one a single finding's, so the worker can follow the good findings of an event that
/// also carries a bad one.
pub type EachFinding = Vec<Result<Finding, DecodeError>>;

/// [`decode`], keeping each finding's own result.
pub fn decode_each(input: &[u8]) -> Result<EachFinding, DecodeError> {
    let value = parse_json(input, Path::Root)?;
    decode_value(value, Path::Root, true)
}

pub(super) fn decode_value(
    value: Value,
    path: Path<'_>,
    sns_allowed: bool,
) -> Result<EachFinding, DecodeError> {
    match value {
        Value::Array(items) => Ok(decode_bare_list(items, path)),
        Value::Object(mut map) => {
            if is_sns_notification(&map) {
                if !sns_allowed {
                    return Err(path.error("an SNS notification inside an SNS notification is not supported"));
                }
                return decode_sns(map, path);
            }
            if map.contains_key("detail-type") || map.contains_key("detail") {
                return decode_event(map, path);
            }
            if classify(&map).is_none() && map.contains_key("Findings") {
                // `get-findings` / `get-findings-v2` output: the findings sit in `Findings[]`.
                let listing = Path::Key(&path, "Findings");
                return match map.remove("Findings") {
                    Some(Value::Array(items)) => Ok(decode_bare_list(items, listing)),
                    Some(other) => Err(listing.error(expected("an array", &other))),
                    None => Ok(Vec::new()),
                };
            }
            decode_bare(Value::Object(map), path).map(|f| vec![Ok(f)])
        }
        other => Err(path.error(format!(
            "expected an EventBridge event, an SNS notification, a finding or an array of findings, got {}",
            kind_of(&other)
        ))),
    }
}

fn is_sns_notification(map: &Map<String, Value>) -> bool {
    map.get("Type").and_then(Value::as_str) == Some("Notification") && map.contains_key("Message")
}

/// SNS without raw delivery carries the event as a JSON string in `Message`.
fn decode_sns(mut map: Map<String, Value>, path: Path<'_>) -> Result<EachFinding, DecodeError> {
    let message_path = Path::Key(&path, "Message");
    match map.remove("Message") {
        Some(Value::String(text)) => {
            let inner = parse_json(text.as_bytes(), message_path)?;
            decode_value(inner, message_path, false)
        }
        Some(other) => Err(message_path.error(expected("a string holding the event JSON", &other))),
        None => Err(message_path.error("missing")),
    }
}

fn decode_event(mut map: Map<String, Value>, path: Path<'_>) -> Result<EachFinding, DecodeError> {
    let event = Fields::from_map(&map, path);
    if let Some(source) = event.str("source")?
        && source != SECURITY_HUB_SOURCE
    {
        return Err(Path::Key(&path, "source").error(format!(
            "unsupported {source:?} (expected {SECURITY_HUB_SOURCE:?})"
        )));
    }
    let detail_type = event.required_str("detail-type")?;
    let schema = if ASFF_DETAIL_TYPES.contains(&detail_type) {
        Schema::Asff
    } else if detail_type == OCSF_DETAIL_TYPE {
        Schema::Ocsf
    } else {
        return Err(Path::Key(&path, "detail-type").error(format!(
            "unsupported {detail_type:?} (expected \"{}\", \"{}\" or \"{OCSF_DETAIL_TYPE}\")",
            ASFF_DETAIL_TYPES[0], ASFF_DETAIL_TYPES[1]
        )));
    };
    let region = event.str("region")?.map(str::to_owned);

    let detail_path = Path::Key(&path, "detail");
    let findings_path = Path::Key(&detail_path, "findings");
    let findings = match map.remove("detail") {
        None | Some(Value::Null) => return Err(detail_path.error("missing")),
        Some(Value::Object(mut detail)) => match detail.remove("findings") {
            None | Some(Value::Null) => return Err(findings_path.error("missing")),
            Some(Value::Array(findings)) => findings,
            Some(other) => return Err(findings_path.error(expected("an array", &other))),
        },
        Some(other) => return Err(detail_path.error(expected("an object", &other))),
    };

    Ok(findings
        .into_iter()
        .enumerate()
        .map(|(i, finding)| {
            let at = Path::Index(&findings_path, i);
            match schema {
                Schema::Asff => asff::decode_at(finding, at, region.as_deref()),
                Schema::Ocsf => ocsf::decode_at(finding, at, region.as_deref()),
            }
        })
        .collect())
}

fn decode_bare_list(items: Vec<Value>, path: Path<'_>) -> EachFinding {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| decode_bare(item, Path::Index(&path, i)))
        .collect()
}

/// One finding without an envelope; its schema is recognised by its keys.
pub(super) fn decode_bare(value: Value, path: Path<'_>) -> Result<Finding, DecodeError> {
    let schema = match &value {
        Value::Object(map) => classify(map),
        other => {
            return Err(path.error(expected("an ASFF or OCSF finding object", other)));
        }
    };
    match schema {
        Some(Schema::Asff) => asff::decode_at(value, path, None),
        Some(Schema::Ocsf) => ocsf::decode_at(value, path, None),
        None => Err(path.error(
            "not a recognised input: expected an EventBridge event (detail-type), an SNS \
             notification (Type \"Notification\"), an ASFF finding (SchemaVersion, Id, ProductArn) \
             or an OCSF finding (class_uid, finding_info, metadata)",
        )),
    }
}

/// ASFF keys are PascalCase and OCSF keys snake_case, so a few required keys tell them apart.
fn classify(map: &Map<String, Value>) -> Option<Schema> {
    const ASFF_KEYS: [&str; 4] = ["SchemaVersion", "ProductArn", "AwsAccountId", "GeneratorId"];
    const OCSF_KEYS: [&str; 3] = ["class_uid", "finding_info", "metadata"];
    if ASFF_KEYS.iter().any(|k| map.contains_key(*k)) {
        Some(Schema::Asff)
    } else if OCSF_KEYS.iter().any(|k| map.contains_key(*k)) {
        Some(Schema::Ocsf)
    } else {
        None
    }
}

/// Parses with serde_json (whose recursion limit turns deeply nested garbage into an error rather
/// than a stack overflow) after checking UTF-8 ourselves, so the error names the byte offset.
fn parse_json(input: &[u8], path: Path<'_>) -> Result<Value, DecodeError> {
    parse_json_at(input, path, (1, 1))
}

/// [`parse_json`] of bytes that start at `origin` (1-based line and column) of a larger input, so
/// a syntax error names its place in that input, not in the slice.
pub(super) fn parse_json_at(
    input: &[u8],
    path: Path<'_>,
    origin: (usize, usize),
) -> Result<Value, DecodeError> {
    let text = std::str::from_utf8(input).map_err(|e| {
        path.error(format!(
            "input is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        let (line, column) = (e.line(), e.column());
        if line == 0 {
            return path.error(format!("invalid JSON: {full}"));
        }
        let suffix = format!(" at line {line} column {column}");
        let reason = full.strip_suffix(&suffix).unwrap_or(&full);
        let (line, column) = if line == 1 {
            (origin.0, column + origin.1 - 1)
        } else {
            (line + origin.0 - 1, column)
        };
        path.error(format!(
            "invalid JSON at line {line} column {column}: {reason}"
        ))
    })
}

/// A location in the input, as a chain of borrowed segments rendered only for errors.
#[derive(Debug, Clone, Copy)]
pub(super) enum Path<'p> {
    Root,
    Key(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

impl Path<'_> {
    pub(super) fn error(&self, message: impl Into<String>) -> DecodeError {
        DecodeError::new(self.to_string(), message)
    }

    fn is_root(&self) -> bool {
        matches!(self, Path::Root)
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(parent, key) => {
                parent.fmt(f)?;
                let plain = !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if plain {
                    if !parent.is_root() {
                        f.write_str(".")?;
                    }
                    f.write_str(key)
                } else {
                    write!(f, "[{key:?}]")
                }
            }
            Path::Index(parent, i) => {
                parent.fmt(f)?;
                write!(f, "[{i}]")
            }
        }
    }
}

/// Typed, path-aware reads from one JSON object. JSON `null` counts as absent, as the AWS SDKs
/// treat it.
#[derive(Clone, Copy)]
pub(super) struct Fields<'v, 'p> {
    map: &'v Map<String, Value>,
    path: Path<'p>,
}

impl<'v, 'p> Fields<'v, 'p> {
    pub(super) fn from_map(map: &'v Map<String, Value>, path: Path<'p>) -> Self {
        Fields { map, path }
    }

    /// The finding itself must be an object; `what` names what was expected there.
    pub(super) fn of(value: &'v Value, path: Path<'p>, what: &str) -> Result<Self, DecodeError> {
        match value {
            Value::Object(map) => Ok(Fields { map, path }),
            other => Err(path.error(expected(what, other))),
        }
    }

    pub(super) fn path(&self) -> Path<'p> {
        self.path
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = (&'v String, &'v Value)> {
        self.map.iter()
    }

    pub(super) fn error(&self, key: &str, message: impl Into<String>) -> DecodeError {
        Path::Key(&self.path, key).error(message)
    }

    pub(super) fn get(&self, key: &str) -> Option<&'v Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(super) fn str(&self, key: &str) -> Result<Option<&'v str>, DecodeError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(key, expected("a string", other))),
        }
    }

    /// A string that must be present and non-empty (identifiers).
    pub(super) fn required_str(&self, key: &str) -> Result<&'v str, DecodeError> {
        match self.str(key)? {
            None => Err(self.error(key, "missing")),
            Some(s) if s.trim().is_empty() => Err(self.error(key, "must not be empty")),
            Some(s) => Ok(s),
        }
    }

    pub(super) fn string(&self, key: &str) -> Result<String, DecodeError> {
        Ok(self.str(key)?.unwrap_or_default().to_owned())
    }

    pub(super) fn opt_string(&self, key: &str) -> Result<Option<String>, DecodeError> {
        Ok(self.str(key)?.map(str::to_owned))
    }

    pub(super) fn object<'q>(
        &'q self,
        key: &'q str,
    ) -> Result<Option<Fields<'v, 'q>>, DecodeError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Fields {
                map,
                path: Path::Key(&self.path, key),
            })),
            Some(other) => Err(self.error(key, expected("an object", other))),
        }
    }

    pub(super) fn required_object<'q>(
        &'q self,
        key: &'q str,
    ) -> Result<Fields<'v, 'q>, DecodeError> {
        self.object(key)?.ok_or_else(|| self.error(key, "missing"))
    }

    pub(super) fn array(&self, key: &str) -> Result<Option<&'v [Value]>, DecodeError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(self.error(key, expected("an array", other))),
        }
    }

    /// Maps every element of the array at `key`, which must be an object.
    pub(super) fn objects<T>(
        &self,
        key: &str,
        mut each: impl FnMut(Fields<'v, '_>) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let Some(items) = self.array(key)? else {
            return Ok(Vec::new());
        };
        let at = Path::Key(&self.path, key);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_path = Path::Index(&at, i);
            out.push(each(Fields::of(item, item_path, "an object")?)?);
        }
        Ok(out)
    }

    /// An array of strings (`Types`, `RelatedRequirements`).
    pub(super) fn strings(&self, key: &str) -> Result<Vec<String>, DecodeError> {
        let Some(items) = self.array(key)? else {
            return Ok(Vec::new());
        };
        let at = Path::Key(&self.path, key);
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(Path::Index(&at, i).error(expected("a string", other))),
            })
            .collect()
    }

    /// A string-to-string map (`Tags`, `ProductFields`, `UserDefinedFields`): anything else inside
    /// is an error naming the offending key.
    pub(super) fn string_map(&self, key: &str) -> Result<BTreeMap<String, String>, DecodeError> {
        let map = match self.get(key) {
            None => return Ok(BTreeMap::new()),
            Some(Value::Object(map)) => map,
            Some(other) => return Err(self.error(key, expected("an object of strings", other))),
        };
        let at = Path::Key(&self.path, key);
        map.iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(Path::Key(&at, k).error(expected("a string", other))),
            })
            .collect()
    }

    pub(super) fn number(&self, key: &str) -> Result<Option<f64>, DecodeError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) => Ok(Some(x)),
                None => Err(self.error(key, "number out of range")),
            },
            Some(other) => Err(self.error(key, expected("a number", other))),
        }
    }

    pub(super) fn integer(&self, key: &str) -> Result<Option<i64>, DecodeError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(x) => Ok(Some(x)),
                None => Err(self.error(key, format!("expected an integer, got {n}"))),
            },
            Some(other) => Err(self.error(key, expected("an integer", other))),
        }
    }
}

pub(super) fn expected(what: &str, got: &Value) -> String {
    format!("expected {what}, got {}", kind_of(got))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The `(partition, region)` of an ARN (`arn:aws:securityhub:us-east-1::product/aws/guardduty`).
pub(super) fn arn_partition_region(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(5, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let partition = parts.next()?;
    let _service = parts.next()?;
    let region = parts.next()?;
    Some((partition, region))
}

/// Builds a Security Hub console link that opens the findings list filtered to one finding.
///
/// The console keeps its filter in the URL fragment as `search=<Field>=\operator\:EQUALS\:<value>`,
/// and that whole expression is URL-encoded twice (`:` in the value becomes `%253A`). This is the
/// shape the console itself produces when a filter is applied, e.g.
/// `https://us-east-1.console.aws.amazon.com/securityhub/home?region=us-east-1#/findings?search=Id%3D%255Coperator%255C%253AEQUALS%255C%253Aarn%253Aaws...`.
/// `app` is `securityhub` (CSPM console, ASFF `Id`) or `securityhub/v2` (Security Hub console, OCSF
/// `finding_info.uid`).
pub(super) fn console_url(
    partition: &str,
    region: &str,
    app: &str,
    field: &str,
    value: &str,
) -> String {
    let host = match partition {
        "aws-cn" => "console.amazonaws.cn",
        "aws-us-gov" => "console.amazonaws-us-gov.com",
        _ => "console.aws.amazon.com",
    };
    let mut url = String::with_capacity(160 + value.len() * 3);
    url.push_str("https://");
    if !region.is_empty() && partition != "aws-us-gov" {
        url.push_str(region);
        url.push('.');
    }
    url.push_str(host);
    url.push('/');
    url.push_str(app);
    url.push_str("/home");
    if !region.is_empty() {
        url.push_str("?region=");
        percent_encode_into(region, &mut url);
    }
    url.push_str("#/findings?search=");
    url.push_str(field);
    url.push_str("%3D%255Coperator%255C%253AEQUALS%255C%253A");
    let mut once = String::with_capacity(value.len() * 3);
    percent_encode_into(value, &mut once);
    percent_encode_into(&once, &mut url);
    url
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn percent_encode_into(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_the_operator_reads_them() {
        let root = Path::Root;
        let message = Path::Key(&root, "Message");
        let detail = Path::Key(&message, "detail");
        let findings = Path::Key(&detail, "findings");
        let first = Path::Index(&findings, 0);
        let fields = Path::Key(&first, "ProductFields");
        let odd = Path::Key(&fields, "aws/securityhub/ProductName");
        assert_eq!(first.to_string(), "Message.detail.findings[0]");
        assert_eq!(
            odd.to_string(),
            r#"Message.detail.findings[0].ProductFields["aws/securityhub/ProductName"]"#
        );
        assert_eq!(Path::Index(&root, 3).to_string(), "[3]");
        assert_eq!(Path::Key(&root, "Id").to_string(), "Id");
    }

    #[test]
    fn console_url_double_encodes_the_value() {
        let url = console_url("aws", "eu-west-1", "securityhub", "Id", "arn:aws:x/y z");
        assert_eq!(
            url,
            "https://eu-west-1.console.aws.amazon.com/securityhub/home?region=eu-west-1\
             #/findings?search=Id%3D%255Coperator%255C%253AEQUALS%255C%253Aarn%253Aaws%253Ax%252Fy%2520z"
        );
    }

    #[test]
    fn arn_parts() {
        assert_eq!(
            arn_partition_region("arn:aws-us-gov:securityhub:us-gov-west-1::product/aws/guardduty"),
            Some(("aws-us-gov", "us-gov-west-1"))
        );
        assert_eq!(arn_partition_region("guardduty"), None);
    }
}
