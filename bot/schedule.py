"""Polling that spends carrier calls where news is likely: a shared schedule in Redis.

Each carrier has a zset of its shipments scored by next-check time. Any number of workers
claim due shipments atomically (`Store.claim_due` with a lease: a crashed worker's claims come
back when the lease ends), poll them in batches of the API's `batch_size`, feed every answer to
`Tracking.ingest`, and schedule the next check from the shipment's stage (`plan`).

`CarrierGate` guards every carrier call, polls and on-demand refreshes alike: a circuit breaker
per carrier (logged once when a carrier goes down and once when it recovers; `Retry-After`
honoured exactly; refused credentials pause it longer), a per-second token bucket, and for
carriers with a daily quota a daily counter plus a pace that spreads the quota over the day.
On-demand refreshes (a customer asking in chat) may spend at most `chat_share` of a daily
quota; polls get the rest. All of it lives in Redis, shared by every process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import zlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta

from bot.changes import CUSTOMS_BLOCKING
from bot.loop import Outage
from bot.store import Store
from bot.tracking import Admission, ListenerError, Tracking
from carriers import Carrier, PushCarrier
from carriers.model import (
    CarrierAuthError,
    CarrierError,
    CustomsStage,
    NumberProblem,
    ProblemKind,
    Status,
    TrackingSnapshot,
)

log = logging.getLogger(__name__)

DAY = 86400.0


# ------------------------------------------------------------------------------ budgets, breaker

@dataclass(frozen=True, slots=True)
class Budget:
    """How much a carrier may be called: per second, per day (None: no daily quota)."""

    per_second: float
    per_day: float | None
    batch_size: int


class CarrierGate:
    """Budgets and circuit breaker per carrier, shared through Redis by every process."""

    def __init__(self, store: Store, carriers: Mapping[str, Carrier],
                 budgets: Mapping[str, Mapping[str, float]] | None = None, *,
                 chat_share: float = 0.2, base_backoff: float = 30.0,
                 max_backoff: float = 3600.0, auth_pause: float = 1800.0,
                 probe_ttl_ms: int = 60_000) -> None:
        self.store = store
        self.k = store.keys
        self.carriers = carriers
        self.budgets = dict(budgets or {})
        self.chat_share = chat_share
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.auth_pause = auth_pause
        self.probe_ttl_ms = probe_ttl_ms

    def budget(self, carrier: str) -> Budget:
        """The adapter's declared LIMITS, overridden by settings (CARRIER_BUDGETS)."""
        adapter = self.carriers.get(carrier)
        limits = getattr(adapter, "limits", None)
        per_second = float(getattr(limits, "per_second", 1.0) or 1.0)
        per_day = getattr(limits, "per_day", None)
        override = self.budgets.get(carrier, {})
        per_second = float(override.get("per_second", per_second))
        per_day = override.get("per_day", per_day)
        batch = max(1, int(getattr(limits, "batch_size", 1) or 1))
        return Budget(per_second, float(per_day) if per_day else None, batch)

    def daily_cap(self, carrier: str, purpose: str) -> float | None:
        """Calls per UTC day for polls or for chat ("chat_share" of the quota)."""
        per_day = self.budget(carrier).per_day
        if per_day is None:
            return None
        share = self.chat_share if purpose == "chat" else 1.0 - self.chat_share
        return max(1.0, math.floor(per_day * share))

    def _breaker(self, carrier: str) -> str:
        return self.k.shared("breaker", carrier)

    def _probe(self, carrier: str) -> str:
        return self.k.shared("breaker", f"{carrier}:probe")

    @staticmethod
    def open_until(state: Mapping[str, str], now: datetime) -> float | None:
        """When an open breaker lets the next probe through (epoch seconds), else None."""
        if state.get("state") == "down" and now.timestamp() < float(state.get("until") or 0):
            return float(state["until"])
        return None

    async def breaker(self, carrier: str) -> dict[str, str]:
        """The carrier's breaker state as stored ({} when it never failed)."""
        return await self.store.hgetall(self._breaker(carrier))

    async def admit(self, carrier: str, now: datetime, *, purpose: str = "poll",
                    breaker: Mapping[str, str] | None = None) -> Admission:
        """May we make one call (one batch) to `carrier` now? Spends the budget when yes.

        `breaker` is the breaker state when the caller has just read it.
        """
        ts = now.timestamp()
        state = breaker if breaker is not None else await self.breaker(carrier)
        probe = state.get("state") == "down"
        if probe:
            until = float(state.get("until") or 0)
            if ts < until:
                return Admission(False, until - ts, "breaker")
            lock = await self.store.acquire_lock(self._probe(carrier), self.probe_ttl_ms)
            if lock is None:  # another worker is probing the carrier right now
                return Admission(False, 5.0, "breaker")
        budget = self.budget(carrier)
        cap = self.daily_cap(carrier, purpose)
        if cap is not None and purpose == "poll":
            wait = await self.store.take_token(self.k.shared("budget", f"{carrier}:pace"),
                                               max(1.0, cap / 24), cap / DAY, ts)
            if wait > 0:
                return Admission(False, wait, "pace")
        wait = await self.store.take_token(self.k.shared("budget", f"{carrier}:rate"),
                                           max(1.0, budget.per_second), budget.per_second, ts)
        if wait > 0:
            return Admission(False, wait, "rate")
        if cap is not None:
            day = now.astimezone(UTC).date()
            used = await self.store.count_in_window(
                self.k.shared("budget", f"{carrier}:{purpose}:{day.isoformat()}"), int(2 * DAY))
            if used > cap:
                midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
                return Admission(False, (midnight - now).total_seconds(), "daily")
        return Admission(True, probe=probe)

    async def used_today(self, carrier: str, purpose: str, now: datetime) -> int:
        """Calls counted against today's quota (UTC day) for a purpose."""
        day = now.astimezone(UTC).date().isoformat()
        return await self.store.get_count(self.k.shared("budget", f"{carrier}:{purpose}:{day}"))

    async def succeeded(self, carrier: str, now: datetime, *, probe: bool | None = None) -> None:
        """A call worked: close the breaker (logged once, by whoever closes it).

        `probe` is the admission's: False says the breaker was closed when the call began.
        """
        key = self._breaker(carrier)
        if probe is False or (probe is None and await self.store.hget(key, "state") != "down"):
            return
        closed, _ = await self.store.cas_field(key, "state", "down", "")
        await self.store.delete(self._probe(carrier))
        if closed:
            state = await self.store.hgetall(key)
            since = float(state.get("since") or now.timestamp())
            await self.store.hset(key, {"failures": "0", "until": "0", "kind": ""})
            log.info("carrier %s is reachable again (down for %s)", carrier,
                     _duration(now.timestamp() - since))

    async def failed(self, carrier: str, exc: CarrierError, now: datetime) -> float:
        """A call failed: open the breaker; return the pause in seconds.

        `retry_after` from the carrier is honoured exactly; refused credentials pause for
        `auth_pause`; otherwise exponential backoff with jitter, up to `max_backoff`.
        """
        key = self._breaker(carrier)
        state = await self.store.hgetall(key)
        failures = int(state.get("failures") or 0) + 1
        auth = isinstance(exc, CarrierAuthError)
        if auth:
            pause = self.auth_pause
        elif exc.retry_after is not None:
            pause = max(1.0, float(exc.retry_after))
        else:
            pause = min(self.max_backoff, self.base_backoff * 2 ** (failures - 1))
            pause *= random.uniform(0.8, 1.0)  # noqa: S311 - jitter, not security
        kind = "auth" if auth else "outage"
        await self.store.hset(key, {"failures": str(failures),
                                    "until": str(now.timestamp() + pause), "kind": kind,
                                    "error": str(exc)[:200]})
        opened, _ = await self.store.cas_field(key, "state", "", "down")
        await self.store.delete(self._probe(carrier))  # the probe is over: next one after `until`
        if opened:
            await self.store.hset(key, {"since": str(now.timestamp())})
        if auth and (opened or state.get("kind") != "auth"):
            prefix = carrier.upper() if carrier != "17track" else "SEVENTEENTRACK"
            log.error("carrier %s refused our credentials (%s): check the %s_* settings; "
                      "no calls for %s", carrier, exc, prefix, _duration(pause))
        elif opened:
            log.warning("carrier %s unavailable (%s); pausing calls for %s and backing off",
                        carrier, exc, _duration(pause))
        return pause


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}min"
    return f"{seconds / 3600:.1f}h"


