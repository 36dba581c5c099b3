"""The deterministic demo carrier: numbers, journeys, time zones, customs, delays, pickups."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from carriers.demo import (
    JOURNEYS,
    DemoCarrier,
    check_digit,
    make_number,
    parse_number,
)
from carriers.model import (
    CarrierError,
    CustomsStage,
    Money,
    ProblemKind,
    Reason,
    Status,
    TrackingSnapshot,
)

EPOCH = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
BANGKOK = ZoneInfo("Asia/Bangkok")
ZAGREB = ZoneInfo("Europe/Zagreb")
JAKARTA = ZoneInfo("Asia/Jakarta")


def at(hours: float, epoch: datetime = EPOCH) -> datetime:
    return epoch + timedelta(hours=hours)


def snap(number: str, hours: float, *, speed: float = 1.0,
         epoch: datetime = EPOCH) -> TrackingSnapshot:
    s = DemoCarrier(epoch, speed=speed).snapshot(number, at(hours, epoch))
    assert s is not None, f"{number} unknown at +{hours}h"
    return s


def luhn_valid(digits: str) -> bool:
    """Textbook Luhn check over a full digit string (check digit last)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# ---------------------------------------------------------------- numbers

def test_number_format_and_known_check_digit() -> None:
    n = make_number(2, 12, 1)
    assert n == "DM201200011"  # body 2 012 0001, Luhn digit worked out by hand
    assert re.fullmatch(r"DM\d{9}", n)
    assert parse_number(n) == (2, 12)
    assert DemoCarrier(EPOCH).recognizes(n)
    assert check_digit("20120001") == 1


@pytest.mark.parametrize(("journey", "offset", "serial"), [
    (1, 0, 0), (2, 12, 1), (3, 999, 9999), (8, 36, 4321), (0, 5, 7), (9, 100, 12)])
def test_made_numbers_are_luhn_valid_and_parse_back(journey: int, offset: int,
                                                    serial: int) -> None:
    n = make_number(journey, offset, serial)
    assert len(n) == 11 and n.startswith("DM")
    assert luhn_valid(n[2:])
    assert parse_number(n) == (journey, offset)


def test_every_single_digit_error_is_rejected() -> None:
    carrier = DemoCarrier(EPOCH)
    good = make_number(4, 33, 2718)
    for pos in range(2, len(good)):
        for digit in "0123456789":
            if digit == good[pos]:
                continue
            bad = good[:pos] + digit + good[pos + 1:]
            assert parse_number(bad) is None, bad
            assert not carrier.recognizes(bad)


@pytest.mark.parametrize("text", [
    "DM20120001",  # too short
    "DM2012000111",  # too long
    "dm201200011",  # lower case (numbers are normalized upstream)
    "XM201200011", "DM2O1200011", " DM201200011", "DM 201200011", "", "1Z999AA10123456784",
])
def test_malformed_numbers_are_not_recognized(text: str) -> None:
    assert parse_number(text) is None
    assert not DemoCarrier(EPOCH).recognizes(text)


# ---------------------------------------------------------------- determinism

def test_journeys_are_deterministic() -> None:
    n = make_number(2, 12, 77)
    now = at(30.5)
    a = DemoCarrier(EPOCH, speed=1.0).snapshot(n, now)
    b = DemoCarrier(EPOCH, speed=1.0, clock=lambda: at(999)).snapshot(n, now)
    assert a is not None and a == b
    # the clock only decides "now" for track(); the same now gives the same report
    report = DemoCarrier(EPOCH, clock=lambda: now).snapshot_all([n], now)
    assert report.snapshots[n] == a
    # another serial on the same journey and offset moves identically
    twin = DemoCarrier(EPOCH).snapshot(make_number(2, 12, 78), now)
    assert twin is not None and twin.events == a.events and twin.status == a.status
    # a different offset, epoch or speed is a different point of the journey
    assert DemoCarrier(EPOCH).snapshot(make_number(2, 40, 77), now) != a
    assert DemoCarrier(EPOCH - timedelta(hours=10)).snapshot(n, now) != a
    assert DemoCarrier(EPOCH, speed=2.0).snapshot(n, now) != a


async def test_track_uses_the_clock_and_counts_calls() -> None:
    clock_now = at(40)
    carrier = DemoCarrier(EPOCH, clock=lambda: clock_now)
    n = make_number(1, 0, 5)
    report = await carrier.track([n])
    assert report.snapshots[n] == carrier.snapshot(n, clock_now)
    assert report.snapshots[n].fetched_at == clock_now
    assert report.problems == {}
    assert carrier.calls == 1


def test_naive_epoch_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        DemoCarrier(datetime(2026, 11, 23, 9, 0))


