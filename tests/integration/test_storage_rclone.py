"""The storage containers the builder renders, run with real rclone against a real WebDAV server.

Each container's command, args and environment are exactly what builders/storage.py renders;
only the Secret references are resolved (from a test Secret, as the kubelet does) and the
volume's mount path is replaced by a local folder.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from deep_platform.api.common import StorageMount
from deep_platform.builders import storage
from deep_platform.storage_check import classify_rclone_failure
from tests.integration.webdav import (
    WebDAV,
    run_container,
    secret,
    start_container,
    webdav_server,
)

pytestmark = pytest.mark.timeout(300)

USER = "alice"
#: quotes, $, backquote, backslash, space and non-ASCII: the shell must pass it through intact
PASSWORD = 'p@ss wörd"$`\\ $(touch /tmp/pwned) x'
IMAGE = "rclone/rclone:1.68"


@pytest.fixture
def dav(tmp_path: pathlib.Path) -> Iterator[WebDAV]:
    with webdav_server(tmp_path / "server", USER, PASSWORD) as server:
        yield server


def mount(dav: WebDAV, remote_path: str = "/datasets/plants", **extra: Any) -> StorageMount:
    return StorageMount.model_validate(
        {
            "name": "data",
            "url": dav.url,
            "secretRef": {"name": "webdav"},
            "remotePath": remote_path,
            "mountPath": "/srv/data",
            **extra,
        }
    )


def secrets(password: str = PASSWORD) -> dict[str, dict[str, Any]]:
    return {"webdav": secret("webdav", user=USER, password=password)}


def digest_tree(root: pathlib.Path) -> dict[str, str]:
    """relative path -> sha256 (files) or 'dir' (folders)."""
    result = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        result[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def make_dataset(root: pathlib.Path, big: bool) -> None:
    (root / "images" / "train" / "class a").mkdir(parents=True)
    (root / "images" / "train" / "class a" / "leaf 01.jpg").write_bytes(b"\xff\xd8" + b"x" * 5000)
    (root / "images" / "train" / "ñandú").mkdir()
    (root / "images" / "train" / "ñandú" / "größe 日本.txt").write_text("non-ASCII names survive\n")
    (root / "labels.csv").write_text("file,label\nleaf 01.jpg,a\n")
    (root / "empty folder").mkdir()
    if big:
        block = hashlib.sha256(b"seed").digest() * (2**20 // 32)
        with (root / "weights 100MB.bin").open("wb") as handle:
            for i in range(100):
                handle.write(block[:-1] + bytes([i]))


def test_copy_in_brings_the_remote_folder_into_the_pod(dav: WebDAV, tmp_path: pathlib.Path) -> None:
    remote = dav.root / "datasets" / "plants"
    make_dataset(remote, big=True)
    local = tmp_path / "volume"
    local.mkdir()
    container = storage.copy_in_container(mount(dav), IMAGE)

    code, output = run_container(container, secrets(), {"storage-data": local}, tmp_path)

    assert code == 0, output
    assert digest_tree(local) == digest_tree(remote)
    assert (local / "empty folder").is_dir()
    assert (local / "weights 100MB.bin").stat().st_size == 100 * 2**20
    assert PASSWORD not in output
    assert not pathlib.Path("/tmp/pwned").exists()


def test_rendered_pod_parts_hold_no_clear_password(dav: WebDAV) -> None:
    container = storage.copy_in_container(mount(dav), IMAGE)
    sidecar = storage.copy_out_sidecar(mount(dav), IMAGE)
    text = json.dumps([container, sidecar])
    assert PASSWORD not in text
    # the password reaches the container only by reference
    refs = [e for e in container["env"] if "valueFrom" in e]
    assert {e["valueFrom"]["secretKeyRef"]["key"] for e in refs} == {"user", "password"}


@pytest.mark.parametrize("training_exit", [0, 1], ids=["succeeded", "failed"])
def test_results_go_back_when_training_ends(dav: WebDAV, tmp_path: pathlib.Path, training_exit: int) -> None:
    remote = dav.root / "experiments" / "run 1"
    (remote / "config").mkdir(parents=True)
    (remote / "config" / "params.json").write_text('{"epochs": 3}')
    local = tmp_path / "volume"
    local.mkdir()
    spec = mount(dav, remote_path="/experiments/run 1")
    volumes = {"storage-data": local}
    code, output = run_container(storage.copy_in_container(spec, IMAGE), secrets(), volumes, tmp_path)
    assert code == 0, output

    sidecar = start_container(storage.copy_out_sidecar(spec, IMAGE), secrets(), volumes, tmp_path)
    try:
        assert sidecar.stdout is not None
        assert "waiting" in sidecar.stdout.readline()
        # the "training": writes results (nested, non-ASCII, an empty folder), then ends
        script = (
            'mkdir -p "$1/models/best model" "$1/logs/émpty"; '
            'printf weights > "$1/models/best model/modèle final.pt"; '
            'echo "epoch 1 loss 0.3" > "$1/logs/train log.txt"; exit "$2"'
        )
        training = subprocess.run(["sh", "-c", script, "sh", str(local), str(training_exit)], check=False)
        assert training.returncode == training_exit
        # what the kubelet does once the main container has ended: SIGTERM to the sidecar
        sidecar.send_signal(signal.SIGTERM)
        output, _ = sidecar.communicate(timeout=120)
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
    assert sidecar.returncode == 0, output
    assert "results uploaded" in output
    assert (remote / "models" / "best model" / "modèle final.pt").read_text() == "weights"
    assert (remote / "logs" / "train log.txt").read_text() == "epoch 1 loss 0.3\n"
    assert (remote / "logs" / "émpty").is_dir()
    # inputs are untouched
    assert (remote / "config" / "params.json").read_text() == '{"epochs": 3}'


def test_wrong_password_fails_clearly(dav: WebDAV, tmp_path: pathlib.Path) -> None:
    (dav.root / "datasets" / "plants").mkdir(parents=True)
    local = tmp_path / "volume"
    local.mkdir()
    container = storage.copy_in_container(mount(dav), IMAGE)

    code, output = run_container(container, secrets("not-the-password"), {"storage-data": local}, tmp_path)

    assert code != 0
    assert classify_rclone_failure(output)[0] == "Unauthorized", output
    assert "not-the-password" not in output
    assert list(local.iterdir()) == []


def test_upload_with_wrong_password_exits_non_zero(dav: WebDAV, tmp_path: pathlib.Path) -> None:
    local = tmp_path / "volume"
    (local / "models").mkdir(parents=True)
    (local / "models" / "m.pt").write_text("w")
    sidecar = start_container(
        storage.copy_out_sidecar(mount(dav), IMAGE), secrets("wrong"), {"storage-data": local}, tmp_path
    )
    assert sidecar.stdout is not None
    assert "waiting" in sidecar.stdout.readline()
    sidecar.send_signal(signal.SIGTERM)
    output, _ = sidecar.communicate(timeout=120)
    assert sidecar.returncode != 0
    assert "upload failed" in output
    assert classify_rclone_failure(output)[0] == "Unauthorized", output


def test_unreachable_server_and_missing_folder_are_named(dav: WebDAV, tmp_path: pathlib.Path) -> None:
    local = tmp_path / "volume"
    local.mkdir()
    volumes = {"storage-data": local}
    closed = mount(dav).model_copy(update={"url": "http://127.0.0.1:9/remote.php/dav/files/alice"})
    code, output = run_container(storage.copy_in_container(closed, IMAGE), secrets(), volumes, tmp_path)
    assert code != 0
    assert classify_rclone_failure(output)[0] == "ServerUnreachable", output

    code, output = run_container(
        storage.copy_in_container(mount(dav, remote_path="/no/such/folder"), IMAGE),
        secrets(),
        volumes,
        tmp_path,
    )
    assert code != 0
    assert classify_rclone_failure(output)[0] == "RemotePathNotFound", output


def test_empty_password_is_refused_before_rclone_runs(dav: WebDAV, tmp_path: pathlib.Path) -> None:
    local = tmp_path / "volume"
    local.mkdir()
    container = storage.copy_in_container(mount(dav), IMAGE)
    code, output = run_container(container, secrets(""), {"storage-data": local}, tmp_path)
    assert code == 64
    assert classify_rclone_failure(output)[0] == "EmptyPassword"
