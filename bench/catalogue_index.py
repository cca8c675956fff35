"""Benchmark: N Modules (default 1,000) created at once; time until the catalogue index is
complete and consistent, as a ratio to the time the same ConfigMap writes take through the API
directly (same emulator build, same thread count, same run). Target: within 3x.

    python bench/catalogue_index.py [N]
"""

from __future__ import annotations

import asyncio
import pathlib
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deep_platform import kube as k  # noqa: E402
from deep_platform.api import Module  # noqa: E402
from deep_platform.builders.module import CATALOGUE_LABEL, build_catalogue_entry, index_item  # noqa: E402
from deep_platform.catalogue.index import read_index, write_index  # noqa: E402
from deep_platform.config import OperatorConfig  # noqa: E402
from deep_platform.operator import run  # noqa: E402
from tests.harness.apiserver import ApiServer  # noqa: E402
from tests.harness.operator_fixtures import kube_for  # noqa: E402

NS = "deep-platform"
WORKERS = 16


def bodies(n: int) -> list[dict[str, Any]]:
    base = yaml.safe_load((ROOT / "examples" / "module.yaml").read_text())
    out = []
    for i in range(n):
        body = yaml.safe_load(yaml.safe_dump(base))
        body["metadata"] = {"name": f"bench-{i:04d}"}
        body["spec"]["metadata"]["title"] = f"Module {i}"
        out.append(body)
    return out


def direct(n: int) -> float:
    """The baseline: the entry ConfigMaps and the index, written straight through the API."""
    with ApiServer.running() as server:
        server.load_crds(ROOT / "crds")
        kube = kube_for(server.url)
        modules = [Module.from_body(dict(b, metadata=dict(b["metadata"], uid=f"u{i}")))
                   for i, b in enumerate(bodies(n))]
        start = time.perf_counter()
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lambda m: kube.apply(build_catalogue_entry(m, NS)), modules))
        write_index(kube, NS, [index_item(m) for m in modules])
        elapsed = time.perf_counter() - start
        kube.close()
        return elapsed


def through_operator(n: int) -> float:
    with ApiServer.running() as server:
        server.load_crds(ROOT / "crds")
        kube = kube_for(server.url)
        config = OperatorConfig(platform_namespace=NS, namespaces=[], metrics_port=0, health_port=0,
                                workers=WORKERS, resync_seconds=3600)
        stop, ready = threading.Event(), threading.Event()
        thread = threading.Thread(
            target=lambda: asyncio.run(run(kube, config, stop_flag=stop, ready_flag=ready)), daemon=True  # type: ignore[arg-type]  # kopf takes threading events too
        )
        thread.start()
        assert ready.wait(30), "operator did not start"
        wanted = sorted(b["metadata"]["name"] for b in bodies(n))
        start = time.perf_counter()
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(kube.create, bodies(n)))
        while True:
            try:
                names = sorted(i["name"] for i in read_index(kube, NS))
            except Exception:  # a rebuild in progress: read again
                names = []
            entries = len(kube.list(k.CONFIGMAP, NS, label_selector=f"{CATALOGUE_LABEL}=entry"))
            if names == wanted and entries == n:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        stop.set()
        thread.join(30)
        kube.close()
        return elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    base = direct(n)
    operated = through_operator(n)
    ratio = operated / base
    print(f"modules: {n}, workers: {WORKERS}")
    print(f"direct ConfigMap writes (entries + index): {base:.2f} s")
    print(f"operator, create -> index complete and consistent: {operated:.2f} s")
    print(f"ratio: {ratio:.2f}x (target <= 3x) {'OK' if ratio <= 3 else 'OVER TARGET'}")


if __name__ == "__main__":
    main()