# ------------------------------------------------------------------------------ cadence

@dataclass(frozen=True, slots=True)
class Cadence:
    """How often to check a shipment, by what its last snapshot says (not by its future)."""

    label_created: timedelta = timedelta(hours=8)
    in_transit: timedelta = timedelta(hours=4)
    #: the hours before the carrier's ETA, when "out for delivery" is likely
    near_eta: timedelta = timedelta(hours=1)
    near_eta_before: timedelta = timedelta(hours=12)
    near_eta_after: timedelta = timedelta(hours=6)
    #: delivered or a failed attempt comes next; "out for delivery" itself was reported
    out_for_delivery: timedelta = timedelta(minutes=90)
    #: the newest scan is in a new country: customs usually comes next
    border: timedelta = timedelta(hours=1)
    border_window: timedelta = timedelta(hours=12)
    customs: timedelta = timedelta(hours=1)  # presented to / processed by customs
    #: held, duties due, documents needed: the hold was reported, the release is next
    customs_action: timedelta = timedelta(hours=2)
    delivery_failed: timedelta = timedelta(hours=2)
    ready_for_pickup: timedelta = timedelta(hours=8)
    delayed: timedelta = timedelta(hours=6)
    on_hold: timedelta = timedelta(hours=2)
    unknown: timedelta = timedelta(hours=6)
    #: no scan for this long: back off to `stalled` (urgent stages excepted)
    quiet_after: timedelta = timedelta(days=2)
    stalled: timedelta = timedelta(hours=12)
    safety_net: timedelta = timedelta(hours=12)  # carriers that push to us
    not_found_first: timedelta = timedelta(hours=1)
    not_found_max: timedelta = timedelta(hours=12)
    #: never check a shipment again sooner than this (longer than the batching slack)
    min_gap: timedelta = timedelta(minutes=15)

    def scaled(self, factor: float) -> Cadence:
        """Every interval multiplied by `factor` (the demo carrier runs faster than time)."""
        return replace(self, **{f.name: getattr(self, f.name) * factor for f in fields(self)})


