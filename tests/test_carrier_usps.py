"""USPS Tracking 3.2 adapter: pure parsing of recorded/spec payloads, then the adapter on FakeUsps."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import yaml
from aiohttp import web
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from carriers import PushCarrier
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
from carriers.usps import (
    CREDENTIALS,
    DEFAULT_BASE_URL,
    LIMITS,
    NAME,
    TIMESTAMP_POLICY,
    UspsCarrier,
    event_time,
    parse,
    snapshot,
)
from tests.fakes import serve
from tests.fakes.carrier_usps import (
    CLIENT_ID,
    CLIENT_SECRET,
    CUSTOMS_DUTIES,
    DELIVERED,
    OUT_FOR_DELIVERY,
    Exchange,
    FakeUsps,
    default_parcels,
)
from tests.paths import shared

FETCHED = datetime(2025, 2, 7, 18, 0, tzinfo=UTC)
SECRET = "0123456789abcdef0123456789abcdef"  # 32 characters, as the spec demands


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def readme_sample() -> dict[str, Any]:
    path = shared("carriers", "usps", "samples", "tracking_v3_detail.readme-sample.json")
    return json.loads(path.read_text())


def subscriptions_spec() -> dict[str, Any]:
    return yaml.safe_load(shared("carriers", "usps", "subscriptions-tracking-v3r2_1.yaml").read_text())


def spec_callback_example() -> dict[str, Any]:
    """The spec's 'Tracking Subscription Event' example; its payload is written JSON-escaped."""
    example = copy.deepcopy(subscriptions_spec()["components"]["examples"]["scanEvent"]["value"])
    example["payload"] = example["payload"].strip().replace('\\"', '"')
    return example


# --- module contract ----------------------------------------------------------------------------

def test_declared_contract() -> None:
    assert NAME == "usps"
    assert DEFAULT_BASE_URL == "https://apis.usps.com"
    assert CREDENTIALS == ("client_id", "client_secret", "webhook_secret")
    assert LIMITS.batch_size == 35 and LIMITS.supports_push
    assert LIMITS.per_day == 1440 and LIMITS.per_second == pytest.approx(1 / 60)
    assert TIMESTAMP_POLICY is TimestampPolicy.MISLABELED_Z


@pytest.mark.parametrize("number, expected", [
    ("9400100000000000000001", True),  # IMpb, 22 digits
    ("92055901755477000271990", False),  # 23 digits
    ("9205590175547700027199", True),
    ("420902109400100000000000000001", True),  # 420 + ZIP routing prefix + IMpb
    ("CP123456785US", True),
    ("CP123456785DE", False),  # someone else's S10
    ("1Z999AA10123456784", False),  # UPS
    ("7777777770", False),  # DHL Express
])
def test_recognizes_cheap_formats(number: str, expected: bool) -> None:
    carrier = UspsCarrier(None, Credentials(DEFAULT_BASE_URL))  # type: ignore[arg-type]
    assert carrier.recognizes(number) is expected


# --- parse(): recorded and spec payloads ----------------------------------------------------------

def test_readme_sample_mislabeled_z_is_local_richmond_time() -> None:
    report = parse(readme_sample(), fetched_at=FETCHED)
    snap = report.snapshots["XXXXXXXXXXXXXXXXXXXX"]
    assert not report.problems
    assert snap.status is Status.PICKED_UP
    assert (snap.raw_code, snap.raw_text) == ("Accepted", "USPS in possession of item")
    assert snap.service == "Priority Mail®"
    assert snap.fetched_at == FETCHED
    (event,) = snap.events
    # "07:31:00Z" next to "as of 7:31 am ... in RICHMOND, VA": 07:31 EDT is 11:31 UTC.
    assert event.timestamp == utc(2023, 8, 2, 11, 31)
    assert event.timestamp.tzinfo == ZoneInfo("America/New_York")
    assert (event.raw_code, event.status) == ("03", Status.PICKED_UP)
    assert (event.location, event.country) == ("RICHMOND, VA 23227", "US")


