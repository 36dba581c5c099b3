"""The only module that talks to Redis: one key builder, typed primitives, atomic scripts.

Keys carry a prefix and a hash tag per customer / order / shipment, so related keys share
a slot and the keyspace works on Redis Cluster. With no REDIS_URL the app runs on an
in-process Redis (fakeredis) for the demo.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

StoreUnavailable = (RedisConnectionError, RedisTimeoutError)
__all__ = ["Keys", "Store", "StoreError", "StoreUnavailable"]


class StoreError(Exception):
    """Redis answered with an error we cannot work around."""


class Keys:
    """Builds every Redis key. Hash tags `{c:…}`, `{o:…}`, `{s:…}` group related keys."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _k(self, tag: str, *parts: str) -> str:
        return ":".join((self.prefix, "{" + tag + "}", *parts))

    # customers and conversations (one slot per customer)
    def customer(self, cid: str) -> str:
        return self._k(f"c:{cid}", "customer")

    def conversation(self, cid: str) -> str:
        return self._k(f"c:{cid}", "conv")

    def dialog(self, cid: str) -> str:
        return self._k(f"c:{cid}", "dialog")

    def history(self, cid: str) -> str:
        return self._k(f"c:{cid}", "history")

    def turn_lock(self, cid: str) -> str:
        return self._k(f"c:{cid}", "lock")

    def customer_orders(self, cid: str) -> str:
        return self._k(f"c:{cid}", "orders")

    def verified(self, cid: str) -> str:
        return self._k(f"c:{cid}", "verified")

    def verify_attempts_sender(self, cid: str) -> str:
        return self._k(f"c:{cid}", "verify-attempts")

    def not_understood(self, cid: str) -> str:
        return self._k(f"c:{cid}", "not-understood")

    def consent(self, cid: str) -> str:
        return self._k(f"c:{cid}", "consent")

    def handoff(self, cid: str) -> str:
        return self._k(f"c:{cid}", "handoff")

    # addresses (channel user -> customer)
    def address(self, channel: str, user: str) -> str:
        return self._k(f"a:{channel}:{user}", "customer-id")

    # orders and shipments
    def order(self, oid: str) -> str:
        return self._k(f"o:{oid}", "order")

    def verify_attempts_order(self, oid: str) -> str:
        return self._k(f"o:{oid}", "verify-attempts")

    def shipment(self, carrier: str, number: str) -> str:
        return self._k(f"s:{carrier}:{number}", "shipment")

    def shipment_refresh(self, carrier: str, number: str) -> str:
        return self._k(f"s:{carrier}:{number}", "refresh")

    def shipment_orders(self, carrier: str, number: str) -> str:
        return self._k(f"s:{carrier}:{number}", "orders")

    def shipment_subscribers(self, carrier: str, number: str) -> str:
        return self._k(f"s:{carrier}:{number}", "subscribers")

    def shipment_muted(self, carrier: str, number: str) -> str:
        return self._k(f"s:{carrier}:{number}", "muted")

    def link_token(self, token: str) -> str:
        return self._k(f"l:{token}", "order")

    # generic per-entity state for feature modules (same slot as the entity's other keys)
    def address_state(self, channel: str, user: str, name: str) -> str:
        """Per-address state, e.g. a WhatsApp window or an unreachable mark."""
        return self._k(f"a:{channel}:{user}", name)

    def customer_state(self, cid: str, name: str) -> str:
        return self._k(f"c:{cid}", name)

    def order_state(self, oid: str, name: str) -> str:
        return self._k(f"o:{oid}", name)

    def shipment_state(self, carrier: str, number: str, name: str) -> str:
        return self._k(f"s:{carrier}:{number}", name)

    def receipt(self, provider_id: str) -> str:
        """Delivery state of one provider message (SM…/Telegram message id)."""
        return self._k(f"m:{provider_id}", "receipt")

    def shared(self, area: str, name: str) -> str:
        """A process-wide structure (schedules, budgets, breakers): one slot per area."""
        return self._k(area, name)

    # global structures (one slot each)
    def inbound(self) -> str:
        return self._k("inbound", "stream")

    def dedupe(self, source: str, ident: str) -> str:
        return self._k(f"d:{source}", ident)

    def handoff_queue(self) -> str:
        return self._k("handoff", "queue")

    def handoff_sequence(self) -> str:
        return self._k("handoff", "seq")

    def agents_on_shift(self) -> str:
        return self._k("handoff", "agents")

    def outbox(self) -> str:
        return self._k("outbox", "stream")

    def outbox_delayed(self) -> str:
        return self._k("outbox", "delayed")

    def outbox_dead(self) -> str:
        return self._k("outbox", "dead")

    def outbox_sent(self, idem: str) -> str:
        return self._k("outbox", "sent", idem)

    def webchat_inbox(self, session: str) -> str:
        return self._k(f"w:{session}", "inbox")

    def webchat_session(self, session: str) -> str:
        return self._k(f"w:{session}", "session")

    def rate(self, name: str) -> str:
        return self._k(f"r:{name}", "bucket")


