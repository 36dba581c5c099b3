"""The store contract, run against the real Redis AND the embedded default (fakeredis).

`shipmate demo` runs on the embedded store, production on a real Redis: every primitive the
app builds on must behave the same on both, including the Lua scripts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.crc import key_slot

from bot.store import Keys, Store

BACKENDS = ["redis", "embedded"]


@pytest.fixture(params=BACKENDS)
async def any_store(request: pytest.FixtureRequest, store: Store) -> AsyncIterator[Store]:
    """The same contract on the real Redis (`store` fixture) and on the embedded fakeredis."""
    if request.param == "redis":
        assert not store.embedded
        yield store
        return
    s = Store.connect(None, f"test-emb-{uuid.uuid4().hex[:10]}")
    assert s.embedded
    yield s
    await s.close()


def hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes (the rules of CLUSTER KEYSLOT)."""
    start = key.find("{")
    if start < 0:
        return key
    end = key.find("}", start + 1)
    if end < 0 or end == start + 1:
        return key
    return key[start + 1:end]


def text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


# ---------------------------------------------------------------- key builder

CUSTOMER_KEYS = ("customer", "conversation", "dialog", "history", "turn_lock",
                 "customer_orders", "verified", "verify_attempts_sender", "not_understood",
                 "consent", "handoff")
SHIPMENT_KEYS = ("shipment", "shipment_refresh", "shipment_orders", "shipment_subscribers",
                 "shipment_muted")


def test_keys_carry_the_prefix_and_one_tag_per_customer() -> None:
    k = Keys("shop7")
    keys = [getattr(k, name)("cust-42") for name in CUSTOMER_KEYS]
    assert all(key.startswith("shop7:") for key in keys)
    assert len(set(keys)) == len(keys), "two customer keys collide"
    assert {hash_tag(key) for key in keys} == {"c:cust-42"}
    slots = {key_slot(key.encode()) for key in keys}
    assert slots == {key_slot(b"c:cust-42")}
    # another customer gets its own tag, so customers spread over the cluster
    assert hash_tag(k.customer("cust-43")) == "c:cust-43"
    assert hash_tag(k.customer("cust-43")) != hash_tag(k.customer("cust-42"))


def test_order_and_shipment_keys_share_their_own_tags() -> None:
    k = Keys("p")
    assert hash_tag(k.order("A-1")) == hash_tag(k.verify_attempts_order("A-1")) == "o:A-1"
    ship = [getattr(k, name)("ups", "1Z999") for name in SHIPMENT_KEYS]
    assert len(set(ship)) == len(ship)
    assert {hash_tag(key) for key in ship} == {"s:ups:1Z999"}
    assert len({key_slot(key.encode()) for key in ship}) == 1
    assert hash_tag(k.shipment("dhl", "1Z999")) != hash_tag(k.shipment("ups", "1Z999"))
    assert hash_tag(k.webchat_inbox("s1")) == hash_tag(k.webchat_session("s1")) == "w:s1"
    # the outbox stream, its delay set and dead letters live in one slot (Lua touches two)
    assert hash_tag(k.outbox()) == hash_tag(k.outbox_delayed()) == hash_tag(k.outbox_dead())
    assert k.outbox_sent("a") != k.outbox_sent("b")


def test_different_prefixes_never_share_keys() -> None:
    assert Keys("a").customer("1") != Keys("b").customer("1")
    assert Keys("a").outbox() != Keys("b").outbox()


# ---------------------------------------------------------------- values

async def test_json_round_trip_with_ttl(any_store: Store) -> None:
    key = any_store.keys.dialog("c1")
    doc = {"state": "ask_order", "n": 3, "ok": True, "none": None, "list": [1, "zwei"],
           "text": "Pošiljka je stigla — พัสดุ"}
    await any_store.set_json(key, doc, ttl=120)
    assert await any_store.get_json(key) == doc
    assert 0 < await any_store.ttl(key) <= 120
    assert await any_store.get_json(any_store.keys.dialog("missing")) is None
    # without a TTL the key persists
    await any_store.set_json(any_store.keys.customer("c1"), {"id": "c1"})
    assert await any_store.ttl(any_store.keys.customer("c1")) == -1


async def test_first_time_is_idempotent(any_store: Store) -> None:
    key = any_store.keys.dedupe("twilio", "SM123")
    assert await any_store.first_time(key, 60) is True
    assert await any_store.first_time(key, 60) is False
    assert await any_store.first_time(key, 60) is False
    assert 0 < await any_store.ttl(key) <= 60
    assert await any_store.first_time(any_store.keys.dedupe("twilio", "SM124"), 60) is True


async def test_first_time_concurrently_only_one_is_first(any_store: Store) -> None:
    key = any_store.keys.dedupe("telegram", "u1")
    results = await asyncio.gather(*(any_store.first_time(key, 60) for _ in range(15)))
    assert results.count(True) == 1


