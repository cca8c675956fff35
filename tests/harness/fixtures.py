"""pytest fixtures of the API servers: ``pytest_plugins = ["tests.harness.fixtures"]``.

`apiserver` is the emulator, and also, one switch away, a real API server with the same test
interface (`tests/harness/real_apiserver.py`): every test that takes it runs once per server of
`SERVERS`, so that each difference between them shows up as a failing test. The real server is
used only where it is a throwaway one: the shared/k8s control plane the tests start themselves,
or any cluster with `DEEP_TEST_SERVER=real` said explicitly (tests empty its `default` namespace).
`DEEP_TEST_SERVER=emulator` keeps to the emulator.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from tests.harness import realserver
from tests.harness.apiserver import ApiServer
from tests.harness.real_apiserver import RealApiServer, proxied

CRDS_DIR = pathlib.Path(__file__).resolve().parents[2] / "crds"
_choice = os.environ.get("DEEP_TEST_SERVER", "")
SERVERS: tuple[str, ...] = ("emulator", "real") if _choice == "real" else ("emulator",)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "emulator_only(reason): reads what only the emulator offers (its request log...); "
        "not run against the real API server")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked emulator_only have no [real] variant."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_real = callspec is not None and callspec.params.get("apiserver") == "real"
        (dropped if on_real and item.get_closest_marker("emulator_only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def real_server() -> Iterator[realserver.RealServer]:
    """The real API server of this run (see tests/harness/realserver.py), or a one-line skip."""
    with realserver.session() as found:
        if isinstance(found, str):
            pytest.skip(f"no Kubernetes cluster: {found}; set KUBECONFIG to run e2e tests")
        yield found


@pytest.fixture(scope="session")
def real_apiserver(real_server: realserver.RealServer) -> Iterator[RealApiServer]:
    """The real server behind the emulator's test interface, with the repo's CRDs."""
    with proxied(real_server) as (kube, url):
        server = RealApiServer(kube, url)
        server.load_crds(CRDS_DIR)
        yield server


@pytest.fixture(params=SERVERS)
def apiserver(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh emulator with namespaces default, kube-system, deep-platform and the repo's CRDs;
    or the real server, emptied of what earlier tests left (see the module docstring)."""
    if request.param == "real":
        server: RealApiServer = request.getfixturevalue("real_apiserver")
        server.reset()
        yield server
        return
    with ApiServer.running() as api:
        if CRDS_DIR.is_dir() and any(CRDS_DIR.rglob("*.y*ml")):
            api.load_crds(CRDS_DIR)
        yield api


@pytest.fixture
def kube_client_config(apiserver: Any) -> kubernetes.client.Configuration:
    """A ``kubernetes`` client configuration pointing at the server (no auth, plain HTTP)."""
    config = kubernetes.client.Configuration()
    config.host = apiserver.url
    config.verify_ssl = False
    return config
