"""PostNL ShippingStatus v2: parse() on every recording, Amsterdam times, the adapter on the fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import aiohttp
import pytest

from carriers import Carrier, PushCarrier
from carriers.model import (
    CarrierAuthError,
    CarrierError,
    Credentials,
    CustomsStage,
    ProblemKind,
    Reason,
    Status,
    TimestampPolicy,
)
from carriers.postnl import (
    CREDENTIALS,
    DEFAULT_BASE_URL,
    LIMITS,
    NAME,
    TIMESTAMP_POLICY,
    PostnlCarrier,
    local_time,
    map_status,
    parse,
)
from tests.fakes import serve
from tests.fakes.carrier_postnl import FakePostnl, load_recorded, recording

CET = timezone(timedelta(hours=1))
CEST = timezone(timedelta(hours=2))
FETCHED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def recorded(name: str) -> object:
    return load_recorded(recording(name)).json()


def test_module_declarations() -> None:
    assert NAME == "postnl"
    assert DEFAULT_BASE_URL == "https://api.postnl.nl"
    assert CREDENTIALS == ("api_key",)
    assert LIMITS.batch_size == 1 and not LIMITS.supports_push
    assert TIMESTAMP_POLICY is TimestampPolicy.NAIVE_LOCAL


# --- parse() on the recordings ---------------------------------------------------------------

def test_completestatus_events_oldest_first_with_amsterdam_times() -> None:
    report = parse(recorded("completestatus.http"), fetched_at=FETCHED)
    snap = report.snapshots["3SDEVC123456789"]
    assert snap.carrier == "postnl"
    assert snap.status is Status.PICKED_UP
    assert (snap.raw_code, snap.raw_text) == ("2", "Zending in ontvangst genomen")
    assert snap.service == "Handtek. voor Ontvangst/Alleen huisadres"
    assert [(e.raw_code, e.timestamp, e.status) for e in snap.events] == [
        ("01A", datetime(2018, 3, 7, 9, 50, 47, tzinfo=CET), Status.PENDING),
        ("01A", datetime(2018, 3, 7, 9, 51, 8, tzinfo=CET), Status.PENDING),
        ("01B", datetime(2018, 3, 7, 23, 20, 5, tzinfo=CET), Status.PICKED_UP),
    ]
    assert snap.events[-1].description == "Zending is bij PostNL"
    assert snap.eta == datetime(2018, 3, 8, 11, 30, tzinfo=CET)
    assert snap.eta_end == datetime(2018, 3, 8, 14, 0, tzinfo=CET)
    assert snap.eta.utcoffset() == timedelta(hours=1)
    assert snap.fetched_at == FETCHED
    assert snap.customs is CustomsStage.NONE and not report.problems


def test_completestatus2_single_objects_instead_of_arrays() -> None:
    snap = parse(recorded("completestatus2.http"), fetched_at=FETCHED).snapshots[
        "3SDEVC123456789"]
    assert snap.status is Status.PICKED_UP
    assert [(e.raw_code, e.timestamp, e.status) for e in snap.events] == [
        ("01B", datetime(2018, 3, 7, 23, 20, 5, tzinfo=CET), Status.PICKED_UP)]
    assert snap.eta == datetime(2018, 3, 8, 11, 30, tzinfo=CET)


def test_completestatus3_delivered_keeps_postnl_order() -> None:
    snap = parse(recorded("completestatus3.http"), fetched_at=FETCHED).snapshots[
        "3SABCD987516327"]
    assert snap.status is Status.DELIVERED
    assert (snap.raw_code, snap.raw_text) == ("11", "Zending afgeleverd")
    # The J01 scan is stamped a day early in the recording; PostNL's list order is kept.
    assert [(e.raw_code, e.timestamp, e.status) for e in snap.events] == [
        ("A01", datetime(2021, 3, 25, 12, 11, 10, tzinfo=CET), Status.PENDING),
        ("B01", datetime(2021, 3, 26, 1, 15, 18, tzinfo=CET), Status.PICKED_UP),
        ("J01", datetime(2021, 3, 25, 9, 30, 58, tzinfo=CET), Status.IN_TRANSIT),
        ("J05", datetime(2021, 3, 26, 9, 44, 45, tzinfo=CET), Status.OUT_FOR_DELIVERY),
        ("01B", datetime(2021, 3, 26, 15, 6, 53, tzinfo=CET), Status.DELIVERED),
    ]
    assert snap.last_event is not None and snap.last_event.description == "Zending is bezorgd"
    assert snap.eta == datetime(2021, 3, 26, 14, 5, tzinfo=CET)
    assert snap.eta_end == datetime(2021, 3, 26, 16, 5, tzinfo=CET)


@pytest.mark.parametrize(("name", "barcode", "status", "code"), [
    ("currentstatus.http", "3SDEVC302392342", Status.PICKED_UP, "2"),
    ("currentstatus2.http", "3SDEVC302392342", Status.PICKED_UP, "2"),
    ("currentstatus3.http", "3SABCD987040009", Status.DELIVERED, "11"),
])
def test_currentstatus_has_status_but_no_events(name: str, barcode: str, status: Status,
                                                 code: str) -> None:
    report = parse(recorded(name), fetched_at=FETCHED)
    snap = report.snapshots[barcode]
    assert (snap.status, snap.raw_code, snap.events, snap.eta) == (status, code, (), None)


def test_no_shipments_is_not_found_for_the_number_asked() -> None:
    report = parse(recorded("nocurrentshipments.http"), fetched_at=FETCHED,
                   barcode="3SABCD0000001")
    assert not report.snapshots
    problem = report.problems["3SABCD0000001"]
    assert (problem.kind, problem.message) == (ProblemKind.NOT_FOUND, "No shipment found")


def test_updatedshipments_list_gives_one_snapshot_each() -> None:
    report = parse(recorded("updatedshipments.http"), fetched_at=FETCHED)
    assert sorted(report.snapshots) == ["3SABCD3563340", "3SABCD987453178",
                                        "3SABCD987530133", "3SABCD987578527"]
    picked_up = report.snapshots["3SABCD987578527"]
    assert (picked_up.status, picked_up.raw_code) == (Status.DELIVERED, "22")
    assert picked_up.last_event is not None
    assert picked_up.last_event.timestamp == datetime(2021, 3, 1, 14, 31, 8, tzinfo=CET)


def test_signature_body_is_not_a_status() -> None:
    with pytest.raises(CarrierError, match="unexpected ShippingStatus body"):
        parse(recorded("signature.http"), fetched_at=FETCHED)


def test_malformed_time_is_a_carrier_error() -> None:
    payload = {"CurrentStatus": {"Shipment": {"Barcode": "3SABCD1234567", "Event": {
        "Code": "J05", "Description": "x", "TimeStamp": "2024/07/15 10:00"}}}}
    with pytest.raises(CarrierError, match="unreadable"):
        parse(payload, fetched_at=FETCHED)


def test_single_shipment_is_filed_under_the_number_asked() -> None:
    report = parse(recorded("completestatus.http"), fetched_at=FETCHED,
                   barcode="33DEVC123456789")
    assert list(report.snapshots) == ["33DEVC123456789"]
    assert report.snapshots["33DEVC123456789"].tracking_number == "3SDEVC123456789"


# --- time and status mapping -----------------------------------------------------------------

@pytest.mark.parametrize(("text", "utc", "offset_hours"), [
    ("07-03-2018 23:22:56.326", datetime(2018, 3, 7, 22, 22, 56, 326000, tzinfo=UTC), 1),
    ("15-07-2024 10:00:00", datetime(2024, 7, 15, 8, 0, tzinfo=UTC), 2),  # summer time
    ("15-01-2024 10:00:00", datetime(2024, 1, 15, 9, 0, tzinfo=UTC), 1),  # winter time
    ("27-10-2024 02:30:00", datetime(2024, 10, 27, 0, 30, tzinfo=UTC), 2),  # repeated hour
    ("31-03-2024 02:30:00", datetime(2024, 3, 31, 1, 30, tzinfo=UTC), 1),  # skipped hour
    ("2024-07-15T14:00:00", datetime(2024, 7, 15, 12, 0, tzinfo=UTC), 2),  # ETA, ISO no zone
    ("2024-07-15T14:00:00+02:00", datetime(2024, 7, 15, 12, 0, tzinfo=UTC), 2),
])
def test_local_time_is_amsterdam(text: str, utc: datetime, offset_hours: int) -> None:
    when = local_time(text)
    assert when == utc  # holds inside the repeated hour too: the offset is fixed
    assert when.utcoffset() == timedelta(hours=offset_hours)


def test_summer_payload_gets_cest() -> None:
    payload = {"CurrentStatus": {"Shipment": {
        "Barcode": "3SABCD1234567",
        "Event": {"Code": "J05", "Description": "Driver is en route",
                  "TimeStamp": "15-07-2024 10:00:00"},
        "Expectation": {"ETAFrom": "2024-07-15T14:00:00", "ETATo": "2024-07-15T16:00:00"},
        "Status": {"TimeStamp": "15-07-2024 10:00:00", "StatusCode": "7",
                   "StatusDescription": "Shipment out for delivery", "PhaseCode": "3"}}}}
    snap = parse(payload, fetched_at=FETCHED).snapshots["3SABCD1234567"]
    assert snap.status is Status.OUT_FOR_DELIVERY
    assert snap.events[0].timestamp == datetime(2024, 7, 15, 10, 0, tzinfo=CEST)
    assert snap.events[0].timestamp.utcoffset() == timedelta(hours=2)
    assert (snap.eta, snap.eta_end) == (datetime(2024, 7, 15, 14, 0, tzinfo=CEST),
                                        datetime(2024, 7, 15, 16, 0, tzinfo=CEST))


@pytest.mark.parametrize(("code", "phase", "expected"), [
    ("1", "1", (Status.PENDING, Reason.NONE, CustomsStage.NONE)),
    ("7", "3", (Status.OUT_FOR_DELIVERY, Reason.NONE, CustomsStage.NONE)),
    ("8", "3", (Status.DELIVERY_FAILED, Reason.NONE, CustomsStage.NONE)),
    ("9", "3", (Status.IN_TRANSIT, Reason.NONE, CustomsStage.PROCESSING)),
    ("12", "4", (Status.READY_FOR_PICKUP, Reason.NONE, CustomsStage.NONE)),
    ("17", "3", (Status.ON_HOLD, Reason.LOST, CustomsStage.NONE)),
    ("22", "4", (Status.DELIVERED, Reason.NONE, CustomsStage.NONE)),
    ("77", "2", (Status.IN_TRANSIT, Reason.NONE, CustomsStage.NONE)),  # unknown: by phase
    ("99", "99", (Status.UNKNOWN, Reason.NONE, CustomsStage.NONE)),
])
def test_map_status(code: str, phase: str, expected: tuple[Status, Reason, CustomsStage]) -> None:
    assert map_status(code, phase) == expected


def test_not_applicable_status_falls_back_to_last_meaningful_one() -> None:
    payload = {"CompleteStatus": {"Shipment": {
        "Barcode": "3SABCD1234567",
        "Status": {"TimeStamp": "02-12-2024 08:00:00.120", "StatusCode": "99",
                   "StatusDescription": "Niet van toepassing", "PhaseCode": "99"},
        "OldStatus": [
            {"TimeStamp": "02-12-2024 07:59:00", "StatusCode": "12",
             "StatusDescription": "Zending beschikbaar op afhaallocatie", "PhaseCode": "4"},
            {"TimeStamp": "01-12-2024 22:00:00", "StatusCode": "5",
             "StatusDescription": "Zending gesorteerd", "PhaseCode": "2"}]}}}
    snap = parse(payload, fetched_at=FETCHED).snapshots["3SABCD1234567"]
    assert (snap.status, snap.raw_code) == (Status.READY_FOR_PICKUP, "12")


# --- the adapter against the fake ------------------------------------------------------------

@pytest.fixture
async def postnl() -> AsyncIterator[tuple[FakePostnl, PostnlCarrier]]:
    fake = FakePostnl()
    async with serve(fake.app()) as url, aiohttp.ClientSession() as session:
        yield fake, PostnlCarrier(session, Credentials(url, {"api_key": fake.api_key}))


async def test_track_serves_recorded_answer(postnl: tuple[FakePostnl, PostnlCarrier]) -> None:
    fake, carrier = postnl
    barcode = fake.add_recorded("completestatus3.http")
    report = await carrier.track([barcode])
    snap = report.snapshots[barcode]
    assert snap.status is Status.DELIVERED
    assert snap.last_event is not None
    assert snap.last_event.timestamp == datetime(2021, 3, 26, 15, 6, 53, tzinfo=CET)
    assert snap.fetched_at is not None and snap.fetched_at.tzinfo is not None
    seen = fake.requests[0]
    assert (seen.barcode, seen.query, seen.had_apikey) == (
        barcode, {"detail": "true", "language": "EN"}, True)


async def test_one_request_per_barcode_and_unknown_is_a_problem(
        postnl: tuple[FakePostnl, PostnlCarrier]) -> None:
    fake, carrier = postnl
    first = fake.add_recorded("completestatus.http")
    second = fake.add_recorded("currentstatus3.http")
    report = await carrier.track([first, "3SABCD0000001", second])
    assert sorted(report.snapshots) == sorted([first, second])
    assert report.problems["3SABCD0000001"].kind is ProblemKind.NOT_FOUND
    assert report.problems["3SABCD0000001"].message == "No shipment found"
    assert fake.hits == {first: 1, second: 1, "3SABCD0000001": 1}


async def test_generated_summer_shipment(postnl: tuple[FakePostnl, PostnlCarrier]) -> None:
    fake, carrier = postnl
    fake.add_shipment(
        "3SABCD7654321", status=("12", "Shipment at pick-up location", "4", "Delivered"),
        events=[("B01", "Shipment received by PostNL",
                 datetime(2025, 6, 30, 22, 15, tzinfo=CEST)),
                ("J01", "Shipment has been sorted", datetime(2025, 7, 1, 4, 2, tzinfo=CEST))],
        eta=(datetime(2025, 7, 1, 9, 0, tzinfo=CEST), datetime(2025, 7, 1, 12, 0, tzinfo=CEST)),
        status_at=datetime(2025, 7, 1, 10, 40, tzinfo=CEST))
    snap = (await carrier.track(["3SABCD7654321"])).snapshots["3SABCD7654321"]
    assert snap.status is Status.READY_FOR_PICKUP
    assert [(e.raw_code, e.status, e.timestamp) for e in snap.events] == [
        ("B01", Status.PICKED_UP, datetime(2025, 6, 30, 20, 15, tzinfo=UTC)),
        ("J01", Status.IN_TRANSIT, datetime(2025, 7, 1, 2, 2, tzinfo=UTC)),
    ]
    assert snap.eta == datetime(2025, 7, 1, 7, 0, tzinfo=UTC)
    assert snap.eta is not None and snap.eta.utcoffset() == timedelta(hours=2)


async def test_wrong_api_key_raises_auth_error() -> None:
    fake = FakePostnl()
    async with serve(fake.app()) as url, aiohttp.ClientSession() as session:
        carrier = PostnlCarrier(session, Credentials(url, {"api_key": "not-the-key"}))
        with pytest.raises(CarrierAuthError) as info:
            await carrier.track(["3SABCD1234567"])
    assert info.value.status == 401
    assert fake.requests[0].had_apikey


async def test_rate_limit_carries_retry_after(postnl: tuple[FakePostnl, PostnlCarrier]) -> None:
    fake, carrier = postnl
    fake.outage, fake.retry_after = 429, "30"
    with pytest.raises(CarrierError) as info:
        await carrier.track(["3SABCD1234567"])
    assert not isinstance(info.value, CarrierAuthError)
    assert (info.value.status, info.value.retry_after) == (429, 30.0)


async def test_server_error_is_a_carrier_error(postnl: tuple[FakePostnl, PostnlCarrier]) -> None:
    fake, carrier = postnl
    fake.outage = 503
    with pytest.raises(CarrierError) as info:
        await carrier.track(["3SABCD1234567"])
    assert (info.value.status, info.value.retry_after) == (503, None)


@pytest.mark.parametrize(("status", "kind"), [(404, ProblemKind.NOT_FOUND),
                                              (400, ProblemKind.INVALID)])
async def test_client_errors_are_per_number_problems(
        postnl: tuple[FakePostnl, PostnlCarrier], status: int, kind: ProblemKind) -> None:
    fake, carrier = postnl
    fake.outage = status
    report = await carrier.track(["3SABCD1234567"])
    assert report.problems["3SABCD1234567"].kind is kind and not report.snapshots


@pytest.mark.parametrize(("number", "expected"), [
    ("3SABCD1234567", True),
    ("3SDEVC123456789", True),
    ("RB123456785NL", True),  # S10, check digit 5
    ("RB123456786NL", False),  # wrong check digit
    ("RB123456785TH", False),  # another post's number
    ("3SAB12", False),
    ("1Z999AA10123456784", False),
])
def test_recognizes(number: str, expected: bool) -> None:
    carrier = PostnlCarrier(None, Credentials(DEFAULT_BASE_URL))  # type: ignore[arg-type]
    assert carrier.recognizes(number) is expected


def test_is_a_carrier_without_push() -> None:
    carrier = PostnlCarrier(None, Credentials(DEFAULT_BASE_URL))  # type: ignore[arg-type]
    assert isinstance(carrier, Carrier)
    assert not isinstance(carrier, PushCarrier)
