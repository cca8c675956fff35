"""Real processes in place of containers: what the e2e tests and the kubelet stand-ins share.

`PodProcesses` is the container runtime, the pod network and kube-proxy behind `NodeKubelet`
(tests/harness/node_kubelet.py) on the real API server: one real process per Running pod (a
subclass says which, in `start`), stopped on graceful deletion, probed on the pod's own
readinessProbe path, and reached through the real EndpointSlices (`resolve`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from deep_platform import kube as k
from deep_platform.activator.cluster import SERVICE_NAME_LABEL
from tests.harness.node_kubelet import NodeKubelet, PodRun
from tests.harness.ports import free_port

#: a port nothing listens on: a Service without ready pods refuses connections
CLOSED_PORT = free_port()


def answers(url: str) -> bool:
    """Whether `url` answers 200 within half a second (a readiness probe)."""
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def stop_session(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM to the process (what the kubelet sends), SIGKILL after `grace` seconds, then the
    rest of its session (deepaas-run's group hangs on SIGTERM, tests/models/tiny-model/README.md)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def container_env(container: dict[str, Any], base: dict[str, str]) -> dict[str, str]:
    """`base` with the container's plain `value` variables over it: the pod's own env wins."""
    env = dict(base)
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = var["value"]
    return env


def deepaas_run(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A real `deepaas-run` on a loopback port, in its own session, its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            ["deepaas-run", "--listen-ip", "127.0.0.1", "--listen-port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@dataclass
class PodProcess:
    """The container of one pod: a real process on a loopback port."""

    pod: str
    ip: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path | None = None
    ready: bool = False
    probed_at: float = 0.0


@dataclass
class PodProcesses:
    """One real process per Running pod; the pod network and kube-proxy."""

    api: k.Kube
    workdir: Path
    #: how long a process has between SIGTERM and SIGKILL
    grace: float = 5.0
    by_uid: dict[str, PodProcess] = field(default_factory=dict)
    stopped: list[PodProcess] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    rr: Iterator[int] = field(default_factory=itertools.count)
    started: int = 0

    def start(self, pod: dict[str, Any], run: PodRun) -> PodProcess:
        raise NotImplementedError

    # the kubelet's side

    def on_running(self, pod: dict[str, Any], run: PodRun) -> None:
        started = self.start(pod, run)
        with self.lock:
            self.by_uid[pod["metadata"]["uid"]] = started
            self.started += 1

    def on_stopped(self, pod: dict[str, Any]) -> None:
        with self.lock:
            found = self.by_uid.pop(pod["metadata"]["uid"], None)
        if found is not None:
            stop_session(found.process, self.grace)
            self.stopped.append(found)

    def readiness(self, pod: dict[str, Any], _run: PodRun) -> bool:
        """The pod's readinessProbe path, at most every 0.2 s per pod."""
        found = self.by_uid.get(pod["metadata"]["uid"])
        if found is None:
            return False
        if time.monotonic() - found.probed_at >= 0.2:
            found.probed_at = time.monotonic()
            path = pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"]
            found.ready = found.process.poll() is None and answers(f"http://127.0.0.1:{found.port}{path}")
        return found.ready

    @classmethod
    @contextlib.contextmanager
    def attached(cls, kubelet: NodeKubelet, api: k.Kube, prefix: str, grace: float = 5.0) -> Iterator[Self]:
        """Run the kubelet's pods as processes, in a fresh work folder, until the block ends;
        then stop them all."""
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            found = cls(api, Path(tmp), grace)
            kubelet.on_running, kubelet.on_stopped, kubelet.readiness = (
                found.on_running, found.on_stopped, found.readiness)
            try:
                yield found
            finally:
                kubelet.readiness = None
                found.close()

    # kube-proxy's side

    def resolve(self, namespace: str, name: str) -> str:
        """Base URL of a ready endpoint of the Service, round robin, from the real EndpointSlices:
        the pod IP the kubelet stand-in wrote, mapped to the loopback port of that pod's process."""
        slices = self.api.list(k.ENDPOINTSLICE, namespace, label_selector=f"{SERVICE_NAME_LABEL}={name}")
        ports: list[int] = []
        with self.lock:
            by_ip = {p.ip: p.port for p in self.by_uid.values()}
        for item in slices:
            self.check_slice(item)
            for endpoint in item.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                ports.extend(by_ip[ip] for ip in endpoint["addresses"] if ip in by_ip)
        if not ports:
            return f"http://127.0.0.1:{CLOSED_PORT}"  # connection refused, as a Service without pods
        return f"http://127.0.0.1:{ports[next(self.rr) % len(ports)]}"

    def check_slice(self, item: dict[str, Any]) -> None:
        """A subclass's checks of an EndpointSlice the controller wrote."""

    def running(self) -> list[PodProcess]:
        with self.lock:
            return [p for p in self.by_uid.values() if p.process.poll() is None]

    def close(self) -> None:
        with self.lock:
            running, self.by_uid = list(self.by_uid.values()), {}
        for found in running:
            stop_session(found.process, self.grace)
