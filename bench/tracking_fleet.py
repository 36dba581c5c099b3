"""Fleet benchmark: our poll schedule against a fixed 2-hour poll, on the demo carrier's journeys.

    python -m bench.tracking_fleet [--shipments 10000] [--days 7] [--seed 1] [--workers N]
                                   [--redis-url URL] [--by-journey]

Shipments start at random times over `--days` days on random demo journeys; the shop registers
each one up to an hour after its label. They are followed to the end of their journeys on a
simulated clock. Our side runs the REAL scheduler (`bot.schedule.Scheduler`, `CarrierGate` and
`Tracking.ingest`) on the embedded store (or a real Redis with `--redis-url`); it sees only what
the carrier answers when asked. With `--workers N` the fleet is split into N shards, each a
separate schedule in its own store and process (only for speed: fewer shipments per schedule
means emptier batches, so more API requests). The fixed poll asks about every active shipment when it is
registered and then every 2 hours on the clock, until it sees the parcel delivered or returned.

Both columns count number lookups and API requests (batches of the demo carrier's
`batch_size`) per shipment-day in transit (label to final scan), and the delay between a
carrier event and the first answer that shows it, for out-for-delivery events and for customs
events (presented to customs, held / duties due, released). The scheduler's lookups include
its one look at a delivered parcel when the grace period ends. A full default run takes about
six minutes of CPU, most of it in the embedded store; `--shipments 1000` gives a quick look.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import math
import random
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.schedule import Cadence, Scheduler
from bot.store import Store
from bot.tracking import Tracking
from carriers.demo import JOURNEYS, LIMITS, DemoCarrier, make_number
from carriers.model import CustomsStage, NumberList, Status, TrackingReport, TrackingSnapshot

START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
FIXED_EVERY = timedelta(hours=2)
TICK = timedelta(minutes=5)  # below the scheduler's batching slack: no check is late
REGISTRATION_LAG = 3600.0  # seconds between label and order upsert: uniform 0..1h
FINAL = frozenset({Status.DELIVERED, Status.RETURN_TO_SENDER})


@dataclass(slots=True)
class Parcel:
    """One simulated shipment: its number, journey, when its label was created and when the
    shop registered it with us (an order upserted a little after the label was printed)."""

    number: str
    journey: int
    start: datetime
    registered: datetime
    carrier: DemoCarrier

    times: list[datetime] = field(default_factory=list)
    answers: dict[int, TrackingSnapshot | None] = field(default_factory=dict)

    def event_times(self) -> list[tuple[datetime, Status, CustomsStage]]:
        return [(self.start + timedelta(hours=s.at), s.status, s.customs)
                for s in JOURNEYS[self.journey].steps]

    def snapshot(self, now: datetime) -> TrackingSnapshot | None:
        """The demo carrier's answer at `now` (computed once per journey step)."""
        if not self.times:
            self.times = [when for when, _, _ in self.event_times()]
        step = bisect.bisect_right(self.times, now)
        if step not in self.answers:
            at = self.times[step - 1] if step else self.start - timedelta(seconds=1)
            self.answers[step] = self.carrier.snapshot(self.number, at)
        return self.answers[step]

    @property
    def end(self) -> datetime:
        return self.event_times()[-1][0]


