"""What changed between two snapshots of a shipment: the news worth telling a customer.

Detection is pure: (previous snapshot, new snapshot, context, now) -> [Change]. Each change
carries a stable `key` so the same news is reported (and announced) once: the key names the
carrier event that caused it (or the ETA date it announces), never the time we looked.
Routine scans (another in-transit hop) are not news.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from carriers.model import (
    CustomsStage,
    Money,
    Reason,
    Status,
    TrackingEvent,
    TrackingSnapshot,
)


class ChangeKind(enum.StrEnum):
    """Kinds of news; notification templates are named after these."""

    SHIPPED = "shipped"  # first scan after the label: picked up / in transit
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERY_FAILED = "delivery_failed"  # failed attempt
    READY_FOR_PICKUP = "ready_for_pickup"
    DELIVERED = "delivered"
    DELAYED = "delayed"  # carrier says delayed, or the ETA slipped later
    CUSTOMS_HELD = "customs_held"  # entered customs hold / inspection / documents needed
    DUTIES_DUE = "duties_due"  # customs wants duties paid (amount when given)
    CUSTOMS_CLEARED = "customs_cleared"
    STALLED = "stalled"  # no scan for too long for the stage
    RETURN_TO_SENDER = "return_to_sender"
    EXCEPTION = "exception"  # lost, damaged, cancelled and other trouble


@dataclass(frozen=True, slots=True)
class Change:
    """One piece of news about a shipment."""

    kind: ChangeKind
    carrier: str
    tracking_number: str
    key: str  # stable id: the same news always has the same key
    status: Status
    previous_status: Status | None
    occurred_at: datetime  # when the carrier event happened (aware)
    reason: Reason = Reason.NONE
    customs: CustomsStage = CustomsStage.NONE
    eta: datetime | None = None
    previous_eta: datetime | None = None
    duties: Money | None = None
    payment_url: str = ""
    pickup_location: str = ""
    pickup_until: date | None = None
    eta_end: datetime | None = None  # end of the delivery window, when the carrier gives one
    location: str = ""


#: Status -> the news it is, when a shipment moves into it.
STATUS_NEWS: Mapping[Status, ChangeKind] = {
    Status.OUT_FOR_DELIVERY: ChangeKind.OUT_FOR_DELIVERY,
    Status.DELIVERY_FAILED: ChangeKind.DELIVERY_FAILED,
    Status.READY_FOR_PICKUP: ChangeKind.READY_FOR_PICKUP,
    Status.DELIVERED: ChangeKind.DELIVERED,
    Status.RETURN_TO_SENDER: ChangeKind.RETURN_TO_SENDER,
    Status.CANCELLED: ChangeKind.EXCEPTION,
}
#: Statuses that mean "the carrier has the parcel and it moves" (first one = SHIPPED).
MOVING = frozenset({Status.PICKED_UP, Status.IN_TRANSIT})
#: Statuses before the carrier has the parcel.
NOT_SHIPPED = frozenset({Status.PENDING, Status.UNKNOWN})
#: Reasons that make a shipment an exception whatever its status says.
TROUBLE = frozenset({Reason.LOST, Reason.DAMAGED})
#: Customs stages where customs blocks the parcel.
CUSTOMS_BLOCKING = frozenset({CustomsStage.HELD, CustomsStage.DUTIES_DUE,
                              CustomsStage.INFO_REQUIRED})
#: Customs stages that wait on the recipient: silence there is not a stall.
WAITING_ON_RECIPIENT = frozenset({CustomsStage.DUTIES_DUE, CustomsStage.INFO_REQUIRED})
#: Statuses after which nothing is news any more (apart from corrections of them).
SETTLED = frozenset({Status.DELIVERED, Status.RETURN_TO_SENDER, Status.CANCELLED})

#: How long a shipment may go without a scan, per status, before it counts as stalled.
DEFAULT_STALL_AFTER: Mapping[Status, timedelta] = {
    Status.PENDING: timedelta(days=4),
    Status.PICKED_UP: timedelta(days=3),
    Status.IN_TRANSIT: timedelta(days=5),
    Status.DELAYED: timedelta(days=5),
    Status.ON_HOLD: timedelta(days=5),
    Status.OUT_FOR_DELIVERY: timedelta(hours=30),
    Status.DELIVERY_FAILED: timedelta(days=3),
}


def _stamp(when: datetime | date | None) -> str:
    if when is None:
        return "-"
    if isinstance(when, datetime):
        return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return when.isoformat()


def _trailing_start(events: tuple[TrackingEvent, ...], same) -> TrackingEvent | None:  # type: ignore[no-untyped-def]
    """The first event of the newest run of events for which `same(event)` holds."""
    start: TrackingEvent | None = None
    for event in reversed(events):
        if not same(event):
            break
        start = event
    return start


def _since(snapshot: TrackingSnapshot, *, status: Status | None = None,
           customs: CustomsStage | None = None) -> TrackingEvent | None:
    """The event that moved the snapshot into its current status (or customs stage)."""
    if status is not None:
        found = _trailing_start(snapshot.events, lambda e: e.status is status)
    else:
        found = _trailing_start(snapshot.events, lambda e: e.customs is customs)
    return found or snapshot.last_event


def _eta_day(snapshot: TrackingSnapshot | None) -> date | None:
    """The ETA as a calendar date where the parcel is expected (the ETA's own offset)."""
    return snapshot.eta.date() if snapshot is not None and snapshot.eta is not None else None


def _shipped_before(previous: TrackingSnapshot | None) -> bool:
    if previous is None:
        return False
    return previous.status not in NOT_SHIPPED or any(
        e.status not in NOT_SHIPPED for e in previous.events)


def detect(previous: TrackingSnapshot | None, current: TrackingSnapshot, *,
           promised: date | None, now: datetime,
           stall_after: Mapping[Status, timedelta] = DEFAULT_STALL_AFTER) -> list[Change]:
    """The news in `current` compared with `previous` (None: the first snapshot we have).

    `promised` is the shop's promised delivery date (the earliest of the shipment's orders).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    carrier, number = current.carrier, current.tracking_number
    prev_status = previous.status if previous is not None else None
    prev_customs = previous.customs if previous is not None else CustomsStage.NONE
    last = current.last_event
    changes: list[Change] = []

    def add(kind: ChangeKind, stamp: str, occurred: datetime | None, **extra: object) -> None:
        fields: dict[str, object] = {
            "reason": current.reason, "customs": current.customs, "eta": current.eta,
            "eta_end": current.eta_end, "pickup_until": current.pickup_until,
            "previous_eta": previous.eta if previous is not None else None,
            "location": last.location if last else "",
        }
        fields.update(extra)
        changes.append(Change(
            kind=kind, carrier=carrier, tracking_number=number,
            key=f"{carrier}:{number}:{kind.value}:{stamp}", status=current.status,
            previous_status=prev_status, occurred_at=occurred or now, **fields,  # type: ignore[arg-type]
        ))

    # 1. status moved
    status = current.status
    moved = status is not prev_status
    since = _since(current, status=status)
    when = since.timestamp if since else None
    if status in MOVING and not _shipped_before(previous):
        add(ChangeKind.SHIPPED, "first", when)
    elif status in STATUS_NEWS and (moved or _new_run(previous, current, status)):
        kind = STATUS_NEWS[status]
        extra: dict[str, object] = {}
        if kind is ChangeKind.READY_FOR_PICKUP:
            extra["pickup_location"] = current.pickup_location
        add(kind, _stamp(when), when, **extra)
    if current.reason in TROUBLE and (previous is None or previous.reason is not current.reason):
        trouble = _trailing_start(current.events, lambda e: e.reason is current.reason) or last
        add(ChangeKind.EXCEPTION, f"{current.reason.value}:{_stamp(trouble.timestamp if trouble else None)}",
            trouble.timestamp if trouble else None)

    # 2. customs stage entered
    stage = current.customs
    if stage is not prev_customs and status not in SETTLED:
        entered = _since(current, customs=stage)
        at = entered.timestamp if entered else None
        if stage is CustomsStage.DUTIES_DUE:
            add(ChangeKind.DUTIES_DUE, _stamp(at), at, duties=current.duties,
                payment_url=current.payment_url)
        elif stage is CustomsStage.INFO_REQUIRED or (
                stage is CustomsStage.HELD and prev_customs not in CUSTOMS_BLOCKING):
            add(ChangeKind.CUSTOMS_HELD, _stamp(at), at)  # documents needed is news again
        elif stage is CustomsStage.RELEASED and prev_customs in CUSTOMS_BLOCKING:
            add(ChangeKind.CUSTOMS_CLEARED, _stamp(at), at)

    # 3. delayed: the carrier says so, the ETA slipped, or the ETA passed the promised date
    if status not in SETTLED:
        delay = _delay(previous, current, promised)
        if delay is not None:
            cause = _trailing_start(current.events, lambda e: e.status is Status.DELAYED)
            at = cause.timestamp if cause and status is Status.DELAYED else None
            add(ChangeKind.DELAYED, delay, at or (last.timestamp if last else None))

    # 4. stalled: no scan for too long for the stage
    stall = _stall(previous, current, now, stall_after)
    if stall is not None and last is not None:
        add(ChangeKind.STALLED, _stamp(last.timestamp), now)
    return changes


def _new_run(previous: TrackingSnapshot | None, current: TrackingSnapshot, status: Status) -> bool:
    """Same status as before, but a new occurrence of it (e.g. out for delivery again)."""
    if previous is None:
        return True
    before = _since(previous, status=status)
    after = _since(current, status=status)
    return bool(before and after and after.timestamp > before.timestamp
                and any(e.status is not status for e in current.events
                        if before.timestamp < e.timestamp < after.timestamp))


def _delay(previous: TrackingSnapshot | None, current: TrackingSnapshot,
           promised: date | None) -> str | None:
    """The stamp of a delay worth telling, else None."""
    new_day, old_day = _eta_day(current), _eta_day(previous)
    said_delayed = current.status is Status.DELAYED and (
        previous is None or previous.status is not Status.DELAYED)
    slipped = new_day is not None and old_day is not None and new_day > old_day
    late = (promised is not None and new_day is not None and new_day > promised
            and (old_day is None or old_day <= promised))
    if not (said_delayed or slipped or late):
        return None
    if new_day is not None:
        return f"eta:{new_day.isoformat()}"
    cause = _trailing_start(current.events, lambda e: e.status is Status.DELAYED)
    return _stamp(cause.timestamp if cause else None)


def _stall(previous: TrackingSnapshot | None, current: TrackingSnapshot, now: datetime,
           stall_after: Mapping[Status, timedelta]) -> timedelta | None:
    """How long the shipment has been silent, when that is too long for its stage."""
    limit = stall_after.get(current.status)
    last = current.last_event
    if limit is None or last is None or current.customs in WAITING_ON_RECIPIENT:
        return None
    silent = now - last.timestamp
    if silent < limit:
        return None
    if previous is not None and previous.last_event is not None and previous.fetched_at is not None \
            and previous.last_event.timestamp == last.timestamp \
            and previous.fetched_at - last.timestamp >= limit:
        return None  # already stalled at the previous check: told then
    return silent
