"""`deep-platform gpu-agent`: the DaemonSet's command on every GPU node."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def add_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gpu-agent", help="read this node's GPUs (NVML), export metrics, publish the inventory"
    )
    parser.add_argument(
        "--node", default=os.environ.get("NODE_NAME"),
        help="this node's name (default: $NODE_NAME, set from spec.nodeName by the DaemonSet)",
    )
    parser.add_argument(
        "--namespace", default=os.environ.get("DEEP_PLATFORM_NAMESPACE", "deep-platform"),
        help="where the inventory ConfigMap goes (default: $DEEP_PLATFORM_NAMESPACE or deep-platform)",
    )
    parser.add_argument("--port", "--metrics-port", dest="port", type=int,
                        default=int(os.environ.get("DEEP_GPU_METRICS_PORT", "9400")),
                        help="port of /metrics (default 9400)")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between readings")
    parser.add_argument("--no-publish", action="store_true",
                        help="only export metrics; do not write the inventory ConfigMap")
    parser.add_argument("--proc-root", default=None,
                        help="host /proc: map GPU processes to pods (needs hostPID, and RBAC to list "
                             "pods: the chart's gpuAgent.podMapping); default: no mapping")
    parser.set_defaults(func=cmd_gpu_agent)


def cmd_gpu_agent(args: argparse.Namespace) -> int:
    import prometheus_client

    from .agent import ConfigMapPublisher, GpuAgent, pods_on_node, registry_for
    from .nvml import RealNvml

    node = args.node or os.uname().nodename
    publish = pods = None
    if not args.no_publish:
        from ..kube import Kube, load_configuration

        try:
            api = Kube(load_configuration(), component="gpu-agent")
        except Exception as exc:  # no cluster: still useful as a metrics exporter
            log.warning("no Kubernetes configuration (%s); exporting metrics only", exc)
        else:
            publish = ConfigMapPublisher(api, args.namespace)
            # without the host's /proc no process maps to a pod: listing pods would be wasted
            # calls (and forbidden by the chart's Role unless gpuAgent.podMapping is set)
            pods = pods_on_node(api, node) if args.proc_root else None
    agent = GpuAgent(RealNvml(), node, publish=publish, pods=pods, proc_root=Path(args.proc_root or "/proc"))
    prometheus_client.start_http_server(args.port, registry=registry_for(agent))
    log.info("GPU agent on node %s: metrics on :%d/metrics", node, args.port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    agent.run(stop, interval=args.interval)
    return 0
