"""The operator's memory of each TrainingJob's progress: the latest report, the status it
becomes, a bounded history for the dashboard, and the Prometheus series.

Reports only change memory here; `receiver.Flusher` writes what changed, at most once per
TrainingJob every few seconds (status) and less often (history), so a training that reports
every batch costs the API server no more than one that reports every minute.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .report import Report

Key = tuple[str, str]
#: points kept per TrainingJob; past it the history is thinned to half (every other point)
HISTORY_POINTS = 400
HISTORY_KEY = "history.json"
HISTORY_LABEL = "deep-hybrid-datacloud.eu/progress-of"

REFUSED = Counter(
    "deep_training_progress_refused_total",
    "Progress reports the endpoint refused, by reason.",
    ["reason"],
)
ACCEPTED = Counter("deep_training_progress_reports_total", "Progress reports the endpoint accepted.")
STATUS_WRITES = Counter(
    "deep_training_progress_status_writes_total", "status.progress writes (coalesced reports)."
)
HISTORY_WRITES = Counter(
    "deep_training_progress_history_writes_total", "Writes of the progress history ConfigMaps."
)
REFUSAL_REASONS = (
    "unauthenticated",
    "wrong_audience",
    "not_a_pod",
    "foreign",
    "rate_limited",
    "bad_request",
    "busy",
    "unavailable",
)
for _reason in REFUSAL_REASONS:
    REFUSED.labels(_reason)


def history_configmap_name(namespace: str, name: str) -> str:
    """The ConfigMap (in the platform namespace) holding a TrainingJob's history."""
    plain = f"progress-{namespace}-{name}"
    if len(plain) <= 253:
        return plain
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:16]
    return f"{plain[:200].rstrip('-.')}-{digest}"


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Run:
    """What one TrainingJob has reported."""

    uid: str
    epoch: int | None = None
    total_epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    reports: int = 0
    last_time: float | None = None
    first: tuple[float, float] | None = None  # (time, fraction) of the first report with a fraction
    points: list[dict[str, Any]] = field(default_factory=list)
    status_dirty: bool = False
    history_dirty: bool = False
    status_written: float = 0.0
    history_written: float = 0.0

    def fraction(self) -> float | None:
        for done, total in ((self.epoch, self.total_epochs), (self.step, self.total_steps)):
            if done is not None and total:
                return min(done / total, 1.0)
        return None

    def summary(self) -> str | None:
        if self.epoch is not None:
            return f"{self.epoch}/{self.total_epochs}" if self.total_epochs else str(self.epoch)
        if self.step is not None:
            return f"step {self.step}/{self.total_steps}" if self.total_steps else f"step {self.step}"
        return None

    def add(self, report: Report, now: float) -> None:
        for attr in ("epoch", "total_epochs", "step", "total_steps"):
            value = getattr(report, attr)
            if value is not None:
                setattr(self, attr, value)
        self.metrics.update(report.metrics)
        self.reports += 1
        self.last_time = now
        fraction = self.fraction()
        if fraction is not None and (self.first is None or fraction < self.first[1]):
            self.first = (now, fraction)  # a restarted training starts its pace again
        self.status_dirty = True
        if report.metrics or report.epoch is not None or report.step is not None:
            self._add_point(report, now)

    def _add_point(self, report: Report, now: float) -> None:
        x = report.epoch if report.epoch is not None else report.step
        if x is None:
            x = self.epoch if self.epoch is not None else self.step if self.step is not None else self.reports
        last = self.points[-1] if self.points else None
        if last is not None and last["x"] == x:  # one point per epoch (or step): the latest values
            last["m"].update(report.metrics)
            last["t"] = int(now)
        else:
            if last is not None and x < last["x"]:  # the training started over: a new curve
                self.points.clear()
            self.points.append({"x": x, "t": int(now), "m": dict(report.metrics)})
            if len(self.points) > HISTORY_POINTS:
                self.points = self.points[:-1:2] + self.points[-1:]
        self.history_dirty = True

    def status(self, now: float) -> dict[str, Any]:
        """status.progress as the API stores it (camelCase)."""
        fraction = self.fraction()
        body: dict[str, Any] = {
            key: value
            for key, value in (
                ("epoch", self.epoch),
                ("totalEpochs", self.total_epochs),
                ("step", self.step),
                ("totalSteps", self.total_steps),
                ("summary", self.summary()),
            )
            if value is not None
        }
        if fraction is not None:
            body["percent"] = int(fraction * 100)
        body["metrics"] = dict(self.metrics)
        body["reports"] = self.reports
        if self.last_time is not None:
            body["lastReportTime"] = _iso(self.last_time)
        eta = self.estimated_end()
        if eta is not None:
            body["estimatedCompletionTime"] = _iso(eta)
        return body

    def estimated_end(self) -> float | None:
        fraction = self.fraction()
        if fraction is None or self.first is None or self.last_time is None or fraction >= 1.0:
            return None
        start_time, start_fraction = self.first
        if fraction <= start_fraction or self.last_time <= start_time:
            return None
        pace = (fraction - start_fraction) / (self.last_time - start_time)
        return self.last_time + (1.0 - fraction) / pace

    def history(self, namespace: str, name: str) -> dict[str, Any]:
        return {"namespace": namespace, "name": name, "uid": self.uid, "points": self.points}

    def load_history(self, stored: dict[str, Any]) -> None:
        if stored.get("uid") == self.uid and isinstance(stored.get("points"), list):
            self.points = [p for p in stored["points"] if isinstance(p, dict) and "x" in p and "m" in p]
            self.points = self.points[-HISTORY_POINTS:]


