"""GPU memory as nvidia-smi shows it (issue #15, point 3): the real NVML layer (`RealNvml` over
the installed nvidia-ml-py) reads NVML's v2 memory info, whose `used` leaves out the driver's
reserved memory, reports the reserved memory apart, and falls back to v1 where v2 is missing."""

from __future__ import annotations

import datetime as dt
import inspect

import pynvml
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from deep_platform.gpu.agent import GpuAgent, registry_for
from deep_platform.gpu.nvml import ERROR_GPU_IS_LOST, Memory, NvmlError, RealNvml
from tests.unit.gpu_fakes import MIB, FakeGpu, FakeLibNvml, FakeNvml, a100, h200

CLOCK = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def use(monkeypatch: pytest.MonkeyPatch, fake: FakeLibNvml) -> FakeLibNvml:
    """The fake driver library loaded under the real pynvml (its function-pointer cache emptied)."""
    monkeypatch.setattr(pynvml, "nvmlLib", fake)
    monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
    return fake


@pytest.fixture
def lib(monkeypatch: pytest.MonkeyPatch) -> FakeLibNvml:
    """A driver with v2."""
    return use(monkeypatch, FakeLibNvml())


def test_the_installed_nvidia_ml_py_has_the_v2_api_the_layer_uses() -> None:
    assert "version" in inspect.signature(pynvml.nvmlDeviceGetMemoryInfo).parameters
    fields = [name for name, _ in pynvml.c_nvmlMemory_v2_t._fields_]
    assert fields == ["version", "total", "reserved", "free", "used"]
    assert pynvml.nvmlMemory_v2 == 0x02000028


def test_idle_h200_shows_no_used_memory_and_its_reserved_memory_apart(lib: FakeLibNvml) -> None:
    assert RealNvml().memory(h200()) == Memory(143771 * MIB, 0, 615 * MIB)
    assert lib.calls == ["nvmlDeviceGetMemoryInfo_v2"]
    busy = h200(used_mib=30000)
    assert RealNvml().memory(busy) == Memory(143771 * MIB, 30000 * MIB, 615 * MIB)


def test_driver_without_v2_falls_back_to_v1(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = use(monkeypatch, FakeLibNvml(v2=False))  # before R510: no nvmlDeviceGetMemoryInfo_v2
    # v1 counts the reserved memory as used, and knows nothing of it apart
    assert RealNvml().memory(h200()) == Memory(143771 * MIB, 615 * MIB, None)
    assert lib.calls == ["nvmlDeviceGetMemoryInfo"]


def test_driver_that_does_not_know_the_structs_version_falls_back_to_v1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lib = use(monkeypatch, FakeLibNvml(v2_version=0x01000028))
    assert RealNvml().memory(h200()) == Memory(143771 * MIB, 615 * MIB, None)
    assert lib.calls == ["nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetMemoryInfo"]


def test_device_without_v2_support_falls_back_to_v1(lib: FakeLibNvml) -> None:
    device = FakeGpu("NVIDIA A100-SXM4-80GB MIG 1g.10gb", "MIG-x", 9728, used_mib=12, reserved_mib=None)
    assert RealNvml().memory(device) == Memory(9728 * MIB, 12 * MIB, None)


def test_a_lost_gpu_is_an_error_not_a_fallback(lib: FakeLibNvml) -> None:
    with pytest.raises(NvmlError) as lost:
        RealNvml().memory(h200(lost=True))
    assert lost.value.code == ERROR_GPU_IS_LOST
    assert lib.calls == ["nvmlDeviceGetMemoryInfo_v2"]


def samples(agent: GpuAgent) -> dict[tuple[str, str | None], float]:
    text = generate_latest(registry_for(agent)).decode()
    return {
        (s.name, s.labels.get("gpu")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_agent_exports_used_as_nvidia_smi_and_reserved_apart() -> None:
    old_driver = a100(1, used_mib=1024, reserved_mib=None)
    agent = GpuAgent(FakeNvml([h200(0), old_driver]), "gpu-node-1", clock=lambda: CLOCK)
    inventory = agent.step()
    first, second = inventory.gpus
    assert (first.memory_total_mib, first.memory_used_mib, first.memory_reserved_mib) == (143771, 0, 615)
    assert (second.memory_used_mib, second.memory_reserved_mib) == (1024, None)
    found = samples(agent)
    assert found[("deep_gpu_memory_used_bytes", "0")] == 0
    assert found[("deep_gpu_memory_reserved_bytes", "0")] == 615 * MIB
    assert found[("deep_gpu_memory_total_bytes", "0")] == 143771 * MIB
    assert found[("deep_gpu_memory_used_bytes", "1")] == 1024 * MIB
    assert ("deep_gpu_memory_reserved_bytes", "1") not in found  # unknown on v1: no sample
