"""A deterministic demo carrier whose parcels move through realistic journeys.

Numbers look like `DM` + journey digit + 3-digit hour offset + 4-digit serial + check digit,
e.g. DM2 012 0001 c. At the carrier's `epoch` a parcel is `offset` hours into its journey;
simulated time runs `speed` times faster than the clock. The same (number, epoch, speed, now)
always gives the same snapshot, so the demo, the tests and the fleet benchmark agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from carriers.model import (
    CarrierError,
    CustomsStage,
    Limits,
    Money,
    NumberList,
    NumberProblem,
    ProblemKind,
    Reason,
    Status,
    TimestampPolicy,
    TrackingEvent,
    TrackingReport,
    TrackingSnapshot,
)

NAME = "demo"
LIMITS = Limits(batch_size=50, per_second=50.0, per_day=None, supports_push=False)
TIMESTAMP_POLICY = TimestampPolicy.AWARE
TRACKING_URL = "https://track.example.com/demo/{number}"
PAYMENT_URL = "https://track.example.com/demo/{number}/duties"
_NUMBER = re.compile(r"^DM(\d)(\d{3})(\d{4})(\d)$")


@dataclass(frozen=True, slots=True)
class Place:
    """Where a scan happens."""

    name: str
    country: str
    tz: str


SHENZHEN = Place("Shenzhen", "CN", "Asia/Shanghai")
HONG_KONG = Place("Hong Kong", "HK", "Asia/Hong_Kong")
BANGKOK = Place("Bangkok", "TH", "Asia/Bangkok")
SINGAPORE = Place("Singapore", "SG", "Asia/Singapore")
JAKARTA = Place("Jakarta", "ID", "Asia/Jakarta")
ZAGREB = Place("Zagreb", "HR", "Europe/Zagreb")
SPLIT = Place("Split", "HR", "Europe/Zagreb")
LEIPZIG = Place("Leipzig", "DE", "Europe/Berlin")
NEW_YORK = Place("New York", "US", "America/New_York")
NEWARK = Place("Newark", "US", "America/New_York")


@dataclass(frozen=True, slots=True)
class Step:
    """One scan of a journey, `at` hours after the journey starts."""

    at: float
    status: Status
    code: str
    text: str
    place: Place
    reason: Reason = Reason.NONE
    customs: CustomsStage = CustomsStage.NONE
    eta_at: float | None = None  # the ETA the carrier announces from this step on


@dataclass(frozen=True, slots=True)
class Journey:
    """A parcel's whole route, with duties when customs asks for them."""

    name: str
    steps: tuple[Step, ...]
    eta_at: float
    duties: Money | None = None
    pickup_place: str = ""


