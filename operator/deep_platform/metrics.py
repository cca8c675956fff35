"""Prometheus metrics of the operator, named like controller-runtime's so dashboards carry over."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram

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
