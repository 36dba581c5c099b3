"""The outbox under load and under a killed sender, against the fake Telegram's real limits.

Rate limits are Redis token buckets shared by every sender process, so these tests run two
`Outbox` instances (two "processes", each with its own Bot) on one Redis where it matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.channels import ChannelLimits, Receipt, SendError
from bot.channels.telegram import TelegramChannel
from bot.models import Address, ChannelName, OutboundMessage
from bot.outbox import GROUP, UNKNOWN_OUTCOME, Outbox
from bot.store import Store
from tests.conftest import make_settings
from tests.fakes.telegram import FakeTelegram

SECRET = "whsec_0123456789abcdef-XYZ"
TG = ChannelName.TELEGRAM


def wall_clock() -> datetime:
    return datetime.now(UTC)


class TimedTelegram(FakeTelegram):
    """The fake on the wall clock, with a network delay, the time each send was accepted,
    and a gate that can hold sendMessage calls before or after Telegram accepts them."""

    def __init__(self, *, latency: float = 0.0, **kwargs: Any) -> None:
        super().__init__(clock=wall_clock, **kwargs)
        self.latency = latency
        self.accepted: list[tuple[float, int, str]] = []  # (monotonic time, chat, text)
        self.gate: asyncio.Event | None = None
        self.hold_after_accept = True
        self.held = 0

    async def _api_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.gate is not None and not self.hold_after_accept:
            self.held += 1
            await self.gate.wait()
        result = await super()._api_sendMessage(params)
        self.accepted.append((time.monotonic(), params["chat_id"], params["text"]))
        if self.gate is not None and self.hold_after_accept:
            self.held += 1
            await self.gate.wait()
        if self.latency:
            await asyncio.sleep(self.latency)
        return result


class Outcomes:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Receipt | None, SendError | None]] = []

    async def __call__(self, message: OutboundMessage, receipt: Receipt | None,
                       error: SendError | None) -> None:
        self.calls.append((message.idem, receipt, error))


def note(idem: str, chat: int | str, text: str,
         channel: ChannelName = TG) -> OutboundMessage:
    return OutboundMessage(idem=idem, address=Address(channel, str(chat)), text=text,
                           kind="notification")


async def queue_state(store: Store) -> tuple[int, int, int]:
    k = store.keys
    return (await store.xlen(k.outbox()), await store.xpending_count(k.outbox(), GROUP),
            len(await store.zrange_with_scores(k.outbox_delayed())))


@contextlib.asynccontextmanager
async def telegram_senders(store: Store, fake: FakeTelegram, n: int,
                           **outbox_kw: Any) -> AsyncIterator[list[Outbox]]:
    """`n` sender processes: each its own TelegramChannel (own Bot) and Outbox."""
    settings = make_settings(telegram_bot_token=fake.token, telegram_api_base_url=fake.url,
                             telegram_webhook_secret=SECRET)
    channels = [TelegramChannel(settings, store) for _ in range(n)]
    try:
        for channel in channels:
            await channel.bot()
        yield [Outbox(store, {TG: channel}, **outbox_kw) for channel in channels]
    finally:
        for channel in channels:
            await channel.close()


async def until(condition: Any, seconds: float, step: float = 0.02) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(step)


async def stop_all(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)


# ---------------------------------------------------------------- burst

def check_limits(fake: TimedTelegram) -> tuple[float, int, float]:
    """No 429s, at most 30 accepted in any second, >= 1 s between two sends to one chat.
    Returns (average rate, busiest second, closest per-chat spacing)."""
    statuses = Counter(c["status"] for c in fake.calls if c["method"] == "sendMessage")
    assert set(statuses) == {200}, f"the fake refused some sends: {statuses}"
    times = sorted(t for t, _, _ in fake.accepted)
    busiest = max(sum(1 for u in times[i:] if u - t < 1.0) for i, t in enumerate(times))
    assert busiest <= 30
    by_chat: dict[int, list[float]] = defaultdict(list)
    for t, chat, _ in fake.accepted:
        by_chat[chat].append(t)
    spacing = min(b - a for ts in by_chat.values() for a, b in zip(ts, ts[1:], strict=False))
    assert spacing >= 1.0
    return (len(times) - 1) / (times[-1] - times[0]), busiest, spacing


@pytest.mark.slow
async def test_a_burst_of_300_to_100_chats_keeps_the_flood_limits_and_each_chats_order(
        store: Store) -> None:
    async with TimedTelegram(latency=0.1) as fake, telegram_senders(store, fake, 1) as (box,):
        for chat in range(100):  # three each, back to back: the hard order for per-chat spacing
            for n in range(3):
                await box.enqueue(note(f"n:{chat}:{n}", 7_000 + chat, f"update {n}"))
        stop = asyncio.Event()
        started = time.monotonic()
        task = asyncio.create_task(box.run("sender", stop, block_ms=200))
        await until(lambda: len(fake.accepted) >= 300, 40, step=0.05)
        wall = time.monotonic() - started
        await stop_all(stop, [task])

    assert Counter((chat, text) for _, chat, text in fake.accepted) == {
        (7_000 + chat, f"update {n}"): 1 for chat in range(100) for n in range(3)}
    rate, busiest, spacing = check_limits(fake)
    texts: dict[int, list[str]] = defaultdict(list)
    for _, chat, text in fake.accepted:
        texts[chat].append(text)
    assert all(t == ["update 0", "update 1", "update 2"] for t in texts.values())
    print(f"\nburst, one sender: 300 messages to 100 chats in {wall:.2f} s, {rate:.1f} msg/s, "
          f"busiest second {busiest}, closest per-chat spacing {spacing:.3f} s, 429s: 0")
    assert 24.0 <= rate <= 30.0
    assert wall < 15, "300 sends at 100 ms latency each ran (nearly) one at a time"
    assert await queue_state(store) == (0, 0, 0)


@pytest.mark.slow
async def test_two_sender_processes_share_the_flood_limits(store: Store) -> None:
    async with TimedTelegram(latency=0.05) as fake, \
            telegram_senders(store, fake, 2) as senders:
        for chat in range(50):
            for n in range(3):
                await senders[0].enqueue(note(f"m:{chat}:{n}", 9_000 + chat, f"update {n}"))
        stop = asyncio.Event()
        started = time.monotonic()
        tasks = [asyncio.create_task(box.run(f"sender-{i}", stop, block_ms=200))
                 for i, box in enumerate(senders)]
        await until(lambda: len(fake.accepted) >= 150, 30, step=0.05)
        wall = time.monotonic() - started
        await stop_all(stop, tasks)

    assert Counter((chat, text) for _, chat, text in fake.accepted) == {
        (9_000 + chat, f"update {n}"): 1 for chat in range(50) for n in range(3)}
    rate, busiest, spacing = check_limits(fake)
    print(f"\nburst, two senders: 150 messages to 50 chats in {wall:.2f} s, {rate:.1f} msg/s, "
          f"busiest second {busiest}, closest per-chat spacing {spacing:.3f} s, 429s: 0")
    assert 20.0 <= rate <= 30.0
    assert await queue_state(store) == (0, 0, 0)


async def test_one_recipient_at_a_time_in_order_and_recipients_concurrently(
        store: Store) -> None:
    class SlowChannel:
        name = ChannelName.SMS
        limits = ChannelLimits(max_text=1600, per_second=1000.0)

        def __init__(self) -> None:
            self.sent: list[str] = []
            self.busy: Counter[str] = Counter()
            self.overlap = 0

        async def send(self, message: OutboundMessage) -> Receipt:
            who = message.address.user
            self.busy[who] += 1
            self.overlap = max(self.overlap, self.busy[who])
            await asyncio.sleep(0.2)
            self.busy[who] -= 1
            self.sent.append(message.idem)
            return Receipt(f"SM{len(self.sent)}")

    sms = SlowChannel()
    box = Outbox(store, {ChannelName.SMS: sms})
    for n in range(3):
        for who in ("+385910000001", "+385910000002", "+385910000003"):
            await box.enqueue(note(f"{who}:{n}", who, "x", channel=ChannelName.SMS))
    started = time.monotonic()
    assert await box.process_once("a") == 9
    took = time.monotonic() - started
    assert sms.overlap == 1, "two sends to one recipient at once"
    for who in ("+385910000001", "+385910000002", "+385910000003"):
        assert [i for i in sms.sent if i.startswith(who)] == [f"{who}:{n}" for n in range(3)]
    assert took < 1.2, f"9 sends of 200 ms to 3 recipients took {took:.2f} s"


async def test_a_long_rate_wait_parks_the_message_without_counting_an_attempt(
        store: Store) -> None:
    class PacedChannel:
        name = ChannelName.SMS
        limits = ChannelLimits(max_text=1600, per_second=100.0, per_chat_per_second=2.0)

        def __init__(self) -> None:
            self.sent: list[tuple[float, str]] = []

        async def send(self, message: OutboundMessage) -> Receipt:
            self.sent.append((time.monotonic(), message.idem))
            return Receipt(f"SM{len(self.sent)}")

    sms = PacedChannel()
    outcomes = Outcomes()
    box = Outbox(store, {ChannelName.SMS: sms}, max_wait=0.1, on_outcome=outcomes)
    for n in range(3):
        await box.enqueue(note(f"p:{n}", "+385910000009", f"part {n}", channel=ChannelName.SMS))
    await box.process_once("a")
    assert [i for _, i in sms.sent] == ["p:0"]
    parked = await store.zrange_with_scores(store.keys.outbox_delayed())
    assert [(json.loads(m)["idem"], json.loads(m)["attempt"]) for m, _ in parked] == [
        ("p:1", "0"), ("p:2", "0")]
    assert parked[0][1] < parked[1][1]
    assert await box.dead_letters() == [] and [c[0] for c in outcomes.calls] == ["p:0"]
    deadline = time.monotonic() + 5
    while len(sms.sent) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        await box.process_once("a")
        for m, _ in await store.zrange_with_scores(store.keys.outbox_delayed()):
            assert json.loads(m)["attempt"] == "0"
    assert [i for _, i in sms.sent] == ["p:0", "p:1", "p:2"]
    gaps = [b - a for (a, _), (b, _) in zip(sms.sent, sms.sent[1:], strict=False)]
    assert min(gaps) >= 1 / 2.0
    assert await queue_state(store) == (0, 0, 0)


async def test_parts_sent_before_a_crash_are_not_sent_again(store: Store) -> None:
    class SplittingChannel:
        name = ChannelName.SMS
        limits = ChannelLimits(max_text=10)

        def __init__(self) -> None:
            self.sent: list[str] = []

        def split(self, message: OutboundMessage) -> list[OutboundMessage]:
            return [OutboundMessage(f"{message.idem}#{i}", message.address, part)
                    for i, part in enumerate(message.text.split("|"), 1)]

        async def send(self, message: OutboundMessage) -> Receipt:
            self.sent.append(message.text)
            return Receipt(f"SM-{message.text}")

    sms = SplittingChannel()
    box = Outbox(store, {ChannelName.SMS: sms})
    await store.set_str(store.keys.outbox_sent("s:resume#1"), "SM-one")
    await box.enqueue(note("s:resume", "+385910000001", "one|two|three", channel=ChannelName.SMS))
    for n in (1, 2):
        await store.set_str(store.keys.outbox_sent(f"s:all#{n}"), f"SM-{n}")
    await box.enqueue(note("s:all", "+385910000002", "1|2", channel=ChannelName.SMS))
    await box.process_once("a")
    assert sorted(sms.sent) == ["three", "two"]
    assert await store.get_str(store.keys.outbox_sent("s:resume")) == "SM-three"
    assert await store.get_str(store.keys.outbox_sent("s:all")) == "SM-2"
    assert await queue_state(store) == (0, 0, 0)


# ---------------------------------------------------------------- killed mid-send

async def drain(box: Outbox, store: Store, seconds: float = 15) -> None:
    """Run rescue rounds until nothing is left in the stream or the delay set."""
    deadline = time.monotonic() + seconds
    while await queue_state(store) != (0, 0, 0):
        if time.monotonic() > deadline:
            raise AssertionError(f"outbox not drained: {await queue_state(store)}")
        await box.process_once("rescuer")
        await asyncio.sleep(0.1)


async def kill_mid_send(store: Store, fake: TimedTelegram) -> list[str]:
    """Enqueue two messages for each of four chats, let a sender take them all, kill it while
    Telegram holds the first send of every chat; return the texts."""
    texts = [f"chat {c} message {n}" for c in range(4) for n in range(2)]
    async with telegram_senders(store, fake, 1, visibility_ms=300) as (doomed,):
        for c in range(4):
            for n in range(2):
                await doomed.enqueue(note(f"k:{c}:{n}", 8_000 + c, f"chat {c} message {n}"))
        fake.gate = asyncio.Event()
        stop = asyncio.Event()
        task = asyncio.create_task(doomed.run("doomed", stop, block_ms=100))
        await until(lambda: fake.held == 4, 5)
        await asyncio.sleep(0.1)
        task.cancel()  # the process dies: no stop, no drain
        with contextlib.suppress(asyncio.CancelledError):
            await task
    fake.gate.set()
    fake.gate = None
    await asyncio.sleep(0.1)
    return texts


async def test_killed_after_telegram_accepted_nothing_is_sent_twice(store: Store) -> None:
    async with TimedTelegram() as fake:
        texts = await kill_mid_send(store, fake)
        assert sorted(t for _, _, t in fake.accepted) == [t for t in texts if "message 0" in t]
        outcomes = Outcomes()
        async with telegram_senders(store, fake, 1, visibility_ms=300,
                                    on_outcome=outcomes) as (rescuer,):
            await drain(rescuer, store)
    # every message reached Telegram exactly once
    assert Counter(t for _, _, t in fake.accepted) == dict.fromkeys(texts, 1)
    # the four on the wire when the sender died: not resent, reported as unknown
    dead = await rescuer.dead_letters()
    assert sorted((f["idem"], f["code"], f["permanent"]) for _, f in dead) == [
        (f"k:{c}:0", UNKNOWN_OUTCOME, "0") for c in range(4)]
    assert sorted((i, e.code if e else None) for i, _, e in outcomes.calls) == sorted(
        [(f"k:{c}:0", UNKNOWN_OUTCOME) for c in range(4)] + [(f"k:{c}:1", None) for c in range(4)])
    # the four that were only waiting for their rate token were sent normally
    for c in range(4):
        assert await store.exists(store.keys.outbox_sent(f"k:{c}:1"))
    assert [c["status"] for c in fake.calls if c["method"] == "sendMessage"] == [200] * 4


async def test_killed_before_telegram_accepted_the_message_waits_in_dead_letters(
        store: Store) -> None:
    """What we do NOT guarantee: a request cut off before Telegram took it is not resent by
    itself (we cannot tell it from an accepted one); it is dead-lettered for a replay."""
    async with TimedTelegram() as fake:
        fake.hold_after_accept = False
        texts = await kill_mid_send(store, fake)
        assert fake.accepted == []  # the cut-off requests never reached the chats
        async with telegram_senders(store, fake, 1, visibility_ms=300) as (rescuer,):
            await drain(rescuer, store)
            assert sorted(t for _, _, t in fake.accepted) == [t for t in texts if "message 1" in t]
            dead = await rescuer.dead_letters()
            assert sorted(f["idem"] for _, f in dead) == [f"k:{c}:0" for c in range(4)]
            for entry_id, _ in dead:
                assert await rescuer.replay(entry_id)
            await drain(rescuer, store)
    assert Counter(t for _, _, t in fake.accepted) == dict.fromkeys(texts, 1)
    assert await rescuer.dead_letters() == []


async def test_a_channel_that_can_be_asked_is_asked_instead_of_guessing(store: Store) -> None:
    class LedgerChannel:
        """A provider with a message log we can query (Twilio-like)."""

        name = ChannelName.SMS
        limits = ChannelLimits(max_text=1600)

        def __init__(self) -> None:
            self.log: dict[str, Receipt] = {}
            self.sends: list[str] = []
            self.hang = asyncio.Event()
            self.accept_then_hang: set[str] = set()
            self.hang_before_accept: set[str] = set()

        async def send(self, message: OutboundMessage) -> Receipt:
            self.sends.append(message.idem)
            if message.idem in self.hang_before_accept:
                await self.hang.wait()
            receipt = Receipt(f"SM{len(self.sends)}")
            self.log[message.text] = receipt
            if message.idem in self.accept_then_hang:
                await self.hang.wait()
            return receipt

        async def lookup_sent(self, message: OutboundMessage, since: float) -> Receipt | None:
            return self.log.get(message.text)

    sms = LedgerChannel()
    sms.accept_then_hang.add("q:accepted")
    sms.hang_before_accept.add("q:lost")
    doomed = Outbox(store, {ChannelName.SMS: sms}, visibility_ms=200)
    await doomed.enqueue(note("q:accepted", "+385910000001", "accepted", channel=ChannelName.SMS))
    await doomed.enqueue(note("q:lost", "+385910000002", "lost", channel=ChannelName.SMS))
    task = asyncio.create_task(doomed.process_once("doomed"))
    await until(lambda: len(sms.sends) == 2, 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    sms.accept_then_hang.clear()
    sms.hang_before_accept.clear()
    outcomes = Outcomes()
    rescuer = Outbox(store, {ChannelName.SMS: sms}, visibility_ms=200, on_outcome=outcomes)
    await drain(rescuer, store)
    assert sorted(sms.sends) == ["q:accepted", "q:lost", "q:lost"]  # only the lost one again
    assert sorted((i, r.provider_id if r else None) for i, r, _ in outcomes.calls) == [
        ("q:accepted", sms.log["accepted"].provider_id), ("q:lost", sms.log["lost"].provider_id)]
    assert await store.get_str(store.keys.outbox_sent("q:accepted")) == \
        sms.log["accepted"].provider_id
    assert await rescuer.dead_letters() == []
