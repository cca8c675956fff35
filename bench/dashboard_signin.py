"""What sign-in costs the dashboard: the overview page of a signed-in person (one
SubjectAccessReview per namespace and kind, cached `web.auth.accessCacheSeconds`) against the same
page with sign-in off (`none-unsafe`, the baseline, measured in the same run on the same data).

Real API server only (the emulator has no authorizer). 20 namespaces with 3 TrainingJobs and an
InferenceService each; the person may list both kinds in half of them. Target: with a warm cache
the page takes at most 1.5x the baseline; a cold cache (every review asked again) is reported.

    python bench/dashboard_signin.py [--namespaces 20] [--loads 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from aiohttp import web

from bench._servers import client_for, install_crds, namespace, real_server, verdict
from deep_platform import kube as k
from deep_platform.config import OperatorConfig
from deep_platform.signin import NONE_UNSAFE, OIDC, SignInSettings
from deep_platform.signin.session import SESSION, SESSION_COOKIE, CookieSealer
from deep_platform.web import create_app

GROUP = "deep-hybrid-datacloud.eu"
ISSUER = "https://iam.bench.invalid"  # never contacted: the session cookie is made here
USER = f"{ISSUER}#bench-user"
TARGET_WARM_RATIO = 1.5


def populate(api: k.Kube, count: int) -> list[str]:
    names = [namespace(api, "bench-signin") for _ in range(count)]
    for index, ns in enumerate(names):
        for job in range(3):
            api.create({"apiVersion": f"{GROUP}/v1alpha1", "kind": "TrainingJob",
                        "metadata": {"name": f"job-{job}", "namespace": ns},
                        "spec": {"image": "deephdc/deep-oc-generic:latest"}})
        api.create({"apiVersion": f"{GROUP}/v1alpha1", "kind": "InferenceService",
                    "metadata": {"name": "api", "namespace": ns}, "spec": {"module": "m"}})
        if index % 2 == 0:
            rbac, group = "rbac.authorization.k8s.io/v1", "rbac.authorization.k8s.io"
            role = {"apiVersion": rbac, "kind": "Role", "metadata": {"name": "reader", "namespace": ns},
                    "rules": [{"apiGroups": [GROUP], "resources": ["trainingjobs", "inferenceservices"],
                               "verbs": ["list"]}]}
            binding = {"apiVersion": rbac, "kind": "RoleBinding",
                       "metadata": {"name": "reader", "namespace": ns},
                       "roleRef": {"apiGroup": group, "kind": "Role", "name": "reader"},
                       "subjects": [{"apiGroup": group, "kind": "User", "name": USER}]}
            api.request("POST", f"/apis/{rbac}/namespaces/{ns}/roles", body=role)
            api.request("POST", f"/apis/{rbac}/namespaces/{ns}/rolebindings", body=binding)
    return names


async def page_times(
    api: k.Kube, settings: SignInSettings, loads: int, cookie: str
) -> tuple[list[float], str]:
    runner = web.AppRunner(create_app(api, OperatorConfig(metrics_port=0, health_port=0), settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    times, html = [], ""
    try:
        async with aiohttp.ClientSession(cookies={SESSION_COOKIE: cookie}) as session:
            for load in range(loads + 1):
                started = time.perf_counter()
                async with session.get(f"http://127.0.0.1:{port}/dashboard/") as response:
                    html = await response.text()
                    assert response.status == 200, (response.status, html[:300])
                if load:  # the first load warms connections (and, with a cache, the answers)
                    times.append(time.perf_counter() - started)
    finally:
        await runner.cleanup()
    return times, html


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--loads", type=int, default=20)
    args = parser.parse_args()
    with real_server(required=False) as kubeconfig:
        if kubeconfig is None:
            print("dashboard_signin: SubjectAccessReviews need a real API server; nothing measured")
            return 0
        api = client_for(kubeconfig, component="web")
        install_crds(api)
        names = populate(api, args.namespaces)
        time.sleep(1.0)  # RoleBindings reach the authorizer by a watch
        key = os.urandom(32)
        cookie = CookieSealer(key).seal(SESSION, {"sub": USER, "groups": ["system:authenticated"]}, 3600)
        def signed_in(cache_seconds: float) -> SignInSettings:
            return SignInSettings(mode=OIDC, issuer=ISSUER, client_id="bench", cookie_key=key,
                                  access_cache_seconds=cache_seconds)

        try:
            results = {}
            for label, settings in (
                ("open (none-unsafe), baseline", SignInSettings(mode=NONE_UNSAFE)),
                ("signed in, warm cache", signed_in(300)),
                ("signed in, no cache", signed_in(0)),
            ):
                times, html = asyncio.run(page_times(api, settings, args.loads, cookie))
                shown = sum(ns in html for ns in names)
                results[label] = statistics.median(times)
                print(f"{label:32s} median {results[label] * 1000:7.1f} ms  namespaces shown {shown}",
                      flush=True)
        finally:
            for ns in names:
                api.delete(k.NAMESPACE, ns)
        base = results["open (none-unsafe), baseline"]
        warm = results["signed in, warm cache"] / base
        cold = results["signed in, no cache"] / base
        ok = warm <= TARGET_WARM_RATIO
        print(f"ratio warm/baseline {warm:.2f} (target <= {TARGET_WARM_RATIO}: {verdict(ok)})")
        print(f"ratio cold/baseline {cold:.2f} ({2 * args.namespaces} reviews per page)")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
