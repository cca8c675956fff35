"""InferenceService controller: the serving Deployment and Service, and their status.

Replicas are not decided here: the Deployment is applied without spec.replicas, which the
activator's scaler owns (docs/serving.md). This controller reports what the Deployment and its
pods do: ready replicas, conditions Ready and ScaledToZero, and why a model does not start.
"""

from __future__ import annotations

import threading
from typing import Any

import kopf

from ..api import GROUP, VERSION, InferenceService, Module
from ..api.inferenceservice import InferenceServiceStatus
from ..builders import pod as podparts
from ..builders.inferenceservice import VERSION_ANNOTATION, build_all, serving_image, serving_resources
from ..conditions import set_condition
from ..config import site_settings
from ..gpu.inventory import read_inventories_or_none
from ..kube import DEPLOYMENT, POD, ApiError, kind_of
from ..metrics import instrumented
from ..readiness import (
    FAILURE_REASONS,
    SPEC_FAILURE_REASONS,
    STORAGE_FAILURE_REASONS,
)
from ..scheduling import gpu_problem, read_nodes
from ..storage_check import set_storage_condition, storage_problem
from . import resync, retry, runtime, storage_volumes
from .reconciler import announce_transitions, invalid_spec_status, module_of, parse, plain, write_status
from .settings import RESYNC_SECONDS

KIND = kind_of(InferenceService)
CHILD_LABELS = {podparts.LABEL_KIND: "inferenceservice"}

@kopf.on.resume(GROUP, VERSION, "inferenceservices")
@kopf.on.create(GROUP, VERSION, "inferenceservices")
@kopf.on.update(GROUP, VERSION, "inferenceservices")
def inferenceservice_changed(body: kopf.Body, **_: Any) -> None:
    reconcile_inferenceservice(runtime.current(), plain(body))


@resync.every(RESYNC_SECONDS, "inferenceservice")
def resync_all(rt: runtime.Runtime) -> None:
    """Reconcile every InferenceService once (nothing is written where nothing changed)."""
    namespaces: list[str | None] = list(rt.config.namespaces) or [None]
    for namespace in namespaces:
        for body in rt.kube.list(KIND, namespace):
            reconcile_inferenceservice(rt, body)
    if site_settings().rclone_csi_driver:
        storage_volumes.sweep_now_and_then(rt.kube)


@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
@kopf.on.event("", "v1", "pods", labels=CHILD_LABELS)
def serving_child_changed(body: kopf.Body, **_: Any) -> None:
    """A Deployment or pod of a service changed: refresh that service's status (no apply)."""
    meta = body.get("metadata") or {}
    name = (meta.get("labels") or {}).get(podparts.LABEL_NAME)
    if not name:
        return
    rt = runtime.current()
    owner = rt.kube.get(KIND, name, meta.get("namespace"))
    if owner is not None:
        reconcile_inferenceservice(rt, owner, apply_children=False)


def service_url(rt: runtime.Runtime, isvc: InferenceService) -> str:
    return f"{rt.config.activator_url.rstrip('/')}/{isvc.namespace}/{isvc.name}/"


