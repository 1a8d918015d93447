"""Reads checkov's JSON report for scripts/lint-deploy and judges it.

Usage: checkov_report.py REPORT.json FILE...   (the FILEs checkov must have scanned)

Prints one summary line, then one line per skipped check with its inline reason. Exits non-zero
when a check failed, a file did not parse, an expected file or framework is missing from the
report (a file checkov silently ignores passes nothing), or a skip has no reason.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FRAMEWORKS = ("cloudformation", "dockerfile")
MIN_REASON = 30  # characters: a reason says why, not just "n/a"


def main(report_path: str, expected_files: list[str]) -> int:
    problems: list[str] = []
    try:
        data = json.loads(Path(report_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        print(f"no readable checkov JSON report ({error})")
        return 1
    reports = data if isinstance(data, list) else [data]
    by_type = {r.get("check_type"): r for r in reports}

    parts, skip_lines, scanned = [], [], set()
    for framework in FRAMEWORKS:
        report = by_type.get(framework)
        if report is None:
            problems.append(f"no {framework} results")
            continue
        summary = report.get("summary", {})
        results = report.get("results", {})
        parts.append(
            f"{framework} {summary.get('passed', 0)} passed / {summary.get('failed', 0)} failed / "
            f"{summary.get('skipped', 0)} skipped"
        )
        if summary.get("failed", 0):
            problems.append(f"{summary['failed']} failed {framework} checks")
        if summary.get("parsing_errors", 0):
            problems.append(f"{framework} parsing errors: {results.get('parsing_errors')}")
        for kind in ("passed_checks", "failed_checks", "skipped_checks"):
            for check in results.get(kind, []):
                scanned.add(check.get("file_path", "").lstrip("/"))
        for check in results.get("skipped_checks", []):
            reason = " ".join(str(check.get("check_result", {}).get("suppress_comment", "")).split())
            file_path = check.get("file_path", "").lstrip("/")
            resource = check.get("resource", "")
            # A Dockerfile's "resource" is the file itself ("/Dockerfile.mappings.").
            where = file_path if resource.strip("/.") == file_path else f"{file_path} {resource}"
            skip_lines.append(f"      skipped {check.get('check_id')} ({where}): {reason}")
            if len(reason) < MIN_REASON:
                problems.append(f"skip of {check.get('check_id')} in {where} gives no reason")

    for path in expected_files:
        if Path(path).name not in {Path(s).name for s in scanned}:
            problems.append(f"{path} was not scanned")

    line = "; ".join(parts)
    if problems:
        line += "; PROBLEMS: " + "; ".join(problems)
    print(line)
    for skip in skip_lines:
        print(skip)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
