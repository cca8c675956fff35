"""A fake NVML layer with the values real GPUs report (nvidia-smi -q on A100 80GB / H100 nodes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deep_platform.gpu.nvml import (
    ERROR_GPU_IS_LOST,
    ERROR_LIBRARY_NOT_FOUND,
    ERROR_NOT_FOUND,
    ERROR_NOT_SUPPORTED,
    NvmlError,
)

MIB = 1024 * 1024


@dataclass
class FakeGpu:
    name: str
    uuid: str
    total_mib: int
    used_mib: int = 0
    util: int | None = 0
    temp: int = 35
    mig: bool = False
    mig_devices: list[FakeGpu] = field(default_factory=list)
    procs: list[tuple[int, int | None]] = field(default_factory=list)
    lost: bool = False


def a100(index: int = 0, **kw: Any) -> FakeGpu:
    # nvidia-smi reports 81920 MiB total on an A100-SXM4-80GB
    return FakeGpu("NVIDIA A100-SXM4-80GB", f"GPU-a100-{index:04d}-8c1e-7f2b-4a3d5e6f7a8b", 81920, **kw)


def h100(index: int = 0, **kw: Any) -> FakeGpu:
    return FakeGpu("NVIDIA H100 80GB HBM3", f"GPU-h100-{index:04d}-1d2e-3f4a-5b6c7d8e9f0a", 81559, **kw)


def mig_a100(index: int = 0) -> FakeGpu:
    """An A100 split into 3g.40gb + 2x 2g.20gb; utilisation is not supported in MIG mode."""
    slices = [
        FakeGpu("NVIDIA A100-SXM4-80GB MIG 3g.40gb", f"MIG-{index}-3g-0001", 40192, used_mib=12),
        FakeGpu("NVIDIA A100-SXM4-80GB MIG 2g.20gb", f"MIG-{index}-2g-0002", 19968, used_mib=11,
                procs=[(4242, 9000 * MIB)]),
        FakeGpu("NVIDIA A100-SXM4-80GB MIG 2g.20gb", f"MIG-{index}-2g-0003", 19968, used_mib=11),
    ]
    return FakeGpu("NVIDIA A100-SXM4-80GB", f"GPU-mig0-{index:04d}-aaaa-bbbb-ccccddddeeee", 81920,
                   used_mib=34, util=None, mig=True, mig_devices=slices)


class FakeNvml:
    """Same methods and errors as deep_platform.gpu.nvml.RealNvml."""

    def __init__(self, gpus: list[FakeGpu], init_error: int | None = None, driver: str = "550.54.15"):
        self.gpus = gpus
        self.init_error = init_error
        self.driver = driver
        self.init_calls = 0
        self.shutdowns = 0

    def _check(self, gpu: FakeGpu) -> FakeGpu:
        if gpu.lost:
            raise NvmlError(ERROR_GPU_IS_LOST, "GPU is lost")
        return gpu

    def init(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            message = "NVML Shared Library Not Found" if self.init_error == ERROR_LIBRARY_NOT_FOUND \
                else "Driver Not Loaded"
            raise NvmlError(self.init_error, message)

    def shutdown(self) -> None:
        self.shutdowns += 1

    def driver_version(self) -> str:
        return self.driver

    def device_count(self) -> int:
        return len(self.gpus)

    def device(self, index: int) -> FakeGpu:
        if index >= len(self.gpus):
            raise NvmlError(ERROR_NOT_FOUND, "Not Found")
        return self._check(self.gpus[index])

    def name(self, handle: FakeGpu) -> str:
        return self._check(handle).name

    def uuid(self, handle: FakeGpu) -> str:
        return self._check(handle).uuid

    def memory(self, handle: FakeGpu) -> tuple[int, int]:
        gpu = self._check(handle)
        return gpu.total_mib * MIB, gpu.used_mib * MIB

    def utilization(self, handle: FakeGpu) -> int:
        gpu = self._check(handle)
        if gpu.util is None:
            raise NvmlError(ERROR_NOT_SUPPORTED, "Not Supported")
        return gpu.util

    def temperature(self, handle: FakeGpu) -> int:
        return self._check(handle).temp

    def mig_enabled(self, handle: FakeGpu) -> bool:
        return self._check(handle).mig

    def mig_devices(self, handle: FakeGpu) -> list[FakeGpu]:
        return list(self._check(handle).mig_devices)

    def processes(self, handle: FakeGpu) -> list[tuple[int, int | None]]:
        return list(self._check(handle).procs)
