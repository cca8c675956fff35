"""Subcommands `catalogue import` and `web`."""

from __future__ import annotations

import argparse
import pathlib
import sys

import yaml


def cmd_import(args: argparse.Namespace) -> int:
    from .importer import import_dir

    try:
        result = import_dir(pathlib.Path(args.directory))
    except NotADirectoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for error in result.errors:
        print(f"error: {error}", file=sys.stderr)
    text = yaml.safe_dump_all(result.modules, sort_keys=False, allow_unicode=True)
    if args.output:
        pathlib.Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    print(f"{len(result.modules)} module(s) imported, {len(result.errors)} file(s) with errors",
          file=sys.stderr)
    return 1 if result.errors else 0


def cmd_web(args: argparse.Namespace) -> int:
    from aiohttp import web as aioweb

    from ..config import OperatorConfig
    from ..kube import Kube, load_configuration
    from ..signin import SettingsError, SignInSettings
    from ..web import create_app

    config = OperatorConfig()
    if args.platform_namespace:
        config.platform_namespace = args.platform_namespace
    try:
        signin = SignInSettings.from_env()
    except SettingsError as exc:  # a sign-in setting (the chart's web.auth) is wrong
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        kube = Kube(load_configuration(), component="web")
    except Exception as exc:  # kubeconfig missing or unreadable
        print(f"error: no Kubernetes configuration found ({exc}); set KUBECONFIG", file=sys.stderr)
        return 1
    aioweb.run_app(create_app(kube, config, signin), port=args.port)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    catalogue = sub.add_parser("catalogue", help="the DEEP Open Catalogue")
    catalogue_sub = catalogue.add_subparsers(dest="catalogue_command", required=True, metavar="COMMAND")
    imp = catalogue_sub.add_parser(
        "import", help="turn a folder of AI4 metadata files (YAML/JSON, v1 or v2) into Module manifests"
    )
    imp.add_argument("directory", metavar="DIR")
    imp.add_argument("-o", "--output", help="write the manifests here instead of stdout")
    imp.set_defaults(func=cmd_import)

    web = sub.add_parser("web", help="serve the platform's pages (the catalogue under /catalogue/)")
    web.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    web.add_argument("--platform-namespace", help="namespace of the catalogue ConfigMaps")
    web.set_defaults(func=cmd_web)