def pod_failure(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) of the first pod that will not become ready by waiting, else None."""
    for item in pods:
        if (item.get("metadata") or {}).get("deletionTimestamp"):
            continue
        status = item.get("status") or {}
        for cond in status.get("conditions") or []:
            if (cond.get("type"), cond.get("status"), cond.get("reason")) == (
                "PodScheduled",
                "False",
                "Unschedulable",
            ):
                return "Unschedulable", cond.get("message") or "no node fits the pod"
        for cs in status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in FAILURE_REASONS:
                last = (cs.get("lastState") or {}).get("terminated") or {}
                detail = last.get("message") or waiting.get("message") or ""
                if last.get("reason") == "OOMKilled":
                    reason = "OOMKilled"
                exit_code = last.get("exitCode")
                message = f"container {cs.get('name')} {reason}"
                if exit_code is not None:
                    message += f" (exit code {exit_code})"
                if detail:
                    message += f": {detail.strip()[-500:]}"
                return reason, message
    return None


def serving_conditions(
    status: InferenceServiceStatus,
    isvc: InferenceService,
    deployment: dict[str, Any] | None,
    pods: list[dict[str, Any]],
) -> None:
    """Replicas, version and the Ready / ScaledToZero conditions, from what the cluster runs."""
    generation = isvc.metadata.generation
    spec = (deployment or {}).get("spec") or {}
    dstatus = (deployment or {}).get("status") or {}
    replicas = spec.get("replicas", 1) if deployment else 0  # the API server defaults it to 1
    ready = int(dstatus.get("readyReplicas") or 0)
    template_meta = (spec.get("template") or {}).get("metadata") or {}
    status.version = (template_meta.get("annotations") or {}).get(VERSION_ANNOTATION)
    status.replicas = replicas
    status.ready_replicas = ready
    at_zero = replicas == 0 and ready == 0
    set_condition(
        status,
        "ScaledToZero",
        at_zero,
        "Idle" if at_zero else "Serving",
        "no replica runs until a request arrives" if at_zero else f"{ready}/{replicas} replicas ready",
        generation,
    )
    failure = pod_failure(pods)
    prewarm_pending = isvc.spec.scaling.prewarm and status.warmed_version != status.version
    if failure is not None and ready == 0:
        set_condition(status, "Ready", False, failure[0], failure[1], generation)
    elif prewarm_pending:
        set_condition(
            status,
            "Ready",
            False,
            "Prewarming",
            f"waiting for the activator's warm-up request to version {status.version}",
            generation,
        )
    elif ready > 0:
        set_condition(status, "Ready", True, "Serving", f"{ready}/{replicas} replicas ready", generation)
    elif at_zero:
        set_condition(status, "Ready", True, "ScaledToZero", "the first request starts a replica", generation)
    else:
        set_condition(
            status, "Ready", False, "Starting", f"waiting for a ready replica (0/{replicas})", generation
        )


def storage_blocks_ready(status: InferenceServiceStatus, generation: int | None) -> None:
    """A replica stuck on its storage (a missing Secret, a refused login) never gets ready: say so
    in Ready too, so the activator answers with that reason instead of holding requests."""
    storage = next((c for c in status.conditions if c.type == "StorageReady"), None)
    if status.ready_replicas or storage is None or storage.status != "False":
        return
    if storage.reason in STORAGE_FAILURE_REASONS:
        set_condition(status, "Ready", False, storage.reason, storage.message or storage.reason, generation)


def serving_gpu_problem(rt: runtime.Runtime, isvc: InferenceService, module: Module | None) -> str | None:
    """Why no node can run the service's GPU request (listing what exists), as for TrainingJobs;
    nodes and inventories are read only for services that ask for a GPU."""
    resources = serving_resources(isvc, module)
    if resources is None or resources.gpu is None or not resources.gpu.count:
        return None
    inventories = read_inventories_or_none(rt.kube, rt.config.platform_namespace)
    return gpu_problem(resources.gpu, read_nodes(rt.kube), inventories)


def apply_serving_children(
    rt: runtime.Runtime, isvc: InferenceService, module: Module | None
) -> tuple[str, str] | None:
    """Apply the storage volumes, Deployment and Service; (reason, message) if the API server
    refuses one (a quota, a webhook), with a retry scheduled, else None."""
    namespace = isvc.namespace or "default"
    key = ("inferenceservice", namespace, isvc.name)
    child: dict[str, Any] = {}
    try:
        storage_volumes.apply_storage_volumes(rt.kube, isvc)
        for child in build_all(isvc, module):
            rt.kube.apply(child)
    except ApiError as exc:
        if not retry.refused(exc):
            raise
        what = f"{child.get('kind', 'a storage volume')} {isvc.name}"
        retry.backoff.schedule(
            key, lambda: reconcile_by_name(rt, namespace, isvc.name), soon=retry.transient(exc)
        )
        return f"{child.get('kind', 'Storage')}Rejected", retry.refusal_message(what, exc)
    retry.backoff.reset(key)
    return None


def reconcile_by_name(rt: runtime.Runtime, namespace: str, name: str) -> None:
    body = rt.kube.get(KIND, name, namespace)
    if body is None:
        retry.backoff.reset(("inferenceservice", namespace, name))  # gone: nothing to retry
    elif not body["metadata"].get("deletionTimestamp"):
        reconcile_inferenceservice(rt, body)


class StaleStatus(Exception):
    """The status a reconciliation started from is no longer the stored one."""


_guard = threading.Lock()
_locks: dict[tuple[str, str], threading.RLock] = {}
#: reconciliations of one service that start over from a fresh read after a stale status
CONFLICT_ATTEMPTS = 5


def _lock(key: tuple[str, str]) -> threading.RLock:
    with _guard:
        return _locks.setdefault(key, threading.RLock())


@instrumented("inferenceservice")
def reconcile_inferenceservice(
    rt: runtime.Runtime, body: dict[str, Any], apply_children: bool = True
) -> None:
    """Apply the Deployment and Service (unless only status is refreshed) and write status.

    Also called by the Module controller to roll a new Module image out to its services.

    One reconciliation per service at a time in this process; and the status is written with
    the resourceVersion it was computed from as a precondition, so that kopf's copy of the
    body (older than our last status write), or a second operator process, never makes a
    transition twice: on a conflict the service is read again and the reconciliation redone,
    so its Events compare with the stored status, not with a stale one.
    """
    meta = body["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or ""
    with _lock((namespace, name)):
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                _reconcile_once(rt, body, apply_children)
                return
            except StaleStatus:
                if attempt == CONFLICT_ATTEMPTS - 1:
                    raise
            fresh = rt.kube.get(KIND, name, namespace or None)
            if fresh is None or fresh["metadata"].get("deletionTimestamp"):
                return
            body = fresh


def _reconcile_once(rt: runtime.Runtime, body: dict[str, Any], apply_children: bool) -> None:
    before = InferenceServiceStatus.model_validate(body.get("status") or {})
    isvc = parse(InferenceService, body)
    if isinstance(isvc, list):
        status = invalid_spec_status(InferenceServiceStatus, body, isvc, "Ready")
    else:
        status = isvc.status.model_copy(deep=True)
        generation = isvc.metadata.generation
        module, missing = module_of(rt.kube, isvc.spec)
        if missing is not None:
            set_condition(status, "Ready", False, "ModuleNotFound", missing, generation)
        elif module is not None and not module.spec.capabilities.servable:
            set_condition(
                status,
                "Ready",
                False,
                "ModuleNotServable",
                f"Module {module.name!r} says capabilities.servable: false; serve another module "
                "or ask its maintainers to make it servable",
                generation,
            )
        elif (storage_issue := storage_problem(isvc)) is not None:
            set_condition(status, "Ready", False, storage_issue[0], storage_issue[1], generation)
        elif (gpu_issue := serving_gpu_problem(rt, isvc, module)) is not None:
            # no Deployment for a GPU no node has: the activator answers 503 with this message
            set_condition(status, "Ready", False, "Unschedulable", gpu_issue, generation)
        elif apply_children and (refusal := apply_serving_children(rt, isvc, module)) is not None:
            set_condition(status, "Ready", False, refusal[0], refusal[1], generation)
        else:
            namespace = isvc.namespace
            deployment = rt.kube.get(DEPLOYMENT, isvc.name, namespace)
            selector = ",".join(
                f"{key}={value}"
                for key, value in {
                    podparts.LABEL_KIND: "inferenceservice",
                    podparts.LABEL_NAME: isvc.name[:63],
                }.items()
            )
            pods = rt.kube.list(POD, namespace, label_selector=selector) if deployment else []
            status.url = service_url(rt, isvc)
            status.image = serving_image(isvc, module)
            serving_conditions(status, isvc, deployment, pods)
            set_storage_condition(status, isvc.spec.storage, pods, generation)
            storage_blocks_ready(status, generation)
        status.observed_generation = generation
    try:
        written = write_status(rt.kube, KIND, body, status, precondition=True)
    except ApiError as exc:
        if not exc.conflict:
            raise
        raise StaleStatus() from exc
    if written:
        announce_transitions(
            rt.kube,
            body,
            before,
            status,
            warning_reasons=lambda reason: (
                reason in {*SPEC_FAILURE_REASONS, *FAILURE_REASONS, *STORAGE_FAILURE_REASONS}
                or reason.endswith("Rejected")
            ),
        )
