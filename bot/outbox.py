"""The durable outbound queue: a Redis stream with a consumer group, at-least-once.

Every message carries an idempotency key. Before the provider call the sender claims the key
("in flight", SET NX, naming the stream entry); after the provider accepts, it marks the key
sent. So a key already marked sent is acknowledged without sending again, and two senders
holding duplicates of one key never both send.

Entries a crashed consumer held are reclaimed after `visibility_ms`. If the crash came while
the provider call was on the wire, the claim is still there and nobody can tell whether the
provider accepted the message. A channel that can be asked (an optional
`lookup_sent(message, since) -> Receipt | None`) is asked; for the others (Telegram cannot be
asked what a bot sent) the message is NOT sent again: it goes to the dead-letter stream with
code `unknown_outcome`, where an operator sees it and can `replay` it. A message whose
delivery the provider confirmed is never sent twice; one that was on the wire when its sender
died is sent at most once.

Rate limits are token buckets in Redis shared by every process: one per channel sender
(`keys.rate("<channel>")`, `limits.per_second`) and one per recipient
(`keys.rate("<channel>:<user>")`, `limits.per_chat_per_second`), of capacity SENDER_BURST and
1, both run at HEADROOM times the declared rate; one token per provider call. (A bucket of capacity C lets
C + rate tokens through in a second, so a one-second bucket would allow 60 sends in the first
second against Telegram's "30 in any second".) A short wait is slept; a long one parks the
message in the delay set (not a failed attempt). A channel may split a message into several
provider calls with `split(message) -> [OutboundMessage]` (parts get idempotency keys of their
own and are paced like any send).

Within one sender process, entries for one recipient go out one at a time in stream order
(one parked for a rate limit or a provider's retry-after keeps its place: later ones to that
recipient park behind it; one waiting out a failure's backoff does not hold the others up),
and different recipients go out concurrently. Across sender processes the buckets still space the sends,
but two processes may each hold an entry for the same recipient and send them in either order.

Retryable failures wait in the delay set (the provider's retry-after exactly, else exponential
backoff with jitter) and come back; permanent failures and exhausted retries go to the
dead-letter stream.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.channels import Channel, Receipt, SendError
from bot.loop import Outage
from bot.models import Address, ChannelName, OutboundMessage
from bot.store import Store

log = logging.getLogger(__name__)

GROUP = "senders"
SENT_TTL = 14 * 86400
INFLIGHT_TTL = 86400
UNKNOWN_OUTCOME = "unknown_outcome"
#: Providers count sends in sliding windows on their own clock; we run this much below the
#: declared rate so that network jitter between our token and their clock never trips a 429.
HEADROOM = 0.93
#: The sender bucket banks a fifth of a token, so a waiter woken a few ms late loses no
#: capacity, while any one second still sees at most 1.2 + 0.93 * rate sends.
SENDER_BURST = 1.2

#: Called after every final outcome: (message, receipt or None, error or None).
OutcomeHook = Callable[[OutboundMessage, Receipt | None, SendError | None], Awaitable[None]]
Entry = tuple[str, dict[str, str]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry."""

    max_attempts: int = 8
    base: float = 2.0
    cap: float = 600.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        return random.uniform(0, min(self.cap, self.base * 2 ** attempt))  # noqa: S311


@dataclass(slots=True)
class _Lane:
    """One recipient's entries held by this consumer."""

    recipient: str
    hold: float = 0.0  # (outbox clock) nothing goes to this recipient before then


