"""The CloudWatch dashboard and the metrics sidecar that feeds it.

The dashboard body is a JSON string that cfn-lint does not look into, and CloudWatch draws a widget
whose metric does not exist as an empty graph. So the body is rendered as CloudFormation would,
parsed, and every metric it names is checked against what really publishes it: AWS's metrics of
this stack's own queues, table and service, the log metric filter, and the worker's series as
the sidecar's configuration publishes them, which in turn is checked against the series the
worker declares (src/runtime/telemetry, read by bridge_metrics). The checker's own tests feed it
broken dashboards, a renamed series among them.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from bridge_metrics import NAMES_RS, Series, exported_series
from cfn_template import ALARMS, REGION, Stack, load_template
from cloudwatch_dashboard import Catalog, check_dashboard, metrics_named
from test_task_definition import EXAMPLE_PARAMETERS, main_container, rendered_task_definition

COLLECTOR = "metrics-collector"
# Series the scrape itself adds for each target (Prometheus' `up`: 1 when /metrics answered).
SCRAPE_SERIES = {"up": Series("up", "gauge", frozenset())}
# The dashboard turns answered scrapes per minute into tasks ("up" and build_info divided by 2).
SCRAPES_PER_MINUTE = 2
# AWS's metrics of the stack's resources that the dashboard may read, with their dimensions.
AWS_METRICS = {
    "AWS/SQS": ({"QueueName"}, [
        "ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed",
        "NumberOfMessagesReceived", "NumberOfMessagesDeleted", "NumberOfMessagesSent",
    ]),
    "ECS/ContainerInsights": ({"ClusterName", "ServiceName"}, [
        "RunningTaskCount", "DesiredTaskCount", "PendingTaskCount", "CpuUtilized", "MemoryUtilized",
    ]),
    "AWS/DynamoDB": ({"TableName", "Operation"}, ["SuccessfulRequestLatency", "ThrottledRequests", "SystemErrors"]),
}
AWS_TABLE_METRICS = ["ReadThrottleEvents", "WriteThrottleEvents", "ConsumedReadCapacityUnits", "ConsumedWriteCapacityUnits"]


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


@pytest.fixture(scope="module")
def series() -> dict[str, Series]:
    return exported_series()


def collector_config(template: dict, **parameters: str) -> dict:
    task = rendered_task_definition(template, **parameters)
    (sidecar,) = [c for c in task["containerDefinitions"] if c["name"] == COLLECTOR]
    env = {e["name"]: e["value"] for e in sidecar["environment"]}
    return yaml.safe_load(env["AOT_CONFIG_CONTENT"])


def selected_name(selector: str) -> str:
    match = re.fullmatch(r"\^([a-zA-Z_:][a-zA-Z0-9_:]*)\$", selector)
    assert match, f"metric_name_selectors {selector!r}: one exact name, ^name$, so it can be checked"
    return match.group(1)


def sidecar_publishes(config: dict, series: dict[str, Series]) -> dict[str, tuple[Series, list[frozenset[str]]]]:
    """What the sidecar's awsemf exporter publishes: each series with the dimension sets it
    really carries (awsemf drops a declared set that names a label the series lacks)."""
    published = {}
    for declaration in config["exporters"]["awsemf"]["metric_declarations"]:
        for selector in declaration["metric_name_selectors"]:
            name = selected_name(selector)
            found = series.get(name) or SCRAPE_SERIES.get(name)
            assert found, f"the sidecar selects {name}, which the worker does not export (src/runtime/telemetry/names.rs)"
            sets = [frozenset(d) for d in declaration["dimensions"] if set(d) <= found.labels]
            assert name not in published, f"{name} is selected twice"
            published[name] = (found, sets)
    return published


def catalog(template: dict, series: dict[str, Series], **parameters: str) -> Catalog:
    stack = Stack(template, **parameters)
    names = stack.names
    result = Catalog(region=REGION)
    for namespace, (dimensions, metrics) in AWS_METRICS.items():
        for metric in metrics:
            result.add(namespace, metric, "aws", frozenset(dimensions))
    for metric in AWS_TABLE_METRICS:
        result.add("AWS/DynamoDB", metric, "aws", frozenset({"TableName"}))
    task_role = [s for p in stack.resource("TaskRole")["Policies"] for s in p["PolicyDocument"]["Statement"]]
    cluster = stack.params["ExistingClusterName"] or names["Cluster"]["Ref"]
    result.dimension_values = {
        "QueueName": {names["FindingsQueue"]["QueueName"], names["DeadLetterQueue"]["QueueName"]},
        "TableName": {names["DedupTable"]["Ref"]},
        "ClusterName": {cluster},
        "ServiceName": {names["Service"]["Name"]},
        # The table operations the worker may call (its role's DynamoDB actions).
        "Operation": {
            a.split(":", 1)[1] for s in task_role for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
            if a.startswith("dynamodb:")
        },
    }
    for metric_filter in stack.resources_of_type("AWS::Logs::MetricFilter").values():
        for t in metric_filter["MetricTransformations"]:
            dims = frozenset(d["Key"] for d in t.get("Dimensions", []))
            result.add(t["MetricNamespace"], t["MetricName"], "counter", dims)
    if stack.condition("HasMetricsCollector"):
        config = collector_config(template, **parameters)
        namespace = config["exporters"]["awsemf"]["namespace"]
        for name, (found, sets) in sidecar_publishes(config, series).items():
            result.add(namespace, name, found.kind, *sets)
    result.alarm_arns = {names[logical]["Arn"] for logical in stack.resources_of_type("AWS::CloudWatch::Alarm")}
    return result


def dashboard_body(template: dict, **parameters: str) -> str:
    return Stack(template, **parameters).resource("Dashboard")["DashboardBody"]


# ------------------------------------------------------------------ the sidecar


def test_the_sidecar_publishes_only_series_the_worker_exports_with_labels_they_have(template, series):
    config = collector_config(template, **EXAMPLE_PARAMETERS)
    declared_sets = {
        selected_name(s): [frozenset(d) for d in decl["dimensions"]]
        for decl in config["exporters"]["awsemf"]["metric_declarations"]
        for s in decl["metric_name_selectors"]
    }
    for name, (found, sets) in sidecar_publishes(config, series).items():
        # A declared set naming a label the series does not have is dropped by awsemf: the
        # metric would silently not be published with it.
        assert sets == declared_sets[name], f"{name} has labels {sorted(found.labels)}, not all of {declared_sets[name]}"
        assert sets, name
    descriptors = {d["metric_name"]: d["unit"] for d in config["exporters"]["awsemf"].get("metric_descriptors", [])}
    histograms = {name for name, (found, _) in sidecar_publishes(config, series).items() if found.kind == "histogram"}
    assert descriptors == {name: "Seconds" for name in histograms}, "every published histogram is in seconds"


def test_the_sidecar_publishes_where_the_stack_expects(template):
    stack = Stack(template, **EXAMPLE_PARAMETERS)
    config = collector_config(template, **EXAMPLE_PARAMETERS)
    emf = config["exporters"]["awsemf"]
    # The namespace of the paused-connection metric filter: one namespace for the deployment.
    (metric_filter,) = stack.resources_of_type("AWS::Logs::MetricFilter").values()
    assert emf["namespace"] == metric_filter["MetricTransformations"][0]["MetricNamespace"]
    assert emf["namespace"] == f"FindingsBridge/{stack.params['ServiceName']}"
    assert emf["log_group_name"] == stack.resource("MetricsLogGroup")["LogGroupName"]
    # Only the declared dimension sets, no automatic roll-ups (each would be another billed metric).
    assert emf["dimension_rollup_option"] == "NoDimensionRollup"


def test_the_sidecar_scrapes_the_worker_and_sends_changes(template):
    config = collector_config(template, **EXAMPLE_PARAMETERS)
    worker = main_container(rendered_task_definition(template, **EXAMPLE_PARAMETERS))
    (scrape,) = config["receivers"]["prometheus"]["config"]["scrape_configs"]
    (static,) = scrape["static_configs"]
    port = worker["portMappings"][0]["containerPort"]
    assert static["targets"] == [f"localhost:{port}"], "the task's containers share one network namespace"
    env = {e["name"]: e["value"] for e in worker["environment"]}
    assert env["BRIDGE_HTTP_ADDR"].endswith(f":{port}") and not env["BRIDGE_HTTP_ADDR"].startswith("127.")
    assert scrape.get("metrics_path", "/metrics") == "/metrics"
    assert scrape["scrape_interval"] == f"{60 // SCRAPES_PER_MINUTE}s"
    (pipeline,) = config["service"]["pipelines"].values()
    assert pipeline["receivers"] == ["prometheus"] and pipeline["exporters"] == ["awsemf"]
    # awsemf sends a cumulative histogram as it is (an ever-growing count): cumulativetodelta turns
    # counters and histograms into increases first. `keep` counts the first scrape in full, right
    # for a sidecar that starts with the worker (a series first seen later is not lost).
    assert "cumulativetodelta" in pipeline["processors"]
    assert config["processors"]["cumulativetodelta"] == {"initial_value": "keep"}


def test_the_sidecar_is_optional_and_never_stops_the_worker(template):
    task = rendered_task_definition(template, **EXAMPLE_PARAMETERS)
    (sidecar,) = [c for c in task["containerDefinitions"] if c["name"] == COLLECTOR]
    assert sidecar["essential"] is False and sidecar["readonlyRootFilesystem"] is True
    assert sidecar["memory"] <= 256
    assert "secrets" not in sidecar and "portMappings" not in sidecar
    pattern = template["Parameters"]["MetricsCollectorImageUri"]["AllowedPattern"]
    assert re.fullmatch(pattern, sidecar["image"]) and re.fullmatch(pattern, "")
    assert not re.fullmatch(pattern, "public.ecr.aws/aws-observability/aws-otel-collector"), "pinned: a tag or a digest"
    assert not re.fullmatch(pattern, "public.ecr.aws/aws-observability/aws-otel-collector:latest")
    assert re.fullmatch(pattern, "111122223333.dkr.ecr.us-east-1.amazonaws.com/aws-otel-collector:v0.49.0")
    assert re.fullmatch(pattern, "public.ecr.aws/aws-observability/aws-otel-collector@sha256:" + "0" * 64)

    off = dict(EXAMPLE_PARAMETERS, MetricsCollectorImageUri="")
    stack = Stack(template, **off)
    task = rendered_task_definition(template, **off)
    assert [c["name"] for c in task["containerDefinitions"]] == ["findings-bridge"]
    assert stack.resource("MetricsLogGroup") is None
    statements = [s for p in stack.resource("TaskRole")["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert not any(str(a).startswith("logs:") for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))
    # The dashboard stays, identical (its worker widgets then stay empty).
    assert dashboard_body(template, **off) == dashboard_body(template, **EXAMPLE_PARAMETERS)


# ------------------------------------------------------------------ the dashboard


DASHBOARD_VARIANTS = {
    "example": EXAMPLE_PARAMETERS,
    "existing-cluster": dict(EXAMPLE_PARAMETERS, ExistingClusterName="shared-cluster", ServiceName="fb-prod"),
    "jira-only": dict(EXAMPLE_PARAMETERS, ServiceNowAuth="none", ServiceNowUrl="", ServiceNowSecretArn=""),
}


@pytest.mark.parametrize("parameters", DASHBOARD_VARIANTS.values(), ids=DASHBOARD_VARIANTS.keys())
def test_every_metric_on_the_dashboard_is_published(template, series, parameters):
    body = dashboard_body(template, **parameters)
    assert "${" not in body, "a placeholder CloudFormation does not substitute"
    assert check_dashboard(body, catalog(template, series, **parameters)) == []


def test_every_series_the_sidecar_publishes_is_on_the_dashboard(template, series):
    """Each published series is a billed custom metric: none is published for nobody."""
    named = metrics_named(dashboard_body(template, **EXAMPLE_PARAMETERS))
    config = collector_config(template, **EXAMPLE_PARAMETERS)
    namespace = config["exporters"]["awsemf"]["namespace"]
    unused = {name for name in sidecar_publishes(config, series) if (namespace, name) not in named}
    assert not unused, f"published, billed and shown nowhere: {sorted(unused)}"


def test_per_task_widgets_divide_by_the_scrapes_per_minute(template):
    """`up` and build_info arrive once per scrape and task; the dashboard turns them into task
    counts by dividing by the scrapes per minute the sidecar makes."""
    body = json.loads(dashboard_body(template, **EXAMPLE_PARAMETERS))
    expressions = [
        e["expression"] for w in body["widgets"] for e in w["properties"].get("metrics", [])
        if isinstance(e, dict) and ("scrapes" in e["expression"] or "findings_bridge_build_info" in e["expression"])
    ]
    assert len(expressions) == 2
    for expression in expressions:
        assert expression.endswith(f" / {SCRAPES_PER_MINUTE}"), expression
    # A fixed 60 s period under each, so the division holds whatever the widget's period.
    (scrapes,) = [
        m for w in body["widgets"] for m in w["properties"].get("metrics", [])
        if isinstance(m, list) and m[1] == "up"
    ]
    assert scrapes[-1]["period"] == 60
    assert any(", 60) / " in e for e in expressions)


def test_the_dashboard_shows_every_alarm_and_the_alarm_threshold(template):
    stack = Stack(template, **dict(EXAMPLE_PARAMETERS, OldestMessageAgeAlarmSeconds="1234"))
    dashboard = json.loads(stack.resource("Dashboard")["DashboardBody"])
    (alarms,) = [w for w in dashboard["widgets"] if w["type"] == "alarm"]
    assert set(alarms["properties"]["alarms"]) == {stack.names[a]["Arn"] for a in stack.resources_of_type("AWS::CloudWatch::Alarm")}
    assert set(stack.resources_of_type("AWS::CloudWatch::Alarm")) == set(ALARMS)
    thresholds = [
        a["value"] for w in dashboard["widgets"] if w["type"] == "metric"
        for a in w["properties"].get("annotations", {}).get("horizontal", [])
    ]
    assert 1234 in thresholds


def test_the_dashboard_name_is_unique_per_account(template):
    """Dashboards are global to an account, stacks are per Region: the name carries both."""
    stack = Stack(template, **EXAMPLE_PARAMETERS)
    assert stack.resource("Dashboard")["DashboardName"] == f"findings-bridge-{REGION}"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,255}", stack.resource("Dashboard")["DashboardName"])


# ------------------------------------------------------------------ the checker itself


@pytest.fixture(scope="module")
def good(template, series) -> tuple[dict, Catalog]:
    body = json.loads(dashboard_body(template, **EXAMPLE_PARAMETERS))
    return body, catalog(template, series, **EXAMPLE_PARAMETERS)


def widget(body: dict, title: str) -> dict:
    (found,) = [w for w in body["widgets"] if w["properties"].get("title") == title]
    return found


def problems_after(good, edit) -> list[str]:
    body, cat = good
    body = copy.deepcopy(body)
    edit(body)
    return check_dashboard(json.dumps(body), cat)


def test_checker_accepts_the_shipped_dashboard(good):
    body, cat = good
    assert check_dashboard(json.dumps(body), cat) == []


def test_checker_fails_when_the_worker_renames_a_series(template, series):
    """The worker renames TICKETS_CREATED: the sidecar's selector and the dashboard both go stale,
    and the checks say so instead of publishing nothing and drawing an empty graph."""
    names_rs = NAMES_RS.read_text(encoding="utf-8")
    renamed = names_rs.replace('"findings_bridge_tickets_created_total"', '"findings_bridge_tickets_opened_total"')
    assert renamed != names_rs
    renamed_series = exported_series(names_rs=renamed)
    config = collector_config(template, **EXAMPLE_PARAMETERS)
    with pytest.raises(AssertionError, match="findings_bridge_tickets_created_total"):
        sidecar_publishes(config, renamed_series)
    # And were the sidecar's selector renamed along with it, the dashboard still names the old one.
    cat = catalog(template, series, **EXAMPLE_PARAMETERS)
    namespace = config["exporters"]["awsemf"]["namespace"]
    cat.metrics[(namespace, "findings_bridge_tickets_opened_total")] = cat.metrics.pop((namespace, "findings_bridge_tickets_created_total"))
    problems = check_dashboard(dashboard_body(template, **EXAMPLE_PARAMETERS), cat)
    assert problems and all("findings_bridge_tickets_created_total is not published" in p for p in problems), problems


def test_checker_fails_on_a_misspelt_metric_in_a_search(good):
    def edit(body):
        entry = widget(body, "Errors per minute, by kind")["properties"]["metrics"][0]
        entry["expression"] = entry["expression"].replace("findings_bridge_errors_total", "findings_bridge_error_total")
    assert any("findings_bridge_error_total is not published" in p for p in problems_after(good, edit))


def test_checker_fails_on_dimensions_the_metric_is_not_published_with(good):
    def edit(body):
        entry = widget(body, "Errors per minute, by kind")["properties"]["metrics"][0]
        entry["expression"] = entry["expression"].replace(",kind}", ",kind,team}")
    assert any("published with dimensions [['kind']], not ['kind', 'team']" in p for p in problems_after(good, edit))


def test_checker_fails_on_a_queue_of_another_stack(good):
    def edit(body):
        widget(body, "Findings queue: age of the oldest message (s)")["properties"]["metrics"][0][3] = "someone-elses-queue"
    assert any("QueueName='someone-elses-queue' is not a resource of this stack" in p for p in problems_after(good, edit))


def test_checker_fails_on_a_meaningless_statistic(good):
    def edit(body):
        entry = widget(body, "Client-side rate-limit waits: seconds waited per minute, by system")["properties"]["metrics"][0]
        entry["expression"] = entry["expression"].replace("'Sum'", "'Maximum'")
    assert any("is a histogram: Maximum says nothing" in p for p in problems_after(good, edit))


def test_checker_fails_on_math_over_an_unknown_id(good):
    def edit(body):
        widget(body, "Tasks: running, desired, publishing metrics")["properties"]["metrics"][3]["expression"] = "scrape / 2"
    assert any("'scrape' is neither a metric id" in p for p in problems_after(good, edit))


def test_checker_fails_on_overlapping_or_off_grid_widgets(good):
    def overlap(body):
        body["widgets"][-1]["y"] = body["widgets"][-2]["y"]
        body["widgets"][-1]["x"] = body["widgets"][-2]["x"]
    assert any("overlaps widget" in p for p in problems_after(good, overlap))

    def off_grid(body):
        body["widgets"][-1]["x"] = 20
    assert any("off the 24-column grid" in p for p in problems_after(good, off_grid))


def test_checker_fails_on_an_alarm_of_another_stack_and_on_broken_json(good):
    def edit(body):
        (alarms,) = [w for w in body["widgets"] if w["type"] == "alarm"]
        alarms["properties"]["alarms"].append("arn:aws:cloudwatch:us-east-1:111122223333:alarm:other")
    assert any("is not an alarm of this stack" in p for p in problems_after(good, edit))
    body, cat = good
    assert check_dashboard(json.dumps(body)[:-1], cat)[0].startswith("the body is not JSON")
