"""Copy throughput of the storage containers the builder renders vs a plain `rclone copy`.

Both run in the same process against the same wsgidav server on loopback, on the same tree
(one large file and many small ones, 200 MB by default), alternating, several rounds; the
figure is the ratio of median throughputs (target: the rendered command within 10 %).

    python bench/storage_copy.py [--megabytes 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from deep_platform.api.common import StorageMount
from deep_platform.builders import storage
from tests.integration.webdav import run_container, secret, start_container, webdav_server

USER, PASSWORD = "alice", "bench-pass wörd"


def make_tree(root: pathlib.Path, megabytes: int) -> int:
    """Half the bytes in one file, half in 1 MiB files spread over folders."""
    root.mkdir(parents=True)
    block = os.urandom(2**20)
    big = root / "big file.bin"
    with big.open("wb") as handle:
        for _ in range(megabytes // 2):
            handle.write(block)
    for i in range(megabytes - megabytes // 2):
        folder = root / f"part {i % 8}"
        folder.mkdir(exist_ok=True)
        (folder / f"chunk {i}.bin").write_bytes(block[i:] + block[:i])
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def plain_env(url: str, home: pathlib.Path) -> dict[str, str]:
    obscured = subprocess.run(
        ["rclone", "obscure", "-"], input=PASSWORD + "\n", capture_output=True, text=True, check=True
    ).stdout.strip()
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "RCLONE_CONFIG_DATA_TYPE": "webdav",
        "RCLONE_CONFIG_DATA_URL": url,
        "RCLONE_CONFIG_DATA_VENDOR": "nextcloud",
        "RCLONE_CONFIG_DATA_USER": USER,
        "RCLONE_CONFIG_DATA_PASS": obscured,
    }


def timed(action: object) -> float:
    start = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="storage-bench-"))
    try:
        server_root = work / "server"
        server_root.mkdir()
        size = make_tree(server_root / "dataset", args.megabytes)
        secrets = {"webdav": secret("webdav", user=USER, password=PASSWORD)}
        with webdav_server(server_root, USER, PASSWORD) as dav:
            mount = StorageMount.model_validate(
                {
                    "name": "data",
                    "url": dav.url,
                    "secretRef": {"name": "webdav"},
                    "remotePath": "/dataset",
                    "mountPath": "/srv/data",
                }
            )
            env = plain_env(dav.url, work)
            results: dict[str, list[float]] = {
                "in rendered": [],
                "in plain": [],
                "out rendered": [],
                "out plain": [],
            }

            def fresh(name: str) -> pathlib.Path:
                path = work / name
                shutil.rmtree(path, ignore_errors=True)
                path.mkdir()
                return path

            def rendered_in() -> None:
                volume = fresh("local")
                code, output = run_container(
                    storage.copy_in_container(mount, "bench"), secrets, {"storage-data": volume}, work, 600
                )
                assert code == 0, output

            def plain_in() -> None:
                fresh("local")
                subprocess.run(
                    ["rclone", "copy", "data:dataset", str(work / "local")],
                    env=env,
                    check=True,
                    capture_output=True,
                )

            def rendered_out() -> None:
                shutil.rmtree(server_root / "upload", ignore_errors=True)
                target = mount.model_copy(update={"remote_path": "/upload"})
                sidecar = start_container(
                    storage.copy_out_sidecar(target, "bench"), secrets, {"storage-data": work / "local"}, work
                )
                assert sidecar.stdout is not None
                sidecar.stdout.readline()  # waiting: the trap is set
                sidecar.send_signal(signal.SIGTERM)
                output, _ = sidecar.communicate(timeout=600)
                assert sidecar.returncode == 0, output

            def plain_out() -> None:
                shutil.rmtree(server_root / "upload", ignore_errors=True)
                subprocess.run(
                    ["rclone", "copy", str(work / "local"), "data:upload"],
                    env=env,
                    check=True,
                    capture_output=True,
                )

            for _ in range(args.rounds):
                results["in rendered"].append(timed(rendered_in))
                results["in plain"].append(timed(plain_in))
                results["out rendered"].append(timed(rendered_out))
                results["out plain"].append(timed(plain_out))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    megabytes = size / 2**20
    print(f"tree: {megabytes:.0f} MiB, {args.rounds} rounds, wsgidav on loopback, rclone {rclone_version()}")
    worst = 0.0
    for direction in ("in", "out"):
        rendered = megabytes / statistics.median(results[f"{direction} rendered"])
        plain = megabytes / statistics.median(results[f"{direction} plain"])
        ratio = rendered / plain
        worst = max(worst, 1 - ratio)
        print(
            f"copy {direction:3}: rendered {rendered:7.1f} MiB/s   plain rclone copy {plain:7.1f} MiB/s   "
            f"ratio {ratio:.3f}"
        )
    verdict = "within" if worst <= 0.10 else "NOT within"
    print(f"target: rendered throughput within 10% of plain rclone copy -> {verdict}")
    return 0 if worst <= 0.10 else 1


def rclone_version() -> str:
    out = subprocess.run(["rclone", "version"], capture_output=True, text=True, check=False).stdout
    return out.split()[1] if out else "?"


if __name__ == "__main__":
    raise SystemExit(main())
