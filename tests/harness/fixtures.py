"""pytest fixtures of the API server emulator: ``pytest_plugins = ["tests.harness.fixtures"]``."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import kubernetes.client
import pytest

from tests.harness.apiserver import ApiServer

CRDS_DIR = pathlib.Path(__file__).resolve().parents[2] / "crds"


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    """A fresh emulator with namespaces default, kube-system, deep-platform and the repo's CRDs."""
    with ApiServer.running() as api:
        if CRDS_DIR.is_dir() and any(CRDS_DIR.rglob("*.y*ml")):
            api.load_crds(CRDS_DIR)
        yield api


@pytest.fixture
def kube_client_config(apiserver: ApiServer) -> kubernetes.client.Configuration:
    """A ``kubernetes`` client configuration pointing at the emulator (no auth, plain HTTP)."""
    config = kubernetes.client.Configuration()
    config.host = apiserver.url
    config.verify_ssl = False
    return config
