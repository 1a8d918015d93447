#!/usr/bin/env python3
"""Deterministic benchmark input for `findings-bridge render` and the Python baseline.

    generate.py N FORMAT > out.json

N findings are made by cycling through every finding of the well-formed fixtures in
tests/fixtures/ (EventBridge ASFF and OCSF events, SNS-wrapped, bare findings, the array), each
copy with a unique id (`<original id>-<n>`). FORMAT:

- `array`:  one JSON array of bare findings (ASFF and OCSF mixed), like `aws securityhub
  get-findings` output flattened;
- `ndjson`: one EventBridge event per line, each carrying one finding in its original envelope;
- `events`: the same events pretty-printed and concatenated (several lines each, no separator).

Same N and FORMAT, same bytes: no randomness, no clock.
"""

import copy
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def templates():
    """(envelope or None, finding) pairs in a fixed order."""
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        if path.name.startswith("malformed-"):
            continue
        value = json.loads(path.read_text())
        if isinstance(value, list):
            out.extend((None, f) for f in value)
            continue
        if value.get("Type") == "Notification":
            value = json.loads(value["Message"])
        if "detail" in value:
            for f in value["detail"]["findings"]:
                env = copy.deepcopy(value)
                env["detail"]["findings"] = []
                out.append((env, f))
        else:
            out.append((None, value))
    return out


def with_unique_id(finding, n):
    f = copy.deepcopy(finding)
    suffix = f"-{n:07d}"
    if "finding_info" in f:
        f["finding_info"]["uid"] += suffix
        if f.get("metadata", {}).get("uid"):
            f["metadata"]["uid"] += suffix
    else:
        f["Id"] += suffix
    return f


DEFAULT_ENVELOPE = {
    "version": "0",
    "id": "00000000-0000-0000-0000-000000000000",
    "detail-type": "Security Hub Findings - Imported",
    "source": "aws.securityhub",
    "account": "111122223333",
    "time": "2026-11-27T09:00:00Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {"findings": []},
}


def event_for(envelope, finding):
    if envelope is None:
        envelope = copy.deepcopy(DEFAULT_ENVELOPE)
        if "finding_info" in finding:
            envelope["detail-type"] = "Findings Imported V2"
    else:
        envelope = copy.deepcopy(envelope)
    envelope["detail"]["findings"] = [finding]
    return envelope


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("array", "ndjson", "events"):
        sys.exit("usage: generate.py N array|ndjson|events")
    n = int(sys.argv[1])
    fmt = sys.argv[2]
    base = templates()
    out = sys.stdout
    if fmt == "array":
        out.write("[\n")
    for i in range(n):
        envelope, finding = base[i % len(base)]
        f = with_unique_id(finding, i)
        if fmt == "array":
            out.write(("," if i else "") + json.dumps(f) + "\n")
        elif fmt == "ndjson":
            out.write(json.dumps(event_for(envelope, f)) + "\n")
        else:
            out.write(json.dumps(event_for(envelope, f), indent=2) + "\n")
    if fmt == "array":
        out.write("]\n")


if __name__ == "__main__":
    main()