# ---------------------------------------------------------------- events and time zones

def test_events_oldest_first_and_in_the_place_timezone() -> None:
    n = make_number(2, 0, 1)
    s = snap(n, 200)
    journey = JOURNEYS[2]
    assert len(s.events) == len(journey.steps)
    stamps = [e.timestamp for e in s.events]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    for event, step in zip(s.events, journey.steps, strict=True):
        assert event.timestamp == at(step.at)  # same instant
        assert event.timestamp.tzinfo == ZoneInfo(step.place.tz)
        assert (event.location, event.raw_code, event.status) == (
            step.place.name, step.code, step.status)
    offsets = {e.location: e.timestamp.utcoffset() for e in s.events}
    assert offsets["Shenzhen"] == timedelta(hours=8)
    assert offsets["Bangkok"] == timedelta(hours=7)
    assert s.events[3].timestamp.isoformat().endswith("+07:00")
    assert s.last_event is s.events[-1] and s.last_event.status is Status.DELIVERED
    assert s.fetched_at == at(200)


def test_zagreb_events_carry_cet_in_november_and_new_york_est() -> None:
    s = snap(make_number(1, 0, 1), 30)
    assert {e.timestamp.utcoffset() for e in s.events} == {timedelta(hours=1)}
    first = s.events[0].timestamp
    assert first.isoformat() == "2026-11-23T10:00:00+01:00"
    us = snap(make_number(5, 0, 1), 31)
    assert us.events[0].timestamp.isoformat() == "2026-11-23T04:00:00-05:00"
    assert us.events[-1].location == "Leipzig"
    assert us.events[-1].timestamp.utcoffset() == timedelta(hours=1)


def test_snapshot_only_holds_events_that_happened() -> None:
    n = make_number(1, 0, 3)
    s = snap(n, 9)  # step at 9h happens exactly now
    assert [e.raw_code for e in s.events] == ["LC", "PU", "AF"]
    assert s.status is Status.IN_TRANSIT and s.raw_code == "AF"
    s = snap(n, 8.99)
    assert [e.raw_code for e in s.events] == ["LC", "PU"]
    assert s.status is Status.PICKED_UP


# ---------------------------------------------------------------- customs

def test_customs_duties_only_while_held_then_released() -> None:
    n = make_number(2, 0, 9)
    before = snap(n, 35)
    assert before.customs is CustomsStage.PROCESSING and before.status is Status.IN_TRANSIT
    assert before.duties is None and before.payment_url == ""

    held = snap(n, 36)
    assert held.status is Status.ON_HOLD
    assert held.customs is CustomsStage.DUTIES_DUE
    assert held.reason is Reason.CUSTOMS_DUTIES_UNPAID
    assert held.duties == Money(Decimal("1250.00"), "THB")
    assert held.payment_url.startswith("https://") and n in held.payment_url
    assert held.eta == at(84) and held.eta.tzinfo == BANGKOK
    assert snap(n, 59.9).duties == held.duties  # still held

    released = snap(n, 60)
    assert released.customs is CustomsStage.RELEASED and released.status is Status.IN_TRANSIT
    assert released.duties is None and released.payment_url == ""
    assert released.events[-1].customs is CustomsStage.RELEASED
    assert any(e.customs is CustomsStage.DUTIES_DUE for e in released.events)

    delivered = snap(n, 81)
    assert delivered.status is Status.DELIVERED and delivered.eta is None
    assert delivered.eta_end is None and delivered.duties is None


@pytest.mark.parametrize(("journey", "hold_at", "release_at", "money"), [
    (5, 42, 66, Money(Decimal("23.40"), "EUR")),
    (8, 36, 62, Money(Decimal("185000"), "IDR")),
])
def test_other_customs_journeys(journey: int, hold_at: float, release_at: float,
                                money: Money) -> None:
    n = make_number(journey, 0, 1)
    assert snap(n, hold_at - 0.01).duties is None
    assert snap(n, hold_at).duties == money
    assert snap(n, release_at - 0.01).customs is CustomsStage.DUTIES_DUE
    assert snap(n, release_at).duties is None


# ---------------------------------------------------------------- delays and ETAs

def test_delayed_journey_eta_slips_after_the_delay_event() -> None:
    n = make_number(3, 0, 1)
    before = snap(n, 19)
    assert before.status is Status.IN_TRANSIT
    assert before.eta == at(36) and before.eta.tzinfo == JAKARTA  # destination's zone
    assert before.eta_end == at(40)

    delayed = snap(n, 20)
    assert delayed.status is Status.DELAYED and delayed.reason is Reason.WEATHER_DELAY
    assert delayed.eta == at(80) and delayed.eta_end == at(84)
    assert delayed.eta - before.eta == timedelta(hours=44)

    # the new ETA sticks after the parcel moves on, until it is delivered
    moving = snap(n, 50)
    assert moving.status is Status.IN_TRANSIT and moving.reason is Reason.NONE
    assert moving.eta == at(80)
    assert snap(n, 77).eta is None


