"""The per-node GPU inventory: what the agent publishes and the operator reads.

Published as one ConfigMap per node in the platform namespace (`gpu-inventory-<node>`, label
`deep-hybrid-datacloud.eu/gpu-inventory=true`, JSON under `data["inventory.json"]`). A ConfigMap
rather than a Node annotation: the agent then needs write access to ConfigMaps of one namespace,
not `patch nodes`, which would let it change any node's labels and taints.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from .. import kube as k
from .mig import mig_resource_name

log = logging.getLogger(__name__)

LABEL = "deep-hybrid-datacloud.eu/gpu-inventory"
DATA_KEY = "inventory.json"
#: an inventory not refreshed for this long belongs to a node whose agent is gone
STALE_AFTER = dt.timedelta(minutes=10)
MIB = 1024 * 1024


class MigInstance(BaseModel):
    uuid: str
    profile: str = Field(description="MIG profile, `1g.10gb`")
    memory_total_mib: int
    memory_used_mib: int


class GpuProcess(BaseModel):
    pid: int
    used_memory_mib: int | None = None
    namespace: str | None = None
    pod: str | None = None


class GpuInfo(BaseModel):
    index: int
    uuid: str | None = None
    #: as GPU feature discovery's `nvidia.com/gpu.product` label: spaces become dashes
    product: str | None = None
    memory_total_mib: int | None = None
    #: as nvidia-smi shows it: without the driver's reserved memory (NVML v2), except where the
    #: driver only answers v1 (before R510), which counts the reserved memory as used
    memory_used_mib: int | None = None
    #: the driver's reserved memory; None where only NVML v1 answers
    memory_reserved_mib: int | None = None
    utilization_percent: int | None = None
    temperature_celsius: int | None = None
    mig_enabled: bool = False
    mig_instances: list[MigInstance] = Field(default_factory=list)
    processes: list[GpuProcess] = Field(default_factory=list)
    #: NVML answered GPU_IS_LOST: the GPU fell off the bus and needs a node reboot
    lost: bool = False
    error: str | None = None


class NodeInventory(BaseModel):
    node: str
    updated: dt.datetime
    driver_version: str | None = None
    #: why there is nothing to read (no driver, NVML failed); None when the GPUs were read
    error: str | None = None
    gpus: list[GpuInfo] = Field(default_factory=list)

    def summary(self) -> str:
        """`node-a: 2x NVIDIA-A100-SXM4-80GB (81920 MiB)` for conditions and logs."""
        if self.error:
            return f"{self.node}: {self.error}"
        groups: dict[str, int] = {}
        for gpu in self.gpus:
            if gpu.lost:
                continue
            key = f"{gpu.product} ({gpu.memory_total_mib} MiB)"
            if gpu.mig_enabled and gpu.mig_instances:
                profiles = sorted({m.profile for m in gpu.mig_instances})
                key += f" MIG {','.join(profiles)}"
            groups[key] = groups.get(key, 0) + 1
        if not groups:
            return f"{self.node}: no usable GPU"
        return f"{self.node}: " + ", ".join(f"{n}x {key}" for key, n in sorted(groups.items()))


def gfd_product(nvml_name: str) -> str:
    """NVML's `NVIDIA A100-SXM4-80GB` as GPU feature discovery labels it."""
    return re.sub(r"\s+", "-", nvml_name.strip())


def same_product(wanted: str, offered: str | None) -> bool:
    """Compare the way people write products: case and space/dash insensitive."""
    return offered is not None and gfd_product(wanted).lower() == gfd_product(offered).lower()


def configmap_name(node: str) -> str:
    name = f"gpu-inventory-{node}"
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(node.encode()).hexdigest()[:10]
    return f"{name[:242]}-{digest}"


def to_configmap(inventory: NodeInventory, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(inventory.node),
            "namespace": namespace,
            "labels": {LABEL: "true", "app.kubernetes.io/part-of": "deep-platform",
                       "app.kubernetes.io/component": "gpu-agent"},
        },
        "data": {DATA_KEY: inventory.model_dump_json(exclude_defaults=False)},
    }


