"""DevEnvironment controller: the IDE's children and its status, reconciled from a work queue.

Triggered as TrainingJobs are (informer.py): watches on DevEnvironments and on their
Deployments and pods queue the DevEnvironment concerned by key; a worker reads it fresh and
reconciles (level-based, so the newest event of a key replaces one still waiting). Replicas are
not decided here: the activator wakes the environment (0 -> 1) and puts it to sleep (1 -> 0)
after idleTimeout (docs/devenv.md). The IDE's token is generated once into a Secret and kept.

Path: an InferenceService and a DevEnvironment of one name in one namespace would share the
activator's `/<namespace>/<name>/`. InferenceServices keep it: such a DevEnvironment gets
Ready=False reason NameTaken (phase Failed) and no children, whichever came first.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import kopf

from .. import kube as k
from ..api import DevEnvironment, InferenceService, Module
from ..api.devenvironment import DevEnvironmentStatus
from ..builders import pod as podparts
from ..builders.devenvironment import build_children, build_token_secret, dev_image, token_secret_name
from ..conditions import set_condition
from ..config import site_settings
from ..metrics import DEVENVIRONMENTS, instrumented
from ..readiness import FAILURE_REASONS, STORAGE_FAILURE_REASONS
from ..storage_check import set_storage_condition, storage_problem
from . import resync, retry, runtime, storage_volumes
from .inferenceservice import pod_failure
from .informer import WatchedQueue
from .reconciler import announce_transitions, invalid_spec_status, module_of, parse, write_status
from .settings import RESYNC_SECONDS

log = logging.getLogger(__name__)
KIND = k.kind_of(DevEnvironment)
ISVC_KIND = k.kind_of(InferenceService)
CHILD_LABELS = {podparts.LABEL_KIND: "devenvironment"}
CHILD_SELECTOR = ",".join(f"{key}={value}" for key, value in CHILD_LABELS.items())
Key = tuple[str, str]
WARNING_REASONS = frozenset(
    {"ModuleNotFound", "InvalidSpec", "NameTaken", *FAILURE_REASONS, *STORAGE_FAILURE_REASONS}
)


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def on_devenvironment(type_: str, obj: dict[str, Any]) -> None:
    if type_ == "DELETED":  # children go by garbage collection
        DEVENVIRONMENTS.forget(*_key(obj))
        return
    DEVENVIRONMENTS.observe(obj)  # our own status writes too: they carry the phase
    watches.add(_key(obj), None)


def on_child(_type: str, obj: dict[str, Any]) -> None:
    meta = obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(podparts.LABEL_NAME)
    if name:
        watches.add((str(meta.get("namespace") or ""), name), None)


def process(key: Key, _value: None) -> None:
    rt = runtime.current()
    body = rt.kube.get(KIND, key[1], key[0] or None)
    if body is None:
        retry.backoff.reset(("devenvironment", *key))
        storage_volumes.storage_owner_gone(rt.kube, "devenvironment", key[0], key[1])
        return
    if not body["metadata"].get("deletionTimestamp"):
        reconcile_devenvironment(rt, body)


watches: WatchedQueue[Key, None] = WatchedQueue("devenvironment", process, (
    (KIND, on_devenvironment, None),
    (k.DEPLOYMENT, on_child, CHILD_SELECTOR),
    (k.POD, on_child, CHILD_SELECTOR),
))


@kopf.on.startup(id="devenvironment-watches-start")
def start_watches(**_: Any) -> None:
    rt = runtime.current()
    watches.start(rt.kube, rt.config.namespaces, min(4, rt.config.workers))


@kopf.on.cleanup(id="devenvironment-watches-stop")
def stop_watches(**_: Any) -> None:
    watches.stop()


@resync.every(RESYNC_SECONDS, "devenvironment")
def resync_all(rt: runtime.Runtime) -> None:
    """Every DevEnvironment once more (an InferenceService that took its name, a lost event)."""
    _tokens_made.clear()  # a token Secret deleted by hand comes back (one 409 per Secret otherwise)
    watches.add_all(rt.kube, rt.config.namespaces, lambda body: (_key(body), None))


# --- the reconciliation ------------------------------------------------------------------------


#: (namespace, name, uid) of DevEnvironments whose token Secret exists
_tokens_made: set[tuple[str, str, str]] = set()


def ensure_token_secret(rt: runtime.Runtime, dev: DevEnvironment) -> None:
    """Create the IDE's token once; never read nor rewrite it (the operator may only create
    Secrets: least privilege; open sessions keep their sign-in). 409 AlreadyExists: made before."""
    made = (dev.namespace or "", dev.name, dev.metadata.uid or "")
    if made in _tokens_made:
        return
    try:
        rt.kube.create(build_token_secret(dev, secrets.token_urlsafe(32)))
    except k.ApiError as exc:
        if not exc.conflict:
            raise
    _tokens_made.add(made)


def apply_children(rt: runtime.Runtime, dev: DevEnvironment, module: Module | None) -> tuple[str, str] | None:
    """The Secret, storage volumes, home claim, Deployment and Service; (reason, message) when
    the API server refuses one (a quota, a webhook), with a retry scheduled."""
    namespace = dev.namespace or "default"
    key = ("devenvironment", namespace, dev.name)
    child: dict[str, Any] = {}
    try:
        ensure_token_secret(rt, dev)
        storage_volumes.apply_storage_volumes(rt.kube, dev)
        for child in build_children(dev, module):
            rt.kube.apply(child)
    except k.ApiError as exc:
        if not retry.refused(exc):
            raise
        what = f"{child.get('kind', 'a child')} {dev.name}"
        retry.backoff.schedule(key, lambda: watches.add((namespace, dev.name), None),
                               soon=retry.transient(exc))
        return f"{child.get('kind', 'Secret')}Rejected", retry.refusal_message(what, exc)
    retry.backoff.reset(key)
    return None


def observe(status: DevEnvironmentStatus, deployment: dict[str, Any] | None, pods: list[dict[str, Any]],
            generation: int | None) -> None:
    """Phase, replicas and Ready from what the cluster runs (pure)."""
    spec = (deployment or {}).get("spec") or {}
    replicas = int(spec.get("replicas", 1)) if deployment else 0
    ready = int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)
    status.replicas = replicas
    failure = pod_failure(pods)
    if failure is not None and ready == 0:
        status.phase, status.reason = "Failed", failure[0]
        set_condition(status, "Ready", False, failure[0], failure[1], generation)
    elif ready > 0:
        status.phase, status.reason = "Ready", "Running"
        set_condition(status, "Ready", True, "Running", "the IDE answers", generation)
    elif replicas == 0 and deployment is not None:
        status.phase, status.reason = "Sleeping", "Idle"
        set_condition(status, "Ready", True, "Sleeping",
                      "asleep after idleTimeout; the next request wakes it (the home volume is kept)",
                      generation)
    else:
        status.phase, status.reason = "Starting", "Starting"
        set_condition(status, "Ready", False, "Starting", "waiting for the IDE to answer", generation)


def failed(status: DevEnvironmentStatus, reason: str, message: str, generation: int | None) -> None:
    status.phase, status.reason = "Failed", reason
    set_condition(status, "Ready", False, reason, message, generation)


@instrumented("devenvironment")
def reconcile_devenvironment(rt: runtime.Runtime, body: dict[str, Any]) -> None:
    before = DevEnvironmentStatus.model_validate(body.get("status") or {})
    dev = parse(DevEnvironment, body)
    if isinstance(dev, list):
        status = invalid_spec_status(DevEnvironmentStatus, body, dev, "Ready")
        status.phase, status.reason = "Failed", "InvalidSpec"
    else:
        status = dev.status.model_copy(deep=True)
        generation = dev.metadata.generation
        module, missing = module_of(rt.kube, dev.spec)
        status.url = f"{rt.config.activator_url.rstrip('/')}/{dev.namespace}/{dev.name}/"
        if rt.kube.get(ISVC_KIND, dev.name, dev.namespace) is not None:
            failed(status, "NameTaken",
                   f"InferenceService {dev.name!r} already serves /{dev.namespace}/{dev.name}/; "
                   "give the DevEnvironment another name", generation)
        elif missing is not None:
            failed(status, "ModuleNotFound", missing, generation)
        elif (storage_issue := storage_problem(dev)) is not None:
            failed(status, storage_issue[0], storage_issue[1], generation)
        elif (refusal := apply_children(rt, dev, module)) is not None:
            failed(status, refusal[0], refusal[1], generation)
        else:
            deployment = rt.kube.get(k.DEPLOYMENT, dev.name, dev.namespace)
            selector = f"{CHILD_SELECTOR},{podparts.LABEL_NAME}={dev.name[:63]}"
            pods = rt.kube.list(k.POD, dev.namespace, label_selector=selector) if deployment else []
            status.image = dev_image(dev, module, site_settings())
            status.token_secret = token_secret_name(dev)
            observe(status, deployment, pods, generation)
            set_storage_condition(status, dev.spec.storage, pods, generation)
        status.observed_generation = generation
    written = write_status(rt.kube, KIND, body, status)
    if written:
        announce_transitions(rt.kube, body, before, status, warning_reasons=lambda r: r in WARNING_REASONS
                             or r.endswith("Rejected"))
