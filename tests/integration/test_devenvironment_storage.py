"""A DevEnvironment's periodic upload sidecar, as the builder renders it, run with real rclone
against a real WebDAV server: copied back every period and once more when the pod stops, and
nothing remote is ever deleted (`rclone copy`, not sync)."""

from __future__ import annotations

import pathlib
import signal
import time
from collections.abc import Iterator

import pytest

from deep_platform.api.common import StorageMount
from deep_platform.builders.devenvironment import periodic_copy_out_sidecar
from tests.integration.webdav import WebDAV, secret, start_container, webdav_server

pytestmark = pytest.mark.timeout(120)
USER, PASSWORD = "alice", "n3xtcl0ud app token"


@pytest.fixture
def dav(tmp_path: pathlib.Path) -> Iterator[WebDAV]:
    with webdav_server(tmp_path / "server", USER, PASSWORD) as server:
        yield server


def wait_for(path: pathlib.Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text() == text:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} never held {text!r}")


def test_uploads_every_period_and_at_stop_and_deletes_nothing_remote(
    dav: WebDAV, tmp_path: pathlib.Path
) -> None:
    remote = dav.root / "work"
    remote.mkdir()
    (remote / "kept-remote.txt").write_text("only on the server")
    spec = StorageMount.model_validate({"name": "work", "url": dav.url, "secretRef": {"name": "webdav"},
                                        "remotePath": "/work", "mountPath": "/storage/work"})
    local = tmp_path / "volume"
    local.mkdir()
    sidecar = start_container(periodic_copy_out_sidecar(spec, "rclone/rclone:1.68", every=1),
                              {"webdav": secret("webdav", user=USER, password=PASSWORD)},
                              {"storage-work": local}, tmp_path)
    try:
        (local / "notebook.ipynb").write_text("draft 1")
        wait_for(remote / "notebook.ipynb", "draft 1")  # a period later, with the IDE still running
        # rclone compares size and modification time (to the second, and this WebDAV server keeps
        # its own upload time): an edit of the same size is seen once a second has passed
        time.sleep(1.5)
        (local / "notebook.ipynb").write_text("draft 2")
        wait_for(remote / "notebook.ipynb", "draft 2")
        (local / "notebook.ipynb").unlink()  # deleted in the IDE: kept on the server
        (local / "last.txt").write_text("written just before sleeping")
        sidecar.send_signal(signal.SIGTERM)  # the pod stops (asleep): one more upload
        output, _ = sidecar.communicate(timeout=60)
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
    assert sidecar.returncode == 0, output
    assert (remote / "last.txt").read_text() == "written just before sleeping"
    assert (remote / "notebook.ipynb").read_text() == "draft 2"
    assert (remote / "kept-remote.txt").read_text() == "only on the server"
    assert PASSWORD not in output
