"""The only module that calls NVML (nvidia-ml-py). Thin on purpose: no logic, no state.

Every call either returns plain Python values or raises `NvmlError` with NVML's error code, so
the agent can be tested against a fake layer with the same methods (`NvmlLayer`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, TypeVar

# NVML's own error codes (nvml.h); the fake layer in tests raises the same ones
ERROR_NOT_SUPPORTED = 3
ERROR_NO_PERMISSION = 4
ERROR_NOT_FOUND = 6
ERROR_DRIVER_NOT_LOADED = 9
ERROR_LIBRARY_NOT_FOUND = 12
ERROR_FUNCTION_NOT_FOUND = 13
ERROR_GPU_IS_LOST = 15
ERROR_ARGUMENT_VERSION_MISMATCH = 25
ERROR_UNKNOWN = 999

#: init failures that mean "this node has no usable NVIDIA driver": say so once and idle
NO_DRIVER_ERRORS = frozenset({ERROR_DRIVER_NOT_LOADED, ERROR_LIBRARY_NOT_FOUND})
#: answers of nvmlDeviceGetMemoryInfo_v2 that mean "not on this driver or device": read v1 instead
#: (the symbol is missing before driver R510; a driver may not know the struct's version)
NO_MEMORY_V2_ERRORS = frozenset(
    {ERROR_FUNCTION_NOT_FOUND, ERROR_ARGUMENT_VERSION_MISMATCH, ERROR_NOT_SUPPORTED}
)


class Memory(NamedTuple):
    """A GPU's (or MIG device's) memory in bytes, as nvidia-smi reports it."""

    total: int
    #: what allocations use, without the driver's reserved memory (NVML's v2 memory info);
    #: from v1, on drivers without v2, it includes the reserved memory
    used: int
    #: what the driver keeps for itself (firmware, ECC, page tables); None where only v1 answers
    reserved: int | None


class NvmlError(Exception):
    """An NVML call failed; `code` is NVML's return code (`ERROR_GPU_IS_LOST`...)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NvmlLayer(Protocol):
    """What the agent needs from NVML. Handles are opaque; sizes in bytes."""

    def init(self) -> None: ...
    def shutdown(self) -> None: ...
    def driver_version(self) -> str: ...
    def device_count(self) -> int: ...
    def device(self, index: int) -> Any: ...
    def name(self, handle: Any) -> str: ...
    def uuid(self, handle: Any) -> str: ...
    def memory(self, handle: Any) -> Memory: ...
    def utilization(self, handle: Any) -> int: ...  # percent of time a kernel ran
    def temperature(self, handle: Any) -> int: ...  # degrees Celsius
    def mig_enabled(self, handle: Any) -> bool: ...
    def mig_devices(self, handle: Any) -> list[Any]: ...
    def processes(self, handle: Any) -> list[tuple[int, int | None]]: ...  # pid, used memory


F = TypeVar("F", bound=Callable[..., Any])


def _nvml_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import pynvml

        try:
            return func(*args, **kwargs)
        except pynvml.NVMLError as exc:
            raise NvmlError(int(getattr(exc, "value", ERROR_UNKNOWN)), str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RealNvml:
    """NvmlLayer over the NVIDIA driver's libnvidia-ml.so, through nvidia-ml-py."""

    @_nvml_errors
    def init(self) -> None:
        import pynvml

        pynvml.nvmlInit()

    @_nvml_errors
    def shutdown(self) -> None:
        import pynvml

        pynvml.nvmlShutdown()

    @_nvml_errors
    def driver_version(self) -> str:
        import pynvml

        return _text(pynvml.nvmlSystemGetDriverVersion())

    @_nvml_errors
    def device_count(self) -> int:
        import pynvml

        return int(pynvml.nvmlDeviceGetCount())

    @_nvml_errors
    def device(self, index: int) -> Any:
        import pynvml

        return pynvml.nvmlDeviceGetHandleByIndex(index)

    @_nvml_errors
    def name(self, handle: Any) -> str:
        import pynvml

        return _text(pynvml.nvmlDeviceGetName(handle))

    @_nvml_errors
    def uuid(self, handle: Any) -> str:
        import pynvml

        return _text(pynvml.nvmlDeviceGetUUID(handle))

    @_nvml_errors
    def memory(self, handle: Any) -> Memory:
        """nvidia-smi's numbers: v2 (nvmlDeviceGetMemoryInfo_v2), whose `used` leaves out the
        driver's reserved memory (v1 counts it: 615 MiB "used" on an idle H200, driver 580),
        and v1 where the driver or device has no v2."""
        import pynvml

        version = getattr(pynvml, "nvmlMemory_v2", None)  # nvidia-ml-py before 11.510 lacks it
        if version is not None:
            try:
                info = pynvml.nvmlDeviceGetMemoryInfo(handle, version=version)
            except pynvml.NVMLError as exc:
                if getattr(exc, "value", None) not in NO_MEMORY_V2_ERRORS:
                    raise
            else:
                return Memory(int(info.total), int(info.used), int(info.reserved))
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return Memory(int(info.total), int(info.used), None)

    @_nvml_errors
    def utilization(self, handle: Any) -> int:
        import pynvml

        return int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)

    @_nvml_errors
    def temperature(self, handle: Any) -> int:
        import pynvml

        return int(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))

    @_nvml_errors
    def mig_enabled(self, handle: Any) -> bool:
        import pynvml

        current, _pending = pynvml.nvmlDeviceGetMigMode(handle)
        return bool(current == pynvml.NVML_DEVICE_MIG_ENABLE)

    @_nvml_errors
    def mig_devices(self, handle: Any) -> list[Any]:
        import pynvml

        found = []
        for index in range(int(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle))):
            try:
                found.append(pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, index))
            except pynvml.NVMLError_NotFound:  # slots without an instance
                continue
        return found

    @_nvml_errors
    def processes(self, handle: Any) -> list[tuple[int, int | None]]:
        import pynvml

        answer = []
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            used = proc.usedGpuMemory
            # NVML reports "not available" (e.g. under MIG without privileges) as None
            answer.append((int(proc.pid), int(used) if used is not None else None))
        return answer