async def test_cas_field_sets_only_when_expected(any_store: Store) -> None:
    key = any_store.keys.conversation("c1")
    # missing field counts as ""
    assert await any_store.cas_field(key, "owner", "", "bot") == (True, "")
    assert await any_store.cas_field(key, "owner", "queue", "agent:ana") == (False, "bot")
    assert await any_store.hget(key, "owner") == "bot"
    assert await any_store.cas_field(key, "owner", "bot", "queue", ttl=300) == (True, "bot")
    assert await any_store.hget(key, "owner") == "queue"
    assert 0 < await any_store.ttl(key) <= 300


async def test_cas_field_under_concurrency_exactly_one_wins(any_store: Store) -> None:
    key = any_store.keys.conversation("c2")
    await any_store.hset(key, {"owner": "queue", "state": "waiting"})
    await asyncio.gather(*(any_store.ping() for _ in range(20)))  # open connections first
    results = await asyncio.gather(*(
        any_store.cas_field(key, "owner", "queue", f"agent:{i}") for i in range(20)))
    winners = [i for i, (done, _prev) in enumerate(results) if done]
    assert len(winners) == 1
    winner = f"agent:{winners[0]}"
    assert results[winners[0]][1] == "queue"
    losers = [prev for done, prev in results if not done]
    assert len(losers) == 19 and set(losers) == {winner}
    assert await any_store.hgetall(key) == {"owner": winner, "state": "waiting"}


# ---------------------------------------------------------------- locks

async def test_lock_second_acquire_fails_and_stale_release_is_a_noop(any_store: Store) -> None:
    key = any_store.keys.turn_lock("c1")
    first = await any_store.acquire_lock(key, 5_000)
    assert first
    assert await any_store.acquire_lock(key, 5_000) is None
    assert await any_store.release_lock(key, "not-the-token") is False
    assert await any_store.acquire_lock(key, 5_000) is None, "a wrong token released the lock"
    assert await any_store.release_lock(key, first) is True
    second = await any_store.acquire_lock(key, 5_000)
    assert second and second != first
    await any_store.release_lock(key, second)


async def test_lock_expires_and_the_old_owner_cannot_release_the_new_one(any_store: Store) -> None:
    key = any_store.keys.turn_lock("c2")
    old = await any_store.acquire_lock(key, 80)
    assert old
    await asyncio.sleep(0.2)
    new = await any_store.acquire_lock(key, 5_000)
    assert new, "the lock did not expire"
    assert await any_store.release_lock(key, old) is False
    assert await any_store.get_str(key) == new
    assert await any_store.acquire_lock(key, 5_000) is None


async def test_concurrent_acquire_has_one_winner(any_store: Store) -> None:
    key = any_store.keys.turn_lock("c3")
    tokens = await asyncio.gather(*(any_store.acquire_lock(key, 5_000) for _ in range(12)))
    assert sum(t is not None for t in tokens) == 1


# ---------------------------------------------------------------- counters and buckets

async def test_count_in_window_counts_and_sets_the_ttl_once(any_store: Store) -> None:
    key = any_store.keys.verify_attempts_sender("c1")
    assert await any_store.count_in_window(key, 100) == 1
    assert 95 <= await any_store.ttl(key) <= 100
    # the window is fixed: later increments must not push the expiry out again
    await any_store.expire(key, 40)
    assert await any_store.count_in_window(key, 100) == 2
    assert await any_store.count_in_window(key, 100) == 3
    assert 0 < await any_store.ttl(key) <= 40
    assert await any_store.get_count(key) == 3
    assert await any_store.get_count(any_store.keys.verify_attempts_sender("nobody")) == 0


async def test_count_in_window_restarts_after_the_window(any_store: Store) -> None:
    key = any_store.keys.not_understood("c1")
    assert await any_store.count_in_window(key, 1) == 1
    assert await any_store.count_in_window(key, 1) == 2
    await asyncio.sleep(1.2)
    assert await any_store.count_in_window(key, 1) == 1


async def test_count_in_window_repairs_a_counter_without_ttl(any_store: Store) -> None:
    key = any_store.keys.not_understood("c2")
    await any_store.set_str(key, "4")  # e.g. left behind without an expiry
    assert await any_store.count_in_window(key, 50) == 5
    assert 0 < await any_store.ttl(key) <= 50


