"""The operator, running in-process (kopf in its own thread and loop) against the emulator."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from kubernetes.client import Configuration

from deep_platform import kube as k
from deep_platform.config import OperatorConfig
from deep_platform.operator import run

T = TypeVar("T")
ACTIVATOR_URL = "http://activator.deep-platform.test"


def wait_until(
    probe: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll until probe returns something truthy; fail with what was awaited."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}; last: {last!r}")


async def eventually(
    probe: Callable[[], T | None], what: str = "", timeout: float = 30.0, interval: float = 0.1,
    diagnose: Callable[[], Any] | None = None,
) -> T:
    """`wait_until` for async tests: the probe runs in a thread, the event loop keeps serving.
    On timeout the error shows `diagnose()` where given, else the probe's last answer."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(probe)
        if last:
            return last
        await asyncio.sleep(interval)
    seen = diagnose() if diagnose is not None else last
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe} (last: {seen!r})")


@dataclass
class RunningOperator:
    """Handle on the running operator: its API client and settings."""

    kube: k.Kube
    config: OperatorConfig

    def get(self, kind: k.Kind, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.kube.get(kind, name, namespace)

    def wait_for(
        self,
        kind: k.Kind,
        name: str,
        namespace: str | None = None,
        until: Callable[[dict[str, Any]], bool] = lambda _obj: True,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            obj = self.kube.get(kind, name, namespace)
            return obj if obj is not None and until(obj) else None

        return wait_until(probe, timeout, what=f"{kind.kind} {namespace}/{name}")


def kube_for(url: str, component: str = "test") -> k.Kube:
    """A client of the emulator. Its User-Agent (deep-platform-<component>) attributes its calls
    in the request log: the chart's RBAC test checks those of "operator" and "activator", so a
    test's own reads and writes go as "test" and a component under test gets its own name."""
    configuration = Configuration(host=url)
    return k.Kube(configuration, component=component)


@pytest.fixture
def operator_config() -> OperatorConfig:
    return OperatorConfig(
        platform_namespace="deep-platform",
        namespaces=[],
        activator_url=ACTIVATOR_URL,
        metrics_port=0,
        health_port=0,
        workers=8,
    )


@pytest.fixture
def operator(apiserver: Any, operator_config: OperatorConfig) -> Iterator[RunningOperator]:
    """kopf runs the real handlers in a thread of its own until the test ends."""
    api = kube_for(apiserver.url, component="operator")
    client = kube_for(apiserver.url)  # the test's own calls are not the operator's
    stop, ready = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(run(api, operator_config, stop_flag=stop, ready_flag=ready))
        except BaseException as exc:  # reported by the fixture, not lost in the thread
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=main, name="operator", daemon=True)
    thread.start()
    assert ready.wait(15), "the operator did not start within 15 s"
    assert not failure, f"the operator failed to start: {failure[0]!r}"
    yield RunningOperator(kube=client, config=operator_config)
    stop.set()
    thread.join(15)
    assert not thread.is_alive(), "the operator did not stop within 15 s"
    api.close()
    client.close()
