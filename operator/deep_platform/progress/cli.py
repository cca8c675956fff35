"""`deep-platform report`: one progress report, or `--follow FILE` (the collector sidecar)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from .client import ReportFailed, send
from .parse import LineParser
from .report import BadReport, Report, parse_report

log = logging.getLogger(__name__)


def _metric(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write a metric as NAME=NUMBER, like loss=0.3") from None


def add_commands(sub: Any) -> None:
    parser = sub.add_parser(
        "report",
        help="report training progress from a TrainingJob's pod "
        "(DEEP_PROGRESS_URL, DEEP_PROGRESS_TOKEN_FILE)",
    )
    parser.add_argument("--epoch", type=int, help="epochs done")
    parser.add_argument("--total", type=int, help="epochs in all")
    parser.add_argument("--step", type=int, help="steps done")
    parser.add_argument("--total-steps", type=int, help="steps in all")
    parser.add_argument(
        "metrics", nargs="*", type=_metric, metavar="NAME=VALUE", help="metrics, like loss=0.3"
    )
    parser.add_argument(
        "--follow",
        metavar="FILE",
        help="read the training's output from FILE as it grows and report what it prints, "
        "until SIGTERM (the stdout collector)",
    )
    parser.add_argument("--pattern", help="regular expression of one metric, groups `name` and `value`")
    parser.add_argument("--interval", type=float, default=2.0, help="--follow: seconds between reports")
    parser.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    if args.follow:
        return follow(args.follow, args.pattern, args.interval)
    body: dict[str, Any] = {
        wire: value
        for wire, value in (
            ("epoch", args.epoch),
            ("totalEpochs", args.total),
            ("step", args.step),
            ("totalSteps", args.total_steps),
        )
        if value is not None
    }
    if args.metrics:
        body["metrics"] = dict(args.metrics)
    try:
        parse_report(body)  # the endpoint's own check, before any request
        send(body)
    except (BadReport, ReportFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _merge(into: Report | None, more: Report) -> Report:
    if into is None:
        return more
    for attr in ("epoch", "total_epochs", "step", "total_steps"):
        if getattr(more, attr) is not None:
            setattr(into, attr, getattr(more, attr))
    into.metrics.update(more.metrics)
    return into


def follow(path: str, pattern: str | None, interval: float) -> int:
    """Tail `path` (the training's output, teed there by its wrapper) and report; never fails
    the pod: a report that does not go through is kept and sent with the next one."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    log.info("reporting the progress %s shows, until SIGTERM", path)
    parser = LineParser(pattern)
    unsent: Report | None = None
    last_sent = 0.0
    while not os.path.exists(path) and not stopping.wait(0.2):
        pass
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8", errors="replace") as output:
        partial = ""
        while True:
            chunk = output.readline()
            if chunk:
                partial += chunk
                if partial.endswith("\n"):
                    parser.feed(partial)
                    partial = ""
                continue
            done = stopping.is_set()
            if done and partial:
                parser.feed(partial)
            found = parser.report()
            if found is not None:
                unsent = _merge(unsent, found)
            if unsent is not None and (done or time.monotonic() - last_sent >= interval):
                try:
                    send(unsent.to_json())
                    unsent, last_sent = None, time.monotonic()
                except ReportFailed as exc:
                    log.warning("progress report not sent (kept for the next): %s", exc)
                    last_sent = time.monotonic()
            if done:
                return 0
            stopping.wait(0.2)
