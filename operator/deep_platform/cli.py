"""`deep-platform`: every component of the platform is a subcommand of one program."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from typing import Any

import yaml

from .config import OperatorConfig

#: modules that add subcommands of their component: each has `add_commands(subparsers)`,
#: which sets `func` (args -> exit code) on its parsers
COMMAND_MODULES: list[str] = [
    "deep_platform.gpu.cli",
    "deep_platform.catalogue.cli",
    "deep_platform.activator.cli",
    "deep_platform.progress.cli",
]


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for noisy in ("kubernetes", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # its "Retrying..." warnings repeat what the one-line error says
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def cmd_crds(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .api.crdgen import KINDS, all_crds_yaml, crd_filename, render_yaml

    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        for kind in KINDS:
            (out / crd_filename(kind)).write_text(render_yaml(kind), encoding="utf-8")
            print(out / crd_filename(kind))
        return 0
    sys.stdout.write(all_crds_yaml())
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .offline import validate

    try:
        found = validate(args.filename)
    except (OSError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in found:
        print(line, file=sys.stderr)
    if found:
        print(f"{len(found)} problem(s) found", file=sys.stderr)
        return 1
    print(f"{', '.join(args.filename)}: valid")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from .offline import render, to_yaml

    config = OperatorConfig()
    if args.platform_namespace:
        config.platform_namespace = args.platform_namespace
    try:
        objects = render(args.filename, config)
    except (OSError, yaml.YAMLError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(to_yaml(objects))
    return 0


def cmd_check(_: argparse.Namespace) -> int:
    """Exit 0 when a cluster with the CRDs is reachable, else 1 with the one-line reason."""
    from .kube import Kube, load_configuration
    from .operator import PreflightError, preflight

    try:
        preflight(Kube(load_configuration()))
    except PreflightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # no kubeconfig at all
        print(f"error: no Kubernetes configuration found ({exc}); set KUBECONFIG", file=sys.stderr)
        return 1
    print("cluster reachable, CRDs installed")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:  # before the controllers are imported: they read settings at import
        config = OperatorConfig()
    except ValueError as exc:  # a setting from the environment (the chart's values) is wrong
        print(f"error: {exc}", file=sys.stderr)
        return 1

    import prometheus_client

    from .kube import Kube, load_configuration
    from .operator import PreflightError, preflight, run

    if args.namespace:
        config.namespaces = list(args.namespace)
    if args.platform_namespace:
        config.platform_namespace = args.platform_namespace
    if args.metrics_port is not None:
        config.metrics_port = args.metrics_port
    if args.progress_port is not None:
        config.progress_port = args.progress_port
    try:
        api = Kube(load_configuration())
    except Exception as exc:  # kubeconfig missing or unreadable
        print(
            f"error: no Kubernetes configuration found ({exc}); set KUBECONFIG or run "
            "`kubectl config use-context NAME`. Without a cluster, try "
            "`deep-platform render -f examples/`",
            file=sys.stderr,
        )
        return 1
    try:
        preflight(api)
    except PreflightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    prometheus_client.start_http_server(config.metrics_port)
    scope = ", ".join(config.namespaces) if config.namespaces else "all namespaces"
    logging.getLogger("deep_platform").info(
        "operator watching %s; metrics on :%d/metrics, liveness on :%d/healthz",
        scope,
        config.metrics_port,
        config.health_port,
    )
    asyncio.run(run(api, config, liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deep-platform",
        description="The DEEP-Hybrid-DataCloud platform on Kubernetes.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run_p = sub.add_parser("run", help="run the operator against the current kube context")
    run_p.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="watch only this namespace (repeatable); default: the whole cluster",
    )
    run_p.add_argument("--platform-namespace", help="namespace of the catalogue and activator")
    run_p.add_argument("--metrics-port", type=int, help="port of /metrics (default 8000)")
    run_p.add_argument(
        "--progress-port", type=int,
        help="serve the training progress endpoint on this port (default: DEEP_PROGRESS_PORT; none)",
    )
    run_p.set_defaults(func=cmd_run)

    check_p = sub.add_parser("check", help="is a cluster with the CRDs reachable?")
    check_p.set_defaults(func=cmd_check)

    crds_p = sub.add_parser("crds", help="print the CustomResourceDefinitions")
    crds_p.add_argument("-o", "--output-dir", help="write one file per CRD into this folder")
    crds_p.set_defaults(func=cmd_crds)

    render_p = sub.add_parser(
        "render",
        help="print what the operator would create, offline, as `kubectl apply -f -` takes it",
    )
    render_p.add_argument(
        "-f", "--filename", action="append", required=True, help="manifest file or folder (repeatable)"
    )
    render_p.add_argument("--platform-namespace", help="namespace of the catalogue")
    render_p.set_defaults(func=cmd_render)

    validate_p = sub.add_parser("validate", help="check manifests against the CRD schemas")
    validate_p.add_argument(
        "-f", "--filename", action="append", required=True, help="manifest file or folder (repeatable)"
    )
    validate_p.set_defaults(func=cmd_validate)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> Any:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
