"""The chart's PodMonitor, PrometheusRule and Grafana dashboard use only what the runtimes and the operator export.

Every series an alert or a panel reads must be a metric the code registers, with its type's suffix
(``_total`` for counters, ``_bucket`` for histograms), and every label it groups or filters by must be
one of that metric's labels or one Prometheus adds to every target. A renamed metric or label fails here
instead of leaving a dashboard empty and an alert silent.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml
from cdc_operator import metrics as operator_metrics
from cdc_operator import naming
from cdc_operator.render.deployment import HTTP_PORT_NAME

from devservices.envtest import assets_dir, binary_path
from devservices.pytest_require import require_binary
from pipeline_runtime.observability.metrics import create_metrics

CHART = Path(__file__).resolve().parents[2] / "charts" / "headrace"
#: Labels Prometheus (and the Prometheus Operator's PodMonitor) put on every scraped series.
TARGET_LABELS = {"namespace", "pod", "container", "instance", "job", "endpoint"}
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def exported() -> dict[str, set[str]]:
    """Every series name the code can export, with the labels it carries."""
    runtime = create_metrics()
    collectors = [getattr(runtime, f.name) for f in fields(runtime) if f.name != "registry"]
    collectors += [v for v in vars(operator_metrics).values() if hasattr(v, "_type") and hasattr(v, "_name")]
    series: dict[str, set[str]] = {}
    for collector in collectors:
        for suffix in _SUFFIXES[collector._type]:
            labels = set(collector._labelnames) | ({"le"} if suffix == "_bucket" else set())
            series[collector._name + suffix] = labels
    return series


def rendered() -> list[dict[str, Any]]:
    helm = require_binary(binary_path("helm", assets_dir()), "`make deps` (scripts/build-envtest.sh) builds it")
    values = [
        "metrics.podMonitor.enabled=true",
        "metrics.prometheusRule.enabled=true",
        "metrics.dashboard.enabled=true",
    ]
    command = [str(helm), "template", "headrace", str(CHART), *(a for v in values for a in ("--set", v))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def one(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [
        d for d in documents if d["kind"] == kind and (kind != "ConfigMap" or "dashboard" in d["metadata"]["name"])
    ]
    return found


def expressions(documents: list[dict[str, Any]]) -> list[str]:
    rules = one(documents, "PrometheusRule")["spec"]["groups"]
    exprs = [rule["expr"] for group in rules for rule in group["rules"]]
    dashboard = json.loads(one(documents, "ConfigMap")["data"]["headrace.json"])
    exprs += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += [variable["query"] for variable in dashboard["templating"]["list"] if variable["type"] == "query"]
    return exprs


_SERIES = re.compile(r"\b(headrace_[a-z0-9_]+)(\{[^}]*\})?")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)")


def problems(expr: str, series: dict[str, set[str]]) -> list[str]:
    """What in one expression the code does not export."""
    found = []
    used: set[str] = set()
    for name, matchers in _SERIES.findall(expr):
        if name not in series:
            found.append(f"{name}: no such series")
            continue
        used |= series[name]
        unknown = set(_MATCHER.findall(matchers or "")) - series[name] - TARGET_LABELS
        found += [f"{name}: no label {label}" for label in sorted(unknown)]
    for group in _GROUPING.findall(expr):
        for label in (part.strip() for part in group.split(",") if part.strip()):
            if label not in used | TARGET_LABELS:
                found.append(f"grouped by {label}, which no series of it carries")
    label_values = re.search(r"label_values\([^,]+,\s*([a-z_]+)\)", expr)
    if label_values and label_values.group(1) not in used | TARGET_LABELS:
        found.append(f"label_values of {label_values.group(1)}, which the series does not carry")
    return found


def test_every_alert_and_panel_reads_series_the_code_exports() -> None:
    series = exported()
    exprs = expressions(rendered())
    assert len(exprs) >= 14  # six alerts, eight panels, the variables
    broken = {expr: issues for expr in exprs if (issues := problems(expr, series))}
    assert broken == {}


def test_the_check_catches_a_misspelt_metric_or_label() -> None:
    series = exported()
    assert problems("rate(headrace_events_writen_total[5m])", series) == [
        "headrace_events_writen_total: no such series"
    ]
    assert problems("headrace_lag_seconds_total", series) == ["headrace_lag_seconds_total: no such series"]
    assert problems('sum by (sink) (headrace_lag_seconds{table="x"})', series) == [
        "headrace_lag_seconds: no label table",
        "grouped by sink, which no series of it carries",
    ]


def test_the_pod_monitor_scrapes_the_runtime_pods_the_operator_creates() -> None:
    monitor = one(rendered(), "PodMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= naming.pipeline_labels("any").items()
    assert [endpoint["port"] for endpoint in monitor["podMetricsEndpoints"]] == [HTTP_PORT_NAME]
    assert monitor["namespaceSelector"] == {"any": True}


@pytest.mark.parametrize("kind", ["PodMonitor", "PrometheusRule", "ConfigMap"])
def test_monitoring_objects_are_off_unless_asked(kind: str) -> None:
    helm = require_binary(binary_path("helm", assets_dir()), "`make deps` (scripts/build-envtest.sh) builds it")
    result = subprocess.run([str(helm), "template", "headrace", str(CHART)], capture_output=True, text=True, check=True)
    kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout) if d]
    assert kind not in kinds
