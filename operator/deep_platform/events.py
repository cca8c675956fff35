"""Kubernetes Events on transitions, so `kubectl describe` tells the story."""

from __future__ import annotations

import logging
from typing import Any

from . import kube as k
from .conditions import now

log = logging.getLogger(__name__)
REPORTING_COMPONENT = "deep-platform-operator"


def event_for(obj: dict[str, Any], reason: str, message: str, warning: bool = False) -> dict[str, Any]:
    """A core/v1 Event about obj. Messages must never carry credentials."""
    meta = obj["metadata"]
    namespace = meta.get("namespace") or "default"
    timestamp = now().isoformat().replace("+00:00", "Z")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": REPORTING_COMPONENT},
        "reportingComponent": REPORTING_COMPONENT,
        "reportingInstance": REPORTING_COMPONENT,
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
    }


def emit(api: k.Kube, obj: dict[str, Any], reason: str, message: str, warning: bool = False) -> None:
    """Post an Event; losing one is not worth failing a reconciliation for."""
    try:
        api.create(event_for(obj, reason, message, warning))
    except Exception as exc:
        log.warning("could not post event %s for %s: %s", reason, obj["metadata"]["name"], exc)