S, R, C = Status, Reason, CustomsStage
JOURNEYS: dict[int, Journey] = {
    1: Journey("domestic_hr", (
        Step(0, S.PENDING, "LC", "Shipment information received", ZAGREB),
        Step(5, S.PICKED_UP, "PU", "Picked up from sender", ZAGREB),
        Step(9, S.IN_TRANSIT, "AF", "Arrived at sorting centre", ZAGREB),
        Step(23, S.OUT_FOR_DELIVERY, "OD", "Out for delivery", ZAGREB),
        Step(28, S.DELIVERED, "DL", "Delivered, front door", ZAGREB),
    ), eta_at=30),
    2: Journey("customs_th", (
        Step(0, S.PENDING, "LC", "Shipment information received", SHENZHEN),
        Step(6, S.PICKED_UP, "PU", "Picked up from sender", SHENZHEN),
        Step(20, S.IN_TRANSIT, "DP", "Departed export hub", HONG_KONG),
        Step(30, S.IN_TRANSIT, "AR", "Arrived in destination country", BANGKOK),
        Step(32, S.IN_TRANSIT, "CP", "Presented to customs", BANGKOK, customs=C.PROCESSING),
        Step(36, S.ON_HOLD, "CH", "Held by customs: import duties and taxes due", BANGKOK,
             reason=R.CUSTOMS_DUTIES_UNPAID, customs=C.DUTIES_DUE, eta_at=84),
        Step(60, S.IN_TRANSIT, "CR", "Released by customs", BANGKOK, customs=C.RELEASED),
        Step(76, S.OUT_FOR_DELIVERY, "OD", "Out for delivery", BANGKOK),
        Step(81, S.DELIVERED, "DL", "Delivered, signed by recipient", BANGKOK),
    ), eta_at=60, duties=Money(Decimal("1250.00"), "THB")),
    3: Journey("delayed_id", (
        Step(0, S.PENDING, "LC", "Shipment information received", SINGAPORE),
        Step(4, S.PICKED_UP, "PU", "Picked up from sender", SINGAPORE),
        Step(12, S.IN_TRANSIT, "DP", "Departed facility", SINGAPORE),
        Step(20, S.DELAYED, "WX", "Delay: severe weather at transit hub", SINGAPORE,
             reason=R.WEATHER_DELAY, eta_at=80),
        Step(50, S.IN_TRANSIT, "AR", "Arrived at destination facility", JAKARTA),
        Step(72, S.OUT_FOR_DELIVERY, "OD", "Out for delivery", JAKARTA),
        Step(77, S.DELIVERED, "DL", "Delivered", JAKARTA),
    ), eta_at=36),
    4: Journey("failed_attempt_hr", (
        Step(0, S.PENDING, "LC", "Shipment information received", ZAGREB),
        Step(4, S.PICKED_UP, "PU", "Picked up from sender", ZAGREB),
        Step(14, S.IN_TRANSIT, "AR", "Arrived at delivery depot", SPLIT),
        Step(24, S.OUT_FOR_DELIVERY, "OD", "Out for delivery", SPLIT),
        Step(29, S.DELIVERY_FAILED, "NH", "Delivery attempted: recipient not at home", SPLIT,
             reason=R.CONSIGNEE_NOT_HOME, eta_at=48),
        Step(33, S.READY_FOR_PICKUP, "RP", "Ready for pickup at post office", SPLIT),
        Step(52, S.DELIVERED, "DL", "Collected by recipient", SPLIT),
    ), eta_at=28, pickup_place="Split 1, Obala kneza Branimira 1"),
    5: Journey("customs_hr", (
        Step(0, S.PENDING, "LC", "Shipment information received", NEW_YORK),
        Step(5, S.PICKED_UP, "PU", "Picked up from sender", NEW_YORK),
        Step(16, S.IN_TRANSIT, "DP", "Departed export hub", NEWARK),
        Step(30, S.IN_TRANSIT, "AR", "Arrived in destination country", LEIPZIG),
        Step(40, S.IN_TRANSIT, "CP", "Presented to customs", ZAGREB, customs=C.PROCESSING),
        Step(42, S.ON_HOLD, "CH", "Held by customs: import VAT due", ZAGREB,
             reason=R.CUSTOMS_DUTIES_UNPAID, customs=C.DUTIES_DUE, eta_at=90),
        Step(66, S.IN_TRANSIT, "CR", "Released by customs", ZAGREB, customs=C.RELEASED),
        Step(84, S.OUT_FOR_DELIVERY, "OD", "Out for delivery", ZAGREB),
        Step(88, S.DELIVERED, "DL", "Delivered", ZAGREB),
    ), eta_at=64, duties=Money(Decimal("23.40"), "EUR")),
    6: Journey("domestic_us", (
        Step(0, S.PENDING, "LC", "Shipment information received", NEW_YORK),
        Step(3, S.PICKED_UP, "PU", "Picked up", NEW_YORK),
        Step(8, S.IN_TRANSIT, "AF", "Arrived at facility", NEWARK),
        Step(20, S.OUT_FOR_DELIVERY, "OD", "Out for delivery", NEW_YORK),
        Step(25, S.DELIVERED, "DL", "Delivered, mailbox", NEW_YORK),
    ), eta_at=26),
    7: Journey("return_hr", (
        Step(0, S.PENDING, "LC", "Shipment information received", ZAGREB),
        Step(5, S.PICKED_UP, "PU", "Picked up from sender", ZAGREB),
        Step(20, S.DELIVERY_FAILED, "BA", "Delivery failed: address not found", SPLIT,
             reason=R.INCORRECT_ADDRESS),
        Step(44, S.RETURN_TO_SENDER, "RS", "Returning to sender", SPLIT,
             reason=R.INCORRECT_ADDRESS),
    ), eta_at=30),
    8: Journey("customs_id", (
        Step(0, S.PENDING, "LC", "Shipment information received", SHENZHEN),
        Step(6, S.PICKED_UP, "PU", "Picked up from sender", SHENZHEN),
        Step(22, S.IN_TRANSIT, "DP", "Departed export hub", SHENZHEN),
        Step(34, S.IN_TRANSIT, "AR", "Arrived in destination country", JAKARTA),
        Step(36, S.ON_HOLD, "CH", "Held by customs: import duties due", JAKARTA,
             reason=R.CUSTOMS_DUTIES_UNPAID, customs=C.DUTIES_DUE, eta_at=90),
        Step(62, S.IN_TRANSIT, "CR", "Released by customs", JAKARTA, customs=C.RELEASED),
        Step(80, S.OUT_FOR_DELIVERY, "OD", "Out for delivery", JAKARTA),
        Step(86, S.DELIVERED, "DL", "Delivered", JAKARTA),
    ), eta_at=62, duties=Money(Decimal("185000"), "IDR")),
}


