"""One progress report as the endpoint takes it: checked field by field, errors naming the field."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..api.trainingjob import MAX_METRICS, METRIC_NAME_PATTERN

METRIC_NAME = re.compile(METRIC_NAME_PATTERN)
COUNTERS = {"epoch": "epoch", "totalEpochs": "total_epochs", "step": "step", "totalSteps": "total_steps"}
MAX_COUNT = 10**12


class BadReport(ValueError):
    """A report the endpoint refuses; the message names the field and what it takes."""


@dataclass
class Report:
    epoch: int | None = None
    total_epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            wire: getattr(self, attr) for wire, attr in COUNTERS.items() if getattr(self, attr) is not None
        }
        if self.metrics:
            body["metrics"] = dict(self.metrics)
        return body

    @property
    def empty(self) -> bool:
        return not self.metrics and all(getattr(self, attr) is None for attr in COUNTERS.values())


def parse_report(body: Any) -> Report:
    """The JSON body of a report: `{"epoch": 3, "totalEpochs": 15, "metrics": {"loss": 0.3}}`."""
    if not isinstance(body, dict):
        raise BadReport('the body must be a JSON object like {"epoch": 3, "totalEpochs": 15}')
    unknown = sorted(set(body) - set(COUNTERS) - {"metrics"})
    if unknown:
        raise BadReport(
            f"unknown fields {unknown}; a report has epoch, totalEpochs, step, totalSteps, metrics"
        )
    report = Report()
    for wire, attr in COUNTERS.items():
        value = body.get(wire)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
            raise BadReport(f"{wire} must be a whole number from 0 to {MAX_COUNT}, not {value!r}")
        setattr(report, attr, value)
    metrics = body.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise BadReport("metrics must be an object of name: number")
    if len(metrics) > MAX_METRICS:
        raise BadReport(f"metrics holds {len(metrics)} names; at most {MAX_METRICS} are kept")
    for name, value in metrics.items():
        if not METRIC_NAME.match(str(name)):
            raise BadReport(
                f"metrics: {str(name)[:80]!r} is no metric name (letters, digits, _.:/-, up to 63)"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise BadReport(f"metrics.{name} must be a finite number, not {value!r}")
        report.metrics[str(name)] = float(value)
    for done, total in (("epoch", "total_epochs"), ("step", "total_steps")):
        if (
            getattr(report, done) is not None
            and getattr(report, total) is not None
            and getattr(report, done) > getattr(report, total)
        ):
            raise BadReport(f"{done} {getattr(report, done)} is past the total {getattr(report, total)}")
    if report.empty:
        raise BadReport("the report says nothing: give epoch, step or metrics")
    return report
