"""Benchmark: the activator's throughput when it checks an OIDC token on every request, against
the same activator serving a public service, in the same run.

    python bench/activator_auth.py [--rounds 3] [--seconds 5]

Two InferenceServices behind one activator process, the same backend (the tiny aiohttp app of
bench/activator.py): `open` (spec.auth.public) and `guarded` (spec.auth.oidc: an RS256 token of
the local issuer of tests/harness/oidc_issuer.py, signature, issuer, audience, expiry and group
checked on each request; the keys fetched once and cached). A verified token's claims are
reused for up to a minute (its expiry and the group are still checked per request), so the
default measures that path; a second activator process with that reuse turned off measures a
full RS256 verification per request. Load from wrk (one thread, 32 keep-alive connections,
loopback), interleaved rounds, median. Prints the ratios to `open`. A third load on `guarded`
sends no token but the activator's browser session cookie (activator/signin.py: the HS256 cookie
opened and its claims checked against the policy on each request, the cookie dropped before
forwarding), to compare a signed-in browser with a bearer token in the same run.
Target: the default check costs at most a third of the throughput (ratio >= 0.67), a session too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.activator import WRK_CONNECTIONS, stop, throughput, wait_http  # noqa: E402
from deep_platform.activator.signin import APP, SESSION_COOKIE  # noqa: E402
from deep_platform.signin.session import SESSION, CookieSealer  # noqa: E402
from tests.harness.ports import free_port  # noqa: E402

NS = "default"
AUDIENCE = "deep-platform"
TARGET = 0.67


#: the activator's session cookie key in this benchmark
COOKIE_KEY = b"bench-cookie-key-of-thirty-two-bytes"


def run_activator(port: int, apiserver_url: str, backend_port: int, reuse: bool, issuer_url: str) -> None:
    from deep_platform.activator import Activator, Cluster, Scaler, Settings
    from deep_platform.activator.proxy import run_loop, serve
    from deep_platform.activator.signin import BrowserSignIn
    from deep_platform.auth import SiteAuth, tokens
    from tests.harness.operator_fixtures import kube_for

    if not reuse:
        tokens.VERIFIED_TTL = 0.0  # every request verifies the signature again

    async def main() -> None:
        identity = f"bench-auth-{port}"
        settings = Settings(platform_namespace="deep-platform", identity=identity, tick=0.1,
                            auth=SiteAuth(required=False, issuer=issuer_url, audience=AUDIENCE),
                            browser=BrowserSignIn(client_id="bench", cookie_key=COOKIE_KEY))
        activator = Activator(
            Cluster(kube_for(apiserver_url), "deep-platform", identity),
            settings,
            lambda _ns, _name: f"http://127.0.0.1:{backend_port}",
        )
        await serve(activator, "127.0.0.1", port)
        print("ready", flush=True)
        await Scaler(activator).run()

    run_loop(main())


def set_up_cluster(api: Any, issuer_url: str) -> None:
    for name, auth in (
        ("open", {"public": True}),
        ("guarded", {"oidc": {"issuer": issuer_url, "audience": AUDIENCE, "allowedGroups": ["ml"]}}),
    ):
        api.create(
            {
                "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
                "kind": "InferenceService",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"image": "bench", "auth": auth},
            }
        )
        api.create(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-x",
                    "namespace": NS,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 5000, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["10.244.0.1"], "conditions": {"ready": True}}],
            }
        )


async def wrk(url: str, seconds: int, header: str | None) -> float:
    return await throughput(url, seconds, WRK_CONNECTIONS, header)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--activator", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.activator:
        port, url, backend, reuse, issuer_url = args.activator
        run_activator(int(port), url, int(backend), reuse == "1", issuer_url)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk); it generates the load", file=sys.stderr)
        return 1

    from tests.harness.apiserver import ApiServer
    from tests.harness.oidc_issuer import OidcIssuer

    processes: list[subprocess.Popen[bytes]] = []
    backend_port, activator_port, uncached_port = free_port(), free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'operator'}"}
    with OidcIssuer() as issuer, ApiServer.running() as api:
        api.load_crds(ROOT / "crds")
        set_up_cluster(api, issuer.url)
        try:
            processes.append(
                subprocess.Popen(
                    [sys.executable, str(ROOT / "bench" / "activator.py"), "--backend", str(backend_port)]
                )
            )
            for port, reuse in ((activator_port, "1"), (uncached_port, "0")):
                command = [
                    sys.executable,
                    __file__,
                    "--activator",
                    str(port),
                    api.url,
                    str(backend_port),
                    reuse,
                    issuer.url,
                ]
                processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env))
            base = f"http://127.0.0.1:{activator_port}/{NS}"
            uncached = f"http://127.0.0.1:{uncached_port}/{NS}"
            token = issuer.mint("bench", audience=AUDIENCE, groups=["ml"], expires_in=3600)
            header = f"Authorization: Bearer {token}"
            session = CookieSealer(COOKIE_KEY, app=APP).seal(
                SESSION, {"iss": issuer.url, "sub": "bench", "groups": ["ml"], "name": "bench"}, 3600
            )
            cookie = f"Cookie: {SESSION_COOKIE}={session}; theme=dark"
            wait_http(f"{base}/open/v2/models/")
            wait_http(f"{uncached}/open/v2/models/")
            rounds: dict[str, list[float]] = {"open": [], "guarded": [], "guarded-session": [],
                                              "guarded-uncached": []}
            for _ in range(args.rounds):
                rounds["open"].append(asyncio.run(wrk(f"{base}/open/v2/models/", args.seconds, None)))
                rounds["guarded"].append(asyncio.run(wrk(f"{base}/guarded/v2/models/", args.seconds, header)))
                rounds["guarded-session"].append(
                    asyncio.run(wrk(f"{base}/guarded/v2/models/", args.seconds, cookie))
                )
                rounds["guarded-uncached"].append(
                    asyncio.run(wrk(f"{uncached}/guarded/v2/models/", args.seconds, header))
                )
        finally:
            stop(processes)
        fetches = issuer.requests["/jwks"]
    rps = {name: statistics.median(values) for name, values in rounds.items()}
    ratio = rps["guarded"] / rps["open"]
    for name, values in rounds.items():
        print(f"{name:<16} median {rps[name]:8.0f} req/s  rounds: {', '.join(f'{v:.0f}' for v in values)}")
    print(f"throughput ratio guarded (OIDC token checked per request) / open: {ratio:.2f}")
    print(
        "throughput ratio guarded, signature verified on every request / open: "
        f"{rps['guarded-uncached'] / rps['open']:.2f}"
    )
    session_ratio = rps["guarded-session"] / rps["open"]
    print(f"throughput ratio guarded, browser session cookie instead of a token / open: {session_ratio:.2f}"
          f" (session / token: {rps['guarded-session'] / rps['guarded']:.2f})")
    print(f"key set fetches during the run: {fetches} (one per activator process expected)")
    checks = {f"ratio >= {TARGET}": ratio >= TARGET, f"session ratio >= {TARGET}": session_ratio >= TARGET,
              "keys fetched once per process": fetches == 2}
    for label, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {label}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
