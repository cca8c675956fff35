"""What every controller needs at run time: the API client and the settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import OperatorConfig
from ..kube import Kube


@dataclass
class Runtime:
    kube: Kube
    config: OperatorConfig


_current: Runtime | None = None


def configure(runtime: Runtime | None) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("the operator runtime is not configured; start it with `deep-platform run`")
    return _current
