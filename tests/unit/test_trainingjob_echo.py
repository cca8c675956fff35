"""Which TrainingJob events the controller skips as the echo of its own status write."""

from __future__ import annotations

from typing import Any

import pytest

from deep_platform.controllers import trainingjob as controller


def body(version: int, generation: int, observed: int | None) -> dict[str, Any]:
    status = {"observedGeneration": observed} if observed is not None else {}
    return {"metadata": {"namespace": "team-a", "name": "retrain", "uid": "uid-1",
                         "resourceVersion": str(version), "generation": generation}, "status": status}


@pytest.fixture(autouse=True)
def our_last_write() -> Any:
    controller.memory.clear()
    controller.memory.own_version[("team-a", "retrain")] = ("uid-1", 100)
    yield
    controller.memory.clear()


def test_our_write_and_what_came_before_it_are_echoes() -> None:
    assert controller._is_echo(body(100, 1, 1))
    assert controller._is_echo(body(99, 1, 1))


def test_a_newer_event_is_not_an_echo() -> None:
    assert not controller._is_echo(body(101, 1, 1))


def test_a_spec_change_older_than_our_write_is_not_lost() -> None:
    """The user's edit (generation 2) landed between our read and our status write (which
    still says observedGeneration 1): both events are at or below our write's version."""
    assert not controller._is_echo(body(98, 2, 1))
    assert not controller._is_echo(body(100, 2, 1))


def test_another_objects_write_is_not_ours() -> None:
    other = body(100, 1, 1)
    other["metadata"]["uid"] = "uid-2"  # deleted and created again with the same name
    assert not controller._is_echo(other)