@pytest.mark.parametrize("raw, expected, offset_hours", [
    # 'Z' on eventTimestamp is a local clock: placed in the state's zone (Pacific, daylight time).
    ({"eventTimestamp": "2023-08-02T07:31:00Z", "eventState": "CA"}, utc(2023, 8, 2, 14, 31), -7),
    # ... or in GMTOffset when USPS sends one.
    ({"eventTimestamp": "2023-08-02T07:31:00Z", "GMTOffset": "-5:00"}, utc(2023, 8, 2, 12, 31), -5),
    # A naive timestamp is treated the same way.
    ({"eventTimestamp": "2025-01-15T09:00:00", "eventState": "HI"}, utc(2025, 1, 15, 19, 0), -10),
    # A real numeric offset (v3.2 spec example) is trusted.
    ({"eventTimestamp": "2024-04-04 14:03:12-07:00", "eventState": "NY"},
     utc(2024, 4, 4, 21, 3, 12), -7),
    # GMTTimestamp wins and is shown at the local offset; minutes form '-420' (research note).
    ({"eventTimestamp": "2024-04-04T14:03:12Z", "GMTTimestamp": "2024-04-04 21:03:12.041000+00:00",
      "GMTOffset": "-420"}, datetime(2024, 4, 4, 21, 3, 12, 41000, tzinfo=UTC), -7),
    # No state, no offset: the 'Z' is all there is.
    ({"eventTimestamp": "2025-02-12T09:40:00Z", "eventCountry": "GB"}, utc(2025, 2, 12, 9, 40), 0),
])
def test_event_time_policy(raw: dict[str, str], expected: datetime, offset_hours: int) -> None:
    when = event_time(raw)
    assert when == expected
    assert when.utcoffset() == timedelta(hours=offset_hours)


def test_event_without_any_timestamp_is_dropped() -> None:
    detail = {"trackingNumber": "9400100000000000000009", "status": "In Transit",
              "trackingEvents": [{"eventType": "Processed", "eventCode": "10"}]}
    snap = parse(detail, fetched_at=FETCHED).snapshots["9400100000000000000009"]
    assert snap.events == () and snap.status is Status.IN_TRANSIT


def test_spec_callback_example_delivered_despite_accepted_category() -> None:
    detail = json.loads(spec_callback_example()["payload"])
    snap = snapshot(detail, fetched_at=FETCHED)
    # The spec example says statusCategory "Accepted" for a delivered item; code 01 wins.
    assert snap.status is Status.DELIVERED
    assert (snap.raw_code, snap.raw_text) == ("Accepted", "Delivered, Front Door/Porch")
    assert snap.tracking_number == "12345678"
    (event,) = snap.events
    assert event.timestamp == utc(2025, 2, 7, 17, 55, 12)
    assert event.timestamp.utcoffset() == timedelta(hours=-5)
    assert (event.raw_code, event.location, event.country) == ("01", "DETROIT, MI 12345", "US")
    # predicted window 12:15pm-3:15pm on 2025-02-07 in Detroit (EST).
    assert snap.eta == utc(2025, 2, 7, 17, 15)
    assert snap.eta_end == utc(2025, 2, 7, 20, 15)
    assert snap.customs is CustomsStage.NONE and snap.reason is Reason.NONE


def test_out_for_delivery_events_oldest_first_with_window_eta() -> None:
    detail = default_parcels()[OUT_FOR_DELIVERY]
    snap = parse([detail], fetched_at=FETCHED).snapshots[OUT_FOR_DELIVERY]
    assert snap.status is Status.OUT_FOR_DELIVERY
    assert [e.raw_code for e in snap.events] == ["MA", "03", "10", "07", "OF"]
    assert [e.status for e in snap.events] == [
        Status.PENDING, Status.PICKED_UP, Status.IN_TRANSIT, Status.IN_TRANSIT,
        Status.OUT_FOR_DELIVERY]
    assert snap.last_event.timestamp == utc(2025, 2, 7, 13, 10)
    assert snap.eta == utc(2025, 2, 7, 17, 15) and snap.eta_end == utc(2025, 2, 7, 20, 15)
    assert snap.eta.tzinfo == ZoneInfo("America/Detroit")


