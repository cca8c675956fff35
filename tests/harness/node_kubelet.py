"""A kubelet stand-in for a real API server that has no kubelet (shared/k8s).

It registers Nodes the way they look on a real GPU cluster (the labels of NVIDIA's GPU feature
discovery, `nvidia.com/gpu` or MIG capacity, the GPU taint), keeps their Lease renewed so the
node lifecycle controller never marks them unreachable, and moves every pod that the real
scheduler binds to them through the states a kubelet writes in `status`: init containers one
after another, native sidecars (init containers with `restartPolicy: Always`) that start and keep
running, the main containers Running and Ready, then each one terminated with an exit code
(`OOMKilled`, a termination message...), and a graceful deletion finished with
`gracePeriodSeconds: 0`. No container runs: what a pod "does" is an `Outcome` that the test
chooses per pod (`decide`). A test that needs a real process behind a pod passes `on_running`,
which may return the address the pod serves on, and may set `readiness`: a probe the stand-in
asks on every pass while a pod runs (as the kubelet runs a readiness probe), so that the pod, its
Ready condition and the EndpointSlices turn ready only once that process answers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deep_platform import kube as k
from deep_platform.gpu.mig import mig_resource_name

log = logging.getLogger(__name__)
NODE_LEASE_NAMESPACE = "kube-node-lease"


@dataclass(frozen=True)
class Outcome:
    """What the containers of one pod do once the pod is bound to a node."""

    exit_code: int | None = 0  # None: the main containers run until the pod is deleted
    after: float = 0.3  # seconds Running before they exit
    reason: str | None = None  # terminated reason; default Completed (0) or Error
    message: str = ""  # termination message (what FallbackToLogsOnError reads from the log)
    ready: bool = True  # readiness of running containers
    init_exit_code: int = 0  # exit code of the first regular init container
    init_message: str = ""
    waiting_reason: str | None = None  # e.g. ErrImagePull: the containers never start
    waiting_message: str = ""
    start_delay: float = 0.0  # seconds between binding and the containers running
    ip: str | None = None  # pod IP; default 10.244.<node>.<n>


def default_outcome(pod: dict[str, Any]) -> Outcome:
    """Pods that restart always (Deployments) serve until deleted; the others exit 0."""
    if pod["spec"].get("restartPolicy", "Always") == "Always":
        return Outcome(exit_code=None)
    return Outcome()


@dataclass(frozen=True)
class NodeShape:
    name: str
    gpus: int = 0
    product: str = "NVIDIA-A100-SXM4-80GB"
    gpu_memory_mib: int = 81920
    mig: dict[str, int] = field(default_factory=dict)  # e.g. {"1g.10gb": 7}: mixed strategy
    cpu: str = "32"
    memory: str = "256Gi"
    taint_gpu: bool = True
    labels: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **self.labels,
        }
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": "250", "ephemeral-storage": "500Gi"}
        taints = []
        if self.gpus or self.mig:
            # what NVIDIA's GPU feature discovery labels a GPU node with
            labels.update(
                {
                    "nvidia.com/gpu.present": "true",
                    "nvidia.com/gpu.product": self.product,
                    "nvidia.com/gpu.count": str(self.gpus),
                    "nvidia.com/gpu.memory": str(self.gpu_memory_mib),
                    "nvidia.com/gpu.family": "ampere",
                    "nvidia.com/cuda.driver.major": "550",
                    "nvidia.com/mig.strategy": "mixed" if self.mig else "none",
                    "feature.node.kubernetes.io/pci-10de.present": "true",
                }
            )
            if self.gpus:
                capacity["nvidia.com/gpu"] = str(self.gpus)
            for profile, count in self.mig.items():
                # named as the device plugin names it: `1g.10gb+me` is nvidia.com/mig-1g.10gb.me
                resource = mig_resource_name(profile)
                assert resource is not None, f"no device plugin advertises MIG profile {profile!r}"
                capacity[resource] = str(count)
                labels[f"{resource}.count"] = str(count)
            if self.taint_gpu:
                taints.append({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"})
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": {"taints": taints} if taints else {},
            "status": {"capacity": capacity, "allocatable": capacity},
        }


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class PodRun:
    """Where one pod is in its life, as this kubelet sees it."""

    outcome: Outcome
    bound_at: float
    ip: str
    running_at: float | None = None
    exited: bool = False
    announced: bool = False  # on_running was called
    written: dict[str, Any] = field(default_factory=dict)
    pod: dict[str, Any] = field(default_factory=dict)  # as last seen
    stopped: bool = False  # on_stopped was called


class NodeKubelet:
    """Registers nodes and plays the kubelet for every pod bound to them."""

    def __init__(
        self,
        api: k.Kube,
        nodes: list[NodeShape],
        decide: Callable[[dict[str, Any]], Outcome] = default_outcome,
        on_running: Callable[[dict[str, Any], PodRun], None] | None = None,
        on_stopped: Callable[[dict[str, Any]], None] | None = None,
        interval: float = 0.05,
        readiness: Callable[[dict[str, Any], PodRun], bool] | None = None,
    ) -> None:
        self.api = api
        self.nodes = {shape.name: shape for shape in nodes}
        self.decide = decide
        self.on_running = on_running
        self.on_stopped = on_stopped
        #: readiness probe of a running pod whose outcome is ready (None: ready once Running);
        #: called on every pass of the stand-in's loop, so it must answer fast
        self.readiness = readiness
        self.interval = interval
        self.runs: dict[str, PodRun] = {}  # by pod uid
        self._pods: dict[str, dict[str, Any]] = {}  # by uid, from the watch
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ips = 0

    # lifecycle

    def start(self) -> NodeKubelet:
        for shape in self.nodes.values():
            self.register(shape)
        for target in (self._watch_loop, self._drive_loop, self._lease_loop):
            thread = threading.Thread(target=target, daemon=True, name=f"kubelet-{target.__name__}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, remove_nodes: bool = True) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        if remove_nodes:
            for name in self.nodes:
                with contextlib.suppress(k.ApiError):
                    self.api.delete(k.NODE, name)

    def __enter__(self) -> NodeKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def register(self, shape: NodeShape) -> None:
        body = shape.body()
        status = body.pop("status")
        if self.api.get(k.NODE, shape.name) is None:
            self.api.create(body)
        status["conditions"] = [self._node_condition()]
        status["nodeInfo"] = {
            "kubeletVersion": "v1.36.2",
            "containerRuntimeVersion": "stand-in://1",
            "architecture": "amd64",
            "operatingSystem": "linux",
            "osImage": "stand-in",
            "kernelVersion": "6",
            "machineID": shape.name,
            "systemUUID": shape.name,
            "bootID": shape.name,
            "kubeProxyVersion": "",
        }
        status["addresses"] = [
            {"type": "InternalIP", "address": "10.0.0.1"},
            {"type": "Hostname", "address": shape.name},
        ]
        self.api.patch_status(k.NODE, shape.name, None, status)

    @staticmethod
    def _node_condition() -> dict[str, Any]:
        stamp = now()
        return {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "kubelet stand-in is posting ready status",
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }

    def _lease_loop(self) -> None:
        """Renew each node's Lease, as the kubelet does every 10 s (40 s grace)."""
        while not self._stop.is_set():
            for name in self.nodes:
                lease = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": name, "namespace": NODE_LEASE_NAMESPACE},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()},
                }
                try:
                    self.api.apply(lease)
                except Exception as exc:  # the API server may be going away at teardown
                    log.debug("lease %s: %s", name, exc)
            self._stop.wait(5)

    # pods

    def _watch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                listing = self.api.request("GET", k.POD.path())
                with self._lock:
                    self._pods = {p["metadata"]["uid"]: p for p in listing.get("items") or []}
                version = listing["metadata"]["resourceVersion"]
                while not self._stop.is_set():
                    for event in self.api.watch(k.POD, resource_version=version, timeout_seconds=30):
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            raise RuntimeError(obj.get("message"))
                        version = obj["metadata"].get("resourceVersion", version)
                        if event["type"] == "BOOKMARK":
                            continue
                        with self._lock:
                            if event["type"] == "DELETED":
                                self._pods.pop(obj["metadata"]["uid"], None)
                            else:
                                self._pods[obj["metadata"]["uid"]] = obj
                        if self._stop.is_set():
                            return
            except Exception as exc:
                if not self._stop.is_set():
                    log.debug("pod watch: %s; listing again", exc)
                    time.sleep(0.2)

    def _drive_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                pods = [p for p in self._pods.values() if p["spec"].get("nodeName") in self.nodes]
                live = set(self._pods)
            for pod in pods:
                try:
                    self._advance(pod)
                except k.ApiError as exc:
                    if not (exc.not_found or exc.conflict):
                        log.warning("kubelet stand-in: pod %s: %s", pod["metadata"]["name"], exc)
                except Exception:
                    log.exception("kubelet stand-in: pod %s", pod["metadata"]["name"])
            for uid in [uid for uid in self.runs if uid not in live]:
                gone = self.runs.pop(uid)
                # removed without a graceful deletion this loop saw (force-deleted, or deleted
                # between two turns): its processes stop all the same, as a real node's would
                if gone.announced and not gone.stopped and self.on_stopped:
                    self.on_stopped(gone.pod)
            self._stop.wait(self.interval)

    def _next_ip(self, node: str) -> str:
        self._ips += 1
        index = list(self.nodes).index(node)
        return f"10.244.{index}.{self._ips % 250 + 2}"

    def _advance(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        run = self.runs.get(uid)
        if run is None:
            outcome = self.decide(pod)
            run = self.runs[uid] = PodRun(
                outcome, time.monotonic(), outcome.ip or self._next_ip(spec["nodeName"])
            )
        run.pod = pod
        if meta.get("deletionTimestamp"):
            self._finish_deletion(pod, run)
            return
        if run.exited:
            return
        status = self._status(pod, run)
        if status != run.written:
            self.api.patch_status(k.POD, meta["name"], meta["namespace"], status)
            run.written = status
            if status.get("phase") == "Running" and self.on_running and not run.announced:
                run.announced = True
                self.on_running(pod, run)

    def _status(self, pod: dict[str, Any], run: PodRun) -> dict[str, Any]:
        """The status the kubelet would report now, from the outcome and the time bound."""
        spec, outcome = pod["spec"], run.outcome
        elapsed = time.monotonic() - run.bound_at
        inits = spec.get("initContainers") or []
        start = pod.get("status", {}).get("startTime") or now()
        base: dict[str, Any] = {
            "hostIP": "10.0.0.1",
            "hostIPs": [{"ip": "10.0.0.1"}],
            "podIP": run.ip,
            "podIPs": [{"ip": run.ip}],
            "startTime": start,  # qosClass is the API server's to set (immutable once set)
        }
        conditions = {
            "PodScheduled": "True",
            "Initialized": "False",
            "ContainersReady": "False",
            "Ready": "False",
            "PodReadyToStartContainers": "True",
        }
        init_statuses: list[dict[str, Any]] = []
        waiting = outcome.waiting_reason
        started = not waiting and elapsed >= outcome.start_delay
        failed_init = False
        for index, container in enumerate(inits):
            sidecar = container.get("restartPolicy") == "Always"
            if not started:
                state: dict[str, Any] = {
                    "waiting": {
                        "reason": waiting or "PodInitializing",
                        **({"message": outcome.waiting_message} if waiting else {}),
                    }
                }
            elif sidecar:
                state = {"running": {"startedAt": start}}
            elif index == _first_regular(inits) and outcome.init_exit_code:
                state = {"terminated": _terminated(outcome.init_exit_code, None, outcome.init_message, start)}
                failed_init = True
            else:
                state = {"terminated": _terminated(0, None, "", start)}
            init_statuses.append(
                _container_status(container, state, ready=sidecar and started, started=sidecar and started)
            )
            if failed_init:
                break
        main_state: dict[str, Any]
        phase = "Pending"
        if failed_init:
            main_state = {"waiting": {"reason": "PodInitializing"}}
            phase = "Failed" if spec.get("restartPolicy") != "Always" else "Pending"
        elif not started:
            main_state = {
                "waiting": {
                    "reason": waiting or "ContainerCreating",
                    **({"message": outcome.waiting_message} if waiting else {}),
                }
            }
        else:
            conditions["Initialized"] = "True"
            if run.running_at is None:
                run.running_at = time.monotonic()
            ends = outcome.exit_code is not None and time.monotonic() - run.running_at >= outcome.after
            if ends:
                code = outcome.exit_code or 0
                main_state = {"terminated": _terminated(code, outcome.reason, outcome.message, start)}
                phase = "Succeeded" if code == 0 else "Failed"
                for status in init_statuses:  # sidecars are stopped once the main containers end
                    if "running" in status["state"]:
                        status.update(
                            state={"terminated": _terminated(0, None, "", start)}, ready=False, started=False
                        )
                run.exited = True
            else:
                main_state = {"running": {"startedAt": start}}
                phase = "Running"
                probe = self.readiness
                if outcome.ready and (probe is None or probe(pod, run)):
                    conditions["ContainersReady"] = conditions["Ready"] = "True"
        ready = conditions["Ready"] == "True"
        containers = [
            _container_status(
                c, main_state, ready=phase == "Running" and ready, started="running" in main_state
            )
            for c in spec["containers"]
        ]
        base.update(
            phase=phase,
            containerStatuses=containers,
            conditions=[{"type": t, "status": s} for t, s in conditions.items()],
        )
        if init_statuses:
            base["initContainerStatuses"] = init_statuses
        return base

    def _finish_deletion(self, pod: dict[str, Any], run: PodRun) -> None:
        """Graceful deletion: the containers stop (SIGTERM), then the kubelet removes the pod."""
        meta = pod["metadata"]
        if not run.exited and (pod.get("status") or {}).get("phase") in ("Pending", "Running"):
            start = pod.get("status", {}).get("startTime") or now()
            stopped = [
                _container_status(
                    c, {"terminated": _terminated(143, "Error", "", start)}, ready=False, started=False
                )
                for c in pod["spec"]["containers"]
            ]
            with contextlib.suppress(k.ApiError):
                self.api.patch_status(
                    k.POD,
                    meta["name"],
                    meta["namespace"],
                    {
                        "phase": "Failed"
                        if pod["spec"].get("restartPolicy") != "Always"
                        else pod["status"].get("phase"),
                        "containerStatuses": stopped,
                    },
                )
            run.exited = True
        if self.on_stopped and not run.stopped:
            run.stopped = True
            self.on_stopped(pod)
        with contextlib.suppress(k.ApiError):
            self.api.request(
                "DELETE",
                k.POD.path(meta["namespace"], meta["name"]),
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": meta["uid"]},
                },
            )


def _first_regular(inits: list[dict[str, Any]]) -> int:
    return next((i for i, c in enumerate(inits) if c.get("restartPolicy") != "Always"), -1)


def _terminated(code: int, reason: str | None, message: str, started: str) -> dict[str, Any]:
    state = {
        "exitCode": code,
        "reason": reason or ("Completed" if code == 0 else "Error"),
        "startedAt": started,
        "finishedAt": now(),
    }
    if message:
        state["message"] = message
    return state


def _container_status(
    container: dict[str, Any], state: dict[str, Any], ready: bool, started: bool
) -> dict[str, Any]:
    return {
        "name": container["name"],
        "image": container["image"],
        "imageID": "",
        "ready": ready,
        "started": started,
        "restartCount": 0,
        "state": state,
    }

