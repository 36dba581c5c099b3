"""DHL Shipment Tracking – Unified adapter: pure parsing of spec payloads, then the adapter on FakeDhl."""

from __future__ import annotations

import copy
import json
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from openapi_core import Config, OpenAPI
from openapi_core.deserializing.media_types.util import json_loads
from openapi_core.testing import MockRequest, MockResponse

from carriers import PushCarrier
from carriers.dhl import (
    CREDENTIALS,
    DEFAULT_BASE_URL,
    LIMITS,
    NAME,
    TIMESTAMP_POLICY,
    WEBHOOK_HEADER,
    DhlCarrier,
    parse,
    push_service,
    snapshot,
)
from carriers.model import (
    CarrierAuthError,
    CarrierError,
    Credentials,
    CustomsStage,
    Money,
    ProblemKind,
    Reason,
    Status,
    TimestampPolicy,
    TrackingSnapshot,
    WebhookError,
)
from tests.fakes import serve
from tests.fakes.carrier_dhl import (
    API_KEY,
    CUSTOMS_DUTIES,
    CUSTOMS_INSPECTION,
    DELIVERED,
    OUT_FOR_DELIVERY,
    Exchange,
    FakeDhl,
    default_shipments,
)
from tests.paths import shared

FETCHED = datetime(2025, 3, 5, 8, 0, tzinfo=UTC)
SECRET = "shipmate-dhl-push-token-0123456789"
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def spec() -> dict[str, Any]:
    return json.loads(shared("carriers", "dhl", "dpdhl_tracking-unified-api_1.3.1.openapi.json")
                      .read_text())


def spec_example_shipment() -> dict[str, Any]:
    """A shipment assembled from the spec's own `example` values (no statusCode among them)."""
    schemas = spec()["components"]["schemas"]
    event_props = schemas["supermodelIoLogisticsTrackingShipmentEvent"]["properties"]
    shipment_props = schemas["supermodelIoLogisticsTrackingShipment"]["properties"]
    event = {k: v["example"] for k, v in event_props.items() if "example" in v}
    event["location"] = schemas["supermodelIoLogisticsSupportingPlace"]["example"]
    frame = shipment_props["estimatedDeliveryTimeFrame"]["properties"]
    return {
        "id": str(shipment_props["id"]["example"]),
        "service": shipment_props["service"]["example"],
        "status": event,
        "estimatedTimeOfDelivery": shipment_props["estimatedTimeOfDelivery"]["example"],
        "estimatedDeliveryTimeFrame": {k: v["example"] for k, v in frame.items()},
        "estimatedTimeOfDeliveryRemark": shipment_props["estimatedTimeOfDeliveryRemark"]["example"],
        "details": {"product": schemas["supermodelIoLogisticsSupportingProduct"]["example"]},
        "events": [event],
    }


# --- module contract ----------------------------------------------------------------------------

def test_declared_contract() -> None:
    assert NAME == "dhl"
    assert DEFAULT_BASE_URL == "https://api-eu.dhl.com"
    assert CREDENTIALS == ("api_key", "webhook_secret")
    assert (LIMITS.batch_size, LIMITS.per_second, LIMITS.per_day) == (1, 1.0, 250)
    assert LIMITS.supports_push
    assert TIMESTAMP_POLICY is TimestampPolicy.NAIVE_LOCAL
    # The spec takes exactly one trackingNumber (a plain string) per call: batch_size 1.
    parameter = spec()["components"]["parameters"]["trackingNumber"]
    assert parameter["schema"]["type"] == "string" and parameter["required"]


@pytest.mark.parametrize("number, expected", [
    ("7777777770", True),  # Express waybill
    ("00340434292135100179", True),  # Parcel DE
    ("JJD000390007882222222", True),
    ("GM2951173225174494", True),  # eCommerce
    ("RR123456785DE", True),  # Deutsche Post international
    ("RR123456785US", False),
    ("9400100000000000000001", False),  # USPS IMpb
    ("1Z999AA10123456784", False),  # UPS
])
def test_recognizes_cheap_formats(number: str, expected: bool) -> None:
    carrier = DhlCarrier(None, Credentials(DEFAULT_BASE_URL))  # type: ignore[arg-type]
    assert carrier.recognizes(number) is expected


# --- parse(): spec payloads -------------------------------------------------------------------

