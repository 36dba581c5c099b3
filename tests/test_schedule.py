"""The poll schedule: cadence by stage, stop conditions, atomic claims, budgets, batching,
the circuit breaker, and push carriers that are only safety-net polled."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from bot.changes import ChangeKind
from bot.schedule import Cadence, CarrierGate, Scheduler, plan, stage_of
from bot.store import Store
from bot.tracking import Tracking
from carriers import dhl
from carriers.demo import DemoCarrier, make_number
from carriers.model import (
    CarrierAuthError,
    CarrierError,
    CustomsStage,
    Limits,
    NumberList,
    NumberProblem,
    ProblemKind,
    Status,
    TrackingEvent,
    TrackingReport,
    TrackingSnapshot,
)
from tests.driver import Clock

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
CADENCE = Cadence()


# ----------------------------------------------------------------------------- fakes

def event(hours: float, status: Status, *, country: str = "HR",
          customs: CustomsStage = CustomsStage.NONE) -> TrackingEvent:
    return TrackingEvent(timestamp=T0 + hours * H, status=status, country=country,
                         customs=customs, location="somewhere")


def snapshot(number: str, *events: TrackingEvent, eta: datetime | None = None,
             carrier: str = "fake") -> TrackingSnapshot:
    last = events[-1]
    return TrackingSnapshot(carrier=carrier, tracking_number=number, status=last.status,
                            events=tuple(events), customs=last.customs, eta=eta)


class FakeCarrier:
    """An in-memory carrier: answers from `answers`, records every call, fails on demand."""

    def __init__(self, name: str = "fake", limits: Limits | None = None, *,
                 delay: float = 0.0) -> None:
        self.name = name
        self.limits = limits or Limits(batch_size=1, per_second=1000.0)
        self.delay = delay
        self.answers: dict[str, TrackingSnapshot] = {}
        self.calls: list[list[str]] = []
        self.failures: list[Exception] = []

    def recognizes(self, number: str) -> bool:
        return True

    def in_transit(self, *numbers: str) -> None:
        for n in numbers:
            self.answers[n] = snapshot(n, event(0, Status.PENDING), event(2, Status.IN_TRANSIT),
                                       carrier=self.name)

    async def track(self, numbers: NumberList) -> TrackingReport:
        self.calls.append(list(numbers))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            raise self.failures.pop(0)
        report = TrackingReport()
        for n in numbers:
            if n in self.answers:
                report.snapshots[n] = self.answers[n]
            else:
                report.problems[n] = NumberProblem(n, ProblemKind.NOT_FOUND)
        return report

    @property
    def asked(self) -> list[str]:
        return [n for call in self.calls for n in call]


class FakePushCarrier(FakeCarrier):
    """A fake carrier that can also push (PushCarrier)."""

    def __init__(self, name: str = "pushy") -> None:
        super().__init__(name, Limits(batch_size=1, per_second=1000.0, supports_push=True))
        self.subscriptions: list[tuple[list[str], str]] = []

    def verify_webhook(self, headers: dict[str, str], body: bytes) -> None:
        return None

    def parse_webhook(self, body: bytes) -> list[TrackingSnapshot]:
        return []

    async def subscribe(self, numbers: NumberList, callback_url: str) -> None:
        self.subscriptions.append((list(numbers), callback_url))


def build(store: Store, clock: Clock, *carriers: object, **kw: object) -> tuple[Tracking, Scheduler]:
    tracking = Tracking(store, {c.name: c for c in carriers}, clock=clock,  # type: ignore[attr-defined]
                        budgets=kw.pop("budgets", None))  # type: ignore[arg-type]
    return tracking, Scheduler(store, tracking, clock=clock, **kw)  # type: ignore[arg-type]


async def due_at(scheduler: Scheduler, carrier: str, number: str) -> datetime | None:
    score = await scheduler.store.zscore(scheduler.k.shared("schedule", carrier), number)
    return datetime.fromtimestamp(score, UTC) if score is not None else None


# ----------------------------------------------------------------------------- cadence (pure)

PENDING = event(0, Status.PENDING)
TRANSIT = event(5, Status.IN_TRANSIT)
NOW = T0 + 6 * H

STAGES = [
    ("label created", snapshot("N", PENDING), NOW, "label_created", CADENCE.label_created),
    ("in transit", snapshot("N", PENDING, TRANSIT), NOW, "in_transit", CADENCE.in_transit),
    ("hours before the ETA", snapshot("N", PENDING, TRANSIT, eta=NOW + 6 * H), NOW, "near_eta",
     CADENCE.near_eta),
    ("out for delivery", snapshot("N", PENDING, TRANSIT, event(6, Status.OUT_FOR_DELIVERY)), NOW,
     "out_for_delivery", CADENCE.out_for_delivery),
    ("customs processing", snapshot("N", PENDING, event(5, Status.IN_TRANSIT,
                                                        customs=CustomsStage.PROCESSING)),
     NOW, "customs", CADENCE.customs),
    ("duties due", snapshot("N", PENDING, event(5, Status.ON_HOLD,
                                                customs=CustomsStage.DUTIES_DUE)),
     NOW, "customs_action", CADENCE.customs_action),
    ("just crossed a border", snapshot("N", event(0, Status.PENDING, country="CN"),
                                       event(5, Status.IN_TRANSIT, country="TH")),
     NOW, "border", CADENCE.border),
    ("delayed", snapshot("N", PENDING, event(5, Status.DELAYED)), NOW, "delayed",
     CADENCE.delayed),
    ("failed attempt", snapshot("N", PENDING, event(5, Status.DELIVERY_FAILED)), NOW,
     "delivery_failed", CADENCE.delivery_failed),
    ("quiet for three days", snapshot("N", PENDING, TRANSIT), NOW + 72 * H, "stalled",
     CADENCE.stalled),
    ("quiet but out for delivery stays urgent",
     snapshot("N", PENDING, event(5, Status.OUT_FOR_DELIVERY)), NOW + 72 * H, "out_for_delivery",
     CADENCE.out_for_delivery),
]


@pytest.mark.parametrize(("snap", "now", "stage", "every"), [s[1:] for s in STAGES],
                         ids=[s[0] for s in STAGES])
def test_cadence_by_stage(snap, now, stage, every):
    step = plan(snap, None, now=now, added_at=T0)
    assert step.stage == stage
    assert step.next_at == now + every


def test_urgent_stages_are_checked_more_often_than_quiet_ones():
    assert CADENCE.out_for_delivery < CADENCE.in_transit < CADENCE.label_created
    assert CADENCE.customs_action < CADENCE.in_transit and CADENCE.customs < CADENCE.in_transit
    assert CADENCE.stalled > CADENCE.in_transit


def test_the_hours_before_an_eta_are_not_slept_through():
    snap = snapshot("N", PENDING, TRANSIT, eta=NOW + 14 * H)
    assert stage_of(snap, NOW, CADENCE)[0] == "in_transit"
    assert plan(snap, None, now=NOW, added_at=T0).next_at == NOW + 2 * H
    staggered = plan(snap, None, now=NOW, added_at=T0, spread=0.5).next_at
    assert staggered == NOW + 2 * H + CADENCE.near_eta / 2


def test_push_carriers_get_only_the_safety_net():
    urgent = snapshot("N", PENDING, event(5, Status.OUT_FOR_DELIVERY))
    step = plan(urgent, None, now=NOW, added_at=T0, push=True)
    assert step.next_at == NOW + CADENCE.safety_net and step.stage.startswith("push:")


def test_stop_conditions():
    delivered = snapshot("N", PENDING, event(5, Status.DELIVERED))
    grace = timedelta(hours=48)
    assert plan(delivered, None, now=NOW, added_at=T0, grace=grace).next_at == T0 + 53 * H
    assert plan(delivered, None, now=T0 + 53 * H, added_at=T0, grace=grace).next_at is None
    for final in (Status.RETURN_TO_SENDER, Status.CANCELLED):
        step = plan(snapshot("N", PENDING, event(5, final)), None, now=NOW, added_at=T0)
        assert step.next_at is None and step.stage == f"stop:{final.value}"
    silent = plan(snapshot("N", PENDING, TRANSIT), None, now=T0 + 31 * 24 * H, added_at=T0,
                  stop_after=timedelta(days=30))
    assert silent.next_at is None and silent.stage == "stop:silent"


def test_numbers_not_found_back_off_then_stop():
    missing = NumberProblem("N", ProblemKind.NOT_FOUND)
    waits = [plan(None, missing, now=NOW, added_at=T0, misses=m).next_at - NOW for m in range(6)]
    assert waits == [H, 2 * H, 4 * H, 8 * H, 12 * H, 12 * H]
    assert plan(None, missing, now=T0 + 31 * 24 * H, added_at=T0).next_at is None
    for kind in (ProblemKind.EXPIRED, ProblemKind.INVALID):
        assert plan(None, NumberProblem("N", kind), now=NOW, added_at=T0).next_at is None


# ----------------------------------------------------------------------------- the schedule

async def test_each_due_shipment_goes_to_exactly_one_worker(store, clock):
    carrier = FakeCarrier(limits=Limits(batch_size=5, per_second=1000.0), delay=0.005)
    numbers = [f"N{i:03d}" for i in range(60)]
    carrier.in_transit(*numbers)
    workers = [build(store, clock, carrier)[1] for _ in range(4)]
    for n in numbers:
        await workers[0].track_shipment("fake", n)
    await asyncio.gather(*(w.tick() for w in workers))
    assert Counter(carrier.asked) == dict.fromkeys(numbers, 1)
    assert all(len(call) <= 5 for call in carrier.calls)
    for n in numbers:
        assert await due_at(workers[0], "fake", n) == clock.now + CADENCE.in_transit


async def test_registering_is_idempotent(store, clock):
    carrier = FakeCarrier()
    _, scheduler = build(store, clock, carrier)
    assert await scheduler.track_shipment("fake", "N1") is True
    assert await scheduler.track_shipment("fake", "N1") is False
    assert await scheduler.track_shipment("nope", "N1") is False
    assert await scheduler.size("fake") == 1


async def test_cadence_follows_a_demo_journey(store, clock):
    demo = DemoCarrier(epoch=clock.now, clock=clock)
    number = make_number(2, 0, 1)  # customs_th: duties due at 36h, out for delivery at 76h
    _, scheduler = build(store, clock, demo)
    await scheduler.track_shipment("demo", number)
    start = clock.now
    expected = {0: CADENCE.label_created, 37: CADENCE.customs_action,
                77: CADENCE.out_for_delivery}
    for hours, every in expected.items():
        clock.now = start + hours * H
        await scheduler.expedite("demo", number, clock.now)
        report = await scheduler.tick()
        assert report.polled == 1
        assert await due_at(scheduler, "demo", number) == clock.now + every


async def test_delivered_parcels_get_one_last_look_then_stop(store, clock):
    demo = DemoCarrier(epoch=clock.now, clock=clock)
    number = make_number(1, 0, 2)  # delivered at 28h
    returned = make_number(7, 0, 3)  # returning to sender at 44h
    _, scheduler = build(store, clock, demo, delivered_grace_hours=48)
    start = clock.now
    await scheduler.track_shipment("demo", number)
    await scheduler.track_shipment("demo", returned)
    clock.now = start + 45 * H
    await scheduler.expedite("demo", number, clock.now)
    await scheduler.expedite("demo", returned, clock.now)
    report = await scheduler.tick()
    assert report.polled == 2 and report.stopped == 1
    assert await due_at(scheduler, "demo", returned) is None
    assert await due_at(scheduler, "demo", number) == start + (28 + 48) * H
    clock.now = start + (28 + 48) * H
    assert (await scheduler.tick()).stopped == 1
    assert await scheduler.size("demo") == 0
    state = await store.hgetall(store.keys.shipment_state("demo", number, "schedule"))
    assert state["stopped"] == "stop:delivered"
    assert await scheduler.track_shipment("demo", number) is False  # stays stopped
    assert await scheduler.size("demo") == 0


async def test_batches_follow_the_api_batch_size(store, clock):
    carrier = FakeCarrier(limits=Limits(batch_size=35, per_second=100.0))
    numbers = [f"9400{i:06d}" for i in range(100)]
    carrier.in_transit(*numbers)
    _, scheduler = build(store, clock, carrier)
    for n in numbers:
        await scheduler.track_shipment("fake", n)
    report = await scheduler.tick()
    assert [len(c) for c in carrier.calls] == [35, 35, 30]
    assert report.requests == 3 and report.polled == 100


async def test_batches_are_topped_up_with_shipments_due_soon(store, clock):
    carrier = FakeCarrier(limits=Limits(batch_size=10, per_second=100.0))
    carrier.in_transit("A", "B", "C")
    _, scheduler = build(store, clock, carrier)
    await scheduler.track_shipment("fake", "A")
    await scheduler.track_shipment("fake", "B", clock.now + timedelta(minutes=3))
    await scheduler.track_shipment("fake", "C", clock.now + timedelta(hours=1))
    await scheduler.tick()
    assert carrier.calls == [["A", "B"]]


# ----------------------------------------------------------------------------- budgets

async def test_dhl_daily_quota_is_never_exceeded_and_spread_over_the_day(store, clock):
    clock.now = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    carrier = FakeCarrier("dhl", dhl.LIMITS)
    numbers = [f"{1000000000 + i}" for i in range(400)]
    carrier.in_transit(*numbers)
    tracking, scheduler = build(store, clock, carrier)
    for n in numbers:
        await scheduler.track_shipment("dhl", n)
    per_day: Counter[str] = Counter()
    per_hour: Counter[int] = Counter()
    for _ in range(int(30 * 60 / 5)):
        before = len(carrier.calls)
        await scheduler.tick()
        made = len(carrier.calls) - before
        per_day[clock.now.date().isoformat()] += made
        if clock.now.date() == datetime(2026, 11, 23, tzinfo=UTC).date():
            per_hour[clock.now.hour] += made
        clock.advance(minutes=5)
    poll_cap = scheduler.gate.daily_cap("dhl", "poll")
    assert poll_cap == 200  # 250/day, a fifth kept for customers asking in chat
    assert per_day["2026-11-23"] == 200
    assert 0 < per_day["2026-11-24"] <= 200
    assert max(per_hour.values()) <= 20  # paced: not the whole quota in the first minutes
    # customers asking in chat get the other fifth, and nothing more
    chat_numbers = [f"{2000000000 + i}" for i in range(60)]
    carrier.in_transit(*chat_numbers)
    before = len(carrier.calls)
    views = []
    for n in chat_numbers:
        clock.advance(seconds=2)  # within the 1 call/s rate
        views.append(await tracking.current("dhl", n))
    assert len(carrier.calls) - before == 50
    assert sum(v.snapshot is not None for v in views) == 50
    assert await scheduler.gate.used_today("dhl", "chat", clock.now) >= 50


async def test_budgets_from_settings_override_the_adapter(store, clock):
    gate = CarrierGate(store, {"dhl": FakeCarrier("dhl", dhl.LIMITS)},
                       {"dhl": {"per_day": 100, "per_second": 0.5}})
    assert gate.budget("dhl").per_day == 100 and gate.budget("dhl").per_second == 0.5
    assert gate.daily_cap("dhl", "poll") == 80 and gate.daily_cap("dhl", "chat") == 20
    assert (await gate.admit("dhl", clock.now)).ok
    second = await gate.admit("dhl", clock.now)
    assert not second.ok and second.why == "rate" and second.wait == pytest.approx(2.0)


async def test_on_demand_refresh_shares_the_rate_limit(store, clock):
    carrier = FakeCarrier("slow", Limits(batch_size=1, per_second=1 / 60))
    carrier.in_transit("A", "B")
    tracking, _ = build(store, clock, carrier)
    assert (await tracking.current("slow", "A")).snapshot is not None
    view = await tracking.current("slow", "B")  # the next token is a minute away
    assert len(carrier.calls) == 1 and view.snapshot is None and view.stale


# ----------------------------------------------------------------------------- breaker

async def test_breaker_logs_once_when_down_and_once_when_back(store, clock, caplog):
    caplog.set_level(logging.INFO, logger="bot.schedule")
    carrier = FakeCarrier()
    carrier.in_transit("A", "B", "C")
    workers = [build(store, clock, carrier)[1] for _ in range(2)]
    for n in ("A", "B", "C"):
        await workers[0].track_shipment("fake", n)
    carrier.failures = [CarrierError("fake", "HTTP 503", status=503) for _ in range(5)]
    for i in range(5):
        await workers[i % 2].tick()
        clock.advance(hours=2)
    assert len(carrier.calls) == 5  # one probe per pause, not one call per shipment
    await workers[1].tick()
    await workers[0].tick()
    down = [r for r in caplog.records if "unavailable" in r.getMessage()]
    up = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(down) == 1 and down[0].levelno == logging.WARNING
    assert len(up) == 1 and up[0].levelno == logging.INFO
    assert set(carrier.asked[5:]) == {"A", "B", "C"}


async def test_retry_after_is_honoured_exactly(store, clock):
    carrier = FakeCarrier()
    carrier.in_transit("A")
    tracking, scheduler = build(store, clock, carrier)
    await scheduler.track_shipment("fake", "A")
    carrier.failures = [CarrierError("fake", "HTTP 429", retry_after=120, status=429)]
    start = clock.now
    await scheduler.tick()
    assert await due_at(scheduler, "fake", "A") == start + timedelta(seconds=120)
    clock.now = start + timedelta(seconds=119)
    await scheduler.tick()
    view = await tracking.current("fake", "A")  # a customer asking changes nothing
    assert len(carrier.calls) == 1 and view.stale
    clock.now = start + timedelta(seconds=121)
    await scheduler.tick()
    assert len(carrier.calls) == 2


async def test_refused_credentials_pause_longer_and_say_so(store, clock, caplog):
    caplog.set_level(logging.INFO, logger="bot.schedule")
    carrier = FakeCarrier("dhl", dhl.LIMITS)
    carrier.in_transit("1234567890")
    _, scheduler = build(store, clock, carrier)
    await scheduler.track_shipment("dhl", "1234567890")
    carrier.failures = [CarrierAuthError("dhl", "credentials refused (HTTP 401)", status=401)]
    await scheduler.tick()
    assert await due_at(scheduler, "dhl", "1234567890") == clock.now + timedelta(minutes=30)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "credentials" in record.getMessage() and "DHL_*" in record.getMessage()


# ----------------------------------------------------------------------------- push carriers

async def test_push_carriers_are_subscribed_and_only_safety_net_polled(store, clock):
    carrier = FakePushCarrier()
    number = "PUSH1"
    carrier.answers[number] = snapshot(number, event(0, Status.PENDING),
                                       event(1, Status.OUT_FOR_DELIVERY), carrier="pushy")
    tracking, scheduler = build(store, clock, carrier, push={"pushy"},
                                callback_base="https://shop.example/")
    await scheduler.track_shipment("pushy", number)
    report = await scheduler.tick()
    assert carrier.subscriptions == [([number], "https://shop.example/webhooks/carriers/pushy")]
    assert report.subscribed == 1 and report.polled == 1
    start = clock.now
    assert await due_at(scheduler, "pushy", number) == start + CADENCE.safety_net
    # a push arrives an hour later: the safety-net poll is pushed back instead of spent
    clock.now = start + H
    await tracking.ingest("pushy", number, carrier.answers[number])
    clock.now = start + CADENCE.safety_net
    report = await scheduler.tick()
    assert len(carrier.calls) == 1 and report.skipped_push == 1
    assert await due_at(scheduler, "pushy", number) == start + H + CADENCE.safety_net


async def test_carriers_without_webhook_credentials_are_polled_normally(store, clock):
    carrier = FakePushCarrier()
    carrier.answers["P"] = snapshot("P", event(0, Status.PENDING),
                                    event(1, Status.OUT_FOR_DELIVERY), carrier="pushy")
    _, scheduler = build(store, clock, carrier)  # not in `push`: no webhook secret configured
    await scheduler.track_shipment("pushy", "P")
    await scheduler.tick()
    assert carrier.subscriptions == []
    assert await due_at(scheduler, "pushy", "P") == clock.now + CADENCE.out_for_delivery


# ----------------------------------------------------------------------------- ingest, loop

async def test_every_poll_goes_through_ingest_and_listeners_hear_once(store, clock):
    demo = DemoCarrier(epoch=clock.now, clock=clock)
    number = make_number(1, 0, 4)
    tracking, scheduler = build(store, clock, demo)
    heard: list[list] = []

    async def listener(changes: Sequence) -> None:
        heard.append([c.kind for c in changes])

    tracking.listeners.append(listener)
    await scheduler.track_shipment("demo", number)
    start = clock.now
    for hours in (6, 6.5, 23.5, 24):
        clock.now = start + hours * H
        await scheduler.expedite("demo", number, clock.now)
        await scheduler.tick()
    assert heard == [[ChangeKind.SHIPPED], [ChangeKind.OUT_FOR_DELIVERY]]


async def test_a_failing_listener_means_a_retry_not_a_lost_change(store, clock):
    demo = DemoCarrier(epoch=clock.now - 6 * H, clock=clock)
    number = make_number(1, 0, 5)
    tracking, scheduler = build(store, clock, demo)
    heard: list[ChangeKind] = []
    broken = True

    async def listener(changes: Sequence) -> None:
        if broken:
            raise RuntimeError("outbox down")
        heard.extend(c.kind for c in changes)

    tracking.listeners.append(listener)
    await scheduler.track_shipment("demo", number)
    await scheduler.tick()
    assert (await tracking.stored("demo", number)).snapshot is None
    assert await due_at(scheduler, "demo", number) == clock.now + timedelta(minutes=5)
    broken = False
    clock.advance(minutes=5)
    await scheduler.tick()
    assert heard == [ChangeKind.SHIPPED]


async def test_reconcile_finds_shipments_on_orders(services, clock):
    order_number = make_number(1, 10, 9)
    await services.store.sadd(services.store.keys.shipment_orders("demo", order_number), "HR-9")
    scheduler = Scheduler(services.store, services.tracking)
    assert await scheduler.reconcile() == 1
    assert await scheduler.reconcile() == 0
    assert await scheduler.size("demo") == 1


async def test_run_loop_polls_until_stopped(store, clock):
    carrier = FakeCarrier()
    carrier.in_transit("A")
    _, scheduler = build(store, clock, carrier)
    await scheduler.track_shipment("fake", "A")
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop, idle=0.01, reconcile_every=None))
    for _ in range(500):
        if carrier.calls:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert carrier.asked == ["A"]


async def test_a_faster_demo_carrier_gets_a_scaled_cadence(store, clock):
    fast = Cadence().scaled(1 / 120)  # `shipmate demo` runs journeys 120x faster
    assert fast.in_transit == timedelta(minutes=2) and fast.out_for_delivery == timedelta(seconds=45)
    demo = DemoCarrier(epoch=clock.now, speed=120, clock=clock)
    other = FakeCarrier()
    other.in_transit("N1")
    _, scheduler = build(store, clock, demo, other, cadences={"demo": fast})
    number = make_number(1, 0, 7)
    await scheduler.track_shipment("demo", number)
    await scheduler.track_shipment("fake", "N1")
    await scheduler.tick()
    assert await due_at(scheduler, "demo", number) == clock.now + fast.label_created
    assert await due_at(scheduler, "fake", "N1") == clock.now + CADENCE.in_transit
