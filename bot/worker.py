"""The worker process: inbound turns and the outbox sender (and, as they land, polling and
notifications), each a tracked task, stopped cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable

from bot.services import Services

log = logging.getLogger(__name__)


def consumer_name(role: str) -> str:
    """A consumer-group name unique to this process."""
    return f"{role}-{socket.gethostname()}-{os.getpid()}"


async def run_worker(services: Services, stop: asyncio.Event,
                     extra: list[Callable[[asyncio.Event], Awaitable[None]]] | None = None) -> None:
    """Run every background loop until `stop` is set; a crashed loop stops the process."""
    loops = [
        services.engine.run(consumer_name("engine"), stop),
        services.outbox.run(consumer_name("sender"), stop),
        services.scheduler.run(stop),
        services.notifier.run(stop),
        *[job(stop) for job in (extra or [])],
    ]
    tasks = [asyncio.create_task(coro) for coro in loops]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception():
                log.error("worker loop failed: %r", task.exception())
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT set `stop` so loops finish their current item."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # pragma: no cover - non-Unix
            pass