def test_spec_example_shipment() -> None:
    report = parse({"shipments": [spec_example_shipment()]}, fetched_at=FETCHED)
    snap = report.snapshots["7777777770"]
    # No statusCode in the spec example: the text "DELIVERED" decides. The remark still talks
    # about customs inspection; a delivered parcel is past customs.
    assert snap.status is Status.DELIVERED
    assert snap.customs is CustomsStage.RELEASED
    assert (snap.raw_code, snap.raw_text) == ("", "DELIVERED")
    assert snap.service == "UNKNOWN - Product unknown"
    assert snap.eta == utc(2018, 8, 3) and snap.eta_end == utc(2018, 8, 3, 22)
    (event,) = snap.events  # the status repeats the only event: not doubled
    assert event.timestamp == utc(2018, 3, 2, 7, 53, 47)
    assert (event.location, event.country) == ("Oderweg 2, AMSTERDAM", "NL")
    assert event.description == "JESSICA"
    assert event.customs is CustomsStage.HELD and event.reason is Reason.CUSTOMS_INSPECTION
    assert "pending completion of customs inspection" in event.raw_text
    assert snap.fetched_at == FETCHED


def test_spec_customs_texts_on_a_transit_status_mean_held_for_inspection() -> None:
    shipment = spec_example_shipment()
    shipment["status"] = dict(shipment["status"], statusCode="transit", status="Shipment on hold")
    snap = snapshot(shipment)
    assert snap.status is Status.ON_HOLD
    assert snap.customs is CustomsStage.HELD
    assert snap.reason is Reason.CUSTOMS_INSPECTION
    assert snap.raw_code == "transit" and snap.duties is None


def test_spec_404_problem_is_not_found() -> None:
    problem = spec()["components"]["responses"]["shipmentNotFound"]["content"][
        "application/problem+json"]["schema"]["example"]
    by_instance = parse(problem, fetched_at=FETCHED).problems["8264715546"]
    assert by_instance.kind is ProblemKind.NOT_FOUND
    assert by_instance.message == "No shipment with given tracking number found."
    asked = parse(problem, fetched_at=FETCHED, number="JJD000390007882222222")
    assert asked.problems["JJD000390007882222222"].kind is ProblemKind.NOT_FOUND
    assert not asked.snapshots


def test_customs_hold_with_duties_and_naive_express_times() -> None:
    snap = snapshot(default_shipments()[CUSTOMS_DUTIES], fetched_at=FETCHED)
    assert snap.status is Status.ON_HOLD
    assert snap.customs is CustomsStage.DUTIES_DUE
    assert snap.reason is Reason.CUSTOMS_DUTIES_UNPAID
    assert snap.duties == Money(Decimal("23.50"), "EUR")
    assert snap.payment_url == "https://payments.fake-dhl.test/7777777770"
    assert (snap.raw_code, snap.raw_text) == ("transit", "Shipment on hold")
    assert snap.service == "EXPRESS WORLDWIDE"
    assert [e.description for e in snap.events] == [
        "Shipment picked up", "Processed at LONDON-HEATHROW - UK",
        "Arrived at DHL Sort Facility LEIPZIG - GERMANY", "Customs status updated",
        "Clearance event"]
    picked_up, _, arrived, customs_update, hold = snap.events
    # Naive Express times are local: London (GMT) and Leipzig (CET).
    assert picked_up.timestamp == utc(2025, 3, 2, 16, 40) and picked_up.status is Status.PICKED_UP
    assert arrived.timestamp == utc(2025, 3, 3, 4, 30)
    assert arrived.timestamp.tzinfo == BERLIN and arrived.country == "DE"
    assert customs_update.customs is CustomsStage.PROCESSING
    assert hold.timestamp == utc(2025, 3, 4, 9, 15)
    # "By End of Day" on a date: the whole day at the destination.
    assert snap.eta == datetime(2025, 3, 6, tzinfo=BERLIN)
    assert snap.eta_end == datetime(2025, 3, 6, 23, 59, 59, tzinfo=BERLIN)


def test_out_for_delivery_with_time_frame() -> None:
    snap = snapshot(default_shipments()[OUT_FOR_DELIVERY])
    assert snap.status is Status.OUT_FOR_DELIVERY and snap.customs is CustomsStage.NONE
    assert [e.status for e in snap.events] == [Status.PENDING, Status.IN_TRANSIT,
                                                Status.OUT_FOR_DELIVERY]
    assert [e.raw_code for e in snap.events] == ["pre-transit", "transit", "transit"]
    assert snap.eta == utc(2025, 3, 5, 9) and snap.eta_end == utc(2025, 3, 5, 12)
    assert snap.service == "DHL PAKET"