URGENT = frozenset({"out_for_delivery", "customs_action", "customs"})


@dataclass(frozen=True, slots=True)
class Plan:
    """When to check a shipment next (None: stop tracking it) and why."""

    next_at: datetime | None
    stage: str


def _delivered_at(snapshot: TrackingSnapshot) -> datetime | None:
    for event in reversed(snapshot.events):
        if event.status is Status.DELIVERED:
            return event.timestamp
    return snapshot.last_event.timestamp if snapshot.last_event else None


def _new_country(snapshot: TrackingSnapshot) -> bool:
    """The newest scan is in another country than the scan before it, and customs has not
    shown up yet: an international parcel that just arrived somewhere."""
    countries = [e.country for e in snapshot.events if e.country]
    if len(countries) < 2 or countries[-1] == countries[-2]:
        return False
    return all(e.customs is CustomsStage.NONE for e in snapshot.events)


def stage_of(snapshot: TrackingSnapshot, now: datetime, cadence: Cadence) -> tuple[str, timedelta]:
    """The polling stage of a shipment from its last snapshot, and the interval it gets."""
    status, customs = snapshot.status, snapshot.customs
    last = snapshot.last_event
    if status is Status.OUT_FOR_DELIVERY:
        return "out_for_delivery", cadence.out_for_delivery
    if customs in CUSTOMS_BLOCKING:
        return "customs_action", cadence.customs_action
    if customs is CustomsStage.PROCESSING:
        return "customs", cadence.customs
    if status is Status.DELIVERY_FAILED:
        return "delivery_failed", cadence.delivery_failed
    if status is Status.READY_FOR_PICKUP:
        return "ready_for_pickup", cadence.ready_for_pickup
    if snapshot.eta is not None and status is not Status.PENDING:
        end = (snapshot.eta_end or snapshot.eta) + cadence.near_eta_after
        if snapshot.eta - cadence.near_eta_before <= now <= end:
            return "near_eta", cadence.near_eta
    if last is not None and _new_country(snapshot) and now - last.timestamp <= cadence.border_window:
        return "border", cadence.border
    if status is Status.DELAYED:
        return "delayed", cadence.delayed
    if status is Status.ON_HOLD:
        return "on_hold", cadence.on_hold
    if status is Status.PENDING:
        return "label_created", cadence.label_created
    if status in (Status.PICKED_UP, Status.IN_TRANSIT):
        return "in_transit", cadence.in_transit
    return "unknown", cadence.unknown


