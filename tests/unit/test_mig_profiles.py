"""MIG profiles (issue #15, point 2): named as nvidia-smi names them, asked for as the resource
NVIDIA's device plugin advertises (`1g.10gb+me` -> `nvidia.com/mig-1g.10gb.me`), and refused,
naming the field, when no device plugin can advertise them."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from deep_platform.api import TrainingJob
from deep_platform.api.common import GPU
from deep_platform.api.crdgen import crd
from deep_platform.builders.pod import resource_requirements
from deep_platform.gpu.agent import GpuAgent
from deep_platform.gpu.inventory import as_node_dicts
from deep_platform.gpu.mig import MIG_PROFILE_PATTERN, mig_profile_problem, mig_resource_name
from deep_platform.offline import validate
from deep_platform.scheduling import gpu_problem
from tests.unit.gpu_fakes import FakeGpu, FakeNvml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: profile -> the resource k8s-device-plugin's mixed strategy registers for it
#: (`strings.ReplaceAll("mig-"+profile, "+", ".")` in its rm.go)
ADVERTISED = {
    "1g.5gb": "nvidia.com/mig-1g.5gb",  # A100 40GB
    "1g.10gb": "nvidia.com/mig-1g.10gb",  # A100 80GB, H100
    "1g.10gb+me": "nvidia.com/mig-1g.10gb.me",
    "1g.20gb": "nvidia.com/mig-1g.20gb",
    "2g.20gb": "nvidia.com/mig-2g.20gb",
    "3g.40gb": "nvidia.com/mig-3g.40gb",
    "4g.40gb": "nvidia.com/mig-4g.40gb",
    "7g.80gb": "nvidia.com/mig-7g.80gb",
    "1g.18gb+me": "nvidia.com/mig-1g.18gb.me",  # H200
    "7g.141gb": "nvidia.com/mig-7g.141gb",
    "1g.23gb+me.all": "nvidia.com/mig-1g.23gb.me.all",  # Blackwell attributes
    "1g.23gb-me": "nvidia.com/mig-1g.23gb-me",
    "2g.45gb+gfx": "nvidia.com/mig-2g.45gb.gfx",
}
#: what no device plugin advertises, and what the message must suggest instead
REFUSED = {
    "1c.2g.20gb": "'2g.20gb'",  # a compute instance of a 2g GPU instance
    "2c.4g.40gb+me": "'4g.40gb+me'",
    "1g.10gb.me": "'1g.10gb+me'",  # the resource's spelling
    "mig-3g.40gb": "'3g.40gb'",
    "nvidia.com/mig-1g.10gb": "'1g.10gb'",
    "big": "1g.10gb+me",
    "5g.40gb": "3g.40gb",  # NVML has no 5-slice profile
    "1g.10GB": "1g.10gb",
    "1g.10gb+": "1g.10gb",
    "1g.10gb+me+gfx": "1g.10gb",
    "0g.10gb": "1g.10gb",
    "1g.0gb": "1g.10gb",
    " 1g.10gb": "1g.10gb",
}


@pytest.mark.parametrize(("profile", "resource"), ADVERTISED.items())
def test_profiles_map_to_the_device_plugins_resource_names(profile: str, resource: str) -> None:
    assert mig_resource_name(profile) == resource
    assert mig_profile_problem(profile) is None
    assert GPU(mig_profile=profile).mig_profile == profile
    # a resource name the API server accepts: `nvidia.com/` and a DNS subdomain, no `+`
    assert re.fullmatch(r"nvidia\.com/[a-z0-9]([-a-z0-9.]*[a-z0-9])?", resource)


@pytest.mark.parametrize(("profile", "hint"), REFUSED.items())
def test_profiles_no_device_plugin_advertises_are_refused(profile: str, hint: str) -> None:
    assert mig_resource_name(profile) is None
    problem = mig_profile_problem(profile)
    assert problem is not None and hint in problem
    with pytest.raises(ValidationError) as refused:
        GPU(mig_profile=profile)
    assert refused.value.errors()[0]["loc"] == ("mig_profile",)
    assert hint in str(refused.value)
    # the CRD's pattern refuses the same
    assert re.search(MIG_PROFILE_PATTERN, profile) is None


def test_the_crd_pattern_is_the_models() -> None:
    schema = crd(TrainingJob)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    gpu = schema["properties"]["spec"]["properties"]["resources"]["properties"]["gpu"]
    assert gpu["properties"]["migProfile"]["pattern"] == MIG_PROFILE_PATTERN


def _trainingjob(profile: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / "trainingjob.yaml").read_text(encoding="utf-8"))
    body["spec"]["resources"]["gpu"] = {"count": 1, "migProfile": profile}
    return body


def test_validate_names_the_field(tmp_path: Path) -> None:
    manifest = tmp_path / "tj.yaml"
    manifest.write_text(yaml.safe_dump(_trainingjob("1c.2g.20gb")))
    lines = validate([manifest])
    assert any("spec.resources.gpu.migProfile" in line and "'2g.20gb'" in line for line in lines), lines
    manifest.write_text(yaml.safe_dump(_trainingjob("1g.10gb+me")))
    assert validate([manifest]) == []


def test_the_pod_asks_for_the_advertised_resource() -> None:
    job = TrainingJob.model_validate({**_trainingjob("1g.10gb+me"), "status": {}})
    assert job.spec.resources is not None
    limits = resource_requirements(job.spec.resources)["limits"]
    assert limits["nvidia.com/mig-1g.10gb.me"] == "1"
    assert not any("+" in key for key in limits)


def _node(**allocatable: str) -> dict[str, Any]:
    labels = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "0",
              "nvidia.com/gpu.memory": "81559"}
    return {"metadata": {"name": "mig-node", "labels": labels}, "status": {"allocatable": allocatable}}


def test_scheduling_reads_the_advertised_resource() -> None:
    node = _node(**{"nvidia.com/mig-1g.10gb.me": "1", "nvidia.com/mig-1g.10gb": "6"})
    assert gpu_problem(GPU(count=1, mig_profile="1g.10gb+me"), [node]) is None
    assert gpu_problem(GPU(count=2, mig_profile="1g.10gb+me"), [node]) is not None
    assert gpu_problem(GPU(count=6, mig_profile="1g.10gb"), [node]) is None
    # a node whose resource is spelled with the `+` no plugin uses offers nothing
    wrong = _node(**{"nvidia.com/mig-1g.10gb+me": "7"})
    assert gpu_problem(GPU(count=1, mig_profile="1g.10gb+me"), [wrong]) is not None


def test_inventoried_mig_instances_count_under_the_advertised_resource() -> None:
    mib = 1024 * 1024
    slices = [
        FakeGpu("NVIDIA H100 80GB HBM3 MIG 1g.10gb+me", "MIG-me-0001", 9856, used_mib=0),
        FakeGpu("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "MIG-1g-0002", 9856, used_mib=0),
        # a compute instance: its GPU instance is not advertised as a MIG resource
        FakeGpu("NVIDIA H100 80GB HBM3 MIG 1c.2g.20gb", "MIG-1c-0003", 19968, used_mib=0,
                procs=[(7, 10 * mib)]),
    ]
    gpu = FakeGpu("NVIDIA H100 80GB HBM3", "GPU-h100-mig", 81559, util=None, mig=True, mig_devices=slices)
    clock = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    inventory = GpuAgent(FakeNvml([gpu]), "mig-node", clock=lambda: clock).step()
    assert [m.profile for m in inventory.gpus[0].mig_instances] == ["1g.10gb+me", "1g.10gb", "1c.2g.20gb"]
    nodes = as_node_dicts({"mig-node": inventory}, [{"metadata": {"name": "mig-node", "labels": {}}}])
    assert nodes[0]["status"]["allocatable"] == {
        "nvidia.com/mig-1g.10gb.me": "1", "nvidia.com/mig-1g.10gb": "1",
    }
    inventories = {"mig-node": inventory}
    known = [{"metadata": {"name": "mig-node", "labels": {}}}]
    assert gpu_problem(GPU(count=1, mig_profile="1g.10gb+me"), known, inventories) is None
    assert gpu_problem(GPU(count=1, mig_profile="2g.20gb"), known, inventories) is not None