@pytest.mark.parametrize("code, status_text, remark, status, reason, customs", [
    ("failure", "Delivery failed", "The recipient was not at home.", Status.DELIVERY_FAILED,
     Reason.CONSIGNEE_NOT_HOME, CustomsStage.NONE),
    ("failure", "The shipment is being returned to the sender", "", Status.RETURN_TO_SENDER,
     Reason.NONE, CustomsStage.NONE),
    ("failure", "Delivery refused by the recipient", "", Status.DELIVERY_FAILED,
     Reason.CONSIGNEE_REFUSED, CustomsStage.NONE),
    ("failure", "Address incomplete", "", Status.DELIVERY_FAILED, Reason.INCORRECT_ADDRESS,
     CustomsStage.NONE),
    ("failure", "Shipment damaged", "", Status.ON_HOLD, Reason.DAMAGED, CustomsStage.NONE),
    ("pre-transit", "Shipment information received", "", Status.PENDING, Reason.NONE,
     CustomsStage.NONE),
    ("transit", "Shipment picked up", "", Status.PICKED_UP, Reason.NONE, CustomsStage.NONE),
    ("transit", "With delivery courier", "", Status.OUT_FOR_DELIVERY, Reason.NONE,
     CustomsStage.NONE),
    ("transit", "Shipment delayed due to severe weather", "", Status.DELAYED,
     Reason.WEATHER_DELAY, CustomsStage.NONE),
    ("transit", "Clearance processing complete at LEIPZIG - GERMANY", "", Status.IN_TRANSIT,
     Reason.NONE, CustomsStage.RELEASED),
    ("transit", "The shipment has been released by customs", "", Status.IN_TRANSIT, Reason.NONE,
     CustomsStage.RELEASED),
    ("transit", "Customs clearance status updated",
     "Awaiting documents from the receiver for customs clearance.", Status.ON_HOLD,
     Reason.CUSTOMS_DOCUMENTATION, CustomsStage.INFO_REQUIRED),
    ("transit", "Clearance delay", "", Status.ON_HOLD, Reason.CUSTOMS_DELAY, CustomsStage.HELD),
    ("transit", "Duties and taxes have been paid", "", Status.IN_TRANSIT, Reason.NONE,
     CustomsStage.PROCESSING),
    ("unknown", "Status not available", "", Status.UNKNOWN, Reason.NONE, CustomsStage.NONE),
    ("delivered", "Delivered - Signed for by: JESSICA", "", Status.DELIVERED, Reason.NONE,
     CustomsStage.NONE),
])
def test_status_classification(code: str, status_text: str, remark: str, status: Status,
                               reason: Reason, customs: CustomsStage) -> None:
    event = {"timestamp": "2025-03-04T12:00:00+01:00", "statusCode": code, "status": status_text,
             "location": {"address": {"countryCode": "DE", "addressLocality": "Bonn"}}}
    if remark:
        event["remark"] = remark
    snap = snapshot({"id": "7777777770", "status": event})
    assert (snap.status, snap.reason, snap.customs) == (status, reason, customs)


def test_ready_for_pickup_names_the_place() -> None:
    snap = snapshot({"id": "00340434292135100193", "status": {
        "timestamp": "2025-03-05T09:00:00+01:00", "statusCode": "transit",
        "status": "The shipment is ready for pick-up at the PACKSTATION",
        "location": {"address": {"countryCode": "DE", "addressLocality": "Packstation 105, Bonn"}}}})
    assert snap.status is Status.READY_FOR_PICKUP
    assert snap.pickup_location == "Packstation 105, Bonn"


def test_a_hold_is_over_once_the_parcel_moves_on() -> None:
    shipment = copy.deepcopy(default_shipments()[CUSTOMS_DUTIES])
    moved = {"timestamp": "2025-03-05T06:00:00", "statusCode": "transit",
             "status": "Departed Facility in LEIPZIG - GERMANY",
             "location": {"address": {"countryCode": "DE", "addressLocality": "LEIPZIG - GERMANY"}}}
    shipment["status"] = moved
    shipment["events"].insert(0, moved)
    snap = snapshot(shipment)
    assert (snap.status, snap.customs, snap.reason) == (Status.IN_TRANSIT, CustomsStage.RELEASED,
                                                        Reason.NONE)
    assert snap.duties is None