def plan(snapshot: TrackingSnapshot | None, problem: NumberProblem | None, *, now: datetime,
         added_at: datetime, misses: int = 0, push: bool = False,
         cadence: Cadence = Cadence(), grace: timedelta = timedelta(hours=48),
         stop_after: timedelta = timedelta(days=30), spread: float = 0.0) -> Plan:
    """Pure: when to check next, from what we know now (never from the parcel's future).

    `spread` (0..1, stable per shipment) staggers first checks in the hours before an ETA, so
    parcels sharing an ETA are not all asked in the same minute.
    """
    if snapshot is None:
        if problem is not None and problem.kind in (ProblemKind.EXPIRED, ProblemKind.INVALID):
            return Plan(None, f"stop:{problem.kind.value}")
        if now - added_at >= stop_after:
            return Plan(None, "stop:never_found")
        wait = min(cadence.not_found_max, cadence.not_found_first * 2 ** min(misses, 16))
        return Plan(now + wait, "not_found")
    if problem is not None and problem.kind is ProblemKind.EXPIRED:
        return Plan(None, "stop:expired")
    status = snapshot.status
    if status in (Status.RETURN_TO_SENDER, Status.CANCELLED):
        return Plan(None, f"stop:{status.value}")
    if status is Status.DELIVERED:
        # one last look when the grace period ends catches a corrected "delivered"
        end = (_delivered_at(snapshot) or now) + grace
        if end < now + cadence.min_gap:
            return Plan(None, "stop:delivered")
        return Plan(end, "delivered")
    last = snapshot.last_event
    last_at = last.timestamp if last else added_at
    if now - last_at >= stop_after:
        return Plan(None, "stop:silent")
    stage, every = stage_of(snapshot, now, cadence)
    if now - last_at >= cadence.quiet_after and stage not in URGENT:
        stage, every = "stalled", max(every, cadence.stalled)
    if push:
        return Plan(now + max(every, cadence.safety_net), f"push:{stage}")
    upcoming = now + every
    if snapshot.eta is not None and stage not in URGENT and stage != "near_eta":
        window = snapshot.eta - cadence.near_eta_before
        window += cadence.near_eta * spread
        if now < window < upcoming:
            upcoming = window  # do not sleep through the hours before the ETA
    return Plan(max(upcoming, now + cadence.min_gap), stage)


def _spread(number: str) -> float:
    """A stable number in [0, 1) per shipment (staggers checks that would coincide)."""
    return zlib.crc32(number.encode()) / 2**32


# ------------------------------------------------------------------------------ the scheduler

@dataclass(slots=True)
class TickReport:
    """What one pass over the schedule did."""

    requests: int = 0  # carrier API calls (one per batch)
    polled: int = 0  # shipments asked about
    skipped_push: int = 0  # push-fed shipments heard from recently: no call
    stopped: int = 0
    subscribed: int = 0
    changes: int = 0
    throttled: dict[str, str] = field(default_factory=dict)  # carrier -> why

    @property
    def busy(self) -> bool:
        return bool(self.requests or self.subscribed or self.skipped_push or self.stopped)


