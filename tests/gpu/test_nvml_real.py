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
    text = generate_latest(registry_for(agent)).decode()
    assert "deep_gpu_memory_total_bytes{" in text
