"""Can any node run the GPU request? Only answered when GPU feature discovery labelled nodes."""

from __future__ import annotations

from typing import Any

from deep_platform.api.common import GPU
from deep_platform.scheduling import gpu_problem


def node(product: str | None, gpus: int = 0, memory: int | None = None, **allocatable: str) -> dict[str, Any]:
    labels = {}
    if product:
        labels["nvidia.com/gpu.product"] = product
        labels["nvidia.com/gpu.count"] = str(gpus)
    if memory:
        labels["nvidia.com/gpu.memory"] = str(memory)
    alloc = {"cpu": "32", **allocatable}
    if gpus:
        alloc.setdefault("nvidia.com/gpu", str(gpus))
    return {"metadata": {"name": f"n-{product}", "labels": labels}, "status": {"allocatable": alloc}}


A100 = node("NVIDIA-A100-SXM4-80GB", 4, 81920)
T4 = node("Tesla-T4", 1, 15360)
CPU = node(None)


def test_no_gpu_request_or_unlabelled_cluster_cannot_be_judged() -> None:
    assert gpu_problem(None, [A100]) is None
    assert gpu_problem(GPU(count=0, product="H100"), [A100]) is None
    assert gpu_problem(GPU(count=1, product="NVIDIA-H100"), [CPU]) is None  # no discovery labels
    assert gpu_problem(GPU(count=1, product="NVIDIA-H100"), []) is None


def test_product_count_and_memory_match() -> None:
    assert gpu_problem(GPU(count=4, product="NVIDIA-A100-SXM4-80GB"), [A100, T4, CPU]) is None
    assert gpu_problem(GPU(count=1, min_memory="40Gi"), [A100, T4]) is None


def test_missing_product_is_a_clear_problem() -> None:
    problem = gpu_problem(GPU(count=1, product="NVIDIA-H100-80GB-HBM3"), [A100, T4, CPU])
    assert problem is not None
    assert "NVIDIA-H100-80GB-HBM3" in problem and "NVIDIA-A100-SXM4-80GB" in problem
    assert "spec.resources.gpu" in problem


def test_too_many_gpus_or_too_little_memory() -> None:
    assert gpu_problem(GPU(count=8, product="NVIDIA-A100-SXM4-80GB"), [A100]) is not None
    assert gpu_problem(GPU(count=1, min_memory="40Gi"), [T4]) is not None


def test_mig_profile_needs_allocatable_mig_resource() -> None:
    mig = node("NVIDIA-A100-SXM4-40GB", 0, 40960, **{"nvidia.com/mig-1g.5gb": "7"})
    assert gpu_problem(GPU(count=2, mig_profile="1g.5gb"), [mig, T4]) is None
    assert gpu_problem(GPU(count=1, mig_profile="3g.20gb"), [mig, T4]) is not None
