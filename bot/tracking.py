"""Shipments kept fresh: carrier registry, one ingest path, on-demand refresh with coalescing.

Every snapshot we get (a scheduled poll, a customer's on-demand refresh, a carrier webhook)
goes through `Tracking.ingest`: store it, find what changed against the previous snapshot,
report each change once (its key is remembered in Redis) to the listeners (notifications).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from bot.changes import DEFAULT_STALL_AFTER, SETTLED, Change, detect
from bot.models import snapshot_from_dict, snapshot_to_dict
from bot.store import Store
from carriers import Carrier
from carriers.demo import TRACKING_URL as DEMO_TRACKING_URL
from carriers.model import (
    CarrierError,
    NumberProblem,
    ProblemKind,
    Status,
    TrackingSnapshot,
)
from carriers.numbers import recognize

log = logging.getLogger(__name__)

#: How long a reported change key is remembered (longer than any shipment is tracked).
REPORTED_TTL = 180 * 86400
#: The longest an on-demand refresh waits for a per-second token before answering from store.
CHAT_MAX_WAIT = 1.0

Listener = Callable[[list[Change]], Awaitable[None]]


@dataclass(slots=True)
class ShipmentView:
    """What we know about one parcel right now."""

    carrier: str
    tracking_number: str
    snapshot: TrackingSnapshot | None = None
    problem: NumberProblem | None = None
    stale: bool = False  # the carrier could not be asked; this is the last known state
    checked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    """A gate's answer: call now, or not before `wait` seconds (and why not)."""

    ok: bool
    wait: float = 0.0
    why: str = ""  # "" | "breaker" | "rate" | "pace" | "daily"
    probe: bool = False  # the breaker was open: this call tests whether the carrier is back


class Gate(Protocol):
    """Budgets and circuit breaker shared by polling and on-demand refresh (bot.schedule)."""

    async def admit(self, carrier: str, now: datetime, *, purpose: str = "poll") -> Admission:
        ...

    async def succeeded(self, carrier: str, now: datetime, *, probe: bool | None = None) -> None:
        ...

    async def failed(self, carrier: str, exc: CarrierError, now: datetime) -> float:
        ...


class ListenerError(Exception):
    """A listener failed; the snapshot was not stored, so the changes will be found again."""


