"""The real NVML path on a machine with an NVIDIA GPU: `pytest -m gpu tests/gpu`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest

from deep_platform.gpu.agent import GpuAgent, registry_for
from deep_platform.gpu.nvml import NO_DRIVER_ERRORS, NvmlError, RealNvml

pytestmark = pytest.mark.gpu


@pytest.fixture
def nvml() -> Iterator[RealNvml]:
    layer = RealNvml()
    try:
        layer.init()
    except NvmlError as exc:
        if exc.code in NO_DRIVER_ERRORS:
            pytest.skip(f"no NVIDIA driver on this machine ({exc.message})")
        raise
    yield layer
    layer.shutdown()


def test_real_gpus_are_read(nvml: RealNvml) -> None:
    agent = GpuAgent(nvml, os.uname().nodename)
    agent.initialised = True  # the fixture initialised NVML
    inventory = agent.step()
    print(inventory.summary())
    assert inventory.error is None
    assert inventory.driver_version
    assert inventory.gpus, "NVML initialised but reported no GPU"
    for gpu in inventory.gpus:
        assert not gpu.lost, gpu.error
        assert gpu.product and gpu.product.startswith("NVIDIA")
        assert gpu.memory_total_mib and gpu.memory_total_mib > 1024
        assert 0 <= (gpu.memory_used_mib or 0) <= gpu.memory_total_mib
        if not gpu.mig_enabled:
            assert gpu.utilization_percent is not None and 0 <= gpu.utilization_percent <= 100
        assert gpu.temperature_celsius is None or 0 < gpu.temperature_celsius < 120
        if int(inventory.driver_version.split(".")[0]) >= 510:  # NVML v2 memory info: used as nvidia-smi
            assert gpu.memory_reserved_mib is not None and gpu.memory_reserved_mib >= 0
            assert (gpu.memory_used_mib or 0) + gpu.memory_reserved_mib <= gpu.memory_total_mib
    text = generate_latest(registry_for(agent)).decode()
    assert "deep_gpu_memory_total_bytes{" in text
    if int(inventory.driver_version.split(".")[0]) >= 510:
        assert "deep_gpu_memory_reserved_bytes{" in text


def test_memory_matches_nvidia_smi(nvml: RealNvml) -> None:
    """Used and reserved memory as nvidia-smi reports them (issue #15: v1 counted the reserved
    memory as used, 615 MiB on an idle H200)."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        pytest.skip("no nvidia-smi on this machine")
    query = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,memory.total,memory.reserved,memory.used",
         "--format=csv,noheader,nounits"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if query.returncode != 0:
        pytest.skip(f"nvidia-smi cannot query memory.reserved: {query.stdout.strip()} {query.stderr.strip()}")
    agent = GpuAgent(nvml, os.uname().nodename)
    agent.initialised = True
    gpus = {gpu.index: gpu for gpu in agent.step().gpus}
    for line in query.stdout.strip().splitlines():
        index, total, reserved, used = (int(field.strip()) for field in line.split(","))
        gpu = gpus[index]
        print(f"GPU {index}: nvidia-smi total {total} reserved {reserved} used {used} MiB; agent "
              f"{gpu.memory_total_mib} {gpu.memory_reserved_mib} {gpu.memory_used_mib} MiB")
        assert gpu.memory_total_mib is not None and abs(gpu.memory_total_mib - total) <= 1
        assert gpu.memory_reserved_mib is not None and abs(gpu.memory_reserved_mib - reserved) <= 1
        # used moves when other processes compute; an idle GPU reads the same
        assert gpu.memory_used_mib is not None and abs(gpu.memory_used_mib - used) <= 256
