#!/usr/bin/env python3
"""The Python + Jinja2 bridge `findings-bridge render` is measured against (BENCHMARKS.md §1).

    bridge.py render [--mappings DIR] [--now RFC3339] FILE|-

What a team would write instead of the bridge: the usual Lambda-style Python, straightforward and
idiomatic, with the same semantics as the Rust code so that the two print the same bytes for the
same input and mapping files (scripts/render-bench checks that before it times anything):

- decode: EventBridge events (`Security Hub Findings - Imported` / `- Custom Action` with ASFF,
  `Findings Imported V2` with OCSF), SNS-wrapped events, bare ASFF / OCSF findings, arrays of them,
  `{"Findings": [...]}`, and several messages one after another (NDJSON or concatenated), into the
  normalized finding dict the templates see (README, "Templates");
- route: the mapping files of `mappings/` (TOML, `[defaults]` merged into rules), criteria with
  the automation-rule semantics (positive comparisons ORed, negative ANDed, fields ANDed, any
  resource), the application inventory of `_context.toml`, rule order, terminal rules, one route
  per team;
- render: Jinja2 with StrictUndefined and the same helpers (`truncate`, `severity_score`,
  `add_days`, `date`, `console_link`, `now`), severity overrides, the Jira Cloud and ServiceNow
  create bodies with the same limits, labels and Markdown → Atlassian Document Format conversion.

Only Jira Cloud bodies are produced (`JIRA_API_VERSION=2`, wiki markup, is not ported). Decode
errors are reported, not located as precisely as the Rust decoder does.
"""

import datetime as dt
import hashlib
import json
import os
import pathlib
import re
import sys
import tomllib
import unicodedata
import urllib.parse

import jinja2

# ---------------------------------------------------------------------------------------------
# Findings