class SimClock:
    """The simulated clock both the scheduler and the carrier read."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FleetCarrier:
    """The demo carrier for a fleet: each parcel follows its journey from its own start time,
    and the carrier notes when each event was first shown to us."""

    name = "demo"
    limits = LIMITS

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.parcels: dict[str, Parcel] = {}
        self.requests = 0
        self.lookups = 0
        self.first_seen: dict[tuple[str, int], datetime] = {}
        self.asked: dict[str, int] = {}

    def add(self, parcel: Parcel) -> None:
        self.parcels[parcel.number] = parcel

    def recognizes(self, number: str) -> bool:
        return number in self.parcels

    async def track(self, numbers: NumberList) -> TrackingReport:
        self.requests += 1
        self.lookups += len(numbers)
        now = self.clock()
        report = TrackingReport()
        for number in numbers:
            self.asked[number] = self.asked.get(number, 0) + 1
            snap = self.parcels[number].snapshot(now)
            if snap is None:
                continue
            report.snapshots[number] = snap
            for index in range(len(snap.events)):
                self.first_seen.setdefault((number, index), now)
        return report


@dataclass(slots=True)
class Result:
    """One column of the table."""

    lookups: int = 0
    requests: int = 0
    asked: dict[str, int] = field(default_factory=dict)  # lookups per shipment
    ofd: list[float] = field(default_factory=list)  # delays in seconds
    customs: list[float] = field(default_factory=list)
    unseen: int = 0


def make_fleet(count: int, days: float, seed: int) -> list[Parcel]:
    """Random journeys starting at random times over `days` days (reproducible by seed)."""
    rng = random.Random(seed)
    fleet = []
    for i in range(count):
        journey = rng.choice(sorted(JOURNEYS))
        start = START + timedelta(seconds=rng.uniform(0, days * 86400))
        registered = start + timedelta(seconds=rng.uniform(0, REGISTRATION_LAG))
        hi, lo = divmod(i, 10000)
        number = make_number(journey, hi, lo)
        # the number says the parcel is `hi` hours into its journey at the carrier's epoch
        fleet.append(Parcel(number, journey, start, registered,
                            DemoCarrier(start + timedelta(hours=hi))))
    return sorted(fleet, key=lambda p: p.registered)


def delays(fleet: Sequence[Parcel], seen: dict[tuple[str, int], datetime], result: Result) -> None:
    """Fill the out-for-delivery and customs delays from first-seen times."""
    for parcel in fleet:
        for index, (when, status, customs) in enumerate(parcel.event_times()):
            bucket = result.ofd if status is Status.OUT_FOR_DELIVERY else (
                result.customs if customs is not CustomsStage.NONE else None)
            if bucket is None:
                continue
            first = seen.get((parcel.number, index))
            if first is None:
                result.unseen += 1
            else:
                bucket.append((first - when).total_seconds())


def fixed_poll(fleet: Sequence[Parcel], batch: int) -> Result:
    """Every active shipment asked at registration and then every 2 hours on the clock."""
    result = Result()
    seen: dict[tuple[str, int], datetime] = {}
    per_tick: dict[int, int] = {}
    registrations: dict[int, int] = {}  # fetches at registration, batched per TICK slot
    for parcel in fleet:
        slot = int((parcel.registered - START) / TICK)
        registrations[slot] = registrations.get(slot, 0) + 1
        events = parcel.event_times()
        polls = [parcel.registered]
        k = math.ceil((parcel.registered - START) / FIXED_EVERY)
        while True:
            at = START + k * FIXED_EVERY
            if at > parcel.registered:
                polls.append(at)
                per_tick[k] = per_tick.get(k, 0) + 1
            if any(s in FINAL for t, s, _ in events if t <= at):
                break
            k += 1
        for at in polls:
            for index, (when, _, _) in enumerate(events):
                if when <= at:
                    seen.setdefault((parcel.number, index), at)
        result.lookups += len(polls)
        result.asked[parcel.number] = len(polls)
    result.requests += sum(math.ceil(n / batch) for n in per_tick.values())
    result.requests += sum(math.ceil(n / batch) for n in registrations.values())
    delays(fleet, seen, result)
    return result


async def scheduled(fleet: Sequence[Parcel], store: Store, cadence: Cadence) -> Result:
    """Our scheduler and ingest path on a simulated clock, until every shipment has stopped."""
    clock = SimClock(START)
    carrier = FleetCarrier(clock)
    for parcel in fleet:
        carrier.add(parcel)
    tracking = Tracking(store, {"demo": carrier}, clock=clock)
    scheduler = Scheduler(store, tracking, cadence=cadence, clock=clock)
    waiting = list(fleet)
    cursor = 0
    horizon = fleet[-1].registered + timedelta(days=8) if fleet else START
    while clock.now <= horizon:
        while cursor < len(waiting) and waiting[cursor].registered <= clock.now:
            await scheduler.track_shipment("demo", waiting[cursor].number, clock.now)
            cursor += 1
        await scheduler.tick(clock.now)
        due = await scheduler.next_due("demo")
        if due is None and cursor >= len(waiting):
            break
        candidates = [c for c in (
            datetime.fromtimestamp(due, UTC) if due is not None else None,
            waiting[cursor].registered if cursor < len(waiting) else None) if c is not None]
        clock.now = max(clock.now + TICK, min(candidates))
    result = Result(lookups=carrier.lookups, requests=carrier.requests, asked=carrier.asked)
    delays(fleet, carrier.first_seen, result)
    return result


def _minutes(seconds: list[float], q: float) -> str:
    if not seconds:
        return "n/a"
    ordered = sorted(seconds)
    value = ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
    if q == 0.5:
        value = statistics.median(ordered)
    return f"{int(value // 3600)}:{int(value % 3600 // 60):02d}"


def by_journey(fleet: Sequence[Parcel], ours: Result, fixed: Result) -> str:
    """Lookups per shipment for each journey (where the calls go)."""
    lines = [f"{'journey':<20} {'shipments':>9} {'days':>5} {'scheduler':>10} {'fixed':>7}"]
    for journey, spec in sorted(JOURNEYS.items()):
        group = [p for p in fleet if p.journey == journey]
        if not group:
            continue
        mine = sum(ours.asked.get(p.number, 0) for p in group) / len(group)
        theirs = sum(fixed.asked.get(p.number, 0) for p in group) / len(group)
        days = (group[0].end - group[0].start).total_seconds() / 86400
        lines.append(f"{spec.name:<20} {len(group):>9} {days:>5.1f} {mine:>10.1f} {theirs:>7.1f}")
    return "\n".join(lines)


def table(fleet: Sequence[Parcel], ours: Result, fixed: Result, days: float) -> str:
    """The side-by-side report."""
    shipment_days = sum((p.end - p.start).total_seconds() for p in fleet) / 86400 or 1.0
    rows = [
        ("carrier lookups per shipment-day", f"{ours.lookups / shipment_days:.2f}",
         f"{fixed.lookups / shipment_days:.2f}"),
        ("API requests per shipment-day", f"{ours.requests / shipment_days:.3f}",
         f"{fixed.requests / shipment_days:.3f}"),
        ("out-for-delivery delay median (h:mm)", _minutes(ours.ofd, 0.5), _minutes(fixed.ofd, 0.5)),
        ("out-for-delivery delay p95 (h:mm)", _minutes(ours.ofd, 0.95), _minutes(fixed.ofd, 0.95)),
        ("customs delay median (h:mm)", _minutes(ours.customs, 0.5), _minutes(fixed.customs, 0.5)),
        ("customs delay p95 (h:mm)", _minutes(ours.customs, 0.95), _minutes(fixed.customs, 0.95)),
        ("events never seen", str(ours.unseen), str(fixed.unseen)),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [
        f"tracking fleet: {len(fleet)} shipments starting over {days:g} days, "
        f"{shipment_days:.0f} shipment-days in transit, "
        f"{len(ours.ofd)} out-for-delivery and {len(ours.customs)} customs events",
        f"{'':{width}}  {'scheduler':>12}  {'fixed 2h poll':>14}",
    ]
    lines += [f"{label:{width}}  {a:>12}  {b:>14}" for label, a, b in rows]
    return "\n".join(lines)


def shard(job: tuple[int, float, int, int, int, str | None]) -> Result:
    """Run one shard of the fleet (every `workers`-th shipment) in its own store."""
    count, days, seed, workers, index, redis_url = job
    fleet = make_fleet(count, days, seed)[index::workers]

    async def go() -> Result:
        store = Store.connect(redis_url, f"bench-{uuid.uuid4().hex[:8]}")
        try:
            return await scheduled(fleet, store, Cadence())
        finally:
            if redis_url:
                for key in await store.scan_prefix(f"{store.keys.prefix}:*"):
                    await store.delete(key)
            await store.close()

    return asyncio.run(go())


def merge(results: Sequence[Result]) -> Result:
    """One column from the shards' results."""
    out = Result()
    for r in results:
        out.lookups += r.lookups
        out.requests += r.requests
        out.asked.update(r.asked)
        out.ofd += r.ofd
        out.customs += r.customs
        out.unseen += r.unseen
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracking_fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shipments", type=int, default=10000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1,
                        help="split the fleet into this many shards, each its own schedule, "
                             "store and process: faster on several CPUs, but smaller schedules "
                             "fill fewer batches (more API requests); default 1")
    parser.add_argument("--by-journey", action="store_true",
                        help="also print lookups per shipment for each journey")
    parser.add_argument("--redis-url", default=None,
                        help="run the scheduler on this Redis (default: the embedded store)")
    args = parser.parse_args(argv)
    if args.shipments < 1 or args.days <= 0 or args.workers < 1:
        parser.error("--shipments and --workers must be at least 1, --days positive")
    workers = min(args.workers, args.shipments)
    jobs = [(args.shipments, args.days, args.seed, workers, i, args.redis_url)
            for i in range(workers)]
    began = time.monotonic()
    if workers == 1:
        results = [shard(jobs[0])]
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(shard, jobs))
    ours = merge(results)
    fleet = make_fleet(args.shipments, args.days, args.seed)
    fixed = fixed_poll(fleet, LIMITS.batch_size)
    print(table(fleet, ours, fixed, args.days))
    if args.by_journey:
        print(by_journey(fleet, ours, fixed))
    where = f"Redis at {args.redis_url}" if args.redis_url else "the embedded store"
    print(f"(scheduler simulated in {time.monotonic() - began:.1f}s on {where}, "
          f"{workers} shard(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
