"""The catalogue index: ConfigMaps in the platform namespace, kept by ONE writer per operator.

Why one writer rebuilding from the list of Modules instead of each reconcile editing its shard:
kopf runs many reconciles at once, and 1,000 Modules created together would otherwise fight
over the same shard with 409 retries. Reconciles only say "the index is stale"; the writer
thread (debounced) lists the Modules, packs them into shards below 1 MiB, and writes only the
ConfigMaps whose content changed: shards first, then the head that names them with their
digests, then it deletes shards no longer named. A deleted Module simply is not in the next
list, so it leaves no trace; a crash loses nothing, since the next rebuild starts from the truth.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..api import Module
from ..builders.module import CATALOGUE_LABEL, INDEX_HEAD, build_index, index_item, shard_digest
from ..kube import CONFIGMAP, ApiError, Kube, kind_of
from .metadata import check

log = logging.getLogger(__name__)
MODULES = kind_of(Module)


class IndexReadError(Exception):
    """The index could not be read consistently (missing, or rebuilt while reading)."""


class ProblemCache:
    """Metadata checks remembered per (uid, generation): the schema check is the costly part."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int], list[str]] = {}

    def problems(self, module: Module) -> list[str]:
        key = (module.metadata.uid or module.name, module.metadata.generation or 0)
        with self._lock:
            if key in self._seen:
                return self._seen[key]
        found = check(module.spec.metadata)
        with self._lock:
            if len(self._seen) > 100_000:
                self._seen.clear()
            self._seen[key] = found
        return found


def build_items(kube: Kube, cache: ProblemCache) -> list[dict[str, Any]]:
    items = []
    for body in kube.list(MODULES):
        try:
            module = Module.from_body(body)
        except ValueError:
            continue  # an unparsable Module is not published; its status says why
        items.append(index_item(module, cache.problems(module)))
    return items


def write_index(kube: Kube, namespace: str, items: list[dict[str, Any]]) -> int:
    """Converge the index ConfigMaps to `items`; returns how many objects were written."""
    existing = {
        cm["metadata"]["name"]: cm.get("data") or {}
        for cm in kube.list(CONFIGMAP, namespace, label_selector=f"{CATALOGUE_LABEL} in (index,index-shard)")
    }
    left_out: list[str] = []
    wanted = build_index(items, namespace, left_out=left_out)
    _report_left_out(namespace, left_out)
    written = 0
    for obj in wanted:  # shards before the head: a reader never sees a head naming a missing shard
        if existing.get(obj["metadata"]["name"]) != obj["data"]:
            kube.apply(obj)
            written += 1
    names = {obj["metadata"]["name"] for obj in wanted}
    for stale in sorted(set(existing) - names):
        kube.delete(CONFIGMAP, stale, namespace)
        written += 1
    return written


_left_out: dict[str, set[str]] = {}


def _report_left_out(namespace: str, names: list[str]) -> None:
    """One warning when a Module starts being left out of the index (too big for a shard), not
    one per rebuild; its status says why (Ready=False, IndexEntryTooLarge)."""
    new = set(names) - _left_out.get(namespace, set())
    _left_out[namespace] = set(names)
    if new:
        log.warning("catalogue index in %s: left out, too big for a shard: %s (see their status)",
                    namespace, ", ".join(sorted(new)))


def read_index(kube: Kube, namespace: str, attempts: int = 5) -> list[dict[str, Any]]:
    """All index items, checked against the head's digests (retried while a rebuild runs)."""
    for _ in range(attempts):
        head = kube.get(CONFIGMAP, INDEX_HEAD, namespace)
        if head is None:
            return []
        shards = {
            cm["metadata"]["name"]: (cm.get("data") or {}).get("modules.json", "")
            for cm in kube.list(CONFIGMAP, namespace, label_selector=f"{CATALOGUE_LABEL}=index-shard")
        }
        named = json.loads((head.get("data") or {}).get("index.json", "{}")).get("shards", [])
        if all(s["name"] in shards and shard_digest(shards[s["name"]]) == s["digest"] for s in named):
            return [item for s in named for item in json.loads(shards[s["name"]])]
    raise IndexReadError(f"the catalogue index in {namespace} changed {attempts} times while reading")