class Tracking:
    """Owns the carrier adapters and the stored snapshot of every shipment."""

    def __init__(self, store: Store, carriers: Mapping[str, Carrier], *,
                 fresh_seconds: int = 300, clock: Callable[[], datetime] | None = None,
                 gate: Gate | None = None,
                 budgets: Mapping[str, Mapping[str, float]] | None = None,
                 stall_after: Mapping[Status, timedelta] = DEFAULT_STALL_AFTER) -> None:
        self.store = store
        self.k = store.keys
        self.carriers = dict(carriers)
        self.fresh_seconds = fresh_seconds
        self.clock = clock or (lambda: datetime.now(UTC))
        self.stall_after = stall_after
        if gate is None:  # on-demand refresh always spends the shared budgets
            from bot.schedule import CarrierGate

            gate = CarrierGate(store, self.carriers, budgets or {})
        self.gate: Gate = gate
        #: Called with the changes found whenever a new snapshot is stored (notifications).
        self.listeners: list[Listener] = []
        #: Set by the scheduler: move a shipment to the front of the poll queue.
        self.expedite: Callable[[str, str, datetime], Awaitable[None]] | None = None

    def detect(self, number: str) -> list[str]:
        """Configured carriers that could own `number`, most likely first."""
        ranked: list[str] = []
        for cand in recognize(number):
            if cand.carrier in self.carriers and cand.carrier not in ranked:
                ranked.append(cand.carrier)
        for name, carrier in self.carriers.items():
            if name not in ranked and carrier.recognizes(number):
                ranked.append(name)
        return ranked

    def tracking_url(self, carrier: str, number: str) -> str:
        """The carrier's public tracking page for a number ('' when unknown)."""
        if carrier == "demo":
            return DEMO_TRACKING_URL.format(number=number)
        for cand in recognize(number):
            if cand.carrier == carrier and cand.tracking_url:
                return cand.tracking_url
        return ""

    async def stored(self, carrier: str, number: str) -> ShipmentView:
        """The last stored state, without asking the carrier."""
        return _view(carrier, number, await self.store.get_json(self.k.shipment(carrier, number)))

    async def known(self, carrier: str, number: str) -> bool:
        """Whether we track this shipment (an order lists it, or we stored a state for it)."""
        if await self.store.exists(self.k.shipment(carrier, number)):
            return True
        return bool(await self.store.smembers(self.k.shipment_orders(carrier, number)))

    async def save(self, carrier: str, number: str, snapshot: TrackingSnapshot | None,
                   problem: NumberProblem | None, checked_at: datetime) -> None:
        """Store the newest carrier answer for a shipment."""
        key = self.k.shipment(carrier, number)
        doc = await self.store.get_json(key) or {"carrier": carrier, "tracking_number": number}
        await self._write(key, doc, snapshot, problem, checked_at)

    async def _write(self, key: str, doc: dict, snapshot: TrackingSnapshot | None,
                     problem: NumberProblem | None, checked_at: datetime) -> None:
        if snapshot is not None:
            doc["snapshot"] = snapshot_to_dict(snapshot)
            doc["problem"] = None
        elif problem is not None:
            doc["problem"] = {"kind": problem.kind.value, "message": problem.message}
        doc["checked_at"] = checked_at.isoformat()
        await self.store.set_json(key, doc)

    async def promised(self, carrier: str, number: str) -> date | None:
        """The earliest delivery date the shop promised on any order listing the shipment."""
        dates: list[date] = []
        for oid in await self.store.smembers(self.k.shipment_orders(carrier, number)):
            doc = await self.store.get_json(self.k.order(oid)) or {}
            raw = doc.get("promised_delivery_date") or ""
            try:
                dates.append(date.fromisoformat(raw))
            except ValueError:
                continue
        return min(dates) if dates else None

    async def ingest(self, carrier: str, number: str, result: TrackingSnapshot | NumberProblem,
                     now: datetime | None = None) -> list[Change]:
        """The one path for every carrier answer: store, detect, report new changes once.

        Returns the changes reported now (already-reported keys are dropped). An answer older
        than the stored one (a late or replayed push) only refreshes `checked_at`. Raises
        ListenerError when a listener fails; nothing is stored then, so a retry finds the
        same changes again.
        """
        now = now or self.clock()
        key = self.k.shipment(carrier, number)
        doc = await self.store.get_json(key) or {"carrier": carrier, "tracking_number": number}
        if isinstance(result, NumberProblem):
            await self._write(key, doc, None, result, now)
            return []
        snapshot = result.with_fetched_at(now)
        encoded = snapshot_to_dict(snapshot)
        stored = doc.get("snapshot")
        if stored and _same_answer(stored, encoded):  # the usual poll: nothing moved
            previous: TrackingSnapshot | None = snapshot.with_fetched_at(
                datetime.fromisoformat(stored["fetched_at"]) if stored.get("fetched_at") else None)
        else:
            previous = snapshot_from_dict(stored) if stored else None
            if previous is not None and _older(result, previous):
                await self._write(key, doc, None, None, now)
                return []
        promised = None
        if snapshot.eta is not None and snapshot.status not in SETTLED and (
                previous is None or previous.eta is None
                or previous.eta.date() != snapshot.eta.date()):
            promised = await self.promised(carrier, number)  # only a new ETA day can be late
        changes = detect(previous, snapshot, promised=promised, now=now,
                         stall_after=self.stall_after)
        fresh: list[Change] = []
        for change in changes:
            if await self.store.first_time(self._reported(change), REPORTED_TTL):
                fresh.append(change)
        if fresh:
            try:
                for listener in self.listeners:
                    await listener(fresh)
            except Exception as exc:
                await self.store.delete(*(self._reported(c) for c in fresh))
                log.exception("tracking listener failed for %s %s", carrier, _mask(number))
                raise ListenerError(str(exc)) from exc
        doc["snapshot"], doc["problem"], doc["checked_at"] = encoded, None, now.isoformat()
        await self.store.set_json(key, doc)
        return fresh

    def _reported(self, change: Change) -> str:
        return self.k.shipment_state(change.carrier, change.tracking_number,
                                     f"reported:{change.key}")

    async def current(self, carrier: str, number: str, *, max_age: int | None = None) -> ShipmentView:
        """Fresh state: stored if recent enough, else ask the carrier once for all askers.

        The rule for customers asking: a shipment is asked about at most once per `max_age`
        (TRACKING_FRESH_SECONDS) however many people ask, and concurrent askers share that one
        call. The call goes through the same gate as polling: the carrier's circuit breaker,
        its per-second rate, and for carriers with a daily quota at most the gate's
        `chat_share` of it (20%: DHL's 250 calls/day leave 50 for chat, 200 for polls). When
        the gate says no, the answer is the stored state (marked stale when the carrier is
        down or nothing is stored) and the shipment moves to the front of the poll schedule.
        """
        max_age = self.fresh_seconds if max_age is None else max_age
        view = await self.stored(carrier, number)
        now = self.clock()
        if view.checked_at and (now - view.checked_at).total_seconds() < max_age:
            return view
        adapter = self.carriers.get(carrier)
        if adapter is None:
            view.stale = True
            return view
        lock_key = self.k.shipment_refresh(carrier, number)
        token = await self.store.acquire_lock(lock_key, 30_000)
        if token is None:  # someone else is asking right now: wait for their answer
            for _ in range(50):
                await asyncio.sleep(0.1)
                newer = await self.stored(carrier, number)
                if newer.checked_at and newer.checked_at != view.checked_at:
                    return newer
            view.stale = True
            return view
        try:
            return await self._refresh(adapter, view, now)
        finally:  # released only once the answer is stored, so waiters see it
            await self.store.release_lock(lock_key, token)

    async def _refresh(self, adapter: Carrier, view: ShipmentView, now: datetime) -> ShipmentView:
        carrier, number = view.carrier, view.tracking_number
        admission = await self.gate.admit(carrier, now, purpose="chat")
        if not admission.ok and admission.why in ("rate", "pace") \
                and admission.wait <= CHAT_MAX_WAIT:
            await asyncio.sleep(admission.wait)
            admission = await self.gate.admit(carrier, self.clock(), purpose="chat")
        if not admission.ok:
            return await self._unasked(view, admission, now)
        try:
            report = await adapter.track([number])
        except CarrierError as exc:
            await self.gate.failed(carrier, exc, now)
            log.debug("carrier %s unavailable for on-demand refresh: %s", carrier, exc)
            view.stale = True
            return view
        await self.gate.succeeded(carrier, now, probe=admission.probe)
        result: TrackingSnapshot | NumberProblem | None = report.snapshots.get(number) \
            or report.problems.get(number)
        if result is None:
            result = NumberProblem(number, ProblemKind.NOT_FOUND, "carrier returned nothing")
        try:
            await self.ingest(carrier, number, result, now)
        except ListenerError:  # still show the customer what the carrier said
            if isinstance(result, TrackingSnapshot):
                return ShipmentView(carrier, number, result.with_fetched_at(now), None, False, now)
            return ShipmentView(carrier, number, view.snapshot, result, False, now)
        return await self.stored(carrier, number)

    async def _unasked(self, view: ShipmentView, admission: Admission,
                       now: datetime) -> ShipmentView:
        """Answer from the store when the gate says no; a known outage marks it stale."""
        if admission.why == "breaker" or (view.snapshot is None and view.problem is None):
            view.stale = True
        if self.expedite is not None and admission.why != "breaker":
            await self.expedite(view.carrier, view.tracking_number, now)
        return view

    async def find(self, number: str) -> ShipmentView | None:
        """Track a number no order lists: try each candidate carrier until one knows it."""
        last: ShipmentView | None = None
        for name in self.detect(number):
            view = await self.current(name, number)
            if view.snapshot is not None:
                return view
            if last is None or (view.stale and last.problem is not None):
                last = view
        return last