def test_customs_hold_with_duties() -> None:
    snap = snapshot(default_parcels()[CUSTOMS_DUTIES], fetched_at=FETCHED)
    assert snap.status is Status.ON_HOLD
    assert snap.customs is CustomsStage.DUTIES_DUE
    assert snap.reason is Reason.CUSTOMS_DUTIES_UNPAID
    assert snap.duties == Money(Decimal("12.40"), "GBP")
    assert snap.service == "Priority Mail International®"
    assert (snap.raw_code, snap.raw_text) == ("Alert", "Held in Customs")
    clearance = snap.events[-2]
    assert (clearance.description, clearance.customs) == ("Customs Clearance",
                                                          CustomsStage.PROCESSING)
    assert clearance.country == "GB" and clearance.raw_code == ""
    assert snap.last_event.timestamp == utc(2025, 2, 12, 9, 40)
    assert snap.eta is None


def _with_newer_event(detail: dict[str, Any], code: str | None, text: str) -> dict[str, Any]:
    detail = copy.deepcopy(detail)
    event = {"eventType": text, "eventTimestamp": "2025-02-13T08:00:00+00:00",
             "GMTTimestamp": "2025-02-13T08:00:00Z", "eventCity": "LONDON", "eventCountry": "GB"}
    if code:
        event["eventCode"] = code
    detail["trackingEvents"].insert(0, event)
    detail["status"] = text
    return detail


@pytest.mark.parametrize("code, text, status, customs", [
    (None, "Customs Clearance Processing Complete", Status.IN_TRANSIT, CustomsStage.RELEASED),
    ("OF", "Out for Delivery", Status.OUT_FOR_DELIVERY, CustomsStage.RELEASED),
    ("10", "Processed Through Facility", Status.IN_TRANSIT, CustomsStage.RELEASED),
    (None, "Held in Customs - awaiting documents from the addressee", Status.ON_HOLD,
     CustomsStage.INFO_REQUIRED),
])
def test_customs_stage_follows_the_newest_scan(code: str | None, text: str, status: Status,
                                               customs: CustomsStage) -> None:
    detail = _with_newer_event(default_parcels()[CUSTOMS_DUTIES], code, text)
    snap = snapshot(detail, fetched_at=FETCHED)
    assert (snap.status, snap.customs) == (status, customs)
    assert snap.duties is None


@pytest.mark.parametrize("code, text, status, reason", [
    ("02", "Notice Left (No Authorized Recipient Available)", Status.DELIVERY_FAILED,
     Reason.CONSIGNEE_NOT_HOME),
    ("04", "Refused", Status.DELIVERY_FAILED, Reason.CONSIGNEE_REFUSED),
    ("09", "Return to Sender", Status.RETURN_TO_SENDER, Reason.NONE),
    ("14", "Available for Pickup", Status.READY_FOR_PICKUP, Reason.NONE),
    ("GX", "Shipping Label Cancelled", Status.CANCELLED, Reason.NONE),
    ("", "Delivery Attempted - No Access to Delivery Location", Status.DELIVERY_FAILED,
     Reason.NONE),
    ("", "In Transit, Arriving Late", Status.DELAYED, Reason.OPERATIONAL_DELAY),
    ("", "Delayed due to weather", Status.DELAYED, Reason.WEATHER_DELAY),
    ("", "Something nobody has seen before", Status.UNKNOWN, Reason.NONE),
])
def test_event_classification(code: str, text: str, status: Status, reason: Reason) -> None:
    detail = {"trackingNumber": "9400100000000000000009", "destinationState": "TX",
              "trackingEvents": [{"eventType": text, "eventCode": code, "eventCity": "AUSTIN",
                                  "eventState": "TX", "eventZIPCode": "78701",
                                  "eventTimestamp": "2025-02-07T09:00:00-06:00"}]}
    event = snapshot(detail).events[0]
    assert (event.status, event.reason) == (status, reason)


