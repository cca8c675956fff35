"""`deep-platform activator`: run the activator (proxy and scaler) against the current cluster."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
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
    parser.set_defaults(func=cmd_activator)


def cmd_activator(args: argparse.Namespace) -> int:
    import prometheus_client

    from ..kube import Kube, load_configuration
    from .cluster import Cluster
    from .proxy import Activator, Settings, default_identity

    try:
        kube = Kube(load_configuration(), component="activator")
    except Exception as exc:  # kubeconfig missing or unreadable
        print(f"error: no Kubernetes configuration found ({exc}); set KUBECONFIG", file=sys.stderr)
        return 1
    settings = Settings(
        platform_namespace=args.platform_namespace,
        cold_start_timeout=args.cold_start_timeout,
        queue_limit=args.queue_limit,
        tick=args.tick,
    )
    identity = default_identity()
    activator = Activator(Cluster(kube, settings.platform_namespace, identity), settings)
    prometheus_client.start_http_server(args.metrics_port)
    log.info(
        "activator %s on %s:%d, metrics on :%d/metrics", identity, args.host, args.port, args.metrics_port
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(activator, args.host, args.port))
    return 0


async def run(activator: Any, host: str, port: int) -> None:
    from .proxy import serve
    from .scaler import Scaler

    runner = await serve(activator, host, port)
    try:
        await Scaler(activator).run()
    finally:
        await runner.cleanup()