def from_configmap(configmap: dict[str, Any]) -> NodeInventory | None:
    """The inventory in a ConfigMap, or None (logged) when it cannot be read."""
    raw = (configmap.get("data") or {}).get(DATA_KEY)
    name = configmap.get("metadata", {}).get("name")
    if not raw:
        return None
    try:
        return NodeInventory.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        log.warning("ignoring unreadable GPU inventory in ConfigMap %s: %s", name, exc)
        return None


def read_inventories(
    api: k.Kube, namespace: str, now: dt.datetime | None = None
) -> dict[str, NodeInventory]:
    """Fresh inventories by node name; stale ones (agent gone) are left out."""
    now = now or dt.datetime.now(dt.UTC)
    found: dict[str, NodeInventory] = {}
    for configmap in api.list(k.CONFIGMAP, namespace, label_selector=f"{LABEL}=true"):
        inventory = from_configmap(configmap)
        if inventory is None or now - inventory.updated > STALE_AFTER:
            continue
        found[inventory.node] = inventory
    return found


def gpu_of_pod(
    inventories: dict[str, NodeInventory], node: str | None, namespace: str, pod: str
) -> GpuInfo | None:
    """The GPU a pod's processes run on, from its node's inventory."""
    inventory = inventories.get(node or "")
    if inventory is None:
        return None
    for gpu in inventory.gpus:
        if any(p.namespace == namespace and p.pod == pod for p in gpu.processes):
            return gpu
    return None


def as_node_dicts(
    inventories: dict[str, NodeInventory], nodes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Inventoried GPU nodes that GPU feature discovery has not labelled, shaped like labelled Node
    objects (one per product on the node), so `scheduling` checks both the same way.

    Nodes the API no longer lists are left out when the node list is known.
    """
    from ..builders.pod import GPU_MEMORY_LABEL, GPU_PRODUCT_LABEL

    known = {(n.get("metadata") or {}).get("name") for n in nodes}
    labelled = {
        (n.get("metadata") or {}).get("name")
        for n in nodes
        if GPU_PRODUCT_LABEL in ((n.get("metadata") or {}).get("labels") or {})
    }
    found = []
    for name, inventory in sorted(inventories.items()):
        if name in labelled or (known and name not in known):
            continue
        groups: dict[tuple[str, int], dict[str, int]] = {}
        for gpu in inventory.gpus:
            if gpu.lost or not gpu.product or gpu.memory_total_mib is None:
                continue
            counts = groups.setdefault((gpu.product, gpu.memory_total_mib), {})
            if gpu.mig_enabled:
                for mig in gpu.mig_instances:
                    # the device plugin's name; compute-instance profiles are not advertised
                    resource = mig_resource_name(mig.profile)
                    if resource is not None:
                        counts[resource] = counts.get(resource, 0) + 1
            else:
                counts["whole"] = counts.get("whole", 0) + 1
        for (product, memory), counts in sorted(groups.items()):
            found.append({
                "metadata": {"name": name, "labels": {
                    GPU_PRODUCT_LABEL: product,
                    GPU_MEMORY_LABEL: str(memory),
                    "nvidia.com/gpu.count": str(counts.pop("whole", 0)),
                }},
                "status": {"allocatable": {key: str(value) for key, value in counts.items()}},
            })
    return found


def read_inventories_or_none(api: k.Kube, namespace: str) -> dict[str, NodeInventory]:
    """Like `read_inventories`, but empty (logged once per call) when the operator may not read them."""
    try:
        return read_inventories(api, namespace)
    except k.ApiError as exc:
        if exc.status in (401, 403, 404):
            log.info("cannot read GPU inventories in %s (%s)", namespace, exc.reason)
            return {}
        raise


def running_gpu(
    api: k.Kube, namespace: str, node: str | None, pod_namespace: str, pod: str | None
) -> GpuInfo | None:
    """The GPU a running pod computes on, from its node's agent (None when unknown)."""
    if not node or not pod:
        return None
    return gpu_of_pod(read_inventories_or_none(api, namespace), node, pod_namespace, pod)
