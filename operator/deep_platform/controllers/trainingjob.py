"""TrainingJob controller: run the training Job and mirror its state.

Every event of a TrainingJob, of its Job and of the Job's pods leads to one reconciliation that
reads the world, computes the status in memory and writes only what changed: the Job only when
its hash annotation differs from the desired one, the status only when it differs, one Event
per phase transition. The watches on Jobs, Pods and Modules wake the TrainingJob concerned, so
no state is kept between calls beyond caches that only save API calls.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import kopf
from pydantic import ValidationError

from .. import events
from .. import kube as k
from ..api import GROUP, VERSION, TrainingJob
from ..api.trainingjob import TrainingJobStatus
from ..builders.pod import GPU_PRODUCT_LABEL, LABEL_KIND
from ..builders.trainingjob import (
    FINISHED_PHASES,
    SPEC_HASH_ANNOTATION,
    build_job,
    gpu_count,
    mutable_part,
    same_request,
    training_resources,
)
from ..builders.trainingjob_observe import (
    Observation,
    finished,
    format_duration,
    observe,
    resource_problem,
    true_conditions,
)
from ..conditions import set_condition
from ..errors import tail
from ..gpu.inventory import read_inventories_or_none, running_gpu
from ..metrics import TRAININGJOBS, instrumented
from ..progress.tracker import TRACKER
from ..scheduling import gpu_problem, read_nodes
from ..storage_check import set_storage_condition, storage_problem
from . import resync, retry, runtime, storage_volumes
from .informer import WatchedQueue
from .reconciler import module_of, parse, write_status
from .settings import RESYNC_SECONDS
from .trainingjob_progress import follow_progress, progress_echo, progress_event, stall_check

log = logging.getLogger(__name__)
KIND = k.kind_of(TrainingJob)
CHILD_LABELS = {LABEL_KIND: "trainingjob"}
Key = tuple[str, str]


class _Memory:
    def __init__(self) -> None:
        self.guard = threading.Lock()
        # one reconciliation per TrainingJob at a time; re-entrant, as wake() reads under it
        self.locks: dict[Key, threading.RLock] = {}
        # (uid, resourceVersion) of our last status write, to skip its echo
        self.own_version: dict[Key, tuple[str, int]] = {}
        self.waiting: dict[str, set[Key]] = {}  # Module name -> TrainingJobs waiting for it
        self.applied_job: dict[Key, str] = {}  # resourceVersion of the Job as we last applied it
        # uid of every TrainingJob seen on the watch: events of Jobs and pods owned by nothing
        # we know cost no read (the TrainingJob's own event reconciles when it comes)
        self.known: dict[Key, str] = {}
        # the last state of a finished Job that was deleted (ttlSecondsAfterFinished): read when
        # the deletion came before the status said the training ended
        self.deleted_job: dict[Key, dict[str, Any]] = {}

    def lock(self, key: Key) -> threading.RLock:
        with self.guard:
            return self.locks.setdefault(key, threading.RLock())

    def clear(self) -> None:
        """Forget everything: an operator run starts from what the API server says, as a new
        process would (a second run in one process, as in tests, must not meet the first's)."""
        with self.guard:
            for table in (self.locks, self.own_version, self.waiting, self.applied_job, self.known,
                          self.deleted_job):
                table.clear()

    def forget(self, key: Key) -> None:
        retry.backoff.reset(_retry_key(key))
        with self.guard:
            self.locks.pop(key, None)
            self.own_version.pop(key, None)
            self.applied_job.pop(key, None)
            self.known.pop(key, None)
            self.deleted_job.pop(key, None)
            for keys in self.waiting.values():
                keys.discard(key)

    def wait_for_module(self, module: str, key: Key) -> None:
        with self.guard:
            self.waiting.setdefault(module, set()).add(key)

    def waiters(self, module: str) -> set[Key]:
        with self.guard:
            return self.waiting.pop(module, set())


memory = _Memory()


def _version(obj: dict[str, Any]) -> int | None:
    value = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(value) if value.isdigit() else None


def _key(body: dict[str, Any]) -> Key:
    return body["metadata"].get("namespace") or "", body["metadata"]["name"]


def _retry_key(key: Key) -> tuple[str, str, str]:
    """The key in retry.backoff, which InferenceServices share."""
    return ("trainingjob", *key)


# --- events ------------------------------------------------------------------------------------
#
# The watches (informer.py) run a cheap filter in their own thread and queue the TrainingJob
# concerned; the queue's workers reconcile. What waits in the queue for a key:
#   ("event", body)  a TrainingJob event: reconcile that body (the newest the watch has seen)
#   ("job", version) an event of its Job: reconcile as it is now, unless it is our own write's echo
#   ("fresh", None)  a pod, a Module, the resync: reconcile as it is now
#   ("gone", None)   deleted: forget it (the Job and pods go by garbage collection)

Work = tuple[str, Any]
RANK = {"job": 0, "event": 1, "fresh": 2}
CHILD_SELECTOR = ",".join(f"{label}={value}" for label, value in CHILD_LABELS.items())


def _keep(waiting: Work, new: Work) -> bool:
    """Whether the work waiting for a key covers the new one (else the new one replaces it)."""
    if new[0] == "gone":
        return False
    if waiting[0] == "gone":
        return new[0] != "event"  # only an event can be a TrainingJob made again with the name
    return RANK[waiting[0]] > RANK[new[0]]


def _is_echo(obj: dict[str, Any]) -> bool:
    """Our own status write (or older): a newer event comes if anything changed.

    Not when the spec moved on from the generation the status observed: a spec change that
    lands between our read and our status write is older than that write, and the write's own
    echo carries it, so skipping both would lose it (seen on a real server, where the scheduler's
    pod update and a user's edit race)."""
    own, version = memory.own_version.get(_key(obj)), _version(obj)
    mine = own is not None and own[0] == obj["metadata"].get("uid")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if observed != obj["metadata"].get("generation"):
        return False
    if mine and own is not None and version is not None and version <= own[1]:
        return True
    return progress_echo(obj)


def on_trainingjob(type_: str, obj: dict[str, Any]) -> None:
    key = _key(obj)
    if type_ == "DELETED":
        TRAININGJOBS.forget(*key)
        TRACKER.forget(key)  # its Prometheus series and history ConfigMap go too
        watches.add(key, ("gone", None))
        return
    TRAININGJOBS.observe(obj)  # echoes too: they carry the phase we just wrote
    if not _is_echo(obj):
        memory.known[key] = str(obj["metadata"].get("uid"))  # before its Job's first event
        watches.add(key, ("event", obj))


def on_job(type_: str, obj: dict[str, Any]) -> None:
    meta = obj.get("metadata") or {}
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") != "TrainingJob" or not str(owner.get("apiVersion", "")).startswith(GROUP):
            continue
        key = (meta.get("namespace") or "", owner.get("name") or "")
        if memory.known.get(key) != owner.get("uid"):
            continue  # not a TrainingJob we know (yet): its own event reconciles it
        version = None if type_ == "DELETED" else meta.get("resourceVersion")
        if type_ == "DELETED" and finished(obj):
            memory.deleted_job[key] = obj
        watches.add(key, ("job", version))


def on_pod(_type: str, obj: dict[str, Any]) -> None:
    meta = obj.get("metadata") or {}
    for owner in meta.get("ownerReferences") or []:
        key = (meta.get("namespace") or "", owner.get("name") or "")
        if owner.get("kind") == "Job" and key in memory.known:  # the Job has the TrainingJob's name
            watches.add(key, ("fresh", None))


def process(key: Key, work: Work) -> None:
    """A queue worker's turn for one TrainingJob."""
    what, payload = work
    rt = runtime.current()
    if what == "gone":
        memory.forget(key)
        stall_check.reset(key)
        storage_volumes.storage_owner_gone(rt.kube, "trainingjob", key[0], key[1])
        return
    with memory.lock(key):
        if what == "job" and payload is not None and memory.applied_job.get(key) == payload:
            return  # the echo of our own write: its status is already written
        if what == "event":
            if not _is_echo(payload):
                reconcile_trainingjob(rt, payload)
            return
    wake(rt, key)


watches: WatchedQueue[Key, Work] = WatchedQueue("trainingjob", process, (
    (KIND, on_trainingjob, None),
    (k.JOB, on_job, CHILD_SELECTOR),
    (k.POD, on_pod, CHILD_SELECTOR),
), keep=_keep)


@kopf.on.startup(id="trainingjob-watches-start")
def start_watches(**_: Any) -> None:
    memory.clear()
    rt = runtime.current()
    watches.start(rt.kube, rt.config.namespaces, rt.config.workers)


@kopf.on.cleanup(id="trainingjob-watches-stop")
def stop_watches(**_: Any) -> None:
    watches.stop()
    pod_check.cancel_all()
    stall_check.cancel_all()


@resync.every(RESYNC_SECONDS, "trainingjob")
def resync_all(rt: runtime.Runtime) -> None:
    """Reconcile every TrainingJob once (nothing is written where nothing changed)."""
    watches.add_all(rt.kube, rt.config.namespaces, lambda body: (_key(body), ("fresh", None)))
    storage_volumes.sweep_now_and_then(rt.kube)


@kopf.on.event(GROUP, VERSION, "modules")
def module_event(type: str | None, body: kopf.Body, **_: Any) -> None:
    """A Module that appears or changes releases the TrainingJobs waiting for it at once."""
    if type == "DELETED":
        return
    for key in memory.waiters(body["metadata"]["name"]):
        watches.add(key, ("fresh", None))


def wake(rt: runtime.Runtime, key: Key) -> None:
    """Reconcile a TrainingJob as it is now (read under its lock, so never a stale copy)."""
    with memory.lock(key):
        body = rt.kube.get(KIND, key[1], key[0] or None)
        if body is not None and not body["metadata"].get("deletionTimestamp"):
            reconcile_trainingjob(rt, body)


# --- the reconciliation ------------------------------------------------------------------------


@instrumented("trainingjob")
def reconcile_trainingjob(rt: runtime.Runtime, body: dict[str, Any]) -> None:
    key = _key(body)
    with memory.lock(key):
        try:
            before = TrainingJobStatus.model_validate(body.get("status") or {})
        except ValidationError:
            before = TrainingJobStatus()
        status = desired_status(rt, body, before)
        written = write_status(rt.kube, KIND, body, status)
        if written is None:
            return
        version = _version(written)
        if version is not None:
            memory.own_version[key] = (str(written["metadata"].get("uid")), version)
        announce(rt.kube, written, before, status)
        if status.phase in FINISHED_PHASES and before.phase not in FINISHED_PHASES:
            # the outcome is stored now: reconcile once more, which gives the Job its
            # ttlSecondsAfterFinished (the echo of our own status write wakes nobody)
            watches.add(key, ("fresh", None))


WARNING_PHASES = {"Failed", "Restarting"}
QUIET_PENDING = {"JobCreated", "ContainerCreating", "PodInitializing"}


def announce(api: k.Kube, body: dict[str, Any], before: TrainingJobStatus, after: TrainingJobStatus) -> None:
    """One Event per transition of the phase (or of its reason), and when a running training's
    reports stop (Stalled, NoReport) or come back."""
    progress = progress_event(before, after)
    if progress is not None:
        poster.post(api, body, *progress)
    if (before.phase, before.reason) == (after.phase, after.reason) or after.phase is None:
        return
    reason = after.reason if after.phase in ("Pending", "Failed", "Restarting") else after.phase
    warning = after.phase in WARNING_PHASES or (
        after.phase == "Pending" and after.reason not in QUIET_PENDING
    )
    message = f"{after.phase}: {after.message}" if after.message else after.phase
    poster.post(api, body, reason or after.phase, message, warning)


class _EventPoster:
    """Events leave from one thread, in order, after the status they describe is written:
    a reconciliation (and a burst of them) waits for no Event write. When the queue is
    full the caller posts itself, so no Event is lost."""

    def __init__(self, size: int = 2000) -> None:
        self.queue: queue.Queue[tuple[k.Kube, dict[str, Any], str, str, bool]] = queue.Queue(size)
        self.thread: threading.Thread | None = None
        self.guard = threading.Lock()

    def post(self, api: k.Kube, body: dict[str, Any], reason: str, message: str, warning: bool) -> None:
        with self.guard:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="trainingjob-events", daemon=True)
                self.thread.start()
        try:
            self.queue.put_nowait((api, body, reason, message, warning))
        except queue.Full:
            events.emit(api, body, reason, message, warning=warning)

    def _run(self) -> None:
        while True:
            api, body, reason, message, warning = self.queue.get()
            events.emit(api, body, reason, message, warning=warning)  # never raises
            self.queue.task_done()