def check_digit(body: str) -> int:
    """Luhn check digit over the digits of `body`."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10


def make_number(journey: int, offset_hours: int, serial: int) -> str:
    """Build a valid demo tracking number."""
    body = f"{journey}{offset_hours:03d}{serial:04d}"
    return f"DM{body}{check_digit(body)}"


def parse_number(number: str) -> tuple[int, int] | None:
    """(journey, offset hours) of a valid demo number, else None."""
    m = _NUMBER.match(number)
    if not m or check_digit("".join(m.groups()[:3])) != int(m.group(4)):
        return None
    return int(m.group(1)), int(m.group(2))


class DemoCarrier:
    """Serves the journeys above as if a carrier API were answering."""

    name = NAME
    limits = LIMITS

    def __init__(self, epoch: datetime, speed: float = 1.0,
                 clock: Callable[[], datetime] | None = None) -> None:
        if epoch.tzinfo is None:
            raise ValueError("epoch must be timezone-aware")
        self.epoch = epoch
        self.speed = speed
        self.clock = clock or (lambda: datetime.now(UTC))
        self.outage = False  # set True to simulate the carrier being down
        self.calls = 0

    def recognizes(self, number: str) -> bool:
        """Demo numbers carry their own check digit."""
        return parse_number(number) is not None

    def real_time(self, number: str, at_hours: float) -> datetime:
        """When (on the clock) a parcel reaches `at_hours` into its journey."""
        parsed = parse_number(number)
        if parsed is None:
            raise ValueError(f"not a demo number: {number}")
        return self.epoch + timedelta(hours=(at_hours - parsed[1]) / self.speed)

    def journey_of(self, number: str) -> Journey | None:
        """The journey a number follows (None for unknown journeys)."""
        parsed = parse_number(number)
        return JOURNEYS.get(parsed[0]) if parsed else None

    async def track(self, numbers: NumberList) -> TrackingReport:
        """Snapshots as of now; journey 0/9 numbers are 'not found' like at a real carrier."""
        self.calls += 1
        if self.outage:
            raise CarrierError(NAME, "HTTP 503", status=503)
        return self.snapshot_all(numbers, self.clock())

    def snapshot_all(self, numbers: NumberList, now: datetime) -> TrackingReport:
        """Pure: the report the carrier would give at `now`."""
        report = TrackingReport()
        for number in numbers:
            snap = self.snapshot(number, now)
            if snap is None:
                report.problems[number] = NumberProblem(number, ProblemKind.NOT_FOUND,
                                                        "No shipment found for this number")
            else:
                report.snapshots[number] = snap
        return report

    def snapshot(self, number: str, now: datetime) -> TrackingSnapshot | None:
        """Pure: one parcel's snapshot at `now`, or None when unknown / not yet announced."""
        journey = self.journey_of(number)
        if journey is None:
            return None
        events: list[TrackingEvent] = []
        eta_at = journey.eta_at
        current: Step | None = None
        for step in journey.steps:
            when = self.real_time(number, step.at)
            if when > now:
                break
            current = step
            if step.eta_at is not None:
                eta_at = step.eta_at
            events.append(TrackingEvent(
                timestamp=when.astimezone(ZoneInfo(step.place.tz)), status=step.status,
                description=step.text, location=step.place.name, country=step.place.country,
                reason=step.reason, customs=step.customs, raw_code=step.code, raw_text=step.text,
            ))
        if current is None:
            return None
        last_place = ZoneInfo(journey.steps[-1].place.tz)
        done = current.status in (Status.DELIVERED, Status.RETURN_TO_SENDER)
        eta = None if done else self.real_time(number, eta_at).astimezone(last_place)
        duties_due = current.customs is CustomsStage.DUTIES_DUE
        pickup = current.status is Status.READY_FOR_PICKUP
        pickup_until: date | None = None
        if pickup:
            pickup_until = (events[-1].timestamp + timedelta(days=7)).date()
        return TrackingSnapshot(
            carrier=NAME, tracking_number=number, status=current.status, events=tuple(events),
            reason=current.reason, customs=current.customs, eta=eta,
            eta_end=eta + timedelta(hours=4) if eta else None,
            duties=journey.duties if duties_due else None,
            payment_url=PAYMENT_URL.format(number=number) if duties_due else "",
            pickup_location=journey.pickup_place if pickup else "", pickup_until=pickup_until,
            service=journey.name, raw_code=current.code, raw_text=current.text, fetched_at=now,
        )