class Outbox:
    """Enqueue outbound messages; run senders that deliver them through the channels.

    `clock` (epoch seconds) times retries and parking; `rate_clock` must be the wall clock
    every process shares, because the rate buckets live in Redis.
    """

    def __init__(self, store: Store, channels: Mapping[ChannelName, Channel], *,
                 retry: RetryPolicy = RetryPolicy(), visibility_ms: int = 60_000,
                 on_outcome: OutcomeHook | None = None,
                 clock: Callable[[], float] = time.time,
                 rate_clock: Callable[[], float] = time.time,
                 max_wait: float = 2.0, max_in_flight: int = 100) -> None:
        self.store = store
        self.k = store.keys
        self.channels = dict(channels)
        self.retry = retry
        self.visibility_ms = visibility_ms
        self.hooks: list[OutcomeHook] = [on_outcome] if on_outcome else []
        self.clock = clock
        self.rate_clock = rate_clock
        self.max_wait = max_wait
        self.max_in_flight = max_in_flight
        self._group_ready = False
        self._sender_locks: dict[ChannelName, asyncio.Lock] = {}
        self._next_ok: dict[str, float] = {}  # recipient -> rate_clock time of its next token

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

    # ------------------------------------------------------------------ reading
    async def _read(self, consumer: str, count: int, block_ms: int | None) -> list[Entry]:
        await self._ensure_group()
        stream = self.k.outbox()
        await self.store.move_due(self.k.outbox_delayed(), stream, self.clock())
        entries = await self.store.xautoclaim(stream, GROUP, consumer, self.visibility_ms, count)
        if len(entries) < count:
            entries += await self.store.xreadgroup(stream, GROUP, consumer,
                                                   count - len(entries), block_ms)
        return entries

    async def process_once(self, consumer: str, *, block_ms: int | None = None, count: int = 50) -> int:
        """One round: reclaim stuck entries, release due ones, send new entries; wait for all."""
        entries = await self._read(consumer, count, block_ms)
        lanes = _Lanes(self)
        lanes.dispatch(entries)
        await lanes.drain()
        if lanes.errors:
            raise lanes.errors[0]
        return len(entries)

    async def run(self, consumer: str, stop: asyncio.Event, *, block_ms: int = 1000) -> None:
        """Send until `stop` is set, keeping up to `max_in_flight` entries moving at once.

        On stop, entries already taken are finished first. Redis hiccups are logged once
        and retried.
        """
        lanes = _Lanes(self)
        outage = Outage("outbox sender")
        try:
            while not stop.is_set():
                try:
                    if lanes.errors:
                        raise lanes.errors.pop(0)
                    room = self.max_in_flight - lanes.in_flight
                    if room <= 0:
                        await lanes.wait_for_change(block_ms / 1000)
                        continue
                    wait_ms = block_ms if lanes.in_flight == 0 else min(block_ms, 100)
                    lanes.dispatch(await self._read(consumer, room, wait_ms))
                    outage.ok()
                except Exception as exc:
                    outage.failed(exc)
                    await asyncio.sleep(1.0)
            await lanes.drain()
        finally:
            await lanes.cancel()

    # ------------------------------------------------------------------ one entry
    async def _open_lane(self, recipient: str) -> _Lane:
        lane = _Lane(recipient)
        try:
            address = Address.parse(recipient)
        except ValueError:
            return lane
        held = await self.store.get_str(self._hold_key(address))
        lane.hold = float(held) if held else 0.0
        return lane

    async def _deliver(self, entry_id: str, fields: dict[str, str], lane: _Lane) -> None:
        try:
            message = OutboundMessage.from_fields(fields)
        except (KeyError, ValueError, TypeError) as exc:
            await self._dead(fields, f"undecodable entry: {type(exc).__name__}", "undecodable",
                             permanent=True)
            await self._done(entry_id)
            log.warning("outbox entry %s cannot be decoded; dead-lettered", entry_id)
            return
        attempt = int(fields.get("attempt", "0") or 0)
        channel = self.channels.get(message.address.channel)
        if channel is None:
            await self._failed(entry_id, fields, message, attempt, SendError(
                f"channel {message.address.channel} is not configured", permanent=True,
                code="no_channel"), lane)
            return
        if lane.hold > self.clock() and "parked" not in fields:
            # an earlier message to this recipient is parked: queue up behind it
            await self._park(entry_id, fields, message, channel, lane, lane.hold)
            return
        state, claim = await self._claim(message.idem, entry_id)
        if state in ("sent", "duplicate"):
            await self._done(entry_id)
            return
        if state == "busy":  # a live sender still has it: leave it pending
            return
        if state == "unknown":
            claim = await self._unknown(entry_id, fields, message, channel, claim)
            if not claim:
                return
        await self._send(entry_id, fields, message, channel, attempt, lane, claim)

    async def _send(self, entry_id: str, fields: dict[str, str], message: OutboundMessage,
                    channel: Channel, attempt: int, lane: _Lane, claim: str) -> None:
        receipt: Receipt | None = None
        try:
            split = getattr(channel, "split", None)
            parts = split(message) if split is not None else [message]
            for part in parts:
                done = await self.store.get_str(self.k.outbox_sent(part.idem)) \
                    if len(parts) > 1 else None
                if done is not None:  # this part went out before a retry or a crash
                    receipt = Receipt(done)
                    continue
                wait = await self._gate(channel, message.address)
                if wait > 0:
                    await self._release(message.idem)
                    await self._park(entry_id, fields, message, channel, lane,
                                     self.clock() + wait)
                    return
                claim = await self._calling(message.idem, entry_id, claim)
                if not claim:  # taken over while we waited: the new holder finishes it
                    return
                receipt = await channel.send(part)
                if len(parts) > 1:
                    await asyncio.shield(self.store.set_str(
                        self.k.outbox_sent(part.idem), receipt.provider_id, ttl=SENT_TTL))
        except SendError as exc:
            await self._release(message.idem)
            await self._failed(entry_id, fields, message, attempt, exc, lane)
            return
        except Exception as exc:  # an adapter bug must not lose the message: retry, then dead-letter
            log.exception("unexpected error sending %s", message.idem)
            await self._release(message.idem)
            await self._failed(entry_id, fields, message, attempt,
                               SendError(f"unexpected: {type(exc).__name__}", code="bug"), lane)
            return
        assert receipt is not None
        # a cancelled sender still records what the provider accepted
        await asyncio.shield(self._sent(entry_id, message.idem, receipt))
        await self._outcome(message, receipt, None)

    async def _sent(self, entry_id: str, idem: str, receipt: Receipt) -> None:
        await self.store.set_str(self.k.outbox_sent(idem), receipt.provider_id, ttl=SENT_TTL)
        await self._done(entry_id)
        await self._release(idem)

    async def _done(self, entry_id: str) -> None:
        stream = self.k.outbox()
        await self.store.xack(stream, GROUP, entry_id)
        await self.store.xdel(stream, entry_id)

    # ------------------------------------------------------------------ idempotency claims
    # The claim on a key is one hash field "<entry id> <started> <phase>", changed only by
    # compare-and-set: phase "wait" (taking rate tokens, nothing sent yet) or "call" (the
    # provider call is under way, from its start time until the outcome is recorded).
    def _inflight_key(self, idem: str) -> str:
        return self.k.shared("outbox", f"inflight:{idem}")

    def _claim_value(self, entry_id: str, phase: str) -> str:
        return f"{entry_id} {self.rate_clock():.6f} {phase}"

    async def _cas(self, idem: str, expect: str, new: str) -> bool:
        done, _ = await self.store.cas_field(self._inflight_key(idem), "v", expect, new,
                                             ttl=INFLIGHT_TTL)
        return done

    async def _release(self, idem: str) -> None:
        await self.store.delete(self._inflight_key(idem))

    async def _claim(self, idem: str, entry_id: str) -> tuple[str, str]:
        """(state, claim): 'go' (claimed), 'sent', 'duplicate' (another entry has the key),
        'busy' (a live sender has this entry) or 'unknown' (its sender died mid-call)."""
        sent = self.k.outbox_sent(idem)
        mine = self._claim_value(entry_id, "wait")
        done, held = await self.store.cas_field(self._inflight_key(idem), "v", "", mine,
                                                ttl=INFLIGHT_TTL)
        if done:
            if await self.store.exists(sent):  # sent just before we claimed
                await self._release(idem)
                return "sent", ""
            return "go", mine
        if await self.store.exists(sent):
            return "sent", ""
        holder, started, phase = (held.split(" ") + ["", "", ""])[:3]
        if holder != entry_id:
            return "duplicate", ""
        if self.rate_clock() - float(started or 0) < self.visibility_ms / 1000:
            return "busy", ""
        if phase == "call":
            return "unknown", held
        # its sender died before calling the provider: nothing went out, take it over
        return ("go", mine) if await self._cas(idem, held, mine) else ("busy", "")

    async def _calling(self, idem: str, entry_id: str, claim: str) -> str:
        """Move our claim to 'call' right before the provider call; '' if we lost it."""
        calling = self._claim_value(entry_id, "call")
        return calling if await self._cas(idem, claim, calling) else ""

    async def _unknown(self, entry_id: str, fields: dict[str, str], message: OutboundMessage,
                       channel: Channel, held: str) -> str:
        """A sender died during the provider call. Returns our claim to send it, or ''."""
        since = float((held.split(" ") + ["0", "0"])[1] or 0)
        lookup = getattr(channel, "lookup_sent", None)
        if lookup is not None:  # a provider that can be asked what it accepted
            receipt = await lookup(message, since)
            mine = self._claim_value(entry_id, "wait")
            if receipt is None:
                return mine if await self._cas(message.idem, held, mine) else ""
            await self._sent(entry_id, message.idem, receipt)
            await self._outcome(message, receipt, None)
            return ""
        error = SendError("the sender stopped during the provider call; delivery unknown, "
                          "not sent again to avoid a duplicate", code=UNKNOWN_OUTCOME)
        await self._dead(fields, str(error), UNKNOWN_OUTCOME, permanent=False)
        await self._release(message.idem)
        await self._done(entry_id)
        log.warning("outbound %s: outcome unknown after a sender died; dead-lettered",
                    message.idem)
        await self._outcome(message, None, error)
        return ""

    # ------------------------------------------------------------------ rate limits
    def _hold_key(self, address: Address) -> str:
        return self.k.address_state(address.channel.value, address.user, "outbox-hold")

    async def _gate(self, channel: Channel, address: Address) -> float:
        """Take the send tokens for one provider call: 0 = go now, else seconds to park."""
        limits = channel.limits
        sender_rate = limits.per_second * HEADROOM
        chat_rate = limits.per_chat_per_second * HEADROOM
        recipient = str(address)
        while True:
            if chat_rate > 0:  # our own last send to this recipient: skip a doomed attempt
                ready = self._next_ok.get(recipient, 0.0) - self.rate_clock()
                if ready > self.max_wait:
                    return ready
                if ready > 0:
                    await asyncio.sleep(ready)
            if sender_rate > 0:
                lock = self._sender_locks.setdefault(channel.name, asyncio.Lock())
                async with lock:  # one waiter per process polls the shared sender bucket
                    key = self.k.rate(channel.name.value)
                    while wait := await self.store.take_token(key, SENDER_BURST, sender_rate,
                                                              self.rate_clock()):
                        if wait > self.max_wait:
                            return wait
                        await asyncio.sleep(wait)
            if chat_rate <= 0:
                return 0.0
            wait = await self.store.take_token(self.k.rate(recipient), 1, chat_rate,
                                               self.rate_clock())
            if not wait:
                self._remember(recipient, self.rate_clock() + 1 / chat_rate)
                return 0.0
            # another process sent to this recipient just now (our sender token is spent)
            if wait > self.max_wait:
                return wait
            self._remember(recipient, self.rate_clock() + wait)

    def _remember(self, recipient: str, next_ok: float) -> None:
        if len(self._next_ok) > 10_000:
            now = self.rate_clock()
            self._next_ok = {r: t for r, t in self._next_ok.items() if t > now}
        self._next_ok[recipient] = next_ok

    async def _park(self, entry_id: str, fields: dict[str, str], message: OutboundMessage,
                    channel: Channel, lane: _Lane, due: float) -> None:
        """Wait in the delay set (not a failed attempt); later ones to this recipient queue
        up behind it, so the recipient still gets them in order."""
        per_chat = channel.limits.per_chat_per_second
        step = 1 / (per_chat * HEADROOM) if per_chat > 0 else 0.001
        if lane.hold > self.clock():
            due = max(due, lane.hold + step)
        await self._hold(message.address, lane, due)
        await self.store.delay(self.k.outbox_delayed(), dict(fields, parked=repr(due)), due)
        await self._done(entry_id)

    async def _hold(self, address: Address, lane: _Lane, due: float) -> None:
        lane.hold = max(lane.hold, due)
        ttl = max(1, int(lane.hold - self.clock()) + 60)
        await self.store.set_str(self._hold_key(address), repr(lane.hold), ttl=ttl)

    # ------------------------------------------------------------------ failures
    async def _dead(self, fields: dict[str, str], error: str, code: str, *,
                    permanent: bool) -> None:
        dead = dict(fields, error=error, code=code, failed_at=str(self.clock()),
                    permanent="1" if permanent else "0")
        await self.store.xadd(self.k.outbox_dead(), dead, maxlen=100_000)

    async def _failed(self, entry_id: str, fields: dict[str, str], message: OutboundMessage,
                      attempt: int, exc: SendError, lane: _Lane) -> None:
        if exc.permanent or attempt + 1 >= self.retry.max_attempts:
            await self._dead(fields, str(exc), exc.code, permanent=exc.permanent)
            log.warning("outbound %s failed for good (%s): %s", message.idem, exc.code, exc)
            await self._outcome(message, None, exc)
        else:
            wait = exc.retry_after if exc.retry_after is not None else self.retry.backoff(attempt)
            due = self.clock() + wait
            retry_fields = dict(fields, attempt=str(attempt + 1), parked=repr(due))
            await self.store.delay(self.k.outbox_delayed(), retry_fields, due)
            if exc.retry_after is not None:  # flood control: the ones behind it wait too
                await self._hold(message.address, lane, due)
        await self._done(entry_id)

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

    # ------------------------------------------------------------------ dead letters
    async def dead_letters(self, count: int = 100) -> list[tuple[str, dict[str, Any]]]:
        """The newest dead-lettered messages."""
        return await self.store.xrevrange(self.k.outbox_dead(), count)

    async def replay(self, entry_id: str) -> bool:
        """Put a dead-lettered message back in the outbox with a fresh attempt count."""
        found = await self.store.xrange(self.k.outbox_dead(), entry_id, entry_id)
        if not found:
            return False
        fields = {k: v for k, v in found[0][1].items()
                  if k not in ("error", "code", "failed_at", "permanent", "parked")}
        fields["attempt"] = "0"
        await self._ensure_group()
        if fields.get("idem"):
            await self._release(fields["idem"])
        await self.store.xadd(self.k.outbox(), fields)
        await self.store.xdel(self.k.outbox_dead(), entry_id)
        return True