poster = _EventPoster()


def _block(status: TrainingJobStatus, reason: str, message: str, generation: int | None) -> TrainingJobStatus:
    status.phase, status.reason, status.message = "Pending", reason, message
    set_condition(status, "Ready", False, reason, message, generation)
    for type_ in ("Running", "Succeeded", "Failed"):
        set_condition(status, type_, False, reason, "", generation)
    return status


def desired_status(rt: runtime.Runtime, body: dict[str, Any], before: TrainingJobStatus) -> TrainingJobStatus:
    status = before.model_copy(deep=True)
    generation = body["metadata"].get("generation")
    status.observed_generation = generation
    tj = parse(TrainingJob, body)
    if isinstance(tj, list):
        return _block(status, "InvalidSpec", "; ".join(tj), generation)
    namespace = tj.namespace or "default"
    # a TrainingJob whose status never named a Job most likely has none: no read, the create
    # below says (409) if one exists after all
    unread = before.job_name is None
    job = None if unread else rt.kube.get(k.JOB, tj.name, namespace)
    if job is not None and not _owned_by(job, tj):
        return _name_taken(status, tj, generation)
    if job is None and not unread:
        ended = memory.deleted_job.get(_key(body))
        if before.phase in ("Succeeded", "Failed") or ended is not None:
            return _job_deleted(rt, tj, status, before, ended, generation)
    problem: tuple[str, str] | None = None
    module, missing = module_of(rt.kube, tj.spec)
    if missing is not None:
        problem = ("ModuleNotFound", missing)
    elif module is not None and not module.spec.capabilities.trainable:
        problem = (
            "ModuleNotTrainable",
            f"Module {module.name} says it cannot be trained (spec.capabilities.trainable is "
            "false); pick another module in spec.module",
        )
    if problem is not None and tj.spec.module:
        memory.wait_for_module(tj.spec.module, _key(body))
    resources = training_resources(tj, module)
    status.gpus = gpu_count(resources) or None
    if problem is None and job is None:
        message = resource_problem(resources, module)
        if message:
            problem = ("ResourcesBelowModuleMinimum", message)
        elif resources is not None and resources.gpu is not None and resources.gpu.count:
            inventories = read_inventories_or_none(rt.kube, rt.config.platform_namespace)
            message = gpu_problem(resources.gpu, read_nodes(rt.kube), inventories)
            problem = ("Unschedulable", message) if message else None
    if problem is None:
        problem = storage_problem(tj)
    if problem is not None and unread:  # blocked: say so only if there is truly no Job
        job, unread = rt.kube.get(k.JOB, tj.name, namespace), False
        if job is not None and not _owned_by(job, tj):
            return _name_taken(status, tj, generation)
    if problem is not None and job is None:
        return _block(status, problem[0], problem[1], generation)
    ready: tuple[bool, str, str] = (True, "JobCreated", f"Job {tj.name} runs the training")
    created = job is None
    if problem is None:
        desired = build_job(tj, module, job)
        wanted = desired["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
        live = ((job or {}).get("metadata") or {}).get("annotations", {}).get(SPEC_HASH_ANNOTATION)
        if job is None or live != wanted:
            try:
                storage_volumes.apply_storage_volumes(rt.kube, tj)  # claims before the pod needs them
            except k.ApiError as exc:
                if not retry.refused(exc):
                    raise
                key = _key(body)
                retry.backoff.schedule(
                    _retry_key(key), lambda: watches.add(key, ("fresh", None)), soon=retry.transient(exc)
                )
                message = retry.refusal_message(f"the storage volumes of {tj.name}", exc)
                if job is None:
                    return _block(status, "StorageRejected", message, generation)
                ready, wanted = (False, "StorageRejected", message), live  # keep the Job as it is
        if job is None:
            try:
                made = rt.kube.create(desired)  # cheaper than apply, and never adopts a stranger's Job
                memory.applied_job[_key(body)] = str(made["metadata"].get("resourceVersion"))
                retry.backoff.reset(_retry_key(_key(body)))
                job = made
                live = wanted
            except k.ApiError as exc:
                if retry.refused(exc):  # a quota, a webhook: say so, and try again later
                    key = _key(body)  # retried through the queue, as any other wake-up
                    retry.backoff.schedule(_retry_key(key), lambda: watches.add(key, ("fresh", None)))
                    message = retry.refusal_message(f"Job {tj.name}", exc)
                    return _block(status, "JobRejected", message, generation)
                if not exc.conflict:
                    raise
                job, created = rt.kube.get(k.JOB, tj.name, namespace), False
                if job is None:
                    raise  # gone again: the next event tries once more
                if not _owned_by(job, tj):
                    return _name_taken(status, tj, generation)
                desired = build_job(tj, module, job)
                wanted = desired["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
                live = job["metadata"].get("annotations", {}).get(SPEC_HASH_ANNOTATION)
        if live != wanted and job is not None and not created and same_request(job, desired):
            # only this release renders the pod template differently: a Job's template is fixed
            # once made, so the Job keeps it and takes what a Job lets change
            patched = rt.kube.patch(k.JOB, tj.name, namespace, mutable_part(desired))
            memory.applied_job[_key(body)] = str(patched["metadata"].get("resourceVersion"))
            job = {**patched, "status": job.get("status") or patched.get("status") or {}}
        elif live != wanted:
            try:
                dropped = dropped_fields(job, desired)
                if dropped is not None:
                    rt.kube.patch(k.JOB, tj.name, namespace, dropped)
                applied = rt.kube.apply(desired)
                memory.applied_job[_key(body)] = str(applied["metadata"].get("resourceVersion"))
                job = {**applied, "status": (job or {}).get("status") or applied.get("status") or {}}
            except k.ApiError as exc:
                if exc.conflict or job is None:
                    raise
                ready = (
                    False,
                    "JobUpdateRejected",
                    (
                        f"the running Job cannot take this change ({tail(exc.message, 300)}); "
                        "revert the spec, or delete and recreate the TrainingJob"
                    ),
                )
    else:  # the Job exists already: keep it, and say why it is not updated
        ready = (False, problem[0], problem[1])
    assert job is not None
    status.job_name = tj.name
    pods = []
    if not created and not true_conditions(job).get("Complete"):  # a Job created now has no pods
        pods = rt.kube.list(k.POD, namespace, label_selector=f"job-name={tj.name}")
    seen = observe(job, pods, queued=bool(tj.spec.queue_name) and not tj.spec.suspend)
    if not created and awaits_pods(job, pods):
        refusal = pods_refused(rt.kube, job)
        if refusal is not None:
            seen.reason, seen.message = "FailedCreate", refusal
            ready = (False, "FailedCreate", refusal)
        key = _key(body)  # no watch event says that a quota was raised or a pod was refused
        pod_check.schedule(key, lambda: watches.add(key, ("fresh", None)))
    else:
        pod_check.reset(_key(body))
    set_condition(status, "Ready", ready[0], ready[1], ready[2], generation)
    set_storage_condition(status, tj.spec.storage, pods, generation)
    if seen.phase == "Succeeded" and before.phase == "Succeeded":
        seen.pod_name, seen.node_name = before.pod_name, before.node_name  # pods may be gone
    apply_observation(rt, status, seen, before, generation)
    gpu = None
    if status.phase == "Running" and status.gpus:
        gpu = running_gpu(rt.kube, rt.config.platform_namespace, status.node_name, namespace, status.pod_name)
    status.gpu_product = status.gpu_product or (gpu.product if gpu else None)
    status.gpu_utilization_percent = gpu.utilization_percent if gpu else None
    key = _key(body)
    follow_progress(tj, status, key, generation, lambda: watches.add(key, ("fresh", None)))
    return status


def _job_deleted(
    rt: runtime.Runtime,
    tj: TrainingJob,
    status: TrainingJobStatus,
    before: TrainingJobStatus,
    ended: dict[str, Any] | None,
    generation: int | None,
) -> TrainingJobStatus:
    """The Job of a finished training is gone (ttlSecondsAfterFinished, or deleted by hand):
    the status keeps the outcome and its figures, and no Job is created again (that would run
    the whole training once more)."""
    if before.phase not in ("Succeeded", "Failed") and ended is not None:
        # deleted before this status said it ended: its last state says how
        seen = observe(ended, [], queued=False)
        apply_observation(rt, status, seen, before, generation)
        set_storage_condition(status, tj.spec.storage, [], generation)
    ttl = tj.spec.ttl_seconds_after_finished
    cause = f"ttlSecondsAfterFinished: {ttl}" if ttl is not None else "deleted"
    message = (
        f"the training ended ({status.phase}) and its Job {tj.name} is gone ({cause}); this "
        "status keeps the outcome. To train again, delete and recreate the TrainingJob"
    )
    set_condition(status, "Ready", True, "JobDeleted", message, generation)
    return status


#: re-reads of a Job that has no pod: 2 s, doubling up to 1 min, until a pod appears
pod_check = retry.Backoff(first=2.0, cap=60.0)


def awaits_pods(job: dict[str, Any], pods: list[dict[str, Any]]) -> bool:
    """A running Job (not suspended, not finished) that has no pod at all."""
    if pods or finished(job) or (job.get("spec") or {}).get("suspend"):
        return False
    status = job.get("status") or {}
    return not (status.get("active") or status.get("succeeded") or status.get("failed"))


def pods_refused(api: k.Kube, job: dict[str, Any]) -> str | None:
    """What the API server answered the Job controller's pod creates (its FailedCreate Event:
    a ResourceQuota, Pod Security, a LimitRange, a webhook), or None. The Job's status says
    nothing of it; without `list events` the TrainingJob just stays Pending."""
    meta = job.get("metadata") or {}
    try:
        found = api.list(
            k.EVENT,
            meta.get("namespace"),
            field_selector=f"involvedObject.uid={meta.get('uid')},reason=FailedCreate",
        )
    except k.ApiError as exc:
        log.debug("events of Job %s: %s", meta.get("name"), exc)
        return None
    if not found:
        return None
    last = max(found, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    said = str(last.get("message") or "").removeprefix("Error creating: ")
    if "exceeded quota" in said:
        fix = "free some of the namespace's quota or ask the site admin to raise it"
    elif "PodSecurity" in said:
        fix = "the namespace's Pod Security level refuses the pod"
    else:
        fix = "an admission policy of the cluster refuses the pod; see the message"
    return (
        f"the API server refused the training pod: {tail(said, 400)}; {fix} "
        f"(the Job controller keeps trying; kubectl describe job {meta.get('name')})"
    )


def dropped_fields(live: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any] | None:
    """A merge patch removing what our create set and the desired Job no longer has.

    The Job is created with a plain create, so the server records those fields under our
    manager's Update entry; apply removes only fields its own Apply entry owns. The pod
    template is immutable and left alone (a change there is rejected anyway).
    """
    for entry in ((live or {}).get("metadata") or {}).get("managedFields") or []:
        if (entry.get("manager"), entry.get("operation")) == (k.FIELD_MANAGER, "Update") and not entry.get(
            "subresource"
        ):
            patch = _missing(entry.get("fieldsV1") or {}, desired, top=True)
            return patch or None
    return None


def _missing(owned: dict[str, Any], desired: dict[str, Any], top: bool = False) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for field, below in owned.items():
        if not field.startswith("f:"):
            continue  # list items (k:/v:) and "." markers: lists are replaced whole by apply
        name = field[2:]
        if top and name not in ("metadata", "spec"):
            continue
        if name in ("template", "selector", "ownerReferences", "managedFields"):
            continue
        if name not in desired:
            patch[name] = None
        elif isinstance(below, dict) and below and isinstance(desired[name], dict):
            inner = _missing(below, desired[name])
            if inner:
                patch[name] = inner
    return patch


def _name_taken(status: TrainingJobStatus, tj: TrainingJob, generation: int | None) -> TrainingJobStatus:
    message = (
        f"a Job named {tj.name} exists and is not this TrainingJob's; "
        "delete it or rename the TrainingJob"
    )
    return _block(status, "JobNameTaken", message, generation)


def _owned_by(job: dict[str, Any], tj: TrainingJob) -> bool:
    owners = job["metadata"].get("ownerReferences") or []
    return any(o.get("kind") == "TrainingJob" and o.get("uid") == tj.metadata.uid for o in owners)


def apply_observation(
    rt: runtime.Runtime,
    status: TrainingJobStatus,
    seen: Observation,
    before: TrainingJobStatus,
    generation: int | None,
) -> None:
    status.phase, status.reason, status.message = seen.phase, seen.reason, seen.message or None
    status.pod_name = seen.pod_name or before.pod_name
    status.node_name = seen.node_name or before.node_name
    status.restarts = seen.restarts
    status.exit_code = seen.exit_code
    status.start_time = seen.start_time
    status.completion_time = seen.completion_time if seen.phase in ("Succeeded", "Failed") else None
    status.duration = None
    if status.start_time and status.completion_time:
        status.duration = format_duration((status.completion_time - status.start_time).total_seconds())
    if status.node_name and status.gpus and status.node_name != before.node_name:
        status.gpu_product = _node_gpu_product(rt, status.node_name)
    elif not status.gpus:
        status.gpu_product = None
    running, done, failed = seen.phase == "Running", seen.phase == "Succeeded", seen.phase == "Failed"
    set_condition(
        status,
        "Running",
        running,
        seen.reason if not running else "Running",
        seen.message if running else "",
        generation,
    )
    set_condition(status, "Succeeded", done, "Completed" if done else seen.phase, "", generation)
    set_condition(
        status,
        "Failed",
        failed,
        seen.reason if failed else seen.phase,
        seen.message if failed else "",
        generation,
    )


def _node_gpu_product(rt: runtime.Runtime, node_name: str) -> str | None:
    try:
        node = rt.kube.get(k.NODE, node_name)
    except k.ApiError:  # may not read nodes: the column stays empty
        return None
    return ((node or {}).get("metadata", {}).get("labels") or {}).get(GPU_PRODUCT_LABEL)
