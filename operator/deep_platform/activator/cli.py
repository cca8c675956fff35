"""`deep-platform activator`: run the activator (proxy and scaler) against the current cluster."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from typing import Any

log = logging.getLogger(__name__)


def add_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "activator", help="run the scale-from-zero proxy and scaler of InferenceServices"
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("DEEP_ACTIVATOR_HOST", "0.0.0.0"),
        help="address to listen on (default 0.0.0.0)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("DEEP_ACTIVATOR_PORT", "8080")),
        help="port of the proxy (default 8080)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("DEEP_ACTIVATOR_METRICS_PORT", "9090")),
        help="port of /metrics (default 9090)",
    )
    parser.add_argument(
        "--platform-namespace",
        default=os.environ.get("DEEP_PLATFORM_NAMESPACE", "deep-platform"),
        help="namespace of the activator's Leases (default deep-platform)",
    )
    parser.add_argument(
        "--cold-start-timeout",
        type=float,
        default=float(os.environ.get("DEEP_COLD_START_TIMEOUT", "120")),
        help="seconds a request waits for a cold start before a 503 (default 120)",
    )
    parser.add_argument(
        "--queue-limit",
        type=int,
        default=int(os.environ.get("DEEP_QUEUE_LIMIT", "1000")),
        help="requests held per starting service before 503s (default 1000)",
    )
    parser.add_argument(
        "--tick",
        type=float,
        default=float(os.environ.get("DEEP_SCALER_TICK", "1")),
        help="seconds between scaling decisions (default 1)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("DEEP_ACTIVATOR_WORKERS", "1")),
        help="processes sharing the proxy port with SO_REUSEPORT, one per core to use (default 1); "
        "worker i serves its own /metrics on metrics-port + i and holds its own Lease",
    )
    parser.add_argument(
        "--max-body-size",
        type=int,
        default=int(os.environ.get("DEEP_MAX_BODY_SIZE", str(100 * 1024 * 1024))),
        help="largest request body in bytes; bigger ones get 413 (default 100 MiB)",
    )
    auth = parser.add_argument_group("auth", "the site's default for services without spec.auth")
    auth.add_argument(
        "--auth-required",
        default=_flag(os.environ.get("DEEP_AUTH_REQUIRED", "true")),
        type=_flag,
        help="services need a token unless their spec.auth says public: true (default true)",
    )
    auth.add_argument("--oidc-issuer", default=os.environ.get("DEEP_OIDC_ISSUER") or None,
                      help="the site's OpenID Connect issuer URL")
    auth.add_argument("--oidc-audience", default=os.environ.get("DEEP_OIDC_AUDIENCE") or None,
                      help="the audience (aud) tokens of the site's issuer must carry")
    auth.add_argument("--groups-claim", default=os.environ.get("DEEP_OIDC_GROUPS_CLAIM", "groups"),
                      help="the claim listing a user's groups (default groups)")
    auth.add_argument("--username-claim", default=os.environ.get("DEEP_OIDC_USERNAME_CLAIM", "sub"),
                      help="the claim naming the user in messages (default sub)")
    auth.add_argument(
        "--secret-tokens",
        default=_flag(os.environ.get("DEEP_SECRET_TOKENS", "true")),
        type=_flag,
        help="accept spec.auth.tokenSecret (the activator then reads those Secrets; default true)",
    )
    parser.set_defaults(func=cmd_activator)


def _flag(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; write true or false")


def cmd_activator(args: argparse.Namespace) -> int:
    if args.workers < 1:
        print(f"error: --workers must be at least 1, not {args.workers}", file=sys.stderr)
        return 2
    if args.workers == 1:
        return run_worker(args, None)
    return supervise(args)


def supervise(args: argparse.Namespace) -> int:
    """Fork one process per worker (before any thread or event loop exists); when one ends,
    stop the others and exit with its status, so that Kubernetes restarts the whole pod."""
    children: dict[int, int] = {}
    for index in range(args.workers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.default_int_handler)
                code = run_worker(args, index)
            finally:
                os._exit(code)
        children[pid] = index

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    pid, status = os.wait()
    children.pop(pid, None)
    forward(signal.SIGTERM, None)
    for child in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1


def run_worker(args: argparse.Namespace, index: int | None) -> int:
    """One activator process; `index` is its worker number when there are several."""
    import prometheus_client

    from ..auth import SiteAuth
    from ..kube import Kube, load_configuration
    from .cluster import Cluster
    from .proxy import Activator, Settings, default_identity, run_loop
    from .signin import BrowserSignIn, SettingsError

    try:
        kube = Kube(load_configuration(), component="activator")
    except Exception as exc:  # kubeconfig missing or unreadable
        print(f"error: no Kubernetes configuration found ({exc}); set KUBECONFIG", file=sys.stderr)
        return 1
    site = SiteAuth(
        required=args.auth_required,
        issuer=args.oidc_issuer,
        audience=args.oidc_audience,
        groups_claim=args.groups_claim,
        username_claim=args.username_claim,
        secret_tokens=args.secret_tokens,
    )
    try:  # the OIDC client for browsers: DEEP_ACTIVATOR_* from the chart's activator.auth.browserSignIn
        browser = BrowserSignIn.from_env().check(site)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = Settings(
        platform_namespace=args.platform_namespace,
        cold_start_timeout=args.cold_start_timeout,
        queue_limit=args.queue_limit,
        tick=args.tick,
        max_body_size=args.max_body_size,
        auth=site,
        browser=browser,
    )
    identity = default_identity() if index is None else f"{default_identity()}-w{index}"
    metrics_port = args.metrics_port + (index or 0)
    # the chart's watchNamespaces: the activator's Roles exist only there
    watched = [ns.strip() for ns in os.environ.get("DEEP_WATCH_NAMESPACES", "").split(",") if ns.strip()]
    activator = Activator(Cluster(kube, settings.platform_namespace, identity, watched), settings)
    prometheus_client.start_http_server(metrics_port)
    log.info("activator %s on %s:%d, metrics on :%d/metrics", identity, args.host, args.port, metrics_port)
    with contextlib.suppress(KeyboardInterrupt):
        run_loop(run(activator, args.host, args.port, reuse_port=index is not None))
    return 0


async def run(activator: Any, host: str, port: int, reuse_port: bool = False) -> None:
    from .proxy import serve
    from .scaler import Scaler

    runner = await serve(activator, host, port, reuse_port=reuse_port)
    try:
        await Scaler(activator).run()
    finally:
        await runner.cleanup()
