"""The durable outbox on the real Redis: idempotency, retries, dead letters, replay, reclaim.

Only the channel side is a test double (`FakeChannel`); the outbox, its stream, consumer
group, delay set and dead-letter stream are the real thing.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from bot import outbox as outbox_mod
from bot.channels import ChannelLimits, Receipt, SendError
from bot.models import Address, Button, ChannelName, OutboundMessage
from bot.outbox import GROUP, Outbox, RetryPolicy
from bot.store import Store


class FakeChannel:
    """Records what it was asked to send; fails on demand for chosen idempotency keys."""

    limits = ChannelLimits(max_text=1600)

    def __init__(self, name: ChannelName = ChannelName.SMS, *, latency: float = 0.0) -> None:
        self.name = name
        self.latency = latency
        self.attempts: list[str] = []  # idem of every send call, in order
        self.sent: list[OutboundMessage] = []  # messages accepted
        self._failures: dict[str, list[BaseException]] = {}
        self._always: dict[str, BaseException] = {}

    def fail_next(self, idem: str, *errors: BaseException) -> None:
        """The next len(errors) sends of `idem` raise these, in order."""
        self._failures.setdefault(idem, []).extend(errors)

    def fail_always(self, idem: str, error: BaseException) -> None:
        self._always[idem] = error

    def heal(self) -> None:
        self._failures.clear()
        self._always.clear()

    async def send(self, message: OutboundMessage) -> Receipt:
        self.attempts.append(message.idem)
        if self.latency:
            await asyncio.sleep(self.latency)
        if message.idem in self._always:
            raise self._always[message.idem]
        queued = self._failures.get(message.idem)
        if queued:
            raise queued.pop(0)
        self.sent.append(message)
        return Receipt(provider_id=f"SM{len(self.sent):04d}", status="queued")


class FloatClock:
    """A controllable epoch-seconds clock for the Outbox `clock=` parameter."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Outcomes:
    """An on_outcome hook that keeps what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[OutboundMessage, Receipt | None, SendError | None]] = []

    async def __call__(self, message: OutboundMessage, receipt: Receipt | None,
                       error: SendError | None) -> None:
        self.calls.append((message, receipt, error))


def msg(idem: str = "n:1", *, channel: ChannelName = ChannelName.SMS,
        text: str = "Vaša pošiljka je na putu 🚚") -> OutboundMessage:
    return OutboundMessage(
        idem=idem, address=Address(channel, "+385911234567"), text=text,
        buttons=[Button("track", "Prati")], customer_id="c1", kind="notification",
        template="shipped", locale="hr", content={"eta": "2026-11-24"})


@pytest.fixture
def clock() -> FloatClock:  # overrides the datetime clock of conftest for this module
    return FloatClock()


@pytest.fixture
def sms() -> FakeChannel:
    return FakeChannel()


@pytest.fixture
def outcomes() -> Outcomes:
    return Outcomes()


@pytest.fixture
def box(store: Store, sms: FakeChannel, clock: FloatClock, outcomes: Outcomes) -> Outbox:
    return Outbox(store, {ChannelName.SMS: sms}, clock=clock, on_outcome=outcomes,
                  retry=RetryPolicy(max_attempts=4, base=2.0, cap=60.0))


async def queue_state(store: Store) -> tuple[int, int, int]:
    """(entries in the stream, pending in the group, parked in the delay set)."""
    k = store.keys
    return (await store.xlen(k.outbox()), await store.xpending_count(k.outbox(), GROUP),
            len(await store.zrange_with_scores(k.outbox_delayed())))


# ---------------------------------------------------------------- sending and idempotency

async def test_a_message_is_sent_acked_and_marked(box: Outbox, store: Store, sms: FakeChannel,
                                                  outcomes: Outcomes) -> None:
    m = msg("n:ok")
    await box.enqueue(m)
    assert await box.process_once("a") == 1
    assert len(sms.sent) == 1
    got = sms.sent[0]
    assert (got.idem, got.address, got.text, got.buttons, got.content, got.locale) == (
        m.idem, m.address, m.text, m.buttons, m.content, m.locale)
    assert await queue_state(store) == (0, 0, 0)
    assert await store.get_str(store.keys.outbox_sent("n:ok")) == "SM0001"
    assert 0 < await store.ttl(store.keys.outbox_sent("n:ok")) <= outbox_mod.SENT_TTL
    assert [(c[0].idem, c[1], c[2]) for c in outcomes.calls] == [
        ("n:ok", Receipt("SM0001", "queued"), None)]


async def test_same_idempotency_key_twice_sends_once(box: Outbox, store: Store,
                                                     sms: FakeChannel) -> None:
    await box.enqueue(msg("n:dup"))
    await box.enqueue(msg("n:dup"))
    await box.enqueue(msg("n:other"))
    assert await box.process_once("a") == 3
    assert [m.idem for m in sms.sent] == ["n:dup", "n:other"]
    assert await queue_state(store) == (0, 0, 0)
    # a late duplicate (e.g. a producer retrying after the first was delivered) is a no-op too
    await box.enqueue(msg("n:dup"))
    await box.process_once("b")
    assert [m.idem for m in sms.sent] == ["n:dup", "n:other"]
    assert await queue_state(store) == (0, 0, 0)


async def test_duplicates_held_by_two_concurrent_senders_send_once(store: Store,
                                                                   clock: FloatClock) -> None:
    slow = FakeChannel(latency=0.05)
    a = Outbox(store, {ChannelName.SMS: slow}, clock=clock)
    b = Outbox(store, {ChannelName.SMS: slow}, clock=clock)
    await a.enqueue(msg("n:race"))
    await a.enqueue(msg("n:race"))
    handled = await asyncio.gather(a.process_once("a", count=1), b.process_once("b", count=1))
    assert handled == [1, 1]
    assert len(slow.sent) == 1


async def test_key_already_marked_sent_is_acked_without_sending(box: Outbox, store: Store,
                                                                sms: FakeChannel) -> None:
    """Crash after the send but before the ack: the redelivered entry must not send again."""
    await box.enqueue(msg("n:sent-before"))
    await store.set_str(store.keys.outbox_sent("n:sent-before"), "SMold")
    assert await box.process_once("a") == 1
    assert sms.attempts == []
    assert await queue_state(store) == (0, 0, 0)
    assert await store.get_str(store.keys.outbox_sent("n:sent-before")) == "SMold"


async def test_crash_after_send_then_reclaim_does_not_resend(store: Store, sms: FakeChannel,
                                                            clock: FloatClock) -> None:
    box = Outbox(store, {ChannelName.SMS: sms}, clock=clock, visibility_ms=80)
    await box.enqueue(msg("n:half-done"))
    held = await store.xreadgroup(store.keys.outbox(), GROUP, "crashed", 10, None)
    assert len(held) == 1
    # the crashed consumer had already delivered and marked it, but never acked
    await store.set_str(store.keys.outbox_sent("n:half-done"), "SM9999")
    await asyncio.sleep(0.15)
    assert await box.process_once("rescuer") == 1
    assert sms.attempts == []
    assert await queue_state(store) == (0, 0, 0)


# ---------------------------------------------------------------- reclaim

async def test_entry_held_by_a_crashed_consumer_is_reclaimed_and_sent_once(
        store: Store, sms: FakeChannel, clock: FloatClock) -> None:
    box = Outbox(store, {ChannelName.SMS: sms}, clock=clock, visibility_ms=100)
    await box.enqueue(msg("n:orphan"))
    held = await store.xreadgroup(store.keys.outbox(), GROUP, "crashed", 10, None)
    assert [f["idem"] for _, f in held] == ["n:orphan"]
    # still within the visibility timeout: the crashed consumer might be alive, leave it
    assert await box.process_once("rescuer") == 0
    assert sms.attempts == []
    await asyncio.sleep(0.2)
    assert await box.process_once("rescuer") == 1
    assert [m.idem for m in sms.sent] == ["n:orphan"]
    await asyncio.sleep(0.2)
    assert await box.process_once("rescuer") == 0
    assert await box.process_once("another") == 0
    assert [m.idem for m in sms.sent] == ["n:orphan"]
    assert await queue_state(store) == (0, 0, 0)


# ---------------------------------------------------------------- retries

async def test_retry_after_is_honoured_exactly(box: Outbox, store: Store, sms: FakeChannel,
                                               clock: FloatClock, outcomes: Outcomes) -> None:
    sms.fail_next("n:429", SendError("Too Many Requests", retry_after=30, code="429"))
    t0 = clock.t
    await box.enqueue(msg("n:429"))
    await box.process_once("a")
    assert sms.attempts == ["n:429"] and sms.sent == []
    assert outcomes.calls == [], "a retryable failure is not a final outcome"
    parked = await store.zrange_with_scores(store.keys.outbox_delayed())
    assert len(parked) == 1 and parked[0][1] == t0 + 30
    assert await queue_state(store) == (0, 0, 1)

    clock.t = t0 + 29.999
    assert await box.process_once("a") == 0
    assert sms.attempts == ["n:429"]

    clock.t = t0 + 30
    assert await box.process_once("a") == 1
    assert [m.idem for m in sms.sent] == ["n:429"]
    assert sms.sent[0].text == msg("n:429").text and sms.sent[0].buttons == msg().buttons
    assert await queue_state(store) == (0, 0, 0)
    assert len(outcomes.calls) == 1 and outcomes.calls[0][1] is not None


async def test_backoff_without_retry_after_grows_exponentially_with_cap(
        store: Store, sms: FakeChannel, clock: FloatClock, outcomes: Outcomes,
        monkeypatch: pytest.MonkeyPatch) -> None:
    bounds: list[tuple[float, float]] = []

    def top_of_range(a: float, b: float) -> float:  # the longest wait full jitter may pick
        bounds.append((a, b))
        return b

    monkeypatch.setattr(outbox_mod.random, "uniform", top_of_range)
    box = Outbox(store, {ChannelName.SMS: sms}, clock=clock, on_outcome=outcomes,
                 retry=RetryPolicy(max_attempts=10, base=3.0, cap=20.0))
    sms.fail_next("n:flaky", *(SendError("gateway timeout", code="503") for _ in range(4)))
    await box.enqueue(msg("n:flaky"))
    waits = []
    for _ in range(4):
        before = len(sms.attempts)
        await box.process_once("a")
        assert len(sms.attempts) == before + 1
        (_, due), = await store.zrange_with_scores(store.keys.outbox_delayed())
        waits.append(due - clock.t)
        clock.t = due - 0.001
        assert await box.process_once("a") == 0, "released before its backoff ran out"
        clock.t = due
    assert waits == pytest.approx([3.0, 6.0, 12.0, 20.0])
    assert bounds == [(0, 3.0), (0, 6.0), (0, 12.0), (0, 20.0)]
    await box.process_once("a")
    assert [m.idem for m in sms.sent] == ["n:flaky"]
    assert await queue_state(store) == (0, 0, 0)


def test_backoff_is_full_jitter_within_the_exponential_bound() -> None:
    random.seed(7)
    policy = RetryPolicy(base=2.0, cap=600.0)
    for attempt, bound in ((0, 2.0), (3, 16.0), (20, 600.0)):
        samples = [policy.backoff(attempt) for _ in range(300)]
        assert all(0 <= s <= bound for s in samples)
        assert max(samples) > bound * 0.8 and min(samples) < bound * 0.2  # spread, not fixed


async def test_unexpected_exception_is_retried_then_dead_lettered(
        store: Store, sms: FakeChannel, clock: FloatClock, outcomes: Outcomes) -> None:
    box = Outbox(store, {ChannelName.SMS: sms}, clock=clock, on_outcome=outcomes,
                 retry=RetryPolicy(max_attempts=2, base=1.0, cap=1.0))
    sms.fail_always("n:bug", RuntimeError("adapter bug"))
    await box.enqueue(msg("n:bug"))
    await box.enqueue(msg("n:fine"))
    assert await box.process_once("a") == 2
    assert [m.idem for m in sms.sent] == ["n:fine"], "one broken message blocked another"
    assert await queue_state(store) == (0, 0, 1)
    clock.t += 1.0
    await box.process_once("a")
    assert sms.attempts.count("n:bug") == 2
    (_, dead), = await box.dead_letters()
    assert dead["idem"] == "n:bug" and dead["code"] == "bug"
    assert dead["error"] == "unexpected: RuntimeError" and dead["permanent"] == "0"
    assert await queue_state(store) == (0, 0, 0)
    assert [(c[0].idem, c[2].code if c[2] else None) for c in outcomes.calls] == [
        ("n:fine", None), ("n:bug", "bug")]


# ---------------------------------------------------------------- dead letters and replay

async def test_permanent_failure_goes_to_dead_letters_and_calls_the_hook(
        box: Outbox, store: Store, sms: FakeChannel, clock: FloatClock,
        outcomes: Outcomes) -> None:
    sms.fail_always("n:bad", SendError("The 'To' number is not valid", permanent=True,
                                       code="21211"))
    await box.enqueue(msg("n:bad"))
    await box.process_once("a")
    assert sms.attempts == ["n:bad"]
    dead = await box.dead_letters()
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields["idem"] == "n:bad" and fields["address"] == "sms:+385911234567"
    assert fields["error"] == "The 'To' number is not valid" and fields["code"] == "21211"
    assert fields["permanent"] == "1" and float(fields["failed_at"]) == clock.t
    assert await queue_state(store) == (0, 0, 0), "no retry for a permanent failure"
    assert not await store.exists(store.keys.outbox_sent("n:bad"))
    (m, receipt, error), = outcomes.calls
    assert m.idem == "n:bad" and receipt is None
    assert isinstance(error, SendError) and error.code == "21211" and error.permanent
    clock.t += 3_600
    await box.process_once("a")
    assert sms.attempts == ["n:bad"]


async def test_exhausted_retries_go_to_dead_letters(box: Outbox, store: Store, sms: FakeChannel,
                                                    clock: FloatClock, outcomes: Outcomes) -> None:
    sms.fail_always("n:busy", SendError("rate limited", retry_after=5, code="429"))
    await box.enqueue(msg("n:busy"))
    for _ in range(10):
        await box.process_once("a")
        clock.t += 5
    assert sms.attempts == ["n:busy"] * 4  # max_attempts=4
    (_, dead), = await box.dead_letters()
    assert dead["code"] == "429" and dead["permanent"] == "0" and dead["attempt"] == "3"
    assert await queue_state(store) == (0, 0, 0)
    assert len(outcomes.calls) == 1 and outcomes.calls[0][2] is not None


async def test_replay_puts_a_dead_letter_back_and_it_is_sent(box: Outbox, store: Store,
                                                             sms: FakeChannel,
                                                             outcomes: Outcomes) -> None:
    sms.fail_always("n:later", SendError("blocked by carrier", permanent=True, code="30007"))
    await box.enqueue(msg("n:later"))
    await box.process_once("a")
    (entry_id, _), = await box.dead_letters()
    sms.heal()

    assert await box.replay("0-1") is False  # unknown id
    assert await box.replay(entry_id) is True
    assert await box.dead_letters() == []
    (_, fields), = await store.xrange(store.keys.outbox())
    assert fields["attempt"] == "0"
    assert not {"error", "code", "failed_at", "permanent"} & set(fields)
    assert await box.replay(entry_id) is False  # already replayed

    await box.process_once("a")
    assert [m.idem for m in sms.sent] == ["n:later"]
    assert sms.sent[0].text == msg().text
    assert await queue_state(store) == (0, 0, 0)
    assert outcomes.calls[-1][1] is not None


async def test_channel_not_configured_is_dead_lettered(box: Outbox, store: Store,
                                                       sms: FakeChannel,
                                                       outcomes: Outcomes) -> None:
    await box.enqueue(msg("n:tg", channel=ChannelName.TELEGRAM))
    await box.process_once("a")
    assert sms.attempts == []
    (_, dead), = await box.dead_letters()
    assert dead["code"] == "no_channel" and dead["permanent"] == "1"
    assert "telegram" in dead["error"]
    assert await queue_state(store) == (0, 0, 0)
    assert outcomes.calls[0][2] is not None and outcomes.calls[0][2].code == "no_channel"


async def test_run_sends_until_stopped(store: Store, sms: FakeChannel,
                                       clock: FloatClock) -> None:
    box = Outbox(store, {ChannelName.SMS: sms}, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(box.run("w1", stop, block_ms=50))
    await box.enqueue(msg("n:live"))
    for _ in range(100):
        if sms.sent:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert [m.idem for m in sms.sent] == ["n:live"]


async def test_an_undecodable_entry_is_dead_lettered_and_does_not_block_others(
        box: Outbox, store: Store, sms: FakeChannel) -> None:
    await box.enqueue(msg("n:before"))
    await store.xadd(store.keys.outbox(), {
        "idem": "n:poison", "address": "sms:+385911234567", "text": "hi",
        "buttons": "{not json", "content": "{}", "attempt": "0"})
    await box.enqueue(msg("n:after"))
    await box.process_once("a")
    assert [m.idem for m in sms.sent] == ["n:before", "n:after"]
    assert [f["idem"] for _, f in await box.dead_letters()] == ["n:poison"]
    assert await queue_state(store) == (0, 0, 0)