async def test_token_bucket_gives_capacity_then_waits_one_over_rate(any_store: Store) -> None:
    key = any_store.keys.rate("twilio:sms")
    now = 1_000.0
    for _ in range(3):
        assert await any_store.take_token(key, 3, 2.0, now) == 0
    wait = await any_store.take_token(key, 3, 2.0, now)
    assert wait == pytest.approx(0.5, abs=0.002)
    # asking again without waiting does not consume anything and still says wait
    assert await any_store.take_token(key, 3, 2.0, now) == pytest.approx(0.5, abs=0.002)
    # once 1/rate has passed, exactly one token is there
    assert await any_store.take_token(key, 3, 2.0, now + 0.5) == 0
    assert await any_store.take_token(key, 3, 2.0, now + 0.5) == pytest.approx(0.5, abs=0.002)
    # part of the way: the wait shrinks accordingly
    assert await any_store.take_token(key, 3, 2.0, now + 0.9) == pytest.approx(0.1, abs=0.002)
    # a long pause refills to capacity, never beyond
    later = now + 3_600
    for _ in range(3):
        assert await any_store.take_token(key, 3, 2.0, later) == 0
    assert await any_store.take_token(key, 3, 2.0, later) > 0
    assert 0 < await any_store.ttl(key) <= 3 / 2 + 60 + 1


async def test_token_bucket_honours_its_own_waits_at_epoch_scale(any_store: Store) -> None:
    """A sender that sleeps exactly the announced wait gets capacity + rate * T tokens."""
    key = any_store.keys.rate("telegram")
    start = now = 1_795_330_133.123456  # a real time.time(), not a small round number
    granted = 0
    while now < start + 10.25:  # refills at +0.5 … +10.0
        wait = await any_store.take_token(key, 3, 2.0, now)
        if wait == 0:
            granted += 1
            continue
        assert wait <= 0.5 + 0.002
        now += wait
    # Lua's tostring keeps 14 significant digits, so after an exact wait the bucket may ask
    # for one more millisecond; it must never hand out more than the rate allows
    assert granted == 3 + 2 * 10


async def test_token_bucket_slow_rate_and_separate_keys(any_store: Store) -> None:
    a, b = any_store.keys.rate("a"), any_store.keys.rate("b")
    assert await any_store.take_token(a, 1, 0.25, 50.0) == 0
    assert await any_store.take_token(a, 1, 0.25, 50.0) == pytest.approx(4.0, abs=0.002)
    assert await any_store.take_token(a, 1, 0.25, 52.0) == pytest.approx(2.0, abs=0.002)
    assert await any_store.take_token(b, 1, 0.25, 50.0) == 0  # independent bucket


async def test_token_bucket_shared_by_concurrent_takers(any_store: Store) -> None:
    key = any_store.keys.rate("shared")
    waits = await asyncio.gather(*(any_store.take_token(key, 5, 1.0, 10.0) for _ in range(12)))
    assert waits.count(0) == 5


# ---------------------------------------------------------------- streams

async def test_stream_group_read_and_ack(any_store: Store) -> None:
    stream = any_store.keys.inbound()
    await any_store.ensure_group(stream, "g")
    await any_store.ensure_group(stream, "g")  # idempotent (BUSYGROUP swallowed)
    ids = [await any_store.xadd(stream, {"n": str(i), "text": "héllo"}) for i in range(3)]
    assert await any_store.xlen(stream) == 3
    got_a = await any_store.xreadgroup(stream, "g", "a", 2, None)
    got_b = await any_store.xreadgroup(stream, "g", "b", 10, None)
    assert [i for i, _ in got_a] == ids[:2]
    assert [i for i, _ in got_b] == ids[2:]
    assert got_a[0][1] == {"n": "0", "text": "héllo"}
    assert await any_store.xreadgroup(stream, "g", "c", 10, None) == []
    assert await any_store.xpending_count(stream, "g") == 3
    await any_store.xack(stream, "g", *ids[:2])
    assert await any_store.xpending_count(stream, "g") == 1
    await any_store.xack(stream, "g", ids[2])
    assert await any_store.xpending_count(stream, "g") == 0
    assert [i for i, _ in await any_store.xrange(stream)] == ids
    assert [i for i, _ in await any_store.xrevrange(stream, 2)] == [ids[2], ids[1]]


async def test_xautoclaim_takes_over_an_unacked_entry_after_min_idle(any_store: Store) -> None:
    stream = any_store.keys.outbox()
    await any_store.ensure_group(stream, "g")
    entry = await any_store.xadd(stream, {"idem": "m1"})
    read = await any_store.xreadgroup(stream, "g", "crashed", 10, None)
    assert [i for i, _ in read] == [entry]
    # not idle long enough yet: nobody may take it
    assert await any_store.xautoclaim(stream, "g", "rescuer", 10_000, 10) == []
    await asyncio.sleep(0.15)
    claimed = await any_store.xautoclaim(stream, "g", "rescuer", 100, 10)
    assert claimed == [(entry, {"idem": "m1"})]
    # it now belongs to the rescuer: idle time was reset, a third consumer gets nothing
    assert await any_store.xautoclaim(stream, "g", "third", 100, 10) == []
    pending = await any_store.r.xpending_range(stream, "g", "-", "+", 10)
    assert [(text(p["message_id"]), text(p["consumer"])) for p in pending] == [
        (entry, "rescuer")]
    await any_store.xack(stream, "g", entry)
    assert await any_store.xpending_count(stream, "g") == 0