class Tracker(Collector):
    """Every TrainingJob's Run, shared by the endpoint (writes) and the flusher (reads)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.runs: dict[Key, Run] = {}
        #: (uid, status.progress) of the last write per TrainingJob, noted before it is sent:
        #: the controller skips its watch event (which may come before the write's answer)
        self.written: dict[Key, tuple[str, dict[str, Any]]] = {}
        self.gone: list[Key] = []  # forgotten: their history ConfigMap is to be deleted

    def record(self, key: Key, uid: str, report: Report, stored: Callable[[], dict[str, Any] | None]) -> Run:
        """Take one report for the TrainingJob `key` (uid: a TrainingJob made again under the
        same name starts afresh). `stored` reads the history kept before a restart."""
        with self.lock:
            run = self.runs.get(key)
            if run is None or run.uid != uid:
                run = self.runs[key] = Run(uid=uid)
                fresh = True
            else:
                fresh = False
        if fresh:
            previous = stored()  # outside the lock: an API read
            if previous:
                with self.lock:
                    run.load_history(previous)
        with self.lock:
            run.add(report, self.clock())
        ACCEPTED.inc()
        return run

    def forget(self, key: Key) -> None:
        with self.lock:
            self.written.pop(key, None)
            if self.runs.pop(key, None) is not None:
                self.gone.append(key)

    def reset(self) -> None:
        with self.lock:
            self.runs.clear()
            self.written.clear()
            self.gone.clear()

    def is_own_write(self, body: dict[str, Any]) -> bool:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        written = self.written.get(key)
        progress = (body.get("status") or {}).get("progress")
        return written is not None and written[0] == meta.get("uid") and written[1] == progress

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.lock:
            runs = [(key, run.fraction(), dict(run.metrics)) for key, run in self.runs.items()]
        ratio = GaugeMetricFamily(
            "deep_training_progress_ratio",
            "Share of the training done (epochs or steps), from its latest report, 0 to 1.",
            labels=["namespace", "name"],
        )
        metric = GaugeMetricFamily(
            "deep_training_metric",
            "Latest value of each metric a training reported.",
            labels=["namespace", "name", "metric"],
        )
        for (namespace, name), fraction, metrics in sorted(runs, key=lambda r: r[0]):
            if fraction is not None:
                ratio.add_metric([namespace, name], fraction)
            for metric_name, value in sorted(metrics.items()):
                metric.add_metric([namespace, name, metric_name], value)
        yield ratio
        yield metric


def history_from_configmap(body: dict[str, Any] | None) -> dict[str, Any] | None:
    try:
        stored = json.loads(((body or {}).get("data") or {}).get(HISTORY_KEY) or "null")
    except ValueError:
        return None
    return stored if isinstance(stored, dict) else None


TRACKER = Tracker()
REGISTRY.register(TRACKER)
