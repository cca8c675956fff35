"""Which real Kubernetes API server the e2e tests (and real-server benchmarks) talk to.

In order: the cluster of `$KUBECONFIG` when it is set; else the local control plane of
`shared/k8s` (etcd, kube-apiserver, kube-controller-manager, kube-scheduler of Kubernetes 1.36,
no kubelet), started here and stopped at the end when this checkout has it beside it (CI does;
`DEEP_K8S_DIR` points elsewhere); else the default kubeconfig (`~/.kube/config`); else none,
and the caller skips with the one-line reason.

The control plane keeps its state in `DEEP_K8S_HOME` and listens on the ports of
`DEEP_K8S_*_PORT` when the environment sets them (`DEEP_K8S_KEEP=1` then leaves it running for
the next run); otherwise in a folder and on free ports of this test run alone, wiped at the end.
`DEEP_E2E=0` turns every real-server test off.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.harness.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
BINARY_CACHE = Path(tempfile.gettempdir()) / "deep-k8s-binaries"

PORT_VARIABLES = ("DEEP_K8S_APISERVER_PORT", "DEEP_K8S_ETCD_PORT", "DEEP_K8S_ETCD_PEER_PORT",
                  "DEEP_K8S_KCM_PORT", "DEEP_K8S_SCHEDULER_PORT")


@dataclass(frozen=True)
class RealServer:
    kubeconfig: Path | None  # None: the default kubeconfig of the kubernetes client
    origin: str  # for messages: where it came from
    home: Path | None = None  # the control plane's state folder, when this process started it


def shared_k8s_dir() -> Path | None:
    explicit = os.environ.get("DEEP_K8S_DIR")
    candidate = Path(explicit) if explicit else ROOT.parent / "shared" / "k8s"
    return candidate if (candidate / "up.sh").is_file() else None



def control_plane_env() -> dict[str, str]:
    """Where the control plane lives: the environment's DEEP_K8S_HOME and ports, else a folder
    and ports of this process's own, so that test runs side by side never share one."""
    env = dict(os.environ)
    if "DEEP_K8S_HOME" not in env:
        env["DEEP_K8S_HOME"] = str(Path(tempfile.gettempdir()) / f"deep-k8s-tests-{os.getpid()}")
        for name in PORT_VARIABLES:
            env[name] = str(free_port())
    return env


def start_control_plane(k8s: Path, attempts: int = 3) -> RealServer:
    """Run shared/k8s/up.sh (idempotent) and return the kubeconfig it printed last.

    up.sh is run again when it fails: on a busy machine it can take a component that is still
    starting for one that exited (its pid's command line is not yet the binary's), and a second
    run keeps what runs and waits for it."""
    env = control_plane_env()
    home = Path(env["DEEP_K8S_HOME"])
    _share_binaries(BINARY_CACHE, home / "bin")
    said = ""
    for _ in range(attempts):
        done = subprocess.run(
            ["bash", str(k8s / "up.sh")], env=env, capture_output=True, text=True, timeout=180, check=False
        )
        last = done.stdout.strip().splitlines()[-1:] if done.stdout.strip() else []
        if done.returncode == 0 and last and last[0].startswith("KUBECONFIG="):
            _share_binaries(home / "bin", BINARY_CACHE)
            return RealServer(Path(last[0].split("=", 1)[1]), f"control plane of {k8s}", home)
        said = f"{k8s}/up.sh failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    stop_control_plane(RealServer(None, "", home))
    raise RuntimeError(said)


def _share_binaries(source: Path, target: Path) -> None:
    """Hard-link the unpacked binaries (300 MB) so that each run's control plane need not
    unpack them again; up.sh still checks each one against its SHA256SUMS."""
    if not source.is_dir():
        return
    target.mkdir(parents=True, exist_ok=True)
    for binary in source.iterdir():
        if binary.suffix or (target / binary.name).exists():
            continue
        with contextlib.suppress(OSError):
            os.link(binary, target / binary.name)


def stop_control_plane(server: RealServer) -> None:
    k8s = shared_k8s_dir()
    if k8s is None or server.home is None or os.environ.get("DEEP_K8S_KEEP") == "1":
        return
    env = control_plane_env()
    env["DEEP_K8S_HOME"] = str(server.home)
    subprocess.run(
        ["bash", str(k8s / "down.sh"), "--wipe"], env=env, capture_output=True, timeout=60, check=False
    )
    if "DEEP_K8S_HOME" not in os.environ:  # this run's own folder
        shutil.rmtree(server.home, ignore_errors=True)


def find() -> RealServer | str:
    """The real server to use, or why there is none (one line)."""
    if os.environ.get("DEEP_E2E") == "0":
        return "DEEP_E2E=0"
    if os.environ.get("KUBECONFIG"):
        return RealServer(Path(os.environ["KUBECONFIG"]), "$KUBECONFIG")
    k8s = shared_k8s_dir()
    if k8s is not None:
        return start_control_plane(k8s)
    default = Path.home() / ".kube" / "config"
    if default.is_file():
        return RealServer(None, str(default))
    return "no $KUBECONFIG, no ~/.kube/config and no shared/k8s control plane beside this checkout"


@contextlib.contextmanager
def session() -> Iterator[RealServer | str]:
    """find(), and stop the control plane afterwards if this process started it."""
    found = find()
    try:
        yield found
    finally:
        if isinstance(found, RealServer):
            stop_control_plane(found)
