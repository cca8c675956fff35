"""What the activator reads and writes in the API server, as blocking calls on `Kube`.

The async parts call these through `asyncio.to_thread`. Every write that two activators could
race on carries the resourceVersion it was computed from, so the loser gets a 409 and re-reads
instead of overwriting (docs/serving.md, "Who decides").
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..api import InferenceService
from ..builders import pod as podparts
from ..builders.inferenceservice import VERSION_ANNOTATION, service_name
from ..kube import DEPLOYMENT, ENDPOINTSLICE, LEASE, SECRET, ApiError, Kube, kind_of
from ..readiness import not_starting

ISVC = kind_of(InferenceService)
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
LOAD_ANNOTATION = "deep-hybrid-datacloud.eu/in-flight"
ACTIVATOR_LABEL = "deep-hybrid-datacloud.eu/activator"
LEADER_LEASE = "deep-platform-activator-scaler"
ATTEMPTS = 20
log = logging.getLogger(__name__)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def timestamp(when: dt.datetime) -> str:
    """RFC 3339 with milliseconds (idle times of a second need sub-second precision)."""
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def micro_timestamp(when: dt.datetime) -> str:
    """metav1.MicroTime, as Leases want it."""
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_duration(text: str) -> float:
    """`30s`, `5m`, `1h30m`, `500ms` -> seconds (the pattern of spec.scaling.scaleToZeroAfter)."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, number = 0.0, ""
    index = 0
    while index < len(text):
        char = text[index]
        if char.isdigit() or char == ".":
            number += char
            index += 1
            continue
        unit = "ms" if text.startswith("ms", index) else char
        if unit not in units or not number:
            raise ValueError(f"{text!r} is not a duration; write it like 30s, 5m or 1h")
        total += float(number) * units[unit]
        number = ""
        index += len(unit)
    if number:
        raise ValueError(f"{text!r} lacks a unit; write it like 30s, 5m or 1h")
    return total


@dataclass
class Failure:
    """Why a model cannot serve: the answer held requests get instead of a hang."""

    code: int
    reason: str
    message: str
    #: whether a later retry may work unchanged (Retry-After in the answer)
    retry: bool = False


def ready_endpoints(slices: list[dict[str, Any]]) -> int:
    """Ready endpoints in EndpointSlices (an absent `ready` means ready, as the API says)."""
    count = 0
    for item in slices:
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready", True) is not False:
                count += 1
    return count


