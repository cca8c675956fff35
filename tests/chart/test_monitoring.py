"""The Grafana dashboard and the PrometheusRule against what the components really export.

Every panel query and every alert expression must parse (the real `promtool`), and every metric
it names must be one that the operator, the activator or the GPU agent exports: the names come
from their real prometheus_client registries, not from a list kept by hand. Label matchers on
our metrics must use labels those metrics have (or the scrape target's own labels).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart import chart

DASHBOARD = chart.CHART / "files" / "dashboard.json"
#: labels Prometheus adds to every scraped series (job, instance, and the prometheus-operator's
#: target labels), and the series it makes itself
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
PROMETHEUS_SERIES = {"up": TARGET_LABELS}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan", "atan2"}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("", "_count", "_sum", "_created"), "gauge": ("",), "info": ("_info",)}


def _sample_names(families: Any) -> dict[str, set[str]]:
    """Metric name -> its label names, for every series a family can export (a labelled
    histogram without observations has no samples yet, so the names come from its type too)."""
    found: dict[str, set[str]] = {}
    for family in families:
        labels = {label for s in family.samples for label in s.labels} - {"le", "quantile"}
        labels |= set(getattr(family, "_labelnames", ()))
        for suffix in SUFFIXES.get(family.type, ("",)):
            found.setdefault(family.name + suffix, set()).update(labels)
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(labels)
    return found


def _operator_and_activator() -> dict[str, set[str]]:
    import prometheus_client

    import deep_platform.activator.metrics
    import deep_platform.controllers.trainingjob
    import deep_platform.metrics  # noqa: F401  (the imports register the metrics)

    names: dict[str, set[str]] = {}
    for collector in list(prometheus_client.REGISTRY._collector_to_names):
        described = collector.describe() if hasattr(collector, "describe") else []
        for family in [*described, *collector.collect()]:
            if isinstance(collector, prometheus_client.metrics.MetricWrapperBase):
                family._labelnames = collector._labelnames  # type: ignore[attr-defined]
            for name, labels in _sample_names([family]).items():
                names.setdefault(name, set()).update(labels)
    return names


def _gpu_agent(tmp_path: Path) -> dict[str, set[str]]:
    import datetime as dt

    from prometheus_client.core import Metric

    from deep_platform.gpu.agent import GpuAgent, registry_for
    from tests.unit.gpu_fakes import MIB, FakeNvml, a100

    uid = "3f1c2b9e-7a4d-4e2f-9b1a-0c5d6e7f8a9b"
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "cgroup").write_text(f"0::/kubepods/pod{uid}/c0ffee\n")
    gpu = a100(0, util=50)
    gpu.procs = [(4242, 1024 * MIB)]
    agent = GpuAgent(FakeNvml([gpu]), "gpu-node-1", proc_root=tmp_path,
                     pods=lambda: {uid: ("alice", "retrain-x", "trainingjob", "retrain")},
                     clock=lambda: dt.datetime(2026, 5, 1, tzinfo=dt.UTC))
    agent.step()
    families: list[Metric] = list(registry_for(agent).collect())
    return _sample_names(families)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    names = _operator_and_activator()
    names.update(_gpu_agent(tmp_path_factory.mktemp("proc")))
    names.update(PROMETHEUS_SERIES)
    return names


def metric_selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names of its matchers) for every series selector of a PromQL expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations
    text = re.sub(r"(?<![A-Za-z0-9_:])\d[0-9.]*(?:[eE][+-]?\d+)?[a-z]*", " ", text)  # numbers, durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found = []
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*(\{[^}]*\})?", text):
        name, matchers = match.group(1), match.group(2) or ""
        if not name or name in KEYWORDS:
            continue
        if text[match.end(1):].lstrip().startswith("(") and not matchers:
            continue  # a function or an aggregation
        labels = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
        found.append((name, labels))
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    objs = chart.objects(chart.render(4, chart.CHART / "ci" / "all-enabled-values.yaml"))
    [rule] = [o for o in objs if o["kind"] == "PrometheusRule"]
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_the_selector_reader_reads_promql() -> None:
    assert metric_selectors(
        'histogram_quantile(0.95, sum by (controller, le) (rate(a_bucket{x="}",y=~"b"}[5m]))) > 2 '
        "and on (node) absent(up == 1) or b offset 5m"
    ) == [("a_bucket", {"x", "y"}), ("up", set()), ("b", set())]


def test_dashboard_covers_what_running_the_platform_needs() -> None:
    text = " ".join(expr for _, expr in dashboard_queries())
    for metric in (
        "deep_operator_trainingjobs", "deep_operator_devenvironments", "deep_operator_reconcile_errors_total",
        "deep_activator_requests_total",
        "deep_activator_request_duration_seconds_bucket", "deep_activator_queue_depth",
        "deep_activator_cold_start_duration_seconds_bucket", "deep_activator_scale_total",
        "deep_gpu_utilization_percent", "deep_gpu_memory_used_bytes", "deep_gpu_workload_utilization_percent",
        "deep_gpu_workload_memory_used_bytes",
    ):
        assert metric in text, f"no panel shows {metric}"
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert any(p["type"] == "heatmap" and "cold_start" in p["targets"][0]["expr"] for p in panels)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_alerts_cover_the_failures_an_admin_is_paged_for() -> None:
    names = {r["alert"] for r in alert_rules()}
    assert names == {"DeepPlatformOperatorDown", "DeepPlatformReconcileErrors", "DeepPlatformColdStartSlow",
                     "DeepPlatformGPULost", "DeepPlatformTrainingJobStuckPending"}


def test_every_query_and_alert_names_exported_metrics(exported: dict[str, set[str]]) -> None:
    checked = 0
    queries = dashboard_queries() + [(r["alert"], r["expr"]) for r in alert_rules()]
    for where, expr in queries:
        selectors = metric_selectors(expr)
        assert selectors, f"{where}: no metric in {expr!r}"
        for name, labels in selectors:
            assert name in exported, f"{where}: {name} is exported by no component ({expr})"
            unknown = labels - exported[name] - TARGET_LABELS
            assert not unknown, f"{where}: {name} has no label {sorted(unknown)}"
            checked += 1
    assert checked >= 30


def test_every_expression_parses_with_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: apt-get install prometheus (scripts/install-system-packages.sh)")
    queries = dashboard_queries()
    rules = [{"record": f"deep:dashboard:{i}", "expr": expr} for i, (_, expr) in enumerate(queries)]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [
        {"name": "dashboard", "rules": rules},
        {"name": "alerts", "rules": alert_rules()},  # the alerts as rendered, annotations included
    ]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True,
                            check=False, cwd=tempfile.gettempdir())
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules) + 5} rules found" in result.stdout
