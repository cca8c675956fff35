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


#: (flag, environment variable, default, type, help): each option's default is read from its
#: variable, which the chart sets; argparse converts it as it converts the flag's value
OPTIONS: tuple[tuple[str, str, str | None, Any, str], ...] = (
    ("--host", "DEEP_ACTIVATOR_HOST", "0.0.0.0", str, "address to listen on (default 0.0.0.0)"),
    ("--port", "DEEP_ACTIVATOR_PORT", "8080", int, "port of the proxy (default 8080)"),
    ("--metrics-port", "DEEP_ACTIVATOR_METRICS_PORT", "9090", int, "port of /metrics (default 9090)"),
    ("--platform-namespace", "DEEP_PLATFORM_NAMESPACE", "deep-platform", str,
     "namespace of the activator's Leases (default deep-platform)"),
    ("--cold-start-timeout", "DEEP_COLD_START_TIMEOUT", "120", float,
     "seconds a request waits for a cold start before a 503 (default 120)"),
    ("--queue-limit", "DEEP_QUEUE_LIMIT", "1000", int,
     "requests held per starting service before 503s (default 1000)"),
    ("--tick", "DEEP_SCALER_TICK", "1", float, "seconds between scaling decisions (default 1)"),
    ("--workers", "DEEP_ACTIVATOR_WORKERS", "1", int,
     "processes sharing the proxy port with SO_REUSEPORT, one per core to use (default 1); "
     "worker i serves its own /metrics on metrics-port + i and holds its own Lease"),
    ("--max-body-size", "DEEP_MAX_BODY_SIZE", str(100 * 1024 * 1024), int,
     "largest request body in bytes; bigger ones get 413 (default 100 MiB)"),
)
#: the site's default for services without spec.auth
AUTH_OPTIONS: tuple[tuple[str, str, str | None, Any, str], ...] = (
    ("--auth-required", "DEEP_AUTH_REQUIRED", "true", "flag",
     "services need a token unless their spec.auth says public: true (default true)"),
    ("--oidc-issuer", "DEEP_OIDC_ISSUER", None, str, "the site's OpenID Connect issuer URL"),
    ("--oidc-audience", "DEEP_OIDC_AUDIENCE", None, str,
     "the audience (aud) tokens of the site's issuer must carry"),
    ("--groups-claim", "DEEP_OIDC_GROUPS_CLAIM", "groups", str,
     "the claim listing a user's groups (default groups)"),
    ("--username-claim", "DEEP_OIDC_USERNAME_CLAIM", "sub", str,
     "the claim naming the user in messages (default sub)"),
    ("--secret-tokens", "DEEP_SECRET_TOKENS", "true", "flag",
     "accept spec.auth.tokenSecret (the activator then reads those Secrets; default true)"),
)


def add_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "activator", help="run the scale-from-zero proxy and scaler of InferenceServices"
    )
    auth = parser.add_argument_group("auth", "the site's default for services without spec.auth")
    for group, options in ((parser, OPTIONS), (auth, AUTH_OPTIONS)):
        for flag, variable, default, kind, text in options:
            # an empty variable counts as unset; a string default goes through `type` as a value does
            group.add_argument(flag, default=os.environ.get(variable) or default,
                               type=_flag if kind == "flag" else kind, help=text)
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
