"""The GPU agent: one per GPU node (a DaemonSet). Reads the GPUs through an NVML layer, exports
Prometheus metrics and publishes the node's inventory for the operator.

Failure policy: a node without an NVIDIA driver is said so once and the agent idles (it retries
quietly, a driver may be installed later); a GPU that fell off the bus is reported as lost while
the others are still read; API server trouble is logged and retried. Nothing here exits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from .inventory import MIB, GpuInfo, GpuProcess, MigInstance, NodeInventory, gfd_product
from .nvml import ERROR_GPU_IS_LOST, ERROR_NOT_SUPPORTED, NO_DRIVER_ERRORS, NvmlError, NvmlLayer

log = logging.getLogger(__name__)

DEFAULT_PORT = 9400
#: cgroup v1 (`/kubepods/burstable/pod<uid>/...`) and v2/systemd (`kubepods-burstable-pod<uid>.slice`)
_POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_MIG_PROFILE = re.compile(r"MIG\s+(\S+)")

#: pod UID -> (namespace, name) or (namespace, name, owner kind, owner name), for the pods of
#: this node; the owner is the deep-platform object of the pod's labels (a TrainingJob...)
PodRef = tuple[str, ...]
PodLookup = Callable[[], dict[str, PodRef]]


def pod_uid_of(pid: int, proc_root: Path) -> str | None:
    """The UID of the pod a host process belongs to, from its cgroup (needs hostPID)."""
    try:
        text = (proc_root / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    match = _POD_UID.search(text)
    return match.group(1).replace("_", "-") if match else None


def _optional(read: Callable[[], Any]) -> Any:
    """A reading some GPUs do not support (utilisation of a MIG-enabled GPU): None then."""
    try:
        return read()
    except NvmlError as exc:
        if exc.code == ERROR_NOT_SUPPORTED:
            return None
        raise


class GpuAgent:
    """Reads one node's GPUs. `step()` is one round; `run()` loops until stopped."""

    def __init__(
        self,
        nvml: NvmlLayer,
        node: str,
        publish: Callable[[NodeInventory], None] | None = None,
        pods: PodLookup | None = None,
        proc_root: Path = Path("/proc"),
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.nvml = nvml
        self.node = node
        self.publish = publish
        self.pods = pods
        self.proc_root = proc_root
        self.clock = clock
        self.initialised = False
        self.latest: NodeInventory | None = None
        self._said_no_driver = False
        self._lost: set[int] = set()
        #: (namespace, pod) -> (kind, name) of the deep-platform object it belongs to, from the
        #: pods' labels at the last reading (for the per-TrainingJob metrics)
        self.owners: dict[tuple[str, str], tuple[str, str]] = {}
        self._lock = threading.Lock()

    # reading

    def start(self) -> bool:
        """Initialise NVML; False (said once) when the node has no usable driver."""
        if self.initialised:
            return True
        try:
            self.nvml.init()
        except NvmlError as exc:
            reason = (
                f"no NVIDIA driver on this node ({exc.message}); the GPU agent idles"
                if exc.code in NO_DRIVER_ERRORS
                else f"NVML failed to start ({exc.message}); the GPU agent idles"
            )
            if not self._said_no_driver:
                log.warning("%s", reason)
                self._said_no_driver = True
            self._set(NodeInventory(node=self.node, updated=self.clock(), error=reason))
            return False
        if self._said_no_driver:
            log.info("NVML is available now; reading GPUs")
        self.initialised = True
        return True

    def read(self) -> NodeInventory:
        """One reading of every GPU. Requires a successful `start()`."""
        nvml = self.nvml
        driver = nvml.driver_version()
        uid_to_pod = self._pod_lookup()
        self.owners = {(ref[0], ref[1]): (ref[2], ref[3]) for ref in uid_to_pod.values() if len(ref) >= 4}
        gpus = [self._read_gpu(index, uid_to_pod) for index in range(nvml.device_count())]
        return NodeInventory(node=self.node, updated=self.clock(), driver_version=driver, gpus=gpus)

    def _read_gpu(self, index: int, uid_to_pod: dict[str, PodRef]) -> GpuInfo:
        nvml = self.nvml
        gpu = GpuInfo(index=index)
        try:
            handle = nvml.device(index)
            gpu.uuid = nvml.uuid(handle)
            gpu.product = gfd_product(nvml.name(handle))
            memory = nvml.memory(handle)
            gpu.memory_total_mib, gpu.memory_used_mib = memory.total // MIB, memory.used // MIB
            gpu.memory_reserved_mib = None if memory.reserved is None else memory.reserved // MIB
            gpu.utilization_percent = _optional(lambda: nvml.utilization(handle))
            gpu.temperature_celsius = _optional(lambda: nvml.temperature(handle))
            gpu.mig_enabled = bool(_optional(lambda: nvml.mig_enabled(handle)))
            handles = [handle]
            if gpu.mig_enabled:
                handles = nvml.mig_devices(handle)
                gpu.mig_instances = [self._read_mig(h) for h in handles]
            for h in handles:
                for pid, used_bytes in _optional(functools.partial(nvml.processes, h)) or []:
                    gpu.processes.append(self._process(pid, used_bytes, uid_to_pod))
        except NvmlError as exc:
            if exc.code != ERROR_GPU_IS_LOST:
                gpu.error = exc.message
                return gpu
            gpu.lost = True
            gpu.error = "GPU has fallen off the bus (NVML_ERROR_GPU_IS_LOST); the node needs a reboot"
            if index not in self._lost:
                log.error("GPU %d (%s) %s", index, gpu.uuid or "uuid unknown", gpu.error)
                self._lost.add(index)
            return gpu
        if index in self._lost:
            log.info("GPU %d answers again", index)
            self._lost.discard(index)
        return gpu

    def _read_mig(self, handle: Any) -> MigInstance:
        nvml = self.nvml
        memory = nvml.memory(handle)
        match = _MIG_PROFILE.search(nvml.name(handle))
        return MigInstance(
            uuid=nvml.uuid(handle),
            profile=match.group(1) if match else "unknown",
            memory_total_mib=memory.total // MIB,
            memory_used_mib=memory.used // MIB,
        )

    def _process(
        self, pid: int, used_bytes: int | None, uid_to_pod: dict[str, PodRef]
    ) -> GpuProcess:
        proc = GpuProcess(pid=pid, used_memory_mib=used_bytes // MIB if used_bytes is not None else None)
        uid = pod_uid_of(pid, self.proc_root)
        if uid and uid in uid_to_pod:
            proc.namespace, proc.pod = uid_to_pod[uid][:2]
        return proc

    def _pod_lookup(self) -> dict[str, PodRef]:
        if self.pods is None:
            return {}
        try:
            return self.pods()
        except Exception as exc:  # processes then show without pods; not worth a failed round
            log.warning("could not list the pods of node %s: %s", self.node, exc)
            return {}

    # the loop

    def step(self) -> NodeInventory:
        """Read (or retry NVML), remember and publish. Never raises."""
        if self.start():
            try:
                self._set(self.read())
            except NvmlError as exc:
                log.warning("reading GPUs failed: %s", exc.message)
                self._set(NodeInventory(node=self.node, updated=self.clock(), error=exc.message))
        assert self.latest is not None
        if self.publish is not None:
            try:
                self.publish(self.latest)
            except Exception as exc:
                log.warning("could not publish the GPU inventory of %s: %s", self.node, exc)
        return self.latest

    def run(self, stop: threading.Event, interval: float = 15.0, idle_interval: float = 300.0) -> None:
        while not stop.is_set():
            self.step()
            stop.wait(interval if self.initialised else idle_interval)
        if self.initialised:
            with contextlib.suppress(NvmlError):
                self.nvml.shutdown()

    def _set(self, inventory: NodeInventory) -> None:
        with self._lock:
            self.latest = inventory


class GpuCollector(Collector):
    """Prometheus metrics from the agent's latest reading (no stale label sets linger)."""

    def __init__(self, agent: GpuAgent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[GaugeMetricFamily]:
        inventory = self.agent.latest
        node = self.agent.node
        up = GaugeMetricFamily(
            "deep_gpu_nvml_up", "1 when NVML could be read on this node, 0 without a driver", labels=["node"]
        )
        up.add_metric([node], 0 if inventory is None or inventory.error else 1)
        yield up
        if inventory is None:
            return
        labels = ["node", "gpu", "uuid", "product"]
        families = {
            "info": GaugeMetricFamily("deep_gpu_lost", "1 when the GPU fell off the bus", labels=labels),
            "util": GaugeMetricFamily(
                "deep_gpu_utilization_percent", "Percent of time a kernel ran", labels=labels
            ),
            "used": GaugeMetricFamily(
                "deep_gpu_memory_used_bytes",
                "GPU memory in use, as nvidia-smi shows it (without the driver's reserved memory, "
                "except on drivers before R510)",
                labels=labels,
            ),
            "reserved": GaugeMetricFamily(
                "deep_gpu_memory_reserved_bytes",
                "GPU memory the driver reserves for itself; absent on drivers before R510",
                labels=labels,
            ),
            "total": GaugeMetricFamily("deep_gpu_memory_total_bytes", "GPU memory", labels=labels),
            "temp": GaugeMetricFamily("deep_gpu_temperature_celsius", "GPU temperature", labels=labels),
            "mig": GaugeMetricFamily("deep_gpu_mig_enabled", "1 when MIG mode is on", labels=labels),
            "migs": GaugeMetricFamily(
                "deep_gpu_mig_instances", "MIG instances per profile", labels=[*labels, "profile"]
            ),
            "proc": GaugeMetricFamily(
                "deep_gpu_process_memory_used_bytes",
                "GPU memory used per process and pod",
                labels=[*labels, "pid", "namespace", "pod"],
            ),
            "wutil": GaugeMetricFamily(
                "deep_gpu_workload_utilization_percent",
                "Utilisation of each GPU a pod uses, with the deep-platform object (kind, owner) it "
                "belongs to: a TrainingJob's or InferenceService's GPU utilisation",
                labels=[*labels, "namespace", "pod", "kind", "owner"],
            ),
            "wmem": GaugeMetricFamily(
                "deep_gpu_workload_memory_used_bytes",
                "GPU memory used by a pod's processes on each GPU, with the deep-platform object "
                "(kind, owner) it belongs to",
                labels=[*labels, "namespace", "pod", "kind", "owner"],
            ),
        }
        for gpu in inventory.gpus:
            values = [node, str(gpu.index), gpu.uuid or "", gpu.product or ""]
            families["info"].add_metric(values, 1 if gpu.lost else 0)
            if gpu.lost:
                continue
            for key, value in (
                ("util", gpu.utilization_percent),
                ("used", None if gpu.memory_used_mib is None else gpu.memory_used_mib * MIB),
                ("reserved", None if gpu.memory_reserved_mib is None else gpu.memory_reserved_mib * MIB),
                ("total", None if gpu.memory_total_mib is None else gpu.memory_total_mib * MIB),
                ("temp", gpu.temperature_celsius),
            ):
                if value is not None:
                    families[key].add_metric(values, value)
            families["mig"].add_metric(values, 1 if gpu.mig_enabled else 0)
            profiles: dict[str, int] = {}
            for mig in gpu.mig_instances:
                profiles[mig.profile] = profiles.get(mig.profile, 0) + 1
            for profile, count in sorted(profiles.items()):
                families["migs"].add_metric([*values, profile], count)
            workloads: dict[tuple[str, str, str, str], int] = {}
            for proc in gpu.processes:
                if proc.used_memory_mib is not None:
                    families["proc"].add_metric(
                        [*values, str(proc.pid), proc.namespace or "", proc.pod or ""],
                        proc.used_memory_mib * MIB,
                    )
                if proc.pod:  # a pod's processes on this GPU, summed
                    owner = self.agent.owners.get((proc.namespace or "", proc.pod), ("", ""))
                    workload = (proc.namespace or "", proc.pod, *owner)
                    workloads[workload] = workloads.get(workload, 0) + (proc.used_memory_mib or 0) * MIB
            for workload, used in sorted(workloads.items()):
                families["wmem"].add_metric([*values, *workload], used)
                if gpu.utilization_percent is not None:  # a whole GPU (MIG reports none)
                    families["wutil"].add_metric([*values, *workload], gpu.utilization_percent)
        yield from families.values()


def registry_for(agent: GpuAgent) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GpuCollector(agent))
    return registry


def _shape(inventory: NodeInventory) -> Any:
    """What the operator schedules by: changes of it are published at once."""
    return (
        inventory.error,
        [(g.uuid, g.product, g.memory_total_mib, g.lost, g.mig_enabled, len(g.mig_instances),
          sorted((p.namespace or "", p.pod or "") for p in g.processes)) for g in inventory.gpus],
    )


class ConfigMapPublisher:
    """Writes the inventory ConfigMap: at once when its shape changes, else every `refresh` s.

    Utilisation moves every round; writing it each time would load the API server for nothing.
    """

    def __init__(
        self,
        api: Any,
        namespace: str,
        refresh: float = 60.0,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        import time

        from .inventory import to_configmap

        self.api = api
        self.namespace = namespace
        self.refresh = refresh
        self._to_configmap = to_configmap
        self._monotonic = monotonic or time.monotonic
        self._last: tuple[Any, float] | None = None

    def __call__(self, inventory: NodeInventory) -> None:
        shape, now = _shape(inventory), self._monotonic()
        if self._last is not None and self._last[0] == shape and now - self._last[1] < self.refresh:
            return
        self.api.apply(self._to_configmap(inventory, self.namespace))
        self._last = (shape, now)


def pods_on_node(api: Any, node: str) -> PodLookup:
    """Pod UID -> (namespace, name) of this node's pods (RBAC: list pods)."""
    from .. import kube as k
    from ..builders.pod import LABEL_KIND, LABEL_NAME

    def lookup() -> dict[str, PodRef]:
        pods = api.list(k.POD, field_selector=f"spec.nodeName={node}")
        refs: dict[str, PodRef] = {}
        for p in pods:
            meta = p.get("metadata") or {}
            if meta.get("uid"):
                labels = meta.get("labels") or {}
                refs[meta["uid"]] = (
                    meta["namespace"], meta["name"], labels.get(LABEL_KIND, ""), labels.get(LABEL_NAME, "")
                )
        return refs

    return lookup
