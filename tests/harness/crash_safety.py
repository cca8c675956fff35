"""Crash safety on a real API server: the operator in its own process, SIGKILLed at random
moments of a burst of TrainingJobs and InferenceServices and started again, then the invariants.

Shared by tests/e2e/test_crash_safety_e2e.py (small burst, a few kills) and
bench/crash_safety.py (200 + 50, ten kills, against the same burst without kills).

What the scenario does besides creating objects, so that every invariant has something to bite:
some TrainingJobs have `ttlSecondsAfterFinished` (the real TTL controller deletes their finished
Job: no second Job may follow); some objects are deleted during the burst (their children must
go, no orphan); some InferenceServices are scaled to zero as the activator would (Ready with
reason ScaledToZero); some have their spec edited (observedGeneration must follow).
"""

from __future__ import annotations

import collections
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deep_platform import kube as k
from deep_platform.api import InferenceService, TrainingJob
from deep_platform.builders.pod import LABEL_KIND
from tests.harness.ports import free_port

TJ = k.kind_of(TrainingJob)
ISVC = k.kind_of(InferenceService)
IMAGE = "busybox:1.36"
GROUP_VERSION = "deep-hybrid-datacloud.eu/v1alpha1"
CHILD_KINDS = (k.JOB, k.DEPLOYMENT, k.SERVICE, k.CONFIGMAP)



# --- the objects -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What one burst holds; the roles are decided by index, so two runs get the same objects."""

    trainingjobs: int
    services: int
    ttl: int = 20  # ttlSecondsAfterFinished of every 5th TrainingJob
    seed: int = 12

    def tj_names(self) -> list[str]:
        return [f"tj-{i:03d}" for i in range(self.trainingjobs)]

    def isvc_names(self) -> list[str]:
        return [f"svc-{i:03d}" for i in range(self.services)]

    @staticmethod
    def with_ttl(name: str) -> bool:
        return int(name[-3:]) % 5 == 4

    @staticmethod
    def deleted(name: str) -> bool:  # every 10th object is deleted during the burst
        return int(name[-3:]) % 10 == 7

    @staticmethod
    def scaled_to_zero(name: str) -> bool:
        return int(name[-3:]) % 3 == 1

    @staticmethod
    def edited(name: str) -> bool:
        return int(name[-3:]) % 4 == 2


def trainingjob(name: str, namespace: str, ttl: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": IMAGE,
        "command": ["sh", "-c", "echo training"],
        "resources": {"cpu": "10m", "memory": "16Mi"},
        "backoffLimit": 1,
        "activeDeadlineSeconds": 900,
    }
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {"apiVersion": GROUP_VERSION, "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def inferenceservice(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION, "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": IMAGE, "resources": {"cpu": "10m", "memory": "16Mi"},
                 "scaling": {"minReplicas": 0, "maxReplicas": 2, "prewarm": False}},
    }


# --- the operator in its own process -----------------------------------------------------------


