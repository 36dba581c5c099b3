"""Worker loops that outlive Redis hiccups, logging once when it goes and once when it is back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.store import is_unavailable

log = logging.getLogger(__name__)


class Outage:
    """Tracks whether Redis is reachable for one loop; logs each change of state once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False

    def ok(self) -> None:
        """The last round reached Redis."""
        if self.down:
            log.info("%s: Redis reachable again", self.name)
            self.down = False

    def failed(self, exc: Exception) -> None:
        """A round failed: re-raise anything that is not Redis being unreachable."""
        if not is_unavailable(exc):
            raise exc
        if not self.down:
            log.error("%s: Redis unavailable (%s); retrying", self.name, type(exc).__name__)
            self.down = True


async def keep_running(name: str, step: Callable[[], Awaitable[int]], stop: asyncio.Event, *,
                       idle: float = 1.0) -> None:
    """Call `step` until `stop`; when it did nothing (returned 0) or Redis was away, wait
    `idle` seconds (or until stop)."""
    outage = Outage(name)
    while not stop.is_set():
        done = 0
        try:
            done = await step()
            outage.ok()
        except Exception as exc:
            outage.failed(exc)
        if done == 0:
            try:
                await asyncio.wait_for(stop.wait(), timeout=idle)
            except TimeoutError:
                pass
