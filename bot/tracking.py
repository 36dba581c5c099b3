"""Shipments kept fresh: carrier registry, on-demand refresh with coalescing, stored snapshots."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.changes import Change
from bot.models import snapshot_from_dict, snapshot_to_dict
from bot.store import Store
from carriers import Carrier
from carriers.model import CarrierError, NumberProblem, ProblemKind, TrackingSnapshot

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ShipmentView:
    """What we know about one parcel right now."""

    carrier: str
    tracking_number: str
    snapshot: TrackingSnapshot | None = None
    problem: NumberProblem | None = None
    stale: bool = False  # the carrier could not be asked; this is the last known state
    checked_at: datetime | None = None


class Tracking:
    """Owns the carrier adapters and the stored snapshot of every shipment."""

    def __init__(self, store: Store, carriers: Mapping[str, Carrier], *,
                 fresh_seconds: int = 300, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.k = store.keys
        self.carriers = dict(carriers)
        self.fresh_seconds = fresh_seconds
        self.clock = clock or (lambda: datetime.now(UTC))
        #: Called with the changes found whenever a new snapshot is stored (notifications).
        self.listeners: list[Callable[[list[Change]], Awaitable[None]]] = []

    def detect(self, number: str) -> list[str]:
        """Configured carriers that could own `number`, most likely first."""
        ranked: list[str] = []
        try:
            from carriers.numbers import recognize
        except ImportError:  # recognition data not installed: fall back to adapters' checks
            recognize = None  # type: ignore[assignment]
        if recognize is not None:
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
            from carriers.demo import TRACKING_URL

            return TRACKING_URL.format(number=number)
        try:
            from carriers.numbers import recognize
        except ImportError:
            return ""
        for cand in recognize(number):
            if cand.carrier == carrier and cand.tracking_url:
                return cand.tracking_url
        return ""

    async def stored(self, carrier: str, number: str) -> ShipmentView:
        """The last stored state, without asking the carrier."""
        doc = await self.store.get_json(self.k.shipment(carrier, number)) or {}
        view = ShipmentView(carrier, number)
        if doc.get("snapshot"):
            view.snapshot = snapshot_from_dict(doc["snapshot"])
        if doc.get("problem"):
            view.problem = NumberProblem(number, ProblemKind(doc["problem"]["kind"]),
                                         doc["problem"].get("message", ""))
        if doc.get("checked_at"):
            view.checked_at = datetime.fromisoformat(doc["checked_at"])
        return view

    async def save(self, carrier: str, number: str, snapshot: TrackingSnapshot | None,
                   problem: NumberProblem | None, checked_at: datetime) -> None:
        """Store the newest carrier answer for a shipment."""
        key = self.k.shipment(carrier, number)
        doc = await self.store.get_json(key) or {"carrier": carrier, "tracking_number": number}
        if snapshot is not None:
            doc["snapshot"] = snapshot_to_dict(snapshot)
            doc["problem"] = None
        elif problem is not None:
            doc["problem"] = {"kind": problem.kind.value, "message": problem.message}
        doc["checked_at"] = checked_at.isoformat()
        await self.store.set_json(key, doc)

    async def current(self, carrier: str, number: str, *, max_age: int | None = None) -> ShipmentView:
        """Fresh state: stored if recent enough, else ask the carrier once for all askers."""
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
            report = await adapter.track([number])
        except CarrierError as exc:
            log.warning("carrier %s unavailable for on-demand refresh: %s", carrier, exc)
            view.stale = True
            return view
        finally:
            await self.store.release_lock(lock_key, token)
        snapshot = report.snapshots.get(number)
        problem = report.problems.get(number)
        if snapshot is None and problem is None:
            problem = NumberProblem(number, ProblemKind.NOT_FOUND, "carrier returned nothing")
        await self.save(carrier, number, snapshot.with_fetched_at(now) if snapshot else None,
                        problem, now)
        return await self.stored(carrier, number)

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
