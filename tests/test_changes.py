"""Change detection: a table of (previous, current) snapshot pairs and the news they are."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from bot.changes import DEFAULT_STALL_AFTER, ChangeKind, detect
from carriers.model import (
    CustomsStage,
    Money,
    Reason,
    Status,
    TrackingEvent,
    TrackingSnapshot,
)

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
ZAGREB = ZoneInfo("Europe/Zagreb")
S, C, R = Status, CustomsStage, Reason


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def ev(hours: float, status: Status, *, customs: CustomsStage = C.NONE,
       reason: Reason = R.NONE, where: str = "Zagreb") -> TrackingEvent:
    return TrackingEvent(timestamp=at(hours).astimezone(ZAGREB), status=status, location=where,
                         customs=customs, reason=reason, description=status.value)


def snap(*events: TrackingEvent, status: Status | None = None, customs: CustomsStage | None = None,
         reason: Reason | None = None, eta: float | None = None, fetched: float | None = None,
         **extra: object) -> TrackingSnapshot:
    last = events[-1] if events else None
    return TrackingSnapshot(
        carrier="demo", tracking_number="DM1", events=tuple(events),
        status=status or (last.status if last else S.UNKNOWN),
        customs=customs if customs is not None else (last.customs if last else C.NONE),
        reason=reason if reason is not None else (last.reason if last else R.NONE),
        eta=at(eta) if eta is not None else None,
        fetched_at=at(fetched) if fetched is not None else None, **extra)  # type: ignore[arg-type]


LABEL = ev(0, S.PENDING)
PICKUP = ev(5, S.PICKED_UP)
HUB = ev(9, S.IN_TRANSIT)
HUB2 = ev(12, S.IN_TRANSIT, where="Split")
OFD = ev(23, S.OUT_FOR_DELIVERY)
OFD_MORE = ev(24, S.OUT_FOR_DELIVERY, where="Van 7")
FAILED = ev(27, S.DELIVERY_FAILED, reason=R.CONSIGNEE_NOT_HOME)
OFD_AGAIN = ev(47, S.OUT_FOR_DELIVERY)
DELIVERED = ev(50, S.DELIVERED)
PROCESSING = ev(30, S.IN_TRANSIT, customs=C.PROCESSING)
HELD = ev(32, S.ON_HOLD, customs=C.HELD, reason=R.CUSTOMS_INSPECTION)
DUTIES = ev(34, S.ON_HOLD, customs=C.DUTIES_DUE, reason=R.CUSTOMS_DUTIES_UNPAID)
RELEASED = ev(58, S.IN_TRANSIT, customs=C.RELEASED)
DUTY = Money(Decimal("23.40"), "EUR")
NOW = at(60)


def stamp(hours: float) -> str:
    return at(hours).strftime("%Y-%m-%dT%H:%M:%SZ")


CASES = [
    # (id, previous, current, promised, now, expected [(kind, key suffix)])
    ("label only", None, snap(LABEL), None, at(1), []),
    ("first pickup", snap(LABEL), snap(LABEL, PICKUP), None, at(6),
     [(ChangeKind.SHIPPED, "shipped:first")]),
    ("first sight already in transit", None, snap(LABEL, PICKUP, HUB), None, at(10),
     [(ChangeKind.SHIPPED, "shipped:first")]),
    ("routine in-transit scan", snap(LABEL, PICKUP, HUB), snap(LABEL, PICKUP, HUB, HUB2), None,
     at(13), []),
    ("picked up, then in transit", snap(LABEL, PICKUP), snap(LABEL, PICKUP, HUB), None, at(10), []),
    ("out for delivery", snap(LABEL, PICKUP, HUB), snap(LABEL, PICKUP, HUB, OFD), None, at(23.5),
     [(ChangeKind.OUT_FOR_DELIVERY, f"out_for_delivery:{stamp(23)}")]),
    ("another scan while out for delivery", snap(LABEL, PICKUP, HUB, OFD),
     snap(LABEL, PICKUP, HUB, OFD, OFD_MORE), None, at(24.5), []),
    ("failed attempt", snap(LABEL, HUB, OFD), snap(LABEL, HUB, OFD, FAILED), None, at(28),
     [(ChangeKind.DELIVERY_FAILED, f"delivery_failed:{stamp(27)}")]),
    ("out for delivery again (missed the attempt in between)", snap(LABEL, HUB, OFD),
     snap(LABEL, HUB, OFD, FAILED, OFD_AGAIN), None, at(48),
     [(ChangeKind.OUT_FOR_DELIVERY, f"out_for_delivery:{stamp(47)}")]),
    ("delivered straight from in transit", snap(LABEL, PICKUP, HUB),
     snap(LABEL, PICKUP, HUB, OFD, DELIVERED), None, at(51),
     [(ChangeKind.DELIVERED, f"delivered:{stamp(50)}")]),
    ("delivered stays delivered", snap(LABEL, OFD, DELIVERED), snap(LABEL, OFD, DELIVERED),
     None, at(60), []),
    ("ready for pickup", snap(LABEL, HUB, FAILED),
     snap(LABEL, HUB, FAILED, ev(30, S.READY_FOR_PICKUP), pickup_location="Split 1"), None, at(31),
     [(ChangeKind.READY_FOR_PICKUP, f"ready_for_pickup:{stamp(30)}")]),
    ("returned to sender", snap(LABEL, HUB), snap(LABEL, HUB, ev(40, S.RETURN_TO_SENDER)), None,
     at(41), [(ChangeKind.RETURN_TO_SENDER, f"return_to_sender:{stamp(40)}")]),
    ("cancelled", snap(LABEL), snap(LABEL, ev(3, S.CANCELLED)), None, at(4),
     [(ChangeKind.EXCEPTION, f"exception:{stamp(3)}")]),
    ("lost", snap(LABEL, HUB), snap(LABEL, HUB, ev(30, S.ON_HOLD, reason=R.LOST)), None, at(31),
     [(ChangeKind.EXCEPTION, f"exception:lost:{stamp(30)}")]),
    ("damaged, first sight", None, snap(LABEL, HUB, ev(30, S.ON_HOLD, reason=R.DAMAGED)), None,
     at(31), [(ChangeKind.EXCEPTION, f"exception:damaged:{stamp(30)}")]),
    ("presented to customs is routine", snap(LABEL, HUB), snap(LABEL, HUB, PROCESSING), None,
     at(31), []),
    ("held by customs", snap(LABEL, HUB, PROCESSING), snap(LABEL, HUB, PROCESSING, HELD), None,
     at(33), [(ChangeKind.CUSTOMS_HELD, f"customs_held:{stamp(32)}")]),
    ("duties due", snap(LABEL, HUB, PROCESSING, HELD),
     snap(LABEL, HUB, PROCESSING, HELD, DUTIES, duties=DUTY, payment_url="https://pay.example/1"),
     None, at(35), [(ChangeKind.DUTIES_DUE, f"duties_due:{stamp(34)}")]),
    ("documents needed after a hold", snap(LABEL, HUB, HELD),
     snap(LABEL, HUB, HELD, ev(33, S.ON_HOLD, customs=C.INFO_REQUIRED)), None, at(34),
     [(ChangeKind.CUSTOMS_HELD, f"customs_held:{stamp(33)}")]),
    ("released from a hold", snap(LABEL, HUB, PROCESSING, DUTIES),
     snap(LABEL, HUB, PROCESSING, DUTIES, RELEASED), None, at(59),
     [(ChangeKind.CUSTOMS_CLEARED, f"customs_cleared:{stamp(58)}")]),
    ("released without a hold is routine", snap(LABEL, HUB, PROCESSING),
     snap(LABEL, HUB, PROCESSING, RELEASED), None, at(59), []),
    ("carrier says delayed", snap(LABEL, HUB, eta=30),
     snap(LABEL, HUB, ev(20, S.DELAYED, reason=R.WEATHER_DELAY), eta=80), None, at(21),
     [(ChangeKind.DELAYED, f"delayed:eta:{at(80).date().isoformat()}")]),
    ("ETA slipped to a later day", snap(LABEL, HUB, eta=30), snap(LABEL, HUB, HUB2, eta=56), None,
     at(13), [(ChangeKind.DELAYED, f"delayed:eta:{at(56).date().isoformat()}")]),
    ("ETA moved within the same day", snap(LABEL, HUB, eta=26), snap(LABEL, HUB, eta=30), None,
     at(13), []),
    ("ETA moved earlier", snap(LABEL, HUB, eta=56), snap(LABEL, HUB, eta=30), None, at(13), []),
    ("ETA after the promised date", None, snap(LABEL, HUB, eta=80), date(2026, 11, 25), at(10),
     [(ChangeKind.SHIPPED, "shipped:first"),
      (ChangeKind.DELAYED, f"delayed:eta:{at(80).date().isoformat()}")]),
    ("ETA already after the promised date", snap(LABEL, HUB, eta=80),
     snap(LABEL, HUB, HUB2, eta=80), date(2026, 11, 25), at(13), []),
    ("ETA within the promised date", None, snap(LABEL, HUB, eta=30), date(2026, 11, 25), at(10),
     [(ChangeKind.SHIPPED, "shipped:first")]),
    ("no scan for 6 days in transit", snap(LABEL, HUB, fetched=100),
     snap(LABEL, HUB), None, at(9 + 6 * 24), [(ChangeKind.STALLED, f"stalled:{stamp(9)}")]),
    ("already stalled at the previous check", snap(LABEL, HUB, fetched=9 + 5.5 * 24),
     snap(LABEL, HUB), None, at(9 + 6 * 24), []),
    ("waiting on the recipient to pay is not a stall", snap(LABEL, DUTIES, fetched=40),
     snap(LABEL, DUTIES), None, at(34 + 9 * 24), []),
    ("delivered is never stalled", snap(LABEL, DELIVERED), snap(LABEL, DELIVERED), None,
     at(50 + 30 * 24), []),
]


@pytest.mark.parametrize(("previous", "current", "promised", "now", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_detect(previous, current, promised, now, expected):
    changes = detect(previous, current, promised=promised, now=now,
                     stall_after=DEFAULT_STALL_AFTER)
    assert [(c.kind, c.key) for c in changes] == [(k, f"demo:DM1:{s}") for k, s in expected]
    for change in changes:
        assert change.occurred_at.tzinfo is not None
        assert change.status is current.status
        assert change.previous_status == (previous.status if previous else None)


def test_duties_due_carries_amount_and_payment_url():
    current = snap(LABEL, HUB, DUTIES, duties=DUTY, payment_url="https://pay.example/1")
    [change] = detect(snap(LABEL, HUB), current, promised=None, now=at(35))
    assert change.kind is ChangeKind.DUTIES_DUE
    assert change.duties == Money(Decimal("23.40"), "EUR")
    assert change.payment_url == "https://pay.example/1"
    assert change.reason is R.CUSTOMS_DUTIES_UNPAID and change.customs is C.DUTIES_DUE
    assert change.occurred_at == at(34)


def test_delay_names_both_etas_and_ready_for_pickup_its_place():
    [delay] = detect(snap(LABEL, HUB, eta=30), snap(LABEL, HUB, eta=56), promised=None, now=at(13))
    assert delay.previous_eta == at(30) and delay.eta == at(56)
    pickup = snap(LABEL, FAILED, ev(30, S.READY_FOR_PICKUP), pickup_location="Split 1")
    [ready] = detect(snap(LABEL, FAILED), pickup, promised=None, now=at(31))
    assert ready.pickup_location == "Split 1" and ready.location == "Zagreb"


def test_keys_are_stable_across_checks():
    previous, current = snap(LABEL, HUB), snap(LABEL, HUB, OFD)
    first = detect(previous, current, promised=None, now=at(23.2))
    later = detect(previous, current.with_fetched_at(at(23.9)), promised=None, now=at(23.9))
    assert [c.key for c in first] == [c.key for c in later]


def test_stall_limits_come_from_the_caller():
    limits = {S.IN_TRANSIT: timedelta(hours=6)}
    [change] = detect(snap(LABEL, HUB), snap(LABEL, HUB), promised=None, now=at(16),
                      stall_after=limits)
    assert change.kind is ChangeKind.STALLED
    assert detect(snap(LABEL, HUB), snap(LABEL, HUB), promised=None, now=at(16),
                  stall_after={}) == []


def test_now_must_be_aware():
    with pytest.raises(ValueError):
        detect(None, snap(LABEL), promised=None, now=datetime(2026, 11, 23, 8, 0))  # noqa: DTZ001
