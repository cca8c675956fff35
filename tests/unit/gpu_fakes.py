"""A fake NVML layer with the values real GPUs report (nvidia-smi -q on A100 80GB / H100 nodes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deep_platform.gpu.nvml import (
    ERROR_ARGUMENT_VERSION_MISMATCH,
    ERROR_GPU_IS_LOST,
    ERROR_LIBRARY_NOT_FOUND,
    ERROR_NOT_FOUND,
    ERROR_NOT_SUPPORTED,
    Memory,
    NvmlError,
)

MIB = 1024 * 1024


@dataclass
class FakeGpu:
    name: str
    uuid: str
    total_mib: int
    #: used as nvidia-smi shows it (NVML v2): without the driver's reserved memory
    used_mib: int = 0
    #: the driver's reserved memory; None: a driver that only answers NVML v1 for this device
    reserved_mib: int | None = 0
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


def h200(index: int = 0, **kw: Any) -> FakeGpu:
    """Idle, driver 580: nvidia-smi shows 143771 MiB total, 0 MiB used, 615 MiB reserved, which
    NVML's v1 memory call reports as used."""
    kw.setdefault("reserved_mib", 615)
    return FakeGpu("NVIDIA H200", f"GPU-h200-{index:04d}-5e6f-7a8b-9c0d1e2f3a4b", 143771, **kw)


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

    def memory(self, handle: FakeGpu) -> Memory:
        gpu = self._check(handle)
        if gpu.reserved_mib is None:  # v1 only: the reserved memory counts as used
            return Memory(gpu.total_mib * MIB, gpu.used_mib * MIB, None)
        return Memory(gpu.total_mib * MIB, gpu.used_mib * MIB, gpu.reserved_mib * MIB)

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


class FakeLibNvml:
    """libnvidia-ml.so's memory calls, for the real nvidia-ml-py to call (`pynvml.nvmlLib`).

    pynvml looks each C function up by name and calls it with the device handle and a pointer
    (`byref`) to the struct to fill, then turns a non-zero return code into `NVMLError`. This
    fake answers the same way, so the real pynvml code runs unchanged above it:

    - `nvmlDeviceGetMemoryInfo` fills `c_nvmlMemory_t` (total, free, used), `used` counting the
      driver's reserved memory;
    - `nvmlDeviceGetMemoryInfo_v2` checks the struct's `version` (`nvmlMemory_v2`) and fills
      `c_nvmlMemory_v2_t` (version, total, reserved, free, used), `used` without the reserved
      memory, `free = total - reserved - used`. `v2=False` is a driver before R510 without the
      symbol (pynvml raises NVML_ERROR_FUNCTION_NOT_FOUND); a GPU whose `reserved_mib` is None
      answers NVML_ERROR_NOT_SUPPORTED to v2.
    """

    SUCCESS = 0

    def __init__(self, v2: bool = True, v2_version: int | None = None) -> None:
        """`v2_version`: the struct version the driver knows (default pynvml's `nvmlMemory_v2`)."""
        self.calls: list[str] = []
        self.v2_version = v2_version
        if v2:
            self.nvmlDeviceGetMemoryInfo_v2 = self._memory_v2

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu, memory: Any) -> int:
        self.calls.append("nvmlDeviceGetMemoryInfo")
        if handle.lost:
            return ERROR_GPU_IS_LOST
        struct = memory._obj  # what ctypes.byref points to
        used = handle.used_mib + (handle.reserved_mib or 0)
        struct.total, struct.used, struct.free = (
            handle.total_mib * MIB, used * MIB, (handle.total_mib - used) * MIB
        )
        return self.SUCCESS

    def _memory_v2(self, handle: FakeGpu, memory: Any) -> int:
        import pynvml

        self.calls.append("nvmlDeviceGetMemoryInfo_v2")
        struct = memory._obj
        if struct.version != (self.v2_version or pynvml.nvmlMemory_v2):
            return ERROR_ARGUMENT_VERSION_MISMATCH
        if handle.lost:
            return ERROR_GPU_IS_LOST
        if handle.reserved_mib is None:
            return ERROR_NOT_SUPPORTED
        struct.total, struct.reserved, struct.used = (
            handle.total_mib * MIB, handle.reserved_mib * MIB, handle.used_mib * MIB
        )
        struct.free = (handle.total_mib - handle.reserved_mib - handle.used_mib) * MIB
        return self.SUCCESS