class _Lanes:
    """Entries one consumer holds: a sequential lane per recipient, lanes run concurrently."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.queues: dict[str, deque[Entry]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.held: set[str] = set()  # entry ids taken and not finished
        self.errors: list[Exception] = []
        self._changed = asyncio.Event()

    @property
    def in_flight(self) -> int:
        return len(self.held)

    def dispatch(self, entries: Iterable[Entry]) -> None:
        for entry_id, fields in entries:
            if entry_id in self.held:  # our own slow entry, reclaimed by us: already queued
                continue
            self.held.add(entry_id)
            recipient = fields.get("address", "")
            queue = self.queues.get(recipient)
            if queue is None:
                queue = self.queues[recipient] = deque()
                task = asyncio.create_task(self._lane(recipient, queue))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            queue.append((entry_id, fields))

    async def _lane(self, recipient: str, queue: deque[Entry]) -> None:
        try:
            lane = await self.outbox._open_lane(recipient)
            while queue:
                entry_id, fields = queue[0]
                await self.outbox._deliver(entry_id, fields, lane)
                queue.popleft()
                self.held.discard(entry_id)
                self._changed.set()
        except Exception as exc:  # Redis trouble: the rest stays pending and is reclaimed
            self.errors.append(exc)
            self.held.difference_update(entry_id for entry_id, _ in queue)
            queue.clear()
            self._changed.set()
        finally:
            if self.queues.get(recipient) is queue:
                del self.queues[recipient]

    async def wait_for_change(self, seconds: float) -> None:
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), seconds)
        except TimeoutError:
            pass

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks))

    async def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