def test_piece_number_and_several_divisions_key_the_answer_by_the_asked_number() -> None:
    older = snapshot_body("parcel-de", "2025-03-01T10:00:00+01:00", "transit")
    newer = snapshot_body("express", "2025-03-04T10:00:00+01:00", "delivered")
    report = parse({"shipments": [older, newer]}, fetched_at=FETCHED, number="JD014600006281230704")
    snap = report.snapshots["JD014600006281230704"]
    assert snap.tracking_number == "JD014600006281230704"
    assert snap.status is Status.DELIVERED  # the freshest of the two answers
    empty = parse({"shipments": []}, fetched_at=FETCHED, number="7777777779")
    assert empty.problems["7777777779"].kind is ProblemKind.NOT_FOUND


def snapshot_body(service: str, timestamp: str, code: str) -> dict[str, Any]:
    return {"id": "1234567890", "service": service,
            "status": {"timestamp": timestamp, "statusCode": code, "status": code.upper()}}


def test_unparseable_bodies_are_carrier_errors() -> None:
    with pytest.raises(CarrierError):
        parse(["shipments"], fetched_at=FETCHED)
    with pytest.raises(CarrierError):
        parse({"something": "else"}, fetched_at=FETCHED)


def test_push_service_guess() -> None:
    assert push_service("7777777770") == "express"
    assert push_service("00340434292135100179") == "parcel-de"
    assert push_service("RR123456785DE") == "post-de"


# --- the spec as the judge of the fake and of our requests ---------------------------------------

def assert_spec_conform(exchanges: list[Exchange]) -> None:
    """Validate tracking requests (and responses the spec declares) against DHL's spec."""
    api = OpenAPI.from_dict(spec(), config=Config(
        extra_media_type_deserializers={"application/problem+json": json_loads}))
    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ex in exchanges:
            if ex.path != "/track/shipments":
                continue  # the push API has no spec in our fixtures
            req = MockRequest("https://api-eu.dhl.com", ex.method, ex.path, args=ex.query,
                              headers=ex.headers)
            api.validate_request(req)
            if ex.status in (200, 404):  # the only responses the spec documents
                api.validate_response(req, MockResponse(ex.response_body, status_code=ex.status,
                                                        content_type=ex.response_type))
                checked += 1
    assert checked, "no documented response was exchanged"


def test_spec_check_is_not_toothless() -> None:
    bad = copy.deepcopy(default_shipments()[DELIVERED])
    bad["status"]["statusCode"] = "in-transit"  # not in the statusCode enum
    exchange = Exchange("GET", "/track/shipments", {"trackingNumber": DELIVERED},
                        {"DHL-API-Key": API_KEY}, b"", 200,
                        json.dumps({"shipments": [bad]}).encode(), "application/json")
    with pytest.raises(Exception, match="InvalidData|not valid"):
        assert_spec_conform([exchange])
    keyless = Exchange("GET", "/track/shipments", {"trackingNumber": DELIVERED}, {}, b"", 404,
                       b"{}", "application/problem+json")
    with pytest.raises(Exception, match="Security"):
        assert_spec_conform([keyless])


# --- the adapter against FakeDhl ------------------------------------------------------------

@asynccontextmanager
async def running(fake: FakeDhl, *, api_key: str = API_KEY, secret: str = SECRET,
                  min_interval: float = 0.0) -> AsyncIterator[tuple[DhlCarrier, aiohttp.ClientSession]]:
    async with serve(fake.app()) as base, aiohttp.ClientSession() as session:
        fake.base_url = base
        creds = Credentials(base, {"api_key": api_key, "webhook_secret": secret})
        yield DhlCarrier(session, creds, min_interval=min_interval), session


TRACK = "/track/shipments"


