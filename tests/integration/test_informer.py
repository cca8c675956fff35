"""The TrainingJob controller's watch loop and work queue, against the emulator's real HTTP."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from deep_platform import kube as k
from deep_platform.controllers.informer import Informer, KeyedQueue
from tests.harness.apiserver import ApiServer
from tests.harness.operator_fixtures import kube_for, wait_until


def configmap(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default",
                                                                  "labels": labels}}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def __call__(self, type_: str, obj: dict[str, Any]) -> None:
        self.events.append((type_, obj["metadata"]["name"]))


def test_lists_then_watches_with_the_selector_and_stops_at_once(apiserver: Any) -> None:
    kube = kube_for(apiserver.url)
    kube.create(configmap("before", app="ours"))
    kube.create(configmap("stranger", app="theirs"))
    seen = Recorder()
    informer = Informer(kube, k.CONFIGMAP, seen, "default", "app=ours")
    informer.start()
    assert informer.listed.wait(10)
    kube.create(configmap("after", app="ours"))
    kube.patch(k.CONFIGMAP, "after", "default", {"data": {"x": "1"}})
    kube.create(configmap("stranger-2", app="theirs"))
    kube.delete(k.CONFIGMAP, "before", "default")
    wait_until(lambda: ("DELETED", "before") in seen.events, 5, what="the deletion")
    assert seen.events == [
        ("LISTED", "before"), ("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "before")
    ]
    started = time.monotonic()
    informer.stop()
    assert not informer.thread.is_alive() and time.monotonic() - started < 3  # not the 300 s timeout


def test_a_relist_reports_what_was_deleted_while_nobody_watched(apiserver: Any) -> None:
    kube = kube_for(apiserver.url)
    for name in ("stays", "goes"):
        kube.create(configmap(name, app="relist"))
    seen = Recorder()
    # a selector: a real server's namespaces hold ConfigMaps of their own (kube-root-ca.crt)
    informer = Informer(kube, k.CONFIGMAP, seen, "default", "app=relist")
    informer._relist()
    kube.delete(k.CONFIGMAP, "goes", "default")
    kube.create(configmap("new", app="relist"))
    informer._relist()
    assert seen.events[2:] == [("LISTED", "new"), ("LISTED", "stays"), ("DELETED", "goes")]


def test_resuming_from_a_version_the_server_forgot_is_410() -> None:
    """What makes _run list again instead of resuming (the emulator keeps 3 events here)."""
    with ApiServer.running(history=3) as small:
        kube = kube_for(small.url)
        informer = Informer(kube, k.CONFIGMAP, Recorder(), "default")
        version = informer._relist()
        for i in range(5):
            kube.create(configmap(f"c{i}"))
        with pytest.raises(k.ApiError) as gone:
            informer._watch(version)
        assert gone.value.status == 410


def test_the_queue_never_works_on_one_key_twice_at_once_and_keeps_the_newest() -> None:
    running: dict[str, int] = {}
    most: dict[str, int] = {}
    done: dict[str, list[int]] = {}
    guard = threading.Lock()

    def work(key: str, value: int) -> None:
        with guard:
            running[key] = running.get(key, 0) + 1
            most[key] = max(most.get(key, 0), running[key])
        time.sleep(0.01)
        with guard:
            running[key] -= 1
            done.setdefault(key, []).append(value)

    queue: KeyedQueue[str, int] = KeyedQueue(work, 8, "test")
    try:
        for value in range(50):
            for key in ("a", "b", "c"):
                queue.add(key, value)
        assert queue.drain(10)
    finally:
        queue.stop()
    assert most == {"a": 1, "b": 1, "c": 1}
    for key in ("a", "b", "c"):
        assert done[key][-1] == 49  # the newest value is always worked on
        assert len(done[key]) < 50  # values that waited were replaced, not queued up
        assert done[key] == sorted(done[key])  # and never out of order


def test_keep_lets_a_waiting_value_cover_a_new_one() -> None:
    done: list[str] = []
    gate = threading.Event()

    def work(_key: str, value: str) -> None:
        gate.wait(5)
        done.append(value)

    queue: KeyedQueue[str, str] = KeyedQueue(work, 2, "test", keep=lambda waiting, _new: waiting == "fresh")
    try:
        queue.add("k", "first")  # taken by a worker, held at the gate
        wait_until(lambda: queue.active, 5, what="the first value taken")
        queue.add("k", "fresh")
        queue.add("k", "event")  # covered by the waiting "fresh"
        gate.set()
        assert queue.drain(5)
    finally:
        queue.stop()
    assert done == ["first", "fresh"]
