"""Notification throughput: carrier changes through detection, the policy and into the outbox.

    python -m bench.notify_throughput [--changes 100000] [--shipments 50000]
        [--redis-url redis://127.0.0.1:6379/0 | --embedded] [--concurrency 64] [--seed 1]

`--shipments` orders (one customer and one demo-carrier shipment each, customers spread over
en/hr/id/th and their timezones) are seeded, then a simulated day runs on a 5-minute tick:
each shipment is scanned shortly after each of its carrier events until `--changes` changes
have been detected. Every scan is the real path: `Tracking.ingest` (store the snapshot,
`bot.changes.detect`, report each change once) calls `Notifier.on_changes` (recipients,
consent, channel choice, the pure policy, collapse/quiet-hours deferral, rendering in the
customer's locale, the ledger, the outbox). Each tick also runs `Notifier.release_due`, as the
worker does; after the last scan the clock runs on until every deferral is released.

Printed: changes per second for this one worker process (wall time minus the time spent
simulating the carrier), messages enqueued, Redis memory per active shipment (INFO
used_memory before/after; with and without the queued outbound messages), and beside it the
raw XADD throughput of the same number of outbox-sized entries through `Store.xadd` with the
same concurrency, measured in the same run: the ceiling for "one outbox entry per change".

The real Redis is used when reachable (a unique key prefix, removed afterwards); `--embedded`
runs on the in-process fakeredis (no INFO memory there).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from bot import config
from bot.changes import detect  # noqa: F401 - the detection Tracking.ingest runs (must exist)
from bot.channels import ChannelLimits, Receipt
from bot.consent import Consent
from bot.handoff import Handoff
from bot.i18n import I18n
from bot.models import ChannelName, Customer, Order, OutboundMessage, ShipmentRef
from bot.notify import Notifier
from bot.orders import Orders
from bot.outbox import Outbox
from bot.store import Store
from bot.tracking import Tracking
from carriers.demo import JOURNEYS, TRACKING_URL, DemoCarrier, make_number

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
TICK = timedelta(minutes=5)
SPEED = 4.0  # journeys of 30-90 carrier hours play out within one simulated day
PEOPLE = [("en", "Europe/London", "+44"), ("hr", "Europe/Zagreb", "+385"),
          ("id", "Asia/Jakarta", "+62"), ("th", "Asia/Bangkok", "+66")]


class Sink:
    """A channel the bench never sends through (the outbox is only filled)."""

    def __init__(self, name: ChannelName, max_buttons: int) -> None:
        self.name = name
        self.limits = ChannelLimits(max_buttons=max_buttons)

    async def send(self, message: OutboundMessage) -> Receipt:  # pragma: no cover - unused
        return Receipt("sink")


@dataclass(slots=True)
class Ship:
    number: str
    scans: list[datetime]  # when this shipment is looked at (after each carrier event)


def plan(shipments: int, rng: random.Random, carrier: DemoCarrier) -> list[Ship]:
    """Random journeys starting around T0; a scan two minutes after each event."""
    seen: set[str] = set()
    out: list[Ship] = []
    while len(out) < shipments:
        journey = rng.choice(sorted(JOURNEYS))
        number = make_number(journey, rng.randint(0, 20), rng.randint(0, 9999))
        if number in seen:
            continue
        seen.add(number)
        steps = [carrier.real_time(number, s.at) for s in JOURNEYS[journey].steps]
        first = T0 + timedelta(minutes=rng.randint(0, 30))
        scans = [first] + [t + timedelta(minutes=2) for t in steps if t > first]
        out.append(Ship(number, scans))
    return out


async def seed(store: Store, ships: list[Ship], concurrency: int) -> None:
    """One order, one customer per shipment, written straight through the store."""
    k = store.keys
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int, ship: Ship) -> None:
        locale, tz, prefix = PEOPLE[i % len(PEOPLE)]
        phone = f"{prefix}9{i:08d}"
        cid, oid = f"bc{i:07d}", f"B{i:07d}"
        order = Order(id=oid, customer_id=cid, name="Bench Customer", phone=phone,
                      email=f"b{i}@example.com", locale=locale, timezone=tz,
                      shipments=[ShipmentRef("demo", ship.number)],
                      created_at=T0.isoformat(), updated_at=T0.isoformat())
        customer = Customer(id=cid, name="Bench Customer", phone=phone, timezone=tz,
                            addresses=[f"sms:{phone}", f"whatsapp:{phone}"])
        async with sem:
            await store.set_json(k.order(oid), order.to_dict())
            await store.set_json(k.customer(cid), customer.to_dict())
            await store.sadd(k.shipment_orders("demo", ship.number), oid)
            await store.sadd(k.customer_orders(cid), oid)

    await asyncio.gather(*(one(i, s) for i, s in enumerate(ships)))


def count_changes(ships: list[Ship], carrier: DemoCarrier, target: int) -> dict[datetime, list[int]]:
    """Scans by tick, taken round-robin over shipments until `target` changes are found
    (a dry run of the same detection, outside the timing)."""
    from bot.changes import detect as find

    prev: dict[int, object] = {}
    nxt = [0] * len(ships)
    by_tick: dict[datetime, list[int]] = defaultdict(list)
    total = 0
    progress = True
    while total < target and progress:
        progress = False
        for i, ship in enumerate(ships):
            if nxt[i] >= len(ship.scans) or total >= target:
                continue
            at = ship.scans[nxt[i]]
            nxt[i] += 1
            progress = True
            snap = carrier.snapshot(ship.number, at)
            if snap is None:
                continue
            total += len(find(prev.get(i), snap, promised=None, now=at))  # type: ignore[arg-type]
            prev[i] = snap
            tick = T0 + ((at - T0) // TICK + 1) * TICK
            by_tick[tick].append(i)
    return dict(by_tick)


async def memory(store: Store) -> int | None:
    try:
        return await store.memory_usage()
    except Exception:  # fakeredis has no INFO
        return None


async def xadd_ceiling(store: Store, fields: dict[str, str], n: int, concurrency: int) -> float:
    key = store.keys.shared("bench", f"xadd-{uuid.uuid4().hex[:8]}")
    per_task = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]

    async def worker(count: int) -> None:
        for _ in range(count):
            await store.xadd(key, fields)

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in per_task))
    elapsed = time.perf_counter() - start
    await store.delete(key)
    return n / elapsed


async def cleanup(store: Store, prefix: str, concurrency: int) -> int:
    keys = await store.scan_prefix(f"{prefix}:*")
    sem = asyncio.Semaphore(concurrency)

    async def drop(chunk: list[str]) -> None:
        async with sem:
            await store.delete(*chunk)

    await asyncio.gather(*(drop(keys[i:i + 200]) for i in range(0, len(keys), 200)))
    return len(keys)


async def run(args: argparse.Namespace) -> int:
    url = None if args.embedded else args.redis_url
    note = ""
    if url is not None:
        probe = Store.connect(url, "probe")
        try:
            await probe.ping()
        except Exception as exc:
            note = f" (Redis at {url} unreachable: {type(exc).__name__}; using the embedded store)"
            url = None
        finally:
            await probe.close()
    prefix = f"bench-notify-{uuid.uuid4().hex[:8]}"
    store = Store.connect(url, prefix)
    print(f"store: {'embedded fakeredis' if url is None else url}{note}; prefix {prefix}",
          file=sys.stderr)
    rng = random.Random(args.seed)
    now_box = [T0]
    settings = config.load({}, default_timezone="Europe/Zagreb", shop_name="Bench Shop")
    carrier = DemoCarrier(epoch=T0, speed=SPEED, clock=lambda: now_box[0])
    tracking = Tracking(store, {"demo": carrier}, clock=lambda: now_box[0])
    outbox = Outbox(store, {ChannelName.WHATSAPP: Sink(ChannelName.WHATSAPP, 3),
                            ChannelName.SMS: Sink(ChannelName.SMS, 0)})
    links = SimpleNamespace(tracking_url=lambda c, n: TRACKING_URL.format(number=n))
    notifier = Notifier(store, settings, I18n(), Orders(store), outbox, Consent(store),
                        Handoff(store, None, clock=lambda: now_box[0]), lambda: now_box[0],
                        tracking=links)
    found: Counter[str] = Counter()

    async def listener(changes):  # type: ignore[no-untyped-def]
        found["changes"] += len(changes)
        await notifier.on_changes(changes)

    tracking.listeners.append(listener)
    try:
        ships = plan(args.shipments, rng, carrier)
        t = time.perf_counter()
        await seed(store, ships, args.concurrency)
        print(f"seeded {len(ships)} orders in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        by_tick = count_changes(ships, carrier, args.changes)
        scans = sum(len(v) for v in by_tick.values())
        mem_before = await memory(store)

        sim = 0.0
        sem = asyncio.Semaphore(args.concurrency)

        async def scan_one(ids: list[int], at: datetime) -> float:
            spent = 0.0
            async with sem:
                for i in ids:
                    s0 = time.perf_counter()
                    snap = carrier.snapshot(ships[i].number, at)
                    spent += time.perf_counter() - s0
                    if snap is not None:
                        await tracking.ingest("demo", ships[i].number, snap, at)
            return spent

        start = time.perf_counter()
        last = max(by_tick) if by_tick else T0
        tick = T0
        released = 0
        while tick <= last or await notifier.next_due() is not None:
            now_box[0] = tick
            groups: dict[int, list[int]] = defaultdict(list)
            for i in by_tick.get(tick, []):
                groups[i].append(i)
            sim += sum(await asyncio.gather(*(scan_one(ids, tick) for ids in groups.values())))
            while (n := await notifier.release_due(limit=500)):
                released += n
            tick += TICK
            if tick > last + timedelta(days=2):
                break
        wall = time.perf_counter() - start
        busy = wall - sim
        enqueued = await store.xlen(store.keys.outbox())
        mem_after = await memory(store)
        sample = (await store.xrange(store.keys.outbox(), count=1))
        fields = sample[0][1] if sample else {"idem": "n:x", "text": "x" * 300}
        await store.delete(store.keys.outbox())
        mem_drained = await memory(store)
        decisions: Counter[str] = Counter()
        for i in rng.sample(range(len(ships)), min(2000, len(ships))):
            for e in await notifier.ledger_for_order(f"B{i:07d}"):
                decisions[f"{e['decision']}:{e.get('reason')}"] += 1
        ceiling = await xadd_ceiling(store, fields, found["changes"] or args.changes,
                                     args.concurrency)
    finally:
        removed = await cleanup(store, prefix, args.concurrency)
        await store.close()
    active = len(ships)

    def per_ship(a: int | None, b: int | None) -> str:
        return f"{(b - a) / active:,.0f} B" if a is not None and b is not None else "n/a"

    rate = found["changes"] / busy if busy > 0 else 0.0
    print(f"\nnotify_throughput: {found['changes']:,} changes from {scans:,} scans of "
          f"{active:,} shipments; {enqueued:,} messages enqueued, {released:,} deferred batches "
          f"released; concurrency {args.concurrency}; store "
          f"{'embedded' if url is None else 'redis'}")
    print(f"{'':38}{'notify pipeline':>20}{'raw XADD (ceiling)':>22}")
    print(f"{'per second, one worker process':38}{rate:>20,.0f}{ceiling:>22,.0f}")
    print(f"{'  (changes/s vs entries/s)':38}{'':>20}{'':>22}")
    print(f"{'wall time (s), carrier sim excluded':38}{busy:>20,.1f}"
          f"{(found['changes'] or args.changes) / ceiling:>22,.1f}")
    print(f"Redis memory per active shipment: {per_ship(mem_before, mem_after)} with the queued "
          f"outbound messages, {per_ship(mem_before, mem_drained)} after the sender drains them "
          f"(INFO used_memory {mem_before} -> {mem_after} -> {mem_drained})")
    top = ", ".join(f"{k} {v}" for k, v in decisions.most_common(8))
    print(f"ledger sample (2000 orders): {top}")
    print(f"cleaned up {removed:,} keys", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notify_throughput",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--shipments", type=int, default=50_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--embedded", action="store_true", help="use the in-process store")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.changes <= 0 or args.shipments <= 0 or args.concurrency <= 0:
        parser.error("--changes, --shipments and --concurrency must be positive")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