# Compare-and-set one hash field; returns 1 when it was `expect` (or missing and expect == "").
_CAS_FIELD = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == false then cur = '' end
if cur ~= ARGV[2] then return {0, cur} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return {1, cur}
"""

# Release a lock only if we still own it.
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Count an event in a fixed window: INCR and set the TTL when the window starts.
_COUNT_IN_WINDOW = """
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""

# Token bucket: capacity ARGV[1], refill ARGV[2] tokens/second, now ARGV[3] (float seconds).
# Returns the wait in milliseconds before a token is available (0 = taken now).
_RATE_BUCKET = """
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(b[1]) or cap
local ts = tonumber(b[2]) or now
if now > ts then tokens = math.min(cap, tokens + (now - ts) * rate) end
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(math.max(now, ts)))
redis.call('EXPIRE', KEYS[1], math.ceil(cap / rate) + 60)
return wait
"""

# Move due members of a delay zset back into a stream, atomically per member.
_MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do
  local fields = cjson.decode(m)
  local flat = {}
  for k, v in pairs(fields) do table.insert(flat, k); table.insert(flat, v) end
  redis.call('XADD', KEYS[2], '*', unpack(flat))
  redis.call('ZREM', KEYS[1], m)
end
return #due
"""

# Claim the lowest-scored members whose score <= now, pushing each to now + lease.
_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[3], m) end
return due
"""