async def test_tracks_one_number_per_call_and_maps_404_to_not_found() -> None:
    fake = FakeDhl()
    async with running(fake) as (carrier, _):
        report = await carrier.track([CUSTOMS_DUTIES, OUT_FOR_DELIVERY, "JJD000390007880000000",
                                      CUSTOMS_DUTIES])
    assert fake.calls[TRACK] == 3  # the duplicate is asked once
    assert [e.query["trackingNumber"] for e in fake.exchanges] == [
        CUSTOMS_DUTIES, OUT_FOR_DELIVERY, "JJD000390007880000000"]
    assert all(e.headers["DHL-API-Key"] == API_KEY for e in fake.exchanges)
    duties = report.snapshots[CUSTOMS_DUTIES]
    assert (duties.status, duties.customs) == (Status.ON_HOLD, CustomsStage.DUTIES_DUE)
    assert duties.duties == Money(Decimal("23.50"), "EUR")
    assert report.snapshots[OUT_FOR_DELIVERY].status is Status.OUT_FOR_DELIVERY
    problem = report.problems["JJD000390007880000000"]
    assert problem.kind is ProblemKind.NOT_FOUND
    assert problem.message == "No shipment with given tracking number found."
    assert all(s.fetched_at and s.fetched_at.tzinfo for s in report.snapshots.values())
    assert fake.exchanges[2].response_type == "application/problem+json"
    assert_spec_conform(fake.exchanges)


async def test_customs_inspection_parcel() -> None:
    fake = FakeDhl()
    async with running(fake) as (carrier, _):
        snap = (await carrier.track([CUSTOMS_INSPECTION])).snapshots[CUSTOMS_INSPECTION]
    assert (snap.status, snap.customs, snap.reason) == (
        Status.ON_HOLD, CustomsStage.HELD, Reason.CUSTOMS_INSPECTION)
    assert snap.events[0].timestamp == utc(2025, 3, 2, 11, 45)  # 19:45 in Shenzhen
    assert_spec_conform(fake.exchanges)


async def test_wrong_api_key_is_an_auth_error() -> None:
    fake = FakeDhl()
    async with running(fake, api_key="not-the-key") as (carrier, _):
        with pytest.raises(CarrierAuthError) as caught:
            await carrier.track([DELIVERED])
    assert caught.value.status == 401 and fake.calls[TRACK] == 1


async def test_429_carries_retry_after_and_5xx_is_retryable() -> None:
    fake = FakeDhl()
    fake.fail(429, retry_after="7", times=1)
    async with running(fake) as (carrier, _):
        with pytest.raises(CarrierError) as caught:
            await carrier.track([DELIVERED])
        assert (caught.value.status, caught.value.retry_after) == (429, 7.0)
        fake.fail(502)
        with pytest.raises(CarrierError) as caught:
            await carrier.track([DELIVERED])
        assert caught.value.status == 502 and not isinstance(caught.value, CarrierAuthError)
        fake.recover()
        report = await carrier.track([DELIVERED])
    assert report.snapshots[DELIVERED].status is Status.DELIVERED
    assert_spec_conform(fake.exchanges)


async def test_daily_quota_runs_out_and_resets_at_midnight_gmt() -> None:
    day = [date(2025, 3, 5)]
    fake = FakeDhl(daily_quota=2, today=lambda: day[0])
    async with running(fake) as (carrier, _):
        await carrier.track([DELIVERED, OUT_FOR_DELIVERY])
        assert fake.quota_left() == 0
        with pytest.raises(CarrierError) as caught:
            await carrier.track([CUSTOMS_DUTIES])
        assert caught.value.status == 429
        assert caught.value.retry_after is not None and caught.value.retry_after > 0
        day[0] += timedelta(days=1)
        report = await carrier.track([CUSTOMS_DUTIES])
    assert CUSTOMS_DUTIES in report.snapshots and fake.quota_left() == 1
    assert fake.calls[TRACK] == 4


async def test_calls_are_paced_to_the_declared_rate() -> None:
    fake = FakeDhl()
    async with running(fake, min_interval=0.2) as (carrier, _):
        started = time.monotonic()
        await carrier.track([DELIVERED, OUT_FOR_DELIVERY, CUSTOMS_DUTIES])
        elapsed = time.monotonic() - started
    assert elapsed >= 0.4  # three calls, two waits
    assert DhlCarrier(None, Credentials(DEFAULT_BASE_URL))._min_interval == 1.0  # type: ignore[arg-type]


# --- push ---------------------------------------------------------------------------------------

@asynccontextmanager
async def receiver(carrier: DhlCarrier) -> AsyncIterator[tuple[str, list[TrackingSnapshot]]]:
    """Our side of the hook, as the web process will run it: verify, handshake, parse."""
    received: list[TrackingSnapshot] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            carrier.verify_webhook(dict(request.headers), body)
        except WebhookError:
            return web.Response(status=403)
        await carrier.handshake(body)
        received.extend(carrier.parse_webhook(body))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hooks/dhl", hook)
    async with serve(app) as base:
        yield base + "/hooks/dhl", received


