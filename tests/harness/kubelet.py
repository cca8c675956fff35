"""A stand-in for the kubelet and the endpoint controller, for InferenceService tests.

It watches one Deployment in the emulator (polling) and keeps as many real `deepaas-run`
processes running as spec.replicas asks (an absent replicas counts as 1, as the API server
defaults it), each on its own loopback port, with the container's env from the pod template.
When a process answers on /v2/models/ it publishes it as a ready endpoint in an EndpointSlice,
a Pod (Running, ready) and Deployment status (replicas, readyReplicas, updatedReplicas). A process
that exits by itself is restarted and reported as CrashLoopBackOff with its last log lines, as
the kubelet does. `resolve()` plays the Service: the URL of one ready process, round robin.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.apiserver import ApiServer
from tests.harness.pod_processes import answers, container_env, deepaas_run, stop_session
from tests.harness.ports import free_port

LABEL_KIND = "deep-hybrid-datacloud.eu/kind"
LABEL_NAME = "deep-hybrid-datacloud.eu/name"



@dataclass
class Replica:
    index: int
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    ready: bool = False
    started: float = field(default_factory=time.monotonic)
    ready_at: float | None = None


class Kubelet:
    """Runs the replicas of Deployment namespace/name as local deepaas-run processes."""

    def __init__(
        self,
        api: ApiServer,
        namespace: str,
        name: str,
        extra_env: dict[str, str] | None = None,
        interval: float = 0.02,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.extra_env = {"DEEPAAS_V2_MODEL": "tinymodel", **(extra_env or {})}
        self.interval = interval
        self.replicas: list[Replica] = []
        self.restarts = 0
        self.starts = 0
        self.last_crash = ""
        self.max_running = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._rr = itertools.count()
        self._tmp = tempfile.TemporaryDirectory(prefix="kubelet-")
        self._thread = threading.Thread(target=self._loop, name=f"kubelet {name}", daemon=True)
        self._published: Any = None

    # --- life cycle ---

    def start(self) -> Kubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for replica in list(self.replicas):
            self._kill(replica)
        self.replicas.clear()
        self._tmp.cleanup()

    def __enter__(self) -> Kubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the Service ---

    def resolve(self, namespace: str, name: str) -> str:
        """Base URL of one ready replica; a closed port when none is (connection refused)."""
        with self._lock:
            ready = [r for r in self.replicas if r.ready]
        if not ready:
            return f"http://127.0.0.1:{self._closed_port}"
        return f"http://127.0.0.1:{ready[next(self._rr) % len(ready)].port}"

    _closed_port = free_port()

    @property
    def ready_count(self) -> int:
        return sum(1 for r in self.replicas if r.ready)

    @property
    def running(self) -> int:
        return len(self.replicas)

    # --- the loop ---

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception as exc:  # keep going: the emulator may be shutting down
                self.last_error = repr(exc)
            self._stop.wait(self.interval)

    def _sync(self) -> None:
        deployment = self.api.get("deployments.apps", self.namespace, self.name)
        if deployment is None:
            wanted, template = 0, {}
        else:
            wanted = (deployment.get("spec") or {}).get("replicas", 1)
            template = deployment["spec"].get("template") or {}
        changed = False
        while len(self.replicas) > wanted:
            replica = self.replicas.pop()
            self._kill(replica)
            changed = True
        while len(self.replicas) < wanted:
            self.replicas.append(self._spawn(len(self.replicas), template))
            changed = True
        self.max_running = max(self.max_running, len(self.replicas))
        for index, replica in enumerate(self.replicas):
            if replica.process.poll() is not None:  # exited by itself: a crash, restart it
                if time.monotonic() - replica.started < 0.5:
                    continue  # back-off before a restart, as the kubelet's (shorter)
                self.restarts += 1
                self.last_crash = replica.log_path.read_text(errors="replace")[-400:]
                self.replicas[index] = self._spawn(replica.index, template, crashed=replica)
                changed = True
            elif not replica.ready and self._answers(replica.port):
                with self._lock:
                    replica.ready = True
                replica.ready_at = time.monotonic()
                changed = True
        if deployment is not None:
            self._publish(deployment, changed)

    def _spawn(self, index: int, template: dict[str, Any], crashed: Replica | None = None) -> Replica:
        containers = (template.get("spec") or {}).get("containers") or [{}]
        env = container_env(containers[0], {**os.environ, **self.extra_env})
        env.setdefault("TINYMODEL_STATE_DIR", self._tmp.name)
        port = free_port()
        log_path = Path(self._tmp.name) / f"replica-{index}-{port}.log"
        process = deepaas_run(port, env, log_path)
        self.starts += 1
        replica = Replica(index, port, process, log_path)
        replica.crashed_before = crashed is not None  # type: ignore[attr-defined]
        return replica

    def _kill(self, replica: Replica) -> None:
        with self._lock:
            replica.ready = False
        stop_session(replica.process)

    @staticmethod
    def _answers(port: int) -> bool:
        return answers(f"http://127.0.0.1:{port}/v2/models/")

    # --- what the cluster would publish ---

    def _publish(self, deployment: dict[str, Any], changed: bool) -> None:
        ready = sum(1 for r in self.replicas if r.ready)
        crashing = self.restarts > 0 and ready == 0 and bool(self.replicas)
        snapshot = (len(self.replicas), ready, crashing, deployment["metadata"].get("generation"))
        if snapshot == self._published and not changed:
            return
        self._published = snapshot
        labels = (deployment["spec"].get("template") or {}).get("metadata", {}).get("labels") or {}
        endpoints = [
            {
                "addresses": ["127.0.0.1"],
                "conditions": {"ready": r.ready, "serving": r.ready},
                "targetRef": {"kind": "Pod", "name": f"{self.name}-{r.index}", "namespace": self.namespace},
            }
            for r in self.replicas
        ]
        self.api.apply(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{self.name}-slice",
                    "namespace": self.namespace,
                    "labels": {
                        "kubernetes.io/service-name": self.name,
                        "endpointslice.kubernetes.io/managed-by": "kubelet-stand-in",
                    },
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 5000, "protocol": "TCP"}],
                "endpoints": endpoints,
            },
            field_manager="endpointslice-controller",
        )
        # pods: one per replica; gone ones deleted
        existing = {
            p["metadata"]["name"]
            for p in self.api.list("pods", self.namespace, label_selector=f"{LABEL_NAME}={self.name}")
        }
        wanted = set()
        for replica in self.replicas:
            pod_name = f"{self.name}-{replica.index}"
            wanted.add(pod_name)
            if crashing:
                state = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": "back-off restarting failed container deepaas",
                    }
                }
                last = {"terminated": {"exitCode": 1, "reason": "Error", "message": self.last_crash}}
            else:
                state = (
                    {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
                    if replica.ready
                    else {"waiting": {"reason": "ContainerCreating"}}
                )
                last = {}
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": self.namespace, "labels": labels},
                "spec": {"containers": [{"name": "deepaas", "image": "stand-in"}]},
            }
            if pod_name not in existing:
                self.api.create(pod)
            self.api.patch_status(
                "pods",
                self.namespace,
                pod_name,
                {
                    "phase": "Running" if replica.ready or crashing else "Pending",
                    "conditions": [{"type": "Ready", "status": "True" if replica.ready else "False"}],
                    "containerStatuses": [
                        {
                            "name": "deepaas",
                            "ready": replica.ready,
                            "restartCount": self.restarts,
                            "state": state,
                            "lastState": last,
                            "image": "stand-in",
                            "imageID": "",
                            "started": replica.ready,
                        }
                    ],
                },
            )
        for gone in existing - wanted:
            self.api.delete("pods", self.namespace, gone)
        self.api.patch_status(
            "deployments.apps",
            self.namespace,
            self.name,
            {
                "observedGeneration": deployment["metadata"].get("generation"),
                "replicas": len(self.replicas),
                "updatedReplicas": len(self.replicas),
                "readyReplicas": ready,
                "availableReplicas": ready,
            },
        )
