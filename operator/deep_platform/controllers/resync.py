"""Periodic, level-based resync: every object reconciled again from one list call.

Not kopf timers: a timer makes kopf put its finalizer on every object (one more write each, and
deleting an object hangs while the operator is away) and runs one task per object.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import kopf

from . import runtime

log = logging.getLogger(__name__)

Work = Callable[[runtime.Runtime], None]


def every(seconds: float, name: str) -> Callable[[Work], Work]:
    """Run the decorated function in a thread every `seconds` while the operator runs."""

    def register(work: Work) -> Work:
        tasks: list[asyncio.Task[None]] = []

        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await asyncio.to_thread(work, runtime.current())
                except Exception:  # the next round tries again
                    log.exception("%s resync failed", name)

        @kopf.on.startup(id=f"{name}-resync-start")
        async def start(**_: Any) -> None:
            tasks.append(asyncio.get_running_loop().create_task(loop()))

        @kopf.on.cleanup(id=f"{name}-resync-stop")
        async def stop(**_: Any) -> None:
            while tasks:
                tasks.pop().cancel()

        return work

    return register
