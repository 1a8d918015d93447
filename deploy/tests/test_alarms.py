"""The paused-connection alarm counts the log lines the worker really writes.

The worker logs each pause of a connection or rule with the field `event` set to
`findings_bridge::health::PAUSED_EVENT`; if the constant and the stack's metric filter drift
apart, the alarm silently never fires. These tests tie the two together.
"""

from __future__ import annotations

import re
from pathlib import Path

from cfn_template import load_template

HEALTH_RS = Path(__file__).resolve().parents[2] / "src" / "pipeline" / "health.rs"


def paused_event() -> str:
    match = re.search(r'pub const PAUSED_EVENT: &str = "([^"]+)";', HEALTH_RS.read_text())
    assert match, "src/pipeline/health.rs must define PAUSED_EVENT"
    return match.group(1)


def test_the_metric_filter_matches_the_workers_pause_event():
    resources = load_template()["Resources"]
    metric_filter = resources["PausedConnectionMetricFilter"]["Properties"]
    assert metric_filter["LogGroupName"] == {"Ref": "LogGroup"}
    assert metric_filter["FilterPattern"] == f'{{ $.event = "{paused_event()}" }}'


def test_the_alarm_reads_the_metric_the_filter_writes():
    resources = load_template()["Resources"]
    transformation = resources["PausedConnectionMetricFilter"]["Properties"]["MetricTransformations"][0]
    alarm = resources["ConnectionPaused"]["Properties"]
    assert alarm["Namespace"] == transformation["MetricNamespace"]
    assert alarm["MetricName"] == transformation["MetricName"]
    assert alarm["Statistic"] == "Sum"
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Threshold"] == 0
    # No pause logged means no pause: missing data must not keep the alarm red.
    assert alarm["TreatMissingData"] == "notBreaching"
    assert "AlarmActions" in alarm and "OKActions" in alarm