def applied_entries(kube: Kube, namespace: str) -> dict[str, tuple[str, dict[str, str]]]:
    """The entry ConfigMaps as they are, in the shape of IndexWriter.applied: Module name ->
    (the owner Module's uid, data). An entry not owned by a Module is left out (re-applied)."""
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for cm in kube.list(CONFIGMAP, namespace, label_selector=f"{CATALOGUE_LABEL}=entry"):
        owners = [o for o in (cm.get("metadata") or {}).get("ownerReferences") or []
                  if o.get("kind") == "Module" and o.get("name")]
        if len(owners) == 1:
            found[owners[0]["name"]] = (str(owners[0].get("uid") or ""), dict(cm.get("data") or {}))
    return found


class IndexWriter:
    """The single writer: a thread that rebuilds the index whenever it is marked stale, and
    every `resync_seconds` calls `resync` (the controller re-reconciles every Module: the
    Module controller watches events only, so this is its periodic drift repair)."""

    def __init__(self, kube: Kube, namespace: str, debounce: float = 0.1,
                 resync: Callable[[], None] | None = None, resync_seconds: float = 300.0,
                 max_delay: float = 2.0) -> None:
        self.kube, self.namespace, self.debounce, self.max_delay = kube, namespace, debounce, max_delay
        self.resync, self.resync_seconds = resync, resync_seconds
        #: the index items from memory (the controller's kopf index of Modules, complete before
        #: any handler runs); None: list the Modules from the API on every rebuild
        self.source: Callable[[], list[dict[str, Any]]] | None = None
        self.cache = ProblemCache()
        #: module name -> (uid, entry data) last applied: an unchanged entry is not re-applied
        #: on every watch event (read back from the API on resync, so a deleted or edited
        #: entry comes back)
        self.applied: dict[str, tuple[str, dict[str, str]]] = {}
        self._stale = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="catalogue-index", daemon=True)
        self._thread.start()

    def mark_stale(self) -> None:
        self._stale.set()

    def stop(self) -> None:
        self._stop.set()
        self._stale.set()
        self._thread.join(10)

    def resync_now(self) -> None:
        """The periodic drift repair: what the entry ConfigMaps hold now replaces what this
        writer remembers applying (one list), so the controller's resync re-applies only the
        entries that are missing or differ (a resync with nothing changed writes nothing),
        then the index is rebuilt."""
        try:
            self.applied = applied_entries(self.kube, self.namespace)
        except (ApiError, OSError) as exc:
            log.warning("catalogue resync: cannot list the entries (%s); re-applying them all", exc)
            self.applied = {}
        try:
            if self.resync is not None:
                self.resync()
        except Exception:  # a failed resync is retried at the next one
            log.exception("catalogue resync failed")
        self._stale.set()

    def rebuild(self) -> int:
        items = self.source() if self.source is not None else build_items(self.kube, self.cache)
        return write_index(self.kube, self.namespace, items)

    def _settle(self) -> None:
        """Wait until no mark came for `debounce` seconds, or `max_delay` passed: a burst of
        reconciles coalesces into few rebuilds, and the last one follows the burst closely."""
        deadline = time.monotonic() + self.max_delay
        while not self._stop.is_set():
            self._stale.clear()
            if not self._stale.wait(self.debounce) or time.monotonic() >= deadline:
                return

    def _loop(self) -> None:
        next_resync = time.monotonic() + self.resync_seconds
        while not self._stop.is_set():
            marked = self._stale.wait(max(0.0, next_resync - time.monotonic()))
            if self._stop.is_set():
                return
            if not marked:
                next_resync = time.monotonic() + self.resync_seconds
                self.resync_now()
                continue
            self._settle()
            self._stale.clear()
            try:
                self.rebuild()
            except (ApiError, OSError, ValueError) as exc:
                log.warning("catalogue index rebuild failed, retrying: %s", exc)
                self._stale.set()
                self._stop.wait(1.0)
                continue


_writers: dict[tuple[int, str], IndexWriter] = {}
_writers_lock = threading.Lock()


def writer_for(kube: Kube, namespace: str, resync: Callable[[], None] | None = None,
               resync_seconds: float = 300.0) -> IndexWriter:
    with _writers_lock:
        key = (id(kube), namespace)
        if key not in _writers:
            _writers[key] = IndexWriter(kube, namespace, resync=resync, resync_seconds=resync_seconds)
        return _writers[key]


def stop_all() -> None:
    with _writers_lock:
        writers = list(_writers.values())
        _writers.clear()
    for writer in writers:
        writer.stop()
