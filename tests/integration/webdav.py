"""A real WebDAV server (wsgidav + cheroot, basic auth) on loopback, and a runner that executes a
storage container rendered by the builder with real `rclone`, as the kubelet would.

Used by tests/integration/test_storage_rclone.py and bench/storage_copy.py.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pathlib
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cheroot import wsgi
from wsgidav.wsgidav_app import WsgiDAVApp

#: the NextCloud layout, so rclone's nextcloud vendor sees the URL it expects
DAV_PREFIX = "/remote.php/dav/files/alice"


@dataclass
class WebDAV:
    url: str
    root: pathlib.Path
    user: str
    password: str


@contextlib.contextmanager
def webdav_server(root: pathlib.Path, user: str, password: str) -> Iterator[WebDAV]:
    """wsgidav serving the folder `root` (made if missing) to `user` with `password`."""
    root.mkdir(parents=True, exist_ok=True)
    config = {
        "provider_mapping": {DAV_PREFIX: str(root)},
        "http_authenticator": {
            "domain_controller": None,
            "accept_basic": True,
            "accept_digest": False,
            "default_to_digest": False,
        },
        "simple_dc": {"user_mapping": {"*": {user: {"password": password, "roles": []}}}},
        "verbose": 0,
        "logging": {"enable": False},
        "property_manager": True,
        "lock_storage": True,
    }
    app = WsgiDAVApp(config)
    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=8)
    server.prepare()
    port = server.bind_addr[1]
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield WebDAV(f"http://127.0.0.1:{port}{DAV_PREFIX}", root, user, password)
    finally:
        server.stop()
        thread.join(timeout=10)


def secret(name: str, **data: str) -> dict[str, Any]:
    """A v1 Secret as the API server returns it (values base64-encoded)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


class ContainerConfigError(Exception):
    """What the kubelet reports as CreateContainerConfigError."""


def resolve_env(container: dict[str, Any], secrets: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: values and secretKeyRefs only."""
    env = {"PATH": os.environ["PATH"]}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        found = secrets.get(ref["name"])
        if found is None:
            raise ContainerConfigError(f'secret "{ref["name"]}" not found')
        if ref["key"] not in found.get("data", {}):
            raise ContainerConfigError(f"couldn't find key {ref['key']} in Secret default/{ref['name']}")
        env[item["name"]] = base64.b64decode(found["data"][ref["key"]]).decode()
    return env


def container_argv(container: dict[str, Any], volumes: dict[str, pathlib.Path]) -> list[str]:
    """command + args, with each volume's mount path replaced by the local folder standing in
    for the volume (the only change to what the builder rendered)."""
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}
    argv = [*container["command"], *container.get("args", [])]
    return [str(mounts[arg]) if arg in mounts else arg for arg in argv]


def start_container(
    container: dict[str, Any],
    secrets: dict[str, dict[str, Any]],
    volumes: dict[str, pathlib.Path],
    home: pathlib.Path,
) -> subprocess.Popen[str]:
    assert shutil.which("rclone"), "the Debian rclone package must be installed"
    env = resolve_env(container, secrets)
    # HOME=/tmp in the pod; a private folder here, so parallel runs do not share rclone state
    env["HOME"] = str(home)
    return subprocess.Popen(
        container_argv(container, volumes),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_container(
    container: dict[str, Any],
    secrets: dict[str, dict[str, Any]],
    volumes: dict[str, pathlib.Path],
    home: pathlib.Path,
    timeout: float = 120,
) -> tuple[int, str]:
    process = start_container(container, secrets, volumes, home)
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output