def _view(carrier: str, number: str, doc: dict | None) -> ShipmentView:
    doc = doc or {}
    view = ShipmentView(carrier, number)
    if doc.get("snapshot"):
        view.snapshot = snapshot_from_dict(doc["snapshot"])
    if doc.get("problem"):
        view.problem = NumberProblem(number, ProblemKind(doc["problem"]["kind"]),
                                     doc["problem"].get("message", ""))
    if doc.get("checked_at"):
        view.checked_at = datetime.fromisoformat(doc["checked_at"])
    return view


def _same_answer(stored: dict, encoded: dict) -> bool:
    """Whether two encoded snapshots say the same (apart from when they were fetched)."""
    return len(stored) == len(encoded) and all(
        stored.get(k) == v for k, v in encoded.items() if k != "fetched_at")


def _older(incoming: TrackingSnapshot, stored: TrackingSnapshot) -> bool:
    """Whether `incoming` knows less than `stored` (a late or replayed push)."""
    new, old = incoming.last_event, stored.last_event
    if new is None or old is None:
        return new is None and old is not None
    return new.timestamp < old.timestamp or (
        new.timestamp == old.timestamp and len(incoming.events) < len(stored.events))


def _mask(number: str) -> str:
    """Tracking numbers are not secret, but keep logs short and uniform."""
    return number if len(number) <= 8 else f"{number[:4]}…{number[-4:]}"
