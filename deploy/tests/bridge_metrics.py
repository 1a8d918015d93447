"""The series the worker exports, read from its source rather than copied: names and kinds from
src/runtime/telemetry/names.rs (the one place every series is declared, with its HELP text), label
names from the typed helpers in src/runtime/telemetry/metrics.rs (the only code that records
them; names.rs's own tests enforce both).

The dashboard checks use this to tell whether a metric or a dimension the CloudWatch dashboard or
the metrics sidecar names can exist: a series renamed or a label dropped in the worker makes them
fail instead of leaving a widget silently empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMES_RS = ROOT / "src" / "runtime" / "telemetry" / "names.rs"
METRICS_RS = ROOT / "src" / "runtime" / "telemetry" / "metrics.rs"

# names.rs declares each series with one of these constructors; `seconds` is a histogram.
KINDS = {"counter": "counter", "gauge": "gauge", "seconds": "histogram"}


@dataclass(frozen=True)
class Series:
    name: str  # as /metrics shows it, e.g. findings_bridge_errors_total
    kind: str  # counter | gauge | histogram
    labels: frozenset[str] = field(default_factory=frozenset)


def exported_series(names_rs: str | None = None, metrics_rs: str | None = None) -> dict[str, Series]:
    """Every series by name. The texts default to the files; tests pass edited copies."""
    names_rs = NAMES_RS.read_text(encoding="utf-8") if names_rs is None else names_rs
    metrics_rs = METRICS_RS.read_text(encoding="utf-8") if metrics_rs is None else metrics_rs
    constants = dict(re.findall(r'^pub const ([A-Z_]+): &str = "([^"]+)";', names_rs, re.M))
    kinds = {const: KINDS[ctor] for ctor, const in re.findall(r"Series::(counter|gauge|seconds)\(\s*([A-Z_]+)\s*,", names_rs)}
    if not constants or set(constants) != set(kinds):
        raise AssertionError(
            "names.rs no longer reads as `pub const NAME: &str = \"...\";` plus one `Series::kind(NAME, ...)` "
            f"each: constants without a kind {sorted(set(constants) - set(kinds))}, kinds without a constant "
            f"{sorted(set(kinds) - set(constants))}"
        )
    labels = _labels_by_constant(metrics_rs)
    return {
        value: Series(value, kinds[const], frozenset(labels.get(const, ())))
        for const, value in constants.items()
    }


def _labels_by_constant(metrics_rs: str) -> dict[str, set[str]]:
    """Label keys recorded with each `names::CONST`, following one level of helper (a function
    such as `ticket_counter(name, system, team)` that records whatever name it is given)."""
    direct: dict[str, set[str]] = {}
    forwarders: dict[str, set[str]] = {}  # helper fn -> label keys it records under its parameter
    bodies = _function_bodies(metrics_rs)
    for fn, body in bodies.items():
        for first, invocation in _macro_calls(body):
            keys = set(re.findall(r'"(\w+)"\s*=>', invocation))
            if first.startswith("names::"):
                direct.setdefault(first.removeprefix("names::"), set()).update(keys)
            else:
                forwarders.setdefault(fn, set()).update(keys)
    for body in bodies.values():
        for helper, const in re.findall(r"\b(\w+)\(\s*names::([A-Z_]+)", body):
            if helper in forwarders:
                direct.setdefault(const, set()).update(forwarders[helper])
    return direct


def _function_bodies(text: str) -> dict[str, str]:
    bodies = {}
    for match in re.finditer(r"^(?:pub(?:\([^)]*\))? )?fn (\w+)\b[^{;]*\{", text, re.M):
        bodies[match.group(1)] = text[match.end() : _closing(text, match.end() - 1, "{", "}")]
    return bodies


def _macro_calls(body: str) -> list[tuple[str, str]]:
    """(first argument, whole argument text) of each counter!/gauge!/histogram! in `body`."""
    calls = []
    for match in re.finditer(r"\b(?:counter|gauge|histogram)!\(", body):
        args = body[match.end() : _closing(body, match.end() - 1, "(", ")")]
        calls.append((args.split(",", 1)[0].strip(), args))
    return calls


def _closing(text: str, start: int, open_: str, close: str) -> int:
    """Index of the bracket closing the one at `start` (string literals hold no brackets here)."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_:
            depth += 1
        elif text[i] == close:
            depth -= 1
            if depth == 0:
                return i
    raise AssertionError(f"unbalanced {open_}{close} in metrics.rs")