def failure_of(isvc: dict[str, Any]) -> Failure | None:
    """The controller's verdict that waiting will not help (Ready=False, a reason the model cannot
    start from): 503 with the status's reason and message, Retry-After where a retry may work."""
    for cond in (isvc.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "False":
            reason = cond.get("reason") or ""
            retry = not_starting(reason)
            if retry is not None:
                return Failure(503, reason, cond.get("message") or reason, retry=retry)
    return None


def desired_replicas(load: int, target_concurrency: int, minimum: int, maximum: int) -> int:
    """Replicas for `load` in-flight requests at `target_concurrency` each, within bounds."""
    return max(minimum, min(maximum, math.ceil(load / max(1, target_concurrency))))


class Cluster:
    """The activator's API calls (blocking; run them in a thread)."""

    def __init__(
        self, kube: Kube, platform_namespace: str, identity: str, namespaces: Sequence[str] = ()
    ) -> None:
        self.kube = kube
        self.platform_namespace = platform_namespace
        self.identity = identity
        #: the watched namespaces (the chart's watchNamespaces: Roles there only); empty: all
        self.namespaces: list[str | None] = list(namespaces) or [None]

    # reads

    def inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get(ISVC, name, namespace)

    def inference_services(self) -> list[dict[str, Any]]:
        return [item for ns in self.namespaces for item in self.kube.list(ISVC, ns)]

    def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One Secret named by a service's spec.auth.tokenSecret (get only: no list, no watch)."""
        return self.kube.get(SECRET, name, namespace)

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get(DEPLOYMENT, name, namespace)

    def deployments(self) -> list[dict[str, Any]]:
        selector = f"{podparts.LABEL_KIND}=inferenceservice"
        return [
            item for ns in self.namespaces for item in self.kube.list(DEPLOYMENT, ns, label_selector=selector)
        ]

    def ready_count(self, namespace: str, name: str) -> int:
        slices = self.kube.list(ENDPOINTSLICE, namespace, label_selector=f"{SERVICE_NAME_LABEL}={name}")
        return ready_endpoints(slices)

    def readiness(self, namespace: str, name: str) -> tuple[int, Failure | None, bool]:
        """(ready endpoints, failure reported in status, whether the service exists)."""
        ready = self.ready_count(namespace, name)
        if ready:
            return ready, None, True
        isvc = self.inference_service(namespace, name)
        if isvc is None:
            return 0, None, False
        return 0, failure_of(isvc), True

    # scaling

    def scale_at_least(self, namespace: str, name: str, replicas: int) -> bool:
        """Raise the Deployment to at least `replicas`; True if this call did it (0 -> n counts
        as one cold start). A 409 means another activator moved first: read again, decide again."""
        for _ in range(5):
            deployment = self.deployment(namespace, name)
            if deployment is None:
                return False
            current = (deployment.get("spec") or {}).get("replicas", 1)
            if current >= replicas:
                return False
            try:
                self.set_replicas(deployment, replicas)
            except ApiError as exc:
                if exc.conflict:
                    continue
                raise
            return True
        return False

    def set_replicas(self, deployment: dict[str, Any], replicas: int) -> None:
        meta = deployment["metadata"]
        self.kube.patch(
            DEPLOYMENT,
            meta["name"],
            meta["namespace"],
            {"metadata": {"resourceVersion": meta["resourceVersion"]}, "spec": {"replicas": replicas}},
            sub="scale",
        )

    # status fields the activator owns: lastRequestTime, coldStarts, warmedVersion

    def record(
        self,
        namespace: str,
        name: str,
        last_request: dt.datetime | None = None,
        cold_start: bool = False,
        warmed_version: str | None = None,
    ) -> None:
        """Move lastRequestTime forward (never back), count a cold start, note a warm-up.

        Read, change, write with the read resourceVersion; on a 409 do it again (the operator
        writes the same status often while a service starts, so a few rounds are normal).
        """
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, 0.01 * attempt))  # noqa: S311  # jitter, not crypto
            isvc = self.inference_service(namespace, name)
            if isvc is None:
                return
            status = isvc.get("status") or {}
            patch: dict[str, Any] = {}
            if last_request is not None:
                stored = parse_time(status.get("lastRequestTime"))
                if stored is None or stored < last_request:
                    patch["lastRequestTime"] = timestamp(last_request)
            if cold_start:
                patch["coldStarts"] = int(status.get("coldStarts") or 0) + 1
            if warmed_version is not None and status.get("warmedVersion") != warmed_version:
                patch["warmedVersion"] = warmed_version
            if not patch:
                return
            body = {"metadata": {"resourceVersion": isvc["metadata"]["resourceVersion"]}, "status": patch}
            try:
                self.kube.patch(ISVC, name, namespace, body, sub="status")
            except ApiError as exc:
                if exc.conflict:
                    continue
                if exc.not_found:
                    return
                raise
            return
        log.warning("gave up writing %s to %s/%s: %d conflicts", sorted(patch), namespace, name, ATTEMPTS)

    # shared load: one Lease per activator replica, written only by that replica

    def publish_load(self, load: dict[str, int], duration: int) -> None:
        name = f"deep-activator-{self.identity}"[:253]
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": self.platform_namespace,
                "labels": {ACTIVATOR_LABEL: "load"},
                "annotations": {LOAD_ANNOTATION: json.dumps(load, sort_keys=True)},
            },
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": duration,
                "renewTime": micro_timestamp(utcnow()),
            },
        }
        self.kube.apply(body)

    def total_load(self) -> dict[str, int]:
        """In-flight and held requests per service, summed over live activators."""
        now = utcnow()
        total: dict[str, int] = {}
        for lease in self.kube.list(LEASE, self.platform_namespace, label_selector=f"{ACTIVATOR_LABEL}=load"):
            spec = lease.get("spec") or {}
            renewed = parse_time(spec.get("renewTime"))
            if renewed is None or (now - renewed).total_seconds() > float(
                spec.get("leaseDurationSeconds") or 10
            ):
                continue  # a replica that went away without cleaning up
            try:
                load = json.loads((lease["metadata"].get("annotations") or {}).get(LOAD_ANNOTATION) or "{}")
            except ValueError:
                continue
            for key, value in load.items():
                total[key] = total.get(key, 0) + int(value)
        return total

    # the one scaler: a leader Lease, taken and renewed with resourceVersion preconditions

    def lead(self, duration: int) -> bool:
        """True while this replica holds the scaler Lease (acquire it when free or expired)."""
        now = utcnow()
        lease = self.kube.get(LEASE, LEADER_LEASE, self.platform_namespace)
        spec_update = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": duration,
            "renewTime": micro_timestamp(now),
        }
        if lease is None:
            try:
                self.kube.create(
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": LEADER_LEASE, "namespace": self.platform_namespace},
                        "spec": {**spec_update, "acquireTime": micro_timestamp(now), "leaseTransitions": 0},
                    }
                )
            except ApiError as exc:
                if exc.conflict:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = parse_time(spec.get("renewTime"))
        expired = renewed is None or (now - renewed).total_seconds() > float(
            spec.get("leaseDurationSeconds") or duration
        )
        if holder != self.identity and not expired:
            return False
        if holder != self.identity:
            spec_update["acquireTime"] = micro_timestamp(now)
            spec_update["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        try:
            self.kube.patch(
                LEASE,
                LEADER_LEASE,
                self.platform_namespace,
                {"metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]}, "spec": spec_update},
            )
        except ApiError as exc:
            if exc.conflict:
                return False
            raise
        return True


def deployment_version(deployment: dict[str, Any]) -> str | None:
    template = (deployment.get("spec") or {}).get("template") or {}
    return ((template.get("metadata") or {}).get("annotations") or {}).get(VERSION_ANNOTATION)


__all__ = ["Cluster", "Failure", "service_name"]
