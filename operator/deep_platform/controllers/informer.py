"""A lean list-and-watch loop and a keyed work queue, for kinds whose events come in bursts.

TrainingJobs arrive by the thousand (a hyperparameter sweep), and each brings three events of
its own and of its Job. kopf's per-event machinery (a task per object, cause detection with
deep copies, an executor hop per handler) costs more CPU than the reconciliation itself, so the
TrainingJob controller reads its watches here: one thread per watch parses each line and hands
the object to a filter, and a few worker threads reconcile, never two for the same key at once,
the newest event of a key replacing one still waiting (reconciliation is level-based).
kopf still runs the operator: startup and shutdown, login, the other controllers.
DevEnvironments are driven the same way; `WatchedQueue` is the wiring both controllers share.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from .. import kube as k

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: (event type, object): "ADDED", "MODIFIED", "DELETED"; the initial list and relists say "LISTED"
Handler = Callable[[str, dict[str, Any]], None]


class KeyedQueue(Generic[K, V]):
    """Work per key, done by `workers` threads; one key is never worked on by two at once.

    `add` while the key waits replaces its value (unless `keep` says the waiting one is better);
    `add` while the key is being worked on runs it once more afterwards.
    """

    def __init__(
        self,
        work: Callable[[K, V], None],
        workers: int,
        name: str,
        keep: Callable[[V, V], bool] = lambda _waiting, _new: False,
    ) -> None:
        self.work, self.keep, self.name = work, keep, name
        self.cond = threading.Condition()
        self.waiting: dict[K, V] = {}
        self.ready: collections.deque[K] = collections.deque()
        self.active: set[K] = set()
        self.stopped = False
        self.threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self.threads:
            thread.start()

    def add(self, key: K, value: V) -> None:
        with self.cond:
            if key in self.waiting:
                if not self.keep(self.waiting[key], value):
                    self.waiting[key] = value
                return
            self.waiting[key] = value
            if key not in self.active:
                self.ready.append(key)
                self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.ready and not self.stopped:
                    self.cond.wait()
                if self.stopped:
                    return
                key = self.ready.popleft()
                value = self.waiting.pop(key)
                self.active.add(key)
            try:
                self.work(key, value)
            except Exception:  # one object's failure must not stop the others; resync retries
                log.exception("%s: working on %s failed", self.name, key)
            finally:
                with self.cond:
                    self.active.discard(key)
                    if key in self.waiting:
                        self.ready.append(key)
                    self.cond.notify_all()

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until nothing waits and nothing runs (tests, benchmarks, a synchronous resync)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.waiting or self.active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        for thread in self.threads:
            thread.join(timeout)


class Informer:
    """List, then watch from the list's resourceVersion; relist when the server says 410 Gone
    or the stream breaks; objects gone between two lists are reported as DELETED."""

    def __init__(
        self,
        kube: k.Kube,
        kind: k.Kind,
        handler: Handler,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> None:
        self.kube, self.kind, self.handler = kube, kind, handler
        self.namespace, self.label_selector = namespace, label_selector
        self.timeout_seconds = timeout_seconds
        self.name = f"watch-{kind.plural}" + (f"-{namespace}" if namespace else "")
        self.known: dict[tuple[str, str], dict[str, Any]] = {}  # key -> _identity, for relists
        self.listed = threading.Event()
        self.stopping = threading.Event()
        self.response: Any = None
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        response = self.response
        if response is not None:
            with contextlib.suppress(Exception):  # already closed
                response.shutdown()  # unblocks the read of the watch stream
        self.thread.join(timeout)

    def _run(self) -> None:
        version: str | None = None
        pause = 0.5
        while not self.stopping.is_set():
            try:
                if version is None:
                    version = self._relist()
                version = self._watch(version)
                pause = 0.5
            except k.ApiError as exc:
                if exc.status == 410:
                    version = None  # too old: list again
                    continue
                log.warning("%s: %s; retrying in %.1f s", self.name, exc, pause)
            except Exception as exc:  # the connection broke: list again after a pause
                if self.stopping.is_set():
                    return
                log.warning("%s: %s; retrying in %.1f s", self.name, exc, pause)
                version = None
            self.stopping.wait(pause)
            pause = min(pause * 2, 30.0)

    def _relist(self) -> str:
        answer = self.kube.request(
            "GET", self.kind.path(self.namespace), query={"labelSelector": self.label_selector}
        )
        items = list(answer.get("items") or [])
        listed: dict[tuple[str, str], dict[str, Any]] = {}
        for obj in items:
            obj.setdefault("apiVersion", self.kind.api_version)
            obj.setdefault("kind", self.kind.kind)
            listed[_key(obj)] = _identity(obj)
            self.handler("LISTED", obj)
        for key, meta in list(self.known.items()):
            if key not in listed:  # deleted while we were not watching
                self.handler("DELETED", {"apiVersion": self.kind.api_version, "kind": self.kind.kind,
                                         "metadata": meta})
        self.known = listed
        self.listed.set()
        return str((answer.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, version: str) -> str:
        """Follow the stream; the version to resume from when the server ends it."""

        def opened(response: Any) -> None:
            self.response = response

        try:
            for event in self.kube.watch(
                self.kind, self.namespace, self.label_selector, version, self.timeout_seconds, opened
            ):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise k.ApiError(int(obj.get("code") or 500), str(obj.get("reason") or ""),
                                     str(obj.get("message") or ""))
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind == "BOOKMARK":
                    continue
                key = _key(obj)
                if kind == "DELETED":
                    self.known.pop(key, None)
                else:
                    self.known[key] = _identity(obj)
                self.handler(str(kind), obj)
        finally:
            self.response = None
        return version


def scopes(namespaces: Iterable[str]) -> list[str | None]:
    """The namespaces to watch and list: the configured ones, or None for all of them."""
    return list(namespaces) or [None]


#: one watch of a `WatchedQueue`: the kind, its handler, and a label selector (None: every object)
Watch = tuple[k.Kind, Handler, str | None]


class WatchedQueue(Generic[K, V]):
    """The informers of a queue-driven controller and the `KeyedQueue` they feed: started at the
    operator's startup, stopped at its cleanup. The first watch is the controller's own kind."""

    def __init__(self, name: str, work: Callable[[K, V], None], watches: Sequence[Watch],
                 keep: Callable[[V, V], bool] = lambda _waiting, _new: False) -> None:
        self.name, self.work, self.watches, self.keep = name, work, watches, keep
        self.queue: KeyedQueue[K, V] | None = None
        self.informers: list[Informer] = []

    def add(self, key: K, value: V) -> None:
        if self.queue is not None:
            self.queue.add(key, value)

    def start(self, kube: k.Kube, namespaces: Iterable[str], workers: int) -> None:
        self.queue = KeyedQueue(self.work, workers, self.name, keep=self.keep)
        for namespace in scopes(namespaces):
            self.informers += [Informer(kube, kind, handler, namespace, selector)
                               for kind, handler, selector in self.watches]
        for informer in self.informers:
            informer.start()
        for informer in self.informers:  # ready means listed, as kopf's own watches
            if not informer.listed.wait(30):
                log.warning("%s: no first list within 30 s; it keeps trying", informer.name)

    def add_all(self, kube: k.Kube, namespaces: Iterable[str], entry: Callable[[dict[str, Any]], tuple[K, V]]
                ) -> bool:
        """Queue every object of the controller's kind (a resync), and wait for the queue to drain."""
        for namespace in scopes(namespaces):
            for body in kube.list(self.watches[0][0], namespace):
                self.add(*entry(body))
        return self.drain()

    def drain(self, timeout: float = 60.0) -> bool:
        return self.queue.drain(timeout) if self.queue is not None else True

    def stop(self) -> None:
        for informer in self.informers:
            informer.stop()
        self.informers = []
        if self.queue is not None:
            self.queue.stop()
            self.queue = None


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _identity(obj: dict[str, Any]) -> dict[str, Any]:
    """What a DELETED event found by a relist carries: who it was, and who owned it."""
    meta = obj.get("metadata") or {}
    return {f: meta[f] for f in ("name", "namespace", "uid", "labels", "ownerReferences") if f in meta}
