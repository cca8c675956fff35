"""Collects every API call the platform's components make in this test session, for the chart's
RBAC test (tests/chart/test_rbac.py), which runs last.

Each emulator (any fixture whose value is an ApiServer) is read when its fixture is torn down:
`calls_by_agent` says who made each call by User-Agent (`deep-platform-<component>`; kopf's
`kopf/...` is the operator). Only the distinct calls are kept, with the first test that made each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.harness.apiserver import ApiCall, ApiServer

TESTS = Path(__file__).resolve().parents[1]
RUN_LAST = "rbac_after_all"


def component_of(user_agent: str) -> str | None:
    """The platform component behind a User-Agent, or None for tests' own clients."""
    if user_agent.startswith("kopf/"):
        return "operator"
    if user_agent.startswith("deep-platform-"):
        name = user_agent.removeprefix("deep-platform-").split("/")[0].split(" ")[0]
        return None if name in ("test", "e2e") else name
    return None


@dataclass
class CallLog:
    #: (component, call) -> the first test that made it
    calls: dict[tuple[str, ApiCall], str] = field(default_factory=dict)
    #: the test files of this session (after deselection)
    files: set[Path] = field(default_factory=set)

    def add(self, server: ApiServer, nodeid: str) -> None:
        if nodeid.startswith("tests/harness/"):
            return  # the emulator's own tests run a kopf of their own on example.com widgets
        for agent, call in list(server.calls_by_agent):
            component = component_of(agent)
            if component is not None:
                self.calls.setdefault((component, call), nodeid)


_LOG = CallLog()


def session_calls() -> CallLog:
    return _LOG


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{RUN_LAST}: runs after every other test of the session")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[Any]) -> None:
    last = [item for item in items if item.get_closest_marker(RUN_LAST)]
    if last:
        items[:] = [item for item in items if not item.get_closest_marker(RUN_LAST)] + last


def pytest_collection_finish(session: pytest.Session) -> None:
    _LOG.files = {Path(str(item.path)).resolve() for item in session.items}


def pytest_fixture_post_finalizer(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> None:
    cached = fixturedef.cached_result
    if cached is not None and isinstance(cached[0], ApiServer):
        _LOG.add(cached[0], request.node.nodeid)
