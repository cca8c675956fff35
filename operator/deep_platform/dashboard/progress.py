"""A TrainingJob's progress on its detail page: status.progress and the history's charts."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .. import kube as k
from ..progress.chart import Chart, charts
from ..progress.tracker import history_configmap_name, history_from_configmap

log = logging.getLogger(__name__)


@dataclass
class Progress:
    summary: str
    percent: int | None
    metrics: list[tuple[str, str]]
    last_report: str
    estimated_end: str
    charts: list[Chart] = field(default_factory=list)


def progress_view(status: dict[str, Any], history: dict[str, Any] | None) -> Progress | None:
    """What the page shows (pure); None when the training never reported."""
    progress = status.get("progress") or {}
    if not progress and not history:
        return None
    x_label = (
        "epoch"
        if progress.get("epoch") is not None
        else "step"
        if progress.get("step") is not None
        else "report"
    )
    return Progress(
        summary=str(progress.get("summary") or "-"),
        percent=progress.get("percent"),
        metrics=[(name, f"{value:.6g}") for name, value in sorted((progress.get("metrics") or {}).items())],
        last_report=str(progress.get("lastReportTime") or "-"),
        estimated_end=str(progress.get("estimatedCompletionTime") or "-"),
        charts=charts(history, x_label),
    )


def progress_of(kube: k.Kube, platform_namespace: str, obj: dict[str, Any]) -> Progress | None:
    """Read the history ConfigMap (the platform keeps it; the status stays small)."""
    meta = obj["metadata"]
    name = history_configmap_name(meta.get("namespace") or "", meta["name"])
    try:
        stored = history_from_configmap(kube.get(k.CONFIGMAP, name, platform_namespace))
    except k.ApiError as exc:
        log.warning("progress history %s not read: %s", name, exc)
        stored = None
    if stored is not None and stored.get("uid") != meta.get("uid"):
        stored = None  # a TrainingJob of the same name before this one
    return progress_view(obj.get("status") or {}, stored)