# Update a hash only when ARGV[1] (a rank) is higher than the stored 'rank' field.
_SET_IF_HIGHER = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')
if tonumber(ARGV[1]) <= cur then return 0 end
redis.call('HSET', KEYS[1], 'rank', ARGV[1])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if tonumber(ARGV[2]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


def _enc(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _dec(raw: bytes | str | None) -> Any:
    if raw is None:
        return None
    return json.loads(raw)


def _s(raw: bytes | str | None) -> str | None:
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else raw


class Store:
    """Typed access to Redis. Domain modules compose these primitives with `keys`."""

    def __init__(self, client: redis.Redis, prefix: str = "shipmate", *, embedded: bool = False):
        self.r = client
        self.keys = Keys(prefix)
        self.embedded = embedded
        self._cas = client.register_script(_CAS_FIELD)
        self._release = client.register_script(_RELEASE_LOCK)
        self._count = client.register_script(_COUNT_IN_WINDOW)
        self._bucket = client.register_script(_RATE_BUCKET)
        self._move_due = client.register_script(_MOVE_DUE)
        self._claim_due = client.register_script(_CLAIM_DUE)
        self._set_if_higher = client.register_script(_SET_IF_HIGHER)

    @classmethod
    def connect(cls, url: str | None, prefix: str = "shipmate") -> Store:
        """A store on `url`, or on an in-process Redis when `url` is None."""
        if url is None:
            import fakeredis  # only the embedded default needs it

            return cls(fakeredis.FakeAsyncRedis(), prefix, embedded=True)
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                      health_check_interval=30)
        return cls(client, prefix)

    async def ping(self) -> None:
        """Raise a StoreUnavailable error when Redis cannot be reached."""
        await self.r.ping()

    async def close(self) -> None:
        """Close the connection pool."""
        await self.r.aclose()

    # ---- plain values and JSON documents
    async def get_json(self, key: str) -> Any:
        return _dec(await self.r.get(key))

    async def get_many_json(self, keys: Sequence[str]) -> list[Any]:
        if not keys:
            return []
        # one round trip per slot group would be needed on Cluster; MGET of one key each
        return [_dec(v) for v in [await self.r.get(k) for k in keys]]

    async def set_json(self, key: str, value: Any, ttl: int | None = None) -> None:
        await self.r.set(key, _enc(value), ex=ttl)

    async def get_str(self, key: str) -> str | None:
        return _s(await self.r.get(key))

    async def set_str(self, key: str, value: str, ttl: int | None = None, *, nx: bool = False) -> bool:
        """SET (optionally NX); True when written."""
        return bool(await self.r.set(key, value, ex=ttl, nx=nx))

    async def delete(self, *keys: str) -> int:
        n = 0
        for k in keys:  # one by one: keys may live in different slots
            n += await self.r.delete(k)
        return n

    async def exists(self, key: str) -> bool:
        return bool(await self.r.exists(key))

    async def expire(self, key: str, ttl: int) -> None:
        await self.r.expire(key, ttl)

    async def ttl(self, key: str) -> int:
        return int(await self.r.ttl(key))

    async def first_time(self, key: str, ttl: int) -> bool:
        """Idempotency: True the first time this key is seen within `ttl` seconds."""
        return bool(await self.r.set(key, "1", ex=ttl, nx=True))

    # ---- hashes
    async def hgetall(self, key: str) -> dict[str, str]:
        raw = await self.r.hgetall(key)
        return {_s(k): _s(v) for k, v in raw.items()}  # type: ignore[misc]

    async def hget(self, key: str, field: str) -> str | None:
        return _s(await self.r.hget(key, field))

    async def hset(self, key: str, mapping: Mapping[str, str], ttl: int | None = None) -> None:
        async with self.r.pipeline(transaction=True) as p:
            p.hset(key, mapping=dict(mapping))
            if ttl:
                p.expire(key, ttl)
            await p.execute()

    async def hdel(self, key: str, *fields: str) -> None:
        await self.r.hdel(key, *fields)

    async def cas_field(self, key: str, field: str, expect: str, new: str,
                        ttl: int = 0) -> tuple[bool, str]:
        """Atomically set `field` to `new` if it equals `expect`; return (done, previous)."""
        done, prev = await self._cas(keys=[key], args=[field, expect, new, ttl])
        return bool(done), _s(prev) or ""

    async def set_if_higher(self, key: str, rank: int, mapping: Mapping[str, str],
                            ttl: int = 0) -> bool:
        """Monotonic update: write `mapping` only if `rank` beats the stored rank (callbacks
        that arrive out of order never move a state backwards)."""
        args: list[Any] = [rank, ttl]
        for k, v in mapping.items():
            args += [k, v]
        return bool(await self._set_if_higher(keys=[key], args=args))

    # ---- sets
    async def sadd(self, key: str, *members: str) -> None:
        if members:
            await self.r.sadd(key, *members)

    async def srem(self, key: str, *members: str) -> None:
        if members:
            await self.r.srem(key, *members)

    async def smembers(self, key: str) -> set[str]:
        return {_s(m) for m in await self.r.smembers(key)}  # type: ignore[misc]

    # ---- sorted sets
    async def zadd(self, key: str, scores: Mapping[str, float], *, nx: bool = False) -> None:
        await self.r.zadd(key, dict(scores), nx=nx)

    async def zrem(self, key: str, *members: str) -> None:
        if members:
            await self.r.zrem(key, *members)

    async def zrange_with_scores(self, key: str, start: int = 0, end: int = -1) -> list[tuple[str, float]]:
        return [(_s(m), s) for m, s in await self.r.zrange(key, start, end, withscores=True)]  # type: ignore[misc]

    async def zrank(self, key: str, member: str) -> int | None:
        return await self.r.zrank(key, member)

    async def zscore(self, key: str, member: str) -> float | None:
        return await self.r.zscore(key, member)

    async def zremrangebyscore(self, key: str, lo: float, hi: float) -> None:
        await self.r.zremrangebyscore(key, lo, hi)

    async def claim_due(self, key: str, now: float, lease: float, limit: int) -> list[str]:
        """Atomically take up to `limit` members due by `now`, re-scoring them to now+lease."""
        return [_s(m) for m in await self._claim_due(keys=[key], args=[now, limit, now + lease])]  # type: ignore[misc]

    # ---- counters, locks, rate limits
    async def count_in_window(self, key: str, window: int) -> int:
        """Increment a counter that resets `window` seconds after its first increment."""
        return int(await self._count(keys=[key], args=[window]))

    async def incr(self, key: str) -> int:
        """Atomic counter (sequence numbers)."""
        return int(await self.r.incr(key))

    async def get_count(self, key: str) -> int:
        raw = await self.r.get(key)
        return int(raw) if raw else 0

    async def acquire_lock(self, key: str, ttl_ms: int) -> str | None:
        """Take a lock; return its token, or None when someone else holds it."""
        token = uuid.uuid4().hex
        ok = await self.r.set(key, token, px=ttl_ms, nx=True)
        return token if ok else None

    async def release_lock(self, key: str, token: str) -> bool:
        """Release a lock we hold (no-op if it expired and someone else took it)."""
        return bool(await self._release(keys=[key], args=[token]))

    async def take_token(self, key: str, capacity: float, rate: float, now: float) -> float:
        """Token bucket shared by all processes; return seconds to wait (0 = go now)."""
        return int(await self._bucket(keys=[key], args=[capacity, rate, now])) / 1000.0

    # ---- streams
    async def xadd(self, key: str, fields: Mapping[str, str], *, maxlen: int | None = None,
                   ttl: int | None = None) -> str:
        async with self.r.pipeline(transaction=True) as p:
            p.xadd(key, dict(fields), maxlen=maxlen, approximate=True)
            if ttl:
                p.expire(key, ttl)
            entry_id, *_ = await p.execute()
        return _s(entry_id)  # type: ignore[return-value]

    async def xrange(self, key: str, start: str = "-", end: str = "+",
                     count: int | None = None) -> list[tuple[str, dict[str, str]]]:
        return [(_s(i), {_s(k): _s(v) for k, v in f.items()})  # type: ignore[misc]
                for i, f in await self.r.xrange(key, start, end, count=count)]

    async def xrevrange(self, key: str, count: int) -> list[tuple[str, dict[str, str]]]:
        return [(_s(i), {_s(k): _s(v) for k, v in f.items()})  # type: ignore[misc]
                for i, f in await self.r.xrevrange(key, count=count)]

    async def xlen(self, key: str) -> int:
        return int(await self.r.xlen(key))

    async def ensure_group(self, stream: str, group: str) -> None:
        """Create a consumer group (and the stream) if missing."""
        try:
            await self.r.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def xreadgroup(self, stream: str, group: str, consumer: str, count: int,
                         block_ms: int | None) -> list[tuple[str, dict[str, str]]]:
        res = await self.r.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
        out: list[tuple[str, dict[str, str]]] = []
        for _name, entries in res or []:
            for i, f in entries:
                out.append((_s(i), {_s(k): _s(v) for k, v in f.items()}))  # type: ignore[misc]
        return out

    async def xautoclaim(self, stream: str, group: str, consumer: str, min_idle_ms: int,
                         count: int) -> list[tuple[str, dict[str, str]]]:
        """Take over entries another consumer read but did not ack within `min_idle_ms`."""
        res = await self.r.xautoclaim(stream, group, consumer, min_idle_ms, "0-0", count=count)
        entries = res[1]
        return [(_s(i), {_s(k): _s(v) for k, v in f.items()}) for i, f in entries if f]  # type: ignore[misc]

    async def xack(self, stream: str, group: str, *ids: str) -> None:
        if ids:
            await self.r.xack(stream, group, *ids)

    async def xdel(self, stream: str, *ids: str) -> None:
        if ids:
            await self.r.xdel(stream, *ids)

    async def xpending_count(self, stream: str, group: str) -> int:
        info = await self.r.xpending(stream, group)
        return int(info["pending"]) if info else 0

    async def delay(self, zkey: str, fields: Mapping[str, str], due: float) -> None:
        """Park a stream entry in a zset until `due` (epoch seconds)."""
        await self.r.zadd(zkey, {_enc(dict(fields)): due})

    async def move_due(self, zkey: str, stream: str, now: float, limit: int = 100) -> int:
        """Move parked entries whose time has come back into their stream."""
        return int(await self._move_due(keys=[zkey, stream], args=[now, limit]))

    # ---- lists (web chat inboxes)
    async def rpush_json(self, key: str, value: Any, ttl: int | None = None) -> None:
        async with self.r.pipeline(transaction=True) as p:
            p.rpush(key, _enc(value))
            if ttl:
                p.expire(key, ttl)
            await p.execute()

    async def lrange_json(self, key: str, start: int = 0, end: int = -1) -> list[Any]:
        return [_dec(v) for v in await self.r.lrange(key, start, end)]

    # ---- maintenance
    async def scan_prefix(self, pattern: str) -> list[str]:
        return [_s(k) async for k in self.r.scan_iter(match=pattern, count=500)]  # type: ignore[misc]

    async def memory_usage(self) -> int:
        info = await self.r.info("memory")
        return int(info.get("used_memory", 0))


def is_unavailable(exc: BaseException) -> bool:
    """Whether an exception means Redis is (temporarily) unreachable."""
    return isinstance(exc, StoreUnavailable) or (
        isinstance(exc, RedisError) and "LOADING" in str(exc))


def chunks(items: Iterable[str], size: int) -> list[list[str]]:
    """Split items into lists of at most `size`."""
    out: list[list[str]] = []
    for item in items:
        if not out or len(out[-1]) >= size:
            out.append([])
        out[-1].append(item)
    return out
