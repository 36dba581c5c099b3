"""Consent per customer and channel, with time and source (STOP/START, shop import, chat)."""

from __future__ import annotations

import json
from datetime import datetime

from bot.store import Store


class Consent:
    """One record per (customer, channel): opted in or out, when, and how we learned it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.k = store.keys

    async def set(self, cid: str, channel: str, opted_in: bool, source: str, at: datetime) -> None:
        """Record a decision (the newest one wins)."""
        await self.store.hset(self.k.consent(cid), {channel: json.dumps(
            {"opted_in": opted_in, "source": source, "at": at.isoformat()})})

    async def get(self, cid: str) -> dict[str, dict]:
        """channel -> {opted_in, source, at}."""
        return {ch: json.loads(v) for ch, v in (await self.store.hgetall(self.k.consent(cid))).items()}

    async def opted_out(self, cid: str, channel: str) -> bool:
        """Whether the customer told us to stop on this channel."""
        raw = await self.store.hget(self.k.consent(cid), channel)
        return bool(raw) and not json.loads(raw)["opted_in"]
