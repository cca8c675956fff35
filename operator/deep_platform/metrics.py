"""Prometheus metrics of the operator, named like controller-runtime's so dashboards carry over."""

from __future__ import annotations

import datetime as dt
import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

RECONCILE_TOTAL = Counter(
    "deep_operator_reconcile_total",
    "Reconciliations per controller, by result (success, error, requeue).",
    ["controller", "result"],
)
RECONCILE_ERRORS = Counter(
    "deep_operator_reconcile_errors_total",
    "Reconciliations that ended in an error, per controller.",
    ["controller"],
)
RECONCILE_TIME = Histogram(
    "deep_operator_reconcile_time_seconds",
    "Time spent in one reconciliation, per controller.",
    ["controller"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
API_WRITES = Counter(
    "deep_operator_api_writes_total",
    "Writes the operator sent to the API server, by verb and kind.",
    ["verb", "kind"],
)
MANAGED_OBJECTS = Gauge(
    "deep_operator_managed_objects",
    "Objects of each kind the operator currently reconciles.",
    ["controller"],
)


#: every phase a TrainingJob status can show, so each series exists (at 0) from the start
TRAININGJOB_PHASES = ("Queued", "Suspended", "Pending", "Running", "Restarting", "Succeeded", "Failed")


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _key(body: dict[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


class PhaseCounts(Collector):
    """Objects of one kind by status.phase, every phase a series from the start (at 0).

    The kind's watch hands every body it sees (our own status writes included) to `observe`,
    and deletions to `forget`, so the counts follow the API without a read."""

    def __init__(self, metric: str, documentation: str, phases: tuple[str, ...], unset: str) -> None:
        self.metric, self.documentation, self.phases, self.unset = metric, documentation, phases, unset
        self._lock = threading.Lock()
        self._phase: dict[tuple[str, str], str] = {}

    def phase_of(self, body: dict[str, Any]) -> str:
        return str((body.get("status") or {}).get("phase") or self.unset)

    def observe(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._phase[_key(body)] = self.phase_of(body)

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._phase.pop((namespace, name), None)

    def by_phase(self) -> GaugeMetricFamily:
        with self._lock:
            phases = list(self._phase.values())
        counts = dict.fromkeys(self.phases, 0)
        for phase in phases:
            counts[phase] = counts.get(phase, 0) + 1
        family = GaugeMetricFamily(self.metric, self.documentation, labels=["phase"])
        for phase, count in counts.items():
            family.add_metric([phase], count)
        return family

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield self.by_phase()


class TrainingJobPhases(PhaseCounts):
    """TrainingJobs by phase, and how long each Pending one has waited, from the watch.

    A TrainingJob first seen already Pending (the operator restarted) counts its wait from its
    creation; one that became Pending later counts from the moment the watch saw it so.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        # no status yet: not started
        super().__init__("deep_operator_trainingjobs", "TrainingJobs the operator watches, by status.phase.",
                         TRAININGJOB_PHASES, "Pending")
        self.clock = clock
        self._pending_since: dict[tuple[str, str], float] = {}

    def observe(self, body: dict[str, Any]) -> None:
        key, phase = _key(body), self.phase_of(body)
        with self._lock:
            before = self._phase.get(key)
            self._phase[key] = phase
            if phase != "Pending":
                self._pending_since.pop(key, None)
            elif before != "Pending":
                meta = body.get("metadata") or {}
                created = _timestamp(meta.get("creationTimestamp")) if before is None else None
                self._pending_since[key] = created if created is not None else self.clock()

    def forget(self, namespace: str, name: str) -> None:
        super().forget(namespace, name)
        with self._lock:
            self._pending_since.pop((namespace, name), None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield self.by_phase()
        with self._lock:
            pending = dict(self._pending_since)
        waiting = GaugeMetricFamily(
            "deep_operator_trainingjob_pending_seconds",
            "Seconds each Pending TrainingJob has been Pending.",
            labels=["namespace", "name"],
        )
        now = self.clock()
        for (namespace, name), since in sorted(pending.items()):
            waiting.add_metric([namespace, name], max(now - since, 0.0))
        yield waiting


TRAININGJOBS = TrainingJobPhases()
REGISTRY.register(TRAININGJOBS)

#: every phase a DevEnvironment status can show
DEVENVIRONMENT_PHASES = ("Starting", "Ready", "Sleeping", "Failed")
#: DevEnvironments by phase (awake ones hold GPUs; asleep ones do not)
DEVENVIRONMENTS = PhaseCounts(
    "deep_operator_devenvironments", "DevEnvironments the operator watches, by status.phase.",
    DEVENVIRONMENT_PHASES, "Starting",
)
REGISTRY.register(DEVENVIRONMENTS)


class Requeue(Exception):  # a signal, not an error
    """Raised by a reconciler to be called again later; counted as result="requeue"."""

    def __init__(self, message: str, delay: float = 10.0) -> None:
        super().__init__(message)
        self.delay = delay


F = TypeVar("F", bound=Callable[..., Any])


def instrumented(controller: str) -> Callable[[F], F]:
    """Count and time every call of a reconcile function."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = "success"
            try:
                return func(*args, **kwargs)
            except Requeue:
                result = "requeue"
                raise
            except BaseException:
                result = "error"
                RECONCILE_ERRORS.labels(controller).inc()
                raise
            finally:
                RECONCILE_TOTAL.labels(controller, result).inc()
                RECONCILE_TIME.labels(controller).observe(time.perf_counter() - started)

        return wrapper  # type: ignore[return-value]

    return decorate
