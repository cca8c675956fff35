"""What the dashboard shows, computed from API objects: pure functions, tested without a server."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

RECENT_EVENTS = 3


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def format_duration(seconds: float) -> str:
    """`1h2m3s`, as TrainingJob status.duration writes it."""
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


@dataclass
class EventRow:
    time: str
    type: str
    reason: str
    message: str
    count: int


@dataclass
class ConditionRow:
    type: str
    status: str
    reason: str
    message: str
    since: str


@dataclass
class Row:
    """One TrainingJob or InferenceService as a table row and a detail page."""

    kind: str
    namespace: str
    name: str
    link: str
    phase: str
    module: str
    image: str
    gpus: str
    gpu_assigned: str
    duration: str
    url: str
    created: str
    conditions: list[ConditionRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    details: list[tuple[str, str]] = field(default_factory=list)

    @property
    def recent_events(self) -> list[EventRow]:
        return self.events[-RECENT_EVENTS:]

    @property
    def healthy(self) -> bool:
        return all(c.status == "True" for c in self.conditions if c.type == "Ready")


def _gpu_request(spec: dict[str, Any]) -> str:
    gpu = (spec.get("resources") or {}).get("gpu")
    if not gpu or not gpu.get("count", 1):
        return "-"
    text = f"{gpu.get('count', 1)}"
    if gpu.get("migProfile"):
        text += f" x MIG {gpu['migProfile']}"
    if gpu.get("product"):
        text += f" x {gpu['product']}"
    if gpu.get("minMemory"):
        text += f" (>= {gpu['minMemory']})"
    return text


def _event_time(event: dict[str, Any]) -> dt.datetime:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        parsed = _parse_time(event.get(key))
        if parsed:
            return parsed
    parsed = _parse_time((event.get("metadata") or {}).get("creationTimestamp"))
    return parsed or dt.datetime.min.replace(tzinfo=dt.UTC)


def events_by_object(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[EventRow]]:
    """Events keyed by (kind, namespace, name) of their object, oldest first."""
    found: dict[tuple[str, str, str], list[tuple[dt.datetime, EventRow]]] = {}
    for event in events:
        about = event.get("involvedObject") or event.get("regarding") or {}
        key = (
            about.get("kind", ""),
            about.get("namespace") or (event.get("metadata") or {}).get("namespace", ""),
            about.get("name", ""),
        )
        when = _event_time(event)
        found.setdefault(key, []).append(
            (
                when,
                EventRow(
                    time=when.strftime("%Y-%m-%d %H:%M:%S") if when.year > 1 else "",
                    type=event.get("type", "Normal"),
                    reason=event.get("reason", ""),
                    message=event.get("message") or event.get("note") or "",
                    count=int(event.get("count") or 1),
                ),
            )
        )
    return {key: [row for _, row in sorted(rows, key=lambda r: r[0])] for key, rows in found.items()}


def _conditions(status: dict[str, Any]) -> list[ConditionRow]:
    return [
        ConditionRow(
            type=c.get("type", ""),
            status=c.get("status", "Unknown"),
            reason=c.get("reason", ""),
            message=c.get("message", ""),
            since=(c.get("lastTransitionTime") or "").replace("T", " ").rstrip("Z"),
        )
        for c in status.get("conditions") or []
    ]


def _common(obj: dict[str, Any], kind: str, link: str) -> dict[str, Any]:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    return {
        "kind": kind,
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "link": link,
        "module": spec.get("module") or "",
        "image": spec.get("image") or "",
        "gpus": _gpu_request(spec),
        "created": (meta.get("creationTimestamp") or "").replace("T", " ").rstrip("Z"),
        "conditions": _conditions(obj.get("status") or {}),
    }


def trainingjob_row(obj: dict[str, Any], events: list[EventRow], now: dt.datetime) -> Row:
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    duration = status.get("duration") or ""
    start = _parse_time(status.get("startTime"))
    if not duration and start and not status.get("completionTime"):
        duration = format_duration((now - start).total_seconds())  # still running
    assigned = status.get("gpuProduct") or ""
    if status.get("gpuUtilizationPercent") is not None:
        assigned += f" ({status['gpuUtilizationPercent']}% busy)"
    row = Row(
        **_common(obj, "TrainingJob", f"trainingjobs/{meta.get('namespace', '')}/{meta.get('name', '')}"),
        phase=status.get("phase") or "Unknown",
        gpu_assigned=assigned.strip(),
        duration=duration,
        url="",
        events=events,
    )
    for label, key in (
        ("Job", "jobName"), ("Pod", "podName"), ("Node", "nodeName"), ("GPU", "gpuProduct"),
        ("GPU utilisation %", "gpuUtilizationPercent"), ("Restarts", "restarts"),
        ("Started", "startTime"), ("Finished", "completionTime"), ("Reason", "reason"),
        ("Message", "message"),
    ):
        if status.get(key) not in (None, ""):
            row.details.append((label, str(status[key])))
    hyper = (obj.get("spec") or {}).get("hyperparameters") or {}
    for name, value in sorted(hyper.items()):
        row.details.append((f"--{name}", str(value)))
    return row


def inferenceservice_row(obj: dict[str, Any], events: list[EventRow]) -> Row:
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    replicas = status.get("readyReplicas")
    if ready is None:
        phase = "Pending"
    elif ready.get("status") == "True":
        phase = "Ready" if replicas else "ScaledToZero"
    else:
        phase = ready.get("reason") or "NotReady"
    row = Row(
        **_common(obj, "InferenceService",
                  f"inferenceservices/{meta.get('namespace', '')}/{meta.get('name', '')}"),
        phase=phase,
        gpu_assigned="",
        duration="",
        url=status.get("url") or "",
        events=events,
    )
    for label, key in (
        ("Replicas", "replicas"), ("Ready replicas", "readyReplicas"),
        ("Last request", "lastRequestTime"), ("Cold starts", "coldStarts"), ("Image", "image"),
    ):
        if status.get(key) not in (None, ""):
            row.details.append((label, str(status[key])))
    return row


def devenvironment_row(obj: dict[str, Any], events: list[EventRow]) -> Row:
    """A DevEnvironment: its phase (Starting, Ready, Sleeping, Failed) and the link to the IDE."""
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    link = f"devenvironments/{meta.get('namespace', '')}/{meta.get('name', '')}"
    row = Row(
        **_common(obj, "DevEnvironment", link),
        phase=status.get("phase") or "Pending",
        gpu_assigned="",
        duration="",
        url=status.get("url") or "",
        events=events,
    )
    row.details.append(("IDE", str((obj.get("spec") or {}).get("ide") or "jupyterlab")))
    for label, key in (("Last activity", "lastActivityTime"), ("Replicas", "replicas"), ("Image", "image"),
                       ("Reason", "reason")):
        if status.get(key) not in (None, ""):
            row.details.append((label, str(status[key])))
    return row


def overview(
    trainingjobs: list[dict[str, Any]],
    services: list[dict[str, Any]],
    events: list[dict[str, Any]],
    now: dt.datetime,
    devenvironments: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> dict[str, dict[str, list[Row]]]:
    """{namespace: {"trainingjobs": rows, "inferenceservices": rows}}, sorted by namespace and name."""
    by_object = events_by_object(events)
    result: dict[str, dict[str, list[Row]]] = {}

    def bucket(namespace: str) -> dict[str, list[Row]]:
        return result.setdefault(namespace, {"trainingjobs": [], "inferenceservices": []})

    for obj in sorted(trainingjobs, key=lambda o: o["metadata"]["name"]):
        meta = obj["metadata"]
        key = ("TrainingJob", meta.get("namespace", ""), meta["name"])
        bucket(key[1])["trainingjobs"].append(trainingjob_row(obj, by_object.get(key, []), now))
    for obj in sorted(services, key=lambda o: o["metadata"]["name"]):
        meta = obj["metadata"]
        key = ("InferenceService", meta.get("namespace", ""), meta["name"])
        bucket(key[1])["inferenceservices"].append(inferenceservice_row(obj, by_object.get(key, [])))
    for obj in sorted(devenvironments, key=lambda o: o["metadata"]["name"]):
        meta = obj["metadata"]
        key = ("DevEnvironment", meta.get("namespace", ""), meta["name"])
        row = devenvironment_row(obj, by_object.get(key, []))
        bucket(key[1]).setdefault("devenvironments", []).append(row)
    return dict(sorted(result.items()))