async def test_subscribe_handshake_and_verified_pushes() -> None:
    fake = FakeDhl()
    async with running(fake) as (carrier, session), receiver(carrier) as (url, received):
        assert isinstance(carrier, PushCarrier)
        await carrier.subscribe([CUSTOMS_DUTIES, OUT_FOR_DELIVERY], url)
        express, parcel = fake.subscriptions.values()
        assert (express["service"], express["shipmentIDs"]) == ("express", [CUSTOMS_DUTIES])
        assert (parcel["service"], parcel["shipmentIDs"]) == ("parcel-de", [OUT_FOR_DELIVERY])
        assert express["hook"] == {"uri": url, "authentication": {
            "type": "ApiKeyAuthentication", "header": WEBHOOK_HEADER, "token": SECRET}}
        assert express["type"] == "Shipment" and "Delivered" in express["events"]

        assert await fake.send_validation(session, express["id"]) == 200
        assert express["active"] and not parcel["active"]
        assert not received  # handshake messages carry no shipments

        assert await fake.push(session, CUSTOMS_DUTIES) == 200
        assert await fake.push(session, CUSTOMS_DUTIES, token="forged-token") == 403
        assert await fake.push(session, CUSTOMS_DUTIES, token="") == 403
        assert await fake.send_validation(session, parcel["id"], token="forged") == 403
        assert not parcel["active"]
    (snap,) = received
    assert snap.tracking_number == CUSTOMS_DUTIES
    assert (snap.status, snap.customs) == (Status.ON_HOLD, CustomsStage.DUTIES_DUE)
    activation = [e for e in fake.exchanges if e.path.endswith(express["id"])]
    assert [(e.method, e.status) for e in activation] == [("POST", 204)]
    assert activation[0].headers["DHL-API-Hook-Secret"] == express["hookSecret"]


async def test_subscriptions_carry_at_most_ten_ids() -> None:
    fake = FakeDhl()
    numbers = [f"003404342921351{i:05d}" for i in range(11)]
    async with running(fake) as (carrier, _):
        await carrier.subscribe(numbers, "https://shop.example/hooks/dhl")
    assert [len(s["shipmentIDs"]) for s in fake.subscriptions.values()] == [10, 1]
    assert sum((s["shipmentIDs"] for s in fake.subscriptions.values()), []) == numbers


async def test_subscribe_needs_the_webhook_secret() -> None:
    fake = FakeDhl()
    async with running(fake, secret="") as (carrier, _):
        with pytest.raises(ValueError, match="WEBHOOK_SECRET"):
            await carrier.subscribe([DELIVERED], "https://shop.example/hooks/dhl")
    assert not fake.calls


def test_verify_is_constant_time_on_the_configured_token_and_rejects_malformed_bodies() -> None:
    carrier = DhlCarrier(None, Credentials(DEFAULT_BASE_URL, {"webhook_secret": SECRET}))  # type: ignore[arg-type]
    body = json.dumps({"scope": "subscription.push", "shipments": [
        default_shipments()[DELIVERED]]}).encode()
    carrier.verify_webhook({WEBHOOK_HEADER.lower(): SECRET}, body)
    (snap,) = carrier.parse_webhook(body)
    assert snap.status is Status.DELIVERED and snap.tracking_number == DELIVERED
    for headers in ({}, {WEBHOOK_HEADER: SECRET[:-1]}, {"DHL-API-Key": SECRET}):
        with pytest.raises(WebhookError):
            carrier.verify_webhook(headers, body)
    for bad in (b"{", b"[]", b'{"shipments": []}'):
        with pytest.raises(WebhookError):
            carrier.verify_webhook({WEBHOOK_HEADER: SECRET}, bad)
    with pytest.raises(WebhookError):
        carrier.parse_webhook(b'{"scope": "subscription.push", "shipments": {}}')
    unconfigured = DhlCarrier(None, Credentials(DEFAULT_BASE_URL))  # type: ignore[arg-type]
    with pytest.raises(WebhookError):
        unconfigured.verify_webhook({WEBHOOK_HEADER: ""}, body)
    assert carrier.parse_webhook(b'{"scope": "subscription.ready", "self": "x"}') == []