class Scheduler:
    """The shared poll schedule: register shipments, claim due ones, poll, plan the next check."""

    def __init__(self, store: Store, tracking: Tracking, gate: CarrierGate | None = None, *,
                 push: Collection[str] = (), callback_base: str = "",
                 cadence: Cadence = Cadence(), cadences: Mapping[str, Cadence] | None = None,
                 stop_after_days: int = 30,
                 delivered_grace_hours: int = 48, lease: float = 300.0,
                 batch_slack: float = 300.0, max_batches: int = 20,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.k = store.keys
        self.tracking = tracking
        gate = gate or getattr(tracking, "gate", None)
        if not isinstance(gate, CarrierGate):
            gate = CarrierGate(store, tracking.carriers)
        self.gate = gate
        tracking.gate = gate  # one gate for polls and on-demand refresh
        tracking.expedite = self.expedite
        self.push = {n for n in push if isinstance(tracking.carriers.get(n), PushCarrier)}
        self.callback_base = callback_base.rstrip("/")
        self.cadence = cadence
        self.cadences = dict(cadences or {})  # per carrier, e.g. {"demo": Cadence().scaled(...)}
        self.stop_after = timedelta(days=stop_after_days)
        self.grace = timedelta(hours=delivered_grace_hours)
        self.lease = lease
        self.batch_slack = min(batch_slack, min(
            c.min_gap for c in (cadence, *self.cadences.values())).total_seconds() / 2)
        self.max_batches = max_batches
        self.clock = clock or tracking.clock

    def cadence_of(self, carrier: str) -> Cadence:
        """The cadence a carrier's shipments are checked at."""
        return self.cadences.get(carrier, self.cadence)

    # ---- keys
    def _due(self, carrier: str) -> str:
        return self.k.shared("schedule", carrier)

    def _subscribe_queue(self, carrier: str) -> str:
        return self.k.shared("schedule", f"{carrier}:subscribe")

    def _state(self, carrier: str, number: str) -> str:
        return self.k.shipment_state(carrier, number, "schedule")

    def callback_url(self, carrier: str) -> str:
        """Where a carrier pushes updates: POST /webhooks/carriers/{name}."""
        return f"{self.callback_base}/webhooks/carriers/{carrier}"

    # ---- registering
    async def track_shipment(self, carrier: str, number: str,
                             now: datetime | None = None) -> bool:
        """Start tracking a shipment (idempotent; True when it was newly added).

        A shipment that was stopped (delivered, returned, silent too long) stays stopped.
        Push-capable carriers get a subscription request from the next tick.
        """
        if carrier not in self.tracking.carriers:
            return False
        now = now or self.clock()
        state = self._state(carrier, number)
        known = await self.store.hgetall(state)
        if known.get("stopped"):
            return False
        if not known.get("added_at"):
            await self.store.hset(state, {"added_at": now.isoformat()})
        # NX: an already scheduled check keeps its time; a lost one is put back
        await self.store.zadd(self._due(carrier), {number: now.timestamp()}, nx=True)
        if carrier in self.push and not known.get("subscribed"):
            await self.store.zadd(self._subscribe_queue(carrier), {number: now.timestamp()},
                                  nx=True)
        return not known.get("added_at")

    async def expedite(self, carrier: str, number: str, now: datetime) -> None:
        """Check a tracked shipment at the next tick (a customer asked, the budget said wait)."""
        key = self._due(carrier)
        score = await self.store.zscore(key, number)
        if score is not None and score > now.timestamp():
            await self.store.zadd(key, {number: now.timestamp()})

    async def reconcile(self, now: datetime | None = None) -> int:
        """Register every shipment some order lists that the schedule does not know yet."""
        now = now or self.clock()
        added = 0
        pattern = f"{self.k.prefix}:{{s:*}}:orders"
        for key in await self.store.scan_prefix(pattern):
            tag = key[len(self.k.prefix) + 1:].split("}", 1)[0]  # "{s:carrier:number"
            _, carrier, number = tag.lstrip("{").split(":", 2)
            if await self.store.smembers(key) and await self.track_shipment(carrier, number, now):
                added += 1
        return added

    async def next_due(self, carrier: str) -> float | None:
        """The earliest next-check time (epoch seconds) of a carrier's schedule."""
        first = await self.store.zrange_with_scores(self._due(carrier), 0, 0)
        return first[0][1] if first else None

    async def size(self, carrier: str) -> int:
        """How many shipments of a carrier are scheduled (reads the whole zset: tests, CLI)."""
        return len(await self.store.zrange_with_scores(self._due(carrier)))

    # ---- one pass
    async def tick(self, now: datetime | None = None) -> TickReport:
        """Subscribe new push shipments, then poll every carrier's due shipments."""
        now = now or self.clock()
        report = TickReport()
        for name, carrier in self.tracking.carriers.items():
            if name in self.push:
                await self._subscribe_due(name, carrier, now, report)
            await self._poll_due(name, carrier, now, report)
        return report

    async def _subscribe_due(self, name: str, carrier: Carrier, now: datetime,
                             report: TickReport) -> None:
        queue = self._subscribe_queue(name)
        numbers = await self.store.claim_due(queue, now.timestamp(), 600, 100)
        if not numbers:
            return
        try:
            await carrier.subscribe(numbers, self.callback_url(name))  # type: ignore[attr-defined]
        except CarrierError as exc:
            log.warning("carrier %s: subscribing %d shipment(s) failed (%s); polling them "
                        "meanwhile, retrying in 1h", name, len(numbers), exc)
            await self.store.zadd(queue, dict.fromkeys(numbers, now.timestamp() + 3600))
            return
        except ValueError as exc:  # configuration: polling only until someone fixes it
            log.error("carrier %s cannot subscribe to pushes (%s); polling instead", name, exc)
            self.push.discard(name)
            await self.store.zrem(queue, *numbers)
            return
        for number in numbers:
            await self.store.hset(self._state(name, number),
                                  {"subscribed": now.isoformat()})
        await self.store.zrem(queue, *numbers)
        report.subscribed += len(numbers)

    async def _poll_due(self, name: str, carrier: Carrier, now: datetime,
                        report: TickReport) -> None:
        key = self._due(name)
        budget = self.gate.budget(name)
        slack = self.batch_slack if budget.batch_size > 1 else 0.0
        for _ in range(self.max_batches):
            breaker = await self.gate.breaker(name)
            if self.gate.open_until(breaker, now) is not None:
                report.throttled[name] = "breaker"
                return
            claimed = await self.store.claim_due(key, now.timestamp() + slack, self.lease,
                                                 budget.batch_size)
            if not claimed:
                return
            numbers = await self._skip_heard(name, claimed, now, report)
            if numbers:
                admission = await self.gate.admit(name, now, purpose="poll", breaker=breaker)
                if not admission.ok:
                    report.throttled[name] = admission.why
                    await self.store.zadd(key, dict.fromkeys(
                        numbers, now.timestamp() + admission.wait))
                    return
                if not await self._poll_batch(name, carrier, numbers, now, admission, report):
                    return
            if len(claimed) < budget.batch_size:
                return  # nothing more is due

    async def _poll_batch(self, name: str, carrier: Carrier, numbers: list[str], now: datetime,
                          admission: Admission, report: TickReport) -> bool:
        """One carrier call for a batch, every answer ingested; False when the carrier failed."""
        key = self._due(name)
        report.requests += 1
        try:
            result = await carrier.track(numbers)
        except CarrierError as exc:
            pause = await self.gate.failed(name, exc, now)
            await self.store.zadd(key, dict.fromkeys(numbers, now.timestamp() + pause))
            report.throttled[name] = "breaker"
            return False
        except Exception:
            log.exception("carrier %s: track() failed unexpectedly; retrying in 15 min", name)
            await self.store.zadd(key, dict.fromkeys(numbers, now.timestamp() + 900))
            return False
        await self.gate.succeeded(name, now, probe=admission.probe)
        upcoming: dict[str, float] = {}
        stopped: list[str] = []
        for number in numbers:
            answer = result.snapshots.get(number) or result.problems.get(number)
            step = await self._settle(name, number, answer, now, report)
            if step.next_at is None:
                stopped.append(number)
            else:
                upcoming[number] = step.next_at.timestamp()
        if upcoming:
            await self.store.zadd(key, upcoming)
        if stopped:
            await self.store.zrem(key, *stopped)
            report.stopped += len(stopped)
        report.polled += len(numbers)
        return True

    async def _skip_heard(self, name: str, numbers: list[str], now: datetime,
                          report: TickReport) -> list[str]:
        """Drop push-fed shipments we heard from within the safety-net interval."""
        if name not in self.push:
            return numbers
        ask: list[str] = []
        for number in numbers:
            state = await self.store.hgetall(self._state(name, number))
            view = await self.tracking.stored(name, number) if state.get("subscribed") else None
            net = self.cadence_of(name).safety_net
            if view is not None and view.checked_at is not None and now - view.checked_at < net:
                nxt = view.checked_at + net
                await self.store.zadd(self._due(name), {number: nxt.timestamp()})
                report.skipped_push += 1
            else:
                ask.append(number)
        return ask

    async def _settle(self, name: str, number: str,
                      answer: TrackingSnapshot | NumberProblem | None, now: datetime,
                      report: TickReport) -> Plan:
        """Ingest one answer and plan the shipment's next check (None: stop it)."""
        if answer is None:
            answer = NumberProblem(number, ProblemKind.NOT_FOUND, "carrier returned nothing")
        try:
            report.changes += len(await self.tracking.ingest(name, number, answer, now))
        except ListenerError:
            return Plan(now + timedelta(minutes=5), "retry")
        push = name in self.push
        snapshot = answer if isinstance(answer, TrackingSnapshot) else None
        state: dict[str, str] = {}
        # the schedule state matters only for problems, empty histories and push carriers
        if snapshot is None or not snapshot.events or push:
            state = await self.store.hgetall(self._state(name, number))
        added_at = datetime.fromisoformat(state["added_at"]) if state.get("added_at") else now
        misses = int(state.get("misses") or 0)
        problem: NumberProblem | None = None
        if isinstance(answer, NumberProblem):
            snapshot, problem = (await self.tracking.stored(name, number)).snapshot, answer
            misses += 1
            await self.store.hset(self._state(name, number), {
                "misses": str(misses), "added_at": added_at.isoformat()})
        elif misses:
            await self.store.hset(self._state(name, number), {"misses": "0"})
        step = plan(snapshot, problem, now=now, added_at=added_at, misses=max(0, misses - 1),
                    push=push and bool(state.get("subscribed")), cadence=self.cadence_of(name),
                    grace=self.grace, stop_after=self.stop_after, spread=_spread(number))
        if step.next_at is None:
            await self.store.hset(self._state(name, number),
                                  {"stopped": step.stage, "stopped_at": now.isoformat()})
        return step

    # ---- the worker loop
    async def run(self, stop: asyncio.Event, *, idle: float = 2.0,
                  reconcile_every: float | None = 3600.0) -> None:
        """Tick until `stop` is set; sleep `idle` seconds when nothing was due.

        Every `reconcile_every` seconds (None: never) shipments listed on orders but missing
        from the schedule are registered, so nothing depends on every caller registering.
        """
        last_reconcile = -math.inf
        loop = asyncio.get_running_loop()
        outage = Outage("schedule")
        while not stop.is_set():
            busy = False
            try:
                if reconcile_every is not None and loop.time() - last_reconcile >= reconcile_every:
                    added = await self.reconcile()
                    if added:
                        log.info("schedule: registered %d shipment(s) found on orders", added)
                    last_reconcile = loop.time()
                busy = (await self.tick()).busy
                outage.ok()
            except Exception as exc:
                outage.failed(exc)
            if busy:
                await asyncio.sleep(0)
                continue
            try:
                await asyncio.wait_for(stop.wait(), timeout=idle)
            except TimeoutError:
                pass


__all__ = ["Budget", "Cadence", "CarrierGate", "Plan", "Scheduler", "TickReport", "plan",
           "stage_of"]