# ---------------------------------------------------------------- failed attempt and pickup

def test_failed_attempt_then_ready_for_pickup_with_place_and_date() -> None:
    # the epoch is chosen so the pickup scan is at 23:30 UTC = 00:30 in Split, next day
    epoch = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
    n = make_number(4, 0, 1)
    failed = snap(n, 29, epoch=epoch)
    assert failed.status is Status.DELIVERY_FAILED
    assert failed.reason is Reason.CONSIGNEE_NOT_HOME
    assert failed.eta == at(48, epoch)
    assert failed.pickup_location == "" and failed.pickup_until is None

    ready = snap(n, 33, epoch=epoch)
    assert ready.status is Status.READY_FOR_PICKUP
    assert ready.pickup_location == "Split 1, Obala kneza Branimira 1"
    assert ready.events[-1].timestamp.isoformat() == "2026-11-25T00:30:00+01:00"
    assert ready.pickup_until == date(2026, 12, 2)  # local date + 7 days, not the UTC date

    collected = snap(n, 52, epoch=epoch)
    assert collected.status is Status.DELIVERED
    assert collected.pickup_location == "" and collected.pickup_until is None


def test_return_to_sender_has_no_eta() -> None:
    s = snap(make_number(7, 0, 1), 44)
    assert s.status is Status.RETURN_TO_SENDER and s.reason is Reason.INCORRECT_ADDRESS
    assert s.eta is None


# ---------------------------------------------------------------- not found and outages

async def test_unknown_journeys_and_bad_numbers_are_not_found() -> None:
    carrier = DemoCarrier(EPOCH, clock=lambda: at(10))
    known = make_number(1, 0, 1)
    zero, nine = make_number(0, 0, 1), make_number(9, 50, 2)
    bad_check = known[:-1] + str((int(known[-1]) + 1) % 10)
    report = await carrier.track([known, zero, nine, bad_check])
    assert set(report.snapshots) == {known}
    assert set(report.problems) == {zero, nine, bad_check}
    for number, problem in report.problems.items():
        assert problem.kind is ProblemKind.NOT_FOUND
        assert problem.tracking_number == number and problem.message
    assert carrier.recognizes(zero) and carrier.recognizes(nine)  # well-formed, yet unknown


def test_not_yet_announced_parcel_is_not_found() -> None:
    carrier = DemoCarrier(EPOCH)
    n = make_number(1, 0, 1)
    assert carrier.snapshot(n, at(-0.01)) is None
    report = carrier.snapshot_all([n], at(-0.01))
    assert report.problems[n].kind is ProblemKind.NOT_FOUND
    assert carrier.snapshot(n, EPOCH) is not None


async def test_outage_raises_a_retryable_carrier_error() -> None:
    carrier = DemoCarrier(EPOCH, clock=lambda: at(10))
    carrier.outage = True
    with pytest.raises(CarrierError) as info:
        await carrier.track([make_number(1, 0, 1)])
    assert info.value.carrier == "demo" and info.value.status == 503
    carrier.outage = False
    assert (await carrier.track([make_number(1, 0, 1)])).snapshots


# ---------------------------------------------------------------- speed and offsets

def test_speed_compresses_time() -> None:
    n = make_number(1, 0, 1)
    fast = DemoCarrier(EPOCH, speed=4.0)
    assert fast.real_time(n, 28) == at(7)
    s = fast.snapshot(n, at(7))
    assert s is not None and s.status is Status.DELIVERED
    s = fast.snapshot(n, at(6.99))
    assert s is not None and s.status is Status.OUT_FOR_DELIVERY
    assert [e.timestamp for e in s.events] == [at(0), at(1.25), at(2.25), at(5.75)]
    slow = DemoCarrier(EPOCH, speed=1.0).snapshot(n, at(7))
    assert slow is not None and slow.status is Status.PICKED_UP


def test_offset_starts_the_parcel_part_way_in() -> None:
    n = make_number(1, 23, 1)
    s = snap(n, 0)
    assert s.status is Status.OUT_FOR_DELIVERY
    assert s.events[0].timestamp == at(-23)
    fast = DemoCarrier(EPOCH, speed=4.0).snapshot(n, EPOCH)
    assert fast is not None and fast.events[0].timestamp == at(-23 / 4)
    assert fast.eta == at((30 - 23) / 4)
