"""The durable outbound queue: a Redis stream with a consumer group, at-least-once.

Every message carries an idempotency key; a key already marked sent is acknowledged without
sending again, so a crash-and-retry never double-sends what was confirmed. Entries a crashed
consumer held are reclaimed after `visibility_ms`. Retryable failures wait in a delay set
(honouring the provider's retry-after exactly, else exponential backoff with jitter) and come
back; permanent failures and exhausted retries go to a dead-letter stream.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.channels import Channel, Receipt, SendError
from bot.models import ChannelName, OutboundMessage
from bot.store import Store, is_unavailable

log = logging.getLogger(__name__)

GROUP = "senders"
SENT_TTL = 14 * 86400

#: Called after every final outcome: (message, receipt or None, error or None).
OutcomeHook = Callable[[OutboundMessage, Receipt | None, SendError | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry."""

    max_attempts: int = 8
    base: float = 2.0
    cap: float = 600.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        return random.uniform(0, min(self.cap, self.base * 2 ** attempt))  # noqa: S311


class Outbox:
    """Enqueue outbound messages; run senders that deliver them through the channels."""

    def __init__(self, store: Store, channels: Mapping[ChannelName, Channel], *,
                 retry: RetryPolicy = RetryPolicy(), visibility_ms: int = 60_000,
                 on_outcome: OutcomeHook | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.k = store.keys
        self.channels = dict(channels)
        self.retry = retry
        self.visibility_ms = visibility_ms
        self.hooks: list[OutcomeHook] = [on_outcome] if on_outcome else []
        self.clock = clock
        self._group_ready = False

    async def _ensure_group(self) -> None:
        if not self._group_ready:
            await self.store.ensure_group(self.k.outbox(), GROUP)
            self._group_ready = True

    async def enqueue(self, message: OutboundMessage) -> str:
        """Add a message to the stream; return the entry id."""
        await self._ensure_group()
        fields = message.to_fields()
        fields["attempt"] = "0"
        return await self.store.xadd(self.k.outbox(), fields)

    async def process_once(self, consumer: str, *, block_ms: int | None = None, count: int = 50) -> int:
        """One round: reclaim stuck entries, release due retries, send new entries."""
        await self._ensure_group()
        stream = self.k.outbox()
        await self.store.move_due(self.k.outbox_delayed(), stream, self.clock())
        entries = await self.store.xautoclaim(stream, GROUP, consumer, self.visibility_ms, count)
        entries += await self.store.xreadgroup(stream, GROUP, consumer, count, block_ms)
        for entry_id, fields in entries:
            await self._deliver(entry_id, fields)
        return len(entries)

    async def _deliver(self, entry_id: str, fields: dict[str, str]) -> None:
        stream = self.k.outbox()
        message = OutboundMessage.from_fields(fields)
        attempt = int(fields.get("attempt", "0"))
        sent_key = self.k.outbox_sent(message.idem)
        if await self.store.exists(sent_key):
            await self.store.xack(stream, GROUP, entry_id)
            await self.store.xdel(stream, entry_id)
            return
        channel = self.channels.get(message.address.channel)
        try:
            if channel is None:
                raise SendError(f"channel {message.address.channel} is not configured",
                                permanent=True, code="no_channel")
            receipt = await channel.send(message)
        except SendError as exc:
            await self._failed(entry_id, fields, message, attempt, exc)
            return
        except Exception as exc:  # an adapter bug must not lose the message: retry, then dead-letter
            log.exception("unexpected error sending %s", message.idem)
            await self._failed(entry_id, fields, message, attempt,
                               SendError(f"unexpected: {type(exc).__name__}", code="bug"))
            return
        await self.store.set_str(sent_key, receipt.provider_id, ttl=SENT_TTL)
        await self.store.xack(stream, GROUP, entry_id)
        await self.store.xdel(stream, entry_id)
        await self._outcome(message, receipt, None)

    async def _failed(self, entry_id: str, fields: dict[str, str], message: OutboundMessage,
                      attempt: int, exc: SendError) -> None:
        stream = self.k.outbox()
        if exc.permanent or attempt + 1 >= self.retry.max_attempts:
            dead = dict(fields, error=str(exc), code=exc.code, failed_at=str(self.clock()),
                        permanent="1" if exc.permanent else "0")
            await self.store.xadd(self.k.outbox_dead(), dead, maxlen=100_000)
            log.warning("outbound %s failed for good (%s): %s", message.idem, exc.code, exc)
            await self._outcome(message, None, exc)
        else:
            wait = exc.retry_after if exc.retry_after is not None else self.retry.backoff(attempt)
            retry_fields = dict(fields, attempt=str(attempt + 1))
            await self.store.delay(self.k.outbox_delayed(), retry_fields, self.clock() + wait)
        await self.store.xack(stream, GROUP, entry_id)
        await self.store.xdel(stream, entry_id)

    def add_outcome_hook(self, hook: OutcomeHook) -> None:
        """Be told of every final outcome (receipts, ledgers, fallbacks)."""
        self.hooks.append(hook)

    async def _outcome(self, message: OutboundMessage, receipt: Receipt | None,
                       error: SendError | None) -> None:
        for hook in self.hooks:
            try:
                await hook(message, receipt, error)
            except Exception:  # a broken listener must not undo a send
                log.exception("outcome hook %r failed for %s", hook, message.idem)

    async def run(self, consumer: str, stop: asyncio.Event, *, block_ms: int = 1000) -> None:
        """Send until `stop` is set; Redis hiccups are logged once and retried."""
        down = False
        while not stop.is_set():
            try:
                await self.process_once(consumer, block_ms=block_ms)
                if down:
                    log.info("outbox sender: Redis reachable again")
                    down = False
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                if not down:
                    log.error("outbox sender: Redis unavailable (%s); retrying", type(exc).__name__)
                    down = True
                await asyncio.sleep(1.0)

    async def dead_letters(self, count: int = 100) -> list[tuple[str, dict[str, Any]]]:
        """The newest dead-lettered messages."""
        return await self.store.xrevrange(self.k.outbox_dead(), count)

    async def replay(self, entry_id: str) -> bool:
        """Put a dead-lettered message back in the outbox with a fresh attempt count."""
        found = await self.store.xrange(self.k.outbox_dead(), entry_id, entry_id)
        if not found:
            return False
        fields = {k: v for k, v in found[0][1].items()
                  if k not in ("error", "code", "failed_at", "permanent")}
        fields["attempt"] = "0"
        await self._ensure_group()
        await self.store.xadd(self.k.outbox(), fields)
        await self.store.xdel(self.k.outbox_dead(), entry_id)
        return True