SEVERITIES = ["INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
DEFAULT_SCORE = {"INFORMATIONAL": 0, "LOW": 30, "MEDIUM": 50, "HIGH": 70, "CRITICAL": 90}
OCSF_SEVERITY = {1: "INFORMATIONAL", 2: "LOW", 3: "MEDIUM", 4: "HIGH", 5: "CRITICAL", 6: "CRITICAL"}
ASFF_DETAIL_TYPES = ("Security Hub Findings - Imported", "Security Hub Findings - Custom Action")
OCSF_DETAIL_TYPE = "Findings Imported V2"
COMPLIANCE_STATUSES = ["PASSED", "WARNING", "FAILED", "NOT_AVAILABLE"]
PRODUCT_NAMES = {
    "guardduty": "GuardDuty",
    "inspector": "Inspector",
    "macie": "Macie",
    "securityhub": "Security Hub",
    "access-analyzer": "IAM Access Analyzer",
    "firewall-manager": "Firewall Manager",
    "config": "Config",
    "health": "Health",
    "detective": "Detective",
    "ssm-patch-manager": "Systems Manager Patch Manager",
    "ssm-opscenter": "Systems Manager OpsCenter",
    "iot-device-defender": "IoT Device Defender",
}


class DecodeError(Exception):
    pass


def severity_label(label):
    for s in SEVERITIES:
        if s.lower() == label.lower():
            return s
    return None


def severity_from_normalized(score):
    if score <= 0:
        return "INFORMATIONAL"
    if score <= 39:
        return "LOW"
    if score <= 69:
        return "MEDIUM"
    if score <= 89:
        return "HIGH"
    return "CRITICAL"


def get(obj, key):
    """JSON null counts as absent."""
    return obj.get(key) if isinstance(obj, dict) else None


def get_str(obj, key):
    value = get(obj, key)
    if value is not None and not isinstance(value, str):
        raise DecodeError(f"{key}: expected a string")
    return value


def required_str(obj, key):
    value = get_str(obj, key)
    if value is None:
        raise DecodeError(f"{key}: missing")
    if not value.strip():
        raise DecodeError(f"{key}: must not be empty")
    return value


def get_obj(obj, key):
    value = get(obj, key)
    if value is not None and not isinstance(value, dict):
        raise DecodeError(f"{key}: expected an object")
    return value


def get_list(obj, key):
    value = get(obj, key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise DecodeError(f"{key}: expected an array")
    return value


def string_list(obj, key):
    items = get_list(obj, key)
    for item in items:
        if not isinstance(item, str):
            raise DecodeError(f"{key}: expected strings")
    return list(items)


def string_map(obj, key):
    value = get(obj, key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DecodeError(f"{key}: expected an object of strings")
    out = {}
    for k, v in value.items():
        if v is None:
            continue
        if not isinstance(v, str):
            raise DecodeError(f"{key}.{k}: expected a string")
        out[k] = v
    return out


def integer(obj, key):
    value = get(obj, key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{key}: expected an integer")
    return value


def non_empty(s):
    return s if s is not None and s.strip() else None


def arn_partition_region(arn):
    parts = arn.split(":", 4)
    if len(parts) < 4 or parts[0] != "arn":
        return None
    return parts[1], parts[3]


def product_segments(arn):
    resource = arn.rsplit(":", 1)[-1]
    parts = resource.split("/")
    if len(parts) < 3 or not parts[0].startswith("product"):
        return None
    return parts[1], parts[2]


def product_name_from_arn(arn):
    seg = product_segments(arn)
    if seg is None:
        return ""
    company, product = seg
    if company != "aws":
        return product
    return PRODUCT_NAMES.get(product, product)


def company_name_from_arn(arn):
    seg = product_segments(arn)
    if seg is None:
        return ""
    return "AWS" if seg[0] == "aws" else seg[0]


def quote(text):
    return urllib.parse.quote(text, safe="-._~")


def console_url(partition, region, app, field, value):
    host = {
        "aws-cn": "console.amazonaws.cn",
        "aws-us-gov": "console.amazonaws-us-gov.com",
    }.get(partition, "console.aws.amazon.com")
    url = "https://"
    if region and partition != "aws-us-gov":
        url += region + "."
    url += f"{host}/{app}/home"
    if region:
        url += "?region=" + quote(region)
    url += f"#/findings?search={field}%3D%255Coperator%255C%253AEQUALS%255C%253A"
    return url + quote(quote(value))


def decode_asff(f, region_hint=None):
    if not isinstance(f, dict):
        raise DecodeError("expected an ASFF finding object")
    fid = required_str(f, "Id")
    product_arn = required_str(f, "ProductArn")
    account_id = required_str(f, "AwsAccountId")
    product_fields = string_map(f, "ProductFields")
    user_defined_fields = string_map(f, "UserDefinedFields")
    product_name = non_empty(get_str(f, "ProductName"))
    if product_name is None:
        product_name = product_fields.get(
            "aws/securityhub/ProductName", product_name_from_arn(product_arn)
        )
    company_name = non_empty(get_str(f, "CompanyName"))
    if company_name is None:
        company_name = product_fields.get(
            "aws/securityhub/CompanyName", company_name_from_arn(product_arn)
        )
    arn_partition, arn_region = arn_partition_region(product_arn) or ("aws", "")
    region = (
        non_empty(get_str(f, "Region")) or non_empty(arn_region) or non_empty(region_hint) or ""
    )

    sev = get_obj(f, "Severity")
    if sev is None:
        raise DecodeError("Severity: missing")
    normalized = get(sev, "Normalized")
    if normalized is not None:
        if isinstance(normalized, bool) or not isinstance(normalized, (int, float)):
            raise DecodeError("Severity.Normalized: expected a number")
        if not 0 <= normalized <= 100:
            raise DecodeError("Severity.Normalized: expected 0-100")
        normalized = int(normalized + 0.5)  # Rust f64::round: half away from zero
    label = get_str(sev, "Label")
    if label is not None:
        label = severity_label(label)
        if label is None:
            raise DecodeError("Severity.Label: unknown")
    if label is not None:
        severity, score = label, normalized if normalized is not None else DEFAULT_SCORE[label]
    elif normalized is not None:
        severity, score = severity_from_normalized(normalized), normalized
    else:
        raise DecodeError("Severity: has neither Label nor Normalized")

    workflow = get_obj(f, "Workflow")
    status = get_str(workflow, "Status") if workflow else None
    if status is not None:
        workflow_status = status.upper()
        if workflow_status not in ("NEW", "NOTIFIED", "RESOLVED", "SUPPRESSED"):
            raise DecodeError("Workflow.Status: unknown")
    else:
        state = get_str(f, "WorkflowState")
        if state is None:
            workflow_status = "NEW"
        else:
            workflow_status = {
                "NEW": "NEW",
                "ASSIGNED": "NOTIFIED",
                "IN_PROGRESS": "NOTIFIED",
                "DEFERRED": "SUPPRESSED",
                "RESOLVED": "RESOLVED",
            }.get(state.upper())
            if workflow_status is None:
                raise DecodeError("WorkflowState: unknown")
    record_state = get_str(f, "RecordState")
    if record_state is None:
        record_state = "ACTIVE"
    elif record_state.upper() in ("ACTIVE", "ARCHIVED"):
        record_state = record_state.upper()
    else:
        raise DecodeError("RecordState: unknown")

    c = get_obj(f, "Compliance")
    if c is None:
        compliance = {"status": None, "control_id": None, "standards": [], "related_requirements": []}
    else:
        status = get_str(c, "Status")
        if status is not None:
            known = [s for s in COMPLIANCE_STATUSES if s.lower() == status.lower()]
            if not known:
                raise DecodeError("Compliance.Status: unknown")
            status = known[0]
        control_id = get_str(c, "SecurityControlId")
        if control_id is None:
            control_id = product_fields.get("ControlId", product_fields.get("RuleId"))
        standards = []
        for s in get_list(c, "AssociatedStandards"):
            if not isinstance(s, dict):
                raise DecodeError("Compliance.AssociatedStandards: expected objects")
            sid = get_str(s, "StandardsId") or ""
            if sid:
                standards.append(sid)
        compliance = {
            "status": status,
            "control_id": control_id,
            "standards": standards,
            "related_requirements": string_list(c, "RelatedRequirements"),
        }

    resources = []
    for r in get_list(f, "Resources"):
        if not isinstance(r, dict):
            raise DecodeError("Resources: expected objects")
        resources.append(
            {
                "type": required_str(r, "Type"),
                "id": required_str(r, "Id"),
                "region": get_str(r, "Region"),
                "partition": get_str(r, "Partition"),
                "tags": string_map(r, "Tags"),
            }
        )

    remediation = {"text": None, "url": None}
    rec = get_obj(get_obj(f, "Remediation"), "Recommendation")
    if rec is not None:
        remediation = {"text": get_str(rec, "Text"), "url": get_str(rec, "Url")}

    return {
        "id": fid,
        "schema": "asff",
        "product_arn": product_arn,
        "product_name": product_name,
        "company_name": company_name,
        "generator_id": get_str(f, "GeneratorId") or "",
        "account_id": account_id,
        "region": region,
        "title": get_str(f, "Title") or "",
        "description": get_str(f, "Description") or "",
        "severity": severity,
        "severity_score": score,
        "types": string_list(f, "Types"),
        "resources": resources,
        "compliance": compliance,
        "workflow_status": workflow_status,
        "record_state": record_state,
        "created_at": get_str(f, "CreatedAt"),
        "updated_at": get_str(f, "UpdatedAt"),
        "first_observed_at": get_str(f, "FirstObservedAt"),
        "last_observed_at": get_str(f, "LastObservedAt"),
        "remediation": remediation,
        "user_defined_fields": user_defined_fields,
        "product_fields": product_fields,
        "console_url": console_url(arn_partition, region, "securityhub", "Id", fid),
        "raw": f,
    }


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def ocsf_time(obj, key, dt_key):
    text = get_str(obj, dt_key)
    if text is not None:
        return text
    ms = integer(obj, key)
    if ms is None:
        return None
    t = EPOCH + dt.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def decode_ocsf(f, region_hint=None):
    if not isinstance(f, dict):
        raise DecodeError("expected an OCSF finding object")
    class_uid = integer(f, "class_uid")
    if class_uid is not None and not 2000 <= class_uid <= 2099:
        raise DecodeError("class_uid: unsupported")
    info = get_obj(f, "finding_info")
    if info is None:
        raise DecodeError("finding_info: missing")
    fid = required_str(info, "uid")
    metadata = get_obj(f, "metadata")
    if metadata is None:
        raise DecodeError("metadata: missing")
    metadata_uid = non_empty(get_str(metadata, "uid"))
    product = get_obj(metadata, "product")
    product_uid = non_empty(get_str(product, "uid")) if product else None
    product_label = non_empty(get_str(product, "name")) if product else None
    if product_uid is None and metadata_uid is None:
        raise DecodeError("metadata.product.uid: missing")
    product_arn = product_uid or product_label or ""
    product_name = product_label if product_label is not None else product_name_from_arn(product_arn)
    vendor = non_empty(get_str(product, "vendor_name")) if product else None
    company_name = vendor if vendor is not None else company_name_from_arn(product_arn)

    generator_id = ""
    analytic = get_obj(info, "analytic")
    feature = get_obj(product, "feature") if product else None
    for source in (analytic, feature):
        if generator_id or source is None:
            continue
        for key in ("uid", "name"):
            v = get_str(source, key)
            if v:
                generator_id = v
                break

    cloud = get_obj(f, "cloud")
    if cloud is None:
        raise DecodeError("cloud: missing")
    account = get_obj(cloud, "account")
    if account is None:
        raise DecodeError("cloud.account: missing")
    account_id = required_str(account, "uid")

    resources = []
    for r in get_list(f, "resources"):
        if not isinstance(r, dict):
            raise DecodeError("resources: expected objects")
        rid = get_str(r, "uid") or get_str(r, "name") or ""
        tags_value = get(r, "tags")
        if tags_value is None:
            tags = {}
        elif isinstance(tags_value, dict):
            tags = string_map(r, "tags")
        elif isinstance(tags_value, list):
            tags = {}
            for tag in tags_value:
                if not isinstance(tag, dict):
                    raise DecodeError("tags: expected objects")
                tags[required_str(tag, "name")] = get_str(tag, "value") or ""
        else:
            raise DecodeError("tags: expected a list of {name, value} or an object of strings")
        resources.append(
            {
                "type": get_str(r, "type") or "",
                "id": rid,
                "region": get_str(r, "region"),
                "partition": get_str(r, "cloud_partition"),
                "tags": tags,
            }
        )

    region = get_str(cloud, "region") or None
    if region is None:
        region = next((r["region"] for r in resources if r["region"] is not None), None)
    if region is None:
        region = region_hint or ""
    partition = next((r["partition"] for r in resources if r["partition"] is not None), None)
    if partition is None:
        parts = arn_partition_region(product_arn)
        partition = parts[0] if parts else "aws"

    severity_id = integer(f, "severity_id")
    caption = get_str(f, "severity")
    if severity_id is None and caption is None:
        raise DecodeError("severity_id: missing")
    severity = OCSF_SEVERITY.get(severity_id)
    if severity is None:
        if caption is not None and caption.lower() == "fatal":
            severity = "CRITICAL"
        else:
            severity = (severity_label(caption) if caption is not None else None) or "INFORMATIONAL"

    closed = integer(f, "activity_id") == 3
    status_id = integer(f, "status_id")
    archived = False
    if status_id is not None:
        workflow_status = {1: "NEW", 2: "NOTIFIED", 3: "SUPPRESSED", 4: "RESOLVED"}.get(status_id, "NEW")
        archived = status_id == 5
    else:
        caption_status = (get_str(f, "status") or "").lower()
        workflow_status = {
            "in progress": "NOTIFIED",
            "suppressed": "SUPPRESSED",
            "resolved": "RESOLVED",
        }.get(caption_status, "NEW")
        archived = caption_status == "archived"
    record_state = "ARCHIVED" if archived or closed else "ACTIVE"
    if archived:
        workflow_status = "NEW"

    c = get_obj(f, "compliance")
    if c is None:
        compliance = {"status": None, "control_id": None, "standards": [], "related_requirements": []}
    else:
        status = {1: "PASSED", 2: "WARNING", 3: "FAILED"}.get(integer(c, "status_id"))
        if status is None:
            text = get_str(c, "status")
            if text is not None:
                status = {
                    "pass": "PASSED",
                    "passed": "PASSED",
                    "warning": "WARNING",
                    "fail": "FAILED",
                    "failed": "FAILED",
                }.get(text.lower(), "NOT_AVAILABLE")
            elif get(c, "status_id") is not None:
                status = "NOT_AVAILABLE"
        compliance = {
            "status": status,
            "control_id": get_str(c, "control"),
            "standards": string_list(c, "standards"),
            "related_requirements": string_list(c, "requirements"),
        }
    rem = get_obj(f, "remediation")
    if rem is None:
        remediation = {"text": None, "url": None}
    else:
        refs = string_list(rem, "references")
        remediation = {"text": get_str(rem, "desc"), "url": refs[0] if refs else None}

    updated_at = ocsf_time(info, "modified_time", "modified_time_dt")
    if updated_at is None:
        updated_at = ocsf_time(f, "time", "time_dt")
    product_fields = {}
    unmapped = get(f, "unmapped")
    if isinstance(unmapped, dict):
        product_fields.update({k: v for k, v in unmapped.items() if isinstance(v, str)})
    product_fields.update({f"metadata.{k}": v for k, v in metadata.items() if isinstance(v, str)})

    return {
        "id": fid,
        "schema": "ocsf",
        "product_arn": product_arn,
        "product_name": product_name,
        "company_name": company_name,
        "generator_id": generator_id,
        "account_id": account_id,
        "region": region,
        "title": get_str(info, "title") or "",
        "description": get_str(info, "desc") or "",
        "severity": severity,
        "severity_score": DEFAULT_SCORE[severity],
        "types": string_list(info, "types"),
        "resources": resources,
        "compliance": compliance,
        "workflow_status": workflow_status,
        "record_state": record_state,
        "created_at": ocsf_time(info, "created_time", "created_time_dt"),
        "updated_at": updated_at,
        "first_observed_at": ocsf_time(info, "first_seen_time", "first_seen_time_dt"),
        "last_observed_at": ocsf_time(info, "last_seen_time", "last_seen_time_dt"),
        "remediation": remediation,
        "user_defined_fields": {},
        "product_fields": product_fields,
        "console_url": console_url(partition, region, "securityhub/v2", "finding_info.uid", fid),
        "raw": f,
    }


def classify(obj):
    if any(k in obj for k in ("SchemaVersion", "ProductArn", "AwsAccountId", "GeneratorId")):
        return decode_asff
    if any(k in obj for k in ("class_uid", "finding_info", "metadata")):
        return decode_ocsf
    return None


def decode_bare(value):
    decoder = classify(value) if isinstance(value, dict) else None
    if decoder is None:
        raise DecodeError("not a recognised input")
    return decoder(value)


def decode_message(value, sns_allowed=True):
    """One message → a list of (finding or DecodeError)."""
    if isinstance(value, list):
        return [attempt(decode_bare, item) for item in value]
    if not isinstance(value, dict):
        raise DecodeError("expected an EventBridge event, an SNS notification or findings")
    if value.get("Type") == "Notification" and "Message" in value:
        if not sns_allowed:
            raise DecodeError("an SNS notification inside an SNS notification is not supported")
        if not isinstance(value["Message"], str):
            raise DecodeError("Message: expected a string holding the event JSON")
        return decode_message(json.loads(value["Message"]), sns_allowed=False)
    if "detail-type" in value or "detail" in value:
        source = get_str(value, "source")
        if source is not None and source != "aws.securityhub":
            raise DecodeError("source: unsupported")
        detail_type = required_str(value, "detail-type")
        if detail_type in ASFF_DETAIL_TYPES:
            decoder = decode_asff
        elif detail_type == OCSF_DETAIL_TYPE:
            decoder = decode_ocsf
        else:
            raise DecodeError(f"detail-type: unsupported {detail_type!r}")
        region = get_str(value, "region")
        detail = get_obj(value, "detail")
        if detail is None:
            raise DecodeError("detail: missing")
        findings = get(detail, "findings")
        if findings is None:
            raise DecodeError("detail.findings: missing")
        if not isinstance(findings, list):
            raise DecodeError("detail.findings: expected an array")
        return [attempt(decoder, f, region) for f in findings]
    if classify(value) is None and "Findings" in value:
        findings = value["Findings"]
        if findings is None:
            return []
        if not isinstance(findings, list):
            raise DecodeError("Findings: expected an array")
        return [attempt(decode_bare, item) for item in findings]
    return [attempt(decode_bare, value)]


def attempt(decoder, *args):
    try:
        return decoder(*args)
    except DecodeError as e:
        return e


def messages(text):
    """The top-level values of the input: one message, NDJSON, or concatenated events."""
    decoder = json.JSONDecoder()
    pos = 0
    end = len(text)
    while True:
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if pos >= end:
            return
        value, pos = decoder.raw_decode(text, pos)
        yield value


# ---------------------------------------------------------------------------------------------
# Mapping files: inventory, criteria, rules


def arn_account(resource_id):
    if not resource_id.startswith("arn:"):
        return None
    parts = resource_id[4:].split(":")
    return parts[3] if len(parts) > 3 and parts[3] else None


def load_inventory(directory):
    path = directory / "_context.toml"
    if not path.exists():
        return []
    apps = []
    for app in tomllib.loads(path.read_text()).get("applications", []):
        apps.append(
            {
                "name": app["name"].strip(),
                "owner": app["owner"].strip(),
                "criticality": app["criticality"].strip().upper(),
                "accounts": [a.strip() for a in app.get("accounts", [])],
                "resource_prefixes": [p.strip() for p in app.get("resource_prefixes", [])],
                "tags": dict(app.get("tags", {})),
            }
        )
    return apps


def application_for(inventory, finding):
    for app in inventory:
        if finding["account_id"] in app["accounts"]:
            return app
        for r in finding["resources"]:
            if arn_account(r["id"]) in app["accounts"]:
                return app
            if any(r["id"].startswith(p) for p in app["resource_prefixes"]):
                return app
            if any(r["tags"].get(k) == v for k, v in app["tags"].items()):
                return app
    return None


def parse_time(text):
    try:
        t = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo else None


def string_values(field, f, app):
    """Every value of a string criteria field (several for types, standards, resources)."""
    simple = {
        "Id": "id",
        "ProductArn": "product_arn",
        "ProductName": "product_name",
        "CompanyName": "company_name",
        "GeneratorId": "generator_id",
        "AwsAccountId": "account_id",
        "Region": "region",
        "Title": "title",
        "Description": "description",
        "SeverityLabel": "severity",
        "WorkflowStatus": "workflow_status",
        "RecordState": "record_state",
    }
    if field in simple:
        return [f[simple[field]]]
    if field == "Type":
        return f["types"]
    resource_keys = {
        "ResourceType": "type",
        "ResourceId": "id",
        "ResourceRegion": "region",
        "ResourcePartition": "partition",
    }
    if field in resource_keys:
        key = resource_keys[field]
        return [r[key] for r in f["resources"] if r[key] is not None]
    if field == "ComplianceStatus":
        return [f["compliance"]["status"]] if f["compliance"]["status"] is not None else []
    if field == "ComplianceSecurityControlId":
        cid = f["compliance"]["control_id"]
        return [cid] if cid is not None else []
    if field == "ComplianceAssociatedStandardsId":
        return f["compliance"]["standards"]
    if field == "ApplicationName":
        return [app["name"]] if app else []
    if field == "ApplicationCriticality":
        return [app["criticality"]] if app else []
    raise KeyError(field)


def map_pairs(field, f):
    if field == "ResourceTags":
        return [(k, v) for r in f["resources"] for k, v in r["tags"].items()]
    if field == "UserDefinedFields":
        return list(f["user_defined_fields"].items())
    return list(f["product_fields"].items())


def text_hit(op, value, v):
    if op == "EQUALS":
        return v == value
    if op == "PREFIX":
        return v.startswith(value)
    return value in v


NEGATIONS = {"NOT_EQUALS": "EQUALS", "PREFIX_NOT_EQUALS": "PREFIX", "NOT_CONTAINS": "CONTAINS"}
MAP_FIELDS = ("ResourceTags", "UserDefinedFields", "ProductFields")
DATE_FIELDS = {
    "CreatedAt": "created_at",
    "UpdatedAt": "updated_at",
    "FirstObservedAt": "first_observed_at",
    "LastObservedAt": "last_observed_at",
}


def parse_bound(text, is_end):
    t = parse_time(text)
    if t is not None:
        return t
    d = dt.date.fromisoformat(text)
    clock = dt.time(23, 59, 59, 999999) if is_end else dt.time(0, 0, 0)
    return dt.datetime.combine(d, clock, tzinfo=dt.timezone.utc)


def criteria_match(criteria, f, app, now):
    """Automation-rule filters: positive comparisons ORed, negative ANDed, fields ANDed."""
    for field, filters in criteria.items():
        if field in MAP_FIELDS:
            pairs = map_pairs(field, f)
            positive = [c for c in filters if not c["Comparison"].startswith("NOT_")]
            negative = [c for c in filters if c["Comparison"].startswith("NOT_")]

            def hit(c, op):
                return any(
                    k == c["Key"] and (c["Value"] in v if op == "CONTAINS" else v == c["Value"])
                    for k, v in pairs
                )

            if positive and not any(hit(c, c["Comparison"]) for c in positive):
                return False
            if any(hit(c, NEGATIONS[c["Comparison"]]) for c in negative):
                return False
        elif field == "SeverityNormalized":
            score = f["severity_score"]
            if not any(
                ("Gte" not in c or score >= c["Gte"])
                and ("Lte" not in c or score <= c["Lte"])
                and ("Eq" not in c or score == c["Eq"])
                for c in filters
            ):
                return False
        elif field in DATE_FIELDS:
            t = parse_time(f[DATE_FIELDS[field]]) if f[DATE_FIELDS[field]] else None
            if t is None:
                return False
            ok = False
            for c in filters:
                if "DateRange" in c:
                    ok = ok or t >= now - dt.timedelta(days=c["DateRange"]["Value"])
                else:
                    start = parse_bound(c["Start"], False) if "Start" in c else None
                    end = parse_bound(c["End"], True) if "End" in c else None
                    ok = ok or ((start is None or t >= start) and (end is None or t <= end))
            if not ok:
                return False
        else:
            values = string_values(field, f, app)
            positive = [c for c in filters if c["Comparison"] not in NEGATIONS]
            negative = [c for c in filters if c["Comparison"] in NEGATIONS]
            if positive and not any(
                text_hit(c["Comparison"], c["Value"], v) for c in positive for v in values
            ):
                return False
            if any(
                text_hit(NEGATIONS[c["Comparison"]], c["Value"], v) for c in negative for v in values
            ):
                return False
    return True


# ---------------------------------------------------------------------------------------------
# Templates


def truncate_filter(value, length=255):
    value = str(value)
    if len(value) <= length:
        return value
    return value[: max(length - 1, 0)] + "…"


def severity_score_filter(label):
    s = severity_label(str(label))
    if s is None:
        raise ValueError(f"severity_score: {label!r} is not a severity label")
    return SEVERITIES.index(s) + 1


def parse_instant(value):
    t = parse_time(value)
    if t is not None:
        return t.astimezone(dt.timezone.utc)
    try:
        d = dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an RFC 3339 timestamp or a YYYY-MM-DD date")
    return dt.datetime.combine(d, dt.time(), tzinfo=dt.timezone.utc)


def rfc3339(t):
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def add_days_filter(value, days):
    return rfc3339(parse_instant(str(value)) + dt.timedelta(days=int(days)))


def date_filter(value, fmt="%Y-%m-%d"):
    return parse_instant(str(value)).strftime(fmt)


def console_link_filter(url, text="Open in the Security Hub console"):
    return f"[{text}]({url})"


def finalize(value):
    # Print values the way the Rust engine (minijinja) prints them.
    if value is None:
        return "none"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


def make_environment(now):
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        finalize=finalize,
    )
    env.filters.update(
        truncate=truncate_filter,
        severity_score=severity_score_filter,
        add_days=add_days_filter,
        date=date_filter,
        console_link=console_link_filter,
    )
    now_text = rfc3339(now)
    env.globals["now"] = lambda: now_text
    return env


class Template:
    """Text without template syntax is used as is; anything else is a compiled Jinja2 template
    whose output is stripped."""

    def __init__(self, env, source):
        self.source = source
        self.compiled = None
        if "{{" in source or "{%" in source or "{#" in source:
            self.compiled = env.from_string(source)

    def render(self, ctx):
        if self.compiled is None:
            return self.source
        return self.compiled.render(ctx).strip()


def compile_fields(env, value):
    if isinstance(value, str):
        return Template(env, value)
    if isinstance(value, list):
        return [compile_fields(env, v) for v in value]
    if isinstance(value, dict):
        return {k: compile_fields(env, v) for k, v in value.items()}
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return Template(env, value.isoformat())
    return value


def load_mappings(directory, now):
    env = make_environment(now)
    rules = []
    for path in sorted(directory.glob("*.toml")):
        if path.name.startswith("_") or not path.is_file():
            continue
        doc = tomllib.loads(path.read_text())
        defaults = doc.get("defaults", {})
        for position, raw in enumerate(doc.get("rules", [])):
            kind = "jira" if "jira" in raw else "servicenow"
            spec = dict(defaults.get(kind, {}))
            own = raw[kind]
            labels = list(spec.get("labels", [])) + list(own.get("labels", []))
            fields = dict(spec.get("fields", {}))
            fields.update(own.get("fields", {}))
            spec.update(own)
            spec["labels"] = labels
            spec["fields"] = fields
            compiled = {k: compile_fields(env, v) for k, v in spec.items() if k != "table"}
            override = raw.get("severity_override", defaults.get("severity_override"))
            rules.append(
                {
                    "team": doc["team"],
                    "name": raw["name"].strip(),
                    "order": raw["order"],
                    "file": path.name,
                    "position": position,
                    "terminal": raw.get("terminal", defaults.get("terminal", True)),
                    "target": raw.get("target", defaults.get("target", kind)),
                    "kind": kind,
                    "criteria": raw.get("criteria", {}),
                    "spec": compiled,
                    "severity_override": Template(env, override) if override else None,
                }
            )
    rules.sort(key=lambda r: (r["order"], r["file"], r["position"]))
    return {"rules": rules, "inventory": load_inventory(directory), "now": now}


def route(mappings, finding, app):
    routes = []
    for rule in mappings["rules"]:
        if not criteria_match(rule["criteria"], finding, app, mappings["now"]):
            continue
        if not any(r["team"] == rule["team"] for r in routes):
            routes.append(rule)
        if rule["terminal"]:
            break
    return routes


# ---------------------------------------------------------------------------------------------
# Light Markdown → Atlassian Document Format (the subset of src/ticket/markdown.rs)


CONTROLS = "\x00-\x1f\x7f-\x9f"
STRAY_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SPACE_OR_CONTROL = re.compile(f"[\\s{CONTROLS}]+")
URL_STOP = re.compile(f'[\\s{CONTROLS}<>"`]')


def strip_controls(md):
    """Line endings normalized, control characters other than tab and newline dropped."""
    if not STRAY_CONTROL.search(md):
        return md
    return STRAY_CONTROL.sub("", md.replace("\r\n", "\n").replace("\r", "\n"))


def fence_language(info):
    word = info.strip().strip("`").strip()
    ok = word and len(word.encode()) <= 32 and all(
        (c.isascii() and c.isalnum()) or c in "_+#.-" for c in word
    )
    return word if ok else None


def heading(line):
    hashes = len(line) - len(line.lstrip("#"))
    if not 1 <= hashes <= 6:
        return None
    rest = line[hashes:]
    if not rest or rest[0] in " \t":
        return hashes, rest.strip()
    return None


def list_marker(line):
    if line in ("-", "*"):
        return False, 1, ""
    for bullet in ("- ", "* ", "-\t", "*\t"):
        if line.startswith(bullet):
            return False, 1, line[len(bullet):].strip()
    digits = 0
    while digits < len(line) and "0" <= line[digits] <= "9":
        digits += 1
    if 1 <= digits <= 9:
        rest = line[digits:]
        if len(rest) >= 2 and rest[0] in ".)" and rest[1] in " \t":
            return True, int(line[:digits]), rest[2:].strip()
    return None


def is_allowed_href(href):
    lower = href.lower()

    def prefix(p):
        return len(href) > len(p) and lower.startswith(p)

    web = (prefix("https://") or prefix("http://")) and (
        lambda rest: bool(rest) and (rest[0].isalnum() or rest[0] == "[")
    )(href.split("://", 1)[1])
    mail = prefix("mailto:")
    return bool(web or mail) and not SPACE_OR_CONTROL.search(href)


SPECIAL = re.compile(r"[\[`*hH]")
URL_END = re.compile(r"[)\t\n\x0c\r ]")


def link_at(line, start, limit):
    close = line.find("]", start + 1)
    if close < 0:
        return None
    opening = line.find("[", start + 1)
    if 0 <= opening < close:
        return None
    if line[close + 1 : close + 2] != "(":
        return None
    m = URL_END.search(line, close + 2)
    if m is None:
        return None
    end = m.start()
    if line[end] != ")" or end >= limit:
        return None
    text = line[start + 1 : close]
    href = line[close + 2 : end]
    if not text.strip() or not is_allowed_href(href):
        return None
    return text, href, end + 1


def bare_url_at(line, start, limit):
    if start > 0 and line[start - 1].isascii() and line[start - 1].isalnum():
        return None
    rest = line[start : start + 8].lower()
    if rest.startswith("https://"):
        scheme = 8
    elif rest.startswith("http://"):
        scheme = 7
    else:
        return None
    after = line[start + scheme : start + scheme + 1]
    if not after or not (after.isalnum() or after == "["):
        return None
    stop = URL_STOP.search(line, start)
    end = min(stop.start() if stop else len(line), limit)
    has_open_paren = "(" in line[start:end]
    while end > start + scheme:
        last = line[end - 1]
        if last in ".,;:!?']}*" or (last == ")" and not has_open_paren):
            end -= 1
        else:
            break
    if end > start + scheme and is_allowed_href(line[start:end]):
        return end
    return None


def parse_inline(line):
    spans = []
    pending = []
    state = {"strong": False}

    def push(text, code, link):
        if not text:
            return
        strong = state["strong"] and not code
        if spans and spans[-1]["strong"] == strong and spans[-1]["code"] == code and spans[-1]["link"] == link:
            spans[-1]["text"] += text
            return
        spans.append({"text": text, "strong": strong, "code": code, "link": link})

    def flush():
        if pending:
            text = "".join(pending)
            pending.clear()
            push(text, False, None)

    strong_end = None
    i = 0
    n = len(line)
    while i < n:
        m = SPECIAL.search(line, i)
        run = m.start() if m else n
        if strong_end is not None:
            run = min(run, max(strong_end, i))
        if run > i:
            pending.append(line[i:run])
            i = run
            continue
        if state["strong"] and i == strong_end:
            flush()
            state["strong"] = False
            strong_end = None
            i += 2
            continue
        limit = strong_end if state["strong"] else n
        c = line[i]
        if c == "`":
            close = line.find("`", i + 1)
            if 0 <= close < limit:
                if close > i + 1:
                    flush()
                    push(line[i + 1 : close], True, None)
                else:
                    pending.append("``")
                i = close + 1
            else:
                pending.append("`")
                i += 1
        elif c == "*":
            if line[i + 1 : i + 2] == "*" and not state["strong"]:
                close = line.find("**", i + 2)
                if close > i + 2:
                    flush()
                    state["strong"] = True
                    strong_end = close
                else:
                    pending.append("**")
                i += 2
            else:
                pending.append("*")
                i += 1
        elif c == "[":
            found = link_at(line, i, limit)
            if found:
                text, href, end = found
                flush()
                push(text, False, href)
                i = end
            else:
                pending.append("[")
                i += 1
        else:
            end = bare_url_at(line, i, limit)
            if end is not None:
                flush()
                url = line[i:end]
                push(url, False, url)
                i = end
            else:
                pending.append(c)
                i += 1
    flush()
    return spans


def parse_markdown(md):
    blocks = []
    paragraph = []
    current = {"list": None}  # (ordered, start, items)

    def close():
        if paragraph:
            blocks.append(("paragraph", list(paragraph)))
            paragraph.clear()
        lst = current["list"]
        current["list"] = None
        if lst is not None and lst[2]:
            blocks.append(("list", lst))

    lines = strip_controls(md).split("\n")
    i = 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        indent = len(raw) - len(raw.lstrip())
        trimmed = raw.strip()
        if trimmed.startswith("```"):
            close()
            language = fence_language(trimmed[3:])
            body = []
            while i < len(lines):
                t = lines[i].strip()
                i += 1
                if t.startswith("```") and not t[3:].strip("`"):
                    break
                body.append(lines[i - 1])
            blocks.append(("code", (language, "\n".join(body))))
            continue
        if not trimmed:
            close()
            continue
        h = heading(trimmed)
        if h is not None:
            close()
            line = parse_inline(h[1])
            if line:
                blocks.append(("heading", (h[0], line)))
            continue
        marker = list_marker(trimmed)
        if marker is not None:
            ordered, start, text = marker
            line = parse_inline(text)
            if paragraph or (current["list"] is not None and current["list"][0] != ordered):
                close()
            if current["list"] is None:
                current["list"] = (ordered, start, [])
            if line:
                current["list"][2].append([line])
            continue
        line = parse_inline(trimmed)
        if not line:
            continue
        if current["list"] is not None:
            items = current["list"][2]
            if indent >= 2 and items:
                items[-1].append(line)
                continue
            close()
        paragraph.append(line)
    close()
    return blocks


def adf_text(span):
    marks = []
    if span["link"] is not None:
        marks.append({"type": "link", "attrs": {"href": span["link"]}})
    if span["strong"]:
        marks.append({"type": "strong"})
    if span["code"]:
        marks.append({"type": "code"})
    node = {"type": "text", "text": span["text"]}
    if marks:
        node["marks"] = marks
    return node


def adf_inline(lines):
    out = []
    for n, line in enumerate(lines):
        if n > 0:
            out.append({"type": "hardBreak"})
        out.extend(adf_text(s) for s in line if s["text"])
    return out


def adf_paragraph(lines):
    return {"type": "paragraph", "content": adf_inline(lines)}


def markdown_to_adf(md):
    content = []
    for kind, data in parse_markdown(md):
        if kind == "paragraph":
            content.append(adf_paragraph(data))
        elif kind == "heading":
            level, line = data
            content.append({"type": "heading", "attrs": {"level": level}, "content": adf_inline([line])})
        elif kind == "list":
            ordered, start, items = data
            node = {"type": "orderedList" if ordered else "bulletList"}
            if ordered and start != 1:
                node["attrs"] = {"order": start}
            node["content"] = [{"type": "listItem", "content": [adf_paragraph(lines)]} for lines in items]
            content.append(node)
        else:
            language, text = data
            node = {"type": "codeBlock"}
            if language is not None:
                node["attrs"] = {"language": language}
            node["content"] = [{"type": "text", "text": text}] if text else []
            content.append(node)
    return {"type": "doc", "version": 1, "content": content}


# ---------------------------------------------------------------------------------------------
# Payloads

TRUNCATION_MARK = "… [truncated]"
JIRA_SUMMARY_LIMIT = 255
JIRA_TEXT_LIMIT = 32_767
JIRA_LABEL_LIMIT = 255
SERVICENOW_SHORT_DESCRIPTION_LIMIT = 160
SERVICENOW_DESCRIPTION_LIMIT = 4_000
BRIDGE_LABEL = "findings-bridge"
JIRA_RESERVED = {"project", "issuetype", "summary", "description", "priority", "labels"}
SERVICENOW_RESERVED = {
    "short_description",
    "description",
    "urgency",
    "impact",
    "assignment_group",
    "correlation_id",
    "correlation_display",
}


class RenderError(Exception):
    pass


def cut_to_limit(value, limit):
    if len(value) <= limit:
        return value
    return value[: max(limit - len(TRUNCATION_MARK), 0)] + TRUNCATION_MARK


def one_line(s):
    return " ".join(w for w in SPACE_OR_CONTROL.split(s) if w)


def marker(team, finding_id):
    return "fb-" + hashlib.sha256(f"{team}\n{finding_id}".encode()).hexdigest()[:32]


def jira_labels(rendered, mark):
    out = []
    for raw in rendered + [BRIDGE_LABEL, mark]:
        joined = one_line(raw).replace(" ", "-")
        if not joined:
            continue
        label = cut_to_limit(joined, JIRA_LABEL_LIMIT).replace(" ", "-")
        if label not in out:
            out.append(label)
    return out


def render_field(template, ctx, limit):
    if isinstance(template, Template):
        text = template.render(ctx)
        return cut_to_limit(text, limit) if limit else text
    if isinstance(template, list):
        return [render_field(t, ctx, limit) for t in template]
    if isinstance(template, dict):
        return {k: render_field(t, ctx, limit) for k, t in template.items()}
    return template


def extra_fields(fields, reserved, ctx, limit):
    out = {}
    for name in sorted(fields):
        if name in reserved:
            continue
        value = render_field(fields[name], ctx, limit)
        if value == "":
            continue
        out[name] = value
    return out


def render_route(rule, finding, app):
    context = {"application": {k: app[k] for k in ("name", "owner", "criticality")}} if app else {}

    def ctx_for(f):
        return {"finding": f, "raw": f["raw"], "team": rule["team"], "rule": rule["name"], "context": context}

    severity = finding["severity"]
    if rule["severity_override"] is not None:
        value = rule["severity_override"].render(ctx_for(finding))
        severity = severity_label(value.strip())
        if severity is None:
            raise RenderError(f"rule {rule['team']}/{rule['name']}: severity_override rendered {value!r}")
    seen = finding if severity == finding["severity"] else dict(finding, severity=severity)
    ctx = ctx_for(seen)
    spec = rule["spec"]
    mark = marker(rule["team"], finding["id"])

    def text(key):
        t = spec.get(key)
        return t.render(ctx) if t is not None else None

    def required(key):
        s = text(key)
        if s is None or not s.strip():
            raise RenderError(f"rule {rule['team']}/{rule['name']}: {key} rendered empty")
        return s

    def optional(key):
        s = text(key)
        return s if s is not None and s.strip() else None

    if rule["kind"] == "jira":
        fields = extra_fields(spec.get("fields", {}), JIRA_RESERVED, ctx, JIRA_TEXT_LIMIT)
        fields["project"] = {"key": required("project").strip()}
        fields["issuetype"] = {"name": required("issue_type").strip()}
        fields["summary"] = cut_to_limit(one_line(required("summary")), JIRA_SUMMARY_LIMIT)
        description = optional("description")
        if description is not None:
            fields["description"] = markdown_to_adf(cut_to_limit(description, JIRA_TEXT_LIMIT))
        priority = optional("priority")
        if priority is not None:
            fields["priority"] = {"name": priority.strip()}
        labels = [t.render(ctx) for t in spec.get("labels", [])]
        fields["labels"] = jira_labels(labels, mark)
        payload = {"fields": fields}
    else:
        payload = extra_fields(spec.get("fields", {}), SERVICENOW_RESERVED, ctx, None)
        short = one_line(required("short_description"))
        payload["short_description"] = cut_to_limit(short, SERVICENOW_SHORT_DESCRIPTION_LIMIT)
        description = optional("description")
        if description is not None:
            payload["description"] = cut_to_limit(description, SERVICENOW_DESCRIPTION_LIMIT)
        for key in ("urgency", "impact"):
            value = optional(key)
            if value is not None:
                value = value.strip()
                if value not in ("1", "2", "3"):
                    raise RenderError(f"rule {rule['team']}/{rule['name']}: {key} rendered {value!r}")
                payload[key] = value
        group = optional("assignment_group")
        if group is not None:
            payload["assignment_group"] = group.strip()
        payload["correlation_id"] = mark
        payload["correlation_display"] = BRIDGE_LABEL
    return mark, payload


# ---------------------------------------------------------------------------------------------
# Command line


def render(mappings, text, out):
    failed = False
    for message in messages(text):
        try:
            findings = decode_message(message)
        except (DecodeError, ValueError) as e:
            print(f"bridge.py: decode: {e}", file=sys.stderr)
            failed = True
            continue
        for finding in findings:
            if isinstance(finding, DecodeError):
                print(f"bridge.py: decode: {finding}", file=sys.stderr)
                failed = True
                continue
            app = application_for(mappings["inventory"], finding)
            routes = []
            for rule in route(mappings, finding, app):
                mark, payload = render_route(rule, finding, app)
                routes.append(
                    {
                        "team": rule["team"],
                        "rule": rule["name"],
                        "target": rule["target"],
                        "marker": mark,
                        "payload": payload,
                    }
                )
            line = {"finding_id": finding["id"], "schema": finding["schema"], "routes": routes}
            out.write(json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
            out.write("\n")
    return not failed


def main(argv):
    args = argv[1:]
    if not args or args[0] != "render":
        sys.exit("usage: bridge.py render [--mappings DIR] [--now RFC3339] FILE|-")
    args = args[1:]
    directory = pathlib.Path(os.environ.get("BRIDGE_MAPPINGS", "mappings"))
    now = dt.datetime.now(dt.timezone.utc)
    while args and args[0].startswith("--"):
        flag, value, args = args[0], args[1], args[2:]
        if flag == "--mappings":
            directory = pathlib.Path(value)
        elif flag == "--now":
            now = parse_instant(value)
        else:
            sys.exit(f"unknown flag {flag}")
    if os.environ.get("JIRA_API_VERSION", "3") != "3":
        sys.exit("bridge.py renders Jira Cloud (API 3) bodies only")
    mappings = load_mappings(directory, now)
    source = args[0]
    text = sys.stdin.read() if source == "-" else pathlib.Path(source).read_text()
    out = sys.stdout
    ok = render(mappings, text, out)
    out.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
