"""The inventory the agents publish, as the operator reads and uses it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from deep_platform.api import TrainingJob
from deep_platform.api.common import GPU
from deep_platform.gpu.agent import GpuAgent
from deep_platform.gpu.inventory import (
    NodeInventory,
    read_inventories,
    running_gpu,
    same_product,
    to_configmap,
)
from deep_platform.kube import kind_of
from deep_platform.scheduling import gpu_problem
from tests.harness.operator_fixtures import RunningOperator, kube_for
from tests.unit.gpu_fakes import FakeNvml, a100, h100, mig_a100

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
NODES = [{"metadata": {"name": n, "labels": {}}} for n in ("a100-node", "h100-node", "mig-node", "cpu-node")]


def inventory(node: str, nvml: FakeNvml, when: dt.datetime = NOW) -> NodeInventory:
    return GpuAgent(nvml, node, clock=lambda: when).step()


def cluster() -> dict[str, NodeInventory]:
    return {
        "a100-node": inventory("a100-node", FakeNvml([a100(0), a100(1), a100(2, lost=True)])),
        "h100-node": inventory("h100-node", FakeNvml([h100(0)])),
        "mig-node": inventory("mig-node", FakeNvml([mig_a100(0)])),
    }


def test_requests_that_some_inventoried_node_offers() -> None:
    inv = cluster()
    assert gpu_problem(GPU(count=2, product="NVIDIA-A100-SXM4-80GB"), NODES, inv) is None
    assert gpu_problem(GPU(count=1, min_memory="80Gi"), NODES, inv) is None
    assert gpu_problem(GPU(count=2, mig_profile="2g.20gb"), NODES, inv) is None


def test_request_no_node_offers_lists_what_exists() -> None:
    inv = cluster()
    problem = gpu_problem(GPU(count=1, product="NVIDIA-H200"), NODES, inv)
    assert problem is not None
    assert "no node offers 1 x NVIDIA-H200" in problem
    assert "NVIDIA-H100-80GB-HBM3 (81559 MiB)" in problem and "NVIDIA-A100-SXM4-80GB (81920 MiB)" in problem
    # the lost GPU does not count: two A100s work, three do not
    assert gpu_problem(GPU(count=3, product="NVIDIA-A100-SXM4-80GB"), NODES, inv) is not None
    assert gpu_problem(GPU(count=3, mig_profile="2g.20gb"), NODES, inv) is not None
    assert gpu_problem(GPU(count=1, min_memory="90Gi"), NODES, inv) is not None


def test_inventory_of_a_node_that_left_the_cluster_is_ignored() -> None:
    inv = {"gone-node": inventory("gone-node", FakeNvml([h100(0)]))}
    # the only GPU node is gone: nothing is known, the scheduler decides
    assert gpu_problem(GPU(count=1, product="NVIDIA-H100-80GB-HBM3"), NODES, inv) is None
    assert gpu_problem(GPU(count=1, product="NVIDIA-B200"), NODES, inv) is None


def test_products_compare_as_people_write_them() -> None:
    assert same_product("NVIDIA A100-SXM4-80GB", "NVIDIA-A100-SXM4-80GB")
    assert same_product("nvidia-h100-80gb-hbm3", "NVIDIA H100 80GB HBM3")
    assert not same_product("NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-SXM4-80GB")


def test_read_inventories_from_the_api_skips_stale_and_broken(apiserver: Any) -> None:
    kube = kube_for(apiserver.url)
    fresh = cluster()["h100-node"]
    stale = inventory("old-node", FakeNvml([a100(0)]), NOW - dt.timedelta(hours=1))
    for item in (fresh, stale):
        kube.apply(to_configmap(item, "deep-platform"))
    broken = to_configmap(fresh, "deep-platform")
    broken["metadata"]["name"] = "gpu-inventory-broken"
    broken["data"]["inventory.json"] = "{not json"
    kube.apply(broken)
    found = read_inventories(kube, "deep-platform", now=NOW + dt.timedelta(minutes=1))
    assert list(found) == ["h100-node"]
    assert found["h100-node"].gpus[0].product == "NVIDIA-H100-80GB-HBM3"
    kube.close()


def test_running_gpu_of_a_pod(apiserver: Any, tmp_path: Any) -> None:
    uid = "3f1c2b9e-7a4d-4e2f-9b1a-0c5d6e7f8a9b"
    (tmp_path / "31337").mkdir()
    (tmp_path / "31337" / "cgroup").write_text(f"0::/kubepods/pod{uid}/c0ffee\n")
    gpu = h100(0, util=87)
    gpu.procs = [(31337, 40000 * 1024 * 1024)]
    agent = GpuAgent(FakeNvml([gpu]), "h100-node", proc_root=tmp_path,
                     pods=lambda: {uid: ("alice", "retrain-abcde")})
    kube = kube_for(apiserver.url)
    kube.apply(to_configmap(agent.step(), "deep-platform"))
    found = running_gpu(kube, "deep-platform", "h100-node", "alice", "retrain-abcde")
    assert found is not None and (found.product, found.utilization_percent) == ("NVIDIA-H100-80GB-HBM3", 87)
    assert running_gpu(kube, "deep-platform", "h100-node", "alice", "other-pod") is None
    kube.close()


def test_operator_says_unschedulable_listing_the_inventory(operator: RunningOperator) -> None:
    kube = operator.kube
    for node in NODES:
        kube.create({"apiVersion": "v1", "kind": "Node", **node})
    kube.apply(to_configmap(inventory("a100-node", FakeNvml([a100(0)]), dt.datetime.now(dt.UTC)),
                            "deep-platform"))
    kube.create({
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": "wants-h200", "namespace": "default"},
        "spec": {"image": "deephdc/deep-oc-generic:latest",
                 "resources": {"gpu": {"count": 1, "product": "NVIDIA-H200"}}},
    })

    def unschedulable(obj: dict[str, Any]) -> bool:
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["reason"] == "Unschedulable" for c in conditions)

    obj = operator.wait_for(kind_of(TrainingJob), "wants-h200", "default", until=unschedulable)
    [ready] = [c for c in obj["status"]["conditions"] if c["type"] == "Ready"]
    assert ready["status"] == "False"
    assert "NVIDIA-A100-SXM4-80GB (81920 MiB)" in ready["message"]
    assert "change spec.resources.gpu" in ready["message"]
