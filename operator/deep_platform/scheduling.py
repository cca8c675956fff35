"""Can any node of the cluster run this GPU request? Answered before a Job is created.

The question is only answered when the cluster can say: nodes labelled by NVIDIA GPU feature
discovery (`nvidia.com/gpu.product` and friends). A cluster without such labels may still have
GPUs (labelled by hand, or added by an autoscaler later), so then the answer is "cannot know"
(None) and the scheduler has the last word.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from .api.common import GPU
from .builders.pod import GPU_MEMORY_LABEL, GPU_PRODUCT_LABEL, GPU_RESOURCE, quantity_to_mebibytes
from .gpu.inventory import NodeInventory, as_node_dicts
from .gpu.mig import mig_resource_name
from .kube import NODE, ApiError, Kube

log = logging.getLogger(__name__)

GPU_COUNT_LABEL = "nvidia.com/gpu.count"


def _labels(node: dict[str, Any]) -> dict[str, str]:
    return (node.get("metadata") or {}).get("labels") or {}


def _allocatable(node: dict[str, Any], resource: str) -> int:
    value = ((node.get("status") or {}).get("allocatable") or {}).get(resource)
    try:
        return int(str(value)) if value is not None else 0
    except ValueError:
        return 0


def _int_label(labels: dict[str, str], key: str) -> int | None:
    try:
        return int(labels[key])
    except (KeyError, ValueError):
        return None


def gpu_nodes(nodes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nodes that GPU feature discovery labelled: the ones the cluster tells us about."""
    return [n for n in nodes if GPU_PRODUCT_LABEL in _labels(n)]


def _offers(node: dict[str, Any], gpu: GPU) -> bool:
    labels = _labels(node)
    if gpu.product and labels.get(GPU_PRODUCT_LABEL) != gpu.product:
        return False
    if gpu.min_memory is not None:
        memory = _int_label(labels, GPU_MEMORY_LABEL)
        if memory is None or memory < quantity_to_mebibytes(gpu.min_memory):
            return False
    if gpu.mig_profile:
        resource = mig_resource_name(gpu.mig_profile)
        return resource is not None and _allocatable(node, resource) >= gpu.count
    # allocatable is what the device plugin registered; the label is what discovery saw
    whole = _allocatable(node, GPU_RESOURCE) or (_int_label(labels, GPU_COUNT_LABEL) or 0)
    return whole >= gpu.count


def _describe(gpu: GPU) -> str:
    what = f"{gpu.count} x " + (gpu.product or "GPU")
    if gpu.mig_profile:
        what += f" as MIG {gpu.mig_profile}"
    if gpu.min_memory is not None:
        what += f" with at least {gpu.min_memory} memory"
    return what


def _inventory(nodes: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for node in nodes:
        labels = _labels(node)
        product = labels.get(GPU_PRODUCT_LABEL, "?")
        per_node = _allocatable(node, GPU_RESOURCE) or _int_label(labels, GPU_COUNT_LABEL) or 0
        memory = labels.get(GPU_MEMORY_LABEL)
        key = f"{product} ({memory} MiB) x{per_node}" if memory else f"{product} x{per_node}"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{key} on {n} node{'s' if n > 1 else ''}" for key, n in sorted(counts.items()))


def gpu_problem(
    gpu: GPU | None,
    nodes: Iterable[dict[str, Any]],
    inventories: dict[str, NodeInventory] | None = None,
) -> str | None:
    """Why no node can ever run this GPU request, or None (it fits, or the cluster cannot say).

    A pure function over node objects as the API returns them, so it is tested without a
    cluster and can be fed from any inventory.
    """
    if gpu is None or gpu.count == 0:
        return None
    nodes = list(nodes)
    # nodes whose GPU agent reports GPUs that feature discovery did not label count too
    labelled = gpu_nodes(nodes) + as_node_dicts(inventories or {}, nodes)
    if not labelled:
        return None
    if any(_offers(node, gpu) for node in labelled):
        return None
    return (
        f"no node offers {_describe(gpu)} (GPU nodes here: {_inventory(labelled)}); "
        "change spec.resources.gpu, or ask the site admin for such nodes"
    )


def read_nodes(kube: Kube) -> list[dict[str, Any]]:
    """The cluster's nodes; none when the operator may not list them (then nothing is known)."""
    try:
        return kube.list(NODE)
    except ApiError as exc:
        if exc.status in (401, 403):
            log.info("cannot list nodes (%s); GPU requests are not checked", exc.reason)
            return []
        raise
