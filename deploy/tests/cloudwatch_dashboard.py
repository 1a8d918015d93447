"""A checker for a CloudWatch dashboard body (the JSON string of AWS::CloudWatch::Dashboard's
DashboardBody): cfn-lint takes it for an opaque string, and CloudWatch accepts a widget whose
metric does not exist and draws it empty. `check_dashboard` returns what is wrong, empty when
nothing is:

- the body parses, its widgets lie on the 24-column grid without overlapping;
- every metric a widget names, as a metric array or inside a SEARCH expression, is one that is
  published with exactly those dimension names (a `Catalog`: AWS's own metrics of the stack's
  resources, the worker's series as the metrics sidecar publishes them, the log metric filters);
- dimension values of AWS metrics are the stack's own queue, table, cluster and service;
- statistics suit the series (a counter's change per period is its Sum; a histogram's only
  meaningful statistics are Sum, SampleCount and Average); metric math refers only to ids of its
  widget and to known functions;
- alarm widgets show alarms of this stack.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

GRID_COLUMNS = 24
WIDGET_TYPES = {"metric", "text", "alarm"}
BODY_KEYS = {"start", "end", "periodOverride", "widgets"}
METRIC_PROPERTY_KEYS = {
    "title", "metrics", "region", "view", "stacked", "period", "stat", "yAxis", "annotations", "legend",
    "liveData", "setPeriodToTimeRange",
}
METRIC_OPTION_KEYS = {"label", "id", "stat", "yAxis", "visible", "color", "period"}
EXPRESSION_KEYS = {"expression", "id", "label", "yAxis", "visible", "color", "period"}
VIEWS = {"timeSeries", "singleValue", "bar", "pie", "gauge"}
STATISTICS = {"SampleCount", "Average", "Sum", "Minimum", "Maximum"}
# Which statistics mean something for each kind of series. The sidecar publishes a counter as its
# increase since the last scrape, so its Sum over a period is the count in that period; a
# histogram as (Count, Sum) of the observations since the last scrape, with no true Min or Max.
STATISTICS_BY_KIND = {
    "counter": {"Sum"},
    "histogram": {"Sum", "SampleCount", "Average"},
    "gauge": STATISTICS,
    "aws": STATISTICS,
}
# Metric math functions the dashboard may use around SEARCH and metric ids.
MATH_FUNCTIONS = {"SEARCH", "SUM", "AVG", "MIN", "MAX", "FILL", "PERIOD", "RATE", "DIFF", "ABS", "FLOOR", "CEIL"}
SEARCH_CALL = re.compile(r"SEARCH\(\s*'(?P<query>[^']*)'\s*,\s*'(?P<stat>[^']*)'\s*(?:,\s*(?P<period>\d+)\s*)?\)")
SCHEMA = re.compile(r'^\s*\{(?P<schema>[^}]*)\}\s*(?P<terms>.*)$')
TERM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


@dataclass
class Published:
    """One metric as it is published: its kind and every dimension-name set it carries."""

    kind: str
    dimension_sets: set[frozenset[str]]


@dataclass
class Catalog:
    """What the dashboard may name."""

    region: str
    metrics: dict[tuple[str, str], Published] = field(default_factory=dict)  # (namespace, name)
    # Dimension values an AWS metric may carry (the stack's own resources), by dimension name.
    dimension_values: dict[str, set[str]] = field(default_factory=dict)
    alarm_arns: set[str] = field(default_factory=set)

    def add(self, namespace: str, name: str, kind: str, *dimension_sets: frozenset[str]) -> None:
        entry = self.metrics.setdefault((namespace, name), Published(kind, set()))
        if entry.kind != kind:
            raise ValueError(f"{namespace} {name} published as {entry.kind} and {kind}")
        entry.dimension_sets.update(dimension_sets)


def check_dashboard(body: str, catalog: Catalog) -> list[str]:
    try:
        dashboard = json.loads(body)
    except json.JSONDecodeError as e:
        return [f"the body is not JSON: {e}"]
    if not isinstance(dashboard, dict) or not isinstance(dashboard.get("widgets"), list) or not dashboard["widgets"]:
        return ["the body must be an object with a non-empty list of widgets"]
    problems = [f"unknown top-level key {k!r}" for k in sorted(set(dashboard) - BODY_KEYS)]
    boxes = []
    for index, widget in enumerate(dashboard["widgets"]):
        where = f"widget {index}"
        if isinstance(widget, dict) and isinstance(widget.get("properties"), dict):
            where += f" ({widget['properties'].get('title') or widget.get('type')})"
        problems += [f"{where}: {p}" for p in _check_widget(widget, catalog)]
        box = _box(widget)
        if box:
            for other_index, other in boxes:
                if _overlap(box, other):
                    problems.append(f"{where}: overlaps widget {other_index}")
            boxes.append((index, box))
    return problems


def _box(widget: Any) -> tuple[int, int, int, int] | None:
    try:
        x, y, w, h = (widget[k] for k in ("x", "y", "width", "height"))
    except (KeyError, TypeError):
        return None
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (x, y, w, h)):
        return x, y, w, h
    return None


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def _check_widget(widget: Any, catalog: Catalog) -> list[str]:
    if not isinstance(widget, dict):
        return ["not an object"]
    problems = []
    if widget.get("type") not in WIDGET_TYPES:
        problems.append(f"type {widget.get('type')!r} is not one of {sorted(WIDGET_TYPES)}")
    box = _box(widget)
    if box is None:
        problems.append("x, y, width and height must all be integers")
    else:
        x, y, w, h = box
        if x < 0 or y < 0 or w < 1 or h < 1 or x + w > GRID_COLUMNS:
            problems.append(f"position x={x} y={y} width={w} height={h} is off the {GRID_COLUMNS}-column grid")
    props = widget.get("properties")
    if not isinstance(props, dict):
        return problems + ["no properties"]
    if widget.get("type") == "text":
        if not isinstance(props.get("markdown"), str) or not props["markdown"].strip():
            problems.append("a text widget needs markdown")
    elif widget.get("type") == "alarm":
        alarms = props.get("alarms")
        if not isinstance(alarms, list) or not alarms:
            problems.append("an alarm widget needs a list of alarms")
        else:
            problems += [f"alarm {a!r} is not an alarm of this stack" for a in alarms if a not in catalog.alarm_arns]
    elif widget.get("type") == "metric":
        problems += _check_metric_widget(props, catalog)
    return problems


def _check_metric_widget(props: dict, catalog: Catalog) -> list[str]:
    problems = [f"unknown property {k!r}" for k in sorted(set(props) - METRIC_PROPERTY_KEYS)]
    if not props.get("title"):
        problems.append("no title")
    if props.get("region") != catalog.region:
        problems.append(f"region {props.get('region')!r}, not the stack's {catalog.region!r}")
    if props.get("view", "timeSeries") not in VIEWS:
        problems.append(f"view {props.get('view')!r}")
    widget_stat = props.get("stat", "Average")  # CloudWatch's default
    if widget_stat not in STATISTICS:
        problems.append(f"statistic {widget_stat!r}")
    entries = props.get("metrics")
    if not isinstance(entries, list) or not entries:
        return problems + ["no metrics"]
    ids = set()
    for entry in entries:
        options = entry if isinstance(entry, dict) else (entry[-1] if isinstance(entry, list) and entry and isinstance(entry[-1], dict) else {})
        if "id" in options:
            if not re.fullmatch(r"[a-z][a-zA-Z0-9_]*", str(options["id"])):
                problems.append(f"id {options['id']!r} must start with a lower-case letter")
            if options["id"] in ids:
                problems.append(f"id {options['id']!r} is used twice")
            ids.add(options["id"])
    for entry in entries:
        if isinstance(entry, dict):
            problems += _check_expression(entry, ids, catalog)
        elif isinstance(entry, list):
            problems += _check_metric_array(entry, widget_stat, catalog)
        else:
            problems.append(f"metric entry {entry!r} is neither an array nor an expression")
    return problems


def _check_metric_array(entry: list, widget_stat: str, catalog: Catalog) -> list[str]:
    options = entry[-1] if entry and isinstance(entry[-1], dict) else {}
    parts = entry[:-1] if options else entry
    if any(p in (".", "..") for p in parts):
        return [f"{entry!r}: write metrics out in full (no '.' shorthand), so each can be checked"]
    if len(parts) < 2 or len(parts) % 2 or not all(isinstance(p, str) for p in parts):
        return [f"{entry!r} is not [namespace, name, dimension, value, ..., {{options}}]"]
    problems = [f"{parts[1]}: unknown option {k!r}" for k in sorted(set(options) - METRIC_OPTION_KEYS)]
    namespace, name = parts[0], parts[1]
    dimensions = dict(zip(parts[2::2], parts[3::2]))
    if len(dimensions) != len(parts[2:]) // 2:
        problems.append(f"{name}: a dimension is named twice")
    stat = options.get("stat", widget_stat)
    return problems + _check_metric(namespace, name, dimensions, stat, catalog)


def _check_metric(namespace: str, name: str, dimensions: dict[str, str | None], stat: str, catalog: Catalog) -> list[str]:
    """`dimensions` maps each dimension name to its value, or None where a SEARCH leaves it open."""
    published = catalog.metrics.get((namespace, name))
    if published is None:
        return [f"{namespace} {name} is not published by anything this stack deploys"]
    problems = []
    names = frozenset(dimensions)
    if names not in published.dimension_sets:
        sets = sorted(sorted(s) for s in published.dimension_sets)
        problems.append(f"{namespace} {name} is published with dimensions {sets}, not {sorted(names)}")
    if stat not in STATISTICS_BY_KIND[published.kind]:
        problems.append(f"{name} is a {published.kind}: {stat} says nothing; use {sorted(STATISTICS_BY_KIND[published.kind])}")
    for dimension, value in dimensions.items():
        allowed = catalog.dimension_values.get(dimension)
        if value is not None and allowed is not None and value not in allowed:
            problems.append(f"{name}: {dimension}={value!r} is not a resource of this stack ({sorted(allowed)})")
    return problems


def _check_expression(entry: dict, ids: set, catalog: Catalog) -> list[str]:
    problems = [f"expression: unknown key {k!r}" for k in sorted(set(entry) - EXPRESSION_KEYS)]
    expression = entry.get("expression")
    if not isinstance(expression, str) or "id" not in entry:
        return problems + [f"{entry!r}: an expression needs `expression` and `id`"]
    for call in SEARCH_CALL.finditer(expression):
        problems += _check_search(call, catalog)
    rest = SEARCH_CALL.sub(" 0 ", expression)
    if "SEARCH" in rest:
        problems.append(f"{expression!r}: a SEARCH that does not read as SEARCH('{{schema}} terms', 'Statistic'[, period])")
    for token in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", rest):
        if token not in MATH_FUNCTIONS and (token not in ids or token == entry["id"]):
            problems.append(f"{expression!r}: {token!r} is neither a metric id of this widget nor a known function")
    if re.search(r"[^A-Za-z0-9_\s().,+\-*/]", rest):
        problems.append(f"{expression!r}: unexpected characters outside SEARCH")
    return problems


def metrics_named(body: str) -> set[tuple[str, str]]:
    """(namespace, name) of every metric the dashboard reads, in metric arrays and SEARCHes."""
    named = set()
    for widget in json.loads(body)["widgets"]:
        for entry in widget.get("properties", {}).get("metrics", []):
            if isinstance(entry, list) and len(entry) >= 2:
                named.add((entry[0], entry[1]))
            elif isinstance(entry, dict):
                for call in SEARCH_CALL.finditer(entry.get("expression", "")):
                    schema = SCHEMA.match(call.group("query"))
                    terms = dict(TERM.findall(schema.group("terms"))) if schema else {}
                    if schema and "MetricName" in terms:
                        named.add((schema.group("schema").split(",")[0].strip().strip('"'), terms["MetricName"]))
    return named


def _check_search(call: re.Match, catalog: Catalog) -> list[str]:
    query, stat = call.group("query"), call.group("stat")
    schema = SCHEMA.match(query)
    if not schema:
        return [f"SEARCH {query!r}: give a metric schema {{\"namespace\",dimension,...}} so only metrics with exactly those dimensions match"]
    fields = [f.strip() for f in schema.group("schema").split(",")]
    namespace = fields[0].strip('"')
    dimension_names = [f.strip('"') for f in fields[1:]]
    terms = dict(TERM.findall(schema.group("terms")))
    leftover = TERM.sub("", schema.group("terms")).strip()
    problems = []
    if leftover:
        problems.append(f"SEARCH {query!r}: only exact terms name=\"value\" are checked; {leftover!r} is not one")
    name = terms.pop("MetricName", None)
    if name is None:
        return problems + [f"SEARCH {query!r}: name the metric exactly, MetricName=\"...\""]
    for dimension in terms:
        if dimension not in dimension_names:
            problems.append(f"SEARCH {query!r}: term {dimension}= is not a dimension of its schema")
    dimensions = {d: terms.get(d) for d in dimension_names}
    return problems + _check_metric(namespace, name, dimensions, stat, catalog)
