"""Handing conversations to human agents, race-safe across processes.

A conversation's owner lives in one Redis hash field changed only by compare-and-set:
bot -> queue (escalation) -> agent:<name> (claim) -> bot (hand back). Whoever loses a race
sees the winner. While the owner is not the bot, the bot stays silent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.config import BusinessHours
from bot.models import Owner
from bot.store import Store

AGENT_PRESENCE_SECONDS = 300


def agent_owner(name: str) -> str:
    """The owner value for an agent."""
    return f"agent:{name}"


@dataclass(slots=True)
class Escalation:
    """What happened when a conversation asked for a human."""

    escalated: bool  # False: it was already waiting or with an agent
    position: int  # 1-based place in the queue (0 when not queued)
    on_shift: bool
    opens_at: datetime | None  # next opening when nobody is on shift


class ClaimConflict(Exception):
    """Another agent (or the bot) owns the conversation."""

    def __init__(self, owner: str) -> None:
        super().__init__(f"conversation is owned by {owner or 'bot'}")
        self.owner = owner


class Handoff:
    """Queue, claims and hand-backs."""

    def __init__(self, store: Store, hours: BusinessHours | None, *,
                 clock: Callable[[], datetime] | None = None, conversation_ttl: int = 72 * 3600):
        self.store = store
        self.k = store.keys
        self.hours = hours
        self.clock = clock or (lambda: datetime.now(UTC))
        self.ttl = conversation_ttl

    async def owner(self, cid: str) -> str:
        """'bot', 'queue' or 'agent:<name>'."""
        return await self.store.hget(self.k.conversation(cid), "owner") or Owner.BOT.value

    async def escalate(self, cid: str, reason: str, channel: str) -> Escalation:
        """Move a bot-owned conversation to the queue (once, even under concurrent calls)."""
        now = self.clock()
        done, prev = await self.store.cas_field(self.k.conversation(cid), "owner",
                                                "", Owner.QUEUE.value)
        if not done and prev == Owner.BOT.value:
            done, prev = await self.store.cas_field(self.k.conversation(cid), "owner",
                                                    Owner.BOT.value, Owner.QUEUE.value)
        if done:
            await self.store.set_json(self.k.handoff(cid), {
                "reason": reason, "channel": channel, "created_at": now.isoformat(),
                "agent": None, "claimed_at": None,
            })
            # a sequence, not the clock, orders the queue: two escalations in one tick stay FIFO
            seq = await self.store.incr(self.k.handoff_sequence())
            await self.store.zadd(self.k.handoff_queue(), {cid: seq})
        rank = await self.store.zrank(self.k.handoff_queue(), cid)
        on_shift = await self.on_shift(now)
        return Escalation(done, (rank + 1) if rank is not None else 0, on_shift,
                          None if on_shift else self.next_opening(now))

    async def claim(self, cid: str, agent: str) -> None:
        """An agent takes a queued (or bot-owned) conversation; raise ClaimConflict if taken."""
        me = agent_owner(agent)
        for expect in (Owner.QUEUE.value, Owner.BOT.value, ""):
            done, prev = await self.store.cas_field(self.k.conversation(cid), "owner", expect, me)
            if done:
                break
            if prev == me:
                return
            if prev.startswith("agent:"):
                raise ClaimConflict(prev)
        else:
            raise ClaimConflict(await self.owner(cid))
        await self.store.zrem(self.k.handoff_queue(), cid)
        doc = await self.store.get_json(self.k.handoff(cid)) or {
            "reason": "agent_initiated", "channel": "", "created_at": self.clock().isoformat()}
        doc.update(agent=agent, claimed_at=self.clock().isoformat())
        await self.store.set_json(self.k.handoff(cid), doc)

    async def release(self, cid: str, agent: str) -> None:
        """Hand the conversation back to the bot; only its agent may."""
        done, prev = await self.store.cas_field(self.k.conversation(cid), "owner",
                                                agent_owner(agent), Owner.BOT.value)
        if not done:
            raise ClaimConflict(prev)
        doc = await self.store.get_json(self.k.handoff(cid)) or {}
        doc["released_at"] = self.clock().isoformat()
        await self.store.set_json(self.k.handoff(cid), doc, ttl=self.ttl)

    async def require_agent(self, cid: str, agent: str) -> None:
        """Raise ClaimConflict unless `agent` owns the conversation."""
        owner = await self.owner(cid)
        if owner != agent_owner(agent):
            raise ClaimConflict(owner)

    async def queue(self) -> list[dict]:
        """Waiting conversations, oldest first."""
        out = []
        for cid, _seq in await self.store.zrange_with_scores(self.k.handoff_queue()):
            doc = await self.store.get_json(self.k.handoff(cid)) or {}
            out.append({"conversation_id": cid, "waiting_since": doc.get("created_at", ""),
                        "reason": doc.get("reason", ""), "channel": doc.get("channel", "")})
        return out

    async def details(self, cid: str) -> dict:
        """The handoff record (reason, agent, times)."""
        return await self.store.get_json(self.k.handoff(cid)) or {}

    # ---- shifts
    async def set_on_shift(self, agent: str, on: bool) -> None:
        """Agent presence; renewed by the console while the agent works."""
        key = self.k.agents_on_shift()
        if on:
            await self.store.zadd(key, {agent: self.clock().timestamp()})
        else:
            await self.store.zrem(key, agent)

    async def agents_on_shift(self, now: datetime) -> list[str]:
        """Agents seen within the presence window."""
        cutoff = now.timestamp() - AGENT_PRESENCE_SECONDS
        return [a for a, seen in await self.store.zrange_with_scores(self.k.agents_on_shift())
                if seen >= cutoff]

    def within_hours(self, now: datetime) -> bool:
        """Whether `now` is inside business hours (pure)."""
        if self.hours is None:
            return True
        local = now.astimezone(self.hours.tz)
        return local.weekday() in self.hours.days and self.hours.opens <= local.time() < self.hours.closes

    async def on_shift(self, now: datetime) -> bool:
        """Inside business hours with at least one agent present."""
        return self.within_hours(now) and bool(await self.agents_on_shift(now))

    def next_opening(self, now: datetime) -> datetime:
        """The next time business hours start (pure)."""
        if self.hours is None:
            return now
        local = now.astimezone(self.hours.tz)
        for days in range(0, 8):
            day = (local + timedelta(days=days)).date()
            if day.weekday() not in self.hours.days:
                continue
            opening = datetime.combine(day, self.hours.opens, tzinfo=self.hours.tz)
            if opening > local:
                return opening
        return local