async def test_xautoclaim_skips_entries_deleted_while_pending(any_store: Store) -> None:
    stream = any_store.keys.outbox()
    await any_store.ensure_group(stream, "g")
    gone = await any_store.xadd(stream, {"idem": "gone"})
    kept = await any_store.xadd(stream, {"idem": "kept"})
    await any_store.xreadgroup(stream, "g", "crashed", 10, None)
    await any_store.xdel(stream, gone)
    await asyncio.sleep(0.15)
    claimed = await any_store.xautoclaim(stream, "g", "rescuer", 100, 10)
    assert claimed == [(kept, {"idem": "kept"})]


async def test_xadd_ttl_and_maxlen(any_store: Store) -> None:
    stream = any_store.keys.webchat_inbox("s1")
    await any_store.xadd(stream, {"a": "1"}, ttl=90)
    assert 0 < await any_store.ttl(stream) <= 90


async def test_delay_and_move_due_moves_only_due_entries(any_store: Store) -> None:
    zkey, stream = any_store.keys.outbox_delayed(), any_store.keys.outbox()
    await any_store.delay(zkey, {"idem": "early", "text": "Dobar dan — สวัสดี"}, 100.0)
    await any_store.delay(zkey, {"idem": "edge", "attempt": "2"}, 150.0)
    await any_store.delay(zkey, {"idem": "late"}, 200.0)
    assert await any_store.move_due(zkey, stream, 99.9) == 0
    assert await any_store.xlen(stream) == 0
    assert await any_store.move_due(zkey, stream, 150.0) == 2  # due at exactly `now` counts
    moved = [f for _, f in await any_store.xrange(stream)]
    assert sorted(moved, key=lambda f: f["idem"]) == [
        {"idem": "early", "text": "Dobar dan — สวัสดี"}, {"idem": "edge", "attempt": "2"}]
    remaining = await any_store.zrange_with_scores(zkey)
    assert len(remaining) == 1 and remaining[0][1] == 200.0
    assert await any_store.move_due(zkey, stream, 150.0) == 0  # moved once, not again
    assert await any_store.move_due(zkey, stream, 1e12) == 1
    assert await any_store.xlen(stream) == 3
    assert await any_store.zrange_with_scores(zkey) == []


async def test_move_due_respects_the_limit(any_store: Store) -> None:
    zkey, stream = any_store.keys.outbox_delayed(), any_store.keys.outbox()
    for i in range(5):
        await any_store.delay(zkey, {"idem": f"m{i}"}, float(i))
    assert await any_store.move_due(zkey, stream, 10.0, limit=2) == 2
    assert [f["idem"] for _, f in await any_store.xrange(stream)] == ["m0", "m1"]
    assert await any_store.move_due(zkey, stream, 10.0, limit=10) == 3


async def test_claim_due_hands_each_member_to_exactly_one_claimer(any_store: Store) -> None:
    key = any_store.keys._k("poll", "due")
    now = 10_000.0
    due = {f"ups:{i}": now - i for i in range(30)}
    future = {f"dhl:{i}": now + 60 + i for i in range(5)}
    await any_store.zadd(key, {**due, **future})
    batches = await asyncio.gather(*(any_store.claim_due(key, now, 300, 4) for _ in range(10)))
    claimed = [m for batch in batches for m in batch]
    assert len(claimed) == len(set(claimed)), "a member was handed to two claimers"
    assert set(claimed) == set(due)
    assert all(len(b) <= 4 for b in batches)
    # the lease pushed every claimed member to now + lease; future ones are untouched
    scores = dict(await any_store.zrange_with_scores(key))
    assert all(scores[m] == now + 300 for m in due)
    assert all(scores[m] == s for m, s in future.items())
    # leased members are not due again until the lease runs out; the others come due
    assert await any_store.claim_due(key, now + 299, 300, 100) == [
        m for m, _ in sorted(future.items(), key=lambda kv: kv[1])]
    assert set(await any_store.claim_due(key, now + 300, 300, 100)) == set(due)


async def test_claim_due_takes_the_most_overdue_first(any_store: Store) -> None:
    key = any_store.keys._k("poll", "due")
    await any_store.zadd(key, {"c": 30.0, "a": 10.0, "b": 20.0})
    assert await any_store.claim_due(key, 100.0, 50, 2) == ["a", "b"]
    assert await any_store.claim_due(key, 100.0, 50, 2) == ["c"]