def test_pickup_location_and_category_fallback() -> None:
    detail = {"trackingNumber": "9400100000000000000009", "statusCategory": "Available for Pickup",
              "status": "", "trackingEvents": [
                  {"eventType": "Arrived at Post Office", "eventCode": "07", "eventCity": "AUSTIN",
                   "eventState": "TX", "eventZIPCode": "78701",
                   "eventTimestamp": "2025-02-07T09:00:00-06:00"},
                  {"eventType": "Available for Pickup", "eventCode": "14", "eventCity": "AUSTIN",
                   "eventState": "TX", "eventZIPCode": "78701",
                   "eventTimestamp": "2025-02-07T10:00:00-06:00"}]}
    snap = snapshot(detail)
    assert snap.status is Status.READY_FOR_PICKUP
    assert snap.pickup_location == "AUSTIN, TX 78701"
    no_events = snapshot({"trackingNumber": "9400100000000000000009",
                          "statusCategory": "Delivery Attempt"})
    assert no_events.status is Status.DELIVERY_FAILED


def test_date_only_eta_spans_the_local_day_and_text_guarantees_are_ignored() -> None:
    detail = {"trackingNumber": "9400100000000000000009", "destinationState": "WA",
              "deliveryDateExpectation": {"guaranteedDeliveryDate": "3 Business Days",
                                          "expectedDeliveryDate": "2025-07-01",
                                          "endOfDay": "by 9:00pm"}}
    snap = snapshot(detail)
    assert snap.eta == datetime(2025, 7, 1, 0, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
    assert snap.eta_end == utc(2025, 7, 2, 4, 0)  # 21:00 PDT
    only_text = snapshot({"trackingNumber": "9400100000000000000009",
                          "deliveryDateExpectation": {"guaranteedDeliveryDate": "3 Business Days"}})
    assert only_text.eta is None and only_text.eta_end is None


def test_multi_status_items_become_snapshots_and_problems() -> None:
    body = [
        {"statusCode": "200", **default_parcels()[DELIVERED]},
        {"statusCode": "404", "trackingNumber": "9400100000000000000404",
         "error": {"code": "404", "message": "The tracking number may be incorrect."}},
        {"statusCode": "400", "trackingNumber": "94!",
         "error": {"code": "400", "errors": [{"detail": "Tracking ID must be alphanumeric."}]}},
        {"statusCode": "503", "trackingNumber": "9400100000000000000503",
         "error": {"code": "503", "message": "Try later"}},
    ]
    report = parse(body, fetched_at=FETCHED)
    assert list(report.snapshots) == [DELIVERED]
    assert report.snapshots[DELIVERED].status is Status.DELIVERED
    assert report.snapshots[DELIVERED].last_event.timestamp == utc(2025, 2, 10, 20, 55)
    assert report.problems["9400100000000000000404"].kind is ProblemKind.NOT_FOUND
    assert report.problems["9400100000000000000404"].message == "The tracking number may be incorrect."
    assert report.problems["94!"].kind is ProblemKind.INVALID
    assert report.problems["94!"].message == "Tracking ID must be alphanumeric."
    assert "9400100000000000000503" not in report.problems  # a per-number outage: ask again


def test_unparseable_payload_is_a_carrier_error() -> None:
    with pytest.raises(CarrierError):
        parse(["not a tracking detail"], fetched_at=FETCHED)


# --- the spec as the judge of the fake and of our requests ---------------------------------------

def _loosen_all_of(spec: dict[str, Any]) -> dict[str, Any]:
    """USPS combines `allOf` with `additionalProperties: false`; under JSON Schema that rejects
    every real payload (a TrackingDetail with trackingEvents fails SharedTrackingDetail). Drop
    that keyword from allOf members and composite schemas only; leaf schemas such as
    TrackingEvent stay strict."""
    schemas = spec["components"]["schemas"]
    referenced: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "allOf" in node:
                if node.get("additionalProperties") is False:
                    del node["additionalProperties"]
                for part in node["allOf"]:
                    if "$ref" in part:
                        referenced.add(part["$ref"].rsplit("/", 1)[1])
                    elif part.get("additionalProperties") is False:
                        del part["additionalProperties"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    for name in referenced:
        if schemas[name].get("additionalProperties") is False:
            del schemas[name]["additionalProperties"]
    return spec


def _openapi(name: str) -> OpenAPI:
    spec = _loosen_all_of(yaml.safe_load(shared("carriers", "usps", name).read_text()))
    schemas = spec["components"]["schemas"]
    if "MultiStatusResponse" in schemas:
        # oneOf(Failure, Success) matches both for every item since all fields are optional;
        # tell them apart by the `error` member the failures carry.
        schemas["FailureResponse"]["required"] = ["error"]
        schemas["SuccessResponse"]["not"] = {"required": ["error"]}
        # A date is also valid "text": the guaranteed-date union has to be anyOf.
        schemas["AllGuaranteedDeliveryTimes"]["anyOf"] = schemas["AllGuaranteedDeliveryTimes"].pop("oneOf")
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


SPECS: dict[str, tuple[str, str]] = {  # path prefix -> (spec file, server URL it lives under)
    "/oauth2/v3": ("oauth2_3_update.yaml", "https://apis.usps.com"),
    "/tracking/v3r2": ("tracking-v3r2_4.yaml", "https://apis.usps.com"),
    "/subscriptions-tracking/v3r2": ("subscriptions-tracking-v3r2_1.yaml", "https://apis.usps.com"),
}


def assert_spec_conform(exchanges: list[Exchange]) -> None:
    """Validate each recorded request and response against the USPS spec its path belongs to."""
    apis: dict[str, OpenAPI] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # openapi-core does not evaluate OAuth2 schemes
        for ex in exchanges:
            prefix = next(p for p in SPECS if ex.path.startswith(p))
            name, host = SPECS[prefix]
            api = apis.setdefault(name, _openapi(name))
            req = MockRequest(host, ex.method, ex.path, args=ex.query, headers=ex.headers,
                              data=ex.body, content_type=ex.headers.get("Content-Type", ""))
            api.validate_request(req)
            api.validate_response(req, MockResponse(ex.response_body, status_code=ex.status,
                                                    content_type=ex.response_type))


def test_spec_check_is_not_toothless() -> None:
    bad_event = copy.deepcopy(default_parcels()[DELIVERED])
    bad_event["trackingEvents"][0]["eventZIP"] = "90012"  # a v3 name, not in v3.2's TrackingEvent
    bad = Exchange("POST", "/tracking/v3r2/tracking", {}, {"Content-Type": "application/json"},
                   b'[{"trackingNumber": "9400100000000000000002"}]', 200,
                   json.dumps([bad_event]).encode(), "application/json")
    with pytest.raises(Exception, match="InvalidData|not valid"):
        assert_spec_conform([bad])
    bad_request = Exchange("POST", "/tracking/v3r2/tracking", {},
                           {"Content-Type": "application/json"},
                           json.dumps([{"trackingNumber": "1", "foo": 1}] * 36).encode(), 400,
                           b"{}", "application/json")
    with pytest.raises(Exception, match="InvalidRequestBody|not valid"):
        assert_spec_conform([bad_request])


# --- the adapter against FakeUsps -----------------------------------------------------------------

class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def running(fake: FakeUsps, *, secret: str = SECRET, admin: str = "ops@shop.example",
                  clock: Callable[[], float] | None = None,
                  client_secret: str = CLIENT_SECRET) -> AsyncIterator[tuple[UspsCarrier, aiohttp.ClientSession]]:
    async with serve(fake.app()) as base, aiohttp.ClientSession() as session:
        creds = Credentials(base, {"client_id": CLIENT_ID, "client_secret": client_secret,
                                   "webhook_secret": secret, "admin_email": admin})
        kwargs = {"clock": clock} if clock else {}
        yield UspsCarrier(session, creds, **kwargs), session


TOKEN = "/oauth2/v3/token"
TRACK = "/tracking/v3r2/tracking"


async def test_tracks_found_and_unknown_numbers_in_one_multi_status_call() -> None:
    fake = FakeUsps()
    async with running(fake) as (carrier, _):
        report = await carrier.track([OUT_FOR_DELIVERY, "9400100000000000000404", CUSTOMS_DUTIES])
    assert fake.calls[TRACK] == 1 and fake.calls[TOKEN] == 1
    assert [e.status for e in fake.exchanges if e.path == TRACK] == [207]
    assert report.snapshots[OUT_FOR_DELIVERY].status is Status.OUT_FOR_DELIVERY
    assert report.snapshots[CUSTOMS_DUTIES].customs is CustomsStage.DUTIES_DUE
    assert report.snapshots[OUT_FOR_DELIVERY].fetched_at is not None
    problem = report.problems["9400100000000000000404"]
    assert problem.kind is ProblemKind.NOT_FOUND and "incorrect" in problem.message
    assert_spec_conform(fake.exchanges)


async def test_single_unknown_number_404_is_a_problem_not_an_error() -> None:
    fake = FakeUsps()
    async with running(fake) as (carrier, _):
        report = await carrier.track(["9400100000000000000404"])
    assert not report.snapshots
    assert report.problems["9400100000000000000404"].kind is ProblemKind.NOT_FOUND
    assert [e.status for e in fake.exchanges if e.path == TRACK] == [404]
    assert_spec_conform(fake.exchanges)


async def test_36_numbers_take_two_requests_of_35_and_1() -> None:
    fake = FakeUsps()
    numbers = [f"94001{i:017d}" for i in range(3, 38)] + [DELIVERED]
    assert len(numbers) == 36
    async with running(fake) as (carrier, _):
        report = await carrier.track(numbers + [DELIVERED])  # a duplicate is asked once
    assert [len(batch) for batch in fake.tracked] == [35, 1]
    assert fake.tracked[1] == [DELIVERED]
    assert fake.calls[TRACK] == 2 and fake.calls[TOKEN] == 1
    assert len(report.problems) == 35 and list(report.snapshots) == [DELIVERED]
    assert_spec_conform(fake.exchanges)


async def test_token_is_cached_then_refreshed_before_it_expires() -> None:
    clock = ManualClock()
    fake = FakeUsps(token_lifetime=600, clock=clock)
    async with running(fake, clock=clock) as (carrier, _):
        await carrier.track([DELIVERED])
        clock.now += 500
        await carrier.track([DELIVERED])
        assert fake.calls[TOKEN] == 1  # 100 s left: still good
        clock.now += 50  # 50 s left, inside the refresh margin
        await carrier.track([DELIVERED])
    assert fake.calls[TOKEN] == 2 and fake.calls[TRACK] == 3
    assert all(e.status == 200 for e in fake.exchanges)
    assert_spec_conform(fake.exchanges)


async def test_revoked_token_is_fetched_again_once() -> None:
    fake = FakeUsps()
    async with running(fake) as (carrier, _):
        await carrier.track([DELIVERED])
        fake.revoke_tokens()
        report = await carrier.track([DELIVERED])
    assert report.snapshots[DELIVERED].status is Status.DELIVERED
    assert [(e.path, e.status) for e in fake.exchanges] == [
        (TOKEN, 200), (TRACK, 200), (TRACK, 401), (TOKEN, 200), (TRACK, 200)]
    assert_spec_conform(fake.exchanges)


async def test_persistent_401_raises_auth_error_after_one_retry() -> None:
    fake = FakeUsps(refuse_all_tokens=True)
    async with running(fake) as (carrier, _):
        with pytest.raises(CarrierAuthError) as caught:
            await carrier.track([DELIVERED])
    assert caught.value.status == 401
    assert fake.calls[TRACK] == 2 and fake.calls[TOKEN] == 2


async def test_wrong_client_secret_is_an_auth_error_without_tracking_calls() -> None:
    fake = FakeUsps()
    async with running(fake, client_secret="wrong") as (carrier, _):
        with pytest.raises(CarrierAuthError):
            await carrier.track([DELIVERED])
    assert fake.calls[TOKEN] == 1 and fake.calls[TRACK] == 0
    assert_spec_conform(fake.exchanges)


async def test_429_carries_retry_after() -> None:
    fake = FakeUsps()
    fake.fail(429, retry_after="30", times=1)
    async with running(fake) as (carrier, _):
        with pytest.raises(CarrierError) as caught:
            await carrier.track([DELIVERED])
        assert not isinstance(caught.value, CarrierAuthError)
        assert (caught.value.status, caught.value.retry_after) == (429, 30.0)
        report = await carrier.track([DELIVERED])  # the switch was for one call only
    assert report.snapshots[DELIVERED].status is Status.DELIVERED
    assert_spec_conform(fake.exchanges)


async def test_503_is_a_retryable_carrier_error() -> None:
    fake = FakeUsps()
    fake.fail(503)
    async with running(fake) as (carrier, _):
        with pytest.raises(CarrierError) as caught:
            await carrier.track([DELIVERED, OUT_FOR_DELIVERY])
    assert caught.value.status == 503 and caught.value.retry_after is None
    assert_spec_conform(fake.exchanges)


async def test_network_failure_is_a_carrier_error() -> None:
    async with aiohttp.ClientSession() as session:
        carrier = UspsCarrier(session, Credentials("http://127.0.0.1:9", {
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}))
        with pytest.raises(CarrierError, match="network"):
            await carrier.track([DELIVERED])


# --- webhooks -------------------------------------------------------------------------------------

@asynccontextmanager
async def receiver(carrier: PushCarrier) -> AsyncIterator[tuple[str, list[TrackingSnapshot]]]:
    """Our side of the webhook, as the web process will run it: verify, then parse."""
    received: list[TrackingSnapshot] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            carrier.verify_webhook(dict(request.headers), body)
        except WebhookError:
            return web.Response(status=403)
        received.extend(carrier.parse_webhook(body))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hooks/usps", hook)
    async with serve(app) as base:
        yield base + "/hooks/usps", received


async def test_subscribe_then_signed_callbacks_are_accepted_and_forged_ones_refused() -> None:
    fake = FakeUsps()
    async with running(fake) as (carrier, session), receiver(carrier) as (url, received):
        assert isinstance(carrier, PushCarrier)
        await carrier.subscribe([CUSTOMS_DUTIES, OUT_FOR_DELIVERY], url)
        (sub, _) = fake.subscriptions.values()
        assert sub["listenerURL"] == url and sub["secret"] == SECRET
        assert sub["filterProperties"] == {"trackingNumber": CUSTOMS_DUTIES,
                                           "trackingEventTypes": ["ALL_UPDATES", "PACKAGE_DELAYED"]}
        assert sub["adminNotification"] == [{"email": "ops@shop.example"}]

        assert await fake.send_webhook(session, url, CUSTOMS_DUTIES) == 200
        assert await fake.send_webhook(session, url, CUSTOMS_DUTIES, secret="x" * 32) == 403
        assert await fake.send_webhook(session, url, CUSTOMS_DUTIES, tamper=True) == 403
        assert await fake.send_webhook(session, url, CUSTOMS_DUTIES, signature="") == 403
    (snap,) = received
    assert snap.tracking_number == CUSTOMS_DUTIES
    assert (snap.status, snap.customs) == (Status.ON_HOLD, CustomsStage.DUTIES_DUE)
    assert snap.duties == Money(Decimal("12.40"), "GBP")
    assert snap.fetched_at is not None and snap.fetched_at.tzinfo is not None
    assert_spec_conform(fake.exchanges)


def test_verify_accepts_the_spec_example_signed_with_the_spec_secret() -> None:
    secret = subscriptions_spec()["components"]["examples"]["Subscription"]["value"]["secret"]
    message = spec_callback_example()
    body = json.dumps(message).encode()
    signature = base64.b64encode(hmac.new(
        secret.encode(), (message["timestamp"] + message["payload"]).encode(), hashlib.sha256,
    ).digest()).decode()
    carrier = UspsCarrier(None, Credentials(DEFAULT_BASE_URL, {"webhook_secret": secret}))  # type: ignore[arg-type]
    carrier.verify_webhook({"x-hmac": signature}, body)  # header names are case-insensitive
    carrier.verify_webhook({"hmac-header": signature}, body)  # the deprecated name still counts
    (snap,) = carrier.parse_webhook(body)
    assert snap.status is Status.DELIVERED
    assert snap.fetched_at == datetime(2024, 12, 27, 19, 5, 42, 747000, tzinfo=UTC)
    with pytest.raises(WebhookError):
        carrier.verify_webhook({"X-HMAC": signature[:-4] + "AAA="}, body)
    with pytest.raises(WebhookError):
        UspsCarrier(None, Credentials(DEFAULT_BASE_URL)).verify_webhook(  # type: ignore[arg-type]
            {"X-HMAC": signature}, body)  # no secret configured: refuse, never accept blindly


@pytest.mark.parametrize("body", [
    b"not json",
    b"[]",
    json.dumps({"subscriptionId": "1", "timestamp": "2025-01-01T00:00:00Z"}).encode(),
    json.dumps({"subscriptionId": "1", "timestamp": "2025-01-01T00:00:00Z",
                "payload": {"trackingNumber": "1"}}).encode(),  # payload must be a JSON string
])
def test_malformed_callbacks_raise_webhook_error(body: bytes) -> None:
    carrier = UspsCarrier(None, Credentials(DEFAULT_BASE_URL, {"webhook_secret": SECRET}))  # type: ignore[arg-type]
    with pytest.raises(WebhookError):
        carrier.verify_webhook({"X-HMAC": "c2lnbmF0dXJl"}, body)
    with pytest.raises(WebhookError):
        carrier.parse_webhook(body)


def test_parse_webhook_rejects_a_payload_that_is_not_tracking_detail() -> None:
    carrier = UspsCarrier(None, Credentials(DEFAULT_BASE_URL, {"webhook_secret": SECRET}))  # type: ignore[arg-type]
    body = json.dumps({"subscriptionId": "1", "subscriptionType": "TRACKING",
                       "timestamp": "2025-01-01T00:00:00Z", "payload": "[1, 2]"}).encode()
    with pytest.raises(WebhookError):
        carrier.parse_webhook(body)


async def test_subscribe_refuses_bad_configuration_before_calling_usps() -> None:
    fake = FakeUsps()
    async with running(fake, secret="too-short") as (carrier, _):
        with pytest.raises(ValueError, match="32"):
            await carrier.subscribe([DELIVERED], "https://shop.example/hooks/usps")
    async with running(fake, admin="") as (carrier, _):
        with pytest.raises(ValueError, match="ADMIN_EMAIL"):
            await carrier.subscribe([DELIVERED], "https://shop.example/hooks/usps")
    assert fake.calls == {}
