"""The scaler: every activator replica runs this loop; only the Lease holder decides replicas.

Each tick, every replica
  1. writes status.lastRequestTime of the services it saw requests for (forward only),
  2. publishes its in-flight and held requests per service in its own Lease,
  3. refreshes which services still have a ready endpoint,
and the holder of the `deep-platform-activator-scaler` Lease then, for every InferenceService:
  - scales up at once to ceil(total load / targetConcurrency) (within min/max replicas),
  - scales down only to the highest recommendation of the stabilisation window,
  - scales to minReplicas (0) when idle for scaleToZeroAfter since the last request,
  - with `prewarm`, starts a new version, sends it the warm-up request and records it.
Waking from zero is the one write any replica makes (scale_at_least, with a precondition); the
leader leaves zero-replica services to that wake-up, so each cold start is counted once.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import time
from typing import Any

from . import metrics
from .cluster import Cluster, deployment_version, desired_replicas, parse_duration, parse_time, utcnow
from .proxy import Activator

log = logging.getLogger(__name__)
WARMUP_PATH = "/v2/models/"


class Scaler:
    def __init__(self, activator: Activator) -> None:
        self.activator = activator
        self.cluster: Cluster = activator.cluster
        self.settings = activator.settings
        #: per service: (monotonic time, recommended replicas) within the stabilisation window
        self.history: dict[str, collections.deque[tuple[float, int]]] = {}
        self._published: dict[str, int] | None = None
        self._published_at = 0.0
        self._warming: set[str] = set()

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:  # one bad tick (API hiccup) must not stop scaling
                log.exception("scaler tick failed")
            await asyncio.sleep(max(0.0, self.settings.tick - (time.monotonic() - started)))

    async def tick(self) -> None:
        await asyncio.gather(self.flush_requests(), self.publish_load(), self.refresh_ready())
        self.activator.is_leader = await asyncio.to_thread(self.cluster.lead, self.settings.lease_seconds)
        if self.activator.is_leader:
            await self.decide()
        await self.activator.devenvs.tick(self.activator.is_leader)

    async def flush_requests(self) -> None:
        writes = []
        for state in list(self.activator.services.values()):
            pending = state.pending_request
            if state.load:
                pending = time.time()  # still busy: not idle, however long the request takes
            if pending is None:
                continue
            when = dt.datetime.fromtimestamp(pending, dt.UTC)
            state.pending_request = None
            writes.append(
                asyncio.to_thread(self.cluster.record, state.namespace, state.name, last_request=when)
            )
        for result in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(result, Exception):
                log.warning("could not write lastRequestTime: %s", result)

    async def publish_load(self) -> None:
        load = self.activator.local_load()
        stale = time.monotonic() - self._published_at > self.settings.lease_seconds / 3
        if load == self._published and not stale:
            return
        await asyncio.to_thread(self.cluster.publish_load, load, self.settings.lease_seconds)
        self._published, self._published_at = load, time.monotonic()

    async def refresh_ready(self) -> None:
        """Notice services another replica scaled to zero, so requests wait instead of failing."""
        states = [
            s
            for s in self.activator.services.values()
            if (s.ready and s.wake is None) or (s.ready and s.wake is not None and s.wake.done())
        ]

        async def check(state: Any) -> None:
            count = await asyncio.to_thread(self.cluster.ready_count, state.namespace, state.name)
            if count == 0:
                state.ready = False

        await asyncio.gather(*(check(s) for s in states), return_exceptions=True)

    async def decide(self) -> None:
        isvcs, deployments, load = await asyncio.gather(
            asyncio.to_thread(self.cluster.inference_services),
            asyncio.to_thread(self.cluster.deployments),
            asyncio.to_thread(self.cluster.total_load),
        )
        by_key = {f"{d['metadata']['namespace']}/{d['metadata']['name']}": d for d in deployments}
        # this replica's own load is fresher than its Lease
        for key, value in self.activator.local_load().items():
            load[key] = max(load.get(key, 0), value)
        for isvc in isvcs:
            key = f"{isvc['metadata']['namespace']}/{isvc['metadata']['name']}"
            deployment = by_key.get(key)
            if deployment is None:
                continue
            try:
                await self.decide_one(isvc, deployment, load.get(key, 0))
            except Exception as exc:  # one service's trouble must not block the others
                log.warning("scaling %s: %s", key, exc)

    async def decide_one(self, isvc: dict[str, Any], deployment: dict[str, Any], load: int) -> None:
        meta = isvc["metadata"]
        ns, name = meta["namespace"], meta["name"]
        key = f"{ns}/{name}"
        scaling = (isvc.get("spec") or {}).get("scaling") or {}
        status = isvc.get("status") or {}
        minimum = int(scaling.get("minReplicas", 0))
        maximum = max(1, int(scaling.get("maxReplicas", 1)))
        target_concurrency = int(scaling.get("targetConcurrency", 4))
        idle_after = parse_duration(str(scaling.get("scaleToZeroAfter", "5m")))
        current = int((deployment.get("spec") or {}).get("replicas", 1))
        now = time.monotonic()

        wanted = desired_replicas(load, target_concurrency, minimum, maximum)
        history = self.history.setdefault(key, collections.deque())
        history.append((now, wanted))
        window = min(self.settings.stabilization, idle_after)
        while history and history[0][0] < now - window:
            history.popleft()
        stable = max(v for _, v in history)

        last = parse_time(status.get("lastRequestTime")) or parse_time(meta.get("creationTimestamp"))
        idle = load == 0 and last is not None and (utcnow() - last).total_seconds() >= idle_after

        version = deployment_version(deployment)
        prewarm = (
            bool(scaling.get("prewarm")) and version is not None and status.get("warmedVersion") != version
        )

        if current == 0 and wanted > minimum and not prewarm:
            # from zero only through a request's wake-up, which counts the cold start once
            target = current
        elif wanted > current:
            target = wanted  # up at once
        elif prewarm:
            target = max(current, 1)
        elif idle:
            target = minimum
        else:
            target = max(stable, 1 if current > 0 else 0, minimum)
            target = min(target, current)  # never up on stale history, only down
        target = min(max(target, minimum), maximum)

        if target != current:
            direction = "up" if target > current else "down"
            await asyncio.to_thread(self.cluster.set_replicas, deployment, target)
            metrics.SCALE_EVENTS.labels(ns, name, direction).inc()
            log.info("scaled %s from %d to %d (load %d, idle %s)", key, current, target, load, idle)
            if target == 0:
                state = self.activator.services.get(key)
                if state is not None:
                    state.ready = False
            if prewarm and current == 0:
                # the idle clock of a prewarmed replica starts at its warm-up
                await asyncio.to_thread(self.cluster.record, ns, name, last_request=utcnow())
        if prewarm and key not in self._warming and _rolled_out(deployment):
            self._warming.add(key)
            asyncio.create_task(self.warm_up(ns, name, version))  # noqa: RUF006  # tracked by _warming

    async def warm_up(self, ns: str, name: str, version: str | None) -> None:
        """The paper's pre-warming: one request to the new version before it reports Ready."""
        key = f"{ns}/{name}"
        try:
            pool = self.activator.pool
            assert pool is not None
            response = await pool.request(
                "GET", self.activator.resolver(ns, name), WARMUP_PATH, (), None, None
            )
            try:
                await response.read()
            finally:
                response.release()
            if response.status >= 400:
                log.warning("warm-up of %s answered %d", key, response.status)
                return
            await asyncio.to_thread(
                self.cluster.record, ns, name, last_request=utcnow(), warmed_version=version
            )
            log.info("warmed %s version %s", key, version)
        except Exception as exc:
            log.warning("warm-up of %s failed: %s", key, exc)
        finally:
            self._warming.discard(key)


def _rolled_out(deployment: dict[str, Any]) -> bool:
    """The current template has a ready replica (so the warm-up reaches the new version)."""
    meta = deployment.get("metadata") or {}
    status = deployment.get("status") or {}
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False
    replicas = (deployment.get("spec") or {}).get("replicas", 1)
    return (
        bool(status.get("readyReplicas"))
        and status.get("updatedReplicas", 0) >= min(replicas, 1)
        and not (status.get("replicas", 0) > status.get("updatedReplicas", 0))
    )
