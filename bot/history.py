"""The cross-channel conversation history an agent reads (a capped Redis stream per customer)."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.store import Store

MAX_ENTRIES = 1000


class History:
    """Append and read conversation entries: inbound, outbound and internal notes."""

    def __init__(self, store: Store, ttl: int) -> None:
        self.store = store
        self.k = store.keys
        self.ttl = ttl

    async def add(self, cid: str, *, direction: str, sender: str, text: str, channel: str = "",
                  agent: str = "", kind: str = "message", at: datetime | None = None,
                  ref: str = "") -> str:
        """direction: inbound|outbound|note; sender: customer|bot|agent."""
        when = (at or datetime.now(UTC)).isoformat()
        return await self.store.xadd(self.k.history(cid), {
            "direction": direction, "sender": sender, "text": text, "channel": channel,
            "agent": agent, "kind": kind, "at": when, "ref": ref,
        }, maxlen=MAX_ENTRIES, ttl=self.ttl)

    async def read(self, cid: str, limit: int = 200) -> list[dict[str, str]]:
        """Oldest first, at most `limit` newest entries."""
        entries = await self.store.xrevrange(self.k.history(cid), limit)
        return [dict(fields, id=entry_id) for entry_id, fields in reversed(entries)]
