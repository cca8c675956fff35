"""The progress endpoint, in the operator process on a port of its own, and its writer.

`POST /v1/progress/<namespace>/<trainingjob>` with `Authorization: Bearer <pod token>` and a
JSON report. Order of the checks: the token's rate (cheap, so a flood costs no TokenReview),
the token (TokenReview, cached), the pod's owner, the body. Each refusal is counted by reason
(`deep_training_progress_refused_total`) and answered with a one-line reason; no token is
ever logged.

`Flusher` turns the reports into writes: status.progress at most once per TrainingJob every
`status_interval` seconds, the history ConfigMap every `history_interval` seconds, whatever
the reports' pace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import OrderedDict
from typing import Any

from aiohttp import web

from .. import kube as k
from ..api import TrainingJob
from .auth import Authorizer, Refused, Reviewer, TokenReviewer
from .report import BadReport, parse_report
from .tracker import (
    HISTORY_KEY,
    HISTORY_LABEL,
    HISTORY_WRITES,
    REFUSED,
    STATUS_WRITES,
    TRACKER,
    Key,
    Tracker,
    history_configmap_name,
    history_from_configmap,
)

log = logging.getLogger(__name__)
TJ = k.kind_of(TrainingJob)
MAX_BODY = 16 * 1024
#: every key of status.progress but `metrics` (a map: each metric's last value is kept)
PROGRESS_KEYS = (
    "epoch",
    "totalEpochs",
    "step",
    "totalSteps",
    "percent",
    "summary",
    "reports",
    "lastReportTime",
    "estimatedCompletionTime",
)
#: TokenReviews at once; more waiting than BACKLOG answers 503 (retry later)
REVIEWS_AT_ONCE = 8
BACKLOG = 256


class RateLimiter:
    """A token bucket per key (a token's hash): `rate` reports a second, bursts of `burst`."""

    def __init__(self, rate: float, burst: float, size: int = 50_000) -> None:
        self.rate, self.burst, self.size = rate, burst, size
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.lock = threading.Lock()

    def allow(self, key: str, now: float) -> bool:
        with self.lock:
            level, last = self.buckets.get(key, (self.burst, now))
            level = min(self.burst, level + (now - last) * self.rate)
            allowed = level >= 1.0
            self.buckets[key] = (level - 1.0 if allowed else level, now)
            self.buckets.move_to_end(key)
            while len(self.buckets) > self.size:
                self.buckets.popitem(last=False)
            return allowed


class Flusher:
    """Writes what the tracker holds, coalesced (one thread)."""

    def __init__(
        self,
        kube: k.Kube,
        platform_namespace: str,
        tracker: Tracker = TRACKER,
        status_interval: float = 5.0,
        history_interval: float = 30.0,
    ) -> None:
        self.kube, self.platform_namespace, self.tracker = kube, platform_namespace, tracker
        self.status_interval, self.history_interval = status_interval, history_interval
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="progress-flusher", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(10)
        self.flush(final=True)

    def _loop(self) -> None:
        try:
            self.sweep()
        except Exception:  # a sweep that failed leaves ConfigMaps, nothing worse
            log.exception("progress history sweep failed")
        while not self.stopping.wait(0.25):
            try:
                self.flush()
            except Exception:  # one bad write must not end the writer
                log.exception("progress flush failed")

    def flush(self, final: bool = False) -> None:
        now = self.tracker.clock()
        statuses: list[tuple[Key, str, dict[str, Any]]] = []
        histories: list[tuple[Key, dict[str, Any]]] = []
        with self.tracker.lock:
            for key, run in self.tracker.runs.items():
                if run.status_dirty and (final or now - run.status_written >= self.status_interval):
                    run.status_dirty, run.status_written = False, now
                    statuses.append((key, run.uid, run.status(now)))
                if run.history_dirty and (final or now - run.history_written >= self.history_interval):
                    run.history_dirty, run.history_written = False, now
                    histories.append((key, json.loads(json.dumps(run.history(*key)))))
            gone, self.tracker.gone = self.tracker.gone, []
        for key, uid, progress in statuses:
            self._write_status(key, uid, progress)
        for key, history in histories:
            self._write_history(key, history)
        for key in gone:
            self._delete_history(key)

    def sweep(self) -> int:
        """Delete the histories of TrainingJobs deleted (or made again) while no operator ran;
        later deletions are seen on the watch. Returns how many went."""
        gone = 0
        for body in self.kube.list(
            k.CONFIGMAP, self.platform_namespace, label_selector=f"{HISTORY_LABEL}=trainingjob"
        ):
            meta = body["metadata"]
            notes = meta.get("annotations") or {}
            namespace, name = notes.get(f"{HISTORY_LABEL}-namespace"), notes.get(f"{HISTORY_LABEL}-name")
            owner = self.kube.get(TJ, name, namespace) if namespace and name else None
            kept = history_from_configmap(body) or {}
            if owner is None or owner["metadata"].get("uid") != kept.get("uid"):
                self.kube.delete(k.CONFIGMAP, meta["name"], self.platform_namespace)
                gone += 1
        return gone

    def _write_status(self, key: Key, uid: str, progress: dict[str, Any]) -> None:
        self.tracker.written[key] = (uid, progress)
        # a merge patch keeps keys it does not name: what the report no longer has goes as null
        # (an estimated end once the training is done, a total after an operator restart)
        cleared = {name: None for name in PROGRESS_KEYS if name not in progress}
        try:
            self.kube.patch_status(TJ, key[1], key[0], {"progress": {**progress, **cleared}})
        except k.ApiError as exc:
            if exc.not_found:  # deleted meanwhile
                self.tracker.forget(key)
                return
            log.warning("status.progress of %s/%s not written: %s", *key, exc)
            self._dirty_again(key)
            return
        STATUS_WRITES.inc()

    def _write_history(self, key: Key, history: dict[str, Any]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": history_configmap_name(*key),
                "namespace": self.platform_namespace,
                "labels": {HISTORY_LABEL: "trainingjob"},
                "annotations": {f"{HISTORY_LABEL}-namespace": key[0], f"{HISTORY_LABEL}-name": key[1]},
            },
            "data": {HISTORY_KEY: json.dumps(history, separators=(",", ":"))},
        }
        try:
            self.kube.apply(body)
        except k.ApiError as exc:
            log.warning("progress history of %s/%s not written: %s", *key, exc)
            return
        HISTORY_WRITES.inc()

    def _delete_history(self, key: Key) -> None:
        try:
            self.kube.delete(k.CONFIGMAP, history_configmap_name(*key), self.platform_namespace)
        except k.ApiError as exc:
            log.warning("progress history of %s/%s not deleted: %s", *key, exc)

    def _dirty_again(self, key: Key) -> None:
        with self.tracker.lock:
            run = self.tracker.runs.get(key)
            if run is not None:
                run.status_dirty = True

    def stored_history(self, key: Key) -> dict[str, Any] | None:
        """The history kept before the operator restarted (a list: the operator's Role lists
        ConfigMaps of the platform namespace, it does not get them)."""
        try:
            found = self.kube.list(
                k.CONFIGMAP,
                self.platform_namespace,
                field_selector=f"metadata.name={history_configmap_name(*key)}",
            )
        except k.ApiError:
            return None
        return history_from_configmap(found[0]) if found else None


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