class OperatorProcess:
    """`python -m deep_platform run -n NAMESPACE`, killed with SIGKILL and started again."""

    def __init__(self, kubeconfig: Path | None, namespace: str, platform_namespace: str, log: Path) -> None:
        self.namespace, self.platform_namespace, self.log_path = namespace, platform_namespace, log
        self.env = dict(os.environ)
        if kubeconfig is not None:
            self.env["KUBECONFIG"] = str(kubeconfig)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts: list[float] = []
        self.health_port = 0

    def start(self) -> None:
        self.health_port, metrics_port = free_port(), free_port()
        env = {**self.env, "DEEP_HEALTH_PORT": str(self.health_port), "DEEP_WORKERS": "16"}
        with self.log_path.open("ab") as log:
            log.write(f"--- start at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "deep_platform", "run", "-n", self.namespace,
                 "--platform-namespace", self.platform_namespace, "--metrics-port", str(metrics_port)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        self.starts.append(time.monotonic())

    def ready(self, timeout: float = 60) -> bool:
        """kopf's liveness endpoint answers once the operator runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2):
                    return True
            except OSError:
                time.sleep(0.1)
        return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


# --- what happened to Jobs: every Job uid ever seen, per TrainingJob name ----------------------


class JobRecorder:
    """Watches the namespace's Jobs (list, then watch from the list's version) and records every
    Job uid per name, so a second Job that replaced the first is seen even if it was short-lived."""

    def __init__(self, api: k.Kube, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.uids: dict[str, set[str]] = collections.defaultdict(set)
        self.owner_uid: dict[str, str] = {}  # Job uid -> owner uid
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="job-recorder", daemon=True)
        self.thread.start()

    def _see(self, job: dict[str, Any]) -> None:
        meta = job["metadata"]
        with self.lock:
            self.uids[meta["name"]].add(meta["uid"])
            for owner in meta.get("ownerReferences") or []:
                self.owner_uid[meta["uid"]] = owner.get("uid", "")

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                answer = self.api.request("GET", k.JOB.path(self.namespace))
                for job in answer.get("items") or []:
                    self._see(job)
                version = answer["metadata"]["resourceVersion"]
                watch = self.api.watch(k.JOB, self.namespace, resource_version=version, timeout_seconds=30)
                for event in watch:
                    if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        self._see(event["object"])
                    elif event.get("type") == "ERROR":
                        break
                    if self.stopped.is_set():
                        return
            except Exception:  # a broken watch lists again
                time.sleep(0.2)

    def stop(self) -> None:
        self.stopped.set()

    def seen(self) -> dict[str, set[str]]:
        with self.lock:
            return {name: set(uids) for name, uids in self.uids.items()}


# --- the invariants ----------------------------------------------------------------------------


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def convergence_problems(api: k.Kube, namespace: str, plan: Plan) -> list[str]:
    """What is not (yet) as it should be; empty once everything converged."""
    problems: list[str] = []
    tjs = {o["metadata"]["name"]: o for o in api.list(TJ, namespace)}
    isvcs = {o["metadata"]["name"]: o for o in api.list(ISVC, namespace)}
    jobs = {o["metadata"]["name"]: o for o in api.list(k.JOB, namespace)}
    deployments = {o["metadata"]["name"]: o for o in api.list(k.DEPLOYMENT, namespace)}
    for name in plan.tj_names():
        tj = tjs.get(name)
        if Plan.deleted(name):
            if tj is not None:
                problems.append(f"TrainingJob {name} still exists after its deletion")
            if name in jobs:
                problems.append(f"Job {name} outlived its deleted TrainingJob")
            continue
        if tj is None:
            problems.append(f"TrainingJob {name} is missing")
            continue
        status = tj.get("status") or {}
        if status.get("phase") != "Succeeded":
            problems.append(f"TrainingJob {name}: phase {status.get('phase')} ({status.get('reason')})")
        if status.get("observedGeneration") != tj["metadata"].get("generation"):
            problems.append(f"TrainingJob {name}: observedGeneration {status.get('observedGeneration')}")
        if Plan.with_ttl(name):
            if name in jobs:
                problems.append(f"Job {name} not yet removed by the TTL controller")
        elif name not in jobs:
            problems.append(f"TrainingJob {name} has no Job")
    for name in plan.isvc_names():
        isvc = isvcs.get(name)
        if Plan.deleted(name):
            if isvc is not None:
                problems.append(f"InferenceService {name} still exists after its deletion")
            if name in deployments:
                problems.append(f"Deployment {name} outlived its deleted InferenceService")
            continue
        if isvc is None:
            problems.append(f"InferenceService {name} is missing")
            continue
        status = isvc.get("status") or {}
        ready = _conditions(isvc).get("Ready") or {}
        zero = Plan.scaled_to_zero(name)
        wanted = ("True", "ScaledToZero", 0, 0) if zero else ("True", "Serving", 1, 1)
        got = (ready.get("status"), ready.get("reason"), status.get("replicas"), status.get("readyReplicas"))
        if got != wanted:
            problems.append(f"InferenceService {name}: Ready/reason/replicas/ready {got}, wanted {wanted}")
        if status.get("observedGeneration") != isvc["metadata"].get("generation"):
            problems.append(
                f"InferenceService {name}: observedGeneration {status.get('observedGeneration')} "
                f"!= generation {isvc['metadata'].get('generation')}"
            )
    problems += orphans(api, namespace)
    return problems


def orphans(api: k.Kube, namespace: str) -> list[str]:
    """Children of the platform whose owner is gone (or that name no owner at all)."""
    live = {
        (kind.kind, o["metadata"]["name"]): o["metadata"]["uid"]
        for kind in (TJ, ISVC) for o in api.list(kind, namespace)
    }
    found = []
    for kind in CHILD_KINDS:
        for child in api.list(kind, namespace):
            meta = child["metadata"]
            ours = LABEL_KIND in (meta.get("labels") or {}) or any(
                m.get("manager") == k.FIELD_MANAGER for m in meta.get("managedFields") or [])
            if not ours:
                continue
            owners = [o for o in meta.get("ownerReferences") or [] if o.get("apiVersion") == GROUP_VERSION]
            if not owners:
                found.append(f"{kind.kind} {meta['name']} has no owner")
            elif not any(live.get((o.get("kind"), o.get("name"))) == o.get("uid") for o in owners):
                found.append(f"{kind.kind} {meta['name']} is an orphan (owner gone)")
    return found


def job_problems(api: k.Kube, namespace: str, recorder: JobRecorder) -> list[str]:
    """Exactly one Job per TrainingJob, ever: never a second uid under one name."""
    live = {o["metadata"]["name"]: o["metadata"]["uid"] for o in api.list(TJ, namespace)}
    problems = []
    for name, uids in sorted(recorder.seen().items()):
        if name in live and len(uids) > 1:
            problems.append(f"TrainingJob {name} got {len(uids)} Jobs")
    return problems


def event_duplicates(api: k.Kube, namespace: str) -> tuple[int, list[str]]:
    """Events about our objects, in the order they were created, per object and per what they
    announce (a TrainingJob's phase, an InferenceService's condition type): two in a row with
    the same reason and status announce one transition twice. (A state that comes back later,
    Idle -> Serving -> Idle, is two transitions and fine.)"""
    sequences: dict[tuple[str, str, str, str], list[str]] = collections.defaultdict(list)
    total = 0
    found = api.list(k.EVENT, namespace)
    found.sort(key=lambda e: int(e["metadata"].get("resourceVersion") or 0))
    for event in found:
        involved = event.get("involvedObject") or {}
        kind = involved.get("kind", "")
        if kind not in ("TrainingJob", "InferenceService"):
            continue
        if (event.get("source") or {}).get("component") != "deep-platform-operator":
            continue
        about = str(event.get("message") or "").split(":", 1)[0]  # "Running" or "Ready=True"
        topic = about.split("=", 1)[0] if kind == "InferenceService" else "phase"
        total += int(event.get("count") or 1)
        sequences[(kind, involved.get("name", ""), involved.get("uid", ""), topic)] += [
            f"{event.get('reason')} {about}"
        ] * int(event.get("count") or 1)
    dups = []
    for (kind, name, _uid, topic), seq in sorted(sequences.items()):
        repeated = [a for a, b in itertools.pairwise(seq) if a == b]
        if repeated:
            dups.append(f"{kind} {name} {topic}: {' -> '.join(seq)}")
    return total, dups


# --- the scenario ------------------------------------------------------------------------------


@dataclass
class Outcome:
    started: float = 0.0  # monotonic time of the first create
    created: float = 0.0  # all objects created
    last_restart: float = 0.0
    converged: float | None = None
    kills: int = 0
    problems: list[str] = field(default_factory=list)  # convergence problems left at the end
    invariants: list[str] = field(default_factory=list)  # Jobs, Events
    events: int = 0

    @property
    def burst_to_converged(self) -> float | None:
        return None if self.converged is None else self.converged - self.started

    @property
    def restart_to_converged(self) -> float | None:
        return None if self.converged is None else self.converged - max(self.last_restart, self.started)


class Scenario:
    """One burst in one namespace, with an operator process that may be killed meanwhile."""

    def __init__(self, api: k.Kube, namespace: str, plan: Plan, operator: OperatorProcess) -> None:
        self.api, self.namespace, self.plan, self.operator = api, namespace, plan, operator
        self.recorder = JobRecorder(api, namespace)
        self.outcome = Outcome()
        self.rng = random.Random(plan.seed)
        self.done = threading.Event()

    # the user and the activator, meanwhile
    def _create_all(self) -> None:
        bodies = [trainingjob(n, self.namespace, self.plan.ttl if Plan.with_ttl(n) else None)
                  for n in self.plan.tj_names()]
        bodies += [inferenceservice(n, self.namespace) for n in self.plan.isvc_names()]
        self.rng.shuffle(bodies)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self.api.create, bodies))

    def _user_and_activator(self) -> None:
        """Delete, edit and scale to zero (each once), as soon as it can be done."""
        pending_delete = {(TJ, n) for n in self.plan.tj_names() if Plan.deleted(n)}
        pending_delete |= {(ISVC, n) for n in self.plan.isvc_names() if Plan.deleted(n)}
        pending_edit = {n for n in self.plan.isvc_names() if Plan.edited(n) and not Plan.deleted(n)}
        pending_zero = {n for n in self.plan.isvc_names() if Plan.scaled_to_zero(n) and not Plan.deleted(n)}
        time.sleep(self.rng.uniform(0.5, 2.0))
        while (pending_delete or pending_edit or pending_zero) and not self.done.is_set():
            for kind, name in sorted(pending_delete, key=lambda item: item[1]):
                if self.api.delete(kind, name, self.namespace):  # False: not created yet
                    pending_delete.discard((kind, name))
            for name in list(pending_edit):
                if self.api.get(ISVC, name, self.namespace) is None:
                    continue
                self.api.patch(ISVC, name, self.namespace, {"spec": {"scaling": {"maxReplicas": 3}}})
                pending_edit.discard(name)
            for name in list(pending_zero):  # idle once it served, as the activator sees it
                deployment = self.api.get(k.DEPLOYMENT, name, self.namespace) or {}
                if (deployment.get("status") or {}).get("readyReplicas"):
                    self.api.scale(k.DEPLOYMENT, name, self.namespace, 0)
                    pending_zero.discard(name)
            time.sleep(0.5)

    def run(self, kills: int, kill_window: float, timeout: float,
            on_progress: Callable[[str], None] = lambda _line: None) -> Outcome:
        out = self.outcome
        self.operator.start()
        if not self.operator.ready(90):
            raise RuntimeError("the operator did not start")
        out.started = time.monotonic()
        out.last_restart = out.started
        kill_at = sorted(self.rng.uniform(0.2, kill_window) for _ in range(kills))
        creator = threading.Thread(target=self._create_all, daemon=True)
        actor = threading.Thread(target=self._user_and_activator, daemon=True)
        creator.start()
        actor.start()
        for at in kill_at:
            delay = out.started + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.operator.kill()
            self.operator.start()
            out.kills += 1
            out.last_restart = time.monotonic()
            on_progress(f"kill {out.kills} at +{out.last_restart - out.started:.1f}s")
        creator.join()
        out.created = time.monotonic()
        deadline = out.started + timeout
        problems = ["not checked"]
        while time.monotonic() < deadline:
            problems = convergence_problems(self.api, self.namespace, self.plan)
            if not problems:
                out.converged = time.monotonic()
                break
            time.sleep(0.5)
        self.done.set()
        actor.join(10)
        out.problems = problems
        time.sleep(2)  # Events leave after the status they describe
        out.invariants = job_problems(self.api, self.namespace, self.recorder)
        out.events, dups = event_duplicates(self.api, self.namespace)
        out.invariants += [f"duplicate Event: {d}" for d in dups]
        return out

    def close(self) -> None:
        self.done.set()
        self.recorder.stop()
        self.operator.stop()