class Receiver:
    """The HTTP endpoint (aiohttp, its own thread and event loop) and the Flusher."""

    def __init__(
        self,
        kube: k.Kube,
        port: int,
        platform_namespace: str,
        reviewer: Reviewer | None = None,
        host: str = "0.0.0.0",
        tracker: Tracker = TRACKER,
        status_interval: float = 5.0,
        history_interval: float = 30.0,
        rate: float = 2.0,
        burst: float = 10.0,
    ) -> None:
        self.kube, self.host, self.port, self.tracker = kube, host, port, tracker
        self.authorizer = Authorizer(kube, reviewer or TokenReviewer(kube))
        self.limiter = RateLimiter(rate, burst)
        self.flusher = Flusher(kube, platform_namespace, tracker, status_interval, history_interval)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self.runner: web.AppRunner | None = None
        self.waiting = 0

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Receiver:
        self.thread = threading.Thread(target=self._serve, name="progress-endpoint", daemon=True)
        self.thread.start()
        self.ready.wait(30)
        if self.failure is not None:
            raise RuntimeError(f"the progress endpoint cannot listen on port {self.port}: {self.failure}")
        self.flusher.start()
        return self

    def stop(self) -> None:
        if self.loop is not None and self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not None:
            self.thread.join(10)
        self.flusher.stop()

    def _serve(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._listen())
        except BaseException as exc:
            self.failure = exc
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def _listen(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/v1/progress/{namespace}/{name}", self.handle)
        app.router.add_get("/healthz", healthz)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        self.reviews = asyncio.Semaphore(REVIEWS_AT_ONCE)

    async def handle(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        try:
            if token and not self.limiter.allow(Authorizer.token_key(token)[:32], time.monotonic()):
                raise Refused("rate_limited", "too many reports; report at most every few seconds", 429)
            uid = await self._authorize(token, namespace, name)
            try:
                report = parse_report(await request.json())
            except (ValueError, web.HTTPRequestEntityTooLarge) as exc:
                message = str(exc) if isinstance(exc, BadReport) else f"the body is no JSON report ({exc})"
                raise Refused("bad_request", message, 400) from None
        except Refused as exc:
            REFUSED.labels(exc.reason).inc()
            return web.json_response({"reason": exc.reason, "error": exc.message}, status=exc.status)
        key = (namespace, name)
        await asyncio.to_thread(
            self.tracker.record, key, uid, report, lambda: self.flusher.stored_history(key)
        )
        return web.json_response({"accepted": True}, status=202)

    async def _authorize(self, token: str, namespace: str, name: str) -> str:
        cached = self.authorizer.tokens.get(Authorizer.token_key(token)) if token else None
        if cached is not None and self.authorizer.pods.get(getattr(cached, "pod_uid", "")) is not None:
            return self.authorizer.authorize(token, namespace, name)  # all from memory
        if self.waiting >= BACKLOG:
            raise Refused("busy", "the endpoint is busy checking tokens; try again in a few seconds", 503)
        self.waiting += 1
        try:
            async with self.reviews:
                return await asyncio.to_thread(self.authorizer.authorize, token, namespace, name)
        finally:
            self.waiting -= 1


_current: Receiver | None = None


def current() -> Receiver | None:
    """The endpoint of this operator process, if it serves one."""
    return _current


def start(kube: k.Kube, port: int, platform_namespace: str, reviewer: Reviewer | None = None) -> Receiver:
    global _current
    _current = Receiver(kube, port, platform_namespace, reviewer).start()
    return _current


def stop() -> None:
    global _current
    if _current is not None:
        _current.stop()
        _current = None
